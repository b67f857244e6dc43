//! A docker-like bridge with NAT: two "containers" on a Linux bridge in a "host" namespace,
//! which masquerades them towards an "outside" namespace it routes to.

use anyhow::Result;

use super::PORT;
use crate::{
    analysis::fate::FateKind,
    lab::{
        scenario::{Expect, Scenario},
        topology::Topology,
        traffic::{connect, listen},
    },
    model::sighting::{Proto, Sighting},
};

const BRIDGE_IP: &str = "172.30.0.1";
const CLI: &str = "172.30.0.2";
const WEB: &str = "172.30.0.3";
const OUTSIDE: &str = "10.99.0.2";

/// A SYN from the cli container to `dst` (before NAT: the tracer reports the first headers).
fn syn_to(dst: &'static str) -> impl Fn(&Sighting) -> bool + Send {
    move |s| {
        s.proto == Proto::Tcp
            && s.tcp_flags == ["SYN"]
            && s.dport == PORT
            && s.src.is_some_and(|a| a.to_string() == CLI)
            && s.dst.is_some_and(|a| a.to_string() == dst)
    }
}

/// `host` with bridge br0 (172.30.0.1/24) and ports vcli, vweb to the containers `cli`
/// (172.30.0.2) and `web` (172.30.0.3), MASQUERADE out of `uplink` (10.99.0.1) to `outside`
/// (10.99.0.2), as Docker sets up docker0. An iptables FORWARD rule in the host drops new
/// connections to web's port (a DOCKER-USER-like rule): br_netfilter passes bridged IPv4
/// frames through iptables, so it drops the frames the bridge forwards between containers.
pub fn bridge_nat(t: &mut Topology) -> Result<Scenario> {
    let host = t.netns("host")?;
    let cli = t.netns("cli")?;
    let web = t.netns("web")?;
    let outside = t.netns("outside")?;
    t.run(&format!("ip -n {host} link add br0 type bridge"))?;
    t.run(&format!("ip -n {host} addr add {BRIDGE_IP}/24 dev br0"))?;
    t.run(&format!("ip -n {host} link set br0 up"))?;
    for (container, port, ip) in [(&cli, "vcli", CLI), (&web, "vweb", WEB)] {
        t.run(&format!(
            "ip -n {host} link add {port} type veth peer name eth0 netns {container}"
        ))?;
        t.run(&format!("ip -n {host} link set {port} master br0 up"))?;
        t.run(&format!("ip -n {container} addr add {ip}/24 dev eth0"))?;
        t.run(&format!("ip -n {container} link set eth0 up"))?;
        t.run(&format!(
            "ip -n {container} route add default via {BRIDGE_IP}"
        ))?;
    }
    t.veth(
        (&host, "uplink", "10.99.0.1/24"),
        (&outside, "eth0", "10.99.0.2/24"),
    )?;
    t.run_in(&host, "sysctl -qw net.ipv4.ip_forward=1")?;
    // br_netfilter is what lets iptables see bridged frames (1 is the default where it is
    // built in; a loaded module makes it 1 too): said explicitly, as Docker does.
    t.run_in(&host, "sysctl -qw net.bridge.bridge-nf-call-iptables=1")?;
    t.run_in(
        &host,
        "iptables -t nat -A POSTROUTING -s 172.30.0.0/24 ! -o br0 -j MASQUERADE",
    )?;
    let rule = format!("-d {WEB} -p tcp --dport {PORT} --syn -j DROP");
    t.run_in(&host, &format!("iptables -I FORWARD {rule}"))?;

    let web_listener = listen(&web, WEB, PORT)?;
    let outside_listener = listen(&outside, OUTSIDE, PORT)?;
    let from = cli.clone();
    let traffic = move || {
        connect(&from, OUTSIDE, PORT)?;
        connect(&from, WEB, PORT)?;
        Ok(())
    };
    Ok(Scenario {
        netns: vec![host.clone(), cli, web, outside],
        filter: format!("tcp port {PORT}"),
        captures: vec![
            (host.clone(), "br0".into()),
            (host.clone(), "vcli".into()),
            (host.clone(), "vweb".into()),
            (host.clone(), "uplink".into()),
        ],
        capture_filters: Vec::new(),
        traffic: Box::new(traffic),
        lesson: "cli reaches the outside: the bridge hands its frames up to br0, the host \
            routes them out of uplink and MASQUERADE rewrites their source. Its SYNs to web \
            never cross the bridge: tcpdump on vcli shows them entering, on vweb nothing. They \
            are not routed, only bridged, yet an iptables FORWARD rule drops them, because \
            br_netfilter runs iptables for bridged frames (net.bridge.bridge-nf-call-iptables). \
            tcpdump on br0 shows them anyway: it puts the bridge in promiscuous mode, so the \
            bridge passes a copy of every forwarded frame up to br0, where IP discards it as \
            not for this host."
            .into(),
        fix: format!("ip netns exec {host} iptables -D FORWARD {rule}"),
        expect: vec![
            Expect::new("cli's SYN to the outside, masqueraded", syn_to(OUTSIDE))
                .fate(FateKind::Delivered)
                .first_only(),
            Expect::new("cli's SYNs to web across br0", syn_to(WEB))
                .dropped("nf_forward (first)", "NETFILTER_DROP")
                .at_least(2),
        ],
        held: vec![Box::new(web_listener), Box::new(outside_listener)],
    })
}
