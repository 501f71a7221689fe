//! The crate's only `unsafe`: turning the shared regions of a serial queue (header page and data
//! region) into the atomic views `sddf-queue` takes, for the lifetime of the PD.

#![allow(unsafe_code)]

use microkit_rt::SharedRegion;
use sddf_queue::sync::{AtomicU8, AtomicU32};

use crate::DriverError;

/// One serial queue's shared memory, as `sddf_queue::serial` takes it.
#[derive(Debug, Clone, Copy)]
pub struct QueueMem<'q> {
    /// The `serial_queue_t` header region, as 32-bit words.
    pub header: &'q [AtomicU32],
    /// The data region, as bytes.
    pub data: &'q [AtomicU8],
}

impl<'q> QueueMem<'q> {
    /// The queue's capacity: the data region's size (local and trusted).
    pub fn capacity(&self) -> Result<u32, DriverError> {
        u32::try_from(self.data.len()).map_err(|_| DriverError::DataRegionTooLarge)
    }
}

impl QueueMem<'static> {
    /// Views a queue's header and data regions as atomics for the rest of the program. The
    /// regions are consumed: from here on this PD reaches that memory only through the views.
    pub fn from_regions(header: SharedRegion, data: SharedRegion) -> Result<Self, DriverError> {
        // SAFETY: a `SharedRegion` is, by its constructor's contract, memory mapped read-write
        // for as long as the region is used and never reached through Rust references; taking
        // the regions by value makes the returned views their only use, for `'static`, so the
        // mapping must (and, for a Microkit `<map>` or a leaked test buffer, does) last for the
        // rest of the program. The views are atomic, as `raw::words`/`raw::bytes` require; the
        // peer's accesses are another PD's (or, in host tests, single-threaded).
        let header = unsafe { sddf_queue::raw::words(header.base(), header.size()) }
            .map_err(DriverError::View)?;
        // SAFETY: as above, for the data region.
        let data = unsafe { sddf_queue::raw::bytes(data.base(), data.size()) }
            .map_err(DriverError::View)?;
        Ok(Self { header, data })
    }
}
