//! Fault intake: turns the message seL4 delivers for a faulting guest vCPU (label and message
//! registers) into a typed [`Fault`], and back again ([`Fault::encode`]) for tests and fuzzing.
//!
//! Labels and layouts are those of seL4 16.0 built for AArch64 with `CONFIG_KERNEL_MCS` and
//! `CONFIG_ARM_HYPERVISOR_SUPPORT` (`libsel4/arch_include/arm/sel4/arch/shared_types.bf`,
//! `libsel4/sel4_arch_include/aarch64/sel4/sel4_arch/constants.h`, kernel
//! `src/arch/arm/api/faults.c`): under MCS the `Timeout` fault takes label 5 and every
//! architecture fault moves up by one compared with a non-MCS kernel.
//!
//! Decoding is strict: a word that does not fit the field the kernel fills (a 32-bit syndrome, a
//! 0/1 flag, a list-register index) is a typed error, so a decoded fault re-encodes to exactly the
//! words it came from.

use crate::addr::{GuestPhysAddr, GuestVirtAddr};

/// Fault labels (the `label` of the fault IPC's message info), MCS + hypervisor configuration.
pub mod label {
    /// `seL4_Fault_NullFault`.
    pub const NULL_FAULT: u64 = 0;
    /// `seL4_Fault_CapFault`.
    pub const CAP_FAULT: u64 = 1;
    /// `seL4_Fault_UnknownSyscall` (an `hvc` from the guest arrives as this).
    pub const UNKNOWN_SYSCALL: u64 = 2;
    /// `seL4_Fault_UserException`.
    pub const USER_EXCEPTION: u64 = 3;
    /// `seL4_Fault_DebugException` (only with `CONFIG_HARDWARE_DEBUG_API`).
    pub const DEBUG_EXCEPTION: u64 = 4;
    /// `seL4_Fault_Timeout` (MCS only).
    pub const TIMEOUT: u64 = 5;
    /// `seL4_Fault_VMFault` (a stage-2 abort).
    pub const VM_FAULT: u64 = 6;
    /// `seL4_Fault_VGICMaintenance`.
    pub const VGIC_MAINTENANCE: u64 = 7;
    /// `seL4_Fault_VCPUFault` (any other trap to EL2).
    pub const VCPU_FAULT: u64 = 8;
    /// `seL4_Fault_VPPIEvent`.
    pub const VPPI_EVENT: u64 = 9;
}

/// Message lengths (in words) the kernel sends for each decoded fault.
pub mod length {
    /// `seL4_CapFault` with the shortest lookup failure (IP, Addr, InRecvPhase, the failure's
    /// type); each failure type adds its own words (see [`super::LookupFailure`]).
    pub const CAP_FAULT: usize = 4;
    /// `seL4_UnknownSyscall_Length`.
    pub const UNKNOWN_SYSCALL: usize = 13;
    /// `seL4_UserException_Length`.
    pub const USER_EXCEPTION: usize = 5;
    /// `seL4_VMFault_Length`.
    pub const VM_FAULT: usize = 4;
    /// `seL4_VGICMaintenance_Length`.
    pub const VGIC_MAINTENANCE: usize = 1;
    /// `seL4_VCPUFault_Length`.
    pub const VCPU_FAULT: usize = 1;
    /// `seL4_VPPIEvent_Length`.
    pub const VPPI_EVENT: usize = 1;
    /// The longest of them.
    pub const MAX: usize = UNKNOWN_SYSCALL;
}

/// The registers an `UnknownSyscall` fault carries (`seL4_UnknownSyscall_Msg` order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownSyscall {
    /// x0..x7.
    pub x: [u64; 8],
    /// Address of the trapping instruction (`hvc`/`svc`); the guest resumes there unless moved.
    pub fault_ip: GuestVirtAddr,
    /// SP_EL0 of the thread.
    pub sp: u64,
    /// ELR_EL1 (the kernel's "LR" slot).
    pub lr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    /// The syscall number.
    pub syscall: u64,
}

/// Why a capability lookup failed (`seL4_LookupFailureType` and the words each type carries,
/// `seL4_CapFault_BitsLeft` on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupFailure {
    /// `seL4_NoFailure` (0): the capability was found but could not be used.
    None,
    /// `seL4_InvalidRoot` (1): the thread's CSpace root is not a CNode.
    InvalidRoot,
    /// `seL4_MissingCapability` (2).
    MissingCapability {
        /// Bits of the address left to resolve.
        bits_left: u64,
    },
    /// `seL4_DepthMismatch` (3).
    DepthMismatch {
        /// Bits of the address left to resolve.
        bits_left: u64,
        /// Bits the CNode resolved.
        bits_found: u64,
    },
    /// `seL4_GuardMismatch` (4).
    GuardMismatch {
        /// Bits of the address left to resolve.
        bits_left: u64,
        /// The guard found.
        guard_found: u64,
        /// Size of the guard.
        bits_found: u64,
    },
}

/// A capability fault (`seL4_CapFault_Msg` order). From a vCPU it means the guest executed an
/// HVC with a seL4 system-call number in x7: the kernel ran that system call as the vCPU's
/// thread, and its capability (x0) could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapFault {
    /// Where the thread restarts (`FaultIP`): the HVC itself.
    pub ip: GuestVirtAddr,
    /// The capability address that failed.
    pub addr: u64,
    /// The fault came in the receive phase of the system call.
    pub in_recv_phase: bool,
    /// Why the lookup failed.
    pub lookup: LookupFailure,
}

/// A fault message from a guest vCPU's TCB, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A stage-2 abort. For a vCPU, seL4 reports the IPA (guest-physical address): the page
    /// comes from an `AT S1E1R` of the faulting VA, the page offset from the VA itself.
    VmFault {
        /// Guest PC of the faulting instruction.
        ip: GuestVirtAddr,
        /// Faulting guest-physical address (for a prefetch abort, that of the PC).
        addr: GuestPhysAddr,
        /// Instruction abort (`true`) or data abort.
        prefetch: bool,
        /// The syndrome (ESR_EL2 / HSR as the kernel saved it).
        fsr: u32,
    },
    /// Any other trap of the guest to EL2 (SMC, WFx, sysreg, ...) with its syndrome.
    VcpuFault {
        /// ESR_EL2 of the trap.
        hsr: u32,
    },
    /// A vGIC maintenance interrupt; `lr` is the list register it concerns, if any.
    VgicMaintenance {
        /// The list-register index, `None` when the kernel sent -1.
        lr: Option<u8>,
    },
    /// A virtual PPI (e.g. the virtual timer) fired for this vCPU.
    VppiEvent {
        /// The interrupt number.
        irq: u32,
    },
    /// A user exception (`seL4_UserException_Msg` order).
    UserException {
        /// Address of the faulting instruction.
        fault_ip: GuestVirtAddr,
        /// Stack pointer.
        sp: u64,
        /// SPSR.
        spsr: u64,
        /// Exception number.
        number: u64,
        /// Exception code.
        code: u64,
    },
    /// An unknown system call (how an `hvc` of the guest arrives).
    UnknownSyscall(UnknownSyscall),
    /// A capability fault: a guest HVC that the kernel took for one of its system calls.
    CapFault(CapFault),
}

/// Why a fault message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultError {
    /// A label no seL4 fault has.
    UnknownLabel(u64),
    /// A real seL4 fault label that a guest vCPU's TCB is not expected to raise and the VMM does
    /// not decode (null, capability, debug and timeout faults).
    UnexpectedKind(u64),
    /// Fewer message words than the fault carries.
    ShortMessage {
        /// The fault label.
        label: u64,
        /// Words given.
        got: usize,
        /// Words the fault needs.
        need: usize,
    },
    /// A word whose value the kernel cannot have produced for that field.
    BadValue {
        /// The fault label.
        label: u64,
        /// Message-register index of the word.
        index: usize,
        /// The offending value.
        value: u64,
    },
}

/// A fault encoded as the kernel would send it: label plus `len` message words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedFault {
    /// The message label.
    pub label: u64,
    len: usize,
    words: [u64; length::MAX],
}

impl EncodedFault {
    /// The message words (exactly the fault's length).
    pub fn words(&self) -> &[u64] {
        self.words.get(..self.len).unwrap_or(&self.words)
    }
}

const fn short(label: u64, words: &[u64], need: usize) -> FaultError {
    FaultError::ShortMessage {
        label,
        got: words.len(),
        need,
    }
}

fn word_u32(label: u64, index: usize, value: u64) -> Result<u32, FaultError> {
    u32::try_from(value).map_err(|_| FaultError::BadValue {
        label,
        index,
        value,
    })
}

/// A 0/1 flag word.
fn word_bool(label: u64, index: usize, value: u64) -> Result<bool, FaultError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(FaultError::BadValue {
            label,
            index,
            value,
        }),
    }
}

impl Fault {
    /// Decodes a fault message. Words past the fault's length are ignored.
    pub fn decode(label: u64, words: &[u64]) -> Result<Self, FaultError> {
        match label {
            label::VM_FAULT => {
                let [ip, addr, prefetch, fsr, ..] = *words else {
                    return Err(short(label, words, length::VM_FAULT));
                };
                let prefetch = word_bool(label, 2, prefetch)?;
                Ok(Fault::VmFault {
                    ip: GuestVirtAddr(ip),
                    addr: GuestPhysAddr(addr),
                    prefetch,
                    fsr: word_u32(label, 3, fsr)?,
                })
            }
            label::VCPU_FAULT => {
                let [hsr, ..] = *words else {
                    return Err(short(label, words, length::VCPU_FAULT));
                };
                Ok(Fault::VcpuFault {
                    hsr: word_u32(label, 0, hsr)?,
                })
            }
            label::VGIC_MAINTENANCE => {
                let [idx, ..] = *words else {
                    return Err(short(label, words, length::VGIC_MAINTENANCE));
                };
                let lr = match idx {
                    u64::MAX => None,
                    _ => Some(u8::try_from(idx).map_err(|_| FaultError::BadValue {
                        label,
                        index: 0,
                        value: idx,
                    })?),
                };
                Ok(Fault::VgicMaintenance { lr })
            }
            label::VPPI_EVENT => {
                let [irq, ..] = *words else {
                    return Err(short(label, words, length::VPPI_EVENT));
                };
                Ok(Fault::VppiEvent {
                    irq: word_u32(label, 0, irq)?,
                })
            }
            label::USER_EXCEPTION => {
                let [fault_ip, sp, spsr, number, code, ..] = *words else {
                    return Err(short(label, words, length::USER_EXCEPTION));
                };
                Ok(Fault::UserException {
                    fault_ip: GuestVirtAddr(fault_ip),
                    sp,
                    spsr,
                    number,
                    code,
                })
            }
            label::UNKNOWN_SYSCALL => {
                let [
                    x0,
                    x1,
                    x2,
                    x3,
                    x4,
                    x5,
                    x6,
                    x7,
                    fault_ip,
                    sp,
                    lr,
                    spsr,
                    syscall,
                    ..,
                ] = *words
                else {
                    return Err(short(label, words, length::UNKNOWN_SYSCALL));
                };
                Ok(Fault::UnknownSyscall(UnknownSyscall {
                    x: [x0, x1, x2, x3, x4, x5, x6, x7],
                    fault_ip: GuestVirtAddr(fault_ip),
                    sp,
                    lr,
                    spsr,
                    syscall,
                }))
            }
            label::CAP_FAULT => {
                let [ip, addr, in_recv_phase, kind, ..] = *words else {
                    return Err(short(label, words, length::CAP_FAULT));
                };
                let in_recv_phase = word_bool(label, 2, in_recv_phase)?;
                let extra = match kind {
                    0 | 1 => 0,
                    2 => 1,
                    3 => 2,
                    4 => 3,
                    value => {
                        return Err(FaultError::BadValue {
                            label,
                            index: 3,
                            value,
                        });
                    }
                };
                let need = length::CAP_FAULT + extra;
                let Some(w) = words.get(length::CAP_FAULT..need) else {
                    return Err(short(label, words, need));
                };
                let lookup = match (kind, w) {
                    (2, &[bits_left]) => LookupFailure::MissingCapability { bits_left },
                    (3, &[bits_left, bits_found]) => LookupFailure::DepthMismatch {
                        bits_left,
                        bits_found,
                    },
                    (4, &[bits_left, guard_found, bits_found]) => LookupFailure::GuardMismatch {
                        bits_left,
                        guard_found,
                        bits_found,
                    },
                    (1, _) => LookupFailure::InvalidRoot,
                    _ => LookupFailure::None,
                };
                Ok(Fault::CapFault(CapFault {
                    ip: GuestVirtAddr(ip),
                    addr,
                    in_recv_phase,
                    lookup,
                }))
            }
            label::NULL_FAULT | label::DEBUG_EXCEPTION | label::TIMEOUT => {
                Err(FaultError::UnexpectedKind(label))
            }
            other => Err(FaultError::UnknownLabel(other)),
        }
    }

    /// The label this fault arrives with.
    pub const fn label(&self) -> u64 {
        match self {
            Fault::VmFault { .. } => label::VM_FAULT,
            Fault::VcpuFault { .. } => label::VCPU_FAULT,
            Fault::VgicMaintenance { .. } => label::VGIC_MAINTENANCE,
            Fault::VppiEvent { .. } => label::VPPI_EVENT,
            Fault::UserException { .. } => label::USER_EXCEPTION,
            Fault::UnknownSyscall(_) => label::UNKNOWN_SYSCALL,
            Fault::CapFault(_) => label::CAP_FAULT,
        }
    }

    /// Encodes the fault as the kernel sends it (the inverse of [`Fault::decode`]).
    pub fn encode(&self) -> EncodedFault {
        let mut words = [0u64; length::MAX];
        let len = match *self {
            Fault::VmFault {
                ip,
                addr,
                prefetch,
                fsr,
            } => {
                let w = [ip.raw(), addr.raw(), u64::from(prefetch), u64::from(fsr)];
                copy_words(&mut words, &w)
            }
            Fault::VcpuFault { hsr } => copy_words(&mut words, &[u64::from(hsr)]),
            Fault::VgicMaintenance { lr } => {
                copy_words(&mut words, &[lr.map_or(u64::MAX, u64::from)])
            }
            Fault::VppiEvent { irq } => copy_words(&mut words, &[u64::from(irq)]),
            Fault::UserException {
                fault_ip,
                sp,
                spsr,
                number,
                code,
            } => copy_words(&mut words, &[fault_ip.raw(), sp, spsr, number, code]),
            Fault::UnknownSyscall(u) => {
                let [x0, x1, x2, x3, x4, x5, x6, x7] = u.x;
                let w = [
                    x0,
                    x1,
                    x2,
                    x3,
                    x4,
                    x5,
                    x6,
                    x7,
                    u.fault_ip.raw(),
                    u.sp,
                    u.lr,
                    u.spsr,
                    u.syscall,
                ];
                copy_words(&mut words, &w)
            }
            Fault::CapFault(c) => {
                let head = [c.ip.raw(), c.addr, u64::from(c.in_recv_phase)];
                let n = copy_words(&mut words, &head);
                let tail: &[u64] = match c.lookup {
                    LookupFailure::None => &[0],
                    LookupFailure::InvalidRoot => &[1],
                    LookupFailure::MissingCapability { bits_left } => &[2, bits_left],
                    LookupFailure::DepthMismatch {
                        bits_left,
                        bits_found,
                    } => &[3, bits_left, bits_found],
                    LookupFailure::GuardMismatch {
                        bits_left,
                        guard_found,
                        bits_found,
                    } => &[4, bits_left, guard_found, bits_found],
                };
                for (d, s) in words[n..].iter_mut().zip(tail) {
                    *d = *s;
                }
                n + tail.len()
            }
        };
        EncodedFault {
            label: self.label(),
            len,
            words,
        }
    }
}

/// Copies `src` to the front of `dst` and returns how many words were copied.
fn copy_words(dst: &mut [u64; length::MAX], src: &[u64]) -> usize {
    let mut n = 0;
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
        n += 1;
    }
    n
}
