extern crate std;
use std::{vec, vec::Vec};

use super::*;
use crate::parse::parse_l3;

/// IPv4 (id 0x1234) 192.168.77.1 -> 192.168.77.2, TCP 40000 -> 8080, SYN, seq 7.
const INNER_SYN: [u8; 40] = [
    0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 192, 168, 77, 1, 192, 168, 77, 2, //
    0x9c, 0x40, 0x1f, 0x90, 0, 0, 0, 7, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
];

/// An outer IPv4 header 10.0.0.1 -> 10.0.0.2 of protocol `proto`, then `rest`.
fn outer(proto: u8, rest: &[u8]) -> ([u8; HDR_LEN], usize) {
    let mut buf = [0u8; HDR_LEN];
    let total = 20 + rest.len();
    buf[..20].copy_from_slice(&[
        0x45, 0, 0, 0, 0xab, 0xcd, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    let n = rest.len().min(HDR_LEN - 20);
    buf[20..20 + n].copy_from_slice(&rest[..n]);
    (buf, total.min(HDR_LEN))
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0xb8, 0x21];
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    out
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn parsed(buf: &[u8; HDR_LEN], valid: usize) -> PacketSummary {
    let mut p = PacketSummary::default();
    parse_l3(buf, valid, ETH_P_IP, &mut p);
    p
}

fn inner_of(buf: &[u8; HDR_LEN], valid: usize) -> Option<(u8, u32, PacketSummary)> {
    let outer = parsed(buf, valid);
    if !may_carry(Outer::of(&outer)) {
        return None;
    }
    let found = find(buf, valid, Outer::of(&outer))?;
    Some((found.kind, found.id, inner_summary(buf, valid, &found)))
}

fn assert_inner_syn(inner: &PacketSummary) {
    assert_eq!(
        (
            inner.l4_proto,
            inner.sport,
            inner.dport,
            inner.tcp_seq,
            inner.ip_id
        ),
        (6, 40000, 8080, 7, 0x1234)
    );
    assert_eq!(&inner.saddr[..4], &[192, 168, 77, 1]);
}

#[test]
fn vxlan_carries_the_inner_packet_and_its_vni() {
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    payload.extend(ethernet(ETH_P_IP, &INNER_SYN));
    let (buf, valid) = outer(17, &udp(VXLAN_PORT, &payload));
    let (kind, vni, inner) = inner_of(&buf, valid).expect("a VXLAN packet");
    assert_eq!((kind, vni), (tunnel::VXLAN, 42));
    assert_inner_syn(&inner);
    // Linux's own default port too.
    let (buf, valid) = outer(17, &udp(VXLAN_LINUX_PORT, &payload));
    assert_eq!(inner_of(&buf, valid).map(|f| f.1), Some(42));
}

#[test]
fn vxlan_without_the_vni_flag_or_cut_short_is_no_tunnel() {
    let mut payload = vec![0, 0, 0, 0, 0, 0, 42, 0];
    payload.extend(ethernet(ETH_P_IP, &INNER_SYN));
    let (buf, valid) = outer(17, &udp(VXLAN_PORT, &payload));
    assert_eq!(inner_of(&buf, valid), None);
    payload[0] = 0x08;
    let (buf, _) = outer(17, &udp(VXLAN_PORT, &payload));
    // Cut inside the inner IP header.
    assert_eq!(inner_of(&buf, 20 + 8 + 8 + 14 + 10), None);
    // Another UDP port.
    let (buf, valid) = outer(17, &udp(53, &payload));
    assert_eq!(inner_of(&buf, valid), None);
}

#[test]
fn vxlan_carrying_arp_is_no_inner_ip_packet() {
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    payload.extend(ethernet(0x0806, &[0u8; 28]));
    let (buf, valid) = outer(17, &udp(VXLAN_PORT, &payload));
    assert_eq!(inner_of(&buf, valid), None);
}

#[test]
fn geneve_options_move_the_inner_packet() {
    // Two 4-byte units of options, Ethernet inside, VNI 7.
    let mut payload = vec![0x02, 0, 0x65, 0x58, 0, 0, 7, 0];
    payload.extend_from_slice(&[0xaa; 8]);
    payload.extend(ethernet(ETH_P_IP, &INNER_SYN));
    let (buf, valid) = outer(17, &udp(GENEVE_PORT, &payload));
    let (kind, vni, inner) = inner_of(&buf, valid).expect("a Geneve packet");
    assert_eq!((kind, vni), (tunnel::GENEVE, 7));
    assert_inner_syn(&inner);
}

#[test]
fn gre_with_a_key_carries_ip() {
    // Key present (0x2000), protocol IPv4, key 1000.
    let mut payload = vec![0x20, 0, 0x08, 0, 0, 0, 0x03, 0xe8];
    payload.extend_from_slice(&INNER_SYN);
    let (buf, valid) = outer(47, &payload);
    let (kind, key, inner) = inner_of(&buf, valid).expect("a GRE packet");
    assert_eq!((kind, key), (tunnel::GRE, 1000));
    assert_inner_syn(&inner);
    // Version 1 (PPTP) is not followed.
    let mut pptp = payload.clone();
    pptp[1] = 1;
    let (buf, valid) = outer(47, &pptp);
    assert_eq!(inner_of(&buf, valid), None);
}

#[test]
fn gretap_carries_ethernet() {
    let mut payload = vec![0, 0, 0x65, 0x58];
    payload.extend(ethernet(ETH_P_IP, &INNER_SYN));
    let (buf, valid) = outer(47, &payload);
    let (kind, key, inner) = inner_of(&buf, valid).expect("a gretap packet");
    assert_eq!((kind, key), (tunnel::GRE, 0));
    assert_inner_syn(&inner);
}

#[test]
fn ipip_carries_ip_directly() {
    let (buf, valid) = outer(4, &INNER_SYN);
    let (kind, _, inner) = inner_of(&buf, valid).expect("an IPIP packet");
    assert_eq!(kind, tunnel::IPIP);
    assert_inner_syn(&inner);
}

#[test]
fn a_plain_packet_is_no_tunnel() {
    let (buf, valid) = outer(6, &INNER_SYN[20..]);
    assert_eq!(inner_of(&buf, valid), None);
}
