//! A packet in a tunnel: the outer headers a tunnel device pushed onto it (VXLAN, Geneve,
//! GRE, IPIP) and the packet they carry. A sighting with an [`Encapsulated`] part saw the
//! outer packet (its own headers are the outer ones, as a capture on the underlay sees them);
//! the journey is the inner packet's, which keeps its skb through encapsulation, the underlay
//! and decapsulation.

use crate::model::sighting::{Proto, Sighting};

use std::net::IpAddr;

pub use crate::model::encapsulated::Encapsulated;

/// The sighting as its inner packet: the headers that tell packets apart in journeys. A
/// sighting of no tunnel is itself.
pub fn inner(s: &Sighting) -> std::borrow::Cow<'_, Sighting> {
    let Some(e) = &s.tunnel else {
        return std::borrow::Cow::Borrowed(s);
    };
    let mut inner = s.clone();
    inner.src = e.src;
    inner.dst = e.dst;
    inner.proto = e.proto;
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
    let endpoints = if s.proto == Proto::Udp {
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

#[cfg(test)]
mod tests;
