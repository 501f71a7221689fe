//! The atomics every shared index, flag and entry word is accessed through.
//!
//! Under `--cfg loom` these are loom's model-checked atomics; otherwise `core`'s, which have the
//! same size and alignment as `u32`/`u16`/`u8` and so can overlay sDDF's C structures.

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, Ordering, fence};
#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, Ordering, fence};
