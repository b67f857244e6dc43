//! The steady traffic of the soak, between the long-lived namespaces for the whole run: bulk
//! TCP at a limited rate (iperf3), short TCP exchanges over IPv4 and IPv6, one-datagram UDP
//! flows (`xtask flood`), ICMP and ICMPv6 echo, and packets dropped on purpose (iptables) or
//! refused (no listener).

use std::{
    fs::File,
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result};

use super::topology::{A, A4, B, B4, B6, DROPPED_TCP, DROPPED_UDP, ECHO, REFUSED};
use harness::{command_in, enter_netns, in_netns, KillOnDrop};

/// Bytes the echo server answers with: a few segments per exchange.
const ANSWER: usize = 4000;

#[derive(Default, Debug)]
pub struct Counts {
    pub exchanges_ok: AtomicU64,
    pub exchanges_failed: AtomicU64,
    /// Connections to the port whose SYNs iptables drops, which timed out as they should.
    pub syns_dropped: AtomicU64,
    /// Connections to a port nobody listens on, refused by a reset as they should be.
    pub refused: AtomicU64,
    pub udp_dropped: AtomicU64,
    /// Outcomes other than the expected one (a dropped SYN answered, a refusal timing out).
    pub unexpected: AtomicU64,
}

pub struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<(&'static str, JoinHandle<Result<()>>)>,
    processes: Vec<(&'static str, KillOnDrop)>,
    /// The programs' stderr, one file each, for when one ends early.
    logs: PathBuf,
    pub counts: Arc<Counts>,
}

impl Traffic {
    /// Starts everything; `seconds` bounds the programs that need a duration (they are
    /// stopped before that anyway).
    pub fn start(seconds: u64, bulk_mbit: u32) -> Result<Traffic> {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let mut traffic = Traffic {
            stop: Arc::clone(&stop),
            threads: Vec::new(),
            processes: Vec::new(),
            logs: std::env::temp_dir().join(format!("xsoak-traffic-{}", std::process::id())),
            counts: Arc::clone(&counts),
        };
        std::fs::create_dir_all(&traffic.logs)?;
        // The echo server listens in B on every address, IPv4 and IPv6: the churned
        // namespaces talk to it too.
        let listener = socket_in(B, || TcpListener::bind(("::", ECHO)))?;
        listener.set_nonblocking(true)?;
        let flag = Arc::clone(&stop);
        traffic.thread("echo server", move || serve(&listener, &flag));
        traffic.process(B, "iperf3 server", &format!("iperf3 -s -p {}", 5201))?;
        std::thread::sleep(Duration::from_millis(500));

        let long = seconds + 300;
        let exe = std::env::current_exe()?;
        // 10 Mbit/s by default: steady events without starving the shared CPUs, and with our
        // XDP on the veth, every segment is a packet of its own (about 13 k events/s; 80
        // Mbit/s is over 100 k).
        let bulk = format!("iperf3 -c {B4} -p 5201 -b {bulk_mbit}M -t {long}");
        traffic.process(A, "iperf3 client (bulk TCP)", &bulk)?;
        traffic.process(A, "ping", &format!("ping -q -i 0.2 {B4}"))?;
        traffic.process(A, "ping -6", &format!("ping -6 -q -i 0.2 {B6}"))?;
        let flood = format!(
            "{} flood --to {B4}:9 --rate 20 --seconds {long}",
            exe.display()
        );
        traffic.process(A, "xtask flood (UDP, 20 flows/s)", &flood)?;

        let (flag, c) = (Arc::clone(&stop), Arc::clone(&counts));
        traffic.thread("short TCP exchanges", move || {
            enter_netns(A)?;
            let servers: [SocketAddr; 2] = [
                format!("{B4}:{ECHO}").parse()?,
                format!("[{B6}]:{ECHO}").parse()?,
            ];
            for n in 0.. {
                if flag.load(Relaxed) {
                    break;
                }
                exchange(servers[n % 2], &c);
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        });
        let (flag, c) = (Arc::clone(&stop), counts);
        traffic.thread("drops", move || {
            enter_netns(A)?;
            while !flag.load(Relaxed) {
                drops(&c)?;
                std::thread::sleep(Duration::from_millis(500));
            }
            Ok(())
        });
        Ok(traffic)
    }

    fn thread(&mut self, name: &'static str, f: impl FnOnce() -> Result<()> + Send + 'static) {
        self.threads.push((name, std::thread::spawn(f)));
    }

    fn process(&mut self, ns: &str, name: &'static str, line: &str) -> Result<()> {
        let log = File::create(log_path(&self.logs, name))?;
        let child = command_in(ns, line)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {line} in {ns}"))?;
        self.processes.push((name, KillOnDrop(child)));
        Ok(())
    }

    /// Stops everything; the names of the parts that had stopped early or failed.
    pub fn stop(mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, process) in &mut self.processes {
            if let Ok(Some(status)) = process.0.try_wait() {
                let said = std::fs::read_to_string(log_path(&self.logs, name)).unwrap_or_default();
                problems.push(format!("{name} ended early ({status}): {}", said.trim()));
            }
        }
        self.processes.clear();
        self.stop.store(true, Relaxed);
        for (name, thread) in self.threads.drain(..) {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(err)) => problems.push(format!("{name}: {err:#}")),
                Err(_) => problems.push(format!("{name} panicked")),
            }
        }
        let _ = std::fs::remove_dir_all(&self.logs);
        problems
    }
}

fn log_path(logs: &Path, name: &str) -> PathBuf {
    logs.join(name.replace(|c: char| !c.is_alphanumeric(), "-"))
}

/// Runs `make` on a thread inside `ns`: the socket it returns lives in `ns`, whichever
/// thread uses it afterwards.
pub fn socket_in<T: Send>(ns: &str, make: impl FnOnce() -> std::io::Result<T> + Send) -> Result<T> {
    in_netns(ns, make)?.with_context(|| format!("socket in {ns}"))
}

/// Answers each connection with `ANSWER` bytes once its request arrived.
fn serve(listener: &TcpListener, stop: &AtomicBool) -> Result<()> {
    while !stop.load(Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut request = [0u8; 100];
                // A client that gave up is its own problem: keep serving the others.
                if stream.read_exact(&mut request).is_ok() {
                    let _ = stream.write_all(&[b'x'; ANSWER]);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e).context("accept"),
        }
    }
    Ok(())
}

/// One short connection: a request, the whole answer, close.
pub fn exchange(server: SocketAddr, counts: &Counts) {
    let ok = (|| -> std::io::Result<()> {
        let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(&[b'q'; 100])?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        if answer.len() != ANSWER {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    })();
    let counter = match ok {
        Ok(()) => &counts.exchanges_ok,
        Err(_) => &counts.exchanges_failed,
    };
    counter.fetch_add(1, Relaxed);
}

/// A SYN iptables drops (the client retransmits it once before giving up), a SYN answered by
/// a reset, a datagram iptables drops.
fn drops(counts: &Counts) -> Result<()> {
    let dropped: SocketAddr = format!("{B4}:{DROPPED_TCP}").parse()?;
    let outcome = match TcpStream::connect_timeout(&dropped, Duration::from_millis(1500)) {
        Err(e) if e.kind() == ErrorKind::TimedOut => &counts.syns_dropped,
        _ => &counts.unexpected,
    };
    outcome.fetch_add(1, Relaxed);
    let refused: SocketAddr = format!("{B4}:{REFUSED}").parse()?;
    let outcome = match TcpStream::connect_timeout(&refused, Duration::from_secs(1)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => &counts.refused,
        _ => &counts.unexpected,
    };
    outcome.fetch_add(1, Relaxed);
    let socket = UdpSocket::bind((A4, 0))?;
    socket.send_to(b"dropped by iptables", (B4, DROPPED_UDP))?;
    counts.udp_dropped.fetch_add(1, Relaxed);
    Ok(())
}
