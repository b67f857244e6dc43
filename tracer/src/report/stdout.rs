//! The report on stdout at the end of a trace or a replay.

use anyhow::Result;
use clap::ValueEnum;

use crate::{
    analysis::Analysis,
    report::{output, paint::Paint, stats::Stats, Selection},
};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Prints the journeys, flows and statistics.
pub fn report(format: Format, analysis: &Analysis, stats: &Stats) -> Result<()> {
    report_selected(format, analysis, stats, Selection::All, false)
}

/// Prints the journeys and flows `selection` keeps, and the statistics. After the live view
/// (which showed each packet as it went) the text is the flows alone; JSON is the same either
/// way.
pub fn report_selected(
    format: Format,
    analysis: &Analysis,
    stats: &Stats,
    selection: Selection,
    after_live: bool,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let paint = Paint::for_stdout();
    match (format, after_live) {
        (Format::Json, _) => output::write_json_selected(&mut out, analysis, stats, selection)?,
        (Format::Text, false) => {
            output::write_text_selected(&mut out, analysis, stats, paint, selection)?
        }
        (Format::Text, true) => {
            output::write_flow_summary(&mut out, analysis, stats, paint, selection)?
        }
    }
    warnings(stats);
    Ok(())
}

/// On stderr: events lost or not kept.
pub fn warnings(stats: &Stats) {
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
