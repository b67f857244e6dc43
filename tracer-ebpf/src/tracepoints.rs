//! Typed (`tp_btf`) tracepoints: global, so events carry the device's namespace and are
//! filtered by it. Need BTF (`CONFIG_DEBUG_INFO_BTF`, 5.5+) but no tracefs, so they work
//! inside `ip netns exec`, where `/sys` is remounted.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use tracer_common::{
    event::{kind, HookDetail, PacketSummary},
    hook::{Hook, Position},
    parse::{parse_l3, ETH_P_IP, ETH_P_IPV6, HDR_LEN},
};

use crate::{
    emit::{emit, netns_traced, packet_wanted, Site},
    kernel::{dev_identity, skb_info, skb_l3_headers},
};

/// `net:netif_receive_skb(struct sk_buff *skb)`: the receive tap-side witness.
#[btf_tracepoint(function = "netif_receive_skb")]
pub fn tracer_netif_receive(ctx: BtfTracePointContext) -> i32 {
    let skb: u64 = ctx.arg(0);
    observe_skb(
        skb,
        Hook::NetifReceive,
        Position::Only,
        kind::SIGHTING,
        HookDetail::default(),
    );
    0
}

/// `net:net_dev_start_xmit(struct sk_buff *skb, struct net_device *dev)`: just after the
/// transmit taps, as the driver is handed the packet.
#[btf_tracepoint(function = "net_dev_start_xmit")]
pub fn tracer_dev_start_xmit(ctx: BtfTracePointContext) -> i32 {
    let skb: u64 = ctx.arg(0);
    observe_skb(
        skb,
        Hook::DevXmit,
        Position::First,
        kind::SIGHTING,
        HookDetail::default(),
    );
    0
}

/// `skb:kfree_skb(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)`.
/// The reason argument exists since 5.17; its values differ between kernels (decoded in
/// userspace from BTF).
#[btf_tracepoint(function = "kfree_skb")]
pub fn tracer_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    let skb: u64 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u32 = ctx.arg(2);
    let detail = HookDetail {
        location,
        reason,
        verdict: 0,
    };
    observe_skb(skb, Hook::KfreeSkb, Position::Only, kind::DROP, detail);
    0
}

#[inline(always)]
fn observe_skb(skb: u64, hook: Hook, position: Position, event_kind: u8, detail: HookDetail) {
    let info = skb_info(skb);
    let (ifindex, netns) = dev_identity(info.dev);
    if !netns_traced(netns) {
        return;
    }
    let mut packet = PacketSummary {
        pkt_len: info.len,
        mark: info.mark,
        gso_segs: info.gso_segs,
        ..PacketSummary::default()
    };
    let mut buf = [0u8; HDR_LEN];
    let valid = skb_l3_headers(skb, &info, &mut buf);
    let l3_proto = match info.protocol {
        ETH_P_IP | ETH_P_IPV6 => info.protocol,
        // Above the IP layer skb->protocol may not be set yet: trust the version nibble.
        _ => match buf[0] >> 4 {
            4 => ETH_P_IP,
            6 => ETH_P_IPV6,
            _ => 0,
        },
    };
    if valid > 0 {
        parse_l3(&buf, valid, l3_proto, &mut packet);
    }
    if !packet_wanted(&packet) {
        return;
    }
    let site = Site {
        hook,
        position,
        kind: event_kind,
        ifindex,
        netns,
        skb,
    };
    emit(&site, &packet, detail);
}
