//! A netfilter drop names the rule that did it: the drop rules at that hook whose counters rose
//! during the trace, read from the live ruleset (nftables, iptables-nft) without changing it.

use std::time::Duration;

use serde_json::Value;
use tests::{require_privileges, Netns, Pair, Routed, Tracer, ADDR_A, ADDR_B, ROUTED_A, ROUTED_B};

/// Pings `dst` from `from` twice (the fault drops them) while tracing `namespaces`; returns the
/// journeys of the echo requests, each checked to be a netfilter drop.
fn dropped_requests(namespaces: &[&Netns], from: &Netns, src: &str, dst: &str) -> Vec<Value> {
    let mut args = Vec::new();
    for ns in namespaces {
        args.extend(["-n", ns.name.as_str()]);
    }
    args.push("icmp");
    let tracer = Tracer::start(&args);
    let out = from.run(&format!("ping -c 2 -i 0.3 -W 1 {dst}"));
    assert!(
        !out.status.success(),
        "the rule should have dropped the pings"
    );
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    let requests: Vec<Value> = report
        .packets()
        .filter(|p| p["src"] == src && p["icmp_type"] == 8)
        .cloned()
        .collect();
    assert!(requests.len() >= 2, "two echo requests: {requests:#?}");
    for request in &requests {
        assert_eq!(request["fate"]["reason"], "NETFILTER_DROP", "{request}");
    }
    requests
}

fn explanation(request: &Value) -> String {
    request["explanation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn an_nftables_rule_with_a_counter_is_named_by_table_chain_and_handle() {
    require_privileges();
    let pair = Pair::create();
    pair.b.sh("nft add table inet guard");
    pair.b
        .sh("nft add chain inet guard input { type filter hook input priority 0 ; }");
    // A drop rule that never matches, and one that does: only the one that counted is named.
    pair.b
        .sh("nft add rule inet guard input tcp dport 9 counter drop");
    pair.b
        .sh("nft add rule inet guard input icmp type echo-request counter drop");
    let handle = pair.b.sh("nft -a list chain inet guard input");
    let handle: u64 = handle
        .lines()
        .find(|l| l.contains("echo-request"))
        .and_then(|l| l.rsplit("# handle ").next())
        .and_then(|h| h.trim().parse().ok())
        .expect("the rule's handle");
    for request in dropped_requests(&[&pair.a, &pair.b], &pair.a, ADDR_A, ADDR_B) {
        let rules = request["rules"].as_array().expect("rules named");
        assert_eq!(rules.len(), 1, "{request}");
        let rule = &rules[0];
        assert_eq!(rule["source"], "nftables");
        assert_eq!(rule["family"], "inet");
        assert_eq!(rule["table"], "guard");
        assert_eq!(rule["chain"], "input");
        assert_eq!(rule["id"], handle);
        assert_eq!(rule["text"], "icmp type echo-request drop");
        assert!(rule["rose"].as_u64().unwrap() >= 2, "{rule}");
        let said = explanation(&request);
        assert!(
            said.contains("The rule that dropped it: `icmp type echo-request drop` (nftables table inet guard, chain input, handle"),
            "{said}"
        );
    }
}

#[test]
fn an_iptables_rule_in_a_chain_jumped_to_from_forward_is_named_in_iptables_form() {
    require_privileges();
    let net = Routed::create();
    net.r.sh("iptables -N DOCKER-USER");
    net.r.sh("iptables -A FORWARD -j DOCKER-USER");
    net.r.sh("iptables -A DOCKER-USER -p icmp -j DROP");
    let requests = dropped_requests(&[&net.a, &net.r, &net.b], &net.a, ROUTED_A, ROUTED_B);
    for request in requests {
        assert_eq!(request["fate"]["hook"], "nf_forward", "{request}");
        let rules = request["rules"].as_array().expect("rules named");
        assert_eq!(rules.len(), 1, "{request}");
        assert_eq!(rules[0]["source"], "iptables");
        assert_eq!(rules[0]["chain"], "DOCKER-USER");
        assert_eq!(rules[0]["id"], 1);
        assert_eq!(rules[0]["text"], "-A DOCKER-USER -p icmp -j DROP");
    }
}

#[test]
fn a_drop_rule_without_a_counter_is_said_to_count_nothing() {
    require_privileges();
    let pair = Pair::create();
    pair.b.sh("nft add table ip quiet");
    pair.b
        .sh("nft add chain ip quiet input { type filter hook input priority 0 ; }");
    pair.b
        .sh("nft add rule ip quiet input meta l4proto icmp drop");
    for request in dropped_requests(&[&pair.a, &pair.b], &pair.a, ADDR_A, ADDR_B) {
        assert!(
            request.get("rules").is_none(),
            "no counter, no culprit: {request}"
        );
        let said = explanation(&request);
        assert!(
            said.contains("No drop rule at INPUT")
                && said.contains(
                    "`meta l4proto icmp drop` (nftables table ip quiet, chain input, handle"
                ),
            "{said}"
        );
    }
}
