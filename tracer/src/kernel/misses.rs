//! Events the kernel skipped without telling the programs: a tracing program (`tp_btf`) does
//! not run while it is already running on the same CPU, as when an interrupt inside it reaches
//! its tracepoint again (a `kfree_skb` in the softirq that interrupted a `kfree_skb`). The
//! kernel counts these per program as "recursion misses", which only `bpf_prog_info` shows;
//! the ring buffer never hears of them, so `LOST` cannot count them.

use std::{
    collections::BTreeMap,
    io,
    os::fd::{AsFd, AsRawFd},
};

use anyhow::{Context, Result};
use aya::{programs::ProgramFd, Ebpf};
use aya_obj::generated::bpf_prog_info;

use tracer_common::catalogue;

/// `BPF_OBJ_GET_INFO_BY_FD`.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Where the trampolines' misses are counted: they stand in for all five netfilter hooks and
/// cannot tell which one a skipped run was at.
pub const NETFILTER: &str = "netfilter";

/// Our tracing programs held open by their own descriptors, so that their counts can be read
/// after they are detached and unloaded: read before, the misses of the last moments would
/// go uncounted.
pub struct MissCounters {
    programs: Vec<(ProgramFd, &'static str)>,
}

impl MissCounters {
    /// Holds each loaded tracepoint program and the netfilter trampolines.
    pub fn hold(ebpf: &Ebpf) -> Result<Self> {
        let tracepoints = catalogue::tracepoints().flat_map(|(hook, tp)| {
            tp.programs
                .iter()
                .map(move |(_, program)| (*program, hook.name()))
        });
        let netfilter = catalogue::netfilter_programs();
        let trampolines = [netfilter.entry, netfilter.exit].map(|program| (program, NETFILTER));
        let mut programs = Vec::new();
        for (program, hook) in tracepoints.chain(trampolines) {
            // A tracepoint this kernel lacks was never loaded: it cannot miss anything.
            let Some(fd) = ebpf.program(program).and_then(|p| p.fd().ok()) else {
                continue;
            };
            let fd = fd
                .try_clone()
                .with_context(|| format!("holding {program} to read its misses"))?;
            programs.push((fd, hook));
        }
        Ok(Self { programs })
    }

    /// Per hook, how many times the kernel skipped one of the held programs.
    pub fn per_hook(&self) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for (fd, hook) in &self.programs {
            let missed = recursion_misses(fd.as_fd().as_raw_fd() as u32)
                .with_context(|| format!("reading how often the kernel skipped {hook}"))?;
            if missed > 0 {
                *out.entry(hook.to_string()).or_default() += missed;
            }
        }
        Ok(out)
    }
}

fn recursion_misses(fd: u32) -> io::Result<u64> {
    // SAFETY: all-zero is a valid `bpf_prog_info` (plain integers).
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let attr = InfoAttr {
        bpf_fd: fd,
        info_len: std::mem::size_of::<bpf_prog_info>() as u32,
        info: &mut info as *mut bpf_prog_info as u64,
    };
    // The kernel writes at most `info_len` bytes into `info`, which outlives the call.
    crate::kernel::nf_link::bpf_call(BPF_OBJ_GET_INFO_BY_FD, &attr)?;
    Ok(info.recursion_misses)
}
