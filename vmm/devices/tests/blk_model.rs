//! Property: random sequences of aligned and unaligned reads and writes (and flushes), posted in
//! batches with random descriptor layouts, give the same results and the same disk contents
//! through virtio-blk as a plain byte-array disk — whatever the staging size (and so the number
//! of requests in progress at once, and the units in one backend operation), and whether the backend completes at once or later, in
//! order or newest first. With VIRTIO_F_EVENT_IDX the driver notifies only when the device's
//! `avail_event` asks for it and asks for an interrupt at the next used element: every request
//! still completes (the device re-arms `avail_event` whenever it finds the ring empty and comes
//! back to the ring by itself when a request slot frees) and every batch is interrupted.

mod common;

use common::*;
use proptest::prelude::*;
use vmm_devices::blk::{BlkConfig, blk_status, req_type};
use vmm_devices::feature::EVENT_IDX;
use vmm_devices::mmio::DeviceState;
use vmm_devices::queue::need_event;
use vmm_devices::testing::CompletionMode;

const BLOCKS: usize = 8;
const SECTORS: u64 = (BLOCKS * 8) as u64;

#[derive(Debug, Clone)]
enum Op {
    Read { sector: u64, n: u64 },
    Write { sector: u64, n: u64, seed: u64 },
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly inside the disk; some straddle or pass its end.
    let sector = prop_oneof![
        8 => 0..SECTORS,
        1 => SECTORS - 4..SECTORS + 4,
    ];
    prop_oneof![
        4 => (sector.clone(), 0u64..=24).prop_map(|(sector, n)| Op::Read { sector, n }),
        5 => (sector, 0u64..=24, any::<u64>())
            .prop_map(|(sector, n, seed)| Op::Write { sector, n, seed }),
        1 => Just(Op::Flush),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    staging_units: usize,
    deferred: bool,
    reverse: bool,
    event_idx: bool,
    batches: Vec<Vec<(Op, Vec<usize>)>>,
}

fn case() -> impl Strategy<Value = Case> {
    let item = (op(), prop::collection::vec(1usize..3000, 0..5));
    (
        // Up to 4 units: one unit per request slot; 8 to 16: two to four, so that a window
        // spans several units.
        prop_oneof![1usize..=4, 8usize..=16],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(item, 1..=6), 1..=8),
    )
        .prop_map(
            |(staging_units, deferred, reverse, event_idx, batches)| Case {
                staging_units,
                deferred,
                reverse,
                event_idx,
                batches,
            },
        )
}

/// `PROPTEST_CASES` if set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn virtio_blk_matches_byte_array_disk(c in case()) {
        let mut disk = pattern(1, BLOCKS * 4096);
        let mut model = disk.clone();
        let mut staging = vec![0u8; c.staging_units * 4096];
        let mode = if c.deferred { CompletionMode::Deferred } else { CompletionMode::Immediate };
        let extra = if c.event_idx { EVENT_IDX } else { 0 };
        let mut env = blk_env_with(&mut disk, &mut staging, mode, BlkConfig::default(), extra);
        for batch in &c.batches {
            let old_avail = env.vqs[0].avail_idx;
            let irqs = env.irqs;
            if c.event_idx {
                // As Linux does: an interrupt at the next used element.
                let seen = env.vqs[0].used_seen;
                env.set_used_event(0, seen);
            }
            let mut posted = Vec::new();
            for (op, split) in batch {
                let p = match *op {
                    Op::Read { sector, n } => {
                        env.post_request(req_type::IN, sector, &[], (n * 512) as usize, split)
                    }
                    Op::Write { sector, n, seed } => {
                        let data = pattern(seed, (n * 512) as usize);
                        env.post_request(req_type::OUT, sector, &data, 0, split)
                    }
                    Op::Flush => env.post_request(req_type::FLUSH, 0, &[], 0, split),
                };
                posted.push(p);
            }
            let new_avail = env.vqs[0].avail_idx;
            if !c.event_idx || need_event(env.avail_event(0), new_avail, old_avail) {
                let _ = env.notify(0);
            }
            env.drain(c.reverse);
            prop_assert!(env.irqs > irqs, "no interrupt for a batch");
            // Requests that share no unit may complete in any order; those that do take effect
            // in the order they were posted, so the model applies the batch in that order.
            let mut used = std::collections::HashMap::new();
            env.collect_used(&mut used);
            prop_assert_eq!(used.len(), posted.len());
            for ((op, _), p) in batch.iter().zip(&posted) {
                let done = env.results(p, &used);
                match *op {
                    Op::Read { sector, n } => {
                        if sector + n <= SECTORS {
                            prop_assert_eq!(done.status, blk_status::OK);
                            let s = sector as usize * 512;
                            prop_assert_eq!(&done.data[..], &model[s..s + n as usize * 512]);
                            prop_assert_eq!(done.used_len as u64, n * 512 + 1);
                        } else {
                            prop_assert_eq!(done.status, blk_status::IOERR);
                        }
                    }
                    Op::Write { sector, n, seed } => {
                        if sector + n <= SECTORS {
                            prop_assert_eq!(done.status, blk_status::OK);
                            let s = sector as usize * 512;
                            let data = pattern(seed, (n * 512) as usize);
                            model[s..s + data.len()].copy_from_slice(&data);
                        } else {
                            prop_assert_eq!(done.status, blk_status::IOERR);
                        }
                        prop_assert_eq!(done.used_len, 1);
                    }
                    Op::Flush => prop_assert_eq!(done.status, blk_status::OK),
                }
            }
            prop_assert_eq!(env.pop_used(0), None);
            prop_assert_eq!(env.t.device().backend().contents(), &model[..]);
        }
        prop_assert_eq!(env.t.state(), DeviceState::Live);
        prop_assert!(!env.t.device().busy());
        prop_assert_eq!(env.t.device().outstanding(), 0);
    }
}
