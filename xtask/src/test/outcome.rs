//! What one step of the test command did: passed or not, in how long, why in a line; and the
//! per-test failure rates over repeated runs.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::cmd;

pub struct Outcome {
    pub name: String,
    pub passed: bool,
    pub took: Duration,
    /// Empty when it passed; otherwise the first line that says why.
    pub why: String,
    /// What it printed on stdout (libtest's results are there).
    pub output: String,
}

impl Outcome {
    /// Runs `command`, its stdout echoed as it comes and kept, its stderr inherited.
    pub fn of(name: &str, command: &mut Command) -> Outcome {
        eprintln!("+ {}", cmd::display(command));
        let started = Instant::now();
        let mut output = String::new();
        let status = command
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
                // Bytes, not lines of UTF-8: a test may print anything, and the pipe must be
                // drained to the end or the child blocks.
                let mut line = Vec::new();
                while stdout.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                    let text = String::from_utf8_lossy(&line);
                    print!("{text}");
                    output.push_str(&text);
                    line.clear();
                }
                child.wait()
            });
        let (passed, why) = match status {
            Ok(status) if status.success() => (true, String::new()),
            Ok(status) => (false, why_failed(&output).unwrap_or(status.to_string())),
            Err(e) => (false, format!("cannot start: {e}")),
        };
        Outcome {
            name: name.to_string(),
            passed,
            took: started.elapsed(),
            why,
            output,
        }
    }

    /// This outcome, of the failed tests run again, for a step whose `first` run failed while
    /// the kernel skipped the tracer's programs (`skipped`, the witness's lines): the table
    /// says both.
    pub fn after_kernel_skips(self, name: &str, first: &Outcome, skipped: &[String]) -> Outcome {
        let witness = shorten(skipped.first().map(String::as_str).unwrap_or(""));
        let why = match self.passed {
            true => format!(
                "passed again after failing ({}) with {} tracepoint hits the kernel ran no \
                 program for, first: {witness}",
                first.why,
                skipped.len()
            ),
            false => self.why,
        };
        Outcome {
            name: name.to_string(),
            passed: self.passed,
            took: first.took + self.took,
            why,
            output: format!("{}{}", first.output, self.output),
        }
    }

    /// A step that ran elsewhere (a kernel under qemu).
    pub fn from_parts(name: String, passed: bool, took: Duration, why: String) -> Outcome {
        Outcome {
            name,
            passed,
            took,
            why,
            output: String::new(),
        }
    }
}

/// A lab's failed check line, else the first panic message, else the failed tests' names.
fn why_failed(output: &str) -> Option<String> {
    if let Some(check) = output
        .lines()
        .find(|l| l.starts_with("Check: ") && l.ends_with("FAIL"))
    {
        return Some(shorten(check.trim_start_matches("Check: ")));
    }
    let mut lines = output.lines();
    if let Some(at) = lines.position(|l| l.contains("panicked at")) {
        let message = output.lines().nth(at + 1).unwrap_or("").trim();
        return Some(shorten(message));
    }
    let failed = failed_tests(output);
    (!failed.is_empty()).then(|| format!("failed: {}", failed.join(", ")))
}

/// Each panic's message (libtest's "panicked at" line and what follows, up to the backtrace or
/// 40 lines), for a failure summary.
fn panic_messages(output: &str) -> String {
    const MAX_LINES: usize = 40;
    let lines: Vec<&str> = output.lines().collect();
    let mut kept = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        if !line.contains("panicked at") {
            continue;
        }
        kept.push(*line);
        kept.extend(
            lines[at + 1..]
                .iter()
                .take_while(|l| !l.starts_with("stack backtrace:") && !l.starts_with("note: "))
                .take(MAX_LINES),
        );
    }
    kept.join("\n")
}

/// The names of the tests libtest reported failed.
pub fn failed_tests(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("test ")?.strip_suffix(" ... FAILED"))
        .map(str::to_string)
        .collect()
}

fn shorten(line: &str) -> String {
    const MAX: usize = 320;
    match line.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_string(),
    }
}

pub fn print_table(outcomes: &[Outcome]) {
    // The failures' own words first, gathered here: a long run's log is often read from its
    // end, where the step that failed first is far above.
    for o in outcomes.iter().filter(|o| !o.passed) {
        let messages = panic_messages(&o.output);
        if !messages.is_empty() {
            println!("\n--- {} failed:\n{messages}", o.name);
        }
    }
    println!();
    println!("{:<40} {:<6} {:>7}  why", "step", "result", "time");
    for o in outcomes {
        println!(
            "{:<40} {:<6} {:>6.0}s  {}",
            o.name,
            if o.passed { "pass" } else { "FAIL" },
            o.took.as_secs_f64(),
            o.why
        );
    }
    let passed = outcomes.iter().filter(|o| o.passed).count();
    let total: f64 = outcomes.iter().map(|o| o.took.as_secs_f64()).sum();
    println!();
    println!("steps: {passed} passed, {} failed", outcomes.len() - passed);
    println!("wall time of the steps: {:.0} s", total);
}

/// Per test (binary::name), how many runs, how many failures, and how many of those failures
/// came with tracepoint hits the kernel skipped, from libtest's lines of each first run.
#[derive(Default)]
pub struct Rates {
    tests: BTreeMap<String, (u32, u32, u32)>,
}

impl Rates {
    pub fn add(&mut self, binary: &str, output: &str, kernel_skipped: bool) {
        for line in output.lines() {
            let Some(rest) = line.strip_prefix("test ") else {
                continue;
            };
            let (name, failed) = if let Some(name) = rest.strip_suffix(" ... ok") {
                (name, false)
            } else if let Some(name) = rest.strip_suffix(" ... FAILED") {
                (name, true)
            } else {
                continue;
            };
            let entry = self.tests.entry(format!("{binary}::{name}")).or_default();
            entry.0 += 1;
            entry.1 += u32::from(failed);
            entry.2 += u32::from(failed && kernel_skipped);
        }
    }

    pub fn print(&self, rounds: u32) {
        println!();
        println!("failure rates over {rounds} rounds (first runs; in brackets, failures in a run where the kernel skipped tracepoint hits):");
        for (test, (runs, failures, skipped)) in &self.tests {
            println!("  {failures:>3} / {runs:<3} ({skipped}) {test}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_why_is_the_panic_message() {
        let output = "running 2 tests\ntest a ... ok\n\nthread 'b' (12) panicked at tests/x.rs:3:5:\n\
                      local-out-drop: packet 6: expected dropped\nstack backtrace:\ntest b ... FAILED\n";
        assert_eq!(
            why_failed(output).as_deref(),
            Some("local-out-drop: packet 6: expected dropped")
        );
        assert_eq!(
            why_failed("test b ... FAILED\n").as_deref(),
            Some("failed: b")
        );
        let lab = "Check: asymmetric-route: 2 key packets, 2 fates correct; 5 tcpdump verdicts, \
                   4 agreeing: FAIL\nthread 'x' (1) panicked at a.rs:1:1:\nlabs failed: tracer: 42\n";
        assert_eq!(
            why_failed(lab).as_deref(),
            Some("asymmetric-route: 2 key packets, 2 fates correct; 5 tcpdump verdicts, 4 agreeing: FAIL")
        );
    }

    #[test]
    fn the_summary_keeps_each_panic_message_without_its_backtrace() {
        let output = "test a ... FAILED\nthread 'a' (1) panicked at x.rs:1:1:\n2 dropped: udp\n\
                      tcp/ipv4: 3\nstack backtrace:\n  0: std\nthread 'b' (2) panicked at y.rs:2:2:\n\
                      no MLD report\nnote: run with RUST_BACKTRACE\n";
        assert_eq!(
            panic_messages(output),
            "thread 'a' (1) panicked at x.rs:1:1:\n2 dropped: udp\ntcp/ipv4: 3\n\
             thread 'b' (2) panicked at y.rs:2:2:\nno MLD report"
        );
        assert_eq!(panic_messages("test a ... ok\n"), "");
    }

    #[test]
    fn rates_count_runs_and_failures_per_test() {
        let mut rates = Rates::default();
        rates.add("lab", "test one ... ok\ntest two ... FAILED\n", false);
        rates.add("lab", "test one ... ok\ntest two ... ok\n", true);
        rates.add("lab", "test one ... ok\ntest two ... FAILED\n", true);
        assert_eq!(rates.tests["lab::one"], (3, 0, 0));
        assert_eq!(rates.tests["lab::two"], (3, 2, 1));
    }
}
