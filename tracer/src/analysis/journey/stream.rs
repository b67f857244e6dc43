//! Stitching while the trace runs: the grouping of [`super::build`], with each journey handed
//! out as soon as nothing can join it any more, so that memory follows the packets still in
//! flight and not the length of the trace. This is the engine the live view is to stand on;
//! the reports still use [`super::build`] until it is wired in.
//!
//! Sightings arrive in ring order: nearly in time order, but an event of one CPU can be read
//! after a later one of another. They wait [`Window::reorder_ns`], then join journeys in time
//! order by the rule `build` uses ([`super::link`]). A journey closes when nothing can join it:
//! [`ENDED_WINDOW_NS`] without a sighting once all its skbs have ended,
//! [`SAME_PACKET_WINDOW_NS`] without one and none of its skbs alive; or, while one of
//! its skbs is alive (queued for a neighbour, in a qdisc, on a socket nobody reads), after
//! [`Window::hold_ns`] without a sighting, closed as it stands.
//!
//! Journeys close at the moment they are due in the events' clock, also between two
//! sightings released together, so that what a journey holds does not depend on how the
//! events were read (in floods of 4096 or one by one, live or from a recording).

use std::collections::{BTreeSet, VecDeque};

use rustc_hash::FxHashMap;

use near::Near;

use super::{
    annotation_key, is_annotation,
    link::{
        any_skb_alive, ended_all, fingerprint, Entries, OpenIndex, ENDED_WINDOW_NS,
        SAME_PACKET_WINDOW_NS,
    },
    AnnotationKey, ANNOTATION_WINDOW_NS,
};
use crate::model::sighting::{push_expanded, Proto, Sighting};

/// How long the stitcher waits, in the events' clock (nanoseconds).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// For a sighting that may still arrive after a later one.
    pub reorder_ns: u64,
    /// For a journey with an skb still alive, since its last sighting.
    pub hold_ns: u64,
    /// Journeys open at once: past it, the oldest is closed as it stands, cut short.
    pub max_open: usize,
}

impl Window {
    /// For a whole trace at hand (a report, not a live view): nothing is closed before its
    /// time, however long an skb lives or however many packets are open.
    pub const WHOLE_TRACE: Window = Window {
        reorder_ns: 20_000_000,
        hold_ns: u64::MAX,
        max_open: usize::MAX,
    };
}

impl Default for Window {
    fn default() -> Self {
        Window {
            reorder_ns: 20_000_000,
            hold_ns: 1_000_000_000,
            // The hold window bounds them already (a second of packets); this holds when a
            // flood of packets that stay alive would fill more than memory should.
            max_open: 100_000,
        }
    }
}

/// A packet's sightings once nothing more can join them, with the annotations (route
/// lookups, TCP events) found near them; `super::complete` makes journeys of them.
#[derive(Debug, Default)]
pub struct Closed {
    /// The stitcher's number for it, in the order journeys began (0: an orphan annotation).
    pub id: u64,
    /// With the last points the first ones implied (`model::sighting::push_expanded`).
    pub sightings: Vec<Sighting>,
    pub annotations: Vec<Sighting>,
    /// Closed by [`Window::hold_ns`] while an skb of it was still alive.
    pub held_out: bool,
    /// Closed before its time to keep [`Window::max_open`]: it may miss its last points.
    pub cut_short: bool,
}

struct Open {
    sightings: Vec<Sighting>,
    annotations: Vec<Sighting>,
    /// What it wrote into [`Stitcher::index`].
    indexed: Entries,
    /// Its last sighting's time, beside the map's entry: checking whether a journey went quiet
    /// (once per sighting released) reads no sighting, which by then is long out of the cache.
    last_ns: u64,
}

#[derive(Default)]
pub struct Stitcher {
    window: Window,
    /// Arrived, not yet released: one queue per CPU, each in time order (a CPU's events come
    /// in the order it made them; the rare late one is put in its place), merged on release.
    /// Each with its place in the arrival order, which breaks ties as a stable sort would.
    arriving: Vec<VecDeque<(u64, Sighting)>>,
    arrived: u64,
    newest_ns: u64,
    /// Every sighting up to here has been released.
    released_ns: u64,
    next_id: u64,
    open: FxHashMap<u64, Open>,
    /// (first sighting's time, id) of every open journey: the oldest one still open.
    firsts: BTreeSet<(u64, u64)>,
    /// Closed, not yet handed out.
    closed: Vec<Closed>,
    index: OpenIndex<u64>,
    /// (time, journey) of every sighting released, in time order: a journey whose last
    /// sighting this is may close [`ENDED_WINDOW_NS`] later, if all its skbs have ended.
    quiet: VecDeque<(u64, u64)>,
    /// The same for journeys found quiet with an skb not seen to end: they may close
    /// [`SAME_PACKET_WINDOW_NS`] after it.
    lingering: VecDeque<(u64, u64)>,
    /// The same for journeys found quiet while an skb of theirs was alive: they may close
    /// [`Window::hold_ns`] after it.
    holding: VecDeque<(u64, u64)>,
    /// Where an annotation may go: the recent sightings by [`annotation_key`].
    near: Near,
    /// Released annotations, waiting until the sightings just after them are released too.
    annotations: VecDeque<Sighting>,
    /// Annotations that fit no packet, closed as journeys of their own.
    orphans: Vec<Closed>,
    /// Journeys closed before their time to keep [`Window::max_open`].
    pub cut_short: u64,
}

impl Stitcher {
    pub fn new(window: Window) -> Stitcher {
        Stitcher {
            window,
            ..Stitcher::default()
        }
    }

    pub fn push(&mut self, sighting: Sighting) {
        self.newest_ns = self.newest_ns.max(sighting.ts_ns);
        let cpu = usize::from(sighting.cpu);
        if self.arriving.len() <= cpu {
            self.arriving.resize_with(cpu + 1, VecDeque::new);
        }
        let queue = &mut self.arriving[cpu];
        self.arrived += 1;
        let entry = (self.arrived, sighting);
        if queue
            .back()
            .is_none_or(|(_, last)| last.ts_ns <= entry.1.ts_ns)
        {
            queue.push_back(entry);
        } else {
            let at = queue.partition_point(|(_, s)| s.ts_ns <= entry.1.ts_ns);
            queue.insert(at, entry);
        }
    }

    /// The earliest sighting waiting, if it is not later than `until`.
    fn next_before(&mut self, until: u64) -> Option<Sighting> {
        let queue = self
            .arriving
            .iter_mut()
            .filter(|q| q.front().is_some_and(|(_, s)| s.ts_ns <= until))
            .min_by_key(|q| q.front().map(|(seq, s)| (s.ts_ns, *seq)))?;
        queue.pop_front().map(|(_, s)| s)
    }

    /// Journeys open now (for the bounds of a long trace and the status line).
    pub fn open_journeys(&self) -> usize {
        self.open.len()
    }

    /// Releases what the reorder window lets go and returns what closed, in order of closing.
    pub fn advance(&mut self) -> Vec<Closed> {
        let until = self.newest_ns.saturating_sub(self.window.reorder_ns);
        self.release(until);
        self.close_due(until);
        self.forget_old_sightings();
        std::mem::take(&mut self.closed)
    }

    /// Drops the sightings no annotation can go to any more ([`Near::forget_old`]).
    fn forget_old_sightings(&mut self) {
        self.near
            .forget_old(self.released_ns, !self.annotations.is_empty());
    }

    /// The time before which every journey has begun: the first sighting of the oldest one
    /// still open, or of anything not yet released. Journeys that began earlier and closed
    /// can be shown in the order they began.
    pub fn horizon(&self) -> u64 {
        let open = self.firsts.first().map_or(u64::MAX, |(ts, _)| *ts);
        let waiting = self.annotations.front().map_or(u64::MAX, |a| a.ts_ns);
        open.min(waiting).min(self.released_ns)
    }

    /// Closes the journeys that nothing released at `now` or later can join (the link rule
    /// takes no sighting after these windows): quiet for [`ENDED_WINDOW_NS`] with all their
    /// skbs ended, for [`SAME_PACKET_WINDOW_NS`] with none alive, or held for longer than
    /// [`Window::hold_ns`].
    fn close_due(&mut self, now: u64) {
        let mut ids = Vec::new();
        while let Some(&(ts, id)) = self.quiet.front() {
            if ts.saturating_add(ENDED_WINDOW_NS) > now {
                break;
            }
            self.quiet.pop_front();
            // Only the journey's last sighting counts; it may have closed already.
            let Some(journey) = self.open.get(&id).filter(|j| j.last_ns == ts) else {
                continue;
            };
            if ended_all(&journey.sightings) {
                ids.push(id);
            } else {
                self.lingering.push_back((ts, id));
            }
        }
        while let Some(&(ts, id)) = self.lingering.front() {
            if ts.saturating_add(SAME_PACKET_WINDOW_NS) > now {
                break;
            }
            self.lingering.pop_front();
            // Only the journey's last sighting counts; it may have closed already.
            let Some(journey) = self.open.get_mut(&id).filter(|j| j.last_ns == ts) else {
                continue;
            };
            if any_skb_alive(&journey.sightings) {
                // Quiet, and held a second at most: most are TCP segments whose free no point
                // sees (coalesced into the segment before them). The room made for a veth
                // crossing is given back meanwhile: in the soak half of them have 4 points.
                fit(&mut journey.sightings);
                self.holding.push_back((ts, id));
            } else {
                ids.push(id);
            }
        }
        // Strictly after the window: a sighting at its very end may still join, whether it
        // is released with the others or after them.
        while let Some(&(ts, id)) = self.holding.front() {
            if ts.saturating_add(self.window.hold_ns) >= now {
                break;
            }
            self.holding.pop_front();
            if self.open.get(&id).is_some_and(|j| j.last_ns == ts) {
                ids.push(id);
            }
        }
        if !ids.is_empty() || !self.orphans.is_empty() {
            let closed = self.close(ids, false);
            self.closed.extend(closed);
        }
    }

    /// As [`Stitcher::advance`], with the events' clock moved on to `now_ns` (the same clock,
    /// read by the caller): when events are few, journeys still close in time.
    pub fn advance_to(&mut self, now_ns: u64) -> Vec<Closed> {
        self.newest_ns = self.newest_ns.max(now_ns);
        self.advance()
    }

    /// Everything that is left, at the end of the trace.
    pub fn finish(mut self) -> Vec<Closed> {
        self.release(u64::MAX);
        let mut ids: Vec<u64> = self.open.keys().copied().collect();
        ids.sort_unstable();
        let last = self.close(ids, true);
        let mut closed = std::mem::take(&mut self.closed);
        closed.extend(last);
        closed
    }

    /// Moves the sightings up to `until` into journeys, in time order.
    fn release(&mut self, until: u64) {
        while let Some(sighting) = self.next_before(until) {
            self.place_annotations(sighting.ts_ns);
            self.close_due(sighting.ts_ns);
            if is_annotation(&sighting) {
                self.near.annotation_released(sighting.ts_ns, &self.open);
                self.annotations.push_back(sighting);
            } else {
                self.join(sighting);
            }
        }
        self.released_ns = self.released_ns.max(until);
        self.place_annotations(until);
    }

    fn join(&mut self, sighting: Sighting) {
        let key = fingerprint(&sighting);
        let open = &self.open;
        let (current, held) = self.index.find(&key, &sighting, |id| {
            open.get(&id).map(|j| j.sightings.as_slice())
        });
        if current.is_none() && sighting.proto == Proto::Unknown {
            return;
        }
        if current.is_none() && self.open.len() >= self.window.max_open {
            self.cut_oldest();
        }
        let id = current.unwrap_or_else(|| {
            self.next_id += 1;
            self.firsts.insert((sighting.ts_ns, self.next_id));
            self.next_id
        });
        let journey = self.open.entry(id).or_insert_with(|| Open {
            // A packet crossing a veth pair is seen at about 17 points (11 events where the
            // hooks hold nothing but the tracer, see `sighting::push_expanded`).
            sightings: Vec::with_capacity(20),
            annotations: Vec::new(),
            indexed: Entries::default(),
            last_ns: 0,
        });
        self.index
            .record(key, &sighting, id, held, &mut journey.indexed);
        if sighting.proto != Proto::Unknown {
            self.near.record(&sighting, id, journey.sightings.len());
        }
        self.quiet.push_back((sighting.ts_ns, id));
        journey.last_ns = sighting.ts_ns;
        push_expanded(&mut journey.sightings, sighting);
    }

    /// Gives each waiting annotation older than `now` by [`ANNOTATION_WINDOW_NS`] to the open
    /// journey with the nearest sighting that fits it (every sighting that near has been
    /// released by then); [`super::complete`] checks the fit again with the whole journey.
    fn place_annotations(&mut self, now: u64) {
        while let Some(annotation) = self.annotations.front() {
            if annotation.ts_ns.saturating_add(ANNOTATION_WINDOW_NS) > now {
                return;
            }
            let annotation = self.annotations.pop_front().expect("just seen");
            let route_lookup = annotation.hook == tracer_common::hook::Hook::FibLookup;
            let fits = |id: u64| {
                self.open
                    .get(&id)
                    .is_some_and(|j| !route_lookup || super::source_fits(&annotation, &j.sightings))
            };
            let nearest = self
                .near
                .of(&annotation_key(&annotation, route_lookup))
                .and_then(|near| nearest(near, annotation.ts_ns, fits));
            // Which of the journey's copies it belongs to, and whether a successful route lookup
            // is bracketed by its packet, `super::complete` decides with the whole journey.
            match nearest.and_then(|id| self.open.get_mut(&id)) {
                Some(journey) => journey.annotations.push(annotation),
                None => self.orphans.push(Closed {
                    annotations: vec![annotation],
                    ..Closed::default()
                }),
            }
        }
    }

    /// Closes the journey open longest, cut short, to make room for a new one.
    fn cut_oldest(&mut self) {
        let Some(&(_, id)) = self.firsts.first() else {
            return;
        };
        let mut closed = self.close(vec![id], false);
        for c in &mut closed {
            c.cut_short = c.id == id;
        }
        self.cut_short += 1;
        self.closed.extend(closed);
    }

    /// Closes journeys `ids`; `at_end` when the trace ended (nothing was cut short).
    fn close(&mut self, ids: Vec<u64>, at_end: bool) -> Vec<Closed> {
        let mut closed = std::mem::take(&mut self.orphans);
        for id in ids {
            // Listed twice when two of its sightings share its last time (a quiet entry each).
            let Some(mut journey) = self.open.remove(&id) else {
                continue;
            };
            // A closed journey may wait a while behind one held open: in a block its size.
            fit(&mut journey.sightings);
            self.index.forget(&journey.indexed, id);
            self.firsts.remove(&(journey.sightings[0].ts_ns, id));
            closed.push(Closed {
                id,
                held_out: !at_end && any_skb_alive(&journey.sightings),
                cut_short: false,
                sightings: journey.sightings,
                annotations: journey.annotations,
            });
        }
        closed
    }
}

/// Moves `sightings` to a block of their size, so that the whole block they had is free for
/// the next journey (shrinking it in place left holes too small for one).
fn fit(sightings: &mut Vec<Sighting>) {
    if sightings.len() < sightings.capacity() {
        let mut exact = Vec::with_capacity(sightings.len());
        exact.append(sightings);
        *sightings = exact;
    }
}

/// The journey of the sighting nearest in time to `ts_ns` (within [`ANNOTATION_WINDOW_NS`],
/// the earlier one on a tie) that `fits`: walked outwards from `ts_ns`, so that a busy key
/// (every datagram to one address) costs what is near, not all it holds.
fn nearest(near: &VecDeque<(u64, u64)>, ts_ns: u64, fits: impl Fn(u64) -> bool) -> Option<u64> {
    let at = near.partition_point(|(ts, _)| *ts < ts_ns);
    let (mut before, mut after) = (at, at);
    loop {
        let earlier = before.checked_sub(1).map(|i| (ts_ns - near[i].0, i));
        let later = near.get(after).map(|(ts, _)| (ts - ts_ns, after));
        let (distance, i) = match (earlier, later) {
            (Some(e), Some(l)) => {
                if e.0 <= l.0 {
                    e
                } else {
                    l
                }
            }
            (Some(e), None) => e,
            (None, Some(l)) => l,
            (None, None) => return None,
        };
        if distance >= ANNOTATION_WINDOW_NS {
            return None;
        }
        if fits(near[i].1) {
            return Some(near[i].1);
        }
        if i < at {
            before -= 1;
        } else {
            after += 1;
        }
    }
}

mod near;
#[cfg(test)]
mod tests;
