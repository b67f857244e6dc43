//! Packets generated from their fields: the bytes to parse or filter, and the fields a
//! correct parser reads back. Shared by the parser properties here and the filter
//! differential in the `tracer` crate (included there with `#[path]`).
//!
//! Generated packets (`generate.rs`) are well formed unless a field says otherwise
//! (`total_len`, `payload_len`): the properties truncate and mutate them afterwards.

use tracer_common::{
    event::PacketSummary,
    parse::{ETH_P_IP, ETH_P_IPV6, HDR_LEN},
};

/// Small pools, so that generated filters (`host 10.0.0.1`, `port 80`) match some packets.
pub const V4_ADDRS: [[u8; 4]; 4] = [
    [10, 0, 0, 1],
    [10, 0, 0, 2],
    [10, 1, 2, 3],
    [192, 168, 7, 9],
];
pub const V6_ADDRS: [[u16; 2]; 3] = [[0xfd00, 1], [0xfd00, 2], [0x2001, 0xdb8]];
pub const PORTS: [u16; 6] = [53, 80, 443, 5000, 8080, 40000];

pub fn v6_addr(pool: [u16; 2]) -> [u8; 16] {
    let mut addr = [0u8; 16];
    addr[..2].copy_from_slice(&pool[0].to_be_bytes());
    addr[14..].copy_from_slice(&pool[1].to_be_bytes());
    addr
}

#[derive(Clone, Debug)]
pub enum Transport {
    /// `options` holds (data offset - 5) * 4 bytes.
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        options: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP in IPv4, ICMPv6 in IPv6; `id` and `seq` are the echo fields.
    Icmp {
        kind: u8,
        code: u8,
        id: u16,
        seq: u16,
    },
    /// A protocol the parser does not read: never 6, 17, 1 or 58, nor an IPv6 extension
    /// header's number ([`EXTENSIONS`]).
    Other {
        proto: u8,
        bytes: Vec<u8>,
    },
}

impl Transport {
    pub fn proto(&self, v6: bool) -> u8 {
        match self {
            Transport::Tcp { .. } => 6,
            Transport::Udp { .. } => 17,
            Transport::Icmp { .. } if v6 => 58,
            Transport::Icmp { .. } => 1,
            Transport::Other { proto, .. } => *proto,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            Transport::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                options,
            } => {
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&ack.to_be_bytes());
                b.push(((5 + options.len() / 4) as u8) << 4);
                b.extend_from_slice(&[*flags, 0xff, 0xff, 0, 0, 0, 0]);
                b.extend_from_slice(options);
            }
            Transport::Udp { sport, dport } => {
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&[0, 8, 0, 0]);
            }
            Transport::Icmp {
                kind,
                code,
                id,
                seq,
            } => {
                b.extend_from_slice(&[*kind, *code, 0, 0]);
                b.extend_from_slice(&id.to_be_bytes());
                b.extend_from_slice(&seq.to_be_bytes());
            }
            Transport::Other { bytes, .. } => b.extend_from_slice(bytes),
        }
        b
    }

    /// What the parser reads of this header at `l4`, given `valid` bytes.
    fn fill(&self, out: &mut PacketSummary, l4: usize, valid: usize) {
        match *self {
            Transport::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                ..
            } if valid >= l4 + 20 => {
                (out.sport, out.dport, out.tcp_seq, out.tcp_ack) = (sport, dport, seq, ack);
                out.tcp_flags = flags;
            }
            Transport::Udp { sport, dport } if valid >= l4 + 8 => {
                (out.sport, out.dport) = (sport, dport);
            }
            Transport::Icmp {
                kind,
                code,
                id,
                seq,
            } if valid >= l4 + 8 => {
                (out.icmp_type, out.icmp_code, out.sport, out.dport) = (kind, code, id, seq);
            }
            _ => {}
        }
    }
}

#[derive(Clone, Debug)]
pub struct Ipv4 {
    /// 5..=15 here; `options` holds (ihl - 5) * 4 bytes.
    pub options: Vec<u8>,
    pub id: u16,
    pub df: bool,
    pub more_fragments: bool,
    /// In 8-byte units; not 0 for a later fragment, which has no transport header.
    pub frag_offset: u16,
    pub ttl: u8,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    /// `None`: the true length; `Some`: a bogus value in the header.
    pub total_len: Option<u16>,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

/// IPv6 extension headers: hop-by-hop, routing, fragment, authentication, destination
/// options.
pub const EXTENSIONS: [u8; 5] = [0, 43, 44, 51, 60];

/// An IPv6 extension header, with the next-header number of its own kind.
#[derive(Clone, Debug)]
pub enum Extension {
    /// Hop-by-hop (0), routing (43) or destination options (60): `8 * (len8 + 1)` bytes.
    Options { kind: u8, len8: u8, fill: u8 },
    /// Authentication (51): `4 * (len4 + 2)` bytes.
    Auth { len4: u8, fill: u8 },
    /// Fragment (44): a later fragment (offset not 0) has no transport header behind it.
    Fragment { offset: u16, more: bool, id: u32 },
}

impl Extension {
    fn kind(&self) -> u8 {
        match self {
            Extension::Options { kind, .. } => *kind,
            Extension::Auth { .. } => 51,
            Extension::Fragment { .. } => 44,
        }
    }

    fn bytes(&self, next: u8) -> Vec<u8> {
        match *self {
            Extension::Options { len8, fill, .. } => {
                let mut b = vec![next, len8];
                b.resize(8 * (len8 as usize + 1), fill);
                b
            }
            Extension::Auth { len4, fill } => {
                let mut b = vec![next, len4];
                b.resize(4 * (len4 as usize + 2), fill);
                b
            }
            Extension::Fragment { offset, more, id } => {
                let mut b = vec![next, 0];
                b.extend_from_slice(&((offset << 3) | more as u16).to_be_bytes());
                b.extend_from_slice(&id.to_be_bytes());
                b
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Ipv6 {
    pub flow_label: u32,
    pub hop_limit: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// `None`: the true length; `Some`: a bogus value in the header.
    pub payload_len: Option<u16>,
    pub extensions: Vec<Extension>,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug)]
pub enum Ip {
    V4(Ipv4),
    V6(Ipv6),
}

impl Ip {
    pub fn ethertype(&self) -> u16 {
        match self {
            Ip::V4(_) => ETH_P_IP,
            Ip::V6(_) => ETH_P_IPV6,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Ip::V4(p) => {
                let l4 = [p.transport.bytes(), p.payload.clone()].concat();
                let ihl = 5 + p.options.len() / 4;
                let total = p.total_len.unwrap_or((ihl * 4 + l4.len()) as u16);
                let frag = (p.df as u16) << 14 | (p.more_fragments as u16) << 13 | p.frag_offset;
                let mut b = vec![0x40 | ihl as u8, 0];
                b.extend_from_slice(&total.to_be_bytes());
                b.extend_from_slice(&p.id.to_be_bytes());
                b.extend_from_slice(&frag.to_be_bytes());
                b.extend_from_slice(&[p.ttl, p.transport.proto(false), 0, 0]);
                b.extend_from_slice(&p.saddr);
                b.extend_from_slice(&p.daddr);
                b.extend_from_slice(&p.options);
                b.extend_from_slice(&l4);
                b
            }
            Ip::V6(p) => {
                let mut rest = [p.transport.bytes(), p.payload.clone()].concat();
                let mut next = p.transport.proto(true);
                for ext in p.extensions.iter().rev() {
                    rest = [ext.bytes(next), rest].concat();
                    next = ext.kind();
                }
                let len = p.payload_len.unwrap_or(rest.len() as u16);
                let mut b = (6 << 28 | p.flow_label).to_be_bytes().to_vec();
                b.extend_from_slice(&len.to_be_bytes());
                b.extend_from_slice(&[next, p.hop_limit]);
                b.extend_from_slice(&p.saddr);
                b.extend_from_slice(&p.daddr);
                b.extend_from_slice(&rest);
                b
            }
        }
    }

    /// What `parse_l3` gives for the first `valid` bytes (the contract in its doc comment):
    /// the IP fields only with a whole IP header; the transport fields only where the
    /// transport header lies inside `valid` and inside the length the IP header claims, and
    /// behind the IPv6 extension headers; none for a later fragment.
    pub fn expected(&self, valid: usize) -> PacketSummary {
        let mut out = PacketSummary::default();
        let bytes = self.bytes();
        let valid = valid.min(HDR_LEN);
        match self {
            Ip::V4(p) if valid >= 20 => {
                out.l3_proto = ETH_P_IP;
                out.ip_len = u16::from_be_bytes([bytes[2], bytes[3]]);
                (out.ip_id, out.df, out.ttl) = (p.id as u32, p.df as u8, p.ttl);
                out.l4_proto = p.transport.proto(false);
                out.saddr[..4].copy_from_slice(&p.saddr);
                out.daddr[..4].copy_from_slice(&p.daddr);
                if p.frag_offset == 0 {
                    let valid = claimed(valid, out.ip_len as usize);
                    p.transport.fill(&mut out, 20 + p.options.len(), valid);
                }
            }
            Ip::V6(p) if valid >= 40 => {
                out.l3_proto = ETH_P_IPV6;
                let payload_len = u16::from_be_bytes([bytes[4], bytes[5]]);
                out.ip_len = payload_len.wrapping_add(40);
                (out.ip_id, out.ttl) = (p.flow_label, p.hop_limit);
                (out.saddr, out.daddr) = (p.saddr, p.daddr);
                // A payload length of 0 (BIG TCP, a jumbogram) claims nothing.
                let valid = match payload_len {
                    0 => valid,
                    n => claimed(valid, 40 + n as usize),
                };
                let mut at = 40;
                for (i, ext) in p.extensions.iter().enumerate() {
                    // Past six headers, or cut before the two bytes that say what follows (or
                    // so far in that its first 4 bytes are not there): the header's number.
                    if i == 6 || at > HDR_LEN - 4 || at + 2 > valid {
                        out.l4_proto = ext.kind();
                        return out;
                    }
                    if let Extension::Fragment { offset, .. } = ext {
                        if *offset != 0 {
                            out.l4_proto = match p.extensions.get(i + 1) {
                                Some(next) => next.kind(),
                                None => p.transport.proto(true),
                            };
                            return out;
                        }
                    }
                    at += ext.bytes(0).len();
                }
                out.l4_proto = p.transport.proto(true);
                p.transport.fill(&mut out, at, valid);
            }
            _ => {}
        }
        out
    }
}

/// `valid`, cut to the length an IP header claims (0 claims nothing: TSO, BIG TCP).
fn claimed(valid: usize, claimed: usize) -> usize {
    if claimed != 0 && claimed < valid {
        claimed
    } else {
        valid
    }
}

/// Ethernet header fields; the payload follows `tags` and `ethertype`.
#[derive(Clone, Debug)]
pub struct Ethernet {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// (TPID, TCI), outermost first; the TPID is 0x8100 or 0x88a8.
    pub tags: Vec<(u16, u16)>,
    pub ethertype: u16,
}

impl Ethernet {
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = [self.dst, self.src].concat();
        for (tpid, tci) in &self.tags {
            b.extend_from_slice(&tpid.to_be_bytes());
            b.extend_from_slice(&tci.to_be_bytes());
        }
        b.extend_from_slice(&self.ethertype.to_be_bytes());
        b
    }

    /// What `parse_l2` gives for the first `valid` bytes: it looks through two tags at most.
    pub fn expected(&self, valid: usize) -> Option<(usize, u16, u16)> {
        if valid < 14 {
            return None;
        }
        let types: Vec<u16> = self
            .tags
            .iter()
            .map(|t| t.0)
            .chain([self.ethertype])
            .collect();
        let vlan_id = self.tags.first().map_or(0, |t| t.1 & 0x0fff);
        Some(if self.tags.is_empty() || valid < 18 {
            (14, types[0], 0)
        } else if self.tags.len() < 2 || valid < 22 {
            (18, types[1], vlan_id)
        } else {
            (22, types[2], vlan_id)
        })
    }
}
