//! The other end of a veth, named as the user knows it: the host side of a container's veth
//! (`veth3f2a1b0`) is shown as `veth3f2a1b0 (web's eth0)`.
//!
//! A veth's `IFLA_LINK` is its peer's ifindex and `IFLA_LINK_NETNSID` the peer's namespace, by
//! the id the veth's namespace gives it (absent when both ends share a namespace). The id is
//! matched against the namespaces the tracer knows a name for (`RTM_GETNSID` with each one's
//! file), and the peer is named only if it names this veth back the same way: an index alone
//! means nothing in another namespace.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::kernel::{netns::Netns, xdp_owner};

/// The other end of a veth pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub netns_name: String,
    pub ifname: String,
}

impl Peer {
    /// `web's eth0`.
    pub fn words(&self) -> String {
        format!("{}'s {}", self.netns_name, self.ifname)
    }
}

/// `veth3f2a1b0 (web's eth0)`, or the interface alone.
pub fn with_peer(ifname: &str, peer: Option<&Peer>) -> String {
    match peer {
        Some(peer) => format!("{ifname} ({})", peer.words()),
        None => ifname.to_string(),
    }
}

const RTM_NEWLINK: u16 = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_LINK_NETNSID: u16 = 37;

/// What an `RTM_NEWLINK` reply says about a veth.
#[derive(Debug, Clone, PartialEq)]
pub struct VethLink {
    pub ifname: String,
    /// The peer's ifindex, in the peer's namespace.
    pub link: u32,
    /// The peer's namespace by the id this one gives it; `None`: this same namespace.
    pub link_netnsid: Option<i32>,
}

/// The veth an `RTM_NEWLINK` reply describes; `None` for another kind of interface.
pub fn parse_veth(reply: &[u8]) -> Option<VethLink> {
    let msg_type = u16::from_ne_bytes([*reply.get(4)?, *reply.get(5)?]);
    if msg_type != RTM_NEWLINK {
        return None;
    }
    let attrs = || xdp_owner::attributes(reply.get(32..).unwrap_or_default());
    let find = |kind: u16| attrs().find(|(k, _)| *k == kind).map(|(_, p)| p);
    let u32_of = |p: &[u8]| Some(u32::from_ne_bytes(p.get(..4)?.try_into().ok()?));
    let kind = xdp_owner::attributes(find(IFLA_LINKINFO)?)
        .find(|(k, _)| *k == IFLA_INFO_KIND)
        .map(|(_, p)| c_string(p))?;
    if kind != "veth" {
        return None;
    }
    Some(VethLink {
        ifname: c_string(find(IFLA_IFNAME)?),
        link: u32_of(find(IFLA_LINK)?)?,
        link_netnsid: find(IFLA_LINK_NETNSID).and_then(u32_of).map(|id| id as i32),
    })
}

fn c_string(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

/// The veth `ifindex` of the calling thread's namespace, if it is one.
fn veth(ifindex: u32) -> Option<VethLink> {
    parse_veth(&xdp_owner::getlink(ifindex).ok()?)
}

/// Whether `theirs`, found where `ours` (ifindex `our_ifindex`) points, points back: at our
/// index, and at our namespace (`our_id_there`: the id the peer's namespace gives ours). Both
/// say "same namespace" (no id) or both name the other's.
pub fn pairs(
    our_ifindex: u32,
    ours: &VethLink,
    theirs: &VethLink,
    our_id_there: Option<i32>,
) -> bool {
    theirs.link == our_ifindex
        && match (ours.link_netnsid, theirs.link_netnsid, our_id_there) {
            (None, None, _) => true,
            (Some(_), Some(back), Some(ours)) => back == ours,
            _ => false,
        }
}

/// The peers of the veths among `interfaces` of namespace `ns`, by ifindex: only those in a
/// namespace of `known` (namespaces the tracer has a name for) that point back.
pub fn peers(ns: &Netns, interfaces: &[(u32, String)], known: &[&Netns]) -> HashMap<u32, Peer> {
    // In `ns`: its veths, and the id it gives each known namespace.
    let here = ns.run(|| {
        let veths: Vec<(u32, VethLink)> = interfaces
            .iter()
            .filter_map(|(ifindex, _)| Some((*ifindex, veth(*ifindex)?)))
            .collect();
        let ids: HashMap<i32, usize> = known
            .iter()
            .enumerate()
            .filter(|(_, other)| other.inode != ns.inode)
            .filter_map(|(n, other)| Some((other.id_here()?, n)))
            .collect();
        (veths, ids)
    });
    let Ok((veths, ids)) = here else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    for (ifindex, link) in veths {
        let there = match link.link_netnsid {
            None => ns,
            Some(id) => match ids.get(&id) {
                Some(n) => known[*n],
                None => continue,
            },
        };
        // In the peer's namespace: the peer, and the id it gives ours.
        let Ok((Some(theirs), id_there)) = there.run(|| (veth(link.link), ns.id_here())) else {
            continue;
        };
        if pairs(ifindex, &link, &theirs, id_there) {
            let peer = Peer {
                netns_name: there.display_name(),
                ifname: theirs.ifname,
            };
            out.insert(ifindex, peer);
        }
    }
    out
}

#[cfg(test)]
mod tests;
