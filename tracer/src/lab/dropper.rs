//! The "other tool" of the XDP and tc labs: a program that drops every packet, loaded from
//! two raw instructions (no compiler, no object file) and attached with a link owned by this
//! process, so it goes away with the lab, also when the process is killed.

use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Context, Result};

use crate::{
    netns::Netns,
    nf_link::{bpf, ProgLoadAttr, BPF_LINK_CREATE, BPF_PROG_LOAD},
};

const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
const XDP_DROP: u32 = 1;
const TC_ACT_SHOT: u32 = 2;

#[derive(Clone, Copy)]
pub enum Place {
    Xdp,
    TcIngress,
    TcEgress,
}

/// `union bpf_attr` for `BPF_LINK_CREATE` on an interface.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 2],
}

/// A drop-everything program on an interface; detached when dropped.
pub struct Dropper {
    _program: OwnedFd,
    _link: OwnedFd,
}

impl Dropper {
    /// Attaches `name` to `ifname` in `netns` at `place` (after the tc programs already there).
    pub fn attach(netns: &str, ifname: &str, place: Place, name: &str) -> Result<Dropper> {
        let (prog_type, expected, attach_type, verdict) = match place {
            Place::Xdp => (BPF_PROG_TYPE_XDP, BPF_XDP, BPF_XDP, XDP_DROP),
            Place::TcIngress => (BPF_PROG_TYPE_SCHED_CLS, 0, BPF_TCX_INGRESS, TC_ACT_SHOT),
            Place::TcEgress => (BPF_PROG_TYPE_SCHED_CLS, 0, BPF_TCX_EGRESS, TC_ACT_SHOT),
        };
        // r0 = verdict; exit
        let insns: [u64; 2] = [0xb7 | ((verdict as u64) << 32), 0x95];
        let license = c"GPL";
        let mut attr = ProgLoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            expected_attach_type: expected,
            ..ProgLoadAttr::default()
        };
        let n = name.len().min(15);
        attr.prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
        let program = bpf(BPF_PROG_LOAD, &attr).context("cannot load the lab's drop program")?;
        let prog_fd = program.as_raw_fd() as u32;
        let ifname = std::ffi::CString::new(ifname)?;
        let link = Netns::open(netns)?.run(move || {
            // SAFETY: a valid C string.
            let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
            let attr = LinkCreateAttr {
                prog_fd,
                target_ifindex: ifindex,
                attach_type,
                flags: 0,
                _rest: [0; 2],
            };
            bpf(BPF_LINK_CREATE, &attr)
        })??;
        Ok(Dropper {
            _program: program,
            _link: link,
        })
    }
}
