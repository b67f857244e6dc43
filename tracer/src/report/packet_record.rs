//! The `packet` record of the JSON lines, serialized straight to the output: a streaming
//! trace writes thousands a second, and building a `serde_json::Value` for each (a map per
//! record and per point of its path) cost more than stitching them. Fields are in the order
//! a `Value` map wrote them (by name), and the few small nested objects are still `Value`s,
//! so the output is the same byte for byte.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;
use tracer_common::hook::Hook;

use crate::{
    analysis::{journey::Journey, Analysis},
    model::{
        sighting::{Name, Proto, Sighting},
        tcp_flags::TcpFlags,
    },
    report::{explanation, SCHEMA_VERSION},
};

#[derive(Serialize)]
pub struct PacketRecord<'a> {
    capture: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    copy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    copy_of: Option<u64>,
    dport: u16,
    dst: Option<IpAddr>,
    explanation: Vec<String>,
    fate: Value,
    flow_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gso_segs: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_type: Option<u8>,
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete: Option<bool>,
    ip_id: u32,
    len: u16,
    path: Vec<Point<'a>>,
    proto: Proto,
    #[serde(skip_serializing_if = "Option::is_none")]
    retransmission_of: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rules: Option<Value>,
    schema_version: u32,
    sport: u16,
    src: Option<IpAddr>,
    tcp_flags: TcpFlags,
    tcp_seq: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A point of the packet's path.
#[derive(Serialize)]
struct Point<'a> {
    dir: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    encapsulated: Option<String>,
    hook: Hook,
    ifname: &'a Option<Name>,
    netns: u32,
    netns_name: &'a Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<&'static str>,
    ts_ns: u64,
}

impl<'a> Point<'a> {
    fn of(s: &'a Sighting) -> Point<'a> {
        Point {
            dir: s.hook.side().name(),
            encapsulated: crate::analysis::tunnel::path_note(s),
            hook: s.hook,
            ifname: &s.ifname,
            netns: s.netns,
            netns_name: &s.netns_name,
            note: s.note.as_deref(),
            peer: s.peer.as_deref().map(sorted),
            position: s.position.name(),
            ts_ns: s.ts_ns,
        }
    }
}

/// A small nested object as a `Value`, whose maps write their keys by name as the rest of
/// the record does.
fn sorted(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

impl<'a> PacketRecord<'a> {
    pub fn of(journey: &'a Journey, analysis: &'a Analysis) -> PacketRecord<'a> {
        let first = journey.headers();
        let culprits = explanation::culprits(journey, &analysis.context.rules);
        PacketRecord {
            capture: sorted(analysis.captures(journey.id)),
            copy: journey.copy.as_ref().map(|c| c.made.as_str()),
            copy_of: journey.copy.as_ref().map(|c| c.of),
            dport: first.dport,
            dst: first.dst,
            explanation: explanation::packet(journey, analysis),
            fate: sorted(&journey.fate),
            flow_id: (journey.flow_id != 0).then_some(journey.flow_id),
            gso_segs: (first.gso_segs > 1).then_some(first.gso_segs),
            icmp_code: first.proto.is_icmp().then_some(first.icmp_code),
            icmp_type: first.proto.is_icmp().then_some(first.icmp_type),
            id: journey.id,
            incomplete: journey.incomplete.then_some(true),
            ip_id: first.ip_id,
            len: first.ip_len,
            path: journey.sightings.iter().map(Point::of).collect(),
            proto: first.proto,
            retransmission_of: analysis.retransmissions.get(&journey.id).copied(),
            rules: (!culprits.is_empty()).then(|| sorted(&culprits)),
            schema_version: SCHEMA_VERSION,
            sport: first.sport,
            src: first.src,
            tcp_flags: first.tcp_flags,
            tcp_seq: first.tcp_seq,
            kind: "packet",
        }
    }
}
