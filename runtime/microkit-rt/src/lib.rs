//! The project's own seL4 and Microkit runtime for protection domains (PDs).
//!
//! rust-sel4's `sel4`/`sel4-microkit` crates are not on crates.io, so this crate is the small
//! layer between a PD and the kernel: the ABI as data ([`abi`]), the Handler API shaped after
//! `sel4-microkit` ([`handler`]), the [`kernel::Kernel`] trait for every side effect (real on the
//! target, simulated in host tests by the `microkit-sim` crate), the event loop ([`event_loop`]),
//! and, on the target only, system calls, the IPC buffer, start-up and the panic handler
//! (`sel4`). Every `unsafe` of the PDs lives here (and in MMIO accessors), each with a
//! `// SAFETY:` line.
//!
//! Built for the kernel configuration in `MICROKIT_CONFIG` (debug or release), whose invocation
//! labels differ: see [`abi::KernelConfig::CURRENT`].
#![cfg_attr(not(test), no_std)]

pub mod abi;
pub mod copy;
pub mod event_loop;
pub mod handler;
pub mod kernel;
pub mod patched;
pub mod pd_static;
pub mod region;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod sel4;

pub use abi::MessageInfo;
pub use handler::{Channel, ChannelSet, Child, DeferredAction, FaultReply, Handler};
pub use kernel::{Kernel, KernelError};
pub use patched::Patched;
pub use pd_static::PdStatic;
pub use region::{Page, RegionError, SharedRegion};
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use sel4::Sel4Kernel;
#[cfg(all(
    target_arch = "aarch64",
    target_os = "none",
    feature = "fault-injection"
))]
pub use sel4::fault_injection;
