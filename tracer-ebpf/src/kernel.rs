//! Reading kernel structs through offsets taken from the running kernel's BTF.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_common::{
    event::PacketSummary,
    hook::Hook,
    parse::{parse_l3, ETH_P_IP, ETH_P_IPV6, HDR_LEN},
};

use crate::maps::{offset, SCRATCH};

/// Reads a `T` at `base + off`; `None` when the offset is unknown on this kernel or the read
/// faults. `T` is a plain integer or byte array (every caller's is), valid for any bytes.
#[inline(always)]
pub fn read<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == u32::MAX {
        return None;
    }
    // SAFETY: the address is never dereferenced directly: the helper checks it and returns an
    // error on a fault. The result is a `T` made of whatever bytes are there, valid because
    // every `T` read here is an integer or a byte array.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

/// Reads a `T` at `base + off` of a kernel struct that the verifier knows by its BTF type: a
/// `tp_btf` argument, a field of a netfilter program's context, or a pointer read from one of
/// those with this function. A plain load, which the verifier checks against the type and
/// turns into one that reads zeroes where it would fault: a few nanoseconds, where
/// [`read`]'s helper call costs about 40. `None` when the offset is unknown on this kernel.
#[inline(always)]
pub fn field<T: Copy>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == u32::MAX {
        return None;
    }
    // SAFETY: `base` is a pointer to a kernel struct the verifier knows by its BTF type (the
    // callers' promise; the verifier refuses the program otherwise) and `off` that struct's
    // field of type `T` by the running kernel's BTF; the kernel's exception table makes a
    // faulting load read zeroes. `T` is an integer or a byte array, valid for any bytes.
    Some(unsafe { core::ptr::read_volatile((base + off as u64) as *const T) })
}

/// How a kernel struct is read: [`Typed`] through a pointer the verifier knows by its BTF
/// type, [`Probed`] at any address.
pub trait Memory {
    fn get<T: Copy>(base: u64, off: u32) -> Option<T>;
}

/// Plain loads ([`field`]).
pub enum Typed {}

/// `bpf_probe_read_kernel` ([`read`]): where the pointer came from a helper or a context
/// the verifier only knows as a number (tc's `__sk_buff`, XDP's `xdp_md`).
pub enum Probed {}

impl Memory for Typed {
    #[inline(always)]
    fn get<T: Copy>(base: u64, off: u32) -> Option<T> {
        field(base, off)
    }
}

impl Memory for Probed {
    #[inline(always)]
    fn get<T: Copy>(base: u64, off: u32) -> Option<T> {
        read(base, off)
    }
}

/// The ifindex of a `struct net_device` (0 when unknown).
#[inline(always)]
pub fn dev_ifindex<M: Memory>(dev: u64) -> u32 {
    M::get::<u32>(dev, offset!(dev_ifindex)).unwrap_or(0)
}

/// Namespace inode of a `struct net_device` (0 when unknown).
#[inline(always)]
pub fn dev_netns<M: Memory>(dev: u64) -> u32 {
    let net = M::get::<u64>(dev, offset!(dev_nd_net)).unwrap_or(0);
    M::get::<u32>(net, offset!(net_inum)).unwrap_or(0)
}

/// A sighting's namespace: known, or read from the device only when the event is written or
/// an interface filter asks. tc and XDP contexts are not typed, so the chain takes three or
/// four probe reads (about 40 ns each), which a packet the filter rejects does not need.
#[derive(Clone, Copy)]
pub enum Netns {
    Known(u32),
    /// The device's of this `struct sk_buff` (tc).
    OfSkb(u64),
    /// The receiving device's of this `struct xdp_buff` (XDP).
    OfXdp(u64),
}

impl Netns {
    /// The namespace's inode number (0 when unknown).
    #[inline(always)]
    pub fn inum(self) -> u32 {
        match self {
            Netns::Known(inum) => inum,
            Netns::OfSkb(skb) => {
                dev_netns::<Probed>(read::<u64>(skb, offset!(skb_dev)).unwrap_or(0))
            }
            Netns::OfXdp(xdp) => {
                // ctx is really a `struct xdp_buff`: rxq -> dev -> nd_net gives the namespace,
                // which the ifindex alone cannot (every namespace numbers its interfaces from 1).
                let rxq = read::<u64>(xdp, offset!(xdp_rxq)).unwrap_or(0);
                dev_netns::<Probed>(read::<u64>(rxq, offset!(rxq_dev)).unwrap_or(0))
            }
        }
    }
}

/// (ifindex, netns inode) of a `struct net_device`.
#[inline(always)]
pub fn dev_identity<M: Memory>(dev: u64) -> (u32, u32) {
    (dev_ifindex::<M>(dev), dev_netns::<M>(dev))
}

/// Namespace inode of a `struct sock` (0 when unknown).
#[inline(always)]
pub fn sock_netns(sk: u64) -> u32 {
    let net = field::<u64>(sk, offset!(sk_net)).unwrap_or(0);
    field::<u32>(net, offset!(net_inum)).unwrap_or(0)
}

/// (ifindex, netns) of an skb: its device's, or, where the device is gone (on a socket's
/// queue, where UDP even reuses the field as scratch space), its socket's namespace.
#[inline(always)]
pub fn skb_identity(skb: u64, info: &SkbInfo) -> (u32, u32) {
    // A kernel address has its top bit set; UDP's scratch sizes in the field do not, and a
    // load through them would fault (handled, it reads zeroes, but a fault costs about a
    // microsecond). Tested on a copy the compiler cannot relate to `dev`, so that the null
    // check the verifier needs before the loads stays in the code.
    let kernel_address = (verifier_visible(info.dev as usize) as i64) < 0;
    let (ifindex, netns) = if kernel_address {
        dev_identity::<Typed>(info.dev)
    } else {
        (0, 0)
    };
    if netns != 0 {
        return (ifindex, netns);
    }
    let sk = field::<u64>(skb, offset!(skb_sk)).unwrap_or(0);
    (0, sock_netns(sk))
}

/// This hook's per-CPU header buffer (see `maps::SCRATCH`).
#[inline(always)]
pub fn scratch(hook: Hook) -> Option<&'static mut [u8; HDR_LEN]> {
    // SAFETY: a successful lookup's pointer to this hook's buffer on this CPU, valid for the
    // run (`'static` only in name). The slot is this hook's alone and a program does not
    // interrupt itself on its CPU; callers let one reference go before taking the next.
    SCRATCH.get_ptr_mut(hook as u32).map(|p| unsafe { &mut *p })
}

/// Parses the headers of the packet in `skb` into `packet`. `l3_hint` is the ethertype when
/// the caller knows it better than `skb->protocol` (which is not always set on the way out).
/// Returns how many header bytes the hook's scratch buffer holds (for the filter).
#[inline(always)]
pub fn skb_summary(
    skb: u64,
    info: &SkbInfo,
    l3_hint: u16,
    hook: Hook,
    packet: &mut PacketSummary,
) -> usize {
    packet.pkt_len = info.len;
    packet.mark = info.mark;
    let Some(buf) = scratch(hook) else {
        return 0;
    };
    let valid = skb_l3_headers(skb, info, buf);
    let l3_proto = match (l3_hint, info.protocol) {
        (ETH_P_IP | ETH_P_IPV6, _) => l3_hint,
        (_, ETH_P_IP | ETH_P_IPV6) => info.protocol,
        // Above the IP layer skb->protocol may not be set yet: trust the version nibble.
        _ => match buf[0] >> 4 {
            4 => ETH_P_IP,
            6 => ETH_P_IPV6,
            _ => 0,
        },
    };
    if valid > 0 {
        parse_l3(buf, valid, l3_proto, packet);
    }
    valid
}

/// The 4-tuple of a TCP socket as a packet summary: local to remote, or, with `incoming`,
/// remote to local (a segment the socket received), written into `packet`. A subprogram: its
/// address buffers then stay off the stack of the programs, whose chain of calls down to the
/// filter must fit in 512 bytes (6.1 counts each frame rounded up to 32).
#[inline(never)]
pub fn sock_summary(sk: u64, incoming: bool, packet: &mut PacketSummary) {
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    packet.l4_proto = 6;
    let mut local = [0u8; 16];
    let mut remote = [0u8; 16];
    match field::<u16>(sk, offset!(sk_family)).unwrap_or(0) {
        AF_INET => {
            packet.l3_proto = ETH_P_IP;
            let l = field::<[u8; 4]>(sk, offset!(sk_rcv_saddr)).unwrap_or_default();
            let r = field::<[u8; 4]>(sk, offset!(sk_daddr)).unwrap_or_default();
            local[..4].copy_from_slice(&l);
            remote[..4].copy_from_slice(&r);
        }
        AF_INET6 => {
            packet.l3_proto = ETH_P_IPV6;
            local = read::<[u8; 16]>(sk, offset!(sk_v6_rcv_saddr)).unwrap_or_default();
            remote = read::<[u8; 16]>(sk, offset!(sk_v6_daddr)).unwrap_or_default();
        }
        _ => return,
    }
    // skc_num is the local port in host order, skc_dport the remote one in network order.
    let local_port = field::<u16>(sk, offset!(sk_num)).unwrap_or(0);
    let remote_port = u16::from_be(field::<u16>(sk, offset!(sk_dport)).unwrap_or(0));
    if incoming {
        (packet.saddr, packet.daddr) = (remote, local);
        (packet.sport, packet.dport) = (remote_port, local_port);
    } else {
        (packet.saddr, packet.daddr) = (local, remote);
        (packet.sport, packet.dport) = (local_port, remote_port);
    }
}

/// The fields of a `struct sk_buff` that every skb hook reads (its GSO segments are read only
/// for an event: [`skb_gso_segs`]).
pub struct SkbInfo {
    pub head: u64,
    pub dev: u64,
    pub len: u32,
    pub mark: u32,
    pub protocol: u16,
}

#[inline(always)]
pub fn skb_info(skb: u64) -> SkbInfo {
    SkbInfo {
        head: field::<u64>(skb, offset!(skb_head)).unwrap_or(0),
        dev: field::<u64>(skb, offset!(skb_dev)).unwrap_or(0),
        len: field::<u32>(skb, offset!(skb_len)).unwrap_or(0),
        mark: field::<u32>(skb, offset!(skb_mark)).unwrap_or(0),
        protocol: u16::from_be(field::<u16>(skb, offset!(skb_protocol)).unwrap_or(0)),
    }
}

/// How many segments a GSO skb will be cut into (0 or 1: not a GSO packet), from its
/// `skb_shared_info` at `head + end` (`end` is an offset on 64-bit kernels), `skb` typed
/// (a `tp_btf` argument or a netfilter context's): two plain loads and one probe read, paid
/// only where an event is written (a packet the filter rejects needs none).
#[inline(always)]
pub fn skb_gso_segs(skb: u64) -> u16 {
    let head = field::<u64>(skb, offset!(skb_head)).unwrap_or(0);
    let end = field::<u32>(skb, offset!(skb_end)).unwrap_or(0);
    if head == 0 || end == 0 {
        return 0;
    }
    read::<u16>(head + end as u64, offset!(shinfo_gso_segs)).unwrap_or(0)
}

/// Whether the skb is the only one with its data: `skb_shared_info.dataref` (its low 16 bits
/// count the skbs sharing the data) is 1, so no clone of it lives on. Read like
/// [`skb_gso_segs`], only where an skb's end is reported; `head` is [`SkbInfo::head`].
#[inline(always)]
pub fn skb_data_sole(skb: u64, head: u64) -> bool {
    const DATAREF_MASK: u32 = 0xffff;
    let end = field::<u32>(skb, offset!(skb_end)).unwrap_or(0);
    if head == 0 || end == 0 {
        return false;
    }
    read::<u32>(head + end as u64, offset!(shinfo_dataref))
        .is_some_and(|dataref| dataref & DATAREF_MASK == 1)
}

/// Copies the headers from the skb's network header on into `buf`; returns the bytes valid.
/// Used where only the kernel pointer is at hand (tracepoints); `info` is what [`skb_info`]
/// already read, so no field is read twice per packet.
#[inline(always)]
pub fn skb_l3_headers(skb: u64, info: &SkbInfo, buf: &mut [u8; HDR_LEN]) -> usize {
    let (head, len) = (info.head, info.len);
    let data = field::<u64>(skb, offset!(skb_data)).unwrap_or(0);
    let network = field::<u16>(skb, offset!(skb_network_header)).unwrap_or(u16::MAX);
    if head == 0 || network == u16::MAX {
        return 0;
    }
    let l3 = head + network as u64;
    // Bytes of the packet from the L3 header to the end of the linear part; `data` may sit
    // before it (L2 still in front) or after it (L3 already pulled). The rest of the packet
    // lies in page fragments that a plain read cannot reach: past the linear end is other
    // memory (a jumbo frame sent by AF_PACKET has only its Ethernet header there), and its
    // bytes would be parsed as headers.
    let data_len = field::<u32>(skb, offset!(skb_data_len)).unwrap_or(0);
    let linear = len.saturating_sub(data_len) as u64;
    let avail = (data + linear).saturating_sub(l3);
    let n = if avail < HDR_LEN as u64 {
        avail as u32
    } else {
        HDR_LEN as u32
    };
    if n == 0 {
        return 0;
    }
    // SAFETY: `0 < n <= HDR_LEN`, the size of `buf`. `l3` is a kernel address computed from
    // the skb's fields, only handed to the helper, which checks it and fails on a fault.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            buf.as_mut_ptr().cast(),
            n,
            l3 as *const _,
        )
    };
    if ret == 0 {
        n as usize
    } else {
        0
    }
}

/// Hides `value` from the optimiser so that a bounds check written after this call stays in the
/// code, on the register the helper call uses: the verifier does not track relations between
/// registers ("a < b"), only each register's own range, and needs `0 < len <= buffer`.
#[inline(always)]
pub fn verifier_visible(value: usize) -> usize {
    // SAFETY: a reference to a local: aligned, initialised, alive.
    unsafe { core::ptr::read_volatile(&value) }
}

/// `len` as the length of a helper that copies into an `N`-byte buffer and refuses 0
/// (`ARG_CONST_SIZE`: `bpf_skb_load_bytes`, `bpf_xdp_load_bytes`): `None` unless
/// `1 <= len <= N`. The bound is checked on `len - 1`, made opaque first, and `len` rebuilt
/// from it, so that every verifier (6.1 as well as 6.18) knows `1 <= len <= N` on the very
/// register the call takes. Checked as `len == 0 || len > N`, LLVM folds both into one test of
/// `len - 1` on another register, which only newer verifiers follow back to `len`.
#[inline(always)]
pub fn helper_len<const N: usize>(len: usize) -> Option<u32> {
    let below = verifier_visible(len.wrapping_sub(1));
    if below >= N {
        return None;
    }
    Some((below + 1) as u32)
}

/// `bpf_skb_load_bytes` of up to `N` bytes at `offset` (fewer when the packet is shorter);
/// returns the bytes copied.
#[inline(always)]
pub fn skb_load<const N: usize>(
    skb: *mut core::ffi::c_void,
    skb_len: u32,
    offset: usize,
    buf: &mut [u8; N],
) -> Option<usize> {
    let avail = (skb_len as usize).checked_sub(offset)?;
    let len = helper_len::<N>(if avail < N { avail } else { N })?;
    // SAFETY: `skb` is the tc program's own context (`tc.rs` is the only caller), `buf` holds
    // `N` bytes and `1 <= len <= N`; the helper checks `offset + len` against the packet.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_skb_load_bytes(
            skb,
            offset as u32,
            buf.as_mut_ptr().cast(),
            len,
        )
    };
    (ret == 0).then_some(len as usize)
}
