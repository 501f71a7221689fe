//! virtio-net under a hostile driver: chains too short, in the wrong direction, outside guest
//! RAM, with INDIRECT or zero-length descriptors, too long, looping; head indices and available
//! indices out of range; and fully random descriptor tables and rings. Bad chains come back
//! unused and counted, a broken queue puts the device into DEVICE_NEEDS_RESET, nothing panics,
//! and after a reset the device works again.

mod common;

use common::*;
use proptest::prelude::*;
use vmm_devices::mmio::{DeviceState, IrqAction, reg, status};
use vmm_devices::net::{
    ETH_HLEN, HDR_LEN, MAX_CHAIN, MAX_FRAME_LEN, NetBackend, NetConfig, NetEvent, RECEIVEQ,
    TRANSMITQ,
};
use vmm_devices::queue::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, Descriptor, QueueError};

const QSIZE: u16 = 16;

fn env() -> NetEnv {
    net_env(NetConfig::default(), QSIZE)
}

fn frame(seed: u64, len: usize) -> Vec<u8> {
    pattern(seed, len)
}

/// Writes `descs` at their indices in queue `q`'s table and publishes `head` (bypassing the
/// test driver's bookkeeping).
fn raw_post(e: &mut NetEnv, q: u16, descs: &[(u16, Descriptor)], head: u16) {
    let (table, avail, size, idx) = {
        let vq = &e.vqs[q as usize];
        (vq.desc, vq.avail, vq.size, vq.avail_idx)
    };
    for (i, d) in descs {
        e.write_mem(table + 16 * u64::from(*i), &d.to_bytes());
    }
    e.write_mem(avail + 4 + 2 * u64::from(idx % size), &head.to_le_bytes());
    let idx = idx.wrapping_add(1);
    e.vqs[q as usize].avail_idx = idx;
    e.write_mem(avail + 2, &idx.to_le_bytes());
}

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> Descriptor {
    Descriptor {
        addr,
        len,
        flags,
        next,
    }
}

/// A transmit buffer (header and a valid frame) in guest RAM: its address and length.
fn tx_buffer(e: &mut NetEnv) -> (u64, u32) {
    let b = tx_bytes(&frame(1, 60), 0);
    let a = e.alloc(b.len());
    e.write_mem(a, &b);
    (a, b.len() as u32)
}

/// The device returned `head` unused on `q`, counted one more bad chain, and is still live.
fn returned_unused(e: &mut NetEnv, q: u16, head: u16, bad_before: u64) {
    assert_eq!(e.pop_used(q), Some((u32::from(head), 0)));
    assert_eq!(e.t.device().stats().bad_chains, bad_before + 1);
    assert_eq!(e.t.state(), DeviceState::Live);
}

#[test]
fn a_transmit_chain_with_a_device_writable_buffer_is_not_sent() {
    let mut e = env();
    let (a, len) = tx_buffer(&mut e);
    let w = e.alloc(64);
    raw_post(
        &mut e,
        TRANSMITQ,
        &[
            (0, desc(a, len, DESC_F_NEXT, 1)),
            (1, desc(w, 64, DESC_F_WRITE, 0)),
        ],
        0,
    );
    let _ = e.notify(TRANSMITQ);
    returned_unused(&mut e, TRANSMITQ, 0, 0);
    assert_eq!(e.t.device().backend().sent_pending(), 0);
    // Write-only alone: no header to read either.
    raw_post(&mut e, TRANSMITQ, &[(2, desc(w, 64, DESC_F_WRITE, 0))], 2);
    let _ = e.notify(TRANSMITQ);
    returned_unused(&mut e, TRANSMITQ, 2, 1);
}

#[test]
fn a_transmit_chain_shorter_than_the_header_is_not_sent() {
    let mut e = env();
    let a = e.alloc(16);
    raw_post(
        &mut e,
        TRANSMITQ,
        &[(0, desc(a, HDR_LEN as u32 - 1, 0, 0))],
        0,
    );
    let _ = e.notify(TRANSMITQ);
    returned_unused(&mut e, TRANSMITQ, 0, 0);
}

#[test]
fn a_receive_chain_with_a_device_readable_buffer_is_not_filled() {
    let mut e = env();
    assert!(e.t.device_mut().backend_mut().push_rx(&frame(2, 60)));
    let r = e.alloc(16);
    let w = e.alloc(1600);
    raw_post(
        &mut e,
        RECEIVEQ,
        &[
            (0, desc(r, 16, DESC_F_NEXT, 1)),
            (1, desc(w, 1600, DESC_F_WRITE, 0)),
        ],
        0,
    );
    let _ = e.notify(RECEIVEQ);
    returned_unused(&mut e, RECEIVEQ, 0, 0);
    assert_eq!(e.read_mem(w, 4), [0, 0, 0, 0], "nothing written");
    // The frame waits for a good buffer.
    let (h, segs) = e.post_rx(1526, &[]);
    let _ = e.notify(RECEIVEQ);
    assert_eq!(
        e.pop_used(RECEIVEQ),
        Some((u32::from(h), (HDR_LEN + 60) as u32))
    );
    assert_eq!(&e.gather(&segs, HDR_LEN + 60)[HDR_LEN..], &frame(2, 60)[..]);
}

#[test]
fn buffers_outside_guest_ram_are_bad_chains() {
    let mut e = env();
    let end = e.ram_end();
    let (a, len) = tx_buffer(&mut e);
    // Straddling the end of RAM, entirely beyond it, wrapping the address space.
    let cases = [
        desc(end - 8, len, 0, 0),
        desc(end + 0x1000, len, 0, 0),
        desc(u64::MAX - 4, len, 0, 0),
        desc(0, len, 0, 0),
    ];
    for (i, d) in cases.into_iter().enumerate() {
        raw_post(&mut e, TRANSMITQ, &[(i as u16, d)], i as u16);
        let _ = e.notify(TRANSMITQ);
        returned_unused(&mut e, TRANSMITQ, i as u16, i as u64);
    }
    // Receive side: frame stays.
    assert!(e.t.device_mut().backend_mut().push_rx(&frame(3, 60)));
    raw_post(
        &mut e,
        RECEIVEQ,
        &[(0, desc(end - 100, 1526, DESC_F_WRITE, 0))],
        0,
    );
    let _ = e.notify(RECEIVEQ);
    returned_unused(&mut e, RECEIVEQ, 0, 4);
    assert_eq!(e.t.device().backend().sent_pending(), 0);
    // The good buffer still goes through.
    raw_post(&mut e, TRANSMITQ, &[(9, desc(a, len, 0, 0))], 9);
    let _ = e.notify(TRANSMITQ);
    assert_eq!(e.pop_used(TRANSMITQ), Some((9, 0)));
    assert_eq!(e.t.device().backend().sent_pending(), 1);
}

#[test]
fn zero_length_indirect_and_too_long_chains_are_bad() {
    // Room in the table for a chain longer than the device takes.
    let mut e = net_env(NetConfig::default(), 32);
    let (a, len) = tx_buffer(&mut e);
    raw_post(&mut e, TRANSMITQ, &[(0, desc(a, 0, 0, 0))], 0);
    raw_post(
        &mut e,
        TRANSMITQ,
        &[(1, desc(a, len, DESC_F_INDIRECT, 0))],
        1,
    );
    // MAX_CHAIN + 1 descriptors of one byte each after the whole buffer.
    let n = MAX_CHAIN as u16 + 1;
    let mut long = vec![(2, desc(a, len, DESC_F_NEXT, 3))];
    for i in 3..2 + n {
        let last = i == 1 + n;
        long.push((i, desc(a, 1, if last { 0 } else { DESC_F_NEXT }, i + 1)));
    }
    raw_post(&mut e, TRANSMITQ, &long, 2);
    let _ = e.notify(TRANSMITQ);
    for h in [0u16, 1, 2] {
        assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(h), 0)));
    }
    assert_eq!(e.t.device().stats().bad_chains, 3);
    assert_eq!(e.t.device().backend().sent_pending(), 0);
    assert_eq!(e.t.state(), DeviceState::Live);
}

#[test]
fn oversized_and_runt_frames_across_descriptors_are_dropped() {
    let mut e = env();
    let big = tx_bytes(&frame(4, MAX_FRAME_LEN + 1), 0);
    let segs = e.segments(&big, &[HDR_LEN, 700, 700], false);
    let h1 = e.post(TRANSMITQ, &segs);
    let runt = tx_bytes(&frame(5, ETH_HLEN - 1), 0);
    let segs = e.segments(&runt, &[3, 3], false);
    let h2 = e.post(TRANSMITQ, &segs);
    let _ = e.notify(TRANSMITQ);
    assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(h1), 0)));
    assert_eq!(e.pop_used(TRANSMITQ), Some((u32::from(h2), 0)));
    let st = *e.t.device().stats();
    assert_eq!((st.tx_oversized, st.tx_runts, st.tx_frames), (1, 1, 0));
}

/// Resets the device from NEEDS_RESET and checks a frame goes through both ways again.
fn works_after_reset(e: &mut NetEnv) {
    e.w32(reg::STATUS, 0);
    assert_eq!(e.t.state(), DeviceState::Reset);
    assert!(e.init(u64::MAX, QSIZE));
    while e.t.device_mut().backend_mut().take_sent().is_some() {}
    let f = frame(9, 80);
    e.post_tx(&f, &[]);
    let _ = e.notify(TRANSMITQ);
    assert_eq!(
        e.t.device_mut()
            .backend_mut()
            .take_sent()
            .unwrap()
            .as_slice(),
        &f[..]
    );
    // Empty the backend; the device may still hold a frame from before the reset, which goes
    // into the first buffer.
    let mut buf = [0u8; MAX_FRAME_LEN];
    while e.t.device_mut().backend_mut().receive(&mut buf).is_some() {}
    assert!(e.t.device_mut().backend_mut().push_rx(&f));
    let (h1, s1) = e.post_rx(1526, &[]);
    let (_, s2) = e.post_rx(1526, &[]);
    assert_eq!(e.event(NetEvent::RxReady), IrqAction::Raise);
    let mut last = None;
    while let Some(u) = e.pop_used(RECEIVEQ) {
        last = Some(u);
    }
    let (id, len) = last.expect("a buffer filled");
    assert_eq!(len, (HDR_LEN + 80) as u32);
    let segs = if id == u32::from(h1) { s1 } else { s2 };
    assert_eq!(&e.gather(&segs, HDR_LEN + 80)[HDR_LEN..], &f[..]);
    assert_eq!(e.t.state(), DeviceState::Live);
}

#[test]
fn a_looping_chain_needs_reset() {
    let mut e = env();
    let (a, len) = tx_buffer(&mut e);
    raw_post(
        &mut e,
        TRANSMITQ,
        &[
            (0, desc(a, len, DESC_F_NEXT, 1)),
            (1, desc(a, 4, DESC_F_NEXT, 0)),
        ],
        0,
    );
    assert_eq!(e.notify(TRANSMITQ), IrqAction::Raise);
    assert_eq!(e.t.state(), DeviceState::NeedsReset);
    assert_ne!(
        e.r32(reg::STATUS) & u32::from(status::DEVICE_NEEDS_RESET),
        0
    );
    assert!(matches!(
        e.t.error(),
        Some(vmm_devices::mmio::DeviceError::Queue {
            queue: TRANSMITQ,
            error: QueueError::Loop { .. }
        })
    ));
    // Notifications and backend events are ignored until the reset.
    assert_eq!(e.notify(TRANSMITQ), IrqAction::None);
    assert_eq!(e.event(NetEvent::TxReady), IrqAction::None);
    assert_eq!(e.t.device().backend().sent_pending(), 0);
    works_after_reset(&mut e);
}

#[test]
fn head_and_next_indices_beyond_the_queue_need_reset() {
    let mut e = env();
    let (a, len) = tx_buffer(&mut e);
    raw_post(&mut e, TRANSMITQ, &[(0, desc(a, len, 0, 0))], QSIZE);
    let _ = e.notify(TRANSMITQ);
    assert!(matches!(
        e.t.error(),
        Some(vmm_devices::mmio::DeviceError::Queue {
            error: QueueError::HeadIndex { .. },
            ..
        })
    ));
    works_after_reset(&mut e);
    let mut e = env();
    assert!(e.t.device_mut().backend_mut().push_rx(&frame(1, 60)));
    let w = e.alloc(1526);
    raw_post(
        &mut e,
        RECEIVEQ,
        &[(0, desc(w, 1526, DESC_F_WRITE | DESC_F_NEXT, QSIZE + 3))],
        0,
    );
    let _ = e.notify(RECEIVEQ);
    assert!(matches!(
        e.t.error(),
        Some(vmm_devices::mmio::DeviceError::Queue {
            queue: RECEIVEQ,
            error: QueueError::NextIndex { .. }
        })
    ));
    works_after_reset(&mut e);
}

#[test]
fn an_available_index_beyond_the_queue_needs_reset() {
    let mut e = env();
    assert!(e.t.device_mut().backend_mut().push_rx(&frame(1, 60)));
    let avail = e.vqs[RECEIVEQ as usize].avail;
    e.write_mem(avail + 2, &(QSIZE + 1).to_le_bytes());
    let _ = e.notify(RECEIVEQ);
    assert!(matches!(
        e.t.error(),
        Some(vmm_devices::mmio::DeviceError::Queue {
            queue: RECEIVEQ,
            error: QueueError::AvailIndex { .. }
        })
    ));
    // The frame is still in the backend (it is only taken for a buffer).
    assert_eq!(e.t.device().backend().rx_pending(), 1);
    works_after_reset(&mut e);
}

// ---------------------------------------------------------------- random rings

#[derive(Debug, Clone)]
struct RawRing {
    descs: Vec<(u64, u32, u16, u16)>,
    ring: Vec<u16>,
    avail_idx: u16,
}

fn raw_ring() -> impl Strategy<Value = RawRing> {
    let addr = prop_oneof![
        4 => (RAM_BASE + 0x10000)..(RAM_BASE + 0x20000),
        1 => any::<u64>(),
        1 => Just(u64::MAX - 3),
    ];
    let len = prop_oneof![
        3 => 0u32..2048,
        2 => 1u32..40,
        1 => Just(HDR_LEN as u32 + MAX_FRAME_LEN as u32),
        1 => Just(HDR_LEN as u32 + MAX_FRAME_LEN as u32 + 1),
        1 => any::<u32>(),
    ];
    let flags = prop_oneof![
        3 => Just(0u16),
        3 => Just(DESC_F_NEXT),
        2 => Just(DESC_F_WRITE),
        2 => Just(DESC_F_WRITE | DESC_F_NEXT),
        1 => any::<u16>(),
    ];
    let next = prop_oneof![4 => 0u16..QSIZE, 1 => any::<u16>()];
    (
        prop::collection::vec((addr, len, flags, next), QSIZE as usize),
        prop::collection::vec(
            prop_oneof![8 => 0u16..QSIZE, 1 => any::<u16>()],
            QSIZE as usize,
        ),
        prop_oneof![4 => 0u16..=QSIZE, 1 => any::<u16>()],
    )
        .prop_map(|(descs, ring, avail_idx)| RawRing {
            descs,
            ring,
            avail_idx,
        })
}

fn write_ring(e: &mut NetEnv, q: u16, r: &RawRing) {
    let (table, avail) = (e.vqs[q as usize].desc, e.vqs[q as usize].avail);
    for (i, &(addr, len, flags, next)) in r.descs.iter().enumerate() {
        e.write_mem(
            table + 16 * i as u64,
            &desc(addr, len, flags, next).to_bytes(),
        );
    }
    for (i, h) in r.ring.iter().enumerate() {
        e.write_mem(avail + 4 + 2 * i as u64, &h.to_le_bytes());
    }
    e.write_mem(avail + 2, &r.avail_idx.to_le_bytes());
    e.vqs[q as usize].avail_idx = r.avail_idx;
}

proptest! {
    /// Random descriptor tables and available rings on both queues, frames waiting in the
    /// backend: never a panic; the backend only ever gets frames within the limits; every
    /// receive used length is 0 or a header plus a valid frame; the device is live or needs a
    /// reset; after a reset it works.
    #[test]
    fn random_rings_never_panic(
        tx in raw_ring(),
        rx in raw_ring(),
        frames in prop::collection::vec(prop_oneof![0usize..ETH_HLEN, ETH_HLEN..=MAX_FRAME_LEN], 0..6),
        room in prop_oneof![Just(0usize), Just(2), Just(usize::MAX)],
    ) {
        let mut e = env();
        e.t.device_mut().backend_mut().tx_room = room;
        for (i, &len) in frames.iter().enumerate() {
            e.t.device_mut().backend_mut().push_rx(&frame(i as u64, len));
        }
        write_ring(&mut e, TRANSMITQ, &tx);
        write_ring(&mut e, RECEIVEQ, &rx);
        let _ = e.notify(TRANSMITQ);
        let _ = e.notify(RECEIVEQ);
        let _ = e.event(NetEvent::TxReady);
        let _ = e.event(NetEvent::RxReady);
        prop_assert!(matches!(e.t.state(), DeviceState::Live | DeviceState::NeedsReset));
        while let Some(f) = e.t.device_mut().backend_mut().take_sent() {
            prop_assert!((ETH_HLEN..=MAX_FRAME_LEN).contains(&f.len()));
        }
        let used = e.vqs[RECEIVEQ as usize].used;
        let n = e.read_u16(used + 2);
        for i in 0..n.min(QSIZE) {
            let len = e.read_u32(used + 8 + 8 * u64::from(i));
            prop_assert!(
                len == 0 || (HDR_LEN + ETH_HLEN..=HDR_LEN + MAX_FRAME_LEN).contains(&(len as usize)),
                "used length {}", len
            );
        }
        let tused = e.vqs[TRANSMITQ as usize].used;
        let n = e.read_u16(tused + 2);
        for i in 0..n.min(QSIZE) {
            prop_assert_eq!(e.read_u32(tused + 8 + 8 * u64::from(i)), 0);
        }
        e.t.device_mut().backend_mut().tx_room = usize::MAX;
        works_after_reset(&mut e);
    }
}
