//! Fates of receive paths ending in a free, on sightings taken from a real recording
//! (tests/fixtures/local_in_syn_drop.jsonl) and moved along the path.

use std::path::Path;

use super::*;
use crate::{model::drop_reason, model::recording};

fn base() -> Sighting {
    recording::read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/local_in_syn_drop.jsonl"),
    )
    .expect("fixture")
    .sightings
    .remove(0)
}

fn at(ts_ns: u64, hook: &str, position: Option<&str>) -> Sighting {
    let mut s = base();
    s.ts_ns = ts_ns;
    s.hook = tracer_common::hook::Hook::from_name(hook).expect("a hook name");
    s.position = Position::named(position);
    s.reason = None;
    s.location = None;
    s.note = None;
    s
}

fn free(ts_ns: u64, reason: &str, location: &str) -> Sighting {
    let mut s = at(ts_ns, "kfree_skb", None);
    s.reason = Some(reason.into());
    s.location = Some(location.into());
    s
}

/// tc ingress, PREROUTING, and LOCAL_IN up to `local_in` (`None`: not reached), then `end`.
fn received(local_in: Option<&str>, end: Sighting) -> Vec<Sighting> {
    let mut path = vec![
        at(1, "tc_ingress", Some("first")),
        at(2, "tc_ingress", Some("last")),
        at(3, "nf_prerouting", Some("first")),
        at(4, "nf_prerouting", Some("last")),
    ];
    if let Some(last) = local_in {
        path.push(at(5, "nf_local_in", Some("first")));
        if last == "last" {
            path.push(at(6, "nf_local_in", Some("last")));
        }
    }
    path.push(end);
    path
}

#[test]
fn data_tcp_already_had_past_local_in_is_delivered_with_what_tcp_did() {
    for reason in [
        "TCP_OLD_DATA",
        "TCP_OFOMERGE",
        "TCP_OFO_DROP",
        "QUEUE_PURGE",
    ] {
        let f = fate(
            &received(Some("last"), free(9, reason, "tcp_data_queue+0x1")),
            &TraceEnd::default(),
        );
        assert_eq!(f.kind, FateKind::Delivered, "{reason}");
        assert_eq!(f.point().as_deref(), Some("nf_local_in (last)"));
        assert_eq!(f.by.as_deref(), drop_reason::normal_end(reason));
        assert_eq!(f.reason, None);
    }
}

#[test]
fn a_normal_end_reason_before_local_in_is_not_taken_on_trust() {
    // Not seen past LOCAL_IN (a rule may have stopped it there): the reason alone does not
    // make it delivered.
    let f = fate(
        &received(Some("first"), free(9, "TCP_OLD_DATA", "tcp_data_queue+0x1")),
        &TraceEnd::default(),
    );
    assert_eq!(f.kind, FateKind::Dropped);
    assert_eq!(f.drop_reason(), Some("TCP_OLD_DATA"));
}

#[test]
fn real_drops_past_local_in_stay_drops() {
    for (reason, location) in [
        ("NO_SOCKET", "tcp_v4_rcv+0x1"),
        ("TCP_CSUM", "tcp_v4_rcv+0x1"),
        ("SOCKET_RCVBUFF", "udp_queue_rcv_one_skb+0x1"),
        ("NOT_SPECIFIED", "tcp_v4_rcv+0x1"),
    ] {
        let f = fate(
            &received(Some("last"), free(9, reason, location)),
            &TraceEnd::default(),
        );
        assert_eq!(f.kind, FateKind::Dropped, "{reason}");
        assert_eq!(f.drop_reason(), Some(reason));
    }
    let rule = fate(
        &received(Some("first"), free(9, "NETFILTER_DROP", "nft_do_chain+0x1")),
        &TraceEnd::default(),
    );
    assert_eq!(rule.kind, FateKind::Dropped);
}

#[test]
fn a_multicast_no_one_joined_is_ignored_not_dropped() {
    // An MLDv2 report to ff02::16 reaching a host that is no multicast router (6.18: freed
    // at ip6_mc_input+0x15e with no reason, right after PREROUTING).
    let f = fate(
        &received(None, free(9, "NOT_SPECIFIED", "ip6_mc_input+0x15e")),
        &TraceEnd::default(),
    );
    assert_eq!(f.kind, FateKind::Delivered);
    assert_eq!(f.point().as_deref(), Some("nf_prerouting (last)"));
    assert_eq!(f.by.as_deref(), Some(drop_reason::IGNORED_MULTICAST));
    // Elsewhere, the same unnamed free is a drop.
    let f = fate(
        &received(None, free(9, "NOT_SPECIFIED", "ip6_rcv_core+0x1")),
        &TraceEnd::default(),
    );
    assert_eq!(f.kind, FateKind::Dropped);
}

#[test]
fn mld_reports_recorded_on_6_18_are_ignored_multicasts() {
    // Two MLDv2 reports from a's new address to ff02::16, freed in b at ip6_mc_input; b's
    // kernel counted them in Ip6.InMcastPkts and discarded nothing (no Ip6.InDiscards).
    let sightings = recording::read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mld_report_ignored.jsonl"),
    )
    .expect("fixture")
    .sightings;
    let journeys = crate::analysis::journey::build(sightings, &TraceEnd::default());
    assert_eq!(journeys.len(), 2);
    for j in &journeys {
        assert_eq!(j.fate.kind, FateKind::Delivered);
        assert_eq!(j.fate.by.as_deref(), Some(drop_reason::IGNORED_MULTICAST));
    }
}

#[test]
fn a_drop_without_words_of_its_own_is_told_by_its_class() {
    let told = |reason: &str, location: &str| {
        let journeys = crate::analysis::journey::build(
            received(Some("last"), free(9, reason, location)),
            &TraceEnd::default(),
        );
        crate::report::explanation::words::drop_cause(&journeys[0])
    };
    assert_eq!(
        told("SOCKET_RCVBUFF", "udp_queue_rcv_one_skb+0x437"),
        "dropped because a queue, a buffer or memory was full after nf_local_in (last)"
    );
    assert_eq!(
        told("TCP_INVALID_SEQUENCE", "tcp_validate_incoming+0x1"),
        "dropped because it failed a check of its headers, checksum or protocol state after \
         nf_local_in (last)"
    );
    assert_eq!(
        told("NOT_SPECIFIED", "ip6_rcv_core+0x1"),
        "dropped by the kernel after nf_local_in (last)"
    );
}

#[test]
fn a_fate_is_written_with_names_as_the_json_contract_has_them() {
    let dropped = fate(
        &received(None, free(9, "NETFILTER_DROP", "nft_do_chain+0x1")),
        &TraceEnd::default(),
    );
    let json = serde_json::to_value(&dropped).unwrap();
    assert_eq!(json["hook"], "nf_prerouting");
    assert_eq!(json["position"], "last");
    assert_eq!(json["reason"], "NETFILTER_DROP");
    // Unseen after a point with one program: no position, and why the end is unknown.
    let unknown = fate(&[at(1, "xdp", None)], &TraceEnd::default());
    assert_eq!(unknown.unknown_reason(), Some(UnknownReason::EndNotSeen));
    let json = serde_json::to_value(&unknown).unwrap();
    assert_eq!(json["hook"], "xdp");
    assert!(json.get("position").is_none(), "{json}");
    assert_eq!(json["reason"], "end_not_seen");
    // Seen nowhere: no hook at all.
    let nowhere = serde_json::to_value(fate(&[], &TraceEnd::default())).unwrap();
    assert_eq!(nowhere["hook"], serde_json::Value::Null);
}

#[test]
fn a_veth_transmit_cut_short_by_lost_events_is_unknown_not_transmitted() {
    let mut sent = at(10, "dev_xmit", Some("last"));
    sent.peer = Some(std::sync::Arc::new(crate::kernel::veth::Peer {
        netns_name: "b".into(),
        ifname: "vb".into(),
    }));
    let path = vec![at(9, "dev_xmit", Some("first")), sent];
    let clean = TraceEnd::default();
    assert_eq!(fate(&path, &clean).kind, FateKind::Transmitted);
    // Events lost after it (or not kept, past --max-events): its peer's points may be among them.
    let lossy = TraceEnd {
        lost: 5,
        ..TraceEnd::default()
    };
    let cut = fate(&path, &lossy);
    assert_eq!(cut.kind, FateKind::Unknown);
    assert_eq!(cut.unknown_reason(), Some(UnknownReason::EventsLost));
    // Out of a device with no peer (a NIC), it left the machine whatever was lost.
    let mut nic = path.clone();
    nic[1].peer = None;
    assert_eq!(fate(&nic, &lossy).kind, FateKind::Transmitted);
}
