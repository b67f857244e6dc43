//! The BPF programs a process holds, and waiting for the kernel to release them: how the
//! tests check that the tracer leaves nothing behind.

use crate::sh;

/// Ids of the BPF programs process `pid` holds (programs and links alike), from its fdinfo.
/// Other tracers running at the same time (another test, a soak) do not count.
pub fn program_ids_of(pid: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|line| line.strip_prefix("prog_id:")?.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Which of `ids` are still loaded in the kernel (from `bpftool prog show`).
pub fn still_loaded(ids: &[u32]) -> Vec<u32> {
    let loaded: Vec<u32> = sh("bpftool prog show")
        .lines()
        .filter_map(|line| line.split(':').next()?.trim().parse().ok())
        .collect();
    ids.iter()
        .copied()
        .filter(|id| loaded.contains(id))
        .collect()
}

/// Waits until none of `ids` is loaded (links die with the last file descriptor, and the
/// kernel releases them asynchronously), or fails naming what is left.
pub fn assert_released(ids: &[u32], after: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = still_loaded(ids);
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
