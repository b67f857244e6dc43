//! A drop at each observation point is located between the right pair of sightings, with the
//! kernel's drop reason. Each fault is a real rule (tc, iptables, nftables) on real pings.

use std::time::Duration;

use harness::foreign::{Foreign, Place};
use serde_json::Value;
use tests::{path, require_privileges, Netns, Pair, Routed, Tracer, ADDR_A, ROUTED_A};

/// Pings `dst` from `from` (which fails: something drops them) and returns the journeys of the
/// echo requests from `src`.
fn traced_pings(
    name: &str,
    namespaces: &[&Netns],
    from: &Netns,
    src: &str,
    dst: &str,
) -> Vec<Value> {
    let mut args = Vec::new();
    for ns in namespaces {
        args.extend(["-n", ns.name.as_str()]);
    }
    args.push("icmp");
    let tracer = Tracer::start(&args);
    let out = from.run(&format!("ping -c 2 -i 0.3 -W 1 {dst}"));
    assert!(
        !out.status.success(),
        "the fault should have dropped the pings"
    );
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    report.keep_fixture(name);
    assert_eq!(report.stats()["lost_total"], 0, "no event may be lost");
    let requests: Vec<Value> = report
        .packets()
        .filter(|p| p["src"] == src && p["proto"] == "icmp")
        .cloned()
        .collect();
    let summary: Vec<String> = report
        .packets()
        .map(|r| {
            format!(
                "{} > {}: {:?} fate {}",
                r["src"],
                r["dst"],
                all_points(r),
                r["fate"]
            )
        })
        .collect();
    // Two pings, or more: ping retries at once when the kernel refuses a send.
    assert!(
        requests.len() >= 2,
        "a journey per echo request: {summary:#?}\ntracer said: {}",
        report.stderr
    );
    requests
}

/// Every sighting of a journey, "hook position".
fn all_points(journey: &Value) -> Vec<String> {
    journey["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["hook"].as_str().unwrap(),
                p["position"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Every request was dropped with `reason`, seen alive last at `alive` and never at `next`.
fn assert_dropped_between(requests: &[Value], alive: &str, next: &str, reason: &str) {
    for request in requests {
        let fate = &request["fate"];
        assert_eq!(fate["kind"], "dropped", "{request}");
        assert_eq!(fate["reason"], reason, "{request}");
        let at = match fate["position"].as_str() {
            Some(position) => format!("{} {position}", fate["hook"].as_str().unwrap()),
            None => fate["hook"].as_str().unwrap_or("none").to_string(),
        };
        assert_eq!(at, alive, "last point that saw it alive: {request}");
        let path = path(request);
        assert_eq!(path.last().map(String::as_str), Some(alive), "{request}");
        assert!(!path.iter().any(|p| p == next), "seen at {next}: {request}");
    }
}

/// TC_ACT_SHOT. Another tool's tc program (this kernel has no `gact` action for a `tc filter
/// ... action drop`), attached before the tracer starts, so it sits between the tracer's first
/// and last programs.
const TC_ACT_SHOT: i32 = 2;

#[test]
fn tc_ingress_drop_falls_between_first_and_last() {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    let _dropper = Foreign::attach(
        &pair.b.name,
        "vb",
        Place::TcIngress,
        "drop_ingress",
        TC_ACT_SHOT,
    )
    .expect("the foreign tc program");
    let requests = traced_pings(
        "tc_ingress_drop",
        &[&pair.a, &pair.b],
        &pair.a,
        ADDR_A,
        tests::ADDR_B,
    );
    assert_dropped_between(
        &requests,
        "tc_ingress first",
        "tc_ingress last",
        "TC_INGRESS",
    );
}

#[test]
fn tc_egress_drop_falls_between_first_and_last() {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    let _dropper = Foreign::attach(
        &pair.a.name,
        "va",
        Place::TcEgress,
        "drop_egress",
        TC_ACT_SHOT,
    )
    .expect("the foreign tc program");
    let requests = traced_pings(
        "tc_egress_drop",
        &[&pair.a, &pair.b],
        &pair.a,
        ADDR_A,
        tests::ADDR_B,
    );
    assert_dropped_between(&requests, "tc_egress first", "tc_egress last", "TC_EGRESS");
}

#[test]
fn prerouting_drop_by_nftables_falls_between_first_and_last() {
    require_privileges();
    let pair = Pair::create();
    pair.b.sh("nft add table ip lab");
    pair.b
        .sh("nft add chain ip lab pre { type filter hook prerouting priority 0 ; }");
    pair.b.sh("nft add rule ip lab pre meta l4proto icmp drop");
    let requests = traced_pings(
        "prerouting_drop",
        &[&pair.a, &pair.b],
        &pair.a,
        ADDR_A,
        tests::ADDR_B,
    );
    assert_dropped_between(
        &requests,
        "nf_prerouting first",
        "nf_prerouting last",
        "NETFILTER_DROP",
    );
}

#[test]
fn local_in_drop_by_iptables_falls_between_first_and_last() {
    require_privileges();
    let pair = Pair::create();
    pair.b.sh("iptables -A INPUT -p icmp -j DROP");
    let requests = traced_pings(
        "local_in_drop",
        &[&pair.a, &pair.b],
        &pair.a,
        ADDR_A,
        tests::ADDR_B,
    );
    assert_dropped_between(
        &requests,
        "nf_local_in first",
        "nf_local_in last",
        "NETFILTER_DROP",
    );
}

#[test]
fn forward_drop_in_a_router_falls_between_first_and_last() {
    require_privileges();
    let net = Routed::create();
    net.r.sh("iptables -A FORWARD -p icmp -j DROP");
    let requests = traced_pings(
        "forward_drop",
        &[&net.a, &net.r, &net.b],
        &net.a,
        ROUTED_A,
        tests::ROUTED_B,
    );
    assert_dropped_between(
        &requests,
        "nf_forward first",
        "nf_forward last",
        "NETFILTER_DROP",
    );
    for request in &requests {
        let forward = request["path"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["hook"] == "nf_forward")
            .unwrap();
        assert_eq!(forward["netns_name"], net.r.name.as_str(), "{request}");
        assert_eq!(
            forward["ifname"], "rb",
            "FORWARD names the way out: {request}"
        );
    }
}

#[test]
fn local_out_drop_by_iptables_falls_between_first_and_last() {
    require_privileges();
    let pair = Pair::create();
    pair.a.sh("iptables -A OUTPUT -p icmp -j DROP");
    let requests = traced_pings(
        "local_out_drop",
        &[&pair.a, &pair.b],
        &pair.a,
        ADDR_A,
        tests::ADDR_B,
    );
    assert_dropped_between(
        &requests,
        "nf_local_out first",
        "nf_local_out last",
        "NETFILTER_DROP",
    );
}

#[test]
fn postrouting_drop_by_nftables_falls_between_first_and_last() {
    require_privileges();
    let pair = Pair::create();
    pair.a.sh("nft add table ip lab");
    pair.a
        .sh("nft add chain ip lab post { type filter hook postrouting priority 0 ; }");
    pair.a.sh("nft add rule ip lab post meta l4proto icmp drop");
    let requests = traced_pings(
        "postrouting_drop",
        &[&pair.a, &pair.b],
        &pair.a,
        ADDR_A,
        tests::ADDR_B,
    );
    assert_dropped_between(
        &requests,
        "nf_postrouting first",
        "nf_postrouting last",
        "NETFILTER_DROP",
    );
}
