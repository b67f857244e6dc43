//! Command lines run as a person types them: split on whitespace, no shell, stdin closed.

use std::process::{Command, ExitStatus, Stdio};

use anyhow::{bail, Context, Result};

/// A command line split on whitespace, as a `Command`.
pub fn command(line: &str) -> Command {
    let mut words = line.split_whitespace();
    let mut command = Command::new(words.next().unwrap_or_default());
    command.args(words);
    command
}

/// `line` inside namespace `ns` (`ip netns exec NS LINE`).
pub fn command_in(ns: &str, line: &str) -> Command {
    command(&format!("ip netns exec {ns} {line}"))
}

/// Runs a command line; its stdout, or an error that names the line and holds its stderr.
pub fn sh(line: &str) -> Result<String> {
    let program = line.split_whitespace().next().context("empty command")?;
    checked(&mut command(line), program, format!("`{line}`"))
}

/// Runs `cmd`; its stdout, or an error with its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let name = format!("{cmd:?}");
    checked(cmd, &name, &name)
}

/// Runs `cmd` with no input; its stdout, or an error that calls it `program` if it could not
/// start and `line` if it failed.
fn checked(cmd: &mut Command, program: &str, line: impl std::fmt::Display) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{line} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command line with no input and its output discarded: for cleanups whose failure
/// (nothing left to remove) is no error.
pub fn quiet(line: &str) -> std::io::Result<ExitStatus> {
    command(line)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}
