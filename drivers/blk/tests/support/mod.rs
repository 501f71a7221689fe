//! The independent device for the driver's component tests: the VMM's own guest-facing
//! virtio-mmio v2 transport and virtio-blk model (`vmm-devices`) over an in-memory disk
//! (`MemDisk`), placed in one of the transport slots of the register window (the driver maps
//! one page: [`WINDOW`] bytes, 8 transports). An access beyond the window is recorded as refused
//! (on seL4 it would fault the PD).
//!
//! "Physical memory" is one leaked buffer holding the driver's DMA region followed by the data
//! region, at test-chosen physical addresses. The driver's and the client's `SharedRegion`s are
//! views of that buffer, and the device reaches it as `GuestRam` built over the same bytes for
//! the duration of each register access: the device reads and writes exactly the bytes the
//! driver's regions hold. (No Rust reference into the buffer outlives one register access; the
//! regions only ever use raw-pointer copies.)

#![allow(dead_code)]

use blk_driver::virtio::{Regs, SLOT_SIZE};
use microkit_rt::SharedRegion;
use std::cell::RefCell;
use std::rc::Rc;
use vmm_core::addr::GuestPhysAddr;
use vmm_core::memory::GuestRam;
use vmm_devices::blk::{BlkConfig, BlkDevice};
use vmm_devices::mmio::{IrqAction, MmioTransport};
use vmm_devices::testing::{CompletionMode, MemDisk};

/// Bytes of the register window the driver maps (system.xml: `blk_regs`, one page).
pub const WINDOW: usize = 0x1000;

/// Physical address of the DMA region: above 4 GiB, so the HIGH halves of the queue addresses
/// matter.
pub const DMA_PADDR: u64 = 0x1_2340_0000;

/// The simulated physical memory: DMA region, then data region.
#[derive(Clone, Copy)]
pub struct Phys {
    ptr: *mut u8,
    pub dma_size: usize,
    pub data_size: usize,
}

impl Phys {
    pub fn new(dma_size: usize, data_size: usize) -> Phys {
        let buf: &'static mut [u8] = Box::leak(vec![0u8; dma_size + data_size].into_boxed_slice());
        Phys {
            ptr: buf.as_mut_ptr(),
            dma_size,
            data_size,
        }
    }
    pub fn data_paddr(&self) -> u64 {
        DMA_PADDR + self.dma_size as u64
    }
    /// The driver's DMA region.
    pub fn dma_region(&self) -> SharedRegion {
        // SAFETY: leaked buffer, lives for the process; accessed only through raw-pointer copies.
        unsafe { SharedRegion::from_raw(self.ptr, self.dma_size) }
    }
    /// The data region (the client's view).
    pub fn data_region(&self) -> SharedRegion {
        // SAFETY: as above; the data region follows the DMA region in the same buffer.
        unsafe { SharedRegion::from_raw(self.ptr.add(self.dma_size), self.data_size) }
    }
    /// The whole buffer as the device's memory, for one access.
    fn with_ram<R>(&self, f: impl FnOnce(&mut GuestRam<'_>) -> R) -> R {
        // SAFETY: the buffer is live (leaked); this is the only reference to it while `f` runs
        // (the driver is not running: the test is single-threaded and calls in here from a
        // register access or between events), and it does not escape `f`.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(self.ptr, self.dma_size + self.data_size) };
        let mut ram = GuestRam::new(GuestPhysAddr(DMA_PADDR), bytes);
        f(&mut ram)
    }
}

pub type Dev = MmioTransport<BlkDevice<MemDisk<'static>>>;

/// The device in its slot.
pub struct Model {
    pub t: Dev,
    pub slot: usize,
    phys: Phys,
    /// The transport raised its interrupt and it was not delivered yet (edge).
    pub irq_pending: bool,
    /// Register accesses the transport refused (offset in the window).
    pub refused: Vec<usize>,
    /// Every register write, in order (offset in the slot, value).
    pub writes: Vec<(usize, u32)>,
    /// Every register read of the device's slot, in order (offset in the slot).
    pub reads: Vec<usize>,
    /// A misbehaving device or bus: changes what a read in the window returns (window offset,
    /// the value the window would give, the device's writes so far).
    pub read_hook: Option<ReadHook>,
    /// A misbehaving device: changes what a write to the device's slot stores (offset in the
    /// slot, value written; `writes` records the value as written).
    pub write_hook: Option<WriteHook>,
}

pub type ReadHook = Box<dyn FnMut(usize, u32, &[(usize, u32)]) -> u32>;
pub type WriteHook = Box<dyn FnMut(usize, u32) -> u32>;

/// The last value written to the slot's register `reg` (0 if never).
pub fn last_write(writes: &[(usize, u32)], reg: usize) -> u32 {
    writes
        .iter()
        .rev()
        .find(|(o, _)| *o == reg)
        .map_or(0, |(_, v)| *v)
}

/// The register window as the driver sees it (`None`: nothing answers, all-zero MMIO).
#[derive(Clone)]
pub struct Bus(pub Rc<RefCell<Option<Model>>>);

impl Bus {
    pub fn empty() -> Bus {
        Bus(Rc::new(RefCell::new(None)))
    }

    pub fn with_disk(
        phys: Phys,
        slot: usize,
        disk_bytes: usize,
        mode: CompletionMode,
        config: BlkConfig,
    ) -> Bus {
        Bus::with_disk_ro(phys, slot, disk_bytes, mode, config, false)
    }

    /// As [`Bus::with_disk`], the disk read-only if `read_only`.
    pub fn with_disk_ro(
        phys: Phys,
        slot: usize,
        disk_bytes: usize,
        mode: CompletionMode,
        config: BlkConfig,
        read_only: bool,
    ) -> Bus {
        let disk: &'static mut [u8] = Box::leak(vec![0u8; disk_bytes].into_boxed_slice());
        let staging: &'static mut [u8] = Box::leak(vec![0u8; 64 * 4096].into_boxed_slice());
        let mut disk = MemDisk::new(disk, staging, mode);
        disk.set_read_only(read_only);
        let dev = BlkDevice::new(disk, config).expect("device");
        Bus(Rc::new(RefCell::new(Some(Model {
            t: MmioTransport::new(dev),
            slot,
            phys,
            irq_pending: false,
            refused: vec![],
            writes: vec![],
            reads: vec![],
            read_hook: None,
            write_hook: None,
        }))))
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Model) -> R) -> R {
        f(self.0.borrow_mut().as_mut().expect("a device"))
    }

    /// Takes the pending interrupt.
    pub fn take_irq(&self) -> bool {
        self.0
            .borrow_mut()
            .as_mut()
            .is_some_and(|m| std::mem::take(&mut m.irq_pending))
    }

    /// Completes the oldest deferred disk operation (deferred mode); false if none.
    pub fn complete_one(&self) -> bool {
        self.with(|m| {
            let Some(c) = m.t.device_mut().backend_mut().complete(0) else {
                return false;
            };
            let phys = m.phys;
            let a = phys.with_ram(|ram| m.t.device_event(ram, c));
            if a == IrqAction::Raise {
                m.irq_pending = true;
            }
            true
        })
    }

    pub fn disk(&self) -> Vec<u8> {
        self.with(|m| m.t.device().backend().contents().to_vec())
    }
}

impl Regs for Bus {
    fn read32(&self, offset: usize) -> u32 {
        let mut g = self.0.borrow_mut();
        let Some(m) = g.as_mut() else { return 0 };
        if offset >= WINDOW {
            m.refused.push(offset);
            return 0;
        }
        let v = if offset / SLOT_SIZE != m.slot {
            0
        } else {
            m.reads.push(offset % SLOT_SIZE);
            match m.t.read((offset % SLOT_SIZE) as u64, 4) {
                Ok(v) => v as u32,
                Err(_) => {
                    m.refused.push(offset);
                    0
                }
            }
        };
        match &mut m.read_hook {
            Some(h) => h(offset, v, &m.writes),
            None => v,
        }
    }
    fn write32(&mut self, offset: usize, value: u32) {
        let mut g = self.0.borrow_mut();
        let Some(m) = g.as_mut() else { return };
        if offset >= WINDOW {
            m.refused.push(offset);
            return;
        }
        if offset / SLOT_SIZE != m.slot {
            return;
        }
        let off = offset % SLOT_SIZE;
        m.writes.push((off, value));
        let value = match &mut m.write_hook {
            Some(h) => h(off, value),
            None => value,
        };
        let phys = m.phys;
        match phys.with_ram(|ram| m.t.write(ram, off as u64, 4, u64::from(value))) {
            Ok(IrqAction::Raise) => m.irq_pending = true,
            Ok(IrqAction::None) => {}
            Err(_) => m.refused.push(offset),
        }
    }
}
