//! `tracer doctor` says what this kernel allows, and `tracer trace` then attaches exactly that:
//! every point the doctor calls available attaches, with no warning.

use tests::{require_privileges, tracer_bin, Pair, Tracer};

#[test]
fn what_the_doctor_calls_available_attaches() {
    require_privileges();
    let out = std::process::Command::new(tracer_bin())
        .arg("doctor")
        .output()
        .expect("run tracer doctor");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    for point in [
        "xdp",
        "tc_ingress",
        "nf_prerouting",
        "kfree_skb",
        "fib_lookup",
    ] {
        assert!(
            report.lines().any(|l| l.starts_with(point)),
            "{point} listed: {report}"
        );
    }
    let missing = report.matches("MISSING").count();

    let pair = Pair::create();
    let tracer = Tracer::start(&["--xdp", "-n", &pair.a.name, "-n", &pair.b.name]);
    let stderr = tracer.finish().stderr;
    let warnings = stderr.matches("is not observed").count();
    assert_eq!(
        missing == 0,
        warnings == 0,
        "doctor: {report}\ntrace: {stderr}"
    );
}
