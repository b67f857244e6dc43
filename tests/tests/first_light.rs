//! End to end on the real kernel: two namespaces joined by a veth, the real kernel programs,
//! real pings. Every observation point must report the packets that crossed it, with the right
//! addresses, namespace and interface; a hook that saw nothing fails the test.

use std::{collections::BTreeSet, time::Duration};

use serde_json::Value;
use tests::{path, require_privileges, Pair, Tcpdump, Tracer, ADDR_A, ADDR_B};

const PINGS: usize = 3;

/// ICMP sequence numbers of the events at `hook` in namespace `ns` on `ifname`, for ICMP
/// messages of `icmp_type` from `src` to `dst`.
fn seen_at(
    events: &[Value],
    hook: &str,
    ns: &str,
    ifname: &str,
    icmp_type: u64,
    src: &str,
    dst: &str,
) -> BTreeSet<u64> {
    events
        .iter()
        .filter(|e| {
            e["hook"] == hook
                && e["netns_name"] == ns
                && e["ifname"] == ifname
                && e["proto"] == "icmp"
                && e["icmp_type"] == icmp_type
                && e["src"] == src
                && e["dst"] == dst
        })
        .map(|e| e["dport"].as_u64().expect("echo sequence"))
        .collect()
}

fn ping(pair: &Pair) -> std::process::Output {
    pair.a.run(&format!("ping -c {PINGS} -i 0.2 -W 1 {ADDR_B}"))
}

#[test]
fn every_hook_reports_pings_with_their_addresses() {
    require_privileges();
    let pair = Pair::create();
    let (a, b) = (pair.a.name.as_str(), pair.b.name.as_str());
    // Every netfilter hook too, though nothing is registered at most of them here.
    let tracer = Tracer::start(&[
        "--xdp",
        "--netfilter-hooks",
        "all",
        "-n",
        a,
        "-n",
        b,
        "icmp",
    ]);
    let out = ping(&pair);
    assert!(
        out.status.success(),
        "ping failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    let ev = &report.events;
    let all: BTreeSet<u64> = (1..=PINGS as u64).collect();

    // Echo requests leave a by va and enter b by vb; replies go the other way.
    for (hook, ns, ifname) in [("tc_egress", a, "va"), ("dev_xmit", a, "va")] {
        assert_eq!(
            seen_at(ev, hook, ns, ifname, 8, ADDR_A, ADDR_B),
            all,
            "{hook} in {ns} missed echo requests"
        );
        assert_eq!(
            seen_at(ev, hook, b, "vb", 0, ADDR_B, ADDR_A),
            all,
            "{hook} in {b} missed echo replies"
        );
    }
    for (hook, ns, ifname) in [
        ("xdp", b, "vb"),
        ("netif_receive", b, "vb"),
        ("tc_ingress", b, "vb"),
    ] {
        assert_eq!(
            seen_at(ev, hook, ns, ifname, 8, ADDR_A, ADDR_B),
            all,
            "{hook} in {ns} missed echo requests"
        );
        assert_eq!(
            seen_at(ev, hook, a, "va", 0, ADDR_B, ADDR_A),
            all,
            "{hook} in {a} missed echo replies"
        );
    }
    // Echo requests are answered, not dropped. (Replies do end in kfree_skb NO_SOCKET at
    // ping_rcv: ping reads them through a raw socket's clone, and no ICMP datagram socket
    // wants the original. That is the kernel's own accounting, not a lost packet.)
    let dropped_requests: Vec<&Value> = ev
        .iter()
        .filter(|e| e["hook"] == "kfree_skb" && e["icmp_type"] == 8)
        .collect();
    assert!(
        dropped_requests.is_empty(),
        "echo requests dropped: {dropped_requests:?}"
    );

    // One journey per packet: each request crosses the path's points in order.
    let requests: Vec<&Value> = report.packets().filter(|p| p["src"] == ADDR_A).collect();
    assert_eq!(requests.len(), PINGS, "journeys: {:?}", report.records);
    for request in requests {
        assert_eq!(
            path(request),
            [
                "nf_local_out first",
                "nf_local_out last",
                "nf_postrouting first",
                "nf_postrouting last",
                "tc_egress first",
                "tc_egress last",
                "dev_xmit first",
                "dev_xmit last",
                "xdp",
                "netif_receive",
                "tc_ingress first",
                "tc_ingress last",
                "nf_prerouting first",
                "nf_prerouting last",
                "nf_local_in first",
                "nf_local_in last",
            ],
            "{request}"
        );
    }
    assert_eq!(report.stats()["lost_total"], 0);
}

#[test]
fn a_local_in_drop_is_located_after_the_tap_and_tcpdump_agrees() {
    require_privileges();
    let pair = Pair::create();
    let (a, b) = (pair.a.name.as_str(), pair.b.name.as_str());
    pair.b.sh("iptables -A INPUT -p icmp -j DROP");
    let tcpdump = Tcpdump::start(&pair.b, "vb", "icmp");
    let tracer = Tracer::start(&["--xdp", "-n", a, "-n", b, "icmp"]);
    let out = ping(&pair);
    assert!(
        !out.status.success(),
        "the INPUT rule should have dropped the pings"
    );
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    let captured = tcpdump.stop();

    let requests: Vec<&Value> = report.packets().filter(|p| p["src"] == ADDR_A).collect();
    assert_eq!(requests.len(), PINGS, "journeys: {:?}", report.records);
    for request in &requests {
        let fate = &request["fate"];
        assert_eq!(fate["kind"], "dropped", "{request}");
        assert_eq!(fate["reason"], "NETFILTER_DROP", "{request}");
        assert_eq!(
            (&fate["hook"], &fate["position"]),
            (&"nf_local_in".into(), &"first".into()),
            "dropped by a rule between the first and the last program at LOCAL_IN: {request}"
        );
        let vb = request["capture"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["ifname"] == "vb" && c["dir"] == "rx")
            .expect("a capture verdict for vb");
        assert_eq!(
            vb["seen"], true,
            "the receive tap sits before netfilter: {request}"
        );
    }
    // The oracle: tcpdump on vb really captured every request the tracer says it saw.
    let echo_requests = captured
        .iter()
        .filter(|l| l.contains(&format!("{ADDR_A} > {ADDR_B}: ICMP echo request")))
        .count();
    assert_eq!(
        echo_requests,
        requests.len(),
        "tcpdump captured: {captured:?}"
    );
}

#[test]
fn ctrl_c_right_after_ready_stops_the_tracer() {
    require_privileges();
    let pair = Pair::create();
    // The ready file promises that signals are heard from then on: no traffic, no pause.
    for _ in 0..5 {
        let report = Tracer::start(&["-n", &pair.a.name, "-n", &pair.b.name]).finish();
        assert!(report.stats()["duration_ns"].as_u64().is_some());
    }
}

/// Attaching XDP changes an interface (a veth turns GSO off towards it, some NICs reset their
/// rings), so only `--xdp` does it: by default the slot stays empty and the receive path starts
/// at `netif_receive`.
#[test]
fn without_xdp_flag_the_xdp_slot_stays_empty() {
    require_privileges();
    let pair = Pair::create();
    let (a, b) = (pair.a.name.as_str(), pair.b.name.as_str());
    let tracer = Tracer::start(&["-n", a, "-n", b, "icmp"]);
    let on_vb = pair.b.sh("bpftool net show dev vb");
    assert!(
        !on_vb.contains("tracer_xdp"),
        "nothing on vb's XDP slot: {on_vb}"
    );
    assert!(ping(&pair).status.success());
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    assert!(
        report
            .stderr
            .contains("driver receive left out: --xdp adds it"),
        "{}",
        report.stderr
    );
    let requests: Vec<&Value> = report.packets().filter(|p| p["src"] == ADDR_A).collect();
    assert_eq!(requests.len(), PINGS, "journeys: {:?}", report.records);
    for request in requests {
        let path = path(request);
        assert!(!path.iter().any(|p| p == "xdp"), "{path:?}");
        let tap = path.iter().position(|p| p == "netif_receive");
        let before_tap = tap.and_then(|i| i.checked_sub(1)).map(|i| path[i].as_str());
        assert_eq!(before_tap, Some("dev_xmit last"), "{path:?}");
    }
}
