//! Stitching sightings into one journey per packet, and the packet's fate. Pure: sightings in,
//! journeys out, so it is tested with recorded streams and no kernel.
//!
//! A packet keeps its headers while it crosses the stack and a veth into another namespace, so
//! sightings are grouped by a content fingerprint (addresses, ports, IP id, TCP seq/ack/flags).
//! Two sightings with one fingerprint belong to different packets (a retransmission with the same
//! headers, a SYN-ACK resent with IP id 0) when the second is at a point the journey already
//! passed, or comes long after: a packet crosses the stack in microseconds, a retransmission
//! waits at least 200 ms.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use serde::Serialize;

use tracer_common::hook::Hook;

use crate::{
    analysis::copies::{self, CopyOf, Separated},
    analysis::fate::{fate, Fate, FateKind, TraceEnd},
    model::sighting::{Proto, Sighting},
};

/// A route lookup or a TCP event about a packet happens while that packet is being handled,
/// microseconds from its sightings.
const ANNOTATION_WINDOW_NS: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Journey {
    pub id: u64,
    pub sightings: Vec<Sighting>,
    pub fate: Fate,
    /// The flow it belongs to (see [`crate::analysis::flow`]); 0 until flows are built, and for a
    /// journey without headers (a failed route lookup on its own).
    pub flow_id: u64,
    /// Events were lost while it was alive (see [`crate::model::gaps`]): it may miss points.
    pub incomplete: bool,
    /// The packet a tunnel carried, where it was seen only inside the tunnel's outer headers
    /// (a trace of the underlay's receiver alone): it, not the outer packet, is the journey's.
    #[serde(skip)]
    pub carried: Option<Box<Sighting>>,
    /// Set on a copy of another packet (see [`crate::analysis::copies`]): its end is its own.
    #[serde(skip)]
    pub copy: Option<CopyOf>,
}

impl Journey {
    /// The sighting whose headers describe the packet: the first one on its path that parsed
    /// them (a route lookup or a bare skb event knows less), and not in a tunnel's outer
    /// headers where it was also seen without them.
    pub fn headers(&self) -> &Sighting {
        if let Some(carried) = &self.carried {
            return carried;
        }
        self.sightings
            .iter()
            .find(|s| s.on_path() && s.proto != Proto::Unknown && s.tunnel.is_none())
            .or_else(|| {
                self.sightings
                    .iter()
                    .find(|s| s.on_path() && s.proto != Proto::Unknown)
            })
            .or_else(|| self.sightings.iter().find(|s| s.proto != Proto::Unknown))
            .unwrap_or(&self.sightings[0])
    }
}

/// Groups `sightings` (any order) into journeys ordered by their first sighting, numbered
/// from 1: the streaming stitcher's work (one engine for a live trace, a report and a
/// replay), with no journey closed before its time (the whole trace is at hand).
///
/// A sighting joins the open journey with its fingerprint or, failing that, the one whose skb
/// it shares while that skb lives: that is how a NAT rewrite (new addresses, same skb) and an
/// event that only knows the skb (`net_dev_xmit`) stay in their packet's journey.
pub fn build(mut sightings: Vec<Sighting>, end: &TraceEnd) -> Vec<Journey> {
    sightings.sort_by_key(|s| s.ts_ns);
    let mut stitcher = stream::Stitcher::new(stream::Window::WHOLE_TRACE);
    for sighting in sightings {
        stitcher.push(sighting);
    }
    let mut journeys: Vec<Journey> = Vec::new();
    for closed in stitcher.finish() {
        let first_id = journeys.len() as u64 + 1;
        journeys.extend(from_closed(closed, end, first_id));
    }
    in_time_order(journeys)
}

/// `journeys` (numbered as they closed) sorted by their first sighting and numbered again
/// from 1, each copy pointing at its original's new number.
fn in_time_order(mut journeys: Vec<Journey>) -> Vec<Journey> {
    let first_ts = |j: &Journey| j.sightings.first().map_or(0, |s| s.ts_ns);
    journeys.sort_by_key(|j| (first_ts(j), j.id));
    let new_id: FxHashMap<u64, u64> = journeys
        .iter()
        .zip(1..)
        .map(|(j, new)| (j.id, new))
        .collect();
    for (journey, id) in journeys.iter_mut().zip(1..) {
        journey.id = id;
        if let Some(copy) = &mut journey.copy {
            copy.of = new_id[&copy.of];
        }
    }
    journeys
}

/// The journeys of what a [`stream::Stitcher`] closed (a packet and its copies, or an
/// annotation that fits no packet), numbered from `first_id`.
pub fn from_closed(closed: stream::Closed, end: &TraceEnd, first_id: u64) -> Vec<Journey> {
    let groups = if closed.sightings.is_empty() {
        Vec::new()
    } else {
        vec![closed.sightings]
    };
    let mut journeys = complete(groups, closed.annotations, end, first_id);
    if closed.cut_short {
        // Closed early to keep the open journeys bounded: later points may be missing.
        for journey in &mut journeys {
            journey.incomplete = true;
        }
    }
    journeys
}

/// Journeys from sightings grouped per packet: copies split out, annotations placed, fates
/// found; numbered from `first_id` in order of their first sighting.
fn complete(
    groups: Vec<Vec<Sighting>>,
    annotations: Vec<Sighting>,
    end: &TraceEnd,
    first_id: u64,
) -> Vec<Journey> {
    let mut journeys = copies::separate(groups);
    let orphans = place_annotations(&mut journeys, annotations);
    // An annotation that fits no packet is a journey of its own; one placed before its
    // packet's first sighting (a route lookup) moves that packet earlier.
    journeys.extend(orphans.into_iter().map(|a| (vec![a], None)));
    copies::in_time_order(journeys)
        .into_iter()
        .zip(first_id..)
        .map(|((sightings, copy), id)| {
            let fate = fate(&sightings, end);
            let open = fate.kind == FateKind::Unknown;
            Journey {
                id,
                incomplete: end.touches(&sightings, open),
                fate,
                carried: carried(&sightings),
                sightings,
                flow_id: 0,
                copy: copy.map(|(of, made)| CopyOf {
                    of: first_id + of as u64,
                    made,
                }),
            }
        })
        .collect()
}

/// The inner packet of a journey seen on its path only inside a tunnel's outer headers.
fn carried(sightings: &[Sighting]) -> Option<Box<Sighting>> {
    let mut on_path = sightings
        .iter()
        .filter(|s| s.on_path() && s.proto != Proto::Unknown);
    let first = on_path.clone().next()?;
    if first.tunnel.is_none() || on_path.any(|s| s.tunnel.is_none()) {
        return None;
    }
    Some(Box::new(crate::analysis::tunnel::inner(first).into_owned()))
}

/// Events that name no skb but are about one packet: route lookups, and TCP events that only
/// know the socket (retransmission, reset received).
fn is_annotation(s: &Sighting) -> bool {
    s.hook == Hook::FibLookup || (s.hook == Hook::Tcp && s.skb == 0)
}

/// Where an annotation may belong: a route lookup to the packet the same CPU was handling in the
/// same namespace towards the same destination (an output lookup may not know the source yet);
/// a TCP event to a packet of its connection, in either direction.
type AnnotationKey = (u32, u16, Option<IpAddr>, Option<IpAddr>, u16, u16);

fn annotation_key(s: &Sighting, route_lookup: bool) -> AnnotationKey {
    if route_lookup {
        return (s.netns, s.cpu, None, s.dst, 0, 0);
    }
    let (a, b) = ((s.src, s.sport), (s.dst, s.dport));
    let ((lo_ip, lo_port), (hi_ip, hi_port)) = if a <= b { (a, b) } else { (b, a) };
    (s.netns, u16::MAX, lo_ip, hi_ip, lo_port, hi_port)
}

/// Puts each annotation into the journey of its packet: the nearest one in time, within
/// [`ANNOTATION_WINDOW_NS`], that fits [`annotation_key`]. A failed route lookup or a TCP event
/// that fits no packet is a journey of its own; a successful route lookup without its packet
/// (a socket's connect, a source check) says nothing about any packet here and is left out (it
/// stays in the recorded stream).
fn place_annotations(journeys: &mut [Separated], annotations: Vec<Sighting>) -> Vec<Sighting> {
    let mut orphans = Vec::new();
    // Most packets have none: the index of their points would be built for nothing.
    if annotations.is_empty() {
        return orphans;
    }
    let mut index: FxHashMap<AnnotationKey, Vec<(u64, usize)>> = FxHashMap::default();
    for (i, (journey, _)) in journeys.iter().enumerate() {
        for s in journey.iter().filter(|s| s.proto != Proto::Unknown) {
            for route_lookup in [true, false] {
                index
                    .entry(annotation_key(s, route_lookup))
                    .or_default()
                    .push((s.ts_ns, i));
            }
        }
    }
    for annotation in annotations {
        let route_lookup = annotation.hook == Hook::FibLookup;
        let found_route = route_lookup
            && annotation
                .note
                .as_deref()
                .is_some_and(|n| n.starts_with("route found"));
        let nearest = index
            .get(&annotation_key(&annotation, route_lookup))
            .into_iter()
            .flatten()
            .filter(|(ts, i)| {
                ts.abs_diff(annotation.ts_ns) < ANNOTATION_WINDOW_NS
                    && (!route_lookup || source_fits(&annotation, &journeys[*i].0))
                    && (!found_route || bracketed(&annotation, &journeys[*i].0))
            })
            .min_by_key(|(ts, _)| ts.abs_diff(annotation.ts_ns))
            .map(|(_, i)| *i);
        match nearest {
            Some(i) => {
                let journey = &mut journeys[i].0;
                let at = journey.partition_point(|s| s.ts_ns <= annotation.ts_ns);
                journey.insert(at, annotation);
            }
            None if !route_lookup
                || annotation
                    .note
                    .as_deref()
                    .is_some_and(|n| n.starts_with("no route")) =>
            {
                orphans.push(annotation)
            }
            None => {}
        }
    }
    orphans
}

/// Whether the journey was seen in the lookup's namespace both before and after it: a successful
/// lookup is part of handling that packet only then (a socket's own lookups come before its
/// packet exists, and a reply's lookups are not the request's).
fn bracketed(lookup: &Sighting, journey: &[Sighting]) -> bool {
    let here = |s: &&Sighting| s.netns == lookup.netns && s.on_path();
    journey.iter().filter(here).any(|s| s.ts_ns < lookup.ts_ns)
        && journey.iter().filter(here).any(|s| s.ts_ns > lookup.ts_ns)
}

fn source_fits(lookup: &Sighting, journey: &[Sighting]) -> bool {
    let unspecified = lookup.src.is_none_or(|ip| ip.is_unspecified());
    unspecified || journey.iter().any(|s| s.src == lookup.src)
}

mod link;
pub mod stream;

#[cfg(test)]
mod tests;
