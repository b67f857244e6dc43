//! The kernel's protocol numbers and addresses, as people read them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tracer_common::parse::{ETH_P_IP, ETH_P_IPV6};

/// The address of family `l3_proto` in the kernel's 16 bytes.
pub fn ip_address(l3_proto: u16, bytes: &[u8; 16]) -> Option<IpAddr> {
    match l3_proto {
        ETH_P_IP => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        ETH_P_IPV6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
        _ => None,
    }
}

/// `tcp`, `udp`, `icmp`, `icmpv6`, `ip-proto-N`, or the ethertype.
pub fn proto_name(l3_proto: u16, l4_proto: u8) -> String {
    match (l3_proto, l4_proto) {
        (ETH_P_IP | ETH_P_IPV6, 6) => "tcp".into(),
        (ETH_P_IP | ETH_P_IPV6, 17) => "udp".into(),
        (ETH_P_IP, 1) => "icmp".into(),
        (ETH_P_IPV6, 58) => "icmpv6".into(),
        (ETH_P_IP | ETH_P_IPV6, n) => format!("ip-proto-{n}"),
        (0, _) => "unknown".into(),
        (ethertype, _) => format!("ethertype-0x{ethertype:04x}"),
    }
}
