//! Which live packet captures (tcpdump, dumpcap, ...) run on the machine, in any network
//! namespace. A capture holds a packet socket open, and whether one is running decides whether
//! "tcpdump saw it" means anything: so the tracer names them instead of guessing.
//!
//! `/proc/PID/net/packet` lists the packet sockets of PID's network namespace, read once per
//! namespace; the socket inodes are then matched against every process's `/proc/PID/fd`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;

use procfs::process::{FDTarget, Process};

/// A packet socket some process holds open: a live capture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveCapture {
    pub pid: u32,
    /// `/proc/PID/comm`, e.g. "tcpdump".
    pub command: String,
    /// Inode of the network namespace the socket lives in (as `stat -L -c %i /proc/PID/ns/net`).
    pub netns: u32,
    /// Interface the socket is bound to; 0 = all interfaces (`tcpdump -i any`).
    pub ifindex: u32,
    /// Socket inode.
    pub inode: u64,
}

/// One row of `/proc/PID/net/packet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketSocket {
    /// `SOCK_RAW` (3) sees link-layer headers, `SOCK_DGRAM` (2) does not (`-i any`).
    pub sock_type: u32,
    /// Ethertype the socket listens for, host order; 3 = `ETH_P_ALL`.
    pub protocol: u16,
    /// Interface it is bound to; 0 = all.
    pub ifindex: u32,
    /// Owner's uid.
    pub user: u32,
    pub inode: u64,
}

/// Every live capture, lowest pid first. Never fails: processes that vanish or cannot be
/// read are skipped, because a partial answer beats none. The calling process is left out:
/// its own sockets are not someone else's capture.
pub fn scan() -> Vec<LiveCapture> {
    let Ok(processes) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let processes: Vec<Process> = processes.filter_map(Result::ok).collect();
    let sockets = packet_sockets(&processes);
    if sockets.is_empty() {
        // The common case: skip the walk through every process's descriptors.
        return Vec::new();
    }
    holders(&processes, &sockets)
}

/// Parses `/proc/PID/net/packet`; the header and rows that do not parse are skipped.
pub fn parse_packet_table(text: &str) -> Vec<PacketSocket> {
    text.lines().filter_map(parse_packet_row).collect()
}

/// `sk RefCnt Type Proto Iface R Rmem User Inode`, Proto in hex.
fn parse_packet_row(line: &str) -> Option<PacketSocket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 9 {
        return None;
    }
    Some(PacketSocket {
        sock_type: fields[2].parse().ok()?,
        protocol: u16::from_str_radix(fields[3], 16).ok()?,
        ifindex: fields[4].parse().ok()?,
        user: fields[7].parse().ok()?,
        inode: fields[8].parse().ok()?,
    })
}

/// The packet sockets of every namespace some process is in, by socket inode, with the
/// namespace that lists them. Socket inodes are unique machine-wide, so one map serves all.
fn packet_sockets(processes: &[Process]) -> HashMap<u64, (u32, PacketSocket)> {
    let mut namespaces_read = HashSet::new();
    let mut sockets = HashMap::new();
    for process in processes {
        let pid = process.pid();
        let Some(netns) = netns_of(pid) else {
            continue;
        };
        if namespaces_read.contains(&netns) {
            continue;
        }
        // If this process vanished, the next one in the same namespace will do.
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/packet")) else {
            continue;
        };
        namespaces_read.insert(netns);
        for socket in parse_packet_table(&text) {
            sockets.insert(socket.inode, (netns, socket));
        }
    }
    sockets
}

/// The processes holding those sockets; a socket shared after fork goes to its lowest pid,
/// usually the parent that opened it.
fn holders(processes: &[Process], sockets: &HashMap<u64, (u32, PacketSocket)>) -> Vec<LiveCapture> {
    let own_pid = std::process::id();
    let mut found: BTreeMap<u64, LiveCapture> = BTreeMap::new();
    for process in processes {
        let Ok(pid) = u32::try_from(process.pid()) else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        for inode in socket_inodes(process) {
            let Some((netns, socket)) = sockets.get(&inode) else {
                continue;
            };
            if found.get(&inode).is_some_and(|held| held.pid <= pid) {
                continue;
            }
            let Some(command) = command_of(pid) else {
                continue;
            };
            let capture = LiveCapture {
                pid,
                command,
                netns: *netns,
                ifindex: socket.ifindex,
                inode,
            };
            found.insert(inode, capture);
        }
    }
    let mut captures: Vec<LiveCapture> = found.into_values().collect();
    captures.sort_by_key(|c| (c.pid, c.inode));
    captures
}

/// Inodes of the sockets among a process's descriptors; none if they cannot be read.
fn socket_inodes(process: &Process) -> Vec<u64> {
    let Ok(fds) = process.fd() else {
        return Vec::new();
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| match fd.target {
            FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
        .collect()
}

/// Inode of a process's network namespace, the identifier `ip netns identify` and `stat` show.
fn netns_of(pid: i32) -> Option<u32> {
    let metadata = fs::metadata(format!("/proc/{pid}/ns/net")).ok()?;
    u32::try_from(metadata.ino()).ok()
}

fn command_of(pid: u32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// Taken from this machine with `tcpdump -i lo` and `tcpdump -i any` running.
    const SAMPLE: &str = "\
sk               RefCnt Type Proto  Iface R Rmem   User   Inode
0000000046d21b47 3      3    0003   1     1 0      0      142464
000000004392fa22 3      2    0003   0     1 0      0      142465
";

    #[test]
    fn parses_packet_table() {
        let sockets = parse_packet_table(SAMPLE);
        assert_eq!(
            sockets,
            vec![
                PacketSocket {
                    sock_type: 3,
                    protocol: 3,
                    ifindex: 1,
                    user: 0,
                    inode: 142464
                },
                PacketSocket {
                    sock_type: 2,
                    protocol: 3,
                    ifindex: 0,
                    user: 0,
                    inode: 142465
                },
            ]
        );
    }

    #[test]
    fn skips_header_and_broken_rows() {
        let text =
            "sk RefCnt Type Proto Iface R Rmem User Inode\nffff 3 3 zz 1 1 0 0 1\nshort row\n";
        assert!(parse_packet_table(text).is_empty());
        assert!(parse_packet_table("").is_empty());
    }

    /// Kills the capture even when an assertion fails first.
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn scan_finds_a_running_tcpdump() {
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            panic!("NOT RUN: needs root (tcpdump must open a packet socket)");
        }
        let tcpdump = "/usr/bin/tcpdump";
        assert!(fs::metadata(tcpdump).is_ok(), "NOT RUN: needs {tcpdump}");
        let child = Command::new(tcpdump)
            .args(["-i", "lo", "-nn", "-c", "1000", "--immediate-mode"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tcpdump");
        let child = KillOnDrop(child);
        let pid = child.0.id();
        let own_netns = netns_of(std::process::id() as i32).expect("own netns");

        let deadline = Instant::now() + Duration::from_secs(5);
        let capture = loop {
            if let Some(c) = scan().into_iter().find(|c| c.pid == pid) {
                break c;
            }
            assert!(
                Instant::now() < deadline,
                "tcpdump (pid {pid}) not found within 5 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(capture.command, "tcpdump");
        assert_eq!(capture.ifindex, 1);
        assert_eq!(capture.netns, own_netns);
        assert!(scan().iter().all(|c| c.pid != std::process::id()));
    }
}
