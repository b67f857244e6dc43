//! Explanations in plain sentences, per packet and per flow: where it went, where it died and
//! why, and whether tcpdump saw it. Pure: journeys, flows and what was recorded beside them in.

use tracer_common::hook::{Hook, Side};

use crate::{
    analysis::capture::Capture,
    analysis::fate::{FateKind, UnknownReason},
    analysis::journey::Journey,
    analysis::Analysis,
    model::recording::NamespaceCounters,
    model::sighting::{Proto, Sighting},
};

mod flow_sentences;
mod rule_sentences;
pub mod tunnel_words;
pub mod words;

pub use flow_sentences::flow;
pub use rule_sentences::{culprits, rule_words_short};

use words::{drop_cause, icmp_words, packet_words, plural};

/// The sentences for one packet.
pub fn packet(journey: &Journey, analysis: &Analysis) -> Vec<String> {
    let captures = analysis.captures(journey.id);
    if let Some(copy) = &journey.copy {
        let fate = &journey.fate;
        let end = if fate.drop_reason() == Some("OTHERHOST") {
            format!(
                "IP freed the copy as not for this host (OTHERHOST) in {}",
                namespace(fate.netns_name.as_deref())
            )
        } else {
            format!("The copy was {}", short_fate(journey))
        };
        let mut out = vec![format!(
            "This is a copy of packet {} {}. {end}: its own end, not packet {}'s fate.",
            copy.of, copy.made, copy.of
        )];
        out.extend(capture_sentences(captures));
        return out;
    }
    let mut out = vec![fate_sentence(journey, captures, analysis.context.end.lost)];
    out.extend(rule_sentences::rule_sentence(
        journey,
        &analysis.context.rules,
    ));
    out.extend(capture_sentences(captures));
    out.extend(neighbour_sentence(journey));
    out.extend(annotation_sentences(journey));
    if let Some(original) = analysis.retransmissions.get(&journey.id) {
        if let Some(first) = analysis.journey(*original) {
            out.push(format!(
                "It is a retransmission of packet {original}, which was {}.",
                short_fate(first)
            ));
        }
    }
    if journey.incomplete {
        out.push(
            "Events were lost while this packet was alive (the ring buffer was full): its path \
             may miss points, so read its fate with care."
                .to_string(),
        );
    }
    out
}

fn place(netns_name: Option<&str>, ifname: Option<&str>) -> String {
    match (netns_name, ifname) {
        (Some(ns), Some(ifname)) => format!("{ns}/{ifname}"),
        (Some(ns), None) => ns.to_string(),
        (None, Some(ifname)) => ifname.to_string(),
        (None, None) => "this namespace".to_string(),
    }
}

/// The interface of the packet's fate, with a veth's other end beside it (`veth3f2a1b0 (web's
/// eth0)`): the fate names the interface as a point of the path did, which knows the peer.
pub fn fate_ifname(journey: &Journey) -> Option<String> {
    let fate = &journey.fate;
    let ifname = fate.ifname.as_deref()?;
    let peer = journey
        .sightings
        .iter()
        .find(|s| s.netns_name == fate.netns_name && s.ifname.as_deref() == Some(ifname))
        .and_then(|s| s.peer.as_deref());
    Some(crate::kernel::veth::with_peer(ifname, peer))
}

fn namespace(netns_name: Option<&str>) -> Namespace<'_> {
    Namespace(netns_name)
}

/// "namespace web", or "the traced namespace" for one without a name: written where it is
/// used, not built first.
struct Namespace<'a>(Option<&'a str>);

impl std::fmt::Display for Namespace<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ns) => write!(f, "namespace {ns}"),
            None => f.write_str("the traced namespace"),
        }
    }
}

/// The fate in a few words: "dropped by a netfilter rule at LOCAL_IN (iptables INPUT) in b".
pub fn short_fate(journey: &Journey) -> String {
    let fate = &journey.fate;
    let ns = namespace(fate.netns_name.as_deref());
    match fate.kind {
        FateKind::Dropped => format!(
            "{} in {ns} ({})",
            tunnel_words::in_underlay(journey, drop_cause(journey)),
            fate.reason_name().unwrap_or("no reason given")
        ),
        FateKind::Delivered if fate.hook == Some(Hook::Socket) => {
            format!("delivered to an application in {ns}")
        }
        FateKind::Delivered
            if fate.by.as_deref() == Some(crate::model::drop_reason::IGNORED_MULTICAST) =>
        {
            format!("received in {ns}, where no one joined its multicast group")
        }
        FateKind::Delivered => format!("delivered to the local stack in {ns}"),
        FateKind::Forwarded => format!(
            "forwarded by {ns} out of {}",
            fate_ifname(journey).as_deref().unwrap_or("an interface")
        ),
        FateKind::Transmitted => format!(
            "sent out of {} by its driver",
            place(fate.netns_name.as_deref(), fate_ifname(journey).as_deref())
        ),
        FateKind::Unknown => match fate.unknown_reason() {
            Some(UnknownReason::InFlight) => "still on its way when tracing stopped".to_string(),
            Some(UnknownReason::EventsLost) => "lost from sight (events were lost)".to_string(),
            Some(UnknownReason::Segmented) => "cut into segments before the driver".to_string(),
            _ => format!(
                "last seen at {} in {ns}",
                fate.point().unwrap_or_else(|| "?".to_string())
            ),
        },
    }
}

fn fate_sentence(journey: &Journey, captures: &[Capture], lost: u64) -> String {
    let fate = &journey.fate;
    let what = packet_words(journey.headers());
    let ns = namespace(fate.netns_name.as_deref());
    match fate.kind {
        FateKind::Dropped => {
            let mut sentence = format!("{what} was {}", short_fate(journey));
            if let Some(location) = &fate.location {
                sentence.push_str(&format!(" at {location}"));
            }
            sentence.push_str(&format!(": {}.", tap_relation(journey, captures)));
            sentence
        }
        FateKind::Delivered => {
            let read = journey
                .sightings
                .iter()
                .find(|s| s.hook == Hook::Socket)
                .and_then(|s| s.note.as_deref());
            match read {
                Some(note) => format!("{what} was delivered in {ns}: {note}."),
                None => match &fate.by {
                    // No point past tc ingress saw it: the answer says it arrived.
                    Some(by) if crate::model::drop_reason::is_normal_end_words(by) => {
                        format!("{what} was delivered to the local stack in {ns} (it passed LOCAL_IN): {by}.")
                    }
                    Some(by) if by == crate::model::drop_reason::IGNORED_MULTICAST => {
                        format!("{what} reached {ns}, where it was not for anyone: {by}.")
                    }
                    Some(by) => format!("{what} was delivered to the local stack in {ns}: no observation point saw it arrive, but it was {by}."),
                    None => format!("{what} was delivered to the local stack in {ns} (it passed LOCAL_IN)."),
                },
            }
        }
        FateKind::Forwarded | FateKind::Transmitted => format!(
            "{what} was {}; the tracer does not see past that interface.",
            short_fate(journey)
        ),
        FateKind::Unknown => match fate.unknown_reason() {
            Some(UnknownReason::EventsLost) => format!(
                "{what}: its end is unknown, the kernel lost {} during the trace.",
                plural(lost, "event")
            ),
            Some(UnknownReason::InFlight) => format!(
                "{what} was still on its way when tracing stopped (last seen at {} in {ns}).",
                fate.point().unwrap_or_default()
            ),
            Some(UnknownReason::Segmented) => format!(
                "{what} was cut into its {} segments after {} in {ns} (software GSO: the \
                 device takes no GSO packets); each segment goes on as a packet of its own.",
                journey.headers().gso_segs,
                fate.point().unwrap_or_default()
            ),
            _ => format!(
                "{what} was last seen at {} in {ns}; no observation point saw where it went after that.",
                fate.point().unwrap_or_default()
            ),
        },
    }
}

/// Whether the drop happened before or after a capture point: the question tcpdump cannot
/// answer on its own.
fn tap_relation(journey: &Journey, captures: &[Capture]) -> String {
    let drop_netns = journey
        .sightings
        .iter()
        .rev()
        .find(|s| s.is_drop())
        .map(|s| s.netns);
    let here = |c: &&Capture| Some(c.netns) == drop_netns;
    let received = captures
        .iter()
        .filter(here)
        .rfind(|c| c.dir == "rx" && c.seen);
    let headed_for = captures
        .iter()
        .filter(here)
        .rfind(|c| c.dir == "tx" && !c.seen);
    let unseen_rx = captures
        .iter()
        .filter(here)
        .rfind(|c| c.dir == "rx" && !c.seen);
    if let Some(c) = headed_for {
        format!(
            "it died before the capture point of {} on its way out, so tcpdump there could not see it",
            c.place()
        )
    } else if let Some(c) = received {
        // Dropped on the way in, past the receive tap (the hook catalogue's): before TCP.
        let on_the_way_in = journey
            .fate
            .hook
            .is_some_and(|hook| hook.side() == Side::Rx && hook.info().tap.passed());
        let consequence = if on_the_way_in && journey.headers().proto == Proto::Tcp {
            ", and TCP never received it"
        } else {
            ""
        };
        let form = match &c.encapsulated {
            Some(outer) => format!(" as {outer}"),
            None => String::new(),
        };
        format!(
            "tcpdump on {} saw it arrive{form}, but the stack dropped it after the capture point{consequence}",
            c.place()
        )
    } else if let Some(c) = unseen_rx {
        format!(
            "it died on arrival at {}, before the capture point: no capture could see it",
            c.place()
        )
    } else if captures.iter().any(|c| c.seen) {
        "after the capture points it crossed".to_string()
    } else {
        "it reached no capture point, so tcpdump could not see it".to_string()
    }
}

/// What a capture on the way out shows of a packet that died waiting for its next hop.
fn neighbour_sentence(journey: &Journey) -> Option<String> {
    let fate = &journey.fate;
    if fate.kind != FateKind::Dropped {
        return None;
    }
    let reason = fate.drop_reason()?;
    if reason != "NEIGH_FAILED" && reason != "NEIGH_QUEUEFULL" {
        return None;
    }
    let asks = match journey.headers().dst {
        Some(std::net::IpAddr::V6(_)) => "neighbour solicitations (ND)",
        _ => "ARP requests",
    };
    Some(format!(
        "A capture on {} shows the kernel's {asks} for the next hop, never this packet.",
        place(fate.netns_name.as_deref(), fate_ifname(journey).as_deref())
    ))
}

fn capture_sentences(captures: &[Capture]) -> Vec<String> {
    let mut out = Vec::new();
    for c in captures {
        for live in &c.live {
            let on = if live.ifindex == 0 {
                "any".to_string()
            } else {
                c.place()
            };
            let saw = match (&c.encapsulated, c.seen) {
                (Some(outer), true) => format!(
                    "saw this packet only as {outer}, if its filter matches those outer headers"
                ),
                (_, true) => "saw this packet".to_string(),
                (_, false) => "could not see this packet".to_string(),
            };
            out.push(format!(
                "{} (pid {}) is capturing on {on} and {saw} ({} on {}).",
                live.command,
                live.pid,
                c.dir,
                c.place()
            ));
        }
    }
    // Built in one string each: every packet of a trace has these sentences.
    let list = |seen: bool, ending: &str| -> Option<String> {
        let mut sentence = String::new();
        let listed = captures
            .iter()
            .filter(|c| c.seen == seen && c.live.is_empty())
            .filter(|c| !(c.seen && c.encapsulated.is_some()));
        for c in listed {
            if sentence.is_empty() {
                // Room for two places at once: grown from nothing, the sentence was
                // reallocated five times (4% of a trace following TCP bulk, in a profile).
                sentence.reserve(160);
                sentence.push_str("A capture on ");
            } else {
                sentence.push_str(", ");
            }
            c.write_place(&mut sentence);
            sentence.push_str(" (");
            sentence.push_str(c.dir);
            sentence.push(')');
        }
        (!sentence.is_empty()).then(|| sentence + ending)
    };
    out.extend(list(true, " sees it."));
    out.extend(list(false, " could not see it."));
    out.extend(tunnel_words::capture_sentences(captures));
    out
}

fn annotation_sentences(journey: &Journey) -> Vec<String> {
    let mut out = Vec::new();
    for s in &journey.sightings {
        let Some(note) = s.note.as_deref() else {
            continue;
        };
        let ns = namespace(s.netns_name.as_deref());
        let sentence = if let Some(why) = note.strip_prefix("reset sent") {
            let why = why.trim().trim_matches(['(', ')']);
            let because = match why {
                "NO_SOCKET" => format!(": no socket listens on port {}", journey.headers().dport),
                "" => String::new(),
                other => format!(" ({other})"),
            };
            format!("TCP in {ns} answered it with a reset{because}.")
        } else if note == "reset received" {
            format!("TCP in {ns} accepted this reset and closed the connection.")
        } else if note == "bad checksum, discarded" {
            format!("TCP in {ns} discarded it: its checksum is wrong.")
        } else if note.starts_with("answered with icmp") {
            format!(
                "The kernel in {ns} answered it with ICMP {}.",
                icmp_words(s)
            )
        } else if let Some(rest) = note.strip_prefix("no route") {
            format!(
                "The route lookup in {ns} found no route to {}{rest}.",
                s.dst.map_or("?".to_string(), |ip| ip.to_string())
            )
        } else {
            continue;
        };
        if !out.contains(&sentence) {
            out.push(sentence);
        }
    }
    if let Some(s) = journey.sightings.iter().find(|s| s.gso_segs > 1) {
        out.push(offload_sentence(s));
    }
    out
}

fn offload_sentence(s: &Sighting) -> String {
    format!(
        "Offload (GSO/GRO) carried it as one packet of {} bytes made of {} segments: tcpdump shows it larger than the MTU, the wire carries {} packets.",
        s.ip_len, s.gso_segs, s.gso_segs
    )
}

/// The kernel counters checked against what the tracer saw, each with the note (its start) of
/// the events that count into it.
pub const COUNTED_NOTES: [(&str, &str); 3] = [
    ("Tcp.OutRsts", "reset sent"),
    ("Tcp.RetransSegs", "retransmission"),
    ("Icmp.OutDestUnreachs", "answered with icmp type 3"),
];

/// Kernel counters that changed over the trace and bear on what the tracer found, with whether
/// they agree.
pub fn counter_sentences(analysis: &Analysis) -> Vec<String> {
    counter_checks(&analysis.context.counters, |netns_name, prefix| {
        analysis
            .journeys
            .iter()
            .flat_map(|j| &j.sightings)
            .filter(|s| s.netns_name.as_deref() == Some(netns_name))
            .filter(|s| s.note.as_deref().is_some_and(|n| n.starts_with(prefix)))
            .count() as i64
    })
}

/// The counters' sentences, given how many events with each note of [`COUNTED_NOTES`] the
/// tracer saw in a namespace (`seen(netns_name, note)`).
pub fn counter_checks(
    counters: &[NamespaceCounters],
    seen: impl Fn(&str, &str) -> i64,
) -> Vec<String> {
    let mut out = Vec::new();
    for ns in counters {
        for (counter, note) in COUNTED_NOTES {
            let seen = seen(&ns.netns_name, note);
            let delta = ns.delta.get(counter).copied().unwrap_or(0);
            if seen == 0 && delta == 0 {
                continue;
            }
            let verdict = if delta >= seen {
                "agrees"
            } else {
                "contradicts: events were missed"
            };
            out.push(format!(
                "Kernel counter {counter} in {} rose by {delta}; the tracer saw {seen}: {verdict}.",
                ns.netns_name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
