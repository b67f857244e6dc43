//! Packet header parsing into a [`PacketSummary`], from bytes copied out of the packet.
//!
//! Shared by the kernel programs and userspace (which tests and fuzzes it on the host).
//! Every hook copies up to [`HDR_LEN`] bytes starting at the L3 header into a stack buffer
//! (the copy is how each hook family reads: direct access, `bpf_skb_load_bytes`,
//! `bpf_probe_read_kernel`); parsing then works on that buffer with bounded indices only.

use crate::event::PacketSummary;

/// Enough for an IPv4 header with options (60) plus a TCP header with options (up to 60),
/// or IPv6 (40) plus TCP with options: what a filter can look at.
pub const HDR_LEN: usize = 128;
/// Room for the link-layer header: Ethernet and two VLAN tags (22 bytes).
pub const L2_LEN: usize = 32;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_HLEN: usize = 14;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

#[inline(always)]
fn be16(buf: &[u8; HDR_LEN], at: usize) -> u16 {
    match (buf.get(at), buf.get(at + 1)) {
        (Some(a), Some(b)) => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

#[inline(always)]
fn be32(buf: &[u8; HDR_LEN], at: usize) -> u32 {
    ((be16(buf, at) as u32) << 16) | be16(buf, at + 2) as u32
}

#[inline(always)]
fn byte(buf: &[u8; HDR_LEN], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

/// Fills the L3/L4 fields of `out` from `buf`, which holds `valid` bytes from the L3 header on.
/// `l3_proto` is the ethertype announcing the header. Fields that lie beyond `valid` stay 0.
#[inline(always)]
pub fn parse_l3(buf: &[u8; HDR_LEN], valid: usize, l3_proto: u16, out: &mut PacketSummary) {
    out.l3_proto = l3_proto;
    let l4 = match l3_proto {
        ETH_P_IP if valid >= 20 => {
            out.ip_len = be16(buf, 2);
            out.ip_id = be16(buf, 4) as u32;
            out.df = ((byte(buf, 6) & 0x40) != 0) as u8;
            out.ttl = byte(buf, 8);
            out.l4_proto = byte(buf, 9);
            out.saddr[..4].copy_from_slice(&buf[12..16]);
            out.daddr[..4].copy_from_slice(&buf[16..20]);
            // Fragments after the first carry no transport header.
            if be16(buf, 6) & 0x1fff != 0 {
                return;
            }
            ((byte(buf, 0) & 0x0f) as usize) * 4
        }
        ETH_P_IPV6 if valid >= 40 => {
            out.ip_id = be32(buf, 0) & 0x000f_ffff;
            out.ip_len = be16(buf, 4).wrapping_add(40);
            out.l4_proto = byte(buf, 6);
            out.ttl = byte(buf, 7);
            out.saddr.copy_from_slice(&buf[8..24]);
            out.daddr.copy_from_slice(&buf[24..40]);
            40
        }
        _ => return,
    };
    parse_l4(buf, valid, l4, out);
}

#[inline(always)]
fn parse_l4(buf: &[u8; HDR_LEN], valid: usize, l4: usize, out: &mut PacketSummary) {
    // `l4` is at most 60: keeps every index below HDR_LEN for the verifier.
    if l4 > 60 {
        return;
    }
    match out.l4_proto {
        IPPROTO_TCP if valid >= l4 + 20 => {
            out.sport = be16(buf, l4);
            out.dport = be16(buf, l4 + 2);
            out.tcp_seq = be32(buf, l4 + 4);
            out.tcp_ack = be32(buf, l4 + 8);
            out.tcp_flags = byte(buf, l4 + 13);
        }
        IPPROTO_UDP if valid >= l4 + 8 => {
            out.sport = be16(buf, l4);
            out.dport = be16(buf, l4 + 2);
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 if valid >= l4 + 8 => {
            out.icmp_type = byte(buf, l4);
            out.icmp_code = byte(buf, l4 + 1);
            // Echo identifier and sequence pair a request with its reply, like ports.
            out.sport = be16(buf, l4 + 4);
            out.dport = be16(buf, l4 + 6);
        }
        _ => {}
    }
}

/// Finds the L3 header behind an Ethernet header and up to two VLAN tags.
/// Returns (offset of L3, ethertype, outermost VLAN id).
#[inline(always)]
pub fn parse_l2(eth: &[u8; L2_LEN], valid: usize) -> Option<(usize, u16, u16)> {
    if valid < ETH_HLEN {
        return None;
    }
    let mut proto = u16::from_be_bytes([eth[12], eth[13]]);
    let mut offset = ETH_HLEN;
    let mut vlan = 0;
    if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) && valid >= 18 {
        vlan = u16::from_be_bytes([eth[14], eth[15]]) & 0x0fff;
        proto = u16::from_be_bytes([eth[16], eth[17]]);
        offset = 18;
        if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) && valid >= 22 {
            proto = u16::from_be_bytes([eth[20], eth[21]]);
            offset = 22;
        }
    }
    Some((offset, proto, vlan))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(bytes: &[u8]) -> [u8; HDR_LEN] {
        let mut out = [0u8; HDR_LEN];
        out[..bytes.len()].copy_from_slice(bytes);
        out
    }

    /// IPv4 (DF, id 0x1234, ttl 64) 10.0.0.1 -> 10.0.0.2, TCP 40000 -> 80, SYN, seq 1, ack 0.
    const IPV4_TCP_SYN: [u8; 40] = [
        0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, //
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];

    #[test]
    fn ipv4_tcp_fields() {
        let mut p = PacketSummary::default();
        parse_l3(&buf(&IPV4_TCP_SYN), 40, ETH_P_IP, &mut p);
        assert_eq!(
            (p.l4_proto, p.sport, p.dport, p.tcp_seq, p.tcp_flags),
            (6, 40000, 80, 1, 0x02)
        );
        assert_eq!((p.ip_id, p.ip_len, p.ttl, p.df), (0x1234, 40, 64, 1));
        assert_eq!(&p.saddr[..4], &[10, 0, 0, 1]);
        assert_eq!(&p.daddr[..4], &[10, 0, 0, 2]);
    }

    #[test]
    fn truncated_transport_header_leaves_ports_zero() {
        let mut p = PacketSummary::default();
        parse_l3(&buf(&IPV4_TCP_SYN), 30, ETH_P_IP, &mut p);
        assert_eq!(p.l4_proto, 6);
        assert_eq!((p.sport, p.dport, p.tcp_flags), (0, 0, 0));
    }

    #[test]
    fn ipv4_options_move_the_transport_header() {
        let mut bytes = [0u8; 44];
        bytes[..20].copy_from_slice(&IPV4_TCP_SYN[..20]);
        bytes[0] = 0x46; // IHL 6: four bytes of options
        bytes[24..44].copy_from_slice(&IPV4_TCP_SYN[20..]);
        let mut p = PacketSummary::default();
        parse_l3(&buf(&bytes), 44, ETH_P_IP, &mut p);
        assert_eq!((p.sport, p.dport), (40000, 80));
    }

    #[test]
    fn later_fragments_have_no_ports() {
        let mut bytes = IPV4_TCP_SYN;
        bytes[7] = 0x10; // fragment offset 16
        let mut p = PacketSummary::default();
        parse_l3(&buf(&bytes), 40, ETH_P_IP, &mut p);
        assert_eq!((p.sport, p.dport), (0, 0));
    }

    #[test]
    fn ipv6_udp_fields() {
        let mut bytes = [0u8; 48];
        bytes[0] = 0x60;
        bytes[3] = 0x05; // flow label 5
        bytes[5] = 8; // payload length
        bytes[6] = 17;
        bytes[7] = 64;
        bytes[23] = 1; // ::1
        bytes[39] = 2; // ::2
        bytes[40..44].copy_from_slice(&[0x13, 0x88, 0x00, 0x35]); // 5000 -> 53
        let mut p = PacketSummary::default();
        parse_l3(&buf(&bytes), 48, ETH_P_IPV6, &mut p);
        assert_eq!(
            (p.l4_proto, p.sport, p.dport, p.ip_id, p.ip_len),
            (17, 5000, 53, 5, 48)
        );
        assert_eq!(p.saddr[15], 1);
        assert_eq!(p.daddr[15], 2);
    }

    #[test]
    fn vlan_tags_are_skipped() {
        let mut eth = [0u8; L2_LEN];
        eth[12..14].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
        eth[14..16].copy_from_slice(&0x0064u16.to_be_bytes()); // VLAN 100
        eth[16..18].copy_from_slice(&ETH_P_IP.to_be_bytes());
        assert_eq!(parse_l2(&eth, 22), Some((18, ETH_P_IP, 100)));
        assert_eq!(parse_l2(&eth, 10), None);
    }

    #[test]
    fn non_ip_is_left_alone() {
        let mut p = PacketSummary::default();
        parse_l3(&buf(&IPV4_TCP_SYN), 40, 0x0806, &mut p);
        assert_eq!((p.l4_proto, p.sport), (0, 0));
    }
}
