//! Hand-built Ethernet frames, and an AF_PACKET raw socket that sends them out of an interface
//! exactly as built: no stack in between to fix a bad length, add padding or drop an odd header.
//! The hostile-packet tests use them to feed the tracer's parsers what a peer could send.

use crate::Netns;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DEST_OPTS: u8 = 60;

/// Destination and source MAC addresses.
#[derive(Clone, Copy)]
pub struct Macs {
    pub dst: [u8; 6],
    pub src: [u8; 6],
}

impl Macs {
    /// From `src_if` in `src` to `dst_if` in `dst`, as the kernel knows them.
    pub fn between(src: &Netns, src_if: &str, dst: &Netns, dst_if: &str) -> Macs {
        Macs {
            dst: mac(dst, dst_if),
            src: mac(src, src_if),
        }
    }

    /// An Ethernet frame: the MACs, VLAN tags `(tpid, vid)` outermost first, `ethertype`.
    pub fn frame(&self, tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + 4 * tags.len() + payload.len());
        out.extend_from_slice(&self.dst);
        out.extend_from_slice(&self.src);
        for (tpid, vid) in tags {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}

fn mac(ns: &Netns, ifname: &str) -> [u8; 6] {
    let text = ns.sh(&format!("cat /sys/class/net/{ifname}/address"));
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("a MAC address"))
        .collect();
    bytes.try_into().expect("six bytes of MAC address")
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header and what follows it.
#[derive(Clone)]
pub struct Ipv4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub id: u16,
    /// Options, a multiple of 4 bytes (IHL = 5 + len / 4).
    pub options: Vec<u8>,
    /// Flags and fragment offset as on the wire (0x2000: more fragments; offset in 8 bytes).
    pub frag: u16,
    /// Total length to claim instead of the true one (a lie the tests need).
    pub claimed_len: Option<u16>,
}

impl Ipv4 {
    pub fn new(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16) -> Ipv4 {
        Ipv4 {
            src,
            dst,
            proto,
            id,
            options: Vec::new(),
            frag: 0,
            claimed_len: None,
        }
    }

    pub fn with_options(self, options: Vec<u8>) -> Ipv4 {
        Ipv4 { options, ..self }
    }

    /// Flags and fragment offset as on the wire.
    pub fn with_frag(self, frag: u16) -> Ipv4 {
        Ipv4 { frag, ..self }
    }

    /// A total length other than the true one.
    pub fn claiming(self, len: u16) -> Ipv4 {
        Ipv4 {
            claimed_len: Some(len),
            ..self
        }
    }

    /// The header (correct checksum) followed by `payload`.
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        assert_eq!(self.options.len() % 4, 0, "options pad to 32-bit words");
        let header_len = 20 + self.options.len();
        let total = self
            .claimed_len
            .unwrap_or((header_len + payload.len()) as u16);
        let mut out = vec![0x40 | (header_len / 4) as u8, 0];
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.frag.to_be_bytes());
        out.extend_from_slice(&[64, self.proto, 0, 0]);
        out.extend_from_slice(&self.src);
        out.extend_from_slice(&self.dst);
        out.extend_from_slice(&self.options);
        let sum = checksum(&out);
        out[10..12].copy_from_slice(&sum.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}

/// A UDP datagram without checksum (0: allowed over IPv4; IPv6 receivers drop it in UDP,
/// after every point these tests look at).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    out
}

/// A TCP SYN with sequence number `seq` (checksum left 0: TCP drops it, after the points the
/// tests look at, and sends no reset that could be mistaken for a test frame).
pub fn tcp_syn(sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    out
}

/// An IPv6 extension header.
#[derive(Clone, Copy)]
pub enum Ext {
    /// Hop-by-hop options of `len` bytes (a multiple of 8), PadN inside.
    HopByHop(usize),
    /// Destination options of `len` bytes (a multiple of 8), PadN inside.
    DestOpts(usize),
    /// A routing header of an unassigned type with no segments left, which receivers skip.
    Routing,
    /// A fragment header: offset in 8-byte units, more fragments, identification.
    Fragment { offset: u16, more: bool, id: u32 },
}

impl Ext {
    fn number(self) -> u8 {
        match self {
            Ext::HopByHop(_) => IPV6_HOP_BY_HOP,
            Ext::DestOpts(_) => IPV6_DEST_OPTS,
            Ext::Routing => IPV6_ROUTING,
            Ext::Fragment { .. } => IPV6_FRAGMENT,
        }
    }

    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            Ext::HopByHop(len) | Ext::DestOpts(len) => {
                assert!(len >= 8 && len % 8 == 0, "options pad to 8 bytes");
                let mut out = vec![next, (len / 8 - 1) as u8, 1, (len - 4) as u8];
                out.resize(len, 0);
                out
            }
            Ext::Routing => vec![next, 0, 253, 0, 0, 0, 0, 0],
            Ext::Fragment { offset, more, id } => {
                let mut out = vec![next, 0];
                out.extend_from_slice(&((offset << 3) | more as u16).to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
                out
            }
        }
    }
}

/// An IPv6 header, extension headers in order, then `upper` of protocol `proto`.
pub fn ipv6(
    src: [u8; 16],
    dst: [u8; 16],
    flow_label: u32,
    exts: &[Ext],
    proto: u8,
    upper: &[u8],
) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, ext) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, |e| e.number());
        chain.extend(ext.bytes(next));
    }
    chain.extend_from_slice(upper);
    let first = exts.first().map_or(proto, |e| e.number());
    let mut out = (0x6000_0000u32 | (flow_label & 0x000f_ffff))
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(&(chain.len() as u16).to_be_bytes());
    out.extend_from_slice(&[first, 64]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
    out.extend(chain);
    out
}

/// Sends each of `frames` out of `ifname` in `ns` through an AF_PACKET raw socket, as is.
/// Panics naming the frame the kernel refused.
pub fn send(ns: &Netns, ifname: &str, frames: Vec<(String, Vec<u8>)>) {
    let ifname = std::ffi::CString::new(ifname).expect("interface name");
    ns.enter(move || {
        // SAFETY: plain socket(2); protocol 0 opens a send-only packet socket (it receives
        // nothing, so it cannot fill up while the test runs).
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(fd >= 0, "AF_PACKET socket: {}", last_error());
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
        assert!(ifindex > 0, "no interface {ifname:?}");
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = ifindex as i32;
        for (name, frame) in &frames {
            // SAFETY: `frame` and `to` outlive the call; lengths are theirs.
            let sent = unsafe {
                libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&to as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(
                sent,
                frame.len() as isize,
                "the kernel refused to send frame '{name}' ({} bytes): {}",
                frame.len(),
                last_error()
            );
        }
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    });
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

impl crate::Tcpdump {
    /// Stops the capture; returns the frames it captured, as tcpdump wrote them (with the
    /// VLAN tag the kernel had taken off put back, as libpcap does).
    pub fn stop_frames(mut self) -> Vec<Vec<u8>> {
        self.end();
        let file = std::fs::read(self.capture.file()).expect("the capture file");
        pcap_frames(&file)
    }
}

/// The frames of a classic pcap file (tcpdump -w), in order.
fn pcap_frames(file: &[u8]) -> Vec<Vec<u8>> {
    let word = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
    assert!(
        file.len() >= 24 && matches!(word(0), 0xa1b2_c3d4 | 0xa1b2_3c4d),
        "not a little-endian pcap file ({} bytes)",
        file.len()
    );
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= file.len() {
        let captured = word(at + 8) as usize;
        let start = at + 16;
        frames.push(file[start..start + captured].to_vec());
        at = start + captured;
    }
    frames
}
