//! Console runs (`vmm/pd/src/console_run.rs`, on by default) on hostile guest state, through
//! the real event loop over `microkit-sim`. Each input starts from a console loop that runs
//! deep (`tests/common/console_loop.rs`, as `tests/console_run.rs` does: an exit at putc's FR
//! read, the rest of the string printed in the run, a WFI at the end) and bends it: code words
//! replaced (raw, or from a list of the encodings a console loop uses: loads and stores at the
//! UART and the stack, pairs, branches, calls, returns), the four page-table descriptors XORed
//! with the input's bits and raw words written anywhere in the two table pages, the string,
//! registers, stack pointer, PSTATE and MMU controls changed, and the exit itself another
//! access. The run follows whatever the tables and the code say until it stops.
//!
//! Invariants: no panic; the VMM stays inside its system.xml scope; the exit is answered with
//! one reply and the VM keeps running, unless the input gave the vCPU a PSTATE the VMM cannot
//! inject an abort into (then the VM stops: suspended, no reply); a run never stops it. The
//! VMM then answers an HVC (PSCI_VERSION) as before: whatever a run met, the exit path still
//! works.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

use common::console_loop::{self, CODE, DATA, PROGRAM, STACK, TABLES, TCR, put_u64};
use common::*;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use microkit_rt::SharedRegion;
use microkit_rt::abi::{user_context, vcpu_reg};
use microkit_sim::{Invocation, Sim};
use vmm::VmState;

thread_local! {
    /// One guest RAM buffer and one write-protected page for every input (the loader writes the
    /// same guest each time; the simulation's regions are never freed).
    static RAM: SharedRegion = Sim::from_repo_system("vmm")
        .region("guest_ram")
        .expect("vmm maps guest_ram");
    static WP: SharedRegion = Sim::from_repo_system("vmm")
        .region("guest_wp_page")
        .expect("vmm maps guest_wp_page");
    /// The test guest, made (and leaked: `GuestBlobs` holds `'static` slices) once, and kept
    /// reachable here so that the leak checker does not count it for every input.
    static BLOBS: vmm::GuestBlobs = blobs();
}

/// More encodings of console code (x2 holds the UART's address).
const KNOWN: [u32; 8] = [
    0xb900_3841, // str w1, [x2, #0x38]
    0xf900_07e3, // str x3, [sp, #8]
    0xf940_07e3, // ldr x3, [sp, #8]
    0x089f_fc40, // stlrb w0, [x2]
    0xd503_3fdf, // isb
    0xa9bf_7bfd, // stp x29, x30, [sp, #-16]!
    0xf800_8c1f, // str xzr, [x0, #8]!
    0xd51b_4200, // msr nzcv, x0
];

#[derive(Debug, Arbitrary)]
enum Word {
    Program(u8),
    Known(u8),
    Raw(u32),
}

/// The access that exits, instead of putc's FR read: a load (else a store) of 2^(size % 4)
/// bytes at this PL011 offset, register rt, from the instruction at CODE + 4 * pc_word.
#[derive(Debug, Arbitrary)]
struct Access {
    load: bool,
    size: u8,
    offset: u16,
    rt: u8,
    pc_word: u8,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Code words replaced: (index in 0..64, word).
    edits: Vec<(u8, Word)>,
    /// XORed into the UART gigabyte's block, the L1 table entry, the code block, the data block.
    bends: [u64; 4],
    /// Raw words written into the two table pages: (index of the u64 in 0..1024, value).
    table_words: Vec<(u16, u64)>,
    /// The string put_string prints (its length in x1), if not "hi\nok".
    string: Option<Vec<u8>>,
    /// XORed into x0..x7, x29 and x30.
    x: [u64; 8],
    frame: [u64; 2],
    /// SCTLR_EL1: raw, or the MMU off, else M and C.
    sctlr: Option<u64>,
    mmu_off: bool,
    /// XORed into TCR_EL1.
    tcr_bend: u64,
    /// Subtracted from the stack pointer.
    sp_bend: u16,
    spsr: Option<u64>,
    access: Option<Access>,
}

fn word(w: &Word) -> u32 {
    match w {
        Word::Program(i) => PROGRAM[usize::from(*i) % PROGRAM.len()],
        Word::Known(i) => KNOWN[usize::from(*i) % KNOWN.len()],
        Word::Raw(r) => *r,
    }
}

fuzz_target!(|input: Input| {
    let sim = Sim::from_repo_system("vmm");
    let (ram, wp) = (RAM.with(Sim::alias), WP.with(Sim::alias));
    let (ram_view, wp_view) = (Sim::alias(&ram), Sim::alias(&wp));
    sim.on_ppcall(|_, _, _| microkit_rt::abi::MessageInfo::new(0, 0));
    let vmm = vmm::Vmm::new(sim.kernel(), Ok(ram), Ok(wp), BLOBS.with(|b| *b));
    assert_eq!(vmm.state(), VmState::Running);
    let mut h = Harness::running_with(sim, vmm, ram_view, wp_view);
    // The RAM is shared by every input: the table pages and the data and stack a run may have
    // written start zeroed (the loop's code is written whole below).
    h.ram
        .write((TABLES - RAM_GPA) as usize, &[0; 0x2000])
        .unwrap();
    h.ram
        .write((DATA - RAM_GPA) as usize, &vec![0; (STACK - DATA) as usize])
        .unwrap();
    let mut code = [0u32; 64];
    code[..PROGRAM.len()].copy_from_slice(&PROGRAM);
    for (i, w) in input.edits.iter().take(16) {
        code[usize::from(*i) % code.len()] = word(w);
    }
    let string = input.string.as_deref().unwrap_or(b"hi\nok");
    let string = &string[..string.len().min(256)];
    console_loop::inside_putc(&h, &code, string, input.bends);
    for &(i, v) in input.table_words.iter().take(64) {
        put_u64(&h, TABLES + 8 * u64::from(i % 1024), v);
    }
    let sctlr = match (input.sctlr, input.mmu_off) {
        (Some(raw), _) => raw,
        (None, true) => SCTLR_MMU_OFF,
        (None, false) => 0b101,
    };
    h.set_reg(vcpu_reg::SCTLR, sctlr);
    h.set_reg(vcpu_reg::TCR, TCR ^ input.tcr_bend);
    h.set_reg(
        vcpu_reg::SP_EL1,
        (STACK - 16).wrapping_sub(u64::from(input.sp_bend)),
    );
    for (n, bend) in input.x.iter().enumerate() {
        h.set_x(n as u8, h.x(n as u8) ^ bend);
    }
    h.set_x(29, h.x(29) ^ input.frame[0]);
    h.set_x(30, h.x(30) ^ input.frame[1]);
    if let Some(spsr) = input.spsr {
        h.sim.with_vcpu(0, |v| v.context[user_context::SPSR] = spsr);
    }
    let log = match &input.access {
        None => h.load(CODE + 0x40, PL011 + 0x18, 2, 5),
        Some(a) => {
            let pc = CODE + 4 * u64::from(a.pc_word % 64);
            let addr = PL011 + u64::from(a.offset % 0x1000);
            let (sas, rt) = (u64::from(a.size % 4), a.rt % 31);
            if a.load {
                h.load(pc, addr, sas, rt)
            } else {
                let value = h.x(rt);
                h.store(pc, addr, sas, rt, value)
            }
        }
    };
    let replies = log
        .iter()
        .filter(|i| matches!(i, Invocation::Reply { .. }))
        .count();
    match h.vmm.state() {
        VmState::Running => assert!(
            replies == 1 && matches!(log.last(), Some(Invocation::Reply { .. })),
            "a console exit is answered once: {log:?}"
        ),
        // A PSTATE the VMM cannot take (an AArch32 mode, say) stops the VM when the exit must
        // inject an abort; a run never stops it: at EL1h every exit is answered.
        VmState::Stopped if input.spsr.is_some() => assert!(
            replies == 0 && log.contains(&Invocation::VmSuspend(0)),
            "a stop suspends and does not answer: {log:?}"
        ),
        other => panic!(
            "{other:?} after a console exit: {log:?} {}",
            h.sim.console()
        ),
    }
    assert!(h.sim.violations().is_empty(), "{:?}", h.sim.violations());
    if h.vmm.state() != VmState::Running {
        return;
    }
    // The exit path still works: PSCI_VERSION through an HVC.
    let mut x = [0u64; 8];
    x[0] = PSCI_VERSION;
    h.sim.with_vcpu(0, |v| {
        v.context[user_context::SPSR] = EL1H;
        v.context[user_context::gpr_index(0).unwrap()] = PSCI_VERSION;
    });
    h.exit(label::UNKNOWN_SYSCALL, &hvc_words(x, PC0, SP0, EL1H));
    assert_eq!(h.x(0), PSCI_1_1, "the VMM answers an HVC after the run");
    assert!(h.sim.violations().is_empty(), "{:?}", h.sim.violations());
});
