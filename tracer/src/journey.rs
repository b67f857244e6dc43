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

use crate::sighting::Sighting;

/// Longer than any packet takes through the stack, shorter than TCP's minimum RTO (200 ms).
const SAME_PACKET_WINDOW_NS: u64 = 100_000_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Journey {
    pub id: u64,
    pub sightings: Vec<Sighting>,
    pub fate: Fate,
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
    pub reason: Option<String>,
    pub location: Option<String>,
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
pub fn build(mut sightings: Vec<Sighting>) -> Vec<Journey> {
    sightings.sort_by_key(|s| s.ts_ns);
    let mut journeys: Vec<Vec<Sighting>> = Vec::new();
    let mut open: HashMap<Fingerprint, usize> = HashMap::new();
    for sighting in sightings {
        let key = fingerprint(&sighting);
        let current = open
            .get(&key)
            .copied()
            .filter(|&i| continues(&journeys[i], &sighting));
        match current {
            Some(i) => journeys[i].push(sighting),
            None => {
                open.insert(key, journeys.len());
                journeys.push(vec![sighting]);
            }
        }
    }
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

fn continues(journey: &[Sighting], next: &Sighting) -> bool {
    let last = journey.last().expect("journeys are never empty");
    let revisits = journey.iter().any(|s| {
        s.hook == next.hook
            && s.position == next.position
            && s.netns == next.netns
            && s.ifindex == next.ifindex
    });
    next.ts_ns.saturating_sub(last.ts_ns) < SAME_PACKET_WINDOW_NS && !revisits
}

fn fate(sightings: &[Sighting]) -> Fate {
    let alive_at = |until: usize| {
        sightings[..until]
            .iter()
            .rev()
            .find(|s| !s.is_drop())
            .map(|s| s.hook.clone())
    };
    if let Some(i) = sightings.iter().position(Sighting::is_drop) {
        let drop = &sightings[i];
        return Fate {
            kind: FateKind::Dropped,
            hook: alive_at(i),
            reason: drop.reason.clone(),
            location: drop.location.clone(),
        };
    }
    Fate {
        kind: FateKind::Unknown,
        hook: None,
        reason: None,
        location: None,
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
