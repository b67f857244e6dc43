//! tcpdump filter expressions from a grammar of pcap-filter(7) primitives, over the same
//! small pools of addresses and ports as the generated packets, so that filters match some.

use proptest::{prelude::*, sample::select};

use super::packets::{PORTS, V4_ADDRS, V6_ADDRS};

fn v4() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(&V4_ADDRS[..]).prop_map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}")),
        1 => any::<[u8; 4]>().prop_map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}")),
    ]
}

fn v6() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(&V6_ADDRS[..]).prop_map(|[hi, lo]| format!("{hi:x}::{lo:x}")),
        1 => any::<[u16; 8]>().prop_map(|w| {
            w.iter().map(|x| format!("{x:x}")).collect::<Vec<_>>().join(":")
        }),
    ]
}

fn net() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("10.0.0.0/8".to_string()),
        Just("10.0.0.0/24".to_string()),
        Just("192.168.0.0/16".to_string()),
        Just("10.1".to_string()),
        (v4(), 0..=32u8).prop_map(|(a, bits)| format!("{a}/{bits}")),
        Just("fd00::/8".to_string()),
        Just("2001:db8::/32".to_string()),
        (v6(), 0..=128u8).prop_map(|(a, bits)| format!("{a}/{bits}")),
        (
            v4(),
            select(&["255.0.0.0", "255.255.255.0", "255.255.0.0"][..])
        )
            .prop_map(|(a, mask)| format!("{a} mask {mask}")),
    ]
}

fn port() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(&PORTS[..]).prop_map(|p| p.to_string()),
        1 => any::<u16>().prop_map(|p| p.to_string()),
        1 => select(&["http", "domain", "https", "ssh"][..]).prop_map(str::to_string),
    ]
}

fn direction() -> impl Strategy<Value = &'static str> {
    select(&["", "src ", "dst ", "src or dst ", "src and dst "][..])
}

fn tcp_flag() -> impl Strategy<Value = &'static str> {
    select(
        &[
            "tcp-fin", "tcp-syn", "tcp-rst", "tcp-push", "tcp-ack", "tcp-urg", "tcp-ece", "tcp-cwr",
        ][..],
    )
}

fn relation() -> impl Strategy<Value = &'static str> {
    select(&["=", "!=", ">", "<", ">=", "<="][..])
}

/// Arithmetic over packet bytes, the way people write it (`ip[2:2] - ((ip[0]&0xf)<<2)`),
/// with the operators whose edge cases differ between interpreters: shifts, division.
fn arith() -> impl Strategy<Value = String> {
    let proto = select(&["ip", "ip6", "tcp", "udp", "icmp", "icmp6", "ether"][..]);
    let load = (proto, 0..70u16, select(&["", ":1", ":2", ":4"][..]))
        .prop_map(|(p, at, size)| format!("{p}[{at}{size}]"));
    let leaf = prop_oneof![
        3 => load,
        1 => Just("len".to_string()),
        2 => (0..300u32).prop_map(|n| n.to_string()),
        1 => any::<u32>().prop_map(|n| format!("0x{n:x}")),
    ];
    leaf.prop_recursive(2, 6, 2, |inner| {
        let op = select(&["+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>"][..]);
        (inner.clone(), op, inner).prop_map(|(a, op, b)| format!("({a} {op} {b})"))
    })
}

fn primitive() -> BoxedStrategy<String> {
    prop_oneof![
        select(
            &[
                "ip",
                "ip6",
                "tcp",
                "udp",
                "icmp",
                "icmp6",
                "arp",
                "ip proto 47",
                "ip6 proto 58",
                "proto \\tcp",
                "ip proto \\udp",
                "ip6 protochain 6",
                "ip multicast",
                "ip6 multicast",
                "vlan",
                "vlan 100",
            ][..]
        )
        .prop_map(str::to_string),
        (direction(), v4()).prop_map(|(d, a)| format!("{d}host {a}")),
        (direction(), v6()).prop_map(|(d, a)| format!("{d}host {a}")),
        (select(&["", "ip ", "ip6 "][..]), direction(), net())
            .prop_map(|(p, d, n)| format!("{p}{d}net {n}")),
        (select(&["", "tcp ", "udp "][..]), direction(), port())
            .prop_map(|(p, d, port)| format!("{p}{d}port {port}")),
        (
            select(&["", "tcp ", "udp "][..]),
            direction(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(p, d, a, b)| format!("{p}{d}portrange {}-{}", a.min(b), a.max(b))),
        (tcp_flag(), tcp_flag(), select(&["!= 0", "= 0"][..]))
            .prop_map(|(a, b, cmp)| format!("tcp[tcpflags] & ({a}|{b}) {cmp}")),
        (tcp_flag(), tcp_flag()).prop_map(|(a, b)| format!("tcp[tcpflags] & ({a}|{b}) == {a}")),
        (select(
            &[
                "icmp-echo",
                "icmp-echoreply",
                "icmp-unreach",
                "icmp-timxceed",
                "3"
            ][..]
        ))
        .prop_map(|t| format!("icmp[icmptype] = {t}")),
        select(&["icmp6[icmp6type] = icmp6-echo", "icmp6[icmp6type] = 129"][..])
            .prop_map(str::to_string),
        (select(&["greater", "less"][..]), 0..200u16).prop_map(|(w, n)| format!("{w} {n}")),
        (arith(), relation(), arith()).prop_map(|(a, r, b)| format!("{a} {r} {b}")),
    ]
    .boxed()
}

/// An expression: primitives joined with and/or/not, in parentheses or not, sometimes with
/// tcpdump's shorthand (`host 10.0.0.1 or 10.0.0.2`, `not` as `!`, `and` as `&&`).
pub fn expression() -> impl Strategy<Value = String> {
    primitive().prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (
                inner.clone(),
                select(&["and", "or", "&&", "||"][..]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (inner.clone(), select(&["and", "or"][..]), inner.clone())
                .prop_map(|(a, op, b)| format!("({a}) {op} ({b})")),
            (select(&["not", "!"][..]), inner).prop_map(|(n, a)| format!("{n} ({a})")),
            (v4(), v4()).prop_map(|(a, b)| format!("host {a} or {b}")),
        ]
    })
}
