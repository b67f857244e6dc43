//! The observation points beyond the packet's path: reads by the application, TCP resets and
//! retransmissions, ICMP errors, route lookups, FORWARD, IPv6 at netfilter. Each is made to
//! fire by real traffic and must report it, with the right namespace and addresses.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use harness::foreign::Foreign;
use serde_json::Value;
use tests::{require_privileges, Pair, Routed, Tracer, ADDR_A, ADDR_B, ROUTED_A, ROUTED_B};

/// The netfilter points of a packet from one namespace to a local address of another.
const NETFILTER_PATH_TO_A_LOCAL_PEER: [&str; 8] = [
    "nf_local_out first",
    "nf_local_out last",
    "nf_postrouting first",
    "nf_postrouting last",
    "nf_prerouting first",
    "nf_prerouting last",
    "nf_local_in first",
    "nf_local_in last",
];

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

fn events<'a>(report: &'a [Value], hook: &str, ns: &str) -> Vec<&'a Value> {
    report
        .iter()
        .filter(|e| e["hook"] == hook && e["netns_name"] == ns)
        .collect()
}

fn notes(events: &[&Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["note"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn tcp_reads_resets_retransmissions_and_icmp_errors_are_reported() {
    require_privileges();
    let pair = Pair::create();
    let (a, b) = (pair.a.name.clone(), pair.b.name.clone());
    pair.b.sh("iptables -A INPUT -p tcp --dport 7002 -j DROP");
    let server = pair.b.spawn(|| {
        let listener = TcpListener::bind(addr(ADDR_B, 7000)).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        got
    });
    std::thread::sleep(Duration::from_millis(200));
    let tracer = Tracer::start(&["-n", &a, "-n", &b]);
    let refused = pair.a.enter(|| {
        let mut conn = TcpStream::connect(addr(ADDR_B, 7000)).unwrap();
        conn.write_all(b"hello").unwrap();
        drop(conn);
        let refused = TcpStream::connect(addr(ADDR_B, 7001)).is_err();
        let _ = TcpStream::connect_timeout(&addr(ADDR_B, 7002), Duration::from_millis(1500));
        let udp = UdpSocket::bind(addr(ADDR_A, 0)).unwrap();
        udp.send_to(b"anyone?", addr(ADDR_B, 7003)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        refused
    });
    assert_eq!(server.join().unwrap(), "hello");
    assert!(refused, "nothing listens on 7001");
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    let ev = &report.events;

    let reads = events(ev, "socket", &b);
    assert!(
        notes(&reads)
            .iter()
            .any(|n| n == "5 bytes read by the application"),
        "the server read 'hello': {reads:?}"
    );
    let sent = notes(&events(ev, "tcp", &b));
    assert!(
        sent.iter().any(|n| n.starts_with("reset sent")),
        "b answered the SYN to 7001 with a reset: {sent:?}"
    );
    let client = events(ev, "tcp", &a);
    let client_notes = notes(&client);
    assert!(
        client_notes.iter().any(|n| n == "reset received"),
        "a took the reset: {client_notes:?}"
    );
    let retransmits: Vec<_> = client
        .iter()
        .filter(|e| e["note"] == "retransmission" && e["dport"] == 7002)
        .collect();
    assert!(
        !retransmits.is_empty(),
        "the SYN to 7002 was retransmitted: {client_notes:?}"
    );
    let icmp = events(ev, "icmp_send", &b);
    assert!(
        icmp.iter()
            .any(|e| e["dport"] == 7003 && e["note"] == "answered with icmp type 3 code 3"),
        "port unreachable for the datagram to 7003: {icmp:?}"
    );
    assert!(
        !events(ev, "consume_skb", &b).is_empty(),
        "packets ended normally in b"
    );
    assert_eq!(report.stats()["lost_total"], 0);
}

/// A packet's points in the namespace `ns`: `hook position ifname dir`.
fn points_in(packet: &Value, ns: &str) -> Vec<String> {
    packet["path"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["netns_name"] == ns)
        .map(|p| {
            format!(
                "{} {} {} {}",
                p["hook"].as_str().unwrap(),
                p["position"].as_str().unwrap_or("-"),
                p["ifname"].as_str().unwrap_or("-"),
                p["dir"].as_str().unwrap()
            )
        })
        .collect()
}

/// A packet's tcpdump verdicts in the namespace `ns`: `ifname dir seen|unseen`.
fn verdicts_in(packet: &Value, ns: &str) -> Vec<String> {
    packet["capture"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["netns_name"] == ns)
        .map(|c| {
            let seen = if c["seen"] == true { "seen" } else { "unseen" };
            format!(
                "{} {} {seen}",
                c["ifname"].as_str().unwrap(),
                c["dir"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn forwarded_packets_cross_forward_and_a_route_lookup() {
    require_privileges();
    let net = Routed::create();
    let r = net.r.name.clone();
    let (a, b) = (&net.a.name, &net.b.name);
    // PREROUTING and POSTROUTING too, where nothing is registered.
    let tracer = Tracer::start(&[
        "--netfilter-hooks",
        "all",
        "-n",
        a,
        "-n",
        &r,
        "-n",
        b,
        "icmp",
    ]);
    let out = net.a.run(&format!("ping -c 2 -i 0.2 -W 1 {ROUTED_B}"));
    assert!(out.status.success(), "the router forwards");
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    let from = |src: &str| -> Vec<&Value> {
        report
            .packets()
            .filter(|p| p["src"] == src && p["proto"] == "icmp")
            .collect()
    };
    // Requests come in on ra and leave by rb; replies the other way round.
    for (packets, inward, outward) in [(from(ROUTED_A), "ra", "rb"), (from(ROUTED_B), "rb", "ra")] {
        assert_eq!(packets.len(), 2, "{:?}", report.records);
        for packet in packets {
            let in_router = points_in(packet, &r);
            // The FORWARD hook's state has both devices: `in`, where the packet came from, and
            // `out`, the route's output device. The tracer reports `out`, on its transmit side
            // (the input device was seen at PREROUTING), never `in`.
            for expected in [
                format!("nf_prerouting first {inward} rx"),
                format!("fib_lookup - {outward} -"),
                format!("nf_forward first {outward} tx"),
                format!("nf_forward last {outward} tx"),
                format!("nf_postrouting last {outward} tx"),
                format!("dev_xmit first {outward} tx"),
            ] {
                assert!(
                    in_router.contains(&expected),
                    "{expected} missing from the router's part: {in_router:?}"
                );
            }
            let forward: Vec<&String> = in_router
                .iter()
                .filter(|p| p.starts_with("nf_forward"))
                .collect();
            assert_eq!(
                forward.len(),
                2,
                "FORWARD once, first and last: {in_router:?}"
            );
            // The tcpdump verdicts agree: captured arriving on the input device and leaving by
            // the output one; FORWARD adds no receive verdict on the output device.
            assert_eq!(
                verdicts_in(packet, &r),
                [format!("{inward} rx seen"), format!("{outward} tx seen")],
                "{packet}"
            );
        }
    }
}

#[test]
fn ipv6_crosses_the_netfilter_hooks() {
    require_privileges();
    let pair = Pair::create();
    pair.a.sh("ip addr add fd00:201::1/64 dev va nodad");
    pair.b.sh("ip addr add fd00:201::2/64 dev vb nodad");
    let (a, b) = (&pair.a.name, &pair.b.name);
    let tracer = Tracer::start(&["--netfilter-hooks", "all", "-n", a, "-n", b, "icmp6"]);
    let out = pair.a.run("ping -6 -c 2 -i 0.2 -W 1 fd00:201::2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    let requests: Vec<&Value> = report
        .packets()
        .filter(|p| p["src"] == "fd00:201::1" && p["dst"] == "fd00:201::2")
        .filter(|p| {
            p["path"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["hook"] == "nf_local_in")
        })
        .collect();
    assert!(requests.len() >= 2, "{:?}", report.records);
    for request in requests {
        assert_eq!(
            netfilter_points(request),
            NETFILTER_PATH_TO_A_LOCAL_PEER,
            "{request}"
        );
        assert_eq!(request["proto"], "icmpv6");
    }
}

/// A journey's netfilter points, "hook position" ("nf_local_in first").
fn netfilter_points(journey: &Value) -> Vec<String> {
    journey["path"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["hook"].as_str().unwrap().starts_with("nf_"))
        .map(|p| {
            format!(
                "{} {}",
                p["hook"].as_str().unwrap(),
                p["position"].as_str().unwrap()
            )
        })
        .collect()
}

/// A connection from `a` to port 8080 of `b`, which a DNAT rule at b's PREROUTING sends to
/// 9090, traced with `filter`: the report and its SYN.
fn syn_through_dnat(filter: &str) -> (tests::Report, Value) {
    let pair = Pair::create();
    pair.b
        .sh("iptables -t nat -A PREROUTING -p tcp --dport 8080 -j DNAT --to-destination :9090");
    let server = pair.b.spawn(|| {
        let listener = TcpListener::bind(addr(ADDR_B, 9090)).unwrap();
        listener.accept().is_ok()
    });
    std::thread::sleep(Duration::from_millis(200));
    let tracer = Tracer::start(&["-n", &pair.a.name, "-n", &pair.b.name, filter]);
    pair.a
        .enter(|| TcpStream::connect(addr(ADDR_B, 8080)).expect("DNAT to 9090"));
    assert!(server.join().unwrap());
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    let syn = report
        .packets()
        .find(|p| p["tcp_flags"] == serde_json::json!(["SYN"]))
        .unwrap_or_else(|| panic!("the SYN: {:?}", report.records))
        .clone();
    (report, syn)
}

#[test]
fn a_packet_that_matched_is_followed_through_nat() {
    require_privileges();
    // The filter names the port before the rewrite only.
    let (report, syn) = syn_through_dnat("port 8080");
    let after_nat: Vec<&Value> = syn["path"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["hook"] == "nf_local_in")
        .collect();
    assert_eq!(after_nat.len(), 2, "followed to LOCAL_IN after DNAT: {syn}");
    let rewritten = report
        .events
        .iter()
        .filter(|e| {
            e["hook"] == "nf_local_in"
                && e["dport"] == 9090
                && e["tcp_flags"] == serde_json::json!(["SYN"])
        })
        .count();
    assert_eq!(
        rewritten, 2,
        "reported with the rewritten port, which the filter does not name"
    );
}

/// The other way round: the filter names the port after the rewrite only, so the packet is
/// left alone at PREROUTING's first program and taken at its last, behind the DNAT rule. (The
/// last program takes the first one's judgement only where nothing sits between the two.)
#[test]
fn a_packet_the_filter_names_only_after_nat_is_followed_from_the_rewrite_on() {
    require_privileges();
    let (_, syn) = syn_through_dnat("dst port 9090");
    assert_eq!(
        netfilter_points(&syn),
        [
            "nf_prerouting last",
            "nf_local_in first",
            "nf_local_in last"
        ],
        "seen from the rewrite on: {syn}"
    );
}

/// The source MAC another tool's tc program writes over va's frames.
const REWRITTEN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];

/// The same at tc: another tool's tcx program between the tracer's first and last ones at va's
/// egress writes a new source MAC, which the filter names, so the frame is left alone at the
/// first program and taken at the last. (The last program takes the first one's judgement
/// only where the two are the device's only tcx programs.)
#[test]
fn a_frame_the_filter_names_only_after_another_tc_program_rewrote_it_is_taken_at_the_last() {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    let _rewriter = Foreign::rewrite_source_mac(&pair.a.name, "va", REWRITTEN_MAC)
        .expect("the foreign tc program (tcx: 6.6+)");
    let tracer = Tracer::start(&[
        "-n",
        &pair.a.name,
        "-n",
        &pair.b.name,
        "icmp and ether src 02:00:00:00:00:99",
    ]);
    pair.a.sh(&format!("ping -c 1 -W 1 {ADDR_B}"));
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    let request = report
        .packets()
        .find(|p| p["src"] == ADDR_A && p["proto"] == "icmp")
        .unwrap_or_else(|| panic!("the echo request: {:?}", report.records));
    let seen_in_a = points_in(request, &pair.a.name);
    assert_eq!(
        seen_in_a.first().map(String::as_str),
        Some("tc_egress last va tx"),
        "seen from the rewrite on: {request}"
    );
    assert!(
        !seen_in_a.iter().any(|p| p.starts_with("tc_egress first")),
        "not at the first program, before the rewrite: {request}"
    );
}

/// Sends one TCP SYN with a deliberately wrong checksum from a raw socket (the kernel builds
/// the IP header; veth does not vouch for the checksum, so the receiver verifies it).
fn send_bad_checksum_syn(dst: &str, port: u16) {
    // SAFETY: socket(2), sendto(2) and close(2) on a descriptor we own, with buffers we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let mut segment = [0u8; 20];
        segment[0..2].copy_from_slice(&40000u16.to_be_bytes());
        segment[2..4].copy_from_slice(&port.to_be_bytes());
        segment[4..8].copy_from_slice(&1u32.to_be_bytes());
        segment[12] = 5 << 4; // data offset: 5 words
        segment[13] = 0x02; // SYN
        segment[14..16].copy_from_slice(&1024u16.to_be_bytes());
        segment[16..18].copy_from_slice(&0xdeadu16.to_be_bytes()); // wrong on purpose
        let ip: std::net::Ipv4Addr = dst.parse().unwrap();
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip.octets()),
            },
            sin_zero: [0; 8],
        };
        let sent = libc::sendto(
            fd,
            segment.as_ptr().cast(),
            segment.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        assert_eq!(sent, 20, "sendto: {}", std::io::Error::last_os_error());
        libc::close(fd);
    }
}

#[test]
fn a_segment_with_a_bad_checksum_is_reported() {
    require_privileges();
    let pair = Pair::create();
    let tracer = Tracer::start(&["-n", &pair.a.name, "-n", &pair.b.name, "tcp"]);
    pair.a.enter(|| send_bad_checksum_syn(ADDR_B, 7009));
    std::thread::sleep(Duration::from_millis(300));
    let report = tracer.finish();
    let bad = events(&report.events, "tcp", &pair.b.name);
    assert!(
        bad.iter()
            .any(|e| e["note"] == "bad checksum, discarded" && e["dport"] == 7009),
        "tcp_bad_csum for the segment to 7009: {bad:?}"
    );
}

#[test]
fn two_tracers_at_once_both_see_every_netfilter_hook() {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    // The kernel lets one BPF program sit at a priority of a hook: the second tracer takes the
    // next free one inward, still before and after every hook the kernel registers.
    let args = [
        "--netfilter-hooks",
        "all",
        "-n",
        pair.a.name.as_str(),
        "-n",
        pair.b.name.as_str(),
        "icmp",
    ];
    let first = Tracer::start(&args);
    let second = Tracer::start(&args);
    let out = pair.a.run(&format!("ping -c 1 -W 1 {ADDR_B}"));
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_millis(200));
    let reports = [second.finish(), first.finish()];
    for (which, report) in ["second", "first"].iter().zip(&reports) {
        assert!(
            !report.stderr.contains("is not observed"),
            "the {which} tracer could not attach everything:\n{}",
            report.stderr
        );
        let request = report
            .packets()
            .find(|p| p["src"] == ADDR_A && p["dst"] == ADDR_B)
            .unwrap_or_else(|| panic!("the {which} tracer saw the echo request"));
        let netfilter: Vec<String> = tests::path(request)
            .into_iter()
            .filter(|p| p.starts_with("nf_"))
            .collect();
        assert_eq!(
            netfilter, NETFILTER_PATH_TO_A_LOCAL_PEER,
            "the {which} tracer's path: {request}"
        );
    }
}
