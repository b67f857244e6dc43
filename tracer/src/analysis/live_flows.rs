//! Flows as live state: the streaming engine's, and a whole trace's ([`whole_trace`], nothing
//! ending). Each journey joins its flow as it closes, by its tuples ([`flow::tuples`]: both
//! tuples of a NAT rewrite, which joins two flows into one), and a flow ends once idle,
//! as conntrack's entries do: a TCP connection closed (a reset, or a FIN each way) after
//! [`Limits::closed_ns`], any other after [`Limits::idle_ns`]. Time is the events' clock: a
//! flow ends when a journey begins after its deadline, so a replay ends flows where the live
//! run ended them, however the events were read.
//!
//! Memory follows the flows open: at most [`Limits::max_open`], past which the longest idle
//! one is ended early and counted; each keeps a bounded number of its journeys for its
//! explanation, and all together a bounded number too (the others are counted, not kept).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use rustc_hash::FxHashMap;

use crate::{
    analysis::{
        flow::{self, Flow, Tuple},
        journey::Journey,
        retransmissions::{self, Key},
    },
    model::sighting::Proto,
};

/// The flows of a whole trace: `journeys` (in time order) grouped as the live engine groups
/// them, with no flow ending before the trace, numbers them from 1 in the order they began, and sets each
/// journey's `flow_id`. With the retransmissions found on the way: journey id -> the journey
/// of the first transmission it repeats.
pub fn whole_trace(journeys: &mut [Journey]) -> (Vec<Flow>, HashMap<u64, u64>) {
    let mut live = LiveFlows::new(Limits::WHOLE_TRACE);
    let mut repeats = HashMap::new();
    for journey in journeys.iter_mut() {
        if let Some(first) = live.add(journey) {
            repeats.insert(journey.id, first);
        }
    }
    // Numbered again: two flows that a NAT rewrite showed to be one leave a gap, and the
    // journeys of the later one still carry its old number.
    let at: FxHashMap<u64, usize> = journeys
        .iter()
        .enumerate()
        .map(|(i, j)| (j.id, i))
        .collect();
    let mut flows: Vec<Flow> = live.finish().into_iter().map(|f| f.flow).collect();
    for (flow, id) in flows.iter_mut().zip(1..) {
        flow.id = id;
        for journey in flow.journeys.iter().chain(&flow.copies) {
            if let Some(&i) = at.get(journey) {
                journeys[i].flow_id = id;
            }
        }
    }
    (flows, repeats)
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a closed TCP connection stays open for its last packets.
    pub closed_ns: u64,
    /// How long any other flow stays without a packet.
    pub idle_ns: u64,
    /// Flows open at once.
    pub max_open: usize,
    /// Journeys a flow keeps for its explanation; past them, only those that did not make it
    /// are kept, as many again.
    pub kept_per_flow: usize,
    /// Journeys all open flows keep together (a journey is a few kilobytes); past it, only
    /// those that did not make it are kept, as many again.
    pub kept_in_all: usize,
    /// Segments a TCP flow remembers to recognise their retransmissions.
    pub segments_remembered: usize,
    /// Whether a flow lists the ids of all its packets, kept or not (a whole trace's report);
    /// a live flow lists those it kept, so that a flow of hours holds what it keeps.
    pub lists_every_packet: bool,
}

impl Limits {
    /// For a whole trace at hand (a report, not a live view): no flow ends before the trace
    /// does, none is kept apart from the trace's journeys, every packet is listed.
    pub const WHOLE_TRACE: Limits = Limits {
        closed_ns: u64::MAX / 2,
        idle_ns: u64::MAX / 2,
        max_open: usize::MAX,
        kept_per_flow: 0,
        kept_in_all: 0,
        segments_remembered: usize::MAX,
        lists_every_packet: true,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            closed_ns: 2_000_000_000,
            idle_ns: 30_000_000_000,
            max_open: 16_384,
            kept_per_flow: 16,
            kept_in_all: 1024,
            segments_remembered: 4096,
            lists_every_packet: false,
        }
    }
}

pub struct LiveFlow {
    pub flow: Flow,
    /// The journeys kept for its explanation, in id order.
    pub journeys: Vec<Journey>,
    /// Its packets counted but not kept.
    pub not_kept: u64,
    /// Ended before it was idle long enough, to make room in a full table.
    pub ended_early: bool,
    tuples: Vec<Tuple>,
    last_ns: u64,
    /// When it ends if no packet comes: `last_ns` and its timeout.
    deadline_ns: u64,
    /// A FIN seen from the client, from the server.
    fins: [bool; 2],
    reset: bool,
    /// The first transmission of each segment seen, the oldest forgotten first.
    first_sent: FxHashMap<Key, u64>,
    sent_order: VecDeque<Key>,
}

impl LiveFlow {
    fn closed(&self) -> bool {
        self.reset || self.fins == [true, true]
    }

    fn deadline(&self, limits: &Limits) -> u64 {
        let timeout = match self.closed() {
            true => limits.closed_ns,
            false => limits.idle_ns,
        };
        self.last_ns.saturating_add(timeout)
    }

    /// Whether it keeps `journey`, with `kept_in_all` journeys kept by every open flow: the
    /// first ones, then those that did not make it.
    fn keeps(&self, journey: &Journey, limits: &Limits, kept_in_all: usize) -> bool {
        let kept = self.journeys.len();
        let problem = matches!(
            journey.fate.kind,
            crate::analysis::fate::FateKind::Dropped | crate::analysis::fate::FateKind::Unknown
        );
        match problem {
            false => kept < limits.kept_per_flow && kept_in_all < limits.kept_in_all,
            true => kept < 2 * limits.kept_per_flow && kept_in_all < 2 * limits.kept_in_all,
        }
    }

    /// The first transmission `key` repeats, or none (and journey `id` is remembered as it).
    fn repeats(&mut self, key: Key, id: u64, limits: &Limits) -> Option<u64> {
        if let Some(&first) = self.first_sent.get(&key) {
            return Some(first);
        }
        if self.sent_order.len() >= limits.segments_remembered {
            if let Some(oldest) = self.sent_order.pop_front() {
                self.first_sent.remove(&oldest);
            }
        }
        self.sent_order.push_back(key);
        self.first_sent.insert(key, id);
        None
    }

    fn absorb(&mut self, other: LiveFlow) {
        let (flow, from) = (&mut self.flow, other.flow);
        flow.packets += from.packets;
        flow.incomplete_packets += from.incomplete_packets;
        for (kind, n) in from.fates {
            *flow.fates.entry(kind).or_default() += n;
        }
        if flow.diverge.is_none() {
            flow.diverge = from.diverge;
        }
        for rewrite in from.nat {
            if !flow.nat.contains(&rewrite) {
                flow.nat.push(rewrite);
            }
        }
        flow.journeys.extend(from.journeys);
        flow.journeys.sort_unstable();
        flow.copies.extend(from.copies);
        flow.copies.sort_unstable();
        self.journeys.extend(other.journeys);
        self.journeys.sort_by_key(|j| j.id);
        self.not_kept += other.not_kept;
        self.tuples.extend(other.tuples);
        self.last_ns = self.last_ns.max(other.last_ns);
        self.fins = [self.fins[0] | other.fins[0], self.fins[1] | other.fins[1]];
        self.reset |= other.reset;
        for (key, first) in other.first_sent {
            self.first_sent.entry(key).or_insert(first);
        }
        self.sent_order.extend(other.sent_order);
    }
}

#[derive(Default)]
pub struct LiveFlows {
    /// By id: the order flows are handed out in.
    open: BTreeMap<u64, LiveFlow>,
    owner: FxHashMap<Tuple, u64>,
    last_id: u64,
    limits: Limits,
    /// (deadline, id) of every open flow: the next to end first.
    deadlines: BTreeSet<(u64, u64)>,
    /// Ended, not yet handed out, in the order they ended.
    ended: Vec<LiveFlow>,
    /// How many flows were ended early.
    pub ended_early: u64,
    /// Journeys the open flows keep.
    kept_in_all: usize,
}

impl LiveFlows {
    pub fn new(limits: Limits) -> LiveFlows {
        LiveFlows {
            limits,
            ..LiveFlows::default()
        }
    }

    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// Adds a journey that closed (in the order first seen): first ends the flows whose
    /// deadline passed before it began, then sets its `flow_id`; returns the journey it
    /// retransmits, if any. The flows ended are [`LiveFlows::ended`]'s.
    pub fn add(&mut self, journey: &mut Journey) -> Option<u64> {
        let first = journey.sightings.iter().map(|s| s.ts_ns).min().unwrap_or(0);
        let last = journey.sightings.iter().map(|s| s.ts_ns).max().unwrap_or(0);
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline >= first {
                break;
            }
            let ended = self.remove(id);
            self.ended.extend(ended);
        }
        let tuples = flow::tuples(journey);
        let mut ids: Vec<u64> = tuples
            .iter()
            .filter_map(|t| self.owner.get(t).copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let id = match ids.split_first() {
            None if tuples.is_empty() => return None,
            None => self.start(journey),
            Some((&first, others)) => {
                for other in others {
                    self.merge(first, *other);
                }
                first
            }
        };
        let limits = self.limits;
        let live = self.open.get_mut(&id).expect("the flow just found or made");
        for tuple in tuples {
            if !live.tuples.contains(&tuple) {
                live.tuples.push(tuple);
                self.owner.insert(tuple, id);
            }
        }
        live.last_ns = live.last_ns.max(last);
        let s = journey.headers();
        if s.proto == Proto::Tcp && journey.copy.is_none() {
            let forward = live.flow.is_forward(journey);
            live.reset |= s.tcp_flags.names().any(|f| f == "RST");
            live.fins[usize::from(!forward)] |= s.tcp_flags.names().any(|f| f == "FIN");
        }
        let repeats =
            retransmissions::key(journey).and_then(|key| live.repeats(key, journey.id, &limits));
        live.flow.add(journey);
        let old = live.deadline_ns;
        live.deadline_ns = live.deadline(&limits);
        self.deadlines.remove(&(old, id));
        self.deadlines.insert((live.deadline_ns, id));
        if live.keeps(journey, &limits, self.kept_in_all) {
            live.journeys.push(journey.clone());
            self.kept_in_all += 1;
        } else {
            // A live flow lists the packets it kept; the rest are counted.
            if !limits.lists_every_packet {
                match journey.copy {
                    Some(_) => live.flow.copies.pop(),
                    None => live.flow.journeys.pop(),
                };
            }
            live.not_kept += 1;
        }
        repeats
    }

    /// The flows open now, in id order.
    pub fn iter_open(&self) -> impl Iterator<Item = &LiveFlow> {
        self.open.values()
    }

    /// The journey with this id, if its flow is open and kept it.
    pub fn kept(&self, flow_id: u64, id: u64) -> Option<&Journey> {
        let live = self.open.get(&flow_id)?;
        let at = live.journeys.binary_search_by_key(&id, |j| j.id).ok()?;
        live.journeys.get(at)
    }

    /// The flows that ended since the last call, in the order they ended: idle past their
    /// deadline in the events' clock, or ended early to make room.
    pub fn ended(&mut self) -> Vec<LiveFlow> {
        std::mem::take(&mut self.ended)
    }

    /// Every flow still open, at the end of the trace, in id order.
    pub fn finish(mut self) -> Vec<LiveFlow> {
        let mut out = std::mem::take(&mut self.ended);
        let mut open: Vec<LiveFlow> = std::mem::take(&mut self.open).into_values().collect();
        open.sort_by_key(|f| f.flow.id);
        out.extend(open);
        out
    }

    fn start(&mut self, journey: &Journey) -> u64 {
        if self.open.len() >= self.limits.max_open {
            // The one nearest its end.
            let next = self.deadlines.first().map(|(_, id)| *id);
            if let Some(mut flow) = next.and_then(|id| self.remove(id)) {
                flow.ended_early = true;
                self.ended_early += 1;
                self.ended.push(flow);
            }
        }
        self.last_id += 1;
        let id = self.last_id;
        let live = LiveFlow {
            flow: flow::new_flow(id, journey),
            journeys: Vec::new(),
            not_kept: 0,
            ended_early: false,
            tuples: Vec::new(),
            last_ns: 0,
            deadline_ns: 0,
            fins: [false; 2],
            reset: false,
            first_sent: FxHashMap::default(),
            sent_order: VecDeque::new(),
        };
        self.open.insert(id, live);
        id
    }

    /// Joins flow `other` into `into`: a NAT rewrite showed they are one.
    fn merge(&mut self, into: u64, other: u64) {
        let Some(other) = self.open.remove(&other) else {
            return;
        };
        self.deadlines.remove(&(other.deadline_ns, other.flow.id));
        for tuple in &other.tuples {
            self.owner.insert(*tuple, into);
        }
        if let Some(live) = self.open.get_mut(&into) {
            live.absorb(other);
        }
    }

    fn remove(&mut self, id: u64) -> Option<LiveFlow> {
        let live = self.open.remove(&id)?;
        self.kept_in_all -= live.journeys.len();
        self.deadlines.remove(&(live.deadline_ns, id));
        for tuple in &live.tuples {
            if self.owner.get(tuple) == Some(&id) {
                self.owner.remove(tuple);
            }
        }
        Some(live)
    }
}

#[cfg(test)]
mod tests;
