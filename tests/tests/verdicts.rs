//! Journeys, fates, explanations and the tcpdump verdict, on real traffic with a real tcpdump
//! on every interface involved: for every packet, the tracer's "seen by tcpdump on IFACE" must
//! match what that tcpdump captured. Each scenario prints its agreement figure.
//!
//! With `TRACER_FIXTURES_OUT=DIR` the recorded streams are kept: they are the fixtures the
//! tracer's unit tests replay (tracer/tests/fixtures).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use serde_json::Value;
use tests::{
    oracle::traced_beside_tcpdumps, require_privileges, veth, Netns, Pair, Report, Routed, ADDR_B,
    ROUTED_A,
};

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

/// Captures with tcpdump on `captures`, traces `namespaces` with `filter`, runs `traffic`, and
/// checks every verdict against the captures.
fn scenario(
    name: &str,
    namespaces: &[&Netns],
    captures: &[(&Netns, &str)],
    filter: &str,
    traffic: impl FnOnce(),
) -> Report {
    let names: Vec<&str> = namespaces.iter().map(|ns| ns.name.as_str()).collect();
    let (report, total) = traced_beside_tcpdumps(captures, &names, filter, traffic);
    report.keep_fixture(name);
    eprintln!("{name}: {}", total.figure());
    assert!(
        total.checked > 0,
        "{name}: no packet crossed a captured interface"
    );
    assert!(
        total.mismatches.is_empty(),
        "{name}: {}\n{:#?}\npackets: {:#?}",
        total.figure(),
        total.mismatches,
        report.packets().collect::<Vec<_>>()
    );
    report
}

fn explanation(record: &Value) -> String {
    record["explanation"]
        .as_array()
        .expect("an explanation")
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

fn flags(packet: &Value) -> String {
    packet["tcp_flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("-")
}

fn with_flags<'a>(report: &'a Report, wanted: &str) -> Vec<&'a Value> {
    report.packets().filter(|p| flags(p) == wanted).collect()
}

fn only_flow(report: &Report) -> &Value {
    let flows: Vec<&Value> = report.flows().collect();
    assert_eq!(flows.len(), 1, "one flow: {flows:#?}");
    flows[0]
}

/// Connects from `client` to `ADDR_B:port`, giving up after `timeout`.
fn connect(client: &Netns, port: u16, timeout: Duration) -> bool {
    client.enter(move || TcpStream::connect_timeout(&addr(ADDR_B, port), timeout).is_ok())
}

/// A listening socket in `server`, open until dropped.
fn listen(server: &Netns, port: u16) -> TcpListener {
    server.enter(move || TcpListener::bind(addr(ADDR_B, port)).unwrap())
}

#[test]
fn a_syn_dropped_at_local_in_was_seen_by_tcpdump_and_never_reached_tcp() {
    require_privileges();
    let pair = Pair::create();
    pair.b
        .sh("iptables -A INPUT -p tcp --dport 8080 --syn -j DROP");
    let _server = listen(&pair.b, 8080);
    let report = scenario(
        "syn_local_in_drop",
        &[&pair.a, &pair.b],
        &[(&pair.a, "va"), (&pair.b, "vb")],
        "tcp and port 8080",
        || assert!(!connect(&pair.a, 8080, Duration::from_millis(2500))),
    );
    let syns = with_flags(&report, "SYN");
    assert!(syns.len() >= 2, "the SYN and a retransmission");
    for syn in &syns {
        assert_eq!(syn["fate"]["kind"], "dropped");
        assert_eq!(syn["fate"]["hook"], "nf_local_in");
        assert_eq!(syn["fate"]["position"], "first");
        assert_eq!(syn["fate"]["reason"], "NETFILTER_DROP");
        let text = explanation(syn);
        assert!(text.contains("netfilter rule at LOCAL_IN"), "{text}");
        assert!(
            text.contains(&format!(
                "tcpdump on {}/vb ({}'s va) saw it arrive",
                pair.b.name, pair.a.name
            )),
            "{text}"
        );
        assert!(text.contains("TCP never received it"), "{text}");
    }
    assert!(explanation(syns[1]).contains("retransmission of packet"));
    assert!(with_flags(&report, "SYN-ACK").is_empty());
    let flow = only_flow(&report);
    assert_eq!(flow["diverge"]["hook"], "nf_local_in");
    assert!(explanation(flow).contains("retransmitted"), "{flow}");
}

#[test]
fn a_syn_ack_dropped_at_local_out_never_reached_tcpdump() {
    require_privileges();
    let pair = Pair::create();
    pair.b
        .sh("iptables -A OUTPUT -p tcp --sport 8080 --tcp-flags SYN,ACK SYN,ACK -j DROP");
    let _server = listen(&pair.b, 8080);
    let report = scenario(
        "synack_local_out_drop",
        &[&pair.a, &pair.b],
        &[(&pair.a, "va"), (&pair.b, "vb")],
        "tcp and port 8080",
        || assert!(!connect(&pair.a, 8080, Duration::from_millis(2500))),
    );
    for syn in with_flags(&report, "SYN") {
        assert_eq!(syn["fate"]["kind"], "delivered", "{syn}");
        assert_eq!(syn["fate"]["netns_name"], pair.b.name.as_str());
    }
    let answers = with_flags(&report, "SYN-ACK");
    assert!(!answers.is_empty(), "the server answered");
    for answer in &answers {
        assert_eq!(answer["fate"]["kind"], "dropped");
        assert_eq!(answer["fate"]["hook"], "nf_local_out");
        assert_eq!(answer["fate"]["reason"], "NETFILTER_DROP");
        let text = explanation(answer);
        assert!(text.contains("netfilter rule at LOCAL_OUT"), "{text}");
        assert!(
            text.contains(&format!(
                "died before the capture point of {}/vb ({}'s va)",
                pair.b.name, pair.a.name
            )),
            "{text}"
        );
    }
    let flow = explanation(only_flow(&report));
    assert!(
        flow.contains(&format!(
            "tcpdump on {}/vb ({}'s va) shows",
            pair.b.name, pair.a.name
        )) && flow.contains("SYN-ACK"),
        "{flow}"
    );
}

#[test]
fn no_listening_socket_is_answered_with_a_reset_that_the_client_accepts() {
    require_privileges();
    let pair = Pair::create();
    let report = scenario(
        "no_socket_reset",
        &[&pair.a, &pair.b],
        &[(&pair.a, "va"), (&pair.b, "vb")],
        "tcp and port 7001",
        || assert!(!connect(&pair.a, 7001, Duration::from_millis(1000))),
    );
    let syn = with_flags(&report, "SYN")[0];
    assert_eq!(syn["fate"]["reason"], "NO_SOCKET");
    let text = explanation(syn);
    assert!(
        text.contains("no socket listens on TCP port 7001"),
        "{text}"
    );
    assert!(text.contains("answered it with a reset"), "{text}");
    let reset = with_flags(&report, "ACK-RST")[0];
    assert_eq!(reset["fate"]["kind"], "delivered", "{reset}");
    assert!(
        explanation(reset).contains("accepted this reset"),
        "{reset}"
    );
}

#[test]
fn a_packet_larger_than_the_next_hop_mtu_is_answered_with_fragmentation_needed() {
    require_privileges();
    let net = Routed::create();
    net.r.sh("ip link set rb mtu 1280");
    net.b.sh("ip link set vb mtu 1280");
    let report = scenario(
        "mtu_frag_needed",
        &[&net.a, &net.r, &net.b],
        &[(&net.a, "va"), (&net.r, "ra"), (&net.r, "rb")],
        "icmp",
        || {
            let out = net
                .a
                .run(&format!("ping -c 1 -M do -s 1400 -W 1 {}", tests::ROUTED_B));
            assert!(!out.status.success(), "too big for the path");
        },
    );
    let request = report
        .packets()
        .find(|p| p["src"] == ROUTED_A && p["len"] == 1428)
        .expect("the big echo request");
    assert_eq!(request["fate"]["kind"], "dropped", "{request}");
    assert_eq!(request["fate"]["netns_name"], net.r.name.as_str());
    let text = explanation(request);
    assert!(text.contains("fragmentation needed"), "{text}");
    assert!(text.contains("larger than the MTU"), "{text}");
}

#[test]
fn a_router_without_a_route_drops_and_says_so() {
    require_privileges();
    let net = Routed::create();
    let report = scenario(
        "no_route",
        &[&net.a, &net.r],
        &[(&net.a, "va"), (&net.r, "ra")],
        "icmp",
        || {
            let out = net.a.run("ping -c 1 -W 1 10.202.9.9");
            assert!(!out.status.success(), "nothing routes there");
        },
    );
    let request = report
        .packets()
        .find(|p| p["dst"] == "10.202.9.9")
        .expect("the echo request");
    assert_eq!(request["fate"]["kind"], "dropped", "{request}");
    assert_eq!(request["fate"]["reason"], "IP_INNOROUTES");
    let text = explanation(request);
    assert!(text.contains("no route to 10.202.9.9"), "{text}");
    assert!(text.contains("network unreachable"), "{text}");
}

#[test]
fn a_reply_that_leaves_by_another_interface_is_explained() {
    require_privileges();
    let a = Netns::new("a");
    let b = Netns::new("b");
    veth(&a, ("va1", "10.203.1.1/24"), &b, ("vb1", "10.203.1.2/24"));
    veth(&a, ("va2", "10.203.2.1/24"), &b, ("vb2", "10.203.2.2/24"));
    a.sh("sysctl -q -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.va2.rp_filter=0");
    // A more specific route sends b's replies to a's first address out of its second link.
    b.sh("ip route add 10.203.1.1/32 via 10.203.2.1 dev vb2");
    let listener = b.enter(|| TcpListener::bind(addr("10.203.1.2", 8080)).unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        got
    });
    let report = scenario(
        "reply_other_interface",
        &[&a, &b],
        &[(&b, "vb1"), (&b, "vb2"), (&a, "va1"), (&a, "va2")],
        "tcp and port 8080",
        || {
            a.enter(|| {
                let mut conn = TcpStream::connect(addr("10.203.1.2", 8080)).unwrap();
                conn.write_all(b"hello").unwrap();
            });
            assert_eq!(server.join().unwrap(), "hello");
        },
    );
    let flow = explanation(only_flow(&report));
    let interfaces = format!(
        "on vb1 ({a}'s va1), but replies leave by vb2 ({a}'s va2)",
        a = a.name
    );
    assert!(flow.contains(&interfaces), "{flow}");
    let answer = with_flags(&report, "SYN-ACK")[0];
    let seen_on: Vec<String> = answer["capture"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["seen"] == true)
        .map(|c| c["ifname"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen_on, ["vb2", "va2"], "{answer}");
}

#[test]
fn offload_merged_segments_are_explained() {
    require_privileges();
    let pair = Pair::create();
    let listener = pair
        .b
        .enter(|| TcpListener::bind(addr(ADDR_B, 8080)).unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        got.len()
    });
    let report = scenario(
        "offload_merged",
        &[&pair.a, &pair.b],
        &[(&pair.a, "va"), (&pair.b, "vb")],
        "tcp and port 8080",
        || {
            pair.a.enter(|| {
                let mut conn = TcpStream::connect(addr(ADDR_B, 8080)).unwrap();
                conn.write_all(&vec![7u8; 16 * 1024]).unwrap();
            });
            assert_eq!(server.join().unwrap(), 16 * 1024);
        },
    );
    let merged: Vec<&Value> = report
        .packets()
        .filter(|p| p["gso_segs"].as_u64().unwrap_or(1) > 1)
        .collect();
    assert!(!merged.is_empty(), "some packets carried several segments");
    let text = explanation(merged[0]);
    assert!(text.contains("Offload (GSO/GRO)"), "{text}");
    assert!(merged[0]["len"].as_u64().unwrap() > 1500);
}
