//! Property test: for arbitrary valid guest state, injection does exactly what a field-by-field
//! reference model of `AArch64.TakeException` (target EL1, synchronous; Arm ARM shared pseudocode) says, and
//! touches no other register. Invalid PSTATEs change nothing.

use proptest::prelude::*;
use vmm_core::addr::GuestVirtAddr;
use vmm_core::inject::{
    BlockLevel, FaultStatus, GuestException, InjectError, InjectOptions, SctlrSource, WalkLevel,
    inject_sync_with,
};
use vmm_core::vcpu::{SysReg, VcpuState};

/// What the architecture says the registers hold after the exception.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    pc: u64,
    pstate: u64,
    elr: u64,
    spsr: u64,
    esr: u64,
    /// `None`: FAR_EL1 keeps its old value.
    far: Option<u64>,
}

fn bit(v: u64, n: u32) -> u64 {
    (v >> n) & 1
}

/// The reference model, written from the pseudocode rather than from the implementation.
fn model(exc: GuestException, old: u64, pc: u64, vbar: u64, sctlr: u64, mte: bool) -> Expected {
    // Source state from PSTATE.{nRW, EL, SP} (only valid states are generated).
    let (n_rw, el, sp) = (bit(old, 4), (old >> 2) & 3, bit(old, 0));
    let from_lower = el < 1; // target EL1 > PSTATE.EL
    let from_32 = n_rw == 1;
    // Vector offset.
    let vect_offset = if from_lower {
        if from_32 { 0x600 } else { 0x400 }
    } else if sp == 1 {
        0x200
    } else {
        0x000
    };
    // Syndrome.
    let (ec, fsc, wnr, far) = match exc {
        GuestException::Undefined => (0x00, None, 0, None),
        GuestException::SyncExternalAbortData { far, wnr } => (
            if from_lower { 0x24 } else { 0x25 },
            Some(0x10),
            wnr as u64,
            Some(Some(far.0)),
        ),
        GuestException::SyncExternalAbortInstruction { far } => (
            if from_lower { 0x20 } else { 0x21 },
            Some(0x10),
            0,
            Some(Some(far.0)),
        ),
        GuestException::DataAbort { far, wnr, fsc } => (
            if from_lower { 0x24 } else { 0x25 },
            Some(fsc.code() as u64),
            wnr as u64,
            Some(far.map(|a| a.0)),
        ),
        GuestException::InstructionAbort { far, fsc } => (
            if from_lower { 0x20 } else { 0x21 },
            Some(fsc.code() as u64),
            0,
            Some(far.map(|a| a.0)),
        ),
    };
    let il = 1; // RES1 for every exception modelled here
    let fnv = matches!(far, Some(None)) as u64;
    let iss = match fsc {
        None => 0,
        Some(fsc) => (fnv << 10) | (wnr << 6) | fsc,
    };
    let esr = (ec << 26) | (il << 25) | iss;
    let width_mask = if from_32 { 0xffff_ffff } else { u64::MAX };
    let far = far.flatten().map(|a| a & width_mask);
    // New PSTATE.
    let n = bit(old, 31);
    let z = bit(old, 30);
    let c = bit(old, 29);
    let v = bit(old, 28);
    let tco = mte as u64;
    let dit = bit(old, 24);
    let uao = 0;
    let span = bit(sctlr, 23);
    let pan = if span == 0 { 1 } else { bit(old, 22) };
    let ss = 0;
    let il_state = 0;
    let ssbs = bit(sctlr, 44);
    let btype = 0;
    let (d, a, i, f) = (1, 1, 1, 1);
    let (new_nrw, new_el, new_sp) = (0, 1, 1);
    let pstate = (n << 31)
        | (z << 30)
        | (c << 29)
        | (v << 28)
        | (tco << 25)
        | (dit << 24)
        | (uao << 23)
        | (pan << 22)
        | (ss << 21)
        | (il_state << 20)
        | (ssbs << 12)
        | (btype << 10)
        | (d << 9)
        | (a << 8)
        | (i << 7)
        | (f << 6)
        | (new_nrw << 4)
        | (new_el << 2)
        | new_sp;
    Expected {
        pc: (vbar & !0x7ff) | vect_offset,
        pstate,
        elr: pc & width_mask,
        spsr: old,
        esr,
        far,
    }
}

fn walk_level() -> impl Strategy<Value = WalkLevel> {
    prop_oneof![
        Just(WalkLevel::L0),
        Just(WalkLevel::L1),
        Just(WalkLevel::L2),
        Just(WalkLevel::L3)
    ]
}

fn block_level() -> impl Strategy<Value = BlockLevel> {
    prop_oneof![
        Just(BlockLevel::L1),
        Just(BlockLevel::L2),
        Just(BlockLevel::L3)
    ]
}

fn fault_status() -> impl Strategy<Value = FaultStatus> {
    prop_oneof![
        walk_level().prop_map(FaultStatus::Translation),
        block_level().prop_map(FaultStatus::AccessFlag),
        block_level().prop_map(FaultStatus::Permission),
        Just(FaultStatus::SyncExternal),
        walk_level().prop_map(FaultStatus::SyncExternalOnWalk),
        Just(FaultStatus::Alignment),
    ]
}

/// Valid (encodable) exceptions only.
fn exception() -> impl Strategy<Value = GuestException> {
    let va = any::<u64>().prop_map(GuestVirtAddr);
    prop_oneof![
        Just(GuestException::Undefined),
        (va.clone(), any::<bool>())
            .prop_map(|(far, wnr)| GuestException::SyncExternalAbortData { far, wnr }),
        va.clone()
            .prop_map(|far| GuestException::SyncExternalAbortInstruction { far }),
        (
            proptest::option::of(va.clone()),
            any::<bool>(),
            fault_status()
        )
            .prop_map(|(far, wnr, fsc)| {
                let far = if fsc == FaultStatus::SyncExternal {
                    far
                } else {
                    far.or(Some(GuestVirtAddr(0)))
                };
                GuestException::DataAbort { far, wnr, fsc }
            }),
        (proptest::option::of(va), fault_status()).prop_filter_map(
            "IFSC has no alignment",
            |(far, fsc)| {
                if fsc == FaultStatus::Alignment {
                    return None;
                }
                let far = if fsc == FaultStatus::SyncExternal {
                    far
                } else {
                    far.or(Some(GuestVirtAddr(0)))
                };
                Some(GuestException::InstructionAbort { far, fsc })
            }
        ),
    ]
}

/// PSTATE with one of the four valid guest modes and every other bit arbitrary.
fn valid_pstate() -> impl Strategy<Value = u64> {
    (
        any::<u64>(),
        prop_oneof![
            Just(0b0_0000u64),
            Just(0b0_0100),
            Just(0b0_0101),
            Just(0b1_0000)
        ],
    )
        .prop_map(|(bits, m)| (bits & !0x1f) | m)
}

fn state(pstate: u64, pc: u64, vbar: u64, sctlr: u64, seed: u64) -> VcpuState {
    let mut s = VcpuState {
        pstate,
        pc,
        sp: seed ^ 0x5555,
        ..Default::default()
    };
    for (i, x) in s.x.iter_mut().enumerate() {
        *x = seed.wrapping_mul(i as u64 + 1);
    }
    for (i, r) in s.sys.iter_mut().enumerate() {
        *r = seed.rotate_left(i as u32 * 5) ^ i as u64;
    }
    s.sys[SysReg::VbarEl1 as usize] = vbar;
    s.sys[SysReg::SctlrEl1 as usize] = sctlr;
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn injection_matches_the_reference_model(
        exc in exception(),
        pstate in valid_pstate(),
        pc in any::<u64>(),
        vbar in any::<u64>(),
        sctlr in any::<u64>(),
        mte in any::<bool>(),
        read_sctlr in any::<bool>(),
        pass_pc in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let before = state(pstate, if pass_pc { !pc } else { pc }, vbar, sctlr, seed);
        let mut s = before.clone();
        let opts = InjectOptions {
            fault_pc: pass_pc.then_some(pc),
            sctlr: if read_sctlr { SctlrSource::Read } else { SctlrSource::Known(sctlr) },
            mte,
        };
        inject_sync_with(&mut s, exc, opts).unwrap();
        let want = model(exc, pstate, pc, vbar, sctlr, mte);

        prop_assert_eq!(s.pc, want.pc);
        prop_assert_eq!(s.pstate, want.pstate);
        prop_assert_eq!(s.sys[SysReg::ElrEl1 as usize], want.elr);
        prop_assert_eq!(s.sys[SysReg::SpsrEl1 as usize], want.spsr);
        prop_assert_eq!(s.sys[SysReg::EsrEl1 as usize], want.esr);
        let far_before = before.sys[SysReg::FarEl1 as usize];
        prop_assert_eq!(s.sys[SysReg::FarEl1 as usize], want.far.unwrap_or(far_before));

        // The headline properties, stated on their own.
        let offset = s.pc.wrapping_sub(vbar & !0x7ff);
        prop_assert!([0x000, 0x200, 0x400, 0x600].contains(&offset), "offset {:#x}", offset);
        prop_assert_eq!(s.pstate & 0x3c0, 0x3c0, "D, A, I, F masked");
        prop_assert_eq!(s.pstate & 0x1f, 0b0_0101, "EL1h");

        // Nothing else changed.
        let mut rest = s.clone();
        rest.pc = before.pc;
        rest.pstate = before.pstate;
        for r in [SysReg::ElrEl1, SysReg::SpsrEl1, SysReg::EsrEl1, SysReg::FarEl1] {
            rest.sys[r as usize] = before.sys[r as usize];
        }
        prop_assert_eq!(rest, before);
    }

    #[test]
    fn default_options_assume_no_pan_no_ssbs(
        exc in exception(),
        pstate in valid_pstate(),
        pc in any::<u64>(),
        vbar in any::<u64>(),
    ) {
        let mut s = state(pstate, pc, vbar, 0, 1);
        inject_sync_with(&mut s, exc, InjectOptions::default()).unwrap();
        // SPAN reads as 1 and DSSBS as 0 without FEAT_PAN/FEAT_SSBS.
        prop_assert_eq!(s.pstate, model(exc, pstate, pc, vbar, 1 << 23, false).pstate);
    }

    #[test]
    fn invalid_pstate_changes_nothing(
        exc in exception(),
        bits in any::<u64>(),
        m in 0u64..32,
    ) {
        prop_assume!(![0b0_0000, 0b0_0100, 0b0_0101, 0b1_0000].contains(&m));
        let pstate = (bits & !0x1f) | m;
        let before = state(pstate, 0x1000, 0x8000, 0, bits);
        let mut s = before.clone();
        let r = inject_sync_with(&mut s, exc, InjectOptions::default());
        let is_typed = matches!(
            r,
            Err(InjectError::NotGuestEl { .. }) | Err(InjectError::InvalidMode { .. })
        );
        prop_assert!(is_typed, "{:?}", r);
        prop_assert_eq!(s, before);
    }
}
