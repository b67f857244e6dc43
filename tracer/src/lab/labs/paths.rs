//! Labs of routing: an asymmetric return path, a path MTU black hole, reverse-path filtering.

use anyhow::Result;

use super::{pair, routed, CLIENT, FAR_SERVER, PORT, SERVER};
use crate::{
    analysis::fate::FateKind,
    lab::{
        scenario::{between, tcp, Expect, Scenario},
        topology::Topology,
        traffic::{connect, listen, ping, send_bulk},
    },
    model::sighting::Proto,
};

pub fn asymmetric_route(t: &mut Topology) -> Result<Scenario> {
    let (client, server) = pair(t)?;
    t.veth(
        (&client, "c1", "10.200.3.1/24"),
        (&server, "s1", "10.200.3.2/24"),
    )?;
    // The client accepts packets for 10.200.1.1 on c1 (loose reverse-path check).
    t.run_in(
        &client,
        "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.c1.rp_filter=0",
    )?;
    let route = format!("{CLIENT}/32 via 10.200.3.1 dev s1");
    t.run(&format!("ip -n {server} route add {route}"))?;
    let listener = listen(&server, SERVER, PORT)?;
    let from = client.clone();
    Ok(Scenario {
        netns: vec![client, server.clone()],
        filter: format!("tcp port {PORT}"),
        captures: vec![(server.clone(), "s0".into()), (server.clone(), "s1".into())],
        capture_filters: Vec::new(),
        traffic: Box::new(move || connect(&from, SERVER, PORT).map(drop)),
        lesson: "The connection works, yet tcpdump on s0, where the SYN came in, shows no \
            SYN-ACK: the more specific route to the client sends every reply out by s1. A \
            capture on s1 (or on `any`) shows them leaving there."
            .into(),
        fix: format!("capture on every interface (-i any), or remove the route: ip -n {server} route del {route}"),
        expect: vec![
            Expect::new("the client's SYN", tcp(&["SYN"], PORT)).first_only(),
            Expect::new("the server's SYN-ACK", tcp(&["SYN", "ACK"], PORT))
                .fate(FateKind::Delivered)
                .first_only(),
        ],
        held: vec![Box::new(listener)],
    })
}

pub fn mtu_black_hole(t: &mut Topology) -> Result<Scenario> {
    let (client, router, server) = routed(t)?;
    t.run(&format!("ip -n {router} link set r1 mtu 1280"))?;
    // One TCP segment per packet from the client, as from a NIC without segmentation offload.
    // A veth hands its peer whole GSO packets unless that peer has an XDP program (the
    // tracer's, on r0), so without this the lab would put other packets on the wire when
    // traced than when not.
    t.run(&format!("ip -n {client} link set c0 gso_max_segs 1"))?;
    let rule = "-p icmp --icmp-type fragmentation-needed -j DROP";
    t.run_in(&router, &format!("iptables -A OUTPUT {rule}"))?;
    let listener = listen(&server, FAR_SERVER, PORT)?;
    let from = client.clone();
    Ok(Scenario {
        netns: vec![client.clone(), router.clone(), server],
        filter: format!("tcp port {PORT} or icmp"),
        captures: vec![(client, "c0".into()), (router.clone(), "r1".into())],
        capture_filters: Vec::new(),
        traffic: Box::new(move || send_bulk(&from, FAR_SERVER, PORT, 20_000, 2)),
        lesson: "The handshake passes: its packets are small. The client's full-size data \
            segments do not fit the router's 1280-byte link and have \"don't fragment\" set, so \
            the router drops them and sends ICMP \"fragmentation needed\"; its own OUTPUT rule \
            drops that ICMP, so the client never learns the path MTU and keeps resending, \
            until it gives up after two retransmission timeouts and resets the connection."
            .into(),
        fix: format!(
            "let the ICMP through (ip netns exec {router} iptables -D OUTPUT {rule}), or clamp \
             the MSS on the router (iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST \
             SYN -j TCPMSS --clamp-mss-to-pmtu)"
        ),
        expect: vec![
            Expect::new("the handshake's SYN", tcp(&["SYN"], PORT)).first_only(),
            // On the wire: single segments (gso_max_segs 1 on c0), and they meet the MTU.
            Expect::new("the client's large segments", |s| {
                s.proto == Proto::Tcp && s.dport == PORT && s.ip_len > 1280 && s.gso_segs <= 1
            })
            .dropped("nf_prerouting (last)", "PKT_TOO_BIG")
            .at_least(2),
            Expect::new("the router's ICMP fragmentation-needed", |s| {
                s.proto == Proto::Icmp && s.icmp_type == 3 && s.icmp_code == 4
            })
            .dropped("nf_local_out (first)", "NETFILTER_DROP"),
        ],
        held: vec![Box::new(listener)],
    })
}

pub fn rp_filter(t: &mut Topology) -> Result<Scenario> {
    let (client, server) = pair(t)?;
    // Strict checking drops ARP from the odd source too: the neighbours are known in advance.
    t.static_neighbours((&client, "c0", CLIENT), (&server, "s0", SERVER))?;
    t.run(&format!("ip -n {client} addr add 10.200.9.1/32 dev c0"))?;
    // A second way out of the server (a veth pair of its own), where 10.200.9.0/24 is routed.
    t.run(&format!(
        "ip -n {server} link add s1 type veth peer name s1peer"
    ))?;
    t.run(&format!("ip -n {server} addr add 10.200.8.2/24 dev s1"))?;
    t.run(&format!("ip -n {server} link set s1 up"))?;
    t.run(&format!("ip -n {server} link set s1peer up"))?;
    t.run(&format!(
        "ip -n {server} route add 10.200.9.0/24 via 10.200.8.1 dev s1"
    ))?;
    t.run_in(
        &server,
        "sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.s0.rp_filter=1",
    )?;
    let from = client.clone();
    Ok(Scenario {
        netns: vec![client, server.clone()],
        filter: "icmp".into(),
        captures: vec![(server.clone(), "s0".into())],
        capture_filters: Vec::new(),
        traffic: Box::new(move || ping(&from, Some("10.200.9.1"), SERVER, 3, 56)),
        lesson: "Echo requests from 10.200.9.1 arrive on s0 (tcpdump shows them), but the \
            server's route back to 10.200.9.0/24 goes by s1, not s0. With strict \
            reverse-path filtering (rp_filter=1) the route lookup rejects them."
            .into(),
        fix: format!(
            "route the source back by the interface it comes from, or loosen the check: \
             ip netns exec {server} sysctl -w net.ipv4.conf.all.rp_filter=2 \
             net.ipv4.conf.s0.rp_filter=2"
        ),
        expect: vec![Expect::new(
            "the echo requests from 10.200.9.1",
            between(Proto::Icmp, "10.200.9.1", SERVER),
        )
        .dropped("nf_prerouting (last)", "IP_RPFILTER")
        .at_least(3)],
        held: Vec::new(),
    })
}

pub fn neighbour_unanswered(t: &mut Topology) -> Result<Scenario> {
    let (client, router, _server) = routed(t)?;
    // The gateway is there, but answers no ARP request.
    t.run(&format!("ip -n {router} link set r0 arp off"))?;
    let from = client.clone();
    let fix = format!(
        "bring the gateway's ARP back (ip -n {router} link set r0 arp on), or check that \
         {GATEWAY} is the right gateway: ip -n {client} neigh show {GATEWAY} says FAILED"
    );
    let traffic = move || -> Result<()> {
        ping(&from, None, FAR_SERVER, 3, 56)?;
        // The requests wait in the neighbour entry's queue until the kernel gives up on the
        // gateway (three unanswered ARP requests, a second apart) and frees them: the entry
        // turning FAILED is that moment.
        wait_for_neighbour_failure(&from, GATEWAY)
    };
    Ok(Scenario {
        netns: vec![client.clone(), router.clone()],
        filter: "icmp".into(),
        captures: vec![(client, "c0".into())],
        capture_filters: Vec::new(),
        traffic: Box::new(traffic),
        lesson: format!(
            "The client's route to {FAR_SERVER} goes through the gateway {GATEWAY}, which never \
             answers ARP. Each echo request waits in the kernel's neighbour queue for the \
             gateway's link-layer address, while the kernel asks three times; then it gives up \
             and frees them (NEIGH_FAILED), and tells ping \"host unreachable\". tcpdump on c0 \
             shows the ARP requests (with `arp` in its filter), never the echo requests: they \
             died before its capture point, on their way out."
        ),
        fix,
        expect: vec![Expect::new(
            "the echo requests",
            between(Proto::Icmp, CLIENT, FAR_SERVER),
        )
        .dropped("nf_postrouting (last)", "NEIGH_FAILED")
        .at_least(3)],
        held: Vec::new(),
    })
}

/// The client's gateway in the routed topology.
const GATEWAY: &str = "10.200.1.254";

/// Waits (at most 10 s) until `netns`'s neighbour entry for `ip` is FAILED.
fn wait_for_neighbour_failure(netns: &str, ip: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let entry = harness::sh(&format!("ip -n {netns} neigh show {ip}"))?;
        if entry.contains("FAILED") {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the neighbour entry of {ip} never failed: {entry}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
