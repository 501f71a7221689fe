//! The virtio-blk device model (virtio 1.2 §5.2): owns request parsing, the conversion from
//! 512-byte virtio sectors to the 4096-byte units of the block backend, the read-modify-write of
//! partially covered units, and the request state machine around an asynchronous backend.
//!
//! The model does no I/O itself. It hands [`BackendOp`]s to a [`BlockBackend`] (in the VMM: the
//! shared-memory queues to the block driver PD, which never sees guest RAM) and moves data
//! between guest buffers and the backend's staging buffer ([`BlockBackend::staging`], the data
//! region shared with the driver). A backend completes an operation either at once
//! ([`Submitted::Completed`]) or later, when the VMM delivers a [`Completion`] through
//! [`crate::mmio::MmioTransport::device_event`].
//!
//! Up to [`MAX_REQUESTS`] virtio requests are in progress at once, each in a slot with its own
//! equal share of the staging buffer (as many slots as the buffer has whole units for), moved
//! through that share in windows of at most its size. Per window ([`Phase`]):
//! - read (`IN`): `Reading` — the backend reads the window's units into staging; then the bytes
//!   the request covers are copied to the guest;
//! - write (`OUT`): if the window's first or last unit is only partly covered (an unaligned
//!   request), `Filling` — the backend first reads those units (at most two operations), so that
//!   the neighbouring sectors are preserved; then the guest's bytes are merged into staging and
//!   `Writing` writes the whole units;
//! - `FLUSH`: `Flushing`.
//!
//! Requests start in the order they arrive, and one waits before its first backend operation
//! while an earlier request still in progress shares a unit with it (so two writes sharing a
//! unit never interleave their read-modify-write, and a read sees a write posted before it), or
//! while either of them is a FLUSH (a flush covers every write before it; nothing overtakes it).
//! Requests that share nothing run side by side and complete in any order, as virtio allows. A
//! slot's staging share is never reused under a running operation — also after a device reset,
//! when outstanding operations are *abandoned*: their completions are recognised by tag and
//! dropped, and their slot takes a new request only once every one of them has come back.
//!
//! Request validation (each failure is reported as VIRTIO_BLK_S_IOERR in the status byte):
//! the chain passed every [`crate::queue`] check; the header (16 bytes) is readable; `IN` and
//! `GET_ID` have no readable bytes beyond the header and `OUT` no writable byte besides the status
//! (a direction mismatch); data lengths are multiples of 512; the sector range lies within the
//! capacity (checked arithmetic); writes to read-only storage; guest buffers refused by guest
//! memory; backend errors. Unknown request types, and FLUSH when VIRTIO_BLK_F_FLUSH was not
//! negotiated, get VIRTIO_BLK_S_UNSUPP. A chain without a usable status byte (last descriptor not
//! device-writable or not in guest RAM, or no end) cannot be answered: the device goes to
//! DEVICE_NEEDS_RESET.

use vmm_core::addr::GuestPhysAddr;
use vmm_core::memory::GuestMemory;

use crate::feature::{EVENT_IDX, VERSION_1};
use crate::mmio::{DeviceError, Notify, VirtioDevice};
use crate::queue::{DescChain, Queue};

/// DeviceID of a block device.
pub const DEVICE_ID: u32 = 2;
/// The virtio sector (the unit of `sector` and `capacity`).
pub const SECTOR_SIZE: u64 = 512;
/// The backend's transfer unit.
pub const UNIT_SIZE: u64 = 4096;
/// Longest descriptor chain accepted (header + data segments + status).
pub const MAX_CHAIN: usize = 128;
/// Largest `seg_max` the device can honour.
pub const MAX_SEG: u32 = MAX_CHAIN as u32 - 2;
/// Length of the device ID string.
pub const ID_BYTES: usize = 20;
/// Size of the configuration space (`struct virtio_blk_config` up to its `zoned` part).
pub const CONFIG_SIZE: usize = 96;
/// Requests in progress at once (each in its own share of the staging buffer).
pub const MAX_REQUESTS: usize = 4;
/// Most backend operations outstanding at once (the two fills of a read-modify-write, per
/// request in progress).
pub const MAX_OUTSTANDING: usize = 2 * MAX_REQUESTS;

const HEADER: u64 = 16;

/// virtio-blk feature bits.
pub mod feature {
    /// VIRTIO_BLK_F_SIZE_MAX: `size_max` is valid.
    pub const SIZE_MAX: u64 = 1 << 1;
    /// VIRTIO_BLK_F_SEG_MAX: `seg_max` is valid.
    pub const SEG_MAX: u64 = 1 << 2;
    /// VIRTIO_BLK_F_RO: the device is read-only.
    pub const RO: u64 = 1 << 5;
    /// VIRTIO_BLK_F_BLK_SIZE: `blk_size` is valid.
    pub const BLK_SIZE: u64 = 1 << 6;
    /// VIRTIO_BLK_F_FLUSH: the FLUSH command exists.
    pub const FLUSH: u64 = 1 << 9;
}

/// Request types.
pub mod req_type {
    /// Read.
    pub const IN: u32 = 0;
    /// Write.
    pub const OUT: u32 = 1;
    /// Flush the write cache.
    pub const FLUSH: u32 = 4;
    /// Fetch the device ID string.
    pub const GET_ID: u32 = 8;
}

/// Request status bytes.
pub mod blk_status {
    /// Success.
    pub const OK: u8 = 0;
    /// Device or driver error.
    pub const IOERR: u8 = 1;
    /// Request unsupported.
    pub const UNSUPP: u8 = 2;
}

/// What the backend's storage looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageInfo {
    /// Capacity in [`UNIT_SIZE`]-byte blocks.
    pub blocks: u64,
    /// Writes are refused.
    pub read_only: bool,
}

/// Identifies one backend operation; the backend returns it in the [`Completion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag(pub u32);

/// One operation for the backend, in [`UNIT_SIZE`]-byte blocks. `offset` is the byte offset in
/// the staging buffer (a multiple of [`UNIT_SIZE`]) where the data is or goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendOp {
    /// Read `count` blocks from `block` into staging.
    Read {
        /// Operation tag.
        tag: Tag,
        /// First block.
        block: u64,
        /// Number of blocks (at least 1).
        count: u32,
        /// Staging offset.
        offset: usize,
    },
    /// Write `count` blocks from staging to `block`.
    Write {
        /// Operation tag.
        tag: Tag,
        /// First block.
        block: u64,
        /// Number of blocks (at least 1).
        count: u32,
        /// Staging offset.
        offset: usize,
    },
    /// Make previous writes durable.
    Flush {
        /// Operation tag.
        tag: Tag,
    },
}

impl BackendOp {
    /// The operation's tag.
    pub fn tag(&self) -> Tag {
        match *self {
            BackendOp::Read { tag, .. }
            | BackendOp::Write { tag, .. }
            | BackendOp::Flush { tag } => tag,
        }
    }
}

/// A backend failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    /// The storage failed the operation.
    Io,
    /// The backend could not take the operation (queue full, not connected).
    Unavailable,
}

/// How the backend took an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Done, successfully, before `submit` returned.
    Completed,
    /// Under way: a [`Completion`] with its tag will follow.
    Pending,
}

/// The end of a [`Submitted::Pending`] operation, delivered by the VMM as the device's event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The operation's tag.
    pub tag: Tag,
    /// Its result.
    pub result: Result<(), BackendError>,
}

/// The storage behind the device (in the VMM: the block driver PD over shared-memory queues).
///
/// The backend must accept [`MAX_OUTSTANDING`] operations at once, and must not touch the
/// staging buffer except for the operations it was given.
pub trait BlockBackend {
    /// Capacity and access.
    fn info(&self) -> StorageInfo;
    /// The staging buffer: data of the operations, at the offsets they name. At least one
    /// [`UNIT_SIZE`] block; a whole number of blocks is used.
    fn staging(&mut self) -> &mut [u8];
    /// Starts an operation. An `Err` means the operation failed (it will not complete later).
    fn submit(&mut self, op: BackendOp) -> Result<Submitted, BackendError>;
}

/// The `blk_size` the device advertises (the driver's logical block size). The protocol stays in
/// 512-byte sectors either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlkSize {
    /// 512-byte blocks: the driver may issue requests that are not 4096-aligned.
    B512,
    /// 4096-byte blocks: a well-behaved driver only issues whole units.
    B4096,
}

/// Device configuration chosen by the VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkConfig {
    /// Advertised block size.
    pub blk_size: BlkSize,
    /// Advertised maximum data segments per request (1..=[`MAX_SEG`]).
    pub seg_max: u32,
    /// Advertised maximum segment size in bytes (at least 512).
    pub size_max: u32,
    /// QueueNumMax of the request queue (a power of two, at most 32768).
    pub queue_size: u16,
    /// The GET_ID string (NUL-padded).
    pub id: [u8; ID_BYTES],
}

impl Default for BlkConfig {
    fn default() -> Self {
        let mut id = [0u8; ID_BYTES];
        id[..8].copy_from_slice(b"sel4-vmm");
        BlkConfig {
            blk_size: BlkSize::B512,
            seg_max: MAX_SEG,
            size_max: 1 << 16,
            queue_size: 256,
            id,
        }
    }
}

/// Why a device could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlkConfigError {
    /// The staging buffer holds no whole [`UNIT_SIZE`] block.
    StagingTooSmall,
    /// The capacity in sectors does not fit in 64 bits.
    CapacityTooLarge,
    /// `seg_max` is 0 or above [`MAX_SEG`].
    SegMax,
    /// `size_max` is below 512.
    SizeMax,
    /// `queue_size` is 0, not a power of two, or above 32768.
    QueueSize,
}

/// Counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlkStats {
    /// Requests popped.
    pub requests: u64,
    /// Completed with OK.
    pub ok: u64,
    /// Completed with IOERR.
    pub ioerr: u64,
    /// Completed with UNSUPP.
    pub unsupp: u64,
    /// Chains that failed the queue's per-descriptor checks.
    pub bad_chains: u64,
    /// Units read for a read-modify-write.
    pub rmw_fills: u64,
    /// Backend operations submitted.
    pub backend_ops: u64,
    /// Backend operations that failed.
    pub backend_errors: u64,
    /// Completions of abandoned operations (after a reset).
    pub stale_completions: u64,
    /// Completions with a tag the device never issued or already saw.
    pub unknown_completions: u64,
    /// Requests dropped unanswered because the queue was disabled or the device reset.
    pub abandoned: u64,
    /// Most requests in progress at once.
    pub peak_in_progress: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Flush,
}

/// A request in progress.
#[derive(Debug, Clone, Copy)]
struct Request {
    head: u16,
    kind: Kind,
    /// Disk byte offset of the data.
    pos: u64,
    /// Data length in bytes.
    len: u64,
    /// Data bytes transferred so far.
    done: u64,
    /// Where the status byte goes.
    status: GuestPhysAddr,
    /// Bytes written into the guest's buffers (for the used ring), status byte excluded.
    written: u32,
    /// Order of arrival: a request waits for every earlier one it conflicts with.
    seq: u64,
    /// Its first backend operation was submitted (it no longer waits for conflicts).
    started: bool,
}

const NO_REQUEST: Request = Request {
    head: 0,
    kind: Kind::Read,
    pos: 0,
    len: 0,
    done: 0,
    status: GuestPhysAddr(0),
    written: 0,
    seq: 0,
    started: false,
};

/// One staging window: units `unit..unit + units`, of which the request covers `len` bytes
/// starting `skip` bytes into the first unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    unit: u64,
    units: u32,
    skip: usize,
    len: usize,
}

/// The state of a request slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request.
    Idle,
    /// The next window is to be submitted (the first one once no earlier request in progress
    /// conflicts with this one).
    Issue,
    /// A window read is outstanding.
    Reading(Window),
    /// Reads of partially covered units are outstanding (`pending` of them).
    Filling { win: Window, pending: u8 },
    /// A window write is outstanding.
    Writing(Window),
    /// A flush is outstanding.
    Flushing,
    /// The request is over, with this status; it goes to the used ring next.
    Finished(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Data,
    Fill,
    Flush,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Op {
    tag: u32,
    role: Role,
    /// The request slot whose staging share the operation uses.
    slot: usize,
    abandoned: bool,
}

/// A request slot: one request in progress, its chain, and its share of the staging buffer.
struct Slot {
    chain: DescChain<MAX_CHAIN>,
    req: Request,
    phase: Phase,
}

impl Slot {
    fn new() -> Self {
        Slot {
            chain: DescChain::new(),
            req: NO_REQUEST,
            phase: Phase::Idle,
        }
    }

    /// Holds a request that has not finished (it occupies its units until it has).
    fn active(&self) -> bool {
        !matches!(self.phase, Phase::Idle | Phase::Finished(_))
    }

    /// The units a read or write covers (flushes cover everything, see `conflicts`).
    fn units(&self) -> (u64, u64) {
        let r = self.req;
        (r.pos / UNIT_SIZE, (r.pos + r.len.max(1) - 1) / UNIT_SIZE)
    }
}

/// The virtio-blk device.
pub struct BlkDevice<B: BlockBackend> {
    backend: B,
    config: BlkConfig,
    capacity: u64,
    read_only: bool,
    queue_sizes: [u16; 1],
    acked: u64,
    slots: [Slot; MAX_REQUESTS],
    /// Slots in use: as many as the staging buffer has room for, at most [`MAX_REQUESTS`].
    nslots: usize,
    /// Units of staging per slot (slot `i`'s share starts at `i * slot_units` units).
    slot_units: u64,
    next_seq: u64,
    ops: [Option<Op>; MAX_OUTSTANDING],
    next_tag: u32,
    stats: BlkStats,
}

impl<B: BlockBackend> BlkDevice<B> {
    /// A device over `backend` (its capacity is read once, here).
    pub fn new(mut backend: B, config: BlkConfig) -> Result<Self, BlkConfigError> {
        if config.seg_max == 0 || config.seg_max > MAX_SEG {
            return Err(BlkConfigError::SegMax);
        }
        if u64::from(config.size_max) < SECTOR_SIZE {
            return Err(BlkConfigError::SizeMax);
        }
        let qs = config.queue_size;
        if qs == 0 || !qs.is_power_of_two() || qs > crate::queue::MAX_QUEUE_SIZE {
            return Err(BlkConfigError::QueueSize);
        }
        let staging_units = backend.staging().len() as u64 / UNIT_SIZE;
        if staging_units == 0 {
            return Err(BlkConfigError::StagingTooSmall);
        }
        let nslots = staging_units.min(MAX_REQUESTS as u64) as usize;
        let info = backend.info();
        let capacity = info
            .blocks
            .checked_mul(UNIT_SIZE / SECTOR_SIZE)
            .filter(|c| c.checked_mul(SECTOR_SIZE).is_some())
            .ok_or(BlkConfigError::CapacityTooLarge)?;
        Ok(BlkDevice {
            backend,
            config,
            capacity,
            read_only: info.read_only,
            queue_sizes: [qs],
            acked: 0,
            slots: core::array::from_fn(|_| Slot::new()),
            nslots,
            slot_units: staging_units / nslots as u64,
            next_seq: 0,
            ops: [None; MAX_OUTSTANDING],
            next_tag: 0,
            stats: BlkStats::default(),
        })
    }
    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// The backend, mutably (e.g. to collect its completions).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }
    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
    /// Counters.
    pub fn stats(&self) -> &BlkStats {
        &self.stats
    }
    /// Whether a request is in progress.
    pub fn busy(&self) -> bool {
        self.slots.iter().any(|s| s.phase != Phase::Idle)
    }
    /// Requests in progress.
    pub fn in_progress(&self) -> usize {
        self.slots.iter().filter(|s| s.phase != Phase::Idle).count()
    }
    /// Requests the device works on at once (the staging buffer's share each gets: see the
    /// module's documentation).
    pub fn depth(&self) -> usize {
        self.nslots
    }
    /// Number of backend operations outstanding (abandoned ones included).
    pub fn outstanding(&self) -> usize {
        self.ops.iter().flatten().count()
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE] {
        let mut c = [0u8; CONFIG_SIZE];
        let blk_size: u32 = match self.config.blk_size {
            BlkSize::B512 => 512,
            BlkSize::B4096 => 4096,
        };
        c[0..8].copy_from_slice(&self.capacity.to_le_bytes());
        c[8..12].copy_from_slice(&self.config.size_max.to_le_bytes());
        c[12..16].copy_from_slice(&self.config.seg_max.to_le_bytes());
        c[20..24].copy_from_slice(&blk_size.to_le_bytes());
        // num_queues (meaningful with VIRTIO_BLK_F_MQ only, which is not offered).
        c[34..36].copy_from_slice(&1u16.to_le_bytes());
        c
    }

    /// Gives up every request in progress (unanswered) and marks outstanding operations as
    /// abandoned, so that their completions are dropped.
    fn abandon(&mut self) {
        for s in self.slots.iter_mut() {
            if s.phase != Phase::Idle {
                self.stats.abandoned += 1;
                s.phase = Phase::Idle;
            }
        }
        for op in self.ops.iter_mut().flatten() {
            op.abandoned = true;
        }
    }

    /// Ends slot `i`'s request with `status`; its outstanding operations are abandoned.
    fn finish_with(&mut self, i: usize, status: u8) {
        for op in self.ops.iter_mut().flatten() {
            if op.slot == i {
                op.abandoned = true;
            }
        }
        if let Some(s) = self.slots.get_mut(i) {
            s.phase = Phase::Finished(status);
        }
    }

    fn phase(&self, i: usize) -> Phase {
        self.slots.get(i).map_or(Phase::Idle, |s| s.phase)
    }

    fn set_phase(&mut self, i: usize, phase: Phase) {
        if let Some(s) = self.slots.get_mut(i) {
            s.phase = phase;
        }
    }

    fn req(&self, i: usize) -> Request {
        self.slots.get(i).map_or(NO_REQUEST, |s| s.req)
    }

    /// Byte offset of slot `i`'s share of the staging buffer.
    fn base(&self, i: usize) -> usize {
        (i as u64 * self.slot_units * UNIT_SIZE) as usize
    }

    /// The staging bytes `win` covers for the request in slot `i`.
    fn staged(&self, i: usize, win: Window) -> core::ops::Range<usize> {
        let start = self.base(i) + win.skip;
        start..start + win.len
    }

    /// Submits `op` for slot `i` (its tag is assigned here, its offset is moved into the slot's
    /// share); `None` while it is outstanding, else its result.
    fn submit(&mut self, i: usize, role: Role, op: BackendOp) -> Option<Result<(), BackendError>> {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        let base = self.base(i);
        let op = match op {
            BackendOp::Read {
                block,
                count,
                offset,
                ..
            } => BackendOp::Read {
                tag: Tag(tag),
                block,
                count,
                offset: base + offset,
            },
            BackendOp::Write {
                block,
                count,
                offset,
                ..
            } => BackendOp::Write {
                tag: Tag(tag),
                block,
                count,
                offset: base + offset,
            },
            BackendOp::Flush { .. } => BackendOp::Flush { tag: Tag(tag) },
        };
        let Some(free) = self.ops.iter().position(Option::is_none) else {
            // Unreachable by construction (at most two operations per request in progress).
            return Some(Err(BackendError::Unavailable));
        };
        self.stats.backend_ops += 1;
        match self.backend.submit(op) {
            Ok(Submitted::Pending) => {
                if let Some(s) = self.ops.get_mut(free) {
                    *s = Some(Op {
                        tag,
                        role,
                        slot: i,
                        abandoned: false,
                    });
                }
                None
            }
            Ok(Submitted::Completed) => Some(Ok(())),
            Err(e) => {
                self.stats.backend_errors += 1;
                Some(Err(e))
            }
        }
    }

    /// Parses the chain just popped into slot `i` and starts the request (or finishes it at
    /// once).
    fn start<M: GuestMemory>(&mut self, i: usize, mem: &mut M) -> Result<(), DeviceError> {
        self.stats.requests += 1;
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let Some(slot) = self.slots.get_mut(i) else {
            return Ok(());
        };
        let head = slot.chain.head();
        let Some(status) = slot.chain.status_byte() else {
            return Err(DeviceError::Unreportable {
                queue: 0,
                head,
                error: slot.chain.error(),
            });
        };
        slot.req = Request {
            head,
            status,
            seq,
            ..NO_REQUEST
        };
        if slot.chain.error().is_some() {
            self.stats.bad_chains += 1;
            slot.phase = Phase::Finished(blk_status::IOERR);
            return Ok(());
        }
        let phase = self.parse(i, mem);
        self.set_phase(i, phase);
        let n = self.in_progress() as u64;
        self.stats.peak_in_progress = self.stats.peak_in_progress.max(n);
        Ok(())
    }

    fn parse<M: GuestMemory>(&mut self, i: usize, mem: &mut M) -> Phase {
        use blk_status::{IOERR, OK, UNSUPP};
        let (acked, read_only, id) = (self.acked, self.read_only, self.config.id);
        let capacity_bytes = self.capacity * SECTOR_SIZE;
        let Some(slot) = self.slots.get_mut(i) else {
            return Phase::Idle;
        };
        let mut h = [0u8; HEADER as usize];
        if slot.chain.read(&*mem, 0, &mut h).is_err() {
            return Phase::Finished(IOERR);
        }
        let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = h;
        let ty = u32::from_le_bytes([t0, t1, t2, t3]);
        let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
        let readable = u64::from(slot.chain.readable_len());
        // The status byte exists, so the writable stream has at least one byte.
        let data_in = u64::from(slot.chain.writable_len()).saturating_sub(1);
        match ty {
            req_type::IN if readable == HEADER => {
                rw(&mut slot.req, capacity_bytes, Kind::Read, sector, data_in)
            }
            req_type::OUT if data_in == 0 && !read_only => rw(
                &mut slot.req,
                capacity_bytes,
                Kind::Write,
                sector,
                readable - HEADER,
            ),
            req_type::IN | req_type::OUT => Phase::Finished(IOERR),
            req_type::FLUSH if acked & feature::FLUSH != 0 => {
                slot.req.kind = Kind::Flush;
                Phase::Issue
            }
            req_type::GET_ID if readable == HEADER && data_in > 0 => {
                let n = core::cmp::min(data_in, ID_BYTES as u64) as usize;
                match slot.chain.write(mem, 0, id.get(..n).unwrap_or(&[])) {
                    Ok(()) => {
                        slot.req.written = n as u32;
                        Phase::Finished(OK)
                    }
                    Err(_) => Phase::Finished(IOERR),
                }
            }
            req_type::GET_ID => Phase::Finished(IOERR),
            _ => Phase::Finished(UNSUPP),
        }
    }

    /// Whether slot `i`'s request must wait for an earlier one still in progress: one whose
    /// units overlap its own (a read-modify-write of a shared unit, or a read after a write,
    /// must see the earlier request whole), or a flush on either side (a flush covers every
    /// write before it, and nothing after it overtakes it).
    fn conflicts(&self, i: usize) -> bool {
        let Some(me) = self.slots.get(i) else {
            return false;
        };
        let (lo, hi) = me.units();
        self.slots.iter().enumerate().any(|(j, other)| {
            j != i
                && other.active()
                && other.req.seq < me.req.seq
                && (me.req.kind == Kind::Flush || other.req.kind == Kind::Flush || {
                    let (olo, ohi) = other.units();
                    olo <= hi && lo <= ohi
                })
        })
    }

    /// Submits slot `i`'s next window (or its flush).
    fn issue<M: GuestMemory>(&mut self, i: usize, mem: &mut M) {
        let r = self.req(i);
        if let Some(s) = self.slots.get_mut(i) {
            s.req.started = true;
        }
        if r.kind == Kind::Flush {
            self.set_phase(i, Phase::Flushing);
            if let Some(res) = self.submit(i, Role::Flush, BackendOp::Flush { tag: Tag(0) }) {
                self.on_done(i, Role::Flush, res, mem);
            }
            return;
        }
        let pos = r.pos + r.done;
        let end = r.pos + r.len;
        let unit = pos / UNIT_SIZE;
        let last = (end - 1) / UNIT_SIZE;
        let units = (last - unit + 1)
            .min(self.slot_units)
            .min(u64::from(u32::MAX));
        if units == 0 {
            self.finish_with(i, blk_status::IOERR);
            return;
        }
        let win_end = end.min((unit + units) * UNIT_SIZE);
        let win = Window {
            unit,
            units: units as u32,
            skip: (pos - unit * UNIT_SIZE) as usize,
            len: (win_end - pos) as usize,
        };
        match r.kind {
            Kind::Read => {
                self.set_phase(i, Phase::Reading(win));
                let op = BackendOp::Read {
                    tag: Tag(0),
                    block: win.unit,
                    count: win.units,
                    offset: 0,
                };
                if let Some(res) = self.submit(i, Role::Data, op) {
                    self.on_done(i, Role::Data, res, mem);
                }
            }
            _ => {
                let unit_bytes = UNIT_SIZE as usize;
                let head_partial = win.skip != 0;
                let tail_partial = !(win.skip + win.len).is_multiple_of(unit_bytes);
                let tail_unit = win.units - 1;
                let mut fills: [Option<u32>; 2] = [None, None];
                if head_partial {
                    fills[0] = Some(0);
                }
                if tail_partial && !(head_partial && tail_unit == 0) {
                    fills[1] = Some(tail_unit);
                }
                let pending = fills.iter().flatten().count() as u8;
                if pending == 0 {
                    self.write_window(i, win, mem);
                    return;
                }
                self.set_phase(i, Phase::Filling { win, pending });
                for f in fills.into_iter().flatten() {
                    if !matches!(self.phase(i), Phase::Filling { .. }) {
                        break;
                    }
                    self.stats.rmw_fills += 1;
                    let op = BackendOp::Read {
                        tag: Tag(0),
                        block: win.unit + u64::from(f),
                        count: 1,
                        offset: f as usize * unit_bytes,
                    };
                    if let Some(res) = self.submit(i, Role::Fill, op) {
                        self.on_done(i, Role::Fill, res, mem);
                    }
                }
            }
        }
    }

    /// Merges the guest's data for `win` into slot `i`'s staging and writes the window's units.
    fn write_window<M: GuestMemory>(&mut self, i: usize, win: Window, mem: &mut M) {
        let done = self.req(i).done;
        let range = self.staged(i, win);
        let copied = match (self.slots.get(i), self.backend.staging().get_mut(range)) {
            (Some(slot), Some(dst)) => slot.chain.read(&*mem, HEADER + done, dst).is_ok(),
            _ => false,
        };
        if !copied {
            self.finish_with(i, blk_status::IOERR);
            return;
        }
        self.set_phase(i, Phase::Writing(win));
        let op = BackendOp::Write {
            tag: Tag(0),
            block: win.unit,
            count: win.units,
            offset: 0,
        };
        if let Some(res) = self.submit(i, Role::Data, op) {
            self.on_done(i, Role::Data, res, mem);
        }
    }

    /// One operation of slot `i`'s request ended.
    fn on_done<M: GuestMemory>(
        &mut self,
        i: usize,
        role: Role,
        res: Result<(), BackendError>,
        mem: &mut M,
    ) {
        if res.is_err() {
            self.finish_with(i, blk_status::IOERR);
            return;
        }
        match (self.phase(i), role) {
            (Phase::Reading(win), Role::Data) => {
                let done = self.req(i).done;
                let range = self.staged(i, win);
                let copied = match (self.slots.get(i), self.backend.staging().get(range)) {
                    (Some(slot), Some(src)) => slot.chain.write(mem, done, src).is_ok(),
                    _ => false,
                };
                if !copied {
                    self.finish_with(i, blk_status::IOERR);
                    return;
                }
                if let Some(s) = self.slots.get_mut(i) {
                    s.req.written = s.req.written.saturating_add(win.len as u32);
                }
                self.advance(i, win);
            }
            (Phase::Filling { win, pending }, Role::Fill) => {
                if pending > 1 {
                    self.set_phase(
                        i,
                        Phase::Filling {
                            win,
                            pending: pending - 1,
                        },
                    );
                } else {
                    self.write_window(i, win, mem);
                }
            }
            (Phase::Writing(win), Role::Data) => self.advance(i, win),
            (Phase::Flushing, Role::Flush) => self.set_phase(i, Phase::Finished(blk_status::OK)),
            // A completion that does not fit the phase: the backend misbehaved.
            _ => self.finish_with(i, blk_status::IOERR),
        }
    }

    fn advance(&mut self, i: usize, win: Window) {
        if let Some(s) = self.slots.get_mut(i) {
            s.req.done += win.len as u64;
            s.phase = if s.req.done >= s.req.len {
                Phase::Finished(blk_status::OK)
            } else {
                Phase::Issue
            };
        }
    }

    /// Reports slot `i`'s finished request through the status byte and the used ring.
    fn complete<M: GuestMemory>(
        &mut self,
        i: usize,
        q: &mut Queue,
        mem: &mut M,
        status: u8,
    ) -> Result<bool, DeviceError> {
        self.set_phase(i, Phase::Idle);
        match status {
            blk_status::OK => self.stats.ok += 1,
            blk_status::UNSUPP => self.stats.unsupp += 1,
            _ => self.stats.ioerr += 1,
        }
        let r = self.req(i);
        if !q.ready() {
            self.stats.abandoned += 1;
            return Ok(false);
        }
        if mem.write(r.status, &[status]).is_err() {
            return Err(DeviceError::Unreportable {
                queue: 0,
                head: r.head,
                error: None,
            });
        }
        q.add_used(mem, r.head, r.written.saturating_add(1))
            .map_err(|error| DeviceError::Queue { queue: 0, error })?;
        Ok(true)
    }

    /// A slot that can take a new request: idle, and no operation of an earlier (abandoned)
    /// request still uses its staging share.
    fn free_slot(&self) -> Option<usize> {
        (0..self.nslots).find(|&i| {
            self.phase(i) == Phase::Idle && !self.ops.iter().flatten().any(|op| op.slot == i)
        })
    }

    /// Runs requests until the queue is empty or every slot waits for the backend.
    fn pump<M: GuestMemory>(
        &mut self,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<Notify, DeviceError> {
        let Some(q) = queues.get_mut(0) else {
            self.abandon();
            return Ok(Notify::NONE);
        };
        let mut used = false;
        // Each pop is bounded by what the driver published: at most the queue size per call
        // (a driver adding more kicks again).
        let mut budget = q.size();
        loop {
            let mut progress = false;
            for i in 0..self.nslots {
                match self.phase(i) {
                    Phase::Finished(status) => {
                        used |= self.complete(i, q, mem, status)?;
                        progress = true;
                    }
                    Phase::Issue if self.req(i).started || !self.conflicts(i) => {
                        self.issue(i, mem);
                        progress = true;
                    }
                    _ => {}
                }
            }
            if progress {
                continue;
            }
            let Some(i) = self.free_slot() else { break };
            if !q.ready() || budget == 0 {
                break;
            }
            budget -= 1;
            let Some(slot) = self.slots.get_mut(i) else {
                break;
            };
            let popped = q
                .pop_into(&mut *mem, &mut slot.chain)
                .map_err(|error| DeviceError::Queue { queue: 0, error })?;
            if !popped {
                break;
            }
            self.start(i, mem)?;
        }
        if used && q.ready() {
            let wanted = q
                .notification_wanted(&*mem)
                .map_err(|error| DeviceError::Queue { queue: 0, error })?;
            return Ok(Notify { used: wanted });
        }
        Ok(Notify::NONE)
    }
}

/// Checks a read or write's range and sets `req` up for it.
fn rw(req: &mut Request, capacity_bytes: u64, kind: Kind, sector: u64, len: u64) -> Phase {
    let pos = sector.checked_mul(SECTOR_SIZE);
    let in_range = pos
        .and_then(|p| p.checked_add(len))
        .is_some_and(|end| end <= capacity_bytes);
    match pos {
        Some(pos) if in_range && len.is_multiple_of(SECTOR_SIZE) => {
            req.kind = kind;
            req.pos = pos;
            req.len = len;
            if len == 0 {
                Phase::Finished(blk_status::OK)
            } else {
                Phase::Issue
            }
        }
        _ => Phase::Finished(blk_status::IOERR),
    }
}

impl<B: BlockBackend> VirtioDevice for BlkDevice<B> {
    type Event = Completion;

    fn device_id(&self) -> u32 {
        DEVICE_ID
    }
    fn device_features(&self) -> u64 {
        let ro = if self.read_only { feature::RO } else { 0 };
        VERSION_1
            | EVENT_IDX
            | feature::SIZE_MAX
            | feature::SEG_MAX
            | feature::BLK_SIZE
            | feature::FLUSH
            | ro
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) -> bool {
        crate::mmio::read_config_bytes(&self.config_bytes(), offset, data)
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) -> bool {
        // Nothing is writable without VIRTIO_BLK_F_CONFIG_WCE: in-bounds writes are ignored.
        crate::mmio::config_in_bounds(CONFIG_SIZE, offset, data.len())
    }
    fn activate<M: GuestMemory>(
        &mut self,
        features: u64,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<Notify, DeviceError> {
        self.acked = features;
        self.pump(queues, mem)
    }
    fn queue_notify<M: GuestMemory>(
        &mut self,
        queue: u16,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<Notify, DeviceError> {
        if queue != 0 {
            return Ok(Notify::NONE);
        }
        self.pump(queues, mem)
    }
    fn event<M: GuestMemory>(
        &mut self,
        event: Completion,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<Notify, DeviceError> {
        // Not live, or the driver disabled the queue: the request is dropped unanswered, and its
        // buffers are not touched any more.
        if queues.first().is_none_or(|q| !q.ready()) {
            self.abandon();
        }
        let found = self
            .ops
            .iter_mut()
            .find(|o| o.is_some_and(|op| op.tag == event.tag.0))
            .and_then(Option::take);
        match found {
            None => self.stats.unknown_completions += 1,
            Some(op) if op.abandoned => self.stats.stale_completions += 1,
            Some(op) => {
                if event.result.is_err() {
                    self.stats.backend_errors += 1;
                }
                self.on_done(op.slot, op.role, event.result, mem);
            }
        }
        self.pump(queues, mem)
    }
    fn reset(&mut self) {
        self.abandon();
        self.acked = 0;
    }
}
