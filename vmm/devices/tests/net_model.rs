//! Property: random interleavings of guest transmit and receive postings (frames of every
//! length class, random descriptor layouts, buffers of random sizes), kicks, backend frame
//! arrivals, backend room and drains give exactly what a reference model of virtio-net says:
//!
//! - the backend receives the valid frames the guest queued, in order, byte for byte, and
//!   nothing else;
//! - every used element (transmit and receive) is the one the model predicts, in order, with
//!   its used length; each receive buffer holds the header and the backend frame the model
//!   pairs it with, byte for byte;
//! - an interrupt is raised exactly when a call returned buffers;
//! - a driver reset forgets the posted chains and the frame waiting for backend room (it is
//!   never sent), and keeps a frame already taken from the backend for the next buffer;
//! - the device's counters equal the model's, and the device stays live.

mod common;

use std::collections::VecDeque;

use common::*;
use proptest::prelude::*;
use vmm_devices::mmio::{DeviceState, IrqAction};
use vmm_devices::net::{
    ETH_HLEN, HDR_LEN, MAX_FRAME_LEN, NetConfig, NetEvent, NetStats, RECEIVEQ, TRANSMITQ,
};
use vmm_devices::testing::NET_QUEUE_FRAMES;

const QSIZE: u16 = 16;

#[derive(Debug, Clone)]
enum Op {
    /// The guest posts a transmit chain: `len` frame bytes (or, with `short`, a chain of only
    /// `short` bytes, too short for the header), `gso` in the header, split into segments.
    Tx {
        len: usize,
        short: Option<usize>,
        gso: bool,
        seed: u64,
        split: Vec<usize>,
    },
    /// The guest posts a receive chain of `size` bytes split into segments.
    Rx {
        size: usize,
        split: Vec<usize>,
    },
    /// The guest posts a receive chain sized for the frame it will probably get (header plus
    /// that frame, `delta` bytes more or less): the exact-fit boundary.
    RxFit {
        delta: i8,
        split: Vec<usize>,
    },
    KickTx,
    KickRx,
    /// A frame arrives in the backend.
    Arrive {
        len: usize,
        seed: u64,
    },
    RxReady,
    TxReady,
    /// The backend's transmit room.
    Room(usize),
    /// Something takes what the backend sent.
    Drain,
    /// The driver resets the device and initialises it again: posted chains are forgotten, a
    /// frame waiting for backend room is not sent, a frame held from the backend stays.
    Reset,
}

fn frame_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => ETH_HLEN..=128,
        2 => 129..MAX_FRAME_LEN - 16,
        2 => MAX_FRAME_LEN - 16..=MAX_FRAME_LEN,
        1 => 0..ETH_HLEN,
        1 => MAX_FRAME_LEN + 1..=MAX_FRAME_LEN + 40,
    ]
}

fn split() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..1600, 0..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (
            frame_len(),
            prop::option::weighted(0.05, 1usize..HDR_LEN),
            prop::bool::weighted(0.05),
            any::<u64>(),
            split(),
        )
            .prop_map(|(len, short, gso, seed, split)| Op::Tx { len, short, gso, seed, split }),
        5 => (
            prop_oneof![
                6 => Just(HDR_LEN + MAX_FRAME_LEN),
                2 => HDR_LEN + MAX_FRAME_LEN..=2048,
                3 => HDR_LEN..HDR_LEN + MAX_FRAME_LEN,
                1 => 1usize..HDR_LEN,
            ],
            split(),
        )
            .prop_map(|(size, split)| Op::Rx { size, split }),
        2 => (-1i8..=1, split()).prop_map(|(delta, split)| Op::RxFit { delta, split }),
        3 => Just(Op::KickTx),
        3 => Just(Op::KickRx),
        5 => (ETH_HLEN..=MAX_FRAME_LEN, any::<u64>()).prop_map(|(len, seed)| Op::Arrive { len, seed }),
        2 => Just(Op::RxReady),
        2 => Just(Op::TxReady),
        2 => prop_oneof![Just(0usize), 1usize..4, Just(usize::MAX)].prop_map(Op::Room),
        2 => Just(Op::Drain),
        1 => Just(Op::Reset),
    ]
}

/// A transmit chain the guest posted, as the model classifies it.
#[derive(Debug, Clone)]
struct TxChain {
    head: u16,
    /// The frame if valid; else which counter it bumps.
    frame: Result<Vec<u8>, Reject>,
}

#[derive(Debug, Clone, Copy)]
enum Reject {
    Bad,
    Runt,
    Oversized,
    Gso,
}

#[derive(Debug, Clone)]
struct RxChain {
    head: u16,
    size: usize,
    segs: Vec<Seg>,
}

/// What the model expects one used element to be.
#[derive(Debug, Clone, PartialEq)]
enum Used {
    Tx {
        head: u16,
    },
    /// `data`: the header and frame it must hold (empty for length 0).
    Rx {
        head: u16,
        data: Vec<u8>,
    },
}

#[derive(Default)]
struct Model {
    /// Posted transmit chains the device has not popped.
    tx_avail: VecDeque<TxChain>,
    /// The popped chain whose frame waits for backend room.
    tx_waiting: Option<(u16, Vec<u8>)>,
    /// The backend: room, frames sent and not drained, everything it ever accepted.
    room: usize,
    sent_queue: usize,
    sent_all: Vec<Vec<u8>>,
    /// Frames waiting in the backend for the guest, and the one the device holds.
    rx_frames: VecDeque<Vec<u8>>,
    held: Option<Vec<u8>>,
    rx_avail: VecDeque<RxChain>,
    stats: NetStats,
}

fn header_then(frame: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; HDR_LEN];
    d[10] = 1;
    d.extend_from_slice(frame);
    d
}

impl Model {
    fn tx_pump(&mut self, used: &mut Vec<Used>) {
        loop {
            if let Some((head, f)) = self.tx_waiting.take() {
                if self.room == 0 || self.sent_queue == NET_QUEUE_FRAMES {
                    self.stats.tx_full += 1;
                    self.tx_waiting = Some((head, f));
                    return;
                }
                self.room = self.room.saturating_sub(1);
                self.sent_queue += 1;
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += f.len() as u64;
                self.sent_all.push(f);
                used.push(Used::Tx { head });
            }
            let Some(c) = self.tx_avail.pop_front() else {
                return;
            };
            match c.frame {
                Ok(f) => self.tx_waiting = Some((c.head, f)),
                Err(r) => {
                    *match r {
                        Reject::Bad => &mut self.stats.bad_chains,
                        Reject::Runt => &mut self.stats.tx_runts,
                        Reject::Oversized => &mut self.stats.tx_oversized,
                        Reject::Gso => &mut self.stats.tx_gso,
                    } += 1;
                    used.push(Used::Tx { head: c.head });
                }
            }
        }
    }

    fn rx_pump(&mut self, used: &mut Vec<Used>, segs: &mut Vec<Vec<Seg>>) {
        while !self.rx_avail.is_empty() {
            if self.held.is_none() {
                match self.rx_frames.pop_front() {
                    Some(f) => self.held = Some(f),
                    None => return,
                }
            }
            let c = self.rx_avail.pop_front().unwrap();
            let f = self.held.as_ref().unwrap();
            let data = if c.size < HDR_LEN {
                self.stats.bad_chains += 1;
                Vec::new()
            } else if c.size - HDR_LEN < f.len() {
                self.stats.rx_too_long += 1;
                self.held = None;
                Vec::new()
            } else {
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += f.len() as u64;
                let d = header_then(f);
                self.held = None;
                d
            };
            used.push(Used::Rx { head: c.head, data });
            segs.push(c.segs);
        }
    }
}

/// `PROPTEST_CASES` if set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Checks the device's used elements against the model's, in order, per queue.
fn check_used(
    env: &mut NetEnv,
    expect: Vec<Used>,
    segs: Vec<Vec<Seg>>,
) -> Result<(), TestCaseError> {
    let mut segs = segs.into_iter();
    for u in expect {
        match u {
            Used::Tx { head } => {
                prop_assert_eq!(env.pop_used(TRANSMITQ), Some((u32::from(head), 0)));
            }
            Used::Rx { head, data } => {
                prop_assert_eq!(
                    env.pop_used(RECEIVEQ),
                    Some((u32::from(head), data.len() as u32))
                );
                let s = segs.next().unwrap();
                let got = env.gather(&s, data.len());
                prop_assert_eq!(got, data);
            }
        }
    }
    prop_assert_eq!(env.pop_used(TRANSMITQ), None);
    prop_assert_eq!(env.pop_used(RECEIVEQ), None);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn virtio_net_matches_reference_model(ops in prop::collection::vec(op(), 1..120)) {
        let mut env = net_env(NetConfig::default(), QSIZE);
        let mut m = Model { room: usize::MAX, ..Model::default() };
        let mut drained: Vec<Vec<u8>> = Vec::new();
        // The valid frames the guest queued, in order (independent of the model's pumping).
        let mut valid: Vec<Vec<u8>> = Vec::new();
        for op in ops {
            let mut used = Vec::new();
            let mut segs = Vec::new();
            let irq = match op {
                Op::Tx { len, short, gso, seed, split } => {
                    let frame = pattern(seed, len);
                    let bytes = match short {
                        Some(n) => pattern(seed, n),
                        None => tx_bytes(&frame, u8::from(gso)),
                    };
                    let s = env.segments(&bytes, &split, false);
                    if s.len() > env.free_descs(TRANSMITQ) {
                        continue;
                    }
                    let head = env.post(TRANSMITQ, &s);
                    let frame = if short.is_some() {
                        Err(Reject::Bad)
                    } else if len < ETH_HLEN {
                        Err(Reject::Runt)
                    } else if len > MAX_FRAME_LEN {
                        Err(Reject::Oversized)
                    } else if gso {
                        Err(Reject::Gso)
                    } else {
                        valid.push(frame.clone());
                        Ok(frame)
                    };
                    m.tx_avail.push_back(TxChain { head, frame });
                    None
                }
                Op::RxFit { delta, split } => {
                    // The frame this buffer pairs with if every buffer before it takes one.
                    let k = m.rx_avail.len();
                    let next = match &m.held {
                        Some(h) if k == 0 => Some(h),
                        Some(_) => m.rx_frames.get(k - 1),
                        None => m.rx_frames.get(k),
                    };
                    let size = next.map_or(HDR_LEN + MAX_FRAME_LEN, |f| HDR_LEN + f.len());
                    let size = size.saturating_add_signed(isize::from(delta));
                    let s = env.segments(&vec![0xee; size], &split, true);
                    if s.len() > env.free_descs(RECEIVEQ) {
                        continue;
                    }
                    let head = env.post(RECEIVEQ, &s);
                    m.rx_avail.push_back(RxChain { head, size, segs: s });
                    None
                }
                Op::Rx { size, split } => {
                    let s = env.segments(&vec![0xee; size], &split, true);
                    if s.len() > env.free_descs(RECEIVEQ) {
                        continue;
                    }
                    let head = env.post(RECEIVEQ, &s);
                    m.rx_avail.push_back(RxChain { head, size, segs: s });
                    None
                }
                Op::KickTx => {
                    m.tx_pump(&mut used);
                    Some(env.notify(TRANSMITQ))
                }
                Op::TxReady => {
                    m.tx_pump(&mut used);
                    Some(env.event(NetEvent::TxReady))
                }
                Op::KickRx => {
                    m.rx_pump(&mut used, &mut segs);
                    Some(env.notify(RECEIVEQ))
                }
                Op::RxReady => {
                    m.rx_pump(&mut used, &mut segs);
                    Some(env.event(NetEvent::RxReady))
                }
                Op::Arrive { len, seed } => {
                    let f = pattern(seed, len);
                    let pushed = env.t.device_mut().backend_mut().push_rx(&f);
                    prop_assert_eq!(pushed, m.rx_frames.len() < NET_QUEUE_FRAMES);
                    if pushed {
                        m.rx_frames.push_back(f);
                    }
                    None
                }
                Op::Room(n) => {
                    env.t.device_mut().backend_mut().tx_room = n;
                    m.room = n;
                    None
                }
                Op::Reset => {
                    prop_assert!(env.init(u64::MAX, QSIZE));
                    // The frames not sent are the last of those queued: the waiting one and
                    // the valid ones still posted. They leave the list the backend must see.
                    let unsent = usize::from(m.tx_waiting.take().is_some())
                        + m.tx_avail.iter().filter(|c| c.frame.is_ok()).count();
                    valid.truncate(valid.len() - unsent);
                    m.tx_avail.clear();
                    m.rx_avail.clear();
                    None
                }
                Op::Drain => {
                    while let Some(f) = env.t.device_mut().backend_mut().take_sent() {
                        drained.push(f.to_vec());
                    }
                    m.sent_queue = 0;
                    None
                }
            };
            if let Some(irq) = irq {
                let want = if used.is_empty() { IrqAction::None } else { IrqAction::Raise };
                prop_assert_eq!(irq, want);
            }
            check_used(&mut env, used, segs)?;
            prop_assert_eq!(env.t.device().stats(), &m.stats);
            prop_assert_eq!(env.t.device().tx_waiting(), m.tx_waiting.is_some());
        }
        // Everything the backend accepted, in order, is exactly the valid frames the guest
        // queued up to there; with room, everything queued goes out.
        prop_assert_eq!(&m.sent_all[..], &valid[..m.sent_all.len()]);
        env.t.device_mut().backend_mut().tx_room = usize::MAX;
        loop {
            while let Some(f) = env.t.device_mut().backend_mut().take_sent() {
                drained.push(f.to_vec());
            }
            let _ = env.event(NetEvent::TxReady);
            if env.t.device().backend().sent_pending() == 0 {
                break;
            }
        }
        prop_assert_eq!(&drained, &valid);
        prop_assert_eq!(env.t.state(), DeviceState::Live);
    }
}
