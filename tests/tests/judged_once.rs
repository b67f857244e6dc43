//! A packet the filter rejects is judged once for the points that see it back to back on one
//! CPU (`tracer-ebpf/src/judged.rs`): the later point takes the earlier one's rejection only
//! for the same skb, device and length. These tests change a packet between two such points
//! and check the later one judges it again.

use std::{net::UdpSocket, time::Duration};

use serde_json::Value;
use tests::{path, require_privileges, Pair, Tracer, ADDR_B};

const PORT: u16 = 7311;

/// A datagram larger than the veth's MTU leaves `a` in three fragments. The filter names its
/// port, which only the first fragment carries: tc ingress leaves the last one alone, and
/// that skb is the one IPv4 reassembles the datagram into before LOCAL_IN (`ip_frag_reasm`
/// morphs the fragment that completes the queue into the whole). Same skb, same device, a
/// different length: LOCAL_IN judges the whole datagram again and follows it to its reader.
#[test]
fn a_datagram_reassembled_from_fragments_left_alone_is_judged_again_at_local_in() {
    require_privileges();
    let pair = Pair::create();
    let server = pair
        .b
        .enter(move || UdpSocket::bind(format!("{ADDR_B}:{PORT}")).unwrap());
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let filter = format!("udp port {PORT}");
    let tracer = Tracer::start(&["-n", &pair.a.name, "-n", &pair.b.name, &filter]);
    pair.a.enter(move || {
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        udp.send_to(&[7u8; 3000], format!("{ADDR_B}:{PORT}"))
            .unwrap();
    });
    let mut buf = [0u8; 4096];
    let (len, _) = server.recv_from(&mut buf).expect("b reads the datagram");
    assert_eq!(len, 3000, "reassembled whole");
    std::thread::sleep(Duration::from_millis(200));
    let followed = followed_skbs();
    let report = tracer.finish();
    let whole: Vec<&Value> = report
        .packets()
        .filter(|p| p["dport"] == PORT && p["fate"]["kind"] == "delivered")
        .collect();
    assert_eq!(
        whole.len(),
        1,
        "one journey of the datagram delivered: {:#?}",
        report.records
    );
    let points = path(whole[0]);
    assert!(
        points.iter().any(|p| p == "nf_local_in first"),
        "the reassembled datagram was judged again at LOCAL_IN and followed: {points:?} in {:#}",
        whole[0]
    );
    // The first fragment's skb ended in the reassembly, where it no longer named its
    // namespace (the fragment queue writes its tree node over skb->dev): that end must still
    // stop its following. Left followed, the address went to the next packet built there (an
    // MLD report b sent, in CI), whose driver event took over the datagram's journey.
    let first_fragment = report
        .events
        .iter()
        .find(|e| e["hook"] == "tc_ingress" && e["dport"] == PORT)
        .and_then(|e| e["skb"].as_u64())
        .expect("the first fragment at b's tc ingress");
    assert!(
        !followed.contains(&first_fragment),
        "the first fragment's skb {first_fragment:#x} still followed: {followed:x?}"
    );
}

/// The skb addresses the tracer's kernel programs follow (its `FOLLOWED` map).
fn followed_skbs() -> Vec<u64> {
    let dump = tests::sh("bpftool -j map dump name FOLLOWED");
    let entries: Vec<Value> = serde_json::from_str(&dump).expect("bpftool's JSON");
    entries
        .iter()
        .map(|entry| {
            let bytes = entry["key"].as_array().expect("a key");
            bytes.iter().rev().fold(0u64, |key, byte| {
                let hex = byte.as_str().expect("a byte").trim_start_matches("0x");
                key << 8 | u64::from_str_radix(hex, 16).expect("hex")
            })
        })
        .collect()
}

/// `a`'s own MAC, set for the test.
const MAC_A: &str = "02:00:00:00:00:42";

/// A filter on link-layer fields has no form netfilter could judge by (it sees no Ethernet
/// header): every netfilter point leaves the packet alone, and tc egress, which sees the frame
/// just after POSTROUTING, must judge it itself rather than take POSTROUTING's rejection.
/// Conntrack in `a` gives POSTROUTING something registered, so that it is linked.
#[test]
fn a_frame_a_link_layer_filter_names_is_judged_at_tc_egress_after_postrouting() {
    require_privileges();
    let pair = Pair::create();
    pair.a.sh(&format!("ip link set va address {MAC_A}"));
    // No ARP between POSTROUTING and tc egress: a request queued for resolution would reach
    // tc egress after other packets, never back to back.
    pair.static_neighbours();
    pair.a
        .sh("iptables -A OUTPUT -m conntrack --ctstate INVALID -j DROP");
    let filter = format!("icmp and ether src {MAC_A}");
    let tracer = Tracer::start(&["-n", &pair.a.name, "-n", &pair.b.name, &filter]);
    let out = pair.a.run(&format!("ping -c 1 -W 1 {ADDR_B}"));
    assert!(out.status.success(), "b answers");
    std::thread::sleep(Duration::from_millis(200));
    let report = tracer.finish();
    // Conntrack registers IPv4's three hooks: only IPv6's are left unlinked in `a`.
    let a_linked = format!("3 of 6 in {}", pair.a.name);
    assert!(
        report.stderr.contains(&a_linked),
        "POSTROUTING linked in a (conntrack): {}",
        report.stderr
    );
    let request = report
        .packets()
        .find(|p| p["src"] != ADDR_B)
        .unwrap_or_else(|| panic!("the echo request: {:#?}", report.records));
    let points = path(request);
    assert!(
        points.iter().any(|p| p == "tc_egress first"),
        "seen at tc egress, its first point with the Ethernet header: {points:?}"
    );
}
