//! virtio-net end to end: frames to and from the in-memory network port, backpressure, the
//! frame limits, two cards on a wire, the configuration space.

mod common;

use common::*;
use vmm_devices::feature::VERSION_1;
use vmm_devices::mmio::{CONFIG_OFFSET, DeviceState, INT_CONFIG_CHANGE, IrqAction, reg, status};
use vmm_devices::net::{
    ETH_HLEN, HDR_LEN, MAX_FRAME_LEN, NetConfig, NetEvent, RECEIVEQ, TRANSMITQ, feature,
};
use vmm_devices::testing::{NET_QUEUE_FRAMES, wire};

fn env() -> NetEnv {
    net_env(NetConfig::default(), 16)
}

/// A frame of `len` bytes: broadcast destination, a source, EtherType 0x88b5, then `pattern`.
fn frame(seed: u64, len: usize) -> Vec<u8> {
    let mut f = pattern(seed, len);
    if len >= ETH_HLEN {
        f[..6].fill(0xff);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
    }
    f
}

/// The header the device writes before a received frame: zero but `num_buffers = 1`.
fn rx_header() -> Vec<u8> {
    let mut h = vec![0u8; HDR_LEN];
    h[10] = 1;
    h
}

#[test]
fn transmit_goes_to_the_backend_in_order_whatever_the_segments() {
    let mut e = env();
    let f1 = frame(1, 60);
    let f2 = frame(2, MAX_FRAME_LEN);
    let f3 = frame(3, ETH_HLEN);
    let a = e.post_tx(&f1, &[]);
    // Header split across descriptors, header and frame sharing one.
    let b = e.post_tx(&f2, &[5, 7, 100, 1]);
    let c = e.post_tx(&f3, &[20]);
    assert_eq!(e.notify(TRANSMITQ), IrqAction::Raise);
    let be = e.t.device_mut().backend_mut();
    assert_eq!(be.take_sent().unwrap().as_slice(), &f1[..]);
    assert_eq!(be.take_sent().unwrap().as_slice(), &f2[..]);
    assert_eq!(be.take_sent().unwrap().as_slice(), &f3[..]);
    assert!(be.take_sent().is_none());
    for h in [a, b, c] {
        assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(h), 0)));
    }
    let st = *e.t.device().stats();
    assert_eq!((st.tx_frames, st.tx_bytes), (3, 60 + 1514 + 14));
}

#[test]
fn receive_fills_the_next_buffer_behind_a_header() {
    let mut e = env();
    let f = frame(7, 342);
    assert!(e.t.device_mut().backend_mut().push_rx(&f));
    // No buffer yet: the frame stays in the backend.
    assert_eq!(e.event(NetEvent::RxReady), IrqAction::None);
    assert_eq!(e.t.device().backend().rx_pending(), 1);
    let (head, segs) = e.post_rx(1526, &[HDR_LEN, 100]);
    assert_eq!(e.notify(RECEIVEQ), IrqAction::Raise);
    let n = HDR_LEN + f.len();
    assert_eq!(e.pop_used(RECEIVEQ), Some((u32::from(head), n as u32)));
    let got = e.gather(&segs, n);
    assert_eq!(&got[..HDR_LEN], &rx_header()[..]);
    assert_eq!(&got[HDR_LEN..], &f[..]);
    // Nothing beyond the used length was written.
    assert!(e.gather(&segs, 1526)[n..].iter().all(|&b| b == 0xee));
    let st = *e.t.device().stats();
    assert_eq!((st.rx_frames, st.rx_bytes), (1, 342));
}

#[test]
fn receive_waits_for_a_frame() {
    let mut e = env();
    let (head, _) = e.post_rx(1526, &[]);
    assert_eq!(e.notify(RECEIVEQ), IrqAction::None);
    assert_eq!(e.pop_used(RECEIVEQ), None);
    assert!(e.t.device_mut().backend_mut().push_rx(&frame(1, 64)));
    assert_eq!(e.event(NetEvent::RxReady), IrqAction::Raise);
    assert_eq!(
        e.pop_used(RECEIVEQ),
        Some((u32::from(head), (HDR_LEN + 64) as u32))
    );
}

#[test]
fn a_full_backend_holds_the_frame_until_tx_ready() {
    let mut e = env();
    e.t.device_mut().backend_mut().tx_room = 1;
    let f: Vec<_> = (0..3).map(|i| frame(i, 100 + i as usize)).collect();
    let heads: Vec<u16> = f.iter().map(|f| e.post_tx(f, &[])).collect();
    assert_eq!(e.notify(TRANSMITQ), IrqAction::Raise);
    assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(heads[0]), 0)));
    // The second waits in the device, its chain not returned; the third not even popped.
    assert_eq!(e.pop_used(TRANSMITQ), None);
    assert!(e.t.device().tx_waiting());
    assert_eq!(e.t.device().stats().tx_full, 1);
    // A kick while still full changes nothing.
    assert_eq!(e.notify(TRANSMITQ), IrqAction::None);
    assert_eq!(e.t.device().backend().sent_pending(), 1);
    e.t.device_mut().backend_mut().tx_room = usize::MAX;
    assert_eq!(e.event(NetEvent::TxReady), IrqAction::Raise);
    for h in &heads[1..] {
        assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(*h), 0)));
    }
    let be = e.t.device_mut().backend_mut();
    for f in &f {
        assert_eq!(be.take_sent().unwrap().as_slice(), &f[..]);
    }
    assert!(!e.t.device().tx_waiting());
}

#[test]
fn frame_limits_on_transmit() {
    let mut e = env();
    let runt = e.post_tx(&frame(1, ETH_HLEN - 1), &[]);
    let big = e.post_tx(&frame(2, MAX_FRAME_LEN + 1), &[]);
    let ok = e.post_tx(&frame(3, ETH_HLEN), &[]);
    let gso = {
        let segs = e.segments(&tx_bytes(&frame(4, 60), 1), &[], false);
        e.post(TRANSMITQ, &segs)
    };
    let no_frame = e.post_tx(&[], &[]);
    let _ = e.notify(TRANSMITQ);
    for h in [runt, big, ok, gso, no_frame] {
        assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(h), 0)));
    }
    let st = *e.t.device().stats();
    assert_eq!(
        (st.tx_runts, st.tx_oversized, st.tx_gso, st.tx_frames),
        (2, 1, 1, 1)
    );
    assert_eq!(e.t.device().backend().sent_pending(), 1);
    assert_eq!(e.t.state(), DeviceState::Live);
}

#[test]
fn a_frame_longer_than_the_buffer_is_dropped_and_the_next_one_delivered() {
    let mut e = env();
    let be = e.t.device_mut().backend_mut();
    assert!(be.push_rx(&frame(1, 1000)));
    assert!(be.push_rx(&frame(2, 100)));
    let (small, _) = e.post_rx(HDR_LEN + 999, &[]);
    let (fits, segs) = e.post_rx(HDR_LEN + 100, &[]);
    assert_eq!(e.notify(RECEIVEQ), IrqAction::Raise);
    assert_eq!(e.pop_used(RECEIVEQ), Some((u32::from(small), 0)));
    assert_eq!(
        e.pop_used(RECEIVEQ),
        Some((u32::from(fits), (HDR_LEN + 100) as u32))
    );
    assert_eq!(
        &e.gather(&segs, HDR_LEN + 100)[HDR_LEN..],
        &frame(2, 100)[..]
    );
    let st = *e.t.device().stats();
    assert_eq!((st.rx_too_long, st.rx_frames), (1, 1));
}

#[test]
fn a_buffer_too_short_for_the_header_keeps_the_frame_for_the_next() {
    let mut e = env();
    assert!(e.t.device_mut().backend_mut().push_rx(&frame(1, 60)));
    let (tiny, _) = e.post_rx(HDR_LEN - 1, &[]);
    let (good, _) = e.post_rx(1526, &[]);
    let _ = e.notify(RECEIVEQ);
    assert_eq!(e.pop_used(RECEIVEQ), Some((u32::from(tiny), 0)));
    assert_eq!(
        e.pop_used(RECEIVEQ),
        Some((u32::from(good), (HDR_LEN + 60) as u32))
    );
    assert_eq!(e.t.device().stats().bad_chains, 1);
}

#[test]
fn bad_backend_lengths_are_dropped() {
    let mut e = env();
    let be = e.t.device_mut().backend_mut();
    assert!(be.push_rx(&frame(1, 60)));
    assert!(be.push_rx(&frame(2, 61)));
    be.bad_rx_len = Some(MAX_FRAME_LEN + 1);
    let (head, segs) = e.post_rx(1526, &[]);
    let _ = e.notify(RECEIVEQ);
    assert_eq!(
        e.pop_used(RECEIVEQ),
        Some((u32::from(head), (HDR_LEN + 61) as u32))
    );
    assert_eq!(&e.gather(&segs, HDR_LEN + 61)[HDR_LEN..], &frame(2, 61)[..]);
    assert_eq!(e.t.device().stats().rx_bad_frames, 1);
    // Too short for an Ethernet header, too.
    let be = e.t.device_mut().backend_mut();
    assert!(be.push_rx(&frame(3, 60)));
    be.bad_rx_len = Some(ETH_HLEN - 1);
    let _ = e.post_rx(1526, &[]);
    let _ = e.notify(RECEIVEQ);
    assert_eq!(e.pop_used(RECEIVEQ), None);
    assert_eq!(e.t.device().stats().rx_bad_frames, 2);
}

#[test]
fn two_cards_on_a_wire() {
    let mut a = env();
    let mut b = net_env(
        NetConfig {
            mac: [2, 0, 0, 0, 0, 2],
            ..NetConfig::default()
        },
        16,
    );
    let (rb, segs_b) = b.post_rx(1526, &[]);
    let (ra, segs_a) = a.post_rx(1526, &[]);
    let fa = frame(10, 98);
    let fb = frame(11, 1514);
    a.post_tx(&fa, &[]);
    b.post_tx(&fb, &[3, 9]);
    let _ = a.notify(TRANSMITQ);
    let _ = b.notify(TRANSMITQ);
    let moved = wire(
        a.t.device_mut().backend_mut(),
        b.t.device_mut().backend_mut(),
    );
    assert_eq!(moved, (1, 1));
    assert_eq!(a.event(NetEvent::RxReady), IrqAction::Raise);
    assert_eq!(b.event(NetEvent::RxReady), IrqAction::Raise);
    assert_eq!(
        b.pop_used(RECEIVEQ),
        Some((u32::from(rb), (HDR_LEN + 98) as u32))
    );
    assert_eq!(
        a.pop_used(RECEIVEQ),
        Some((u32::from(ra), (HDR_LEN + 1514) as u32))
    );
    assert_eq!(&b.gather(&segs_b, HDR_LEN + 98)[HDR_LEN..], &fa[..]);
    assert_eq!(&a.gather(&segs_a, HDR_LEN + 1514)[HDR_LEN..], &fb[..]);
}

#[test]
fn the_wire_keeps_what_does_not_fit() {
    let mut a = env();
    let mut b = env();
    let n = NET_QUEUE_FRAMES + 3;
    for i in 0..NET_QUEUE_FRAMES {
        a.post_tx(&frame(i as u64, 60), &[]);
    }
    let _ = a.notify(TRANSMITQ);
    for i in NET_QUEUE_FRAMES..n {
        // The first batch returned its descriptors.
        while a.pop_used(TRANSMITQ).is_some() {}
        a.post_tx(&frame(i as u64, 60), &[]);
    }
    let _ = a.notify(TRANSMITQ);
    // The port's sent queue holds NET_QUEUE_FRAMES: the rest waits in the device.
    assert!(a.t.device().tx_waiting());
    let (ab, _) = wire(
        a.t.device_mut().backend_mut(),
        b.t.device_mut().backend_mut(),
    );
    assert_eq!(ab, NET_QUEUE_FRAMES);
    let _ = a.event(NetEvent::TxReady);
    assert!(!a.t.device().tx_waiting());
    assert_eq!(a.t.device().backend().sent_pending(), 3);
    let mut got = Vec::new();
    for round in 0..2 {
        for _ in 0..NET_QUEUE_FRAMES {
            let _ = b.post_rx(1526, &[]);
        }
        let _ = b.notify(RECEIVEQ);
        while let Some((_, len)) = b.pop_used(RECEIVEQ) {
            got.push(len);
        }
        if round == 0 {
            wire(
                a.t.device_mut().backend_mut(),
                b.t.device_mut().backend_mut(),
            );
            let _ = b.event(NetEvent::RxReady);
            while let Some((_, len)) = b.pop_used(RECEIVEQ) {
                got.push(len);
            }
        }
    }
    assert_eq!(got.len(), n);
    assert_eq!(b.t.device().stats().rx_frames, n as u64);
}

#[test]
fn reset_forgets_a_waiting_frame() {
    let mut e = env();
    e.t.device_mut().backend_mut().tx_room = 0;
    e.post_tx(&frame(1, 60), &[]);
    let _ = e.notify(TRANSMITQ);
    assert!(e.t.device().tx_waiting());
    e.w32(reg::STATUS, 0);
    assert!(!e.t.device().tx_waiting());
    assert_eq!(e.t.device().acked_features(), 0);
    assert!(e.init(u64::MAX, 16));
    e.t.device_mut().backend_mut().tx_room = usize::MAX;
    let f = frame(2, 70);
    e.post_tx(&f, &[]);
    let _ = e.notify(TRANSMITQ);
    let be = e.t.device_mut().backend_mut();
    assert_eq!(be.take_sent().unwrap().as_slice(), &f[..]);
    assert!(be.take_sent().is_none());
}

#[test]
fn features_and_configuration_space() {
    let mut e = env();
    let offered = e.device_features();
    assert_eq!(offered, VERSION_1 | feature::MAC | feature::STATUS);
    assert_eq!(e.t.acked_features(), offered);
    let mut cfg = Vec::new();
    for i in 0..8 {
        cfg.push(e.mmio_read(CONFIG_OFFSET + i, 1).unwrap() as u8);
    }
    assert_eq!(cfg, [0x02, 0, 0, 0, 0, 0x01, 1, 0]);
    assert_eq!(e.mmio_read(CONFIG_OFFSET + 6, 2).unwrap(), 1);
    // Out of bounds: refused; writes inside: ignored.
    assert!(e.mmio_read(CONFIG_OFFSET + 8, 1).is_err());
    assert!(e.mmio_read(CONFIG_OFFSET + 4, 8).is_err());
    assert!(e.mmio_write(CONFIG_OFFSET, 4, 0xdead_beef).is_ok());
    assert_eq!(e.mmio_read(CONFIG_OFFSET, 4).unwrap(), 0x0000_0002);
    // The link goes down: the status bit clears and the driver hears of it.
    e.t.device_mut().set_link_up(false);
    assert_eq!(e.t.config_changed(), IrqAction::Raise);
    assert_eq!(
        e.t.interrupt_status() & INT_CONFIG_CHANGE,
        INT_CONFIG_CHANGE
    );
    assert_eq!(e.mmio_read(CONFIG_OFFSET + 6, 2).unwrap(), 0);
    assert_eq!(e.r32(reg::DEVICE_ID), 1);
}

#[test]
fn without_link_status_the_feature_is_not_offered() {
    let mut e = net_env(
        NetConfig {
            link_status: false,
            mac: [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
            queue_size: 8,
        },
        8,
    );
    assert_eq!(e.device_features(), VERSION_1 | feature::MAC);
    assert_eq!(e.mmio_read(CONFIG_OFFSET, 4).unwrap(), 0xddcc_bbaa);
    assert_eq!(e.mmio_read(CONFIG_OFFSET + 4, 4).unwrap(), 0x0000_ffee);
    e.w32(reg::QUEUE_SEL, 1);
    assert_eq!(e.r32(reg::QUEUE_NUM_MAX), 8);
    e.w32(reg::QUEUE_SEL, 2);
    assert_eq!(e.r32(reg::QUEUE_NUM_MAX), 0);
}

#[test]
fn bad_queue_sizes_are_refused() {
    use vmm_devices::net::{NetConfigError, NetDevice};
    use vmm_devices::testing::MemNet;
    for qs in [0u16, 3, 65535] {
        let r = NetDevice::new(
            MemNet::default(),
            NetConfig {
                queue_size: qs,
                ..NetConfig::default()
            },
        );
        assert_eq!(r.err(), Some(NetConfigError::QueueSize), "{qs}");
    }
}

#[test]
fn a_driver_that_does_not_take_version_1_is_refused() {
    let mut e = env();
    assert!(!e.init(feature::MAC, 16));
    assert_eq!(
        e.r32(reg::STATUS) & u32::from(status::FEATURES_OK),
        0,
        "FEATURES_OK refused"
    );
}

#[test]
fn no_interrupt_when_the_driver_asks_for_none() {
    let mut e = env();
    let avail = e.vqs[TRANSMITQ as usize].avail;
    e.write_mem(avail, &1u16.to_le_bytes());
    e.post_tx(&frame(1, 60), &[]);
    assert_eq!(e.notify(TRANSMITQ), IrqAction::None);
    assert!(e.pop_used(TRANSMITQ).is_some());
}
