//! Loading the embedded eBPF object and attaching its programs, namespace by namespace.
//!
//! Every attachment is a bpf_link held by a file descriptor (XDP links, tcx links, tracepoint
//! links): when the process exits, however it exits, the kernel detaches them.

use anyhow::Context;
use aya::{
    maps::Array,
    programs::{
        tc::TcAttachOptions, BtfTracePoint, LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Btf, Ebpf, EbpfLoader,
};
use tracer_common::{
    cbpf::{Program, L2_SLOT, L3_SLOT},
    config::{KernelOffsets, TraceConfig},
    hook::{Hook, Position},
    names,
};

use crate::{filter::Filter, netns::Netns, privileges};

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

/// (program name, tracepoint, hook) of the global typed tracepoints.
pub const TRACEPOINTS: &[(&str, &str, Hook)] = &[
    (
        "tracer_netif_receive",
        "netif_receive_skb",
        Hook::NetifReceive,
    ),
    ("tracer_dev_start_xmit", "net_dev_start_xmit", Hook::DevXmit),
    ("tracer_net_dev_xmit", "net_dev_xmit", Hook::DevXmit),
    ("tracer_kfree_skb", "kfree_skb", Hook::KfreeSkb),
    ("tracer_consume_skb", "consume_skb", Hook::ConsumeSkb),
    (
        "tracer_socket_read",
        "skb_copy_datagram_iovec",
        Hook::Socket,
    ),
    ("tracer_tcp_send_reset", "tcp_send_reset", Hook::Tcp),
    ("tracer_tcp_receive_reset", "tcp_receive_reset", Hook::Tcp),
    ("tracer_tcp_retransmit", "tcp_retransmit_skb", Hook::Tcp),
    ("tracer_tcp_bad_csum", "tcp_bad_csum", Hook::Tcp),
    ("tracer_icmp_send", "icmp_send", Hook::IcmpSend),
    ("tracer_fib_lookup", "fib_table_lookup", Hook::FibLookup),
];

/// (program name, hook, direction, order) of the tc programs: a first and a last per
/// direction, so that another tc program's drop falls between two sightings.
const TC_PROGRAMS: [(&str, Hook, TcAttachType, Position); 4] = [
    (
        "tracer_tc_ingress_first",
        Hook::TcIngress,
        TcAttachType::Ingress,
        Position::First,
    ),
    (
        "tracer_tc_ingress_last",
        Hook::TcIngress,
        TcAttachType::Ingress,
        Position::Last,
    ),
    (
        "tracer_tc_egress_first",
        Hook::TcEgress,
        TcAttachType::Egress,
        Position::First,
    ),
    (
        "tracer_tc_egress_last",
        Hook::TcEgress,
        TcAttachType::Egress,
        Position::Last,
    ),
];

/// Loads and attaches the global tracepoints. A tracepoint this kernel lacks is reported, not
/// fatal: the rest still works.
pub fn attach_tracepoints(ebpf: &mut Ebpf) -> Vec<Attachment> {
    let btf = match Btf::from_sys_fs() {
        Ok(btf) => btf,
        Err(e) => {
            let error = format!("no kernel BTF: {e}");
            return TRACEPOINTS
                .iter()
                .map(|(_, tracepoint, hook)| global(*hook, tracepoint, Some(error.clone())))
                .collect();
        }
    };
    TRACEPOINTS
        .iter()
        .map(|(program, tracepoint, hook)| {
            let result = (|| -> anyhow::Result<()> {
                let prog: &mut BtfTracePoint = ebpf
                    .program_mut(program)
                    .ok_or_else(|| anyhow::anyhow!("program {program} missing from the object"))?
                    .try_into()?;
                prog.load(tracepoint, &btf)?;
                prog.attach()?;
                Ok(())
            })();
            global(
                *hook,
                tracepoint,
                result
                    .err()
                    .map(|e| format!("tracepoint {tracepoint}: {e:#}")),
            )
        })
        .collect()
}

fn global(hook: Hook, point: &str, error: Option<String>) -> Attachment {
    Attachment {
        hook,
        point: point.to_string(),
        netns: None,
        ifname: None,
        error,
        foreign_program: None,
    }
}

/// Loads the per-interface programs once (XDP only when asked); they are then attached per
/// interface.
pub fn load_interface_programs(ebpf: &mut Ebpf, xdp: bool) -> Result<(), LoadError> {
    let load = |ebpf: &mut Ebpf, name: &str| -> anyhow::Result<()> {
        let prog = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow::anyhow!("{name} missing"))?;
        match prog {
            aya::programs::Program::Xdp(p) => p.load()?,
            aya::programs::Program::SchedClassifier(p) => p.load()?,
            _ => anyhow::bail!("{name} has an unexpected program type"),
        }
        Ok(())
    };
    let tc = TC_PROGRAMS.iter().map(|(name, ..)| *name);
    let xdp = xdp.then_some("tracer_xdp");
    for name in xdp.into_iter().chain(tc) {
        load(ebpf, name).map_err(|e| LoadError::Load(format!("{name}: {e:#}")))?;
    }
    Ok(())
}

/// Attaches the tc programs, and XDP with `xdp`, to `ifname` inside `netns`. Runs on a thread
/// that entered the namespace, because interface names and the netlink/tcx calls are per
/// namespace. Another tool's XDP program is reported either way: its drops need its name.
pub fn attach_interface(
    ebpf: &mut Ebpf,
    netns: &Netns,
    ifname: &str,
    xdp: bool,
) -> Vec<Attachment> {
    let outcome = netns.run(|| {
        let mut results = Vec::new();
        // XDP: aya creates a bpf_link; an interface that already has an XDP program answers
        // EBUSY and is left alone (only one fits, and replacing it would change fates).
        let ours = xdp.then(|| -> anyhow::Result<()> {
            let prog: &mut Xdp = ebpf.program_mut("tracer_xdp").expect("loaded").try_into()?;
            prog.attach(ifname, XdpMode::Default)?;
            Ok(())
        });
        let foreign = match &ours {
            Some(Ok(())) => None,
            _ => foreign_xdp(ifname),
        };
        let error = match (ours, &foreign) {
            (Some(Ok(())), _) => None,
            (_, Some(program)) => Some(format!(
                "another XDP program, {program}, holds the interface (only one fits); \
                 packets it drops never reach the stack, and drops there are attributed to it"
            )),
            (Some(Err(e)), None) => Some(format!("{e:#}")),
            (None, None) => None,
        };
        if xdp || foreign.is_some() {
            results.push((Hook::Xdp, "driver".to_string(), error, foreign));
        }
        for (name, hook, direction, position) in TC_PROGRAMS {
            // tcx links (6.6+): nothing to clean up on exit, and an order among programs.
            let order = match position {
                Position::First => LinkOrder::first(),
                _ => LinkOrder::last(),
            };
            let tc = (|| -> anyhow::Result<()> {
                let prog: &mut SchedClassifier =
                    ebpf.program_mut(name).expect("loaded").try_into()?;
                prog.attach_with_options(ifname, direction, TcAttachOptions::TcxOrder(order))?;
                Ok(())
            })();
            let error = tc
                .err()
                .map(|e| format!("{e:#} (tc observation needs tcx links, Linux 6.6)"));
            results.push((hook, position_name(position).to_string(), error, None));
        }
        results
    });
    let results = outcome
        .unwrap_or_else(|e| vec![(Hook::Xdp, "driver".to_string(), Some(e.to_string()), None)]);
    results
        .into_iter()
        .map(|(hook, point, error, foreign_program)| Attachment {
            hook,
            point,
            netns: Some(netns.display_name()),
            ifname: Some(ifname.to_string()),
            error,
            foreign_program,
        })
        .collect()
}

/// The XDP program another tool attached to `ifname` (of the current thread's namespace):
/// only one fits on an interface, so the packets it drops never reach the stack, and the user
/// must know its name.
fn foreign_xdp(ifname: &str) -> Option<String> {
    let name = std::ffi::CString::new(ifname).ok()?;
    // SAFETY: a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    crate::xdp_owner::xdp_program(ifindex).ok().flatten()
}

pub fn position_name(position: Position) -> &'static str {
    match position {
        Position::First => "first",
        Position::Last => "last",
        Position::Only => "",
    }
}
