//! PSCI 1.1 (Arm DEN0022) and the SMCCC 1.1 architecture calls (Arm DEN0028), reached through
//! either conduit (SMC or HVC with immediate 0, which the trap classifier checks): this module
//! owns the function-ID decoding, the argument widths of the SMC32/SMC64 conventions, the result
//! codes, and the per-vCPU power-state table (OFF / ON / ON_PENDING) behind CPU_ON, CPU_OFF and
//! AFFINITY_INFO.
//!
//! [`Psci::call`] never fails: every function ID, known or not, produces a [`PsciAction`]; an
//! unknown or unimplemented function returns `NOT_SUPPORTED` (-1) in x0, as SMCCC requires.
//!
//! Result values are always written to the full x0, sign-extended from 32 bits (as KVM does):
//! for an SMC32 call the W0 view is the 32-bit code the spec names, for an SMC64 call X0 is the
//! 64-bit code.
//!
//! vCPU identity: vCPU `i` has MPIDR affinity `Aff0 = i` (Aff1..Aff3 = 0); see [`mpidr_of`].
//! The VMM must program VMPIDR_EL2 and the DTB `cpus` nodes accordingly.

use crate::addr::{GpaRange, GuestPhysAddr};

/// Function identifiers (x0/w0 at the call).
pub mod fid {
    /// PSCI_VERSION.
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    /// CPU_SUSPEND, SMC32.
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    /// CPU_SUSPEND, SMC64.
    pub const CPU_SUSPEND_64: u32 = 0xC400_0001;
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// CPU_ON, SMC32.
    pub const CPU_ON_32: u32 = 0x8400_0003;
    /// CPU_ON, SMC64.
    pub const CPU_ON_64: u32 = 0xC400_0003;
    /// AFFINITY_INFO, SMC32.
    pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
    /// AFFINITY_INFO, SMC64.
    pub const AFFINITY_INFO_64: u32 = 0xC400_0004;
    /// MIGRATE, SMC32 (not supported: no trusted OS).
    pub const MIGRATE_32: u32 = 0x8400_0005;
    /// MIGRATE, SMC64 (not supported: no trusted OS).
    pub const MIGRATE_64: u32 = 0xC400_0005;
    /// MIGRATE_INFO_TYPE.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// MIGRATE_INFO_UP_CPU, SMC32 (not supported: no trusted OS).
    pub const MIGRATE_INFO_UP_CPU_32: u32 = 0x8400_0007;
    /// MIGRATE_INFO_UP_CPU, SMC64 (not supported: no trusted OS).
    pub const MIGRATE_INFO_UP_CPU_64: u32 = 0xC400_0007;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// PSCI_FEATURES.
    pub const PSCI_FEATURES: u32 = 0x8400_000A;
    /// SYSTEM_RESET2, SMC32 (optional in 1.1; not supported).
    pub const SYSTEM_RESET2_32: u32 = 0x8400_0012;
    /// SYSTEM_RESET2, SMC64 (optional in 1.1; not supported).
    pub const SYSTEM_RESET2_64: u32 = 0xC400_0012;
    /// SMCCC_VERSION.
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    /// SMCCC_ARCH_FEATURES.
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    /// SMCCC_ARCH_SOC_ID (not supported).
    pub const SMCCC_ARCH_SOC_ID: u32 = 0x8000_0002;
    /// SMCCC_ARCH_WORKAROUND_1 (not supported).
    pub const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
    /// SMCCC_ARCH_WORKAROUND_2 (not supported).
    pub const SMCCC_ARCH_WORKAROUND_2: u32 = 0x8000_7FFF;
    /// SMCCC_ARCH_WORKAROUND_3 (not supported).
    pub const SMCCC_ARCH_WORKAROUND_3: u32 = 0x8000_3FFF;
}

/// PSCI return codes (DEN0022 table 6), as signed 32-bit values.
pub mod ret {
    /// SUCCESS.
    pub const SUCCESS: i32 = 0;
    /// NOT_SUPPORTED (also SMCCC's "unknown function").
    pub const NOT_SUPPORTED: i32 = -1;
    /// INVALID_PARAMETERS.
    pub const INVALID_PARAMETERS: i32 = -2;
    /// DENIED.
    pub const DENIED: i32 = -3;
    /// ALREADY_ON.
    pub const ALREADY_ON: i32 = -4;
    /// ON_PENDING.
    pub const ON_PENDING: i32 = -5;
    /// INTERNAL_FAILURE.
    pub const INTERNAL_FAILURE: i32 = -6;
    /// NOT_PRESENT.
    pub const NOT_PRESENT: i32 = -7;
    /// DISABLED.
    pub const DISABLED: i32 = -8;
    /// INVALID_ADDRESS.
    pub const INVALID_ADDRESS: i32 = -9;
}

/// PSCI_VERSION's result: major 1, minor 1.
pub const PSCI_VERSION_1_1: u32 = 0x0001_0001;
/// SMCCC_VERSION's result: 1.1.
pub const SMCCC_VERSION_1_1: u32 = 0x0001_0001;
/// MIGRATE_INFO_TYPE's result: no trusted OS is present / no migration needed.
pub const MIGRATE_INFO_TYPE_NOT_PRESENT: u32 = 2;
/// The bits of a PSCI `target_cpu` / `target_affinity` argument that may be set (Aff3, Aff2,
/// Aff1, Aff0); any other set bit makes the argument invalid.
pub const MPIDR_AFFINITY_MASK: u64 = 0xFF_00FF_FFFF;

/// A return code as the 64-bit x0 value (sign-extended).
#[inline]
pub const fn ret_x0(code: i32) -> u64 {
    code as i64 as u64
}

/// The MPIDR affinity of vCPU `vcpu` (Aff0 = `vcpu`, which must be below 256).
#[inline]
pub const fn mpidr_of(vcpu: u8) -> u64 {
    vcpu as u64
}

/// The vCPU named by a PSCI affinity argument, if it names one of the first `count` vCPUs and
/// sets no bit outside [`MPIDR_AFFINITY_MASK`].
#[inline]
pub fn vcpu_of_mpidr(mpidr: u64, count: usize) -> Option<usize> {
    if mpidr & !MPIDR_AFFINITY_MASK != 0 || mpidr > 0xFF {
        return None;
    }
    let v = usize::try_from(mpidr).ok()?;
    (v < count).then_some(v)
}

/// A vCPU's PSCI power state (AFFINITY_INFO's answer at level 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// Powered on and running (AFFINITY_INFO returns 0).
    On,
    /// Powered off (AFFINITY_INFO returns 1).
    Off,
    /// A CPU_ON was accepted and the VMM has not yet reported the vCPU running (returns 2).
    OnPending,
}

impl PowerState {
    /// The AFFINITY_INFO result for this state.
    #[inline]
    pub const fn affinity_info(self) -> u32 {
        match self {
            PowerState::On => 0,
            PowerState::Off => 1,
            PowerState::OnPending => 2,
        }
    }
}

/// What the VMM must do after a PSCI/SMCCC call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PsciAction {
    /// Write the value to the caller's x0 and resume it at the next instruction.
    Return(u64),
    /// Start vCPU `target` at `entry` with x0 = `context` (booting.rst state: x1..x3 = 0, EL1h
    /// with DAIF masked, MMU off), then call [`Psci::vcpu_started`]; write SUCCESS (0) to the
    /// caller's x0 and resume it. If the vCPU cannot be started, call [`Psci::cpu_on_failed`]
    /// and write INTERNAL_FAILURE instead. The target is ON_PENDING until then.
    CpuOn {
        /// vCPU index.
        target: usize,
        /// Entry point (guest-physical; the target's MMU is off).
        entry: u64,
        /// Value for the target's x0.
        context: u64,
    },
    /// Stop the calling vCPU (it is now OFF); it does not return from the call.
    CpuOff,
    /// CPU_SUSPEND: behave as WFI — resume the caller with x0 = SUCCESS (0) once it has an
    /// interrupt to take (resuming at once is also correct: PSCI allows an early return, and
    /// every power state is treated as standby, as KVM does).
    Suspend,
    /// Power the whole VM off.
    SystemOff,
    /// Reset the whole VM (then call [`Psci::reset`]).
    SystemReset,
}

/// Why a PSCI state table could not be built or updated (VMM-side errors, never a guest's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciError {
    /// Zero vCPUs, or more than the table's capacity (or than 256, the Aff0 range).
    BadVcpuCount(usize),
    /// No such vCPU.
    NoSuchVcpu(usize),
    /// The vCPU is not ON_PENDING.
    NotPending(usize),
}

/// The PSCI/SMCCC service for one VM with up to `MAX_VCPUS` vCPUs; vCPU 0 boots ON.
#[derive(Debug, Clone)]
pub struct Psci<const MAX_VCPUS: usize> {
    states: [PowerState; MAX_VCPUS],
    count: usize,
    entry_range: Option<GpaRange>,
}

impl<const MAX_VCPUS: usize> Psci<MAX_VCPUS> {
    /// A table for `count` vCPUs (1..=min(MAX_VCPUS, 256)): vCPU 0 ON, the others OFF.
    pub const fn new(count: usize) -> Result<Self, PsciError> {
        if count == 0 || count > MAX_VCPUS || count > 256 {
            return Err(PsciError::BadVcpuCount(count));
        }
        let mut s = Self {
            states: [PowerState::Off; MAX_VCPUS],
            count,
            entry_range: None,
        };
        s.reset();
        Ok(s)
    }

    /// Makes CPU_ON refuse entry points outside `ram` with INVALID_ADDRESS.
    pub fn with_entry_range(mut self, ram: GpaRange) -> Self {
        self.entry_range = Some(ram);
        self
    }

    /// Number of vCPUs.
    #[inline]
    pub fn vcpu_count(&self) -> usize {
        self.count
    }

    /// The power state of `vcpu`.
    pub fn state(&self, vcpu: usize) -> Option<PowerState> {
        if vcpu < self.count {
            self.states.get(vcpu).copied()
        } else {
            None
        }
    }

    /// Back to the boot state (vCPU 0 ON, others OFF), e.g. after SYSTEM_RESET.
    pub const fn reset(&mut self) {
        let mut i = 0;
        while i < MAX_VCPUS {
            self.states[i] = if i == 0 {
                PowerState::On
            } else {
                PowerState::Off
            };
            i += 1;
        }
    }

    fn state_mut(&mut self, vcpu: usize) -> Result<&mut PowerState, PsciError> {
        if vcpu >= self.count {
            return Err(PsciError::NoSuchVcpu(vcpu));
        }
        self.states.get_mut(vcpu).ok_or(PsciError::NoSuchVcpu(vcpu))
    }

    /// The VMM started `vcpu` after [`PsciAction::CpuOn`]: ON_PENDING becomes ON.
    pub fn vcpu_started(&mut self, vcpu: usize) -> Result<(), PsciError> {
        let s = self.state_mut(vcpu)?;
        if *s != PowerState::OnPending {
            return Err(PsciError::NotPending(vcpu));
        }
        *s = PowerState::On;
        Ok(())
    }

    /// The VMM could not start `vcpu` after [`PsciAction::CpuOn`]: ON_PENDING goes back to OFF.
    pub fn cpu_on_failed(&mut self, vcpu: usize) -> Result<(), PsciError> {
        let s = self.state_mut(vcpu)?;
        if *s != PowerState::OnPending {
            return Err(PsciError::NotPending(vcpu));
        }
        *s = PowerState::Off;
        Ok(())
    }

    /// Handles one SMC/HVC call from vCPU `caller`: `fid` is w0, `args` are x1..x3. For an SMC32
    /// function (bit 30 of `fid` clear) only the low 32 bits of each argument are used.
    ///
    /// A `caller` that is not one of this VM's vCPUs (a VMM bug, never guest input) gets
    /// INTERNAL_FAILURE from the calls that depend on it (CPU_OFF).
    pub fn call(&mut self, caller: usize, fid: u32, args: [u64; 3]) -> PsciAction {
        let args = if fid & (1 << 30) == 0 {
            args.map(|a| a & 0xFFFF_FFFF)
        } else {
            args
        };
        let [a1, a2, a3] = args;
        let r = |code: i32| PsciAction::Return(ret_x0(code));
        match fid {
            fid::PSCI_VERSION => PsciAction::Return(u64::from(PSCI_VERSION_1_1)),
            fid::CPU_SUSPEND_32 | fid::CPU_SUSPEND_64 => PsciAction::Suspend,
            fid::CPU_OFF => match self.state_mut(caller) {
                Ok(s) => {
                    *s = PowerState::Off;
                    PsciAction::CpuOff
                }
                Err(_) => r(ret::INTERNAL_FAILURE),
            },
            fid::CPU_ON_32 | fid::CPU_ON_64 => self.cpu_on(a1, a2, a3),
            fid::AFFINITY_INFO_32 | fid::AFFINITY_INFO_64 => {
                // Only affinity level 0 is supported (optional above 0 since PSCI 1.0).
                if a2 != 0 {
                    return r(ret::INVALID_PARAMETERS);
                }
                match vcpu_of_mpidr(a1, self.count).and_then(|v| self.state(v)) {
                    Some(s) => PsciAction::Return(u64::from(s.affinity_info())),
                    None => r(ret::INVALID_PARAMETERS),
                }
            }
            fid::MIGRATE_INFO_TYPE => PsciAction::Return(u64::from(MIGRATE_INFO_TYPE_NOT_PRESENT)),
            fid::SYSTEM_OFF => PsciAction::SystemOff,
            fid::SYSTEM_RESET => PsciAction::SystemReset,
            fid::PSCI_FEATURES => match u32::try_from(a1) {
                Ok(f) if Self::psci_features_supported(f) => r(ret::SUCCESS),
                _ => r(ret::NOT_SUPPORTED),
            },
            fid::SMCCC_VERSION => PsciAction::Return(u64::from(SMCCC_VERSION_1_1)),
            fid::SMCCC_ARCH_FEATURES => match u32::try_from(a1) {
                Ok(fid::SMCCC_VERSION | fid::SMCCC_ARCH_FEATURES) => r(ret::SUCCESS),
                _ => r(ret::NOT_SUPPORTED),
            },
            _ => r(ret::NOT_SUPPORTED),
        }
    }

    /// Whether PSCI_FEATURES reports `f` as implemented (result 0; for CPU_SUSPEND 0 also means
    /// the original power_state format, platform-coordinated mode). SMCCC_VERSION is included
    /// so guests discover SMCCC 1.1.
    pub const fn psci_features_supported(f: u32) -> bool {
        matches!(
            f,
            fid::PSCI_VERSION
                | fid::CPU_SUSPEND_32
                | fid::CPU_SUSPEND_64
                | fid::CPU_OFF
                | fid::CPU_ON_32
                | fid::CPU_ON_64
                | fid::AFFINITY_INFO_32
                | fid::AFFINITY_INFO_64
                | fid::MIGRATE_INFO_TYPE
                | fid::SYSTEM_OFF
                | fid::SYSTEM_RESET
                | fid::PSCI_FEATURES
                | fid::SMCCC_VERSION
        )
    }

    fn cpu_on(&mut self, target_mpidr: u64, entry: u64, context: u64) -> PsciAction {
        let r = |code: i32| PsciAction::Return(ret_x0(code));
        let Some(target) = vcpu_of_mpidr(target_mpidr, self.count) else {
            return r(ret::INVALID_PARAMETERS);
        };
        let Ok(state) = self.state_mut(target) else {
            return r(ret::INVALID_PARAMETERS);
        };
        match *state {
            PowerState::On => return r(ret::ALREADY_ON),
            PowerState::OnPending => return r(ret::ON_PENDING),
            PowerState::Off => {}
        }
        let in_ram = self
            .entry_range
            .is_none_or(|ram| ram.contains_access(GuestPhysAddr(entry), 4));
        if !entry.is_multiple_of(4) || !in_ram {
            return r(ret::INVALID_ADDRESS);
        }
        // Re-borrow: `state` ended above because of `self.entry_range`.
        if let Ok(s) = self.state_mut(target) {
            *s = PowerState::OnPending;
        }
        PsciAction::CpuOn {
            target,
            entry,
            context,
        }
    }
}
