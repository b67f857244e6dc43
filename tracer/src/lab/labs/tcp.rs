//! Labs of TCP resets: one sent for want of a listener, forged ones ignored.

use std::{net::TcpStream, time::Duration};

use anyhow::Result;
use harness::in_netns;

use super::{pair, routed, CLIENT, FAR_SERVER, PORT, SERVER};
use crate::{
    analysis::fate::FateKind,
    lab::{
        forged::{send_raw, Segment},
        scenario::{tcp, Expect, Scenario},
        topology::Topology,
        traffic::{accept, close_in_order, connect, listen},
    },
};

pub fn no_listener(t: &mut Topology) -> Result<Scenario> {
    let (client, server) = pair(t)?;
    let from = client.clone();
    Ok(Scenario {
        netns: vec![client, server.clone()],
        filter: format!("tcp port {PORT}"),
        captures: vec![(server.clone(), "s0".into())],
        capture_filters: Vec::new(),
        traffic: Box::new(move || connect(&from, SERVER, PORT).map(drop)),
        lesson: "Nothing listens on the port: TCP finds no socket for the SYN, frees it with \
            the reason NO_SOCKET and answers with a reset, which the client accepts \
            (\"connection refused\")."
            .into(),
        fix: format!("start the service on {SERVER}:{PORT}, or connect to the right port"),
        expect: vec![
            Expect::new("the client's SYN", tcp(&["SYN"], PORT))
                .dropped("nf_local_in (last)", "NO_SOCKET"),
            Expect::new("the server's reset", tcp(&["ACK", "RST"], PORT)).fate(FateKind::Delivered),
        ],
        held: Vec::new(),
    })
}

pub fn forged_resets(t: &mut Topology) -> Result<Scenario> {
    let (client, router, server) = routed(t)?;
    let rule = format!("-p tcp --sport {PORT} --tcp-flags RST RST -j DROP");
    t.run_in(&client, &format!("iptables -A INPUT {rule}"))?;
    let listener = listen(&server, FAR_SERVER, PORT)?;
    let (from, middle) = (client.clone(), router.clone());
    let traffic = move || -> Result<()> {
        let to = std::net::SocketAddr::from(([10, 200, 2, 1], PORT));
        let conn = in_netns(&from, move || {
            TcpStream::connect_timeout(&to, Duration::from_secs(2))
        })??;
        let (accepted, _) = accept(&listener)?;
        let client_port = conn.local_addr()?.port();
        // The middle box forges five resets "from the server", with made-up sequence numbers.
        for n in 0..5u32 {
            let segment = Segment {
                src: FAR_SERVER,
                dst: CLIENT,
                sport: PORT,
                dport: client_port,
                seq: 0x1000_0000 + n * 7919,
                flags: 0x04,
            };
            send_raw(&middle, &segment)?;
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        close_in_order(conn, accepted)
    };
    Ok(Scenario {
        netns: vec![client.clone(), router, server],
        filter: format!("tcp port {PORT} and tcp[tcpflags] & tcp-rst != 0"),
        captures: vec![(client.clone(), "c0".into())],
        capture_filters: Vec::new(),
        traffic: Box::new(traffic),
        lesson: "Five resets arrive at the client (tcpdump on c0 shows them) claiming to come \
            from the server, forged by the router in between. The client's INPUT rule drops \
            every reset from the server's port at LOCAL_IN, so TCP never sees them and the \
            connection survives the flood (and would ignore a genuine reset too)."
            .into(),
        fix: format!(
            "the rule is the defence here; to let genuine resets through again: ip netns exec \
             {client} iptables -D INPUT {rule}"
        ),
        expect: vec![Expect::new("the forged resets", tcp(&["RST"], PORT))
            .dropped("nf_local_in (first)", "NETFILTER_DROP")
            .at_least(5)],
        held: Vec::new(),
    })
}
