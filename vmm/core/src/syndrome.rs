//! ESR_EL2 decoding: the exception class and the class-specific syndrome fields (ISS) of every
//! trap an AArch64 guest raises to EL2 that the VMM handles, per the Arm ARM (DDI 0487,
//! "ESR_EL2, Exception Syndrome Register (EL2)").
//!
//! [`Syndrome::decode`] never fails: an exception class the VMM does not handle becomes
//! [`Class::Unknown`] with its raw ISS. [`Syndrome::encode`] is the inverse on every field the
//! decoder keeps (RES0 bits of a class are dropped).

/// Exception class values (ESR_EL2.EC) the decoder knows.
pub mod ec {
    /// Unknown reason (also: an UNDEFINED instruction trapped to EL2).
    pub const UNKNOWN: u8 = 0x00;
    /// Trapped WFI, WFE, WFIT or WFET.
    pub const WFX: u8 = 0x01;
    /// HVC executed in AArch64 state.
    pub const HVC64: u8 = 0x16;
    /// SMC executed in AArch64 state (trapped by HCR_EL2.TSC).
    pub const SMC64: u8 = 0x17;
    /// Trapped MSR, MRS or system instruction in AArch64 state.
    pub const SYS64: u8 = 0x18;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOWER: u8 = 0x20;
    /// Data abort from a lower exception level.
    pub const DABT_LOWER: u8 = 0x24;
}

const fn bit(v: u64, n: u32) -> bool {
    (v >> n) & 1 != 0
}

const fn field(v: u64, lo: u32, width: u32) -> u64 {
    (v >> lo) & ((1u64 << width) - 1)
}

const fn b(v: bool, n: u32) -> u64 {
    (v as u64) << n
}

/// Data abort from a lower EL (EC 0x24): ISS fields, decoded whatever ISV says (when ISV is 0,
/// bits 23:14 hold no access syndrome and are normally zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataAbort {
    /// ISV (bit 24): bits 23:14 hold a valid instruction syndrome.
    pub isv: bool,
    /// SAS (bits 23:22): access size, log2 of bytes.
    pub sas: u8,
    /// SSE (bit 21): the load sign-extends.
    pub sse: bool,
    /// SRT (bits 20:16): the transfer register (31 means XZR).
    pub srt: u8,
    /// SF (bit 15): the transfer register is 64-bit (X) rather than 32-bit (W).
    pub sf: bool,
    /// AR (bit 14): acquire/release semantics.
    pub ar: bool,
    /// VNCR (bit 13): the fault came from the use of VNCR_EL2 (FEAT_NV2).
    pub vncr: bool,
    /// Bits 12:11: SET (synchronous error type) or LST (FEAT_LS64), raw.
    pub set: u8,
    /// FnV (bit 10): FAR is not valid.
    pub fnv: bool,
    /// EA (bit 9): external abort type.
    pub ea: bool,
    /// CM (bit 8): the fault came from a cache maintenance or address translation instruction.
    pub cm: bool,
    /// S1PTW (bit 7): stage-2 fault on a stage-1 translation table walk.
    pub s1ptw: bool,
    /// WnR (bit 6): the access was a write.
    pub wnr: bool,
    /// DFSC (bits 5:0): data fault status code.
    pub dfsc: u8,
}

impl DataAbort {
    /// The access size in bytes (1, 2, 4 or 8) that SAS encodes; meaningful when `isv`.
    pub const fn access_size(&self) -> u8 {
        1 << (self.sas & 3)
    }
    /// The fault status code, classified.
    pub const fn fault_status(&self) -> FaultStatus {
        FaultStatus::decode(self.dfsc)
    }
}

/// Instruction abort from a lower EL (EC 0x20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstructionAbort {
    /// Bits 12:11: SET (synchronous error type), raw.
    pub set: u8,
    /// FnV (bit 10): FAR is not valid.
    pub fnv: bool,
    /// EA (bit 9): external abort type.
    pub ea: bool,
    /// S1PTW (bit 7): stage-2 fault on a stage-1 translation table walk.
    pub s1ptw: bool,
    /// IFSC (bits 5:0): instruction fault status code.
    pub ifsc: u8,
}

impl InstructionAbort {
    /// The fault status code, classified.
    pub const fn fault_status(&self) -> FaultStatus {
        FaultStatus::decode(self.ifsc)
    }
}

/// Trapped MSR/MRS/system instruction (EC 0x18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SysRegTrap {
    /// Op0 (bits 21:20).
    pub op0: u8,
    /// Op2 (bits 19:17).
    pub op2: u8,
    /// Op1 (bits 16:14).
    pub op1: u8,
    /// CRn (bits 13:10).
    pub crn: u8,
    /// Rt (bits 9:5), 31 meaning XZR.
    pub rt: u8,
    /// CRm (bits 4:1).
    pub crm: u8,
    /// Direction (bit 0): `true` for a read (MRS), `false` for a write (MSR).
    pub read: bool,
}

impl SysRegTrap {
    /// The register's (op0, op1, CRn, CRm, op2) packed as MRS/MSR encode them in bits 20:5
    /// (`op0:op1:CRn:CRm:op2`), a convenient key for register tables.
    pub const fn key(&self) -> u16 {
        ((self.op0 as u16 & 3) << 14)
            | ((self.op1 as u16 & 7) << 11)
            | ((self.crn as u16 & 15) << 7)
            | ((self.crm as u16 & 15) << 3)
            | (self.op2 as u16 & 7)
    }
}

/// Which wait instruction trapped (ESR.TI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WfxKind {
    /// WFI.
    Wfi,
    /// WFE.
    Wfe,
    /// WFIT (FEAT_WFxT).
    Wfit,
    /// WFET (FEAT_WFxT).
    Wfet,
}

/// Trapped WFI/WFE/WFIT/WFET (EC 0x01).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WfxTrap {
    /// CV (bit 24): COND is valid (AArch32 only; 1 from AArch64).
    pub cv: bool,
    /// COND (bits 23:20).
    pub cond: u8,
    /// RN (bits 9:5): the timeout register of WFIT/WFET.
    pub rn: u8,
    /// RV (bit 2): RN is valid.
    pub rv: bool,
    /// TI (bits 1:0).
    pub kind: WfxKind,
}

/// The class-specific part of a syndrome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// EC 0x24.
    DataAbort(DataAbort),
    /// EC 0x20.
    InstructionAbort(InstructionAbort),
    /// EC 0x18.
    SysReg(SysRegTrap),
    /// EC 0x16: HVC with its immediate.
    Hvc {
        /// imm16 (ISS bits 15:0).
        imm16: u16,
    },
    /// EC 0x17: SMC with its immediate.
    Smc {
        /// imm16 (ISS bits 15:0).
        imm16: u16,
    },
    /// EC 0x01.
    Wfx(WfxTrap),
    /// Any other exception class, with its raw ISS (bits 24:0).
    Unknown {
        /// The exception class (6 bits).
        ec: u8,
        /// The raw ISS.
        iss: u32,
    },
}

/// A decoded ESR_EL2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Syndrome {
    /// IL (bit 25): the trapped instruction was 32-bit.
    pub il: bool,
    /// ISS2 (bits 55:32), raw.
    pub iss2: u32,
    /// Class and ISS.
    pub class: Class,
}

impl Syndrome {
    /// Decodes a 64-bit ESR_EL2 value (bits 63:56 are RES0 and ignored).
    pub const fn decode(esr: u64) -> Self {
        let ec = field(esr, 26, 6) as u8;
        let class = match ec {
            ec::DABT_LOWER => Class::DataAbort(DataAbort {
                isv: bit(esr, 24),
                sas: field(esr, 22, 2) as u8,
                sse: bit(esr, 21),
                srt: field(esr, 16, 5) as u8,
                sf: bit(esr, 15),
                ar: bit(esr, 14),
                vncr: bit(esr, 13),
                set: field(esr, 11, 2) as u8,
                fnv: bit(esr, 10),
                ea: bit(esr, 9),
                cm: bit(esr, 8),
                s1ptw: bit(esr, 7),
                wnr: bit(esr, 6),
                dfsc: field(esr, 0, 6) as u8,
            }),
            ec::IABT_LOWER => Class::InstructionAbort(InstructionAbort {
                set: field(esr, 11, 2) as u8,
                fnv: bit(esr, 10),
                ea: bit(esr, 9),
                s1ptw: bit(esr, 7),
                ifsc: field(esr, 0, 6) as u8,
            }),
            ec::SYS64 => Class::SysReg(SysRegTrap {
                op0: field(esr, 20, 2) as u8,
                op2: field(esr, 17, 3) as u8,
                op1: field(esr, 14, 3) as u8,
                crn: field(esr, 10, 4) as u8,
                rt: field(esr, 5, 5) as u8,
                crm: field(esr, 1, 4) as u8,
                read: bit(esr, 0),
            }),
            ec::HVC64 => Class::Hvc {
                imm16: field(esr, 0, 16) as u16,
            },
            ec::SMC64 => Class::Smc {
                imm16: field(esr, 0, 16) as u16,
            },
            ec::WFX => Class::Wfx(WfxTrap {
                cv: bit(esr, 24),
                cond: field(esr, 20, 4) as u8,
                rn: field(esr, 5, 5) as u8,
                rv: bit(esr, 2),
                kind: match field(esr, 0, 2) {
                    0 => WfxKind::Wfi,
                    1 => WfxKind::Wfe,
                    2 => WfxKind::Wfit,
                    _ => WfxKind::Wfet,
                },
            }),
            _ => Class::Unknown {
                ec,
                iss: field(esr, 0, 25) as u32,
            },
        };
        Syndrome {
            il: bit(esr, 25),
            iss2: field(esr, 32, 24) as u32,
            class,
        }
    }

    /// Decodes the 32-bit syndrome seL4 puts in a fault message (ISS2 is then zero).
    pub const fn decode32(esr: u32) -> Self {
        Self::decode(esr as u64)
    }

    /// The exception class.
    pub const fn ec(&self) -> u8 {
        match self.class {
            Class::DataAbort(_) => ec::DABT_LOWER,
            Class::InstructionAbort(_) => ec::IABT_LOWER,
            Class::SysReg(_) => ec::SYS64,
            Class::Hvc { .. } => ec::HVC64,
            Class::Smc { .. } => ec::SMC64,
            Class::Wfx(_) => ec::WFX,
            Class::Unknown { ec, .. } => ec & 0x3f,
        }
    }

    /// Encodes the syndrome back to an ESR_EL2 value (fields are masked to their widths).
    pub const fn encode(&self) -> u64 {
        let iss: u64 = match self.class {
            Class::DataAbort(d) => {
                b(d.isv, 24)
                    | ((d.sas as u64 & 3) << 22)
                    | b(d.sse, 21)
                    | ((d.srt as u64 & 31) << 16)
                    | b(d.sf, 15)
                    | b(d.ar, 14)
                    | b(d.vncr, 13)
                    | ((d.set as u64 & 3) << 11)
                    | b(d.fnv, 10)
                    | b(d.ea, 9)
                    | b(d.cm, 8)
                    | b(d.s1ptw, 7)
                    | b(d.wnr, 6)
                    | (d.dfsc as u64 & 63)
            }
            Class::InstructionAbort(i) => {
                ((i.set as u64 & 3) << 11)
                    | b(i.fnv, 10)
                    | b(i.ea, 9)
                    | b(i.s1ptw, 7)
                    | (i.ifsc as u64 & 63)
            }
            Class::SysReg(s) => {
                ((s.op0 as u64 & 3) << 20)
                    | ((s.op2 as u64 & 7) << 17)
                    | ((s.op1 as u64 & 7) << 14)
                    | ((s.crn as u64 & 15) << 10)
                    | ((s.rt as u64 & 31) << 5)
                    | ((s.crm as u64 & 15) << 1)
                    | b(s.read, 0)
            }
            Class::Hvc { imm16 } | Class::Smc { imm16 } => imm16 as u64,
            Class::Wfx(w) => {
                b(w.cv, 24)
                    | ((w.cond as u64 & 15) << 20)
                    | ((w.rn as u64 & 31) << 5)
                    | b(w.rv, 2)
                    | match w.kind {
                        WfxKind::Wfi => 0,
                        WfxKind::Wfe => 1,
                        WfxKind::Wfit => 2,
                        WfxKind::Wfet => 3,
                    }
            }
            Class::Unknown { iss, .. } => iss as u64 & 0x1ff_ffff,
        };
        ((self.iss2 as u64 & 0xff_ffff) << 32) | ((self.ec() as u64) << 26) | b(self.il, 25) | iss
    }
}

/// A data or instruction fault status code (DFSC/IFSC), classified (4K-granule meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultStatus {
    /// Address size fault at level 0..=3.
    AddressSize(u8),
    /// Translation fault at level 0..=3.
    Translation(u8),
    /// Access flag fault at level 0..=3.
    AccessFlag(u8),
    /// Permission fault at level 0..=3.
    Permission(u8),
    /// Synchronous external abort, not on a table walk.
    SyncExternal,
    /// Synchronous external abort on a table walk at level 0..=3.
    SyncExternalOnWalk(u8),
    /// Alignment fault.
    Alignment,
    /// TLB conflict abort.
    TlbConflict,
    /// Any other code (raw, 6 bits).
    Other(u8),
}

impl FaultStatus {
    /// Classifies a 6-bit fault status code.
    pub const fn decode(code: u8) -> Self {
        let level = code & 3;
        match code & 0x3f {
            0x00..=0x03 => FaultStatus::AddressSize(level),
            0x04..=0x07 => FaultStatus::Translation(level),
            0x08..=0x0b => FaultStatus::AccessFlag(level),
            0x0c..=0x0f => FaultStatus::Permission(level),
            0x10 => FaultStatus::SyncExternal,
            0x14..=0x17 => FaultStatus::SyncExternalOnWalk(level),
            0x21 => FaultStatus::Alignment,
            0x30 => FaultStatus::TlbConflict,
            other => FaultStatus::Other(other),
        }
    }
}
