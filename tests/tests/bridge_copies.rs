//! Copies the kernel makes are journeys of their own, linked to their original, and never its
//! fate: a real bridge floods a datagram it has no FDB entry for to every port, and passes it
//! up to itself too while tcpdump holds it promiscuous; tc's mirred action mirrors a datagram
//! to another device. Real tcpdumps where the packets and the copies go are the oracle.

use std::{net::UdpSocket, time::Duration};

use serde_json::Value;
use tests::{
    oracle::traced_beside_tcpdumps, require_privileges, veth, Netns, Pair, ADDR_A, ADDR_B,
};

const DATAGRAMS: usize = 3;

#[test]
fn a_flooded_datagram_is_delivered_once_and_its_copies_end_on_their_own() {
    require_privileges();
    let host = Netns::new("brh");
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let c3 = Netns::new("c3");
    host.sh("ip link add br0 type bridge");
    host.sh("ip link set br0 up");
    for (i, c) in [&c1, &c2, &c3].into_iter().enumerate() {
        let n = i + 1;
        veth(
            &host,
            (&format!("p{n}"), &format!("10.207.9.{n}/32")),
            c,
            ("eth0", &format!("10.207.0.{n}/24")),
        );
        host.sh(&format!("ip addr flush dev p{n}"));
        host.sh(&format!("ip link set p{n} master br0"));
    }
    // The bridge never learns where c2 is, so it floods every frame for c2 to p2 and p3 (what
    // it learned from c2's first IPv6 frames while the link came up is forgotten).
    host.sh("bridge link set dev p2 learning off");
    host.sh("bridge fdb flush dev br0 brport p2 dynamic");
    let mac =
        |ns: &Netns| -> String { ns.sh("cat /sys/class/net/eth0/address").trim().to_string() };
    c1.sh(&format!(
        "ip neigh replace 10.207.0.2 lladdr {} dev eth0 nud permanent",
        mac(&c2)
    ));
    let receiver = bound_in(&c2, "10.207.0.2:7070");
    let mut read = 0;
    let (report, agreement) = traced_beside_tcpdumps(
        &[
            (&host, "p1"),
            (&host, "p2"),
            (&host, "p3"),
            (&host, "br0"),
            (&c3, "eth0"),
        ],
        &[&c1.name, &c2.name, &c3.name, &host.name],
        "udp port 7070",
        || {
            c1.enter(|| {
                let socket = UdpSocket::bind("10.207.0.1:7071").unwrap();
                for i in 0..DATAGRAMS {
                    socket.send_to(&[i as u8; 8], "10.207.0.2:7070").unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            read = read_all(&receiver);
        },
    );
    let summary = summary(&report);
    assert_eq!(read, DATAGRAMS, "c2 read every datagram: {summary:#?}");
    eprintln!("flood: {}", agreement.figure());
    assert!(
        agreement.mismatches.is_empty() && agreement.checked > 0,
        "verdicts against tcpdump: {:#?}",
        agreement.mismatches
    );

    let datagrams: Vec<&Value> = report.packets().collect();
    assert_eq!(
        datagrams.len(),
        DATAGRAMS,
        "one journey per datagram: {summary:#?}"
    );
    for datagram in &datagrams {
        assert_eq!(datagram["fate"]["kind"], "delivered", "{datagram:#}");
        assert_eq!(
            datagram["fate"]["netns_name"],
            c2.name.as_str(),
            "{datagram:#}"
        );
    }
    let copies: Vec<&Value> = report.copies().collect();
    let of = |words: &str| -> Vec<&&Value> {
        copies
            .iter()
            .filter(|c| c["copy"].as_str().unwrap().contains(words))
            .collect()
    };
    let flooded = of("sent out of its port p3");
    let passed_up = of("passed up to itself");
    assert_eq!(
        (flooded.len(), passed_up.len(), copies.len()),
        (DATAGRAMS, DATAGRAMS, 2 * DATAGRAMS),
        "a copy flooded to p3 and one passed up to br0 per datagram: {copies:#?}"
    );
    for copy in flooded {
        assert_eq!(copy["fate"]["reason"], "OTHERHOST", "{copy:#}");
        assert_eq!(copy["fate"]["netns_name"], c3.name.as_str(), "{copy:#}");
    }
    for copy in copies {
        assert!(
            datagrams.iter().any(|d| d["id"] == copy["copy_of"]),
            "{copy:#}"
        );
    }
    let flow = report.flows().next().expect("the flow");
    assert_eq!(
        flow["packets"], DATAGRAMS,
        "copies are not the flow's packets"
    );
    assert_eq!(flow["fates"]["delivered"], DATAGRAMS, "{flow:#}");
}

#[test]
fn a_datagram_tc_mirrors_to_another_device_is_delivered_and_its_copy_ends_on_its_own() {
    require_privileges();
    let pair = Pair::create();
    pair.static_neighbours();
    let mirror = Netns::new("mir");
    veth(
        &pair.a,
        ("vm0", "10.208.0.1/24"),
        &mirror,
        ("vm1", "10.208.0.2/24"),
    );
    pair.a.sh("tc qdisc add dev va clsact");
    pair.a
        .sh("tc filter add dev va egress u32 match u32 0 0 action mirred egress mirror dev vm0");
    let receiver = bound_in(&pair.b, &format!("{ADDR_B}:7060"));
    let mut read = 0;
    let (report, agreement) = traced_beside_tcpdumps(
        &[
            (&pair.a, "va"),
            (&pair.b, "vb"),
            (&pair.a, "vm0"),
            (&mirror, "vm1"),
        ],
        &[&pair.a.name, &pair.b.name, &mirror.name],
        "udp port 7060",
        || {
            pair.a.enter(|| {
                let socket = UdpSocket::bind(format!("{ADDR_A}:7061")).unwrap();
                for i in 0..DATAGRAMS {
                    socket
                        .send_to(&[i as u8; 8], format!("{ADDR_B}:7060"))
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            read = read_all(&receiver);
        },
    );
    assert_eq!(
        read,
        DATAGRAMS,
        "b read every datagram: {:#?}",
        summary(&report)
    );
    eprintln!("mirred: {}", agreement.figure());
    assert!(
        agreement.mismatches.is_empty() && agreement.checked > 0,
        "verdicts against tcpdump: {:#?}",
        agreement.mismatches
    );
    let datagrams: Vec<&Value> = report.packets().collect();
    let copies: Vec<&Value> = report.copies().collect();
    let summary = summary(&report);
    assert_eq!(
        (datagrams.len(), copies.len()),
        (DATAGRAMS, DATAGRAMS),
        "a packet and its mirrored copy per datagram: {summary:#?}"
    );
    for datagram in &datagrams {
        assert_eq!(datagram["fate"]["kind"], "delivered", "{datagram:#}");
        assert_eq!(
            datagram["fate"]["netns_name"],
            pair.b.name.as_str(),
            "{datagram:#}"
        );
    }
    for copy in &copies {
        assert!(
            copy["copy"].as_str().unwrap().contains("mirrored to vm0"),
            "{copy:#}"
        );
        assert_eq!(copy["fate"]["netns_name"], mirror.name.as_str(), "{copy:#}");
        assert!(
            datagrams.iter().any(|d| d["id"] == copy["copy_of"]),
            "{copy:#}"
        );
    }
}

/// Each journey in a line (id, original, path, fate), for a failure's message.
fn summary(report: &tests::Report) -> Vec<String> {
    report
        .journeys()
        .map(|j| {
            format!(
                "{} copy_of {} {:?} {} {}",
                j["id"],
                j["copy_of"],
                tests::path(j),
                j["fate"]["kind"],
                j["fate"]["reason"]
            )
        })
        .collect()
}

/// A UDP socket bound at `address` in `ns` before the trace starts, so that no datagram finds
/// its port closed. It is read only once the datagrams are sent (`read_all`): a receiver that
/// waited from before the trace would spend its read timeout on the tracer's start, which
/// takes most of a minute on a loaded machine (that cost a run one datagram).
fn bound_in(ns: &Netns, address: &str) -> UdpSocket {
    let address = address.to_string();
    ns.enter(move || UdpSocket::bind(address).expect("bind the receiver"))
}

/// The datagrams waiting on `socket`, up to `DATAGRAMS`.
fn read_all(socket: &UdpSocket) -> usize {
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    let mut buf = [0u8; 64];
    (0..DATAGRAMS)
        .filter(|_| socket.recv(&mut buf).is_ok())
        .count()
}
