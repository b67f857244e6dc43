//! Journeys rebuilt from event streams recorded on the real kernel (tests/fixtures).

use std::path::Path;

use super::link::SAME_PACKET_WINDOW_NS;
use super::*;
use crate::{
    analysis::capture::captures,
    analysis::fate::{FateKind, UnknownReason},
    model::recording,
};

fn fixture(name: &str) -> Vec<Sighting> {
    recording::read(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture")
    .sightings
}

fn build_all(sightings: Vec<Sighting>) -> Vec<Journey> {
    build(sightings, &TraceEnd::default())
}

fn hooks(journey: &Journey) -> Vec<&str> {
    journey.sightings.iter().map(|s| s.hook.name()).collect()
}

#[test]
fn syn_dropped_at_local_in_ends_after_tc_ingress_with_netfilter_reason() {
    let journeys = build_all(fixture("local_in_syn_drop.jsonl"));
    // The client sent the SYN and two retransmissions: three packets, not one.
    assert_eq!(journeys.len(), 3);
    for j in &journeys {
        assert_eq!(
            hooks(j),
            [
                "tc_egress",
                "dev_xmit",
                "xdp",
                "netif_receive",
                "tc_ingress",
                "kfree_skb"
            ]
        );
        assert_eq!(j.fate.kind, FateKind::Dropped);
        assert_eq!(j.fate.hook, Some(Hook::TcIngress));
        assert_eq!(j.fate.drop_reason(), Some("NETFILTER_DROP"));
        assert!(
            j.fate.location.as_deref().is_some_and(|l| l.contains('+')),
            "symbolized: {:?}",
            j.fate.location
        );
        let captures = captures(j, &[]);
        let seen: Vec<(&str, &str, bool)> = captures
            .iter()
            .map(|c| (c.ifname.as_deref().unwrap(), c.dir, c.seen))
            .collect();
        assert_eq!(seen, [("va", "tx", true), ("vb", "rx", true)]);
    }
}

#[test]
fn pings_make_one_journey_per_request_and_per_reply() {
    let journeys = build_all(fixture("ping_delivered.jsonl"));
    let requests: Vec<&Journey> = journeys
        .iter()
        .filter(|j| j.sightings[0].icmp_type == 8)
        .collect();
    let replies: Vec<&Journey> = journeys
        .iter()
        .filter(|j| j.sightings[0].icmp_type == 0)
        .collect();
    assert_eq!((requests.len(), replies.len(), journeys.len()), (2, 2, 4));
    for request in requests {
        assert_eq!(
            hooks(request),
            [
                "tc_egress",
                "dev_xmit",
                "xdp",
                "netif_receive",
                "tc_ingress"
            ]
        );
        assert_eq!(request.fate.kind, FateKind::Unknown);
    }
}

fn sighting(ts_ns: u64, hook: &str) -> Sighting {
    let mut s = fixture("local_in_syn_drop.jsonl").remove(0);
    s.ts_ns = ts_ns;
    s.hook = tracer_common::hook::Hook::from_name(hook).expect("a hook name");
    s.reason = None;
    s.location = None;
    s
}

#[test]
fn same_headers_at_the_same_point_start_a_new_journey() {
    // A SYN-ACK resent with IP id 0 has the same fingerprint as the first copy.
    let journeys = build_all(vec![
        sighting(0, "tc_egress"),
        sighting(1_000, "dev_xmit"),
        sighting(2_000, "tc_egress"),
    ]);
    assert_eq!(journeys.len(), 2);
    assert_eq!(hooks(&journeys[0]), ["tc_egress", "dev_xmit"]);
}

#[test]
fn same_headers_long_after_in_another_skb_start_a_new_journey() {
    let mut later = sighting(SAME_PACKET_WINDOW_NS + 1, "dev_xmit");
    later.skb ^= 0x1000;
    let journeys = build_all(vec![sighting(0, "tc_egress"), later]);
    assert_eq!(journeys.len(), 2);
}

#[test]
fn a_packet_held_in_its_skb_keeps_its_journey_however_long_it_waits() {
    // A qdisc delaying it, or a neighbour queue waiting for the link-layer address.
    let journeys = build_all(vec![
        sighting(0, "tc_egress"),
        sighting(3 * SAME_PACKET_WINDOW_NS, "dev_xmit"),
    ]);
    assert_eq!(journeys.len(), 1);
}

#[test]
fn an_unanswered_neighbour_is_one_journey_that_ends_neigh_failed() {
    // A datagram to an on-link address nobody answers ARP for (recorded on 6.18): queued
    // after POSTROUTING, cloned for each of three ARP probes (clones freed), then dropped
    // three seconds later.
    let journeys = build_all(fixture("neigh_failed.jsonl"));
    assert_eq!(journeys.len(), 1, "{journeys:#?}");
    let fate = &journeys[0].fate;
    assert_eq!(fate.kind, FateKind::Dropped);
    assert_eq!(fate.drop_reason(), Some("NEIGH_FAILED"));
    assert_eq!(fate.point().as_deref(), Some("nf_postrouting (last)"));
}

#[test]
fn unordered_input_is_sorted_by_time() {
    let journeys = build_all(vec![sighting(1_000, "dev_xmit"), sighting(0, "tc_egress")]);
    assert_eq!(hooks(&journeys[0]), ["tc_egress", "dev_xmit"]);
}

#[test]
fn a_nat_rewrite_stays_in_the_journey_of_its_skb() {
    let before = sighting(0, "nf_prerouting");
    let mut after = sighting(1_000, "nf_local_in");
    after.dst = Some("10.9.9.9".parse().unwrap());
    after.dport = 8443;
    let journeys = build_all(vec![before, after]);
    assert_eq!(journeys.len(), 1);
    assert_eq!(hooks(&journeys[0]), ["nf_prerouting", "nf_local_in"]);
}

#[test]
fn a_reused_skb_address_does_not_join_another_packet() {
    let first = sighting(0, "tc_egress");
    let mut other = sighting(1_000, "tc_ingress");
    other.dst = Some("10.9.9.9".parse().unwrap());
    other.ip_id += 1;
    assert_eq!(build_all(vec![first, other]).len(), 2);
}

#[test]
fn an_event_with_only_the_skb_joins_its_packet_until_the_skb_is_freed() {
    let start = sighting(0, "dev_xmit");
    let mut done = sighting(1_000, "dev_xmit");
    done.position = tracer_common::hook::Position::Last;
    done.proto = Proto::Unknown;
    done.src = None;
    done.dst = None;
    let mut freed = sighting(2_000, "consume_skb");
    freed.position = tracer_common::hook::Position::Only;
    let mut reused = done.clone();
    reused.ts_ns = 3_000;
    let journeys = build_all(vec![start, done, freed, reused]);
    assert_eq!(hooks(&journeys[0]), ["dev_xmit", "dev_xmit", "consume_skb"]);
    // After the free, the address belongs to another packet: with no headers to show which,
    // its event is left out rather than made a packet of its own.
    assert_eq!(journeys.len(), 1);
}

#[test]
fn a_route_lookup_joins_the_packet_its_cpu_was_handling() {
    let mut lookup = sighting(1_500, "fib_lookup");
    lookup.src = Some("0.0.0.0".parse().unwrap());
    lookup.skb = 0;
    lookup.note = Some("route found in table 254".into());
    let mut elsewhere = lookup.clone();
    elsewhere.cpu += 1;
    elsewhere.note = Some("no route in table 254 (error -101)".into());
    let mut unrelated = lookup.clone();
    unrelated.cpu += 2;
    let journeys = build_all(vec![
        sighting(1_000, "nf_local_out"),
        lookup,
        sighting(2_000, "nf_postrouting"),
        elsewhere,
        unrelated,
    ]);
    assert_eq!(
        hooks(&journeys[0]),
        ["nf_local_out", "fib_lookup", "nf_postrouting"]
    );
    assert_eq!(
        journeys.len(),
        2,
        "another CPU's lookup is another packet's"
    );
}

#[test]
fn a_gso_packet_cut_after_tc_egress_is_segmented_not_lost() {
    let mut egress = sighting(0, "tc_egress");
    egress.position = tracer_common::hook::Position::Last;
    egress.gso_segs = 5;
    let mut consumed = sighting(1_000, "consume_skb");
    consumed.gso_segs = 5;
    let journeys = build_all(vec![egress, consumed]);
    assert_eq!(journeys[0].fate.kind, FateKind::Unknown);
    assert_eq!(
        journeys[0].fate.unknown_reason(),
        Some(UnknownReason::Segmented)
    );

    // The same packet without GSO, freed there: nothing says it was cut.
    let plain = build_all(vec![
        sighting(0, "tc_egress"),
        sighting(1_000, "consume_skb"),
    ]);
    assert_ne!(
        plain[0].fate.unknown_reason(),
        Some(UnknownReason::Segmented)
    );
}

#[test]
fn a_drop_no_point_saw_before_names_the_drop_itself() {
    // As a frame a packet socket hands straight to a driver that refuses it.
    let only_drops: Vec<Sighting> = fixture("local_in_syn_drop.jsonl")
        .into_iter()
        .filter(Sighting::is_drop)
        .collect();
    let journeys = build_all(only_drops);
    assert_eq!(journeys.len(), 3);
    for j in &journeys {
        assert_eq!(j.fate.kind, FateKind::Dropped);
        assert_eq!(j.fate.point().as_deref(), Some("kfree_skb"));
        assert_eq!(
            crate::report::explanation::words::drop_cause(j),
            "dropped by a netfilter rule before any observation point saw it"
        );
    }
}

#[test]
fn a_rule_drop_at_a_hook_the_kernel_does_not_show_is_not_placed() {
    // A kernel without netfilter points: the same SYN, its netfilter sightings gone.
    let sightings: Vec<_> = fixture("local_in_syn_drop.jsonl")
        .into_iter()
        .filter(|s| !s.hook.is_netfilter())
        .collect();
    let end = TraceEnd {
        partial_hooks: vec!["nf_local_in".to_string()],
        ..TraceEnd::default()
    };
    let journeys = build(sightings.clone(), &end);
    let fate = &journeys[0].fate;
    assert_eq!(fate.kind, FateKind::Dropped);
    let by = fate.by.as_deref().unwrap_or_default();
    assert!(
        by.starts_with("dropped by a netfilter rule after ") && by.contains("does not let"),
        "{by}"
    );
    // Where netfilter is fully seen, no such words: the drop is placed by its sightings.
    assert_eq!(build_all(sightings)[0].fate.by, None);
}

/// A VXLAN overlay (recorded on 6.18, filter `tcp port 8080`): the SYN is followed through
/// encapsulation on tn-a/vxlan0, across the underlay (ua -> ub) in its outer headers, to the
/// iptables INPUT rule in tn-b that drops the UDP datagram.
#[test]
fn a_syn_in_a_tunnel_keeps_its_journey_across_the_underlay_to_its_drop() {
    let journeys = build_all(fixture("vxlan_underlay_drop.jsonl"));
    let syns: Vec<&Journey> = journeys
        .iter()
        .filter(|j| j.headers().tcp_flags == ["SYN"])
        .collect();
    assert_eq!(syns.len(), 2, "the SYN and its retransmission");
    for j in syns {
        assert_eq!(j.headers().ifname.as_deref(), Some("vxlan0"));
        assert_eq!(j.headers().dport, 8080, "described by the inner packet");
        let places: Vec<(&str, bool)> = j
            .sightings
            .iter()
            .filter(|s| s.on_path())
            .map(|s| (s.ifname.as_deref().unwrap_or("?"), s.tunnel.is_some()))
            .collect();
        assert!(places.contains(&("vxlan0", false)), "{places:?}");
        assert!(places.contains(&("ua", true)), "{places:?}");
        assert!(places.contains(&("ub", true)), "{places:?}");
        assert_eq!(j.fate.kind, FateKind::Dropped);
        assert_eq!(j.fate.point().as_deref(), Some("nf_local_in (first)"));
        assert_eq!(j.fate.netns_name.as_deref(), Some("tn-b"));
        let found = captures(j, &[]);
        let verdicts: Vec<(&str, &str, bool, bool)> = found
            .iter()
            .map(|c| {
                (
                    c.ifname.as_deref().unwrap(),
                    c.dir,
                    c.seen,
                    c.encapsulated.is_some(),
                )
            })
            .collect();
        assert_eq!(
            verdicts,
            [
                ("vxlan0", "tx", true, false),
                ("ua", "tx", true, true),
                ("ub", "rx", true, true)
            ]
        );
    }
}
