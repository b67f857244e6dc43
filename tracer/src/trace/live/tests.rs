//! The streaming engine's output does not depend on how the events were read: every recorded
//! fixture, fed 1, 7 or 4096 events at a time, gives the same text and the same JSON, with
//! flows ending mid-trace.

use std::{cell::RefCell, io::Write, path::Path, rc::Rc};

use super::*;
use crate::{model::recording, report::stats::Stats};

/// A buffer the view writes to and the test reads after.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn replay(path: &Path, format: Format, chunk: usize) -> String {
    replay_recording(&recording::read(path).expect("fixture"), format, chunk)
}

fn replay_recording(recording: &recording::Recording, format: Format, chunk: usize) -> String {
    let options = LiveOptions {
        selection: Selection::All,
        paths: true,
        format,
        summary_every_ns: None,
    };
    let mut view = LiveView::new(Vec::new(), options, WallClock::from_offset(0));
    // Short timeouts, so that flows end while the fixture goes on.
    view.set_flow_limits(Limits {
        closed_ns: 1_000_000,
        idle_ns: 50_000_000,
        ..Limits::default()
    });
    let out = Shared::default();
    view.write_to(Box::new(out.clone()));
    for batch in recording.sightings.chunks(chunk) {
        for s in batch {
            view.push(s.clone());
        }
        view.advance(None);
    }
    view.finish(&recording.context.rules)
        .report(&recording.context, &Stats::default())
        .expect("report");
    let text = String::from_utf8(out.0.borrow().clone()).expect("utf-8");
    text
}

#[test]
fn the_output_is_the_same_however_the_events_were_read() {
    let paths = recording::fixture_paths();
    let mut flows_ended_mid_trace = 0;
    for path in &paths {
        for format in [Format::Text, Format::Json] {
            let whole = replay(path, format, 4096);
            for chunk in [1, 7] {
                assert_eq!(
                    replay(path, format, chunk),
                    whole,
                    "{} read {chunk} at a time ({format:?})",
                    path.display()
                );
            }
            if matches!(format, Format::Json) {
                // A flow record before the last packet record: it ended mid-trace.
                let lines: Vec<&str> = whole.lines().collect();
                let last_packet = lines
                    .iter()
                    .rposition(|l| l.contains("\"type\":\"packet\""));
                let first_flow = lines.iter().position(|l| l.contains("\"type\":\"flow\""));
                if let (Some(p), Some(f)) = (last_packet, first_flow) {
                    flows_ended_mid_trace += usize::from(f < p);
                }
            }
        }
    }
    assert!(
        flows_ended_mid_trace >= 3,
        "flows ended mid-trace in {flows_ended_mid_trace} fixtures only"
    );
}

#[test]
fn the_open_flows_are_summed_up_every_so_often() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/local_in_syn_drop.jsonl");
    let recording = recording::read(&path).expect("fixture");
    let options = LiveOptions {
        selection: Selection::All,
        paths: false,
        format: Format::Text,
        summary_every_ns: Some(100_000_000),
    };
    let mut view = LiveView::new(Vec::new(), options, WallClock::from_offset(0));
    let out = Shared::default();
    view.write_to(Box::new(out.clone()));
    let first = recording.sightings[0].ts_ns;
    for s in &recording.sightings {
        view.push(s.clone());
    }
    // The rules, as a trace reads them after a netfilter drop (none here: the fixture has
    // none), so that the dropped SYN is written and its flow summed up.
    view.add_rules(RulesSnapshot {
        started_ns: recording.sightings.last().expect("events").ts_ns,
        read: None,
        namespaces: Vec::new(),
    });
    // The events' clock moved on in quiet ticks, as the trace's timer moves it.
    for tick in 0..=30 {
        view.advance(Some(first + tick * 50_000_000));
    }
    let text = String::from_utf8(out.0.borrow().clone()).expect("utf-8");
    let summaries = text.matches("flows open at ").count();
    assert!(summaries >= 10, "{summaries} summaries in 1.5 s:\n{text}");
    // The SYN's flow, with why it went wrong, in the summary.
    assert!(
        text.contains("(2 dropped)") || text.contains("dropped)"),
        "{text}"
    );
    assert!(
        text.contains("    TCP "),
        "why sentences under the flow's line:\n{text}"
    );
}

/// A rule of `netns_name`'s INPUT chain that counted one drop.
fn input_rule(netns_name: &str) -> NamespaceRules {
    use crate::kernel::rules::{DropRule, RuleSource};
    NamespaceRules {
        netns_name: netns_name.to_string(),
        rules: vec![DropRule {
            source: RuleSource::Iptables,
            family: "ip".to_string(),
            table: "filter".to_string(),
            chain: "INPUT".to_string(),
            hooks: vec!["input".to_string()],
            id: 1,
            text: "-A INPUT -p tcp -m tcp --dport 8080 -j DROP".to_string(),
            rose: Some(1),
        }],
    }
}

#[test]
fn a_netfilter_drop_waits_for_the_rules_read_after_it_and_its_line_names_the_rule() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/syn_local_in_drop.jsonl");
    let recording = recording::read(&path).expect("fixture");
    let drop = recording
        .sightings
        .iter()
        .find(|s| s.reason.as_deref() == Some("NETFILTER_DROP"))
        .expect("the fixture's SYN is dropped by netfilter");
    let rules = vec![input_rule(
        drop.netns_name.as_deref().expect("a named namespace"),
    )];
    let options = LiveOptions {
        selection: Selection::All,
        paths: false,
        format: Format::Text,
        summary_every_ns: None,
    };
    let mut view = LiveView::new(Vec::new(), options, WallClock::from_offset(0));
    let out = Shared::default();
    view.write_to(Box::new(out.clone()));
    for s in &recording.sightings {
        view.push(s.clone());
    }
    let last = recording.sightings.last().expect("events").ts_ns;
    let text = || String::from_utf8(out.0.borrow().clone()).expect("utf-8");
    // Every journey closed, but the drop's rule is not known yet: it and what came after wait.
    view.advance(Some(last + 10_000_000_000));
    assert!(!text().contains("DROPPED"), "{}", text());
    assert_eq!(
        view.rules_wanted(),
        Some(RulesWanted {
            since_ns: drop.ts_ns,
            netns: vec![drop.netns]
        })
    );
    // Rules read before the drop cannot name it.
    view.add_rules(RulesSnapshot {
        started_ns: drop.ts_ns - 1,
        read: None,
        namespaces: rules.clone(),
    });
    // Read after it in another namespace: it does not either.
    view.add_rules(RulesSnapshot {
        started_ns: drop.ts_ns + 1,
        read: Some(vec![drop.netns + 1]),
        namespaces: Vec::new(),
    });
    view.advance(Some(last + 10_000_000_000));
    assert!(!text().contains("DROPPED"), "{}", text());
    assert_eq!(
        view.rules_wanted(),
        Some(RulesWanted {
            since_ns: drop.ts_ns,
            netns: vec![drop.netns]
        })
    );
    // Read after it: the line names the rule.
    view.add_rules(RulesSnapshot {
        started_ns: drop.ts_ns + 2,
        read: Some(vec![drop.netns]),
        namespaces: rules,
    });
    view.advance(Some(last + 10_000_000_000));
    let dropped: Vec<String> = text()
        .lines()
        .filter(|l| l.contains("DROPPED"))
        .map(str::to_string)
        .collect();
    assert!(!dropped.is_empty(), "{}", text());
    assert!(
        dropped[0].contains(
            "(NETFILTER_DROP), by `-A INPUT -p tcp -m tcp --dport 8080 -j DROP` (iptables table \
             ip filter, chain INPUT, rule 1); tcpdump sees"
        ),
        "{}",
        dropped[0]
    );
    let end = view.finish(&[]);
    drop_end(end);
}

/// Ends a view whose output the test has read.
fn drop_end(end: LiveEnd) {
    end.report(&recording::Context::default(), &Stats::default())
        .expect("report");
}

/// The view of `path`'s events with the drop rules read as a trace reads them: when a
/// netfilter drop waits for them, a little after it (fed one event at a time), or every read
/// given at once (a replay of the recording). Returns the output and the reads.
fn with_rules(path: &Path, reads: Option<&[RulesSnapshot]>) -> (String, Vec<RulesSnapshot>) {
    let recording = recording::read(path).expect("fixture");
    let options = LiveOptions {
        selection: Selection::All,
        paths: false,
        format: Format::Json,
        summary_every_ns: None,
    };
    let mut view = LiveView::new(Vec::new(), options, WallClock::from_offset(0));
    let out = Shared::default();
    view.write_to(Box::new(out.clone()));
    let mut made = Vec::new();
    match reads {
        Some(reads) => {
            for read in reads {
                view.add_rules(read.clone());
            }
            for batch in recording.sightings.chunks(4096) {
                for s in batch {
                    view.push(s.clone());
                }
                view.advance(None);
            }
        }
        None => {
            for s in &recording.sightings {
                view.push(s.clone());
                view.advance(None);
                if let Some(wanted) = view.rules_wanted() {
                    let at = wanted.since_ns;
                    let drop = recording
                        .sightings
                        .iter()
                        .find(|d| d.ts_ns == at)
                        .expect("the drop waiting");
                    let read = RulesSnapshot {
                        started_ns: s.ts_ns.max(at) + 1_000,
                        read: Some(wanted.netns),
                        namespaces: vec![input_rule(drop.netns_name.as_deref().unwrap_or("?"))],
                    };
                    made.push(read.clone());
                    view.add_rules(read);
                }
            }
        }
    }
    view.finish(&[])
        .report(&recording.context, &Stats::default())
        .expect("report");
    let text = String::from_utf8(out.0.borrow().clone()).expect("utf-8");
    (text, made)
}

#[test]
fn drops_named_while_tracing_are_named_the_same_in_the_replay() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/syn_local_in_drop.jsonl");
    let (live, reads) = with_rules(&path, None);
    assert!(!reads.is_empty(), "no drop waited for the rules");
    assert!(
        live.contains("\"rules\":[")
            && live.contains("-A INPUT -p tcp -m tcp --dport 8080 -j DROP"),
        "{live}"
    );
    let (replayed, _) = with_rules(&path, Some(&reads));
    assert_eq!(replayed, live);
}

/// A kernel without BPF netfilter links (before 6.4) sees most received segments at no point
/// past tc ingress: each fixture without its netfilter and socket events. TCP's answer tells
/// such a segment arrived; the live view must say so as the report of the whole trace does,
/// however its events were read.
#[test]
fn segments_tcp_answered_are_delivered_live_as_in_the_report() {
    let fates = |journeys: Vec<(u64, String, String)>| {
        let mut journeys = journeys;
        journeys.sort();
        journeys
    };
    let mut answered = 0;
    for path in recording::fixture_paths() {
        let mut recording = recording::read(&path).expect("fixture");
        recording
            .sightings
            .retain(|s| !s.hook.is_netfilter() && s.hook != tracer_common::hook::Hook::Socket);
        let live = replay_recording(&recording, Format::Json, 4096);
        for chunk in [1, 7] {
            assert_eq!(
                replay_recording(&recording, Format::Json, chunk),
                live,
                "{} read {chunk} at a time",
                path.display()
            );
        }
        let live = fates(
            live.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
                .filter(|r| r["type"] == "packet")
                .map(|r| {
                    (
                        r["path"][0]["ts_ns"].as_u64().unwrap_or(0),
                        r["fate"]["kind"].to_string(),
                        r["fate"]["by"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect(),
        );
        let report = crate::analysis::Analysis::new(recording, None);
        let report = fates(
            report
                .journeys
                .iter()
                .map(|j| {
                    (
                        j.sightings.first().map_or(0, |s| s.ts_ns),
                        serde_json::to_string(&j.fate.kind).expect("a fate"),
                        j.fate.by.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        );
        assert_eq!(live, report, "{}", path.display());
        answered += live
            .iter()
            .filter(|(_, _, by)| by.starts_with("answered by TCP"))
            .count();
    }
    assert!(
        answered >= 20,
        "{answered} segments answered in all the fixtures"
    );
}
