//! Reading the ring buffer: each record decoded into a sighting, kept for the final report up
//! to `--max-events`, and given to the live view, which writes its lines while a flood goes
//! on.

use aya::maps::{MapData, RingBuf};
use tracer_common::event::Event;

use crate::{
    model::sighting::{Names, PacketBytes, Sighting},
    report::{stats::Stats, status::Status},
    trace::live::LiveView,
};

/// Where decoded events are kept for the final report, up to `max` (`--max-events`).
pub(super) struct Kept<'a> {
    pub max: usize,
    pub sightings: &'a mut Vec<Sighting>,
}

/// Decodes what the ring holds: up to `kept.max` events kept, the rest only counted, every
/// one shown live when there is a live view.
pub(super) fn drain(
    ring: &mut RingBuf<MapData>,
    names: &Names,
    kept: Kept,
    stats: &mut Stats,
    mut live: Option<(&mut LiveView, Option<&Status>)>,
) {
    let mut read = 0usize;
    while let Some(item) = ring.next() {
        read += 1;
        let keep = kept.sightings.len() < kept.max;
        if !keep {
            stats.not_kept += 1;
        }
        let Some((view, status)) = live.as_mut() else {
            if keep {
                decode_record(&item, names, kept.sightings, stats);
            }
            continue;
        };
        if keep {
            let before = kept.sightings.len();
            decode_record(&item, names, kept.sightings, stats);
            if kept.sightings.len() > before {
                view.push(kept.sightings[before].clone());
            }
        } else if let Some(s) = decode(&item, names) {
            view.push(s);
        }
        // Under a flood the ring refills as fast as it is read: the lines must not wait
        // for it to run dry.
        if read.is_multiple_of(LIVE_BATCH) {
            live_lines(view.advance(None), *status);
        }
    }
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
            // The hook's name is allocated once per trace, not once per event.
            match stats.events.get_mut(sighting.hook.name()) {
                Some(count) => *count += 1,
                None => {
                    stats.events.insert(sighting.hook.name().to_string(), 1);
                }
            }
            sightings.push(sighting);
        }
        None => stats.undecodable += 1,
    }
}
