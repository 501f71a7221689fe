//! Guest RAM as the VMM reaches it: the regions system.xml maps into both the guest and the VMM
//! (main RAM and the write-protected page), behind the core's checked [`GuestMemory`] accessor.
//! Every write is cleaned to the point of coherency: the guest may run with caches off.

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

impl GuestMemory for RegionMemory {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        let (r, off) = self.find(gpa, buf.len())?;
        r.read(off, buf).map_err(|_| MemError::OutOfRange {
            gpa,
            len: buf.len(),
        })
    }
    fn write(&mut self, gpa: GuestPhysAddr, buf: &[u8]) -> Result<(), MemError> {
        let (r, off) = self.find(gpa, buf.len())?;
        let err = MemError::OutOfRange {
            gpa,
            len: buf.len(),
        };
        r.write(off, buf).map_err(|_| err)?;
        r.clean_invalidate(off, buf.len()).map_err(|_| err)
    }
}
