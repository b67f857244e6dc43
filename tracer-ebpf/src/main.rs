//! Kernel programs of `tracer`. One file per hook family; every program passes the packet on
//! unchanged (XDP_PASS, tc "next", NF_ACCEPT): the tracer never changes a packet's fate.
#![no_std]
#![no_main]
// Atomic adds (`emit::count_followed`): the BPF target has no `fetch_add`.
#![cfg_attr(
    target_arch = "bpf",
    feature(core_intrinsics),
    allow(internal_features)
)]

mod emit;
mod filter;
mod judged;
mod kernel;
mod maps;
mod netfilter;
mod nf_census;
mod ring;
mod tc;
mod tracepoints;
mod xdp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here, so none can exist at load time.
    // SAFETY: BPF can neither unwind nor abort, so a panic has nowhere to go. The programs are
    // written so that none can happen (indices checked against fixed sizes, no overflow
    // checks in release). Were one reachable, LLVM would drop that path: the program could
    // compute wrong results, but the verifier still checks every access of the code it gets.
    unsafe { core::hint::unreachable_unchecked() }
}

/// The tracepoints and `bpf_probe_read_kernel` need a GPL-compatible license.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
