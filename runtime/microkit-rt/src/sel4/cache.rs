//! Cache geometry for cache maintenance from EL0 (seL4 sets SCTLR_EL1.UCI and UCT when built
//! with AARCH64_USER_CACHE_ENABLE, as Microkit's kernels are).

/// Smallest data cache line in bytes, from CTR_EL0.DminLine.
pub fn dcache_line_size() -> usize {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects; EL0 may read it when SCTLR_EL1.UCT is set.
    unsafe {
        core::arch::asm!("mrs {0}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags))
    };
    4 << ((ctr >> 16) & 0xf)
}
