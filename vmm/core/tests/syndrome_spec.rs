//! Executable spec of ESR_EL2 decoding: the Arm ARM field tables written out as data, a
//! bit-by-bit reference decoder built on them, and proptests that the fast decoder agrees with
//! it on arbitrary values, plus encode/decode round trips.

use proptest::prelude::*;
use vmm_core::syndrome::{
    Class, DataAbort, FaultStatus, InstructionAbort, Syndrome, SysRegTrap, WfxKind, WfxTrap, ec,
};

/// (field name, high bit, low bit), from the Arm ARM ESR_EL2 ISS encodings.
type Table = &'static [(&'static str, u32, u32)];

const COMMON: Table = &[("ISS2", 55, 32), ("EC", 31, 26), ("IL", 25, 25)];
/// ISS encoding for an exception from a Data Abort.
const DABT: Table = &[
    ("ISV", 24, 24),
    ("SAS", 23, 22),
    ("SSE", 21, 21),
    ("SRT", 20, 16),
    ("SF", 15, 15),
    ("AR", 14, 14),
    ("VNCR", 13, 13),
    ("SET", 12, 11),
    ("FnV", 10, 10),
    ("EA", 9, 9),
    ("CM", 8, 8),
    ("S1PTW", 7, 7),
    ("WnR", 6, 6),
    ("DFSC", 5, 0),
];
/// ISS encoding for an exception from an Instruction Abort (bits 24:13, 8 and 6 are RES0).
const IABT: Table = &[
    ("SET", 12, 11),
    ("FnV", 10, 10),
    ("EA", 9, 9),
    ("S1PTW", 7, 7),
    ("IFSC", 5, 0),
];
/// ISS encoding for an exception from MSR, MRS, or System instruction execution in AArch64.
const SYS64: Table = &[
    ("Op0", 21, 20),
    ("Op2", 19, 17),
    ("Op1", 16, 14),
    ("CRn", 13, 10),
    ("Rt", 9, 5),
    ("CRm", 4, 1),
    ("Direction", 0, 0),
];
/// ISS encoding for an exception from HVC or SVC / SMC instruction execution.
const IMM16: Table = &[("imm16", 15, 0)];
/// ISS encoding for an exception from a WF* instruction.
const WFX: Table = &[
    ("CV", 24, 24),
    ("COND", 23, 20),
    ("RN", 9, 5),
    ("RV", 2, 2),
    ("TI", 1, 0),
];
/// Any other class: the ISS as a whole.
const OTHER: Table = &[("ISS", 24, 0)];

fn table(ec: u64) -> Table {
    match ec {
        0x24 => DABT,
        0x20 => IABT,
        0x18 => SYS64,
        0x16 | 0x17 => IMM16,
        0x01 => WFX,
        _ => OTHER,
    }
}

/// Bit-by-bit extraction of `esr[hi:lo]`.
fn bits(esr: u64, hi: u32, lo: u32) -> u64 {
    let mut v = 0;
    let mut i = hi;
    loop {
        v = (v << 1) | ((esr >> i) & 1);
        if i == lo {
            return v;
        }
        i -= 1;
    }
}

fn get(esr: u64, t: Table, name: &str) -> u64 {
    let &(_, hi, lo) = t
        .iter()
        .find(|(n, _, _)| *n == name)
        .expect("field in table");
    bits(esr, hi, lo)
}

/// The reference decoder: every field looked up by name in the tables above.
fn reference(esr: u64) -> Syndrome {
    let ecv = get(esr, COMMON, "EC");
    let t = table(ecv);
    let f = |n: &str| get(esr, t, n);
    let class = match ecv {
        0x24 => Class::DataAbort(DataAbort {
            isv: f("ISV") == 1,
            sas: f("SAS") as u8,
            sse: f("SSE") == 1,
            srt: f("SRT") as u8,
            sf: f("SF") == 1,
            ar: f("AR") == 1,
            vncr: f("VNCR") == 1,
            set: f("SET") as u8,
            fnv: f("FnV") == 1,
            ea: f("EA") == 1,
            cm: f("CM") == 1,
            s1ptw: f("S1PTW") == 1,
            wnr: f("WnR") == 1,
            dfsc: f("DFSC") as u8,
        }),
        0x20 => Class::InstructionAbort(InstructionAbort {
            set: f("SET") as u8,
            fnv: f("FnV") == 1,
            ea: f("EA") == 1,
            s1ptw: f("S1PTW") == 1,
            ifsc: f("IFSC") as u8,
        }),
        0x18 => Class::SysReg(SysRegTrap {
            op0: f("Op0") as u8,
            op2: f("Op2") as u8,
            op1: f("Op1") as u8,
            crn: f("CRn") as u8,
            rt: f("Rt") as u8,
            crm: f("CRm") as u8,
            read: f("Direction") == 1,
        }),
        0x16 => Class::Hvc {
            imm16: f("imm16") as u16,
        },
        0x17 => Class::Smc {
            imm16: f("imm16") as u16,
        },
        0x01 => Class::Wfx(WfxTrap {
            cv: f("CV") == 1,
            cond: f("COND") as u8,
            rn: f("RN") as u8,
            rv: f("RV") == 1,
            kind: [WfxKind::Wfi, WfxKind::Wfe, WfxKind::Wfit, WfxKind::Wfet][f("TI") as usize],
        }),
        _ => Class::Unknown {
            ec: ecv as u8,
            iss: f("ISS") as u32,
        },
    };
    Syndrome {
        il: get(esr, COMMON, "IL") == 1,
        iss2: get(esr, COMMON, "ISS2") as u32,
        class,
    }
}

/// The bits the decoder keeps for a value of this class.
fn kept_mask(esr: u64) -> u64 {
    let mut m = 0u64;
    for &(_, hi, lo) in COMMON.iter().chain(table(bits(esr, 31, 26))) {
        for i in lo..=hi {
            m |= 1 << i;
        }
    }
    m
}

#[test]
fn field_tables_do_not_overlap() {
    for t in [DABT, IABT, SYS64, IMM16, WFX, OTHER] {
        let mut seen = 0u64;
        for &(name, hi, lo) in COMMON.iter().chain(t) {
            assert!(hi >= lo && hi < 64, "{name}");
            for i in lo..=hi {
                assert_eq!(seen & (1 << i), 0, "bit {i} of {name} claimed twice");
                seen |= 1 << i;
            }
        }
    }
    // The data-abort ISS is fully populated.
    let mut iss = 0u64;
    for &(_, hi, lo) in DABT {
        iss |= ((1u64 << (hi - lo + 1)) - 1) << lo;
    }
    assert_eq!(iss, 0x1ff_ffff);
}

#[test]
fn known_syndromes() {
    // SEL4-FACTS.md: 32-bit store via x1, ISV=1, stage-2 translation fault at level 1.
    let s = Syndrome::decode32(0x9381_0045);
    assert!(s.il);
    let Class::DataAbort(d) = s.class else {
        panic!("{s:?}")
    };
    assert!(d.isv && d.wnr && !d.sse && !d.sf);
    assert_eq!(
        (d.access_size(), d.srt, d.fault_status()),
        (4, 1, FaultStatus::Translation(1))
    );
    // The matching load into x2.
    let Class::DataAbort(d) = Syndrome::decode32(0x9382_0005).class else {
        panic!()
    };
    assert!(d.isv && !d.wnr);
    assert_eq!((d.access_size(), d.srt), (4, 2));

    assert_eq!(
        Syndrome::decode32(0x5a00_0000).class,
        Class::Hvc { imm16: 0 }
    );
    assert_eq!(
        Syndrome::decode32(0x5e00_1234).class,
        Class::Smc { imm16: 0x1234 }
    );
    // WFI / WFE from AArch64 (CV = 1, COND = 0b1110).
    let Class::Wfx(w) = Syndrome::decode32(0x07e0_0000).class else {
        panic!()
    };
    assert_eq!((w.kind, w.cv, w.cond), (WfxKind::Wfi, true, 0xe));
    let Class::Wfx(w) = Syndrome::decode32(0x07e0_0001).class else {
        panic!()
    };
    assert_eq!(w.kind, WfxKind::Wfe);
    // MRS x2, ID_AA64PFR0_EL1 (op0 3, op1 0, CRn 0, CRm 4, op2 0).
    let Class::SysReg(r) = Syndrome::decode32(0x6230_0049).class else {
        panic!()
    };
    assert_eq!(
        (r.op0, r.op1, r.crn, r.crm, r.op2, r.rt, r.read),
        (3, 0, 0, 4, 0, 2, true)
    );
    // Its key is the MRS encoding's bits 20:5: op0:op1:CRn:CRm:op2.
    assert_eq!(r.key(), (3 << 14) | (4 << 3));
    // An instruction abort, translation fault level 3.
    let Class::InstructionAbort(i) = Syndrome::decode32(0x8200_0007).class else {
        panic!()
    };
    assert_eq!(i.fault_status(), FaultStatus::Translation(3));
    // Unhandled class: FP/SIMD access trap (EC 0x07).
    assert_eq!(
        Syndrome::decode32(0x1e00_0000).class,
        Class::Unknown { ec: 0x07, iss: 0 }
    );
    assert_eq!(Syndrome::decode32(0x1e00_0000).ec(), ec::UNKNOWN + 7);
}

#[test]
fn fault_status_codes() {
    let cases = [
        (0x00, FaultStatus::AddressSize(0)),
        (0x07, FaultStatus::Translation(3)),
        (0x09, FaultStatus::AccessFlag(1)),
        (0x0e, FaultStatus::Permission(2)),
        (0x10, FaultStatus::SyncExternal),
        (0x15, FaultStatus::SyncExternalOnWalk(1)),
        (0x21, FaultStatus::Alignment),
        (0x30, FaultStatus::TlbConflict),
        (0x11, FaultStatus::Other(0x11)),
        (0x3f, FaultStatus::Other(0x3f)),
    ];
    for (code, want) in cases {
        assert_eq!(FaultStatus::decode(code), want, "{code:#x}");
    }
}

/// Values with a handled EC more often than 6 in 64.
fn esr() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (
            prop::sample::select(vec![0x01u64, 0x16, 0x17, 0x18, 0x20, 0x24]),
            any::<u64>()
        )
            .prop_map(|(ec, r)| (r & !(0x3f << 26)) | (ec << 26)),
    ]
}

fn any_class() -> impl Strategy<Value = Class> {
    prop_oneof![
        (any::<[bool; 10]>(), 0u8..4, 0u8..32, 0u8..4, 0u8..64).prop_map(
            |([isv, sse, sf, ar, vncr, fnv, ea, cm, s1ptw, wnr], sas, srt, set, dfsc)| {
                Class::DataAbort(DataAbort {
                    isv,
                    sas,
                    sse,
                    srt,
                    sf,
                    ar,
                    vncr,
                    set,
                    fnv,
                    ea,
                    cm,
                    s1ptw,
                    wnr,
                    dfsc,
                })
            }
        ),
        (any::<[bool; 3]>(), 0u8..4, 0u8..64).prop_map(|([fnv, ea, s1ptw], set, ifsc)| {
            Class::InstructionAbort(InstructionAbort {
                set,
                fnv,
                ea,
                s1ptw,
                ifsc,
            })
        }),
        (
            0u8..4,
            0u8..8,
            0u8..8,
            0u8..16,
            0u8..32,
            0u8..16,
            any::<bool>()
        )
            .prop_map(|(op0, op2, op1, crn, rt, crm, read)| {
                Class::SysReg(SysRegTrap {
                    op0,
                    op2,
                    op1,
                    crn,
                    rt,
                    crm,
                    read,
                })
            }),
        any::<u16>().prop_map(|imm16| Class::Hvc { imm16 }),
        any::<u16>().prop_map(|imm16| Class::Smc { imm16 }),
        (any::<bool>(), 0u8..16, 0u8..32, any::<bool>(), 0usize..4).prop_map(
            |(cv, cond, rn, rv, ti)| {
                let kind = [WfxKind::Wfi, WfxKind::Wfe, WfxKind::Wfit, WfxKind::Wfet][ti];
                Class::Wfx(WfxTrap {
                    cv,
                    cond,
                    rn,
                    rv,
                    kind,
                })
            }
        ),
        (0u8..64, 0u32..(1 << 25))
            .prop_filter("handled classes have their own variant", |(ec, _)| {
                ![0x01, 0x16, 0x17, 0x18, 0x20, 0x24].contains(ec)
            })
            .prop_map(|(ec, iss)| Class::Unknown { ec, iss }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn fast_decoder_matches_reference_u64(v in esr()) {
        prop_assert_eq!(Syndrome::decode(v), reference(v));
    }

    #[test]
    fn fast_decoder_matches_reference_u32(v in any::<u32>()) {
        prop_assert_eq!(Syndrome::decode32(v), reference(u64::from(v)));
        prop_assert_eq!(Syndrome::decode32(v), Syndrome::decode(u64::from(v)));
    }

    #[test]
    fn encode_keeps_exactly_the_decoded_fields(v in esr()) {
        prop_assert_eq!(Syndrome::decode(v).encode(), v & kept_mask(v));
    }

    #[test]
    fn decode_of_encode_is_identity(il in any::<bool>(), iss2 in 0u32..(1 << 24), class in any_class()) {
        let s = Syndrome { il, iss2, class };
        let v = s.encode();
        prop_assert_eq!(Syndrome::decode(v), s);
        prop_assert_eq!(reference(v), s);
    }
}

/// The MRS instruction for `(op0, op1, CRn, CRm, op2)` (Arm ARM C6.2, MRS): `1101 0101 0011`,
/// o0 (op0 − 2) at 19, op1 18:16, CRn 15:12, CRm 11:8, op2 7:5, Rt 4:0.
fn mrs_word(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32, rt: u32) -> u32 {
    0xd530_0000 | ((op0 - 2) << 19) | (op1 << 16) | (crn << 12) | (crm << 8) | (op2 << 5) | rt
}

proptest! {
    /// `SysRegTrap::key` is bits 20:5 of the MRS encoding of the trapped register, for every
    /// field value (the one example in `known_syndromes` has CRn = op1 = op2 = 0).
    #[test]
    fn sysreg_key_is_the_mrs_encoding(
        op0 in 2u32..4, op1 in 0u32..8, crn in 0u32..16, crm in 0u32..16, op2 in 0u32..8,
        rt in 0u32..32,
    ) {
        let iss = (op0 << 20) | (op2 << 17) | (op1 << 14) | (crn << 10) | (rt << 5) | (crm << 1) | 1;
        let esr = (u64::from(ec::SYS64) << 26) | (1 << 25) | u64::from(iss);
        let Class::SysReg(r) = Syndrome::decode(esr).class else {
            panic!("EC 0x18 is a system register trap")
        };
        let key = (mrs_word(op0, op1, crn, crm, op2, rt) >> 5) & 0xffff;
        prop_assert_eq!(u32::from(r.key()), key);
    }
}

#[test]
fn sysreg_keys_of_known_registers() {
    // CNTV_CTL_EL0: op0 3, op1 3, CRn 14, CRm 3, op2 1 (MRS x0, CNTV_CTL_EL0 = 0xd53be320).
    let r = SysRegTrap {
        op0: 3,
        op1: 3,
        crn: 14,
        crm: 3,
        op2: 1,
        rt: 0,
        read: true,
    };
    assert_eq!(u32::from(r.key()), (0xd53b_e320u32 >> 5) & 0xffff);
    // OSLAR_EL1: op0 2, op1 0, CRn 1, CRm 0, op2 4 (MSR OSLAR_EL1, x0 = 0xd5101080).
    let r = SysRegTrap {
        op0: 2,
        op1: 0,
        crn: 1,
        crm: 0,
        op2: 4,
        rt: 0,
        read: false,
    };
    assert_eq!(u32::from(r.key()), (0xd510_1080u32 >> 5) & 0xffff);
}
