//! Reports: text, JSON, pcapng, the explanations and the live status line, drawn from an
//! analysis.

pub mod explanation;
pub mod line;
pub mod output;
pub mod packet_file;
pub mod packet_record;
pub mod paint;
pub mod pcapng;
pub mod stats;
pub mod status;
pub mod stdout;

use crate::analysis::{fate::FateKind, flow::Flow, journey::Journey, Analysis};

/// Which packets and flows a report shows: all, or (`--problems`) the packets that did not
/// make it (dropped, or their end not seen) and their flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    #[default]
    All,
    Problems,
}

impl Selection {
    pub fn journey(self, journey: &Journey) -> bool {
        self == Selection::All || is_problem(journey)
    }

    /// The flows it keeps, in order.
    pub fn flows(self, analysis: &Analysis) -> impl Iterator<Item = &Flow> {
        analysis
            .flows
            .iter()
            .filter(move |f| self.flow(f, analysis))
    }

    pub fn flow(self, flow: &Flow, analysis: &Analysis) -> bool {
        self == Selection::All
            || flow
                .journeys
                .iter()
                .filter_map(|id| analysis.journey(*id))
                .any(is_problem)
    }
}

/// Whether a packet did not make it: dropped, or its end not seen. A copy's end is never a
/// problem of its own.
pub fn is_problem(journey: &Journey) -> bool {
    journey.copy.is_none() && matches!(journey.fate.kind, FateKind::Dropped | FateKind::Unknown)
}

/// Version of the JSON-lines schema; bumped when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;
