//! The netfilter census of a namespace: which hooks have functions registered (a rule's
//! chain, conntrack, an LSM's, another tool's program), read by the kernel program
//! `tracer_nf_census` run from a thread inside the namespace (see `tracer_common::nf_census`).
//!
//! This kernel may lack every other way to know: `nfnetlink_hook` is a build option, and a
//! registration cannot be watched without kprobes or fentry. A raw tracepoint program run
//! with `BPF_PROG_TEST_RUN` needs neither: the kernel runs it in the calling task, whose
//! namespace it reads.

use std::os::fd::{AsFd, AsRawFd};

use aya::{
    programs::{ProgramFd, RawTracePoint},
    Ebpf,
};

use crate::kernel::{netns::Netns, nf_link, verifier};

const PROGRAM: &str = "tracer_nf_census";
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The loaded census program.
pub struct Census {
    program: ProgramFd,
}

/// Functions registered at each hook of a namespace: a census word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registered(u32);

impl Registered {
    /// Whether anything is registered at `hooknum` of family `pf`; `None` when unknown.
    pub fn any(self, pf: u32, hooknum: u32) -> Option<bool> {
        self.count(pf, hooknum).map(|n| n > 0)
    }

    /// How many functions are registered at `hooknum` of family `pf` (the tracer's own
    /// links included; more than seven read as seven); `None` when unknown.
    pub fn count(self, pf: u32, hooknum: u32) -> Option<u16> {
        tracer_common::nf_census::count(self.0, pf, hooknum)
    }
}

impl Census {
    pub fn load(ebpf: &mut Ebpf) -> Result<Census, String> {
        let program: &mut RawTracePoint = ebpf
            .program_mut(PROGRAM)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| format!("program {PROGRAM} missing from the object"))?;
        program.load().map_err(|e| verifier::describe(&e))?;
        let program = program
            .fd()
            .and_then(|fd| fd.try_clone().map_err(Into::into))
            .map_err(|e| e.to_string())?;
        Ok(Census { program })
    }

    /// What is registered in `netns` now.
    pub fn take(&self, netns: &Netns) -> Result<Registered, String> {
        let word = netns.run(|| self.run_here()).map_err(|e| e.to_string())??;
        match word & tracer_common::nf_census::KNOWN {
            0 => Err("the census program could not read the namespace's hooks".to_string()),
            _ => Ok(Registered(word)),
        }
    }

    /// Runs the program in this thread (so in its namespace); its return value.
    fn run_here(&self) -> Result<u32, String> {
        let mut attr = TestRunAttr {
            prog_fd: self.program.as_fd().as_raw_fd() as u32,
            ..TestRunAttr::default()
        };
        nf_link::bpf_call_mut(BPF_PROG_TEST_RUN, &mut attr)
            .map_err(|e| format!("BPF_PROG_TEST_RUN: {e}"))?;
        Ok(attr.retval)
    }
}

/// The `test` member of `union bpf_attr` (Linux 5.10+ for raw tracepoints), as far as a run
/// without data or context uses it.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

const _: () = assert!(std::mem::size_of::<TestRunAttr>() == 80);
