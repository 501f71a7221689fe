//! The virtio cases: the guest's own virtio-blk driver against the VMM's emulated device (or,
//! natively, QEMU's own `virtio-blk-device` at the same address and INTID), and one line over
//! the VMM's virtio-console.
//!
//! The block cases share one initialised device (set up by `blk-probe`) and the disk plan of the
//! `blk-pattern` crate: `blk-write-patterns` writes its extents in order, `blk-read-back` reads
//! every extent with its neighbouring units, extra unaligned ranges and the sentinels, and
//! compares each byte with the plan's final-contents model. The host's `blk-disk-check` checks
//! the same model on the disk image afterwards.
//!
//! Natively only `blk-probe` (without the VMM-specific values), `blk-get-id` (status and length,
//! not the text), `blk-write-patterns`, `blk-flush`, `blk-read-back` and `blk-irq` run.

#![allow(
    clippy::result_large_err,
    reason = "no heap to box into: each case returns its FAIL detail by value, once"
)]

use blk_pattern::hostile::{self, Outcome};
use blk_pattern::{DISK_BYTES, DISK_SECTORS, EXTENTS, Extent, SECTOR, SENTINELS, UNIT};

use crate::harness::CaseResult;
use crate::platform::{self, Platform};
use crate::report::Msg;
use crate::virtio::{
    Dma, DmaRegion, F_VERSION_1, Global, Link, QUEUE_AREA, Seg, Transport, VirtQueue, VirtioError,
    int, reg, status,
};
use crate::virtio_blk::{self as vblk, Blk, MAX_DATA_SEGS, feature};
use crate::{arch, gic, vectors};

/// The block device, once `blk-probe` brought it up.
static BLK: Global<Option<Blk>> = Global::new(None);

/// Bound on the iterations of the interrupt wait (it also has a CNTVCT deadline).
const MAX_WAIT_ITERATIONS: u32 = 10_000_000;
/// Longest read of `blk-read-back` (more than one 64 KiB segment).
const READ_CHUNK: u64 = 0x1_2000;
/// What read buffers hold before the device fills them.
const READ_POISON: u8 = 0xee;
/// Gap between the buffers of a scattered request's segments.
const SCATTER_GAP: usize = 0x1000;

trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, Msg>;
}

impl<T> Ctx<T> for Result<T, VirtioError> {
    fn ctx(self, what: &str) -> Result<T, Msg> {
        self.map_err(|e| Msg::from_args(format_args!("{what}: {e}")))
    }
}

fn native() -> bool {
    platform::detect() == Platform::Native
}

fn with_blk(f: impl FnOnce(&mut Blk) -> CaseResult) -> CaseResult {
    BLK.with(|b| match b {
        Some(b) => f(b),
        None => Err(Msg::from_args(format_args!(
            "{}",
            VirtioError::NotInitialised
        ))),
    })
}

/// The device: magic, version 2, DeviceID 2, FEATURES_OK refused for features the device does
/// not offer or without VERSION_1 (VMM), then the driver's initialisation: the negotiated
/// features, the configuration (capacity of the 16 MiB disk, blk_size 512; under the VMM also
/// size_max 64 KiB, seg_max 126, QueueNumMax 256 and the VMM's vendor), Status 0xf.
pub fn blk_probe() -> CaseResult {
    BLK.with(|b| *b = None);
    let native = native();
    let t = vblk::transport();
    let p = t.probe(vblk::DEVICE_ID).ctx("probe")?;
    if !native {
        ensure_eq!("VendorID", u64::from(p.vendor), u64::from(vblk::VMM_VENDOR));
        for (what, f) in [
            (
                "an unoffered feature (INDIRECT_DESC)",
                F_VERSION_1 | feature::INDIRECT_DESC,
            ),
            ("no VERSION_1", feature::FLUSH),
        ] {
            t.reset().ctx("reset")?;
            t.write(reg::STATUS, status::ACKNOWLEDGE);
            t.write(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
            t.set_driver_features(f);
            t.write(
                reg::STATUS,
                status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
            );
            ensure_eq!(
                format_args!("Status after FEATURES_OK with {what}"),
                u64::from(t.status()),
                u64::from(status::ACKNOWLEDGE | status::DRIVER)
            );
        }
    }
    let b = Blk::init().ctx("init")?;
    ensure!(
        b.features & F_VERSION_1 != 0,
        "VERSION_1 not negotiated: {:#x}",
        b.features
    );
    ensure_eq!("capacity (sectors)", b.capacity, DISK_SECTORS);
    if b.features & feature::BLK_SIZE != 0 {
        ensure_eq!("blk_size", u64::from(b.blk_size), 512);
    }
    ensure_eq!("Status", u64::from(t.status()), u64::from(status::LIVE));
    if !native {
        ensure_eq!(
            "offered features",
            b.offered,
            vblk::WANT | vblk::feature::EVENT_IDX
        );
        ensure_eq!("negotiated features", b.features, vblk::WANT);
        ensure_eq!("QueueNumMax", u64::from(b.queue_max), 256);
        ensure_eq!("size_max", u64::from(b.size_max), 0x1_0000);
        ensure_eq!("seg_max", u64::from(b.seg_max), 126);
        ensure_eq!("queue size", u64::from(b.q.size()), 16);
    }
    BLK.with(|s| *s = Some(b));
    Ok(())
}

/// GET_ID into a 20-byte buffer: status OK, used length 21 (20 + the status byte), the byte
/// after the buffer untouched; under the VMM the string is "sel4-vmm", NUL-padded.
pub fn blk_get_id() -> CaseResult {
    with_blk(|b| {
        let buf = vblk::id_buf();
        buf.fill(0, buf.len(), READ_POISON);
        let d = b
            .run(
                hostile::req::GET_ID,
                0,
                &[Seg::input(buf.addr(), vblk::ID_BYTES)],
            )
            .ctx("GET_ID")?;
        ensure_eq!(
            "status",
            u64::from(d.status),
            u64::from(hostile::status::OK)
        );
        ensure_eq!("used length", u64::from(d.used_len), 21);
        ensure_eq!(
            "byte after the buffer",
            u64::from(buf.r8(vblk::ID_BYTES as usize)),
            u64::from(READ_POISON)
        );
        if !native() {
            let want = b"sel4-vmm";
            for i in 0..vblk::ID_BYTES as usize {
                let w = want.get(i).copied().unwrap_or(0);
                ensure_eq!(
                    format_args!("ID byte {i}"),
                    u64::from(buf.r8(i)),
                    u64::from(w)
                );
            }
        }
        Ok(())
    })
}

/// Most extents in one batch.
const MAX_BATCH: usize = 4;
/// Data-buffer bytes each extent of a batch has to itself.
const BATCH_STRIDE: usize = 0x8000;

/// Segments of an extent's request, its data from byte `at` of the data buffers on: its own
/// (each in its own buffer, with gaps between) or the driver's split of one buffer. The pattern
/// is written into the buffers on the way.
fn extent_segments(
    b: &Blk,
    e: &Extent,
    at: usize,
    out: &mut [Seg; MAX_DATA_SEGS],
) -> Result<usize, Msg> {
    let data = vblk::data();
    let data = data.sub(at, data.len() - at);
    let len = e.len as usize;
    if e.segments.is_empty() {
        data.fill_with(0, len, |i| {
            blk_pattern::pattern(e.offset + i as u64, e.seed)
        });
        let n = b.split(data.addr(), e.len as u32, false, &mut out[..b.max_segs()]);
        let total: u32 = out[..n].iter().map(|s| s.len).sum();
        ensure!(
            u64::from(total) == e.len,
            "{}: {} bytes do not fit {} segments",
            e.name,
            e.len,
            b.max_segs()
        );
        return Ok(n);
    }
    ensure!(
        e.segments.len() <= b.max_segs(),
        "{}: {} segments, the device takes {}",
        e.name,
        e.segments.len(),
        b.max_segs()
    );
    let mut cum = 0usize;
    for (k, &l) in e.segments.iter().enumerate() {
        let boff = cum + k * SCATTER_GAP;
        let disk = e.offset + cum as u64;
        data.fill_with(boff, l as usize, |i| {
            blk_pattern::pattern(disk + i as u64, e.seed)
        });
        out[k] = Seg::out(data.addr() + boff as u64, l);
        cum += l as usize;
    }
    Ok(e.segments.len())
}

/// Every extent of the plan, in order, one OUT request each: status OK, used length 1. The
/// extents of a batch are posted together (each in its own part of the data buffers) and
/// notified once; their completions may come in any order.
pub fn blk_write_patterns() -> CaseResult {
    with_blk(|b| {
        let mut i = 0;
        while let Some(first) = EXTENTS.get(i) {
            let n = if first.batch == 0 {
                1
            } else {
                EXTENTS[i..]
                    .iter()
                    .take_while(|e| e.batch == first.batch)
                    .count()
            };
            let batch = &EXTENTS[i..i + n];
            ensure!(
                n <= MAX_BATCH,
                "a batch of {} extents, at most {}",
                n,
                MAX_BATCH
            );
            let mut heads = [0u16; MAX_BATCH];
            for (k, e) in batch.iter().enumerate() {
                let mut segs = [Seg::out(0, 0); MAX_DATA_SEGS];
                let used = extent_segments(b, e, k * BATCH_STRIDE, &mut segs)?;
                heads[k] = b
                    .post(hostile::req::OUT, e.offset / SECTOR, &segs[..used])
                    .ctx(e.name)?;
            }
            b.notify();
            for _ in 0..n {
                let d = b.wait().ctx(first.name)?;
                let k = heads[..n].iter().position(|&h| h == d.head);
                ensure!(
                    k.is_some(),
                    "{}: completion of head {}, not one of the batch's",
                    first.name,
                    d.head
                );
                let e = &batch[k.unwrap_or(0)];
                ensure!(
                    d.status == hostile::status::OK && d.used_len == 1,
                    "{} ({:#x}+{:#x}): status {:#x}, used length {}, want 0 and 1",
                    e.name,
                    e.offset,
                    e.len,
                    d.status,
                    d.used_len
                );
            }
            i += n;
        }
        Ok(())
    })
}

/// FLUSH (negotiated): status OK, used length 1.
pub fn blk_flush() -> CaseResult {
    with_blk(|b| {
        ensure!(
            b.features & feature::FLUSH != 0,
            "FLUSH not negotiated (offered {:#x})",
            b.offered
        );
        let d = b.run(hostile::req::FLUSH, 0, &[]).ctx("FLUSH")?;
        ensure_eq!(
            "status",
            u64::from(d.status),
            u64::from(hostile::status::OK)
        );
        ensure_eq!("used length", u64::from(d.used_len), 1);
        Ok(())
    })
}

/// Compares the bytes of `buf` with the plan's final contents from disk byte `disk_off` on.
fn compare(buf: DmaRegion, disk_off: u64) -> CaseResult {
    let mut i = 0usize;
    while i < buf.len() {
        let o = disk_off + i as u64;
        let (seed, end) = blk_pattern::expected_run(o);
        let n = (end - o).min((buf.len() - i) as u64) as usize;
        for j in i..i + n {
            let at = disk_off + j as u64;
            let want = seed.map_or(0, |s| blk_pattern::pattern(at, s));
            let got = buf.r8(j);
            ensure!(
                got == want,
                "disk {at:#x} (sector {}, {}): read {got:#04x}, want {want:#04x}",
                at / SECTOR,
                blk_pattern::describe(at)
            );
        }
        i += n;
    }
    Ok(())
}

/// Reads `len` bytes at disk byte `off` (in requests of up to [`READ_CHUNK`], or as one request
/// of the given scattered segments), checks status OK and used length = data + 1, and compares
/// every byte with the plan.
fn read_compare(b: &mut Blk, off: u64, len: u64, segments: &[u32]) -> CaseResult {
    let data = vblk::data();
    if !segments.is_empty() {
        let mut segs = [Seg::out(0, 0); MAX_DATA_SEGS];
        let mut cum = 0usize;
        for (k, &l) in segments.iter().enumerate() {
            let boff = cum + k * SCATTER_GAP;
            data.fill(boff, l as usize, READ_POISON);
            segs[k] = Seg::input(data.addr() + boff as u64, l);
            cum += l as usize;
        }
        ensure_eq!("segments add up", cum as u64, len);
        let d = b
            .run(hostile::req::IN, off / SECTOR, &segs[..segments.len()])
            .ctx("scattered read")?;
        ensure!(
            d.status == hostile::status::OK && u64::from(d.used_len) == len + 1,
            "read {off:#x}+{len:#x} in {} segments: status {:#x}, used length {}",
            segments.len(),
            d.status,
            d.used_len
        );
        let mut cum = 0usize;
        for (k, &l) in segments.iter().enumerate() {
            compare(
                data.sub(cum + k * SCATTER_GAP, l as usize),
                off + cum as u64,
            )?;
            cum += l as usize;
        }
        return Ok(());
    }
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(READ_CHUNK);
        data.fill(0, n as usize, READ_POISON);
        let at = off + done;
        let d = b.transfer(false, at, 0, n as u32).ctx("read")?;
        ensure!(
            d.status == hostile::status::OK && u64::from(d.used_len) == n + 1,
            "read {at:#x}+{n:#x}: status {:#x}, used length {}, want 0 and {}",
            d.status,
            d.used_len,
            n + 1
        );
        compare(data.sub(0, n as usize), at)?;
        done += n;
    }
    Ok(())
}

/// Unaligned reads across unit boundaries, one request each: (disk offset, length, segments).
const UNALIGNED_READS: &[(u64, u64, &[u32])] = &[
    // Across the unit boundary at 0x2_2000, both ends inside units.
    (0x2_1c00, 0x800, &[]),
    // The end of aligned-units into its untouched neighbour unit.
    (0x1_1e00, 0x400, &[]),
    // Inside large-odd, across 0x21_0000.
    (0x20_fe00, 0x1000, &[]),
    // All of large-odd in one request (two segments).
    (0x20_0200, 0x1_2600, &[]),
    // The multi-segment extent read in three other segments.
    (0x30_0a00, 0x2200, &[0x400, 0x1a00, 0x400]),
    // The single sector and its neighbours, a segment each.
    (0x3_0600, 0x600, &[0x200, 0x200, 0x200]),
    // The last five sectors of the disk.
    (DISK_BYTES - 0xa00, 0xa00, &[]),
];

/// Reads back every extent with one unit either side, the unaligned ranges above and every
/// sentinel, and compares each byte with the plan's final contents.
pub fn blk_read_back() -> CaseResult {
    with_blk(|b| {
        for e in EXTENTS {
            let start = (e.offset / UNIT * UNIT).saturating_sub(UNIT);
            let end = (e.end().div_ceil(UNIT) * UNIT + UNIT).min(DISK_BYTES);
            read_compare(b, start, end - start, &[])?;
        }
        for &(off, len, segs) in UNALIGNED_READS {
            read_compare(b, off, len, segs)?;
        }
        for s in SENTINELS {
            read_compare(b, s.offset, s.len, &[])?;
        }
        Ok(())
    })
}

/// One read with used-buffer interrupts enabled, waited for in WFI: SPI 79 routed to CPU 0,
/// edge-triggered (as QEMU virt's device tree says) and enabled at the distributor; the handler acknowledges InterruptStatus (bit 0 set) at the device
/// before the EOI; exactly one interrupt; InterruptStatus reads 0 afterwards; the data is right.
/// (A virtual-timer watchdog bounds the WFI natively.)
pub fn blk_irq() -> CaseResult {
    with_blk(|b| {
        let freq = arch::cntfrq();
        let isr = b.t.read(reg::INTERRUPT_STATUS);
        ensure_eq!(
            "InterruptStatus before (polled requests asked for no interrupt)",
            u64::from(isr),
            0
        );
        gic::init();
        gic::target_cpu0(gic::VIRTIO_BLK_IRQ);
        gic::set_edge(gic::VIRTIO_BLK_IRQ);
        gic::enable(gic::VIRTIO_BLK_IRQ);
        gic::enable(gic::VTIMER_IRQ);
        vectors::irq_reset();
        b.q.interrupts(true);
        let data = vblk::data();
        let (off, len) = (0x2_1c00u64, 0x1000u32);
        data.fill(0, len as usize, READ_POISON);
        let posted = b.post(
            hostile::req::IN,
            off / SECTOR,
            &[Seg::input(data.addr(), len)],
        );
        let head = match posted {
            Ok(h) => h,
            Err(e) => {
                b.q.interrupts(false);
                gic::disable(gic::VIRTIO_BLK_IRQ);
                gic::disable(gic::VTIMER_IRQ);
                fail!("post: {e}");
            }
        };
        arch::set_cntv_ctl(0);
        let start = arch::now();
        arch::set_cntv_tval(freq / 10);
        arch::set_cntv_ctl(arch::CNTV_ENABLE);
        b.notify();
        let deadline = start + 2 * freq;
        let (mut wfis, mut iterations) = (0u32, 0u32);
        while vectors::irq_log().virtio == 0
            && arch::now() < deadline
            && iterations < MAX_WAIT_ITERATIONS
        {
            iterations += 1;
            // WFI only while the watchdog can still wake it.
            if vectors::irq_log().timer == 0 && arch::cntv_ctl() & arch::CNTV_ISTATUS == 0 {
                arch::wfi();
                wfis += 1;
            }
            arch::irq_unmask();
            arch::irq_mask();
        }
        arch::set_cntv_ctl(0);
        gic::disable(gic::VIRTIO_BLK_IRQ);
        gic::disable(gic::VTIMER_IRQ);
        b.q.interrupts(false);
        let log = vectors::irq_log();
        let isr_now = b.t.read(reg::INTERRUPT_STATUS);
        ensure!(
            log.virtio > 0,
            "no virtio-blk IRQ within 2 s ({wfis} WFIs, {} timer, {} other IRQs, last IAR {:#x}, \
             InterruptStatus {isr_now:#x}, used.idx {})",
            log.timer,
            log.other,
            log.other_iar,
            b.q.used_idx()
        );
        ensure_eq!("virtio-blk IRQs", u64::from(log.virtio), 1);
        ensure_eq!(
            "IAR id",
            u64::from(gic::iar_id(log.virtio_iar)),
            u64::from(gic::VIRTIO_BLK_IRQ)
        );
        ensure!(
            log.virtio_isr & int::USED_BUFFER != 0,
            "InterruptStatus in the handler: {:#x}, want bit 0",
            log.virtio_isr
        );
        ensure_eq!("InterruptStatus after the ACK", u64::from(isr_now), 0);
        ensure_eq!("other IRQs", u64::from(log.other), 0);
        let d = b.wait().ctx("used ring after the IRQ")?;
        ensure_eq!("used id", u64::from(d.head), u64::from(head));
        ensure_eq!(
            "status",
            u64::from(d.status),
            u64::from(hostile::status::OK)
        );
        ensure_eq!("used length", u64::from(d.used_len), u64::from(len) + 1);
        compare(data.sub(0, len as usize), off)
    })
}

/// The hostile requests of `blk_pattern::hostile::CASES`, each answered exactly as the VMM's
/// model specifies (checked against the model itself by the host test
/// `guests/blk-pattern/tests/hostile_model.rs`): a failed request comes back with its status byte
/// and used length 1, the data buffers untouched; an unfollowable chain or one without a usable
/// status byte sets DEVICE_NEEDS_RESET with a configuration-change interrupt and no used
/// element, and the driver resets and re-initialises the device. Afterwards the device still
/// reads the right data (and the hostile writes did not land: their target reads zero).
pub fn blk_hostile() -> CaseResult {
    with_blk(|b| {
        let data = vblk::data();
        let dlen = hostile::data_len() as usize;
        for c in hostile::CASES {
            data.fill(0, dlen, hostile::DATA_POISON);
            let used_before = b.q.used_idx();
            let head = b.post_hostile(c).ctx(c.name)?;
            b.notify();
            match c.outcome {
                Outcome::Answered { status, used_len } => {
                    let d = b.wait().ctx(c.name)?;
                    ensure!(
                        d.head == head && d.status == status && d.used_len == used_len,
                        "{}: head {} status {:#x} used length {}, want {head}, {status:#x}, \
                         {used_len}",
                        c.name,
                        d.head,
                        d.status,
                        d.used_len
                    );
                    ensure_eq!(
                        format_args!("{}: Status", c.name),
                        u64::from(b.t.status()),
                        u64::from(status::LIVE)
                    );
                }
                Outcome::NeedsReset => {
                    let deadline = arch::deadline_ms(1000);
                    while b.t.status() & status::DEVICE_NEEDS_RESET == 0 && arch::now() < deadline {
                    }
                    ensure_eq!(
                        format_args!("{}: Status", c.name),
                        u64::from(b.t.status()),
                        u64::from(status::LIVE | status::DEVICE_NEEDS_RESET)
                    );
                    let isr = b.t.read(reg::INTERRUPT_STATUS);
                    ensure!(
                        isr & int::CONFIG_CHANGE != 0,
                        "{}: InterruptStatus {isr:#x}, want the configuration-change bit",
                        c.name
                    );
                    ensure_eq!(
                        format_args!("{}: used.idx", c.name),
                        u64::from(b.q.used_idx()),
                        u64::from(used_before)
                    );
                    ensure_eq!(
                        format_args!("{}: status byte", c.name),
                        u64::from(b.status_byte(head)),
                        u64::from(hostile::STATUS_POISON)
                    );
                    b.reinit().ctx("re-initialisation")?;
                    ensure_eq!(
                        format_args!("{}: InterruptStatus after the reset", c.name),
                        u64::from(b.t.read(reg::INTERRUPT_STATUS)),
                        0
                    );
                }
            }
            if let Some((i, v)) = data.find_not(0, dlen, hostile::DATA_POISON) {
                fail!("{}: data byte {i} was written ({v:#04x})", c.name);
            }
        }
        read_compare(b, blk_pattern::HOSTILE_OFFSET, 0x1000, &[])?;
        read_compare(b, DISK_BYTES - UNIT, UNIT, &[])?;
        read_compare(b, 0x2_0000, 0x4000, &[])
    })
}

/// The VMM's virtio-console (DeviceID 3) at 0x0a00_3c00: receiveq 0, transmitq 1.
const VCON_BASE: usize = 0x0a00_3c00;
/// Queue page of the console: receiveq at 0, transmitq at 0x400, the line at 0x800.
static VCON_PAGE: Dma<4096> = Dma::new();
/// The line the console transmits (the VMM prints it on the system console).
const VCON_LINE: &[u8] = b"virtio-console: hello from the guest\n";

/// Brings the console up (VERSION_1, both queues), transmits [`VCON_LINE`] on the transmitq in
/// one device-readable buffer, and sees the chain come back with used length 0; then resets it.
pub fn vcon_tx() -> CaseResult {
    // SAFETY: virtio-mmio slot 30: device memory outside the image.
    let t = unsafe { Transport::at(VCON_BASE) };
    t.probe(3).ctx("probe")?;
    let (_, features) = t.negotiate(F_VERSION_1).ctx("features")?;
    ensure_eq!("features", features, F_VERSION_1);
    let page = VCON_PAGE.region();
    let rx = VirtQueue::new(page.sub(0, QUEUE_AREA), 0, t.queue_size(0).ctx("receiveq")?);
    t.setup_queue(&rx).ctx("receiveq")?;
    let mut tx = VirtQueue::new(
        page.sub(0x400, QUEUE_AREA),
        1,
        t.queue_size(1).ctx("transmitq")?,
    );
    t.setup_queue(&tx).ctx("transmitq")?;
    t.driver_ok().ctx("DRIVER_OK")?;
    let buf = page.sub(0x800, VCON_LINE.len());
    buf.fill_with(0, VCON_LINE.len(), |i| VCON_LINE[i]);
    let head = tx
        .post(&[Seg {
            addr: buf.addr(),
            len: VCON_LINE.len() as u32,
            write: false,
            link: Link::End,
        }])
        .ctx("post")?;
    t.notify(1);
    let u = tx.wait_used(&t).ctx("transmitq")?;
    ensure_eq!("used id", u64::from(u.id), u64::from(head));
    ensure_eq!("used length", u64::from(u.len), 0);
    ensure_eq!("Status", u64::from(t.status()), u64::from(status::LIVE));
    t.reset().ctx("reset")
}
