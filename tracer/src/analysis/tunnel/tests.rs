use super::*;
use crate::analysis::journey::Journey;
use crate::report::explanation::tunnel_words::outer_filter;
use crate::{analysis::fate::TraceEnd, analysis::journey, model::recording, report::explanation};
use tracer_common::hook::Hook;

fn fixture() -> Vec<Journey> {
    recorded("vxlan_underlay_drop.jsonl")
}

fn recorded(name: &str) -> Vec<Journey> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let sightings = recording::read(&path).expect("fixture").sightings;
    journey::build(sightings, &TraceEnd::default())
}

#[test]
fn the_outer_packet_is_named_with_its_tunnel() {
    let journeys = fixture();
    let outer = journeys
        .iter()
        .flat_map(|j| &j.sightings)
        .find(|s| s.tunnel.is_some() && s.hook == Hook::DevXmit)
        .expect("an outer sighting");
    assert_eq!(
        path_note(outer).as_deref(),
        Some("VXLAN VNI 42 10.77.0.1 > 10.77.0.2")
    );
    let words = outer_words(outer).expect("words");
    assert!(
        words.starts_with("the encapsulated datagram 10.77.0.1:")
            && words.ends_with(" > 10.77.0.2:4789 (VXLAN VNI 42)"),
        "{words}"
    );
    let carried = inner(outer);
    assert_eq!((carried.proto, carried.dport), (Proto::Tcp, 8080));
}

#[test]
fn a_drop_of_the_outer_packet_is_told_as_a_drop_in_the_underlay() {
    let journeys = fixture();
    let syn = journeys
        .iter()
        .find(|j| j.headers().tcp_flags == ["SYN"])
        .expect("the SYN");
    let fate = explanation::short_fate(syn);
    assert!(
        fate.starts_with("dropped in the underlay, as the encapsulated datagram 10.77.0.1:")
            && fate.contains("(VXLAN VNI 42), by a netfilter rule at LOCAL_IN (iptables INPUT) in namespace tn-b"),
        "{fate}"
    );
}

#[test]
fn outer_filters_follow_the_tunnel_kind() {
    assert_eq!(
        outer_filter("the encapsulated datagram a:1 > b:4789 (VXLAN VNI 1)"),
        "udp port 4789"
    );
    assert_eq!(
        outer_filter("the encapsulated datagram a:1 > b:8472 (VXLAN VNI 1)"),
        "udp port 8472"
    );
    assert_eq!(
        outer_filter("the encapsulated packet a > b (GRE key 3)"),
        "proto gre"
    );
}

/// Only the receiver traced (recorded on 6.18, filter `tcp port 8080`): the datagrams arrive
/// unfollowed and are reported because the SYN inside matches; each journey is the SYN's.
#[test]
fn a_trace_of_the_receiver_alone_tells_the_packet_inside() {
    let journeys = recorded("vxlan_receiver_only.jsonl");
    assert!(journeys.len() >= 2, "the SYN and a retransmission");
    for j in &journeys {
        assert!(j
            .sightings
            .iter()
            .filter(|s| s.on_path())
            .all(|s| s.tunnel.is_some()));
        let h = j.headers();
        assert_eq!(
            (h.proto, h.dport, h.tcp_flags),
            (
                Proto::Tcp,
                8080,
                crate::model::tcp_flags::TcpFlags::from_names(&["SYN"]).unwrap()
            )
        );
        assert!(explanation::short_fate(j).starts_with("dropped in the underlay"));
    }
}
