//! Counting: events per hook, events lost in the kernel, duration.

use std::collections::BTreeMap;

use serde_json::{json, Value};

#[derive(Debug, Default)]
pub struct Stats {
    pub events: BTreeMap<String, u64>,
    /// Events the kernel could not queue (ring buffer full), per hook.
    pub lost: BTreeMap<String, u64>,
    /// The same, per CPU (a gap is placed in time on its CPU: see `crate::model::gaps`).
    pub lost_per_cpu: BTreeMap<u16, u64>,
    /// Events the kernel skipped: a tracepoint's program was already running on that CPU (see
    /// `crate::kernel::misses`). Per hook; no time or CPU is known for them.
    pub missed: BTreeMap<String, u64>,
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

    pub fn missed_total(&self) -> u64 {
        self.missed.values().sum()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "type": "stats",
            "schema_version": crate::report::SCHEMA_VERSION,
            "events": self.events,
            "lost": self.lost,
            "lost_total": self.lost_total(),
            "lost_per_cpu": self.lost_per_cpu,
            "missed": self.missed,
            "missed_total": self.missed_total(),
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
        let per_cpu: Vec<String> = self
            .lost_per_cpu
            .iter()
            .map(|(cpu, n)| format!("cpu {cpu}: {n}"))
            .collect();
        let per_cpu = if per_cpu.is_empty() {
            String::new()
        } else {
            format!(" ({})", per_cpu.join(", "))
        };
        let missed = match self.missed_total() {
            0 => String::new(),
            n => format!(", {n} skipped by the kernel (a hook's program interrupted by itself)"),
        };
        format!(
            "{total} events in {:.1}s ({}); {} lost{per_cpu}{missed}{not_kept}",
            self.duration_ns as f64 / 1e9,
            per_hook.join(", "),
            self.lost_total()
        )
    }
}
