//! Debian kernels for the VMs: the newest `linux-image-<series>.*-amd64[-unsigned]` that apt
//! offers, downloaded and unpacked once under `target/kernels/<series>/`.
//!
//! The generic `amd64` flavour, not `cloud-amd64`: Debian's cloud kernels are built without
//! 9p (`# CONFIG_NET_9P is not set`), so they cannot mount the host's root, and bookworm has
//! no virtiofsd. Their BPF, netfilter, tc, veth and bridge options are the same as the generic
//! flavour's (compared config by config for 6.1.0-57 and 6.12.117), so the tracer sees the same
//! kernel. `-unsigned` holds the same image as the signed package without the Secure Boot
//! signature, which qemu's direct boot does not need.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::vmlinux;
use crate::{build, cmd};

/// The package flavour (see the module comment for why not `cloud-amd64`).
const FLAVOUR: &str = "amd64";
/// Written last: its presence means the directory is complete; it holds the version string.
const STAMP: &str = "xtask-kernel-version";

/// An unpacked kernel package.
pub struct Kernel {
    /// `uname -r` of the kernel, e.g. `6.12.117+deb12-amd64`.
    pub version: String,
    /// `target/kernels/<series>`: the package's `boot/`, `lib/modules/<version>/`.
    pub dir: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.dir
            .join("boot")
            .join(format!("vmlinuz-{}", self.version))
    }

    /// What qemu boots: the uncompressed ELF if it could be extracted (see vmlinux.rs),
    /// else the package's bzImage.
    pub fn image(&self) -> PathBuf {
        let elf = self.vmlinux();
        if elf.exists() {
            elf
        } else {
            self.vmlinuz()
        }
    }

    fn vmlinux(&self) -> PathBuf {
        self.dir
            .join("boot")
            .join(format!("vmlinux-{}", self.version))
    }

    /// Extracts the ELF kernel once; without it the VM boots too, only slower.
    fn extract_vmlinux(&self) {
        if self.vmlinux().exists() {
            return;
        }
        let partial = self.vmlinux().with_file_name(format!(
            "vmlinux-{}.partial-{}",
            self.version,
            std::process::id()
        ));
        let result = vmlinux::extract(&self.vmlinuz(), &partial)
            .and_then(|()| Ok(fs::rename(&partial, self.vmlinux())?));
        if let Err(err) = result {
            let _ = fs::remove_file(&partial);
            eprintln!("vm: booting the compressed kernel (slower): {err:#}");
        }
    }

    pub fn modules(&self) -> PathBuf {
        self.dir.join("lib/modules").join(&self.version)
    }

    fn config(&self) -> PathBuf {
        self.dir
            .join("boot")
            .join(format!("config-{}", self.version))
    }
}

/// The kernel of `series` ("6.1", "6.12"), fetched on first use; later calls only read the
/// cache. Delete `target/kernels/<series>` to pick up a newer package.
pub fn fetch(series: &str) -> Result<Kernel> {
    if series.is_empty() || !series.chars().all(|c| c.is_ascii_digit() || c == '.') {
        bail!("kernel series must look like 6.1 or 6.12, not {series:?}");
    }
    let dir = build::workspace_root().join("target/kernels").join(series);
    if let Ok(version) = fs::read_to_string(dir.join(STAMP)) {
        let kernel = Kernel {
            version: version.trim().to_string(),
            dir: dir.clone(),
        };
        if kernel.vmlinuz().exists() {
            kernel.extract_vmlinux();
            return Ok(kernel);
        }
    }
    let package = newest_package(series)?;
    eprintln!("vm: fetching {package} into {}", dir.display());
    // Unpack beside the final directory and rename at the end, so that an interrupted or
    // concurrent fetch never leaves a half-made kernel where `fetch` would trust it.
    let staging = dir.with_file_name(format!("{series}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    let result = unpack(&package, &staging);
    if let Err(err) = result {
        let _ = fs::remove_dir_all(&staging);
        return Err(err);
    }
    if dir.join(STAMP).exists() {
        // Another process finished first, and its VMs may be using it: keep that one.
        let _ = fs::remove_dir_all(&staging);
    } else {
        let _ = fs::remove_dir_all(&dir); // an incomplete one
        fs::rename(&staging, &dir)
            .with_context(|| format!("cannot rename to {}", dir.display()))?;
    }
    fetch(series)
}

/// Downloads, unpacks, indexes and checks one package in `dir`, then writes the stamp.
fn unpack(package: &str, dir: &Path) -> Result<()> {
    // apt drops privileges to `_apt` for downloads, which cannot write into target/;
    // downloading as root avoids a warning per file, nothing else.
    cmd::run(Command::new("apt-get").current_dir(dir).args([
        "-q",
        "-o",
        "APT::Sandbox::User=root",
        "download",
        package,
    ]))?;
    let deb = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download produced no .deb")?;
    cmd::run(Command::new("dpkg").arg("-x").arg(&deb).arg(dir))?;
    fs::remove_file(&deb)?; // the unpacked tree is the cache; the .deb is 70-110 MB more
    let version = package
        .strip_prefix("linux-image-")
        .context("unexpected package name")?;
    let version = version
        .strip_suffix("-unsigned")
        .unwrap_or(version)
        .to_string();
    let kernel = Kernel {
        version,
        dir: dir.to_path_buf(),
    };
    if !kernel.vmlinuz().exists() {
        bail!("{package} has no {}", kernel.vmlinuz().display());
    }
    check_config(&kernel)?;
    // modules.dep and friends are made by the package's postinst, which `dpkg -x` skips:
    // without them neither the initramfs's module list nor the guest's modprobe works.
    cmd::run(
        Command::new("depmod")
            .arg("-b")
            .arg(dir)
            .arg(&kernel.version),
    )?;
    fs::write(dir.join(STAMP), &kernel.version)?;
    Ok(())
}

/// The options without which a VM of this kernel is useless to the tracer or cannot boot.
fn check_config(kernel: &Kernel) -> Result<()> {
    let config = fs::read_to_string(kernel.config())
        .with_context(|| format!("cannot read {}", kernel.config().display()))?;
    let set = |name: &str| {
        config
            .lines()
            .any(|l| l == format!("{name}=y") || l == format!("{name}=m"))
    };
    for option in [
        "CONFIG_DEBUG_INFO_BTF",
        "CONFIG_NET_9P_VIRTIO",
        "CONFIG_9P_FS",
    ] {
        if !set(option) {
            bail!("kernel {} lacks {option}", kernel.version);
        }
    }
    Ok(())
}

/// The newest installable `linux-image-<series>.…-amd64[-unsigned]`, refreshing apt's lists
/// once if none is known.
fn newest_package(series: &str) -> Result<String> {
    if let Some(package) = newest_known(series) {
        return Ok(package);
    }
    cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
    newest_known(series).with_context(|| {
        format!("Debian's archive (as configured in /etc/apt) has no linux-image-{series}.*-{FLAVOUR} package")
    })
}

fn newest_known(series: &str) -> Option<String> {
    let pattern = format!("^linux-image-{}\\.", series.replace('.', "\\."));
    let found = cmd::output(Command::new("apt-cache").args(["search", "--names-only", &pattern]))?;
    found
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|name| Some((version_key(series, name)?, name)))
        .max()
        .map(|(_, name)| name.to_string())
}

/// Numeric parts of `linux-image-6.1.0-57-amd64-unsigned` ([6, 1, 0, 57]) or
/// `linux-image-6.12.117+deb12-amd64-unsigned` ([6, 12, 117, 12]), then 1 for `-unsigned`
/// so that it wins over the signed package of the same version (used only if an unsigned one
/// is missing: both hold the same image and modules). `None` for other flavours (cloud, rt),
/// debug symbols, meta-packages and other series.
fn version_key(series: &str, name: &str) -> Option<(Vec<u64>, bool)> {
    let image = name.strip_prefix("linux-image-")?;
    let unsigned = image.ends_with("-unsigned");
    let abi = image
        .strip_suffix("-unsigned")
        .unwrap_or(image)
        .strip_suffix(&format!("-{FLAVOUR}"))?;
    abi.strip_prefix(series)?.strip_prefix('.')?;
    let numbers = abi
        .split(['.', '-', '+'])
        .map(|part| part.strip_prefix("deb").unwrap_or(part).parse().ok())
        .collect::<Option<_>>()?;
    Some((numbers, unsigned))
}

#[cfg(test)]
mod tests {
    use super::version_key;

    #[test]
    fn picks_only_the_generic_flavour_of_the_series() {
        let key = |n| version_key("6.1", n);
        assert_eq!(
            key("linux-image-6.1.0-57-amd64-unsigned"),
            Some((vec![6, 1, 0, 57], true))
        );
        assert_eq!(
            key("linux-image-6.1.0-57-amd64"),
            Some((vec![6, 1, 0, 57], false))
        );
        assert_eq!(key("linux-image-6.1.0-57-cloud-amd64-unsigned"), None);
        assert_eq!(key("linux-image-6.1.0-57-rt-amd64-unsigned"), None);
        assert_eq!(key("linux-image-6.1.0-57-amd64-dbg"), None);
        assert_eq!(key("linux-image-6.12.117+deb12-amd64-unsigned"), None);
        assert_eq!(
            version_key("6.12", "linux-image-6.12.117+deb12-amd64-unsigned"),
            Some((vec![6, 12, 117, 12], true))
        );
    }
}
