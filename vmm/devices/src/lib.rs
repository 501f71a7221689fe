//! The guest-facing virtio devices the VMM emulates (virtio 1.2, modern interface only).
//!
//! A device model never performs I/O itself: it parses the guest's requests out of guest RAM
//! (always through [`vmm_core::memory::GuestMemory`], the one checked accessor) and hands them
//! to a backend trait that the VMM implements over its shared-memory queues to a driver PD.
//!
//! Module map (one mechanism each):
//! - [`queue`]: split virtqueues; every descriptor chain is validated against the queue size and
//!   guest RAM before a device sees it; used-ring updates in the order the spec requires.
//! - [`mmio`]: the virtio-mmio (version 2) register file and the device-status state machine,
//!   generic over [`mmio::VirtioDevice`]; features the driver did not acknowledge are masked
//!   there, in one place.
//! - [`blk`]: the virtio-blk model: requests in 512-byte sectors become backend operations in
//!   4096-byte units, with read-modify-write for partial units.
//! - [`console`]: the virtio-console model (port 0: receiveq and transmitq).
//! - [`net`]: the virtio-net model (one receiveq/transmitq pair, MAC and link status, no
//!   offloads): whole Ethernet frames between the guest's buffers and a backend.
//! - [`testing`]: in-memory backends (a disk of 4096-byte blocks with synchronous or deferred
//!   completion, a byte-queue console, a frame-queue network port and a wire joining two) for
//!   host tests of this crate and of the VMM.
//!
//! Nothing here allocates, and no guest-controlled value can cause a panic: bad requests fail
//! with a device-specific status, and a queue in an unrecoverable state puts the device into
//! DEVICE_NEEDS_RESET.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blk;
pub mod console;
pub mod mmio;
pub mod net;
pub mod pair;
pub mod queue;
pub mod testing;

/// Device-independent feature bits (virtio 1.2 §6).
pub mod feature {
    /// VIRTIO_F_INDIRECT_DESC (28): indirect descriptor tables. Never offered.
    pub const INDIRECT_DESC: u64 = 1 << 28;
    /// VIRTIO_F_EVENT_IDX (29): used_event / avail_event. Offered by virtio-blk; the transport
    /// switches the queues' suppression to it when the driver takes it.
    pub const EVENT_IDX: u64 = 1 << 29;
    /// VIRTIO_F_VERSION_1 (32): the modern interface; every device offers it and the driver must
    /// acknowledge it.
    pub const VERSION_1: u64 = 1 << 32;
}
