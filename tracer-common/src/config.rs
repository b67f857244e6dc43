//! Load-time configuration handed to the kernel programs as globals.

/// Offsets of kernel struct fields the programs read, taken from the running kernel's BTF
/// (no CO-RE in aya's Rust eBPF, and offsets differ between kernels and configs).
/// `u32::MAX` marks a field this kernel does not have.
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
    pub dev_ifindex: u32,
    pub dev_nd_net: u32,
    /// `struct net` -> `ns.inum`.
    pub net_inum: u32,
    pub shinfo_gso_segs: u32,
    /// `struct xdp_buff` -> `rxq`.
    pub xdp_rxq: u32,
    /// `struct xdp_rxq_info` -> `dev`.
    pub rxq_dev: u32,
    pub _pad: u32,
}

impl KernelOffsets {
    pub const UNSET: KernelOffsets = KernelOffsets {
        skb_len: u32::MAX,
        skb_head: u32::MAX,
        skb_data: u32::MAX,
        skb_end: u32::MAX,
        skb_network_header: u32::MAX,
        skb_mac_header: u32::MAX,
        skb_protocol: u32::MAX,
        skb_mark: u32::MAX,
        skb_dev: u32::MAX,
        dev_ifindex: u32::MAX,
        dev_nd_net: u32::MAX,
        net_inum: u32::MAX,
        shinfo_gso_segs: u32::MAX,
        xdp_rxq: u32::MAX,
        rxq_dev: u32::MAX,
        _pad: 0,
    };
}

/// In-kernel filter: an event is emitted only when every set field matches. Zero means "any".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceConfig {
    /// Match when source or destination equals `addr` (bytes as in `PacketSummary`).
    pub addr: [u8; 16],
    /// 4 or 6 when `addr` is set, 0 otherwise.
    pub addr_family: u8,
    /// IP protocol number, 0 for any.
    pub l4_proto: u8,
    /// Match when source or destination port equals this, 0 for any.
    pub port: u16,
    /// 1 when only namespaces in the `TRACED_NETNS` map are reported by global tracepoints.
    pub netns_filter: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 64);
const _: () = assert!(core::mem::size_of::<TraceConfig>() == 24);

#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelOffsets {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for TraceConfig {}
