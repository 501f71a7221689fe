//! [`LazyVcpu`]: the guest vCPU's registers as the exit path sees them, read from the kernel only
//! when asked for and written back only when changed.
//!
//! TCB ReadRegisters and WriteRegisters move a *prefix* of `seL4_UserContext` (pc, sp, spsr, x0..
//! in the kernel's order), so an exit costs at most one read and one write of the prefix up to
//! the highest changed register. The read, at the first register the exit needs that it does not
//! know, covers pc, sp, spsr and every register the exit announced
//! ([`Vcpu::expect_gprs`]: the MMIO emulator names the transfer register, or all of them before
//! it decodes an instruction), not the whole context: the kernel copies, and the PD takes, a
//! word per register. Values the fault message already carries (the IP of a VMFault; x0..x7,
//! IP, SP and SPSR of an HVC) are seeded and never read.
//! vCPU system registers are read and written one by one (ARM VCPU ReadReg/WriteReg).
//!
//! One cache lives as long as the VMM and is reset per exit ([`LazyVcpu::begin`]): its register
//! arrays are neither zeroed nor moved on the hot path.

use microkit_rt::abi::{unknown_syscall, user_context, vcpu_reg};
use microkit_rt::{Child, Kernel, KernelError};
use vmm_core::vcpu::{SysReg, Vcpu, VcpuError};

const SYSREGS: usize = 13;

/// x0's index in the user context (x0..x8 are contiguous there).
const CTX_X0: usize = match user_context::gpr_index(0) {
    Some(i) => i,
    None => 0,
};

/// The shortest prefix a read fetches: pc, sp and spsr. The general registers come from what
/// the exit announced ([`Vcpu::expect_gprs`]): an MMIO exit whose transfer register is x0 reads
/// four words, not eleven.
const READ_MIN: usize = CTX_X0;

/// The user-context prefix length that holds every register of `mask` (bit n: x<n>).
fn prefix_for(mask: u32) -> usize {
    let mut len = 0;
    let mut m = mask & vmm_core::vcpu::ALL_GPRS;
    while m != 0 {
        let n = m.trailing_zeros() as u8;
        m &= m - 1;
        if let Some(i) = user_context::gpr_index(n) {
            len = len.max(i + 1);
        }
    }
    len
}

/// The seL4 `seL4_VCPUReg` field of each [`SysReg`].
pub const fn vcpu_field(r: SysReg) -> u64 {
    match r {
        SysReg::SctlrEl1 => vcpu_reg::SCTLR,
        SysReg::Ttbr0El1 => vcpu_reg::TTBR0,
        SysReg::Ttbr1El1 => vcpu_reg::TTBR1,
        SysReg::TcrEl1 => vcpu_reg::TCR,
        SysReg::MairEl1 => vcpu_reg::MAIR,
        SysReg::EsrEl1 => vcpu_reg::ESR,
        SysReg::FarEl1 => vcpu_reg::FAR,
        SysReg::ElrEl1 => vcpu_reg::ELR_EL1,
        SysReg::SpsrEl1 => vcpu_reg::SPSR_EL1,
        SysReg::VbarEl1 => vcpu_reg::VBAR,
        SysReg::SpEl1 => vcpu_reg::SP_EL1,
        SysReg::CntvCtlEl0 => vcpu_reg::CNTV_CTL,
        SysReg::CntvCvalEl0 => vcpu_reg::CNTV_CVAL,
    }
}

/// The register cache of one exit.
pub struct LazyVcpu<K: Kernel> {
    k: K,
    vcpu: Child,
    ctx: [u64; user_context::LEN],
    /// Where the registers the exit changed wait while a read overwrites the prefix.
    scratch: [u64; user_context::LEN],
    valid: u64,
    dirty: u64,
    /// The prefix length the first read fetches (at least [`READ_MIN`]).
    read_len: usize,
    sys: [u64; SYSREGS],
    sys_valid: u16,
    sys_dirty: u16,
    calls: u32,
}

fn kerr(e: KernelError) -> VcpuError {
    match e {
        KernelError::Sel4(code) => VcpuError::Kernel(code),
        _ => VcpuError::Kernel(u64::MAX),
    }
}

impl<K: Kernel> LazyVcpu<K> {
    /// An empty cache for `vcpu`.
    pub const fn new(k: K, vcpu: Child) -> Self {
        LazyVcpu {
            k,
            vcpu,
            ctx: [0; user_context::LEN],
            scratch: [0; user_context::LEN],
            valid: 0,
            dirty: 0,
            read_len: READ_MIN,
            sys: [0; SYSREGS],
            sys_valid: 0,
            sys_dirty: 0,
            calls: 0,
        }
    }

    /// [`Self::begin`] for an exit of `vcpu` (an SMP guest: each exit may come from another).
    pub fn begin_for(&mut self, vcpu: Child) {
        self.vcpu = vcpu;
        self.begin();
    }

    /// The vCPU whose registers this cache holds.
    pub fn vcpu(&self) -> Child {
        self.vcpu
    }

    /// Forgets the last exit: nothing known, nothing changed, no call made. The arrays keep
    /// their stale contents, which nothing reads before a register is valid again.
    pub fn begin(&mut self) {
        self.valid = 0;
        self.dirty = 0;
        self.read_len = READ_MIN;
        self.sys_valid = 0;
        self.sys_dirty = 0;
        self.calls = 0;
    }

    /// Records a value the fault message carried (index in `abi::user_context` order).
    pub fn seed(&mut self, index: usize, value: u64) {
        if index < user_context::LEN {
            self.ctx[index] = value;
            self.valid |= 1 << index;
        }
    }

    /// Kernel invocations made so far.
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// Makes registers `0..=index` valid, keeping the ones already known: one ReadRegisters of
    /// the prefix that also holds every announced register (and pc, sp, spsr), merged
    /// under the registers this exit changed.
    //
    // History (component tests, vmm/pd/tests/lazy_vcpu.rs): reading only `0..=index` made
    // accesses in ascending order miss again (an SMC firmware call's x0..x3 made four
    // ReadRegisters); then the whole context was read, which cost a word per register in the
    // kernel and here (a third of an MMIO exit's VMM instructions). The announced prefix keeps
    // the one read and moves only what the exit uses.
    fn load_prefix(&mut self, index: usize) -> Result<(), VcpuError> {
        let want = (1u64 << (index + 1)) - 1;
        if self.valid & want == want {
            return Ok(());
        }
        let n = self.read_len.max(index + 1).min(user_context::LEN);
        // The registers this exit changed (usually the PC and one destination) are set aside,
        // the prefix is read in place, and they are put back over the kernel's stale values.
        let keep = self.dirty & ((1u64 << n) - 1);
        let mut bits = keep;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            self.scratch[i] = self.ctx[i];
        }
        self.calls += 1;
        let read = self.k.vm_read_registers(self.vcpu, &mut self.ctx[..n]);
        let mut bits = keep;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            self.ctx[i] = self.scratch[i];
        }
        read.map_err(kerr)?;
        self.valid |= (1u64 << n) - 1;
        Ok(())
    }

    fn get(&mut self, index: usize) -> Result<u64, VcpuError> {
        if self.valid & (1 << index) == 0 {
            self.load_prefix(index)?;
        }
        Ok(self.ctx[index])
    }

    fn set(&mut self, index: usize, value: u64) {
        self.ctx[index] = value;
        self.valid |= 1 << index;
        self.dirty |= 1 << index;
    }

    /// Writes every changed register back: the changed vCPU registers one by one, then one
    /// WriteRegisters of the user-context prefix up to the highest changed register (reading the
    /// unknown ones below it first). Returns the kernel invocations of the whole exit.
    pub fn flush(&mut self) -> Result<u32, VcpuError> {
        // Only the changed vCPU registers are visited (usually none).
        let mut bits = self.sys_dirty;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if let Some(reg) = SYSREG_ORDER.get(i) {
                self.calls += 1;
                self.k
                    .vcpu_write_reg(self.vcpu, vcpu_field(*reg), self.sys[i])
                    .map_err(kerr)?;
            }
        }
        self.sys_dirty = 0;
        if self.dirty != 0 {
            let top = 63 - self.dirty.leading_zeros() as usize;
            self.load_prefix(top)?;
            self.calls += 1;
            self.k
                .vm_write_registers(self.vcpu, false, &self.ctx[..=top])
                .map_err(kerr)?;
            self.dirty = 0;
        }
        Ok(self.calls)
    }

    /// For an exit that answers an UnknownSyscall fault (a guest HVC): when nothing but x0..x7
    /// and the PC changed (no vCPU register either), the reply carries them (see
    /// `abi::unknown_syscall`): returns its message registers (x0..x7, the new PC as FaultIP,
    /// where the restart resumes, and as ELR, SP as the fault message gave it) and forgets the
    /// changes, so [`Self::flush`] has nothing to write. Otherwise `None`, and the changes stay
    /// for `flush`.
    pub fn take_syscall_reply(&mut self, fault: &[u64]) -> Option<[u64; unknown_syscall::ELR + 1]> {
        let xs = ((1u64 << 8) - 1) << CTX_X0;
        let allowed = xs | 1 << user_context::PC;
        let seeded = xs | 1 << user_context::PC;
        if self.sys_dirty != 0 || self.dirty & !allowed != 0 || self.valid & seeded != seeded {
            return None;
        }
        let mut mrs = [0u64; unknown_syscall::ELR + 1];
        for (n, mr) in mrs.iter_mut().enumerate().take(8) {
            *mr = self.ctx[CTX_X0 + n];
        }
        mrs[unknown_syscall::FAULT_IP] = self.ctx[user_context::PC];
        mrs[unknown_syscall::SP] = *fault.get(unknown_syscall::SP)?;
        mrs[unknown_syscall::ELR] = self.ctx[user_context::PC];
        self.dirty = 0;
        Some(mrs)
    }

    /// Every user-context register, for a diagnostic (one ReadRegisters of the whole context).
    pub fn dump(&mut self) -> Result<[u64; user_context::LEN], VcpuError> {
        self.load_prefix(user_context::LEN - 1)?;
        Ok(self.ctx)
    }

    fn sys_index(r: SysReg) -> usize {
        r as usize
    }
}

/// [`SysReg`] values in declaration order (their index in the cache).
const SYSREG_ORDER: [SysReg; SYSREGS] = [
    SysReg::SctlrEl1,
    SysReg::Ttbr0El1,
    SysReg::Ttbr1El1,
    SysReg::TcrEl1,
    SysReg::MairEl1,
    SysReg::EsrEl1,
    SysReg::FarEl1,
    SysReg::ElrEl1,
    SysReg::SpsrEl1,
    SysReg::VbarEl1,
    SysReg::SpEl1,
    SysReg::CntvCtlEl0,
    SysReg::CntvCvalEl0,
];

impl<K: Kernel> Vcpu for LazyVcpu<K> {
    fn gpr(&mut self, n: u8) -> Result<u64, VcpuError> {
        let i = user_context::gpr_index(n).ok_or(VcpuError::BadRegister(n))?;
        self.get(i)
    }
    fn set_gpr(&mut self, n: u8, value: u64) -> Result<(), VcpuError> {
        let i = user_context::gpr_index(n).ok_or(VcpuError::BadRegister(n))?;
        self.set(i, value);
        Ok(())
    }
    fn pc(&mut self) -> Result<u64, VcpuError> {
        self.get(user_context::PC)
    }
    fn set_pc(&mut self, value: u64) -> Result<(), VcpuError> {
        self.set(user_context::PC, value);
        Ok(())
    }
    fn sp(&mut self) -> Result<u64, VcpuError> {
        // At EL1 with SPSel = 1 the guest's current stack pointer is SP_EL1, a vCPU register;
        // otherwise it is SP_EL0, which the TCB context holds.
        if self.pstate()? & 0xf == 0b0101 {
            self.sysreg(SysReg::SpEl1)
        } else {
            self.get(user_context::SP)
        }
    }
    fn set_sp(&mut self, value: u64) -> Result<(), VcpuError> {
        if self.pstate()? & 0xf == 0b0101 {
            self.set_sysreg(SysReg::SpEl1, value)
        } else {
            self.set(user_context::SP, value);
            Ok(())
        }
    }
    fn pstate(&mut self) -> Result<u64, VcpuError> {
        self.get(user_context::SPSR)
    }
    fn set_pstate(&mut self, value: u64) -> Result<(), VcpuError> {
        self.set(user_context::SPSR, value);
        Ok(())
    }
    fn sysreg(&mut self, reg: SysReg) -> Result<u64, VcpuError> {
        let i = Self::sys_index(reg);
        if self.sys_valid & (1 << i) == 0 {
            self.calls += 1;
            self.sys[i] = self
                .k
                .vcpu_read_reg(self.vcpu, vcpu_field(reg))
                .map_err(kerr)?;
            self.sys_valid |= 1 << i;
        }
        Ok(self.sys[i])
    }
    fn set_sysreg(&mut self, reg: SysReg, value: u64) -> Result<(), VcpuError> {
        let i = Self::sys_index(reg);
        self.sys[i] = value;
        self.sys_valid |= 1 << i;
        self.sys_dirty |= 1 << i;
        Ok(())
    }
    fn expect_gprs(&mut self, mask: u32) {
        self.read_len = self.read_len.max(prefix_for(mask));
    }
}
