//! Property tests: both ends of every queue against a `VecDeque` model, and each trusted end
//! against a hostile peer that writes arbitrary values into the shared memory between
//! operations.
#![cfg(not(loom))]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use proptest::prelude::*;
use sddf_queue::blk::{req_region_size, resp_region_size};
use sddf_queue::*;

const REQ_HEAD: usize = 0;
const REQ_TAIL: usize = 1;
const RESP_HEAD: usize = 0;
const RESP_TAIL: usize = 1;
const SER_TAIL: usize = 0;
const SER_HEAD: usize = 1;
const SER_FLAG: usize = 2;

fn zeroed(bytes: usize) -> Vec<AtomicU32> {
    (0..bytes / 4).map(|_| AtomicU32::new(0)).collect()
}

fn load(w: &AtomicU32) -> u32 {
    w.load(Ordering::Relaxed)
}

/// Capacity and starting index: power-of-two capacities start anywhere (including just before
/// the 2^32 wrap); others start low, since with them sDDF's `i % capacity` is discontinuous at
/// the wrap (documented).
fn cap_and_start() -> impl Strategy<Value = (u32, u32)> {
    (1u32..=9).prop_flat_map(|cap| {
        let start = if cap.is_power_of_two() {
            prop_oneof![any::<u32>(), (u32::MAX - 16)..=u32::MAX].boxed()
        } else {
            (0u32..1_000_000).boxed()
        };
        (Just(cap), start)
    })
}

fn blk_req() -> impl Strategy<Value = BlkReq> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u16>(),
        any::<u32>(),
    )
        .prop_map(|(c, io, b, n, id)| BlkReq::new(BlkReqCode(c), io, b, n, id))
}

fn blk_resp() -> impl Strategy<Value = BlkResp> {
    (any::<u32>(), any::<u16>(), any::<u32>())
        .prop_map(|(s, n, id)| BlkResp::new(BlkRespStatus(s), n, id))
}

// ---------------------------------------------------------------- serial, honest pair

#[derive(Clone, Debug)]
enum SerialOp {
    Enqueue(u8),
    EnqueueLocal(u8),
    EnqueueSlice(Vec<u8>),
    Publish,
    Dequeue,
    DequeueLocal,
    DequeueInto(usize),
    PublishHead,
    Free,
    Available,
    RequestSignal,
    CancelSignal,
    ConsumerNotify,
    ProducerNotify,
}

fn serial_op() -> impl Strategy<Value = SerialOp> {
    prop_oneof![
        4 => any::<u8>().prop_map(SerialOp::Enqueue),
        2 => any::<u8>().prop_map(SerialOp::EnqueueLocal),
        2 => prop::collection::vec(any::<u8>(), 0..12).prop_map(SerialOp::EnqueueSlice),
        1 => Just(SerialOp::Publish),
        4 => Just(SerialOp::Dequeue),
        2 => Just(SerialOp::DequeueLocal),
        2 => (0usize..12).prop_map(SerialOp::DequeueInto),
        1 => Just(SerialOp::PublishHead),
        1 => Just(SerialOp::Free),
        1 => Just(SerialOp::Available),
        2 => Just(SerialOp::RequestSignal),
        1 => Just(SerialOp::CancelSignal),
        2 => Just(SerialOp::ConsumerNotify),
        1 => Just(SerialOp::ProducerNotify),
    ]
}

#[derive(Default)]
struct SerialModel {
    cap: usize,
    /// Published, not yet read by the consumer.
    visible: VecDeque<u8>,
    /// Written by the producer, not yet published.
    local: Vec<u8>,
    /// Read by the consumer, slots not yet released.
    unreleased: usize,
    published: bool,
    released: bool,
    flag: u32,
}

impl SerialModel {
    fn free(&self) -> usize {
        self.cap - self.visible.len() - self.local.len() - self.unreleased
    }
    fn publish(&mut self) {
        if !self.local.is_empty() {
            self.visible.extend(self.local.drain(..));
            self.published = true;
        }
    }
    fn release(&mut self) {
        if self.unreleased > 0 {
            self.unreleased = 0;
            self.released = true;
        }
    }
    fn enqueue_local(&mut self, b: u8) -> Result<(), EnqueueError> {
        if self.free() == 0 {
            return Err(EnqueueError::Full);
        }
        self.local.push(b);
        Ok(())
    }
    fn dequeue_local(&mut self) -> Option<u8> {
        let b = self.visible.pop_front()?;
        self.unreleased += 1;
        Some(b)
    }
}

proptest! {
    #[test]
    fn serial_matches_model(
        (cap, start) in cap_and_start(),
        ops in prop::collection::vec(serial_op(), 1..200),
    ) {
        let queue = zeroed(12);
        queue[SER_TAIL].store(start, Ordering::Relaxed);
        queue[SER_HEAD].store(start, Ordering::Relaxed);
        let data: Vec<AtomicU8> = (0..cap + 3).map(|_| AtomicU8::new(0)).collect();
        let mut p = SerialProducer::new(&queue, &data, cap).unwrap();
        let mut c = SerialConsumer::new(&queue, &data, cap).unwrap();
        // Microkit zero-fills regions: `producer_signalled == 0` means "signal requested".
        let mut m = SerialModel { cap: cap as usize, ..Default::default() };

        for op in ops {
            match op {
                SerialOp::Enqueue(b) => {
                    let r = m.enqueue_local(b);
                    if r.is_ok() { m.publish(); }
                    prop_assert_eq!(p.enqueue(b), r);
                }
                SerialOp::EnqueueLocal(b) => {
                    prop_assert_eq!(p.enqueue_local(b), m.enqueue_local(b));
                }
                SerialOp::EnqueueSlice(v) => {
                    let n = v.len().min(m.free());
                    m.local.extend_from_slice(&v[..n]);
                    m.publish();
                    prop_assert_eq!(p.enqueue_slice(&v), Ok(n));
                }
                SerialOp::Publish => { m.publish(); p.publish(); }
                SerialOp::Dequeue => {
                    let b = m.dequeue_local();
                    m.release();
                    prop_assert_eq!(c.dequeue(), Ok(b));
                }
                SerialOp::DequeueLocal => prop_assert_eq!(c.dequeue_local(), Ok(m.dequeue_local())),
                SerialOp::DequeueInto(len) => {
                    let expect: Vec<u8> =
                        std::iter::from_fn(|| m.dequeue_local()).take(len).collect();
                    m.release();
                    let mut buf = vec![0u8; len];
                    let n = c.dequeue_into(&mut buf).unwrap();
                    prop_assert_eq!(&buf[..n], &expect[..]);
                }
                SerialOp::PublishHead => { m.release(); c.publish(); }
                SerialOp::Free => prop_assert_eq!(p.free(), Ok(m.free() as u32)),
                SerialOp::Available => prop_assert_eq!(c.available(), Ok(m.visible.len() as u32)),
                SerialOp::RequestSignal => {
                    m.publish();
                    let expect = if m.free() > 0 {
                        m.flag = 1;
                        SignalRequest::Reprocess
                    } else {
                        m.flag = 0;
                        SignalRequest::Registered
                    };
                    prop_assert_eq!(p.request_signal(), Ok(expect));
                }
                SerialOp::CancelSignal => { m.flag = 1; p.cancel_signal(); }
                SerialOp::ConsumerNotify => {
                    let expect = std::mem::take(&mut m.released) && m.flag == 0;
                    if expect { m.flag = 1; }
                    prop_assert_eq!(c.take_notify(), expect);
                }
                SerialOp::ProducerNotify => {
                    prop_assert_eq!(p.take_notify(), std::mem::take(&mut m.published));
                }
            }
            // The shared state is exactly the model's.
            prop_assert_eq!(
                load(&queue[SER_TAIL]).wrapping_sub(load(&queue[SER_HEAD])) as usize,
                m.visible.len() + m.unreleased
            );
            prop_assert_eq!(load(&queue[SER_FLAG]), m.flag);
            prop_assert_eq!(m.free() == 0, p.free() == Ok(0));
            prop_assert_eq!(m.visible.is_empty(), c.available() == Ok(0));
        }
    }
}

// ---------------------------------------------------------------- block, honest pairs

#[derive(Clone, Debug)]
enum BlkOp<E> {
    Enqueue(E),
    Dequeue,
    Plug,
    Unplug,
    TakeNotify,
    Free,
    Available,
}

fn blk_op<E: std::fmt::Debug + Clone>(
    entry: impl Strategy<Value = E> + 'static,
) -> impl Strategy<Value = BlkOp<E>> {
    prop_oneof![
        5 => entry.prop_map(BlkOp::Enqueue),
        5 => Just(BlkOp::Dequeue),
        1 => Just(BlkOp::Plug),
        1 => Just(BlkOp::Unplug),
        2 => Just(BlkOp::TakeNotify),
        1 => Just(BlkOp::Free),
        1 => Just(BlkOp::Available),
    ]
}

proptest! {
    #[test]
    fn blk_requests_match_model(
        (cap, start) in cap_and_start(),
        ops in prop::collection::vec(blk_op(blk_req()), 1..200),
    ) {
        let region = zeroed(req_region_size(cap) + 64);
        region[REQ_HEAD].store(start, Ordering::Relaxed);
        region[REQ_TAIL].store(start, Ordering::Relaxed);
        let mut p = BlkReqProducer::new(&region, cap).unwrap();
        let mut c = BlkReqConsumer::new(&region, cap).unwrap();
        let mut q = VecDeque::new();
        let (mut plugged, mut published) = (false, false);
        for op in ops {
            match op {
                BlkOp::Enqueue(r) => {
                    let expect = if q.len() < cap as usize {
                        q.push_back(r);
                        published = true;
                        Ok(())
                    } else {
                        Err(EnqueueError::Full)
                    };
                    prop_assert_eq!(p.enqueue(&r), expect);
                }
                BlkOp::Dequeue => {
                    let expect = if plugged { None } else { q.pop_front() };
                    prop_assert_eq!(c.dequeue(), Ok(expect));
                }
                BlkOp::Plug => { plugged = true; p.plug(); }
                BlkOp::Unplug => {
                    plugged = false;
                    prop_assert_eq!(p.unplug(), std::mem::take(&mut published));
                }
                BlkOp::TakeNotify => {
                    let expect = !plugged && std::mem::take(&mut published);
                    prop_assert_eq!(p.take_notify(), expect);
                }
                BlkOp::Free => prop_assert_eq!(p.free(), Ok(cap - q.len() as u32)),
                BlkOp::Available => prop_assert_eq!(c.available(), Ok(q.len() as u32)),
            }
            prop_assert_eq!(c.is_plugged(), plugged);
            prop_assert_eq!(p.is_plugged(), plugged);
            prop_assert_eq!(
                load(&region[REQ_TAIL]).wrapping_sub(load(&region[REQ_HEAD])) as usize,
                q.len()
            );
            // Nothing is written past the queue's own bytes.
            prop_assert!(region[req_region_size(cap) / 4..].iter().all(|w| load(w) == 0));
        }
    }

    #[test]
    fn blk_responses_match_model(
        (cap, start) in cap_and_start(),
        ops in prop::collection::vec(blk_op(blk_resp()), 1..200),
    ) {
        let region = zeroed(resp_region_size(cap) + 64);
        region[RESP_HEAD].store(start, Ordering::Relaxed);
        region[RESP_TAIL].store(start, Ordering::Relaxed);
        let mut p = BlkRespProducer::new(&region, cap).unwrap();
        let mut c = BlkRespConsumer::new(&region, cap).unwrap();
        let mut q = VecDeque::new();
        let mut published = false;
        for op in ops {
            match op {
                BlkOp::Enqueue(r) => {
                    let expect = if q.len() < cap as usize {
                        q.push_back(r);
                        published = true;
                        Ok(())
                    } else {
                        Err(EnqueueError::Full)
                    };
                    prop_assert_eq!(p.enqueue(&r), expect);
                }
                BlkOp::Dequeue => prop_assert_eq!(c.dequeue(), Ok(q.pop_front())),
                BlkOp::TakeNotify | BlkOp::Unplug => {
                    prop_assert_eq!(p.take_notify(), std::mem::take(&mut published));
                }
                BlkOp::Plug => {}
                BlkOp::Free => prop_assert_eq!(p.free(), Ok(cap - q.len() as u32)),
                BlkOp::Available => prop_assert_eq!(c.available(), Ok(q.len() as u32)),
            }
            prop_assert_eq!(
                load(&region[RESP_TAIL]).wrapping_sub(load(&region[RESP_HEAD])) as usize,
                q.len()
            );
            prop_assert!(region[resp_region_size(cap) / 4..].iter().all(|w| load(w) == 0));
        }
    }
}

// ---------------------------------------------------------------- hostile peers
//
// One trusted end; the other end is the test itself, writing arbitrary values anywhere in the
// shared memory between the trusted end's operations. Every result must be a value or a typed
// error (a panic fails the test), counts stay within the local capacity, the trusted end writes
// only the words it owns, and it never publishes an index beyond `capacity` of the peer's.

#[derive(Clone, Debug)]
enum Hostile {
    /// Write `value` into header word `word` (mostly near the current value, sometimes any).
    Poke {
        word: usize,
        delta: i64,
        any: Option<u32>,
    },
    /// Write an arbitrary value into an entry/data word.
    Scribble { at: usize, value: u32 },
    /// One operation of the trusted end (`0..8`, meaning depends on the end).
    Op(u8, u8),
}

fn hostile(header_words: usize) -> impl Strategy<Value = Hostile> {
    prop_oneof![
        3 => (0..header_words, -6i64..=6, prop::option::weighted(0.3, any::<u32>()))
            .prop_map(|(word, delta, any)| Hostile::Poke { word, delta, any }),
        1 => (any::<usize>(), any::<u32>()).prop_map(|(at, value)| Hostile::Scribble { at, value }),
        8 => (0u8..8, any::<u8>()).prop_map(|(o, b)| Hostile::Op(o, b)),
    ]
}

fn poke(w: &AtomicU32, delta: i64, any: Option<u32>) {
    let v = any.unwrap_or_else(|| (i64::from(load(w)) + delta) as u32);
    w.store(v, Ordering::Relaxed);
}

fn is_typed<T>(r: &Result<T, QueueError>) -> bool {
    matches!(
        r,
        Ok(_) | Err(QueueError::OutOfRange { .. }) | Err(QueueError::PeerIndexRegressed { .. })
    )
}

proptest! {
    #[test]
    fn serial_consumer_survives_hostile_producer(
        (cap, start) in cap_and_start(),
        ops in prop::collection::vec(hostile(3), 1..300),
    ) {
        let queue = zeroed(12);
        queue[SER_TAIL].store(start, Ordering::Relaxed);
        queue[SER_HEAD].store(start, Ordering::Relaxed);
        let data: Vec<AtomicU8> = (0..cap).map(|_| AtomicU8::new(0)).collect();
        let mut c = SerialConsumer::new(&queue, &data, cap).unwrap();
        // The consumer's head as accounted from its results: read up to, and released up to.
        let (mut local, mut shared) = (start, start);
        for op in ops {
            let (head, tail) = (load(&queue[SER_HEAD]), load(&queue[SER_TAIL]));
            match op {
                Hostile::Poke { word, delta, any } => poke(&queue[word], delta, any),
                Hostile::Scribble { at, value } => {
                    data[at % data.len()].store(value as u8, Ordering::Relaxed);
                }
                Hostile::Op(o, n) => {
                    let (local_before, shared_before) = (local, shared);
                    match o {
                        0 | 1 => {
                            let r = c.dequeue();
                            prop_assert!(is_typed(&r));
                            if let Ok(b) = r {
                                local = local.wrapping_add(u32::from(b.is_some()));
                                shared = local;
                            }
                        }
                        2 => {
                            let r = c.dequeue_local();
                            prop_assert!(is_typed(&r));
                            if let Ok(Some(_)) = r { local = local.wrapping_add(1); }
                        }
                        3 | 4 => {
                            let mut buf = vec![0u8; n as usize % 12];
                            let r = c.dequeue_into(&mut buf);
                            prop_assert!(is_typed(&r));
                            if let Ok(k) = r {
                                prop_assert!(k <= buf.len());
                                local = local.wrapping_add(k as u32);
                                shared = local;
                            }
                        }
                        5 => { c.publish(); shared = local; }
                        6 => {
                            let r = c.available();
                            prop_assert!(is_typed(&r));
                            if let Ok(k) = r { prop_assert!(k <= cap); }
                        }
                        _ => { let _ = c.take_notify(); }
                    }
                    // The consumer never writes the tail; its head in memory is what it
                    // released; it never reads past the tail it was shown.
                    prop_assert_eq!(load(&queue[SER_TAIL]), tail);
                    let expect_head = if shared != shared_before { shared } else { head };
                    prop_assert_eq!(load(&queue[SER_HEAD]), expect_head);
                    if local != local_before {
                        prop_assert!(tail.wrapping_sub(local) <= cap);
                    }
                }
            }
        }
    }

    #[test]
    fn serial_producer_survives_hostile_consumer(
        (cap, start) in cap_and_start(),
        ops in prop::collection::vec(hostile(3), 1..300),
    ) {
        let queue = zeroed(12);
        queue[SER_TAIL].store(start, Ordering::Relaxed);
        queue[SER_HEAD].store(start, Ordering::Relaxed);
        let data: Vec<AtomicU8> = (0..cap).map(|_| AtomicU8::new(0)).collect();
        let mut p = SerialProducer::new(&queue, &data, cap).unwrap();
        // The producer's tail as accounted from its results: written up to, published up to.
        let (mut local, mut shared) = (start, start);
        for op in ops {
            let (head, tail) = (load(&queue[SER_HEAD]), load(&queue[SER_TAIL]));
            match op {
                Hostile::Poke { word, delta, any } => poke(&queue[word], delta, any),
                Hostile::Scribble { at, value } => {
                    data[at % data.len()].store(value as u8, Ordering::Relaxed);
                }
                Hostile::Op(o, n) => {
                    let (local_before, shared_before) = (local, shared);
                    match o {
                        0 | 1 => {
                            if p.enqueue(n).is_ok() {
                                local = local.wrapping_add(1);
                                shared = local;
                            }
                        }
                        2 => {
                            if p.enqueue_local(n).is_ok() { local = local.wrapping_add(1); }
                        }
                        3 => {
                            let len = n as usize % 12;
                            let r = p.enqueue_slice(&vec![n; len]);
                            prop_assert!(is_typed(&r));
                            if let Ok(k) = r {
                                prop_assert!(k <= len);
                                local = local.wrapping_add(k as u32);
                                shared = local;
                            }
                        }
                        4 => { p.publish(); shared = local; }
                        5 => {
                            let r = p.free();
                            if let Ok(k) = r { prop_assert!(k <= cap); }
                            prop_assert!(is_typed(&r));
                        }
                        6 => {
                            shared = local;
                            prop_assert!(is_typed(&p.request_signal()));
                        }
                        _ => { let _ = p.take_notify(); }
                    }
                    // The producer never writes the head; its tail in memory is what it
                    // published; it never writes a slot more than `capacity` ahead of the head
                    // it was shown.
                    prop_assert_eq!(load(&queue[SER_HEAD]), head);
                    let expect_tail = if shared != shared_before { shared } else { tail };
                    prop_assert_eq!(load(&queue[SER_TAIL]), expect_tail);
                    if local != local_before {
                        prop_assert!(local.wrapping_sub(head) <= cap);
                    }
                }
            }
        }
    }

    #[test]
    fn blk_request_consumer_survives_hostile_producer(
        (cap, start) in cap_and_start(),
        ops in prop::collection::vec(hostile(4), 1..300),
    ) {
        let size = req_region_size(cap);
        let region = zeroed(size + 64);
        region[REQ_HEAD].store(start, Ordering::Relaxed);
        region[REQ_TAIL].store(start, Ordering::Relaxed);
        let mut c = BlkReqConsumer::new(&region[..size / 4], cap).unwrap();
        let mut own = start;
        for op in ops {
            let (head, tail) = (load(&region[REQ_HEAD]), load(&region[REQ_TAIL]));
            match op {
                Hostile::Poke { word, delta, any } => poke(&region[word], delta, any),
                Hostile::Scribble { at, value } => {
                    region[4 + at % (size / 4 - 4)].store(value, Ordering::Relaxed);
                }
                Hostile::Op(o, _) => {
                    let mut dequeued = false;
                    match o {
                        0..=4 => {
                            let r = c.dequeue();
                            prop_assert!(is_typed(&r));
                            dequeued = matches!(r, Ok(Some(_)));
                        }
                        5 | 6 => {
                            let r = c.available();
                            if let Ok(k) = r { prop_assert!(k <= cap); }
                            prop_assert!(is_typed(&r));
                        }
                        _ => { let _ = c.is_plugged(); }
                    }
                    prop_assert_eq!(load(&region[REQ_TAIL]), tail);
                    if dequeued {
                        own = own.wrapping_add(1);
                        prop_assert_eq!(load(&region[REQ_HEAD]), own);
                        prop_assert!(tail.wrapping_sub(own) < cap);
                    } else {
                        prop_assert_eq!(load(&region[REQ_HEAD]), head);
                    }
                }
            }
            prop_assert!(region[size / 4..].iter().all(|w| load(w) == 0));
        }
    }

    #[test]
    fn blk_request_producer_survives_hostile_consumer(
        (cap, start) in cap_and_start(),
        ops in prop::collection::vec(hostile(4), 1..300),
        req in blk_req(),
    ) {
        let size = req_region_size(cap);
        let region = zeroed(size + 64);
        region[REQ_HEAD].store(start, Ordering::Relaxed);
        region[REQ_TAIL].store(start, Ordering::Relaxed);
        let mut p = BlkReqProducer::new(&region[..size / 4], cap).unwrap();
        let mut own = start;
        for op in ops {
            let (head, tail) = (load(&region[REQ_HEAD]), load(&region[REQ_TAIL]));
            match op {
                Hostile::Poke { word, delta, any } => poke(&region[word], delta, any),
                Hostile::Scribble { at, value } => {
                    region[4 + at % (size / 4 - 4)].store(value, Ordering::Relaxed);
                }
                Hostile::Op(o, _) => {
                    let mut enqueued = false;
                    match o {
                        0..=3 => enqueued = p.enqueue(&req).is_ok(),
                        4 => p.plug(),
                        5 => { let _ = p.unplug(); }
                        6 => { let _ = p.take_notify(); }
                        _ => {
                            let r = p.free();
                            if let Ok(k) = r { prop_assert!(k <= cap); }
                            prop_assert!(is_typed(&r));
                        }
                    }
                    prop_assert_eq!(load(&region[REQ_HEAD]), head);
                    if enqueued {
                        own = own.wrapping_add(1);
                        prop_assert_eq!(load(&region[REQ_TAIL]), own);
                        prop_assert!(own.wrapping_sub(head) <= cap);
                    } else {
                        prop_assert_eq!(load(&region[REQ_TAIL]), tail);
                    }
                }
            }
            prop_assert!(region[size / 4..].iter().all(|w| load(w) == 0));
        }
    }

    #[test]
    fn blk_response_ends_survive_hostile_peers(
        (cap, start) in cap_and_start(),
        ops in prop::collection::vec(hostile(2), 1..300),
        resp in blk_resp(),
    ) {
        let size = resp_region_size(cap);
        let region = zeroed(size + 64);
        region[RESP_HEAD].store(start, Ordering::Relaxed);
        region[RESP_TAIL].store(start, Ordering::Relaxed);
        // Both ends attached at once, each hostile to the other only through the pokes.
        let mut p = BlkRespProducer::new(&region[..size / 4], cap).unwrap();
        let mut c = BlkRespConsumer::new(&region[..size / 4], cap).unwrap();
        for op in ops {
            match op {
                Hostile::Poke { word, delta, any } => poke(&region[word], delta, any),
                Hostile::Scribble { at, value } => {
                    region[2 + at % (size / 4 - 2)].store(value, Ordering::Relaxed);
                }
                Hostile::Op(o, _) => match o {
                    0..=2 => { let _: Result<(), EnqueueError> = p.enqueue(&resp); }
                    3..=5 => prop_assert!(is_typed(&c.dequeue())),
                    6 => {
                        let r = c.available();
                        if let Ok(k) = r { prop_assert!(k <= cap); }
                        prop_assert!(is_typed(&r));
                    }
                    _ => { let _ = p.take_notify(); }
                },
            }
            prop_assert!(region[size / 4..].iter().all(|w| load(w) == 0));
        }
    }
}

// ---------------------------------------------------------------- each error, once

#[test]
fn typed_errors() {
    let region = zeroed(resp_region_size(4));
    let mut p = BlkRespProducer::new(&region, 4).unwrap();
    let mut c = BlkRespConsumer::new(&region, 4).unwrap();
    let r = BlkResp::new(BlkRespStatus::OK, 1, 1);
    for _ in 0..4 {
        p.enqueue(&r).unwrap();
    }
    assert_eq!(p.enqueue(&r), Err(EnqueueError::Full));
    assert_eq!(c.dequeue(), Ok(Some(r)));

    // tail − head > capacity, seen by the consumer.
    region[RESP_TAIL].store(9, Ordering::Relaxed);
    assert_eq!(
        c.available(),
        Err(QueueError::OutOfRange {
            head: 1,
            tail: 9,
            capacity: 4
        })
    );
    // Tail moving backwards (still within range).
    region[RESP_TAIL].store(3, Ordering::Relaxed);
    assert_eq!(
        c.available(),
        Err(QueueError::PeerIndexRegressed {
            previous: 4,
            observed: 3
        })
    );
    region[RESP_TAIL].store(4, Ordering::Relaxed);
    assert_eq!(c.available(), Ok(3));

    // The consumer's own head overwritten: the consumer ignores it (it keeps its head
    // locally) and restores it when it next releases a slot.
    region[RESP_HEAD].store(3, Ordering::Relaxed);
    assert_eq!(c.available(), Ok(3));
    assert_eq!(c.dequeue(), Ok(Some(r)));
    assert_eq!(load(&region[RESP_HEAD]), 2);
    assert_eq!(p.free(), Ok(2));
    // Head moving backwards, seen by the producer.
    region[RESP_HEAD].store(1, Ordering::Relaxed);
    assert_eq!(
        p.free(),
        Err(QueueError::PeerIndexRegressed {
            previous: 2,
            observed: 1
        })
    );
    // Head ahead of the tail.
    region[RESP_HEAD].store(5, Ordering::Relaxed);
    assert_eq!(
        p.free(),
        Err(QueueError::OutOfRange {
            head: 5,
            tail: 4,
            capacity: 4
        })
    );
    // Consistent again: the handle goes on.
    region[RESP_HEAD].store(2, Ordering::Relaxed);
    assert_eq!(p.enqueue(&r), Ok(()));
    assert_eq!(p.free(), Ok(1));

    // Setup errors.
    assert_eq!(
        BlkRespProducer::new(&region, 0).unwrap_err(),
        SetupError::ZeroCapacity
    );
    assert_eq!(
        BlkRespProducer::new(&region, 5).unwrap_err(),
        SetupError::RegionTooSmall {
            needed: 68,
            available: 56
        }
    );
    let bad = zeroed(resp_region_size(4));
    bad[RESP_TAIL].store(5, Ordering::Relaxed);
    assert_eq!(
        BlkRespConsumer::new(&bad, 4).unwrap_err(),
        SetupError::Corrupt(QueueError::OutOfRange {
            head: 0,
            tail: 5,
            capacity: 4
        })
    );
    let q = zeroed(12);
    let data: Vec<AtomicU8> = (0..3).map(|_| AtomicU8::new(0)).collect();
    assert_eq!(
        SerialProducer::new(&q, &data, 4).unwrap_err(),
        SetupError::DataRegionTooSmall {
            needed: 4,
            available: 3
        }
    );
    assert_eq!(
        SerialConsumer::new(&q[..2], &data, 2).unwrap_err(),
        SetupError::RegionTooSmall {
            needed: 12,
            available: 8
        }
    );
}

/// The drivers print these errors on the console when a peer corrupts a queue: each message
/// names the failure and carries the values that were checked, and a wrapped error reads as
/// the error it wraps.
#[test]
fn errors_say_what_went_wrong() {
    let range = QueueError::OutOfRange {
        head: 5,
        tail: 17,
        capacity: 8,
    };
    assert_eq!(
        range.to_string(),
        "queue indices out of range: head 5, tail 17, capacity 8"
    );
    let regressed = QueueError::PeerIndexRegressed {
        previous: 12,
        observed: 11,
    };
    assert_eq!(
        regressed.to_string(),
        "peer index moved backwards from 12 to 11"
    );

    assert_eq!(EnqueueError::Full.to_string(), "queue full");
    assert_eq!(EnqueueError::Corrupt(range).to_string(), range.to_string());

    assert_eq!(
        SetupError::ZeroCapacity.to_string(),
        "queue capacity is zero"
    );
    assert!(
        SetupError::CapacityTooLarge
            .to_string()
            .contains("overflows")
    );
    assert_eq!(
        SetupError::RegionTooSmall {
            needed: 68,
            available: 56
        }
        .to_string(),
        "queue region too small: 56 bytes, 68 needed"
    );
    assert_eq!(
        SetupError::DataRegionTooSmall {
            needed: 4,
            available: 3
        }
        .to_string(),
        "data region too small: 3 bytes, 4 needed"
    );
    assert_eq!(
        SetupError::Corrupt(regressed).to_string(),
        regressed.to_string()
    );

    assert_eq!(RegionError::Null.to_string(), "shared region at address 0");
    assert_eq!(
        RegionError::Misaligned { addr: 0x1002 }.to_string(),
        "shared region at 0x1002 is misaligned"
    );
    assert!(RegionError::TooLarge.to_string().contains("too large"));
}

/// Attaching to a queue that is exactly full (`tail − head == capacity`, e.g. after the other
/// side restarted) is valid for both ends; one entry more is not.
#[test]
fn both_ends_attach_to_a_full_queue() {
    let region = zeroed(resp_region_size(4));
    region[RESP_HEAD].store(7, Ordering::Relaxed);
    region[RESP_TAIL].store(11, Ordering::Relaxed);
    let mut p = BlkRespProducer::new(&region, 4).unwrap();
    let mut c = BlkRespConsumer::new(&region, 4).unwrap();
    assert_eq!(p.free(), Ok(0));
    assert_eq!(
        p.enqueue(&BlkResp::new(BlkRespStatus::OK, 1, 1)),
        Err(EnqueueError::Full)
    );
    assert_eq!(c.available(), Ok(4));

    region[RESP_TAIL].store(12, Ordering::Relaxed);
    let over = SetupError::Corrupt(QueueError::OutOfRange {
        head: 7,
        tail: 12,
        capacity: 4,
    });
    assert_eq!(BlkRespProducer::new(&region, 4).unwrap_err(), over);
    assert_eq!(BlkRespConsumer::new(&region, 4).unwrap_err(), over);
}
