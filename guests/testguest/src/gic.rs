//! GICv2: the distributor registers the VMM emulates and the CPU interface (the real virtual CPU
//! interface under seL4): enabling one interrupt at a priority, sending an SGI to this CPU, and
//! the acknowledge/end-of-interrupt pair the IRQ handler uses.

use crate::mmio::{GICC, GICD};

const GICD_CTLR: usize = 0x000;
const GICD_ISENABLER: usize = 0x100;
const GICD_ICENABLER: usize = 0x180;
const GICD_IPRIORITYR: usize = 0x400;
const GICD_ITARGETSR: usize = 0x800;
const GICD_ICFGR: usize = 0xc00;
const GICD_SGIR: usize = 0xf00;
/// GICD_SGIR target-list filter 0b10: this CPU only.
const SGIR_SELF: u64 = 0b10 << 24;

const GICC_CTLR: usize = 0x000;
const GICC_PMR: usize = 0x004;
const GICC_IAR: usize = 0x00c;
const GICC_EOIR: usize = 0x010;

/// The virtual timer's PPI.
pub const VTIMER_IRQ: u32 = 27;
/// The virtio-blk device's SPI (virtio-mmio slot 31 of QEMU virt: SPI 47).
pub const VIRTIO_BLK_IRQ: u32 = 79;
/// The SGI the cases and benchmarks send to themselves.
pub const TEST_SGI: u32 = 1;
/// The SGI CPU 0 sends CPU 1 in the IPI benchmark.
pub const IPI_PING: u32 = 2;
/// The SGI CPU 1's handler answers each ping with, to CPU 0.
pub const IPI_PONG: u32 = 3;
/// The first of the special ids (1020..1023, e.g. 1023 = spurious): nothing to end.
pub const FIRST_SPECIAL: u32 = 1020;
/// The priority every interrupt gets (below the mask 0xff).
const PRIORITY: u64 = 0x80;

/// Interrupt id of an IAR value (bits 9:0).
pub const fn iar_id(iar: u32) -> u32 {
    iar & 0x3ff
}

/// Source CPU of an SGI's IAR value (bits 12:10).
pub const fn iar_cpu(iar: u32) -> u32 {
    (iar >> 10) & 0x7
}

/// Enables the distributor and this CPU's interface, with every priority unmasked.
pub fn init() {
    GICD.str_w(GICD_CTLR, 1);
    GICC.str_w(GICC_PMR, 0xff);
    GICC.str_w(GICC_CTLR, 1);
}

/// Turns on this CPU's interface with every priority unmasked (a secondary CPU: the distributor
/// is on already).
pub fn cpu_init() {
    GICC.str_w(GICC_PMR, 0xff);
    GICC.str_w(GICC_CTLR, 1);
}

/// Sets `irq`'s priority (a byte access to GICD_IPRIORITYR) and enables it.
pub fn enable(irq: u32) {
    let irq = irq as usize;
    GICD.strb(GICD_IPRIORITYR + irq, PRIORITY);
    GICD.str_w(GICD_ISENABLER + irq / 32 * 4, 1 << (irq % 32));
}

/// Routes SPI `irq` to CPU 0 (a byte access to GICD_ITARGETSR; an SPI with no target is never
/// delivered).
pub fn target_cpu0(irq: u32) {
    GICD.strb(GICD_ITARGETSR + irq as usize, 1);
}

/// Configures SPI `irq` as edge-triggered (GICD_ICFGR Int_config[1], a read-modify-write of
/// its word), as QEMU virt's device tree declares the virtio-mmio interrupts.
pub fn set_edge(irq: u32) {
    let irq = irq as usize;
    let off = GICD_ICFGR + irq / 16 * 4;
    let v = GICD.ldr_w(off) | 2 << (2 * (irq % 16));
    GICD.str_w(off, v);
}

/// Disables `irq`.
pub fn disable(irq: u32) {
    let irq = irq as usize;
    GICD.str_w(GICD_ICENABLER + irq / 32 * 4, 1 << (irq % 32));
}

/// Sends SGI `id` to this CPU only.
pub fn sgi_self(id: u32) {
    GICD.str_w(GICD_SGIR, SGIR_SELF | u64::from(id & 0xf));
}

/// Sends SGI `id` to CPU `cpu` only (target-list filter 0, CPUTargetList bit `cpu`).
pub fn sgi_to(cpu: u32, id: u32) {
    GICD.str_w(GICD_SGIR, 1 << (16 + (cpu & 7)) | u64::from(id & 0xf));
}

/// Acknowledges the highest-priority pending interrupt (GICC_IAR).
pub fn ack() -> u32 {
    GICC.ldr_w(GICC_IAR) as u32
}

/// Ends the interrupt `iar` (the full value read from GICC_IAR).
pub fn eoi(iar: u32) {
    GICC.str_w(GICC_EOIR, u64::from(iar));
}
