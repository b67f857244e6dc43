//! Classic BPF, the language libpcap compiles tcpdump filter expressions into, and an
//! interpreter for it that runs in the kernel programs (and on the host, where it is tested
//! against libpcap's own `bpf_filter`).
//!
//! Running libpcap's program instead of a grammar of our own is what gives a filter exactly
//! tcpdump's meaning. The interpreter follows the kernel's socket-filter semantics: a load
//! beyond the bytes at hand, or a division by zero, rejects the packet.
//!
//! Userspace validates a program before loading it ([`validate`]): every jump lands inside
//! the program (cBPF jumps only forward), scratch-memory indices are in range, and no load
//! uses Linux's ancillary offsets. The interpreter still bounds everything it indexes, for
//! the verifier and against a program that was not validated.

use crate::parse::{HDR_LEN, L2_LEN};

mod lengths;
pub use lengths::Lengths;

/// Longest program the kernel programs run (tcpdump's usual filters take 5 to 40; the verifier's
/// work grows with it).
pub const MAX_INSNS: usize = 64;
const _: () = assert!(MAX_INSNS.is_power_of_two());
/// Scratch memory words (`M[0]`..`M[15]`), as in every BPF implementation.
pub const MEM_WORDS: usize = 16;

/// Link types the programs are compiled for (libpcap's `DLT_*` numbers on Linux).
pub mod dlt {
    /// Ethernet: where a hook sees the frame (XDP, tc), as tcpdump does on a veth or NIC.
    pub const EN10MB: i32 = 1;
    /// Raw IPv4/IPv6: where a hook sees the packet from its IP header on.
    pub const RAW: i32 = 12;
}

/// One instruction, laid out like `struct sock_filter` / libpcap's `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A program as the kernel programs read it from their filter map. The slots after the
/// program hold `ret #0`, so that the interpreter needs no length check (see [`run`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program {
    /// Instructions in use.
    pub len: u32,
    pub _pad: u32,
    pub insns: [Insn; MAX_INSNS],
}

/// `ret #0`: reject.
const REJECT: Insn = Insn {
    code: CLASS_RET,
    jt: 0,
    jf: 0,
    k: 0,
};

impl Program {
    /// A program that rejects everything, to copy instructions into.
    pub const EMPTY: Program = Program {
        len: 0,
        _pad: 0,
        insns: [REJECT; MAX_INSNS],
    };
}

const _: () = assert!(core::mem::size_of::<Insn>() == 8);
const _: () = assert!(core::mem::size_of::<Program>() == 8 + 8 * MAX_INSNS);

// SAFETY: `repr(C)`; `len` and `_pad` are `u32`s, each `Insn` a `repr(C)` `u16, u8, u8, u32`
// (8 bytes, asserted above), so the whole is 8 + 8 * MAX_INSNS bytes without padding, and
// made of integers only: any bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Program {}

// Instruction classes and fields (linux/filter.h, pcap/bpf.h).
const CLASS_LD: u16 = 0x00;
const CLASS_LDX: u16 = 0x01;
const CLASS_ST: u16 = 0x02;
const CLASS_STX: u16 = 0x03;
const CLASS_ALU: u16 = 0x04;
const CLASS_JMP: u16 = 0x05;
const CLASS_RET: u16 = 0x06;
const SIZE_W: u16 = 0x00;
const SIZE_H: u16 = 0x08;
const SIZE_B: u16 = 0x10;
const MODE_IMM: u16 = 0x00;
const MODE_ABS: u16 = 0x20;
const MODE_IND: u16 = 0x40;
const MODE_MEM: u16 = 0x60;
const MODE_LEN: u16 = 0x80;
const MODE_MSH: u16 = 0xa0;
const SRC_X: u16 = 0x08;
const RVAL_A: u16 = 0x10;
const MISC_TXA: u16 = 0x80;

/// The bytes a hook has of a packet: the link-layer header (none where the hook only has
/// the IP packet) followed by the headers from L3 on, as far as the hook copied them.
///
/// Addresses, not references: in the kernel they are plain numbers to the verifier, so that
/// the indices the interpreter computes are not tracked one by one (which multiplies its
/// states beyond the verifier's limit), and every read goes through [`read`].
pub struct View {
    pub l2: *const u8,
    pub l2_len: u32,
    pub l3: *const u8,
    pub l3_len: u32,
    /// Length of the packet on the wire from the same start (`len` in a filter).
    pub wire_len: u32,
}

/// Which bytes of a view a run read: a byte of mask per byte, `0xff` where read, laid out as a
/// verdict cache keeps views (the L2 bytes from 0, room for [`L2_LEN`]; the L3 bytes after
/// it). A run reads nothing else of its view but the lengths, so another view of lengths the
/// verdict holds for ([`Lengths`]) and the same bytes under the mask gets the same verdict:
/// the kernel programs take a packet's verdict from the last one of its flow that way (the IP
/// id, the checksums, the lengths and the payload differ from packet to packet; a filter on
/// addresses and ports reads none).
/// Words, not bytes, so that the comparison goes word by word; the room a view needs rounded
/// up to a power of two, so that an index masked to it is in bounds for the verifier.
pub type ReadMask = [u64; READ_MASK_WORDS];
pub const READ_MASK_WORDS: usize = ((L2_LEN + HDR_LEN) / 8).next_power_of_two();
const _: () = assert!(READ_MASK_WORDS.is_power_of_two());

impl View {
    /// `size` (1, 2 or 4) bytes at `at`, big-endian, or `None` past the bytes at hand; marks
    /// them in `seen`.
    #[inline(always)]
    fn load(&self, at: u32, size: u32, seen: &mut ReadMask) -> Option<u32> {
        let end = at.checked_add(size)?;
        if end > self.l2_len.checked_add(self.l3_len)? {
            return None;
        }
        for i in 0..4 {
            if i < size {
                self.mark(at + i, seen);
            }
        }
        // One read for the whole word where four bytes lie inside one part (in the kernel
        // each read is a helper call, and this runs per packet); byte by byte across the
        // L2/L3 seam and in the last bytes of a part.
        let (base, offset, part_len) = if at >= self.l2_len {
            (self.l3, at - self.l2_len, self.l3_len)
        } else {
            (self.l2, at, self.l2_len)
        };
        if offset + 4 <= part_len {
            // SAFETY: `offset + 4 <= part_len`, and the caller of `step` promised `part_len`
            // readable bytes at `base`; `read` copes with any alignment.
            let word: [u8; 4] = unsafe { read(base.wrapping_add(offset as usize).cast()) };
            return Some(u32::from_be_bytes(word) >> (8 * (4 - size)));
        }
        let mut value = 0u32;
        for i in 0..4 {
            if i < size {
                value = (value << 8) | self.byte(at + i) as u32;
            }
        }
        Some(value)
    }

    /// Marks the byte at `at` (inside the view) as read, where a verdict cache keeps it: the L2
    /// part at its offset, the L3 part after [`L2_LEN`] bytes of room.
    #[inline(always)]
    fn mark(&self, at: u32, seen: &mut ReadMask) {
        let at = if at < self.l2_len {
            at
        } else {
            L2_LEN as u32 + (at - self.l2_len)
        } as usize;
        seen[(at / 8) & (READ_MASK_WORDS - 1)] |= 0xff << (8 * (at % 8));
    }

    /// The byte at `at`, which [`View::load`] checked to be in range.
    #[inline(always)]
    fn byte(&self, at: u32) -> u8 {
        // SAFETY: `load` checked `at < l2_len + l3_len`, and the caller of `step` promised
        // `l2_len` readable bytes at `l2` and `l3_len` at `l3`.
        unsafe {
            if at < self.l2_len {
                read(self.l2.wrapping_add(at as usize))
            } else {
                read(self.l3.wrapping_add((at - self.l2_len) as usize))
            }
        }
    }
}

/// Reads a `T` at `src`. In the kernel programs through `bpf_probe_read_kernel`, which takes
/// any address: the verifier then has no index to follow.
///
/// # Safety
/// `src` points to a readable `T` (in the kernel, a failed read yields zeroes instead).
#[inline(always)]
unsafe fn read<T: Copy + Default>(src: *const T) -> T {
    #[cfg(target_arch = "bpf")]
    {
        // Helper 113, `bpf_probe_read_kernel`, called the way aya-ebpf's bindings do.
        // SAFETY: on the BPF target a call through the constant address 113 compiles to the
        // instruction `call 113`, helper `BPF_FUNC_probe_read_kernel`, whose signature is
        // `long (void *dst, u32 size, const void *unsafe_ptr)`, the one given here.
        let probe_read: unsafe extern "C" fn(*mut T, u32, *const T) -> i64 =
            unsafe { core::mem::transmute(113usize) };
        let mut out = T::default();
        // SAFETY: the destination is `out`, a local of exactly `size_of::<T>()` bytes; the
        // helper checks the source address itself (zeroes on a fault), and the `T`s read here
        // (`[u8; 4]`, `u8`, `Insn`) are integers, valid for any bytes.
        unsafe { probe_read(&mut out, core::mem::size_of::<T>() as u32, src) };
        out
    }
    // SAFETY: the caller's promise that `src` points to a readable `T`; unaligned because
    // `View`'s addresses are byte positions in a packet.
    #[cfg(not(target_arch = "bpf"))]
    unsafe {
        core::ptr::read_unaligned(src)
    }
}

/// The interpreter's registers between two steps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Machine {
    pub a: u32,
    pub x: u32,
    pub pc: u32,
    /// Set by the final `ret`: whether the filter accepts the packet.
    pub accept: bool,
    /// Whether the verdict depends on the view's lengths, not only on the bytes the run read:
    /// the run loaded `len`, or stopped before a `ret` (a read past the bytes at hand, a
    /// division by zero, an instruction it does not run). See [`Lengths`].
    pub lengths_matter: bool,
    /// Just past the last byte of the view the run read (0 before any read): the shortest
    /// view that holds every read. Kept as the run goes, so that no loop over the read mask
    /// is needed afterwards (in the kernel, a loop of branches the verifier walks path by
    /// path).
    pub reach: u32,
}

/// Runs the program at `prog` on `view` on the host: whether the filter accepts the packet.
/// The kernel programs drive [`step`] with the `bpf_loop` helper instead.
///
/// # Safety
/// As for [`step`].
pub unsafe fn run(
    prog: *const Program,
    view: &View,
    mem: &mut [u32; MEM_WORDS],
    seen: &mut ReadMask,
) -> bool {
    // SAFETY: the caller's promise.
    unsafe { run_to_end(prog, view, mem, seen) }.accept
}

/// [`run`], returning the machine as the run left it (its verdict, and whether the verdict
/// depends on the view's lengths).
///
/// # Safety
/// As for [`step`].
pub unsafe fn run_to_end(
    prog: *const Program,
    view: &View,
    mem: &mut [u32; MEM_WORDS],
    seen: &mut ReadMask,
) -> Machine {
    let mut machine = Machine::default();
    // cBPF jumps only forward, so MAX_INSNS steps end any program.
    for _ in 0..MAX_INSNS {
        // SAFETY: the caller's promise.
        if !unsafe { step(&mut machine, prog, view, mem, seen) } {
            break;
        }
    }
    machine
}

/// Executes one instruction; `false` once the program returned (see `machine.accept`).
/// `mem` is the scratch memory (per-CPU map space in the kernel, where the stack is short);
/// the bytes the instruction reads are marked in `seen`.
///
/// No comparison of `pc` with anything: the verifier would track each value apart. The mask
/// keeps the fetch inside the program, and past its end every slot says `ret #0`.
///
/// # Safety
/// `prog` points to a [`Program`] (in the kernel, one the verifier knows: the filter map's value),
/// and `view`'s addresses to as many bytes as it says.
#[inline(always)]
pub unsafe fn step(
    machine: &mut Machine,
    prog: *const Program,
    view: &View,
    mem: &mut [u32; MEM_WORDS],
    seen: &mut ReadMask,
) -> bool {
    let (mut a, mut x) = (machine.a, machine.x);
    let pc = machine.pc as usize & (MAX_INSNS - 1);
    // SAFETY: the caller promised that `prog` points to a `Program`, so the projection to its
    // `insns` stays in it; `pc` is masked below `MAX_INSNS`, so the read is one of them. A
    // plain load: in the kernel `prog` is the filter map's value, which the verifier knows,
    // and the mask bounds the offset for it.
    let insns = unsafe { core::ptr::addr_of!((*prog).insns) } as *const Insn;
    let insn: Insn = unsafe { core::ptr::read_volatile(insns.add(pc)) };
    let mut next = pc + 1;
    let code = insn.code;
    let k = insn.k;
    let size = match code & 0x18 {
        SIZE_W => 4,
        SIZE_H => 2,
        _ => 1,
    };
    let rejected = |machine: &mut Machine| {
        machine.accept = false;
        machine.lengths_matter = true;
        false
    };
    let mut lengths_matter = machine.lengths_matter;
    let mut reach = machine.reach;
    // A load of `size` bytes at `at`, keeping the run's reach.
    let mut load = |at: u32, size: u32| {
        let value = view.load(at, size, seen)?;
        reach = reach.max(at + size);
        Some(value)
    };
    match code & 0x07 {
        CLASS_LD => {
            a = match code & 0xe0 {
                MODE_IMM => k,
                MODE_ABS => match load(k, size) {
                    Some(v) => v,
                    None => return rejected(machine),
                },
                MODE_IND => match x.checked_add(k).and_then(|at| load(at, size)) {
                    Some(v) => v,
                    None => return rejected(machine),
                },
                MODE_MEM => mem[k as usize % MEM_WORDS],
                MODE_LEN => {
                    lengths_matter = true;
                    view.wire_len
                }
                _ => return rejected(machine),
            }
        }
        CLASS_LDX => {
            x = match code & 0xe0 {
                MODE_IMM => k,
                MODE_MEM => mem[k as usize % MEM_WORDS],
                MODE_LEN => {
                    lengths_matter = true;
                    view.wire_len
                }
                // `4*([k]&0xf)`: the IPv4 header length.
                MODE_MSH if code & 0x18 == SIZE_B => match load(k, 1) {
                    Some(v) => (v & 0x0f) << 2,
                    None => return rejected(machine),
                },
                _ => return rejected(machine),
            }
        }
        CLASS_ST => mem[k as usize % MEM_WORDS] = a,
        CLASS_STX => mem[k as usize % MEM_WORDS] = x,
        CLASS_ALU => {
            let operand = if code & SRC_X != 0 { x } else { k };
            a = match alu(code & 0xf0, a, operand) {
                Some(v) => v,
                None => return rejected(machine),
            };
        }
        CLASS_JMP => {
            let operand = if code & SRC_X != 0 { x } else { k };
            next += match code & 0xf0 {
                0x00 => k as usize,
                0x10 => branch(a == operand, insn),
                0x20 => branch(a > operand, insn),
                0x30 => branch(a >= operand, insn),
                0x40 => branch(a & operand != 0, insn),
                _ => return rejected(machine),
            };
        }
        CLASS_RET => {
            machine.accept = if code & RVAL_A != 0 { a != 0 } else { k != 0 };
            machine.lengths_matter = lengths_matter;
            return false;
        }
        // CLASS_MISC
        _ => {
            if code & MISC_TXA != 0 {
                a = x;
            } else {
                x = a;
            }
        }
    }
    *machine = Machine {
        a,
        x,
        pc: next as u32,
        accept: false,
        lengths_matter,
        reach,
    };
    true
}

#[inline(always)]
fn branch(taken: bool, insn: Insn) -> usize {
    if taken {
        insn.jt as usize
    } else {
        insn.jf as usize
    }
}

/// `None` for a division by zero, which rejects the packet as in the kernel.
#[inline(always)]
fn alu(op: u16, a: u32, operand: u32) -> Option<u32> {
    Some(match op {
        0x00 => a.wrapping_add(operand),
        0x10 => a.wrapping_sub(operand),
        0x20 => a.wrapping_mul(operand),
        0x30 => a.checked_div(operand)?,
        0x40 => a | operand,
        0x50 => a & operand,
        0x60 => a.checked_shl(operand).unwrap_or(0),
        0x70 => a.checked_shr(operand).unwrap_or(0),
        0x80 => a.wrapping_neg(),
        0x90 => a.checked_rem(operand)?,
        0xa0 => a ^ operand,
        _ => return None,
    })
}

/// Why a program cannot run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// More instructions than [`MAX_INSNS`].
    TooLong(usize),
    /// A load from Linux's ancillary area (`SKF_AD_OFF` and below zero), which needs the
    /// socket's skb, not bytes.
    Ancillary,
    /// A jump past the end, a scratch index out of range, an unknown opcode or no final
    /// return: not something libpcap produces.
    Malformed(usize),
}

/// Checks that `insns` is a program [`run`] executes faithfully.
pub fn validate(insns: &[Insn]) -> Result<(), Invalid> {
    if insns.len() > MAX_INSNS {
        return Err(Invalid::TooLong(insns.len()));
    }
    for (pc, insn) in insns.iter().enumerate() {
        let next = pc + 1;
        let ok = match insn.code & 0x07 {
            CLASS_LD | CLASS_LDX => match insn.code & 0xe0 {
                MODE_ABS | MODE_IND | MODE_MSH if insn.k >= 0x8000_0000 => {
                    return Err(Invalid::Ancillary)
                }
                MODE_MEM => (insn.k as usize) < MEM_WORDS,
                _ => true,
            },
            CLASS_ST | CLASS_STX => (insn.k as usize) < MEM_WORDS,
            CLASS_JMP if insn.code & 0xf0 == 0x00 => next + (insn.k as usize) < insns.len(),
            CLASS_JMP => next + (insn.jt.max(insn.jf) as usize) < insns.len(),
            _ => true,
        };
        if !ok {
            return Err(Invalid::Malformed(pc));
        }
    }
    match insns.last() {
        Some(last) if last.code & 0x07 == CLASS_RET => Ok(()),
        _ => Err(Invalid::Malformed(insns.len())),
    }
}

/// Index in the `FILTERS` map of the program for hooks that see the Ethernet header.
pub const L2_SLOT: u32 = 0;
/// Index of the program for hooks that see the packet from its IP header on.
pub const L3_SLOT: u32 = 1;
