//! net_virt held to a reference model of a switch, over random sequences of client actions in
//! a two- or three-client system derived from system.xml: frames sent (to another client, to
//! itself, to nobody, broadcast, multicast, with a forged source, malformed descriptors),
//! receive buffers posted and taken back, notifications. The model is a plain learning-free
//! switch: each notification takes every client's queued frames in client order; a unicast
//! frame goes to the client with its destination address, a group frame to every other
//! client, each only if the destination has a free receive buffer. Checked: each client
//! receives exactly the model's frames, in order, byte for byte (so never its own, nor one
//! that was not for it), and every counter agrees with the model.

mod support;

use proptest::prelude::*;
use sddf_queue::NetBuffDesc;
use support::*;

#[derive(Debug, Clone)]
enum Dst {
    Client(usize),
    Broadcast,
    Multicast,
    Nobody,
}

#[derive(Debug, Clone)]
enum Op {
    Send {
        from: usize,
        dst: Dst,
        spoof: bool,
        len: usize,
        seed: u8,
    },
    Malformed {
        from: usize,
        len: u16,
        past_end: bool,
    },
    Post {
        client: usize,
        n: usize,
    },
    Take {
        client: usize,
    },
    Notify {
        client: usize,
    },
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    let dst = prop_oneof![
        4 => (0..n).prop_map(Dst::Client),
        1 => Just(Dst::Broadcast),
        1 => Just(Dst::Multicast),
        1 => Just(Dst::Nobody),
    ];
    prop_oneof![
        6 => (0..n, dst, prop::bool::weighted(0.1), 14usize..=1514, any::<u8>()).prop_map(
            |(from, dst, spoof, len, seed)| Op::Send { from, dst, spoof, len, seed }
        ),
        1 => (0..n, prop_oneof![0u16..14, 1515u16..=u16::MAX], any::<bool>())
            .prop_map(|(from, len, past_end)| Op::Malformed { from, len, past_end }),
        2 => (0..n, 1usize..8).prop_map(|(client, n)| Op::Post { client, n }),
        2 => (0..n).prop_map(|client| Op::Take { client }),
        3 => (0..n).prop_map(|client| Op::Notify { client }),
    ]
}

/// The model's view of one client.
#[derive(Default, Clone)]
struct M {
    /// Receive buffers the switch may fill.
    rx_free: usize,
    /// Frames delivered and not yet taken, in order.
    inbox: Vec<Vec<u8>>,
    /// Frames queued, not yet switched (`None`: malformed).
    queued: Vec<Option<Vec<u8>>>,
    rx_frames: u64,
    rx_dropped: u64,
    undelivered: u64,
    spoofed: u64,
    malformed: u64,
}

fn run(n: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut rig = Rig::with(&n_client_system_text(n));
    let mut m: Vec<M> = vec![M::default(); n];
    let macs: Vec<[u8; 6]> = (0..n).map(|i| rig.mac(i)).collect();
    let switch = |m: &mut Vec<M>| {
        for i in 0..n {
            for f in std::mem::take(&mut m[i].queued) {
                let Some(f) = f else {
                    m[i].malformed += 1;
                    continue;
                };
                let to: Vec<usize> = if f[6..12] != macs[i] {
                    m[i].spoofed += 1;
                    vec![]
                } else if f[0] & 1 == 1 {
                    (0..n).filter(|&j| j != i).collect()
                } else {
                    macs.iter()
                        .position(|mac| mac[..] == f[..6])
                        .filter(|&j| j != i)
                        .into_iter()
                        .collect()
                };
                if to.is_empty() {
                    m[i].undelivered += 1;
                }
                for j in to {
                    if m[j].rx_free > 0 {
                        m[j].rx_free -= 1;
                        m[j].rx_frames += 1;
                        m[j].inbox.push(f.clone());
                    } else {
                        m[j].rx_dropped += 1;
                    }
                }
            }
        }
    };
    for op in ops {
        match op {
            Op::Send {
                from,
                dst,
                spoof,
                len,
                seed,
            } => {
                let d = match dst {
                    Dst::Client(k) => macs[k],
                    Dst::Broadcast => BROADCAST,
                    Dst::Multicast => [0x01, 0x00, 0x5e, 0, 0, seed],
                    Dst::Nobody => [0x52, 0x54, 0, 0xee, 0xee, seed],
                };
                let src = if spoof {
                    [0x52, 0x54, 0, 0xdd, 0xdd, seed]
                } else {
                    macs[from]
                };
                let f = frame(d, src, len, seed);
                if !rig.clients[from].send(&f) {
                    continue;
                }
                m[from].queued.push(Some(f));
            }
            Op::Malformed {
                from,
                len,
                past_end,
            } => {
                let Some(b) = rig.clients[from].tx_free.dequeue().unwrap() else {
                    continue;
                };
                let off = if past_end {
                    rig.clients[from].cfg.tx_data_size
                } else {
                    b.io_or_offset
                };
                // A bad length, or a good one at a bad place: both refused.
                let len = if past_end { 60 } else { len };
                rig.clients[from].send_raw(NetBuffDesc::new(off, len));
                m[from].queued.push(None);
            }
            Op::Post { client, n } => {
                let before = rig.clients[client].rx_spare.len();
                rig.clients[client].post_rx(n);
                m[client].rx_free += before - rig.clients[client].rx_spare.len();
            }
            Op::Take { client } => {
                let got = rig.clients[client].received();
                let want = std::mem::take(&mut m[client].inbox);
                prop_assert_eq!(got.len(), want.len(), "client {} frames", client);
                prop_assert!(got == want, "client {} got other bytes or order", client);
                m[client].rx_free += want.len();
            }
            Op::Notify { client } => {
                let _ = rig.clients[client].tx_active.take_notify();
                rig.notify_from_client(client);
                switch(&mut m);
            }
        }
    }
    for i in 0..n {
        let _ = rig.clients[i].tx_active.take_notify();
        rig.notify_from_client(i);
    }
    switch(&mut m);
    for (i, mi) in m.iter().enumerate() {
        let got = rig.clients[i].received();
        prop_assert!(got == mi.inbox, "client {} inbox at the end", i);
        let s = rig.virt.client_stats(i).unwrap();
        prop_assert_eq!(
            (
                s.rx_frames,
                s.rx_dropped,
                s.undelivered,
                s.spoofed,
                s.malformed
            ),
            (
                mi.rx_frames,
                mi.rx_dropped,
                mi.undelivered,
                mi.spoofed,
                mi.malformed
            ),
            "client {} counters",
            i
        );
        prop_assert_eq!(
            (s.queue_errors, s.lost_tx_buffers, s.bad_rx_buffers),
            (0, 0, 0)
        );
    }
    prop_assert!(rig.sim.violations().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn two_clients_switch_like_the_model(ops in prop::collection::vec(op(2), 1..120)) {
        run(2, ops)?;
    }

    #[test]
    fn three_clients_switch_like_the_model(ops in prop::collection::vec(op(3), 1..120)) {
        run(3, ops)?;
    }
}
