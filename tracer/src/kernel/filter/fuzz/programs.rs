//! Random classic BPF programs that libpcap's interpreter accepts (its opcodes, jumps inside
//! the program, scratch indices below 16, no constant division by zero or shift past 31):
//! every instruction the kernel-side interpreter may meet, not only those libpcap's
//! compiler happens to emit today.
//!
//! Like the kernel's classic BPF checker, and like every program libpcap compiles, a
//! program stores a scratch word before it loads it: libpcap 1.10 leaves its scratch memory
//! uninitialised, and the kernel programs keep theirs from one packet to the next, so a
//! load before a store has no defined value to compare.

use proptest::{collection::vec, prelude::*, sample::select};
use tracer_common::cbpf::{Insn, MAX_INSNS};

/// Opcodes with a free `k` (loads take an offset, ALU and jumps a constant).
const OPCODES: [u16; 39] = [
    0x00, 0x20, 0x28, 0x30, 0x40, 0x48, 0x50, 0x80, 0x60, // ld imm/abs/ind/len/mem
    0x01, 0x61, 0x81, 0xb1, // ldx imm/mem/len/msh
    0x02, 0x03, // st, stx
    0x04, 0x14, 0x24, 0x34, 0x44, 0x54, 0x64, 0x74, 0x84, 0x94, 0xa4, // alu k
    0x0c, 0x1c, 0x2c, 0x3c, 0x4c, 0x5c, 0x6c, 0x7c, 0x9c, 0xac, // alu x
    0x07, 0x87, // tax, txa
    0x06, // ret k
];
const JUMPS: [u16; 9] = [0x05, 0x15, 0x25, 0x35, 0x45, 0x1d, 0x2d, 0x3d, 0x4d];
const RET_A: u16 = 0x16;

/// `k` for `code`: small offsets and constants mostly, anything sometimes.
fn fix_k(code: u16, k: u32, small: u32) -> u32 {
    match code {
        // Packet offsets: near the headers mostly; never the ancillary area (>= 2^31).
        0x20 | 0x28 | 0x30 | 0x40 | 0x48 | 0x50 | 0xb1 => {
            if k.is_multiple_of(8) {
                k & 0x7fff_ffff
            } else {
                small % 200
            }
        }
        0x60 | 0x61 | 0x02 | 0x03 => small % 16,
        // Division and modulo by a constant 0 are refused by libpcap's validator.
        0x34 | 0x94 => small.max(1),
        // So are constant shifts past 31.
        0x64 | 0x74 => small % 32,
        0x06 => k % 4,
        _ => {
            if k.is_multiple_of(4) {
                k
            } else {
                small % 300
            }
        }
    }
}

/// A program of 1 to 64 instructions ending in a return; forward jumps only, all inside.
pub fn program() -> impl Strategy<Value = Vec<Insn>> {
    let insn = (
        prop_oneof![6 => select(&OPCODES[..]), 2 => select(&JUMPS[..]), 1 => Just(RET_A)],
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<u8>(),
    );
    (
        vec(insn, 0..MAX_INSNS),
        prop_oneof![Just(0x06u16), Just(RET_A)],
        any::<u32>(),
    )
        .prop_map(|(body, last, last_k)| {
            let len = body.len() + 1;
            let mut insns: Vec<Insn> = body
                .into_iter()
                .enumerate()
                .map(|(pc, (code, k, small, jt, jf))| {
                    // Room left after this instruction: every target stays inside.
                    let room = (len - pc - 2) as u32;
                    if JUMPS.contains(&code) {
                        let k = if room == 0 { 0 } else { k % (room + 1) };
                        let fit = |j: u8| (j as u32 % (room + 1)) as u8;
                        Insn {
                            code,
                            jt: fit(jt),
                            jf: fit(jf),
                            k: if code == 0x05 {
                                k
                            } else {
                                fix_k(code, k, small)
                            },
                        }
                    } else {
                        Insn {
                            code,
                            jt: 0,
                            jf: 0,
                            k: fix_k(code, k, small),
                        }
                    }
                })
                .collect();
            insns.push(Insn {
                code: last,
                jt: 0,
                jf: 0,
                k: last_k % 2,
            });
            store_before_load(&mut insns);
            insns
        })
}

const LD_MEM: u16 = 0x60;
const LDX_MEM: u16 = 0x61;

/// Turns each scratch load that some path reaches before a store of its word into an
/// immediate load (the kernel's `check_load_and_stores`, as a repair). Jumps go forward
/// only, so one pass in order sees every path into an instruction first.
fn store_before_load(insns: &mut [Insn]) {
    // Per instruction, the words stored on every path to it; `None` while unreached.
    let mut stored: Vec<Option<u16>> = vec![None; insns.len()];
    stored[0] = Some(0);
    for pc in 0..insns.len() {
        let Some(before) = stored[pc] else { continue };
        let insn = &mut insns[pc];
        let word = 1u16 << (insn.k % 16);
        let mut after = before;
        match insn.code {
            0x02 | 0x03 => after |= word,
            // The same register loaded with an immediate instead.
            LD_MEM if before & word == 0 => insn.code = 0x00,
            LDX_MEM if before & word == 0 => insn.code = 0x01,
            _ => {}
        }
        let next = pc + 1;
        let targets = match insn.code {
            0x05 => vec![next + insn.k as usize],
            code if JUMPS.contains(&code) => vec![next + insn.jt as usize, next + insn.jf as usize],
            0x06 | RET_A => vec![],
            _ => vec![next],
        };
        for target in targets {
            let merged = stored[target].map_or(after, |s| s & after);
            stored[target] = Some(merged);
        }
    }
}
