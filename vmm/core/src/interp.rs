//! A64 interpreter for short runs of guest code inside the VMM: one instruction at a time on a
//! copy of the vCPU's general-purpose state ([`Cpu`]), with every memory access going through a
//! [`Memory`] the caller provides (guest RAM through the guest's stage-1 tables, a device's
//! registers, or a refusal).
//!
//! Why: an emulated load costs an exit of four kernel entries, so a guest that polls a device
//! register between every byte it writes (Linux's PL011 console: an FR read and a DR write per
//! byte) pays two exits a byte. Run from such an exit, the interpreter carries the guest on
//! through its own loop until the loop ends or meets an instruction it does not know, so one
//! exit can carry many bytes (vmm/pd/BENCHMARKS.md, "Linux guest").
//!
//! Each [`step`] is all or nothing: it either executes one instruction completely (registers,
//! flags, memory, PC) or returns a [`Stop`] and changes nothing, so the caller can always hand
//! the vCPU back at the stopped instruction and let it run natively.
//!
//! [`decode`] and [`execute`] are the reference: plain, one instruction at a time. [`run`] is
//! the fast path built on them and held to them by property tests: a [`DecodeCache`] keeps
//! straight-line blocks of decoded code across runs (checked against guest memory once a run),
//! each instruction also in a specialized form ([`crate::uop`]) that needs no decision at run
//! time; a block runs without looking each instruction up.
//!
//! Supported (A64, general-purpose registers only): ADD/SUB/ADDS/SUBS (immediate, shifted
//! register, extended register), AND/ORR/EOR/ANDS (immediate) and AND/BIC/ORR/ORN/EOR/EON/ANDS/
//! BICS (shifted register), MOVZ/MOVN/MOVK, ADR/ADRP, B, BL, B.cond, CBZ/CBNZ, TBZ/TBNZ, BR,
//! BLR, RET, every load and store [`crate::insn`] decodes, NOP, YIELD, DMB, DSB, ISB, and, on a
//! CPU without FEAT_PAuth and FEAT_BTI ([`Features`]), the PACIASP/AUTIASP family and BTI (NOPs
//! there). Everything else is [`Stop::Unsupported`], including every system-register access,
//! exclusive and atomic, exception-generating and SIMD instruction.

use crate::insn::{self, Direction, MemInsn, Offset, RegWidth, Writeback, sext};
use crate::uop::{Kind, Uop, specialize};

/// NZCV bits in [`Cpu::nzcv`].
pub mod flag {
    /// Negative.
    pub const N: u8 = 8;
    /// Zero.
    pub const Z: u8 = 4;
    /// Carry.
    pub const C: u8 = 2;
    /// Overflow.
    pub const V: u8 = 1;
}

/// The general-purpose state the interpreter runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cpu {
    /// x0..x30.
    pub x: [u64; 31],
    /// The current stack pointer (SP_EL1 for a guest at EL1h).
    pub sp: u64,
    /// The address of the next instruction.
    pub pc: u64,
    /// PSTATE.NZCV in bits 3..0 ([`flag`]).
    pub nzcv: u8,
}

/// What the CPU the guest runs on implements, where an instruction's meaning depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// FEAT_PAuth: PACIASP and friends sign and authenticate (else they are NOPs).
    pub pauth: bool,
    /// FEAT_BTI: BTI marks branch targets (else it is a NOP).
    pub bti: bool,
}

/// Why the interpreter stopped before an instruction (nothing of it was executed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// An instruction the interpreter does not execute (or an unallocated encoding).
    Unsupported(u32),
    /// A CONSTRAINED UNPREDICTABLE encoding.
    Unpredictable(u32),
    /// The [`Memory`] refused an access (`va`, bytes): not RAM the caller lets it touch, not
    /// mapped, a device access it does not emulate here.
    Memory {
        /// Guest-virtual address of the access.
        va: u64,
        /// Its length in bytes.
        len: u8,
    },
    /// An access based on SP while SP is not 16-byte aligned (the CPU may fault).
    SpAlignment,
    /// The instruction fetch at `pc` failed.
    Fetch(u64),
    /// The run's instruction budget is spent.
    Budget,
}

/// Guest memory as the interpreter sees it: guest-virtual addresses, little-endian values.
/// Each call is all or nothing: an `Err` means nothing was read (no side effect) or written.
/// A store must not change an instruction [`run`] may fetch: it fetches each address once a run.
pub trait Memory {
    /// Reads `len` bytes (1, 2, 4, 8 or 16) at `va`.
    fn load(&mut self, va: u64, len: u8) -> Result<u128, Stop>;
    /// Writes the low `len` bytes (1, 2, 4, 8 or 16) of `value` at `va`.
    fn store(&mut self, va: u64, len: u8, value: u128) -> Result<(), Stop>;
    /// Fetches the instruction word at `va`.
    fn fetch(&mut self, va: u64) -> Result<u32, Stop>;
    /// Reads `len` bytes (1, 2, 4 or 8) at `va`, zero-extended: [`Memory::load`] of a single
    /// register, which an implementation may make cheaper.
    #[inline]
    fn load_small(&mut self, va: u64, len: u8) -> Result<u64, Stop> {
        self.load(va, len).map(|v| insn::truncate(v as u64, len))
    }
    /// Writes the low `len` bytes (1, 2, 4 or 8) of `value` at `va`: [`Memory::store`] of a
    /// single register.
    #[inline]
    fn store_small(&mut self, va: u64, len: u8, value: u64) -> Result<(), Stop> {
        self.store(va, len, u128::from(value))
    }
    /// Whether `words` are still the instruction words at `va`, `va + 4`, ... (a block's, in
    /// one page): `Err` when the first one cannot be fetched, `Ok(false)` when a word differs
    /// or a later one cannot be fetched. An implementation may compare them in bulk.
    #[inline]
    fn same_code(&mut self, va: u64, words: &[u32]) -> Result<bool, Stop> {
        for (k, &w) in words.iter().enumerate() {
            match self.fetch(va.wrapping_add(4 * k as u64)) {
                Ok(now) if now == w => {}
                Ok(_) => return Ok(false),
                Err(stop) if k == 0 => return Err(stop),
                Err(_) => return Ok(false),
            }
        }
        Ok(true)
    }
    /// [`Memory::load_small`] of `L` bytes (1, 2, 4 or 8), a length known when compiled.
    #[inline]
    fn load_fixed<const L: u8>(&mut self, va: u64) -> Result<u64, Stop> {
        self.load_small(va, L)
    }
    /// Reads the 16 bytes of a pair of 64-bit registers at `va`: [`Memory::load`] of 16.
    #[inline]
    fn load_pair(&mut self, va: u64) -> Result<(u64, u64), Stop> {
        self.load(va, 16).map(|v| (v as u64, (v >> 64) as u64))
    }
    /// Writes a pair of 64-bit registers at `va`: [`Memory::store`] of 16.
    #[inline]
    fn store_pair(&mut self, va: u64, lo: u64, hi: u64) -> Result<(), Stop> {
        self.store(va, 16, u128::from(lo) | u128::from(hi) << 64)
    }
}

/// The logical operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logic {
    /// AND (and BIC with the operand inverted).
    And,
    /// ORR (ORN).
    Orr,
    /// EOR (EON).
    Eor,
    /// ANDS (BICS): AND that sets N and Z, clears C and V.
    Ands,
}

/// Shift of a register operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// Logical shift left.
    Lsl,
    /// Logical shift right.
    Lsr,
    /// Arithmetic shift right.
    Asr,
    /// Rotate right (logical instructions only).
    Ror,
}

/// Extension of an extended-register operand (`option`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ext {
    /// UXTB, UXTH, UXTW, UXTX/LSL: zero-extend the low 8, 16, 32 or 64 bits.
    Unsigned(u8),
    /// SXTB, SXTH, SXTW, SXTX: sign-extend the low 8, 16, 32 or 64 bits.
    Signed(u8),
}

/// A decoded instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// No architectural effect here (NOP, YIELD, barriers, PAC/BTI hints without the feature).
    Nop,
    /// ADD/SUB(S) immediate: `rd = rn ± imm` (`rn`, and `rd` unless `flags`, 31 = SP).
    AddSubImm {
        /// 64-bit.
        sf: bool,
        /// SUB.
        sub: bool,
        /// Sets NZCV.
        flags: bool,
        /// Destination.
        rd: u8,
        /// Source.
        rn: u8,
        /// The immediate, shifted.
        imm: u64,
    },
    /// Logical immediate (`rd` 31 = SP unless ANDS; `rn` 31 = ZR).
    LogicImm {
        /// 64-bit.
        sf: bool,
        /// Operation.
        op: Logic,
        /// Destination.
        rd: u8,
        /// Source.
        rn: u8,
        /// The decoded bit mask.
        imm: u64,
    },
    /// MOVZ / MOVN / MOVK.
    MoveWide {
        /// 64-bit.
        sf: bool,
        /// 0: MOVN, 2: MOVZ, 3: MOVK.
        opc: u8,
        /// Destination (31 = ZR).
        rd: u8,
        /// The 16-bit immediate.
        imm16: u16,
        /// Its position (0, 16, 32, 48).
        shift: u8,
    },
    /// ADR / ADRP.
    Adr {
        /// ADRP: the 4 KiB page of PC plus `offset` pages.
        page: bool,
        /// Destination (31 = ZR).
        rd: u8,
        /// Byte offset (ADR) or page offset (ADRP).
        offset: i64,
    },
    /// Logical (shifted register); every register 31 is ZR.
    LogicReg {
        /// 64-bit.
        sf: bool,
        /// Operation.
        op: Logic,
        /// The second operand is inverted (BIC, ORN, EON, BICS).
        invert: bool,
        /// Destination.
        rd: u8,
        /// First operand.
        rn: u8,
        /// Second operand.
        rm: u8,
        /// Its shift.
        shift: Shift,
        /// Shift amount.
        amount: u8,
    },
    /// ADD/SUB(S) shifted register; every register 31 is ZR.
    AddSubReg {
        /// 64-bit.
        sf: bool,
        /// SUB.
        sub: bool,
        /// Sets NZCV.
        flags: bool,
        /// Destination.
        rd: u8,
        /// First operand.
        rn: u8,
        /// Second operand.
        rm: u8,
        /// Its shift (LSL, LSR, ASR).
        shift: Shift,
        /// Shift amount.
        amount: u8,
    },
    /// ADD/SUB(S) extended register (`rn`, and `rd` unless `flags`, 31 = SP; `rm` 31 = ZR).
    AddSubExt {
        /// 64-bit.
        sf: bool,
        /// SUB.
        sub: bool,
        /// Sets NZCV.
        flags: bool,
        /// Destination.
        rd: u8,
        /// First operand.
        rn: u8,
        /// Second operand.
        rm: u8,
        /// Its extension.
        ext: Ext,
        /// Left shift after it (0..=4).
        amount: u8,
    },
    /// B / BL.
    Branch {
        /// BL: x30 = the next instruction.
        link: bool,
        /// Byte offset from this instruction.
        offset: i64,
    },
    /// B.cond.
    BranchCond {
        /// The condition (0..=15).
        cond: u8,
        /// Byte offset.
        offset: i64,
    },
    /// CBZ / CBNZ.
    CompareBranch {
        /// 64-bit.
        sf: bool,
        /// CBNZ.
        nonzero: bool,
        /// Tested register (31 = ZR).
        rt: u8,
        /// Byte offset.
        offset: i64,
    },
    /// TBZ / TBNZ.
    TestBranch {
        /// TBNZ.
        nonzero: bool,
        /// Bit number (0..=63).
        bit: u8,
        /// Tested register (31 = ZR).
        rt: u8,
        /// Byte offset.
        offset: i64,
    },
    /// BR / BLR / RET.
    BranchReg {
        /// BLR.
        link: bool,
        /// Target register (31 = ZR).
        rn: u8,
    },
    /// A load or store ([`crate::insn`]).
    Mem(MemInsn),
}

const fn bits(w: u32, lo: u32, n: u32) -> u32 {
    (w >> lo) & ((1 << n) - 1)
}

/// DecodeBitMasks for a logical immediate (the Arm ARM's pseudo-code, `immediate = TRUE`):
/// `None` for a reserved encoding.
pub const fn bit_mask(sf: bool, n: u32, immr: u32, imms: u32) -> Option<u64> {
    let combined = (n << 6) | (!imms & 0x3f);
    if combined == 0 {
        return None;
    }
    let len = 31 - combined.leading_zeros();
    if len < 1 || (!sf && len > 5) {
        return None;
    }
    let levels = (1u32 << len) - 1;
    let s = imms & levels;
    let r = immr & levels;
    if s == levels {
        return None;
    }
    let esize = 1u32 << len;
    let emask = if esize == 64 {
        u64::MAX
    } else {
        (1u64 << esize) - 1
    };
    let welem = (1u64 << (s + 1)) - 1;
    let elem = if r == 0 {
        welem
    } else {
        ((welem >> r) | (welem << (esize - r))) & emask
    };
    let mut v = 0u64;
    let mut at = 0;
    while at < 64 {
        v |= elem << at;
        at += esize;
    }
    Some(if sf { v } else { v & 0xffff_ffff })
}

/// Decodes one instruction word for a CPU with `features`.
pub const fn decode(w: u32, features: Features) -> Result<Op, Stop> {
    let sf = w >> 31 == 1;
    let rd = (w & 31) as u8;
    let rn = bits(w, 5, 5) as u8;
    let rm = bits(w, 16, 5) as u8;
    // Hints: NOP, YIELD, the PAC*SP/AUT*SP family and BTI.
    if w & 0xffff_f01f == 0xd503_201f {
        let hint = bits(w, 5, 7);
        return match hint {
            0 | 1 => Ok(Op::Nop),
            // PACIAZ, PACIASP, PACIBZ, PACIBSP, AUTIAZ, AUTIASP, AUTIBZ, AUTIBSP.
            24..=31 if !features.pauth => Ok(Op::Nop),
            32 | 34 | 36 | 38 if !features.bti => Ok(Op::Nop),
            _ => Err(Stop::Unsupported(w)),
        };
    }
    // DSB, DMB, ISB (any option: the interpreter's accesses happen in program order on the
    // core the vCPU is stopped on). Not SB (FEAT_SB), CLREX or the nXS forms.
    if matches!(w & 0xffff_f0ff, 0xd503_309f | 0xd503_30bf | 0xd503_30df) {
        return Ok(Op::Nop);
    }
    // B, BL.
    if w & 0x7c00_0000 == 0x1400_0000 {
        return Ok(Op::Branch {
            link: sf,
            offset: sext(w & 0x03ff_ffff, 26) << 2,
        });
    }
    // B.cond.
    if w & 0xff00_0010 == 0x5400_0000 {
        return Ok(Op::BranchCond {
            cond: (w & 15) as u8,
            offset: sext(bits(w, 5, 19), 19) << 2,
        });
    }
    // CBZ, CBNZ.
    if w & 0x7e00_0000 == 0x3400_0000 {
        return Ok(Op::CompareBranch {
            sf,
            nonzero: bits(w, 24, 1) == 1,
            rt: rd,
            offset: sext(bits(w, 5, 19), 19) << 2,
        });
    }
    // TBZ, TBNZ.
    if w & 0x7e00_0000 == 0x3600_0000 {
        return Ok(Op::TestBranch {
            nonzero: bits(w, 24, 1) == 1,
            bit: ((w >> 31) << 5 | bits(w, 19, 5)) as u8,
            rt: rd,
            offset: sext(bits(w, 5, 14), 14) << 2,
        });
    }
    // BR, BLR, RET (no pointer authentication).
    match w & 0xffff_fc1f {
        0xd61f_0000 | 0xd65f_0000 => return Ok(Op::BranchReg { link: false, rn }),
        0xd63f_0000 => return Ok(Op::BranchReg { link: true, rn }),
        _ => {}
    }
    // ADR, ADRP.
    if w & 0x1f00_0000 == 0x1000_0000 {
        return Ok(Op::Adr {
            page: sf,
            rd,
            offset: sext(bits(w, 5, 19) << 2 | bits(w, 29, 2), 21),
        });
    }
    // ADD/SUB(S) immediate (no tag forms: bit 23 clear).
    if w & 0x1f80_0000 == 0x1100_0000 {
        let imm = bits(w, 10, 12) as u64;
        return Ok(Op::AddSubImm {
            sf,
            sub: bits(w, 30, 1) == 1,
            flags: bits(w, 29, 1) == 1,
            rd,
            rn,
            imm: if bits(w, 22, 1) == 1 { imm << 12 } else { imm },
        });
    }
    // Logical immediate.
    if w & 0x1f80_0000 == 0x1200_0000 {
        let Some(imm) = bit_mask(sf, bits(w, 22, 1), bits(w, 16, 6), bits(w, 10, 6)) else {
            return Err(Stop::Unsupported(w));
        };
        return Ok(Op::LogicImm {
            sf,
            op: logic(bits(w, 29, 2)),
            rd,
            rn,
            imm,
        });
    }
    // Move wide.
    if w & 0x1f80_0000 == 0x1280_0000 {
        let opc = bits(w, 29, 2) as u8;
        let hw = bits(w, 21, 2) as u8;
        if opc == 1 || (!sf && hw >= 2) {
            return Err(Stop::Unsupported(w));
        }
        return Ok(Op::MoveWide {
            sf,
            opc,
            rd,
            imm16: bits(w, 5, 16) as u16,
            shift: hw * 16,
        });
    }
    // Logical shifted register.
    if w & 0x1f00_0000 == 0x0a00_0000 {
        let amount = bits(w, 10, 6) as u8;
        if !sf && amount >= 32 {
            return Err(Stop::Unsupported(w));
        }
        return Ok(Op::LogicReg {
            sf,
            op: logic(bits(w, 29, 2)),
            invert: bits(w, 21, 1) == 1,
            rd,
            rn,
            rm,
            shift: shift_kind(bits(w, 22, 2)),
            amount,
        });
    }
    // ADD/SUB(S) shifted register.
    if w & 0x1f20_0000 == 0x0b00_0000 {
        let amount = bits(w, 10, 6) as u8;
        let kind = bits(w, 22, 2);
        if kind == 3 || (!sf && amount >= 32) {
            return Err(Stop::Unsupported(w));
        }
        return Ok(Op::AddSubReg {
            sf,
            sub: bits(w, 30, 1) == 1,
            flags: bits(w, 29, 1) == 1,
            rd,
            rn,
            rm,
            shift: shift_kind(kind),
            amount,
        });
    }
    // ADD/SUB(S) extended register.
    if w & 0x1fe0_0000 == 0x0b20_0000 {
        let amount = bits(w, 10, 3) as u8;
        if amount > 4 {
            return Err(Stop::Unsupported(w));
        }
        let option = bits(w, 13, 3);
        let width = 8u8 << (option & 3);
        return Ok(Op::AddSubExt {
            sf,
            sub: bits(w, 30, 1) == 1,
            flags: bits(w, 29, 1) == 1,
            rd,
            rn,
            rm,
            ext: if option & 4 == 0 {
                Ext::Unsigned(width)
            } else {
                Ext::Signed(width)
            },
            amount,
        });
    }
    match insn::decode(w) {
        Ok(m) => Ok(Op::Mem(m)),
        Err(insn::InsnError::Unpredictable(w)) => Err(Stop::Unpredictable(w)),
        Err(insn::InsnError::Unsupported(w)) => Err(Stop::Unsupported(w)),
    }
}

const fn logic(opc: u32) -> Logic {
    match opc {
        0 => Logic::And,
        1 => Logic::Orr,
        2 => Logic::Eor,
        _ => Logic::Ands,
    }
}

const fn shift_kind(v: u32) -> Shift {
    match v {
        0 => Shift::Lsl,
        1 => Shift::Lsr,
        2 => Shift::Asr,
        _ => Shift::Ror,
    }
}

/// Whether condition `cond` holds for `nzcv` (ConditionHolds).
#[inline]
pub const fn condition_holds(cond: u8, nzcv: u8) -> bool {
    let n = nzcv & flag::N != 0;
    let z = nzcv & flag::Z != 0;
    let c = nzcv & flag::C != 0;
    let v = nzcv & flag::V != 0;
    let r = match (cond >> 1) & 7 {
        0 => z,
        1 => c,
        2 => n,
        3 => v,
        4 => c && !z,
        5 => n == v,
        6 => n == v && !z,
        _ => true,
    };
    if cond & 1 == 1 && cond != 15 { !r } else { r }
}

/// AddWithCarry on 64 or 32 bits: the result (zero-extended) and NZCV.
pub const fn add_with_carry(sf: bool, x: u64, y: u64, carry: bool) -> (u64, u8) {
    // Carry: an unsigned overflow in either step; overflow: a signed overflow in exactly one
    // of them (both cannot: after one the partial sum is far from the other end).
    let (result, unsigned_ok, signed_ok) = if sf {
        let (a, c1) = x.overflowing_add(y);
        let (r, c2) = a.overflowing_add(carry as u64);
        let (sa, v1) = (x as i64).overflowing_add(y as i64);
        let (_, v2) = sa.overflowing_add(carry as i64);
        (r, !(c1 | c2), v1 == v2)
    } else {
        let (x, y) = (x as u32, y as u32);
        let (a, c1) = x.overflowing_add(y);
        let (r, c2) = a.overflowing_add(carry as u32);
        let (sa, v1) = (x as i32).overflowing_add(y as i32);
        let (_, v2) = sa.overflowing_add(carry as i32);
        (r as u64, !(c1 | c2), v1 == v2)
    };
    let top = if sf { 63 } else { 31 };
    let mut nzcv = 0;
    if (result >> top) & 1 == 1 {
        nzcv |= flag::N;
    }
    if result == 0 {
        nzcv |= flag::Z;
    }
    if !unsigned_ok {
        nzcv |= flag::C;
    }
    if !signed_ok {
        nzcv |= flag::V;
    }
    (result, nzcv)
}

/// `v` truncated to 32 bits unless `sf` (a 64-bit operation).
#[inline]
pub(crate) const fn mask(sf: bool, v: u64) -> u64 {
    if sf { v } else { v & 0xffff_ffff }
}

#[inline]
const fn shifted(sf: bool, v: u64, shift: Shift, amount: u8) -> u64 {
    let a = amount as u32;
    if sf {
        match shift {
            Shift::Lsl => v.wrapping_shl(a),
            Shift::Lsr => v.wrapping_shr(a),
            Shift::Asr => ((v as i64).wrapping_shr(a)) as u64,
            Shift::Ror => v.rotate_right(a),
        }
    } else {
        let v = v as u32;
        (match shift {
            Shift::Lsl => v.wrapping_shl(a),
            Shift::Lsr => v.wrapping_shr(a),
            Shift::Asr => ((v as i32).wrapping_shr(a)) as u32,
            Shift::Ror => v.rotate_right(a),
        }) as u64
    }
}

#[inline]
const fn extended(v: u64, ext: Ext, amount: u8) -> u64 {
    let e = match ext {
        Ext::Unsigned(8) => v & 0xff,
        Ext::Unsigned(16) => v & 0xffff,
        Ext::Unsigned(32) => v & 0xffff_ffff,
        Ext::Signed(8) => v as u8 as i8 as i64 as u64,
        Ext::Signed(16) => v as u16 as i16 as i64 as u64,
        Ext::Signed(32) => v as u32 as i32 as i64 as u64,
        _ => v,
    };
    e.wrapping_shl(amount as u32)
}

impl Cpu {
    /// `x<n>`, with 31 as the zero register.
    #[inline]
    pub const fn xzr(&self, n: u8) -> u64 {
        if n >= 31 { 0 } else { self.x[n as usize] }
    }

    /// `x<n>`, with 31 as SP.
    #[inline]
    pub const fn xsp(&self, n: u8) -> u64 {
        if n >= 31 { self.sp } else { self.x[n as usize] }
    }

    #[inline]
    fn set_xzr(&mut self, n: u8, sf: bool, v: u64) {
        if let Some(r) = self.x.get_mut(n as usize) {
            *r = mask(sf, v);
        }
    }

    #[inline]
    pub(crate) fn set_xsp(&mut self, n: u8, sf: bool, v: u64) {
        match self.x.get_mut(n as usize) {
            Some(r) => *r = mask(sf, v),
            None => self.sp = mask(sf, v),
        }
    }
}

/// Executes `op`, the instruction at `cpu.pc`: all or nothing.
pub fn execute(cpu: &mut Cpu, op: &Op, mem: &mut impl Memory) -> Result<(), Stop> {
    let next = cpu.pc.wrapping_add(4);
    match *op {
        Op::Nop => {}
        Op::AddSubImm {
            sf,
            sub,
            flags,
            rd,
            rn,
            imm,
        } => {
            let (r, nzcv) = add_sub(sf, sub, cpu.xsp(rn), imm);
            if flags {
                cpu.nzcv = nzcv;
                cpu.set_xzr(rd, sf, r);
            } else {
                cpu.set_xsp(rd, sf, r);
            }
        }
        Op::LogicImm {
            sf,
            op,
            rd,
            rn,
            imm,
        } => {
            let r = logic_op(cpu, sf, op, cpu.xzr(rn), imm);
            if op == Logic::Ands {
                cpu.set_xzr(rd, sf, r);
            } else {
                cpu.set_xsp(rd, sf, r);
            }
        }
        Op::MoveWide {
            sf,
            opc,
            rd,
            imm16,
            shift,
        } => {
            let v = (imm16 as u64) << shift;
            let r = match opc {
                0 => !v,
                2 => v,
                _ => (cpu.xzr(rd) & !(0xffffu64 << shift)) | v,
            };
            cpu.set_xzr(rd, sf, r);
        }
        Op::Adr { page, rd, offset } => {
            let r = if page {
                (cpu.pc & !0xfff).wrapping_add((offset as u64) << 12)
            } else {
                cpu.pc.wrapping_add(offset as u64)
            };
            cpu.set_xzr(rd, true, r);
        }
        Op::LogicReg {
            sf,
            op,
            invert,
            rd,
            rn,
            rm,
            shift,
            amount,
        } => {
            let mut b = shifted(sf, cpu.xzr(rm), shift, amount);
            if invert {
                b = !b;
            }
            let r = logic_op(cpu, sf, op, cpu.xzr(rn), b);
            cpu.set_xzr(rd, sf, r);
        }
        Op::AddSubReg {
            sf,
            sub,
            flags,
            rd,
            rn,
            rm,
            shift,
            amount,
        } => {
            let b = shifted(sf, cpu.xzr(rm), shift, amount);
            let (r, nzcv) = add_sub(sf, sub, cpu.xzr(rn), b);
            if flags {
                cpu.nzcv = nzcv;
            }
            cpu.set_xzr(rd, sf, r);
        }
        Op::AddSubExt {
            sf,
            sub,
            flags,
            rd,
            rn,
            rm,
            ext,
            amount,
        } => {
            let b = extended(cpu.xzr(rm), ext, amount);
            let (r, nzcv) = add_sub(sf, sub, cpu.xsp(rn), b);
            if flags {
                cpu.nzcv = nzcv;
                cpu.set_xzr(rd, sf, r);
            } else {
                cpu.set_xsp(rd, sf, r);
            }
        }
        Op::Branch { link, offset } => {
            if link {
                cpu.x[30] = next;
            }
            cpu.pc = cpu.pc.wrapping_add(offset as u64);
            return Ok(());
        }
        Op::BranchCond { cond, offset } => {
            cpu.pc = if condition_holds(cond, cpu.nzcv) {
                cpu.pc.wrapping_add(offset as u64)
            } else {
                next
            };
            return Ok(());
        }
        Op::CompareBranch {
            sf,
            nonzero,
            rt,
            offset,
        } => {
            let zero = mask(sf, cpu.xzr(rt)) == 0;
            cpu.pc = if zero != nonzero {
                cpu.pc.wrapping_add(offset as u64)
            } else {
                next
            };
            return Ok(());
        }
        Op::TestBranch {
            nonzero,
            bit,
            rt,
            offset,
        } => {
            let set = (cpu.xzr(rt) >> (bit & 63)) & 1 == 1;
            cpu.pc = if set == nonzero {
                cpu.pc.wrapping_add(offset as u64)
            } else {
                next
            };
            return Ok(());
        }
        Op::BranchReg { link, rn } => {
            let target = cpu.xzr(rn);
            if link {
                cpu.x[30] = next;
            }
            cpu.pc = target;
            return Ok(());
        }
        Op::Mem(ref m) => mem_op(cpu, m, mem)?,
    }
    cpu.pc = next;
    Ok(())
}

/// `a + b` or `a - b` and its NZCV: AddWithCarry(a, b, 0) or AddWithCarry(a, NOT b, 1), without
/// the general carry-in (the spec tests hold it to [`add_with_carry`]).
#[inline]
pub const fn add_sub(sf: bool, sub: bool, a: u64, b: u64) -> (u64, u8) {
    // Carry is NOT borrow for a subtraction; overflow: the operands' signs (b's inverted for a
    // subtraction) agree and the result's differs.
    let (r, carry, v) = if sf {
        if sub {
            let (r, borrow) = a.overflowing_sub(b);
            (r, !borrow, ((a ^ b) & (a ^ r)) >> 63)
        } else {
            let (r, c) = a.overflowing_add(b);
            (r, c, (!(a ^ b) & (a ^ r)) >> 63)
        }
    } else {
        let (a, b) = (a as u32, b as u32);
        let (r, c, v) = if sub {
            let (r, borrow) = a.overflowing_sub(b);
            (r, !borrow, ((a ^ b) & (a ^ r)) >> 31)
        } else {
            let (r, c) = a.overflowing_add(b);
            (r, c, (!(a ^ b) & (a ^ r)) >> 31)
        };
        (r as u64, c, v as u64)
    };
    let top = if sf { 63 } else { 31 };
    let nzcv =
        ((r >> top) as u8 & 1) << 3 | ((r == 0) as u8) << 2 | (carry as u8) << 1 | (v as u8 & 1);
    (r, nzcv)
}

#[inline]
fn logic_op(cpu: &mut Cpu, sf: bool, op: Logic, a: u64, b: u64) -> u64 {
    let r = mask(
        sf,
        match op {
            Logic::And | Logic::Ands => a & b,
            Logic::Orr => a | b,
            Logic::Eor => a ^ b,
        },
    );
    if op == Logic::Ands {
        let top = if sf { 63 } else { 31 };
        cpu.nzcv = if (r >> top) & 1 == 1 { flag::N } else { 0 } | if r == 0 { flag::Z } else { 0 };
    }
    r
}

#[inline]
fn mem_op(cpu: &mut Cpu, m: &MemInsn, mem: &mut impl Memory) -> Result<(), Stop> {
    let base = cpu.xsp(m.rn);
    if m.rn == 31 && base & 15 != 0 {
        return Err(Stop::SpAlignment);
    }
    let offset = match m.offset {
        Offset::Imm(i) => i as u64,
        Offset::Reg { rm, extend, shift } => extend.apply(cpu.xzr(rm), shift),
    };
    let (addr, updated) = match m.writeback {
        Writeback::None => (base.wrapping_add(offset), None),
        Writeback::Pre => {
            let a = base.wrapping_add(offset);
            (a, Some(a))
        }
        Writeback::Post => (base, Some(base.wrapping_add(offset))),
    };
    let sf = m.width == RegWidth::X;
    let size = m.size;
    match (m.dir, m.rt2) {
        (Direction::Load, None) => {
            let raw = mem.load_small(addr, size)?;
            cpu.set_xzr(m.rt, sf, m.load_value(insn::truncate(raw, size)));
        }
        (Direction::Store, None) => {
            mem.store_small(addr, size, insn::truncate(cpu.xzr(m.rt), size))?;
        }
        (Direction::Load, Some(rt2)) => {
            let raw = mem.load(addr, m.access_len())?;
            let lo = m.load_value(insn::truncate(raw as u64, size));
            let hi = m.load_value(insn::truncate((raw >> (size as u32 * 8)) as u64, size));
            cpu.set_xzr(m.rt, sf, lo);
            cpu.set_xzr(rt2, sf, hi);
        }
        (Direction::Store, Some(rt2)) => {
            let lo = insn::truncate(cpu.xzr(m.rt), size) as u128;
            let hi = insn::truncate(cpu.xzr(rt2), size) as u128;
            mem.store(addr, m.access_len(), lo | hi << (size as u32 * 8))?;
        }
    }
    if let Some(a) = updated {
        cpu.set_xsp(m.rn, true, a);
    }
    Ok(())
}

/// Fetches, decodes and executes the instruction at `cpu.pc`: all or nothing.
pub fn step(cpu: &mut Cpu, features: Features, mem: &mut impl Memory) -> Result<(), Stop> {
    if cpu.pc & 3 != 0 {
        return Err(Stop::Fetch(cpu.pc));
    }
    let w = mem.fetch(cpu.pc)?;
    let op = decode(w, features)?;
    execute(cpu, &op, mem)
}

/// The most instructions one block of a [`DecodeCache`] holds.
pub const MAX_BLOCK: usize = 32;

/// One block of a [`DecodeCache`]: the decoded instructions from its address on, up to and
/// including the first unconditional branch (a conditional one taken leaves the block early),
/// to the end of the page, or [`MAX_BLOCK`] of them.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Its address plus one (1 modulo 4), 0 for an empty entry.
    tag: u64,
    /// Its first instruction in the pool.
    start: u16,
    /// Its instructions.
    len: u16,
    /// The pool generation its instructions belong to (older ones were dropped) in the high
    /// half, the run that last compared its words with memory and found them unchanged in the
    /// low half: current when it equals the cache's [`DecodeCache::stamp`].
    stamp: u64,
}

/// An empty entry.
const NO_BLOCK: Block = Block {
    tag: 0,
    start: 0,
    len: 0,
    stamp: 0,
};

/// Decoded code kept across runs, as blocks of straight-line instructions: a pool of `N`
/// decoded instructions (at least 1), filled in order and dropped as a whole when full, and
/// `B` block entries (an even number, at least 2) found by their address in sets of two (a
/// block decoded last goes first in its set, so two blocks of a loop that share a set both
/// stay).
///
/// A run executes a block's instructions one after another without looking each up. A block
/// is trusted without a fetch only in the run that last checked it: a later run fetches its
/// words once and compares them with the ones it was decoded from, so code the guest changed
/// between runs is decoded again.
#[derive(Debug, Clone)]
pub struct DecodeCache<const N: usize, const B: usize = 64> {
    ops: [Op; N],
    /// The same instructions in their specialized forms.
    uops: [Uop; N],
    words: [u32; N],
    blocks: [Block; B],
    /// Instructions of the pool in use.
    used: usize,
    /// The pool's generation: each time it is dropped, one more.
    generation: u32,
    /// The current run's number (0: none yet).
    run: u32,
    /// The CPU the instructions were decoded for.
    features: Features,
    /// Instructions decoded (the misses), for statistics.
    pub decoded: u64,
    /// Times the pool was full and dropped, for statistics.
    pub flushes: u64,
}

impl<const N: usize, const B: usize> DecodeCache<N, B> {
    /// An empty cache for a CPU with `features`.
    pub const fn new(features: Features) -> Self {
        const {
            assert!(N >= 1 && N <= u16::MAX as usize && B >= 2 && B.is_multiple_of(2));
        };
        DecodeCache {
            ops: [Op::Nop; N],
            uops: [Uop::GENERIC; N],
            words: [0; N],
            blocks: [NO_BLOCK; B],
            used: 0,
            generation: 1,
            run: 0,
            features,
            decoded: 0,
            flushes: 0,
        }
    }

    /// What a block checked in this run has for its stamp.
    #[inline(always)]
    const fn stamp(&self) -> u64 {
        (self.generation as u64) << 32 | self.run as u64
    }

    /// The first of the two entries of the set for address `pc`.
    #[inline(always)]
    const fn set(pc: u64) -> usize {
        (((pc >> 2) ^ (pc >> 11)) as usize % (B / 2)) * 2
    }

    /// The pool range of the block at `pc`, checked in this run.
    #[inline(always)]
    fn block(&mut self, pc: u64, mem: &mut impl Memory) -> Result<(usize, usize), Stop> {
        let set = Self::set(pc);
        let (tag, stamp) = (pc.wrapping_add(1), self.stamp());
        match self.blocks.get(set..set + 2) {
            Some([a, _]) if a.tag == tag && a.stamp == stamp => {
                Ok((a.start as usize, a.len as usize))
            }
            Some([_, b]) if b.tag == tag && b.stamp == stamp => {
                Ok((b.start as usize, b.len as usize))
            }
            _ => self.fill(pc, set, mem),
        }
    }

    /// [`Self::block`] for a block not checked in this run, or not there: its words are
    /// fetched and compared, or it is decoded into the pool.
    #[inline(never)]
    fn fill(&mut self, pc: u64, set: usize, mem: &mut impl Memory) -> Result<(usize, usize), Stop> {
        if pc & 3 != 0 {
            return Err(Stop::Fetch(pc));
        }
        let tag = pc.wrapping_add(1);
        let generation = u64::from(self.generation);
        let way = (set..set + 2).find(|&i| {
            self.blocks
                .get(i)
                .is_some_and(|b| b.tag == tag && b.stamp >> 32 == generation)
        });
        if let Some(i) = way
            && let Some(b) = self.blocks.get(i).copied()
        {
            let (start, len) = (b.start as usize, b.len as usize);
            let same = mem.same_code(pc, self.words.get(start..start + len).unwrap_or(&[]))?;
            if same && len > 0 {
                let stamp = self.stamp();
                if let Some(b) = self.blocks.get_mut(i) {
                    b.stamp = stamp;
                }
                return Ok((start, len));
            }
        }
        // A block whose words changed is decoded again in its entry; a new one goes first in
        // its set, and the entry there moves to the second (whose block is dropped).
        let i = match way {
            Some(i) => i,
            None => {
                if let Some(pair) = self.blocks.get_mut(set..set + 2) {
                    pair[1] = pair[0];
                    pair[0] = NO_BLOCK;
                }
                set
            }
        };
        self.decode_block(pc, i, mem)
    }

    /// Decodes the block at `pc` into the pool (dropping the pool first if it is full)
    /// and enters it at `i`.
    fn decode_block(
        &mut self,
        pc: u64,
        i: usize,
        mem: &mut impl Memory,
    ) -> Result<(usize, usize), Stop> {
        if self.used >= N {
            self.used = 0;
            self.generation = self.generation.wrapping_add(1);
            self.flushes = self.flushes.wrapping_add(1);
            if self.generation == 0 {
                // Wrapped: no entry may pass as current.
                self.blocks = [NO_BLOCK; B];
                self.generation = 1;
            }
        }
        let start = self.used;
        let mut len = 0;
        // A block longer than the pool's room ends there; the next one starts after it.
        while len < MAX_BLOCK.min(N - start) {
            let at = pc.wrapping_add(4 * len as u64);
            // A block stays in its page (one translation, one check of the page's rights).
            if len > 0 && at & 0xfff == 0 {
                break;
            }
            let decoded = mem
                .fetch(at)
                .and_then(|w| Ok((w, decode(w, self.features)?)));
            let (w, op) = match decoded {
                Ok(d) => d,
                // The first instruction's stop is the run's; a later one ends the block
                // before it (the run stops there when it gets there).
                Err(stop) if len == 0 => return Err(stop),
                Err(_) => break,
            };
            let (Some(o), Some(u), Some(word)) = (
                self.ops.get_mut(start + len),
                self.uops.get_mut(start + len),
                self.words.get_mut(start + len),
            ) else {
                break;
            };
            *o = op;
            *u = specialize(&op, at);
            *word = w;
            len += 1;
            self.decoded = self.decoded.wrapping_add(1);
            if op.ends_block() {
                break;
            }
        }
        self.used = start + len;
        let stamp = self.stamp();
        if let Some(b) = self.blocks.get_mut(i) {
            *b = Block {
                tag: pc.wrapping_add(1),
                start: start as u16,
                len: len as u16,
                stamp,
            };
        }
        Ok((start, len))
    }
}

impl Op {
    /// Whether the instruction never goes on to the next one (B, BL, BR, BLR, RET): a block
    /// ends with it. A conditional branch does not end a block: taken, it leaves it early.
    #[inline]
    pub const fn ends_block(&self) -> bool {
        matches!(self, Op::Branch { .. } | Op::BranchReg { .. })
    }

    /// Whether the instruction may leave a block before its end (a conditional branch).
    #[inline]
    pub const fn may_leave_block(&self) -> bool {
        matches!(
            self,
            Op::BranchCond { .. } | Op::CompareBranch { .. } | Op::TestBranch { .. }
        )
    }
}

/// Runs at most `budget` instructions from `cpu.pc`; returns how many ran and why it stopped
/// ([`Stop::Budget`] when it ran them all). `cpu` holds the state after the last one that ran.
///
/// Code is fetched once per run and its decoding kept in `cache` (checked against the fetched
/// words in each later run), so `mem` must not let a store change an instruction the run may
/// fetch (refuse stores to executable memory; see [`Memory`]). Words after a branch-free
/// instruction may be fetched before they run (a block is decoded whole). The CPU's features
/// are the cache's ([`DecodeCache::new`]).
#[inline(never)]
pub fn run<const N: usize, const B: usize>(
    cpu: &mut Cpu,
    mem: &mut impl Memory,
    budget: u32,
    cache: &mut DecodeCache<N, B>,
) -> (u32, Stop) {
    cache.run = cache.run.wrapping_add(1).max(1);
    if cache.run == 1 {
        // The counter wrapped (or this is the first run): no entry may pass as checked.
        for b in cache.blocks.iter_mut() {
            b.stamp &= !0xffff_ffff;
        }
    }
    if budget == 0 {
        return (0, Stop::Budget);
    }
    let mut n = 0u32;
    loop {
        let (start, len) = match cache.block(cpu.pc, mem) {
            Ok(r) => r,
            Err(stop) => return (n, stop),
        };
        // What is left of the budget, at most the block.
        let end = start + len.min((budget - n) as usize);
        let (Some(uops), Some(ops)) = (cache.uops.get(start..end), cache.ops.get(start..end))
        else {
            return (n, Stop::Fetch(cpu.pc));
        };
        if uops.is_empty() {
            return (n, Stop::Fetch(cpu.pc));
        }
        if let Err(stop) = exec_block(cpu, mem, uops, ops, &mut n) {
            return (n, stop);
        }
        if n == budget {
            return (n, Stop::Budget);
        }
    }
}

/// `x<n>` for a specialized form (whose registers are below 31).
#[inline(always)]
fn reg(cpu: &Cpu, n: u8) -> u64 {
    cpu.x.get(n as usize).copied().unwrap_or(0)
}

/// Sets `x<n>` for a specialized form (whose registers are below 31).
#[inline(always)]
fn set_reg(cpu: &mut Cpu, n: u8, v: u64) {
    if let Some(r) = cpu.x.get_mut(n as usize) {
        *r = v;
    }
}

/// A specialized load of `L` bytes (the uop at `here`): all or nothing, `cpu.pc` at `here` when
/// it stops.
#[inline(always)]
fn ldr<const L: u8>(cpu: &mut Cpu, mem: &mut impl Memory, u: &Uop, here: u64) -> Result<(), Stop> {
    let addr = reg(cpu, u.b).wrapping_add(u.imm);
    match mem.load_fixed::<L>(addr) {
        Ok(v) => {
            set_reg(cpu, u.a, insn::truncate(v, L));
            Ok(())
        }
        Err(stop) => {
            cpu.pc = here;
            Err(stop)
        }
    }
}

/// A specialized pair's address and its base after writeback (`post`: the kind whose address
/// is the base itself); SP as the base must be 16-byte aligned (`cpu.pc` at `here` if not).
#[inline(always)]
fn pair_address(cpu: &mut Cpu, u: &Uop, post: Kind, here: u64) -> Result<(u64, u64), Stop> {
    let base = cpu.xsp(u.b);
    if u.b == 31 && base & 15 != 0 {
        cpu.pc = here;
        return Err(Stop::SpAlignment);
    }
    let moved = base.wrapping_add(u.imm);
    Ok((if u.kind == post { base } else { moved }, moved))
}

/// N and Z of a logical result whose sign bit is `top`; C and V clear.
#[inline(always)]
const fn nz(r: u64, top: u32) -> u8 {
    ((r >> top) as u8 & 1) << 3 | ((r == 0) as u8) << 2
}

/// Executes the block at `cpu.pc`, `uops` with their `ops`, in order (an unconditional branch
/// is only ever the last; a conditional one taken leaves early), counting each in `n`; on a
/// stop, `cpu` is at the instruction that stopped, with nothing of it done.
#[inline(always)]
fn exec_block(
    cpu: &mut Cpu,
    mem: &mut impl Memory,
    uops: &[Uop],
    ops: &[Op],
    n: &mut u32,
) -> Result<(), Stop> {
    let base = cpu.pc;
    let len = uops.len();
    let mut next = base.wrapping_add(4 * len as u64);
    for (i, (u, op)) in uops.iter().zip(ops).enumerate() {
        let here = base.wrapping_add(4 * i as u64);
        match u.kind {
            Kind::Generic => {
                cpu.pc = here;
                execute(cpu, op, mem)?;
                if i + 1 == len {
                    next = cpu.pc;
                } else if op.may_leave_block() && cpu.pc != here.wrapping_add(4) {
                    *n += 1;
                    return Ok(());
                }
            }
            Kind::Nop => {}
            Kind::SetX => set_reg(cpu, u.a, u.imm),
            Kind::MovX => set_reg(cpu, u.a, reg(cpu, u.b)),
            Kind::MovW => set_reg(cpu, u.a, reg(cpu, u.b) & 0xffff_ffff),
            Kind::AddX => set_reg(cpu, u.a, reg(cpu, u.b).wrapping_add(u.imm)),
            Kind::AddW => set_reg(cpu, u.a, reg(cpu, u.b).wrapping_add(u.imm) & 0xffff_ffff),
            Kind::AddSp => {
                let v = cpu.xsp(u.b).wrapping_add(u.imm);
                cpu.set_xsp(u.a, true, v);
            }
            Kind::AddRegX => {
                let v = reg(cpu, u.b).wrapping_add(reg(cpu, u.c).wrapping_shl(u.imm as u32));
                set_reg(cpu, u.a, v);
            }
            Kind::AddRegW => {
                let v = reg(cpu, u.b).wrapping_add(reg(cpu, u.c).wrapping_shl(u.imm as u32));
                set_reg(cpu, u.a, v & 0xffff_ffff);
            }
            Kind::EorX => set_reg(cpu, u.a, reg(cpu, u.b) ^ reg(cpu, u.c)),
            Kind::EorW => set_reg(cpu, u.a, (reg(cpu, u.b) ^ reg(cpu, u.c)) & 0xffff_ffff),
            Kind::LdrReg => {
                let offset = reg(cpu, u.imm as u8 & 31).wrapping_shl((u.imm >> 8) as u32 & 3);
                let addr = reg(cpu, u.b).wrapping_add(offset);
                match mem.load_small(addr, u.c) {
                    Ok(v) => set_reg(cpu, u.a, insn::truncate(v, u.c)),
                    Err(stop) => {
                        cpu.pc = here;
                        return Err(stop);
                    }
                }
            }
            Kind::CmpX => cpu.nzcv = add_sub(true, true, reg(cpu, u.b), u.imm).1,
            Kind::CmpW => cpu.nzcv = add_sub(false, true, reg(cpu, u.b), u.imm).1,
            Kind::CmpRegX => cpu.nzcv = add_sub(true, true, reg(cpu, u.b), reg(cpu, u.c)).1,
            Kind::CmpRegW => cpu.nzcv = add_sub(false, true, reg(cpu, u.b), reg(cpu, u.c)).1,
            Kind::And => set_reg(cpu, u.a, reg(cpu, u.b) & u.imm),
            Kind::TstX => cpu.nzcv = nz(reg(cpu, u.b) & u.imm, 63),
            Kind::TstW => cpu.nzcv = nz(reg(cpu, u.b) & u.imm & 0xffff_ffff, 31),
            Kind::B => next = u.imm,
            Kind::Bl => {
                set_reg(cpu, 30, here.wrapping_add(4));
                next = u.imm;
            }
            // A taken conditional branch leaves the block here.
            Kind::BCond => {
                if condition_holds(u.c, cpu.nzcv) {
                    *n += 1;
                    cpu.pc = u.imm;
                    return Ok(());
                }
            }
            Kind::Cbz => {
                let v = mask(u.b == 1, reg(cpu, u.a));
                if (v != 0) == (u.c == 1) {
                    *n += 1;
                    cpu.pc = u.imm;
                    return Ok(());
                }
            }
            Kind::Tbz => {
                if (reg(cpu, u.a) >> (u.b & 63)) & 1 == u64::from(u.c) {
                    *n += 1;
                    cpu.pc = u.imm;
                    return Ok(());
                }
            }
            Kind::Br => {
                let target = reg(cpu, u.a);
                if u.c == 1 {
                    set_reg(cpu, 30, here.wrapping_add(4));
                }
                next = target;
            }
            Kind::Ldr1 => ldr::<1>(cpu, mem, u, here)?,
            Kind::Ldr2 => ldr::<2>(cpu, mem, u, here)?,
            Kind::Ldr4 => ldr::<4>(cpu, mem, u, here)?,
            Kind::Ldr8 => ldr::<8>(cpu, mem, u, here)?,
            Kind::Str => {
                let addr = reg(cpu, u.b).wrapping_add(u.imm);
                let v = insn::truncate(cpu.xzr(u.a), u.c);
                if let Err(stop) = mem.store_small(addr, u.c, v) {
                    cpu.pc = here;
                    return Err(stop);
                }
            }
            Kind::Stp | Kind::StpPre | Kind::StpPost => {
                let (at, moved) = pair_address(cpu, u, Kind::StpPost, here)?;
                if let Err(stop) = mem.store_pair(at, cpu.xzr(u.a), cpu.xzr(u.c)) {
                    cpu.pc = here;
                    return Err(stop);
                }
                if u.kind != Kind::Stp {
                    cpu.set_xsp(u.b, true, moved);
                }
            }
            Kind::Ldp | Kind::LdpPre | Kind::LdpPost => {
                let (at, moved) = pair_address(cpu, u, Kind::LdpPost, here)?;
                match mem.load_pair(at) {
                    Ok((lo, hi)) => {
                        set_reg(cpu, u.a, lo);
                        set_reg(cpu, u.c, hi);
                    }
                    Err(stop) => {
                        cpu.pc = here;
                        return Err(stop);
                    }
                }
                if u.kind != Kind::Ldp {
                    cpu.set_xsp(u.b, true, moved);
                }
            }
            Kind::LdrPost => {
                let at = reg(cpu, u.b);
                match mem.load_small(at, u.c) {
                    Ok(v) => {
                        set_reg(cpu, u.a, insn::truncate(v, u.c));
                        set_reg(cpu, u.b, at.wrapping_add(u.imm));
                    }
                    Err(stop) => {
                        cpu.pc = here;
                        return Err(stop);
                    }
                }
            }
        }
        *n += 1;
    }
    cpu.pc = next;
    Ok(())
}
