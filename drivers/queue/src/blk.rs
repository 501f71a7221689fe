//! Block queues (sDDF 0.7.0 `include/sddf/blk/queue.h`, `storage_info.h`).
//!
//! The client side (the VMM's virtio-blk model, or an sDDF virtualiser) produces [`BlkReq`]s and
//! consumes [`BlkResp`]s; the driver consumes requests and produces responses. sDDF's block
//! class has no notification flags: the producer of either queue notifies the consumer after
//! enqueuing ([`BlkReqProducer::take_notify`], [`BlkRespProducer::take_notify`]); the consumer
//! never notifies the producer about freed space. The request queue's `plugged` flag lets the
//! client hold the driver off while it fills a batch: a plugged queue dequeues nothing, and the
//! deferred notification is returned by [`BlkReqProducer::unplug`].

use crate::error::{EnqueueError, QueueError, SetupError};
use crate::layout::{BlkReq, BlkResp, BlkStorageInfo, word};
use crate::ring::{ConsumerIndex, ProducerIndex, Slots, split_region};
use crate::sync::{AtomicU32, Ordering};

/// The three regions of one block client's queues (request queue, response queue, storage
/// information and, past it, the driver's restart words), as the queues here take them; both
/// sides (client and driver, or a virtualiser facing either) view them for the PD's lifetime.
#[derive(Debug, Clone, Copy)]
pub struct BlkRegions<'q> {
    /// `blk_req_queue_t`.
    pub req: &'q [AtomicU32],
    /// `blk_resp_queue_t`.
    pub resp: &'q [AtomicU32],
    /// `blk_storage_info_t` (and the restart words past it).
    pub info: &'q [AtomicU32],
}

#[cfg(all(feature = "microkit", not(loom)))]
impl BlkRegions<'static> {
    /// Views three mapped regions as atomics for the rest of the program (the runtime's
    /// `SharedRegion::into_atomic_words`); the regions are consumed.
    pub fn from_regions(
        req: Result<microkit_rt::SharedRegion, microkit_rt::RegionError>,
        resp: Result<microkit_rt::SharedRegion, microkit_rt::RegionError>,
        info: Result<microkit_rt::SharedRegion, microkit_rt::RegionError>,
    ) -> Result<Self, microkit_rt::RegionError> {
        Ok(Self {
            req: req?.into_atomic_words()?,
            resp: resp?.into_atomic_words()?,
            info: info?.into_atomic_words()?,
        })
    }
}

/// Bytes a queue region needs for `capacity` entries of the request queue (saturating).
pub const fn req_region_size(capacity: u32) -> usize {
    (capacity as usize)
        .saturating_mul(word::REQ_ENTRY)
        .saturating_add(word::REQ_ENTRIES)
        .saturating_mul(word::BYTES)
}

/// Bytes a queue region needs for `capacity` entries of the response queue (saturating).
pub const fn resp_region_size(capacity: u32) -> usize {
    (capacity as usize)
        .saturating_mul(word::RESP_ENTRY)
        .saturating_add(word::RESP_ENTRIES)
        .saturating_mul(word::BYTES)
}

fn plugged_word(plugged: bool) -> u32 {
    let mut bytes = [0u8; word::BYTES];
    bytes[word::REQ_PLUGGED_BYTE] = u8::from(plugged);
    u32::from_ne_bytes(bytes)
}

/// Producer of block requests (client side): `blk_enqueue_req`, `blk_queue_plug_req`,
/// `blk_queue_unplug_req`.
#[derive(Debug)]
pub struct BlkReqProducer<'a> {
    index: ProducerIndex<'a>,
    slots: Slots<'a, BlkReq>,
    plugged_flag: &'a AtomicU32,
    plugged: bool,
}

/// Stores 0 in a queue's two indices (the client's reset after a driver restart, while the
/// driver waits for its acknowledgement: see [`crate::restart`]).
fn zero_indices(region: &[AtomicU32], head: usize, tail: usize) {
    for i in [head, tail] {
        if let Some(w) = region.get(i) {
            w.store(0, Ordering::Relaxed);
        }
    }
}

impl<'a> BlkReqProducer<'a> {
    /// Empties the request queue (head = tail = 0, unplugged) and attaches to it: only while the
    /// driver does not use the queue (a restarted driver waiting for its acknowledgement,
    /// [`crate::restart`]). Entries not yet taken are dropped: the caller queues them again.
    pub fn reset(region: &'a [AtomicU32], capacity: u32) -> Result<Self, SetupError> {
        zero_indices(region, word::REQ_HEAD, word::REQ_TAIL);
        if let Some(w) = region.get(word::REQ_PLUGGED) {
            w.store(plugged_word(false), Ordering::Relaxed);
        }
        Self::new(region, capacity)
    }

    /// Attaches to a request queue region (`blk_req_queue_t`, at least
    /// [`req_region_size`]`(capacity)` bytes) holding `capacity` entries; `capacity` is the
    /// local, trusted value (sDDF: `num_buffers` from the configuration).
    pub fn new(region: &'a [AtomicU32], capacity: u32) -> Result<Self, SetupError> {
        let (header, entries) = split_region(region, word::REQ_ENTRIES, word::REQ_ENTRY, capacity)?;
        let index =
            ProducerIndex::attach(&header[word::REQ_HEAD], &header[word::REQ_TAIL], capacity)?;
        let plugged_flag = &header[word::REQ_PLUGGED];
        let plugged =
            plugged_flag.load(Ordering::Relaxed).to_ne_bytes()[word::REQ_PLUGGED_BYTE] != 0;
        Ok(Self {
            index,
            slots: Slots::new(entries),
            plugged_flag,
            plugged,
        })
    }

    /// Enqueues and publishes one request.
    pub fn enqueue(&mut self, req: &BlkReq) -> Result<(), EnqueueError> {
        let slot = self.index.reserve()?;
        self.slots.write(slot, req);
        self.index.advance(1);
        self.index.publish();
        Ok(())
    }

    /// Number of requests that can be enqueued now.
    pub fn free(&mut self) -> Result<u32, QueueError> {
        self.index.free()
    }

    /// Sets `plugged`: the driver stops dequeuing until [`Self::unplug`].
    pub fn plug(&mut self) {
        self.plugged = true;
        self.plugged_flag
            .store(plugged_word(true), Ordering::Release);
    }

    /// Clears `plugged`. Returns whether the driver must now be notified: requests were
    /// published since the last notification.
    #[must_use = "notify the driver when this returns true"]
    pub fn unplug(&mut self) -> bool {
        self.plugged = false;
        self.plugged_flag
            .store(plugged_word(false), Ordering::Release);
        self.index.take_published()
    }

    /// Whether this side has plugged the queue.
    pub fn is_plugged(&self) -> bool {
        self.plugged
    }

    /// Whether the driver must be notified: requests were published since the last call and
    /// the queue is not plugged (while plugged the notification is deferred to
    /// [`Self::unplug`]).
    #[must_use = "notify the driver when this returns true"]
    pub fn take_notify(&mut self) -> bool {
        !self.plugged && self.index.take_published()
    }
}

/// Consumer of block requests (driver side): `blk_dequeue_req`, `blk_queue_plugged_req`.
#[derive(Debug)]
pub struct BlkReqConsumer<'a> {
    index: ConsumerIndex<'a>,
    slots: Slots<'a, BlkReq>,
    plugged_flag: &'a AtomicU32,
}

impl<'a> BlkReqConsumer<'a> {
    /// Attaches to a request queue region holding `capacity` entries (see
    /// [`BlkReqProducer::new`]).
    pub fn new(region: &'a [AtomicU32], capacity: u32) -> Result<Self, SetupError> {
        let (header, entries) = split_region(region, word::REQ_ENTRIES, word::REQ_ENTRY, capacity)?;
        let index =
            ConsumerIndex::attach(&header[word::REQ_HEAD], &header[word::REQ_TAIL], capacity)?;
        Ok(Self {
            index,
            slots: Slots::new(entries),
            plugged_flag: &header[word::REQ_PLUGGED],
        })
    }

    /// Whether the client has plugged the queue (any non-zero byte counts as `true`).
    pub fn is_plugged(&self) -> bool {
        self.plugged_flag.load(Ordering::Acquire).to_ne_bytes()[word::REQ_PLUGGED_BYTE] != 0
    }

    /// Dequeues one request and hands its slot back; `Ok(None)` when the queue is empty or
    /// plugged. The entry's fields are whatever the peer wrote: check `code` and ranges.
    pub fn dequeue(&mut self) -> Result<Option<BlkReq>, QueueError> {
        if self.is_plugged() || self.index.available()? == 0 {
            return Ok(None);
        }
        let req = self.slots.read(self.index.slot(self.index.local_head()));
        self.index.advance(1);
        self.index.publish();
        Ok(Some(req))
    }

    /// Number of requests waiting (ignoring `plugged`).
    pub fn available(&mut self) -> Result<u32, QueueError> {
        self.index.available()
    }
}

/// Producer of block responses (driver side): `blk_enqueue_resp`.
#[derive(Debug)]
pub struct BlkRespProducer<'a> {
    index: ProducerIndex<'a>,
    slots: Slots<'a, BlkResp>,
}

impl<'a> BlkRespProducer<'a> {
    /// Attaches to a response queue region (`blk_resp_queue_t`, at least
    /// [`resp_region_size`]`(capacity)` bytes) holding `capacity` entries.
    pub fn new(region: &'a [AtomicU32], capacity: u32) -> Result<Self, SetupError> {
        let (header, entries) =
            split_region(region, word::RESP_ENTRIES, word::RESP_ENTRY, capacity)?;
        let index =
            ProducerIndex::attach(&header[word::RESP_HEAD], &header[word::RESP_TAIL], capacity)?;
        Ok(Self {
            index,
            slots: Slots::new(entries),
        })
    }

    /// Enqueues and publishes one response.
    pub fn enqueue(&mut self, resp: &BlkResp) -> Result<(), EnqueueError> {
        let slot = self.index.reserve()?;
        self.slots.write(slot, resp);
        self.index.advance(1);
        self.index.publish();
        Ok(())
    }

    /// Number of responses that can be enqueued now.
    pub fn free(&mut self) -> Result<u32, QueueError> {
        self.index.free()
    }

    /// Whether the client must be notified: responses were published since the last call.
    #[must_use = "notify the client when this returns true"]
    pub fn take_notify(&mut self) -> bool {
        self.index.take_published()
    }
}

/// Consumer of block responses (client side): `blk_dequeue_resp`.
#[derive(Debug)]
pub struct BlkRespConsumer<'a> {
    index: ConsumerIndex<'a>,
    slots: Slots<'a, BlkResp>,
}

impl<'a> BlkRespConsumer<'a> {
    /// Empties the response queue (head = tail = 0) and attaches to it: only while the driver
    /// does not use the queue (see [`BlkReqProducer::reset`]); take the responses first.
    pub fn reset(region: &'a [AtomicU32], capacity: u32) -> Result<Self, SetupError> {
        zero_indices(region, word::RESP_HEAD, word::RESP_TAIL);
        Self::new(region, capacity)
    }

    /// Attaches to a response queue region holding `capacity` entries.
    pub fn new(region: &'a [AtomicU32], capacity: u32) -> Result<Self, SetupError> {
        let (header, entries) =
            split_region(region, word::RESP_ENTRIES, word::RESP_ENTRY, capacity)?;
        let index =
            ConsumerIndex::attach(&header[word::RESP_HEAD], &header[word::RESP_TAIL], capacity)?;
        Ok(Self {
            index,
            slots: Slots::new(entries),
        })
    }

    /// Dequeues one response and hands its slot back; `Ok(None)` when empty. The fields are
    /// whatever the peer wrote: match `id` against requests in flight.
    pub fn dequeue(&mut self) -> Result<Option<BlkResp>, QueueError> {
        if self.index.available()? == 0 {
            return Ok(None);
        }
        let resp = self.slots.read(self.index.slot(self.index.local_head()));
        self.index.advance(1);
        self.index.publish();
        Ok(Some(resp))
    }

    /// Number of responses waiting.
    pub fn available(&mut self) -> Result<u32, QueueError> {
        self.index.available()
    }
}

fn info_words(region: &[AtomicU32]) -> Result<&[AtomicU32], SetupError> {
    region.get(..word::INFO).ok_or(SetupError::RegionTooSmall {
        needed: word::INFO * word::BYTES,
        available: region.len() * word::BYTES,
    })
}

/// Writer of the storage-info region (driver side): `blk_storage_set_ready`.
#[derive(Debug)]
pub struct StorageInfoWriter<'a> {
    words: &'a [AtomicU32],
}

impl<'a> StorageInfoWriter<'a> {
    /// Attaches to a storage-info region (at least 88 bytes).
    pub fn new(region: &'a [AtomicU32]) -> Result<Self, SetupError> {
        Ok(Self {
            words: info_words(region)?,
        })
    }

    /// Writes `info` (its `ready` field ignored) and then sets `ready` with a Release store, so
    /// that a reader that sees `ready` sees the fields. Publish once: a reader racing a second
    /// publication may see a mix.
    pub fn publish(&self, info: &BlkStorageInfo) {
        let mut info = *info;
        info.ready = 0;
        let w: [u32; word::INFO] = zerocopy::transmute!(info);
        for (s, d) in w.iter().zip(self.words) {
            d.store(*s, Ordering::Relaxed);
        }
        self.set_ready(true);
    }

    /// Sets or clears `ready` (Release), leaving the bytes beside it as this side wrote them.
    pub fn set_ready(&self, ready: bool) {
        let cell = &self.words[word::INFO_READY];
        let mut bytes = cell.load(Ordering::Relaxed).to_ne_bytes();
        bytes[word::INFO_READY_BYTE] = u8::from(ready);
        cell.store(u32::from_ne_bytes(bytes), Ordering::Release);
    }
}

/// Reader of the storage-info region (client side): `blk_storage_is_ready`.
#[derive(Debug)]
pub struct StorageInfoReader<'a> {
    words: &'a [AtomicU32],
}

impl<'a> StorageInfoReader<'a> {
    /// Attaches to a storage-info region (at least 88 bytes).
    pub fn new(region: &'a [AtomicU32]) -> Result<Self, SetupError> {
        Ok(Self {
            words: info_words(region)?,
        })
    }

    /// Whether the driver has set `ready` (Acquire; any non-zero byte counts).
    pub fn is_ready(&self) -> bool {
        self.words[word::INFO_READY]
            .load(Ordering::Acquire)
            .to_ne_bytes()[word::INFO_READY_BYTE]
            != 0
    }

    /// A copy of the storage info once `ready` is set, `None` before. The values are the
    /// driver's: check them before use.
    pub fn read(&self) -> Option<BlkStorageInfo> {
        if !self.is_ready() {
            return None;
        }
        let mut w = [0u32; word::INFO];
        for (d, s) in w.iter_mut().zip(self.words) {
            *d = s.load(Ordering::Relaxed);
        }
        Some(zerocopy::transmute!(w))
    }
}
