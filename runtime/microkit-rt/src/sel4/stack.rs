//! The deepest this PD's stack has reached: the Microkit tool maps the stack zero-filled below
//! [`STACK_TOP`](crate::abi::STACK_TOP), so the lowest non-zero word bounds what was ever used
//! (a frame that wrote only zeros escapes it: a lower bound, good enough to size `stack_size`).

use crate::abi::STACK_TOP;

/// Bytes of the `stack_size`-byte stack below its top that have been written non-zero, from the
/// lowest such word up to the top.
pub fn high_water(stack_size: usize) -> usize {
    let words = stack_size / 8;
    let bottom = (STACK_TOP as usize).wrapping_sub(words * 8) as *const u64;
    for i in 0..words {
        // SAFETY: the Microkit tool maps this PD's `stack_size`-byte stack read-write just below
        // STACK_TOP (system.xml's stack_size, which the caller passes), so `bottom + i` for
        // i < stack_size / 8 is mapped, aligned memory; reading a word below the live frames
        // reads memory no Rust reference points to (volatile: the compiler may assume nothing).
        let w = unsafe { bottom.add(i).read_volatile() };
        if w != 0 {
            return (words - i) * 8;
        }
    }
    0
}
