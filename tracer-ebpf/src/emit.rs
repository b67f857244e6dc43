//! The in-kernel filter and the one way events leave the kernel.

use core::{cmp::min, ffi::c_void};

use aya_ebpf::helpers::{
    bpf_get_smp_processor_id, bpf_ktime_get_ns,
    generated::{bpf_loop, bpf_probe_read_kernel, bpf_skb_load_bytes, bpf_xdp_load_bytes},
};
use tracer_common::{
    cbpf::{self, Machine, Program, View, L2_SLOT, L3_SLOT, MAX_INSNS, MEM_WORDS},
    config::iface_key,
    event::{
        kind, link, CaptureHeader, Captured, Event, EventHeader, HookDetail, PacketSummary,
        EVENT_VERSION, SNAP_HEADERS, SNAP_MAX,
    },
    hook::{Hook, Position},
    parse::{ETH_HLEN, L2_LEN},
    synth::headers_from_summary,
};

use crate::{
    kernel::{helper_len, read, scratch, verifier_visible},
    maps::{
        config, offset, EVENTS, FILTERS, FILTER_MEM, FOLLOWED, LOST, LOST_SINCE, TRACED_IFACES,
        TRACED_NETNS,
    },
};

/// Where a sighting happened: the part of the header each hook knows.
pub struct Site {
    pub hook: Hook,
    pub position: Position,
    pub kind: u8,
    pub ifindex: u32,
    pub netns: u32,
    pub skb: u64,
    /// Where the packet's bytes are, for `-w`.
    pub source: Source,
}

/// Where a hook can copy its packet's bytes from (only with `-w`: `config!(snaplen)`).
#[derive(Clone, Copy)]
pub enum Source {
    /// No packet at hand: a socket event, or a driver that may have freed it already.
    None,
    /// The XDP context: the Ethernet frame, with `bpf_xdp_load_bytes`.
    Xdp(*mut c_void),
    /// The tc context: the Ethernet frame, with `bpf_skb_load_bytes` (page fragments too).
    Tc(*mut c_void),
    /// A kernel `struct sk_buff`: from the IP header to the end of its linear part.
    Skb(u64),
}

/// Whether a global hook should report a packet of namespace `netns`.
#[inline(always)]
pub fn netns_traced(netns: u32) -> bool {
    config!(netns_filter) == 0 || unsafe { TRACED_NETNS.get(&netns) }.is_some()
}

/// The link-layer header a hook copied (XDP and tc see the frame).
pub struct L2<'a> {
    pub bytes: &'a [u8; L2_LEN],
    pub len: usize,
}

/// Emits `packet` at `site` when the filter wants it: it matches, or its skb matched earlier
/// (NAT may have rewritten the addresses since; the skb is the same packet). The hook's
/// headers from L3 on are the first `l3_len` bytes of its scratch buffer; with none there,
/// they are rebuilt from `packet` for the filter.
#[inline(always)]
pub fn report(
    site: &Site,
    packet: &PacketSummary,
    l2: Option<L2>,
    l3_len: usize,
    detail: HookDetail,
) {
    if wanted(site, packet, l2, l3_len) {
        emit(site, packet, detail);
    }
}

/// Stops following `skb`: it was freed, and its address will be reused for another packet.
#[inline(always)]
pub fn forget(skb: u64) {
    if filters_packets() {
        let _ = FOLLOWED.remove(&skb);
    }
}

#[inline(always)]
fn filters_packets() -> bool {
    config!(filter_l2) != 0 || config!(filter_l3) != 0 || config!(iface_filter) != 0
}

#[inline(always)]
fn wanted(site: &Site, packet: &PacketSummary, l2: Option<L2>, l3_len: usize) -> bool {
    if !filters_packets() {
        return true;
    }
    if site.skb != 0 {
        if let Some(tag) = unsafe { FOLLOWED.get(&site.skb) } {
            // The address is followed, but is it still that packet? An skb freed where no
            // tracepoint fires (TCP frees acknowledged and read skbs quietly) leaves its entry
            // behind, and the next packet built at that address must not inherit it.
            if knows_no_headers(site, packet) || *tag == follow_tag(packet) {
                return true;
            }
            // A stale entry: forget it, so the new packet's header-less events are not taken.
            let _ = FOLLOWED.remove(&site.skb);
        }
    }
    // Plain numbers across the call: a `None` would leave a register unset, which the
    // verifier refuses to see copied.
    let (l2_bytes, l2_len) = match l2 {
        Some(l2) => (l2.bytes.as_ptr(), l2.len),
        None => (core::ptr::null(), 0),
    };
    if !iface_traced(site) || !filter_accepts(site, packet, l2_bytes, l2_len, l3_len) {
        return false;
    }
    // Follow it from here on; not at its free, which would only delete the entry again. A full
    // map only makes the LRU forget an old packet: following is best effort.
    if site.skb != 0 && site.kind == kind::SIGHTING {
        let _ = FOLLOWED.insert(&site.skb, &follow_tag(packet), 0);
    }
    true
}

/// An event that cannot show its packet's headers: `net_dev_xmit` (the driver has it), or a
/// free. Any other sighting without IP headers is another packet (ARP) at a reused address.
#[inline(always)]
fn knows_no_headers(site: &Site, packet: &PacketSummary) -> bool {
    packet.l3_proto == 0
        && (site.kind != kind::SIGHTING
            || (site.hook == Hook::DevXmit && site.position == Position::Last))
}

/// What NAT leaves unchanged in a packet: transport protocol, IP id and TCP sequence number.
#[inline(always)]
fn follow_tag(packet: &PacketSummary) -> u64 {
    ((packet.l4_proto as u64) << 56)
        | (((packet.ip_id as u64) & 0xff_ffff) << 32)
        | packet.tcp_seq as u64
}

#[inline(always)]
fn iface_traced(site: &Site) -> bool {
    if config!(iface_filter) == 0 {
        return true;
    }
    unsafe { TRACED_IFACES.get(&iface_key(site.netns, site.ifindex)) }.is_some()
}

/// Runs the tcpdump filter on the packet's bytes: the L2 program where the hook has the
/// Ethernet header and there is one, the L3 program otherwise. A subprogram of its own: the
/// stack frames of the hooks have no room for it.
#[inline(never)]
fn filter_accepts(
    site: &Site,
    packet: &PacketSummary,
    l2_bytes: *const u8,
    l2_len: usize,
    l3_len: usize,
) -> bool {
    let (has_l2, has_l3) = (config!(filter_l2) != 0, config!(filter_l3) != 0);
    if !has_l2 && !has_l3 {
        return true;
    }
    // A route lookup for a received packet often leaves protocol and ports unset: the filter
    // cannot decide, and userspace keeps the lookup only if it fits a traced packet.
    if site.hook == Hook::FibLookup && packet.l4_proto == 0 {
        return true;
    }
    let (slot, l2_len, wire_len) = if l2_len > 0 && has_l2 {
        (L2_SLOT, l2_len, packet.pkt_len)
    } else if has_l3 {
        // `len`, `greater` and `less` mean the frame's length in tcpdump on a veth or NIC:
        // as if the IP packet had its Ethernet header, so the L3 program agrees with the L2.
        (L3_SLOT, 0, packet.ip_len as u32 + ETH_HLEN as u32)
    } else {
        return false;
    };
    let Some(l3) = scratch(site.hook) else {
        return false;
    };
    let l3_len = if l3_len == 0 {
        headers_from_summary(packet, l3)
    } else {
        l3_len
    };
    let Some(mem) = FILTER_MEM.get_ptr_mut(site.hook as u32) else {
        return false;
    };
    let Some(program) = FILTERS.get_ptr(slot) else {
        return false;
    };
    let mut run = FilterRun {
        machine: Machine::default(),
        program: opaque(program),
        view: View {
            l2: opaque(l2_bytes),
            l2_len: l2_len as u32,
            l3: opaque(l3.as_ptr()),
            l3_len: l3_len as u32,
            wire_len,
        },
        mem,
    };
    // One verified step, looped by the kernel: a loop in the program itself would be
    // verified once per iteration and per path, beyond the verifier's limit.
    unsafe {
        bpf_loop(
            MAX_INSNS as u32,
            filter_step as *mut c_void,
            (&mut run as *mut FilterRun).cast(),
            0,
        )
    };
    run.machine.accept
}

/// What [`filter_step`] works on, on the stack of [`filter_accepts`].
struct FilterRun {
    machine: Machine,
    program: *const Program,
    view: View,
    mem: *mut [u32; MEM_WORDS],
}

/// The `bpf_loop` callback: one instruction; 1 stops the loop.
unsafe extern "C" fn filter_step(_index: u64, ctx: *mut c_void) -> i64 {
    let run = unsafe { &mut *(ctx as *mut FilterRun) };
    // SAFETY: set up by `filter_accepts` from the filter map and the hook's buffers.
    let more = unsafe { cbpf::step(&mut run.machine, run.program, &run.view, &mut *run.mem) };
    if more {
        0
    } else {
        1
    }
}

/// The same address, as a number the verifier knows nothing about: the interpreter reads
/// through it with `bpf_probe_read_kernel`, and offsets added to it are not tracked.
#[inline(always)]
fn opaque<T>(ptr: *const T) -> *const T {
    let addr = ptr as u64;
    let mut out = 0u64;
    // Reading our own stack cannot fail; on failure the address is 0 and reads yield zeroes.
    let _ = unsafe {
        bpf_probe_read_kernel(
            (&mut out as *mut u64).cast(),
            8,
            (&addr as *const u64).cast(),
        )
    };
    out as *const T
}

/// Writes one event to the ring buffer, with the packet's bytes when `-w` wants them, or
/// counts it as lost for its hook.
#[inline(always)]
fn emit(site: &Site, packet: &PacketSummary, detail: HookDetail) {
    let snaplen = config!(snaplen) as usize;
    if snaplen > 0 && !matches!(site.source, Source::None) {
        if snaplen <= SNAP_HEADERS {
            emit_captured::<SNAP_HEADERS>(site, packet, &detail, snaplen);
        } else {
            emit_captured::<SNAP_MAX>(site, packet, &detail, snaplen);
        }
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count_lost(site.hook);
        return;
    };
    // Filled in place: an `Event` built on the stack first would cost 120 of its 512 bytes.
    let event = entry.as_mut_ptr();
    unsafe {
        fill(
            &mut *event,
            site,
            packet,
            detail,
            core::mem::size_of::<Event>(),
        )
    };
    entry.submit(0);
}

#[inline(always)]
fn fill(event: &mut Event, site: &Site, packet: &PacketSummary, detail: HookDetail, len: usize) {
    event.header = EventHeader {
        version: EVENT_VERSION,
        kind: site.kind,
        hook: site.hook as u8,
        position: site.position as u8,
        len: len as u16,
        cpu: unsafe { bpf_get_smp_processor_id() } as u16,
        ifindex: site.ifindex,
        netns: site.netns,
        ts_ns: unsafe { bpf_ktime_get_ns() },
        skb: site.skb,
        lost_before: take_lost_since(),
        _pad: 0,
    };
    event.packet = *packet;
    event.detail = detail;
}

/// An event followed by up to `N` bytes of its packet. A subprogram: its copies would not fit
/// in every hook's instruction budget, and only `-w` runs it.
#[inline(never)]
fn emit_captured<const N: usize>(
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
    unsafe {
        fill(
            &mut (*record).event,
            site,
            packet,
            *detail,
            core::mem::size_of::<Captured<N>>(),
        );
        (*record).capture = copy_packet(site.source, packet, &mut (*record).data, snaplen);
    }
    entry.submit(0);
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
            let ok = len.is_some_and(|len| unsafe {
                bpf_xdp_load_bytes(ctx.cast(), 0, data.as_mut_ptr().cast(), len) == 0
            });
            let copied = if ok { len.unwrap_or(0) as usize } else { 0 };
            (link::ETHERNET, packet.pkt_len, copied)
        }
        Source::Tc(ctx) => {
            let len = helper_len::<N>(min(packet.pkt_len as usize, want));
            let ok = len.is_some_and(|len| unsafe {
                bpf_skb_load_bytes(ctx.cast(), 0, data.as_mut_ptr().cast(), len) == 0
            });
            let copied = if ok { len.unwrap_or(0) as usize } else { 0 };
            (link::ETHERNET, packet.pkt_len, copied)
        }
        Source::Skb(skb) => {
            let (l3, linear, total) = skb_from_l3(skb);
            let len = bounded::<N>(linear as usize, want);
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

#[inline(always)]
fn count_lost(hook: Hook) {
    if let Some(counter) = LOST.get_ptr_mut(hook as u32) {
        // Per-CPU slot: no other writer, a plain add is enough.
        unsafe { *counter += 1 };
    }
    if let Some(since) = LOST_SINCE.get_ptr_mut(0) {
        // A program interrupting another on this CPU may race on it: the count can be off by
        // one there, the gap is still marked.
        unsafe { *since = (*since).saturating_add(1) };
    }
}

/// The events lost on this CPU since its last queued event, reset for the next gap.
#[inline(always)]
fn take_lost_since() -> u32 {
    match LOST_SINCE.get_ptr_mut(0) {
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
