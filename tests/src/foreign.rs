//! Foreign BPF programs, as another tool would attach them: two-instruction programs that
//! return a fixed verdict ("drop everything"), loaded from raw instructions and attached with
//! links, so that tests need no compiler and no object file. Dropping the value detaches.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::Netns;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;

/// Where a foreign program goes.
#[derive(Clone, Copy)]
pub enum Hook {
    Xdp,
    TcIngress,
    TcEgress,
}

/// A program returning `verdict` (XDP_DROP = 1, TC_ACT_SHOT = 2), attached to an interface.
pub struct Foreign {
    pub name: String,
    _program: OwnedFd,
    _link: OwnedFd,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 2],
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<OwnedFd> {
    // SAFETY: a live repr(C) prefix of union bpf_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

#[repr(C)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// Loads `name` returning `verdict` for `hook` and pins it at `path` (on the BPF filesystem),
/// as an older build could have left it. The pin holds the program; no process does.
pub fn pin_program(hook: Hook, name: &str, verdict: i32, path: &std::path::Path) {
    let program = load(hook, name, verdict);
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let attr = ObjPinAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: program.as_raw_fd() as u32,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    // SAFETY: a live repr(C) prefix of union bpf_attr; BPF_OBJ_PIN returns 0, not a descriptor.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_PIN,
            &attr as *const ObjPinAttr,
            std::mem::size_of::<ObjPinAttr>() as u32,
        )
    };
    assert_eq!(ret, 0, "pin: {}", std::io::Error::last_os_error());
}

/// Loads a program of `hook`'s type named `name` that returns `verdict`.
fn load(hook: Hook, name: &str, verdict: i32) -> OwnedFd {
    // r0 = verdict; exit
    let insns: [u64; 2] = [0xb7 | ((verdict as u32 as u64) << 32), 0x95];
    let license = c"GPL";
    let (prog_type, expected) = match hook {
        Hook::Xdp => (BPF_PROG_TYPE_XDP, BPF_XDP),
        Hook::TcIngress | Hook::TcEgress => (BPF_PROG_TYPE_SCHED_CLS, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: expected,
        ..ProgLoadAttr::default()
    };
    attr.prog_name[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
    bpf(BPF_PROG_LOAD, &attr).expect("load the foreign program")
}

impl Foreign {
    /// Loads `name` returning `verdict` and links it to `ifname` in `ns` (appended after the
    /// programs already there).
    pub fn attach(ns: &Netns, ifname: &str, hook: Hook, name: &str, verdict: i32) -> Foreign {
        let attach_type = match hook {
            Hook::Xdp => BPF_XDP,
            Hook::TcIngress => BPF_TCX_INGRESS,
            Hook::TcEgress => BPF_TCX_EGRESS,
        };
        let program = load(hook, name, verdict);
        let prog_fd = program.as_raw_fd() as u32;
        let ifname_owned = ifname.to_string();
        let link = ns.enter(move || {
            let c_name = std::ffi::CString::new(ifname_owned).unwrap();
            // SAFETY: a valid C string.
            let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
            assert_ne!(ifindex, 0, "no such interface");
            let attr = LinkCreateAttr {
                prog_fd,
                target_ifindex: ifindex,
                attach_type,
                flags: 0,
                _rest: [0; 2],
            };
            bpf(BPF_LINK_CREATE, &attr).expect("link the foreign program")
        });
        Foreign {
            name: name.to_string(),
            _program: program,
            _link: link,
        }
    }
}
