//! A packet in a tunnel: the outer headers a tunnel device pushed onto it (VXLAN, Geneve,
//! GRE, IPIP) and the packet they carry. A sighting with an [`Encapsulated`] part saw the
//! outer packet (its own headers are the outer ones, as a capture on the underlay sees them);
//! the journey is the inner packet's, which keeps its skb through encapsulation, the underlay
//! and decapsulation.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tracer_common::event::{tunnel, Event};

use crate::{
    capture::Capture,
    journey::Journey,
    sighting::{proto_name, Sighting},
};

/// The packet inside the outer one a sighting saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encapsulated {
    /// `vxlan`, `geneve`, `gre` or `ipip`.
    pub tunnel: String,
    /// VNI (VXLAN, Geneve) or GRE key; 0 without one.
    pub id: u32,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub proto: String,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: crate::tcp_flags::TcpFlags,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    pub ip_id: u32,
    pub ip_len: u16,
}

/// The inner packet of `event`, when its packet is a tunnel's outer one.
pub fn decode(event: &Event) -> Option<Box<Encapsulated>> {
    let t = &event.tunnel;
    let name = match t.kind {
        tunnel::VXLAN => "vxlan",
        tunnel::GENEVE => "geneve",
        tunnel::GRE => "gre",
        tunnel::IPIP => "ipip",
        _ => return None,
    };
    let p = &t.inner;
    Some(Box::new(Encapsulated {
        tunnel: name.to_string(),
        id: t.id,
        src: crate::sighting::ip_address(p.l3_proto, &p.saddr),
        dst: crate::sighting::ip_address(p.l3_proto, &p.daddr),
        proto: proto_name(p.l3_proto, p.l4_proto),
        sport: p.sport,
        dport: p.dport,
        // Only TCP has flags; the byte is another protocol's otherwise.
        tcp_flags: crate::tcp_flags::TcpFlags(if p.l4_proto == 6 { p.tcp_flags } else { 0 }),
        tcp_seq: p.tcp_seq,
        tcp_ack: p.tcp_ack,
        ip_id: p.ip_id,
        ip_len: p.ip_len,
    }))
}

/// The sighting as its inner packet: the headers that tell packets apart in journeys. A
/// sighting of no tunnel is itself.
pub fn inner(s: &Sighting) -> std::borrow::Cow<'_, Sighting> {
    let Some(e) = &s.tunnel else {
        return std::borrow::Cow::Borrowed(s);
    };
    let mut inner = s.clone();
    inner.src = e.src;
    inner.dst = e.dst;
    inner.proto = e.proto.clone();
    inner.sport = e.sport;
    inner.dport = e.dport;
    inner.tcp_flags = e.tcp_flags;
    inner.tcp_seq = e.tcp_seq;
    inner.tcp_ack = e.tcp_ack;
    inner.ip_id = e.ip_id;
    inner.ip_len = e.ip_len;
    inner.tunnel = None;
    std::borrow::Cow::Owned(inner)
}

/// `VXLAN VNI 42`, `GRE key 7`, `IP-in-IP`.
pub fn kind_words(e: &Encapsulated) -> String {
    let name = match e.tunnel.as_str() {
        "vxlan" => "VXLAN",
        "geneve" => "Geneve",
        "gre" => "GRE",
        "ipip" => "IP-in-IP",
        other => other,
    };
    match e.tunnel.as_str() {
        "vxlan" | "geneve" => format!("{name} VNI {}", e.id),
        "gre" if e.id != 0 => format!("{name} key {}", e.id),
        _ => name.to_string(),
    }
}

/// The outer packet a sighting saw, as a capture there shows it:
/// `the encapsulated datagram 10.0.0.1:40000 > 10.0.0.2:4789 (VXLAN VNI 42)`.
pub fn outer_words(s: &Sighting) -> Option<String> {
    let e = s.tunnel.as_ref()?;
    let address = |a: Option<IpAddr>| a.map_or("?".to_string(), |a| a.to_string());
    let (src, dst) = (address(s.src), address(s.dst));
    let endpoints = if s.proto == "udp" {
        format!("datagram {src}:{} > {dst}:{}", s.sport, s.dport)
    } else {
        format!("packet {src} > {dst}")
    };
    Some(format!("the encapsulated {endpoints} ({})", kind_words(e)))
}

/// The note on a sighting of the outer packet, for the path: `VXLAN VNI 42 10.0.0.1 >
/// 10.0.0.2`.
pub fn path_note(s: &Sighting) -> Option<String> {
    let e = s.tunnel.as_ref()?;
    let address = |a: Option<IpAddr>| a.map_or("?".to_string(), |a| a.to_string());
    Some(format!(
        "{} {} > {}",
        kind_words(e),
        address(s.src),
        address(s.dst)
    ))
}

/// The sentences on the captures that saw the packet only inside a tunnel's outer headers:
/// what filter such a capture needs.
pub fn capture_sentences(captures: &[Capture]) -> Vec<String> {
    captures
        .iter()
        .filter(|c| c.seen && c.live.is_empty())
        .filter_map(|c| {
            let outer = c.encapsulated.as_ref()?;
            Some(format!(
                "A capture on {} ({}) sees it only as {outer}: a filter on the packet's own \
                 headers matches nothing there, one on the outer headers (e.g. {}) does.",
                c.place(),
                c.dir,
                outer_filter(outer)
            ))
        })
        .collect()
}

/// A tcpdump filter for the outer packet of [`outer_words`]: the tunnel's UDP port, or its IP
/// protocol.
fn outer_filter(outer: &str) -> &'static str {
    if outer.contains("(VXLAN") {
        if outer.contains(":8472 ") {
            "udp port 8472"
        } else {
            "udp port 4789"
        }
    } else if outer.contains("(Geneve") {
        "udp port 6081"
    } else if outer.contains("(GRE") {
        "proto gre"
    } else {
        "ip proto 4 or ip proto 41"
    }
}

/// `cause` ("dropped by a netfilter rule at LOCAL_IN ...") said of the inner packet whose
/// drop was that of its tunnel's outer packet: `dropped in the underlay, as the encapsulated
/// datagram ... (VXLAN VNI 42), by a netfilter rule at LOCAL_IN ...`.
pub fn in_underlay(journey: &Journey, cause: String) -> String {
    let Some(outer) = dropped_outer(journey).and_then(outer_words) else {
        return cause;
    };
    match cause.strip_prefix("dropped ") {
        Some(rest) => format!("dropped in the underlay, as {outer}, {rest}"),
        None => format!("dropped in the underlay, as {outer} ({cause})"),
    }
}

/// The outer packet whose drop ended the journey, when the drop saw it encapsulated.
pub fn dropped_outer(journey: &Journey) -> Option<&Sighting> {
    journey
        .sightings
        .iter()
        .rev()
        .find(|s| s.is_drop())
        .filter(|s| s.tunnel.is_some())
}

#[cfg(test)]
mod tests;
