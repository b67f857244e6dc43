//! Harness for the integration tests: namespaces and veths behind RAII guards, the real tracer
//! binary started with `--ready-file`, and a real tcpdump as the oracle.
//!
//! These tests need root and a kernel with BPF. Where they cannot have it they fail loudly,
//! never pass silently: run them with `cargo xtask test` as root.

pub mod docker;
pub mod foreign;
pub mod frames;
pub mod oracle;
mod programs;
pub mod schema;
pub mod servers;
pub mod traffic;
pub mod tshark;

pub use programs::{assert_released, program_ids_of, still_loaded};

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

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
    let out = run(line);
    assert!(
        out.status.success(),
        "`{line}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command line and returns its output whatever the exit status.
pub fn run(line: &str) -> Output {
    let mut words = line.split_whitespace();
    Command::new(words.next().expect("empty command"))
        .args(words)
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

/// A network namespace removed on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(short: &str) -> Netns {
        let name = format!("tt{}-{short}", std::process::id());
        let _ = run(&format!("ip netns del {name}"));
        sh(&format!("ip netns add {name}"));
        sh(&format!("ip -n {name} link set lo up"));
        // Router solicitations go on forever with a growing interval (`-1` since 5.x): one
        // could fall into any capture window. A test's namespaces carry only its traffic.
        sh(&format!(
            "ip netns exec {name} sysctl -qw net.ipv6.conf.all.router_solicitations=0 \
             net.ipv6.conf.default.router_solicitations=0"
        ));
        Netns { name }
    }

    /// Runs a command line inside this namespace.
    pub fn sh(&self, line: &str) -> String {
        sh(&format!("ip netns exec {} {line}", self.name))
    }

    pub fn run(&self, line: &str) -> Output {
        run(&format!("ip netns exec {} {line}", self.name))
    }
}

impl Netns {
    /// Runs `f` on a thread inside this namespace (sockets it opens live there).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("thread inside the namespace")
    }

    /// Starts `f` on a thread inside this namespace (a server, say).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("namespace file");
            // SAFETY: setns on a valid nsfs descriptor; affects only this new thread.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&format!("ip netns del {}", self.name));
    }
}

/// Joins two namespaces with a veth pair `(ifname, address/prefix)` on each side.
pub fn veth(a: &Netns, (if_a, addr_a): (&str, &str), b: &Netns, (if_b, addr_b): (&str, &str)) {
    sh(&format!(
        "ip -n {} link add {if_a} type veth peer name {if_b} netns {}",
        a.name, b.name
    ));
    for (ns, ifname, addr) in [(a, if_a, addr_a), (b, if_b, addr_b)] {
        sh(&format!("ip -n {} addr add {addr} dev {ifname}", ns.name));
        sh(&format!("ip -n {} link set {ifname} up", ns.name));
    }
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
        let mac = |ns: &Netns, ifname: &str| {
            ns.sh(&format!("cat /sys/class/net/{ifname}/address"))
                .trim()
                .to_string()
        };
        let (mac_a, mac_b) = (mac(&self.a, "va"), mac(&self.b, "vb"));
        self.a.sh(&format!(
            "ip neigh replace {ADDR_B} lladdr {mac_b} dev va nud permanent"
        ));
        self.b.sh(&format!(
            "ip neigh replace {ADDR_A} lladdr {mac_a} dev vb nud permanent"
        ));
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
        };
        tracer.wait_ready();
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

/// A real tcpdump capturing inside a namespace.
pub struct Tcpdump {
    child: Option<Child>,
    file: PathBuf,
    stderr: Option<std::io::BufReader<std::process::ChildStderr>>,
}

impl Tcpdump {
    pub fn start(ns: &Netns, ifname: &str, filter: &str) -> Tcpdump {
        let file = scratch(&format!("{ifname}.pcap"));
        let mut child = Command::new("ip")
            // --immediate-mode: with TPACKET_V3 blocks, a capture stopped by SIGINT can lose
            // the packets of its last, unfinished block.
            .args([
                "netns",
                "exec",
                &ns.name,
                "tcpdump",
                "-i",
                ifname,
                "--immediate-mode",
                // 32 MiB of kernel buffer: a burst must not overflow the oracle.
                "-B",
                "32768",
                "-U",
                "-n",
                "-w",
            ])
            .arg(&file)
            .args(filter.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start tcpdump");
        let mut line = String::new();
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        std::io::BufRead::read_line(&mut stderr, &mut line).expect("tcpdump stderr");
        assert!(
            line.contains("listening on"),
            "tcpdump did not start: {line}"
        );
        Tcpdump {
            child: Some(child),
            file,
            stderr: Some(stderr),
        }
    }

    /// Stops the capture; returns tcpdump's one-line decodes (`-n -tt`).
    pub fn stop(mut self) -> Vec<String> {
        self.end();
        let out = sh(&format!("tcpdump -n -tt -r {}", self.file.display()));
        out.lines().map(str::to_string).collect()
    }

    /// Stops the capture; returns what identifies each captured packet (see [`oracle`]).
    pub fn stop_identities(mut self) -> Vec<oracle::Identity> {
        self.end();
        oracle::pcap_identities(&self.file)
    }

    /// Stops tcpdump, and fails if its kernel buffer dropped packets: an oracle that missed
    /// packets cannot judge the tracer.
    fn end(&mut self) {
        let mut child = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        child.wait().expect("tcpdump exit");
        let mut rest = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            std::io::Read::read_to_string(&mut stderr, &mut rest).expect("tcpdump stderr");
        }
        assert!(
            rest.lines()
                .any(|l| l.trim() == "0 packets dropped by kernel"),
            "tcpdump lost packets, its capture is no oracle: {rest}"
        );
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.file);
    }
}
