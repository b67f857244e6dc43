//! The streaming engine's output (`tracer trace --live`, on by default for text on a terminal):
//! each packet on stdout as its journey closes, while the trace goes on, as a line (text) or a
//! `packet` record (JSON); each flow when it ends (JSON) and at exit. Every event is stitched,
//! and memory follows what is open: the journeys still open in the stitcher and the flows in
//! [`LiveFlows`], both bounded.
//!
//! Packets come in the order they were first seen, as tcpdump prints them: one that closed
//! waits for those seen before it that are still open (at most the stitcher's hold window).
//! With the stitcher's closings and the flows' endings in the events' clock, a recording
//! replayed (`tracer explain --live`) prints what the live run printed.

mod end;
mod flows;

use std::{
    collections::{BTreeMap, HashMap},
    io::{self, Write},
};

pub use end::LiveEnd;

use crate::{
    analysis::{
        fate::TraceEnd,
        journey::{
            from_closed,
            stream::{Closed, Stitcher, Window},
            Journey,
        },
        live_flows::{Limits, LiveFlow, LiveFlows},
        Analysis, Context,
    },
    kernel::live_capture::LiveCapture,
    model::sighting::Sighting,
    report::{
        explanation::COUNTED_NOTES,
        line::{packet_line, WallClock},
        output::{write_packet_json, write_path},
        packet_file::PacketFile,
        paint::Paint,
        stdout::Format,
        Selection,
    },
};

/// What the live view shows.
#[derive(Clone, Copy, Debug)]
pub struct LiveOptions {
    /// Which packets and flows are shown (`--problems`: those that did not make it).
    pub selection: Selection,
    /// Each line followed by the packet's path, point by point (`-v`).
    pub paths: bool,
    pub format: Format,
    /// Text: the flows open, every this many nanoseconds of the trace (`--summary-every`).
    pub summary_every_ns: Option<u64>,
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
    /// Journeys given out so far.
    given: u64,
    /// Stdout stopped taking lines (a closed pipe).
    closed: bool,
    options: LiveOptions,
    flows: LiveFlows,
    /// Events with a note a kernel counter counts, per (namespace, note): checked against the
    /// counters at exit.
    notes: BTreeMap<(String, &'static str), i64>,
    incomplete: Incomplete,
    /// Text: the summary lines of the flows that ended, for the summary at exit.
    ended: Vec<u8>,
    ended_listed: usize,
    ended_not_listed: u64,
    /// `-w`: the packets written as their journeys close.
    packet_file: Option<PacketFile>,
    /// Where lines and records go: stdout, or a sink for the benchmark.
    out: Box<dyn Write>,
    /// When the next periodic summary is due, in the events' clock.
    next_summary_ns: Option<u64>,
}

#[derive(Clone, Copy, Default)]
struct Incomplete {
    packets: usize,
    flows: usize,
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
            flows: LiveFlows::new(Limits::default()),
            notes: BTreeMap::new(),
            incomplete: Incomplete::default(),
            ended: Vec::new(),
            ended_listed: 0,
            ended_not_listed: 0,
            packet_file: None,
            out: Box::new(io::stdout()),
            next_summary_ns: None,
        }
    }

    #[cfg(test)]
    fn set_flow_limits(&mut self, limits: Limits) {
        self.flows = LiveFlows::new(limits);
    }

    /// Writes the lines and records to `out` instead of stdout.
    pub fn write_to(&mut self, out: Box<dyn Write>) {
        self.out = out;
    }

    /// Writes each packet to `file` as its journey closes (`-w`).
    pub fn write_packets_to(&mut self, file: PacketFile) {
        self.packet_file = Some(file);
    }

    /// Flows open now, for the status line.
    pub fn open_flows(&self) -> usize {
        self.flows.open()
    }

    pub fn push(&mut self, sighting: Sighting) {
        self.stitcher.push(sighting);
    }

    /// Writes the packets whose journeys closed by now: the events' time, moved on to `now_ns`
    /// (the events' clock) when events are few. Returns how many packets were written.
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
        let written = self.write(ready.into_values());
        if let Some(now) = now_ns {
            self.summary_if_due(now);
        }
        written
    }

    /// Writes the packets still open when the trace stopped; the flows and the summary are
    /// [`LiveEnd::report`]'s, once the trace's context is known.
    pub fn finish(mut self) -> LiveEnd {
        let stitcher = std::mem::take(&mut self.stitcher);
        let cut_short = stitcher.cut_short;
        self.wait(stitcher.finish());
        let ready = std::mem::take(&mut self.waiting);
        self.write(ready.into_values());
        LiveEnd::new(self, cut_short)
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
        let end = TraceEnd::default();
        let mut journeys = Vec::new();
        for c in ready {
            // A packet and the copies a bridge made of it, each in the order first seen.
            let mut group = from_closed(c, &end, self.given + 1);
            self.given = group.last().map_or(self.given, |j| j.id);
            group.sort_by_key(|j| j.sightings.first().map_or(0, |s| s.ts_ns));
            journeys.extend(group);
        }
        // In order: each packet after the flows that ended before it began.
        let mut repeats = HashMap::new();
        let mut items = Vec::new();
        for journey in &mut journeys {
            if let Some(first) = self.flows.add(journey) {
                repeats.insert(journey.id, first);
            }
            items.extend(
                self.flows
                    .ended()
                    .into_iter()
                    .map(|f| Item::Ended(Box::new(f))),
            );
            items.push(Item::Packet(journey.id));
            self.count(journey);
        }
        if items.is_empty() {
            return 0;
        }
        let analysis = self.window(journeys, repeats);
        let batch: Vec<&Journey> = items
            .iter()
            .filter_map(|item| match item {
                Item::Packet(id) => analysis.journey(*id),
                Item::Ended(_) => None,
            })
            .collect();
        self.add_to_packet_file(&analysis, &batch);
        if self.closed {
            return 0;
        }
        let mut sink = std::mem::replace(&mut self.out, Box::new(io::sink()));
        let mut out = io::BufWriter::with_capacity(1 << 16, &mut sink);
        let mut written = 0;
        let mut result = Ok(());
        for item in items {
            result = match item {
                Item::Packet(id) => match analysis.journey(id) {
                    Some(journey) if self.options.selection.journey(journey) => {
                        written += 1;
                        self.write_packet(&mut out, &analysis, journey)
                    }
                    _ => Ok(()),
                },
                Item::Ended(flow) => self.flow_ended(&mut out, *flow),
            };
            if result.is_err() {
                break;
            }
        }
        let result = result.and_then(|()| out.flush());
        drop(out);
        self.out = sink;
        if result.is_err() {
            self.closed = true;
            return 0;
        }
        written
    }

    /// A packet's line (with `-v` its path) or its record.
    fn write_packet(
        &self,
        out: &mut impl Write,
        analysis: &Analysis,
        journey: &Journey,
    ) -> io::Result<()> {
        match self.options.format {
            Format::Json => write_packet_json(out, journey, analysis),
            Format::Text => {
                let verdicts = analysis.captures(journey.id);
                let line = packet_line(journey, verdicts, self.clock, self.paint);
                writeln!(out, "{line}")?;
                match self.options.paths {
                    true => write_path(out, journey, self.paint),
                    false => Ok(()),
                }
            }
        }
    }

    /// The analysis of a batch of journeys, with the first transmissions they repeat where
    /// their flows kept them (their sentences name those packets' fates).
    fn window(&self, journeys: Vec<Journey>, repeats: HashMap<u64, u64>) -> Analysis {
        let first = journeys.first().map_or(0, |j| j.id);
        let mut window = journeys;
        for (id, original) in &repeats {
            if *original >= first {
                continue;
            }
            let flow_id = window.iter().find(|j| j.id == *id).map_or(0, |j| j.flow_id);
            if let Some(journey) = self.flows.kept(flow_id, *original) {
                window.push(journey.clone());
            }
        }
        window.sort_by_key(|j| j.id);
        window.dedup_by_key(|j| j.id);
        Analysis::window(window, Vec::new(), repeats, self.context())
    }

    /// Writes the batch's packets to the `-w` file; a write that fails stops the file there.
    fn add_to_packet_file(&mut self, analysis: &Analysis, batch: &[&Journey]) {
        let Some(file) = self.packet_file.as_mut() else {
            return;
        };
        if let Err(e) = file.add(analysis, batch.iter().copied()) {
            eprintln!("tracer: warning: cannot write the packet file ({e:#}): it stops here");
            self.packet_file = None;
        }
    }

    /// What the counters' checks and the footer need of a packet.
    fn count(&mut self, journey: &Journey) {
        self.incomplete.packets += usize::from(journey.incomplete);
        for s in &journey.sightings {
            let (Some(note), Some(ns)) = (&s.note, &s.netns_name) else {
                continue;
            };
            for (_, prefix) in COUNTED_NOTES {
                if note.starts_with(prefix) {
                    *self.notes.entry((ns.to_string(), prefix)).or_default() += 1;
                }
            }
        }
    }

    /// The context a packet's or flow's analysis has while the trace runs: the live captures
    /// (the kernel's counters and rules are read when it ends).
    fn context(&self) -> Context {
        Context {
            live: self.captures.clone(),
            ..Context::default()
        }
    }
}

/// What a batch writes, in order.
enum Item {
    Packet(u64),
    Ended(Box<LiveFlow>),
}

#[cfg(test)]
mod tests;
