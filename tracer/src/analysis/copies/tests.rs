use super::*;
use crate::{
    analysis::bridge::tests::{at, dropped, entering},
    analysis::fate::{fate, FateKind, TraceEnd},
};

fn skbs(sightings: &[Sighting]) -> Vec<u64> {
    sightings.iter().map(|s| s.skb).collect()
}

#[test]
fn a_promiscuous_bridge_passes_the_frame_up_as_a_copy_while_its_clone_is_forwarded() {
    // tcpdump on br0: the clone (skb 200) is forwarded and dropped at FORWARD (a DOCKER-USER
    // rule); the original skb goes up to br0 and dies there as not for this host.
    let mut path = entering();
    path.extend([
        at(15, "nf_forward", Some("first"), 2, 200),
        dropped(16, 2, 200, "NETFILTER_DROP"),
        at(17, "netif_receive", None, 2, 100),
        at(18, "tc_ingress", Some("first"), 2, 100),
        dropped(19, 2, 100, "OTHERHOST"),
    ]);
    let (own, copies) = split(path);
    assert_eq!(skbs(&own), [100, 100, 100, 100, 100, 200, 200]);
    let fate = fate(&own, &TraceEnd::default());
    assert_eq!(fate.drop_reason(), Some("NETFILTER_DROP"));
    assert_eq!(copies.len(), 1);
    let (copy, made) = &copies[0];
    assert_eq!(skbs(copy), [100, 100, 100]);
    assert!(
        made.starts_with("that bridge br0 passed up to itself"),
        "{made}"
    );
    let end = crate::analysis::fate::fate(copy, &TraceEnd::default());
    assert_eq!(end.drop_reason(), Some("OTHERHOST"));
}

#[test]
fn a_flooded_frame_is_the_packet_where_it_was_for_and_a_copy_elsewhere() {
    // No FDB entry: the bridge clones the frame to veth2 (skb 200) and sends the original out
    // of uplink's port (ifindex 5 here stands for a third port of br0); veth2's host is not
    // the destination and drops its copy as not for it.
    let mut path = entering();
    let third_port = |ts, hook, position, skb| {
        let mut s = at(ts, hook, position, 5, skb);
        s.note = Some(crate::model::sighting::port_note("br0").into());
        s
    };
    path.extend([
        at(15, "tc_egress", Some("first"), 4, 200),
        at(16, "dev_xmit", Some("first"), 4, 200),
        third_port(17, "tc_egress", Some("first"), 100),
        third_port(18, "dev_xmit", Some("first"), 100),
        dropped(19, 4, 200, "OTHERHOST"),
    ]);
    let (own, copies) = split(path);
    assert_eq!(skbs(&own), [100, 100, 100, 100, 100, 100, 100]);
    assert_eq!(copies.len(), 1);
    let (copy, made) = &copies[0];
    assert_eq!(skbs(copy), [200, 200, 200]);
    assert!(made.contains("sent out of its port veth2"), "{made}");
}

#[test]
fn a_frame_the_bridge_did_not_copy_stays_whole() {
    let mut path = entering();
    path.extend([
        at(15, "nf_forward", Some("first"), 2, 100),
        at(16, "tc_egress", Some("first"), 4, 100),
        at(17, "dev_xmit", Some("first"), 4, 100),
    ]);
    let (own, copies) = split(path.clone());
    assert_eq!(own, path);
    assert!(copies.is_empty());
}

#[test]
fn a_skb_replaced_or_a_fragment_made_elsewhere_is_not_a_copy() {
    // After the bridge passed it up, the host routed it out of an uplink (ifindex 6, no port)
    // in two fragments with new skbs; the original skb was only consumed.
    let mut path = entering();
    let uplink = |ts, hook: &str, skb| at(ts, hook, Some("first"), 6, skb);
    path.extend([
        at(15, "netif_receive", None, 2, 100),
        uplink(16, "nf_forward", 100),
        uplink(17, "tc_egress", 300),
        uplink(18, "tc_egress", 301),
        at(19, "consume_skb", None, 6, 100),
    ]);
    let (own, copies) = split(path.clone());
    assert_eq!(own, path);
    assert!(copies.is_empty());
    assert_ne!(
        fate(&own, &TraceEnd::default()).kind,
        FateKind::Dropped,
        "nothing dropped it"
    );
}

#[test]
fn copies_get_their_own_journeys_in_order_and_know_their_original() {
    let mut promiscuous = entering();
    promiscuous.extend([
        at(15, "nf_forward", Some("first"), 2, 200),
        at(17, "netif_receive", None, 2, 100),
        dropped(19, 2, 100, "OTHERHOST"),
    ]);
    let later = vec![at(16, "netif_receive", None, 3, 500)];
    let out = separate(vec![promiscuous, later]);
    let firsts: Vec<u64> = out.iter().map(|(s, _)| s[0].ts_ns).collect();
    assert_eq!(firsts, [10, 16, 17]);
    assert_eq!(out[2].1.as_ref().map(|(of, _)| *of), Some(0));
    assert!(out[0].1.is_none() && out[1].1.is_none());
}

#[test]
fn generic_xdp_replacing_the_copys_skb_keeps_it_one_copy() {
    // --xdp on br0: XDP generic reallocated the passed-up skb (100 consumed, 300 freed as not
    // for this host); XDP's sighting has no skb.
    let mut path = entering();
    path.extend([
        at(15, "nf_forward", Some("first"), 2, 200),
        dropped(16, 4, 200, "NETFILTER_DROP"),
        at(17, "netif_receive", None, 2, 100),
        at(18, "xdp", None, 2, 0),
        at(19, "consume_skb", None, 2, 100),
        dropped(20, 2, 300, "OTHERHOST"),
    ]);
    let (own, copies) = split(path);
    assert_eq!(skbs(&own), [100, 100, 100, 100, 100, 200, 200]);
    assert_eq!(copies.len(), 1);
    assert_eq!(skbs(&copies[0].0), [100, 0, 100, 300]);
}

#[test]
fn a_packet_tc_mirrored_to_another_device_has_a_copy_there() {
    // tc on veth2 (ifindex 4) mirrors to ifindex 6 (skb 700) after the packet's tc egress;
    // the packet (skb 100) then leaves veth2.
    let mut path = entering();
    path.truncate(1);
    path[0].note = None;
    let plain = |ts, hook, position, ifindex, skb| {
        let mut s = at(ts, hook, position, ifindex, skb);
        s.note = None;
        s
    };
    path.extend([
        plain(11, "tc_egress", Some("last"), 4, 100),
        plain(12, "tc_egress", Some("first"), 6, 700),
        plain(13, "dev_xmit", Some("first"), 6, 700),
        plain(14, "dev_xmit", Some("first"), 4, 100),
    ]);
    let (own, copies) = split(path);
    assert_eq!(skbs(&own), [100, 100, 100]);
    assert_eq!(copies.len(), 1);
    assert_eq!(skbs(&copies[0].0), [700, 700]);
    assert!(
        copies[0].1.contains("mirrored to uplink"),
        "{}",
        copies[0].1
    );
}
