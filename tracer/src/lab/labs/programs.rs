//! Labs of BPF programs another tool attached: XDP and tc programs that drop every packet.

use anyhow::Result;

use super::{pair, CLIENT, PORT, SERVER};
use crate::lab::{
    dropper::{Dropper, Place},
    scenario::{tcp, Expect, Scenario},
    topology::Topology,
    traffic::{connect, listen},
};

/// The client tries to connect, until its kernel gives up, while `place` on
/// (`client`/`server`, `ifname`) drops all.
fn dropping(
    t: &mut Topology,
    on_server: bool,
    place: Place,
    program: &str,
) -> Result<(Scenario, String, String)> {
    let (client, server) = pair(t)?;
    // The program drops ARP too: the neighbours are known in advance.
    t.static_neighbours((&client, "c0", CLIENT), (&server, "s0", SERVER))?;
    let (netns, ifname) = if on_server {
        (&server, "s0")
    } else {
        (&client, "c0")
    };
    let dropper = Dropper::attach(netns, ifname, place, program)?;
    t.commands.push(format!(
        "# another tool attaches its program {program} to {ifname} in {netns}: it drops everything"
    ));
    let listener = listen(&server, SERVER, PORT)?;
    let from = client.clone();
    let scenario = Scenario {
        netns: vec![client.clone(), server.clone()],
        filter: format!("tcp port {PORT}"),
        captures: vec![(netns.clone(), ifname.to_string())],
        capture_filters: Vec::new(),
        traffic: Box::new(move || connect(&from, SERVER, PORT).map(drop)),
        lesson: String::new(),
        fix: dropper.how_to_remove(program, ifname),
        expect: Vec::new(),
        held: vec![Box::new(dropper), Box::new(listener)],
    };
    Ok((scenario, client, server))
}

pub fn xdp_drop(t: &mut Topology) -> Result<Scenario> {
    let (mut lab, _, _) = dropping(t, true, Place::Xdp, "lab_xdp_drop")?;
    lab.lesson = "The XDP program on s0 drops the SYNs in the driver, before any skb or tap \
        exists: tcpdump on s0 shows nothing at all. The tracer sees them leave the client and \
        die in the veth's XDP code, and names the program."
        .into();
    lab.expect = vec![Expect::new("the client's SYNs", tcp(&["SYN"], PORT))
        .dropped("dev_xmit (last)", "NOT_SPECIFIED")
        .at_least(2)];
    Ok(lab)
}

pub fn tc_egress_drop(t: &mut Topology) -> Result<Scenario> {
    let (mut lab, _, _) = dropping(t, false, Place::TcEgress, "lab_tc_drop")?;
    lab.lesson = "A tc egress program on the client's c0 drops the SYNs before the transmit \
        tap: tcpdump on c0 shows nothing, although the application sent them."
        .into();
    lab.expect = vec![Expect::new("the client's SYNs", tcp(&["SYN"], PORT))
        .dropped("tc_egress (first)", "TC_EGRESS")
        .at_least(2)];
    Ok(lab)
}

pub fn tc_ingress_drop(t: &mut Topology) -> Result<Scenario> {
    let (mut lab, _, _) = dropping(t, true, Place::TcIngress, "lab_tc_drop")?;
    lab.lesson = "tcpdump on s0 shows every SYN: the receive tap sits before tc ingress. The tc \
        program on s0 drops them right after, so the server never answers."
        .into();
    lab.expect = vec![Expect::new("the client's SYNs", tcp(&["SYN"], PORT))
        .dropped("tc_ingress (first)", "TC_INGRESS")
        .at_least(2)];
    Ok(lab)
}
