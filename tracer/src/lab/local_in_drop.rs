//! Lab 1: an iptables INPUT rule drops the client's SYNs at LOCAL_IN on the server. tcpdump on
//! the server's interface shows every SYN arriving (its tap sits before netfilter), yet the
//! server's TCP never answers.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use anyhow::{Context, Result};

use super::{
    capture::Tcpdump,
    topology::{sh, Topology},
};
use crate::{
    cmd::trace::{report, Format},
    netns::Netns,
    session::{self, TraceOptions},
};

const SERVER: &str = "10.200.1.2";
const PORT: u16 = 8080;

pub fn run(format: Format) -> Result<()> {
    let mut topology = Topology::new();
    let client = topology.netns("client")?;
    let server = topology.netns("server")?;
    topology.veth(
        (&client, "c0", "10.200.1.1/24"),
        (&server, "s0", "10.200.1.2/24"),
    )?;
    let rule =
        format!("ip netns exec {server} iptables -A INPUT -p tcp --dport {PORT} --syn -j DROP");
    sh(&rule)?;

    let server_ns = Netns::open(&server)?;
    let listener = server_ns.run(|| TcpListener::bind((SERVER, PORT)))??;

    eprintln!(
        "lab local-in-drop: {}",
        super::find("local-in-drop").map_or("", |l| l.summary)
    );
    eprintln!("  topology: {client} (10.200.1.1, c0) <-> {server} (10.200.1.2, s0); the server listens on tcp/{PORT}");
    eprintln!("  fault:    {rule}");
    eprintln!("  traffic:  the client connects to {SERVER}:{PORT}, giving up after 2.5 s");

    let options = TraceOptions {
        netns: vec![client.clone(), server.clone()],
        interfaces: Vec::new(),
        filter: crate::filter::compile(&[format!("tcp port {PORT}")])?,
        ring_bytes: 1 << 22,
        count: None,
        snaplen: 0,
    };
    let tcpdump = Tcpdump::start(&server, "s0", &format!("tcp port {PORT}"))?;
    let client_ns = Netns::open(&client)?;
    let (recording, stats) = session::trace(&options, || {
        let traffic = tokio::task::spawn_blocking(move || {
            client_ns.run(|| {
                let addr: SocketAddr =
                    (SERVER.parse::<std::net::IpAddr>().expect("literal"), PORT).into();
                TcpStream::connect_timeout(&addr, Duration::from_millis(2500)).is_ok()
            })
        });
        Ok(async {
            let _ = traffic.await;
            // Let the last events of the stack reach the ring buffer.
            tokio::time::sleep(Duration::from_millis(200)).await;
        })
    })?;
    drop(listener);
    let captured = tcpdump.stop().context("reading the capture")?;

    println!("What tcpdump on the server showed:");
    println!("$ ip netns exec {server} tcpdump -i s0 -n tcp port {PORT}");
    for line in &captured {
        println!("    {line}");
    }
    println!("What the tracer saw:");
    report(
        format,
        &crate::analysis::Analysis::new(recording, None),
        &stats,
    )?;
    println!("Fix: remove the rule (ip netns exec {server} iptables -D INPUT -p tcp --dport {PORT} --syn -j DROP).");
    Ok(())
}
