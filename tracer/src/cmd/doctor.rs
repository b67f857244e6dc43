//! `tracer doctor`: what this kernel and this process allow, per observation point. With the
//! privileges to load programs it loads and attaches the real ones, in a private namespace of
//! its own, and says which mechanism each point uses or why the kernel refused it; without,
//! it says what the kernel's BTF promises.

use anyhow::Result;

mod probe;

use tracer_common::catalogue::{self, HookInfo, Mechanism, CATALOGUE};

use crate::kernel::kernel_btf::KernelBtf;

/// One observation point and whether this kernel has it.
#[derive(Debug, PartialEq)]
pub struct Check {
    pub point: String,
    /// `None`: available; otherwise what is missing.
    pub missing: Option<String>,
    /// The first kernel that has it.
    pub since: &'static str,
}

/// What the kernel's BTF says it has, as the checks need it.
pub trait KernelFacts {
    fn has_type(&self, name: &str) -> bool;
    fn has_enum_member(&self, name: &str, member: &str) -> bool;
}

impl KernelFacts for KernelBtf {
    fn has_type(&self, name: &str) -> bool {
        KernelBtf::has_type(self, name)
    }
    fn has_enum_member(&self, name: &str, member: &str) -> bool {
        KernelBtf::has_enum_member(self, name, member)
    }
}

pub fn checks(kernel: &impl KernelFacts) -> Vec<Check> {
    let check = |point: &str, ok: bool, missing: &str, since| Check {
        point: point.to_string(),
        missing: (!ok).then(|| missing.to_string()),
        since,
    };
    // The catalogue's points of one mechanism, by name, and the kernel that has it.
    let points = |kind: fn(&Mechanism) -> bool| {
        let rows: Vec<&HookInfo> = CATALOGUE.iter().filter(|i| kind(&i.mechanism)).collect();
        let since = rows[0].mechanism.since().unwrap_or("?");
        (rows.iter().map(|i| i.name).collect::<Vec<_>>(), since)
    };
    let (xdp, xdp_since) = points(|m| matches!(m, Mechanism::Xdp { .. }));
    let (tc, tc_since) = points(|m| matches!(m, Mechanism::Tc { .. }));
    let (nf, nf_since) = points(|m| matches!(m, Mechanism::Netfilter { .. }));
    let tcx = kernel.has_enum_member("bpf_attach_type", "BPF_TCX_INGRESS");
    let netfilter = kernel.has_enum_member("bpf_prog_type", "BPF_PROG_TYPE_NETFILTER");
    let mut out = vec![
        check(
            &xdp.join(", "),
            kernel.has_type("xdp_buff"),
            "no XDP in this kernel",
            xdp_since,
        ),
        // Without tcx links, cls_bpf filters on a clsact qdisc (4.5+) take their place.
        check(
            &format!(
                "{} (first, last): {}",
                tc.join(", "),
                if tcx { "tcx links" } else { "cls_bpf filters" }
            ),
            true,
            "",
            tc_since,
        ),
        check(
            &format!(
                "{} .. {}, IPv4 and IPv6 (first, last)",
                nf[0],
                nf[nf.len() - 1]
            ),
            netfilter,
            "no BPF netfilter links; fentry/fexit on nf_hook_slow may stand in \
             (run as root to know)",
            nf_since,
        ),
    ];
    for (hook, tp) in catalogue::tracepoints() {
        out.push(check(
            &format!("{} (tracepoint {})", hook.name(), tp.name),
            kernel.has_type(&format!("btf_trace_{}", tp.name)),
            "the kernel has no such tracepoint",
            tp.since,
        ));
    }
    out.push(check(
        "kfree_skb drop reasons",
        kernel.has_type("skb_drop_reason"),
        "drops are reported without a reason",
        "5.17",
    ));
    out
}

pub fn run() -> Result<()> {
    // SAFETY: `utsname` is arrays of `c_char` only, for which all zeroes is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct we own.
    unsafe { libc::uname(&mut uts) };
    // SAFETY: `release` is NUL-terminated either way: uname writes a C string there, and if it
    // failed the zeroed array starts with NUL. `uts` outlives the borrow.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    println!("kernel:     Linux {}", release.to_string_lossy());
    println!("privileges: {}", crate::kernel::privileges::describe());
    let btf = match KernelBtf::load() {
        Ok(btf) => {
            println!(
                "BTF:        {} (offsets and drop reasons come from it)",
                crate::kernel::kernel_btf::VMLINUX_BTF
            );
            btf
        }
        Err(e) => {
            println!("BTF:        missing: {e}");
            anyhow::bail!("without BTF no observation point can be attached");
        }
    };
    if let Err(e) = btf.offsets() {
        println!("offsets:    {e}");
    }
    println!();
    let privileged =
        crate::kernel::privileges::missing(crate::kernel::privileges::effective()).is_empty();
    let probed = privileged.then(|| print_probe(&btf));
    let missing = if let Some(Ok(missing)) = probed {
        missing
    } else {
        match probed {
            Some(Err(e)) => {
                println!("The programs could not be tried here ({e:#});");
                println!("this is what the kernel's BTF says.");
            }
            _ => {
                println!(
                    "Without the privileges to load programs, this is what the kernel's BTF says;"
                );
                println!(
                    "run `tracer doctor` as root to load the real programs and know for sure."
                );
            }
        }
        println!();
        print_checks(&btf)
    };
    println!();
    if missing == 0 {
        println!("every observation point is available");
    } else {
        println!(
            "{missing} observation point(s) missing: `tracer trace` attaches the rest and says so"
        );
    }
    Ok(())
}

/// Loads and attaches the real programs in a private namespace (the verifier and the attach
/// calls are the only honest answer) and prints, per point, the mechanism or why not, then
/// what the missing or weaker mechanisms cost the explanations. Returns how many are missing.
fn print_probe(btf: &KernelBtf) -> Result<usize> {
    let attachments = probe::attach_everything(btf)?;
    println!("{:<36} how it is observed here", "observation point");
    for a in &attachments {
        let point = match a.point.as_str() {
            "" => a.hook.name().to_string(),
            p if p == a.hook.name() => p.to_string(),
            p => format!("{} ({p})", a.hook.name()),
        };
        match (&a.mechanism, &a.error) {
            (Some(mechanism), _) => println!("{point:<36} {mechanism}"),
            (None, error) => {
                println!("{point:<36} MISSING");
                println!("    {}", error.as_deref().unwrap_or("not attached"));
            }
        }
    }
    let costs = probe::costs(&attachments);
    if !costs.is_empty() {
        println!();
        println!("What this kernel costs the explanations:");
        for cost in costs {
            println!("  - {cost}");
        }
    }
    Ok(attachments.iter().filter(|a| a.error.is_some()).count())
}

/// Without privileges: what the BTF says, point by point.
fn print_checks(btf: &KernelBtf) -> usize {
    println!("{:<62} {:<10} since Linux", "observation point", "status");
    let checks = checks(btf);
    for c in &checks {
        let status = if c.missing.is_none() {
            "available"
        } else {
            "MISSING"
        };
        println!("{:<62} {status:<10} {}", c.point, c.since);
        if let Some(why) = &c.missing {
            println!("    {why}");
        }
    }
    checks.iter().filter(|c| c.missing.is_some()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel that knows only the names listed.
    struct Kernel(Vec<&'static str>);

    impl KernelFacts for Kernel {
        fn has_type(&self, name: &str) -> bool {
            self.0.contains(&name)
        }
        fn has_enum_member(&self, _: &str, member: &str) -> bool {
            self.0.contains(&member)
        }
    }

    #[test]
    fn an_older_kernel_misses_netfilter_tcx_and_new_tracepoints() {
        let kernel = Kernel(vec![
            "xdp_buff",
            "btf_trace_kfree_skb",
            "btf_trace_netif_receive_skb",
        ]);
        let checks = checks(&kernel);
        let missing = |prefix: &str| {
            checks
                .iter()
                .find(|c| c.point.starts_with(prefix))
                .unwrap()
                .missing
                .is_some()
        };
        assert!(!missing("xdp"));
        assert!(!missing("tc_ingress"), "cls_bpf filters stand in for tcx");
        assert!(missing("nf_prerouting"));
        assert!(!missing("kfree_skb"));
        assert!(missing("icmp_send"));
        assert!(missing("kfree_skb drop reasons"));
    }

    #[test]
    fn every_point_is_listed_with_the_kernel_it_needs() {
        let kernel = Kernel(vec!["BPF_TCX_INGRESS"]);
        let listed: Vec<(String, &str)> = checks(&kernel)
            .into_iter()
            .map(|c| (c.point, c.since))
            .collect();
        let expected = [
            ("xdp", "4.8"),
            (
                "tc_ingress, tc_egress (first, last): tcx links",
                "4.5 (clsact), 6.6 (tcx)",
            ),
            (
                "nf_prerouting .. nf_postrouting, IPv4 and IPv6 (first, last)",
                "6.4",
            ),
            (
                "netif_receive (tracepoint netif_receive_skb)",
                "5.5 (tp_btf)",
            ),
            ("dev_xmit (tracepoint net_dev_start_xmit)", "5.5 (tp_btf)"),
            ("dev_xmit (tracepoint net_dev_xmit)", "5.5 (tp_btf)"),
            ("kfree_skb (tracepoint kfree_skb)", "5.5 (tp_btf)"),
            ("consume_skb (tracepoint consume_skb)", "5.5 (tp_btf)"),
            (
                "socket (tracepoint skb_copy_datagram_iovec)",
                "5.5 (tp_btf)",
            ),
            ("tcp (tracepoint tcp_send_reset)", "4.15"),
            ("tcp (tracepoint tcp_receive_reset)", "4.15"),
            ("tcp (tracepoint tcp_retransmit_skb)", "4.15"),
            ("tcp (tracepoint tcp_bad_csum)", "5.16"),
            ("icmp_send (tracepoint icmp_send)", "6.10"),
            ("fib_lookup (tracepoint fib_table_lookup)", "5.5 (tp_btf)"),
            ("kfree_skb drop reasons", "5.17"),
        ]
        .map(|(point, since)| (point.to_string(), since));
        assert_eq!(listed, expected);
    }
}
