//! Loading the embedded eBPF object and attaching its programs, namespace by namespace.
//!
//! Every attachment is a bpf_link held by a file descriptor (XDP links, tcx links, tracepoint
//! and trampoline links, netfilter links): when the process exits, however it exits, the
//! kernel detaches them. The one exception, tc filters on kernels without tcx, is removed by
//! `interfaces` at exit and by `tracer cleanup` after a SIGKILL.

use anyhow::Context;
use aya::{maps::Array, programs::BtfTracePoint, Btf, Ebpf, EbpfLoader};
use tracer_common::{
    catalogue::{self, Tracepoint},
    cbpf::{Program, L2_SLOT, L3_SLOT},
    config::{KernelOffsets, TraceConfig},
    hook::{Hook, Position},
    names,
};

mod interfaces;
mod tc_alone;

pub use interfaces::{InterfacePrograms, TcMode};

use crate::{
    kernel::filter::Filter, kernel::kernel_btf::KernelBtf, kernel::privileges, kernel::verifier,
};

pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("this tracer was built without its kernel programs (the eBPF toolchain was missing); build it with `cargo xtask build`")]
    NoObject,
    #[error("loading the kernel programs needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN); this process lacks {}", .0.join(", "))]
    NotPermitted(Vec<&'static str>),
    #[error("cannot load the kernel programs: {0}")]
    Load(String),
}

/// An observation point that is live, or one that could not be set up and why.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub hook: Hook,
    /// Which program of the hook: the tracepoint, "first"/"last", the netfilter family.
    pub point: String,
    /// Namespace and interface for per-interface hooks; `None` for global tracepoints.
    pub netns: Option<String>,
    pub ifname: Option<String>,
    /// How it is observed, when it is ("tcx link", "tp_btf (3 arguments)", ...).
    pub mechanism: Option<String>,
    /// `None` when attached; the reason otherwise.
    pub error: Option<String>,
    /// At XDP: the other program that holds the interface, "NAME (id N)".
    pub foreign_program: Option<String>,
}

pub fn load(
    offsets: &KernelOffsets,
    config: &TraceConfig,
    ring_bytes: u32,
) -> Result<Ebpf, LoadError> {
    if EBPF_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let lacking = privileges::missing(privileges::effective());
    if !lacking.is_empty() {
        return Err(LoadError::NotPermitted(lacking));
    }
    let ebpf = EbpfLoader::new()
        .override_global(names::OFFSETS, offsets, true)
        .override_global(names::CONFIG, config, true)
        .map_max_entries(names::EVENTS, ring_bytes)
        .load(EBPF_OBJECT)
        .map_err(|e| LoadError::Load(format!("{e:#}")))?;
    Ok(ebpf)
}

/// Hands the compiled filter programs to the kernel programs (before anything is attached).
pub fn load_filter(ebpf: &mut Ebpf, filter: &Filter) -> anyhow::Result<()> {
    let mut programs: Array<_, Program> = Array::try_from(
        ebpf.map_mut(names::FILTERS)
            .context("map FILTERS missing")?,
    )?;
    for (slot, program) in [(L2_SLOT, &filter.l2), (L3_SLOT, &filter.l3)] {
        if let Some(program) = program {
            programs.set(slot, program, 0)?;
        }
    }
    Ok(())
}

/// Loads and attaches the global tracepoints of the hook catalogue, each with the variant its
/// arguments on this kernel call for. A tracepoint this kernel lacks, or a program its verifier refuses, is
/// reported, not fatal: the rest still works.
pub fn attach_tracepoints(ebpf: &mut Ebpf, kernel: &KernelBtf) -> Vec<Attachment> {
    let btf = match Btf::from_sys_fs() {
        Ok(btf) => btf,
        Err(e) => {
            let error = format!("no kernel BTF: {e}");
            return catalogue::tracepoints()
                .map(|(hook, tp)| global(hook, tp.name, Err(error.clone())))
                .collect();
        }
    };
    catalogue::tracepoints()
        .map(|(hook, tp)| {
            let result = attach_tracepoint(ebpf, &btf, kernel, tp);
            global(hook, tp.name, result)
        })
        .collect()
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    btf: &Btf,
    kernel: &KernelBtf,
    tp: &Tracepoint,
) -> Result<String, String> {
    let args = kernel
        .tracepoint_args(tp.name)
        .ok_or("this kernel has no such tracepoint")?;
    let program = tp.program_for(args).ok_or_else(|| {
        format!("this kernel's tracepoint passes {args} arguments, fewer than any program reads")
    })?;
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?
        .try_into()
        .map_err(|e| format!("{e:#}"))?;
    prog.load(tp.name, btf)
        .map_err(|e| verifier::describe(&e))?;
    prog.attach().map_err(|e| format!("{e:#}"))?;
    let plural = if args == 1 { "" } else { "s" };
    Ok(format!("tp_btf ({args} argument{plural})"))
}

/// Detaches and unloads every program aya holds (tracepoints, trampolines, tc and XDP with
/// their links). Each detach waits until the runs in flight on other CPUs are over, so once
/// this returns nothing more is written to the ring. Its maps stay.
pub fn detach_programs(ebpf: &mut Ebpf) {
    use aya::programs::Program;
    for (_, program) in ebpf.programs_mut() {
        // A program never loaded (a point this kernel lacks) has nothing to undo.
        let _ = match program {
            Program::BtfTracePoint(p) => p.unload(),
            Program::FEntry(p) => p.unload(),
            Program::FExit(p) => p.unload(),
            Program::SchedClassifier(p) => p.unload(),
            Program::Xdp(p) => p.unload(),
            _ => Ok(()),
        };
    }
}

fn global(hook: Hook, point: &str, result: Result<String, String>) -> Attachment {
    let (mechanism, error) = match result {
        Ok(mechanism) => (Some(mechanism), None),
        Err(e) => (None, Some(e)),
    };
    Attachment {
        hook,
        point: point.to_string(),
        netns: None,
        ifname: None,
        mechanism,
        error,
        foreign_program: None,
    }
}

pub fn position_name(position: Position) -> &'static str {
    match position {
        Position::First => "first",
        Position::Last => "last",
        Position::Only => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel programs are named in two places, their functions in tracer-ebpf and the hook
    /// catalogue: every name the catalogue gives is one the object has.
    #[test]
    fn the_object_has_every_program_the_catalogue_names() {
        if EBPF_OBJECT.is_empty() {
            return; // Built without the eBPF toolchain: nothing to compare.
        }
        let object = aya_obj::Object::parse(EBPF_OBJECT).expect("the embedded object parses");
        for info in &catalogue::CATALOGUE {
            info.mechanism.programs(|program| {
                assert!(
                    object.programs.contains_key(program),
                    "{program} ({}) is not in the object",
                    info.name
                );
            });
        }
    }
}
