//! Benchmark mode (cargo feature `bench`): the round-trip cost of each kind of exit, measured
//! with CNTVCT_EL0 over [`ITERATIONS`] operations each, printed as
//! `bench <name> iterations=<n> ticks=<total> ticks-per-op=<x.yy>`, then `testguest: bench done`.
//!
//! Each loop body is exactly one exiting access (or, for `sgi-self`, one SGI sent and waited
//! for); the loop overhead is a few instructions and is included in the figure.

use crate::mmio::{TESTDEV, WRITE_PAGE, testdev};
use crate::report::{PerOp, esr_ec};
use crate::{arch, gic, psci, vectors};

/// Operations per measurement.
const ITERATIONS: u64 = 10_000;
/// Polls of the handler's SGI count before one delivery counts as lost.
const MAX_SGI_POLLS: u32 = 10_000_000;

fn report(name: &str, n: u64, ticks: u64) {
    match vectors::take_unexpected() {
        None => println!(
            "bench {name} iterations={n} ticks={ticks} ticks-per-op={}",
            PerOp { total: ticks, n }
        ),
        Some(t) => println!(
            "bench {name} failed: unexpected exception EC={:#04x} ESR={:#x} FAR={:#x} ELR={:#x} (x{})",
            esr_ec(t.esr),
            t.esr,
            t.far,
            t.elr,
            t.count
        ),
    }
}

fn measure(name: &str, mut op: impl FnMut(u64)) {
    let _ = vectors::take_unexpected();
    let start = arch::now();
    for i in 0..ITERATIONS {
        op(i);
    }
    let ticks = arch::now() - start;
    report(name, ITERATIONS, ticks);
}

/// One SGI to self per iteration: the write to GICD_SGIR, the delivery, the handler's IAR read
/// and EOI, and the return.
fn sgi_self() {
    gic::init();
    gic::enable(gic::TEST_SGI);
    vectors::irq_reset();
    let _ = vectors::take_unexpected();
    arch::irq_unmask();
    let start = arch::now();
    let mut lost = None;
    for i in 0..ITERATIONS {
        let want = (i + 1) as u32;
        gic::sgi_self(gic::TEST_SGI);
        let mut polls = 0;
        while vectors::sgi_count() < want {
            polls += 1;
            if polls == MAX_SGI_POLLS {
                lost = Some(i);
                break;
            }
        }
        if lost.is_some() {
            break;
        }
    }
    let ticks = arch::now() - start;
    arch::irq_mask();
    gic::disable(gic::TEST_SGI);
    match lost {
        Some(i) => {
            println!("bench sgi-self failed: SGI {i} not delivered after {MAX_SGI_POLLS} polls")
        }
        None => report("sgi-self", ITERATIONS, ticks),
    }
}

/// Runs every benchmark.
pub fn run_all() {
    println!("testguest: bench mode, CNTFRQ_EL0 = {} Hz", arch::cntfrq());
    measure("mmio-read", |_| {
        TESTDEV.ldr_w(testdev::ID);
    });
    measure("mmio-write", |i| TESTDEV.str_w(testdev::SCRATCH, i));
    measure("hvc", |_| {
        psci::hvc(psci::PSCI_VERSION, 0, 0, 0);
    });
    measure("write-page", |i| WRITE_PAGE.str_x(0x800, i));
    sgi_self();
    println!("testguest: bench done");
}
