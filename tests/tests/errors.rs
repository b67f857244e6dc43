//! Bad input gets one clear sentence on stderr and the right exit code (2 for a usage
//! mistake, 1 for a failure while running), never a panic or a backtrace.

use std::process::{Command, Output};

use tests::{require_privileges, scratch, tracer_bin, Pair, ADDR_B};

/// Runs `command` (a shell line in which `TRACER` is the binary under test).
fn run(command: &str) -> Output {
    let line = command.replace("TRACER", &tracer_bin().display().to_string());
    Command::new("sh")
        .args(["-c", &line])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("sh")
}

/// Checks the exit code and that stderr says `sentence` on the error's one line: the last
/// line for the tracer's own errors, the first for clap's (which adds a hint to `--help`).
fn fails_with(command: &str, code: i32, sentence: &str) {
    let out = run(command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{command}: {stderr}");
    let line = if stderr.starts_with("error: ") {
        stderr.lines().next()
    } else {
        stderr.lines().last()
    }
    .unwrap_or_default();
    assert!(
        line.starts_with("tracer: ") || line.starts_with("error: "),
        "{command}: not one sentence: {stderr}"
    );
    assert!(
        line.contains(sentence),
        "{command}: '{line}' lacks '{sentence}'"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{command}: {stderr}"
    );
}

#[test]
fn a_filter_tcpdump_rejects_is_rejected_with_its_message() {
    fails_with(
        "TRACER trace tcp port garbage",
        2,
        "bad filter 'tcp port garbage': unknown port 'garbage'",
    );
    fails_with("TRACER trace 'host and'", 2, "syntax error");
    // tcpdump itself says the same.
    let tcpdump = run("tcpdump -d tcp port garbage 2>&1; true");
    assert!(String::from_utf8_lossy(&tcpdump.stdout).contains("unknown port 'garbage'"));
}

#[test]
fn a_filter_too_long_for_the_kernel_programs_is_refused() {
    let long = (7000..7020)
        .map(|p| format!("port {p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    fails_with(
        &format!("TRACER trace '{long}'"),
        2,
        "the kernel programs run at most 64",
    );
}

#[test]
fn an_unknown_namespace_is_a_usage_error() {
    fails_with(
        "TRACER trace -n no-such-namespace --duration 1",
        2,
        "unknown network namespace 'no-such-namespace'",
    );
}

#[test]
fn an_unknown_interface_is_a_usage_error() {
    require_privileges();
    fails_with(
        "TRACER trace -i no-such-if0 --duration 1",
        2,
        "unknown interface 'no-such-if0'",
    );
}

#[test]
fn a_bad_option_value_is_a_usage_error() {
    fails_with("TRACER trace --format xml", 2, "invalid value 'xml'");
    fails_with("TRACER trace -c 0", 2, "--count <COUNT>");
    fails_with(
        "TRACER trace --ring-kib 3",
        2,
        "--ring-kib must be a power of two",
    );
}

#[test]
fn an_unwritable_output_file_fails_before_tracing() {
    fails_with(
        "TRACER trace --record /nonexistent-dir/events.jsonl --duration 1",
        1,
        "cannot write /nonexistent-dir/events.jsonl",
    );
    fails_with(
        "TRACER trace -w /nonexistent-dir/trace.pcapng --duration 1",
        1,
        "cannot write /nonexistent-dir/trace.pcapng",
    );
}

#[test]
fn snaplen_without_a_packet_file_is_a_usage_error() {
    fails_with(
        "TRACER trace --snaplen 100 --duration 1",
        2,
        "the following required arguments were not provided",
    );
}

#[test]
fn without_privileges_the_tracer_says_what_it_needs() {
    require_privileges();
    fails_with(
        "setpriv --reuid=65534 --regid=65534 --clear-groups TRACER trace --duration 1",
        1,
        "needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN); this process lacks CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN",
    );
}

/// A namespace that exists but may not be opened by this process (`pid:1` as another user)
/// is said to be unreadable, not unknown.
#[test]
fn a_namespace_this_process_may_not_open_is_not_called_unknown() {
    require_privileges();
    fails_with(
        "setpriv --reuid=65534 --regid=65534 --clear-groups TRACER trace -n pid:1 --duration 1",
        1,
        "cannot open network namespace 'pid:1' (/proc/1/ns/net): permission denied",
    );
}

/// Root is not enough when a capability is gone (a container, `capsh --drop`): the tracer
/// names the one it lacks instead of failing later with a bare EPERM.
#[test]
fn root_without_a_needed_capability_is_told_which() {
    require_privileges();
    for (cap, name) in [
        ("bpf", "CAP_BPF"),
        ("perfmon", "CAP_PERFMON"),
        ("net_admin", "CAP_NET_ADMIN"),
    ] {
        fails_with(
            &format!("setpriv --bounding-set -{cap} TRACER trace --duration 1"),
            1,
            &format!("this process lacks {name}"),
        );
    }
}

/// The three capabilities are enough for the tracer's own namespace (here a test namespace it
/// was started in); entering another one needs CAP_SYS_ADMIN, and it says so.
#[test]
fn the_three_capabilities_without_root_trace_the_own_namespace() {
    require_privileges();
    let pair = Pair::create();
    let ready = scratch("caps-ready");
    let as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups \
        --inh-caps=+bpf,+perfmon,+net_admin --ambient-caps=+bpf,+perfmon,+net_admin";
    let tracer = format!(
        "ip netns exec {} {as_nobody} TRACER trace --format json --duration 3 --ready-file {} icmp",
        pair.a.name,
        ready.display()
    );
    let ping = format!(
        "for i in $(seq 600); do [ -e {} ] && break; sleep 0.1; done; ip netns exec {} ping -c 2 -i 0.2 {ADDR_B} >/dev/null",
        ready.display(),
        pair.a.name
    );
    let out = run(&format!("( {ping} ) & {tracer}; wait"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let requests = stdout
        .lines()
        .filter(|l| l.contains(r#""type":"packet""#) && l.contains(&format!(r#""dst":"{ADDR_B}""#)))
        .count();
    assert_eq!(requests, 2, "both echo requests traced: {stdout}{stderr}");

    fails_with(
        &format!("{as_nobody} TRACER trace -n {} --duration 1", pair.b.name),
        1,
        "that needs root or CAP_SYS_ADMIN",
    );
}

#[test]
fn without_kernel_btf_the_tracer_says_so() {
    require_privileges();
    // A private mount namespace where /sys/kernel/btf is empty: a kernel built without BTF.
    let out =
        run("unshare -m sh -c 'mount -t tmpfs none /sys/kernel/btf && TRACER trace --duration 1'");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tracer: ") && last.contains("BTF"),
        "{stderr}"
    );
}
