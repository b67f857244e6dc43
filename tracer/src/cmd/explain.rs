//! `tracer explain FILE.jsonl`: rebuild journeys from a recorded event stream, offline and
//! without root.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::{
    cmd::trace::{report, Format},
    sighting::Sighting,
    stats::Stats,
};

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// A stream written by `tracer trace --record FILE`.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: ExplainArgs) -> Result<()> {
    let sightings = read_recording(&args.file)?;
    let mut stats = Stats::default();
    for s in &sightings {
        *stats.events.entry(s.hook.clone()).or_default() += 1;
    }
    if let (Some(first), Some(last)) = (sightings.first(), sightings.last()) {
        stats.duration_ns = last.ts_ns.saturating_sub(first.ts_ns);
    }
    report(args.format, sightings, &stats)
}

/// Reads the `event` records of a recording; other record types are skipped.
pub fn read_recording(path: &Path) -> Result<Vec<Sighting>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut sightings = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON line", path.display(), n + 1))?;
        if value["type"] == "event" {
            let sighting = serde_json::from_value(value)
                .with_context(|| format!("{}:{}: not an event record", path.display(), n + 1))?;
            sightings.push(sighting);
        }
    }
    Ok(sightings)
}
