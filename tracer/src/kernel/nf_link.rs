//! Netfilter programs (`BPF_PROG_TYPE_NETFILTER`, Linux 6.4+), which aya 0.14 cannot load.
//!
//! The programs sit in the same object as the others, in a section aya parses as a classifier,
//! so they share its maps. Here the object is parsed again with `aya-obj` (the parser aya
//! itself uses), their map references are pointed at the maps aya already created, and two
//! syscalls do the rest: `BPF_PROG_LOAD` with the netfilter type, then one `BPF_LINK_CREATE`
//! per (family, hook, priority). Links are file descriptors: the kernel removes the hooks when
//! the process exits, however it exits.

use std::{
    collections::HashSet,
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use aya::{maps::Map, Ebpf};
use aya_obj::{generated::bpf_insn, Object};

pub(crate) const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_BTF_LOAD: libc::c_long = 18;
pub(crate) const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_NETFILTER: u32 = 32;
const BPF_NETFILTER: u32 = 45;

/// `NFPROTO_IPV4` and `NFPROTO_IPV6`.
pub const FAMILIES: [(u32, &str); 2] = [(2, "IPv4"), (10, "IPv6")];
/// `NF_INET_PRE_ROUTING` .. `NF_INET_POST_ROUTING`.
pub const HOOKS: std::ops::RangeInclusive<u32> = 0..=4;
/// As early and as late as the kernel lets a BPF program sit: `NF_IP_PRI_FIRST` and
/// `NF_IP_PRI_LAST` themselves are refused (they belong to the kernel's own hooks).
pub const PRIORITY_FIRST: i32 = i32::MIN + 1;
pub const PRIORITY_LAST: i32 = i32::MAX - 1;

#[derive(Debug, thiserror::Error)]
pub enum NfError {
    #[error("cannot prepare {0}: {1}")]
    Object(String, String),
    #[error("the kernel refused {name}: {error}{}", verifier_tail(.log))]
    Refused {
        name: String,
        error: io::Error,
        log: String,
    },
}

fn verifier_tail(log: &str) -> String {
    let complaint = crate::kernel::verifier::complaint(log);
    if complaint.is_empty() {
        complaint
    } else {
        format!(": {complaint}")
    }
}

/// A loaded netfilter program.
pub struct NetfilterProgram {
    fd: OwnedFd,
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `attach_btf_id`; the kernel zero-fills the rest.
/// No implicit padding: every byte passed is a field we set.
#[repr(C)]
#[derive(Default)]
pub(crate) struct ProgLoadAttr {
    pub(crate) prog_type: u32,
    pub(crate) insn_cnt: u32,
    pub(crate) insns: u64,
    pub(crate) license: u64,
    pub(crate) log_level: u32,
    pub(crate) log_size: u32,
    pub(crate) log_buf: u64,
    pub(crate) kern_version: u32,
    pub(crate) prog_flags: u32,
    pub(crate) prog_name: [u8; 16],
    pub(crate) prog_ifindex: u32,
    pub(crate) expected_attach_type: u32,
    /// The object's BTF with function and line records: the kernel demands them of a
    /// program that passes a callback (the filter's `bpf_loop`).
    pub(crate) prog_btf_fd: u32,
    pub(crate) func_info_rec_size: u32,
    pub(crate) func_info: u64,
    pub(crate) func_info_cnt: u32,
    pub(crate) line_info_rec_size: u32,
    pub(crate) line_info: u64,
    pub(crate) line_info_cnt: u32,
    /// Never set, but spelled out: as implicit padding these four bytes were whatever the
    /// stack held, and the kernel reads them as `attach_btf_id` (a refusal, EINVAL, that came
    /// and went with unrelated code changes).
    pub(crate) attach_btf_id: u32,
}

/// `union bpf_attr` for `BPF_BTF_LOAD`.
#[repr(C)]
#[derive(Default)]
struct BtfLoadAttr {
    btf: u64,
    btf_log_buf: u64,
    btf_size: u32,
    btf_log_size: u32,
    btf_log_level: u32,
    /// Explicit, so that no padding byte reaches the kernel (see `ProgLoadAttr`).
    btf_log_true_size: u32,
}

/// A program's instructions, ready for `BPF_PROG_LOAD`, with its BTF records.
struct Prepared {
    insns: Vec<bpf_insn>,
    btf: OwnedFd,
    func_info: Vec<u8>,
    func_info_rec_size: usize,
    func_info_cnt: u32,
    line_info: Vec<u8>,
    line_info_rec_size: usize,
    line_info_cnt: u32,
}

/// `union bpf_attr` for `BPF_LINK_CREATE` with its `netfilter` member.
#[repr(C)]
struct NetfilterLinkAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    pf: u32,
    hooknum: u32,
    priority: i32,
    nf_flags: u32,
}

/// Loads program `name` of `object` as a netfilter program, using the maps of `ebpf` (which
/// was loaded from the same object).
pub fn load(ebpf: &Ebpf, object: &[u8], name: &str) -> Result<NetfilterProgram, NfError> {
    let prepared = prepare(ebpf, object, name).map_err(|e| NfError::Object(name.to_string(), e))?;
    let insns = &prepared.insns;
    let license = CString::new("GPL").expect("no NUL");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_NETFILTER,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_NETFILTER,
        prog_btf_fd: prepared.btf.as_raw_fd() as u32,
        func_info_rec_size: prepared.func_info_rec_size as u32,
        func_info: prepared.func_info.as_ptr() as u64,
        func_info_cnt: prepared.func_info_cnt,
        line_info_rec_size: prepared.line_info_rec_size as u32,
        line_info: prepared.line_info.as_ptr() as u64,
        line_info_cnt: prepared.line_info_cnt,
        ..ProgLoadAttr::default()
    };
    let bytes = name.as_bytes();
    let n = bytes.len().min(attr.prog_name.len() - 1);
    attr.prog_name[..n].copy_from_slice(&bytes[..n]);

    let fd = match bpf(BPF_PROG_LOAD, &attr) {
        Ok(fd) => fd,
        Err(error) => {
            // Again with the verifier's log, to say why.
            let mut log = vec![0u8; 1 << 20];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &attr);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            return Err(NfError::Refused {
                name: name.to_string(),
                error,
                log: String::from_utf8_lossy(&log[..end]).into_owned(),
            });
        }
    };
    Ok(NetfilterProgram { fd })
}

/// Hooks `program` into the current thread's network namespace at (`pf`, `hooknum`,
/// `priority`). The hook stays while the returned descriptor is open.
pub fn attach(
    program: &NetfilterProgram,
    pf: u32,
    hooknum: u32,
    priority: i32,
) -> io::Result<OwnedFd> {
    let attr = NetfilterLinkAttr {
        prog_fd: program.fd.as_raw_fd() as u32,
        target_fd: 0,
        attach_type: BPF_NETFILTER,
        flags: 0,
        pf,
        hooknum,
        priority,
        nf_flags: 0,
    };
    bpf(BPF_LINK_CREATE, &attr)
}

pub(crate) fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
    let ret = bpf_call(cmd, attr)?;
    // SAFETY: on success these commands return a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// bpf(2) for a command that writes its results into `attr` (`BPF_PROG_TEST_RUN`).
pub(crate) fn bpf_call_mut<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    sys_bpf(
        cmd,
        attr as *mut T as *mut libc::c_void,
        std::mem::size_of::<T>(),
    )
}

/// bpf(2) for a command that returns no descriptor (0 on success), or one that does.
pub(crate) fn bpf_call<T>(cmd: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    // The commands called this way only read `attr`.
    sys_bpf(
        cmd,
        attr as *const T as *mut libc::c_void,
        std::mem::size_of::<T>(),
    )
}

fn sys_bpf(cmd: libc::c_long, attr: *mut libc::c_void, size: usize) -> io::Result<libc::c_long> {
    // SAFETY: the callers pass a live `repr(C)` prefix of `union bpf_attr` of `size` bytes,
    // borrowed mutably where the command writes into it; the pointers inside it outlive the
    // call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size as u32) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// The instructions of `name` with their map references resolved to `ebpf`'s maps, and the
/// object's BTF loaded into the kernel with the program's function and line records.
fn prepare(ebpf: &Ebpf, object: &[u8], name: &str) -> Result<Prepared, String> {
    let mut obj = Object::parse(object).map_err(|e| e.to_string())?;
    let features = aya::features()
        .btf()
        .ok_or("this kernel has no BTF support, which the netfilter programs need")?;
    let btf_bytes = obj
        .fixup_and_sanitize_btf(features)
        .map_err(|e| e.to_string())?
        .ok_or("the object carries no BTF")?
        .to_bytes();
    let btf = load_btf(&btf_bytes).map_err(|e| format!("the kernel refused our BTF: {e}"))?;
    let mut maps = Vec::new();
    for (map_name, map) in ebpf.maps() {
        let fd = map_fd(map)
            .ok_or_else(|| format!("map {map_name} is of a kind this loader does not handle"))?;
        let definition = obj
            .maps
            .get(map_name)
            .ok_or_else(|| format!("map {map_name} is not in the object"))?;
        maps.push((map_name, fd, definition.clone()));
    }
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
    obj.relocate_maps(maps.iter().map(|(n, fd, m)| (*n, *fd, m)), &text_sections)
        .map_err(|e| e.to_string())?;
    obj.relocate_calls(&text_sections)
        .map_err(|e| e.to_string())?;
    let program = obj
        .programs
        .get(name)
        .ok_or_else(|| format!("program {name} is not in the object"))?;
    let function = obj
        .functions
        .get(&program.function_key())
        .ok_or_else(|| format!("function of {name} is not in the object"))?;
    Ok(Prepared {
        insns: function.instructions.clone(),
        btf,
        func_info: function.func_info.func_info_bytes(),
        func_info_rec_size: function.func_info_rec_size,
        func_info_cnt: function.func_info.num_info,
        line_info: function.line_info.line_info_bytes(),
        line_info_rec_size: function.line_info_rec_size,
        line_info_cnt: function.line_info.num_info,
    })
}

fn load_btf(bytes: &[u8]) -> io::Result<OwnedFd> {
    let attr = BtfLoadAttr {
        btf: bytes.as_ptr() as u64,
        btf_size: bytes.len() as u32,
        ..BtfLoadAttr::default()
    };
    bpf(BPF_BTF_LOAD, &attr)
}

/// The descriptor of a map of the kinds `tracer-ebpf` declares.
fn map_fd(map: &Map) -> Option<RawFd> {
    let data = match map {
        Map::Array(m)
        | Map::PerCpuArray(m)
        | Map::HashMap(m)
        | Map::LruHashMap(m)
        | Map::RingBuf(m) => m,
        _ => return None,
    };
    Some(data.fd().as_fd().as_raw_fd())
}

// The sizes of the kernel layouts, each byte a declared field (no implicit padding).
const _: () = assert!(std::mem::size_of::<ProgLoadAttr>() == 112);
const _: () = assert!(std::mem::size_of::<BtfLoadAttr>() == 32);
const _: () = assert!(std::mem::size_of::<NetfilterLinkAttr>() == 32);
