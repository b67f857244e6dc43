//! Wire types shared by the kernel programs (`tracer-ebpf`) and userspace (`tracer`).
//!
//! Everything here is `#[repr(C)]`, integer-only, with explicit padding and a compile-time
//! size check, so that both sides agree on the bytes. Ids are fixed numbers: never reuse one.
#![no_std]

pub mod catalogue;
pub mod cbpf;
pub mod config;
pub mod event;
pub mod hook;
pub mod nf_census;
pub mod parse;
pub mod synth;
pub mod tunnel;

/// Names of the maps and globals in the eBPF object, shared so that neither side misspells them.
pub mod names {
    /// Ring buffer carrying [`crate::event::Event`] records to userspace.
    pub const EVENTS: &str = "EVENTS";
    /// Per-CPU array of `u64`, indexed by hook id: events lost because the ring buffer was full.
    pub const LOST: &str = "LOST";
    /// Per-CPU `u32`, one slot: events lost on this CPU since its last queued event, handed to
    /// the next one as [`crate::event::EventHeader::lost_before`].
    pub const LOST_SINCE: &str = "LOST_SINCE";
    /// Hash of netns inode -> 1: the namespaces to report (global tracepoints see all of them).
    pub const TRACED_NETNS: &str = "TRACED_NETNS";
    /// Hash of [`crate::config::iface_key`] -> 1: interfaces where a packet's trace may start.
    pub const TRACED_IFACES: &str = "TRACED_IFACES";
    /// Hash of netns inode -> [`crate::nf_census::hook_bit`]s: the netfilter hooks of that
    /// namespace where only the tracer's first program is linked (nothing else was there).
    pub const NF_FIRST_ONLY: &str = "NF_FIRST_ONLY";
    /// LRU hash of skb address -> 1: packets that matched the filter once, followed through
    /// NAT until their skb is freed.
    pub const FOLLOWED: &str = "FOLLOWED";
    /// Array of two [`crate::cbpf::Program`]s: the filter for hooks that see the Ethernet
    /// header ([`crate::cbpf::L2_SLOT`]) and for hooks that see the packet from its IP header
    /// on ([`crate::cbpf::L3_SLOT`]).
    pub const FILTERS: &str = "FILTERS";
    /// Per-CPU scratch memory of the filter interpreter, one slot per hook.
    pub const FILTER_RUNS: &str = "FILTER_RUNS";
    /// Array of `u8` by ifindex ([`crate::config::TC_ALONE_SLOTS`]): the tc directions
    /// ([`crate::config::TC_ALONE_INGRESS`], [`crate::config::TC_ALONE_EGRESS`]) where the
    /// tracer's two tcx programs have every device of that ifindex to themselves.
    pub const TC_ALONE: &str = "TC_ALONE";
    /// Global [`crate::config::KernelOffsets`], filled from the running kernel's BTF.
    pub const OFFSETS: &str = "OFFSETS";
    /// Global [`crate::config::TraceConfig`]: the in-kernel filter and switches.
    pub const CONFIG: &str = "CONFIG";
}
