//! Building the tracer with its eBPF object (tracer/build.rs does the eBPF part).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

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
/// tests can make it panic (`TRACER_INJECT_PANIC`); no other build has it. Kept as a copy of
/// its own (`target/debug/under-test/tracer`, still named `tracer`, which is how a running lab
/// is recognised): a later plain `cargo test` builds
/// `target/debug/tracer` again without the feature (the tracer package has an integration
/// test, so cargo builds its binary), and a run once lost its fault injection that way.
pub fn tracer_under_test() -> Result<PathBuf> {
    let built = build(false, &["fault-injection"])?;
    let dir = built.with_file_name("under-test");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kept = dir.join("tracer");
    std::fs::copy(&built, &kept)
        .with_context(|| format!("cannot copy {} to {}", built.display(), kept.display()))?;
    Ok(kept)
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
