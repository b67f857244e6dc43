//! The report on stdout at the end of a trace or a replay.

use anyhow::Result;
use clap::ValueEnum;

use crate::{
    analysis::Analysis,
    report::{output, paint::Paint, stats::Stats},
};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Prints the journeys, flows and statistics.
pub fn report(format: Format, analysis: &Analysis, stats: &Stats) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => output::write_json(&mut out, analysis, stats)?,
        Format::Text => output::write_text(&mut out, analysis, stats, Paint::for_stdout())?,
    }
    warnings(stats);
    Ok(())
}

/// What follows the live view: in text, the flows and the statistics (the packets were shown
/// as they went); JSON as at any end.
pub fn summary(format: Format, analysis: &Analysis, stats: &Stats) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => output::write_json(&mut out, analysis, stats)?,
        Format::Text => output::write_flow_summary(&mut out, analysis, stats, Paint::for_stdout())?,
    }
    warnings(stats);
    Ok(())
}

/// On stderr: events lost or not kept.
fn warnings(stats: &Stats) {
    if stats.lost_total() > 0 {
        eprintln!(
            "tracer: warning: {} events were lost (ring buffer full); some journeys are incomplete",
            stats.lost_total()
        );
    }
    if stats.not_kept > 0 {
        eprintln!(
            "tracer: warning: {} events after the first {} were counted but not kept \
             (--max-events); journeys open then are incomplete",
            stats.not_kept,
            stats.events.values().sum::<u64>()
        );
    }
}
