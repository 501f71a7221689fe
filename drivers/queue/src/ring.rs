//! The SPSC index protocol shared by every queue, in safe code over atomic views.
//!
//! Free-running indices (`u32`; `u16` in the network queues, see [`IndexCell`]): the producer writes only `tail`, the consumer only `head`; the
//! queue holds `tail − head` (wrapping) entries, is empty at 0 and full at `capacity`; index `i`
//! lives in slot `i % capacity`, with the *local* capacity (sDDF keeps it in the local handle
//! for the same reason). Each side reads its own index from shared memory only when attaching,
//! then keeps it locally and only stores it (a peer overwriting it is simply overwritten at the
//! next publication); the peer's index is read with Acquire and validated against the window
//! the local state allows, so a hostile value yields a [`QueueError`] and never reaches a slot
//! computation.
//! Publishing an index is a Release store, ordered after the entry writes (producer) or entry
//! reads (consumer) it covers — sDDF's `THREAD_MEMORY_RELEASE(); idx++` and
//! `store_release_32`, with sDDF's `load_acquire_32` on the other side.

use core::marker::PhantomData;

use crate::error::{EnqueueError, QueueError};
use crate::layout::{BlkReq, BlkResp, NetBuffDesc};
use crate::sync::{AtomicU16, AtomicU32, Ordering};

/// A shared free-running index: 32 bits wide in the block and serial queues, 16 bits in the
/// network queues (`net_queue_t`'s `uint16_t tail, head`). Values are carried as `u32` and all
/// index arithmetic is modulo `MASK + 1`.
pub(crate) trait IndexCell {
    /// The largest index value; index arithmetic wraps at `MASK + 1`.
    const MASK: u32;
    /// Loads the index.
    fn get(&self, order: Ordering) -> u32;
    /// Stores `value` (`<= MASK`).
    fn set(&self, value: u32, order: Ordering);
}

impl IndexCell for AtomicU32 {
    const MASK: u32 = u32::MAX;
    fn get(&self, order: Ordering) -> u32 {
        self.load(order)
    }
    fn set(&self, value: u32, order: Ordering) {
        self.store(value, order);
    }
}

impl IndexCell for AtomicU16 {
    const MASK: u32 = u16::MAX as u32;
    fn get(&self, order: Ordering) -> u32 {
        u32::from(self.load(order))
    }
    fn set(&self, value: u32, order: Ordering) {
        // `value <= MASK`: every index this module stores is masked.
        self.store(value as u16, order);
    }
}

/// `a − b` modulo the index width.
fn sub<C: IndexCell>(a: u32, b: u32) -> u32 {
    a.wrapping_sub(b) & C::MASK
}

/// `a + n` modulo the index width.
fn add<C: IndexCell>(a: u32, n: u32) -> u32 {
    a.wrapping_add(n) & C::MASK
}

/// Producer side of the index protocol.
#[derive(Debug)]
pub(crate) struct ProducerIndex<'a, C: IndexCell = AtomicU32> {
    head: &'a C,
    tail: &'a C,
    capacity: u32,
    /// Next index to write, counting entries not yet published.
    local_tail: u32,
    /// The tail value last stored to shared memory.
    shared_tail: u32,
    /// The consumer's head as last validated.
    head_seen: u32,
    /// Entries were published since the last [`Self::take_published`].
    published: bool,
}

impl<'a, C: IndexCell> ProducerIndex<'a, C> {
    /// Attaches to the indices in shared memory, validating them.
    pub(crate) fn attach(head: &'a C, tail: &'a C, capacity: u32) -> Result<Self, QueueError> {
        let t = tail.get(Ordering::Relaxed);
        let h = head.get(Ordering::Acquire);
        if sub::<C>(t, h) > capacity {
            return Err(QueueError::OutOfRange {
                head: h,
                tail: t,
                capacity,
            });
        }
        Ok(Self {
            head,
            tail,
            capacity,
            local_tail: t,
            shared_tail: t,
            head_seen: h,
            published: false,
        })
    }

    /// Reads and validates the consumer's head; returns the number of free slots (entries
    /// enqueued but not yet published count as used).
    pub(crate) fn free(&mut self) -> Result<u32, QueueError> {
        let h = self.head.get(Ordering::Acquire);
        // The head may only move forward, from `head_seen` up to the published tail.
        let outstanding = sub::<C>(self.shared_tail, h);
        if outstanding > self.capacity {
            return Err(QueueError::OutOfRange {
                head: h,
                tail: self.shared_tail,
                capacity: self.capacity,
            });
        }
        if outstanding > sub::<C>(self.shared_tail, self.head_seen) {
            return Err(QueueError::PeerIndexRegressed {
                previous: self.head_seen,
                observed: h,
            });
        }
        self.head_seen = h;
        // `local_tail - h <= capacity`: every local entry was reserved against an earlier head.
        Ok(self.capacity.saturating_sub(sub::<C>(self.local_tail, h)))
    }

    /// The slot of the next entry, if there is room.
    pub(crate) fn reserve(&mut self) -> Result<usize, EnqueueError> {
        if self.free()? == 0 {
            return Err(EnqueueError::Full);
        }
        Ok(self.slot(self.local_tail))
    }

    /// The slot of index `index`: always `< capacity`.
    pub(crate) fn slot(&self, index: u32) -> usize {
        (index % self.capacity) as usize
    }

    /// The next index to write.
    pub(crate) fn local_tail(&self) -> u32 {
        self.local_tail
    }

    /// Counts `n` written entries (not yet visible to the consumer).
    pub(crate) fn advance(&mut self, n: u32) {
        self.local_tail = add::<C>(self.local_tail, n);
    }

    /// Makes the written entries visible: Release store of the tail.
    pub(crate) fn publish(&mut self) {
        if self.local_tail != self.shared_tail {
            self.tail.set(self.local_tail, Ordering::Release);
            self.shared_tail = self.local_tail;
            self.published = true;
        }
    }

    /// Whether entries were published since the last call; clears the record.
    pub(crate) fn take_published(&mut self) -> bool {
        core::mem::take(&mut self.published)
    }
}

/// Consumer side of the index protocol.
#[derive(Debug)]
pub(crate) struct ConsumerIndex<'a, C: IndexCell = AtomicU32> {
    head: &'a C,
    tail: &'a C,
    capacity: u32,
    /// Next index to read, counting entries read but not yet released.
    local_head: u32,
    /// The head value last stored to shared memory.
    shared_head: u32,
    /// The producer's tail as last validated.
    tail_seen: u32,
    /// Entries were released since the last [`Self::take_released`].
    released: bool,
}

impl<'a, C: IndexCell> ConsumerIndex<'a, C> {
    /// Attaches to the indices in shared memory, validating them.
    pub(crate) fn attach(head: &'a C, tail: &'a C, capacity: u32) -> Result<Self, QueueError> {
        let h = head.get(Ordering::Relaxed);
        let t = tail.get(Ordering::Acquire);
        if sub::<C>(t, h) > capacity {
            return Err(QueueError::OutOfRange {
                head: h,
                tail: t,
                capacity,
            });
        }
        Ok(Self {
            head,
            tail,
            capacity,
            local_head: h,
            shared_head: h,
            tail_seen: t,
            released: false,
        })
    }

    /// Reads and validates the producer's tail; returns the number of entries available to
    /// read (entries read but not yet released are excluded).
    pub(crate) fn available(&mut self) -> Result<u32, QueueError> {
        let t = self.tail.get(Ordering::Acquire);
        // The tail may only move forward, from `tail_seen` up to `shared_head + capacity`.
        let filled = sub::<C>(t, self.shared_head);
        if filled > self.capacity {
            return Err(QueueError::OutOfRange {
                head: self.shared_head,
                tail: t,
                capacity: self.capacity,
            });
        }
        if filled < sub::<C>(self.tail_seen, self.shared_head) {
            return Err(QueueError::PeerIndexRegressed {
                previous: self.tail_seen,
                observed: t,
            });
        }
        self.tail_seen = t;
        // `shared_head <= local_head <= tail_seen <= t` within the window.
        Ok(sub::<C>(t, self.local_head))
    }

    /// The slot of index `index`: always `< capacity`.
    pub(crate) fn slot(&self, index: u32) -> usize {
        (index % self.capacity) as usize
    }

    /// The next index to read.
    pub(crate) fn local_head(&self) -> u32 {
        self.local_head
    }

    /// Counts `n` read entries (their slots still belong to the consumer).
    pub(crate) fn advance(&mut self, n: u32) {
        self.local_head = add::<C>(self.local_head, n);
    }

    /// Hands the read slots back to the producer: Release store of the head.
    pub(crate) fn publish(&mut self) {
        if self.local_head != self.shared_head {
            self.head.set(self.local_head, Ordering::Release);
            self.shared_head = self.local_head;
            self.released = true;
        }
    }

    /// Whether slots were released since the last call; clears the record.
    pub(crate) fn take_released(&mut self) -> bool {
        core::mem::take(&mut self.released)
    }
}

/// An entry type stored as whole words of `W` (`AtomicU32` for the block queues, `AtomicU16`
/// for the network queues, whose indices share a word), copied with Relaxed atomic accesses
/// (the index Release/Acquire orders them), so that a concurrently scribbling peer yields
/// garbage values but never a data race.
pub(crate) trait WordEntry<W = AtomicU32>: Copy {
    /// Words per entry.
    const WORDS: usize;
    /// Reads an entry from `src` (`src.len() == WORDS`).
    fn load(src: &[W]) -> Self;
    /// Writes the entry to `dst` (`dst.len() == WORDS`).
    fn store(&self, dst: &[W]);
}

macro_rules! word_entry {
    ($ty:ty, $atomic:ty, $int:ty, $words:literal) => {
        impl WordEntry<$atomic> for $ty {
            const WORDS: usize = $words;

            fn load(src: &[$atomic]) -> Self {
                let mut w = [0 as $int; $words];
                for (d, s) in w.iter_mut().zip(src) {
                    *d = s.load(Ordering::Relaxed);
                }
                zerocopy::transmute!(w)
            }

            fn store(&self, dst: &[$atomic]) {
                let w: [$int; $words] = zerocopy::transmute!(*self);
                for (s, d) in w.iter().zip(dst) {
                    d.store(*s, Ordering::Relaxed);
                }
            }
        }
    };
}

word_entry!(BlkReq, AtomicU32, u32, 8);
word_entry!(BlkResp, AtomicU32, u32, 3);
word_entry!(NetBuffDesc, AtomicU16, u16, 8);

/// The slot array of a word-entry queue: exactly `capacity * E::WORDS` words.
#[derive(Debug)]
pub(crate) struct Slots<'a, E, W = AtomicU32> {
    words: &'a [W],
    _entry: PhantomData<E>,
}

impl<'a, W, E: WordEntry<W>> Slots<'a, E, W> {
    /// `words` must hold exactly `capacity * E::WORDS` words (checked by the constructors).
    pub(crate) fn new(words: &'a [W]) -> Self {
        Self {
            words,
            _entry: PhantomData,
        }
    }

    fn words(&self, slot: usize) -> &'a [W] {
        // `slot < capacity` and `words.len() == capacity * WORDS`: in bounds.
        let start = slot * E::WORDS;
        &self.words[start..start + E::WORDS]
    }

    pub(crate) fn read(&self, slot: usize) -> E {
        E::load(self.words(slot))
    }

    pub(crate) fn write(&self, slot: usize, entry: &E) {
        entry.store(self.words(slot));
    }
}

/// Splits a region of words `W` into `header_words` and exactly `capacity * entry_words` entry
/// words.
pub(crate) fn split_region<W>(
    region: &[W],
    header_words: usize,
    entry_words: usize,
    capacity: u32,
) -> Result<(&[W], &[W]), crate::error::SetupError> {
    use crate::error::SetupError;
    let word_bytes = core::mem::size_of::<W>();
    if capacity == 0 {
        return Err(SetupError::ZeroCapacity);
    }
    let entries = (capacity as usize)
        .checked_mul(entry_words)
        .ok_or(SetupError::CapacityTooLarge)?;
    let total = entries
        .checked_add(header_words)
        .ok_or(SetupError::CapacityTooLarge)?;
    let needed = total
        .checked_mul(word_bytes)
        .ok_or(SetupError::CapacityTooLarge)?;
    if region.len() < total {
        return Err(SetupError::RegionTooSmall {
            needed,
            available: core::mem::size_of_val(region),
        });
    }
    let (header, rest) = region.split_at(header_words);
    Ok((header, &rest[..entries]))
}
