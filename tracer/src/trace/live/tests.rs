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
    let recording = recording::read(path).expect("fixture");
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
    view.finish()
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
