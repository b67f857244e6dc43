//! The netfilter census: how many functions each hook has in the namespace of the task that
//! runs the program. Never attached: the tracer runs it itself (`BPF_PROG_TEST_RUN`, which
//! runs a raw tracepoint program in the calling task) from a thread inside each traced
//! namespace, and links its netfilter programs only at the hooks where something is
//! registered (`tracer_common::nf_census` says why).

use aya_ebpf::helpers::bpf_get_current_task;
use tracer_common::nf_census::{with_count, FAMILIES, HOOKS, KNOWN};

use crate::{kernel::read, maps::offset};

/// The census word (see `tracer_common::nf_census`); 0 when a count could not be read.
///
/// Written without aya's `raw_tracepoint` macro, whose wrapper returns 0 whatever the program
/// does: the return value is the census.
#[unsafe(no_mangle)]
#[unsafe(link_section = "raw_tp")]
pub fn tracer_nf_census(_ctx: *mut core::ffi::c_void) -> u32 {
    census().unwrap_or(0)
}

#[inline(always)]
fn census() -> Option<u32> {
    // SAFETY: a helper without arguments; the task pointer is only read through
    // `bpf_probe_read_kernel` (`read`), which checks every address.
    let task = unsafe { bpf_get_current_task() };
    let nsproxy = read::<u64>(task, offset!(task_nsproxy))?;
    let net = read::<u64>(nsproxy, offset!(nsproxy_net_ns))?;
    let mut word = KNOWN;
    let families = [offset!(net_nf_hooks_ipv4), offset!(net_nf_hooks_ipv6)];
    for (family_index, hooks) in families.into_iter().enumerate().take(FAMILIES.len()) {
        if hooks == u32::MAX {
            return None;
        }
        for hook in 0..HOOKS as u32 {
            // `struct nf_hook_entries __rcu *hooks_ipv4[NF_INET_NUMHOOKS]`: NULL where
            // nothing was ever registered.
            let entries = read::<u64>(net, hooks + hook * 8)?;
            let count = match entries {
                0 => 0,
                _ => read::<u16>(entries, offset!(nf_entries_num))?,
            };
            word = with_count(word, family_index as u32, hook, count);
        }
    }
    Some(word)
}
