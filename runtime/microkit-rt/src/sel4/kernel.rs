//! The real kernel: [`Sel4Kernel`] performs each [`Kernel`] operation as the seL4 invocation it
//! names, and [`Sel4Transport`] gives the event loop its syscalls.

use super::{entry, ipc_buffer, syscall};
use crate::abi::{KernelConfig, LABELS, MessageInfo, error, slot, user_context};
use crate::event_loop::{Grants, Transport};
use crate::handler::{Channel, Child};
use crate::kernel::{Kernel, KernelError, SMC_REGS, inject_irq_word, registers_flags_word};

/// The seL4 kernel as this PD sees it (zero-sized; the grants come from the patched symbols).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sel4Kernel {
    grants: Grants,
}

impl Sel4Kernel {
    /// The kernel handle, with the channel grants the Microkit tool patched into this PD.
    pub fn new() -> Self {
        Self {
            grants: entry::grants(),
        }
    }

    /// A handle with no grants, for a handler built as a constant (see
    /// [`crate::PdStatic`]): every notification it tries is refused until the start-up code
    /// replaces it with [`Self::new`].
    pub const fn unpatched() -> Self {
        Self {
            grants: Grants::NONE,
        }
    }

    /// TCB ReadRegisters on the TCB in `tcb`: the first `out.len()` words of its user context.
    fn read_registers(tcb: u64, out: &mut [u64]) -> Result<(), KernelError> {
        if out.len() > user_context::LEN {
            return Err(KernelError::TooManyRegisters(out.len()));
        }
        ipc_buffer::set_mr(0, registers_flags_word(false, 0));
        ipc_buffer::set_mr(1, out.len() as u64);
        Self::invoke(tcb, LABELS.tcb_read_registers, 2)?;
        for (i, r) in out.iter_mut().enumerate() {
            *r = ipc_buffer::mr(i);
        }
        Ok(())
    }

    /// TCB WriteRegisters on the TCB in `tcb`.
    fn write_registers(tcb: u64, resume: bool, regs: &[u64]) -> Result<(), KernelError> {
        if regs.len() > user_context::LEN {
            return Err(KernelError::TooManyRegisters(regs.len()));
        }
        ipc_buffer::set_mr(0, registers_flags_word(resume, 0));
        ipc_buffer::set_mr(1, regs.len() as u64);
        for (i, r) in regs.iter().enumerate() {
            ipc_buffer::set_mr(2 + i, *r);
        }
        Self::invoke(tcb, LABELS.tcb_write_registers, 2 + regs.len()).map(|_| ())
    }

    fn invoke(cap: u64, label: u64, length: usize) -> Result<MessageInfo, KernelError> {
        let reply = syscall::call(cap, MessageInfo::new(label, length));
        match reply.label() {
            error::NO_ERROR => Ok(reply),
            e => Err(KernelError::Sel4(e)),
        }
    }
}

impl Kernel for Sel4Kernel {
    fn holds_irq(&self, ch: Channel) -> bool {
        self.grants.is_irq(ch)
    }
    fn may_call(&self, ch: Channel) -> bool {
        self.grants.may_call(ch)
    }
    fn mr(&self, i: usize) -> u64 {
        ipc_buffer::mr(i)
    }
    fn set_mr(&mut self, i: usize, value: u64) {
        ipc_buffer::set_mr(i, value)
    }

    fn notify(&mut self, ch: Channel) -> Result<(), KernelError> {
        if !self.grants.may_notify(ch) {
            return Err(KernelError::ChannelNotGranted(ch));
        }
        syscall::signal(ch.notification_slot());
        Ok(())
    }

    fn irq_ack(&mut self, ch: Channel) -> Result<(), KernelError> {
        if !self.grants.is_irq(ch) {
            return Err(KernelError::ChannelNotGranted(ch));
        }
        Self::invoke(ch.irq_slot(), LABELS.irq_ack_irq, 0).map(|_| ())
    }

    fn ppcall(&mut self, ch: Channel, msg: MessageInfo) -> Result<MessageInfo, KernelError> {
        if !self.grants.may_call(ch) {
            return Err(KernelError::ChannelNotGranted(ch));
        }
        Ok(syscall::call(ch.endpoint_slot(), msg))
    }

    fn vm_read_registers(&mut self, vcpu: Child, out: &mut [u64]) -> Result<(), KernelError> {
        Self::read_registers(vcpu.vm_tcb_slot(), out)
    }

    fn vm_write_registers(
        &mut self,
        vcpu: Child,
        resume: bool,
        regs: &[u64],
    ) -> Result<(), KernelError> {
        Self::write_registers(vcpu.vm_tcb_slot(), resume, regs)
    }

    fn child_read_registers(&mut self, child: Child, out: &mut [u64]) -> Result<(), KernelError> {
        Self::read_registers(child.tcb_slot(), out)
    }

    fn child_write_registers(
        &mut self,
        child: Child,
        resume: bool,
        regs: &[u64],
    ) -> Result<(), KernelError> {
        Self::write_registers(child.tcb_slot(), resume, regs)
    }

    fn vm_resume(&mut self, vcpu: Child) -> Result<(), KernelError> {
        Self::invoke(vcpu.vm_tcb_slot(), LABELS.tcb_resume, 0).map(|_| ())
    }

    fn vm_suspend(&mut self, vcpu: Child) -> Result<(), KernelError> {
        Self::invoke(vcpu.vm_tcb_slot(), LABELS.tcb_suspend, 0).map(|_| ())
    }

    fn vcpu_read_reg(&mut self, vcpu: Child, field: u64) -> Result<u64, KernelError> {
        ipc_buffer::set_mr(0, field);
        Self::invoke(vcpu.vcpu_slot(), LABELS.arm_vcpu_read_reg, 1)?;
        Ok(ipc_buffer::mr(0))
    }

    fn vcpu_write_reg(&mut self, vcpu: Child, field: u64, value: u64) -> Result<(), KernelError> {
        ipc_buffer::set_mr(0, field);
        ipc_buffer::set_mr(1, value);
        Self::invoke(vcpu.vcpu_slot(), LABELS.arm_vcpu_write_reg, 2).map(|_| ())
    }

    fn vcpu_inject_irq(
        &mut self,
        vcpu: Child,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<(), KernelError> {
        ipc_buffer::set_mr(0, inject_irq_word(virq, priority, group, index));
        Self::invoke(vcpu.vcpu_slot(), LABELS.arm_vcpu_inject_irq, 1).map(|_| ())
    }

    fn vcpu_ack_vppi(&mut self, vcpu: Child, irq: u64) -> Result<(), KernelError> {
        ipc_buffer::set_mr(0, irq);
        Self::invoke(vcpu.vcpu_slot(), LABELS.arm_vcpu_ack_vppi, 1).map(|_| ())
    }

    fn arm_smc_call(&mut self, args: &[u64; SMC_REGS]) -> Result<[u64; SMC_REGS], KernelError> {
        for (i, a) in args.iter().enumerate() {
            ipc_buffer::set_mr(i, *a);
        }
        Self::invoke(slot::ARM_SMC, LABELS.arm_smc_call, SMC_REGS)?;
        Ok(core::array::from_fn(ipc_buffer::mr))
    }

    fn timer_now(&self) -> u64 {
        super::timer::now()
    }

    fn timer_set(&mut self, deadline: Option<u64>) {
        super::timer::set(deadline)
    }

    fn timer_frequency(&self) -> u64 {
        super::timer::frequency()
    }

    fn debug_write(&mut self, bytes: &[u8]) {
        debug_write(bytes)
    }

    fn has_debug_console(&self) -> bool {
        KernelConfig::CURRENT.has_debug_putchar()
    }
}

/// Writes bytes with `seL4_DebugPutChar` on a debug kernel; nothing on a release kernel.
pub fn debug_write(bytes: &[u8]) {
    if KernelConfig::CURRENT.has_debug_putchar() {
        for &b in bytes {
            syscall::debug_put_char(b);
        }
    }
}

/// The event loop's syscalls on seL4.
pub struct Sel4Transport;

impl Transport for Sel4Transport {
    fn recv(&mut self) -> (u64, MessageInfo) {
        syscall::recv(slot::INPUT, slot::REPLY)
    }
    fn reply_recv(&mut self, reply: MessageInfo) -> (u64, MessageInfo) {
        syscall::reply_recv(slot::INPUT, reply, slot::REPLY)
    }
    fn nb_send_recv(&mut self, dest: u64, msg: MessageInfo) -> (u64, MessageInfo) {
        syscall::nb_send_recv(dest, msg, slot::INPUT, slot::REPLY)
    }
    fn send(&mut self, dest: u64, msg: MessageInfo) {
        syscall::send(dest, msg)
    }
    fn irq_ack(&mut self, irq_slot: u64) {
        syscall::call(irq_slot, MessageInfo::new(LABELS.irq_ack_irq, 0));
    }
    fn report(&mut self, what: &str, detail: &dyn core::fmt::Display) {
        use core::fmt::Write;
        let mut w = crate::kernel::DebugWriter(&mut Sel4Kernel::default());
        let _ = writeln!(w, "{}: {}: {}", entry::Name, what, detail);
    }
}
