//! Waiting for the kernel to release a process's BPF programs: how the tests check that the
//! tracer leaves nothing behind.

use crate::sh;

/// Waits until none of `ids` is loaded (links die with the last file descriptor, and the
/// kernel releases them asynchronously), or fails naming what is left.
pub fn assert_released(ids: &[u32], after: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = harness::programs::still_loaded(ids).unwrap_or_else(|e| panic!("{e:#}"));
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "programs {left:?} still loaded {after}: {}",
            sh("bpftool prog show")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
