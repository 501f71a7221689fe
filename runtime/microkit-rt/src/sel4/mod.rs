//! The seL4 side of the runtime, built only for the target (`aarch64-unknown-none`): system calls,
//! the IPC buffer, the real [`Sel4Kernel`] and transport, the symbols the Microkit tool patches,
//! the entry point and the panic handler. Every `unsafe` of the runtime lives under this module
//! or in [`crate::region`], each with a `// SAFETY:` line.

pub mod cache;
pub mod entry;
#[cfg(feature = "fault-injection")]
pub mod fault_injection;
pub mod ipc_buffer;
pub mod kernel;
pub mod stack;
pub mod syscall;
pub mod timer;

pub use kernel::{Sel4Kernel, Sel4Transport};
