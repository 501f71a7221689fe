//! virtio-console behind the virtio-mmio transport, driven by a hostile guest: arbitrary register
//! reads and writes (an initialisation of both queues among them, or not), notifications, guest
//! RAM rewritten between steps (descriptors, rings, buffers), backend input and a backend that
//! runs full. Never a panic; NEEDS_RESET and its reason go together; the interrupt status has
//! only its two bits; input waiting in the backend never exceeds what was typed.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use vmm_core::addr::GuestPhysAddr;
use vmm_core::memory::{GuestMemory, GuestRam};
use vmm_devices::console::{ConsoleConfig, ConsoleDevice, ConsoleEvent};
use vmm_devices::mmio::{MmioTransport, reg, status};
use vmm_devices::testing::MemConsole;

const RAM_BASE: u64 = 0x4000_0000;
const RAM_SIZE: usize = 0x4000;

#[derive(Debug, Arbitrary)]
enum Op {
    /// The usual driver initialisation of queue `q` with `size` entries at page `page`.
    InitQueue { q: u8, size: u8, page: u8 },
    DriverOk,
    Read { offset: u16, size: u8 },
    Write { offset: u16, size: u8, value: u32 },
    Notify(u8),
    Poke { at: u16, bytes: [u8; 8] },
    Type(Vec<u8>),
    TxRoom(u16),
    Event(bool),
}

#[derive(Debug, Arbitrary)]
struct Input {
    queue_size: u8,
    ram: Vec<u8>,
    ops: Vec<Op>,
}

type Con = MmioTransport<ConsoleDevice<MemConsole>>;

fn w(t: &mut Con, ram: &mut GuestRam<'_>, off: u64, v: u32) {
    let _ = t.write(ram, off, 4, u64::from(v));
}

fuzz_target!(|input: Input| {
    let config = ConsoleConfig {
        size: None,
        queue_size: 1 << (input.queue_size % 7),
    };
    let Ok(dev) = ConsoleDevice::new(MemConsole::default(), config) else {
        return;
    };
    let mut t: Con = MmioTransport::new(dev);
    let mut bytes = vec![0u8; RAM_SIZE];
    let n = input.ram.len().min(RAM_SIZE);
    bytes[..n].copy_from_slice(&input.ram[..n]);
    let mut ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut bytes);
    let mut typed = 0usize;
    for op in input.ops.iter().take(128) {
        match op {
            Op::InitQueue { q, size, page } => {
                w(&mut t, &mut ram, reg::STATUS, 0);
                w(&mut t, &mut ram, reg::STATUS, 1);
                w(&mut t, &mut ram, reg::STATUS, 3);
                w(&mut t, &mut ram, reg::DRIVER_FEATURES_SEL, 1);
                w(&mut t, &mut ram, reg::DRIVER_FEATURES, 1);
                w(&mut t, &mut ram, reg::STATUS, 11);
                let base = RAM_BASE + u64::from(*page % 4) * 0x1000;
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
            Op::Type(b) => {
                typed += t.device_mut().backend_mut().push_rx(b);
                let _ = t.device_event(&mut ram, ConsoleEvent::RxReady);
            }
            Op::TxRoom(n) => {
                t.device_mut().backend_mut().tx_room = usize::from(*n);
                let _ = t.device_event(&mut ram, ConsoleEvent::TxReady);
            }
            Op::Event(rx) => {
                let e = if *rx { ConsoleEvent::RxReady } else { ConsoleEvent::TxReady };
                let _ = t.device_event(&mut ram, e);
            }
        }
        let needs_reset = t.status() & status::DEVICE_NEEDS_RESET != 0;
        assert_eq!(t.error().is_some(), needs_reset);
        assert_eq!(t.interrupt_status() & !3, 0);
        let backend = t.device().backend();
        assert!(backend.rx_pending() <= typed);
    }
});
