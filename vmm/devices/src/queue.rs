//! Split virtqueues (virtio 1.2 §2.7): owns a queue's guest-programmed layout, popping descriptor
//! chains from the available ring, and returning them through the used ring.
//!
//! Everything the guest wrote is untrusted. Every read and write goes through
//! [`GuestMemory`], which refuses anything outside guest RAM; on top of that this module checks:
//!
//! - when the driver sets QueueReady ([`Queue::enable`]): the size is a power of two in
//!   `1..=max_size`, the three areas have the alignment the spec demands (16, 2, 4) and lie in
//!   guest RAM without wrapping;
//! - per pop ([`Queue::pop_into`]): the available index has not advanced by more than the queue
//!   size, the head index is below the size, every `next` index is below the size, and the chain
//!   ends within `size` descriptors (a longer chain has a loop). These make the queue unusable:
//!   they are [`QueueError`]s, and the device goes to DEVICE_NEEDS_RESET;
//! - per descriptor: non-zero length, no INDIRECT flag (never offered), no wrap of `addr + len`,
//!   first and last byte in guest RAM, device-readable descriptors before device-writable ones,
//!   total length within `u32`, and at most `N` descriptors (the device's limit). These make only
//!   the request bad: they are recorded as a [`ChainError`] in the [`DescChain`], and the device
//!   fails the request (through its status byte, [`DescChain::status_byte`], when it has one).
//!
//! The descriptors are read once, into the [`DescChain`] snapshot that the device then uses: a
//! guest vCPU changing the table meanwhile cannot make the device act on a chain that was not
//! validated. (A guest may still change the data buffers; that only changes the data.)
//!
//! Notification suppression (§2.7.7, §2.7.10): without VIRTIO_F_EVENT_IDX the device interrupts
//! unless the driver set VIRTQ_AVAIL_F_NO_INTERRUPT. With it ([`Queue::set_event_idx`], set by
//! the transport at DRIVER_OK when the driver took the feature), the device interrupts only when
//! `used.idx` passed the driver's `used_event` since its last decision
//! ([`Queue::notification_wanted`]), and each time it finds the available ring empty it writes
//! `avail_event` = its next position (then re-reads the index, so a chain made available
//! meanwhile is not missed): the driver notifies for the next chain it adds and for none while
//! the device still has chains to pop. A device that stops popping before the ring is empty (all
//! its request slots busy) must come back by itself when a slot frees, as virtio-blk does.
//!
//! Memory ordering (§2.7.7, §2.7.8): the device reads `avail.idx`, then (acquire fence) the ring
//! entry and descriptors; it writes the used element, then (release fence) `used.idx`, and before
//! reading `avail.flags` to decide on an interrupt a full fence. The VMM handles one exit at a
//! time on one thread, so plain accesses through [`GuestMemory`] in this order suffice as far as
//! the VMM itself is concerned; the fences (a DMB on AArch64, no system call) order them for
//! guest vCPUs that run concurrently on other cores.

use core::sync::atomic::{Ordering, fence};

use vmm_core::addr::GuestPhysAddr;
use vmm_core::memory::{GuestMemory, MemError};

/// Largest queue size the split ring allows (§2.7).
pub const MAX_QUEUE_SIZE: u16 = 32768;
/// Descriptor flag: the chain continues at `next`.
pub const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable (write-only for the device).
pub const DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer holds an indirect descriptor table.
pub const DESC_F_INDIRECT: u16 = 4;
/// Available-ring flag: the driver asks not to be interrupted.
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Size of one descriptor-table entry.
pub const DESC_SIZE: u64 = 16;

/// One descriptor-table entry as read from guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// Guest-physical address of the buffer.
    pub addr: u64,
    /// Length of the buffer in bytes.
    pub len: u32,
    /// `DESC_F_*` flags.
    pub flags: u16,
    /// Index of the next descriptor when `flags` has [`DESC_F_NEXT`].
    pub next: u16,
}

impl Descriptor {
    /// Decodes the 16-byte little-endian table entry.
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        let [
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            a6,
            a7,
            l0,
            l1,
            l2,
            l3,
            f0,
            f1,
            n0,
            n1,
        ] = *b;
        Descriptor {
            addr: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            flags: u16::from_le_bytes([f0, f1]),
            next: u16::from_le_bytes([n0, n1]),
        }
    }
    /// Encodes the 16-byte little-endian table entry (for drivers in tests).
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..].copy_from_slice(&self.next.to_le_bytes());
        b
    }
    /// Whether the device may write the buffer (and must not read it).
    pub fn is_write_only(&self) -> bool {
        self.flags & DESC_F_WRITE != 0
    }
    /// Whether the chain continues.
    pub fn has_next(&self) -> bool {
        self.flags & DESC_F_NEXT != 0
    }
}

/// The area of a queue a check refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// The descriptor table (Descriptor Area).
    DescTable,
    /// The available ring (Driver Area).
    AvailRing,
    /// The used ring (Device Area).
    UsedRing,
}

/// A queue state the device cannot recover from: the device must go to DEVICE_NEEDS_RESET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is not ready (QueueReady is 0): its memory must not be touched.
    NotReady,
    /// QueueNum is zero, above QueueNumMax, or not a power of two.
    BadSize {
        /// The size the driver wrote.
        size: u16,
        /// The device's maximum.
        max: u16,
    },
    /// An area is not aligned as the spec requires.
    Misaligned {
        /// Which area.
        area: Area,
        /// Its address.
        addr: u64,
    },
    /// An area wraps the address space or lies (partly) outside guest RAM.
    AreaOutOfRange {
        /// Which area.
        area: Area,
        /// Its address.
        addr: u64,
    },
    /// A ring or table access failed although the area was checked at enable time.
    Memory(MemError),
    /// `avail.idx` moved ahead of the device's position by more than the queue size.
    AvailIndex {
        /// The index the driver published.
        avail_idx: u16,
        /// The device's next available-ring position.
        next_avail: u16,
    },
    /// An available-ring entry names a descriptor at or beyond the queue size.
    HeadIndex {
        /// The head index.
        head: u16,
    },
    /// A descriptor's `next` is at or beyond the queue size: the chain cannot be followed.
    NextIndex {
        /// The descriptor holding the bad `next`.
        index: u16,
        /// Its `next`.
        next: u16,
    },
    /// The chain did not end within `size` descriptors, so it contains a loop.
    Loop {
        /// The chain's head.
        head: u16,
    },
}

/// Why one request's descriptor chain is unusable (the queue itself stays usable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    /// A descriptor of length zero.
    ZeroLength {
        /// Its index.
        index: u16,
    },
    /// A descriptor with the INDIRECT flag (the feature is never offered).
    Indirect {
        /// Its index.
        index: u16,
    },
    /// `addr + len` wraps the address space.
    Wraps {
        /// Its index.
        index: u16,
    },
    /// A buffer not (entirely) in guest RAM.
    OutOfRange {
        /// Its index.
        index: u16,
    },
    /// A device-readable descriptor after a device-writable one.
    Order {
        /// Its index.
        index: u16,
    },
    /// More descriptors than the device accepts in one request.
    TooLong {
        /// The device's limit.
        max: usize,
    },
    /// The total length exceeds `u32::MAX` bytes.
    TooLarge,
}

/// Why a copy to or from a chain's buffers failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainIoError {
    /// The chain has a [`ChainError`]: its buffers are not used.
    BadChain,
    /// The range lies beyond the chain's readable (or writable) bytes.
    OutOfBounds,
    /// Guest memory refused the access.
    Memory(MemError),
}

/// A validated snapshot of one descriptor chain, holding up to `N` descriptors.
///
/// The device-readable descriptors form the chain's *readable stream* and the device-writable
/// ones, which follow them, its *writable stream*; [`DescChain::read`] and [`DescChain::write`]
/// address bytes in these streams, whatever the buffer boundaries (VIRTIO_F_VERSION_1 implies
/// that the device makes no assumption about the layout, §2.7.4.4).
#[derive(Debug, Clone)]
pub struct DescChain<const N: usize> {
    head: u16,
    descs: [Descriptor; N],
    count: usize,
    walked: usize,
    readable: u32,
    writable: u32,
    error: Option<ChainError>,
    last: Descriptor,
    last_valid: bool,
}

impl<const N: usize> Default for DescChain<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> DescChain<N> {
    /// An empty chain (storage to pop into).
    pub const fn new() -> Self {
        DescChain {
            head: 0,
            descs: [Descriptor {
                addr: 0,
                len: 0,
                flags: 0,
                next: 0,
            }; N],
            count: 0,
            walked: 0,
            readable: 0,
            writable: 0,
            error: None,
            last: Descriptor {
                addr: 0,
                len: 0,
                flags: 0,
                next: 0,
            },
            last_valid: false,
        }
    }
    fn clear(&mut self, head: u16) {
        self.head = head;
        self.count = 0;
        self.walked = 0;
        self.readable = 0;
        self.writable = 0;
        self.error = None;
        self.last = Descriptor::default();
        self.last_valid = false;
    }
    fn fail(&mut self, e: ChainError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
    /// The head index: the id to return in the used ring.
    pub fn head(&self) -> u16 {
        self.head
    }
    /// The stored descriptors, in chain order (all of them unless the chain is
    /// [`ChainError::TooLong`]).
    pub fn descriptors(&self) -> &[Descriptor] {
        self.descs.get(..self.count).unwrap_or(&[])
    }
    /// Number of descriptors in the chain.
    pub fn len(&self) -> usize {
        self.walked
    }
    /// Whether the chain is empty (never, after a successful pop).
    pub fn is_empty(&self) -> bool {
        self.walked == 0
    }
    /// The first problem found, if the request is bad.
    pub fn error(&self) -> Option<ChainError> {
        self.error
    }
    /// Total bytes of the device-readable descriptors.
    pub fn readable_len(&self) -> u32 {
        self.readable
    }
    /// Total bytes of the device-writable descriptors.
    pub fn writable_len(&self) -> u32 {
        self.writable
    }
    /// The last descriptor of the chain.
    pub fn last(&self) -> Descriptor {
        self.last
    }
    /// The last byte of the chain if the last descriptor is device-writable and passed every
    /// per-descriptor check (in guest RAM, non-zero length, no INDIRECT): where a device such as
    /// virtio-blk reports the request's status, even for a bad chain.
    pub fn status_byte(&self) -> Option<GuestPhysAddr> {
        if !self.last_valid || !self.last.is_write_only() {
            return None;
        }
        let off = u64::from(self.last.len.checked_sub(1)?);
        self.last.addr.checked_add(off).map(GuestPhysAddr)
    }

    /// Copies `buf.len()` bytes from the readable stream at `offset`.
    pub fn read<M: GuestMemory>(
        &self,
        mem: &M,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), ChainIoError> {
        self.check(offset, buf.len(), self.readable)?;
        let mut pos = 0u64;
        let mut done = 0usize;
        for d in self
            .descs
            .iter()
            .take(self.count)
            .filter(|d| !d.is_write_only())
        {
            if done == buf.len() {
                break;
            }
            let (start, end) = (pos, pos + u64::from(d.len));
            pos = end;
            let want = offset + done as u64;
            if want >= end {
                continue;
            }
            let skip = want - start;
            let n = core::cmp::min(end - want, (buf.len() - done) as u64) as usize;
            let dst = buf
                .get_mut(done..done + n)
                .ok_or(ChainIoError::OutOfBounds)?;
            mem.read(GuestPhysAddr(d.addr + skip), dst)
                .map_err(ChainIoError::Memory)?;
            done += n;
        }
        if done == buf.len() {
            Ok(())
        } else {
            Err(ChainIoError::OutOfBounds)
        }
    }

    /// Copies `buf` into the writable stream at `offset`.
    pub fn write<M: GuestMemory>(
        &self,
        mem: &mut M,
        offset: u64,
        buf: &[u8],
    ) -> Result<(), ChainIoError> {
        self.check(offset, buf.len(), self.writable)?;
        let mut pos = 0u64;
        let mut done = 0usize;
        for d in self
            .descs
            .iter()
            .take(self.count)
            .filter(|d| d.is_write_only())
        {
            if done == buf.len() {
                break;
            }
            let (start, end) = (pos, pos + u64::from(d.len));
            pos = end;
            let want = offset + done as u64;
            if want >= end {
                continue;
            }
            let skip = want - start;
            let n = core::cmp::min(end - want, (buf.len() - done) as u64) as usize;
            let src = buf.get(done..done + n).ok_or(ChainIoError::OutOfBounds)?;
            mem.write(GuestPhysAddr(d.addr + skip), src)
                .map_err(ChainIoError::Memory)?;
            done += n;
        }
        if done == buf.len() {
            Ok(())
        } else {
            Err(ChainIoError::OutOfBounds)
        }
    }

    fn check(&self, offset: u64, len: usize, stream: u32) -> Result<(), ChainIoError> {
        if self.error.is_some() {
            return Err(ChainIoError::BadChain);
        }
        match offset.checked_add(len as u64) {
            Some(end) if end <= u64::from(stream) => Ok(()),
            _ => Err(ChainIoError::OutOfBounds),
        }
    }
}

/// Whether the `len`-byte range at `addr` (len ≥ 1) is in guest RAM: its first and last byte
/// are readable. Exact for contiguous RAM; for RAM made of several windows a range spanning a
/// hole passes, and then the access itself is refused by [`GuestMemory`] (the authority).
fn probe<M: GuestMemory>(mem: &M, addr: u64, len: u64) -> bool {
    let Some(last) = len.checked_sub(1).and_then(|l| addr.checked_add(l)) else {
        return false;
    };
    let mut b = [0u8; 1];
    mem.read(GuestPhysAddr(addr), &mut b).is_ok() && mem.read(GuestPhysAddr(last), &mut b).is_ok()
}

fn read_u16<M: GuestMemory>(mem: &M, addr: u64) -> Result<u16, QueueError> {
    let mut b = [0u8; 2];
    mem.read(GuestPhysAddr(addr), &mut b)
        .map_err(QueueError::Memory)?;
    Ok(u16::from_le_bytes(b))
}

/// One split virtqueue as the device sees it.
#[derive(Debug, Clone)]
pub struct Queue {
    max_size: u16,
    size: u16,
    ready: bool,
    desc_table: u64,
    avail_ring: u64,
    used_ring: u64,
    next_avail: u16,
    next_used: u16,
    /// VIRTIO_F_EVENT_IDX negotiated.
    event_idx: bool,
    /// `used.idx` when the device last decided on an interrupt (event-index mode).
    signalled_used: u16,
}

/// Whether an index moving from `old` to `new` passed `event` (virtio 1.2 §2.7.10's
/// `vring_need_event`): `event` in `[old, new)`, modulo 2^16.
pub const fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

impl Queue {
    /// A queue the device offers with QueueNumMax `max_size` (clamped to [`MAX_QUEUE_SIZE`];
    /// 0 means the queue does not exist).
    pub const fn new(max_size: u16) -> Self {
        let max_size = if max_size > MAX_QUEUE_SIZE {
            MAX_QUEUE_SIZE
        } else {
            max_size
        };
        Queue {
            max_size,
            size: max_size,
            ready: false,
            desc_table: 0,
            avail_ring: 0,
            used_ring: 0,
            next_avail: 0,
            next_used: 0,
            event_idx: false,
            signalled_used: 0,
        }
    }
    /// Switches VIRTIO_F_EVENT_IDX's suppression on or off (see the module doc).
    pub fn set_event_idx(&mut self, on: bool) {
        self.event_idx = on;
        self.signalled_used = self.next_used;
    }
    /// Whether VIRTIO_F_EVENT_IDX's suppression is on.
    pub fn event_idx(&self) -> bool {
        self.event_idx
    }
    /// QueueNumMax.
    pub fn max_size(&self) -> u16 {
        self.max_size
    }
    /// QueueNum (the size the driver chose).
    pub fn size(&self) -> u16 {
        self.size
    }
    /// QueueReady.
    pub fn ready(&self) -> bool {
        self.ready
    }
    /// Descriptor Area address.
    pub fn desc_table(&self) -> u64 {
        self.desc_table
    }
    /// Driver Area (available ring) address.
    pub fn avail_ring(&self) -> u64 {
        self.avail_ring
    }
    /// Device Area (used ring) address.
    pub fn used_ring(&self) -> u64 {
        self.used_ring
    }
    /// The device's next position in the available ring (free-running).
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }
    /// The device's next position in the used ring (free-running; the `used.idx` last published).
    pub fn next_used(&self) -> u16 {
        self.next_used
    }
    /// Sets QueueNum (ignored while the queue is ready, as the driver must not change it).
    pub fn set_size(&mut self, size: u16) {
        if !self.ready {
            self.size = size;
        }
    }
    /// Sets the Descriptor Area address (ignored while ready).
    pub fn set_desc_table(&mut self, addr: u64) {
        if !self.ready {
            self.desc_table = addr;
        }
    }
    /// Sets the Driver Area address (ignored while ready).
    pub fn set_avail_ring(&mut self, addr: u64) {
        if !self.ready {
            self.avail_ring = addr;
        }
    }
    /// Sets the Device Area address (ignored while ready).
    pub fn set_used_ring(&mut self, addr: u64) {
        if !self.ready {
            self.used_ring = addr;
        }
    }

    /// Checks the layout the driver programmed and, if it is sound, makes the queue ready
    /// (QueueReady = 1). On error the queue stays not ready.
    pub fn enable<M: GuestMemory>(&mut self, mem: &M) -> Result<(), QueueError> {
        let size = self.size;
        if size == 0 || size > self.max_size || !size.is_power_of_two() {
            return Err(QueueError::BadSize {
                size,
                max: self.max_size,
            });
        }
        let n = u64::from(size);
        let areas = [
            (Area::DescTable, self.desc_table, 16, DESC_SIZE * n),
            (Area::AvailRing, self.avail_ring, 2, 6 + 2 * n),
            (Area::UsedRing, self.used_ring, 4, 6 + 8 * n),
        ];
        for (area, addr, align, len) in areas {
            if !addr.is_multiple_of(align) {
                return Err(QueueError::Misaligned { area, addr });
            }
            if !probe(mem, addr, len) {
                return Err(QueueError::AreaOutOfRange { area, addr });
            }
        }
        self.ready = true;
        Ok(())
    }
    /// QueueReady = 0: the device stops touching the queue's memory.
    pub fn disable(&mut self) {
        self.ready = false;
    }
    /// Device reset: not ready, layout and positions cleared, size back to the maximum.
    pub fn reset(&mut self) {
        *self = Queue::new(self.max_size);
    }

    /// How many chains the driver has made available and the device not yet popped.
    pub fn pending<M: GuestMemory>(&self, mem: &M) -> Result<u16, QueueError> {
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        let avail_idx = read_u16(mem, self.avail_ring + 2)?;
        let pending = avail_idx.wrapping_sub(self.next_avail);
        if pending > self.size {
            return Err(QueueError::AvailIndex {
                avail_idx,
                next_avail: self.next_avail,
            });
        }
        Ok(pending)
    }

    /// Pops the next available chain into `chain`: `Ok(false)` if there is none. A chain whose
    /// request is bad is still popped (`chain.error()` says why) so that the device can return it;
    /// an `Err` means the queue is unusable.
    pub fn pop_into<M: GuestMemory, const N: usize>(
        &mut self,
        mem: &mut M,
        chain: &mut DescChain<N>,
    ) -> Result<bool, QueueError> {
        if self.pending(mem)? == 0 {
            if !self.event_idx {
                return Ok(false);
            }
            // Event-index mode: ask for a notification at the next chain, then look again (the
            // driver may have added one before it could see avail_event).
            let at = self.used_ring + 4 + 8 * u64::from(self.size);
            mem.write(GuestPhysAddr(at), &self.next_avail.to_le_bytes())
                .map_err(QueueError::Memory)?;
            fence(Ordering::SeqCst);
            if self.pending(mem)? == 0 {
                return Ok(false);
            }
        }
        // avail.idx before the ring entry and the descriptors it publishes.
        fence(Ordering::Acquire);
        let slot = u64::from(self.next_avail % self.size);
        let head = read_u16(mem, self.avail_ring + 4 + 2 * slot)?;
        if head >= self.size {
            return Err(QueueError::HeadIndex { head });
        }
        self.next_avail = self.next_avail.wrapping_add(1);
        self.walk(mem, head, chain)?;
        Ok(true)
    }

    fn walk<M: GuestMemory, const N: usize>(
        &self,
        mem: &M,
        head: u16,
        chain: &mut DescChain<N>,
    ) -> Result<(), QueueError> {
        chain.clear(head);
        let mut index = head;
        let mut seen_writable = false;
        loop {
            if chain.walked >= usize::from(self.size) {
                return Err(QueueError::Loop { head });
            }
            chain.walked += 1;
            let mut raw = [0u8; 16];
            mem.read(
                GuestPhysAddr(self.desc_table + DESC_SIZE * u64::from(index)),
                &mut raw,
            )
            .map_err(QueueError::Memory)?;
            let d = Descriptor::from_bytes(&raw);
            let valid = self.check_descriptor(mem, index, &d, &mut seen_writable, chain);
            match chain.descs.get_mut(chain.count) {
                Some(slot) => {
                    *slot = d;
                    chain.count += 1;
                }
                None => chain.fail(ChainError::TooLong { max: N }),
            }
            if !d.has_next() {
                chain.last = d;
                chain.last_valid = valid;
                return Ok(());
            }
            if d.next >= self.size {
                return Err(QueueError::NextIndex {
                    index,
                    next: d.next,
                });
            }
            index = d.next;
        }
    }

    /// Per-descriptor checks; records the first failure in `chain` and says whether this
    /// descriptor passed the checks that concern it alone.
    fn check_descriptor<M: GuestMemory, const N: usize>(
        &self,
        mem: &M,
        index: u16,
        d: &Descriptor,
        seen_writable: &mut bool,
        chain: &mut DescChain<N>,
    ) -> bool {
        let own = if d.flags & DESC_F_INDIRECT != 0 {
            Some(ChainError::Indirect { index })
        } else if d.len == 0 {
            Some(ChainError::ZeroLength { index })
        } else if d.addr.checked_add(u64::from(d.len) - 1).is_none() {
            Some(ChainError::Wraps { index })
        } else if !probe(mem, d.addr, u64::from(d.len)) {
            Some(ChainError::OutOfRange { index })
        } else {
            None
        };
        if let Some(e) = own {
            chain.fail(e);
        }
        if d.is_write_only() {
            *seen_writable = true;
            match chain.writable.checked_add(d.len) {
                Some(w) => chain.writable = w,
                None => chain.fail(ChainError::TooLarge),
            }
        } else {
            if *seen_writable {
                chain.fail(ChainError::Order { index });
            }
            match chain.readable.checked_add(d.len) {
                Some(r) => chain.readable = r,
                None => chain.fail(ChainError::TooLarge),
            }
        }
        if chain.readable.checked_add(chain.writable).is_none() {
            chain.fail(ChainError::TooLarge);
        }
        own.is_none()
    }

    /// Returns the chain with head `head` through the used ring, `len` being the number of bytes
    /// the device wrote into its buffers.
    pub fn add_used<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        let slot = u64::from(self.next_used % self.size);
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        mem.write(GuestPhysAddr(self.used_ring + 4 + 8 * slot), &elem)
            .map_err(QueueError::Memory)?;
        // The element (and the buffers' contents) before the index that publishes it.
        fence(Ordering::Release);
        self.next_used = self.next_used.wrapping_add(1);
        mem.write(
            GuestPhysAddr(self.used_ring + 2),
            &self.next_used.to_le_bytes(),
        )
        .map_err(QueueError::Memory)
    }

    /// Whether the driver wants a used-buffer notification for what the device published since
    /// it last asked: without VIRTIO_F_EVENT_IDX, unless the available ring has
    /// VIRTQ_AVAIL_F_NO_INTERRUPT; with it, if `used.idx` passed the driver's `used_event`
    /// since then.
    pub fn notification_wanted<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, QueueError> {
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        // used.idx is published before the flags or used_event are read.
        fence(Ordering::SeqCst);
        if self.event_idx {
            let event = read_u16(mem, self.avail_ring + 4 + 2 * u64::from(self.size))?;
            let (old, new) = (self.signalled_used, self.next_used);
            self.signalled_used = new;
            return Ok(need_event(event, new, old));
        }
        Ok(read_u16(mem, self.avail_ring)? & AVAIL_F_NO_INTERRUPT == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_core::memory::GuestRam;

    const BASE: u64 = 0x4000_0000;
    const DESC: u64 = BASE;
    const AVAIL: u64 = BASE + 0x1000;
    const USED: u64 = BASE + 0x2000;

    fn ready_queue(ram: &GuestRam<'_>, size: u16) -> Queue {
        let mut q = Queue::new(16);
        q.set_size(size);
        q.set_desc_table(DESC);
        q.set_avail_ring(AVAIL);
        q.set_used_ring(USED);
        q.enable(ram).unwrap();
        q
    }

    fn put_desc(ram: &mut GuestRam<'_>, i: u16, d: Descriptor) {
        ram.write(GuestPhysAddr(DESC + 16 * u64::from(i)), &d.to_bytes())
            .unwrap();
    }

    fn publish(ram: &mut GuestRam<'_>, slot: u16, head: u16, idx: u16) {
        ram.write(
            GuestPhysAddr(AVAIL + 4 + 2 * u64::from(slot)),
            &head.to_le_bytes(),
        )
        .unwrap();
        ram.write(GuestPhysAddr(AVAIL + 2), &idx.to_le_bytes())
            .unwrap();
    }

    #[test]
    fn enable_checks_layout() {
        let mut buf = [0u8; 0x4000];
        let ram = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
        let mut q = Queue::new(16);
        q.set_desc_table(DESC);
        q.set_avail_ring(AVAIL);
        q.set_used_ring(USED);
        q.set_size(12);
        assert!(matches!(q.enable(&ram), Err(QueueError::BadSize { .. })));
        q.set_size(32);
        assert!(matches!(q.enable(&ram), Err(QueueError::BadSize { .. })));
        q.set_size(0);
        assert!(matches!(q.enable(&ram), Err(QueueError::BadSize { .. })));
        q.set_size(16);
        q.set_desc_table(DESC + 8);
        assert!(matches!(q.enable(&ram), Err(QueueError::Misaligned { .. })));
        q.set_desc_table(DESC);
        q.set_used_ring(BASE + 0x4000 - 8);
        assert!(matches!(
            q.enable(&ram),
            Err(QueueError::AreaOutOfRange {
                area: Area::UsedRing,
                ..
            })
        ));
        q.set_used_ring(u64::MAX - 3);
        assert!(matches!(
            q.enable(&ram),
            Err(QueueError::AreaOutOfRange { .. })
        ));
        q.set_used_ring(USED);
        q.enable(&ram).unwrap();
        assert!(q.ready());
        // Layout writes are ignored while ready.
        q.set_size(2);
        assert_eq!(q.size(), 16);
    }

    #[test]
    fn each_area_may_end_at_the_last_byte_of_ram() {
        // §2.7: for a queue of size n the descriptor table is 16n bytes, the available ring
        // 6 + 2n and the used ring 6 + 8n (with VIRTIO_F_EVENT_IDX not negotiated, the
        // used_event / avail_event fields are still there). n = 4: 64, 14 and 38 bytes.
        for (area, len, align) in [
            (Area::DescTable, 64u64, 16u64),
            (Area::AvailRing, 14, 2),
            (Area::UsedRing, 38, 4),
        ] {
            // RAM that ends `len` bytes after an aligned address.
            let mut buf = [0u8; 0x2100];
            let end = BASE + 0x2000 + len;
            let ram = GuestRam::new(GuestPhysAddr(BASE), &mut buf[..0x2000 + len as usize]);
            for (start, fits) in [(end - len, true), (end - len + align, false)] {
                let mut q = Queue::new(16);
                q.set_size(4);
                q.set_desc_table(BASE);
                q.set_avail_ring(BASE + 0x100);
                q.set_used_ring(BASE + 0x200);
                match area {
                    Area::DescTable => q.set_desc_table(start),
                    Area::AvailRing => q.set_avail_ring(start),
                    Area::UsedRing => q.set_used_ring(start),
                }
                let want = if fits {
                    Ok(())
                } else {
                    Err(QueueError::AreaOutOfRange { area, addr: start })
                };
                assert_eq!(q.enable(&ram), want, "{area:?} at {start:#x}");
            }
        }
    }

    #[test]
    fn pops_validated_chain_and_streams() {
        let mut buf = [0u8; 0x4000];
        let mut ram = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
        let mut q = ready_queue(&ram, 8);
        ram.write(GuestPhysAddr(BASE + 0x3000), b"hello, world")
            .unwrap();
        put_desc(
            &mut ram,
            3,
            Descriptor {
                addr: BASE + 0x3000,
                len: 5,
                flags: DESC_F_NEXT,
                next: 5,
            },
        );
        put_desc(
            &mut ram,
            5,
            Descriptor {
                addr: BASE + 0x3005,
                len: 7,
                flags: DESC_F_NEXT,
                next: 1,
            },
        );
        put_desc(
            &mut ram,
            1,
            Descriptor {
                addr: BASE + 0x3100,
                len: 4,
                flags: DESC_F_WRITE,
                next: 0,
            },
        );
        publish(&mut ram, 0, 3, 1);
        let mut c = DescChain::<4>::new();
        assert!(c.is_empty());
        assert_eq!((q.next_avail(), q.next_used()), (0, 0));
        assert!(q.pop_into(&mut ram, &mut c).unwrap());
        assert_eq!(c.error(), None);
        assert_eq!((c.head(), c.len(), c.is_empty()), (3, 3, false));
        assert_eq!((c.readable_len(), c.writable_len()), (12, 4));
        let mut b = [0u8; 6];
        c.read(&ram, 3, &mut b).unwrap();
        assert_eq!(&b, b"lo, wo");
        assert_eq!(c.read(&ram, 7, &mut b), Err(ChainIoError::OutOfBounds));
        c.write(&mut ram, 1, b"xyz").unwrap();
        // A range beyond the writable bytes is refused whole: nothing of it is written.
        assert_eq!(c.write(&mut ram, 2, b"abc"), Err(ChainIoError::OutOfBounds));
        let mut w = [0u8; 4];
        ram.read(GuestPhysAddr(BASE + 0x3100), &mut w).unwrap();
        assert_eq!(&w, b"\0xyz");
        assert_eq!(
            c.last(),
            Descriptor {
                addr: BASE + 0x3100,
                len: 4,
                flags: DESC_F_WRITE,
                next: 0,
            }
        );
        assert_eq!(c.status_byte(), Some(GuestPhysAddr(BASE + 0x3103)));
        assert!(!q.pop_into(&mut ram, &mut c).unwrap());
        q.add_used(&mut ram, 3, 4).unwrap();
        assert_eq!(ram.read_u32(GuestPhysAddr(USED + 4)), Ok(3));
        assert_eq!(ram.read_u32(GuestPhysAddr(USED + 8)), Ok(4));
        let mut idx = [0u8; 2];
        ram.read(GuestPhysAddr(USED + 2), &mut idx).unwrap();
        assert_eq!(u16::from_le_bytes(idx), 1);
        assert_eq!((q.next_avail(), q.next_used()), (1, 1));
        q.add_used(&mut ram, 3, 0).unwrap();
        assert_eq!(q.next_used(), 2);
        assert!(q.notification_wanted(&ram).unwrap());
        ram.write(GuestPhysAddr(AVAIL), &1u16.to_le_bytes())
            .unwrap();
        assert!(!q.notification_wanted(&ram).unwrap());
    }

    #[test]
    fn structural_errors_are_queue_errors() {
        let mut buf = [0u8; 0x4000];
        let mut ram = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
        let mut c = DescChain::<16>::new();
        // Loop 0 -> 1 -> 0.
        let mut q = ready_queue(&ram, 4);
        for (i, n) in [(0u16, 1u16), (1, 0)] {
            put_desc(
                &mut ram,
                i,
                Descriptor {
                    addr: BASE + 0x3000,
                    len: 1,
                    flags: DESC_F_NEXT,
                    next: n,
                },
            );
        }
        publish(&mut ram, 0, 0, 1);
        assert_eq!(
            q.pop_into(&mut ram, &mut c),
            Err(QueueError::Loop { head: 0 })
        );
        // next beyond the size.
        let mut q = ready_queue(&ram, 4);
        put_desc(
            &mut ram,
            1,
            Descriptor {
                addr: BASE + 0x3000,
                len: 1,
                flags: DESC_F_NEXT,
                next: 4,
            },
        );
        assert_eq!(
            q.pop_into(&mut ram, &mut c),
            Err(QueueError::NextIndex { index: 1, next: 4 })
        );
        // Head beyond the size.
        let mut q = ready_queue(&ram, 4);
        publish(&mut ram, 0, 9, 1);
        assert_eq!(
            q.pop_into(&mut ram, &mut c),
            Err(QueueError::HeadIndex { head: 9 })
        );
        // avail.idx too far ahead.
        let mut q = ready_queue(&ram, 4);
        publish(&mut ram, 0, 0, 5);
        assert!(matches!(
            q.pop_into(&mut ram, &mut c),
            Err(QueueError::AvailIndex { avail_idx: 5, .. })
        ));
        // Not ready.
        let mut q = Queue::new(4);
        assert_eq!(q.pop_into(&mut ram, &mut c), Err(QueueError::NotReady));
    }

    #[test]
    fn a_buffer_ending_at_the_top_of_the_address_space_does_not_wrap() {
        // Its last byte is u64::MAX: no wrap, but outside guest RAM. One byte longer wraps.
        let mut buf = [0u8; 0x4000];
        let mut ram = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
        for (len, want) in [
            (16u32, ChainError::OutOfRange { index: 0 }),
            (17, ChainError::Wraps { index: 0 }),
        ] {
            let mut q = ready_queue(&ram, 4);
            put_desc(
                &mut ram,
                0,
                Descriptor {
                    addr: u64::MAX - 15,
                    len,
                    flags: DESC_F_NEXT,
                    next: 1,
                },
            );
            put_desc(
                &mut ram,
                1,
                Descriptor {
                    addr: BASE + 0x3000,
                    len: 1,
                    flags: DESC_F_WRITE,
                    next: 0,
                },
            );
            publish(&mut ram, 0, 0, 1);
            let mut c = DescChain::<4>::new();
            assert!(q.pop_into(&mut ram, &mut c).unwrap());
            assert_eq!(c.error(), Some(want), "len {len}");
        }
    }

    #[test]
    fn content_errors_are_recorded() {
        let mut buf = [0u8; 0x4000];
        let mut ram = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
        let cases: [(Descriptor, ChainError); 5] = [
            (
                Descriptor {
                    addr: BASE + 0x3000,
                    len: 0,
                    flags: DESC_F_NEXT,
                    next: 1,
                },
                ChainError::ZeroLength { index: 0 },
            ),
            (
                Descriptor {
                    addr: BASE + 0x3000,
                    len: 16,
                    flags: DESC_F_NEXT | DESC_F_INDIRECT,
                    next: 1,
                },
                ChainError::Indirect { index: 0 },
            ),
            (
                Descriptor {
                    addr: u64::MAX - 2,
                    len: 16,
                    flags: DESC_F_NEXT,
                    next: 1,
                },
                ChainError::Wraps { index: 0 },
            ),
            (
                Descriptor {
                    addr: BASE + 0x3ff0,
                    len: 17,
                    flags: DESC_F_NEXT,
                    next: 1,
                },
                ChainError::OutOfRange { index: 0 },
            ),
            (
                Descriptor {
                    addr: BASE + 0x3000,
                    len: 16,
                    flags: DESC_F_NEXT | DESC_F_WRITE,
                    next: 1,
                },
                ChainError::Order { index: 1 },
            ),
        ];
        for (first, want) in cases {
            let mut q = ready_queue(&ram, 4);
            put_desc(&mut ram, 0, first);
            let second = if want == (ChainError::Order { index: 1 }) {
                Descriptor {
                    addr: BASE + 0x3100,
                    len: 1,
                    flags: DESC_F_NEXT,
                    next: 2,
                }
            } else {
                Descriptor {
                    addr: BASE + 0x3100,
                    len: 1,
                    flags: DESC_F_WRITE,
                    next: 0,
                }
            };
            put_desc(&mut ram, 1, second);
            put_desc(
                &mut ram,
                2,
                Descriptor {
                    addr: BASE + 0x3200,
                    len: 1,
                    flags: DESC_F_WRITE,
                    next: 0,
                },
            );
            publish(&mut ram, 0, 0, 1);
            let mut c = DescChain::<4>::new();
            assert!(q.pop_into(&mut ram, &mut c).unwrap());
            assert_eq!(c.error(), Some(want));
            assert!(c.status_byte().is_some(), "{want:?}");
            let mut b = [0u8; 1];
            assert_eq!(c.read(&ram, 0, &mut b), Err(ChainIoError::BadChain));
        }
        // Too long for the snapshot, but terminated: the status byte is still known.
        let mut q = ready_queue(&ram, 8);
        for i in 0..4u16 {
            put_desc(
                &mut ram,
                i,
                Descriptor {
                    addr: BASE + 0x3000,
                    len: 1,
                    flags: DESC_F_NEXT,
                    next: i + 1,
                },
            );
        }
        put_desc(
            &mut ram,
            4,
            Descriptor {
                addr: BASE + 0x3300,
                len: 2,
                flags: DESC_F_WRITE,
                next: 0,
            },
        );
        publish(&mut ram, 0, 0, 1);
        let mut c = DescChain::<2>::new();
        assert!(q.pop_into(&mut ram, &mut c).unwrap());
        assert_eq!(c.error(), Some(ChainError::TooLong { max: 2 }));
        assert_eq!(c.len(), 5);
        assert_eq!(c.status_byte(), Some(GuestPhysAddr(BASE + 0x3301)));
    }

    #[test]
    fn need_event_is_the_specs_window() {
        // §2.7.10: notify when event is in [old, new), modulo 2^16.
        assert!(need_event(5, 6, 5));
        assert!(need_event(5, 9, 3));
        assert!(!need_event(5, 5, 3));
        assert!(!need_event(6, 6, 5));
        assert!(!need_event(2, 9, 3));
        assert!(need_event(0xffff, 1, 0xfffe));
        assert!(!need_event(0xfffd, 1, 0xfffe));
        // Nothing moved: never.
        assert!(!need_event(7, 7, 7));
    }

    fn one_desc(ram: &mut GuestRam<'_>) {
        put_desc(
            ram,
            0,
            Descriptor {
                addr: BASE + 0x3000,
                len: 4,
                flags: 0,
                next: 0,
            },
        );
    }

    fn u16_at(ram: &GuestRam<'_>, a: u64) -> u16 {
        let mut b = [0u8; 2];
        ram.read(GuestPhysAddr(a), &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    #[test]
    fn an_empty_ring_asks_for_the_next_chain_in_event_index_mode() {
        let mut buf = [0u8; 0x4000];
        let mut ram = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
        let mut q = ready_queue(&ram, 8);
        let avail_event = USED + 4 + 8 * 8;
        one_desc(&mut ram);
        let mut c = DescChain::<4>::new();
        // Without the feature avail_event is never written.
        publish(&mut ram, 0, 0, 1);
        assert!(q.pop_into(&mut ram, &mut c).unwrap());
        assert!(!q.pop_into(&mut ram, &mut c).unwrap());
        assert_eq!(u16_at(&ram, avail_event), 0);
        // With it, each time the ring is found empty: the device's next position.
        q.set_event_idx(true);
        publish(&mut ram, 1, 0, 2);
        publish(&mut ram, 2, 0, 3);
        assert!(q.pop_into(&mut ram, &mut c).unwrap());
        assert_eq!(u16_at(&ram, avail_event), 0, "not while chains remain");
        assert!(q.pop_into(&mut ram, &mut c).unwrap());
        assert!(!q.pop_into(&mut ram, &mut c).unwrap());
        assert_eq!(u16_at(&ram, avail_event), 3);
        // The driver adding the next chain passes avail_event: it notifies.
        assert!(need_event(u16_at(&ram, avail_event), 4, 3));
    }

    #[test]
    fn used_event_decides_the_interrupt_in_event_index_mode() {
        let mut buf = [0u8; 0x4000];
        let mut ram = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
        let mut q = ready_queue(&ram, 8);
        q.set_event_idx(true);
        let used_event = AVAIL + 4 + 2 * 8;
        let set_used_event = |ram: &mut GuestRam<'_>, v: u16| {
            ram.write(GuestPhysAddr(used_event), &v.to_le_bytes())
                .unwrap()
        };
        // The avail ring's NO_INTERRUPT flag no longer counts.
        ram.write(GuestPhysAddr(AVAIL), &AVAIL_F_NO_INTERRUPT.to_le_bytes())
            .unwrap();
        // used_event 0: the first used element (used.idx 0 -> 1) passes it.
        q.add_used(&mut ram, 0, 0).unwrap();
        assert!(q.notification_wanted(&ram).unwrap());
        // The driver wants an interrupt only once used.idx passes 3.
        set_used_event(&mut ram, 3);
        q.add_used(&mut ram, 0, 0).unwrap();
        assert!(
            !q.notification_wanted(&ram).unwrap(),
            "1 -> 2 does not pass 3"
        );
        q.add_used(&mut ram, 0, 0).unwrap();
        assert!(
            !q.notification_wanted(&ram).unwrap(),
            "2 -> 3 does not pass 3"
        );
        q.add_used(&mut ram, 0, 0).unwrap();
        q.add_used(&mut ram, 0, 0).unwrap();
        assert!(q.notification_wanted(&ram).unwrap(), "3 -> 5 passes 3");
        // Asked again with nothing new: no.
        assert!(!q.notification_wanted(&ram).unwrap());
        // Plain mode again: the flag counts.
        q.set_event_idx(false);
        q.add_used(&mut ram, 0, 0).unwrap();
        assert!(!q.notification_wanted(&ram).unwrap());
    }
}
