//! Observation points. The numbers are on the wire: fixed, never reused. What the tracer knows
//! about each is in [`crate::catalogue`].

use crate::catalogue::Mechanism;

/// Where in the kernel an event was produced.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// Driver receive, before an skb exists (our own XDP program).
    Xdp = 1,
    /// `net:netif_receive_skb`: the receive path, just before the AF_PACKET taps.
    NetifReceive = 2,
    /// tc ingress (after the receive taps).
    TcIngress = 3,
    NfPrerouting = 4,
    NfLocalIn = 5,
    NfForward = 6,
    NfLocalOut = 7,
    NfPostrouting = 8,
    /// tc egress (before the transmit taps).
    TcEgress = 9,
    /// `net:net_dev_start_xmit` / `net:net_dev_xmit`: just after the transmit taps.
    DevXmit = 10,
    /// Delivered to a socket's reader (`skb:skb_copy_datagram_iovec`).
    Socket = 11,
    /// TCP events: resets sent or received, retransmissions.
    Tcp = 12,
    /// `skb:kfree_skb`: the skb was dropped.
    KfreeSkb = 13,
    /// `skb:consume_skb`: the skb was freed normally.
    ConsumeSkb = 14,
    /// `fib:fib_table_lookup`: an IPv4 routing decision (`ifindex` is the chosen output).
    FibLookup = 15,
    /// `icmp:icmp_send`: the kernel answers a packet with an ICMP error.
    IcmpSend = 16,
}

/// Number of slots for per-hook arrays (hook ids are below this).
pub const HOOK_SLOTS: u32 = 32;

impl Hook {
    pub const ALL: [Hook; 16] = [
        Hook::Xdp,
        Hook::NetifReceive,
        Hook::TcIngress,
        Hook::NfPrerouting,
        Hook::NfLocalIn,
        Hook::NfForward,
        Hook::NfLocalOut,
        Hook::NfPostrouting,
        Hook::TcEgress,
        Hook::DevXmit,
        Hook::Socket,
        Hook::Tcp,
        Hook::KfreeSkb,
        Hook::ConsumeSkb,
        Hook::FibLookup,
        Hook::IcmpSend,
    ];

    pub fn from_u8(id: u8) -> Option<Hook> {
        Hook::ALL.iter().copied().find(|h| *h as u8 == id)
    }

    /// The name used in JSON output and recordings (a contract; see [`crate::catalogue`]).
    pub const fn name(self) -> &'static str {
        self.info().name
    }

    /// One of the netfilter hooks (PREROUTING ... POSTROUTING).
    pub const fn is_netfilter(self) -> bool {
        matches!(self.info().mechanism, Mechanism::Netfilter { .. })
    }

    /// A hook where the tracer has a first and a last program (netfilter's, tc's), so that a
    /// first one alone in it can imply the last point ([`LAST_IMPLIED`]).
    pub const fn brackets_others(self) -> bool {
        self.is_netfilter() || matches!(self, Hook::TcIngress | Hook::TcEgress)
    }

    pub fn from_name(name: &str) -> Option<Hook> {
        Hook::ALL.iter().copied().find(|h| h.name() == name)
    }

    /// Which side of its interface the hook sees a packet on (see [`crate::catalogue`]).
    pub const fn side(self) -> Side {
        self.info().side
    }
}

/// A hook is written by its name (recordings, JSON).
#[cfg(feature = "user")]
impl serde::Serialize for Hook {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(feature = "user")]
impl<'de> serde::Deserialize<'de> for Hook {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Hook, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Hook;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a hook name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Hook, E> {
                Hook::from_name(name)
                    .ok_or_else(|| E::custom(format_args!("unknown hook '{name}'")))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

#[cfg(feature = "user")]
impl core::fmt::Display for Hook {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A position is written `first` or `last` (recordings, JSON); `Only` is left out.
#[cfg(feature = "user")]
impl serde::Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.name() {
            Some(name) => serializer.serialize_str(name),
            None => serializer.serialize_none(),
        }
    }
}

#[cfg(feature = "user")]
impl<'de> serde::Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Position, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Position;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("`first`, `last` or null")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Position, E> {
                match Position::named(Some(name)) {
                    Position::Only => Err(E::custom(format_args!("unknown position '{name}'"))),
                    position => Ok(position),
                }
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Position, E> {
                Ok(Position::Only)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Position, E> {
                Ok(Position::Only)
            }
        }
        deserializer.deserialize_any(Name)
    }
}

/// The side of an interface a hook sees packets on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Arriving on it.
    Rx,
    /// Headed out of it, or leaving.
    Tx,
    /// Not at an interface: an end of life, a socket, an annotation.
    Neither,
}

impl Side {
    /// `rx`, `tx`, or `-` (the JSON path's `dir`).
    pub const fn name(self) -> &'static str {
        match self {
            Side::Rx => "rx",
            Side::Tx => "tx",
            Side::Neither => "-",
        }
    }
}

/// Netfilter hook numbers (`enum nf_inet_hooks`), as in `nf_hook_state.hook`. Stable kernel ABI.
pub const fn netfilter_hook(hooknum: u8) -> Option<Hook> {
    match hooknum {
        0 => Some(Hook::NfPrerouting),
        1 => Some(Hook::NfLocalIn),
        2 => Some(Hook::NfForward),
        3 => Some(Hook::NfLocalOut),
        4 => Some(Hook::NfPostrouting),
        _ => None,
    }
}

/// What a [`Hook::Tcp`] event reports, in `HookDetail::verdict`.
pub mod tcp_event {
    /// `tcp:tcp_send_reset`; `reason` is the kernel's `enum sk_rst_reason`.
    pub const SEND_RESET: u32 = 1;
    /// `tcp:tcp_receive_reset`: a socket accepted a reset.
    pub const RECEIVE_RESET: u32 = 2;
    /// `tcp:tcp_retransmit_skb`.
    pub const RETRANSMIT: u32 = 3;
    /// `tcp:tcp_bad_csum`: a segment with a bad checksum was discarded.
    pub const BAD_CSUM: u32 = 4;
}

/// `HookDetail::verdict` of a first program's event at netfilter or tc where the tracer's two
/// programs are the hook's only ones: nothing between them can drop or change the packet, so
/// the last program sends nothing for it and its point is this one's, at the same time.
pub const LAST_IMPLIED: u32 = 1;

/// `HookDetail::verdict` of an skb's end (`kfree_skb`, `consume_skb`) where the kernel program
/// read that no clone shares its data (`skb_shared_info.dataref` of 1): nothing of the packet
/// lives on in another skb (tcpdump's copy, a socket's error queue) whose end is still to come.
pub const SOLE_END: u32 = 1;

/// Where a bracketing program sits within its hook. `Only` for hooks with one program.
/// At [`Hook::DevXmit`], `First` is `net_dev_start_xmit` and `Last` is `net_dev_xmit`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Position {
    #[default]
    Only = 0,
    First = 1,
    Last = 2,
}

impl Position {
    /// `first`, `last`, or nothing for a hook that is not bracketed.
    pub const fn name(self) -> Option<&'static str> {
        match self {
            Position::Only => None,
            Position::First => Some("first"),
            Position::Last => Some("last"),
        }
    }

    /// The position named `first` or `last`; `Only` for no name or another one.
    pub fn named(name: Option<&str>) -> Position {
        match name {
            Some("first") => Position::First,
            Some("last") => Position::Last,
            _ => Position::Only,
        }
    }

    pub const fn is_only(&self) -> bool {
        matches!(self, Position::Only)
    }

    pub fn from_u8(id: u8) -> Position {
        match id {
            1 => Position::First,
            2 => Position::Last,
            _ => Position::Only,
        }
    }
}
