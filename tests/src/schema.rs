//! The JSON-lines contract (README "--format json"), checked field by field:
//! every record's fields have the documented types and values, nothing undocumented appears,
//! and the records agree with each other (ids, counts, sums).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

pub const SCHEMA_VERSION: u64 = 1;

const HOOKS: [&str; 17] = [
    "xdp",
    "netif_receive",
    "tc_ingress",
    "nf_prerouting",
    "nf_local_in",
    "nf_forward",
    "nf_local_out",
    "nf_postrouting",
    "tc_egress",
    "dev_xmit",
    "socket",
    "tcp",
    "kfree_skb",
    "consume_skb",
    "icmp_send",
    "fib_lookup",
    "unknown",
];
const FATES: [&str; 5] = [
    "delivered",
    "forwarded",
    "transmitted",
    "dropped",
    "unknown",
];
const TCP_FLAGS: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];

/// Checks every record; returns the `packet` records.
pub fn check_json(records: &[Value]) -> Vec<Value> {
    let mut packets = Vec::new();
    let mut flows = Vec::new();
    let mut stats = Vec::new();
    for record in records {
        let object = record.as_object().expect("every line is a JSON object");
        assert_eq!(
            object["schema_version"].as_u64(),
            Some(SCHEMA_VERSION),
            "{record}"
        );
        match object["type"].as_str() {
            Some("packet") => packets.push(record.clone()),
            Some("flow") => flows.push(record.clone()),
            Some("stats") => stats.push(record.clone()),
            other => panic!("unknown record type {other:?}"),
        }
    }
    assert!(!packets.is_empty(), "no packet records");
    assert_eq!(stats.len(), 1, "one stats record");
    for (n, packet) in packets.iter().enumerate() {
        check_packet(packet, n as u64 + 1, &flows);
    }
    for flow in &flows {
        check_flow(flow, &packets);
    }
    check_stats(&stats[0]);
    packets
}

fn keys(object: &Map<String, Value>, required: &[&str], optional: &[&str], what: &str) {
    let have: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    for key in required {
        assert!(have.contains(key), "{what} lacks `{key}`: {object:?}");
    }
    for key in &have {
        assert!(
            required.contains(key) || optional.contains(key),
            "{what} has the undocumented field `{key}`"
        );
    }
}

fn string_or_null(value: &Value, what: &str) {
    assert!(value.is_string() || value.is_null(), "{what}: {value}");
}

fn port(value: &Value, what: &str) {
    assert!(
        value.as_u64().is_some_and(|p| p <= 65535),
        "{what} is not a port: {value}"
    );
}

fn check_packet(packet: &Value, id: u64, flows: &[Value]) {
    let object = packet.as_object().unwrap();
    keys(
        object,
        &[
            "type",
            "schema_version",
            "id",
            "flow_id",
            "src",
            "dst",
            "proto",
            "sport",
            "dport",
            "tcp_flags",
            "ip_id",
            "tcp_seq",
            "len",
            "path",
            "fate",
            "capture",
            "explanation",
        ],
        &[
            "retransmission_of",
            "icmp_type",
            "icmp_code",
            "gso_segs",
            "incomplete",
            "rules",
            "copy_of",
            "copy",
        ],
        "packet",
    );
    if let Some(original) = packet["copy_of"].as_u64() {
        assert!(
            original < id && packet["copy"].is_string(),
            "packet {id}: a copy names its earlier original and what made it"
        );
    }
    assert_eq!(packet["id"].as_u64(), Some(id), "packet ids are 1, 2, ...");
    match packet["flow_id"].as_u64() {
        Some(flow) => assert!(
            flows.iter().any(|f| f["id"].as_u64() == Some(flow)),
            "packet {id}: flow {flow} has no record"
        ),
        None => assert!(packet["flow_id"].is_null()),
    }
    for address in ["src", "dst"] {
        if let Some(text) = packet[address].as_str() {
            text.parse::<std::net::IpAddr>()
                .unwrap_or_else(|_| panic!("packet {id}: {address} {text} is not an address"));
        } else {
            assert!(packet[address].is_null());
        }
    }
    let proto = packet["proto"].as_str().expect("proto is a string");
    assert!(
        ["tcp", "udp", "icmp", "icmpv6", "unknown"].contains(&proto)
            || proto.starts_with("ip-proto-")
            || proto.starts_with("ethertype-"),
        "packet {id}: proto {proto}"
    );
    port(&packet["sport"], "sport");
    port(&packet["dport"], "dport");
    for flag in packet["tcp_flags"].as_array().expect("tcp_flags is a list") {
        assert!(
            TCP_FLAGS.contains(&flag.as_str().unwrap_or_default()),
            "{flag}"
        );
    }
    for number in ["ip_id", "tcp_seq", "len"] {
        assert!(packet[number].is_u64(), "packet {id}: {number}");
    }
    if proto.starts_with("icmp") {
        assert!(packet["icmp_type"].as_u64().is_some_and(|t| t < 256));
    }
    let path = packet["path"].as_array().expect("path is a list");
    assert!(!path.is_empty(), "packet {id} has an empty path");
    let mut last_ts = 0;
    for point in path {
        last_ts = check_point(point, last_ts);
    }
    check_fate(&packet["fate"], &format!("packet {id}"));
    for capture in packet["capture"].as_array().expect("capture is a list") {
        let object = capture.as_object().expect("capture entry");
        keys(
            object,
            &["netns_name", "ifname", "dir", "seen"],
            &["live", "peer"],
            "capture",
        );
        string_or_null(&capture["netns_name"], "capture netns_name");
        string_or_null(&capture["ifname"], "capture ifname");
        if let Some(peer) = capture.get("peer") {
            check_peer(peer);
        }
        assert!(
            matches!(capture["dir"].as_str(), Some("rx" | "tx")),
            "{capture}"
        );
        assert!(capture["seen"].is_boolean());
    }
    sentences(&packet["explanation"], &format!("packet {id}"));
    if let Some(rules) = packet.get("rules") {
        check_rules(rules, packet, id);
    }
}

/// The rules whose counters rose where netfilter dropped the packet.
fn check_rules(rules: &Value, packet: &Value, id: u64) {
    assert_eq!(
        packet["fate"]["reason"].as_str(),
        Some("NETFILTER_DROP"),
        "packet {id}: rules named for a packet netfilter did not drop"
    );
    let rules = rules.as_array().expect("rules is a list");
    assert!(!rules.is_empty(), "packet {id}: an empty rules list");
    for rule in rules {
        let object = rule.as_object().expect("rule entry");
        keys(
            object,
            &[
                "source", "family", "table", "chain", "hooks", "id", "text", "rose",
            ],
            &[],
            "rule",
        );
        assert!(
            matches!(
                rule["source"].as_str(),
                Some("nftables" | "iptables" | "iptables-legacy")
            ),
            "{rule}"
        );
        assert!(rule["rose"].as_u64().is_some_and(|n| n > 0), "{rule}");
        assert!(rule["id"].is_u64() && rule["text"].is_string(), "{rule}");
    }
}

/// A veth's other end: the namespace's name and the interface's, both given.
fn check_peer(peer: &Value) {
    let object = peer.as_object().expect("peer is an object");
    keys(object, &["netns_name", "ifname"], &[], "peer");
    for key in ["netns_name", "ifname"] {
        assert!(
            peer[key].as_str().is_some_and(|s| !s.is_empty()),
            "peer {key}: {peer}"
        );
    }
}

/// Checks one path entry; returns its timestamp (entries are in time order).
fn check_point(point: &Value, after: u64) -> u64 {
    let object = point.as_object().expect("path entry");
    keys(
        object,
        &["ts_ns", "hook", "netns", "netns_name", "ifname", "dir"],
        &["position", "note", "peer"],
        "path entry",
    );
    if let Some(peer) = point.get("peer") {
        check_peer(peer);
    }
    let ts = point["ts_ns"].as_u64().expect("ts_ns");
    assert!(ts >= after, "path out of time order");
    assert!(
        HOOKS.contains(&point["hook"].as_str().unwrap_or_default()),
        "{point}"
    );
    assert!(point["netns"].is_u64());
    string_or_null(&point["netns_name"], "netns_name");
    string_or_null(&point["ifname"], "ifname");
    assert!(
        matches!(point["dir"].as_str(), Some("rx" | "tx" | "-")),
        "{point}"
    );
    if let Some(position) = point.get("position") {
        assert!(
            matches!(position.as_str(), Some("first" | "last")),
            "{point}"
        );
    }
    ts
}

fn check_fate(fate: &Value, what: &str) {
    let object = fate.as_object().unwrap_or_else(|| panic!("{what}: fate"));
    keys(
        object,
        &["kind", "hook", "reason", "location"],
        &["position", "netns_name", "ifname", "by"],
        "fate",
    );
    let kind = fate["kind"].as_str().unwrap_or_default();
    assert!(FATES.contains(&kind), "{what}: fate {kind}");
    for field in ["hook", "reason", "location"] {
        string_or_null(&fate[field], field);
    }
    if kind == "dropped" {
        assert!(fate["hook"].is_string(), "{what}: a drop names its point");
    }
}

fn sentences(value: &Value, what: &str) {
    let list = value
        .as_array()
        .unwrap_or_else(|| panic!("{what}: explanation"));
    assert!(!list.is_empty(), "{what} has no explanation");
    for sentence in list {
        assert!(
            sentence.as_str().is_some_and(|s| s.ends_with('.')),
            "{what}: not a sentence: {sentence}"
        );
    }
}

fn check_flow(flow: &Value, packets: &[Value]) {
    let object = flow.as_object().unwrap();
    keys(
        object,
        &[
            "type",
            "schema_version",
            "id",
            "proto",
            "client",
            "server",
            "packets",
            "fates",
            "diverge",
            "packet_ids",
            "explanation",
        ],
        &[
            "nat",
            "incomplete_packets",
            "copy_ids",
            "packets_not_listed",
        ],
        "flow",
    );
    for copy in flow["copy_ids"].as_array().into_iter().flatten() {
        let copy = packets
            .iter()
            .find(|p| p["id"] == *copy)
            .unwrap_or_else(|| panic!("flow {}: copy {copy} has no record", flow["id"]));
        assert_eq!(copy["flow_id"], flow["id"]);
        assert!(copy["copy_of"].is_u64(), "a flow's copy is a copy");
    }
    let id = flow["id"].as_u64().expect("flow id");
    let ids: Vec<u64> = flow["packet_ids"]
        .as_array()
        .expect("packet_ids")
        .iter()
        .map(|v| v.as_u64().expect("packet id"))
        .collect();
    // A streamed flow lists the packets it kept and counts the others.
    let not_listed = flow["packets_not_listed"].as_u64().unwrap_or(0);
    assert_eq!(
        flow["packets"].as_u64(),
        Some(ids.len() as u64 + not_listed),
        "flow {id}"
    );
    for packet_id in &ids {
        let packet = packets
            .iter()
            .find(|p| p["id"].as_u64() == Some(*packet_id))
            .unwrap_or_else(|| panic!("flow {id}: packet {packet_id} has no record"));
        assert_eq!(packet["flow_id"].as_u64(), Some(id));
    }
    let fates = flow["fates"].as_object().expect("fates");
    let mut total = 0;
    for (kind, count) in fates {
        assert!(FATES.contains(&kind.as_str()), "flow {id}: fate {kind}");
        total += count.as_u64().expect("fate count");
    }
    assert_eq!(
        total,
        ids.len() as u64 + not_listed,
        "flow {id}: fates add up to its packets"
    );
    if !flow["diverge"].is_null() {
        check_fate(&flow["diverge"], &format!("flow {id} diverge"));
    }
    for side in ["client", "server"] {
        assert!(flow[side].is_string(), "flow {id}: {side}");
    }
    sentences(&flow["explanation"], &format!("flow {id}"));
}

fn check_stats(stats: &Value) {
    let object = stats.as_object().unwrap();
    keys(
        object,
        &[
            "type",
            "schema_version",
            "events",
            "lost",
            "lost_total",
            "lost_per_cpu",
            "missed",
            "missed_total",
            "undecodable",
            "not_kept",
            "incomplete_packets",
            "incomplete_flows",
            "duration_ns",
            "counters",
            "counter_checks",
        ],
        &["flows_ended_early", "journeys_cut_short", "after_end"],
        "stats",
    );
    for (hook, count) in stats["events"].as_object().expect("events") {
        assert!(HOOKS.contains(&hook.as_str()), "stats: hook {hook}");
        assert!(count.is_u64());
    }
    let sum = |key: &str| -> u64 {
        let counts = stats[key].as_object();
        let counts = counts.unwrap_or_else(|| panic!("stats: {key} is an object"));
        counts.values().map(|v| v.as_u64().expect("a count")).sum()
    };
    let lost = sum("lost");
    assert_eq!(stats["lost_total"].as_u64(), Some(lost));
    let per_cpu = sum("lost_per_cpu");
    assert_eq!(
        per_cpu, lost,
        "stats: lost per CPU and per hook add up to the same"
    );
    let missed = sum("missed");
    assert_eq!(stats["missed_total"].as_u64(), Some(missed));
    for hook in stats["missed"].as_object().unwrap().keys() {
        // "netfilter": the trampolines that stand in for the five hooks before Linux 6.4.
        let known = HOOKS.contains(&hook.as_str()) || hook == "netfilter";
        assert!(known, "stats: missed at {hook}");
    }
    for key in ["incomplete_packets", "incomplete_flows"] {
        assert!(stats[key].is_u64(), "stats: {key}");
    }
    assert_eq!(stats["undecodable"].as_u64(), Some(0));
    assert!(stats["not_kept"].is_u64(), "stats: not_kept");
    assert!(stats["duration_ns"].as_u64().is_some_and(|d| d > 0));
    for counters in stats["counters"].as_array().expect("counters") {
        assert!(counters["netns_name"].is_string());
        assert!(counters["delta"].is_object());
    }
    for sentence in stats["counter_checks"].as_array().expect("counter_checks") {
        assert!(sentence.is_string());
    }
}
