//! MMIO emulation: completes a guest data abort at a guest-physical address the VMM emulates,
//! by performing the access on an [`MmioBus`] and updating the guest registers as the
//! instruction would have.
//!
//! With a valid instruction syndrome (ISV = 1) everything comes from the syndrome: no register is
//! read for a load, only the source register for a store, and only the destination register and
//! the PC are written. Without one (ISV = 0) the instruction is fetched through the guest's
//! stage-1 tables ([`crate::stage1`]), decoded ([`crate::insn`]) and executed, base writeback
//! and register pairs included. The PC comes from the fault message (`fault_ip`), so it is never
//! read; it is written once, to `fault_ip + 4`.
//!
//! Register accesses per exit:
//! - ISV = 1 load: 0 reads, 2 writes (Rt, PC); 1 write if Rt is XZR.
//! - ISV = 1 store: 1 read (Rt; none for XZR), 1 write (PC).
//! - ISV = 0: SCTLR_EL1 (plus TCR_EL1 and one TTBR with the MMU on), the base and offset
//!   registers, store sources; writes of load destinations, the base on writeback, and the PC.

use crate::addr::{GuestPhysAddr, GuestVirtAddr};
use crate::insn::{self, Direction, InsnError, MemInsn, Offset, Writeback};
use crate::memory::{GuestMemory, MemError};
use crate::stage1::{self, AccessKind, MmuConfig, WalkError};
use crate::syndrome::DataAbort;
use crate::vcpu::{Vcpu, VcpuError};

/// Why a bus access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BusError {
    /// No device at that address.
    Unmapped,
    /// A device is there but refuses the access (size, alignment, direction).
    Refused,
    /// The device model failed internally (a VMM bug, not the guest's doing): the exit path turns
    /// it into a hypervisor fault.
    Internal,
}

/// The emulated devices, addressed by guest-physical address. `size` is 1, 2, 4 or 8; values are
/// zero-extended in a `u64` and little-endian as the guest sees them.
pub trait MmioBus {
    /// A `size`-byte read at `gpa`.
    fn read(&mut self, gpa: GuestPhysAddr, size: u8) -> Result<u64, BusError>;
    /// A `size`-byte write of the low `size` bytes of `value` at `gpa`.
    fn write(&mut self, gpa: GuestPhysAddr, size: u8, value: u64) -> Result<(), BusError>;
}

/// What an emulated access did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessOp {
    /// A load (bus reads).
    Load,
    /// A store (bus writes).
    Store,
    /// A cache maintenance instruction on the emulated address (CM = 1): no bus access, the
    /// instruction is skipped.
    CacheMaintenance,
}

/// A completed emulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MmioOutcome {
    /// Load, store or skipped cache maintenance.
    pub op: AccessOp,
    /// Bytes per bus access (0 for cache maintenance).
    pub size: u8,
    /// Number of bus accesses: 0, 1, or 2 for a pair.
    pub accesses: u8,
    /// The PC the guest resumes at (already written to the vCPU).
    pub next_pc: u64,
}

/// Why an abort could not be emulated. Nothing has been written to the vCPU or the bus when an
/// error other than [`MmioError::Bus`] or [`MmioError::Vcpu`] is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioError {
    /// No valid syndrome (ISV = 0) and the guest is in AArch32 state: its instruction is not A64,
    /// and the VMM does not decode A32/T32.
    Aarch32,
    /// The device refused the access at `gpa`.
    Bus {
        /// Address of the failed access.
        gpa: GuestPhysAddr,
        /// The device's answer.
        error: BusError,
    },
    /// A register access failed.
    Vcpu(VcpuError),
    /// An external abort (EA = 1): nothing to emulate.
    ExternalAbort,
    /// A stage-2 fault on the guest's own table walk (S1PTW = 1): its tables are not in RAM.
    TableWalk,
    /// A syndrome no hardware produces (SF = 0 with a 64-bit access).
    BadSyndrome,
    /// Translating the PC failed.
    Fetch(WalkError),
    /// Reading the instruction from guest RAM failed.
    FetchMem(MemError),
    /// The instruction is not a supported load/store.
    Decode(InsnError),
    /// The syndrome says write but the instruction loads, or the reverse (the code changed?).
    DirectionMismatch,
    /// The address the instruction computes does not match the faulting address's page offset.
    AddressMismatch {
        /// The computed guest-virtual address.
        computed: GuestVirtAddr,
        /// The faulting guest-physical address.
        fault: GuestPhysAddr,
    },
    /// The access leaves the faulting 4 KiB page.
    CrossesPage,
}

impl From<VcpuError> for MmioError {
    fn from(e: VcpuError) -> Self {
        MmioError::Vcpu(e)
    }
}

const PAGE_MASK: u64 = 0xfff;

/// Reads `x<n>`, with 31 as the zero register.
fn read_xzr(vcpu: &mut (impl Vcpu + ?Sized), n: u8) -> Result<u64, VcpuError> {
    if n == 31 { Ok(0) } else { vcpu.gpr(n) }
}

/// Writes `x<n>`, dropping writes to the zero register (31).
fn write_xzr(vcpu: &mut (impl Vcpu + ?Sized), n: u8, v: u64) -> Result<(), VcpuError> {
    if n == 31 { Ok(()) } else { vcpu.set_gpr(n, v) }
}

fn bus_read(
    bus: &mut (impl MmioBus + ?Sized),
    gpa: GuestPhysAddr,
    size: u8,
) -> Result<u64, MmioError> {
    bus.read(gpa, size)
        .map(|v| insn::truncate(v, size))
        .map_err(|error| MmioError::Bus { gpa, error })
}

fn bus_write(
    bus: &mut (impl MmioBus + ?Sized),
    gpa: GuestPhysAddr,
    size: u8,
    value: u64,
) -> Result<(), MmioError> {
    bus.write(gpa, size, insn::truncate(value, size))
        .map_err(|error| MmioError::Bus { gpa, error })
}

/// Emulates the data abort `abort` at guest-physical `fault_gpa` (the address of the VMFault
/// message) raised by the 32-bit instruction at `fault_ip` (the message's IP), and advances the
/// PC past it: [`emulate_sized`] for an instruction of the length ESR.IL gives.
///
/// `mem` is only used when ISV = 0, to fetch the instruction and walk the guest's stage-1 tables.
pub fn emulate(
    vcpu: &mut (impl Vcpu + ?Sized),
    mem: &(impl GuestMemory + ?Sized),
    abort: &DataAbort,
    fault_ip: u64,
    fault_gpa: GuestPhysAddr,
    bus: &mut (impl MmioBus + ?Sized),
) -> Result<MmioOutcome, MmioError> {
    emulate_sized(vcpu, mem, abort, fault_ip, 4, fault_gpa, bus)
}

/// [`emulate`] for an instruction of `insn_len` bytes (4, or 2 for a 16-bit T32 instruction:
/// ESR.IL = 0). Without a valid syndrome (ISV = 0) only A64 instructions are decoded: a guest in
/// AArch32 state gets [`MmioError::Aarch32`].
pub fn emulate_sized(
    vcpu: &mut (impl Vcpu + ?Sized),
    mem: &(impl GuestMemory + ?Sized),
    abort: &DataAbort,
    fault_ip: u64,
    insn_len: u64,
    fault_gpa: GuestPhysAddr,
    bus: &mut (impl MmioBus + ?Sized),
) -> Result<MmioOutcome, MmioError> {
    if abort.ea {
        return Err(MmioError::ExternalAbort);
    }
    if abort.s1ptw {
        return Err(MmioError::TableWalk);
    }
    let next_pc = fault_ip.wrapping_add(insn_len);
    if abort.cm {
        vcpu.set_pc(next_pc)?;
        return Ok(MmioOutcome {
            op: AccessOp::CacheMaintenance,
            size: 0,
            accesses: 0,
            next_pc,
        });
    }
    if abort.isv {
        emulate_isv(vcpu, abort, next_pc, fault_gpa, bus)
    } else {
        emulate_insn(vcpu, mem, abort, fault_ip, fault_gpa, bus)
    }
}

fn emulate_isv(
    vcpu: &mut (impl Vcpu + ?Sized),
    abort: &DataAbort,
    next_pc: u64,
    gpa: GuestPhysAddr,
    bus: &mut (impl MmioBus + ?Sized),
) -> Result<MmioOutcome, MmioError> {
    let size = abort.access_size();
    if !abort.sf && size == 8 {
        return Err(MmioError::BadSyndrome);
    }
    if abort.srt != 31 {
        vcpu.expect_gprs(1 << abort.srt);
    }
    let op = if abort.wnr {
        let value = read_xzr(vcpu, abort.srt)?;
        bus_write(bus, gpa, size, value)?;
        AccessOp::Store
    } else {
        let raw = bus_read(bus, gpa, size)?;
        let mut value = if abort.sse {
            match size {
                1 => raw as u8 as i8 as i64 as u64,
                2 => raw as u16 as i16 as i64 as u64,
                4 => raw as u32 as i32 as i64 as u64,
                _ => raw,
            }
        } else {
            raw
        };
        if !abort.sf {
            value &= 0xffff_ffff;
        }
        write_xzr(vcpu, abort.srt, value)?;
        AccessOp::Load
    };
    vcpu.set_pc(next_pc)?;
    Ok(MmioOutcome {
        op,
        size,
        accesses: 1,
        next_pc,
    })
}

/// Fetches and decodes the instruction at `fault_ip`.
fn fetch(
    vcpu: &mut (impl Vcpu + ?Sized),
    mem: &(impl GuestMemory + ?Sized),
    fault_ip: u64,
) -> Result<MemInsn, MmioError> {
    let va = GuestVirtAddr(fault_ip);
    let cfg = MmuConfig::read_for(vcpu, va)?;
    let t = stage1::translate(&cfg, mem, va, AccessKind::Fetch).map_err(MmioError::Fetch)?;
    let word = mem.read_u32(t.gpa).map_err(MmioError::FetchMem)?;
    insn::decode(word).map_err(MmioError::Decode)
}

fn emulate_insn(
    vcpu: &mut (impl Vcpu + ?Sized),
    mem: &(impl GuestMemory + ?Sized),
    abort: &DataAbort,
    fault_ip: u64,
    fault_gpa: GuestPhysAddr,
    bus: &mut (impl MmioBus + ?Sized),
) -> Result<MmioOutcome, MmioError> {
    // The instruction is not known yet: any register may be its base, offset or transfer.
    vcpu.expect_gprs(crate::vcpu::ALL_GPRS);
    // PSTATE.nRW (M[4]) set: the guest runs AArch32 code, which the A64 decoder must not read.
    if vcpu.pstate()? & (1 << 4) != 0 {
        return Err(MmioError::Aarch32);
    }
    let i = fetch(vcpu, mem, fault_ip)?;
    if abort.wnr != matches!(i.dir, Direction::Store) {
        return Err(MmioError::DirectionMismatch);
    }
    let base = if i.rn == 31 {
        vcpu.sp()?
    } else {
        vcpu.gpr(i.rn)?
    };
    let offset = match i.offset {
        Offset::Imm(imm) => imm as u64,
        Offset::Reg { rm, extend, shift } => extend.apply(read_xzr(vcpu, rm)?, shift),
    };
    let updated = base.wrapping_add(offset);
    let addr = match i.writeback {
        Writeback::Post => base,
        Writeback::None | Writeback::Pre => updated,
    };
    // The fault reports the first access that faulted; for a pair that may be either half.
    let size = u64::from(i.size);
    let first_gpa = if addr & PAGE_MASK == fault_gpa.raw() & PAGE_MASK {
        fault_gpa
    } else if i.rt2.is_some() && addr.wrapping_add(size) & PAGE_MASK == fault_gpa.raw() & PAGE_MASK
    {
        GuestPhysAddr(fault_gpa.raw().wrapping_sub(size))
    } else {
        return Err(MmioError::AddressMismatch {
            computed: GuestVirtAddr(addr),
            fault: fault_gpa,
        });
    };
    // The whole access must stay in the faulting page (checked on the page offset, so neither
    // the VA nor the GPA arithmetic can wrap unnoticed).
    if (addr & PAGE_MASK) + u64::from(i.access_len()) > PAGE_MASK + 1
        || first_gpa.raw() & !PAGE_MASK != fault_gpa.raw() & !PAGE_MASK
    {
        return Err(MmioError::CrossesPage);
    }
    let second_gpa = GuestPhysAddr(first_gpa.raw().wrapping_add(size));
    let accesses = match i.dir {
        Direction::Store => {
            let v1 = read_xzr(vcpu, i.rt)?;
            match i.rt2 {
                None => {
                    bus_write(bus, first_gpa, i.size, v1)?;
                    1
                }
                Some(rt2) => {
                    let v2 = read_xzr(vcpu, rt2)?;
                    bus_write(bus, first_gpa, i.size, v1)?;
                    bus_write(bus, second_gpa, i.size, v2)?;
                    2
                }
            }
        }
        Direction::Load => {
            let v1 = i.load_value(bus_read(bus, first_gpa, i.size)?);
            match i.rt2 {
                None => {
                    write_xzr(vcpu, i.rt, v1)?;
                    1
                }
                Some(rt2) => {
                    let v2 = i.load_value(bus_read(bus, second_gpa, i.size)?);
                    write_xzr(vcpu, i.rt, v1)?;
                    write_xzr(vcpu, rt2, v2)?;
                    2
                }
            }
        }
    };
    if !matches!(i.writeback, Writeback::None) {
        if i.rn == 31 {
            vcpu.set_sp(updated)?;
        } else {
            vcpu.set_gpr(i.rn, updated)?;
        }
    }
    let next_pc = fault_ip.wrapping_add(4);
    vcpu.set_pc(next_pc)?;
    let op = match i.dir {
        Direction::Load => AccessOp::Load,
        Direction::Store => AccessOp::Store,
    };
    Ok(MmioOutcome {
        op,
        size: i.size,
        accesses,
        next_pc,
    })
}
