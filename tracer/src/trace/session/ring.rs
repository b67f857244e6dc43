//! Reading the ring buffer: each record decoded into a sighting, written to the recording as
//! it comes, kept for the final report up to `--max-events` where there is one, and given to
//! the live view, which writes its lines while a flood goes on.

use tracer_common::event::Event;

use crate::{
    model::{
        recording::Recorder,
        sighting::{Names, PacketBytes, Sighting},
    },
    report::{stats::Stats, status::Status},
    trace::live::LiveView,
};

/// Where decoded events are kept for the final report, up to `max` (`--max-events`).
pub(super) struct Kept<'a> {
    pub max: usize,
    pub sightings: &'a mut Vec<Sighting>,
}

/// Where the events read go.
pub(super) struct Readers<'a> {
    pub names: &'a Names,
    pub stats: &'a mut Stats,
    /// `None` when the live view reports everything and no report is built at the end.
    pub kept: Option<Kept<'a>>,
    pub live: Option<&'a mut LiveView>,
    pub status: Option<&'a mut Status>,
    pub record: Option<&'a mut Recorder>,
    /// The trace's end, once it is stopping: later events are left out (see `Stats::after_end`).
    pub until_ns: u64,
}

/// Decodes what the ring holds into the readers.
pub(super) fn drain(ring: &mut super::EventRing, to: &mut Readers) {
    let mut read = 0usize;
    while let Some(item) = ring.next() {
        read += 1;
        let keep = to.kept.as_ref().is_some_and(|k| k.sightings.len() < k.max);
        if !keep && to.live.is_none() && to.record.is_none() {
            // Past --max-events, with nothing else to take it: counted, not even decoded.
            to.stats.not_kept += 1;
            if let Some(status) = to.status.as_deref_mut() {
                status.add(&[], 1);
            }
            continue;
        }
        let Some(sighting) = decode(item, to.names) else {
            to.stats.undecodable += 1;
            continue;
        };
        if sighting.ts_ns > to.until_ns {
            to.stats.after_end += 1;
            continue;
        }
        if keep || to.kept.is_none() {
            // The statistics count the events of the report: past --max-events, not_kept.
            count(to.stats, &sighting);
        }
        if let Some(status) = to.status.as_deref_mut() {
            status.add(std::slice::from_ref(&sighting), 0);
        }
        if let Some(record) = to.record.as_deref_mut() {
            record.event(&sighting);
        }
        match (to.kept.as_mut().filter(|_| keep), to.live.as_deref_mut()) {
            (Some(kept), Some(view)) => {
                view.push(sighting.clone());
                kept.sightings.push(sighting);
            }
            (Some(kept), None) => kept.sightings.push(sighting),
            (None, Some(view)) => view.push(sighting),
            (None, None) => {}
        }
        if !keep && to.kept.is_some() {
            to.stats.not_kept += 1;
        }
        // Under a flood the ring refills as fast as it is read: the lines must not wait
        // for it to run dry.
        if read.is_multiple_of(LIVE_BATCH) {
            if let Some(view) = to.live.as_deref_mut() {
                live_lines(view.advance(None), to.status.as_deref());
            }
        }
    }
}

fn count(stats: &mut Stats, sighting: &Sighting) {
    stats.events.add(sighting.hook);
}

/// How often the live view looks for journeys that closed while no event came.
pub(super) const LIVE_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Events read from the ring between two steps of the live view.
const LIVE_BATCH: usize = 4096;

/// The status line is drawn on stderr under the live lines of the same terminal: lines
/// written erase it, and the next tick draws it again below them.
pub(super) fn live_lines(written: usize, status: Option<&Status>) {
    if written > 0 {
        if let Some(status) = status {
            status.erase();
        }
    }
}

/// The sighting of one ring buffer record, with the packet's bytes where the kernel copied
/// them.
fn decode(record: &[u8], names: &Names) -> Option<Sighting> {
    let event = Event::from_bytes(record)?;
    let mut sighting = Sighting::decode(&event, names)?;
    sighting.bytes = PacketBytes::from_record(record);
    Some(sighting)
}

/// Decodes one ring buffer record into `sightings`, counting it in `stats`.
pub fn decode_record(
    record: &[u8],
    names: &Names,
    sightings: &mut Vec<Sighting>,
    stats: &mut Stats,
) {
    match decode(record, names) {
        Some(sighting) => {
            count(stats, &sighting);
            sightings.push(sighting);
        }
        None => stats.undecodable += 1,
    }
}
