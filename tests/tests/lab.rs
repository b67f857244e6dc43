//! The default lab (`cargo xtask run`) end to end: the SYNs a real tcpdump captured on the
//! server are the SYNs the tracer saw dropped by the INPUT rule: after the tap, between the
//! first and the last program at LOCAL_IN.

use tests::{require_privileges, tracer_bin};

#[test]
fn local_in_drop_lab_locates_every_captured_syn() {
    require_privileges();
    let out = std::process::Command::new(tracer_bin())
        .args(["lab", "run", "local-in-drop"])
        .output()
        .expect("run the lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lab failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );

    let captured = stdout
        .lines()
        .filter(|l| l.contains("> 10.200.1.2.8080: Flags [S]"))
        .count();
    let dropped = stdout
        .lines()
        .filter(|l| l.contains("fate: dropped after nf_local_in (first), reason NETFILTER_DROP"))
        .count();
    let tap_saw = stdout
        .lines()
        .filter(|l| l.contains("is capturing on tracer-lab-server/s0 and saw this packet"))
        .count();
    assert!(captured >= 2, "the client retries within 2.5 s: {stdout}");
    assert_eq!(dropped, captured, "every captured SYN is located: {stdout}");
    assert_eq!(
        tap_saw, captured,
        "and said to be seen by the lab's tcpdump on s0, named: {stdout}"
    );
    assert!(
        stdout.contains("TCP never received it"),
        "explained: {stdout}"
    );
    assert!(
        stdout.contains("; 0 lost"),
        "no event may be lost: {stdout}"
    );
    // The lab cleaned up after itself.
    let netns = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!netns.contains("tracer-lab-"), "namespaces left: {netns}");
}
