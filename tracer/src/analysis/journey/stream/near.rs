//! Where an annotation (a route lookup, a TCP event) may go: the sightings released in the
//! last two annotation windows, by [`annotation_key`], in time order.
//!
//! Keying every sighting as it is released cost about a sixth of the streaming engine, and
//! most traces of a busy flow have no annotation at all. So every sighting is only listed, in
//! release order, and the keyed index is built from that list when an annotation is released,
//! then kept up while annotations come, and dropped two windows after the last one. An index
//! built late holds what one kept all along would hold, but for the sightings of journeys
//! closed meanwhile, which no annotation can go to.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::{annotation_key, AnnotationKey, Open, ANNOTATION_WINDOW_NS};
use crate::model::sighting::Sighting;

#[derive(Default)]
pub(super) struct Near {
    /// (time, journey, place in the journey's sightings) of every sighting released and not
    /// yet forgotten.
    released: VecDeque<(u64, u64, u32)>,
    /// The index itself: (time, journey) by key, while `kept`.
    keyed: FxHashMap<AnnotationKey, VecDeque<(u64, u64)>>,
    kept: bool,
    /// Never dropped (the tests' reference).
    always: bool,
    /// The time of the last annotation released.
    last_annotation_ns: u64,
}

impl Near {
    /// An index kept from the start, as the stitcher once had: what the lazy one must match.
    #[cfg(test)]
    pub(super) fn kept_from_the_start() -> Near {
        Near {
            kept: true,
            always: true,
            ..Near::default()
        }
    }

    /// Lists `sighting`, the `at`-th of journey `id`, just released.
    pub(super) fn record(&mut self, sighting: &Sighting, id: u64, at: usize) {
        let at = u32::try_from(at).unwrap_or(u32::MAX);
        self.released.push_back((sighting.ts_ns, id, at));
        if self.kept {
            self.key(sighting, id);
        }
    }

    fn key(&mut self, sighting: &Sighting, id: u64) {
        for route_lookup in [true, false] {
            self.keyed
                .entry(annotation_key(sighting, route_lookup))
                .or_default()
                .push_back((sighting.ts_ns, id));
        }
    }

    /// An annotation at `ts_ns` was released: the index is wanted from now on, built from the
    /// sightings listed if it was not kept.
    pub(super) fn annotation_released(&mut self, ts_ns: u64, open: &FxHashMap<u64, Open>) {
        self.last_annotation_ns = self.last_annotation_ns.max(ts_ns);
        if self.kept {
            return;
        }
        self.kept = true;
        let released = std::mem::take(&mut self.released);
        for &(_, id, at) in &released {
            let sighting = open.get(&id).and_then(|j| j.sightings.get(at as usize));
            if let Some(sighting) = sighting {
                self.key(sighting, id);
            }
        }
        self.released = released;
    }

    /// The listed sightings of key `key`, if any.
    pub(super) fn of(&self, key: &AnnotationKey) -> Option<&VecDeque<(u64, u64)>> {
        self.keyed.get(key)
    }

    /// Forgets the sightings no annotation can go to any more (an annotation waits one window
    /// before it is placed, and looks one window back), and the index two windows after the
    /// last annotation if none waits. Once per step, not per closing: it walks every key.
    pub(super) fn forget_old(&mut self, released_ns: u64, annotations_waiting: bool) {
        let recent = released_ns.saturating_sub(2 * ANNOTATION_WINDOW_NS);
        while self.released.front().is_some_and(|(ts, _, _)| *ts < recent) {
            self.released.pop_front();
        }
        if !self.kept {
            return;
        }
        if !annotations_waiting && self.last_annotation_ns < recent && !self.always {
            self.keyed.clear();
            self.kept = false;
            return;
        }
        self.keyed.retain(|_, near| {
            while near.front().is_some_and(|(ts, _)| *ts < recent) {
                near.pop_front();
            }
            !near.is_empty()
        });
    }
}
