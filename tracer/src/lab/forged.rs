//! Forged traffic for labs: a hand-made TCP segment sent from a raw socket, as a middle box
//! forging resets or a broken stack would.

use anyhow::Result;
use harness::in_netns;

/// Sends one hand-made TCP segment from `netns` (a raw socket: any source address, any
/// flags), as a middle box forging resets or a broken stack would.
pub struct Segment<'a> {
    pub src: &'a str,
    pub dst: &'a str,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub flags: u8,
}

pub fn send_raw(netns: &str, segment: &Segment) -> Result<()> {
    let src: std::net::Ipv4Addr = segment.src.parse()?;
    let dst: std::net::Ipv4Addr = segment.dst.parse()?;
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&segment.sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&segment.dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&segment.seq.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = segment.flags;
    tcp[14..16].copy_from_slice(&1024u16.to_be_bytes());
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend(src.octets());
    pseudo.extend(dst.octets());
    pseudo.extend([0, 6, 0, 20]);
    pseudo.extend(tcp);
    let checksum = internet_checksum(&pseudo);
    tcp[16..18].copy_from_slice(&checksum.to_be_bytes());
    let mut packet = [0u8; 40];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&40u16.to_be_bytes());
    packet[6] = 0x40; // don't fragment; the kernel fills in the id and the checksum
    packet[8] = 64;
    packet[9] = 6;
    packet[12..16].copy_from_slice(&src.octets());
    packet[16..20].copy_from_slice(&dst.octets());
    packet[20..].copy_from_slice(&tcp);
    in_netns(netns, move || -> Result<()> {
        // SAFETY: plain socket calls on a descriptor we own, checked and closed once; sendto
        // reads `packet.len()` bytes of `packet` and `size_of::<sockaddr_in>()` bytes of `to`,
        // both alive for the call.
        unsafe {
            // IPPROTO_RAW: we write the IP header, any source address included.
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
            anyhow::ensure!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let to = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(dst.octets()),
                },
                sin_zero: [0; 8],
            };
            let sent = libc::sendto(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            );
            libc::close(fd);
            anyhow::ensure!(sent == 40, "sendto: {}", std::io::Error::last_os_error());
        }
        Ok(())
    })?
}

fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
