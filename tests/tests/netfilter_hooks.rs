//! Netfilter hooks where nothing is registered: left unlinked by default
//! (`--netfilter-hooks needed`), linked once something registers there.

use std::time::Duration;

use tests::{require_privileges, Pair, Tracer, ADDR_A, ADDR_B};

/// Where nothing is registered at PREROUTING, LOCAL_OUT or POSTROUTING, the tracer leaves the
/// hook unlinked (the kernel skips it: nothing there can drop or change a packet) and says so;
/// a rule added during the trace gets its hook linked, and the packets after it are seen there.
#[test]
fn a_hook_with_nothing_registered_is_linked_once_a_rule_comes() {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    let tracer = Tracer::start(&["-n", &pair.a.name, "-n", &pair.b.name, "icmp"]);
    let ping = || {
        let out = pair.a.run(&format!("ping -c 1 -W 1 {ADDR_B}"));
        assert!(out.status.success(), "{out:?}");
    };
    ping();
    pair.b.sh("nft add table ip probe");
    pair.b
        .sh("nft add chain ip probe pre { type filter hook prerouting priority 0 ; }");
    pair.b.sh("nft add rule ip probe pre counter");
    wait_for_prerouting_link(tracer.pid());
    ping();
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    let requests: Vec<Vec<String>> = report
        .packets()
        .filter(|p| p["src"] == ADDR_A && p["dst"] == ADDR_B)
        .map(|p| {
            tests::path(p)
                .into_iter()
                .filter(|point| point.starts_with("nf_"))
                .collect()
        })
        .collect();
    let before = ["nf_local_in first", "nf_local_in last"];
    let after = [
        "nf_prerouting first",
        "nf_prerouting last",
        "nf_local_in first",
        "nf_local_in last",
    ];
    assert_eq!(requests, [&before[..], &after[..]], "{}", report.stderr);
    for said in [
        "not linked where nothing is registered (6 of 6 in".to_string(),
        format!(
            "something registered in {}: linked at nf_prerouting (IPv4)",
            pair.b.name
        ),
    ] {
        assert!(report.stderr.contains(&said), "{said}: {}", report.stderr);
    }
}

/// Waits until the tracer `pid` holds a netfilter link at IPv4's PREROUTING.
fn wait_for_prerouting_link(pid: u32) {
    wait_for(
        || {
            netfilter_links(pid)
                .iter()
                .any(|info| info.contains("pf:\t2\thooknum:\t0\t"))
        },
        "PREROUTING linked after a rule was registered there",
    );
}

/// Where nothing is registered at LOCAL_IN, the tracer links only its first program there
/// (nothing could come between it and the last one, whose sighting the first one's event
/// implies), and a delivered packet still passes LOCAL_IN whole. A rule registered during the
/// trace makes the first program leave the packet to the last one at once (before the census
/// links the last: a drop right after the rule comes falls after the first sighting, with
/// no last one), and gets the last program linked.
#[test]
fn local_in_has_its_first_program_alone_until_a_rule_comes() {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    let tracer = Tracer::start(&["-n", &pair.a.name, "-n", &pair.b.name, "icmp"]);
    // IPv4's LOCAL_IN in both namespaces: the first program alone in each.
    assert_eq!(local_in_links(tracer.pid()), 2);
    let delivered = pair.a.run(&format!("ping -c 1 -W 1 {ADDR_B}"));
    assert!(delivered.status.success(), "{delivered:?}");
    pair.b.sh("nft add table ip probe");
    pair.b
        .sh("nft add chain ip probe in { type filter hook input priority 0 ; }");
    pair.b
        .sh("nft add rule ip probe in icmp type echo-request drop");
    let dropped = pair.a.run(&format!("ping -c 1 -W 1 {ADDR_B}"));
    assert!(!dropped.status.success(), "{dropped:?}");
    wait_for(
        || local_in_links(tracer.pid()) == 3,
        "LOCAL_IN's last program linked",
    );
    let report = tracer.finish();
    let requests: Vec<(Vec<String>, String)> = report
        .packets()
        .filter(|p| p["src"] == ADDR_A && p["dst"] == ADDR_B)
        .map(|p| {
            let points = tests::path(p)
                .into_iter()
                .filter(|point| point.starts_with("nf_"))
                .collect();
            (points, p["fate"]["kind"].as_str().unwrap_or("").to_string())
        })
        .collect();
    let delivered = (
        vec![
            "nf_local_in first".to_string(),
            "nf_local_in last".to_string(),
        ],
        "delivered".to_string(),
    );
    let dropped = (vec!["nf_local_in first".to_string()], "dropped".to_string());
    assert_eq!(requests, [delivered, dropped], "{}", report.stderr);
    for said in [
        "LOCAL_IN and FORWARD get only the tracer's first program where nothing is registered \
         (8 hooks)"
            .to_string(),
        format!(
            "something registered in {}: linked at nf_local_in (IPv4) (its last program)",
            pair.b.name
        ),
    ] {
        assert!(report.stderr.contains(&said), "{said}: {}", report.stderr);
    }
}

/// The tracer `pid`'s netfilter links at IPv4's LOCAL_IN, in every namespace.
fn local_in_links(pid: u32) -> usize {
    netfilter_links(pid)
        .iter()
        .filter(|info| info.contains("pf:\t2\thooknum:\t1\t"))
        .count()
}

/// The fdinfo of each netfilter link the tracer `pid` holds.
fn netfilter_links(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter(|info| info.contains("link_type:\tnetfilter"))
        .collect()
}

/// Waits up to 5 s for `done`.
fn wait_for(done: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within 5 s: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
