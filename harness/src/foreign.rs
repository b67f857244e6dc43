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
    load_instructions(place, name, &[mov_imm(0, verdict), EXIT])
}

/// `TC_ACT_UNSPEC` (`TCX_NEXT`): the packet goes on to the next program.
const TC_NEXT: i32 = -1;
/// `bpf_skb_store_bytes(skb, offset, from, len, flags)`.
const SKB_STORE_BYTES: i32 = 9;
const EXIT: u64 = 0x95;

/// One eBPF instruction: opcode, registers, offset, immediate.
const fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    op as u64
        | ((dst | (src << 4)) as u64) << 8
        | (off as u16 as u64) << 16
        | (imm as u32 as u64) << 32
}

/// `dst = imm`.
const fn mov_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb7, dst, 0, 0, imm)
}

/// A tc program that writes `mac` over each frame's source MAC and lets it go on: a tool that
/// rewrites packets between the tracer's first and last programs.
fn source_mac_rewriter(mac: [u8; 6]) -> [u64; 10] {
    let head = i32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
    let tail = i32::from(u16::from_le_bytes([mac[4], mac[5]]));
    [
        insn(0x62, 10, 0, -8, head), // *(u32 *)(r10 - 8) = mac[0..4]
        insn(0x6a, 10, 0, -4, tail), // *(u16 *)(r10 - 4) = mac[4..6]
        mov_imm(2, 6),               // r2 = 6, the source MAC's offset in the frame
        insn(0xbf, 3, 10, 0, 0),     // r3 = r10
        insn(0x07, 3, 0, 0, -8),     // r3 += -8
        mov_imm(4, 6),               // r4 = 6 bytes
        mov_imm(5, 0),               // r5 = no flags
        insn(0x85, 0, 0, 0, SKB_STORE_BYTES),
        mov_imm(0, TC_NEXT),
        EXIT,
    ]
}

/// Loads `insns` as a program for `place` named `name` (at most 15 bytes kept).
fn load_instructions(place: Place, name: &str, insns: &[u64]) -> std::io::Result<OwnedFd> {
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
        Self::link_loaded(program, netns, ifname, place, name)
    }

    /// A tc egress program on `ifname` in `netns` that writes `mac` over the source MAC of
    /// each frame it sends (tcx, 6.6+).
    pub fn rewrite_source_mac(netns: &str, ifname: &str, mac: [u8; 6]) -> Result<Foreign> {
        let name = "rewrite_src_mac";
        let program = load_instructions(Place::TcEgress, name, &source_mac_rewriter(mac))
            .context("cannot load the foreign program")?;
        Self::link_loaded(program, netns, ifname, Place::TcEgress, name)
    }

    fn link_loaded(
        program: OwnedFd,
        netns: &str,
        ifname: &str,
        place: Place,
        name: &str,
    ) -> Result<Foreign> {
        let link = link(&program, netns, ifname, place)?
            .with_context(|| format!("cannot link the foreign program to {ifname} in {netns}"))?;
        Ok(Foreign {
            name: name.to_string(),
            _program: program,
            _link: link,
        })
    }
}
