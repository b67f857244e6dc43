//! Building the tracer with its eBPF object (tracer/build.rs does the eBPF part).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Result;

use crate::{cmd, setup};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Builds `tracer` and returns the path of the binary. `TRACER_REQUIRE_EBPF` makes the
/// build fail loudly rather than embed an empty eBPF object.
pub fn tracer(release: bool) -> Result<PathBuf> {
    build(release, &[])
}

/// The debug build the integration tests run: with `fault-injection`, so that the clean-exit
/// tests can make it panic (`TRACER_INJECT_PANIC`); no other build has it.
pub fn tracer_under_test() -> Result<PathBuf> {
    build(false, &["fault-injection"])
}

fn build(release: bool, features: &[&str]) -> Result<PathBuf> {
    let root = workspace_root();
    let mut build = Command::new("cargo");
    build
        .current_dir(&root)
        .env("TRACER_REQUIRE_EBPF", "1")
        .env("TRACER_EBPF_TOOLCHAIN", setup::ebpf_toolchain())
        .args(["build", "--package", "tracer"]);
    if release {
        build.arg("--release");
    }
    if !features.is_empty() {
        build.args(["--features", &features.join(",")]);
    }
    cmd::run(&mut build)?;
    let profile = if release { "release" } else { "debug" };
    Ok(root.join("target").join(profile).join("tracer"))
}
