//! The vocabulary of explanations: hooks, packets, drop causes and ICMP messages in words.

use std::net::{IpAddr, Ipv4Addr};

use tracer_common::hook::Hook;

use crate::{
    analysis::journey::Journey,
    model::drop_reason::{self, DropClass},
    model::sighting::{Proto, Sighting},
};

/// A hook as people know it: netfilter hooks with the iptables chain that runs there.
pub fn hook_words(hook: &str) -> &str {
    match hook {
        "nf_prerouting" => "PREROUTING",
        "nf_local_in" => "LOCAL_IN (iptables INPUT)",
        "nf_forward" => "FORWARD",
        "nf_local_out" => "LOCAL_OUT (iptables OUTPUT)",
        "nf_postrouting" => "POSTROUTING",
        "tc_ingress" => "tc ingress",
        "tc_egress" => "tc egress",
        "netif_receive" => "the receive tap",
        "dev_xmit" => "the driver",
        other => other,
    }
}

pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// "SYN", "SYN-ACK", "data", "echo request", "datagram".
pub fn packet_kind(s: &Sighting) -> String {
    let mut kind = String::new();
    write_packet_kind(&mut kind, s);
    kind
}

/// [`packet_kind`] at the end of `out` (a packet's words are built in one string).
fn write_packet_kind(out: &mut String, s: &Sighting) {
    let words = match s.proto {
        Proto::Tcp => {
            let header_only = s.ip_len > 0 && s.ip_len <= tcp_header_end(s);
            let mut flags = s.tcp_flags.names().filter(|f| *f != "PSH");
            match (flags.next(), flags.clone().next()) {
                (Some("ACK"), None) if !header_only => "data",
                (None, _) => "segment without flags",
                (Some(first), _) => {
                    out.push_str(first);
                    for flag in flags {
                        out.push('-');
                        out.push_str(flag);
                    }
                    return;
                }
            }
        }
        Proto::Udp => "datagram",
        Proto::Icmp | Proto::Icmpv6 => match (s.proto, s.icmp_type) {
            (Proto::Icmp, 8) | (Proto::Icmpv6, 128) => "echo request",
            (Proto::Icmp, 0) | (Proto::Icmpv6, 129) => "echo reply",
            (Proto::Icmp, t) => return out.push_str(&icmp_message(t, s.icmp_code)),
            (_, t) => return out.push_str(&format!("type {t} code {}", s.icmp_code)),
        },
        other => return out.push_str(&other.to_string()),
    };
    out.push_str(words);
}

/// IPv4 + TCP headers with the options Linux puts on data segments (timestamps): a segment no
/// longer than this carries no payload. IPv6 headers are 20 bytes longer.
fn tcp_header_end(s: &Sighting) -> u16 {
    let ip = if s.src.is_some_and(|ip| ip.is_ipv6()) {
        40
    } else {
        20
    };
    ip + 32
}

/// "TCP SYN 10.0.0.1:40000 > 10.0.0.2:8080", "ICMP echo request 10.0.0.1 > 10.0.0.2".
/// Written into one string: a live trace words every packet it prints.
pub fn packet_words(s: &Sighting) -> String {
    use std::fmt::Write;
    let mut words = String::with_capacity(64);
    words.extend(s.proto.name().chars().map(|c| c.to_ascii_uppercase()));
    words.push(' ');
    write_packet_kind(&mut words, s);
    for (ip, port, before) in [(s.src, s.sport, " "), (s.dst, s.dport, " > ")] {
        words.push_str(before);
        match ip {
            Some(IpAddr::V4(ip)) => push_ipv4(&mut words, ip),
            Some(ip) => {
                let _ = write!(words, "{ip}");
            }
            None => words.push('?'),
        }
        if s.proto.has_ports() {
            words.push(':');
            push_decimal(&mut words, port.into());
        }
    }
    words
}

/// An IPv4 address as `Display` writes it, without the formatter's machinery (every packet
/// line and record has two).
fn push_ipv4(out: &mut String, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(out, octet.into());
    }
}

fn push_decimal(out: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// "tally" of packet kinds, in order of first appearance: "3 SYN, 1 SYN-ACK".
pub fn tally(kinds: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for kind in kinds {
        match counts.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((kind, 1)),
        }
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ICMP message an `icmp_send` annotation ("answered with icmp type 3 code 4") sent.
pub fn icmp_words(s: &Sighting) -> String {
    let numbers: Vec<u8> = s
        .note
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .filter_map(|w| w.parse().ok())
        .collect();
    let (t, c) = match numbers.as_slice() {
        [t, c] => (*t, *c),
        _ => return "an error".to_string(),
    };
    icmp_message(t, c)
}

/// The name of an ICMP (v4) message.
pub fn icmp_message(t: u8, c: u8) -> String {
    match (t, c) {
        (3, 0) => "network unreachable".to_string(),
        (3, 1) => "host unreachable".to_string(),
        (3, 3) => "port unreachable".to_string(),
        (3, 4) => "fragmentation needed".to_string(),
        (3, 13) => "communication administratively prohibited".to_string(),
        (11, 0) => "time exceeded (TTL reached zero)".to_string(),
        (t, c) => format!("type {t} code {c}"),
    }
}

/// Who or what dropped the packet, in words, from its drop reason and where it was last alive.
pub fn drop_cause(journey: &Journey) -> String {
    let fate = &journey.fate;
    if let Some(by) = &fate.by {
        return by.clone();
    }
    // A drop of the tunnel's outer packet is about its headers (no socket on UDP port 4789).
    let s = super::tunnel_words::dropped_outer(journey).unwrap_or(journey.headers());
    let alive = fate.hook.map_or("", Hook::name);
    let ifname = super::fate_ifname(journey).unwrap_or_else(|| "?".to_string());
    let after = match fate.point() {
        Some(_) if alive == Hook::KfreeSkb.name() => {
            " before any observation point saw it".to_string()
        }
        Some(p) => format!(" after {p}"),
        None => String::new(),
    };
    match fate.drop_reason().unwrap_or("") {
        "NETFILTER_DROP" if alive.starts_with("nf_") => {
            format!("dropped by a netfilter rule at {}", hook_words(alive))
        }
        "NETFILTER_DROP" => format!("dropped by a netfilter rule{after}"),
        "NEIGH_FAILED" => format!(
            "dropped while it waited for its next hop's link-layer address on {ifname}: \
             nobody answered ARP/ND"
        ),
        "NEIGH_QUEUEFULL" => format!(
            "dropped while it waited for its next hop's link-layer address on {ifname}: too \
             many packets were already waiting"
        ),
        "TC_INGRESS" => format!("dropped by a tc program at ingress of {ifname}"),
        "TC_EGRESS" => format!("dropped by a tc program at egress of {ifname}"),
        "NO_SOCKET" => format!(
            "dropped because no socket listens on {} port {}",
            s.proto.name().to_uppercase(),
            s.dport
        ),
        "IP_INNOROUTES" | "IP_OUTNOROUTES" => format!(
            "dropped because there is no route to {}",
            s.dst.map_or("?".to_string(), |ip| ip.to_string())
        ),
        "PKT_TOO_BIG" => format!(
            "dropped because, at {} bytes with Don't Fragment set, it is larger than the MTU of the next hop",
            s.ip_len
        ),
        "IP_RPFILTER" => format!(
            "dropped by the reverse-path filter (rp_filter): the route back to {} does not leave by {ifname}",
            s.src.map_or("?".to_string(), |ip| ip.to_string())
        ),
        reason => match drop_reason::class(reason) {
            DropClass::Resource => {
                format!("dropped because a queue, a buffer or memory was full{after}")
            }
            DropClass::Check => format!(
                "dropped because it failed a check of its headers, checksum or protocol \
                 state{after}"
            ),
            DropClass::Policy => format!("dropped by a rule or a program{after}"),
            DropClass::NoReceiver => format!("dropped because nothing here takes it{after}"),
            DropClass::Routing => format!("dropped by routing{after}"),
            DropClass::Neighbour => format!(
                "dropped because its next hop's link-layer address could not be had{after}"
            ),
            DropClass::Device => format!("dropped because the device could not take it{after}"),
            DropClass::NormalEnd | DropClass::Unspecified => {
                format!("dropped by the kernel{after}")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ports_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "10.200.1.254",
            "255.255.255.255",
            "192.0.2.9",
            "1.20.100.7",
        ] {
            let ip: Ipv4Addr = ip.parse().unwrap();
            let mut out = String::new();
            push_ipv4(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
        for n in [0u32, 7, 10, 99, 100, 8080, 65535, u32::MAX] {
            let mut out = String::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }
}
