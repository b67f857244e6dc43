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

/// The trace is bounded in time too: its points are detached one after the other (netfilter's
/// links a grace period each, then tc, then the tracepoints), and what those still attached
/// write meanwhile is left out and counted, never given to a journey (a driver's answer at an
/// skb address that tc, gone, would have found reused took over a datagram's journey in CI).
#[test]
fn events_written_while_the_points_are_detached_are_left_out_and_counted() {
    require_privileges();
    let pair = Pair::create();
    let tracer = Tracer::start(&["-n", &pair.a.name, "-n", &pair.b.name, "icmp"]);
    let mut pinging = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.a.name,
            "ping",
            "-q",
            "-i",
            "0.002",
            ADDR_B,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_millis(500));
    let report = tracer.finish();
    pinging.kill().expect("ping stopped");
    pinging.wait().expect("ping gone");
    check_json(&report.records);
    let end = report
        .recording
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|record| record["type"] == "trace_end")
        .expect("the recording's end");
    let end_ns = end["end_ns"].as_u64().expect("end_ns");
    let late = report
        .events
        .iter()
        .filter(|event| event["ts_ns"].as_u64().is_some_and(|ts| ts > end_ns))
        .count();
    assert_eq!(late, 0, "no event recorded after the end ({end_ns})");
    for packet in report.packets() {
        for point in packet["path"].as_array().expect("a path") {
            let ts = point["ts_ns"].as_u64().expect("ts_ns");
            assert!(ts <= end_ns, "a point after the end: {packet}");
        }
    }
    let left_out = report.stats()["after_end"].as_u64().unwrap_or(0);
    eprintln!("events after the end left out: {left_out}");
}
