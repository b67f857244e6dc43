//! tcpdump filter expressions mean in the tracer what they mean in tcpdump: for each
//! expression, a real tcpdump with it on `vb` and the tracer with it must select the same
//! packets of the same mixed traffic (ICMP, TCP with a reset, UDP, ICMPv6). Prints the table
//! the README shows.

use std::{
    net::{SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use tests::{oracle::agreement, require_privileges, Netns, Pair, Tcpdump, Tracer, ADDR_A, ADDR_B};

const EXPRESSIONS: [&str; 14] = [
    "icmp",
    "tcp",
    "udp",
    "ip6",
    "host 10.201.0.1",
    "src host 10.201.0.2",
    "dst port 7001",
    "tcp port 7001 or udp port 7002",
    "portrange 7000-7002",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-rst|tcp-fin) != 0 and not port 7001",
    "icmp[icmptype] = icmp-echoreply",
    "net 10.201.0.0/24 and greater 100",
    "ip and not (tcp or udp)",
];

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

/// The same mix every time: 2 pings, a TCP exchange on 7001, a connection refused on 7003,
/// 2 UDP datagrams to 7002 (150 bytes and 10), 2 IPv6 pings.
fn traffic(pair: &Pair) {
    let udp = pair
        .b
        .enter(|| UdpSocket::bind(addr(ADDR_B, 7002)).unwrap());
    pair.ping_and_exchange(7001, || {
        assert!(TcpStream::connect(addr(ADDR_B, 7003)).is_err());
        let sender = UdpSocket::bind(addr(ADDR_A, 0)).unwrap();
        sender.send_to(&[b'u'; 150], addr(ADDR_B, 7002)).unwrap();
        sender.send_to(&[b'u'; 10], addr(ADDR_B, 7002)).unwrap();
    });
    drop(udp);
    pair.a.sh("ping -6 -c 2 -i 0.2 -W 1 fd00:201::2");
}

fn ipv6(ns: &Netns, ifname: &str, addr: &str) {
    ns.sh(&format!("ip addr add {addr}/64 dev {ifname} nodad"));
}

#[test]
fn filters_select_the_packets_tcpdump_selects() {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    ipv6(&pair.a, "va", "fd00:201::1");
    ipv6(&pair.b, "vb", "fd00:201::2");
    // Neighbour discovery would race with the captures (a stale entry is probed at any
    // time, also while tcpdump runs and the tracer is still attaching): none at all.
    let mac = |ns: &Netns, ifname: &str| ns.sh(&format!("cat /sys/class/net/{ifname}/address"));
    let (mac_a, mac_b) = (mac(&pair.a, "va"), mac(&pair.b, "vb"));
    pair.a.sh(&format!(
        "ip -6 neigh replace fd00:201::2 lladdr {} dev va nud permanent",
        mac_b.trim()
    ));
    pair.b.sh(&format!(
        "ip -6 neigh replace fd00:201::1 lladdr {} dev vb nud permanent",
        mac_a.trim()
    ));
    let mut table = vec![
        "| expression | tcpdump on vb | tracer (seen at vb) | agree |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    let mut failures = Vec::new();
    for expression in EXPRESSIONS {
        // tcpdump's window lies inside the tracer's: it starts after the tracer is attached
        // and stops before the tracer does.
        let mut args = vec!["-n", pair.a.name.as_str(), "-n", pair.b.name.as_str()];
        args.extend(expression.split_whitespace());
        let tracer = Tracer::start(&args);
        let tcpdump = Tcpdump::start(&pair.b, "vb", expression);
        traffic(&pair);
        std::thread::sleep(Duration::from_millis(300));
        let captured = tcpdump.stop_capture();
        let report = tracer.finish();
        let result = agreement(&report, &pair.b.name, "vb", &captured);
        let seen = report
            .packets()
            .filter(|p| {
                p["capture"].as_array().is_some_and(|c| {
                    c.iter().any(|c| {
                        c["ifname"] == "vb"
                            && c["netns_name"] == pair.b.name.as_str()
                            && c["seen"] == true
                    })
                })
            })
            .count();
        let agree = result.mismatches.is_empty() && seen == captured.packets.len();
        table.push(format!(
            "| `{}` | {} | {seen} | {} |",
            expression.replace('|', "\\|"),
            captured.packets.len(),
            if agree { "yes" } else { "NO" }
        ));
        if !agree {
            failures.push(format!("{expression}: {:#?}", result.mismatches));
        }
        if captured.packets.is_empty() {
            failures.push(format!(
                "'{expression}' selected nothing: a row that proves nothing"
            ));
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `greater N` (the frame's length, as tcpdump counts it on the veth) at `netif_receive`,
/// where the kernel has already pulled the Ethernet header: traced only in the receiving
/// namespace, nothing follows the datagram from the sender, so `netif_receive` judges it by
/// itself. A 100-byte frame (58 bytes of UDP payload) is `greater 100`; a 99-byte one is not.
#[test]
fn frame_length_at_netif_receive_counts_the_link_header() {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    let tracer = Tracer::start(&["-n", pair.b.name.as_str(), "greater", "100"]);
    let udp = pair
        .b
        .enter(|| UdpSocket::bind(addr(ADDR_B, 7004)).unwrap());
    pair.a.enter(|| {
        let sender = UdpSocket::bind(addr(ADDR_A, 0)).unwrap();
        sender.send_to(&[b'u'; 58], addr(ADDR_B, 7004)).unwrap();
        sender.send_to(&[b'u'; 57], addr(ADDR_B, 7004)).unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(udp);
    let report = tracer.finish();
    let datagrams: Vec<&serde_json::Value> = report
        .packets()
        .filter(|p| p["proto"] == "udp" && p["dport"] == 7004)
        .collect();
    assert_eq!(
        datagrams.len(),
        1,
        "only the 100-byte frame is greater 100: {datagrams:#?}"
    );
    let points = tests::path(datagrams[0]);
    assert_eq!(
        points.first().map(String::as_str),
        Some("netif_receive"),
        "netif_receive judges the frame's length with its Ethernet header: {points:?}"
    );
}
