//! Fault injection for the restart tests (feature `fault-injection`, off by default): a PD
//! crashes on purpose with a wild load, the fault a buggy driver would take.

/// An address no Microkit PD maps (the first page is never mapped).
const WILD: usize = 0x8;

/// Loads from an unmapped address: the kernel stops the thread with a VM fault and sends it
/// to the PD's parent (its monitor), which restarts it or not. Does not return.
pub fn wild_load() -> ! {
    // SAFETY: a read of an address nothing maps never touches memory; the MMU faults it and
    // the kernel suspends this thread before the value is used. Volatile, so it is not elided.
    let _ = unsafe { core::ptr::read_volatile(WILD as *const u64) };
    // Not reached: the thread is restarted from its entry point, or stays blocked.
    loop {
        core::hint::spin_loop();
    }
}
