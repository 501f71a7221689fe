//! Register access for one guest vCPU, lazy by design: the VMM protection domain implements
//! [`Vcpu`] with a cache that reads from the kernel only the registers an exit asks for and
//! writes back only the ones it changed, so the core states its needs and the PD keeps the
//! kernel invocations per exit minimal.

/// An EL1 system register of the guest that the VMM may read or write (held by seL4 in the vCPU
/// object, or emulated by the VMM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SysReg {
    /// System control register.
    SctlrEl1,
    /// Translation table base 0.
    Ttbr0El1,
    /// Translation table base 1.
    Ttbr1El1,
    /// Translation control register.
    TcrEl1,
    /// Memory attribute indirection register.
    MairEl1,
    /// Exception syndrome register.
    EsrEl1,
    /// Fault address register.
    FarEl1,
    /// Exception link register.
    ElrEl1,
    /// Saved program status register.
    SpsrEl1,
    /// Vector base address register.
    VbarEl1,
    /// Stack pointer of EL1 (SP_EL1).
    SpEl1,
    /// Virtual timer control.
    CntvCtlEl0,
    /// Virtual timer compare value.
    CntvCvalEl0,
}

/// Why a register could not be accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuError {
    /// The kernel refused the read or write (its error code).
    Kernel(u64),
    /// A general-purpose register number above 30 (31 means XZR or SP and is never stored).
    BadRegister(u8),
}

/// Register access for the vCPU whose fault is being handled.
///
/// General-purpose register 31 is never passed here: callers map it to XZR (reads zero, writes
/// dropped) or SP themselves, as the instruction says.
pub trait Vcpu {
    /// Reads `x<n>` for `n` in 0..=30.
    fn gpr(&mut self, n: u8) -> Result<u64, VcpuError>;
    /// Writes `x<n>` for `n` in 0..=30.
    fn set_gpr(&mut self, n: u8, value: u64) -> Result<(), VcpuError>;
    /// The faulting instruction's address.
    fn pc(&mut self) -> Result<u64, VcpuError>;
    /// Sets the address the guest resumes at.
    fn set_pc(&mut self, value: u64) -> Result<(), VcpuError>;
    /// The guest's stack pointer at its current EL and SPSel.
    fn sp(&mut self) -> Result<u64, VcpuError>;
    /// Sets the guest's current stack pointer.
    fn set_sp(&mut self, value: u64) -> Result<(), VcpuError>;
    /// PSTATE of the guest at the fault (as SPSR_EL2 holds it).
    fn pstate(&mut self) -> Result<u64, VcpuError>;
    /// Sets the guest's PSTATE on resume.
    fn set_pstate(&mut self, value: u64) -> Result<(), VcpuError>;
    /// Reads an EL1 system register.
    fn sysreg(&mut self, reg: SysReg) -> Result<u64, VcpuError>;
    /// Writes an EL1 system register.
    fn set_sysreg(&mut self, reg: SysReg, value: u64) -> Result<(), VcpuError>;
    /// A hint before the first access: this exit will use the general registers in `mask` (bit
    /// n: x<n>), so a lazy implementation can fetch them all at its first miss. Nothing else
    /// changes: a register not announced is still read correctly, only perhaps at a second cost.
    fn expect_gprs(&mut self, mask: u32) {
        let _ = mask;
    }
}

/// [`Vcpu::expect_gprs`] mask of every general register x0..x30.
pub const ALL_GPRS: u32 = (1 << 31) - 1;

/// A plain in-memory vCPU: the executable model the lazy PD implementation is tested against, and
/// the register file of host tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VcpuState {
    /// x0..x30.
    pub x: [u64; 31],
    /// Program counter.
    pub pc: u64,
    /// Current stack pointer.
    pub sp: u64,
    /// PSTATE / SPSR_EL2 image.
    pub pstate: u64,
    /// EL1 system registers, indexed by [`SysReg`] declaration order.
    pub sys: [u64; 13],
}

impl VcpuState {
    fn check(n: u8) -> Result<usize, VcpuError> {
        if n <= 30 {
            Ok(n as usize)
        } else {
            Err(VcpuError::BadRegister(n))
        }
    }
}

impl Vcpu for VcpuState {
    fn gpr(&mut self, n: u8) -> Result<u64, VcpuError> {
        Ok(self.x[Self::check(n)?])
    }
    fn set_gpr(&mut self, n: u8, value: u64) -> Result<(), VcpuError> {
        self.x[Self::check(n)?] = value;
        Ok(())
    }
    fn pc(&mut self) -> Result<u64, VcpuError> {
        Ok(self.pc)
    }
    fn set_pc(&mut self, value: u64) -> Result<(), VcpuError> {
        self.pc = value;
        Ok(())
    }
    fn sp(&mut self) -> Result<u64, VcpuError> {
        Ok(self.sp)
    }
    fn set_sp(&mut self, value: u64) -> Result<(), VcpuError> {
        self.sp = value;
        Ok(())
    }
    fn pstate(&mut self) -> Result<u64, VcpuError> {
        Ok(self.pstate)
    }
    fn set_pstate(&mut self, value: u64) -> Result<(), VcpuError> {
        self.pstate = value;
        Ok(())
    }
    fn sysreg(&mut self, reg: SysReg) -> Result<u64, VcpuError> {
        Ok(self.sys[reg as usize])
    }
    fn set_sysreg(&mut self, reg: SysReg, value: u64) -> Result<(), VcpuError> {
        self.sys[reg as usize] = value;
        Ok(())
    }
}
