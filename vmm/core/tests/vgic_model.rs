//! Executable specification of the vGIC: a plain-array GICv2 distributor model in which every
//! deliverable interrupt simply "waits" (an unbounded queue), checked step by step against
//! `Vgic` driven by random MMIO writes and reads, device and timer interrupts and maintenance
//! (EOI) events. The model replays every LR write the vGIC makes and checks it was legal (the
//! interrupt was waiting, the LR free, priority and group right): nothing is duplicated; it also
//! checks that no LR stays free while something waits and that the overflow queue is as full as
//! it can be; and at the end, after the guest EOIs everything, that nothing is left waiting:
//! nothing is lost.

use proptest::prelude::*;
use vmm_core::vgic::*;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Inject {
        vcpu: usize,
        irq: u32,
        prio: u8,
        group: u8,
        lr: u8,
    },
    Ack {
        vcpu: usize,
        irq: u32,
    },
}

/// Records what the vGIC does; can be made to fail.
struct Mock {
    count: u8,
    fail: bool,
    failed: bool,
    log: Vec<Event>,
}

impl IrqInjector for Mock {
    fn inject(
        &mut self,
        vcpu: usize,
        virq: u32,
        priority: u8,
        group: u8,
        lr: u8,
    ) -> Result<(), InjectError> {
        if self.fail {
            self.failed = true;
            return Err(InjectError::Kernel(3));
        }
        self.log.push(Event::Inject {
            vcpu,
            irq: virq,
            prio: priority,
            group,
            lr,
        });
        Ok(())
    }
    fn list_register_count(&self) -> u8 {
        self.count
    }
    fn ack_vppi(&mut self, vcpu: usize, irq: u32) -> Result<(), InjectError> {
        self.log.push(Event::Ack { vcpu, irq });
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct MIrq {
    pending: bool,
    enabled: bool,
    active: bool,
    group1: bool,
    priority: u8,
    target: u8,
    edge: bool,
    in_lr: bool,
}

/// The reference model.
struct Model {
    n: usize,
    ctlr: u32,
    private: Vec<[MIrq; 32]>,
    spis: Vec<MIrq>,
    sgi_src: Vec<[u8; 16]>,
    lrs: Vec<Vec<Option<u32>>>,
    unacked: Vec<u32>,
    expected_acks: Vec<(usize, u32)>,
}

#[derive(Debug, PartialEq)]
enum Class {
    Ok,
    Size,
    Unaligned,
    Range,
    Vcpu,
}

fn class(r: &Result<impl Sized, VgicError>) -> Class {
    match r {
        Ok(_) => Class::Ok,
        Err(VgicError::BadAccessSize { .. }) => Class::Size,
        Err(VgicError::Unaligned { .. }) => Class::Unaligned,
        Err(VgicError::OutOfRange { .. }) => Class::Range,
        Err(VgicError::NoSuchVcpu(_)) => Class::Vcpu,
        Err(e) => panic!("unexpected error class {e:?}"),
    }
}

impl Model {
    fn new(n: usize, lrs: usize) -> Self {
        let mut bank = [MIrq::default(); 32];
        for (i, q) in bank.iter_mut().enumerate().take(16) {
            q.enabled = true;
            q.edge = i < 16;
        }
        Self {
            n,
            ctlr: 0,
            private: vec![bank; n],
            spis: vec![MIrq::default(); 224],
            sgi_src: vec![[0; 16]; n],
            lrs: vec![vec![None; lrs]; n],
            unacked: vec![0; n],
            expected_acks: vec![],
        }
    }
    fn mask(&self) -> u8 {
        ((1u16 << self.n) - 1) as u8
    }
    fn irq(&mut self, v: usize, id: u32) -> Option<&mut MIrq> {
        if id < 32 {
            self.private.get_mut(v).map(|b| &mut b[id as usize])
        } else {
            self.spis.get_mut(id as usize - 32)
        }
    }
    fn get(&self, v: usize, id: u32) -> MIrq {
        if id < 32 {
            self.private[v][id as usize]
        } else {
            self.spis.get(id as usize - 32).copied().unwrap_or_default()
        }
    }
    fn pending(&self, v: usize, id: u32) -> bool {
        if id < 16 {
            self.sgi_src[v][id as usize] != 0
        } else {
            self.get(v, id).pending
        }
    }
    fn spi_target(&self, q: &MIrq) -> Option<usize> {
        let t = q.target & self.mask();
        (t != 0).then(|| t.trailing_zeros() as usize)
    }
    /// The spec of "waiting for an LR of v".
    fn waiting(&self, v: usize, id: u32) -> bool {
        if id >= 256 {
            return false;
        }
        let q = self.get(v, id);
        let targeted = id < 32 || self.spi_target(&q) == Some(v);
        self.pending(v, id)
            && q.enabled
            && !q.active
            && !q.in_lr
            && self.ctlr & (1 << q.group1 as u32) != 0
            && targeted
    }
    fn waiting_set(&self, v: usize) -> Vec<u32> {
        (0..256).filter(|&id| self.waiting(v, id)).collect()
    }
    fn access_class(&self, v: usize, off: u64, size: u8) -> Class {
        if v >= self.n {
            return Class::Vcpu;
        }
        if off >= 0x10000 {
            return Class::Range;
        }
        let byte_ok = (0x400..0xC00).contains(&off) || (0xF10..0xF30).contains(&off);
        match size {
            4 if off.is_multiple_of(4) => Class::Ok,
            4 => Class::Unaligned,
            1 if byte_ok => Class::Ok,
            _ => Class::Size,
        }
    }
    fn read(&self, v: usize, off: u64, size: u8) -> u32 {
        let bits = |f: &dyn Fn(u32) -> bool, base: u64| {
            let first = ((off - base) / 4 * 32) as u32;
            (0..32).fold(0u32, |a, i| {
                a | ((first + i < 256 && f(first + i)) as u32) << i
            })
        };
        let bytes = |f: &dyn Fn(u32) -> u8, base: u64| {
            let first = (off - base) as u32;
            (0..size as u32).fold(0u32, |a, i| a | (f(first + i) as u32) << (8 * i))
        };
        match off {
            0 => self.ctlr,
            4 => 7 | ((self.n as u32 - 1) << 5),
            8 => 0x0200_143B,
            0x80..=0xFF => bits(&|id| self.get(v, id).group1, 0x80),
            0x100..=0x1FF => bits(
                &|id| self.get(v, id).enabled,
                if off < 0x180 { 0x100 } else { 0x180 },
            ),
            0x200..=0x2FF => bits(
                &|id| self.pending(v, id),
                if off < 0x280 { 0x200 } else { 0x280 },
            ),
            0x300..=0x3FF => bits(
                &|id| self.get(v, id).active,
                if off < 0x380 { 0x300 } else { 0x380 },
            ),
            0x400..=0x7FF => bytes(
                &|id| {
                    if id < 256 {
                        self.get(v, id).priority
                    } else {
                        0
                    }
                },
                0x400,
            ),
            0x800..=0xBFF => bytes(
                &|id| {
                    if id < 32 {
                        1 << v
                    } else if id < 256 {
                        self.get(v, id).target
                    } else {
                        0
                    }
                },
                0x800,
            ),
            0xC00..=0xCFF => {
                let first = ((off - 0xC00) / 4 * 16) as u32;
                (0..16).fold(0u32, |a, i| {
                    let id = first + i;
                    let edge = id < 16 || ((32..256).contains(&id) && self.get(v, id).edge);
                    a | (edge as u32) << (2 * i + 1)
                })
            }
            0xF10..=0xF1F => bytes(&|id| self.sgi_src[v][id as usize], 0xF10),
            0xF20..=0xF2F => bytes(&|id| self.sgi_src[v][id as usize], 0xF20),
            0xFD0..=0xFFF => [0x04, 0, 0, 0, 0x90, 0xB4, 0x2B, 0, 0x0D, 0xF0, 0x05, 0xB1]
                [((off - 0xFD0) / 4) as usize],
            _ => 0,
        }
    }
    fn write(&mut self, v: usize, off: u64, size: u8, val: u32) {
        let bit = |i: u32| val & (1 << i) != 0;
        let byte = |i: u32| (val >> (8 * i)) as u8;
        let mask = self.mask();
        let word_first = |base: u64| ((off - base) / 4 * 32) as u32;
        match off {
            0 => self.ctlr = val & 3,
            0x80..=0xFF => {
                for i in 0..32 {
                    if let Some(q) = self.irq(v, word_first(0x80) + i) {
                        q.group1 = bit(i);
                    }
                }
            }
            0x100..=0x3FF => {
                let kind = (off - 0x100) / 0x80; // 0 sen, 1 cen, 2 spend, 3 cpend, 4 sact, 5 cact
                let first = word_first(0x100 + kind * 0x80);
                for i in (0..32).filter(|&i| bit(i)) {
                    let id = first + i;
                    if id < 16 && kind < 4 {
                        continue;
                    }
                    let unacked = self.unacked[v];
                    let Some(q) = self.irq(v, id) else { continue };
                    match kind {
                        0 => q.enabled = true,
                        1 => q.enabled = false,
                        2 => q.pending = true,
                        3 => {
                            q.pending = false;
                            let in_lr = q.in_lr;
                            if (16..32).contains(&id) && unacked & (1 << id) != 0 && !in_lr {
                                self.unacked[v] &= !(1 << id);
                                self.expected_acks.push((v, id));
                            }
                        }
                        4 => q.active = true,
                        _ => q.active = false,
                    }
                }
            }
            0x400..=0x7FF => {
                for i in 0..size as u32 {
                    if let Some(q) = self.irq(v, (off - 0x400) as u32 + i) {
                        q.priority = byte(i) & 0xF8;
                    }
                }
            }
            0x800..=0xBFF => {
                for i in 0..size as u32 {
                    let id = (off - 0x800) as u32 + i;
                    if id >= 32
                        && let Some(q) = self.irq(v, id)
                    {
                        q.target = byte(i) & mask;
                    }
                }
            }
            0xC00..=0xCFF => {
                for i in 0..16 {
                    let id = ((off - 0xC00) / 4 * 16) as u32 + i;
                    if id >= 32
                        && let Some(q) = self.irq(v, id)
                    {
                        q.edge = bit(2 * i + 1);
                    }
                }
            }
            0xF00 => {
                let sgi = (val & 15) as usize;
                let targets = match (val >> 24) & 3 {
                    0 => (val >> 16) as u8 & mask,
                    1 => mask & !(1 << v),
                    2 => 1 << v,
                    _ => 0,
                };
                for t in 0..self.n {
                    if targets & (1 << t) != 0 {
                        self.sgi_src[t][sgi] |= 1 << v;
                    }
                }
            }
            0xF10..=0xF2F => {
                let set = off >= 0xF20;
                let first = (off - if set { 0xF20 } else { 0xF10 }) as usize;
                for i in 0..size as usize {
                    let s = &mut self.sgi_src[v][first + i];
                    *s = if set {
                        *s | (byte(i as u32) & mask)
                    } else {
                        *s & !byte(i as u32)
                    };
                }
            }
            _ => {}
        }
    }
    fn maintenance(&mut self, v: usize, lr: u8) -> Option<u32> {
        let id = self.lrs[v].get_mut(lr as usize)?.take()?;
        let q = self.irq(v, id).unwrap();
        q.in_lr = false;
        q.active = false;
        if (16..32).contains(&id) && self.unacked[v] & (1 << id) != 0 {
            self.unacked[v] &= !(1 << id);
            self.expected_acks.push((v, id));
        }
        Some(id)
    }
    /// Replays the vGIC's LR writes and acknowledgements, checking each.
    fn replay(&mut self, log: &[Event]) -> Result<(), TestCaseError> {
        let mut acks = vec![];
        for e in log {
            match *e {
                Event::Inject {
                    vcpu,
                    irq,
                    prio,
                    group,
                    lr,
                } => {
                    prop_assert!(
                        self.waiting(vcpu, irq),
                        "injected {irq} into vcpu {vcpu} but it was not waiting (duplicate or not deliverable)"
                    );
                    let slot = self.lrs[vcpu].get(lr as usize).copied();
                    prop_assert_eq!(slot, Some(None), "LR {} of vcpu {} not free", lr, vcpu);
                    let q = self.get(vcpu, irq);
                    prop_assert_eq!((prio, group), (q.priority, q.group1 as u8));
                    self.lrs[vcpu][lr as usize] = Some(irq);
                    if irq < 16 {
                        let s = &mut self.sgi_src[vcpu][irq as usize];
                        *s &= *s - 1;
                    }
                    let q = self.irq(vcpu, irq).unwrap();
                    q.pending = false;
                    q.active = true;
                    q.in_lr = true;
                }
                Event::Ack { vcpu, irq } => acks.push((vcpu, irq)),
            }
        }
        prop_assert_eq!(acks, std::mem::take(&mut self.expected_acks));
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write {
        vcpu: usize,
        off: u64,
        size: u8,
        val: u32,
    },
    Read {
        vcpu: usize,
        off: u64,
        size: u8,
    },
    Spi(u32),
    Ppi {
        vcpu: usize,
        irq: u32,
    },
    /// EOI of the `n`-th occupied LR (any vCPU), or of a raw LR.
    Eoi(usize),
    RawMaintenance {
        vcpu: usize,
        lr: Option<u8>,
    },
    Sync,
    Fail(bool),
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0u64),
        1 => (0u64..3).prop_map(|k| 0x80 + 4 * k),
        4 => (0u64..6, 0u64..2).prop_map(|(r, k)| 0x100 + r * 0x80 + 4 * k),
        2 => (0u64..64).prop_map(|b| 0x400 + b),
        2 => (28u64..64).prop_map(|b| 0x800 + b),
        1 => (0u64..5).prop_map(|k| 0xC00 + 4 * k),
        3 => Just(0xF00u64),
        2 => (0u64..32).prop_map(|b| 0xF10 + b),
        1 => 0u64..0x1000,
        1 => prop_oneof![Just(0xFE8u64), Just(0x4), Just(0x8), Just(0x1_0000), any::<u64>()],
    ]
}

fn value() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        Just(u32::MAX),
        Just(0),
        Just(3),
        (0u32..16, 0u32..4, 0u32..256).prop_map(|(id, f, t)| id | f << 24 | t << 16)
    ]
}

fn size() -> impl Strategy<Value = u8> {
    prop_oneof![6 => Just(4u8), 3 => Just(1u8), 1 => Just(2u8), 1 => Just(8u8)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0usize..5, offset(), size(), value()).prop_map(|(vcpu, off, size, val)| Op::Write { vcpu, off: if size == 4 { off & !3 } else { off }, size, val }),
        3 => (0usize..5, offset(), size()).prop_map(|(vcpu, off, size)| Op::Read { vcpu, off, size }),
        5 => prop_oneof![32u32..64, 0u32..300].prop_map(Op::Spi),
        3 => (0usize..5, prop_oneof![Just(27u32), 16u32..32, 0u32..40]).prop_map(|(vcpu, irq)| Op::Ppi { vcpu, irq }),
        8 => any::<usize>().prop_map(Op::Eoi),
        1 => (0usize..5, proptest::option::of(0u8..6)).prop_map(|(vcpu, lr)| Op::RawMaintenance { vcpu, lr }),
        1 => Just(Op::Sync),
        1 => prop_oneof![4 => Just(false), 1 => Just(true)].prop_map(Op::Fail),
    ]
}

fn check_state(g: &Vgic, m: &Model, inj: &Mock, live: bool) -> Result<(), TestCaseError> {
    for v in 0..m.n {
        // LR occupancy is exactly what the model replayed.
        for lr in 0..inj.count {
            prop_assert_eq!(
                g.lr_occupant(v, lr),
                m.lrs[v][lr as usize],
                "vcpu {} LR {}",
                v,
                lr
            );
        }
        // The waiting sets agree (queued or pending-idle in the vGIC).
        let waiting = m.waiting_set(v);
        let got: Vec<u32> = (0..256).filter(|&id| g.is_waiting(v, id)).collect();
        prop_assert_eq!(&got, &waiting, "vcpu {} waiting set", v);
        // The queue holds only waiting interrupts, each once.
        let q = g.queued(v);
        let mut sorted: Vec<u16> = q.to_vec();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), q.len(), "duplicate in queue");
        for &id in q {
            prop_assert!(waiting.contains(&u32::from(id)));
        }
        if live {
            // No LR stays free while something waits, and the queue is as full as it can be.
            if m.lrs[v].iter().any(|l| l.is_none()) {
                prop_assert!(
                    waiting.is_empty(),
                    "vcpu {} has a free LR but {:?} wait",
                    v,
                    waiting
                );
            }
            prop_assert_eq!(
                q.len(),
                waiting.len().min(OVERFLOW_CAPACITY),
                "vcpu {} queue under-filled",
                v
            );
        }
    }
    Ok(())
}

fn run(n: usize, lrs: u8, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut g = Vgic::new(n).unwrap();
    let mut m = Model::new(n, lrs as usize);
    let mut inj = Mock {
        count: lrs,
        fail: false,
        failed: false,
        log: vec![],
    };
    let mut dirty = false; // an injection failed since the last healthy sync
    for op in ops {
        inj.failed = false;
        let r: Result<(), VgicError> = match *op {
            Op::Write {
                vcpu,
                off,
                size,
                val,
            } => {
                let r = g.mmio_write(&mut inj, vcpu, off, size, val);
                let want = m.access_class(vcpu, off, size);
                if want == Class::Ok {
                    m.write(vcpu, off, size, val);
                }
                if !(inj.failed && matches!(r, Err(VgicError::Inject(_)))) {
                    prop_assert_eq!(class(&r), want, "write {:#x} size {}", off, size);
                }
                r.map(|_| ()).or_else(|e| {
                    if matches!(e, VgicError::Inject(_)) {
                        Err(e)
                    } else {
                        Ok(())
                    }
                })
            }
            Op::Read { vcpu, off, size } => {
                let r = g.mmio_read(vcpu, off, size);
                let want = m.access_class(vcpu, off, size);
                prop_assert_eq!(class(&r), want);
                if let Ok(x) = r {
                    prop_assert_eq!(
                        x,
                        m.read(vcpu, off, size),
                        "read {:#x} size {} vcpu {}",
                        off,
                        size,
                        vcpu
                    );
                }
                Ok(())
            }
            Op::Spi(irq) => {
                let r = g.set_irq_pending(&mut inj, irq);
                if (32..256).contains(&irq) {
                    m.irq(0, irq).unwrap().pending = true;
                } else {
                    prop_assert_eq!(r, Err(VgicError::NotSpi(irq)));
                    continue;
                }
                r
            }
            Op::Ppi { vcpu, irq } => {
                let r = g.ppi_event(&mut inj, vcpu, irq);
                if vcpu >= n {
                    prop_assert_eq!(r, Err(VgicError::NoSuchVcpu(vcpu)));
                    continue;
                }
                if !(16..32).contains(&irq) {
                    prop_assert_eq!(r, Err(VgicError::NotPpi(irq)));
                    continue;
                }
                m.irq(vcpu, irq).unwrap().pending = true;
                m.unacked[vcpu] |= 1 << irq;
                r
            }
            Op::Eoi(k) => {
                let occupied: Vec<(usize, u8)> = (0..n)
                    .flat_map(|v| (0..lrs).map(move |l| (v, l)))
                    .filter(|&(v, l)| m.lrs[v][l as usize].is_some())
                    .collect();
                if occupied.is_empty() {
                    continue;
                }
                let (v, l) = occupied[k % occupied.len()];
                let want = m.maintenance(v, l);
                let r = g.maintenance(&mut inj, v, Some(l));
                match r {
                    Ok(got) => prop_assert_eq!(got, want),
                    Err(VgicError::Inject(_)) => prop_assert!(inj.failed),
                    Err(e) => prop_assert!(false, "maintenance: {:?}", e),
                }
                r.map(|_| ())
            }
            Op::RawMaintenance { vcpu, lr } => {
                let r = g.maintenance(&mut inj, vcpu, lr);
                if vcpu >= n {
                    prop_assert_eq!(r, Err(VgicError::NoSuchVcpu(vcpu)));
                    continue;
                }
                match lr {
                    Some(l) if l >= lrs => {
                        prop_assert_eq!(r, Err(VgicError::BadListRegister { vcpu, lr: l }));
                        continue;
                    }
                    Some(l) if m.lrs[vcpu][l as usize].is_none() => {
                        prop_assert_eq!(r, Err(VgicError::ListRegisterFree { vcpu, lr: l }));
                        continue;
                    }
                    Some(l) => {
                        let want = m.maintenance(vcpu, l);
                        if !inj.failed {
                            prop_assert_eq!(r, Ok(want));
                        }
                    }
                    None => {
                        if !inj.failed {
                            prop_assert_eq!(r, Ok(None));
                        }
                    }
                }
                r.map(|_| ())
            }
            Op::Sync => g.sync(&mut inj),
            Op::Fail(f) => {
                inj.fail = f;
                continue;
            }
        };
        let log = std::mem::take(&mut inj.log);
        m.replay(&log)?;
        if inj.failed {
            dirty = true;
            prop_assert!(r.is_err(), "a failed injection must be reported");
        } else {
            prop_assert!(r.is_ok(), "{:?}", r);
        }
        if matches!(op, Op::Sync) && !inj.fail {
            dirty = false;
        }
        check_state(&g, &m, &inj, !dirty && !inj.fail)?;
    }
    // Heal, then let the guest EOI everything: nothing may be left waiting.
    inj.fail = false;
    g.sync(&mut inj).unwrap();
    let log = std::mem::take(&mut inj.log);
    m.replay(&log)?;
    for _ in 0..100_000 {
        let Some((v, l)) = (0..n)
            .flat_map(|v| (0..lrs).map(move |l| (v, l)))
            .find(|&(v, l)| m.lrs[v][l as usize].is_some())
        else {
            break;
        };
        let want = m.maintenance(v, l);
        prop_assert_eq!(g.maintenance(&mut inj, v, Some(l)), Ok(want));
        let log = std::mem::take(&mut inj.log);
        m.replay(&log)?;
        check_state(&g, &m, &inj, true)?;
    }
    for v in 0..n {
        prop_assert!(
            m.waiting_set(v).is_empty(),
            "left waiting on vcpu {}: {:?}",
            v,
            m.waiting_set(v)
        );
        prop_assert!(m.lrs[v].iter().all(|l| l.is_none()));
        // The full register file agrees.
        for off in (0..0x1000u64).step_by(4) {
            prop_assert_eq!(
                g.mmio_read(v, off, 4).unwrap(),
                m.read(v, off, 4),
                "final read {:#x} vcpu {}",
                off,
                v
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// Random operation sequences: the vGIC agrees with the reference model at every step.
    #[test]
    fn vgic_matches_model(n in 1usize..=4, lrs in 1u8..=4, ops in proptest::collection::vec(op(), 1..150)) {
        run(n, lrs, &ops)?;
    }

    /// Flooding one vCPU with more interrupts than LRs + queue: nothing is lost.
    #[test]
    fn overflow_loses_nothing(lrs in 1u8..=2, spis in proptest::collection::vec(32u32..256, 1..200), eois in proptest::collection::vec(any::<usize>(), 0..40)) {
        let mut ops = vec![
            Op::Write { vcpu: 0, off: 0, size: 4, val: 1 },
            Op::Write { vcpu: 0, off: 0x100, size: 4, val: u32::MAX },
        ];
        for k in 1..8u64 {
            ops.push(Op::Write { vcpu: 0, off: 0x100 + 4 * k, size: 4, val: u32::MAX });
        }
        for b in (32..256u64).step_by(4) {
            ops.push(Op::Write { vcpu: 0, off: 0x800 + b, size: 4, val: 0x0101_0101 });
        }
        ops.extend(spis.iter().map(|&s| Op::Spi(s)));
        ops.push(Op::Write { vcpu: 0, off: 0xF00, size: 4, val: 2 << 24 | 5 });
        ops.push(Op::Ppi { vcpu: 0, irq: 27 });
        ops.push(Op::Write { vcpu: 0, off: 0x100, size: 4, val: 1 << 27 });
        ops.extend(eois.iter().map(|&k| Op::Eoi(k)));
        run(1, lrs, &ops)?;
    }
}
