//! Load-time configuration handed to the kernel programs as globals.

/// Offsets of kernel struct fields the programs read, taken from the running kernel's BTF
/// (no CO-RE in aya's Rust eBPF, and offsets differ between kernels and configs).
/// `u32::MAX` marks a field this kernel does not have; a read through it yields nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    pub skb_len: u32,
    pub skb_head: u32,
    pub skb_data: u32,
    pub skb_end: u32,
    pub skb_network_header: u32,
    pub skb_mac_header: u32,
    pub skb_protocol: u32,
    pub skb_mark: u32,
    pub skb_dev: u32,
    /// `sk_buff.sk`: the owning socket, where the device is gone (delivered, being sent).
    pub skb_sk: u32,
    pub dev_ifindex: u32,
    pub dev_nd_net: u32,
    /// `struct net` -> `ns.inum`.
    pub net_inum: u32,
    pub shinfo_gso_segs: u32,
    /// `skb_shared_info.dataref`: how many skbs share this one's data (clones).
    pub shinfo_dataref: u32,
    /// `struct xdp_buff` -> `rxq`.
    pub xdp_rxq: u32,
    /// `struct xdp_rxq_info` -> `dev`.
    pub rxq_dev: u32,
    /// `struct sock_common` (first member of every socket): namespace and 4-tuple.
    pub sk_net: u32,
    pub sk_family: u32,
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    pub sk_dport: u32,
    pub sk_num: u32,
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    /// `struct nf_hook_state`: which hook and family, devices, namespace.
    pub nf_state_hook: u32,
    pub nf_state_pf: u32,
    pub nf_state_in: u32,
    pub nf_state_out: u32,
    pub nf_state_net: u32,
    /// `struct flowi4` (routing lookups) and `struct fib_nh_common` -> `nhc_dev`.
    pub fl4_proto: u32,
    pub fl4_saddr: u32,
    pub fl4_daddr: u32,
    pub fl4_sport: u32,
    pub fl4_dport: u32,
    pub nhc_dev: u32,
    /// `sk_buff.data_len`: the bytes in page fragments, beyond the linear part.
    pub skb_data_len: u32,
    /// `struct net` -> `nf.hooks_ipv4` and `nf.hooks_ipv6`: each hook's registered functions
    /// (`struct nf_hook_entries *`, one per hook), and their count (`num_hook_entries`).
    pub net_nf_hooks_ipv4: u32,
    pub net_nf_hooks_ipv6: u32,
    pub nf_entries_num: u32,
    /// `task_struct.nsproxy` and `nsproxy.net_ns`: the namespace of the task a census runs
    /// in (see [`crate::nf_census`]).
    pub task_nsproxy: u32,
    pub nsproxy_net_ns: u32,
}

impl KernelOffsets {
    /// Every field unknown.
    pub const UNSET: KernelOffsets = {
        const WORDS: usize = core::mem::size_of::<KernelOffsets>() / 4;
        // SAFETY: `KernelOffsets` is `repr(C)` and made of `u32`s only (168 bytes, asserted
        // below): the same size and layout as `[u32; WORDS]`, and any value valid.
        unsafe { core::mem::transmute::<[u32; WORDS], KernelOffsets>([u32::MAX; WORDS]) }
    };
}

/// Switches of the kernel programs. A packet is reported when it passes the filter programs
/// (the `FILTERS` map) and comes from a traced interface; once it did, its skb is followed
/// through NAT rewrites, whatever the filter says of the rewritten headers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceConfig {
    /// 1 when only namespaces in the `TRACED_NETNS` map are reported by global hooks.
    pub netns_filter: u8,
    /// 1 when only interfaces in the `TRACED_IFACES` map start a packet's trace.
    pub iface_filter: u8,
    /// 1 when `FILTERS` holds a program for hooks that see the Ethernet header.
    pub filter_l2: u8,
    /// 1 when `FILTERS` holds a program for hooks that see the packet from its IP header on.
    pub filter_l3: u8,
    /// Packet bytes to copy into each event (`-w`); 0 copies none.
    pub snaplen: u16,
    /// 1 when every program returns at once, reading nothing and reporting nothing: what the
    /// attachments alone cost the kernel (its dispatch to each program, netfilter's and tc's
    /// paths made active), the floor under any program body (`cargo xtask bench`).
    pub inert: u8,
    pub _pad: u8,
    /// A program wakes the ring's reader with every this many records it writes on a CPU
    /// ([`crate::event::WAKE_EVERY`] at most; fewer where the ring is small for its CPUs).
    pub wake_every: u16,
}

impl TraceConfig {
    /// Whether any packet field or interface is filtered on (then matches are followed).
    pub const fn filters_packets(&self) -> bool {
        self.filter_l2 != 0 || self.filter_l3 != 0 || self.iface_filter != 0
    }
}

/// Entries of the `TC_ALONE` map, indexed by ifindex (a device numbered beyond is never
/// taken for alone).
pub const TC_ALONE_SLOTS: u32 = 1 << 16;
/// `TC_ALONE` bit: nothing runs between the tracer's tcx programs at ingress.
pub const TC_ALONE_INGRESS: u8 = 1;
/// `TC_ALONE` bit: nothing runs between them at egress.
pub const TC_ALONE_EGRESS: u8 = 2;

/// Key of the `TRACED_IFACES` map: an ifindex is only unique within its namespace.
pub const fn iface_key(netns: u32, ifindex: u32) -> u64 {
    ((netns as u64) << 32) | ifindex as u64
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 168);
const _: () = assert!(core::mem::size_of::<TraceConfig>() == 10);

// SAFETY: `repr(C)`, 42 `u32`s (168 bytes, asserted above): no padding, any bit pattern valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelOffsets {}
// SAFETY: `repr(C)`, four `u8`, a `u16` at offset 4 and two `u8`: 8 bytes (asserted above),
// no padding, any bit pattern valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for TraceConfig {}
