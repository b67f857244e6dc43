//! Processes, namespaces and `/proc`, shared by `bench` and `soak`: throwaway namespaces and
//! veth pairs removed on drop, commands run inside them, children killed on drop.

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns(pub String);

impl Netns {
    /// Creates `name`, deleting a leftover of the same name first (a run killed earlier).
    pub fn create(name: &str) -> Result<Netns> {
        let _ = quiet(&format!("ip netns del {name}"));
        sh(&format!("ip netns add {name}"))?;
        sh(&format!("ip -n {name} link set lo up"))?;
        Ok(Netns(name.to_string()))
    }

    /// Deletes it now, and says if `ip netns del` failed.
    pub fn delete(mut self) -> Result<()> {
        let name = std::mem::take(&mut self.0);
        sh(&format!("ip netns del {name}"))?;
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = quiet(&format!("ip netns del {}", self.0));
        }
    }
}

/// One end of a veth pair: its namespace, interface and addresses (`10.0.0.1/24`, `fd00::1/64`).
pub struct End<'a> {
    pub netns: &'a str,
    pub ifname: &'a str,
    pub addrs: &'a [&'a str],
}

/// Two fresh namespaces joined by a veth pair, both removed on drop.
pub struct Pair {
    _namespaces: [Netns; 2],
}

impl Pair {
    pub fn create(a: &End, b: &End) -> Result<Pair> {
        let namespaces = [Netns::create(a.netns)?, Netns::create(b.netns)?];
        sh(&format!(
            "ip link add {} netns {} type veth peer name {} netns {}",
            a.ifname, a.netns, b.ifname, b.netns
        ))?;
        for end in [a, b] {
            configure(end)?;
        }
        Ok(Pair {
            _namespaces: namespaces,
        })
    }
}

/// Addresses on an existing interface, then up. IPv6 addresses skip duplicate address
/// detection, so they answer at once rather than after a second or two.
pub fn configure(end: &End) -> Result<()> {
    let (ns, ifname) = (end.netns, end.ifname);
    for addr in end.addrs {
        let nodad = if addr.contains(':') { " nodad" } else { "" };
        sh(&format!("ip -n {ns} addr add {addr} dev {ifname}{nodad}"))?;
    }
    sh(&format!("ip -n {ns} link set {ifname} up"))?;
    Ok(())
}

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command line split on whitespace, as a `Command`.
pub fn command(line: &str) -> Command {
    let mut words = line.split_whitespace();
    let mut command = Command::new(words.next().expect("a command"));
    command.args(words);
    command
}

/// `command` inside namespace `ns`.
pub fn in_ns(ns: &str, line: &str) -> Command {
    command(&format!("ip netns exec {ns} {line}"))
}

/// `line` inside `ns` in the background, its output discarded, killed on drop.
pub fn spawn_in(ns: &str, line: &str) -> Result<KillOnDrop> {
    let child = in_ns(ns, line)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {line} in {ns}"))?;
    Ok(KillOnDrop(child))
}

pub fn sh(line: &str) -> Result<String> {
    output(&mut command(line))
}

/// Runs `cmd`; its stdout, or an error with its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn quiet(line: &str) -> std::io::Result<std::process::ExitStatus> {
    command(line)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

/// Moves the calling thread into namespace `ns` (sockets it opens afterwards live there);
/// the process's other threads stay where they are.
pub fn enter_netns(ns: &str) -> Result<()> {
    let file = File::open(Path::new("/run/netns").join(ns))
        .with_context(|| format!("no namespace {ns}"))?;
    // SAFETY: setns on an nsfs fd we hold; CLONE_NEWNET changes only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("cannot enter {ns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sends SIGINT to `child` and waits for it.
pub fn interrupt(child: &mut Child) -> Result<std::process::ExitStatus> {
    // SAFETY: kill with a pid we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    Ok(child.wait()?)
}

/// Waits until `path` exists or `child` died; the time it took.
pub fn wait_for_file(path: &Path, child: &mut Child, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait()? {
            bail!("exited ({status}) before {} appeared", path.display());
        }
        if start.elapsed() > limit {
            bail!("{} did not appear within {limit:?}", path.display());
        }
        sleep(Duration::from_millis(10));
    }
    Ok(start.elapsed())
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), 0 if the process is gone.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
