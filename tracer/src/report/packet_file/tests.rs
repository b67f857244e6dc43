use std::path::Path;

use super::{direction, headers_len, verdict};
use crate::{
    analysis::fate::{FateKind, TraceEnd},
    analysis::journey::build,
    model::recording,
    report::pcapng::{Direction, Verdict},
};

fn ipv4(proto: u8, ihl_words: u8, fragment_offset: u16) -> Vec<u8> {
    let mut ip = vec![0u8; ihl_words as usize * 4];
    ip[0] = 0x40 | ihl_words;
    ip[6..8].copy_from_slice(&fragment_offset.to_be_bytes());
    ip[9] = proto;
    ip
}

fn tcp(doff_words: u8) -> Vec<u8> {
    let mut tcp = vec![0u8; doff_words as usize * 4];
    tcp[12] = doff_words << 4;
    tcp
}

fn ethernet(vlans: usize, ethertype: u16) -> Vec<u8> {
    let mut eth = vec![0u8; 12];
    for _ in 0..vlans {
        eth.extend([0x81, 0x00, 0x00, 0x07]);
    }
    eth.extend(ethertype.to_be_bytes());
    eth
}

const PAYLOAD: [u8; 100] = [0xaa; 100];

#[test]
fn tcp_over_ethernet_keeps_options_and_cuts_the_payload() {
    let frame = [ethernet(0, 0x0800), ipv4(6, 5, 0), tcp(8), PAYLOAD.to_vec()].concat();
    assert_eq!(headers_len(&frame, true), 14 + 20 + 32);
}

#[test]
fn vlan_tags_and_ip_options_are_counted() {
    let frame = [
        ethernet(2, 0x0800),
        ipv4(17, 7, 0),
        vec![0; 8],
        PAYLOAD.to_vec(),
    ]
    .concat();
    assert_eq!(headers_len(&frame, true), 22 + 28 + 8);
}

#[test]
fn a_later_fragment_has_no_transport_header() {
    let packet = [ipv4(6, 5, 185), PAYLOAD.to_vec()].concat();
    assert_eq!(headers_len(&packet, false), 20);
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let mut ip6 = vec![0u8; 40];
    ip6[0] = 0x60;
    ip6[6] = 0; // hop-by-hop options, 8 bytes, then ICMPv6
    let hop_by_hop = [58, 0, 5, 2, 0, 0, 1, 0];
    let packet = [ip6, hop_by_hop.to_vec(), vec![0; 8], PAYLOAD.to_vec()].concat();
    assert_eq!(headers_len(&packet, false), 40 + 8 + 8);
}

#[test]
fn truncated_or_unknown_bytes_are_kept_as_they_are() {
    let frame = [ethernet(0, 0x0800), ipv4(6, 5, 0)].concat();
    assert_eq!(headers_len(&frame, true), frame.len());
    assert_eq!(headers_len(&[0x12, 0x34], false), 2);
    let arp = [ethernet(0, 0x0806), vec![0; 28]].concat();
    assert_eq!(headers_len(&arp, true), 14);
}

/// Each point's direction and verdict on a recorded packet a tc ingress program dropped: the
/// shot at tc ingress's first program, where it died, and no verdict at points that are not
/// programs deciding the packet's fate.
#[test]
fn a_tc_drop_is_a_shot_at_the_first_tc_program() {
    let sightings = recording::read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tc_ingress_drop.jsonl"),
    )
    .expect("fixture")
    .sightings;
    let journeys = build(sightings, &TraceEnd::default());
    let dropped = journeys
        .iter()
        .find(|j| j.fate.kind == FateKind::Dropped)
        .expect("a dropped packet");
    let points: Vec<(String, Direction, Option<Verdict>)> = dropped
        .sightings
        .iter()
        .map(|s| (super::point(s), direction(s), verdict(s, dropped)))
        .collect();
    assert!(!points.is_empty());
    for (point, direction, verdict) in &points {
        let expected = match point.as_str() {
            "tc_ingress(first)" => (Direction::Inbound, Some(Verdict::Tc(super::TC_ACT_SHOT))),
            "tc_egress(first)" => (Direction::Outbound, Some(Verdict::Tc(super::TC_ACT_OK))),
            "xdp" => (Direction::Inbound, Some(Verdict::Xdp(super::XDP_PASS))),
            "netif_receive" | "tc_ingress(last)" => (Direction::Inbound, None),
            p if p.starts_with("nf_prerouting") || p.starts_with("nf_local_in") => {
                (Direction::Inbound, None)
            }
            p if p.starts_with("nf_") => (Direction::Outbound, None),
            p if p.starts_with("tc_egress") || p.starts_with("dev_xmit") => {
                (Direction::Outbound, None)
            }
            _ => (Direction::Unknown, None),
        };
        assert_eq!((*direction, *verdict), expected, "{point}: {points:?}");
    }
    assert!(
        points.iter().any(|(p, ..)| p == "tc_ingress(first)"),
        "{points:?}"
    );
}
