//! The virtio-mmio transport: register file, access widths, status handshake, feature
//! negotiation, queue setup and DEVICE_NEEDS_RESET.

mod common;

use common::*;
use vmm_core::mmio::BusError;
use vmm_devices::console::{self, ConsoleConfig, ConsoleDevice};
use vmm_devices::feature::{INDIRECT_DESC, VERSION_1};
use vmm_devices::mmio::{
    DeviceError, DeviceState, INT_CONFIG_CHANGE, IrqAction, MAGIC_VALUE, VENDOR_ID, reg, status,
};
use vmm_devices::queue::{Area, QueueError};
use vmm_devices::testing::MemConsole;

const ACK: u32 = status::ACKNOWLEDGE as u32;
const DRV: u32 = status::DRIVER as u32;
const FOK: u32 = status::FEATURES_OK as u32;
const DOK: u32 = status::DRIVER_OK as u32;

fn env() -> Env<ConsoleDevice<MemConsole>> {
    let dev = ConsoleDevice::new(
        MemConsole::default(),
        ConsoleConfig {
            size: Some((80, 25)),
            queue_size: 16,
        },
    )
    .unwrap();
    Env::new(dev, 1 << 20)
}

#[test]
fn identification_registers() {
    let mut e = env();
    assert_eq!(e.r32(reg::MAGIC_VALUE), MAGIC_VALUE);
    assert_eq!(e.r32(reg::VERSION), 2);
    assert_eq!(e.r32(reg::DEVICE_ID), console::DEVICE_ID);
    assert_eq!(e.r32(reg::VENDOR_ID), VENDOR_ID);
    assert_eq!(e.device_features(), VERSION_1 | console::feature::SIZE);
    e.w32(reg::DEVICE_FEATURES_SEL, 2);
    assert_eq!(e.r32(reg::DEVICE_FEATURES), 0);
    // Queues: two of QueueNumMax 16, the others absent.
    for (q, max) in [(0, 16), (1, 16), (2, 0), (u32::MAX, 0)] {
        e.w32(reg::QUEUE_SEL, q);
        assert_eq!(e.r32(reg::QUEUE_NUM_MAX), max);
    }
    // No shared memory regions.
    assert_eq!(e.r32(reg::SHM_LEN_LOW), u32::MAX);
    assert_eq!(e.r32(reg::SHM_BASE_HIGH), u32::MAX);
    assert_eq!(e.r32(reg::CONFIG_GENERATION), 0);
    // Console config: cols, rows, max_nr_ports.
    assert_eq!(e.mmio_read(0x100, 2), Ok(80));
    assert_eq!(e.mmio_read(0x102, 2), Ok(25));
    assert_eq!(e.mmio_read(0x100, 4), Ok(80 | 25 << 16));
    assert_eq!(e.mmio_read(0x104, 4), Ok(1));
    assert_eq!(e.mmio_read(0x10b, 1), Ok(0));
    assert_eq!(e.mmio_read(0x10c, 1), Err(BusError::Refused));
    assert_eq!(e.mmio_read(0x108, 8), Err(BusError::Refused));
}

#[test]
fn register_widths_and_offsets() {
    let mut e = env();
    for size in [1u8, 2, 8] {
        assert_eq!(e.mmio_read(reg::MAGIC_VALUE, size), Err(BusError::Refused));
        assert_eq!(e.mmio_write(reg::STATUS, size, 1), Err(BusError::Refused));
    }
    assert_eq!(e.mmio_read(reg::MAGIC_VALUE + 2, 4), Err(BusError::Refused));
    assert_eq!(e.mmio_read(reg::STATUS + 1, 4), Err(BusError::Refused));
    // Undefined offsets (legacy registers included) are refused.
    for off in [0x018, 0x028, 0x03c, 0x040, 0x0f8] {
        assert_eq!(e.mmio_read(off, 4), Err(BusError::Refused), "{off:#x}");
        assert_eq!(e.mmio_write(off, 4, 0), Err(BusError::Refused), "{off:#x}");
    }
    // Write-only registers read as 0; read-only registers ignore writes.
    assert_eq!(e.mmio_read(reg::QUEUE_NOTIFY, 4), Ok(0));
    assert_eq!(e.mmio_write(reg::MAGIC_VALUE, 4, 0), Ok(IrqAction::None));
    assert_eq!(e.r32(reg::MAGIC_VALUE), MAGIC_VALUE);
    assert_eq!(e.r32(reg::STATUS), 0);
    assert!(e.t.stats().refused >= 16);
    assert_eq!(e.t.stats().ignored_writes, 1);
}

#[test]
fn status_handshake_order() {
    let mut e = env();
    // DRIVER before ACKNOWLEDGE: ignored.
    e.w32(reg::STATUS, DRV);
    assert_eq!(e.r32(reg::STATUS), 0);
    e.w32(reg::STATUS, ACK);
    assert_eq!(e.t.state(), DeviceState::Acknowledged);
    // Clearing a bit: ignored.
    e.w32(reg::STATUS, DRV);
    assert_eq!(e.r32(reg::STATUS), ACK);
    // Skipping FEATURES_OK: DRIVER is taken, DRIVER_OK is not.
    e.w32(reg::STATUS, ACK | DRV | DOK);
    assert_eq!(e.r32(reg::STATUS), ACK | DRV);
    assert_eq!(e.t.state(), DeviceState::Driver);
    // Writing back DEVICE_NEEDS_RESET (a device bit) is harmless.
    e.w32(
        reg::STATUS,
        ACK | DRV | u32::from(status::DEVICE_NEEDS_RESET),
    );
    assert_eq!(e.r32(reg::STATUS), ACK | DRV);
    // Undefined bits: ignored.
    e.w32(reg::STATUS, ACK | DRV | 16);
    assert_eq!(e.r32(reg::STATUS), ACK | DRV);
    // Features with VERSION_1, then several steps at once.
    e.w32(reg::DRIVER_FEATURES_SEL, 1);
    e.w32(reg::DRIVER_FEATURES, 1);
    e.w32(reg::STATUS, ACK | DRV | FOK | DOK);
    assert_eq!(e.r32(reg::STATUS), ACK | DRV | FOK | DOK);
    assert_eq!(e.t.state(), DeviceState::Live);
    assert_eq!(e.t.acked_features(), VERSION_1);
    // Features cannot change any more.
    e.w32(reg::DRIVER_FEATURES_SEL, 0);
    e.w32(reg::DRIVER_FEATURES, 1);
    assert_eq!(e.t.acked_features(), VERSION_1);
    // FAILED stops the device until reset.
    e.w32(
        reg::STATUS,
        ACK | DRV | FOK | DOK | u32::from(status::FAILED),
    );
    assert_eq!(e.t.state(), DeviceState::Failed);
    e.w32(reg::STATUS, 0);
    assert_eq!(e.t.state(), DeviceState::Reset);
    assert_eq!(e.r32(reg::STATUS), 0);
    assert_eq!(e.t.stats().resets, 1);
}

#[test]
fn feature_negotiation() {
    let mut e = env();
    let try_features = |e: &mut Env<ConsoleDevice<MemConsole>>, lo: u32, hi: u32, beyond: u32| {
        e.w32(reg::STATUS, 0);
        e.w32(reg::STATUS, ACK);
        e.w32(reg::STATUS, ACK | DRV);
        for (sel, v) in [(0, lo), (1, hi), (2, beyond)] {
            e.w32(reg::DRIVER_FEATURES_SEL, sel);
            e.w32(reg::DRIVER_FEATURES, v);
        }
        e.w32(reg::STATUS, ACK | DRV | FOK);
        e.r32(reg::STATUS) & FOK != 0
    };
    // Legacy driver (no VERSION_1): refused.
    assert!(!try_features(&mut e, 0, 0, 0));
    assert!(!try_features(&mut e, console::feature::SIZE as u32, 0, 0));
    // A feature the device does not offer: refused.
    assert!(!try_features(&mut e, INDIRECT_DESC as u32, 1, 0));
    assert!(!try_features(&mut e, 0, 1 | 2, 0));
    assert!(!try_features(&mut e, 0, 1, 1));
    assert_eq!(e.t.stats().features_refused, 5);
    // A subset with VERSION_1: taken, and DRIVER_OK then fails to apply before it.
    assert!(try_features(&mut e, console::feature::SIZE as u32, 1, 0));
    assert_eq!(e.t.acked_features(), VERSION_1 | console::feature::SIZE);
    assert!(try_features(&mut e, 0, 1, 0));
    assert_eq!(e.t.acked_features(), VERSION_1);
    // Without FEATURES_OK, DRIVER_OK is not accepted.
    assert!(!try_features(&mut e, 0, 0, 0));
    e.w32(reg::STATUS, ACK | DRV | DOK);
    assert_ne!(e.t.state(), DeviceState::Live);
}

#[test]
fn queue_setup_rules() {
    let mut e = env();
    // Before FEATURES_OK, queue registers are ignored.
    e.w32(reg::STATUS, ACK);
    e.w32(reg::QUEUE_SEL, 0);
    e.w32(reg::QUEUE_NUM, 8);
    assert_eq!(e.t.queues()[0].size(), 16);
    e.w32(reg::QUEUE_READY, 1);
    assert_eq!(e.r32(reg::QUEUE_READY), 0);
    assert!(e.init(VERSION_1, 8));
    assert_eq!(e.t.queues()[0].size(), 8);
    assert_eq!(e.r32(reg::QUEUE_READY), 1);
    // While ready, the layout does not change.
    e.w32(reg::QUEUE_SEL, 0);
    e.w32(reg::QUEUE_NUM, 4);
    e.w32(reg::QUEUE_DESC_LOW, 0x1234_0000);
    assert_eq!(e.t.queues()[0].size(), 8);
    assert_eq!(e.t.queues()[0].desc_table(), RAM_BASE);
    // Writes for an absent queue are ignored.
    e.w32(reg::QUEUE_SEL, 3);
    e.w32(reg::QUEUE_NUM, 4);
    e.w32(reg::QUEUE_READY, 1);
    assert_eq!(e.r32(reg::QUEUE_READY), 0);
    // 64-bit addresses from the two halves.
    e.w32(reg::QUEUE_SEL, 1);
    e.w32(reg::QUEUE_READY, 0);
    e.w32(reg::QUEUE_DEVICE_HIGH, 0x1);
    e.w32(reg::QUEUE_DEVICE_LOW, 0x2000);
    assert_eq!(e.t.queues()[1].used_ring(), 0x1_0000_2000);
    // Reset clears ready bits and interrupt status.
    e.w32(reg::STATUS, 0);
    assert!(e.t.queues().iter().all(|q| !q.ready()));
    assert_eq!(e.r32(reg::INTERRUPT_STATUS), 0);
}

#[test]
fn bad_queue_layout_needs_reset() {
    let cases: [(u64, u16, QueueError); 4] = [
        (
            reg::QUEUE_NUM,
            12,
            QueueError::BadSize { size: 12, max: 16 },
        ),
        (
            reg::QUEUE_NUM,
            32,
            QueueError::BadSize { size: 32, max: 16 },
        ),
        (
            reg::QUEUE_DESC_LOW,
            8,
            QueueError::Misaligned {
                area: Area::DescTable,
                addr: RAM_BASE + 8,
            },
        ),
        (
            reg::QUEUE_DEVICE_HIGH,
            1,
            QueueError::AreaOutOfRange {
                area: Area::UsedRing,
                addr: 0x1_0000_0000 | (RAM_BASE + 0x2000),
            },
        ),
    ];
    for (r, v, want) in cases {
        let mut e = env();
        e.w32(reg::STATUS, ACK);
        e.w32(reg::STATUS, ACK | DRV);
        e.w32(reg::DRIVER_FEATURES_SEL, 1);
        e.w32(reg::DRIVER_FEATURES, 1);
        e.w32(reg::STATUS, ACK | DRV | FOK);
        e.w32(reg::QUEUE_SEL, 0);
        e.w32(reg::QUEUE_NUM, 16);
        e.w32(reg::QUEUE_DESC_LOW, RAM_BASE as u32);
        e.w32(reg::QUEUE_DRIVER_LOW, (RAM_BASE + 0x1000) as u32);
        e.w32(reg::QUEUE_DEVICE_LOW, (RAM_BASE + 0x2000) as u32);
        let v = if r == reg::QUEUE_DESC_LOW {
            RAM_BASE as u32 + u32::from(v)
        } else {
            u32::from(v)
        };
        e.w32(r, v);
        assert_eq!(e.write_reg(reg::QUEUE_READY, 1), IrqAction::None);
        assert_eq!(e.r32(reg::QUEUE_READY), 0);
        assert_eq!(e.t.state(), DeviceState::NeedsReset);
        assert_eq!(
            e.t.error(),
            Some(DeviceError::Queue {
                queue: 0,
                error: want
            })
        );
        assert_ne!(
            e.r32(reg::STATUS) & u32::from(status::DEVICE_NEEDS_RESET),
            0
        );
        // DRIVER_OK on a device that needs a reset: the driver is told at once.
        assert_eq!(
            e.write_reg(
                reg::STATUS,
                ACK | DRV | FOK | DOK | u32::from(status::DEVICE_NEEDS_RESET)
            ),
            IrqAction::Raise
        );
        assert_eq!(e.r32(reg::INTERRUPT_STATUS), INT_CONFIG_CHANGE);
        assert_eq!(e.notify(0), IrqAction::None);
        assert_eq!(e.t.stats().dropped_notifies, 1);
        // A reset recovers.
        assert!(e.init(VERSION_1, 16));
        assert_eq!(e.t.state(), DeviceState::Live);
        assert_eq!(e.t.error(), None);
    }
}

#[test]
fn notifications_before_driver_ok_or_to_absent_queues_are_dropped() {
    let mut e = env();
    assert_eq!(e.notify(0), IrqAction::None);
    assert!(e.init(VERSION_1, 16));
    assert_eq!(e.notify(7), IrqAction::None);
    assert_eq!(e.write_reg(reg::QUEUE_NOTIFY, u32::MAX), IrqAction::None);
    assert_eq!(e.t.stats().dropped_notifies, 3);
}

#[test]
fn avail_index_jump_needs_reset_with_config_interrupt() {
    let mut e = env();
    assert!(e.init(VERSION_1, 16));
    let avail = e.vqs[1].avail;
    e.write_mem(avail + 2, &17u16.to_le_bytes());
    assert_eq!(e.notify(1), IrqAction::Raise);
    assert_eq!(e.t.state(), DeviceState::NeedsReset);
    assert_eq!(e.ack_irq(), INT_CONFIG_CHANGE);
    assert!(matches!(
        e.t.error(),
        Some(DeviceError::Queue {
            queue: 1,
            error: QueueError::AvailIndex { avail_idx: 17, .. }
        })
    ));
}

#[test]
fn config_change_notification() {
    let mut e = env();
    assert_eq!(e.t.config_changed(), IrqAction::None);
    assert_eq!(e.r32(reg::CONFIG_GENERATION), 1);
    assert!(e.init(VERSION_1, 16));
    assert_eq!(e.t.config_changed(), IrqAction::Raise);
    assert_eq!(e.r32(reg::CONFIG_GENERATION), 2);
    assert_eq!(e.ack_irq(), INT_CONFIG_CHANGE);
    assert!(!e.t.irq_level());
}

#[test]
fn driver_features_may_be_written_high_word_first() {
    // Virtio 1.2 §4.2.2: each DriverFeatures write sets the 32 bits DriverFeaturesSel selects;
    // nothing orders the two words.
    let mut e = env();
    e.w32(reg::STATUS, ACK);
    e.w32(reg::STATUS, ACK | DRV);
    e.w32(reg::DRIVER_FEATURES_SEL, 1);
    e.w32(reg::DRIVER_FEATURES, (VERSION_1 >> 32) as u32);
    e.w32(reg::DRIVER_FEATURES_SEL, 0);
    e.w32(reg::DRIVER_FEATURES, console::feature::SIZE as u32);
    e.w32(reg::STATUS, ACK | DRV | FOK);
    assert_eq!(e.r32(reg::STATUS), ACK | DRV | FOK);
    assert_eq!(e.t.acked_features(), VERSION_1 | console::feature::SIZE);
}

#[test]
fn ignored_queue_ready_writes_are_counted_one_each() {
    let mut e = env();
    let ignored = |e: &Env<ConsoleDevice<MemConsole>>| e.t.stats().ignored_writes;
    // Before FEATURES_OK.
    e.w32(reg::STATUS, ACK);
    e.w32(reg::QUEUE_SEL, 0);
    e.w32(reg::QUEUE_READY, 1);
    assert_eq!(ignored(&e), 1);
    assert!(e.init(VERSION_1, 16));
    let before = ignored(&e);
    // An absent queue.
    e.w32(reg::QUEUE_SEL, 2);
    e.w32(reg::QUEUE_READY, 1);
    assert_eq!(ignored(&e), before + 1);
    // A value other than 0 or 1.
    e.w32(reg::QUEUE_SEL, 0);
    e.w32(reg::QUEUE_READY, 2);
    assert_eq!(ignored(&e), before + 2);
    assert_eq!(e.r32(reg::QUEUE_READY), 1);
}

#[test]
fn needs_reset_is_counted_per_failure() {
    let mut e = env();
    assert!(e.init(VERSION_1, 16));
    let avail = e.vqs[1].avail;
    e.write_mem(avail + 2, &17u16.to_le_bytes());
    assert_eq!(e.notify(1), IrqAction::Raise);
    assert_eq!(e.t.stats().needs_reset, 1);
    // After a reset, the next failure is counted.
    assert!(e.init(VERSION_1, 16));
    let avail = e.vqs[0].avail;
    e.write_mem(avail + 2, &17u16.to_le_bytes());
    let _ = e.notify(0);
    assert_eq!(e.t.state(), DeviceState::NeedsReset);
    assert_eq!(e.t.stats().needs_reset, 2);
}

#[test]
fn a_driver_features_write_replaces_its_word() {
    // Each DriverFeatures write sets the selected 32 bits to the value written (§4.2.2): a
    // driver that writes a word again takes back what it had set there.
    let mut e = env();
    e.w32(reg::STATUS, ACK);
    e.w32(reg::STATUS, ACK | DRV);
    e.w32(reg::DRIVER_FEATURES_SEL, 0);
    e.w32(reg::DRIVER_FEATURES, console::feature::SIZE as u32);
    e.w32(reg::DRIVER_FEATURES_SEL, 1);
    e.w32(reg::DRIVER_FEATURES, (VERSION_1 >> 32) as u32);
    e.w32(reg::DRIVER_FEATURES_SEL, 0);
    e.w32(reg::DRIVER_FEATURES, 0);
    e.w32(reg::STATUS, ACK | DRV | FOK);
    assert_eq!(e.t.acked_features(), VERSION_1);
}

#[test]
fn ignored_status_and_feature_writes_are_counted_one_each() {
    let mut e = env();
    let ignored = |e: &Env<ConsoleDevice<MemConsole>>| e.t.stats().ignored_writes;
    // A value beyond the 8-bit Status field.
    e.w32(reg::STATUS, 0x100 | ACK);
    assert_eq!((e.r32(reg::STATUS), ignored(&e)), (0, 1));
    e.w32(reg::STATUS, ACK);
    // Clearing a bit, and an undefined bit.
    e.w32(reg::STATUS, DRV);
    assert_eq!((e.r32(reg::STATUS), ignored(&e)), (ACK, 2));
    e.w32(reg::STATUS, ACK | 0x10);
    assert_eq!((e.r32(reg::STATUS), ignored(&e)), (ACK, 3));
    // A step skipped: DRIVER is taken, DRIVER_OK (without FEATURES_OK) is not.
    e.w32(reg::STATUS, ACK | DRV | DOK);
    assert_eq!((e.r32(reg::STATUS), ignored(&e)), (ACK | DRV, 4));
    assert!(e.init(VERSION_1, 16));
    let before = ignored(&e);
    // DriverFeatures once the features are fixed.
    e.w32(reg::DRIVER_FEATURES_SEL, 0);
    e.w32(reg::DRIVER_FEATURES, console::feature::SIZE as u32);
    assert_eq!(ignored(&e), before + 1);
    assert_eq!(e.t.acked_features(), VERSION_1);
}

#[test]
fn the_accessors_show_the_registers() {
    let mut e = env();
    assert!(e.init(VERSION_1, 16));
    assert_eq!(u32::from(e.t.status()), ACK | DRV | FOK | DOK);
    assert_eq!(u32::from(e.t.status()), e.r32(reg::STATUS));
    assert_eq!(e.t.config_changed(), IrqAction::Raise);
    assert_eq!(e.t.interrupt_status(), INT_CONFIG_CHANGE);
    assert_eq!(e.t.interrupt_status(), e.r32(reg::INTERRUPT_STATUS));
    // FAILED is added to the bits already set (§2.1), and the device stops.
    let all = ACK | DRV | FOK | DOK | u32::from(status::FAILED);
    e.w32(reg::STATUS, all);
    assert_eq!(e.r32(reg::STATUS), all);
    assert_eq!(u32::from(e.t.status()), all);
    assert_eq!(e.t.state(), DeviceState::Failed);
}

#[test]
fn status_bits_set_after_needs_reset_read_back() {
    // A queue layout the device refuses sets DEVICE_NEEDS_RESET before DRIVER_OK; the driver's
    // DRIVER_OK is still added to Status (§2.1: the device keeps the bits the driver sets).
    let mut e = env();
    e.w32(reg::STATUS, ACK);
    e.w32(reg::STATUS, ACK | DRV);
    e.w32(reg::DRIVER_FEATURES_SEL, 1);
    e.w32(reg::DRIVER_FEATURES, 1);
    e.w32(reg::STATUS, ACK | DRV | FOK);
    e.w32(reg::QUEUE_SEL, 0);
    e.w32(reg::QUEUE_NUM, 3);
    e.w32(reg::QUEUE_READY, 1);
    let nr = u32::from(status::DEVICE_NEEDS_RESET);
    assert_eq!(e.r32(reg::STATUS), ACK | DRV | FOK | nr);
    // Writing back what it read changes nothing and raises nothing.
    assert_eq!(
        e.write_reg(reg::STATUS, ACK | DRV | FOK | nr),
        IrqAction::None
    );
    assert_eq!(e.r32(reg::INTERRUPT_STATUS), 0);
    e.w32(reg::STATUS, ACK | DRV | FOK | DOK);
    assert_eq!(e.r32(reg::STATUS), ACK | DRV | FOK | DOK | nr);
    assert_eq!(e.t.state(), DeviceState::NeedsReset);
}

#[test]
fn queue_reset_reads_as_zero_and_ignores_writes() {
    // QueueReset (§4.2.2) is defined; without VIRTIO_F_RING_RESET there is never a reset in
    // progress to report, and a write changes nothing.
    let mut e = env();
    assert!(e.init(VERSION_1, 16));
    e.w32(reg::QUEUE_SEL, 0);
    assert_eq!(e.mmio_read(reg::QUEUE_RESET, 4), Ok(0));
    let before = e.t.stats().ignored_writes;
    assert_eq!(e.mmio_write(reg::QUEUE_RESET, 4, 1), Ok(IrqAction::None));
    assert_eq!(e.t.stats().ignored_writes, before + 1);
    assert_eq!(e.r32(reg::QUEUE_READY), 1);
    assert_eq!(e.mmio_read(reg::QUEUE_RESET, 4), Ok(0));
}

#[test]
fn ignored_queue_layout_writes_and_notifications_are_counted_one_each() {
    let mut e = env();
    let ignored = |e: &Env<ConsoleDevice<MemConsole>>| e.t.stats().ignored_writes;
    // Before FEATURES_OK.
    e.w32(reg::QUEUE_SEL, 0);
    e.w32(reg::QUEUE_NUM, 8);
    assert_eq!(ignored(&e), 1);
    e.w32(reg::QUEUE_DESC_LOW, 0x1000);
    assert_eq!(ignored(&e), 2);
    assert!(e.init(VERSION_1, 16));
    let before = ignored(&e);
    // While the queue is ready.
    e.w32(reg::QUEUE_SEL, 1);
    e.w32(reg::QUEUE_DRIVER_LOW, 0x1000);
    assert_eq!(ignored(&e), before + 1);
    // Notifications that reach the device, one each.
    assert_eq!(e.t.stats().notifies, 0);
    let _ = e.notify(1);
    assert_eq!(e.t.stats().notifies, 1);
    let _ = e.notify(0);
    assert_eq!(e.t.stats().notifies, 2);
}
