//! `cargo xtask fuzz`: the property tests that fuzz the parser, the filter interpreter
//! (against libpcap), event decoding and recordings, with many cases for about N seconds.
//!
//! Each property runs alone, in rounds of fresh random seeds, until its share of the time is
//! spent; the first round measures its rate and sizes the next. The cases and seconds come
//! from the line each property prints (`fuzz-stats NAME cases=N seconds=S`, see
//! `tracer-common/tests/fuzzing/runner.rs`). No root: these are unit tests.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{build, cmd};

#[derive(Args)]
pub struct FuzzArgs {
    /// Seconds in all, shared equally among the properties (default: ten minutes).
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Only the properties whose name contains this (repeatable).
    #[arg(long)]
    only: Vec<String>,
}

/// The crates whose tests hold fuzz properties.
const PACKAGES: [&str; 2] = ["tracer-common", "tracer"];
/// Cases of a property's first round, which measures its rate.
const FIRST_ROUND: u64 = 256;

struct Property {
    executable: PathBuf,
    name: String,
}

#[derive(Default)]
struct Tally {
    rounds: u32,
    cases: u64,
    seconds: f64,
    failure: Option<String>,
}

pub fn run(args: &FuzzArgs) -> Result<()> {
    let properties: Vec<Property> = properties()?
        .into_iter()
        .filter(|p| args.only.is_empty() || args.only.iter().any(|o| p.name.contains(o)))
        .collect();
    if properties.is_empty() {
        bail!("no fuzz property matches {:?}", args.only);
    }
    eprintln!(
        "xtask: {} tests, about {:.0}s each",
        properties.len(),
        args.seconds as f64 / properties.len() as f64
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut results = Vec::new();
    for (i, property) in properties.iter().enumerate() {
        // What is left, shared among the tests left: a plain test (no rounds) or a round
        // that ran long leaves more or less to the others.
        let left = deadline.saturating_duration_since(Instant::now());
        let tally = fuzz(property, left / (properties.len() - i) as u32)?;
        if tally.rounds == 0 && tally.failure.is_none() {
            continue;
        }
        eprintln!(
            "xtask: {}: {} cases in {:.1}s{}",
            property.name,
            tally.cases,
            tally.seconds,
            if tally.failure.is_some() {
                ", FAILED"
            } else {
                ""
            }
        );
        results.push((property, tally));
    }
    print_table(&results, started.elapsed());
    let failed: Vec<&str> = results
        .iter()
        .filter_map(|(p, t)| t.failure.as_ref().map(|_| p.name.as_str()))
        .collect();
    for (property, tally) in &results {
        if let Some(output) = &tally.failure {
            eprintln!("\n== {} failed:\n{output}", property.name);
        }
    }
    if !failed.is_empty() {
        bail!("{} properties failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// Builds the test executables and lists the fuzz properties in them: every test of a
/// `fuzz_*` test target, and the tests in a `fuzz` module elsewhere; ignored ones (known
/// bugs) left out.
fn properties() -> Result<Vec<Property>> {
    let mut build = Command::new("cargo");
    build.current_dir(build::workspace_root()).args([
        "test",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    for package in PACKAGES {
        build.args(["--package", package]);
    }
    eprintln!("+ {}", cmd::display(&build));
    let output = build
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot start cargo")?;
    if !output.status.success() {
        bail!("building the tests failed");
    }
    let mut properties = Vec::new();
    let mut fresh = true;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(executable), Some(target)) = (
            message["executable"].as_str(),
            message["target"]["name"].as_str(),
        ) else {
            continue;
        };
        let whole_target = target.starts_with("fuzz");
        let ignored = list(executable, true)?;
        let fuzzes = |name: &String| {
            (whole_target || name.split("::").any(|part| part == "fuzz")) && !ignored.contains(name)
        };
        let names: Vec<String> = list(executable, false)?
            .into_iter()
            .filter(fuzzes)
            .collect();
        if names.is_empty() {
            continue;
        }
        let executable = pin(Path::new(executable), std::mem::take(&mut fresh))?;
        for name in names {
            properties.push(Property {
                executable: executable.clone(),
                name,
            });
        }
    }
    Ok(properties)
}

/// A link of our own to a test executable, so that every round runs the code the first one
/// ran: in a shared `target/`, another build replaces the file meanwhile (the linker writes
/// a new one, which leaves a hard link to the old one intact). `fresh`: drop the links of an
/// earlier run first.
fn pin(executable: &Path, fresh: bool) -> Result<PathBuf> {
    let profile_dir = executable
        .parent()
        .and_then(Path::parent)
        .context("a test executable lives in target/PROFILE/deps")?;
    let dir = profile_dir.join("fuzz");
    if fresh {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pinned = dir.join(executable.file_name().context("a test executable's name")?);
    let _ = std::fs::remove_file(&pinned);
    std::fs::hard_link(executable, &pinned)
        .or_else(|_| std::fs::copy(executable, &pinned).map(drop))
        .with_context(|| {
            format!(
                "cannot link {} to {}",
                executable.display(),
                pinned.display()
            )
        })?;
    Ok(pinned)
}

/// The tests of a libtest executable (only the ignored ones with `ignored`).
fn list(executable: &str, ignored: bool) -> Result<Vec<String>> {
    let mut list = Command::new(executable);
    list.args(["--list", "--format", "terse"]);
    if ignored {
        list.arg("--ignored");
    }
    let text = cmd::output(&mut list).with_context(|| format!("cannot list {executable}"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect())
}

/// Runs `property` in rounds until `share` is spent or a round fails.
fn fuzz(property: &Property, share: Duration) -> Result<Tally> {
    let mut tally = Tally::default();
    let started = Instant::now();
    let mut cases = FIRST_ROUND;
    loop {
        let round = Instant::now();
        let mut test = Command::new(&property.executable);
        test.args([
            "--exact",
            &property.name,
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("PROPTEST_CASES", cases.to_string());
        let output = test
            .output()
            .with_context(|| format!("cannot run {}", property.executable.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let Some((ran, seconds)) = stats(&text, &property.name) else {
            // A plain test beside the properties (a regression example) passes without one;
            // a property without one died before its end (a crash, a signal).
            if !output.status.success() {
                tally.failure = Some(format!("({}, no fuzz-stats line)\n{text}", output.status));
            }
            return Ok(tally);
        };
        tally.rounds += 1;
        tally.cases += ran;
        tally.seconds += seconds;
        if !output.status.success() {
            tally.failure = Some(text);
            return Ok(tally);
        }
        let left = share.saturating_sub(started.elapsed());
        // Stop when another round would be mostly start-up.
        if left < Duration::from_secs(2) {
            return Ok(tally);
        }
        // Size the next round to the time left at the rate this round ran (start-up
        // included), aiming short since the rate moves with the machine's load; no more than
        // 50 times the last round, in case that one was a fluke.
        let rate = ran as f64 / round.elapsed().as_secs_f64().max(1e-3);
        cases = ((rate * left.as_secs_f64() * 0.8) as u64).clamp(16, cases * 50);
    }
}

/// Cases and seconds from `fuzz-stats NAME cases=N seconds=S` (the last part of `name`).
fn stats(output: &str, name: &str) -> Option<(u64, f64)> {
    let short = name.rsplit("::").next()?;
    let line = output
        .lines()
        .find(|l| l.starts_with("fuzz-stats ") && l.split(' ').nth(1) == Some(short))?;
    let field = |key: &str| {
        line.split(' ')
            .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
    };
    Some((
        field("cases")?.parse().ok()?,
        field("seconds")?.parse().ok()?,
    ))
}

fn print_table(results: &[(&Property, Tally)], elapsed: Duration) {
    println!("| property | rounds | cases | seconds | cases/s | result |");
    println!("|---|---:|---:|---:|---:|---|");
    let (mut cases, mut seconds) = (0, 0.0);
    for (property, t) in results {
        cases += t.cases;
        seconds += t.seconds;
        println!(
            "| {} | {} | {} | {:.1} | {:.0} | {} |",
            property.name,
            t.rounds,
            t.cases,
            t.seconds,
            t.cases as f64 / t.seconds.max(1e-9),
            if t.failure.is_some() { "FAILED" } else { "ok" }
        );
    }
    println!(
        "| all {} | | {cases} | {seconds:.1} | | {:.0}s wall |",
        results.len(),
        elapsed.as_secs_f64()
    );
}
