//! Two virtio-net cards whose backends are sDDF 0.7.0 network queues (`sddf_queue::net`) with
//! their data regions, switched by a minimal virtualiser: the shape the VMM PD's backend and the
//! network virtualiser PD will have (neither exists yet). Checks that the device model and the
//! queues fit: frames cross byte for byte in order, buffers go round (a client whose TX free
//! queue is empty holds the frame until the virtualiser returns buffers), and the notification
//! handshake tells the virtualiser when to run.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicU16;

use common::*;
use sddf_queue::net::{NetConsumer, NetProducer, region_size};
use sddf_queue::{NET_BUFFER_SIZE, NetBuffDesc, SignalRequest};
use vmm_devices::mmio::IrqAction;
use vmm_devices::net::{
    HDR_LEN, MAX_FRAME_LEN, NetBackend, NetConfig, NetDevice, NetEvent, RECEIVEQ, TRANSMITQ, TxFull,
};

const CAP: u32 = 4;
const DATA: usize = CAP as usize * NET_BUFFER_SIZE as usize;

fn region() -> &'static [AtomicU16] {
    Box::leak(
        (0..region_size(CAP) / 2)
            .map(|_| AtomicU16::new(0))
            .collect(),
    )
}

type Data = Rc<RefCell<Vec<u8>>>;

/// One client's shared memory: four queues and two data regions.
struct Shared {
    tx_free: &'static [AtomicU16],
    tx_active: &'static [AtomicU16],
    rx_free: &'static [AtomicU16],
    rx_active: &'static [AtomicU16],
    tx_data: Data,
    rx_data: Data,
}

impl Shared {
    fn new() -> Self {
        let s = Shared {
            tx_free: region(),
            tx_active: region(),
            rx_free: region(),
            rx_active: region(),
            tx_data: Rc::new(RefCell::new(vec![0; DATA])),
            rx_data: Rc::new(RefCell::new(vec![0; DATA])),
        };
        // As sDDF's `net_buffers_init`: every buffer of each data region starts free.
        for q in [s.tx_free, s.rx_free] {
            let mut p = NetProducer::new(q, CAP).unwrap();
            for i in 0..CAP {
                p.enqueue(&NetBuffDesc::new(u64::from(i * NET_BUFFER_SIZE), 0))
                    .unwrap();
            }
        }
        s
    }
}

/// The buffer `d` names in a data region, if it lies inside.
fn buffer(d: &NetBuffDesc, len: usize) -> Option<std::ops::Range<usize>> {
    let off = usize::try_from(d.io_or_offset).ok()?;
    (off % NET_BUFFER_SIZE as usize == 0 && off + len <= DATA && len <= NET_BUFFER_SIZE as usize)
        .then_some(off..off + len)
}

/// The client end (what the VMM PD will implement): TX takes a free buffer, fills it, makes it
/// active; RX takes an active buffer, copies it out, hands it back free.
struct SddfNet {
    tx_free: NetConsumer<'static>,
    tx_active: NetProducer<'static>,
    rx_active: NetConsumer<'static>,
    rx_free: NetProducer<'static>,
    tx_data: Data,
    rx_data: Data,
    /// Notifications this end would send the virtualiser.
    notify_virt: usize,
}

impl SddfNet {
    fn new(s: &Shared) -> Self {
        SddfNet {
            tx_free: NetConsumer::new(s.tx_free, CAP).unwrap(),
            tx_active: NetProducer::new(s.tx_active, CAP).unwrap(),
            rx_active: NetConsumer::new(s.rx_active, CAP).unwrap(),
            rx_free: NetProducer::new(s.rx_free, CAP).unwrap(),
            tx_data: s.tx_data.clone(),
            rx_data: s.rx_data.clone(),
            notify_virt: 0,
        }
    }
}

impl NetBackend for SddfNet {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), TxFull> {
        let Some(d) = self.tx_free.dequeue().unwrap() else {
            // No buffer: ask the virtualiser for a signal when it returns one.
            return match self.tx_free.request_signal().unwrap() {
                SignalRequest::Registered => Err(TxFull),
                SignalRequest::Reprocess => self.transmit(frame),
            };
        };
        let r = buffer(&d, frame.len()).expect("virtualiser's buffer");
        self.tx_data.borrow_mut()[r].copy_from_slice(frame);
        self.tx_active
            .enqueue(&NetBuffDesc::new(d.io_or_offset, frame.len() as u16))
            .unwrap();
        if self.tx_active.take_notify() {
            self.notify_virt += 1;
        }
        Ok(())
    }
    fn receive(&mut self, buf: &mut [u8; MAX_FRAME_LEN]) -> Option<usize> {
        let Some(d) = self.rx_active.dequeue().unwrap() else {
            // Nothing yet: ask the virtualiser for a signal when frames arrive.
            return match self.rx_active.request_signal().unwrap() {
                SignalRequest::Registered => None,
                SignalRequest::Reprocess => self.receive(buf),
            };
        };
        let len = usize::from(d.len);
        let n = len.min(MAX_FRAME_LEN);
        if let Some(r) = buffer(&d, n) {
            buf[..n].copy_from_slice(&self.rx_data.borrow()[r]);
        }
        self.rx_free
            .enqueue(&NetBuffDesc::new(d.io_or_offset, 0))
            .unwrap();
        if self.rx_free.take_notify() {
            self.notify_virt += 1;
        }
        Some(len)
    }
}

/// The virtualiser's end of one client.
struct Port {
    tx_active: NetConsumer<'static>,
    tx_free: NetProducer<'static>,
    rx_free: NetConsumer<'static>,
    rx_active: NetProducer<'static>,
    tx_data: Data,
    rx_data: Data,
}

impl Port {
    fn new(s: &Shared) -> Self {
        Port {
            tx_active: NetConsumer::new(s.tx_active, CAP).unwrap(),
            tx_free: NetProducer::new(s.tx_free, CAP).unwrap(),
            rx_free: NetConsumer::new(s.rx_free, CAP).unwrap(),
            rx_active: NetProducer::new(s.rx_active, CAP).unwrap(),
            tx_data: s.tx_data.clone(),
            rx_data: s.rx_data.clone(),
        }
    }
}

/// A two-port switch: every frame one port sends goes to the other if it has a free receive
/// buffer (else it stays queued). Returns the notifications it owes `(a, b)`.
fn switch(a: &mut Port, b: &mut Port) -> (bool, bool) {
    fn one_way(from: &mut Port, to: &mut Port) {
        while to.rx_free.available().unwrap() > 0 {
            let Some(d) = from.tx_active.dequeue().unwrap() else {
                break;
            };
            let dst = to.rx_free.dequeue().unwrap().unwrap();
            let len = usize::from(d.len);
            let src = buffer(&d, len).expect("client's descriptor");
            let frame = from.tx_data.borrow()[src].to_vec();
            let r = buffer(&dst, len).unwrap();
            to.rx_data.borrow_mut()[r].copy_from_slice(&frame);
            to.rx_active
                .enqueue(&NetBuffDesc::new(dst.io_or_offset, d.len))
                .unwrap();
            from.tx_free
                .enqueue(&NetBuffDesc::new(d.io_or_offset, 0))
                .unwrap();
        }
    }
    one_way(a, b);
    one_way(b, a);
    let mut owed = [false, false];
    for (i, p) in [a, b].into_iter().enumerate() {
        // Both notifications to a client may be due (received frames, returned TX buffers).
        let rx = p.rx_active.take_notify();
        let tx = p.tx_free.take_notify();
        owed[i] = rx || tx;
    }
    (owed[0], owed[1])
}

type SddfEnv = Env<NetDevice<SddfNet>>;

fn card(s: &Shared, mac: u8) -> SddfEnv {
    let dev = NetDevice::new(
        SddfNet::new(s),
        NetConfig {
            mac: [2, 0, 0, 0, 0, mac],
            ..NetConfig::default()
        },
    )
    .unwrap();
    let mut e = Env::new(dev, 4 << 20);
    assert!(e.init(u64::MAX, 16));
    e
}

fn frame(seed: u64, len: usize) -> Vec<u8> {
    pattern(seed, len)
}

#[test]
fn frames_cross_the_switch_and_buffers_go_round() {
    let (sa, sb) = (Shared::new(), Shared::new());
    let (mut a, mut b) = (card(&sa, 1), card(&sb, 2));
    let (mut pa, mut pb) = (Port::new(&sa), Port::new(&sb));
    // The clients' receive ends wait for the virtualiser: they ask for its signal.
    for e in [&mut a, &mut b] {
        let be = e.t.device_mut().backend_mut();
        assert_eq!(be.rx_active.request_signal(), Ok(SignalRequest::Registered));
    }
    // 10 frames from A to B through 4 TX buffers and 4 RX buffers: several rounds.
    let frames: Vec<Vec<u8>> = (0..10)
        .map(|i| frame(i, [60, 1514, 14, 333][i as usize % 4]))
        .collect();
    let (mut next, mut rx_out, mut signals) = (0, 0, 0);
    let mut got = Vec::new();
    let mut posted = std::collections::HashMap::new();
    for _round in 0..20 {
        while a.pop_used(TRANSMITQ).is_some() {}
        while next < frames.len() && a.free_descs(TRANSMITQ) >= 2 {
            a.post_tx(&frames[next], &[40]);
            next += 1;
        }
        let _ = a.notify(TRANSMITQ);
        let (to_a, to_b) = switch(&mut pa, &mut pb);
        if to_a {
            let _ = a.event(NetEvent::TxReady);
        }
        while rx_out < 4 {
            let (h, segs) = b.post_rx(HDR_LEN + MAX_FRAME_LEN, &[]);
            posted.insert(u32::from(h), segs);
            rx_out += 1;
        }
        if to_b {
            signals += 1;
            assert_eq!(b.event(NetEvent::RxReady), IrqAction::Raise);
        } else {
            let _ = b.notify(RECEIVEQ);
        }
        while let Some((id, len)) = b.pop_used(RECEIVEQ) {
            // Read now: the descriptors (and so the head) are reused by later postings.
            let data = b.gather(&posted[&id], len as usize);
            got.push((len, data));
            rx_out -= 1;
        }
        if got.len() == frames.len() {
            break;
        }
    }
    assert_eq!(got.len(), frames.len(), "every frame arrived");
    for ((len, data), f) in got.iter().zip(&frames) {
        assert_eq!(*len as usize, HDR_LEN + f.len());
        assert_eq!(&data[HDR_LEN..], &f[..]);
    }
    // The first frames woke the receive side through the virtualiser's signal (the client
    // asked for it when it found nothing); later ones were picked up by the guest's kicks
    // when it posted buffers.
    assert!(signals >= 1, "{signals} signals");
    assert_eq!(b.t.device().stats().rx_frames, 10);
    assert_eq!(a.t.device().stats().tx_frames, 10);
    assert!(a.t.device().stats().tx_full > 0, "ran out of TX buffers");
    assert!(!a.t.device().tx_waiting());
    // Buffers all went home: A's four TX buffers free again, B's four RX buffers in use or
    // free, none lost.
    let be = a.t.device_mut().backend_mut();
    assert_eq!(be.tx_free.available(), Ok(CAP));
    assert!(be.notify_virt > 0);
}

#[test]
fn frame_contents_survive_the_round_trip() {
    let (sa, sb) = (Shared::new(), Shared::new());
    let (mut a, mut b) = (card(&sa, 1), card(&sb, 2));
    let (mut pa, mut pb) = (Port::new(&sa), Port::new(&sb));
    let fa = frame(77, 1514);
    let fb = frame(78, 64);
    a.post_tx(&fa, &[]);
    b.post_tx(&fb, &[7, 7]);
    let (ra, segs_a) = a.post_rx(HDR_LEN + MAX_FRAME_LEN, &[]);
    let (rb, segs_b) = b.post_rx(HDR_LEN + MAX_FRAME_LEN, &[100]);
    let _ = a.notify(TRANSMITQ);
    let _ = b.notify(TRANSMITQ);
    let _ = switch(&mut pa, &mut pb);
    let _ = a.event(NetEvent::RxReady);
    let _ = b.event(NetEvent::RxReady);
    assert_eq!(
        b.pop_used(RECEIVEQ),
        Some((u32::from(rb), (HDR_LEN + 1514) as u32))
    );
    assert_eq!(
        a.pop_used(RECEIVEQ),
        Some((u32::from(ra), (HDR_LEN + 64) as u32))
    );
    assert_eq!(&b.gather(&segs_b, HDR_LEN + 1514)[HDR_LEN..], &fa[..]);
    assert_eq!(&a.gather(&segs_a, HDR_LEN + 64)[HDR_LEN..], &fb[..]);
}
