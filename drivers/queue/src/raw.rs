//! The crate's only `unsafe`: viewing a mapped shared-memory region (a Microkit
//! `<memory_region>` at the address its `setvar_vaddr` gives) as slices of atomics, which the
//! rest of the crate — all safe code — takes as input.
//!
//! `AtomicU32`/`AtomicU8` have the size and bit validity of `u32`/`u8` and alignment equal to
//! their size, so the views overlay sDDF's C structures exactly. Atomics (unlike `&[u8]`/`&mut`)
//! are the sound way to share memory with a peer that may write it at any time, including
//! another protection domain.

#![allow(unsafe_code)]

use crate::error::RegionError;
use crate::sync::{AtomicU8, AtomicU16, AtomicU32};

/// Alignment a region's base must have: that of the 8-byte fields in sDDF's block structures.
/// Microkit maps regions at page granularity, so real regions always satisfy it.
pub const REGION_ALIGN: usize = 8;

fn check(base: *mut u8, len: usize) -> Result<(), RegionError> {
    if base.is_null() {
        return Err(RegionError::Null);
    }
    let addr = base.addr();
    if !addr.is_multiple_of(REGION_ALIGN) {
        return Err(RegionError::Misaligned { addr });
    }
    if len > isize::MAX as usize || addr.checked_add(len).is_none() {
        return Err(RegionError::TooLarge);
    }
    Ok(())
}

/// Views the `len` bytes at `base` as 32-bit atomic words (a trailing partial word is left out).
///
/// # Safety
///
/// For all of `'a`, the bytes `base..base + len` must stay mapped readable and writable and not
/// be freed, and within this program they must be accessed only through atomic views (this
/// function's or [`bytes`]'s), never through non-atomic references or pointers. Other protection
/// domains mapping the same memory may access it in any way at any time.
pub unsafe fn words<'a>(base: *mut u8, len: usize) -> Result<&'a [AtomicU32], RegionError> {
    check(base, len)?;
    // SAFETY: `base` is non-null and aligned for `AtomicU32` (checked); the caller guarantees
    // `len` mapped bytes live for `'a`, accessed only atomically here; `len / 4` words fit in
    // those bytes and `len <= isize::MAX` (checked); every bit pattern is a valid `AtomicU32`.
    Ok(unsafe { core::slice::from_raw_parts(base.cast::<AtomicU32>(), len / 4) })
}

/// Views the `len` bytes at `base` as 16-bit atomic half words (for a network queue region,
/// whose 16-bit indices share a word; a trailing odd byte is left out).
///
/// # Safety
///
/// As for [`words`].
pub unsafe fn halves<'a>(base: *mut u8, len: usize) -> Result<&'a [AtomicU16], RegionError> {
    check(base, len)?;
    // SAFETY: `base` is non-null and aligned for `AtomicU16` (checked: 8-byte aligned); the
    // caller guarantees `len` mapped bytes live for `'a`, accessed only atomically here;
    // `len / 2` half words fit in those bytes and `len <= isize::MAX` (checked); every bit
    // pattern is a valid `AtomicU16`.
    Ok(unsafe { core::slice::from_raw_parts(base.cast::<AtomicU16>(), len / 2) })
}

/// Views the `len` bytes at `base` as atomic bytes (for a serial data region).
///
/// # Safety
///
/// As for [`words`].
pub unsafe fn bytes<'a>(base: *mut u8, len: usize) -> Result<&'a [AtomicU8], RegionError> {
    check(base, len)?;
    // SAFETY: `base` is non-null and aligned (checked); the caller guarantees `len` mapped
    // bytes live for `'a`, accessed only atomically here; `len <= isize::MAX` (checked); every
    // bit pattern is a valid `AtomicU8`.
    Ok(unsafe { core::slice::from_raw_parts(base.cast::<AtomicU8>(), len) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Ordering;

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    #[test]
    fn views_overlay_the_bytes() {
        let mut page = Page([0; 4096]);
        page.0[4..8].copy_from_slice(&0x1234_5678u32.to_ne_bytes());
        page.0[9] = 0xab;
        let base = page.0.as_mut_ptr();
        // SAFETY: `page` outlives both views and is accessed only through them until the end
        // of the scope that holds them.
        let (w, b, h) = unsafe {
            (
                words(base, 4095).unwrap(),
                bytes(base, 4096).unwrap(),
                halves(base, 4095).unwrap(),
            )
        };
        assert_eq!(w.len(), 1023);
        assert_eq!(b.len(), 4096);
        assert_eq!(h.len(), 2047);
        assert_eq!(h[2].load(Ordering::Relaxed), {
            let n = 0x1234_5678u32.to_ne_bytes();
            u16::from_ne_bytes([n[0], n[1]])
        });
        assert_eq!(w[1].load(Ordering::Relaxed), 0x1234_5678);
        assert_eq!(b[9].load(Ordering::Relaxed), 0xab);
        w[0].store(u32::from_ne_bytes([1, 2, 3, 4]), Ordering::Relaxed);
        assert_eq!(b[2].load(Ordering::Relaxed), 3);
    }

    #[test]
    fn rejects_bad_regions() {
        let mut page = Page([0; 4096]);
        let base = page.0.as_mut_ptr();
        // SAFETY: each call either fails its checks before building a view or builds none that
        // is used; `page` outlives them.
        unsafe {
            assert_eq!(
                words(core::ptr::null_mut(), 8).unwrap_err(),
                RegionError::Null
            );
            assert!(matches!(
                words(base.add(4), 8),
                Err(RegionError::Misaligned { .. })
            ));
            assert_eq!(bytes(base, usize::MAX).unwrap_err(), RegionError::TooLarge);
            assert!(matches!(
                halves(base.add(2), 8),
                Err(RegionError::Misaligned { .. })
            ));
        }
    }

    /// The size limit is exactly `isize::MAX` bytes (what a slice may span), and a region
    /// that would wrap the address space is refused however small it is. Checked without
    /// building a view: no memory that large exists.
    #[test]
    fn size_limits_are_exact() {
        let mut page = Page([0; 4096]);
        let base = page.0.as_mut_ptr();
        let max = isize::MAX as usize;
        assert_eq!(check(base, max), Ok(()));
        assert_eq!(check(base, max + 1), Err(RegionError::TooLarge));
        let top = core::ptr::without_provenance_mut::<u8>(usize::MAX - 7);
        assert_eq!(check(top, 8), Err(RegionError::TooLarge));
        assert_eq!(check(top, 7), Ok(()));
    }
}
