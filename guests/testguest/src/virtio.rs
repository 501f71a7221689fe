//! The guest's own minimal virtio driver core (virtio 1.2): the virtio-mmio **version 2**
//! transport (§4.2.2 registers, §3.1.1 initialisation) and one split virtqueue (§2.7), in
//! statically allocated memory.
//!
//! With the MMU and caches off every access is to Device memory, so: the rings and headers are
//! touched only through volatile accesses of their natural width at naturally aligned
//! addresses ([`DmaRegion`]); data buffers byte by byte; and the barriers are explicit —
//! descriptors and the ring entry, then DMB, then `avail.idx`; DSB before the QueueNotify
//! doorbell; `used.idx`, then DMB, then the used element, status bytes and data.
//!
//! Nothing the device writes is trusted: a used index that moved too far or a used id that is no
//! chain in flight is a [`VirtioError`], never a panic. Every wait has a CNTVCT deadline and an
//! iteration bound.

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};

use crate::arch;
use crate::mmio::Mmio;
use crate::vectors;

/// "virt", little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// VIRTIO_F_VERSION_1.
pub const F_VERSION_1: u64 = 1 << 32;
/// The queue size the driver uses (at most QueueNumMax).
pub const QUEUE_SIZE: u16 = 16;
/// Bytes of one queue's area: descriptors at 0, available ring at 0x100, used ring at 0x200.
pub const QUEUE_AREA: usize = 0x400;
const DESC_OFF: usize = 0x000;
const AVAIL_OFF: usize = 0x100;
const USED_OFF: usize = 0x200;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
/// VIRTQ_AVAIL_F_NO_INTERRUPT.
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Polls of Status after a reset.
const RESET_POLLS: u32 = 1000;
/// Bound on the polls of one wait (each wait also has a CNTVCT deadline).
pub const MAX_POLLS: u32 = 500_000_000;
/// The deadline of one wait, in milliseconds of the virtual counter.
pub const WAIT_MS: u64 = 10_000;

/// Register offsets (§4.2.2).
pub mod reg {
    #![allow(missing_docs)]
    pub const MAGIC_VALUE: usize = 0x000;
    pub const VERSION: usize = 0x004;
    pub const DEVICE_ID: usize = 0x008;
    pub const VENDOR_ID: usize = 0x00c;
    pub const DEVICE_FEATURES: usize = 0x010;
    pub const DEVICE_FEATURES_SEL: usize = 0x014;
    pub const DRIVER_FEATURES: usize = 0x020;
    pub const DRIVER_FEATURES_SEL: usize = 0x024;
    pub const QUEUE_SEL: usize = 0x030;
    pub const QUEUE_NUM_MAX: usize = 0x034;
    pub const QUEUE_NUM: usize = 0x038;
    pub const QUEUE_READY: usize = 0x044;
    pub const QUEUE_NOTIFY: usize = 0x050;
    pub const INTERRUPT_STATUS: usize = 0x060;
    pub const INTERRUPT_ACK: usize = 0x064;
    pub const STATUS: usize = 0x070;
    pub const QUEUE_DESC_LOW: usize = 0x080;
    pub const QUEUE_DRIVER_LOW: usize = 0x090;
    pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
    pub const CONFIG_GENERATION: usize = 0x0fc;
    pub const CONFIG: usize = 0x100;
}

/// Device status bits (§2.1).
pub mod status {
    #![allow(missing_docs)]
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    pub const FAILED: u32 = 128;
    /// The four driver steps, all done.
    pub const LIVE: u32 = ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK;
}

/// InterruptStatus bits.
pub mod int {
    /// Used buffer notification.
    pub const USED_BUFFER: u32 = 1;
    /// Configuration change notification.
    pub const CONFIG_CHANGE: u32 = 2;
}

/// What went wrong, as a `FAIL` detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioError {
    /// Reading the transport faulted (under the VMM: nothing emulated there).
    Abort {
        /// Transport base.
        base: usize,
        /// ESR of the abort.
        esr: u64,
    },
    /// No virtio-mmio magic.
    NoDevice {
        /// Transport base.
        base: usize,
        /// What MagicValue read.
        magic: u32,
    },
    /// Not a version-2 transport.
    Version(u32),
    /// Another device (0: an empty transport).
    DeviceId {
        /// DeviceID read.
        got: u32,
        /// DeviceID wanted.
        want: u32,
    },
    /// Status did not read 0 after the reset.
    ResetTimeout(u32),
    /// The device does not offer VIRTIO_F_VERSION_1.
    NoVersion1(u64),
    /// FEATURES_OK did not stick.
    FeaturesRefused(u32),
    /// The queue does not exist or is too small.
    QueueMax {
        /// Queue index.
        queue: u16,
        /// QueueNumMax.
        max: u32,
    },
    /// QueueReady did not read as expected.
    QueueReady {
        /// Queue index.
        queue: u16,
        /// QueueReady read.
        ready: u32,
    },
    /// After DRIVER_OK, Status is not the four driver bits.
    NotLive(u32),
    /// Not enough free descriptors.
    QueueFull {
        /// Needed.
        need: usize,
        /// Free.
        free: usize,
    },
    /// A chain longer than the queue.
    ChainTooLong(usize),
    /// `used.idx` moved by more than the queue size.
    UsedIndex {
        /// The driver's position.
        seen: u16,
        /// The device's index.
        idx: u16,
    },
    /// A used id that is no chain head in flight.
    UsedId(u32),
    /// Nothing came back before the deadline.
    Timeout {
        /// Status register at the end.
        status: u32,
        /// InterruptStatus at the end.
        isr: u32,
    },
    /// The driver was not initialised (an earlier case failed).
    NotInitialised,
}

impl fmt::Display for VirtioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VirtioError::Abort { base, esr } => {
                write!(
                    f,
                    "reading the transport at {base:#x} faulted (ESR {esr:#x})"
                )
            }
            VirtioError::NoDevice { base, magic } => {
                write!(
                    f,
                    "no virtio-mmio transport at {base:#x} (magic {magic:#x})"
                )
            }
            VirtioError::Version(v) => write!(
                f,
                "transport version {v}, want 2 (QEMU: -global virtio-mmio.force-legacy=false)"
            ),
            VirtioError::DeviceId { got, want } => write!(f, "device id {got}, want {want}"),
            VirtioError::ResetTimeout(s) => write!(f, "Status {s:#x} after reset, want 0"),
            VirtioError::NoVersion1(o) => write!(f, "features {o:#x} lack VERSION_1"),
            VirtioError::FeaturesRefused(s) => {
                write!(f, "FEATURES_OK refused: Status {s:#x}")
            }
            VirtioError::QueueMax { queue, max } => {
                write!(f, "queue {queue}: QueueNumMax {max}")
            }
            VirtioError::QueueReady { queue, ready } => {
                write!(f, "queue {queue}: QueueReady reads {ready}")
            }
            VirtioError::NotLive(s) => write!(f, "Status {s:#x} after DRIVER_OK, want 0xf"),
            VirtioError::QueueFull { need, free } => {
                write!(f, "queue full: {need} descriptors needed, {free} free")
            }
            VirtioError::ChainTooLong(n) => write!(f, "chain of {n} descriptors"),
            VirtioError::UsedIndex { seen, idx } => {
                write!(f, "used.idx jumped from {seen} to {idx}")
            }
            VirtioError::UsedId(id) => write!(f, "used id {id} is no chain in flight"),
            VirtioError::Timeout { status, isr } => write!(
                f,
                "no used buffer within {WAIT_MS} ms (Status {status:#x}, InterruptStatus {isr:#x})"
            ),
            VirtioError::NotInitialised => f.write_str("device not initialised (see blk-probe)"),
        }
    }
}

/// Statically allocated memory a device reads and writes: `N` bytes, page-aligned, in `.bss`.
/// Rust never forms references to its contents; everything goes through [`DmaRegion`].
#[repr(C, align(4096))]
pub struct Dma<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: the contents are only accessed through raw pointers with volatile accesses, from one
// CPU, never from an exception handler.
unsafe impl<const N: usize> Sync for Dma<N> {}

impl<const N: usize> Dma<N> {
    /// Zeroed memory.
    pub const fn new() -> Self {
        Dma(UnsafeCell::new([0; N]))
    }
    /// The whole region.
    pub fn region(&'static self) -> DmaRegion {
        DmaRegion {
            base: self.0.get() as usize,
            len: N,
        }
    }
}

/// A window of [`Dma`] memory with bounds-checked volatile accessors. With the MMU off the
/// address is the guest-physical address the device is given.
#[derive(Clone, Copy)]
pub struct DmaRegion {
    base: usize,
    len: usize,
}

impl DmaRegion {
    /// Its address.
    pub fn addr(self) -> u64 {
        self.base as u64
    }
    /// Its length.
    pub fn len(self) -> usize {
        self.len
    }
    /// `len` bytes at `off` (panics — a `FAIL` line — if out of bounds: a bug in the guest).
    pub fn sub(self, off: usize, len: usize) -> DmaRegion {
        assert!(
            off.checked_add(len).is_some_and(|e| e <= self.len),
            "DMA window {off:#x}+{len:#x} outside {:#x} bytes",
            self.len
        );
        DmaRegion {
            base: self.base + off,
            len,
        }
    }
    fn ptr<T>(self, off: usize) -> *mut T {
        let w = core::mem::size_of::<T>();
        assert!(
            off.is_multiple_of(w) && off.checked_add(w).is_some_and(|e| e <= self.len),
            "bad DMA access {off:#x}/{w}"
        );
        (self.base + off) as *mut T
    }
    /// Volatile byte load.
    pub fn r8(self, off: usize) -> u8 {
        // SAFETY: in bounds of a `Dma` static (checked by `ptr`), naturally aligned; no Rust
        // reference to it exists.
        unsafe { self.ptr::<u8>(off).read_volatile() }
    }
    /// Volatile byte store.
    pub fn w8(self, off: usize, v: u8) {
        // SAFETY: as for `r8`.
        unsafe { self.ptr::<u8>(off).write_volatile(v) }
    }
    /// Volatile half-word load.
    pub fn r16(self, off: usize) -> u16 {
        // SAFETY: as for `r8`.
        unsafe { self.ptr::<u16>(off).read_volatile() }
    }
    /// Volatile half-word store.
    pub fn w16(self, off: usize, v: u16) {
        // SAFETY: as for `r8`.
        unsafe { self.ptr::<u16>(off).write_volatile(v) }
    }
    /// Volatile word load.
    pub fn r32(self, off: usize) -> u32 {
        // SAFETY: as for `r8`.
        unsafe { self.ptr::<u32>(off).read_volatile() }
    }
    /// Volatile word store.
    pub fn w32(self, off: usize, v: u32) {
        // SAFETY: as for `r8`.
        unsafe { self.ptr::<u32>(off).write_volatile(v) }
    }
    /// Volatile double-word store.
    pub fn w64(self, off: usize, v: u64) {
        // SAFETY: as for `r8`.
        unsafe { self.ptr::<u64>(off).write_volatile(v) }
    }
    /// Fills `len` bytes at `off` with `f(i)`, `i` counting from 0.
    pub fn fill_with(self, off: usize, len: usize, mut f: impl FnMut(usize) -> u8) {
        let r = self.sub(off, len);
        for i in 0..len {
            r.w8(i, f(i));
        }
    }
    /// Fills `len` bytes at `off` with `v`.
    pub fn fill(self, off: usize, len: usize, v: u8) {
        self.fill_with(off, len, |_| v);
    }
    /// The first byte in `off..off + len` that is not `v`, as (index, value).
    pub fn find_not(self, off: usize, len: usize, v: u8) -> Option<(usize, u8)> {
        let r = self.sub(off, len);
        (0..len).map(|i| (i, r.r8(i))).find(|&(_, b)| b != v)
    }
}

/// State that lives for the whole run, used by one case after the other (e.g. the initialised
/// block driver). Single CPU; never touched from an exception handler; [`Global::with`] must not
/// nest (it panics if it does).
pub struct Global<T> {
    value: UnsafeCell<T>,
    busy: AtomicBool,
}

// SAFETY: one CPU, and `with` refuses nested access, so there is never more than one `&mut T`.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    /// A global holding `v`.
    pub const fn new(v: T) -> Self {
        Global {
            value: UnsafeCell::new(v),
            busy: AtomicBool::new(false),
        }
    }
    /// Runs `f` with the value.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        assert!(!self.busy.load(Relaxed), "nested Global::with");
        self.busy.store(true, Relaxed);
        // SAFETY: the busy flag makes this the only reference (see the type's comment).
        let r = f(unsafe { &mut *self.value.get() });
        self.busy.store(false, Relaxed);
        r
    }
}

/// Where a descriptor's `next` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The next descriptor of the chain (NEXT set).
    Next,
    /// The chain ends here (NEXT clear).
    End,
    /// Descriptor `k` of this chain (NEXT set): a loop.
    To(usize),
    /// This raw index (NEXT set), whatever it is.
    Raw(u16),
}

/// One descriptor of a chain to post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    /// Guest-physical address.
    pub addr: u64,
    /// Length.
    pub len: u32,
    /// Device-writable.
    pub write: bool,
    /// Where `next` goes.
    pub link: Link,
}

impl Seg {
    /// A device-readable buffer, chained on.
    pub const fn out(addr: u64, len: u32) -> Seg {
        Seg {
            addr,
            len,
            write: false,
            link: Link::Next,
        }
    }
    /// A device-writable buffer, chained on.
    pub const fn input(addr: u64, len: u32) -> Seg {
        Seg {
            addr,
            len,
            write: true,
            link: Link::Next,
        }
    }
}

/// One returned chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// The chain's head.
    pub id: u16,
    /// Bytes the device says it wrote.
    pub len: u32,
}

const MAX_CHAIN: usize = QUEUE_SIZE as usize;

/// One split virtqueue of at most [`QUEUE_SIZE`] descriptors in a [`QUEUE_AREA`]-byte region.
pub struct VirtQueue {
    mem: DmaRegion,
    /// Index of the queue on its device.
    pub index: u16,
    size: u16,
    free: [u16; MAX_CHAIN],
    nfree: usize,
    /// Descriptors of each chain in flight, by head.
    chains: [[u16; MAX_CHAIN]; MAX_CHAIN],
    chain_len: [u8; MAX_CHAIN],
    avail_idx: u16,
    last_used: u16,
}

impl VirtQueue {
    /// A queue of `size` (a power of two, at most [`QUEUE_SIZE`]) in `mem`, zeroed; used-buffer
    /// interrupts suppressed (VIRTQ_AVAIL_F_NO_INTERRUPT) until [`VirtQueue::interrupts`].
    pub fn new(mem: DmaRegion, index: u16, size: u16) -> VirtQueue {
        assert!(
            size.is_power_of_two() && size <= QUEUE_SIZE && mem.len() >= QUEUE_AREA,
            "bad queue"
        );
        let mem = mem.sub(0, QUEUE_AREA);
        mem.fill(0, QUEUE_AREA, 0);
        let mut q = VirtQueue {
            mem,
            index,
            size,
            free: [0; MAX_CHAIN],
            nfree: 0,
            chains: [[0; MAX_CHAIN]; MAX_CHAIN],
            chain_len: [0; MAX_CHAIN],
            avail_idx: 0,
            last_used: 0,
        };
        for i in (0..size).rev() {
            q.free[q.nfree] = i;
            q.nfree += 1;
        }
        q.interrupts(false);
        q
    }
    /// The queue size.
    pub fn size(&self) -> u16 {
        self.size
    }
    /// Guest-physical addresses of (descriptor table, available ring, used ring).
    pub fn areas(&self) -> (u64, u64, u64) {
        let a = self.mem.addr();
        (
            a + DESC_OFF as u64,
            a + AVAIL_OFF as u64,
            a + USED_OFF as u64,
        )
    }
    /// Asks for used-buffer interrupts (or not).
    pub fn interrupts(&self, on: bool) {
        self.mem
            .w16(AVAIL_OFF, if on { 0 } else { AVAIL_F_NO_INTERRUPT });
        arch::dmb();
    }
    /// `used.idx` as the device last wrote it.
    pub fn used_idx(&self) -> u16 {
        self.mem.r16(USED_OFF + 2)
    }

    /// The head the next [`VirtQueue::post`] of a chain will get (the first free descriptor).
    pub fn next_head(&self) -> Option<u16> {
        self.nfree.checked_sub(1).map(|i| self.free[i])
    }

    /// Writes `segs` into free descriptors, links them as their [`Link`]s say, and makes the
    /// chain available (no notification). Returns the head.
    pub fn post(&mut self, segs: &[Seg]) -> Result<u16, VirtioError> {
        let n = segs.len();
        if n == 0 || n > MAX_CHAIN {
            return Err(VirtioError::ChainTooLong(n));
        }
        if n > self.nfree {
            return Err(VirtioError::QueueFull {
                need: n,
                free: self.nfree,
            });
        }
        let mut idx = [0u16; MAX_CHAIN];
        for slot in idx.iter_mut().take(n) {
            self.nfree -= 1;
            *slot = self.free[self.nfree];
        }
        let head = idx[0];
        for (i, s) in segs.iter().enumerate() {
            let (flags, next) = match s.link {
                Link::Next if i + 1 < n => (DESC_F_NEXT, idx[i + 1]),
                Link::Next | Link::End => (0, 0),
                Link::To(k) => (DESC_F_NEXT, idx[k.min(n - 1)]),
                Link::Raw(r) => (DESC_F_NEXT, r),
            };
            let flags = flags | if s.write { DESC_F_WRITE } else { 0 };
            let d = DESC_OFF + 16 * usize::from(idx[i]);
            self.mem.w64(d, s.addr);
            self.mem.w32(d + 8, s.len);
            self.mem.w16(d + 12, flags);
            self.mem.w16(d + 14, next);
        }
        self.chains[usize::from(head)] = idx;
        self.chain_len[usize::from(head)] = n as u8;
        let slot = usize::from(self.avail_idx % self.size);
        self.mem.w16(AVAIL_OFF + 4 + 2 * slot, head);
        // Descriptors and ring entry before the index that publishes them.
        arch::dmb();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem.w16(AVAIL_OFF + 2, self.avail_idx);
        Ok(head)
    }

    /// The next returned chain, if any; its descriptors become free.
    pub fn pop_used(&mut self) -> Result<Option<Used>, VirtioError> {
        let idx = self.used_idx();
        if idx == self.last_used {
            return Ok(None);
        }
        if idx.wrapping_sub(self.last_used) > self.size {
            return Err(VirtioError::UsedIndex {
                seen: self.last_used,
                idx,
            });
        }
        // used.idx before the element (and the buffers) it publishes.
        arch::dmb();
        let e = USED_OFF + 4 + 8 * usize::from(self.last_used % self.size);
        let (id, len) = (self.mem.r32(e), self.mem.r32(e + 4));
        self.last_used = self.last_used.wrapping_add(1);
        let head = usize::try_from(id)
            .ok()
            .filter(|&h| h < usize::from(self.size) && self.chain_len[h] != 0)
            .ok_or(VirtioError::UsedId(id))?;
        let n = usize::from(self.chain_len[head]);
        self.chain_len[head] = 0;
        for &d in self.chains[head].iter().take(n) {
            self.free[self.nfree] = d;
            self.nfree += 1;
        }
        Ok(Some(Used {
            id: head as u16,
            len,
        }))
    }

    /// Polls for the next returned chain until the deadline.
    pub fn wait_used(&mut self, t: &Transport) -> Result<Used, VirtioError> {
        let deadline = arch::deadline_ms(WAIT_MS);
        let mut polls = 0u32;
        loop {
            if let Some(u) = self.pop_used()? {
                return Ok(u);
            }
            polls += 1;
            if polls >= MAX_POLLS || arch::now() > deadline {
                return Err(VirtioError::Timeout {
                    status: t.read(reg::STATUS),
                    isr: t.read(reg::INTERRUPT_STATUS),
                });
            }
        }
    }
}

/// What [`Transport::probe`] found besides the device id it checked.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// VendorID.
    pub vendor: u32,
}

/// One virtio-mmio transport (0x200-byte window).
#[derive(Clone, Copy)]
pub struct Transport {
    base: usize,
    regs: Mmio,
}

impl Transport {
    /// The transport at `base`.
    ///
    /// # Safety
    /// `base..base + 0x200` must be device memory outside the image (a virtio-mmio window).
    pub const unsafe fn at(base: usize) -> Transport {
        // SAFETY: the caller's promise.
        Transport {
            base,
            regs: unsafe { Mmio::new(base, 0x200) },
        }
    }
    /// A 32-bit register load.
    pub fn read(&self, off: usize) -> u32 {
        self.regs.ldr_w(off) as u32
    }
    /// A 32-bit register store.
    pub fn write(&self, off: usize, v: u32) {
        self.regs.str_w(off, u64::from(v));
    }
    /// Status.
    pub fn status(&self) -> u32 {
        self.read(reg::STATUS)
    }

    /// Checks the magic (an abort reading it means nothing is there), version 2 and the device
    /// id.
    pub fn probe(&self, device_id: u32) -> Result<Probe, VirtioError> {
        let mut magic = 0;
        if let Some(t) = vectors::catch(|| magic = self.read(reg::MAGIC_VALUE)) {
            return Err(VirtioError::Abort {
                base: self.base,
                esr: t.esr,
            });
        }
        if magic != MAGIC {
            return Err(VirtioError::NoDevice {
                base: self.base,
                magic,
            });
        }
        let version = self.read(reg::VERSION);
        if version != 2 {
            return Err(VirtioError::Version(version));
        }
        let got = self.read(reg::DEVICE_ID);
        if got != device_id {
            return Err(VirtioError::DeviceId {
                got,
                want: device_id,
            });
        }
        Ok(Probe {
            vendor: self.read(reg::VENDOR_ID),
        })
    }

    /// Writes 0 to Status and waits for it to read 0.
    pub fn reset(&self) -> Result<(), VirtioError> {
        self.write(reg::STATUS, 0);
        for _ in 0..RESET_POLLS {
            if self.status() == 0 {
                return Ok(());
            }
        }
        Err(VirtioError::ResetTimeout(self.status()))
    }

    /// The 64 feature bits the device offers.
    pub fn device_features(&self) -> u64 {
        self.write(reg::DEVICE_FEATURES_SEL, 0);
        let lo = self.read(reg::DEVICE_FEATURES);
        self.write(reg::DEVICE_FEATURES_SEL, 1);
        let hi = self.read(reg::DEVICE_FEATURES);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    /// Writes the driver's feature bits (both halves).
    pub fn set_driver_features(&self, f: u64) {
        self.write(reg::DRIVER_FEATURES_SEL, 0);
        self.write(reg::DRIVER_FEATURES, f as u32);
        self.write(reg::DRIVER_FEATURES_SEL, 1);
        self.write(reg::DRIVER_FEATURES, (f >> 32) as u32);
    }

    /// Reset, ACKNOWLEDGE, DRIVER, feature negotiation (`want` ∩ offered; VERSION_1 required),
    /// FEATURES_OK and its re-check. Returns (offered, negotiated).
    pub fn negotiate(&self, want: u64) -> Result<(u64, u64), VirtioError> {
        self.reset()?;
        self.write(reg::STATUS, status::ACKNOWLEDGE);
        self.write(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        let offered = self.device_features();
        if offered & F_VERSION_1 == 0 {
            self.write(reg::STATUS, self.status() | status::FAILED);
            return Err(VirtioError::NoVersion1(offered));
        }
        let features = offered & (want | F_VERSION_1);
        self.set_driver_features(features);
        self.write(
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        let s = self.status();
        if s & status::FEATURES_OK == 0 {
            self.write(reg::STATUS, s | status::FAILED);
            return Err(VirtioError::FeaturesRefused(s));
        }
        Ok((offered, features))
    }

    /// QueueNumMax of queue `q` (selects it).
    pub fn queue_max(&self, q: u16) -> u32 {
        self.write(reg::QUEUE_SEL, u32::from(q));
        self.read(reg::QUEUE_NUM_MAX)
    }

    /// The queue size to use for queue `q`: [`QUEUE_SIZE`] or the largest power of two below
    /// QueueNumMax.
    pub fn queue_size(&self, q: u16) -> Result<u16, VirtioError> {
        let max = self.queue_max(q);
        if max == 0 {
            return Err(VirtioError::QueueMax { queue: q, max });
        }
        let m = max.min(u32::from(QUEUE_SIZE));
        Ok(1 << (31 - m.leading_zeros()))
    }

    /// Programs `vq` (size and the three areas) and sets QueueReady.
    pub fn setup_queue(&self, vq: &VirtQueue) -> Result<(), VirtioError> {
        let q = vq.index;
        self.write(reg::QUEUE_SEL, u32::from(q));
        let ready = self.read(reg::QUEUE_READY);
        if ready != 0 {
            return Err(VirtioError::QueueReady { queue: q, ready });
        }
        self.write(reg::QUEUE_NUM, u32::from(vq.size()));
        let (desc, avail, used) = vq.areas();
        for (lo, a) in [
            (reg::QUEUE_DESC_LOW, desc),
            (reg::QUEUE_DRIVER_LOW, avail),
            (reg::QUEUE_DEVICE_LOW, used),
        ] {
            self.write(lo, a as u32);
            self.write(lo + 4, (a >> 32) as u32);
        }
        // The zeroed rings before the device may look at them.
        arch::dsb();
        self.write(reg::QUEUE_READY, 1);
        let ready = self.read(reg::QUEUE_READY);
        if ready != 1 {
            return Err(VirtioError::QueueReady { queue: q, ready });
        }
        Ok(())
    }

    /// DRIVER_OK; Status must then read exactly the four driver bits.
    pub fn driver_ok(&self) -> Result<(), VirtioError> {
        self.write(reg::STATUS, status::LIVE);
        let s = self.status();
        if s != status::LIVE {
            return Err(VirtioError::NotLive(s));
        }
        Ok(())
    }

    /// Notifies queue `q` (after a DSB: the ring updates are visible first).
    pub fn notify(&self, q: u16) {
        arch::dsb();
        self.write(reg::QUEUE_NOTIFY, u32::from(q));
    }

    /// A 32-bit configuration field at `off` in the device-specific space.
    pub fn config_u32(&self, off: usize) -> u32 {
        self.read(reg::CONFIG + off)
    }

    /// A 64-bit configuration field, read as two words under an unchanged ConfigGeneration (a
    /// few tries; then the last read).
    pub fn config_u64(&self, off: usize) -> u64 {
        let mut v = 0;
        for _ in 0..4 {
            let g = self.read(reg::CONFIG_GENERATION);
            let lo = self.config_u32(off);
            let hi = self.config_u32(off + 4);
            v = u64::from(lo) | (u64::from(hi) << 32);
            if self.read(reg::CONFIG_GENERATION) == g {
                break;
            }
        }
        v
    }
}
