//! [`PdStatic`]: a PD's handler kept in a static instead of on its stack. A large handler (the
//! VMM's is about 30 KiB) built by `init` on the stack costs its size, and the temporaries of
//! its construction, in every byte of `stack_size`; built as a constant in the image it costs its
//! size once, and the stack only holds the frames of one event.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A value in a static, handed out as `&'static mut` exactly once.
pub struct PdStatic<T> {
    value: UnsafeCell<T>,
    taken: AtomicBool,
}

// SAFETY: the only access to the value is through `take`, which hands out a single `&mut` for
// the whole program (the flag's swap decides which caller gets it), so no two threads ever
// reach the value. No `T: Send` bound: the value is a constant of the image that no thread made
// or owned before, so the one taker is its first and only owner (a PD has one thread; the VMM's
// handler holds raw pointers to its mapped regions, which are not `Send`).
unsafe impl<T> Sync for PdStatic<T> {}

impl<T> PdStatic<T> {
    /// A static holding `value` (a constant: it is in the image, not built at run time).
    pub const fn new(value: T) -> Self {
        Self {
            value: UnsafeCell::new(value),
            taken: AtomicBool::new(false),
        }
    }

    /// The value, the first time; `None` ever after.
    #[expect(
        clippy::mut_from_ref,
        reason = "the `taken` flag makes the one `&mut` unique, as a `static mut` cannot"
    )]
    pub fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: `taken` was false and is now true, so this is the only `&mut` to the value
        // ever made, and `self` lives for the whole program.
        Some(unsafe { &mut *self.value.get() })
    }
}

#[cfg(test)]
mod tests {
    use super::PdStatic;

    #[test]
    fn hands_out_the_value_once() {
        static S: PdStatic<[u32; 4]> = PdStatic::new([1, 2, 3, 4]);
        let v = S.take().expect("first take");
        assert_eq!(*v, [1, 2, 3, 4]);
        v[0] = 9;
        assert!(S.take().is_none());
        assert!(S.take().is_none());
        assert_eq!(v[0], 9);
    }
}
