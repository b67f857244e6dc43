//! BPF programs in the kernel: which a process holds, which are still loaded. How tests and
//! the soak check that the tracer leaves nothing behind.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::Value;

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

/// A loaded program as `bpftool` shows it; the counts need [`StatsOn`].
#[derive(Debug, Clone)]
pub struct Loaded {
    pub name: String,
    pub runs: u64,
    pub run_ns: u64,
}

/// Program id -> what it is and how often it ran, of the loaded programs named `tracer_*`.
pub fn tracer_programs() -> Result<BTreeMap<u64, Loaded>> {
    let listing: Value =
        serde_json::from_str(&sh("bpftool prog show --json")?).context("bpftool wrote no JSON")?;
    Ok(listing
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let name = p["name"].as_str()?;
            name.starts_with("tracer_").then(|| {
                let loaded = Loaded {
                    name: name.to_string(),
                    runs: p["run_cnt"].as_u64().unwrap_or(0),
                    run_ns: p["run_time_ns"].as_u64().unwrap_or(0),
                };
                (p["id"].as_u64().unwrap_or(0), loaded)
            })
        })
        .collect())
}

/// The kernel's program statistics (`kernel.bpf_stats_enabled`) switched on until dropped.
pub struct StatsOn;

impl StatsOn {
    pub fn enable() -> Result<StatsOn> {
        sh("sysctl -qw kernel.bpf_stats_enabled=1")?;
        Ok(StatsOn)
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        let _ = sh("sysctl -qw kernel.bpf_stats_enabled=0");
    }
}
