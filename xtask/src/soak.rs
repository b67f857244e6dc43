//! `cargo xtask soak`: the tracer over a long run (root, namespaces). Mixed traffic flows the
//! whole time while namespaces and interfaces are created and deleted under it; its memory,
//! descriptors and BPF programs are sampled every 10 s; at the end it is stopped with SIGINT
//! and what it reports and what it leaves behind are checked. Prints a table and a verdict,
//! writes `target/bench/soak.{md,json}`, exits non-zero on a crash, a leak or unbounded memory.

mod churn;
mod report;
mod topology;
mod traffic;
mod watch;

use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;

use crate::{build, cmd, setup};
use churn::Churn;
use topology::{Network, A, B, FILTER};
use traffic::Traffic;
use watch::Tracer;

#[derive(Args)]
pub struct SoakArgs {
    /// Length of the run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    minutes: u64,
    /// Seconds between two namespaces created and deleted.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    churn_every: u64,
    /// Keep the tracer's JSON output as target/bench/soak-trace.jsonl (about 20 MB a second
    /// with --bulk-mbit 80).
    #[arg(long)]
    keep_trace: bool,
    /// Rate of the bulk TCP flow in Mbit/s (each segment is about 15 events).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    bulk_mbit: u32,
}

/// Seconds between two samples.
const SAMPLE_EVERY: u64 = 10;
/// The streaming engine reports the flows still open at exit; longer is a hang.
const EXIT_LIMIT: Duration = Duration::from_secs(60);
/// How long the kernel may take to release what a process held (links and namespaces are
/// freed asynchronously after the last descriptor closes).
const RELEASE_LIMIT: Duration = Duration::from_secs(10);

pub fn run(args: &SoakArgs) -> Result<()> {
    setup::run()?;
    if !cmd::is_root() {
        bail!("the soak loads eBPF programs and builds namespaces: run `cargo xtask soak` as root");
    }
    let tracer_bin = build::tracer(true)?;
    let dir = build::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let seconds = args.minutes * 60;
    let pool = churn::pool_size(seconds, args.churn_every);
    eprintln!(
        "soak: {} min, a namespace every {} s, {pool} of them traced from the start",
        args.minutes, args.churn_every
    );
    let mut network = Network::create(pool)?;
    let mut traced = vec![A.to_string(), B.to_string()];
    traced.extend(network.pool.iter().map(|ns| ns.name.clone()));
    // --xdp: XDP links on interfaces that vanish are among what the soak exercises. --live:
    // the streaming engine, which keeps no event, reports packets as they close.
    let keep = args.keep_trace.then(|| dir.join("soak-trace.jsonl"));
    let extra = ["--xdp", "--live"];
    let mut tracer = Tracer::start(&tracer_bin, &traced, &extra, FILTER, keep.as_deref())?;
    let traffic = Traffic::start(seconds, args.bulk_mbit)?;
    let churn = Churn::start(
        std::mem::take(&mut network.pool),
        Duration::from_secs(args.churn_every),
        // The last cycle ends before the tracer is stopped.
        Duration::from_secs(seconds.saturating_sub(args.churn_every + 5)),
        std::sync::Arc::clone(&traffic.counts),
    );

    let start = Instant::now();
    let mut samples = Vec::new();
    let mut died = None;
    for tick in 1..=seconds / SAMPLE_EVERY {
        let due = Duration::from_secs(tick * SAMPLE_EVERY);
        while start.elapsed() < due && died.is_none() {
            std::thread::sleep(Duration::from_millis(200));
            if let Some(status) = tracer.exited()? {
                died = Some(format!(
                    "{status}; it said: {}",
                    tracer.stderr().join(" / ")
                ));
            }
        }
        if died.is_some() {
            break;
        }
        let sample = tracer.sample(tick * SAMPLE_EVERY, churn.progress.deleted());
        let status = sample.status.map_or("no status line yet".into(), |st| {
            format!("{} events, {} flows, {} lost", st.events, st.flows, st.lost)
        });
        eprintln!(
            "  {:>4} s: {:.1} MiB, {} fds, {} programs, {} links, {} namespaces held ({} deleted), {status}; {} namespaces deleted",
            sample.secs,
            sample.rss_kib as f64 / 1024.0,
            sample.held.fds,
            sample.held.programs,
            sample.held.links,
            sample.held.netns,
            sample.held.netns_unnamed,
            sample.namespaces_deleted
        );
        samples.push(sample);
    }

    let progress = churn.stop();
    let program_ids = watch::held(tracer.pid()).program_ids;
    let end = match died {
        Some(_) => None,
        None => Some(tracer.stop(EXIT_LIMIT)?),
    };
    let counts = &traffic.counts;
    let traffic_json = json!({
        "short_tcp_exchanges_ok": counts.exchanges_ok.load(Relaxed),
        "short_tcp_exchanges_failed": counts.exchanges_failed.load(Relaxed),
        "syns_dropped_by_iptables": counts.syns_dropped.load(Relaxed),
        "connections_refused": counts.refused.load(Relaxed),
        "datagrams_dropped_by_iptables": counts.udp_dropped.load(Relaxed),
        "unexpected_outcomes": counts.unexpected.load(Relaxed),
    });
    let mut problems = traffic.stop();
    let churn_json = json!({
        "pool_traced_from_start": pool,
        "pool_deleted": progress.pool_deleted.load(Relaxed),
        "fresh_created": progress.fresh_created.load(Relaxed),
        "fresh_deleted": progress.fresh_deleted.load(Relaxed),
        "links_deleted_under_the_tracer": progress.links_deleted.load(Relaxed),
        "cycles_failed": progress.cycles_failed.load(Relaxed),
    });
    for error in progress.errors.lock().expect("errors").iter() {
        problems.push(format!("churn {error}"));
    }
    let leftovers = leftovers(&program_ids, network)?;

    let report = report::build(&report::Run {
        minutes: args.minutes,
        samples: &samples,
        end: end.as_ref(),
        died,
        churn: churn_json,
        traffic: traffic_json,
        problems,
        leftovers,
    });
    let md = format!(
        "Soak: `cargo xtask soak --minutes {} --bulk-mbit {}`, kernel {}, filter `{FILTER}`, `--xdp --live --format json` (the streaming engine).\n\n{}",
        args.minutes,
        args.bulk_mbit,
        harness::sh("uname -r")?.trim(),
        report.markdown
    );
    std::fs::write(dir.join("soak.md"), &md)?;
    std::fs::write(
        dir.join("soak.json"),
        serde_json::to_string_pretty(&report.json)?,
    )?;
    println!("{md}");
    eprintln!("written to {}", dir.join("soak.{md,json}").display());
    if !report.failures.is_empty() {
        bail!("soak failed: {}", report.failures.join("; "));
    }
    Ok(())
}

/// What the tracer left once it exited: its programs still loaded, programs still attached in
/// the long-lived namespaces, veths of deleted namespaces still in `soak-b` (a namespace held
/// past its deletion), and, after the soak's own cleanup, namespaces of ours.
fn leftovers(program_ids: &[u32], network: Network) -> Result<Vec<String>> {
    let mut left =
        topology::wait_until_empty(RELEASE_LIMIT, || topology::still_loaded(program_ids))?;
    for (ns, ifname) in [(A, "va"), (B, "vb")] {
        left.extend(topology::bpf_attached(ns, ifname)?);
    }
    let peers = topology::wait_until_empty(RELEASE_LIMIT, topology::peers_in_b)?;
    left.extend(peers.into_iter().map(|p| format!("interface {p} in {B}")));
    drop(network);
    left.extend(
        topology::ours()
            .into_iter()
            .map(|ns| format!("namespace {ns}")),
    );
    Ok(left)
}
