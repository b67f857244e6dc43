//! `cargo xtask test`: unit tests (no root), then the privileged integration tests.

use std::process::Command;

use anyhow::{bail, Result};

use crate::{build, cmd, setup};

pub fn run(unit_only: bool, args: &[String]) -> Result<()> {
    setup::run()?;
    let tracer = build::tracer(false)?;
    let root = build::workspace_root();

    // Unit tests: the default members, exactly what plain `cargo test` runs.
    cmd::run(
        Command::new("cargo")
            .current_dir(&root)
            .env("TRACER_REQUIRE_EBPF", "1")
            .env("TRACER_EBPF_TOOLCHAIN", setup::ebpf_toolchain())
            .arg("test"),
    )?;
    if unit_only {
        return Ok(());
    }
    if !cmd::is_root() {
        bail!("the integration tests load eBPF programs and build namespaces: run `cargo xtask test` as root");
    }
    // Integration tests share namespaces names, rules and the CPU budget: one at a time.
    cmd::run(
        Command::new("cargo")
            .current_dir(&root)
            .env("TRACER_BIN", &tracer)
            .args(["test", "--package", "tests", "--", "--test-threads=1"])
            .args(args),
    )
}
