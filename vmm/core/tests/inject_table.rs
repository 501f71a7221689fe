//! Executable specification of exception injection, as tables taken from the Arm Architecture
//! Reference Manual (ARM DDI 0487): vector offsets ("Exception vectors" in chapter D1), ESR_EL1
//! encodings (EC, IL, ISS of data/instruction aborts and of "unknown reason") and DFSC/IFSC codes.
//! Expected values are written out as literals, not computed with the code under test.

use vmm_core::addr::GuestVirtAddr;
use vmm_core::inject::{
    BlockLevel, FaultStatus, GuestException, InjectError, InjectOptions, SctlrSource, SourceState,
    WalkLevel, inject_sync, inject_sync_with,
};
use vmm_core::vcpu::{SysReg, Vcpu, VcpuError, VcpuState};

// ---------------------------------------------------------------------------------------------
// A vCPU that logs every register access.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadGpr(u8),
    WriteGpr(u8),
    ReadPc,
    WritePc,
    ReadSp,
    WriteSp,
    ReadPstate,
    WritePstate,
    ReadSys(SysReg),
    WriteSys(SysReg),
}

struct Counting {
    inner: VcpuState,
    log: Vec<Access>,
    /// Fail the access at this position in the log (0-based) with a kernel error.
    fail_at: Option<usize>,
}

impl Counting {
    fn new(inner: VcpuState) -> Self {
        Self {
            inner,
            log: Vec::new(),
            fail_at: None,
        }
    }
    fn note(&mut self, a: Access) -> Result<(), VcpuError> {
        let n = self.log.len();
        self.log.push(a);
        if self.fail_at == Some(n) {
            Err(VcpuError::Kernel(7))
        } else {
            Ok(())
        }
    }
}

impl Vcpu for Counting {
    fn gpr(&mut self, n: u8) -> Result<u64, VcpuError> {
        self.note(Access::ReadGpr(n))?;
        self.inner.gpr(n)
    }
    fn set_gpr(&mut self, n: u8, value: u64) -> Result<(), VcpuError> {
        self.note(Access::WriteGpr(n))?;
        self.inner.set_gpr(n, value)
    }
    fn pc(&mut self) -> Result<u64, VcpuError> {
        self.note(Access::ReadPc)?;
        self.inner.pc()
    }
    fn set_pc(&mut self, value: u64) -> Result<(), VcpuError> {
        self.note(Access::WritePc)?;
        self.inner.set_pc(value)
    }
    fn sp(&mut self) -> Result<u64, VcpuError> {
        self.note(Access::ReadSp)?;
        self.inner.sp()
    }
    fn set_sp(&mut self, value: u64) -> Result<(), VcpuError> {
        self.note(Access::WriteSp)?;
        self.inner.set_sp(value)
    }
    fn pstate(&mut self) -> Result<u64, VcpuError> {
        self.note(Access::ReadPstate)?;
        self.inner.pstate()
    }
    fn set_pstate(&mut self, value: u64) -> Result<(), VcpuError> {
        self.note(Access::WritePstate)?;
        self.inner.set_pstate(value)
    }
    fn sysreg(&mut self, reg: SysReg) -> Result<u64, VcpuError> {
        self.note(Access::ReadSys(reg))?;
        self.inner.sysreg(reg)
    }
    fn set_sysreg(&mut self, reg: SysReg, value: u64) -> Result<(), VcpuError> {
        self.note(Access::WriteSys(reg))?;
        self.inner.set_sysreg(reg, value)
    }
}

fn sys(s: &VcpuState, r: SysReg) -> u64 {
    s.sys[r as usize]
}

fn guest(pstate: u64, pc: u64, vbar: u64) -> VcpuState {
    let mut s = VcpuState {
        pstate,
        pc,
        ..Default::default()
    };
    s.sys[SysReg::VbarEl1 as usize] = vbar;
    s
}

const VA: GuestVirtAddr = GuestVirtAddr(0xffff_8000_0912_3456);

// ---------------------------------------------------------------------------------------------
// Vector offsets: "Exception vectors", vector offsets from the vector table base address.

/// (PSTATE.M[4:0] the exception is taken from, vector offset of the synchronous entry).
const VECTOR_TABLE: &[(u64, u64, &str)] = &[
    (0b0_0100, 0x000, "current EL with SP_EL0 (EL1t)"),
    (0b0_0101, 0x200, "current EL with SP_ELx (EL1h)"),
    (0b0_0000, 0x400, "lower EL using AArch64 (EL0t)"),
    (0b1_0000, 0x600, "lower EL using AArch32 (User)"),
];

#[test]
fn vector_offset_table() {
    let vbar = 0xffff_0000_1234_0800;
    for &(mode, offset, what) in VECTOR_TABLE {
        let mut s = guest(mode, 0x4000_1000, vbar);
        inject_sync(&mut s, GuestException::Undefined).unwrap();
        assert_eq!(s.pc, vbar + offset, "{what}");
        assert_eq!(
            SourceState::from_pstate(mode).unwrap().vector_offset(),
            offset,
            "{what}"
        );
    }
}

#[test]
fn vector_base_ignores_vbar_low_bits() {
    // VBAR_EL1[10:0] are RES0; the entry is VBAR_EL1[63:11]:offset.
    let mut s = guest(0b0_0101, 0, 0x8000_07ff);
    inject_sync(&mut s, GuestException::Undefined).unwrap();
    assert_eq!(s.pc, 0x8000_0200);
}

/// Every PSTATE.M[4:0] value that is not one of the four above, with the error it must give.
#[test]
fn impossible_modes_are_refused() {
    for m in 0u64..32 {
        let expected = match m {
            0b0_0000 | 0b0_0100 | 0b0_0101 | 0b1_0000 => None,
            0b0_1000..=0b0_1011 => Some(InjectError::NotGuestEl {
                el: 2,
                pstate: m | 0x3c0,
            }),
            0b0_1100..=0b0_1111 => Some(InjectError::NotGuestEl {
                el: 3,
                pstate: m | 0x3c0,
            }),
            _ => Some(InjectError::InvalidMode { pstate: m | 0x3c0 }),
        };
        let before = guest(m | 0x3c0, 0x1000, 0x8000);
        let mut v = Counting::new(before.clone());
        let r = inject_sync(&mut v, GuestException::Undefined);
        match expected {
            None => assert!(r.is_ok(), "mode {m:#07b}: {r:?}"),
            Some(e) => {
                assert_eq!(r, Err(e), "mode {m:#07b}");
                assert_eq!(
                    v.log,
                    [Access::ReadPstate],
                    "mode {m:#07b}: only PSTATE is read"
                );
                assert_eq!(v.inner, before, "mode {m:#07b}: nothing written");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ESR_EL1: EC[31:26], IL[25], ISS[24:0]. For a data abort ISS = ISV[24] SAS SSE SRT SF AR VNCR
// SET[12:11] FnV[10] EA[9] CM[8] S1PTW[7] WnR[6] DFSC[5:0]; for an instruction abort the same
// without ISV..CM and WnR. IL is RES1 for instruction aborts, data aborts with ISV = 0 and EC 0x00.

const EL1H: u64 = 0b0_0101;
const EL1T: u64 = 0b0_0100;
const EL0_64: u64 = 0b0_0000;
const EL0_32: u64 = 0b1_0000;

fn dabt(far: Option<GuestVirtAddr>, wnr: bool, fsc: FaultStatus) -> GuestException {
    GuestException::DataAbort { far, wnr, fsc }
}
fn iabt(far: Option<GuestVirtAddr>, fsc: FaultStatus) -> GuestException {
    GuestException::InstructionAbort { far, fsc }
}

/// (exception, PSTATE.M it is taken from, ESR_EL1).
fn esr_table() -> Vec<(GuestException, u64, u64)> {
    use FaultStatus::*;
    let sea_d = |wnr| GuestException::SyncExternalAbortData { far: VA, wnr };
    let sea_i = GuestException::SyncExternalAbortInstruction { far: VA };
    vec![
        // Unknown reason: EC 0x00, IL 1, ISS 0.
        (GuestException::Undefined, EL1H, 0x0200_0000),
        (GuestException::Undefined, EL1T, 0x0200_0000),
        (GuestException::Undefined, EL0_64, 0x0200_0000),
        (GuestException::Undefined, EL0_32, 0x0200_0000),
        // Data abort, same EL: EC 0x25 -> 0x94000000 | IL 0x02000000 | DFSC 0x10 (| WnR 0x40).
        (sea_d(false), EL1H, 0x9600_0010),
        (sea_d(true), EL1H, 0x9600_0050),
        (sea_d(true), EL1T, 0x9600_0050),
        // Data abort, lower EL: EC 0x24 -> 0x90000000.
        (sea_d(false), EL0_64, 0x9200_0010),
        (sea_d(true), EL0_64, 0x9200_0050),
        (sea_d(true), EL0_32, 0x9200_0050),
        // Instruction abort: EC 0x21 (same EL) -> 0x84000000, 0x20 (lower) -> 0x80000000.
        (sea_i, EL1H, 0x8600_0010),
        (sea_i, EL1T, 0x8600_0010),
        (sea_i, EL0_64, 0x8200_0010),
        (sea_i, EL0_32, 0x8200_0010),
        // FnV (bit 10) when the address is unknown.
        (dabt(None, false, SyncExternal), EL1H, 0x9600_0410),
        (dabt(None, true, SyncExternal), EL0_64, 0x9200_0450),
        (iabt(None, SyncExternal), EL0_64, 0x8200_0410),
        // Other fault status codes.
        (
            dabt(Some(VA), true, Translation(WalkLevel::L3)),
            EL0_64,
            0x9200_0047,
        ),
        (
            dabt(Some(VA), false, Translation(WalkLevel::L0)),
            EL1H,
            0x9600_0004,
        ),
        (
            dabt(Some(VA), false, AccessFlag(BlockLevel::L1)),
            EL1H,
            0x9600_0009,
        ),
        (
            dabt(Some(VA), false, Permission(BlockLevel::L2)),
            EL1H,
            0x9600_000e,
        ),
        (
            dabt(Some(VA), true, SyncExternalOnWalk(WalkLevel::L0)),
            EL1H,
            0x9600_0054,
        ),
        (dabt(Some(VA), false, Alignment), EL0_64, 0x9200_0021),
        (
            iabt(Some(VA), Translation(WalkLevel::L1)),
            EL0_64,
            0x8200_0005,
        ),
        (
            iabt(Some(VA), Permission(BlockLevel::L3)),
            EL1H,
            0x8600_000f,
        ),
        (
            iabt(Some(VA), SyncExternalOnWalk(WalkLevel::L2)),
            EL1H,
            0x8600_0016,
        ),
    ]
}

#[test]
fn esr_encoding_table() {
    for (exc, mode, esr) in esr_table() {
        let mut s = guest(mode, 0x1000, 0x8000);
        inject_sync(&mut s, exc).unwrap();
        assert_eq!(sys(&s, SysReg::EsrEl1), esr, "{exc:?} from M={mode:#07b}");
        // Spot the fields too, so a wrong literal above cannot hide a wrong field.
        let got = sys(&s, SysReg::EsrEl1);
        assert_eq!(got >> 32, 0, "ESR_EL1[63:32] RES0");
        assert_eq!((got >> 25) & 1, 1, "IL");
        assert_eq!((got >> 24) & 1, 0, "ISV is 0 for ESR_EL1");
        let from = SourceState::from_pstate(mode).unwrap();
        assert_eq!(exc.esr(from), Ok(esr));
    }
}

/// DFSC/IFSC values from the ESR_EL1 field description.
#[test]
fn fault_status_codes() {
    use FaultStatus::*;
    let table: &[(FaultStatus, u8)] = &[
        (Translation(WalkLevel::L0), 0b00_0100),
        (Translation(WalkLevel::L1), 0b00_0101),
        (Translation(WalkLevel::L2), 0b00_0110),
        (Translation(WalkLevel::L3), 0b00_0111),
        (AccessFlag(BlockLevel::L1), 0b00_1001),
        (AccessFlag(BlockLevel::L2), 0b00_1010),
        (AccessFlag(BlockLevel::L3), 0b00_1011),
        (Permission(BlockLevel::L1), 0b00_1101),
        (Permission(BlockLevel::L2), 0b00_1110),
        (Permission(BlockLevel::L3), 0b00_1111),
        (SyncExternal, 0b01_0000),
        (SyncExternalOnWalk(WalkLevel::L0), 0b01_0100),
        (SyncExternalOnWalk(WalkLevel::L1), 0b01_0101),
        (SyncExternalOnWalk(WalkLevel::L2), 0b01_0110),
        (SyncExternalOnWalk(WalkLevel::L3), 0b01_0111),
        (Alignment, 0b10_0001),
    ];
    for &(fsc, code) in table {
        assert_eq!(fsc.code(), code, "{fsc:?}");
    }
}

#[test]
fn far_written_for_aborts_only() {
    let mut s = guest(EL1H, 0x1000, 0x8000);
    s.sys[SysReg::FarEl1 as usize] = 0xdead;
    inject_sync(&mut s, GuestException::Undefined).unwrap();
    assert_eq!(
        sys(&s, SysReg::FarEl1),
        0xdead,
        "EC 0x00 leaves FAR_EL1 alone"
    );

    let mut s = guest(EL1H, 0x1000, 0x8000);
    inject_sync(
        &mut s,
        GuestException::SyncExternalAbortData {
            far: VA,
            wnr: false,
        },
    )
    .unwrap();
    assert_eq!(sys(&s, SysReg::FarEl1), VA.0);

    // From AArch32 the address and the PC are 32-bit: FAR_EL1[63:32] and ELR_EL1[63:32] are 0.
    let mut s = guest(EL0_32, 0xffff_ffff_0000_8000, 0x8000);
    let far = GuestVirtAddr(0x1_2345_6789);
    inject_sync(
        &mut s,
        GuestException::SyncExternalAbortData { far, wnr: false },
    )
    .unwrap();
    assert_eq!(sys(&s, SysReg::FarEl1), 0x2345_6789);
    assert_eq!(sys(&s, SysReg::ElrEl1), 0x8000);
}

#[test]
fn unencodable_exceptions_are_refused_before_any_access() {
    use FaultStatus::*;
    let cases = [
        (iabt(Some(VA), Alignment), InjectError::NoSuchFetchFault),
        (
            dabt(None, false, Translation(WalkLevel::L1)),
            InjectError::FarRequired,
        ),
        (
            dabt(None, false, SyncExternalOnWalk(WalkLevel::L3)),
            InjectError::FarRequired,
        ),
        (
            iabt(None, Permission(BlockLevel::L1)),
            InjectError::FarRequired,
        ),
    ];
    for (exc, err) in cases {
        let before = guest(EL1H, 0x1000, 0x8000);
        let mut v = Counting::new(before.clone());
        assert_eq!(inject_sync(&mut v, exc), Err(err), "{exc:?}");
        assert!(v.log.is_empty(), "{exc:?}: {:?}", v.log);
        assert_eq!(v.inner, before);
    }
}

// ---------------------------------------------------------------------------------------------
// Register accesses: exactly the documented ones, each once.

#[test]
fn data_abort_touches_exactly_the_documented_registers() {
    let mut v = Counting::new(guest(EL0_64, 0x40_0000, 0xffff_8000_1000_0000));
    inject_sync(
        &mut v,
        GuestException::SyncExternalAbortData { far: VA, wnr: true },
    )
    .unwrap();
    assert_eq!(
        v.log,
        [
            Access::ReadPstate,
            Access::ReadPc,
            Access::ReadSys(SysReg::VbarEl1),
            Access::WriteSys(SysReg::ElrEl1),
            Access::WriteSys(SysReg::SpsrEl1),
            Access::WriteSys(SysReg::EsrEl1),
            Access::WriteSys(SysReg::FarEl1),
            Access::WritePstate,
            Access::WritePc,
        ]
    );
}

#[test]
fn undefined_with_known_pc_reads_two_registers_and_skips_far() {
    let mut v = Counting::new(guest(EL1H, 0xdead_0000, 0x8000));
    let opts = InjectOptions {
        fault_pc: Some(0x4000_2000),
        ..Default::default()
    };
    let e = inject_sync_with(&mut v, GuestException::Undefined, opts).unwrap();
    assert_eq!(
        v.log,
        [
            Access::ReadPstate,
            Access::ReadSys(SysReg::VbarEl1),
            Access::WriteSys(SysReg::ElrEl1),
            Access::WriteSys(SysReg::SpsrEl1),
            Access::WriteSys(SysReg::EsrEl1),
            Access::WritePstate,
            Access::WritePc,
        ]
    );
    assert_eq!(e.elr, 0x4000_2000, "the given fault PC, not the register");
    assert_eq!(sys(&v.inner, SysReg::ElrEl1), 0x4000_2000);
}

#[test]
fn sctlr_is_read_only_when_asked() {
    let mut st = guest(EL0_64, 0x1000, 0x8000);
    st.sys[SysReg::SctlrEl1 as usize] = 1 << 44; // SPAN = 0 (PAN set on entry), DSSBS = 1
    let mut v = Counting::new(st);
    let opts = InjectOptions {
        sctlr: SctlrSource::Read,
        ..Default::default()
    };
    let e = inject_sync_with(&mut v, GuestException::Undefined, opts).unwrap();
    assert_eq!(
        v.log[..4],
        [
            Access::ReadPstate,
            Access::ReadPc,
            Access::ReadSys(SysReg::VbarEl1),
            Access::ReadSys(SysReg::SctlrEl1),
        ]
    );
    assert_eq!(
        v.log
            .iter()
            .filter(|a| matches!(a, Access::ReadSys(_)))
            .count(),
        2
    );
    assert_eq!(e.pstate & (1 << 22), 1 << 22, "PAN set because SPAN == 0");
    assert_eq!(e.pstate & (1 << 12), 1 << 12, "SSBS = DSSBS");
}

#[test]
fn register_failure_is_reported_as_vcpu_error() {
    // Fail each access in turn: the error names the kernel failure, never panics.
    for n in 0..9 {
        let mut v = Counting::new(guest(EL1H, 0x1000, 0x8000));
        v.fail_at = Some(n);
        let r = inject_sync(
            &mut v,
            GuestException::SyncExternalAbortData {
                far: VA,
                wnr: false,
            },
        );
        assert_eq!(
            r,
            Err(InjectError::Vcpu(VcpuError::Kernel(7))),
            "failing access {n}"
        );
        assert_eq!(v.log.len(), n + 1, "stops at the failing access");
    }
}

// ---------------------------------------------------------------------------------------------
// PSTATE on entry: AArch64.TakeException.

#[test]
fn entry_pstate_examples() {
    // From EL0t with NZCV = 0b1010, DIT, SS, IL, UAO, BTYPE = 0b11, SSBS set and DAIF clear.
    let old =
        (0b1010 << 28) | (1 << 24) | (1 << 23) | (1 << 21) | (1 << 20) | (0b11 << 10) | (1 << 12);
    let mut s = guest(old, 0x1000, 0x8000);
    inject_sync(&mut s, GuestException::Undefined).unwrap();
    assert_eq!(s.pstate, (0b1010 << 28) | (1 << 24) | 0x3c0 | 0b0101);
    assert_eq!(sys(&s, SysReg::SpsrEl1), old, "SPSR_EL1 is the old PSTATE");
    assert_eq!(
        sys(&s, SysReg::ElrEl1),
        0x1000,
        "the faulting instruction is not retired"
    );

    // From AArch32 User with T, IT, GE, Q, E set: all of them cleared, PAN (bit 22) kept.
    let old32 = (0b0110 << 28)
        | (1 << 27)
        | (0b11 << 25)
        | (1 << 22)
        | (0xf << 16)
        | (0x3f << 10)
        | (1 << 9)
        | (1 << 5)
        | 0b1_0000;
    let mut s = guest(old32, 0x8000, 0x8000);
    inject_sync(&mut s, GuestException::Undefined).unwrap();
    assert_eq!(s.pstate, (0b0110 << 28) | (1 << 22) | 0x3c0 | 0b0101);
    assert_eq!(s.pc, 0x8600);

    // MTE exposed: TCO set.
    let mut s = guest(EL1H, 0x1000, 0x8000);
    let opts = InjectOptions {
        mte: true,
        ..Default::default()
    };
    inject_sync_with(&mut s, GuestException::Undefined, opts).unwrap();
    assert_eq!(s.pstate, (1 << 25) | 0x3c0 | 0b0101);
}
