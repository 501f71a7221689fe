//! Fault message → decision → emulated exit, for an MMIO read and an MMIO write, with 8, 64 and
//! 256 registered handlers: the whole portable part of one guest exit (decode, classify, handler
//! lookup, MMIO emulation, register writes), without the kernel.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use vmm_core::addr::{GpaRange, GuestPhysAddr};
use vmm_core::classify::{Exit, Platform, PlatformError};
use vmm_core::handlers::{HandlerKind, HandlerTree};
use vmm_core::memory::GuestRam;
use vmm_core::mmio::BusError;
use vmm_core::psci::Psci;
use vmm_core::vcpu::VcpuState;

const BASE: u64 = 0x1000_0000;

struct Regs([u64; 64]);

impl Platform<u16> for Regs {
    fn mmio_read(&mut self, _: &u16, offset: u64, _: u8) -> Result<u64, BusError> {
        self.0
            .get((offset / 8) as usize)
            .copied()
            .ok_or(BusError::Refused)
    }
    fn mmio_write(&mut self, _: &u16, offset: u64, _: u8, value: u64) -> Result<(), BusError> {
        *self
            .0
            .get_mut((offset / 8) as usize)
            .ok_or(BusError::Refused)? = value;
        Ok(())
    }
    fn protected_write(&mut self, _: &u16, _: u64, _: u8, _: u64) -> Result<bool, BusError> {
        Ok(true)
    }
    fn vgic_maintenance(&mut self, _: Option<u8>) -> Result<(), PlatformError> {
        Ok(())
    }
    fn virtual_ppi(&mut self, _: u32) -> Result<(), PlatformError> {
        Ok(())
    }
}

fn esr(wnr: bool) -> u64 {
    0x24 << 26 | 1 << 25 | 1 << 24 | 2 << 22 | 3 << 16 | (wnr as u64) << 6 | 0x07
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("exit");
    for n in [8u64, 64, 256] {
        let mut tree: HandlerTree<u16, 256> = HandlerTree::default();
        for i in 0..n {
            tree.register(
                GpaRange::new(GuestPhysAddr(BASE + i * 0x1000), 0x1000).unwrap(),
                HandlerKind::All,
                i as u16,
            )
            .unwrap();
        }
        let target = BASE + (n / 2) * 0x1000 + 0x10;
        let mut psci: Psci<1> = Psci::new(1).unwrap();
        let mut ram = vec![0u8; 0x1000];
        let mut platform = Regs([0; 64]);
        let mut vcpu = VcpuState {
            pc: 0x4000_0000,
            pstate: 0x3c5,
            ..Default::default()
        };
        for (name, wnr) in [("mmio-read", false), ("mmio-write", true)] {
            let words = [0x4000_0000, target, 0, esr(wnr)];
            group.bench_with_input(BenchmarkId::new(name, n), &words, |b, words| {
                b.iter(|| {
                    let mut mem = GuestRam::new(GuestPhysAddr(0x4000_0000), &mut ram);
                    let mut exit = Exit {
                        tree: &tree,
                        psci: &mut psci,
                    };
                    black_box(exit.handle(
                        0,
                        6,
                        black_box(words),
                        &mut vcpu,
                        &mut mem,
                        &mut platform,
                    ))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
