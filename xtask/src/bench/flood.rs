//! `cargo xtask flood` (hidden; the memory benchmark runs it inside the client namespace):
//! one-datagram flows, each from a fresh socket to a port of its own, at a steady rate.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::Result;

pub fn run(to: SocketAddr, rate: u64, seconds: u64) -> Result<()> {
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let mut sent: u64 = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..per_tick {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            let mut target = to;
            target.set_port(10_000 + (sent % 50_000) as u16);
            // Nobody listens: the server answers with ICMP port unreachable (rate limited)
            // or drops it; either way a new flow for the tracer.
            let _ = socket.send_to(b"one datagram, one flow", target);
            sent += 1;
        }
        let due = tick * (sent / per_tick) as u32;
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    println!("{sent}");
    Ok(())
}
