//! Replays the guest's hostile virtio-blk requests (`blk_pattern::hostile::CASES`) against the
//! VMM's own device model (`vmm-devices`: virtio-mmio transport + virtio-blk over an in-memory
//! disk of the plan's size), through the registers and a split queue of the guest's size laid
//! out like the guest's, and checks that the model answers each exactly as the table says: the
//! status byte, the used element (id and length), DEVICE_NEEDS_RESET and the configuration-change
//! interrupt, untouched data buffers and disk; and that after each reset the re-initialised
//! device reads correctly. Also the plan's writes through the same model: the final disk equals
//! `blk_pattern::render`.

use blk_pattern::hostile::{self, Buf, CASES, DATA_POISON, Link, Outcome, STATUS_POISON};
use blk_pattern::{DISK_BYTES, EXTENTS, SECTOR};
use vmm_core::addr::GuestPhysAddr;
use vmm_core::memory::{GuestMemory, GuestRam};
use vmm_devices::blk::{BlkConfig, BlkDevice, feature};
use vmm_devices::feature::VERSION_1;
use vmm_devices::mmio::{IrqAction, MmioTransport, reg, status};
use vmm_devices::queue::{DESC_F_NEXT, DESC_F_WRITE, Descriptor};
use vmm_devices::testing::{CompletionMode, MemDisk};

const RAM_BASE: u64 = 0x4000_0000;
const RAM_SIZE: usize = 0x4_0000;
/// The guest's queue layout (testguest `virtio.rs`): descriptors, avail, used in one page.
const QUEUE: u64 = RAM_BASE;
const AVAIL: u64 = QUEUE + 0x100;
const USED: u64 = QUEUE + 0x200;
const HEADERS: u64 = QUEUE + 0x400;
const STATUS: u64 = QUEUE + 0x500;
const DATA: u64 = RAM_BASE + 0x1_0000;
const DATA_LEN: usize = 0x2_0000;
/// The guest's queue size.
const QSIZE: u16 = 16;

struct Guest<'a> {
    ram: Vec<u8>,
    t: MmioTransport<BlkDevice<MemDisk<'a>>>,
    avail_idx: u16,
    used_seen: u16,
    irqs: u32,
}

impl Guest<'_> {
    fn mem(&mut self) -> GuestRam<'_> {
        GuestRam::new(GuestPhysAddr(RAM_BASE), &mut self.ram)
    }
    fn r32(&mut self, off: u64) -> u32 {
        self.t.read(off, 4).expect("register read") as u32
    }
    fn w32(&mut self, off: u64, v: u32) {
        let mut ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut self.ram);
        if self
            .t
            .write(&mut ram, off, 4, u64::from(v))
            .expect("register write")
            == IrqAction::Raise
        {
            self.irqs += 1;
        }
    }
    fn write(&mut self, gpa: u64, b: &[u8]) {
        self.mem().write(GuestPhysAddr(gpa), b).expect("RAM write");
    }
    fn read(&mut self, gpa: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.mem()
            .read(GuestPhysAddr(gpa), &mut b)
            .expect("RAM read");
        b
    }
    fn u16_at(&mut self, gpa: u64) -> u16 {
        let b = self.read(gpa, 2);
        u16::from_le_bytes([b[0], b[1]])
    }

    /// The guest driver's initialisation: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK,
    /// queue 0 of size 16 at the guest's addresses, DRIVER_OK.
    fn init(&mut self) {
        self.w32(reg::STATUS, 0);
        assert_eq!(self.r32(reg::STATUS), 0);
        self.w32(reg::STATUS, 1);
        self.w32(reg::STATUS, 3);
        self.w32(reg::DEVICE_FEATURES_SEL, 0);
        let lo = self.r32(reg::DEVICE_FEATURES);
        self.w32(reg::DEVICE_FEATURES_SEL, 1);
        let hi = self.r32(reg::DEVICE_FEATURES);
        let offered = u64::from(lo) | u64::from(hi) << 32;
        let want =
            VERSION_1 | feature::FLUSH | feature::SIZE_MAX | feature::SEG_MAX | feature::BLK_SIZE;
        let f = offered & want;
        self.w32(reg::DRIVER_FEATURES_SEL, 0);
        self.w32(reg::DRIVER_FEATURES, f as u32);
        self.w32(reg::DRIVER_FEATURES_SEL, 1);
        self.w32(reg::DRIVER_FEATURES, (f >> 32) as u32);
        self.w32(reg::STATUS, 11);
        assert_eq!(self.r32(reg::STATUS), 11, "FEATURES_OK");
        self.write(QUEUE, &[0u8; 0x600]);
        self.w32(reg::QUEUE_SEL, 0);
        assert!(self.r32(reg::QUEUE_NUM_MAX) >= u32::from(QSIZE));
        self.w32(reg::QUEUE_NUM, u32::from(QSIZE));
        for (lo, a) in [
            (reg::QUEUE_DESC_LOW, QUEUE),
            (reg::QUEUE_DRIVER_LOW, AVAIL),
            (reg::QUEUE_DEVICE_LOW, USED),
        ] {
            self.w32(lo, a as u32);
            self.w32(lo + 4, (a >> 32) as u32);
        }
        self.w32(reg::QUEUE_READY, 1);
        self.w32(reg::STATUS, 15);
        assert_eq!(self.r32(reg::STATUS), 15, "DRIVER_OK");
        // Polled, like the guest: no used-buffer interrupts.
        self.write(AVAIL, &1u16.to_le_bytes());
        self.avail_idx = 0;
        self.used_seen = 0;
    }

    /// Writes `descs` at indices 0.. and publishes head 0; notifies.
    fn post(&mut self, descs: &[Descriptor]) {
        for (i, d) in descs.iter().enumerate() {
            self.write(QUEUE + 16 * i as u64, &d.to_bytes());
        }
        let slot = self.avail_idx % QSIZE;
        self.write(AVAIL + 4 + 2 * u64::from(slot), &0u16.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        let idx = self.avail_idx;
        self.write(AVAIL + 2, &idx.to_le_bytes());
        self.w32(reg::QUEUE_NOTIFY, 0);
    }

    fn used(&mut self) -> Option<(u32, u32)> {
        if self.u16_at(USED + 2) == self.used_seen {
            return None;
        }
        let slot = u64::from(self.used_seen % QSIZE);
        let e = self.read(USED + 4 + 8 * slot, 8);
        self.used_seen = self.used_seen.wrapping_add(1);
        Some((
            u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
            u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
        ))
    }

    /// A plain request: header, the data segments, status. Returns (status, used length).
    fn request(&mut self, ty: u32, sector: u64, data: &[(u64, u32, bool)]) -> (u8, u32) {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&ty.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        self.write(HEADERS, &h);
        self.write(STATUS, &[STATUS_POISON]);
        let mut descs = vec![(HEADERS, 16, false)];
        descs.extend_from_slice(data);
        descs.push((STATUS, 1, true));
        let n = descs.len();
        let descs: Vec<Descriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, w))| Descriptor {
                addr,
                len,
                flags: if w { DESC_F_WRITE } else { 0 } | if i + 1 < n { DESC_F_NEXT } else { 0 },
                next: if i + 1 < n { i as u16 + 1 } else { 0 },
            })
            .collect();
        self.post(&descs);
        let (id, len) = self.used().expect("the model completes at once");
        assert_eq!(id, 0);
        (self.read(STATUS, 1)[0], len)
    }
}

fn with_guest(f: impl FnOnce(&mut Guest<'_>)) {
    let mut disk = vec![0u8; DISK_BYTES as usize];
    let mut staging = vec![0u8; 0x1_0000];
    let backend = MemDisk::new(&mut disk, &mut staging, CompletionMode::Immediate);
    let dev = BlkDevice::new(backend, BlkConfig::default()).expect("device");
    let mut g = Guest {
        ram: vec![0u8; RAM_SIZE],
        t: MmioTransport::new(dev),
        avail_idx: 0,
        used_seen: 0,
        irqs: 0,
    };
    f(&mut g);
}

/// The plan written through the model, as the guest writes it, gives exactly `render`'s image,
/// and every hostile request is answered as the table says.
#[test]
fn hostile_requests_are_answered_as_the_table_says() {
    with_guest(|g| {
        g.init();
        // The plan, each extent one request (split in 64 KiB segments, or the extent's own).
        for e in EXTENTS {
            let mut buf = vec![0u8; e.len as usize];
            blk_pattern::fill(e.offset, e.seed, &mut buf);
            g.write(DATA, &buf);
            let mut segs = vec![];
            let mut at = 0u32;
            let lens: Vec<u32> = if e.segments.is_empty() {
                let mut v = vec![];
                let mut left = e.len as u32;
                while left > 0 {
                    v.push(left.min(0x1_0000));
                    left -= left.min(0x1_0000);
                }
                v
            } else {
                e.segments.to_vec()
            };
            for l in lens {
                segs.push((DATA + u64::from(at), l, false));
                at += l;
            }
            assert_eq!(
                g.request(hostile::req::OUT, e.offset / SECTOR, &segs),
                (0, 1),
                "{}",
                e.name
            );
        }
        let disk = g.t.device().backend().contents().to_vec();
        let mut want = vec![0u8; DISK_BYTES as usize];
        blk_pattern::render(0, &mut want);
        assert!(disk == want, "the plan's final contents");

        for c in CASES {
            let data_len = hostile::data_len() as usize;
            g.write(DATA, &vec![DATA_POISON; data_len]);
            let mut h = [0u8; 16];
            h[..4].copy_from_slice(&c.req_type.to_le_bytes());
            h[8..].copy_from_slice(&c.sector.to_le_bytes());
            g.write(HEADERS, &h);
            g.write(STATUS, &[STATUS_POISON]);
            let descs: Vec<Descriptor> = c
                .descs
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let addr = match d.buf {
                        Buf::Header => HEADERS,
                        Buf::Data(o) => DATA + u64::from(o),
                        Buf::Status => STATUS,
                        Buf::Phys(a) => a,
                    };
                    let (next, more) = match d.link {
                        Link::Next => (i as u16 + 1, true),
                        Link::End => (0, false),
                        Link::To(k) => (u16::from(k), true),
                        Link::QueueSize => (QSIZE, true),
                    };
                    Descriptor {
                        addr,
                        len: d.len,
                        flags: if d.write { DESC_F_WRITE } else { 0 }
                            | if more { DESC_F_NEXT } else { 0 },
                        next,
                    }
                })
                .collect();
            let used_before = g.u16_at(USED + 2);
            let irqs = g.irqs;
            g.post(&descs);
            let st = g.read(STATUS, 1)[0];
            match c.outcome {
                Outcome::Answered { status, used_len } => {
                    assert_eq!(g.used(), Some((0, used_len)), "{}", c.name);
                    assert_eq!(st, status, "{}", c.name);
                    assert_eq!(g.r32(reg::STATUS), 15, "{}", c.name);
                    assert_eq!(g.irqs, irqs, "{}: polled, no interrupt", c.name);
                }
                Outcome::NeedsReset => {
                    assert_eq!(g.used(), None, "{}", c.name);
                    assert_eq!(g.u16_at(USED + 2), used_before);
                    assert_eq!(st, STATUS_POISON, "{}", c.name);
                    assert_eq!(
                        g.r32(reg::STATUS),
                        15 | u32::from(status::DEVICE_NEEDS_RESET),
                        "{}",
                        c.name
                    );
                    assert_eq!(g.r32(reg::INTERRUPT_STATUS), 2, "{}", c.name);
                    assert_eq!(g.irqs, irqs + 1, "{}: one config-change interrupt", c.name);
                    g.init();
                    assert_eq!(g.r32(reg::INTERRUPT_STATUS), 0);
                }
            }
            assert!(
                g.read(DATA, data_len).iter().all(|&b| b == DATA_POISON),
                "{}: a data buffer was written",
                c.name
            );
            assert!(
                g.t.device().backend().contents() == want.as_slice(),
                "{}: the disk changed",
                c.name
            );
            // The (re-initialised) device still reads correctly: the last sector and the
            // hostile target.
            for (sector, len) in [
                (blk_pattern::DISK_SECTORS - 1, 512u32),
                (hostile::TARGET_SECTOR, 4096),
            ] {
                let r = g.request(hostile::req::IN, sector, &[(DATA, len, true)]);
                assert_eq!(r, (0, len + 1), "{}: read after", c.name);
                let off = (sector * SECTOR) as usize;
                assert_eq!(g.read(DATA, len as usize), want[off..off + len as usize]);
            }
        }
    });
}

/// The table itself: answered cases first, every chain non-empty, answered chains end in the
/// status byte.
#[test]
fn table_shape() {
    let first_reset = CASES
        .iter()
        .position(|c| c.outcome == Outcome::NeedsReset)
        .expect("some need a reset");
    assert!(
        CASES[first_reset..]
            .iter()
            .all(|c| c.outcome == Outcome::NeedsReset)
    );
    for c in CASES {
        assert!(
            !c.descs.is_empty() && c.descs.len() < usize::from(QSIZE),
            "{}",
            c.name
        );
        if let Outcome::Answered { .. } = c.outcome {
            assert_eq!(
                c.descs.last().map(|d| d.buf),
                Some(Buf::Status),
                "{}",
                c.name
            );
        }
    }
    assert!(hostile::data_len() as usize <= DATA_LEN);
}
