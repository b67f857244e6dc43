//! A lab's verdict on the tracer: the fates of the key packets against the injected fault,
//! and the tracer's tcpdump verdicts against what the real tcpdumps captured. Pure.

use std::collections::BTreeMap;
use tracer_common::hook::Hook;

use serde::Serialize;

use super::scenario::Expect;
use crate::{
    analysis::journey::Journey,
    analysis::Analysis,
    model::sighting::{Proto, Sighting},
    report::explanation::words::packet_words,
};

#[derive(Debug, Default, Clone, Serialize)]
pub struct Score {
    pub lab: String,
    pub packets_checked: usize,
    pub fates_correct: usize,
    pub verdicts_checked: usize,
    pub verdicts_agreeing: usize,
    pub problems: Vec<String>,
}

impl Score {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
            && self.packets_checked > 0
            && self.fates_correct == self.packets_checked
            && self.verdicts_agreeing == self.verdicts_checked
    }

    pub fn line(&self) -> String {
        format!(
            "{}: {} key packets, {} fates correct; {} tcpdump verdicts, {} agreeing: {}",
            self.lab,
            self.packets_checked,
            self.fates_correct,
            self.verdicts_checked,
            self.verdicts_agreeing,
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// Checks each expectation on the journeys whose headers it picks (packets, not their copies:
/// a copy's end is its own).
pub fn fates(analysis: &Analysis, expect: &[Expect], score: &mut Score) {
    for e in expect {
        let picked: Vec<_> = analysis
            .journeys
            .iter()
            .filter(|j| j.copy.is_none() && (e.is)(j.headers()))
            .take(if e.first_only { 1 } else { usize::MAX })
            .collect();
        if picked.len() < e.min {
            score.problems.push(format!(
                "expected at least {} of {}, the tracer followed {}",
                e.min,
                e.what,
                picked.len()
            ));
        }
        let first_picked = picked
            .first()
            .and_then(|j| j.sightings.first())
            .map_or(0, |s| s.ts_ns);
        for (round, journey) in picked.iter().enumerate() {
            score.packets_checked += 1;
            let fate = &journey.fate;
            let partial = &analysis.context.end.partial_hooks;
            let right = match e.not {
                Some(wrong) => fate.kind != wrong,
                None => {
                    fate.kind == e.fate
                        && e.point.is_none_or(|p| {
                            fate.point().as_deref() == Some(p) || unobservable(p, journey, partial)
                        })
                        && e.reason.is_none_or(|r| fate.reason_name() == Some(r))
                }
            };
            let unnamed = right && rule_unnamed(journey, e, analysis);
            if unnamed {
                score.problems.push(format!(
                    "packet {} ({}): dropped by netfilter at {}, but no rule whose counter rose \
                     there was named",
                    journey.id,
                    e.what,
                    fate.point().unwrap_or_default()
                ));
            } else if right {
                score.fates_correct += 1;
            } else if let Some(wrong) = e.not {
                score.problems.push(format!(
                    "packet {} ({}): expected anything but {}, the tracer says {} {} {}",
                    journey.id,
                    e.what,
                    wrong.name(),
                    fate.kind.name(),
                    fate.point().unwrap_or_default(),
                    fate.reason_name().unwrap_or("")
                ));
            } else {
                score.problems.push(format!(
                    "packet {} ({}): expected {} {} {}, the tracer says {} {} {}\n{}",
                    journey.id,
                    e.what,
                    e.fate.name(),
                    e.point.unwrap_or("anywhere"),
                    e.reason.unwrap_or(""),
                    fate.kind.name(),
                    fate.point().unwrap_or_default(),
                    fate.reason_name().unwrap_or(""),
                    path_words(journey, analysis, (round + 1, first_picked))
                ));
            }
        }
    }
}

/// The path the tracer saw, point by point, for a check that failed: what a run that cannot
/// be repeated (a CI machine's) leaves to study. Times are from the trace's first event and
/// from the first packet of the same check (`(which of them this is, the first's time)`), so
/// that the rounds of a retransmitted packet can be told apart.
fn path_words(
    journey: &crate::analysis::journey::Journey,
    analysis: &Analysis,
    (round, first_picked): (usize, u64),
) -> String {
    let start = analysis
        .journeys
        .iter()
        .filter_map(|j| j.sightings.first())
        .map(|s| s.ts_ns)
        .min()
        .unwrap_or(0);
    let first = journey.sightings.first().map_or(0, |s| s.ts_ns);
    let last = journey.sightings.last().map_or(0, |s| s.ts_ns);
    let mut path = Vec::new();
    let _ =
        crate::report::output::write_path(&mut path, journey, crate::report::paint::Paint::Plain);
    format!(
        "    packet {round} of this check, first seen {:.6} s after the trace's first event and \
         {:.6} s after the first packet of this check; {}; its path:\n{}",
        first.saturating_sub(start) as f64 / 1e9,
        first.saturating_sub(first_picked) as f64 / 1e9,
        nearest_tracepoint_events(analysis, first, last),
        String::from_utf8_lossy(&path).trim_end()
    )
}

/// The tracepoint events of the whole trace nearest before `first` and after `last`: whether
/// the kernel ran the tracer's tracepoint programs around a packet none of them saw (issue
/// 21's failures: tc and netfilter programs saw such a packet, no tracepoint program did).
fn nearest_tracepoint_events(analysis: &Analysis, first: u64, last: u64) -> String {
    let tracepoint = analysis
        .journeys
        .iter()
        .flat_map(|j| &j.sightings)
        .filter(|s| !s.hook.info().mechanism.tracepoints().is_empty());
    // (time, hook) of the nearest one on each side.
    let mut before: Option<(u64, &str)> = None;
    let mut after: Option<(u64, &str)> = None;
    for s in tracepoint {
        if s.ts_ns < first && before.is_none_or(|(t, _)| s.ts_ns > t) {
            before = Some((s.ts_ns, s.hook.name()));
        }
        if s.ts_ns > last && after.is_none_or(|(t, _)| s.ts_ns < t) {
            after = Some((s.ts_ns, s.hook.name()));
        }
    }
    let words = |found: Option<(u64, &str)>, side: &str| match found {
        Some((t, hook)) => format!(
            "{:.6} s {side} ({hook})",
            t.abs_diff(if side == "before" { first } else { last }) as f64 / 1e9
        ),
        None => format!("none {side}"),
    };
    format!(
        "the nearest tracepoint events of the trace: {}, {}",
        words(before, "before"),
        words(after, "after")
    )
}

/// Whether a lab's rule dropped the packet at a netfilter hook the tracer saw, yet the tracer
/// did not name the rule (every lab's rule drops with a counter: iptables counts all rules,
/// the labs' nftables rules have `counter`).
fn rule_unnamed(
    journey: &crate::analysis::journey::Journey,
    e: &Expect,
    analysis: &Analysis,
) -> bool {
    e.reason == Some("NETFILTER_DROP")
        && journey
            .fate
            .hook
            .is_some_and(|h| h.name().starts_with("nf_"))
        && crate::report::explanation::culprits(journey, &analysis.context.rules).is_empty()
}

/// Whether the expected point `point` ("nf_local_in (last)") is one this kernel shows only in
/// part and this packet was not seen there: then the drop or delivery is placed at the last
/// point that did see it, which is as precise as the kernel allows.
fn unobservable(
    point: &str,
    journey: &crate::analysis::journey::Journey,
    partial: &[String],
) -> bool {
    let hook = point.split(' ').next().unwrap_or(point);
    partial.iter().any(|h| h == hook) && !journey.sightings.iter().any(|s| s.hook.name() == hook)
}

/// What tells packets apart in a capture and in the tracer's journeys.
type Identity = (
    Proto,
    String,
    String,
    u16,
    u16,
    u32,
    u32,
    u32,
    crate::model::tcp_flags::TcpFlags,
);

fn identity(s: &Sighting) -> Identity {
    let address = |a: Option<std::net::IpAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    (
        s.proto,
        address(s.src),
        address(s.dst),
        s.sport,
        s.dport,
        s.ip_id,
        s.tcp_seq,
        s.tcp_ack,
        s.tcp_flags,
    )
}

/// Compares, packet by packet, the tracer's "would tcpdump on `netns`/`ifname` see it" with
/// what the real tcpdump there captured.
pub fn verdicts(
    analysis: &Analysis,
    (netns, ifname): (&str, &str),
    captured: &[Sighting],
    score: &mut Score,
) {
    let mut counts: BTreeMap<Identity, Tally> = BTreeMap::new();
    for journey in &analysis.journeys {
        let here: Vec<_> = analysis
            .captures(journey.id)
            .iter()
            .filter(|c| {
                c.netns_name.as_deref() == Some(netns) && c.ifname.as_deref() == Some(ifname)
            })
            .collect();
        if here.is_empty() {
            continue;
        }
        let headers = encapsulated_at(journey, (netns, ifname))
            .unwrap_or_else(|| headers_at(journey, netns, ifname));
        let tally = counts
            .entry(identity(headers))
            .or_insert_with(|| Tally::new(headers));
        tally.journeys.push(journey.id);
        tally.seen += usize::from(here.iter().any(|c| c.seen));
    }
    for packet in captured {
        counts
            .entry(identity(packet))
            .or_insert_with(|| Tally::new(packet))
            .in_capture += 1;
    }
    for tally in counts.into_values() {
        let packets = tally.journeys.len().max(tally.in_capture);
        let wrong = tally.seen.abs_diff(tally.in_capture);
        score.verdicts_checked += packets;
        score.verdicts_agreeing += packets - wrong.min(packets);
        if wrong > 0 {
            score.problems.push(format!(
                "tcpdump on {netns}/{ifname} captured {} x {}; the tracer said it would see {} ({})",
                tally.in_capture,
                tally.words,
                tally.seen,
                paths(analysis, &tally.journeys)
            ));
        }
    }
}

/// The packet's headers as a capture on `netns`/`ifname` shows them: NAT rewrites them on the
/// way (MASQUERADE at POSTROUTING, before the transmit tap; DNAT at PREROUTING, after the
/// receive tap), so those of the points beside that interface's taps, where it has them.
fn headers_at<'a>(
    journey: &'a crate::analysis::journey::Journey,
    netns: &str,
    ifname: &str,
) -> &'a Sighting {
    journey
        .sightings
        .iter()
        .find(|s| {
            matches!(
                s.hook,
                Hook::Xdp | Hook::NetifReceive | Hook::TcIngress | Hook::TcEgress | Hook::DevXmit
            ) && s.proto != Proto::Unknown
                && s.netns_name.as_deref() == Some(netns)
                && s.ifname.as_deref() == Some(ifname)
        })
        .unwrap_or_else(|| journey.headers())
}

/// The outer packet the journey was at `netns`/`ifname` in, where it crossed that interface
/// inside a tunnel: a capture there sees those headers, not the packet's own.
fn encapsulated_at<'a>(
    journey: &'a Journey,
    (netns, ifname): (&str, &str),
) -> Option<&'a Sighting> {
    journey.sightings.iter().find(|s| {
        s.tunnel.is_some()
            && s.netns_name.as_deref() == Some(netns)
            && s.ifname.as_deref() == Some(ifname)
    })
}

/// For one packet identity at one interface: the tracer's journeys with a verdict there, how
/// many of them it says tcpdump saw, and how many tcpdump captured.
struct Tally {
    words: String,
    journeys: Vec<u64>,
    seen: usize,
    in_capture: usize,
}

impl Tally {
    fn new(headers: &Sighting) -> Tally {
        Tally {
            words: packet_words(headers),
            journeys: Vec::new(),
            seen: 0,
            in_capture: 0,
        }
    }
}

/// What the tracer saw of these journeys, point by point: what a failed check needs to be
/// understood from its output alone (a CI log).
fn paths(analysis: &Analysis, ids: &[u64]) -> String {
    if ids.is_empty() {
        return "it followed no packet with these headers there".to_string();
    }
    ids.iter()
        .filter_map(|&id| analysis.journey(id))
        .map(|j| {
            let points: Vec<String> = j
                .sightings
                .iter()
                .map(|s| {
                    let ifname = s.ifname.as_deref().unwrap_or("?");
                    match s.position.name() {
                        Some(p) => format!("{}/{p}@{ifname}", s.hook),
                        None => format!("{}@{ifname}", s.hook),
                    }
                })
                .collect();
            format!("packet {}: {}", j.id, points.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
