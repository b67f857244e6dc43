//! The kernel matrix of `cargo xtask test`: in each kernel users run (Debian's 6.1, the
//! kernel of Debian 12 and Amazon Linux 2023's series, and 6.12, Debian 13's), `tracer
//! doctor`, then a set of labs, each checked against its injected fault and a real tcpdump.
//!
//! To add a kernel: add its Debian series to `KERNELS` (`vm::kernel` fetches the newest
//! `linux-image-<series>.*` package the archive has), run `cargo xtask vm --kernel SERIES
//! --tracer -- '$TRACER doctor'` to see what it allows, and say it in the README's table.

use std::{path::Path, time::Duration};

use crate::test::Outcome;

/// Debian kernel series, newest first.
pub const KERNELS: &[&str] = &["6.12", "6.1"];

/// Labs that cover each mechanism: netfilter on the way in and out, tc both ways, a
/// tracepoint-only story. Under software emulation each costs about a minute (most of it the
/// verifier's, see the tracer's global functions).
pub const LABS: &[&str] = &[
    "local-in-drop",
    "local-out-drop",
    "tc-egress-drop",
    "tc-ingress-drop",
    "no-listener",
];

/// Boot, doctor and labs, per kernel: emulation is slow, the verifier slower still.
const TIMEOUT: Duration = Duration::from_secs(900);

/// Every kernel of the matrix with `tracer` (the host's binary, run by the guest over 9p).
pub fn run_all(tracer: &Path) -> Vec<Outcome> {
    KERNELS
        .iter()
        .flat_map(|series| run_one(series, tracer))
        .collect()
}

fn run_one(series: &str, tracer: &Path) -> Vec<Outcome> {
    let tracer = super::shell_quote(&tracer.to_string_lossy());
    // Each step ends with its exit status and the guest's uptime, which times the steps.
    let end = "$? $(cut -d' ' -f1 /proc/uptime)";
    let mut script = format!("echo '== doctor'; {tracer} doctor; echo \"== doctor exit {end}\"\n");
    for lab in LABS {
        script.push_str(&format!(
            "echo '== lab {lab}'; {tracer} lab run {lab}; echo \"== lab {lab} exit {end}\"\n"
        ));
    }
    eprintln!(
        "xtask: kernel {series}: doctor and {} labs under qemu",
        LABS.len()
    );
    let outcome = match super::run_in_kernel(series, &script, TIMEOUT) {
        Ok(outcome) => outcome,
        Err(e) => {
            let why = format!("{e:#}");
            return vec![Outcome::from_parts(
                format!("kernel {series}"),
                false,
                Duration::ZERO,
                why,
            )];
        }
    };
    let console = &outcome.console;
    let kernel = outcome.kernel.clone();
    println!("{}", section(console, "== doctor"));
    // The doctor's row carries the boot too.
    let mut previous = ready_uptime(console);
    let mut took = |marker: &str| {
        let end = uptime_of(console, marker);
        let step = end.zip(previous).map_or(Duration::ZERO, |(end, start)| {
            Duration::from_secs_f64((end - start).max(0.0))
        });
        previous = end.or(previous);
        step
    };
    let boot = outcome.boot_time.unwrap_or_default();
    let doctor_took = boot + took("== doctor exit ");
    let mut results = vec![doctor_outcome(series, &kernel, console, doctor_took)];
    for lab in LABS {
        let text = section(&outcome.console, &format!("== lab {lab}"));
        let check = text
            .lines()
            .find(|l| l.starts_with("Check: "))
            .map(str::to_string);
        let exit = exit_of(&outcome.console, &format!("== lab {lab} exit "));
        let passed = exit == Some(0) && check.as_deref().is_some_and(|c| c.ends_with("PASS"));
        let why = match (&check, exit, &outcome.problem) {
            _ if passed => String::new(),
            (Some(check), _, _) => check.clone(),
            (None, Some(code), _) => format!("exit {code}: {}", last_line(&text)),
            (None, None, Some(problem)) => problem.clone(),
            (None, None, None) => "did not run".to_string(),
        };
        if !passed {
            println!("{text}");
        }
        let lab_took = took(&format!("== lab {lab} exit "));
        results.push(Outcome::from_parts(
            format!("kernel {series}: lab {lab}"),
            passed,
            lab_took,
            why,
        ));
    }
    results
}

/// The doctor must run, and say how each point is observed on this kernel.
fn doctor_outcome(series: &str, kernel: &str, console: &str, took: Duration) -> Outcome {
    let text = section(console, "== doctor");
    let exit = exit_of(console, "== doctor exit ");
    let missing = text.lines().filter(|l| l.contains("MISSING")).count();
    // Every kernel of the matrix has a mechanism for every point: one missing is a regression.
    let passed = exit == Some(0) && text.contains("how it is observed here") && missing == 0;
    let why = if passed {
        format!("Linux {kernel}: every point attaches")
    } else if exit == Some(0) {
        format!("Linux {kernel}: {missing} point(s) missing")
    } else {
        format!("Linux {kernel}: doctor failed: {}", last_line(&text))
    };
    Outcome::from_parts(format!("kernel {series}: doctor"), passed, took, why)
}

/// The console lines from `marker` to the next `== ` marker.
fn section(console: &str, marker: &str) -> String {
    console
        .lines()
        .skip_while(|l| l.trim_end() != marker)
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The exit status on the line starting with `prefix` ("== lab X exit 0 12.34").
fn exit_of(console: &str, prefix: &str) -> Option<i32> {
    marker_word(console, prefix, 0)?.parse().ok()
}

/// The guest's uptime on that line.
fn uptime_of(console: &str, prefix: &str) -> Option<f64> {
    marker_word(console, prefix, 1)?.parse().ok()
}

/// The guest's uptime when the command started ("XTASK-VM-READY kernel=... uptime=3.7").
fn ready_uptime(console: &str) -> Option<f64> {
    console
        .lines()
        .find_map(|l| l.strip_prefix("XTASK-VM-READY ")?.split("uptime=").nth(1))
        .and_then(|u| u.trim().parse().ok())
}

fn marker_word<'a>(console: &'a str, prefix: &str, n: usize) -> Option<&'a str> {
    console
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().nth(n))
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "[ 1.0] boot\nXTASK-VM-READY kernel=6.1.0 uptime=3.5\n== doctor\n\
        kernel: Linux 6.1.0\nobservation point how it is observed here\n\
        tc_ingress (first) cls_bpf filter\nicmp_send tp_btf\n== doctor exit 0 14.5\n\
        == lab no-listener\nCheck: no-listener: 2 key packets, 2 fates correct: PASS\n\
        == lab no-listener exit 0 40.25\n";

    #[test]
    fn sections_and_exits_are_read_from_the_console() {
        assert!(section(CONSOLE, "== lab no-listener").ends_with("PASS"));
        assert_eq!(exit_of(CONSOLE, "== lab no-listener exit "), Some(0));
        assert_eq!(uptime_of(CONSOLE, "== lab no-listener exit "), Some(40.25));
        assert_eq!(ready_uptime(CONSOLE), Some(3.5));
        let doctor = doctor_outcome("6.1", "6.1.0", CONSOLE, Duration::ZERO);
        assert!(doctor.passed);
        assert_eq!(doctor.why, "Linux 6.1.0: every point attaches");
        let missing = CONSOLE.replace("icmp_send tp_btf", "icmp_send MISSING");
        let doctor = doctor_outcome("6.1", "6.1.0", &missing, Duration::ZERO);
        assert!(
            !doctor.passed,
            "a missing point fails the kernel's doctor step"
        );
        assert_eq!(exit_of(CONSOLE, "== lab local-in-drop exit "), None);
    }
}
