//! The case runner: runs each case, turns its result (or an unexpected exception it caused) into
//! exactly one `PASS <name>` / `FAIL <name>: <detail>` line, and prints the closing
//! `testguest: N passed, M failed`. Also the `ensure!` / `ensure_eq!` / `fail!` macros the cases
//! use.

use crate::arch;
use crate::report::{Msg, esr_ec};
use crate::vectors::{self, Trap};

/// What a case returns: `Err` carries the `FAIL` detail.
pub type CaseResult = Result<(), Msg>;

/// A named case.
pub struct Case {
    /// Short, stable name: the word after `PASS` / `FAIL`.
    pub name: &'static str,
    /// The case.
    pub run: fn() -> CaseResult,
}

/// Returns `Err` with a formatted detail.
macro_rules! fail {
    ($($arg:tt)+) => {
        return Err($crate::report::Msg::from_args(format_args!($($arg)+)))
    };
}

/// Returns `Err` with a formatted detail unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            fail!($($arg)+);
        }
    };
}

/// Returns `Err("<what>: got 0x.., want 0x..")` unless the two `u64`s are equal.
macro_rules! ensure_eq {
    ($what:expr, $got:expr, $want:expr) => {{
        let (got, want): (u64, u64) = ($got, $want);
        ensure!(got == want, "{}: got {:#x}, want {:#x}", $what, got, want);
    }};
}

/// Formats an unexpected exception as a `FAIL` detail.
fn unexpected(t: &Trap) -> Msg {
    Msg::from_args(format_args!(
        "unexpected exception EC={:#04x} ESR={:#x} FAR={:#x} ELR={:#x} (x{})",
        esr_ec(t.esr),
        t.esr,
        t.far,
        t.elr,
        t.count
    ))
}

/// Runs the `cases` that `selected` picks, in order, prints a line each and the summary (and how
/// many were skipped, if any); returns (passed, failed).
pub fn run(cases: &[Case], selected: impl Fn(&Case) -> bool) -> (u32, u32) {
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for case in cases {
        if !selected(case) {
            skipped += 1;
            continue;
        }
        // Every case starts with IRQs masked and a clean exception record.
        arch::irq_mask();
        let _ = vectors::take_unexpected();
        let result = (case.run)();
        arch::irq_mask();
        let result = match vectors::take_unexpected() {
            Some(t) => Err(unexpected(&t)),
            None => result,
        };
        match result {
            Ok(()) => {
                passed += 1;
                println!("PASS {}", case.name);
            }
            Err(detail) => {
                failed += 1;
                println!("FAIL {}: {}", case.name, detail);
            }
        }
    }
    println!("testguest: {passed} passed, {failed} failed");
    if skipped > 0 {
        println!("testguest: {skipped} cases skipped (they need the VMM)");
    }
    (passed, failed)
}
