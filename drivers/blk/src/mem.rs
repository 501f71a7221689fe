//! The block queues' shared memory (request queue, response queue, storage info) as the atomic
//! views `sddf-queue` takes, for the lifetime of the PD.

use core::sync::atomic::AtomicU32;
use microkit_rt::{RegionError, SharedRegion};

/// The client's queue regions, as `sddf_queue::blk` takes them.
#[derive(Debug, Clone, Copy)]
pub struct QueueMem<'q> {
    /// `blk_req_queue_t`.
    pub req: &'q [AtomicU32],
    /// `blk_resp_queue_t`.
    pub resp: &'q [AtomicU32],
    /// `blk_storage_info_t`.
    pub info: &'q [AtomicU32],
}

impl QueueMem<'static> {
    /// Views the three regions as atomics for the rest of the program (the runtime's
    /// `SharedRegion::into_atomic_words`); the regions are consumed.
    pub fn from_regions(
        req: Result<SharedRegion, RegionError>,
        resp: Result<SharedRegion, RegionError>,
        info: Result<SharedRegion, RegionError>,
    ) -> Result<Self, RegionError> {
        Ok(Self {
            req: req?.into_atomic_words()?,
            resp: resp?.into_atomic_words()?,
            info: info?.into_atomic_words()?,
        })
    }
}
