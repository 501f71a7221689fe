//! MMIO emulation against a reference model: a plain `VcpuState` plus a map-backed fake bus,
//! with the A64 load/store semantics written out from the Arm ARM pseudocode (not from the
//! decoder). Covers ISV = 1 (widths, sign extension, SF, XZR) and ISV = 0 (every addressing form,
//! writeback, pairs, page checks, MMU on and off), the exact register-access counts, and the
//! typed errors.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vmm_core::addr::{GuestPhysAddr, GuestVirtAddr};
use vmm_core::insn::InsnError;
use vmm_core::memory::{GuestMemory, GuestRam, MemError};
use vmm_core::mmio::{AccessOp, BusError, MmioBus, MmioError, MmioOutcome, emulate};
use vmm_core::stage1::WalkError;
use vmm_core::syndrome::DataAbort;
use vmm_core::vcpu::{SysReg, Vcpu, VcpuError, VcpuState};

const MMIO: u64 = 0x0900_0000;
const MMIO_END: u64 = 0x0900_2000;
const RAM: u64 = 0x4000_0000;
const RAM_SIZE: usize = 0x10000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    Read(u64, u8, u64),
    Write(u64, u8, u64),
}

/// A device window at [MMIO, MMIO_END): reads return a per-byte pattern unless written;
/// 8-byte accesses at offsets ending in 0xf8 are refused; successful accesses are logged.
#[derive(Default, Debug, Clone)]
struct FakeBus {
    bytes: BTreeMap<u64, u8>,
    log: Vec<Log>,
}

fn pattern(a: u64) -> u8 {
    (a.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

impl FakeBus {
    fn check(gpa: GuestPhysAddr, size: u8) -> Result<(), BusError> {
        let a = gpa.raw();
        if !(MMIO..MMIO_END).contains(&a) || a + u64::from(size) > MMIO_END {
            return Err(BusError::Unmapped);
        }
        if size == 8 && a & 0xff == 0xf8 {
            return Err(BusError::Refused);
        }
        Ok(())
    }
    fn byte(&self, a: u64) -> u8 {
        self.bytes.get(&a).copied().unwrap_or_else(|| pattern(a))
    }
}

impl MmioBus for FakeBus {
    fn read(&mut self, gpa: GuestPhysAddr, size: u8) -> Result<u64, BusError> {
        Self::check(gpa, size)?;
        let v = (0..u64::from(size)).fold(0u64, |v, i| {
            v | u64::from(self.byte(gpa.raw() + i)) << (8 * i)
        });
        self.log.push(Log::Read(gpa.raw(), size, v));
        Ok(v)
    }
    fn write(&mut self, gpa: GuestPhysAddr, size: u8, value: u64) -> Result<(), BusError> {
        Self::check(gpa, size)?;
        for i in 0..u64::from(size) {
            self.bytes.insert(gpa.raw() + i, (value >> (8 * i)) as u8);
        }
        self.log.push(Log::Write(gpa.raw(), size, value));
        Ok(())
    }
}

/// Counts every register access of the wrapped vCPU.
#[derive(Default, Debug)]
struct Counting {
    inner: VcpuState,
    reads: Vec<&'static str>,
    writes: Vec<&'static str>,
    /// The masks announced with `expect_gprs`.
    expected: Vec<u32>,
}

impl Vcpu for Counting {
    fn gpr(&mut self, n: u8) -> Result<u64, VcpuError> {
        self.reads.push("x");
        self.inner.gpr(n)
    }
    fn set_gpr(&mut self, n: u8, value: u64) -> Result<(), VcpuError> {
        self.writes.push("x");
        self.inner.set_gpr(n, value)
    }
    fn pc(&mut self) -> Result<u64, VcpuError> {
        self.reads.push("pc");
        self.inner.pc()
    }
    fn set_pc(&mut self, value: u64) -> Result<(), VcpuError> {
        self.writes.push("pc");
        self.inner.set_pc(value)
    }
    fn sp(&mut self) -> Result<u64, VcpuError> {
        self.reads.push("sp");
        self.inner.sp()
    }
    fn set_sp(&mut self, value: u64) -> Result<(), VcpuError> {
        self.writes.push("sp");
        self.inner.set_sp(value)
    }
    fn pstate(&mut self) -> Result<u64, VcpuError> {
        self.reads.push("pstate");
        self.inner.pstate()
    }
    fn set_pstate(&mut self, value: u64) -> Result<(), VcpuError> {
        self.writes.push("pstate");
        self.inner.set_pstate(value)
    }
    fn sysreg(&mut self, reg: SysReg) -> Result<u64, VcpuError> {
        self.reads.push("sysreg");
        self.inner.sysreg(reg)
    }
    fn set_sysreg(&mut self, reg: SysReg, value: u64) -> Result<(), VcpuError> {
        self.writes.push("sysreg");
        self.inner.set_sysreg(reg, value)
    }
    fn expect_gprs(&mut self, mask: u32) {
        self.expected.push(mask);
    }
}

fn abort_isv(sas: u8, sse: bool, srt: u8, sf: bool, wnr: bool) -> DataAbort {
    DataAbort {
        isv: true,
        sas,
        sse,
        srt,
        sf,
        ar: false,
        vncr: false,
        set: 0,
        fnv: false,
        ea: false,
        cm: false,
        s1ptw: false,
        wnr,
        dfsc: 0x06,
    }
}

fn abort_no_isv(wnr: bool) -> DataAbort {
    DataAbort {
        isv: false,
        sas: 0,
        sse: false,
        srt: 0,
        sf: false,
        ..abort_isv(0, false, 0, false, wnr)
    }
}

fn no_ram() -> GuestRam<'static> {
    GuestRam::new(GuestPhysAddr(RAM), &mut [])
}

// ---------------------------------------------------------------------------------------------
// Register-access counts.

#[test]
fn isv_load_touches_only_rt_and_pc() {
    let mut v = Counting::default();
    let mut bus = FakeBus::default();
    let a = abort_isv(2, false, 3, false, false);
    let out = emulate(
        &mut v,
        &no_ram(),
        &a,
        0x8000,
        GuestPhysAddr(MMIO + 4),
        &mut bus,
    )
    .unwrap();
    assert_eq!(
        out,
        MmioOutcome {
            op: AccessOp::Load,
            size: 4,
            accesses: 1,
            next_pc: 0x8004
        }
    );
    assert_eq!((v.reads.len(), v.writes.clone()), (0, vec!["x", "pc"]));
    assert_eq!(v.expected, vec![1 << 3], "Rt announced");
    // Into XZR: the value is discarded, only the PC is written.
    let mut v = Counting::default();
    let a = abort_isv(2, false, 31, false, false);
    emulate(
        &mut v,
        &no_ram(),
        &a,
        0x8000,
        GuestPhysAddr(MMIO + 4),
        &mut bus,
    )
    .unwrap();
    assert_eq!((v.reads.len(), v.writes.clone()), (0, vec!["pc"]));
    assert!(v.expected.is_empty(), "XZR is no register");
}

#[test]
fn isv_store_reads_only_rt_and_writes_only_pc() {
    let mut v = Counting::default();
    v.inner.x[5] = 0x1122_3344_5566_7788;
    let mut bus = FakeBus::default();
    let a = abort_isv(1, false, 5, true, true);
    let out = emulate(
        &mut v,
        &no_ram(),
        &a,
        0x8000,
        GuestPhysAddr(MMIO + 2),
        &mut bus,
    )
    .unwrap();
    assert_eq!(
        out,
        MmioOutcome {
            op: AccessOp::Store,
            size: 2,
            accesses: 1,
            next_pc: 0x8004
        }
    );
    assert_eq!((v.reads.clone(), v.writes.clone()), (vec!["x"], vec!["pc"]));
    assert_eq!(v.expected, vec![1 << 5], "Rt announced");
    assert_eq!(bus.log, vec![Log::Write(MMIO + 2, 2, 0x7788)]);
    // From XZR: no register read at all, zero stored.
    let mut v = Counting::default();
    let a = abort_isv(3, false, 31, true, true);
    emulate(
        &mut v,
        &no_ram(),
        &a,
        0x8000,
        GuestPhysAddr(MMIO + 8),
        &mut bus,
    )
    .unwrap();
    assert_eq!((v.reads.len(), v.writes.clone()), (0, vec!["pc"]));
    assert!(v.expected.is_empty(), "XZR is no register");
    assert_eq!(bus.log[1], Log::Write(MMIO + 8, 8, 0));
}

#[test]
fn no_isv_counts_with_mmu_off() {
    // ldr w1, [x2, #4]: PSTATE (AArch64?), SCTLR_EL1, x2; writes x1 and the PC.
    let mut buf = vec![0u8; RAM_SIZE];
    let mut ram = GuestRam::new(GuestPhysAddr(RAM), &mut buf);
    ram.write_u32(GuestPhysAddr(RAM + 0x100), 0xb940_0441)
        .unwrap();
    let mut v = Counting::default();
    v.inner.x[2] = 0xffff_8000_0000_0ffc;
    let mut bus = FakeBus::default();
    let out = emulate(
        &mut v,
        &ram,
        &abort_no_isv(false),
        RAM + 0x100,
        GuestPhysAddr(MMIO),
        &mut bus,
    )
    .unwrap();
    assert_eq!(out.accesses, 1);
    assert_eq!(v.reads, vec!["pstate", "sysreg", "x"]);
    assert_eq!(v.writes, vec!["x", "pc"]);
    assert_eq!(
        v.expected,
        vec![0x7fff_ffff],
        "x0..x30: any may be base or transfer"
    );
    assert_eq!(
        v.inner.x[1],
        u64::from(u32::from_le_bytes([0, 1, 2, 3].map(|i| pattern(MMIO + i))))
    );
}

#[test]
fn cache_maintenance_is_skipped() {
    let mut v = Counting::default();
    let mut a = abort_no_isv(false);
    a.cm = true;
    let out = emulate(
        &mut v,
        &no_ram(),
        &a,
        0x100,
        GuestPhysAddr(MMIO),
        &mut FakeBus::default(),
    )
    .unwrap();
    assert_eq!(
        out,
        MmioOutcome {
            op: AccessOp::CacheMaintenance,
            size: 0,
            accesses: 0,
            next_pc: 0x104
        }
    );
    assert_eq!((v.reads.len(), v.writes.clone()), (0, vec!["pc"]));
}

// ---------------------------------------------------------------------------------------------
// Typed errors.

#[test]
fn typed_errors() {
    let mut buf = vec![0u8; RAM_SIZE];
    let mut ram = GuestRam::new(GuestPhysAddr(RAM), &mut buf);
    let pc = RAM + 0x200;
    let mut bus = FakeBus::default();
    let g = GuestPhysAddr(MMIO + 0x10);
    let mut run = |ram: &GuestRam, a: DataAbort, x2: u64, gpa: GuestPhysAddr| {
        let mut v = VcpuState {
            pc,
            ..VcpuState::default()
        };
        v.x[2] = x2;
        let before = v.clone();
        let r = emulate(&mut v, ram, &a, pc, gpa, &mut bus);
        if r.is_err() {
            assert_eq!(v, before, "state changed on error {r:?}");
        }
        r
    };
    let mut ea = abort_isv(2, false, 1, false, false);
    ea.ea = true;
    assert_eq!(run(&ram, ea, 0, g), Err(MmioError::ExternalAbort));
    let mut ptw = abort_isv(2, false, 1, false, false);
    ptw.s1ptw = true;
    assert_eq!(run(&ram, ptw, 0, g), Err(MmioError::TableWalk));
    assert_eq!(
        run(&ram, abort_isv(3, false, 1, false, false), 0, g),
        Err(MmioError::BadSyndrome)
    );
    assert_eq!(
        run(
            &ram,
            abort_isv(2, false, 1, false, false),
            0,
            GuestPhysAddr(0x10)
        ),
        Err(MmioError::Bus {
            gpa: GuestPhysAddr(0x10),
            error: BusError::Unmapped
        })
    );
    let refused = GuestPhysAddr(MMIO + 0xf8);
    assert_eq!(
        run(&ram, abort_isv(3, false, 1, true, true), 0, refused),
        Err(MmioError::Bus {
            gpa: refused,
            error: BusError::Refused
        })
    );

    // ISV = 0: ldr w1, [x2, #4] at pc.
    ram.write_u32(GuestPhysAddr(pc), 0xb940_0441).unwrap();
    let x2 = 0x1000 + 0x10 - 4;
    assert!(run(&ram, abort_no_isv(false), x2, g).is_ok());
    assert_eq!(
        run(&ram, abort_no_isv(true), x2, g),
        Err(MmioError::DirectionMismatch)
    );
    assert_eq!(
        run(&ram, abort_no_isv(false), x2 + 4, g),
        Err(MmioError::AddressMismatch {
            computed: GuestVirtAddr(0x1014),
            fault: g
        })
    );
    // Nor one access size below the fault: only the second half of a pair may fault there.
    assert_eq!(
        run(&ram, abort_no_isv(false), x2 - 4, g),
        Err(MmioError::AddressMismatch {
            computed: GuestVirtAddr(0x100c),
            fault: g
        })
    );
    // ldr x1, [x2, #4]... at the page end: ldr x1, [x2] with x2 = 0xffc crosses.
    ram.write_u32(GuestPhysAddr(pc), 0xf940_0041).unwrap();
    assert_eq!(
        run(
            &ram,
            abort_no_isv(false),
            0xffc,
            GuestPhysAddr(MMIO + 0xffc)
        ),
        Err(MmioError::CrossesPage)
    );
    // ldxr x0, [x1]: not emulated.
    ram.write_u32(GuestPhysAddr(pc), 0xc85f_7c20).unwrap();
    assert_eq!(
        run(&ram, abort_no_isv(false), 0, g),
        Err(MmioError::Decode(InsnError::Unsupported(0xc85f_7c20)))
    );
    // PC outside RAM (MMU off).
    let mut v = VcpuState::default();
    assert_eq!(
        emulate(&mut v, &ram, &abort_no_isv(false), 0x10, g, &mut bus),
        Err(MmioError::FetchMem(MemError::OutOfRange {
            gpa: GuestPhysAddr(0x10),
            len: 4
        }))
    );
    // MMU on, empty tables.
    v.sys[SysReg::SctlrEl1 as usize] = 1;
    v.sys[SysReg::TcrEl1 as usize] = 25 | (0b10 << 30);
    v.sys[SysReg::Ttbr0El1 as usize] = RAM + 0x8000;
    assert_eq!(
        emulate(&mut v, &ram, &abort_no_isv(false), 0x10, g, &mut bus),
        Err(MmioError::Fetch(WalkError::Translation { level: 1 }))
    );
}

// ---------------------------------------------------------------------------------------------
// ISV = 1 against the model.

fn model_isv(
    v: &VcpuState,
    bus: &FakeBus,
    a: &DataAbort,
    ip: u64,
    gpa: u64,
) -> (VcpuState, FakeBus, Result<MmioOutcome, MmioError>) {
    let mut v = v.clone();
    let mut bus = bus.clone();
    let size = 1u8 << a.sas;
    if !a.sf && size == 8 {
        return (v, bus, Err(MmioError::BadSyndrome));
    }
    let regsize = if a.sf { 64 } else { 32 };
    let r = if a.wnr {
        let data = if a.srt == 31 { 0 } else { v.x[a.srt as usize] };
        let data = data & (u64::MAX >> (64 - 8 * u32::from(size)));
        bus.write(GuestPhysAddr(gpa), size, data)
            .map(|_| AccessOp::Store)
    } else {
        bus.read(GuestPhysAddr(gpa), size).map(|data| {
            let bits = 8 * u32::from(size);
            let ext = if a.sse {
                (((i128::from(data)) << (128 - bits)) >> (128 - bits)) as u64
            } else {
                data
            };
            let ext = if regsize == 32 {
                ext & 0xffff_ffff
            } else {
                ext
            };
            if a.srt != 31 {
                v.x[a.srt as usize] = ext;
            }
            AccessOp::Load
        })
    };
    match r {
        Ok(op) => {
            v.pc = ip.wrapping_add(4);
            (
                v,
                bus,
                Ok(MmioOutcome {
                    op,
                    size,
                    accesses: 1,
                    next_pc: ip.wrapping_add(4),
                }),
            )
        }
        Err(error) => (
            v,
            bus,
            Err(MmioError::Bus {
                gpa: GuestPhysAddr(gpa),
                error,
            }),
        ),
    }
}

fn any_regs() -> impl Strategy<Value = [u64; 31]> {
    prop::array::uniform31(prop_oneof![
        any::<u64>(),
        Just(0x80u64),
        Just(0xffff_ffff_8000_8080),
        Just(u64::MAX)
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn isv_matches_model(
        x in any_regs(),
        sas in 0u8..4,
        sse in any::<bool>(),
        srt in prop_oneof![0u8..31, Just(31u8)],
        sf in prop_oneof![3 => Just(true), 1 => Just(false)],
        wnr in any::<bool>(),
        off in prop_oneof![0u64..0x2000, 0xff0u64..0x1000, 0x1ff0u64..0x2010],
        ip in any::<u64>(),
        written in any::<[u8; 8]>(),
    ) {
        let v0 = VcpuState { x, pc: ip, sp: 0x1234, ..VcpuState::default() };
        let mut bus0 = FakeBus::default();
        // Some bytes were written before (so reads see both stored and pattern bytes).
        for (i, b) in written.iter().enumerate() {
            bus0.bytes.insert(MMIO + off + i as u64 * 3, *b);
        }
        let a = abort_isv(sas, sse, srt, sf, wnr);
        let gpa = MMIO + off;
        let (want_v, want_bus, want) = model_isv(&v0, &bus0, &a, ip, gpa);
        let mut v = v0.clone();
        let mut bus = bus0.clone();
        let got = emulate(&mut v, &no_ram(), &a, ip, GuestPhysAddr(gpa), &mut bus);
        prop_assert_eq!(got, want);
        prop_assert_eq!(v, want_v);
        prop_assert_eq!(bus.log, want_bus.log);
        prop_assert_eq!(bus.bytes, want_bus.bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// ISV = 0 against the model: instructions are described at a high level, encoded by this test
// from the Arm encoding tables, executed by `emulate` through fetch + decode, and by the model
// directly from the description.

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// LDR/STR (immediate), unsigned offset: imm12, scaled.
    UImm(u32),
    /// LDUR/STUR: imm9, unscaled.
    Unscaled(i32),
    /// Pre-index imm9.
    Pre(i32),
    /// Post-index imm9.
    Post(i32),
    /// Register offset: Rm, option, S.
    Reg(u8, u32, bool),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// size (log2), opc (00 store, 01 load, 10 signed load to X, 11 signed load to W), Rt, Rn.
    Single {
        size: u32,
        opc: u32,
        rt: u8,
        rn: u8,
        mode: Mode,
    },
    /// opc (00 32-bit, 01 LDPSW, 10 64-bit), L, index (000 no-allocate, 001 post, 010 offset,
    /// 011 pre), imm7, Rt, Rt2, Rn.
    Pair {
        opc: u32,
        load: bool,
        index: u32,
        imm7: i32,
        rt: u8,
        rt2: u8,
        rn: u8,
    },
}

fn encode(op: Op) -> u32 {
    match op {
        Op::Single {
            size,
            opc,
            rt,
            rn,
            mode,
        } => {
            let common = size << 30 | opc << 22 | u32::from(rn) << 5 | u32::from(rt);
            match mode {
                Mode::UImm(imm12) => 0x3900_0000 | common | imm12 << 10,
                Mode::Unscaled(imm9) => 0x3800_0000 | common | (imm9 as u32 & 0x1ff) << 12,
                Mode::Post(imm9) => 0x3800_0400 | common | (imm9 as u32 & 0x1ff) << 12,
                Mode::Pre(imm9) => 0x3800_0c00 | common | (imm9 as u32 & 0x1ff) << 12,
                Mode::Reg(rm, option, s) => {
                    0x3820_0800 | common | u32::from(rm) << 16 | option << 13 | u32::from(s) << 12
                }
            }
        }
        Op::Pair {
            opc,
            load,
            index,
            imm7,
            rt,
            rt2,
            rn,
        } => {
            0x2800_0000
                | opc << 30
                | index << 23
                | u32::from(load) << 22
                | (imm7 as u32 & 0x7f) << 15
                | u32::from(rt2) << 10
                | u32::from(rn) << 5
                | u32::from(rt)
        }
    }
}

fn xreg(v: &VcpuState, n: u8) -> u64 {
    if n == 31 { 0 } else { v.x[n as usize] }
}

fn base_reg(v: &VcpuState, n: u8) -> u64 {
    if n == 31 { v.sp } else { v.x[n as usize] }
}

/// ExtendReg() of the Arm pseudocode.
fn extend_reg(val: u64, option: u32, shift: u32) -> Option<u64> {
    let (len, unsigned) = match option {
        0b010 => (32, true),
        0b011 => (64, true),
        0b110 => (32, false),
        0b111 => (64, false),
        _ => return None,
    };
    let v = i128::from(val) & ((1i128 << len) - 1);
    let v = if !unsigned && (v >> (len - 1)) & 1 == 1 {
        v - (1i128 << len)
    } else {
        v
    };
    Some((v << shift) as u64)
}

struct Expect {
    v: VcpuState,
    bus: FakeBus,
    result: Result<MmioOutcome, MmioError>,
}

/// Executes `op` on a copy of the state. `second` says the fault reported a pair's second access.
fn model(
    op: Op,
    v0: &VcpuState,
    bus0: &FakeBus,
    word: u32,
    ip: u64,
    second: bool,
    fault_gpa: u64,
) -> Expect {
    let mut v = v0.clone();
    let mut bus = bus0.clone();
    let fail = |e| Expect {
        v: v0.clone(),
        bus: bus0.clone(),
        result: Err(e),
    };
    let unsupported = fail(MmioError::Decode(InsnError::Unsupported(word)));
    let unpredictable = fail(MmioError::Decode(InsnError::Unpredictable(word)));
    // (datasize bytes, regsize, signed, load, t, t2, n, offset, wback, postindex)
    let (size, regsize, signed, load, t, t2, n, offset, wback, post) = match op {
        Op::Single {
            size,
            opc,
            rt,
            rn,
            mode,
        } => {
            let (load, signed, regsize) = match (size, opc) {
                (3, 0) => (false, false, 64),
                (3, 1) => (true, false, 64),
                (3, _) | (2, 3) => return unsupported,
                (_, 0) => (false, false, 32),
                (_, 1) => (true, false, 32),
                (_, 2) => (true, true, 64),
                _ => (true, true, 32),
            };
            let (offset, wback, post) = match mode {
                Mode::UImm(imm12) => (u64::from(imm12) << size, false, false),
                Mode::Unscaled(imm) => (i64::from(imm) as u64, false, false),
                Mode::Pre(imm) => (i64::from(imm) as u64, true, false),
                Mode::Post(imm) => (i64::from(imm) as u64, true, true),
                Mode::Reg(rm, option, s) => {
                    let shift = if s { size } else { 0 };
                    match extend_reg(xreg(&v, rm), option, shift) {
                        Some(o) => (o, false, false),
                        None => return unsupported,
                    }
                }
            };
            if wback && rn == rt && rn != 31 {
                return unpredictable;
            }
            (
                1u64 << size,
                regsize,
                signed,
                load,
                rt,
                None,
                rn,
                offset,
                wback,
                post,
            )
        }
        Op::Pair {
            opc,
            load,
            index,
            imm7,
            rt,
            rt2,
            rn,
        } => {
            if index > 3 {
                return unsupported;
            }
            let (size, signed, regsize) = match (opc, load, index) {
                (0, _, _) => (4u64, false, 32),
                (1, true, 1..=3) => (4, true, 64),
                (2, _, _) => (8, false, 64),
                _ => return unsupported,
            };
            if load && rt == rt2 {
                return unpredictable;
            }
            let (wback, post) = match index {
                1 => (true, true),
                3 => (true, false),
                _ => (false, false),
            };
            if wback && rn != 31 && (rn == rt || rn == rt2) {
                return unpredictable;
            }
            let offset = (i64::from(imm7) * size as i64) as u64;
            (
                size,
                regsize,
                signed,
                load,
                rt,
                Some(rt2),
                rn,
                offset,
                wback,
                post,
            )
        }
    };
    let base = base_reg(&v, n);
    let address = if post {
        base
    } else {
        base.wrapping_add(offset)
    };
    let total = size * if t2.is_some() { 2 } else { 1 };
    let page_off = address & 0xfff;
    let expected_fault = if second {
        address.wrapping_add(size) & 0xfff
    } else {
        page_off
    };
    if fault_gpa & 0xfff != expected_fault {
        return fail(MmioError::AddressMismatch {
            computed: GuestVirtAddr(address),
            fault: GuestPhysAddr(fault_gpa),
        });
    }
    if page_off + total > 0x1000 {
        return fail(MmioError::CrossesPage);
    }
    let gpa1 = (fault_gpa & !0xfff) | page_off;
    let gpas = [gpa1, gpa1 + size];
    let regs: Vec<u8> = std::iter::once(t).chain(t2).collect();
    let width = size as u8;
    if load {
        let mut vals = vec![];
        for (i, _) in regs.iter().enumerate() {
            match bus.read(GuestPhysAddr(gpas[i]), width) {
                Ok(d) => {
                    let bits = 8 * size as u32;
                    let d = if signed {
                        ((i128::from(d) << (128 - bits)) >> (128 - bits)) as u64
                    } else {
                        d
                    };
                    vals.push(if regsize == 32 { d & 0xffff_ffff } else { d });
                }
                Err(error) => {
                    return Expect {
                        v: v0.clone(),
                        bus,
                        result: Err(MmioError::Bus {
                            gpa: GuestPhysAddr(gpas[i]),
                            error,
                        }),
                    };
                }
            }
        }
        for (r, val) in regs.iter().zip(vals) {
            if *r != 31 {
                v.x[*r as usize] = val;
            }
        }
    } else {
        let vals: Vec<u64> = regs.iter().map(|r| xreg(&v, *r)).collect();
        for (i, val) in vals.iter().enumerate() {
            let mask = u64::MAX >> (64 - 8 * size);
            if let Err(error) = bus.write(GuestPhysAddr(gpas[i]), width, val & mask) {
                return Expect {
                    v: v0.clone(),
                    bus,
                    result: Err(MmioError::Bus {
                        gpa: GuestPhysAddr(gpas[i]),
                        error,
                    }),
                };
            }
        }
    }
    if wback {
        let nb = base.wrapping_add(offset);
        if n == 31 {
            v.sp = nb;
        } else {
            v.x[n as usize] = nb;
        }
    }
    v.pc = ip.wrapping_add(4);
    let op = if load {
        AccessOp::Load
    } else {
        AccessOp::Store
    };
    Expect {
        v,
        bus,
        result: Ok(MmioOutcome {
            op,
            size: width,
            accesses: regs.len() as u8,
            next_pc: ip.wrapping_add(4),
        }),
    }
}

fn reg() -> impl Strategy<Value = u8> {
    prop_oneof![0u8..4, Just(31u8), 0u8..31]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        (0u32..4096).prop_map(Mode::UImm),
        (-256i32..256).prop_map(Mode::Unscaled),
        (-256i32..256).prop_map(Mode::Pre),
        (-256i32..256).prop_map(Mode::Post),
        (
            reg(),
            prop_oneof![4 => prop::sample::select(vec![2u32, 3, 6, 7]), 1 => 0u32..8],
            any::<bool>()
        )
            .prop_map(|(rm, option, s)| Mode::Reg(rm, option, s)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u32..4, 0u32..4, reg(), reg(), mode()).prop_map(|(size, opc, rt, rn, mode)| Op::Single {
            size,
            opc,
            rt,
            rn,
            mode
        }),
        (
            0u32..4,
            any::<bool>(),
            prop_oneof![4 => 0u32..4, 1 => 4u32..8],
            -64i32..64,
            reg(),
            reg(),
            reg()
        )
            .prop_map(|(opc, load, index, imm7, rt, rt2, rn)| Op::Pair {
                opc,
                load,
                index,
                imm7,
                rt,
                rt2,
                rn
            }),
    ]
}

/// Stage-1 tables for the MMU-on case: 39-bit TTBR0, VA 0x40_0000 page -> RAM + 0x1000.
fn map_code(ram: &mut GuestRam) -> (u64, u64, u64) {
    let af = 1 << 10;
    ram.write_u64(GuestPhysAddr(RAM + 0x4000), (RAM + 0x5000) | 3)
        .unwrap();
    ram.write_u64(GuestPhysAddr(RAM + 0x5000 + 2 * 8), (RAM + 0x6000) | 3)
        .unwrap();
    ram.write_u64(GuestPhysAddr(RAM + 0x6000), (RAM + 0x1000) | af | 3)
        .unwrap();
    let tcr = 25 | (0b10 << 30) | (0b101 << 32);
    (1, tcr, RAM + 0x4000)
}

/// The generated inputs of one ISV = 0 case.
type Case = (Op, [u64; 31], u64, u64, u64, bool, bool, u64);

fn case() -> impl Strategy<Value = Case> {
    (
        op(),
        any_regs(),
        any::<u64>(),
        prop_oneof![0u64..0x1000, 0xfe0u64..0x1000, Just(0u64)],
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
        0u64..64,
    )
}

/// Runs one case through `emulate` and the model, checks they agree, returns the outcome.
fn no_isv_case(
    (op, x, sp, target, va_page, mmu, second, insn_slot): Case,
) -> Result<Result<MmioOutcome, MmioError>, TestCaseError> {
    let word = encode(op);
    let mut buf = vec![0u8; RAM_SIZE];
    let mut ram = GuestRam::new(GuestPhysAddr(RAM), &mut buf);
    let mut v = VcpuState {
        x,
        sp,
        ..VcpuState::default()
    };
    let ip = if mmu {
        let (sctlr, tcr, ttbr0) = map_code(&mut ram);
        v.sys[SysReg::SctlrEl1 as usize] = sctlr;
        v.sys[SysReg::TcrEl1 as usize] = tcr;
        v.sys[SysReg::Ttbr0El1 as usize] = ttbr0;
        ram.write_u32(GuestPhysAddr(RAM + 0x1000 + insn_slot * 4), word)
            .unwrap();
        0x40_0000 + insn_slot * 4
    } else {
        ram.write_u32(GuestPhysAddr(RAM + 0x100 + insn_slot * 4), word)
            .unwrap();
        RAM + 0x100 + insn_slot * 4
    };
    v.pc = ip;
    // Point the base register at the target offset of a random VA page, when the form lets
    // us (a base that is also the offset register keeps its random value).
    let want_addr = (va_page & !0xfff) | target;
    let (rn, off) = match op {
        Op::Single { rn, mode, size, .. } => match mode {
            Mode::UImm(i) => (rn, Some(u64::from(i) << size)),
            Mode::Unscaled(i) | Mode::Pre(i) => (rn, Some(i64::from(i) as u64)),
            Mode::Post(_) => (rn, Some(0)),
            Mode::Reg(rm, option, s) if rm != rn => (
                rn,
                extend_reg(xreg(&v, rm), option, if s { size } else { 0 }),
            ),
            Mode::Reg(..) => (rn, None),
        },
        Op::Pair {
            rn,
            index,
            imm7,
            opc,
            ..
        } => {
            let size = if opc == 2 { 8 } else { 4 };
            (
                rn,
                Some(if index == 1 {
                    0
                } else {
                    (i64::from(imm7) * size) as u64
                }),
            )
        }
    };
    if let Some(off) = off {
        let base = want_addr.wrapping_sub(off);
        if rn == 31 {
            v.sp = base
        } else {
            v.x[rn as usize] = base
        }
    }
    // The fault address: the access's page offset in the MMIO page (or the second half's).
    let (size, pair) = match op {
        Op::Single { size, .. } => (1u64 << size, false),
        Op::Pair { opc, .. } => (if opc == 2 { 8 } else { 4 }, true),
    };
    let second = second && pair;
    let actual = {
        // The address the instruction really computes (the base may not be ours to set).
        let base = if rn == 31 { v.sp } else { v.x[rn as usize] };
        match op {
            Op::Single {
                mode: Mode::Post(_),
                ..
            }
            | Op::Pair { index: 1, .. } => base,
            _ => base.wrapping_add(off.unwrap_or_else(|| match op {
                Op::Single {
                    mode: Mode::Reg(rm, option, s),
                    size,
                    ..
                } => extend_reg(xreg(&v, rm), option, if s { size } else { 0 }).unwrap_or(0),
                _ => 0,
            })),
        }
    };
    let fault_off = if second {
        actual.wrapping_add(size) & 0xfff
    } else {
        actual & 0xfff
    };
    let fault_gpa = MMIO | fault_off;
    let bus0 = FakeBus::default();
    let abort = abort_no_isv(matches!(
        op,
        Op::Single { opc: 0, .. } | Op::Pair { load: false, .. }
    ));
    let want = model(op, &v, &bus0, word, ip, second, fault_gpa);
    let mut got_v = v.clone();
    let mut bus = bus0.clone();
    let got = emulate(
        &mut got_v,
        &ram,
        &abort,
        ip,
        GuestPhysAddr(fault_gpa),
        &mut bus,
    );
    prop_assert_eq!(got, want.result, "{:?} {:#010x}", op, word);
    prop_assert_eq!(got_v, want.v);
    prop_assert_eq!(bus.log, want.bus.log);
    Ok(got)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn no_isv_matches_model(c in case()) {
        let _outcome = no_isv_case(c)?;
    }
}

/// The generator reaches loads, stores, pairs, writeback, and every error the model predicts.
#[test]
fn no_isv_cases_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4000 {
        let c = case().new_tree(&mut runner).unwrap().current();
        let key = match no_isv_case(c).unwrap() {
            Ok(o) => format!("{:?} x{} size {}", o.op, o.accesses, o.size),
            Err(MmioError::Decode(InsnError::Unpredictable(_))) => "unpredictable".into(),
            Err(MmioError::Decode(InsnError::Unsupported(_))) => "unsupported".into(),
            Err(MmioError::Bus { error, .. }) => format!("bus {error:?}"),
            Err(e) => format!("{e:?}"),
        };
        seen.insert(key);
    }
    for want in [
        "Load x1 size 1",
        "Load x1 size 2",
        "Load x1 size 4",
        "Load x1 size 8",
        "Store x1 size 1",
        "Store x1 size 8",
        "Load x2 size 4",
        "Load x2 size 8",
        "Store x2 size 4",
        "Store x2 size 8",
        "unpredictable",
        "unsupported",
        "CrossesPage",
        "bus Refused",
    ] {
        assert!(seen.contains(want), "{want} never reached: {seen:?}");
    }
}

#[test]
fn no_isv_from_aarch32_is_refused_and_il_sets_the_pc_step() {
    // ISV = 0 in AArch32 state (PSTATE.nRW = 1): the word at the PC is not A64; nothing is
    // decoded, stored or written.
    let mut buf = vec![0u8; RAM_SIZE];
    let mut ram = GuestRam::new(GuestPhysAddr(RAM), &mut buf);
    ram.write_u32(GuestPhysAddr(RAM + 0x100), 0xf900_0020)
        .unwrap(); // A64 `str x0, [x1]`
    let mut v = Counting::default();
    v.inner.pstate = 0x10;
    let mut bus = FakeBus::default();
    let r = vmm_core::mmio::emulate_sized(
        &mut v,
        &ram,
        &abort_no_isv(true),
        RAM + 0x100,
        4,
        GuestPhysAddr(MMIO),
        &mut bus,
    );
    assert_eq!(r, Err(vmm_core::mmio::MmioError::Aarch32));
    assert!(v.writes.is_empty(), "{:?}", v.writes);
    // A valid syndrome from a 16-bit instruction: the PC moves by 2.
    let mut v = Counting::default();
    let mut a = abort_no_isv(false);
    a.isv = true;
    a.sas = 2;
    a.srt = 1;
    let out =
        vmm_core::mmio::emulate_sized(&mut v, &ram, &a, 0x1000, 2, GuestPhysAddr(MMIO), &mut bus)
            .unwrap();
    assert_eq!((out.next_pc, v.inner.pc), (0x1002, 0x1002));
}
