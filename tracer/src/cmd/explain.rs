//! `tracer explain FILE.jsonl`: rebuild journeys from a recorded event stream, offline and
//! without root. With `--live`, the events go through the live view as they went during the
//! trace, and print the lines the live run printed.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::{
    analysis::Analysis,
    model::recording::{self, Recording},
    report::{
        line::WallClock,
        stats::Stats,
        stdout::{report_selected, Format},
        Selection,
    },
    trace::live::{LiveEnd, LiveOptions, LiveView},
};

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// A stream written by `tracer trace --record FILE`.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Through the streaming engine, as `tracer trace --live` printed it: a line (or with
    /// `--format json` a record) per packet in the order the live run printed them, then the
    /// flows.
    #[arg(long)]
    pub live: bool,
    /// Only the packets that did not make it (dropped, or their end not seen) and their flows.
    #[arg(long)]
    pub problems: bool,
    /// With `--live`, each packet's path point by point under its line.
    #[arg(short = 'v', long, requires = "live")]
    pub verbose: bool,
}

/// Events the live view takes between two steps, as the trace gave them from its ring.
const LIVE_BATCH: usize = 4096;

pub fn run(args: ExplainArgs) -> Result<()> {
    let recording = recording::read(&args.file)?;
    let stats = stats_of(&recording);
    let selection = match args.problems {
        true => Selection::Problems,
        false => Selection::All,
    };
    if args.live {
        let options = LiveOptions {
            selection,
            paths: args.verbose,
            format: args.format,
            summary_every_ns: None,
        };
        replay_live(&recording, options).report(&recording.context, &stats)?;
        crate::report::stdout::warnings(&stats);
        return Ok(());
    }
    report_selected(
        args.format,
        &Analysis::new(recording, None),
        &stats,
        selection,
        false,
    )
}

/// The live view's output, from the recorded events in the order the trace read them.
fn replay_live(recording: &Recording, options: LiveOptions) -> LiveEnd {
    // A recording made before the clock was kept: times of day are counted from boot.
    let clock = recording
        .context
        .clock
        .map_or(WallClock::from_offset(0), |c| {
            WallClock::from_offset(c.wall_minus_monotonic_ns)
        });
    let mut view = LiveView::new(recording.context.live.clone(), options, clock);
    for snapshot in &recording.context.rule_snapshots {
        view.add_rules(snapshot.clone());
    }
    for batch in recording.sightings.chunks(LIVE_BATCH) {
        for sighting in batch {
            view.push(sighting.clone());
        }
        view.advance(None);
    }
    view.finish(&recording.context.rules)
}

/// What the trace counted, as far as its recording tells.
fn stats_of(recording: &Recording) -> Stats {
    let mut stats = Stats::default();
    for s in &recording.sightings {
        stats.events.add(s.hook);
    }
    stats.duration_ns = match (
        recording.context.clock,
        recording.sightings.first(),
        recording.sightings.last(),
    ) {
        (Some(clock), _, _) => clock.duration_ns,
        (None, Some(first), Some(last)) => last.ts_ns.saturating_sub(first.ts_ns),
        _ => 0,
    };
    let end = &recording.context.end;
    if end.lost > 0 {
        stats.lost.insert("recorded".to_string(), end.lost);
    }
    for gap in &end.gaps {
        if let Some(cpu) = gap.cpu {
            *stats.lost_per_cpu.entry(cpu).or_default() += gap.lost;
        }
    }
    stats
}
