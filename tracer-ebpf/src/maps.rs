//! Maps and load-time globals. Userspace sets sizes and values at load time (see
//! `tracer_common::names`).

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    config::{KernelOffsets, TraceConfig},
    hook::HOOK_SLOTS,
};

/// Resized by userspace from `--ring-size`.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(HOOK_SLOTS, 0);

#[map]
pub static TRACED_NETNS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);

#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets::UNSET;

#[unsafe(no_mangle)]
pub static CONFIG: TraceConfig = TraceConfig {
    addr: [0; 16],
    addr_family: 0,
    l4_proto: 0,
    port: 0,
    netns_filter: 0,
    _pad: [0; 3],
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
