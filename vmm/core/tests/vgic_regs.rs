//! vGIC unit tests: identification registers, access-size rules, GICD_SGIR target filters, the
//! overflow queue's priority order, the virtual-timer acknowledgement path and injector failures.

use vmm_core::vgic::*;

#[derive(Default)]
struct Rec {
    count: u8,
    fail: bool,
    injected: Vec<(usize, u32, u8, u8, u8)>,
    acked: Vec<(usize, u32)>,
}

impl IrqInjector for Rec {
    fn inject(
        &mut self,
        vcpu: usize,
        virq: u32,
        priority: u8,
        group: u8,
        lr: u8,
    ) -> Result<(), InjectError> {
        if self.fail {
            return Err(InjectError::Kernel(1));
        }
        self.injected.push((vcpu, virq, priority, group, lr));
        Ok(())
    }
    fn list_register_count(&self) -> u8 {
        self.count
    }
    fn ack_vppi(&mut self, vcpu: usize, irq: u32) -> Result<(), InjectError> {
        self.acked.push((vcpu, irq));
        Ok(())
    }
}

fn rec(count: u8) -> Rec {
    Rec {
        count,
        ..Default::default()
    }
}

#[test]
fn identification() {
    let g = Vgic::new(4).unwrap();
    // ITLinesNumber 7 (256 IRQs), CPUNumber 3, no security extensions.
    assert_eq!(g.mmio_read(0, 0x004, 4), Ok(7 | 3 << 5));
    assert_eq!(g.mmio_read(0, 0x008, 4), Ok(0x0200_143B));
    let pidr2 = g.mmio_read(0, 0xFE8, 4).unwrap();
    assert_eq!((pidr2 >> 4) & 0xF, 2, "ArchRev = GICv2");
    let cidr: Vec<u32> = (0..4)
        .map(|i| g.mmio_read(0, 0xFF0 + 4 * i, 4).unwrap())
        .collect();
    assert_eq!(cidr, [0x0D, 0xF0, 0x05, 0xB1]);
    assert_eq!(Vgic::new(1).unwrap().mmio_read(0, 4, 4), Ok(7));
    assert!(Vgic::new(0).is_err() && Vgic::new(9).is_err());
    // SGIs read enabled and edge; PPIs level; SGI/PPI targets read as the reader's own bit.
    assert_eq!(g.mmio_read(2, 0x100, 4), Ok(0xFFFF));
    assert_eq!(g.mmio_read(0, 0xC00, 4), Ok(0xAAAA_AAAA));
    assert_eq!(g.mmio_read(0, 0xC04, 4), Ok(0));
    assert_eq!(g.mmio_read(2, 0x800, 4), Ok(0x0404_0404));
    assert_eq!(g.mmio_read(3, 0x81F, 1), Ok(0x08));
    assert_eq!(
        g.mmio_read(0, 0x500, 4),
        Ok(0),
        "reserved / unimplemented reads as zero"
    );
}

#[test]
fn access_rules() {
    let mut g = Vgic::new(2).unwrap();
    let mut r = rec(4);
    assert_eq!(
        g.mmio_read(0, 0x000, 1),
        Err(VgicError::BadAccessSize { offset: 0, size: 1 })
    );
    assert_eq!(
        g.mmio_read(0, 0x100, 1),
        Err(VgicError::BadAccessSize {
            offset: 0x100,
            size: 1
        })
    );
    assert_eq!(
        g.mmio_read(0, 0x400, 2),
        Err(VgicError::BadAccessSize {
            offset: 0x400,
            size: 2
        })
    );
    assert_eq!(
        g.mmio_read(0, 0x400, 8),
        Err(VgicError::BadAccessSize {
            offset: 0x400,
            size: 8
        })
    );
    assert_eq!(
        g.mmio_read(0, 0x402, 4),
        Err(VgicError::Unaligned {
            offset: 0x402,
            size: 4
        })
    );
    assert_eq!(
        g.mmio_read(0, 0x1_0000, 4),
        Err(VgicError::OutOfRange { offset: 0x1_0000 })
    );
    assert_eq!(g.mmio_read(2, 0, 4), Err(VgicError::NoSuchVcpu(2)));
    assert_eq!(
        g.mmio_write(&mut r, 0, 0xF00, 1, 0),
        Err(VgicError::BadAccessSize {
            offset: 0xF00,
            size: 1
        })
    );
    // Byte accesses where GICv2 allows them.
    g.mmio_write(&mut r, 0, 0x423, 1, 0xFF).unwrap();
    assert_eq!(
        g.mmio_read(0, 0x420, 4),
        Ok(0xF800_0000),
        "priority keeps 5 bits"
    );
    g.mmio_write(&mut r, 1, 0x823, 1, 0xFF).unwrap();
    assert_eq!(
        g.mmio_read(0, 0x823, 1),
        Ok(0x03),
        "targets masked to existing vCPUs"
    );
    g.mmio_write(&mut r, 1, 0xF21, 1, 0xFF).unwrap();
    assert_eq!(
        g.mmio_read(1, 0xF20, 4),
        Ok(0x0300),
        "SPENDSGIR banked, sources masked"
    );
    assert_eq!(g.mmio_read(0, 0xF20, 4), Ok(0));
    g.mmio_write(&mut r, 1, 0xF11, 1, 0x01).unwrap();
    assert_eq!(g.mmio_read(1, 0xF21, 1), Ok(0x02));
    // Read-only registers ignore writes.
    g.mmio_write(&mut r, 0, 0x004, 4, 0).unwrap();
    assert_eq!(g.mmio_read(0, 0x004, 4), Ok(7 | 1 << 5));
    assert!(
        r.injected.is_empty(),
        "distributor disabled: nothing delivered"
    );
}

#[test]
fn sgir_target_filters() {
    let mut r = rec(4);
    let pend = |g: &Vgic, v: usize| g.mmio_read(v, 0xF24, 4).unwrap() & 0xFF; // SGI 4 sources
    // Filter 0: the CPU target list (bits beyond the 4 vCPUs ignored).
    let mut g = Vgic::new(4).unwrap();
    g.mmio_write(&mut r, 1, 0xF00, 4, 0b1111_0101 << 16 | 4)
        .unwrap();
    assert_eq!(
        [pend(&g, 0), pend(&g, 1), pend(&g, 2), pend(&g, 3)],
        [0b10, 0, 0b10, 0]
    );
    // Filter 1: everyone but the sender.
    let mut g = Vgic::new(4).unwrap();
    g.mmio_write(&mut r, 2, 0xF00, 4, 1 << 24 | 4).unwrap();
    assert_eq!(
        [pend(&g, 0), pend(&g, 1), pend(&g, 2), pend(&g, 3)],
        [0b100, 0b100, 0, 0b100]
    );
    // Filter 2: the sender only.
    let mut g = Vgic::new(4).unwrap();
    g.mmio_write(&mut r, 3, 0xF00, 4, 2 << 24 | 0xFF << 16 | 4)
        .unwrap();
    assert_eq!(
        [pend(&g, 0), pend(&g, 1), pend(&g, 2), pend(&g, 3)],
        [0, 0, 0, 0b1000]
    );
    // Filter 3: reserved, nothing.
    let mut g = Vgic::new(4).unwrap();
    g.mmio_write(&mut r, 0, 0xF00, 4, 3 << 24 | 0xFF << 16 | 4)
        .unwrap();
    assert_eq!((0..4).map(|v| pend(&g, v)).sum::<u32>(), 0);
    // ISPENDR0 shows SGI 4 pending; its writes to SGI bits are ignored.
    let mut g = Vgic::new(2).unwrap();
    g.mmio_write(&mut r, 0, 0xF00, 4, 1 << 24 | 4).unwrap();
    assert_eq!(g.mmio_read(1, 0x200, 4), Ok(1 << 4));
    g.mmio_write(&mut r, 1, 0x280, 4, u32::MAX).unwrap();
    assert_eq!(g.mmio_read(1, 0x200, 4), Ok(1 << 4));
    // Once enabled, each source is delivered once: two senders, two deliveries.
    g.mmio_write(&mut r, 1, 0xF00, 4, 2 << 24 | 4).unwrap();
    assert_eq!(g.mmio_read(1, 0xF24, 4), Ok(0b11));
    g.mmio_write(&mut r, 0, 0x000, 4, 1).unwrap();
    assert_eq!(r.injected, vec![(1, 4, 0, 0, 0)]);
    assert_eq!(g.mmio_read(1, 0xF24, 4), Ok(0b10));
    assert_eq!(g.maintenance(&mut r, 1, Some(0)), Ok(Some(4)));
    assert_eq!(r.injected.len(), 2);
    assert_eq!(g.mmio_read(1, 0xF24, 4), Ok(0));
}

#[test]
fn queue_drains_by_priority() {
    let mut g = Vgic::new(1).unwrap();
    let mut r = rec(1);
    g.mmio_write(&mut r, 0, 0x000, 4, 1).unwrap();
    g.mmio_write(&mut r, 0, 0x104, 4, u32::MAX).unwrap(); // enable SPIs 32..63
    g.mmio_write(&mut r, 0, 0x828, 4, 0x0101_0101).unwrap(); // SPIs 40..43 -> vCPU 0
    g.mmio_write(&mut r, 0, 0x428, 4, 0x1050_10A0).unwrap(); // 40:A0 41:10 42:50 43:10
    for s in [40, 42, 41, 43] {
        g.set_irq_pending(&mut r, s).unwrap();
    }
    assert_eq!(g.queued(0), &[42, 41, 43]);
    assert_eq!(g.irq_status(0, 42), Some(IrqStatus::Queued { vcpu: 0 }));
    let mut order = vec![];
    while let Some(id) = g.lr_occupant(0, 0) {
        order.push(id);
        assert_eq!(g.maintenance(&mut r, 0, Some(0)), Ok(Some(id)));
    }
    assert_eq!(
        order,
        [40, 41, 43, 42],
        "highest priority first, FIFO among equals"
    );
    assert_eq!(
        r.injected.iter().map(|i| i.2).collect::<Vec<_>>(),
        [0xA0, 0x10, 0x10, 0x50]
    );
    assert_eq!(
        g.maintenance(&mut r, 0, Some(0)),
        Err(VgicError::ListRegisterFree { vcpu: 0, lr: 0 })
    );
    assert_eq!(
        g.maintenance(&mut r, 0, Some(1)),
        Err(VgicError::BadListRegister { vcpu: 0, lr: 1 })
    );
    assert_eq!(g.set_irq_pending(&mut r, 31), Err(VgicError::NotSpi(31)));
    assert_eq!(g.set_irq_pending(&mut r, 256), Err(VgicError::NotSpi(256)));
}

#[test]
fn vtimer_ppi_is_acked_after_eoi() {
    let mut g = Vgic::new(2).unwrap();
    let mut r = rec(4);
    g.mmio_write(&mut r, 0, 0x000, 4, 1).unwrap();
    g.mmio_write(&mut r, 1, 0x100, 4, 1 << VTIMER_PPI).unwrap();
    g.ppi_event(&mut r, 1, VTIMER_PPI).unwrap();
    assert_eq!(r.injected, vec![(1, 27, 0, 0, 0)]);
    assert!(
        r.acked.is_empty(),
        "not acknowledged before the guest EOIs it"
    );
    assert_eq!(g.maintenance(&mut r, 1, Some(0)), Ok(Some(27)));
    assert_eq!(r.acked, vec![(1, 27)]);
    // Disabled on vCPU 0: stays pending, not delivered, not acked; clearing it acks.
    g.ppi_event(&mut r, 0, VTIMER_PPI).unwrap();
    assert_eq!(r.injected.len(), 1);
    assert!(g.is_pending(0, 27));
    g.mmio_write(&mut r, 0, 0x280, 4, 1 << VTIMER_PPI).unwrap();
    assert_eq!(r.acked, vec![(1, 27), (0, 27)]);
    // An EOI of a PPI that did not come from ppi_event does not ack.
    g.mmio_write(&mut r, 1, 0x200, 4, 1 << VTIMER_PPI).unwrap();
    assert_eq!(g.maintenance(&mut r, 1, Some(0)), Ok(Some(27)));
    assert_eq!(r.acked.len(), 2);
    // Acknowledged by that clear, the timer PPI of vCPU 0 owes no acknowledgement any more:
    // made pending through GICD_ISPENDR0, delivered and EOI'd, it is not acknowledged again;
    // nor is another PPI the kernel never reported.
    g.mmio_write(&mut r, 0, 0x100, 4, (1 << VTIMER_PPI) | (1 << 26))
        .unwrap();
    g.mmio_write(&mut r, 0, 0x200, 4, (1 << VTIMER_PPI) | (1 << 26))
        .unwrap();
    for _ in 0..2 {
        let lr = (0..4).find(|&l| g.lr_occupant(0, l).is_some()).unwrap();
        g.maintenance(&mut r, 0, Some(lr)).unwrap();
    }
    assert_eq!(r.acked, vec![(1, 27), (0, 27)]);
    assert_eq!(g.ppi_event(&mut r, 0, 32), Err(VgicError::NotPpi(32)));
    assert_eq!(g.ppi_event(&mut r, 2, 27), Err(VgicError::NoSuchVcpu(2)));
}

#[test]
fn injector_failure_keeps_interrupt_pending() {
    let mut g = Vgic::new(1).unwrap();
    let mut r = rec(2);
    g.mmio_write(&mut r, 0, 0x000, 4, 1).unwrap();
    g.mmio_write(&mut r, 0, 0x104, 4, 1).unwrap();
    g.mmio_write(&mut r, 0, 0x820, 4, 1).unwrap();
    r.fail = true;
    assert_eq!(
        g.set_irq_pending(&mut r, 32),
        Err(VgicError::Inject(InjectError::Kernel(1)))
    );
    assert!(g.is_pending(0, 32) && g.is_waiting(0, 32));
    assert!(g.needs_rescan(0));
    r.fail = false;
    g.sync(&mut r).unwrap();
    assert_eq!(r.injected, vec![(0, 32, 0, 0, 0)]);
    assert!(!g.is_pending(0, 32) && g.is_active(0, 32));
    assert_eq!(g.mmio_read(0, 0x304, 4), Ok(1), "ISACTIVER shows it");
}

/// `has_interrupts` (the PD parks a vCPU on WFI only without them): true while an interrupt sits
/// in an LR (until its EOI), while one waits in the overflow queue, and while one that found no
/// room is owed a rescan; false otherwise, and per vCPU.
#[test]
fn has_interrupts_covers_lrs_queue_and_rescan() {
    let mut g = Vgic::new(2).unwrap();
    assert_eq!(g.num_vcpus(), 2);
    assert_eq!(Vgic::new(8).unwrap().num_vcpus(), 8);
    let mut r = rec(1);
    assert!(!g.has_interrupts(0) && !g.has_interrupts(1));
    assert!(!g.has_interrupts(2), "no such vCPU");
    g.mmio_write(&mut r, 0, 0x000, 4, 1).unwrap();
    g.mmio_write(&mut r, 0, 0x104, 4, u32::MAX).unwrap(); // enable SPIs 32..63
    assert!(!g.has_interrupts(0), "enabled but nothing pending");
    // SPI 32 to vCPU 0: into its only LR.
    g.mmio_write(&mut r, 0, 0x820, 4, 0x01).unwrap();
    g.set_irq_pending(&mut r, 32).unwrap();
    assert_eq!(g.lr_occupant(0, 0), Some(32));
    assert!(g.queued(0).is_empty() && !g.needs_rescan(0));
    assert!(g.has_interrupts(0), "in an LR");
    assert!(!g.has_interrupts(1), "vCPU 1 has none");
    // 16 more: they fill the queue.
    g.mmio_write(&mut r, 0, 0x824, 4, 0x0101_0101).unwrap(); // 36..39
    g.mmio_write(&mut r, 0, 0x828, 4, 0x0101_0101).unwrap(); // 40..43
    g.mmio_write(&mut r, 0, 0x82C, 4, 0x0101_0101).unwrap(); // 44..47
    g.mmio_write(&mut r, 0, 0x830, 4, 0x0101_0101).unwrap(); // 48..51
    g.mmio_write(&mut r, 0, 0x834, 4, 0x0101_0101).unwrap(); // 52..55
    for s in 36..53 {
        g.set_irq_pending(&mut r, s).unwrap();
    }
    assert_eq!(g.queued(0).len(), OVERFLOW_CAPACITY);
    assert!(g.needs_rescan(0), "the 17th found no room");
    // EOI of the LR: the queue's head moves in, the owed one takes the freed queue slot.
    assert_eq!(g.maintenance(&mut r, 0, Some(0)), Ok(Some(32)));
    assert_eq!(g.lr_occupant(0, 0), Some(36));
    assert_eq!(g.queued(0).len(), OVERFLOW_CAPACITY);
    assert!(!g.needs_rescan(0));
    // EOI one at a time: the queue drains into the LR; true all along.
    for _ in 0..OVERFLOW_CAPACITY {
        let id = g.lr_occupant(0, 0).unwrap();
        assert!(g.has_interrupts(0));
        assert_eq!(g.maintenance(&mut r, 0, Some(0)), Ok(Some(id)));
    }
    let last = g.lr_occupant(0, 0).unwrap();
    assert!(g.queued(0).is_empty() && !g.needs_rescan(0));
    assert!(g.has_interrupts(0), "the last one is still in its LR");
    assert_eq!(g.maintenance(&mut r, 0, Some(0)), Ok(Some(last)));
    assert_eq!(g.lr_occupant(0, 0), None);
    assert!(!g.has_interrupts(0), "all EOI'd");
}

/// With the LR busy, a queued interrupt alone makes `has_interrupts` true, and so does a rescan
/// owed alone (the queue emptied by disabling what was in it, the rescan flag left).
#[test]
fn has_interrupts_sees_a_queue_or_a_rescan_alone() {
    let mut g = Vgic::new(1).unwrap();
    let mut r = rec(0); // no LR at all: everything queues
    g.mmio_write(&mut r, 0, 0x000, 4, 1).unwrap();
    g.mmio_write(&mut r, 0, 0x104, 4, 1).unwrap(); // enable SPI 32
    g.mmio_write(&mut r, 0, 0x820, 4, 0x01).unwrap();
    g.set_irq_pending(&mut r, 32).unwrap();
    assert_eq!(g.queued(0), &[32]);
    assert!(!g.needs_rescan(0) && g.lr_occupant(0, 0).is_none());
    assert!(g.has_interrupts(0), "queued only");
    // Disabled: it leaves the queue, nothing is left.
    g.mmio_write(&mut r, 0, 0x184, 4, 1).unwrap();
    assert!(g.queued(0).is_empty());
    assert!(!g.has_interrupts(0));
    // An injector failure leaves a rescan owed with no LR or queue entry.
    let mut r = rec(1);
    r.fail = true;
    g.mmio_write(&mut r, 0, 0x104, 4, 1).unwrap_err();
    assert!(g.queued(0).is_empty() && g.lr_occupant(0, 0).is_none());
    assert!(g.needs_rescan(0));
    assert!(g.has_interrupts(0), "rescan only");
}
