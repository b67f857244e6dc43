//! The bytes a hook hands the interpreter, built the way the hooks build them, in memory
//! that faults on the first byte past each part: an interpreter read past the `View` it was
//! given kills the test with SIGSEGV instead of reading a neighbour's bytes unnoticed.

use proptest::{collection::vec, prelude::*};
use tracer_common::{
    cbpf::{self, Lengths, Machine, Program, ReadMask, View, MEM_WORDS, READ_MASK_WORDS},
    parse::{parse_l2, HDR_LEN, L2_LEN},
};

use super::{generate, packets::Ethernet};
use crate::kernel::libpcap::reference_filter;

/// `len` bytes that end where an unreadable page begins.
pub struct Guarded {
    map: *mut libc::c_void,
    map_len: usize,
    start: *const u8,
}

impl Guarded {
    pub fn new(bytes: &[u8]) -> Guarded {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let data_pages = bytes.len().div_ceil(page).max(1);
        let map_len = (data_pages + 1) * page;
        // SAFETY: an anonymous private mapping; checked below, unmapped on drop.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED, "mmap for a guarded view");
        let guard = map.cast::<u8>().wrapping_add(data_pages * page);
        // SAFETY: the last page of our own mapping.
        let rc = unsafe { libc::mprotect(guard.cast(), page, libc::PROT_NONE) };
        assert_eq!(rc, 0, "mprotect of the guard page");
        let start = guard.wrapping_sub(bytes.len());
        // SAFETY: `bytes.len()` writable bytes lie before the guard page.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), start, bytes.len()) };
        Guarded {
            map,
            map_len,
            start,
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// Runs `program` on `l2` then `l3` as one packet, each part in guarded memory.
pub fn interpret(program: &Program, l2: &[u8], l3: &[u8], wire_len: u32) -> bool {
    interpret_marking(program, l2, l3, wire_len, &mut [0; READ_MASK_WORDS]).accept
}

/// [`interpret`], marking in `seen` the bytes the run read; the machine as the run left it.
fn interpret_marking(
    program: &Program,
    l2: &[u8],
    l3: &[u8],
    wire_len: u32,
    seen: &mut ReadMask,
) -> Machine {
    let (l2_mem, l3_mem) = (Guarded::new(l2), Guarded::new(l3));
    let view = View {
        l2: l2_mem.start,
        l2_len: l2.len() as u32,
        l3: l3_mem.start,
        l3_len: l3.len() as u32,
        wire_len,
    };
    // SAFETY: each part's address is followed by as many readable bytes as the view says.
    unsafe { cbpf::run_to_end(program, &view, &mut [0; MEM_WORDS], seen) }
}

/// One packet to filter, and how the hook got it.
#[derive(Clone, Debug)]
pub struct Case {
    /// The frame from its Ethernet header; the IP packet is what follows the L2 header.
    pub frame: Vec<u8>,
    /// Bytes the hook copied of the frame (a short skb, a truncated capture).
    pub copied: usize,
    /// `len` in a filter: the frame's length on the wire, or any value.
    pub wire_len: Option<u32>,
    /// Where a seam-crossing view splits the frame (a random L2 length up to 32).
    pub split: usize,
}

/// The verdicts of the interpreter and of libpcap on one view of a case.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdicts {
    pub ours: bool,
    pub libpcap: bool,
}

/// What the tc hook does with a frame: up to 32 bytes for `parse_l2`, its L2 header as the
/// L2 part, 128 bytes from L3 on as the L3 part; `len` is the frame length. `None` when the
/// hook reports nothing (no whole Ethernet header).
pub fn like_tc(program: &Program, insns: &[cbpf::Insn], case: &Case) -> Option<Verdicts> {
    let frame = &case.frame[..case.copied];
    let mut eth = [0u8; L2_LEN];
    let eth_len = frame.len().min(L2_LEN);
    eth[..eth_len].copy_from_slice(&frame[..eth_len]);
    let (offset, _, _) = parse_l2(&eth, eth_len)?;
    let l3 = &frame[offset..][..(frame.len() - offset).min(HDR_LEN)];
    let wire_len = case.wire_len.unwrap_or(case.frame.len() as u32);
    Some(Verdicts {
        ours: interpret(program, &frame[..offset], l3, wire_len),
        libpcap: reference_filter(insns, &frame[..offset + l3.len()], wire_len),
    })
}

/// The same frame split at any point below 32 bytes, so that loads cross the seam between
/// the two parts at every offset.
pub fn split_anywhere(program: &Program, insns: &[cbpf::Insn], case: &Case) -> Verdicts {
    let frame = &case.frame[..case.copied];
    let split = case.split.min(frame.len());
    let end = frame.len().min(split + HDR_LEN);
    let wire_len = case.wire_len.unwrap_or(case.frame.len() as u32);
    Verdicts {
        ours: interpret(program, &frame[..split], &frame[split..end], wire_len),
        libpcap: reference_filter(insns, &frame[..end], wire_len),
    }
}

/// The split view of [`split_anywhere`] judged by the interpreter, and another view judged
/// by libpcap: every byte that run did not read replaced by `noise`, and, where the verdict
/// does not depend on the lengths, its L3 part cut or lengthened (with noise) to any length
/// that still holds the words the run read (`l3_len`) and any wire length (`wire_len`). The
/// kernel programs take the first verdict for any view of lengths it holds for
/// (`cbpf::Lengths`) with the same bytes where the run read (`cbpf::ReadMask`), so the two
/// must agree.
pub fn with_unread_bytes_and_lengths_changed(
    program: &Program,
    insns: &[cbpf::Insn],
    case: &Case,
    noise: &[u8],
    (l3_len, wire_len): (prop::sample::Index, u32),
) -> Verdicts {
    let frame = &case.frame[..case.copied];
    let split = case.split.min(frame.len());
    let end = frame.len().min(split + HDR_LEN);
    let was_wire_len = case.wire_len.unwrap_or(case.frame.len() as u32);
    let mut seen = [0; READ_MASK_WORDS];
    let (l2, l3) = (&frame[..split], &frame[split..end]);
    let machine = interpret_marking(program, l2, l3, was_wire_len, &mut seen);
    let lengths = Lengths::of(&machine, split as u32, l3.len() as u32, was_wire_len);
    let (l3_len, wire_len) = if machine.lengths_matter {
        (l3.len(), was_wire_len)
    } else {
        let shortest = lengths.l3_min as usize;
        (shortest + l3_len.index(HDR_LEN + 1 - shortest), wire_len)
    };
    // The view judged is one the verdict holds for, and so is the other one.
    assert!(lengths.admit(split as u32, l3.len() as u32, was_wire_len));
    assert!(lengths.admit(split as u32, l3_len as u32, wire_len));
    let mut other: Vec<u8> = (0..split + l3_len)
        .map(|at| frame.get(at).copied().unwrap_or(noise[at % noise.len()]))
        .collect();
    for (at, byte) in other.iter_mut().enumerate() {
        // Where the cache keeps the byte: the L2 part from 0, the L3 part after L2_LEN.
        let kept_at = if at < split { at } else { L2_LEN + at - split };
        if (seen[kept_at / 8] >> (8 * (kept_at % 8))) & 0xff == 0 {
            *byte = noise[at % noise.len()];
        }
    }
    Verdicts {
        ours: machine.accept,
        libpcap: reference_filter(insns, &other, wire_len),
    }
}

/// What netfilter and the tracepoints do: the packet from its IP header on, 128 bytes of it,
/// and `len` as if it had its Ethernet header. `ip_offset` is where L3 starts in the frame.
pub fn like_netfilter(
    program: &Program,
    insns: &[cbpf::Insn],
    case: &Case,
    ip_offset: usize,
) -> Verdicts {
    let ip_offset = ip_offset.min(case.copied);
    let packet = &case.frame[ip_offset..case.copied];
    let l3 = &packet[..packet.len().min(HDR_LEN)];
    let wire_len = case
        .wire_len
        .unwrap_or((case.frame.len() - ip_offset + 14) as u32);
    Verdicts {
        ours: interpret(program, &[], l3, wire_len),
        libpcap: reference_filter(insns, l3, wire_len),
    }
}

/// A frame: generated headers (VLAN tags, IPv4 or IPv6, extension headers, any transport),
/// or random bytes; then cut short, or with a few bytes overwritten.
pub fn case() -> BoxedStrategy<(Case, usize)> {
    let generated = generate::ip().prop_flat_map(|ip| {
        let ethertype = ip.ethertype();
        (generate::ethernet(ethertype), Just(ip))
            .prop_map(|(eth, ip): (Ethernet, _)| (eth.bytes(), ip.bytes()))
    });
    let random = (
        generate::ethertype().prop_flat_map(generate::ethernet),
        vec(any::<u8>(), 0..160),
    )
        .prop_map(|(eth, rest)| (eth.bytes(), rest));
    let frame = prop_oneof![4 => generated, 1 => random];
    // (position, value) overwrites, applied after the frame is built.
    let mutations =
        prop_oneof![3 => Just(Vec::new()), 1 => vec((any::<usize>(), any::<u8>()), 1..4)];
    let wire_len = prop_oneof![4 => Just(None), 1 => any::<u32>().prop_map(Some)];
    (
        frame,
        mutations,
        wire_len,
        0..=L2_LEN,
        any::<prop::sample::Index>(),
        0..4u8,
    )
        .prop_map(|((l2, l3), mutations, wire_len, split, cut, cut_kind)| {
            let ip_offset = l2.len();
            let mut frame = [l2, l3].concat();
            for (at, value) in mutations {
                let at = at % frame.len();
                frame[at] = value;
            }
            // A quarter of the frames are cut short anywhere.
            let copied = if cut_kind == 0 {
                cut.index(frame.len() + 1)
            } else {
                frame.len()
            };
            let case = Case {
                frame,
                copied,
                wire_len,
                split,
            };
            (case, ip_offset)
        })
        .boxed()
}
