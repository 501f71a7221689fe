//! Console runs (feature `console-runs`), driven as the VMM meets them: an exit on the PL011's
//! FR register from inside a console loop, on the simulated kernel, with the guest's MMU on
//! (page tables built in its RAM: the code read-only and executable, the data and stack
//! writable and not executable, the UART's gigabyte execute-never). The run must print the rest
//! of the string through the console model, return through the loop's frames, stop at the first
//! instruction it does not take (a WFI) and leave the vCPU exactly as the loop would have.
#![cfg(feature = "console-runs")]

mod common;

use common::console_loop::{self, CODE, DATA, PROGRAM, STACK};
use common::*;
use microkit_rt::abi::vcpu_reg;

/// The guest inside putc at its FR read, printing "hi\nok" (`common::console_loop`), with
/// its MMU on or off.
fn inside_putc(mmu_on: bool) -> Harness {
    let h = Harness::running();
    console_loop::inside_putc(&h, &PROGRAM, b"hi\nok", [0; 4]);
    let sctlr = if mmu_on { 0b101 } else { SCTLR_MMU_OFF };
    h.set_reg(vcpu_reg::SCTLR, sctlr);
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
