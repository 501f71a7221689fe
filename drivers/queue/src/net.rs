//! Network queues (sDDF 0.7.0 `include/sddf/network/queue.h`).
//!
//! sDDF's network class moves buffers, not bytes: a connection between two components is a
//! *handle* of two queues of [`NetBuffDesc`]s with the same capacity,
//!
//! - the **free** queue, carrying empty buffers (RX: from the client to the virtualiser; TX:
//!   from the virtualiser back to the client once sent), and
//! - the **active** queue, carrying filled buffers (RX: received frames to the client; TX:
//!   frames to send to the virtualiser).
//!
//! Each component is the producer of one queue of a handle and the consumer of the other, so a
//! queue here is one [`NetProducer`] or one [`NetConsumer`]: sDDF's `net_enqueue_free` /
//! `net_enqueue_active` are [`NetProducer::enqueue`] on the free / active queue, and
//! `net_dequeue_*` are [`NetConsumer::dequeue`].
//!
//! Indices are free-running **16-bit** (`uint16_t tail, head`, sharing one word), so the region
//! is viewed as [`AtomicU16`]s ([`crate::raw::halves`]). So that `i % capacity` stays
//! continuous when an index wraps at 2¹⁶ (which takes only 65 536 frames), the capacity must be
//! a power of two of at most 2¹⁵ ([`MAX_CAPACITY`]); anything else is refused at setup. sDDF
//! accepts any capacity, and its C full check (`tail − head == capacity` in `int`) misses a
//! full queue across the wrap; the checks here are modulo 2¹⁶.
//!
//! Signalling is the consumer's: a consumer that found its queue empty asks the producer for a
//! signal by storing `consumer_signalled = 0` ([`NetConsumer::request_signal`],
//! `net_request_signal_*`), then re-checks the queue (sDDF components' `reprocess` loop); a
//! producer that published entries checks the flag and, if a signal was requested, cancels it
//! and notifies ([`NetProducer::take_notify`], `net_require_signal_*` + `net_cancel_signal_*`).
//! Both sides put a SeqCst fence between their write (flag, resp. tail) and their read (tail,
//! resp. flag), so at least one of them sees the other: no lost wake-up. sDDF itself has only
//! release fences there (under `CONFIG_ENABLE_SMP_SUPPORT`); a C peer works with this side as
//! well as with another C peer.

use crate::error::{EnqueueError, QueueError, SetupError};
use crate::layout::{NetBuffDesc, word};
use crate::ring::{ConsumerIndex, ProducerIndex, Slots, split_region};
use crate::serial::SignalRequest;
use crate::sync::{AtomicU16, Ordering, fence};

/// The largest capacity a network queue may have (2¹⁵: the largest power of two whose
/// multiples fit the 16-bit indices without ambiguity).
pub const MAX_CAPACITY: u32 = 1 << 15;

/// `consumer_signalled`'s two half words (in memory order) for the value `v`.
fn flag_halves(v: u32) -> [u16; 2] {
    zerocopy::transmute!(v)
}

/// Bytes a queue region needs for `capacity` descriptors (saturating).
pub const fn region_size(capacity: u32) -> usize {
    (capacity as usize)
        .saturating_mul(word::NET_ENTRY)
        .saturating_add(word::NET_ENTRIES)
        .saturating_mul(word::HALF_BYTES)
}

fn split(region: &[AtomicU16], capacity: u32) -> Result<(&[AtomicU16], &[AtomicU16]), SetupError> {
    if capacity != 0 && (capacity > MAX_CAPACITY || !capacity.is_power_of_two()) {
        return Err(SetupError::UnsupportedNetCapacity { capacity });
    }
    split_region(region, word::NET_ENTRIES, word::NET_ENTRY, capacity)
}

/// The `consumer_signalled` flag (a `u32` accessed as two half words; only ever 0 or 1 when
/// written by this crate or sDDF, so the two halves never change together).
#[derive(Debug, Clone, Copy)]
struct Flag<'a> {
    halves: &'a [AtomicU16],
}

impl<'a> Flag<'a> {
    fn new(header: &'a [AtomicU16]) -> Self {
        Self {
            halves: &header[word::NET_SIGNALLED..word::NET_SIGNALLED + word::NET_SIGNALLED_HALVES],
        }
    }

    fn store(&self, v: u32) {
        for (h, v) in self.halves.iter().zip(flag_halves(v)) {
            h.store(v, Ordering::Relaxed);
        }
    }

    /// Whether the consumer asked for a signal (`consumer_signalled == 0`).
    fn requested(&self) -> bool {
        self.halves.iter().all(|h| h.load(Ordering::Relaxed) == 0)
    }
}

/// `consumer_signalled` value: the consumer wants a signal when entries arrive.
const SIGNAL_REQUESTED: u32 = 0;
/// `consumer_signalled` value: no signal wanted.
const SIGNAL_CANCELLED: u32 = 1;

/// Producer of one network queue (free or active): `net_enqueue_*`, `net_require_signal_*`,
/// `net_cancel_signal_*`.
#[derive(Debug)]
pub struct NetProducer<'a> {
    index: ProducerIndex<'a, AtomicU16>,
    slots: Slots<'a, NetBuffDesc, AtomicU16>,
    flag: Flag<'a>,
}

impl<'a> NetProducer<'a> {
    /// Attaches to a queue region (`net_queue_t`, at least [`region_size`]`(capacity)` bytes)
    /// of `capacity` descriptors; `capacity` is the local, trusted value, a power of two of at
    /// most [`MAX_CAPACITY`].
    pub fn new(region: &'a [AtomicU16], capacity: u32) -> Result<Self, SetupError> {
        let (header, entries) = split(region, capacity)?;
        let index =
            ProducerIndex::attach(&header[word::NET_HEAD], &header[word::NET_TAIL], capacity)?;
        Ok(Self {
            index,
            slots: Slots::new(entries),
            flag: Flag::new(header),
        })
    }

    /// Enqueues and publishes one descriptor.
    pub fn enqueue(&mut self, desc: &NetBuffDesc) -> Result<(), EnqueueError> {
        self.enqueue_local(desc)?;
        self.index.publish();
        Ok(())
    }

    /// Enqueues one descriptor without publishing it: the consumer sees it after
    /// [`Self::publish`].
    pub fn enqueue_local(&mut self, desc: &NetBuffDesc) -> Result<(), EnqueueError> {
        let slot = self.index.reserve()?;
        self.slots.write(slot, desc);
        self.index.advance(1);
        Ok(())
    }

    /// Publishes locally enqueued descriptors (Release store of the tail).
    pub fn publish(&mut self) {
        self.index.publish();
    }

    /// Descriptors that can be enqueued now (unpublished ones count as used).
    pub fn free(&mut self) -> Result<u32, QueueError> {
        self.index.free()
    }

    /// The notification phase: whether the consumer must be notified. True when descriptors
    /// were published since the last call and the consumer asked for a signal (read after a
    /// SeqCst fence); the request is then consumed (`net_cancel_signal_*`).
    #[must_use = "notify the consumer when this returns true"]
    pub fn take_notify(&mut self) -> bool {
        if !self.index.take_published() {
            return false;
        }
        fence(Ordering::SeqCst);
        if self.flag.requested() {
            self.flag.store(SIGNAL_CANCELLED);
            true
        } else {
            false
        }
    }
}

/// Consumer of one network queue (free or active): `net_dequeue_*`, `net_request_signal_*`,
/// `net_cancel_signal_*`.
#[derive(Debug)]
pub struct NetConsumer<'a> {
    index: ConsumerIndex<'a, AtomicU16>,
    slots: Slots<'a, NetBuffDesc, AtomicU16>,
    flag: Flag<'a>,
}

impl<'a> NetConsumer<'a> {
    /// Attaches to a queue region of `capacity` descriptors (see [`NetProducer::new`]).
    pub fn new(region: &'a [AtomicU16], capacity: u32) -> Result<Self, SetupError> {
        let (header, entries) = split(region, capacity)?;
        let index =
            ConsumerIndex::attach(&header[word::NET_HEAD], &header[word::NET_TAIL], capacity)?;
        Ok(Self {
            index,
            slots: Slots::new(entries),
            flag: Flag::new(header),
        })
    }

    /// Dequeues one descriptor and hands its slot back; `Ok(None)` when empty. The fields are
    /// whatever the peer wrote: check `io_or_offset` and `len` against the data region.
    pub fn dequeue(&mut self) -> Result<Option<NetBuffDesc>, QueueError> {
        if self.index.available()? == 0 {
            return Ok(None);
        }
        let desc = self.slots.read(self.index.slot(self.index.local_head()));
        self.index.advance(1);
        self.index.publish();
        Ok(Some(desc))
    }

    /// Descriptors waiting.
    pub fn available(&mut self) -> Result<u32, QueueError> {
        self.index.available()
    }

    /// The event-registering phase, for a consumer that found the queue empty: asks the
    /// producer for a signal (`consumer_signalled = 0`, then a SeqCst fence), then re-checks
    /// the queue. If descriptors arrived meanwhile it cancels the request and returns
    /// [`SignalRequest::Reprocess`]; otherwise [`SignalRequest::Registered`]: stop until
    /// notified.
    pub fn request_signal(&mut self) -> Result<SignalRequest, QueueError> {
        self.flag.store(SIGNAL_REQUESTED);
        fence(Ordering::SeqCst);
        if self.index.available()? > 0 {
            self.flag.store(SIGNAL_CANCELLED);
            Ok(SignalRequest::Reprocess)
        } else {
            Ok(SignalRequest::Registered)
        }
    }

    /// Withdraws a signal request (`net_cancel_signal_*` by the consumer).
    pub fn cancel_signal(&mut self) {
        self.flag.store(SIGNAL_CANCELLED);
    }
}

/// The MAC address of network client `name` (a PD name from system.xml), this project's rule:
/// `52:54:00` (QEMU's locally administered, unicast prefix) and the low three bytes of the
/// 32-bit FNV-1a hash of the name. The VMM computes its card's address from its own
/// `microkit_name`, which the Microkit tool patches per PD, so one VMM ELF serves any number of
/// VMs with distinct addresses; the network virtualiser computes each client's address from the
/// same name at build time (its client table) and switches by it. Two names with the same
/// address are refused by the virtualiser (the second client gets no unicast frames).
pub const fn mac_for(name: &[u8]) -> [u8; 6] {
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < name.len() {
        h ^= name[i] as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    let b = h.to_be_bytes();
    [0x52, 0x54, 0x00, b[1], b[2], b[3]]
}

#[cfg(test)]
mod mac_tests {
    use super::mac_for;

    #[test]
    fn addresses_are_unicast_local_and_distinct() {
        let a = mac_for(b"vmm");
        let b = mac_for(b"vmm2");
        assert_ne!(a, b);
        for m in [a, b] {
            assert_eq!(&m[..3], &[0x52, 0x54, 0x00]);
            assert_eq!(m[0] & 1, 0, "unicast");
            assert_eq!(m[0] & 2, 2, "locally administered");
        }
        // FNV-1a of the empty name is its offset basis.
        assert_eq!(mac_for(b""), [0x52, 0x54, 0x00, 0x1c, 0x9d, 0xc5]);
    }
}
