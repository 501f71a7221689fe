//! [`Patched`]: a static the Microkit tool rewrites in the ELF before the PD starts
//! (`microkit_*` symbols, `setvar_vaddr` / `setvar_id` variables), read with volatile loads so
//! the compiler never folds the placeholder in.

use core::cell::UnsafeCell;

/// A value the Microkit tool rewrites before the PD starts; read-only at run time.
#[repr(transparent)]
pub struct Patched<T: Copy>(UnsafeCell<T>);

// SAFETY: a PD is single-threaded and nothing writes a patched value at run time, so shared
// references from several places never race.
unsafe impl<T: Copy> Sync for Patched<T> {}

impl<T: Copy> Patched<T> {
    /// A placeholder the tool overwrites.
    pub const fn new(v: T) -> Self {
        Self(UnsafeCell::new(v))
    }
    /// The value the tool wrote (the placeholder on the host).
    pub fn get(&self) -> T {
        // SAFETY: the pointer comes from a live `self`; no one writes it at run time.
        unsafe { self.0.get().read_volatile() }
    }
}
