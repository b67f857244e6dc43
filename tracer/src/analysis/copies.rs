//! Copies are not the packet. A Linux bridge clones a frame where it sends it two ways: up to
//! its own device as well as out of a port while it is promiscuous (a capture on it, as
//! tcpdump on docker0 does), and out of several ports when it floods (no FDB entry for the
//! destination, a broadcast, a multicast); tc's `mirred mirror` action clones a packet to
//! another device. Each copy is a journey of its own, linked to its original, and its end is
//! never the original's fate.
//!
//! Kernel facts this rests on (net/bridge/br_forward.c): the bridge forwards `skb_clone`s
//! (`deliver_clone`) to every port but the last one it floods to, and when it also passes the
//! frame up (`local_rcv`) the original skb goes up and clones go out. A clone has its own skb
//! address, so after the bridge each copy is told apart by its skb.

use tracer_common::hook::Hook;

use crate::{analysis::bridge::bridge_of, model::sighting::Sighting};

/// What made a copy, in words that finish "a copy of packet N ...".
#[derive(Debug, Clone, PartialEq)]
pub struct CopyOf {
    /// The original's journey id (set once ids are given out).
    pub of: u64,
    pub made: String,
}

/// A journey's sightings, and for a copy the index of its original and what made it.
pub type Separated = (Vec<Sighting>, Option<(usize, String)>);

/// Journeys (sightings grouped per packet, in order of their first sighting) with every copy
/// split out into a journey of its own, still in order of first sighting; each copy with the
/// index of its original in the result and what made it.
pub fn separate(journeys: Vec<Vec<Sighting>>) -> Vec<Separated> {
    let mut out: Vec<Separated> = Vec::new();
    for sightings in journeys {
        let (own, copies) = split(sightings);
        let original = out.len();
        out.push((own, None));
        for (sightings, made) in copies {
            out.push((sightings, Some((original, made))));
        }
    }
    in_time_order(out)
}

/// Journeys sorted by their first sighting (stably: a tie keeps its order), each copy's index
/// of its original following its original.
pub fn in_time_order(journeys: Vec<Separated>) -> Vec<Separated> {
    let first_ts = |j: &Separated| j.0.first().map_or(0, |s| s.ts_ns);
    let mut order: Vec<usize> = (0..journeys.len()).collect();
    order.sort_by_key(|&i| first_ts(&journeys[i]));
    let mut new_index = vec![0; journeys.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let mut slots: Vec<Option<Separated>> = journeys.into_iter().map(Some).collect();
    order
        .iter()
        .map(|&old| {
            let (sightings, copy) = slots[old].take().expect("each journey once");
            (sightings, copy.map(|(of, made)| (new_index[of], made)))
        })
        .collect()
}

/// One packet's sightings split into the packet's own (first) and its copies' (with what made
/// each), all in time order. A journey that crossed no bridge, or where the bridge made no copy
/// that went anywhere, comes back whole.
pub fn split(sightings: Vec<Sighting>) -> (Vec<Sighting>, Vec<(Vec<Sighting>, String)>) {
    let Some((entry, diverge)) = divergence(&sightings) else {
        return mirrored(sightings);
    };
    let bridge = bridge_of(&sightings[entry]).unwrap_or("?").to_string();
    let bridge_netns = sightings[entry].netns;
    let branches = branches(&sightings, diverge, &bridge, bridge_netns);
    let made: Vec<(bool, String)> = branches
        .iter()
        .map(|b| how_made(&sightings, b, &bridge, bridge_netns))
        .collect();
    // The packet is the branch that went on through a port, and where the bridge flooded it,
    // the one whose host it was for. Without such a branch (the clone was dropped inside the
    // bridge, by a bridge-family chain, before any point of ours) it is what is not a branch.
    let through_ports: Vec<usize> = (0..branches.len()).filter(|&b| !made[b].0).collect();
    let packet = through_ports
        .iter()
        .copied()
        .find(|&b| !ends_not_for_this_host(&sightings, &branches[b]))
        .or(through_ports.first().copied());
    if branches.len() - usize::from(packet.is_some()) == 0 {
        return (sightings, Vec::new());
    }
    let mut own = Vec::new();
    let mut copies: Vec<(Vec<Sighting>, String)> = Vec::new();
    // usize::MAX: the packet's own, where no branch is.
    let mut branch_of = vec![usize::MAX; sightings.len()];
    for (b, branch) in branches.iter().enumerate() {
        if Some(b) != packet {
            for &i in &branch.indices {
                branch_of[i] = b;
            }
        }
    }
    let mut split: Vec<Vec<Sighting>> = vec![Vec::new(); branches.len()];
    for (i, s) in sightings.into_iter().enumerate() {
        match branch_of[i] {
            usize::MAX => own.push(s),
            b => split[b].push(s),
        }
    }
    for (b, sightings) in split.into_iter().enumerate() {
        if !sightings.is_empty() {
            copies.push((sightings, made[b].1.clone()));
        }
    }
    (own, copies)
}

/// A copy tc made (a `mirred ... mirror` action): after a tc point of the packet's skb on one
/// device, another skb first seen on the path on another device of the same namespace, while
/// the packet's skb goes on after it. (`mirred redirect` moves the skb itself: no copy.)
fn mirrored(sightings: Vec<Sighting>) -> (Vec<Sighting>, Vec<(Vec<Sighting>, String)>) {
    let found = sightings.iter().enumerate().find_map(|(i, at_tc)| {
        if !matches!(at_tc.hook, Hook::TcIngress | Hook::TcEgress) || at_tc.skb == 0 {
            return None;
        }
        let original = at_tc.skb;
        let (j, copy) = sightings.iter().enumerate().skip(i + 1).find(|(j, s)| {
            s.skb != 0
                && s.skb != original
                && s.on_path()
                && s.netns == at_tc.netns
                && s.ifindex != at_tc.ifindex
                && !sightings[..*j].iter().any(|t| t.skb == s.skb)
        })?;
        let goes_on = sightings[j + 1..]
            .iter()
            .any(|s| s.skb == original && s.on_path());
        goes_on.then(|| {
            let made = format!(
                "that tc on {} mirrored to {} (a mirred mirror action)",
                at_tc.ifname.as_deref().unwrap_or("?"),
                copy.ifname.as_deref().unwrap_or("?")
            );
            (copy.skb, made)
        })
    });
    let Some((skb, made)) = found else {
        return (sightings, Vec::new());
    };
    let (copy, own): (Vec<Sighting>, Vec<Sighting>) =
        sightings.into_iter().partition(|s| s.skb == skb);
    (own, vec![(copy, made)])
}

/// The first receive on a bridge's port, and the first sighting after it of another skb than
/// the one that entered: where the bridge made a copy (a clone has a new skb address).
fn divergence(sightings: &[Sighting]) -> Option<(usize, usize)> {
    let entry = sightings.iter().position(|s| {
        matches!(s.hook, Hook::NetifReceive | Hook::TcIngress) && bridge_of(s).is_some()
    })?;
    let entered = sightings[entry].skb;
    let diverge = sightings[entry..]
        .iter()
        .position(|s| s.skb != 0 && s.skb != entered && s.netns == sightings[entry].netns)?;
    Some((entry, entry + diverge))
}

/// The sightings of one copy from the divergence on: its skb's, and those of an skb that
/// replaced it (generic XDP reallocates an skb it cannot run on in place).
struct Branch {
    skbs: Vec<u64>,
    indices: Vec<usize>,
}

/// The skbs alive after the divergence that went on through the bridge (their first point of
/// the path after it is on the bridge or one of its ports): a skb only freed there was
/// replaced, not copied, and one first seen elsewhere (a fragment the host made, out of
/// another interface) is the packet's own. Each with its sightings; XDP's (no skb) go with the
/// branch seen nearest in time on their device.
fn branches(sightings: &[Sighting], diverge: usize, bridge: &str, netns: u32) -> Vec<Branch> {
    let on_bridge = |s: &Sighting| {
        s.netns == netns && (s.ifname.as_deref() == Some(bridge) || bridge_of(s) == Some(bridge))
    };
    let mut out: Vec<Branch> = Vec::new();
    for (i, s) in sightings.iter().enumerate().skip(diverge) {
        if s.skb == 0 {
            continue;
        }
        if let Some(b) = out.iter().position(|b| b.skbs.contains(&s.skb)) {
            out[b].indices.push(i);
        } else if let Some(b) = replaced(sightings, &out, i) {
            out[b].skbs.push(s.skb);
            out[b].indices.push(i);
        } else if s.on_path() && on_bridge(s) {
            out.push(Branch {
                skbs: vec![s.skb],
                indices: vec![i],
            });
        }
    }
    for (i, s) in sightings.iter().enumerate().skip(diverge) {
        if s.skb == 0 {
            if let Some(b) = nearest_on_device(sightings, &out, s) {
                out[b].indices.push(i);
            }
        }
    }
    for branch in &mut out {
        branch.indices.sort_unstable();
    }
    out
}

/// The branch whose skb sighting `i`'s new skb replaced: one consumed earlier on the same
/// device.
fn replaced(sightings: &[Sighting], branches: &[Branch], i: usize) -> Option<usize> {
    let s = &sightings[i];
    branches.iter().position(|b| {
        b.indices.iter().any(|&j| {
            let t = &sightings[j];
            j < i && t.hook == Hook::ConsumeSkb && t.netns == s.netns && t.ifindex == s.ifindex
        })
    })
}

/// The branch seen nearest in time to `s` on its device, if any.
fn nearest_on_device(sightings: &[Sighting], branches: &[Branch], s: &Sighting) -> Option<usize> {
    branches
        .iter()
        .enumerate()
        .flat_map(|(b, branch)| branch.indices.iter().map(move |&j| (b, &sightings[j])))
        .filter(|(_, t)| t.netns == s.netns && t.ifindex == s.ifindex)
        .min_by_key(|(_, t)| t.ts_ns.abs_diff(s.ts_ns))
        .map(|(b, _)| b)
}

/// A copy's usual end: freed by IP as not for this host (a frame passed up to a bridge that
/// forwards it, or flooded to a port whose host it is not for).
fn ends_not_for_this_host(sightings: &[Sighting], branch: &Branch) -> bool {
    branch
        .indices
        .iter()
        .rev()
        .map(|&i| &sightings[i])
        .find(|s| s.is_drop())
        .is_some_and(|s| s.reason.as_deref() == Some("OTHERHOST"))
}

/// Whether `branch` was passed up to the bridge itself (rather than sent out of a port), and
/// words for what made it a copy.
fn how_made(sightings: &[Sighting], branch: &Branch, bridge: &str, netns: u32) -> (bool, String) {
    let first_out = branch
        .indices
        .iter()
        .map(|&i| &sightings[i])
        .find(|s| s.netns == netns && s.on_path() && s.ifname.as_deref() != Some(bridge));
    let passed_up = branch
        .indices
        .iter()
        .map(|&i| &sightings[i])
        .find(|s| s.netns == netns && s.on_path())
        .is_some_and(|s| {
            s.ifname.as_deref() == Some(bridge)
                && matches!(s.hook, Hook::NetifReceive | Hook::TcIngress)
        });
    let words = match (passed_up, first_out) {
        (true, _) => format!(
            "that bridge {bridge} passed up to itself: a bridge in promiscuous mode (a capture \
             on {bridge} puts it there) hands every frame it forwards to its own device too"
        ),
        (false, Some(port)) => format!(
            "that bridge {bridge} sent out of its port {}: it floods a frame to every port when \
             it does not know where the destination is, or for a broadcast or multicast",
            port.ifname.as_deref().unwrap_or("?")
        ),
        (false, None) => format!("that bridge {bridge} made"),
    };
    (passed_up, words)
}

#[cfg(test)]
#[path = "copies/tests.rs"]
mod tests;
