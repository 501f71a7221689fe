//! blk_virt driven through its Microkit interface, in the scope a system description gives it:
//! the repository's system.xml (one client, the vmm) and, for partitioning and routing, that
//! file with a second client `vmm2` added the way a second VMM will be (its queues, data region,
//! channel; the driver told the region's address). The driver and the clients are simulated at
//! the far ends of the real shared queues (`tests/support`).

mod support;

use blk_virt::decode::Partition;
use blk_virt::{DRIVER, IN_FLIGHT, clients::CLIENTS, system};
use microkit_sim::Invocation;
use sddf_queue::layout::{BlkReq, BlkReqCode, BlkRespStatus};
use sddf_queue::sync::Ordering;
use support::*;

#[test]
fn the_client_table_is_read_from_system_xml_and_the_virtualiser_maps_no_data() {
    assert_eq!(CLIENTS.len(), 1);
    let c = CLIENTS[0];
    assert_eq!(
        (c.name, c.channel, c.req_queue, c.data_base, c.data_size),
        ("vmm", system::VMM, "blk_req_queue_vmm", 0, 0x40_0000)
    );
    let sim = microkit_sim::Sim::from_repo_system("blk_virt");
    let scope = sim.scope();
    assert!(scope.maps.iter().all(|m| !m.mr.starts_with("blk_data_")));
    assert!(system::PADDRS.is_empty());
    // The driver's data space, as blk_driver builds it from the same file.
    let sys = sdf::parse(&repo_system_text()).unwrap();
    let space = sdf::blk::data_space(&sys, "blk_driver");
    assert_eq!(space.len(), 1);
    assert_eq!((space[0].base, space[0].size), (c.data_base, c.data_size));
    // A second client is placed after the first in the driver's space.
    let two = sdf::parse(&two_client_system_text()).unwrap();
    let t = client_table(&two);
    assert_eq!(t.len(), 2);
    assert_eq!(
        (t[1].name, t[1].data_base, t[1].data_size),
        ("vmm2", 0x40_0000, 0x1_0000)
    );
}

#[test]
fn at_start_the_driver_is_acknowledged_and_the_one_client_sees_the_whole_disk() {
    let mut rig = Rig::new();
    assert_eq!(rig.virt.driver_generation(), 1);
    assert_eq!(rig.drv.generation(), 1);
    let info = rig.clients[0].info.read().expect("ready");
    assert_eq!(info.capacity, 64);
    assert_eq!(info.block_size, 1);
    assert_eq!(
        rig.virt.partition(0),
        Some(Partition {
            start: 0,
            blocks: 64
        })
    );
    // It told the driver (the acknowledgement) and the client (its life), nothing else.
    assert!(rig.log.contains(&Invocation::Notify(DRIVER.index())));
    assert!(rig.log.contains(&Invocation::Notify(system::VMM.index())));
    assert!(
        rig.sim.violations().is_empty(),
        "{:?}",
        rig.sim.violations()
    );
    rig.collect();
    assert!(
        rig.text
            .contains("blk_virt: client 0 (vmm): blocks 0..64 of 64 (64 blocks)")
    );
    // A write and a read back, end to end, through the whole disk's last block.
    rig.data(0)[..UNIT].fill(0xa5);
    rig.submit(0, &[write(0, 63, 1, 11)]);
    assert_eq!(rig.clients[0].responses(), [ok(1, 11)]);
    assert!(rig.drv.disk[63 * UNIT..].iter().all(|b| *b == 0xa5));
    rig.data(0)[UNIT..2 * UNIT].fill(0);
    rig.submit(0, &[read(UNIT, 63, 1, 12)]);
    assert_eq!(rig.clients[0].responses(), [ok(1, 12)]);
    assert!(rig.drv.data[0][UNIT..2 * UNIT].iter().all(|b| *b == 0xa5));
    assert!(
        rig.sim.violations().is_empty(),
        "{:?}",
        rig.sim.violations()
    );
}

#[test]
fn two_clients_get_equal_partitions_their_own_capacity_and_their_own_blocks() {
    let mut rig = Rig::two_clients();
    assert_eq!(
        rig.virt.partition(0),
        Some(Partition {
            start: 0,
            blocks: 32
        })
    );
    assert_eq!(
        rig.virt.partition(1),
        Some(Partition {
            start: 32,
            blocks: 32
        })
    );
    for c in &rig.clients {
        assert_eq!(c.info.read().expect("ready").capacity, 32);
    }
    // Both write their block 0 with the same id: each lands in its own partition, each
    // answer goes to its own client with its own id.
    rig.data(0)[..UNIT].fill(1);
    rig.data(1)[..UNIT].fill(2);
    rig.clients[0].req.enqueue(&write(0, 0, 1, 7)).unwrap();
    rig.clients[1].req.enqueue(&write(0, 0, 1, 7)).unwrap();
    rig.notify_from_client(0);
    rig.notify_from_client(1);
    rig.settle();
    assert_eq!(rig.clients[0].responses(), [ok(1, 7)]);
    assert_eq!(rig.clients[1].responses(), [ok(1, 7)]);
    assert!(rig.drv.disk[..UNIT].iter().all(|b| *b == 1));
    assert!(rig.drv.disk[32 * UNIT..33 * UNIT].iter().all(|b| *b == 2));
    // The driver saw two different ids, and each offset in its own client's window.
    let seen = &rig.drv.seen;
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0].req.id, seen[1].req.id);
    let mut windows: Vec<_> = seen.iter().map(|s| s.window).collect();
    windows.sort();
    assert_eq!(windows, [Some(0), Some(1)]);
    // Read back crosswise: each client reads its own block 0.
    rig.submit(1, &[read(UNIT, 0, 1, 1)]);
    assert_eq!(rig.clients[1].responses(), [ok(1, 1)]);
    assert!(rig.drv.data[1][UNIT..2 * UNIT].iter().all(|b| *b == 2));
    assert!(rig.clients[0].responses().is_empty());
    // Each client was notified only for its own answers.
    assert!(
        rig.sim.violations().is_empty(),
        "{:?}",
        rig.sim.violations()
    );
}

#[test]
fn a_request_outside_its_partition_is_refused_counted_and_never_reaches_the_driver() {
    let mut rig = Rig::two_clients();
    let before = rig.drv.seen.len();
    rig.submit(
        0,
        &[
            write(0, 31, 2, 1),      // one block past client 0's end: client 1's block 0
            write(0, 32, 1, 2),      // client 1's first block
            read(0, u64::MAX, 1, 3), // block + count overflows
            read(0, u64::MAX - 1, 2, 4),
        ],
    );
    assert_eq!(
        rig.clients[0].responses(),
        [invalid(1), invalid(2), invalid(3), invalid(4)]
    );
    assert_eq!(rig.drv.seen.len(), before, "nothing reached the driver");
    let s = rig.virt.client_stats(0).unwrap();
    assert_eq!((s.outside_partition, s.malformed, s.forwarded), (4, 0, 0));
    assert_eq!(rig.virt.client_stats(1).unwrap().outside_partition, 0);
    assert!(rig.drv.disk.iter().all(|b| *b == 0));
    // The last block of its own partition is fine.
    rig.submit(0, &[write(0, 31, 1, 5)]);
    assert_eq!(rig.clients[0].responses(), [ok(1, 5)]);
    rig.collect();
    assert!(
        rig.text
            .contains("blk_virt: vmm refused (OutsidePartition, 1 so far)")
    );
}

#[test]
fn malformed_requests_are_refused_and_counted_apart() {
    let mut rig = Rig::two_clients();
    let data = rig.clients[1].cfg.data_size as usize;
    rig.submit(
        1,
        &[
            BlkReq::new(BlkReqCode(4), 0, 0, 1, 1),
            BlkReq::new(BlkReqCode(u32::MAX), 0, 0, 1, 2),
            read(0, 0, 0, 3),               // 0 blocks
            read(data - UNIT, 0, 2, 4),     // leaves its data region
            write(data, 0, 1, 5),           // starts past it
            read(usize::MAX - 10, 0, 1, 6), // offset + length overflows
        ],
    );
    assert_eq!(
        rig.clients[1].responses(),
        [
            invalid(1),
            invalid(2),
            invalid(3),
            invalid(4),
            invalid(5),
            invalid(6)
        ]
    );
    let s = rig.virt.client_stats(1).unwrap();
    assert_eq!((s.malformed, s.outside_partition, s.forwarded), (6, 0, 0));
    assert!(rig.drv.seen.is_empty());
    // Client 1's data region is 64 KiB: an offset valid for client 0 (4 MiB) is not for it,
    // so it can never reach into client 0's window through the driver's data space.
    rig.submit(1, &[read(0x10_0000, 0, 1, 7)]);
    assert_eq!(rig.clients[1].responses(), [invalid(7)]);
    // Flush and barrier go through (their other fields ignored).
    rig.submit(
        1,
        &[
            BlkReq::new(BlkReqCode::FLUSH, 123, u64::MAX, 9, 8),
            BlkReq::new(BlkReqCode::BARRIER, 0, 0, 0, 9),
        ],
    );
    assert_eq!(rig.clients[1].responses(), [ok(0, 8), ok(0, 9)]);
    let seen: Vec<_> = rig
        .drv
        .seen
        .iter()
        .map(|s| (s.req.code, s.req.block_number))
        .collect();
    assert_eq!(seen, [(BlkReqCode::FLUSH, 0), (BlkReqCode::BARRIER, 0)]);
}

#[test]
fn a_full_table_leaves_requests_in_the_client_queues_and_drops_none() {
    let mut rig = Rig::with(Opts {
        system: two_client_system_text(),
        blocks: 256,
        hold: true,
        ..Opts::default()
    });
    // 2 × 64 one-block writes: more than the table holds, both queues full before the
    // virtualiser runs.
    for i in 0..2 {
        for n in 0..CAP {
            let r = write((n as usize % 16) * UNIT, n as u64, 1, 1000 + n);
            rig.clients[i].req.enqueue(&r).unwrap();
        }
    }
    rig.notify_from_client(0);
    rig.settle();
    assert_eq!(rig.virt.in_flight(), IN_FLIGHT);
    assert_eq!(rig.drv.held.len(), IN_FLIGHT);
    assert!(rig.virt.stats().backpressure > 0);
    // In turn: both clients got a fair share of the table.
    let per = |rig: &Rig, w| rig.drv.seen.iter().filter(|s| s.window == Some(w)).count();
    assert_eq!((per(&rig, 0), per(&rig, 1)), (32, 32));
    // Requests left in the client queues, none answered, none lost.
    assert_eq!(
        rig.clients[0].req.free().unwrap() + rig.clients[1].req.free().unwrap(),
        64
    );
    // The driver answers in batches; each frees slots for the waiting ones.
    let mut got = [vec![], vec![]];
    while rig.virt.in_flight() > 0 || !rig.drv.held.is_empty() {
        rig.drv.complete(16);
        rig.settle();
        for (i, g) in got.iter_mut().enumerate() {
            g.extend(rig.clients[i].responses());
        }
    }
    for (i, g) in got.iter().enumerate() {
        let mut ids: Vec<u32> = g.iter().map(|r| r.id).collect();
        ids.sort();
        assert_eq!(ids, (1000..1000 + CAP).collect::<Vec<_>>(), "client {i}");
        assert!(
            g.iter()
                .all(|r| r.status == BlkRespStatus::OK && r.success_count == 1)
        );
    }
    assert_eq!(rig.drv.seen.len(), 128);
}

#[test]
fn a_driver_restart_is_handled_as_the_vmm_did_and_the_client_sees_nothing() {
    let mut rig = Rig::with(Opts {
        hold: true,
        ..Opts::default()
    });
    for n in 0..4u32 {
        rig.data(0)[n as usize * UNIT..(n as usize + 1) * UNIT].fill(0x10 + n as u8);
    }
    let reqs: Vec<_> = (0..4u32)
        .map(|n| write(n as usize * UNIT, 8 + n as u64, 1, 40 + n))
        .collect();
    rig.submit(0, &reqs);
    assert_eq!(rig.drv.held.len(), 4);
    // The first is answered, then the driver dies with the other three on the device.
    rig.drv.complete(1);
    rig.drv.crash_and_restart();
    rig.sim.set_timer_now(1000);
    rig.notify_from_driver();
    rig.sim.set_timer_now(1500);
    rig.settle();
    assert_eq!(rig.virt.driver_generation(), 2);
    assert_eq!(rig.virt.stats().resubmitted, 3);
    // The three again, oldest first, after the answered one.
    let ids: Vec<u32> = rig.drv.seen.iter().map(|s| s.req.id & 0xff).collect();
    assert_eq!(ids.len(), 7);
    assert_eq!(&ids[4..], &ids[1..4]);
    rig.drv.complete(usize::MAX);
    rig.settle();
    let mut got: Vec<u32> = rig.clients[0].responses().iter().map(|r| r.id).collect();
    got.sort();
    assert_eq!(got, [40, 41, 42, 43], "each answered exactly once");
    for n in 0..4usize {
        assert!(
            rig.drv.disk[(8 + n) * UNIT..(9 + n) * UNIT]
                .iter()
                .all(|b| *b == 0x10 + n as u8)
        );
    }
    // The client saw no new life of its server.
    assert_eq!(rig.clients[0].sync.pending(), None);
    assert_eq!(rig.clients[0].sync.acknowledged(), 1);
    rig.collect();
    assert!(rig.text.contains(
        "blk_virt: blk_driver restarted (generation 2): queues reset, 3 of 3 requests in flight re-submitted (t=1000)"
    ), "{}", rig.text);
    assert!(rig.text.contains(
        "blk_virt: blk_driver serves again: first response 500 ticks after the re-synchronisation (t=1500)"
    ), "{}", rig.text);
    assert!(rig.sim.violations().is_empty());
}

#[test]
fn a_driver_that_dies_again_before_serving_gets_the_requests_again() {
    let mut rig = Rig::with(Opts {
        hold: true,
        ..Opts::default()
    });
    rig.submit(0, &[write(0, 1, 1, 1), read(UNIT, 2, 1, 2)]);
    for _ in 0..3 {
        rig.drv.crash_and_restart();
        rig.notify_from_driver();
        rig.settle();
    }
    assert_eq!(rig.virt.driver_generation(), 4);
    assert_eq!(rig.drv.held.len(), 2);
    rig.drv.complete(usize::MAX);
    rig.settle();
    assert_eq!(rig.clients[0].responses(), [ok(1, 1), ok(1, 2)]);
    assert_eq!(rig.virt.stats().resubmitted, 6);
}

#[test]
fn forged_and_stale_driver_responses_are_counted_and_dropped() {
    let mut rig = Rig::with(Opts {
        hold: true,
        ..Opts::default()
    });
    rig.submit(0, &[read(0, 0, 1, 9)]);
    let real = rig.drv.seen[0].req.id;
    // An id of no slot in use, the right slot with a stale use count, then the real one with
    // a success count larger than the request's.
    rig.drv.respond(ok(1, real ^ 1));
    rig.drv.respond(ok(1, real.wrapping_add(1 << 8)));
    rig.drv.respond(ok(9, real));
    rig.drv.held.clear();
    rig.notify_from_driver();
    rig.settle();
    assert_eq!(rig.clients[0].responses(), [ok(1, 9)]);
    assert_eq!(rig.virt.stats().unknown_responses, 2);
    // A second answer for the same request is stale too.
    rig.drv.respond(ok(1, real));
    rig.notify_from_driver();
    assert!(rig.clients[0].responses().is_empty());
    assert_eq!(rig.virt.stats().unknown_responses, 3);
}

#[test]
fn a_client_that_corrupts_its_queue_costs_only_itself() {
    let mut rig = Rig::two_clients();
    // Client 0 claims 1000 requests.
    rig.clients[0].raw.req[1].store(1000, Ordering::Release);
    rig.notify_from_client(0);
    rig.settle();
    assert!(rig.virt.client_stats(0).unwrap().queue_errors > 0);
    // Client 1 is still served.
    rig.data(1)[..UNIT].fill(3);
    rig.submit(1, &[write(0, 0, 1, 1)]);
    assert_eq!(rig.clients[1].responses(), [ok(1, 1)]);
    rig.collect();
    assert!(rig.text.contains("ClientRequest(0)"), "{}", rig.text);
}

#[test]
fn requests_wait_for_the_client_acknowledgement_and_a_client_without_room_for_answers() {
    let mut rig = Rig::new();
    // A client whose response queue is full (it does not take its answers) gets no more
    // requests taken: they wait in its queue.
    let mut sent = 0;
    for n in 0..CAP {
        rig.clients[0].req.enqueue(&read(0, 0, 1, n)).unwrap();
        sent += 1;
    }
    rig.notify_from_client(0);
    rig.settle();
    assert_eq!(rig.clients[0].resp.available().unwrap(), CAP);
    for n in 0..8 {
        rig.clients[0].req.enqueue(&read(0, 0, 1, 100 + n)).unwrap();
        sent += 1;
    }
    rig.notify_from_client(0);
    rig.settle();
    assert_eq!(rig.clients[0].req.free().unwrap(), CAP - 8);
    assert_eq!(rig.virt.client_stats(0).unwrap().lost_responses, 0);
    let mut got = rig.clients[0].responses().len();
    rig.notify_from_client(0);
    rig.settle();
    got += rig.clients[0].responses().len();
    assert_eq!(got, sent as usize);
}

#[test]
fn clients_wait_for_the_driver_storage_info_and_then_get_their_partitions() {
    let mut rig = Rig::with(Opts {
        system: two_client_system_text(),
        ready: false,
        ..Opts::default()
    });
    // No storage info yet: the clients see none, and their requests wait in their queues.
    assert!(rig.clients.iter().all(|c| c.info.read().is_none()));
    rig.clients[1].req.enqueue(&write(0, 0, 1, 5)).unwrap();
    rig.notify_from_client(1);
    rig.settle();
    assert!(rig.drv.seen.is_empty());
    assert_eq!(rig.clients[1].req.free().unwrap(), CAP - 1);
    // The driver publishes (its device came up) and notifies: the partitions appear, and the
    // waiting request goes to client 1's first block.
    rig.drv.publish_info();
    rig.notify_from_driver();
    rig.settle();
    assert_eq!(rig.clients[0].info.read().unwrap().capacity, 32);
    assert_eq!(rig.clients[1].info.read().unwrap().capacity, 32);
    assert_eq!(rig.clients[1].responses(), [ok(1, 5)]);
    assert_eq!(rig.drv.seen[0].req.block_number, 32);
}
