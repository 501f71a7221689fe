//! The virtual GIC: this module owns the GICv2 distributor model (GICD registers at the QEMU
//! `virt` base [`GICD_BASE`], per-IRQ state) and the delivery of virtual interrupts into the list
//! registers (LRs) of each vCPU, with a bounded software overflow queue.
//!
//! The CPU interface is not emulated: the guest's GICC accesses at [`GICC_BASE`] reach the
//! hardware's virtual CPU interface (GICV), which seL4 maps there. The VMM only writes LRs, through
//! the abstract [`IrqInjector`] (seL4: `seL4_ARM_VCPU_InjectIRQ`), so a GICv3 back end (ICH_LR
//! through the same kernel call) can reuse the delivery engine unchanged.
//!
//! # Model
//! - 256 interrupt IDs ([`NUM_IRQS`]; GICD_TYPER.ITLinesNumber = 7): SGIs 0-15 and PPIs 16-31
//!   banked per vCPU, SPIs 32-255 shared. Up to [`MAX_VCPUS`] (8, the GICv2 limit) vCPUs.
//! - Per IRQ: enable, pending, active, group, priority (the top 5 bits are kept, as a GICv2
//!   virtual interface has 32 levels), target (SPIs; SGI/PPI targets read as the reading vCPU's
//!   own bit), config (SPIs edge/level; SGIs read as edge and PPIs as level, both read-only).
//! - SGIs are permanently enabled (GICD_ISENABLER0[15:0] read as one, writes ignored; GICv2 allows
//!   this) and their pending state is kept per source vCPU (GICD_SPENDSGIR/CPENDSGIR); writes to
//!   the SGI bits of GICD_ISPENDR0/ICPENDR0 are ignored, as in KVM.
//! - An interrupt is *deliverable* to vCPU `v` when it is pending, enabled, not active, its group
//!   is enabled in GICD_CTLR, it targets `v` (an SPI goes to the lowest-numbered vCPU in its
//!   target list; none if the list is empty) and it is not already in an LR or queued.
//! - Delivery: a deliverable interrupt goes into a free LR of its vCPU (it becomes active and its
//!   pending latch is consumed; for an SGI, one source), else into the vCPU's overflow queue
//!   (capacity [`OVERFLOW_CAPACITY`]). When the queue is full too, the interrupt simply stays
//!   pending and the vCPU is marked for a rescan, which runs as soon as an LR or a queue slot
//!   frees: nothing is silently lost. An interrupt is never in two LRs or queued twice.
//! - [`Vgic::maintenance`] (seL4 `VGICMaintenance` fault: the guest EOI'd the interrupt in an LR)
//!   frees the LR, clears the interrupt's active state, refills free LRs from the queue (highest
//!   priority first, FIFO among equals) and re-delivers anything still pending.
//! - A queued interrupt that stops being deliverable (disabled, cleared, retargeted, ...) leaves
//!   the queue at once. An interrupt already in an LR cannot be withdrawn (seL4 offers no LR
//!   read-back); it completes normally.
//! - Reads of GICD_ISPENDR show the pending latch (which is consumed when the interrupt enters an
//!   LR); GICD_ISACTIVER shows the active state (set on entry into an LR, cleared on EOI or by
//!   GICD_ICACTIVER).
//!
//! # Virtual timer (PPI 27)
//! seL4 reports the guest's virtual timer as a `VPPIEvent` fault and masks the physical PPI until
//! the VMM acknowledges it with `seL4_ARM_VCPU_AckVPPI`. [`Vgic::ppi_event`] makes the PPI pending;
//! the acknowledgement is a callback, [`IrqInjector::ack_vppi`], which the vGIC calls when the
//! guest EOIs that PPI (from [`Vgic::maintenance`]) or clears its pending state through
//! GICD_ICPENDR before delivery, so a level-triggered timer that is still asserted fires again.
//!
//! # Accesses
//! Offsets are relative to [`GICD_BASE`]. Word (4-byte, aligned) accesses work on every register;
//! byte accesses only on GICD_IPRIORITYR, GICD_ITARGETSR, GICD_CPENDSGIR and GICD_SPENDSGIR, as
//! the GICv2 architecture allows. Any other size or alignment is a typed error. Reserved and
//! unimplemented registers inside the 64 KiB frame are read-as-zero / write-ignored, as are
//! writes to read-only registers.

use crate::addr::GuestPhysAddr;

/// Guest-physical base of the distributor on QEMU `virt`.
pub const GICD_BASE: GuestPhysAddr = GuestPhysAddr(0x0800_0000);
/// Size of the distributor frame.
pub const GICD_SIZE: u64 = 0x1_0000;
/// Guest-physical base of the CPU interface on QEMU `virt` (the hardware GICV, not emulated).
pub const GICC_BASE: GuestPhysAddr = GuestPhysAddr(0x0801_0000);
/// Number of interrupt IDs implemented.
pub const NUM_IRQS: u32 = 256;
/// GICD_TYPER.ITLinesNumber for [`NUM_IRQS`]: `32 * (ITLinesNumber + 1) = NUM_IRQS`.
pub const IT_LINES_NUMBER: u32 = NUM_IRQS / 32 - 1;
/// Maximum vCPUs (GICv2 supports 8 CPU interfaces).
pub const MAX_VCPUS: usize = 8;
/// Maximum list registers per vCPU the vGIC tracks (the GICv2 architectural maximum).
pub const MAX_LRS: usize = 64;
/// Capacity of each vCPU's software overflow queue.
pub const OVERFLOW_CAPACITY: usize = 16;
/// The virtual timer PPI (CNTV) on QEMU `virt`.
pub const VTIMER_PPI: u32 = 27;
/// GICD_IIDR: ARM GIC-400 (implementer 0x43B, product 0x02).
pub const GICD_IIDR: u32 = 0x0200_143B;
/// ID registers from 0xFD0 to 0xFFC (PIDR4..PIDR7, PIDR0..PIDR3, CIDR0..CIDR3) of a GIC-400:
/// PIDR2 = 0x2B has ArchRev (bits 7:4) = 2, GICv2.
pub const GICD_ID_REGS: [u32; 12] = [
    0x04, 0x00, 0x00, 0x00, 0x90, 0xB4, 0x2B, 0x00, 0x0D, 0xF0, 0x05, 0xB1,
];

const NUM_SPIS: usize = (NUM_IRQS - 32) as usize;
/// GICv2 virtual interfaces implement 5 priority bits.
const PRIORITY_MASK: u8 = 0xF8;

/// Why the kernel refused an LR write or an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectError {
    /// The kernel's error code.
    Kernel(u64),
}

/// Where virtual interrupts go: the list registers of the vCPUs, and the virtual-PPI
/// acknowledgement. On seL4 the PD implements it with `seL4_ARM_VCPU_InjectIRQ` and
/// `seL4_ARM_VCPU_AckVPPI`; in tests it records what happened.
pub trait IrqInjector {
    /// Writes LR `list_register` of vCPU `vcpu_id` with `virq` pending. `priority` is the 8-bit
    /// GICD priority (the LR field keeps its top 5 bits, `priority >> 3`); `group` is 0 or 1.
    /// The vGIC only names LRs it knows to be free. `vcpu_id` need not be the vCPU whose exit is
    /// being handled (an SGI or SPI can target another vCPU).
    fn inject(
        &mut self,
        vcpu_id: usize,
        virq: u32,
        priority: u8,
        group: u8,
        list_register: u8,
    ) -> Result<(), InjectError>;
    /// Number of list registers per vCPU (at most [`MAX_LRS`] are used).
    fn list_register_count(&self) -> u8;
    /// Acknowledges the virtual PPI `irq` of `vcpu_id` to the kernel, which unmasks it.
    fn ack_vppi(&mut self, vcpu_id: usize, irq: u32) -> Result<(), InjectError>;
}

/// Why a vGIC operation was refused or not completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VgicError {
    /// The access size is not allowed for that register (or is not 1, 2, 4 or 8).
    BadAccessSize {
        /// Offset from [`GICD_BASE`].
        offset: u64,
        /// Size in bytes.
        size: u8,
    },
    /// A word access whose offset is not a multiple of 4.
    Unaligned {
        /// Offset from [`GICD_BASE`].
        offset: u64,
        /// Size in bytes.
        size: u8,
    },
    /// The offset is outside the 64 KiB distributor frame.
    OutOfRange {
        /// Offset from [`GICD_BASE`].
        offset: u64,
    },
    /// No such vCPU.
    NoSuchVcpu(usize),
    /// [`Vgic::ppi_event`] with an ID outside 16..=31.
    NotPpi(u32),
    /// [`Vgic::set_irq_pending`] with an ID outside the SPI range.
    NotSpi(u32),
    /// A maintenance report for an LR beyond the vCPU's count.
    BadListRegister {
        /// vCPU.
        vcpu: usize,
        /// LR index.
        lr: u8,
    },
    /// A maintenance report for an LR the vGIC did not fill (nothing changed).
    ListRegisterFree {
        /// vCPU.
        vcpu: usize,
        /// LR index.
        lr: u8,
    },
    /// The injector failed; the requested state change was made and the interrupt stays pending:
    /// it is retried on the next maintenance, delivery or [`Vgic::sync`].
    Inject(InjectError),
}

impl From<InjectError> for VgicError {
    fn from(e: InjectError) -> Self {
        VgicError::Inject(e)
    }
}

/// Where an interrupt is on its way to a vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqStatus {
    /// Neither in an LR nor queued.
    Idle,
    /// In the overflow queue of `vcpu`.
    Queued {
        /// vCPU.
        vcpu: u8,
    },
    /// In list register `lr` of `vcpu`.
    InLr {
        /// vCPU.
        vcpu: u8,
        /// LR index.
        lr: u8,
    },
}

#[derive(Debug, Clone, Copy)]
struct Irq {
    pending: bool,
    enabled: bool,
    active: bool,
    group1: bool,
    priority: u8,
    /// SPI target list (bit per vCPU).
    target: u8,
    /// SPI edge-triggered (GICD_ICFGR Int_config[1]).
    edge: bool,
    status: IrqStatus,
}

impl Irq {
    const RESET: Irq = Irq {
        pending: false,
        enabled: false,
        active: false,
        group1: false,
        priority: 0,
        target: 0,
        edge: false,
        status: IrqStatus::Idle,
    };
}

#[derive(Debug, Clone)]
struct CpuIf {
    /// The interrupt in each LR.
    lrs: [Option<u16>; MAX_LRS],
    /// Interrupts waiting for an LR, in arrival order.
    queue: heapless::Vec<u16, OVERFLOW_CAPACITY>,
    /// Some deliverable interrupt found neither an LR nor a queue slot (or an injection failed).
    rescan: bool,
    /// PPIs made pending by [`Vgic::ppi_event`] and not yet acknowledged (bit per PPI 0..31).
    vppi_unacked: u32,
}

impl CpuIf {
    const RESET: CpuIf = CpuIf {
        lrs: [None; MAX_LRS],
        queue: heapless::Vec::new(),
        rescan: false,
        vppi_unacked: 0,
    };
}

/// A decoded distributor register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    Ctlr,
    Typer,
    Iidr,
    /// Bit-per-IRQ registers: the kind and the first IRQ.
    Bits(BitReg, u32),
    /// Byte-per-IRQ: priority of IRQ.
    Priority(u32),
    /// Byte-per-IRQ: targets of IRQ.
    Target(u32),
    /// Two bits per IRQ: config, first IRQ.
    Config(u32),
    Sgir,
    /// Byte per SGI: sources, clear.
    CpendSgi(u32),
    /// Byte per SGI: sources, set.
    SpendSgi(u32),
    Id(usize),
    Reserved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

fn decode(offset: u64) -> Reg {
    let word_irq = |base: u64| ((offset - base) / 4 * 32) as u32;
    match offset {
        0x000..=0x003 => Reg::Ctlr,
        0x004..=0x007 => Reg::Typer,
        0x008..=0x00B => Reg::Iidr,
        0x080..=0x0FF => Reg::Bits(BitReg::Group, word_irq(0x080)),
        0x100..=0x17F => Reg::Bits(BitReg::SetEnable, word_irq(0x100)),
        0x180..=0x1FF => Reg::Bits(BitReg::ClearEnable, word_irq(0x180)),
        0x200..=0x27F => Reg::Bits(BitReg::SetPending, word_irq(0x200)),
        0x280..=0x2FF => Reg::Bits(BitReg::ClearPending, word_irq(0x280)),
        0x300..=0x37F => Reg::Bits(BitReg::SetActive, word_irq(0x300)),
        0x380..=0x3FF => Reg::Bits(BitReg::ClearActive, word_irq(0x380)),
        0x400..=0x7FF => Reg::Priority((offset - 0x400) as u32),
        0x800..=0xBFF => Reg::Target((offset - 0x800) as u32),
        0xC00..=0xCFF => Reg::Config(((offset - 0xC00) / 4 * 16) as u32),
        0xF00..=0xF03 => Reg::Sgir,
        0xF10..=0xF1F => Reg::CpendSgi((offset - 0xF10) as u32),
        0xF20..=0xF2F => Reg::SpendSgi((offset - 0xF20) as u32),
        0xFD0..=0xFFF => Reg::Id(((offset - 0xFD0) / 4) as usize),
        _ => Reg::Reserved,
    }
}

/// The GICv2 distributor of one VM and the LR/queue state of its vCPUs.
#[derive(Debug, Clone)]
pub struct Vgic {
    num_vcpus: usize,
    ctlr: u32,
    private: [[Irq; 32]; MAX_VCPUS],
    spis: [Irq; NUM_SPIS],
    /// Pending SGIs per target vCPU: for each SGI, a bit per source vCPU.
    sgi_sources: [[u8; 16]; MAX_VCPUS],
    cpus: [CpuIf; MAX_VCPUS],
}

impl Vgic {
    /// A distributor in its reset state (disabled, everything disabled, not pending) for
    /// `num_vcpus` vCPUs (1..=[`MAX_VCPUS`]).
    pub const fn new(num_vcpus: usize) -> Result<Self, VgicError> {
        if num_vcpus == 0 || num_vcpus > MAX_VCPUS {
            return Err(VgicError::NoSuchVcpu(num_vcpus));
        }
        Ok(Self::at_reset(num_vcpus))
    }

    /// [`Self::new`] for a constant (a `Result` that holds a `Vgic` cannot be matched in a
    /// constant expression): `num_vcpus` must be 1..=[`MAX_VCPUS`], and is, where it comes from
    /// a build-time checked count; otherwise this panics, which in a constant fails the build.
    pub const fn at_reset(num_vcpus: usize) -> Self {
        assert!(
            num_vcpus != 0 && num_vcpus <= MAX_VCPUS,
            "1..=MAX_VCPUS vCPUs"
        );
        let mut private = [[Irq::RESET; 32]; MAX_VCPUS];
        let mut c = 0;
        while c < MAX_VCPUS {
            let mut id = 0;
            while id < 32 {
                private[c][id].enabled = id < 16; // SGIs are permanently enabled.
                private[c][id].edge = id < 16;
                id += 1;
            }
            c += 1;
        }
        Self {
            num_vcpus,
            ctlr: 0,
            private,
            spis: [Irq::RESET; NUM_SPIS],
            sgi_sources: [[0; 16]; MAX_VCPUS],
            cpus: [const { CpuIf::RESET }; MAX_VCPUS],
        }
    }

    /// Number of vCPUs.
    #[inline]
    pub fn num_vcpus(&self) -> usize {
        self.num_vcpus
    }

    fn check_vcpu(&self, vcpu: usize) -> Result<(), VgicError> {
        if vcpu < self.num_vcpus {
            Ok(())
        } else {
            Err(VgicError::NoSuchVcpu(vcpu))
        }
    }

    fn vcpu_mask(&self) -> u8 {
        // num_vcpus is in 1..=8.
        (((1u16 << self.num_vcpus) - 1) & 0xFF) as u8
    }

    fn irq(&self, vcpu: usize, id: u32) -> Option<&Irq> {
        if id < 32 {
            self.private.get(vcpu)?.get(id as usize)
        } else {
            self.spis.get(id.checked_sub(32)? as usize)
        }
    }

    fn irq_mut(&mut self, vcpu: usize, id: u32) -> Option<&mut Irq> {
        if id < 32 {
            self.private.get_mut(vcpu)?.get_mut(id as usize)
        } else {
            self.spis.get_mut(id.checked_sub(32)? as usize)
        }
    }

    fn sgi_sources(&self, vcpu: usize, id: u32) -> u8 {
        self.sgi_sources
            .get(vcpu)
            .and_then(|s| s.get(id as usize))
            .copied()
            .unwrap_or(0)
    }

    fn sgi_sources_mut(&mut self, vcpu: usize, id: u32) -> Option<&mut u8> {
        self.sgi_sources.get_mut(vcpu)?.get_mut(id as usize)
    }

    /// Whether `id` is pending for `vcpu` (the latch; for an SGI, any source).
    pub fn is_pending(&self, vcpu: usize, id: u32) -> bool {
        if id < 16 {
            self.sgi_sources(vcpu, id) != 0
        } else {
            self.irq(vcpu, id).is_some_and(|i| i.pending)
        }
    }

    /// Whether `id` is active for `vcpu`.
    pub fn is_active(&self, vcpu: usize, id: u32) -> bool {
        self.irq(vcpu, id).is_some_and(|i| i.active)
    }

    /// Where `id` (banked for `vcpu` if private) is on its way to a vCPU.
    pub fn irq_status(&self, vcpu: usize, id: u32) -> Option<IrqStatus> {
        self.irq(vcpu, id).map(|i| i.status)
    }

    /// The interrupt in LR `lr` of `vcpu`, as the vGIC filled it.
    pub fn lr_occupant(&self, vcpu: usize, lr: u8) -> Option<u32> {
        self.cpus
            .get(vcpu)?
            .lrs
            .get(usize::from(lr))
            .copied()
            .flatten()
            .map(u32::from)
    }

    /// The overflow queue of `vcpu`, in arrival order.
    pub fn queued(&self, vcpu: usize) -> &[u16] {
        self.cpus.get(vcpu).map_or(&[], |c| c.queue.as_slice())
    }

    /// Whether `vcpu` has deliverable interrupts that found neither an LR nor a queue slot (they
    /// stay pending and are placed as soon as room frees).
    pub fn needs_rescan(&self, vcpu: usize) -> bool {
        self.cpus.get(vcpu).is_some_and(|c| c.rescan)
    }

    /// The vCPU an SPI would be delivered to: the lowest-numbered one in its target list.
    fn spi_target(&self, irq: &Irq) -> Option<usize> {
        let t = irq.target & self.vcpu_mask();
        (t != 0).then(|| t.trailing_zeros() as usize)
    }

    /// Whether `id` (banked for `vcpu` if private) may enter an LR of `vcpu` now, or may stay
    /// in `vcpu`'s queue (when `queued_ok`).
    fn deliverable_to(&self, vcpu: usize, id: u32, queued_ok: bool) -> bool {
        let Some(irq) = self.irq(vcpu, id) else {
            return false;
        };
        let group_on = self.ctlr & (1 << u32::from(irq.group1)) != 0;
        let status_ok = match irq.status {
            IrqStatus::Idle => true,
            IrqStatus::Queued { vcpu: q } => queued_ok && usize::from(q) == vcpu,
            IrqStatus::InLr { .. } => false,
        };
        let targeted = id < 32 || self.spi_target(irq) == Some(vcpu);
        self.is_pending(vcpu, id) && irq.enabled && !irq.active && group_on && status_ok && targeted
    }

    /// Whether `id` is deliverable to `vcpu` and waiting (idle or queued there): what a reference
    /// model calls "waiting for an LR".
    pub fn is_waiting(&self, vcpu: usize, id: u32) -> bool {
        vcpu < self.num_vcpus && self.deliverable_to(vcpu, id, true)
    }

    fn lr_count(inj: &dyn IrqInjector) -> usize {
        usize::from(inj.list_register_count()).min(MAX_LRS)
    }

    fn free_lr(&self, vcpu: usize, count: usize) -> Option<u8> {
        let cpu = self.cpus.get(vcpu)?;
        let i = cpu.lrs.iter().take(count).position(|l| l.is_none())?;
        u8::try_from(i).ok()
    }

    fn set_rescan(&mut self, vcpu: usize) {
        if let Some(c) = self.cpus.get_mut(vcpu) {
            c.rescan = true;
        }
    }

    /// Writes `id` into LR `lr` of `vcpu` and updates the state.
    fn inject_into(
        &mut self,
        inj: &mut dyn IrqInjector,
        vcpu: usize,
        id: u32,
        lr: u8,
    ) -> Result<(), VgicError> {
        let Some(irq) = self.irq(vcpu, id) else {
            return Ok(());
        };
        let (priority, group) = (irq.priority, u8::from(irq.group1));
        if let Err(e) = inj.inject(vcpu, id, priority, group, lr) {
            self.set_rescan(vcpu);
            return Err(e.into());
        }
        let (v8, id16) = (vcpu as u8, id as u16);
        if let Some(slot) = self
            .cpus
            .get_mut(vcpu)
            .and_then(|c| c.lrs.get_mut(usize::from(lr)))
        {
            *slot = Some(id16);
        }
        if id < 16
            && let Some(s) = self.sgi_sources_mut(vcpu, id)
        {
            *s &= s.wrapping_sub(1); // consume the lowest source
        }
        if let Some(irq) = self.irq_mut(vcpu, id) {
            irq.pending = false;
            irq.active = true;
            irq.status = IrqStatus::InLr { vcpu: v8, lr };
        }
        Ok(())
    }

    /// Delivers `id` (banked for `vcpu` if private; for an SPI `vcpu` is ignored and its target
    /// is used) if it is deliverable: into a free LR, else the queue, else marks a rescan.
    fn kick(&mut self, inj: &mut dyn IrqInjector, vcpu: usize, id: u32) -> Result<(), VgicError> {
        let vcpu = if id < 32 {
            vcpu
        } else {
            match self.irq(vcpu, id).and_then(|i| self.spi_target(i)) {
                Some(t) => t,
                None => return Ok(()),
            }
        };
        if !self.deliverable_to(vcpu, id, false) {
            return Ok(());
        }
        if let Some(lr) = self.free_lr(vcpu, Self::lr_count(inj)) {
            return self.inject_into(inj, vcpu, id, lr);
        }
        let Some(cpu) = self.cpus.get_mut(vcpu) else {
            return Ok(());
        };
        if cpu.queue.push(id as u16).is_ok() {
            if let Some(irq) = self.irq_mut(vcpu, id) {
                irq.status = IrqStatus::Queued { vcpu: vcpu as u8 };
            }
        } else {
            cpu.rescan = true;
        }
        Ok(())
    }

    /// Removes from `vcpu`'s queue every interrupt no longer deliverable there.
    fn purge(&mut self, vcpu: usize) {
        let mut i = 0;
        while let Some(&id) = self.cpus.get(vcpu).and_then(|c| c.queue.get(i)) {
            let id = u32::from(id);
            if self.deliverable_to(vcpu, id, true) {
                i += 1;
                continue;
            }
            if let Some(c) = self.cpus.get_mut(vcpu) {
                c.queue.remove(i);
            }
            if let Some(irq) = self.irq_mut(vcpu, id) {
                irq.status = IrqStatus::Idle;
            }
        }
    }

    /// Fills free LRs of `vcpu` from its queue (highest priority first, FIFO among equals), then
    /// runs a pending rescan if there is room.
    fn drain(&mut self, inj: &mut dyn IrqInjector, vcpu: usize) -> Result<(), VgicError> {
        let count = Self::lr_count(inj);
        while let Some(lr) = self.free_lr(vcpu, count) {
            let Some(cpu) = self.cpus.get(vcpu) else {
                break;
            };
            let best = cpu
                .queue
                .iter()
                .enumerate()
                .min_by_key(|&(i, &id)| {
                    (
                        self.irq(vcpu, u32::from(id))
                            .map_or(u8::MAX, |q| q.priority),
                        i,
                    )
                })
                .map(|(i, _)| i);
            let Some(i) = best else { break };
            let id = match self.cpus.get_mut(vcpu) {
                Some(c) if i < c.queue.len() => u32::from(c.queue.remove(i)),
                _ => break,
            };
            if let Some(irq) = self.irq_mut(vcpu, id) {
                irq.status = IrqStatus::Idle;
            }
            if self.deliverable_to(vcpu, id, false) {
                self.inject_into(inj, vcpu, id, lr)?;
            }
        }
        let room = self.free_lr(vcpu, count).is_some()
            || self.cpus.get(vcpu).is_some_and(|c| !c.queue.is_full());
        if self.needs_rescan(vcpu) && room {
            if let Some(c) = self.cpus.get_mut(vcpu) {
                c.rescan = false;
            }
            for id in 0..NUM_IRQS {
                self.kick(inj, vcpu, id)?;
            }
        }
        Ok(())
    }

    /// After a state change touching `ids` (banked for `vcpu` when private): purges and drains
    /// every vCPU, then tries to deliver each of `ids`. Every step runs even if an injection
    /// fails; the first error is returned.
    fn update(
        &mut self,
        inj: &mut dyn IrqInjector,
        vcpu: usize,
        ids: core::ops::Range<u32>,
    ) -> Result<(), VgicError> {
        // Fast path (a guest programming priorities, targets or enables of idle interrupts):
        // with every queue empty and no rescan owed, purging and draining do nothing, and a kick
        // does something only for a pending interrupt.
        let settled = self
            .cpus
            .iter()
            .take(self.num_vcpus)
            .all(|c| c.queue.is_empty() && !c.rescan);
        if settled && !ids.clone().any(|id| self.is_pending(vcpu, id)) {
            return Ok(());
        }
        let mut result = self.purge_and_drain_all(inj);
        for id in ids {
            result = result.and(self.kick(inj, vcpu, id));
        }
        result
    }

    /// Purges and drains every vCPU's queue (every step runs even if an injection fails; the
    /// first error is returned). A vCPU with nothing queued and no rescan owed is skipped: both
    /// would do nothing (an SMP VM's other vCPUs, most of the time).
    fn purge_and_drain_all(&mut self, inj: &mut dyn IrqInjector) -> Result<(), VgicError> {
        let mut result = Ok(());
        for v in 0..self.num_vcpus {
            if self
                .cpus
                .get(v)
                .is_some_and(|c| c.queue.is_empty() && !c.rescan)
            {
                continue;
            }
            self.purge(v);
            result = result.and(self.drain(inj, v));
        }
        result
    }

    /// Re-evaluates every interrupt for every vCPU: purges queues, fills free LRs and delivers
    /// whatever is deliverable (use after an injector failure, or after restoring state).
    pub fn sync(&mut self, inj: &mut dyn IrqInjector) -> Result<(), VgicError> {
        let mut result = Ok(());
        for v in 0..self.num_vcpus {
            self.set_rescan(v);
            self.purge(v);
            result = result.and(self.drain(inj, v));
        }
        result
    }

    /// Whether `vcpu` has an interrupt in a list register (pending or active) or waiting for one:
    /// a WFI it executes then completes at once, so it must not be parked.
    pub fn has_interrupts(&self, vcpu: usize) -> bool {
        self.cpus
            .get(vcpu)
            .is_some_and(|c| c.lrs.iter().any(Option::is_some) || !c.queue.is_empty() || c.rescan)
    }

    /// A device asserts SPI `virq` (32..[`NUM_IRQS`]): it becomes pending and is delivered if
    /// deliverable.
    pub fn set_irq_pending(
        &mut self,
        inj: &mut dyn IrqInjector,
        virq: u32,
    ) -> Result<(), VgicError> {
        if !(32..NUM_IRQS).contains(&virq) {
            return Err(VgicError::NotSpi(virq));
        }
        if let Some(irq) = self.irq_mut(0, virq) {
            irq.pending = true;
        }
        self.update(inj, 0, virq..virq + 1)
    }

    /// The kernel reported a virtual PPI (seL4 `VPPIEvent`, e.g. the virtual timer, PPI 27) for
    /// `vcpu`: the PPI becomes pending for that vCPU and is delivered if deliverable. The vGIC
    /// acknowledges it through [`IrqInjector::ack_vppi`] once the guest has EOI'd it (or cleared it
    /// while pending).
    pub fn ppi_event(
        &mut self,
        inj: &mut dyn IrqInjector,
        vcpu: usize,
        irq: u32,
    ) -> Result<(), VgicError> {
        self.check_vcpu(vcpu)?;
        if !(16..32).contains(&irq) {
            return Err(VgicError::NotPpi(irq));
        }
        if let Some(i) = self.irq_mut(vcpu, irq) {
            i.pending = true;
        }
        if let Some(c) = self.cpus.get_mut(vcpu) {
            c.vppi_unacked |= 1 << irq;
        }
        self.update(inj, vcpu, irq..irq + 1)
    }

    /// The kernel reported a maintenance interrupt for `vcpu` (seL4 `VGICMaintenance`): LR `lr`
    /// (if any) was EOI'd and is free again. Frees it, clears the interrupt's active state,
    /// acknowledges a virtual PPI, refills LRs and re-delivers. Returns the interrupt that was
    /// in the LR, so the VMM can tell its device model (e.g. to re-assert a level interrupt).
    pub fn maintenance(
        &mut self,
        inj: &mut dyn IrqInjector,
        vcpu: usize,
        lr: Option<u8>,
    ) -> Result<Option<u32>, VgicError> {
        self.check_vcpu(vcpu)?;
        let mut freed = None;
        let mut result = Ok(());
        if let Some(lr) = lr {
            if usize::from(lr) >= Self::lr_count(inj) {
                return Err(VgicError::BadListRegister { vcpu, lr });
            }
            let slot = self
                .cpus
                .get_mut(vcpu)
                .and_then(|c| c.lrs.get_mut(usize::from(lr)));
            let Some(id) = slot.and_then(|s| s.take()) else {
                return Err(VgicError::ListRegisterFree { vcpu, lr });
            };
            let id = u32::from(id);
            if let Some(irq) = self.irq_mut(vcpu, id) {
                irq.status = IrqStatus::Idle;
                irq.active = false;
            }
            if (16..32).contains(&id) {
                let bit = 1u32 << id;
                if let Some(c) = self
                    .cpus
                    .get_mut(vcpu)
                    .filter(|c| c.vppi_unacked & bit != 0)
                {
                    c.vppi_unacked &= !bit;
                    result = inj.ack_vppi(vcpu, id).map_err(VgicError::from);
                }
            }
            freed = Some(id);
        }
        let range = freed.map_or(0..0, |id| id..id + 1);
        result.and(self.update(inj, vcpu, range)).map(|()| freed)
    }

    /// Checks an access and decodes its register.
    fn check_access(&self, vcpu: usize, offset: u64, size: u8) -> Result<Reg, VgicError> {
        self.check_vcpu(vcpu)?;
        if offset >= GICD_SIZE {
            return Err(VgicError::OutOfRange { offset });
        }
        let reg = decode(offset);
        match size {
            4 if offset.is_multiple_of(4) => Ok(reg),
            4 => Err(VgicError::Unaligned { offset, size }),
            1 if matches!(
                reg,
                Reg::Priority(_) | Reg::Target(_) | Reg::CpendSgi(_) | Reg::SpendSgi(_)
            ) =>
            {
                Ok(reg)
            }
            _ => Err(VgicError::BadAccessSize { offset, size }),
        }
    }

    /// Reads the `size`-byte distributor register at `offset` (from [`GICD_BASE`]) as `vcpu`.
    pub fn mmio_read(&self, vcpu: usize, offset: u64, size: u8) -> Result<u32, VgicError> {
        let reg = self.check_access(vcpu, offset, size)?;
        let bytes = |f: &dyn Fn(u32) -> u8, first: u32| -> u32 {
            (0..u32::from(size)).fold(0, |acc, i| acc | (u32::from(f(first + i)) << (8 * i)))
        };
        Ok(match reg {
            Reg::Ctlr => self.ctlr,
            Reg::Typer => IT_LINES_NUMBER | (((self.num_vcpus as u32) - 1) << 5),
            Reg::Iidr => GICD_IIDR,
            Reg::Bits(kind, first) => (0..32u32).fold(0, |acc, i| {
                let id = first + i;
                let Some(irq) = self.irq(vcpu, id) else {
                    return acc;
                };
                let bit = match kind {
                    BitReg::Group => irq.group1,
                    BitReg::SetEnable | BitReg::ClearEnable => irq.enabled,
                    BitReg::SetPending | BitReg::ClearPending => self.is_pending(vcpu, id),
                    BitReg::SetActive | BitReg::ClearActive => irq.active,
                };
                acc | (u32::from(bit) << i)
            }),
            Reg::Priority(first) => {
                bytes(&|id| self.irq(vcpu, id).map_or(0, |i| i.priority), first)
            }
            Reg::Target(first) => bytes(
                &|id| match self.irq(vcpu, id) {
                    Some(_) if id < 32 => 1 << vcpu,
                    Some(i) => i.target,
                    None => 0,
                },
                first,
            ),
            Reg::Config(first) => (0..16u32).fold(0, |acc, i| {
                let id = first + i;
                let edge = match self.irq(vcpu, id) {
                    Some(_) if id < 16 => true,
                    Some(_) if id < 32 => false,
                    Some(irq) => irq.edge,
                    None => false,
                };
                acc | (u32::from(edge) << (2 * i + 1))
            }),
            Reg::Sgir | Reg::Reserved => 0,
            Reg::CpendSgi(first) | Reg::SpendSgi(first) => {
                bytes(&|id| self.sgi_sources(vcpu, id), first)
            }
            Reg::Id(i) => GICD_ID_REGS.get(i).copied().unwrap_or(0),
        })
    }

    /// Writes `value` to the `size`-byte distributor register at `offset` (from [`GICD_BASE`]) as
    /// `vcpu`, and delivers whatever became deliverable. On [`VgicError::Inject`] the write itself
    /// took effect.
    pub fn mmio_write(
        &mut self,
        inj: &mut dyn IrqInjector,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u32,
    ) -> Result<(), VgicError> {
        let reg = self.check_access(vcpu, offset, size)?;
        let mask = self.vcpu_mask();
        let nbytes = u32::from(size);
        let byte = |i: u32| ((value >> (8 * i)) & 0xFF) as u8;
        let mut acks = 0u32; // vPPIs to acknowledge (cleared before delivery)
        let touched = match reg {
            Reg::Ctlr => {
                self.ctlr = value & 3;
                // Enabling a group may make anything of any vCPU deliverable.
                return self.sync(inj);
            }
            Reg::Typer | Reg::Iidr | Reg::Id(_) | Reg::Reserved => 0..0,
            Reg::Bits(kind, first) => {
                for i in 0..32u32 {
                    let id = first + i;
                    if value & (1 << i) == 0
                        || (id < 16
                            && kind != BitReg::Group
                            && kind != BitReg::SetActive
                            && kind != BitReg::ClearActive)
                    {
                        continue;
                    }
                    let unacked = self.cpus.get(vcpu).map_or(0, |c| c.vppi_unacked);
                    let Some(irq) = self.irq_mut(vcpu, id) else {
                        continue;
                    };
                    match kind {
                        BitReg::Group => {}
                        BitReg::SetEnable => irq.enabled = true,
                        BitReg::ClearEnable => irq.enabled = false,
                        BitReg::SetPending => irq.pending = true,
                        BitReg::ClearPending => {
                            irq.pending = false;
                            let in_lr = matches!(irq.status, IrqStatus::InLr { .. });
                            if (16..32).contains(&id) && unacked & (1 << id) != 0 && !in_lr {
                                acks |= 1 << id;
                            }
                        }
                        BitReg::SetActive => irq.active = true,
                        BitReg::ClearActive => irq.active = false,
                    }
                }
                if kind == BitReg::Group {
                    for i in 0..32u32 {
                        if let Some(irq) = self.irq_mut(vcpu, first + i) {
                            irq.group1 = value & (1 << i) != 0;
                        }
                    }
                }
                first..first.saturating_add(32).min(NUM_IRQS)
            }
            Reg::Priority(first) => {
                for i in 0..nbytes {
                    if let Some(irq) = self.irq_mut(vcpu, first + i) {
                        irq.priority = byte(i) & PRIORITY_MASK;
                    }
                }
                first..first.saturating_add(nbytes).min(NUM_IRQS)
            }
            Reg::Target(first) => {
                for i in 0..nbytes {
                    let id = first + i;
                    if id >= 32
                        && let Some(irq) = self.irq_mut(vcpu, id)
                    {
                        irq.target = byte(i) & mask;
                    }
                }
                first..first.saturating_add(nbytes).min(NUM_IRQS)
            }
            Reg::Config(first) => {
                for i in 0..16u32 {
                    let id = first + i;
                    if id >= 32
                        && let Some(irq) = self.irq_mut(vcpu, id)
                    {
                        irq.edge = value & (1 << (2 * i + 1)) != 0;
                    }
                }
                0..0
            }
            Reg::Sgir => {
                let id = value & 0xF;
                let targets = match (value >> 24) & 3 {
                    0 => ((value >> 16) & 0xFF) as u8 & mask,
                    1 => mask & !(1 << vcpu),
                    2 => 1 << vcpu,
                    _ => 0,
                };
                for t in 0..self.num_vcpus {
                    if targets & (1 << t) != 0
                        && let Some(s) = self.sgi_sources_mut(t, id)
                    {
                        *s |= 1 << vcpu;
                    }
                }
                let mut result = self.purge_and_drain_all(inj);
                for t in 0..self.num_vcpus {
                    if targets & (1 << t) != 0 {
                        result = result.and(self.kick(inj, t, id));
                    }
                }
                return result;
            }
            Reg::CpendSgi(first) | Reg::SpendSgi(first) => {
                let set = matches!(reg, Reg::SpendSgi(_));
                for i in 0..nbytes {
                    if let Some(s) = self.sgi_sources_mut(vcpu, first + i) {
                        *s = if set {
                            *s | (byte(i) & mask)
                        } else {
                            *s & !byte(i)
                        };
                    }
                }
                first..first.saturating_add(nbytes).min(16)
            }
        };
        let mut result = Ok(());
        for id in 16..32u32 {
            if acks & (1 << id) != 0 {
                if let Some(c) = self.cpus.get_mut(vcpu) {
                    c.vppi_unacked &= !(1 << id);
                }
                result = result.and(inj.ack_vppi(vcpu, id).map_err(VgicError::from));
            }
        }
        result.and(self.update(inj, vcpu, touched))
    }
}
