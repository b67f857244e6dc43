//! Netfilter hooks (`BPF_PROG_TYPE_NETFILTER`, 6.4+): PREROUTING, LOCAL_IN, FORWARD,
//! LOCAL_OUT and POSTROUTING for IPv4 and IPv6. Two programs, each linked to all ten hooks:
//! one at the first priority, one at the last, so that a drop by any rule of iptables,
//! nftables or conntrack at that hook falls between the two sightings.
//!
//! aya 0.14 has no netfilter program type: the functions live in a section aya parses as a
//! classifier (so that its map relocations cover them) and `tracer`'s `nf_link` module loads
//! them with the right type and links them.
//!
//! Before 6.4 there are no such links. Where the kernel allows BPF trampolines (most
//! distribution kernels; not locked-down ones), an fentry and an fexit program on
//! `nf_hook_slow` take their place: it runs every hook function of one hook for one packet,
//! so its entry is "first" and its return with NF_ACCEPT is "last". A drop inside frees the
//! skb before the return, and `kfree_skb` reports it, between the two as with the links.

use core::ffi::c_void;

use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};

use tracer_common::{
    event::{kind, HookDetail, PacketSummary},
    hook::{netfilter_hook, Hook, Position},
    parse::{ETH_P_IP, ETH_P_IPV6},
};

use crate::{
    emit::{netns_traced, report, Site, Source},
    kernel::{dev_ifindex, field, skb_info, skb_summary, Typed},
    maps::offset,
};

const NF_ACCEPT: i32 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

#[unsafe(no_mangle)]
#[unsafe(link_section = "classifier/netfilter")]
pub fn tracer_nf_first(ctx: *mut c_void) -> i32 {
    observe(ctx, Position::First);
    NF_ACCEPT
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "classifier/netfilter")]
pub fn tracer_nf_last(ctx: *mut c_void) -> i32 {
    observe(ctx, Position::Last);
    NF_ACCEPT
}

/// `int nf_hook_slow(struct sk_buff *skb, struct nf_hook_state *state,
/// const struct nf_hook_entries *e, unsigned int s)`, before the hook functions run.
/// Needs BPF trampolines (`CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS`, not locked down).
#[fentry(function = "nf_hook_slow")]
pub fn tracer_nf_hook_entry(ctx: FEntryContext) -> i32 {
    observe_state(ctx.arg(1), ctx.arg(0), Position::First);
    0
}

/// The same function's return: 1 (NF_ACCEPT) lets the packet on; anything else means a hook
/// function took it (dropped and already freed, stolen or queued), so the skb is not read.
#[fexit(function = "nf_hook_slow")]
pub fn tracer_nf_hook_exit(ctx: FExitContext) -> i32 {
    // The return value follows the four arguments in the context.
    let verdict: i32 = ctx.arg(4);
    if verdict == NF_ACCEPT {
        observe_state(ctx.arg(1), ctx.arg(0), Position::Last);
    }
    0
}

/// `ctx` is a `struct bpf_nf_ctx { const struct nf_hook_state *state; struct sk_buff *skb; }`.
#[inline(always)]
fn observe(ctx: *mut c_void, position: Position) {
    // SAFETY: `ctx` is this program's context, the two pointer-sized words above; the
    // verifier checks each context load's offset and size, and these two are allowed.
    let (state, skb) = unsafe {
        let fields = ctx as *const u64;
        (*fields, *fields.add(1))
    };
    observe_state(state, skb, position);
}

#[inline(always)]
fn observe_state(state: u64, skb: u64, position: Position) {
    let Some(hook) = field::<u8>(state, offset!(nf_state_hook)).and_then(netfilter_hook) else {
        return;
    };
    let l3_hint = match field::<u8>(state, offset!(nf_state_pf)).unwrap_or(0) {
        NFPROTO_IPV4 => ETH_P_IP,
        NFPROTO_IPV6 => ETH_P_IPV6,
        _ => return,
    };
    // The device the hook is about: the input one on the way in, the output one on the way
    // out and, at FORWARD, the output one (the input one was seen at PREROUTING).
    let dev_offset = match hook {
        Hook::NfPrerouting | Hook::NfLocalIn => offset!(nf_state_in),
        _ => offset!(nf_state_out),
    };
    // Only the ifindex: the namespace is the hook's own (`state->net`), read below.
    let ifindex = dev_ifindex::<Typed>(field::<u64>(state, dev_offset).unwrap_or(0));
    let net = field::<u64>(state, offset!(nf_state_net)).unwrap_or(0);
    let netns = field::<u32>(net, offset!(net_inum)).unwrap_or(0);
    // Links exist only in traced namespaces; the trampolines fire in every one.
    if !netns_traced(netns) {
        return;
    }
    let info = skb_info(skb);
    let mut packet = PacketSummary::default();
    let l3_len = skb_summary(skb, &info, l3_hint, hook, &mut packet);
    let site = Site {
        hook,
        position,
        kind: kind::SIGHTING,
        ifindex,
        netns,
        skb,
        source: Source::Skb(skb),
    };
    report(&site, &packet, None, l3_len, HookDetail::default());
}
