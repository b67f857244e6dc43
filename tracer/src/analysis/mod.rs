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
        let (flows, retransmissions) = live_flows::whole_trace(&mut journeys);
        Analysis::window(journeys, flows, retransmissions, recording.context)
    }

    /// The analysis of some of a trace's journeys (in id order), as the streaming engine hands
    /// them out: a packet that closed, a flow that ended.
    pub fn window(
        journeys: Vec<Journey>,
        flows: Vec<Flow>,
        retransmissions: HashMap<u64, u64>,
        context: Context,
    ) -> Analysis {
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
        self.index(id)
            .and_then(|i| self.captures.get(i))
            .map_or(&[], Vec::as_slice)
    }

    pub fn journey(&self, id: u64) -> Option<&Journey> {
        self.journeys.get(self.index(id)?)
    }

    /// Where journey `id` is: journeys are in id order, 1, 2, ... for a whole trace.
    fn index(&self, id: u64) -> Option<usize> {
        let guess = id.checked_sub(self.journeys.first()?.id)? as usize;
        match self.journeys.get(guess) {
            Some(j) if j.id == id => Some(guess),
            _ => self.journeys.binary_search_by_key(&id, |j| j.id).ok(),
        }
    }
}
