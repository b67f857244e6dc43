//! What a trace tells on stderr once attached.

use crate::kernel::loader::Attachment;

/// Says on stderr what is attached and, loudly, what could not be.
pub fn report_attachments(attachments: &[Attachment], xdp: bool) {
    let ok = attachments.iter().filter(|a| a.error.is_none()).count();
    let xdp = if xdp {
        ""
    } else {
        " (driver receive left out: --xdp adds it)"
    };
    eprintln!("tracer: {ok} observation points attached{xdp}");
    // Where a weaker mechanism stands in for the usual one, say which, once per family.
    let mut said = Vec::new();
    for mechanism in attachments.iter().filter_map(|a| a.mechanism.as_deref()) {
        let note = if mechanism.starts_with("cls_bpf") {
            "tc points are cls_bpf filters on a clsact qdisc (no tcx links here)"
        } else if mechanism.contains("nf_hook_slow") {
            "netfilter points are fentry/fexit on nf_hook_slow (no BPF netfilter links here): \
             a hook shows only where rules are registered"
        } else {
            continue;
        };
        if !said.contains(&note) {
            said.push(note);
            eprintln!("tracer: note: {note}; `tracer doctor` says what that costs");
        }
    }
    for a in attachments.iter().filter(|a| a.error.is_some()) {
        let place = match (&a.netns, &a.ifname) {
            (Some(ns), Some(ifname)) => format!(" on {ns}/{ifname}"),
            (Some(ns), None) => format!(" in {ns}"),
            _ => String::new(),
        };
        eprintln!(
            "tracer: warning: {} ({}){place} is not observed: {}",
            a.hook.name(),
            a.point,
            a.error.as_deref().unwrap_or_default()
        );
    }
}
