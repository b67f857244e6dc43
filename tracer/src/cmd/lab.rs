//! `tracer lab`: list, run and clean up labs.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::{
    lab::{self, Detail},
    model::recording::{self, Recorder},
    report::stdout::Format,
    trace::usage::Usage,
};

#[derive(Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// List the labs.
    List,
    /// Build a lab's topology, inject its fault, drive traffic, trace it beside tcpdump, and
    /// check the tracer against the fault.
    #[command(after_help = "Examples:
  tracer lab run local-in-drop        the story of one lab, with its check
  tracer lab run --all                every lab; a table of checks, exit 1 if one fails
  tracer lab run mtu-black-hole --keep    leave the namespaces to explore")]
    Run {
        /// The lab to run (see `tracer lab list`).
        #[arg(required_unless_present = "all")]
        name: Option<String>,
        /// Run every lab and report, per lab, packets checked, fates correct and tcpdump
        /// verdicts agreeing.
        #[arg(long, conflicts_with = "name")]
        all: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Leave the topology in place for exploration (remove it with `tracer lab cleanup`).
        #[arg(long, conflicts_with = "all")]
        keep: bool,
        /// Run the lab twice, without and with the tracer, and compare the counters of
        /// what was delivered and dropped (tests/tests/lab_neutrality.rs).
        #[arg(long, hide = true, conflicts_with_all = ["all", "keep"])]
        neutrality: bool,
        /// Write the raw event stream of the lab's trace to this file (replay it with
        /// `tracer explain`): what a run that disagreed with its fault saw, to study later.
        #[arg(long, value_name = "FILE.jsonl", conflicts_with_all = ["all", "neutrality"])]
        record: Option<std::path::PathBuf>,
    },
    /// Remove everything a lab left behind (after a crash or SIGKILL): its namespaces, and
    /// with them their links, rules and programs.
    Cleanup,
}

pub fn run(args: LabArgs) -> Result<()> {
    match args.command {
        LabCommand::List => {
            for l in lab::LABS {
                println!("{:<18} {}", l.name, l.summary);
            }
            Ok(())
        }
        LabCommand::Run {
            name,
            all,
            format,
            keep,
            neutrality,
            record,
        } => {
            if let Some(pid) = lab::topology::running_lab() {
                bail!(
                    "another lab is running (pid {pid}); labs share their namespaces, so run one at a time"
                );
            }
            clean_up_on_signal();
            if all {
                return run_all(format);
            }
            let name = name.unwrap_or_default();
            let Some(l) = lab::find(&name) else {
                return Err(Usage(format!("unknown lab '{name}' (see `tracer lab list`)")).into());
            };
            if neutrality {
                return compare(l, format);
            }
            let recorder = match &record {
                Some(path) => Some(Recorder::new(recording::create(path)?, path)),
                None => None,
            };
            let score = lab::run(l, format, keep, Detail::Full, recorder)?;
            if !score.passed() {
                bail!("lab {name}: the tracer disagrees with the injected fault");
            }
            Ok(())
        }
        LabCommand::Cleanup => {
            if let Some(pid) = lab::topology::running_lab() {
                bail!("a lab is running (pid {pid}); it removes its namespaces when it ends");
            }
            let removed = lab::topology::cleanup()?;
            eprintln!("tracer: removed {removed} lab namespaces");
            Ok(())
        }
    }
}

/// Prints both runs' counters and what differs; fails when anything does.
fn compare(l: &lab::Lab, format: Format) -> Result<()> {
    let report = lab::neutrality::compare(l)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Text => {
            println!(
                "{}: {} counters ({} moved), {} packets compared, {} tracer events: {}",
                report.lab,
                report.counters,
                report.moved,
                report.packets,
                report.with.events,
                if report.identical {
                    "identical"
                } else {
                    "DIFFERENT"
                }
            );
            for d in &report.differences {
                println!(
                    "  {}: {} without the tracer, {} with it",
                    d.counter, d.without, d.with
                );
            }
            for (run, name) in [(&report.without, "without"), (&report.with, "with")] {
                for what in &run.unsettled {
                    println!("  not settled when counted {name} the tracer: {what}");
                }
            }
        }
    }
    if !report.identical {
        bail!("lab {}: the tracer changed what the lab counted", l.name);
    }
    Ok(())
}

fn run_all(format: Format) -> Result<()> {
    let mut scores = Vec::new();
    for l in lab::LABS {
        let score = match lab::run(l, format, false, Detail::Check, None) {
            Ok(score) => score,
            Err(e) => {
                let mut failed = lab::Score {
                    lab: l.name.to_string(),
                    ..Default::default()
                };
                failed.problems.push(format!("{e:#}"));
                println!("Check: {}\n  - {e:#}", failed.line());
                failed
            }
        };
        scores.push(score);
    }
    if matches!(format, Format::Text) {
        println!("\n| lab | key packets | fates correct | tcpdump verdicts | agreeing | result |");
        println!("|---|---|---|---|---|---|");
        for s in &scores {
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                s.lab,
                s.packets_checked,
                s.fates_correct,
                s.verdicts_checked,
                s.verdicts_agreeing,
                if s.passed() { "pass" } else { "FAIL" }
            );
        }
    }
    let failed: Vec<&str> = scores
        .iter()
        .filter(|s| !s.passed())
        .map(|s| s.lab.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} labs failed: {}",
            failed.len(),
            scores.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Ctrl-C or SIGTERM during a lab removes its namespaces (and with them everything in them)
/// before exiting: SIGINT and SIGTERM are blocked in every thread and awaited by one.
fn clean_up_on_signal() {
    // SAFETY: plain signal-mask calls on a local set, before the lab starts other threads.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut signal = 0;
            libc::sigwait(&set, &mut signal);
            eprintln!("\ntracer: interrupted; removing the lab's namespaces");
            let _ = lab::topology::cleanup();
            std::process::exit(130);
        });
    }
}
