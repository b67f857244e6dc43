//! `cargo xtask setup`: installs what is missing, idempotently, and says what and why.
//!
//! Nothing here changes the user's default Rust toolchain: the eBPF toolchain is a separate
//! rustup toolchain (`debian-web`, Debian's Rust with its library source) chosen by
//! `TRACER_EBPF_TOOLCHAIN`, and bpf-linker is a cargo-installed binary.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::cmd;

/// The rustup toolchain that builds the eBPF object, unless `TRACER_EBPF_TOOLCHAIN` says otherwise.
pub const DEFAULT_EBPF_TOOLCHAIN: &str = "debian-web";
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Debian packages and the reason each is needed.
const DEBIAN_WEB_TOOLCHAIN: &[(&str, &str)] = &[
    ("rustc-web", "Rust 1.96 on LLVM 22 for the eBPF target"),
    ("cargo-web", "its cargo"),
    ("rust-web-src", "Rust library source for -Z build-std=core"),
];
const BPF_LINKER_BUILD: &[(&str, &str)] = &[
    ("llvm-22-dev", "bpf-linker links eBPF objects with LLVM 22"),
    ("libpolly-22-dev", "needed to link against LLVM 22"),
    ("libzstd-dev", "needed to link against LLVM 22"),
    ("zlib1g-dev", "needed to link against LLVM 22"),
];
const RUNTIME_AND_TESTS: &[(&str, &str)] = &[
    ("iproute2", "ip and tc: namespaces, veths, qdiscs"),
    ("iptables", "labs and tests inject netfilter rules"),
    ("nftables", "labs and tests inject nftables rules"),
    // tcpdump also brings libpcap (libpcap0.8, libpcap0.8t64 on newer releases), which the
    // tracer loads at run time to compile FILTER expressions.
    (
        "tcpdump",
        "the oracle for what a capture sees; brings libpcap for FILTER",
    ),
    ("tshark", "reads back pcapng files in tests"),
    (
        "iperf3",
        "traffic for benchmarks and the normal-traffic test",
    ),
    (
        "nginx",
        "the normal-traffic test's HTTP server (its system service is left stopped)",
    ),
    (
        "dnsmasq-base",
        "the normal-traffic test's DNS server: the program alone, no system service on :53",
    ),
    (
        "bind9-dnsutils",
        "dig: the normal-traffic test's DNS queries",
    ),
    ("curl", "the normal-traffic test's HTTP requests"),
    ("docker.io", "a real Docker daemon for the container tests"),
    (
        "busybox-static",
        "the container tests' image, built locally (no registry)",
    ),
    ("bpftool", "tests check that nothing stays attached"),
    ("iputils-ping", "ping traffic in labs and tests"),
    ("procps", "sysctl in labs"),
    ("bsdutils", "script(1): tests use a pseudo-terminal"),
];
/// Packages above that come with a system service: the tests start their own server in a
/// namespace, so a service the install started on the host is stopped and disabled.
const SERVICES_NOT_WANTED: &[(&str, &[&str])] = &[
    ("nginx", &["nginx"]),
    // Docker's tests start their own daemon in a namespace; a system one would hold its pid
    // file and state.
    ("docker.io", &["docker", "containerd"]),
];
/// Only for `cargo xtask vm` (other kernels under qemu), so not part of `setup` itself.
const KERNEL_VMS: &[(&str, &str)] = &[
    (
        "qemu-system-x86",
        "boots other kernels with software emulation",
    ),
    ("busybox-static", "the guest's initramfs: one static binary"),
    (
        "kmod",
        "depmod for the downloaded kernels; modprobe inside the guest",
    ),
    (
        "xz-utils",
        "unpacks .ko.xz modules for busybox insmod, and 6.1's kernel",
    ),
    ("zstd", "unpacks 6.12's kernel, so that it boots faster"),
];

pub fn run() -> Result<()> {
    let toolchain = ebpf_toolchain();
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    if toolchain == DEFAULT_EBPF_TOOLCHAIN {
        wanted.extend(DEBIAN_WEB_TOOLCHAIN);
    }
    if !bpf_linker_ok() {
        wanted.extend(BPF_LINKER_BUILD);
    }
    wanted.extend(RUNTIME_AND_TESTS);
    install_debian_packages(&wanted)?;
    install_bpf_linker()?;
    if toolchain == DEFAULT_EBPF_TOOLCHAIN {
        link_debian_toolchain()?;
    }
    check_rust_src(&toolchain)?;
    eprintln!("setup: all prerequisites present (eBPF toolchain: {toolchain})");
    Ok(())
}

/// Installs what `cargo xtask vm` needs, if missing.
pub fn kernel_vms() -> Result<()> {
    install_debian_packages(KERNEL_VMS)
}

pub fn ebpf_toolchain() -> String {
    std::env::var("TRACER_EBPF_TOOLCHAIN").unwrap_or_else(|_| DEFAULT_EBPF_TOOLCHAIN.into())
}

fn package_installed(name: &str) -> bool {
    cmd::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", name]))
        .is_some_and(|status| status.trim() == "install ok installed")
}

fn install_debian_packages(wanted: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<_> = wanted
        .iter()
        .filter(|(p, _)| !package_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for (package, why) in &missing {
        eprintln!("setup: installing {package}: {why}");
    }
    if !cmd::is_root() {
        bail!("installing Debian packages needs root; run as root or install them yourself");
    }
    cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(missing.iter().map(|(p, _)| *p)),
    )?;
    for (package, _) in &missing {
        for (_, services) in SERVICES_NOT_WANTED.iter().filter(|(p, _)| p == package) {
            for service in *services {
                stop_service(service);
            }
        }
    }
    Ok(())
}

/// Stops and disables the system service a package's install may have started (where a
/// policy-rc.d forbade starting it, there is nothing to stop). Best effort: a machine without
/// the service manager has no service running either.
fn stop_service(name: &str) {
    eprintln!("setup: stopping and disabling the {name} system service (tests run their own)");
    if Path::new("/run/systemd/system").exists() {
        let _ = cmd::output(Command::new("systemctl").args(["disable", "--now", name]));
    } else {
        let _ = cmd::output(Command::new("invoke-rc.d").args([name, "stop"]));
        let _ = cmd::output(Command::new("update-rc.d").args([name, "disable"]));
    }
}

fn bpf_linker_ok() -> bool {
    cmd::output(Command::new("bpf-linker").arg("--version"))
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION))
}

fn install_bpf_linker() -> Result<()> {
    if bpf_linker_ok() {
        return Ok(());
    }
    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about 3 minutes)");
    cmd::run(
        Command::new("cargo")
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22"]),
    )?;
    if !bpf_linker_ok() {
        bail!("bpf-linker {BPF_LINKER_VERSION} was installed but is not on PATH (~/.cargo/bin)");
    }
    Ok(())
}

fn toolchain_known(name: &str) -> bool {
    cmd::output(Command::new("rustup").args(["toolchain", "list"])).is_some_and(|list| {
        list.lines()
            .any(|line| line.split_whitespace().next() == Some(name))
    })
}

fn link_debian_toolchain() -> Result<()> {
    if toolchain_known(DEFAULT_EBPF_TOOLCHAIN) {
        return Ok(());
    }
    eprintln!("setup: linking Debian's Rust 1.96 into rustup as '{DEFAULT_EBPF_TOOLCHAIN}' (the default toolchain is unchanged)");
    cmd::run(Command::new("rustup").args(["toolchain", "link", DEFAULT_EBPF_TOOLCHAIN, "/usr"]))
}

/// `-Z build-std=core` needs the library source in the toolchain's sysroot.
fn check_rust_src(toolchain: &str) -> Result<()> {
    let sysroot =
        cmd::output(Command::new("rustup").args(["run", toolchain, "rustc", "--print", "sysroot"]))
            .with_context(|| {
                format!(
            "the eBPF toolchain '{toolchain}' is not installed in rustup (TRACER_EBPF_TOOLCHAIN)"
        )
            })?;
    let library = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if !library.exists() {
        bail!(
            "the eBPF toolchain '{toolchain}' has no Rust library source ({} is missing); \
             for a rustup nightly run `rustup component add rust-src --toolchain {toolchain}`",
            library.display()
        );
    }
    Ok(())
}
