//! The control experiment: nothing is wrong, and the tracer must say so. Every packet of a few
//! request/reply exchanges (opened, used and closed as applications do) and of a ping arrives;
//! a drop reported here is a false alarm.

use anyhow::Result;

use super::{pair, PORT, SERVER};
use crate::{
    analysis::fate::FateKind,
    lab::{
        scenario::{Expect, Scenario},
        topology::Topology,
        traffic::{listen, ping, request_reply},
    },
};

pub fn nothing_wrong(t: &mut Topology) -> Result<Scenario> {
    let (client, server) = pair(t)?;
    let listener = listen(&server, SERVER, PORT)?;
    let from = client.clone();
    let traffic = move || -> Result<()> {
        for _ in 0..3 {
            request_reply(&from, &listener, (SERVER, PORT), (200, 1000))?;
        }
        ping(&from, None, SERVER, 3, 56)
    };
    Ok(Scenario {
        netns: vec![client.clone(), server.clone()],
        filter: format!("tcp port {PORT} or icmp"),
        captures: vec![(client, "c0".into()), (server, "s0".into())],
        capture_filters: Vec::new(),
        traffic: Box::new(traffic),
        lesson: "Nothing is wrong: three connections open, carry a request and a reply, and \
            close; three pings are answered. Every packet arrives, tcpdump on both ends shows \
            them all, and the tracer reports no drop. The end of a connection is not a loss: \
            a FIN freed with its socket's queue at close was received first."
            .into(),
        fix: "nothing to fix: compare a faulty lab's trace with this one".into(),
        expect: vec![Expect::new("every packet", |_| true)
            .not(FateKind::Dropped)
            .at_least(20)],
        held: Vec::new(),
    })
}
