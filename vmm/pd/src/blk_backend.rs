//! The guest's virtio-blk device's storage: the block driver domain, reached through the block
//! virtualiser `blk_virt` (which gives this VMM its partition of the disk) over sDDF 0.7.0 block
//! queues (requests out, responses in, storage info), and the data region this VMM and the
//! driver map (the virtualiser does not). Below, "the driver" is the PD at the far end of the
//! queues: `blk_virt`, which does not restart, and which handles the real driver's restarts
//! itself with the same protocol; this side keeps it for any server that does.
//!
//! [`QueueBackend`] implements `vmm-devices`' [`BlockBackend`]: each [`BackendOp`] becomes one
//! `blk_req_t` whose `io_or_offset` is the op's offset in the data region (the staging buffer)
//! and whose `id` is the op's tag; each `blk_resp_t` becomes a [`Completion`]. The driver is
//! another PD and is not trusted: a response whose id is not an operation in flight, or whose
//! success count is short, is counted and turned into a dropped or failed completion — never a
//! panic. The driver is notified through a deferred kick ([`QueueBackend::take_kick`]) that the
//! VMM sends once per exit or notification, after every request of it is queued.
//!
//! Driver restarts ([`sddf_queue::restart`]): every request stays in [`QueueBackend`]'s table
//! until its response arrives. When the driver announces a new generation (it crashed and its
//! monitor restarted it), [`QueueBackend::resync`] (after the caller took every response the
//! old life published) resets both queues, queues again each request still without a
//! response, oldest first, and acknowledges the generation; the guest sees neither an error
//! nor a hang.

use core::sync::atomic::AtomicU32;
use sddf_queue::blk::{BlkReqProducer, BlkRespConsumer, StorageInfoReader};
use sddf_queue::layout::{BLK_TRANSFER_SIZE, BlkReq, BlkReqCode, BlkRespStatus};
use sddf_queue::restart::ClientSync;
use sddf_queue::{EnqueueError, QueueError, SetupError};
use vmm_devices::blk::{
    BackendError, BackendOp, BlockBackend, Completion, MAX_OUTSTANDING, StorageInfo, Submitted,
    Tag, UNIT_SIZE,
};

/// Entries of each block queue (the driver's `QUEUE_CAPACITY`, sDDF's `num_buffers`).
pub const QUEUE_CAPACITY: u32 = 64;

/// Why the block device cannot be offered to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachError {
    /// A queue region is missing or too small.
    Setup(SetupError),
    /// The driver has not published its storage info (no disk, or not up yet).
    NotReady,
    /// The driver's storage info is unusable (transfer size, capacity).
    BadInfo,
}

/// Counters of the driver's behaviour as this side sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendStats {
    /// Requests queued.
    pub requests: u64,
    /// Responses taken.
    pub responses: u64,
    /// Responses with a status other than OK.
    pub errors: u64,
    /// Responses whose id matched no request in flight (dropped).
    pub unknown_ids: u64,
    /// OK responses that transferred fewer blocks than requested (failed).
    pub short: u64,
    /// Times the driver corrupted a queue's indices.
    pub corrupt: u64,
    /// Driver generations re-synchronised with (the first one at boot included).
    pub resyncs: u64,
    /// Requests queued again after a driver restart.
    pub resubmitted: u64,
}

/// A request waiting for its response: what was queued, and when (submission order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    req: BlkReq,
    seq: u64,
}

/// The block driver domain as a [`BlockBackend`].
pub struct QueueBackend {
    req: BlkReqProducer<'static>,
    resp: BlkRespConsumer<'static>,
    /// The queue regions (reset after a driver restart).
    req_region: &'static [AtomicU32],
    resp_region: &'static [AtomicU32],
    sync: ClientSync<'static>,
    staging: &'static mut [u8],
    info: StorageInfo,
    in_flight: [Option<InFlight>; MAX_OUTSTANDING],
    /// Submission counter (orders re-submission).
    seq: u64,
    kick: bool,
    /// The driver must be notified even with nothing queued (an acknowledgement).
    must_notify: bool,
    stats: BackendStats,
}

impl QueueBackend {
    /// Attaches to the queues (request, response, storage info) and the data region. The
    /// storage info must be ready: the driver outranks the VMM and publishes it in its `init`.
    pub fn attach(
        req_region: &'static [AtomicU32],
        resp_region: &'static [AtomicU32],
        info: &'static [AtomicU32],
        data: &'static mut [u8],
    ) -> Result<Self, AttachError> {
        let req = BlkReqProducer::new(req_region, QUEUE_CAPACITY).map_err(AttachError::Setup)?;
        let resp = BlkRespConsumer::new(resp_region, QUEUE_CAPACITY).map_err(AttachError::Setup)?;
        let sync = ClientSync::new(info).map_err(AttachError::Setup)?;
        let reader = StorageInfoReader::new(info).map_err(AttachError::Setup)?;
        let si = reader.read().ok_or(AttachError::NotReady)?;
        if si.capacity == 0 || si.capacity > u64::MAX / UNIT_SIZE {
            return Err(AttachError::BadInfo);
        }
        // The staging buffer is used in whole units.
        let usable = data.len() - data.len() % UNIT_SIZE as usize;
        if usable == 0 {
            return Err(AttachError::Setup(SetupError::DataRegionTooSmall {
                needed: UNIT_SIZE as usize,
                available: data.len(),
            }));
        }
        let staging = &mut data[..usable];
        Ok(QueueBackend {
            req,
            resp,
            req_region,
            resp_region,
            sync,
            staging,
            info: StorageInfo {
                blocks: si.capacity,
                read_only: si.read_only != 0,
            },
            in_flight: [None; MAX_OUTSTANDING],
            seq: 0,
            kick: false,
            must_notify: false,
            stats: BackendStats::default(),
        })
    }

    /// Whether the driver must be notified now (requests were queued, or a generation
    /// acknowledged, since the last call).
    pub fn take_kick(&mut self) -> bool {
        let queued = core::mem::take(&mut self.kick) && self.req.take_notify();
        core::mem::take(&mut self.must_notify) || queued
    }

    /// A driver generation announced and not yet re-synchronised with: the driver started (at
    /// boot, or again after a crash) and waits for [`Self::resync`].
    pub fn restart_pending(&self) -> Option<u32> {
        self.sync.pending()
    }

    /// The generation re-synchronised with last (0: none yet).
    pub fn generation(&self) -> u32 {
        self.sync.acknowledged()
    }

    /// Re-synchronises with driver generation `generation`: both queues reset to empty, every
    /// request still without a response queued again, oldest first, the generation
    /// acknowledged, the driver to be notified ([`Self::take_kick`]). Take every response
    /// first ([`Self::next_completion`] until `None`): the ones the old life published are
    /// complete, and the reset drops them. Returns the number of requests queued again.
    pub fn resync(&mut self, generation: u32) -> Result<usize, SetupError> {
        self.req = BlkReqProducer::reset(self.req_region, QUEUE_CAPACITY)?;
        self.resp = BlkRespConsumer::reset(self.resp_region, QUEUE_CAPACITY)?;
        let mut order: [Option<InFlight>; MAX_OUTSTANDING] = self.in_flight;
        order.sort_unstable_by_key(|f| f.map_or(u64::MAX, |f| f.seq));
        let mut n = 0;
        for f in order.iter().flatten() {
            // Never full (MAX_OUTSTANDING < QUEUE_CAPACITY) nor corrupt (just reset); a failure
            // leaves the request in the table, to be queued again at the next generation.
            if self.req.enqueue(&f.req).is_ok() {
                n += 1;
            }
        }
        self.sync.acknowledge(generation);
        self.kick = n > 0;
        self.must_notify = true;
        self.stats.resyncs += 1;
        self.stats.resubmitted += n as u64;
        Ok(n)
    }

    /// Takes the next response, as the completion the device model expects. `Ok(None)` when no
    /// response is waiting. Responses that match no operation in flight are counted and skipped.
    pub fn next_completion(&mut self) -> Result<Option<Completion>, QueueError> {
        loop {
            let resp = match self.resp.dequeue() {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.stats.corrupt += 1;
                    return Err(e);
                }
            };
            self.stats.responses += 1;
            let slot = self
                .in_flight
                .iter_mut()
                .find(|f| f.is_some_and(|f| f.req.id == resp.id));
            let Some(op) = slot.and_then(Option::take) else {
                self.stats.unknown_ids += 1;
                continue;
            };
            let result = if resp.status != BlkRespStatus::OK {
                self.stats.errors += 1;
                Err(BackendError::Io)
            } else if resp.success_count < op.req.count {
                self.stats.short += 1;
                Err(BackendError::Io)
            } else {
                Ok(())
            };
            return Ok(Some(Completion {
                tag: Tag(op.req.id),
                result,
            }));
        }
    }

    /// Whether responses wait in the queue (or the queue is corrupt: [`Self::next_completion`]
    /// reports that).
    pub fn responses_waiting(&mut self) -> bool {
        !matches!(self.resp.available(), Ok(0))
    }

    /// Fault injection: queues a read of the first block beyond this VM's disk with an id no
    /// request of the device model has (its answer is counted as an unknown id) and returns the
    /// block asked for.
    pub fn probe_beyond(&mut self) -> Result<u64, EnqueueError> {
        let block = self.info.blocks;
        let req = BlkReq::new(BlkReqCode::READ, 0, block, 1, u32::MAX);
        self.req.enqueue(&req)?;
        self.kick = true;
        Ok(block)
    }

    /// Counters.
    pub fn stats(&self) -> &BackendStats {
        &self.stats
    }

    /// Operations waiting for a response.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().flatten().count()
    }
}

impl BlockBackend for QueueBackend {
    fn info(&self) -> StorageInfo {
        self.info
    }

    fn staging(&mut self) -> &mut [u8] {
        self.staging
    }

    fn submit(&mut self, op: BackendOp) -> Result<Submitted, BackendError> {
        let (code, offset, block, count) = match op {
            BackendOp::Read {
                block,
                count,
                offset,
                ..
            } => (BlkReqCode::READ, offset, block, count),
            BackendOp::Write {
                block,
                count,
                offset,
                ..
            } => (BlkReqCode::WRITE, offset, block, count),
            BackendOp::Flush { .. } => (BlkReqCode::FLUSH, 0, 0, 0),
        };
        // sDDF counts in u16 units: a larger window cannot be expressed (the staging buffer is
        // far smaller, so this does not happen with a well-formed op).
        let count = u16::try_from(count).map_err(|_| BackendError::Unavailable)?;
        let slot = self
            .in_flight
            .iter()
            .position(Option::is_none)
            .ok_or(BackendError::Unavailable)?;
        let tag = op.tag().0;
        let req = BlkReq::new(code, offset as u64, block, count, tag);
        match self.req.enqueue(&req) {
            Ok(()) => {}
            Err(EnqueueError::Full) => return Err(BackendError::Unavailable),
            Err(EnqueueError::Corrupt(_)) => {
                self.stats.corrupt += 1;
                return Err(BackendError::Unavailable);
            }
        }
        if let Some(s) = self.in_flight.get_mut(slot) {
            *s = Some(InFlight { req, seq: self.seq });
        }
        self.seq = self.seq.wrapping_add(1);
        self.stats.requests += 1;
        self.kick = true;
        Ok(Submitted::Pending)
    }
}

/// Bytes per sDDF transfer unit, as `vmm-devices` counts them too.
const _: () = assert!(BLK_TRANSFER_SIZE as u64 == UNIT_SIZE);
