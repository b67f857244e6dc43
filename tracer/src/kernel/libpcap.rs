//! libpcap, opened at run time: its filter compiler is what gives a filter exactly tcpdump's
//! meaning. Loaded with `dlopen` rather than linked, so that the tracer builds without
//! libpcap's development files and only a trace with a filter needs the library (the one
//! tcpdump itself uses).

use std::{
    ffi::{c_char, c_int, c_uint, c_void, CStr, CString},
    sync::{Mutex, OnceLock},
};

use tracer_common::cbpf::Insn;

const LIBRARY_NAMES: [&str; 2] = ["libpcap.so.0.8", "libpcap.so.1"];
/// `PCAP_NETMASK_UNKNOWN`: `ip broadcast` is then refused, as by tcpdump without a device.
const NETMASK_UNKNOWN: u32 = 0xffff_ffff;
const SNAPLEN: c_int = 262_144;

#[repr(C)]
struct BpfProgram {
    len: c_uint,
    insns: *mut Insn,
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type Compile =
    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int;
type GetErr = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type FreeCode = unsafe extern "C" fn(*mut BpfProgram);
type Close = unsafe extern "C" fn(*mut c_void);
type Filter = unsafe extern "C" fn(*const Insn, *const u8, c_uint, c_uint) -> c_uint;

struct Library {
    open_dead: OpenDead,
    compile: Compile,
    geterr: GetErr,
    freecode: FreeCode,
    close: Close,
    /// Only the tests call libpcap's interpreter.
    #[cfg_attr(not(test), allow(dead_code))]
    filter: Filter,
}

/// libpcap's compiler keeps global parser state in older releases: one compile at a time.
static COMPILER: Mutex<()> = Mutex::new(());

fn library() -> Result<&'static Library, String> {
    static LIBRARY: OnceLock<Result<Library, String>> = OnceLock::new();
    LIBRARY.get_or_init(open).as_ref().map_err(Clone::clone)
}

fn open() -> Result<Library, String> {
    let handle = LIBRARY_NAMES
        .iter()
        .map(|name| {
            let name = CString::new(*name).expect("no NUL in a library name");
            // SAFETY: dlopen with a valid C string; the handle is never closed.
            unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) }
        })
        .find(|handle| !handle.is_null())
        .ok_or("filters need libpcap, which is not installed (Debian: apt install libpcap0.8)")?;
    let symbol = |name: &str| -> Result<*mut c_void, String> {
        let cname = CString::new(name).expect("no NUL in a symbol name");
        // SAFETY: `handle` is a non-null dlopen handle, never closed; `cname` a NUL-terminated
        // string alive for the call.
        let ptr = unsafe { libc::dlsym(handle, cname.as_ptr()) };
        if ptr.is_null() {
            Err(format!("libpcap lacks {name}: too old a release"))
        } else {
            Ok(ptr)
        }
    };
    // SAFETY: each pointer is a non-null dlsym result for a function of the handle that is
    // never closed, and each type above is that function's C signature in pcap/pcap.h
    // (`bpf_filter` in pcap/bpf.h), so calling through it is calling that function.
    unsafe {
        Ok(Library {
            open_dead: std::mem::transmute::<*mut c_void, OpenDead>(symbol("pcap_open_dead")?),
            compile: std::mem::transmute::<*mut c_void, Compile>(symbol("pcap_compile")?),
            geterr: std::mem::transmute::<*mut c_void, GetErr>(symbol("pcap_geterr")?),
            freecode: std::mem::transmute::<*mut c_void, FreeCode>(symbol("pcap_freecode")?),
            close: std::mem::transmute::<*mut c_void, Close>(symbol("pcap_close")?),
            filter: std::mem::transmute::<*mut c_void, Filter>(symbol("bpf_filter")?),
        })
    }
}

/// Why libpcap could not give a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// libpcap is missing or unusable.
    Library(String),
    /// libpcap rejected the expression; its message, as tcpdump prints it.
    Rejected(String),
}

/// Compiles `expression` for link type `dlt` (see `tracer_common::cbpf::dlt`), optimised as
/// tcpdump does.
pub fn compile(expression: &str, dlt: c_int) -> Result<Vec<Insn>, CompileError> {
    let lib = library().map_err(CompileError::Library)?;
    let text = CString::new(expression)
        .map_err(|_| CompileError::Rejected("the filter contains a NUL byte".into()))?;
    let _one_at_a_time = COMPILER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // SAFETY: libpcap's API as documented: `pcap` is checked non-null and closed once, after
    // its last use; `text` is a C string alive for the call; on success `program` holds `len`
    // instructions at `insns`, copied out before `pcap_freecode`; `pcap_geterr`'s string is
    // copied before `pcap_close`. `COMPILER` keeps the compiler to one caller at a time.
    unsafe {
        let pcap = (lib.open_dead)(dlt, SNAPLEN);
        if pcap.is_null() {
            return Err(CompileError::Library("pcap_open_dead failed".into()));
        }
        let mut program = BpfProgram {
            len: 0,
            insns: std::ptr::null_mut(),
        };
        let result = if (lib.compile)(pcap, &mut program, text.as_ptr(), 1, NETMASK_UNKNOWN) != 0 {
            let message = CStr::from_ptr((lib.geterr)(pcap)).to_string_lossy();
            // Some messages end in a newline ("decnet name support not included, ...\n").
            Err(CompileError::Rejected(message.trim_end().to_string()))
        } else {
            let insns = std::slice::from_raw_parts(program.insns, program.len as usize).to_vec();
            (lib.freecode)(&mut program);
            Ok(insns)
        };
        (lib.close)(pcap);
        result
    }
}

/// libpcap's own interpreter: the reference the kernel-side interpreter is tested against.
#[cfg(test)]
pub fn reference_filter(insns: &[Insn], packet: &[u8], wire_len: u32) -> bool {
    let lib = library().unwrap_or_else(|e| panic!("NOT RUN: {e}"));
    // SAFETY: `bpf_filter` does not validate: it trusts the program to jump only inside
    // itself, to index scratch memory below 16 and to end in `ret`. The callers' programs do
    // (pcap_compile's, and the fuzzer's, built so). It reads at most `buflen` bytes of the
    // packet, here the slice's true length.
    unsafe {
        (lib.filter)(
            insns.as_ptr(),
            packet.as_ptr(),
            wire_len,
            packet.len() as c_uint,
        ) != 0
    }
}
