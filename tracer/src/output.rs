//! Sinks: JSON lines (the contract of ARCHITECTURE.md) and text for people.

use std::io::{self, Write};

use serde_json::{json, Value};

use crate::{
    journey::{captures, Journey},
    stats::Stats,
};

/// Version of the JSON-lines schema; bumped when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

pub fn packet_json(journey: &Journey) -> Value {
    let first = journey.headers();
    let path: Vec<Value> = journey
        .sightings
        .iter()
        .map(|s| {
            let mut point = json!({
                "ts_ns": s.ts_ns,
                "hook": s.hook,
                "netns": s.netns,
                "netns_name": s.netns_name,
                "ifname": s.ifname,
                "dir": direction(&s.hook),
            });
            if let Some(position) = &s.position {
                point["position"] = json!(position);
            }
            if let Some(note) = &s.note {
                point["note"] = json!(note);
            }
            point
        })
        .collect();
    json!({
        "type": "packet",
        "schema_version": SCHEMA_VERSION,
        "id": journey.id,
        "src": first.src,
        "dst": first.dst,
        "proto": first.proto,
        "sport": first.sport,
        "dport": first.dport,
        "tcp_flags": first.tcp_flags,
        "len": first.ip_len,
        "path": path,
        "fate": journey.fate,
        "capture": captures(journey),
    })
}

/// Receive-side hooks are `rx`; everything on the way out is `tx`.
pub fn direction(hook: &str) -> &'static str {
    match hook {
        "xdp" | "netif_receive" | "tc_ingress" | "nf_prerouting" | "nf_local_in" | "nf_forward" => {
            "rx"
        }
        "kfree_skb" | "consume_skb" | "socket" | "tcp" | "fib_lookup" | "icmp_send" => "-",
        _ => "tx",
    }
}

pub fn write_json(out: &mut impl Write, journeys: &[Journey], stats: &Stats) -> io::Result<()> {
    for journey in journeys {
        writeln!(out, "{}", packet_json(journey))?;
    }
    writeln!(out, "{}", stats.to_json())
}

pub fn write_text(out: &mut impl Write, journeys: &[Journey], stats: &Stats) -> io::Result<()> {
    for journey in journeys {
        let s = journey.headers();
        let endpoint = |ip: Option<std::net::IpAddr>, port: u16| match ip {
            Some(ip) if s.proto == "tcp" || s.proto == "udp" => format!("{ip}:{port}"),
            Some(ip) => ip.to_string(),
            None => "?".into(),
        };
        let flags = if s.tcp_flags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", s.tcp_flags.join(","))
        };
        writeln!(
            out,
            "packet {}: {} > {} {}{} len {}",
            journey.id,
            endpoint(s.src, s.sport),
            endpoint(s.dst, s.dport),
            s.proto,
            flags,
            s.ip_len
        )?;
        for point in &journey.sightings {
            let place = match (&point.netns_name, &point.ifname) {
                (Some(ns), Some(ifname)) => format!("{ns}/{ifname}"),
                (None, Some(ifname)) => ifname.clone(),
                (Some(ns), None) => ns.clone(),
                (None, None) => format!("netns:{}", point.netns),
            };
            let extra = match (&point.reason, &point.location, &point.note) {
                (Some(reason), Some(location), _) => format!("  reason {reason} at {location}"),
                (_, _, Some(note)) => format!("  {note}"),
                _ => String::new(),
            };
            let hook = match &point.position {
                Some(position) => format!("{} ({position})", point.hook),
                None => point.hook.clone(),
            };
            let offset_us = point.ts_ns.saturating_sub(journey.sightings[0].ts_ns) as f64 / 1000.0;
            writeln!(out, "    +{offset_us:>9.1}us  {hook:<22} {place}{extra}")?;
        }
        let fate = &journey.fate;
        let mut line = format!(
            "    fate: {}",
            serde_json::to_value(fate.kind)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("?")
        );
        if let Some(hook) = &fate.hook {
            line.push_str(&format!(" after {hook}"));
            if let Some(position) = &fate.position {
                line.push_str(&format!(" ({position})"));
            }
        }
        if let Some(reason) = &fate.reason {
            line.push_str(&format!(", reason {reason}"));
        }
        writeln!(out, "{line}")?;
        for capture in captures(journey) {
            writeln!(
                out,
                "    tcpdump -i {} ({}) {}: {}",
                capture.ifname.as_deref().unwrap_or("?"),
                capture.netns_name.as_deref().unwrap_or("this namespace"),
                capture.dir,
                if capture.seen {
                    "sees it"
                } else {
                    "does not see it"
                }
            )?;
        }
    }
    writeln!(out, "{}", stats.summary())
}
