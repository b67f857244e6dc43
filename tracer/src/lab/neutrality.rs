//! Fate neutrality, lab by lab: a lab's topology, fault and traffic run once without the tracer
//! and once with it, and after each run the lab's outcome counters: per namespace the kernel's
//! SNMP and `netstat` counters, every interface's packet totals, every iptables rule's and
//! every nftables `counter`'s packets and bytes. The tracer only watches, so both runs must
//! count the same.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::{
    topology::{sh, Topology, PREFIX},
    trace_options, Lab,
};
use crate::{kernel::counters, trace::session};
use harness::in_netns;

/// Counter name ("server Tcp.InSegs", "server iptables filter INPUT #1 ... packets") -> value.
pub type Counters = BTreeMap<String, u64>;

/// Counters left out of the comparison: (lab, or `*` for every lab; the end of the
/// counter's name; why). Each can change between two runs of the same traffic without any
/// packet's fate changing, and the counters that do decide fates stay compared.
const UNSTABLE: &[(&str, &str, &str)] = &[
    // A veth with an XDP program (the tracer's, with `--xdp` and in labs) receives by NAPI and
    // counts each frame's bytes without its 14-byte Ethernet header; without one, with it.
    // Packets are still compared on every interface, and bytes at the IP layer (IpExt.InOctets,
    // IpExt.OutOctets) and per rule.
    ("*", ".rx_bytes", BYTES),
    ("*", ".tx_bytes", BYTES),
    // The server's half-open connection times out at the very moment the client's next SYN
    // arrives (both wait 1 s from the first SYN); which runs first is up to the kernel's timer
    // wheel (mostly the server's timer, not always). When the SYN comes first, the SYN-ACK
    // that answers it is a retransmission of that connection's; when the timer fires first,
    // the connection is gone (tcp_synack_retries 0) and the SYN-ACK is a new connection's.
    // Either way one SYN-ACK answers each SYN and the OUTPUT rule drops it: Tcp.OutSegs, the
    // rule's counter and the interfaces stay compared.
    ("local-out-drop", "server Tcp.RetransSegs", SYNACK),
    ("local-out-drop", "server TcpExt.TCPSynRetrans", SYNACK),
    ("local-out-drop", "server TcpExt.TCPTimeouts", SYNACK),
    // A pure ACK goes through TCP's header-prediction fast path (TCPHPAcks) or its slow path
    // (TCPPureAcks) depending on whether the application had read its socket by the time the
    // ACK came: a race between a process and softirq that the tracer's few microseconds per
    // packet tip one way. Both count the same ACK, received; Tcp.InSegs stays compared.
    ("nothing-wrong", "TcpExt.TCPHPAcks", FAST_PATH),
    ("nothing-wrong", "TcpExt.TCPPureAcks", FAST_PATH),
];

const BYTES: &str = "a veth with an XDP program counts bytes without the Ethernet header";
const FAST_PATH: &str = "which of TCP's two receive paths takes an ACK is a race with the reader";
const SYNACK: &str = "the server's SYN-ACK timer and the client's next SYN are due together";

/// What one run of a lab counted.
#[derive(Debug, Serialize)]
pub struct Run {
    /// Change of every counter over the run (after - before), zeros included: a counter that
    /// stayed 0 in both runs is compared too.
    pub counters: BTreeMap<String, i64>,
    /// TCP sockets that still had a retransmission timer running when the counters were read
    /// (they could still send, so a later read might count more), or a note that the counters
    /// never stopped changing.
    pub unsettled: Vec<String>,
    /// Events the tracer recorded (0 without it), and events it lost.
    pub events: u64,
    pub lost: u64,
}

/// One counter that differs between the runs.
#[derive(Debug, Serialize)]
pub struct Difference {
    pub counter: String,
    pub without: i64,
    pub with: i64,
}

/// Both runs of a lab, compared.
#[derive(Debug, Serialize)]
pub struct Report {
    pub lab: String,
    pub identical: bool,
    /// Counters compared, and of those the ones that moved (not 0 in one run or the other).
    pub counters: usize,
    pub moved: usize,
    /// Packets compared: the sum of the interfaces' rx and tx packet counters of the run
    /// without the tracer (a packet crossing a veth counts at both ends).
    pub packets: u64,
    pub differences: Vec<Difference>,
    /// Counters left out, with the reason.
    pub excluded: Vec<String>,
    pub without: Run,
    pub with: Run,
}

/// Runs `lab` without and then with the tracer, and compares what each run counted.
pub fn compare(lab: &Lab) -> Result<Report> {
    let without = run(lab, false).context("the run without the tracer")?;
    let with = run(lab, true).context("the run with the tracer")?;
    let (differences, excluded) = differences(lab.name, &without.counters, &with.counters);
    let compared = without.counters.keys().chain(with.counters.keys());
    let compared = compared.collect::<BTreeSet<_>>().len() - excluded.len();
    let moved = without.counters.iter().chain(&with.counters);
    let moved = moved.filter(|(name, n)| **n != 0 && unstable(lab.name, name).is_none());
    let moved = moved.map(|(name, _)| name).collect::<BTreeSet<_>>().len();
    let packets = without
        .counters
        .iter()
        .filter(|(name, _)| name.ends_with(".rx_packets") || name.ends_with(".tx_packets"))
        .map(|(_, n)| n.unsigned_abs())
        .sum();
    Ok(Report {
        lab: lab.name.to_string(),
        identical: differences.is_empty(),
        counters: compared,
        moved,
        packets,
        differences,
        excluded,
        without,
        with,
    })
}

/// The counters of `lab` that differ between the runs (a counter missing from one run counts
/// 0 there), and those left out with the reason.
fn differences(
    lab: &str,
    without: &BTreeMap<String, i64>,
    with: &BTreeMap<String, i64>,
) -> (Vec<Difference>, Vec<String>) {
    let (mut differences, mut excluded) = (Vec::new(), Vec::new());
    let names: BTreeSet<&String> = without.keys().chain(with.keys()).collect();
    for name in names {
        if let Some(why) = unstable(lab, name) {
            excluded.push(format!("{name}: {why}"));
            continue;
        }
        let a = without.get(name).copied().unwrap_or(0);
        let b = with.get(name).copied().unwrap_or(0);
        if a != b {
            differences.push(Difference {
                counter: name.clone(),
                without: a,
                with: b,
            });
        }
    }
    (differences, excluded)
}

/// Why counter `name` of `lab` is left out, if it is.
fn unstable(lab: &str, name: &str) -> Option<&'static str> {
    UNSTABLE
        .iter()
        .find(|(only, end, _)| (*only == "*" || *only == lab) && name.ends_with(end))
        .map(|(_, _, why)| *why)
}

/// Builds the lab, reads its counters, drives its traffic (traced or not), waits until the
/// namespaces are quiet, and reads the counters again.
fn run(lab: &Lab, traced: bool) -> Result<Run> {
    let mut topology = Topology::new();
    let scenario =
        (lab.build)(&mut topology).with_context(|| format!("building lab {}", lab.name))?;
    let netns = scenario.netns.clone();
    // Before the tracer attaches: whatever attaching does to the lab counts too.
    let before = snapshot(&netns)?;
    let traffic = scenario.traffic;
    let (after, unsettled, events, lost) = if traced {
        let options = trace_options(&scenario.netns, &scenario.filter)?;
        let mut after = None;
        let stats = session::trace(&options, session::Outputs::default(), || {
            let netns = netns.clone();
            let work = tokio::task::spawn_blocking(move || -> Result<_> {
                traffic()?;
                settle(&netns)
            });
            let after = &mut after;
            Ok(async move {
                *after = Some(work.await);
            })
        })?
        .stats;
        let (counters, unsettled) = after.context("the traffic did not run")???;
        let events = stats.events.values().sum();
        (counters, unsettled, events, stats.lost_total())
    } else {
        traffic()?;
        let (counters, unsettled) = settle(&netns)?;
        (counters, unsettled, 0, 0)
    };
    drop(scenario.held);
    let names = before.keys().chain(after.keys());
    let counters = names
        .map(|name| {
            let old = before.get(name).copied().unwrap_or(0) as i64;
            let new = after.get(name).copied().unwrap_or(0) as i64;
            (name.clone(), new - old)
        })
        .collect();
    Ok(Run {
        counters,
        unsettled,
        events,
        lost,
    })
}

/// Longer than TCP's longest delayed ACK (200 ms): a quiet half second means no packet is
/// still on its way and no acknowledgment still owed; what is left are retransmission timers,
/// which `unsettled` reports.
const QUIET: Duration = Duration::from_millis(500);

/// Waits until the counters stop changing for `QUIET` (at most 10 s), then returns them and
/// what could still change them: sockets that could still send, or counters never quiet.
fn settle(netns: &[String]) -> Result<(Counters, Vec<String>)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = snapshot(netns)?;
    loop {
        std::thread::sleep(QUIET);
        let now = snapshot(netns)?;
        if now == last {
            return Ok((now, unsettled(netns)?));
        }
        if Instant::now() > deadline {
            let mut unsettled = unsettled(netns)?;
            unsettled.push("the counters were still changing after 10 s".into());
            return Ok((now, unsettled));
        }
        last = now;
    }
}

/// TCP sockets of the namespaces with a retransmission, loss probe or zero-window timer.
fn unsettled(netns: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for ns in netns {
        let sockets = sh(&format!("ip netns exec {ns} ss -tanoH"))?;
        for line in sockets.lines() {
            if line.contains("timer:(on,") || line.contains("timer:(persist,") {
                let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
                out.push(format!("{}: {line}", short(ns)));
            }
        }
    }
    Ok(out)
}

fn short(ns: &str) -> &str {
    ns.strip_prefix(PREFIX).unwrap_or(ns)
}

/// Every counter of the lab's namespaces, each name prefixed by its namespace.
fn snapshot(netns: &[String]) -> Result<Counters> {
    let mut all = Counters::new();
    for ns in netns {
        let mut add = |name: String, value: u64| {
            all.insert(format!("{} {name}", short(ns)), value);
        };
        let kernel = in_netns(ns, counters::read)??;
        for (name, value) in kernel {
            add(name, value);
        }
        for (tool, family) in [
            ("iptables-save", "iptables"),
            ("ip6tables-save", "ip6tables"),
        ] {
            let saved = sh(&format!("ip netns exec {ns} {tool} -c"))?;
            for (name, value) in iptables_counters(&saved) {
                add(format!("{family} {name}"), value);
            }
        }
        let ruleset = sh(&format!("ip netns exec {ns} nft -j list ruleset"))?;
        for (name, value) in nft_counters(&ruleset)? {
            add(format!("nft {name}"), value);
        }
    }
    Ok(all)
}

/// The packet and byte counts of `iptables-save -c`: each chain's policy
/// (":INPUT ACCEPT [3:180]") and each rule ("[3:180] -A INPUT ... -j DROP"), keyed by table,
/// chain, position in the chain and the rule's text.
fn iptables_counters(saved: &str) -> Counters {
    let mut out = Counters::new();
    let mut table = "";
    let mut position: BTreeMap<String, usize> = BTreeMap::new();
    let mut add = |name: String, counts: &str| {
        let counts = counts.trim_start_matches('[').trim_end_matches(']');
        if let Some((packets, bytes)) = counts.split_once(':') {
            if let (Ok(packets), Ok(bytes)) = (packets.parse(), bytes.parse()) {
                out.insert(format!("{name} packets"), packets);
                out.insert(format!("{name} bytes"), bytes);
            }
        }
    };
    for line in saved.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name;
        } else if let Some(policy) = line.strip_prefix(':') {
            let words: Vec<&str> = policy.split_whitespace().collect();
            if let [chain, _, counts] = words[..] {
                add(format!("{table} {chain} policy"), counts);
            }
        } else if let Some((counts, rule)) = line.strip_prefix('[').and_then(|l| l.split_once(' '))
        {
            let chain = rule.split_whitespace().nth(1).unwrap_or_default();
            let n = position.entry(format!("{table} {chain}")).or_default();
            *n += 1;
            add(
                format!("{table} {chain} #{n} {rule}"),
                &format!("[{counts}"),
            );
        }
    }
    out
}

/// Tables iptables-nft keeps its rules in: their counters are iptables-save's already.
const IPTABLES_TABLES: &[&str] = &["filter", "nat", "mangle", "raw", "security"];

/// The packet and byte counts of every named counter and every rule's `counter` statement
/// in `nft -j list ruleset`, keyed by family, table, chain and position in the chain.
fn nft_counters(ruleset: &str) -> Result<Counters> {
    let mut out = Counters::new();
    let json: Value = serde_json::from_str(ruleset).context("nft -j list ruleset")?;
    let mut position: BTreeMap<String, usize> = BTreeMap::new();
    let objects = json["nftables"].as_array().cloned().unwrap_or_default();
    for object in &objects {
        let (kind, body) = match object.as_object().and_then(|o| o.iter().next()) {
            Some((kind, body)) => (kind.as_str(), body),
            None => continue,
        };
        let text = |field: &str| body[field].as_str().unwrap_or_default().to_string();
        let (family, table) = (text("family"), text("table"));
        if matches!(family.as_str(), "ip" | "ip6") && IPTABLES_TABLES.contains(&table.as_str()) {
            continue;
        }
        let mut add = |name: String, counter: &Value| {
            for field in ["packets", "bytes"] {
                if let Some(n) = counter[field].as_u64() {
                    out.insert(format!("{name} {field}"), n);
                }
            }
        };
        match kind {
            "counter" => add(format!("{family} {table} counter {}", text("name")), body),
            "rule" => {
                let chain = text("chain");
                let n = position
                    .entry(format!("{family} {table} {chain}"))
                    .or_default();
                *n += 1;
                let statements = body["expr"].as_array().cloned().unwrap_or_default();
                for (i, statement) in statements.iter().enumerate() {
                    if let Some(counter) = statement.get("counter") {
                        // A reference to a named counter is a string, counted above.
                        if counter.is_object() {
                            add(format!("{family} {table} {chain} #{n}.{i}"), counter);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn any_counter_that_differs_is_reported_and_only_the_unstable_ones_are_left_out() {
        let without = counters(&[
            ("server Tcp.OutSegs", 3),
            ("server dev.s0.rx_bytes", 264),
            ("server Tcp.RetransSegs", 0),
            ("client Tcp.OutRsts", 1),
        ]);
        let with = counters(&[
            ("server Tcp.OutSegs", 4),
            ("server dev.s0.rx_bytes", 208),
            ("server Tcp.RetransSegs", 1),
            ("client IpExt.InOctets", 60),
        ]);
        let (found, excluded) = differences("local-in-drop", &without, &with);
        let found: Vec<_> = found
            .iter()
            .map(|d| (d.counter.as_str(), d.without, d.with))
            .collect();
        assert_eq!(
            found,
            [
                ("client IpExt.InOctets", 0, 60),
                ("client Tcp.OutRsts", 1, 0),
                ("server Tcp.OutSegs", 3, 4),
                ("server Tcp.RetransSegs", 0, 1),
            ]
        );
        assert_eq!(excluded.len(), 1, "{excluded:?}");
        // Left out in the one lab where it cannot be stable, compared everywhere else.
        let (found, excluded) = differences("local-out-drop", &without, &with);
        assert!(found.iter().all(|d| d.counter != "server Tcp.RetransSegs"));
        assert_eq!(excluded.len(), 2, "{excluded:?}");
    }

    #[test]
    fn reads_iptables_save_counters() {
        let saved = "# Generated by iptables-save\n*filter\n:INPUT ACCEPT [7:420]\n\
            :OUTPUT ACCEPT [0:0]\n[3:180] -A INPUT -p tcp -m tcp --dport 8080 -j DROP\n\
            [0:0] -A INPUT -p udp -j DROP\nCOMMIT\n";
        let c = iptables_counters(saved);
        assert_eq!(c["filter INPUT policy packets"], 7);
        assert_eq!(c["filter INPUT policy bytes"], 420);
        assert_eq!(
            c["filter INPUT #1 -A INPUT -p tcp -m tcp --dport 8080 -j DROP packets"],
            3
        );
        assert_eq!(c["filter INPUT #2 -A INPUT -p udp -j DROP bytes"], 0);
        assert_eq!(c.len(), 8);
    }

    #[test]
    fn reads_nft_counters_and_skips_iptables_tables() {
        let ruleset = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "lab", "handle": 1}},
            {"rule": {"family": "inet", "table": "lab", "chain": "out", "handle": 3,
              "expr": [{"match": {}}, {"counter": {"packets": 4, "bytes": 4160}}, {"drop": null}]}},
            {"rule": {"family": "inet", "table": "lab", "chain": "out", "handle": 4,
              "expr": [{"counter": "named"}]}},
            {"counter": {"family": "inet", "table": "lab", "name": "named",
              "packets": 2, "bytes": 80}},
            {"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 2,
              "expr": [{"counter": {"packets": 9, "bytes": 9}}]}}]}"#;
        let c = nft_counters(ruleset).unwrap();
        assert_eq!(c["inet lab out #1.1 packets"], 4);
        assert_eq!(c["inet lab out #1.1 bytes"], 4160);
        assert_eq!(c["inet lab counter named packets"], 2);
        assert_eq!(c.len(), 4, "{c:?}");
    }
}
