//! Honesty under overload: with a ring buffer far too small for a flood, the tracer loses
//! events, and says so — per hook and per CPU, in the stats, on stderr, on every packet and
//! flow the loss may have cut (`incomplete`), and in the text summary. No journey that misses
//! points is presented as complete.

use std::{net::UdpSocket, time::Duration};

use serde_json::Value;
use tests::{path, require_privileges, run, schema::check_json, tracer_bin, Pair, Tracer};
use tests::{ADDR_A, ADDR_B};

const DATAGRAMS: usize = 3000;
const BURSTS: usize = 10;

/// Every point a datagram from a to b crosses up to LOCAL_IN: a journey not marked incomplete
/// must show them all (a datagram may die later, in a full receive queue). Netfilter's
/// LOCAL_IN only: nothing is registered at its other hooks here, which the tracer leaves
/// unlinked (`--netfilter-hooks needed`).
const FULL_PATH: [&str; 8] = [
    "tc_egress first",
    "tc_egress last",
    "dev_xmit first",
    "dev_xmit last",
    "netif_receive",
    "tc_ingress first",
    "tc_ingress last",
    "nf_local_in first",
];

fn sum(object: &Value) -> u64 {
    object
        .as_object()
        .expect("an object of counts")
        .values()
        .map(|v| v.as_u64().expect("a count"))
        .sum()
}

#[test]
fn a_flood_through_a_tiny_ring_is_reported_lost_and_incomplete() {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    let tracer = Tracer::start(&[
        "-n",
        &pair.a.name,
        "-n",
        &pair.b.name,
        "--ring-kib",
        "4",
        "udp and port 7050",
    ]);
    let receiver = pair.b.spawn(|| {
        let socket = UdpSocket::bind(format!("{ADDR_B}:7050")).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut buf = [0u8; 64];
        let mut got = 0;
        while socket.recv(&mut buf).is_ok() {
            got += 1;
        }
        got
    });
    std::thread::sleep(Duration::from_millis(200));
    // In bursts, each longer than the ring can hold, with a pause after each in which the
    // tracer reads the ring empty (it reads every 20 ms): the next burst's first events say
    // how many were lost before them, inside journeys the loss cut. One burst alone could be
    // lost whole after the first few datagrams, then no event would follow the loss.
    pair.a.enter(|| {
        let socket = UdpSocket::bind(format!("{ADDR_A}:7051")).unwrap();
        for burst in (0..DATAGRAMS)
            .collect::<Vec<_>>()
            .chunks(DATAGRAMS / BURSTS)
        {
            for i in burst {
                socket
                    .send_to(&(*i as u32).to_be_bytes(), format!("{ADDR_B}:7050"))
                    .unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let received = receiver.join().unwrap();
    let report = tracer.finish();
    check_json(&report.records);
    let stats = report.stats();

    let lost = stats["lost_total"].as_u64().unwrap();
    assert!(lost > 0, "a 4 KiB ring cannot hold this flood: {stats}");
    assert_eq!(sum(&stats["lost"]), lost, "per hook");
    assert_eq!(sum(&stats["lost_per_cpu"]), lost, "per CPU");
    assert!(
        report
            .stderr
            .contains(&format!("{lost} events were lost (ring buffer full)")),
        "{}",
        report.stderr
    );

    let datagrams: Vec<&Value> = report
        .packets()
        .filter(|p| p["src"] == ADDR_A && p["proto"] == "udp")
        .collect();
    let incomplete = datagrams.iter().filter(|p| p["incomplete"] == true).count();
    let mut silent = Vec::new();
    for datagram in datagrams.iter().filter(|p| p["incomplete"] != true) {
        let path = path(datagram);
        let missing: Vec<&str> = FULL_PATH
            .iter()
            .copied()
            .filter(|point| !path.iter().any(|p| p == point))
            .collect();
        if !missing.is_empty() || datagram["fate"]["kind"] == "unknown" {
            silent.push(format!("packet {}: missing {missing:?}", datagram["id"]));
        }
    }
    eprintln!(
        "{DATAGRAMS} datagrams sent, {received} received; {lost} events lost \
         (per CPU {}); {} journeys, {incomplete} marked incomplete, {} silent",
        stats["lost_per_cpu"],
        datagrams.len(),
        silent.len()
    );
    assert!(incomplete > 0, "journeys cut by the loss are marked");
    assert!(
        silent.is_empty(),
        "journeys that miss points but are not marked incomplete: {silent:?}"
    );
    assert_eq!(
        stats["incomplete_packets"].as_u64(),
        Some(report.packets().filter(|p| p["incomplete"] == true).count() as u64)
    );
    for flow in report.flows() {
        let marked = flow["packet_ids"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|id| {
                report
                    .packets()
                    .any(|p| &p["id"] == *id && p["incomplete"] == true)
            })
            .count() as u64;
        assert_eq!(
            flow["incomplete_packets"].as_u64().unwrap_or(0),
            marked,
            "flow {}",
            flow["id"]
        );
    }

    // The recorded stream keeps where the gaps were: explained offline, the text says so.
    let explained = run(&format!(
        "{} explain {}",
        tracer_bin().display(),
        report_record(&report)
    ));
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(
        text.contains(&format!("{incomplete} packets in "))
            && text.contains("may be incomplete: events were lost while they were alive"),
        "the summary says so: {}",
        text.lines().rev().take(3).collect::<Vec<_>>().join("\n")
    );
    assert!(text.contains("incomplete: events were lost while it was alive"));
}

/// Writes the recorded stream to a file for `tracer explain`.
fn report_record(report: &tests::Report) -> String {
    let file = tests::scratch("overload.jsonl");
    std::fs::write(&file, &report.recording).unwrap();
    file.display().to_string()
}
