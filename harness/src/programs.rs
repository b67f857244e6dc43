//! BPF programs in the kernel: which a process holds, which are still loaded. How tests and
//! the soak check that the tracer leaves nothing behind.

use anyhow::Result;

use crate::command::sh;

/// Ids of the BPF programs process `pid` holds (programs and links alike), from its fdinfo.
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

/// Which of `ids` the kernel still has loaded (`bpftool prog show`).
pub fn still_loaded(ids: &[u32]) -> Result<Vec<u32>> {
    let loaded: Vec<u32> = sh("bpftool prog show")?
        .lines()
        .filter_map(|line| line.split(':').next()?.trim().parse().ok())
        .collect();
    Ok(ids
        .iter()
        .copied()
        .filter(|id| loaded.contains(id))
        .collect())
}
