//! blk_driver driven through its Microkit interface, in its system.xml scope: the simulated
//! kernel grants exactly the channels, IRQ and regions of `blk_driver` in the system description
//! the repository's system.xml. The client side uses
//! `sddf-queue` over aliases of the simulation's queue regions; the device is the VMM's own
//! virtio-mmio + virtio-blk model over an in-memory disk (`tests/support`), reading and writing
//! the driver's DMA region and the data region by physical address.

mod support;

use blk_driver::virtio::{self, InitError, status};
use blk_driver::{BlkDriver, CLIENT, Console, CrashPlan, DeviceState, IRQ_CHANNEL, QUEUE_CAPACITY};
use blk_driver::{PhysWindow, QueueMem, system};
use microkit_rt::SharedRegion;
use microkit_rt::abi::{LABELS, slot};
use microkit_rt::event_loop::EventLoop;
use microkit_sim::{Invocation, Sim, SimKernel, SimTransport};
use proptest::prelude::*;
use sddf_queue::SerialConsumer;
use sddf_queue::blk::{BlkReqProducer, BlkRespConsumer, StorageInfoReader};
use sddf_queue::layout::{BlkReq, BlkReqCode, BlkResp, BlkRespStatus};
use sddf_queue::restart::ClientSync;
use sddf_queue::sync::Ordering;
use support::{Bus, DMA_PADDR, Phys, ReadHook, WriteHook, last_write};
use vmm_devices::blk::{BlkConfig, BlkSize};
use vmm_devices::mmio::DeviceState as ModelState;
use vmm_devices::testing::CompletionMode;

const UNIT: usize = 4096;
const DATA_SIZE: usize = system::map::blk_data_vmm::SIZE;
const DMA_SIZE: usize = system::map::blk_dma::SIZE;
/// The slot QEMU uses for the first virtio-blk device (31, at 0xa003e00), as the transport's
/// index in the page the driver maps (0xa003000: transports 24..31).
const QEMU_SLOT: usize = 7;
/// The register window system.xml maps.
const REGS: PhysWindow = PhysWindow {
    paddr: system::map::blk_regs::PHYS_ADDR,
    size: system::map::blk_regs::SIZE as u64,
};

fn sim() -> Sim {
    Sim::from_repo_system("blk_driver")
}

struct Opts {
    disk_units: usize,
    mode: CompletionMode,
    present: bool,
    config: BlkConfig,
    slot: usize,
    read_only: bool,
    /// Installed before the driver starts (its set-up sees them).
    read_hook: Option<ReadHook>,
    write_hook: Option<WriteHook>,
    /// The client acknowledges the driver's first life at once.
    acknowledge: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            disk_units: 64,
            mode: CompletionMode::Immediate,
            present: true,
            config: BlkConfig::default(),
            slot: QEMU_SLOT,
            read_only: false,
            read_hook: None,
            write_hook: None,
            acknowledge: true,
        }
    }
}

struct Rig {
    sim: Sim,
    bus: Bus,
    phys: Phys,
    drv: BlkDriver<'static, SimKernel, Bus>,
    el: EventLoop<SimTransport>,
    req: BlkReqProducer<'static>,
    resp: BlkRespConsumer<'static>,
    info: StorageInfoReader<'static>,
    /// The client's raw queue views (to misbehave).
    raw: QueueMem<'static>,
    /// The client's view of the data region.
    data: SharedRegion,
    log: Vec<Invocation>,
    /// The serial driver's end of the driver's TX queue (its messages).
    out: SerialConsumer<'static>,
    text: String,
    /// The driver's TX queue regions (a restarted driver maps them again).
    tx_regions: (SharedRegion, SharedRegion),
}

impl Rig {
    fn new() -> Rig {
        Rig::with(Opts::default())
    }

    fn with(o: Opts) -> Rig {
        let sim = sim();
        let scope = sim.scope();
        assert_eq!(scope.map("blk_dma").unwrap().size as usize, DMA_SIZE);
        assert_eq!(scope.map("blk_data_vmm").unwrap().size as usize, DATA_SIZE);
        let phys = Phys::new(DMA_SIZE, DATA_SIZE);
        let bus = if o.present {
            let bus = Bus::with_disk_ro(
                phys,
                o.slot,
                o.disk_units * UNIT,
                o.mode,
                o.config,
                o.read_only,
            );
            bus.with(|m| {
                m.read_hook = o.read_hook;
                m.write_hook = o.write_hook;
            });
            bus
        } else {
            Bus::empty()
        };
        let region = |n: &str| sim.region(n).expect("blk_driver maps it");
        let (rq, rs, inf) = (
            region("blk_req_queue_blk_virt"),
            region("blk_resp_queue_blk_virt"),
            region("blk_storage_info_blk_virt"),
        );
        let raw = QueueMem::from_regions(
            Ok(Sim::alias(&rq)),
            Ok(Sim::alias(&rs)),
            Ok(Sim::alias(&inf)),
        )
        .unwrap();
        let mem = QueueMem::from_regions(Ok(rq), Ok(rs), Ok(inf)).unwrap();
        let (th, td) = (
            region("serial_tx_queue_blk_driver"),
            region("serial_tx_data_blk_driver"),
        );
        let (oh, od) = (
            Sim::alias(&th).into_atomic_words().unwrap(),
            Sim::alias(&td).into_atomic_bytes().unwrap(),
        );
        let out = SerialConsumer::new(oh, od, od.len() as u32).unwrap();
        let tx_regions = (Sim::alias(&th), Sim::alias(&td));
        let console = Console::from_regions(system::SERIAL_DRIVER, Ok(th), Ok(td));
        assert_eq!(console.unusable(), None);
        let mut drv = BlkDriver::new(
            sim.kernel(),
            console,
            bus.clone(),
            REGS,
            Some(phys.dma_region()),
            DMA_PADDR,
            PhysWindow {
                paddr: phys.data_paddr(),
                size: DATA_SIZE as u64,
            },
            Some(mem),
        );
        let mut el = sim.event_loop();
        el.start();
        let serial = Invocation::Notify(system::SERIAL_DRIVER.index());
        let log: Vec<_> = sim
            .take_log()
            .into_iter()
            .filter(|i| *i != serial)
            .collect();
        // The driver announces its first life to the client, then the loop acks the IRQ.
        assert_eq!(
            log,
            vec![
                Invocation::Notify(CLIENT.index()),
                Invocation::IrqAck(IRQ_CHANNEL.index())
            ]
        );
        assert_eq!(drv.generation(), 1);
        // The client (this rig) acknowledges it, as the VMM does on the notification.
        let mut sync = ClientSync::new(raw.info).unwrap();
        assert_eq!(sync.pending(), Some(1));
        if o.acknowledge {
            sync.acknowledge(1);
            sim.notify_from_peer(CLIENT);
            el.step(&mut drv);
            sim.take_log();
        }
        Rig {
            req: BlkReqProducer::new(raw.req, QUEUE_CAPACITY).unwrap(),
            resp: BlkRespConsumer::new(raw.resp, QUEUE_CAPACITY).unwrap(),
            info: StorageInfoReader::new(raw.info).unwrap(),
            sim,
            bus,
            phys,
            drv,
            el,
            raw,
            data: phys.data_region(),
            log: vec![],
            out,
            text: String::new(),
            tx_regions,
        }
    }

    /// The driver crashed and its monitor restarted it: a new driver over the same memory and
    /// device (its stack state gone), as `from_system` builds it after a restart.
    fn restart(&mut self) {
        let console = Console::from_regions(
            system::SERIAL_DRIVER,
            Ok(Sim::alias(&self.tx_regions.0)),
            Ok(Sim::alias(&self.tx_regions.1)),
        );
        self.drv = BlkDriver::new(
            self.sim.kernel(),
            console,
            self.bus.clone(),
            REGS,
            Some(self.phys.dma_region()),
            DMA_PADDR,
            PhysWindow {
                paddr: self.phys.data_paddr(),
                size: DATA_SIZE as u64,
            },
            Some(self.raw),
        );
        self.el = self.sim.event_loop();
        self.el.start();
        self.log.extend(self.sim.take_log());
    }

    /// Everything the driver printed so far (through the serial driver).
    fn text(&mut self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.out.dequeue_into(&mut buf).unwrap();
        self.text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        self.text.clone()
    }

    fn step(&mut self) {
        self.el.step(&mut self.drv);
        self.log.extend(self.sim.take_log());
    }

    /// Enqueues `reqs` and notifies once.
    fn submit(&mut self, reqs: &[BlkReq]) {
        for r in reqs {
            self.req.enqueue(r).unwrap();
        }
        if self.req.take_notify() {
            self.sim.notify_from_peer(CLIENT);
            self.step();
        }
    }

    /// Delivers the device's interrupts (and deferred completions) until it is quiet.
    fn run(&mut self) {
        for _ in 0..1000 {
            if self.bus.take_irq() {
                self.sim.irq(IRQ_CHANNEL);
                self.step();
                continue;
            }
            if self.bus.0.borrow().is_some() && self.bus.complete_one() {
                continue;
            }
            return;
        }
        panic!("the device never went quiet");
    }

    fn responses(&mut self) -> Vec<BlkResp> {
        let mut v = vec![];
        while let Some(r) = self.resp.dequeue().unwrap() {
            v.push(r);
        }
        v
    }

    fn io(&mut self, reqs: &[BlkReq]) -> Vec<BlkResp> {
        self.submit(reqs);
        self.run();
        self.responses()
    }

    fn notifies(&self) -> usize {
        self.log
            .iter()
            .filter(|i| **i == Invocation::Notify(CLIENT.index()))
            .count()
    }

    fn irq_acks(&self) -> usize {
        let ack = Invocation::Signal {
            slot: slot::BASE_IRQ + IRQ_CHANNEL.index() as u64,
            label: LABELS.irq_ack_irq,
        };
        self.log.iter().filter(|i| **i == ack).count()
    }

    fn fill(&self, offset: usize, len: usize, seed: u8) -> Vec<u8> {
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 12) as u8)
            .collect();
        self.data.write(offset, &bytes).unwrap();
        bytes
    }

    fn read_data(&self, offset: usize, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.data.read(offset, &mut b).unwrap();
        b
    }

    /// No scope violation, no register access the transport refused, device not broken.
    fn check_clean(&self) {
        assert!(
            self.sim.violations().is_empty(),
            "{:?}",
            self.sim.violations()
        );
        if self.bus.0.borrow().is_some() {
            self.bus.with(|m| {
                assert!(m.refused.is_empty(), "refused: {:x?}", m.refused);
                assert_eq!(m.t.state(), ModelState::Live);
                assert_eq!(m.t.stats().needs_reset, 0);
                assert_eq!(m.t.device().stats().bad_chains, 0);
            });
        }
        assert!(!self.log.iter().any(|i| matches!(i, Invocation::IrqAck(_))));
    }
}

fn read(off: usize, block: u64, count: u16, id: u32) -> BlkReq {
    BlkReq::new(BlkReqCode::READ, off as u64, block, count, id)
}
fn write(off: usize, block: u64, count: u16, id: u32) -> BlkReq {
    BlkReq::new(BlkReqCode::WRITE, off as u64, block, count, id)
}
fn ok(count: u16, id: u32) -> BlkResp {
    BlkResp::new(BlkRespStatus::OK, count, id)
}
fn err(s: BlkRespStatus, id: u32) -> BlkResp {
    BlkResp::new(s, 0, id)
}

#[test]
fn init_reaches_driver_ok_with_version_1_and_publishes_storage_info() {
    let mut rig = Rig::with(Opts {
        disk_units: 100,
        ..Opts::default()
    });
    rig.bus.with(|m| {
        assert_eq!(m.t.state(), ModelState::Live);
        let st = u32::from(m.t.status());
        assert_eq!(
            st,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK
        );
        let f = m.t.acked_features();
        assert_ne!(f & virtio::feature::VERSION_1, 0, "VERSION_1 negotiated");
        assert_ne!(f & virtio::feature::FLUSH, 0);
        assert_ne!(f & virtio::feature::BLK_SIZE, 0);
        assert_eq!(
            f & !virtio::feature::ACCEPTED,
            0,
            "nothing unknown accepted"
        );
        let q = &m.t.queues()[0];
        assert!(q.ready());
        assert_eq!(q.size(), virtio::QUEUE_SIZE_MAX);
        assert_eq!(q.desc_table(), DMA_PADDR + virtio::layout::DESC as u64);
        assert_eq!(q.avail_ring(), DMA_PADDR + virtio::layout::AVAIL as u64);
        assert_eq!(q.used_ring(), DMA_PADDR + virtio::layout::USED as u64);
        // The handshake order of §3.1.1.
        let statuses: Vec<u32> = m
            .writes
            .iter()
            .filter(|(o, _)| *o == virtio::reg::STATUS)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(statuses, vec![0, 1, 3, 11, 15]);
    });
    let DeviceState::Live(i) = rig.drv.device_state() else {
        panic!("{:?}", rig.drv.device_state())
    };
    assert_eq!(i.slot, QEMU_SLOT);
    assert_eq!(i.capacity_sectors, 800);
    assert_eq!(i.blk_size, Some(512));
    let s = rig.info.read().expect("storage info ready");
    assert_eq!(s.capacity, 100, "capacity in 4096-byte units = MemDisk's");
    assert_eq!(s.sector_size, 512);
    assert_eq!(s.block_size, 1, "in BLK_TRANSFER_SIZE units");
    assert_eq!(s.queue_depth as usize, virtio::QUEUE_SIZE_MAX as usize / 3);
    assert_eq!(s.read_only, 0);
    assert!(
        rig.text()
            .starts_with("blk_driver: virtio-blk at slot 31 (0xa003e00): 800 sectors, features ")
    );
    assert!(
        !rig.sim.console().contains("blk_driver: virtio-blk"),
        "not on the debug console"
    );
    rig.check_clean();
}

#[test]
fn any_slot_is_found_and_blk_size_4096_is_reported() {
    let mut rig = Rig::with(Opts {
        slot: 3,
        config: BlkConfig {
            blk_size: BlkSize::B4096,
            ..BlkConfig::default()
        },
        ..Opts::default()
    });
    let DeviceState::Live(i) = rig.drv.device_state() else {
        panic!()
    };
    assert_eq!(i.slot, 3);
    assert!(
        rig.text()
            .starts_with("blk_driver: virtio-blk at slot 27 (0xa003600): "),
        "{}",
        rig.text()
    );
    assert_eq!(rig.info.read().unwrap().sector_size, 4096);
    rig.check_clean();
}

#[test]
fn small_queue_num_max_uses_a_smaller_ring() {
    let rig = Rig::with(Opts {
        config: BlkConfig {
            queue_size: 16,
            ..BlkConfig::default()
        },
        ..Opts::default()
    });
    rig.bus.with(|m| assert_eq!(m.t.queues()[0].size(), 16));
    assert_eq!(rig.info.read().unwrap().queue_depth, 5);
    rig.check_clean();
}

#[test]
fn write_then_read_one_unit_round_trips_through_the_data_region() {
    let mut rig = Rig::new();
    let bytes = rig.fill(0x3000, UNIT, 0x5a);
    assert_eq!(rig.io(&[write(0x3000, 7, 1, 11)]), vec![ok(1, 11)]);
    assert_eq!(&rig.bus.disk()[7 * UNIT..8 * UNIT], &bytes[..]);
    rig.data.write(0x8000, &[0u8; UNIT]).unwrap();
    assert_eq!(rig.io(&[read(0x8000, 7, 1, 12)]), vec![ok(1, 12)]);
    assert_eq!(rig.read_data(0x8000, UNIT), bytes);
    assert_eq!(rig.notifies(), 2, "one notification per batch");
    // The IRQ ack is deferred: it rides on the receive after the interrupt's event.
    assert_eq!(rig.irq_acks(), 1);
    rig.sim.notify_from_peer(CLIENT);
    rig.step();
    assert_eq!(rig.irq_acks(), 2, "each interrupt acknowledged once");
    assert_eq!(rig.notifies(), 2, "no responses, no notification");
    rig.bus
        .with(|m| assert_eq!(m.t.interrupt_status(), 0, "InterruptStatus acked"));
    rig.check_clean();
}

#[test]
fn sixteen_units_round_trip() {
    let mut rig = Rig::new();
    let bytes = rig.fill(0x10000, 16 * UNIT, 0x33);
    assert_eq!(rig.io(&[write(0x10000, 40, 16, 1)]), vec![ok(16, 1)]);
    assert_eq!(&rig.bus.disk()[40 * UNIT..56 * UNIT], &bytes[..]);
    rig.data.write(0x40000, &vec![0u8; 16 * UNIT]).unwrap();
    assert_eq!(rig.io(&[read(0x40000, 40, 16, 2)]), vec![ok(16, 2)]);
    assert_eq!(rig.read_data(0x40000, 16 * UNIT), bytes);
    // The last unit of the disk, from the last unit of the data region.
    let last = DATA_SIZE - UNIT;
    let b = rig.fill(last, UNIT, 9);
    assert_eq!(rig.io(&[write(last, 63, 1, 3)]), vec![ok(1, 3)]);
    assert_eq!(&rig.bus.disk()[63 * UNIT..], &b[..]);
    rig.check_clean();
}

#[test]
fn flush_reaches_the_device() {
    let mut rig = Rig::new();
    let r = rig.io(&[BlkReq::new(BlkReqCode::FLUSH, 0, 0, 0, 77)]);
    assert_eq!(r, vec![ok(0, 77)]);
    rig.bus
        .with(|m| assert_eq!(m.t.device().backend().stats.flushes, 1));
    rig.check_clean();
}

#[test]
fn several_requests_in_flight_complete_with_their_ids() {
    let mut rig = Rig::with(Opts {
        mode: CompletionMode::Deferred,
        ..Opts::default()
    });
    let a = rig.fill(0, 2 * UNIT, 1);
    let b = rig.fill(2 * UNIT, UNIT, 2);
    let reqs = [
        write(0, 0, 2, 100),
        write(2 * UNIT, 10, 1, 200),
        BlkReq::new(BlkReqCode::FLUSH, 0, 0, 0, 300),
        read(0x20000, 0, 2, 400),
        read(0x30000, 10, 1, 500),
    ];
    rig.submit(&reqs);
    assert_eq!(rig.drv.stats().submitted, 5, "all five chains handed over");
    rig.bus
        .with(|m| assert_eq!(m.t.stats().notifies, 1, "one QueueNotify per batch"));
    assert!(rig.responses().is_empty(), "nothing completed yet");
    rig.run();
    let mut r = rig.responses();
    r.sort_by_key(|r| r.id);
    assert_eq!(
        r,
        vec![ok(2, 100), ok(1, 200), ok(0, 300), ok(2, 400), ok(1, 500)]
    );
    assert_eq!(rig.read_data(0x20000, 2 * UNIT), a);
    assert_eq!(rig.read_data(0x30000, UNIT), b);
    rig.check_clean();
}

#[test]
fn more_requests_than_slots_wait_and_all_complete() {
    // Queue size 8: two request slots.
    let mut rig = Rig::with(Opts {
        config: BlkConfig {
            queue_size: 8,
            ..BlkConfig::default()
        },
        mode: CompletionMode::Deferred,
        ..Opts::default()
    });
    let reqs: Vec<BlkReq> = (0..10u32)
        .map(|i| write(i as usize * UNIT, u64::from(i), 1, i))
        .collect();
    let mut expect = vec![0u8; 64 * UNIT];
    for i in 0..10 {
        let b = rig.fill(i * UNIT, UNIT, i as u8);
        expect[i * UNIT..(i + 1) * UNIT].copy_from_slice(&b);
    }
    rig.submit(&reqs);
    assert_eq!(rig.drv.stats().submitted, 2);
    rig.run();
    let mut r = rig.responses();
    r.sort_by_key(|r| r.id);
    assert_eq!(r, (0..10).map(|i| ok(1, i)).collect::<Vec<_>>());
    assert_eq!(rig.bus.disk(), expect);
    rig.check_clean();
}

#[test]
fn out_of_range_requests_are_refused_and_the_device_is_untouched() {
    let mut rig = Rig::new();
    let before = rig.bus.with(|m| m.t.stats().notifies);
    let inv = BlkRespStatus::ERR_INVALID_PARAM;
    let r = rig.io(&[
        read(0, 64, 1, 1),                            // past the disk
        read(0, 60, 5, 2),                            // crosses the end of the disk
        read(0, u64::MAX, 2, 3),                      // block number overflow
        write(DATA_SIZE - UNIT, 0, 2, 4),             // crosses the end of the data region
        write(DATA_SIZE, 0, 1, 5),                    // past the data region
        read(u64::MAX as usize - 10, 0, 1, 6),        // offset overflow
        read(0, 0, 0, 7),                             // no blocks
        BlkReq::new(BlkReqCode::BARRIER, 0, 0, 0, 8), // nothing in flight: OK
    ]);
    assert_eq!(
        r,
        vec![
            err(inv, 1),
            err(inv, 2),
            err(inv, 3),
            err(inv, 4),
            err(inv, 5),
            err(inv, 6),
            err(inv, 7),
            ok(0, 8)
        ]
    );
    rig.bus.with(|m| {
        assert_eq!(m.t.stats().notifies, before, "no QueueNotify");
        let s = m.t.device().backend().stats;
        assert_eq!((s.reads, s.writes), (0, 0));
    });
    assert_eq!(rig.notifies(), 1);
    // Refused by the driver's own checks, not by the virtqueue's address check behind them.
    assert_eq!(rig.drv.stats().device_errors, 0);
    assert!(!rig.text().contains("failed"), "{}", rig.text());
    rig.check_clean();
}

#[test]
fn unknown_code_is_an_invalid_parameter() {
    let mut rig = Rig::new();
    let r = rig.io(&[
        BlkReq::new(BlkReqCode(4), 0, 0, 1, 9),
        BlkReq::new(BlkReqCode(u32::MAX), 0, 0, 1, 10),
    ]);
    assert_eq!(
        r,
        vec![
            err(BlkRespStatus::ERR_INVALID_PARAM, 9),
            err(BlkRespStatus::ERR_INVALID_PARAM, 10)
        ]
    );
    rig.check_clean();
}

#[test]
fn device_io_error_becomes_err_io() {
    let mut rig = Rig::new();
    rig.bus
        .with(|m| m.t.device_mut().backend_mut().fail_blocks = Some(5..6));
    let r = rig.io(&[read(0, 4, 2, 1), read(0, 6, 1, 2)]);
    assert_eq!(r, vec![err(BlkRespStatus::ERR_IO, 1), ok(1, 2)]);
    assert_eq!(rig.drv.stats().io_errors, 1);
    // The failing request in the second slot: its own status byte is read.
    let r = rig.io(&[read(0, 6, 1, 3), read(UNIT, 5, 1, 4)]);
    assert_eq!(r, vec![ok(1, 3), err(BlkRespStatus::ERR_IO, 4)]);
    assert_eq!(rig.drv.stats().io_errors, 2);
    rig.check_clean();
}

#[test]
fn corrupt_request_indices_are_a_typed_error_and_service_goes_on() {
    let mut rig = Rig::new();
    // The client's tail jumps far beyond its head.
    rig.raw.req[1].store(1000, Ordering::Release);
    rig.sim.notify_from_peer(CLIENT);
    rig.step();
    // Reported through the serial driver domain (the event loop hands the error to the PD's
    // own output), not on the kernel's debug console.
    let text = rig.text();
    assert!(
        text.contains("blk_driver: notified handler failed: Request queue corrupted by the client"),
        "{text}"
    );
    assert_eq!(rig.sim.console(), "");
    assert_eq!(rig.drv.stats().queue_errors, 1);
    assert_eq!(rig.responses(), vec![]);
    // The client repairs its index: service resumes.
    rig.raw.req[1].store(0, Ordering::Release);
    let b = rig.fill(0, UNIT, 4);
    assert_eq!(rig.io(&[write(0, 1, 1, 5)]), vec![ok(1, 5)]);
    assert_eq!(&rig.bus.disk()[UNIT..2 * UNIT], &b[..]);
    // A corrupt response queue head.
    rig.raw.resp[0].store(0x8000_0000, Ordering::Release);
    rig.submit(&[read(0, 1, 1, 6)]);
    rig.run();
    assert!(
        rig.text().contains(
            "blk_driver: notified handler failed: Response queue corrupted by the client"
        )
    );
    assert_eq!(rig.sim.console(), "");
    assert!(rig.drv.stats().queue_errors >= 2);
    rig.check_clean();
}

#[test]
fn no_device_leaves_info_not_ready_and_answers_no_device() {
    let mut rig = Rig::with(Opts {
        present: false,
        ..Opts::default()
    });
    assert_eq!(
        rig.drv.device_state(),
        DeviceState::Absent(InitError::NoDevice { legacy_slot: None })
    );
    assert!(!rig.info.is_ready());
    assert!(rig.info.read().is_none());
    let r = rig.io(&[
        read(0, 0, 1, 1),
        write(0, 0, 1, 2),
        BlkReq::new(BlkReqCode::FLUSH, 0, 0, 0, 3),
    ]);
    let nd = BlkRespStatus::ERR_NO_DEVICE;
    assert_eq!(r, vec![err(nd, 1), err(nd, 2), err(nd, 3)]);
    assert!(
        rig.text()
            .starts_with("blk_driver: no usable virtio-blk device")
    );
    rig.check_clean();
}

#[test]
fn hostile_device_used_index_fails_requests_instead_of_hanging() {
    let mut rig = Rig::with(Opts {
        mode: CompletionMode::Deferred,
        ..Opts::default()
    });
    rig.submit(&[read(0, 0, 1, 1), read(0, 1, 1, 2)]);
    // The device's used index jumps by more than the queue size.
    rig.phys
        .dma_region()
        .write_u32(virtio::layout::USED, 0x0400 << 16)
        .unwrap();
    rig.sim.irq(IRQ_CHANNEL);
    rig.step();
    let r = rig.responses();
    assert_eq!(
        r,
        vec![err(BlkRespStatus::ERR_IO, 1), err(BlkRespStatus::ERR_IO, 2)]
    );
    assert!(matches!(rig.drv.device_state(), DeviceState::Failed(_)));
    assert!(!rig.info.is_ready());
    assert_eq!(rig.drv.stats().device_errors, 1);
    rig.bus
        .with(|m| assert_eq!(last_write(&m.writes, virtio::reg::STATUS), 0, "reset"));
    // Later requests are answered too.
    rig.submit(&[read(0, 0, 1, 3)]);
    assert_eq!(rig.responses(), vec![err(BlkRespStatus::ERR_IO, 3)]);
    assert!(rig.sim.violations().is_empty());
}

#[derive(Debug, Clone)]
enum Req {
    Read { block: u64, count: u16 },
    Write { block: u64, count: u16, seed: u8 },
    Flush,
    Bad { code: u32 },
    OutOfDisk { count: u16 },
}

fn arb_req() -> impl Strategy<Value = Req> {
    prop_oneof![
        4 => (0u64..64, 1u16..=8).prop_map(|(block, count)| Req::Read { block, count }),
        4 => (0u64..64, 1u16..=8, any::<u8>())
            .prop_map(|(block, count, seed)| Req::Write { block, count, seed }),
        1 => Just(Req::Flush),
        1 => (4u32..1000).prop_map(|code| Req::Bad { code }),
        1 => (1u16..=4).prop_map(|count| Req::OutOfDisk { count }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_batches_match_a_byte_array_disk(
        batches in proptest::collection::vec(proptest::collection::vec(arb_req(), 1..12), 1..5),
        deferred in any::<bool>(),
    ) {
        let mode = if deferred { CompletionMode::Deferred } else { CompletionMode::Immediate };
        let mut rig = Rig::with(Opts { mode, ..Opts::default() });
        let mut disk = vec![0u8; 64 * UNIT];
        let mut id = 0u32;
        for batch in batches {
            // Disjoint buffers within a batch; the device works in ring order, so the model is
            // the batch applied in order.
            let mut off = 0usize;
            let mut reqs = vec![];
            let mut expect = vec![];
            let mut reads = vec![];
            for r in &batch {
                id += 1;
                let (req, resp) = match *r {
                    Req::Read { block, count } => {
                        let n = usize::from(count) * UNIT;
                        let in_range = block + u64::from(count) <= 64;
                        if in_range {
                            let b0 = block as usize * UNIT;
                            reads.push((off, disk[b0..b0 + n].to_vec()));
                        }
                        let req = read(off, block, count, id);
                        off += n;
                        (req, if in_range { ok(count, id) } else { err(BlkRespStatus::ERR_INVALID_PARAM, id) })
                    }
                    Req::Write { block, count, seed } => {
                        let n = usize::from(count) * UNIT;
                        let bytes = rig.fill(off, n, seed);
                        let in_range = block + u64::from(count) <= 64;
                        if in_range {
                            let b0 = block as usize * UNIT;
                            disk[b0..b0 + n].copy_from_slice(&bytes);
                        }
                        let req = write(off, block, count, id);
                        off += n;
                        (req, if in_range { ok(count, id) } else { err(BlkRespStatus::ERR_INVALID_PARAM, id) })
                    }
                    Req::Flush => (BlkReq::new(BlkReqCode::FLUSH, 0, 0, 0, id), ok(0, id)),
                    Req::Bad { code } => (
                        BlkReq::new(BlkReqCode(code), 0, 0, 1, id),
                        err(BlkRespStatus::ERR_INVALID_PARAM, id),
                    ),
                    Req::OutOfDisk { count } => (
                        read(0, 64 - u64::from(count) + 1, count, id),
                        err(BlkRespStatus::ERR_INVALID_PARAM, id),
                    ),
                };
                reqs.push(req);
                expect.push(resp);
            }
            let mut got = rig.io(&reqs);
            got.sort_by_key(|r| r.id);
            prop_assert_eq!(got, expect);
            for (off, bytes) in reads {
                prop_assert_eq!(rig.read_data(off, bytes.len()), bytes);
            }
            prop_assert_eq!(rig.bus.disk(), disk.clone());
        }
        rig.check_clean();
    }
}

#[test]
fn barrier_waits_for_requests_in_flight() {
    let mut rig = Rig::with(Opts {
        mode: CompletionMode::Deferred,
        ..Opts::default()
    });
    rig.fill(0, UNIT, 1);
    rig.submit(&[
        write(0, 0, 1, 1),
        BlkReq::new(BlkReqCode::BARRIER, 0, 0, 0, 2),
        read(UNIT, 0, 1, 3),
    ]);
    assert_eq!(
        rig.drv.stats().submitted,
        1,
        "nothing passes the barrier yet"
    );
    rig.run();
    assert_eq!(rig.responses(), vec![ok(1, 1), ok(0, 2), ok(1, 3)]);
    assert_eq!(rig.read_data(UNIT, UNIT), rig.read_data(0, UNIT));
    rig.check_clean();
}

#[test]
fn the_probe_stays_in_the_mapped_page() {
    // A device in the next page (transport 32 would be 0xa004000: not mapped) is not found,
    // and the probe never touched anything past the page.
    let rig = Rig::with(Opts {
        slot: support::WINDOW / virtio::SLOT_SIZE,
        ..Opts::default()
    });
    assert_eq!(
        rig.drv.device_state(),
        DeviceState::Absent(InitError::NoDevice { legacy_slot: None })
    );
    rig.bus
        .with(|m| assert!(m.refused.is_empty(), "outside the page: {:x?}", m.refused));
    // The page system.xml maps holds QEMU's transport 31.
    assert_eq!(
        REGS.paddr + (QEMU_SLOT * virtio::SLOT_SIZE) as u64,
        0x0a00_3e00
    );
    assert_eq!(REGS.size as usize, support::WINDOW);
}

/// A live device in its slot, driven directly (below the driver's request checks).
fn live_virtio() -> (Bus, Phys, virtio::VirtioBlk<Bus>) {
    let phys = Phys::new(DMA_SIZE, DATA_SIZE);
    let bus = Bus::with_disk(
        phys,
        QEMU_SLOT,
        64 * UNIT,
        CompletionMode::Immediate,
        BlkConfig::default(),
    );
    let data = PhysWindow {
        paddr: phys.data_paddr(),
        size: DATA_SIZE as u64,
    };
    let d = virtio::VirtioBlk::init(bus.clone(), 8, phys.dma_region(), DMA_PADDR, data)
        .map_err(|(_, e)| e)
        .expect("live");
    (bus, phys, d)
}

fn dma_bytes(phys: &Phys) -> Vec<u8> {
    let mut b = vec![0u8; DMA_SIZE];
    phys.dma_region().read(0, &mut b).unwrap();
    b
}

#[test]
fn descriptors_outside_the_dma_and_data_regions_are_refused_before_the_device_sees_them() {
    let (bus, phys, mut d) = live_virtio();
    assert_eq!(
        d.windows().data.windows(),
        &[PhysWindow {
            paddr: phys.data_paddr(),
            size: DATA_SIZE as u64
        }]
    );
    let end = phys.data_paddr() + DATA_SIZE as u64;
    let u = UNIT as u32;
    let dma_before = dma_bytes(&phys);
    let notifies = bus.with(|m| m.t.stats().notifies);
    for (paddr, len) in [
        (end - UNIT as u64, 2 * u),   // leaves the data region
        (end, u),                     // just past it
        (0x4000_0000, u),             // guest RAM (or anything else)
        (DMA_PADDR - UNIT as u64, u), // just below the DMA region
        (DMA_PADDR - 8, 16),          // straddles its start
        (u64::MAX - 100, u),          // wraps
        (phys.data_paddr(), 0),       // empty
    ] {
        for op in [
            virtio::Op::Read {
                sector: 0,
                paddr,
                len,
            },
            virtio::Op::Write {
                sector: 0,
                paddr,
                len,
            },
        ] {
            assert_eq!(
                d.submit(0, op),
                Err(virtio::DeviceError::OutsideDma {
                    addr: paddr,
                    len: u64::from(len)
                }),
                "{op:?}"
            );
        }
    }
    assert_eq!(d.in_flight(), 0);
    d.publish().unwrap();
    // Nothing of a refused chain was written: no header, descriptor, status or ring entry; the
    // device was not notified and read nothing.
    assert!(dma_bytes(&phys) == dma_before, "the DMA region changed");
    assert_eq!(bus.with(|m| m.t.stats().notifies), notifies);
    assert_eq!(bus.disk(), vec![0u8; 64 * UNIT]);
    // The last unit of the data region is inside: it reaches the device.
    phys.data_region()
        .write(DATA_SIZE - UNIT, &[0x5a; UNIT])
        .unwrap();
    d.submit(
        0,
        virtio::Op::Write {
            sector: 8,
            paddr: end - UNIT as u64,
            len: u,
        },
    )
    .unwrap();
    d.publish().unwrap();
    assert_eq!(&bus.disk()[UNIT..2 * UNIT], &[0x5a; UNIT][..]);
}

#[test]
fn a_request_leaving_the_data_region_never_reaches_the_virtqueue() {
    let mut rig = Rig::new();
    let dma_before = dma_bytes(&rig.phys);
    let r = rig.io(&[write(DATA_SIZE - UNIT, 0, 2, 1), read(DATA_SIZE, 0, 1, 2)]);
    assert_eq!(
        r,
        vec![
            err(BlkRespStatus::ERR_INVALID_PARAM, 1),
            err(BlkRespStatus::ERR_INVALID_PARAM, 2)
        ]
    );
    assert_eq!(rig.drv.stats().submitted, 0);
    assert!(dma_bytes(&rig.phys) == dma_before, "the virtqueue changed");
    rig.check_clean();
}

// ---- Set-up against devices and buses that misbehave (register hooks, `tests/support`). ----

/// The window offset of register `reg` of the device in QEMU's slot.
fn at(reg: usize) -> usize {
    QEMU_SLOT * virtio::SLOT_SIZE + reg
}

/// A device offering its features without `strip` and with `add`.
fn offer(strip: u64, add: u64) -> ReadHook {
    Box::new(move |off, v, writes| {
        if off != at(virtio::reg::DEVICE_FEATURES) {
            return v;
        }
        let shift = if last_write(writes, virtio::reg::DEVICE_FEATURES_SEL) == 0 {
            0
        } else {
            32
        };
        (v & !((strip >> shift) as u32)) | (add >> shift) as u32
    })
}

/// A device whose Status reads change once the driver has written DRIVER_OK: `f` of the value.
fn status_after_driver_ok(f: fn(u32) -> u32) -> ReadHook {
    Box::new(move |off, v, writes| {
        if off == at(virtio::reg::STATUS)
            && last_write(writes, virtio::reg::STATUS) & status::DRIVER_OK != 0
        {
            f(v)
        } else {
            v
        }
    })
}

fn hooked(read_hook: ReadHook) -> Rig {
    Rig::with(Opts {
        read_hook: Some(read_hook),
        ..Opts::default()
    })
}

/// The set-up failed with `e`, and the driver set FAILED on top of the Status it read last.
fn assert_failed_at_setup(rig: &Rig, e: InitError, last_status: u32) {
    assert_eq!(rig.drv.device_state(), DeviceState::Absent(e));
    assert!(!rig.info.is_ready());
    rig.bus.with(|m| {
        assert_eq!(
            last_write(&m.writes, virtio::reg::STATUS),
            last_status | status::FAILED
        )
    });
}

#[test]
fn a_device_without_version_1_is_refused() {
    let mut rig = hooked(offer(virtio::feature::VERSION_1, 0));
    assert_failed_at_setup(&rig, InitError::NoVersion1, 3);
    let r = rig.io(&[read(0, 0, 1, 1)]);
    assert_eq!(r, vec![err(BlkRespStatus::ERR_NO_DEVICE, 1)]);
    assert_eq!(rig.drv.stats().no_device, 1);
}

#[test]
fn features_ok_that_does_not_stick_is_refused() {
    let rig = hooked(Box::new(|off, v, _| {
        if off == at(virtio::reg::STATUS) {
            v & !status::FEATURES_OK
        } else {
            v
        }
    }));
    assert_failed_at_setup(&rig, InitError::FeaturesRefused, 3);
}

#[test]
fn driver_ok_must_stick_without_needs_reset_or_failed() {
    let d = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
    // DRIVER_OK does not read back.
    let rig = hooked(status_after_driver_ok(|v| v & !status::DRIVER_OK));
    let s = d & !status::DRIVER_OK;
    assert_failed_at_setup(&rig, InitError::DeviceFailed(s), s);
    // DRIVER_OK with DEVICE_NEEDS_RESET.
    let rig = hooked(status_after_driver_ok(|v| v | status::DEVICE_NEEDS_RESET));
    let s = d | status::DEVICE_NEEDS_RESET;
    assert_failed_at_setup(&rig, InitError::DeviceFailed(s), s);
    // DRIVER_OK with FAILED: FAILED stays set in the driver's last write.
    let rig = hooked(status_after_driver_ok(|v| v | status::FAILED));
    let s = d | status::FAILED;
    assert_failed_at_setup(&rig, InitError::DeviceFailed(s), s);
}

#[test]
fn a_queue_already_live_or_too_small_is_refused() {
    let rig = hooked(Box::new(|off, v, _| {
        if off == at(virtio::reg::QUEUE_READY) {
            1
        } else {
            v
        }
    }));
    assert_failed_at_setup(
        &rig,
        InitError::QueueUnavailable {
            max: u32::from(BlkConfig::default().queue_size),
        },
        3 | status::FEATURES_OK,
    );
    // Three descriptors cannot hold a request with its data.
    let rig = hooked(Box::new(|off, v, _| {
        if off == at(virtio::reg::QUEUE_NUM_MAX) {
            3
        } else {
            v
        }
    }));
    assert_failed_at_setup(
        &rig,
        InitError::QueueUnavailable { max: 3 },
        3 | status::FEATURES_OK,
    );
}

#[test]
fn a_queue_of_four_serves_one_request_at_a_time() {
    let mut rig = Rig::with(Opts {
        config: BlkConfig {
            queue_size: 4,
            ..BlkConfig::default()
        },
        mode: CompletionMode::Deferred,
        ..Opts::default()
    });
    assert!(rig.drv.device_live());
    rig.bus.with(|m| assert_eq!(m.t.queues()[0].size(), 4));
    assert_eq!(rig.info.read().unwrap().queue_depth, 1);
    let b = rig.fill(0, UNIT, 3);
    rig.submit(&[write(0, 2, 1, 1), read(UNIT, 2, 1, 2)]);
    assert_eq!(rig.drv.stats().submitted, 1);
    rig.run();
    assert_eq!(rig.responses(), vec![ok(1, 1), ok(1, 2)]);
    assert_eq!(rig.read_data(UNIT, UNIT), b);
    rig.check_clean();
}

#[test]
fn the_dma_region_must_hold_the_whole_layout_and_no_more() {
    let data = |phys: &Phys| PhysWindow {
        paddr: phys.data_paddr(),
        size: DATA_SIZE as u64,
    };
    // Exactly layout::SIZE: enough.
    let phys = Phys::new(virtio::layout::SIZE, DATA_SIZE);
    let bus = Bus::with_disk(
        phys,
        QEMU_SLOT,
        64 * UNIT,
        CompletionMode::Immediate,
        BlkConfig::default(),
    );
    let r = virtio::VirtioBlk::init(bus, 8, phys.dma_region(), DMA_PADDR, data(&phys));
    assert!(r.is_ok(), "{:?}", r.err().map(|(_, e)| e));
    // One page less: refused before the device is touched (only FAILED is written).
    let phys = Phys::new(virtio::layout::SIZE - UNIT, DATA_SIZE);
    let bus = Bus::with_disk(
        phys,
        QEMU_SLOT,
        64 * UNIT,
        CompletionMode::Immediate,
        BlkConfig::default(),
    );
    let r = virtio::VirtioBlk::init(bus.clone(), 8, phys.dma_region(), DMA_PADDR, data(&phys));
    assert_eq!(
        r.err().map(|(_, e)| e),
        Some(InitError::DmaTooSmall(virtio::layout::SIZE - UNIT))
    );
    bus.with(|m| assert_eq!(m.writes, vec![(virtio::reg::STATUS, status::FAILED)]));
}

#[test]
fn the_probe_skips_other_devices_and_reports_legacy_block_transports() {
    // A version-2 console (DeviceID 3) in slot 2 comes first: skipped.
    let rig = hooked(Box::new(|off, v, _| {
        match (off / virtio::SLOT_SIZE, off % virtio::SLOT_SIZE) {
            (2, virtio::reg::MAGIC_VALUE) => virtio::MAGIC,
            (2, virtio::reg::VERSION) => 2,
            (2, virtio::reg::DEVICE_ID) => 3,
            _ => v,
        }
    }));
    let DeviceState::Live(i) = rig.drv.device_state() else {
        panic!("{:?}", rig.drv.device_state())
    };
    assert_eq!(i.slot, QEMU_SLOT);
    // Legacy (version 1) block transports in slots 4 and 7: none usable, the first reported.
    let rig = hooked(Box::new(|off, v, _| {
        match (off / virtio::SLOT_SIZE, off % virtio::SLOT_SIZE) {
            (4, virtio::reg::MAGIC_VALUE) => virtio::MAGIC,
            (4 | QEMU_SLOT, virtio::reg::VERSION) => 1,
            (4, virtio::reg::DEVICE_ID) => virtio::DEVICE_ID_BLK,
            _ => v,
        }
    }));
    assert_eq!(
        rig.drv.device_state(),
        DeviceState::Absent(InitError::NoDevice {
            legacy_slot: Some(4)
        })
    );
}

fn live_info(rig: &Rig) -> virtio::DeviceInfo {
    match rig.drv.device_state() {
        DeviceState::Live(i) => i,
        s => panic!("{s:?}"),
    }
}

#[test]
fn capacity_is_read_as_64_bits_under_a_stable_generation() {
    // 2^32 + 512 sectors: the high half counts.
    let rig = hooked(Box::new(|off, v, _| {
        if off == at(virtio::reg::CONFIG_CAPACITY + 4) {
            1
        } else {
            v
        }
    }));
    assert_eq!(live_info(&rig).capacity_sectors, (1 << 32) + 512);
    assert_eq!(rig.drv.capacity(), ((1 << 32) + 512) / 8);
    assert_eq!(rig.info.read().unwrap().capacity, ((1 << 32) + 512) / 8);
    // A configuration generation other than 0 is not part of the capacity.
    let rig = hooked(Box::new(|off, v, _| {
        if off == at(virtio::reg::CONFIG_GENERATION) {
            5
        } else {
            v
        }
    }));
    assert_eq!(live_info(&rig).capacity_sectors, 512);
    // The configuration changes between the first generation read and the second: the
    // capacity read in between is discarded and read again.
    let mut gen_reads = 0;
    let mut cap_reads = 0;
    let rig = hooked(Box::new(move |off, v, _| {
        if off == at(virtio::reg::CONFIG_GENERATION) {
            gen_reads += 1;
            u32::from(gen_reads > 1)
        } else if off == at(virtio::reg::CONFIG_CAPACITY) {
            cap_reads += 1;
            if cap_reads == 1 { 0xdead } else { v }
        } else {
            v
        }
    }));
    assert_eq!(live_info(&rig).capacity_sectors, 512);
    assert_eq!(rig.drv.capacity(), 64);
}

#[test]
fn storage_info_follows_the_negotiated_features() {
    // A read-only disk.
    let rig = Rig::with(Opts {
        read_only: true,
        ..Opts::default()
    });
    assert_eq!(rig.info.read().unwrap().read_only, 1);
    // No VIRTIO_BLK_F_BLK_SIZE: blk_size is not read, sectors are 512 bytes.
    let rig = hooked(offer(virtio::feature::BLK_SIZE, 0));
    let i = live_info(&rig);
    assert_eq!(i.features & virtio::feature::BLK_SIZE, 0);
    assert_eq!(i.blk_size, None);
    rig.bus.with(|m| {
        assert!(!m.reads.contains(&virtio::reg::CONFIG_BLK_SIZE));
    });
    assert_eq!(rig.info.read().unwrap().sector_size, 512);
    // A blk_size that is no power of two, or outside 512..=4096: 512 is published.
    for b in [256, 1536, 3000, 8192, 65536] {
        let rig = hooked(Box::new(move |off, v, _| {
            if off == at(virtio::reg::CONFIG_BLK_SIZE) {
                b
            } else {
                v
            }
        }));
        assert_eq!(live_info(&rig).blk_size, Some(b));
        assert_eq!(rig.info.read().unwrap().sector_size, 512, "blk_size {b}");
    }
}

#[test]
fn flush_without_a_write_cache_is_answered_at_once() {
    let mut rig = hooked(offer(virtio::feature::FLUSH, 0));
    let notifies = rig.bus.with(|m| m.t.stats().notifies);
    let r = rig.io(&[BlkReq::new(BlkReqCode::FLUSH, 0, 0, 0, 7)]);
    assert_eq!(r, vec![ok(0, 7)]);
    assert_eq!(rig.drv.stats().submitted, 0);
    rig.bus.with(|m| {
        assert_eq!(m.t.stats().notifies, notifies, "the device saw nothing");
        assert_eq!(m.t.device().backend().stats.flushes, 0);
    });
    rig.check_clean();
}

#[test]
fn a_request_the_device_does_not_support_is_an_invalid_parameter() {
    // The device offers FLUSH but drops it from what the driver accepts: it answers the
    // driver's flush UNSUPP.
    let mut rig = Rig::with(Opts {
        write_hook: Some(Box::new(|off, v| {
            if off == virtio::reg::DRIVER_FEATURES {
                v & !(virtio::feature::FLUSH as u32)
            } else {
                v
            }
        })),
        ..Opts::default()
    });
    let r = rig.io(&[BlkReq::new(BlkReqCode::FLUSH, 0, 0, 0, 8)]);
    assert_eq!(r, vec![err(BlkRespStatus::ERR_INVALID_PARAM, 8)]);
    let s = rig.drv.stats();
    assert_eq!((s.submitted, s.invalid, s.io_errors), (1, 1, 0));
    rig.check_clean();
}

#[test]
fn statistics_count_every_request_and_answer() {
    let mut rig = Rig::new();
    rig.bus
        .with(|m| m.t.device_mut().backend_mut().fail_blocks = Some(9..10));
    rig.io(&[
        write(0, 0, 1, 1),                      // ok
        read(UNIT, 0, 1, 2),                    // ok
        read(0, 9, 1, 3),                       // device error
        BlkReq::new(BlkReqCode(7), 0, 0, 1, 4), // invalid
        read(0, 64, 1, 5),                      // invalid
    ]);
    rig.io(&[read(0, 1, 2, 6)]);
    assert_eq!(
        rig.drv.stats(),
        blk_driver::Stats {
            requests: 6,
            submitted: 4,
            ok: 3,
            io_errors: 1,
            invalid: 2,
            irqs: 2,
            ..blk_driver::Stats::default()
        }
    );
    rig.check_clean();
}

/// The client's response queue indices.
fn resp_indices(rig: &Rig) -> (u32, u32) {
    (
        rig.raw.resp[0].load(Ordering::Acquire),
        rig.raw.resp[1].load(Ordering::Acquire),
    )
}

#[test]
fn responses_lost_to_a_corrupt_response_queue_are_counted() {
    let mut rig = Rig::with(Opts {
        mode: CompletionMode::Deferred,
        ..Opts::default()
    });
    rig.submit(&[read(0, 0, 1, 1)]);
    // The client moves its head back, as if the queue were full: an index regression.
    let (head, tail) = resp_indices(&rig);
    assert_eq!((head, tail), (0, 0));
    rig.raw.resp[0].store(tail.wrapping_sub(QUEUE_CAPACITY), Ordering::Release);
    rig.run();
    let s = rig.drv.stats();
    assert_eq!((s.ok, s.lost_responses, s.queue_errors), (1, 1, 1));
    assert_eq!(resp_indices(&rig).1, 0, "nothing enqueued");
    // A head past the tail: lost too.
    rig.raw.resp[0].store(0x8000_0000, Ordering::Release);
    rig.submit(&[read(0, 1, 1, 2)]);
    assert_eq!(rig.drv.stats().submitted, 1, "no room promised: not taken");
    rig.raw.resp[0].store(0, Ordering::Release);
    rig.sim.notify_from_peer(CLIENT);
    rig.step();
    assert_eq!(rig.drv.stats().submitted, 2);
    rig.raw.resp[0].store(0x8000_0000, Ordering::Release);
    rig.run();
    let s = rig.drv.stats();
    assert_eq!((s.ok, s.lost_responses), (2, 2));
    assert_eq!(resp_indices(&rig).1, 0, "nothing enqueued");
}

fn bad(id: u32) -> BlkReq {
    BlkReq::new(BlkReqCode(9), 0, 0, 1, id)
}

#[test]
fn requests_wait_until_their_responses_have_room() {
    // Nothing in flight: 64 answers fill the response queue; the 65th request stays queued.
    let mut rig = Rig::new();
    rig.submit(&(1..=64).map(bad).collect::<Vec<_>>());
    assert_eq!(rig.drv.stats().requests, 64);
    rig.submit(&[bad(65)]);
    rig.sim.notify_from_peer(CLIENT);
    rig.step();
    assert_eq!(rig.drv.stats().requests, 64, "no room for its response");
    assert_eq!(rig.responses().len(), 64);
    rig.sim.notify_from_peer(CLIENT);
    rig.step();
    assert_eq!(
        rig.responses(),
        vec![err(BlkRespStatus::ERR_INVALID_PARAM, 65)]
    );
    assert_eq!(rig.drv.stats().lost_responses, 0);

    // Two reads in flight keep two entries free.
    let mut rig = Rig::with(Opts {
        mode: CompletionMode::Deferred,
        ..Opts::default()
    });
    let mut reqs = vec![read(0, 0, 1, 1), read(UNIT, 1, 1, 2)];
    reqs.extend((3..=64).map(bad));
    rig.submit(&reqs);
    rig.submit(&[bad(65), bad(66)]);
    rig.sim.notify_from_peer(CLIENT);
    rig.step();
    assert_eq!(rig.drv.stats().requests, 64);
    rig.run();
    assert_eq!(rig.drv.stats().lost_responses, 0);
    let r = rig.responses();
    assert_eq!(r.len(), 64);
    assert!(r.contains(&ok(1, 1)) && r.contains(&ok(1, 2)));
    rig.sim.notify_from_peer(CLIENT);
    rig.step();
    let inv = BlkRespStatus::ERR_INVALID_PARAM;
    assert_eq!(rig.responses(), vec![err(inv, 65), err(inv, 66)]);
    rig.check_clean();
}

#[test]
fn notifications_on_other_channels_are_reported_and_ignored() {
    let mut rig = Rig::new();
    rig.io(&[read(0, 0, 1, 1)]);
    rig.sim.notify_from_peer(CLIENT);
    rig.step();
    assert!(!rig.text().contains("ignored"), "{}", rig.text());
    rig.sim.notify_from_peer(system::SERIAL_DRIVER);
    rig.step();
    let line = format!(
        "blk_driver: ignored notification on channels {:#x}\n",
        1u64 << system::SERIAL_DRIVER.index()
    );
    assert_eq!(rig.text().matches("ignored").count(), 1);
    assert!(rig.text().ends_with(&line), "{}", rig.text());
    rig.check_clean();
}

#[test]
fn the_register_window_is_read_and_written_through_the_mapped_region() {
    use virtio::Regs;
    let sim = sim();
    let mut regs = sim
        .region("blk_regs")
        .expect("blk_driver maps its registers");
    let view = Sim::alias(&regs);
    assert_eq!(regs.read32(0xe00), 0);
    view.write_u32(0xe00, virtio::MAGIC).unwrap();
    assert_eq!(regs.read32(0xe00), virtio::MAGIC);
    assert_eq!(regs.read32(support::WINDOW), 0, "outside: nothing answers");
    regs.write32(0xe70, 0x8f);
    assert_eq!(view.read_u32(0xe70).unwrap(), 0x8f);
    // As an optional region.
    let mut some = Some(Sim::alias(&regs));
    assert_eq!(some.read32(0xe00), virtio::MAGIC);
    some.write32(0xe70, 0x0f);
    assert_eq!(view.read_u32(0xe70).unwrap(), 0x0f);
    let mut none: Option<SharedRegion> = None;
    assert_eq!(none.read32(0xe00), 0);
    none.write32(0xe70, 0x1);
    assert_eq!(view.read_u32(0xe70).unwrap(), 0x0f);
}

// ---- Interrupts and the used ring. ----

#[test]
fn a_used_buffer_interrupt_reads_only_interrupt_status() {
    let mut rig = Rig::with(Opts {
        mode: CompletionMode::Deferred,
        ..Opts::default()
    });
    rig.submit(&[read(0, 0, 1, 1)]);
    rig.bus.with(|m| m.reads.clear());
    rig.run();
    assert_eq!(rig.responses(), vec![ok(1, 1)]);
    rig.bus.with(|m| {
        assert_eq!(m.reads, vec![virtio::reg::INTERRUPT_STATUS]);
        assert_eq!(
            m.writes.last(),
            Some(&(virtio::reg::INTERRUPT_ACK, virtio::int::USED_BUFFER))
        );
    });
    rig.check_clean();
}

#[test]
fn a_configuration_change_keeps_the_device_live() {
    let mut rig = Rig::new();
    rig.bus.with(|m| {
        assert_eq!(m.t.config_changed(), vmm_devices::mmio::IrqAction::Raise);
        m.irq_pending = true;
    });
    rig.run();
    assert!(rig.drv.device_live());
    assert_eq!(rig.drv.stats().device_errors, 0);
    assert_eq!(rig.io(&[read(0, 0, 1, 1)]), vec![ok(1, 1)]);
    rig.check_clean();
}

#[test]
fn device_needs_reset_fails_the_requests_in_flight_and_resets_it() {
    let broken = std::rc::Rc::new(std::cell::Cell::new(false));
    let b = broken.clone();
    let mut rig = Rig::with(Opts {
        mode: CompletionMode::Deferred,
        read_hook: Some(Box::new(move |off, v, _| {
            if !b.get() {
                v
            } else if off == at(virtio::reg::INTERRUPT_STATUS) {
                v | virtio::int::CONFIG_CHANGE
            } else if off == at(virtio::reg::STATUS) {
                v | status::DEVICE_NEEDS_RESET
            } else {
                v
            }
        })),
        ..Opts::default()
    });
    rig.submit(&[read(0, 0, 1, 1), read(UNIT, 1, 1, 2)]);
    broken.set(true);
    rig.sim.irq(IRQ_CHANNEL);
    rig.step();
    let io = BlkRespStatus::ERR_IO;
    assert_eq!(rig.responses(), vec![err(io, 1), err(io, 2)]);
    let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
    assert_eq!(
        rig.drv.device_state(),
        DeviceState::Failed(virtio::DeviceError::NeedsReset(
            s | status::DEVICE_NEEDS_RESET
        ))
    );
    assert!(!rig.info.is_ready());
    assert_eq!(rig.drv.stats().device_errors, 1);
    rig.bus
        .with(|m| assert_eq!(last_write(&m.writes, virtio::reg::STATUS), 0, "reset"));
    rig.submit(&[read(0, 0, 1, 3)]);
    assert_eq!(rig.responses(), vec![err(io, 3)]);
}

/// A hostile device's used element `id` at position `at`, the used index then `idx`.
fn hostile_used(phys: &Phys, at: usize, id: u32, idx: u16) {
    let dma = phys.dma_region();
    dma.write_u32(virtio::layout::USED + 4 + 8 * at, id)
        .unwrap();
    dma.write_u32(virtio::layout::USED, u32::from(idx) << 16)
        .unwrap();
}

#[test]
fn used_elements_naming_no_chain_in_flight_are_reported_and_skipped() {
    let mut rig = Rig::with(Opts {
        mode: CompletionMode::Deferred,
        ..Opts::default()
    });
    rig.submit(&[read(0, 0, 1, 1)]);
    // Not a chain head (slot 0 is in flight).
    hostile_used(&rig.phys, 0, 1, 1);
    rig.sim.irq(IRQ_CHANNEL);
    rig.step();
    assert_eq!(rig.responses(), vec![]);
    assert_eq!(rig.drv.stats().device_errors, 1);
    assert!(rig.text().contains("blk_driver: device: BadUsedId(1)\n"));
    // The head of slot 1, which is not in flight.
    hostile_used(&rig.phys, 1, 3, 2);
    rig.sim.irq(IRQ_CHANNEL);
    rig.step();
    assert_eq!(rig.responses(), vec![]);
    assert_eq!(rig.drv.stats().device_errors, 2);
    assert!(rig.text().contains("blk_driver: device: BadUsedId(3)\n"));
    // Slot 0's chain, with its status byte written: completed.
    rig.phys
        .dma_region()
        .write(virtio::layout::STATUS, &[virtio::blk::S_OK])
        .unwrap();
    hostile_used(&rig.phys, 2, 0, 3);
    rig.sim.irq(IRQ_CHANNEL);
    rig.step();
    assert_eq!(rig.responses(), vec![ok(1, 1)]);
    assert!(rig.drv.device_live());
}

#[test]
fn the_used_index_may_move_by_a_whole_queue() {
    let mut rig = Rig::with(Opts {
        config: BlkConfig {
            queue_size: 4,
            ..BlkConfig::default()
        },
        mode: CompletionMode::Deferred,
        ..Opts::default()
    });
    rig.submit(&[read(0, 0, 1, 1)]);
    rig.phys
        .dma_region()
        .write(virtio::layout::STATUS, &[virtio::blk::S_OK])
        .unwrap();
    // Four elements: slot 0's chain, then three naming it again (no longer in flight).
    hostile_used(&rig.phys, 0, 0, 4);
    rig.sim.irq(IRQ_CHANNEL);
    rig.step();
    assert_eq!(rig.responses(), vec![ok(1, 1)]);
    assert!(rig.drv.device_live());
    assert_eq!(rig.drv.stats().device_errors, 3);
}

#[test]
fn a_slot_in_flight_is_not_reused_and_chains_use_their_slots_layout() {
    let (_bus, phys, mut d) = live_virtio();
    let u = UNIT as u32;
    let rd = |i: u64| virtio::Op::Read {
        sector: 8 * i,
        paddr: phys.data_paddr() + i * UNIT as u64,
        len: u,
    };
    for i in 0..3 {
        d.submit(i as usize, rd(i)).unwrap();
    }
    assert_eq!(d.submit(1, rd(1)), Err(virtio::DeviceError::BadUsedId(1)));
    let n = d.info().req_slots;
    assert_eq!(
        d.submit(n, rd(0)),
        Err(virtio::DeviceError::BadUsedId(n as u32))
    );
    assert_eq!(d.in_flight(), 3);
    let dma = dma_bytes(&phys);
    let desc = |i: usize| {
        let b = &dma[virtio::layout::DESC + 16 * i..][..16];
        (
            u64::from_le_bytes(b[0..8].try_into().unwrap()),
            u32::from_le_bytes(b[8..12].try_into().unwrap()),
            u16::from_le_bytes(b[12..14].try_into().unwrap()),
            u16::from_le_bytes(b[14..16].try_into().unwrap()),
        )
    };
    for i in 0..3usize {
        let hdr = virtio::layout::HEADERS + 16 * i;
        let st = virtio::layout::STATUS + i;
        let h = 3 * i as u16;
        assert_eq!(desc(3 * i), (DMA_PADDR + hdr as u64, 16, 1, h + 1));
        assert_eq!(
            desc(3 * i + 1),
            (phys.data_paddr() + (i * UNIT) as u64, u, 1 | 2, h + 2)
        );
        assert_eq!(desc(3 * i + 2), (DMA_PADDR + st as u64, 1, 2, 0));
        assert_eq!(dma[hdr..hdr + 4], virtio::blk::T_IN.to_le_bytes());
        assert_eq!(dma[hdr + 8..hdr + 16], (8 * i as u64).to_le_bytes());
        assert_eq!(dma[st], virtio::blk::S_UNWRITTEN);
    }
}

#[test]
fn the_queues_wait_for_the_clients_acknowledgement() {
    let mut rig = Rig::with(Opts {
        acknowledge: false,
        ..Opts::default()
    });
    let b = rig.fill(0, UNIT, 3);
    rig.submit(&[write(0, 2, 1, 1)]);
    rig.run();
    assert_eq!(
        rig.responses(),
        vec![],
        "nothing served before the acknowledgement"
    );
    assert_eq!(
        rig.drv.stats().requests,
        0,
        "the request queue is not even read"
    );
    rig.bus
        .with(|m| assert_eq!(m.t.device().backend().stats.writes, 0));
    let mut sync = ClientSync::new(rig.raw.info).unwrap();
    // A stale acknowledgement (another generation) does not open the queues either.
    sync.acknowledge(7);
    rig.sim.notify_from_peer(CLIENT);
    rig.step();
    assert_eq!(rig.drv.stats().requests, 0);
    sync.acknowledge(1);
    rig.sim.notify_from_peer(CLIENT);
    rig.step();
    rig.run();
    assert_eq!(rig.responses(), vec![ok(1, 1)]);
    assert_eq!(&rig.bus.disk()[2 * UNIT..3 * UNIT], &b[..]);
    rig.check_clean();
}

#[test]
fn a_restarted_driver_resets_the_device_and_serves_the_queues_the_client_reset() {
    let mut rig = Rig::with(Opts {
        mode: CompletionMode::Deferred,
        ..Opts::default()
    });
    let a = rig.fill(0, UNIT, 5);
    let b = rig.fill(UNIT, UNIT, 6);
    // Two writes on the device, neither completed: then the driver dies.
    rig.submit(&[write(0, 3, 1, 10), write(UNIT, 4, 1, 11)]);
    assert_eq!(rig.drv.stats().submitted, 2);
    // The first life says nothing of restarts.
    assert_eq!(rig.drv.generation(), 1);
    assert!(!rig.text().contains("restarted"), "{}", rig.text());
    rig.restart();
    assert_eq!(rig.drv.generation(), 2);
    assert!(
        rig.text()
            .contains("blk_driver: restarted: generation 2, device re-initialised"),
        "{}",
        rig.text()
    );
    assert!(
        rig.log.contains(&Invocation::Notify(CLIENT.index())),
        "the new life is announced"
    );
    // The device was reset: what the old chains did on the disk reaches no one (the model's
    // disk still finishes its operations; the reset transport drops them).
    while rig.bus.complete_one() {}
    rig.run();
    assert_eq!(
        rig.responses(),
        vec![],
        "the old life's chains answer nothing"
    );
    // The client re-synchronises: reset queues, the two writes again, acknowledgement.
    let mut sync = ClientSync::new(rig.raw.info).unwrap();
    assert_eq!(sync.pending(), Some(2));
    rig.req = BlkReqProducer::reset(rig.raw.req, QUEUE_CAPACITY).unwrap();
    rig.resp = BlkRespConsumer::reset(rig.raw.resp, QUEUE_CAPACITY).unwrap();
    rig.req.enqueue(&write(0, 3, 1, 10)).unwrap();
    rig.req.enqueue(&write(UNIT, 4, 1, 11)).unwrap();
    sync.acknowledge(2);
    rig.sim.notify_from_peer(CLIENT);
    rig.step();
    rig.run();
    let mut r = rig.responses();
    r.sort_by_key(|r| r.id);
    assert_eq!(r, vec![ok(1, 10), ok(1, 11)]);
    assert_eq!(&rig.bus.disk()[3 * UNIT..4 * UNIT], &a[..]);
    assert_eq!(&rig.bus.disk()[4 * UNIT..5 * UNIT], &b[..]);
}

#[test]
fn the_crash_plan_fires_at_its_request_of_each_life() {
    let plan = CrashPlan {
        after: 3,
        every: 2,
        ..CrashPlan::default()
    };
    assert!(!plan.due(1, 2, 0) && plan.due(1, 3, 0) && !plan.due(1, 4, 0));
    assert!(!plan.due(2, 1, 0) && plan.due(2, 2, 0) && !plan.due(2, 3, 0));
    assert!(plan.due(9, 2, 5));
    let busy = CrashPlan {
        busy: 2,
        ..CrashPlan::default()
    };
    assert!(!busy.due(1, 5, 1) && busy.due(1, 5, 2) && busy.due(1, 1, 3));
    assert!(!busy.due(2, 5, 3), "the first life only");
    assert!(!CrashPlan::default().due(1, 0, 9) && !CrashPlan::default().due(2, 0, 9));
    // At most two lives crash.
    let two = CrashPlan {
        after: 1,
        every: 1,
        lives: 2,
        ..CrashPlan::default()
    };
    assert!(two.due(1, 1, 0) && two.due(2, 1, 0) && !two.due(3, 1, 0));
    // Writes only: reads neither count nor crash.
    let writes = CrashPlan {
        after: 2,
        writes_only: true,
        ..CrashPlan::default()
    };
    assert!(!writes.counts(&read(0, 1, 1, 0)) && writes.counts(&write(0, 1, 1, 0)));
    let mut rig = Rig::new();
    rig.drv.set_crash_plan(writes);
    rig.io(&[read(0, 1, 1, 1), read(0, 1, 1, 2), write(0, 1, 1, 3)]);
    assert_eq!(rig.drv.stats().crashes_due, 0, "one write so far");
    rig.io(&[read(0, 1, 1, 4), write(0, 1, 1, 5)]);
    assert_eq!(rig.drv.stats().crashes_due, 1, "the second write");
    assert_eq!(blk_driver::parse_u64(Some("40")), 40);
    assert_eq!(blk_driver::parse_u64(Some("4x")), 0);
    assert_eq!(blk_driver::parse_u64(None), 0);
    // Host builds do not crash: the driver counts the crash that was due and goes on.
    let mut rig = Rig::new();
    rig.drv.set_crash_plan(plan);
    for id in 0..4 {
        rig.io(&[read(0, 1, 1, id)]);
    }
    assert_eq!(
        rig.drv.stats().crashes_due,
        1,
        "the third request of life 1"
    );
    assert_eq!(
        CrashPlan::BUILT_IN,
        CrashPlan::default(),
        "off without the feature"
    );
}
