//! bpf(2), the few commands the harness needs, with their `union bpf_attr` members as
//! `repr(C)` prefixes (the kernel zero-fills the rest).

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
};

pub const BPF_PROG_LOAD: libc::c_long = 5;
pub const BPF_OBJ_PIN: libc::c_long = 6;
pub const BPF_PROG_QUERY: libc::c_long = 16;
pub const BPF_LINK_CREATE: libc::c_long = 28;

/// `enum bpf_prog_type` values.
pub const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
pub const BPF_PROG_TYPE_XDP: u32 = 6;

/// `enum bpf_attach_type` values (Linux 6.6).
pub const BPF_XDP: u32 = 37;
pub const BPF_TCX_INGRESS: u32 = 46;
pub const BPF_TCX_EGRESS: u32 = 47;

/// bpf(2) for a command that returns a new descriptor, which the caller then owns.
pub fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    let ret = bpf_call(cmd, attr)?;
    // SAFETY: on success these commands return a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// bpf(2) for a command that returns no descriptor (0 on success). `attr` is mutable: some
/// commands write results back into it.
pub fn bpf_call<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed `repr(C)` prefix of `union bpf_attr` of
    // the size passed; the pointers inside it outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// The `BPF_PROG_LOAD` member, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
pub struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
}

/// The `BPF_LINK_CREATE` member for a link on an interface.
#[repr(C)]
#[derive(Default)]
pub struct LinkCreateAttr {
    pub prog_fd: u32,
    pub target_ifindex: u32,
    pub attach_type: u32,
    pub flags: u32,
    pub _rest: [u64; 2],
}

/// The `BPF_OBJ_PIN` member.
#[repr(C)]
#[derive(Default)]
pub struct ObjPinAttr {
    pub pathname: u64,
    pub bpf_fd: u32,
    pub file_flags: u32,
    pub path_fd: i32,
    pub _pad: u32,
}

/// The `BPF_PROG_QUERY` member, up to `revision`.
#[repr(C)]
#[derive(Default)]
pub struct ProgQueryAttr {
    pub target_ifindex: u32,
    pub attach_type: u32,
    pub query_flags: u32,
    pub attach_flags: u32,
    pub prog_ids: u64,
    pub count: u32,
    pub _pad: u32,
    pub prog_attach_flags: u64,
    pub link_ids: u64,
    pub link_attach_flags: u64,
    pub revision: u64,
}

/// Pins `fd` (a program, a link) at `path`, on a BPF filesystem.
pub fn pin(fd: &OwnedFd, path: &std::path::Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    let mut attr = ObjPinAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        ..ObjPinAttr::default()
    };
    bpf_call(BPF_OBJ_PIN, &mut attr).map(drop)
}

/// How many programs are attached at `attach_type` (a tcx point) of interface `ifindex` of
/// the calling thread's namespace.
pub fn attached_count(ifindex: u32, attach_type: u32) -> io::Result<u32> {
    let mut attr = ProgQueryAttr {
        target_ifindex: ifindex,
        attach_type,
        ..ProgQueryAttr::default()
    };
    // BPF_PROG_QUERY writes the count back into `attr`; with no id array, only that.
    bpf_call(BPF_PROG_QUERY, &mut attr)?;
    Ok(attr.count)
}
