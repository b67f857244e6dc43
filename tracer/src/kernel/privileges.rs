//! What this process may do: root, or the capabilities that loading and attaching need.

/// Capabilities the tracer needs, with their bit numbers in `CapEff`:
/// - CAP_BPF loads programs and creates maps;
/// - CAP_PERFMON lets tracing programs read kernel memory (`bpf_probe_read_kernel`);
/// - CAP_NET_ADMIN attaches to interfaces (XDP, tcx) and to netfilter.
pub const NEEDED: [(u32, &str); 3] = [(39, "CAP_BPF"), (38, "CAP_PERFMON"), (12, "CAP_NET_ADMIN")];

/// The effective capability set, from `/proc/self/status` (0 when unreadable).
pub fn effective() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    effective_from_status(&status)
}

fn effective_from_status(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

/// The needed capabilities missing from `effective`. Root counts only through its
/// capabilities: root with CAP_BPF dropped (a container, `capsh --drop`) cannot load either.
pub fn missing(effective: u64) -> Vec<&'static str> {
    NEEDED
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect()
}

/// "root", "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (not root)", or what is missing.
pub fn describe() -> String {
    let lacking = missing(effective());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    match (root, lacking.is_empty()) {
        (true, true) => "root".to_string(),
        (false, true) => "not root, but CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN".to_string(),
        (_, false) => format!("insufficient: missing {}", lacking.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_with_every_capability_misses_nothing() {
        let status = "Name:\ttracer\nCapEff:\t000001ffffffffff\n";
        assert!(missing(effective_from_status(status)).is_empty());
    }

    #[test]
    fn a_dropped_capability_is_named() {
        let all = 0x1ff_ffff_ffffu64;
        assert_eq!(missing(all & !(1 << 39)), ["CAP_BPF"]);
        assert_eq!(
            missing(all & !(1 << 12) & !(1 << 38)),
            ["CAP_PERFMON", "CAP_NET_ADMIN"]
        );
        assert_eq!(missing(effective_from_status("no such line")).len(), 3);
    }
}
