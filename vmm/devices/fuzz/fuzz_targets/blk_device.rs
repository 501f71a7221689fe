//! virtio-blk behind the virtio-mmio transport, driven over fuzz-built guest memory: the input
//! is a queue configuration, a script of driver actions (notifications with arbitrary available
//! indices, register reads and writes, memory rewrites between steps, resets, backend
//! completions in any order) and the initial guest RAM (descriptor table, rings, headers and
//! buffers). Never a panic; the status register, interrupt status and device state stay
//! consistent; after a reset and a clean initialisation a well-formed read succeeds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::addr::GuestPhysAddr;
use vmm_core::memory::{GuestMemory, GuestRam};
use vmm_devices::blk::{BlkConfig, BlkDevice, blk_status, req_type};
use vmm_devices::mmio::{DeviceState, MmioTransport, reg, status};
use vmm_devices::queue::{DESC_F_NEXT, DESC_F_WRITE, Descriptor};
use vmm_devices::testing::{CompletionMode, MemDisk};

const RAM_BASE: u64 = 0x4000_0000;
const RAM_SIZE: usize = 0x4000;
const DESC: u64 = RAM_BASE;
const AVAIL: u64 = RAM_BASE + 0x1000;
const USED: u64 = RAM_BASE + 0x2000;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

type Blk<'a> = MmioTransport<BlkDevice<MemDisk<'a>>>;

fn w32(t: &mut Blk<'_>, ram: &mut GuestRam<'_>, off: u64, v: u32) {
    let _ = t.write(ram, off, 4, u64::from(v));
}

/// The driver's initialisation: features, one queue of `size` at the fixed layout, DRIVER_OK.
fn init(t: &mut Blk<'_>, ram: &mut GuestRam<'_>, size: u16) {
    w32(t, ram, reg::STATUS, 0);
    w32(t, ram, reg::STATUS, 1);
    w32(t, ram, reg::STATUS, 3);
    w32(t, ram, reg::DRIVER_FEATURES_SEL, 1);
    w32(t, ram, reg::DRIVER_FEATURES, 1);
    w32(t, ram, reg::DRIVER_FEATURES_SEL, 0);
    w32(t, ram, reg::DRIVER_FEATURES, 1 << 9);
    w32(t, ram, reg::STATUS, 11);
    w32(t, ram, reg::QUEUE_SEL, 0);
    w32(t, ram, reg::QUEUE_NUM, u32::from(size));
    w32(t, ram, reg::QUEUE_DESC_LOW, DESC as u32);
    w32(t, ram, reg::QUEUE_DRIVER_LOW, AVAIL as u32);
    w32(t, ram, reg::QUEUE_DEVICE_LOW, USED as u32);
    w32(t, ram, reg::QUEUE_READY, 1);
    w32(t, ram, reg::STATUS, 15);
}

fn check(t: &Blk<'_>) {
    let needs_reset = t.status() & status::DEVICE_NEEDS_RESET != 0;
    // NEEDS_RESET stays set, with its reason, until a reset (also if the driver then sets FAILED).
    assert_eq!(t.error().is_some(), needs_reset);
    assert!(t.state() != DeviceState::NeedsReset || needs_reset);
    assert_eq!(t.interrupt_status() & !3, 0);
    assert!(t.device().outstanding() <= vmm_devices::blk::MAX_OUTSTANDING);
}

fn run(data: &[u8]) {
    let mut input = Input(data);
    let size = 1u16 << (input.byte() % 5);
    let mode_bits = input.byte();
    let mode = if mode_bits & 1 == 0 {
        CompletionMode::Immediate
    } else {
        CompletionMode::Deferred
    };
    let staging_units = 1 + usize::from(mode_bits >> 1) % 3;
    let steps = usize::from(input.byte() % 32);
    let mut script = [[0u8; 5]; 32];
    for s in script.iter_mut().take(steps) {
        for b in s.iter_mut() {
            *b = input.byte();
        }
    }
    let mut ram_bytes = vec![0u8; RAM_SIZE];
    let n = input.0.len().min(RAM_SIZE);
    ram_bytes[..n].copy_from_slice(&input.0[..n]);
    // The used ring starts clean, as a driver allocates it.
    ram_bytes[0x2000..0x3000].fill(0);

    let mut disk = vec![0u8; 8 * 4096];
    let mut staging = vec![0u8; staging_units * 4096];
    let dev = BlkDevice::new(
        MemDisk::new(&mut disk, &mut staging, mode),
        BlkConfig::default(),
    )
    .expect("device");
    let mut t = MmioTransport::new(dev);
    let mut ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut ram_bytes);
    init(&mut t, &mut ram, size);
    check(&t);

    for s in script.iter().take(steps) {
        let arg16 = u16::from_le_bytes([s[1], s[2]]);
        let arg32 = u32::from_le_bytes([s[1], s[2], s[3], s[4]]);
        match s[0] % 8 {
            0 => {
                let _ = ram.write(GuestPhysAddr(AVAIL + 2), &arg16.to_le_bytes());
                let _ = t.write(&mut ram, reg::QUEUE_NOTIFY, 4, 0);
            }
            1 => {
                let _ = t.write(&mut ram, reg::QUEUE_NOTIFY, 4, u64::from(s[1] % 2));
            }
            2 => {
                let pending = t.device().backend().pending().len();
                if pending > 0 {
                    let i = usize::from(s[1]) % pending;
                    if let Some(c) = t.device_mut().backend_mut().complete(i) {
                        let _ = t.device_event(&mut ram, c);
                    }
                }
            }
            3 => init(&mut t, &mut ram, size),
            4 => {
                let off = u64::from(s[1]) * 4 % 0x100;
                let _ = t.write(
                    &mut ram,
                    off,
                    4,
                    u64::from(u32::from_le_bytes([s[2], s[3], s[4], 0])),
                );
            }
            5 => {
                let size = [1u8, 2, 4, 8][usize::from(s[2] % 4)];
                let _ = t.read(u64::from(arg16) % 0x200, size);
            }
            6 => {
                let off = u64::from(arg16) % RAM_SIZE as u64;
                let _ = ram.write(GuestPhysAddr(RAM_BASE + off), &s[3..5]);
            }
            _ => {
                let _ = t.config_changed();
                let _ = t.write(&mut ram, reg::INTERRUPT_ACK, 4, u64::from(arg32));
            }
        }
        check(&t);
    }

    // Recovery: complete what is outstanding, reset, and run one good read.
    while let Some(c) = t.device_mut().backend_mut().complete(0) {
        let _ = t.device_event(&mut ram, c);
    }
    // Fresh, zeroed rings, as a driver allocates them.
    ram.write(GuestPhysAddr(RAM_BASE), &[0u8; 0x3000]).unwrap();
    init(&mut t, &mut ram, 4);
    assert_eq!(t.state(), DeviceState::Live);
    let hdr_addr = RAM_BASE + 0x3000;
    let mut hdr = [0u8; 16];
    hdr[..4].copy_from_slice(&req_type::IN.to_le_bytes());
    ram.write(GuestPhysAddr(hdr_addr), &hdr).unwrap();
    ram.write(GuestPhysAddr(hdr_addr + 0x300), &[0xff]).unwrap();
    // Header, 512 bytes of data, status.
    let chain = [
        Descriptor {
            addr: hdr_addr,
            len: 16,
            flags: DESC_F_NEXT,
            next: 1,
        },
        Descriptor {
            addr: hdr_addr + 0x100,
            len: 512,
            flags: DESC_F_NEXT | DESC_F_WRITE,
            next: 2,
        },
        Descriptor {
            addr: hdr_addr + 0x300,
            len: 1,
            flags: DESC_F_WRITE,
            next: 0,
        },
    ];
    for (i, d) in chain.iter().enumerate() {
        ram.write(GuestPhysAddr(DESC + 16 * i as u64), &d.to_bytes())
            .unwrap();
    }
    ram.write(GuestPhysAddr(AVAIL), &[0, 0, 1, 0, 0, 0])
        .unwrap();
    let _ = t.write(&mut ram, reg::QUEUE_NOTIFY, 4, 0);
    while let Some(c) = t.device_mut().backend_mut().complete(0) {
        let _ = t.device_event(&mut ram, c);
    }
    let mut st = [0u8; 1];
    ram.read(GuestPhysAddr(hdr_addr + 0x300), &mut st).unwrap();
    assert_eq!(st[0], blk_status::OK);
    check(&t);
}

fuzz_target!(|data: &[u8]| run(data));
