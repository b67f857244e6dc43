//! The kernel programs' interpreter against libpcap's own, on the same packets.

use tracer_common::{
    cbpf::{self, View, MEM_WORDS},
    parse::{HDR_LEN, L2_LEN},
};

use super::*;
use crate::kernel::libpcap::reference_filter;

const ETH_IPV4: [u8; 14] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
const ETH_IPV6: [u8; 14] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];

/// IPv4 10.0.0.1 -> 10.0.0.2 (DF, ttl 64) with `l4` behind it.
fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = (20 + l4.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    p.extend_from_slice(l4);
    p
}

/// IPv6 fd00::1 -> fd00::2 with `l4` behind it.
fn ipv6(next: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 5];
    p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    for last in [1u8, 2] {
        let mut addr = [0u8; 16];
        addr[0] = 0xfd;
        addr[15] = last;
        p.extend_from_slice(&addr);
    }
    p.extend_from_slice(l4);
    p
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: usize) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.resize(20 + payload, 0x61);
    t
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
    u
}

/// (name, Ethernet header, L3 packet): a spread of what traced interfaces carry.
fn packets() -> Vec<(&'static str, [u8; 14], Vec<u8>)> {
    let mut with_options = ipv4(6, &tcp(40000, 80, 0x02, 0));
    with_options[0] = 0x46;
    with_options.splice(20..20, [1, 1, 1, 0]);
    let mut fragment = ipv4(17, &udp(5000, 53));
    fragment[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
    vec![
        (
            "ipv4 tcp syn",
            ETH_IPV4,
            ipv4(6, &tcp(40000, 8080, 0x02, 0)),
        ),
        (
            "ipv4 tcp syn-ack",
            ETH_IPV4,
            ipv4(6, &tcp(8080, 40000, 0x12, 0)),
        ),
        (
            "ipv4 tcp data",
            ETH_IPV4,
            ipv4(6, &tcp(40000, 80, 0x18, 200)),
        ),
        ("ipv4 tcp with options", ETH_IPV4, with_options),
        ("ipv4 udp", ETH_IPV4, ipv4(17, &udp(5000, 53))),
        ("ipv4 later fragment", ETH_IPV4, fragment),
        ("ipv4 echo", ETH_IPV4, ipv4(1, &[8, 0, 0, 0, 0, 7, 0, 1])),
        (
            "ipv4 echo reply",
            ETH_IPV4,
            ipv4(1, &[0, 0, 0, 0, 0, 7, 0, 1]),
        ),
        (
            "ipv6 tcp syn",
            ETH_IPV6,
            ipv6(6, &tcp(40000, 8080, 0x02, 0)),
        ),
        ("ipv6 udp", ETH_IPV6, ipv6(17, &udp(5000, 53))),
        ("ipv6 echo", ETH_IPV6, ipv6(58, &[128, 0, 0, 0, 0, 7, 0, 1])),
    ]
}

const EXPRESSIONS: [&str; 24] = [
    "tcp",
    "udp or icmp",
    "ip6",
    "host 10.0.0.1",
    "src host 10.0.0.2",
    "dst host fd00::2",
    "net 10.0.0.0/8 and not icmp",
    "port 8080",
    "tcp dst port 80",
    "portrange 5000-8080",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "icmp[icmptype] = icmp-echo",
    "icmp6 and ip6[40] = 128",
    "greater 100",
    "less 60",
    "ip[8] = 64",
    "ip[2:2] - ((ip[0]&0xf)<<2) - ((tcp[12]&0xf0)>>2) > 0",
    "not (port 53 or port 80)",
    "(src port 40000 or dst port 40000) and tcp",
    "ip and udp port 53",
    "ip[6:2] & 0x1fff != 0",
    "len >= 60 and len <= 100",
    "tcp port 8080 and host 10.0.0.2",
];

fn run(program: &Program, l2: &[u8], l3: &[u8], l3_len: usize, wire_len: u32) -> bool {
    let mut l2_bytes = [0u8; L2_LEN];
    l2_bytes[..l2.len()].copy_from_slice(l2);
    let mut l3_bytes = [0u8; HDR_LEN];
    let copied = l3.len().min(HDR_LEN).min(l3_len);
    l3_bytes[..copied].copy_from_slice(&l3[..copied]);
    let view = View {
        l2: l2_bytes.as_ptr(),
        l2_len: l2.len() as u32,
        l3: l3_bytes.as_ptr(),
        l3_len: copied as u32,
        wire_len,
    };
    // SAFETY: the view's addresses cover the lengths it gives.
    unsafe {
        cbpf::run(
            program,
            &view,
            &mut [0; MEM_WORDS],
            &mut [0; cbpf::READ_MASK_WORDS],
        )
    }
}

fn insns(program: &Program) -> &[Insn] {
    &program.insns[..program.len as usize]
}

#[test]
fn the_interpreter_agrees_with_libpcap_on_frames_and_ip_packets() {
    let mut checked = 0;
    for expression in EXPRESSIONS {
        let filter = compile(&[expression.to_string()]).unwrap().unwrap();
        let l2 = filter
            .l2
            .as_ref()
            .expect("every expression has an L2 program");
        let l3 = filter
            .l3
            .as_ref()
            .expect("every expression has an L3 program");
        for (name, eth, packet) in packets() {
            let frame = [&eth[..], &packet].concat();
            let frame_len = frame.len() as u32;
            let expected = reference_filter(insns(l2), &frame, frame_len);
            let got = run(l2, &eth, &packet, HDR_LEN, frame_len);
            assert_eq!(got, expected, "'{expression}' on the frame of {name}");
            let expected = reference_filter(insns(l3), &packet, packet.len() as u32);
            let got = run(l3, &[], &packet, HDR_LEN, packet.len() as u32);
            assert_eq!(got, expected, "'{expression}' on the IP packet of {name}");
            checked += 2;
        }
    }
    assert_eq!(checked, EXPRESSIONS.len() * packets().len() * 2);
}

#[test]
fn bytes_the_hook_did_not_copy_reject_like_a_short_capture() {
    let filter = compile(&["tcp[13] = 2".to_string()]).unwrap().unwrap();
    let l3 = filter.l3.unwrap();
    let packet = ipv4(6, &tcp(40000, 80, 0x02, 0));
    for copied in [20, 30, 33, 34, 40] {
        let expected = reference_filter(insns(&l3), &packet[..copied], packet.len() as u32);
        assert_eq!(
            run(&l3, &[], &packet, copied, 40),
            expected,
            "{copied} bytes"
        );
    }
}

#[test]
fn link_layer_expressions_have_no_ip_program() {
    let filter = compile(&["ether host 02:00:00:00:00:01".to_string()])
        .unwrap()
        .unwrap();
    assert!(filter.l2.is_some());
    assert!(filter.l3.is_none());
}

#[test]
fn tcpdump_messages_come_back_for_bad_expressions() {
    let words = |s: &str| vec![s.to_string()];
    assert_eq!(
        compile(&words("tcp port garbage")).unwrap_err().to_string(),
        "bad filter 'tcp port garbage': unknown port 'garbage'"
    );
    let err = compile(&words("host and")).unwrap_err().to_string();
    assert!(err.contains("syntax error"), "{err}");
    assert!(compile(&[]).unwrap().is_none());
    assert!(compile(&words("  ")).unwrap().is_none());
}

#[test]
fn words_are_joined_like_tcpdump_does() {
    let filter = compile(&["tcp".into(), "and".into(), "port".into(), "80".into()])
        .unwrap()
        .unwrap();
    assert_eq!(filter.expression, "tcp and port 80");
}
