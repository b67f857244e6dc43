//! `cargo xtask bench`: what the tracer costs, measured side by side in one run (root,
//! namespaces; numbers, not pass/fail). Prints markdown tables and writes them with the raw
//! values to `target/bench/`.

mod datapath;
pub mod flood;
mod net;
mod observer;
mod pipeline;
pub mod polled;
mod programs;
mod resources;
mod summary;

use std::fmt::Write as _;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::{build, cmd, setup};

#[derive(Args)]
pub struct BenchArgs {
    /// Repetitions of each datapath run (interleaved across observers).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Seconds of traffic per datapath run.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Seconds of the short-flow flood of the memory benchmark.
    #[arg(long, default_value_t = 60)]
    flood_seconds: u64,
    /// Flows per second of the flood.
    #[arg(long, default_value_t = 2000)]
    flood_rate: u64,
    /// The datapath's workloads (repeatable); all by default.
    #[arg(long, value_enum)]
    workload: Vec<datapath::Workload>,
    /// Only these parts (repeatable); all by default.
    #[arg(long, value_enum)]
    only: Vec<Part>,
    /// Another tracer binary (an older build) to measure beside this tree's, runs alternating
    /// (the offline pipeline, and the datapath's tracer observers): `git worktree add /tmp/old REV`, `cargo build --release -p
    /// tracer` there, then `--against /tmp/old/target/release/tracer`.
    #[arg(long)]
    against: Option<std::path::PathBuf>,
    /// In the datapath, the floor (the points with programs returning at once) also without
    /// each family of points in turn (netfilter's, tc's, the tracepoints): what each costs;
    /// and the floor and a filter matching nothing with every netfilter hook linked
    /// (`--netfilter-hooks all`, as labs trace): what linking only those needed saves.
    #[arg(long)]
    floor_parts: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Datapath,
    Pipeline,
    Memory,
    Attach,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    setup::run()?;
    if !cmd::is_root() {
        bail!("the benchmarks load eBPF programs and build namespaces: run `cargo xtask bench` as root");
    }
    let tracer = build::tracer(true)?;
    let wants = |part| args.only.is_empty() || args.only.contains(&part);
    let mut md = String::new();
    let mut results = serde_json::Map::new();
    let header = format!(
        "Measured by `cargo xtask bench` on {} CPUs, kernel {}.\n",
        pipeline::cpus(),
        net::sh("uname -r")?.trim()
    );
    md.push_str(&header);

    if wants(Part::Datapath) {
        let _pair = net::pair()?;
        let workloads: Vec<datapath::Workload> = if args.workload.is_empty() {
            datapath::Workload::value_variants().to_vec()
        } else {
            args.workload.clone()
        };
        let mut rows = Vec::new();
        for &workload in &workloads {
            eprintln!(
                "datapath: {}, {} runs of {} s each",
                workload.label(),
                args.reps,
                args.seconds
            );
            rows.extend(datapath::run(
                &tracer,
                args.against.as_deref(),
                workload,
                args.reps,
                args.seconds,
                args.floor_parts,
            )?);
        }
        let (table, value) = datapath::table(&rows);
        writeln!(md, "\n## Datapath\n\n{table}")?;
        results.insert("datapath".into(), value);
        let mut costs = Vec::new();
        for &workload in &workloads {
            let _server = net::iperf_server("")?;
            for observer in [
                observer::Observer::TracerNothing,
                observer::Observer::TracerFlow,
            ] {
                eprintln!(
                    "programs: {} with {}, kernel.bpf_stats_enabled on",
                    workload.label(),
                    observer.label()
                );
                let measured = programs::measure(&tracer, workload, observer, args.seconds)?;
                costs.push(measured);
            }
        }
        let (table, value) = programs::table(&costs, args.seconds);
        writeln!(
            md,
            "\n### Per program run (a run of its own with `kernel.bpf_stats_enabled=1`)\n\n{table}"
        )?;
        results.insert("programs".into(), value);
    }
    if wants(Part::Pipeline) {
        eprintln!("pipeline: userspace alone, one core");
        let mut tracers = vec![tracer.as_path()];
        tracers.extend(args.against.as_deref());
        let offline = pipeline::offline(&tracers, 3)?;
        let (table, value) = offline[0].table();
        writeln!(md, "\n## Event pipeline\n\n{table}")?;
        results.insert("pipeline_offline".into(), value);
        if let (Some(against), Some(other)) = (&args.against, offline.get(1)) {
            let (table, value) = other.table();
            writeln!(
                md,
                "\nThe same, measured alternately with it, for `{}`:\n\n{table}",
                against.display()
            )?;
            results.insert("pipeline_offline_against".into(), value);
        }
        eprintln!("pipeline: the streaming stitcher, one core");
        let (table, value) = pipeline::streaming(&tracer, 3)?;
        writeln!(md, "\n{table}")?;
        results.insert("pipeline_streaming".into(), value);
        let _pair = net::pair()?;
        let mut live = serde_json::Map::new();
        for placement in [pipeline::Placement::Shared, pipeline::Placement::Apart] {
            eprintln!(
                "pipeline: live, stepped datagram rates, {}",
                placement.label()
            );
            let steps = pipeline::live(&tracer, args.seconds, placement)?;
            let (table, value) = pipeline::live_table(&steps);
            writeln!(md, "\nLive, {}:\n\n{table}", placement.label())?;
            live.insert(format!("{placement:?}").to_lowercase(), value);
        }
        results.insert("pipeline_live".into(), live.into());
    }
    if wants(Part::Memory) {
        eprintln!(
            "memory: {} s of {} new flows/s",
            args.flood_seconds, args.flood_rate
        );
        let _pair = net::pair()?;
        let memory = resources::memory(&tracer, args.flood_seconds, args.flood_rate)?;
        let (table, value) = memory.table();
        writeln!(md, "\n## Memory\n\n{table}")?;
        results.insert("memory".into(), value);
    }
    if wants(Part::Attach) {
        eprintln!("attach time");
        let mut table = String::from("| namespaces | median s | min - max |\n|---|---|---|\n");
        let mut values = Vec::new();
        for count in [1, 10] {
            let s = resources::attach_time(&tracer, count, 3)?;
            writeln!(
                table,
                "| {count} | {:.2} | {:.2} - {:.2} |",
                s.median, s.min, s.max
            )?;
            values.push(
                json!({"namespaces": count, "median_s": s.median, "min_s": s.min, "max_s": s.max}),
            );
        }
        writeln!(md, "\n## Attach time (start to ready file)\n\n{table}")?;
        results.insert("attach".into(), json!(values));
    }

    let dir = build::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("results.md"), &md)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    println!("{md}");
    eprintln!("written to {}", dir.display());
    Ok(())
}
