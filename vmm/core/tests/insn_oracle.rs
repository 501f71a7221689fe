//! The load/store decoder checked against an independent disassembler (yaxpeax-arm 0.5): for
//! encodings generated inside every instruction class (and arbitrary words), whenever our decoder
//! accepts, yaxpeax must agree on operation, registers, offset and writeback; and whenever yaxpeax
//! decodes one of the supported operations, our decoder must decode it identically, or reject it
//! as one of the documented CONSTRAINED UNPREDICTABLE cases.

use proptest::prelude::*;
use vmm_core::insn::{Direction, Extend, InsnError, MemInsn, Offset, RegWidth, Writeback, decode};
use yaxpeax_arch::{Arch, Decoder, U8Reader};
use yaxpeax_arm::armv8::a64::{ARMv8, Opcode, Operand, ShiftStyle, SizeCode};

/// yaxpeax's view of `w`, mapped to our representation; `None` when yaxpeax does not decode it
/// as a supported general-purpose load/store.
fn oracle(w: u32) -> Option<MemInsn> {
    let bytes = w.to_le_bytes();
    let mut reader = U8Reader::new(&bytes[..]);
    let inst = <ARMv8 as Arch>::Decoder::default()
        .decode(&mut reader)
        .ok()?;
    let ops = inst.operands;
    let width_size = |s: SizeCode| match s {
        SizeCode::W => (RegWidth::W, 4u8),
        SizeCode::X => (RegWidth::X, 8u8),
    };
    let addr = |op: Operand| -> Option<(u8, Offset, Writeback)> {
        Some(match op {
            Operand::RegPreIndex(n, imm, false) => {
                (n as u8, Offset::Imm(imm.into()), Writeback::None)
            }
            Operand::RegPreIndex(n, imm, true) => {
                (n as u8, Offset::Imm(imm.into()), Writeback::Pre)
            }
            Operand::RegPostIndex(n, imm) => (n as u8, Offset::Imm(imm.into()), Writeback::Post),
            Operand::RegRegOffset(n, m, index, style, amount) => {
                let extend = match (style, index) {
                    (ShiftStyle::UXTW, SizeCode::W) => Extend::Uxtw,
                    (ShiftStyle::LSL, SizeCode::X) => Extend::Lsl,
                    (ShiftStyle::SXTW, SizeCode::W) => Extend::Sxtw,
                    (ShiftStyle::SXTX, SizeCode::X) => Extend::Sxtx,
                    other => panic!("unexpected register offset {other:?} in {w:#010x}"),
                };
                (
                    n as u8,
                    Offset::Reg {
                        rm: m as u8,
                        extend,
                        shift: amount,
                    },
                    Writeback::None,
                )
            }
            _ => return None,
        })
    };
    use Direction::{Load, Store};
    let single = match inst.opcode {
        Opcode::STRB | Opcode::STURB => Some((Store, Some(1), false)),
        Opcode::LDRB | Opcode::LDURB => Some((Load, Some(1), false)),
        Opcode::LDRSB | Opcode::LDURSB => Some((Load, Some(1), true)),
        Opcode::STRH | Opcode::STURH => Some((Store, Some(2), false)),
        Opcode::LDRH | Opcode::LDURH => Some((Load, Some(2), false)),
        Opcode::LDRSH | Opcode::LDURSH => Some((Load, Some(2), true)),
        Opcode::LDRSW | Opcode::LDURSW => Some((Load, Some(4), true)),
        Opcode::STR | Opcode::STUR => Some((Store, None, false)),
        Opcode::LDR | Opcode::LDUR => Some((Load, None, false)),
        _ => None,
    };
    if let Some((dir, size, signed)) = single {
        let Operand::Register(sc, rt) = ops[0] else {
            return None;
        };
        let (rn, offset, writeback) = addr(ops[1])?;
        let (width, wsize) = width_size(sc);
        return Some(MemInsn {
            dir,
            size: size.unwrap_or(wsize),
            signed,
            width,
            rt: rt as u8,
            rt2: None,
            rn,
            offset,
            writeback,
        });
    }
    let (dir, signed) = match inst.opcode {
        Opcode::STP | Opcode::STNP => (Store, false),
        Opcode::LDP | Opcode::LDNP => (Load, false),
        Opcode::LDPSW => (Load, true),
        _ => return None,
    };
    let (Operand::Register(sc, rt), Operand::Register(sc2, rt2)) = (ops[0], ops[1]) else {
        return None;
    };
    assert_eq!(sc, sc2, "{w:#010x}");
    let (rn, offset, writeback) = addr(ops[2])?;
    let (width, size) = width_size(sc);
    Some(MemInsn {
        dir,
        size: if signed { 4 } else { size },
        signed,
        width,
        rt: rt as u8,
        rt2: Some(rt2 as u8),
        rn,
        offset,
        writeback,
    })
}

/// The CONSTRAINED UNPREDICTABLE cases the decoder documents as rejected, stated independently.
fn unpredictable(m: &MemInsn) -> bool {
    let wb = m.writeback != Writeback::None;
    let base_clash = m.rn != 31 && (m.rn == m.rt || m.rt2 == Some(m.rn));
    let pair_clash = m.dir == Direction::Load && m.rt2 == Some(m.rt);
    (wb && base_clash) || pair_clash
}

/// The whole property, for one word.
fn check(w: u32) -> Result<(), TestCaseError> {
    let ours = decode(w);
    match (ours, oracle(w)) {
        (Ok(m), Some(o)) => prop_assert_eq!(m, o, "{:#010x}", w),
        (Ok(m), None) => prop_assert!(false, "{w:#010x}: we decode {m:?}, yaxpeax does not"),
        (Err(InsnError::Unpredictable(x)), Some(o)) => {
            prop_assert_eq!(x, w);
            prop_assert!(
                unpredictable(&o),
                "{w:#010x}: rejected {o:?} as unpredictable"
            );
        }
        (Err(InsnError::Unpredictable(_)), None) => {
            prop_assert!(
                false,
                "{w:#010x}: unpredictable, but yaxpeax does not decode it"
            )
        }
        (Err(InsnError::Unsupported(x)), Some(o)) => {
            prop_assert!(
                false,
                "{w:#010x} ({x:#x}): yaxpeax decodes {o:?}, we do not"
            )
        }
        (Err(InsnError::Unsupported(x)), None) => prop_assert_eq!(x, w),
    }
    Ok(())
}

#[test]
fn known_encodings() {
    // stp x29, x30, [sp, #-16]!
    assert_eq!(
        decode(0xa9bf_7bfd),
        Ok(MemInsn {
            dir: Direction::Store,
            size: 8,
            signed: false,
            width: RegWidth::X,
            rt: 29,
            rt2: Some(30),
            rn: 31,
            offset: Offset::Imm(-16),
            writeback: Writeback::Pre,
        })
    );
    // ldp x29, x30, [sp], #16
    let m = decode(0xa8c1_7bfd).unwrap();
    assert_eq!(
        (m.dir, m.writeback, m.offset, m.rt2),
        (Direction::Load, Writeback::Post, Offset::Imm(16), Some(30))
    );
    // ldr w1, [x0]
    let m = decode(0xb940_0001).unwrap();
    assert_eq!(
        (m.size, m.width, m.rt, m.rn, m.offset),
        (4, RegWidth::W, 1, 0, Offset::Imm(0))
    );
    // ldrsb x3, [x4, #-1]!
    let m = decode(0x389f_fc83).unwrap();
    assert_eq!(
        (m.size, m.signed, m.width, m.offset, m.writeback),
        (1, true, RegWidth::X, Offset::Imm(-1), Writeback::Pre)
    );
    // ldr x0, [x1, x2, lsl #3]
    let m = decode(0xf862_7820).unwrap();
    assert_eq!(
        m.offset,
        Offset::Reg {
            rm: 2,
            extend: Extend::Lsl,
            shift: 3
        }
    );
    // ldxr x0, [x1]; ldar x0, [x1]; ldr q0, [x0]; ldadd x0, x1, [x2]: unsupported.
    for w in [0xc85f_7c20, 0xc8df_fc20, 0x3dc0_0000, 0xf820_0041] {
        assert_eq!(decode(w), Err(InsnError::Unsupported(w)), "{w:#x}");
    }
    // ldr x0, [x0], #8 (writeback into the loaded register) and ldp x1, x1, [x2].
    assert_eq!(
        decode(0xf840_8400),
        Err(InsnError::Unpredictable(0xf840_8400))
    );
    assert_eq!(
        decode(0xa940_0441),
        Err(InsnError::Unpredictable(0xa940_0441))
    );
    for w in [
        0xa9bf_7bfd,
        0xa8c1_7bfd,
        0xb940_0001,
        0x389f_fc83,
        0xf862_7820,
        0xf840_8400,
    ] {
        check(w).unwrap();
    }
}

#[test]
fn load_value_extension() {
    let mut m = decode(0x389f_fc83).unwrap(); // ldrsb x3
    assert_eq!(m.load_value(0x80), 0xffff_ffff_ffff_ff80);
    m.width = RegWidth::W; // ldrsb w3
    assert_eq!(m.load_value(0x80), 0xffff_ff80);
    m.signed = false; // ldrb w3
    assert_eq!(m.load_value(0x1_80), 0x80);
    assert_eq!(Extend::Sxtw.apply(0x8000_0000, 2), 0xffff_fffe_0000_0000);
    assert_eq!(Extend::Uxtw.apply(0xffff_ffff_8000_0000, 0), 0x8000_0000);
    assert_eq!(Extend::Lsl.apply(u64::MAX, 3), u64::MAX << 3);
}

/// A register, often a low one or 31 so that register clashes are common.
fn reg() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..3, Just(31u32), 0u32..32]
}

fn unsigned_imm() -> impl Strategy<Value = u32> {
    (0u32..4, 0u32..2, 0u32..4, 0u32..4096, reg(), reg()).prop_map(|(size, v, opc, imm, n, t)| {
        0x3900_0000 | size << 30 | v << 26 | opc << 22 | imm << 10 | n << 5 | t
    })
}

fn imm9_forms() -> impl Strategy<Value = u32> {
    (0u32..4, 0u32..2, 0u32..4, 0u32..512, 0u32..4, reg(), reg()).prop_map(
        |(size, v, opc, imm9, op2, n, t)| {
            0x3800_0000 | size << 30 | v << 26 | opc << 22 | imm9 << 12 | op2 << 10 | n << 5 | t
        },
    )
}

/// Register offset (op2 = 10) and its neighbours with bit 21 set (atomics, PAC loads).
fn bit21_forms() -> impl Strategy<Value = u32> {
    (
        0u32..4,
        0u32..2,
        0u32..4,
        reg(),
        0u32..8,
        0u32..2,
        0u32..4,
        reg(),
        reg(),
    )
        .prop_map(|(size, v, opc, m, option, s, op2, n, t)| {
            0x3820_0000
                | size << 30
                | v << 26
                | opc << 22
                | m << 16
                | option << 13
                | s << 12
                | op2 << 10
                | n << 5
                | t
        })
}

fn pairs() -> impl Strategy<Value = u32> {
    (
        0u32..4,
        0u32..2,
        0u32..8,
        0u32..2,
        0u32..128,
        reg(),
        reg(),
        reg(),
    )
        .prop_map(|(opc, v, idx, l, imm7, t2, n, t)| {
            0x2800_0000
                | opc << 30
                | v << 26
                | idx << 23
                | l << 22
                | imm7 << 15
                | t2 << 10
                | n << 5
                | t
        })
}

/// Any word of the load/store encoding space (op0 = x1x0 in bits 28:25).
fn load_store_space() -> impl Strategy<Value = u32> {
    any::<u32>().prop_map(|w| (w & !(0b1010 << 25)) | (0b0100 << 25))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8192))]

    #[test]
    fn agrees_on_unsigned_immediate(w in unsigned_imm()) { check(w)?; }

    #[test]
    fn agrees_on_imm9_forms(w in imm9_forms()) { check(w)?; }

    #[test]
    fn agrees_on_register_offset_and_neighbours(w in bit21_forms()) { check(w)?; }

    #[test]
    fn agrees_on_pairs(w in pairs()) { check(w)?; }

    #[test]
    fn agrees_on_the_load_store_space(w in load_store_space()) { check(w)?; }

    #[test]
    fn agrees_on_arbitrary_words(w in any::<u32>()) { check(w)?; }
}

/// Every supported class is exercised: count what the generators produce.
#[test]
fn generators_reach_every_form() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    let gens: [BoxedStrategy<u32>; 4] = [
        unsigned_imm().boxed(),
        imm9_forms().boxed(),
        bit21_forms().boxed(),
        pairs().boxed(),
    ];
    for g in &gens {
        for _ in 0..4000 {
            let w = g.new_tree(&mut runner).unwrap().current();
            let key = match decode(w) {
                Ok(m) => format!(
                    "{:?} {} {:?} {} {:?}",
                    m.dir,
                    m.size,
                    std::mem::discriminant(&m.offset),
                    m.rt2.is_some(),
                    m.writeback
                ),
                Err(InsnError::Unpredictable(_)) => "unpredictable".into(),
                Err(InsnError::Unsupported(_)) => "unsupported".into(),
            };
            seen.insert(key);
        }
    }
    // 2 directions x 4 sizes x {imm none/pre/post, reg} singles, pairs of 4 and 8 bytes with
    // three writeback forms each, plus the two error kinds.
    assert!(
        seen.contains("unpredictable") && seen.contains("unsupported"),
        "{seen:?}"
    );
    assert!(
        seen.len() >= 2 * 4 * 4 + 2 * 2 * 3,
        "{} forms: {seen:?}",
        seen.len()
    );
}

/// Every word of the general-purpose single-register classes (bits 29:24 = 111000 or 111001,
/// any size) and of the pair classes (bits 29:26 = 1010): about 400 million words. Run with
/// `cargo test --release -p vmm-core --test insn_oracle -- --ignored`.
#[test]
#[ignore = "exhaustive: minutes in release mode"]
fn agrees_exhaustively_on_gpr_load_store_classes() {
    let ranges: Vec<(u32, u32)> = (0u32..4)
        .flat_map(|size| {
            [
                (size << 30 | 0x38 << 24, 1 << 24),
                (size << 30 | 0x39 << 24, 1 << 24),
                (size << 30 | 0b1010 << 26, 1 << 26),
            ]
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for t in 0..threads {
            let ranges = &ranges;
            s.spawn(move || {
                for &(base, len) in ranges {
                    let mut low = t as u32;
                    while low < len {
                        check(base | low).unwrap();
                        low += threads as u32;
                    }
                }
            });
        }
    });
}
