//! Sinks: JSON lines (the contract in the README's schema table) and text for people.

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use serde::Serialize;
use serde_json::{json, Value};
use tracer_common::{
    catalogue::Tap,
    hook::{Position, Side},
};

use crate::{
    analysis::flow::Flow,
    analysis::journey::Journey,
    analysis::Analysis,
    model::protocol::Proto,
    model::recording::NamespaceCounters,
    report::explanation::{self, words::packet_words},
    report::packet_record::PacketRecord,
    report::paint::Paint,
    report::stats::Stats,
    report::Selection,
};

pub use crate::report::SCHEMA_VERSION;

/// The `packet` record of `journey` (see [`PacketRecord`]), as a line of text.
#[cfg(test)]
pub fn packet_json(journey: &Journey, analysis: &Analysis) -> String {
    let mut line = Vec::new();
    // Writing to memory cannot fail.
    let _ = PacketRecord::of(journey, analysis).write(&mut line);
    String::from_utf8(line).unwrap_or_default()
}

/// The `packet` record of `journey` written as a line to `out`, with no string between.
pub fn write_packet_json(
    out: &mut impl Write,
    journey: &Journey,
    analysis: &Analysis,
) -> io::Result<()> {
    PacketRecord::of(journey, analysis).write(&mut *out)?;
    out.write_all(b"\n")
}

/// A `flow` record: the flow's fields with its packets and sentences, in the order of their
/// names (as the `Value` they were once built as wrote them; the unit test compares).
#[derive(Serialize)]
struct FlowRecord<'a> {
    client: &'a str,
    #[serde(skip_serializing_if = "<[u64]>::is_empty")]
    copy_ids: &'a [u64],
    /// Through a `Value`, whose keys are in name order (rare: a flow that went wrong).
    diverge: Option<Value>,
    explanation: Vec<String>,
    fates: &'a BTreeMap<&'static str, u64>,
    id: u64,
    #[serde(skip_serializing_if = "is_zero")]
    incomplete_packets: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    nat: &'a [String],
    packet_ids: &'a [u64],
    packets: u64,
    #[serde(skip_serializing_if = "is_zero")]
    packets_not_listed: u64,
    proto: Proto,
    schema_version: u32,
    server: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The `flow` record of `flow` written as a line to `out`, straight from the flow (no JSON
/// tree between). `not_kept`: the packets a live flow counted and did not keep, whose
/// sentences are then drawn from those it kept.
pub fn write_flow_json(
    out: &mut impl Write,
    flow: &Flow,
    analysis: &Analysis,
    not_kept: u64,
) -> io::Result<()> {
    let mut explanation = explanation::flow(flow, analysis);
    if not_kept > 0 {
        explanation.push(format!(
            "Its sentences are drawn from the {} packets it kept of {}.",
            flow.journeys.len(),
            flow.packets
        ));
    }
    let record = FlowRecord {
        client: &flow.client,
        copy_ids: &flow.copies,
        diverge: flow.diverge.as_ref().map(|fate| json!(fate)),
        explanation,
        fates: &flow.fates,
        id: flow.id,
        incomplete_packets: flow.incomplete_packets,
        nat: &flow.nat,
        packet_ids: &flow.journeys,
        packets: flow.packets,
        packets_not_listed: not_kept,
        proto: flow.proto,
        schema_version: SCHEMA_VERSION,
        server: &flow.server,
        kind: "flow",
    };
    serde_json::to_writer(&mut *out, &record)?;
    out.write_all(b"\n")
}

pub fn write_json(out: &mut impl Write, analysis: &Analysis, stats: &Stats) -> io::Result<()> {
    write_json_selected(out, analysis, stats, Selection::All)
}

/// The JSON lines of the packets and flows `selection` keeps, and the statistics.
pub fn write_json_selected(
    out: &mut impl Write,
    analysis: &Analysis,
    stats: &Stats,
    selection: Selection,
) -> io::Result<()> {
    for journey in analysis.journeys.iter().filter(|j| selection.journey(j)) {
        write_packet_json(out, journey, analysis)?;
    }
    for flow in selection.flows(analysis) {
        write_flow_json(out, flow, analysis, 0)?;
    }
    let checks = explanation::counter_sentences(analysis);
    let counters = &analysis.context.counters;
    let stats = stats_json(stats, incomplete(analysis), counters, &checks);
    writeln!(out, "{stats}")
}

/// The `stats` record: the statistics, packets and flows marked incomplete, the kernel's
/// counters and their checks.
pub fn stats_json(
    stats: &Stats,
    (packets, flows): (usize, usize),
    counters: &[NamespaceCounters],
    counter_checks: &[String],
) -> Value {
    let mut stats = stats.to_json();
    stats["incomplete_packets"] = json!(packets);
    stats["incomplete_flows"] = json!(flows);
    stats["counters"] = json!(counters);
    stats["counter_checks"] = json!(counter_checks);
    stats
}

/// One block per flow: its packets along the path with the capture points drawn, their fates,
/// then the flow's explanation. (The commands choose a selection; the goldens take all.)
#[cfg(test)]
pub fn write_text(
    out: &mut impl Write,
    analysis: &Analysis,
    stats: &Stats,
    paint: Paint,
) -> io::Result<()> {
    write_text_selected(out, analysis, stats, paint, Selection::All)
}

/// The text report of the packets and flows `selection` keeps.
pub fn write_text_selected(
    out: &mut impl Write,
    analysis: &Analysis,
    stats: &Stats,
    paint: Paint,
    selection: Selection,
) -> io::Result<()> {
    for flow in selection.flows(analysis) {
        let title = format!(
            "flow {}: {} {} <-> {}",
            flow.id, flow.proto, flow.client, flow.server
        );
        writeln!(out, "{}", paint.bold(&title))?;
        let journeys = flow.journeys.iter().filter_map(|id| analysis.journey(*id));
        for journey in journeys.filter(|j| selection.journey(j)) {
            write_packet(out, journey, analysis, paint)?;
            // Its copies next to it, each a journey of its own.
            for copy in flow.copies.iter().filter_map(|id| analysis.journey(*id)) {
                if copy.copy.as_ref().is_some_and(|c| c.of == journey.id) {
                    write_packet(out, copy, analysis, paint)?;
                }
            }
        }
        writeln!(out, "  why:")?;
        for sentence in explanation::flow(flow, analysis) {
            writeln!(out, "    {sentence}")?;
        }
        writeln!(out)?;
    }
    let flowless = analysis.journeys.iter().filter(|j| j.flow_id == 0);
    for journey in flowless.filter(|j| selection.journey(j)) {
        write_packet(out, journey, analysis, paint)?;
    }
    write_footer(out, analysis, stats, paint)
}

/// After the live view, which showed each packet as it went: a line per flow with its packets
/// by fate, and the why sentences of the flows where a packet did not make it; then the
/// counters' checks and the statistics, as the full report ends.
pub fn write_flow_summary(
    out: &mut impl Write,
    analysis: &Analysis,
    stats: &Stats,
    paint: Paint,
    selection: Selection,
) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        paint.bold("flows (each packet was shown above as it went):")
    )?;
    for flow in selection.flows(analysis) {
        write_flow_line(out, flow, analysis, paint)?;
    }
    write_footer(out, analysis, stats, paint)
}

/// A flow's line: its packets by fate; under it, when a packet did not make it, the flow's why
/// sentences (drawn from the journeys `analysis` holds).
pub fn write_flow_line(
    out: &mut impl Write,
    flow: &Flow,
    analysis: &Analysis,
    paint: Paint,
) -> io::Result<()> {
    let count = |kind: &str| flow.fates.get(kind).copied().unwrap_or(0);
    let by_fate: Vec<String> = flow.fates.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let line = format!(
        "flow {}: {} {} <-> {}: {} ({})",
        flow.id,
        flow.proto,
        flow.client,
        flow.server,
        explanation::words::plural(flow.packets, "packet"),
        by_fate.join(", ")
    );
    let wrong = match (count("dropped"), count("unknown")) {
        (0, 0) => None,
        (0, _) => Some("unknown"),
        _ => Some("dropped"),
    };
    let Some(kind) = wrong else {
        return writeln!(out, "{line}");
    };
    writeln!(out, "{}", paint.fate(kind, &line))?;
    for sentence in explanation::flow(flow, analysis) {
        writeln!(out, "    {sentence}")?;
    }
    Ok(())
}

/// The counters' checks, the statistics, and what events lost may have cut.
fn write_footer(
    out: &mut impl Write,
    analysis: &Analysis,
    stats: &Stats,
    paint: Paint,
) -> io::Result<()> {
    let checks = explanation::counter_sentences(analysis);
    write_footer_lines(out, &checks, stats, incomplete(analysis), paint)
}

/// The footer of every text report: the counters' checks, the statistics, and how many
/// packets and flows events lost may have cut.
pub fn write_footer_lines(
    out: &mut impl Write,
    counter_checks: &[String],
    stats: &Stats,
    (packets, flows): (usize, usize),
    paint: Paint,
) -> io::Result<()> {
    for sentence in counter_checks {
        writeln!(out, "{sentence}")?;
    }
    writeln!(out, "{}", stats.summary())?;
    if packets > 0 {
        let line = format!(
            "{packets} packets in {flows} flows may be incomplete: events were lost while they \
             were alive (marked 'incomplete' above)"
        );
        writeln!(out, "{}", paint.fate("unknown", &line))?;
    }
    Ok(())
}

/// Packets, and flows with such packets, that events lost may have cut.
fn incomplete(analysis: &Analysis) -> (usize, usize) {
    let packets = analysis.journeys.iter().filter(|j| j.incomplete).count();
    let flows = analysis
        .flows
        .iter()
        .filter(|f| f.incomplete_packets > 0)
        .count();
    (packets, flows)
}

fn write_packet(
    out: &mut impl Write,
    journey: &Journey,
    analysis: &Analysis,
    paint: Paint,
) -> io::Result<()> {
    let s = journey.headers();
    let copy = journey
        .copy
        .as_ref()
        .map_or(String::new(), |c| format!(" (a copy of packet {})", c.of));
    writeln!(
        out,
        "  packet {}: {} len {}{copy}",
        journey.id,
        packet_words(s),
        s.ip_len
    )?;
    write_path(out, journey, paint)?;
    let fate = &journey.fate;
    // A copy's end is not a packet's fate: it is said plainly, never painted as a problem.
    let (label, painted_as) = match journey.copy {
        Some(_) => ("end of the copy", "copy"),
        None => ("fate", fate.kind.name()),
    };
    let mut line = format!("    {label}: {}", fate.kind.name());
    if let Some(point) = fate.point() {
        let at = if fate.kind == crate::analysis::fate::FateKind::Dropped {
            "after"
        } else {
            "at"
        };
        line.push_str(&format!(" {at} {point}"));
    }
    if let Some(reason) = &fate.reason {
        line.push_str(&format!(", reason {reason}"));
    }
    writeln!(out, "{}", paint.fate(painted_as, &line))?;
    if journey.incomplete {
        writeln!(out, "    incomplete: events were lost while it was alive")?;
    }
    for sentence in explanation::packet(journey, analysis) {
        writeln!(out, "      {sentence}")?;
    }
    Ok(())
}

/// A packet's path, point by point, with where tcpdump's taps sit: the text report's packet
/// block, and the live view's `-v`.
pub fn write_path(out: &mut impl Write, journey: &Journey, paint: Paint) -> io::Result<()> {
    let start = journey.sightings[0].ts_ns;
    for point in &journey.sightings {
        let ifname = point
            .ifname
            .as_deref()
            .map(|ifname| crate::kernel::veth::with_peer(ifname, point.peer.as_deref()));
        let place = match (&point.netns_name, &ifname) {
            (Some(ns), Some(ifname)) => format!("{ns}/{ifname}"),
            (None, Some(ifname)) => ifname.clone(),
            (Some(ns), None) => ns.to_string(),
            (None, None) => format!("netns:{}", point.netns),
        };
        // tcpdump's tap, drawn beside the point next to it (see the hook catalogue): just after
        // netif_receive on the way in, just before the driver (dev_xmit's first) on the way out.
        let tap = paint.tap(&format!("    {:->14} tcpdump on {place} {:-<20}", "", ""));
        let at_tap = point.hook.info().tap == Tap::At;
        if at_tap && point.hook.side() == Side::Tx && point.position != Position::Last {
            writeln!(out, "{tap}")?;
        }
        let extra = match (&point.reason, &point.location, &point.note) {
            (Some(reason), Some(location), _) => format!("  reason {reason} at {location}"),
            (_, _, Some(note)) => format!("  {note}"),
            _ => String::new(),
        };
        // The outer packet a tunnel made of it: where it crosses the underlay.
        let extra = match crate::analysis::tunnel::path_note(point) {
            Some(outer) => format!("  [{outer}]{extra}"),
            None => extra,
        };
        let hook = match point.position.name() {
            Some(position) => format!("{} ({position})", point.hook),
            None => point.hook.name().to_string(),
        };
        let offset_us = point.ts_ns.saturating_sub(start) as f64 / 1000.0;
        writeln!(out, "    +{offset_us:>9.1}us  {hook:<22} {place}{extra}")?;
        if at_tap && point.hook.side() == Side::Rx {
            writeln!(out, "{tap}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::recording;

    /// What the `flow` records were before they were written straight: the flow as a `Value`
    /// with the keys added after its fields.
    fn flow_by_value(flow: &Flow, analysis: &Analysis, not_kept: u64) -> String {
        let mut value = serde_json::to_value(flow).unwrap();
        value["type"] = json!("flow");
        value["schema_version"] = json!(SCHEMA_VERSION);
        value["packet_ids"] = json!(flow.journeys);
        value["explanation"] = json!(explanation::flow(flow, analysis));
        if not_kept > 0 {
            value["packets_not_listed"] = json!(not_kept);
            value["explanation"]
                .as_array_mut()
                .unwrap()
                .push(json!(format!(
                    "Its sentences are drawn from the {} packets it kept of {}.",
                    flow.journeys.len(),
                    flow.packets
                )));
        }
        value.to_string()
    }

    #[test]
    fn every_flow_of_every_fixture_is_written_as_its_value_was() {
        let mut flows = 0;
        for path in recording::fixture_paths() {
            let analysis = Analysis::new(recording::read(&path).unwrap(), None);
            for flow in &analysis.flows {
                for not_kept in [0, 3] {
                    let mut written = Vec::new();
                    write_flow_json(&mut written, flow, &analysis, not_kept).unwrap();
                    let expected = flow_by_value(flow, &analysis, not_kept) + "\n";
                    assert_eq!(String::from_utf8(written).unwrap(), expected, "{path:?}");
                }
                flows += 1;
            }
        }
        assert!(flows > 20, "{flows} flows");
    }
}
