//! The driver side of a virtio-blk device on the virtio-mmio transport, version 2 (virtio 1.2
//! §4.2.2 register layout, §3.1.1 initialisation, §2.7 split virtqueues, §5.2 block device).
//!
//! One split virtqueue lives in the PD's DMA region at fixed offsets ([`layout`]); the device is
//! given physical addresses only: DMA paddr + offset, or data paddr + a bounds-checked offset.
//! Descriptors are used in fixed triplets: request slot `i` owns descriptors `3i` (header),
//! `3i + 1` (data) and `3i + 2` (status), so a chain's head identifies its slot and nothing about
//! a chain has to be allocated at run time. Everything the device writes (used ring, status
//! bytes) is checked before use.
//!
//! The device's DMA reaches all physical memory on QEMU virt (no SMMU: README, threat model), so
//! every address the driver gives it is checked first: each descriptor's `addr..addr + len` and
//! each queue address must lie inside the driver's DMA region or the data region it shares
//! with its client ([`DmaWindows`]); anything else is refused ([`DeviceError::OutsideDma`],
//! [`InitError::OutsideDma`]) before a descriptor is written.

use microkit_rt::{RegionError, SharedRegion};

/// MMIO register access to the register window the PD maps: one or more consecutive virtio-mmio
/// transports of [`SLOT_SIZE`] bytes (system.xml maps the page of transports 24..31).
pub trait Regs {
    /// 32-bit load at byte `offset` of the window (0 where nothing answers).
    fn read32(&self, offset: usize) -> u32;
    /// 32-bit store at byte `offset` of the window.
    fn write32(&mut self, offset: usize, value: u32);
}

impl Regs for SharedRegion {
    fn read32(&self, offset: usize) -> u32 {
        self.read_u32(offset).unwrap_or(0)
    }
    fn write32(&mut self, offset: usize, value: u32) {
        let _ = self.write_u32(offset, value);
    }
}

/// No register region mapped: reads give 0, so no device is found.
impl<R: Regs> Regs for Option<R> {
    fn read32(&self, offset: usize) -> u32 {
        self.as_ref().map_or(0, |r| r.read32(offset))
    }
    fn write32(&mut self, offset: usize, value: u32) {
        if let Some(r) = self {
            r.write32(offset, value);
        }
    }
}

/// Number of virtio-mmio transports on QEMU virt (0x0a000000 + 0x200 * i).
pub const SLOTS: usize = 32;
/// Physical address of QEMU virt's first virtio-mmio transport.
pub const MMIO_BASE: u64 = 0x0a00_0000;
/// Bytes per transport.
pub const SLOT_SIZE: usize = 0x200;
/// "virt" in little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// DeviceID of a block device.
pub const DEVICE_ID_BLK: u32 = 2;

/// Register offsets within a transport (virtio 1.2 §4.2.2).
pub mod reg {
    #![allow(missing_docs)]
    pub const MAGIC_VALUE: usize = 0x000;
    pub const VERSION: usize = 0x004;
    pub const DEVICE_ID: usize = 0x008;
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
    pub const QUEUE_DESC_HIGH: usize = 0x084;
    pub const QUEUE_DRIVER_LOW: usize = 0x090;
    pub const QUEUE_DRIVER_HIGH: usize = 0x094;
    pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: usize = 0x0a4;
    pub const CONFIG_GENERATION: usize = 0x0fc;
    /// virtio_blk_config.capacity (u64, 512-byte sectors).
    pub const CONFIG_CAPACITY: usize = 0x100;
    /// virtio_blk_config.blk_size (u32).
    pub const CONFIG_BLK_SIZE: usize = 0x114;
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
}

/// Feature bits the driver knows.
pub mod feature {
    #![allow(missing_docs)]
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const VERSION_1: u64 = 1 << 32;
    /// Everything the driver accepts when offered (VERSION_1 is required).
    pub const ACCEPTED: u64 = VERSION_1 | RO | BLK_SIZE | FLUSH;
}

/// InterruptStatus bits.
pub mod int {
    #![allow(missing_docs)]
    pub const USED_BUFFER: u32 = 1;
    pub const CONFIG_CHANGE: u32 = 2;
}

/// virtio-blk request types and status bytes (§5.2.6).
pub mod blk {
    #![allow(missing_docs)]
    pub const T_IN: u32 = 0;
    pub const T_OUT: u32 = 1;
    pub const T_FLUSH: u32 = 4;
    pub const S_OK: u8 = 0;
    pub const S_IOERR: u8 = 1;
    pub const S_UNSUPP: u8 = 2;
    /// What the driver puts in the status byte before submitting: a device that completes a
    /// chain without writing it is caught.
    pub const S_UNWRITTEN: u8 = 0xff;
    pub const SECTOR_SIZE: u64 = 512;
}

/// Descriptor flags.
mod desc_flags {
    pub const NEXT: u16 = 1;
    pub const WRITE: u16 = 2;
}

/// Largest queue size the driver uses (a power of two).
pub const QUEUE_SIZE_MAX: u16 = 128;
/// Request slots (3 descriptors each) at [`QUEUE_SIZE_MAX`].
pub const MAX_REQ_SLOTS: usize = QUEUE_SIZE_MAX as usize / 3;
/// Bounded polls of Status after a reset.
pub const RESET_POLLS: usize = 1000;

/// Offsets of the virtqueue's parts in the DMA region, laid out for [`QUEUE_SIZE_MAX`]
/// (a smaller queue uses a prefix of each part).
pub mod layout {
    /// Descriptor table: 16 bytes × queue size (alignment 16).
    pub const DESC: usize = 0x0000;
    /// Available ring: flags, idx, ring\[size\], used_event (alignment 2).
    pub const AVAIL: usize = 0x0800;
    /// Used ring: flags, idx, ring\[size\] of (id, len), avail_event (alignment 4).
    pub const USED: usize = 0x1000;
    /// Request headers: 16 bytes per slot.
    pub const HEADERS: usize = 0x2000;
    /// Status bytes: 1 per slot.
    pub const STATUS: usize = 0x3000;
    /// The DMA region must hold at least this much.
    pub const SIZE: usize = 0x4000;
}

/// Why the device could not be brought up. The driver then answers every request with
/// `ERR_NO_DEVICE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// No transport holds a version-2 virtio-blk device.
    NoDevice {
        /// A legacy (version 1) block transport was seen at this slot (QEMU without
        /// `-global virtio-mmio.force-legacy=false`).
        legacy_slot: Option<usize>,
    },
    /// Status did not read back 0 after the reset.
    ResetTimeout,
    /// The device does not offer VIRTIO_F_VERSION_1.
    NoVersion1,
    /// FEATURES_OK did not stick.
    FeaturesRefused,
    /// Queue 0 is already live, or QueueNumMax is too small for one request.
    QueueUnavailable {
        /// QueueNumMax.
        max: u32,
    },
    /// The DMA region is smaller than [`layout::SIZE`].
    DmaTooSmall(usize),
    /// A physical address computation overflowed.
    AddressOverflow,
    /// A queue address would reach outside the DMA region.
    OutsideDma {
        /// Physical address.
        addr: u64,
        /// Bytes.
        len: u64,
    },
    /// The device set DEVICE_NEEDS_RESET or FAILED during set-up.
    DeviceFailed(u32),
}

/// What the device did wrong after set-up (logged, counted; never a panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    /// The used index moved further than the queue size.
    UsedIndex {
        /// The driver's last seen used index.
        last: u16,
        /// The device's.
        observed: u16,
    },
    /// A used element names a descriptor that is no chain head in flight.
    BadUsedId(u32),
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset(u32),
    /// The DMA region refused an access (cannot happen after the size check at set-up).
    Dma(RegionError),
    /// A descriptor would point outside the DMA region and the data region: refused, nothing
    /// of the chain was written.
    OutsideDma {
        /// Physical address.
        addr: u64,
        /// Bytes.
        len: u64,
    },
}

/// A range of physical memory the device may be pointed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysWindow {
    /// First byte.
    pub paddr: u64,
    /// Bytes.
    pub size: u64,
}

impl PhysWindow {
    /// Whether `addr..addr + len` lies inside the window (an overflowing range does not).
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let (Some(end), Some(wend)) = (addr.checked_add(len), self.paddr.checked_add(self.size))
        else {
            return false;
        };
        addr >= self.paddr && end <= wend
    }
}

/// Data windows a driver can know (its clients' data regions).
pub const MAX_DATA_WINDOWS: usize = 8;

/// The driver's data space: its clients' data regions (physical windows) laid end to end, in
/// system.xml's order (`sdf::blk`). A request's `io_or_offset` is an offset into it; a
/// transfer must lie wholly inside one window. With one window it is that region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSpace {
    windows: [PhysWindow; MAX_DATA_WINDOWS],
    len: usize,
}

impl DataSpace {
    /// No window: every transfer is refused.
    pub const fn empty() -> Self {
        DataSpace {
            windows: [PhysWindow { paddr: 0, size: 0 }; MAX_DATA_WINDOWS],
            len: 0,
        }
    }

    /// Appends a window after the others; `false` (nothing added) when
    /// [`MAX_DATA_WINDOWS`] are there already.
    pub fn push(&mut self, w: PhysWindow) -> bool {
        match self.windows.get_mut(self.len) {
            Some(slot) => {
                *slot = w;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The windows, in order.
    pub fn windows(&self) -> &[PhysWindow] {
        &self.windows[..self.len]
    }

    /// Bytes of the whole space (saturating).
    pub fn size(&self) -> u64 {
        self.windows()
            .iter()
            .fold(0u64, |a, w| a.saturating_add(w.size))
    }

    /// The physical address of `offset..offset + len` of the space, if that range lies wholly
    /// inside one window (`len` 0 counts as one byte's position).
    pub fn translate(&self, offset: u64, len: u64) -> Option<u64> {
        let mut base = 0u64;
        for w in self.windows() {
            if offset >= base && offset - base < w.size {
                let within = offset - base;
                let end = within.checked_add(len)?;
                return (end <= w.size)
                    .then(|| w.paddr.checked_add(within))
                    .flatten();
            }
            base = base.checked_add(w.size)?;
        }
        None
    }

    /// Whether physical `addr..addr + len` lies inside one of the windows.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        self.windows().iter().any(|w| w.contains(addr, len))
    }
}

impl From<PhysWindow> for DataSpace {
    fn from(w: PhysWindow) -> Self {
        let mut s = DataSpace::empty();
        s.push(w);
        s
    }
}

/// Where the device may be pointed: the driver's DMA region (virtqueue, request headers, status
/// bytes) and the data regions shared with the clients (buffers). Nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaWindows {
    /// The DMA region.
    pub dma: PhysWindow,
    /// The data regions.
    pub data: DataSpace,
}

impl DmaWindows {
    /// Whether `addr..addr + len` lies inside one of the windows.
    pub fn allow(&self, addr: u64, len: u64) -> bool {
        self.dma.contains(addr, len) || self.data.contains(addr, len)
    }
}

/// One request as the device sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read `len` bytes from `sector` into device-physical `paddr`.
    Read {
        /// First 512-byte sector.
        sector: u64,
        /// Buffer.
        paddr: u64,
        /// Bytes.
        len: u32,
    },
    /// Write `len` bytes from `paddr` to `sector`.
    Write {
        /// First 512-byte sector.
        sector: u64,
        /// Buffer.
        paddr: u64,
        /// Bytes.
        len: u32,
    },
    /// Flush the write cache.
    Flush,
}

/// The device's description, from its configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Transport slot within the register window (0 = the window's first transport).
    pub slot: usize,
    /// Negotiated features.
    pub features: u64,
    /// Capacity in 512-byte sectors.
    pub capacity_sectors: u64,
    /// blk_size, if VIRTIO_BLK_F_BLK_SIZE was negotiated.
    pub blk_size: Option<u32>,
    /// Queue size in use.
    pub queue_size: u16,
    /// Request slots (queue size / 3).
    pub req_slots: usize,
}

/// A used element, mapped back to its request slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Request slot.
    pub slot: usize,
    /// The status byte the device wrote (or [`blk::S_UNWRITTEN`]).
    pub status: u8,
}

/// A live virtio-blk device with one split virtqueue.
pub struct VirtioBlk<R: Regs> {
    regs: R,
    base: usize,
    dma: SharedRegion,
    dma_paddr: u64,
    /// Where descriptors may point.
    windows: DmaWindows,
    info: DeviceInfo,
    /// Next free index of the available ring (free-running).
    avail_idx: u16,
    /// Used index processed so far (free-running).
    last_used: u16,
    /// Chains handed to the device and not yet returned, by slot.
    busy: [bool; MAX_REQ_SLOTS],
    /// Whether avail entries were added since the last notify.
    unpublished: bool,
}

fn paddr(base: u64, offset: usize) -> Result<u64, InitError> {
    base.checked_add(offset as u64)
        .ok_or(InitError::AddressOverflow)
}

impl<R: Regs> VirtioBlk<R> {
    fn r(&self, off: usize) -> u32 {
        self.regs.read32(self.base + off)
    }
    fn w(&mut self, off: usize, v: u32) {
        self.regs.write32(self.base + off, v);
    }

    /// Finds the first version-2 virtio-blk transport among the `transports` of the window.
    pub fn probe(regs: &R, transports: usize) -> Result<usize, InitError> {
        let mut legacy_slot = None;
        for slot in 0..transports.min(SLOTS) {
            let b = slot * SLOT_SIZE;
            if regs.read32(b + reg::MAGIC_VALUE) != MAGIC
                || regs.read32(b + reg::DEVICE_ID) != DEVICE_ID_BLK
            {
                continue;
            }
            match regs.read32(b + reg::VERSION) {
                2 => return Ok(slot),
                1 => legacy_slot = legacy_slot.or(Some(slot)),
                _ => {}
            }
        }
        Err(InitError::NoDevice { legacy_slot })
    }

    /// Probes the window's `transports`, resets and initialises the device (§3.1.1), sets up
    /// queue 0 in `dma` (device address `dma_paddr`), sets DRIVER_OK and reads the
    /// configuration. Descriptors will point only into `dma` or `data` (the clients' data regions). On
    /// failure after the probe, FAILED is set in Status and the registers are given back.
    pub fn init(
        regs: R,
        transports: usize,
        dma: SharedRegion,
        dma_paddr: u64,
        data: impl Into<DataSpace>,
    ) -> Result<Self, (R, InitError)> {
        let data = data.into();
        let slot = match Self::probe(&regs, transports) {
            Ok(s) => s,
            Err(e) => return Err((regs, e)),
        };
        let mut d = VirtioBlk {
            regs,
            base: slot * SLOT_SIZE,
            windows: DmaWindows {
                dma: PhysWindow {
                    paddr: dma_paddr,
                    size: dma.size() as u64,
                },
                data,
            },
            dma,
            dma_paddr,
            info: DeviceInfo {
                slot,
                features: 0,
                capacity_sectors: 0,
                blk_size: None,
                queue_size: 0,
                req_slots: 0,
            },
            avail_idx: 0,
            last_used: 0,
            busy: [false; MAX_REQ_SLOTS],
            unpublished: false,
        };
        match d.bring_up() {
            Ok(()) => Ok(d),
            Err(e) => {
                let s = d.r(reg::STATUS);
                d.w(reg::STATUS, s | status::FAILED);
                Err((d.regs, e))
            }
        }
    }

    fn bring_up(&mut self) -> Result<(), InitError> {
        if self.dma.size() < layout::SIZE {
            return Err(InitError::DmaTooSmall(self.dma.size()));
        }
        // Reset, and wait (bounded) for it to complete.
        self.w(reg::STATUS, 0);
        if !(0..RESET_POLLS).any(|_| self.r(reg::STATUS) == 0) {
            return Err(InitError::ResetTimeout);
        }
        self.w(reg::STATUS, status::ACKNOWLEDGE);
        self.w(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        self.w(reg::DEVICE_FEATURES_SEL, 0);
        let lo = self.r(reg::DEVICE_FEATURES);
        self.w(reg::DEVICE_FEATURES_SEL, 1);
        let hi = self.r(reg::DEVICE_FEATURES);
        let offered = u64::from(lo) | u64::from(hi) << 32;
        if offered & feature::VERSION_1 == 0 {
            return Err(InitError::NoVersion1);
        }
        let features = offered & feature::ACCEPTED;
        self.w(reg::DRIVER_FEATURES_SEL, 0);
        self.w(reg::DRIVER_FEATURES, features as u32);
        self.w(reg::DRIVER_FEATURES_SEL, 1);
        self.w(reg::DRIVER_FEATURES, (features >> 32) as u32);
        let st = status::ACKNOWLEDGE | status::DRIVER;
        self.w(reg::STATUS, st | status::FEATURES_OK);
        if self.r(reg::STATUS) & status::FEATURES_OK == 0 {
            return Err(InitError::FeaturesRefused);
        }
        self.info.features = features;

        // Queue 0.
        self.w(reg::QUEUE_SEL, 0);
        let max = self.r(reg::QUEUE_NUM_MAX);
        if self.r(reg::QUEUE_READY) != 0 || max < 4 {
            return Err(InitError::QueueUnavailable { max });
        }
        // The largest power of two that fits both.
        let cap = max.min(u32::from(QUEUE_SIZE_MAX));
        let size = 1u16 << (31 - cap.leading_zeros());
        self.info.queue_size = size;
        self.info.req_slots = usize::from(size) / 3;
        // Rings start zeroed: avail.flags = 0 (interrupts wanted), idx 0; used idx 0.
        self.dma
            .fill(0, layout::SIZE, 0)
            .map_err(|_| InitError::DmaTooSmall(self.dma.size()))?;
        let desc = paddr(self.dma_paddr, layout::DESC)?;
        let avail = paddr(self.dma_paddr, layout::AVAIL)?;
        let used = paddr(self.dma_paddr, layout::USED)?;
        paddr(self.dma_paddr, layout::SIZE)?;
        for (addr, len) in [
            (desc, 16 * u64::from(size)),
            (avail, 6 + 2 * u64::from(size)),
            (used, 6 + 8 * u64::from(size)),
        ] {
            if !self.windows.dma.contains(addr, len) {
                return Err(InitError::OutsideDma { addr, len });
            }
        }
        self.w(reg::QUEUE_NUM, u32::from(size));
        self.w(reg::QUEUE_DESC_LOW, desc as u32);
        self.w(reg::QUEUE_DESC_HIGH, (desc >> 32) as u32);
        self.w(reg::QUEUE_DRIVER_LOW, avail as u32);
        self.w(reg::QUEUE_DRIVER_HIGH, (avail >> 32) as u32);
        self.w(reg::QUEUE_DEVICE_LOW, used as u32);
        self.w(reg::QUEUE_DEVICE_HIGH, (used >> 32) as u32);
        self.w(reg::QUEUE_READY, 1);
        self.w(reg::STATUS, st | status::FEATURES_OK | status::DRIVER_OK);
        let s = self.r(reg::STATUS);
        if s & (status::DEVICE_NEEDS_RESET | status::FAILED) != 0 || s & status::DRIVER_OK == 0 {
            return Err(InitError::DeviceFailed(s));
        }

        // Configuration: capacity is 64 bits read in two halves, so repeat until the
        // generation is stable (bounded).
        let mut capacity = 0;
        for _ in 0..16 {
            let g = self.r(reg::CONFIG_GENERATION);
            let lo = self.r(reg::CONFIG_CAPACITY);
            let hi = self.r(reg::CONFIG_CAPACITY + 4);
            capacity = u64::from(lo) | u64::from(hi) << 32;
            if self.r(reg::CONFIG_GENERATION) == g {
                break;
            }
        }
        self.info.capacity_sectors = capacity;
        if features & feature::BLK_SIZE != 0 {
            self.info.blk_size = Some(self.r(reg::CONFIG_BLK_SIZE));
        }
        Ok(())
    }

    /// Where descriptors may point.
    pub fn windows(&self) -> DmaWindows {
        self.windows
    }

    /// The device's description.
    pub fn info(&self) -> DeviceInfo {
        self.info
    }

    /// Whether a feature was negotiated.
    pub fn has(&self, f: u64) -> bool {
        self.info.features & f != 0
    }

    /// A free request slot, if any.
    pub fn free_slot(&self) -> Option<usize> {
        self.busy.iter().take(self.info.req_slots).position(|b| !*b)
    }

    /// Slots in flight.
    pub fn in_flight(&self) -> usize {
        self.busy.iter().filter(|b| **b).count()
    }

    fn desc(
        &self,
        i: usize,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> Result<(), RegionError> {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.dma.write(layout::DESC + 16 * i, &d)
    }

    /// Builds the chain of request slot `slot` for `op` and adds it to the available ring (not
    /// yet visible to the device: see [`Self::publish`]). The caller checked every address.
    pub fn submit(&mut self, slot: usize, op: Op) -> Result<(), DeviceError> {
        if slot >= self.info.req_slots || self.busy[slot] {
            return Err(DeviceError::BadUsedId(slot as u32));
        }
        let head = 3 * slot;
        let hdr_off = layout::HEADERS + 16 * slot;
        let st_off = layout::STATUS + slot;
        let hdr_pa = self.dma_paddr.wrapping_add(hdr_off as u64);
        let st_pa = self.dma_paddr.wrapping_add(st_off as u64);
        // Every address the chain will give the device, checked before anything is written.
        let data = match op {
            Op::Read { paddr, len, .. } | Op::Write { paddr, len, .. } => Some((paddr, len)),
            Op::Flush => None,
        };
        for (addr, len) in [(hdr_pa, 16), (st_pa, 1)] {
            if !self.windows.dma.contains(addr, len) {
                return Err(DeviceError::OutsideDma { addr, len });
            }
        }
        if let Some((addr, len)) = data {
            let len = u64::from(len);
            if len == 0 || !self.windows.allow(addr, len) {
                return Err(DeviceError::OutsideDma { addr, len });
            }
        }
        let (ty, sector) = match op {
            Op::Read { sector, .. } => (blk::T_IN, sector),
            Op::Write { sector, .. } => (blk::T_OUT, sector),
            Op::Flush => (blk::T_FLUSH, 0),
        };
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ty.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        let dma = |e| DeviceError::Dma(e);
        self.dma.write(hdr_off, &h).map_err(dma)?;
        self.dma.write(st_off, &[blk::S_UNWRITTEN]).map_err(dma)?;
        let (h1, h2) = ((head + 1) as u16, (head + 2) as u16);
        match op {
            Op::Read { paddr, len, .. } | Op::Write { paddr, len, .. } => {
                let wr = if matches!(op, Op::Read { .. }) {
                    desc_flags::WRITE
                } else {
                    0
                };
                self.desc(head, hdr_pa, 16, desc_flags::NEXT, h1)
                    .map_err(dma)?;
                self.desc(head + 1, paddr, len, desc_flags::NEXT | wr, h2)
                    .map_err(dma)?;
            }
            Op::Flush => {
                self.desc(head, hdr_pa, 16, desc_flags::NEXT, h2)
                    .map_err(dma)?;
            }
        }
        self.desc(head + 2, st_pa, 1, desc_flags::WRITE, 0)
            .map_err(dma)?;
        let size = self.info.queue_size;
        let ring = layout::AVAIL + 4 + 2 * usize::from(self.avail_idx % size);
        self.dma
            .write(ring, &(head as u16).to_le_bytes())
            .map_err(dma)?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.busy[slot] = true;
        self.unpublished = true;
        Ok(())
    }

    /// Makes the chains added since the last call visible (avail.idx) and notifies the device
    /// once.
    pub fn publish(&mut self) -> Result<(), DeviceError> {
        if !self.unpublished {
            return Ok(());
        }
        self.unpublished = false;
        // Descriptors and ring entries before the index; the index before the notification.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.dma
            .write_u32(layout::AVAIL, u32::from(self.avail_idx) << 16)
            .map_err(DeviceError::Dma)?;
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.w(reg::QUEUE_NOTIFY, 0);
        Ok(())
    }

    /// Reads and acknowledges InterruptStatus; a DEVICE_NEEDS_RESET is reported.
    pub fn ack_interrupt(&mut self) -> Result<u32, DeviceError> {
        let isr = self.r(reg::INTERRUPT_STATUS);
        if isr != 0 {
            self.w(reg::INTERRUPT_ACK, isr);
        }
        if isr & int::CONFIG_CHANGE != 0 {
            let s = self.r(reg::STATUS);
            if s & status::DEVICE_NEEDS_RESET != 0 {
                return Err(DeviceError::NeedsReset(s));
            }
        }
        Ok(isr)
    }

    /// Takes the next used element, if any, and frees its slot. Elements naming no chain in
    /// flight are reported (and skipped).
    pub fn pop_used(&mut self) -> Result<Option<Done>, DeviceError> {
        let dma = DeviceError::Dma;
        let observed = (self.dma.read_u32(layout::USED).map_err(dma)? >> 16) as u16;
        let n = observed.wrapping_sub(self.last_used);
        if n == 0 {
            return Ok(None);
        }
        if n > self.info.queue_size {
            return Err(DeviceError::UsedIndex {
                last: self.last_used,
                observed,
            });
        }
        // The element after the index.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        let e = layout::USED + 4 + 8 * usize::from(self.last_used % self.info.queue_size);
        let id = self.dma.read_u32(e).map_err(dma)?;
        self.last_used = self.last_used.wrapping_add(1);
        let slot = (id / 3) as usize;
        if id % 3 != 0 || slot >= self.info.req_slots || !self.busy[slot] {
            return Err(DeviceError::BadUsedId(id));
        }
        let mut st = [0u8];
        self.dma.read(layout::STATUS + slot, &mut st).map_err(dma)?;
        self.busy[slot] = false;
        Ok(Some(Done {
            slot,
            status: st[0],
        }))
    }

    /// Gives up every chain in flight (after a device failure): their slots are returned.
    pub fn abandon_all(&mut self) -> impl Iterator<Item = usize> + '_ {
        let n = self.info.req_slots;
        self.busy
            .iter_mut()
            .take(n)
            .enumerate()
            .filter_map(|(i, b)| core::mem::take(b).then_some(i))
    }

    /// Resets the device (Status 0): it stops touching the queue memory.
    pub fn reset(&mut self) {
        self.w(reg::STATUS, 0);
    }
}

#[cfg(test)]
mod data_space_tests {
    use super::{DataSpace, MAX_DATA_WINDOWS, PhysWindow};

    fn two() -> DataSpace {
        let mut s = DataSpace::from(PhysWindow {
            paddr: 0x1000_0000,
            size: 0x4_0000,
        });
        assert!(s.push(PhysWindow {
            paddr: 0x8000_0000,
            size: 0x1_0000,
        }));
        s
    }

    #[test]
    fn offsets_map_into_the_window_they_fall_in_and_never_straddle() {
        let s = two();
        assert_eq!(s.size(), 0x5_0000);
        assert_eq!(s.translate(0, 0x1000), Some(0x1000_0000));
        assert_eq!(s.translate(0x3_f000, 0x1000), Some(0x1003_f000));
        // The second window starts at offset 0x4_0000 of the space.
        assert_eq!(s.translate(0x4_0000, 0x1000), Some(0x8000_0000));
        assert_eq!(s.translate(0x4_f000, 0x1000), Some(0x8000_f000));
        // Across the boundary: refused, though both halves are client memory.
        assert_eq!(s.translate(0x3_f000, 0x2000), None);
        // Past the end, and overflowing.
        assert_eq!(s.translate(0x5_0000, 0x1000), None);
        assert_eq!(s.translate(0x4_f000, 0x2000), None);
        assert_eq!(s.translate(u64::MAX, 2), None);
        assert_eq!(s.translate(0x4_0000, u64::MAX), None);
        // Physical checks: inside one window only.
        assert!(s.contains(0x8000_0000, 0x1_0000));
        assert!(!s.contains(0x8000_0000, 0x1_0001));
        assert!(!s.contains(0x1004_0000, 1));
    }

    #[test]
    fn an_empty_space_refuses_everything_and_a_full_one_takes_no_more() {
        let e = DataSpace::empty();
        assert_eq!((e.size(), e.translate(0, 1)), (0, None));
        assert!(!e.contains(0, 1));
        let mut s = DataSpace::empty();
        for i in 0..MAX_DATA_WINDOWS as u64 {
            assert!(s.push(PhysWindow {
                paddr: i << 20,
                size: 0x1000
            }));
        }
        assert!(!s.push(PhysWindow {
            paddr: 1 << 40,
            size: 0x1000
        }));
        assert_eq!(s.windows().len(), MAX_DATA_WINDOWS);
        // A window of size 0 is skipped, not matched.
        let mut z = DataSpace::from(PhysWindow {
            paddr: 0x10,
            size: 0,
        });
        z.push(PhysWindow {
            paddr: 0x2000,
            size: 0x1000,
        });
        assert_eq!(z.translate(0, 0x1000), Some(0x2000));
    }
}
