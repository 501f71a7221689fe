//! Serial byte queues (sDDF 0.7.0 `include/sddf/serial/queue.h`).
//!
//! The header (`serial_queue_t`) and the data region are separate regions; the capacity is the
//! local, trusted data-region size. Signalling follows sDDF's serial subsystem:
//!
//! - the producer notifies the consumer after every batch it publishes
//!   ([`SerialProducer::take_notify`]);
//! - the consumer notifies the producer only if the producer asked for it through
//!   `producer_signalled` (zero = "signal me"), which the producer does when the queue is full
//!   ([`SerialProducer::request_signal`], with sDDF's double-check), and the consumer checks
//!   after releasing space ([`SerialConsumer::take_notify`]). Both sides put a SeqCst fence
//!   between their write (flag, resp. head) and their read (head, resp. flag), as sDDF's
//!   `serial_request_consumer_signal`/`serial_require_consumer_signal` do, so that at least one
//!   of them sees the other: no lost wake-up.

use crate::error::{EnqueueError, QueueError, SetupError};
use crate::layout::word;
use crate::ring::{ConsumerIndex, ProducerIndex};
use crate::sync::{AtomicU8, AtomicU32, Ordering, fence};

/// `producer_signalled` value: the producer wants a signal when space frees up.
const SIGNAL_REQUESTED: u32 = 0;
/// `producer_signalled` value: no signal wanted (`serial_cancel_consumer_signal`).
const SIGNAL_CANCELLED: u32 = 1;

fn attach<'a>(
    queue: &'a [AtomicU32],
    data: &'a [AtomicU8],
    capacity: u32,
) -> Result<(&'a [AtomicU32], &'a [AtomicU8]), SetupError> {
    if capacity == 0 {
        return Err(SetupError::ZeroCapacity);
    }
    let header = queue
        .get(..word::SERIAL_HEADER)
        .ok_or(SetupError::RegionTooSmall {
            needed: word::SERIAL_HEADER * word::BYTES,
            available: queue.len() * word::BYTES,
        })?;
    let needed = usize::try_from(capacity).map_err(|_| SetupError::CapacityTooLarge)?;
    let data = data.get(..needed).ok_or(SetupError::DataRegionTooSmall {
        needed,
        available: data.len(),
    })?;
    Ok((header, data))
}

/// Outcome of [`SerialProducer::request_signal`] (and of the network consumer's
/// [`crate::net::NetConsumer::request_signal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignalRequest {
    /// The request is registered and the queue is still full (serial producer) or still empty
    /// (network consumer): stop; the peer will notify when that changes.
    Registered,
    /// The queue changed meanwhile (the double-check): the request was cancelled; go on
    /// enqueuing (serial) or dequeuing (network).
    Reprocess,
}

/// Producer of a serial queue (`serial_enqueue`, `serial_enqueue_local`,
/// `serial_update_shared_tail`, `serial_enqueue_batch`, `serial_request_consumer_signal`).
#[derive(Debug)]
pub struct SerialProducer<'a> {
    index: ProducerIndex<'a>,
    signalled: &'a AtomicU32,
    data: &'a [AtomicU8],
}

impl<'a> SerialProducer<'a> {
    /// Attaches to a serial queue header (`serial_queue_t`, at least 12 bytes) and its data
    /// region (at least `capacity` bytes).
    pub fn new(
        queue: &'a [AtomicU32],
        data: &'a [AtomicU8],
        capacity: u32,
    ) -> Result<Self, SetupError> {
        let (header, data) = attach(queue, data, capacity)?;
        let index = ProducerIndex::attach(
            &header[word::SERIAL_HEAD],
            &header[word::SERIAL_TAIL],
            capacity,
        )?;
        Ok(Self {
            index,
            signalled: &header[word::SERIAL_SIGNALLED],
            data,
        })
    }

    /// Enqueues one byte and publishes it (`serial_enqueue`).
    pub fn enqueue(&mut self, byte: u8) -> Result<(), EnqueueError> {
        self.enqueue_local(byte)?;
        self.index.publish();
        Ok(())
    }

    /// Enqueues one byte without publishing it (`serial_enqueue_local`): the consumer sees it
    /// after [`Self::publish`].
    pub fn enqueue_local(&mut self, byte: u8) -> Result<(), EnqueueError> {
        let slot = self.index.reserve()?;
        // `slot < capacity == data.len()`.
        self.data[slot].store(byte, Ordering::Relaxed);
        self.index.advance(1);
        Ok(())
    }

    /// Enqueues as many bytes of `bytes` as fit and publishes them (`serial_enqueue_batch`);
    /// returns how many were enqueued.
    pub fn enqueue_slice(&mut self, bytes: &[u8]) -> Result<usize, QueueError> {
        let free = self.index.free()?;
        let n = bytes.len().min(free as usize);
        let mut index = self.index.local_tail();
        for &b in &bytes[..n] {
            self.data[self.index.slot(index)].store(b, Ordering::Relaxed);
            index = index.wrapping_add(1);
        }
        // `n <= free <= u32::MAX`.
        self.index.advance(n as u32);
        self.index.publish();
        Ok(n)
    }

    /// Publishes locally enqueued bytes (`serial_update_shared_tail`).
    pub fn publish(&mut self) {
        self.index.publish();
    }

    /// Bytes that can be enqueued now (`serial_queue_free`, counting unpublished bytes as used).
    pub fn free(&mut self) -> Result<u32, QueueError> {
        self.index.free()
    }

    /// Whether the consumer must be notified: bytes were published since the last call (sDDF's
    /// serial producer always notifies after work).
    #[must_use = "notify the consumer when this returns true"]
    pub fn take_notify(&mut self) -> bool {
        self.index.take_published()
    }

    /// The event-registering phase of sDDF's signalling protocol, for a producer that found the
    /// queue full: publishes pending bytes, asks the consumer for a signal
    /// (`producer_signalled = 0`, then a SeqCst fence), then re-checks the free space. If space
    /// appeared meanwhile it cancels the request and returns [`SignalRequest::Reprocess`];
    /// otherwise [`SignalRequest::Registered`]: stop until notified.
    pub fn request_signal(&mut self) -> Result<SignalRequest, QueueError> {
        self.index.publish();
        self.signalled.store(SIGNAL_REQUESTED, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.index.free()? > 0 {
            self.signalled.store(SIGNAL_CANCELLED, Ordering::Relaxed);
            Ok(SignalRequest::Reprocess)
        } else {
            Ok(SignalRequest::Registered)
        }
    }

    /// Withdraws a signal request (`serial_cancel_consumer_signal`).
    pub fn cancel_signal(&mut self) {
        self.signalled.store(SIGNAL_CANCELLED, Ordering::Relaxed);
    }
}

/// Consumer of a serial queue (`serial_dequeue`, `serial_dequeue_local`,
/// `serial_update_shared_head`, `serial_require_consumer_signal`).
#[derive(Debug)]
pub struct SerialConsumer<'a> {
    index: ConsumerIndex<'a>,
    signalled: &'a AtomicU32,
    data: &'a [AtomicU8],
}

impl<'a> SerialConsumer<'a> {
    /// Attaches to a serial queue header and its data region (see [`SerialProducer::new`]).
    pub fn new(
        queue: &'a [AtomicU32],
        data: &'a [AtomicU8],
        capacity: u32,
    ) -> Result<Self, SetupError> {
        let (header, data) = attach(queue, data, capacity)?;
        let index = ConsumerIndex::attach(
            &header[word::SERIAL_HEAD],
            &header[word::SERIAL_TAIL],
            capacity,
        )?;
        Ok(Self {
            index,
            signalled: &header[word::SERIAL_SIGNALLED],
            data,
        })
    }

    /// Dequeues one byte and releases its slot (`serial_dequeue`); `Ok(None)` when empty.
    pub fn dequeue(&mut self) -> Result<Option<u8>, QueueError> {
        let byte = self.dequeue_local()?;
        self.index.publish();
        Ok(byte)
    }

    /// Dequeues one byte without releasing its slot (`serial_dequeue_local`): the producer sees
    /// the space after [`Self::publish`].
    pub fn dequeue_local(&mut self) -> Result<Option<u8>, QueueError> {
        if self.index.available()? == 0 {
            return Ok(None);
        }
        // `slot < capacity == data.len()`.
        let byte = self.data[self.index.slot(self.index.local_head())].load(Ordering::Relaxed);
        self.index.advance(1);
        Ok(Some(byte))
    }

    /// Dequeues up to `buf.len()` bytes into `buf` and releases their slots; returns how many.
    pub fn dequeue_into(&mut self, buf: &mut [u8]) -> Result<usize, QueueError> {
        let available = self.index.available()?;
        let n = buf.len().min(available as usize);
        let mut index = self.index.local_head();
        for d in &mut buf[..n] {
            *d = self.data[self.index.slot(index)].load(Ordering::Relaxed);
            index = index.wrapping_add(1);
        }
        // `n <= available <= u32::MAX`.
        self.index.advance(n as u32);
        self.index.publish();
        Ok(n)
    }

    /// Releases locally dequeued slots (`serial_update_shared_head`).
    pub fn publish(&mut self) {
        self.index.publish();
    }

    /// Bytes waiting (`serial_queue_length_consumer`, excluding locally dequeued ones).
    pub fn available(&mut self) -> Result<u32, QueueError> {
        self.index.available()
    }

    /// The notification phase: whether the producer must be notified. True when space was
    /// released since the last call and the producer asked for a signal (after a SeqCst fence,
    /// `serial_require_consumer_signal`); the request is then consumed
    /// (`serial_cancel_consumer_signal`).
    #[must_use = "notify the producer when this returns true"]
    pub fn take_notify(&mut self) -> bool {
        if !self.index.take_released() {
            return false;
        }
        fence(Ordering::SeqCst);
        if self.signalled.load(Ordering::Relaxed) == SIGNAL_REQUESTED {
            self.signalled.store(SIGNAL_CANCELLED, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}
