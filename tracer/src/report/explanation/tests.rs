//! Explanations of streams recorded on the real kernel (tracer/tests/fixtures, kept by the
//! integration tests with `TRACER_FIXTURES_OUT`): the key sentence of each case, and the whole
//! text output against a golden file (`UPDATE_GOLDEN=1 cargo test` rewrites them).

use std::path::{Path, PathBuf};

use crate::{
    analysis::Analysis, model::recording, report::explanation, report::output, report::stats::Stats,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn analysis(name: &str) -> Analysis {
    let path = fixtures().join(format!("{name}.jsonl"));
    Analysis::new(recording::read(&path).expect("fixture"), None)
}

/// Every sentence about every packet and flow of a fixture, one per line.
fn sentences(name: &str) -> String {
    let analysis = analysis(name);
    let mut out = Vec::new();
    for journey in &analysis.journeys {
        out.extend(explanation::packet(journey, &analysis));
    }
    for flow in &analysis.flows {
        out.extend(explanation::flow(flow, &analysis));
    }
    out.extend(explanation::counter_sentences(&analysis));
    out.join("\n")
}

#[track_caller]
fn says(name: &str, phrase: &str) {
    let text = sentences(name);
    assert!(
        text.contains(phrase),
        "{name} should say {phrase:?}:\n{text}"
    );
}

#[test]
fn a_syn_dropped_at_local_in_and_a_syn_ack_dropped_at_local_out_come_out_different() {
    says(
        "syn_local_in_drop",
        "netfilter rule at LOCAL_IN (iptables INPUT)",
    );
    says("syn_local_in_drop", "saw it arrive, but the stack dropped it after the capture point, and TCP never received it");
    says("syn_local_in_drop", "3 SYN died after its capture point");
    says(
        "synack_local_out_drop",
        "netfilter rule at LOCAL_OUT (iptables OUTPUT)",
    );
    says(
        "synack_local_out_drop",
        "died before the capture point of tt28045-b/vb on its way out",
    );
    says(
        "synack_local_out_drop",
        "it misses 5 SYN-ACK, which died before its capture point",
    );
    says(
        "synack_local_out_drop",
        "was delivered to the local stack in namespace tt28045-b",
    );
}

#[test]
fn drops_at_each_hook_are_named() {
    says("prerouting_drop", "netfilter rule at PREROUTING");
    says("local_in_drop", "netfilter rule at LOCAL_IN");
    says("forward_drop", "netfilter rule at FORWARD");
    says("local_out_drop", "netfilter rule at LOCAL_OUT");
    says("postrouting_drop", "netfilter rule at POSTROUTING");
    says("tc_ingress_drop", "tc program at ingress of vb");
    says("tc_egress_drop", "tc program at egress of va");
    says("foreign_xdp_drop", "dropped by the XDP program drop_all");
    says(
        "foreign_xdp_drop",
        "before the capture point: no capture could see it",
    );
}

#[test]
fn before_and_after_the_tap() {
    says(
        "tc_ingress_drop",
        "saw it arrive, but the stack dropped it after the capture point",
    );
    says(
        "tc_egress_drop",
        "shows nothing of this flow; it misses 8 echo request",
    );
    says("postrouting_drop", "died before the capture point");
}

#[test]
fn routing_mtu_sockets_resets_retransmissions_and_offload_are_explained() {
    says("no_route", "there is no route to 10.202.9.9");
    says("no_route", "answered it with ICMP network unreachable");
    says("mtu_frag_needed", "larger than the MTU of the next hop");
    says(
        "mtu_frag_needed",
        "answered it with ICMP fragmentation needed",
    );
    says("no_socket_reset", "no socket listens on TCP port 7001");
    says(
        "no_socket_reset",
        "answered it with a reset: no socket listens on port 7001",
    );
    says(
        "no_socket_reset",
        "accepted this reset and closed the connection",
    );
    says("syn_local_in_drop", "It is a retransmission of packet 1");
    says(
        "syn_local_in_drop",
        "retransmitted 2 times: the first transmission (packet 1) was dropped",
    );
    says("reply_other_interface", "on vb1, but replies leave by vb2");
    says(
        "offload_merged",
        "Offload (GSO/GRO) carried it as one packet of",
    );
}

#[test]
fn live_captures_and_kernel_counters_are_named() {
    says("syn_local_in_drop", "tcpdump (pid ");
    says(
        "syn_local_in_drop",
        "is capturing on tt28045-b/vb and saw this packet",
    );
    says(
        "no_socket_reset",
        "Kernel counter Tcp.OutRsts in tt28045-b rose by 1; the tracer saw 1: agrees",
    );
}

#[test]
fn text_output_matches_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures()).expect("fixtures") {
        let path = entry.expect("entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(name) = name.strip_suffix(".jsonl") else {
            continue;
        };
        let mut text = Vec::new();
        let analysis = analysis(name);
        output::write_text(
            &mut text,
            &analysis,
            &Stats::default(),
            crate::report::paint::Paint::Plain,
        )
        .expect("render");
        let text = String::from_utf8(text).expect("utf-8");
        let golden = fixtures().join(format!("{name}.golden.txt"));
        if update {
            std::fs::write(&golden, &text).expect("write golden");
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
            panic!(
                "no golden file {}: run UPDATE_GOLDEN=1 cargo test",
                golden.display()
            )
        });
        assert_eq!(
            text, expected,
            "{name}: the text output changed (UPDATE_GOLDEN=1 rewrites)"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} fixtures");
}

#[test]
fn a_drop_inside_a_bridge_is_the_bridges_with_its_ports_and_whose_rule() {
    // Recorded on 6.18: container to container across br0, with tcpdump on br0 and both
    // ports; br_netfilter on (bridge-nf-call-iptables=1).
    says(
        "bridge_iptables_forward_drop",
        "was dropped inside bridge br0 (from port vethc1 towards vethc2) by an iptables/ip6tables \
         (or nftables ip/ip6/inet) rule at FORWARD, which br_netfilter runs for bridged frames",
    );
    says(
        "bridge_iptables_forward_drop",
        "it died before the capture point of br-host/vethc2 on its way out",
    );
    says(
        "bridge_nft_forward_drop",
        "was dropped inside bridge br0 (from port vethc1 towards vethc2) by an nftables \
         bridge-family rule in the bridge's own chains between iptables' PREROUTING and FORWARD",
    );
    let analysis = analysis("bridge_nft_forward_drop");
    for journey in &analysis.journeys {
        let text = explanation::packet(journey, &analysis).join("\n");
        match &journey.copy {
            None => assert!(
                !text.contains("OTHERHOST")
                    && !text.contains("PREROUTING (")
                    && !text.contains("rule at PREROUTING"),
                "the copy passed up to br0 is not the frame's fate:\n{text}"
            ),
            Some(copy) => assert!(
                text.starts_with(&format!(
                    "This is a copy of packet {} that bridge br0 passed up to itself",
                    copy.of
                )) && text.contains("not for this host")
                    && text.contains("saw this packet (rx on br-host/br0)"),
                "the copy says what it is:\n{text}"
            ),
        }
    }
    assert_eq!(
        analysis
            .journeys
            .iter()
            .filter(|j| j.copy.is_some())
            .count(),
        2,
        "each SYN's copy passed up to br0"
    );
}

#[test]
fn a_frame_that_crossed_a_bridge_is_delivered_and_br0_gives_no_transmit_verdict() {
    let analysis = analysis("bridge_crossed");
    let syn = analysis
        .journeys
        .iter()
        .find(|j| j.headers().tcp_flags == ["SYN"])
        .expect("the SYN");
    assert_eq!(syn.fate.kind, crate::analysis::fate::FateKind::Delivered);
    assert_eq!(syn.fate.netns_name.as_deref(), Some("br-c2"));
    let on_br0 = |id: u64| -> Vec<(&str, bool)> {
        analysis
            .captures(id)
            .iter()
            .filter(|c| c.ifname.as_deref() == Some("br0"))
            .map(|c| (c.dir, c.seen))
            .collect()
    };
    // Nothing was sent from br0 and the frame itself never passed its taps; tcpdump on br0
    // saw the copy the promiscuous bridge passed up, a journey of its own.
    assert_eq!(on_br0(syn.id), []);
    let copy = analysis
        .journeys
        .iter()
        .find(|j| j.copy.as_ref().is_some_and(|c| c.of == syn.id))
        .expect("the copy passed up to br0");
    assert_eq!(on_br0(copy.id), [("rx", true)]);
    assert_eq!(copy.fate.drop_reason(), Some("OTHERHOST"));
}

#[test]
fn after_the_live_view_a_flow_that_went_wrong_says_why_and_one_that_did_not_is_one_line() {
    let summary = |name: &str| {
        let mut text = Vec::new();
        let analysis = analysis(name);
        output::write_flow_summary(
            &mut text,
            &analysis,
            &Stats::default(),
            crate::report::paint::Paint::Plain,
            crate::report::Selection::All,
        )
        .expect("render");
        String::from_utf8(text).expect("utf-8")
    };
    let text = summary("local_in_syn_drop");
    let dropped = text
        .lines()
        .position(|l| l.starts_with("flow ") && l.contains("dropped"))
        .unwrap_or_else(|| panic!("a flow line with its drops:\n{text}"));
    let why = text.lines().nth(dropped + 1).unwrap_or("");
    assert!(
        why.starts_with("    ") && why.contains("dropped"),
        "its why sentences follow it:\n{text}"
    );
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with('+')),
        "no packet paths: they were shown live\n{text}"
    );
    // A flow whose packets all made it is its line alone.
    let mut good = 0;
    for name in ["no_socket_reset", "reply_other_interface", "bridge_crossed"] {
        let text = summary(name);
        for (line, next) in text.lines().zip(text.lines().skip(1)) {
            if line.starts_with("flow ") && !line.contains("dropped") && !line.contains("unknown") {
                good += 1;
                assert!(!next.starts_with("    "), "no why for {line}:\n{text}");
            }
        }
    }
    assert!(good > 0, "the fixtures hold flows that went well");
}
