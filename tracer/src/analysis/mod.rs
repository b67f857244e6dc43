//! The pipeline after decoding: journeys, flows, and what explanations draw on. Pure, so a
//! recorded stream explains the same offline as live.

pub mod answered;
pub mod bridge;
pub mod capture;
pub mod copies;
pub mod fate;
pub mod flow;
pub mod journey;
pub mod live_flows;
pub mod retransmissions;
pub mod tunnel;

use std::collections::HashMap;

use crate::model::recording::Recording;
use capture::{captures, Capture};
use flow::Flow;
use journey::Journey;

pub use crate::model::recording::Context;

pub struct Analysis {
    pub journeys: Vec<Journey>,
    pub flows: Vec<Flow>,
    /// Journey id -> the id of the first transmission it repeats.
    pub retransmissions: HashMap<u64, u64>,
    /// The tcpdump verdicts of each journey, in journey order (computed once: the JSON, the
    /// packet's and the flow's explanations all use them).
    captures: Vec<Vec<Capture>>,
    pub context: Context,
}

impl Analysis {
    /// The analysis of the first `limit` packets only (`-c`), or of all of them.
    pub fn new(recording: Recording, limit: Option<usize>) -> Analysis {
        let mut journeys = journey::build(recording.sightings, &recording.context.end);
        answered::delivered_by_answer(&mut journeys);
        if let Some(limit) = limit {
            journeys.truncate(limit);
        }
        let flows = flow::build(&mut journeys);
        let retransmissions = retransmissions::retransmissions(&journeys);
        let context = recording.context;
        let captures = journeys
            .iter()
            .map(|j| captures(j, &context.live))
            .collect();
        Analysis {
            journeys,
            flows,
            retransmissions,
            captures,
            context,
        }
    }

    /// The tcpdump verdicts of journey `id`.
    pub fn captures(&self, id: u64) -> &[Capture] {
        id.checked_sub(1)
            .and_then(|i| self.captures.get(i as usize))
            .map_or(&[], Vec::as_slice)
    }

    /// Journey ids are 1, 2, ... in order.
    pub fn journey(&self, id: u64) -> Option<&Journey> {
        self.journeys.get(id.checked_sub(1)? as usize)
    }
}
