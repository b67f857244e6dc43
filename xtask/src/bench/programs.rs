//! What each kernel program costs per run: `kernel.bpf_stats_enabled` counts runs and the
//! time spent in them while it is on. Measured in a run of its own after the datapath runs,
//! because the counting itself costs two clock reads per program run.

use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};

use harness::programs::{tracer_programs, StatsOn};

use super::{
    datapath::{self, Workload},
    observer::{self, Observer},
};

/// One program's runs and time during the measured run.
pub struct ProgramCost {
    pub name: String,
    pub runs: u64,
    pub ns: u64,
}

/// One measured run: the tracer's programs, most time first, and the workload's rate.
pub struct Measured {
    pub workload: Workload,
    pub observer: Observer,
    pub costs: Vec<ProgramCost>,
    /// What the workload measured (its unit is in its label).
    pub rate: f64,
}

/// Runs `workload` once under `observer` with the kernel's program statistics on.
pub fn measure(
    tracer: &Path,
    workload: Workload,
    observer: Observer,
    seconds: u32,
) -> Result<Measured> {
    let watching = observer::start(tracer, observer, workload.filter())?;
    let _stats = StatsOn::enable()?;
    let before = tracer_programs()?;
    let measured = datapath::measure(workload, seconds);
    let after = tracer_programs()?;
    drop(_stats);
    watching.stop()?;
    let rate = measured?;
    let mut costs: Vec<ProgramCost> = after
        .into_iter()
        .filter_map(|(id, now)| {
            let (runs0, ns0) = before.get(&id).map_or((0, 0), |b| (b.runs, b.run_ns));
            (now.runs > runs0).then(|| ProgramCost {
                name: now.name,
                runs: now.runs - runs0,
                ns: now.run_ns - ns0,
            })
        })
        .collect();
    costs.sort_by_key(|c| std::cmp::Reverse(c.ns));
    Ok(Measured {
        workload,
        observer,
        costs,
        rate,
    })
}

/// A markdown table and the raw values of the measured runs (each `seconds` long), then for
/// the workloads that count datagrams the programs' time per datagram received: set beside
/// the time a datagram takes at the measured rate, it says how much of that time is theirs.
pub fn table(measured: &[Measured], seconds: u32) -> (String, Value) {
    let mut md = String::from(
        "| workload | observer | program | runs | mean ns per run | share of the programs' time |\n|---|---|---|---|---|---|\n",
    );
    let mut per_packet = String::from(
        "| workload | observer | datagrams/s | ns per datagram at that rate | programs' ns per datagram | programs' runs per datagram |\n|---|---|---|---|---|---|\n",
    );
    let mut records = Vec::new();
    for Measured {
        workload,
        observer,
        costs,
        rate,
    } in measured
    {
        let total: u64 = costs.iter().map(|c| c.ns).sum();
        if workload.counts_packets() && *rate > 0.0 {
            let datagrams = rate * 1e3 * seconds as f64;
            let runs: u64 = costs.iter().map(|c| c.runs).sum();
            per_packet.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.1} |\n",
                workload.label(),
                observer.label(),
                rate * 1e3,
                1e6 / rate,
                total as f64 / datagrams,
                runs as f64 / datagrams,
            ));
        }
        for cost in costs {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {:.1}% |\n",
                workload.label(),
                observer.label(),
                cost.name,
                cost.runs,
                cost.ns as f64 / cost.runs as f64,
                100.0 * cost.ns as f64 / total.max(1) as f64,
            ));
            records.push(json!({
                "workload": workload.label(),
                "observer": observer.label(),
                "program": cost.name,
                "runs": cost.runs,
                "ns": cost.ns,
            }));
        }
    }
    md.push_str("\nPer datagram (the runs above):\n\n");
    md.push_str(&per_packet);
    (md, Value::Array(records))
}
