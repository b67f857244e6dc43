//! What a trace knows of its context only when it stops: the live captures and the kernel's
//! counters, each compared with what it was at the start (the drop rules: `rules_watch`).

use super::Session;
use crate::{
    kernel::{
        counters,
        live_capture::{self, LiveCapture},
    },
    model::recording::NamespaceCounters,
};

impl Session {
    /// The live captures seen when tracing started and when it stopped: a tcpdump may have come
    /// or gone in between.
    pub(super) fn live_captures(&self) -> Vec<LiveCapture> {
        let mut live = self.live.clone();
        for capture in live_capture::scan() {
            if !live
                .iter()
                .any(|c| c.pid == capture.pid && c.inode == capture.inode)
            {
                live.push(capture);
            }
        }
        live
    }

    /// How each traced namespace's kernel counters changed while tracing.
    pub(super) fn counter_changes(&self) -> Vec<NamespaceCounters> {
        let mut out = Vec::new();
        for (ns, before) in self.namespaces.iter().zip(&self.counters_before) {
            // A namespace deleted during the trace has no counters left to compare.
            let after = ns
                .reopen()
                .and_then(|ns| ns.run(counters::read).ok())
                .and_then(Result::ok);
            if let (Some(before), Some(after)) = (before, after) {
                out.push(NamespaceCounters {
                    netns_name: ns.display_name.clone(),
                    delta: counters::delta(before, &after),
                });
            }
        }
        out
    }
}
