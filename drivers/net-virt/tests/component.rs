//! net_virt driven through its Microkit interface, in the scope a system description gives it:
//! the repository's system.xml (one client, the vmm) and systems derived from it with a second
//! and third client (`vmm2`, `vmm3`) added the way more VMMs will be. The clients are simulated
//! at the far ends of the real shared queues and data regions (`tests/support`).

mod support;

use microkit_sim::Invocation;
use net_virt::{QUEUE_CAPACITY, clients::CLIENTS, system};
use sddf_queue::NetBuffDesc;
use sddf_queue::net::mac_for;
use sddf_queue::sync::Ordering;
use support::*;

#[test]
fn the_client_table_is_read_from_system_xml() {
    assert_eq!(CLIENTS.len(), 1);
    let c = CLIENTS[0];
    assert_eq!(
        (c.name, c.channel, c.mac, c.tx_active, c.rx_data_size),
        (
            "vmm",
            system::VMM,
            mac_for(b"vmm"),
            "net_tx_active_vmm",
            0x20000
        )
    );
    // It maps no guest memory, is told no physical address, and only reads TX data.
    let sim = microkit_sim::Sim::from_repo_system("net_virt");
    let scope = sim.scope();
    assert!(
        scope
            .maps
            .iter()
            .all(|m| m.mr.starts_with("net_") || m.mr.starts_with("serial_tx_"))
    );
    assert!(system::PADDRS.is_empty());
    let tx = scope
        .maps
        .iter()
        .find(|m| m.mr == "net_tx_data_vmm")
        .unwrap();
    assert!(!tx.perms.write);
    // Three clients in a derived system, in order, each with its own channel and address.
    let three = sdf::parse(&n_client_system_text(3)).unwrap();
    let t = client_table(&three);
    let names: Vec<_> = t.iter().map(|c| c.name).collect();
    assert_eq!(names, ["vmm", "vmm2", "vmm3"]);
    let mut macs: Vec<_> = t.iter().map(|c| c.mac).collect();
    macs.dedup();
    assert_eq!(macs.len(), 3);
}

#[test]
fn at_start_each_client_gets_its_tx_buffers_and_a_signal() {
    let mut rig = Rig::new();
    assert_eq!(rig.clients[0].tx_buffers(), QUEUE_CAPACITY);
    assert!(rig.log.contains(&Invocation::Notify(system::VMM.index())));
    assert!(rig.text.contains("net_virt: client 0 (vmm): 52:54:00:"));
    assert!(
        rig.sim.violations().is_empty(),
        "{:?}",
        rig.sim.violations()
    );
}

#[test]
fn a_unicast_frame_reaches_its_destination_only_byte_for_byte() {
    let mut rig = Rig::clients(3);
    for c in &mut rig.clients {
        c.wait_rx();
    }
    let f = frame(rig.mac(2), rig.mac(0), 1514, 1);
    let g = frame(rig.mac(1), rig.mac(0), 60, 2);
    let before = [1, 2].map(|i| rig.notified(rig.clients[i].cfg.channel));
    rig.send(0, &[f.clone(), g.clone()]);
    assert_eq!(rig.clients[2].received(), [f]);
    assert_eq!(rig.clients[1].received(), [g]);
    assert!(rig.clients[0].received().is_empty());
    // The destinations asked for a signal and got it; the TX buffers came back.
    assert_eq!(rig.notified(rig.clients[1].cfg.channel), before[0] + 1);
    assert_eq!(rig.notified(rig.clients[2].cfg.channel), before[1] + 1);
    assert_eq!(rig.clients[0].tx_buffers(), QUEUE_CAPACITY);
    let s = rig.virt.client_stats(0).unwrap();
    assert_eq!((s.tx_frames, s.undelivered, s.malformed), (2, 0, 0));
    assert_eq!(rig.virt.client_stats(2).unwrap().rx_frames, 1);
    assert!(
        rig.sim.violations().is_empty(),
        "{:?}",
        rig.sim.violations()
    );
}

#[test]
fn broadcast_and_multicast_reach_every_other_client() {
    let mut rig = Rig::clients(3);
    let b = frame(BROADCAST, rig.mac(1), 42, 3);
    let m = frame([0x33, 0x33, 0, 0, 0, 1], rig.mac(1), 90, 4);
    rig.send(1, &[b.clone(), m.clone()]);
    assert_eq!(rig.clients[0].received(), [b.clone(), m.clone()]);
    assert_eq!(rig.clients[2].received(), [b, m]);
    assert!(rig.clients[1].received().is_empty(), "never to its sender");
    assert_eq!(rig.virt.client_stats(1).unwrap().undelivered, 0);
}

#[test]
fn frames_to_nobody_to_self_or_spoofed_are_dropped_and_counted() {
    let mut rig = Rig::clients(2);
    let me = rig.mac(0);
    rig.send(
        0,
        &[
            frame([0x52, 0x54, 0, 9, 9, 9], me, 60, 1), // no such client
            frame(me, me, 60, 2),                       // itself
            frame(rig.mac(1), rig.mac(1), 60, 3),       // pretends to be client 1
            frame(rig.mac(1), [0x52, 0x54, 0, 1, 2, 3], 60, 4),
        ],
    );
    assert!(rig.clients[1].received().is_empty());
    assert!(rig.clients[0].received().is_empty());
    let s = rig.virt.client_stats(0).unwrap();
    assert_eq!((s.tx_frames, s.undelivered, s.spoofed), (4, 4, 2));
    assert_eq!(rig.clients[0].tx_buffers(), QUEUE_CAPACITY, "buffers back");
    assert!(
        rig.text
            .contains("net_virt: vmm: 1 frames delivered to no client so far")
    );
    assert!(
        rig.text
            .contains("net_virt: vmm: 4 frames delivered to no client so far")
    );
}

#[test]
fn the_one_client_of_system_xml_has_nobody_to_talk_to() {
    let mut rig = Rig::new();
    rig.clients[0].post_rx(8);
    let me = rig.mac(0);
    // An ARP request (broadcast) and a unicast to another address: both counted, none back.
    rig.send(
        0,
        &[
            frame(BROADCAST, me, 42, 1),
            frame([0x52, 0x54, 0, 1, 1, 1], me, 98, 2),
        ],
    );
    assert!(rig.clients[0].received().is_empty());
    assert_eq!(rig.virt.client_stats(0).unwrap().undelivered, 2);
    assert!(rig.text.contains("type 0800: no other client"));
    assert!(rig.text.contains("no client with that address"));
}

#[test]
fn malformed_tx_descriptors_are_counted_and_their_buffers_returned() {
    let mut rig = Rig::clients(2);
    let data = rig.clients[0].cfg.tx_data_size;
    let bad = [
        NetBuffDesc::new(0, 13),              // shorter than a header
        NetBuffDesc::new(0, 1515),            // longer than a frame
        NetBuffDesc::new(0, 0),               // empty
        NetBuffDesc::new(data - 100, 200),    // leaves the region
        NetBuffDesc::new(data, 60),           // starts past it
        NetBuffDesc::new(u64::MAX - 10, 60),  // offset + len overflows
        NetBuffDesc::new(u64::MAX, u16::MAX), // everything wrong
    ];
    // Each goes out in place of one of the client's TX buffers.
    for d in bad {
        rig.clients[0].tx_free.dequeue().unwrap().unwrap();
        rig.clients[0].send_raw(d);
    }
    rig.notify_from_client(0);
    let s = rig.virt.client_stats(0).unwrap();
    assert_eq!((s.tx_frames, s.malformed, s.undelivered), (7, 7, 0));
    assert_eq!(s.lost_tx_buffers, 0);
    assert!(rig.clients[1].received().is_empty());
    // Each descriptor came back as it was given, with length 0, after the unused buffers.
    let mut back = vec![];
    while let Some(d) = rig.clients[0].tx_free.dequeue().unwrap() {
        back.push(d);
    }
    assert_eq!(back.len(), QUEUE_CAPACITY as usize);
    let returned: Vec<_> = back[back.len() - 7..]
        .iter()
        .map(|d| (d.io_or_offset, d.len))
        .collect();
    let expected: Vec<_> = bad.iter().map(|d| (d.io_or_offset, 0)).collect();
    assert_eq!(returned, expected);
    assert!(
        rig.text
            .contains("net_virt: vmm: malformed TX descriptor (1 so far)")
    );
    assert!(
        rig.text
            .contains("net_virt: vmm: malformed TX descriptor (4 so far)")
    );
    // A good frame afterwards goes through.
    let f = frame(rig.mac(1), rig.mac(0), 100, 9);
    rig.clients[0].tx_data.write(0, &f).unwrap();
    rig.clients[0].send_raw(NetBuffDesc::new(0, f.len() as u16));
    rig.notify_from_client(0);
    assert_eq!(rig.clients[1].received(), [f]);
}

#[test]
fn a_destination_without_free_rx_buffers_loses_the_frame_and_nobody_waits() {
    let mut rig = Rig::with(&n_client_system_text(3));
    // Client 1 posts two buffers, client 2 all of its own.
    rig.clients[1].post_rx(2);
    rig.clients[2].post_rx(QUEUE_CAPACITY as usize);
    let to1: Vec<_> = (0..4)
        .map(|i| frame(rig.mac(1), rig.mac(0), 64, i))
        .collect();
    let to2 = frame(rig.mac(2), rig.mac(0), 64, 9);
    let mut all = to1.clone();
    all.push(to2.clone());
    rig.send(0, &all);
    assert_eq!(rig.clients[1].received(), to1[..2]);
    assert_eq!(rig.clients[2].received(), [to2]);
    assert_eq!(rig.virt.client_stats(1).unwrap().rx_dropped, 2);
    assert_eq!(rig.virt.client_stats(0).unwrap().undelivered, 0);
    assert_eq!(rig.clients[0].tx_buffers(), QUEUE_CAPACITY);
    // Client 1's buffers were posted again by `received`: the next frame arrives.
    rig.send(0, std::slice::from_ref(&to1[3]));
    assert_eq!(rig.clients[1].received(), [to1[3].clone()]);
}

#[test]
fn rx_buffers_outside_the_destination_region_are_refused() {
    let mut rig = Rig::with(&n_client_system_text(2));
    let size = rig.clients[1].cfg.rx_data_size;
    for off in [size - 10, u64::MAX] {
        rig.clients[1]
            .rx_free
            .enqueue(&NetBuffDesc::new(off, 0))
            .unwrap();
    }
    rig.clients[1].post_rx(1);
    let fs: Vec<_> = (0..3)
        .map(|i| frame(rig.mac(1), rig.mac(0), 60, i))
        .collect();
    rig.send(0, &fs);
    assert_eq!(rig.clients[1].received(), [fs[2].clone()]);
    let s = rig.virt.client_stats(1).unwrap();
    assert_eq!((s.bad_rx_buffers, s.rx_dropped, s.rx_frames), (2, 2, 1));
}

#[test]
fn a_hostile_client_corrupting_its_indices_costs_only_itself() {
    let mut rig = Rig::clients(3);
    // Client 2 makes its TX active tail run far past the head, and its RX free queue too.
    rig.clients[2].raw[3][0].store(0x7fff, Ordering::Relaxed);
    rig.clients[2].raw[0][0].store(0x7fff, Ordering::Relaxed);
    rig.notify_from_client(2);
    assert!(rig.virt.client_stats(2).unwrap().queue_errors >= 1);
    // Client 0 and 1 talk, broadcasts included; the hostile one's share is dropped there.
    let f = frame(rig.mac(1), rig.mac(0), 300, 1);
    let b = frame(BROADCAST, rig.mac(0), 60, 2);
    rig.send(0, &[f.clone(), b.clone()]);
    assert_eq!(rig.clients[1].received(), [f, b]);
    let s2 = rig.virt.client_stats(2).unwrap();
    assert_eq!(s2.rx_frames, 0);
    assert!(s2.rx_dropped >= 1);
    let s0 = rig.virt.client_stats(0).unwrap();
    assert_eq!((s0.undelivered, s0.queue_errors), (0, 0));
    assert!(rig.text.contains("net_virt: client 2 corrupted"));
}

#[test]
fn a_queue_full_of_garbage_costs_its_sender_only() {
    let mut rig = Rig::clients(2);
    // Client 0 fills its TX queue with descriptors of no buffer it was given: each is counted,
    // the free queue (already full of its own buffers) cannot take them back: counted too.
    for i in 0..QUEUE_CAPACITY {
        rig.clients[0].send_raw(NetBuffDesc::new(u64::from(i) * 2048, 5));
    }
    rig.notify_from_client(0);
    let s = rig.virt.client_stats(0).unwrap();
    assert_eq!(s.tx_frames, u64::from(QUEUE_CAPACITY));
    assert_eq!(s.malformed, u64::from(QUEUE_CAPACITY));
    assert_eq!(s.lost_tx_buffers, u64::from(QUEUE_CAPACITY));
    assert!(s.tx_frames <= u64::from(net_virt::BUDGET));
    // Client 1 still talks to client 0.
    let f = frame(rig.mac(0), rig.mac(1), 70, 1);
    rig.send(1, std::slice::from_ref(&f));
    assert_eq!(rig.clients[0].received(), [f]);
}
