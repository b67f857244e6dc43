//! The trace's tables are bounded: past `--max-events` events are counted, not kept, and the
//! report says so instead of growing without end.

use std::time::Duration;

use tests::{require_privileges, schema::check_json, Pair, Tracer, ADDR_B};

#[test]
fn events_beyond_max_events_are_counted_and_reported() {
    require_privileges();
    let pair = Pair::create();
    let tracer = Tracer::start(&[
        "-n",
        &pair.a.name,
        "-n",
        &pair.b.name,
        "--max-events",
        "20",
        "icmp",
    ]);
    let out = pair.a.run(&format!("ping -c 5 -i 0.2 -W 1 {ADDR_B}"));
    assert!(
        out.status.success(),
        "pings answered: the cap changes no fate"
    );
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    check_json(&report.records);

    let stats = report.stats();
    let kept: u64 = stats["events"]
        .as_object()
        .expect("events")
        .values()
        .filter_map(|v| v.as_u64())
        .sum();
    assert_eq!(kept, 20, "exactly --max-events kept: {stats}");
    // 5 requests and 5 replies cross about 10 points each (netfilter's LOCAL_IN, not its
    // other hooks, where nothing is registered).
    let not_kept = stats["not_kept"].as_u64().expect("not_kept");
    assert!(not_kept >= 60, "the rest counted: {stats}");
    assert!(
        report
            .stderr
            .contains("were counted but not kept (--max-events)"),
        "{}",
        report.stderr
    );
    // The packet open when keeping stopped is not called delivered or dropped.
    let last = report.packets().last().expect("packets");
    assert_eq!(last["fate"]["kind"], "unknown", "{last}");
}
