//! Loading the embedded eBPF object and attaching its programs, namespace by namespace.
//!
//! Every attachment is a bpf_link held by a file descriptor (XDP links, tcx links, tracepoint
//! links): when the process exits, however it exits, the kernel detaches them.

use aya::{
    programs::{BtfTracePoint, SchedClassifier, TcAttachType, Xdp, XdpMode},
    Btf, Ebpf, EbpfLoader,
};
use tracer_common::{
    config::{KernelOffsets, TraceConfig},
    hook::Hook,
    names,
};

use crate::netns::Netns;

static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("this tracer was built without its kernel programs (the eBPF toolchain was missing); build it with `cargo xtask build`")]
    NoObject,
    #[error("loading the kernel programs needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)")]
    NotPermitted,
    #[error("cannot load the kernel programs: {0}")]
    Load(String),
}

/// An observation point that is live, or one that could not be set up and why.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub hook: Hook,
    /// Namespace and interface for per-interface hooks; `None` for global tracepoints.
    pub netns: Option<String>,
    pub ifname: Option<String>,
    /// `None` when attached; the reason otherwise.
    pub error: Option<String>,
}

pub fn load(
    offsets: &KernelOffsets,
    config: &TraceConfig,
    ring_bytes: u32,
) -> Result<Ebpf, LoadError> {
    if EBPF_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    if unsafe { libc::geteuid() } != 0 {
        return Err(LoadError::NotPermitted);
    }
    let ebpf = EbpfLoader::new()
        .override_global(names::OFFSETS, offsets, true)
        .override_global(names::CONFIG, config, true)
        .map_max_entries(names::EVENTS, ring_bytes)
        .load(EBPF_OBJECT)
        .map_err(|e| LoadError::Load(format!("{e:#}")))?;
    Ok(ebpf)
}

/// (program name, tracepoint, hook) of the global typed tracepoints.
const TRACEPOINTS: &[(&str, &str, Hook)] = &[
    (
        "tracer_netif_receive",
        "netif_receive_skb",
        Hook::NetifReceive,
    ),
    ("tracer_dev_start_xmit", "net_dev_start_xmit", Hook::DevXmit),
    ("tracer_kfree_skb", "kfree_skb", Hook::KfreeSkb),
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
                .map(|(_, _, hook)| global(*hook, Some(error.clone())))
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
                result
                    .err()
                    .map(|e| format!("tracepoint {tracepoint}: {e:#}")),
            )
        })
        .collect()
}

fn global(hook: Hook, error: Option<String>) -> Attachment {
    Attachment {
        hook,
        netns: None,
        ifname: None,
        error,
    }
}

/// Loads the per-interface programs once; they are then attached per interface.
pub fn load_interface_programs(ebpf: &mut Ebpf) -> Result<(), LoadError> {
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
    for name in ["tracer_xdp", "tracer_tc_ingress", "tracer_tc_egress"] {
        load(ebpf, name).map_err(|e| LoadError::Load(format!("{name}: {e:#}")))?;
    }
    Ok(())
}

/// Attaches XDP and tc ingress/egress to `ifname` inside `netns`. Runs on a thread that entered
/// the namespace, because interface names and the netlink/tcx calls are per namespace.
pub fn attach_interface(ebpf: &mut Ebpf, netns: &Netns, ifname: &str) -> Vec<Attachment> {
    let ns_name = netns.display_name();
    let outcome = netns.run(|| {
        let mut results = Vec::new();
        // XDP: aya creates a bpf_link; an interface that already has an XDP program answers
        // EBUSY and is left alone (only one fits, and replacing it would change fates).
        let xdp = (|| -> anyhow::Result<()> {
            let prog: &mut Xdp = ebpf.program_mut("tracer_xdp").expect("loaded").try_into()?;
            prog.attach(ifname, XdpMode::Default)?;
            Ok(())
        })();
        results.push((Hook::Xdp, xdp.err().map(|e| format!("{e:#}"))));
        for (name, hook, direction) in [
            ("tracer_tc_ingress", Hook::TcIngress, TcAttachType::Ingress),
            ("tracer_tc_egress", Hook::TcEgress, TcAttachType::Egress),
        ] {
            // On 6.6+ aya attaches with a tcx link (nothing to clean up on exit); older kernels
            // would need a clsact qdisc, which is not supported yet.
            let tc = (|| -> anyhow::Result<()> {
                let prog: &mut SchedClassifier =
                    ebpf.program_mut(name).expect("loaded").try_into()?;
                prog.attach(ifname, direction)?;
                Ok(())
            })();
            results.push((hook, tc.err().map(|e| format!("{e:#}"))));
        }
        results
    });
    let results = outcome.unwrap_or_else(|e| {
        let error = e.to_string();
        [Hook::Xdp, Hook::TcIngress, Hook::TcEgress]
            .map(|h| (h, Some(error.clone())))
            .to_vec()
    });
    results
        .into_iter()
        .map(|(hook, error)| Attachment {
            hook,
            netns: Some(ns_name.clone()),
            ifname: Some(ifname.to_string()),
            error,
        })
        .collect()
}
