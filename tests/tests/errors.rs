//! Bad input gets one clear sentence on stderr and the right exit code (2 for a usage
//! mistake, 1 for a failure while running), never a panic or a backtrace.

use std::process::{Command, Output};

use tests::{require_privileges, tracer_bin};

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
        "needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)",
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
