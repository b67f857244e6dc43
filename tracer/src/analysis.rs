//! The pipeline after decoding: journeys, flows, and what explanations draw on. Pure, so a
//! recorded stream explains the same offline as live.

use std::collections::HashMap;

use crate::{
    explanation,
    flow::{self, Flow},
    journey::{self, Journey},
    recording::Recording,
};

pub use crate::recording::Context;

pub struct Analysis {
    pub journeys: Vec<Journey>,
    pub flows: Vec<Flow>,
    /// Journey id -> the id of the first copy it retransmits.
    pub retransmissions: HashMap<u64, u64>,
    pub context: Context,
}

impl Analysis {
    pub fn new(recording: Recording) -> Analysis {
        let mut journeys = journey::build(recording.sightings, &recording.context.end);
        let flows = flow::build(&mut journeys);
        let retransmissions = explanation::retransmissions(&journeys);
        Analysis {
            journeys,
            flows,
            retransmissions,
            context: recording.context,
        }
    }

    /// Journey ids are 1, 2, ... in order.
    pub fn journey(&self, id: u64) -> Option<&Journey> {
        self.journeys.get(id.checked_sub(1)? as usize)
    }
}
