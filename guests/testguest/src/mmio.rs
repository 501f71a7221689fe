//! Device-memory accessors. Every access is one inline-asm instruction of exactly the form its
//! name says (LDRB, LDRSH, STR W, ...), so the VMM sees the instruction the case means to test and
//! the compiler can neither merge, split nor elide it. The platform addresses live here too.
//!
//! Loads return the **whole X register** after the instruction, and each load starts from a
//! known non-zero register value, so a case can check zero- and sign-extension; stores take a
//! full 64-bit register value and the instruction stores only its low bytes.

use core::arch::asm;

/// PL011 UART.
pub const UART_BASE: usize = 0x0900_0000;
/// GICv2 distributor.
pub const GICD_BASE: usize = 0x0800_0000;
/// GICv2 CPU interface (the hardware virtual CPU interface under seL4).
pub const GICC_BASE: usize = 0x0801_0000;
/// The VMM's test device.
pub const TESTDEV_BASE: usize = 0x0a00_0000;
/// The write-protected RAM page.
pub const WRITE_PAGE_BASE: usize = 0x5000_0000;
/// An address nothing backs.
pub const UNBACKED: usize = 0x2000_0000;

/// Test-device register offsets.
pub mod testdev {
    /// The 256-byte scratch store.
    #[cfg_attr(not(feature = "bench"), allow(dead_code))]
    pub const SCRATCH: usize = 0x000;
    /// Read-only ID (32-bit).
    pub const ID: usize = 0x100;
    /// The value of [`ID`].
    pub const ID_VALUE: u64 = 0x7e57_de71;
    /// Read-only 64-bit count of writes to the WRITE page.
    pub const WRITE_COUNT: usize = 0x108;
}

/// The register value every load starts from, so an instruction that leaves bits unwritten
/// shows up.
pub const LOAD_POISON: u64 = 0x5a5a_5a5a_5a5a_5a5a;

/// A window of device memory (or of memory Rust does not own) at a fixed physical address.
#[derive(Clone, Copy)]
pub struct Mmio {
    base: usize,
    len: usize,
}

macro_rules! load {
    ($(#[$m:meta])* $name:ident, $insn:literal, $width:literal) => {
        $(#[$m])*
        pub fn $name(self, off: usize) -> u64 {
            let a = self.at(off, $width);
            let mut r = LOAD_POISON;
            // SAFETY: `a` lies inside this window, which `Mmio::new`'s caller vouched holds no
            // Rust-owned memory, and is naturally aligned (checked by `at`).
            unsafe { asm!($insn, r = inout(reg) r, a = in(reg) a, options(nostack, preserves_flags)) };
            r
        }
    };
}

macro_rules! store {
    ($(#[$m:meta])* $name:ident, $insn:literal, $width:literal) => {
        $(#[$m])*
        pub fn $name(self, off: usize, v: u64) {
            let a = self.at(off, $width);
            // SAFETY: as for the loads: a naturally aligned address inside a window holding no
            // Rust-owned memory.
            unsafe { asm!($insn, v = in(reg) v, a = in(reg) a, options(nostack, preserves_flags)) };
        }
    };
}

impl Mmio {
    /// A window of `len` bytes at physical address `base`.
    ///
    /// # Safety
    /// `base..base + len` must hold no memory the Rust program owns (no image section, no
    /// stack): accesses through the window may have any device side effect but must not alias
    /// Rust objects.
    pub const unsafe fn new(base: usize, len: usize) -> Self {
        Mmio { base, len }
    }

    /// The absolute address of `off` for an access of `width` bytes, naturally aligned.
    pub fn at(self, off: usize, width: usize) -> usize {
        self.span(off, width, width)
    }

    /// The absolute address of `off` for `len` bytes aligned to `align` (e.g. a pair of X
    /// registers: 16 bytes aligned to 8); panics (a `FAIL` line) on a misaligned or
    /// out-of-window access, which would be a bug in a case.
    pub fn span(self, off: usize, len: usize, align: usize) -> usize {
        assert!(
            off.is_multiple_of(align) && off.checked_add(len).is_some_and(|end| end <= self.len),
            "bad MMIO access: offset {off:#x}, {len} bytes aligned to {align}, in a window of {:#x}",
            self.len
        );
        self.base + off
    }

    load!(/// LDRB W (zero-extends).
        ldrb, "ldrb {r:w}, [{a}]", 1);
    load!(/// LDRH W (zero-extends).
        ldrh, "ldrh {r:w}, [{a}]", 2);
    load!(/// LDR W (zero-extends into X).
        ldr_w, "ldr {r:w}, [{a}]", 4);
    load!(/// LDR X.
        ldr_x, "ldr {r}, [{a}]", 8);
    load!(/// LDRSB to W (sign-extends to 32 bits, zeroes 63:32).
        ldrsb_w, "ldrsb {r:w}, [{a}]", 1);
    load!(/// LDRSB to X.
        ldrsb_x, "ldrsb {r}, [{a}]", 1);
    load!(/// LDRSH to W (sign-extends to 32 bits, zeroes 63:32).
        ldrsh_w, "ldrsh {r:w}, [{a}]", 2);
    load!(/// LDRSH to X.
        ldrsh_x, "ldrsh {r}, [{a}]", 2);
    load!(/// LDRSW.
        ldrsw, "ldrsw {r}, [{a}]", 4);

    store!(/// STRB of the low byte of `v`.
        strb, "strb {v:w}, [{a}]", 1);
    store!(/// STRH of the low half-word of `v`.
        strh, "strh {v:w}, [{a}]", 2);
    store!(/// STR W of the low word of `v`.
        str_w, "str {v:w}, [{a}]", 4);
    store!(/// STR X.
        str_x, "str {v}, [{a}]", 8);
}

/// The PL011 UART registers.
// SAFETY: the PL011 at 0x0900_0000 is a device page outside the image.
pub const UART: Mmio = unsafe { Mmio::new(UART_BASE, 0x1000) };
/// The GICv2 distributor.
// SAFETY: device page outside the image.
pub const GICD: Mmio = unsafe { Mmio::new(GICD_BASE, 0x1000) };
/// The GICv2 CPU interface.
// SAFETY: device page outside the image.
pub const GICC: Mmio = unsafe { Mmio::new(GICC_BASE, 0x2000) };
/// The test device.
// SAFETY: an emulated device page outside the image.
pub const TESTDEV: Mmio = unsafe { Mmio::new(TESTDEV_BASE, 0x1000) };
/// The write-protected RAM page.
// SAFETY: a RAM page outside the image (the image is linked at 0x4008_0000 and is far smaller
// than the 256 MiB up to this page); nothing in Rust refers to it.
pub const WRITE_PAGE: Mmio = unsafe { Mmio::new(WRITE_PAGE_BASE, 0x1000) };
