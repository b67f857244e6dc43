//! The soak's table, verdict and figures.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::watch::{End, Sample};

/// Memory may move this much past the anchor with nothing kept: glibc arenas giving back and
/// taking pages, the ring buffer's pages, the names of interfaces met later. Far below what a
/// leak per event would show: at the soak's ~15 k events/s, 8 bytes per event are 70 MB in
/// 10 minutes.
const SLACK_KIB: u64 = 16 * 1024;
/// ... or this share of the memory at the anchor, if larger.
const SLACK_SHARE: f64 = 0.10;
/// The streaming engine's bound on resident memory after the first minute.
const RESIDENT_LIMIT_KIB: u64 = 100 * 1024;

/// Everything a verdict is made from.
pub struct Run<'a> {
    pub minutes: u64,
    pub samples: &'a [Sample],
    /// `None` if the tracer died during the run.
    pub end: Option<&'a End>,
    /// How the tracer died during the run, and its last words.
    pub died: Option<String>,
    pub churn: Value,
    pub traffic: Value,
    pub problems: Vec<String>,
    pub leftovers: Vec<String>,
}

pub struct Report {
    pub markdown: String,
    pub json: Value,
    pub failures: Vec<String>,
}

pub fn build(run: &Run) -> Report {
    let mut failures: Vec<String> = Vec::new();
    let mut md = String::from(
        "| time (s) | RSS (MiB) | fds | programs | links | namespaces held (deleted) | events (status line) | lost | namespaces deleted |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in run.samples {
        let (events, lost) = s.status.map_or(("-".into(), "-".into()), |st| {
            (st.events.to_string(), st.lost.to_string())
        });
        let _ = writeln!(
            md,
            "| {} | {:.1} | {} | {} | {} | {} ({}) | {events} | {lost} | {} |",
            s.secs,
            mib(s.rss_kib),
            s.held.fds,
            s.held.programs,
            s.held.links,
            s.held.netns,
            s.held.netns_unnamed,
            s.namespaces_deleted
        );
    }
    md.push('\n');
    if let Some(died) = &run.died {
        failures.push(format!("the tracer died during the run: {died}"));
    }
    let memory = memory(run, &mut failures);
    let fds = descriptors(run.samples, &mut failures);
    let stats = run.end.map(|end| final_stats(end, &mut failures));
    for left in &run.leftovers {
        failures.push(format!("left behind: {left}"));
    }
    for problem in &run.problems {
        failures.push(problem.clone());
    }
    for line in [&memory, &fds] {
        let _ = writeln!(md, "{line}");
    }
    if let (Some(end), Some(stats)) = (run.end, &stats) {
        let _ = writeln!(
            md,
            "Stopped with SIGINT: {} after {:.1} s; peak resident memory {:.1} MiB (the end of the report included). Final stats: {} events, {} lost; {} packets and {} flows reported.",
            end.status,
            end.exit_secs,
            mib(end.peak_kib),
            stats["events"],
            stats["lost_total"],
            end.output.packets,
            end.output.flows
        );
        // A correctness finding, not part of the verdict (which is about reliability): flows
        // holding packets of another protocol are flows that joined unrelated traffic.
        let foreign = end.output.packets_in_foreign_flows;
        let _ = writeln!(
            md,
            "Flow grouping: {foreign} of {} packets are in a flow of another protocol{}.",
            end.output.packets,
            if foreign > 0 {
                " (unrelated flows were joined)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(md, "Churn: {}", run.churn);
    let _ = writeln!(md, "Traffic: {}", run.traffic);
    if run.leftovers.is_empty() {
        let _ = writeln!(
            md,
            "Left behind: nothing (programs, tc/XDP/netfilter attachments, veths, namespaces)."
        );
    }
    let verdict = if failures.is_empty() { "PASS" } else { "FAIL" };
    let _ = writeln!(md, "\nVerdict: {verdict}");
    for failure in &failures {
        let _ = writeln!(md, "- {failure}");
    }
    let json = json!({
        "minutes": run.minutes,
        "samples": run.samples.iter().map(|s| json!({
            "secs": s.secs,
            "rss_kib": s.rss_kib,
            "fds": s.held.fds,
            "programs": s.held.programs,
            "links": s.held.links,
            "netns_held": s.held.netns,
            "netns_held_deleted": s.held.netns_unnamed,
            "events": s.status.map(|st| st.events),
            "flows": s.status.map(|st| st.flows),
            "lost": s.status.map(|st| st.lost),
            "namespaces_deleted": s.namespaces_deleted,
        })).collect::<Vec<_>>(),
        "memory": memory,
        "descriptors": fds,
        "end": run.end.map(|end| json!({
            "exit_status": end.status.to_string(),
            "exit_secs": end.exit_secs,
            "peak_kib": end.peak_kib,
            "stats": stats,
            "packets": end.output.packets,
            "flows": end.output.flows,
            "packets_in_foreign_flows": end.output.packets_in_foreign_flows,
            "stderr": end.stderr,
        })),
        "churn": run.churn,
        "traffic": run.traffic,
        "leftovers": run.leftovers,
        "failures": failures,
        "verdict": verdict,
    });
    Report {
        markdown: md,
        json,
        failures,
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Growth from the anchor (the 1-minute mark, or half the run if shorter) to the end, against
/// `SLACK`: the streaming engine keeps no event, so its memory is what is open. And the
/// highest resident memory after the anchor, against the engine's bound.
fn memory(run: &Run, failures: &mut Vec<String>) -> String {
    let samples = run.samples;
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        failures.push("no memory sample".into());
        return "Memory: no sample.".into();
    };
    let mark = 60.min(last.secs / 2).max(first.secs);
    let anchor = samples.iter().find(|s| s.secs >= mark).unwrap_or(first);
    let slack = SLACK_KIB.max((anchor.rss_kib as f64 * SLACK_SHARE) as u64);
    let growth = last.rss_kib as i64 - anchor.rss_kib as i64;
    let highest = samples
        .iter()
        .filter(|s| s.secs >= anchor.secs)
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(0);
    let line = format!(
        "Memory: {:.1} MiB at {} s, {:.1} MiB at {} s: {:+.1} MiB (allowed {:.1} MiB of slack); at most {:.1} MiB from {} s on (bound {:.0} MiB).",
        mib(anchor.rss_kib),
        anchor.secs,
        mib(last.rss_kib),
        last.secs,
        growth as f64 / 1024.0,
        mib(slack),
        mib(highest),
        anchor.secs,
        mib(RESIDENT_LIMIT_KIB)
    );
    if growth > slack as i64 {
        failures.push(format!("memory grew without bound: {line}"));
    }
    if highest > RESIDENT_LIMIT_KIB {
        failures.push(format!("resident memory above the bound: {line}"));
    }
    line
}

/// Descriptors, programs and links: the tracer opens all it needs while attaching, so any
/// growth during the trace is a leak.
fn descriptors(samples: &[Sample], failures: &mut Vec<String>) -> String {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return "Descriptors: no sample.".into();
    };
    let max = samples.iter().map(|s| s.held.fds).max().unwrap_or(0);
    let line = format!(
        "Descriptors: {} at {} s, {} at {} s (most {max}); programs {} -> {}, links {} -> {}.",
        first.held.fds,
        first.secs,
        last.held.fds,
        last.secs,
        first.held.programs,
        last.held.programs,
        first.held.links,
        last.held.links
    );
    if last.held.fds > first.held.fds
        || last.held.programs > first.held.programs
        || last.held.links > first.held.links
    {
        failures.push(format!("descriptors leaked: {line}"));
    }
    line
}

/// The final stats record, checked: present, exit 0, nothing left out.
fn final_stats(end: &End, failures: &mut Vec<String>) -> Value {
    if !end.status.success() {
        failures.push(format!(
            "the tracer exited with {} after SIGINT; it said: {}",
            end.status,
            end.stderr.join(" / ")
        ));
    }
    let Some(stats) = &end.output.stats else {
        failures.push("the tracer wrote no stats record".into());
        return Value::Null;
    };
    let events: u64 = stats["events"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    let not_kept = stats["not_kept"].as_u64().unwrap_or(0);
    if not_kept > 0 {
        failures.push(format!(
            "{not_kept} events not kept: the streaming engine should take every one"
        ));
    }
    json!({
        "events": events,
        "lost_total": stats["lost_total"],
        "duration_ns": stats["duration_ns"],
    })
}
