//! The virtualiser held to a reference model: each client owns a disk of its partition's
//! blocks, and nothing else. Random sequences of reads, writes (in and out of the partition),
//! flushes, hostile requests, driver completions and driver crashes go through blk_virt (in its
//! system.xml scope, with a second client added: `tests/support`) and a simulated driver; then
//!
//! - every request is answered exactly once, to its own client, with its own id, OK when the
//!   model says it is well-formed and inside the partition, ERR_INVALID_PARAM otherwise;
//! - each read returns what the model held when it was submitted (a client's requests run in
//!   its order, through restarts too);
//! - each client's partition of the disk equals its model disk;
//! - every request the driver ever saw lies inside the partition of the client whose data
//!   window its offset is in: no client's request touches another's blocks.

mod support;

use proptest::prelude::*;
use sddf_queue::layout::{BlkReq, BlkReqCode, BlkRespStatus};
use std::collections::BTreeMap;
use support::*;

const BLOCKS: usize = 64;
const SLOTS: usize = 4;
const SLOT_UNITS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Write {
        client: usize,
        block: u64,
        count: u16,
        seed: u8,
    },
    Read {
        client: usize,
        block: u64,
        count: u16,
    },
    Flush {
        client: usize,
    },
    Hostile {
        client: usize,
        kind: u8,
        x: u64,
    },
    Complete(usize),
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..2usize;
    prop_oneof![
        4 => (client.clone(), 0..40u64, 1..=SLOT_UNITS as u16, any::<u8>())
            .prop_map(|(client, block, count, seed)| Op::Write { client, block, count, seed }),
        3 => (client.clone(), 0..40u64, 1..=SLOT_UNITS as u16)
            .prop_map(|(client, block, count)| Op::Read { client, block, count }),
        1 => client.clone().prop_map(|client| Op::Flush { client }),
        2 => (client, 0..4u8, any::<u64>()).prop_map(|(client, kind, x)| Op::Hostile { client, kind, x }),
        3 => (0..6usize).prop_map(Op::Complete),
        1 => Just(Op::Crash),
    ]
}

/// What the model expects of a request in flight.
struct Expect {
    status: BlkRespStatus,
    /// A read's expected bytes, at its data offset.
    read: Option<(usize, Vec<u8>)>,
    slot: Option<usize>,
}

struct Client {
    model: Vec<u8>,
    part_blocks: u64,
    free: Vec<usize>,
    next_id: u32,
    pending: BTreeMap<u32, Expect>,
}

fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut rig = Rig::with(Opts {
        system: two_client_system_text(),
        blocks: BLOCKS,
        hold: true,
        ..Opts::default()
    });
    let parts: Vec<_> = (0..2).map(|i| rig.virt.partition(i).unwrap()).collect();
    let mut cl: Vec<Client> = parts
        .iter()
        .map(|p| Client {
            model: vec![0; p.blocks as usize * UNIT],
            part_blocks: p.blocks,
            free: (0..SLOTS).rev().collect(),
            next_id: 1,
            pending: BTreeMap::new(),
        })
        .collect();
    let data_size: Vec<u64> = rig.clients.iter().map(|c| c.cfg.data_size).collect();

    let take = |rig: &mut Rig, cl: &mut Vec<Client>| -> Result<(), TestCaseError> {
        for (i, c) in cl.iter_mut().enumerate() {
            for r in rig.clients[i].responses() {
                let Some(e) = c.pending.remove(&r.id) else {
                    return Err(TestCaseError::fail(format!(
                        "client {i}: response {r:?} for no request in flight (or twice)"
                    )));
                };
                prop_assert_eq!(r.status, e.status, "client {} id {}", i, r.id);
                if let Some((off, bytes)) = e.read {
                    prop_assert!(
                        rig.drv.data[i][off..off + bytes.len()] == bytes[..],
                        "client {} read id {} returned other bytes",
                        i,
                        r.id
                    );
                }
                if let Some(s) = e.slot {
                    c.free.push(s);
                }
            }
        }
        Ok(())
    };

    for op in ops {
        match op {
            Op::Write {
                client: i,
                block,
                count,
                ..
            }
            | Op::Read {
                client: i,
                block,
                count,
                ..
            } if !cl[i].free.is_empty() => {
                let is_write = matches!(op, Op::Write { .. });
                let slot = cl[i].free.pop().unwrap();
                let off = slot * SLOT_UNITS * UNIT;
                let len = count as usize * UNIT;
                let id = cl[i].next_id;
                cl[i].next_id += 1;
                let inside = block + u64::from(count) <= cl[i].part_blocks;
                let at = block as usize * UNIT;
                let mut read = None;
                if is_write {
                    let seed = if let Op::Write { seed, .. } = op {
                        seed
                    } else {
                        0
                    };
                    for (k, b) in rig.drv.data[i][off..off + len].iter_mut().enumerate() {
                        *b = seed.wrapping_add((k / 64) as u8).wrapping_mul(31);
                    }
                    if inside {
                        let src = rig.drv.data[i][off..off + len].to_vec();
                        cl[i].model[at..at + len].copy_from_slice(&src);
                    }
                } else if inside {
                    read = Some((off, cl[i].model[at..at + len].to_vec()));
                }
                let code = if is_write {
                    BlkReqCode::WRITE
                } else {
                    BlkReqCode::READ
                };
                let status = if inside {
                    BlkRespStatus::OK
                } else {
                    BlkRespStatus::ERR_INVALID_PARAM
                };
                // A refused request frees its slot when answered; an accepted one too.
                cl[i].pending.insert(
                    id,
                    Expect {
                        status,
                        read,
                        slot: Some(slot),
                    },
                );
                rig.submit(i, &[BlkReq::new(code, off as u64, block, count, id)]);
            }
            Op::Write { .. } | Op::Read { .. } => {}
            Op::Flush { client: i } => {
                let id = cl[i].next_id;
                cl[i].next_id += 1;
                cl[i].pending.insert(
                    id,
                    Expect {
                        status: BlkRespStatus::OK,
                        read: None,
                        slot: None,
                    },
                );
                rig.submit(i, &[BlkReq::new(BlkReqCode::FLUSH, 0, 0, 0, id)]);
            }
            Op::Hostile { client: i, kind, x } => {
                let id = cl[i].next_id;
                cl[i].next_id += 1;
                let p = cl[i].part_blocks;
                let r = match kind {
                    // An unknown code.
                    0 => BlkReq::new(BlkReqCode(4 + (x % 1000) as u32), 0, 0, 1, id),
                    // 0 blocks.
                    1 => BlkReq::new(BlkReqCode::WRITE, 0, x % p, 0, id),
                    // Past the partition's end, up to overflow.
                    2 => {
                        let count = 1 + (x % 8) as u16;
                        let block = (p - u64::from(count) + 1).saturating_add(x >> 8);
                        BlkReq::new(BlkReqCode::WRITE, 0, block, count, id)
                    }
                    // Data past the client's region.
                    _ => {
                        let off = (data_size[i] - UNIT as u64 + 1).saturating_add(x >> 4);
                        BlkReq::new(BlkReqCode::WRITE, off, 0, 1, id)
                    }
                };
                cl[i].pending.insert(
                    id,
                    Expect {
                        status: BlkRespStatus::ERR_INVALID_PARAM,
                        read: None,
                        slot: None,
                    },
                );
                rig.submit(i, &[r]);
            }
            Op::Complete(n) => {
                rig.drv.complete(n);
                rig.settle();
            }
            Op::Crash => {
                rig.drv.crash_and_restart();
                rig.notify_from_driver();
                rig.settle();
            }
        }
        take(&mut rig, &mut cl)?;
    }
    // Drain: the driver answers everything.
    for _ in 0..100 {
        rig.drv.complete(usize::MAX);
        rig.settle();
        take(&mut rig, &mut cl)?;
        if cl.iter().all(|c| c.pending.is_empty()) {
            break;
        }
    }
    for (i, c) in cl.iter().enumerate() {
        prop_assert!(
            c.pending.is_empty(),
            "client {} unanswered: {:?}",
            i,
            c.pending.keys()
        );
        let p = parts[i];
        let at = p.start as usize * UNIT;
        prop_assert!(
            rig.drv.disk[at..at + c.model.len()] == c.model[..],
            "client {}'s partition differs from its model",
            i
        );
    }
    for s in &rig.drv.seen {
        if !matches!(s.req.code, BlkReqCode::READ | BlkReqCode::WRITE) {
            continue;
        }
        let Some(w) = s.window else {
            return Err(TestCaseError::fail(format!(
                "the driver got an offset in no client's window: {:?}",
                s.req
            )));
        };
        let p = parts[w];
        prop_assert!(
            s.req.block_number >= p.start
                && s.req.block_number + u64::from(s.req.count) <= p.start + p.blocks,
            "client {}'s request reached blocks outside its partition: {:?}",
            w,
            s.req
        );
    }
    prop_assert!(rig.sim.violations().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_client_sees_its_own_disk_and_nothing_else(ops in prop::collection::vec(op(), 1..60)) {
        check(ops)?;
    }
}
