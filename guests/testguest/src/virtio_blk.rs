//! The guest's virtio-blk driver (virtio 1.2 §5.2) on [`crate::virtio`]: the device at QEMU
//! virt's last virtio-mmio slot (0x0a00_3e00, INTID 79) — the VMM's emulated one, or, natively,
//! QEMU's own `virtio-blk-device` at the same place.
//!
//! A request is a chain: the 16-byte header (type, reserved, sector; device-readable), the data
//! segments (device-readable for OUT, device-writable for IN), and the status byte
//! (device-writable). The header and status byte of a request live in per-head slots of the
//! queue page, so a chain's head names them; the status byte is set to
//! [`hostile::STATUS_POISON`] before posting, so a device that returns a chain without writing
//! its status is caught. Data segments are at most 64 KiB (and `size_max` when negotiated).

use blk_pattern::hostile::{self, Buf, Hostile};

use crate::virtio::{
    Dma, DmaRegion, F_VERSION_1, Link, QUEUE_AREA, Seg, Transport, VirtQueue, VirtioError,
};

/// The transport's base.
pub const BASE: usize = 0x0a00_3e00;
/// DeviceID of a block device.
pub const DEVICE_ID: u32 = 2;
/// VendorID of the VMM's devices: "seL4".
pub const VMM_VENDOR: u32 = 0x344c_6573;

/// virtio-blk feature bits.
pub mod feature {
    #![allow(missing_docs)]
    pub const SIZE_MAX: u64 = 1 << 1;
    pub const SEG_MAX: u64 = 1 << 2;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    /// VIRTIO_F_INDIRECT_DESC: never offered by the VMM.
    pub const INDIRECT_DESC: u64 = 1 << 28;
    /// VIRTIO_F_EVENT_IDX: offered by the VMM; this driver does not take it (Linux's does:
    /// `make test-linux`).
    pub const EVENT_IDX: u64 = 1 << 29;
}

/// What the driver asks for: VERSION_1 (required), FLUSH, and the fields that describe limits.
pub const WANT: u64 =
    F_VERSION_1 | feature::SIZE_MAX | feature::SEG_MAX | feature::BLK_SIZE | feature::FLUSH;

/// `struct virtio_blk_config` offsets.
mod config {
    pub const CAPACITY: usize = 0;
    pub const SIZE_MAX: usize = 8;
    pub const SEG_MAX: usize = 12;
    pub const BLK_SIZE: usize = 20;
}

/// The largest data segment the driver makes.
pub const MAX_SEGMENT: u32 = 0x1_0000;
/// Most data segments in one request (the queue holds 16 descriptors: header + status + 14).
pub const MAX_DATA_SEGS: usize = 14;
/// Length of the GET_ID string.
pub const ID_BYTES: u32 = 20;

/// Queue page: the queue, then request headers (16 bytes per head), status bytes (1 per head)
/// and the GET_ID buffer.
static QUEUE_PAGE: Dma<4096> = Dma::new();
const HEADERS: usize = 0x400;
const STATUS: usize = 0x500;
const ID_BUF: usize = 0x600;
/// Data buffers: 256 KiB.
static DATA: Dma<0x4_0000> = Dma::new();

/// The data buffers.
pub fn data() -> DmaRegion {
    DATA.region()
}

/// The GET_ID buffer.
pub fn id_buf() -> DmaRegion {
    QUEUE_PAGE.region().sub(ID_BUF, 32)
}

/// The transport.
pub fn transport() -> Transport {
    // SAFETY: QEMU virt's (and the VMM's) virtio-mmio slot 31: device memory outside the image.
    unsafe { Transport::at(BASE) }
}

/// A finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Its head.
    pub head: u16,
    /// The status byte.
    pub status: u8,
    /// The used length.
    pub used_len: u32,
}

/// The initialised device.
pub struct Blk {
    /// The transport.
    pub t: Transport,
    /// The request queue.
    pub q: VirtQueue,
    /// Features the device offered.
    pub offered: u64,
    /// Features negotiated.
    pub features: u64,
    /// Capacity in sectors.
    pub capacity: u64,
    /// `size_max` (0 unless negotiated).
    pub size_max: u32,
    /// `seg_max` (0 unless negotiated).
    pub seg_max: u32,
    /// `blk_size` (0 unless negotiated).
    pub blk_size: u32,
    /// QueueNumMax of the request queue.
    pub queue_max: u32,
}

impl Blk {
    /// Probes, resets and brings the device up with one queue of up to 16 descriptors
    /// (used-buffer interrupts suppressed).
    pub fn init() -> Result<Blk, VirtioError> {
        let t = transport();
        t.probe(DEVICE_ID)?;
        let (offered, features) = t.negotiate(WANT)?;
        let has = |f: u64| features & f != 0;
        let capacity = t.config_u64(config::CAPACITY);
        let size_max = if has(feature::SIZE_MAX) {
            t.config_u32(config::SIZE_MAX)
        } else {
            0
        };
        let seg_max = if has(feature::SEG_MAX) {
            t.config_u32(config::SEG_MAX)
        } else {
            0
        };
        let blk_size = if has(feature::BLK_SIZE) {
            t.config_u32(config::BLK_SIZE)
        } else {
            0
        };
        let queue_max = t.queue_max(0);
        let size = t.queue_size(0)?;
        let q = VirtQueue::new(QUEUE_PAGE.region().sub(0, QUEUE_AREA), 0, size);
        t.setup_queue(&q)?;
        t.driver_ok()?;
        Ok(Blk {
            t,
            q,
            offered,
            features,
            capacity,
            size_max,
            seg_max,
            blk_size,
            queue_max,
        })
    }

    /// Resets the device and brings it up again (fresh queue).
    pub fn reinit(&mut self) -> Result<(), VirtioError> {
        *self = Blk::init()?;
        Ok(())
    }

    /// The status byte of the request with head `head`.
    pub fn status_byte(&self, head: u16) -> u8 {
        QUEUE_PAGE.region().r8(STATUS + usize::from(head))
    }

    /// The largest data segment: 64 KiB, or `size_max` if smaller (whole sectors).
    pub fn seg_limit(&self) -> u32 {
        let m = if self.size_max >= 512 {
            self.size_max.min(MAX_SEGMENT)
        } else {
            MAX_SEGMENT
        };
        m / 512 * 512
    }

    /// Most data segments per request.
    pub fn max_segs(&self) -> usize {
        match usize::try_from(self.seg_max) {
            Ok(n) if n > 0 => n.min(MAX_DATA_SEGS),
            _ => MAX_DATA_SEGS,
        }
    }

    /// `len` bytes at guest address `addr` as data segments of at most [`Blk::seg_limit`]
    /// bytes; returns how many.
    pub fn split(&self, addr: u64, len: u32, write: bool, out: &mut [Seg]) -> usize {
        let limit = self.seg_limit();
        let (mut at, mut left, mut n) = (addr, len, 0);
        while left > 0 && n < out.len() {
            let l = left.min(limit);
            out[n] = Seg {
                addr: at,
                len: l,
                write,
                link: Link::Next,
            };
            n += 1;
            at += u64::from(l);
            left -= l;
        }
        n
    }

    fn write_header(&self, head: u16, req_type: u32, sector: u64) {
        let h = QUEUE_PAGE
            .region()
            .sub(HEADERS + 16 * usize::from(head), 16);
        h.w32(0, req_type);
        h.w32(4, 0);
        h.w64(8, sector);
        QUEUE_PAGE
            .region()
            .w8(STATUS + usize::from(head), hostile::STATUS_POISON);
    }

    fn header_addr(head: u16) -> u64 {
        QUEUE_PAGE.region().addr() + (HEADERS + 16 * usize::from(head)) as u64
    }

    fn status_addr(head: u16) -> u64 {
        QUEUE_PAGE.region().addr() + (STATUS + usize::from(head)) as u64
    }

    /// Posts header + `data` + status (no notification); returns the head.
    pub fn post(&mut self, req_type: u32, sector: u64, data: &[Seg]) -> Result<u16, VirtioError> {
        let n = data.len() + 2;
        if data.len() > MAX_DATA_SEGS {
            return Err(VirtioError::ChainTooLong(n));
        }
        let head = self
            .q
            .next_head()
            .ok_or(VirtioError::QueueFull { need: n, free: 0 })?;
        self.write_header(head, req_type, sector);
        let mut segs = [Seg::out(0, 0); MAX_DATA_SEGS + 2];
        segs[0] = Seg::out(Self::header_addr(head), 16);
        for (s, d) in segs[1..].iter_mut().zip(data) {
            *s = Seg {
                link: Link::Next,
                ..*d
            };
        }
        segs[n - 1] = Seg {
            addr: Self::status_addr(head),
            len: 1,
            write: true,
            link: Link::End,
        };
        let got = self.q.post(&segs[..n])?;
        debug_assert_eq!(got, head);
        Ok(head)
    }

    /// Posts one of the hostile chains (data buffers from [`data`]); returns the head.
    pub fn post_hostile(&mut self, c: &Hostile) -> Result<u16, VirtioError> {
        let n = c.descs.len();
        let head = self
            .q
            .next_head()
            .ok_or(VirtioError::QueueFull { need: n, free: 0 })?;
        self.write_header(head, c.req_type, c.sector);
        let mut segs = [Seg::out(0, 0); MAX_DATA_SEGS + 2];
        if n > segs.len() {
            return Err(VirtioError::ChainTooLong(n));
        }
        for (s, d) in segs.iter_mut().zip(c.descs) {
            let addr = match d.buf {
                Buf::Header => Self::header_addr(head),
                Buf::Data(off) => data().addr() + u64::from(off),
                Buf::Status => Self::status_addr(head),
                Buf::Phys(a) => a,
            };
            let link = match d.link {
                hostile::Link::Next => Link::Next,
                hostile::Link::End => Link::End,
                hostile::Link::To(k) => Link::To(usize::from(k)),
                hostile::Link::QueueSize => Link::Raw(self.q.size()),
            };
            *s = Seg {
                addr,
                len: d.len,
                write: d.write,
                link,
            };
        }
        let got = self.q.post(&segs[..n])?;
        debug_assert_eq!(got, head);
        Ok(head)
    }

    /// Notifies the request queue.
    pub fn notify(&self) {
        self.t.notify(0);
    }

    /// Waits for the next finished request.
    pub fn wait(&mut self) -> Result<Done, VirtioError> {
        let u = self.q.wait_used(&self.t)?;
        Ok(Done {
            head: u.id,
            status: self.status_byte(u.id),
            used_len: u.len,
        })
    }

    /// One request, start to finish (nothing else may be in flight).
    pub fn run(&mut self, req_type: u32, sector: u64, data: &[Seg]) -> Result<Done, VirtioError> {
        let head = self.post(req_type, sector, data)?;
        self.notify();
        let d = self.wait()?;
        if d.head != head {
            return Err(VirtioError::UsedId(u32::from(d.head)));
        }
        Ok(d)
    }

    /// Reads (`write` false) or writes `len` bytes at disk byte `disk_off` from/to the data
    /// buffers at `buf_off`, in one request.
    pub fn transfer(
        &mut self,
        write: bool,
        disk_off: u64,
        buf_off: usize,
        len: u32,
    ) -> Result<Done, VirtioError> {
        let buf = data().sub(buf_off, len as usize);
        let mut segs = [Seg::out(0, 0); MAX_DATA_SEGS];
        let n = self.split(buf.addr(), len, !write, &mut segs[..self.max_segs()]);
        if segs[..n].iter().map(|s| s.len).sum::<u32>() != len {
            return Err(VirtioError::ChainTooLong(self.max_segs() + 1));
        }
        let ty = if write {
            hostile::req::OUT
        } else {
            hostile::req::IN
        };
        self.run(ty, disk_off / 512, &segs[..n])
    }
}
