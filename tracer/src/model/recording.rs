//! The recorded stream (`trace --record FILE`, `explain FILE`): JSON lines of `event` records
//! (decoded sightings) and, beside them, what explanations need from the live system: the live
//! captures (`live_capture`), kernel counter changes (`counters`), the drop rules' counters
//! (`rules`) and how the trace ended
//! (`trace_end`).

use std::{collections::BTreeMap, io::Write, path::Path};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    kernel::live_capture::LiveCapture,
    kernel::rules::{NamespaceRules, RulesSnapshot},
    model::gaps::Gap,
    model::sighting::Sighting,
    model::trace_end::TraceEnd,
};

/// Changes of one namespace's kernel counters over the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceCounters {
    pub netns_name: String,
    pub delta: BTreeMap<String, i64>,
}

/// What was recorded beside the events.
#[derive(Debug, Default)]
pub struct Context {
    pub live: Vec<LiveCapture>,
    pub counters: Vec<NamespaceCounters>,
    /// The drop rules of each traced namespace, and how their counters rose.
    pub rules: Vec<NamespaceRules>,
    /// The drop rules as read while tracing, for drops the live view named then: a replay
    /// names them from the same reads.
    pub rule_snapshots: Vec<RulesSnapshot>,
    pub end: TraceEnd,
    /// How the trace's own report told time, so that a replay tells it the same: wall-clock
    /// minus monotonic nanoseconds when it started, and how long it ran. Absent in older
    /// recordings.
    pub clock: Option<TraceClock>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TraceClock {
    pub wall_minus_monotonic_ns: i64,
    pub duration_ns: u64,
}

#[derive(Debug, Default)]
pub struct Recording {
    pub sightings: Vec<Sighting>,
    pub context: Context,
}

#[derive(Serialize, Deserialize)]
struct TraceEndRecord {
    end_ns: u64,
    lost: u64,
    /// Absent in recordings made before gaps were known.
    #[serde(default)]
    gaps: Vec<Gap>,
    /// Absent where every hook was fully observed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    partial_hooks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clock: Option<TraceClock>,
}

fn tagged(value: impl Serialize, kind: &str) -> Result<Value> {
    let mut value = serde_json::to_value(value)?;
    value["type"] = kind.into();
    Ok(value)
}

/// Creates the file a recording goes to, before tracing, so that an unwritable path fails at
/// once and not after the trace. Mode 0600: events name the host's addresses and flows.
pub fn create(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A recording written as the trace goes: each event when it is read, the context at the end.
/// A write that fails stops the recording (said once on stderr); the trace goes on.
pub struct Recorder {
    out: Option<std::io::BufWriter<std::fs::File>>,
    path: std::path::PathBuf,
}

impl Recorder {
    pub fn new(file: std::fs::File, path: &Path) -> Recorder {
        Recorder {
            out: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
            path: path.to_path_buf(),
        }
    }

    pub fn event(&mut self, sighting: &Sighting) {
        self.record(sighting, "event");
    }

    /// The drop rules as read while tracing, among the events read by then.
    pub fn rules(&mut self, snapshot: &RulesSnapshot) {
        self.record(snapshot, "rules_snapshot");
    }

    /// Writes one record; a write that fails stops the recording, said once.
    fn record(&mut self, value: impl Serialize, kind: &str) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let written = tagged(value, kind).and_then(|v| Ok(writeln!(out, "{v}")?));
        if let Err(e) = written {
            eprintln!(
                "tracer: warning: cannot write to {} ({e:#}): the recording stops here",
                self.path.display()
            );
            self.out = None;
        }
    }

    /// Writes the context after the events, and says whether the recording is whole.
    pub fn finish(self, context: &Context) -> Result<()> {
        let Some(mut out) = self.out else {
            anyhow::bail!("the recording {} is cut short", self.path.display());
        };
        write_context(&mut out, context)?;
        out.flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

fn write_context(out: &mut impl Write, context: &Context) -> Result<()> {
    for live in &context.live {
        writeln!(out, "{}", tagged(live, "live_capture")?)?;
    }
    for counters in &context.counters {
        writeln!(out, "{}", tagged(counters, "counters")?)?;
    }
    for rules in &context.rules {
        writeln!(out, "{}", tagged(rules, "rules")?)?;
    }
    let end = TraceEndRecord {
        end_ns: context.end.end_ns,
        lost: context.end.lost,
        gaps: context.end.gaps.clone(),
        partial_hooks: context.end.partial_hooks.clone(),
        clock: context.clock,
    };
    writeln!(out, "{}", tagged(end, "trace_end")?)?;
    Ok(())
}

pub fn read(path: &Path) -> Result<Recording> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut recording = Recording::default();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{}:{}", path.display(), n + 1);
        let value: Value =
            serde_json::from_str(line).with_context(|| format!("{}: not a JSON line", at()))?;
        let kind = value["type"].as_str().unwrap_or_default().to_string();
        let context = &mut recording.context;
        let bad = || format!("{}: not a valid {kind} record", at());
        match kind.as_str() {
            "event" => recording
                .sightings
                .push(serde_json::from_value(value).with_context(bad)?),
            "live_capture" => context
                .live
                .push(serde_json::from_value(value).with_context(bad)?),
            "counters" => context
                .counters
                .push(serde_json::from_value(value).with_context(bad)?),
            "rules" => context
                .rules
                .push(serde_json::from_value(value).with_context(bad)?),
            "rules_snapshot" => context
                .rule_snapshots
                .push(serde_json::from_value(value).with_context(bad)?),
            "trace_end" => {
                let end: TraceEndRecord = serde_json::from_value(value).with_context(bad)?;
                context.end = TraceEnd {
                    end_ns: end.end_ns,
                    lost: end.lost,
                    gaps: end.gaps,
                    partial_hooks: end.partial_hooks,
                };
                context.clock = end.clock;
            }
            _ => {}
        }
    }
    Ok(recording)
}

#[cfg(test)]
mod fuzz;

/// The streams recorded on the real kernel (`tracer/tests/fixtures`), for the unit tests.
#[cfg(test)]
pub fn fixture_paths() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 20, "the recorded fixtures are there");
    paths
}
