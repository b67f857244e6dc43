//! Real traffic for labs: sockets opened inside a lab's namespaces.

use std::{
    io::{Read, Write},
    net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::topology::sh;
use crate::netns::Netns;

fn addr(ip: &str, port: u16) -> Result<SocketAddr> {
    Ok(SocketAddr::new(ip.parse::<IpAddr>()?, port))
}

/// A TCP listener inside `netns`, ready before the trace starts.
pub fn listen(netns: &str, ip: &str, port: u16) -> Result<TcpListener> {
    let at = addr(ip, port)?;
    let listener = Netns::open(netns)?.run(|| TcpListener::bind(at))??;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves one connection on another thread, until `within` has passed: reads the request
/// (up to `request_len` bytes) and answers `reply`.
pub fn serve_once(listener: TcpListener, request_len: usize, reply: Vec<u8>, within: Duration) {
    std::thread::spawn(move || {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(within));
                    let mut request = vec![0u8; request_len];
                    if conn.read_exact(&mut request).is_ok() {
                        let _ = conn.write_all(&reply);
                    }
                    // Hold the connection until the lab is over, so its end adds no packets.
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
}

/// Connects from `netns` to `ip:port`, sends `request` and waits for `reply_len` bytes, all
/// within `timeout`. Returns whether the whole reply came.
pub fn request(
    netns: &str,
    ip: &str,
    port: u16,
    request: Vec<u8>,
    reply_len: usize,
    timeout: Duration,
) -> Result<bool> {
    let to = addr(ip, port)?;
    let ns = Netns::open(netns)?;
    Ok(ns.run(move || {
        let Ok(mut conn) = TcpStream::connect_timeout(&to, timeout) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(timeout));
        let mut reply = vec![0u8; reply_len];
        let ok = conn.write_all(&request).is_ok() && conn.read_exact(&mut reply).is_ok();
        let _ = conn.shutdown(Shutdown::Both);
        ok
    })?)
}

/// Connects from `netns` to `ip:port`, giving up after `timeout`; returns whether it could.
pub fn connect(netns: &str, ip: &str, port: u16, timeout: Duration) -> Result<bool> {
    let to = addr(ip, port)?;
    Ok(Netns::open(netns)?.run(move || TcpStream::connect_timeout(&to, timeout).is_ok())?)
}

/// `ping` from `netns`: `count` echo requests of `size` bytes of payload, "don't fragment",
/// from address `from` when given.
pub fn ping(netns: &str, from: Option<&str>, ip: &str, count: u32, size: u32) -> Result<()> {
    let source = from.map(|f| format!("-I {f} ")).unwrap_or_default();
    // A lost reply is what some labs are about: ping's exit status is not an error here.
    let _ = sh(&format!(
        "ip netns exec {netns} ping -n -q -c {count} -i 0.2 -W 1 -s {size} -M do {source}{ip}"
    ));
    Ok(())
}

/// Sends `bytes` from `netns` to `ip:port` over TCP, then waits `timeout` for them to get
/// through (or not: a black hole keeps them in flight).
pub fn send_bulk(netns: &str, ip: &str, port: u16, bytes: usize, timeout: Duration) -> Result<()> {
    let to = addr(ip, port)?;
    Netns::open(netns)?.run(move || -> Result<()> {
        let mut conn = TcpStream::connect_timeout(&to, timeout).context("connect")?;
        conn.set_write_timeout(Some(timeout))?;
        let _ = conn.write_all(&vec![b'm'; bytes]);
        std::thread::sleep(timeout);
        Ok(())
    })?
}

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
    Netns::open(netns)?.run(move || -> Result<()> {
        // SAFETY: plain socket calls on a descriptor we own and close.
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
