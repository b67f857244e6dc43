//! Where events were lost. The ring buffer fills per trace but fails per event: each CPU
//! counts the events it could not queue and hands that count to its next queued event
//! (`lost_before`). So a loss on a CPU is known to lie between two of its events, and the
//! journeys alive in that stretch are the ones that may miss points. Events lost after a
//! CPU's last queued event, and events past `--max-events`, lie between it and the end.

use std::collections::BTreeMap;
use tracer_common::hook::Hook;

use serde::{Deserialize, Serialize};

use crate::model::sighting::Sighting;

/// A stretch of time in which events were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The CPU that lost them; `None` for events userspace did not keep (`--max-events`).
    pub cpu: Option<u16>,
    pub from_ns: u64,
    pub to_ns: u64,
    pub lost: u64,
}

/// The gaps of a trace: from the sightings' `lost_before`, the kernel's per-CPU totals
/// (`lost_per_cpu`, which also hold what came after a CPU's last event), and the events not
/// kept, which came after the last kept one.
pub fn find(
    sightings: &[Sighting],
    lost_per_cpu: &BTreeMap<u16, u64>,
    not_kept: u64,
    end_ns: u64,
) -> Vec<Gap> {
    let mut last_ts: BTreeMap<u16, u64> = BTreeMap::new();
    let mut marked: BTreeMap<u16, u64> = BTreeMap::new();
    let mut gaps = Vec::new();
    let mut by_time: Vec<&Sighting> = sightings.iter().collect();
    by_time.sort_by_key(|s| s.ts_ns);
    for s in by_time {
        let previous = last_ts.insert(s.cpu, s.ts_ns).unwrap_or(0);
        if s.lost_before > 0 {
            *marked.entry(s.cpu).or_default() += u64::from(s.lost_before);
            gaps.push(Gap {
                cpu: Some(s.cpu),
                from_ns: previous,
                to_ns: s.ts_ns,
                lost: u64::from(s.lost_before),
            });
        }
    }
    for (&cpu, &lost) in lost_per_cpu {
        let after_last = lost.saturating_sub(marked.get(&cpu).copied().unwrap_or(0));
        if after_last > 0 {
            gaps.push(Gap {
                cpu: Some(cpu),
                from_ns: last_ts.get(&cpu).copied().unwrap_or(0),
                to_ns: end_ns.max(last_ts.get(&cpu).copied().unwrap_or(0)),
                lost: after_last,
            });
        }
    }
    if not_kept > 0 {
        let last_kept = sightings.iter().map(|s| s.ts_ns).max().unwrap_or(0);
        gaps.push(Gap {
            cpu: None,
            from_ns: last_kept,
            to_ns: end_ns.max(last_kept),
            lost: not_kept,
        });
    }
    gaps
}

/// Events the kernel skipped (see `crate::kernel::misses`) are known by their count only: they may lie
/// anywhere in the trace, so any journey may miss a point.
pub fn anywhere(lost: u64, end_ns: u64) -> Option<Gap> {
    (lost > 0).then_some(Gap {
        cpu: None,
        from_ns: 0,
        to_ns: end_ns,
        lost,
    })
}

/// How long before its first sighting a packet may have been on its way. A journey seen first
/// on arrival (a veth's receive, after the sender's transmit) may have lost its start to a gap
/// that closed just before it: the CPU that lost the sender's events reported the loss with an
/// event of another packet, before this one reached its receive side. A second covers a
/// backlog, a qdisc's delay and a wait for ARP.
const BIRTH_WINDOW_NS: u64 = 1_000_000_000;

/// Whether a journey (its sightings in time order) may miss points because of `gaps`: one of
/// them overlaps its life; for a journey whose end was not seen (`open`), one came after it
/// started (its end may be what was lost); for a journey not seen being sent from a local
/// socket, one came shortly before it (its start may be what was lost).
pub fn touches(sightings: &[Sighting], gaps: &[Gap], open: bool) -> bool {
    let (Some(first), Some(last)) = (sightings.first(), sightings.last()) else {
        return false;
    };
    let born_unseen = !sightings.iter().any(|s| s.hook == Hook::NfLocalOut);
    gaps.iter().any(|g| {
        let overlaps = g.from_ns <= last.ts_ns && g.to_ns >= first.ts_ns;
        let cut_its_end = open && g.to_ns >= first.ts_ns;
        let cut_its_start = born_unseen
            && g.from_ns <= last.ts_ns
            && g.to_ns.saturating_add(BIRTH_WINDOW_NS) >= first.ts_ns;
        overlaps || cut_its_end || cut_its_start
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts_ns: u64, cpu: u16, lost_before: u32) -> Sighting {
        let first = include_str!("../../tests/fixtures/local_in_drop.jsonl")
            .lines()
            .next();
        let mut s: Sighting = serde_json::from_str(first.unwrap()).unwrap();
        s.ts_ns = ts_ns;
        s.cpu = cpu;
        s.lost_before = lost_before;
        s
    }

    #[test]
    fn a_loss_lies_between_its_cpus_previous_event_and_the_one_that_reports_it() {
        let sightings = [at(100, 0, 0), at(150, 1, 0), at(200, 0, 3), at(300, 1, 0)];
        let per_cpu = BTreeMap::from([(0, 3), (1, 2)]);
        let gaps = find(&sightings, &per_cpu, 0, 1000);
        assert_eq!(
            gaps,
            [
                Gap {
                    cpu: Some(0),
                    from_ns: 100,
                    to_ns: 200,
                    lost: 3
                },
                // CPU 1 lost 2 that no later event reported: after its last one.
                Gap {
                    cpu: Some(1),
                    from_ns: 300,
                    to_ns: 1000,
                    lost: 2
                },
            ]
        );
    }

    #[test]
    fn events_the_kernel_skipped_may_be_missing_from_any_journey() {
        assert_eq!(anywhere(0, 1000), None);
        let gap = anywhere(2, 1000).unwrap();
        for journey in [
            [at(100, 0, 0), at(110, 0, 0)],
            [at(900, 1, 0), at(990, 1, 0)],
        ] {
            assert!(touches(&journey, &[gap], false));
        }
    }

    #[test]
    fn events_not_kept_are_a_gap_from_the_last_kept_one_to_the_end() {
        let gaps = find(&[at(100, 0, 0)], &BTreeMap::new(), 7, 500);
        assert_eq!(
            gaps,
            [Gap {
                cpu: None,
                from_ns: 100,
                to_ns: 500,
                lost: 7
            }]
        );
    }

    #[test]
    fn journeys_alive_during_a_gap_are_touched_and_others_not() {
        let gap = [Gap {
            cpu: Some(0),
            from_ns: 100,
            to_ns: 200,
            lost: 1,
        }];
        let during = [at(150, 1, 0), at(180, 1, 0)];
        let before = [sent(at(10, 1, 0)), at(50, 1, 0)];
        let after = [sent(at(250, 1, 0)), at(260, 1, 0)];
        assert!(touches(&during, &gap, false));
        assert!(!touches(&before, &gap, false));
        assert!(!touches(&after, &gap, false));
        // Its end not seen: the end may be in the gap that followed.
        assert!(touches(&before, &gap, true));
        // The reporting event itself belongs to the gap's edge.
        assert!(touches(&[at(200, 0, 1)], &gap, false));
    }

    fn sent(mut s: Sighting) -> Sighting {
        s.hook = Hook::NfLocalOut;
        s
    }

    fn received(mut s: Sighting) -> Sighting {
        s.hook = Hook::NetifReceive;
        s
    }

    /// The shape of a flood through a tiny ring (tests/tests/overload.rs failed on it in CI):
    /// CPU 1 lost a datagram's transmit events at 140 and reported them with the receive of an
    /// earlier datagram at 150; the lost one's receive side came at 170.
    #[test]
    fn a_journey_first_seen_arriving_after_a_gap_may_have_lost_its_start() {
        let gap = [Gap {
            cpu: Some(1),
            from_ns: 100,
            to_ns: 150,
            lost: 8,
        }];
        let arrived = [received(at(170, 1, 0)), at(180, 1, 0)];
        assert!(touches(&arrived, &gap, false));
        // Sent from a local socket and seen doing it: its start is there, the gap was before.
        let sent_here = [sent(at(170, 1, 0)), received(at(180, 1, 0))];
        assert!(!touches(&sent_here, &gap, false));
        // Arriving long after the gap: nothing of it was on its way then.
        let much_later = [received(at(150 + 2 * BIRTH_WINDOW_NS, 1, 0))];
        assert!(!touches(&much_later, &gap, false));
    }
}
