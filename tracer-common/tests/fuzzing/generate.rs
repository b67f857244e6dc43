//! Strategies for the packets of `packets.rs`: fields from small pools mostly (so that
//! generated filters match some packets), anything sometimes. Shared like `packets.rs`.
//!
//! The public ones are boxed: the value trees of these nested strategies are large, and a
//! debug build moves them on the stack, beyond a test thread's 2 MiB once they are nested
//! in the filter properties' cases.

use proptest::{collection::vec, prelude::*};
use tracer_common::parse::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6};

use super::packets::{
    v6_addr, Ethernet, Extension, Ip, Ipv4, Ipv6, Transport, EXTENSIONS, PORTS, V4_ADDRS, V6_ADDRS,
};

fn addr4() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![3 => proptest::sample::select(&V4_ADDRS[..]), 1 => any::<[u8; 4]>()]
}

fn addr6() -> impl Strategy<Value = [u8; 16]> {
    prop_oneof![
        3 => proptest::sample::select(&V6_ADDRS[..]).prop_map(v6_addr),
        1 => any::<[u8; 16]>(),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![3 => proptest::sample::select(&PORTS[..]), 1 => any::<u16>()]
}

pub fn transport() -> BoxedStrategy<Transport> {
    let tcp = (
        port(),
        port(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        0..=10usize,
    )
        .prop_flat_map(|(sport, dport, seq, ack, flags, words)| {
            vec(any::<u8>(), words * 4).prop_map(move |options| Transport::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                options,
            })
        });
    let udp = (port(), port()).prop_map(|(sport, dport)| Transport::Udp { sport, dport });
    let icmp = (
        prop_oneof![Just(0u8), Just(8), Just(128), Just(129), any::<u8>()],
        any::<u8>(),
    )
        .prop_flat_map(|(kind, code)| {
            (any::<u16>(), any::<u16>()).prop_map(move |(id, seq)| Transport::Icmp {
                kind,
                code,
                id,
                seq,
            })
        });
    let other = (
        any::<u8>().prop_filter("a protocol the parser reads", |p| {
            ![6, 17, 1, 58].contains(p) && !EXTENSIONS.contains(p)
        }),
        vec(any::<u8>(), 0..24),
    )
        .prop_map(|(proto, bytes)| Transport::Other { proto, bytes });
    prop_oneof![4 => tcp, 3 => udp, 2 => icmp, 1 => other].boxed()
}

/// The length an IP header claims: mostly the true one (`None`); else 0 (TSO, BIG TCP), short
/// of the headers, or anything.
fn bogus_length() -> impl Strategy<Value = Option<u16>> {
    prop_oneof![
        12 => Just(None),
        1 => Just(Some(0)),
        1 => (1..100u16).prop_map(Some),
        1 => any::<u16>().prop_map(Some),
    ]
}

pub fn ipv4() -> BoxedStrategy<Ipv4> {
    let fragment = prop_oneof![3 => Just(0u16), 1 => 1..=0x1fffu16];
    let total_len = bogus_length();
    let header = (
        0..=10usize,
        any::<u16>(),
        any::<bool>(),
        any::<bool>(),
        fragment,
    );
    let rest = (
        any::<u8>(),
        addr4(),
        addr4(),
        total_len,
        transport(),
        vec(any::<u8>(), 0..40),
    );
    (header, rest)
        .prop_flat_map(|((words, id, df, mf, frag), rest)| {
            vec(any::<u8>(), words * 4).prop_map(move |options| {
                let (ttl, saddr, daddr, total_len, ref transport, ref payload) = rest;
                Ipv4 {
                    options,
                    id,
                    df,
                    more_fragments: mf,
                    frag_offset: frag,
                    ttl,
                    saddr,
                    daddr,
                    total_len,
                    transport: transport.clone(),
                    payload: payload.clone(),
                }
            })
        })
        .boxed()
}

fn extension() -> impl Strategy<Value = Extension> {
    let options = (
        prop_oneof![Just(0u8), Just(43), Just(60)],
        0..=2u8,
        any::<u8>(),
    )
        .prop_map(|(kind, len8, fill)| Extension::Options { kind, len8, fill });
    let fragment = (
        prop_oneof![Just(0u16), 1..=0x1fffu16],
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(|(offset, more, id)| Extension::Fragment { offset, more, id });
    let auth = (1..=4u8, any::<u8>()).prop_map(|(len4, fill)| Extension::Auth { len4, fill });
    prop_oneof![2 => options, 1 => auth, 1 => fragment]
}

/// IPv6 with `extensions` extension headers in front of the transport header.
pub fn ipv6(extensions: std::ops::RangeInclusive<usize>) -> BoxedStrategy<Ipv6> {
    let payload_len = bogus_length();
    (
        0..=0xf_ffffu32,
        any::<u8>(),
        addr6(),
        addr6(),
        payload_len,
        vec(extension(), extensions),
        transport(),
        vec(any::<u8>(), 0..40),
    )
        .prop_map(
            |(flow_label, hop_limit, saddr, daddr, payload_len, extensions, transport, payload)| {
                Ipv6 {
                    flow_label,
                    hop_limit,
                    saddr,
                    daddr,
                    payload_len,
                    extensions,
                    transport,
                    payload,
                }
            },
        )
        .boxed()
}

/// IPv4 or IPv6, the latter with up to seven extension headers (the parser walks six).
pub fn ip() -> BoxedStrategy<Ip> {
    prop_oneof![
        2 => ipv4().prop_map(Ip::V4),
        1 => ipv6(0..=0).prop_map(Ip::V6),
        1 => ipv6(1..=7).prop_map(Ip::V6),
    ]
    .boxed()
}

/// An Ethernet header with 0 to 4 VLAN tags in front of `ethertype`.
pub fn ethernet(ethertype: u16) -> BoxedStrategy<Ethernet> {
    let tpid = prop_oneof![Just(ETH_P_8021Q), Just(ETH_P_8021AD)];
    let tags = prop_oneof![
        3 => Just(Vec::new()),
        2 => vec((tpid, any::<u16>()), 1..=4),
    ];
    (any::<[u8; 6]>(), any::<[u8; 6]>(), tags)
        .prop_map(move |(dst, src, tags)| Ethernet {
            dst,
            src,
            tags,
            ethertype,
        })
        .boxed()
}

/// Any ethertype but a VLAN tag's (a tag is generated as a tag).
pub fn ethertype() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(ETH_P_IP),
        Just(ETH_P_IPV6),
        Just(0x0806u16),
        any::<u16>().prop_filter("not a VLAN tag", |t| ![ETH_P_8021Q, ETH_P_8021AD]
            .contains(t)),
    ]
}
