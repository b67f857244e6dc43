//! The VM's initramfs: busybox-static, the modules that mount the host's root (9p over
//! virtio, overlay), /init (init.sh) and the command to run (/cmd.sh), as a gzipped cpio.
//! Made afresh for each run (about 0.3 s): only /cmd.sh differs between runs.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use super::{cpio::Cpio, kernel::Kernel};

/// Modules /init loads before mounting, in this order with their dependencies first;
/// skipped where the kernel has them built in (6.12 builds virtio_pci in, 6.1 does not).
const WANTED: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];
const BUSYBOX: &str = "/bin/busybox";

/// The kernel calls /sbin/modprobe of the initramfs (see init.sh): hand the request to
/// kmod's modprobe in the guest's real root, where the booted kernel's modules are.
const MODPROBE: &str =
    "#!/bin/busybox sh\nexec /bin/busybox chroot /newroot /sbin/modprobe \"$@\"\n";

/// Paths the guest needs to know, all as seen on the host (the guest sees the same paths).
pub struct Layout<'a> {
    pub kernel: &'a Kernel,
    /// The writable share's host directory.
    pub out: &'a Path,
    /// The shell script the guest runs, environment included.
    pub script: &'a str,
}

/// Writes the initramfs for `layout` to `path`.
pub fn build(layout: &Layout, path: &Path) -> Result<()> {
    let kernel = layout.kernel;
    let mut cpio = Cpio::default();
    for dir in ["bin", "sbin", "dev", "modules"] {
        cpio.dir(dir);
    }
    // The kernel opens /dev/console for /init's stdio before devtmpfs is mounted.
    cpio.char_device("dev/console", 5, 1);
    let busybox = fs::read(BUSYBOX).with_context(|| format!("cannot read {BUSYBOX}"))?;
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.file("sbin/modprobe", 0o755, MODPROBE.as_bytes());
    for (index, module) in load_order(&kernel.modules())?.iter().enumerate() {
        let data = read_module(&kernel.modules().join(module))?;
        let name = module_name(module);
        cpio.file(&format!("modules/{index:02}-{name}.ko"), 0o644, &data);
    }
    let init = include_str!("init.sh")
        .replace("@KVER@", &kernel.version)
        .replace("@MODULES@", &kernel.modules().to_string_lossy())
        .replace("@OUT@", &layout.out.to_string_lossy())
        .replace(
            "@WORKSPACE@",
            &crate::build::workspace_root().to_string_lossy(),
        );
    cpio.file("init", 0o755, init.as_bytes());
    cpio.file("cmd.sh", 0o755, layout.script.as_bytes());
    gzip(&cpio.finish(), path)
}

/// The paths (relative to the modules directory) of `WANTED` and their dependencies, each
/// after everything it needs, from the package's modules.dep (made by depmod).
fn load_order(modules: &Path) -> Result<Vec<String>> {
    let dep = fs::read_to_string(modules.join("modules.dep"))
        .with_context(|| format!("no modules.dep in {} (depmod)", modules.display()))?;
    let builtin = fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    let mut deps: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut by_name: HashMap<String, &str> = HashMap::new();
    for line in dep.lines() {
        let Some((module, needs)) = line.split_once(':') else {
            continue;
        };
        deps.insert(module, needs.split_whitespace().collect());
        by_name.insert(module_name(module), module);
    }
    let builtin: HashSet<String> = builtin.lines().map(module_name).collect();
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for wanted in WANTED {
        match by_name.get(*wanted) {
            Some(module) => visit(module, &deps, &mut seen, &mut order),
            None if builtin.contains(*wanted) => {}
            None => bail!("module {wanted} is neither in modules.dep nor built in"),
        }
    }
    Ok(order)
}

/// Depth first: a module's dependencies (modules.dep lists the last-needed first, so walk
/// them in reverse), then the module.
fn visit<'a>(
    module: &'a str,
    deps: &HashMap<&'a str, Vec<&'a str>>,
    seen: &mut HashSet<&'a str>,
    order: &mut Vec<String>,
) {
    if !seen.insert(module) {
        return;
    }
    for dep in deps.get(module).into_iter().flatten().rev() {
        visit(dep, deps, seen, order);
    }
    order.push(module.to_string());
}

/// `kernel/net/9p/9pnet_virtio.ko.xz` -> `9pnet_virtio` (modprobe treats - and _ alike).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// A module's ELF bytes: busybox insmod passes the file to init_module(2), which takes no
/// compressed modules, and 6.12's are xz-compressed.
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = ["xz", "zstd", "gzip"]
        .into_iter()
        .zip([".xz", ".zst", ".gz"])
        .find(|(_, ext)| name.ends_with(ext));
    let Some((tool, _)) = tool else {
        return fs::read(path).with_context(|| format!("cannot read {name}"));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {tool} (Debian package xz-utils/zstd/gzip)"))?;
    if !out.status.success() {
        bail!("{tool} -dc {name} failed");
    }
    Ok(out.stdout)
}

fn gzip(data: &[u8], path: &Path) -> Result<()> {
    let file =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    // -1: the archive is read once; speed matters more than a few hundred kilobytes.
    let mut child = Command::new("gzip")
        .args(["-1", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .context("cannot run gzip")?;
    child.stdin.take().expect("piped").write_all(data)?;
    if !child.wait()?.success() {
        bail!("gzip failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::module_name;

    #[test]
    fn module_names_from_paths() {
        assert_eq!(
            module_name("kernel/net/9p/9pnet_virtio.ko.xz"),
            "9pnet_virtio"
        );
        assert_eq!(module_name("kernel/fs/9p/9p.ko"), "9p");
        assert_eq!(
            module_name("kernel/drivers/virtio/virtio-pci.ko"),
            "virtio_pci"
        );
    }
}
