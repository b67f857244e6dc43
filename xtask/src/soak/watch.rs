//! The tracer under soak: started with its stderr on a pseudo-terminal (so that it draws its
//! status line, the only running count of its events), sampled from `/proc`, stopped with
//! SIGINT like a user's Ctrl-C.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader, Read},
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::proc_status::status_kib;
use harness::process::wait_for_file;

/// What the status line said last: `tracer: N events (R/s), F flows, L lost`: every event
/// read, with the streaming engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusLine {
    pub events: u64,
    pub flows: u64,
    pub lost: u64,
}

/// The descriptors a process holds: all of them, and the BPF programs and links among them.
#[derive(Clone, Debug, Default)]
pub struct Held {
    pub fds: usize,
    /// Program fds (fdinfo has `prog_id:` and no `link_id:`).
    pub programs: usize,
    /// Link fds (fdinfo has `link_id:`; its `prog_id:` names the program it holds).
    pub links: usize,
    /// Ids of every program held, directly or through a link.
    pub program_ids: Vec<u32>,
    /// Namespaces held open (nsfs descriptors), and how many of those no longer have a name
    /// under /run/netns: deleted, but alive while held.
    pub netns: usize,
    pub netns_unnamed: usize,
}

/// One look at the running tracer.
#[derive(Clone, Debug)]
pub struct Sample {
    pub secs: u64,
    pub rss_kib: u64,
    pub held: Held,
    pub status: Option<StatusLine>,
    /// Namespaces the churn had deleted by then.
    pub namespaces_deleted: u64,
}

/// How the tracer ended.
pub struct End {
    pub status: ExitStatus,
    /// Seconds from SIGINT to exit: the final analysis and the JSON output.
    pub exit_secs: f64,
    /// Peak resident memory (VmHWM) seen up to the exit, final analysis included.
    pub peak_kib: u64,
    pub output: Output,
    /// What it said on stderr, status line left out.
    pub stderr: Vec<String>,
}

#[derive(Default)]
struct Terminal {
    last: Option<StatusLine>,
    lines: Vec<String>,
}

pub struct Tracer {
    child: Child,
    dir: PathBuf,
    terminal: Arc<Mutex<Terminal>>,
    reader: Option<JoinHandle<()>>,
    output: Arc<Mutex<Output>>,
    output_reader: Option<JoinHandle<Result<()>>>,
}

impl Tracer {
    /// `tracer trace` on `namespaces` with `extra` arguments and `filter`, its JSON read as it
    /// comes (and copied to `keep`); returns once every program is attached.
    pub fn start(
        tracer: &Path,
        namespaces: &[String],
        extra: &[&str],
        filter: &str,
        keep: Option<&Path>,
    ) -> Result<Tracer> {
        let dir = std::env::temp_dir().join(format!("xsoak-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let ready = dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let (master, slave) = pty()?;
        let mut cmd = Command::new(tracer);
        cmd.arg("trace");
        for ns in namespaces {
            cmd.args(["-n", ns]);
        }
        cmd.args(extra)
            .args(["--format", "json", "--ready-file"])
            .arg(&ready)
            .args(filter.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(slave);
        let mut child = cmd.spawn().context("cannot start the tracer")?;
        let keep = keep.map(File::create).transpose()?;
        let output = Arc::new(Mutex::new(Output::default()));
        let output_reader = {
            let stdout = child.stdout.take().context("the tracer's stdout")?;
            let output = Arc::clone(&output);
            std::thread::spawn(move || read_output(stdout, keep, &output))
        };
        // The slave end is the child's now: once it exits, reading the master ends.
        drop(cmd);
        let terminal = Arc::new(Mutex::new(Terminal::default()));
        let reader = {
            let terminal = Arc::clone(&terminal);
            std::thread::spawn(move || read_terminal(master, &terminal))
        };
        let mut tracer = Tracer {
            child,
            dir,
            terminal,
            reader: Some(reader),
            output,
            output_reader: Some(output_reader),
        };
        let child = &mut tracer.child;
        if let Err(err) = wait_for_file(&ready, child, Duration::from_secs(300)) {
            let said = tracer.stderr().join("\n");
            return Err(err.context(format!("the tracer never became ready; it said:\n{said}")));
        }
        Ok(tracer)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it died.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    pub fn sample(&self, secs: u64, namespaces_deleted: u64) -> Sample {
        Sample {
            secs,
            rss_kib: status_kib(self.pid(), "VmRSS:"),
            held: held(self.pid()),
            status: self.terminal.lock().expect("terminal").last,
            namespaces_deleted,
        }
    }

    pub fn stderr(&self) -> Vec<String> {
        self.terminal.lock().expect("terminal").lines.clone()
    }

    /// SIGINT, then waits (at most `limit`) for the end of the output.
    pub fn stop(mut self, limit: Duration) -> Result<End> {
        let pid = self.pid();
        // SAFETY: kill with the pid of our own child, not yet reaped.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
        let start = Instant::now();
        let mut peak_kib = 0;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            peak_kib = peak_kib.max(status_kib(pid, "VmHWM:"));
            if start.elapsed() > limit {
                let _ = self.child.kill();
                bail!("the tracer did not exit within {limit:?} of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let exit_secs = start.elapsed().as_secs_f64();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if let Some(reader) = self.output_reader.take() {
            reader
                .join()
                .map_err(|_| anyhow::anyhow!("the output reader panicked"))??;
        }
        let output = std::mem::take(&mut *self.output.lock().expect("output"));
        Ok(End {
            status,
            exit_secs,
            peak_kib,
            output,
            stderr: self.stderr(),
        })
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pseudo-terminal: (master, slave), neither inherited by the children spawned later (a
/// slave end left open in an iperf3 would keep the master from ever reading end of file).
fn pty() -> Result<(File, File)> {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors; the name, termios and size are optional.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        bail!("openpty: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    let (master, slave) = unsafe { (File::from_raw_fd(master), File::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok((master, slave))
}

/// Reads the terminal until the tracer closes it: the status line is redrawn in place
/// (`\r\x1b[K...`), every other line is kept.
fn read_terminal(mut master: File, terminal: &Mutex<Terminal>) {
    let mut buf = [0u8; 4096];
    let mut pending = String::new();
    // EIO once the last slave descriptor is closed: the tracer exited.
    while let Ok(n @ 1..) = master.read(&mut buf) {
        pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        while let Some(at) = pending.find(['\r', '\n']) {
            let piece: String = pending.drain(..=at).collect();
            let piece = piece.replace("\x1b[K", "");
            let piece = piece.trim();
            if piece.is_empty() {
                continue;
            }
            let mut terminal = terminal.lock().expect("terminal");
            match parse_status(piece) {
                Some(line) => terminal.last = Some(line),
                None => terminal.lines.push(piece.to_string()),
            }
        }
    }
}

/// `tracer: 123 events (456/s), 7 flows, 0 lost`.
pub fn parse_status(line: &str) -> Option<StatusLine> {
    let rest = line.strip_prefix("tracer: ")?;
    let (events, rest) = rest.split_once(" events (")?;
    let (_, rest) = rest.split_once("/s), ")?;
    // `F flows` seen, or with the streaming engine `F flows open`.
    let (flows, rest) = rest
        .split_once(" flows open, ")
        .or_else(|| rest.split_once(" flows, "))?;
    let lost = rest.strip_suffix(" lost")?;
    Some(StatusLine {
        events: events.parse().ok()?,
        // `100000+`: the status line stops counting distinct flows there.
        flows: flows.trim_end_matches('+').parse().ok()?,
        lost: lost.parse().ok()?,
    })
}

/// Descriptors of `pid`, and the BPF programs and links among them (from `/proc/PID/fdinfo`).
pub fn held(pid: u32) -> Held {
    let mut held = Held::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return held;
    };
    for entry in dir.flatten() {
        held.fds += 1;
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        let Some(program) = field("prog_id:") else {
            continue;
        };
        if field("link_id:").is_some() {
            held.links += 1;
        } else {
            held.programs += 1;
        }
        held.program_ids.push(program);
    }
    held.program_ids.sort_unstable();
    held.program_ids.dedup();
    // Namespace descriptors are nsfs files: the device of our own namespace's file. Their
    // link text is the path they were opened by, so they are told by inode, not by name.
    let Ok(nsfs) = std::fs::metadata("/proc/self/ns/net").map(|m| m.dev()) else {
        return held;
    };
    let named: Vec<u64> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some(std::fs::metadata(e.path()).ok()?.ino()))
        .collect();
    let namespaces = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .filter(|m| m.dev() == nsfs)
        .map(|m| m.ino());
    for inode in namespaces {
        held.netns += 1;
        held.netns_unnamed += usize::from(!named.contains(&inode));
    }
    held
}

/// What the JSON output holds.
#[derive(Default)]
pub struct Output {
    pub stats: Option<Value>,
    pub packets: u64,
    pub flows: u64,
    /// Packets whose protocol is not their flow's: flows that joined unrelated packets.
    pub packets_in_foreign_flows: u64,
    /// Packets per protocol of each flow not yet reported (a flow comes after its packets).
    members: HashMap<u64, HashMap<String, u64>>,
}

impl Output {
    /// Takes one line. A packet record is only scanned for its flow and protocol: the soak
    /// reads thousands a second, each a few kilobytes.
    fn line(&mut self, line: &str) -> Result<()> {
        if line.starts_with("{\"capture\"") || line.contains("\"type\":\"packet\"") {
            self.packets += 1;
            if let (Some(flow), Some(proto)) = (field(line, "flow_id"), field(line, "proto")) {
                let flow = flow.parse().unwrap_or_default();
                let proto = proto.trim_matches('"').to_string();
                *self
                    .members
                    .entry(flow)
                    .or_default()
                    .entry(proto)
                    .or_default() += 1;
            }
            return Ok(());
        }
        let record: Value =
            serde_json::from_str(line).context("the tracer wrote a line that is not JSON")?;
        match record["type"].as_str() {
            Some("flow") => {
                self.flows += 1;
                let id = record["id"].as_u64().unwrap_or_default();
                let proto = record["proto"].as_str().unwrap_or_default();
                let members = self.members.remove(&id).unwrap_or_default();
                self.packets_in_foreign_flows += members
                    .iter()
                    .filter(|(p, _)| p.as_str() != proto)
                    .map(|(_, n)| n)
                    .sum::<u64>();
            }
            Some("stats") => self.stats = Some(record),
            _ => {}
        }
        Ok(())
    }
}

/// The raw value of `"key":` in a JSON line (a number, or a string with its quotes), at the
/// top level of a packet record: its keys come before its nested objects' same names do not
/// matter here, as `flow_id` and `proto` appear only at the top.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[at..];
    let end = rest.find([',', '}'])?;
    Some(&rest[..end])
}

/// Reads the tracer's output as it comes, into `output`; a copy goes to `keep`.
fn read_output(
    stdout: std::process::ChildStdout,
    keep: Option<File>,
    output: &Mutex<Output>,
) -> Result<()> {
    let mut keep = keep.map(std::io::BufWriter::new);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(keep) = keep.as_mut() {
            std::io::Write::write_all(keep, line.as_bytes())?;
            std::io::Write::write_all(keep, b"\n")?;
        }
        output.lock().expect("output").line(&line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_status_line() {
        assert_eq!(
            parse_status("tracer: 500000 events (0/s), 1234 flows, 7 lost"),
            Some(StatusLine {
                events: 500000,
                flows: 1234,
                lost: 7
            })
        );
        assert_eq!(
            parse_status("tracer: 9 events (3/s), 12 flows open, 0 lost"),
            Some(StatusLine {
                events: 9,
                flows: 12,
                lost: 0
            })
        );
        assert_eq!(parse_status("tracer: 42 observation points attached"), None);
    }

    #[test]
    fn counts_our_own_descriptors() {
        let held = held(std::process::id());
        assert!(held.fds >= 3, "{held:?}");
    }
}
