//! virtio-blk end to end: a guest driver builds requests in guest RAM and runs them through the
//! MMIO transport against the in-memory disk.

mod common;

use common::*;
use vmm_devices::blk::{
    self, BackendOp, BlkConfig, BlkDevice, BlkSize, CONFIG_SIZE, Completion, ID_BYTES, Tag,
    blk_status, req_type,
};
use vmm_devices::feature::VERSION_1;
use vmm_devices::mmio::{
    CONFIG_OFFSET, DeviceError, DeviceState, INT_CONFIG_CHANGE, INT_USED_BUFFER, IrqAction, reg,
    status,
};
use vmm_devices::queue::{AVAIL_F_NO_INTERRUPT, ChainError};
use vmm_devices::testing::{CompletionMode, DiskStats, MemDisk};

const BLOCKS: usize = 16;
const DISK: usize = BLOCKS * 4096;

fn disk_with_pattern() -> Vec<u8> {
    pattern(7, DISK)
}

/// Runs `f` against a fresh device for each completion mode and staging size.
fn each_setup(f: impl Fn(&mut BlkEnv<'_>, &mut Vec<u8>)) {
    for mode in [CompletionMode::Immediate, CompletionMode::Deferred] {
        for staging_units in [1, 2, 5] {
            let mut disk = disk_with_pattern();
            let mut model = disk.clone();
            let mut staging = vec![0u8; staging_units * 4096];
            let mut env = blk_env(&mut disk, &mut staging, mode, BlkConfig::default());
            f(&mut env, &mut model);
            assert_eq!(
                env.t.device().backend().contents(),
                &model[..],
                "{mode:?} staging {staging_units}"
            );
        }
    }
}

#[test]
fn config_space_and_features() {
    let mut disk = vec![0u8; DISK];
    let mut staging = vec![0u8; 4096];
    let config = BlkConfig {
        blk_size: BlkSize::B4096,
        seg_max: 32,
        size_max: 65536,
        ..BlkConfig::default()
    };
    let dev = BlkDevice::new(
        MemDisk::new(&mut disk, &mut staging, CompletionMode::Immediate),
        config,
    )
    .unwrap();
    let mut env = Env::new(dev, 1 << 20);
    assert_eq!(env.r32(reg::DEVICE_ID), blk::DEVICE_ID);
    let f = env.device_features();
    assert_eq!(
        f,
        VERSION_1
            | vmm_devices::feature::EVENT_IDX
            | blk::feature::FLUSH
            | blk::feature::BLK_SIZE
            | blk::feature::SEG_MAX
            | blk::feature::SIZE_MAX
    );
    assert_eq!(
        env.mmio_read(CONFIG_OFFSET, 8).unwrap(),
        (BLOCKS * 8) as u64
    );
    // A 64-bit field as two 32-bit reads, as the spec has drivers do.
    assert_eq!(
        env.mmio_read(CONFIG_OFFSET, 4).unwrap(),
        (BLOCKS * 8) as u64
    );
    assert_eq!(env.mmio_read(CONFIG_OFFSET + 4, 4).unwrap(), 0);
    assert_eq!(env.mmio_read(CONFIG_OFFSET + 8, 4).unwrap(), 65536);
    assert_eq!(env.mmio_read(CONFIG_OFFSET + 12, 4).unwrap(), 32);
    assert_eq!(env.mmio_read(CONFIG_OFFSET + 20, 4).unwrap(), 4096);
    assert_eq!(env.mmio_read(CONFIG_OFFSET + 21, 1).unwrap(), 0x10);
    assert!(
        env.mmio_read(CONFIG_OFFSET + CONFIG_SIZE as u64 - 2, 2)
            .is_ok()
    );
    assert!(
        env.mmio_read(CONFIG_OFFSET + CONFIG_SIZE as u64 - 1, 2)
            .is_err()
    );
    assert!(env.mmio_read(CONFIG_OFFSET, 3).is_err());
    // Config writes: nothing is writable; in bounds they are ignored, beyond refused.
    assert!(env.mmio_write(CONFIG_OFFSET, 8, 0).is_ok());
    assert_eq!(
        env.mmio_read(CONFIG_OFFSET, 8).unwrap(),
        (BLOCKS * 8) as u64
    );
    assert!(
        env.mmio_write(CONFIG_OFFSET + CONFIG_SIZE as u64, 1, 0)
            .is_err()
    );
}

#[test]
fn bad_configs_are_refused() {
    let mut disk = vec![0u8; DISK];
    let mut small = vec![0u8; 4095];
    let d = MemDisk::new(&mut disk, &mut small, CompletionMode::Immediate);
    assert_eq!(
        BlkDevice::new(d, BlkConfig::default()).err(),
        Some(blk::BlkConfigError::StagingTooSmall)
    );
    let mut staging = vec![0u8; 4096];
    for (c, e) in [
        (
            BlkConfig {
                seg_max: 0,
                ..BlkConfig::default()
            },
            blk::BlkConfigError::SegMax,
        ),
        (
            BlkConfig {
                seg_max: blk::MAX_SEG + 1,
                ..BlkConfig::default()
            },
            blk::BlkConfigError::SegMax,
        ),
        (
            BlkConfig {
                size_max: 511,
                ..BlkConfig::default()
            },
            blk::BlkConfigError::SizeMax,
        ),
        (
            BlkConfig {
                queue_size: 100,
                ..BlkConfig::default()
            },
            blk::BlkConfigError::QueueSize,
        ),
    ] {
        let d = MemDisk::new(&mut disk, &mut staging, CompletionMode::Immediate);
        assert_eq!(BlkDevice::new(d, c).err(), Some(e));
    }
}

#[test]
fn aligned_reads_and_writes_at_block_boundaries() {
    each_setup(|env, model| {
        // Whole first block, whole last block, three blocks across the middle.
        for (sector, blocks) in [(0u64, 1usize), (8 * 15, 1), (8 * 6, 3), (0, 16)] {
            let r = env.read(sector, blocks * 4096);
            assert_eq!(r.status, blk_status::OK);
            assert_eq!(r.used_len as usize, blocks * 4096 + 1);
            let s = sector as usize * 512;
            assert_eq!(r.data, &model[s..s + blocks * 4096]);
        }
        for (i, (sector, blocks)) in [(0u64, 1usize), (8 * 15, 1), (8 * 6, 3)]
            .into_iter()
            .enumerate()
        {
            let data = pattern(100 + i as u64, blocks * 4096);
            let r = env.write(sector, &data);
            assert_eq!((r.status, r.used_len), (blk_status::OK, 1));
            let s = sector as usize * 512;
            model[s..s + data.len()].copy_from_slice(&data);
        }
    });
}

#[test]
fn sector_granular_reads() {
    each_setup(|env, model| {
        for (sector, n) in [(1u64, 1usize), (7, 2), (5, 20), (127, 1), (3, 125)] {
            let r = env.read(sector, n * 512);
            assert_eq!(r.status, blk_status::OK, "sector {sector} n {n}");
            let s = sector as usize * 512;
            assert_eq!(r.data, &model[s..s + n * 512]);
        }
    });
}

#[test]
fn unaligned_writes_preserve_neighbouring_sectors() {
    each_setup(|env, model| {
        let cases = [
            (1u64, 1usize), // inside one unit, head and tail partial
            (7, 1),         // last sector of a unit
            (8, 1),         // first sector of a unit: tail partial only
            (3, 5),         // ends exactly at a unit boundary: head partial only
            (6, 4),         // crosses one unit boundary, both partial
            (13, 30),       // several units, both ends partial
            (127, 1),       // last sector of the disk
            (9, 7),         // unit 1 without its first sector
        ];
        for (i, (sector, n)) in cases.into_iter().enumerate() {
            let data = pattern(200 + i as u64, n * 512);
            let r = env.write(sector, &data);
            assert_eq!(r.status, blk_status::OK, "sector {sector} n {n}");
            let s = sector as usize * 512;
            model[s..s + data.len()].copy_from_slice(&data);
            assert_eq!(
                env.t.device().backend().contents(),
                &model[..],
                "after write at {sector} x{n}"
            );
        }
        assert!(env.t.device().stats().rmw_fills > 0);
    });
}

#[test]
fn any_descriptor_layout() {
    each_setup(|env, model| {
        // Data split into odd-sized segments, not on sector boundaries.
        let data = pattern(9, 5 * 512);
        let r = env.request(req_type::OUT, 3, &data, 0, &[1, 511, 1000, 3, 7]);
        assert_eq!(r.status, blk_status::OK);
        model[3 * 512..8 * 512].copy_from_slice(&data);
        let r = env.request(req_type::IN, 3, &[], 5 * 512, &[100, 1, 2000]);
        assert_eq!(r.status, blk_status::OK);
        assert_eq!(r.data, data);

        // Header split over two descriptors, and the status byte at the end of the last data
        // buffer.
        let h = env.alloc(16);
        let mut hdr = [0u8; 16];
        hdr[..4].copy_from_slice(&req_type::IN.to_le_bytes());
        hdr[8..].copy_from_slice(&10u64.to_le_bytes());
        env.write_mem(h, &hdr);
        let buf = env.alloc(513);
        let head = env.post(
            0,
            &[
                Seg {
                    addr: h,
                    len: 5,
                    write: false,
                },
                Seg {
                    addr: h + 5,
                    len: 11,
                    write: false,
                },
                Seg {
                    addr: buf,
                    len: 513,
                    write: true,
                },
            ],
        );
        let _ = env.notify(0);
        env.drain(false);
        assert_eq!(env.pop_used(0), Some((u32::from(head), 513)));
        assert_eq!(env.read_mem(buf + 512, 1), [blk_status::OK]);
        assert_eq!(env.read_mem(buf, 512), &model[10 * 512..11 * 512]);

        // Header and write data in one descriptor.
        let data = pattern(10, 512);
        let hb = env.alloc(16 + 512);
        hdr[..4].copy_from_slice(&req_type::OUT.to_le_bytes());
        hdr[8..].copy_from_slice(&20u64.to_le_bytes());
        env.write_mem(hb, &hdr);
        env.write_mem(hb + 16, &data);
        let st = env.alloc(1);
        env.post(
            0,
            &[
                Seg {
                    addr: hb,
                    len: 16 + 512,
                    write: false,
                },
                Seg {
                    addr: st,
                    len: 1,
                    write: true,
                },
            ],
        );
        let _ = env.notify(0);
        env.drain(false);
        assert!(env.pop_used(0).is_some());
        assert_eq!(env.read_mem(st, 1), [blk_status::OK]);
        model[20 * 512..21 * 512].copy_from_slice(&data);
    });
}

#[test]
fn invalid_requests_fail_with_ioerr_or_unsupp() {
    each_setup(|env, _model| {
        let sectors = (BLOCKS * 8) as u64;
        // Past the end, straddling the end, overflowing.
        for (sector, len) in [
            (sectors, 512),
            (sectors - 1, 1024),
            (u64::MAX, 512),
            (u64::MAX / 512 + 1, 512),
        ] {
            let r = env.read(sector, len);
            assert_eq!((r.status, r.used_len), (blk_status::IOERR, 1));
            let r = env.write(sector, &vec![0xaa; len]);
            assert_eq!(r.status, blk_status::IOERR);
        }
        // Not a multiple of 512.
        assert_eq!(env.read(0, 100).status, blk_status::IOERR);
        assert_eq!(env.write(0, &[1; 513]).status, blk_status::IOERR);
        // Direction mismatch: a read with device-readable data, a write with writable data.
        let r = env.request(req_type::IN, 0, &[0; 512], 512, &[]);
        assert_eq!(r.status, blk_status::IOERR);
        let r = env.request(req_type::OUT, 0, &[0; 512], 512, &[]);
        assert_eq!(r.status, blk_status::IOERR);
        // Unknown type.
        let r = env.request(77, 0, &[], 512, &[]);
        assert_eq!((r.status, r.used_len), (blk_status::UNSUPP, 1));
        // A zero-length transfer is a no-op.
        assert_eq!(env.read(3, 0).status, blk_status::OK);
        let s = env.t.device().stats();
        assert!(s.ioerr >= 12 && s.unsupp == 1);
        assert_eq!(env.t.state(), DeviceState::Live);
    });
}

#[test]
fn header_too_short_is_ioerr() {
    each_setup(|env, _| {
        let h = env.alloc(8);
        let st = env.alloc(1);
        env.post(
            0,
            &[
                Seg {
                    addr: h,
                    len: 8,
                    write: false,
                },
                Seg {
                    addr: st,
                    len: 1,
                    write: true,
                },
            ],
        );
        let _ = env.notify(0);
        assert_eq!(env.pop_used(0).map(|u| u.1), Some(1));
        assert_eq!(env.read_mem(st, 1), [blk_status::IOERR]);
    });
}

#[test]
fn flush_and_get_id() {
    each_setup(|env, _| {
        let r = env.request(req_type::FLUSH, 0, &[], 0, &[]);
        assert_eq!((r.status, r.used_len), (blk_status::OK, 1));
        assert_eq!(env.t.device().backend().stats.flushes, 1);
        let r = env.request(req_type::GET_ID, 0, &[], ID_BYTES, &[]);
        assert_eq!(r.status, blk_status::OK);
        assert_eq!(r.used_len as usize, ID_BYTES + 1);
        assert_eq!(&r.data[..8], b"sel4-vmm");
        assert!(r.data[8..].iter().all(|&b| b == 0));
        // A shorter buffer gets what fits.
        let r = env.request(req_type::GET_ID, 0, &[], 4, &[]);
        assert_eq!((r.status, r.used_len, &r.data[..]), (0, 5, &b"sel4"[..]));
        // No room at all.
        let r = env.request(req_type::GET_ID, 0, &[], 0, &[]);
        assert_eq!(r.status, blk_status::IOERR);
    });
}

#[test]
fn flush_unsupported_unless_negotiated_and_flush_failure() {
    let mut disk = vec![0u8; DISK];
    let mut staging = vec![0u8; 4096];
    let dev = BlkDevice::new(
        MemDisk::new(&mut disk, &mut staging, CompletionMode::Immediate),
        BlkConfig::default(),
    )
    .unwrap();
    let mut env = Env::new(dev, 1 << 20);
    assert!(env.init(VERSION_1, 64));
    let r = env.request(req_type::FLUSH, 0, &[], 0, &[]);
    assert_eq!(r.status, blk_status::UNSUPP);
    assert_eq!(env.t.device().backend().stats.flushes, 0);

    assert!(env.init(VERSION_1 | blk::feature::FLUSH, 64));
    env.t.device_mut().backend_mut().fail_flush = true;
    let r = env.request(req_type::FLUSH, 0, &[], 0, &[]);
    assert_eq!(r.status, blk_status::IOERR);
}

#[test]
fn read_only_storage() {
    let mut disk = pattern(3, DISK);
    let before = disk.clone();
    let mut staging = vec![0u8; 4096];
    let mut backend = MemDisk::new(&mut disk, &mut staging, CompletionMode::Immediate);
    backend.set_read_only(true);
    let dev = BlkDevice::new(backend, BlkConfig::default()).unwrap();
    let mut env = Env::new(dev, 1 << 20);
    assert_ne!(env.device_features() & blk::feature::RO, 0);
    assert!(env.init(VERSION_1 | blk::feature::RO, 64));
    assert_eq!(env.write(0, &[1; 4096]).status, blk_status::IOERR);
    assert_eq!(env.write(1, &[1; 512]).status, blk_status::IOERR);
    let r = env.read(0, 4096);
    assert_eq!(r.status, blk_status::OK);
    assert_eq!(r.data, &before[..4096]);
    assert_eq!(env.t.device().backend().stats.writes, 0);
}

#[test]
fn backend_failures_fail_the_request_only() {
    for mode in [CompletionMode::Immediate, CompletionMode::Deferred] {
        let mut disk = pattern(4, DISK);
        let before = disk.clone();
        let mut staging = vec![0u8; 2 * 4096];
        let mut env = blk_env(&mut disk, &mut staging, mode, BlkConfig::default());
        env.t.device_mut().backend_mut().fail_blocks = Some(3..4);
        // Read touching block 3.
        assert_eq!(env.read(8 * 3 + 2, 512).status, blk_status::IOERR);
        // Unaligned write whose fill of block 3 fails: nothing is written.
        assert_eq!(env.write(8 * 3 + 7, &[5; 1024]).status, blk_status::IOERR);
        // An aligned write into the failing block.
        assert_eq!(env.write(8 * 3, &[5; 4096]).status, blk_status::IOERR);
        env.t.device_mut().backend_mut().fail_blocks = None;
        assert_eq!(env.t.device().backend().contents(), &before[..]);
        // The device carries on.
        let r = env.read(8 * 3, 4096);
        assert_eq!(r.status, blk_status::OK);
        assert_eq!(r.data, &before[3 * 4096..4 * 4096]);
        assert_eq!(env.t.state(), DeviceState::Live);
    }
}

#[test]
fn deferred_fills_complete_in_any_order() {
    let mut disk = pattern(5, DISK);
    let mut model = disk.clone();
    // Three units per request slot.
    let mut staging = vec![0u8; blk::MAX_REQUESTS * 3 * 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Deferred,
        BlkConfig::default(),
    );
    // Sectors 5..=20: units 0..=2, head and tail partial: two fills, then one write.
    let data = pattern(11, 16 * 512);
    let (segs, _, st) = env.build(req_type::OUT, 5, &data, 0, &[]);
    env.post(0, &segs);
    let _ = env.notify(0);
    let pending = env.t.device().backend().pending().to_vec();
    assert_eq!(pending.len(), 2, "{pending:?}");
    // Tail first.
    let c = env.t.device_mut().backend_mut().complete(1).unwrap();
    assert_eq!(env.event(c), IrqAction::None);
    assert_eq!(env.pop_used(0), None);
    let c = env.t.device_mut().backend_mut().complete(0).unwrap();
    let _ = env.event(c);
    assert_eq!(env.t.device().backend().pending().len(), 1);
    let c = env.t.device_mut().backend_mut().complete(0).unwrap();
    assert_eq!(env.event(c), IrqAction::Raise);
    assert!(env.pop_used(0).is_some());
    assert_eq!(env.read_mem(st, 1), [blk_status::OK]);
    model[5 * 512..21 * 512].copy_from_slice(&data);
    assert_eq!(env.t.device().backend().contents(), &model[..]);
}

#[test]
fn requests_queue_behind_an_outstanding_one() {
    let mut disk = pattern(6, DISK);
    let mut staging = vec![0u8; 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Deferred,
        BlkConfig::default(),
    );
    // Two unaligned writes into the same unit: the second must see the first's result.
    let (a, _, sa) = env.build(req_type::OUT, 1, &[0x11; 512], 0, &[]);
    let (b, _, sb) = env.build(req_type::OUT, 2, &[0x22; 512], 0, &[]);
    env.post(0, &a);
    env.post(0, &b);
    let _ = env.notify(0);
    assert_eq!(env.t.device().backend().pending().len(), 1);
    env.drain(false);
    assert_eq!(env.pop_used(0).map(|u| u.1), Some(1));
    assert_eq!(env.pop_used(0).map(|u| u.1), Some(1));
    assert_eq!(env.read_mem(sa, 1), [0]);
    assert_eq!(env.read_mem(sb, 1), [0]);
    let c = env.t.device().backend().contents();
    assert!(c[512..1024].iter().all(|&x| x == 0x11));
    assert!(c[1024..1536].iter().all(|&x| x == 0x22));
}

#[test]
fn reset_abandons_inflight_work_and_waits_for_it() {
    let mut disk = pattern(8, DISK);
    let before = disk.clone();
    let mut staging = vec![0u8; 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Deferred,
        BlkConfig::default(),
    );
    let (segs, _, st) = env.build(req_type::IN, 0, &[], 4096, &[]);
    env.post(0, &segs);
    let _ = env.notify(0);
    assert_eq!(env.t.device().outstanding(), 1);
    // Reset with the read outstanding, then re-initialise and submit a write.
    assert!(env.init(VERSION_1 | blk::feature::FLUSH, 64));
    let data = pattern(12, 4096);
    let (segs2, _, st2) = env.build(req_type::OUT, 8, &data, 0, &[]);
    env.post(0, &segs2);
    let _ = env.notify(0);
    // Nothing new was submitted: the abandoned read still owns the staging buffer.
    assert_eq!(env.t.device().backend().pending().len(), 1);
    // A completion with a tag never issued is ignored.
    let _ = env.event(Completion {
        tag: Tag(0xdead),
        result: Ok(()),
    });
    assert_eq!(env.t.device().stats().unknown_completions, 1);
    env.drain(false);
    assert_eq!(env.t.device().stats().stale_completions, 1);
    // The old request was never answered; the new one was.
    assert_eq!(env.read_mem(st, 1), [0xff]);
    assert_eq!(env.pop_used(0).map(|u| u.1), Some(1));
    assert_eq!(env.read_mem(st2, 1), [blk_status::OK]);
    let c = env.t.device().backend().contents();
    assert_eq!(&c[4096..8192], &data[..]);
    assert_eq!(&c[..4096], &before[..4096]);
}

#[test]
fn disabled_queue_drops_the_answer() {
    let mut disk = pattern(8, DISK);
    let mut staging = vec![0u8; 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Deferred,
        BlkConfig::default(),
    );
    let (segs, ins, st) = env.build(req_type::IN, 0, &[], 4096, &[]);
    env.post(0, &segs);
    let _ = env.notify(0);
    env.w32(reg::QUEUE_SEL, 0);
    env.w32(reg::QUEUE_READY, 0);
    assert_eq!(env.r32(reg::QUEUE_READY), 0);
    env.drain(false);
    // Neither the data nor the status was written.
    assert_eq!(env.read_mem(st, 1), [0xff]);
    assert!(env.read_mem(ins[0].addr, 4096).iter().all(|&b| b == 0));
    assert_eq!(env.pop_used(0), None);
    assert_eq!(env.t.device().stats().abandoned, 1);
}

#[test]
fn interrupts_and_suppression() {
    let mut disk = vec![0u8; DISK];
    let mut staging = vec![0u8; 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Immediate,
        BlkConfig::default(),
    );
    let (segs, _, _) = env.build(req_type::IN, 0, &[], 512, &[]);
    env.post(0, &segs);
    assert_eq!(env.notify(0), IrqAction::Raise);
    assert!(env.t.irq_level());
    assert_eq!(env.ack_irq(), INT_USED_BUFFER);
    assert!(!env.t.irq_level());
    // The driver asks for no interrupts.
    let avail = env.vqs[0].avail;
    env.write_mem(avail, &AVAIL_F_NO_INTERRUPT.to_le_bytes());
    let (segs, _, _) = env.build(req_type::IN, 0, &[], 512, &[]);
    env.post(0, &segs);
    assert_eq!(env.notify(0), IrqAction::None);
    assert_eq!(env.r32(reg::INTERRUPT_STATUS), 0);
    assert_eq!(env.pop_used(0).map(|u| u.1), Some(513));
    assert_eq!(env.pop_used(0).map(|u| u.1), Some(513));
}

#[test]
fn unreportable_request_needs_reset() {
    let mut disk = vec![0u8; DISK];
    let mut staging = vec![0u8; 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Immediate,
        BlkConfig::default(),
    );
    // Last descriptor device-readable: nowhere to put the status.
    let h = env.alloc(16);
    env.post(
        0,
        &[Seg {
            addr: h,
            len: 16,
            write: false,
        }],
    );
    assert_eq!(env.notify(0), IrqAction::Raise);
    assert_eq!(env.t.state(), DeviceState::NeedsReset);
    assert_ne!(
        env.r32(reg::STATUS) & u32::from(status::DEVICE_NEEDS_RESET),
        0
    );
    assert_eq!(env.r32(reg::INTERRUPT_STATUS), INT_CONFIG_CHANGE);
    assert!(matches!(
        env.t.error(),
        Some(DeviceError::Unreportable { queue: 0, .. })
    ));
    // Notifications are ignored until the reset; afterwards the device works again.
    assert_eq!(env.notify(0), IrqAction::None);
    assert!(env.init(VERSION_1, 64));
    assert_eq!(env.t.state(), DeviceState::Live);
    assert_eq!(env.read(0, 512).status, blk_status::OK);

    // A status byte outside guest RAM: the same.
    let h = env.alloc(16);
    env.post(
        0,
        &[
            Seg {
                addr: h,
                len: 16,
                write: false,
            },
            Seg {
                addr: 0x1000,
                len: 1,
                write: true,
            },
        ],
    );
    let _ = env.notify(0);
    assert!(matches!(
        env.t.error(),
        Some(DeviceError::Unreportable {
            error: Some(ChainError::OutOfRange { .. }),
            ..
        })
    ));
}

#[test]
fn bad_data_descriptor_is_ioerr() {
    let mut disk = pattern(2, DISK);
    let before = disk.clone();
    let mut staging = vec![0u8; 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Immediate,
        BlkConfig::default(),
    );
    let end = env.ram_end();
    for bad in [
        Seg {
            addr: end - 256,
            len: 512,
            write: false,
        },
        Seg {
            addr: 0,
            len: 512,
            write: false,
        },
        Seg {
            addr: u64::MAX - 100,
            len: 512,
            write: false,
        },
        Seg {
            addr: DATA_START,
            len: 0,
            write: false,
        },
    ] {
        let mut hdr = [0u8; 16];
        hdr[..4].copy_from_slice(&req_type::OUT.to_le_bytes());
        let h = env.alloc(16);
        env.write_mem(h, &hdr);
        let st = env.alloc(1);
        env.post(
            0,
            &[
                Seg {
                    addr: h,
                    len: 16,
                    write: false,
                },
                bad,
                Seg {
                    addr: st,
                    len: 1,
                    write: true,
                },
            ],
        );
        let _ = env.notify(0);
        assert_eq!(env.pop_used(0).map(|u| u.1), Some(1), "{bad:?}");
        assert_eq!(env.read_mem(st, 1), [blk_status::IOERR], "{bad:?}");
    }
    assert_eq!(env.t.device().stats().bad_chains, 4);
    assert_eq!(env.t.device().backend().contents(), &before[..]);
    assert_eq!(env.t.state(), DeviceState::Live);
}

/// A deferred device with one unit of staging per request slot.
fn slotted<'a>(disk: &'a mut [u8], staging: &'a mut Vec<u8>) -> BlkEnv<'a> {
    *staging = vec![0u8; blk::MAX_REQUESTS * 4096];
    blk_env(
        disk,
        staging,
        CompletionMode::Deferred,
        BlkConfig::default(),
    )
}

#[test]
fn requests_sharing_no_unit_run_side_by_side_and_complete_in_any_order() {
    let mut disk = pattern(21, DISK);
    let model = disk.clone();
    let mut staging = vec![];
    let mut env = slotted(&mut disk, &mut staging);
    assert_eq!(env.t.device().depth(), blk::MAX_REQUESTS);
    let posted: Vec<_> = [0u64, 8, 24]
        .iter()
        .map(|&s| env.post_request(req_type::IN, s, &[], 4096, &[]))
        .collect();
    let _ = env.notify(0);
    // All three reads reach the backend before any completes, each in its own staging share.
    let pending = env.t.device().backend().pending().to_vec();
    assert_eq!(pending.len(), 3, "{pending:?}");
    let mut offsets: Vec<usize> = pending
        .iter()
        .map(|op| match *op {
            BackendOp::Read { offset, .. } => offset,
            _ => panic!("not a read: {op:?}"),
        })
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), 3, "distinct staging shares: {pending:?}");
    assert_eq!(env.t.device().in_progress(), 3);
    // Newest first: the used ring takes them in that order.
    env.drain(true);
    let heads: Vec<u32> = std::iter::from_fn(|| env.pop_used(0).map(|u| u.0)).collect();
    let want: Vec<u32> = posted.iter().rev().map(|p| u32::from(p.head)).collect();
    assert_eq!(heads, want);
    for (p, s) in posted.iter().zip([0usize, 8, 24]) {
        assert_eq!(env.read_mem(p.status, 1), [blk_status::OK]);
        let got = env.read_mem(p.ins[0].addr, 4096);
        assert_eq!(got, model[s * 512..s * 512 + 4096], "sector {s}");
    }
}

#[test]
fn a_request_waits_for_an_earlier_one_sharing_a_unit_and_sees_its_result() {
    let mut disk = pattern(22, DISK);
    let mut staging = vec![];
    let mut env = slotted(&mut disk, &mut staging);
    let data = pattern(23, 512);
    // A sub-unit write to unit 0, a read of the same sector, and a read of unit 1.
    let w = env.post_request(req_type::OUT, 3, &data, 0, &[]);
    let r0 = env.post_request(req_type::IN, 3, &[], 512, &[]);
    let r1 = env.post_request(req_type::IN, 8, &[], 4096, &[]);
    let _ = env.notify(0);
    // The write's fill and the unit-1 read go out; the read of unit 0 waits.
    let pending = env.t.device().backend().pending().to_vec();
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert_eq!(env.t.device().in_progress(), 3);
    assert!(
        pending
            .iter()
            .any(|op| matches!(*op, BackendOp::Read { block: 1, .. }))
    );
    env.drain(true);
    let mut used = std::collections::HashMap::new();
    env.collect_used(&mut used);
    assert_eq!(used.len(), 3);
    assert_eq!(env.results(&w, &used).status, blk_status::OK);
    let read = env.results(&r0, &used);
    assert_eq!(read.status, blk_status::OK);
    assert_eq!(read.data, data, "the read saw the earlier write");
    assert_eq!(env.results(&r1, &used).status, blk_status::OK);
}

#[test]
fn a_flush_waits_for_earlier_requests_and_later_ones_wait_for_it() {
    let mut disk = pattern(24, DISK);
    let mut staging = vec![];
    let mut env = slotted(&mut disk, &mut staging);
    let data = pattern(25, 4096);
    let w = env.post_request(req_type::OUT, 0, &data, 0, &[]);
    let f = env.post_request(req_type::FLUSH, 0, &[], 0, &[]);
    let r = env.post_request(req_type::IN, 16, &[], 4096, &[]);
    let _ = env.notify(0);
    let kinds = |env: &BlkEnv| {
        env.t
            .device()
            .backend()
            .pending()
            .iter()
            .map(|op| match op {
                BackendOp::Read { .. } => 'r',
                BackendOp::Write { .. } => 'w',
                BackendOp::Flush { .. } => 'f',
            })
            .collect::<String>()
    };
    assert_eq!(kinds(&env), "w", "only the write goes out");
    let c = env.t.device_mut().backend_mut().complete(0).unwrap();
    let _ = env.event(c);
    assert_eq!(kinds(&env), "f", "then the flush, alone");
    let c = env.t.device_mut().backend_mut().complete(0).unwrap();
    let _ = env.event(c);
    assert_eq!(kinds(&env), "r", "then the read");
    env.drain(false);
    let mut used = std::collections::HashMap::new();
    env.collect_used(&mut used);
    for p in [&w, &f, &r] {
        assert_eq!(env.results(p, &used).status, blk_status::OK);
    }
}

#[test]
fn max_seg_is_the_largest_seg_max_the_device_honours() {
    // A request is a header, its data segments and a status byte: with chains of at most
    // MAX_CHAIN descriptors, MAX_SEG data segments fit and one more does not.
    let mut disk = pattern(30, DISK);
    let mut staging = vec![0u8; 4096];
    let dev = BlkDevice::new(
        MemDisk::new(&mut disk, &mut staging, CompletionMode::Immediate),
        BlkConfig::default(),
    )
    .unwrap();
    let mut env = Env::new(dev, 1 << 20);
    assert!(env.init(VERSION_1, 256));
    // The default configuration advertises all of it.
    let seg_max = env.mmio_read(CONFIG_OFFSET + 12, 4).unwrap() as usize;
    assert_eq!(seg_max, blk::MAX_SEG as usize);
    let data = pattern(31, seg_max * 512);
    let r = env.request(req_type::OUT, 0, &data, 0, &vec![512; seg_max]);
    assert_eq!(r.status, blk_status::OK);
    assert_eq!(
        &env.t.device().backend().contents()[..data.len()],
        &data[..]
    );
    let more = pattern(32, (seg_max + 1) * 512);
    let r = env.request(req_type::OUT, 0, &more, 0, &vec![512; seg_max + 1]);
    assert_eq!(r.status, blk_status::IOERR);
    assert_eq!(env.t.device().stats().bad_chains, 1);
    assert_eq!(
        &env.t.device().backend().contents()[..data.len()],
        &data[..]
    );
}

#[test]
fn statistics_count_every_request_and_operation() {
    let mut disk = pattern(33, DISK);
    let mut staging = vec![0u8; 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Immediate,
        BlkConfig::default(),
    );
    // A whole-unit read: one backend read of one block.
    assert_eq!(env.read(0, 4096).status, blk_status::OK);
    // One sector inside unit 0: the unit is read (one fill), merged and written.
    assert_eq!(env.write(1, &[0x5a; 512]).status, blk_status::OK);
    // A whole unit: written without a fill.
    assert_eq!(env.write(8, &[0xa5; 4096]).status, blk_status::OK);
    assert_eq!(env.request(req_type::FLUSH, 0, &[], 0, &[]).status, 0);
    // Answered without the backend: unknown type, past the end, a bad chain.
    assert_eq!(env.request(77, 0, &[], 512, &[]).status, blk_status::UNSUPP);
    assert_eq!(env.read((BLOCKS * 8) as u64, 512).status, blk_status::IOERR);
    let (mut segs, _, _) = env.build(req_type::IN, 0, &[], 512, &[]);
    segs[1].len = 0;
    env.post(0, &segs);
    let _ = env.notify(0);
    assert_eq!(env.pop_used(0).map(|u| u.1), Some(1));
    // A read the storage fails.
    env.t.device_mut().backend_mut().fail_blocks = Some(3..4);
    assert_eq!(env.read(3 * 8, 512).status, blk_status::IOERR);
    assert_eq!(
        *env.t.device().stats(),
        blk::BlkStats {
            requests: 8,
            ok: 4,
            ioerr: 3,
            unsupp: 1,
            bad_chains: 1,
            rmw_fills: 1,
            backend_ops: 6,
            backend_errors: 1,
            stale_completions: 0,
            unknown_completions: 0,
            abandoned: 0,
            peak_in_progress: 1,
        }
    );
    assert_eq!(
        env.t.device().backend().stats,
        DiskStats {
            reads: 3,
            writes: 2,
            flushes: 1,
            blocks_read: 2,
            blocks_written: 2,
        }
    );
}

#[test]
fn a_window_covers_exactly_the_units_of_its_request() {
    // 16 units of staging: four request slots of four units each.
    let mut disk = pattern(34, DISK);
    let mut model = disk.clone();
    let mut staging = vec![0u8; 16 * 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Deferred,
        BlkConfig::default(),
    );
    assert_eq!(env.t.device().depth(), blk::MAX_REQUESTS);
    let blocks_of = |env: &BlkEnv| -> Vec<(char, u64, u32)> {
        env.t
            .device()
            .backend()
            .pending()
            .iter()
            .map(|op| match *op {
                BackendOp::Read { block, count, .. } => ('r', block, count),
                BackendOp::Write { block, count, .. } => ('w', block, count),
                BackendOp::Flush { .. } => ('f', 0, 0),
            })
            .collect()
    };
    // Two whole units at sector 0: one write of blocks 0 and 1, nothing more.
    let data = pattern(35, 2 * 4096);
    let w = env.post_request(req_type::OUT, 0, &data, 0, &[]);
    let _ = env.notify(0);
    assert_eq!(blocks_of(&env), [('w', 0, 2)]);
    env.drain(false);
    assert_eq!(env.reap(&w).status, blk_status::OK);
    model[..data.len()].copy_from_slice(&data);
    assert_eq!(env.t.device().backend().contents(), &model[..]);
    // Six units from unit 1: a window of the slot's four, then one of the two left.
    let r = env.post_request(req_type::IN, 8, &[], 6 * 4096, &[]);
    let _ = env.notify(0);
    assert_eq!(blocks_of(&env), [('r', 1, 4)]);
    let c = env.t.device_mut().backend_mut().complete(0).unwrap();
    let _ = env.event(c);
    assert_eq!(blocks_of(&env), [('r', 5, 2)]);
    env.drain(false);
    let got = env.reap(&r);
    assert_eq!(got.status, blk_status::OK);
    assert_eq!(got.data, &model[4096..7 * 4096]);
    // Sectors 7..17 (units 0 to 2, both ends partial): the fills read units 0 and 2 alone.
    let data = pattern(36, 10 * 512);
    let w = env.post_request(req_type::OUT, 7, &data, 0, &[]);
    let _ = env.notify(0);
    assert_eq!(blocks_of(&env), [('r', 0, 1), ('r', 2, 1)]);
    let c = env.t.device_mut().backend_mut().complete(1).unwrap();
    let _ = env.event(c);
    let c = env.t.device_mut().backend_mut().complete(0).unwrap();
    let _ = env.event(c);
    assert_eq!(blocks_of(&env), [('w', 0, 3)]);
    env.drain(false);
    assert_eq!(env.reap(&w).status, blk_status::OK);
    model[7 * 512..17 * 512].copy_from_slice(&data);
    assert_eq!(env.t.device().backend().contents(), &model[..]);
}

#[test]
fn every_slot_can_have_both_fills_outstanding() {
    // Two units of staging per slot; four writes, each across a unit boundary with both ends
    // partial and no unit shared: each reads its two end units first, all eight at once.
    let mut disk = pattern(37, DISK);
    let mut model = disk.clone();
    let mut staging = vec![0u8; 2 * blk::MAX_REQUESTS * 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Deferred,
        BlkConfig::default(),
    );
    let posted: Vec<_> = [7u64, 23, 39, 55]
        .iter()
        .map(|&s| {
            let data = pattern(s, 1024);
            model[s as usize * 512..s as usize * 512 + 1024].copy_from_slice(&data);
            env.post_request(req_type::OUT, s, &data, 0, &[])
        })
        .collect();
    let _ = env.notify(0);
    let pending = env.t.device().backend().pending().to_vec();
    assert_eq!(pending.len(), 2 * blk::MAX_REQUESTS, "{pending:?}");
    assert!(
        pending
            .iter()
            .all(|op| matches!(*op, BackendOp::Read { count: 1, .. }))
    );
    env.drain(true);
    let mut used = std::collections::HashMap::new();
    env.collect_used(&mut used);
    for p in &posted {
        assert_eq!(env.results(p, &used).status, blk_status::OK);
    }
    assert_eq!(env.t.device().stats().backend_errors, 0);
    assert_eq!(env.t.device().backend().contents(), &model[..]);
}

#[test]
fn a_guest_handing_requests_back_at_once_cannot_hold_the_device() {
    // A driver on another core may post each request again as soon as it is used: one
    // notification still takes at most a queue's worth of requests (128 here).
    let mut disk = pattern(38, DISK);
    let mut staging = vec![0u8; 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Immediate,
        BlkConfig::default(),
    );
    let p = env.post_request(req_type::IN, 0, &[], 512, &[]);
    let (a, reposted) = env.notify_recycling(0);
    assert_eq!(a, IrqAction::Raise);
    let n = env.t.device().stats().requests;
    assert!(n > 0 && n <= 128, "{n} requests in one pass");
    assert_eq!(n, reposted as u64);
    assert_eq!(env.read_mem(p.status, 1), [blk_status::OK]);
    // The request left available is taken on the next notification.
    let _ = env.notify(0);
    assert_eq!(env.t.device().stats().requests, n + 1);
}

#[test]
fn a_deferred_operation_that_fails_is_counted() {
    let mut disk = pattern(39, DISK);
    let mut staging = vec![0u8; 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Deferred,
        BlkConfig::default(),
    );
    env.t.device_mut().backend_mut().fail_blocks = Some(2..3);
    assert_eq!(env.read(2 * 8, 4096).status, blk_status::IOERR);
    assert_eq!(env.read(8, 4096).status, blk_status::OK);
    let s = *env.t.device().stats();
    assert_eq!(
        (s.backend_ops, s.backend_errors, s.ioerr, s.ok),
        (2, 1, 1, 1)
    );
}

#[test]
fn a_failed_request_abandons_only_its_own_operations() {
    // Two units of staging per slot. A write across units 0 and 1 (both ends partial: two
    // fills) and a read of unit 4 run side by side; the write's first fill fails.
    let mut disk = pattern(40, DISK);
    let model = disk.clone();
    let mut staging = vec![0u8; 2 * blk::MAX_REQUESTS * 4096];
    let mut env = blk_env(
        &mut disk,
        &mut staging,
        CompletionMode::Deferred,
        BlkConfig::default(),
    );
    assert!(!env.t.device().busy());
    let w = env.post_request(req_type::OUT, 7, &[0x77; 1024], 0, &[]);
    let r = env.post_request(req_type::IN, 4 * 8, &[], 4096, &[]);
    let _ = env.notify(0);
    assert!(env.t.device().busy());
    assert_eq!(env.t.device().backend().pending().len(), 3);
    env.t.device_mut().backend_mut().fail_blocks = Some(0..1);
    let c = env.t.device_mut().backend_mut().complete(0).unwrap();
    assert!(c.result.is_err());
    let _ = env.event(c);
    // The write is answered at once; its other fill is still out and is dropped when it comes
    // back; the read goes on.
    assert_eq!(env.read_mem(w.status, 1), [blk_status::IOERR]);
    env.t.device_mut().backend_mut().fail_blocks = None;
    env.drain(false);
    assert_eq!(env.t.device().stats().stale_completions, 1);
    let mut used = std::collections::HashMap::new();
    env.collect_used(&mut used);
    assert_eq!(used.len(), 2);
    let read = env.results(&r, &used);
    assert_eq!(read.status, blk_status::OK);
    assert_eq!(read.data, &model[4 * 4096..5 * 4096]);
    assert!(!env.t.device().busy());
    assert_eq!(env.t.device().backend().contents(), &model[..]);
}

#[test]
fn capacity_is_the_disk_in_sectors() {
    let mut disk = vec![0u8; DISK + 4095];
    let mut staging = vec![0u8; 4096];
    let dev = BlkDevice::new(
        MemDisk::new(&mut disk, &mut staging, CompletionMode::Immediate),
        BlkConfig::default(),
    )
    .unwrap();
    // 16 whole 4096-byte blocks (the partial one is not used), 8 sectors each.
    assert_eq!(dev.capacity(), 16 * 8);
}

#[test]
fn event_index_is_the_drivers_choice() {
    // VIRTIO_F_EVENT_IDX is offered; the queues suppress by used_event / avail_event only when
    // the driver took it (the transport sets them up at DRIVER_OK).
    for (extra, on) in [(0, false), (vmm_devices::feature::EVENT_IDX, true)] {
        let mut disk = disk_with_pattern();
        let mut staging = vec![0u8; 4 * 4096];
        let env = blk_env_with(
            &mut disk,
            &mut staging,
            CompletionMode::Immediate,
            BlkConfig::default(),
            extra,
        );
        assert_eq!(env.t.queues()[0].event_idx(), on);
    }
}
