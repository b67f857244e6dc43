//! Docker as users run it (Debian's docker.io, a real daemon, containers on docker0): what the
//! tracer says must match the injected fault and the real tcpdumps on docker0 and on the
//! containers' veths, naming the containers as Docker does.

use std::time::Duration;

use serde_json::Value;
use tests::{
    docker::{Container, Docker, BIG_PAGE, OUTSIDE},
    oracle::{traced_beside_tcpdumps, Agreement},
    require_privileges,
};

/// Traces `web`, `cli` and Docker's host while `cli` asks `web` for its page over HTTP, with
/// tcpdump on docker0 and on both veths; returns the report, each capture's agreement and what
/// `cli` received.
fn http_between_containers(
    docker: &Docker,
    cli: &Container,
    web: &Container,
) -> (tests::Report, Agreement, String) {
    let host = &docker.host;
    let request = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} 80",
        web.ip
    );
    let mut received = String::new();
    let (report, agreement) = traced_beside_tcpdumps(
        &[
            (host, "docker0"),
            (host, &cli.host_veth),
            (host, &web.host_veth),
        ],
        &[&web.name, &cli.name, &host.name],
        "tcp port 80",
        || {
            let out = docker.exec(&cli.name, &["sh", "-c", &request]);
            received = String::from_utf8_lossy(&out.stdout).into_owned();
        },
    );
    (report, agreement, received)
}

fn syns(report: &tests::Report) -> Vec<&Value> {
    report
        .packets()
        .filter(|p| p["tcp_flags"] == serde_json::json!(["SYN"]))
        .collect()
}

#[test]
fn a_docker_user_rule_drops_at_forward_in_the_host_and_is_named_with_the_containers() {
    require_privileges();
    let mut docker = Docker::start();
    let web = docker.run("web", &["httpd", "-f", "-p", "80", "-h", "/www"]);
    let cli = docker.run("cli", &["sleep", "600"]);
    docker
        .host
        .sh("iptables -I DOCKER-USER -p tcp --dport 80 -j DROP");
    let (report, agreement, _) = http_between_containers(&docker, &cli, &web);
    eprintln!("DOCKER-USER: {}", agreement.figure());
    assert!(
        agreement.mismatches.is_empty() && agreement.checked > 0,
        "verdicts against tcpdump: {:#?}",
        agreement.mismatches
    );
    let syns = syns(&report);
    assert!(!syns.is_empty(), "the client's SYNs were followed");
    for syn in &syns {
        let fate = &syn["fate"];
        assert_eq!(fate["kind"], "dropped", "{syn:#}");
        assert_eq!(fate["hook"], "nf_forward", "{syn:#}");
        assert_eq!(fate["reason"], "NETFILTER_DROP", "{syn:#}");
        assert_eq!(fate["netns_name"], docker.host.name.as_str(), "{syn:#}");
        assert_eq!(syn["rules"][0]["chain"], "DOCKER-USER", "{syn:#}");
        assert_eq!(
            syn["rules"][0]["text"], "-A DOCKER-USER -p tcp -m tcp --dport 80 -j DROP",
            "{syn:#}"
        );
        assert_eq!(
            syn["path"][0]["netns_name"], "cli",
            "the container by its name: {syn:#}"
        );
        let on_docker0: Vec<&Value> = syn["capture"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ifname"] == "docker0")
            .collect();
        assert!(
            on_docker0.is_empty(),
            "a bridged frame never passes docker0's own taps: {syn:#}"
        );
        let said = syn["explanation"].to_string();
        let ports = format!(
            "from port {} (cli's eth0) towards {} (web's eth0)",
            cli.host_veth, web.host_veth
        );
        assert!(said.contains(&ports), "{ports} in {said}");
    }
    // tcpdump on docker0 made the bridge promiscuous: it passed a copy of each SYN up to
    // docker0, which tcpdump there saw and IP freed; a journey of its own, never the SYN's fate.
    let copies: Vec<&Value> = report
        .copies()
        .filter(|c| c["tcp_flags"] == serde_json::json!(["SYN"]))
        .collect();
    assert_eq!(copies.len(), syns.len(), "one copy per SYN");
    for copy in copies {
        assert!(
            copy["copy"]
                .as_str()
                .unwrap()
                .starts_with("that bridge docker0 passed up to itself"),
            "{copy:#}"
        );
        assert_eq!(copy["fate"]["reason"], "OTHERHOST", "{copy:#}");
        let seen: Vec<String> = copy["capture"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{} {} {}", c["ifname"], c["dir"], c["seen"]))
            .collect();
        assert_eq!(seen, [r#""docker0" "rx" true"#], "{copy:#}");
        assert!(
            syns.iter().any(|s| s["id"] == copy["copy_of"]),
            "its original is a SYN: {copy:#}"
        );
    }
    assert_veths_named_with_their_containers(&report, &docker, &[&cli, &web]);
}

/// Every point and tcpdump verdict on a container's host-side veth gives the container's
/// `eth0` beside it (`peer`), and no other interface has a peer but those veths.
fn assert_veths_named_with_their_containers(
    report: &tests::Report,
    docker: &Docker,
    containers: &[&Container],
) {
    let host = docker.host.name.as_str();
    let mut named = 0;
    for packet in report.packets() {
        let points = packet["path"].as_array().expect("path").iter();
        let verdicts = packet["capture"].as_array().expect("capture").iter();
        for entry in points.chain(verdicts) {
            let container = containers
                .iter()
                .find(|c| entry["netns_name"] == host && entry["ifname"] == c.host_veth.as_str());
            match container {
                Some(c) => {
                    let peer = serde_json::json!({"netns_name": c.name, "ifname": "eth0"});
                    assert_eq!(entry["peer"], peer, "{entry:#}");
                    named += 1;
                }
                // A container's own eth0 has the host's veth as its peer.
                None if entry["netns_name"] != host && entry["ifname"] == "eth0" => {
                    assert_eq!(entry["peer"]["netns_name"], host, "{entry:#}");
                }
                None => assert!(entry.get("peer").is_none(), "{entry:#}"),
            }
        }
    }
    assert!(named > 0, "no point on a container's host-side veth");
}

#[test]
fn without_a_fault_the_page_arrives_and_nothing_is_dropped() {
    require_privileges();
    let mut docker = Docker::start();
    let web = docker.run("web", &["httpd", "-f", "-p", "80", "-h", "/www"]);
    let cli = docker.run("cli", &["sleep", "600"]);
    let (report, agreement, _) = http_between_containers(&docker, &cli, &web);
    eprintln!("no fault: {}", agreement.figure());
    assert!(
        agreement.mismatches.is_empty() && agreement.checked > 0,
        "verdicts against tcpdump: {:#?}",
        agreement.mismatches
    );
    let dropped: Vec<&Value> = report
        .packets()
        .filter(|p| p["fate"]["kind"] == "dropped")
        .collect();
    assert!(
        dropped.is_empty(),
        "a healthy exchange shows drops: {dropped:#?}"
    );
    let delivered_to_web = report
        .packets()
        .any(|p| p["fate"]["kind"] == "delivered" && p["fate"]["netns_name"] == "web");
    assert!(delivered_to_web, "the request reached the container web");
    assert_veths_named_with_their_containers(&report, &docker, &[&cli, &web]);
}

#[test]
fn with_br_netfilter_off_bridged_frames_pass_by_iptables_and_a_docker_user_rule_drops_nothing() {
    require_privileges();
    let mut docker = Docker::start();
    let web = docker.run("web", &["httpd", "-f", "-p", "80", "-h", "/www"]);
    let cli = docker.run("cli", &["sleep", "600"]);
    // Per namespace on this kernel: only Docker's host stops handing bridged frames to
    // iptables. Set after the containers started, as Docker sets it on when it needs it.
    docker.host.sh(
        "sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0",
    );
    docker
        .host
        .sh("iptables -I DOCKER-USER -p tcp --dport 80 -j DROP");
    let (report, agreement, received) = http_between_containers(&docker, &cli, &web);
    let setting = docker
        .host
        .sh("cat /proc/sys/net/bridge/bridge-nf-call-iptables");
    assert_eq!(setting.trim(), "0", "still off after the exchange");
    assert!(
        received.contains("hello from web"),
        "the rule is not met, the page arrives: {received:?}"
    );
    assert_agrees("br_netfilter off", &agreement);
    assert!(dropped(&report).is_empty(), "{:#?}", dropped(&report));
    let host = docker.host.name.as_str();
    let syns = syns(&report);
    assert!(!syns.is_empty(), "the client's SYNs were followed");
    for syn in syns {
        assert_eq!(syn["fate"]["kind"], "delivered", "{syn:#}");
        assert_eq!(syn["fate"]["netns_name"], "web", "{syn:#}");
        let rules = syn["rules"].as_array().map_or(0, Vec::len);
        assert_eq!(rules, 0, "no rule dropped it: {syn:#}");
        let path = syn["path"].as_array().expect("a path");
        let in_host = |p: &&Value| p["netns_name"] == host;
        assert!(
            !path
                .iter()
                .filter(in_host)
                .any(|p| p["hook"] == "nf_forward"),
            "bridged without iptables, not forwarded: {syn:#}"
        );
        for port in [&cli.host_veth, &web.host_veth] {
            assert!(
                path.iter()
                    .filter(in_host)
                    .any(|p| p["ifname"] == port.as_str()),
                "the path crosses docker0's port {port}: {syn:#}"
            );
        }
        let said = syn["explanation"].to_string();
        assert!(!said.contains("DOCKER-USER"), "{said}");
    }
}

#[test]
fn tracing_only_dockers_host_still_names_the_containers_at_the_other_end_of_their_veths() {
    require_privileges();
    let mut docker = Docker::start();
    let web = docker.run("web", &["httpd", "-f", "-p", "80", "-h", "/www"]);
    let cli = docker.run("cli", &["sleep", "600"]);
    let host = &docker.host;
    let request = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} 80",
        web.ip
    );
    // The containers' namespaces are not traced: their names come from Docker's state.
    let (report, agreement) = traced_beside_tcpdumps(
        &[(host, &cli.host_veth), (host, &web.host_veth)],
        &[&host.name],
        "tcp port 80",
        || {
            docker.exec(&cli.name, &["sh", "-c", &request]);
        },
    );
    assert_agrees("host only", &agreement);
    assert_veths_named_with_their_containers(&report, &docker, &[&cli, &web]);
}

/// A TCP server on the outside host: reads what comes until the peer closes, answers "ok".
fn outside_server(docker: &Docker, port: u16) -> std::thread::JoinHandle<usize> {
    let listener = docker
        .outside
        .enter(move || std::net::TcpListener::bind(("0.0.0.0", port)).expect("bind outside"));
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn, &mut got);
        let _ = std::io::Write::write_all(&mut conn, b"ok\n");
        got.len()
    })
}

fn assert_agrees(what: &str, agreement: &Agreement) {
    eprintln!("{what}: {}", agreement.figure());
    assert!(
        agreement.mismatches.is_empty() && agreement.checked > 0,
        "{what}: verdicts against tcpdump: {:#?}",
        agreement.mismatches
    );
}

fn dropped(report: &tests::Report) -> Vec<&Value> {
    report
        .packets()
        .filter(|p| p["fate"]["kind"] == "dropped")
        .collect()
}

#[test]
fn a_container_reaching_out_is_masqueraded_and_its_journey_crosses_the_nat() {
    require_privileges();
    let mut docker = Docker::start();
    let cli = docker.run("cli", &["sleep", "600"]);
    let server = outside_server(&docker, 8080);
    let send = format!("printf hello | nc -w 2 {OUTSIDE} 8080");
    let (report, agreement) = traced_beside_tcpdumps(
        &[
            (&docker.host, "docker0"),
            (&docker.host, &cli.host_veth),
            (&docker.host, "up0"),
            (&docker.outside, "out0"),
        ],
        &["cli", &docker.host.name, &docker.outside.name],
        "tcp port 8080",
        || {
            docker.exec("cli", &["sh", "-c", &send]);
        },
    );
    assert_eq!(server.join().unwrap(), 5, "the outside host got the data");
    assert_agrees("MASQUERADE", &agreement);
    assert!(dropped(&report).is_empty(), "{:#?}", dropped(&report));
    let syn = report
        .packets()
        .find(|p| p["tcp_flags"] == serde_json::json!(["SYN"]))
        .expect("the SYN");
    assert_eq!(syn["src"], cli.ip.as_str(), "{syn:#}");
    assert_eq!(syn["path"][0]["netns_name"], "cli", "{syn:#}");
    assert_eq!(syn["fate"]["kind"], "delivered", "{syn:#}");
    assert_eq!(
        syn["fate"]["netns_name"],
        docker.outside.name.as_str(),
        "one journey through the NAT: {syn:#}"
    );
    let flow = report.flows().next().expect("a flow");
    assert!(
        flow["nat"].is_array() || flow["nat"].is_object(),
        "the rewrite is said: {flow:#}"
    );
}

#[test]
fn a_published_port_is_reached_from_another_host_through_dnat() {
    require_privileges();
    let mut docker = Docker::start();
    let web = docker.run_with(
        "web",
        &["-p", "8080:80"],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let outside = docker.outside.name.clone();
    let (report, agreement) = traced_beside_tcpdumps(
        &[
            (&docker.host, "up0"),
            (&docker.host, "docker0"),
            (&docker.host, &web.host_veth),
        ],
        &[&outside, &docker.host.name, "web"],
        "tcp port 8080 or tcp port 80",
        || {
            let out = docker.outside.run(&format!(
                "curl -s -m 3 http://{}:8080/",
                tests::docker::UPLINK
            ));
            assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from web\n");
        },
    );
    assert_agrees("published port", &agreement);
    assert!(dropped(&report).is_empty(), "{:#?}", dropped(&report));
    let syn = report
        .packets()
        .find(|p| p["tcp_flags"] == serde_json::json!(["SYN"]))
        .expect("the SYN");
    assert_eq!(syn["dport"], 8080, "{syn:#}");
    assert_eq!(syn["fate"]["kind"], "delivered", "{syn:#}");
    assert_eq!(
        syn["fate"]["netns_name"], "web",
        "DNAT took it to the container: {syn:#}"
    );
}

#[test]
fn a_smaller_mtu_on_the_uplink_drops_full_size_segments_and_says_why() {
    require_privileges();
    let mut docker = Docker::start();
    // The seed case: docker0 and the containers at 1500, the host's uplink at 1450. The web
    // container's reply to another host fills 1500-byte segments.
    docker.host.sh("ip link set up0 mtu 1450");
    let web = docker.run_with(
        "web",
        &["-p", "8080:80"],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let outside = docker.outside.name.clone();
    let (report, agreement) = traced_beside_tcpdumps(
        &[(&docker.host, &web.host_veth), (&docker.host, "up0")],
        &["web", &docker.host.name, &outside],
        "tcp port 8080 or tcp port 80 or icmp",
        || {
            let out = docker.outside.run(&format!(
                "curl -s -m 5 -o /dev/null -w %{{size_download}} http://{}:8080/big",
                tests::docker::UPLINK
            ));
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                BIG_PAGE.to_string(),
                "path MTU discovery got the page through"
            );
        },
    );
    assert_agrees("MTU", &agreement);
    let fates: Vec<String> = report
        .packets()
        .map(|p| {
            format!(
                "{} {} len {}: {}",
                p["src"], p["tcp_flags"], p["len"], p["fate"]
            )
        })
        .collect();
    let too_big: Vec<&Value> = dropped(&report)
        .into_iter()
        .filter(|p| p["fate"]["reason"] == "PKT_TOO_BIG")
        .collect();
    assert!(
        !too_big.is_empty(),
        "full-size segments dropped for their size: {fates:#?}"
    );
    for p in &too_big {
        assert_eq!(p["src"], web.ip.as_str(), "{p:#}");
        assert_eq!(p["fate"]["netns_name"], docker.host.name.as_str(), "{p:#}");
        let said = p["explanation"].to_string();
        assert!(
            said.contains("larger than the MTU of the next hop"),
            "{said}"
        );
    }
    let icmp = report
        .packets()
        .find(|p| p["icmp_type"] == 3 && p["icmp_code"] == 4)
        .unwrap_or_else(|| panic!("the host's ICMP fragmentation-needed: {fates:#?}"));
    assert_eq!(icmp["fate"]["kind"], "delivered", "{icmp:#}");
    assert_eq!(icmp["fate"]["netns_name"], "web", "{icmp:#}");
}
