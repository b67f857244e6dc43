//! Maps and load-time globals. Userspace sets sizes and values at load time (see
//! `tracer_common::names`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    cbpf::{Lengths, Machine, Program, ReadMask, View, MEM_WORDS},
    config::{KernelOffsets, TraceConfig, TC_ALONE_SLOTS},
    event::TunnelSummary,
    hook::HOOK_SLOTS,
    parse::{HDR_LEN, L2_LEN},
};

/// Resized by userspace from `--ring-size`.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(HOOK_SLOTS, 0);

/// Events lost on this CPU since its last queued event; the next event carries and clears it.
#[map]
pub static LOST_SINCE: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Records written on this CPU since the last one that woke the reader (see `WAKE_EVERY`).
#[map]
pub static UNANNOUNCED: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static TRACED_NETNS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);

/// Netns inode -> the netfilter hooks there where only the first program is linked
/// (`nf_census::hook_bit`): where it finds itself with one other function, that one is
/// someone else's (see `netfilter::alone`).
#[map]
pub static NF_FIRST_ONLY: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);

#[map]
pub static TRACED_IFACES: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);

/// LRU: a followed skb whose free we missed (a lost event) ages out instead of filling it.
#[map]
pub static FOLLOWED: LruHashMap<u64, u64> = LruHashMap::with_max_entries(65536, 0);

/// How many skbs `FOLLOWED` holds, or more (the LRU forgets some without telling): while it
/// is 0, a packet the filter rejects needs no lookup there, nor a free its removal. One
/// counter shared by the CPUs (a skb is followed on one and freed on another), changed with
/// atomic adds only where `FOLLOWED` gains or loses a key.
#[map]
pub static FOLLOWING: Array<u64> = Array::with_max_entries(1, 0);

/// Per-CPU room for the copied headers (the 512-byte stack cannot hold them beside the rest),
/// one slot per hook: a program may interrupt another one on its CPU, but not itself.
#[map]
pub static SCRATCH: PerCpuArray<[u8; HDR_LEN]> = PerCpuArray::with_max_entries(HOOK_SLOTS, 0);

/// What a tunnel's outer packet carries, per CPU and per hook like `SCRATCH`: found before
/// the filter runs, copied into the event after it.
#[map]
pub static TUNNELS: PerCpuArray<TunnelSummary> = PerCpuArray::with_max_entries(HOOK_SLOTS, 0);

/// The inner packet's headers, from its L3 header on, for the filter (per CPU and per hook).
#[map]
pub static INNER_SCRATCH: PerCpuArray<[u8; HDR_LEN]> = PerCpuArray::with_max_entries(HOOK_SLOTS, 0);

/// The tcpdump filter compiled by libpcap, for L2 and for L3 views (`cbpf::L2_SLOT`, `L3_SLOT`).
#[map]
pub static FILTERS: Array<Program> = Array::with_max_entries(2, 0);

/// The filter interpreter's state between two `bpf_loop` steps, per CPU and per hook like
/// `SCRATCH`: in a map because the stack of the programs that call the filter has no room
/// left for it (see `filter::tracer_filter`).
#[map]
pub static FILTER_RUNS: PerCpuArray<FilterRun> = PerCpuArray::with_max_entries(HOOK_SLOTS, 0);

/// One run of the filter interpreter.
pub struct FilterRun {
    pub machine: Machine,
    pub view: View,
    /// The filter's scratch memory (`M[]`).
    pub mem: [u32; MEM_WORDS],
    /// The bytes of the view the run read.
    pub seen: ReadMask,
}

/// The bytes a filter program judges, gathered in one place so that two judgements can be
/// compared: the lengths, then the link-layer and L3 bytes, zero past their lengths.
#[repr(C)]
pub struct ViewBytes {
    pub l2_len: u32,
    pub l3_len: u32,
    pub wire_len: u32,
    pub _pad: u32,
    pub l2: [u64; L2_LEN / 8],
    pub l3: [u64; HDR_LEN / 8],
}

/// The view being judged, per CPU and per hook like `SCRATCH` (a hook interrupting another
/// on its CPU has its own).
#[map]
pub static VIEWS: PerCpuArray<ViewBytes> = PerCpuArray::with_max_entries(HOOK_SLOTS, 0);

/// The last views each filter program judged on this CPU (`VERDICT_WAYS` a program, at
/// `slot * VERDICT_WAYS + way`), the bytes each run read and its verdict: the hooks of one
/// packet run back to back on one CPU and mostly show the filter the same bytes, and the
/// packets of one flow differ where it does not read (see `filter::tracer_filter`). Two
/// ways, one a direction (see `filter::direction`), since a flow's two directions alternate
/// on one CPU (a receiver's ACKs are sent in the softirq that delivered the data).
#[map]
pub static VERDICTS: PerCpuArray<Verdict> = PerCpuArray::with_max_entries(2 * VERDICT_WAYS, 0);

/// Views remembered per filter program and CPU in `VERDICTS`.
pub const VERDICT_WAYS: u32 = 2;

#[repr(C)]
pub struct Verdict {
    /// Odd while a program writes the entry; a program that interrupts the writer on its CPU
    /// then neither trusts nor rewrites it, and a reader interrupted by a writer sees the
    /// number change.
    pub seq: u32,
    pub accept: u32,
    /// The lengths of the views the verdict holds for.
    pub lengths: Lengths,
    /// The view's bytes where the run read (zero elsewhere; its lengths are not used).
    pub view: ViewBytes,
    /// Which bytes the run read (`cbpf::ReadMask`'s first words: the L2 part's, then the L3
    /// part's): a view of `lengths` with these bytes gets the same verdict.
    pub read: [u64; VIEW_WORDS],
}

/// The words of a view's bytes: its L2 part's, then its L3 part's.
pub const VIEW_WORDS: usize = (L2_LEN + HDR_LEN) / 8;

/// The pass through a netfilter hook that the first program settled for the last one on this
/// CPU (see `netfilter::tracer_nf_last`), and the addresses of the packet it last left alone,
/// which the route lookup of a received packet is judged by (see
/// `tracepoints::tracer_fib_lookup`).
#[map]
pub static NF_SETTLED: PerCpuArray<NfSettled> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
pub struct NfSettled {
    pub skb: u64,
    /// The `nf_hook_state` of the pass through the hook, where the tracer's two programs are
    /// its only functions; 0 otherwise.
    pub state: u64,
    /// The packet's IPv4 source and destination as it carries them (0 for IPv6), of one left
    /// alone; 0 once the receive of another packet began on this CPU.
    pub ipv4: u64,
}

/// The tc directions where the tracer's two tcx programs sit side by side on every traced
/// device of an ifindex (`TC_ALONE_INGRESS`, `TC_ALONE_EGRESS` bits), by ifindex: written by
/// userspace as it attaches them (see `tc::first`). A tc program knows its device's ifindex
/// from its context at no cost, not its namespace: a bit is set only where every device of
/// that number is so.
#[map]
pub static TC_ALONE: Array<u8> = Array::with_max_entries(TC_ALONE_SLOTS, 0);

/// The packet whose pass through tc the first program settled for the last one on this CPU,
/// and at which hook (see `tc::settled_just_now`).
#[map]
pub static TC_SETTLED: PerCpuArray<TcSettled> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
pub struct TcSettled {
    pub skb: u64,
    /// `Hook::TcIngress` or `Hook::TcEgress` where the first program settled the pass for the
    /// last one (the two are the direction's only programs); 0 otherwise.
    pub hook: u32,
    pub _pad: u32,
}

/// The last judgement of an skb a point made on this CPU (see `judged`).
#[map]
pub static JUDGED: PerCpuArray<Judged> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Judged {
    pub skb: u64,
    /// `skb->len` without the Ethernet header where the point counts it (`judged::l3_len`).
    pub l3_len: u32,
    pub ifindex: u32,
    /// The point that judged it (`Hook`).
    pub hook: u16,
    /// 1 where the trace left the packet alone.
    pub rejected: u16,
}

// SAFETY: the view's addresses are plain numbers to the programs (read only through
// `bpf_probe_read_kernel`), and each CPU has its own copy of the map's values.
unsafe impl Sync for FilterRun {}

#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets::UNSET;

#[unsafe(no_mangle)]
pub static CONFIG: TraceConfig = TraceConfig {
    netns_filter: 0,
    iface_filter: 0,
    filter_l2: 0,
    filter_l3: 0,
    snaplen: 0,
    inert: 0,
    _pad: 0,
    wake_every: 0,
};

/// Reads one field of the `OFFSETS` global. Globals live in .rodata, which userspace writes
/// before load; the volatile read keeps the compiler from folding in the defaults above.
macro_rules! offset {
    ($field:ident) => {
        // SAFETY: a reference to a field of an immutable, initialised static: aligned and valid.
        unsafe { core::ptr::read_volatile(&$crate::maps::OFFSETS.$field) }
    };
}

/// Reads one field of the `CONFIG` global (see [`offset!`]).
macro_rules! config {
    ($field:ident) => {
        // SAFETY: a reference to a field of an immutable, initialised static: aligned and valid.
        unsafe { core::ptr::read_volatile(&$crate::maps::CONFIG.$field) }
    };
}

pub(crate) use {config, offset};

/// Whether every program is to return before it reads anything ([`TraceConfig::inert`]).
/// A trace that is not inert pays a load and a branch a run for the question.
#[inline(always)]
pub fn inert() -> bool {
    config!(inert) != 0
}
