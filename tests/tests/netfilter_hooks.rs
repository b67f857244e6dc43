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
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let linked = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
            .any(|info| {
                info.contains("link_type:\tnetfilter") && info.contains("pf:\t2\thooknum:\t0\t")
            });
        if linked {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "PREROUTING not linked 5 s after a rule was registered there"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
