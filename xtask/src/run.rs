//! `cargo xtask run`: the main job on a built-in default, the smallest lab.

use std::process::Command;

use anyhow::{bail, Result};

use crate::{build, cmd, setup};

/// The lab `cargo xtask run` shows when it is given no arguments.
const DEFAULT_ARGS: &[&str] = &["lab", "run", "local-in-drop"];

pub fn run(release: bool, args: &[String]) -> Result<()> {
    setup::run()?;
    let tracer = build::tracer(release)?;
    let mut command = Command::new(&tracer);
    if args.is_empty() {
        command.args(DEFAULT_ARGS);
    } else {
        command.args(args);
    }
    eprintln!("+ {}", cmd::display(&command));
    let status = command.status()?;
    if !status.success() {
        bail!("tracer exited with {status}");
    }
    Ok(())
}
