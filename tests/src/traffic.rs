//! Traffic shared by tests.

use crate::{Pair, ADDR_B};

impl Pair {
    /// Two pings from `a` to `b`, then a TCP exchange with `b`'s `port` (200 bytes, "ok"
    /// back), then `more` on the same thread inside `a`: the mixed traffic of the filter and
    /// output tests.
    pub fn ping_and_exchange(&self, port: u16, more: impl FnOnce() + Send + 'static) {
        use std::io::{Read, Write};
        use std::net::{SocketAddr, TcpListener, TcpStream};
        let to: SocketAddr = format!("{ADDR_B}:{port}").parse().unwrap();
        let listener = self.b.enter(move || TcpListener::bind(to).unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 200];
            conn.read_exact(&mut request).unwrap();
            conn.write_all(b"ok").unwrap();
        });
        self.a.sh(&format!("ping -c 2 -i 0.2 -W 1 {ADDR_B}"));
        self.a.enter(move || {
            let mut conn = TcpStream::connect(to).unwrap();
            conn.write_all(&[b'x'; 200]).unwrap();
            let mut reply = [0u8; 2];
            conn.read_exact(&mut reply).unwrap();
            more();
        });
        server.join().unwrap();
    }
}
