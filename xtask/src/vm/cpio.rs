//! A cpio archive in the "newc" format, the one the kernel unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst). Written here rather than
//! with cpio(1) because the archive holds a device node and files that exist only in memory.

/// An archive being written; `finish` adds the trailer and returns the bytes.
#[derive(Default)]
pub struct Cpio {
    data: Vec<u8>,
    next_inode: u32,
}

const DIR: u32 = 0o040_000;
const FILE: u32 = 0o100_000;
const CHAR_DEVICE: u32 = 0o020_000;

impl Cpio {
    pub fn dir(&mut self, path: &str) {
        self.entry(path, DIR | 0o755, (0, 0), &[]);
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, FILE | mode, (0, 0), data);
    }

    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, CHAR_DEVICE | 0o600, (major, minor), &[]);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.data
    }

    /// One header, the name (NUL-terminated) and the data, each padded to 4 bytes.
    fn entry(&mut self, path: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        let nlink = if mode & DIR != 0 { 2 } else { 1 };
        let fields = [
            self.next_inode,
            mode,
            0, // uid: root
            0, // gid: root
            nlink,
            0, // mtime
            data.len() as u32,
            0, // device of the archive's own files: not meaningful here
            0,
            rdev.0,
            rdev.1,
            path.len() as u32 + 1,
            0, // checksum: only for the "070702" format
        ];
        self.data.extend_from_slice(b"070701");
        for field in fields {
            self.data
                .extend_from_slice(format!("{field:08X}").as_bytes());
        }
        self.data.extend_from_slice(path.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }
}
