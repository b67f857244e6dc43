use super::*;
use crate::{
    analysis::capture::captures,
    analysis::fate::{fate, FateKind, TraceEnd},
    analysis::journey::Journey,
    model::sighting::port_note,
};
use tracer_common::hook::Position;

/// A sighting of the SYN 172.30.0.2 -> 172.30.0.3 in namespace 1, where veth1 and veth2 are
/// ports of br0 (ifindex 2).
pub(crate) fn at(
    ts_ns: u64,
    hook: &str,
    position: Option<&str>,
    ifindex: u32,
    skb: u64,
) -> Sighting {
    let ifname = match ifindex {
        2 => "br0",
        3 => "veth1",
        4 => "veth2",
        _ => "uplink",
    };
    let mut s: Sighting = serde_json::from_value(serde_json::json!({
        "ts_ns": ts_ns, "cpu": 0, "hook": hook, "netns": 1, "netns_name": "host",
        "ifindex": ifindex, "ifname": ifname, "skb": skb,
        "src": "172.30.0.2", "dst": "172.30.0.3", "proto": "tcp", "sport": 40000, "dport": 80,
        "tcp_flags": ["SYN"], "tcp_seq": 7, "tcp_ack": 0, "ip_id": 1, "len": 60, "ip_len": 60,
        "gso_segs": 1, "mark": 0, "icmp_type": 0, "icmp_code": 0
    }))
    .unwrap();
    s.position = Position::named(position);
    if matches!(ifindex, 3 | 4) && !s.is_drop() {
        s.note = Some(port_note("br0").into());
    }
    s
}

pub(crate) fn dropped(ts_ns: u64, ifindex: u32, skb: u64, reason: &str) -> Sighting {
    let mut s = at(ts_ns, "kfree_skb", None, ifindex, skb);
    s.reason = Some(reason.into());
    s.note = None;
    s
}

/// The frame received on veth1 and through br_netfilter's PREROUTING on br0.
pub(crate) fn entering() -> Vec<Sighting> {
    vec![
        at(10, "netif_receive", None, 3, 100),
        at(11, "tc_ingress", Some("first"), 3, 100),
        at(12, "tc_ingress", Some("last"), 3, 100),
        at(13, "nf_prerouting", Some("first"), 2, 100),
        at(14, "nf_prerouting", Some("last"), 2, 100),
    ]
}

#[test]
fn a_bridge_family_rule_at_forward_is_named_with_the_bridge_and_its_port() {
    let mut path = entering();
    path.extend([
        at(15, "nf_forward", Some("first"), 2, 100),
        at(16, "nf_forward", Some("last"), 2, 100),
        dropped(17, 4, 100, "NETFILTER_DROP"),
    ]);
    path[7].location = Some("nft_do_chain+0x3e8".into());
    let fate = fate(&path, &TraceEnd::default());
    assert_eq!(fate.kind, FateKind::Dropped);
    assert_eq!(
        fate.by.as_deref(),
        Some(
            "dropped inside bridge br0 (from port veth1 towards veth2) by an nftables \
             bridge-family rule in the bridge's own chains between iptables' FORWARD and \
             POSTROUTING (which br_netfilter runs for bridged frames)"
        )
    );
}

#[test]
fn without_br_netfilter_the_drop_is_placed_before_any_egress_port() {
    let path = vec![
        at(11, "tc_ingress", Some("first"), 3, 100),
        at(12, "tc_ingress", Some("last"), 3, 100),
        dropped(13, 3, 100, "NETFILTER_DROP"),
    ];
    let by = fate(&path, &TraceEnd::default()).by.unwrap();
    assert!(
        by.starts_with("dropped inside bridge br0 (from port veth1) by a bridge-family")
            && by.ends_with("(nftables bridge table or ebtables)"),
        "{by}"
    );
}

#[test]
fn a_port_that_does_not_forward_is_named_with_its_stp_state() {
    // Recorded on 6.18 with `bridge link set dev vethc1 state 0`.
    let mut drop = dropped(13, 3, 100, "BRIDGE_INGRESS_STP_STATE");
    drop.location = Some("br_handle_frame+0xff".into());
    let path = vec![
        at(11, "tc_ingress", Some("first"), 3, 100),
        at(12, "tc_ingress", Some("last"), 3, 100),
        drop,
    ];
    assert_eq!(
        fate(&path, &TraceEnd::default()).by.as_deref(),
        Some(
            "dropped by bridge br0 on arrival at its port veth1: the port does not forward \
             (its STP state is disabled, blocking, listening or learning)"
        )
    );
}

#[test]
fn an_iptables_rule_run_by_br_netfilter_is_named_as_such() {
    let mut path = entering();
    path.extend([
        at(15, "nf_forward", Some("first"), 2, 100),
        dropped(16, 2, 100, "NETFILTER_DROP"),
    ]);
    let by = fate(&path, &TraceEnd::default()).by.unwrap();
    assert!(by.starts_with("dropped inside bridge br0 (from port veth1) by an iptables"));
    assert!(
        by.contains("rule at FORWARD, which br_netfilter runs"),
        "{by}"
    );
}

#[test]
fn a_drop_after_the_host_routed_the_frame_elsewhere_is_not_the_bridges() {
    let mut path = entering();
    path.extend([
        at(15, "nf_forward", Some("first"), 5, 100),
        dropped(16, 5, 100, "NETFILTER_DROP"),
    ]);
    assert_eq!(fate(&path, &TraceEnd::default()).by, None);
}

#[test]
fn the_copy_passed_up_to_a_promiscuous_bridge_is_not_the_frames_fate() {
    // The clone (skb 200) is forwarded and dropped; the original goes up to br0 and dies there
    // as not for this host.
    let mut path = entering();
    path.extend([
        at(15, "nf_forward", Some("first"), 2, 200),
        dropped(16, 2, 200, "NETFILTER_DROP"),
        at(17, "netif_receive", None, 2, 100),
        at(18, "tc_ingress", Some("first"), 2, 100),
        dropped(19, 2, 100, "OTHERHOST"),
    ]);
    let fate = fate(&path, &TraceEnd::default());
    assert_eq!(fate.drop_reason(), Some("NETFILTER_DROP"));
    assert!(fate
        .by
        .unwrap()
        .contains("at FORWARD, which br_netfilter runs"));
}

#[test]
fn an_otherhost_drop_with_no_forwarded_clone_stays_the_fate() {
    let mut path = entering();
    path.extend([
        at(17, "netif_receive", None, 2, 100),
        dropped(19, 2, 100, "OTHERHOST"),
    ]);
    let fate = fate(&path, &TraceEnd::default());
    assert_eq!(fate.drop_reason(), Some("OTHERHOST"));
}

#[test]
fn br_netfilter_hooks_give_no_verdict_for_the_bridge_they_name() {
    let mut sightings = entering();
    sightings.extend([
        at(15, "nf_forward", Some("first"), 2, 100),
        at(16, "nf_postrouting", Some("last"), 2, 100),
        at(17, "tc_egress", Some("first"), 4, 100),
        at(18, "dev_xmit", Some("first"), 4, 100),
    ]);
    let journey = Journey {
        id: 1,
        fate: fate(&sightings, &TraceEnd::default()),
        sightings,
        flow_id: 0,
        incomplete: false,
        carried: None,
        copy: None,
    };
    let verdicts: Vec<(String, &str, bool)> = captures(&journey, &[])
        .into_iter()
        .map(|c| (c.ifname.unwrap().to_string(), c.dir, c.seen))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("veth1".to_string(), "rx", true),
            ("veth2".to_string(), "tx", true)
        ]
    );
}

#[test]
fn a_drop_on_the_port_the_frame_was_headed_for_is_a_transmit_verdict() {
    let mut sightings = entering();
    sightings.push(dropped(15, 4, 100, "NETFILTER_DROP"));
    let journey = Journey {
        id: 1,
        fate: fate(&sightings, &TraceEnd::default()),
        sightings,
        flow_id: 0,
        incomplete: false,
        carried: None,
        copy: None,
    };
    let verdicts: Vec<(String, &str, bool)> = captures(&journey, &[])
        .into_iter()
        .map(|c| (c.ifname.unwrap().to_string(), c.dir, c.seen))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("veth1".to_string(), "rx", true),
            ("veth2".to_string(), "tx", false)
        ]
    );
}

#[test]
fn clones_flooded_to_several_ports_stay_one_journey_with_copies() {
    let mut path = entering();
    path.extend([
        at(15, "nf_forward", Some("first"), 2, 200),
        at(16, "tc_egress", Some("first"), 4, 200),
        at(17, "dev_xmit", Some("first"), 4, 200),
        at(18, "nf_forward", Some("first"), 2, 300),
        at(19, "tc_egress", Some("first"), 3, 300),
    ]);
    let journeys = crate::analysis::journey::build(path, &TraceEnd::default());
    assert_eq!(journeys.len(), 2, "{journeys:#?}");
    assert_eq!(journeys[1].copy.as_ref().map(|c| c.of), Some(1));
}
