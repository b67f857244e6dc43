//! Nothing is wrong, so nothing may be reported dropped: real servers (Debian's nginx,
//! dnsmasq, iperf3) in one namespace, real clients (curl, dig, iperf3) in another, IPv4 and
//! IPv6 over a veth, traced as a user would (`tracer trace -n A -n B`). A packet the tracer
//! calls dropped in this healthy exchange is a false alarm, and fails the test with its whole
//! record (path, reason, location, explanation).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{
    oracle::{agreement, Agreement},
    require_privileges,
    servers::{Server, IPERF3_CLIENT},
    veth, Netns, Report, Tcpdump, Tracer,
};

const A4: &str = "10.203.0.1";
const B4: &str = "10.203.0.2";
const A6: &str = "fd00:203::1";
const B6: &str = "fd00:203::2";
const A6_MORE: &str = "fd00:203::11";
const NAME: &str = "web.normal.test";

/// `a` (client) and `b` (servers) joined by a veth, each with an IPv4 and an IPv6 address.
/// No duplicate address detection (the addresses are usable at once), and MLD reports repeated
/// within a millisecond, not a second: the multicast chatter of setting up is mostly over
/// before the captures start. Chatter can still come later (a neighbour probe, a report): the
/// oracle compares only the time both captures ran (`oracle::agreement`), where the tracer
/// must have seen whatever tcpdump saw.
fn namespaces() -> (Netns, Netns) {
    let a = Netns::new("a");
    let b = Netns::new("b");
    for ns in [&a, &b] {
        for scope in ["all", "default"] {
            ns.sh(&format!(
                "sysctl -qw net.ipv6.conf.{scope}.disable_ipv6=0 \
                 net.ipv6.conf.{scope}.accept_dad=0 \
                 net.ipv6.conf.{scope}.mldv2_unsolicited_report_interval=1"
            ));
        }
    }
    veth(
        &a,
        ("va", &format!("{A4}/24")),
        &b,
        ("vb", &format!("{B4}/24")),
    );
    a.sh(&format!("ip addr add {A6}/64 dev va nodad"));
    b.sh(&format!("ip addr add {B6}/64 dev vb nodad"));
    // The link-local addresses, and the MLD reports of their groups, come when the kernel's
    // link watcher sees the carrier: at once on a quiet machine, up to a second later when it
    // ran in the last second (another test's veths going away). Captures start after them.
    for (ns, ifname) in [(&a, "va"), (&b, "vb")] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !ns
            .sh(&format!("ip -6 addr show dev {ifname} scope link"))
            .contains("inet6 fe80")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no link-local address on {ifname} after 5 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    // Their reports, 1 ms apart (mldv2_unsolicited_report_interval above).
    std::thread::sleep(std::time::Duration::from_millis(50));
    (a, b)
}

/// Runs `line` in `ns` and fails with its stderr unless it succeeded; returns stdout.
fn client(ns: &Netns, line: &str) -> String {
    let out = ns.run(line);
    assert!(
        out.status.success(),
        "`{line}` failed in {}: {}{}",
        ns.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn http(a: &Netns) {
    for url in [format!("http://{B4}"), format!("http://[{B6}]")] {
        for _ in 0..5 {
            let body = client(a, &format!("curl -sS --max-time 5 {url}/"));
            assert_eq!(body, "normal traffic\n", "nginx's answer from {url}");
        }
        let size = client(
            a,
            &format!("curl -sS --max-time 10 -o /dev/null -w %{{size_download}} {url}/big"),
        );
        assert_eq!(size, (1 << 20).to_string(), "bytes of {url}/big");
    }
}

fn dns(a: &Netns) {
    for (server, kind, want) in [
        (B4, "A", B4),
        (B6, "AAAA", B6),
        (B4, "AAAA", B6),
        (B6, "A", B4),
    ] {
        for transport in ["+notcp", "+tcp"] {
            let answer = client(
                a,
                &format!("dig @{server} {NAME} {kind} +short +tries=1 +time=3 {transport}"),
            );
            assert_eq!(answer.trim(), want, "dnsmasq's {kind} answer from {server}");
        }
    }
}

/// iperf3 for two seconds each, TCP and UDP, IPv4 and IPv6, at 20 Mbit/s: a few thousand
/// packets, well within what a trace keeps. Socket buffers of 2 MiB (`-w`, both ends): a
/// receiver starved of CPU for a moment on a busy machine must not overflow its socket
/// (SOCKET_RCVBUFF, a real drop the test would rightly report).
fn iperf(a: &Netns) {
    for server in [B4, B6] {
        for udp in ["", "-u"] {
            client(
                a,
                &format!(
                    "{IPERF3_CLIENT} -c {server} -p 5201 {udp} -b 20M -w 2M -t 2 \
                     --connect-timeout 3000"
                ),
            );
        }
    }
}

/// The kernel's own counts of losses in each namespace during the trace (errors, drops,
/// discards): whether a drop the tracer reports was counted by the kernel too.
fn kernel_losses(stats: &Value) -> Vec<String> {
    let namespaces = stats["counters"]
        .as_array()
        .expect("the stats record has the kernel's counters");
    let lossy = ["Err", "Drop", "Discard", "Prune", "Overflow", "Fail"];
    namespaces
        .iter()
        .flat_map(|ns| {
            let name = ns["netns_name"].as_str().unwrap_or("?").to_string();
            ns["delta"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| lossy.iter().any(|w| k.contains(w)))
                .map(move |(k, v)| format!("{name}: {k} +{v}"))
        })
        .collect()
}

/// "src:sport > dst:dport proto flags", the path point by point, the fate and the explanation.
/// "tcp/ipv6 port 80" and so on: what kind of traffic a packet belongs to.
fn kind(p: &Value) -> String {
    let family = if p["src"].as_str().unwrap_or("").contains(':') {
        "ipv6"
    } else {
        "ipv4"
    };
    let proto = p["proto"].as_str().unwrap_or("?");
    let service = [80, 53, 5201]
        .into_iter()
        .find(|port| p["sport"] == *port || p["dport"] == *port)
        .map(|port| format!(" port {port}"))
        .unwrap_or_default();
    format!("{proto}/{family}{service}")
}

#[test]
fn normal_traffic_shows_no_drop() {
    require_privileges();
    let started = Instant::now();
    let (a, b) = namespaces();
    let _nginx = Server::nginx(&b, &[B4, &format!("[{B6}]")]);
    let _dnsmasq = Server::dnsmasq(&b, NAME, B4, B6);
    let _iperf3 = Server::iperf3(&b);
    // Clients, checked before the trace so a missing one says so plainly.
    tests::servers::require_program("curl", "curl");
    tests::servers::require_program("dig", "bind9-dnsutils");

    // A user's tcpdump beside the tracer, on each end: the oracle for every tap verdict of
    // the IP packets (ARP frames carry none of what the oracle identifies packets by).
    let tcpdumps = [(&a, "va"), (&b, "vb")].map(|(ns, ifname)| {
        (
            ns.name.clone(),
            ifname,
            Tcpdump::start(ns, ifname, "ip or ip6"),
        )
    });
    // A ring of 16 MiB, not the default 4: this trace must lose nothing to prove anything,
    // and beside nginx, iperf3 at 20 Mbit/s and two tcpdumps on a shared 2-CPU machine its
    // reader was once starved long enough to fill 4 MiB (5 132 events lost, counted and
    // reported: the tracer did right, the test proved nothing). Losses under pressure are
    // overload.rs's subject.
    let tracer = Tracer::start(&["-n", &a.name, "-n", &b.name, "--ring-kib", "16384"]);
    http(&a);
    dns(&a);
    // A new address joins its solicited-node group: MLD reports to ff02::16, which b (no
    // multicast router) receives and ignores. Normal traffic of every IPv6 link.
    a.sh(&format!("ip addr add {A6_MORE}/64 dev va nodad"));
    iperf(&a);
    // Let the last segments and closes land before the trace stops.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let report = tracer.finish();
    // Packets while only tcpdump captures, as the kernel's own chatter can come (one CI run
    // had 4 ICMPv6 packets more in each tcpdump than the tracer saw): they are not compared.
    client(&a, &format!("ping -6 -c 1 -W 2 {B6}"));
    let stats = report.stats();
    let mut taps = Agreement::default();
    let ip_only = Report {
        records: report
            .records
            .iter()
            .filter(|r| r["src"].is_string())
            .cloned()
            .collect(),
        events: Vec::new(),
        stderr: String::new(),
        recording: String::new(),
        traced: report.traced,
    };
    for (ns, ifname, tcpdump) in tcpdumps {
        taps.add(agreement(&ip_only, &ns, ifname, &tcpdump.stop_capture()));
    }

    // A trace that lost or did not keep events could hide drops: it proves nothing.
    assert_eq!(
        stats["not_kept"], 0,
        "events were not kept (--max-events): the trace is incomplete; stats: {stats}"
    );
    assert_eq!(
        stats["lost_total"], 0,
        "events were lost (ring buffer full): the trace is incomplete; stats: {stats}"
    );
    assert_eq!(
        stats["missed_total"], 0,
        "the kernel skipped a program already running on its CPU (recursion misses): the \
         trace is incomplete; missed per hook: {}",
        stats["missed"]
    );

    let mut per_kind: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for p in report.packets() {
        let fate = p["fate"]["kind"].as_str().unwrap().to_string();
        *per_kind
            .entry(kind(p))
            .or_default()
            .entry(fate)
            .or_default() += 1;
    }
    let packets = report.packets().count();
    let table: Vec<String> = per_kind
        .iter()
        .map(|(k, f)| format!("  {k}: {f:?}"))
        .collect();
    let events: u64 = stats["events"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    eprintln!(
        "normal traffic: {packets} packets traced ({events} events, none lost or not kept), {}, \
         in {:.1} s\n{}",
        taps.figure(),
        started.elapsed().as_secs_f64(),
        table.join("\n")
    );

    // The traffic was seen: every service, both families (a trace that saw nothing would
    // also show no drop).
    for service in [
        "tcp/ipv4 port 80",
        "tcp/ipv6 port 80",
        "udp/ipv4 port 53",
        "udp/ipv6 port 53",
        "tcp/ipv4 port 53",
        "tcp/ipv6 port 53",
        "tcp/ipv4 port 5201",
        "tcp/ipv6 port 5201",
        "udp/ipv4 port 5201",
        "udp/ipv6 port 5201",
    ] {
        assert!(
            per_kind.contains_key(service),
            "no {service} packet traced:\n{}",
            table.join("\n")
        );
    }

    // How the packets that ended without a plain delivery ended: the normal ends the tracer
    // tells apart from drops (a queue purged at close, a multicast no one joined, ...).
    let mut ends: BTreeMap<String, u64> = BTreeMap::new();
    for p in report.packets() {
        if let Some(by) = p["fate"]["by"].as_str() {
            // "answered by TCP (packet 12), ..." counts as one kind whatever the packet.
            let kind = by.split(" (packet").next().unwrap_or(by).to_string();
            *ends.entry(kind).or_default() += 1;
        }
    }
    for (by, n) in &ends {
        eprintln!("  {n} delivered: {by}");
    }
    let moved: usize = stats["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ns| ns["delta"].as_object().map(|d| d.len()))
        .sum();
    eprintln!(
        "  kernel counters of losses during the trace (of {moved} counters that moved): {:?}",
        kernel_losses(stats)
    );
    // Not failures, but worth a look when something changes: packets whose end was not seen.
    for p in report.packets().filter(|p| p["fate"]["kind"] == "unknown") {
        eprintln!("fate unknown: {}", tests::oracle::describe(p));
    }
    // Computed before the first assertion: a failure of any of them then shows the drops too,
    // which are often its cause.
    let dropped: Vec<String> = report
        .packets()
        .filter(|p| p["fate"]["kind"] == "dropped")
        .map(tests::oracle::describe)
        .collect();
    for drop in &dropped {
        eprintln!("dropped: {drop}");
    }
    assert!(
        taps.outside >= 4,
        "the echo request and reply after the trace, on va and vb, are outside the comparison \
         ({})",
        taps.figure()
    );
    assert!(
        taps.mismatches.is_empty(),
        "tap verdicts disagree with tcpdump ({}):\n{}",
        taps.figure(),
        taps.mismatches.join("\n")
    );
    assert!(
        report.packets().any(|p| p["icmp_type"] == 143),
        "no MLD report traced (the new address's join of its group)"
    );
    // The first line of a failure is all the test command's table shows: each drop's kind,
    // place and reason fit there; the whole records follow.
    let gist: Vec<String> = report
        .packets()
        .filter(|p| p["fate"]["kind"] == "dropped")
        .map(|p| {
            format!(
                "{} {} at {} {}",
                kind(p),
                p["fate"]["reason"].as_str().unwrap_or("?"),
                p["fate"]["hook"].as_str().unwrap_or("?"),
                p["fate"]["location"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        dropped.is_empty(),
        "{} of {packets} packets of a healthy exchange reported dropped: {}\n{}\n\
         kernel counters of losses during the trace: {:?}\n\n{}",
        dropped.len(),
        gist.join("; "),
        table.join("\n"),
        kernel_losses(stats),
        dropped.join("\n\n")
    );
}

/// The drop [`IPERF3_CLIENT`] keeps out of the exchange above, made on purpose: a 10 Mbit/s
/// class on a's veth holds the datagrams of a 20 Mbit/s UDP test (not its control connection),
/// so a second or more of them is still queued when the test ends and iperf3's server
/// closes its port. They reach a closed port: the kernel drops each (NO_SOCKET) and counts it
/// (`Udp.NoPorts`), while iperf3 reports no loss. The tracer must report them dropped for that
/// reason, no more than the kernel counted, and nothing else dropped.
#[test]
fn datagrams_reaching_iperf3s_port_after_it_closed_are_dropped_and_counted() {
    require_privileges();
    let (a, b) = namespaces();
    let _iperf3 = Server::iperf3(&b);
    for tc in [
        "qdisc add dev va root handle 1: htb default 10",
        "class add dev va parent 1: classid 1:10 htb rate 10gbit",
        "class add dev va parent 1: classid 1:20 htb rate 10mbit burst 2k",
        "qdisc add dev va parent 1:20 handle 20: pfifo limit 10000",
        "filter add dev va parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff flowid 1:20",
    ] {
        a.sh(&format!("tc {tc}"));
    }
    let tracer = Tracer::start(&["-n", &a.name, "-n", &b.name, "udp port 5201"]);
    client(
        &a,
        &format!("{IPERF3_CLIENT} -c {B4} -p 5201 -u -b 20M -w 2M -t 1 --connect-timeout 3000"),
    );
    // The queue holds what the client's 2 MiB send buffer allows (its queued datagrams are
    // charged to it): about 1.7 s at 10 Mbit/s.
    std::thread::sleep(Duration::from_secs(3));
    let report = tracer.finish();
    let stats = report.stats();
    assert_eq!(stats["lost_total"], 0, "no event may be lost: {stats}");
    let counted = stats["counters"]
        .as_array()
        .expect("the stats record has the kernel's counters")
        .iter()
        .find(|ns| ns["netns_name"] == b.name.as_str())
        .and_then(|ns| ns["delta"]["Udp.NoPorts"].as_u64())
        .unwrap_or(0);
    assert!(
        counted > 0,
        "no datagram reached the closed port (Udp.NoPorts did not move in {}): the test made \
         no drop to judge the tracer by; counters: {}",
        b.name,
        stats["counters"]
    );
    let dropped: Vec<&Value> = report
        .packets()
        .filter(|p| p["fate"]["kind"] == "dropped")
        .collect();
    let no_socket = dropped
        .iter()
        .filter(|p| p["fate"]["reason"] == "NO_SOCKET" && p["proto"] == "udp" && p["dport"] == 5201)
        .count();
    eprintln!(
        "iperf3's late datagrams: the kernel counted {counted} to a closed port, the tracer \
         reported {no_socket} dropped NO_SOCKET, {} dropped in all",
        dropped.len()
    );
    // How every datagram to the port ended, for a failure to say where a drop went.
    let mut fates: BTreeMap<String, u64> = BTreeMap::new();
    for p in report
        .packets()
        .filter(|p| p["proto"] == "udp" && p["dport"] == 5201)
    {
        let fate = &p["fate"];
        let key = format!("{} {}", fate["kind"], fate["reason"]);
        *fates.entry(key).or_default() += 1;
    }
    // Every drop the tracer reports is one the kernel counted; not always every one: on this
    // project's 6.18 the kernel runs no tracing program on top of its init agent (README,
    // Requirements), and the queue here is emptied by a timer's softirq, on top of whatever
    // task runs (3 runs of 4 here reported one or two fewer of some 880 drops; the one run
    // checked had the test command's witness of hits the kernel ran no program for).
    assert!(
        no_socket > 0 && no_socket as u64 <= counted,
        "the tracer's {no_socket} NO_SOCKET drops of port 5201 against the kernel's {counted} \
         (Udp.NoPorts); how the datagrams to the port ended: {fates:?}; unknown ones: {}",
        report
            .packets()
            .filter(|p| p["dport"] == 5201 && p["fate"]["kind"] == "unknown")
            .map(tests::oracle::describe)
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    assert_eq!(
        dropped.len(),
        no_socket,
        "nothing else dropped: {}",
        dropped
            .iter()
            .map(|p| tests::oracle::describe(p))
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}
