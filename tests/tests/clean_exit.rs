//! However the tracer ends — Ctrl-C, SIGTERM, a panic, SIGKILL, or a crash half way through
//! attaching — nothing of it stays in the kernel: no program, no link, no XDP or tcx
//! attachment, no qdisc. Every program hangs on a bpf_link owned by a file descriptor of the
//! process, so the kernel detaches it when the process goes; these tests check that promise.

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tests::{
    assert_released, program_ids_of, require_privileges, scratch, sh, tracer_bin, Pair, Tracer,
};

/// Every program loaded for a two-namespace trace with `--xdp`: XDP, four tc programs,
/// twelve tracepoints, the two netfilter programs and the netfilter census (run by the tracer
/// itself, never attached).
const PROGRAMS: usize = 20;
/// Links for the same trace: 12 tracepoints, 4 netfilter links per namespace (LOCAL_IN and
/// FORWARD, IPv4 and IPv6, the first program alone: nothing is registered at any hook), and
/// per interface 4 tcx links (ingress and egress, first and last) and XDP.
const TRACEPOINTS: usize = 12;
const LINKS: usize = TRACEPOINTS + 2 * 4 + 2 * 5;

fn start_args(pair: &Pair) -> Vec<String> {
    ["--xdp", "-n", &pair.a.name, "-n", &pair.b.name]
        .map(String::from)
        .to_vec()
}

/// Nothing of the tracer is left on the pair's interfaces: no XDP program, no tcx program, no
/// clsact qdisc (tcx needs none, so the tracer never adds one).
fn assert_interfaces_clean(pair: &Pair) {
    for (ns, ifname) in [(&pair.a, "va"), (&pair.b, "vb")] {
        let net = ns.sh(&format!("bpftool net show dev {ifname}"));
        assert!(
            !net.contains("tracer_"),
            "a tracer program is left on {}/{ifname}: {net}",
            ns.name
        );
        let qdiscs = ns.sh(&format!("tc qdisc show dev {ifname}"));
        assert!(
            !qdiscs.contains("clsact"),
            "clsact qdisc left on {ifname}: {qdiscs}"
        );
    }
}

/// Program ids the process holds, gathered every 20 ms until it exits: a process that dies
/// on its own (a panic, a crash) cannot be asked afterwards.
fn watch_programs(child: &mut Child) -> (BTreeSet<u32>, std::process::ExitStatus) {
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        seen.extend(program_ids_of(child.id()));
        if let Some(status) = child.try_wait().expect("wait") {
            return (seen, status);
        }
        assert!(Instant::now() < deadline, "the tracer did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_tracer(pair: &Pair, ready: &Path, inject: Option<&str>) -> Child {
    let mut command = Command::new(tracer_bin());
    command
        .args(["trace", "--ready-file"])
        .arg(ready)
        .args(start_args(pair))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(point) = inject {
        command.env("TRACER_INJECT_PANIC", point);
    }
    command.spawn().expect("cannot start the tracer")
}

#[test]
fn ctrl_c_and_sigterm_report_and_leave_nothing() {
    require_privileges();
    let pair = Pair::create();
    for (signal, name) in [(libc::SIGINT, "Ctrl-C"), (libc::SIGTERM, "SIGTERM")] {
        let args = start_args(&pair);
        let tracer = Tracer::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let programs = program_ids_of(tracer.pid());
        assert_eq!(programs.len(), PROGRAMS, "{name}: {programs:?}");
        assert_eq!(link_count(tracer.pid()), LINKS, "{name}");
        let report = tracer.finish_with(signal);
        assert!(
            report.stats()["duration_ns"].as_u64().is_some(),
            "{name}: a report at the end"
        );
        assert_released(&programs, &format!("after {name}"));
        assert_interfaces_clean(&pair);
    }
}

/// A panic, while attaching (some programs attached, the rest not yet) or while tracing, ends
/// in one sentence and exit code 101, and releases everything.
#[test]
fn a_panic_while_attaching_or_tracing_leaves_nothing() {
    require_privileges();
    let pair = Pair::create();
    for point in ["attach", "tracing"] {
        let ready = scratch("panic-ready");
        let mut child = spawn_tracer(&pair, &ready, Some(point));
        let (programs, status) = watch_programs(&mut child);
        let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
        assert_eq!(
            status.code(),
            Some(101),
            "{point}: {stderr} (fault injection exists only in builds with the \
             `fault-injection` feature: was TRACER_BIN built without it?)"
        );
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("tracer: internal error at tracer/src/trace/session.rs")
                && last.contains(&format!("injected fault at '{point}'"))
                && !stderr.contains("RUST_BACKTRACE"),
            "{point}: one sentence, no backtrace hint: {stderr}"
        );
        assert_eq!(ready.exists(), point == "tracing", "{point}: ready file");
        assert!(!programs.is_empty(), "{point}: programs were loaded");
        assert_released(
            &programs.into_iter().collect::<Vec<_>>(),
            &format!("after a panic at {point}"),
        );
        assert_interfaces_clean(&pair);
        let _ = std::fs::remove_file(&ready);
    }
}

/// SIGKILL in the middle of attaching, without any help from the tracer: it is killed as soon
/// as it holds more links than its tracepoints need (so some interface or netfilter links
/// exist too), before it is ready.
#[test]
fn sigkill_half_way_through_attaching_leaves_nothing() {
    require_privileges();
    let pair = Pair::create();
    let ready = scratch("half-ready");
    let mut child = spawn_tracer(&pair, &ready, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut programs = BTreeSet::new();
    let links = loop {
        programs.extend(program_ids_of(child.id()));
        let links = link_count(child.id());
        if links > TRACEPOINTS {
            break links;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the tracer exited before attaching anything"
        );
        assert!(Instant::now() < deadline, "no link after 60 s");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(
        !ready.exists(),
        "killed after it was ready: not half-attached"
    );
    assert!(
        links < LINKS,
        "killed with {links} links of {LINKS}: not half-attached"
    );
    eprintln!(
        "killed holding {links} links and {} programs",
        programs.len()
    );
    assert_released(
        &programs.into_iter().collect::<Vec<_>>(),
        "after SIGKILL during attach",
    );
    assert_interfaces_clean(&pair);
}

/// bpf_link file descriptors the process holds (their fdinfo names a `link_type`).
fn link_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter(|info| info.contains("link_type:"))
        .count()
}

#[test]
fn sigkill_while_tracing_leaves_nothing() {
    require_privileges();
    let pair = Pair::create();
    let args = start_args(&pair);
    let tracer = Tracer::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // While it runs, its programs are visible, so the checks below can fail.
    let programs = program_ids_of(tracer.pid());
    assert_eq!(programs.len(), PROGRAMS, "{programs:?}");
    let xdp = pair.b.sh("bpftool net show dev vb");
    assert!(
        programs.iter().any(|id| xdp.contains(&format!("id {id}"))),
        "our XDP not on vb: {xdp}"
    );
    let links = sh("bpftool link show");
    let linked = programs
        .iter()
        .filter(|id| links.contains(&format!("prog {id} ")))
        .count();
    assert_eq!(
        linked,
        PROGRAMS - 2,
        "every program but the census (run, never attached) and netfilter's last one (linked \
         only where something is registered, nowhere here) is held by a link (tcx shows as \
         'type 11' in old bpftool): {links}"
    );
    let pid = tracer.pid();
    tracer.kill();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert_released(&programs, "after SIGKILL");
    assert_interfaces_clean(&pair);
}

/// A namespace deleted while it is traced goes away at once, with its interfaces and their
/// veth peers: the tracer does not keep it alive, and goes on tracing the rest.
#[test]
fn a_namespace_deleted_while_traced_goes_away() {
    require_privileges();
    let pair = Pair::create();
    let tracer = Tracer::start(&["--xdp", "-n", &pair.a.name, "-n", &pair.b.name]);
    sh(&format!("ip netns del {}", pair.b.name));
    let deadline = Instant::now() + Duration::from_secs(10);
    // Deleting b's namespace destroys vb, and with it its peer va in a.
    while pair.a.sh("ip -o link show").contains("va@") {
        assert!(
            Instant::now() < deadline,
            "va still there 10 s after its peer's namespace was deleted: held alive"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = tracer.finish();
    assert!(report.stats()["duration_ns"].as_u64().is_some());
    assert!(
        report
            .stderr
            .contains("was deleted: its netfilter points are detached so that it can go"),
        "{}",
        report.stderr
    );
}
