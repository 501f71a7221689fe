//! Benchmark mode (cargo feature `bench`): the round-trip cost of each kind of exit, measured
//! with CNTVCT_EL0 over [`ITERATIONS`] operations each, printed as
//! `bench <name> iterations=<n> ticks=<total> ticks-per-op=<x.yy>`; then sequential virtio-blk
//! throughput, printed as `bench blk-<write|read>-<4k|64k> bytes=<n> requests=<r> depth=<d>
//! ticks=<total>`; then `testguest: bench done`.
//!
//! Each loop body of an exit benchmark is exactly one exiting access (or, for `sgi-self`, one
//! SGI sent and waited for); the loop overhead is a few instructions and is included in the
//! figure. Natively on QEMU (no VMM, see `platform`) the exit benchmarks are skipped and only the
//! block ones run, against QEMU's own virtio-blk-device.

#![allow(
    clippy::result_large_err,
    reason = "no heap to box into: a failed benchmark returns its message by value, once"
)]

use blk_pattern::hostile;

use crate::mmio::{GICD, Mmio, TESTDEV, UART, WRITE_PAGE, testdev};
use crate::platform::{self, Platform};
use crate::report::{Msg, PerOp, esr_ec};
use crate::virtio::{self, Seg};
use crate::virtio_blk::{self, Blk, MAX_DATA_SEGS};
use crate::{arch, gic, psci, smp, vectors};

/// The virtio-blk transport's registers (virt's last virtio-mmio slot).
// SAFETY: device memory of the (emulated or QEMU's) virtio-mmio transport, owned by no Rust object.
const VIRTIO_BLK: Mmio = unsafe { Mmio::new(virtio_blk::BASE, 0x200) };

/// Operations per measurement: 10,000, or `TESTGUEST_BENCH_ITERATIONS` at build time (the exit
/// profile, `build/bench/exit-profile.sh`, runs two counts and takes the difference).
const ITERATIONS: u64 = match option_env!("TESTGUEST_BENCH_ITERATIONS") {
    Some(n) => parse_u64(n),
    None => 10_000,
};

/// A decimal number known at build time (a malformed one fails the build).
const fn parse_u64(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n: u64 = 0;
    assert!(!b.is_empty(), "TESTGUEST_BENCH_ITERATIONS is empty");
    while i < b.len() {
        assert!(
            b[i].is_ascii_digit(),
            "TESTGUEST_BENCH_ITERATIONS is not a number"
        );
        n = n * 10 + (b[i] - b'0') as u64;
        i += 1;
    }
    n
}

/// Whether the benchmark `name` runs: all of them, or only the one named by
/// `TESTGUEST_BENCH_ONLY` at build time (a block benchmark among them too: then it moves
/// [`ITERATIONS`] requests and also prints the `iterations=` line, for `exit-profile.sh`).
fn selected(name: &str) -> bool {
    option_env!("TESTGUEST_BENCH_ONLY").is_none_or(|only| only == name)
}
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
    if !selected(name) {
        return;
    }
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
    irq_round_trips(
        "sgi-self",
        gic::TEST_SGI,
        || gic::sgi_self(gic::TEST_SGI),
        vectors::sgi_count,
    );
}

/// One virtual timer interrupt per iteration: the guest arms CNTV to fire at once (a timer
/// register write, no exit), the kernel takes the physical PPI and the VMM injects virtual PPI
/// 27, the handler reads IAR, disables the timer and EOIs (the kernel's list register asks for a
/// maintenance exit, where the VMM acknowledges the PPI so that it can fire again), and the loop
/// sees the count move.
fn timer_ppi() {
    irq_round_trips(
        "timer-ppi",
        gic::VTIMER_IRQ,
        || {
            arch::set_cntv_tval(0);
            arch::set_cntv_ctl(arch::CNTV_ENABLE);
        },
        || vectors::irq_log().timer,
    );
    arch::set_cntv_ctl(0);
}

/// The benchmark `name`: [`ITERATIONS`] times, `raise` makes interrupt `irq` pending and the
/// loop waits until the handler's `count` has moved past it.
fn irq_round_trips(name: &str, irq: u32, raise: impl Fn(), count: impl Fn() -> u32) {
    if !selected(name) {
        return;
    }
    gic::init();
    gic::enable(irq);
    vectors::irq_reset();
    let _ = vectors::take_unexpected();
    arch::irq_unmask();
    let start = arch::now();
    let mut lost = None;
    for i in 0..ITERATIONS {
        let want = (i + 1) as u32;
        raise();
        let mut polls = 0;
        while count() < want {
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
    gic::disable(irq);
    match lost {
        Some(i) => {
            println!("bench {name} failed: interrupt {i} not delivered after {MAX_SGI_POLLS} polls")
        }
        None => report(name, ITERATIONS, ticks),
    }
}

/// The IPI round trip between two CPUs: CPU 0 starts CPU 1 (PSCI CPU_ON), then per iteration
/// sends it SGI ping and waits in WFI until CPU 1's handler has answered with SGI pong and
/// CPU 0's handler has taken it. Under the VMM both vCPUs share one physical core: the round
/// trip is CPU 0's SGIR write, its WFI (parked), CPU 1 resumed with the ping in its list
/// registers, its handler's SGIR write (CPU 0 woken), its EOI and WFI, CPU 0 taking the pong.
/// A watchdog (the virtual timer, 10 s away) ends a wait for a lost interrupt with a `failed`
/// line instead of a hang. CPU 1 stays in WFI afterwards.
fn ipi() {
    if !selected("ipi") {
        return;
    }
    gic::init();
    gic::enable(gic::IPI_PONG);
    gic::enable(gic::VTIMER_IRQ);
    vectors::irq_reset();
    let _ = vectors::take_unexpected();
    arch::set_cntv_tval(arch::cntfrq() * 10);
    arch::set_cntv_ctl(arch::CNTV_ENABLE);
    arch::irq_unmask();
    let r = smp::start_cpu1();
    let up = r == 0 && smp::wait_pong(1);
    let mut lost = None;
    let start = arch::now();
    if up {
        for i in 0..ITERATIONS {
            gic::sgi_to(1, gic::IPI_PING);
            if !smp::wait_pong(i as u32 + 2) {
                lost = Some(i);
                break;
            }
        }
    }
    let ticks = arch::now() - start;
    arch::irq_mask();
    arch::set_cntv_ctl(0);
    gic::disable(gic::VTIMER_IRQ);
    match (r, up, lost) {
        (0, true, None) => report("ipi", ITERATIONS, ticks),
        (0, _, Some(i)) => println!("bench ipi failed: pong {i} not seen within 10 s"),
        (0, false, _) => println!("bench ipi failed: CPU 1 did not come up within 10 s"),
        _ => println!("bench ipi failed: PSCI CPU_ON returned {:#x}", r),
    }
}

/// The block benchmarks: (name, request size, write).
const BLK_RUNS: [(&str, u32, bool); 4] = [
    ("blk-write-4k", 0x1000, true),
    ("blk-read-4k", 0x1000, false),
    ("blk-write-64k", 0x1_0000, true),
    ("blk-read-64k", 0x1_0000, false),
];
/// Requests in flight at once (each in its own 64 KiB slot of the data buffers).
const DEPTH: usize = 4;
/// Bytes per slot.
const SLOT: usize = 0x1_0000;

/// The next finished request, waited for in WFI with the virtio-blk interrupt enabled (the IRQ
/// handler acknowledges InterruptStatus). Under `-icount shift=0,sleep=off` virtual time then
/// counts only the instructions run, never the host's I/O time (a polling loop would count its
/// spins while the host works, which makes the figure depend on the host). No timer may be armed:
/// with `sleep=off` an idle CPU jumps to the next timer deadline. So a lost interrupt natively
/// hangs until the runner's timeout; under the VMM (WFI resumes at once) the deadline applies.
fn wait_irq(b: &mut Blk) -> Result<virtio_blk::Done, Msg> {
    let deadline = arch::deadline_ms(virtio::WAIT_MS);
    let mut polls = 0u32;
    loop {
        let used =
            b.q.pop_used()
                .map_err(|e| Msg::from_args(format_args!("{e}")))?;
        if let Some(u) = used {
            return Ok(virtio_blk::Done {
                head: u.id,
                status: b.status_byte(u.id),
                used_len: u.len,
            });
        }
        polls += 1;
        if polls >= virtio::MAX_POLLS || arch::now() > deadline {
            return Err(Msg::from_args(format_args!(
                "no completion within {} ms ({} interrupts taken)",
                virtio::WAIT_MS,
                vectors::irq_log().virtio
            )));
        }
        // A completion that lands after the check leaves the interrupt pending, and a pending
        // interrupt ends WFI even with IRQs masked.
        arch::wfi();
        vectors::irq_reset();
        arch::irq_unmask();
        arch::irq_mask();
    }
}

/// Streams [`blk_pattern::BENCH_BYTES`] from [`blk_pattern::BENCH_OFFSET`] on in requests of
/// `size` bytes (`n` requests), [`DEPTH`] in flight, one notification per batch posted,
/// completions waited for with [`wait_irq`]; returns the ticks from the first post to the last
/// completion.
fn stream(b: &mut Blk, size: u32, n: u64, write: bool) -> Result<u64, Msg> {
    let ty = if write {
        hostile::req::OUT
    } else {
        hostile::req::IN
    };
    let data = virtio_blk::data();
    let mut slot_of = [usize::MAX; 16];
    let mut busy = [false; DEPTH];
    let (mut submitted, mut done) = (0u64, 0u64);
    let start = arch::now();
    while done < n {
        let mut posted = false;
        while submitted < n && submitted - done < DEPTH as u64 {
            let Some(slot) = busy.iter().position(|b| !b) else {
                break;
            };
            let mut segs = [Seg::out(0, 0); MAX_DATA_SEGS];
            let addr = data.sub(slot * SLOT, size as usize).addr();
            let k = b.split(addr, size, !write, &mut segs[..b.max_segs()]);
            let sector = (blk_pattern::BENCH_OFFSET + submitted * u64::from(size)) / 512;
            let head = b
                .post(ty, sector, &segs[..k])
                .map_err(|e| Msg::from_args(format_args!("post: {e}")))?;
            if let Some(s) = slot_of.get_mut(usize::from(head)) {
                *s = slot;
            }
            busy[slot] = true;
            submitted += 1;
            posted = true;
        }
        if posted {
            b.notify();
        }
        let d =
            wait_irq(b).map_err(|e| Msg::from_args(format_args!("after {done} requests: {e}")))?;
        let want_len = if write { 1 } else { size + 1 };
        if d.status != hostile::status::OK || d.used_len != want_len {
            return Err(Msg::from_args(format_args!(
                "request {done}: status {:#x}, used length {} (want 0, {want_len})",
                d.status, d.used_len
            )));
        }
        if let Some(&slot) = slot_of.get(usize::from(d.head))
            && let Some(b) = busy.get_mut(slot)
        {
            *b = false;
        }
        done += 1;
    }
    Ok(arch::now() - start)
}

/// Sequential block throughput, or a `failed` line per benchmark when there is no device.
fn blk() {
    let mut b = match Blk::init() {
        Ok(b) => b,
        Err(e) => {
            for (name, _, _) in BLK_RUNS {
                println!("bench {name} failed: no virtio-blk device: {e}");
            }
            return;
        }
    };
    virtio_blk::data().fill_with(0, DEPTH * SLOT, |i| (i as u8) ^ 0x5a);
    gic::init();
    gic::target_cpu0(gic::VIRTIO_BLK_IRQ);
    gic::set_edge(gic::VIRTIO_BLK_IRQ);
    gic::enable(gic::VIRTIO_BLK_IRQ);
    b.q.interrupts(true);
    let only = option_env!("TESTGUEST_BENCH_ONLY").is_some();
    for (name, size, write) in BLK_RUNS {
        if !selected(name) {
            continue;
        }
        let n = if only {
            ITERATIONS
        } else {
            blk_pattern::BENCH_BYTES / u64::from(size)
        };
        match stream(&mut b, size, n, write) {
            Ok(ticks) => {
                println!(
                    "bench {name} bytes={} requests={n} depth={DEPTH} ticks={ticks}",
                    n * u64::from(size)
                );
                if only {
                    report(name, n, ticks);
                }
            }
            Err(e) => println!("bench {name} failed: {e}"),
        }
    }
    b.q.interrupts(false);
    gic::disable(gic::VIRTIO_BLK_IRQ);
    let _ = b.t.reset();
}

/// Runs every benchmark.
pub fn run_all() {
    println!("testguest: bench mode, CNTFRQ_EL0 = {} Hz", arch::cntfrq());
    platform::announce();
    if platform::detect() == Platform::Native {
        println!("testguest: the exit benchmarks need the VMM: skipped");
        ipi();
    } else {
        measure("mmio-read", |_| {
            TESTDEV.ldr_w(testdev::ID);
        });
        measure("mmio-write", |i| TESTDEV.str_w(testdev::SCRATCH, i));
        measure("hvc", |_| {
            psci::hvc(psci::PSCI_VERSION, 0, 0, 0);
        });
        measure("write-page", |i| WRITE_PAGE.str_x(0x800, i));
        // One register of each emulated device: the GIC distributor (GICD_TYPER; the priority
        // bytes of INTIDs 32..35, which nothing here enables), the virtio-blk transport
        // (InterruptStatus, read-only), the PL011 (FR, and IMSC written with the mask it has:
        // none, the bench guest polls).
        measure("gicd-read", |_| {
            GICD.ldr_w(0x004);
        });
        measure("gicd-write", |_| GICD.str_w(0x420, 0xa0a0_a0a0));
        measure("virtio-read", |_| {
            VIRTIO_BLK.ldr_w(0x060);
        });
        measure("pl011-read", |_| {
            UART.ldr_w(0x018);
        });
        measure("pl011-write", |_| UART.str_w(0x038, 0));
        sgi_self();
        timer_ppi();
        if platform::detect() == Platform::Vmm {
            ipi();
        } else if selected("ipi") {
            println!("bench ipi failed: the null VMM starts no vCPU");
        }
    }
    if BLK_RUNS.iter().any(|&(name, _, _)| selected(name)) {
        blk();
    }
    println!("testguest: bench done");
}
