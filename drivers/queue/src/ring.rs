//! The SPSC index protocol shared by every queue, in safe code over atomic views.
//!
//! Free-running `u32` indices: the producer writes only `tail`, the consumer only `head`; the
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
use crate::layout::{BlkReq, BlkResp};
use crate::sync::{AtomicU32, Ordering};

/// Producer side of the index protocol.
#[derive(Debug)]
pub(crate) struct ProducerIndex<'a> {
    head: &'a AtomicU32,
    tail: &'a AtomicU32,
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

impl<'a> ProducerIndex<'a> {
    /// Attaches to the indices in shared memory, validating them.
    pub(crate) fn attach(
        head: &'a AtomicU32,
        tail: &'a AtomicU32,
        capacity: u32,
    ) -> Result<Self, QueueError> {
        let t = tail.load(Ordering::Relaxed);
        let h = head.load(Ordering::Acquire);
        if t.wrapping_sub(h) > capacity {
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
        let h = self.head.load(Ordering::Acquire);
        // The head may only move forward, from `head_seen` up to the published tail.
        let outstanding = self.shared_tail.wrapping_sub(h);
        if outstanding > self.capacity {
            return Err(QueueError::OutOfRange {
                head: h,
                tail: self.shared_tail,
                capacity: self.capacity,
            });
        }
        if outstanding > self.shared_tail.wrapping_sub(self.head_seen) {
            return Err(QueueError::PeerIndexRegressed {
                previous: self.head_seen,
                observed: h,
            });
        }
        self.head_seen = h;
        // `local_tail - h <= capacity`: every local entry was reserved against an earlier head.
        Ok(self
            .capacity
            .saturating_sub(self.local_tail.wrapping_sub(h)))
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
        self.local_tail = self.local_tail.wrapping_add(n);
    }

    /// Makes the written entries visible: Release store of the tail.
    pub(crate) fn publish(&mut self) {
        if self.local_tail != self.shared_tail {
            self.tail.store(self.local_tail, Ordering::Release);
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
pub(crate) struct ConsumerIndex<'a> {
    head: &'a AtomicU32,
    tail: &'a AtomicU32,
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

impl<'a> ConsumerIndex<'a> {
    /// Attaches to the indices in shared memory, validating them.
    pub(crate) fn attach(
        head: &'a AtomicU32,
        tail: &'a AtomicU32,
        capacity: u32,
    ) -> Result<Self, QueueError> {
        let h = head.load(Ordering::Relaxed);
        let t = tail.load(Ordering::Acquire);
        if t.wrapping_sub(h) > capacity {
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
        let t = self.tail.load(Ordering::Acquire);
        // The tail may only move forward, from `tail_seen` up to `shared_head + capacity`.
        let filled = t.wrapping_sub(self.shared_head);
        if filled > self.capacity {
            return Err(QueueError::OutOfRange {
                head: self.shared_head,
                tail: t,
                capacity: self.capacity,
            });
        }
        if filled < self.tail_seen.wrapping_sub(self.shared_head) {
            return Err(QueueError::PeerIndexRegressed {
                previous: self.tail_seen,
                observed: t,
            });
        }
        self.tail_seen = t;
        // `shared_head <= local_head <= tail_seen <= t` within the window.
        Ok(t.wrapping_sub(self.local_head))
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
        self.local_head = self.local_head.wrapping_add(n);
    }

    /// Hands the read slots back to the producer: Release store of the head.
    pub(crate) fn publish(&mut self) {
        if self.local_head != self.shared_head {
            self.head.store(self.local_head, Ordering::Release);
            self.shared_head = self.local_head;
            self.released = true;
        }
    }

    /// Whether slots were released since the last call; clears the record.
    pub(crate) fn take_released(&mut self) -> bool {
        core::mem::take(&mut self.released)
    }
}

/// An entry type stored as whole 32-bit words, copied with Relaxed atomic word accesses (the
/// index Release/Acquire orders them), so that a concurrently scribbling peer yields garbage
/// values but never a data race.
pub(crate) trait WordEntry: Copy {
    /// Words per entry.
    const WORDS: usize;
    /// Reads an entry from `src` (`src.len() == WORDS`).
    fn load(src: &[AtomicU32]) -> Self;
    /// Writes the entry to `dst` (`dst.len() == WORDS`).
    fn store(&self, dst: &[AtomicU32]);
}

macro_rules! word_entry {
    ($ty:ty, $words:literal) => {
        impl WordEntry for $ty {
            const WORDS: usize = $words;

            fn load(src: &[AtomicU32]) -> Self {
                let mut w = [0u32; $words];
                for (d, s) in w.iter_mut().zip(src) {
                    *d = s.load(Ordering::Relaxed);
                }
                zerocopy::transmute!(w)
            }

            fn store(&self, dst: &[AtomicU32]) {
                let w: [u32; $words] = zerocopy::transmute!(*self);
                for (s, d) in w.iter().zip(dst) {
                    d.store(*s, Ordering::Relaxed);
                }
            }
        }
    };
}

word_entry!(BlkReq, 8);
word_entry!(BlkResp, 3);

/// The slot array of a word-entry queue: exactly `capacity * E::WORDS` words.
#[derive(Debug)]
pub(crate) struct Slots<'a, E> {
    words: &'a [AtomicU32],
    _entry: PhantomData<E>,
}

impl<'a, E: WordEntry> Slots<'a, E> {
    /// `words` must hold exactly `capacity * E::WORDS` words (checked by the constructors).
    pub(crate) fn new(words: &'a [AtomicU32]) -> Self {
        Self {
            words,
            _entry: PhantomData,
        }
    }

    fn words(&self, slot: usize) -> &'a [AtomicU32] {
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

/// Splits a word region into `header_words` and exactly `capacity * entry_words` entry words.
pub(crate) fn split_region(
    region: &[AtomicU32],
    header_words: usize,
    entry_words: usize,
    capacity: u32,
) -> Result<(&[AtomicU32], &[AtomicU32]), crate::error::SetupError> {
    use crate::error::SetupError;
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
        .checked_mul(crate::layout::word::BYTES)
        .ok_or(SetupError::CapacityTooLarge)?;
    if region.len() < total {
        return Err(SetupError::RegionTooSmall {
            needed,
            available: region.len() * crate::layout::word::BYTES,
        });
    }
    let (header, rest) = region.split_at(header_words);
    Ok((header, &rest[..entries]))
}
