//! The kernel trait: every side-effecting operation a PD performs, so that PD logic runs against
//! the real seL4 kernel ([`crate::Sel4Kernel`] on the target) or a simulated one in host tests.

use crate::abi::MessageInfo;
use crate::handler::{Channel, Child};

/// A kernel invocation that failed: the seL4 error code from the reply's label, or a request the
/// runtime refused before reaching the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelError {
    /// The kernel answered with this `seL4_Error`.
    Sel4(u64),
    /// The channel is not granted to this PD for that use (by system.xml).
    ChannelNotGranted(Channel),
    /// More registers asked for than a user context holds.
    TooManyRegisters(usize),
}

impl core::fmt::Display for KernelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KernelError::Sel4(e) => write!(f, "seL4 error {e}"),
            KernelError::ChannelNotGranted(c) => write!(f, "channel {} not granted", c.index()),
            KernelError::TooManyRegisters(n) => write!(f, "{n} registers exceed a user context"),
        }
    }
}

/// Every kernel operation a Microkit PD of this project performs.
pub trait Kernel {
    /// Message register `i` (0..120) of the current message; out-of-range reads give 0.
    fn mr(&self, i: usize) -> u64;
    /// Sets message register `i`; out-of-range writes are dropped.
    fn set_mr(&mut self, i: usize, value: u64);

    /// Notifies the peer of `ch` (seL4_Signal).
    fn notify(&mut self, ch: Channel) -> Result<(), KernelError>;
    /// Acknowledges the IRQ delivered on `ch` (IRQHandler Ack).
    fn irq_ack(&mut self, ch: Channel) -> Result<(), KernelError>;
    /// Protected procedure call to the peer of `ch` (seL4_Call); message registers in and out.
    fn ppcall(&mut self, ch: Channel, msg: MessageInfo) -> Result<MessageInfo, KernelError>;

    /// TCB ReadRegisters on the VM thread of `vcpu`: the first `out.len()` words of its user
    /// context (in `abi::user_context` order) into `out`.
    fn vm_read_registers(&mut self, vcpu: Child, out: &mut [u64]) -> Result<(), KernelError>;
    /// TCB WriteRegisters on the VM thread of `vcpu`: the first `regs.len()` words of its user
    /// context; `resume` restarts the thread.
    fn vm_write_registers(
        &mut self,
        vcpu: Child,
        resume: bool,
        regs: &[u64],
    ) -> Result<(), KernelError>;
    /// TCB ReadRegisters on the thread of child PD `child` (its TCB capability, which Microkit
    /// gives a parent for each child): the first `out.len()` words of its user context.
    fn child_read_registers(&mut self, child: Child, out: &mut [u64]) -> Result<(), KernelError>;
    /// TCB WriteRegisters on the thread of child PD `child`; `resume` restarts the thread (a
    /// thread blocked on its fault is taken off that IPC first, as `microkit_pd_restart` relies
    /// on).
    fn child_write_registers(
        &mut self,
        child: Child,
        resume: bool,
        regs: &[u64],
    ) -> Result<(), KernelError>;
    /// TCB Resume on the VM thread of `vcpu`.
    fn vm_resume(&mut self, vcpu: Child) -> Result<(), KernelError>;
    /// TCB Suspend on the VM thread of `vcpu`.
    fn vm_suspend(&mut self, vcpu: Child) -> Result<(), KernelError>;

    /// ARM VCPU ReadReg (`field` from `abi::vcpu_reg`).
    fn vcpu_read_reg(&mut self, vcpu: Child, field: u64) -> Result<u64, KernelError>;
    /// ARM VCPU WriteReg.
    fn vcpu_write_reg(&mut self, vcpu: Child, field: u64, value: u64) -> Result<(), KernelError>;
    /// ARM VCPU InjectIRQ into list register `index`.
    fn vcpu_inject_irq(
        &mut self,
        vcpu: Child,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<(), KernelError>;
    /// ARM VCPU AckVPPI.
    fn vcpu_ack_vppi(&mut self, vcpu: Child, irq: u64) -> Result<(), KernelError>;

    /// ARM SMC Call on the PD's SMC capability (`smc="true"` in system.xml): the kernel makes
    /// the SMC with x0..x7 = `args` and returns x0..x7 as the firmware left them.
    fn arm_smc_call(&mut self, args: &[u64; SMC_REGS]) -> Result<[u64; SMC_REGS], KernelError>;

    /// The EL1 physical timer's count (CNTPCT_EL0; the kernel exports it to user level).
    fn timer_now(&self) -> u64;
    /// Programs the EL1 physical timer to fire at `deadline` (a CNTPCT_EL0 value; its interrupt
    /// is PPI 30, an IRQ system.xml must grant the PD), or stops it (`None`).
    fn timer_set(&mut self, deadline: Option<u64>);
    /// The frequency of that count in Hz (CNTFRQ_EL0, which firmware set at boot: 62.5 MHz on
    /// QEMU virt), to convert counts to nanoseconds and back (sDDF's timer protocol is in ns).
    fn timer_frequency(&self) -> u64;

    /// Writes bytes to the debug console (debug kernels; dropped on release kernels).
    fn debug_write(&mut self, bytes: &[u8]);

    /// Whether [`Kernel::debug_write`] reaches a console (a debug kernel). A PD that printed
    /// there before its own output was ready replays those lines only when it did not.
    fn has_debug_console(&self) -> bool {
        true
    }

    /// Whether system.xml gives this PD channel `ch` as an IRQ (the grant the Microkit tool
    /// patched in). A PD that shares its system with others of the same program (two VMMs)
    /// asks before it uses a device only one of them may own.
    fn holds_irq(&self, ch: Channel) -> bool;

    /// Whether system.xml lets this PD make protected procedure calls on channel `ch`
    /// (`pp="true"` at its end: the grant the Microkit tool patched in). A PD that shares its
    /// program with others (two VMMs) asks before it relies on a server.
    fn may_call(&self, ch: Channel) -> bool;
}

/// Registers an SMC call takes and returns (x0..x7, seL4's `seL4_ARM_SMCContext`).
pub const SMC_REGS: usize = 8;

/// Packs ARM VCPU InjectIRQ's arguments into its one message word, as libsel4 does.
pub const fn inject_irq_word(virq: u16, priority: u8, group: u8, index: u8) -> u64 {
    virq as u64 | (priority as u64) << 16 | (group as u64) << 24 | (index as u64) << 32
}

/// Packs TCB Read/WriteRegisters' first word: the flag (suspend source / resume target) in bit 0
/// and the architecture flags in bits 8..16.
pub const fn registers_flags_word(flag: bool, arch_flags: u8) -> u64 {
    flag as u64 | (arch_flags as u64) << 8
}

/// `core::fmt::Write` adapter over [`Kernel::debug_write`].
pub struct DebugWriter<'a, K: Kernel + ?Sized>(pub &'a mut K);

impl<K: Kernel + ?Sized> core::fmt::Write for DebugWriter<'_, K> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.debug_write(s.as_bytes());
        Ok(())
    }
}

/// Prints to a kernel's debug console: `debug_println!(kernel, "x = {}", x)`.
#[macro_export]
macro_rules! debug_println {
    ($k:expr, $($arg:tt)*) => {{
        use core::fmt::Write as _;
        let mut w = $crate::kernel::DebugWriter(&mut $k);
        let _ = w.write_fmt(format_args!($($arg)*));
        let _ = w.write_str("\n");
    }};
}
