//! `tracer explain FILE.jsonl`: rebuild journeys from a recorded event stream, offline and
//! without root.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::{
    model::recording,
    report::stats::Stats,
    report::stdout::{report, Format},
};

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// A stream written by `tracer trace --record FILE`.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: ExplainArgs) -> Result<()> {
    let recording = recording::read(&args.file)?;
    let mut stats = Stats::default();
    for s in &recording.sightings {
        *stats.events.entry(s.hook.name().to_string()).or_default() += 1;
    }
    if let (Some(first), Some(last)) = (recording.sightings.first(), recording.sightings.last()) {
        stats.duration_ns = last.ts_ns.saturating_sub(first.ts_ns);
    }
    if recording.context.end.lost > 0 {
        stats
            .lost
            .insert("recorded".to_string(), recording.context.end.lost);
    }
    for gap in &recording.context.end.gaps {
        if let Some(cpu) = gap.cpu {
            *stats.lost_per_cpu.entry(cpu).or_default() += gap.lost;
        }
    }
    report(
        args.format,
        &crate::analysis::Analysis::new(recording, None),
        &stats,
    )
}
