//! The exception vector table (VBAR_EL1) and the guest's own handlers.
//!
//! Every vector saves the full interrupted state (x0..x30, ELR/SPSR, q0..q31, FPSR/FPCR) in a
//! [`Frame`] on the stack, calls [`exception_entry`], restores the frame and ERETs, so an
//! exception in the middle of a case's inline asm leaves its registers intact.
//!
//! - Synchronous exceptions (current EL, SP_ELx): recorded and skipped (ELR += 4). Inside
//!   [`catch`] the record is the expected trap a case inspects; anywhere else it is an
//!   *unexpected* exception that the harness reports as the case's `FAIL` line (ESR/FAR/ELR).
//! - IRQs: acknowledged at GICC_IAR, logged per id (the virtual timer is disabled before its
//!   EOI because it is level-triggered; the virtio-blk interrupt is acknowledged at the device,
//!   InterruptStatus → InterruptACK, whose line QEMU keeps asserted until then), ended at
//!   GICC_EOIR.
//! - Every other vector (FIQ, SError, SP_EL0 or lower-EL vectors) and any exception inside a
//!   handler are fatal: a `FAIL` line, then SYSTEM_OFF, so nothing can loop forever.
//!
//! The records are atomics used only with plain loads and stores: with the MMU off all memory
//! is Device memory, where exclusive (read-modify-write) accesses are not guaranteed to work.

use core::arch::global_asm;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::{arch, gic, psci};

/// The interrupted state, as the vector stubs save it.
#[repr(C)]
pub struct Frame {
    /// x0..x30.
    pub x: [u64; 31],
    /// ELR_EL1: where ERET returns.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    fpsr: u64,
    fpcr: u64,
    _pad: u64,
    q: [u128; 32],
}

const FRAME_SIZE: usize = size_of::<Frame>();
const _: () = {
    assert!(offset_of!(Frame, elr) == 248);
    assert!(offset_of!(Frame, spsr) == 256);
    assert!(offset_of!(Frame, fpsr) == 264);
    assert!(offset_of!(Frame, fpcr) == 272);
    assert!(offset_of!(Frame, q) == 288);
    assert!(FRAME_SIZE == 800);
};

global_asm!(
    r#"
.macro TG_VENTRY kind
    .balign 0x80
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       __tg_exc_common
.endm

    .section .text.vectors, "ax"
    .balign 2048
    .global __tg_vectors
__tg_vectors:
    TG_VENTRY 0
    TG_VENTRY 1
    TG_VENTRY 2
    TG_VENTRY 3
    TG_VENTRY 4
    TG_VENTRY 5
    TG_VENTRY 6
    TG_VENTRY 7
    TG_VENTRY 8
    TG_VENTRY 9
    TG_VENTRY 10
    TG_VENTRY 11
    TG_VENTRY 12
    TG_VENTRY 13
    TG_VENTRY 14
    TG_VENTRY 15

__tg_exc_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, elr_el1
    stp     x30, x1, [sp, #240]
    mrs     x1, spsr_el1
    mrs     x2, fpsr
    stp     x1, x2, [sp, #256]
    mrs     x1, fpcr
    str     x1, [sp, #272]
    add     x1, sp, #288
    stp     q0, q1, [x1, #0]
    stp     q2, q3, [x1, #32]
    stp     q4, q5, [x1, #64]
    stp     q6, q7, [x1, #96]
    stp     q8, q9, [x1, #128]
    stp     q10, q11, [x1, #160]
    stp     q12, q13, [x1, #192]
    stp     q14, q15, [x1, #224]
    stp     q16, q17, [x1, #256]
    stp     q18, q19, [x1, #288]
    stp     q20, q21, [x1, #320]
    stp     q22, q23, [x1, #352]
    stp     q24, q25, [x1, #384]
    stp     q26, q27, [x1, #416]
    stp     q28, q29, [x1, #448]
    stp     q30, q31, [x1, #480]
    mov     x1, sp
    bl      {handler}
    add     x1, sp, #288
    ldp     q0, q1, [x1, #0]
    ldp     q2, q3, [x1, #32]
    ldp     q4, q5, [x1, #64]
    ldp     q6, q7, [x1, #96]
    ldp     q8, q9, [x1, #128]
    ldp     q10, q11, [x1, #160]
    ldp     q12, q13, [x1, #192]
    ldp     q14, q15, [x1, #224]
    ldp     q16, q17, [x1, #256]
    ldp     q18, q19, [x1, #288]
    ldp     q20, q21, [x1, #320]
    ldp     q22, q23, [x1, #352]
    ldp     q24, q25, [x1, #384]
    ldp     q26, q27, [x1, #416]
    ldp     q28, q29, [x1, #448]
    ldp     q30, q31, [x1, #480]
    ldr     x1, [sp, #272]
    msr     fpcr, x1
    ldp     x1, x2, [sp, #256]
    msr     spsr_el1, x1
    msr     fpsr, x2
    ldp     x30, x1, [sp, #240]
    msr     elr_el1, x1
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{frame_size}
    eret
"#,
    frame_size = const FRAME_SIZE,
    handler = sym exception_entry,
);

/// Vector indices: (current EL with SP_EL0, current EL with SP_ELx, lower EL AArch64, lower EL
/// AArch32) × (sync, IRQ, FIQ, SError).
const KIND_SYNC: u64 = 4;
const KIND_IRQ: u64 = 5;
const VECTOR_NAMES: [&str; 16] = [
    "sync/SP_EL0",
    "irq/SP_EL0",
    "fiq/SP_EL0",
    "serror/SP_EL0",
    "sync",
    "irq",
    "fiq",
    "serror",
    "sync/lower-a64",
    "irq/lower-a64",
    "fiq/lower-a64",
    "serror/lower-a64",
    "sync/lower-a32",
    "irq/lower-a32",
    "fiq/lower-a32",
    "serror/lower-a32",
];
/// Unexpected synchronous exceptions tolerated in one run before the guest gives up.
const MAX_UNEXPECTED: u32 = 64;
/// Unknown interrupts tolerated before their source is disabled.
const MAX_OTHER_IRQS: u32 = 64;

static IN_HANDLER: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// CPUs this guest may run on (the IPI benchmark starts a second one).
const MAX_CPUS: usize = 4;

/// This CPU's "inside a handler" flag.
fn in_handler() -> &'static AtomicBool {
    &IN_HANDLER[arch::cpu_id() % MAX_CPUS]
}

// Expected traps (inside `catch`).
static EXPECTING: AtomicBool = AtomicBool::new(false);
static TRAP_COUNT: AtomicU32 = AtomicU32::new(0);
static TRAP_ESR: AtomicU64 = AtomicU64::new(0);
static TRAP_FAR: AtomicU64 = AtomicU64::new(0);
static TRAP_ELR: AtomicU64 = AtomicU64::new(0);

// Unexpected synchronous exceptions (the first since the last `take_unexpected`).
static UNEXPECTED_COUNT: AtomicU32 = AtomicU32::new(0);
static UNEXPECTED_TOTAL: AtomicU32 = AtomicU32::new(0);
static UNEXPECTED_ESR: AtomicU64 = AtomicU64::new(0);
static UNEXPECTED_FAR: AtomicU64 = AtomicU64::new(0);
static UNEXPECTED_ELR: AtomicU64 = AtomicU64::new(0);

// Interrupts seen by the IRQ handler.
static TIMER_COUNT: AtomicU32 = AtomicU32::new(0);
static TIMER_IAR: AtomicU32 = AtomicU32::new(0);
static TIMER_AT: AtomicU64 = AtomicU64::new(0);
static SGI_COUNT: AtomicU32 = AtomicU32::new(0);
static SGI_IAR: AtomicU32 = AtomicU32::new(0);
static VIRTIO_COUNT: AtomicU32 = AtomicU32::new(0);
static VIRTIO_IAR: AtomicU32 = AtomicU32::new(0);
static VIRTIO_ISR: AtomicU32 = AtomicU32::new(0);
static OTHER_IRQ_COUNT: AtomicU32 = AtomicU32::new(0);
static OTHER_IRQ_IAR: AtomicU32 = AtomicU32::new(0);
/// IPI benchmark pings taken (on CPU 1) and pongs taken (on CPU 0).
static PING_COUNT: AtomicU32 = AtomicU32::new(0);
static PONG_COUNT: AtomicU32 = AtomicU32::new(0);

/// One synchronous exception as the handler saw it.
#[derive(Clone, Copy)]
pub struct Trap {
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1.
    pub far: u64,
    /// ELR_EL1 at entry (the handler then skips the instruction).
    pub elr: u64,
    /// How many exceptions were taken in all (this record is the first).
    pub count: u32,
}

/// The vector table's address (for VBAR_EL1).
pub fn table() -> u64 {
    unsafe extern "C" {
        static __tg_vectors: u8;
    }
    core::ptr::addr_of!(__tg_vectors) as u64
}

/// Runs `f` expecting synchronous exceptions: each one is recorded (the first one's registers)
/// and skipped. Returns the first, if any.
pub fn catch(f: impl FnOnce()) -> Option<Trap> {
    TRAP_COUNT.store(0, Relaxed);
    EXPECTING.store(true, Relaxed);
    f();
    EXPECTING.store(false, Relaxed);
    let count = TRAP_COUNT.load(Relaxed);
    (count > 0).then(|| Trap {
        esr: TRAP_ESR.load(Relaxed),
        far: TRAP_FAR.load(Relaxed),
        elr: TRAP_ELR.load(Relaxed),
        count,
    })
}

/// The first unexpected synchronous exception since the last call, if any; clears the record.
pub fn take_unexpected() -> Option<Trap> {
    let count = UNEXPECTED_COUNT.load(Relaxed);
    UNEXPECTED_COUNT.store(0, Relaxed);
    (count > 0).then(|| Trap {
        esr: UNEXPECTED_ESR.load(Relaxed),
        far: UNEXPECTED_FAR.load(Relaxed),
        elr: UNEXPECTED_ELR.load(Relaxed),
        count,
    })
}

/// What the IRQ handler logged since the last [`irq_reset`].
#[derive(Clone, Copy)]
pub struct IrqLog {
    /// Virtual timer interrupts.
    pub timer: u32,
    /// The last virtual timer IAR value.
    pub timer_iar: u32,
    /// CNTVCT when the handler saw the virtual timer.
    pub timer_at: u64,
    /// Interrupts of the test SGI.
    pub sgi: u32,
    /// The last test SGI IAR value.
    pub sgi_iar: u32,
    /// Interrupts of the virtio-blk device.
    pub virtio: u32,
    /// The last virtio-blk IAR value.
    pub virtio_iar: u32,
    /// The InterruptStatus the handler read (and acknowledged) last.
    pub virtio_isr: u32,
    /// Any other interrupt (not spurious).
    pub other: u32,
    /// The last other IAR value.
    pub other_iar: u32,
}

/// Clears the interrupt log.
pub fn irq_reset() {
    for c in [
        &TIMER_COUNT,
        &TIMER_IAR,
        &SGI_COUNT,
        &SGI_IAR,
        &VIRTIO_COUNT,
        &VIRTIO_IAR,
        &VIRTIO_ISR,
        &OTHER_IRQ_COUNT,
        &OTHER_IRQ_IAR,
        &PING_COUNT,
        &PONG_COUNT,
    ] {
        c.store(0, Relaxed);
    }
    TIMER_AT.store(0, Relaxed);
}

/// The interrupt log.
pub fn irq_log() -> IrqLog {
    IrqLog {
        timer: TIMER_COUNT.load(Relaxed),
        timer_iar: TIMER_IAR.load(Relaxed),
        timer_at: TIMER_AT.load(Relaxed),
        sgi: SGI_COUNT.load(Relaxed),
        sgi_iar: SGI_IAR.load(Relaxed),
        virtio: VIRTIO_COUNT.load(Relaxed),
        virtio_iar: VIRTIO_IAR.load(Relaxed),
        virtio_isr: VIRTIO_ISR.load(Relaxed),
        other: OTHER_IRQ_COUNT.load(Relaxed),
        other_iar: OTHER_IRQ_IAR.load(Relaxed),
    }
}

/// Pings CPU 1 took so far.
pub fn ping_count() -> u32 {
    PING_COUNT.load(Relaxed)
}

/// Pongs CPU 0 took so far.
pub fn pong_count() -> u32 {
    PONG_COUNT.load(Relaxed)
}

/// Test-SGI interrupts seen so far (a cheap read for the benchmark loop).
pub fn sgi_count() -> u32 {
    SGI_COUNT.load(Relaxed)
}

fn bump(c: &AtomicU32) -> u32 {
    // Only the handler writes these counters, with IRQs masked: a plain load and store suffice.
    let n = c.load(Relaxed).wrapping_add(1);
    c.store(n, Relaxed);
    n
}

fn fatal(what: &str, frame: &Frame) -> ! {
    println!(
        "FAIL exception: fatal {what}: ESR={:#x} FAR={:#x} ELR={:#x} SPSR={:#x}",
        arch::esr_el1(),
        arch::far_el1(),
        frame.elr,
        frame.spsr
    );
    println!("testguest: fatal exception, powering off");
    psci::system_off()
}

/// Called by every vector stub with the vector index and the saved frame.
extern "C" fn exception_entry(kind: u64, frame: &mut Frame) {
    let name = VECTOR_NAMES[(kind & 15) as usize];
    if in_handler().load(Relaxed) {
        fatal(name, frame);
    }
    in_handler().store(true, Relaxed);
    match kind {
        KIND_SYNC => sync(frame),
        KIND_IRQ => irq(),
        _ => fatal(name, frame),
    }
    in_handler().store(false, Relaxed);
}

fn sync(frame: &mut Frame) {
    let (esr, far, elr) = (arch::esr_el1(), arch::far_el1(), frame.elr);
    if EXPECTING.load(Relaxed) {
        if bump(&TRAP_COUNT) == 1 {
            TRAP_ESR.store(esr, Relaxed);
            TRAP_FAR.store(far, Relaxed);
            TRAP_ELR.store(elr, Relaxed);
        }
    } else {
        if bump(&UNEXPECTED_COUNT) == 1 {
            UNEXPECTED_ESR.store(esr, Relaxed);
            UNEXPECTED_FAR.store(far, Relaxed);
            UNEXPECTED_ELR.store(elr, Relaxed);
        }
        if bump(&UNEXPECTED_TOTAL) > MAX_UNEXPECTED {
            in_handler().store(false, Relaxed);
            fatal("sync (too many unexpected exceptions)", frame);
        }
    }
    // Every instruction this guest runs is 4 bytes long (A64).
    frame.elr = elr.wrapping_add(4);
}

fn irq() {
    let iar = gic::ack();
    let id = gic::iar_id(iar);
    if id >= gic::FIRST_SPECIAL {
        return;
    }
    match id {
        gic::VTIMER_IRQ => {
            // Level-triggered: silence the source before the EOI.
            arch::set_cntv_ctl(0);
            TIMER_AT.store(arch::now(), Relaxed);
            TIMER_IAR.store(iar, Relaxed);
            bump(&TIMER_COUNT);
        }
        gic::TEST_SGI => {
            SGI_IAR.store(iar, Relaxed);
            bump(&SGI_COUNT);
        }
        // The IPI benchmark: CPU 1 answers each ping; CPU 0 counts the answers.
        gic::IPI_PING => {
            bump(&PING_COUNT);
            gic::sgi_to(0, gic::IPI_PONG);
        }
        gic::IPI_PONG => {
            bump(&PONG_COUNT);
        }
        gic::VIRTIO_BLK_IRQ => {
            // Acknowledge at the device first: natively the line is level and stays asserted
            // while InterruptStatus is not zero.
            let t = crate::virtio_blk::transport();
            let isr = t.read(crate::virtio::reg::INTERRUPT_STATUS);
            t.write(crate::virtio::reg::INTERRUPT_ACK, isr);
            VIRTIO_ISR.store(isr, Relaxed);
            VIRTIO_IAR.store(iar, Relaxed);
            // A line that stays asserted (an acknowledgement the device ignored) must not
            // starve the guest: after too many, the source is disabled.
            if bump(&VIRTIO_COUNT) >= MAX_OTHER_IRQS {
                gic::disable(id);
            }
        }
        _ => {
            OTHER_IRQ_IAR.store(iar, Relaxed);
            if bump(&OTHER_IRQ_COUNT) >= MAX_OTHER_IRQS {
                gic::disable(id);
            }
        }
    }
    gic::eoi(iar);
}
