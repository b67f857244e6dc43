//! Stitching sightings into one journey per packet, and the packet's fate. Pure: sightings in,
//! journeys out, so it is tested with recorded streams and no kernel.
//!
//! A packet keeps its headers while it crosses the stack and a veth into another namespace, so
//! sightings are grouped by a content fingerprint (addresses, ports, IP id, TCP seq/ack/flags).
//! Two sightings with one fingerprint belong to different packets (a retransmission with the same
//! headers, a SYN-ACK resent with IP id 0) when the second is at a point the journey already
//! passed, or comes long after: a packet crosses the stack in microseconds, a retransmission
//! waits at least 200 ms.

use std::collections::HashMap;

use serde::Serialize;

use tracer_common::hook::Hook;

use crate::sighting::Sighting;

/// Longer than any packet takes through the stack, shorter than TCP's minimum RTO (200 ms).
const SAME_PACKET_WINDOW_NS: u64 = 100_000_000;

/// A route lookup happens while its packet is being handled, microseconds from its sightings.
const ROUTE_LOOKUP_WINDOW_NS: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Journey {
    pub id: u64,
    pub sightings: Vec<Sighting>,
    pub fate: Fate,
}

impl Journey {
    /// The sighting whose headers describe the packet: the first one on its path that parsed
    /// them (a route lookup or a bare skb event knows less).
    pub fn headers(&self) -> &Sighting {
        self.sightings
            .iter()
            .find(|s| s.on_path() && s.proto != "unknown")
            .unwrap_or(&self.sightings[0])
    }
}

/// `delivered`, `forwarded` and `transmitted` arrive with the socket and netfilter hooks; until
/// then a packet that was not dropped is `unknown`, never guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FateKind {
    Dropped,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fate {
    pub kind: FateKind,
    /// Dropped: the last observation point that saw the packet alive.
    pub hook: Option<String>,
    /// `first` or `last` when that point is a bracketed hook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    pub reason: Option<String>,
    pub location: Option<String>,
    /// Who dropped it, where the tracer knows more than the kernel's reason (another tool's
    /// XDP program).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

type Fingerprint = (
    Option<std::net::IpAddr>,
    Option<std::net::IpAddr>,
    String,
    u16,
    u16,
    u32,
    u32,
    u32,
    Vec<String>,
);

fn fingerprint(s: &Sighting) -> Fingerprint {
    (
        s.src,
        s.dst,
        s.proto.clone(),
        s.sport,
        s.dport,
        s.ip_id,
        s.tcp_seq,
        s.tcp_ack,
        s.tcp_flags.clone(),
    )
}

/// Groups `sightings` (any order) into journeys ordered by their first sighting.
///
/// A sighting joins the open journey with its fingerprint or, failing that, the one whose skb
/// it shares while that skb lives: that is how a NAT rewrite (new addresses, same skb) and an
/// event that only knows the skb (`net_dev_xmit`) stay in their packet's journey.
pub fn build(mut sightings: Vec<Sighting>) -> Vec<Journey> {
    sightings.sort_by_key(|s| s.ts_ns);
    let (route_lookups, sightings): (Vec<Sighting>, Vec<Sighting>) = sightings
        .into_iter()
        .partition(|s| s.hook == Hook::FibLookup.name());
    let mut journeys: Vec<Vec<Sighting>> = Vec::new();
    let mut open: HashMap<Fingerprint, usize> = HashMap::new();
    let mut live_skbs: HashMap<u64, usize> = HashMap::new();
    for sighting in sightings {
        let key = fingerprint(&sighting);
        let by_content = open.get(&key).copied();
        let by_skb = live_skbs
            .get(&sighting.skb)
            .copied()
            .filter(|&i| same_packet_after_nat(&journeys[i], &sighting));
        let current = by_content
            .into_iter()
            .chain(by_skb)
            .find(|&i| continues(&journeys[i], &sighting));
        let i = current.unwrap_or(journeys.len());
        if sighting.skb != 0 {
            if sighting.ends_skb() {
                live_skbs.remove(&sighting.skb);
            } else {
                live_skbs.insert(sighting.skb, i);
            }
        }
        if sighting.proto != "unknown" {
            open.insert(key, i);
        }
        match current {
            Some(i) => journeys[i].push(sighting),
            None => journeys.push(vec![sighting]),
        }
    }
    place_route_lookups(&mut journeys, route_lookups);
    journeys
        .into_iter()
        .enumerate()
        .map(|(i, sightings)| Journey {
            id: i as u64 + 1,
            fate: fate(&sightings),
            sightings,
        })
        .collect()
}

/// A route lookup names no skb: it belongs to the packet that the same CPU was handling in the
/// same namespace within [`ROUTE_LOOKUP_WINDOW_NS`], towards the same destination (an output
/// lookup may not know the source yet). A failed one that fits no packet is a journey of its
/// own; a successful one is left out of the journeys (it stays in the recorded stream).
fn place_route_lookups(journeys: &mut Vec<Vec<Sighting>>, lookups: Vec<Sighting>) {
    type Key = (u16, u32, Option<std::net::IpAddr>);
    let mut index: HashMap<Key, Vec<(u64, usize)>> = HashMap::new();
    for (i, journey) in journeys.iter().enumerate() {
        for s in journey {
            index
                .entry((s.cpu, s.netns, s.dst))
                .or_default()
                .push((s.ts_ns, i));
        }
    }
    for lookup in lookups {
        let nearest = index
            .get(&(lookup.cpu, lookup.netns, lookup.dst))
            .into_iter()
            .flatten()
            .filter(|(ts, i)| {
                ts.abs_diff(lookup.ts_ns) < ROUTE_LOOKUP_WINDOW_NS
                    && source_fits(&lookup, &journeys[*i])
            })
            .min_by_key(|(ts, _)| ts.abs_diff(lookup.ts_ns))
            .map(|(_, i)| *i);
        match nearest {
            Some(i) => {
                let at = journeys[i].partition_point(|s| s.ts_ns <= lookup.ts_ns);
                journeys[i].insert(at, lookup);
            }
            // A failed lookup is news (no route); a successful one without its packet (a
            // socket's connect, a source check) says nothing about any packet here.
            None if lookup
                .note
                .as_deref()
                .is_some_and(|n| n.starts_with("no route")) =>
            {
                journeys.push(vec![lookup])
            }
            None => {}
        }
    }
    journeys.sort_by_key(|j| j[0].ts_ns);
}

fn source_fits(lookup: &Sighting, journey: &[Sighting]) -> bool {
    let unspecified = lookup.src.is_none_or(|ip| ip.is_unspecified());
    unspecified || journey.iter().any(|s| s.src == lookup.src)
}

/// Whether `next`, which shares an skb with `journey`, is that packet: it carries no headers
/// (an event that only knows the skb), or the headers NAT keeps are unchanged (protocol, IP id,
/// TCP sequence numbers and flags). An skb address whose free went unseen can be reused by
/// another packet; this keeps that packet out.
fn same_packet_after_nat(journey: &[Sighting], next: &Sighting) -> bool {
    if next.proto == "unknown" {
        return true;
    }
    let Some(last) = journey.iter().rev().find(|s| s.proto != "unknown") else {
        return true;
    };
    last.proto == next.proto
        && last.ip_id == next.ip_id
        && last.tcp_seq == next.tcp_seq
        && last.tcp_ack == next.tcp_ack
        && last.tcp_flags == next.tcp_flags
}

fn continues(journey: &[Sighting], next: &Sighting) -> bool {
    let last = journey.last().expect("journeys are never empty");
    // Passing a point of the path twice means another packet; an skb may end more than once
    // (copied by veth's XDP, cloned for a raw socket), so only path points count.
    let revisits = next.on_path()
        && journey.iter().any(|s| {
            s.hook == next.hook
                && s.position == next.position
                && s.netns == next.netns
                && s.ifindex == next.ifindex
        });
    next.ts_ns.saturating_sub(last.ts_ns) < SAME_PACKET_WINDOW_NS && !revisits
}

fn fate(sightings: &[Sighting]) -> Fate {
    if let Some(i) = sightings.iter().position(Sighting::is_drop) {
        let drop = &sightings[i];
        // The last point on the packet's path that saw it alive: the drop lies between it and
        // the next point of the path.
        let alive = sightings[..i].iter().rev().find(|s| s.on_path());
        return Fate {
            kind: FateKind::Dropped,
            hook: alive.map(|s| s.hook.clone()),
            position: alive.and_then(|s| s.position.clone()),
            reason: drop.reason.clone(),
            location: drop.location.clone(),
            by: drop.note.clone(),
        };
    }
    Fate {
        kind: FateKind::Unknown,
        hook: None,
        position: None,
        reason: None,
        location: None,
        by: None,
    }
}

/// Whether a capture (tcpdump) on an interface saw the packet, from where the AF_PACKET taps sit:
/// receive taps just after `netif_receive`, before tc ingress; transmit taps after tc egress,
/// just before `dev_xmit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capture {
    pub netns_name: Option<String>,
    pub ifname: Option<String>,
    pub dir: &'static str,
    pub seen: bool,
}

pub fn captures(journey: &Journey) -> Vec<Capture> {
    let mut out: Vec<(u32, u32, Capture)> = Vec::new();
    for s in &journey.sightings {
        let (dir, at_or_after_tap) = match s.hook.as_str() {
            "xdp" => ("rx", false),
            "netif_receive" | "tc_ingress" => ("rx", true),
            "tc_egress" => ("tx", false),
            "dev_xmit" => ("tx", true),
            // Freed on an interface the packet was seen on nowhere else: it arrived there and
            // died before the receive tap (another tool's XDP program, the driver).
            "kfree_skb"
                if s.ifindex != 0
                    && !out
                        .iter()
                        .any(|(ns, ifx, _)| *ns == s.netns && *ifx == s.ifindex) =>
            {
                ("rx", false)
            }
            _ => continue,
        };
        match out
            .iter_mut()
            .find(|(ns, ifx, c)| *ns == s.netns && *ifx == s.ifindex && c.dir == dir)
        {
            Some((_, _, capture)) => capture.seen |= at_or_after_tap,
            None => out.push((
                s.netns,
                s.ifindex,
                Capture {
                    netns_name: s.netns_name.clone(),
                    ifname: s.ifname.clone(),
                    dir,
                    seen: at_or_after_tap,
                },
            )),
        }
    }
    out.into_iter().map(|(_, _, c)| c).collect()
}

#[cfg(test)]
mod tests;
