//! The three outputs of one real trace: JSON lines validated field by field against the
//! contract (README), the pcapng file read back by tshark (interfaces per
//! observation point, comments, verdicts, headers only unless `--snaplen`, and the packets at
//! the tap the same as a real tcpdump's), and the text output (capture point, explanations).
//!
//! Traffic from `a` to `b`: 2 pings, a TCP exchange on 7001, and a UDP datagram of 150 bytes to
//! 7009 that an iptables INPUT rule in `b` drops.

use std::{
    net::{SocketAddr, UdpSocket},
    os::unix::fs::PermissionsExt,
    process::Command,
    time::Duration,
};

use tests::{
    oracle::pcap_identities,
    require_privileges,
    schema::check_json,
    scratch, tracer_bin,
    tshark::{frames, select, Frame},
    Pair, Tcpdump, Tracer, ADDR_A, ADDR_B,
};

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

fn traffic(pair: &Pair) {
    pair.ping_and_exchange(7001, || {
        let sender = UdpSocket::bind(addr(ADDR_A, 0)).unwrap();
        sender.send_to(&[b'u'; 150], addr(ADDR_B, 7009)).unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
}

fn setup() -> Pair {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    pair.b.sh("iptables -A INPUT -p udp --dport 7009 -j DROP");
    pair
}

#[test]
fn json_pcapng_and_text_describe_the_same_trace() {
    the_outputs_describe_the_same_trace(&[]);
}

/// The same through the streaming engine: JSON records and pcapng packets written as each
/// journey closes.
#[test]
fn streamed_json_and_pcapng_describe_the_same_trace() {
    the_outputs_describe_the_same_trace(&["--live"]);
}

fn the_outputs_describe_the_same_trace(mode: &[&str]) {
    let pair = setup();
    let pcap = scratch("trace.pcapng");
    let mut args = mode.to_vec();
    args.extend([
        "--xdp",
        "-n",
        &pair.a.name,
        "-n",
        &pair.b.name,
        "-w",
        pcap.to_str().unwrap(),
        "host",
        ADDR_A,
    ]);
    let tracer = Tracer::start(&args);
    let tcpdump = Tcpdump::start(&pair.b, "vb", &format!("host {ADDR_A}"));
    traffic(&pair);
    let captured = tcpdump.stop_identities();
    let report = tracer.finish();

    // JSON lines, field by field, and the facts of this traffic.
    let packets = check_json(&report.records);
    let udp = packets
        .iter()
        .find(|p| p["proto"] == "udp" && p["dport"] == 7009)
        .expect("the UDP datagram");
    assert_eq!(udp["fate"]["kind"], "dropped", "{udp:#}");
    assert_eq!(udp["fate"]["hook"], "nf_local_in");
    assert_eq!(udp["fate"]["reason"], "NETFILTER_DROP");
    assert!(packets
        .iter()
        .any(|p| p["proto"] == "icmp" && p["fate"]["kind"] == "delivered"));

    // pcapng: private, readable by tshark, one interface block per point and interface.
    let mode = std::fs::metadata(&pcap).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the packet file must be private");
    assert!(
        report.stderr.contains("packets written to"),
        "{}",
        report.stderr
    );
    let frames = frames(&pcap);
    let b = &pair.b.name;
    let at = |point: &str| -> Vec<&Frame> {
        let name = format!("{b}/vb:{point}");
        frames.iter().filter(|f| f.interface == name).collect()
    };
    for f in &frames {
        assert!(f.interface.contains(':'), "interface {}", f.interface);
        assert!(
            f.comments.len() >= 2 && f.comments[0].starts_with("tracer: packet "),
            "comments of a frame: {:?}",
            f.comments
        );
        assert!(f.cap_len <= f.len);
    }
    // XDP and tc see the Ethernet frame, netfilter the IP packet.
    assert!(at("xdp")
        .iter()
        .all(|f| f.ethertype.is_some() && f.xdp_verdict == Some(2)));
    assert!(at("tc_ingress(first)")
        .iter()
        .all(|f| f.tc_verdict == Some(0)));
    assert!(at("nf_local_in(first)")
        .iter()
        .all(|f| f.ethertype.is_none()));
    // Headers only: the UDP datagram of 150 bytes keeps Ethernet, IP and UDP headers.
    let udp_at_xdp: Vec<_> = at("xdp")
        .into_iter()
        .filter(|f| f.udp_dport == Some(7009))
        .collect();
    assert_eq!(udp_at_xdp.len(), 1);
    assert_eq!((udp_at_xdp[0].cap_len, udp_at_xdp[0].len), (42, 192));
    // The drop, with its reason, and the fate in the comments of every sighting of it.
    let drop = frames
        .iter()
        .find(|f| f.interface.ends_with(":kfree_skb") && f.udp_dport == Some(7009))
        .expect("the drop of the UDP datagram in the file");
    assert!(drop.comments[0].contains("dropped here, reason NETFILTER_DROP"));
    assert!(udp_at_xdp[0].comments.iter().any(|c| c.contains("dropped")));
    assert!(udp_at_xdp[0].comments.iter().any(|c| c.contains("sees it")));

    // At the tap of vb the file holds exactly what the real tcpdump captured there.
    let tap = select(
        &pcap,
        &[
            format!("{b}/vb:netif_receive"),
            format!("{b}/vb:dev_xmit(first)"),
        ],
    );
    let mut in_file = pcap_identities(&tap);
    let mut in_tcpdump = captured.clone();
    in_file.sort();
    in_tcpdump.sort();
    assert_eq!(in_file, in_tcpdump, "the file at the tap vs tcpdump on vb");
    eprintln!(
        "pcapng: {} frames on {} interface blocks; {} at the tap of vb, as tcpdump captured",
        frames.len(),
        {
            let mut names: Vec<_> = frames.iter().map(|f| &f.interface).collect();
            names.sort();
            names.dedup();
            names.len()
        },
        in_tcpdump.len()
    );

    // Text, from the same events replayed: the capture point drawn, fates and explanations.
    let replay = scratch("replay.jsonl");
    std::fs::write(&replay, &report.recording).unwrap();
    let text = Command::new(tracer_bin())
        .args(["explain", "--format", "text"])
        .arg(&replay)
        .output()
        .expect("tracer explain");
    let _ = std::fs::remove_file(&replay);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(!text.contains('\x1b'), "colours in a pipe: {text}");
    assert!(
        !report.stderr.contains("events ("),
        "a status line in a pipe"
    );
    assert!(text.contains(&format!("tcpdump on {b}/vb")), "{text}");
    assert!(text.contains("fate: dropped after nf_local_in (first), reason NETFILTER_DROP"));
    assert!(text.contains("  why:"), "{text}");
    assert!(text.contains(&format!(
        "was delivered to the local stack in namespace {b}"
    )));
}

#[test]
fn snaplen_keeps_payload_bytes() {
    let pair = setup();
    let pcap = scratch("full.pcapng");
    let tracer = Tracer::start(&[
        "--xdp",
        "-n",
        &pair.b.name,
        "-w",
        pcap.to_str().unwrap(),
        "--snaplen",
        "100",
        "udp",
    ]);
    traffic(&pair);
    tracer.finish();
    let frames = frames(&pcap);
    let xdp = format!("{}/vb:xdp", pair.b.name);
    let local_in = format!("{}/vb:nf_local_in(first)", pair.b.name);
    let len_at = |name: &str| {
        frames
            .iter()
            .find(|f| f.interface == name && f.udp_dport == Some(7009))
            .map(|f| (f.cap_len, f.len))
    };
    assert_eq!(len_at(&xdp), Some((100, 192)), "frame cut at --snaplen");
    assert_eq!(
        len_at(&local_in),
        Some((100, 178)),
        "IP packet cut at --snaplen"
    );
}

#[test]
fn on_a_terminal_a_status_line_live_lines_and_colours() {
    let pair = setup();
    let ready = scratch("ready");
    let command = format!(
        "{} trace -n {} -n {} --duration 4 --ready-file {} icmp",
        tracer_bin().display(),
        pair.a.name,
        pair.b.name,
        ready.display()
    );
    // `script` runs the tracer on a pseudo-terminal, as a person would.
    let terminal = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(std::time::Instant::now() < deadline, "tracer not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    pair.a.sh(&format!("ping -c 3 -i 0.3 -W 1 {ADDR_B}"));
    let out = terminal.wait_with_output().expect("script output");
    let _ = std::fs::remove_file(&ready);
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains("/s), 1 flows open, 0 lost"),
        "no status line: {screen}"
    );
    // On a terminal the live view is on: a line per packet as it goes, its outcome coloured,
    // then the flows.
    assert!(
        screen.contains("ICMP echo request") && screen.contains("\x1b[32mdelivered to"),
        "no live lines in colour: {screen}"
    );
    assert!(
        screen.contains("\x1b[1mflows (each packet was shown above as it went):"),
        "no flow summary: {screen}"
    );
    assert!(screen.contains("\nflow 1: icmp"), "{screen}");
}
