//! Synchronous exception injection into an AArch64 guest: the guest's own EL1 vector runs, exactly
//! as if the exception had been taken from hardware to EL1.
//!
//! This module owns the exception-entry model (Arm ARM, `AArch64.TakeException` to EL1) and the
//! ESR_EL1 syndromes of the exceptions the VMM reflects into a guest: data and instruction aborts
//! (synchronous external aborts first of all) and "unknown reason" (an UNDEFINED instruction).
//! [`compute_entry`] is the pure model; [`inject_sync`] and [`inject_sync_with`] read the few
//! registers it needs from a [`Vcpu`] and write the result back.
//!
//! # What is modelled
//!
//! Vector: `VBAR_EL1[63:11]` plus the group offset — current EL with SP_EL0 `+0x000`, current EL
//! with SP_EL1 `+0x200`, lower EL in AArch64 `+0x400`, lower EL in AArch32 `+0x600` — plus `0x000`
//! for a synchronous exception. The guest may be at EL1 (EL1t or EL1h), at EL0 in AArch64, or at
//! EL0 in AArch32 (User mode; EL1 itself is always AArch64 here). A PSTATE that says EL2 or EL3 or
//! holds a reserved mode is a hypervisor-side impossibility and is refused with a typed error
//! before anything is written.
//!
//! Registers: `ELR_EL1` = the faulting instruction's address (not retired), `SPSR_EL1` = the old
//! PSTATE (the SPSR_EL2 image) unchanged, `ESR_EL1` = the syndrome, `FAR_EL1` = the faulting
//! virtual address for aborts (left untouched, i.e. UNKNOWN, for "unknown reason" and when
//! FnV = 1). From AArch32 the PC and the address are 32-bit, so ELR_EL1 and FAR_EL1 get their low
//! 32 bits zero-extended.
//!
//! New PSTATE, after `AArch64.TakeException`: M\[4:0\] = EL1h (`0b00101`), D, A, I and F set; N, Z,
//! C, V, DIT and PAN kept (these sit at the same bit positions in the AArch64 and the AArch32
//! SPSR_ELx layouts); PAN set when SCTLR_EL1.SPAN is 0; SSBS = SCTLR_EL1.DSSBS; TCO set when MTE
//! is exposed to the guest ([`InjectOptions::mte`]); SS, IL, UAO, BTYPE, the AArch32 IT, T, GE, Q
//! and E bits cleared. Not modelled (their PSTATE bits come out 0, which is right on a PE without
//! them, such as the Cortex-A53/A57 of QEMU virt): FEAT_NMI (ALLINT), FEAT_EBEP/SEBEP (PM,
//! PPEND), FEAT_GCS (EXLOCK), FEAT_PAuth_LR (PACM), FEAT_RAS error types (SET = 0), FEAT_SME
//! (streaming mode is not left), and cache-maintenance aborts (CM = 0). The stack pointer needs no
//! write: SP_EL0 and SP_EL1 are banked and the new PSTATE.SP selects SP_EL1.
//!
//! Syndromes (ESR_EL1): EC 0x24/0x25 for a data abort from a lower/the same EL, 0x20/0x21 for an
//! instruction abort, 0x00 for "unknown reason"; IL = 1 for all of them (IL is RES1 for
//! instruction aborts, for data aborts with ISV = 0 and for EC 0x00); ISV = 0 (always so for
//! ESR_EL1); FnV = 0 with a valid FAR, or 1 where the caller does not know the address and the
//! fault is a synchronous external abort not on a walk (the only case FnV is defined for); EA = 0;
//! S1PTW = 0 (RES0 outside stage-2 faults); WnR as given.
//!
//! Register accesses: the PSTATE, the PC (unless the caller passes the fault IP, which seL4's
//! fault message carries) and VBAR_EL1 are read — SCTLR_EL1 only if [`SctlrSource::Read`] is
//! chosen — then ELR_EL1, SPSR_EL1, ESR_EL1, FAR_EL1 (aborts with a valid address), PSTATE and PC
//! are written, each once. Every check happens before the first write; a register write that fails
//! part-way leaves the vCPU partly updated, which the caller treats as a hypervisor fault.

use crate::addr::GuestVirtAddr;
use crate::vcpu::{SysReg, Vcpu, VcpuError};

/// PSTATE/SPSR bit positions (SPSR_ELx layout, Arm ARM register description of SPSR_EL1).
mod psr {
    pub const M_MASK: u64 = 0x1f;
    pub const M_NRW: u64 = 1 << 4;
    pub const M_EL_SHIFT: u32 = 2;
    pub const M_SP: u64 = 1 << 0;
    pub const M_RES0: u64 = 1 << 1;
    pub const M_EL1H: u64 = 0b0_0101;
    pub const M_AARCH32_USR: u64 = 0b1_0000;
    pub const DAIF: u64 = 0b1111 << 6;
    pub const SSBS: u64 = 1 << 12;
    pub const PAN: u64 = 1 << 22;
    pub const DIT: u64 = 1 << 24;
    pub const TCO: u64 = 1 << 25;
    pub const NZCV: u64 = 0xf << 28;
}

/// SCTLR_EL1 bits that exception entry consults.
mod sctlr {
    /// Set PAN on exception entry when 0 (RES1 without FEAT_PAN).
    pub const SPAN: u64 = 1 << 23;
    /// PSTATE.SSBS on exception entry (RES0 without FEAT_SSBS).
    pub const DSSBS: u64 = 1 << 44;
}

/// ESR_ELx fields (Arm ARM register description of ESR_EL1).
mod esr {
    pub const EC_SHIFT: u32 = 26;
    pub const IL: u64 = 1 << 25;
    pub const FNV: u64 = 1 << 10;
    pub const WNR: u64 = 1 << 6;
    pub const EC_UNKNOWN: u64 = 0x00;
    pub const EC_IABT_LOW: u64 = 0x20;
    pub const EC_IABT_CUR: u64 = 0x21;
    pub const EC_DABT_LOW: u64 = 0x24;
    pub const EC_DABT_CUR: u64 = 0x25;
}

/// VBAR_EL1\[10:0\] are RES0: the vector table is 2 KiB aligned and the entry offset fills them.
const VBAR_ALIGN_MASK: u64 = 0x7ff;

/// A translation lookup level at which a walk can fault: 0 to 3 (level -1 of FEAT_LPA2 is not
/// modelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WalkLevel {
    /// Level 0.
    L0,
    /// Level 1.
    L1,
    /// Level 2.
    L2,
    /// Level 3.
    L3,
}

impl WalkLevel {
    const fn bits(self) -> u8 {
        match self {
            WalkLevel::L0 => 0,
            WalkLevel::L1 => 1,
            WalkLevel::L2 => 2,
            WalkLevel::L3 => 3,
        }
    }
}

/// A lookup level that can hold a block or page descriptor: 1 to 3. Access flag and permission
/// faults "can only result from a Block or Page translation table descriptor, they cannot occur at
/// level 0" (ESR_EL1 DFSC/IFSC description).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockLevel {
    /// Level 1.
    L1,
    /// Level 2.
    L2,
    /// Level 3.
    L3,
}

impl BlockLevel {
    const fn bits(self) -> u8 {
        match self {
            BlockLevel::L1 => 1,
            BlockLevel::L2 => 2,
            BlockLevel::L3 => 3,
        }
    }
}

/// The fault status code (DFSC/IFSC, ESR ISS\[5:0\]) of an injected abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultStatus {
    /// Translation fault at the given level: `0b0001LL`.
    Translation(WalkLevel),
    /// Access flag fault at the given level: `0b0010LL`.
    AccessFlag(BlockLevel),
    /// Permission fault at the given level: `0b0011LL`.
    Permission(BlockLevel),
    /// Synchronous external abort, not on a translation table walk: `0b010000`.
    SyncExternal,
    /// Synchronous external abort on a translation table walk at the given level: `0b0101LL`.
    SyncExternalOnWalk(WalkLevel),
    /// Alignment fault: `0b100001` (data aborts only; IFSC has no such code).
    Alignment,
}

impl FaultStatus {
    /// The 6-bit DFSC/IFSC encoding.
    pub const fn code(self) -> u8 {
        match self {
            FaultStatus::Translation(l) => 0b00_0100 | l.bits(),
            FaultStatus::AccessFlag(l) => 0b00_1000 | l.bits(),
            FaultStatus::Permission(l) => 0b00_1100 | l.bits(),
            FaultStatus::SyncExternal => 0b01_0000,
            FaultStatus::SyncExternalOnWalk(l) => 0b01_0100 | l.bits(),
            FaultStatus::Alignment => 0b10_0001,
        }
    }
}

/// A synchronous exception the VMM makes the guest take at EL1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestException {
    /// A synchronous external abort on a data access (DFSC `0x10`, FnV = 0): the usual answer to
    /// an access to guest-physical space that nothing backs.
    SyncExternalAbortData {
        /// The faulting virtual address (FAR_EL1).
        far: GuestVirtAddr,
        /// Whether the access was a write (ESR WnR).
        wnr: bool,
    },
    /// A synchronous external abort on an instruction fetch (IFSC `0x10`, FnV = 0).
    SyncExternalAbortInstruction {
        /// The faulting virtual address (FAR_EL1), normally the PC.
        far: GuestVirtAddr,
    },
    /// A data abort with any modelled fault status.
    DataAbort {
        /// The faulting virtual address, or `None` if unknown: then FnV = 1 and FAR_EL1 is not
        /// written, which the architecture allows only for [`FaultStatus::SyncExternal`].
        far: Option<GuestVirtAddr>,
        /// Whether the access was a write (ESR WnR).
        wnr: bool,
        /// The fault status code.
        fsc: FaultStatus,
    },
    /// An instruction abort with any modelled fault status except [`FaultStatus::Alignment`].
    InstructionAbort {
        /// The faulting virtual address, or `None` if unknown (only for
        /// [`FaultStatus::SyncExternal`], as for [`GuestException::DataAbort`]).
        far: Option<GuestVirtAddr>,
        /// The fault status code.
        fsc: FaultStatus,
    },
    /// An exception for an unknown reason (EC `0x00`, IL = 1, ISS = 0), as for an UNDEFINED
    /// instruction. FAR_EL1 is not written.
    Undefined,
}

/// The guest state an exception is taken from, decoded from its PSTATE (SPSR_EL2 image).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceState {
    /// EL0 in AArch32 (User mode, M\[4:0\] = `0b10000`): vector group `+0x600`.
    El0Aarch32,
    /// EL0 in AArch64 (EL0t, M\[4:0\] = `0b00000`): vector group `+0x400`.
    El0Aarch64,
    /// EL1 using SP_EL0 (EL1t, M\[4:0\] = `0b00100`): vector group `+0x000`.
    El1Sp0,
    /// EL1 using SP_EL1 (EL1h, M\[4:0\] = `0b00101`): vector group `+0x200`.
    El1Spx,
}

impl SourceState {
    /// Decodes the mode field of `pstate`; anything but the four states a guest can be in is an
    /// error.
    pub const fn from_pstate(pstate: u64) -> Result<Self, InjectError> {
        let m = pstate & psr::M_MASK;
        if m & psr::M_NRW != 0 {
            // AArch32. With EL1 in AArch64, only EL0 (User mode) may be AArch32.
            return if m == psr::M_AARCH32_USR {
                Ok(SourceState::El0Aarch32)
            } else {
                Err(InjectError::InvalidMode { pstate })
            };
        }
        let el = (m >> psr::M_EL_SHIFT) as u8;
        if el >= 2 {
            return Err(InjectError::NotGuestEl { el, pstate });
        }
        if m & psr::M_RES0 != 0 {
            return Err(InjectError::InvalidMode { pstate });
        }
        match (el, m & psr::M_SP != 0) {
            (0, false) => Ok(SourceState::El0Aarch64),
            // EL0 with SP = 1 is a reserved encoding.
            (0, true) => Err(InjectError::InvalidMode { pstate }),
            (_, false) => Ok(SourceState::El1Sp0),
            (_, true) => Ok(SourceState::El1Spx),
        }
    }

    /// Offset of the vector group from VBAR_EL1 (the synchronous entry is first in each group).
    pub const fn vector_offset(self) -> u64 {
        match self {
            SourceState::El1Sp0 => 0x000,
            SourceState::El1Spx => 0x200,
            SourceState::El0Aarch64 => 0x400,
            SourceState::El0Aarch32 => 0x600,
        }
    }

    /// Whether the exception comes from a lower Exception level (EL0) than its target (EL1).
    pub const fn is_lower_el(self) -> bool {
        matches!(self, SourceState::El0Aarch32 | SourceState::El0Aarch64)
    }

    /// Whether the source state is AArch32.
    pub const fn is_aarch32(self) -> bool {
        matches!(self, SourceState::El0Aarch32)
    }
}

/// Why an exception could not be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectError {
    /// A register read or write failed.
    Vcpu(VcpuError),
    /// The guest PSTATE says EL2 or EL3, which a guest never runs at: a hypervisor fault.
    NotGuestEl {
        /// The Exception level in PSTATE.M\[3:2\].
        el: u8,
        /// The PSTATE read.
        pstate: u64,
    },
    /// The guest PSTATE holds a reserved or impossible mode (AArch64 with M\[1\] set, EL0 with
    /// SP = 1, or an AArch32 mode other than User).
    InvalidMode {
        /// The PSTATE read.
        pstate: u64,
    },
    /// An instruction abort with [`FaultStatus::Alignment`], which IFSC cannot encode.
    NoSuchFetchFault,
    /// An unknown fault address (FnV = 1) with a fault status other than
    /// [`FaultStatus::SyncExternal`], for which FAR must be valid.
    FarRequired,
}

impl From<VcpuError> for InjectError {
    fn from(e: VcpuError) -> Self {
        InjectError::Vcpu(e)
    }
}

/// Where the SCTLR_EL1 value that exception entry consults (SPAN for PAN, DSSBS for SSBS) comes
/// from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SctlrSource {
    /// The PE implements neither FEAT_PAN nor FEAT_SSBS, so SPAN reads as 1 and DSSBS as 0 and
    /// there is nothing to read (ARMv8.0, e.g. Cortex-A53/A57 on QEMU virt).
    #[default]
    NoPanNoSsbs,
    /// Read SCTLR_EL1 from the vCPU (one more register read).
    Read,
    /// The caller already holds the guest's SCTLR_EL1 value.
    Known(u64),
}

/// Knobs of [`inject_sync_with`]; the default reads the PC and assumes an ARMv8.0 PE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InjectOptions {
    /// The faulting instruction's address if the caller has it (seL4's fault message carries
    /// it); `None` reads it with [`Vcpu::pc`].
    pub fault_pc: Option<u64>,
    /// Where SCTLR_EL1 comes from.
    pub sctlr: SctlrSource,
    /// Whether FEAT_MTE is exposed to the guest (PSTATE.TCO is then set on entry).
    pub mte: bool,
}

/// Everything the exception entry writes, as computed by [`compute_entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionEntry {
    /// New ELR_EL1: the faulting instruction's address.
    pub elr: u64,
    /// New SPSR_EL1: the old PSTATE.
    pub spsr: u64,
    /// New ESR_EL1.
    pub esr: u64,
    /// New FAR_EL1, or `None` to leave it alone (UNKNOWN).
    pub far: Option<u64>,
    /// New PSTATE (EL1h, DAIF masked).
    pub pstate: u64,
    /// New PC: the synchronous vector entry.
    pub pc: u64,
}

/// The normalised content of a [`GuestException`].
#[derive(Clone, Copy)]
enum Kind {
    Data {
        far: Option<GuestVirtAddr>,
        wnr: bool,
        fsc: FaultStatus,
    },
    Fetch {
        far: Option<GuestVirtAddr>,
        fsc: FaultStatus,
    },
    Unknown,
}

impl GuestException {
    const fn kind(self) -> Result<Kind, InjectError> {
        let kind = match self {
            GuestException::SyncExternalAbortData { far, wnr } => Kind::Data {
                far: Some(far),
                wnr,
                fsc: FaultStatus::SyncExternal,
            },
            GuestException::SyncExternalAbortInstruction { far } => Kind::Fetch {
                far: Some(far),
                fsc: FaultStatus::SyncExternal,
            },
            GuestException::DataAbort { far, wnr, fsc } => Kind::Data { far, wnr, fsc },
            GuestException::InstructionAbort { far, fsc } => {
                if matches!(fsc, FaultStatus::Alignment) {
                    return Err(InjectError::NoSuchFetchFault);
                }
                Kind::Fetch { far, fsc }
            }
            GuestException::Undefined => Kind::Unknown,
        };
        match kind {
            Kind::Data { far: None, fsc, .. } | Kind::Fetch { far: None, fsc }
                if !matches!(fsc, FaultStatus::SyncExternal) =>
            {
                Err(InjectError::FarRequired)
            }
            _ => Ok(kind),
        }
    }

    /// Checks that the exception is encodable (see [`InjectError::NoSuchFetchFault`] and
    /// [`InjectError::FarRequired`]) without touching any register.
    pub const fn validate(self) -> Result<(), InjectError> {
        match self.kind() {
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The ESR_EL1 value for this exception taken from `from` to EL1.
    pub const fn esr(self, from: SourceState) -> Result<u64, InjectError> {
        let lower = from.is_lower_el();
        let (ec, iss) = match self.kind() {
            Err(e) => return Err(e),
            Ok(Kind::Unknown) => (esr::EC_UNKNOWN, 0),
            Ok(Kind::Data { far, wnr, fsc }) => {
                let ec = if lower {
                    esr::EC_DABT_LOW
                } else {
                    esr::EC_DABT_CUR
                };
                let mut iss = fsc.code() as u64;
                if wnr {
                    iss |= esr::WNR;
                }
                if far.is_none() {
                    iss |= esr::FNV;
                }
                (ec, iss)
            }
            Ok(Kind::Fetch { far, fsc }) => {
                let ec = if lower {
                    esr::EC_IABT_LOW
                } else {
                    esr::EC_IABT_CUR
                };
                let mut iss = fsc.code() as u64;
                if far.is_none() {
                    iss |= esr::FNV;
                }
                (ec, iss)
            }
        };
        Ok((ec << esr::EC_SHIFT) | esr::IL | iss)
    }

    /// The FAR_EL1 value to write, if any (zero-extended low 32 bits from AArch32).
    pub const fn far(self, from: SourceState) -> Result<Option<u64>, InjectError> {
        let far = match self.kind() {
            Err(e) => return Err(e),
            Ok(Kind::Unknown) => None,
            Ok(Kind::Data { far, .. }) | Ok(Kind::Fetch { far, .. }) => far,
        };
        Ok(match far {
            None => None,
            Some(va) if from.is_aarch32() => Some(va.0 & 0xffff_ffff),
            Some(va) => Some(va.0),
        })
    }
}

/// The PSTATE after taking an exception to EL1h from `old` (see the module documentation for the
/// bits modelled); `sctlr_el1` supplies SPAN and DSSBS, `mte` whether TCO is set.
pub const fn entry_pstate(old: u64, sctlr_el1: u64, mte: bool) -> u64 {
    let mut new = old & (psr::NZCV | psr::DIT | psr::PAN);
    if sctlr_el1 & sctlr::SPAN == 0 {
        new |= psr::PAN;
    }
    if sctlr_el1 & sctlr::DSSBS != 0 {
        new |= psr::SSBS;
    }
    if mte {
        new |= psr::TCO;
    }
    new | psr::DAIF | psr::M_EL1H
}

/// The synchronous vector address for an exception from `from`: `VBAR_EL1[63:11]` joined with
/// the group offset.
pub const fn vector_address(vbar_el1: u64, from: SourceState) -> u64 {
    (vbar_el1 & !VBAR_ALIGN_MASK) | from.vector_offset()
}

/// The SCTLR_EL1 value a PE without FEAT_PAN and FEAT_SSBS behaves as having for exception entry
/// (SPAN is RES1, DSSBS RES0).
pub const SCTLR_NO_PAN_NO_SSBS: u64 = sctlr::SPAN;

/// The pure exception-entry model: every register value that taking `exc` to EL1 produces, from
/// the guest's PSTATE, faulting PC, VBAR_EL1 and SCTLR_EL1.
pub const fn compute_entry(
    exc: GuestException,
    pstate: u64,
    pc: u64,
    vbar_el1: u64,
    sctlr_el1: u64,
    mte: bool,
) -> Result<ExceptionEntry, InjectError> {
    let from = match SourceState::from_pstate(pstate) {
        Ok(s) => s,
        Err(e) => return Err(e),
    };
    let esr = match exc.esr(from) {
        Ok(v) => v,
        Err(e) => return Err(e),
    };
    let far = match exc.far(from) {
        Ok(v) => v,
        Err(e) => return Err(e),
    };
    let elr = if from.is_aarch32() {
        pc & 0xffff_ffff
    } else {
        pc
    };
    Ok(ExceptionEntry {
        elr,
        spsr: pstate,
        esr,
        far,
        pstate: entry_pstate(pstate, sctlr_el1, mte),
        pc: vector_address(vbar_el1, from),
    })
}

/// Makes the guest take `exc` at EL1 now, reading the PC from the vCPU and assuming an ARMv8.0 PE
/// (see [`InjectOptions`]). Reads PSTATE, PC and VBAR_EL1; writes ELR_EL1, SPSR_EL1, ESR_EL1,
/// FAR_EL1 (aborts), PSTATE and PC.
pub fn inject_sync(vcpu: &mut impl Vcpu, exc: GuestException) -> Result<(), InjectError> {
    inject_sync_with(vcpu, exc, InjectOptions::default()).map(|_| ())
}

/// [`inject_sync`] with options; returns what was written.
pub fn inject_sync_with(
    vcpu: &mut impl Vcpu,
    exc: GuestException,
    opts: InjectOptions,
) -> Result<ExceptionEntry, InjectError> {
    exc.validate()?;
    let pstate = vcpu.pstate()?;
    SourceState::from_pstate(pstate)?;
    let pc = match opts.fault_pc {
        Some(pc) => pc,
        None => vcpu.pc()?,
    };
    let vbar = vcpu.sysreg(SysReg::VbarEl1)?;
    let sctlr = match opts.sctlr {
        SctlrSource::NoPanNoSsbs => SCTLR_NO_PAN_NO_SSBS,
        SctlrSource::Read => vcpu.sysreg(SysReg::SctlrEl1)?,
        SctlrSource::Known(v) => v,
    };
    let entry = compute_entry(exc, pstate, pc, vbar, sctlr, opts.mte)?;
    vcpu.set_sysreg(SysReg::ElrEl1, entry.elr)?;
    vcpu.set_sysreg(SysReg::SpsrEl1, entry.spsr)?;
    vcpu.set_sysreg(SysReg::EsrEl1, entry.esr)?;
    if let Some(far) = entry.far {
        vcpu.set_sysreg(SysReg::FarEl1, far)?;
    }
    vcpu.set_pstate(entry.pstate)?;
    vcpu.set_pc(entry.pc)?;
    Ok(entry)
}
