//! The benchmark's throwaway network: two namespaces joined by a veth pair, and the programs
//! (iperf3, tcpdump, the tracer) started inside them.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

pub const CLIENT: &str = "xbench-a";
pub const SERVER: &str = "xbench-b";
pub const CLIENT_ADDR: &str = "10.203.0.1";
pub const SERVER_ADDR: &str = "10.203.0.2";

/// `CLIENT` (va) <-> `SERVER` (vb), removed on drop.
pub struct Pair;

impl Pair {
    pub fn create() -> Result<Pair> {
        Pair::remove();
        for line in [
            format!("ip netns add {CLIENT}"),
            format!("ip netns add {SERVER}"),
            format!("ip link add va netns {CLIENT} type veth peer name vb netns {SERVER}"),
            format!("ip -n {CLIENT} addr add {CLIENT_ADDR}/24 dev va"),
            format!("ip -n {SERVER} addr add {SERVER_ADDR}/24 dev vb"),
            format!("ip -n {CLIENT} link set va up"),
            format!("ip -n {SERVER} link set vb up"),
            format!("ip -n {CLIENT} link set lo up"),
            format!("ip -n {SERVER} link set lo up"),
        ] {
            sh(&line)?;
        }
        Ok(Pair)
    }

    fn remove() {
        for ns in [CLIENT, SERVER] {
            let _ = quiet(&format!("ip netns del {ns}"));
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        Pair::remove();
    }
}

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `iperf3 -s` in the server namespace, for as long as the returned guard lives.
pub fn iperf_server() -> Result<KillOnDrop> {
    let child = in_ns(SERVER, "iperf3 -s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start iperf3 -s")?;
    sleep(Duration::from_millis(500));
    Ok(KillOnDrop(child))
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

fn quiet(line: &str) -> std::io::Result<std::process::ExitStatus> {
    command(line)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
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
