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

/// IPv6 extension headers stepped over on the way to the transport header.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;
/// RFC 8200 orders at most six of them (destination options twice); a longer chain leaves
/// the transport unknown. Also bounds the unrolled loop the verifier walks through.
const IPV6_MAX_EXTENSIONS: usize = 6;

#[inline(always)]
pub(crate) fn be16(buf: &[u8; HDR_LEN], at: usize) -> u16 {
    match (buf.get(at), buf.get(at + 1)) {
        (Some(a), Some(b)) => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

#[inline(always)]
pub(crate) fn be32(buf: &[u8; HDR_LEN], at: usize) -> u32 {
    ((be16(buf, at) as u32) << 16) | be16(buf, at + 2) as u32
}

/// `value`, opaque to the optimiser, so that a bound checked on it afterwards is checked on
/// the register the reads use: the verifier does not carry `at + 2 <= valid` (or the
/// `at | 2 <= valid` it becomes for a multiple of 4) back to `at`.
#[inline(always)]
pub(crate) fn opaque(value: usize) -> usize {
    // SAFETY: a read through a reference to a local: aligned, initialised, alive.
    unsafe { core::ptr::read_volatile(&value) }
}

#[inline(always)]
pub(crate) fn byte(buf: &[u8; HDR_LEN], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

/// Fills the L3/L4 fields of `out` from `buf`, which holds `valid` bytes from the L3 header on.
/// `l3_proto` is the ethertype announcing the header.
///
/// Hostile input gives what it holds, never garbage: `l3_proto` (and every IP field) is set
/// only when a whole IP header of the announced version is there, so a cut or foreign header
/// names no addresses; a transport header is read only where it lies inside the bytes the IP
/// header claims (bytes past that are padding or a lie) and inside `valid`; a later fragment
/// has a protocol but no ports. Another ethertype is only recorded.
#[inline(always)]
pub fn parse_l3(buf: &[u8; HDR_LEN], valid: usize, l3_proto: u16, out: &mut PacketSummary) {
    parse_l3_walking::<IPV6_MAX_EXTENSIONS>(buf, valid, l3_proto, out);
}

/// [`parse_l3`] that steps over no IPv6 extension header (the transport is left unknown
/// behind one): for a tunnel's inner packet, where the kernel programs cannot afford the walk
/// a second time.
#[inline(always)]
pub fn parse_l3_shallow(buf: &[u8; HDR_LEN], valid: usize, l3_proto: u16, out: &mut PacketSummary) {
    parse_l3_walking::<0>(buf, valid, l3_proto, out);
}

#[inline(always)]
fn parse_l3_walking<const EXTENSIONS: usize>(
    buf: &[u8; HDR_LEN],
    valid: usize,
    l3_proto: u16,
    out: &mut PacketSummary,
) {
    let valid = if valid < HDR_LEN { valid } else { HDR_LEN };
    let transport = match l3_proto {
        ETH_P_IP => parse_ipv4(buf, valid, out),
        ETH_P_IPV6 => parse_ipv6::<EXTENSIONS>(buf, valid, out),
        _ => {
            out.l3_proto = l3_proto;
            None
        }
    };
    if let Some((l4, valid)) = transport {
        parse_l4(buf, valid, l4, out);
    }
}

/// `valid`, cut to the length the IP header claims (0, as TSO and BIG TCP leave it: no cut).
#[inline(always)]
fn claimed(valid: usize, claimed_len: usize) -> usize {
    if claimed_len != 0 && claimed_len < valid {
        claimed_len
    } else {
        valid
    }
}

/// The IPv4 fields; returns where the transport header starts and the bytes valid for it.
#[inline(always)]
fn parse_ipv4(
    buf: &[u8; HDR_LEN],
    valid: usize,
    out: &mut PacketSummary,
) -> Option<(usize, usize)> {
    if valid < 20 || byte(buf, 0) >> 4 != 4 {
        return None;
    }
    out.l3_proto = ETH_P_IP;
    out.ip_len = be16(buf, 2);
    out.ip_id = be16(buf, 4) as u32;
    out.df = ((byte(buf, 6) & 0x40) != 0) as u8;
    out.ttl = byte(buf, 8);
    out.l4_proto = byte(buf, 9);
    out.saddr[..4].copy_from_slice(&buf[12..16]);
    out.daddr[..4].copy_from_slice(&buf[16..20]);
    let header_len = ((byte(buf, 0) & 0x0f) as usize) * 4;
    // Fragments after the first carry no transport header; below 20 bytes the header length
    // is a lie (the kernel drops the packet), and where the transport would be is unknown.
    if be16(buf, 6) & 0x1fff != 0 || header_len < 20 {
        return None;
    }
    Some((header_len, claimed(valid, out.ip_len as usize)))
}

/// The IPv6 fields, through the extension headers; returns where the transport header
/// starts and the bytes valid for it.
#[inline(always)]
fn parse_ipv6<const EXTENSIONS: usize>(
    buf: &[u8; HDR_LEN],
    valid: usize,
    out: &mut PacketSummary,
) -> Option<(usize, usize)> {
    if valid < 40 || byte(buf, 0) >> 4 != 6 {
        return None;
    }
    out.l3_proto = ETH_P_IPV6;
    out.ip_id = be32(buf, 0) & 0x000f_ffff;
    out.ip_len = be16(buf, 4).wrapping_add(40);
    out.ttl = byte(buf, 7);
    out.saddr.copy_from_slice(&buf[8..24]);
    out.daddr.copy_from_slice(&buf[24..40]);
    // A payload length of 0 (BIG TCP on a GSO packet over 64 KiB, a jumbogram) claims nothing.
    let payload_len = be16(buf, 4) as usize;
    let valid = if payload_len == 0 {
        valid
    } else {
        claimed(valid, 40 + payload_len)
    };
    let mut next = byte(buf, 6);
    let mut at = 40;
    for _ in 0..EXTENSIONS {
        let is_extension = matches!(
            next,
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_FRAGMENT | IPV6_AUTH | IPV6_DEST_OPTS
        );
        // Headers are multiples of 4 bytes long: one at 124 is the last whose first 4 bytes
        // (what is read of it) fit. The check must bound `at` itself for the verifier.
        at = opaque(at);
        // An extension header cut before its first two bytes cannot say what follows it.
        if !is_extension || at > HDR_LEN - 4 || at + 2 > valid {
            break;
        }
        let units = byte(buf, at + 1) as usize;
        let len = match next {
            IPV6_FRAGMENT => {
                // Fragments after the first carry no transport header.
                if be16(buf, at + 2) & 0xfff8 != 0 {
                    out.l4_proto = byte(buf, at);
                    return None;
                }
                8
            }
            IPV6_AUTH => (units + 2) * 4,
            _ => (units + 1) * 8,
        };
        next = byte(buf, at);
        at += len;
    }
    out.l4_proto = next;
    Some((at, valid))
}

#[inline(always)]
fn parse_l4(buf: &[u8; HDR_LEN], valid: usize, l4: usize, out: &mut PacketSummary) {
    // Each read below is bounded by a check on `l4` itself, on the register the reads use:
    // `valid >= l4 + 20` with `valid <= HDR_LEN` bounds them too, but only newer verifiers
    // (6.18) carry such a relation between two registers; 6.12 and 6.1 refuse the program.
    // Both opaque: from `valid <= HDR_LEN` the optimiser would otherwise drop the checks on
    // `l4` as redundant.
    let (l4, valid) = (opaque(l4), opaque(valid));
    // No transport header we read is shorter than 8 bytes: keeps every index below HDR_LEN.
    if l4 > HDR_LEN - 8 {
        return;
    }
    match out.l4_proto {
        IPPROTO_TCP if valid >= l4 + 20 && l4 <= HDR_LEN - 20 => {
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

/// Turns the link-layer header `eth` (from [`parse_l2`], the L3 header at `l3_offset`) into
/// the one the receive taps see, and returns its new length: the kernel moves the outermost
/// VLAN tag into `skb->vlan_tci` before them (`skb_vlan_untag`), so tcpdump's filter runs on
/// the frame without it. Points that read the frame before that (XDP, `netif_receive`) give
/// the filter this view, or a tagged frame would match `udp` at the tap and not there.
/// (A NIC that strips the tag itself hands XDP a frame without it already: there, a second
/// tag would be taken off too. Veth and NICs without VLAN offload do not.)
#[inline(always)]
pub fn untag_outer(eth: &mut [u8; L2_LEN], l3_offset: usize) -> usize {
    if l3_offset < ETH_HLEN + 4 {
        return l3_offset;
    }
    eth.copy_within(16.., 12);
    l3_offset - 4
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
        bytes[3] = 44; // total length
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
    fn a_cut_or_foreign_ip_header_names_no_packet() {
        for (valid, first) in [(19, 0x45), (40, 0x65), (40, 0x44)] {
            let mut bytes = IPV4_TCP_SYN;
            bytes[0] = first;
            let mut p = PacketSummary::default();
            parse_l3(&buf(&bytes), valid, ETH_P_IP, &mut p);
            let expected = match first {
                // IHL 4: the fixed header is there, the transport's place is not known.
                0x44 => (ETH_P_IP, 6, 0, 0),
                _ => (0, 0, 0, 0),
            };
            assert_eq!(
                (p.l3_proto, p.l4_proto, p.sport, p.dport),
                expected,
                "{first:#x}"
            );
        }
    }

    #[test]
    fn bytes_past_the_claimed_length_are_not_the_transport() {
        let mut bytes = IPV4_TCP_SYN;
        bytes[3] = 30; // claims 10 bytes of TCP header
        let mut p = PacketSummary::default();
        parse_l3(&buf(&bytes), 40, ETH_P_IP, &mut p);
        assert_eq!((p.l4_proto, p.ip_len, p.sport, p.dport), (6, 30, 0, 0));
        // 0, as TSO leaves it, claims nothing.
        bytes[3] = 0;
        parse_l3(&buf(&bytes), 40, ETH_P_IP, &mut p);
        assert_eq!((p.sport, p.dport), (40000, 80));
    }

    /// IPv6 1::1 -> 1::2, flow label 5, then `chain` (extension headers and transport).
    fn ipv6(first_next: u8, chain: &[u8]) -> [u8; HDR_LEN] {
        let mut bytes = [0u8; HDR_LEN];
        bytes[..4].copy_from_slice(&[0x60, 0, 0, 5]);
        bytes[4..6].copy_from_slice(&(chain.len() as u16).to_be_bytes());
        (bytes[6], bytes[7], bytes[23], bytes[39]) = (first_next, 64, 1, 2);
        bytes[40..40 + chain.len()].copy_from_slice(chain);
        bytes
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_the_ports() {
        // Hop-by-hop (8), routing (8), fragment (offset 0, more), dest opts (16), UDP.
        let chain: [u8; 48] = [
            43, 0, 1, 4, 0, 0, 0, 0, 44, 0, 253, 0, 0, 0, 0, 0, 60, 0, 0, 1, 0, 0, 0, 9, //
            17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0,
        ];
        let bytes = ipv6(0, &chain);
        let mut p = PacketSummary::default();
        parse_l3(&bytes, 40 + chain.len(), ETH_P_IPV6, &mut p);
        assert_eq!((p.l4_proto, p.sport, p.dport), (17, 5000, 53));
        // Cut inside the UDP header: the protocol, no ports.
        let mut cut = PacketSummary::default();
        parse_l3(&bytes, 40 + chain.len() - 4, ETH_P_IPV6, &mut cut);
        assert_eq!((cut.l4_proto, cut.sport, cut.dport), (17, 0, 0));
    }

    #[test]
    fn ipv6_payload_length_0_claims_nothing() {
        let mut bytes = ipv6(17, &[0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0]);
        bytes[4..6].fill(0);
        let mut p = PacketSummary::default();
        parse_l3(&bytes, 48, ETH_P_IPV6, &mut p);
        assert_eq!((p.l4_proto, p.sport, p.dport), (17, 5000, 53));
    }

    #[test]
    fn a_later_ipv6_fragment_has_a_protocol_and_no_ports() {
        let chain = [6, 0, 0, 8, 0, 0, 0, 9, 0x9c, 0x40, 0, 80, 0, 0, 0, 1];
        let mut p = PacketSummary::default();
        parse_l3(&ipv6(44, &chain), 56, ETH_P_IPV6, &mut p);
        assert_eq!((p.l4_proto, p.sport, p.dport), (6, 0, 0));
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
    fn the_tap_sees_the_frame_without_its_outer_tag() {
        let mut eth = [0u8; L2_LEN];
        eth[12..14].copy_from_slice(&ETH_P_8021AD.to_be_bytes());
        eth[16..18].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
        eth[20..22].copy_from_slice(&ETH_P_IP.to_be_bytes());
        assert_eq!(untag_outer(&mut eth, 22), 18);
        assert_eq!(parse_l2(&eth, 18), Some((18, ETH_P_IP, 0)));
        assert_eq!(
            untag_outer(&mut eth, 14),
            14,
            "untagged frames stay as they are"
        );
    }

    #[test]
    fn non_ip_is_left_alone() {
        let mut p = PacketSummary::default();
        parse_l3(&buf(&IPV4_TCP_SYN), 40, 0x0806, &mut p);
        assert_eq!((p.l4_proto, p.sport), (0, 0));
    }
}
