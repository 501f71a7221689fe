//! The EL1 physical timer from EL0: Microkit's kernels for qemu_virt_aarch64 are built with
//! CONFIG_EXPORT_PCNT_USER and CONFIG_EXPORT_PTMR_USER, so a PD may read CNTPCT_EL0 and program
//! CNTP_CVAL_EL0 / CNTP_CTL_EL0 itself. The timer's interrupt is PPI 30, which system.xml grants
//! as an IRQ (the kernel's own timer is the hypervisor timer, PPI 26).

/// CNTPCT_EL0: the physical count.
pub fn now() -> u64 {
    let v: u64;
    // SAFETY: reading the physical counter has no side effects; the kernel lets EL0 read it
    // (CNTKCTL_EL1.EL0PCTEN, CONFIG_EXPORT_PCNT_USER).
    unsafe { core::arch::asm!("isb", "mrs {0}, cntpct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// CNTFRQ_EL0: the counter's frequency in Hz (firmware writes it once at boot).
pub fn frequency() -> u64 {
    let v: u64;
    // SAFETY: reading the counter frequency register has no side effects; EL0 may read it
    // whenever it may read a counter (CNTKCTL_EL1.EL0PCTEN, CONFIG_EXPORT_PCNT_USER).
    unsafe { core::arch::asm!("mrs {0}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Programs the timer to fire at physical count `deadline` (enabled, unmasked), or disables it.
pub fn set(deadline: Option<u64>) {
    match deadline {
        // SAFETY: writing the EL1 physical timer's compare value and control is allowed at EL0
        // (CNTKCTL_EL1.EL0PTEN, CONFIG_EXPORT_PTMR_USER); it only changes when PPI 30 fires.
        Some(d) => unsafe {
            core::arch::asm!(
                "msr cntp_cval_el0, {0}",
                "msr cntp_ctl_el0, {1}",
                "isb",
                in(reg) d,
                in(reg) 1u64,
                options(nomem, nostack)
            )
        },
        // SAFETY: as above; ENABLE = 0 stops the timer and drops its interrupt.
        None => unsafe {
            core::arch::asm!("msr cntp_ctl_el0, {0}", "isb", in(reg) 0u64, options(nomem, nostack))
        },
    }
}
