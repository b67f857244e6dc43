//! tc ingress (after the receive taps) and tc egress (before the transmit taps).
//!
//! Attached with tcx links (6.6+) or, on older kernels, a clsact qdisc. The programs return
//! "next" (TCX_NEXT / TC_ACT_UNSPEC): the rest of the chain decides the packet's fate.

use aya_ebpf::{macros::classifier, programs::TcContext};
use tracer_common::{
    event::{kind, HookDetail, PacketSummary},
    hook::{Hook, Position},
    parse::{parse_l2, parse_l3, HDR_LEN},
};

use crate::{
    emit::{emit, packet_wanted, Site},
    kernel::{dev_identity, skb_info, skb_load},
};

/// TC_ACT_UNSPEC, which is also TCX_NEXT: continue with the next program.
const TC_NEXT: i32 = -1;

#[classifier]
pub fn tracer_tc_ingress(ctx: TcContext) -> i32 {
    observe(&ctx, Hook::TcIngress);
    TC_NEXT
}

#[classifier]
pub fn tracer_tc_egress(ctx: TcContext) -> i32 {
    observe(&ctx, Hook::TcEgress);
    TC_NEXT
}

#[inline(always)]
fn observe(ctx: &TcContext, hook: Hook) {
    let mut eth = [0u8; 22];
    let raw = ctx.skb.skb.cast();
    let Some(eth_len) = skb_load(raw, ctx.len(), 0, &mut eth) else {
        return;
    };
    let Some((l3_offset, l3_proto, vlan)) = parse_l2(&eth, eth_len) else {
        return;
    };
    // The context of a tc program is the `struct sk_buff` itself.
    let skb = ctx.skb.skb as u64;
    let info = skb_info(skb);
    let mut packet = PacketSummary {
        vlan,
        pkt_len: ctx.len(),
        mark: info.mark,
        gso_segs: info.gso_segs,
        ..PacketSummary::default()
    };
    let mut buf = [0u8; HDR_LEN];
    if let Some(valid) = skb_load(raw, ctx.len(), l3_offset, &mut buf) {
        parse_l3(&buf, valid, l3_proto, &mut packet);
    }
    if !packet_wanted(&packet) {
        return;
    }
    let (ifindex, netns) = dev_identity(info.dev);
    let site = Site {
        hook,
        position: Position::Only,
        kind: kind::SIGHTING,
        ifindex,
        netns,
        skb,
    };
    emit(&site, &packet, HookDetail::default());
}
