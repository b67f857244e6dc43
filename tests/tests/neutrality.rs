//! With the tracer attached, rules behave exactly as without it: the same packets delivered,
//! the same dropped, the same rule counters (iptables and nftables) and the same results for
//! the applications.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use harness::programs::{program_ids_of, tracer_programs, StatsOn};
use tests::{require_privileges, Pair, Tracer, ADDR_A, ADDR_B};

/// What the traffic achieved and what the rules counted.
#[derive(Debug, PartialEq)]
struct Outcome {
    pings_answered: usize,
    server_got: String,
    iptables_packets: Vec<u64>,
    nft_packets: u64,
}

/// Packets counted by the nftables rule so far.
fn nft_count(pair: &Pair) -> u64 {
    pair.b
        .sh("nft list chain ip count pre")
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("an nft counter")
}

fn traffic(pair: &Pair) -> Outcome {
    pair.b.sh("iptables -Z INPUT");
    let nft_before = nft_count(pair);
    let server = pair.b.spawn(|| {
        let listener = TcpListener::bind(format!("{ADDR_B}:7021")).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        got
    });
    std::thread::sleep(Duration::from_millis(200));
    let ping = pair.a.sh(&format!("ping -c 3 -i 0.2 -W 1 {ADDR_B}"));
    let pings_answered = ping.matches("bytes from").count();
    pair.a.enter(|| {
        let udp = UdpSocket::bind(format!("{ADDR_A}:0")).unwrap();
        for _ in 0..5 {
            udp.send_to(b"dropped", format!("{ADDR_B}:7020")).unwrap();
        }
        let mut conn = TcpStream::connect(format!("{ADDR_B}:7021")).unwrap();
        conn.write_all(b"hello").unwrap();
    });
    let server_got = server.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let iptables_packets = pair
        .b
        .sh("iptables -L INPUT -v -x -n")
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let nft_packets = nft_count(pair) - nft_before;
    Outcome {
        pings_answered,
        server_got,
        iptables_packets,
        nft_packets,
    }
}

/// iptables and nftables rules in `b` for [`traffic`] to count and drop against.
fn rules(pair: &Pair) {
    pair.b.sh("iptables -A INPUT -p icmp -j ACCEPT");
    pair.b.sh("iptables -A INPUT -p udp --dport 7020 -j DROP");
    pair.b
        .sh("iptables -A INPUT -p tcp --syn --dport 7021 -j ACCEPT");
    pair.b.sh("nft add table ip count");
    pair.b
        .sh("nft add chain ip count pre { type filter hook prerouting priority -50 ; }");
    pair.b.sh(&format!(
        "nft add rule ip count pre ip saddr {ADDR_A} counter"
    ));
}

#[test]
fn rules_and_applications_see_the_same_with_and_without_the_tracer() {
    require_privileges();
    let pair = Pair::create();
    rules(&pair);

    let without = traffic(&pair);
    let tracer = Tracer::start(&["--xdp", "-n", &pair.a.name, "-n", &pair.b.name]);
    let with = traffic(&pair);
    let report = tracer.finish();

    assert_eq!(without.pings_answered, 3, "{without:?}");
    assert_eq!(without.server_got, "hello");
    assert_eq!(without.iptables_packets[..3], [3, 5, 1], "{without:?}");
    assert_eq!(with, without, "the tracer changed what happened");
    assert!(
        report.events.len() > 20,
        "the tracer did watch this traffic: {} events",
        report.events.len()
    );
}

/// The benchmark's floor (`--attach-only`, see `cargo xtask bench`): the programs are attached
/// as for a trace and run on every packet, but return at once: nothing reported, nothing
/// changed. Measured with the kernel's run counts, so a floor that attached nothing fails.
#[test]
fn attached_only_the_programs_run_on_the_traffic_report_nothing_and_change_nothing() {
    require_privileges();
    let pair = Pair::create();
    rules(&pair);
    let without = traffic(&pair);

    let stats = StatsOn::enable().expect("kernel.bpf_stats_enabled");
    let tracer = Tracer::start(&["--attach-only", "-n", &pair.a.name, "-n", &pair.b.name]);
    let with = traffic(&pair);
    let ours = program_ids_of(tracer.pid());
    let runs: Vec<(String, u64)> = tracer_programs()
        .expect("bpftool's list of programs")
        .into_iter()
        .filter(|(id, _)| ours.iter().any(|&o| u64::from(o) == *id))
        .map(|(_, p)| (p.name, p.runs))
        .collect();
    let report = tracer.finish();
    drop(stats);

    assert_eq!(with, without, "the tracer changed what happened");
    // The recording also lists what userspace saw (the captures running, tcpdump's taps).
    let sightings: Vec<_> = report
        .events
        .iter()
        .filter(|e| e.get("hook").is_some())
        .collect();
    assert!(
        sightings.is_empty() && report.packets().next().is_none(),
        "programs that return at once reported {} events: {:?}",
        sightings.len(),
        sightings.first()
    );
    // The points every packet of this traffic passes, on the way out of a and into b.
    for point in [
        "tracer_netif_receive",
        "tracer_dev_start_xmit",
        "tracer_nf_first",
        "tracer_nf_last",
        "tracer_tc_ingress_first",
        "tracer_tc_egress_first",
    ] {
        // bpftool names each program in full (from its BTF), so one point's runs are its own.
        let ran: u64 = runs
            .iter()
            .filter(|(name, _)| name == point)
            .map(|(_, n)| n)
            .sum();
        assert!(ran >= 10, "{point} ran {ran} times: {runs:?}");
    }
}
