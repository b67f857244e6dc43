//! The live view: while the trace runs, a line per packet as its journey ends. The drop a user
//! left the tracer running for is printed when it happens, also after millions of events of
//! other traffic and far past what the final report keeps (`--max-events`).

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpStream, UdpSocket},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use tests::{require_privileges, scratch, tracer_bin, Netns, Pair, ADDR_B};

/// Datagrams of other traffic before the drop: each is seen at 11 points or more on its way
/// from a to b (netfilter's LOCAL_IN, not the hooks where nothing is registered), in about 9
/// events (the last points of hooks where the tracer's programs are alone come with the first
/// ones' events), so this is over 2 million events.
const DATAGRAMS: usize = 240_000;

#[test]
fn a_drop_after_two_million_events_is_printed_live_within_two_seconds() {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    pair.b.sh("iptables -A INPUT -p tcp --dport 8080 -j DROP");
    let (mut tracer, lines, reader) = start_reading(&["--max-events", "100000"], &pair);

    let receiver = udp_receiver(&pair.b, 7060, Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(200));
    pair.a.enter(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for i in 0..DATAGRAMS {
            // A full socket buffer only slows the sender down; every datagram goes.
            while socket
                .send_to(&(i as u64).to_be_bytes(), format!("{ADDR_B}:7060"))
                .is_err()
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let received = receiver.join().expect("receiver");

    // The SYN the rule drops, once all of that is through the tracer's kernel programs.
    let sent = Instant::now();
    pair.a.enter(|| {
        let to: SocketAddr = format!("{ADDR_B}:8080").parse().unwrap();
        assert!(TcpStream::connect_timeout(&to, Duration::from_millis(500)).is_err());
    });
    let mut udp_lines = 0usize;
    let printed = loop {
        let left = (sent + Duration::from_secs(20)).saturating_duration_since(Instant::now());
        let Ok((at, line)) = lines.recv_timeout(left) else {
            panic!("no live line for the SYN within 20 s ({udp_lines} UDP lines read)");
        };
        if line.contains("TCP SYN") && line.contains(":8080") {
            break (at, line);
        }
        udp_lines += usize::from(line.contains("UDP"));
    };
    let (at, line) = printed;
    assert!(
        line.contains("DROPPED") && line.contains("NETFILTER_DROP"),
        "the SYN's line says where and why it died: {line}"
    );
    // The rules' counters, read after the drop while the trace goes on, name the rule.
    assert!(
        line.contains("by `-A INPUT -p tcp -m tcp --dport 8080 -j DROP` (iptables table ip filter, chain INPUT, rule 1)"),
        "the SYN's line names the rule that dropped it: {line}"
    );
    let after = at.saturating_duration_since(sent);
    assert!(
        after < Duration::from_secs(2),
        "the drop was printed {after:?} after the SYN was sent"
    );

    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.iter().map(|(_, l)| l).collect();
    let status = tracer.wait().expect("wait");
    reader.join().expect("reader");
    assert!(status.success(), "tracer failed: {status}");
    let summary = rest
        .iter()
        .rev()
        .find(|l| l.contains(" events in "))
        .expect("the final summary line");
    let kept = number_before(summary, " events in ");
    let not_kept = summary
        .split(", ")
        .find(|part| part.contains("more not kept"))
        .map_or(0, |part| number_before(part, " more not kept"));
    // Events the ring had no room for are counted and said; they were made all the same.
    let lost = number_before(summary, " lost");
    eprintln!(
        "{received} of {DATAGRAMS} datagrams received, {udp_lines} UDP lines read before the \
         SYN's; events: {kept} kept, {not_kept} not kept, {lost} lost; SYN printed {after:?} \
         after it was sent"
    );
    assert!(
        kept + not_kept + lost >= 2_000_000,
        "{kept} + {not_kept} + {lost} events: the drop came after 2 million"
    );
    assert!(
        udp_lines > 0 && received > 0,
        "the other traffic was shown live too"
    );
}

/// `tracer trace --live` with `args` on the pair's namespaces, once ready; its stdout read as
/// it comes, each line with the moment it was read.
fn start_reading(
    args: &[&str],
    pair: &Pair,
) -> (
    std::process::Child,
    mpsc::Receiver<(Instant, String)>,
    std::thread::JoinHandle<()>,
) {
    let ready = scratch("ready");
    let mut tracer = Command::new(tracer_bin())
        .args(["trace", "--live"])
        .args(args)
        .arg("--ready-file")
        .arg(&ready)
        .args(["-n", &pair.a.name, "-n", &pair.b.name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the tracer");
    let stdout = tracer.stdout.take().expect("stdout");
    let (line_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "tracer not ready after 60 s");
        assert!(tracer.try_wait().expect("wait").is_none(), "tracer exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    (tracer, lines, reader)
}

/// A server in `ns` counting the datagrams it reads on `port` until none came for `idle`.
fn udp_receiver(ns: &Netns, port: u16, idle: Duration) -> std::thread::JoinHandle<usize> {
    ns.spawn(move || {
        let socket = UdpSocket::bind(format!("{ADDR_B}:{port}")).expect("bind");
        socket.set_read_timeout(Some(idle)).expect("timeout");
        let mut buf = [0u8; 64];
        let mut received = 0;
        while socket.recv(&mut buf).is_ok() {
            received += 1;
        }
        received
    })
}

/// The number just before `marker` in `text`: `1234 events in` -> 1234.
fn number_before(text: &str, marker: &str) -> u64 {
    let head = &text[..text
        .rfind(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {text}"))];
    let digits = head
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or("");
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number before {marker:?} in {text}"))
}

/// What tells one packet from another in a trace's report and its recording explained.
fn identity(packet: &serde_json::Value) -> String {
    ["proto", "src", "dst", "sport", "dport", "ip_id", "tcp_seq"]
        .iter()
        .map(|k| packet[*k].to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A veth pair with static neighbours and no IPv6 (no neighbour discovery or multicast
/// reports: the traffic is the test's alone), where b's INPUT drops SYNs to port 8080.
fn quiet_pair_dropping_syns() -> Pair {
    let pair = Pair::create();
    pair.static_neighbours();
    for ns in [&pair.a, &pair.b] {
        ns.sh("sysctl -q -w net.ipv6.conf.all.disable_ipv6=1");
    }
    pair.b.sh("iptables -A INPUT -p tcp --dport 8080 -j DROP");
    pair
}

#[test]
fn with_problems_only_the_output_holds_exactly_the_faulty_packets_and_their_flows() {
    require_privileges();
    let pair = quiet_pair_dropping_syns();
    let problems = tests::Tracer::start(&["--problems", "-n", &pair.a.name, "-n", &pair.b.name]);

    // Normal traffic: pings answered, datagrams read by a server.
    pair.a.sh(&format!("ping -c 3 -i 0.2 {ADDR_B}"));
    let receiver = udp_receiver(&pair.b, 7061, Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(200));
    pair.a.enter(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for i in 0..20u8 {
            socket
                .send_to(&[i], format!("{ADDR_B}:7061"))
                .expect("send");
        }
    });
    assert_eq!(receiver.join().expect("receiver"), 20);
    // The fault: a SYN (and its retransmission) dropped at b's INPUT.
    pair.a.enter(|| {
        let to: SocketAddr = format!("{ADDR_B}:8080").parse().unwrap();
        assert!(TcpStream::connect_timeout(&to, Duration::from_millis(1500)).is_err());
    });
    // Nothing in flight when the traces stop.
    std::thread::sleep(Duration::from_millis(1500));
    let problems = problems.finish();
    // Everything the same events tell: the recording explained in full.
    let recording = scratch("recording.jsonl");
    std::fs::write(&recording, &problems.recording).expect("recording");
    let out = Command::new(tracer_bin())
        .args(["explain", "--format", "json"])
        .arg(&recording)
        .output()
        .expect("tracer explain");
    let _ = std::fs::remove_file(&recording);
    assert!(out.status.success(), "explain: {out:?}");
    let everything: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let packets = || {
        everything
            .iter()
            .filter(|r| r["type"] == "packet" && r["copy_of"].is_null())
    };

    let faulty: Vec<String> = packets()
        .filter(|p| matches!(p["fate"]["kind"].as_str(), Some("dropped" | "unknown")))
        .map(identity)
        .collect();
    let shown: Vec<String> = problems.journeys().map(identity).collect();
    assert_eq!(shown, faulty, "the packets shown are the faulty ones");
    assert!(
        !shown.is_empty() && problems.packets().all(|p| p["dport"] == 8080),
        "the faulty packets are the SYNs: {shown:?}"
    );
    let flows: Vec<String> = problems
        .flows()
        .map(|f| format!("{} {}", f["client"], f["server"]))
        .collect();
    let all_flows = everything.iter().filter(|r| r["type"] == "flow").count();
    assert_eq!(
        flows.len(),
        1,
        "one flow, the SYNs': {flows:?} (of {all_flows} flows)"
    );
    assert!(flows[0].contains(":8080"), "{flows:?}");
    assert!(
        packets().count() > shown.len() + 20,
        "the normal traffic was traced too"
    );
}

#[test]
fn a_recording_replayed_prints_what_the_live_run_printed() {
    replayed_as_live(&["-v"]);
}

#[test]
fn a_recording_replayed_streams_the_json_the_live_run_streamed() {
    replayed_as_live(&["--format", "json"]);
}

/// A live trace with `mode` (its options of output) recorded, and its recording replayed
/// with the same options: the two outputs are the same, byte for byte.
fn replayed_as_live(mode: &[&str]) {
    require_privileges();
    let pair = quiet_pair_dropping_syns();
    let ready = scratch("ready");
    let recording = scratch("recording.jsonl");
    let mut tracer = Command::new(tracer_bin())
        .args(["trace", "--live"])
        .args(mode)
        .arg("--ready-file")
        .arg(&ready)
        .arg("--record")
        .arg(&recording)
        .args(["-n", &pair.a.name, "-n", &pair.b.name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the tracer");
    // Read while it runs: with -v it writes more than a pipe holds.
    let mut stdout = tracer.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).expect("the tracer's stdout");
        text
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "tracer not ready after 60 s");
        assert!(tracer.try_wait().expect("wait").is_none(), "tracer exited");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Pings, datagrams read by a server read by a server, a TCP exchange, and a SYN dropped.
    pair.a.sh(&format!("ping -c 3 -i 0.2 {ADDR_B}"));
    let receiver = udp_receiver(&pair.b, 7062, Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(200));
    pair.a.enter(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for i in 0..500u16 {
            socket
                .send_to(&i.to_be_bytes(), format!("{ADDR_B}:7062"))
                .expect("send");
            // Paced: the receiver's socket buffer must not overflow (a real drop).
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    assert_eq!(receiver.join().expect("receiver"), 500);
    let server = pair.b.spawn(|| {
        let listener = std::net::TcpListener::bind(format!("{ADDR_B}:8081")).expect("listen");
        let (mut stream, _) = listener.accept().expect("accept");
        let mut request = [0u8; 5];
        std::io::Read::read_exact(&mut stream, &mut request).expect("read");
        std::io::Write::write_all(&mut stream, b"world").expect("write");
    });
    std::thread::sleep(Duration::from_millis(200));
    pair.a.enter(|| {
        let mut stream = TcpStream::connect(format!("{ADDR_B}:8081")).expect("connect");
        std::io::Write::write_all(&mut stream, b"hello").expect("write");
        let mut answer = [0u8; 5];
        std::io::Read::read_exact(&mut stream, &mut answer).expect("read");
        let to: SocketAddr = format!("{ADDR_B}:8080").parse().unwrap();
        assert!(TcpStream::connect_timeout(&to, Duration::from_millis(1500)).is_err());
    });
    server.join().expect("server");
    std::thread::sleep(Duration::from_millis(1500));
    let status = harness::process::interrupt(&mut tracer).expect("SIGINT");
    let live = reader.join().expect("the reader");
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut tracer.stderr.take().expect("stderr"), &mut stderr);
    assert!(status.success(), "tracer: {status}: {stderr}");

    let replay = Command::new(tracer_bin())
        .args(["explain", "--live"])
        .args(mode)
        .arg(&recording)
        .output()
        .expect("tracer explain");
    let _ = std::fs::remove_file(&recording);
    assert!(replay.status.success(), "explain: {replay:?}");
    let replay = String::from_utf8_lossy(&replay.stdout).into_owned();
    let lines = live
        .lines()
        .filter(|l| l.contains(" > ") || l.contains("\"type\":\"packet\""))
        .count();
    assert!(
        lines >= 500 && (live.contains("DROPPED") || live.contains("\"kind\":\"dropped\"")),
        "the live run printed the traffic and the drop ({lines} packet lines):\n{live}"
    );
    // Named from the rules read while tracing: the replay must name it from the same read.
    assert!(
        live.contains("-A INPUT -p tcp -m tcp --dport 8080 -j DROP"),
        "the live run named the rule that dropped the SYN:\n{live}"
    );
    if replay != live {
        let first = live
            .lines()
            .zip(replay.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(live.lines().count().min(replay.lines().count()));
        let around = |text: &str| {
            let lines: Vec<&str> = text.lines().collect();
            lines[first.saturating_sub(3)..(first + 4).min(lines.len())].join("\n")
        };
        panic!(
            "the replay differs from the live run at line {}:\nlive:\n{}\nreplay:\n{}",
            first + 1,
            around(&live),
            around(&replay)
        );
    }
}

#[test]
fn json_lines_stream_packets_as_they_close_and_flows_as_they_end() {
    require_privileges();
    let pair = quiet_pair_dropping_syns();
    let (mut tracer, lines, reader) = start_reading(&["--format", "json"], &pair);
    let mut records: Vec<serde_json::Value> = Vec::new();
    // Reads records until one satisfies `wanted`, for at most 2 s.
    let mut read_until = |what: &str, wanted: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((_, line)) = lines.recv_timeout(left) else {
                panic!("no {what} record within 2 s; records so far: {records:?}");
            };
            let record: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            records.push(record.clone());
            if wanted(&record) {
                return record;
            }
        }
    };

    // A TCP exchange that closes: its packets come while the trace runs.
    let server = pair.b.spawn(|| {
        let listener = std::net::TcpListener::bind(format!("{ADDR_B}:8081")).expect("listen");
        let (mut stream, _) = listener.accept().expect("accept");
        std::io::copy(&mut stream.try_clone().expect("clone"), &mut stream).expect("echo");
    });
    std::thread::sleep(Duration::from_millis(200));
    pair.a.enter(|| {
        let mut stream = TcpStream::connect(format!("{ADDR_B}:8081")).expect("connect");
        std::io::Write::write_all(&mut stream, b"hello").expect("write");
        let mut echo = [0u8; 5];
        std::io::Read::read_exact(&mut stream, &mut echo).expect("echo");
    });
    server.join().expect("server");
    let fin = read_until("FIN packet", &|r| {
        r["type"] == "packet"
            && r["tcp_flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "FIN"))
    });
    let tcp_flow = fin["flow_id"].clone();
    // A closed connection's flow ends 2 s after its last packet, in the events' clock: the
    // next packet (a ping, 2.5 s on) moves that clock and brings the flow's record.
    std::thread::sleep(Duration::from_millis(2500));
    pair.a.sh(&format!("ping -c 1 {ADDR_B}"));
    let flow = read_until("ended TCP flow", &|r| {
        r["type"] == "flow" && r["id"] == tcp_flow
    });
    assert!(
        flow["server"]
            .as_str()
            .is_some_and(|s| s.ends_with(":8081")),
        "{flow}"
    );
    assert_eq!(
        flow["fates"]["delivered"].as_u64(),
        flow["packets"].as_u64(),
        "{flow}"
    );

    // The dropped SYN: its packet record comes at once, with where and why.
    pair.a.enter(|| {
        let to: SocketAddr = format!("{ADDR_B}:8080").parse().unwrap();
        assert!(TcpStream::connect_timeout(&to, Duration::from_millis(300)).is_err());
    });
    let syn = read_until("dropped SYN", &|r| {
        r["type"] == "packet" && r["dport"] == 8080
    });
    assert_eq!(syn["fate"]["kind"], "dropped", "{syn}");
    assert_eq!(syn["fate"]["reason"], "NETFILTER_DROP", "{syn}");

    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    let status = tracer.wait().expect("wait");
    reader.join().expect("reader");
    assert!(status.success(), "tracer failed: {status}");
    records.extend(
        lines
            .iter()
            .map(|(_, l)| serde_json::from_str(&l).expect("a JSON line")),
    );
    // Every record checked against the schema, the stats record last.
    tests::schema::check_json(&records);
    assert_eq!(records.last().unwrap()["type"], "stats");
    let syn_flow = records
        .iter()
        .find(|r| r["type"] == "flow" && r["id"] == syn["flow_id"])
        .expect("the SYN's flow, at exit");
    assert!(syn_flow["diverge"]["kind"] == "dropped", "{syn_flow}");
}
