//! Specialized forms of the interpreter's most frequent instructions: what the blocks of
//! [`crate::interp::DecodeCache`] execute.
//!
//! [`crate::interp::decode`] gives an [`Op`] that says everything an instruction may do, and
//! [`crate::interp::execute`] does it, deciding each time between 32 and 64 bits, flags or none,
//! SP or the zero register, and every addressing mode. Most instructions a console loop runs are
//! the same few simple forms (a register move, an add of a constant, a compare, a load at a
//! constant offset, a branch), so a block also keeps each one as a [`Uop`]: the form, its
//! registers (never 31 in a specialized form) and one precomputed value (a branch's target, an
//! ADRP's page, a MOVZ's constant). [`specialize`] makes them; anything else stays
//! [`Kind::Generic`] and runs through `execute`. The property tests hold a run over uops to the
//! steps of `execute` it replaces (`vmm/core/tests/interp_spec.rs`).

use crate::insn::{Direction, Extend, Offset, RegWidth, Writeback};
use crate::interp::{Logic, Op, Shift, mask};

/// A specialized form. Registers named `a`, `b`, `c` are below 31 unless a form says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Not specialized: the block's [`Op`] runs through [`crate::interp::execute`].
    Generic,
    /// No architectural effect.
    Nop,
    /// `x[a] = imm` (MOVZ, MOVN, ADR, ADRP: the value is known when the block is decoded).
    SetX,
    /// `x[a] = x[b]` (ORR Xd, XZR, Xm).
    MovX,
    /// `x[a] = x[b]` zero-extended from 32 bits (ORR Wd, WZR, Wm).
    MovW,
    /// `x[a] = x[b] + imm` (ADD/SUB immediate without flags; a subtraction's constant negated).
    AddX,
    /// The same where `a` or `b` is 31: SP (`mov x29, sp`, `sub sp, sp, #n`).
    AddSp,
    /// `x[a] = x[b] + (x[c] << imm)` (ADD shifted register, LSL, without flags), 64-bit.
    AddRegX,
    /// The same on 32 bits, zero-extended.
    AddRegW,
    /// `x[a] = x[b] ^ x[c]` (EOR register, no shift), 64-bit.
    EorX,
    /// The same on 32 bits, zero-extended.
    EorW,
    /// `x[a] =` the `c` bytes at `x[b] + (x[imm & 31] << (imm >> 8))`, zero-extended (LDR with a
    /// register offset, LSL).
    LdrReg,
    /// `x[a] = (x[b] + imm)` zero-extended from 32 bits.
    AddW,
    /// NZCV of `x[b] - imm` (CMP immediate, 64-bit).
    CmpX,
    /// NZCV of `x[b] - imm` on 32 bits.
    CmpW,
    /// NZCV of `x[b] - x[c]` (CMP register, no shift), 64-bit.
    CmpRegX,
    /// NZCV of `x[b] - x[c]` on 32 bits.
    CmpRegW,
    /// `x[a] = x[b] & imm` (AND immediate; a 32-bit form's mask has no upper bits).
    And,
    /// NZCV of `x[b] & imm` (TST immediate), 64-bit.
    TstX,
    /// NZCV of `x[b] & imm` on 32 bits.
    TstW,
    /// `pc = imm` (B).
    B,
    /// `x30 = pc + 4; pc = imm` (BL).
    Bl,
    /// `pc = imm` if condition `c` holds (B.cond).
    BCond,
    /// CBZ (`c` = 0) or CBNZ (`c` = 1) on `x[a]`, 64-bit if `b` = 1: `pc = imm` when taken.
    Cbz,
    /// TBZ (`c` = 0) or TBNZ (`c` = 1) on bit `b` of `x[a]`: `pc = imm` when taken.
    Tbz,
    /// `pc = x[a]` (BR, RET), and `x30 = pc + 4` first if `c` = 1 (BLR).
    Br,
    /// `x[a] =` the byte at `x[b] + imm`, zero-extended (LDRB: an immediate offset, no
    /// writeback).
    Ldr1,
    /// The same for the halfword (LDRH).
    Ldr2,
    /// The same for the word (LDR Wt).
    Ldr4,
    /// The same for the doubleword (LDR Xt).
    Ldr8,
    /// The low `c` bytes of `x[a]` (31: the zero register) to `x[b] + imm` (STR, STRB, STRH).
    Str,
    /// `x[a] =` the `c` bytes at `x[b]`, zero-extended, then `x[b] += imm` (post-index; a and
    /// b differ).
    LdrPost,
    /// STP of `x[a]` and `x[c]` (31: the zero register) at base `b` (31: SP) plus `imm`, the
    /// base unchanged.
    Stp,
    /// STP with pre-index: the base becomes the address (the base is no transfer register).
    StpPre,
    /// STP with post-index: the base moves by `imm` after the store at it.
    StpPost,
    /// LDP into `x[a]` and `x[c]` (both below 31, different) from base `b` (31: SP) plus
    /// `imm`, the base unchanged.
    Ldp,
    /// LDP with pre-index.
    LdpPre,
    /// LDP with post-index.
    LdpPost,
}

/// One instruction in its specialized form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uop {
    /// The form.
    pub kind: Kind,
    /// First register operand.
    pub a: u8,
    /// Second register operand, or a bit number, or 1 for 64 bits.
    pub b: u8,
    /// Third operand: a register, a condition, a length, a flag.
    pub c: u8,
    /// The precomputed value.
    pub imm: u64,
}

impl Uop {
    /// The form for an instruction that is not specialized.
    pub const GENERIC: Uop = Uop::new(Kind::Generic, 0, 0, 0, 0);

    const fn new(kind: Kind, a: u8, b: u8, c: u8, imm: u64) -> Uop {
        Uop { kind, a, b, c, imm }
    }
}

/// The specialized form of `op`, the instruction at `pc` ([`Uop::GENERIC`] when it has none).
pub fn specialize(op: &Op, pc: u64) -> Uop {
    use Kind::*;
    let g = Uop::GENERIC;
    let target = |offset: i64| pc.wrapping_add(offset as u64);
    match *op {
        Op::Nop => Uop::new(Nop, 0, 0, 0, 0),
        Op::MoveWide {
            sf,
            opc,
            rd,
            imm16,
            shift,
        } if rd < 31 && (opc == 0 || opc == 2) => {
            let v = (imm16 as u64) << shift;
            let v = if opc == 0 { !v } else { v };
            Uop::new(SetX, rd, 0, 0, mask(sf, v))
        }
        Op::Adr { page, rd, offset } if rd < 31 => {
            let v = if page {
                (pc & !0xfff).wrapping_add((offset as u64) << 12)
            } else {
                pc.wrapping_add(offset as u64)
            };
            Uop::new(SetX, rd, 0, 0, v)
        }
        Op::LogicReg {
            sf,
            op: Logic::Orr,
            invert: false,
            rd,
            rn: 31,
            rm,
            amount: 0,
            ..
        } if rd < 31 && rm < 31 => Uop::new(if sf { MovX } else { MovW }, rd, rm, 0, 0),
        Op::AddSubImm {
            sf,
            sub,
            flags: false,
            rd,
            rn,
            imm,
        } if rd < 31 && rn < 31 => {
            let imm = if sub { imm.wrapping_neg() } else { imm };
            Uop::new(if sf { AddX } else { AddW }, rd, rn, 0, imm)
        }
        Op::AddSubImm {
            sf: true,
            sub,
            flags: false,
            rd,
            rn,
            imm,
        } => Uop::new(AddSp, rd, rn, 0, if sub { imm.wrapping_neg() } else { imm }),
        Op::AddSubImm {
            sf,
            sub: true,
            flags: true,
            rd: 31,
            rn,
            imm,
        } if rn < 31 => Uop::new(if sf { CmpX } else { CmpW }, 0, rn, 0, imm),
        Op::AddSubReg {
            sf,
            sub: false,
            flags: false,
            rd,
            rn,
            rm,
            shift: Shift::Lsl,
            amount,
        } if rd < 31 && rn < 31 && rm < 31 => Uop::new(
            if sf { AddRegX } else { AddRegW },
            rd,
            rn,
            rm,
            amount as u64,
        ),
        Op::LogicReg {
            sf,
            op: Logic::Eor,
            invert: false,
            rd,
            rn,
            rm,
            amount: 0,
            ..
        } if rd < 31 && rn < 31 && rm < 31 => Uop::new(if sf { EorX } else { EorW }, rd, rn, rm, 0),
        Op::AddSubReg {
            sf,
            sub: true,
            flags: true,
            rd: 31,
            rn,
            rm,
            amount: 0,
            ..
        } if rn < 31 && rm < 31 => Uop::new(if sf { CmpRegX } else { CmpRegW }, 0, rn, rm, 0),
        Op::LogicImm {
            op: Logic::And,
            rd,
            rn,
            imm,
            ..
        } if rd < 31 && rn < 31 => Uop::new(And, rd, rn, 0, imm),
        Op::LogicImm {
            sf,
            op: Logic::Ands,
            rd: 31,
            rn,
            imm,
        } if rn < 31 => Uop::new(if sf { TstX } else { TstW }, 0, rn, 0, imm),
        Op::Branch { link, offset } => Uop::new(if link { Bl } else { B }, 0, 0, 0, target(offset)),
        Op::BranchCond { cond, offset } => Uop::new(BCond, 0, 0, cond, target(offset)),
        Op::CompareBranch {
            sf,
            nonzero,
            rt,
            offset,
        } if rt < 31 => Uop::new(Cbz, rt, sf as u8, nonzero as u8, target(offset)),
        Op::TestBranch {
            nonzero,
            bit,
            rt,
            offset,
        } if rt < 31 => Uop::new(Tbz, rt, bit & 63, nonzero as u8, target(offset)),
        Op::BranchReg { link, rn } if rn < 31 => Uop::new(Br, rn, 0, link as u8, 0),
        Op::Mem(m) => {
            let offset = match m.offset {
                Offset::Imm(i) => i,
                // A register offset shifted left (or not): single zero-extending loads only.
                Offset::Reg {
                    rm,
                    extend: Extend::Lsl,
                    shift,
                } if m.dir == Direction::Load
                    && m.rt2.is_none()
                    && !m.signed
                    && m.writeback == Writeback::None
                    && m.rt < 31
                    && m.rn < 31
                    && rm < 31
                    && matches!(
                        (m.width, m.size),
                        (RegWidth::W, 1 | 2 | 4) | (RegWidth::X, 8)
                    ) =>
                {
                    return Uop::new(LdrReg, m.rt, m.rn, m.size, (shift as u64) << 8 | rm as u64);
                }
                Offset::Reg { .. } => return g,
            };
            // Zero-extending single-register forms: a W destination of at most 4 bytes, or
            // an X destination of 8.
            let plain = match m.width {
                RegWidth::W => m.size <= 4,
                RegWidth::X => m.size == 8,
            };
            if let Some(rt2) = m.rt2 {
                // 64-bit pairs (the frame pushes and pops of every function).
                if m.size != 8 || m.signed || m.width != RegWidth::X {
                    return g;
                }
                let kind = match (m.dir, m.writeback) {
                    (Direction::Store, Writeback::None) => Stp,
                    (Direction::Store, Writeback::Pre) => StpPre,
                    (Direction::Store, Writeback::Post) => StpPost,
                    (Direction::Load, _) if m.rt >= 31 || rt2 >= 31 || m.rt == rt2 => return g,
                    (Direction::Load, Writeback::None) => Ldp,
                    (Direction::Load, Writeback::Pre) => LdpPre,
                    (Direction::Load, Writeback::Post) => LdpPost,
                };
                return Uop::new(kind, m.rt, m.rn, rt2, offset as u64);
            }
            if m.signed || !plain || m.rn >= 31 {
                return g;
            }
            match (m.dir, m.writeback) {
                (Direction::Load, Writeback::None) if m.rt < 31 => {
                    let kind = match m.size {
                        1 => Ldr1,
                        2 => Ldr2,
                        4 => Ldr4,
                        _ => Ldr8,
                    };
                    Uop::new(kind, m.rt, m.rn, m.size, offset as u64)
                }
                (Direction::Store, Writeback::None) => {
                    Uop::new(Str, m.rt, m.rn, m.size, offset as u64)
                }
                (Direction::Load, Writeback::Post) if m.rt < 31 && m.rt != m.rn => {
                    Uop::new(LdrPost, m.rt, m.rn, m.size, offset as u64)
                }
                _ => g,
            }
        }
        _ => g,
    }
}
