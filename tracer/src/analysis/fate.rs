//! How a packet's journey ended: delivered, forwarded, transmitted, dropped, or unknown (and then
//! why). Pure: a journey's sightings and what is known about the trace's end go in.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use tracer_common::hook::{Hook, Position};

pub use crate::model::trace_end::TraceEnd;

/// How a reset that reached its socket is told (by `analysis::answered` too).
pub const ACCEPTED_RESET: &str = "accepted by TCP as a reset";

use crate::{model::drop_reason, model::sighting::Sighting};

/// A packet last seen this close to the end of the trace may still have been on its way.
const IN_FLIGHT_NS: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FateKind {
    /// Handed to the local stack past LOCAL_IN, or read by an application.
    Delivered,
    /// Routed through a namespace (FORWARD) and sent out by a driver, not seen after.
    Forwarded,
    /// Sent out by a driver, not seen after (its receiver is not traced).
    Transmitted,
    Dropped,
    Unknown,
}

impl FateKind {
    pub fn name(self) -> &'static str {
        match self {
            FateKind::Delivered => "delivered",
            FateKind::Forwarded => "forwarded",
            FateKind::Transmitted => "transmitted",
            FateKind::Dropped => "dropped",
            FateKind::Unknown => "unknown",
        }
    }
}

/// Why a fate is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnknownReason {
    /// Last seen within a second of the end of the trace.
    InFlight,
    /// Events were lost after this packet was last seen: its end may be among them.
    EventsLost,
    /// Seen earlier, then at no point the tracer observes.
    EndNotSeen,
    /// A GSO packet cut into its segments after tc egress (the device takes no GSO packets):
    /// the segments go on as packets of their own.
    Segmented,
}

impl UnknownReason {
    /// Its name in the JSON contract and the text output.
    pub fn name(self) -> &'static str {
        match self {
            UnknownReason::InFlight => "in_flight",
            UnknownReason::EventsLost => "events_lost",
            UnknownReason::EndNotSeen => "end_not_seen",
            UnknownReason::Segmented => "segmented",
        }
    }
}

/// Why a packet ended as it did, in `Fate::reason`: written as the kernel's drop reason name
/// (`NETFILTER_DROP`) or the unknown reason's (`in_flight`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The kernel's drop reason, without its prefix (`reason N` for one without a name).
    Drop(String),
    Unknown(UnknownReason),
}

impl Reason {
    pub fn name(&self) -> &str {
        match self {
            Reason::Drop(name) => name,
            Reason::Unknown(why) => why.name(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fate {
    pub kind: FateKind,
    /// Dropped: the last observation point that saw the packet alive. Delivered, forwarded,
    /// transmitted: where that happened (`socket`, `nf_local_in`, `dev_xmit`).
    pub hook: Option<Hook>,
    /// `first` or `last` when that point is a bracketed hook (left out otherwise).
    #[serde(skip_serializing_if = "Position::is_only")]
    pub position: Position,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns_name: Option<crate::model::sighting::Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifname: Option<crate::model::sighting::Name>,
    /// Dropped: the kernel's drop reason. Unknown: why.
    pub reason: Option<Reason>,
    pub location: Option<String>,
    /// Who dropped it, where the tracer knows more than the kernel's reason (another tool's
    /// XDP program).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl Fate {
    fn at(kind: FateKind, s: &Sighting) -> Fate {
        Fate {
            kind,
            hook: Some(s.hook),
            position: s.position,
            netns_name: s.netns_name.clone(),
            ifname: s.ifname.clone(),
            reason: None,
            location: None,
            by: None,
        }
    }

    /// `nf_local_in (first)`, `tc_ingress (last)`, `socket`.
    pub fn point(&self) -> Option<String> {
        let hook = self.hook?;
        Some(match self.position.name() {
            Some(position) => format!("{hook} ({position})"),
            None => hook.name().to_string(),
        })
    }

    /// The kernel's drop reason, for a drop.
    pub fn drop_reason(&self) -> Option<&str> {
        match &self.reason {
            Some(Reason::Drop(name)) => Some(name),
            _ => None,
        }
    }

    /// Why the end is unknown, for an unknown fate.
    pub fn unknown_reason(&self) -> Option<UnknownReason> {
        match self.reason {
            Some(Reason::Unknown(why)) => Some(why),
            _ => None,
        }
    }

    /// The reason as written (`NETFILTER_DROP`, `in_flight`).
    pub fn reason_name(&self) -> Option<&str> {
        self.reason.as_ref().map(Reason::name)
    }
}

/// The end of the journey made of `sightings` (in time order).
pub fn fate(sightings: &[Sighting], end: &TraceEnd) -> Fate {
    // An application read it: whatever else freed a copy (a raw socket's clone), it arrived.
    if let Some(read) = sightings.iter().find(|s| s.hook == Hook::Socket) {
        return Fate::at(FateKind::Delivered, read);
    }
    if let Some(fate) = ended_after_delivery(sightings).or_else(|| ignored_multicast(sightings)) {
        return fate;
    }
    if let Some(mut fate) = dropped(sightings) {
        if unseen_rule(&fate, sightings, end) {
            let after = fate
                .point()
                .map(|p| format!(" after {p}"))
                .unwrap_or_default();
            fate.by = Some(format!(
                "dropped by a netfilter rule{after}, at a hook this kernel does not let the \
                 tracer see"
            ));
        }
        return fate;
    }
    let last_on_path = sightings.iter().rev().find(|s| s.on_path());
    match last_on_path {
        Some(s) if s.hook == Hook::NfLocalIn && s.position != Position::First => {
            Fate::at(FateKind::Delivered, s)
        }
        // Handed to a veth, a packet goes on at its peer: where events were lost (or not kept)
        // after it, its next points may be among them, and "transmitted" would be a guess.
        Some(s) if s.hook == Hook::DevXmit && s.peer.is_some() && end.touches(sightings, true) => {
            unknown_fate(sightings, last_on_path, end)
        }
        Some(s) if s.hook == Hook::DevXmit => {
            let forwarded = sightings.iter().any(|s| s.hook == Hook::NfForward);
            let kind = if forwarded {
                FateKind::Forwarded
            } else {
                FateKind::Transmitted
            };
            Fate::at(kind, s)
        }
        // A packet seen on its path whose socket then said it accepted it as a reset.
        Some(_) => {
            accepted_reset(sightings).unwrap_or_else(|| unknown_fate(sightings, last_on_path, end))
        }
        None => unknown_fate(sightings, last_on_path, end),
    }
}

/// A packet handed to the local stack (past LOCAL_IN) and then freed for a reason of the
/// normal-end class ([`drop_reason::normal_end`]): its socket's queue purged at close, or a copy
/// of data TCP already had. TCP received it; what came after is a normal end, not a drop to
/// report.
fn ended_after_delivery(sightings: &[Sighting]) -> Option<Fate> {
    let drop = sightings.iter().rev().find(|s| s.is_drop())?;
    let words = drop_reason::normal_end(drop.reason.as_deref()?)?;
    let delivered = sightings
        .iter()
        .rev()
        .find(|s| s.hook == Hook::NfLocalIn && s.position != Position::First)?;
    if sightings
        .iter()
        .any(|s| s.on_path() && s.ts_ns > delivered.ts_ns)
    {
        return None;
    }
    let mut fate = Fate::at(FateKind::Delivered, delivered);
    fate.by = Some(words.to_string());
    Some(fate)
}

/// A multicast that reached a host where no one joined its group, freed by IPv6's multicast
/// input ([`drop_reason::ignored_multicast`]): it arrived where it was sent (the link), and
/// this host is simply not one of its receivers.
fn ignored_multicast(sightings: &[Sighting]) -> Option<Fate> {
    let i = sightings.iter().rposition(Sighting::is_drop)?;
    let drop = &sightings[i];
    if !drop_reason::ignored_multicast(drop.reason.as_deref()?, drop.location.as_deref()) {
        return None;
    }
    if sightings[i + 1..].iter().any(Sighting::on_path) {
        return None;
    }
    let alive = sightings[..i].iter().rev().find(|s| s.on_path())?;
    let mut fate = Fate::at(FateKind::Delivered, alive);
    fate.by = Some(drop_reason::IGNORED_MULTICAST.to_string());
    Some(fate)
}

/// A rule's drop (NETFILTER_DROP) where no netfilter point saw the packet, on a kernel that
/// shows netfilter only in part: which hook is not known, and the explanation must not guess.
fn unseen_rule(fate: &Fate, sightings: &[Sighting], end: &TraceEnd) -> bool {
    fate.drop_reason() == Some("NETFILTER_DROP")
        && end.partial_hooks.iter().any(|h| h.starts_with("nf_"))
        && !sightings.iter().any(|s| s.hook.is_netfilter())
}

/// A reset whose socket said it accepted it (`tcp_receive_reset`): delivered, though no point
/// past tc ingress saw it arrive (where no netfilter hook is observed on the way in).
fn accepted_reset(sightings: &[Sighting]) -> Option<Fate> {
    let accepted = sightings
        .iter()
        .find(|s| s.hook == Hook::Tcp && s.note.as_deref() == Some("reset received"))?;
    let mut fate = Fate::at(FateKind::Delivered, accepted);
    fate.by = Some(ACCEPTED_RESET.to_string());
    Some(fate)
}

/// The drop that ended the packet: a free after which no point of the path saw it again (a
/// copy freed while the packet went on, as veth's XDP does, is not its end).
fn dropped(sightings: &[Sighting]) -> Option<Fate> {
    // A copy a bridge passed up to its own device ends apart from the frame it copies; its
    // path after the frame's drop is its own.
    let copy =
        |i: usize| sightings[i].is_drop() && crate::analysis::bridge::copy_passed_up(sightings, i);
    let copies: Vec<&Sighting> = (0..sightings.len())
        .filter(|&i| copy(i))
        .map(|i| &sightings[i])
        .collect();
    // The copy's own points: its skb, or its device (XDP sees no skb).
    let of_copy = |s: &Sighting| {
        copies.iter().any(|c| {
            (s.skb != 0 && s.skb == c.skb) || (s.netns == c.netns && s.ifindex == c.ifindex)
        })
    };
    let i = (0..sightings.len())
        .rev()
        .find(|&i| sightings[i].is_drop() && !copy(i))?;
    if sightings[i + 1..]
        .iter()
        .any(|s| s.on_path() && !of_copy(s))
    {
        return None;
    }
    let drop = &sightings[i];
    // The last point on the packet's path that saw it alive: the drop lies between it and the
    // next point of the path.
    let alive = sightings[..i].iter().rev().find(|s| s.on_path());
    let mut fate = Fate {
        kind: FateKind::Dropped,
        // Seen by no point before its drop (a frame a packet socket sent straight to a driver
        // that refused it): the drop is its only place.
        hook: Some(alive.unwrap_or(drop).hook),
        position: alive.map_or(Position::Only, |s| s.position),
        netns_name: drop.netns_name.clone(),
        ifname: drop
            .ifname
            .clone()
            .or_else(|| alive.and_then(|s| s.ifname.clone())),
        reason: drop.reason.as_deref().map(|r| Reason::Drop(r.to_string())),
        location: drop.location.as_deref().map(str::to_string),
        by: drop.note.as_deref().map(str::to_string),
    };
    bridge_drop::name_drop(&mut fate, sightings, i);
    Some(fate)
}

/// Whether the journey ends with its GSO skb freed normally right after tc egress: software
/// segmentation in `validate_xmit_skb`, which frees the original once it is cut.
fn segmented(sightings: &[Sighting], last_on_path: Option<&Sighting>) -> bool {
    let Some(last) = last_on_path else {
        return false;
    };
    last.hook == Hook::TcEgress
        && last.gso_segs > 1
        && sightings
            .iter()
            .any(|s| s.hook == Hook::ConsumeSkb && s.ts_ns >= last.ts_ns)
}

fn unknown_fate(sightings: &[Sighting], last_on_path: Option<&Sighting>, end: &TraceEnd) -> Fate {
    let last_ts = sightings.last().map_or(0, |s| s.ts_ns);
    let why = if segmented(sightings, last_on_path) {
        UnknownReason::Segmented
    } else if end.touches(sightings, true) {
        UnknownReason::EventsLost
    } else if end.end_ns > 0 && end.end_ns.saturating_sub(last_ts) < IN_FLIGHT_NS {
        UnknownReason::InFlight
    } else {
        UnknownReason::EndNotSeen
    };
    let mut fate = match last_on_path.or(sightings.first()) {
        Some(s) => Fate::at(FateKind::Unknown, s),
        None => Fate {
            kind: FateKind::Unknown,
            hook: None,
            position: Position::Only,
            netns_name: None,
            ifname: None,
            reason: None,
            location: None,
            by: None,
        },
    };
    fate.reason = Some(Reason::Unknown(why));
    fate
}

mod bridge_drop;

#[cfg(test)]
mod tests;
