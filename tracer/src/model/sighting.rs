//! A decoded event: what one observation point saw, with names resolved. This is also the
//! recorded stream (`type: "event"` JSON lines) that journeys are rebuilt from offline.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tracer_common::{
    event::{kind, Event},
    hook::{tcp_event, Hook, Position, LAST_IMPLIED, SOLE_END},
};

use crate::kernel::kallsyms::Kallsyms;
pub use crate::model::protocol::{ip_address, Proto};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sighting {
    pub ts_ns: u64,
    pub cpu: u16,
    /// Events this CPU lost just before this one (see [`crate::model::gaps`]).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub lost_before: u32,
    /// Where it was seen; written by its name in the JSON contract (`xdp`, `tc_ingress`, ...).
    pub hook: Hook,
    /// `first`/`last` for bracketed hooks, absent otherwise.
    #[serde(default, skip_serializing_if = "Position::is_only")]
    pub position: Position,
    /// A first point (netfilter, tc) where the tracer's two programs are the hook's only
    /// ones: the last point is this one too, and no event of its own came for it (see
    /// [`push_expanded`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last_implied: bool,
    /// An skb's end where no clone shared its data (see [`tracer_common::hook::SOLE_END`]):
    /// nothing of the packet is left to end elsewhere. Absent in recordings of older builds:
    /// then a clone may live on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sole_end: bool,
    pub netns: u32,
    pub netns_name: Option<Name>,
    pub ifindex: u32,
    pub ifname: Option<Name>,
    /// The other end, where the interface is a veth whose peer is in a namespace with a name:
    /// the host side of container `web`'s veth says `web`'s `eth0`. Recorded with the event, as
    /// the names are: `explain` has no live system to ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Arc<crate::kernel::veth::Peer>>,
    pub skb: u64,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub proto: Proto,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: crate::model::tcp_flags::TcpFlags,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    pub ip_id: u32,
    pub len: u32,
    pub ip_len: u16,
    pub gso_segs: u16,
    /// Outermost VLAN id, where the point saw a tag (XDP and tc read the link layer; the
    /// tracepoints and netfilter do not); absent when untagged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vlan: u16,
    pub mark: u32,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Drop reason name without its prefix, for `kfree_skb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Box<str>>,
    /// Symbolized kernel location of the drop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Box<str>>,
    /// What a hook-specific event says: `reset sent (NO_SOCKET)`, `retransmission`,
    /// `icmp type 3 code 4 sent`, `driver returned 0`, `route via table 254`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Box<str>>,
    /// Set when this point saw a tunnel's outer packet (the headers above are the outer
    /// ones): the packet it carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Box<crate::model::encapsulated::Encapsulated>>,
    /// The packet's bytes as this point saw them, with `-w` (not part of the recording). Boxed:
    /// most traces carry none, and every sighting would otherwise hold room for them.
    #[serde(skip)]
    pub bytes: Option<Box<PacketBytes>>,
}

/// Bytes copied out of a packet by a kernel program.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketBytes {
    /// The bytes start at the Ethernet header (XDP, tc) or else at the IP header.
    pub ethernet: bool,
    /// The packet's length from that start, of which `data` is the beginning.
    pub orig_len: u32,
    pub data: bytes::Bytes,
}

impl PacketBytes {
    /// The bytes after an event in a ring buffer record, if the kernel copied any.
    pub fn from_record(record: &[u8]) -> Option<Box<PacketBytes>> {
        let (link, orig_len, data) = Event::captured(record)?;
        Some(Box::new(PacketBytes {
            ethernet: link == tracer_common::event::link::ETHERNET,
            orig_len: orig_len.max(data.len() as u32),
            data: bytes::Bytes::copy_from_slice(data),
        }))
    }
}

/// A namespace's or an interface's name, made once when the trace starts and shared by every
/// sighting there: a sighting costs no allocation for its names.
pub type Name = Arc<str>;

/// What turns numbers from the kernel into names a person reads. The maps looked up for every
/// event are FxHash ones: their keys are the kernel's numbers, not input an attacker picks.
#[derive(Default)]
pub struct Names {
    pub netns: FxHashMap<u32, Name>,
    pub interfaces: FxHashMap<(u32, u32), Name>,
    pub drop_reasons: HashMap<u32, String>,
    pub reset_reasons: HashMap<u32, String>,
    /// (netns, ifindex) -> "NAME (id N)" of another tool's XDP program on that interface.
    pub foreign_xdp: FxHashMap<(u32, u32), String>,
    /// (netns, port ifindex) -> ifindex of the bridge the port belongs to.
    pub bridge_of: FxHashMap<(u32, u32), u32>,
    /// (netns, veth ifindex) -> the other end of the veth (see [`crate::kernel::veth`]).
    pub veth_peers: FxHashMap<(u32, u32), Arc<crate::kernel::veth::Peer>>,
    pub kallsyms: Kallsyms,
}

impl Sighting {
    /// The sighting an event tells of; `None` for a hook this build does not know (an event
    /// from another build's kernel object).
    pub fn decode(event: &Event, names: &Names) -> Option<Sighting> {
        let (h, p) = (&event.header, &event.packet);
        let hook = Hook::from_u8(h.hook)?;
        let position = Position::from_u8(h.position);
        let is_drop = h.kind == kind::DROP;
        let location = is_drop.then(|| names.kallsyms.symbolize(event.detail.location));
        let ifname = names.interfaces.get(&(h.netns, h.ifindex)).cloned();
        let note = match (&location, names.foreign_xdp.get(&(h.netns, h.ifindex))) {
            // The kernel frees what an XDP program dropped in its XDP code (veth, generic XDP).
            (Some(at), Some(program)) if at.contains("xdp") => Some(format!(
                "dropped by the XDP program {program} on {}",
                ifname.as_deref().unwrap_or("this interface")
            )),
            // A bridge port's point names its bridge: where a frame crosses the bridge the
            // tracer sees only the ports (and br_netfilter's IP hooks on the bridge).
            _ => note(event, names).or_else(|| {
                // The device's own points: netfilter's IP hooks name the bridge itself.
                let port_point = hook.info().on_path && !hook.is_netfilter();
                port_point.then_some(())?;
                let bridge = names.bridge_of.get(&(h.netns, h.ifindex))?;
                let name = names.interfaces.get(&(h.netns, *bridge))?;
                Some(port_note(name))
            }),
        };
        Some(Sighting {
            ts_ns: h.ts_ns,
            cpu: h.cpu,
            lost_before: h.lost_before,
            hook,
            position,
            last_implied: position == Position::First
                && hook.brackets_others()
                && event.detail.verdict == LAST_IMPLIED,
            sole_end: matches!(hook, Hook::KfreeSkb | Hook::ConsumeSkb)
                && event.detail.verdict == SOLE_END,
            netns: h.netns,
            netns_name: names.netns.get(&h.netns).cloned(),
            ifindex: h.ifindex,
            ifname,
            peer: names.veth_peers.get(&(h.netns, h.ifindex)).cloned(),
            skb: h.skb,
            src: address(hook, p.l3_proto, &p.saddr),
            dst: address(hook, p.l3_proto, &p.daddr),
            proto: Proto::from_numbers(p.l3_proto, p.l4_proto),
            sport: p.sport,
            dport: p.dport,
            // Only TCP has flags; the byte is another protocol's otherwise.
            tcp_flags: crate::model::tcp_flags::TcpFlags(if p.l4_proto == 6 {
                p.tcp_flags
            } else {
                0
            }),
            tcp_seq: p.tcp_seq,
            tcp_ack: p.tcp_ack,
            ip_id: p.ip_id,
            len: p.pkt_len,
            ip_len: p.ip_len,
            gso_segs: p.gso_segs,
            vlan: p.vlan,
            mark: p.mark,
            icmp_type: p.icmp_type,
            icmp_code: p.icmp_code,
            reason: is_drop.then(|| {
                let reason = event.detail.reason;
                names
                    .drop_reasons
                    .get(&reason)
                    .cloned()
                    .unwrap_or_else(|| format!("reason {reason}"))
                    .into()
            }),
            location: location.map(String::into_boxed_str),
            note: note.map(String::into_boxed_str),
            tunnel: crate::model::encapsulated::decode(event),
            bytes: None,
        })
    }

    pub fn is_drop(&self) -> bool {
        self.hook == Hook::KfreeSkb
    }

    /// Whether this is a point of the packet's path through the stack (XDP to the driver), as
    /// opposed to an end of life (free, socket read) or an annotation (TCP, ICMP, routing).
    pub fn on_path(&self) -> bool {
        self.hook.info().on_path
    }

    /// Whether the skb was freed here (dropped or consumed): its address is then reused.
    pub fn ends_skb(&self) -> bool {
        self.is_drop() || self.hook == Hook::ConsumeSkb
    }
}

/// Adds `sighting` to its packet's `sightings`, with the last point it implies (a first
/// program alone in its hook, [`Sighting::last_implied`]) right after it: the same point and
/// packet at the same time, what the journey would hold had the last program sent its event.
/// Done as the sighting joins its journey: linking and the journey see the point from then on.
pub fn push_expanded(sightings: &mut Vec<Sighting>, mut sighting: Sighting) {
    if !sighting.last_implied {
        sightings.push(sighting);
        return;
    }
    sighting.last_implied = false;
    let last = Sighting {
        position: Position::Last,
        // The events lost before belong to the one event there was.
        lost_before: 0,
        ..sighting.clone()
    };
    sightings.push(sighting);
    sightings.push(last);
}

/// The hook-specific part of an event, in words.
fn note(event: &Event, names: &Names) -> Option<String> {
    let (verdict, reason) = (event.detail.verdict, event.detail.reason);
    match Hook::from_u8(event.header.hook)? {
        Hook::Tcp => Some(match verdict {
            tcp_event::SEND_RESET => match names.reset_reasons.get(&reason) {
                Some(why) => format!("reset sent ({why})"),
                None => "reset sent".to_string(),
            },
            tcp_event::RECEIVE_RESET => "reset received".to_string(),
            tcp_event::RETRANSMIT => "retransmission".to_string(),
            tcp_event::BAD_CSUM => "bad checksum, discarded".to_string(),
            other => format!("tcp event {other}"),
        }),
        Hook::IcmpSend => Some(format!(
            "answered with icmp type {} code {}",
            verdict >> 8,
            verdict & 0xff
        )),
        Hook::FibLookup => Some(match verdict as i32 {
            0 => format!("route found in table {reason}"),
            err => format!("no route in table {reason} (error {err})"),
        }),
        Hook::DevXmit if Position::from_u8(event.header.position) == Position::Last => {
            Some(match verdict as i32 {
                0 => "driver accepted it".to_string(),
                rc => format!("driver returned {rc}"),
            })
        }
        Hook::Socket => Some(format!("{verdict} bytes read by the application")),
        _ => None,
    }
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero(value: &u16) -> bool {
    *value == 0
}

/// The address as the packet carries it. A TCP event that knows only the socket gives the
/// socket's addresses: a dual-stack IPv6 socket talking IPv4 has them v4-mapped
/// (`::ffff:10.0.0.1`), while its packets carry plain IPv4 ones.
fn address(hook: Hook, l3_proto: u16, bytes: &[u8; 16]) -> Option<IpAddr> {
    match ip_address(l3_proto, bytes)? {
        IpAddr::V6(v6) if hook == Hook::Tcp => {
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        plain => Some(plain),
    }
}

/// The note on a sighting at a bridge port: `port of bridge br0` (kept in recordings, so
/// replays know the bridge; `analysis::bridge` reads it).
pub const PORT_NOTE: &str = "port of bridge ";

/// The note of a point on a bridge port.
pub fn port_note(bridge: &str) -> String {
    format!("{PORT_NOTE}{bridge}")
}

#[cfg(test)]
mod tests {
    use super::*;

    use tracer_common::parse::ETH_P_IPV6;

    #[test]
    fn a_sighting_stays_small_as_a_million_of_them_are_moved_while_stitching() {
        println!("Sighting: {} bytes", std::mem::size_of::<Sighting>());
        // 64 bytes more cost the streaming engine about 4% (`bench-pipeline --stream`).
        assert!(std::mem::size_of::<Sighting>() <= 216);
    }

    #[test]
    fn an_implied_last_point_follows_its_first_with_the_same_packet_and_time() {
        let point = |hook, position, ts_ns, last_implied| Sighting {
            hook,
            position,
            ts_ns,
            last_implied,
            lost_before: 3,
            ip_id: 7,
            ..decoded()
        };
        let mut sightings = Vec::new();
        for sighting in [
            point(Hook::NfLocalOut, Position::First, 10, true),
            point(Hook::TcEgress, Position::First, 20, false),
            point(Hook::TcEgress, Position::Last, 25, false),
            point(Hook::NfPrerouting, Position::First, 30, true),
        ] {
            push_expanded(&mut sightings, sighting);
        }
        let points: Vec<_> = sightings
            .iter()
            .map(|s| (s.hook, s.position, s.ts_ns, s.last_implied))
            .collect();
        assert_eq!(
            points,
            [
                (Hook::NfLocalOut, Position::First, 10, false),
                (Hook::NfLocalOut, Position::Last, 10, false),
                (Hook::TcEgress, Position::First, 20, false),
                (Hook::TcEgress, Position::Last, 25, false),
                (Hook::NfPrerouting, Position::First, 30, false),
                (Hook::NfPrerouting, Position::Last, 30, false),
            ]
        );
        // The packet is the first point's; the events lost before belong to that one event.
        assert_eq!(sightings[1].ip_id, 7);
        assert_eq!((sightings[0].lost_before, sightings[1].lost_before), (3, 0));
    }

    #[test]
    fn only_a_first_point_of_netfilter_or_tc_can_imply_its_last() {
        let implied = |hook: Hook, position: Position| {
            let mut event = Event::default();
            event.header.hook = hook as u8;
            event.header.position = position as u8;
            event.detail.verdict = LAST_IMPLIED;
            Sighting::decode(&event, &Names::default())
                .unwrap()
                .last_implied
        };
        assert!(implied(Hook::NfPrerouting, Position::First));
        assert!(implied(Hook::TcIngress, Position::First));
        assert!(!implied(Hook::NfPrerouting, Position::Last));
        // The same number is a driver's return code or a TCP event elsewhere.
        assert!(!implied(Hook::DevXmit, Position::First));
        assert!(!implied(Hook::Tcp, Position::Only));
    }

    /// A sighting as `decode` makes one (no names known).
    fn decoded() -> Sighting {
        let mut event = Event::default();
        event.header.hook = Hook::NfLocalOut as u8;
        Sighting::decode(&event, &Names::default()).expect("a hook this build knows")
    }

    #[test]
    fn a_socket_event_of_a_dual_stack_socket_names_the_ipv4_address_its_packets_carry() {
        let mut mapped = [0u8; 16];
        mapped[10..12].copy_from_slice(&[0xff, 0xff]);
        mapped[12..].copy_from_slice(&[10, 203, 0, 2]);
        let v4: IpAddr = "10.203.0.2".parse().unwrap();
        assert_eq!(address(Hook::Tcp, ETH_P_IPV6, &mapped), Some(v4));
        // A packet's own headers are what they are.
        assert_ne!(address(Hook::TcIngress, ETH_P_IPV6, &mapped), Some(v4));
        let plain: IpAddr = "fd00::2".parse().unwrap();
        let IpAddr::V6(v6) = plain else {
            unreachable!()
        };
        assert_eq!(address(Hook::Tcp, ETH_P_IPV6, &v6.octets()), Some(plain));
    }
}
