//! Labs: a throwaway topology, one injected fault, real traffic, the tracer and real tcpdumps
//! side by side, the story of what happened, and a check of the tracer against the fault.

mod capture;
mod check;
mod dropper;
mod forged;
mod labs;
pub mod neutrality;
mod scenario;
pub mod topology;
mod traffic;

use crate::kernel::{loader::TcMode, netfilter::NetfilterHooks};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use self::{capture::Tcpdump, scenario::Scenario, topology::Topology};
use crate::{
    analysis::Analysis,
    kernel::filter,
    report::stdout::{report, Format},
    trace::session::{self, TraceOptions},
};

pub use self::{check::Score, labs::LABS};

pub struct Lab {
    pub name: &'static str,
    pub summary: &'static str,
    /// Builds the topology and the fault, and says how to drive and judge the lab.
    pub build: fn(&mut Topology) -> Result<Scenario>,
}

pub fn find(name: &str) -> Option<&'static Lab> {
    LABS.iter().find(|lab| lab.name == name)
}

/// How much a run prints.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Commands, captures, the tracer's report, the lesson, the fix and the check.
    Full,
    /// The check only (`lab run --all`).
    Check,
}

/// How a lab traces its namespaces.
fn trace_options(netns: &[String], filter: &str) -> Result<TraceOptions> {
    Ok(TraceOptions {
        netns: netns.to_vec(),
        interfaces: Vec::new(),
        filter: filter::compile(&[filter.to_string()])?,
        ring_bytes: 1 << 22,
        count: None,
        snaplen: 0,
        // A lab shows the whole path, driver receive included; its veths carry little.
        xdp: true,
        tc: TcMode::Auto,
        max_events: 500_000,
        // A lab's report is its check and its explanation, written once the traffic is done.
        live: None,
        attach_only: false,
        skip_points: Vec::new(),
        // A lab shows the whole path through netfilter, rules or not.
        netfilter_hooks: NetfilterHooks::All,
    })
}

/// Runs one lab; with `keep`, its namespaces stay for exploration; with `recorder`, its raw
/// events are written as they are read.
pub fn run(
    lab: &Lab,
    format: Format,
    keep: bool,
    detail: Detail,
    recorder: Option<crate::model::recording::Recorder>,
) -> Result<Score> {
    let mut topology = Topology::new();
    let scenario =
        (lab.build)(&mut topology).with_context(|| format!("building lab {}", lab.name))?;
    let options = trace_options(&scenario.netns, &scenario.filter)?;
    let filters: Vec<String> = scenario
        .captures
        .iter()
        .map(|(netns, ifname)| scenario.capture_filter(netns, ifname).to_string())
        .collect();
    let mut tcpdumps = Vec::new();
    for ((netns, ifname), filter) in scenario.captures.iter().zip(&filters) {
        tcpdumps.push(Tcpdump::start(netns, ifname, filter)?);
    }
    let traffic = scenario.traffic;
    let mut stopped = Vec::new();
    let session::Traced {
        recording, stats, ..
    } = session::trace(
        &options,
        session::Outputs {
            recorder,
            ..Default::default()
        },
        || {
            let traffic = tokio::task::spawn_blocking(traffic);
            let stopped = &mut stopped;
            Ok(async move {
                if let Ok(Err(e)) = traffic.await {
                    eprintln!("tracer: lab traffic failed: {e:#}");
                }
                // Let the last events of the stack reach the ring buffer.
                tokio::time::sleep(Duration::from_millis(300)).await;
                // The captures stop before the tracer does: what they saw, it could see.
                for tcpdump in tcpdumps {
                    stopped.push(tcpdump.stop_with_packets());
                }
            })
        },
    )?;
    let captured = stopped.into_iter().collect::<Result<Vec<_>>>()?;
    // The other tool's programs and the listening sockets go now; the topology after the report.
    drop(scenario.held);

    let analysis = Analysis::new(recording, None);
    let mut score = Score {
        lab: lab.name.to_string(),
        ..Score::default()
    };
    check::fates(&analysis, &scenario.expect, &mut score);
    for ((netns, ifname), (_, packets)) in scenario.captures.iter().zip(&captured) {
        check::verdicts(&analysis, (netns, ifname), packets, &mut score);
    }
    if stats.lost_total() > 0 {
        score
            .problems
            .push(format!("{} events were lost", stats.lost_total()));
    }
    if stats.missed_total() > 0 {
        score.problems.push(format!(
            "the kernel skipped {} events ({:?})",
            stats.missed_total(),
            stats.missed
        ));
    }

    if detail == Detail::Full {
        match format {
            Format::Text => {
                println!("== lab {}: {}", lab.name, lab.summary);
                println!("What you would type to build it:");
                for command in &topology.commands {
                    println!("  $ {command}");
                }
                for (((netns, ifname), (lines, _)), filter) in
                    scenario.captures.iter().zip(&captured).zip(&filters)
                {
                    println!(
                        "What tcpdump showed:\n  $ ip netns exec {netns} tcpdump -i {ifname} -n {filter}"
                    );
                    if lines.is_empty() {
                        println!("    (nothing)");
                    }
                    for line in lines {
                        println!("    {line}");
                    }
                }
                println!("What the tracer found:");
                report(format, &analysis, &stats)?;
                println!("What happened: {}", scenario.lesson);
                println!("Fix: {}", scenario.fix);
            }
            Format::Json => report(format, &analysis, &stats)?,
        }
    }
    match format {
        Format::Text => {
            println!("Check: {}", score.line());
            for problem in &score.problems {
                println!("  - {problem}");
            }
        }
        Format::Json => {
            let mut record = serde_json::to_value(&score)?;
            record["type"] = json!("lab");
            record["passed"] = json!(score.passed());
            println!("{record}");
        }
    }
    if keep {
        let kept = topology.keep();
        eprintln!(
            "tracer: kept the namespaces {}; remove them with `tracer lab cleanup`",
            kept.join(", ")
        );
    }
    Ok(score)
}
