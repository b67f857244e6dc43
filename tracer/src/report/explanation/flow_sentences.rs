//! The sentences for a flow: its directions, retransmissions, asymmetric replies, and what a
//! capture on each interface shows of it.

use super::{namespace, short_fate, words};
use crate::{
    analysis::fate::FateKind,
    analysis::flow::{self, Flow},
    analysis::journey::Journey,
    analysis::Analysis,
    model::sighting::Sighting,
};
use tracer_common::hook::Hook;

use words::plural;

/// The sentences for one flow.
pub fn flow(flow: &Flow, analysis: &Analysis) -> Vec<String> {
    let members: Vec<&Journey> = flow
        .journeys
        .iter()
        .filter_map(|id| analysis.journey(*id))
        .collect();
    let mut out = vec![format!(
        "{} {} <-> {}: {}.",
        flow.proto.name().to_uppercase(),
        flow.client,
        flow.server,
        fate_counts(flow)
    )];
    for forward in [true, false] {
        let side: Vec<&Journey> = members
            .iter()
            .copied()
            .filter(|j| flow.is_forward(j) == forward)
            .collect();
        out.extend(direction_sentences(flow, forward, &side));
    }
    out.extend(retransmission_sentence(&members, analysis));
    out.extend(asymmetry_sentence(flow, &members));
    out.extend(tcpdump_view(&members, analysis));
    out.extend(copies_seen(flow, analysis));
    if !flow.nat.is_empty() {
        out.push(format!(
            "Addresses rewritten on the way (NAT): {}.",
            flow.nat.join("; ")
        ));
    }
    out
}

fn fate_counts(flow: &Flow) -> String {
    let parts: Vec<String> = flow
        .fates
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    format!("{}, {}", plural(flow.packets, "packet"), parts.join(", "))
}

/// "3 SYN from 10.0.0.1:40000 to 10.0.0.2:8080: dropped by ... (3)."; one sentence per distinct
/// fate, in the order they first happened.
fn direction_sentences(flow: &Flow, forward: bool, side: &[&Journey]) -> Vec<String> {
    let (from, to) = if forward {
        (&flow.client, &flow.server)
    } else {
        (&flow.server, &flow.client)
    };
    let mut groups: Vec<(String, Vec<&Journey>)> = Vec::new();
    for journey in side {
        let fate = short_fate(journey);
        match groups.iter_mut().find(|(f, _)| *f == fate) {
            Some((_, members)) => members.push(journey),
            None => groups.push((fate, vec![journey])),
        }
    }
    groups
        .into_iter()
        .map(|(fate, members)| {
            let kinds: Vec<String> = members.iter().fold(Vec::new(), |mut kinds, j| {
                let kind = words::packet_kind(j.headers());
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
                kinds
            });
            format!(
                "{} from {from} to {to} ({}): {fate}.",
                plural(members.len() as u64, "packet"),
                kinds.join(", "),
            )
        })
        .collect()
}

fn retransmission_sentence(members: &[&Journey], analysis: &Analysis) -> Option<String> {
    let retransmitted = &analysis.retransmissions;
    let repeats: Vec<&&Journey> = members
        .iter()
        .filter(|j| retransmitted.contains_key(&j.id))
        .collect();
    let first_repeat = repeats.first()?;
    let original = analysis.journey(*retransmitted.get(&first_repeat.id)?)?;
    Some(format!(
        "{} retransmitted {}: the first transmission (packet {}) was {}.",
        flow::show(
            (original.headers().src, original.headers().sport),
            original.headers().proto
        ),
        plural(repeats.len() as u64, "time"),
        original.id,
        short_fate(original)
    ))
}

/// A reply that leaves a namespace by another interface than the one its request arrived on: a
/// capture on the request's interface sees only one direction.
fn asymmetry_sentence(flow: &Flow, members: &[&Journey]) -> Option<String> {
    let arrivals: Vec<&Sighting> = members
        .iter()
        .filter(|j| flow.is_forward(j))
        .flat_map(|j| j.sightings.iter())
        .filter(|s| s.hook == Hook::NetifReceive || s.hook == Hook::Xdp)
        .collect();
    for reply in members.iter().filter(|j| !flow.is_forward(j)) {
        for out in reply.sightings.iter().filter(|s| s.hook == Hook::DevXmit) {
            let Some(arrived) = arrivals.iter().find(|a| a.netns == out.netns) else {
                continue;
            };
            if arrived.ifindex != out.ifindex {
                // A veth with its other end beside it (`veth3f2a1b0 (web's eth0)`).
                let named = |s: &Sighting| {
                    crate::kernel::veth::with_peer(
                        s.ifname.as_deref().unwrap_or("?"),
                        s.peer.as_deref(),
                    )
                };
                let (arrived, out_of) = (named(arrived), named(out));
                return Some(format!(
                    "Requests arrive in {} on {arrived}, but replies leave by {out_of}: a capture on {arrived} sees only the requests; capture on {out_of} (or on any) to see the replies.",
                    namespace(out.netns_name.as_deref()),
                ));
            }
        }
    }
    None
}

/// What a capture on one interface shows of a flow: packets it saw, those of them that died
/// after its capture point (in its namespace), and packets it missed.
#[derive(Default)]
struct View {
    seen: Vec<String>,
    died_after: Vec<String>,
    missed: Vec<String>,
}

/// Per interface, the copies of the flow's packets a capture there shows: packets a bridge
/// passed up to itself or flooded, which a capture can show where the packets never went.
fn copies_seen(flow: &Flow, analysis: &Analysis) -> Vec<String> {
    let mut places: Vec<(String, Vec<String>, &str)> = Vec::new();
    for copy in flow.copies.iter().filter_map(|id| analysis.journey(*id)) {
        let Some(made) = copy.copy.as_ref().map(|c| c.made.as_str()) else {
            continue;
        };
        for c in analysis.captures(copy.id).iter().filter(|c| c.seen) {
            let kind = words::packet_kind(copy.headers());
            match places.iter_mut().find(|(p, _, _)| *p == c.place()) {
                Some((_, kinds, _)) => kinds.push(kind),
                None => places.push((c.place(), vec![kind], made)),
            }
        }
    }
    places
        .into_iter()
        .map(|(place, kinds, made)| {
            format!(
                "tcpdump on {place} shows {}: copies {made}.",
                words::tally(&kinds)
            )
        })
        .collect()
}

/// Per interface: what a capture there shows of this flow, what it misses, and what it shows
/// that never arrived: the cases a capture alone cannot tell apart.
fn tcpdump_view(members: &[&Journey], analysis: &Analysis) -> Vec<String> {
    let mut places: Vec<(String, View)> = Vec::new();
    for journey in members {
        let dropped_in = journey
            .sightings
            .iter()
            .rev()
            .find(|s| s.is_drop())
            .filter(|_| journey.fate.kind == FateKind::Dropped)
            .map(|s| s.netns);
        for c in analysis.captures(journey.id) {
            let place = c.place();
            let index = match places.iter().position(|(p, _)| *p == place) {
                Some(i) => i,
                None => {
                    places.push((place, View::default()));
                    places.len() - 1
                }
            };
            let kind = words::packet_kind(journey.headers());
            let view = &mut places[index].1;
            if !c.seen {
                view.missed.push(kind);
                continue;
            }
            if c.dir == "rx" && dropped_in == Some(c.netns) {
                view.died_after.push(kind.clone());
            }
            view.seen.push(kind);
        }
    }
    let mut out = Vec::new();
    for (place, view) in places {
        let shows = if view.seen.is_empty() {
            "nothing of this flow".to_string()
        } else {
            words::tally(&view.seen)
        };
        if !view.died_after.is_empty() {
            out.push(format!(
                "tcpdump on {place} shows {shows}, but {} died after its capture point: the capture cannot tell that they never arrived.",
                words::tally(&view.died_after)
            ));
        }
        if !view.missed.is_empty() {
            out.push(format!(
                "tcpdump on {place} shows {shows}; it misses {}, which died before its capture point.",
                words::tally(&view.missed)
            ));
        }
    }
    out
}
