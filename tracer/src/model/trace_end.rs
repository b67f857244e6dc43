//! What the analysis needs to know about the trace as a whole: when it ended and what it
//! lost.

use crate::model::{gaps::Gap, sighting::Sighting};

/// What the journey builder needs to know about the trace as a whole.
#[derive(Debug, Clone, Default)]
pub struct TraceEnd {
    /// Monotonic time the trace stopped (the events' clock); 0 when unknown.
    pub end_ns: u64,
    /// Events the kernel could not queue, and events not kept.
    pub lost: u64,
    /// When and where they were lost; empty in recordings made before gaps were known, where
    /// any loss may have touched any journey.
    pub gaps: Vec<Gap>,
    /// Hooks this trace saw only in part: on a kernel without BPF netfilter links, the
    /// netfilter hooks show only where some rule or conntrack is registered, so a packet may
    /// pass one unseen.
    pub partial_hooks: Vec<String>,
}

impl TraceEnd {
    /// Whether events lost during the trace may be missing from this journey.
    pub fn touches(&self, sightings: &[Sighting], open: bool) -> bool {
        if self.gaps.is_empty() {
            return self.lost > 0 && open;
        }
        crate::model::gaps::touches(sightings, &self.gaps, open)
    }
}
