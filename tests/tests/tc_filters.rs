//! tc without tcx links (kernels before 6.6, or `--tc cls-bpf`): the tc points hang on
//! `cls_bpf` filters at the first and last priorities of a clsact qdisc. Filters are not links,
//! so they outlive the process: the tracer removes them (and the qdisc it added) at exit, and
//! `tracer cleanup` removes those of a killed tracer while leaving a running one's alone.

use tests::{require_privileges, run, tracer_bin, Pair, Tracer, ADDR_B};

fn filters(pair: &Pair, dev: &str) -> String {
    ["ingress", "egress"]
        .map(|direction| pair.a.sh(&format!("tc filter show dev {dev} {direction}")))
        .join("")
}

fn ping(pair: &Pair) {
    let out = pair.a.run(&format!("ping -c 2 -i 0.2 -W 2 {ADDR_B}"));
    assert!(out.status.success(), "ping passes the filters");
}

fn cleanup() -> String {
    let out = run(&format!("{} cleanup", tracer_bin().display()));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn cls_bpf_filters_bracket_tc_and_are_removed_at_exit() {
    require_privileges();
    let pair = Pair::create();
    let tracer = Tracer::start(&["--tc", "cls-bpf", "-n", &pair.a.name, "icmp"]);
    let attached = filters(&pair, "va");
    for (program, pref) in [
        ("tracer_tc_ingress_first", "pref 1 "),
        ("tracer_tc_ingress_last", "pref 65535 "),
        ("tracer_tc_egress_first", "pref 1 "),
        ("tracer_tc_egress_last", "pref 65535 "),
    ] {
        let line = attached.lines().find(|l| l.contains(program));
        assert!(
            line.is_some_and(|l| l.contains(pref)),
            "{program} at {pref}: {attached}"
        );
    }
    ping(&pair);
    // A tracer running now keeps its filters through a cleanup.
    cleanup();
    assert_eq!(filters(&pair, "va"), attached, "cleanup left them alone");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let report = tracer.finish();
    assert!(
        report.stderr.contains("observation points attached"),
        "{}",
        report.stderr
    );
    let request = report
        .packets()
        .find(|p| p["dst"] == ADDR_B)
        .expect("the echo request traced");
    let path = tests::path(request);
    for point in ["tc_egress first", "tc_egress last"] {
        assert!(
            path.iter().any(|p| p.contains(point)),
            "{point} in {path:?}"
        );
    }
    assert_eq!(filters(&pair, "va"), "", "filters removed at exit");
    assert!(
        !pair.a.sh("tc qdisc show dev va").contains("clsact"),
        "the clsact qdisc the tracer added is gone"
    );
}

#[test]
fn cleanup_removes_the_filters_of_a_killed_tracer() {
    require_privileges();
    let pair = Pair::create();
    let tracer = Tracer::start(&["--tc", "cls-bpf", "-n", &pair.a.name]);
    tracer.kill();
    let left = filters(&pair, "va");
    assert!(
        left.contains("tracer_tc_ingress_first"),
        "a SIGKILL leaves the filters: {left}"
    );
    ping(&pair);
    let said = cleanup();
    assert!(said.contains("removed tc ingress filter"), "{said}");
    assert!(said.contains("removed the clsact qdisc from va"), "{said}");
    assert_eq!(filters(&pair, "va"), "", "nothing left: {said}");
    ping(&pair);
}
