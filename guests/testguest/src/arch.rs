//! AArch64 system registers, barriers and WFI, each behind a small safe function: the generic
//! timer (CNTVCT/CNTFRQ and the EL1 virtual timer), PSTATE.I masking, and the syndrome registers
//! the exception handlers read, and the two barriers the virtio driver needs. None of these
//! touches memory.

use core::arch::asm;

macro_rules! read_sysreg {
    ($(#[$m:meta])* $name:ident, $reg:literal) => {
        $(#[$m])*
        #[inline(always)]
        pub fn $name() -> u64 {
            let v: u64;
            // SAFETY: reading this system register at EL1 has no side effect on memory.
            unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) };
            v
        }
    };
}

macro_rules! write_sysreg {
    ($(#[$m:meta])* $name:ident, $reg:literal) => {
        $(#[$m])*
        #[inline(always)]
        pub fn $name(v: u64) {
            // SAFETY: this register only controls the virtual timer or reports syndromes; writing
            // it cannot affect Rust-visible memory. The ISB makes the write take effect before
            // whatever the caller does next.
            unsafe { asm!(concat!("msr ", $reg, ", {}"), "isb", in(reg) v, options(nostack, preserves_flags)) };
        }
    };
}

read_sysreg!(/// CNTFRQ_EL0: the system counter frequency in Hz.
    cntfrq, "cntfrq_el0");
read_sysreg!(/// CNTV_CTL_EL0: bit 0 ENABLE, bit 1 IMASK, bit 2 ISTATUS.
    cntv_ctl, "cntv_ctl_el0");
write_sysreg!(/// Writes CNTV_CTL_EL0.
    set_cntv_ctl, "cntv_ctl_el0");
write_sysreg!(/// Writes CNTV_TVAL_EL0 (a signed 32-bit down-counter from now).
    set_cntv_tval, "cntv_tval_el0");
read_sysreg!(/// ESR_EL1.
    esr_el1, "esr_el1");
read_sysreg!(/// FAR_EL1.
    far_el1, "far_el1");
read_sysreg!(/// CurrentEL (the EL in bits 3:2).
    current_el, "currentel");
read_sysreg!(/// CPACR_EL1.
    cpacr_el1, "cpacr_el1");
read_sysreg!(/// VBAR_EL1.
    vbar_el1, "vbar_el1");
read_sysreg!(/// MPIDR_EL1: Aff0 (bits 7:0) is the CPU's number on QEMU virt and under the VMM.
    mpidr_el1, "mpidr_el1");

/// This CPU's number (MPIDR_EL1.Aff0).
#[inline(always)]
pub fn cpu_id() -> usize {
    (mpidr_el1() & 0xff) as usize
}

/// CNTV_CTL_EL0.ENABLE.
pub const CNTV_ENABLE: u64 = 1 << 0;
/// CNTV_CTL_EL0.ISTATUS: the timer condition is met.
pub const CNTV_ISTATUS: u64 = 1 << 2;

/// CNTVCT_EL0, read after an ISB so it is not taken early.
#[inline(always)]
pub fn now() -> u64 {
    let v: u64;
    // SAFETY: an ISB and a counter read; no memory effect.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// A CNTVCT deadline `ms` milliseconds from now.
pub fn deadline_ms(ms: u64) -> u64 {
    now() + cntfrq() / 1000 * ms
}

/// Unmasks IRQs (PSTATE.I = 0); a pending one is taken right after.
#[inline(always)]
pub fn irq_unmask() {
    // SAFETY: lets the IRQ vector run; the handler saves and restores everything it touches.
    // Not `nomem`: the handler writes the statics the caller reads next.
    unsafe { asm!("msr daifclr, #2", "isb", options(nostack, preserves_flags)) };
}

/// Masks IRQs (PSTATE.I = 1).
#[inline(always)]
pub fn irq_mask() {
    // SAFETY: only masks IRQs.
    unsafe { asm!("msr daifset, #2", "isb", options(nostack, preserves_flags)) };
}

/// DMB SY: every memory access before it is observed before every one after it (by the device
/// too). Not `nomem`, so it is a compiler barrier as well: no access moves across it.
#[inline(always)]
pub fn dmb() {
    // SAFETY: a barrier; no memory effect of its own.
    unsafe { asm!("dmb sy", options(nostack, preserves_flags)) };
}

/// DSB SY: every memory access before it has completed before any instruction after it runs
/// (before a doorbell write, the ring updates are visible). A compiler barrier too.
#[inline(always)]
pub fn dsb() {
    // SAFETY: a barrier; no memory effect of its own.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// WFI: waits until an interrupt is pending (even with PSTATE.I set).
#[inline(always)]
pub fn wfi() {
    // SAFETY: suspends until an interrupt is pending; no memory effect.
    unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
}
