extern crate std;

use super::*;

#[test]
fn every_hook_has_its_own_row() {
    for hook in Hook::ALL {
        assert_eq!(hook.info().hook, hook);
    }
    assert_eq!(CATALOGUE.len(), Hook::ALL.len());
}

#[test]
fn the_names_are_the_contracts() {
    let names: [&str; 16] = Hook::ALL.map(|h| h.name());
    assert_eq!(
        names,
        [
            "xdp",
            "netif_receive",
            "tc_ingress",
            "nf_prerouting",
            "nf_local_in",
            "nf_forward",
            "nf_local_out",
            "nf_postrouting",
            "tc_egress",
            "dev_xmit",
            "socket",
            "tcp",
            "kfree_skb",
            "consume_skb",
            "fib_lookup",
            "icmp_send",
        ]
    );
}

#[test]
fn sides_taps_and_the_path_agree() {
    for info in &CATALOGUE {
        // On the path exactly where at an interface's tap, and only there with a side.
        assert_eq!(info.on_path, info.tap != Tap::Away, "{}", info.name);
        assert_eq!(info.on_path, info.side != Side::Neither, "{}", info.name);
    }
    // FORWARD reports the route's output device: the transmit side, before its tap.
    assert_eq!(Hook::NfForward.side(), Side::Tx);
    assert_eq!(Hook::NfForward.info().tap, Tap::Before);
}

#[test]
fn tracepoints_keep_the_attach_order() {
    let names: std::vec::Vec<&str> = tracepoints().map(|(_, tp)| tp.name).collect();
    assert_eq!(
        names,
        [
            "netif_receive_skb",
            "net_dev_start_xmit",
            "net_dev_xmit",
            "kfree_skb",
            "consume_skb",
            "skb_copy_datagram_iovec",
            "tcp_send_reset",
            "tcp_receive_reset",
            "tcp_retransmit_skb",
            "tcp_bad_csum",
            "icmp_send",
            "fib_table_lookup",
        ]
    );
}

/// The table as the verdicts, outputs and pcapng read it: a change here is a change of what
/// they say, made on purpose.
#[test]
fn the_facts_of_every_point() {
    use PcapngVerdict as V;
    use Side::{Neither, Rx, Tx};
    use Tap::{After, At, Away, Before};
    let expected: [(Hook, Side, Tap, bool, bool, PcapngVerdict); 16] = [
        (Hook::Xdp, Rx, Before, true, true, V::Xdp),
        (Hook::NetifReceive, Rx, At, true, false, V::None),
        (Hook::TcIngress, Rx, After, true, true, V::Tc),
        (Hook::NfPrerouting, Rx, After, true, false, V::None),
        (Hook::NfLocalIn, Rx, After, true, false, V::None),
        (Hook::NfForward, Tx, Before, true, false, V::None),
        (Hook::NfLocalOut, Tx, Before, true, false, V::None),
        (Hook::NfPostrouting, Tx, Before, true, false, V::None),
        (Hook::TcEgress, Tx, Before, true, true, V::Tc),
        (Hook::DevXmit, Tx, At, true, false, V::None),
        (Hook::KfreeSkb, Neither, Away, false, false, V::None),
        (Hook::ConsumeSkb, Neither, Away, false, false, V::None),
        (Hook::Socket, Neither, Away, false, false, V::None),
        (Hook::Tcp, Neither, Away, false, false, V::None),
        (Hook::IcmpSend, Neither, Away, false, false, V::None),
        (Hook::FibLookup, Neither, Away, false, false, V::None),
    ];
    for (hook, side, tap, on_path, link_layer, verdict) in expected {
        let info = hook.info();
        assert_eq!(
            (
                info.side,
                info.tap,
                info.on_path,
                info.link_layer,
                info.pcapng_verdict
            ),
            (side, tap, on_path, link_layer, verdict),
            "{}",
            info.name
        );
    }
    let netfilter: std::vec::Vec<&str> = CATALOGUE
        .iter()
        .filter(|i| i.hook.is_netfilter())
        .map(|i| i.name)
        .collect();
    assert_eq!(
        netfilter,
        [
            "nf_prerouting",
            "nf_local_in",
            "nf_forward",
            "nf_local_out",
            "nf_postrouting"
        ]
    );
}
