//! The vGIC distributor against a hostile guest and kernel: arbitrary sequences of register
//! accesses from any vCPU, device interrupts, virtual-PPI events and maintenance reports (also
//! for list registers the vGIC does not use), with an injector that sometimes fails. Never a
//! panic; the vGIC only fills list registers that exist and are free (checked against a
//! shadow of what it injected and what was freed).
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use vmm_core::vgic::{InjectError, IrqInjector, Vgic};

#[derive(Debug, Arbitrary)]
enum Op {
    Read { vcpu: u8, offset: u16, size: u8 },
    Write { vcpu: u8, offset: u16, size: u8, value: u32 },
    Spi { irq: u16 },
    Ppi { vcpu: u8, irq: u8 },
    Maintenance { vcpu: u8, lr: Option<u8> },
    Sync,
    FailNext(bool),
}

#[derive(Debug, Arbitrary)]
struct Input {
    vcpus: u8,
    lrs: u8,
    ops: Vec<Op>,
}

struct Inj {
    count: u8,
    fail: bool,
    /// LRs the vGIC filled and has not been told are free, per vCPU.
    used: [u64; 8],
}

impl IrqInjector for Inj {
    fn inject(&mut self, vcpu: usize, _virq: u32, _p: u8, group: u8, lr: u8) -> Result<(), InjectError> {
        assert!(lr < self.count, "LR {lr} of {}", self.count);
        assert!(group <= 1);
        if self.fail {
            return Err(InjectError::Kernel(3));
        }
        // The vGIC only fills a list register it knows to be free: one it never filled, or one
        // a maintenance report freed.
        assert!(self.used[vcpu] & (1 << lr) == 0, "LR {lr} of vCPU {vcpu} filled while in use");
        self.used[vcpu] |= 1 << lr;
        Ok(())
    }
    fn list_register_count(&self) -> u8 {
        self.count
    }
    fn ack_vppi(&mut self, _vcpu: usize, irq: u32) -> Result<(), InjectError> {
        assert!((16..32).contains(&irq));
        if self.fail { Err(InjectError::Kernel(3)) } else { Ok(()) }
    }
}

fuzz_target!(|input: Input| {
    let vcpus = usize::from(input.vcpus % 9);
    let Ok(mut vgic) = Vgic::new(vcpus) else {
        assert!(vcpus == 0);
        return;
    };
    let mut inj = Inj { count: input.lrs % 70, fail: false, used: [0; 8] };
    for op in input.ops.iter().take(256) {
        match *op {
            Op::Read { vcpu, offset, size } => {
                let _ = vgic.mmio_read(usize::from(vcpu % 10), u64::from(offset), size);
            }
            Op::Write { vcpu, offset, size, value } => {
                let _ = vgic.mmio_write(&mut inj, usize::from(vcpu % 10), u64::from(offset), size, value);
            }
            Op::Spi { irq } => {
                let _ = vgic.set_irq_pending(&mut inj, u32::from(irq));
            }
            Op::Ppi { vcpu, irq } => {
                let _ = vgic.ppi_event(&mut inj, usize::from(vcpu % 10), u32::from(irq));
            }
            Op::Maintenance { vcpu, lr } => {
                let v = usize::from(vcpu % 10);
                if vgic.maintenance(&mut inj, v, lr).is_ok() {
                    if let (Some(lr), Some(u)) = (lr, inj.used.get_mut(v)) {
                        *u &= !(1u64 << (lr % 64));
                    }
                }
            }
            Op::Sync => {
                let _ = vgic.sync(&mut inj);
            }
            Op::FailNext(f) => inj.fail = f,
        }
        for v in 0..vcpus {
            // Whatever fills an LR is an interrupt the vCPU has: a WFI must not park it.
            if inj.used[v] != 0 {
                assert!(vgic.has_interrupts(v), "vCPU {v} has LRs {:#x} in use", inj.used[v]);
            }
        }
    }
});
