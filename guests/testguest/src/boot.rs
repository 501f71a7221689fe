//! The arm64 `Image` header and the entry code, then [`kmain`] and the panic handler.
//!
//! Header (Linux `Documentation/arch/arm64/booting.rst`), the first 64 bytes of the Image:
//! `code0` = a branch to the entry, `code1` = 0, `text_offset` = 0x80000, `image_size` (from
//! the linker script: everything up to the page-aligned end of `.bss`), `flags` = 0b0010
//! (little-endian, 4 KiB pages, placed at RAM base + text_offset), `res2..res4` = 0, magic
//! "ARM\x64", `res5` = 0.
//!
//! Entry state per the boot protocol: x0 = DTB address, x1..x3 = 0, EL1h with DAIF masked, MMU
//! and caches off. The entry code keeps x0..x3, DAIF and SCTLR_EL1 for the `boot-state` case,
//! enables FP/SIMD (compiled Rust may use it), installs VBAR_EL1, zeroes `.bss` (a real loader
//! does not) and switches to the stack in `.bss`.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::psci;

/// The stack, in `.bss` (inside `image_size`).
const STACK_SIZE: usize = 64 * 1024;
/// The arm64 Image load offset from a 2 MiB-aligned RAM base.
const TEXT_OFFSET: u64 = 0x8_0000;
/// Image flags: little-endian (bit 0 = 0), 4 KiB pages (bits 2:1 = 0b01), placed near the base
/// of RAM (bit 3 = 0).
const IMAGE_FLAGS: u64 = 0b0010;
/// "ARM\x64", little-endian.
const IMAGE_MAGIC: u32 = 0x644d_5241;

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       __tg_entry              // code0
    .word   0                       // code1
    .quad   {text_offset}           // text_offset
    .quad   __image_size            // image_size (linker script)
    .quad   {flags}                 // flags
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .word   {magic}                 // magic "ARM\x64"
    .word   0                       // res5

__tg_entry:
    mov     x19, x0
    mov     x20, x1
    mov     x21, x2
    mov     x22, x3
    mrs     x23, daif
    mrs     x24, sctlr_el1
    msr     spsel, #1
    // FP/SIMD on at EL1 and EL0 (CPACR_EL1.FPEN = 0b11).
    mov     x9, #(3 << 20)
    msr     cpacr_el1, x9
    adrp    x9, __tg_vectors
    add     x9, x9, :lo12:__tg_vectors
    msr     vbar_el1, x9
    isb
    // Zero .bss (16-byte aligned at both ends by the linker script).
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    stp     xzr, xzr, [x9], #16
    b       1b
2:  adrp    x9, __tg_stack_top
    add     x9, x9, :lo12:__tg_stack_top
    mov     sp, x9
    mov     x0, x19
    mov     x1, x20
    mov     x2, x21
    mov     x3, x22
    mov     x4, x23
    mov     x5, x24
    bl      {kmain}
3:  wfi
    b       3b

    .section .bss.tg_stack, "aw", %nobits
    .balign 16
__tg_stack_bottom:
    .space  {stack_size}
__tg_stack_top:
"#,
    text_offset = const TEXT_OFFSET,
    flags = const IMAGE_FLAGS,
    magic = const IMAGE_MAGIC,
    stack_size = const STACK_SIZE,
    kmain = sym kmain,
);

/// Registers and state at entry, for the `boot-state` case.
#[derive(Clone, Copy)]
pub struct EntryState {
    /// x0..x3.
    pub x: [u64; 4],
    /// DAIF.
    pub daif: u64,
    /// SCTLR_EL1.
    pub sctlr: u64,
}

static ENTRY: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

/// The state [`kmain`] was entered with.
pub fn entry_state() -> EntryState {
    let r = |i: usize| ENTRY[i].load(Relaxed);
    EntryState {
        x: [r(0), r(1), r(2), r(3)],
        daif: r(4),
        sctlr: r(5),
    }
}

/// The addresses the image occupies, `.bss` included.
pub fn image_range() -> core::ops::Range<u64> {
    unsafe extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }
    core::ptr::addr_of!(__image_start) as u64..core::ptr::addr_of!(__image_end) as u64
}

/// The Rust entry: x0..x3 as the loader set them, then DAIF and SCTLR_EL1 at entry.
extern "C" fn kmain(x0: u64, x1: u64, x2: u64, x3: u64, daif: u64, sctlr: u64) -> ! {
    for (slot, v) in ENTRY.iter().zip([x0, x1, x2, x3, daif, sctlr]) {
        slot.store(v, Relaxed);
    }
    println!();
    println!(
        "testguest: start at {:#x}, dtb at {x0:#x}, CNTFRQ {} Hz",
        kmain as *const () as usize,
        crate::arch::cntfrq()
    );
    #[cfg(feature = "serial-crash")]
    println!("testguest: crashing the serial driver: @@crash-serial-driver@@");
    #[cfg(not(feature = "bench"))]
    crate::cases::run_all();
    #[cfg(feature = "hvfault-probe")]
    {
        println!("testguest: probing the VMM's broken handler (the VMM must stop this VM)");
        let v = crate::mmio::TESTDEV.ldr_x(0x1f8);
        println!("FAIL hvfault-probe: the VMM resumed the guest (read {v:#x})");
    }
    #[cfg(feature = "bench")]
    crate::bench::run_all();
    psci::system_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("FAIL panic: {info}");
    println!("testguest: panic, powering off");
    psci::system_off()
}
