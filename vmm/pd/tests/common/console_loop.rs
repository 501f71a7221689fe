//! The console loop the console-run tests (`tests/console_run.rs`) and the `console_run` fuzz
//! target start from: put_string and putc in guest RAM, under the guest's own page tables (the
//! code read-only and executable, the string and the stack writable and execute-never, the
//! UART's gigabyte execute-never), the vCPU inside putc at its FR read.

use super::{Harness, PL011, RAM_GPA};
use microkit_rt::abi::vcpu_reg;

/// The code (in the first 2 MiB block of RAM).
pub const CODE: u64 = RAM_GPA + 0x1_0000;
/// The level-1 table and, a page on, the level-2 table of the RAM gigabyte.
pub const TABLES: u64 = RAM_GPA + 0x10_0000;
/// The string, and the stack's top (in the second 2 MiB block).
pub const DATA: u64 = RAM_GPA + 0x20_0000;
pub const STACK: u64 = RAM_GPA + 0x28_0000;

/// put_string (x0 = string, x1 = length, x2 = UART), putc (w4 to the UART after polling FR),
/// and at +0x54 the WFI its caller waits in (the caller's `bl` at +0x50).
pub const PROGRAM: [u32; 22] = [
    0xd503_233f, // +0x00 paciasp
    0xa9bf_7bfd, // +0x04 stp x29, x30, [sp, #-16]!
    0x9100_03fd, // +0x08 mov x29, sp
    0xb400_0141, // +0x0c loop: cbz x1, done
    0x3840_1403, // +0x10 ldrb w3, [x0], #1
    0x7100_287f, // +0x14 cmp w3, #10
    0x5400_0061, // +0x18 b.ne 1f
    0x5280_01a4, // +0x1c movz w4, #13
    0x9400_0008, // +0x20 bl putc
    0x2a03_03e4, // +0x24 1: mov w4, w3
    0x9400_0006, // +0x28 bl putc
    0xd100_0421, // +0x2c sub x1, x1, #1
    0x17ff_fff7, // +0x30 b loop
    0xa8c1_7bfd, // +0x34 done: ldp x29, x30, [sp], #16
    0xd503_23bf, // +0x38 autiasp
    0xd65f_03c0, // +0x3c ret
    0xb940_1845, // +0x40 putc: ldr w5, [x2, #0x18]
    0x372f_ffe5, // +0x44 tbnz w5, #5, putc
    0x3900_0044, // +0x48 strb w4, [x2]
    0xd65f_03c0, // +0x4c ret
    0x97ff_ffec, // +0x50 bl put_string
    0xd503_207f, // +0x54 wfi
];

const AF: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const RO: u64 = 1 << 7;

/// TCR_EL1: T0SZ = 25 (the walk starts at level 1), IPS = 0b101, TTBR1 walks off (EPD1).
pub const TCR: u64 = 25 | (0b101 << 32) | (1 << 23);

/// The four descriptors at their addresses: the first gigabyte a device block (the UART), the
/// second a level-2 table of 2 MiB blocks (code and tables read-only; string and stack
/// execute-never).
pub const DESCRIPTORS: [(u64, u64); 4] = [
    (TABLES, AF | PXN | UXN | 0b01),
    (TABLES + 8, (TABLES + 0x1000) | 0b11),
    (TABLES + 0x1000, RAM_GPA | AF | RO | 0b01),
    (TABLES + 0x1008, (RAM_GPA + 0x20_0000) | AF | PXN | 0b01),
];

/// The u64 at guest-physical `gpa` in RAM becomes `v`.
pub fn put_u64(h: &Harness, gpa: u64, v: u64) {
    h.ram.write_u64((gpa - RAM_GPA) as usize, v).unwrap();
}

/// The guest inside putc at its FR read, printing `string` with `code` at [`CODE`]: 'h' taken
/// (in w3 and w4), the call from the loop's second `bl`, put_string's frame on the stack, the
/// tables' descriptors XORed with `bends` (zeros: as [`DESCRIPTORS`] says). SCTLR_EL1 is the
/// caller's.
pub fn inside_putc(h: &Harness, code: &[u32], string: &[u8], bends: [u64; 4]) {
    for (i, w) in code.iter().enumerate() {
        h.ram
            .write_u32((CODE - RAM_GPA) as usize + 4 * i, *w)
            .unwrap();
    }
    h.ram.write((DATA - RAM_GPA) as usize, string).unwrap();
    for ((gpa, d), bend) in DESCRIPTORS.iter().zip(bends) {
        put_u64(h, *gpa, d ^ bend);
    }
    h.set_reg(vcpu_reg::TCR, TCR);
    h.set_reg(vcpu_reg::TTBR0, TABLES);
    // put_string's frame: the caller's x29 and return address (its WFI).
    put_u64(h, STACK - 16, 0x29);
    put_u64(h, STACK - 8, CODE + 0x54);
    h.set_reg(vcpu_reg::SP_EL1, STACK - 16);
    h.set_x(0, DATA + 1);
    h.set_x(1, string.len() as u64);
    h.set_x(2, PL011);
    h.set_x(3, u64::from(b'h'));
    h.set_x(4, u64::from(b'h'));
    h.set_x(29, STACK - 16);
    h.set_x(30, CODE + 0x2c);
}
