//! Commands: the top layer. Each parses its options and runs the layers below.

pub mod bench;
pub mod cleanup;
pub mod doctor;
pub mod explain;
pub mod lab;
pub mod trace;

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
    Trace(trace::TraceArgs),
    /// Rebuild journeys from a recorded event stream (`trace --record`), offline.
    Explain(explain::ExplainArgs),
    /// Reproducible scenarios in throwaway namespaces (list, run).
    Lab(lab::LabArgs),
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
    BenchPipeline(bench::BenchArgs),
}

/// The command line: parses the arguments, runs the command, and turns an error into one
/// sentence and an exit code.
pub fn main() -> ExitCode {
    crate::trace::fault::install_panic_report();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(args) => trace::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Doctor => doctor::run(),
        Command::Cleanup => cleanup::run(),
        Command::BenchPipeline(args) => bench::run(args),
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
            ExitCode::from(crate::trace::usage::exit_code(&err))
        }
    }
}
