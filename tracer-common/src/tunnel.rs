//! Encapsulations: where, in the headers of a tunnel's outer packet, the packet it carries
//! starts. A tunnel device (vxlan, geneve, gre, ipip) pushes the outer headers onto the same
//! skb and the receiver pulls them off again, so a traced packet crosses the underlay in
//! this form; the kernel programs parse the inner headers from here to keep following it.
//!
//! Works on the same bounded buffer as [`crate::parse`], from the outer L3 header on.

use crate::{
    event::{tunnel, PacketSummary},
    parse::{be16, be32, byte, opaque, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, HDR_LEN},
};

pub const VXLAN_PORT: u16 = 4789;
/// The port Linux's vxlan uses when none is given (`ip link add ... type vxlan` warns).
pub const VXLAN_LINUX_PORT: u16 = 8472;
pub const GENEVE_PORT: u16 = 6081;

const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_GRE: u8 = 47;
const IPPROTO_UDP: u8 = 17;
/// Ethernet inside (VXLAN always; Geneve and GRE say so with this protocol type).
const ETH_P_TEB: u16 = 0x6558;

/// Where the inner packet is: its kind, VNI or key, and its L3 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encapsulation {
    /// One of [`crate::event::tunnel`].
    pub kind: u8,
    pub id: u32,
    /// Offset of the inner L3 header in the buffer.
    pub inner_at: usize,
    /// Its ethertype.
    pub inner_proto: u16,
}

/// What the search needs of the outer packet's parsed headers: a few numbers, which the
/// kernel programs pass as plain arguments (a whole summary would cost stack they lack).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outer {
    pub l3_proto: u16,
    pub l4_proto: u8,
    pub dport: u16,
}

impl Outer {
    #[inline(always)]
    pub fn of(packet: &PacketSummary) -> Outer {
        Outer {
            l3_proto: packet.l3_proto,
            l4_proto: packet.l4_proto,
            dport: packet.dport,
        }
    }
}

/// Whether `outer` (already parsed) can be a tunnel's outer header at all: a cheap test
/// before [`find`] reads the buffer.
#[inline(always)]
pub fn may_carry(outer: Outer) -> bool {
    match outer.l4_proto {
        IPPROTO_UDP => matches!(outer.dport, VXLAN_PORT | VXLAN_LINUX_PORT | GENEVE_PORT),
        IPPROTO_GRE | IPPROTO_IPIP | IPPROTO_IPV6 => outer.l3_proto != 0,
        _ => false,
    }
}

/// Finds the inner packet in `buf` (`valid` bytes from the outer L3 header on), whose outer
/// headers `outer` holds. `None` when it is no tunnel packet, its inner L3 header lies beyond
/// the copied bytes, or it carries something other than IP.
#[inline(always)]
pub fn find(buf: &[u8; HDR_LEN], valid: usize, outer: Outer) -> Option<Encapsulation> {
    let valid = if valid < HDR_LEN { valid } else { HDR_LEN };
    let l4 = match outer.l3_proto {
        ETH_P_IP => ((byte(buf, 0) & 0x0f) as usize) * 4,
        // Only without extension headers: the next header field names the transport.
        ETH_P_IPV6 if byte(buf, 6) == outer.l4_proto => 40,
        _ => return None,
    };
    let l4 = opaque(l4);
    if !(20..=HDR_LEN - 8).contains(&l4) {
        return None;
    }
    let found = match outer.l4_proto {
        IPPROTO_UDP => udp_tunnel(buf, l4, outer.dport)?,
        IPPROTO_GRE => gre(buf, l4)?,
        IPPROTO_IPIP => (tunnel::IPIP, 0, l4, ETH_P_IP),
        IPPROTO_IPV6 => (tunnel::IPIP, 0, l4, ETH_P_IPV6),
        _ => return None,
    };
    let (kind, id, at, proto) = found;
    let (at, proto) = if proto == ETH_P_TEB {
        // An Ethernet frame: its type field says what follows.
        (at + ETH_HLEN, be16(buf, at + 12))
    } else {
        (at, proto)
    };
    // At least an IPv4 header's worth of the inner packet must be there to parse.
    if !matches!(proto, ETH_P_IP | ETH_P_IPV6) || at + 20 > valid {
        return None;
    }
    Some(Encapsulation {
        kind,
        id,
        inner_at: at,
        inner_proto: proto,
    })
}

/// VXLAN (8-byte header, VNI in bytes 4..7, then Ethernet) or Geneve (8 bytes plus options,
/// protocol type in bytes 2..3, VNI in 4..7).
#[inline(always)]
fn udp_tunnel(buf: &[u8; HDR_LEN], l4: usize, dport: u16) -> Option<(u8, u32, usize, u16)> {
    let header = l4 + 8;
    let vni = be32(buf, header + 4) >> 8;
    match dport {
        VXLAN_PORT | VXLAN_LINUX_PORT => {
            // The I flag: a valid VNI.
            if byte(buf, header) & 0x08 == 0 {
                return None;
            }
            Some((tunnel::VXLAN, vni, header + 8, ETH_P_TEB))
        }
        GENEVE_PORT => {
            // Version 0; options in 4-byte units.
            let first = byte(buf, header);
            if first >> 6 != 0 {
                return None;
            }
            let options = ((first & 0x3f) as usize) * 4;
            Some((
                tunnel::GENEVE,
                vni,
                header + 8 + options,
                be16(buf, header + 2),
            ))
        }
        _ => None,
    }
}

/// GRE (RFC 2784/2890): flags and version, protocol type, then checksum, key and sequence
/// number where their flags say so.
#[inline(always)]
fn gre(buf: &[u8; HDR_LEN], l4: usize) -> Option<(u8, u32, usize, u16)> {
    let flags = be16(buf, l4);
    // Version 0 only (1 is PPTP's enhanced GRE).
    if flags & 0x0007 != 0 {
        return None;
    }
    let (checksum, key, sequence) = (
        flags & 0x8000 != 0,
        flags & 0x2000 != 0,
        flags & 0x1000 != 0,
    );
    let mut at = l4 + 4;
    if checksum {
        at += 4;
    }
    let id = if key { be32(buf, at) } else { 0 };
    if key {
        at += 4;
    }
    if sequence {
        at += 4;
    }
    Some((tunnel::GRE, id, at, be16(buf, l4 + 2)))
}

/// The tunnel's name as a person reads it: `VXLAN`, `Geneve`, ...
pub fn name(kind: u8) -> &'static str {
    match kind {
        tunnel::VXLAN => "VXLAN",
        tunnel::GENEVE => "Geneve",
        tunnel::GRE => "GRE",
        tunnel::IPIP => "IP-in-IP",
        _ => "tunnel",
    }
}

/// The inner packet's headers, parsed from a copy of the buffer from `found.inner_at` on, as
/// the kernel programs do (they copy with a helper, and walk no IPv6 extension header).
pub fn inner_summary(buf: &[u8; HDR_LEN], valid: usize, found: &Encapsulation) -> PacketSummary {
    let valid = valid.min(HDR_LEN);
    let mut inner = [0u8; HDR_LEN];
    let len = valid.saturating_sub(found.inner_at);
    inner[..len].copy_from_slice(&buf[found.inner_at..found.inner_at + len]);
    let mut out = PacketSummary::default();
    crate::parse::parse_l3_shallow(&inner, len, found.inner_proto, &mut out);
    out
}

#[cfg(test)]
mod tests;
