//! Block driver PD `blk_driver`: owns a virtio-blk device on QEMU virt's virtio-mmio transports
//! (registers and IRQ) and serves one client (the block virtualiser `blk_virt`, which serves
//! the block clients) through sDDF 0.7.0 block queues.
//!
//! - Requests ([`CLIENT`] notification): dequeued from the request queue (unless plugged),
//!   validated, and turned into virtio chains ([`virtio`]) that point by physical address into
//!   the clients' data regions: `io_or_offset` is an offset into the driver's data space
//!   ([`DataSpace`]: the `blk_data_*` regions whose physical addresses system.xml tells it, end
//!   to end), and a transfer must lie wholly inside one region. The client's addresses are never
//!   used, and the driver never sees guest RAM. Block numbers and counts are in 4096-byte units
//!   (8 virtio sectors each).
//! - Completions ([`IRQ_CHANNEL`]): InterruptStatus is read and acknowledged, the used ring is
//!   drained, each chain is mapped back to its request id and answered; the client is notified
//!   once per batch; the IRQ is acknowledged through [`DeferredAction::IrqAck`].
//! - A request is dequeued only when a response for it is guaranteed room (the response queue
//!   has more free entries than requests in flight), so a completion never finds the response
//!   queue full unless the client corrupts it.
//! - Storage info is published once the device is live (`ready`); with no device, `ready` stays
//!   false and every request is answered `ERR_NO_DEVICE`.
//!
//! The client is untrusted (bad offsets, counts, codes: error responses; corrupt queue indices:
//! a logged [`DriverError`]), and so is the device (used-ring entries are checked).
//!
//! The driver's own messages go through the serial driver domain ([`Console`], its TX queue;
//! the debug console without it); the event loop's error reports stay on the debug console.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod virtio;

use microkit_rt::{
    Channel, ChannelSet, DeferredAction, Handler, Kernel, KernelError, SharedRegion,
};
use sddf_queue::blk::{BlkReqConsumer, BlkRespProducer, StorageInfoWriter};
use sddf_queue::layout::{
    BLK_TRANSFER_SIZE, BlkReq, BlkReqCode, BlkResp, BlkRespStatus, BlkStorageInfo,
};
use sddf_queue::restart::DriverLife;
use sddf_queue::{EnqueueError, QueueError, SetupError};
pub use serial_client::Console;
use serial_client::serial_println;

/// The client's queue regions (`sddf_queue::blk::BlkRegions`).
pub use sddf_queue::blk::BlkRegions as QueueMem;
pub use virtio::{DataSpace, PhysWindow};
use virtio::{DeviceError, InitError, Op, Regs, VirtioBlk, blk, feature};

/// Constants generated from the system description (see build.rs).
#[allow(non_upper_case_globals, dead_code, missing_docs, unsafe_code)]
pub mod system {
    include!(concat!(env!("OUT_DIR"), "/system.rs"));
}

/// The virtio-blk IRQ: transport 31 (0x0a003e00), SPI 47 = INTID 79.
pub const IRQ_CHANNEL: Channel = system::IRQ_79;
/// The client's channel (the block virtualiser): it notifies after enqueuing requests, the
/// driver after responses.
pub const CLIENT: Channel = system::BLK_VIRT;
/// Entries of each block queue (the client must use the same: sDDF's `num_buffers`).
pub const QUEUE_CAPACITY: u32 = 64;
/// Sectors per transfer unit.
const SECTORS_PER_UNIT: u64 = BLK_TRANSFER_SIZE as u64 / blk::SECTOR_SIZE;

/// Which shared queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Client → driver requests.
    Request,
    /// Driver → client responses.
    Response,
    /// The storage-info region.
    Info,
}

/// What can go wrong in the driver. None of it stops the PD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverError {
    /// A shared region could not be viewed as atomics.
    View(microkit_rt::RegionError),
    /// A queue could not be attached (retried on every event).
    Setup(Queue, SetupError),
    /// The client corrupted a queue's indices.
    Corrupt(Queue, QueueError),
    /// The queues are not mapped.
    NoQueue,
    /// The device misbehaved.
    Device(DeviceError),
    /// A notification failed.
    Kernel(KernelError),
}

impl core::fmt::Display for DriverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DriverError::View(e) => write!(f, "queue memory: {e:?}"),
            DriverError::Setup(q, e) => write!(f, "{q:?} queue: cannot attach: {e}"),
            DriverError::Corrupt(q, e) => write!(f, "{q:?} queue corrupted by the client: {e}"),
            DriverError::NoQueue => f.write_str("queues not mapped"),
            DriverError::Device(e) => write!(f, "device: {e:?}"),
            DriverError::Kernel(e) => write!(f, "kernel: {e}"),
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests dequeued.
    pub requests: u64,
    /// Chains submitted to the device.
    pub submitted: u64,
    /// Responses OK.
    pub ok: u64,
    /// Responses ERR_IO (device errors).
    pub io_errors: u64,
    /// Responses ERR_INVALID_PARAM (malformed or out-of-range requests).
    pub invalid: u64,
    /// Responses ERR_NO_DEVICE.
    pub no_device: u64,
    /// Responses that could not be enqueued (response queue corrupt or full).
    pub lost_responses: u64,
    /// Interrupts handled.
    pub irqs: u64,
    /// Device misbehaviour seen.
    pub device_errors: u64,
    /// Queue errors caused by the client.
    pub queue_errors: u64,
    /// Fault injection: crashes that were due (host builds, which do not crash).
    pub crashes_due: u64,
}

/// The request behind a chain in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    id: u32,
    count: u16,
}

/// The device, as a state (not flags). One of it, in the driver on the stack, built once: the
/// size of the live variant (its data space of up to `MAX_DATA_WINDOWS` client regions) costs
/// nothing (no_std, no allocator to box it).
#[allow(clippy::large_enum_variant)]
enum Device<R: Regs> {
    /// Live: requests go to it.
    Live(VirtioBlk<R>),
    /// Not found or failed at set-up: requests get ERR_NO_DEVICE.
    Absent(InitError),
    /// Failed after set-up (reset by the driver): requests get ERR_IO.
    Failed(DeviceError),
}

/// Where the device is, for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// Live, with this description.
    Live(virtio::DeviceInfo),
    /// Not found or failed at set-up.
    Absent(InitError),
    /// Failed after set-up.
    Failed(DeviceError),
}

/// The attached queues.
struct Queues<'q> {
    req: BlkReqConsumer<'q>,
    resp: BlkRespProducer<'q>,
}

/// The block driver: PD logic over a kernel `K` and MMIO registers `R`.
pub struct BlkDriver<'q, K: Kernel, R: Regs> {
    k: K,
    /// The driver's messages.
    console: Console<'q>,
    dev: Device<R>,
    /// The clients' data regions (offsets in requests are into this space).
    data: DataSpace,
    data_size: u64,
    /// Capacity in transfer units.
    capacity: u64,
    mem: Option<QueueMem<'q>>,
    queues: Option<Queues<'q>>,
    info: Option<StorageInfoWriter<'q>>,
    /// A request dequeued that waits for a free slot (or, a barrier, for the device to drain).
    held: Option<BlkReq>,
    pending: [Option<Pending>; virtio::MAX_REQ_SLOTS],
    stats: Stats,
    deferred: Option<DeferredAction>,
    /// This life of the driver ([`sddf_queue::restart`]): the queues are not touched until the
    /// client has acknowledged it. `None` without a storage-info region (no client to wait for).
    life: Option<DriverLife<'q>>,
    /// Fault injection: the request of this life at which the driver crashes.
    crash: CrashPlan,
    /// Fault injection: requests of this life the plan counted.
    crash_counted: u64,
}

/// Fault injection for the restart tests (feature `fault-injection`, off by default): the
/// driver crashes (a wild load, a VM fault its monitor sees) when it takes a request and
///
/// - in its first life, `busy` (non-zero) or more requests are already on the device, so the
///   crash leaves several in flight (once: later lives see the same burst re-submitted);
/// - in its first life, it is the `after`-th request;
/// - in each later life up to life `lives` (0: every life), it is the `every`-th request.
///
/// With `writes_only`, only write requests count and crash. 0 turns each trigger off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CrashPlan {
    /// Request of the first life (generation 1) that crashes the driver.
    pub after: u64,
    /// Request of each later life that crashes it again.
    pub every: u64,
    /// Requests on the device at which a request taken in the first life crashes it.
    pub busy: u64,
    /// The last life that may crash (0: no limit).
    pub lives: u64,
    /// Count (and crash on) write requests only.
    pub writes_only: bool,
}

impl CrashPlan {
    /// The plan built in: `BLK_CRASH_AFTER`, `BLK_CRASH_EVERY` and `BLK_CRASH_BUSY` at build
    /// time, with the `fault-injection` feature; never without it.
    pub const BUILT_IN: CrashPlan = if cfg!(feature = "fault-injection") {
        CrashPlan {
            after: parse_u64(option_env!("BLK_CRASH_AFTER")),
            every: parse_u64(option_env!("BLK_CRASH_EVERY")),
            busy: parse_u64(option_env!("BLK_CRASH_BUSY")),
            lives: parse_u64(option_env!("BLK_CRASH_LIVES")),
            writes_only: parse_u64(option_env!("BLK_CRASH_WRITES_ONLY")) != 0,
        }
    } else {
        CrashPlan {
            after: 0,
            every: 0,
            busy: 0,
            lives: 0,
            writes_only: false,
        }
    };

    /// Whether request `r` counts towards the plan.
    pub fn counts(&self, r: &BlkReq) -> bool {
        !self.writes_only || r.code == BlkReqCode::WRITE
    }

    /// Whether taking request number `request` (from 1) of life `generation`, with
    /// `on_device` requests on the device, crashes the driver.
    pub const fn due(&self, generation: u32, request: u64, on_device: u64) -> bool {
        if self.lives != 0 && generation as u64 > self.lives {
            false
        } else if generation <= 1 {
            (self.after != 0 && request == self.after) || (self.busy != 0 && on_device >= self.busy)
        } else {
            self.every != 0 && request == self.every
        }
    }
}

/// A decimal number from a build-time variable (0 when unset or not a number).
pub const fn parse_u64(s: Option<&str>) -> u64 {
    let Some(s) = s else { return 0 };
    let b = s.as_bytes();
    let mut i = 0;
    let mut n: u64 = 0;
    while i < b.len() {
        let d = b[i];
        if !d.is_ascii_digit() {
            return 0;
        }
        n = n.saturating_mul(10).saturating_add((d - b'0') as u64);
        i += 1;
    }
    n
}

/// Keeps the first error.
fn first(acc: &mut Result<(), DriverError>, r: Result<(), DriverError>) {
    if acc.is_ok() {
        *acc = r;
    }
}

/// The checked form of a client request.
enum Decoded {
    Device(Op),
    /// Answer at once with this status and success count.
    Answer(BlkRespStatus, u16),
    /// A barrier: answered OK once nothing is in flight.
    Barrier,
}

impl<'q, K: Kernel, R: Regs> BlkDriver<'q, K, R> {
    /// Brings the device up (probe of the transports in the register window `regs`, at
    /// physical `regs_window`; handshake, queue, DRIVER_OK) in `dma` (device address
    /// `dma_paddr`; `None`: not mapped, no device), publishes the storage info, and serves
    /// whatever the client already queued. `data` is the clients' data regions (one
    /// [`PhysWindow`], or a [`DataSpace`] of several):
    /// the device is pointed only there and into `dma`. Queues given as `None` are not mapped:
    /// requests cannot arrive. Messages go to `console`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mut k: K,
        mut console: Console<'q>,
        regs: R,
        regs_window: PhysWindow,
        dma: Option<SharedRegion>,
        dma_paddr: u64,
        data: impl Into<DataSpace>,
        mem: Option<QueueMem<'q>>,
    ) -> Self {
        let data: DataSpace = data.into();
        let transports = (regs_window.size / virtio::SLOT_SIZE as u64) as usize;
        let init = match dma {
            Some(dma) => VirtioBlk::init(regs, transports, dma, dma_paddr, data),
            None => Err((regs, InitError::DmaTooSmall(0))),
        };
        let dev = match init {
            Ok(d) => {
                let i = d.info();
                // QEMU virt's numbering of the transports (slot 31 at 0xa003e00).
                let addr = regs_window
                    .paddr
                    .saturating_add((i.slot * virtio::SLOT_SIZE) as u64);
                serial_println!(
                    console,
                    k,
                    "blk_driver: virtio-blk at slot {} ({:#x}): {} sectors, features {:#x}, queue {}",
                    addr.saturating_sub(virtio::MMIO_BASE) / virtio::SLOT_SIZE as u64,
                    addr,
                    i.capacity_sectors,
                    i.features,
                    i.queue_size
                );
                Device::Live(d)
            }
            Err((_, e)) => {
                serial_println!(
                    console,
                    k,
                    "blk_driver: no usable virtio-blk device: {:?}",
                    e
                );
                Device::Absent(e)
            }
        };
        let capacity = match &dev {
            Device::Live(d) => d.info().capacity_sectors / SECTORS_PER_UNIT,
            _ => 0,
        };
        let info = mem.map(|m| StorageInfoWriter::new(m.info));
        let mut drv = BlkDriver {
            k,
            console,
            dev,
            data,
            data_size: data.size(),
            capacity,
            mem,
            queues: None,
            info: None,
            held: None,
            pending: [None; virtio::MAX_REQ_SLOTS],
            stats: Stats::default(),
            deferred: None,
            life: None,
            crash: CrashPlan::BUILT_IN,
            crash_counted: 0,
        };
        match info {
            Some(Ok(w)) => {
                drv.info = Some(w);
                drv.publish_info();
            }
            Some(Err(e)) => {
                serial_println!(drv.console, drv.k, "blk_driver: storage info: {}", e);
            }
            None => {}
        }
        drv.begin_life();
        if let Err(e) = drv.service() {
            drv.count(&e);
            serial_println!(drv.console, drv.k, "blk_driver: init: {}", e);
        }
        drv
    }

    /// Starts this life's handshake ([`sddf_queue::restart`]): a new generation, announced to
    /// the client, which re-synchronises the queues and acknowledges it.
    fn begin_life(&mut self) {
        let Some(m) = self.mem else { return };
        match DriverLife::begin(m.info) {
            Ok(life) => {
                let g = life.generation();
                self.life = Some(life);
                if g > 1 {
                    serial_println!(
                        self.console,
                        self.k,
                        "blk_driver: restarted: generation {}, device re-initialised, waiting for the client",
                        g
                    );
                }
                if let Err(e) = self.k.notify(CLIENT) {
                    serial_println!(self.console, self.k, "blk_driver: announce: {}", e);
                }
            }
            Err(e) => serial_println!(self.console, self.k, "blk_driver: generation: {}", e),
        }
    }

    /// Whether the client acknowledged this life (the queues are in a state it set up).
    fn synchronised(&self) -> bool {
        self.life.as_ref().is_none_or(DriverLife::acknowledged)
    }

    /// This life's generation (0 without the handshake).
    pub fn generation(&self) -> u32 {
        self.life.as_ref().map_or(0, DriverLife::generation)
    }

    /// Replaces the fault-injection plan (tests; the target uses [`CrashPlan::BUILT_IN`]).
    pub fn set_crash_plan(&mut self, plan: CrashPlan) {
        self.crash = plan;
    }

    fn publish_info(&mut self) {
        let Some(w) = &self.info else { return };
        let Device::Live(d) = &self.dev else {
            w.set_ready(false);
            return;
        };
        let i = d.info();
        let mut s: BlkStorageInfo = zerocopy::FromZeros::new_zeroed();
        let sn = b"virtio-blk";
        s.serial_number[..sn.len()].copy_from_slice(sn);
        s.read_only = u8::from(d.has(feature::RO));
        s.sector_size = match i.blk_size {
            Some(b) if b.is_power_of_two() && (512..=BLK_TRANSFER_SIZE).contains(&b) => b as u16,
            _ => blk::SECTOR_SIZE as u16,
        };
        // In BLK_TRANSFER_SIZE units.
        s.block_size = 1;
        s.queue_depth = i.req_slots as u16;
        s.capacity = self.capacity;
        w.publish(&s);
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The kernel (tests look at what it recorded).
    pub fn kernel(&self) -> &K {
        &self.k
    }

    /// Where the device is.
    pub fn device_state(&self) -> DeviceState {
        match &self.dev {
            Device::Live(d) => DeviceState::Live(d.info()),
            Device::Absent(e) => DeviceState::Absent(*e),
            Device::Failed(e) => DeviceState::Failed(*e),
        }
    }

    /// Whether the device is live.
    pub fn device_live(&self) -> bool {
        matches!(self.dev, Device::Live(_))
    }

    /// Capacity in transfer units (0 without a device).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn count(&mut self, e: &DriverError) {
        match e {
            DriverError::Setup(..) | DriverError::Corrupt(..) => self.stats.queue_errors += 1,
            DriverError::Device(_) => self.stats.device_errors += 1,
            _ => {}
        }
    }

    fn attach(&mut self) -> Result<(), DriverError> {
        if self.queues.is_some() {
            return Ok(());
        }
        let m = self.mem.ok_or(DriverError::NoQueue)?;
        let req = BlkReqConsumer::new(m.req, QUEUE_CAPACITY)
            .map_err(|e| DriverError::Setup(Queue::Request, e))?;
        let resp = BlkRespProducer::new(m.resp, QUEUE_CAPACITY)
            .map_err(|e| DriverError::Setup(Queue::Response, e))?;
        self.queues = Some(Queues { req, resp });
        Ok(())
    }

    /// Checks a request against the data region and the capacity.
    fn decode(&self, r: &BlkReq) -> Decoded {
        let bad = Decoded::Answer(BlkRespStatus::ERR_INVALID_PARAM, 0);
        match r.code {
            BlkReqCode::READ | BlkReqCode::WRITE => {}
            BlkReqCode::FLUSH => {
                return match &self.dev {
                    Device::Live(d) if d.has(feature::FLUSH) => Decoded::Device(Op::Flush),
                    // No volatile write cache: writes are durable when they complete.
                    Device::Live(_) => Decoded::Answer(BlkRespStatus::OK, 0),
                    _ => Decoded::Device(Op::Flush),
                };
            }
            BlkReqCode::BARRIER => return Decoded::Barrier,
            _ => return bad,
        }
        let count = u64::from(r.count);
        let len = count * u64::from(BLK_TRANSFER_SIZE);
        let in_data = r
            .io_or_offset
            .checked_add(len)
            .is_some_and(|end| end <= self.data_size);
        let in_disk = r
            .block_number
            .checked_add(count)
            .is_some_and(|end| end <= self.capacity);
        if count == 0 || !in_data || (self.device_live() && !in_disk) {
            return bad;
        }
        let paddr = match self.data.translate(r.io_or_offset, len) {
            Some(p) => p,
            None => return bad,
        };
        let sector = r.block_number * SECTORS_PER_UNIT;
        // len ≤ 65535 × 4096 < 2³².
        let len = len as u32;
        if r.code == BlkReqCode::READ {
            Decoded::Device(Op::Read { sector, paddr, len })
        } else {
            Decoded::Device(Op::Write { sector, paddr, len })
        }
    }

    fn respond(&mut self, status: BlkRespStatus, count: u16, id: u32) -> Result<(), DriverError> {
        match status {
            BlkRespStatus::OK => self.stats.ok += 1,
            BlkRespStatus::ERR_INVALID_PARAM => self.stats.invalid += 1,
            BlkRespStatus::ERR_NO_DEVICE => self.stats.no_device += 1,
            _ => self.stats.io_errors += 1,
        }
        let q = self.queues.as_mut().ok_or(DriverError::NoQueue)?;
        match q.resp.enqueue(&BlkResp::new(status, count, id)) {
            Ok(()) => Ok(()),
            Err(EnqueueError::Full) => {
                self.stats.lost_responses += 1;
                Err(DriverError::Corrupt(
                    Queue::Response,
                    QueueError::OutOfRange {
                        head: 0,
                        tail: QUEUE_CAPACITY,
                        capacity: QUEUE_CAPACITY,
                    },
                ))
            }
            Err(EnqueueError::Corrupt(e)) => {
                self.stats.lost_responses += 1;
                Err(DriverError::Corrupt(Queue::Response, e))
            }
        }
    }

    /// Handles one request; returns it if it must wait (no free slot, or a barrier behind
    /// requests in flight).
    fn handle(&mut self, r: BlkReq) -> Result<Option<BlkReq>, DriverError> {
        let op = match self.decode(&r) {
            Decoded::Answer(s, c) => return self.respond(s, c, r.id).map(|()| None),
            Decoded::Barrier => {
                if matches!(&self.dev, Device::Live(d) if d.in_flight() > 0) {
                    return Ok(Some(r));
                }
                return self.respond(BlkRespStatus::OK, 0, r.id).map(|()| None);
            }
            Decoded::Device(op) => op,
        };
        let d = match &mut self.dev {
            Device::Live(d) => d,
            Device::Absent(_) => {
                return self
                    .respond(BlkRespStatus::ERR_NO_DEVICE, 0, r.id)
                    .map(|()| None);
            }
            Device::Failed(_) => {
                return self.respond(BlkRespStatus::ERR_IO, 0, r.id).map(|()| None);
            }
        };
        let Some(slot) = d.free_slot() else {
            return Ok(Some(r));
        };
        match d.submit(slot, op) {
            Ok(()) => {
                self.pending[slot] = Some(Pending {
                    id: r.id,
                    count: r.count,
                });
                self.stats.submitted += 1;
                Ok(None)
            }
            Err(e @ DeviceError::OutsideDma { .. }) => {
                // Refused before the device saw it (decode checks the same bounds first).
                self.respond(BlkRespStatus::ERR_INVALID_PARAM, 0, r.id)?;
                Err(DriverError::Device(e))
            }
            Err(e) => {
                self.respond(BlkRespStatus::ERR_IO, 0, r.id)?;
                Err(DriverError::Device(e))
            }
        }
    }

    /// Moves requests from the queue to the device (or answers them) while every one of them
    /// is sure of room for its response.
    fn service_requests(&mut self) -> Result<(), DriverError> {
        if !self.synchronised() {
            return Ok(());
        }
        self.attach()?;
        let mut result = Ok(());
        loop {
            let in_flight = match &self.dev {
                Device::Live(d) => d.in_flight() as u32,
                _ => 0,
            };
            let q = self.queues.as_mut().ok_or(DriverError::NoQueue)?;
            match q.resp.free() {
                Ok(free) if free > in_flight => {}
                Ok(_) => break,
                Err(e) => {
                    first(&mut result, Err(DriverError::Corrupt(Queue::Response, e)));
                    break;
                }
            }
            let r = match self.held.take() {
                Some(r) => r,
                None => match q.req.dequeue() {
                    Ok(Some(r)) => {
                        self.stats.requests += 1;
                        if self.crash.counts(&r) {
                            self.crash_counted += 1;
                            let on_device = self.pending.iter().flatten().count() as u64;
                            if self
                                .crash
                                .due(self.generation(), self.crash_counted, on_device)
                            {
                                self.crash_now(&r);
                            }
                        }
                        r
                    }
                    Ok(None) => break,
                    Err(e) => {
                        first(&mut result, Err(DriverError::Corrupt(Queue::Request, e)));
                        break;
                    }
                },
            };
            match self.handle(r) {
                Ok(None) => {}
                Ok(Some(r)) => {
                    self.held = Some(r);
                    break;
                }
                Err(e) => first(&mut result, Err(e)),
            }
        }
        if let Device::Live(d) = &mut self.dev
            && let Err(e) = d.publish()
        {
            first(&mut result, Err(DriverError::Device(e)));
        }
        result
    }

    /// Fault injection: the driver dies here (the request taken, earlier ones on the device).
    #[cfg(all(
        feature = "fault-injection",
        target_arch = "aarch64",
        target_os = "none"
    ))]
    fn crash_now(&mut self, r: &BlkReq) {
        serial_println!(
            self.console,
            self.k,
            "blk_driver: fault injection: crashing at request {} (id {}), {} on the device",
            self.crash_counted,
            r.id,
            self.pending.iter().flatten().count()
        );
        microkit_rt::fault_injection::wild_load();
    }

    /// Fault injection is built only for the target with the `fault-injection` feature; a
    /// plan set in host tests only records that the crash was due.
    #[cfg(not(all(
        feature = "fault-injection",
        target_arch = "aarch64",
        target_os = "none"
    )))]
    fn crash_now(&mut self, r: &BlkReq) {
        self.stats.crashes_due += 1;
        let _ = r;
    }

    fn fail_device(&mut self, e: DeviceError) -> Result<(), DriverError> {
        let mut result = Err(DriverError::Device(e));
        if let Device::Live(d) = &mut self.dev {
            d.reset();
            let mut slots = [false; virtio::MAX_REQ_SLOTS];
            for s in d.abandon_all() {
                slots[s] = true;
            }
            for (s, _) in slots.iter().enumerate().filter(|(_, b)| **b) {
                if let Some(p) = self.pending[s].take() {
                    first(&mut result, self.respond(BlkRespStatus::ERR_IO, 0, p.id));
                }
            }
        }
        self.dev = Device::Failed(e);
        if let Some(w) = &self.info {
            w.set_ready(false);
        }
        result
    }

    /// The device interrupt: acknowledge, then collect every used chain.
    fn service_irq(&mut self) -> Result<(), DriverError> {
        self.stats.irqs += 1;
        let Device::Live(d) = &mut self.dev else {
            return Ok(());
        };
        if let Err(e) = d.ack_interrupt() {
            return self.fail_device(e);
        }
        self.attach()?;
        let mut result = Ok(());
        // Bounded: at most a queue's worth per interrupt (the rest raises no new interrupt, but
        // is collected on the next event).
        for _ in 0..virtio::QUEUE_SIZE_MAX {
            let Device::Live(d) = &mut self.dev else {
                break;
            };
            let done = match d.pop_used() {
                Ok(Some(done)) => done,
                Ok(None) => break,
                Err(e @ DeviceError::BadUsedId(_)) => {
                    self.stats.device_errors += 1;
                    serial_println!(self.console, self.k, "blk_driver: device: {:?}", e);
                    continue;
                }
                Err(e) => {
                    first(&mut result, self.fail_device(e));
                    break;
                }
            };
            let Some(p) = self.pending[done.slot].take() else {
                continue;
            };
            let (status, count) = match done.status {
                blk::S_OK => (BlkRespStatus::OK, p.count),
                blk::S_UNSUPP => (BlkRespStatus::ERR_INVALID_PARAM, 0),
                _ => (BlkRespStatus::ERR_IO, 0),
            };
            first(&mut result, self.respond(status, count, p.id));
        }
        result
    }

    /// Serves the queues and notifies the client if responses were published.
    fn service(&mut self) -> Result<(), DriverError> {
        let mut result = self.service_requests();
        if let Some(q) = &mut self.queues
            && q.resp.take_notify()
        {
            first(
                &mut result,
                self.k.notify(CLIENT).map_err(DriverError::Kernel),
            );
        }
        result
    }
}

impl<K: Kernel, R: Regs> Handler for BlkDriver<'_, K, R> {
    type Error = DriverError;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), DriverError> {
        let mut result = Ok(());
        if channels.contains(IRQ_CHANNEL) {
            self.deferred = Some(DeferredAction::IrqAck(IRQ_CHANNEL));
            first(&mut result, self.service_irq());
        }
        // Always: an interrupt frees slots, a notification brings requests.
        first(&mut result, self.service());
        let unexpected = channels.bits() & !((1 << IRQ_CHANNEL.index()) | (1 << CLIENT.index()));
        if unexpected != 0 {
            serial_println!(
                self.console,
                self.k,
                "blk_driver: ignored notification on channels {:#x}",
                unexpected
            );
        }
        if let Err(e) = &result {
            self.count(e);
        }
        result
    }

    fn take_deferred_action(&mut self) -> Option<DeferredAction> {
        self.deferred.take()
    }

    /// The event loop's reports take the PD's TX queue too.
    fn report(&mut self, what: &str, detail: &dyn core::fmt::Display) -> bool {
        serial_println!(self.console, self.k, "blk_driver: {}: {}", what, detail);
        true
    }
}

/// The driver as the target builds it, from the regions and addresses system.xml gives the PD.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn from_system<K: Kernel>(mut k: K) -> BlkDriver<'static, K, Option<SharedRegion>> {
    let mut console = Console::from_regions(
        system::SERIAL_DRIVER,
        system::serial_tx_queue_blk_driver_region(),
        system::serial_tx_data_blk_driver_region(),
    );
    let regs = system::blk_regs_region()
        .map_err(|e| serial_println!(console, k, "blk_driver: register region: {:?}", e))
        .ok();
    let dma = system::blk_dma_region()
        .map_err(|e| serial_println!(console, k, "blk_driver: DMA region: {:?}", e))
        .ok();
    let mem = QueueMem::from_regions(
        system::blk_req_queue_blk_virt_region(),
        system::blk_resp_queue_blk_virt_region(),
        system::blk_storage_info_blk_virt_region(),
    )
    .map_err(|e| serial_println!(console, k, "blk_driver: queues: {:?}", e))
    .ok();
    BlkDriver::new(
        k,
        console,
        regs,
        PhysWindow {
            paddr: system::map::blk_regs::PHYS_ADDR,
            size: system::map::blk_regs::SIZE as u64,
        },
        dma,
        system::dma_paddr.get(),
        data_space(),
        mem,
    )
}

/// The driver's data space as system.xml describes it: every `blk_data_*` region whose physical
/// address it is told, in order (`sdf::blk::data_space`, which the block virtualiser's client
/// table is generated from too).
pub fn data_space() -> DataSpace {
    let mut space = DataSpace::empty();
    for (region, size, paddr) in system::PADDRS {
        if region.starts_with("blk_data_") {
            space.push(PhysWindow {
                paddr: paddr.get(),
                size: *size as u64,
            });
        }
    }
    space
}
