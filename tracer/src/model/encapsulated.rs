//! The packet a tunnel's outer packet carries, as decoded from an event (see
//! `analysis::tunnel` for what the journeys make of it).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tracer_common::event::{tunnel, Event};

use crate::model::protocol::{ip_address, Proto};

/// The packet inside the outer one a sighting saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encapsulated {
    /// `vxlan`, `geneve`, `gre` or `ipip`.
    pub tunnel: String,
    /// VNI (VXLAN, Geneve) or GRE key; 0 without one.
    pub id: u32,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub proto: Proto,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: crate::model::tcp_flags::TcpFlags,
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
        src: ip_address(p.l3_proto, &p.saddr),
        dst: ip_address(p.l3_proto, &p.daddr),
        proto: Proto::from_numbers(p.l3_proto, p.l4_proto),
        sport: p.sport,
        dport: p.dport,
        // Only TCP has flags; the byte is another protocol's otherwise.
        tcp_flags: crate::model::tcp_flags::TcpFlags(if p.l4_proto == 6 { p.tcp_flags } else { 0 }),
        tcp_seq: p.tcp_seq,
        tcp_ack: p.tcp_ack,
        ip_id: p.ip_id,
        ip_len: p.ip_len,
    }))
}
