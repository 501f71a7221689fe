//! Console runs (feature `console-runs`), driven as the VMM meets them: an exit on the PL011's
//! FR register from inside a console loop, on the simulated kernel, with the guest's MMU on
//! (page tables built in its RAM: the code read-only and executable, the data and stack
//! writable and not executable, the UART's gigabyte execute-never). The run must print the rest
//! of the string through the console model, return through the loop's frames, stop at the first
//! instruction it does not take (a WFI) and leave the vCPU exactly as the loop would have.
#![cfg(feature = "console-runs")]

mod common;

use common::*;
use microkit_rt::abi::vcpu_reg;

const CODE: u64 = RAM_GPA + 0x1_0000;
const TABLES: u64 = RAM_GPA + 0x10_0000;
const DATA: u64 = RAM_GPA + 0x20_0000;
const STACK: u64 = RAM_GPA + 0x28_0000;

/// put_string (x0 = string, x1 = length, x2 = UART), putc (w4 to the UART after polling FR),
/// and at +0x54 the WFI its caller waits in (the caller's `bl` at +0x50).
const PROGRAM: [u32; 22] = [
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

fn put_u64(h: &Harness, gpa: u64, v: u64) {
    h.ram.write_u64((gpa - RAM_GPA) as usize, v).unwrap();
}

/// The guest inside putc at its FR read, printing "hi\nok": 'h' taken, the call from the
/// loop's second `bl`, put_string's frame on the stack.
fn inside_putc(mmu_on: bool) -> Harness {
    let h = Harness::running();
    for (i, w) in PROGRAM.iter().enumerate() {
        h.ram
            .write_u32((CODE - RAM_GPA) as usize + 4 * i, *w)
            .unwrap();
    }
    h.ram.write((DATA - RAM_GPA) as usize, b"hi\nok").unwrap();
    // TTBR0: level 1 (T0SZ = 25), then level 2 for the RAM gigabyte.
    put_u64(&h, TABLES, AF | PXN | UXN | 0b01);
    put_u64(&h, TABLES + 8, (TABLES + 0x1000) | 0b11);
    put_u64(&h, TABLES + 0x1000, RAM_GPA | AF | RO | 0b01);
    put_u64(&h, TABLES + 0x1008, (RAM_GPA + 0x20_0000) | AF | PXN | 0b01);
    let sctlr = if mmu_on { 0b101 } else { SCTLR_MMU_OFF };
    h.set_reg(vcpu_reg::SCTLR, sctlr);
    h.set_reg(vcpu_reg::TCR, 25 | (0b101 << 32) | (1 << 23));
    h.set_reg(vcpu_reg::TTBR0, TABLES);
    // put_string's frame: the caller's x29 and return address (its WFI).
    put_u64(&h, STACK - 16, 0x29);
    put_u64(&h, STACK - 8, CODE + 0x54);
    h.set_reg(vcpu_reg::SP_EL1, STACK - 16);
    h.set_x(0, DATA + 1);
    h.set_x(1, 5);
    h.set_x(2, PL011);
    h.set_x(3, u64::from(b'h'));
    h.set_x(4, u64::from(b'h'));
    h.set_x(29, STACK - 16);
    h.set_x(30, CODE + 0x2c);
    h
}

#[test]
fn a_run_prints_the_rest_of_the_string_and_stops_at_the_callers_wfi() {
    let mut h = inside_putc(true);
    let log = h.load(CODE + 0x40, PL011 + 0x18, 2, 5);
    assert!(
        matches!(log.last(), Some(microkit_sim::Invocation::Reply { .. })),
        "{log:?}"
    );
    assert!(h.sim.console().contains("hi\r\n"), "{}", h.sim.console());
    assert_eq!(h.pc(), CODE + 0x54, "stopped at the WFI");
    assert_eq!((h.x(0), h.x(1)), (DATA + 5, 0));
    assert_eq!((h.x(29), h.x(30)), (0x29, CODE + 0x54));
    assert_eq!(h.reg(vcpu_reg::SP_EL1), STACK);
    // FR read as the model gives it: TX FIFO empty, RX FIFO empty.
    assert_eq!(h.x(5), 0x90);
    let r = *h.vmm.console_run_stats();
    assert_eq!((r.runs, r.unsupported, r.refused), (1, 1, 0), "{r:?}");
    assert!(r.instructions > 40, "{r:?}");
    assert!(r.stopped_at.contains(&(0xd503_207f, 1)), "the WFI: {r:?}");
    // The exit counts as one console read, whatever the run did.
    assert_eq!(
        h.vmm
            .stats()
            .class(vmm_core::stats::TrapClass::MmioRead)
            .exits,
        1
    );
    // The partial line "ok" goes out at the next exit that is not an MMIO access.
    assert!(!h.sim.console().contains("ok"));
}

#[test]
fn with_the_mmu_off_a_run_writes_the_console_but_stores_nothing_to_ram() {
    // Every page is executable with the MMU off. The console's registers are no code: the DR
    // write goes through the console model. RAM is, so the first store to it ends the run
    // before it: putc returns (x30 made to point at put_string's start) to the frame push.
    let mut h = inside_putc(false);
    // "ok" from two DR writes of the guest's own (exits at the caller's `bl`: each run stops
    // at once, at the WFI), then putc's newline from the run ends the line.
    for b in *b"ok" {
        h.store(CODE + 0x50, PL011, 0, 6, u64::from(b));
    }
    let before = *h.vmm.console_run_stats();
    assert_eq!((before.runs, before.instructions), (2, 0), "{before:?}");
    h.set_x(4, u64::from(b'\n'));
    h.set_x(30, CODE);
    h.load(CODE + 0x40, PL011 + 0x18, 2, 5);
    assert!(h.sim.console().ends_with("ok\n"), "{:?}", h.sim.console());
    assert_eq!(h.pc(), CODE + 0x04, "stopped at the stp");
    assert_eq!(h.reg(vcpu_reg::SP_EL1), STACK - 16, "nothing pushed");
    assert_eq!(h.ram_u64(STACK - 32), 0, "nothing stored");
    let r = *h.vmm.console_run_stats();
    assert_eq!(
        (r.runs, r.refused, r.instructions),
        (3, before.refused + 1, 4),
        "{r:?}"
    );
}

#[test]
fn no_run_outside_el1h() {
    let mut h = inside_putc(true);
    // EL1t: the stack is SP_EL0; the run takes only EL1h.
    h.sim.with_vcpu(0, |v| {
        v.context[microkit_rt::abi::user_context::SPSR] = 0x3c4
    });
    h.load(CODE + 0x40, PL011 + 0x18, 2, 5);
    assert_eq!(h.pc(), CODE + 0x44);
    let r = *h.vmm.console_run_stats();
    assert_eq!((r.runs, r.skipped), (0, 1), "{r:?}");
}
