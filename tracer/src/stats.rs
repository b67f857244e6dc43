//! Counting: events per hook, events lost in the kernel, duration.

use std::collections::BTreeMap;

use serde_json::{json, Value};

#[derive(Debug, Default)]
pub struct Stats {
    pub events: BTreeMap<String, u64>,
    /// Events the kernel could not queue (ring buffer full), per hook.
    pub lost: BTreeMap<String, u64>,
    /// Records that could not be decoded (wrong size or version).
    pub undecodable: u64,
    /// Events received but not kept: the trace already held `--max-events`.
    pub not_kept: u64,
    pub duration_ns: u64,
}

impl Stats {
    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "type": "stats",
            "schema_version": crate::output::SCHEMA_VERSION,
            "events": self.events,
            "lost": self.lost,
            "lost_total": self.lost_total(),
            "undecodable": self.undecodable,
            "not_kept": self.not_kept,
            "duration_ns": self.duration_ns,
        })
    }

    pub fn summary(&self) -> String {
        let total: u64 = self.events.values().sum();
        let per_hook: Vec<String> = self
            .events
            .iter()
            .map(|(h, n)| format!("{h} {n}"))
            .collect();
        let not_kept = match self.not_kept {
            0 => String::new(),
            n => format!(", {n} more not kept (--max-events)"),
        };
        format!(
            "{total} events in {:.1}s ({}); {} lost{not_kept}",
            self.duration_ns as f64 / 1e9,
            per_hook.join(", "),
            self.lost_total()
        )
    }
}
