//! `cargo xtask test`: unit tests (no root), then every integration test binary, one at a
//! time, then the kernel matrix. A failure does not stop the run: every step runs, a table
//! at the end says what passed and what failed (and why, in a line), and the exit code is
//! non-zero if anything failed. `--repeat N` runs the integration binaries N times and
//! reports each test's failure rate, to hunt the rare ones.
//!
//! A test binary that failed while the kernel ran none of the tracer's programs for some of
//! its tracepoint hits (`kernel_skips`: this project's machines do that on top of their init
//! agent) failed for the kernel: its failed tests run once more, and the table says so with
//! the first hit as the witness. A failure without such a witness is never run again.

mod kernel_skips;
mod outcome;

pub use outcome::Outcome;

use std::{path::Path, process::Command, time::Instant};

use anyhow::{bail, Result};
use clap::Args;

use crate::{build, cmd, setup};
use kernel_skips::SkipWitness;
use outcome::Rates;

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Only the unit tests (no root, no namespaces).
    #[arg(long)]
    unit: bool,
    /// Run the integration test binaries this many times, and report each test's failure
    /// rate.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Only these integration test binaries (file names in tests/tests, without `.rs`).
    #[arg(long = "only", value_name = "BINARY")]
    only: Vec<String>,
    /// Leave out the kernel matrix (older kernels under qemu).
    #[arg(long)]
    no_kernels: bool,
    /// Extra arguments for each integration test binary (a test name filter, --nocapture).
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(args: &TestArgs) -> Result<()> {
    setup::run()?;
    let tracer = build::tracer_under_test()?;
    let root = build::workspace_root();
    let mut outcomes = Vec::new();

    // Unit tests: the default members, exactly what plain `cargo test` runs.
    let mut unit = Command::new("cargo");
    unit.current_dir(&root)
        .env("TRACER_REQUIRE_EBPF", "1")
        .env("TRACER_EBPF_TOOLCHAIN", setup::ebpf_toolchain())
        .arg("test");
    outcomes.push(Outcome::of("unit tests", &mut unit));
    if !args.unit {
        if !cmd::is_root() {
            bail!("the integration tests load eBPF programs and build namespaces: run `cargo xtask test` as root");
        }
        outcomes.extend(integration(args, &root, &tracer)?);
        if !args.no_kernels && args.only.is_empty() {
            outcomes.extend(crate::vm::matrix::run_all(&tracer));
        }
    }
    outcome::print_table(&outcomes);
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    if failed > 0 {
        bail!("{failed} of {} steps failed", outcomes.len());
    }
    Ok(())
}

/// `cargo xtask kernels`: the kernel matrix alone.
pub fn kernels() -> Result<()> {
    setup::run()?;
    let tracer = build::tracer(false)?;
    let outcomes = crate::vm::matrix::run_all(&tracer);
    outcome::print_table(&outcomes);
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    if failed > 0 {
        bail!("{failed} of {} kernel steps failed", outcomes.len());
    }
    Ok(())
}

/// Each integration test binary on its own (they share namespace names, rules and the CPU),
/// `--repeat` times; a failing one does not stop the others.
fn integration(args: &TestArgs, root: &Path, tracer: &Path) -> Result<Vec<Outcome>> {
    let binaries = test_binaries(root)?;
    for name in &args.only {
        if !binaries.contains(name) {
            bail!("no integration test binary '{name}' (tests/tests has: {binaries:?})");
        }
    }
    let chosen: Vec<_> = binaries
        .into_iter()
        .filter(|b| args.only.is_empty() || args.only.contains(b))
        .collect();
    // Build once, so that the first binary's time is its own.
    cmd::run(Command::new("cargo").current_dir(root).args([
        "test",
        "--package",
        "tests",
        "--no-run",
    ]))?;
    let witness = SkipWitness::start()
        .map_err(|e| {
            eprintln!(
                "xtask: WARNING: no witness of the tracepoint hits the kernel skips ({e:#}): \
                 a test failed by them cannot be told apart from a real failure"
            )
        })
        .ok();
    let mut outcomes = Vec::new();
    let mut rates = Rates::default();
    for round in 1..=args.repeat {
        for binary in &chosen {
            let label = match args.repeat {
                1 => binary.clone(),
                _ => format!("{binary} (round {round})"),
            };
            let run = |label: &str, tests: &[String]| {
                if let Some(witness) = &witness {
                    if let Err(e) = witness.clear() {
                        eprintln!("xtask: WARNING: {e:#}");
                    }
                }
                let mut test = Command::new("cargo");
                test.current_dir(root)
                    .env("TRACER_BIN", tracer)
                    .args(["test", "--package", "tests", "--test", binary])
                    .args(["--", "--test-threads=1"]);
                match tests {
                    [] => test.args(&args.args),
                    names => test.arg("--exact").args(names),
                };
                let started = Instant::now();
                let outcome = Outcome::of(label, &mut test);
                eprintln!(
                    "xtask: {label}: {} in {:.0} s",
                    if outcome.passed { "passed" } else { "FAILED" },
                    started.elapsed().as_secs_f64()
                );
                let skipped = witness.as_ref().map(SkipWitness::hits).unwrap_or_default();
                (outcome, skipped)
            };
            let (first, skipped) = run(&label, &[]);
            rates.add(binary, &first.output, !skipped.is_empty());
            let failed = outcome::failed_tests(&first.output);
            let outcome = if first.passed || skipped.is_empty() || failed.is_empty() {
                first
            } else {
                eprintln!(
                    "xtask: {label}: the kernel ran none of the tracer's programs for {} \
                     tracepoint hits on top of PID 1 during that run (its trace was incomplete \
                     for the kernel's reason, README Requirements):\n  {}\n\
                     xtask: running its failed tests again: {failed:?}",
                    skipped.len(),
                    skipped.join("\n  ")
                );
                let (second, _) = run(&format!("{label} (again)"), &failed);
                second.after_kernel_skips(&label, &first, &skipped)
            };
            outcomes.push(outcome);
        }
    }
    if args.repeat > 1 {
        rates.print(args.repeat);
    }
    Ok(outcomes)
}

/// The integration test binaries: one per file in tests/tests.
fn test_binaries(root: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("tests/tests"))?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect();
    names.sort();
    Ok(names)
}
