//! Guest RAM as the VMM reaches it: the regions system.xml maps into both the guest and the VMM
//! (main RAM and the write-protected page), behind the core's checked [`GuestMemory`] accessor.
//!
//! Cache maintenance: a guest running with its caches off (before it enables its MMU, or after
//! it turns them off again) reads and writes memory non-cacheably, past the cached view the VMM
//! has of the same bytes. While that may be the case, every write is cleaned to the point of
//! coherency and every read invalidated first. Once the guest runs with its MMU and data cache
//! on (`SCTLR_EL1.M` and `.C`, which the VMM reads before each device call that moves guest
//! data, [`RegionMemory::set_coherent`]), both sides access the memory as cacheable and the data
//! caches keep them coherent (physically tagged, in one coherence domain), so the maintenance
//! is skipped, for the rest of that exit or notification only: each starts with maintenance on,
//! so a path that reads no `SCTLR_EL1` (the WRITE page, an instruction fetch, console input)
//! never relies on an older reading. That also needs the guest to map the buffers it shares with the VMM's virtio
//! devices as cacheable memory, which its device tree asks for: the platform DTB marks both
//! virtio-mmio nodes `dma-coherent` (as QEMU's own virt DTB does, and as KVM relies on), and
//! `make image` refuses a guest DTB without it. The guest's own cache maintenance on
//! non-coherent paths stays safe: with stage 2 on, an EL1 `DC IVAC` is a clean and invalidate.
//!
//! [`View`] is a second handle on the same memory for one exit: the exit path keeps the
//! instruction emulator's view while a virtio device writes guest RAM through another. Both copy
//! bytes through [`SharedRegion`], which never hands out references into the memory.

use core::cell::Cell;

use microkit_rt::SharedRegion;
use vmm_core::addr::GuestPhysAddr;
use vmm_core::memory::{GuestMemory, MemError};

/// Whether a guest with this `SCTLR_EL1` runs with its MMU and data cache on (`M` and `C`):
/// then its RAM and the VMM's view of it are coherent (see the module's doc).
pub const fn caches_on(sctlr: u64) -> bool {
    const M_C: u64 = 1 | 1 << 2;
    sctlr & M_C == M_C
}

/// One guest-physical window onto a region mapped in the VMM.
pub struct Window {
    /// Guest-physical base.
    pub gpa: u64,
    /// The VMM's mapping.
    pub region: SharedRegion,
}

/// Guest memory made of windows.
pub struct RegionMemory {
    /// Main RAM.
    pub ram: Window,
    /// The write-protected page.
    pub wp: Window,
    /// The guest accesses its RAM as cacheable: no cache maintenance (see the module's doc).
    /// Off until the VMM has seen the guest's caches on.
    coherent: Cell<bool>,
}

impl RegionMemory {
    fn find(&self, gpa: GuestPhysAddr, len: usize) -> Result<(&SharedRegion, usize), MemError> {
        let err = MemError::OutOfRange { gpa, len };
        for w in [&self.ram, &self.wp] {
            if let Some(off) = gpa.raw().checked_sub(w.gpa) {
                let off = usize::try_from(off).map_err(|_| err)?;
                if off
                    .checked_add(len)
                    .is_some_and(|end| end <= w.region.size())
                {
                    return Ok((&w.region, off));
                }
            }
        }
        Err(err)
    }
}

impl RegionMemory {
    /// Guest memory of main RAM and the write-protected page, with cache maintenance on.
    pub fn new(ram: Window, wp: Window) -> Self {
        RegionMemory {
            ram,
            wp,
            coherent: Cell::new(false),
        }
    }

    /// Says whether the guest now runs with its MMU and data cache on (from `SCTLR_EL1`).
    pub fn set_coherent(&self, on: bool) {
        self.coherent.set(on);
    }

    /// Whether accesses skip cache maintenance now.
    pub fn coherent(&self) -> bool {
        self.coherent.get()
    }

    /// A handle for one exit (see [`View`]).
    pub fn view(&self) -> View<'_> {
        View(self)
    }

    fn read_bytes(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        let (r, off) = self.find(gpa, buf.len())?;
        let err = MemError::OutOfRange {
            gpa,
            len: buf.len(),
        };
        if !self.coherent.get() {
            // No line of ours is dirty (writes are cleaned at once), so this only drops stale
            // lines.
            r.clean_invalidate(off, buf.len()).map_err(|_| err)?;
        }
        r.read(off, buf).map_err(|_| err)
    }

    fn write_bytes(&self, gpa: GuestPhysAddr, buf: &[u8]) -> Result<(), MemError> {
        let (r, off) = self.find(gpa, buf.len())?;
        let err = MemError::OutOfRange {
            gpa,
            len: buf.len(),
        };
        r.write(off, buf).map_err(|_| err)?;
        if self.coherent.get() {
            return Ok(());
        }
        r.clean_invalidate(off, buf.len()).map_err(|_| err)
    }
}

impl RegionMemory {
    /// One small load (the console runs' and the stage-1 walker's): a single volatile load
    /// while the guest's caches are on, the maintained copy otherwise.
    fn load_small(&self, gpa: GuestPhysAddr, len: u8) -> Result<u64, MemError> {
        let n = usize::from(len);
        if n > 8 {
            return Err(MemError::OutOfRange { gpa, len: n });
        }
        if !self.coherent.get() {
            let mut b = [0u8; 8];
            self.read_bytes(gpa, &mut b[..n])?;
            return Ok(u64::from_le_bytes(b));
        }
        let (r, off) = self.find(gpa, usize::from(len))?;
        r.read_le(off, len).map_err(|_| MemError::OutOfRange {
            gpa,
            len: usize::from(len),
        })
    }

    /// One small store, as [`Self::load_small`].
    fn store_small(&self, gpa: GuestPhysAddr, len: u8, v: u64) -> Result<(), MemError> {
        let n = usize::from(len);
        if n > 8 {
            return Err(MemError::OutOfRange { gpa, len: n });
        }
        if !self.coherent.get() {
            return self.write_bytes(gpa, &v.to_le_bytes()[..n]);
        }
        let (r, off) = self.find(gpa, usize::from(len))?;
        r.write_le(off, len, v).map_err(|_| MemError::OutOfRange {
            gpa,
            len: usize::from(len),
        })
    }
}

impl GuestMemory for RegionMemory {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.read_bytes(gpa, buf)
    }
    fn write(&mut self, gpa: GuestPhysAddr, buf: &[u8]) -> Result<(), MemError> {
        self.write_bytes(gpa, buf)
    }
    fn read_u64(&self, gpa: GuestPhysAddr) -> Result<u64, MemError> {
        self.load_small(gpa, 8)
    }
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, MemError> {
        self.load_small(gpa, 4).map(|v| v as u32)
    }
    fn load_le(&self, gpa: GuestPhysAddr, len: u8) -> Result<u64, MemError> {
        self.load_small(gpa, len)
    }
    fn store_le(&mut self, gpa: GuestPhysAddr, len: u8, v: u64) -> Result<(), MemError> {
        self.store_small(gpa, len, v)
    }
}

/// A shared handle on [`RegionMemory`] that can write.
#[derive(Clone, Copy)]
pub struct View<'a>(&'a RegionMemory);

impl View<'_> {
    /// [`RegionMemory::set_coherent`].
    pub fn set_coherent(&self, on: bool) {
        self.0.set_coherent(on);
    }
}

impl GuestMemory for View<'_> {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.0.read_bytes(gpa, buf)
    }
    fn write(&mut self, gpa: GuestPhysAddr, buf: &[u8]) -> Result<(), MemError> {
        self.0.write_bytes(gpa, buf)
    }
    fn read_u64(&self, gpa: GuestPhysAddr) -> Result<u64, MemError> {
        self.0.load_small(gpa, 8)
    }
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, MemError> {
        self.0.load_small(gpa, 4).map(|v| v as u32)
    }
    fn load_le(&self, gpa: GuestPhysAddr, len: u8) -> Result<u64, MemError> {
        self.0.load_small(gpa, len)
    }
    fn store_le(&mut self, gpa: GuestPhysAddr, len: u8, v: u64) -> Result<(), MemError> {
        self.0.store_small(gpa, len, v)
    }
}
