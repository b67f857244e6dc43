//! The closed packets the live view holds before writing them: each waits for the packets
//! seen before it (tcpdump's order), a netfilter drop for the rules read after it (which name
//! its rule), and a TCP segment whose end no point saw for its answer window (its fate is
//! then the report's). The packets seen after a held one wait behind it.

use std::{collections::BTreeMap, ops::Bound};

use crate::{
    analysis::{
        answered,
        fate::TraceEnd,
        journey::{from_closed, stream::Closed, Journey},
    },
    kernel::rules::RulesSnapshot,
    model::sighting::Sighting,
};

/// A waiting packet's place: its first sighting's time, then the stitcher's number.
type Key = (u64, u64);

/// A packet ready to be written: it with the copies a bridge made of it (numbered from 1 until
/// given out), and when and in which namespace netfilter dropped it: the rules read there
/// after that names the rule.
pub type Ready = (Vec<Journey>, Option<(u64, u32)>);

/// What the netfilter drops waiting for a rules read need of it.
#[derive(Debug, PartialEq)]
pub struct RulesWanted {
    /// The earliest such drop: a read started after it names it.
    pub since_ns: u64,
    /// The namespaces (inodes) the drops were in: the read covers those.
    pub netns: Vec<u32>,
}

/// A segment waiting for what settles whether TCP answered it.
#[derive(Clone, Copy)]
struct Unsettled {
    /// It waits while the packets first seen up to this time are not all closed: the end of
    /// its answer window, or once a packet settled it, that packet's first sighting.
    until: u64,
    /// The last waiting packet looked at for its answer: those after it are looked at next.
    looked_to: Key,
    /// The segment's place in its waiting group (the packet and a bridge's copies of it).
    at: usize,
}

#[derive(Default)]
pub struct Holds {
    /// Closed, waiting for the packets seen before them.
    waiting: BTreeMap<Key, Vec<Journey>>,
    /// The waiting TCP segments whose end no point saw, which TCP may answer (see
    /// [`crate::analysis::answered`]): each waits until the packet that settles it is closed,
    /// so that its answer is written with it.
    awaiting_answer: BTreeMap<Key, Unsettled>,
    /// The waiting packets netfilter dropped, with the drop's time and namespace: each waits
    /// for the drop rules read there after it.
    dropped_by_netfilter: BTreeMap<Key, (u64, u32)>,
    /// The drop rules read while tracing, in the order they were started (see
    /// [`crate::trace::session`]); a replay has them all from the recording.
    rules: Vec<RulesSnapshot>,
}

impl Holds {
    /// The drop rules as read at one moment: the packets netfilter dropped before it can go.
    pub fn add_rules(&mut self, snapshot: RulesSnapshot) {
        let at = self
            .rules
            .partition_point(|s| s.started_ns <= snapshot.started_ns);
        self.rules.insert(at, snapshot);
    }

    /// How many rules reads are kept.
    pub fn rules_kept(&self) -> usize {
        self.rules.len()
    }

    /// Forgets the rules reads that can name no drop any more: those started before `at`, the
    /// earliest time of a drop still to be named by the caller's account (packets not closed
    /// yet, open flows), and before every waiting drop. A read names only drops before it
    /// ([`Holds::snapshot_after`]), so what is asked later gets the same answer: a trace of
    /// hours, reading the rules after each drop, holds the reads its open packets and flows
    /// need, not every read since it started. Indices from `snapshot_after` do not outlive
    /// the batch that asked, so moving them here is safe.
    pub fn forget_rules_before(&mut self, at: u64) {
        let at = self
            .dropped_by_netfilter
            .values()
            .map(|&(dropped, _)| dropped)
            .fold(at, u64::min);
        let needed_from = self.rules.partition_point(|s| s.started_ns < at);
        self.rules.drain(..needed_from);
    }

    pub fn rules(&self, snapshot: usize) -> &RulesSnapshot {
        &self.rules[snapshot]
    }

    /// The netfilter drops waiting for the rules to be read after them: a read of their
    /// namespaces started now names them.
    pub fn rules_wanted(&self) -> Option<RulesWanted> {
        let unnamed: Vec<(u64, u32)> = self
            .dropped_by_netfilter
            .values()
            .copied()
            .filter(|&(at, netns)| self.snapshot_after(at, netns).is_none())
            .collect();
        let since_ns = unnamed.iter().map(|&(at, _)| at).min()?;
        let mut netns: Vec<u32> = unnamed.iter().map(|&(_, netns)| netns).collect();
        netns.sort_unstable();
        netns.dedup();
        Some(RulesWanted { since_ns, netns })
    }

    /// The first rules read started after `at` that read namespace `netns`: the one that names
    /// a drop there at `at`, the same in the live run and in its replay.
    pub fn snapshot_after(&self, at: u64, netns: u32) -> Option<usize> {
        let from = self.rules.partition_point(|s| s.started_ns < at);
        (from..self.rules.len()).find(|&i| self.rules[i].covers(netns))
    }

    /// Takes in the packets the stitcher closed.
    pub fn wait(&mut self, closed: Vec<Closed>) {
        let end = TraceEnd::default();
        for c in closed {
            let first = c
                .sightings
                .first()
                .or(c.annotations.first())
                .map_or(0, |s| s.ts_ns);
            let key = (first, c.id);
            if let Some(drop) = netfilter_drop(&c.sightings) {
                self.dropped_by_netfilter.insert(key, drop);
            }
            let group = from_closed(c, &end, 1);
            let deadlines = group.iter().enumerate();
            let unsettled = deadlines
                .filter_map(|(at, j)| Some((answered::answer_deadline(j)?, at)))
                .max();
            if let Some((until, at)) = unsettled {
                let looked_to = key;
                self.awaiting_answer.insert(
                    key,
                    Unsettled {
                        until,
                        looked_to,
                        at,
                    },
                );
            }
            self.waiting.insert(key, group);
        }
    }

    /// The packets that can go, in the order first seen: those seen before `horizon` (the
    /// stitcher's: every packet seen before it has closed) and before the first held one.
    pub fn ready(&mut self, horizon: u64) -> Vec<Ready> {
        self.settle_answers(horizon);
        // Every packet first seen at `horizon` or later waits, and so does every one from the
        // first held on. One cut, whose cost is that of the side that goes (split_off counts
        // the smaller side): behind a held packet, a second of packets may wait, and this runs
        // every few thousand events.
        let seen_since = (horizon, 0);
        let cut = self
            .held(horizon)
            .map_or(seen_since, |held| held.min(seen_since));
        let later = self.waiting.split_off(&cut);
        let ready = std::mem::replace(&mut self.waiting, later);
        self.release(ready)
    }

    /// Every waiting packet: the trace stopped.
    pub fn all(&mut self) -> Vec<Ready> {
        let ready = std::mem::take(&mut self.waiting);
        self.release(ready)
    }

    fn release(&mut self, ready: BTreeMap<Key, Vec<Journey>>) -> Vec<Ready> {
        ready
            .into_iter()
            .map(|(key, group)| {
                self.awaiting_answer.remove(&key);
                (group, self.dropped_by_netfilter.remove(&key))
            })
            .collect()
    }

    /// Looks for what settles each unsettled segment among the packets closed since it was last
    /// looked for: those first seen before `horizon`, which no packet closing later can precede.
    /// Most segments are answered within milliseconds: they wait that long, not their window.
    fn settle_answers(&mut self, horizon: u64) {
        let end = (horizon, 0);
        for (key, wait) in self.awaiting_answer.iter_mut() {
            if wait.until < horizon || wait.looked_to >= end {
                continue;
            }
            let Some(segment) = self.waiting.get(key).and_then(|group| group.get(wait.at)) else {
                continue;
            };
            let mut later = self
                .waiting
                .range((Bound::Excluded(wait.looked_to), Bound::Excluded(end)))
                .flat_map(|(key, group)| group.iter().map(move |j| (*key, j)));
            let mut looked_to = wait.looked_to;
            let settled = answered::settled_by(
                segment,
                std::iter::from_fn(|| {
                    let (key, j) = later.next()?;
                    looked_to = key;
                    Some(j)
                }),
            );
            wait.looked_to = looked_to;
            if settled.is_some() {
                // Its batch must reach the packet that settled it.
                wait.until = looked_to.0;
            }
        }
    }

    /// The first waiting packet that must wait longer, if one does: a netfilter drop whose
    /// rules are not read yet, or a segment TCP may still answer (what settles it, or its
    /// window's end, reaches `horizon`).
    fn held(&self, horizon: u64) -> Option<Key> {
        // Both maps hold waiting packets only, in the waiting order, and few of them.
        let unnamed = self
            .dropped_by_netfilter
            .iter()
            .find(|(_, &(at, netns))| self.snapshot_after(at, netns).is_none())
            .map(|(key, _)| *key);
        let unanswered = self
            .awaiting_answer
            .iter()
            .find(|(_, wait)| wait.until >= horizon)
            .map(|(key, _)| *key);
        let mut cut = match (unnamed, unanswered) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        // A segment written before the cut must have its window written with it: one whose
        // window reaches the cut waits too.
        while let Some(earlier) = self
            .awaiting_answer
            .range(..cut)
            .find(|(_, wait)| wait.until >= cut.0)
            .map(|(key, _)| *key)
        {
            cut = earlier;
        }
        Some(cut)
    }
}

/// When and where netfilter dropped the packet, if it did: the time and namespace of its free
/// with the reason `NETFILTER_DROP`, after which that namespace's rules' counters tell which
/// rule it was.
pub fn netfilter_drop(sightings: &[Sighting]) -> Option<(u64, u32)> {
    sightings
        .iter()
        .rev()
        .find(|s| s.is_drop() && s.reason.as_deref() == Some("NETFILTER_DROP"))
        .map(|s| (s.ts_ns, s.netns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::hook::Hook;

    /// A TCP segment seen at `ts_ns` in namespace 2, only there: from 10.0.0.1 at tc ingress
    /// (a segment whose end no point saw), or from 10.0.0.2 (`reverse`) leaving at LOCAL_OUT.
    fn segment(ts_ns: u64, flags: &[&str], seq: u32, ack: u32, reverse: bool) -> Closed {
        let mut s = answered::test_segment(flags, seq, ack, reverse);
        (s.ts_ns, s.skb, s.netns) = (ts_ns, ts_ns, 2);
        s.hook = if reverse {
            Hook::NfLocalOut
        } else {
            Hook::TcIngress
        };
        (s.reason, s.location, s.note) = (None, None, None);
        Closed {
            id: ts_ns,
            sightings: vec![s],
            ..Closed::default()
        }
    }

    const MS: u64 = 1_000_000;

    fn rules_read(started_ms: u64, netns: &[u32]) -> RulesSnapshot {
        RulesSnapshot {
            started_ns: started_ms * MS,
            read: Some(netns.to_vec()),
            namespaces: Vec::new(),
        }
    }

    /// The rules read that names a drop at `at_ms` in `netns`, by its start.
    fn naming(holds: &Holds, at_ms: u64, netns: u32) -> Option<u64> {
        let i = holds.snapshot_after(at_ms * MS, netns)?;
        Some(holds.rules(i).started_ns / MS)
    }

    /// A trace of hours reads the rules after every drop: the reads no drop can be named by
    /// any more go, and every drop from the bound on (and every waiting one) is named by the
    /// same read as before.
    #[test]
    fn rules_reads_no_drop_can_need_are_forgotten_and_the_others_name_the_same() {
        let mut holds = Holds::default();
        for (started_ms, netns) in [(100, [2]), (200, [3]), (300, [2]), (400, [3]), (500, [2])] {
            holds.add_rules(rules_read(started_ms, &netns));
        }
        // A drop in namespace 3 at 150 ms still waits to be written.
        holds
            .dropped_by_netfilter
            .insert((150 * MS, 9), (150 * MS, 3));
        let asked = [(150, 3), (350, 2), (350, 3), (450, 2), (450, 3), (500, 2)];
        let before: Vec<_> = asked
            .iter()
            .map(|&(at, ns)| naming(&holds, at, ns))
            .collect();
        holds.forget_rules_before(350 * MS);
        let after: Vec<_> = asked
            .iter()
            .map(|&(at, ns)| naming(&holds, at, ns))
            .collect();
        assert_eq!(before, after);
        assert_eq!(
            before[0],
            Some(200),
            "the waiting drop keeps the read after it"
        );
        assert_eq!(
            holds.rules_kept(),
            4,
            "only the read at 100 ms could name nothing"
        );
        holds.dropped_by_netfilter.clear();
        holds.forget_rules_before(450 * MS);
        assert_eq!(
            holds.rules_kept(),
            1,
            "the read at 500 ms is all a later drop can need"
        );
        assert_eq!(naming(&holds, 450, 2), Some(500));
    }

    /// A segment whose end no point saw waits for what settles it: its answer, a millisecond
    /// later, not the end of its window (600 ms).
    #[test]
    fn a_segment_answered_at_once_waits_for_its_answer_not_its_window() {
        let mut holds = Holds::default();
        holds.wait(vec![segment(1_000 * MS, &["SYN"], 100, 0, false)]);
        assert!(holds.ready(1_500 * MS).is_empty(), "unsettled: it waits");
        holds.wait(vec![
            segment(1_001 * MS, &["SYN", "ACK"], 7, 101, true),
            segment(1_600 * MS, &["ACK"], 8, 101, true),
        ]);
        let ready = holds.ready(1_700 * MS);
        assert_eq!(
            ready.len(),
            3,
            "the segment, its answer and the packet after"
        );
        holds.wait(vec![segment(2_000 * MS, &["SYN"], 500, 0, false)]);
        assert!(
            holds.ready(2_500 * MS).is_empty(),
            "unanswered, it waits for its window"
        );
        assert_eq!(holds.ready(2_700 * MS).len(), 1);
    }
}
