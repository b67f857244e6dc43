//! Harness for the integration tests: namespaces and veths behind RAII guards, the real tracer
//! binary started with `--ready-file`, and a real tcpdump as the oracle.
//!
//! These tests need root and a kernel with BPF. Where they cannot have it they fail loudly,
//! never pass silently: run them with `cargo xtask test` as root.

pub mod docker;
pub mod frames;
pub mod oracle;
pub mod schema;
pub mod servers;
pub mod traffic;
pub mod tshark;

mod programs;

pub use harness::programs::program_ids_of;
pub use programs::assert_released;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Now on CLOCK_MONOTONIC, the clock of the tracer's timestamps (`bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Fails the test, loudly, unless it runs as root with the tracer binary built.
pub fn require_privileges() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("NOT RUN: this integration test needs root (namespaces, eBPF); run `cargo xtask test` as root");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        panic!(
            "NOT RUN: this kernel has no BTF (/sys/kernel/btf/vmlinux); the tracer cannot run here"
        );
    }
}

/// The tracer binary under test (`TRACER_BIN`, set by `cargo xtask test`).
pub fn tracer_bin() -> PathBuf {
    let bin = std::env::var_os("TRACER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/tracer"));
    assert!(
        bin.exists(),
        "tracer binary {} not found: run `cargo xtask test`",
        bin.display()
    );
    bin
}

/// Runs a command line (split on whitespace) and returns stdout; panics with stderr on failure.
pub fn sh(line: &str) -> String {
    harness::sh(line).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Runs a command line and returns its output whatever the exit status.
pub fn run(line: &str) -> Output {
    harness::command(line)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{line}`: {e}"))
}

/// A uniquely named scratch path for this test process.
pub fn scratch(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("tracer-test-{}-{n}-{name}", std::process::id()))
}

/// A network namespace of this test process (`tt{pid}-{short}`), removed on drop. Its
/// commands panic with the command's stderr when they fail.
pub struct Netns(harness::Netns);

impl std::ops::Deref for Netns {
    type Target = harness::Netns;

    fn deref(&self) -> &harness::Netns {
        &self.0
    }
}

impl Netns {
    pub fn new(short: &str) -> Netns {
        let name = format!("tt{}-{short}", std::process::id());
        let netns = Netns(harness::Netns::create(&name).unwrap_or_else(|e| panic!("{e:#}")));
        // Router solicitations go on forever with a growing interval (`-1` since 5.x): one
        // could fall into any capture window. A test's namespaces carry only its traffic.
        netns.sh("sysctl -qw net.ipv6.conf.all.router_solicitations=0 \
             net.ipv6.conf.default.router_solicitations=0");
        netns
    }

    /// Runs a command line inside this namespace.
    pub fn sh(&self, line: &str) -> String {
        self.0.sh(line).unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn run(&self, line: &str) -> Output {
        run(&format!("ip netns exec {} {line}", self.name))
    }

    /// Runs `f` on a thread inside this namespace (sockets it opens live there).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.0.enter(f).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts `f` on a thread inside this namespace (a server, say).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let name = self.name.clone();
        std::thread::spawn(move || {
            harness::enter_netns(&name).unwrap_or_else(|e| panic!("{e:#}"));
            f()
        })
    }
}

/// Joins two namespaces with a veth pair `(ifname, address/prefix)` on each side.
pub fn veth(a: &Netns, (if_a, addr_a): (&str, &str), b: &Netns, (if_b, addr_b): (&str, &str)) {
    harness::veth::veth(
        &mut harness::Direct,
        &harness::End {
            netns: &a.name,
            ifname: if_a,
            addrs: &[addr_a],
        },
        &harness::End {
            netns: &b.name,
            ifname: if_b,
            addrs: &[addr_b],
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Two namespaces `a` (10.201.0.1 on `va`) and `b` (10.201.0.2 on `vb`) joined by a veth.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
}

pub const ADDR_A: &str = "10.201.0.1";
pub const ADDR_B: &str = "10.201.0.2";

impl Pair {
    pub fn create() -> Pair {
        let a = Netns::new("a");
        let b = Netns::new("b");
        veth(&a, ("va", "10.201.0.1/24"), &b, ("vb", "10.201.0.2/24"));
        Pair { a, b }
    }

    /// Permanent ARP entries on both sides, for faults that drop everything (ARP included).
    pub fn static_neighbours(&self) {
        harness::veth::static_neighbours(
            &mut harness::Direct,
            (&self.a.name, "va", ADDR_A),
            (&self.b.name, "vb", ADDR_B),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    }
}

/// `a` (10.202.1.1 on `va`) and `b` (10.202.2.1 on `vb`) in different subnets, joined through
/// a router namespace `r` (`ra` 10.202.1.254, `rb` 10.202.2.254) that forwards between them.
pub struct Routed {
    pub a: Netns,
    pub r: Netns,
    pub b: Netns,
}

pub const ROUTED_A: &str = "10.202.1.1";
pub const ROUTED_B: &str = "10.202.2.1";

impl Routed {
    pub fn create() -> Routed {
        let a = Netns::new("a");
        let r = Netns::new("r");
        let b = Netns::new("b");
        veth(&a, ("va", "10.202.1.1/24"), &r, ("ra", "10.202.1.254/24"));
        veth(&r, ("rb", "10.202.2.254/24"), &b, ("vb", "10.202.2.1/24"));
        sh(&format!(
            "ip -n {} route add default via 10.202.1.254",
            a.name
        ));
        sh(&format!(
            "ip -n {} route add default via 10.202.2.254",
            b.name
        ));
        r.sh("sysctl -q -w net.ipv4.ip_forward=1");
        Routed { a, r, b }
    }
}

/// The tracer running in the background.
pub struct Tracer {
    child: Option<Child>,
    ready: PathBuf,
    pub record: PathBuf,
    /// When the test saw it ready (every program attached), on CLOCK_MONOTONIC.
    attached_ns: u64,
}

impl Tracer {
    /// Starts `tracer trace --format json --ready-file F --record R ARGS...` and waits until
    /// every program is attached.
    pub fn start(args: &[&str]) -> Tracer {
        let ready = scratch("ready");
        let record = scratch("events.jsonl");
        let child = Command::new(tracer_bin())
            .args(["trace", "--format", "json", "--ready-file"])
            .arg(&ready)
            .arg("--record")
            .arg(&record)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the tracer");
        let mut tracer = Tracer {
            child: Some(child),
            ready,
            record,
            attached_ns: 0,
        };
        tracer.wait_ready();
        tracer.attached_ns = monotonic_ns();
        tracer
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.ready.exists() {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("wait") {
                let out = self
                    .child
                    .take()
                    .expect("child")
                    .wait_with_output()
                    .expect("output");
                panic!(
                    "tracer exited before it was ready ({status}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(Instant::now() < deadline, "tracer not ready after 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }

    /// Stops the tracer with SIGINT (as Ctrl-C) and returns its JSON records and stderr.
    pub fn finish(self) -> Report {
        self.finish_with(libc::SIGINT)
    }

    /// Stops the tracer with `signal` (SIGINT or SIGTERM), expecting a clean exit and a report.
    pub fn finish_with(mut self, signal: i32) -> Report {
        let child = self.child.take().expect("running");
        let pid = child.id() as i32;
        let stopping_ns = monotonic_ns();
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(pid, signal) };
        // Wait on another thread (it also drains the pipes), so that a tracer ignoring SIGINT
        // fails the test instead of hanging it.
        let (done, waited) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(child.wait_with_output()));
        let out = match waited.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(out) => out.expect("tracer output"),
            Err(_) => {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("the tracer did not stop within 30 s of signal {signal}");
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "tracer failed ({}): {stderr}",
            out.status
        );
        let records = parse_lines(&String::from_utf8_lossy(&out.stdout));
        let recording = std::fs::read_to_string(&self.record).expect("recorded events");
        let events = parse_lines(&recording);
        Report {
            records,
            events,
            stderr,
            recording,
            traced: (self.attached_ns, stopping_ns),
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.ready);
        let _ = std::fs::remove_file(&self.record);
    }
}

fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// What a finished tracer reported.
pub struct Report {
    /// stdout: `packet` and `stats` records.
    pub records: Vec<Value>,
    /// `--record`: the raw `event` stream.
    pub events: Vec<Value>,
    pub stderr: String,
    /// `--record` as written.
    pub recording: String,
    /// From when the test saw the tracer attached to when it signalled it to stop, on
    /// CLOCK_MONOTONIC: every packet in between was surely traced.
    pub traced: (u64, u64),
}

/// "hook position" of each point of a `packet` record's path through the stack, in order
/// (ends of life and annotations such as `consume_skb` or `tcp` left out).
pub fn path(journey: &Value) -> Vec<String> {
    journey["path"]
        .as_array()
        .expect("a path")
        .iter()
        .filter(|p| p["dir"] != "-")
        .map(|p| match p["position"].as_str() {
            Some(position) => format!("{} {position}", p["hook"].as_str().unwrap()),
            None => p["hook"].as_str().unwrap().to_string(),
        })
        .collect()
}

impl Report {
    /// With `TRACER_FIXTURES_OUT=DIR`, keeps this run's recorded stream as `DIR/NAME.jsonl`: the
    /// tracer's unit tests replay such real streams (tracer/tests/fixtures).
    pub fn keep_fixture(&self, name: &str) {
        if let Ok(dir) = std::env::var("TRACER_FIXTURES_OUT") {
            let path = std::path::Path::new(&dir).join(format!("{name}.jsonl"));
            std::fs::write(&path, &self.recording).expect("writing the fixture");
            eprintln!("fixture kept: {}", path.display());
        }
    }

    pub fn flows(&self) -> impl Iterator<Item = &Value> {
        self.records.iter().filter(|r| r["type"] == "flow")
    }

    /// The packets the tracer followed, without their copies (a bridge's clones).
    pub fn packets(&self) -> impl Iterator<Item = &Value> {
        self.journeys().filter(|r| r["copy_of"].is_null())
    }

    /// The copies of packets (a promiscuous bridge's frame passed up, a flood to other ports).
    pub fn copies(&self) -> impl Iterator<Item = &Value> {
        self.journeys().filter(|r| !r["copy_of"].is_null())
    }

    /// Every `packet` record: packets and their copies.
    pub fn journeys(&self) -> impl Iterator<Item = &Value> {
        self.records.iter().filter(|r| r["type"] == "packet")
    }

    pub fn stats(&self) -> &Value {
        self.records
            .iter()
            .find(|r| r["type"] == "stats")
            .expect("a stats record")
    }
}

/// A real tcpdump capturing inside a namespace, as the oracle: it fails the test if it lost
/// packets.
pub struct Tcpdump {
    capture: harness::tcpdump::Tcpdump,
    /// When it said it was listening, on CLOCK_MONOTONIC.
    listening_ns: u64,
}

impl Tcpdump {
    pub fn start(ns: &Netns, ifname: &str, filter: &str) -> Tcpdump {
        let file = scratch(&format!("{ifname}.pcap"));
        // --immediate-mode: with TPACKET_V3 blocks, a capture stopped by SIGINT can lose the
        // packets of its last, unfinished block. 32 MiB of kernel buffer: a burst must not
        // overflow the oracle.
        let options = ["--immediate-mode", "-B", "32768", "-U", "-n"];
        let capture = harness::tcpdump::Tcpdump::start(&ns.name, ifname, &options, file, filter)
            .unwrap_or_else(|e| panic!("{e:#}"));
        Tcpdump {
            capture,
            listening_ns: monotonic_ns(),
        }
    }

    /// Stops the capture; returns tcpdump's one-line decodes (`-n -tt`).
    pub fn stop(mut self) -> Vec<String> {
        self.end();
        let out = sh(&format!(
            "tcpdump -n -tt -r {}",
            self.capture.file().display()
        ));
        out.lines().map(str::to_string).collect()
    }

    /// Stops the capture; returns what identifies each captured packet (see [`oracle`]).
    pub fn stop_identities(mut self) -> Vec<oracle::Identity> {
        self.end();
        oracle::pcap_identities(self.capture.file())
    }

    /// Stops the capture; returns each captured packet's identity and time, and the stretch
    /// of time the capture surely covered, for [`oracle::agreement`].
    pub fn stop_capture(mut self) -> oracle::Capture {
        let stopping_ns = monotonic_ns();
        self.end();
        oracle::Capture {
            packets: oracle::pcap_timed_identities(self.capture.file()),
            covered: (self.listening_ns, stopping_ns),
        }
    }

    /// Stops tcpdump, and fails if its kernel buffer dropped packets: an oracle that missed
    /// packets cannot judge the tracer.
    fn end(&mut self) {
        let rest = self.capture.stop().unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            rest.lines()
                .any(|l| l.trim() == "0 packets dropped by kernel"),
            "tcpdump lost packets, its capture is no oracle: {rest}"
        );
    }
}
