//! tc ingress (after the receive taps) and tc egress (before the transmit taps).
//!
//! Each direction has a first and a last program (tcx links ordered before and after every
//! other tcx program, 6.6+), so that a drop by another tc program falls between two sightings.
//! The programs return "next" (TCX_NEXT / TC_ACT_UNSPEC): the rest decides the packet's fate.

use aya_ebpf::{macros::classifier, programs::TcContext};
use tracer_common::{
    event::{kind, HookDetail, PacketSummary},
    hook::{Hook, Position},
    parse::{parse_l2, parse_l3, L2_LEN},
};

use crate::{
    emit::{report, Site, Source, L2},
    kernel::{dev_netns, read, scratch, skb_load, Probed},
    maps::offset,
};

/// TC_ACT_UNSPEC, which is also TCX_NEXT: continue with the next program.
const TC_NEXT: i32 = -1;

#[classifier]
pub fn tracer_tc_ingress_first(ctx: TcContext) -> i32 {
    observe(&ctx, Hook::TcIngress, Position::First);
    TC_NEXT
}

#[classifier]
pub fn tracer_tc_ingress_last(ctx: TcContext) -> i32 {
    observe(&ctx, Hook::TcIngress, Position::Last);
    TC_NEXT
}

#[classifier]
pub fn tracer_tc_egress_first(ctx: TcContext) -> i32 {
    observe(&ctx, Hook::TcEgress, Position::First);
    TC_NEXT
}

#[classifier]
pub fn tracer_tc_egress_last(ctx: TcContext) -> i32 {
    observe(&ctx, Hook::TcEgress, Position::Last);
    TC_NEXT
}

#[inline(always)]
fn observe(ctx: &TcContext, hook: Hook, position: Position) {
    let mut eth = [0u8; L2_LEN];
    let raw = ctx.skb.skb.cast();
    let Some(eth_len) = skb_load(raw, ctx.len(), 0, &mut eth) else {
        return;
    };
    let Some((l3_offset, l3_proto, vlan_in_frame)) = parse_l2(&eth, eth_len) else {
        return;
    };
    // The context of a tc program is the `struct sk_buff` itself, seen through `__sk_buff`:
    // mark, GSO segments, ifindex and the VLAN tag are plain loads there, not helper calls.
    // Only the namespace needs the real skb (skb->dev->nd_net).
    let skb = ctx.skb.skb as u64;
    // SAFETY: `ctx.skb.skb` is this program's context, a `__sk_buff` the verifier lets it read
    // field by field (it rewrites each load to the real skb's field); the reference is used
    // only for these loads.
    let (mark, gso_segs, ifindex, vlan_present, vlan_tci) = unsafe {
        let view = &*ctx.skb.skb;
        (
            view.mark,
            view.gso_segs as u16,
            view.ifindex,
            view.vlan_present,
            view.vlan_tci,
        )
    };
    // On receive the kernel has taken the outermost tag off the frame before tc (software
    // untagging in __netif_receive_skb_core, or the NIC): it is in skb->vlan_tci, and any tag
    // left in the frame is an inner one. A vlan device with offload does the same on transmit.
    let vlan = if vlan_present != 0 {
        (vlan_tci & 0x0fff) as u16
    } else {
        vlan_in_frame
    };
    let mut packet = PacketSummary {
        vlan,
        pkt_len: ctx.len(),
        mark,
        gso_segs,
        ..PacketSummary::default()
    };
    let Some(buf) = scratch(hook) else {
        return;
    };
    let l3_len = skb_load(raw, ctx.len(), l3_offset, buf).unwrap_or(0);
    if l3_len > 0 {
        parse_l3(buf, l3_len, l3_proto, &mut packet);
    }
    let netns = dev_netns::<Probed>(read::<u64>(skb, offset!(skb_dev)).unwrap_or(0));
    let site = Site {
        hook,
        position,
        kind: kind::SIGHTING,
        ifindex,
        netns,
        skb,
        source: Source::Tc(raw),
    };
    let l2 = L2 {
        bytes: &eth,
        len: l3_offset,
    };
    report(&site, &packet, Some(l2), l3_len, HookDetail::default());
}
