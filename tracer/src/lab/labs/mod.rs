//! The labs, and the topologies they share.

mod bridge;
mod filtering;
mod healthy;
mod paths;
mod programs;
mod tcp;
mod tunnel;

use anyhow::Result;

use super::{topology::Topology, Lab};

pub const CLIENT: &str = "10.200.1.1";
pub const SERVER: &str = "10.200.1.2";
/// The server in the routed topology, behind the router.
pub const FAR_SERVER: &str = "10.200.2.1";
pub const PORT: u16 = 8080;

pub const LABS: &[Lab] = &[
    Lab {
        name: "local-in-drop",
        summary: "a SYN dropped by an iptables INPUT rule: tcpdump sees it, TCP never does",
        build: filtering::local_in_drop,
    },
    Lab {
        name: "local-out-drop",
        summary: "the SYN-ACK dropped by an iptables OUTPUT rule: the capture looks like lab 1",
        build: filtering::local_out_drop,
    },
    Lab {
        name: "response-drop",
        summary: "the response dropped by an nftables rule after the request reached the server",
        build: filtering::response_drop,
    },
    Lab {
        name: "xdp-drop",
        summary: "an XDP program drops on the receiving interface: no capture at all",
        build: programs::xdp_drop,
    },
    Lab {
        name: "tc-egress-drop",
        summary: "a tc egress program drops before the transmit tap: tcpdump never sees it",
        build: programs::tc_egress_drop,
    },
    Lab {
        name: "tc-ingress-drop",
        summary: "a tc ingress program drops after the receive tap: tcpdump sees it anyway",
        build: programs::tc_ingress_drop,
    },
    Lab {
        name: "asymmetric-route",
        summary: "the reply leaves by another interface (a more specific route)",
        build: paths::asymmetric_route,
    },
    Lab {
        name: "mtu-black-hole",
        summary: "a smaller MTU on the path, DF set, ICMP 'fragmentation needed' blocked",
        build: paths::mtu_black_hole,
    },
    Lab {
        name: "rp-filter",
        summary: "strict reverse-path filtering drops packets whose source routes elsewhere",
        build: paths::rp_filter,
    },
    Lab {
        name: "no-listener",
        summary: "nothing listens on the port: the SYN ends in a reset, located",
        build: tcp::no_listener,
    },
    Lab {
        name: "forged-resets",
        summary: "a middle box forges resets; an INPUT rule makes the client ignore them",
        build: tcp::forged_resets,
    },
    Lab {
        name: "forward-drop",
        summary: "a router namespace drops in FORWARD: in on one side, never out the other",
        build: filtering::forward_drop,
    },
    Lab {
        name: "neighbour-unanswered",
        summary: "a gateway that never answers ARP: packets wait, then die before the capture",
        build: paths::neighbour_unanswered,
    },
    Lab {
        name: "nothing-wrong",
        summary: "the control: healthy connections and pings, and no drop reported",
        build: healthy::nothing_wrong,
    },
    Lab {
        name: "conntrack-invalid",
        summary: "conntrack marks a segment INVALID and a rule drops it",
        build: filtering::conntrack_invalid,
    },
    Lab {
        name: "bridge-nat",
        summary: "a docker-like bridge with NAT: an iptables FORWARD rule drops bridged frames",
        build: bridge::bridge_nat,
    },
    Lab {
        name: "overlay-underlay-drop",
        summary: "a VXLAN overlay whose underlay drops the encapsulated datagrams",
        build: tunnel::overlay_underlay_drop,
    },
];

/// `client` (c0, 10.200.1.1) <-> `server` (s0, 10.200.1.2).
pub fn pair(t: &mut Topology) -> Result<(String, String)> {
    let client = t.netns("client")?;
    let server = t.netns("server")?;
    t.veth(
        (&client, "c0", "10.200.1.1/24"),
        (&server, "s0", "10.200.1.2/24"),
    )?;
    Ok((client, server))
}

/// `client` (c0, 10.200.1.1) <-> (r0, 10.200.1.254) `router` (r1, 10.200.2.254) <->
/// `server` (s0, 10.200.2.1), the router forwarding.
pub fn routed(t: &mut Topology) -> Result<(String, String, String)> {
    let client = t.netns("client")?;
    let router = t.netns("router")?;
    let server = t.netns("server")?;
    t.veth(
        (&client, "c0", "10.200.1.1/24"),
        (&router, "r0", "10.200.1.254/24"),
    )?;
    t.veth(
        (&router, "r1", "10.200.2.254/24"),
        (&server, "s0", "10.200.2.1/24"),
    )?;
    t.run(&format!(
        "ip -n {client} route add default via 10.200.1.254"
    ))?;
    t.run(&format!(
        "ip -n {server} route add default via 10.200.2.254"
    ))?;
    t.run_in(&router, "sysctl -qw net.ipv4.ip_forward=1")?;
    Ok((client, router, server))
}
