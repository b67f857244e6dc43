//! tc ingress (after the receive taps) and tc egress (before the transmit taps).
//!
//! Each direction has a first and a last program (tcx links ordered before and after every
//! other tcx program, 6.6+), so that a drop by another tc program falls between two sightings.
//! The programs return "next" (TCX_NEXT / TC_ACT_UNSPEC): the rest decides the packet's fate.

use aya_ebpf::{macros::classifier, programs::TcContext};
use tracer_common::{
    config::{TC_ALONE_EGRESS, TC_ALONE_INGRESS},
    event::{kind, HookDetail, PacketSummary},
    hook::{Hook, Position, LAST_IMPLIED},
    parse::{parse_l2, parse_l3},
};

use crate::{
    emit::{report, L2Bytes, Site, Source, L2},
    judged,
    kernel::{scratch, skb_load, Netns},
    maps::{config, inert, TC_ALONE, TC_SETTLED},
};

/// TC_ACT_UNSPEC, which is also TCX_NEXT: continue with the next program.
const TC_NEXT: i32 = -1;

#[classifier]
pub fn tracer_tc_ingress_first(ctx: TcContext) -> i32 {
    if inert() {
        return TC_NEXT;
    }
    first(&ctx, Hook::TcIngress);
    TC_NEXT
}

#[classifier]
pub fn tracer_tc_ingress_last(ctx: TcContext) -> i32 {
    if inert() {
        return TC_NEXT;
    }
    last(&ctx, Hook::TcIngress);
    TC_NEXT
}

#[classifier]
pub fn tracer_tc_egress_first(ctx: TcContext) -> i32 {
    if inert() {
        return TC_NEXT;
    }
    first(&ctx, Hook::TcEgress);
    TC_NEXT
}

#[classifier]
pub fn tracer_tc_egress_last(ctx: TcContext) -> i32 {
    if inert() {
        return TC_NEXT;
    }
    last(&ctx, Hook::TcEgress);
    TC_NEXT
}

#[inline(always)]
fn first(ctx: &TcContext, hook: Hook) {
    let skb = ctx.skb.skb as u64;
    // Where the tracer's two tcx programs are the device's only ones in this direction,
    // nothing runs between them: the last one would see the packet as this one does. It then
    // sends nothing, and this one's event says so (a packet this one left alone, the filter
    // would leave alone again; as netfilter's programs do, see `netfilter`).
    let alone = tc_alone(ctx, hook);
    if rejected_just_before(ctx, hook) {
        remember_settled(skb, hook, alone);
        return;
    }
    let detail = HookDetail {
        verdict: if alone { LAST_IMPLIED } else { 0 },
        ..HookDetail::default()
    };
    observe(ctx, hook, Position::First, detail);
    remember_settled(skb, hook, alone);
}

/// Whether the point just before tc on the packet's path, on this CPU, left it alone (see
/// `judged`): `netif_receive` before tc ingress, in the same kernel function (nothing between
/// them changes a packet but a VLAN tag taken off or another device's turn, which change its
/// length or device); POSTROUTING before tc egress (the neighbour's Ethernet header added in
/// between, which only a filter on link-layer fields reads: netfilter judged with the raw-IP
/// form of the filter, which agrees with the Ethernet one where both exist, and rejected
/// everything where there is none).
#[inline(always)]
fn rejected_just_before(ctx: &TcContext, hook: Hook) -> bool {
    let after = match hook {
        Hook::TcIngress => judged::hooks(&[Hook::NetifReceive]),
        _ if config!(filter_l3) != 0 => judged::hooks(&[Hook::NfPostrouting]),
        _ => return false,
    };
    // SAFETY: the program's `__sk_buff` context; one field the verifier allows it to load.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    judged::rejected_just_now(after, hook, ctx.skb.skb as u64, ifindex, ctx.len())
}

#[inline(always)]
fn last(ctx: &TcContext, hook: Hook) {
    if !settled_just_now(ctx.skb.skb as u64, hook) {
        observe(ctx, hook, Position::Last, HookDetail::default());
    }
}

/// Notes on this CPU whether tc's first program settled `skb`'s pass at `hook` for the last
/// one (`alone`: nothing sits between them). The last program of that direction runs next for
/// it on this CPU (tcx runs a device's programs back to back, with bottom halves off), unless
/// a program between them ends the run.
#[inline(always)]
fn remember_settled(skb: u64, hook: Hook, alone: bool) {
    let Some(entry) = TC_SETTLED.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the only slot on this CPU, from a successful lookup, valid for the run; two
    // integers are written. A run interrupting this one may rewrite it: the last program then
    // finds another packet there and judges its own.
    unsafe {
        (*entry).skb = skb;
        (*entry).hook = if alone { hook as u32 } else { 0 };
    }
}

/// Whether the first program at `hook`, the last tc program to run on this CPU, settled
/// `skb`'s pass: the last one has nothing to add.
#[inline(always)]
fn settled_just_now(skb: u64, hook: Hook) -> bool {
    let Some(entry) = TC_SETTLED.get_ptr(0) else {
        return false;
    };
    // SAFETY: as in `remember_settled`; two integers are read.
    let (was_skb, was_hook) = unsafe { ((*entry).skb, (*entry).hook) };
    was_skb == skb && was_hook == hook as u32
}

/// Whether the tracer's two tcx programs are side by side in the direction of `hook` on the
/// packet's device, as userspace found them once both were attached (`TC_ALONE`). They stay
/// so: a tcx program attached later goes before the first one or after the last one unless
/// it names one of them as its neighbour. (Counting the device's programs here instead took
/// three probe reads, a third of a rejected packet's run.) Never with cls_bpf filters (no
/// tcx, before 6.6), where another tool's filters may sit between the tracer's.
#[inline(always)]
fn tc_alone(ctx: &TcContext, hook: Hook) -> bool {
    // SAFETY: the program's `__sk_buff` context; one field the verifier allows it to load.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let bit = match hook {
        Hook::TcIngress => TC_ALONE_INGRESS,
        _ => TC_ALONE_EGRESS,
    };
    TC_ALONE
        .get(ifindex)
        .is_some_and(|directions| directions & bit != 0)
}

/// Reports the packet at this hook if the trace wants it; whether it did.
#[inline(always)]
fn observe(ctx: &TcContext, hook: Hook, position: Position, detail: HookDetail) -> bool {
    let mut eth = L2Bytes::new();
    let raw = ctx.skb.skb.cast();
    let Some(eth_len) = skb_load(raw, ctx.len(), 0, &mut eth.0) else {
        return false;
    };
    let Some((l3_offset, l3_proto, vlan_in_frame)) = parse_l2(&eth.0, eth_len) else {
        return false;
    };
    // The context of a tc program is the `struct sk_buff` itself, seen through `__sk_buff`:
    // mark, GSO segments, ifindex and the VLAN tag are plain loads there, not helper calls.
    // Only the namespace needs the real skb (skb->dev->nd_net), read if the event is written.
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
        return false;
    };
    let l3_len = skb_load(raw, ctx.len(), l3_offset, buf).unwrap_or(0);
    if l3_len > 0 {
        parse_l3(buf, l3_len, l3_proto, &mut packet);
    }
    let site = Site {
        hook,
        position,
        kind: kind::SIGHTING,
        ifindex,
        netns: Netns::OfSkb(skb),
        skb,
        source: Source::Tc(raw),
    };
    let l2 = L2 {
        bytes: &eth,
        len: l3_offset,
    };
    report(&site, &packet, Some(l2), l3_len, detail)
}
