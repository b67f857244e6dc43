//! Live flows against a whole trace's (the same engine, with its bounds and nothing ending)
//! and retransmissions against the whole trace's own search, on every stream recorded on the
//! real kernel; their ending and bounds on made-up timelines.

use super::*;
use crate::{
    analysis::{journey::build, retransmissions::retransmissions},
    model::recording,
};

fn fixture_journeys() -> Vec<(String, Vec<Journey>)> {
    recording::fixture_paths()
        .into_iter()
        .map(|p| {
            let recording = recording::read(&p).expect("fixture");
            let journeys = build(recording.sightings, &recording.context.end);
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                journeys,
            )
        })
        .collect()
}

/// A flow apart from what only the batch has: its tuple, packets, fates, copies and NAT.
fn summary(flow: &Flow) -> String {
    format!(
        "{} {} {} {} {:?} {:?} {:?} {:?}",
        flow.proto,
        flow.client,
        flow.server,
        flow.packets,
        flow.fates,
        flow.journeys,
        flow.copies,
        flow.nat
    )
}

#[test]
fn with_nothing_ending_they_are_the_batch_flows_and_retransmissions() {
    let never = Limits {
        idle_ns: u64::MAX / 2,
        closed_ns: u64::MAX / 2,
        kept_per_flow: usize::MAX / 2,
        kept_in_all: usize::MAX / 2,
        ..Limits::default()
    };
    for (name, journeys) in fixture_journeys() {
        let mut batch = journeys.clone();
        let (batch_flows, expected_repeats) = whole_trace(&mut batch);
        let expected: Vec<String> = batch_flows.iter().map(summary).collect();
        assert_eq!(
            expected_repeats,
            retransmissions(&batch),
            "{name}: retransmissions"
        );

        let mut live = LiveFlows::new(never);
        let mut repeats = std::collections::HashMap::new();
        let mut streamed = journeys;
        for journey in &mut streamed {
            if let Some(first) = live.add(journey) {
                repeats.insert(journey.id, first);
            }
        }
        assert!(live.ended().is_empty(), "{name}: a flow ended");
        let flows: Vec<String> = live.finish().iter().map(|f| summary(&f.flow)).collect();
        assert_eq!(flows, expected, "{name}");
        assert_eq!(repeats, expected_repeats, "{name}: retransmissions");
        let ids = |js: &[Journey]| js.iter().map(|j| j.flow_id).collect::<Vec<_>>();
        assert_eq!(ids(&streamed), ids(&batch), "{name}: flow ids");
    }
}

/// A fixture's journeys again and again, each round a second later, with its ports moved so
/// that every round is a flow of its own.
fn rounds(count: u64) -> Vec<Journey> {
    let (_, journeys) = fixture_journeys()
        .into_iter()
        .find(|(name, _)| name == "ping_delivered.jsonl")
        .expect("the ping fixture");
    let mut out = Vec::new();
    for round in 0..count {
        for journey in &journeys {
            let mut j = journey.clone();
            j.id = out.len() as u64 + 1;
            for s in &mut j.sightings {
                s.ts_ns += round * 1_000_000_000;
                s.sport = s.sport.wrapping_add(round as u16);
            }
            out.push(j);
        }
    }
    out
}

#[test]
fn a_flow_ends_once_idle_for_its_timeout_in_the_events_clock() {
    let limits = Limits {
        idle_ns: 2_500_000_000,
        ..Limits::default()
    };
    let mut live = LiveFlows::new(limits);
    let mut ended = Vec::new();
    for mut journey in rounds(10) {
        live.add(&mut journey);
        ended.extend(live.ended().into_iter().map(|f| f.flow.id));
    }
    // A round a second: by the last round's time, the flows of rounds 1..7 were idle 2.5 s.
    assert_eq!(ended, (1..=7).collect::<Vec<u64>>());
    assert_eq!(live.open(), 3);
    let rest: Vec<u64> = live.finish().iter().map(|f| f.flow.id).collect();
    assert_eq!(rest, vec![8, 9, 10]);
}

#[test]
fn a_full_table_ends_its_longest_idle_flow_early_and_counts_it() {
    let limits = Limits {
        max_open: 4,
        ..Limits::default()
    };
    let mut live = LiveFlows::new(limits);
    let mut early = Vec::new();
    for mut journey in rounds(10) {
        live.add(&mut journey);
        early.extend(live.ended().into_iter().inspect(|f| assert!(f.ended_early)));
    }
    assert_eq!(live.open(), 4);
    assert_eq!(live.ended_early, 6);
    let ids: Vec<u64> = early.iter().map(|f| f.flow.id).collect();
    assert_eq!(ids, (1..=6).collect::<Vec<u64>>());
}

#[test]
fn a_flow_keeps_a_bounded_number_of_journeys_and_counts_the_rest() {
    let limits = Limits {
        kept_per_flow: 3,
        ..Limits::default()
    };
    let mut live = LiveFlows::new(limits);
    // The same flow again and again: the ports stay.
    let mut journeys = rounds(10);
    let port = journeys[0].headers().sport;
    for j in &mut journeys {
        for s in &mut j.sightings {
            s.sport = port;
        }
    }
    let total = journeys.len() as u64;
    for journey in &mut journeys {
        live.add(journey);
    }
    let flows = live.finish();
    assert_eq!(flows.len(), 1);
    let flow = &flows[0];
    assert_eq!(flow.flow.packets, total, "every packet counted");
    // The first three, then those that did not make it (this fixture has some: packets whose
    // end the short recording did not see), as many again.
    let kept = flow.journeys.len();
    assert_eq!(kept, 6, "three kept, then three that did not make it");
    assert!(flow.journeys[3..].iter().all(|j| matches!(
        j.fate.kind,
        crate::analysis::fate::FateKind::Dropped | crate::analysis::fate::FateKind::Unknown
    )));
    assert_eq!(
        flow.flow.journeys.len(),
        kept,
        "the flow lists those it kept"
    );
    assert_eq!(flow.not_kept, total - kept as u64);
}

#[test]
fn all_open_flows_together_keep_a_bounded_number_of_journeys() {
    let limits = Limits {
        kept_in_all: 5,
        ..Limits::default()
    };
    let mut live = LiveFlows::new(limits);
    let mut journeys = rounds(10);
    let total = journeys.len() as u64;
    for journey in &mut journeys {
        live.add(journey);
    }
    let flows = live.finish();
    let kept: usize = flows.iter().map(|f| f.journeys.len()).sum();
    let problems = |f: &LiveFlow| {
        f.journeys
            .iter()
            .filter(|j| {
                matches!(
                    j.fate.kind,
                    crate::analysis::fate::FateKind::Dropped
                        | crate::analysis::fate::FateKind::Unknown
                )
            })
            .count()
    };
    let kept_problems: usize = flows.iter().map(problems).sum();
    assert!(
        kept - kept_problems <= 5,
        "{kept} kept, {kept_problems} problems"
    );
    assert!(kept <= 10, "{kept} kept in all");
    let counted: u64 = flows.iter().map(|f| f.flow.packets).sum();
    let not_kept: u64 = flows.iter().map(|f| f.not_kept).sum();
    assert!(
        not_kept > 0 && counted <= total,
        "the others counted, not kept"
    );
}

#[test]
fn ended_flows_leave_nothing_behind() {
    let limits = Limits {
        idle_ns: 100_000_000,
        closed_ns: 100_000_000,
        ..Limits::default()
    };
    let mut live = LiveFlows::new(limits);
    let mut ended = 0;
    // A thousand rounds of the ping fixture's flows, a second apart, each round with its own
    // ports: a thousand flows come and go.
    for mut journey in rounds(1000) {
        live.add(&mut journey);
        ended += live.ended().len();
    }
    assert!(ended >= 990, "{ended} flows ended");
    assert!(live.open() <= 10, "{} flows open", live.open());
    assert!(
        live.owner.len() <= 10 * 8 && live.deadlines.len() == live.open(),
        "what the ended flows held is gone: {} tuples, {} deadlines",
        live.owner.len(),
        live.deadlines.len()
    );
    assert!(live.kept_in_all <= 10 * limits.kept_per_flow * 2);
}
