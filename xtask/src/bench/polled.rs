//! `cargo xtask udp-sink` and `udp-blast` (hidden; the datapath benchmark runs them inside the
//! namespaces, each pinned to a CPU of its own): 64-byte datagrams as fast as one CPU sends
//! them, received by a socket read in a busy loop that never sleeps.
//!
//! iperf3's receiver sleeps in `recv` when its socket is empty, so the sending CPU, which runs
//! each datagram's whole path over a veth (softirq included), may also have to wake it for
//! each datagram: on a VM an inter-processor interrupt that exits to the host. With a receiver
//! that polls, no datagram wakes anybody: the rate follows the sending CPU's time per datagram
//! alone, and the programs' share of it can be read off. (Measured, BENCHMARKS-HISTORY.md, session 21: the ratio
//! to the baseline is the same as with iperf3, so the wakeups were not what bounds it.)
//!
//! The receiver's socket is not connected, as most UDP servers': each datagram takes an input
//! route lookup that iperf3's connected socket skips (early demux), and the tracer's
//! `fib_lookup` point with it.

use std::{
    io::ErrorKind,
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

/// The payload: 64 bytes, as iperf3 `-l 64` sends.
const PAYLOAD: [u8; 64] = [0x5a; 64];

/// Sends datagrams to `to` for `seconds`; prints how many were sent (failed sends, e.g. a full
/// queue, are not counted).
pub fn blast(to: SocketAddr, seconds: u64) -> Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(to)?;
    let (start, mut sent) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_secs(seconds) {
        // The clock read once per 64 sends: its cost stays out of the rate.
        for _ in 0..64 {
            if socket.send(&PAYLOAD).is_ok() {
                sent += 1;
            }
        }
    }
    println!("{sent}");
    Ok(())
}

/// Receives on `port` without ever sleeping, until no datagram came for a second after the
/// first one (or `seconds` + 5 passed without any); prints `datagrams seconds`, the seconds
/// from the first datagram to the last.
pub fn sink(port: u16, seconds: u64) -> Result<()> {
    let socket = UdpSocket::bind(("0.0.0.0", port)).with_context(|| format!("udp port {port}"))?;
    socket.set_nonblocking(true)?;
    let started = Instant::now();
    let (mut count, mut first, mut last) = (0u64, None::<Instant>, started);
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv(&mut buf) {
            Ok(_) => {
                count += 1;
                // One clock read per datagram is part of the receiver's cost, not the
                // sender's, whose CPU is the one measured.
                last = Instant::now();
                first.get_or_insert(last);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let quiet = match first {
                    Some(_) => last.elapsed() > Duration::from_secs(1),
                    None => started.elapsed() > Duration::from_secs(seconds + 5),
                };
                if quiet {
                    break;
                }
                std::hint::spin_loop();
            }
            Err(e) => return Err(e).context("recv"),
        }
    }
    let span = first.map_or(0.0, |first| (last - first).as_secs_f64());
    println!("{count} {span}");
    Ok(())
}
