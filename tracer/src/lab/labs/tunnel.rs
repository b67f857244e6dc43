//! Labs of overlays: a VXLAN tunnel whose underlay drops the encapsulated datagrams.

use anyhow::Result;

use super::{pair, CLIENT, PORT, SERVER};
use crate::lab::{
    scenario::{tcp, Expect, Scenario},
    topology::Topology,
    traffic::{connect, listen},
};

/// The overlay addresses, on vxlan0 in each namespace.
const CLIENT_INNER: &str = "192.168.200.1";
const SERVER_INNER: &str = "192.168.200.2";
const VNI: u32 = 42;
const VXLAN_PORT: u16 = 4789;

/// `client` and `server` of [`pair`], with a VXLAN overlay (VNI 42, port 4789) over their
/// veth: 192.168.200.1 and .2 on vxlan0, with permanent neighbour entries so that no ARP has
/// to cross the tunnel (a fault in the underlay would drop it too).
fn overlay(t: &mut Topology) -> Result<(String, String)> {
    let (client, server) = pair(t)?;
    for (ns, local, remote, dev, inner) in [
        (&client, CLIENT, SERVER, "c0", CLIENT_INNER),
        (&server, SERVER, CLIENT, "s0", SERVER_INNER),
    ] {
        t.run(&format!(
            "ip -n {ns} link add vxlan0 type vxlan id {VNI} dstport {VXLAN_PORT} local {local} \
             remote {remote} dev {dev}"
        ))?;
        t.run(&format!("ip -n {ns} addr add {inner}/24 dev vxlan0"))?;
        t.run(&format!("ip -n {ns} link set vxlan0 up"))?;
    }
    t.static_neighbours(
        (&client, "vxlan0", CLIENT_INNER),
        (&server, "vxlan0", SERVER_INNER),
    )?;
    Ok((client, server))
}

/// A capture filter for the underlay: the VXLAN datagrams that carry TCP to or from `PORT`
/// (the inner TCP ports lie 50 bytes into the UDP header: UDP 8, VXLAN 8, Ethernet 14, IPv4
/// 20), so that it holds the traced packets and nothing else.
fn underlay_filter() -> String {
    format!("udp dst port {VXLAN_PORT} and (udp[50:2] = {PORT} or udp[52:2] = {PORT})")
}

pub fn overlay_underlay_drop(t: &mut Topology) -> Result<Scenario> {
    let (client, server) = overlay(t)?;
    let rule = format!("-p udp --dport {VXLAN_PORT} -s {CLIENT} -j DROP");
    t.run_in(&server, &format!("iptables -A INPUT {rule}"))?;
    let listener = listen(&server, SERVER_INNER, PORT)?;
    let from = client.clone();
    let underlay = underlay_filter();
    Ok(Scenario {
        netns: vec![client.clone(), server.clone()],
        filter: format!("tcp port {PORT}"),
        captures: vec![
            (client.clone(), "vxlan0".into()),
            (client.clone(), "c0".into()),
            (server.clone(), "s0".into()),
        ],
        capture_filters: vec![
            (client.clone(), "c0".into(), underlay.clone()),
            (server.clone(), "s0".into(), underlay),
        ],
        traffic: Box::new(move || connect(&from, SERVER_INNER, PORT).map(drop)),
        lesson: format!(
            "The client's SYNs leave by the tunnel: tcpdump on its vxlan0 shows them, and \
             nothing comes back. In the underlay each SYN is a UDP datagram {CLIENT} > \
             {SERVER} port {VXLAN_PORT} (VXLAN VNI {VNI}): `tcpdump -i c0 tcp port {PORT}` \
             shows nothing, a filter on the outer headers shows them leave and arrive on s0. \
             The server's INPUT rule drops the datagrams at LOCAL_IN, before the VXLAN socket \
             could take the outer headers off: the server's vxlan0 never sees a SYN, and TCP \
             never answers."
        ),
        fix: format!(
            "let the tunnel's datagrams in: ip netns exec {server} iptables -D INPUT {rule}"
        ),
        expect: vec![Expect::new("the client's SYNs", tcp(&["SYN"], PORT))
            .dropped("nf_local_in (first)", "NETFILTER_DROP")
            .at_least(2)],
        held: vec![Box::new(listener)],
    })
}
