//! `tracer`: follows packets through the Linux network stack and says where each one went,
//! where it died and whether tcpdump saw it.

mod analysis;
mod answered;
mod bridge;
mod capture;
mod cmd;
mod containers;
mod copies;
mod counters;
mod drop_reason;
mod explanation;
mod fate;
mod fault;
mod filter;
mod flow;
/// The property-test runner, shared with `tracer-common`'s parser properties.
#[cfg(test)]
#[path = "../../tracer-common/tests/fuzzing/runner.rs"]
mod fuzzing;
mod gaps;
mod journey;
mod kallsyms;
mod kernel_btf;
mod lab;
mod libpcap;
mod live_capture;
mod loader;
mod misses;
mod netfilter;
mod netns;
mod nf_link;
mod output;
mod packet_file;
mod paint;
mod pcapng;
mod privileges;
mod recording;
mod rules;
mod session;
mod sighting;
mod stats;
mod status;
mod tcp_flags;
mod tunnel;
mod usage;
mod verifier;
mod veth;
mod xdp_owner;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Follow packets through the kernel's network stack", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trace packets at every observation point and report their journeys.
    Trace(cmd::trace::TraceArgs),
    /// Rebuild journeys from a recorded event stream (`trace --record`), offline.
    Explain(cmd::explain::ExplainArgs),
    /// Reproducible scenarios in throwaway namespaces (list, run).
    Lab(cmd::lab::LabArgs),
    /// Which observation points this kernel and these privileges allow, and why not.
    Doctor,
    /// Remove whatever a tracer could have left: pinned objects of older builds, their
    /// netlink XDP programs and tc filters, lab namespaces. A running tracer is not touched.
    Cleanup,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) on stdout: `tracer man > /usr/local/share/man/man8/tracer.8`.
    Man,
    /// The userspace pipeline alone on synthetic events (for `cargo xtask bench`).
    #[command(hide = true)]
    BenchPipeline(cmd::bench::BenchArgs),
}

fn main() -> ExitCode {
    fault::install_panic_report();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(args) => cmd::trace::run(args),
        Command::Explain(args) => cmd::explain::run(args),
        Command::Lab(args) => cmd::lab::run(args),
        Command::Doctor => cmd::doctor::run(),
        Command::Cleanup => cmd::cleanup::run(),
        Command::BenchPipeline(args) => cmd::bench::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "tracer", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One sentence, no backtrace: the chain of causes on one line.
            eprintln!("tracer: {err:#}");
            ExitCode::from(usage::exit_code(&err))
        }
    }
}
