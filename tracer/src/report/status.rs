//! The live status line on stderr while tracing, on a terminal only: events per second,
//! flows, lost events. Redrawn in place once a second and erased at the end, so that the
//! report that follows starts on a clean line.

use std::{
    collections::HashSet,
    io::{IsTerminal, Write},
    time::Instant,
};

use crate::{
    analysis::flow::{canonical, Tuple},
    model::sighting::Sighting,
};

/// Distinct flows the status line counts at most.
const FLOWS_COUNTED: usize = 100_000;

pub struct Status {
    flows: HashSet<Tuple>,
    /// The flows open now, when the streaming engine keeps them (it then counts no distinct
    /// flows here: over hours, that set would only grow).
    open_flows: Option<usize>,
    events: u64,
    /// Time and event count at the last redraw, for the rate.
    last: (Instant, u64),
}

impl Status {
    /// A status line if stderr is a terminal (a pipe or a log file gets none).
    pub fn for_stderr() -> Option<Status> {
        std::io::stderr().is_terminal().then(Status::new)
    }

    fn new() -> Status {
        Status {
            flows: HashSet::new(),
            open_flows: None,
            events: 0,
            last: (Instant::now(), 0),
        }
    }

    /// Counts new events: `sightings` decoded, and `not_kept` more past `--max-events`.
    pub fn add(&mut self, sightings: &[Sighting], not_kept: u64) {
        self.events += sightings.len() as u64 + not_kept;
        if self.open_flows.is_some() {
            return;
        }
        for s in sightings.iter().filter(|s| s.on_path()) {
            // A trace that runs for hours must not grow with every flow it ever saw.
            if self.flows.len() < FLOWS_COUNTED {
                self.flows.extend(canonical(s));
            }
        }
    }

    pub fn line(&mut self, lost: u64) -> String {
        let now = Instant::now();
        let seconds = now.duration_since(self.last.0).as_secs_f64().max(1e-3);
        let rate = (self.events - self.last.1) as f64 / seconds;
        self.last = (now, self.events);
        let flows = match self.open_flows {
            Some(open) => format!("{open} flows open"),
            None if self.flows.len() >= FLOWS_COUNTED => format!("{FLOWS_COUNTED}+ flows"),
            None => format!("{} flows", self.flows.len()),
        };
        format!(
            "tracer: {} events ({rate:.0}/s), {flows}, {lost} lost",
            self.events
        )
    }

    /// Shows the flows open now instead of the distinct flows seen.
    pub fn open_flows(&mut self, open: usize) {
        self.open_flows = Some(open);
    }

    pub fn draw(&mut self, lost: u64) {
        let line = self.line(lost);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
    }

    pub fn erase(&self) {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_events_flows_and_lost() {
        let fixture = include_str!("../../tests/fixtures/local_in_syn_drop.jsonl");
        let sightings: Vec<Sighting> = fixture
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let mut status = Status::new();
        status.add(&sightings, 0);
        let line = status.line(3);
        let flows = sightings
            .iter()
            .filter(|s| s.on_path())
            .filter_map(canonical)
            .collect::<HashSet<_>>()
            .len();
        assert!(flows > 0);
        assert!(
            line.starts_with(&format!("tracer: {} events (", sightings.len())),
            "{line}"
        );
        assert!(
            line.ends_with(&format!("/s), {flows} flows, 3 lost")),
            "{line}"
        );
    }
}
