//! The one event format: header, packet summary, hook-specific detail.

/// Bumped whenever the layout below changes.
pub const EVENT_VERSION: u8 = 3;

/// A kernel program wakes the ring's reader with at most every this many records it writes
/// on a CPU, not with each: a wakeup is an interrupt, which costs the packet whose event
/// triggers it a few microseconds, and a switch to the reader, which shares the CPUs with the
/// traffic (the reader also reads every 20 ms without one). 512 rather than 64: following TCP
/// bulk, the reader took 10% less CPU and the flow ran 5% faster (BENCHMARKS.md). Fewer where
/// every CPU's unannounced records would take more than an eighth of the ring
/// ([`wake_every`]).
pub const WAKE_EVERY: u32 = 512;

/// How many records a CPU writes before it wakes the reader, for a ring of `ring_bytes`
/// shared by `cpus`: [`WAKE_EVERY`], or as many as keep all the CPUs' unannounced records
/// within an eighth of the ring (at least one).
pub fn wake_every(ring_bytes: u32, cpus: u32) -> u16 {
    let fits = ring_bytes as usize / 8 / (cpus.max(1) as usize) / core::mem::size_of::<Event>();
    fits.clamp(1, WAKE_EVERY as usize) as u16
}

/// What an event reports. Fixed numbers, never reused.
pub mod kind {
    /// A packet was seen at an observation point.
    pub const SIGHTING: u8 = 1;
    /// A packet was dropped (`kfree_skb`); `detail.reason` and `detail.location` are set.
    pub const DROP: u8 = 2;
    /// The skb was freed normally (`consume_skb`): the end of a life that was not a drop.
    pub const FREE: u8 = 3;
}

/// First in every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub version: u8,
    pub kind: u8,
    /// [`crate::hook::Hook`] id.
    pub hook: u8,
    /// [`crate::hook::Position`] id.
    pub position: u8,
    /// Size of the whole event in bytes.
    pub len: u16,
    pub cpu: u16,
    pub ifindex: u32,
    /// Inode of the network namespace of the device (0 when unknown).
    pub netns: u32,
    /// `bpf_ktime_get_ns`: CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// Address of the `struct sk_buff` (0 at XDP, where no skb exists yet).
    pub skb: u64,
    /// Events this CPU could not queue (ring buffer full) since its previous event: the gap
    /// lies between that event and this one, and the journeys alive then may miss points.
    pub lost_before: u32,
    pub _pad: u32,
}

/// What the parser read of the packet's headers. Addresses are in network byte order; IPv4
/// addresses occupy the first 4 bytes. For ICMP echo, `sport` is the identifier and `dport`
/// the sequence number, so that echo request and reply pair up like ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketSummary {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Ethertype of the L3 header (0x0800, 0x86dd); 0 when not IP.
    pub l3_proto: u16,
    /// Outermost VLAN id, 0 when untagged.
    pub vlan: u16,
    /// IP protocol number of the transport header.
    pub l4_proto: u8,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub sport: u16,
    pub dport: u16,
    /// IPv4 identification, or the IPv6 flow label.
    pub ip_id: u32,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    /// Bytes of the packet as the hook sees it (`skb->len` or the XDP frame).
    pub pkt_len: u32,
    /// IPv4 total length, IPv6 payload length plus 40.
    pub ip_len: u16,
    /// GSO segments the skb stands for (0 or 1 when not GSO).
    pub gso_segs: u16,
    pub mark: u32,
    pub ttl: u8,
    /// Set when the IPv4 header has "don't fragment".
    pub df: u8,
    pub _pad: [u8; 2],
}

/// The hook-specific part.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookDetail {
    /// Kernel text address of the caller that dropped the packet (`kfree_skb`).
    pub location: u64,
    /// `enum skb_drop_reason` value of the running kernel (decode it with its BTF) at
    /// `kfree_skb`; `enum sk_rst_reason` at a sent reset; the table id at `fib_lookup`.
    pub reason: u32,
    /// Hook-specific: the driver's return code at `net_dev_xmit`, a
    /// [`crate::hook::tcp_event`] at `tcp`, `type << 8 | code` at `icmp_send`, the lookup's
    /// error (as `i32`) at `fib_lookup`.
    pub verdict: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub header: EventHeader,
    pub packet: PacketSummary,
    pub detail: HookDetail,
    /// Set when `packet` is the outer header of a tunnel (VXLAN, Geneve, GRE, IPIP): the
    /// packet it carries, by which a followed packet is recognised in its encapsulated form.
    pub tunnel: TunnelSummary,
}

/// Tunnel kinds the parser recognises ([`TunnelSummary::kind`]). Fixed numbers.
pub mod tunnel {
    pub const NONE: u8 = 0;
    /// UDP to port 4789 (IANA) or 8472 (Linux's default before the IANA port).
    pub const VXLAN: u8 = 1;
    /// UDP to port 6081.
    pub const GENEVE: u8 = 2;
    /// IP protocol 47, carrying IP or Ethernet (gretap).
    pub const GRE: u8 = 3;
    /// IP protocol 4 or 41: IPv4 or IPv6 straight in IP (ipip, sit, ip6tnl).
    pub const IPIP: u8 = 4;
}

/// The packet inside an encapsulation, as far as the copied headers reach.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelSummary {
    /// One of [`tunnel`]; with `NONE` the rest means nothing (ring buffer memory is not
    /// cleared).
    pub kind: u8,
    /// Bytes of the inner packet's headers the kernel program copied (at most `HDR_LEN`).
    pub inner_len: u8,
    pub _pad: [u8; 2],
    /// VXLAN or Geneve VNI, GRE key (0 without one).
    pub id: u32,
    /// The inner packet's headers (its `pkt_len`, `mark`, `gso_segs` are not set).
    pub inner: PacketSummary,
}

/// Packet bytes that follow an [`Event`] when `-w` asked for them
/// ([`crate::config::TraceConfig::snaplen`]): a record of [`Captured`] `<SNAP_HEADERS>` or
/// `<SNAP_MAX>`, whichever holds the snap length. `EventHeader::len` is the record's size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureHeader {
    /// One of [`link`]: where the bytes start.
    pub link: u8,
    pub _pad: u8,
    /// Bytes of `data` that hold the packet.
    pub cap_len: u16,
    /// The packet's length from where the bytes start (Ethernet frame or IP packet).
    pub orig_len: u32,
}

/// Where captured bytes start: the hooks before the IP layer see the Ethernet frame, the
/// others the packet from its IP header on.
pub mod link {
    pub const NONE: u8 = 0;
    pub const ETHERNET: u8 = 1;
    pub const IP: u8 = 2;
}

/// Enough for Ethernet, two VLAN tags, IPv4 with options and TCP with options: the default,
/// headers only (userspace cuts at the end of the transport header).
pub const SNAP_HEADERS: usize = 192;
/// The most bytes a record carries (`--snaplen` beyond it is capped): a full 1500-byte frame.
pub const SNAP_MAX: usize = 1536;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Captured<const N: usize> {
    pub event: Event,
    pub capture: CaptureHeader,
    pub data: [u8; N],
}

const _: () = assert!(core::mem::size_of::<CaptureHeader>() == 8);
const _: () = assert!(core::mem::size_of::<EventHeader>() == 40);
const _: () = assert!(core::mem::size_of::<PacketSummary>() == 72);
const _: () = assert!(core::mem::size_of::<HookDetail>() == 16);
const _: () = assert!(core::mem::size_of::<TunnelSummary>() == 80);
const _: () = assert!(core::mem::size_of::<Event>() == 208);

/// TCP flag bits as in the TCP header.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

#[cfg(feature = "user")]
// SAFETY: `Event` and its four parts are `repr(C)` and made only of integers and integer
// arrays, so every bit pattern is a valid value; the fields are laid out without holes (the
// size asserts above equal the sums of the field sizes: 40 + 72 + 16 + 80 = 208), so no byte
// of it is uninitialised padding.
unsafe impl aya::Pod for Event {}

impl Event {
    /// Reads an event from ring buffer bytes; `None` if too short or of another version.
    pub fn from_bytes(bytes: &[u8]) -> Option<Event> {
        if bytes.len() < core::mem::size_of::<Event>() || bytes[0] != EVENT_VERSION {
            return None;
        }
        // SAFETY: length checked above; `Event` is plain integers, valid for any bit pattern;
        // read_unaligned because ring buffer records are only 8-byte aligned by convention.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) })
    }

    /// The packet bytes after the event in a [`Captured`] record: (link, orig_len, bytes).
    pub fn captured(bytes: &[u8]) -> Option<(u8, u32, &[u8])> {
        const AT: usize = core::mem::size_of::<Event>();
        const DATA: usize = AT + core::mem::size_of::<CaptureHeader>();
        let header = bytes.get(AT..DATA)?;
        let link = header[0];
        let cap_len = u16::from_ne_bytes([header[2], header[3]]) as usize;
        let orig_len = u32::from_ne_bytes([header[4], header[5], header[6], header[7]]);
        let data = bytes.get(DATA..DATA + cap_len)?;
        (link != link::NONE && cap_len > 0).then_some((link, orig_len, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_wakes_the_reader_before_the_cpus_fill_an_eighth_of_the_ring() {
        // The default ring on two CPUs: the most.
        assert_eq!(wake_every(4 << 20, 2), WAKE_EVERY as u16);
        // Many CPUs, or a small ring: every CPU's share of an eighth, in 208-byte records.
        assert_eq!(wake_every(4 << 20, 64), 39);
        assert_eq!(wake_every(64 << 10, 2), 19);
        // Never none: a CPU that waits for no record would never wake the reader itself.
        assert_eq!(wake_every(4096, 64), 1);
        assert_eq!(wake_every(4096, 0), 2);
    }
}
