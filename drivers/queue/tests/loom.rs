//! loom models of the SPSC protocol and the signalling handshakes. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p sddf-queue --test loom --release`.
//!
//! Small on purpose (capacity 1–2, 2–3 items): loom explores the interleavings and the values
//! each Relaxed/Acquire load may return under the C11 model (SeqCst fences included).
//!
//! Both handles are attached before the second thread starts, as PDs attach at init: loom's
//! DPOR tracks one last access per location, so a thread's own load of a location it later
//! stores would hide the other thread's earlier load, and the race between them would go
//! unexplored. Each model also asserts a minimum number of explored executions, so that a
//! change that collapses the exploration fails instead of passing vacuously.
#![cfg(loom)]

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use loom::thread;
use sddf_queue::blk::{req_region_size, resp_region_size};
use sddf_queue::sync::{AtomicU8, AtomicU16, AtomicU32, Ordering};
use sddf_queue::*;

/// Runs `f` under loom and asserts that at least `min` executions were explored.
fn model(min: usize, f: impl Fn() + Sync + Send + 'static) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    loom::model(move || {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let n = count.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n >= min, "only {n} executions explored");
}

/// A shared region for one execution (leaked, so that handles can move into threads).
fn words(n: usize, init: &[u32]) -> &'static [AtomicU32] {
    Box::leak(
        (0..n)
            .map(|i| AtomicU32::new(init.get(i).copied().unwrap_or(0)))
            .collect(),
    )
}

fn bytes(n: usize) -> &'static [AtomicU8] {
    Box::leak((0..n).map(|_| AtomicU8::new(0)).collect())
}

/// Queued entries after both threads finished (`tail − head`).
fn queued(head: &AtomicU32, tail: &AtomicU32) -> u32 {
    tail.load(Ordering::Relaxed)
        .wrapping_sub(head.load(Ordering::Relaxed))
}

/// Every byte delivered once, in order, across the wrap of a 2-byte ring.
#[test]
fn serial_fifo() {
    model(100, || {
        const CAP: u32 = 2;
        let (queue, data) = (words(3, &[]), bytes(CAP as usize));
        let mut p = SerialProducer::new(queue, data, CAP).unwrap();
        let mut c = SerialConsumer::new(queue, data, CAP).unwrap();
        let producer = thread::spawn(move || {
            for b in 1..=3u8 {
                loop {
                    match p.enqueue(b) {
                        Ok(()) => break,
                        Err(EnqueueError::Full) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        for expect in 1..=3u8 {
            loop {
                match c.dequeue().unwrap() {
                    Some(b) => {
                        assert_eq!(b, expect);
                        break;
                    }
                    None => thread::yield_now(),
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(c.dequeue(), Ok(None));
    });
}

fn resp(i: u32) -> BlkResp {
    BlkResp::new(BlkRespStatus(0x100 + i), 0x200 + i as u16, 0x300 + i)
}

/// Every response delivered once, in order, never torn (each word differs per item).
#[test]
fn blk_resp_fifo() {
    model(100, || {
        const CAP: u32 = 2;
        let region = words(resp_region_size(CAP) / 4, &[]);
        let mut p = BlkRespProducer::new(region, CAP).unwrap();
        let mut c = BlkRespConsumer::new(region, CAP).unwrap();
        let producer = thread::spawn(move || {
            for i in 0..3 {
                loop {
                    match p.enqueue(&resp(i)) {
                        Ok(()) => break,
                        Err(EnqueueError::Full) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        for i in 0..3 {
            loop {
                match c.dequeue().unwrap() {
                    Some(got) => {
                        assert_eq!(got, resp(i));
                        break;
                    }
                    None => thread::yield_now(),
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(c.dequeue(), Ok(None));
    });
}

fn req(i: u64) -> BlkReq {
    BlkReq::new(
        BlkReqCode(1 + i as u32),
        0x1111_0000_0000_2222 + i,
        0x3333_0000_0000_4444 + i,
        5 + i as u16,
        6 + i as u32,
    )
}

/// Requests (8 words each) through a 1-slot ring: delivered in order, never torn.
#[test]
fn blk_req_fifo() {
    model(100, || {
        const CAP: u32 = 1;
        let region = words(req_region_size(CAP) / 4, &[]);
        let mut p = BlkReqProducer::new(region, CAP).unwrap();
        let mut c = BlkReqConsumer::new(region, CAP).unwrap();
        let producer = thread::spawn(move || {
            for i in 0..2 {
                loop {
                    match p.enqueue(&req(i)) {
                        Ok(()) => break,
                        Err(EnqueueError::Full) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        for i in 0..2 {
            loop {
                match c.dequeue().unwrap() {
                    Some(got) => {
                        assert_eq!(got, req(i));
                        break;
                    }
                    None => thread::yield_now(),
                }
            }
        }
        producer.join().unwrap();
    });
}

/// Space signal (sDDF's `producer_signalled` handshake): a producer that found the ring full
/// and went to sleep (`Registered`) gets a notification — the consumer decided to notify —
/// unless the ring is still full, i.e. nobody freed space. No lost wake-up.
#[test]
fn serial_space_signal_no_lost_wakeup() {
    model(10, || {
        const CAP: u32 = 1;
        // producer_signalled = 1: no request outstanding at start.
        let (queue, data) = (words(3, &[0, 0, 1]), bytes(CAP as usize));
        let mut p = SerialProducer::new(queue, data, CAP).unwrap();
        let mut c = SerialConsumer::new(queue, data, CAP).unwrap();
        let producer = thread::spawn(move || {
            let mut sent = 0u8;
            while sent < 2 {
                match p.enqueue(sent) {
                    Ok(()) => sent += 1,
                    Err(EnqueueError::Full) => match p.request_signal().unwrap() {
                        SignalRequest::Reprocess => {}
                        SignalRequest::Registered => return true,
                    },
                    Err(e) => panic!("{e}"),
                }
            }
            false
        });
        // One activation of the consumer: drain, then the notification phase.
        while c.dequeue().unwrap().is_some() {}
        let notified = c.take_notify();
        let slept = producer.join().unwrap();
        if slept && !notified {
            assert_eq!(queued(&queue[1], &queue[0]), CAP, "lost wake-up");
        }
    });
}

/// Data signal: a consumer that drained the ring and went to sleep with data still pending
/// has a notification coming — the producer decided to notify after publishing.
#[test]
fn serial_data_signal_no_lost_wakeup() {
    model(3, || {
        const CAP: u32 = 2;
        let (queue, data) = (words(3, &[0, 0, 1]), bytes(CAP as usize));
        let mut p = SerialProducer::new(queue, data, CAP).unwrap();
        let mut c = SerialConsumer::new(queue, data, CAP).unwrap();
        let producer = thread::spawn(move || {
            p.enqueue_local(7).unwrap();
            p.enqueue_local(8).unwrap();
            p.publish();
            p.take_notify()
        });
        let mut got = Vec::new();
        while let Some(b) = c.dequeue().unwrap() {
            got.push(b);
        }
        let notified = producer.join().unwrap();
        assert!(got.is_empty() || got == [7, 8], "{got:?}");
        if queued(&queue[1], &queue[0]) > 0 {
            assert!(notified, "lost wake-up");
        }
    });
}

/// Block `plugged`: while plugged nothing is dequeued and no notification is due; unplugging
/// returns the deferred one, so a driver that stopped with requests pending is woken.
#[test]
fn blk_plug_no_lost_wakeup() {
    model(3, || {
        const CAP: u32 = 2;
        let region = words(req_region_size(CAP) / 4, &[]);
        let mut p = BlkReqProducer::new(region, CAP).unwrap();
        let mut c = BlkReqConsumer::new(region, CAP).unwrap();
        let producer = thread::spawn(move || {
            p.plug();
            p.enqueue(&req(0)).unwrap();
            assert!(!p.take_notify());
            p.unplug()
        });
        let mut got = Vec::new();
        while let Some(x) = c.dequeue().unwrap() {
            got.push(x);
        }
        let notified = producer.join().unwrap();
        assert!(got.is_empty() || got == [req(0)]);
        if queued(&region[0], &region[1]) > 0 {
            assert!(notified, "lost wake-up");
        }
    });
}

/// The restart handshake (`sddf_queue::restart`): a restarted driver announces its generation
/// and waits; the client resets both queues, queues again the request the dead driver had
/// taken, and acknowledges. Once the driver sees the acknowledgement, it attaches and finds
/// exactly that request, whole: the acknowledgement's Release/Acquire covers the client's
/// index and entry writes (a Relaxed acknowledgement lets the driver read a stale tail or
/// entry here).
#[test]
fn restart_handshake() {
    use sddf_queue::layout::{BlkReq, BlkReqCode};
    use sddf_queue::restart::{ACK_OFFSET, ClientSync, DriverLife};
    model(15, || {
        const CAP: u32 = 2;
        let req = words(req_region_size(CAP) / 4, &[]);
        let info = words(ACK_OFFSET / 4 + 1, &[]);
        // Life 1: acknowledged; the client queued request 7; the driver took it and died.
        let mut client = ClientSync::new(info).unwrap();
        let first = DriverLife::begin(info).unwrap();
        client.acknowledge(first.generation());
        let mut p = BlkReqProducer::new(req, CAP).unwrap();
        let lost = BlkReq::new(BlkReqCode::WRITE, 0x2000, 5, 1, 7);
        p.enqueue(&lost).unwrap();
        let mut old = BlkReqConsumer::new(req, CAP).unwrap();
        assert_eq!(old.dequeue().unwrap(), Some(lost));
        // Life 2.
        let driver = thread::spawn(move || {
            let life = DriverLife::begin(info).unwrap();
            assert_eq!(life.generation(), 2);
            while !life.acknowledged() {
                thread::yield_now();
            }
            let mut c = BlkReqConsumer::new(req, CAP).unwrap();
            assert_eq!(c.dequeue().unwrap(), Some(lost));
            assert_eq!(c.dequeue().unwrap(), None);
        });
        let g = loop {
            match client.pending() {
                Some(g) => break g,
                None => thread::yield_now(),
            }
        };
        assert_eq!(g, 2);
        let mut p = BlkReqProducer::reset(req, CAP).unwrap();
        p.enqueue(&lost).unwrap();
        client.acknowledge(g);
        driver.join().unwrap();
    });
}

/// A network queue region of `n` half words, `tail`/`head` at `start` (leaked, as [`words`]).
fn halves(n: usize, start: u16, flag: u16) -> &'static [AtomicU16] {
    Box::leak(
        (0..n)
            .map(|i| {
                AtomicU16::new(match i {
                    0 | 1 => start,
                    2 => flag,
                    _ => 0,
                })
            })
            .collect(),
    )
}

/// Network buffer descriptors (8 half words each) through a 2-slot ring whose 16-bit indices
/// wrap at the second item: delivered in order, never torn (every half word differs per item).
#[test]
fn net_fifo_across_the_16_bit_wrap() {
    fn desc(i: u64) -> NetBuffDesc {
        NetBuffDesc::with_oid(0x1111_2222_3333_4444 * (i + 1), 60 + i as u16, 1 + i as u8)
    }
    model(100, || {
        const CAP: u32 = 2;
        let q = halves(net::region_size(CAP) / 2, u16::MAX, 1);
        let mut p = NetProducer::new(q, CAP).unwrap();
        let mut c = NetConsumer::new(q, CAP).unwrap();
        let producer = thread::spawn(move || {
            for i in 0..3 {
                loop {
                    match p.enqueue(&desc(i)) {
                        Ok(()) => break,
                        Err(EnqueueError::Full) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        for i in 0..3 {
            loop {
                match c.dequeue().unwrap() {
                    Some(got) => {
                        assert_eq!(got, desc(i));
                        break;
                    }
                    None => thread::yield_now(),
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(c.dequeue(), Ok(None));
        assert_eq!(q[0].load(Ordering::Relaxed), 2, "tail wrapped");
    });
}

/// The network consumer signal (`consumer_signalled`): a consumer that drained the queue and
/// went to sleep (`Registered`) gets a notification — the producer decided to notify — unless
/// the queue is still empty. No lost wake-up, whichever way the request and the publication
/// interleave.
#[test]
fn net_consumer_signal_no_lost_wakeup() {
    model(10, || {
        const CAP: u32 = 2;
        // consumer_signalled = 1: no request outstanding at start.
        let q = halves(net::region_size(CAP) / 2, 0, 1);
        let mut p = NetProducer::new(q, CAP).unwrap();
        let mut c = NetConsumer::new(q, CAP).unwrap();
        let producer = thread::spawn(move || {
            p.enqueue(&NetBuffDesc::new(0x800, 64)).unwrap();
            p.take_notify()
        });
        // One activation of the consumer: drain, register, re-check (sDDF's reprocess loop).
        let slept = loop {
            while c.dequeue().unwrap().is_some() {}
            match c.request_signal().unwrap() {
                SignalRequest::Registered => break true,
                SignalRequest::Reprocess => {}
            }
        };
        let notified = producer.join().unwrap();
        if slept && !notified {
            assert_eq!(
                q[0].load(Ordering::Relaxed)
                    .wrapping_sub(q[1].load(Ordering::Relaxed)),
                0,
                "lost wake-up"
            );
        }
    });
}
