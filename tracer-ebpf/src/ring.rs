//! The one way events leave the kernel: a record in the ring buffer, with the packet's bytes
//! when `-w` wants them, or a count of what was lost.

use core::cmp::min;

use aya_ebpf::bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::helpers::{
    bpf_get_smp_processor_id, bpf_ktime_get_ns,
    generated::{bpf_probe_read_kernel, bpf_skb_load_bytes, bpf_xdp_load_bytes},
};
use tracer_common::{
    event::{
        kind, link, tunnel, CaptureHeader, Captured, Event, EventHeader, HookDetail, PacketSummary,
        EVENT_VERSION, SNAP_HEADERS, SNAP_MAX,
    },
    hook::Hook,
};

use crate::{
    emit::{may_be_tunnel, tunnel_slot, Site, Source},
    kernel::{helper_len, read, skb_gso_segs, verifier_visible},
    maps::{config, offset, EVENTS, LOST, LOST_SINCE, UNANNOUNCED},
};

/// Writes one event to the ring buffer, with the packet's bytes when `-w` wants them, or
/// counts it as lost for its hook.
#[inline(always)]
pub fn emit<const TUNNELS_TOO: bool>(site: &Site, packet: &PacketSummary, detail: HookDetail) {
    let snaplen = config!(snaplen) as usize;
    // A normal free ends a journey already seen with its bytes: none are copied.
    if snaplen > 0 && !matches!(site.source, Source::None) && site.kind != kind::FREE {
        if snaplen <= SNAP_HEADERS {
            emit_captured::<SNAP_HEADERS, TUNNELS_TOO>(site, packet, &detail, snaplen);
        } else {
            emit_captured::<SNAP_MAX, TUNNELS_TOO>(site, packet, &detail, snaplen);
        }
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count_lost(site.hook);
        return;
    };
    // Filled in place: an `Event` built on the stack first would cost 120 of its 512 bytes.
    let event = entry.as_mut_ptr();
    // SAFETY: `event` is the ring buffer reservation just made, `size_of::<Event>()` bytes,
    // 8-aligned and ours alone until `submit`. Its bytes are earlier records' (not cleared),
    // a valid `Event` since every field is an integer; `fill` only writes to it.
    unsafe {
        fill::<TUNNELS_TOO>(
            &mut *event,
            site,
            packet,
            detail,
            core::mem::size_of::<Event>(),
        )
    };
    entry.submit(submit_flags());
}

#[inline(always)]
fn fill<const TUNNELS_TOO: bool>(
    event: &mut Event,
    site: &Site,
    packet: &PacketSummary,
    detail: HookDetail,
    len: usize,
) {
    event.header = EventHeader {
        version: EVENT_VERSION,
        kind: site.kind,
        hook: site.hook as u8,
        position: site.position as u8,
        len: len as u16,
        // SAFETY: a helper without arguments or preconditions; `unsafe` only as a kernel call.
        cpu: unsafe { bpf_get_smp_processor_id() } as u16,
        ifindex: site.ifindex,
        netns: site.netns.inum(),
        // SAFETY: as for `cpu`: no arguments, no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        skb: site.skb,
        lost_before: take_lost_since(),
        _pad: 0,
    };
    event.packet = *packet;
    if let Source::Skb(skb) = site.source {
        event.packet.gso_segs = skb_gso_segs(skb);
    }
    event.detail = detail;
    event.tunnel.kind = tunnel::NONE;
    if TUNNELS_TOO && may_be_tunnel(packet) {
        if let Some(found) = tunnel_slot(site.hook as u32) {
            if found.kind != tunnel::NONE {
                event.tunnel = *found;
            }
        }
    }
}

/// An event followed by up to `N` bytes of its packet. A subprogram: its copies would not fit
/// in every hook's instruction budget, and only `-w` runs it.
#[inline(never)]
fn emit_captured<const N: usize, const TUNNELS_TOO: bool>(
    site: &Site,
    packet: &PacketSummary,
    detail: &HookDetail,
    snaplen: usize,
) {
    let Some(mut entry) = EVENTS.reserve::<Captured<N>>(0) else {
        count_lost(site.hook);
        return;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is the reservation just made, `size_of::<Captured<N>>()` bytes,
    // 8-aligned and ours alone until `submit`; its integer fields are valid for any of the
    // bytes left there. `event`, `capture` and `data` are disjoint fields of it.
    unsafe {
        fill::<TUNNELS_TOO>(
            &mut (*record).event,
            site,
            packet,
            *detail,
            core::mem::size_of::<Captured<N>>(),
        );
        (*record).capture = copy_packet(site.source, packet, &mut (*record).data, snaplen);
    }
    entry.submit(submit_flags());
}

/// Copies up to `snaplen` bytes of the packet into `data`.
#[inline(always)]
fn copy_packet<const N: usize>(
    source: Source,
    packet: &PacketSummary,
    data: &mut [u8; N],
    snaplen: usize,
) -> CaptureHeader {
    let want = if snaplen < N { snaplen } else { N };
    let (link, orig_len, copied) = match source {
        Source::None => return CaptureHeader::default(),
        Source::Xdp(ctx) => {
            let len = helper_len::<N>(min(packet.pkt_len as usize, want));
            // SAFETY: `ctx` is the XDP context the program was given (only `xdp.rs` makes a
            // `Source::Xdp`), `data` holds `N` bytes and `len <= N` (`helper_len`); the
            // helper checks offset and length against the frame.
            let ok = len.is_some_and(|len| unsafe {
                bpf_xdp_load_bytes(ctx.cast(), 0, data.as_mut_ptr().cast(), len) == 0
            });
            let copied = if ok { len.unwrap_or(0) as usize } else { 0 };
            (link::ETHERNET, packet.pkt_len, copied)
        }
        Source::Tc(ctx) => {
            let len = helper_len::<N>(min(packet.pkt_len as usize, want));
            // SAFETY: `ctx` is the tc program's `__sk_buff` (only `tc.rs` makes a
            // `Source::Tc`), `data` holds `N` bytes and `len <= N`; the helper checks offset
            // and length against the packet.
            let ok = len.is_some_and(|len| unsafe {
                bpf_skb_load_bytes(ctx.cast(), 0, data.as_mut_ptr().cast(), len) == 0
            });
            let copied = if ok { len.unwrap_or(0) as usize } else { 0 };
            (link::ETHERNET, packet.pkt_len, copied)
        }
        Source::Skb(skb) => {
            let (l3, linear, total) = skb_from_l3(skb);
            let len = bounded::<N>(linear as usize, want);
            // SAFETY: `0 < len <= N` (`bounded`), the size of `data`. `l3` is a kernel address
            // computed from the skb's fields, never dereferenced directly: the helper checks
            // it and fails (destination zeroed) on a fault.
            let ok = len > 0
                && unsafe {
                    bpf_probe_read_kernel(data.as_mut_ptr().cast(), len as u32, l3 as *const _)
                } == 0;
            (link::IP, total, if ok { len } else { 0 })
        }
    };
    CaptureHeader {
        link,
        _pad: 0,
        cap_len: copied as u16,
        orig_len,
    }
}

/// `min(avail, want)`, in a form the verifier sees is at most `N` (0 when nothing fits).
#[inline(always)]
fn bounded<const N: usize>(avail: usize, want: usize) -> usize {
    let len = verifier_visible(if avail < want { avail } else { want });
    if len > N {
        0
    } else {
        len
    }
}

/// (address of the IP header, bytes from it to the end of the linear part, bytes from it to
/// the end of the packet).
#[inline(always)]
fn skb_from_l3(skb: u64) -> (u64, u32, u32) {
    let head = read::<u64>(skb, offset!(skb_head)).unwrap_or(0);
    let data = read::<u64>(skb, offset!(skb_data)).unwrap_or(0);
    let len = read::<u32>(skb, offset!(skb_len)).unwrap_or(0) as u64;
    let data_len = read::<u32>(skb, offset!(skb_data_len)).unwrap_or(0) as u64;
    let network = read::<u16>(skb, offset!(skb_network_header)).unwrap_or(u16::MAX);
    if head == 0 || data == 0 || network == u16::MAX {
        return (0, 0, 0);
    }
    let l3 = head + network as u64;
    let end = data + len;
    let linear_end = end.saturating_sub(data_len);
    (
        l3,
        linear_end.saturating_sub(l3) as u32,
        end.saturating_sub(l3) as u32,
    )
}

/// Commits a record without waking the reader, except every `wake_every`-th on this CPU.
#[inline(always)]
fn submit_flags() -> u64 {
    let Some(count) = UNANNOUNCED.get_ptr_mut(0) else {
        return 0;
    };
    let wake_every = config!(wake_every) as u32;
    // SAFETY: this CPU's `u32` from a successful lookup, valid for the run. A program that
    // interrupts this one on the CPU may race on it: a wakeup comes a record early or late.
    unsafe {
        let written = (*count).wrapping_add(1);
        if written >= wake_every {
            *count = 0;
            BPF_RB_FORCE_WAKEUP as u64
        } else {
            *count = written;
            BPF_RB_NO_WAKEUP as u64
        }
    }
}

#[inline(always)]
fn count_lost(hook: Hook) {
    if let Some(counter) = LOST.get_ptr_mut(hook as u32) {
        // SAFETY: a successful lookup's pointer to this hook's `u64` on this CPU, aligned and
        // valid for the run. Per-CPU slot: no other writer, a plain add is enough.
        unsafe { *counter += 1 };
    }
    if let Some(since) = LOST_SINCE.get_ptr_mut(0) {
        // A program interrupting another on this CPU may race on it: the count can be off by
        // one there, the gap is still marked.
        // SAFETY: a successful lookup's pointer to this CPU's `u32`, valid for the run; read
        // and written through the raw pointer, no reference held across the race above.
        unsafe { *since = (*since).saturating_add(1) };
    }
}

/// The events lost on this CPU since its last queued event, reset for the next gap.
#[inline(always)]
fn take_lost_since() -> u32 {
    match LOST_SINCE.get_ptr_mut(0) {
        // SAFETY: as in `count_lost`: this CPU's `u32` slot from a successful lookup, valid for
        // the run; a racing program on this CPU can only make the count off by one.
        Some(since) => unsafe {
            let lost = *since;
            if lost != 0 {
                *since = 0;
            }
            lost
        },
        None => 0,
    }
}
