//! What the explanations say of a packet that crossed a tunnel: where its outer packet died,
//! and the filter a capture on the underlay needs.

use crate::{
    analysis::{capture::Capture, journey::Journey, tunnel},
    model::sighting::Sighting,
};

/// The sentences on the captures that saw the packet only inside a tunnel's outer headers:
/// what filter such a capture needs.
pub fn capture_sentences(captures: &[Capture]) -> Vec<String> {
    captures
        .iter()
        .filter(|c| c.seen && c.live.is_empty())
        .filter_map(|c| {
            let outer = c.encapsulated.as_ref()?;
            Some(format!(
                "A capture on {} ({}) sees it only as {outer}: a filter on the packet's own \
                 headers matches nothing there, one on the outer headers (e.g. {}) does.",
                c.place(),
                c.dir,
                outer_filter(outer)
            ))
        })
        .collect()
}

/// A tcpdump filter for the outer packet of [`tunnel::outer_words`]: the tunnel's UDP port, or its IP
/// protocol.
pub fn outer_filter(outer: &str) -> &'static str {
    if outer.contains("(VXLAN") {
        if outer.contains(":8472 ") {
            "udp port 8472"
        } else {
            "udp port 4789"
        }
    } else if outer.contains("(Geneve") {
        "udp port 6081"
    } else if outer.contains("(GRE") {
        "proto gre"
    } else {
        "ip proto 4 or ip proto 41"
    }
}

/// `cause` ("dropped by a netfilter rule at LOCAL_IN ...") said of the inner packet whose
/// drop was that of its tunnel's outer packet: `dropped in the underlay, as the encapsulated
/// datagram ... (VXLAN VNI 42), by a netfilter rule at LOCAL_IN ...`.
pub fn in_underlay(journey: &Journey, cause: String) -> String {
    let Some(outer) = dropped_outer(journey).and_then(tunnel::outer_words) else {
        return cause;
    };
    match cause.strip_prefix("dropped ") {
        Some(rest) => format!("dropped in the underlay, as {outer}, {rest}"),
        None => format!("dropped in the underlay, as {outer} ({cause})"),
    }
}

/// The outer packet whose drop ended the journey, when the drop saw it encapsulated.
pub fn dropped_outer(journey: &Journey) -> Option<&Sighting> {
    journey
        .sightings
        .iter()
        .rev()
        .find(|s| s.is_drop())
        .filter(|s| s.tunnel.is_some())
}
