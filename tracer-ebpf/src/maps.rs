//! Maps and load-time globals. Userspace sets sizes and values at load time (see
//! `tracer_common::names`).

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    config::{KernelOffsets, TraceConfig},
    hook::HOOK_SLOTS,
    parse::HDR_LEN,
};

/// Resized by userspace from `--ring-size`.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(HOOK_SLOTS, 0);

#[map]
pub static TRACED_NETNS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);

#[map]
pub static TRACED_IFACES: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);

/// LRU: a followed skb whose free we missed (a lost event) ages out instead of filling it.
#[map]
pub static FOLLOWED: LruHashMap<u64, u64> = LruHashMap::with_max_entries(65536, 0);

/// Per-CPU room for the copied headers (the 512-byte stack cannot hold them beside the rest),
/// one slot per hook: a program may interrupt another one on its CPU, but not itself.
#[map]
pub static SCRATCH: PerCpuArray<[u8; HDR_LEN]> = PerCpuArray::with_max_entries(HOOK_SLOTS, 0);

#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets::UNSET;

#[unsafe(no_mangle)]
pub static CONFIG: TraceConfig = TraceConfig {
    addr: [0; 16],
    addr_family: 0,
    addr_prefix: 0,
    l4_proto: 0,
    netns_filter: 0,
    port: 0,
    iface_filter: 0,
    _pad: 0,
};

/// Reads one field of the `OFFSETS` global. Globals live in .rodata, which userspace writes
/// before load; the volatile read keeps the compiler from folding in the defaults above.
macro_rules! offset {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&$crate::maps::OFFSETS.$field) }
    };
}

/// Reads one field of the `CONFIG` global (see [`offset!`]).
macro_rules! config {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&$crate::maps::CONFIG.$field) }
    };
}

pub(crate) use {config, offset};
