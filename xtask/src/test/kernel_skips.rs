//! A witness, independent of the tracer, of the tracepoint hits the kernel ran no program for.
//!
//! This project's machines (a Firecracker VM's kernel, `6.18.44-fc`) run no BPF tracing
//! program when its tracepoint fires in a softirq on top of the VM's init agent (PID 1), and
//! count no miss for it (README, Requirements). A packet handled there keeps its tc, XDP and
//! netfilter points and loses every tracepoint point, so a test can fail for the kernel and
//! not for the tracer. ftrace's own events still fire there: an ftrace instance that records
//! the tracer's tracepoints only for PID 1's threads (`set_event_pid`) and only in softirq
//! context is then exactly the list of hits the tracer could not see. The test command uses it
//! to tell those failures apart (`super::integration`).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

/// The tracepoints the tracer attaches to (tracer-ebpf/src/tracepoints.rs), by ftrace group.
const TRACEPOINTS: &[&str] = &[
    "net/netif_receive_skb",
    "net/net_dev_start_xmit",
    "net/net_dev_xmit",
    "skb/kfree_skb",
    "skb/consume_skb",
    "skb/skb_copy_datagram_iovec",
    "tcp/tcp_send_reset",
    "tcp/tcp_receive_reset",
    "tcp/tcp_retransmit_skb",
    "tcp/tcp_bad_csum",
    "icmp/icmp_send",
    "fib/fib_table_lookup",
];

/// `TRACE_FLAG_SOFTIRQ` in ftrace's `common_flags` (kernel/trace/trace.h).
const IN_SOFTIRQ: &str = "common_flags & 0x10";

const TRACEFS: &str = "/sys/kernel/tracing";

/// An ftrace instance of our own, removed on drop.
pub struct SkipWitness {
    dir: PathBuf,
}

impl SkipWitness {
    /// Creates the instance and starts recording.
    pub fn start() -> Result<SkipWitness> {
        let tracefs = Path::new(TRACEFS);
        if !tracefs.join("instances").exists() {
            crate::cmd::run(
                std::process::Command::new("mount").args(["-t", "tracefs", "nodev", TRACEFS]),
            )?;
        }
        remove_stale(&tracefs.join("instances"));
        let dir = tracefs.join(format!("instances/tracer-xtask-{}", std::process::id()));
        fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let witness = SkipWitness { dir };
        for event in TRACEPOINTS {
            witness.write(&format!("events/{event}/filter"), IN_SOFTIRQ)?;
            witness.write(&format!("events/{event}/enable"), "1")?;
        }
        witness.clear()?;
        Ok(witness)
    }

    /// Forgets what was recorded, and follows PID 1's threads as they are now (a thread pool
    /// grows and shrinks).
    pub fn clear(&self) -> Result<()> {
        let threads: Vec<String> = fs::read_dir("/proc/1/task")
            .context("cannot list PID 1's threads")?
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        self.write("set_event_pid", &threads.join(" "))?;
        self.write("trace", "")
    }

    /// The hits recorded since the last `clear`, one line each as ftrace prints them (task,
    /// CPU, flags, time, event and its fields).
    pub fn hits(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("trace"))
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| line.trim().to_string())
            .collect()
    }

    fn write(&self, file: &str, value: &str) -> Result<()> {
        let path = self.dir.join(file);
        fs::write(&path, value).with_context(|| format!("cannot write {}", path.display()))
    }
}

impl Drop for SkipWitness {
    fn drop(&mut self) {
        remove(&self.dir);
    }
}

/// Stops an instance's events (they must be off before it can go) and removes it.
fn remove(dir: &Path) {
    let _ = fs::write(dir.join("tracing_on"), "0");
    for event in TRACEPOINTS {
        let _ = fs::write(dir.join(format!("events/{event}/enable")), "0");
    }
    let _ = fs::remove_dir(dir);
}

/// The instances of test commands that were killed before they could remove theirs.
fn remove_stale(instances: &Path) {
    for entry in fs::read_dir(instances).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("tracer-xtask-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            remove(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_witness_records_every_tracepoint_the_tracer_attaches_to() {
        let source = include_str!("../../../tracer-ebpf/src/tracepoints.rs");
        let mut attached: Vec<&str> = source
            .split("btf_tracepoint(function = \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        attached.sort_unstable();
        attached.dedup();
        let mut witnessed: Vec<&str> = TRACEPOINTS
            .iter()
            .map(|event| event.split('/').nth(1).unwrap())
            .collect();
        witnessed.sort_unstable();
        assert_eq!(witnessed, attached);
    }
}
