//! Observation points. The numbers are on the wire: fixed, never reused.

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
}

/// Number of slots for per-hook arrays (hook ids are below this).
pub const HOOK_SLOTS: u32 = 16;

impl Hook {
    pub const ALL: [Hook; 14] = [
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
    ];

    pub fn from_u8(id: u8) -> Option<Hook> {
        Hook::ALL.iter().copied().find(|h| *h as u8 == id)
    }

    /// The name used in JSON output (ARCHITECTURE.md, a contract).
    pub const fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::NetifReceive => "netif_receive",
            Hook::TcIngress => "tc_ingress",
            Hook::NfPrerouting => "nf_prerouting",
            Hook::NfLocalIn => "nf_local_in",
            Hook::NfForward => "nf_forward",
            Hook::NfLocalOut => "nf_local_out",
            Hook::NfPostrouting => "nf_postrouting",
            Hook::TcEgress => "tc_egress",
            Hook::DevXmit => "dev_xmit",
            Hook::Socket => "socket",
            Hook::Tcp => "tcp",
            Hook::KfreeSkb => "kfree_skb",
            Hook::ConsumeSkb => "consume_skb",
        }
    }
}

/// Where a bracketing program sits within its hook. `Only` for hooks with one program.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Position {
    Only = 0,
    First = 1,
    Last = 2,
}

impl Position {
    pub fn from_u8(id: u8) -> Position {
        match id {
            1 => Position::First,
            2 => Position::Last,
            _ => Position::Only,
        }
    }
}
