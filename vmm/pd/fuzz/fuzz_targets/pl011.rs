//! The guest's PL011 (the VMM's `Console`), driven as the VMM drives it: guest reads and writes
//! at any offset and size through the exit path's `Platform` glue (`PlatformCtx::mmio_read` /
//! `mmio_write`, which refill the RX FIFO after a DR read and publish a prompt when the guest
//! polls FR for input: `POLL_READS` FR reads with no DR write between), the serial driver's
//! side of both queues (UART bytes arriving in the RX queue, with or without a notification;
//! the TX queue drained a little or not at all, so that it runs full), the notification path
//! (`console_io` and a flush, as `Vmm::notified`) and exits that are not MMIO (a flush). Queue
//! capacities and start indices are the input's.
//!
//! Invariants, after every step: no panic; the RX FIFO holds at most 32 bytes; every byte the
//! UART delivered is in the FIFO or the RX queue, in order (FIFO level + queue level = bytes
//! delivered and not yet read); after a DR read or a notification the FIFO is as full as the
//! queue allows; a DR read returns the oldest byte delivered and not yet read (0 and nothing
//! consumed when the FIFO is empty): nothing invented, lost or reordered; FR's RXFE/RXFF match
//! the FIFO's level and TXFE is set; RIS's RX bits match the level, MIS == RIS & IMSC and the
//! interrupt line is MIS != 0; IMSC keeps what the guest wrote (11 bits); every byte the guest
//! writes to DR reaches the driver in order or is counted in `dropped`, and only when the TX
//! queue is full; after a newline or a flush the driver sees everything enqueued; the VMM stays
//! inside its system.xml scope and prints nothing on the debug console.
#![no_main]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use microkit_rt::SharedRegion;
use microkit_sim::Sim;
use sddf_queue::layout::SerialQueue;
use sddf_queue::serial::{SerialConsumer, SerialProducer};
use vmm::devices::{DeviceId, Devices, GlueStats, KernelInjector, PlatformCtx};
use vmm::guest_memory::{RegionMemory, Window};
use vmm_core::classify::Platform;
use vmm_core::vgic::Vgic;

const DR: u64 = 0x000;
const FR: u64 = 0x018;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03c;
const MIS: u64 = 0x040;
const FR_TXFE: u64 = 1 << 7;
const FR_RXFF: u64 = 1 << 6;
const FR_RXFE: u64 = 1 << 4;
const INT_RX_RT: u64 = (1 << 4) | (1 << 6);
/// The PL011's RX FIFO depth (r1p5).
const FIFO: usize = 32;

#[derive(Debug, Arbitrary)]
enum Op {
    /// A guest load from the PL011's page.
    Read { offset: u16, size: u8 },
    /// A guest store to the PL011's page.
    Write { offset: u16, size: u8, value: u64 },
    /// The guest writes these bytes to DR, one store each.
    Send(Vec<u8>),
    /// The guest reads DR this many times.
    Receive(u8),
    /// The UART received these bytes: the driver enqueues as many as fit in the RX queue, and
    /// notifies the VMM or not.
    Arrive { bytes: Vec<u8>, notify: bool },
    /// The driver takes up to this many bytes from the TX queue (to the UART).
    Drain(u16),
    /// A notification from a driver domain (TX space, RX, block): `console_io` and a flush.
    Notified,
    /// An exit that is not an MMIO access (WFI, HVC, ...): the console is flushed.
    OtherExit,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Queue capacities: 1 << (n % 7) bytes.
    tx_cap: u8,
    rx_cap: u8,
    /// Where the queues' free-running indices start (exercises their wrap).
    tx_start: u32,
    rx_start: u32,
    ops: Vec<Op>,
}

/// What lives for the whole process: the simulated kernel confined to the VMM's system.xml
/// scope, the queues' memory (reset for every input) and a page standing in for guest RAM.
struct World {
    sim: Sim,
    txq: &'static [AtomicU32],
    txd: &'static [AtomicU8],
    rxq: &'static [AtomicU32],
    rxd: &'static [AtomicU8],
    ram: (*mut u8, usize),
}

fn leak_words(n: usize) -> &'static [AtomicU32] {
    (0..n).map(|_| AtomicU32::new(0)).collect::<Vec<_>>().leak()
}
fn leak_bytes(n: usize) -> &'static [AtomicU8] {
    (0..n).map(|_| AtomicU8::new(0)).collect::<Vec<_>>().leak()
}

thread_local! {
    static WORLD: World = World {
        sim: Sim::from_repo_system("vmm"),
        txq: leak_words(4),
        txd: leak_bytes(64),
        rxq: leak_words(4),
        rxd: leak_bytes(64),
        ram: {
            let b: &'static mut [u8] = vec![0u8; 0x1000].leak();
            (b.as_mut_ptr(), b.len())
        },
    };
}

/// Resets a queue's memory with both indices at `start`.
fn reset(q: &[AtomicU32], d: &[AtomicU8], start: u32) {
    for w in q {
        w.store(0, Ordering::Relaxed);
    }
    for b in d {
        b.store(0, Ordering::Relaxed);
    }
    q[std::mem::offset_of!(SerialQueue, tail) / 4].store(start, Ordering::Relaxed);
    q[std::mem::offset_of!(SerialQueue, head) / 4].store(start, Ordering::Relaxed);
}

fuzz_target!(|input: Input| WORLD.with(|w| run(w, &input)));

fn run(w: &World, input: &Input) {
    let tx_cap = 1u32 << (input.tx_cap % 7);
    let rx_cap = 1u32 << (input.rx_cap % 7);
    reset(w.txq, w.txd, input.tx_start);
    reset(w.rxq, w.rxd, input.rx_start);
    let _ = w.sim.take_log();

    let mut devices = Devices::default();
    let mut k = w.sim.kernel();
    let vmm_tx = SerialProducer::new(w.txq, w.txd, tx_cap).expect("TX queue");
    devices.console.attach_serial(&mut k, vmm_tx);
    devices
        .console
        .attach_input(SerialConsumer::new(w.rxq, w.rxd, rx_cap).expect("RX queue"));
    // The serial driver's ends.
    let uart_tx = SerialConsumer::new(w.txq, w.txd, tx_cap).expect("driver TX end");
    let mut uart_rx = SerialProducer::new(w.rxq, w.rxd, rx_cap).expect("driver RX end");

    let mut vgic = Vgic::new(1).expect("vGIC");
    let mut glue = GlueStats::default();
    // SAFETY: leaked buffers that live for the process; only SharedRegion touches them.
    let region = |(p, n): (*mut u8, usize)| unsafe { SharedRegion::from_raw(p, n) };
    let mem = RegionMemory::new(
        Window {
            gpa: 0x4000_0000,
            region: region(w.ram),
        },
        Window {
            gpa: 0x5000_0000,
            region: region((w.ram.0, 0)),
        },
    );
    let mut ctx = PlatformCtx {
        devices: &mut devices,
        vgic: &mut vgic,
        inj: KernelInjector { k, calls: 0 },
        vcpu: 0,
        mem: mem.view(),
        glue: &mut glue,
    };

    let mut m = Model {
        delivered: VecDeque::new(),
        in_flight: VecDeque::new(),
        imsc: 0,
        fr_reads: 0,
        uart_tx,
        tx_cap: tx_cap as usize,
        rx_cap,
    };
    for op in input.ops.iter().take(256) {
        match op {
            Op::Read { offset, size } => {
                m.read(&mut ctx, u64::from(*offset & 0xfff), *size);
            }
            Op::Write {
                offset,
                size,
                value,
            } => m.write(&mut ctx, u64::from(*offset & 0xfff), *size, *value),
            Op::Send(bytes) => {
                for &b in bytes.iter().take(96) {
                    m.write(&mut ctx, DR, 1, u64::from(b));
                }
            }
            Op::Receive(n) => {
                for _ in 0..(*n % 48) {
                    m.read(&mut ctx, DR, 4);
                }
            }
            Op::Arrive { bytes, notify } => {
                for &b in bytes.iter().take(96) {
                    if uart_rx.enqueue(b).is_ok() {
                        m.delivered.push_back(b);
                    }
                }
                if *notify {
                    m.notified(&mut ctx);
                }
            }
            Op::Drain(n) => {
                let mut buf = vec![0u8; usize::from(*n % 160)];
                let got = m.uart_tx.dequeue_into(&mut buf).expect("TX queue intact");
                for &b in &buf[..got] {
                    let want = m.in_flight.pop_front();
                    assert_eq!(
                        Some(b),
                        want,
                        "the driver got {b:#04x}, the guest's next byte was {want:?}"
                    );
                }
            }
            Op::Notified => m.notified(&mut ctx),
            Op::OtherExit => {
                ctx.devices.console.flush(&mut ctx.inj.k);
                m.all_published("after a flush");
            }
        }
        m.check(&mut ctx, &mut uart_rx);
    }
    assert_eq!(ctx.glue.irq_errors, 0, "the vGIC refused the PL011's SPI");
    let v = w.sim.violations();
    assert!(v.is_empty(), "outside the VMM's scope: {v:?}");
    assert_eq!(w.sim.console(), "", "nothing goes to the debug console");
}

/// What the PL011 must show, from what the guest and the driver did.
struct Model {
    /// Bytes the UART delivered (accepted by the RX queue) and the guest has not read, oldest
    /// first: the FIFO's contents, then the RX queue's.
    delivered: VecDeque<u8>,
    /// Bytes the guest wrote that the console accepted and the driver has not taken yet.
    in_flight: VecDeque<u8>,
    /// What the guest last wrote to IMSC.
    imsc: u64,
    /// FR reads since the last DR write (a writer polls FR between its bytes; a guest that
    /// reads it `POLL_READS` times without writing polls for input).
    fr_reads: u32,
    /// The serial driver's end of the TX queue.
    uart_tx: SerialConsumer<'static>,
    tx_cap: usize,
    rx_cap: u32,
}

type Ctx<'a> = PlatformCtx<'a, microkit_sim::SimKernel>;

fn level(ctx: &Ctx<'_>) -> usize {
    // rx_room() is FIFO depth minus level: it would underflow (a panic) on an overfull FIFO.
    FIFO - ctx.devices.console.rx_room()
}

impl Model {
    fn read(&mut self, ctx: &mut Ctx<'_>, offset: u64, size: u8) -> u64 {
        let before = level(ctx);
        let v = ctx
            .mmio_read(&DeviceId::Console, offset, size)
            .expect("the PL011 answers every read");
        match offset {
            DR => {
                if before == 0 {
                    assert_eq!(v, 0, "DR read from an empty FIFO");
                } else {
                    let want = self
                        .delivered
                        .pop_front()
                        .expect("FIFO bytes were delivered");
                    assert_eq!(v, u64::from(want), "DR: not the oldest byte delivered");
                }
                self.refilled(ctx, "after a DR read");
            }
            FR => {
                self.fr_reads += 1;
                if before == 0
                    && self.imsc & INT_RX_RT == 0
                    && self.fr_reads >= u32::from(vmm::devices::POLL_READS)
                {
                    self.all_published("after FR polled for input");
                }
                assert_eq!(v & FR_TXFE, FR_TXFE, "FR: TXFE");
                assert_eq!(v & FR_RXFE != 0, before == 0, "FR: RXFE at level {before}");
                assert_eq!(
                    v & FR_RXFF != 0,
                    before == FIFO,
                    "FR: RXFF at level {before}"
                );
            }
            _ => {}
        }
        v
    }

    fn write(&mut self, ctx: &mut Ctx<'_>, offset: u64, size: u8, value: u64) {
        let dropped = ctx.devices.console.dropped;
        ctx.mmio_write(&DeviceId::Console, offset, size, value)
            .expect("the PL011 takes every write");
        let now = ctx.devices.console.dropped;
        match offset {
            DR => {
                self.fr_reads = 0;
                let b = value as u8;
                if now == dropped {
                    self.in_flight.push_back(b);
                    assert!(
                        self.in_flight.len() <= self.tx_cap,
                        "more in the TX queue than it holds"
                    );
                    if b == b'\n' {
                        self.all_published("after a newline");
                    }
                } else {
                    assert_eq!(now, dropped + 1, "one byte written, one dropped at most");
                    assert_eq!(
                        self.in_flight.len(),
                        self.tx_cap,
                        "a byte dropped while the TX queue had room"
                    );
                }
            }
            _ => assert_eq!(now, dropped, "only DR writes send bytes"),
        }
        if offset == IMSC {
            self.imsc = value & 0x7ff;
        }
    }

    /// `Vmm::notified` for a driver's channel: console input moved, partial line published.
    fn notified(&mut self, ctx: &mut Ctx<'_>) {
        ctx.console_io();
        ctx.devices.console.flush(&mut ctx.inj.k);
        self.refilled(ctx, "after a notification");
    }

    /// The FIFO is as full as the RX queue allows.
    fn refilled(&self, ctx: &Ctx<'_>, when: &str) {
        assert_eq!(
            level(ctx),
            self.delivered.len().min(FIFO),
            "{when}: FIFO not refilled from the RX queue"
        );
    }

    /// The driver sees every byte accepted.
    fn all_published(&mut self, when: &str) {
        let avail = self.uart_tx.available().expect("TX queue intact") as usize;
        assert_eq!(
            avail,
            self.in_flight.len(),
            "{when}: bytes left unpublished"
        );
    }

    fn check(&mut self, ctx: &mut Ctx<'_>, uart_rx: &mut SerialProducer<'static>) {
        let lvl = level(ctx);
        assert!(lvl <= FIFO);
        // Conservation: FIFO + RX queue = delivered and not read.
        let queued = self.rx_cap - uart_rx.free().expect("RX queue intact");
        assert_eq!(
            lvl + queued as usize,
            self.delivered.len(),
            "RX bytes lost or invented (FIFO {lvl}, queue {queued})"
        );
        let mut reg = |o| ctx.mmio_read(&DeviceId::Console, o, 4).expect("read");
        let (ris, mis, imsc) = (reg(RIS), reg(MIS), reg(IMSC));
        assert_eq!(imsc, self.imsc, "IMSC keeps what the guest wrote");
        assert_eq!(mis, ris & imsc, "MIS == RIS & IMSC");
        assert_eq!(ris & INT_RX_RT != 0, lvl > 0, "RIS RX/RT at level {lvl}");
        assert_eq!(
            ctx.devices.console.irq_level(),
            mis != 0,
            "the line is MIS != 0"
        );
        assert_eq!(level(ctx), lvl, "register reads change nothing");
    }
}
