//! Loading the embedded eBPF object and attaching its programs, namespace by namespace.
//!
//! Every attachment is a bpf_link held by a file descriptor (XDP links, tcx links, tracepoint
//! and trampoline links, netfilter links): when the process exits, however it exits, the
//! kernel detaches them. The one exception, tc filters on kernels without tcx, is removed by
//! `interfaces` at exit and by `tracer cleanup` after a SIGKILL.

use anyhow::Context;
use aya::{maps::Array, programs::BtfTracePoint, Btf, Ebpf, EbpfLoader};
use tracer_common::{
    cbpf::{Program, L2_SLOT, L3_SLOT},
    config::{KernelOffsets, TraceConfig},
    hook::{Hook, Position},
    names,
};

mod interfaces;

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

/// A global typed tracepoint and its program variants.
pub struct Tracepoint {
    pub name: &'static str,
    pub hook: Hook,
    /// (arguments the program reads, program name), most arguments first: the first that
    /// this kernel's tracepoint has enough arguments for is loaded.
    pub programs: &'static [(usize, &'static str)],
}

const fn tracepoint(
    name: &'static str,
    hook: Hook,
    programs: &'static [(usize, &'static str)],
) -> Tracepoint {
    Tracepoint {
        name,
        hook,
        programs,
    }
}

pub const TRACEPOINTS: &[Tracepoint] = &[
    tracepoint(
        "netif_receive_skb",
        Hook::NetifReceive,
        &[(1, "tracer_netif_receive")],
    ),
    tracepoint(
        "net_dev_start_xmit",
        Hook::DevXmit,
        &[(1, "tracer_dev_start_xmit")],
    ),
    tracepoint("net_dev_xmit", Hook::DevXmit, &[(4, "tracer_net_dev_xmit")]),
    tracepoint(
        "kfree_skb",
        Hook::KfreeSkb,
        &[(3, "tracer_kfree_skb"), (2, "tracer_kfree_skb_2")],
    ),
    tracepoint(
        "consume_skb",
        Hook::ConsumeSkb,
        &[(2, "tracer_consume_skb"), (1, "tracer_consume_skb_1")],
    ),
    tracepoint(
        "skb_copy_datagram_iovec",
        Hook::Socket,
        &[(2, "tracer_socket_read")],
    ),
    tracepoint(
        "tcp_send_reset",
        Hook::Tcp,
        &[(3, "tracer_tcp_send_reset"), (2, "tracer_tcp_send_reset_2")],
    ),
    tracepoint(
        "tcp_receive_reset",
        Hook::Tcp,
        &[(1, "tracer_tcp_receive_reset")],
    ),
    tracepoint(
        "tcp_retransmit_skb",
        Hook::Tcp,
        &[(1, "tracer_tcp_retransmit")],
    ),
    tracepoint("tcp_bad_csum", Hook::Tcp, &[(1, "tracer_tcp_bad_csum")]),
    tracepoint("icmp_send", Hook::IcmpSend, &[(3, "tracer_icmp_send")]),
    tracepoint(
        "fib_table_lookup",
        Hook::FibLookup,
        &[(4, "tracer_fib_lookup")],
    ),
];

impl Tracepoint {
    /// The program variant for a kernel whose tracepoint passes `args` arguments.
    pub fn program_for(&self, args: usize) -> Option<&'static str> {
        self.programs
            .iter()
            .find(|(needs, _)| *needs <= args)
            .map(|(_, program)| *program)
    }
}

/// Loads and attaches the global tracepoints, each with the variant its arguments on this
/// kernel call for. A tracepoint this kernel lacks, or a program its verifier refuses, is
/// reported, not fatal: the rest still works.
pub fn attach_tracepoints(ebpf: &mut Ebpf, kernel: &KernelBtf) -> Vec<Attachment> {
    let btf = match Btf::from_sys_fs() {
        Ok(btf) => btf,
        Err(e) => {
            let error = format!("no kernel BTF: {e}");
            return TRACEPOINTS
                .iter()
                .map(|tp| global(tp.hook, tp.name, Err(error.clone())))
                .collect();
        }
    };
    TRACEPOINTS
        .iter()
        .map(|tp| {
            let result = attach_tracepoint(ebpf, &btf, kernel, tp);
            global(tp.hook, tp.name, result)
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
