//! Guest RAM as the VMM reaches it: the regions system.xml maps into both the guest and the VMM
//! (main RAM and the write-protected page), behind the core's checked [`GuestMemory`] accessor.
//! Every write is cleaned to the point of coherency and every read invalidated first: the guest
//! may run with caches off, so its own accesses bypass the VMM's cached view.
//!
//! [`View`] is a second handle on the same memory for one exit: the exit path keeps the
//! instruction emulator's view while a virtio device writes guest RAM through another. Both copy
//! bytes through [`SharedRegion`], which never hands out references into the memory.

use microkit_rt::SharedRegion;
use vmm_core::addr::GuestPhysAddr;
use vmm_core::memory::{GuestMemory, MemError};

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
        // No line of ours is dirty (writes are cleaned at once), so this only drops stale lines.
        r.clean_invalidate(off, buf.len()).map_err(|_| err)?;
        r.read(off, buf).map_err(|_| err)
    }

    fn write_bytes(&self, gpa: GuestPhysAddr, buf: &[u8]) -> Result<(), MemError> {
        let (r, off) = self.find(gpa, buf.len())?;
        let err = MemError::OutOfRange {
            gpa,
            len: buf.len(),
        };
        r.write(off, buf).map_err(|_| err)?;
        r.clean_invalidate(off, buf.len()).map_err(|_| err)
    }
}

impl GuestMemory for RegionMemory {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.read_bytes(gpa, buf)
    }
    fn write(&mut self, gpa: GuestPhysAddr, buf: &[u8]) -> Result<(), MemError> {
        self.write_bytes(gpa, buf)
    }
}

/// A shared handle on [`RegionMemory`] that can write.
#[derive(Clone, Copy)]
pub struct View<'a>(&'a RegionMemory);

impl GuestMemory for View<'_> {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.0.read_bytes(gpa, buf)
    }
    fn write(&mut self, gpa: GuestPhysAddr, buf: &[u8]) -> Result<(), MemError> {
        self.0.write_bytes(gpa, buf)
    }
}
