//! Bulk byte copies for [`crate::region::SharedRegion`]: guest RAM and shared data regions.
//!
//! On `aarch64-unknown-none` the `memcpy` behind `core::ptr::copy_nonoverlapping` is
//! compiler-builtins' portable one, which moves one 8-byte word per loop iteration: about 2 bytes
//! per instruction. A virtio-blk window of 512 KiB then costs the VMM some 270,000 instructions
//! of copying (measured under `-icount`). [`copy`] moves 64 bytes per iteration with four
//! `ldp`/`stp` pairs of general-purpose registers (no FP/SIMD registers, so a PD that uses it
//! never takes the kernel's lazy FPU switch), about 6 bytes per instruction, and leaves the tail
//! of fewer than 64 bytes to `copy_nonoverlapping`. On the host it is `copy_nonoverlapping`
//! throughout, so host tests check the split into blocks and tail, not the instructions.

/// Bytes per block of the unrolled loop.
pub const BLOCK: usize = 64;

/// Copies `len` bytes from `src` to `dst`.
///
/// # Safety
/// As for `core::ptr::copy_nonoverlapping`: `src` valid for reads and `dst` for writes of `len`
/// bytes, the two ranges disjoint. No alignment is required (the PDs' memory is Normal memory,
/// where unaligned `ldp`/`stp` are allowed).
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    let blocks = len / BLOCK;
    let head = blocks * BLOCK;
    // SAFETY: the first `head <= len` bytes of both ranges, under the caller's contract.
    unsafe { copy_blocks(dst, src, blocks) };
    // SAFETY: the remaining `len - head` bytes, inside both ranges (the caller's contract).
    unsafe { core::ptr::copy_nonoverlapping(src.add(head), dst.add(head), len - head) };
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
unsafe fn copy_blocks(dst: *mut u8, src: *const u8, blocks: usize) {
    if blocks == 0 {
        return;
    }
    // SAFETY: reads `blocks * 64` bytes from `src` and writes as many to `dst`, both valid and
    // disjoint by `copy`'s contract; only the named scratch registers and the flags change.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldp {a}, {b}, [{src}]",
            "ldp {c}, {d}, [{src}, #16]",
            "stp {a}, {b}, [{dst}]",
            "stp {c}, {d}, [{dst}, #16]",
            "ldp {a}, {b}, [{src}, #32]",
            "ldp {c}, {d}, [{src}, #48]",
            "add {src}, {src}, #64",
            "stp {a}, {b}, [{dst}, #32]",
            "stp {c}, {d}, [{dst}, #48]",
            "add {dst}, {dst}, #64",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            src = inout(reg) src => _,
            dst = inout(reg) dst => _,
            n = inout(reg) blocks => _,
            a = out(reg) _,
            b = out(reg) _,
            c = out(reg) _,
            d = out(reg) _,
            options(nostack),
        );
    }
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
unsafe fn copy_blocks(dst: *mut u8, src: *const u8, blocks: usize) {
    // SAFETY: `blocks * 64` bytes of both ranges, under `copy`'s contract.
    unsafe { core::ptr::copy_nonoverlapping(src, dst, blocks * BLOCK) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length around the block size, at every source and destination misalignment: the
    /// destination holds the source's bytes and nothing around it changes.
    #[test]
    fn copies_exactly_the_bytes_asked_for() {
        let src: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in (0..=3 * BLOCK + 1).chain([255, 256, 257]) {
            for so in 0..3 {
                for doff in 0..3 {
                    let mut dst = vec![0xeeu8; 400];
                    // SAFETY: both ranges lie inside their vectors (len + 3 <= 400) and are
                    // distinct allocations.
                    unsafe { copy(dst.as_mut_ptr().add(doff), src.as_ptr().add(so), len) };
                    assert_eq!(&dst[doff..doff + len], &src[so..so + len], "len {len}");
                    assert!(dst[..doff].iter().all(|&b| b == 0xee), "before, len {len}");
                    assert!(
                        dst[doff + len..].iter().all(|&b| b == 0xee),
                        "after, len {len}"
                    );
                }
            }
        }
    }
}
