//! The kernel's protocol numbers and addresses, as people read them.

use std::{
    borrow::Cow,
    cmp::Ordering,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
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

/// What a packet carries above the link layer, as the kernel's numbers tell it.
///
/// Written and read by its name (`tcp`, `udp`, `icmp`, `icmpv6`, `ip-proto-N`,
/// `ethertype-0xNNNN`, `unknown`): the recordings and the JSON contract carry those strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Another IP protocol, by number.
    Ip(u8),
    /// Not IP: the link layer's protocol.
    Ethertype(u16),
    /// The point did not read the packet's headers.
    Unknown,
}

impl Proto {
    /// The protocol of a packet of ethertype `l3_proto` and IP protocol `l4_proto`.
    pub fn from_numbers(l3_proto: u16, l4_proto: u8) -> Proto {
        match (l3_proto, l4_proto) {
            (ETH_P_IP | ETH_P_IPV6, 6) => Proto::Tcp,
            (ETH_P_IP | ETH_P_IPV6, 17) => Proto::Udp,
            (ETH_P_IP, 1) => Proto::Icmp,
            (ETH_P_IPV6, 58) => Proto::Icmpv6,
            (ETH_P_IP | ETH_P_IPV6, n) => Proto::Ip(n),
            (0, _) => Proto::Unknown,
            (ethertype, _) => Proto::Ethertype(ethertype),
        }
    }

    /// Its name in recordings, JSON and text.
    pub fn name(self) -> Cow<'static, str> {
        match self {
            Proto::Tcp => "tcp".into(),
            Proto::Udp => "udp".into(),
            Proto::Icmp => "icmp".into(),
            Proto::Icmpv6 => "icmpv6".into(),
            Proto::Ip(n) => format!("ip-proto-{n}").into(),
            Proto::Ethertype(ethertype) => format!("ethertype-0x{ethertype:04x}").into(),
            Proto::Unknown => "unknown".into(),
        }
    }

    /// The protocol named `name`, as [`Proto::name`] writes it (and only so: `ip-proto-06` is
    /// no name, so that what is read is written back the same).
    pub fn from_name(name: &str) -> Option<Proto> {
        let proto = match name {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" => Proto::Icmp,
            "icmpv6" => Proto::Icmpv6,
            "unknown" => Proto::Unknown,
            other => match other.strip_prefix("ip-proto-") {
                Some(n) => Proto::Ip(n.parse().ok()?),
                None => {
                    let hex = other.strip_prefix("ethertype-0x")?;
                    Proto::Ethertype(u16::from_str_radix(hex, 16).ok()?)
                }
            },
        };
        (proto.name() == name).then_some(proto)
    }

    /// ICMP of either IP version.
    pub fn is_icmp(self) -> bool {
        matches!(self, Proto::Icmp | Proto::Icmpv6)
    }

    /// TCP or UDP: a protocol with ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Ordered as their names are, so that what is sorted by protocol lists as it did when the
/// protocol was its name.
impl Ord for Proto {
    fn cmp(&self, other: &Proto) -> Ordering {
        self.name().cmp(&other.name())
    }
}

impl PartialOrd for Proto {
    fn partial_cmp(&self, other: &Proto) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for Proto {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Proto {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Proto, D::Error> {
        let name = Cow::<str>::deserialize(deserializer)?;
        Proto::from_name(&name)
            .ok_or_else(|| de::Error::custom(format_args!("not a protocol: {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_the_recordings_and_the_json_contract_carry() {
        let cases = [
            (ETH_P_IP, 6, "tcp"),
            (ETH_P_IPV6, 6, "tcp"),
            (ETH_P_IP, 17, "udp"),
            (ETH_P_IP, 1, "icmp"),
            (ETH_P_IPV6, 58, "icmpv6"),
            (ETH_P_IPV6, 1, "ip-proto-1"),
            (ETH_P_IP, 58, "ip-proto-58"),
            (ETH_P_IP, 0, "ip-proto-0"),
            (ETH_P_IP, 47, "ip-proto-47"),
            (0, 6, "unknown"),
            (0x0806, 0, "ethertype-0x0806"),
            (0x88cc, 3, "ethertype-0x88cc"),
        ];
        for (l3, l4, name) in cases {
            let proto = Proto::from_numbers(l3, l4);
            assert_eq!(proto.to_string(), name);
            assert_eq!(Proto::from_name(name), Some(proto));
            let json = serde_json::to_string(&proto).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Proto>(&json).unwrap(), proto);
        }
    }

    #[test]
    fn a_name_no_build_writes_is_refused() {
        for name in [
            "",
            "TCP",
            "ip-proto-256",
            "ip-proto-",
            "ethertype-0x806",
            "ip-proto-+6",
            "ip-proto-06",
            "sctp",
        ] {
            assert_eq!(Proto::from_name(name), None, "{name}");
            assert!(serde_json::from_str::<Proto>(&format!("\"{name}\"")).is_err());
        }
    }

    #[test]
    fn protocols_sort_as_their_names() {
        let mut protos = [
            Proto::Unknown,
            Proto::Ip(17),
            Proto::Tcp,
            Proto::Ip(4),
            Proto::Icmp,
        ];
        protos.sort();
        let names: Vec<String> = protos.iter().map(|p| p.to_string()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
