//! `tracer lab`: list, run and clean up labs.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::{cmd::trace::Format, lab};

#[derive(Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// List the labs.
    List,
    /// Build a lab's topology, inject its fault, drive traffic and trace it.
    Run {
        /// The lab to run (see `tracer lab list`).
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Remove namespaces a lab left behind (after a crash or SIGKILL).
    Cleanup,
}

pub fn run(args: LabArgs) -> Result<()> {
    match args.command {
        LabCommand::List => {
            for l in lab::LABS {
                println!("{:<16} {}", l.name, l.summary);
            }
            Ok(())
        }
        LabCommand::Run { name, format } => match lab::find(&name) {
            Some(l) => (l.run)(format),
            None => bail!("unknown lab '{name}' (see `tracer lab list`)"),
        },
        LabCommand::Cleanup => {
            let removed = lab::topology::cleanup()?;
            eprintln!("tracer: removed {removed} lab namespaces");
            Ok(())
        }
    }
}
