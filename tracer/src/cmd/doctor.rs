//! `tracer doctor`: what this kernel and this process allow, per observation point, without
//! attaching anything (so it also runs without privileges).

use anyhow::Result;

use crate::{kernel_btf::KernelBtf, loader::TRACEPOINTS};

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
    let tcx = kernel.has_enum_member("bpf_attach_type", "BPF_TCX_INGRESS");
    let netfilter = kernel.has_enum_member("bpf_prog_type", "BPF_PROG_TYPE_NETFILTER");
    let mut out = vec![
        check(
            "xdp",
            kernel.has_type("xdp_buff"),
            "no XDP in this kernel",
            "4.8",
        ),
        check(
            "tc_ingress, tc_egress (first, last)",
            tcx,
            "no tcx links: tc points need them (clsact fallback not built)",
            "6.6",
        ),
        check(
            "nf_prerouting .. nf_postrouting, IPv4 and IPv6 (first, last)",
            netfilter,
            "no BPF_PROG_TYPE_NETFILTER",
            "6.4",
        ),
    ];
    for (_, tracepoint, hook) in TRACEPOINTS {
        let since = match *tracepoint {
            "icmp_send" => "6.10",
            "tcp_bad_csum" => "5.16",
            "tcp_send_reset" | "tcp_receive_reset" | "tcp_retransmit_skb" => "4.15",
            _ => "5.5 (tp_btf)",
        };
        out.push(check(
            &format!("{} (tracepoint {tracepoint})", hook.name()),
            kernel.has_type(&format!("btf_trace_{tracepoint}")),
            "the kernel has no such tracepoint",
            since,
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
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct we own.
    unsafe { libc::uname(&mut uts) };
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    println!("kernel:     Linux {}", release.to_string_lossy());
    println!("privileges: {}", crate::privileges::describe());
    let btf = match KernelBtf::load() {
        Ok(btf) => {
            println!(
                "BTF:        {} (offsets and drop reasons come from it)",
                crate::kernel_btf::VMLINUX_BTF
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
    println!("{:<62} {:<10} since Linux", "observation point", "status");
    let checks = checks(&btf);
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
    let missing = checks.iter().filter(|c| c.missing.is_some()).count();
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
        assert!(missing("tc_ingress"));
        assert!(missing("nf_prerouting"));
        assert!(!missing("kfree_skb"));
        assert!(missing("icmp_send"));
        assert!(missing("kfree_skb drop reasons"));
    }
}
