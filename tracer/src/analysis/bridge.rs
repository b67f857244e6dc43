//! Linux bridges (the shape of docker0, cni0, virbr0): which ports a frame crossed, where a
//! drop inside a bridge happened and by whose rule, and which frames are copies.
//!
//! Kernel facts this rests on (Linux 6.18, tried on the machine, not read off a version):
//! - BPF netfilter links refuse the bridge family (`NFPROTO_BRIDGE`, 7): EAFNOSUPPORT for
//!   every hook (`bpf_nf_check_pf_and_hooks` takes IPv4 and IPv6 only), and this kernel refuses
//!   fentry/fexit (EPERM), so no program sees the bridge hooks themselves. A drop inside a
//!   bridge is placed from what is seen: the frame's ingress port (tc, the receive tap), the
//!   IPv4/IPv6 hooks br_netfilter runs on the bridge, and the free (NETFILTER_DROP).
//! - br_netfilter is built in here, and `net.bridge.bridge-nf-call-iptables` is 1 in every new
//!   namespace: a bridged IPv4 frame passes iptables' PREROUTING, FORWARD and POSTROUTING with
//!   the bridge itself as device, from inside the bridge's own hooks, without ever passing the
//!   bridge's transmit tap. A bridge-family chain (nftables `bridge` table, ebtables) at
//!   FORWARD runs after br_netfilter's FORWARD (priority -1), so its drop follows `nf_forward
//!   (last)`.
//! - A bridge in promiscuous mode (tcpdump on it) forwards a clone of each frame and passes the
//!   original up to its own device, where IP frees it as not for this host (OTHERHOST): that is
//!   the end of a copy, never the frame's fate.

use std::collections::HashMap;
use tracer_common::hook::Hook;

use crate::model::sighting::{Sighting, PORT_NOTE};

/// The bridge of each port among `interfaces` of the calling thread's namespace.
pub fn masters(interfaces: &[(u32, String)]) -> HashMap<u32, u32> {
    interfaces
        .iter()
        .filter_map(|(ifindex, _)| {
            let master = crate::kernel::xdp_owner::master_ifindex(*ifindex).ok()??;
            Some((*ifindex, master))
        })
        .collect()
}

/// The bridge whose port this sighting is on.
pub fn bridge_of(s: &Sighting) -> Option<&str> {
    s.note.as_deref()?.strip_prefix(PORT_NOTE)
}

/// Where the frame entered the bridge it was crossing at sighting `i`, if it was crossing one
/// in that namespace: the latest receive on a port of a bridge, with nothing after it in that
/// namespace that left the bridge (a transmit, a delivery up to the bridge device).
pub fn entered(sightings: &[Sighting], i: usize) -> Option<&Sighting> {
    let here = &sightings[i];
    for s in sightings[..i]
        .iter()
        .rev()
        .filter(|s| s.netns == here.netns)
    {
        match s.hook {
            Hook::Xdp | Hook::NetifReceive | Hook::TcIngress => {
                return bridge_of(s).is_some().then_some(s);
            }
            Hook::TcEgress | Hook::DevXmit | Hook::NfLocalIn | Hook::NfLocalOut => return None,
            _ => {}
        }
    }
    None
}

/// Whether sighting `i` is one of br_netfilter's IPv4/IPv6 hooks on a bridge the frame is only
/// crossing: its device is the bridge, yet the frame never passes the bridge's own taps.
pub fn inside_bridge(sightings: &[Sighting], i: usize) -> bool {
    let s = &sightings[i];
    s.hook.is_netfilter()
        && entered(sightings, i)
            .and_then(bridge_of)
            .is_some_and(|bridge| s.ifname.as_deref() == Some(bridge))
}

/// Whether the drop at `i` ends a copy the bridge passed up to its own device (a promiscuous
/// bridge: tcpdump on it) while the frame itself went on as a clone: freed as not for this host
/// (OTHERHOST) on a bridge the journey entered by a port, with another skb of the journey seen
/// in that namespace after it entered.
pub fn copy_passed_up(sightings: &[Sighting], i: usize) -> bool {
    let drop = &sightings[i];
    if drop.reason.as_deref() != Some("OTHERHOST") {
        return false;
    }
    let Some(port) = sightings[..i].iter().rposition(|s| {
        s.netns == drop.netns && bridge_of(s).is_some() && bridge_of(s) == drop.ifname.as_deref()
    }) else {
        return false;
    };
    sightings[port..]
        .iter()
        .any(|s| s.netns == drop.netns && s.skb != 0 && s.skb != drop.skb)
}

/// Whether `next` is another clone of a frame the journey brought into a bridge: a point on
/// the way out of the bridge (br_netfilter's FORWARD and POSTROUTING on the bridge, a port's
/// transmit) with an skb not seen there yet (the last port may get the frame's own skb), in
/// the namespace where it entered the bridge. A bridge floods clones of one frame to several
/// ports one after the other.
pub fn another_clone(journey: &[impl std::borrow::Borrow<Sighting>], next: &Sighting) -> bool {
    let journey = || journey.iter().map(std::borrow::Borrow::borrow);
    if next.skb == 0
        || !matches!(
            next.hook,
            Hook::NfForward | Hook::NfPostrouting | Hook::TcEgress | Hook::DevXmit
        )
        || journey().any(|s: &Sighting| {
            s.skb == next.skb
                && s.hook == next.hook
                && s.position == next.position
                && s.ifindex == next.ifindex
        })
    {
        return false;
    }
    journey().any(|s: &Sighting| {
        s.netns == next.netns
            && matches!(s.hook, Hook::NetifReceive | Hook::TcIngress)
            && bridge_of(s).is_some_and(|bridge| {
                next.ifname.as_deref() == Some(bridge) || bridge_of(next) == Some(bridge)
            })
    })
}

/// Whether the drop at `i` happened on a port the frame was headed out of: the bridge had
/// chosen it (the frame's device is that port from the bridge's FORWARD on), so the verdict
/// there is a transmit one.
pub fn headed_out_port(sightings: &[Sighting], i: usize) -> bool {
    let drop = &sightings[i];
    drop.is_drop()
        && entered(sightings, i).is_some_and(|port| {
            port.ifindex != drop.ifindex && bridge_of(port) != drop.ifname.as_deref()
        })
}

#[cfg(test)]
pub(crate) mod tests;
