//! The live output read through a pipe (`tracer trace --format json | jq`, a harness): a
//! reader that falls a moment behind fills the pipe, the next write blocks, and while it is
//! blocked the trace reads no event: the kernel's ring fills and events are lost. A pipe holds
//! 64 KiB by default, about twenty JSON packets; made larger, it carries the trace over the
//! reader's pauses (a busy machine does not run the reader at once). The room is the kernel's,
//! taken only as the reader falls behind.

use std::os::fd::AsRawFd;

/// The room asked for, largest first: past `/proc/sys/fs/pipe-max-size` (1 MiB by default)
/// only root may go.
const PIPE_BYTES: [libc::c_int; 2] = [16 << 20, 1 << 20];

/// Makes stdout's pipe hold more, if stdout is a pipe; otherwise, or if the kernel refuses,
/// nothing changes.
pub fn widen_stdout_pipe() {
    let fd = std::io::stdout().as_raw_fd();
    // SAFETY: fstat writes into a zeroed stat of ours.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut stat) } != 0 || stat.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return;
    }
    for bytes in PIPE_BYTES {
        // SAFETY: F_SETPIPE_SZ on our own stdout, a pipe; it fails without side effect.
        if unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, bytes) } >= 0 {
            return;
        }
    }
}
