//! Which open journey a sighting continues: the one rule of stitching, applied by
//! [`super::stream`] as sightings arrive (a live trace) or all at once (a report of a whole
//! recording, [`super::build`]).

use std::borrow::Borrow;

use rustc_hash::FxHashMap;

use crate::model::sighting::{Proto, Sighting};

/// Longer than any packet takes through the stack, shorter than TCP's minimum RTO (200 ms).
pub(super) const SAME_PACKET_WINDOW_NS: u64 = 100_000_000;

/// The same for a packet whose every skb has ended with no clone sharing its data (freed or
/// dropped, none left alive, [`Sighting::sole_end`]): what can still join it is a copy made
/// before its skb ended (veth's XDP path, GSO's segments), seen within microseconds of that. A
/// clone's end (tcpdump's, or one a socket's error queue holds) can come much later: a journey
/// that had one keeps the longer window. Far shorter than [`SAME_PACKET_WINDOW_NS`], so that
/// the journeys of most packets close soon after they end: a live trace keeps fewer open.
pub(super) const ENDED_WINDOW_NS: u64 = 10_000_000;

/// The open journeys by what a sighting may share with one: its packet's fingerprint, or an
/// skb that is still alive. `K` names a journey; a key whose journey is gone (closed) is
/// ignored and forgotten when that journey closes.
pub(super) struct OpenIndex<K> {
    by_content: FxHashMap<Fingerprint, K>,
    live_skbs: FxHashMap<u64, K>,
}

/// The keys one journey put into the index (most put one fingerprint and one skb; a NAT
/// rewrite or a tunnel adds some): what to forget when it closes, without going over its
/// sightings again.
#[derive(Default)]
pub(super) struct Entries {
    keys: Vec<Fingerprint>,
    skbs: Vec<u64>,
}

/// What the index held for a sighting: the journeys its fingerprint and its skb pointed at.
#[derive(Clone, Copy)]
pub(super) struct Held<K> {
    content: Option<K>,
    skb: Option<K>,
}

impl<K: Copy + Eq> Default for OpenIndex<K> {
    fn default() -> Self {
        OpenIndex {
            by_content: FxHashMap::default(),
            live_skbs: FxHashMap::default(),
        }
    }
}

impl<K: Copy + Eq> OpenIndex<K> {
    /// The journey `next` continues: the one with its fingerprint or, failing that, the one
    /// whose skb it shares while that skb lives (a NAT rewrite keeps the skb; an event that
    /// only knows the skb, like `net_dev_xmit`, has nothing else). `journey` looks a journey
    /// up, `None` once it is closed. Also what the index held for `next`, for
    /// [`OpenIndex::record`].
    pub fn find<'a, S: Borrow<Sighting> + 'a>(
        &self,
        key: &Fingerprint,
        next: &Sighting,
        journey: impl Fn(K) -> Option<&'a [S]>,
    ) -> (Option<K>, Held<K>) {
        let held = Held {
            content: self.by_content.get(key).copied(),
            skb: self.live_skbs.get(&next.skb).copied(),
        };
        let by_skb = held
            .skb
            .filter(|&k| journey(k).is_some_and(|j| same_packet_after_nat(j, next)));
        let found = held
            .content
            .into_iter()
            .chain(by_skb)
            .find(|&k| journey(k).is_some_and(|j| continues(j, next)));
        (found, held)
    }

    /// Notes that `sighting` (with fingerprint `key`) is now journey `k`'s, and in `entries`
    /// (journey `k`'s) what was written; `held` is what [`OpenIndex::find`] found for it
    /// (along a path most sightings keep the headers and the skb of the one before: nothing
    /// to write then).
    pub fn record(
        &mut self,
        key: Fingerprint,
        sighting: &Sighting,
        k: K,
        held: Held<K>,
        entries: &mut Entries,
    ) {
        if sighting.skb != 0 {
            if sighting.ends_skb() {
                if held.skb.is_some() {
                    self.live_skbs.remove(&sighting.skb);
                }
            } else if held.skb != Some(k) {
                self.live_skbs.insert(sighting.skb, k);
                entries.skbs.push(sighting.skb);
            }
        }
        if sighting.proto != Proto::Unknown && held.content != Some(k) {
            self.by_content.insert(key, k);
            entries.keys.push(key);
        }
    }

    /// Forgets what still points at journey `k`, which closed, of what it wrote (`entries`).
    pub fn forget(&mut self, entries: &Entries, k: K) {
        for key in &entries.keys {
            if self.by_content.get(key) == Some(&k) {
                self.by_content.remove(key);
            }
        }
        for skb in &entries.skbs {
            if self.live_skbs.get(skb) == Some(&k) {
                self.live_skbs.remove(skb);
            }
        }
    }
}

/// Addresses, protocol, ports, IP id, TCP sequence, acknowledgment and flags: plain numbers,
/// so that building the key of each of a million sightings allocates nothing.
pub(super) type Fingerprint = (
    Option<std::net::IpAddr>,
    Option<std::net::IpAddr>,
    u32,
    u16,
    u16,
    u32,
    u32,
    u32,
    u8,
);

/// The fingerprint of the packet: inside a tunnel, of the packet it carries, which is the
/// journey's.
pub(super) fn fingerprint(s: &Sighting) -> Fingerprint {
    let s = crate::analysis::tunnel::inner(s);
    (
        s.src,
        s.dst,
        proto_key(s.proto),
        s.sport,
        s.dport,
        s.ip_id,
        s.tcp_seq,
        s.tcp_ack,
        s.tcp_flags.0,
    )
}

/// The protocol as a number: the IP protocol where there is one, else a hash of its name (with
/// the top bit set, apart from every protocol number).
fn proto_key(proto: Proto) -> u32 {
    match proto {
        Proto::Unknown => 0,
        Proto::Icmp => 1,
        Proto::Tcp => 6,
        Proto::Udp => 17,
        Proto::Icmpv6 => 58,
        Proto::Ip(number) => u32::from(number),
        Proto::Ethertype(_) => {
            let fnv = proto.name().bytes().fold(0x811c_9dc5u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
            fnv | 0x8000_0000
        }
    }
}

/// Whether `next`, which shares an skb with `journey`, is that packet: it carries no headers
/// (an event that only knows the skb), or the headers NAT keeps are unchanged (protocol, IP id,
/// TCP sequence numbers and flags). An skb address whose free went unseen can be reused by
/// another packet; this keeps that packet out.
fn same_packet_after_nat(journey: &[impl Borrow<Sighting>], next: &Sighting) -> bool {
    if next.proto == Proto::Unknown {
        // No headers to compare; an skb does not change namespace without a sighting on the
        // way (a veth crossing is seen at both ends), so another namespace means a reused
        // address.
        return sightings(journey)
            .rev()
            .find(|s| s.skb == next.skb)
            .is_none_or(|s| s.netns == next.netns);
    }
    let Some(last) = sightings(journey).rev().find(|s| s.proto != Proto::Unknown) else {
        return true;
    };
    // A tunnel pushes its headers onto the same skb, and the receiving one pulls them off:
    // the packet is the one inside.
    let (last, next) = (
        crate::analysis::tunnel::inner(last),
        crate::analysis::tunnel::inner(next),
    );
    last.proto == next.proto
        && last.ip_id == next.ip_id
        && last.tcp_seq == next.tcp_seq
        && last.tcp_ack == next.tcp_ack
        && last.tcp_flags == next.tcp_flags
}

pub(super) fn continues(journey: &[impl Borrow<Sighting>], next: &Sighting) -> bool {
    let last = journey.last().expect("journeys are never empty").borrow();
    // Passing a point of the path twice means another packet; an skb may end more than once
    // (copied by veth's XDP, cloned for a raw socket), so only path points count.
    // A bridge's clones of one frame (flooded to several ports) pass its forwarding points
    // once each: another skb there is another copy, not another packet.
    let revisits = next.on_path()
        && !crate::analysis::bridge::another_clone(journey, next)
        && sightings(journey).any(|s| {
            s.hook == next.hook
                && s.position == next.position
                && s.netns == next.netns
                && s.ifindex == next.ifindex
        });
    let since = next.ts_ns.saturating_sub(last.ts_ns);
    let soon = since < ENDED_WINDOW_NS || (since < SAME_PACKET_WINDOW_NS && !ended_all(journey));
    (soon || held(journey, next)) && !revisits
}

/// Whether the journey's skbs have all ended, none shared with a clone: at least one end
/// seen, every end a sole one, and no skb alive.
pub(super) fn ended_all(journey: &[impl Borrow<Sighting>]) -> bool {
    let mut ends = sightings(journey).filter(|s| s.ends_skb()).peekable();
    ends.peek().is_some() && ends.all(|s| s.sole_end) && !any_skb_alive(journey)
}

/// Whether `next` is about a packet that waited, however long: its skb is one of the
/// journey's that no free has ended yet (queued for its neighbour's link-layer address, in a
/// qdisc, on a socket), or `next` frees a copy of it (a neighbour probe clones the queued
/// packet and frees the clone). The time window is for packets told apart by headers alone.
fn held(journey: &[impl Borrow<Sighting>], next: &Sighting) -> bool {
    let alive =
        |skb: u64| skb != 0 && sightings(journey).any(|s| s.skb == skb) && !ended(journey, skb);
    alive(next.skb) || (next.ends_skb() && next.skb != 0 && any_skb_alive(journey))
}

/// Whether one of the journey's skbs has been seen and not freed: a later sighting of it
/// belongs to this packet however late it comes.
pub(super) fn any_skb_alive(journey: &[impl Borrow<Sighting>]) -> bool {
    // Most of a journey's sightings share the skb of the one before: each run is looked up
    // once (a run found ended says nothing alive; the next run may).
    let mut looked_up = 0;
    sightings(journey).any(|s| {
        if s.skb == 0 || s.skb == looked_up {
            return false;
        }
        looked_up = s.skb;
        !ended(journey, s.skb)
    })
}

fn ended(journey: &[impl Borrow<Sighting>], skb: u64) -> bool {
    sightings(journey).any(|s| s.skb == skb && s.ends_skb())
}

fn sightings<S: Borrow<Sighting>>(
    journey: &[S],
) -> impl DoubleEndedIterator<Item = &Sighting> + Clone {
    journey.iter().map(Borrow::borrow)
}
