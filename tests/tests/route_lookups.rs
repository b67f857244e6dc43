//! Route lookups of packets the filter does not want: a received packet's lookup has no
//! protocol or ports, and is judged by the packet netfilter saw just before it.

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use serde_json::Value;
use tests::{require_privileges, Routed, Tracer, ROUTED_A, ROUTED_B};

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

/// A received packet's route lookup has no protocol or ports (forwarding, an unconnected UDP
/// socket): the tracer judges it by the packet netfilter saw just before it, and sends
/// nothing for packets the filter does not want. (The lookups of packets it does want are
/// still reported: `points::forwarded_packets_cross_forward_and_a_route_lookup`.)
#[test]
fn route_lookups_of_packets_the_filter_leaves_alone_are_not_reported() {
    require_privileges();
    let net = Routed::create();
    // Bound before the trace starts and read after the datagrams are sent: how long the
    // tracer takes to start is no part of the test.
    let server = net
        .b
        .enter(|| UdpSocket::bind(addr(ROUTED_B, 7010)).unwrap());
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The neighbours resolved before the trace: ARP's own route lookups (a few per
    // resolution, not per packet) pass no netfilter hook that could judge them.
    let warm = net.a.run(&format!("ping -c 1 -W 1 {ROUTED_B}"));
    assert!(warm.status.success(), "the router forwards");
    let (a, r, b) = (&net.a.name, &net.r.name, &net.b.name);
    let tracer = Tracer::start(&["-n", a, "-n", r, "-n", b, "tcp"]);
    let out = net.a.run(&format!("ping -c 2 -i 0.2 -W 1 {ROUTED_B}"));
    assert!(out.status.success(), "the router forwards");
    net.a.enter(|| {
        // Bound to no address: binding to one checks it is local, a lookup of no packet's.
        let udp = UdpSocket::bind(addr("0.0.0.0", 0)).unwrap();
        for _ in 0..3 {
            udp.send_to(b"anyone?", addr(ROUTED_B, 7010)).unwrap();
        }
    });
    let mut buf = [0u8; 64];
    let read = (0..3)
        .filter(|_| server.recv_from(&mut buf).is_ok())
        .count();
    assert_eq!(read, 3, "b's unconnected socket read them");
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    let lookups: Vec<&Value> = report
        .events
        .iter()
        .filter(|e| e["hook"] == "fib_lookup")
        .collect();
    assert!(
        lookups.is_empty(),
        "route lookups of packets the filter leaves alone: {lookups:?}"
    );
    assert_eq!(report.stats()["lost_total"], 0);
}
