//! The doctor's probe: every program loaded and attached as `tracer trace` would, in a private
//! namespace (its loopback stands in for an interface), then released. What the kernel
//! accepted there is what a trace gets.

use anyhow::Result;
use tracer_common::{catalogue::Mechanism, config::TraceConfig, hook::Hook};

use crate::{
    kernel::kernel_btf::KernelBtf,
    kernel::loader::{self, Attachment, InterfacePrograms, TcMode},
    kernel::netfilter::{Netfilter, NetfilterHooks},
    kernel::netns::Netns,
};

/// The smallest ring that loads: nothing is read from it.
const PROBE_RING_BYTES: u32 = 4096;

pub fn attach_everything(btf: &KernelBtf) -> Result<Vec<Attachment>> {
    let offsets = btf.offsets()?;
    let netns = Netns::private()?;
    let config = TraceConfig {
        netns_filter: 1,
        ..TraceConfig::default()
    };
    let mut ebpf = loader::load(&offsets, &config, PROBE_RING_BYTES)?;
    let mut attachments = Vec::new();
    let mut interfaces = InterfacePrograms::load(&mut ebpf, true, TcMode::Auto);
    attachments.extend(interfaces.attach(&mut ebpf, &netns, "lo"));
    let mut netfilter = Netfilter::load(&mut ebpf, NetfilterHooks::All);
    attachments.extend(netfilter.attach(&netns));
    attachments.extend(loader::attach_tracepoints(&mut ebpf, btf));
    // Released in order: the filters inside the namespace, then the links and programs.
    drop(interfaces);
    drop(netfilter);
    drop(ebpf);
    Ok(attachments)
}

/// What the mechanisms this kernel allows cost the explanations, one sentence each.
pub fn costs(attachments: &[Attachment]) -> Vec<String> {
    // The points of one mechanism of the hook catalogue (tc's, netfilter's).
    let of = |kind: fn(&Mechanism) -> bool| {
        attachments
            .iter()
            .filter(move |a| kind(&a.hook.info().mechanism))
    };
    let tc = |m: &Mechanism| matches!(m, Mechanism::Tc { .. });
    let netfilter = |m: &Mechanism| matches!(m, Mechanism::Netfilter { .. });
    let uses = |kind: fn(&Mechanism) -> bool, needle: &str| {
        of(kind).any(|a| a.mechanism.as_deref().is_some_and(|m| m.contains(needle)))
    };
    let lacks_any = |kind: fn(&Mechanism) -> bool| of(kind).any(|a| a.error.is_some());
    // A tracepoint (by name) whose kernel passes this many arguments.
    let passes = |tracepoint: &str, arguments: &str| {
        attachments.iter().any(|a| {
            a.point == tracepoint
                && a.mechanism
                    .as_deref()
                    .is_some_and(|m| m.contains(arguments))
        })
    };
    let lacks = |hook: Hook| {
        attachments
            .iter()
            .any(|a| a.hook == hook && a.error.is_some())
    };
    let mut out = Vec::new();
    if uses(tc, "cls_bpf") {
        out.push(
            "tc: no tcx links; the tracer's cls_bpf filters at priorities 1 and 65535 bracket \
             other filters as well. Filters outlive a killed process: `tracer cleanup` \
             removes them after a SIGKILL."
                .to_string(),
        );
    }
    if lacks_any(tc) {
        out.push(
            "tc: not observed; a drop by a tc program is placed only between the capture point \
             and netfilter."
                .to_string(),
        );
    }
    if uses(netfilter, "nf_hook_slow") {
        out.push(
            "netfilter: no BPF netfilter links (Linux 6.4); fentry/fexit on nf_hook_slow stand \
             in. A hook is seen only where some rule or conntrack is registered on it, and \
             programs of other tools linked to netfilter are not bracketed."
                .to_string(),
        );
    } else if lacks_any(netfilter) {
        out.push(
            "netfilter: not observed; a rule's drop is still seen (kfree_skb, NETFILTER_DROP) \
             but not at which hook, and the explanations say so."
                .to_string(),
        );
    }
    if passes("kfree_skb", "(2 arguments)") {
        out.push("kfree_skb: this kernel gives no drop reasons (5.17+).".to_string());
    }
    if passes("tcp_send_reset", "(2 arguments)") {
        out.push("tcp_send_reset: this kernel gives no reset reasons (6.10+).".to_string());
    }
    if lacks(Hook::IcmpSend) {
        out.push(
            "icmp_send: ICMP errors the kernel sends are seen only as packets, not tied to \
             the packet that caused them (6.10+)."
                .to_string(),
        );
    }
    out
}
