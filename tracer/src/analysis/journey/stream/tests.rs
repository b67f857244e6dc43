//! The streaming stitcher fed as a live trace reads its ring (a few events at a time, out of
//! order across CPUs) against the same stitcher given a whole trace at once (a report), on
//! every stream recorded on the real kernel (tests/fixtures), and its windows on made-up
//! timelines.

use super::*;
use crate::{
    analysis::fate::{FateKind, TraceEnd},
    analysis::journey::{build, from_closed, Journey},
    model::recording,
};

fn fixtures() -> Vec<(String, Vec<Sighting>)> {
    recording::fixture_paths()
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, recording::read(&p).expect("fixture").sightings)
        })
        .collect()
}

/// A journey apart from the number it was given: its points (time, hook), its end, whether
/// it is a copy.
type Shape = (Vec<(u64, &'static str)>, FateKind, bool);

fn shape(journeys: &[Journey]) -> Vec<Shape> {
    let mut shapes: Vec<_> = journeys
        .iter()
        .map(|j| {
            let points: Vec<_> = j
                .sightings
                .iter()
                .map(|s| (s.ts_ns, s.hook.name()))
                .collect();
            (points, j.fate.kind, j.copy.is_some())
        })
        .collect();
    shapes.sort_by_key(|(points, _, _)| points.first().copied());
    shapes
}

/// Feeds `sightings` in the given order, `batch` at a time (a ring read), and completes
/// every journey that closes.
fn streamed(sightings: Vec<Sighting>, window: Window, batch: usize) -> Vec<Journey> {
    let end = TraceEnd::default();
    let mut stitcher = Stitcher::new(window);
    let mut journeys = Vec::new();
    let complete = |closed: Vec<Closed>, journeys: &mut Vec<Journey>| {
        for c in closed {
            let first_id = journeys.len() as u64 + 1;
            journeys.extend(from_closed(c, &end, first_id));
        }
    };
    for chunk in sightings.chunks(batch) {
        for s in chunk {
            stitcher.push(s.clone());
        }
        let closed = stitcher.advance();
        complete(closed, &mut journeys);
    }
    complete(stitcher.finish(), &mut journeys);
    journeys
}

/// Long enough that no recorded packet is cut short, as for a whole trace.
const NO_HOLD: Window = Window::WHOLE_TRACE;

#[test]
fn every_recorded_trace_stitches_the_same_as_a_whole_and_as_it_arrives() {
    for (name, sightings) in fixtures() {
        let whole = build(sightings.clone(), &TraceEnd::default());
        for batch in [1, 7, 4096] {
            let live = streamed(sightings.clone(), NO_HOLD, batch);
            assert_eq!(
                shape(&live),
                shape(&whole),
                "{name}, read {batch} at a time"
            );
        }
    }
}

#[test]
fn sightings_read_out_of_order_within_the_reorder_window_stitch_the_same() {
    for (name, mut sightings) in fixtures() {
        sightings.sort_by_key(|s| s.ts_ns);
        let whole = build(sightings.clone(), &TraceEnd::default());
        // Each pair swapped: a later event of one CPU read before an earlier one of another.
        for pair in sightings.chunks_mut(2) {
            pair.reverse();
        }
        let live = streamed(sightings, NO_HOLD, 3);
        assert_eq!(shape(&live), shape(&whole), "{name}");
    }
}

/// A UDP datagram seen at its namespace's egress and freed there: `n` of them, 1 ms apart,
/// each with its own IP id and skb.
fn datagrams(n: u64) -> Vec<Sighting> {
    let template = fixtures()
        .into_iter()
        .flat_map(|(_, s)| s)
        .find(|s| s.proto == Proto::Udp && s.on_path() && s.skb != 0)
        .expect("a recorded UDP sighting");
    (0..n)
        .flat_map(|i| {
            let mut out = template.clone();
            out.hook = tracer_common::hook::Hook::TcEgress;
            out.ts_ns = 1_000_000_000 + i * 1_000_000;
            out.ip_id = i as u32;
            out.skb = 0xffff_0000_0000 + i * 0x100;
            let mut freed = out.clone();
            freed.hook = tracer_common::hook::Hook::ConsumeSkb;
            freed.ts_ns += 10_000;
            [out, freed]
        })
        .collect()
}

#[test]
fn journeys_close_as_the_trace_goes_on_so_memory_follows_what_is_open() {
    let mut stitcher = Stitcher::new(Window::default());
    let mut closed = 0;
    let mut most_open = 0;
    for s in datagrams(10_000) {
        stitcher.push(s);
        closed += stitcher.advance().len();
        most_open = most_open.max(stitcher.open_journeys());
    }
    // 10 s of datagrams, one per ms: at most the last 120 ms (the same-packet window and the
    // reorder window) are open at any time.
    assert!(most_open <= 125, "{most_open} journeys open at once");
    assert!(closed >= 9_800, "{closed} closed before the end");
    assert_eq!(closed + stitcher.finish().len(), 10_000);
}

#[test]
fn a_packet_whose_skb_ended_with_no_clone_closes_soon_after_its_end() {
    let mut stitcher = Stitcher::new(Window::default());
    let mut most_open = 0;
    for mut s in datagrams(10_000) {
        s.sole_end = s.ends_skb();
        stitcher.push(s);
        stitcher.advance();
        most_open = most_open.max(stitcher.open_journeys());
    }
    // One per ms: the last 30 ms are open (the reorder window and the ended window), not 120.
    assert!(most_open <= 32, "{most_open} journeys open at once");
}

/// A datagram seen at egress and consumed 10 us later (`sole` says whether a clone shared its
/// data), then the end of a clone of it 15 ms later: a socket's error queue purged.
fn consumed_then_clone_purged(sole: bool) -> Vec<Journey> {
    let mut sightings = datagrams(1);
    sightings[1].sole_end = sole;
    let mut purged = sightings[1].clone();
    purged.hook = tracer_common::hook::Hook::KfreeSkb;
    purged.reason = Some("QUEUE_PURGE".into());
    purged.skb += 0x8000;
    purged.ts_ns += 15_000_000;
    purged.sole_end = true;
    sightings.push(purged);
    streamed(sightings, Window::default(), 1)
}

#[test]
fn a_clone_ended_later_joins_its_packet_whose_skb_ended_shared() {
    let shared = consumed_then_clone_purged(false);
    assert_eq!(shared.len(), 1, "{:?}", shape(&shared));
    assert_eq!(shared[0].sightings.len(), 3);
    // Had the kernel read no clone sharing the consumed skb, the packet closed 10 ms after
    // its end: such a late end is another packet's.
    assert_eq!(consumed_then_clone_purged(true).len(), 2);
}

#[test]
fn a_packet_whose_skb_stays_alive_is_closed_after_the_hold_window_and_says_so() {
    let mut queued = datagrams(1);
    queued.truncate(1); // seen, never freed: waiting in a queue
    let mut later = datagrams(3000);
    later.drain(..2); // other traffic goes on for 3 s
    let window = Window {
        reorder_ns: 20_000_000,
        hold_ns: 1_000_000_000,
        max_open: usize::MAX,
    };
    let mut stitcher = Stitcher::new(window);
    let mut held = Vec::new();
    for s in queued.into_iter().chain(later) {
        let at = s.ts_ns;
        stitcher.push(s);
        held.extend(
            stitcher
                .advance()
                .into_iter()
                .filter(|c| c.held_out)
                .map(|c| (at, c.sightings[0].ip_id)),
        );
    }
    let [(at, ip_id)] = held[..] else {
        panic!("one packet held out, not {held:?}")
    };
    assert_eq!(ip_id, 0);
    // Its last sighting was at 1 s: closed once the stream reached 2 s (plus the reorder wait).
    assert!(
        (2_020_000_000..2_030_000_000).contains(&at),
        "closed at {at}"
    );
}

#[test]
fn what_a_held_packet_holds_does_not_depend_on_how_its_events_were_read() {
    // A datagram queued at 1 s and freed just after the hold window, amid 1 ms traffic: it
    // closes as it stood at the window's end whether its free was read with the events before
    // it (a flood read 4096 at a time, a replay) or after them (one event at a time).
    let mut queued = datagrams(1);
    let mut freed = queued.pop().expect("its free");
    freed.ts_ns = queued[0].ts_ns + Window::default().hold_ns + 500_000;
    let mut traffic = datagrams(3000);
    traffic.drain(..2);
    let mut sightings: Vec<Sighting> = queued.into_iter().chain(traffic).collect();
    sightings.push(freed);
    sightings.sort_by_key(|s| s.ts_ns);
    let one_by_one = shape(&streamed(sightings.clone(), Window::default(), 1));
    for batch in [7, 4096, sightings.len()] {
        let read = shape(&streamed(sightings.clone(), Window::default(), batch));
        assert!(read == one_by_one, "read {batch} at a time");
    }
    // The other 2999 datagrams, the queued one as it stood, and its late free on its own.
    assert_eq!(one_by_one.len(), 2999 + 2);
}

#[test]
fn the_horizon_never_passes_a_journey_still_open() {
    let mut stitcher = Stitcher::new(Window::default());
    for s in datagrams(2000) {
        stitcher.push(s);
        for closed in stitcher.advance() {
            assert!(closed.sightings[0].ts_ns < stitcher.horizon());
        }
        let oldest_open = stitcher.open.values().map(|j| j.sightings[0].ts_ns).min();
        assert!(oldest_open.is_none_or(|first| stitcher.horizon() <= first));
    }
}

#[test]
fn past_the_bound_on_open_journeys_the_oldest_is_cut_short_and_counted() {
    let window = Window {
        max_open: 4,
        ..Window::default()
    };
    let mut stitcher = Stitcher::new(window);
    // Datagrams whose skbs stay alive (no free seen): each journey would stay open a second.
    let mut sent: Vec<Sighting> = datagrams(10)
        .into_iter()
        .filter(|s| s.hook == tracer_common::hook::Hook::TcEgress)
        .collect();
    for s in &mut sent {
        // All within 9 ms: none is due to close by time.
        s.ts_ns = 1_000_000_000 + (s.ts_ns - 1_000_000_000) / 1000;
    }
    let mut closed = Vec::new();
    for s in sent {
        stitcher.push(s);
        closed.extend(stitcher.advance_to(1_100_000_000));
        assert!(stitcher.open_journeys() <= 4);
    }
    assert_eq!(stitcher.cut_short, 6);
    let cut: Vec<u64> = closed
        .iter()
        .filter(|c| c.cut_short)
        .map(|c| c.id)
        .collect();
    assert_eq!(cut, vec![1, 2, 3, 4, 5, 6], "the oldest first");
    let journeys = from_closed(closed.remove(0), &TraceEnd::default(), 1);
    assert!(
        journeys[0].incomplete,
        "a journey cut short is marked incomplete"
    );
}

#[test]
fn a_journey_whose_last_two_points_share_a_time_closes_once() {
    // Two events of one packet in the same nanosecond (two CPUs' clocks, or a mangled
    // recording): each leaves a quiet entry with the journey's last time.
    let mut sightings = datagrams(300);
    sightings[1].ts_ns = sightings[0].ts_ns;
    let journeys = streamed(sightings, Window::default(), 1);
    assert_eq!(journeys.len(), 300);
    assert_eq!(journeys[0].sightings.len(), 2);
}

/// What a stitcher hands out, each closing as (journey, its points, its annotations' points).
type Closings = Vec<(u64, Vec<(u64, &'static str)>, Vec<(u64, &'static str)>)>;

fn closings(sightings: &[Sighting], mut stitcher: Stitcher, batch: usize) -> Closings {
    let points = |s: &[Sighting]| s.iter().map(|s| (s.ts_ns, s.hook.name())).collect();
    let mut out = Vec::new();
    let mut take = |closed: Vec<Closed>| {
        out.extend(
            closed
                .iter()
                .map(|c| (c.id, points(&c.sightings), points(&c.annotations))),
        )
    };
    for chunk in sightings.chunks(batch) {
        for s in chunk {
            stitcher.push(s.clone());
        }
        take(stitcher.advance());
    }
    take(stitcher.finish());
    out
}

/// The annotation index is built when an annotation comes and dropped two windows after the
/// last one; it must place every annotation where an index kept from the start would.
fn annotations_go_where_an_index_kept_from_the_start_puts_them(sightings: &[Sighting], name: &str) {
    for batch in [1, 7, 4096] {
        let mut kept = Stitcher::new(Window::default());
        kept.near = near::Near::kept_from_the_start();
        let lazy = closings(sightings, Stitcher::new(Window::default()), batch);
        let kept = closings(sightings, kept, batch);
        assert!(
            lazy.iter()
                .any(|(_, _, annotations)| !annotations.is_empty()),
            "{name}: no annotation placed, nothing compared"
        );
        assert_eq!(lazy, kept, "{name}, read {batch} at a time");
    }
}

#[test]
fn a_recorded_trace_annotates_the_same_with_an_index_built_late() {
    let mut compared = 0;
    for (name, sightings) in fixtures() {
        if sightings
            .iter()
            .any(|s| is_annotation(s) && s.hook.name() == "fib_lookup")
        {
            annotations_go_where_an_index_kept_from_the_start_puts_them(&sightings, &name);
            compared += 1;
        }
    }
    assert!(
        compared >= 10,
        "{compared} recorded traces with route lookups"
    );
}

#[test]
fn route_lookups_far_apart_annotate_the_same_with_an_index_dropped_between_them() {
    // A route lookup every 12.5 datagrams (12.5 ms apart: the index is dropped after each and
    // built again for the next), its source unspecified as an output lookup's; by turns just
    // before a datagram, and after the only point of one whose skb stays alive (then the
    // index must be built from what was released before the lookup: the next datagram is
    // further away).
    let lookup = |of: &Sighting, after_ns: i64| {
        let mut lookup = of.clone();
        lookup.hook = tracer_common::hook::Hook::FibLookup;
        lookup.skb = 0;
        lookup.src = None;
        lookup.ts_ns = of.ts_ns.saturating_add_signed(after_ns);
        lookup
    };
    let mut sightings = Vec::new();
    for (i, pair) in datagrams(400).chunks(2).enumerate() {
        let (seen, freed) = (&pair[0], &pair[1]);
        match i % 25 {
            0 => sightings.extend([lookup(seen, -2_000), seen.clone(), freed.clone()]),
            12 => sightings.extend([seen.clone(), lookup(seen, 20_000)]),
            _ => sightings.extend([seen.clone(), freed.clone()]),
        }
    }
    annotations_go_where_an_index_kept_from_the_start_puts_them(&sightings, "made up");
}
