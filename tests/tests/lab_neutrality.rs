//! Fate neutrality, lab by lab: each lab's topology, fault and traffic run once without the
//! tracer and once with it (`tracer lab run NAME --neutrality`), and what each run counted is
//! compared: per namespace the kernel's SNMP and netstat counters (delivered, dropped, sent,
//! retransmitted, reset), every interface's packets, every iptables rule's and nftables
//! counter's packets and bytes. The tracer only watches: every counter must be the same.

use std::process::Command;

use serde_json::Value;
use tests::{require_privileges, tracer_bin};

fn labs() -> Vec<String> {
    let out = Command::new(tracer_bin())
        .args(["lab", "list"])
        .output()
        .expect("tracer lab list");
    assert!(out.status.success(), "tracer lab list failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Runs one lab both ways; its report, or why there is none.
fn compare(lab: &str) -> Result<Value, String> {
    let out = Command::new(tracer_bin())
        .args(["lab", "run", lab, "--neutrality", "--format", "json"])
        .output()
        .expect("run a lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .ok_or_else(|| {
            format!(
                "lab {lab}: no report: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
}

/// What is wrong with one lab's report: counters that differ, sockets that could still send
/// when the counters were read, a run in which the tracer saw nothing.
fn problems(lab: &str, report: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for d in report["differences"].as_array().into_iter().flatten() {
        problems.push(format!(
            "lab {lab}: {}: {} without the tracer, {} with it",
            d["counter"].as_str().unwrap_or("?"),
            d["without"],
            d["with"]
        ));
    }
    if report["identical"] != Value::Bool(true) && problems.is_empty() {
        problems.push(format!("lab {lab}: the report says the runs differ"));
    }
    for run in ["without", "with"] {
        for socket in report[run]["unsettled"].as_array().into_iter().flatten() {
            problems.push(format!(
                "lab {lab}: counted {run} the tracer while a socket could still send: {socket}"
            ));
        }
    }
    if report["with"]["events"].as_u64().unwrap_or(0) == 0 {
        problems.push(format!(
            "lab {lab}: the tracer saw no event, so the run with it proves nothing"
        ));
    }
    let moved = report["without"]["counters"]
        .as_object()
        .is_some_and(|counters| counters.values().any(|n| n.as_i64() != Some(0)));
    if !moved {
        problems.push(format!(
            "lab {lab}: no counter moved, so nothing was compared"
        ));
    }
    problems
}

#[test]
fn every_lab_counts_the_same_with_and_without_the_tracer() {
    require_privileges();
    let labs = labs();
    assert!(!labs.is_empty(), "no labs listed");
    let (mut counters, mut moved, mut packets) = (0, 0, 0);
    let mut failures = Vec::new();
    for lab in &labs {
        let report = match compare(lab) {
            Ok(report) => report,
            Err(problem) => {
                eprintln!("{problem}");
                failures.push(problem);
                continue;
            }
        };
        let found = problems(lab, &report);
        let (n, m, p) = (
            report["counters"].as_u64().unwrap_or(0),
            report["moved"].as_u64().unwrap_or(0),
            report["packets"].as_u64().unwrap_or(0),
        );
        eprintln!(
            "{lab}: {n} counters ({m} moved), {p} packets compared, {} tracer events: {}",
            report["with"]["events"],
            if found.is_empty() {
                "identical".to_string()
            } else {
                format!("{} problems", found.len())
            }
        );
        counters += n;
        moved += m;
        packets += p;
        failures.extend(found);
    }
    eprintln!(
        "{packets} packets compared over {} labs ({counters} counters, {moved} moved)",
        labs.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
