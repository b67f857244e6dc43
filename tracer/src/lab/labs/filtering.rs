//! Labs of netfilter rules: iptables and nftables at LOCAL_IN, LOCAL_OUT, FORWARD, and
//! conntrack's INVALID state.

use std::time::Duration;

use anyhow::Result;

use super::{pair, routed, CLIENT, FAR_SERVER, PORT, SERVER};
use crate::{
    analysis::fate::FateKind,
    lab::{
        forged::{send_raw, Segment},
        scenario::{tcp, tcp_data_from, Expect, Scenario},
        topology::Topology,
        traffic::{connect, exchange, listen},
    },
    model::sighting::Proto,
};

/// The first namespace (the client) tries to connect to the last one (the server, listening
/// at `server_ip`) until its kernel gives up; all of them are traced.
fn connect_scenario(
    netns: Vec<String>,
    server_ip: &'static str,
    captures: Vec<(String, String)>,
) -> Result<Scenario> {
    let (client, server) = (netns[0].clone(), &netns[netns.len() - 1]);
    let listener = listen(server, server_ip, PORT)?;
    Ok(Scenario {
        netns,
        filter: format!("tcp port {PORT}"),
        capture_filters: Vec::new(),
        captures,
        traffic: Box::new(move || connect(&client, server_ip, PORT).map(drop)),
        lesson: String::new(),
        fix: String::new(),
        expect: Vec::new(),
        held: vec![Box::new(listener)],
    })
}

pub fn local_in_drop(t: &mut Topology) -> Result<Scenario> {
    let (client, server) = pair(t)?;
    let rule = format!("-p tcp --dport {PORT} --syn -j DROP");
    t.run_in(&server, &format!("iptables -A INPUT {rule}"))?;
    let captures = vec![(server.clone(), "s0".into())];
    let mut lab = connect_scenario(vec![client, server.clone()], SERVER, captures)?;
    lab.lesson = "tcpdump on s0 shows every SYN arriving: its tap sits before netfilter. The \
        INPUT rule drops them at LOCAL_IN, so TCP never sees them and never answers; the client \
        retries until it gives up."
        .into();
    lab.fix = format!("ip netns exec {server} iptables -D INPUT {rule}");
    lab.expect = vec![Expect::new("the client's SYNs", tcp(&["SYN"], PORT))
        .dropped("nf_local_in (first)", "NETFILTER_DROP")
        .at_least(2)];
    Ok(lab)
}

pub fn local_out_drop(t: &mut Topology) -> Result<Scenario> {
    let (client, server) = pair(t)?;
    let rule = format!("-p tcp --sport {PORT} --tcp-flags SYN,ACK SYN,ACK -j DROP");
    t.run_in(&server, &format!("iptables -A OUTPUT {rule}"))?;
    // The server answers each SYN once and its half-open connection's own timer resends
    // nothing: that timer is due at the very moment the client's next SYN arrives (both wait
    // 1 s), and which came first would decide how many SYN-ACKs a run sends.
    t.run_in(&server, "sysctl -qw net.ipv4.tcp_synack_retries=0")?;
    let captures = vec![(server.clone(), "s0".into())];
    let mut lab = connect_scenario(vec![client, server.clone()], SERVER, captures)?;
    lab.lesson = "The capture on s0 shows only the client's SYNs and their retransmissions, \
        exactly as in local-in-drop. But here TCP did receive them and answered each one: the \
        SYN-ACKs died in the OUTPUT chain at LOCAL_OUT, before they could reach the transmit \
        tap."
        .into();
    lab.fix = format!("ip netns exec {server} iptables -D OUTPUT {rule}");
    lab.expect = vec![
        Expect::new("the client's SYNs", tcp(&["SYN"], PORT)).at_least(2),
        Expect::new("the server's SYN-ACKs", tcp(&["SYN", "ACK"], PORT))
            .dropped("nf_local_out (first)", "NETFILTER_DROP"),
    ];
    Ok(lab)
}

pub fn response_drop(t: &mut Topology) -> Result<Scenario> {
    let (client, server) = pair(t)?;
    // No ARP: the server, which never gets its data acknowledged, would otherwise probe the
    // client's address about 5 s after its SYN-ACK (its entry never confirmed), or not,
    // depending on when the neighbour timer fires: one packet each way that a run counts or
    // does not (`--neutrality`).
    t.static_neighbours((&client, "c0", CLIENT), (&server, "s0", SERVER))?;
    t.run_in(&server, "nft add table inet lab")?;
    t.run_in(
        &server,
        "nft add chain inet lab out { type filter hook output priority 0 ; }",
    )?;
    t.run_in(
        &server,
        &format!("nft add rule inet lab out tcp sport {PORT} ip length gt 200 counter drop"),
    )?;
    let listener = listen(&server, SERVER, PORT)?;
    let from = client.clone();
    let traffic = move || exchange(&from, &listener, (SERVER, PORT), (100, 1000), 2).map(drop);
    Ok(Scenario {
        netns: vec![client, server.clone()],
        filter: format!("tcp port {PORT}"),
        captures: vec![(server.clone(), "s0".into())],
        capture_filters: Vec::new(),
        traffic: Box::new(traffic),
        lesson: "The request reached the server's application (its socket read it) and was \
            acknowledged. The 1000-byte response was dropped by the nftables rule at LOCAL_OUT \
            each time the server sent it, so tcpdump on s0 never shows it, and the client \
            waits in vain. The data never left, so TCP probes with it when its timer fires; \
            after two timeouts the server gives up and resets the connection (a reset is \
            small: the rule lets it through)."
            .into(),
        fix: format!("ip netns exec {server} nft delete table inet lab"),
        expect: vec![
            Expect::new("the client's request", |s| {
                s.proto == Proto::Tcp && s.dport == PORT && s.tcp_flags.has("PSH")
            })
            .fate(FateKind::Delivered)
            .first_only(),
            Expect::new("the server's responses", tcp_data_from(PORT))
                .dropped("nf_local_out (first)", "NETFILTER_DROP")
                .at_least(2),
        ],
        held: Vec::new(),
    })
}

pub fn forward_drop(t: &mut Topology) -> Result<Scenario> {
    let (client, router, server) = routed(t)?;
    let rule = format!("-p tcp --dport {PORT} -j DROP");
    t.run_in(&router, &format!("iptables -A FORWARD {rule}"))?;
    let captures = vec![(router.clone(), "r0".into()), (router.clone(), "r1".into())];
    let mut lab = connect_scenario(vec![client, router.clone(), server], FAR_SERVER, captures)?;
    lab.lesson = "The router receives every SYN (tcpdump on r0 shows them) and routes them \
        towards r1, but its FORWARD chain drops them: nothing leaves by r1."
        .into();
    lab.fix = format!("ip netns exec {router} iptables -D FORWARD {rule}");
    lab.expect = vec![Expect::new("the client's SYNs", tcp(&["SYN"], PORT))
        .dropped("nf_forward (first)", "NETFILTER_DROP")
        .at_least(2)];
    Ok(lab)
}

pub fn conntrack_invalid(t: &mut Topology) -> Result<Scenario> {
    let (client, server) = pair(t)?;
    let rule = "-m conntrack --ctstate INVALID -j DROP";
    t.run_in(&server, &format!("iptables -A INPUT {rule}"))?;
    let from = client.clone();
    let traffic = move || {
        for n in 0..3u32 {
            // SYN and FIN together: no TCP state allows it, conntrack calls it INVALID.
            let segment = Segment {
                src: CLIENT,
                dst: SERVER,
                sport: 40000 + n as u16,
                dport: PORT,
                seq: 1000 + n,
                flags: 0x03,
            };
            send_raw(&from, &segment)?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    };
    Ok(Scenario {
        netns: vec![client, server.clone()],
        filter: format!("tcp port {PORT}"),
        captures: vec![(server.clone(), "s0".into())],
        capture_filters: Vec::new(),
        traffic: Box::new(traffic),
        lesson: "Three segments with SYN and FIN both set arrive (tcpdump on s0 shows them). \
            Conntrack finds no TCP state that allows them and marks them INVALID; the INPUT \
            rule matching that state drops them at LOCAL_IN, so no reset answers them."
            .into(),
        fix: format!(
            "find what sends invalid segments; to let them reach TCP: ip netns exec {server} \
             iptables -D INPUT {rule}"
        ),
        expect: vec![
            Expect::new("the SYN+FIN segments", tcp(&["SYN", "FIN"], PORT))
                .dropped("nf_local_in (first)", "NETFILTER_DROP")
                .at_least(3),
        ],
        held: Vec::new(),
    })
}
