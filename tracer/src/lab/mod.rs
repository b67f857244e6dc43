//! Labs: a throwaway topology, one injected fault, real traffic, the tracer and a real tcpdump
//! side by side, and the story of what happened.

mod capture;
mod local_in_drop;
pub mod topology;

use anyhow::Result;

use crate::cmd::trace::Format;

pub struct Lab {
    pub name: &'static str,
    pub summary: &'static str,
    pub run: fn(Format) -> Result<()>,
}

pub const LABS: &[Lab] = &[Lab {
    name: "local-in-drop",
    summary: "a SYN dropped by an iptables INPUT rule: tcpdump sees it, TCP never does",
    run: local_in_drop::run,
}];

pub fn find(name: &str) -> Option<&'static Lab> {
    LABS.iter().find(|lab| lab.name == name)
}
