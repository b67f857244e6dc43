//! Real traffic for labs: sockets opened inside a lab's namespaces.

use std::{
    io::{Read, Write},
    net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use harness::{in_netns, sh};

fn addr(ip: &str, port: u16) -> Result<SocketAddr> {
    Ok(SocketAddr::new(ip.parse::<IpAddr>()?, port))
}

/// A TCP listener inside `netns`, ready before the trace starts.
pub fn listen(netns: &str, ip: &str, port: u16) -> Result<TcpListener> {
    let at = addr(ip, port)?;
    let listener = in_netns(netns, || TcpListener::bind(at))??;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// One request and its reply over TCP, from `netns` to `listener` (at `ip:port`), both ends
/// in this process. The server reads the request and answers `reply_len` bytes, but only once
/// the client holds the acknowledgment of its request, so that it is always a pure ACK (were
/// the server to answer at once, the ACK might ride on the reply or go alone, depending on
/// whether its delayed-ACK timer fired first). A reply still unacknowledged after `timeouts`
/// retransmission timeouts is given up and the connection reset: a count of the kernel's
/// timeouts, not a wait, ends the exchange. Returns whether the whole reply came.
pub fn exchange(
    netns: &str,
    listener: &TcpListener,
    (ip, port): (&str, u16),
    (request_len, reply_len): (usize, usize),
    timeouts: u8,
) -> Result<bool> {
    let within = Duration::from_secs(10);
    let (mut client, mut server) = request(netns, listener, (ip, port), request_len)?;
    until_acknowledged(&client, "the request")?;
    server.write_all(&vec![b'r'; reply_len])?;
    abort_after(server, timeouts, within);
    client.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(client.read_exact(&mut vec![0u8; reply_len]).is_ok())
}

/// A connection as an application makes one: opened, a request of `request_len` bytes, a reply
/// of `reply_len`, then closed by both sides in order. Each side answers only once the other's
/// data is acknowledged, so every ACK is a pure one whatever the timing (a delayed-ACK timer
/// firing first or not would change which segments the wire carries); keep both lengths within
/// one segment, so that segmentation offload (which the tracer's XDP turns off on a veth) cuts
/// nothing either.
pub fn request_reply(
    netns: &str,
    listener: &TcpListener,
    (ip, port): (&str, u16),
    (request_len, reply_len): (usize, usize),
) -> Result<()> {
    let (mut client, mut server) = request(netns, listener, (ip, port), request_len)?;
    until_acknowledged(&client, "the request")?;
    server.write_all(&vec![b'r'; reply_len])?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    client.read_exact(&mut vec![0u8; reply_len])?;
    until_acknowledged(&server, "the reply")?;
    close_in_order(client, server)
}

/// Waits (at most 10 s) until everything `conn` sent is acknowledged.
fn until_acknowledged(conn: &TcpStream, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tcp_info(conn).tcpi_unacked > 0 {
        anyhow::ensure!(Instant::now() < deadline, "{what} was never acknowledged");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Connects from `netns` to `listener` (at `ip:port`), both ends in this process, and sends a
/// request of `request_len` bytes, which the server reads; returns (client, server).
fn request(
    netns: &str,
    listener: &TcpListener,
    (ip, port): (&str, u16),
    request_len: usize,
) -> Result<(TcpStream, TcpStream)> {
    let to = addr(ip, port)?;
    let within = Duration::from_secs(10);
    let mut client = in_netns(netns, move || TcpStream::connect_timeout(&to, within))??;
    let (mut server, _) = accept(listener)?;
    client.write_all(&vec![b'q'; request_len])?;
    server.set_read_timeout(Some(within))?;
    server.read_exact(&mut vec![0u8; request_len])?;
    Ok((client, server))
}

/// Waits up to 2 s for one connection on a non-blocking listener; the connection blocks.
pub fn accept(listener: &TcpListener) -> Result<(TcpStream, SocketAddr)> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match listener.accept() {
            Ok((conn, from)) => {
                conn.set_nonblocking(false)?;
                return Ok((conn, from));
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e).context("the server accepted no connection"),
        }
    }
}

/// The kernel's TCP_INFO of `conn` (all zeros if it cannot be read).
fn tcp_info(conn: &TcpStream) -> libc::tcp_info {
    // SAFETY: tcp_info is plain integers, for which all zeros is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, a tcp_info of that size.
    unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    info
}

/// Timeouts in a row so far on `conn` (0 once its data was acknowledged): the kernel backs
/// its timer off by one each time it fires without progress. Not `tcpi_retransmits`: data
/// whose first transmission netfilter dropped at LOCAL_OUT never left, so it is not in
/// flight and the probe timer, not the retransmission timer, fires for it (`ss` shows
/// `timer:(persist,...)`); only the backoff counts both.
fn timeouts_so_far(conn: &TcpStream) -> u8 {
    tcp_info(conn).tcpi_backoff
}

/// `TCP_FIN_WAIT2` of the kernel's `include/net/tcp_states.h`: our FIN was acknowledged.
const FIN_WAIT2: u8 = 5;

/// Closes a connection between `client` and `server` (both ends in this process) in one
/// order every run repeats: the client's FIN; the server's ACK of it; only then the server's
/// FIN, and the client's ACK. Were the server to close as soon as it read the FIN, its ACK
/// would ride on its FIN or go alone, depending on whether its delayed-ACK timer fired first.
pub fn close_in_order(client: TcpStream, mut server: TcpStream) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    client.shutdown(Shutdown::Write)?;
    while tcp_info(&client).tcpi_state != FIN_WAIT2 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server never acknowledged our FIN"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.set_read_timeout(Some(Duration::from_secs(2)))?;
    server.read_to_end(&mut Vec::new())?;
    drop(server);
    let mut client = client;
    client.set_read_timeout(Some(Duration::from_secs(2)))?;
    client.read_to_end(&mut Vec::new())?;
    Ok(())
}

/// Waits until `conn` has had `timeouts` retransmission timeouts in a row (at most `within`),
/// then resets it (SO_LINGER 0): no FIN, no retransmission after, the connection is gone.
/// The next timeout comes twice as late as the last, so the count is reached well before.
pub fn abort_after(conn: TcpStream, timeouts: u8, within: Duration) {
    let deadline = Instant::now() + within;
    while timeouts_so_far(&conn) < timeouts && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set_option(&conn, libc::SOL_SOCKET, libc::SO_LINGER, &linger);
}

/// setsockopt(2) with a plain value; an option the kernel refuses leaves the default.
fn set_option<T>(conn: &TcpStream, level: libc::c_int, name: libc::c_int, value: &T) {
    // SAFETY: setsockopt reads `size_of::<T>()` bytes from a live `T`.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        );
    }
}

/// Connects from `netns` to `ip:port`; returns whether it could. Unanswered, the kernel
/// gives up by itself after a fixed number of SYNs (TCP_SYNCNT 1: on Linux 6.x, whose first
/// SYN timeouts are linear, three SYNs one second apart, given up at 3 s), so a count, not a
/// wait, decides how many SYNs a lab sees.
pub fn connect(netns: &str, ip: &str, port: u16) -> Result<bool> {
    let ip: std::net::Ipv4Addr = ip.parse()?;
    in_netns(netns, move || -> Result<bool> {
        // SAFETY: a new socket, owned by `conn` from here on, so it is closed on every path.
        let conn = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            TcpStream::from_raw_fd(fd)
        };
        let syn_retries: libc::c_int = 1;
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip.octets()),
            },
            sin_zero: [0; 8],
        };
        set_option(&conn, libc::IPPROTO_TCP, libc::TCP_SYNCNT, &syn_retries);
        // SAFETY: connect reads the size given from a live address.
        let connected = unsafe {
            libc::connect(
                conn.as_raw_fd(),
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ) == 0
        };
        Ok(connected)
    })?
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

/// Sends `bytes` from `netns` to `ip:port` over TCP; when they cannot get through (a black
/// hole keeps them in flight), gives up after `timeouts` retransmission timeouts and resets
/// the connection.
pub fn send_bulk(netns: &str, ip: &str, port: u16, bytes: usize, timeouts: u8) -> Result<()> {
    let to = addr(ip, port)?;
    let within = Duration::from_secs(10);
    in_netns(netns, move || -> Result<()> {
        let mut conn = TcpStream::connect_timeout(&to, within).context("connect")?;
        conn.set_write_timeout(Some(within))?;
        let _ = conn.write_all(&vec![b'm'; bytes]);
        abort_after(conn, timeouts, within);
        Ok(())
    })?
}
