//! [`SharedRegion`]: bounds-checked access to a memory region system.xml maps into this PD
//! (shared with another PD, or guest RAM). All accesses are volatile-or-copy operations on raw
//! memory another PD may change concurrently, so no Rust reference into it is ever handed out.

use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32};

/// Why a region access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionError {
    /// The access would reach outside the region.
    OutOfBounds {
        /// Offset of the access.
        offset: usize,
        /// Length of the access.
        len: usize,
        /// Size of the region.
        size: usize,
    },
    /// The region's address was never patched (0): system.xml maps nothing there.
    Unmapped,
}

/// Loads `len` bytes (at most 8) at `p` as a little-endian value, zero-extended: one volatile
/// load when `len` is 1, 2, 4 or 8 and `p` is aligned to it, a copy otherwise.
///
/// # Safety
/// `[p, p + len)` must be mapped and readable, and `len` at most 8.
#[inline(always)]
unsafe fn load_le_at(p: *const u8, len: u8) -> u64 {
    let a = p as usize;
    // SAFETY (every arm): `[p, p + len)` is readable (the caller's contract) and each typed
    // load is aligned to its size (checked by its guard).
    match len {
        1 => u64::from(unsafe { p.read_volatile() }),
        2 if a & 1 == 0 => u64::from(unsafe { (p as *const u16).read_volatile() }),
        4 if a & 3 == 0 => u64::from(unsafe { (p as *const u32).read_volatile() }),
        8 if a & 7 == 0 => unsafe { (p as *const u64).read_volatile() },
        _ => {
            let mut w = [0u8; 8];
            unsafe { core::ptr::copy_nonoverlapping(p, w.as_mut_ptr(), usize::from(len).min(8)) };
            u64::from_le_bytes(w)
        }
    }
}

/// Stores the low `len` bytes (at most 8) of `v` at `p`, little-endian, as [`load_le_at`].
///
/// # Safety
/// `[p, p + len)` must be mapped and writable, and `len` at most 8.
#[inline(always)]
unsafe fn store_le_at(p: *mut u8, len: u8, v: u64) {
    let a = p as usize;
    // SAFETY (every arm): as in `load_le_at`, writable.
    match len {
        1 => unsafe { p.write_volatile(v as u8) },
        2 if a & 1 == 0 => unsafe { (p as *mut u16).write_volatile(v as u16) },
        4 if a & 3 == 0 => unsafe { (p as *mut u32).write_volatile(v as u32) },
        8 if a & 7 == 0 => unsafe { (p as *mut u64).write_volatile(v) },
        _ => {
            let w = v.to_le_bytes();
            unsafe { core::ptr::copy_nonoverlapping(w.as_ptr(), p, usize::from(len).min(8)) };
        }
    }
}

/// One 4 KiB page of a [`SharedRegion`], found once ([`SharedRegion::page`]) and then read and
/// written at offsets inside it with only an alignment check: the guest-RAM page of an
/// interpreter's TLB entry. It borrows the region, so it cannot outlive the mapping.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    base: *mut u8,
    _region: core::marker::PhantomData<&'a SharedRegion>,
}

impl Page<'_> {
    /// Bytes in a page.
    pub const SIZE: usize = 4096;

    /// Loads `len` bytes (1, 2, 4 or 8) at `within` as a little-endian value, zero-extended:
    /// one volatile load when aligned, a copy otherwise; `None` if the access leaves the page
    /// (or `len` is larger than 8).
    #[inline]
    pub fn read_le(self, within: usize, len: u8) -> Option<u64> {
        let n = usize::from(len);
        if within >= Self::SIZE || n > 8 || within + n > Self::SIZE {
            return None;
        }
        // SAFETY: `[within, within + n)` lies inside the page (checked), which lies inside a
        // mapped region that outlives `self` (`SharedRegion::page`); `n` is at most 8.
        Some(unsafe { load_le_at(self.base.add(within), len) })
    }

    /// [`Page::read_le`] of `L` bytes (1, 2, 4 or 8), a length known when compiled.
    #[inline(always)]
    pub fn read_fixed<const L: u8>(self, within: usize) -> Option<u64> {
        let n = usize::from(L);
        if n == 0 || n > 8 || within > Self::SIZE - n {
            return None;
        }
        // SAFETY: `[within, within + L)` lies inside the page (checked), which lies inside a
        // mapped region that outlives `self`; `L` is at most 8 (and known when compiled, so the
        // length's dispatch folds away).
        Some(unsafe { load_le_at(self.base.add(within), L) })
    }

    /// Stores the low `len` bytes (1, 2, 4 or 8) of `v` at `within`, little-endian; `false`
    /// (and nothing written) if the access leaves the page (or `len` is larger than 8).
    #[inline]
    pub fn write_le(self, within: usize, len: u8, v: u64) -> bool {
        let n = usize::from(len);
        if within >= Self::SIZE || n > 8 || within + n > Self::SIZE {
            return false;
        }
        // SAFETY: as in `read_le`; the region is mapped read-write.
        unsafe { store_le_at(self.base.add(within), len, v) };
        true
    }
}

/// A mapped memory region `[base, base + size)`.
#[derive(Debug)]
pub struct SharedRegion {
    base: *mut u8,
    size: usize,
}

impl SharedRegion {
    /// A region over raw memory.
    ///
    /// # Safety
    /// `[base, base + size)` must be mapped read-write in this address space for as long as the
    /// region is used, and must not be accessed through Rust references elsewhere.
    pub const unsafe fn from_raw(base: *mut u8, size: usize) -> Self {
        Self { base, size }
    }

    /// The region mapped at the address the tool patched into a `setvar_vaddr` symbol, of the
    /// size system.xml gives it. The runtime trusts the system description here: the generated
    /// code passes the size and the symbol of the same `<map>` element.
    pub fn from_setvar(
        vaddr: &'static crate::patched::Patched<u64>,
        size: usize,
    ) -> Result<Self, RegionError> {
        match vaddr.get() {
            0 => Err(RegionError::Unmapped),
            // SAFETY: the Microkit tool mapped `size` bytes read-write at this address for this
            // PD (the same <map> element gave the setvar symbol and the size), for its lifetime.
            v => Ok(unsafe { Self::from_raw(v as usize as *mut u8, size) }),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The region's base address in this PD.
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), RegionError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(RegionError::OutOfBounds {
                offset,
                len,
                size: self.size,
            }),
        }
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), RegionError> {
        self.check(offset, buf.len())?;
        // SAFETY: the range was checked to lie inside the mapped region (see `from_raw`); `buf`
        // is ordinary memory that cannot overlap a region no Rust reference points into.
        unsafe { crate::copy::copy(buf.as_mut_ptr(), self.base.add(offset), buf.len()) };
        Ok(())
    }

    /// Copies `buf` to `offset`.
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<(), RegionError> {
        self.check(offset, buf.len())?;
        // SAFETY: as in `read`, with the roles of source and destination swapped.
        unsafe { crate::copy::copy(self.base.add(offset), buf.as_ptr(), buf.len()) };
        Ok(())
    }

    /// Sets `len` bytes at `offset` to `value`.
    pub fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), RegionError> {
        self.check(offset, len)?;
        // SAFETY: the range was checked to lie inside the mapped region (see `from_raw`).
        unsafe { core::ptr::write_bytes(self.base.add(offset), value, len) };
        Ok(())
    }

    /// Loads `len` bytes (1, 2, 4 or 8) at `offset` as a little-endian value, zero-extended:
    /// one volatile load when the address is aligned to `len`, a copy otherwise.
    #[inline]
    pub fn read_le(&self, offset: usize, len: u8) -> Result<u64, RegionError> {
        let n = usize::from(len);
        self.check(offset, n)?;
        if n > 8 {
            return Err(RegionError::OutOfBounds {
                offset,
                len: n,
                size: self.size,
            });
        }
        // SAFETY: `[offset, offset + n)` lies inside the mapped region (checked; see
        // `from_raw`), and `n` is at most 8.
        Ok(unsafe { load_le_at(self.base.add(offset), len) })
    }

    /// Stores the low `len` bytes (1, 2, 4 or 8) of `v` at `offset`, little-endian: one
    /// volatile store when the address is aligned to `len`, a copy otherwise.
    #[inline]
    pub fn write_le(&self, offset: usize, len: u8, v: u64) -> Result<(), RegionError> {
        let n = usize::from(len);
        self.check(offset, n)?;
        if n > 8 {
            return Err(RegionError::OutOfBounds {
                offset,
                len: n,
                size: self.size,
            });
        }
        // SAFETY: `[offset, offset + n)` lies inside the mapped read-write region (checked),
        // and `n` is at most 8.
        unsafe { store_le_at(self.base.add(offset), len, v) };
        Ok(())
    }

    /// The page of [`Page::SIZE`] bytes at `offset`, if it lies inside the region.
    pub fn page(&self, offset: usize) -> Option<Page<'_>> {
        self.check(offset, Page::SIZE).ok()?;
        Some(Page {
            // SAFETY: `offset + SIZE <= size` (checked): the pointer stays inside the region.
            base: unsafe { self.base.add(offset) },
            _region: core::marker::PhantomData,
        })
    }

    /// Volatile load of the naturally aligned `u64` at `offset`.
    pub fn read_u64(&self, offset: usize) -> Result<u64, RegionError> {
        self.check_aligned::<u64>(offset)?;
        // SAFETY: in bounds and 8-byte aligned (checked), inside a mapped region.
        Ok(unsafe { (self.base.add(offset) as *const u64).read_volatile() })
    }

    /// Volatile store of the naturally aligned `u64` at `offset`.
    pub fn write_u64(&self, offset: usize, v: u64) -> Result<(), RegionError> {
        self.check_aligned::<u64>(offset)?;
        // SAFETY: in bounds and 8-byte aligned (checked), inside a mapped read-write region.
        unsafe { (self.base.add(offset) as *mut u64).write_volatile(v) };
        Ok(())
    }

    /// Volatile load of the naturally aligned `u32` at `offset`.
    pub fn read_u32(&self, offset: usize) -> Result<u32, RegionError> {
        self.check_aligned::<u32>(offset)?;
        // SAFETY: in bounds and 4-byte aligned (checked), inside a mapped region.
        Ok(unsafe { (self.base.add(offset) as *const u32).read_volatile() })
    }

    /// Volatile store of the naturally aligned `u32` at `offset`.
    pub fn write_u32(&self, offset: usize, v: u32) -> Result<(), RegionError> {
        self.check_aligned::<u32>(offset)?;
        // SAFETY: in bounds and 4-byte aligned (checked), inside a mapped read-write region.
        unsafe { (self.base.add(offset) as *mut u32).write_volatile(v) };
        Ok(())
    }

    /// Consumes the region and views it as 32-bit atomics for the rest of the program (the
    /// indices of a shared-memory queue). Fails if the base is not 4-byte aligned.
    pub fn into_atomic_words(self) -> Result<&'static [AtomicU32], RegionError> {
        if self.base.is_null() || !(self.base as usize).is_multiple_of(4) {
            return Err(RegionError::OutOfBounds {
                offset: 0,
                len: 4,
                size: self.size,
            });
        }
        // SAFETY: by `from_raw`'s contract the memory is mapped read-write for as long as the
        // region is used and is never reached through Rust references; consuming the region makes
        // this view its only use, for `'static` (a Microkit <map> lasts as long as the PD; test
        // buffers are leaked). The base is aligned for `AtomicU32` (checked) and the length is
        // rounded down to whole words, so the slice stays inside the mapping. Atomics are sound
        // for memory another PD writes concurrently.
        Ok(unsafe { core::slice::from_raw_parts(self.base as *const AtomicU32, self.size / 4) })
    }

    /// Consumes the region and views it as 16-bit atomics for the rest of the program (an sDDF
    /// network queue, whose 16-bit indices share a word). Fails if the base is not 2-byte
    /// aligned.
    pub fn into_atomic_halves(self) -> Result<&'static [AtomicU16], RegionError> {
        if self.base.is_null() || !(self.base as usize).is_multiple_of(2) {
            return Err(RegionError::OutOfBounds {
                offset: 0,
                len: 2,
                size: self.size,
            });
        }
        // SAFETY: as in `into_atomic_words`; the base is aligned for `AtomicU16` (checked) and
        // the length is rounded down to whole half words.
        Ok(unsafe { core::slice::from_raw_parts(self.base as *const AtomicU16, self.size / 2) })
    }

    /// Consumes the region and views it as byte atomics for the rest of the program (the data
    /// area of a serial queue).
    pub fn into_atomic_bytes(self) -> Result<&'static [AtomicU8], RegionError> {
        if self.base.is_null() {
            return Err(RegionError::Unmapped);
        }
        // SAFETY: as in `into_atomic_words`; `AtomicU8` has alignment 1.
        Ok(unsafe { core::slice::from_raw_parts(self.base as *const AtomicU8, self.size) })
    }

    /// Consumes the region and views it as this PD's own byte buffer for the rest of the program:
    /// a data region the PD shares with a driver PD whose device reads and writes it only by DMA,
    /// for operations this PD submitted and is waiting for (an sDDF data region).
    ///
    /// The driver PD must never write the region with the CPU (system.xml maps it read-only
    /// there, or not at all); the PD using the buffer must not touch the bytes of an operation
    /// that is still outstanding, and must take its completion through a queue with acquire
    /// ordering before it reads them (the sDDF queues do). Those are the same rules as for any
    /// DMA buffer; the runtime cannot check them, the caller's protocol (one operation window at
    /// a time, as `vmm-devices`' block model) keeps them.
    pub fn into_dma_buffer(self) -> Result<&'static mut [u8], RegionError> {
        if self.base.is_null() {
            return Err(RegionError::Unmapped);
        }
        // SAFETY: by `from_raw`'s contract the memory is mapped read-write for as long as the
        // region is used and no Rust reference points into it; consuming the region makes this
        // the only view, for `'static` (a Microkit <map> lasts as long as the PD; test buffers
        // are leaked). No other CPU writes it (see above): only device DMA that this PD
        // requested, ordered against this PD's accesses by the queue protocol.
        Ok(unsafe { core::slice::from_raw_parts_mut(self.base, self.size) })
    }

    /// Cleans and invalidates the data cache over `[offset, offset + len)` to the point of
    /// coherency, so a reader with caches off (a guest before it enables its MMU) sees what this
    /// PD wrote through its cached mapping. A no-op on the host.
    pub fn clean_invalidate(&self, offset: usize, len: usize) -> Result<(), RegionError> {
        self.check(offset, len)?;
        #[cfg(all(target_arch = "aarch64", target_os = "none"))]
        {
            let line = crate::sel4::cache::dcache_line_size();
            let start = (self.base as usize + offset) & !(line - 1);
            let end = self.base as usize + offset + len;
            let mut va = start;
            while va < end {
                // SAFETY: `va` lies in a line overlapping the checked, mapped range; DC CIVAC only
                // writes back and invalidates cache lines, it changes no memory contents.
                unsafe {
                    core::arch::asm!("dc civac, {0}", in(reg) va, options(nostack, preserves_flags))
                };
                va += line;
            }
            // SAFETY: a barrier instruction with no operands.
            unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
        }
        Ok(())
    }

    fn check_aligned<T>(&self, offset: usize) -> Result<(), RegionError> {
        let len = core::mem::size_of::<T>();
        self.check(offset, len)?;
        if !(self.base as usize + offset).is_multiple_of(len) {
            return Err(RegionError::OutOfBounds {
                offset,
                len,
                size: self.size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(buf: &mut [u8]) -> SharedRegion {
        // SAFETY: the buffer outlives the region in each test and is reached only through it.
        unsafe { SharedRegion::from_raw(buf.as_mut_ptr(), buf.len()) }
    }

    #[test]
    fn fill_sets_exactly_its_range_and_refuses_to_leave_the_region() {
        let mut buf = vec![0xaau8; 100];
        let r = region(&mut buf);
        r.fill(10, 80, 0).unwrap();
        assert_eq!(
            r.fill(50, 51, 1),
            Err(RegionError::OutOfBounds {
                offset: 50,
                len: 51,
                size: 100
            })
        );
        assert!(r.fill(usize::MAX, 2, 1).is_err());
        let mut out = [0u8; 100];
        r.read(0, &mut out).unwrap();
        assert!(out[..10].iter().all(|&b| b == 0xaa));
        assert!(out[10..90].iter().all(|&b| b == 0));
        assert!(out[90..].iter().all(|&b| b == 0xaa));
    }

    #[test]
    fn small_values_go_in_little_endian_aligned_or_not() {
        let mut buf = vec![0u8; 32];
        let r = region(&mut buf);
        for (off, len) in [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 2),
            (4, 4),
            (5, 4),
            (8, 8),
            (9, 8),
        ] {
            let v = 0x0807_0605_0403_0201u64;
            r.write_le(off, len, v).unwrap();
            let want = if len == 8 {
                v
            } else {
                v & ((1u64 << (8 * len)) - 1)
            };
            assert_eq!(r.read_le(off, len), Ok(want), "at {off}, {len} bytes");
            let mut back = [0u8; 8];
            r.read(off, &mut back[..len as usize]).unwrap();
            assert_eq!(back[..len as usize], v.to_le_bytes()[..len as usize]);
        }
        assert!(r.read_le(25, 8).is_err());
        assert!(r.write_le(31, 2, 0).is_err());
        assert!(r.read_le(usize::MAX, 1).is_err());
        // Other lengths up to 8 copy; longer ones are refused.
        r.write_le(16, 3, 0x0a0b_0c0d).unwrap();
        assert_eq!(r.read_le(16, 3), Ok(0x0b_0c0d));
        assert!(r.read_le(0, 9).is_err());
        assert!(r.write_le(0, 9, 0).is_err());
    }

    #[test]
    fn a_page_reads_and_writes_inside_itself_only() {
        let mut buf = vec![0u8; 3 * 4096];
        let r = region(&mut buf);
        assert!(r.page(2 * 4096 + 1).is_none());
        assert!(r.page(usize::MAX).is_none());
        let p = r.page(4096 + 8).unwrap();
        for (at, len) in [(0, 8), (9, 4), (4094, 2), (4088, 8), (4095, 1), (7, 2)] {
            assert!(p.write_le(at, len, 0x1122_3344_5566_7788));
            let want = if len == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * len)) - 1
            } & 0x1122_3344_5566_7788;
            assert_eq!(p.read_le(at, len), Some(want), "at {at}, {len} bytes");
            let mut back = [0u8; 8];
            r.read(4096 + 8 + at, &mut back[..len as usize]).unwrap();
            assert_eq!(
                back[..len as usize],
                0x1122_3344_5566_7788u64.to_le_bytes()[..len as usize]
            );
        }
        assert!(p.write_le(100, 8, 0x0102_0304_0506_0708));
        assert_eq!(p.read_fixed::<8>(100), Some(0x0102_0304_0506_0708));
        assert_eq!(p.read_fixed::<4>(101), Some(0x0405_0607));
        assert_eq!(p.read_fixed::<2>(102), Some(0x0506));
        assert_eq!(p.read_fixed::<1>(107), Some(0x01));
        assert_eq!(p.read_fixed::<8>(4089), None);
        assert_eq!(p.read_fixed::<1>(4096), None);
        assert_eq!(p.read_fixed::<3>(0), p.read_le(0, 3));
        assert_eq!(p.read_fixed::<0>(0), None);
        assert_eq!(p.read_le(4093, 4), None);
        assert_eq!(p.read_le(4096, 1), None);
        assert_eq!(p.read_le(0, 9), None);
        assert!(!p.write_le(4089, 8, 0));
        assert!(!p.write_le(usize::MAX, 1, 0));
    }

    #[test]
    fn read_and_write_copy_through_the_region_in_bounds_only() {
        let mut buf = vec![0u8; 300];
        let r = region(&mut buf);
        let data: Vec<u8> = (0..=255).collect();
        r.write(7, &data).unwrap();
        let mut back = vec![0u8; 256];
        r.read(7, &mut back).unwrap();
        assert_eq!(back, data);
        assert!(r.write(45, &data).is_err());
        assert!(r.read(45, &mut back).is_err());
    }
}
