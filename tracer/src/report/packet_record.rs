//! The `packet` record of the JSON lines, serialized straight to the output: a streaming
//! trace writes thousands a second, and building a `serde_json::Value` for each (a map per
//! record and per point of its path) cost more than stitching them. Every object's fields
//! are declared in the order a `Value` map wrote them (by name), so the output is the same
//! byte for byte; the rare nested objects (live captures, rules) are still `Value`s.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;
use tracer_common::hook::Hook;

use crate::{
    analysis::{
        capture::Capture,
        fate::{Fate, FateKind},
        journey::Journey,
        Analysis,
    },
    model::{
        sighting::{Name, Proto, Sighting},
        tcp_flags::TcpFlags,
    },
    report::{explanation, SCHEMA_VERSION},
};

/// A packet record: the captures, the fields before `path` and after it (by name), and the path
/// between, in the order of their names; [`PacketRecord::write`] writes the captures and the
/// path by hand (see `places`).
#[derive(Serialize)]
pub struct PacketRecord<'a> {
    capture: Vec<CaptureRecord<'a>>,
    #[serde(flatten)]
    head: Head<'a>,
    path: Vec<Point<'a>>,
    #[serde(flatten)]
    tail: Tail,
}

#[derive(Serialize)]
struct Head<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    copy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    copy_of: Option<u64>,
    dport: u16,
    dst: Option<IpAddr>,
    explanation: Vec<String>,
    fate: FateRecord<'a>,
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
}

#[derive(Serialize)]
struct Tail {
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
    peer: Option<PeerRecord<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<&'static str>,
    ts_ns: u64,
}

/// A veth's other end ([`crate::kernel::veth::Peer`]).
#[derive(Serialize)]
struct PeerRecord<'a> {
    ifname: &'a str,
    netns_name: &'a str,
}

impl<'a> PeerRecord<'a> {
    fn of(peer: &'a crate::kernel::veth::Peer) -> PeerRecord<'a> {
        PeerRecord {
            ifname: &peer.ifname,
            netns_name: &peer.netns_name,
        }
    }
}

/// Where tcpdump would have seen the packet ([`Capture`]).
#[derive(Serialize)]
struct CaptureRecord<'a> {
    dir: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    encapsulated: Option<&'a str>,
    ifname: &'a Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<Value>,
    netns_name: &'a Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<PeerRecord<'a>>,
    seen: bool,
}

impl<'a> CaptureRecord<'a> {
    fn of(c: &'a Capture) -> CaptureRecord<'a> {
        CaptureRecord {
            dir: c.dir,
            encapsulated: c.encapsulated.as_deref(),
            ifname: &c.ifname,
            live: (!c.live.is_empty()).then(|| sorted(&c.live)),
            netns_name: &c.netns_name,
            peer: c.peer.as_deref().map(PeerRecord::of),
            seen: c.seen,
        }
    }
}

/// How the packet's journey ended ([`Fate`]).
#[derive(Serialize)]
struct FateRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<&'a str>,
    hook: Option<Hook>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ifname: Option<&'a str>,
    kind: FateKind,
    location: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<&'static str>,
    reason: Option<&'a str>,
}

impl<'a> FateRecord<'a> {
    fn of(fate: &'a Fate) -> FateRecord<'a> {
        FateRecord {
            by: fate.by.as_deref(),
            hook: fate.hook,
            ifname: fate.ifname.as_deref(),
            kind: fate.kind,
            location: fate.location.as_deref(),
            netns_name: fate.netns_name.as_deref(),
            position: fate.position.name(),
            reason: fate.reason.as_ref().map(|r| r.name()),
        }
    }
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
            peer: s.peer.as_deref().map(PeerRecord::of),
            position: s.position.name(),
            ts_ns: s.ts_ns,
        }
    }
}

/// A rare nested object as a `Value`, whose maps write their keys by name as the rest of the
/// record does.
fn sorted(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

impl<'a> PacketRecord<'a> {
    pub fn of(journey: &'a Journey, analysis: &'a Analysis) -> PacketRecord<'a> {
        let first = journey.headers();
        let culprits = explanation::culprits(journey, &analysis.context.rules);
        PacketRecord {
            capture: analysis
                .captures(journey.id)
                .iter()
                .map(CaptureRecord::of)
                .collect(),
            head: Head {
                copy: journey.copy.as_ref().map(|c| c.made.as_str()),
                copy_of: journey.copy.as_ref().map(|c| c.of),
                dport: first.dport,
                dst: first.dst,
                explanation: explanation::packet(journey, analysis),
                fate: FateRecord::of(&journey.fate),
                flow_id: (journey.flow_id != 0).then_some(journey.flow_id),
                gso_segs: (first.gso_segs > 1).then_some(first.gso_segs),
                icmp_code: first.proto.is_icmp().then_some(first.icmp_code),
                icmp_type: first.proto.is_icmp().then_some(first.icmp_type),
                id: journey.id,
                incomplete: journey.incomplete.then_some(true),
                ip_id: first.ip_id,
                len: first.ip_len,
            },
            path: journey.sightings.iter().map(Point::of).collect(),
            tail: Tail {
                proto: first.proto,
                retransmission_of: analysis.retransmissions.get(&journey.id).copied(),
                rules: (!culprits.is_empty()).then(|| sorted(&culprits)),
                schema_version: SCHEMA_VERSION,
                sport: first.sport,
                src: first.src,
                tcp_flags: first.tcp_flags,
                tcp_seq: first.tcp_seq,
                kind: "packet",
            },
        }
    }

    /// Writes the record as serde writes it (its fields in the same order, the same bytes),
    /// the path by hand: its points repeat the same few places, whose names serde would
    /// escape again at every point, key by key (a fifth of a streaming trace's JSON output).
    pub fn write(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        places::with_buffer(|buf| {
            // The captures, the head with `,` for its `{` and without its `}`, the path, then
            // the tail with `,` for its `{`.
            buf.extend_from_slice(b"{\"capture\":[");
            places::write_captures(buf, &self.capture)?;
            buf.push(b']');
            let head = buf.len();
            serde_json::to_writer(&mut *buf, &self.head)?;
            buf[head] = b',';
            buf.pop();
            buf.extend_from_slice(b",\"path\":[");
            places::write_points(buf, &self.path)?;
            buf.push(b']');
            let tail = buf.len();
            serde_json::to_writer(&mut *buf, &self.tail)?;
            buf[tail] = b',';
            out.write_all(buf)
        })
    }
}

mod places;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::recording;

    /// A `Value` writes every object's keys by name; the records are written straight, in the
    /// order their fields are declared. They must agree, or the JSON lines change.
    #[test]
    fn every_record_of_every_fixture_writes_its_keys_in_the_order_a_value_map_did() {
        for path in recording::fixture_paths() {
            let analysis = Analysis::new(recording::read(&path).unwrap(), None);
            for journey in &analysis.journeys {
                let record = PacketRecord::of(journey, &analysis);
                let mut written = Vec::new();
                record.write(&mut written).unwrap();
                let straight = serde_json::to_string(&record).unwrap();
                let by_value =
                    serde_json::to_string(&serde_json::to_value(&record).unwrap()).unwrap();
                assert_eq!(straight, by_value, "{}", path.display());
                assert_eq!(
                    String::from_utf8(written).unwrap(),
                    by_value,
                    "{}",
                    path.display()
                );
            }
        }
    }
}
