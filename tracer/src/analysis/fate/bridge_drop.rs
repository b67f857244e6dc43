//! A netfilter drop inside a bridge, named as its user knows it: the bridge, the port the
//! frame came in by, and whose rule.

use tracer_common::hook::{Hook, Position};

use crate::{
    analysis::{bridge, fate::Fate},
    model::sighting::Sighting,
};

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
    let Some(port) = bridge::entered(sightings, drop_at) else {
        return;
    };
    let (bridge, from_ifname) = (
        bridge::bridge_of(port).unwrap_or("?"),
        port.ifname.as_deref().unwrap_or("?"),
    );
    // A container's port as its user knows it: `veth530e9f2 (cli's eth0)`.
    let from = crate::kernel::veth::with_peer(from_ifname, port.peer.as_deref());
    let drop = &sightings[drop_at];
    match fate.drop_reason() {
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
                crate::kernel::veth::with_peer(to, drop.peer.as_deref())
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
