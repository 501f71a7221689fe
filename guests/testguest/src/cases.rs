//! The test cases, in the order they run. Each exercises one path of the VMM (MMIO emulation by
//! instruction form, the WRITE-page handler, PSCI over both conduits, virtual interrupts,
//! injected and reflected exceptions, the virtio-blk and virtio-console devices — those in
//! `blk_cases`) and returns the first mismatch as its `FAIL` detail.
//!
//! Natively on QEMU virt (no VMM, see `platform`) only the [`NATIVE`] cases run.
//!
//! Test-device scratch layout (offsets; every case uses its own bytes): 0x00 width-1, 0x08
//! width-2, 0x10 width-4, 0x18..0x28 width-8, 0x30..0x40 sign-extend, 0x40..0x60 pairs,
//! 0x80..0xc0 writeback, 0xc0..0xe8 xzr, 0xf0..0x100 the SIMD load.

#![allow(
    clippy::result_large_err,
    reason = "no heap to box into: each case returns its FAIL detail by value, once"
)]

use core::arch::asm;

use crate::harness::{Case, CaseResult};
use crate::mmio::{LOAD_POISON, Mmio, TESTDEV, UNBACKED, WRITE_PAGE, testdev};
use crate::platform::{self, Platform};
use crate::report::{DFSC_SEA, ec, esr_dfsc, esr_ec, esr_isv, esr_wnr};
use crate::vectors::{self, catch};
use crate::{arch, blk_cases, boot, gic, psci, smp};

/// Every case, in order.
const CASES: &[Case] = &[
    Case {
        name: "boot-state",
        run: boot_state,
    },
    Case {
        name: "mmio-width-1",
        run: width_1,
    },
    Case {
        name: "mmio-width-2",
        run: width_2,
    },
    Case {
        name: "mmio-width-4",
        run: width_4,
    },
    Case {
        name: "mmio-width-8",
        run: width_8,
    },
    Case {
        name: "mmio-sign-extend",
        run: sign_extend,
    },
    Case {
        name: "mmio-id",
        run: id,
    },
    Case {
        name: "mmio-isv0-pair",
        run: isv0_pair,
    },
    Case {
        name: "mmio-isv0-writeback",
        run: isv0_writeback,
    },
    Case {
        name: "mmio-xzr",
        run: xzr,
    },
    Case {
        name: "write-page",
        run: write_page,
    },
    Case {
        name: "psci-hvc-version",
        run: hvc_version,
    },
    Case {
        name: "psci-hvc-features",
        run: hvc_features,
    },
    Case {
        name: "hvc-x7-syscall-number",
        run: hvc_x7_syscall_number,
    },
    Case {
        name: "vm-holds-no-capabilities",
        run: vm_holds_no_capabilities,
    },
    Case {
        name: "hvc-unknown-not-supported",
        run: hvc_unknown,
    },
    Case {
        name: "psci-smc-version",
        run: smc_version,
    },
    Case {
        name: "psci-smc-features",
        run: smc_features,
    },
    Case {
        name: "smc-unknown-not-supported",
        run: smc_unknown,
    },
    Case {
        name: "timer-wfi",
        run: timer_wfi,
    },
    Case {
        name: "sgi-self",
        run: sgi_self,
    },
    Case {
        name: "smp-ipi",
        run: smp_ipi,
    },
    Case {
        name: "unbacked-abort",
        run: unbacked_abort,
    },
    Case {
        name: "undefined-path",
        run: undefined_path,
    },
    Case {
        name: "blk-probe",
        run: blk_cases::blk_probe,
    },
    Case {
        name: "blk-get-id",
        run: blk_cases::blk_get_id,
    },
    Case {
        name: "blk-write-patterns",
        run: blk_cases::blk_write_patterns,
    },
    Case {
        name: "blk-flush",
        run: blk_cases::blk_flush,
    },
    Case {
        name: "blk-read-back",
        run: blk_cases::blk_read_back,
    },
    Case {
        name: "blk-irq",
        run: blk_cases::blk_irq,
    },
    Case {
        name: "blk-hostile",
        run: blk_cases::blk_hostile,
    },
    Case {
        name: "vcon-tx",
        run: blk_cases::vcon_tx,
    },
    Case {
        name: "console-input",
        run: console_input,
    },
];

/// The cases that hold natively on QEMU virt without the VMM: PSCI over HVC (QEMU's own), the
/// real GIC and timer, and the block cases against QEMU's own virtio-blk-device (not the
/// VMM-specific values, not the hostile requests, no virtio-console).
const NATIVE: &[&str] = &[
    "boot-state",
    "psci-hvc-version",
    "psci-hvc-features",
    "hvc-x7-syscall-number",
    "hvc-unknown-not-supported",
    "timer-wfi",
    "sgi-self",
    "smp-ipi",
    "blk-probe",
    "blk-get-id",
    "blk-write-patterns",
    "blk-flush",
    "blk-read-back",
    "blk-irq",
];

/// Runs every case (natively: the [`NATIVE`] ones) and prints the summary.
pub fn run_all() {
    platform::announce();
    let native = platform::detect() == Platform::Native;
    crate::harness::run(CASES, |c| !native || NATIVE.contains(&c.name));
}

/// Bound on the iterations of any wait loop (each loop also has a CNTVCT deadline).
const MAX_WAIT_ITERATIONS: u32 = 10_000_000;
const RAM_BASE: u64 = 0x4000_0000;
const RAM_END: u64 = 0x5000_0000;
const FDT_MAGIC: u32 = 0xd00d_feed;

/// The loader's entry state: x0 = an 8-byte aligned DTB in RAM with the FDT magic, x1..x3 = 0,
/// EL1 with DAIF masked, MMU and data cache off; and our own VBAR_EL1 installed.
fn boot_state() -> CaseResult {
    let e = boot::entry_state();
    ensure_eq!("x1 at entry", e.x[1], 0);
    ensure_eq!("x2 at entry", e.x[2], 0);
    ensure_eq!("x3 at entry", e.x[3], 0);
    ensure_eq!("DAIF at entry", e.daif, 0x3c0);
    ensure_eq!("SCTLR_EL1.M at entry", e.sctlr & 1, 0);
    ensure_eq!("SCTLR_EL1.C at entry", (e.sctlr >> 2) & 1, 0);
    ensure_eq!("CurrentEL", (arch::current_el() >> 2) & 3, 1);
    ensure_eq!("VBAR_EL1", arch::vbar_el1(), vectors::table());
    let dtb = e.x[0];
    ensure!(
        dtb.is_multiple_of(8) && (RAM_BASE..RAM_END - 8).contains(&dtb),
        "x0 = {dtb:#x} is not an 8-byte aligned RAM address"
    );
    ensure!(
        !boot::image_range().contains(&dtb),
        "x0 = {dtb:#x} points into the guest image"
    );
    // SAFETY: checked just above: an aligned RAM address outside the image, which the boot
    // protocol says holds the DTB; only its magic is read.
    let fdt = unsafe { Mmio::new(dtb as usize, 8) };
    let mut magic = 0;
    if let Some(t) = catch(|| magic = fdt.ldr_w(0) as u32) {
        fail!("reading the DTB at {dtb:#x} faulted: ESR={:#x}", t.esr);
    }
    ensure_eq!(
        "DTB magic",
        u64::from(u32::from_be(magic)),
        u64::from(FDT_MAGIC)
    );
    Ok(())
}

type Store = fn(Mmio, usize, u64);
type Load = fn(Mmio, usize) -> u64;

/// Width `w` at `slot`: the neighbouring element is stored first, then `value` with junk in the
/// register bits above the width; both read back exactly (zero-extended into X), and for
/// `w > 1` the first byte shows the little-endian layout.
fn width_case(w: usize, slot: usize, value: u64, neighbour: u64) -> CaseResult {
    let (store, load): (Store, Load) = match w {
        1 => (Mmio::strb, Mmio::ldrb),
        2 => (Mmio::strh, Mmio::ldrh),
        4 => (Mmio::str_w, Mmio::ldr_w),
        _ => (Mmio::str_x, Mmio::ldr_x),
    };
    let junk = if w == 8 {
        0
    } else {
        0xdead_beef_cafe_f00d_u64 << (8 * w)
    };
    store(TESTDEV, slot + w, neighbour);
    store(TESTDEV, slot, value | junk);
    ensure_eq!("read back", load(TESTDEV, slot), value);
    ensure_eq!("neighbour read back", load(TESTDEV, slot + w), neighbour);
    if w > 1 {
        ensure_eq!("first byte (LDRB)", TESTDEV.ldrb(slot), value & 0xff);
    }
    Ok(())
}

fn width_1() -> CaseResult {
    width_case(1, 0x00, 0xa5, 0x3c)
}

fn width_2() -> CaseResult {
    width_case(2, 0x08, 0xbeef, 0x1234)
}

fn width_4() -> CaseResult {
    width_case(4, 0x10, 0x89ab_cdef, 0x0765_4321)
}

fn width_8() -> CaseResult {
    width_case(8, 0x18, 0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210)
}

fn sign_extend() -> CaseResult {
    let t = TESTDEV;
    t.strb(0x30, 0x80);
    t.strb(0x31, 0x7f);
    t.strh(0x32, 0x8000);
    t.strh(0x34, 0x7fff);
    t.str_w(0x38, 0x8000_0000);
    t.str_w(0x3c, 0x7fff_ffff);
    ensure_eq!("LDRSB W of 0x80", t.ldrsb_w(0x30), 0x0000_0000_ffff_ff80);
    ensure_eq!("LDRSB X of 0x80", t.ldrsb_x(0x30), 0xffff_ffff_ffff_ff80);
    ensure_eq!("LDRSB W of 0x7f", t.ldrsb_w(0x31), 0x7f);
    ensure_eq!("LDRSB X of 0x7f", t.ldrsb_x(0x31), 0x7f);
    ensure_eq!("LDRSH W of 0x8000", t.ldrsh_w(0x32), 0x0000_0000_ffff_8000);
    ensure_eq!("LDRSH X of 0x8000", t.ldrsh_x(0x32), 0xffff_ffff_ffff_8000);
    ensure_eq!("LDRSH X of 0x7fff", t.ldrsh_x(0x34), 0x7fff);
    ensure_eq!("LDRSW of 0x80000000", t.ldrsw(0x38), 0xffff_ffff_8000_0000);
    ensure_eq!("LDRSW of 0x7fffffff", t.ldrsw(0x3c), 0x7fff_ffff);
    Ok(())
}

fn id() -> CaseResult {
    ensure_eq!("ID (LDR W)", TESTDEV.ldr_w(testdev::ID), testdev::ID_VALUE);
    Ok(())
}

/// STP/LDP of X and W registers and LDPSW (no instruction syndrome: the VMM decodes them).
fn isv0_pair() -> CaseResult {
    let t = TESTDEV;
    let (a, b) = (0x1111_2222_3333_4444_u64, 0x5555_6666_7777_8888_u64);
    let p = t.span(0x40, 16, 8);
    // SAFETY: `p` is an 8-byte aligned address with 16 bytes inside the test-device window.
    unsafe {
        asm!("stp {a}, {b}, [{p}]", a = in(reg) a, b = in(reg) b, p = in(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("STP X: first", t.ldr_x(0x40), a);
    ensure_eq!("STP X: second", t.ldr_x(0x48), b);
    t.str_x(0x40, !a);
    t.str_x(0x48, !b);
    let (mut c, mut d) = (LOAD_POISON, LOAD_POISON);
    // SAFETY: as above.
    unsafe {
        asm!("ldp {c}, {d}, [{p}]", c = inout(reg) c, d = inout(reg) d, p = in(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("LDP X: first", c, !a);
    ensure_eq!("LDP X: second", d, !b);

    let (wa, wb) = (0x9abc_def0_u64, 0x8000_0001_u64);
    let p = t.span(0x50, 8, 4);
    // SAFETY: a 4-byte aligned address with 8 bytes inside the test-device window.
    unsafe {
        asm!("stp {a:w}, {b:w}, [{p}]", a = in(reg) wa | 0x1111_1111 << 32,
             b = in(reg) wb | 0x2222_2222 << 32, p = in(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("STP W: first", t.ldr_w(0x50), wa);
    ensure_eq!("STP W: second", t.ldr_w(0x54), wb);
    let (mut c, mut d) = (LOAD_POISON, LOAD_POISON);
    // SAFETY: as above.
    unsafe {
        asm!("ldp {c:w}, {d:w}, [{p}]", c = inout(reg) c, d = inout(reg) d, p = in(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("LDP W: first (zero-extended)", c, wa);
    ensure_eq!("LDP W: second (zero-extended)", d, wb);
    let (mut c, mut d) = (LOAD_POISON, LOAD_POISON);
    // SAFETY: as above.
    unsafe {
        asm!("ldpsw {c}, {d}, [{p}]", c = inout(reg) c, d = inout(reg) d, p = in(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("LDPSW: first", c, 0xffff_ffff_9abc_def0);
    ensure_eq!("LDPSW: second", d, 0xffff_ffff_8000_0001);
    t.str_w(0x58, 0x7fff_fff0);
    t.str_w(0x5c, 0x1);
    let p = t.span(0x58, 8, 4);
    let (mut c, mut d) = (LOAD_POISON, LOAD_POISON);
    // SAFETY: as above.
    unsafe {
        asm!("ldpsw {c}, {d}, [{p}]", c = inout(reg) c, d = inout(reg) d, p = in(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("LDPSW positive: first", c, 0x7fff_fff0);
    ensure_eq!("LDPSW positive: second", d, 0x1);
    Ok(())
}

/// Pre- and post-indexed loads and stores, single and pair: the data and the written-back base.
fn isv0_writeback() -> CaseResult {
    let t = TESTDEV;
    let b = t.span(0x80, 0x40, 8) as u64;
    let (v1, v4, v5, v8) = (
        0x0101_0202_0303_0404_u64,
        0x4444_0000_4444_0000_u64,
        0x5555_1111_5555_1111_u64,
        0x8888_7777_6666_5555_u64,
    );
    // Each untouched u64 holds a pattern naming its offset.
    let initial = |off: usize| 0xb0b0_0000_0000_0000 | off as u64;
    for off in (0x80..0xc0).step_by(8) {
        t.str_x(off, initial(off));
    }

    let mut p = b;
    // SAFETY: every access of this case stays inside scratch 0x80..0xc0 (checked by `span` above)
    // and is 8-byte aligned; the base register is an in/out operand.
    unsafe {
        asm!("str {v}, [{p}, #8]!", v = in(reg) v1, p = inout(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("STR pre-index: base", p, b + 8);
    ensure_eq!("STR pre-index: data", t.ldr_x(0x88), v1);

    let mut x = LOAD_POISON;
    // SAFETY: as above.
    unsafe {
        asm!("ldr {x}, [{p}], #16", x = inout(reg) x, p = inout(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("LDR post-index: data", x, v1);
    ensure_eq!("LDR post-index: base", p, b + 24);

    // SAFETY: as above.
    unsafe {
        asm!("stp {a}, {c}, [{p}, #16]!", a = in(reg) v4, c = in(reg) v5, p = inout(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("STP pre-index: base", p, b + 40);
    ensure_eq!("STP pre-index: first", t.ldr_x(0xa8), v4);
    ensure_eq!("STP pre-index: second", t.ldr_x(0xb0), v5);

    let (mut x, mut y) = (LOAD_POISON, LOAD_POISON);
    // SAFETY: as above.
    unsafe {
        asm!("ldp {x}, {y}, [{p}], #-16", x = inout(reg) x, y = inout(reg) y, p = inout(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("LDP post-index: first", x, v4);
    ensure_eq!("LDP post-index: second", y, v5);
    ensure_eq!("LDP post-index: base", p, b + 24);

    // SAFETY: as above.
    unsafe {
        asm!("str {v}, [{p}], #8", v = in(reg) v8, p = inout(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("STR post-index: base", p, b + 32);
    ensure_eq!("STR post-index: data", t.ldr_x(0x98), v8);

    let mut x = LOAD_POISON;
    // SAFETY: as above.
    unsafe {
        asm!("ldr {x}, [{p}, #-8]!", x = inout(reg) x, p = inout(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("LDR pre-index: data", x, v8);
    ensure_eq!("LDR pre-index: base", p, b + 24);

    let (mut x, mut y) = (LOAD_POISON, LOAD_POISON);
    // SAFETY: as above.
    unsafe {
        asm!("ldp {x}, {y}, [{p}, #-16]!", x = inout(reg) x, y = inout(reg) y, p = inout(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("LDP pre-index: first", x, v1);
    ensure_eq!("LDP pre-index: second", y, initial(0x90));
    ensure_eq!("LDP pre-index: base", p, b + 8);

    // SAFETY: as above.
    unsafe {
        asm!("stp {a}, {c}, [{p}], #24", a = in(reg) v5, c = in(reg) v4, p = inout(reg) p, options(nostack, preserves_flags))
    };
    ensure_eq!("STP post-index: base", p, b + 32);
    ensure_eq!("STP post-index: first", t.ldr_x(0x88), v5);
    ensure_eq!("STP post-index: second", t.ldr_x(0x90), v4);
    Ok(())
}

/// Stores of the zero register (Rt = 31 is XZR/WZR for a store, not SP).
fn xzr() -> CaseResult {
    let t = TESTDEV;
    for off in (0xc0..0xe8).step_by(8) {
        t.str_x(off, u64::MAX);
    }
    let (a, b, c, d) = (
        t.at(0xc0, 8),
        t.at(0xc8, 4),
        t.span(0xd0, 3, 2),
        t.span(0xd8, 16, 8),
    );
    // SAFETY: aligned addresses inside the test-device window (checked by `at`/`span`).
    unsafe {
        asm!("str xzr, [{a}]", "str wzr, [{b}]", "strh wzr, [{c}]", "strb wzr, [{c}, #2]",
             "stp xzr, xzr, [{d}]", a = in(reg) a, b = in(reg) b, c = in(reg) c, d = in(reg) d,
             options(nostack, preserves_flags))
    };
    ensure_eq!("STR XZR", t.ldr_x(0xc0), 0);
    ensure_eq!("STR WZR", t.ldr_x(0xc8), 0xffff_ffff_0000_0000);
    ensure_eq!("STRH WZR + STRB WZR", t.ldr_x(0xd0), 0xffff_ffff_ff00_0000);
    ensure_eq!("STP XZR: first", t.ldr_x(0xd8), 0);
    ensure_eq!("STP XZR: second", t.ldr_x(0xe0), 0);
    Ok(())
}

const WRITE_PAGE_PATTERN: u64 = 0x5757_0000_0000_0000;

/// The WRITE page: reads come from RAM (the initial pattern, no exit counted), each write is
/// applied and counted by the test device.
fn write_page() -> CaseResult {
    let w = WRITE_PAGE;
    let count = || TESTDEV.ldr_x(testdev::WRITE_COUNT);
    let before = count();
    for i in [0_u64, 1, 2, 5, 6, 7, 255, 511] {
        ensure_eq!(
            format_args!("initial u64 #{i}"),
            w.ldr_x(8 * i as usize),
            WRITE_PAGE_PATTERN | i
        );
    }
    ensure_eq!("write count after reads only", count(), before);
    w.str_x(8 * 5, 0x1122_3344_5566_7788);
    ensure_eq!("u64 #5 after STR X", w.ldr_x(8 * 5), 0x1122_3344_5566_7788);
    ensure_eq!("write count after one write", count(), before + 1);
    w.strb(8 * 6 + 1, 0xab);
    ensure_eq!(
        "u64 #6 after STRB",
        w.ldr_x(8 * 6),
        (WRITE_PAGE_PATTERN | 6) | 0xab00
    );
    ensure_eq!("u64 #7 untouched", w.ldr_x(8 * 7), WRITE_PAGE_PATTERN | 7);
    ensure_eq!("write count after two writes", count(), before + 2);
    Ok(())
}

fn psci_version(call: fn(u64, u64, u64, u64) -> u64) -> CaseResult {
    ensure_eq!(
        "PSCI_VERSION",
        call(psci::PSCI_VERSION, 0, 0, 0),
        psci::VERSION_1_1
    );
    Ok(())
}

fn psci_features(call: fn(u64, u64, u64, u64) -> u64) -> CaseResult {
    ensure_eq!(
        "PSCI_FEATURES(PSCI_VERSION)",
        call(psci::PSCI_FEATURES, psci::PSCI_VERSION, 0, 0),
        0
    );
    Ok(())
}

fn unknown_fn(call: fn(u64, u64, u64, u64) -> u64) -> CaseResult {
    ensure_eq!(
        "function 0x840000ff",
        call(psci::UNKNOWN_32, 0, 0, 0),
        psci::NOT_SUPPORTED
    );
    ensure_eq!(
        "function 0xc40000ff",
        call(psci::UNKNOWN_64, 0, 0, 0),
        psci::NOT_SUPPORTED
    );
    Ok(())
}

fn hvc_version() -> CaseResult {
    psci_version(psci::hvc)
}

fn hvc_features() -> CaseResult {
    psci_features(psci::hvc)
}

/// An HVC whose x7 holds a seL4 system-call number (Recv): seL4 runs that call as the vCPU's
/// thread, its capability (x0, taken as a capability address) fails, and the VMM receives a
/// capability fault instead of the HVC. It must still answer the HVC: PSCI_VERSION as usual,
/// the PC past the HVC, and the VM goes on (natively QEMU's PSCI ignores x7).
fn hvc_x7_syscall_number() -> CaseResult {
    ensure_eq!(
        "PSCI_VERSION with x7 = seL4_SysRecv",
        psci::hvc_x7(psci::PSCI_VERSION, psci::SEL4_SYS_RECV),
        psci::hvc(psci::PSCI_VERSION, 0, 0, 0)
    );
    ensure_eq!(
        "an unknown function with x7 = seL4_SysRecv",
        psci::hvc_x7(psci::UNKNOWN_32, psci::SEL4_SYS_RECV),
        psci::NOT_SUPPORTED
    );
    Ok(())
}

/// The VM's thread must hold no capability a system call could use. A debug kernel runs an HVC
/// with x7 = seL4_SysDebugCapIdentify as that system call, so the guest can ask the kernel for
/// the type of the capability at each address of its thread's CSpace: every answer must be 0
/// (no capability). A release kernel has no such call: the HVC reaches the VMM, which answers
/// NOT_SUPPORTED, and the case says it could not look.
fn vm_holds_no_capabilities() -> CaseResult {
    let mut found = 0u64;
    let mut first = None;
    for cptr in 0..1024u64 {
        match psci::hvc_x7(cptr, psci::SEL4_SYS_DEBUG_CAP_IDENTIFY) {
            psci::NOT_SUPPORTED => {
                println!(
                    "testguest: no DebugCapIdentify (release kernel): the CSpace was not probed"
                );
                return Ok(());
            }
            0 => {}
            kind => {
                found += 1;
                first.get_or_insert((cptr, kind));
            }
        }
    }
    println!(
        "testguest: the VM's thread holds {found} capabilities at addresses 0..1024 (first: {first:?})"
    );
    ensure_eq!("capabilities the VM's thread holds", found, 0);
    Ok(())
}

fn hvc_unknown() -> CaseResult {
    unknown_fn(psci::hvc)
}

fn smc_version() -> CaseResult {
    psci_version(psci::smc)
}

fn smc_features() -> CaseResult {
    psci_features(psci::smc)
}

fn smc_unknown() -> CaseResult {
    unknown_fn(psci::smc)
}

/// The virtual timer through the GIC while the guest waits in WFI.
///
/// The loop runs with IRQs masked and unmasks them only between checks, so the check of the
/// handler's log and the WFI cannot race the interrupt; WFI is only entered while the timer has
/// not fired yet (CNTV_CTL.ISTATUS = 0). After the timer fires, a missing interrupt costs at most
/// the deadline, never a hang.
fn timer_wfi() -> CaseResult {
    let freq = arch::cntfrq();
    ensure!(freq != 0, "CNTFRQ_EL0 is 0");
    gic::init();
    gic::enable(gic::VTIMER_IRQ);
    vectors::irq_reset();
    let tval = freq / 100;
    arch::set_cntv_ctl(0);
    let start = arch::now();
    arch::set_cntv_tval(tval);
    arch::set_cntv_ctl(arch::CNTV_ENABLE);
    let deadline = start + freq / 2;
    let (mut wfis, mut iterations) = (0_u32, 0_u32);
    while vectors::irq_log().timer == 0
        && arch::now() < deadline
        && iterations < MAX_WAIT_ITERATIONS
    {
        iterations += 1;
        if arch::cntv_ctl() & arch::CNTV_ISTATUS == 0 {
            arch::wfi();
            wfis += 1;
        }
        arch::irq_unmask();
        arch::irq_mask();
    }
    let ctl = arch::cntv_ctl();
    arch::set_cntv_ctl(0);
    gic::disable(gic::VTIMER_IRQ);
    let log = vectors::irq_log();
    ensure!(
        log.timer > 0,
        "no timer IRQ within 500 ms (CNTV_CTL={ctl:#x}, {wfis} WFIs, {} other IRQs, last IAR {:#x})",
        log.other,
        log.other_iar
    );
    ensure_eq!("timer IRQs", u64::from(log.timer), 1);
    ensure_eq!(
        "IAR id",
        u64::from(gic::iar_id(log.timer_iar)),
        u64::from(gic::VTIMER_IRQ)
    );
    ensure!(
        log.timer_at.wrapping_sub(start) >= tval,
        "timer IRQ after {} ticks, before TVAL = {tval}",
        log.timer_at.wrapping_sub(start)
    );
    ensure!(wfis > 0, "the timer fired before the first WFI");
    ensure_eq!("other IRQs", u64::from(log.other), 0);
    Ok(())
}

/// SGI 1 to this CPU only, through GICD_SGIR (target-list filter 0b10).
fn sgi_self() -> CaseResult {
    gic::init();
    gic::enable(gic::TEST_SGI);
    vectors::irq_reset();
    gic::sgi_self(gic::TEST_SGI);
    let deadline = arch::deadline_ms(500);
    let mut iterations = 0_u32;
    arch::irq_unmask();
    while vectors::sgi_count() == 0 && arch::now() < deadline && iterations < MAX_WAIT_ITERATIONS {
        iterations += 1;
    }
    arch::irq_mask();
    gic::disable(gic::TEST_SGI);
    let log = vectors::irq_log();
    ensure!(
        log.sgi > 0,
        "no SGI within 500 ms ({} other IRQs, last IAR {:#x})",
        log.other,
        log.other_iar
    );
    ensure_eq!("SGIs", u64::from(log.sgi), 1);
    ensure_eq!(
        "IAR id",
        u64::from(gic::iar_id(log.sgi_iar)),
        u64::from(gic::TEST_SGI)
    );
    ensure_eq!("IAR source CPU", u64::from(gic::iar_cpu(log.sgi_iar)), 0);
    ensure_eq!("other IRQs", u64::from(log.other), 0);
    Ok(())
}

/// Pings of the `smp-ipi` case.
const PINGS: u32 = 3;

/// A second CPU: PSCI CPU_ON starts CPU 1 at the guest's secondary entry (its own stack, the
/// shared vectors; [`smp`]), which says it is up with SGI 3 (pong) to CPU 0; CPU 0 then pings it
/// (SGI 2, GICD_SGIR target list 0b10) [`PINGS`] times, waiting in WFI for each pong its handler
/// sends back. Then a second CPU_ON of CPU 1 is ALREADY_ON and AFFINITY_INFO(1) is ON. A 1 s
/// watchdog (the virtual timer) bounds every wait. CPU 1 stays in WFI afterwards.
fn smp_ipi() -> CaseResult {
    gic::init();
    gic::enable(gic::IPI_PONG);
    gic::enable(gic::VTIMER_IRQ);
    vectors::irq_reset();
    arch::set_cntv_tval(arch::cntfrq());
    arch::set_cntv_ctl(arch::CNTV_ENABLE);
    arch::irq_unmask();
    let on = smp::start_cpu1();
    let up = on == 0 && smp::wait_pong(1);
    let mut pongs = u32::from(up);
    if up {
        for i in 0..PINGS {
            gic::sgi_to(1, gic::IPI_PING);
            if !smp::wait_pong(i + 2) {
                break;
            }
            pongs += 1;
        }
    }
    let again = smp::start_cpu1();
    let info = psci::hvc(psci::AFFINITY_INFO_64, 1, 0, 0);
    arch::irq_mask();
    arch::set_cntv_ctl(0);
    gic::disable(gic::VTIMER_IRQ);
    gic::disable(gic::IPI_PONG);
    let log = vectors::irq_log();
    ensure_eq!("CPU_ON(1)", on, 0);
    ensure!(up, "CPU 1 did not say it is up within 1 s");
    ensure_eq!("pongs", u64::from(pongs), u64::from(PINGS) + 1);
    ensure_eq!(
        "pings CPU 1 took",
        u64::from(vectors::ping_count()),
        u64::from(PINGS)
    );
    ensure_eq!("second CPU_ON(1)", again, psci::ALREADY_ON);
    ensure_eq!("AFFINITY_INFO(1)", info, 0);
    ensure_eq!("watchdog", u64::from(log.timer), 0);
    ensure_eq!("other IRQs", u64::from(log.other), 0);
    Ok(())
}

/// One access to nothing: the injected synchronous external abort, with its syndrome.
fn abort_check(what: &str, write: bool) -> CaseResult {
    let mut x = LOAD_POISON;
    let mut pc = 0_u64;
    let trap = catch(|| {
        if write {
            // SAFETY: nothing backs UNBACKED; the expected abort is caught and skipped.
            unsafe {
                asm!("adr {pc}, 2f", "2: str {x}, [{a}]", pc = out(reg) pc, x = in(reg) x, a = in(reg) UNBACKED, options(nostack, preserves_flags))
            };
        } else {
            // SAFETY: as above.
            unsafe {
                asm!("adr {pc}, 2f", "2: ldr {x}, [{a}]", pc = out(reg) pc, x = inout(reg) x, a = in(reg) UNBACKED, options(nostack, preserves_flags))
            };
        }
    });
    let Some(t) = trap else {
        fail!("{what}: no exception (register after: {x:#x})");
    };
    ensure!(
        esr_ec(t.esr) == ec::DABT_CUR && esr_dfsc(t.esr) == DFSC_SEA,
        "{what}: ESR={:#x} (EC {:#x}, DFSC {:#x}), want EC 0x25 DFSC 0x10",
        t.esr,
        esr_ec(t.esr),
        esr_dfsc(t.esr)
    );
    ensure!(!esr_isv(t.esr), "{what}: ISV set in ESR={:#x}", t.esr);
    ensure!(
        esr_wnr(t.esr) == write,
        "{what}: WnR wrong in ESR={:#x}",
        t.esr
    );
    ensure_eq!(format_args!("{what}: FAR"), t.far, UNBACKED as u64);
    ensure_eq!(format_args!("{what}: ELR"), t.elr, pc);
    ensure_eq!(format_args!("{what}: exceptions"), u64::from(t.count), 1);
    ensure_eq!(format_args!("{what}: destination register"), x, LOAD_POISON);
    Ok(())
}

fn unbacked_abort() -> CaseResult {
    abort_check("load", false)?;
    abort_check("store", true)
}

/// The line the console test expects on its input (the boot test's runner types it).
const INPUT_LINE: &[u8] = b"sel4 says hi";
/// How long the console test waits for its input, in seconds of the virtual counter.
const INPUT_WAIT_S: u64 = 20;

/// Console input: the runner types a line once it sees the prompt; it arrives through the serial
/// driver's RX queue, the VMM and the PL011's RX FIFO, and is read here by polling.
fn console_input() -> CaseResult {
    // Drop anything typed before the prompt.
    while crate::uart::getb().is_some() {}
    println!("testguest: console input, type a line:");
    let deadline = arch::now() + INPUT_WAIT_S * arch::cntfrq();
    let mut line = [0u8; 64];
    let mut n = 0;
    loop {
        if arch::now() > deadline {
            fail!("no line within {INPUT_WAIT_S} s (got {n} bytes)");
        }
        let Some(b) = crate::uart::getb() else {
            continue;
        };
        if b == b'\r' || b == b'\n' {
            break;
        }
        ensure!(n < line.len(), "line longer than {} bytes", line.len());
        line[n] = b;
        n += 1;
    }
    let got = &line[..n];
    ensure!(
        got == INPUT_LINE,
        "got {:?}, want {:?}",
        core::str::from_utf8(got).unwrap_or("<not UTF-8>"),
        core::str::from_utf8(INPUT_LINE).unwrap_or("")
    );
    Ok(())
}

/// A 128-bit SIMD load from the test device: no syndrome and nothing the VMM emulates, so it
/// must come back as an undefined instruction (EC 0x00) at that instruction.
fn undefined_path() -> CaseResult {
    let fpen = (arch::cpacr_el1() >> 20) & 3;
    ensure_eq!("CPACR_EL1.FPEN", fpen, 3);
    let a = TESTDEV.at(0xf0, 16);
    let mut pc = 0_u64;
    let trap = catch(|| {
        // SAFETY: a 16-byte aligned address in the test-device window; q0 is declared clobbered.
        unsafe {
            asm!("adr {pc}, 2f", "2: ldr q0, [{a}]", pc = out(reg) pc, a = in(reg) a, out("v0") _, options(nostack, preserves_flags))
        };
    });
    let Some(t) = trap else {
        fail!("LDR Q: no exception");
    };
    ensure!(
        esr_ec(t.esr) != ec::FP_TRAP,
        "LDR Q trapped in the guest (EC 0x07, FP/SIMD disabled): ESR={:#x}",
        t.esr
    );
    ensure!(
        esr_ec(t.esr) == ec::UNKNOWN,
        "LDR Q: ESR={:#x} (EC {:#x}), want EC 0x00",
        t.esr,
        esr_ec(t.esr)
    );
    ensure_eq!("LDR Q: ELR", t.elr, pc);
    ensure_eq!("LDR Q: exceptions", u64::from(t.count), 1);
    Ok(())
}
