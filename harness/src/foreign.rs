//! Foreign BPF programs, as another tool would attach them: two-instruction programs that
//! return a fixed verdict ("drop everything"), loaded from raw instructions (no compiler, no
//! object file) and attached with links that this process owns, so that they go with it,
//! also when it is killed. Dropping a [`Foreign`] detaches it.

use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Context, Result};

use crate::{
    bpf::{
        bpf, LinkCreateAttr, ProgLoadAttr, BPF_LINK_CREATE, BPF_PROG_LOAD, BPF_PROG_TYPE_SCHED_CLS,
        BPF_PROG_TYPE_XDP, BPF_TCX_EGRESS, BPF_TCX_INGRESS, BPF_XDP,
    },
    netns::in_netns,
};

/// `XDP_DROP`, the verdict of an XDP program that drops every frame.
pub const XDP_DROP: i32 = 1;
/// `TC_ACT_SHOT`, the verdict of a tc program that drops every packet.
pub const TC_ACT_SHOT: i32 = 2;

/// Where a foreign program goes.
#[derive(Clone, Copy)]
pub enum Place {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Place {
    /// The verdict that drops everything at this place.
    pub fn drop_verdict(self) -> i32 {
        match self {
            Place::Xdp => XDP_DROP,
            Place::TcIngress | Place::TcEgress => TC_ACT_SHOT,
        }
    }
}

/// Loads a program for `place` named `name` (at most 15 bytes kept) that returns `verdict`.
pub fn load(place: Place, name: &str, verdict: i32) -> std::io::Result<OwnedFd> {
    // r0 = verdict; exit
    let insns: [u64; 2] = [0xb7 | ((verdict as u32 as u64) << 32), 0x95];
    let license = c"GPL";
    let (prog_type, expected_attach_type) = match place {
        Place::Xdp => (BPF_PROG_TYPE_XDP, BPF_XDP),
        Place::TcIngress | Place::TcEgress => (BPF_PROG_TYPE_SCHED_CLS, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type,
        ..ProgLoadAttr::default()
    };
    let n = name.len().min(15);
    attr.prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    bpf(BPF_PROG_LOAD, &mut attr)
}

/// Links `program` to `ifname` of namespace `netns` at `place` (a tcx program goes after
/// the ones already there). The outer error is about the namespace or the interface, the
/// inner one is the kernel's answer to the link (a kernel without tcx refuses it).
pub fn link(
    program: &OwnedFd,
    netns: &str,
    ifname: &str,
    place: Place,
) -> Result<std::io::Result<OwnedFd>> {
    let attach_type = match place {
        Place::Xdp => BPF_XDP,
        Place::TcIngress => BPF_TCX_INGRESS,
        Place::TcEgress => BPF_TCX_EGRESS,
    };
    let prog_fd = program.as_raw_fd() as u32;
    let c_ifname = std::ffi::CString::new(ifname)?;
    in_netns(netns, move || {
        // SAFETY: a valid C string; 0 means no such interface, which the kernel refuses.
        let target_ifindex = unsafe { libc::if_nametoindex(c_ifname.as_ptr()) };
        let mut attr = LinkCreateAttr {
            prog_fd,
            target_ifindex,
            attach_type,
            ..LinkCreateAttr::default()
        };
        bpf(BPF_LINK_CREATE, &mut attr)
    })
}

/// A program returning a fixed verdict, linked to an interface; detached when dropped.
pub struct Foreign {
    pub name: String,
    _program: OwnedFd,
    _link: OwnedFd,
}

impl Foreign {
    /// Loads `name` returning `verdict` and links it to `ifname` in `netns` at `place`.
    pub fn attach(
        netns: &str,
        ifname: &str,
        place: Place,
        name: &str,
        verdict: i32,
    ) -> Result<Foreign> {
        let program = load(place, name, verdict).context("cannot load the foreign program")?;
        let link = link(&program, netns, ifname, place)?
            .with_context(|| format!("cannot link the foreign program to {ifname} in {netns}"))?;
        Ok(Foreign {
            name: name.to_string(),
            _program: program,
            _link: link,
        })
    }
}
