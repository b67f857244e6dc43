//! Flows: journeys grouped by bidirectional 5-tuple, across NAT (a journey whose addresses were
//! rewritten joins the flows of both its tuples into one). Pure.

use std::{collections::BTreeMap, net::IpAddr};

use serde::Serialize;

use crate::{
    analysis::fate::{Fate, FateKind},
    analysis::journey::Journey,
    model::sighting::{Proto, Sighting},
};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flow {
    pub id: u64,
    pub proto: Proto,
    /// The sender of the flow's first packet, `ip:port` (`ip` for ICMP).
    pub client: String,
    pub server: String,
    pub packets: u64,
    /// Packet counts per fate kind.
    pub fates: BTreeMap<&'static str, u64>,
    /// Where the first packet that did not make it was dropped: the stage where the flow's
    /// packets diverge from a working exchange.
    pub diverge: Option<Fate>,
    /// Address rewrites (NAT) seen on its packets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nat: Vec<String>,
    /// Its packets alive while events were lost: they may miss points.
    #[serde(skip_serializing_if = "is_zero")]
    pub incomplete_packets: u64,
    /// Ids of its journeys, in time order.
    #[serde(skip)]
    pub journeys: Vec<u64>,
    /// Ids of its packets' copies (see [`crate::analysis::copies`]): not packets of the flow, and their
    /// ends are not its fates.
    #[serde(rename = "copy_ids", skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<u64>,
    /// `(ip, port)` of the client, to tell the directions apart.
    #[serde(skip)]
    pub client_endpoint: (Option<IpAddr>, u16),
}

type Endpoint = (Option<IpAddr>, u16);
pub type Tuple = (Proto, Endpoint, Endpoint);

/// Ports that identify a conversation: TCP and UDP ports; for ICMP echo the identifier, on both
/// sides (it is the same in the request and the reply); nothing for other ICMP messages.
fn endpoints(s: &Sighting) -> Option<(Endpoint, Endpoint)> {
    let ports = match s.proto {
        Proto::Unknown => return None,
        Proto::Tcp | Proto::Udp => (s.sport, s.dport),
        Proto::Icmp if matches!(s.icmp_type, 0 | 8) => (s.sport, s.sport),
        Proto::Icmpv6 if matches!(s.icmp_type, 128 | 129) => (s.sport, s.sport),
        _ => (0, 0),
    };
    Some(((s.src, ports.0), (s.dst, ports.1)))
}

pub fn canonical(s: &Sighting) -> Option<Tuple> {
    let (a, b) = endpoints(s)?;
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    Some((s.proto, lo, hi))
}

/// The address rewrites along a journey: "dst 10.0.0.2:80 -> 10.1.0.2:8080 at nf_prerouting".
pub fn rewrites(journey: &Journey) -> Vec<String> {
    let mut out = Vec::new();
    let mut previous: Option<&Sighting> = None;
    // A tunnel's outer headers are no rewrite of the packet's: it is carried inside them.
    for s in journey
        .sightings
        .iter()
        .filter(|s| s.on_path() && s.tunnel.is_none())
    {
        let Some(before) = previous else {
            previous = endpoints(s).map(|_| s);
            continue;
        };
        if let (Some((bs, bd)), Some((s_src, s_dst))) = (endpoints(before), endpoints(s)) {
            for (side, old, new) in [("src", bs, s_src), ("dst", bd, s_dst)] {
                if old != new {
                    out.push(format!(
                        "{side} {} -> {} after {}",
                        show(old, s.proto),
                        show(new, s.proto),
                        before.hook
                    ));
                }
            }
            previous = Some(s);
        }
    }
    out
}

pub fn show((ip, port): Endpoint, proto: Proto) -> String {
    let ip = ip.map_or("?".to_string(), |ip| ip.to_string());
    if proto.has_ports() {
        format!("{ip}:{port}")
    } else {
        ip
    }
}

/// The tuples a journey's packet had along its path (several under NAT). Only points on the
/// path count: a route lookup placed in the journey knows no ports (the kernel's input lookup
/// clears them), and its bare (src, dst) tuple would join every flow between two hosts. A
/// journey with no point on the path (a lone failed lookup) has the tuples it has.
pub(crate) fn tuples(journey: &Journey) -> Vec<Tuple> {
    // Not the tuples of a tunnel's outer headers, which many flows share: the packet's own,
    // from inside them where it was seen in no other form (a trace of the underlay alone).
    for outer_too in [false, true] {
        let mut on_path: Vec<Tuple> = Vec::new();
        let mut previous: Option<&Sighting> = None;
        for s in journey
            .sightings
            .iter()
            .filter(|s| s.on_path() && (outer_too || s.tunnel.is_none()))
        {
            // Point after point sees the same tuple; one of each run is enough, and a point
            // with the headers of the one before has no other.
            if previous.is_some_and(|p| same_endpoints(p, s)) {
                continue;
            }
            previous = Some(s);
            if let Some(tuple) = canonical(&crate::analysis::tunnel::inner(s)) {
                if on_path.last() != Some(&tuple) {
                    on_path.push(tuple);
                }
            }
        }
        if !on_path.is_empty() {
            return on_path;
        }
    }
    let mut all: Vec<Tuple> = journey.sightings.iter().filter_map(canonical).collect();
    all.dedup();
    all
}

/// Whether two points have the same endpoints ([`endpoints`] reads no other field), neither
/// inside a tunnel.
fn same_endpoints(a: &Sighting, b: &Sighting) -> bool {
    a.tunnel.is_none()
        && b.tunnel.is_none()
        && a.proto == b.proto
        && a.src == b.src
        && a.dst == b.dst
        && a.sport == b.sport
        && a.dport == b.dport
        && a.icmp_type == b.icmp_type
}

pub(crate) fn new_flow(id: u64, first: &Journey) -> Flow {
    let s = first.headers();
    let (client, server) = endpoints(s).unwrap_or(((s.src, s.sport), (s.dst, s.dport)));
    Flow {
        id,
        proto: s.proto,
        client: show(client, s.proto),
        server: show(server, s.proto),
        packets: 0,
        fates: BTreeMap::new(),
        diverge: None,
        nat: Vec::new(),
        incomplete_packets: 0,
        journeys: Vec::new(),
        copies: Vec::new(),
        client_endpoint: client,
    }
}

impl Flow {
    /// Counts `journey` in the flow (a copy only by its id), and sets its `flow_id`.
    pub fn add(&mut self, journey: &mut Journey) {
        journey.flow_id = self.id;
        if journey.copy.is_some() {
            self.copies.push(journey.id);
            return;
        }
        self.journeys.push(journey.id);
        self.packets += 1;
        self.incomplete_packets += u64::from(journey.incomplete);
        *self.fates.entry(journey.fate.kind.name()).or_default() += 1;
        if self.diverge.is_none() && journey.fate.kind == FateKind::Dropped {
            self.diverge = Some(journey.fate.clone());
        }
        for rewrite in rewrites(journey) {
            if !self.nat.contains(&rewrite) {
                self.nat.push(rewrite);
            }
        }
    }

    /// Whether the journey's packet went from the client to the server.
    pub fn is_forward(&self, journey: &Journey) -> bool {
        endpoints(journey.headers()).is_some_and(|(src, _)| src == self.client_endpoint)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fate::TraceEnd;

    /// A packet's sightings at LOCAL_OUT plus the route lookup placed in its journey, which
    /// knows only the addresses.
    fn packet(proto: Proto, sport: u16, ts_ns: u64) -> Vec<Sighting> {
        let line = include_str!("../../tests/fixtures/local_in_drop.jsonl")
            .lines()
            .next();
        let mut s: Sighting = serde_json::from_str(line.unwrap()).unwrap();
        (s.hook, s.position, s.proto, s.sport, s.dport) = (
            tracer_common::hook::Hook::NfLocalOut,
            tracer_common::hook::Position::First,
            proto,
            sport,
            80,
        );
        s.ts_ns = ts_ns;
        let mut lookup = s.clone();
        (
            lookup.hook,
            lookup.position,
            lookup.proto,
            lookup.sport,
            lookup.dport,
        ) = (
            tracer_common::hook::Hook::FibLookup,
            tracer_common::hook::Position::Only,
            Proto::Ip(0),
            0,
            0,
        );
        vec![s, lookup]
    }

    #[test]
    fn route_lookups_do_not_join_the_flows_between_two_hosts() {
        let journeys: Vec<Journey> = [(Proto::Tcp, 1000), (Proto::Tcp, 1001), (Proto::Udp, 1000)]
            .iter()
            .enumerate()
            .map(|(i, (proto, sport))| Journey {
                id: i as u64 + 1,
                sightings: packet(*proto, *sport, i as u64 * 1_000_000_000),
                fate: crate::analysis::fate::fate(&[], &TraceEnd::default()),
                flow_id: 0,
                incomplete: false,
                carried: None,
                copy: None,
            })
            .collect();
        // Flows are joined by shared tuples: the lookup's bare (addresses, no ports) tuple,
        // the same for all three, must not be one of them.
        for journey in &journeys {
            let on_path = canonical(&journey.sightings[0]).unwrap();
            assert_eq!(tuples(journey), [on_path], "journey {}", journey.id);
        }
    }
}
