//! virtio-console end to end: transmit to and receive from the in-memory console backend.

mod common;

use common::*;
use vmm_devices::console::feature::SIZE;
use vmm_devices::console::{ConsoleConfig, ConsoleDevice, ConsoleEvent, RECEIVEQ, TRANSMITQ};
use vmm_devices::feature::VERSION_1;
use vmm_devices::mmio::{DeviceState, IrqAction, reg, status};
use vmm_devices::testing::MemConsole;

type ConEnv = Env<ConsoleDevice<MemConsole>>;

fn env() -> ConEnv {
    let dev = ConsoleDevice::new(MemConsole::default(), ConsoleConfig::default()).unwrap();
    let mut e = Env::new(dev, 1 << 20);
    assert!(e.init(VERSION_1, 16));
    e
}

fn tx(e: &mut ConEnv, parts: &[&[u8]]) -> u16 {
    let segs: Vec<Seg> = parts
        .iter()
        .map(|p| {
            let a = e.alloc(p.len());
            e.write_mem(a, p);
            Seg {
                addr: a,
                len: p.len() as u32,
                write: false,
            }
        })
        .collect();
    e.post(TRANSMITQ, &segs)
}

fn rx_buf(e: &mut ConEnv, lens: &[u32]) -> (u16, Vec<Seg>) {
    let segs: Vec<Seg> = lens
        .iter()
        .map(|&l| Seg {
            addr: e.alloc(l as usize),
            len: l,
            write: true,
        })
        .collect();
    (e.post(RECEIVEQ, &segs), segs)
}

#[test]
fn transmit_goes_to_the_backend_in_order() {
    let mut e = env();
    let a = tx(&mut e, &[b"hello, "]);
    let b = tx(&mut e, &[b"wor", b"ld", b"\n"]);
    assert_eq!(e.notify(TRANSMITQ), IrqAction::Raise);
    assert_eq!(e.t.device().backend().sent(), b"hello, world\n");
    assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(a), 0)));
    assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(b), 0)));
    assert_eq!(e.t.device().stats().tx_bytes, 13);
}

#[test]
fn transmit_backpressure_resumes_on_tx_ready() {
    let mut e = env();
    e.t.device_mut().backend_mut().tx_room = 5;
    let long: Vec<u8> = (0..200u8).collect();
    let a = tx(&mut e, &[&long]);
    let b = tx(&mut e, &[b"tail"]);
    assert_eq!(e.notify(TRANSMITQ), IrqAction::None);
    assert_eq!(e.t.device().backend().sent(), &long[..5]);
    assert_eq!(e.pop_used(TRANSMITQ), None);
    // Still full: nothing moves.
    assert_eq!(e.event(ConsoleEvent::TxReady), IrqAction::None);
    e.t.device_mut().backend_mut().tx_room = 100;
    assert_eq!(e.event(ConsoleEvent::TxReady), IrqAction::None);
    assert_eq!(e.t.device().backend().sent(), &long[..105]);
    e.t.device_mut().backend_mut().tx_room = usize::MAX;
    assert_eq!(e.event(ConsoleEvent::TxReady), IrqAction::Raise);
    let mut want = long.clone();
    want.extend_from_slice(b"tail");
    assert_eq!(e.t.device().backend().sent(), &want[..]);
    assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(a), 0)));
    assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(b), 0)));
}

#[test]
fn receive_waits_for_buffers_and_for_bytes() {
    let mut e = env();
    // Bytes before any buffer: kept by the backend.
    e.t.device_mut().backend_mut().push_rx(b"abc");
    assert_eq!(e.event(ConsoleEvent::RxReady), IrqAction::None);
    assert_eq!(e.t.device().backend().rx_pending(), 3);
    // A buffer is posted: filled on the notification.
    let (h, segs) = rx_buf(&mut e, &[8]);
    assert_eq!(e.notify(RECEIVEQ), IrqAction::Raise);
    assert_eq!(e.pop_used(RECEIVEQ), Some((u32::from(h), 3)));
    assert_eq!(e.read_mem(segs[0].addr, 3), b"abc");
    // Buffers first, bytes later.
    let (h1, s1) = rx_buf(&mut e, &[2, 3]);
    let (h2, s2) = rx_buf(&mut e, &[64]);
    assert_eq!(e.notify(RECEIVEQ), IrqAction::None);
    let msg: Vec<u8> = (0..100u8).collect();
    e.t.device_mut().backend_mut().push_rx(&msg);
    assert_eq!(e.event(ConsoleEvent::RxReady), IrqAction::Raise);
    assert_eq!(e.pop_used(RECEIVEQ), Some((u32::from(h1), 5)));
    assert_eq!(e.pop_used(RECEIVEQ), Some((u32::from(h2), 64)));
    let mut got = e.read_mem(s1[0].addr, 2);
    got.extend(e.read_mem(s1[1].addr, 3));
    got.extend(e.read_mem(s2[0].addr, 64));
    assert_eq!(got, &msg[..69]);
    // The rest arrives when more buffers come.
    let (h3, s3) = rx_buf(&mut e, &[64]);
    assert_eq!(e.notify(RECEIVEQ), IrqAction::Raise);
    assert_eq!(e.pop_used(RECEIVEQ), Some((u32::from(h3), 31)));
    assert_eq!(e.read_mem(s3[0].addr, 31), &msg[69..]);
    assert_eq!(e.t.device().stats().rx_bytes, 103);
}

#[test]
fn bad_chains_are_returned_unused() {
    let mut e = env();
    // A transmit chain with a writable buffer, a receive chain with a readable one.
    let a = e.alloc(4);
    let h = e.post(
        TRANSMITQ,
        &[
            Seg {
                addr: a,
                len: 4,
                write: false,
            },
            Seg {
                addr: a,
                len: 4,
                write: true,
            },
        ],
    );
    assert_eq!(e.notify(TRANSMITQ), IrqAction::Raise);
    assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(h), 0)));
    assert!(e.t.device().backend().sent().is_empty());
    let h = e.post(
        RECEIVEQ,
        &[Seg {
            addr: a,
            len: 4,
            write: false,
        }],
    );
    e.t.device_mut().backend_mut().push_rx(b"x");
    assert_eq!(e.notify(RECEIVEQ), IrqAction::Raise);
    assert_eq!(e.pop_used(RECEIVEQ), Some((u32::from(h), 0)));
    // Outside guest RAM.
    let h = e.post(
        TRANSMITQ,
        &[Seg {
            addr: 0x10,
            len: 4,
            write: false,
        }],
    );
    let _ = e.notify(TRANSMITQ);
    assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(h), 0)));
    assert_eq!(e.t.device().stats().bad_chains, 3);
    assert_eq!(e.t.state(), DeviceState::Live);
    // The byte is still delivered to a good buffer.
    let (h, s) = rx_buf(&mut e, &[4]);
    let _ = e.notify(RECEIVEQ);
    assert_eq!(e.pop_used(RECEIVEQ), Some((u32::from(h), 1)));
    assert_eq!(e.read_mem(s[0].addr, 1), b"x");
}

#[test]
fn events_before_driver_ok_touch_nothing() {
    let dev = ConsoleDevice::new(MemConsole::default(), ConsoleConfig::default()).unwrap();
    let mut e = Env::new(dev, 1 << 20);
    e.t.device_mut().backend_mut().push_rx(b"early");
    assert_eq!(e.event(ConsoleEvent::RxReady), IrqAction::None);
    assert_eq!(e.t.device().backend().rx_pending(), 5);
    assert!(e.init(VERSION_1, 16));
    let (h, s) = rx_buf(&mut e, &[16]);
    assert_eq!(e.notify(RECEIVEQ), IrqAction::Raise);
    assert_eq!(e.pop_used(RECEIVEQ), Some((u32::from(h), 5)));
    assert_eq!(e.read_mem(s[0].addr, 5), b"early");
}

#[test]
fn buffers_posted_before_driver_ok_are_served_at_driver_ok() {
    // Virtio 1.2 §3.1.1: the driver may populate its virtqueues before it sets DRIVER_OK, and
    // notifies only after; the device starts on what is already there.
    let config = ConsoleConfig {
        size: Some((80, 25)),
        queue_size: 16,
    };
    let dev = ConsoleDevice::new(MemConsole::default(), config).unwrap();
    let mut e = Env::new(dev, 1 << 20);
    e.t.device_mut().backend_mut().push_rx(b"in");
    let s = u32::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    e.w32(reg::STATUS, u32::from(status::ACKNOWLEDGE));
    e.w32(reg::STATUS, u32::from(status::ACKNOWLEDGE | status::DRIVER));
    e.w32(reg::DRIVER_FEATURES_SEL, 0);
    e.w32(reg::DRIVER_FEATURES, SIZE as u32);
    e.w32(reg::DRIVER_FEATURES_SEL, 1);
    e.w32(reg::DRIVER_FEATURES, (VERSION_1 >> 32) as u32);
    e.w32(reg::STATUS, s);
    e.setup_queue(RECEIVEQ, 16);
    e.setup_queue(TRANSMITQ, 16);
    let t = tx(&mut e, &[b"out"]);
    let (h, segs) = rx_buf(&mut e, &[8]);
    assert_eq!(e.t.device().acked_features(), 0, "not live yet");
    assert_eq!(
        e.write_reg(reg::STATUS, s | u32::from(status::DRIVER_OK)),
        IrqAction::Raise
    );
    assert_eq!(e.t.device().acked_features(), VERSION_1 | SIZE);
    assert_eq!(e.t.device().backend().sent(), b"out");
    assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(t), 0)));
    assert_eq!(e.pop_used(RECEIVEQ), Some((u32::from(h), 2)));
    assert_eq!(e.read_mem(segs[0].addr, 2), b"in");
    // A reset forgets the negotiated features.
    e.w32(reg::STATUS, 0);
    assert_eq!(e.t.device().acked_features(), 0);
}

#[test]
fn a_guest_handing_buffers_back_at_once_cannot_hold_the_device() {
    // A driver on another core may make each chain available again as soon as it is used: one
    // notification still takes at most a queue's worth of chains (16 here), and what is left
    // waits for the next one.
    let mut e = env();
    tx(&mut e, &[b"abc"]);
    let (a, reposted) = e.notify_recycling(TRANSMITQ);
    assert_eq!(a, IrqAction::Raise);
    let sent = e.t.device().backend().sent().len();
    assert!(sent > 0 && sent <= 16 * 3, "{sent} bytes in one pass");
    assert_eq!(sent, 3 * reposted);
    let _ = e.notify(TRANSMITQ);
    assert_eq!(e.t.device().backend().sent().len(), sent + 3);

    // The same on the receive side, one byte per buffer.
    let msg: Vec<u8> = (0..100u8).collect();
    e.t.device_mut().backend_mut().push_rx(&msg);
    rx_buf(&mut e, &[1]);
    let (a, _) = e.notify_recycling(RECEIVEQ);
    assert_eq!(a, IrqAction::Raise);
    let got = e.t.device().stats().rx_bytes;
    assert!(got > 0 && got <= 16, "{got} bytes in one pass");
    // The rest follows into the buffer left available and a larger one, nothing lost.
    let (_, big) = rx_buf(&mut e, &[128]);
    let _ = e.notify(RECEIVEQ);
    assert_eq!(e.t.device().stats().rx_bytes, 100);
    let rest = 100 - got as usize - 1;
    assert_eq!(e.read_mem(big[0].addr, rest), &msg[100 - rest..]);
}

#[test]
fn config_space_is_read_only_and_bounded() {
    // §5.3.4: cols, rows, max_nr_ports, emerg_wr (12 bytes). Without VIRTIO_CONSOLE_F_EMERG_WRITE
    // nothing is writable: writes inside are ignored, writes beyond it refused.
    let mut e = env();
    assert_eq!(e.mmio_read(0x104, 4), Ok(1));
    assert!(e.mmio_write(0x104, 4, 5).is_ok());
    assert!(e.mmio_write(0x108, 4, 5).is_ok());
    assert_eq!(e.mmio_read(0x104, 4), Ok(1));
    assert_eq!(e.mmio_read(0x108, 4), Ok(0));
    assert!(e.mmio_write(0x10c, 1, 0).is_err());
    assert!(e.mmio_write(0x10a, 4, 0).is_err());
}
