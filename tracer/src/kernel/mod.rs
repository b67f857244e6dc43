//! The kernel side: loading and attaching the programs, links, BTF, namespaces, netlink
//! and raw syscalls, and what the tracer reads off the running system (rules, live captures,
//! veth peers). Imports nothing else of this crate.

pub mod clock;
pub mod containers;
pub mod counters;
pub mod filter;
pub mod kallsyms;
pub mod kernel_btf;
pub mod libpcap;
pub mod live_capture;
pub mod loader;
pub mod misses;
pub mod netfilter;
pub mod netns;
pub mod nf_census;
pub mod nf_link;
pub mod nsid;
pub mod privileges;
pub mod rules;
pub mod verifier;
pub mod veth;
pub mod xdp_owner;
