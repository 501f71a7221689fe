//! The block driver's restart handshake (`sddf_queue::restart`) and the client's queue reset:
//! a driver life waits for its acknowledgement, a client sees each new generation once, and a
//! reset queue is empty and unplugged whatever the dead driver left in its indices.
#![cfg(not(loom))]

use sddf_queue::blk::{BlkReqConsumer, BlkReqProducer, BlkRespConsumer, BlkRespProducer};
use sddf_queue::layout::{BlkReq, BlkReqCode, BlkResp, BlkRespStatus};
use sddf_queue::restart::{ACK_OFFSET, ClientSync, DriverLife, GENERATION_OFFSET, next_generation};
use sddf_queue::sync::{AtomicU32, Ordering};
use sddf_queue::{SetupError, blk};

fn zeroed(bytes: usize) -> Vec<AtomicU32> {
    (0..bytes / 4).map(|_| AtomicU32::new(0)).collect()
}

#[test]
fn the_handshake_words_sit_where_the_layout_says_and_nowhere_else() {
    // The generation at byte 2048 and the acknowledgement at byte 2112 of the storage-info
    // page, past sDDF's storage information (its first 88 bytes), which they must not touch.
    let info = zeroed(4096);
    for w in &info[..88 / 4] {
        w.store(0x5a5a_5a5a, Ordering::Relaxed);
    }
    let life = DriverLife::begin(&info).unwrap();
    let mut client = ClientSync::new(&info).unwrap();
    client.acknowledge(life.generation());
    let at = |byte: usize| info[byte / 4].load(Ordering::Relaxed);
    assert_eq!((at(GENERATION_OFFSET), at(ACK_OFFSET)), (1, 1));
    assert_eq!((GENERATION_OFFSET, ACK_OFFSET), (2048, 2112));
    let others: Vec<_> = (0..info.len())
        .filter(|&i| i * 4 != GENERATION_OFFSET && i * 4 != ACK_OFFSET)
        .map(|i| (i, info[i].load(Ordering::Relaxed)))
        .filter(|&(i, v)| v != if i < 88 / 4 { 0x5a5a_5a5a } else { 0 })
        .collect();
    assert_eq!(others, vec![], "words other than the two changed");
}

#[test]
fn each_life_waits_for_its_own_acknowledgement() {
    let info = zeroed(4096);
    let mut client = ClientSync::new(&info).unwrap();
    assert_eq!(client.pending(), None, "no driver yet");
    let first = DriverLife::begin(&info).unwrap();
    assert_eq!(first.generation(), 1);
    assert!(!first.acknowledged());
    assert_eq!(client.pending(), Some(1));
    client.acknowledge(1);
    assert!(first.acknowledged());
    assert_eq!(client.pending(), None);
    assert_eq!(client.acknowledged(), 1);
    // The driver dies and starts again: the old acknowledgement does not open the queues.
    let second = DriverLife::begin(&info).unwrap();
    assert_eq!(second.generation(), 2);
    assert!(!second.acknowledged());
    assert_eq!(client.pending(), Some(2));
    // Twice more before the client runs: it sees only the latest.
    DriverLife::begin(&info).unwrap();
    let fourth = DriverLife::begin(&info).unwrap();
    assert_eq!(client.pending(), Some(4));
    client.acknowledge(4);
    assert!(fourth.acknowledged() && !second.acknowledged());
    assert_eq!(
        client.acknowledged(),
        4,
        "the generation it acknowledged last"
    );
}

#[test]
fn generations_skip_zero_and_small_regions_are_refused() {
    assert_eq!(next_generation(0), 1);
    assert_eq!(next_generation(7), 8);
    assert_eq!(next_generation(u32::MAX), 1);
    let info = zeroed(4096);
    info[2048 / 4].store(u32::MAX, Ordering::Relaxed);
    assert_eq!(DriverLife::begin(&info).unwrap().generation(), 1);
    let small = zeroed(ACK_OFFSET);
    assert_eq!(
        DriverLife::begin(&small).unwrap_err(),
        SetupError::RegionTooSmall {
            needed: ACK_OFFSET + 4,
            available: ACK_OFFSET
        }
    );
    assert!(ClientSync::new(&small).is_err());
    assert!(ClientSync::new(&zeroed(ACK_OFFSET + 4)).is_ok());
}

#[test]
fn a_reset_empties_both_queues_whatever_the_dead_driver_left() {
    let req = zeroed(blk::req_region_size(8));
    let resp = zeroed(blk::resp_region_size(8));
    let mut p = BlkReqProducer::new(&req, 8).unwrap();
    for id in 0..5 {
        p.enqueue(&BlkReq::new(BlkReqCode::READ, 0, id.into(), 1, id))
            .unwrap();
    }
    p.plug();
    assert!(BlkReqConsumer::new(&req, 8).is_ok());
    // The dead driver took two (the queue is plugged, so set up its head by hand) and left
    // garbage in the response queue's tail.
    req[0].store(2, Ordering::Release);
    resp[1].store(0xdead_beef, Ordering::Release);
    assert!(BlkRespConsumer::new(&resp, 8).is_err(), "corrupt as left");
    let mut p = BlkReqProducer::reset(&req, 8).unwrap();
    let mut r = BlkRespConsumer::reset(&resp, 8).unwrap();
    assert!(!p.is_plugged());
    assert_eq!(p.free().unwrap(), 8);
    assert_eq!(r.available().unwrap(), 0);
    // The new driver attaches to empty queues and sees only what is queued again.
    p.enqueue(&BlkReq::new(BlkReqCode::WRITE, 0, 9, 1, 42))
        .unwrap();
    let mut c = BlkReqConsumer::new(&req, 8).unwrap();
    assert_eq!(c.dequeue().unwrap().map(|q| q.id), Some(42));
    assert_eq!(c.dequeue().unwrap(), None);
    let mut w = BlkRespProducer::new(&resp, 8).unwrap();
    w.enqueue(&BlkResp::new(BlkRespStatus::OK, 1, 42)).unwrap();
    assert_eq!(r.dequeue().unwrap().map(|x| x.id), Some(42));
}
