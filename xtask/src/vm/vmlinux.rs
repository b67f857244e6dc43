//! The uncompressed kernel (ELF `vmlinux`) cut out of a bzImage, as
//! linux/scripts/extract-vmlinux does. qemu boots such an ELF through its PVH entry point
//! (both Debian kernels have CONFIG_PVH=y), which skips the kernel's self-decompression:
//! under software emulation that takes about 4 s for 6.1 (xz) and 1 s for 6.12 (zstd),
//! at every boot. The kernel itself is the same.

use std::{
    fs,
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// Each compressed stream's magic bytes and the tool that unpacks it.
const FORMATS: &[(&[u8], &str)] = &[
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x1f\x8b\x08", "gzip"),
];

/// Writes the ELF inside `bzimage` to `out`.
pub fn extract(bzimage: &Path, out: &Path) -> Result<()> {
    let image = fs::read(bzimage).with_context(|| format!("cannot read {}", bzimage.display()))?;
    for (magic, tool) in FORMATS {
        // The magic may also occur by chance before the real stream: try each place.
        let places = image.windows(magic.len()).enumerate();
        for (at, _) in places.filter(|(_, w)| w == magic) {
            if let Some(elf) = unpack(tool, &image[at..]) {
                fs::write(out, elf)?;
                return Ok(());
            }
        }
    }
    bail!("found no compressed ELF kernel in {}", bzimage.display())
}

/// The complete ELF that `tool` makes of `stream`, if it makes one. The tools exit with an
/// error after the stream ("trailing garbage": the bzImage goes on), so judge the output.
fn unpack(tool: &str, stream: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new(tool)
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let stream = stream.to_vec();
    // Feed from a thread: the tool blocks on a full stdout pipe while we would block here.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&stream);
    });
    let out = child.wait_with_output().ok()?;
    let _ = feeder.join();
    complete_elf(&out.stdout).then_some(out.stdout)
}

/// A 64-bit ELF whose every program segment lies within the data (so not cut short).
fn complete_elf(data: &[u8]) -> bool {
    let u16_at = |at: usize| {
        data.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as u64)
    };
    let u64_at = |at: usize| {
        data.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if !data.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).all(|i| {
        let header = (phoff + i * phentsize) as usize;
        match (u64_at(header + 0x08), u64_at(header + 0x20)) {
            (Some(offset), Some(size)) => offset + size <= data.len() as u64,
            _ => false,
        }
    })
}
