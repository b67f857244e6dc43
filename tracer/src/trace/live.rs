//! The live view (`tracer trace --live`, on by default for text on a terminal): a line per
//! packet on stdout as its journey closes, while the trace goes on. Every event is stitched,
//! also those past `--max-events`: what the final report keeps is bounded, what is shown live
//! is not, and the live stitcher's memory follows the packets still open.
//!
//! Lines come in the order the packets were first seen, as tcpdump prints them: a packet that
//! closed waits for the ones seen before it that are still open (at most the stitcher's hold
//! window). With the stitcher's closings independent of how events were read, a recording
//! replayed (`tracer explain --live`) prints the very lines the live run printed.

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use crate::{
    analysis::{
        capture::captures,
        fate::TraceEnd,
        journey::{
            from_closed,
            stream::{Closed, Stitcher, Window},
        },
    },
    kernel::live_capture::LiveCapture,
    model::sighting::Sighting,
    report::{
        line::{packet_line, WallClock},
        output::write_path,
        paint::Paint,
        Selection,
    },
};

/// What the live view shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveOptions {
    /// Which packets get a line (`--problems`: those that did not make it).
    pub selection: Selection,
    /// Each line followed by the packet's path, point by point (`-v`).
    pub paths: bool,
}

pub struct LiveView {
    stitcher: Stitcher,
    /// Live captures (tcpdump) when the trace started: the verdicts name them.
    captures: Vec<LiveCapture>,
    clock: WallClock,
    paint: Paint,
    /// Closed, waiting for the packets seen before them: by (first sighting's time, the
    /// stitcher's number).
    waiting: BTreeMap<(u64, u64), Closed>,
    /// Journeys given out so far (the final report numbers its own).
    given: u64,
    /// Stdout stopped taking lines (a closed pipe): the final report says so.
    closed: bool,
    options: LiveOptions,
}

impl LiveView {
    pub fn new(captures: Vec<LiveCapture>, options: LiveOptions, clock: WallClock) -> LiveView {
        LiveView {
            stitcher: Stitcher::new(Window::default()),
            captures,
            clock,
            paint: Paint::for_stdout(),
            waiting: BTreeMap::new(),
            given: 0,
            closed: false,
            options,
        }
    }

    pub fn push(&mut self, sighting: Sighting) {
        self.stitcher.push(sighting);
    }

    /// Writes the packets whose journeys closed by now: the events' time, moved on to `now_ns`
    /// (the events' clock) when events are few. Returns how many lines were written.
    pub fn advance(&mut self, now_ns: Option<u64>) -> usize {
        let closed = match now_ns {
            Some(now) => self.stitcher.advance_to(now),
            None => self.stitcher.advance(),
        };
        self.wait(closed);
        let horizon = self.stitcher.horizon();
        let later = match self.waiting.keys().find(|(first, _)| *first >= horizon) {
            Some(&key) => self.waiting.split_off(&key),
            None => BTreeMap::new(),
        };
        let ready = std::mem::replace(&mut self.waiting, later);
        self.write(ready.into_values())
    }

    /// The packets still open when the trace stopped.
    pub fn finish(mut self) -> usize {
        let stitcher = std::mem::take(&mut self.stitcher);
        self.wait(stitcher.finish());
        let ready = std::mem::take(&mut self.waiting);
        self.write(ready.into_values())
    }

    fn wait(&mut self, closed: Vec<Closed>) {
        for c in closed {
            let first = c
                .sightings
                .first()
                .or(c.annotations.first())
                .map_or(0, |s| s.ts_ns);
            self.waiting.insert((first, c.id), c);
        }
    }

    fn write(&mut self, ready: impl Iterator<Item = Closed>) -> usize {
        if self.closed {
            return 0;
        }
        let end = TraceEnd::default();
        let mut journeys = Vec::new();
        for c in ready {
            // A packet and the copies a bridge made of it, each in the order first seen.
            let mut group = from_closed(c, &end, self.given + 1);
            self.given = group.last().map_or(self.given, |j| j.id);
            group.sort_by_key(|j| j.sightings.first().map_or(0, |s| s.ts_ns));
            journeys.extend(group);
        }
        if journeys.is_empty() {
            return 0;
        }
        let mut out = io::stdout().lock();
        let mut lines = 0;
        for journey in journeys
            .iter()
            .filter(|j| self.options.selection.journey(j))
        {
            let verdicts = captures(journey, &self.captures);
            let line = packet_line(journey, &verdicts, self.clock, self.paint);
            let written = writeln!(out, "{line}").and_then(|()| match self.options.paths {
                true => write_path(&mut out, journey, self.paint),
                false => Ok(()),
            });
            if written.is_err() {
                self.closed = true;
                return lines;
            }
            lines += 1;
        }
        if out.flush().is_err() {
            self.closed = true;
        }
        lines
    }
}
