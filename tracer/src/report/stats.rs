//! Counting: events per hook, events lost in the kernel, duration.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::{json, Value};
use tracer_common::hook::Hook;

#[derive(Debug, Default)]
pub struct Stats {
    pub events: PerHook,
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
    /// Events of after the trace's end, left out: written while its points were detached one
    /// after the other, where some no longer see what the others do.
    pub after_end: u64,
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
        let mut stats = json!({
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
        });
        if self.after_end > 0 {
            stats["after_end"] = self.after_end.into();
        }
        stats
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
        let not_kept = match self.after_end {
            0 => not_kept,
            n => format!("{not_kept}, {n} after the end left out"),
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

/// Events per hook: counted for every event read (a string-keyed map cost more than the
/// rest of decoding), written as a map from the hook's name, in name order.
#[derive(Debug, Clone, PartialEq)]
pub struct PerHook([u64; 256]);

impl Default for PerHook {
    fn default() -> Self {
        PerHook([0; 256])
    }
}

impl PerHook {
    pub fn add(&mut self, hook: Hook) {
        self.0[hook as usize] += 1;
    }

    /// The count of the hook named `name`, if any of its events was counted.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, count)| count)
    }

    /// (hook name, count) of the hooks with events, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let mut counted: Vec<(&'static str, u64)> = Hook::ALL
            .iter()
            .map(|h| (h.name(), self.0[*h as usize]))
            .filter(|(_, count)| *count > 0)
            .collect();
        counted.sort_unstable();
        counted.into_iter()
    }

    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().copied()
    }
}

impl Serialize for PerHook {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}
