//! Journeys rebuilt from event streams recorded on the real kernel (tests/fixtures).

use std::path::Path;

use super::*;
use crate::cmd::explain::read_recording;

fn fixture(name: &str) -> Vec<Sighting> {
    read_recording(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture")
}

fn hooks(journey: &Journey) -> Vec<&str> {
    journey.sightings.iter().map(|s| s.hook.as_str()).collect()
}

#[test]
fn syn_dropped_at_local_in_ends_after_tc_ingress_with_netfilter_reason() {
    let journeys = build(fixture("local_in_syn_drop.jsonl"));
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
        assert_eq!(j.fate.hook.as_deref(), Some("tc_ingress"));
        assert_eq!(j.fate.reason.as_deref(), Some("NETFILTER_DROP"));
        assert!(
            j.fate.location.as_deref().is_some_and(|l| l.contains('+')),
            "symbolized: {:?}",
            j.fate.location
        );
        let captures = captures(j);
        let seen: Vec<(&str, &str, bool)> = captures
            .iter()
            .map(|c| (c.ifname.as_deref().unwrap(), c.dir, c.seen))
            .collect();
        assert_eq!(seen, [("va", "tx", true), ("vb", "rx", true)]);
    }
}

#[test]
fn pings_make_one_journey_per_request_and_per_reply() {
    let journeys = build(fixture("ping_delivered.jsonl"));
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
    s.hook = hook.to_string();
    s.reason = None;
    s.location = None;
    s
}

#[test]
fn same_headers_at_the_same_point_start_a_new_journey() {
    // A SYN-ACK resent with IP id 0 has the same fingerprint as the first copy.
    let journeys = build(vec![
        sighting(0, "tc_egress"),
        sighting(1_000, "dev_xmit"),
        sighting(2_000, "tc_egress"),
    ]);
    assert_eq!(journeys.len(), 2);
    assert_eq!(hooks(&journeys[0]), ["tc_egress", "dev_xmit"]);
}

#[test]
fn same_headers_long_after_start_a_new_journey() {
    let journeys = build(vec![
        sighting(0, "tc_egress"),
        sighting(SAME_PACKET_WINDOW_NS + 1, "dev_xmit"),
    ]);
    assert_eq!(journeys.len(), 2);
}

#[test]
fn unordered_input_is_sorted_by_time() {
    let journeys = build(vec![sighting(1_000, "dev_xmit"), sighting(0, "tc_egress")]);
    assert_eq!(hooks(&journeys[0]), ["tc_egress", "dev_xmit"]);
}
