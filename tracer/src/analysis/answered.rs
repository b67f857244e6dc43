//! A TCP segment whose end no point saw, but which the receiving TCP answered: it arrived.
//!
//! Where no netfilter hook sits on the way in (a kernel without BPF netfilter links, whose
//! stand-in on `nf_hook_slow` sees only hooks that have rules; or no netfilter point at all),
//! nothing after tc ingress sees a segment reach its socket, and TCP frees a SYN or an
//! acknowledged segment without a tracepoint (or, before 6.2, a duplicate SYN it answered with
//! `kfree_skb` and no reason). The answer is the proof: a segment of the same flow, sent back
//! from the namespace where the packet was last seen, acknowledging its sequence number; for a
//! reset, its socket saying it accepted one (`tcp_receive_reset`). Pure, on the journeys of a
//! trace.

use std::{collections::HashMap, net::IpAddr};
use tracer_common::hook::Hook;

use crate::{
    analysis::fate::{FateKind, UnknownReason, ACCEPTED_RESET},
    analysis::journey::Journey,
    model::drop_reason::{self, DropClass},
    model::sighting::{Proto, Sighting},
};

/// How long after a packet was last seen its answer may come: TCP answers at once, or within
/// a delayed ACK, which RFC 1122 keeps under 500 ms (Linux: under HZ/2 before it knows the
/// round trip, then under the round trip, at most 200 ms once in ping-pong mode). A live view
/// holds an unanswered segment, and every packet after it, this long.
const ANSWER_WINDOW_NS: u64 = 600_000_000;

/// Hooks of the receive path, up to where a packet is handed to its socket.
const RECEIVE_SIDE: &[Hook] = &[
    Hook::Xdp,
    Hook::NetifReceive,
    Hook::TcIngress,
    Hook::NfPrerouting,
];

/// Marks as delivered each TCP journey that ended unseen on the receive side of a namespace
/// whose TCP then acknowledged it.
pub fn delivered_by_answer(journeys: &mut [Journey]) {
    // Each candidate looks only at the later journeys of its own connection.
    let mut by_connection: HashMap<Connection, Vec<usize>> = HashMap::new();
    for (i, j) in journeys.iter().enumerate() {
        by_connection
            .entry(connection(j.headers()))
            .or_default()
            .push(i);
    }
    let answered: Vec<(usize, u64)> = journeys
        .iter()
        .enumerate()
        .filter(|(_, j)| j.copy.is_none())
        .filter_map(|(i, j)| {
            let same = &by_connection[&connection(j.headers())];
            let later = same.iter().filter(|&&k| k > i).map(|&k| &journeys[k]);
            answer_to(j, later).map(|k| (i, k))
        })
        .collect();
    for (i, answer) in answered {
        let freed = journeys[i].fate.kind == FateKind::Dropped;
        let by = if journeys[i].headers().tcp_flags.has("RST") {
            format!("{ACCEPTED_RESET} (packet {answer})")
        } else if freed {
            format!("answered by TCP (packet {answer}), which then freed it")
        } else {
            format!("answered by TCP (packet {answer})")
        };
        let fate = &mut journeys[i].fate;
        fate.kind = FateKind::Delivered;
        fate.reason = None;
        fate.location = None;
        fate.by = Some(by);
    }
}

/// Until when an answer to `j` may come (the events' clock), if `j` is a segment whose end no
/// point saw that TCP may answer: a live view holds it until then.
pub fn answer_deadline(j: &Journey) -> Option<u64> {
    let last = candidate(j)?;
    Some(last.ts_ns.saturating_add(ANSWER_WINDOW_NS))
}

/// The last point on the path of `j`, if `j` is a TCP segment ended unseen on the receive side
/// (or freed by TCP past LOCAL_IN), which an answer would show delivered.
fn candidate(j: &Journey) -> Option<&Sighting> {
    let unseen = j.fate.kind == FateKind::Unknown
        && matches!(
            j.fate.unknown_reason(),
            Some(UnknownReason::EndNotSeen | UnknownReason::InFlight)
        );
    // Before 6.2, TCP frees a duplicate SYN it answered with a plain kfree_skb; and a packet TCP
    // took may end for a normal reason (a FIN left queued purged at close, QUEUE_PURGE).
    let in_tcp = |l: &str| l.starts_with("tcp_v4_rcv") || l.starts_with("tcp_v6_rcv");
    let freed_by_tcp = j.fate.kind == FateKind::Dropped
        && match j.fate.drop_reason() {
            Some(r) if drop_reason::class(r) == DropClass::NormalEnd => true,
            Some("NOT_SPECIFIED") => j.fate.location.as_deref().is_some_and(in_tcp),
            _ => false,
        };
    if !(unseen || freed_by_tcp) || j.incomplete {
        return None;
    }
    let h = j.headers();
    let last = j.sightings.iter().rev().find(|s| s.on_path())?;
    // Past LOCAL_IN, a segment TCP freed without a reason in tcp_v4_rcv/tcp_v6_rcv was taken
    // by a TIME_WAIT or FIN_WAIT2 mini-socket: tcp_timewait_state_process handled it (a FIN
    // it acknowledges, say), then `goto discard_it` frees it with NOT_SPECIFIED. Its answer
    // tells that case from a segment TCP refused.
    let taken_by_tcp = freed_by_tcp && last.hook == Hook::NfLocalIn;
    if j.copy.is_some()
        || h.proto != Proto::Tcp
        || !(RECEIVE_SIDE.contains(&last.hook) || taken_by_tcp)
    {
        return None;
    }
    Some(last)
}

/// The id of the first later journey that answers `j`, if `j` is a candidate.
fn answer_to<'a>(j: &Journey, later: impl Iterator<Item = &'a Journey>) -> Option<u64> {
    match settled(j, later)? {
        (k, Settled::Answered) => Some(k.id),
        (_, Settled::Repeated | Settled::PastWindow) => None,
    }
}

/// Where the question "did TCP answer `j`?" is settled, among the journeys after it (in the
/// order they began): the first that begins past its window, repeats it or answers it, and
/// which; `None` if `later` runs out first or `j` is no candidate.
///
/// A live view holds `j` until it is settled: the journey that settled it is then closed, and
/// written in the same batch as `j`.
pub fn settled_by<'a>(
    j: &Journey,
    later: impl Iterator<Item = &'a Journey>,
) -> Option<&'a Journey> {
    settled(j, later).map(|(k, _)| k)
}

enum Settled {
    Answered,
    /// A retransmission came first: the answer may be to that copy.
    Repeated,
    PastWindow,
}

fn settled<'a>(
    j: &Journey,
    later: impl Iterator<Item = &'a Journey>,
) -> Option<(&'a Journey, Settled)> {
    let last = candidate(j)?;
    let h = j.headers();
    for k in later {
        let Some(first) = k.sightings.first() else {
            continue;
        };
        if first.ts_ns > last.ts_ns.saturating_add(ANSWER_WINDOW_NS) {
            return Some((k, Settled::PastWindow));
        }
        if first.ts_ns < last.ts_ns {
            continue;
        }
        let kh = k.headers();
        if (is_answer(h, kh) || accepts_reset(h, k)) && first.netns == last.netns {
            return Some((k, Settled::Answered));
        }
        if same_direction(h, kh) && kh.tcp_seq == h.tcp_seq {
            return Some((k, Settled::Repeated));
        }
    }
    None
}

/// Both directions of a connection: (protocol, lower endpoint, higher endpoint).
type Connection = (Proto, (Option<IpAddr>, u16), (Option<IpAddr>, u16));

fn connection(s: &Sighting) -> Connection {
    let (a, b) = ((s.src, s.sport), (s.dst, s.dport));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    (s.proto, lo, hi)
}

/// `k` is a socket saying it accepted a reset, and `segment` is a reset to that socket.
fn accepts_reset(segment: &Sighting, k: &Journey) -> bool {
    segment.tcp_flags.has("RST")
        && k.sightings
            .iter()
            .any(|s| s.note.as_deref() == Some("reset received"))
        && same_direction(segment, k.headers())
}

fn same_direction(a: &Sighting, b: &Sighting) -> bool {
    b.proto == Proto::Tcp && (a.src, a.dst, a.sport, a.dport) == (b.src, b.dst, b.sport, b.dport)
}

/// `answer` goes the other way and acknowledges at least the first byte (or the SYN or FIN)
/// of `segment`.
fn is_answer(segment: &Sighting, answer: &Sighting) -> bool {
    let reverse = answer.proto == Proto::Tcp
        && (answer.src, answer.dst, answer.sport, answer.dport)
            == (segment.dst, segment.src, segment.dport, segment.sport);
    let acked = answer.tcp_ack.wrapping_sub(segment.tcp_seq);
    reverse && answer.tcp_flags.has("ACK") && (1..1 << 31).contains(&acked)
}

/// A TCP sighting from a recorded trace, given these headers: 10.0.0.1:4000 -> 10.0.0.2:80, or
/// the other way (`reverse`).
#[cfg(test)]
pub(crate) fn test_segment(flags: &[&str], seq: u32, ack: u32, reverse: bool) -> Sighting {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/local_in_syn_drop.jsonl");
    let mut s = crate::model::recording::read(&fixture)
        .expect("fixture")
        .sightings[0]
        .clone();
    let (a, b) = ("10.0.0.1".parse().ok(), "10.0.0.2".parse().ok());
    (s.src, s.dst) = if reverse { (b, a) } else { (a, b) };
    (s.sport, s.dport) = if reverse { (80, 4000) } else { (4000, 80) };
    (s.tcp_seq, s.tcp_ack) = (seq, ack);
    s.tcp_flags = crate::model::tcp_flags::TcpFlags::from_names(flags).expect("TCP flags");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_segment as segment;

    #[test]
    fn a_syn_answered_with_a_syn_ack_was_delivered() {
        let syn = segment(&["SYN"], 100, 0, false);
        assert!(is_answer(&syn, &segment(&["SYN", "ACK"], 7, 101, true)));
        assert!(
            !is_answer(&syn, &segment(&["ACK"], 7, 100, true)),
            "an ack of the sequence before it does not answer it"
        );
        assert!(
            !is_answer(&syn, &segment(&["SYN", "ACK"], 7, 101, false)),
            "the same direction is no answer"
        );
        assert!(
            !is_answer(&syn, &segment(&["RST"], 7, 101, true)),
            "only an ACK acknowledges"
        );
    }

    /// `segment` at `hook`/`position` in namespace `netns`, at `ts_ns`.
    fn at(
        segment: &Sighting,
        ts_ns: u64,
        hook: &str,
        position: Option<&str>,
        netns: u32,
    ) -> Sighting {
        let mut s = segment.clone();
        (s.ts_ns, s.hook, s.netns) = (
            ts_ns,
            tracer_common::hook::Hook::from_name(hook).expect("a hook name"),
            netns,
        );
        s.position = tracer_common::hook::Position::named(position);
        (s.reason, s.location, s.note) = (None, None, None);
        s.skb = ts_ns;
        s
    }

    /// A client's FIN crossing into the server's namespace (2) past LOCAL_IN, freed there
    /// without a reason in tcp_v4_rcv; and, if `answered`, the server's ACK of it.
    fn fin_to_a_timewait_socket(answered: bool) -> Vec<Journey> {
        let fin = segment(&["FIN", "ACK"], 500, 90, false);
        let mut sightings = vec![
            at(&fin, 1_000, "tc_egress", Some("first"), 1),
            at(&fin, 2_000, "nf_prerouting", Some("last"), 2),
            at(&fin, 3_000, "nf_local_in", Some("last"), 2),
        ];
        let mut free = at(&fin, 4_000, "kfree_skb", None, 2);
        free.skb = 3_000;
        for s in &mut sightings[1..] {
            s.skb = 3_000;
        }
        free.reason = Some("NOT_SPECIFIED".into());
        free.location = Some("tcp_v4_rcv+0x91".into());
        sightings.push(free);
        if answered {
            let ack = segment(&["ACK"], 90, 501, true);
            sightings.push(at(&ack, 5_000, "nf_local_out", Some("first"), 2));
        }
        let mut journeys =
            crate::analysis::journey::build(sightings, &crate::analysis::fate::TraceEnd::default());
        delivered_by_answer(&mut journeys);
        journeys
    }

    #[test]
    fn a_fin_a_timewait_socket_acknowledged_then_freed_was_delivered() {
        let journeys = fin_to_a_timewait_socket(true);
        assert_eq!(journeys.len(), 2, "{journeys:#?}");
        let fate = &journeys[0].fate;
        assert_eq!(fate.kind, FateKind::Delivered, "{fate:?}");
        assert_eq!(
            fate.by.as_deref(),
            Some("answered by TCP (packet 2), which then freed it")
        );
    }

    #[test]
    fn a_segment_freed_past_local_in_that_tcp_never_answered_stays_dropped() {
        let journeys = fin_to_a_timewait_socket(false);
        assert_eq!(journeys.len(), 1, "{journeys:#?}");
        assert_eq!(journeys[0].fate.kind, FateKind::Dropped);
    }
}
