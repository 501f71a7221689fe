//! Typed errors. A queue peer is untrusted: whatever it writes into shared memory ends up as one of
//! these, never as a panic or an out-of-bounds access.

use core::fmt;

/// The shared queue state is inconsistent: the peer is buggy or hostile.
///
/// The handle is left unchanged and stays usable; the same error is returned until the shared
/// state is consistent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueError {
    /// `tail − head` (wrapping) exceeds the capacity: the indices do not describe a valid queue.
    /// `head` and `tail` are the values this side used (one local, one read from the peer).
    OutOfRange {
        /// Head index used for the check.
        head: u32,
        /// Tail index used for the check.
        tail: u32,
        /// The local, trusted capacity.
        capacity: u32,
    },
    /// The peer moved its index backwards (the consumer's head or the producer's tail).
    PeerIndexRegressed {
        /// The peer's index as last validated.
        previous: u32,
        /// The value now read from shared memory.
        observed: u32,
    },
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfRange {
                head,
                tail,
                capacity,
            } => write!(
                f,
                "queue indices out of range: head {head}, tail {tail}, capacity {capacity}"
            ),
            Self::PeerIndexRegressed { previous, observed } => {
                write!(
                    f,
                    "peer index moved backwards from {previous} to {observed}"
                )
            }
        }
    }
}

impl core::error::Error for QueueError {}

/// Why an entry could not be enqueued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnqueueError {
    /// The queue holds `capacity` entries (a normal condition: retry after the consumer ran).
    Full,
    /// The shared state is inconsistent.
    Corrupt(QueueError),
}

impl From<QueueError> for EnqueueError {
    fn from(e: QueueError) -> Self {
        Self::Corrupt(e)
    }
}

impl fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("queue full"),
            Self::Corrupt(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for EnqueueError {}

/// Why a queue handle could not be attached to its shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetupError {
    /// The capacity is zero.
    ZeroCapacity,
    /// The capacity does not fit the address space (its region size overflows `usize`).
    CapacityTooLarge,
    /// A network queue's capacity is not a power of two of at most
    /// [`crate::net::MAX_CAPACITY`] (what its 16-bit indices need, see [`crate::net`]).
    UnsupportedNetCapacity {
        /// The capacity given.
        capacity: u32,
    },
    /// The queue region (header and entries) is smaller than the capacity needs.
    RegionTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        available: usize,
    },
    /// The serial data region is smaller than the capacity.
    DataRegionTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        available: usize,
    },
    /// The indices found in shared memory are already inconsistent.
    Corrupt(QueueError),
}

impl From<QueueError> for SetupError {
    fn from(e: QueueError) -> Self {
        Self::Corrupt(e)
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ZeroCapacity => f.write_str("queue capacity is zero"),
            Self::CapacityTooLarge => f.write_str("queue capacity overflows the address space"),
            Self::UnsupportedNetCapacity { capacity } => write!(
                f,
                "network queue capacity {capacity} is not a power of two of at most {}",
                crate::net::MAX_CAPACITY
            ),
            Self::RegionTooSmall { needed, available } => write!(
                f,
                "queue region too small: {available} bytes, {needed} needed"
            ),
            Self::DataRegionTooSmall { needed, available } => write!(
                f,
                "data region too small: {available} bytes, {needed} needed"
            ),
            Self::Corrupt(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for SetupError {}

/// Why a raw shared-memory region could not be viewed as atomics (see [`crate::raw`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionError {
    /// The base address is null.
    Null,
    /// The base address is not aligned to [`crate::raw::REGION_ALIGN`].
    Misaligned {
        /// The base address.
        addr: usize,
    },
    /// The region is larger than `isize::MAX` bytes or wraps the address space.
    TooLarge,
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Null => f.write_str("shared region at address 0"),
            Self::Misaligned { addr } => write!(f, "shared region at {addr:#x} is misaligned"),
            Self::TooLarge => f.write_str("shared region too large"),
        }
    }
}

impl core::error::Error for RegionError {}
