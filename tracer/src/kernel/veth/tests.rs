use super::*;
use crate::kernel::nsid::{parse_nsid, NETNSA_NSID, RTM_NEWNSID};

fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = ((payload.len() + 4) as u16).to_ne_bytes().to_vec();
    out.extend(kind.to_ne_bytes());
    out.extend(payload);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out
}

/// An `RTM_NEWLINK` reply: nlmsghdr and ifinfomsg, then `attrs`.
fn newlink(attrs: &[u8]) -> Vec<u8> {
    let mut msg = vec![0u8; 32];
    msg[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend(attrs);
    msg
}

fn link(kind: &str, ifname: &str, peer: u32, netnsid: Option<i32>) -> Vec<u8> {
    let mut attrs = attr(IFLA_IFNAME, format!("{ifname}\0").as_bytes());
    attrs.extend(attr(IFLA_LINK, &peer.to_ne_bytes()));
    if let Some(id) = netnsid {
        attrs.extend(attr(IFLA_LINK_NETNSID, &id.to_ne_bytes()));
    }
    let info = attr(IFLA_INFO_KIND, format!("{kind}\0").as_bytes());
    attrs.extend(attr(IFLA_LINKINFO | 0x8000, &info)); // NLA_F_NESTED set
    newlink(&attrs)
}

fn veth_link(ifname: &str, link: u32, link_netnsid: Option<i32>) -> VethLink {
    VethLink {
        ifname: ifname.to_string(),
        link,
        link_netnsid,
    }
}

#[test]
fn reads_a_veths_peer_index_and_namespace_id() {
    assert_eq!(
        parse_veth(&link("veth", "veth3f2a1b0", 2, Some(1))),
        Some(veth_link("veth3f2a1b0", 2, Some(1)))
    );
    assert_eq!(
        parse_veth(&link("veth", "v0", 7, None)),
        Some(veth_link("v0", 7, None)),
        "both ends in one namespace"
    );
}

#[test]
fn other_interfaces_and_broken_replies_are_no_veth() {
    // A macvlan has IFLA_LINK too (its lower device): no peer.
    assert_eq!(parse_veth(&link("macvlan", "mv0", 2, None)), None);
    assert_eq!(parse_veth(&newlink(&attr(IFLA_IFNAME, b"lo\0"))), None);
    assert_eq!(parse_veth(&[0u8; 3]), None, "truncated");
    let mut error = link("veth", "v0", 7, None);
    error[4..6].copy_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
    assert_eq!(parse_veth(&error), None);
}

fn newnsid(id: i32) -> Vec<u8> {
    let mut msg = vec![0u8; 20];
    msg[4..6].copy_from_slice(&RTM_NEWNSID.to_ne_bytes());
    msg.extend(attr(NETNSA_NSID, &id.to_ne_bytes()));
    msg
}

#[test]
fn reads_a_namespace_id_and_not_an_unassigned_one() {
    assert_eq!(parse_nsid(&newnsid(3)), Some(3));
    assert_eq!(parse_nsid(&newnsid(-1)), None, "NETNSA_NSID_NOT_ASSIGNED");
    assert_eq!(parse_nsid(&newlink(&[])), None);
}

#[test]
fn a_peer_counts_only_if_it_points_back_at_the_same_index_and_namespace() {
    let ours = veth_link("veth3f2a1b0", 2, Some(1));
    let eth0 = veth_link("eth0", 9, Some(0));
    assert!(pairs(9, &ours, &eth0, Some(0)));
    assert!(!pairs(8, &ours, &eth0, Some(0)), "another index");
    assert!(
        !pairs(9, &ours, &eth0, Some(4)),
        "index 9 of another namespace"
    );
    assert!(
        !pairs(9, &ours, &eth0, None),
        "the peer's namespace gives ours no id"
    );
    let local = veth_link("eth0", 9, None);
    assert!(
        !pairs(9, &ours, &local, Some(0)),
        "the peer's pair is in its own namespace"
    );
    let same = veth_link("v0", 5, None);
    assert!(pairs(9, &same, &local, None), "both in one namespace");
    assert!(!pairs(9, &same, &eth0, Some(0)));
}

#[test]
fn an_interface_is_named_with_its_peer_beside_it() {
    let peer = Peer {
        netns_name: "web".to_string(),
        ifname: "eth0".to_string(),
    };
    assert_eq!(
        with_peer("veth3f2a1b0", Some(&peer)),
        "veth3f2a1b0 (web's eth0)"
    );
    assert_eq!(with_peer("eth0", None), "eth0");
}

/// A recording of two namespaces on a bridge, with the host sides of their veths given their
/// peers as a live trace would have recorded them.
fn bridge_crossed_with_peers() -> crate::analysis::Analysis {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bridge_crossed.jsonl");
    let mut recording = crate::model::recording::read(&path).expect("fixture");
    for s in &mut recording.sightings {
        if s.netns_name.as_deref() == Some("br-host") && s.ifname.as_deref() == Some("vethc1") {
            s.peer = Some(std::sync::Arc::new(Peer {
                netns_name: "br-c1".to_string(),
                ifname: "eth0".to_string(),
            }));
        }
    }
    crate::analysis::Analysis::new(recording, None)
}

#[test]
fn the_text_names_a_veth_with_its_peer_in_the_path_and_the_tcpdump_verdicts() {
    let analysis = bridge_crossed_with_peers();
    let mut text = Vec::new();
    crate::report::output::write_text(
        &mut text,
        &analysis,
        &crate::report::stats::Stats::default(),
        crate::report::paint::Paint::Plain,
    )
    .expect("render");
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("netif_receive          br-host/vethc1 (br-c1's eth0)  port of bridge br0"),
        "{text}"
    );
    assert!(
        text.contains("tcpdump on br-host/vethc1 (br-c1's eth0) ---"),
        "{text}"
    );
    assert!(
        text.contains("capturing on br-host/vethc1 (br-c1's eth0) and saw this packet"),
        "{text}"
    );
    // The other port's peer is not known: named alone.
    assert!(
        text.contains("br-host/vethc2  port of bridge br0"),
        "{text}"
    );
}

#[test]
fn the_json_gives_the_peer_beside_the_unchanged_ifname() {
    let analysis = bridge_crossed_with_peers();
    let journey = &analysis.journeys[0];
    let packet: serde_json::Value =
        serde_json::from_str(&crate::report::output::packet_json(journey, &analysis)).unwrap();
    let peer = serde_json::json!({"netns_name": "br-c1", "ifname": "eth0"});
    let point = packet["path"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ifname"] == "vethc1")
        .expect("a point on vethc1");
    assert_eq!(point["peer"], peer, "{point}");
    let capture = packet["capture"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ifname"] == "vethc1")
        .expect("a verdict on vethc1");
    assert_eq!(capture["peer"], peer, "{capture}");
    let other = packet["capture"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ifname"] == "vethc2")
        .expect("a verdict on vethc2");
    assert!(other.get("peer").is_none(), "{other}");
}

#[test]
fn a_recorded_peer_reads_back_and_an_old_event_has_none() {
    let analysis = bridge_crossed_with_peers();
    let with = analysis
        .journeys
        .iter()
        .flat_map(|j| &j.sightings)
        .find(|s| s.peer.is_some())
        .expect("a sighting with a peer");
    let line = serde_json::to_value(with).unwrap();
    assert_eq!(line["peer"]["netns_name"], "br-c1");
    let back: crate::model::sighting::Sighting = serde_json::from_value(line.clone()).unwrap();
    assert_eq!(&back, with);
    let mut old = line;
    old.as_object_mut().unwrap().remove("peer");
    let back: crate::model::sighting::Sighting = serde_json::from_value(old).unwrap();
    assert_eq!(back.peer, None);
}
