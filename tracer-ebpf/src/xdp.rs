//! Driver receive: our own XDP program on each traced interface, before any skb exists.
//!
//! Needs XDP on the driver (native on veth since 4.19; generic XDP elsewhere). Only one XDP
//! program fits on an interface: where another one is attached, userspace leaves it alone.
//! Multi-buffer aware (`xdp.frags`, 5.18+): without it a veth refuses XDP while its peer's MTU
//! exceeds a page, and a driver with jumbo frames would refuse it too.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::xdp,
    programs::XdpContext,
};
use tracer_common::{
    event::{kind, HookDetail, PacketSummary},
    hook::{Hook, Position},
    parse::{parse_l2, parse_l3, untag_outer, HDR_LEN, L2_LEN},
};

use crate::{
    emit::{report, L2Bytes, Site, Source, L2},
    kernel::{helper_len, scratch, Netns},
    maps::inert,
};

#[xdp(frags)]
pub fn tracer_xdp(ctx: XdpContext) -> u32 {
    if inert() {
        return xdp_action::XDP_PASS;
    }
    observe(&ctx);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn observe(ctx: &XdpContext) {
    // The whole frame: data_end - data is only its first buffer when it spans several.
    // SAFETY: `ctx.ctx` is the `xdp_md` this program was called with; no other precondition.
    let frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    let mut eth = L2Bytes::new();
    let eth_len = if frame_len < L2_LEN {
        frame_len
    } else {
        L2_LEN
    };
    if load(ctx, 0, &mut eth.0, eth_len).is_none() {
        return;
    }
    let Some((l3_offset, l3_proto, vlan)) = parse_l2(&eth.0, eth_len) else {
        return;
    };
    let mut packet = PacketSummary {
        vlan,
        pkt_len: frame_len as u32,
        ..PacketSummary::default()
    };
    let Some(buf) = scratch(Hook::Xdp) else {
        return;
    };
    let avail = frame_len.saturating_sub(l3_offset);
    let valid = if avail < HDR_LEN { avail } else { HDR_LEN };
    let l3_len = if valid > 0 && load(ctx, l3_offset, buf, valid).is_some() {
        parse_l3(buf, valid, l3_proto, &mut packet);
        valid
    } else {
        0
    };
    let site = Site {
        hook: Hook::Xdp,
        position: Position::Only,
        kind: kind::SIGHTING,
        ifindex: ctx.ingress_ifindex() as u32,
        netns: Netns::OfXdp(ctx.ctx as u64),
        skb: 0,
        source: Source::Xdp(ctx.ctx.cast()),
    };
    // The filter sees the frame as tcpdump's will, after the kernel took its outer tag off.
    let l2_len = untag_outer(&mut eth.0, l3_offset);
    let l2 = L2 {
        bytes: &eth,
        len: l2_len,
    };
    report(&site, &packet, Some(l2), l3_len, HookDetail::default());
}

/// Copies `len` bytes at `offset` of the frame (`len` at most the buffer's size).
#[inline(always)]
fn load<const N: usize>(
    ctx: &XdpContext,
    offset: usize,
    buf: &mut [u8; N],
    len: usize,
) -> Option<()> {
    let len = helper_len::<N>(len)?;
    // SAFETY: `ctx.ctx` is this program's context, `buf` holds `N` bytes and `1 <= len <= N`
    // (`helper_len`); the helper checks `offset + len` against the frame.
    let ret = unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, buf.as_mut_ptr().cast(), len) };
    (ret == 0).then_some(())
}
