use super::{class, ignored_multicast, is_normal_end_words, normal_end, DropClass::*};

/// The drop reasons of 6.18 (`enum skb_drop_reason` in its BTF, without the prefix, MAX and
/// the subsystem mask).
const REASONS_6_18: &[&str] = &[
    "NOT_SPECIFIED",
    "NO_SOCKET",
    "SOCKET_CLOSE",
    "SOCKET_FILTER",
    "SOCKET_RCVBUFF",
    "UNIX_DISCONNECT",
    "UNIX_SKIP_OOB",
    "PKT_TOO_SMALL",
    "TCP_CSUM",
    "UDP_CSUM",
    "NETFILTER_DROP",
    "OTHERHOST",
    "IP_CSUM",
    "IP_INHDR",
    "IP_RPFILTER",
    "UNICAST_IN_L2_MULTICAST",
    "XFRM_POLICY",
    "IP_NOPROTO",
    "PROTO_MEM",
    "TCP_AUTH_HDR",
    "TCP_MD5NOTFOUND",
    "TCP_MD5UNEXPECTED",
    "TCP_MD5FAILURE",
    "TCP_AONOTFOUND",
    "TCP_AOUNEXPECTED",
    "TCP_AOKEYNOTFOUND",
    "TCP_AOFAILURE",
    "SOCKET_BACKLOG",
    "TCP_FLAGS",
    "TCP_ABORT_ON_DATA",
    "TCP_ZEROWINDOW",
    "TCP_OLD_DATA",
    "TCP_OVERWINDOW",
    "TCP_OFOMERGE",
    "TCP_RFC7323_PAWS",
    "TCP_RFC7323_PAWS_ACK",
    "TCP_RFC7323_TW_PAWS",
    "TCP_RFC7323_TSECR",
    "TCP_LISTEN_OVERFLOW",
    "TCP_OLD_SEQUENCE",
    "TCP_INVALID_SEQUENCE",
    "TCP_INVALID_END_SEQUENCE",
    "TCP_INVALID_ACK_SEQUENCE",
    "TCP_RESET",
    "TCP_INVALID_SYN",
    "TCP_CLOSE",
    "TCP_FASTOPEN",
    "TCP_OLD_ACK",
    "TCP_TOO_OLD_ACK",
    "TCP_ACK_UNSENT_DATA",
    "TCP_OFO_QUEUE_PRUNE",
    "TCP_OFO_DROP",
    "IP_OUTNOROUTES",
    "BPF_CGROUP_EGRESS",
    "IPV6DISABLED",
    "NEIGH_CREATEFAIL",
    "NEIGH_FAILED",
    "NEIGH_QUEUEFULL",
    "NEIGH_DEAD",
    "NEIGH_HH_FILLFAIL",
    "TC_EGRESS",
    "SECURITY_HOOK",
    "QDISC_DROP",
    "QDISC_OVERLIMIT",
    "QDISC_CONGESTED",
    "CAKE_FLOOD",
    "FQ_BAND_LIMIT",
    "FQ_HORIZON_LIMIT",
    "FQ_FLOW_LIMIT",
    "CPU_BACKLOG",
    "XDP",
    "TC_INGRESS",
    "UNHANDLED_PROTO",
    "SKB_CSUM",
    "SKB_GSO_SEG",
    "SKB_UCOPY_FAULT",
    "DEV_HDR",
    "DEV_READY",
    "FULL_RING",
    "NOMEM",
    "HDR_TRUNC",
    "TAP_FILTER",
    "TAP_TXFILTER",
    "ICMP_CSUM",
    "INVALID_PROTO",
    "IP_INADDRERRORS",
    "IP_INNOROUTES",
    "IP_LOCAL_SOURCE",
    "IP_INVALID_SOURCE",
    "IP_LOCALNET",
    "IP_INVALID_DEST",
    "PKT_TOO_BIG",
    "DUP_FRAG",
    "FRAG_REASM_TIMEOUT",
    "FRAG_TOO_FAR",
    "TCP_MINTTL",
    "IPV6_BAD_EXTHDR",
    "IPV6_NDISC_FRAG",
    "IPV6_NDISC_HOP_LIMIT",
    "IPV6_NDISC_BAD_CODE",
    "IPV6_NDISC_BAD_OPTIONS",
    "IPV6_NDISC_NS_OTHERHOST",
    "QUEUE_PURGE",
    "TC_COOKIE_ERROR",
    "PACKET_SOCK_ERROR",
    "TC_CHAIN_NOTFOUND",
    "TC_RECLASSIFY_LOOP",
    "VXLAN_INVALID_HDR",
    "VXLAN_VNI_NOT_FOUND",
    "MAC_INVALID_SOURCE",
    "VXLAN_ENTRY_EXISTS",
    "NO_TX_TARGET",
    "IP_TUNNEL_ECN",
    "TUNNEL_TXINFO",
    "LOCAL_MAC",
    "ARP_PVLAN_DISABLE",
    "MAC_IEEE_MAC_CONTROL",
    "BRIDGE_INGRESS_STP_STATE",
    "CAN_RX_INVALID_FRAME",
    "CANFD_RX_INVALID_FRAME",
    "CANXL_RX_INVALID_FRAME",
    "PFMEMALLOC",
    "DUALPI2_STEP_DROP",
    "PSP_INPUT",
    "PSP_OUTPUT",
    "RECURSION_LIMIT",
];

#[test]
fn every_reason_of_6_18_has_a_class_and_only_not_specified_says_nothing() {
    for reason in REASONS_6_18 {
        let expected_unspecified = *reason == "NOT_SPECIFIED";
        assert_eq!(
            class(reason) == Unspecified,
            expected_unspecified,
            "{reason} is {:?}",
            class(reason)
        );
    }
    assert_eq!(REASONS_6_18.len(), 126);
}

#[test]
fn a_reason_this_table_does_not_know_stays_a_drop_that_says_nothing() {
    assert_eq!(class("SOME_REASON_OF_A_NEWER_KERNEL"), Unspecified);
    assert_eq!(normal_end("SOME_REASON_OF_A_NEWER_KERNEL"), None);
}

#[test]
fn normal_ends_are_data_the_protocol_already_had_or_queues_freed_at_close() {
    for reason in [
        "QUEUE_PURGE",
        "TCP_OLD_DATA",
        "TCP_OFOMERGE",
        "TCP_OFO_DROP",
        "SOCKET_CLOSE",
    ] {
        assert_eq!(class(reason), NormalEnd, "{reason}");
        let words = normal_end(reason).expect("words for every normal end");
        assert!(is_normal_end_words(words), "{words}");
    }
    // Every reason of the class has words, and no other reason has.
    for reason in REASONS_6_18 {
        assert_eq!(
            class(reason) == NormalEnd,
            normal_end(reason).is_some(),
            "{reason}"
        );
    }
    assert!(!is_normal_end_words("answered by TCP (packet 3)"));
}

#[test]
fn policy_drops_are_rules_and_programs() {
    for reason in [
        "NETFILTER_DROP",
        "TC_INGRESS",
        "TC_EGRESS",
        "XDP",
        "IP_RPFILTER",
        "SOCKET_FILTER",
        "BPF_CGROUP_EGRESS",
        "XFRM_POLICY",
    ] {
        assert_eq!(class(reason), Policy, "{reason}");
    }
}

#[test]
fn no_receiver_drops_found_nobody_to_take_the_packet() {
    for reason in ["NO_SOCKET", "IP_NOPROTO", "UNHANDLED_PROTO", "OTHERHOST"] {
        assert_eq!(class(reason), NoReceiver, "{reason}");
    }
}

#[test]
fn resource_drops_are_full_queues_and_memory() {
    for reason in [
        "SOCKET_RCVBUFF",
        "PROTO_MEM",
        "SOCKET_BACKLOG",
        "QDISC_DROP",
        "CPU_BACKLOG",
        "NOMEM",
        "TCP_LISTEN_OVERFLOW",
    ] {
        assert_eq!(class(reason), Resource, "{reason}");
    }
}

#[test]
fn check_drops_are_packets_that_failed_a_check() {
    for reason in [
        "TCP_CSUM",
        "UDP_CSUM",
        "IP_CSUM",
        "IP_INHDR",
        "PKT_TOO_SMALL",
        "TCP_INVALID_SEQUENCE",
        "TCP_RFC7323_PAWS",
        "TCP_MD5FAILURE",
        "FRAG_REASM_TIMEOUT",
    ] {
        assert_eq!(class(reason), Check, "{reason}");
    }
}

#[test]
fn routing_drops_are_missing_routes_and_refused_addresses() {
    for reason in [
        "IP_OUTNOROUTES",
        "IP_INNOROUTES",
        "IP_INVALID_SOURCE",
        "PKT_TOO_BIG",
    ] {
        assert_eq!(class(reason), Routing, "{reason}");
    }
}

#[test]
fn neighbour_drops_are_link_layer_addresses_not_had() {
    for reason in [
        "NEIGH_FAILED",
        "NEIGH_QUEUEFULL",
        "NEIGH_DEAD",
        "NEIGH_CREATEFAIL",
    ] {
        assert_eq!(class(reason), Neighbour, "{reason}");
    }
}

#[test]
fn device_drops_are_devices_that_could_not_take_it() {
    for reason in ["DEV_READY", "NO_TX_TARGET", "RECURSION_LIMIT"] {
        assert_eq!(class(reason), Device, "{reason}");
    }
}

#[test]
fn not_specified_says_nothing() {
    assert_eq!(class("NOT_SPECIFIED"), Unspecified);
}

#[test]
fn only_ip6_mc_input_without_a_reason_is_an_ignored_multicast() {
    assert!(ignored_multicast(
        "NOT_SPECIFIED",
        Some("ip6_mc_input+0x15e")
    ));
    assert!(!ignored_multicast(
        "NOT_SPECIFIED",
        Some("ip6_input_finish+0x15e")
    ));
    assert!(!ignored_multicast("NOT_SPECIFIED", None));
    // A rule's drop there is still a drop.
    assert!(!ignored_multicast(
        "NETFILTER_DROP",
        Some("ip6_mc_input+0x15e")
    ));
}
