//! virtio-net behind the virtio-mmio transport, driven by a hostile guest: arbitrary register
//! reads and writes (an initialisation of both queues among them, or not), notifications, guest
//! RAM rewritten between steps (descriptors, rings, buffers, headers), frames of any length
//! arriving from the backend, a backend that runs full and is drained. Never a panic;
//! NEEDS_RESET and its reason go together; the interrupt status has only its two bits; every
//! frame the backend is given is within the Ethernet limits; the device's counters agree with
//! the backend's.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use vmm_core::addr::GuestPhysAddr;
use vmm_core::memory::{GuestMemory, GuestRam};
use vmm_devices::mmio::{MmioTransport, reg, status};
use vmm_devices::net::{ETH_HLEN, MAX_FRAME_LEN, NetConfig, NetDevice, NetEvent};
use vmm_devices::testing::MemNet;

const RAM_BASE: u64 = 0x4000_0000;
const RAM_SIZE: usize = 0x8000;

#[derive(Debug, Arbitrary)]
enum Op {
    /// The usual driver initialisation of queue `q` with `size` entries at page `page`.
    InitQueue { q: u8, size: u8, page: u8 },
    DriverOk,
    Read { offset: u16, size: u8 },
    Write { offset: u16, size: u8, value: u32 },
    Notify(u8),
    Poke { at: u16, bytes: [u8; 8] },
    /// A driver's posting of a one-descriptor chain on queue `q` (as last initialised): `len`
    /// bytes at `at`, device-writable or not, in descriptor `desc`.
    Post { q: u8, desc: u8, at: u16, len: u16, write: bool },
    /// A frame of `len` bytes (any length the port takes) arrives.
    Arrive { len: u16, fill: u8 },
    TxRoom(u8),
    Drain,
    Event(bool),
}

#[derive(Debug, Arbitrary)]
struct Input {
    queue_size: u8,
    link_status: bool,
    ram: Vec<u8>,
    ops: Vec<Op>,
}

type Net = MmioTransport<NetDevice<MemNet>>;

fn w(t: &mut Net, ram: &mut GuestRam<'_>, off: u64, v: u32) {
    let _ = t.write(ram, off, 4, u64::from(v));
}

fuzz_target!(|input: Input| {
    let config = NetConfig {
        mac: [2, 0, 0, 0, 0, 1],
        link_status: input.link_status,
        queue_size: 1 << (input.queue_size % 7),
    };
    let Ok(dev) = NetDevice::new(MemNet::default(), config) else {
        return;
    };
    let mut t: Net = MmioTransport::new(dev);
    let mut bytes = vec![0u8; RAM_SIZE];
    let n = input.ram.len().min(RAM_SIZE);
    bytes[..n].copy_from_slice(&input.ram[..n]);
    let mut ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut bytes);
    let (mut arrived, mut taken) = (0u64, 0u64);
    // Each queue's table base and size as the last InitQueue set them.
    let mut layout = [(RAM_BASE, 1u16); 3];
    for op in input.ops.iter().take(128) {
        match op {
            Op::InitQueue { q, size, page } => {
                w(&mut t, &mut ram, reg::STATUS, 0);
                w(&mut t, &mut ram, reg::STATUS, 1);
                w(&mut t, &mut ram, reg::STATUS, 3);
                w(&mut t, &mut ram, reg::DRIVER_FEATURES_SEL, 0);
                w(&mut t, &mut ram, reg::DRIVER_FEATURES, 1 << 5);
                w(&mut t, &mut ram, reg::DRIVER_FEATURES_SEL, 1);
                w(&mut t, &mut ram, reg::DRIVER_FEATURES, 1);
                w(&mut t, &mut ram, reg::STATUS, 11);
                let base = RAM_BASE + u64::from(*page % 8) * 0x1000;
                layout[usize::from(*q % 3)] = (base, u16::from(*size).max(1));
                w(&mut t, &mut ram, reg::QUEUE_SEL, u32::from(*q % 3));
                w(&mut t, &mut ram, reg::QUEUE_NUM, u32::from(*size));
                w(&mut t, &mut ram, reg::QUEUE_DESC_LOW, base as u32);
                w(&mut t, &mut ram, reg::QUEUE_DRIVER_LOW, (base + 0x400) as u32);
                w(&mut t, &mut ram, reg::QUEUE_DEVICE_LOW, (base + 0x800) as u32);
                w(&mut t, &mut ram, reg::QUEUE_READY, 1);
            }
            Op::DriverOk => w(&mut t, &mut ram, reg::STATUS, 15),
            Op::Read { offset, size } => {
                let _ = t.read(u64::from(*offset), *size);
            }
            Op::Write { offset, size, value } => {
                let _ = t.write(&mut ram, u64::from(*offset), *size, u64::from(*value));
            }
            Op::Notify(q) => w(&mut t, &mut ram, reg::QUEUE_NOTIFY, u32::from(*q % 3)),
            Op::Poke { at, bytes } => {
                let _ = ram.write(GuestPhysAddr(RAM_BASE + u64::from(*at) % RAM_SIZE as u64), bytes);
            }
            Op::Post { q, desc, at, len, write } => {
                let (base, size) = layout[usize::from(*q % 3)];
                let i = u64::from(u16::from(*desc) % size);
                let mut d = [0u8; 16];
                let addr = RAM_BASE + u64::from(*at) % RAM_SIZE as u64;
                d[..8].copy_from_slice(&addr.to_le_bytes());
                d[8..12].copy_from_slice(&u32::from(*len).to_le_bytes());
                d[12..14].copy_from_slice(&u16::from(*write).wrapping_mul(2).to_le_bytes());
                let _ = ram.write(GuestPhysAddr(base + 16 * i), &d);
                let mut idx = [0u8; 2];
                let _ = ram.read(GuestPhysAddr(base + 0x402), &mut idx);
                let idx = u16::from_le_bytes(idx);
                let slot = base + 0x404 + 2 * u64::from(idx % size);
                let _ = ram.write(GuestPhysAddr(slot), &(i as u16).to_le_bytes());
                let _ = ram.write(GuestPhysAddr(base + 0x402), &idx.wrapping_add(1).to_le_bytes());
            }
            Op::Arrive { len, fill } => {
                let f = vec![*fill; usize::from(*len) % (MAX_FRAME_LEN + 1)];
                if t.device_mut().backend_mut().push_rx(&f) {
                    arrived += 1;
                }
                let _ = t.device_event(&mut ram, NetEvent::RxReady);
            }
            Op::TxRoom(n) => {
                t.device_mut().backend_mut().tx_room = usize::from(*n);
                let _ = t.device_event(&mut ram, NetEvent::TxReady);
            }
            Op::Drain => {
                while let Some(f) = t.device_mut().backend_mut().take_sent() {
                    assert!((ETH_HLEN..=MAX_FRAME_LEN).contains(&f.len()));
                    taken += 1;
                }
            }
            Op::Event(rx) => {
                let e = if *rx { NetEvent::RxReady } else { NetEvent::TxReady };
                let _ = t.device_event(&mut ram, e);
            }
        }
        let needs_reset = t.status() & status::DEVICE_NEEDS_RESET != 0;
        assert_eq!(t.error().is_some(), needs_reset);
        assert_eq!(t.interrupt_status() & !3, 0);
        let backend = t.device().backend();
        let st = *t.device().stats();
        assert_eq!(st.tx_frames, taken + backend.sent_pending() as u64);
        let rx_seen = st.rx_frames + st.rx_too_long + st.rx_bad_frames;
        assert!(rx_seen + backend.rx_pending() as u64 <= arrived);
    }
});
