//! `-w FILE.pcapng`: every sighting that copied its packet's bytes, in time order, for
//! Wireshark and tshark. One interface block per observation point and interface (Ethernet
//! where the point sees the frame, raw IP elsewhere); each packet carries comments with the
//! point, the journey's fate and whether tcpdump saw it, and an XDP or tc verdict where it
//! passed such a program.

use std::{collections::HashMap, fs::File, io::BufWriter};
use tracer_common::{
    catalogue::PcapngVerdict,
    hook::{Position, Side},
};

use anyhow::Result;

use crate::{
    analysis::fate::FateKind,
    analysis::journey::Journey,
    analysis::Analysis,
    model::sighting::{PacketBytes, Sighting},
    report::explanation,
    report::pcapng::{Direction, Interface, LinkType, Packet, Verdict, Writer},
};

const XDP_DROP: u64 = 1;
const XDP_PASS: u64 = 2;
const TC_ACT_OK: i64 = 0;
const TC_ACT_SHOT: i64 = 2;

/// How much of each packet goes into the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snap {
    /// Up to the end of the transport header: payloads may hold secrets.
    Headers,
    /// Up to this many bytes (`--snaplen`).
    Bytes(u32),
}

/// Writes the file of a whole trace; returns how many packets it holds.
pub fn write(file: File, analysis: &Analysis, snap: Snap, comment: &str) -> Result<usize> {
    let mut out = PacketFile::create(file, snap, comment)?;
    out.add(analysis, &analysis.journeys)?;
    out.finish()
}

/// A pcapng file written as journeys come: the live view adds each batch as it closes.
pub struct PacketFile {
    writer: Writer<BufWriter<File>>,
    snap: Snap,
    /// Wall-clock minus monotonic nanoseconds: the events' times are monotonic.
    epoch_offset: u64,
    interfaces: HashMap<(String, u32, u32, bool), u32>,
    written: usize,
}

impl PacketFile {
    pub fn create(file: File, snap: Snap, comment: &str) -> Result<PacketFile> {
        let writer = Writer::new(
            BufWriter::new(file),
            &format!("tracer {}", env!("CARGO_PKG_VERSION")),
            comment,
        )?;
        Ok(PacketFile {
            writer,
            snap,
            epoch_offset: realtime_ns().saturating_sub(crate::kernel::clock::monotonic_ns()),
            interfaces: HashMap::new(),
            written: 0,
        })
    }

    /// Writes every sighting of `journeys` that copied its packet's bytes, in time order;
    /// `analysis` holds them, for their explanations.
    pub fn add<'a>(
        &mut self,
        analysis: &Analysis,
        journeys: impl IntoIterator<Item = &'a Journey>,
    ) -> Result<()> {
        let mut sightings: Vec<(&Sighting, &PacketBytes, &Journey)> = journeys
            .into_iter()
            .flat_map(|j| {
                j.sightings
                    .iter()
                    .filter_map(move |s| Some((s, s.bytes.as_deref()?, j)))
            })
            .collect();
        sightings.sort_by_key(|(s, _, _)| s.ts_ns);
        for (s, bytes, journey) in &sightings {
            let interface = self.interface(s, bytes)?;
            let keep = match self.snap {
                Snap::Headers => headers_len(&bytes.data, bytes.ethernet),
                Snap::Bytes(n) => n as usize,
            };
            self.writer.packet(&Packet {
                interface,
                ts_ns: s.ts_ns + self.epoch_offset,
                data: &bytes.data[..keep.min(bytes.data.len())],
                orig_len: bytes.orig_len,
                direction: direction(s),
                comments: &comments(s, journey, analysis),
                verdict: verdict(s, journey),
            })?;
        }
        self.written += sightings.len();
        Ok(())
    }

    /// Flushes the file; returns how many packets it holds.
    pub fn finish(self) -> Result<usize> {
        self.writer
            .finish()?
            .into_inner()
            .map_err(|e| e.into_error())?;
        Ok(self.written)
    }

    /// The interface block of the point and interface where `s` was seen, written the first
    /// time one is met.
    fn interface(&mut self, s: &Sighting, bytes: &PacketBytes) -> Result<u32> {
        let key = (point(s), s.netns, s.ifindex, bytes.ethernet);
        if let Some(id) = self.interfaces.get(&key) {
            return Ok(*id);
        }
        let snaplen = match self.snap {
            Snap::Headers => 0xffff,
            Snap::Bytes(n) => n,
        };
        let id = self.writer.interface(&Interface {
            link: if bytes.ethernet {
                LinkType::Ethernet
            } else {
                LinkType::Raw
            },
            snaplen,
            name: &format!("{}:{}", place(s), key.0),
            description: &format!(
                "tracer observation point {} at {}",
                key.0.replace('(', " ("),
                place(s)
            ),
        })?;
        self.interfaces.insert(key, id);
        Ok(id)
    }
}

/// `tc_ingress(first)`, `xdp`, `kfree_skb`.
fn point(s: &Sighting) -> String {
    match s.position.name() {
        Some(position) => format!("{}({position})", s.hook),
        None => s.hook.name().to_string(),
    }
}

/// `b/vb`, `b` (no interface), or the namespace inode.
fn place(s: &Sighting) -> String {
    let ns = s
        .netns_name
        .as_deref()
        .map_or_else(|| format!("netns:{}", s.netns), str::to_string);
    match &s.ifname {
        Some(ifname) => format!("{ns}/{ifname}"),
        None => ns,
    }
}

/// What the point saw, then the packet's explanation: its fate and the tcpdump verdicts.
fn comments(s: &Sighting, journey: &Journey, analysis: &Analysis) -> Vec<String> {
    let mut first = format!(
        "tracer: packet {} at {} on {}",
        journey.id,
        point(s).replace('(', " ("),
        place(s)
    );
    if let Some(reason) = &s.reason {
        first.push_str(&format!(": dropped here, reason {reason}"));
        if let Some(location) = &s.location {
            first.push_str(&format!(" at {location}"));
        }
    }
    let mut out = vec![first];
    out.extend(explanation::packet(journey, analysis));
    out
}

/// The side of its interface the point saw the packet on (the hook catalogue's).
fn direction(s: &Sighting) -> Direction {
    match s.hook.side() {
        Side::Rx => Direction::Inbound,
        Side::Tx => Direction::Outbound,
        Side::Neither => Direction::Unknown,
    }
}

/// The XDP or tc verdict at this point: the packet passed, or this is where it died.
fn verdict(s: &Sighting, journey: &Journey) -> Option<Verdict> {
    let fate = &journey.fate;
    let died_here = fate.kind == FateKind::Dropped
        && fate.hook == Some(s.hook)
        && fate.position == s.position
        && fate.ifname == s.ifname
        && fate.netns_name == s.netns_name;
    match s.hook.info().pcapng_verdict {
        PcapngVerdict::Xdp => Some(Verdict::Xdp(if died_here { XDP_DROP } else { XDP_PASS })),
        // Dropped after the first tc program and before the last: by a tc program between.
        PcapngVerdict::Tc if s.position == Position::First => {
            Some(Verdict::Tc(if died_here { TC_ACT_SHOT } else { TC_ACT_OK }))
        }
        _ => None,
    }
}

/// Bytes up to the end of the transport header (of the IP header for other protocols and
/// later fragments), from an Ethernet frame or an IP packet.
pub fn headers_len(data: &[u8], ethernet: bool) -> usize {
    let be16 = |at: usize| {
        data.get(at..at + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let byte = |at: usize| data.get(at).copied().unwrap_or(0);
    let (mut at, ethertype) = if ethernet {
        let mut at = 12;
        while matches!(be16(at), 0x8100 | 0x88a8) {
            at += 4;
        }
        (at + 2, be16(at))
    } else {
        match byte(0) >> 4 {
            4 => (0, 0x0800),
            6 => (0, 0x86dd),
            _ => return data.len(),
        }
    };
    let (proto, fragment) = match ethertype {
        0x0800 => {
            let proto = byte(at + 9);
            let later_fragment = be16(at + 6) & 0x1fff != 0;
            at += (byte(at) & 0x0f) as usize * 4;
            (proto, later_fragment)
        }
        0x86dd => {
            let mut next = byte(at + 6);
            at += 40;
            // Hop-by-hop, routing and destination options: (length + 1) * 8 bytes each.
            while matches!(next, 0 | 43 | 60) {
                let len = (byte(at + 1) as usize + 1) * 8;
                next = byte(at);
                at += len;
            }
            (next, false)
        }
        _ => return at.min(data.len()),
    };
    let l4 = match proto {
        _ if fragment => 0,
        6 => (byte(at + 12) >> 4) as usize * 4,
        17 | 1 | 58 => 8,
        _ => 0,
    };
    (at + l4).min(data.len())
}

fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests;
