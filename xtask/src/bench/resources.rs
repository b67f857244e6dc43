//! The tracer's own resources: resident memory over a flood of short flows, and the time from
//! start to every hook attached.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::proc_status::status_kib;
use harness::Netns;

use super::{
    net::{command_in, interrupt, sh, wait_for_file, KillOnDrop, CLIENT, SERVER_ADDR},
    observer::{self, Observer},
    summary::Summary,
};

/// Resident memory of the tracer (KiB), sampled every 5 s of a flood of one-datagram flows.
pub struct Memory {
    pub samples: Vec<(u64, u64)>,
    pub peak_kib: u64,
    pub flows_sent: u64,
    pub events: u64,
    pub lost: u64,
}

pub fn memory(tracer: &Path, seconds: u64, flows_per_s: u64) -> Result<Memory> {
    let watching = observer::start(tracer, Observer::TracerFlow, "udp")?;
    let pid = watching.pid().context("the tracer runs")?;
    let flood = command_in(
        CLIENT,
        &format!(
            "{} flood --to {SERVER_ADDR}:9 --rate {flows_per_s} --seconds {seconds}",
            std::env::current_exe()?.display()
        ),
    )
    .stdout(Stdio::null())
    .spawn()
    .map(KillOnDrop)?;
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(5));
        let rss = status_kib(pid, "VmRSS:");
        eprintln!("  {:>3} s: {rss} KiB resident", start.elapsed().as_secs());
        samples.push((start.elapsed().as_secs(), rss));
    }
    drop(flood);
    // The peak includes the analysis at the end, when journeys and flows are built.
    let peak_before_exit = status_kib(pid, "VmHWM:");
    let report = watching.stop()?;
    Ok(Memory {
        samples,
        peak_kib: peak_before_exit,
        flows_sent: flows_per_s * seconds,
        events: report.events,
        lost: report.lost,
    })
}

impl Memory {
    pub fn table(&self) -> (String, Value) {
        let mut md =
            String::from("| seconds into the flood | tracer resident memory (MiB) |\n|---|---|\n");
        for (s, kib) in &self.samples {
            md.push_str(&format!("| {s} | {:.1} |\n", *kib as f64 / 1024.0));
        }
        md.push_str(&format!(
            "\nFlows sent: {}; events read: {} (kept up to --max-events); lost: {}; peak resident before the final analysis: {:.1} MiB.\n",
            self.flows_sent,
            self.events,
            self.lost,
            self.peak_kib as f64 / 1024.0
        ));
        let value = json!({
            "samples": self.samples,
            "peak_kib": self.peak_kib,
            "flows_sent": self.flows_sent,
            "events": self.events,
            "lost": self.lost,
        });
        (md, value)
    }
}

/// Seconds from start to the ready file with `count` namespaces of two veth ends each.
pub fn attach_time(tracer: &Path, count: usize, reps: usize) -> Result<Summary> {
    let names: Vec<String> = (0..count).map(|i| format!("xbench-n{i}")).collect();
    let _namespaces = Namespaces::create(&names)?;
    let ready = std::env::temp_dir().join(format!("xbench-ready-{}", std::process::id()));
    let mut times = Vec::new();
    for _ in 0..reps {
        let _ = std::fs::remove_file(&ready);
        let mut cmd = Command::new(tracer);
        cmd.arg("trace");
        for name in &names {
            cmd.args(["-n", name]);
        }
        let mut child = cmd
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let took = wait_for_file(&ready, &mut child, Duration::from_secs(300))?;
        interrupt(&mut child)?;
        eprintln!(
            "  {count} namespaces: ready after {:.2} s",
            took.as_secs_f64()
        );
        times.push(took.as_secs_f64());
    }
    let _ = std::fs::remove_file(&ready);
    Ok(Summary::of(&times))
}

/// Namespaces of two veth ends each, removed on drop.
struct Namespaces(Vec<Netns>);

impl Namespaces {
    fn create(names: &[String]) -> Result<Namespaces> {
        let mut guard = Namespaces(Vec::new());
        for name in names {
            guard.0.push(Netns::create(name)?);
            sh(&format!(
                "ip link add v0 netns {name} type veth peer name v1 netns {name}"
            ))?;
            sh(&format!("ip -n {name} link set v0 up"))?;
            sh(&format!("ip -n {name} link set v1 up"))?;
        }
        Ok(guard)
    }
}
