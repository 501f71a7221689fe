//! A serial queue's shared memory (header page and data region) as the atomic views `sddf-queue`
//! takes, for the lifetime of the PD (the runtime turns the regions into atomics).

use core::sync::atomic::{AtomicU8, AtomicU32};
use microkit_rt::SharedRegion;

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
    /// Views a queue's header and data regions as atomics for the rest of the program (the
    /// runtime's `SharedRegion::into_atomic_*`). The regions are consumed: from here on this PD
    /// reaches that memory only through the views.
    pub fn from_regions(header: SharedRegion, data: SharedRegion) -> Result<Self, DriverError> {
        let header = header.into_atomic_words().map_err(DriverError::View)?;
        let data = data.into_atomic_bytes().map_err(DriverError::View)?;
        Ok(Self { header, data })
    }
}
