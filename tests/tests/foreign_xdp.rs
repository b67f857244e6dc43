//! Another tool's XDP program drops on the receiving interface. Only one XDP program fits
//! there, so the tracer cannot sit beside it: it must name that program, attach everything
//! else, and attribute the drops to it (the veth peer transmitted the packets; they never
//! reached the receive tap).

use std::time::Duration;

use harness::foreign::{Foreign, Place, XDP_DROP};
use tests::{require_privileges, Pair, Tcpdump, Tracer, ADDR_A};

#[test]
fn a_foreign_xdp_dropper_is_named_and_blamed() {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    let dropper = Foreign::attach(&pair.b.name, "vb", Place::Xdp, "drop_all", XDP_DROP)
        .expect("the foreign XDP program");
    let tcpdump = Tcpdump::start(&pair.b, "vb", "icmp");
    let tracer = Tracer::start(&["-n", &pair.a.name, "-n", &pair.b.name, "icmp"]);
    let out = pair
        .a
        .run(&format!("ping -c 2 -i 0.3 -W 1 {}", tests::ADDR_B));
    assert!(!out.status.success(), "the XDP program drops the pings");
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    report.keep_fixture("foreign_xdp_drop");
    let captured = tcpdump.stop();

    // Named, loudly, and everything else attached.
    assert!(
        report
            .stderr
            .contains(&format!("another XDP program, {}", dropper.name))
            && report.stderr.contains("vb"),
        "the tracer names the program holding vb: {}",
        report.stderr
    );
    let warnings = report.stderr.matches("is not observed").count();
    assert_eq!(warnings, 1, "only XDP on vb is missing: {}", report.stderr);

    let requests: Vec<_> = report.packets().filter(|p| p["src"] == ADDR_A).collect();
    assert!(requests.len() >= 2, "{:?}", report.records);
    for request in &requests {
        let fate = &request["fate"];
        assert_eq!(fate["kind"], "dropped", "{request}");
        let by = fate["by"].as_str().unwrap_or_default();
        assert!(
            by.contains("drop_all") && by.contains("vb"),
            "attributed to the foreign program: {request}"
        );
        assert_eq!(
            (&fate["hook"], &fate["position"]),
            (&"dev_xmit".into(), &"last".into()),
            "last seen leaving the peer: {request}"
        );
        let vb = request["capture"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["ifname"] == "vb")
            .expect("a capture verdict for vb");
        assert_eq!(vb["seen"], false, "XDP runs before the tap: {request}");
    }
    // The oracle agrees: tcpdump on vb saw none of them.
    assert!(
        !captured.iter().any(|l| l.contains("echo request")),
        "tcpdump captured: {captured:?}"
    );
}
