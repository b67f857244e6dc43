//! Datapath cost: iperf3 over the veth pair with each observer, runs interleaved (baseline,
//! A, B, ..., baseline, A, B, ...) so that a noisy neighbour hits every observer alike.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{
    net::{command_in, iperf_server, output, KillOnDrop, CLIENT, SERVER, SERVER_ADDR},
    observer::{self, Observer, PointFamily},
    summary::Summary,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// One TCP stream, as fast as it goes: Gbit/s.
    TcpBulk,
    /// 64-byte UDP datagrams at the highest rate the sender reaches: received packets/s.
    UdpSmall,
    /// The same from a sender and to a receiver of our own, each on a CPU of its own, the
    /// receiver polling: no wakeups, the sending CPU's time per datagram alone (`polled`).
    UdpSmallPolled,
}

/// The polling receiver's port (iperf3's server holds 5201).
const POLLED_PORT: u16 = 5202;

impl Workload {
    pub fn label(self) -> &'static str {
        match self {
            Workload::TcpBulk => "TCP bulk (Gbit/s)",
            Workload::UdpSmall => "UDP 64 B (kpackets/s received)",
            Workload::UdpSmallPolled => {
                "UDP 64 B, receiver polling on its own CPU (kpackets/s received)"
            }
        }
    }

    pub fn filter(self) -> &'static str {
        match self {
            Workload::TcpBulk => "tcp port 5201",
            Workload::UdpSmall => "udp port 5201",
            Workload::UdpSmallPolled => "udp port 5202",
        }
    }

    /// Whether the workload counts datagrams (64 bytes each), so that a time per packet means
    /// something.
    pub fn counts_packets(self) -> bool {
        !matches!(self, Workload::TcpBulk)
    }

    /// The observers of this workload; with `floor_parts`, the floor once without each family
    /// of points too, and the floor and a filter matching nothing with every netfilter hook
    /// linked.
    fn observers(self, floor_parts: bool) -> Vec<Observer> {
        let without = PointFamily::ALL.map(Observer::TracerAttachOnlyWithout);
        let mut all = vec![Observer::Baseline, Observer::TracerAttachOnly];
        if floor_parts {
            all.extend(without);
            all.push(Observer::TracerAttachOnlyEveryNetfilterHook);
        }
        all.push(Observer::TracerNothing);
        if floor_parts {
            all.push(Observer::TracerNothingEveryNetfilterHook);
        }
        all.extend([
            Observer::TracerFlow,
            Observer::TcpdumpFull,
            Observer::TcpdumpHeaders,
        ]);
        if matches!(self, Workload::TcpBulk) {
            all.push(Observer::TracerFlowXdp);
        }
        all
    }
}

/// One observer's results over the repetitions.
pub struct Row {
    pub workload: Workload,
    pub observer: Observer,
    /// The tracer binary the observer runs, and how the table names the row.
    pub tracer: PathBuf,
    pub label: String,
    pub values: Vec<f64>,
    pub reports: Vec<observer::Report>,
}

/// Runs each observer of `workload` `reps` times, interleaved; with `against`, an older
/// tracer binary's two tracer observers too, in the same rounds, each just after its
/// counterpart. Every other round goes in reverse order: on this machine a run's place in
/// the round moved its result by up to 9 points (64-byte UDP, the same build placed early
/// and late), more than most changes measured here.
pub fn run(
    tracer: &Path,
    against: Option<&Path>,
    workload: Workload,
    reps: usize,
    seconds: u32,
    floor_parts: bool,
) -> Result<Vec<Row>> {
    let _server = iperf_server("")?;
    let row = |observer: Observer, tracer: &Path, label: String| Row {
        workload,
        observer,
        tracer: tracer.to_path_buf(),
        label,
        values: Vec::new(),
        reports: Vec::new(),
    };
    let mut rows: Vec<Row> = Vec::new();
    for observer in workload.observers(floor_parts) {
        rows.push(row(observer, tracer, observer.label().to_string()));
        let compared = matches!(observer, Observer::TracerNothing | Observer::TracerFlow);
        if let Some(old) = against.filter(|_| compared) {
            let label = format!("{} (`{}`)", observer.label(), old.display());
            rows.push(row(observer, old, label));
        }
    }
    for rep in 1..=reps {
        let order: Vec<usize> = if rep % 2 == 1 {
            (0..rows.len()).collect()
        } else {
            (0..rows.len()).rev().collect()
        };
        for i in order {
            let row = &mut rows[i];
            let watching = observer::start(&row.tracer, row.observer, workload.filter())
                .with_context(|| row.label.clone())?;
            let value = measure(workload, seconds)?;
            let report = watching.stop().with_context(|| row.label.clone())?;
            eprintln!(
                "  [{rep}/{reps}] {:<36} {value:>10.2}  (events {}, lost {})",
                row.label, report.events, report.lost
            );
            row.values.push(value);
            row.reports.push(report);
        }
    }
    Ok(rows)
}

/// Runs the client once; Gbit/s received (TCP) or thousands of datagrams/s received (UDP).
pub fn measure(workload: Workload, seconds: u32) -> Result<f64> {
    let client = match workload {
        Workload::TcpBulk => format!("iperf3 -c {SERVER_ADDR} -t {seconds} -J"),
        Workload::UdpSmall => format!("iperf3 -c {SERVER_ADDR} -u -b 0 -l 64 -t {seconds} -J"),
        Workload::UdpSmallPolled => return measure_polled(seconds),
    };
    let json: Value = serde_json::from_str(&output(&mut command_in(CLIENT, &client))?)
        .context("iperf3 wrote no JSON")?;
    let received = &json["end"]["sum_received"];
    let value = if workload.counts_packets() {
        received["bytes"]
            .as_f64()
            .zip(received["seconds"].as_f64())
            .map(|(bytes, s)| bytes / 64.0 / s / 1e3)
    } else {
        received["bits_per_second"].as_f64().map(|b| b / 1e9)
    };
    value.context("iperf3's JSON has no received sum")
}

/// The sender on CPU 0 (where its datagrams' softirq runs too: a veth hands them to the
/// sending CPU's backlog), the polling receiver on CPU 1: thousands of datagrams/s received.
fn measure_polled(seconds: u32) -> Result<f64> {
    let xtask = std::env::current_exe()?;
    let sink = command_in(
        SERVER,
        &format!(
            "taskset -c 1 {} udp-sink --port {POLLED_PORT} --seconds {seconds}",
            xtask.display()
        ),
    )
    .stdout(Stdio::piped())
    .spawn()
    .context("cannot start the polling receiver")?;
    let sink = KillOnDrop(sink);
    // Bound before the first datagram (a datagram to an unbound port is answered, not counted).
    std::thread::sleep(std::time::Duration::from_millis(300));
    output(&mut command_in(
        CLIENT,
        &format!(
            "taskset -c 0 {} udp-blast --to {SERVER_ADDR}:{POLLED_PORT} --seconds {seconds}",
            xtask.display()
        ),
    ))?;
    let said = output_of(sink)?;
    let mut fields = said.split_whitespace().map(str::parse::<f64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(count)), Some(Ok(span))) if span > 0.0 => Ok(count / span / 1e3),
        _ => bail!("the polling receiver said {said:?}: no datagrams received"),
    }
}

/// What a child (a [`KillOnDrop`]) printed once it exits by itself.
fn output_of(child: KillOnDrop) -> Result<String> {
    let mut child = child;
    let mut text = String::new();
    child
        .0
        .stdout
        .take()
        .context("the child's stdout")?
        .read_to_string(&mut text)?;
    let status = child.0.wait()?;
    if !status.success() {
        bail!("exited with {status}");
    }
    Ok(text)
}

pub fn table(rows: &[Row]) -> (String, Value) {
    let mut md = String::from(
        "| workload | observer | median | min - max | ratio to baseline | observer's events / lost (median) |\n|---|---|---|---|---|---|\n",
    );
    let mut records = Vec::new();
    let baseline = |workload: &str| {
        rows.iter()
            .find(|r| r.observer == Observer::Baseline && r.workload.label() == workload)
            .map(|r| Summary::of(&r.values).median)
    };
    for row in rows {
        let s = Summary::of(&row.values);
        let ratio = baseline(row.workload.label()).map(|b| s.median / b);
        let events = Summary::of(
            &row.reports
                .iter()
                .map(|r| r.events as f64)
                .collect::<Vec<_>>(),
        );
        let lost = Summary::of(
            &row.reports
                .iter()
                .map(|r| r.lost as f64)
                .collect::<Vec<_>>(),
        );
        let counts = match row.observer {
            Observer::Baseline => "-".to_string(),
            _ => format!("{:.0} / {:.0}", events.median, lost.median),
        };
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} - {:.2} | {} | {counts} |\n",
            row.workload.label(),
            row.label,
            s.median,
            s.min,
            s.max,
            ratio.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0)),
        ));
        records.push(json!({
            "workload": row.workload.label(),
            "observer": row.label,
            "values": row.values,
            "median": s.median,
            "min": s.min,
            "max": s.max,
            "ratio_to_baseline": ratio,
            "events": row.reports.iter().map(|r| r.events).collect::<Vec<_>>(),
            "lost": row.reports.iter().map(|r| r.lost).collect::<Vec<_>>(),
        }));
    }
    (md, Value::Array(records))
}
