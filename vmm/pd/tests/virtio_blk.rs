//! The guest's virtio-blk device end to end inside the VMM's system.xml scope: a guest driver
//! (virtqueue in guest RAM, registers through trapped MMIO) on one side, the block driver
//! domain's side of the sDDF queues (request/response queues, storage info, the data region,
//! played here by a small in-memory disk) on the other. Checks that requests reach the driver
//! only as sDDF requests into the data region, that the VMM kicks the driver, that responses
//! complete the guest's requests with the right data and the device's SPI, and that a hostile
//! driver (unknown ids, errors, corrupt indices) is contained.

mod common;

use common::*;
use microkit_sim::{Invocation, Sim};
use sddf_queue::blk::{BlkReqConsumer, BlkRespProducer, StorageInfoWriter};
use sddf_queue::layout::BlkReq;
use sddf_queue::layout::{BlkReqCode, BlkResp, BlkRespStatus, BlkStorageInfo};
use sddf_queue::restart::DriverLife;
use std::sync::atomic::AtomicU32;
use vmm::Vmm;
use zerocopy::FromZeros;

const BLK: u64 = 0x0a00_3e00;
const BLK_IRQ: u16 = 79;
/// The driver's channel, as the VMM numbers it.
const BLK_CH: u8 = 3;
const UNITS: u64 = 64;
const UNIT: usize = 4096;

// Guest-physical layout of the guest driver's structures.
const DESC: u64 = 0x4100_0000;
const AVAIL: u64 = 0x4100_1000;
const USED: u64 = 0x4100_2000;
const HDR: u64 = 0x4100_3000;
const STATUS: u64 = 0x4100_3800;
const DATA: u64 = 0x4101_0000;
const QSIZE: u16 = 16;

/// The block driver's side: its queue views and the data region, and a disk of `UNITS` units.
struct Driver {
    req: BlkReqConsumer<'static>,
    resp: BlkRespProducer<'static>,
    data: microkit_rt::SharedRegion,
    disk: Vec<u8>,
    /// Requests seen: (code, offset, block, count).
    seen: Vec<(BlkReqCode, u64, u64, u16)>,
    /// Answer the next request with this status instead of serving it.
    fail_next: Option<BlkRespStatus>,
    /// The response queue's raw memory (to corrupt it).
    resp_raw: microkit_rt::SharedRegion,
    /// The raw queue and storage-info words (a restarted driver attaches to them again).
    words: [&'static [AtomicU32]; 3],
    /// The driver's life, when it takes part in the restart handshake.
    life: Option<DriverLife<'static>>,
}

impl Driver {
    /// Takes the next request, if the driver may (its life acknowledged).
    fn take(&mut self) -> Option<BlkReq> {
        if self.life.as_ref().is_some_and(|l| !l.acknowledged()) {
            return None;
        }
        let r = self.req.dequeue().unwrap()?;
        self.seen
            .push((r.code, r.io_or_offset, r.block_number, r.count));
        Some(r)
    }

    /// What the device does with `r`: the data moves between the disk and the data region.
    fn perform(&mut self, r: &BlkReq) {
        let off = r.io_or_offset as usize;
        let len = r.count as usize * UNIT;
        let pos = r.block_number as usize * UNIT;
        match r.code {
            BlkReqCode::READ => self.data.write(off, &self.disk[pos..pos + len]).unwrap(),
            BlkReqCode::WRITE => self.data.read(off, &mut self.disk[pos..pos + len]).unwrap(),
            _ => {}
        }
    }

    /// Publishes `r`'s response.
    fn answer(&mut self, r: &BlkReq, status: BlkRespStatus) {
        let count = if status == BlkRespStatus::OK {
            r.count
        } else {
            0
        };
        self.resp
            .enqueue(&BlkResp::new(status, count, r.id))
            .unwrap();
    }

    /// Serves every queued request; returns how many.
    fn serve(&mut self) -> usize {
        let mut n = 0;
        while let Some(r) = self.take() {
            n += 1;
            if let Some(status) = self.fail_next.take() {
                self.answer(&r, status);
                continue;
            }
            self.perform(&r);
            self.answer(&r, BlkRespStatus::OK);
        }
        n
    }

    /// The driver dies wherever it is and its monitor restarts it: its queue handles are gone
    /// (they lived on its stack); the new life announces itself and waits for the client.
    fn restart(&mut self) -> u32 {
        let life = DriverLife::begin(self.words[2]).unwrap();
        let g = life.generation();
        self.life = Some(life);
        g
    }

    /// The acknowledged life attaches to the queues (as the real driver does on its first
    /// event after the acknowledgement).
    fn attach(&mut self) {
        assert!(self.life.as_ref().is_some_and(DriverLife::acknowledged));
        self.req = BlkReqConsumer::new(self.words[0], 64).unwrap();
        self.resp = BlkRespProducer::new(self.words[1], 64).unwrap();
    }
}

struct Rig {
    h: Harness,
    drv: Driver,
    avail_idx: u16,
    used_seen: u16,
}

fn rig_with(ready: bool) -> Rig {
    let sim = Sim::from_repo_system("vmm");
    let ram = sim.region("guest_ram").unwrap();
    let wp = sim.region("guest_wp_page").unwrap();
    let region = |n: &str| sim.region(n).unwrap_or_else(|| panic!("vmm maps {n}"));
    let (req, resp, info, data) = (
        region("blk_req_queue_vmm"),
        region("blk_resp_queue_vmm"),
        region("blk_storage_info_vmm"),
        region("blk_data_vmm"),
    );
    let (d_req, d_resp, d_info, d_data) = (
        Sim::alias(&req),
        Sim::alias(&resp),
        Sim::alias(&info),
        Sim::alias(&data),
    );
    let resp_raw = Sim::alias(&resp);
    let info_words = d_info.into_atomic_words().unwrap();
    let (req_words, resp_words) = (
        d_req.into_atomic_words().unwrap(),
        d_resp.into_atomic_words().unwrap(),
    );
    if ready {
        let mut si = BlkStorageInfo::new_zeroed();
        si.capacity = UNITS;
        si.block_size = 1;
        si.sector_size = 512;
        StorageInfoWriter::new(info_words).unwrap().publish(&si);
    }
    let drv = Driver {
        req: BlkReqConsumer::new(req_words, 64).unwrap(),
        resp: BlkRespProducer::new(resp_words, 64).unwrap(),
        data: d_data,
        disk: (0..UNITS as usize * UNIT)
            .map(|i| (i / 512) as u8 ^ 0xa5)
            .collect(),
        seen: vec![],
        fail_next: None,
        resp_raw,
        words: [req_words, resp_words, info_words],
        life: None,
    };
    let (ram_view, wp_view) = (Sim::alias(&ram), Sim::alias(&wp));
    let vmm = Vmm::new(sim.kernel(), Ok(ram), Ok(wp), blobs()).with_block_device(
        Ok(req),
        Ok(resp),
        Ok(info),
        Ok(data),
    );
    let h = Harness::running_with(sim, vmm, ram_view, wp_view);
    Rig {
        h,
        drv,
        avail_idx: 0,
        used_seen: 0,
    }
}

fn rig() -> Rig {
    rig_with(true)
}

impl Rig {
    fn w32(&mut self, off: u64, v: u32) -> Vec<Invocation> {
        self.h.store(PC0, BLK + off, 2, 1, u64::from(v))
    }
    fn r32(&mut self, off: u64) -> u32 {
        self.h.load(PC0, BLK + off, 2, 2);
        self.h.x(2) as u32
    }
    fn put(&self, gpa: u64, bytes: &[u8]) {
        self.h.ram.write((gpa - RAM_GPA) as usize, bytes).unwrap();
    }
    fn get(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.h.ram.read((gpa - RAM_GPA) as usize, &mut b).unwrap();
        b
    }

    /// The driver's initialisation (virtio 1.2 §3.1.1) with VERSION_1 and FLUSH, one queue,
    /// and the distributor forwarding SPI 79 to the vCPU.
    fn init(&mut self) {
        self.h.store(PC0, GICD, 2, 1, 1);
        self.h.store(PC0, GICD + 0x108, 2, 1, 1 << (79 - 64));
        self.h.store(PC0, GICD + 0x800 + 76, 2, 1, 1 << 24);
        self.w32(0x70, 0);
        self.w32(0x70, 1);
        self.w32(0x70, 3);
        self.w32(0x24, 1);
        self.w32(0x20, 1);
        self.w32(0x24, 0);
        self.w32(0x20, 1 << 9);
        self.w32(0x70, 0xb);
        assert_eq!(self.r32(0x70) & 8, 8, "FEATURES_OK accepted");
        self.w32(0x30, 0);
        assert_eq!(self.r32(0x34), 256, "QueueNumMax");
        self.w32(0x38, u32::from(QSIZE));
        for (reg, addr) in [(0x80, DESC), (0x90, AVAIL), (0xa0, USED)] {
            self.w32(reg, addr as u32);
            self.w32(reg + 4, 0);
        }
        self.w32(0x44, 1);
        self.w32(0x70, 0xf);
        assert_eq!(self.r32(0x70), 0xf, "live");
    }

    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.put(DESC + 16 * u64::from(i), &d);
    }

    /// Publishes a request (header, one data buffer, status) and notifies; returns the log of
    /// the notifying exit.
    fn request(
        &mut self,
        ty: u32,
        sector: u64,
        data_len: u32,
        device_writes: bool,
    ) -> Vec<Invocation> {
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&ty.to_le_bytes());
        hdr[8..16].copy_from_slice(&sector.to_le_bytes());
        self.put(HDR, &hdr);
        self.put(STATUS, &[0xff]);
        let w = if device_writes { 2 } else { 0 };
        if data_len > 0 {
            self.desc(0, HDR, 16, 1, 1);
            self.desc(1, DATA, data_len, 1 | w, 2);
            self.desc(2, STATUS, 1, 2, 0);
        } else {
            self.desc(0, HDR, 16, 1, 2);
            self.desc(2, STATUS, 1, 2, 0);
        }
        let slot = self.avail_idx % QSIZE;
        self.put(AVAIL + 4 + 2 * u64::from(slot), &0u16.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.put(AVAIL + 2, &self.avail_idx.to_le_bytes());
        self.w32(0x50, 0)
    }

    /// The used ring's index.
    fn used_idx(&self) -> u16 {
        u16::from_le_bytes(self.get(USED + 2, 2).try_into().unwrap())
    }

    /// Lets the driver serve and notify the VMM until the guest's request completes; returns
    /// every invocation the VMM made meanwhile.
    fn run_until_used(&mut self) -> Vec<Invocation> {
        let mut log = vec![];
        for _ in 0..32 {
            if self.used_idx() != self.used_seen {
                self.used_seen = self.used_idx();
                return log;
            }
            assert!(
                self.drv.serve() > 0,
                "the VMM waits on the driver, which has nothing"
            );
            self.h.sim.notify_from_peer(vmm::system::BLK_VIRT);
            self.h.el.step(&mut self.h.vmm);
            log.extend(self.h.sim.take_log());
        }
        panic!("the request never completed");
    }

    fn status(&self) -> u8 {
        self.get(STATUS, 1)[0]
    }
}

fn kicks(log: &[Invocation]) -> usize {
    log.iter()
        .filter(|i| **i == Invocation::Notify(BLK_CH))
        .count()
}

fn spi_injections(log: &[Invocation]) -> usize {
    log.iter()
        .filter(|i| matches!(i, Invocation::VcpuInjectIrq { virq: BLK_IRQ, .. }))
        .count()
}

#[test]
fn the_device_identifies_as_a_modern_virtio_blk_of_the_drivers_capacity() {
    let mut r = rig();
    assert_eq!(r.r32(0x000), 0x7472_6976, "magic");
    assert_eq!(r.r32(0x004), 2, "version 2: modern");
    assert_eq!(r.r32(0x008), 2, "block device");
    let lo = r.r32(0x100);
    let hi = r.r32(0x104);
    assert_eq!(
        u64::from(hi) << 32 | u64::from(lo),
        UNITS * 8,
        "capacity in sectors"
    );
    assert!(
        r.h.sim
            .console()
            .contains("vmm: virtio-blk at 0xa003e00 (INTID 79)")
    );
    assert!(
        r.h.sim.violations().is_empty(),
        "{:?}",
        r.h.sim.violations()
    );
}

#[test]
fn an_unaligned_write_is_a_read_modify_write_through_the_driver_and_completes_with_the_spi() {
    let mut r = rig();
    r.init();
    // Three sectors at sector 7: the last sector of unit 0 and the first two of unit 1.
    let pattern: Vec<u8> = (0..3 * 512).map(|i| (i % 251) as u8).collect();
    r.put(DATA, &pattern);
    let before = r.drv.disk.clone();
    let log = r.request(1, 7, 3 * 512, false);
    assert_eq!(kicks(&log), 1, "one kick for the exit's requests: {log:?}");
    let log = r.run_until_used();
    assert_eq!(r.status(), 0, "VIRTIO_BLK_S_OK");
    assert_eq!(
        spi_injections(&log),
        1,
        "the completion raises INTID 79: {log:?}"
    );
    assert_eq!(r.drv.disk[7 * 512..10 * 512], pattern[..]);
    assert_eq!(
        r.drv.disk[..7 * 512],
        before[..7 * 512],
        "sectors before kept"
    );
    assert_eq!(
        r.drv.disk[10 * 512..],
        before[10 * 512..],
        "sectors after kept"
    );
    // Two fills (units 0 and 1) and one write of both units, all in the data region.
    let codes: Vec<_> = r.drv.seen.iter().map(|s| s.0).collect();
    assert_eq!(
        codes,
        [BlkReqCode::READ, BlkReqCode::READ, BlkReqCode::WRITE]
    );
    assert_eq!(r.drv.seen[2], (BlkReqCode::WRITE, 0, 0, 2));
    // The used ring names the chain and counts only the status byte.
    assert_eq!(r.get(USED + 4, 8), [0, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(r.r32(0x60) & 1, 1, "InterruptStatus: used buffer");
    r.w32(0x64, 1);
    assert_eq!(r.r32(0x60), 0, "acknowledged");
    assert!(
        r.h.sim.violations().is_empty(),
        "{:?}",
        r.h.sim.violations()
    );
}

#[test]
fn a_read_across_a_unit_boundary_returns_the_disks_bytes() {
    let mut r = rig();
    r.init();
    r.put(DATA, &vec![0u8; 5 * 512]);
    r.request(0, 13, 5 * 512, true);
    r.run_until_used();
    assert_eq!(r.status(), 0);
    assert_eq!(r.get(DATA, 5 * 512), r.drv.disk[13 * 512..18 * 512]);
    assert_eq!(
        r.get(USED + 8, 4),
        (5 * 512u32 + 1).to_le_bytes(),
        "data and status written"
    );
}

#[test]
fn flush_reaches_the_driver() {
    let mut r = rig();
    r.init();
    r.request(4, 0, 0, false);
    r.run_until_used();
    assert_eq!(r.status(), 0);
    assert_eq!(r.drv.seen, [(BlkReqCode::FLUSH, 0, 0, 0)]);
}

#[test]
fn a_driver_error_fails_the_request_with_ioerr() {
    let mut r = rig();
    r.init();
    r.drv.fail_next = Some(BlkRespStatus::ERR_IO);
    r.request(0, 0, 512, true);
    r.run_until_used();
    assert_eq!(r.status(), 1, "VIRTIO_BLK_S_IOERR");
    // The device still works.
    r.request(0, 8, 512, true);
    r.run_until_used();
    assert_eq!(r.status(), 0);
    assert_eq!(r.get(DATA, 512), r.drv.disk[8 * 512..9 * 512]);
}

#[test]
fn responses_with_unknown_ids_and_corrupt_indices_are_contained() {
    let mut r = rig();
    r.init();
    r.request(0, 0, 512, true);
    // A response for nothing in flight: counted and dropped; the request stays outstanding.
    r.drv
        .resp
        .enqueue(&BlkResp::new(BlkRespStatus::OK, 1, 0xdead))
        .unwrap();
    r.h.sim.notify_from_peer(vmm::system::BLK_VIRT);
    r.h.el.step(&mut r.h.vmm);
    assert_eq!(r.used_idx(), 0, "not completed by a stray response");
    r.run_until_used();
    assert_eq!(r.status(), 0);
    let stats = *r.h.vmm.virtio_blk().unwrap().device().backend().stats();
    assert_eq!(stats.unknown_ids, 1);

    // The driver corrupts the response queue's tail: no panic, counted, the VMM keeps serving.
    r.drv.resp_raw.write_u32(4, 0x8000_0000).unwrap();
    r.h.sim.notify_from_peer(vmm::system::BLK_VIRT);
    r.h.el.step(&mut r.h.vmm);
    assert_eq!(r.h.vmm.glue_stats().blk_queue_errors, 1);
    assert_eq!(r.r32(0x008), 2, "the device still answers");
}

#[test]
fn without_ready_storage_no_device_is_offered() {
    let mut r = rig_with(false);
    assert!(
        r.h.sim
            .console()
            .contains("vmm: no virtio-blk for the guest: NotReady"),
        "{}",
        r.h.sim.console()
    );
    assert!(r.h.vmm.virtio_blk().is_none());
    // The window is unbacked: the guest gets an external abort, the VM keeps running.
    r.h.load(PC0, BLK, 2, 2);
    assert_eq!(r.h.vmm.state(), vmm::VmState::Running);
}

#[test]
fn a_guest_waiting_in_wfi_for_block_io_is_parked_and_the_response_resumes_it() {
    let mut r = rig();
    r.init();
    r.request(0, 0, 512, true);
    // WFI (EC 0x01) with the read outstanding: the PC moves on, but no reply.
    r.h.set_x_pc(PC0);
    let log = r.h.exit(label::VCPU_FAULT, &[(0x01 << 26) | (1 << 25)]);
    assert!(
        !log.iter().any(|i| matches!(i, Invocation::Reply { .. })),
        "parked, not answered: {log:?}"
    );
    assert!(r.h.vmm.parked());
    assert!(
        log.contains(&Invocation::VmSuspend(0)),
        "suspended, so the fault's reply is cancelled: {log:?}"
    );
    assert_eq!(
        r.h.pc(),
        PC0 + 4,
        "the write-back moved the PC past the WFI"
    );
    let log = r.run_until_used();
    assert!(log.contains(&Invocation::VmResume(0)), "woken: {log:?}");
    assert!(!r.h.vmm.parked());
    assert_eq!(r.status(), 0);

    // With nothing outstanding, WFI resumes at once, as before.
    let log = r.h.exit(label::VCPU_FAULT, &[(0x01 << 26) | (1 << 25)]);
    assert!(log.iter().any(|i| matches!(i, Invocation::Reply { .. })));
    assert!(!r.h.vmm.parked());
}

fn sctlr_reads(log: &[Invocation]) -> usize {
    log.iter()
        .filter(|i| {
            matches!(i, Invocation::VcpuReadReg { field, .. }
                if *field == microkit_rt::abi::vcpu_reg::SCTLR)
        })
        .count()
}

/// Guest memory skips cache maintenance only while the guest runs with its MMU and data cache
/// on: the VMM reads SCTLR_EL1 before the notify's device call and before the responses' one,
/// and counts each call as coherent or cache-maintained by what it read.
#[test]
fn cache_maintenance_follows_the_guests_sctlr_m_and_c_bits() {
    use microkit_rt::abi::vcpu_reg::SCTLR;
    let mut r = rig();
    r.init();
    let before = *r.h.vmm.glue_stats();
    // Caches off (reset value): both calls maintain.
    let mut log = r.request(0, 8, 4096, true);
    log.extend(r.run_until_used());
    assert_eq!(r.status(), 0);
    assert_eq!(sctlr_reads(&log), 2, "one read per device call: {log:?}");
    let g = *r.h.vmm.glue_stats();
    assert_eq!(g.maintained_calls - before.maintained_calls, 2);
    assert_eq!(g.coherent_calls, before.coherent_calls);
    // MMU on, data cache off: still maintained.
    r.h.sim.with_vcpu(0, |v| v.regs[SCTLR as usize] = 0x1);
    r.request(0, 16, 4096, true);
    r.run_until_used();
    let g2 = *r.h.vmm.glue_stats();
    assert_eq!(g2.maintained_calls - g.maintained_calls, 2);
    assert_eq!(g2.coherent_calls, g.coherent_calls);
    // MMU and data cache on: coherent, and the data still arrives.
    r.h.sim
        .with_vcpu(0, |v| v.regs[SCTLR as usize] = 0x30d0_1805);
    r.put(DATA, &[0u8; 4096]);
    r.request(0, 24, 4096, true);
    r.run_until_used();
    let g3 = *r.h.vmm.glue_stats();
    assert_eq!(g3.coherent_calls - g2.coherent_calls, 2);
    assert_eq!(g3.maintained_calls, g2.maintained_calls);
    assert_eq!(r.status(), 0);
    assert_eq!(r.get(DATA, 4096), r.drv.disk[24 * 512..24 * 512 + 4096]);
    // The reading holds for the call that made it: the next exit (a register read of the
    // device, no SCTLR_EL1 read) starts with maintenance on again.
    assert!(r.h.vmm.memory_coherent());
    r.r32(0x70);
    assert!(!r.h.vmm.memory_coherent());
    // So does a driver's notification with no response to copy.
    r.request(0, 32, 4096, true);
    r.run_until_used();
    assert!(r.h.vmm.memory_coherent());
    r.h.sim.notify_from_peer(vmm::system::BLK_VIRT);
    r.h.el.step(&mut r.h.vmm);
    assert!(!r.h.vmm.memory_coherent());
}

/// The block path's stage times: the driver stage runs from a kick while none was unanswered to
/// the next batch of responses, by the timer's count (the simulated timer moves only when told).
#[test]
fn the_driver_stage_is_timed_from_the_first_unanswered_kick_to_the_responses() {
    let mut r = rig();
    r.init();
    r.h.sim.set_timer_now(1_000);
    let log = r.request(0, 8, 4096, true);
    assert_eq!(kicks(&log), 1);
    r.h.sim.set_timer_now(1_250);
    r.run_until_used();
    let t = r.h.vmm.glue_stats().blk_time;
    assert_eq!(t.driver, 250);
    assert_eq!(t.kicked_at, None, "answered");
    // A second request: only its own wait is added.
    r.h.sim.set_timer_now(5_000);
    r.request(0, 16, 4096, true);
    r.h.sim.set_timer_now(5_040);
    r.run_until_used();
    assert_eq!(r.h.vmm.glue_stats().blk_time.driver, 290);
}

impl Rig {
    /// The driver notifies the VMM once (responses, or a new life).
    fn notify_vmm(&mut self) -> Vec<Invocation> {
        self.h.sim.notify_from_peer(vmm::system::BLK_VIRT);
        self.h.el.step(&mut self.h.vmm);
        self.h.sim.take_log()
    }
}

/// A rig whose driver takes part in the restart handshake: its first life announced and
/// acknowledged, as at boot.
fn rig_with_lives() -> Rig {
    let mut r = rig();
    assert_eq!(r.drv.restart(), 1);
    let log = r.notify_vmm();
    assert_eq!(kicks(&log), 1, "the acknowledgement is notified: {log:?}");
    r.drv.attach();
    r.init();
    r
}

/// Where in a request's life the driver dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrashPoint {
    /// Before the guest's request reaches the VMM.
    BeforeSubmit,
    /// Queued by the VMM, not yet taken.
    AfterSubmit,
    /// Taken by the driver, not yet on the device.
    Taken,
    /// The device did it (the disk or the data region changed), no response yet.
    Performed,
    /// The response published, the VMM not yet notified.
    Answered,
}

/// One write of 8 sectors at unit 5 with the driver crashing at `point`: the guest's request
/// completes exactly once, OK, with the bytes on the disk; returns the VMM's console text and
/// how many times the driver saw the request.
fn crash_at(point: CrashPoint) -> (String, usize) {
    let mut r = rig_with_lives();
    let pattern: Vec<u8> = (0..UNIT).map(|i| (i * 7 % 253) as u8).collect();
    r.put(DATA, &pattern);
    let used_before = r.used_idx();
    let restart = |r: &mut Rig| {
        assert_eq!(r.drv.restart(), 2);
        let log = r.notify_vmm();
        assert!(
            kicks(&log) >= 1,
            "the VMM acknowledges with a kick: {log:?}"
        );
        r.drv.attach();
    };
    if point == CrashPoint::BeforeSubmit {
        restart(&mut r);
    }
    r.request(1, 5 * 8, UNIT as u32, false);
    match point {
        CrashPoint::BeforeSubmit => {}
        CrashPoint::AfterSubmit => restart(&mut r),
        CrashPoint::Taken | CrashPoint::Performed | CrashPoint::Answered => {
            let req = r.drv.take().expect("the VMM queued the write");
            if point != CrashPoint::Taken {
                r.drv.perform(&req);
            }
            if point == CrashPoint::Answered {
                r.drv.answer(&req, BlkRespStatus::OK);
            }
            restart(&mut r);
        }
    }
    if r.used_idx() == used_before {
        r.run_until_used();
    }
    assert_eq!(
        r.used_idx(),
        used_before.wrapping_add(1),
        "{point:?}: completed exactly once"
    );
    assert_eq!(r.status(), 0, "{point:?}: VIRTIO_BLK_S_OK");
    assert_eq!(&r.drv.disk[5 * UNIT..6 * UNIT], &pattern[..], "{point:?}");
    // Nothing more comes: no request is left in the queue, none is answered twice.
    assert_eq!(r.drv.serve(), 0, "{point:?}: nothing left to serve");
    assert_eq!(r.h.vmm.blk_in_flight(), Some(0), "{point:?}");
    assert!(
        r.h.sim.violations().is_empty(),
        "{:?}",
        r.h.sim.violations()
    );
    let seen = r
        .drv
        .seen
        .iter()
        .filter(|s| s.0 == BlkReqCode::WRITE)
        .count();
    (r.h.sim.console(), seen)
}

#[test]
fn a_driver_crash_before_submit_loses_nothing() {
    let (text, seen) = crash_at(CrashPoint::BeforeSubmit);
    assert!(
        text.contains("vmm: blk_driver restarted (generation 2): queues reset, 0 of 0 requests in flight re-submitted"),
        "{text}"
    );
    assert_eq!(seen, 1);
}

#[test]
fn a_request_queued_but_not_taken_is_resubmitted_once() {
    let (text, seen) = crash_at(CrashPoint::AfterSubmit);
    assert!(
        text.contains("1 of 1 requests in flight re-submitted"),
        "{text}"
    );
    assert_eq!(seen, 1, "the dead driver never took it");
}

#[test]
fn a_request_the_driver_took_is_resubmitted() {
    let (text, seen) = crash_at(CrashPoint::Taken);
    assert!(
        text.contains("1 of 1 requests in flight re-submitted"),
        "{text}"
    );
    assert_eq!(seen, 2);
}

#[test]
fn a_write_the_device_did_is_resubmitted_and_idempotent() {
    let (text, seen) = crash_at(CrashPoint::Performed);
    assert!(
        text.contains("1 of 1 requests in flight re-submitted"),
        "{text}"
    );
    assert_eq!(seen, 2, "written twice, the same bytes");
}

#[test]
fn a_response_published_before_the_crash_is_taken_not_resubmitted() {
    let (text, seen) = crash_at(CrashPoint::Answered);
    assert!(
        text.contains("0 of 0 requests in flight re-submitted"),
        "{text}"
    );
    assert_eq!(seen, 1);
}

#[test]
fn several_requests_in_flight_are_resubmitted_in_order_and_the_first_response_is_timed() {
    let mut r = rig_with_lives();
    // Three reads in one notify: three chains, three units of the disk.
    for (i, unit) in [(0u16, 3u64), (1, 9), (2, 20)] {
        let d = 3 * i;
        let mut hdr = [0u8; 16];
        hdr[8..16].copy_from_slice(&(unit * 8).to_le_bytes());
        let hdr_at = HDR + 16 * u64::from(i);
        r.put(hdr_at, &hdr);
        r.put(STATUS + u64::from(i), &[0xff]);
        r.desc(d, hdr_at, 16, 1, d + 1);
        r.desc(
            d + 1,
            DATA + UNIT as u64 * u64::from(i),
            UNIT as u32,
            1 | 2,
            d + 2,
        );
        r.desc(d + 2, STATUS + u64::from(i), 1, 2, 0);
        r.put(AVAIL + 4 + 2 * u64::from(i), &d.to_le_bytes());
    }
    r.avail_idx = 3;
    r.put(AVAIL + 2, &3u16.to_le_bytes());
    r.w32(0x50, 0);
    assert_eq!(r.h.vmm.blk_in_flight(), Some(3));
    // The driver takes two and dies.
    let a = r.drv.take().unwrap();
    let b = r.drv.take().unwrap();
    assert_eq!(r.drv.restart(), 2);
    r.h.sim.set_timer_now(1000);
    r.notify_vmm();
    r.drv.attach();
    // Re-submitted oldest first: the same three requests, in the order the guest made them.
    let again: Vec<BlkReq> = std::iter::from_fn(|| r.drv.take()).collect();
    assert_eq!(again.len(), 3);
    assert_eq!(again[0], a);
    assert_eq!(again[1], b);
    assert_eq!(
        again.iter().map(|q| q.block_number).collect::<Vec<_>>(),
        [3, 9, 20]
    );
    for q in &again {
        r.drv.perform(q);
        r.drv.answer(q, BlkRespStatus::OK);
    }
    r.h.sim.set_timer_now(1500);
    r.notify_vmm();
    assert_eq!(r.used_idx(), 3, "all three completed once");
    for i in 0..3u64 {
        let unit = [3usize, 9, 20][i as usize];
        assert_eq!(r.get(STATUS + i, 1), [0]);
        assert_eq!(
            r.get(DATA + UNIT as u64 * i, UNIT),
            r.drv.disk[unit * UNIT..(unit + 1) * UNIT]
        );
    }
    let text = r.h.sim.console();
    assert!(
        text.contains("3 of 3 requests in flight re-submitted (t=1000)"),
        "{text}"
    );
    assert!(
        text.contains("vmm: blk_driver serves again: first response 500 ticks after the re-synchronisation (t=1500)"),
        "{text}"
    );
}

#[test]
fn a_driver_dying_again_before_the_acknowledgement_is_resynchronised_again() {
    let mut r = rig_with_lives();
    r.put(DATA, &[0u8; UNIT]);
    r.request(0, 8, UNIT as u32, true);
    // Two lives announced before the VMM runs: it acknowledges the latest only.
    r.drv.restart();
    assert_eq!(r.drv.restart(), 3);
    r.notify_vmm();
    r.drv.attach();
    r.run_until_used();
    assert_eq!(r.status(), 0);
    assert_eq!(r.get(DATA, UNIT), r.drv.disk[UNIT..2 * UNIT]);
    // Another crash after that: generation 4, nothing in flight.
    assert_eq!(r.drv.restart(), 4);
    r.notify_vmm();
    assert!(r.drv.life.as_ref().unwrap().acknowledged());
    let text = r.h.sim.console();
    assert!(text.contains("restarted (generation 3)"), "{text}");
    assert!(text.contains("restarted (generation 4)"), "{text}");
}

/// What the driver side does next in [`random_crashes_never_lose_or_repeat_a_request`].
#[derive(Debug, Clone, Copy)]
enum DriverStep {
    /// Take the next queued request.
    Take,
    /// The device does the `n`-th request taken (mod the number taken).
    Perform(usize),
    /// Publish the response of the `n`-th request done.
    Answer(usize),
    /// Notify the VMM.
    Notify,
    /// Die wherever it is; the monitor restarts it; the new life announces itself.
    Crash,
}

fn driver_step() -> impl proptest::strategy::Strategy<Value = DriverStep> {
    use proptest::prelude::*;
    prop_oneof![
        3 => Just(DriverStep::Take),
        2 => (0..4usize).prop_map(DriverStep::Perform),
        2 => (0..4usize).prop_map(DriverStep::Answer),
        2 => Just(DriverStep::Notify),
        1 => Just(DriverStep::Crash),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Up to four writes in flight while the driver takes, performs, answers and crashes in any
    /// order: afterwards every guest request has completed exactly once, OK, its bytes are on
    /// the disk, and the VMM waits for nothing.
    #[test]
    fn random_crashes_never_lose_or_repeat_a_request(
        n in 1..=4u16,
        steps in proptest::collection::vec(driver_step(), 0..40),
    ) {
        let mut r = rig_with_lives();
        let pattern = |i: u16| -> Vec<u8> {
            (0..UNIT).map(|b| (b as u16 ^ (i * 37 + 11)) as u8).collect()
        };
        // n writes of one unit each, units 8, 10, 12, 14, in one notify.
        for i in 0..n {
            let d = 3 * i;
            let mut hdr = [0u8; 16];
            hdr[0..4].copy_from_slice(&1u32.to_le_bytes());
            hdr[8..16].copy_from_slice(&((8 + 2 * u64::from(i)) * 8).to_le_bytes());
            let hdr_at = HDR + 16 * u64::from(i);
            r.put(hdr_at, &hdr);
            r.put(STATUS + u64::from(i), &[0xff]);
            let data = DATA + UNIT as u64 * u64::from(i);
            r.put(data, &pattern(i));
            r.desc(d, hdr_at, 16, 1, d + 1);
            r.desc(d + 1, data, UNIT as u32, 1, d + 2);
            r.desc(d + 2, STATUS + u64::from(i), 1, 2, 0);
            r.put(AVAIL + 4 + 2 * u64::from(i), &d.to_le_bytes());
        }
        r.avail_idx = n;
        r.put(AVAIL + 2, &n.to_le_bytes());
        r.w32(0x50, 0);
        let (mut taken, mut done): (Vec<BlkReq>, Vec<BlkReq>) = (vec![], vec![]);
        for s in steps {
            match s {
                DriverStep::Take => taken.extend(r.drv.take()),
                DriverStep::Perform(k) if !taken.is_empty() => {
                    let q = taken.remove(k % taken.len());
                    r.drv.perform(&q);
                    done.push(q);
                }
                DriverStep::Answer(k) if !done.is_empty() => {
                    let q = done.remove(k % done.len());
                    r.drv.answer(&q, BlkRespStatus::OK);
                }
                DriverStep::Notify => {
                    r.notify_vmm();
                }
                DriverStep::Crash => {
                    taken.clear();
                    done.clear();
                    r.drv.restart();
                    r.notify_vmm();
                    r.drv.attach();
                }
                DriverStep::Perform(_) | DriverStep::Answer(_) => {}
            }
        }
        // The driver then works honestly until the guest has everything.
        for q in taken.drain(..).chain(done.drain(..)) {
            r.drv.perform(&q);
            r.drv.answer(&q, BlkRespStatus::OK);
        }
        for _ in 0..16 {
            if r.used_idx() == n {
                break;
            }
            r.drv.serve();
            r.notify_vmm();
        }
        proptest::prop_assert_eq!(r.used_idx(), n, "every request completed once");
        for i in 0..n {
            proptest::prop_assert_eq!(r.get(STATUS + u64::from(i), 1), vec![0u8]);
            let unit = 8 + 2 * usize::from(i);
            proptest::prop_assert_eq!(&r.drv.disk[unit * UNIT..(unit + 1) * UNIT], &pattern(i)[..]);
        }
        proptest::prop_assert_eq!(r.drv.serve(), 0, "nothing left queued");
        r.notify_vmm();
        proptest::prop_assert_eq!(r.used_idx(), n, "no completion twice");
        proptest::prop_assert_eq!(r.h.vmm.blk_in_flight(), Some(0));
        proptest::prop_assert!(r.h.sim.violations().is_empty());
    }
}
