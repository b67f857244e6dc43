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
    hook::{netfilter_hook, Hook, Position, LAST_IMPLIED},
    nf_census::hook_bit,
    parse::{ETH_P_IP, ETH_P_IPV6},
};

use crate::{
    emit::{netns_traced, report, Site, Source},
    judged,
    kernel::{dev_ifindex, field, skb_info, skb_summary, Netns, Typed},
    maps::{inert, offset, NF_FIRST_ONLY, NF_SETTLED},
};

const NF_ACCEPT: i32 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

#[unsafe(no_mangle)]
#[unsafe(link_section = "classifier/netfilter")]
pub fn tracer_nf_first(ctx: *mut c_void) -> i32 {
    if inert() {
        return NF_ACCEPT;
    }
    let (state, skb) = context(ctx);
    // Where the tracer's programs are the hook's only functions (no rule, no conntrack, no
    // other program between them), the packet reaches the last one as this one leaves it:
    // the last one sends nothing, and this one's event says so. (A packet this one left
    // alone, the filter would leave alone again: most packets of a trace whose filter wants
    // few pass the last program at a fraction of the cost.)
    let alone = alone(state);
    if rejected_just_before(state, skb) {
        // The addresses a route lookup from here on is judged by stay as noted before: for a
        // received packet, `netif_receive` noted this one's.
        remember_pass(state, skb, alone);
        return NF_ACCEPT;
    }
    let seen = observe_state(state, skb, Position::First, alone, Reach::TracedNetns);
    remember_pass(state, skb, alone);
    remember_left_alone_route((!seen.reported).then_some(seen.ipv4));
    NF_ACCEPT
}

/// Whether the point just before this hook on the packet's path, on this CPU, left it alone
/// (see `judged`): tc ingress before PREROUTING, that or PREROUTING before LOCAL_IN, LOCAL_OUT
/// or FORWARD before POSTROUTING. Between them the IP layer changes nothing the filter reads
/// (FORWARD comes after the TTL's decrement); a packet reassembled from fragments, or sent by
/// another route, has another length or device.
#[inline(always)]
fn rejected_just_before(state: u64, skb: u64) -> bool {
    let hook = field::<u8>(state, offset!(nf_state_hook)).and_then(netfilter_hook);
    let (hook, after, dev_offset) = match hook {
        Some(Hook::NfPrerouting) => (
            Hook::NfPrerouting,
            judged::hooks(&[Hook::TcIngress]),
            offset!(nf_state_in),
        ),
        Some(Hook::NfLocalIn) => (
            Hook::NfLocalIn,
            judged::hooks(&[Hook::TcIngress, Hook::NfPrerouting]),
            offset!(nf_state_in),
        ),
        Some(Hook::NfPostrouting) => (
            Hook::NfPostrouting,
            judged::hooks(&[Hook::NfLocalOut, Hook::NfForward]),
            offset!(nf_state_out),
        ),
        _ => return false,
    };
    let ifindex = dev_ifindex::<Typed>(field::<u64>(state, dev_offset).unwrap_or(0));
    let len = field::<u32>(skb, offset!(skb_len)).unwrap_or(0);
    judged::rejected_just_now(after, hook, skb, ifindex, len)
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "classifier/netfilter")]
pub fn tracer_nf_last(ctx: *mut c_void) -> i32 {
    if inert() {
        return NF_ACCEPT;
    }
    let (state, skb) = context(ctx);
    if settled_just_now(state, skb) {
        return NF_ACCEPT;
    }
    if observe_state(state, skb, Position::Last, false, Reach::TracedNetns).reported {
        // A rule between the two made it one the trace wants (a port rewritten, say): its
        // route lookup is to be reported with it.
        forget_left_alone_route();
    }
    NF_ACCEPT
}

/// `ctx` is a `struct bpf_nf_ctx { const struct nf_hook_state *state; struct sk_buff *skb; }`:
/// (state, skb).
#[inline(always)]
fn context(ctx: *mut c_void) -> (u64, u64) {
    // SAFETY: `ctx` is this program's context, the two pointer-sized words above; the
    // verifier checks each context load's offset and size, and these two are allowed.
    unsafe {
        let fields = ctx as *const u64;
        (*fields, *fields.add(1))
    }
}

/// Notes on this CPU the pass of `skb` through a hook (`state`: `nf_hook_state` is built once
/// per packet and hook, and all the hook's functions get it) and whether the first program
/// settled it for the last one (`alone`: nothing sits between them). The last program of the
/// hook runs next for it on this CPU unless something between them takes the packet, or
/// another packet's hook interrupts, which overwrites the slot.
#[inline(always)]
fn remember_pass(state: u64, skb: u64, alone: bool) {
    let Some(entry) = NF_SETTLED.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the only slot on this CPU, from a successful lookup, valid for the run. A
    // program interrupting this one may rewrite it; the last program then finds another pass
    // there and judges its packet itself.
    unsafe {
        (*entry).skb = skb;
        (*entry).state = if alone { state } else { 0 };
    }
}

/// Whether the first program of this pass through the hook (this `state`), the last netfilter
/// program to run on this CPU, settled it: the last one has nothing to add.
#[inline(always)]
fn settled_just_now(state: u64, skb: u64) -> bool {
    let Some(entry) = NF_SETTLED.get_ptr(0) else {
        return false;
    };
    // SAFETY: as in `remember_pass`; two integers are read.
    let (was_skb, was_state) = unsafe { ((*entry).skb, (*entry).state) };
    was_skb == skb && was_state != 0 && was_state == state
}

/// Whether the packet netfilter last left alone on this CPU had addresses `ipv4` (source and
/// destination as in [`ipv4_pair`]) or their reverse, and no other packet's receive began
/// since: the route lookup for a received packet runs just after its PREROUTING hook, on the
/// same CPU, with no protocol or ports to judge it by (and the source check's lookup has the
/// two addresses swapped).
#[inline(always)]
pub fn left_alone_route(ipv4: u64) -> bool {
    let Some(entry) = NF_SETTLED.get_ptr(0) else {
        return false;
    };
    // SAFETY: as in `remember_pass`; an integer is read.
    let was = unsafe { (*entry).ipv4 };
    was != 0 && (was == ipv4 || was == ipv4.rotate_left(32))
}

/// Forgets the packet left alone: a rule made it one the trace wants.
#[inline(always)]
pub fn forget_left_alone_route() {
    remember_left_alone_route(None);
}

/// Notes the addresses of a packet `netif_receive` left alone (`None`: it reported the packet,
/// or it was no IPv4 packet): its receive begins on this CPU, and a route lookup from here on
/// is that packet's, judged so where no PREROUTING link judges it again (an ARP request's is
/// not an earlier packet's).
#[inline(always)]
pub fn remember_left_alone_route(ipv4: Option<u64>) {
    if let Some(entry) = NF_SETTLED.get_ptr_mut(0) {
        // SAFETY: as in `remember_pass`.
        unsafe { (*entry).ipv4 = ipv4.unwrap_or(0) };
    }
}

/// Source and destination IPv4 addresses in one word, source in the high half (as the packet
/// carries them; only compared).
#[inline(always)]
pub fn ipv4_pair(saddr: [u8; 4], daddr: [u8; 4]) -> u64 {
    ((u32::from_ne_bytes(saddr) as u64) << 32) | u32::from_ne_bytes(daddr) as u64
}

/// Whether the tracer's programs are the only functions of the hook `state` is about: the
/// first alone (where nothing else was registered the tracer links only it, see
/// `NF_FIRST_ONLY`), or the first and the last. The count is the hook's now: a rule deleted
/// in the microseconds since `nf_hook_slow` took its entries for this pass could still run,
/// and would fall between points said to be one.
#[inline(always)]
fn alone(state: u64) -> bool {
    let (Some(net), Some(pf), Some(hook)) = (
        field::<u64>(state, offset!(nf_state_net)),
        field::<u8>(state, offset!(nf_state_pf)),
        field::<u8>(state, offset!(nf_state_hook)),
    ) else {
        return false;
    };
    match hook_functions(net, pf, hook) {
        Some(1) => true,
        // The first and the last, or the first and someone else's function (registered
        // since the tracer linked the first alone, and before it linked the last).
        Some(2) => !first_only(net, pf, hook),
        _ => false,
    }
}

/// Whether the tracer linked only its first program at this hook of namespace `net`.
#[inline(always)]
fn first_only(net: u64, pf: u8, hook: u8) -> bool {
    let inode = field::<u32>(net, offset!(net_inum)).unwrap_or(0);
    let Some(bit) = hook_bit(pf as u32, hook as u32) else {
        return false;
    };
    // SAFETY: the word is copied out at once; userspace replaces it whole (a map update), so
    // it reads as the old word or the new one.
    unsafe { NF_FIRST_ONLY.get(&inode) }.is_some_and(|hooks| hooks & bit != 0)
}

/// How many functions are registered at `hook` of family `pf` in namespace `net`
/// (`net->nf.hooks_ipv4[hook]->num_hook_entries`, or IPv6's); `None` where unknown.
#[inline(always)]
fn hook_functions(net: u64, pf: u8, hook: u8) -> Option<u16> {
    let hooks = match pf {
        NFPROTO_IPV4 => offset!(net_nf_hooks_ipv4),
        NFPROTO_IPV6 => offset!(net_nf_hooks_ipv6),
        _ => return None,
    };
    if hooks == u32::MAX {
        return None; // not in this kernel's BTF: the sums below would be no offset at all
    }
    // One constant offset per hook: the verifier refuses a typed load at a variable one.
    const POINTER: u32 = 8;
    let entries = match hook {
        0 => field::<u64>(net, hooks),
        1 => field::<u64>(net, hooks + POINTER),
        2 => field::<u64>(net, hooks + 2 * POINTER),
        3 => field::<u64>(net, hooks + 3 * POINTER),
        4 => field::<u64>(net, hooks + 4 * POINTER),
        _ => None,
    }?;
    field::<u16>(entries, offset!(nf_entries_num))
}

/// `int nf_hook_slow(struct sk_buff *skb, struct nf_hook_state *state,
/// const struct nf_hook_entries *e, unsigned int s)`, before the hook functions run.
/// Needs BPF trampolines (`CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS`, not locked down).
#[fentry(function = "nf_hook_slow")]
pub fn tracer_nf_hook_entry(ctx: FEntryContext) -> i32 {
    if inert() {
        return 0;
    }
    let (state, skb) = (ctx.arg(1), ctx.arg(0));
    // The exit program below sees the packet after every hook function: never implied.
    let seen = observe_state(state, skb, Position::First, false, Reach::EveryNetns);
    remember_pass(state, skb, false);
    remember_left_alone_route((!seen.reported).then_some(seen.ipv4));
    0
}

/// The same function's return: 1 (NF_ACCEPT) lets the packet on; anything else means a hook
/// function took it (dropped and already freed, stolen or queued), so the skb is not read.
#[fexit(function = "nf_hook_slow")]
pub fn tracer_nf_hook_exit(ctx: FExitContext) -> i32 {
    if inert() {
        return 0;
    }
    // The return value follows the four arguments in the context.
    let verdict: i32 = ctx.arg(4);
    if verdict == NF_ACCEPT {
        let (state, skb) = (ctx.arg(1), ctx.arg(0));
        if observe_state(state, skb, Position::Last, false, Reach::EveryNetns).reported {
            forget_left_alone_route(); // as in `tracer_nf_last`
        }
    }
    0
}

/// Where a program fires: links exist only in the traced namespaces (no need to ask, for
/// every packet, whether its namespace is one), the trampolines in every one.
#[derive(Clone, Copy, PartialEq)]
enum Reach {
    TracedNetns,
    EveryNetns,
}

/// What [`observe_state`] did with a packet.
#[derive(Default)]
struct Observed {
    reported: bool,
    /// Its IPv4 addresses ([`ipv4_pair`]); 0 for IPv6, or where it was not read.
    ipv4: u64,
}

#[inline(always)]
/// Reports the packet at this hook if the trace wants it; `last_implied` where nothing sits
/// between the tracer's first and last programs (see [`LAST_IMPLIED`]).
fn observe_state(
    state: u64,
    skb: u64,
    position: Position,
    last_implied: bool,
    reach: Reach,
) -> Observed {
    let Some(hook) = field::<u8>(state, offset!(nf_state_hook)).and_then(netfilter_hook) else {
        return Observed::default();
    };
    let l3_hint = match field::<u8>(state, offset!(nf_state_pf)).unwrap_or(0) {
        NFPROTO_IPV4 => ETH_P_IP,
        NFPROTO_IPV6 => ETH_P_IPV6,
        _ => return Observed::default(),
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
    if reach == Reach::EveryNetns && !netns_traced(netns) {
        return Observed::default();
    }
    let info = skb_info(skb);
    let mut packet = PacketSummary::default();
    let l3_len = skb_summary(skb, &info, l3_hint, hook, &mut packet);
    let site = Site {
        hook,
        position,
        kind: kind::SIGHTING,
        ifindex,
        netns: Netns::Known(netns),
        skb,
        source: Source::Skb(skb),
    };
    let detail = HookDetail {
        verdict: if last_implied { LAST_IMPLIED } else { 0 },
        ..HookDetail::default()
    };
    let ipv4 = if packet.l3_proto == ETH_P_IP {
        let (s, d) = (&packet.saddr, &packet.daddr);
        ipv4_pair([s[0], s[1], s[2], s[3]], [d[0], d[1], d[2], d[3]])
    } else {
        0
    };
    Observed {
        reported: report(&site, &packet, None, l3_len, detail),
        ipv4,
    }
}
