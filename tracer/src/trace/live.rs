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
mod holds;
mod pipe;

use std::{
    collections::{BTreeMap, HashMap},
    io::{self, Write},
};

pub use end::LiveEnd;
pub use holds::RulesWanted;
use holds::{netfilter_drop, Holds, Ready};

use crate::{
    analysis::{
        answered,
        journey::{
            stream::{Stitcher, Window},
            Journey,
        },
        live_flows::{Limits, LiveFlow, LiveFlows},
        Analysis, Context,
    },
    kernel::{
        live_capture::LiveCapture,
        rules::{NamespaceRules, RulesSnapshot},
    },
    model::sighting::Sighting,
    report::{
        explanation::{rule_words_short, COUNTED_NOTES},
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

/// Rules reads taken in between two looks for those no drop can be named by any more: each
/// look goes through the open flows' journeys, so it is not done at every read (the soak reads
/// rules every few seconds: 35 minutes of them held about 8 MiB).
const RULES_READS_BETWEEN_FORGETTING: usize = 32;

pub struct LiveView {
    stitcher: Stitcher,
    /// Live captures (tcpdump) when the trace started: the verdicts name them.
    captures: Vec<LiveCapture>,
    clock: WallClock,
    paint: Paint,
    /// The packets closed and not written yet, and the drop rules read while tracing.
    holds: Holds,
    /// Journeys given out so far.
    given: u64,
    /// Rules reads kept after they were last looked through (see `forget_unneeded_rules`).
    rules_kept_after_forgetting: usize,
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
        pipe::widen_stdout_pipe();
        LiveView {
            stitcher: Stitcher::new(Window::default()),
            captures,
            clock,
            paint: Paint::for_stdout(),
            holds: Holds::default(),
            given: 0,
            rules_kept_after_forgetting: 0,
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

    /// The drop rules as read at one moment: the packets netfilter dropped before it can go.
    pub fn add_rules(&mut self, snapshot: RulesSnapshot) {
        self.holds.add_rules(snapshot);
        if self.holds.rules_kept()
            >= self.rules_kept_after_forgetting + RULES_READS_BETWEEN_FORGETTING
        {
            self.forget_unneeded_rules();
        }
    }

    /// Forgets the rules reads no drop can be named by any more: a drop still to come is in a
    /// journey begun at the stitcher's horizon or later, and an open flow's drops are in the
    /// journeys it kept (its record or summary line names their rules when it ends).
    fn forget_unneeded_rules(&mut self) {
        let flow_drops = self
            .flows
            .iter_open()
            .flat_map(|live| &live.journeys)
            .filter_map(|j| netfilter_drop(&j.sightings).map(|(at, _)| at));
        let earliest = flow_drops.fold(self.stitcher.horizon(), u64::min);
        self.holds.forget_rules_before(earliest);
        self.rules_kept_after_forgetting = self.holds.rules_kept();
    }

    /// The netfilter drops waiting for their rules to be read after them: a read of their
    /// namespaces started now names them.
    pub fn rules_wanted(&self) -> Option<RulesWanted> {
        self.holds.rules_wanted()
    }

    /// Writes the packets whose journeys closed by now: the events' time, moved on to `now_ns`
    /// (the events' clock) when events are few. Returns how many packets were written.
    pub fn advance(&mut self, now_ns: Option<u64>) -> usize {
        let closed = match now_ns {
            Some(now) => self.stitcher.advance_to(now),
            None => self.stitcher.advance(),
        };
        self.holds.wait(closed);
        let ready = self.holds.ready(self.stitcher.horizon());
        let written = self.write(ready);
        if let Some(now) = now_ns {
            self.summary_if_due(now);
        }
        written
    }

    /// Writes the packets still open when the trace stopped; the flows and the summary are
    /// [`LiveEnd::report`]'s, once the trace's context is known.
    ///
    /// `rules`: the drop rules read when the trace stopped, which name the drops no earlier
    /// read did.
    pub fn finish(mut self, rules: &[NamespaceRules]) -> LiveEnd {
        let stitcher = std::mem::take(&mut self.stitcher);
        let cut_short = stitcher.cut_short;
        self.holds.wait(stitcher.finish());
        self.holds.add_rules(RulesSnapshot {
            started_ns: u64::MAX,
            read: None,
            namespaces: rules.to_vec(),
        });
        let ready = self.holds.all();
        self.write(ready);
        LiveEnd::new(self, cut_short)
    }

    /// Writes `ready` (in the order first seen), each netfilter drop with the rules read after
    /// it.
    fn write(&mut self, ready: Vec<Ready>) -> usize {
        let mut journeys = Vec::new();
        // Journey number -> the rules read that names its drop.
        let mut named_by: HashMap<u64, usize> = HashMap::new();
        for (mut group, dropped_at) in ready {
            // Numbered now, in the order first seen, the copies pointing at their original.
            let base = self.given;
            for j in &mut group {
                j.id += base;
                if let Some(copy) = j.copy.as_mut() {
                    copy.of += base;
                }
            }
            let named = dropped_at.and_then(|(at, netns)| self.holds.snapshot_after(at, netns));
            if let Some(snapshot) = named {
                named_by.extend(group.iter().map(|j| (j.id, snapshot)));
            }
            self.given = group.last().map_or(self.given, |j| j.id);
            group.sort_by_key(|j| j.sightings.first().map_or(0, |s| s.ts_ns));
            journeys.extend(group);
        }
        // A segment whose end no point saw, answered by TCP, was delivered (as the report of a
        // whole trace says): its window of packets is in this batch.
        answered::delivered_by_answer(&mut journeys);
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
        let mut analysis = self.window(journeys, repeats);
        let mut sink = std::mem::replace(&mut self.out, Box::new(io::sink()));
        let mut out = io::BufWriter::with_capacity(1 << 16, &mut sink);
        let mut written = 0;
        let mut result = Ok(());
        for (snapshot, run) in runs_by_rules(items, &named_by) {
            if let Some(i) = snapshot {
                analysis.context.rules = self.holds.rules(i).namespaces.clone();
            }
            let batch: Vec<&Journey> = run
                .iter()
                .filter_map(|item| match item {
                    Item::Packet(id) => analysis.journey(*id),
                    Item::Ended(_) => None,
                })
                .collect();
            self.add_to_packet_file(&analysis, &batch);
            if self.closed || result.is_err() {
                continue;
            }
            for item in run {
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
        }
        if self.closed {
            drop(out);
            self.out = sink;
            return 0;
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
                let rule = rule_words_short(journey, &analysis.context.rules);
                let line = packet_line(journey, verdicts, rule.as_deref(), self.clock, self.paint);
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
    /// (the kernel's counters are read when it ends, the rules as drops need them).
    fn context(&self) -> Context {
        Context {
            live: self.captures.clone(),
            ..Context::default()
        }
    }

    /// The context of a flow's analysis: with each namespace's rules as read after the last
    /// packet of it that netfilter dropped there (written already, so that read is here).
    fn flow_context(&self, journeys: &[Journey]) -> Context {
        let mut drops: Vec<(u64, u32)> = journeys
            .iter()
            .filter_map(|j| netfilter_drop(&j.sightings))
            .collect();
        drops.sort_unstable();
        let mut rules: Vec<NamespaceRules> = Vec::new();
        for (at, netns) in drops {
            let Some(i) = self.holds.snapshot_after(at, netns) else {
                continue;
            };
            for read in &self.holds.rules(i).namespaces {
                rules.retain(|r| r.netns_name != read.netns_name);
                rules.push(read.clone());
            }
        }
        Context {
            rules,
            ..self.context()
        }
    }
}

/// What a batch writes, in order.
enum Item {
    Packet(u64),
    Ended(Box<LiveFlow>),
}

/// `items` cut where a packet is named by another rules read than the packets before it: each
/// run is written with its read's rules (`None`: no packet of the run needs any).
fn runs_by_rules(
    items: Vec<Item>,
    named_by: &HashMap<u64, usize>,
) -> Vec<(Option<usize>, Vec<Item>)> {
    let mut runs: Vec<(Option<usize>, Vec<Item>)> = Vec::new();
    for item in items {
        let needs = match &item {
            Item::Packet(id) => named_by.get(id).copied(),
            Item::Ended(_) => None,
        };
        match runs.last_mut() {
            Some((snapshot, run)) if needs.is_none() || *snapshot == needs => run.push(item),
            Some((snapshot @ None, run)) => {
                *snapshot = needs;
                run.push(item);
            }
            _ => runs.push((needs, vec![item])),
        }
    }
    runs
}

#[cfg(test)]
mod tests;
