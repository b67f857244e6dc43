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
use tracer_common::hook::{Hook, Position};

use crate::{fate::Fate, sighting::Sighting};

const PORT_NOTE: &str = "port of bridge ";

/// The bridge of each port among `interfaces` of the calling thread's namespace.
pub fn masters(interfaces: &[(u32, String)]) -> HashMap<u32, u32> {
    interfaces
        .iter()
        .filter_map(|(ifindex, _)| {
            let master = crate::xdp_owner::master_ifindex(*ifindex).ok()??;
            Some((*ifindex, master))
        })
        .collect()
}

/// The note of a point on a bridge port (kept in recordings, so replays know the bridge).
pub fn port_note(bridge: &str) -> String {
    format!("{PORT_NOTE}{bridge}")
}

/// The bridge whose port this sighting is on.
pub fn bridge_of(s: &Sighting) -> Option<&str> {
    s.note.as_deref()?.strip_prefix(PORT_NOTE)
}

/// Where the frame entered the bridge it was crossing at sighting `i`, if it was crossing one
/// in that namespace: the latest receive on a port of a bridge, with nothing after it in that
/// namespace that left the bridge (a transmit, a delivery up to the bridge device).
fn entered(sightings: &[Sighting], i: usize) -> Option<&Sighting> {
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
pub fn another_clone(journey: &[Sighting], next: &Sighting) -> bool {
    if next.skb == 0
        || !matches!(
            next.hook,
            Hook::NfForward | Hook::NfPostrouting | Hook::TcEgress | Hook::DevXmit
        )
        || journey.iter().any(|s| {
            s.skb == next.skb
                && s.hook == next.hook
                && s.position == next.position
                && s.ifindex == next.ifindex
        })
    {
        return false;
    }
    journey.iter().any(|s| {
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

/// IPv4/IPv6 hook names as an iptables user knows them.
fn chain(hook: Hook) -> &'static str {
    match hook {
        Hook::NfPrerouting => "PREROUTING",
        Hook::NfLocalIn => "INPUT",
        Hook::NfForward => "FORWARD",
        Hook::NfLocalOut => "OUTPUT",
        _ => "POSTROUTING",
    }
}

/// The IP hook br_netfilter runs next for a bridged frame after `hook`.
fn next_ip_hook(hook: Hook) -> &'static str {
    match hook {
        Hook::NfPrerouting => "FORWARD",
        _ => "POSTROUTING",
    }
}

/// Names a netfilter drop inside a bridge (the drop at `drop_at`): the bridge, the port the
/// frame came in by, and whose rule, instead of IP hook words that send the user to rules that
/// are not there.
pub fn name_drop(fate: &mut Fate, sightings: &[Sighting], drop_at: usize) {
    if fate.by.is_some() {
        return;
    }
    let Some(port) = entered(sightings, drop_at) else {
        return;
    };
    let (bridge, from_ifname) = (
        bridge_of(port).unwrap_or("?"),
        port.ifname.as_deref().unwrap_or("?"),
    );
    // A container's port as its user knows it: `veth530e9f2 (cli's eth0)`.
    let from = crate::veth::with_peer(from_ifname, port.peer.as_ref());
    let drop = &sightings[drop_at];
    match fate.reason.as_deref() {
        Some("NETFILTER_DROP") => {}
        Some("BRIDGE_INGRESS_STP_STATE") => {
            fate.by = Some(format!(
                "dropped by bridge {bridge} on arrival at its port {from}: the port does not \
                 forward (its STP state is disabled, blocking, listening or learning)"
            ));
            return;
        }
        // The bridge's own code freed it (no FDB port to go to, a VLAN it filters, ...).
        _ if drop
            .location
            .as_deref()
            .is_some_and(|at| at.starts_with("br_")) =>
        {
            fate.by = Some(format!(
                "dropped by bridge {bridge} (from port {from}) in its forwarding code"
            ));
            return;
        }
        _ => return,
    }
    // The last of br_netfilter's IP hooks it reached inside the bridge, if any.
    let ip_hook = sightings[..drop_at]
        .iter()
        .rev()
        .take_while(|s| !std::ptr::eq(*s, port))
        .find(|s| s.netns == drop.netns && s.hook.is_netfilter());
    if ip_hook.is_some_and(|nf| nf.ifname.as_deref() != Some(bridge)) {
        // Routed on by the host after the bridge handed it up (its FORWARD towards another
        // device): the drop is the host's, not the bridge's.
        return;
    }
    // The bridge sets the frame's device to the port it chose before its FORWARD hook: a drop
    // on another port than the ingress one says where the frame was headed.
    let towards = match drop.ifname.as_deref() {
        Some(to) if to != from_ifname && to != bridge => {
            format!(
                " towards {}",
                crate::veth::with_peer(to, drop.peer.as_ref())
            )
        }
        _ => String::new(),
    };
    let inside = format!("dropped inside bridge {bridge} (from port {from}{towards})");
    // The rule's engine, from where the kernel freed it.
    let family_rule = match drop.location.as_deref() {
        Some(at) if at.starts_with("nft_do_chain") => "an nftables bridge-family rule",
        Some(at) if at.starts_with("ebt_do_table") => "an ebtables rule",
        _ => "a bridge-family netfilter rule (nftables bridge table or ebtables)",
    };
    fate.by = Some(match ip_hook {
        Some(nf) if nf.position == Position::First => format!(
            "{inside} by an iptables/ip6tables (or nftables ip/ip6/inet) rule at {}, which \
             br_netfilter runs for bridged frames (net.bridge.bridge-nf-call-iptables=1)",
            chain(nf.hook)
        ),
        Some(nf) => format!(
            "{inside} by {family_rule} in the bridge's own chains between iptables' {} and {} \
             (which br_netfilter runs for bridged frames)",
            chain(nf.hook),
            next_ip_hook(nf.hook)
        ),
        None => format!("{inside} by {family_rule}"),
    });
}

#[cfg(test)]
pub(crate) mod tests;
