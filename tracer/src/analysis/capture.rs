//! The tcpdump verdict: for every interface a packet crossed or was headed for, whether a capture
//! there saw it, from where the hook catalogue (`tracer_common::catalogue`) puts the AF_PACKET
//! taps: on receive just after `netif_receive`, before tc ingress; on transmit after tc egress,
//! just before `dev_xmit`. And which live captures (tcpdump, dumpcap) were listening there.

use serde::Serialize;
use tracer_common::catalogue::Tap;

use crate::{
    analysis::journey::Journey, kernel::live_capture::LiveCapture, model::sighting::Sighting,
};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capture {
    #[serde(skip)]
    pub netns: u32,
    #[serde(skip)]
    pub ifindex: u32,
    pub netns_name: Option<crate::model::sighting::Name>,
    pub ifname: Option<crate::model::sighting::Name>,
    /// The other end, where this interface is a veth (see [`crate::kernel::veth`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<std::sync::Arc<crate::kernel::veth::Peer>>,
    pub dir: &'static str,
    /// Whether a capture on this interface would have captured the packet.
    pub seen: bool,
    /// Set where the packet crossed this interface inside a tunnel's outer headers (an
    /// underlay): `seen` is then about that outer packet, which a capture filtering on the
    /// outer headers (`udp port 4789`) matches and one on the packet's own headers (`tcp port
    /// 80`) does not. Words for it: `the encapsulated datagram ... (VXLAN VNI 42)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encapsulated: Option<String>,
    /// The live captures that were listening on this interface (or on all of its namespace's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub live: Vec<LiveCapture>,
}

impl Capture {
    /// `b/vb`, or the interface alone when its namespace has no name; a veth's other end
    /// beside it: `host/veth3f2a1b0 (web's eth0)`.
    pub fn place(&self) -> String {
        let mut place = String::new();
        self.write_place(&mut place);
        place
    }

    /// [`Capture::place`], added to `out`.
    pub fn write_place(&self, out: &mut String) {
        if let Some(ns) = &self.netns_name {
            out.push_str(ns);
            out.push('/');
        }
        out.push_str(self.ifname.as_deref().unwrap_or("?"));
        if let Some(peer) = self.peer.as_deref() {
            // `Peer::words`, without a string of its own.
            out.push_str(" (");
            out.push_str(&peer.netns_name);
            out.push_str("'s ");
            out.push_str(&peer.ifname);
            out.push(')');
        }
    }
}

/// Which side of an interface's tap a sighting is on: (direction, passed the tap), from where
/// the hook catalogue puts its point.
fn tap_side(s: &Sighting, known: &[Capture]) -> Option<(&'static str, bool)> {
    if s.ifindex == 0 {
        return None;
    }
    let dir = s.hook.side().name();
    match s.hook.info().tap {
        // XDP before the receive tap; on the way out, the route's device: the packet was
        // headed for its tap.
        Tap::Before => Some((dir, false)),
        // Netfilter's hooks past the receive tap add nothing: the device points before them
        // tell it, with the headers the capture saw (PREROUTING's DNAT rewrites them).
        Tap::At | Tap::After if !s.hook.is_netfilter() => Some((dir, true)),
        // Freed on an interface the packet was seen on nowhere else: it arrived there and died
        // before the receive tap (another tool's XDP program, the driver).
        _ if s.is_drop()
            && !known
                .iter()
                .any(|c| c.netns == s.netns && c.ifindex == s.ifindex) =>
        {
            Some(("rx", false))
        }
        _ => None,
    }
}

/// One verdict per interface and direction, in the order the packet met them.
pub fn captures(journey: &Journey, live: &[LiveCapture]) -> Vec<Capture> {
    let mut out: Vec<Capture> = Vec::new();
    for (i, s) in journey.sightings.iter().enumerate() {
        // br_netfilter's IP hooks name the bridge for a frame that only crosses it.
        if crate::analysis::bridge::inside_bridge(&journey.sightings, i) {
            continue;
        }
        let side = if crate::analysis::bridge::headed_out_port(&journey.sightings, i) {
            Some(("tx", false))
        } else {
            tap_side(s, &out)
        };
        let Some((dir, passed_tap)) = side else {
            continue;
        };
        match out
            .iter_mut()
            .find(|c| c.netns == s.netns && c.ifindex == s.ifindex && c.dir == dir)
        {
            Some(capture) => {
                capture.seen |= passed_tap;
                if capture.encapsulated.is_none() {
                    capture.encapsulated = crate::analysis::tunnel::outer_words(s);
                }
            }
            None => out.push(Capture {
                netns: s.netns,
                ifindex: s.ifindex,
                netns_name: s.netns_name.clone(),
                ifname: s.ifname.clone(),
                peer: s.peer.clone(),
                dir,
                seen: passed_tap,
                encapsulated: crate::analysis::tunnel::outer_words(s),
                live: listening(live, s.netns, s.ifindex),
            }),
        }
    }
    out
}

/// Live captures on this interface, or on every interface of its namespace (`-i any`).
fn listening(live: &[LiveCapture], netns: u32, ifindex: u32) -> Vec<LiveCapture> {
    live.iter()
        .filter(|c| c.netns == netns && (c.ifindex == ifindex || c.ifindex == 0))
        .cloned()
        .collect()
}
