//! The network queues (`sddf_queue::net`): both ends of a queue against a `VecDeque` model
//! (FIFO, free space, the consumer-signal handshake, across the 16-bit index wrap), each end
//! against a hostile peer scribbling over the shared memory, the byte image sDDF's C code
//! reads, and every setup error.
#![cfg(not(loom))]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, Ordering};

use proptest::prelude::*;
use sddf_queue::net::{MAX_CAPACITY, region_size};
use sddf_queue::*;

/// Half-word indices of `net_queue_t`'s fields.
const TAIL: usize = 0;
const HEAD: usize = 1;
const FLAG: usize = 2;

fn zeroed(bytes: usize) -> Vec<AtomicU16> {
    (0..bytes / 2).map(|_| AtomicU16::new(0)).collect()
}

fn load(h: &AtomicU16) -> u16 {
    h.load(Ordering::Relaxed)
}

/// `consumer_signalled` as the C side reads it.
fn flag(q: &[AtomicU16]) -> u32 {
    let halves = [load(&q[FLAG]), load(&q[FLAG + 1])];
    zerocopy::transmute!(halves)
}

fn set_flag(q: &[AtomicU16], v: u32) {
    let halves: [u16; 2] = zerocopy::transmute!(v);
    q[FLAG].store(halves[0], Ordering::Relaxed);
    q[FLAG + 1].store(halves[1], Ordering::Relaxed);
}

/// Power-of-two capacities, starting anywhere in the 16-bit index space (often just before the
/// wrap).
fn cap_and_start() -> impl Strategy<Value = (u32, u16)> {
    (
        prop_oneof![Just(1u32), Just(2), Just(4), Just(8)],
        prop_oneof![any::<u16>(), (u16::MAX - 12)..=u16::MAX],
    )
}

fn desc() -> impl Strategy<Value = NetBuffDesc> {
    (any::<u64>(), any::<u16>(), any::<u8>())
        .prop_map(|(io, len, oid)| NetBuffDesc::with_oid(io, len, oid))
}

#[derive(Clone, Debug)]
enum Op {
    Enqueue(NetBuffDesc),
    EnqueueLocal(NetBuffDesc),
    Publish,
    Dequeue,
    Free,
    Available,
    RequestSignal,
    CancelSignal,
    ProducerNotify,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => desc().prop_map(Op::Enqueue),
        2 => desc().prop_map(Op::EnqueueLocal),
        1 => Just(Op::Publish),
        5 => Just(Op::Dequeue),
        1 => Just(Op::Free),
        1 => Just(Op::Available),
        2 => Just(Op::RequestSignal),
        1 => Just(Op::CancelSignal),
        2 => Just(Op::ProducerNotify),
    ]
}

#[derive(Default)]
struct Model {
    cap: usize,
    visible: VecDeque<NetBuffDesc>,
    local: Vec<NetBuffDesc>,
    published: bool,
    flag: u32,
}

impl Model {
    fn free(&self) -> usize {
        self.cap - self.visible.len() - self.local.len()
    }
    fn publish(&mut self) {
        if !self.local.is_empty() {
            self.visible.extend(self.local.drain(..));
            self.published = true;
        }
    }
    fn enqueue_local(&mut self, d: NetBuffDesc) -> Result<(), EnqueueError> {
        if self.free() == 0 {
            return Err(EnqueueError::Full);
        }
        self.local.push(d);
        Ok(())
    }
}

proptest! {
    #[test]
    fn net_queue_matches_model(
        (cap, start) in cap_and_start(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let q = zeroed(region_size(cap));
        q[TAIL].store(start, Ordering::Relaxed);
        q[HEAD].store(start, Ordering::Relaxed);
        let mut p = NetProducer::new(&q, cap).unwrap();
        let mut c = NetConsumer::new(&q, cap).unwrap();
        // Microkit zero-fills regions: `consumer_signalled == 0` means "signal requested".
        let mut m = Model { cap: cap as usize, ..Default::default() };
        for op in ops {
            match op {
                Op::Enqueue(d) => {
                    let r = m.enqueue_local(d);
                    if r.is_ok() { m.publish(); }
                    prop_assert_eq!(p.enqueue(&d), r);
                }
                Op::EnqueueLocal(d) => prop_assert_eq!(p.enqueue_local(&d), m.enqueue_local(d)),
                Op::Publish => { m.publish(); p.publish(); }
                Op::Dequeue => prop_assert_eq!(c.dequeue(), Ok(m.visible.pop_front())),
                Op::Free => prop_assert_eq!(p.free(), Ok(m.free() as u32)),
                Op::Available => prop_assert_eq!(c.available(), Ok(m.visible.len() as u32)),
                Op::RequestSignal => {
                    let expect = if m.visible.is_empty() {
                        m.flag = 0;
                        SignalRequest::Registered
                    } else {
                        m.flag = 1;
                        SignalRequest::Reprocess
                    };
                    prop_assert_eq!(c.request_signal(), Ok(expect));
                }
                Op::CancelSignal => { m.flag = 1; c.cancel_signal(); }
                Op::ProducerNotify => {
                    let expect = std::mem::take(&mut m.published) && m.flag == 0;
                    if expect { m.flag = 1; }
                    prop_assert_eq!(p.take_notify(), expect);
                }
            }
            // The shared state is exactly the model's, modulo 2^16.
            prop_assert_eq!(
                load(&q[TAIL]).wrapping_sub(load(&q[HEAD])) as usize,
                m.visible.len()
            );
            prop_assert_eq!(flag(&q), m.flag);
        }
    }
}

// ---------------------------------------------------------------- hostile peers

#[derive(Clone, Debug)]
enum Hostile {
    /// Write into header half word `at` (`0..4`): near the current value, or any value.
    Poke {
        at: usize,
        delta: i32,
        any: Option<u16>,
    },
    /// Write an arbitrary value into an entry half word.
    Scribble { at: usize, value: u16 },
    /// One operation of the trusted end.
    Op(u8, NetBuffDesc),
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        3 => (0usize..4, -4i32..=4, prop::option::weighted(0.3, any::<u16>()))
            .prop_map(|(at, delta, any)| Hostile::Poke { at, delta, any }),
        1 => (any::<usize>(), any::<u16>()).prop_map(|(at, value)| Hostile::Scribble { at, value }),
        8 => (0u8..6, desc()).prop_map(|(o, d)| Hostile::Op(o, d)),
    ]
}

fn apply(q: &[AtomicU16], cap: u32, h: &Hostile) {
    match *h {
        Hostile::Poke { at, delta, any } => {
            let v = any.unwrap_or_else(|| (i32::from(load(&q[at])) + delta) as u16);
            q[at].store(v, Ordering::Relaxed);
        }
        Hostile::Scribble { at, value } => {
            let entries = &q[4..];
            entries[at % (cap as usize * 8)].store(value, Ordering::Relaxed);
        }
        Hostile::Op(..) => {}
    }
}

fn typed<T>(r: &Result<T, QueueError>) -> bool {
    matches!(
        r,
        Ok(_) | Err(QueueError::OutOfRange { .. }) | Err(QueueError::PeerIndexRegressed { .. })
    )
}

proptest! {
    /// A consumer facing a hostile producer: every result is a value or a typed error, it never
    /// writes the tail, and it never claims more than `capacity` entries.
    #[test]
    fn net_consumer_survives_hostile_producer(
        (cap, start) in cap_and_start(),
        ops in prop::collection::vec(hostile(), 1..300),
    ) {
        let q = zeroed(region_size(cap));
        q[TAIL].store(start, Ordering::Relaxed);
        q[HEAD].store(start, Ordering::Relaxed);
        let mut c = NetConsumer::new(&q, cap).unwrap();
        let mut head = start;
        for h in &ops {
            apply(&q, cap, h);
            if let Hostile::Op(o, _) = h {
                let tail = load(&q[TAIL]);
                let shared_head = load(&q[HEAD]);
                match o {
                    0..=2 => {
                        let r = c.dequeue();
                        prop_assert!(typed(&r));
                        if let Ok(Some(_)) = r {
                            // Only dequeues within `capacity` of the tail it was shown.
                            prop_assert!(u32::from(tail.wrapping_sub(head)) <= cap);
                            prop_assert!(tail != head);
                            head = head.wrapping_add(1);
                            prop_assert_eq!(load(&q[HEAD]), head);
                        } else {
                            prop_assert_eq!(load(&q[HEAD]), shared_head);
                        }
                    }
                    3 => {
                        let r = c.available();
                        prop_assert!(typed(&r));
                        if let Ok(n) = r { prop_assert!(n <= cap); }
                    }
                    4 => { prop_assert!(typed(&c.request_signal())); }
                    _ => c.cancel_signal(),
                }
                prop_assert_eq!(load(&q[TAIL]), tail);
            }
        }
    }

    /// A producer facing a hostile consumer: typed results, it never writes the head, and the
    /// tail it publishes is never more than `capacity` beyond the head it validated.
    #[test]
    fn net_producer_survives_hostile_consumer(
        (cap, start) in cap_and_start(),
        ops in prop::collection::vec(hostile(), 1..300),
    ) {
        let q = zeroed(region_size(cap));
        q[TAIL].store(start, Ordering::Relaxed);
        q[HEAD].store(start, Ordering::Relaxed);
        let mut p = NetProducer::new(&q, cap).unwrap();
        let mut tail = start;
        for h in &ops {
            apply(&q, cap, h);
            if let Hostile::Op(o, d) = h {
                let head = load(&q[HEAD]);
                // The peer may have scribbled over the tail: the producer overwrites it only
                // when it publishes.
                let mut expect_tail = load(&q[TAIL]);
                match o {
                    0..=3 => match p.enqueue(d) {
                        Ok(()) => {
                            tail = tail.wrapping_add(1);
                            expect_tail = tail;
                            prop_assert!(u32::from(tail.wrapping_sub(head)) <= cap);
                        }
                        Err(EnqueueError::Full) => {}
                        Err(EnqueueError::Corrupt(e)) => prop_assert!(typed::<()>(&Err(e))),
                    },
                    4 => {
                        let r = p.free();
                        prop_assert!(typed(&r));
                        if let Ok(n) = r { prop_assert!(n <= cap); }
                    }
                    _ => { let _ = p.take_notify(); }
                }
                prop_assert_eq!(load(&q[HEAD]), head);
                prop_assert_eq!(load(&q[TAIL]), expect_tail);
            }
        }
    }
}

// ---------------------------------------------------------------- fixed cases

/// The byte image a C peer reads: `tail` at bytes 0..2, `head` at 2..4, `consumer_signalled`
/// at 4..8, descriptor `i` at `8 + 16 i` with `io_or_offset` at +0, `len` at +8, `oid` at +10.
#[test]
fn byte_image_is_sddfs() {
    let q = zeroed(region_size(4));
    let mut p = NetProducer::new(&q, 4).unwrap();
    p.enqueue(&NetBuffDesc::with_oid(0x1122_3344_5566_7788, 1514, 0xff))
        .unwrap();
    p.enqueue(&NetBuffDesc::new(2 * u64::from(NET_BUFFER_SIZE), 60))
        .unwrap();
    let bytes: Vec<u8> = q.iter().flat_map(|h| load(h).to_ne_bytes()).collect();
    assert_eq!(&bytes[0..2], &2u16.to_ne_bytes());
    assert_eq!(&bytes[2..4], &0u16.to_ne_bytes());
    assert_eq!(&bytes[4..8], &0u32.to_ne_bytes());
    assert_eq!(&bytes[8..16], &0x1122_3344_5566_7788u64.to_ne_bytes());
    assert_eq!(&bytes[16..18], &1514u16.to_ne_bytes());
    // The 6-bit oid field: the padding bits stay zero.
    assert_eq!(bytes[18], 0x3f);
    assert_eq!(&bytes[19..24], &[0; 5]);
    assert_eq!(&bytes[24..32], &4096u64.to_ne_bytes());
    assert_eq!(&bytes[32..34], &60u16.to_ne_bytes());
    // What a C producer wrote (padding bits set) reads back with the oid masked.
    let c_bytes = [
        1u8, 0, 0, 0, 0, 0, 0, 0, // io_or_offset 1
        0xdc, 0x05, // len 1500
        0xc5, // oid 5, padding bits set
        0xaa, 0xbb, 0xcc, 0xdd, 0xee,
    ];
    let d: NetBuffDesc = zerocopy::transmute!(c_bytes);
    assert_eq!((d.io_or_offset, d.len, d.oid()), (1, 1500, 5));
}

/// The notification handshake in order, as sDDF's components run it: the consumer finds the
/// queue empty and registers; the producer's next publication notifies once and consumes the
/// request; a second publication does not notify.
#[test]
fn consumer_signal_handshake() {
    let q = zeroed(region_size(2));
    set_flag(&q, 1);
    let mut p = NetProducer::new(&q, 2).unwrap();
    let mut c = NetConsumer::new(&q, 2).unwrap();
    p.enqueue(&NetBuffDesc::new(0, 1)).unwrap();
    assert!(!p.take_notify(), "no request outstanding");
    assert_eq!(c.request_signal(), Ok(SignalRequest::Reprocess));
    assert_eq!(flag(&q), 1);
    assert!(c.dequeue().unwrap().is_some());
    assert_eq!(c.request_signal(), Ok(SignalRequest::Registered));
    assert_eq!(flag(&q), 0);
    assert!(!p.take_notify(), "nothing published since the last call");
    p.enqueue(&NetBuffDesc::new(0, 2)).unwrap();
    assert!(p.take_notify());
    assert_eq!(flag(&q), 1, "request consumed");
    p.enqueue(&NetBuffDesc::new(0, 3)).unwrap();
    assert!(!p.take_notify());
    // A hostile high half never reads as a request.
    set_flag(&q, 0x1_0000);
    p.enqueue(&NetBuffDesc::new(0, 4)).unwrap_err();
    assert!(c.dequeue().unwrap().is_some());
    p.enqueue(&NetBuffDesc::new(0, 4)).unwrap();
    assert!(!p.take_notify());
}

/// The 16-bit indices wrap: a capacity-8 queue carries 70 000 descriptors in order, with the
/// full check right at every point of the wrap.
#[test]
fn indices_wrap_at_16_bits() {
    let q = zeroed(region_size(8));
    let mut p = NetProducer::new(&q, 8).unwrap();
    let mut c = NetConsumer::new(&q, 8).unwrap();
    let mut next_out = 0u64;
    for i in 0..70_000u64 {
        match p.enqueue(&NetBuffDesc::new(i, 0)) {
            Ok(()) => {}
            Err(EnqueueError::Full) => {
                assert_eq!(p.free(), Ok(0));
                assert_eq!(c.available(), Ok(8));
                for _ in 0..8 {
                    assert_eq!(c.dequeue().unwrap().unwrap().io_or_offset, next_out);
                    next_out += 1;
                }
                p.enqueue(&NetBuffDesc::new(i, 0)).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    while let Some(d) = c.dequeue().unwrap() {
        assert_eq!(d.io_or_offset, next_out);
        next_out += 1;
    }
    assert_eq!(next_out, 70_000);
}

#[test]
fn setup_errors() {
    let q = zeroed(region_size(8));
    assert_eq!(
        NetProducer::new(&q, 0).unwrap_err(),
        SetupError::ZeroCapacity
    );
    assert_eq!(
        NetConsumer::new(&q, 6).unwrap_err(),
        SetupError::UnsupportedNetCapacity { capacity: 6 }
    );
    assert_eq!(
        NetProducer::new(&q, 2 * MAX_CAPACITY).unwrap_err(),
        SetupError::UnsupportedNetCapacity {
            capacity: 2 * MAX_CAPACITY
        }
    );
    assert_eq!(
        NetConsumer::new(&q[..q.len() - 1], 8).unwrap_err(),
        SetupError::RegionTooSmall {
            needed: 8 + 8 * 16,
            available: 8 + 8 * 16 - 2
        }
    );
    // Indices already more than `capacity` apart.
    q[TAIL].store(9, Ordering::Relaxed);
    assert!(matches!(
        NetConsumer::new(&q, 8).unwrap_err(),
        SetupError::Corrupt(QueueError::OutOfRange { .. })
    ));
    // Across the wrap that is still 9 apart; 8 apart is a full queue.
    q[TAIL].store(3, Ordering::Relaxed);
    q[HEAD].store(u16::MAX - 4, Ordering::Relaxed);
    let mut p = NetProducer::new(&q, 8).unwrap();
    assert_eq!(p.free(), Ok(0));
    assert_eq!(region_size(MAX_CAPACITY), 8 + 16 * 32768);
    assert_eq!(
        SetupError::UnsupportedNetCapacity { capacity: 6 }.to_string(),
        "network queue capacity 6 is not a power of two of at most 32768"
    );
}
