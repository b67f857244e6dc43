//! Builds the eBPF object (`tracer-ebpf`) with aya-build and leaves it in OUT_DIR for
//! `include_bytes_aligned!`.
//!
//! The eBPF toolchain is `TRACER_EBPF_TOOLCHAIN` (default `debian-web`, see `cargo xtask
//! setup`; a rustup nightly with `rust-src` works too). Without that toolchain the build still
//! succeeds with an empty object, so that `cargo test` of the pure parts needs nothing else; the
//! binary then refuses to trace and says why. `TRACER_REQUIRE_EBPF=1` (set by `cargo xtask`)
//! turns that fallback into a build error.

use std::{env, fs, path::PathBuf};

use aya_build::{build_ebpf, Package, Toolchain};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=TRACER_EBPF_TOOLCHAIN");
    println!("cargo:rerun-if-env-changed=TRACER_REQUIRE_EBPF");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest.parent().expect("tracer/ lives in the workspace");
    let ebpf_dir = workspace.join("tracer-ebpf");
    let common_dir = workspace.join("tracer-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());

    let toolchain = env::var("TRACER_EBPF_TOOLCHAIN").unwrap_or_else(|_| "debian-web".into());
    // Debian's Rust is a stable compiler: -Z build-std needs RUSTC_BOOTSTRAP, which aya-build
    // reads from our environment and passes on to the eBPF build only.
    if !toolchain.starts_with("nightly") {
        // SAFETY: build scripts are single-threaded here.
        unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    let package = Package {
        name: "tracer-ebpf",
        root_dir: ebpf_dir.to_str().expect("UTF-8 path"),
        ..Default::default()
    };
    if let Err(err) = build_ebpf([package], Toolchain::Custom(&toolchain)) {
        if env::var("TRACER_REQUIRE_EBPF").is_ok_and(|v| v == "1") {
            return Err(err.context(format!(
                "building the eBPF object with toolchain '{toolchain}' failed; run `cargo xtask setup`"
            )));
        }
        // Until the toolchain exists, look again at every build: a path that does not exist
        // yet makes cargo rerun this script, so installing bpf-linker is picked up.
        let cargo_home = env::var("CARGO_HOME")
            .unwrap_or_else(|_| format!("{}/.cargo", env::var("HOME").unwrap_or_default()));
        println!("cargo:rerun-if-changed={cargo_home}/bin/bpf-linker");
        println!("cargo:warning=eBPF object not built ({err:#}); this tracer binary cannot trace. Run `cargo xtask build`.");
        fs::write(PathBuf::from(env::var("OUT_DIR")?).join("tracer"), [])?;
    }
    Ok(())
}
