//! The interpreter's decoder checked against an independent disassembler (yaxpeax-arm 0.5), as
//! the load/store decoder is (insn_oracle.rs): for words generated inside every data-processing
//! and branch class it decodes (and arbitrary words), whenever it accepts a word, yaxpeax must
//! decode the same operation with the same registers, immediates, shifts and branch offsets; and
//! whenever yaxpeax decodes one of those operations, the interpreter must accept it too, except
//! for the encodings the Arm ARM reserves that yaxpeax takes (stated independently below).

use proptest::prelude::*;
use vmm_core::interp::{Ext, Features, Logic, Op, Shift, Stop, decode};
use yaxpeax_arch::{Arch, Decoder, U8Reader};
use yaxpeax_arm::armv8::a64::{ARMv8, Instruction, Opcode, Operand, ShiftStyle, SizeCode};

const A53: Features = Features {
    pauth: false,
    bti: false,
};

fn yax(w: u32) -> Option<Instruction> {
    let bytes = w.to_le_bytes();
    let mut reader = U8Reader::new(&bytes[..]);
    <ARMv8 as Arch>::Decoder::default().decode(&mut reader).ok()
}

fn reg(op: Operand) -> Option<(bool, u8)> {
    match op {
        Operand::Register(s, n) | Operand::RegisterOrSP(s, n) => Some((s == SizeCode::X, n as u8)),
        _ => None,
    }
}

fn style(s: Shift) -> ShiftStyle {
    match s {
        Shift::Lsl => ShiftStyle::LSL,
        Shift::Lsr => ShiftStyle::LSR,
        Shift::Asr => ShiftStyle::ASR,
        Shift::Ror => ShiftStyle::ROR,
    }
}

/// yaxpeax's opcode for ADD, ADDS, SUB, SUBS.
fn add_sub(sub: bool, flags: bool) -> Opcode {
    match (sub, flags) {
        (false, false) => Opcode::ADD,
        (false, true) => Opcode::ADDS,
        (true, false) => Opcode::SUB,
        (true, true) => Opcode::SUBS,
    }
}

/// Our decode of `w` agrees with yaxpeax's (`w` accepted by us).
fn agrees(w: u32, op: Op, y: &Instruction) -> Result<(), TestCaseError> {
    let o = y.operands;
    let what = format!("{w:#010x}: ours {op:?}, yaxpeax `{y}` {:?} {o:?}", y.opcode);
    match op {
        Op::Nop => {
            let ok = matches!(
                y.opcode,
                Opcode::HINT
                    | Opcode::PACIASP
                    | Opcode::AUTIASP
                    | Opcode::PACIBSP
                    | Opcode::AUTIBSP
                    | Opcode::PACIAZ
                    | Opcode::AUTIAZ
                    | Opcode::PACIBZ
                    | Opcode::AUTIBZ
                    | Opcode::DMB(_)
                    | Opcode::DSB(_)
                    | Opcode::ISB
                    // DSB #0 and DSB #4: speculation barriers, full barriers where unknown.
                    | Opcode::SSBB
                    | Opcode::PSSBB
            ) || format!("{y}").starts_with("bti");
            prop_assert!(ok, "{}", what);
        }
        Op::AddSubImm {
            sf,
            sub,
            flags,
            rd,
            rn,
            imm,
        } => {
            let want = add_sub(sub, flags);
            prop_assert_eq!(y.opcode, want, "{}", what);
            prop_assert_eq!(reg(o[0]), Some((sf, rd)), "{}", what);
            prop_assert_eq!(reg(o[1]), Some((sf, rn)), "{}", what);
            let v = match o[2] {
                Operand::Immediate(v) => v as u64,
                Operand::ImmShift(v, s) => (v as u64) << s,
                _ => u64::MAX,
            };
            prop_assert_eq!(v, imm, "{}", what);
        }
        Op::LogicImm {
            sf,
            op,
            rd,
            rn,
            imm,
        } => {
            let want = match op {
                Logic::And => Opcode::AND,
                Logic::Orr => Opcode::ORR,
                Logic::Eor => Opcode::EOR,
                Logic::Ands => Opcode::ANDS,
            };
            prop_assert_eq!(y.opcode, want, "{}", what);
            prop_assert_eq!(reg(o[0]), Some((sf, rd)), "{}", what);
            prop_assert_eq!(reg(o[1]), Some((sf, rn)), "{}", what);
            let v = match o[2] {
                Operand::Immediate(v) => v as u64,
                Operand::Imm64(v) => v,
                _ => !imm,
            };
            prop_assert_eq!(v, imm, "{}", what);
        }
        Op::MoveWide {
            sf,
            opc,
            rd,
            imm16,
            shift,
        } => {
            let want = match opc {
                0 => Opcode::MOVN,
                2 => Opcode::MOVZ,
                _ => Opcode::MOVK,
            };
            prop_assert_eq!(y.opcode, want, "{}", what);
            prop_assert_eq!(reg(o[0]), Some((sf, rd)), "{}", what);
            prop_assert_eq!(o[1], Operand::ImmShift(imm16, shift), "{}", what);
        }
        Op::Adr { page, rd, offset } => {
            prop_assert_eq!(
                y.opcode,
                if page { Opcode::ADRP } else { Opcode::ADR },
                "{}",
                what
            );
            prop_assert_eq!(reg(o[0]), Some((true, rd)), "{}", what);
            let want = if page { offset << 12 } else { offset };
            prop_assert_eq!(o[1], Operand::PCOffset(want), "{}", what);
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
            let want = match (op, invert) {
                (Logic::And, false) => Opcode::AND,
                (Logic::And, true) => Opcode::BIC,
                (Logic::Orr, false) => Opcode::ORR,
                (Logic::Orr, true) => Opcode::ORN,
                (Logic::Eor, false) => Opcode::EOR,
                (Logic::Eor, true) => Opcode::EON,
                (Logic::Ands, false) => Opcode::ANDS,
                (Logic::Ands, true) => Opcode::BICS,
            };
            prop_assert_eq!(y.opcode, want, "{}", what);
            prop_assert_eq!(reg(o[0]), Some((sf, rd)), "{}", what);
            prop_assert_eq!(reg(o[1]), Some((sf, rn)), "{}", what);
            let size = if sf { SizeCode::X } else { SizeCode::W };
            prop_assert_eq!(
                o[2],
                Operand::RegShift(style(shift), amount, size, rm as u16),
                "{}",
                what
            );
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
            let want = add_sub(sub, flags);
            prop_assert_eq!(y.opcode, want, "{}", what);
            prop_assert_eq!(reg(o[0]), Some((sf, rd)), "{}", what);
            prop_assert_eq!(reg(o[1]), Some((sf, rn)), "{}", what);
            let size = if sf { SizeCode::X } else { SizeCode::W };
            prop_assert_eq!(
                o[2],
                Operand::RegShift(style(shift), amount, size, rm as u16),
                "{}",
                what
            );
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
            let want = add_sub(sub, flags);
            prop_assert_eq!(y.opcode, want, "{}", what);
            prop_assert_eq!(reg(o[0]), Some((sf, rd)), "{}", what);
            prop_assert_eq!(reg(o[1]), Some((sf, rn)), "{}", what);
            let Operand::RegShift(s, a, size, m) = o[2] else {
                return Err(TestCaseError::fail(what));
            };
            prop_assert_eq!((a, m as u8), (amount, rm), "{}", what);
            // The operand register is X only for the 64-bit extensions of a 64-bit operation.
            let wide = sf && matches!(ext, Ext::Unsigned(64) | Ext::Signed(64));
            prop_assert_eq!(size == SizeCode::X, wide, "{}", what);
            let want_style = match ext {
                Ext::Unsigned(8) => Some(ShiftStyle::UXTB),
                Ext::Unsigned(16) => Some(ShiftStyle::UXTH),
                Ext::Signed(8) => Some(ShiftStyle::SXTB),
                Ext::Signed(16) => Some(ShiftStyle::SXTH),
                Ext::Signed(32) => Some(ShiftStyle::SXTW),
                Ext::Signed(_) => Some(ShiftStyle::SXTX),
                // UXTW / UXTX: yaxpeax shows LSL where the Arm ARM's preferred form is LSL
                // (an SP operand), and sometimes elsewhere too.
                Ext::Unsigned(_) => None,
            };
            if let Some(st) = want_style {
                prop_assert_eq!(s, st, "{}", what);
            } else {
                prop_assert!(
                    matches!(s, ShiftStyle::UXTW | ShiftStyle::UXTX | ShiftStyle::LSL),
                    "{}",
                    what
                );
            }
        }
        Op::Branch { link, offset } => {
            prop_assert_eq!(
                y.opcode,
                if link { Opcode::BL } else { Opcode::B },
                "{}",
                what
            );
            prop_assert_eq!(o[0], Operand::PCOffset(offset), "{}", what);
        }
        Op::BranchCond { cond, offset } => {
            prop_assert_eq!(y.opcode, Opcode::Bcc(cond), "{}", what);
            prop_assert_eq!(o[0], Operand::PCOffset(offset), "{}", what);
        }
        Op::CompareBranch {
            sf,
            nonzero,
            rt,
            offset,
        } => {
            prop_assert_eq!(
                y.opcode,
                if nonzero { Opcode::CBNZ } else { Opcode::CBZ },
                "{}",
                what
            );
            prop_assert_eq!(reg(o[0]), Some((sf, rt)), "{}", what);
            prop_assert_eq!(o[1], Operand::PCOffset(offset), "{}", what);
        }
        Op::TestBranch {
            nonzero,
            bit,
            rt,
            offset,
        } => {
            prop_assert_eq!(
                y.opcode,
                if nonzero { Opcode::TBNZ } else { Opcode::TBZ },
                "{}",
                what
            );
            prop_assert_eq!(reg(o[0]).map(|r| r.1), Some(rt), "{}", what);
            prop_assert_eq!(o[1], Operand::Imm16(bit as u16), "{}", what);
            prop_assert_eq!(o[2], Operand::PCOffset(offset), "{}", what);
        }
        Op::BranchReg { link, rn } => {
            let ok = match y.opcode {
                Opcode::BR | Opcode::RET => !link,
                Opcode::BLR => link,
                _ => false,
            };
            prop_assert!(ok, "{}", what);
            prop_assert_eq!(reg(o[0]), Some((true, rn)), "{}", what);
        }
        // The load/store decoder has its own oracle test.
        Op::Mem(_) => {}
    }
    Ok(())
}

/// The operations the interpreter decodes, by yaxpeax's name, on general-purpose registers.
fn covered(y: &Instruction) -> bool {
    use Opcode::*;
    let gp = matches!(
        y.operands[0],
        Operand::Register(..) | Operand::RegisterOrSP(..) | Operand::PCOffset(_)
    );
    gp && matches!(
        y.opcode,
        ADD | ADDS
            | SUB
            | SUBS
            | AND
            | ANDS
            | ORR
            | EOR
            | BIC
            | BICS
            | ORN
            | EON
            | MOVZ
            | MOVN
            | MOVK
            | ADR
            | ADRP
            | B
            | BL
            | Bcc(_)
            | CBZ
            | CBNZ
            | TBZ
            | TBNZ
            | BR
            | BLR
            | RET
    )
}

/// Encodings the Arm ARM reserves that yaxpeax decodes anyway: a logical immediate whose
/// element is all ones (`imms` = `levels`), or with N = 1 in a 32-bit operation; an
/// extended-register ADD/SUB shifted by more than 4 (`imm3` > 4); a 32-bit shifted-register
/// operation shifted by 32 or more (`imm6` bit 5); a shifted-register ADD/SUB with shift type
/// 0b11; a 32-bit MOVZ/MOVN/MOVK at `hw` 2 or 3, and move wide's unallocated `opc` 0b01.
fn reserved_yaxpeax_takes(w: u32) -> bool {
    let sf = w >> 31 == 1;
    if w & 0x1fe0_0000 == 0x0b20_0000 && (w >> 10) & 7 > 4 {
        return true;
    }
    let shifted_reg = w & 0x1f00_0000 == 0x0a00_0000 || w & 0x1f20_0000 == 0x0b00_0000;
    if shifted_reg && !sf && (w >> 15) & 1 == 1 {
        return true;
    }
    if w & 0x1f20_0000 == 0x0b00_0000 && (w >> 22) & 3 == 3 {
        return true;
    }
    if w & 0x1f80_0000 == 0x1280_0000 && ((!sf && (w >> 22) & 1 == 1) || (w >> 29) & 3 == 1) {
        return true;
    }
    let logical_imm = w & 0x1f80_0000 == 0x1200_0000;
    if !logical_imm {
        return false;
    }
    let n = (w >> 22) & 1;
    let imms = (w >> 10) & 0x3f;
    let combined = (n << 6) | (!imms & 0x3f);
    if combined == 0 || (!sf && n == 1) {
        return true;
    }
    let len = 31 - combined.leading_zeros();
    let levels = (1 << len) - 1;
    len < 1 || imms & levels == levels
}

fn check(w: u32) -> Result<(), TestCaseError> {
    let y = yax(w);
    match decode(w, A53) {
        Ok(op) => {
            let Some(y) = y else {
                return Err(TestCaseError::fail(format!(
                    "{w:#010x}: we decode {op:?}, yaxpeax does not"
                )));
            };
            agrees(w, op, &y)
        }
        Err(Stop::Unsupported(_) | Stop::Unpredictable(_)) => {
            if let Some(y) = y
                && covered(&y)
            {
                prop_assert!(
                    reserved_yaxpeax_takes(w),
                    "{w:#010x}: yaxpeax decodes `{}` ({:?}), we refuse it",
                    y,
                    y.opcode
                );
            }
            Ok(())
        }
        Err(e) => Err(TestCaseError::fail(format!("{w:#010x}: decode gave {e:?}"))),
    }
}

/// Words inside each class the interpreter decodes: the fixed bits of the class, the rest random.
fn class_word() -> impl Strategy<Value = u32> {
    let classes: [(u32, u32); 14] = [
        (0x1f80_0000, 0x1100_0000), // ADD/SUB immediate
        (0x1f80_0000, 0x1200_0000), // logical immediate
        (0x1f80_0000, 0x1280_0000), // move wide
        (0x1f00_0000, 0x1000_0000), // ADR/ADRP
        (0x1f00_0000, 0x0a00_0000), // logical shifted register
        (0x1f20_0000, 0x0b00_0000), // ADD/SUB shifted register
        (0x1fe0_0000, 0x0b20_0000), // ADD/SUB extended register
        (0x7c00_0000, 0x1400_0000), // B, BL
        (0xff00_0010, 0x5400_0000), // B.cond
        (0x7e00_0000, 0x3400_0000), // CBZ/CBNZ
        (0x7e00_0000, 0x3600_0000), // TBZ/TBNZ
        (0xff9f_fc1f, 0xd61f_0000), // BR, BLR, RET (and the reserved opc values between)
        (0xffff_f01f, 0xd503_201f), // hints
        (0xffff_f01f, 0xd503_301f), // barriers
    ];
    (0..classes.len(), any::<u32>()).prop_map(move |(i, r)| {
        let (mask, value) = classes[i];
        (r & !mask) | value
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn decoder_agrees_with_yaxpeax_in_its_classes(w in class_word()) {
        check(w)?;
    }

    #[test]
    fn decoder_agrees_with_yaxpeax_on_any_word(w in any::<u32>()) {
        check(w)?;
    }
}

/// The hints' meaning depends on the CPU: with FEAT_PAuth (or FEAT_BTI) they are not NOPs,
/// and the interpreter refuses them.
#[test]
fn pointer_authentication_hints_are_nops_only_without_the_feature() {
    let paciasp = 0xd503_233f;
    let autiasp = 0xd503_23bf;
    let bti_c = 0xd503_245f;
    for w in [paciasp, autiasp] {
        assert_eq!(decode(w, A53), Ok(Op::Nop));
        let with = Features {
            pauth: true,
            bti: false,
        };
        assert_eq!(decode(w, with), Err(Stop::Unsupported(w)));
    }
    assert_eq!(decode(bti_c, A53), Ok(Op::Nop));
    let with_bti = Features {
        pauth: false,
        bti: true,
    };
    assert_eq!(decode(bti_c, with_bti), Err(Stop::Unsupported(bti_c)));
    // WFI, WFE, SEV and SB are not NOPs anywhere.
    for w in [0xd503_207f, 0xd503_205f, 0xd503_209f, 0xd503_30ff] {
        assert_eq!(decode(w, A53), Err(Stop::Unsupported(w)), "{w:#x}");
    }
}
