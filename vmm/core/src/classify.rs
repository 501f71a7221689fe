//! Trap classification, after VirtualBox's TRPM, and the exit path that carries it out.
//!
//! [`classify`] turns one decoded seL4 fault of a guest vCPU into exactly one [`Decision`]:
//! - a **virtualization trap** the VMM emulates ([`VirtTrap`]: MMIO in a registered range, a
//!   system-register access, HVC/SMC (PSCI, SMCCC), WFI/WFE, vGIC maintenance, a virtual PPI);
//! - a **guest trap** reflected into the guest ([`GuestException`]: an access nothing backs
//!   becomes a synchronous external abort, an unimplemented system register or an instruction
//!   the VMM cannot emulate becomes an undefined-instruction exception);
//! - a **hypervisor fault** ([`Diagnostic`]): a state the VMM or kernel should never produce;
//!   that VM stops with the diagnostic, and the VMM goes on serving everything else.
//!
//! Classification reads no register. [`Exit::handle`] then performs the decision through the
//! [`Vcpu`] trait (so the PD reads and writes only what the exit needs), guest memory, the
//! [`Platform`] (device models, vGIC) and the PSCI state machine, and reports what to do with
//! the vCPU ([`ExitAction`]) and how to count the exit ([`TrapClass`], handler).

// The error side of the exit path is a full `Diagnostic` (the fault, its syndrome, the handler):
// large, but only ever built on the cold path that stops a VM, so it is returned by value.
#![allow(clippy::result_large_err)]

use crate::addr::{GuestPhysAddr, GuestVirtAddr};
use crate::fault::{Fault, FaultError};
use crate::handlers::{HandlerId, HandlerKind, HandlerTree, LookupError};
use crate::inject::{self, FaultStatus, GuestException, InjectError, InjectOptions};
use crate::memory::{GuestMemory, MemError};
use crate::mmio::{self, BusError, MmioBus, MmioError};
use crate::psci::{Psci, PsciAction};
use crate::stats::TrapClass;
use crate::syndrome::{Class, DataAbort, Syndrome, SysRegTrap, WfxKind};
use crate::vcpu::{SysReg, Vcpu, VcpuError};
use core::fmt;

/// How a guest called the firmware interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc #imm` (seL4 delivers it as an UnknownSyscall fault).
    Hvc,
    /// `smc #imm` (seL4 delivers it as a VCPUFault with EC 0x17).
    Smc,
}

/// A trap the VMM emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtTrap {
    /// A data abort in a registered range.
    Mmio {
        /// The faulting guest-physical address.
        gpa: GuestPhysAddr,
        /// Its syndrome.
        abort: DataAbort,
        /// The handler whose range holds `gpa`.
        handler: HandlerId,
        /// ALL (device) or WRITE (write-protected RAM, `abort.wnr` is set).
        kind: HandlerKind,
    },
    /// An MSR/MRS trapped to EL2.
    SysReg(SysRegTrap),
    /// A firmware call (PSCI or SMCCC); registers x0..x3 carry the call.
    Firmware {
        /// HVC or SMC.
        conduit: Conduit,
        /// x0..x3 when the fault message carries them (HVC), else read from the vCPU.
        args: Option<[u64; 4]>,
    },
    /// WFI or WFE.
    Wfx(WfxKind),
    /// A vGIC maintenance interrupt for a list register.
    VgicMaintenance(Option<u8>),
    /// A virtual PPI fired (the virtual timer).
    VirtualPpi(u32),
}

/// Why the VMM stops a VM: a state it or the kernel should never produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HypervisorReason {
    /// The fault message did not decode.
    BadFaultMessage(FaultError),
    /// A VMFault whose syndrome is not an abort of the right kind.
    SyndromeMismatch,
    /// An abort delivered as a VCPUFault (aborts arrive as VMFaults).
    AbortAsVcpuFault,
    /// A read fault in a WRITE-kind range: its backing RAM is not mapped readable.
    ReadFaultOnWriteRange,
    /// The kernel refused a register access.
    Vcpu(VcpuError),
    /// Injecting an exception failed (e.g. the guest state says EL2).
    Inject(InjectError),
    /// Guest memory the VMM itself must reach was outside guest RAM.
    Memory(MemError),
    /// The MMIO emulator met a syndrome the architecture does not produce.
    BadSyndrome,
    /// A device model or the vGIC reported an internal error.
    Platform(PlatformError),
    /// A device model failed internally during an MMIO access.
    DeviceInternal,
}

/// Everything known about a hypervisor fault, for the diagnostic the VMM prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diagnostic {
    /// What went wrong.
    pub reason: HypervisorReason,
    /// The fault, if it decoded.
    pub fault: Option<Fault>,
    /// Its syndrome, if it had one.
    pub syndrome: Option<Syndrome>,
    /// The handler that was running, if any.
    pub handler: Option<HandlerId>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hypervisor fault: {:?}", self.reason)?;
        if let Some(fault) = &self.fault {
            write!(f, "; fault {fault:?}")?;
        }
        if let Some(s) = &self.syndrome {
            write!(f, "; syndrome {s:?}")?;
        }
        if let Some(h) = self.handler {
            write!(f, "; handler {h:?}")?;
        }
        Ok(())
    }
}

/// Why a guest trap was raised (for the VMM's log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestTrapReason {
    /// Data access to a guest-physical address nothing backs.
    Unbacked(GuestPhysAddr),
    /// Instruction fetch from a guest-physical address nothing backs.
    UnbackedFetch(GuestPhysAddr),
    /// An access crossing the boundary of a handler's range.
    CrossesHandler(GuestPhysAddr),
    /// The guest's own stage-1 table walk hit unbacked memory.
    TableWalk(GuestPhysAddr),
    /// A system register the VMM does not implement.
    UnimplementedSysReg(SysRegTrap),
    /// An exception class the VMM does not handle.
    UnknownClass(u8),
    /// An MMIO access the emulator could not carry out.
    Mmio(MmioError),
    /// The kernel reported a user exception for the vCPU's thread (`number`, `code` as seL4
    /// gave them): the guest executed something seL4 could not run for it.
    UserException {
        /// seL4's exception number.
        number: u64,
        /// seL4's exception code.
        code: u64,
    },
}

/// The one outcome of classifying a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Emulate it.
    Emulate(VirtTrap),
    /// Reflect it into the guest.
    Reflect(GuestException, GuestTrapReason),
    /// Stop the VM.
    HypervisorFault(Diagnostic),
}

fn hv(reason: HypervisorReason, fault: Option<Fault>, syndrome: Option<Syndrome>) -> Decision {
    Decision::HypervisorFault(Diagnostic {
        reason,
        fault,
        syndrome,
        handler: None,
    })
}

fn unbacked_data(gpa: GuestPhysAddr, wnr: bool, reason: GuestTrapReason) -> Decision {
    // seL4 reports the IPA, not the VA: the VA (for FAR_EL1) is filled in at execution, when the
    // guest's translation regime is known; here it is a placeholder.
    Decision::Reflect(
        GuestException::DataAbort {
            far: Some(GuestVirtAddr(gpa.raw())),
            wnr,
            fsc: FaultStatus::SyncExternal,
        },
        reason,
    )
}

/// Classifies one decoded fault against the access-handler tree. Reads no register.
pub fn classify<H, const N: usize>(fault: &Fault, tree: &HandlerTree<H, N>) -> Decision {
    match *fault {
        Fault::VmFault {
            ip,
            addr,
            prefetch,
            fsr,
        } => {
            let syndrome = Syndrome::decode(fsr as u64);
            match (prefetch, syndrome.class) {
                (true, Class::InstructionAbort(_)) => Decision::Reflect(
                    GuestException::SyncExternalAbortInstruction { far: ip },
                    GuestTrapReason::UnbackedFetch(addr),
                ),
                (false, Class::DataAbort(abort)) => {
                    classify_data_abort(fault, syndrome, abort, addr, tree)
                }
                _ => hv(
                    HypervisorReason::SyndromeMismatch,
                    Some(*fault),
                    Some(syndrome),
                ),
            }
        }
        Fault::VcpuFault { hsr } => {
            let syndrome = Syndrome::decode(hsr as u64);
            match syndrome.class {
                Class::Smc { .. } => Decision::Emulate(VirtTrap::Firmware {
                    conduit: Conduit::Smc,
                    args: None,
                }),
                Class::Hvc { .. } => Decision::Emulate(VirtTrap::Firmware {
                    conduit: Conduit::Hvc,
                    args: None,
                }),
                Class::Wfx(w) => Decision::Emulate(VirtTrap::Wfx(w.kind)),
                Class::SysReg(s) => Decision::Emulate(VirtTrap::SysReg(s)),
                Class::DataAbort(_) | Class::InstructionAbort(_) => hv(
                    HypervisorReason::AbortAsVcpuFault,
                    Some(*fault),
                    Some(syndrome),
                ),
                // As KVM does for an exception class it does not know: UNDEF into the guest.
                Class::Unknown { ec, .. } => {
                    Decision::Reflect(GuestException::Undefined, GuestTrapReason::UnknownClass(ec))
                }
            }
        }
        Fault::UnknownSyscall(u) => Decision::Emulate(VirtTrap::Firmware {
            conduit: Conduit::Hvc,
            args: Some([u.x[0], u.x[1], u.x[2], u.x[3]]),
        }),
        Fault::VgicMaintenance { lr } => Decision::Emulate(VirtTrap::VgicMaintenance(lr)),
        Fault::VppiEvent { irq } => Decision::Emulate(VirtTrap::VirtualPpi(irq)),
        // Never a reason to stop the VM: the guest caused it, the guest gets an UNDEF.
        Fault::UserException { number, code, .. } => Decision::Reflect(
            GuestException::Undefined,
            GuestTrapReason::UserException { number, code },
        ),
        // An HVC that the kernel took for one of its own system calls (x7 held a syscall
        // number, which SMCCC 1.2 allows a caller to leave there): still the guest's HVC, so it
        // is answered as one, its arguments read from the vCPU.
        Fault::CapFault(_) => Decision::Emulate(VirtTrap::Firmware {
            conduit: Conduit::Hvc,
            args: None,
        }),
    }
}

fn classify_data_abort<H, const N: usize>(
    fault: &Fault,
    syndrome: Syndrome,
    abort: DataAbort,
    gpa: GuestPhysAddr,
    tree: &HandlerTree<H, N>,
) -> Decision {
    if abort.s1ptw {
        // The guest's own page-table walk touched memory nothing backs.
        return Decision::Reflect(
            GuestException::DataAbort {
                far: None,
                wnr: abort.wnr,
                fsc: FaultStatus::SyncExternal,
            },
            GuestTrapReason::TableWalk(gpa),
        );
    }
    // Without a valid syndrome the width is known only after decoding: check the first byte.
    let len = if abort.isv {
        abort.access_size() as u64
    } else {
        1
    };
    match tree.lookup_access(gpa, len) {
        Ok(access) => {
            let kind = access.kind();
            if kind == HandlerKind::Write && !abort.wnr {
                let d = Diagnostic {
                    reason: HypervisorReason::ReadFaultOnWriteRange,
                    fault: Some(*fault),
                    syndrome: Some(syndrome),
                    handler: Some(access.id),
                };
                return Decision::HypervisorFault(d);
            }
            Decision::Emulate(VirtTrap::Mmio {
                gpa,
                abort,
                handler: access.id,
                kind,
            })
        }
        Err(LookupError::Crosses { .. }) => {
            unbacked_data(gpa, abort.wnr, GuestTrapReason::CrossesHandler(gpa))
        }
        Err(_) => unbacked_data(gpa, abort.wnr, GuestTrapReason::Unbacked(gpa)),
    }
}

/// An internal error of a device model or the vGIC (never caused by the guest alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformError(pub u32);

/// What a system-register access did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysRegResult {
    /// A read produced this value.
    Read(u64),
    /// A write was accepted.
    Written,
    /// The VMM does not implement this register: the guest gets UNDEF.
    Unimplemented,
}

/// The devices and interrupt controller behind the exit path, provided by the VMM PD.
pub trait Platform<H> {
    /// Read of `size` bytes at `offset` in an ALL-kind range.
    fn mmio_read(&mut self, handler: &H, offset: u64, size: u8) -> Result<u64, BusError>;
    /// Write of `size` bytes at `offset` in an ALL-kind range.
    fn mmio_write(
        &mut self,
        handler: &H,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<(), BusError>;
    /// A write to a WRITE-kind range: `Ok(true)` applies it to guest RAM, `Ok(false)` drops it.
    fn protected_write(
        &mut self,
        handler: &H,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<bool, BusError>;
    /// A trapped system-register access (`value` is the written value for MSR).
    fn sysreg(&mut self, trap: &SysRegTrap, value: Option<u64>) -> SysRegResult {
        let _ = (trap, value);
        SysRegResult::Unimplemented
    }
    /// A vGIC maintenance interrupt.
    fn vgic_maintenance(&mut self, lr: Option<u8>) -> Result<(), PlatformError>;
    /// A virtual PPI fired.
    fn virtual_ppi(&mut self, irq: u32) -> Result<(), PlatformError>;
}

/// What to do with the vCPU after the exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitAction {
    /// Resume it (registers the exit changed are to be written back first).
    Resume,
    /// It executed WFI/WFE (PC already advanced): resume when an interrupt is pending.
    WaitForInterrupt,
    /// Power another vCPU on (PSCI CPU_ON; the caller's x0 is already PSCI SUCCESS).
    CpuOn {
        /// Target vCPU index.
        target: usize,
        /// Entry point.
        entry: u64,
        /// Context id for the target's x0.
        context: u64,
    },
    /// Stop this vCPU (PSCI CPU_OFF).
    CpuOff,
    /// Power the VM off (PSCI SYSTEM_OFF).
    PowerOff,
    /// Reset the VM (PSCI SYSTEM_RESET).
    Reset,
    /// Stop the VM: a hypervisor fault.
    Stop(Diagnostic),
}

/// The result of one exit: the action, and how to count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitReport {
    /// What to do with the vCPU.
    pub action: ExitAction,
    /// The statistics class.
    pub class: TrapClass,
    /// The handler that ran, if any.
    pub handler: Option<HandlerId>,
    /// Why a guest trap was reflected, for the log.
    pub guest_trap: Option<GuestTrapReason>,
}

/// PSCI return code for success.
const PSCI_SUCCESS: u64 = 0;

/// The bus the MMIO emulator sees: the handler tree, with ALL ranges going to the platform and
/// WRITE ranges read from RAM and written through the platform's decision (RAM updates are
/// collected and applied after the instruction, so guest memory is borrowed once).
struct TreeBus<'a, H, P, M, const N: usize> {
    tree: &'a HandlerTree<H, N>,
    platform: &'a mut P,
    mem: &'a M,
    pending: heapless::Vec<(GuestPhysAddr, u8, u64), 2>,
    last: Option<HandlerId>,
}

impl<H, P: Platform<H>, M: GuestMemory, const N: usize> MmioBus for TreeBus<'_, H, P, M, N> {
    fn read(&mut self, gpa: GuestPhysAddr, size: u8) -> Result<u64, BusError> {
        let a = self
            .tree
            .lookup_access(gpa, size as u64)
            .map_err(|_| BusError::Unmapped)?;
        self.last = Some(a.id);
        match a.kind() {
            HandlerKind::All => self.platform.mmio_read(a.handler(), a.offset(), size),
            HandlerKind::Write => {
                let mut b = [0u8; 8];
                let buf = b.get_mut(..size as usize).ok_or(BusError::Refused)?;
                self.mem.read(gpa, buf).map_err(|_| BusError::Unmapped)?;
                Ok(u64::from_le_bytes(b))
            }
        }
    }

    fn write(&mut self, gpa: GuestPhysAddr, size: u8, value: u64) -> Result<(), BusError> {
        let a = self
            .tree
            .lookup_access(gpa, size as u64)
            .map_err(|_| BusError::Unmapped)?;
        self.last = Some(a.id);
        match a.kind() {
            HandlerKind::All => self
                .platform
                .mmio_write(a.handler(), a.offset(), size, value),
            HandlerKind::Write => {
                if self
                    .platform
                    .protected_write(a.handler(), a.offset(), size, value)?
                {
                    self.pending
                        .push((gpa, size, value))
                        .map_err(|_| BusError::Refused)?;
                }
                Ok(())
            }
        }
    }
}

/// The exit path of one VM: its handler tree, PSCI state, and the guest-trap bookkeeping.
pub struct Exit<'a, H, const N: usize, const VCPUS: usize> {
    /// The access-handler tree.
    pub tree: &'a HandlerTree<H, N>,
    /// PSCI state of the VM's vCPUs.
    pub psci: &'a mut Psci<VCPUS>,
}

impl<H, const N: usize, const VCPUS: usize> Exit<'_, H, N, VCPUS> {
    /// Decodes, classifies and handles one fault of vCPU `vcpu_id`.
    pub fn handle<V, M, P>(
        &mut self,
        vcpu_id: usize,
        label: u64,
        words: &[u64],
        vcpu: &mut V,
        mem: &mut M,
        platform: &mut P,
    ) -> ExitReport
    where
        V: Vcpu,
        M: GuestMemory,
        P: Platform<H>,
    {
        let fault = match Fault::decode(label, words) {
            Ok(f) => f,
            Err(e) => {
                let d = Diagnostic {
                    reason: HypervisorReason::BadFaultMessage(e),
                    fault: None,
                    syndrome: None,
                    handler: None,
                };
                return stop(d);
            }
        };
        let decision = classify(&fault, self.tree);
        self.execute(vcpu_id, &fault, decision, vcpu, mem, platform)
    }

    /// Carries out a decision.
    pub fn execute<V, M, P>(
        &mut self,
        vcpu_id: usize,
        fault: &Fault,
        decision: Decision,
        vcpu: &mut V,
        mem: &mut M,
        platform: &mut P,
    ) -> ExitReport
    where
        V: Vcpu,
        M: GuestMemory,
        P: Platform<H>,
    {
        let ip = fault_ip(fault);
        let result = match decision {
            Decision::HypervisorFault(d) => return stop(d),
            Decision::Reflect(exc, why) => reflect(vcpu, fault, exc, why),
            Decision::Emulate(trap) => match trap {
                VirtTrap::Mmio {
                    gpa,
                    abort,
                    handler,
                    kind,
                } => self.mmio(vcpu, mem, platform, fault, ip, gpa, abort, handler, kind),
                VirtTrap::SysReg(s) => sysreg(vcpu, platform, fault, ip, s),
                VirtTrap::Firmware { conduit, args } => {
                    self.firmware(vcpu_id, vcpu, fault, ip, conduit, args)
                }
                VirtTrap::Wfx(kind) => advance(vcpu, fault, ip).map(|()| ExitReport {
                    action: ExitAction::WaitForInterrupt,
                    class: if matches!(kind, WfxKind::Wfi | WfxKind::Wfit) {
                        TrapClass::Wfi
                    } else {
                        TrapClass::Wfe
                    },
                    handler: None,
                    guest_trap: None,
                }),
                VirtTrap::VgicMaintenance(lr) => platform
                    .vgic_maintenance(lr)
                    .map(|()| plain(TrapClass::VgicMaintenance))
                    .map_err(|e| diag(HypervisorReason::Platform(e), fault)),
                VirtTrap::VirtualPpi(irq) => platform
                    .virtual_ppi(irq)
                    .map(|()| plain(TrapClass::VirtualPpi))
                    .map_err(|e| diag(HypervisorReason::Platform(e), fault)),
            },
        };
        result.unwrap_or_else(stop)
    }

    #[allow(clippy::too_many_arguments)]
    fn mmio<V: Vcpu, M: GuestMemory, P: Platform<H>>(
        &mut self,
        vcpu: &mut V,
        mem: &mut M,
        platform: &mut P,
        fault: &Fault,
        ip: u64,
        gpa: GuestPhysAddr,
        abort: DataAbort,
        handler: HandlerId,
        kind: HandlerKind,
    ) -> Result<ExitReport, Diagnostic> {
        let mut bus = TreeBus {
            tree: self.tree,
            platform,
            mem: &*mem,
            pending: heapless::Vec::new(),
            last: None,
        };
        let outcome = mmio::emulate_sized(vcpu, &*mem, &abort, ip, insn_len(fault), gpa, &mut bus);
        let pending = core::mem::take(&mut bus.pending);
        let ran = bus.last.unwrap_or(handler);
        match outcome {
            Ok(o) => {
                for (at, size, value) in pending {
                    let bytes = value.to_le_bytes();
                    let src = bytes.get(..size as usize).unwrap_or(&bytes);
                    mem.write(at, src).map_err(|e| Diagnostic {
                        handler: Some(ran),
                        ..diag(HypervisorReason::Memory(e), fault)
                    })?;
                }
                let class = match (kind, o.op) {
                    (HandlerKind::Write, _) => TrapClass::WriteHandler,
                    (_, mmio::AccessOp::Store) => TrapClass::MmioWrite,
                    _ => TrapClass::MmioRead,
                };
                Ok(ExitReport {
                    action: ExitAction::Resume,
                    class,
                    handler: Some(ran),
                    guest_trap: None,
                })
            }
            Err(
                e @ (MmioError::Vcpu(_)
                | MmioError::BadSyndrome
                | MmioError::Bus {
                    error: BusError::Internal,
                    ..
                }),
            ) => {
                let reason = match e {
                    MmioError::Vcpu(v) => HypervisorReason::Vcpu(v),
                    MmioError::Bus { .. } => HypervisorReason::DeviceInternal,
                    _ => HypervisorReason::BadSyndrome,
                };
                Err(Diagnostic {
                    handler: Some(ran),
                    ..diag(reason, fault)
                })
            }
            Err(e) => {
                // Anything the emulator cannot do is the guest's problem, never a panic: an
                // instruction it does not emulate is UNDEF, a refused or unbacked access is an
                // external abort.
                let exc = match e {
                    MmioError::Decode(_) => GuestException::Undefined,
                    _ => GuestException::DataAbort {
                        far: Some(GuestVirtAddr(gpa.raw())),
                        wnr: abort.wnr,
                        fsc: FaultStatus::SyncExternal,
                    },
                };
                let mut r = reflect(vcpu, fault, exc, GuestTrapReason::Mmio(e))?;
                r.handler = Some(ran);
                Ok(r)
            }
        }
    }

    fn firmware<V: Vcpu>(
        &mut self,
        vcpu_id: usize,
        vcpu: &mut V,
        fault: &Fault,
        ip: u64,
        conduit: Conduit,
        args: Option<[u64; 4]>,
    ) -> Result<ExitReport, Diagnostic> {
        let vcpu_err = |e| diag(HypervisorReason::Vcpu(e), fault);
        vcpu.expect_gprs(0b1111);
        let x = match args {
            Some(x) => x,
            None => [
                vcpu.gpr(0).map_err(vcpu_err)?,
                vcpu.gpr(1).map_err(vcpu_err)?,
                vcpu.gpr(2).map_err(vcpu_err)?,
                vcpu.gpr(3).map_err(vcpu_err)?,
            ],
        };
        let class = match conduit {
            Conduit::Hvc => TrapClass::Hvc,
            Conduit::Smc => TrapClass::Smc,
        };
        let action = self.psci.call(vcpu_id, x[0] as u32, [x[1], x[2], x[3]]);
        let (x0, action) = match action {
            PsciAction::Return(v) => (Some(v), ExitAction::Resume),
            PsciAction::Suspend => (Some(PSCI_SUCCESS), ExitAction::WaitForInterrupt),
            PsciAction::CpuOn {
                target,
                entry,
                context,
            } => (
                Some(PSCI_SUCCESS),
                ExitAction::CpuOn {
                    target,
                    entry,
                    context,
                },
            ),
            PsciAction::CpuOff => (None, ExitAction::CpuOff),
            PsciAction::SystemOff => (None, ExitAction::PowerOff),
            PsciAction::SystemReset => (None, ExitAction::Reset),
        };
        if let Some(v) = x0 {
            vcpu.set_gpr(0, v).map_err(vcpu_err)?;
            advance(vcpu, fault, ip)?;
        }
        Ok(ExitReport {
            action,
            class,
            handler: None,
            guest_trap: None,
        })
    }
}

fn plain(class: TrapClass) -> ExitReport {
    ExitReport {
        action: ExitAction::Resume,
        class,
        handler: None,
        guest_trap: None,
    }
}

fn stop(d: Diagnostic) -> ExitReport {
    ExitReport {
        action: ExitAction::Stop(d),
        class: TrapClass::HypervisorFault,
        handler: d.handler,
        guest_trap: None,
    }
}

fn diag(reason: HypervisorReason, fault: &Fault) -> Diagnostic {
    Diagnostic {
        reason,
        fault: Some(*fault),
        syndrome: syndrome_of(fault),
        handler: None,
    }
}

fn syndrome_of(fault: &Fault) -> Option<Syndrome> {
    match *fault {
        Fault::VmFault { fsr, .. } => Some(Syndrome::decode(fsr as u64)),
        Fault::VcpuFault { hsr } => Some(Syndrome::decode(hsr as u64)),
        _ => None,
    }
}

/// The guest PC of the trapping instruction when the fault message carries it.
fn fault_ip(fault: &Fault) -> u64 {
    match *fault {
        Fault::VmFault { ip, .. } => ip.raw(),
        Fault::UnknownSyscall(u) => u.fault_ip.raw(),
        Fault::UserException { fault_ip, .. } => fault_ip.raw(),
        Fault::CapFault(c) => c.ip.raw(),
        _ => u64::MAX,
    }
}

/// Sets PC past the trapping instruction. `ip` is the fault's IP when the message has one
/// (`u64::MAX` otherwise: then PC is read).
fn advance<V: Vcpu>(vcpu: &mut V, fault: &Fault, ip: u64) -> Result<(), Diagnostic> {
    let err = |e| Diagnostic {
        reason: HypervisorReason::Vcpu(e),
        fault: None,
        syndrome: None,
        handler: None,
    };
    let pc = if ip == u64::MAX {
        vcpu.pc().map_err(err)?
    } else {
        ip
    };
    vcpu.set_pc(pc.wrapping_add(insn_len(fault))).map_err(err)
}

/// Length of the trapping instruction: 2 for a 16-bit T32 instruction (ESR.IL = 0), else 4
/// (an HVC, delivered without a syndrome, is always 32 bits).
fn insn_len(fault: &Fault) -> u64 {
    match syndrome_of(fault) {
        Some(s) if !s.il => 2,
        _ => 4,
    }
}

fn sysreg<V: Vcpu, H, P: Platform<H>>(
    vcpu: &mut V,
    platform: &mut P,
    fault: &Fault,
    ip: u64,
    s: SysRegTrap,
) -> Result<ExitReport, Diagnostic> {
    let vcpu_err = |e| diag(HypervisorReason::Vcpu(e), fault);
    if s.rt != 31 {
        vcpu.expect_gprs(1 << s.rt);
    }
    let value = if s.read {
        None
    } else if s.rt == 31 {
        Some(0)
    } else {
        Some(vcpu.gpr(s.rt).map_err(vcpu_err)?)
    };
    match platform.sysreg(&s, value) {
        SysRegResult::Unimplemented => reflect(
            vcpu,
            fault,
            GuestException::Undefined,
            GuestTrapReason::UnimplementedSysReg(s),
        ),
        result => {
            if let (SysRegResult::Read(v), true) = (result, s.rt != 31) {
                vcpu.set_gpr(s.rt, v).map_err(vcpu_err)?;
            }
            advance(vcpu, fault, ip)?;
            Ok(plain(TrapClass::SysReg))
        }
    }
}

/// Injects `exc` into the guest. For a data abort whose FAR is the IPA placeholder, FAR_EL1 gets
/// the IPA only when the guest's MMU is off (VA = IPA); with the MMU on the VA is unknown and
/// FnV is set instead.
fn reflect<V: Vcpu>(
    vcpu: &mut V,
    fault: &Fault,
    exc: GuestException,
    why: GuestTrapReason,
) -> Result<ExitReport, Diagnostic> {
    let exc = match exc {
        GuestException::DataAbort {
            far: Some(far),
            wnr,
            fsc,
        } => {
            let sctlr = vcpu
                .sysreg(SysReg::SctlrEl1)
                .map_err(|e| diag(HypervisorReason::Vcpu(e), fault))?;
            let far = if sctlr & 1 == 0 { Some(far) } else { None };
            GuestException::DataAbort { far, wnr, fsc }
        }
        other => other,
    };
    let ip = fault_ip(fault);
    let opts = InjectOptions {
        fault_pc: (ip != u64::MAX).then_some(ip),
        ..InjectOptions::default()
    };
    inject::inject_sync_with(vcpu, exc, opts)
        .map_err(|e| diag(HypervisorReason::Inject(e), fault))?;
    let class = match exc {
        GuestException::Undefined => TrapClass::GuestTrapUndef,
        _ => TrapClass::GuestTrapAbort,
    };
    Ok(ExitReport {
        action: ExitAction::Resume,
        class,
        handler: None,
        guest_trap: Some(why),
    })
}
