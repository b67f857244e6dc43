//! The oracle for "tcpdump saw it": what a real tcpdump captured, compared packet by packet with
//! the tracer's capture verdicts.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{sh, Report};

/// What identifies one packet on the wire and survives NAT: protocol, IP id, TCP sequence number
/// and flags, ICMP echo sequence.
pub type Identity = (String, u32, u32, Vec<String>, u32);

const TCP_FLAGS: [(u32, &str); 8] = [
    (0x02, "SYN"),
    (0x10, "ACK"),
    (0x01, "FIN"),
    (0x04, "RST"),
    (0x08, "PSH"),
    (0x20, "URG"),
    (0x40, "ECE"),
    (0x80, "CWR"),
];

fn number(field: &str) -> u32 {
    let field = field.split(',').next().unwrap_or_default();
    match field.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).unwrap_or(0),
        None => field.parse().unwrap_or(0),
    }
}

/// The identities of the packets in a pcap file, read back with tshark.
pub fn pcap_identities(file: &std::path::Path) -> Vec<Identity> {
    pcap_timed_identities(file)
        .into_iter()
        .map(|(identity, _)| identity)
        .collect()
}

/// What one tcpdump captured: each packet's identity and capture time, and the stretch of
/// time the capture surely covered (listening to stopping), both on CLOCK_MONOTONIC.
pub struct Capture {
    pub packets: Vec<(Identity, u64)>,
    pub covered: (u64, u64),
}

/// The identities of the packets in a pcap file with their capture times, moved from the
/// file's wall clock to CLOCK_MONOTONIC (the tracer's clock).
pub fn pcap_timed_identities(file: &std::path::Path) -> Vec<(Identity, u64)> {
    let wall_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_nanos() as i128;
    let monotonic_from_wall = i128::from(crate::monotonic_ns()) - wall_ns;
    let fields = [
        "frame.time_epoch",
        "ip.proto",
        "ipv6.nxt",
        "ip.id",
        "tcp.seq_raw",
        "tcp.flags",
        "icmp.seq",
        "icmpv6.echo.sequence_number",
        "icmp.type",
        "icmpv6.type",
        "ipv6.flow",
        "ipv6.hopopts.nxt",
    ];
    let mut command = format!("tshark -r {} -T fields -E separator=/t", file.display());
    for f in fields {
        command.push_str(&format!(" -e {f}"));
    }
    sh(&command)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let at_ns = epoch_ns(f[0]) + monotonic_from_wall;
            // The identity's fields follow the time.
            let get = |i: usize| f.get(i + 1).copied().unwrap_or_default();
            // IPv6 with a hop-by-hop header first (MLD): the protocol is the header after it,
            // as the tracer reports it.
            let proto_number = if !get(0).is_empty() {
                number(get(0))
            } else if number(get(1)) == 0 && !get(10).is_empty() {
                number(get(10))
            } else {
                number(get(1))
            };
            let proto = match proto_number {
                6 => "tcp",
                17 => "udp",
                1 => "icmp",
                58 => "icmpv6",
                _ => "other",
            };
            let flags = number(get(4));
            let flags = if proto == "tcp" {
                TCP_FLAGS
                    .iter()
                    .filter(|(bit, _)| flags & bit != 0)
                    .map(|(_, n)| n.to_string())
                    .collect()
            } else {
                Vec::new()
            };
            // An ICMP error quotes the packet it answers: its (inner) echo sequence is not its own.
            let icmp_type = number(get(7)).max(number(get(8)));
            let echo_seq = if matches!(icmp_type, 0 | 8 | 128 | 129) {
                number(get(5)).max(number(get(6)))
            } else {
                0
            };
            // The tracer's `ip_id` is the IPv6 flow label where there is no IPv4 id.
            let ip_id = if get(2).is_empty() { get(9) } else { get(2) };
            let identity = (
                proto.to_string(),
                number(ip_id),
                number(get(3)),
                flags,
                echo_seq,
            );
            (identity, at_ns.max(0) as u64)
        })
        .collect()
}

/// tshark's `frame.time_epoch` ("1796258532.222035000") in nanoseconds.
fn epoch_ns(field: &str) -> i128 {
    let (seconds, fraction) = field.split_once('.').unwrap_or((field, "0"));
    let digits: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    let parse = |s: &str| {
        s.parse::<i128>()
            .unwrap_or_else(|_| panic!("tshark's frame.time_epoch is not a time: {field}"))
    };
    parse(seconds) * 1_000_000_000 + parse(&digits)
}

/// The identity of a tracer `packet` record.
pub fn packet_identity(packet: &Value) -> Identity {
    let proto = packet["proto"].as_str().unwrap_or_default().to_string();
    let flags = packet["tcp_flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let echo = matches!(packet["icmp_type"].as_u64(), Some(0 | 8 | 128 | 129));
    let echo_seq = if echo {
        packet["dport"].as_u64().unwrap_or(0) as u32
    } else {
        0
    };
    (
        proto,
        packet["ip_id"].as_u64().unwrap_or(0) as u32,
        packet["tcp_seq"].as_u64().unwrap_or(0) as u32,
        flags,
        echo_seq,
    )
}

/// A traced packet in a few lines: addresses, fate, path point by point, explanation; what a
/// failing test prints so the failure can be read without rerunning it.
pub fn describe(p: &Value) -> String {
    let points: Vec<String> = p["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut point = format!("{} {}", s["ts_ns"], s["hook"].as_str().unwrap());
            for field in ["position", "netns_name", "ifname", "dir", "note"] {
                if let Some(v) = s[field].as_str() {
                    point.push_str(&format!(" {field}={v}"));
                }
            }
            point
        })
        .collect();
    format!(
        "packet {} {}:{} > {}:{} {} {} len {}\n  fate {}\n  path:\n    {}\n  explanation: {}",
        p["id"],
        p["src"],
        p["sport"],
        p["dst"],
        p["dport"],
        p["proto"],
        p["tcp_flags"],
        p["len"],
        p["fate"],
        points.join("\n    "),
        p["explanation"]
    )
}

/// Packets whose verdict matched tcpdump, out of packets checked, and the mismatches in words.
#[derive(Debug, Default)]
pub struct Agreement {
    pub agreeing: usize,
    pub checked: usize,
    /// Packets on the interface while only one of the two was capturing: not compared.
    pub outside: usize,
    pub mismatches: Vec<String>,
}

impl Agreement {
    pub fn add(&mut self, other: Agreement) {
        self.agreeing += other.agreeing;
        self.checked += other.checked;
        self.outside += other.outside;
        self.mismatches.extend(other.mismatches);
    }

    pub fn figure(&self) -> String {
        format!(
            "{}/{} packets agree with tcpdump ({} outside the time both captured)",
            self.agreeing, self.checked, self.outside
        )
    }
}

/// When a tracer `packet` record crossed the interface: its first point there (tcpdump's tap
/// is within microseconds of it), else its first point.
fn time_at(packet: &Value, netns_name: &str, ifname: &str) -> u64 {
    let path = packet["path"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    path.iter()
        .find(|p| p["netns_name"] == netns_name && p["ifname"] == ifname)
        .or(path.first())
        .and_then(|p| p["ts_ns"].as_u64())
        .unwrap_or(0)
}

/// For one interface: every packet the tracer says crossed it, with its verdict (seen or not),
/// against what tcpdump on that interface captured. Packets tcpdump captured that the tracer
/// does not know count as mismatches too.
///
/// Only the time both surely captured is compared: from the later start (the tracer attached,
/// tcpdump listening) to the earlier stop signal. Outside it one of them was not looking, and
/// the kernel's own chatter (an MLD report, a neighbour probe) can come at any moment, also
/// then: it is no evidence either way.
pub fn agreement(report: &Report, netns_name: &str, ifname: &str, captured: &Capture) -> Agreement {
    let from = report.traced.0.max(captured.covered.0);
    let to = report.traced.1.min(captured.covered.1);
    let within = |at: u64| (from..=to).contains(&at);
    let mut out = Agreement::default();
    // identity -> (said seen, said not seen)
    let mut said: BTreeMap<Identity, (usize, usize)> = BTreeMap::new();
    // identity -> the tracer's packets of that identity, described for a mismatch's message
    let mut journeys: BTreeMap<Identity, Vec<String>> = BTreeMap::new();
    for packet in report.journeys() {
        let Some(captures) = packet["capture"].as_array() else {
            continue;
        };
        let here: Vec<&Value> = captures
            .iter()
            .filter(|c| c["netns_name"] == netns_name && c["ifname"] == ifname)
            .collect();
        if here.is_empty() {
            continue;
        }
        if !within(time_at(packet, netns_name, ifname)) {
            out.outside += 1;
            continue;
        }
        let seen = here.iter().any(|c| c["seen"] == true);
        journeys
            .entry(packet_identity(packet))
            .or_default()
            .push(describe(packet));
        let entry = said.entry(packet_identity(packet)).or_default();
        if seen {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    let mut on_wire: BTreeMap<Identity, usize> = BTreeMap::new();
    for (identity, at) in &captured.packets {
        if within(*at) {
            *on_wire.entry(identity.clone()).or_default() += 1;
        } else {
            out.outside += 1;
        }
    }
    let identities: std::collections::BTreeSet<&Identity> =
        said.keys().chain(on_wire.keys()).collect();
    for identity in identities {
        let (seen, unseen) = said.get(identity).copied().unwrap_or_default();
        let actual = on_wire.get(identity).copied().unwrap_or(0);
        let claimed = seen + unseen;
        let really_seen = actual.min(claimed);
        let agreeing = seen.min(really_seen) + unseen.min(claimed - really_seen);
        let checked = claimed + actual.saturating_sub(claimed);
        out.agreeing += agreeing;
        out.checked += checked;
        if agreeing != checked {
            let traced = journeys.get(identity).map(Vec::as_slice).unwrap_or(&[]);
            out.mismatches.push(format!(
                "{netns_name}/{ifname} {identity:?}: tracer said seen {seen}, not seen {unseen}; \
                 tcpdump captured {actual}{}{}",
                if traced.is_empty() {
                    ""
                } else {
                    "; the tracer's packets:\n"
                },
                traced.join("\n")
            ));
        }
    }
    out
}

/// Starts a real tcpdump on each `(namespace, interface)` of `captures`, traces `namespaces`
/// (names as `-n` takes them) with `filter`, runs `traffic`, and returns the tracer's report
/// with the captures' agreement with its verdicts. No event may be lost: a report with holes
/// judges nothing.
pub fn traced_beside_tcpdumps(
    captures: &[(&crate::Netns, &str)],
    namespaces: &[&str],
    filter: &str,
    traffic: impl FnOnce(),
) -> (Report, Agreement) {
    let tcpdumps: Vec<(String, String, crate::Tcpdump)> = captures
        .iter()
        .map(|(ns, ifname)| {
            let tcpdump = crate::Tcpdump::start(ns, ifname, filter);
            (ns.name.clone(), ifname.to_string(), tcpdump)
        })
        .collect();
    let mut args: Vec<&str> = Vec::new();
    for ns in namespaces {
        args.extend(["-n", ns]);
    }
    args.extend(filter.split_whitespace());
    let tracer = crate::Tracer::start(&args);
    traffic();
    // The last packets' frees come just after the traffic's last step.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let report = tracer.finish();
    assert_eq!(report.stats()["lost_total"], 0, "no event may be lost");
    assert_eq!(
        report.stats()["missed_total"],
        0,
        "no program run may be skipped by the kernel (recursion misses: {})",
        report.stats()["missed"]
    );
    let mut total = Agreement::default();
    for (ns, ifname, tcpdump) in tcpdumps {
        total.add(agreement(&report, &ns, &ifname, &tcpdump.stop_capture()));
    }
    (report, total)
}
