//! The tcpdump filter in the kernel: libpcap's classic BPF program, run by an interpreter
//! one instruction per `bpf_loop` step, on the bytes a hook copied of its packet.

use core::{ffi::c_void, mem::offset_of};

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_kernel};
use tracer_common::{
    cbpf::{self, Lengths, Machine, View, L2_SLOT, L3_SLOT, MAX_INSNS, READ_MASK_WORDS},
    event::PacketSummary,
    hook::Hook,
    parse::{ETH_HLEN, HDR_LEN, L2_LEN},
    synth::headers_from_summary,
};

use crate::{
    emit::Site,
    kernel::scratch,
    maps::{
        config, ViewBytes, FILTERS, FILTER_RUNS, INNER_SCRATCH, SCRATCH, TUNNELS, VERDICTS,
        VERDICT_WAYS, VIEWS,
    },
};

/// Runs the tcpdump filter on the packet's bytes: the L2 program where the hook has the
/// Ethernet header and there is one, the L3 program otherwise. A subprogram of its own: the
/// stack frames of the hooks have no room for it.
#[inline(never)]
pub fn filter_accepts(
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
        // The frame's length: `netif_receive` fires once the Ethernet header was pulled, so
        // its skb's length counts from L3 (XDP and tc count the frame).
        let frame_len = if site.hook == Hook::NetifReceive {
            packet.pkt_len + l2_len as u32
        } else {
            packet.pkt_len
        };
        (L2_SLOT, l2_len, frame_len)
    } else if has_l3 {
        // `len`, `greater` and `less` mean the frame's length in tcpdump on a veth or NIC:
        // as if the IP packet had its Ethernet header, so the L3 program agrees with the L2.
        (L3_SLOT, 0, packet.ip_len as u32 + ETH_HLEN as u32)
    } else {
        return false;
    };
    let l3_len = if l3_len == 0 {
        let Some(l3) = scratch(site.hook) else {
            return false;
        };
        headers_from_summary(packet, l3)
    } else {
        l3_len
    };
    let hook = site.hook as u32;
    gather(hook, l2_bytes, l2_len, l3_len, wire_len) && tracer_filter(hook, slot, FROM_SCRATCH) != 0
}

/// Where [`tracer_filter`] finds the view's L3 bytes: the hook's `SCRATCH` slot (the packet's
/// own headers) or its `INNER_SCRATCH` slot (a tunnel's inner packet).
const FROM_SCRATCH: u32 = 0;
const FROM_INNER_SCRATCH: u32 = 1;

/// Runs the L3 filter on the inner packet `emit::tracer_find_tunnel` left in the hook's
/// `INNER_SCRATCH` and `TUNNELS` slots: what `tcpdump -i` on the tunnel device would match. (A filter that
/// only has an L2 form names link-layer fields: not followed inside.)
#[inline(never)]
pub fn inner_filter_accepts(hook: u32) -> bool {
    if config!(filter_l3) == 0 {
        return false;
    }
    let Some(slot) = TUNNELS.get_ptr(hook) else {
        return false;
    };
    // SAFETY: `slot` is this hook's `TUNNELS` slot on this CPU from a successful lookup,
    // filled by `tracer_find_tunnel` earlier in this run; two integer fields are read through
    // it.
    let (copied, ip_len) = unsafe { ((*slot).inner_len as usize, (*slot).inner.ip_len) };
    let l3_len = if copied < HDR_LEN { copied } else { HDR_LEN };
    let wire_len = ip_len as u32 + ETH_HLEN as u32;
    gather(hook, core::ptr::null(), 0, l3_len, wire_len)
        && tracer_filter(hook, L3_SLOT, FROM_INNER_SCRATCH) != 0
}

/// Runs filter program `slot` on the view [`gather`] began in hook `hook`'s `VIEWS` slot on
/// this CPU, its L3 bytes taken here from the hook's slot of `SCRATCH` or `INNER_SCRATCH`
/// (`from`); 1 if it accepts. A global function: the verifier checks it once, on its own,
/// with its arguments unknown numbers, where a static one was checked again for every path
/// of every program that reaches it (nine tenths of the programs' load time; the L3 copy is
/// here for that reason too). Hence plain numbers for arguments and the interpreter's state
/// in a map, not on the stack: on 6.1 a global function's frame still counts toward the 512
/// bytes of its callers' chain.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tracer_filter(hook: u32, slot: u32, from: u32) -> u32 {
    let Some(view) = VIEWS.get_ptr_mut(hook) else {
        return 0;
    };
    let l3 = if from == FROM_INNER_SCRATCH {
        INNER_SCRATCH.get_ptr(hook)
    } else {
        SCRATCH.get_ptr(hook)
    };
    let Some(l3) = l3 else {
        return 0;
    };
    // SAFETY: `view` is this hook's `VIEWS` slot on this CPU, `l3` its scratch slot, both from
    // successful lookups and valid for the run; map values are 8-aligned, read and written in
    // words. Past `l3_len` the copy carries whatever the slot had, which no comparison reads.
    unsafe {
        let words = l3.cast::<u64>();
        for i in 0..HDR_LEN / 8 {
            (*view).l3[i] = words.add(i).read();
        }
    }
    // The hooks of one packet mostly show the filter the same bytes (the same headers at
    // each point, the same frame at tc egress and ingress), and the packets of a flow differ
    // where it does not look (IP id, checksums, payload): judged once on this CPU, the
    // verdict is taken again by the bytes the run read, not re-run instruction by instruction.
    let way = slot * VERDICT_WAYS + direction(view);
    if let Some(accept) = remembered(way, view) {
        return accept;
    }
    let accept = interpret(hook, slot, view);
    remember(hook, way, view, accept);
    accept
}

/// Which of a filter program's `VERDICT_WAYS` ways keeps the verdict on `view`: 1 where its
/// IP source address is below its destination (compared as loaded), so that the two
/// directions of a flow, which alternate on one CPU, do not push each other's out. Any
/// function of the view is correct (a way only remembers; the bytes decide): past the view's
/// length, or for a packet that is not IP, it is only a way. Arithmetic, not branches: a value
/// that branches lead to would make the verifier walk what follows once for each.
#[inline(always)]
fn direction(view: *const ViewBytes) -> u32 {
    // SAFETY: this hook's `VIEWS` slot on this CPU (see `gather`), read in words.
    let l3 = unsafe { &(*view).l3 };
    // IPv4: the source is the high half of word 1 (bytes 12..16), the destination the low
    // half of word 2. IPv6: the source's first eight bytes are word 1, the destination's
    // word 3. Both compared; the version's bit 1 (bit 5 of the first byte) says which counts.
    let v4 = below(l3[1] >> 32, l3[2] & 0xffff_ffff);
    let v6 = below(l3[1], l3[3]);
    let is_v6 = (l3[0] >> 5) & 1; // the version's bit set in 6 (0110), not in 4 (0100)
    (v4 ^ ((v4 ^ v6) & is_v6.wrapping_neg())) as u32
}

/// 1 if `a < b` (unsigned), 0 otherwise, without a branch: the borrow of `a - b`.
#[inline(always)]
fn below(a: u64, b: u64) -> u64 {
    ((!a & b) | (!(a ^ b) & a.wrapping_sub(b))) >> 63
}

/// Runs filter program `slot` on `view`, one instruction per `bpf_loop` step.
#[inline(always)]
fn interpret(hook: u32, slot: u32, view: *mut ViewBytes) -> u32 {
    let Some(run) = FILTER_RUNS.get_ptr_mut(hook) else {
        return 0;
    };
    // The interpreter reads the view's bytes through `bpf_probe_read_kernel` at addresses the
    // verifier does not follow (see `cbpf::View`).
    let base = opaque(view.cast_const()) as u64;
    // SAFETY: `run` is this hook's `FILTER_RUNS` slot on this CPU from a successful lookup,
    // valid for the run and this hook's alone (a program does not interrupt itself on its
    // CPU); written field by field through the pointer, no reference kept across the loop.
    // `view` is the hook's `VIEWS` slot, of which three lengths are read.
    unsafe {
        (*run).machine = Machine::default();
        for i in 0..READ_MASK_WORDS {
            core::ptr::write_volatile(&mut (*run).seen[i], 0);
        }
        (*run).view = View {
            l2: (base + offset_of!(ViewBytes, l2) as u64) as *const u8,
            l2_len: (*view).l2_len,
            l3: (base + offset_of!(ViewBytes, l3) as u64) as *const u8,
            l3_len: (*view).l3_len,
            wire_len: (*view).wire_len,
        };
    }
    // One verified step, looped by the kernel: a loop in the program itself would be
    // verified once per iteration and per path, beyond the verifier's limit. The step finds
    // the run and the program by the hook and slot numbers it is given.
    let mut hook_slot = (hook << 8) | slot;
    // SAFETY: `filter_step` has the callback signature `bpf_loop` calls (index, context) ->
    // 0 or 1; its context is `hook_slot`, a `u32` on this frame that outlives the call
    // (`bpf_loop` runs the callback synchronously); flags 0. `run` is not used until it returns.
    unsafe {
        bpf_loop(
            MAX_INSNS as u32,
            filter_step as *mut c_void,
            (&mut hook_slot as *mut u32).cast(),
            0,
        )
    };
    // SAFETY: the slot above, valid for the run; the steps that wrote it are over.
    unsafe { (*run).machine.accept as u32 }
}

/// Begins the view the filter is to judge in hook `hook`'s `VIEWS` slot on this CPU: its
/// lengths and `l2_len` bytes of link-layer header at `l2` (an 8-aligned `emit::L2Bytes`;
/// none: null and 0); [`tracer_filter`] adds the `l3_len` bytes from L3 on and compares the
/// view with the last one judged. Plain loads and stores, word by word (aligned: the BPF
/// target turns an unaligned word into eight byte loads); past the lengths the slot keeps
/// whatever it had, which no comparison looks at (a run reads only inside its view, and a
/// view is compared only where it holds every word the run read: `cbpf::Lengths`). False
/// where the slot cannot be had.
#[inline(always)]
fn gather(hook: u32, l2: *const u8, l2_len: usize, l3_len: usize, wire_len: u32) -> bool {
    let Some(view) = VIEWS.get_ptr_mut(hook) else {
        return false;
    };
    // SAFETY: this hook's slot on this CPU from a successful lookup, valid for the run and
    // this hook's alone (a program does not interrupt itself on its CPU); written through the
    // pointer. With `l2_len > 0`, `l2` is a hook's `L2_LEN`-byte, 8-aligned link-layer copy
    // (`emit::L2Bytes`), read in words inside it.
    unsafe {
        (*view).l2_len = l2_len as u32;
        (*view).l3_len = l3_len as u32;
        (*view).wire_len = wire_len;
        if l2_len > 0 {
            for i in 0..L2_LEN / 8 {
                (*view).l2[i] = l2.cast::<u64>().add(i).read();
            }
        }
    }
    true
}

/// The verdict in `VERDICTS` entry `way` (one of a filter program's on this CPU) if `view`
/// has lengths it holds for (`cbpf::Lengths`) and the same bytes where that run read: 1
/// accept, 0 reject.
#[inline(always)]
fn remembered(way: u32, view: *mut ViewBytes) -> Option<u32> {
    let cached = VERDICTS.get_ptr(way)?;
    // SAFETY: `cached` is this way's entry on this CPU from a successful lookup, `view` this
    // hook's `VIEWS` slot (see `gather`): valid for the run. The entry is shared by the hooks,
    // and one may interrupt this run to rewrite it: every access is volatile, in program
    // order, and the sequence number read before and after tells whether that happened.
    unsafe {
        let seq = core::ptr::read_volatile(&(*cached).seq);
        if seq & 1 != 0 {
            return None;
        }
        let (was, now) = (&(*cached).view, &*view);
        // Field by field into registers: a copy of the whole would take stack the chain of
        // calls down to here does not have (512 bytes in all).
        let l = &(*cached).lengths;
        let lengths = Lengths {
            l2_len: core::ptr::read_volatile(&l.l2_len),
            l3_min: core::ptr::read_volatile(&l.l3_min),
            l3_max: core::ptr::read_volatile(&l.l3_max),
            wire_len: core::ptr::read_volatile(&l.wire_len),
            wire_mask: core::ptr::read_volatile(&l.wire_mask),
        };
        if !lengths.admit(now.l2_len, now.l3_len, now.wire_len) {
            return None;
        }
        let read = &(*cached).read;
        for i in 0..L2_LEN / 8 {
            let mask = core::ptr::read_volatile(&read[i]);
            if core::ptr::read_volatile(&was.l2[i]) != now.l2[i] & mask {
                return None;
            }
        }
        for i in 0..HDR_LEN / 8 {
            let mask = core::ptr::read_volatile(&read[L2_LEN / 8 + i]);
            if core::ptr::read_volatile(&was.l3[i]) != now.l3[i] & mask {
                return None;
            }
        }
        let accept = core::ptr::read_volatile(&(*cached).accept);
        (core::ptr::read_volatile(&(*cached).seq) == seq).then_some(accept)
    }
}

/// Keeps `accept` as the verdict on `view` in `VERDICTS` entry `way` on this CPU, with the
/// bytes the run at `hook` read and the lengths of the views it holds for.
#[inline(always)]
fn remember(hook: u32, way: u32, view: *mut ViewBytes, accept: u32) {
    let (Some(cached), Some(run)) = (VERDICTS.get_ptr_mut(way), FILTER_RUNS.get_ptr(hook)) else {
        return;
    };
    // SAFETY: as in `remembered`. A program that interrupted another one's write here sees
    // an odd number and leaves the entry alone; the one it interrupted then finishes it.
    unsafe {
        let seq = core::ptr::read_volatile(&(*cached).seq);
        if seq & 1 != 0 {
            return;
        }
        core::ptr::write_volatile(&mut (*cached).seq, seq.wrapping_add(1));
        let (was, now, seen) = (&mut (*cached).view, &*view, &(*run).seen);
        let read = &mut (*cached).read;
        for i in 0..L2_LEN / 8 {
            core::ptr::write_volatile(&mut read[i], seen[i]);
            core::ptr::write_volatile(&mut was.l2[i], now.l2[i] & seen[i]);
        }
        for i in 0..HDR_LEN / 8 {
            let j = L2_LEN / 8 + i;
            core::ptr::write_volatile(&mut read[j], seen[j]);
            core::ptr::write_volatile(&mut was.l3[i], now.l3[i] & seen[j]);
        }
        let lengths = Lengths::of(&(*run).machine, now.l2_len, now.l3_len, now.wire_len);
        let l = &mut (*cached).lengths;
        core::ptr::write_volatile(&mut l.l2_len, lengths.l2_len);
        core::ptr::write_volatile(&mut l.l3_min, lengths.l3_min);
        core::ptr::write_volatile(&mut l.l3_max, lengths.l3_max);
        core::ptr::write_volatile(&mut l.wire_len, lengths.wire_len);
        core::ptr::write_volatile(&mut l.wire_mask, lengths.wire_mask);
        core::ptr::write_volatile(&mut (*cached).accept, accept);
        core::ptr::write_volatile(&mut (*cached).seq, seq.wrapping_add(2));
    }
}

/// The `bpf_loop` callback: one instruction of the run of program `*ctx & 0xff` for hook
/// `*ctx >> 8`; 1 stops the loop.
///
/// # Safety
/// `ctx` points to a `u32` (hook, slot) whose `FILTER_RUNS` slot [`interpret`] set up: `view`
/// the hook's link-header copy (or none, length 0) and its `SCRATCH` or `INNER_SCRATCH` slot
/// with the lengths copied there, read through `bpf_probe_read_kernel`, which checks every
/// address.
unsafe extern "C" fn filter_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: the caller's promise: `bpf_loop` hands over `interpret`'s `&mut hook_slot`.
    let hook_slot = unsafe { *(ctx as *const u32) };
    let (Some(run), Some(program)) = (
        FILTER_RUNS.get_ptr_mut(hook_slot >> 8),
        FILTERS.get_ptr(hook_slot & 0xff),
    ) else {
        return 1;
    };
    // SAFETY: `run` is this hook's slot on this CPU from a successful lookup, valid for the
    // call and not referenced elsewhere meanwhile (`interpret` waits in `bpf_loop`); its
    // fields are disjoint. `program` is a whole `Program` in the filter map, which the
    // verifier knows: the interpreter fetches its instructions with plain loads. The rest is
    // the contract above.
    let more = unsafe {
        let run = &mut *run;
        cbpf::step(
            &mut run.machine,
            program,
            &run.view,
            &mut run.mem,
            &mut run.seen,
        )
    };
    if more {
        0
    } else {
        1
    }
}

/// The same address, as a number the verifier knows nothing about: the interpreter reads
/// through it with `bpf_probe_read_kernel`, and offsets added to it are not tracked.
#[inline(always)]
pub fn opaque<T>(ptr: *const T) -> *const T {
    let addr = ptr as u64;
    let mut out = 0u64;
    // Reading our own stack cannot fail; on failure the address is 0 and reads yield zeroes.
    // SAFETY: both pointers are 8-byte locals of this frame, and 8 bytes are copied.
    let _ = unsafe {
        bpf_probe_read_kernel(
            (&mut out as *mut u64).cast(),
            8,
            (&addr as *const u64).cast(),
        )
    };
    out as *const T
}
