//! A second CPU for the `smp-ipi` case and the IPI benchmark: its entry point for PSCI CPU_ON (stack pointer from the
//! context id, FP/SIMD on, the shared vector table) and its life: its GIC CPU interface on, the
//! ping SGI enabled, one pong to CPU 0 to say it is up, then WFI forever; its IRQ handler
//! ([`crate::vectors`]) answers each ping with a pong.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;

use crate::{arch, gic, psci, vectors};

/// The second CPU's stack.
const STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack(UnsafeCell<[u8; STACK_SIZE]>);
// SAFETY: only the second CPU uses this memory, as its stack (through SP, never through Rust
// references); CPU 0 only takes its address.
unsafe impl Sync for Stack {}
static STACK: Stack = Stack(UnsafeCell::new([0; STACK_SIZE]));

global_asm!(
    r#"
    .section .text, "ax"
    .balign 4
    .global __tg_secondary_entry
__tg_secondary_entry:
    msr     spsel, #1
    mov     x9, #(3 << 20)
    msr     cpacr_el1, x9
    adrp    x9, __tg_vectors
    add     x9, x9, :lo12:__tg_vectors
    msr     vbar_el1, x9
    isb
    mov     sp, x0
    bl      {main}
1:  wfi
    b       1b
"#,
    main = sym secondary_main,
);

extern "C" fn secondary_main() -> ! {
    gic::cpu_init();
    gic::enable(gic::IPI_PING);
    arch::irq_unmask();
    gic::sgi_to(0, gic::IPI_PONG);
    loop {
        arch::wfi();
    }
}

/// The entry point's address (PC-relative: the image runs where it was loaded, MMU off).
fn entry() -> u64 {
    let a: u64;
    // SAFETY: computes an address; no memory access.
    unsafe {
        asm!("adrp {a}, __tg_secondary_entry", "add {a}, {a}, :lo12:__tg_secondary_entry",
             a = out(reg) a, options(nomem, nostack, preserves_flags))
    };
    a
}

/// Waits in WFI until CPU 0 has taken `want` pongs in all (since the last `irq_reset`); false
/// if the watchdog (any virtual-timer interrupt) fired first. IRQs are masked around the check,
/// so one taken between the check and the WFI cannot be slept through (WFI wakes on a pending
/// interrupt even when it is masked).
pub fn wait_pong(want: u32) -> bool {
    arch::irq_mask();
    let mut ok = true;
    while vectors::pong_count() < want {
        if vectors::irq_log().timer > 0 {
            ok = false;
            break;
        }
        arch::wfi();
        arch::irq_unmask();
        arch::irq_mask();
    }
    arch::irq_unmask();
    ok
}

/// Starts CPU 1 (MPIDR 1) with PSCI CPU_ON; returns PSCI's x0 (0 = SUCCESS). It says it is up
/// with one pong.
pub fn start_cpu1() -> u64 {
    let top = STACK.0.get() as u64 + STACK_SIZE as u64;
    psci::hvc(psci::CPU_ON_64, 1, entry(), top)
}
