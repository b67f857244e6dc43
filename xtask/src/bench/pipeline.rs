//! The event pipeline: userspace alone on synthetic events (`tracer bench-pipeline`, one
//! core), then the live path (kernel programs, ring buffer, userspace) at stepped packet rates,
//! to find the highest event rate followed with zero lost events, and what twice that loses.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::{
    net::{command_in, iperf_server, output, CLIENT, SERVER_ADDR},
    observer::{self, Observer},
    summary::Summary,
};

pub struct Offline {
    pub runs: Vec<Value>,
}

/// `tracer bench-pipeline` `reps` times for each of `tracers`, pinned to the last CPU; the
/// tracers take turns, so that a noisy moment of the machine falls on all of them alike.
pub fn offline(tracers: &[&Path], reps: usize) -> Result<Vec<Offline>> {
    let cpu = cpus().saturating_sub(1);
    let mut results: Vec<Offline> = tracers
        .iter()
        .map(|_| Offline { runs: Vec::new() })
        .collect();
    for rep in 1..=reps {
        for (tracer, result) in tracers.iter().zip(&mut results) {
            let out = output(
                std::process::Command::new(tracer)
                    .args(["bench-pipeline", "--packets", "60000", "--cpu"])
                    .arg(cpu.to_string()),
            )?;
            let run: Value = serde_json::from_str(out.trim()).context("bench-pipeline output")?;
            eprintln!("  [{rep}/{reps}] {}: {run}", tracer.display());
            result.runs.push(run);
        }
    }
    Ok(results)
}

impl Offline {
    fn rate(&self, stages: &[&str]) -> Summary {
        let rates: Vec<f64> = self
            .runs
            .iter()
            .map(|r| {
                let secs: f64 = stages.iter().filter_map(|s| r[*s].as_f64()).sum();
                r["events"].as_f64().unwrap_or(0.0) / secs
            })
            .collect();
        Summary::of(&rates)
    }

    pub fn table(&self) -> (String, Value) {
        let mut md = String::from(
            "| userspace stage (one core, 1.02 M synthetic events) | median events/s | min - max |\n|---|---|---|\n",
        );
        for (label, stages) in [
            ("decode", &["decode_s"][..]),
            ("journeys and flows (stitch)", &["stitch_s"][..]),
            ("decode + stitch", &["decode_s", "stitch_s"][..]),
            (
                "decode + stitch + JSON output",
                &["decode_s", "stitch_s", "json_s"][..],
            ),
        ] {
            let s = self.rate(stages);
            md.push_str(&format!(
                "| {label} | {:.0} | {:.0} - {:.0} |\n",
                s.median, s.min, s.max
            ));
        }
        (md, json!(self.runs))
    }
}

/// `tracer bench-pipeline --stream` `reps` times on ten times the events: decode and the
/// streaming stitcher (journeys completed as they close), then the whole streaming engine with
/// text lines and with JSON records (written to nowhere), and the memory each holds. The three
/// take turns, so that a noisy moment of the machine falls on all of them alike.
pub fn streaming(tracer: &Path, reps: usize) -> Result<(String, Value)> {
    let cpu = cpus().saturating_sub(1);
    let modes: [(&str, &[&str]); 3] = [
        ("decode + journeys as they close", &[]),
        (
            "decode + streaming engine + text lines",
            &["--engine", "text"],
        ),
        (
            "decode + streaming engine + JSON records",
            &["--engine", "json"],
        ),
    ];
    let mut runs: Vec<Offline> = modes.iter().map(|_| Offline { runs: Vec::new() }).collect();
    for rep in 1..=reps {
        for ((label, extra), result) in modes.iter().zip(&mut runs) {
            let out = output(
                std::process::Command::new(tracer)
                    .args(["bench-pipeline", "--stream", "--packets", "600000", "--cpu"])
                    .arg(cpu.to_string())
                    .args(*extra),
            )?;
            let run: Value = serde_json::from_str(out.trim()).context("bench-pipeline output")?;
            eprintln!("  [{rep}/{reps}] {label}: {run}");
            result.runs.push(run);
        }
    }
    let mut md = String::from(
        "| streaming (one core, 10.2 M synthetic events) | median events/s | min - max | peak resident MiB (median) |\n|---|---|---|---|\n",
    );
    for ((label, _), runs) in modes.iter().zip(&runs) {
        let rate = runs.rate(&["decode_s", "stream_s"]);
        let rss: Vec<f64> = runs
            .runs
            .iter()
            .filter_map(|r| r["peak_rss_kib"].as_f64())
            .map(|kib| kib / 1024.0)
            .collect();
        md.push_str(&format!(
            "| {label} | {:.0} | {:.0} - {:.0} | {:.0} |\n",
            rate.median,
            rate.min,
            rate.max,
            Summary::of(&rss).median
        ));
    }
    let all: Vec<&Value> = runs.iter().flat_map(|r| &r.runs).collect();
    Ok((md, json!(all)))
}

/// Where a live step's processes run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Placement {
    /// Wherever the scheduler puts them: the tracer's engine shares every CPU with the
    /// traffic (on a 2-CPU machine, with iperf3's client, its server and their softirqs).
    Shared,
    /// iperf3's client and server (and so the kernel's path of their datagrams, run on the
    /// sending CPU over a veth) on CPU 0, the tracer on the last CPU: the kernel side
    /// produces events as fast as one CPU of traffic makes them, and the engine has a core
    /// of its own, as on a machine with cores to spare.
    Apart,
}

impl Placement {
    pub fn label(self) -> &'static str {
        match self {
            Placement::Shared => "sharing every CPU with the traffic",
            Placement::Apart => "traffic on CPU 0, the tracer on a CPU of its own",
        }
    }

    fn traffic_prefix(self) -> &'static str {
        match self {
            Placement::Shared => "",
            Placement::Apart => "taskset -c 0 ",
        }
    }

    fn tracer_cpu(self) -> Option<usize> {
        match self {
            Placement::Shared => None,
            Placement::Apart => Some(cpus().saturating_sub(1)),
        }
    }
}

/// One live step: the tracer following 64-byte UDP datagrams sent at `pps`.
pub struct Step {
    pub pps: u64,
    /// False for the step run without the tracer, which says how fast the sender goes where
    /// no kernel program runs.
    pub traced: bool,
    /// What iperf3 says it sent.
    pub sent_per_s: f64,
    pub events_per_s: f64,
    pub report: observer::Report,
}

/// Steps up the datagram rate (2 000 to 256 000 a second) until events are lost, then runs
/// twice the best lossless rate. Past the rate the sender reaches under the kernel programs,
/// the kernel side produces all the events it can. Last, the highest rate asked without the
/// tracer: the gap between the two is what the kernel programs cost the sender.
pub fn live(tracer: &Path, seconds: u32, placement: Placement) -> Result<Vec<Step>> {
    let _server = iperf_server(placement.traffic_prefix())?;
    let mut steps: Vec<Step> = Vec::new();
    let mut pps = 2_000;
    while pps <= 256_000 {
        let step = step(Some(tracer), pps, seconds, placement)?;
        let lost = step.report.lost > 0;
        steps.push(step);
        if lost {
            break;
        }
        pps *= 2;
    }
    if let Some(best) = steps
        .iter()
        .filter(|s| s.report.lost == 0)
        .map(|s| s.pps)
        .max()
    {
        if !steps.iter().any(|s| s.pps == best * 2) {
            steps.push(step(Some(tracer), best * 2, seconds, placement)?);
        }
    }
    let highest = steps.iter().map(|s| s.pps).max().unwrap_or(pps);
    steps.push(step(None, highest, seconds, placement)?);
    Ok(steps)
}

/// `pps` asked of iperf3's client for `seconds`, followed by `tracer` (or not watched).
fn step(tracer: Option<&Path>, pps: u64, seconds: u32, placement: Placement) -> Result<Step> {
    let watching = match tracer {
        Some(tracer) => observer::start_on(
            tracer,
            Observer::TracerFlow,
            "udp port 5201",
            placement.tracer_cpu(),
        )?,
        None => observer::start(Path::new(""), Observer::Baseline, "")?,
    };
    let bits = pps * 64 * 8;
    let client = output(&mut command_in(
        CLIENT,
        &format!(
            "{}iperf3 -c {SERVER_ADDR} -u -b {bits} -l 64 -t {seconds} -J",
            placement.traffic_prefix()
        ),
    ))?;
    let report = watching.stop()?;
    let sent_per_s = sent_per_second(&client)?;
    let events_per_s = report.events as f64 / f64::from(seconds);
    eprintln!(
        "  {pps} datagrams/s asked, {sent_per_s:.0} sent: {} events ({events_per_s:.0}/s), {} lost{}",
        report.events,
        report.lost,
        if tracer.is_some() { "" } else { " (no tracer)" }
    );
    Ok(Step {
        pps,
        traced: tracer.is_some(),
        sent_per_s,
        events_per_s,
        report,
    })
}

/// Datagrams a second iperf3's client sent, from its JSON report.
fn sent_per_second(client_json: &str) -> Result<f64> {
    let json: Value = serde_json::from_str(client_json).context("iperf3 wrote no JSON")?;
    let sum = &json["end"]["sum"];
    sum["packets"]
        .as_f64()
        .zip(sum["seconds"].as_f64())
        .filter(|(_, s)| *s > 0.0)
        .map(|(packets, s)| packets / s)
        .context("iperf3's JSON has no sent sum")
}

pub fn live_table(steps: &[Step]) -> (String, Value) {
    let mut md = String::from(
        "| datagrams/s asked | sent | events received/s | events lost |\n|---|---|---|---|\n",
    );
    for s in steps {
        md.push_str(&if s.traced {
            format!(
                "| {} | {:.0} | {:.0} | {} |\n",
                s.pps, s.sent_per_s, s.events_per_s, s.report.lost
            )
        } else {
            format!("| {}, no tracer | {:.0} | - | - |\n", s.pps, s.sent_per_s)
        });
    }
    let records = steps
        .iter()
        .map(|s| json!({"pps": s.pps, "traced": s.traced, "sent_per_s": s.sent_per_s, "events": s.report.events, "events_per_s": s.events_per_s, "lost": s.report.lost}))
        .collect();
    (md, Value::Array(records))
}

pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
