//! Every lab (`tracer lab run --all`) on real namespaces, rules, programs and traffic: the
//! tracer's fates for each lab's key packets match the injected fault, and its tcpdump
//! verdicts match the real tcpdumps beside it. And a lab interrupted leaves nothing behind.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tests::{assert_released, program_ids_of, require_privileges, tracer_bin};

fn lab_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("tracer-lab-"))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn every_lab_agrees_with_its_fault_and_with_tcpdump() {
    require_privileges();
    let out = Command::new(tracer_bin())
        .args(["lab", "run", "--all"])
        .output()
        .expect("run the labs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "labs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| lab "))
        .collect();
    assert_eq!(rows.len(), 17, "one row per lab: {stdout}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let number = |i: usize| cells[i].parse::<usize>().unwrap();
        assert!(
            number(2) > 0,
            "a lab that checks no packet proves nothing: {row}"
        );
        assert_eq!(number(2), number(3), "fates: {row}");
        assert_eq!(number(4), number(5), "tcpdump verdicts: {row}");
        assert_eq!(cells[6], "pass", "{row}");
    }
    assert!(
        lab_namespaces().is_empty(),
        "namespaces left: {:?}",
        lab_namespaces()
    );
}

/// `lab run --record` keeps the lab's raw events: explained offline, they give the fates the
/// lab's own report gave (what a failing run saw can be studied after it).
#[test]
fn a_lab_run_records_its_events_for_explain() {
    require_privileges();
    let recording = tests::scratch("lab.jsonl");
    let out = Command::new(tracer_bin())
        .args(["lab", "run", "local-out-drop", "--record"])
        .arg(&recording)
        .output()
        .expect("run the lab");
    assert!(out.status.success(), "lab: {out:?}");
    let fates = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.trim_start().starts_with("fate: "))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let lab = fates(&String::from_utf8_lossy(&out.stdout));
    let explained = Command::new(tracer_bin())
        .arg("explain")
        .arg(&recording)
        .output()
        .expect("tracer explain");
    let _ = std::fs::remove_file(&recording);
    assert!(explained.status.success(), "explain: {explained:?}");
    let replayed = fates(&String::from_utf8_lossy(&explained.stdout));
    assert!(lab.len() >= 6, "the lab's packets: {lab:?}");
    assert_eq!(
        replayed, lab,
        "the recording explained gives the lab's fates"
    );
}

/// Starts a lab and waits until its namespaces exist.
fn start_lab() -> std::process::Child {
    let child = Command::new(tracer_bin())
        .args(["lab", "run", "local-in-drop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a lab");
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab_namespaces().len() < 2 {
        assert!(Instant::now() < deadline, "the lab built no namespaces");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Into the attach, where the tracer's programs go on.
    std::thread::sleep(Duration::from_secs(2));
    child
}

/// The program ids a running lab holds (the tracer's, and the fault's "other tool"), once it
/// holds some: the lab is then in the middle of its trace.
fn programs_held(lab: &std::process::Child) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held = program_ids_of(lab.id());
        if !held.is_empty() {
            return held;
        }
        assert!(Instant::now() < deadline, "the lab loaded no program");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_interrupted_lab_cleans_up_and_a_killed_one_is_cleaned_up() {
    require_privileges();
    let mut lab = start_lab();
    // Labs share their namespaces: while one runs, another, or a cleanup, is refused.
    for args in [&["lab", "run", "xdp-drop"][..], &["lab", "cleanup"]] {
        let out = Command::new(tracer_bin()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} while a lab runs: {stderr}");
        assert!(
            stderr.contains(&format!("(pid {})", lab.id())) && stderr.lines().count() == 1,
            "{args:?} names the running lab in one sentence: {stderr}"
        );
    }
    assert_eq!(
        lab_namespaces().len(),
        2,
        "the running lab kept its namespaces"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(lab.id() as i32, libc::SIGINT) };
    let status = lab.wait().unwrap();
    assert!(
        !status.success(),
        "an interrupted lab does not report success"
    );
    assert!(
        lab_namespaces().is_empty(),
        "Ctrl-C left {:?}",
        lab_namespaces()
    );

    let mut lab = start_lab();
    let held = programs_held(&lab);
    lab.kill().unwrap();
    lab.wait().unwrap();
    let cleanup = Command::new(tracer_bin())
        .args(["lab", "cleanup"])
        .output()
        .unwrap();
    assert!(cleanup.status.success());
    assert!(
        lab_namespaces().is_empty(),
        "cleanup left {:?}",
        lab_namespaces()
    );
    // Links die with the process; the programs go once their last reference does.
    assert_released(&held, "after a lab was killed");
}
