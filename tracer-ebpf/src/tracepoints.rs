//! Typed (`tp_btf`) tracepoints: global, so events carry the packet's namespace and are
//! filtered by it. Need BTF (`CONFIG_DEBUG_INFO_BTF`, 5.5+) but no tracefs, so they work
//! inside `ip netns exec`, where `/sys` is remounted.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use tracer_common::{
    event::{kind, HookDetail, PacketSummary},
    hook::{tcp_event, Hook, Position, SOLE_END},
    parse::{parse_l2, untag_outer, ETH_HLEN, ETH_P_IP, L2_LEN},
};

use crate::{
    emit::{
        forget, netns_traced, report, report_without_tunnels, unfollowed, L2Bytes, Site, Source, L2,
    },
    judged,
    kernel::{
        dev_identity, dev_ifindex, field, read, skb_data_sole, skb_identity, skb_info, skb_summary,
        sock_netns, sock_summary, Netns, SkbInfo, Typed,
    },
    maps::{config, inert, offset},
    netfilter::{ipv4_pair, left_alone_route, remember_left_alone_route},
};

/// `net:netif_receive_skb(struct sk_buff *skb)`: the receive tap-side witness.
#[btf_tracepoint(function = "netif_receive_skb")]
pub fn tracer_netif_receive(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    // A route lookup from here on is this packet's (an ARP request's, say, is not an earlier
    // packet's): where PREROUTING has no link, it is judged by this program's verdict.
    let left_alone = observe_skb(
        ctx.arg(0),
        Hook::NetifReceive,
        Position::Only,
        kind::SIGHTING,
        HookDetail::default(),
    );
    remember_left_alone_route(left_alone);
    0
}

/// `net:net_dev_start_xmit(struct sk_buff *skb, struct net_device *dev)`: just after the
/// transmit taps, as the driver is handed the packet.
#[btf_tracepoint(function = "net_dev_start_xmit")]
pub fn tracer_dev_start_xmit(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    // tc egress, just before where no queue holds the packet between them (a virtual
    // device's, or an empty one), may have left it alone already (see `judged`).
    const AFTER: u32 = judged::hooks(&[Hook::TcEgress]);
    let (skb, dev): (u64, u64) = (ctx.arg(0), ctx.arg(1));
    let len = field::<u32>(skb, offset!(skb_len)).unwrap_or(0);
    if judged::rejected_just_now(AFTER, Hook::DevXmit, skb, dev_ifindex::<Typed>(dev), len) {
        return 0;
    }
    observe_skb(
        skb,
        Hook::DevXmit,
        Position::First,
        kind::SIGHTING,
        HookDetail::default(),
    );
    0
}

/// `net:net_dev_xmit(struct sk_buff *skb, int rc, struct net_device *dev, unsigned int len)`:
/// the driver's answer. The skb may already be freed (the driver owns it now), so only the
/// arguments are read, and the packet is reported when its skb is followed or nothing is
/// filtered: userspace joins it to the `net_dev_start_xmit` sighting by skb address.
#[btf_tracepoint(function = "net_dev_xmit")]
pub fn tracer_net_dev_xmit(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    let skb: u64 = ctx.arg(0);
    if unfollowed(skb) {
        return 0;
    }
    let rc: i32 = ctx.arg(1);
    let dev: u64 = ctx.arg(2);
    let len: u32 = ctx.arg(3);
    let (ifindex, netns) = dev_identity::<Typed>(dev);
    if !netns_traced(netns) {
        return 0;
    }
    let site = Site {
        hook: Hook::DevXmit,
        position: Position::Last,
        kind: kind::SIGHTING,
        ifindex,
        netns: Netns::Known(netns),
        skb,
        source: Source::None,
    };
    let packet = PacketSummary {
        pkt_len: len,
        ..PacketSummary::default()
    };
    let detail = HookDetail {
        verdict: rc as u32,
        ..HookDetail::default()
    };
    report(&site, &packet, None, 0, detail);
    0
}

// Tracepoints whose arguments changed between kernels come in variants named by how many
// arguments they read (`_2`): the verifier refuses a read past the last argument, so userspace
// loads the variant that fits the kernel's BTF (`loader::TRACEPOINTS`).

/// `skb:kfree_skb(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)`.
/// The reason argument exists since 5.17 (rx_sk follows it since 6.12, unread); its values
/// differ between kernels (decoded in userspace from BTF).
#[btf_tracepoint(function = "kfree_skb")]
pub fn tracer_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    freed(ctx.arg(0), kind::DROP, ctx.arg(1), ctx.arg(2));
    0
}

/// `skb:kfree_skb(struct sk_buff *skb, void *location)` before 5.17: no reason.
#[btf_tracepoint(function = "kfree_skb")]
pub fn tracer_kfree_skb_2(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    freed(ctx.arg(0), kind::DROP, ctx.arg(1), 0);
    0
}

/// `skb:consume_skb(struct sk_buff *skb, void *location)`: a normal end of life.
#[btf_tracepoint(function = "consume_skb")]
pub fn tracer_consume_skb(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    freed(ctx.arg(0), kind::FREE, ctx.arg(1), 0);
    0
}

/// `skb:consume_skb(struct sk_buff *skb)` before 6.3: no location.
#[btf_tracepoint(function = "consume_skb")]
pub fn tracer_consume_skb_1(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    freed(ctx.arg(0), kind::FREE, 0, 0);
    0
}

/// An skb's end: dropped (`kind::DROP`, with the kernel's reason) or consumed.
#[inline(always)]
fn freed(skb: u64, event_kind: u8, location: u64, reason: u32) {
    if event_kind == kind::FREE && unfollowed(skb) {
        return;
    }
    let hook = if event_kind == kind::DROP {
        Hook::KfreeSkb
    } else {
        Hook::ConsumeSkb
    };
    let detail = HookDetail {
        location,
        reason,
        verdict: 0,
    };
    observe_skb(skb, hook, Position::Only, event_kind, detail);
}

/// `skb:skb_copy_datagram_iovec(const struct sk_buff *skb, int len)`: a reader of the socket
/// received the packet's data.
#[btf_tracepoint(function = "skb_copy_datagram_iovec")]
pub fn tracer_socket_read(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    let len: i32 = ctx.arg(1);
    let detail = HookDetail {
        verdict: len as u32,
        ..HookDetail::default()
    };
    observe_skb(
        ctx.arg(0),
        Hook::Socket,
        Position::Only,
        kind::SIGHTING,
        detail,
    );
    0
}

/// `tcp:tcp_send_reset(const struct sock *sk, const struct sk_buff *skb, enum sk_rst_reason)`:
/// `skb` is the segment that provoked the reset (none for a reset the socket decided on).
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tracer_tcp_send_reset(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    send_reset(ctx.arg(0), ctx.arg(1), ctx.arg(2));
    0
}

/// `tcp:tcp_send_reset(const struct sock *sk, const struct sk_buff *skb)` before 6.10.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tracer_tcp_send_reset_2(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    send_reset(ctx.arg(0), ctx.arg(1), 0);
    0
}

#[inline(always)]
fn send_reset(sk: u64, skb: u64, reason: u32) {
    let detail = HookDetail {
        reason,
        verdict: tcp_event::SEND_RESET,
        ..HookDetail::default()
    };
    if skb != 0 {
        observe_skb(skb, Hook::Tcp, Position::Only, kind::SIGHTING, detail);
    } else {
        observe_sock(sk, false, detail);
    }
}

/// `tcp:tcp_receive_reset(struct sock *sk)`: the socket accepted a reset from its peer.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tracer_tcp_receive_reset(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    let detail = HookDetail {
        verdict: tcp_event::RECEIVE_RESET,
        ..HookDetail::default()
    };
    observe_sock(ctx.arg(0), true, detail);
    0
}

/// `tcp:tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb, int err)`. The
/// skb sits on the write queue without built headers: the socket gives the addresses.
#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tracer_tcp_retransmit(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    let detail = HookDetail {
        verdict: tcp_event::RETRANSMIT,
        ..HookDetail::default()
    };
    observe_sock(ctx.arg(0), false, detail);
    0
}

/// `tcp:tcp_bad_csum(const struct sk_buff *skb)`.
#[btf_tracepoint(function = "tcp_bad_csum")]
pub fn tracer_tcp_bad_csum(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    let detail = HookDetail {
        verdict: tcp_event::BAD_CSUM,
        ..HookDetail::default()
    };
    observe_skb(
        ctx.arg(0),
        Hook::Tcp,
        Position::Only,
        kind::SIGHTING,
        detail,
    );
    0
}

/// `icmp:icmp_send(const struct sk_buff *skb, int type, int code)`: `skb` is the packet the
/// kernel answers with an ICMP error (port unreachable, fragmentation needed, ...).
#[btf_tracepoint(function = "icmp_send")]
pub fn tracer_icmp_send(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    let icmp_type: i32 = ctx.arg(1);
    let code: i32 = ctx.arg(2);
    let detail = HookDetail {
        verdict: ((icmp_type as u32 & 0xff) << 8) | (code as u32 & 0xff),
        ..HookDetail::default()
    };
    observe_skb(
        ctx.arg(0),
        Hook::IcmpSend,
        Position::Only,
        kind::SIGHTING,
        detail,
    );
    0
}

/// `fib:fib_table_lookup(u32 tb_id, const struct flowi4 *flp, const struct fib_nh_common *nhc,
/// int err)`: an IPv4 route decision. Only the chosen next hop's device tells the namespace,
/// so a failed lookup (no next hop) is reported only when namespaces are not filtered.
///
/// A received packet's lookup (unconnected sockets, forwarding) has no protocol or ports, and
/// the filter cannot judge it; it runs just after the packet's receive and PREROUTING hook on
/// this CPU, so where `netif_receive`, or netfilter's first program at PREROUTING where that
/// is linked, left a packet with these addresses alone, so is this.
#[btf_tracepoint(function = "fib_table_lookup")]
pub fn tracer_fib_lookup(ctx: BtfTracePointContext) -> i32 {
    if inert() {
        return 0;
    }
    let table: u32 = ctx.arg(0);
    let flp: u64 = ctx.arg(1);
    let nhc: u64 = ctx.arg(2);
    let err: i32 = ctx.arg(3);
    let l4_proto = read::<u8>(flp, offset!(fl4_proto)).unwrap_or(0);
    let saddr = read::<[u8; 4]>(flp, offset!(fl4_saddr)).unwrap_or_default();
    let daddr = read::<[u8; 4]>(flp, offset!(fl4_daddr)).unwrap_or_default();
    if l4_proto == 0 && left_alone_route(ipv4_pair(saddr, daddr)) {
        return 0;
    }
    let dev = field::<u64>(nhc, offset!(nhc_dev)).unwrap_or(0);
    let (ifindex, netns) = dev_identity::<Typed>(dev);
    if !netns_traced(netns) {
        return 0;
    }
    let mut packet = PacketSummary {
        l3_proto: ETH_P_IP,
        l4_proto,
        sport: u16::from_be(read::<u16>(flp, offset!(fl4_sport)).unwrap_or(0)),
        dport: u16::from_be(read::<u16>(flp, offset!(fl4_dport)).unwrap_or(0)),
        ..PacketSummary::default()
    };
    packet.saddr[..4].copy_from_slice(&saddr);
    packet.daddr[..4].copy_from_slice(&daddr);
    let site = Site {
        hook: Hook::FibLookup,
        position: Position::Only,
        kind: kind::SIGHTING,
        ifindex,
        netns: Netns::Known(netns),
        skb: 0,
        source: Source::None,
    };
    let detail = HookDetail {
        reason: table,
        verdict: err as u32,
        ..HookDetail::default()
    };
    report(&site, &packet, None, 0, detail);
    0
}

/// Reports the skb at `hook` if the trace wants it; the IPv4 addresses ([`ipv4_pair`]) of an
/// IPv4 packet of a traced namespace that it left alone, for that packet's route lookup.
#[inline(always)]
fn observe_skb(
    skb: u64,
    hook: Hook,
    position: Position,
    event_kind: u8,
    mut detail: HookDetail,
) -> Option<u64> {
    let info = skb_info(skb);
    let (ifindex, netns) = skb_identity(skb, &info);
    if !netns_traced(netns) {
        // An skb's end ends its following wherever it is: in a namespace the trace leaves
        // out, or one it no longer names (a fragment queue writes its tree node over skb->dev,
        // UDP a scratch value, with no socket). Left followed, the address passed to the next
        // packet built there, whose header-less events took over the old journey.
        if event_kind != kind::SIGHTING {
            forget(skb);
        }
        return None;
    }
    if event_kind != kind::SIGHTING && skb_data_sole(skb, info.head) {
        // Read here, in a traced namespace, not for every drop of the machine.
        detail.verdict = SOLE_END;
    }
    let mut packet = PacketSummary::default();
    // Unix and netlink sockets read and free their skbs through the same functions; those
    // carry no network packet (protocol 0) and their bytes are no headers: such an event
    // says only its skb, which ends a journey that skb is on and starts none.
    let no_packet = info.protocol == 0 && matches!(hook, Hook::Socket | Hook::ConsumeSkb);
    let l3_len = if no_packet {
        0
    } else {
        skb_summary(skb, &info, 0, hook, &mut packet)
    };
    let site = Site {
        hook,
        position,
        kind: event_kind,
        ifindex,
        netns: Netns::Known(netns),
        skb,
        source: Source::Skb(skb),
    };
    let mut eth = L2Bytes::new();
    let l2_len = if hook == Hook::NetifReceive && config!(filter_l2) != 0 {
        tap_frame(skb, &info, &mut eth.0).unwrap_or(0)
    } else {
        0
    };
    let l2 = (l2_len > 0).then_some(L2 {
        bytes: &eth,
        len: l2_len,
    });
    let reported = if hook == Hook::NetifReceive {
        report_without_tunnels(&site, &packet, l2, l3_len, detail)
    } else {
        report(&site, &packet, l2, l3_len, detail)
    };
    if event_kind != kind::SIGHTING {
        // Freed: stop following it (only skbs of traced namespaces can be followed).
        forget(skb);
    }
    let (s, d) = (&packet.saddr, &packet.daddr);
    (!reported && packet.l3_proto == ETH_P_IP)
        .then(|| ipv4_pair([s[0], s[1], s[2], s[3]], [d[0], d[1], d[2], d[3]]))
}

/// The link-layer header of a received skb as the taps will see it, for the Ethernet filter
/// program, as tc and XDP run it: `netif_receive_skb` fires before the kernel takes the outer
/// VLAN tag off, and the raw-IP program cannot see what tcpdump's sees there (an inner tag of
/// a QinQ frame, say). `None` where no Ethernet header ends at the network header (a tun
/// device, three tags): the raw-IP program decides then.
#[inline(always)]
fn tap_frame(skb: u64, info: &SkbInfo, eth: &mut [u8; L2_LEN]) -> Option<usize> {
    let mac = field::<u16>(skb, offset!(skb_mac_header))?;
    let network = field::<u16>(skb, offset!(skb_network_header))?;
    let len = network.checked_sub(mac)? as usize;
    if info.head == 0 || mac == u16::MAX || !(ETH_HLEN..=L2_LEN).contains(&len) {
        return None;
    }
    *eth = read::<[u8; L2_LEN]>(info.head + mac as u64, 0)?;
    let (l3_offset, _, _) = parse_l2(eth, len)?;
    (l3_offset == len).then(|| untag_outer(eth, l3_offset))
}

/// A TCP event that only has the socket.
#[inline(always)]
fn observe_sock(sk: u64, incoming: bool, detail: HookDetail) {
    let netns = sock_netns(sk);
    if !netns_traced(netns) {
        return;
    }
    let mut packet = PacketSummary::default();
    sock_summary(sk, incoming, &mut packet);
    let site = Site {
        hook: Hook::Tcp,
        position: Position::Only,
        kind: kind::SIGHTING,
        ifindex: 0,
        netns: Netns::Known(netns),
        skb: 0,
        source: Source::None,
    };
    report(&site, &packet, None, 0, detail);
}
