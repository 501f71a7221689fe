//! Bulk byte copies for [`crate::region::SharedRegion`]: guest RAM and shared data regions.
//!
//! On `aarch64-unknown-none` the `memcpy` behind `core::ptr::copy_nonoverlapping` is
//! compiler-builtins' portable one, which moves one 8-byte word per loop iteration: about 2 bytes
//! per instruction. A virtio-blk window of 512 KiB then cost the VMM some 270,000 instructions
//! of copying (measured under `-icount`). [`copy`] moves 128 bytes per iteration with four
//! `ldp`/`stp` pairs of 128-bit SIMD registers, about 10 bytes per instruction, and leaves the
//! tail of fewer than 128 bytes to `copy_nonoverlapping`, that is to the `memcpy` below. (The
//! SIMD registers cost a PD that uses them the kernel's lazy FPU switch when another thread used
//! the FPU last, a trap and a register save and restore, small against a bulk copy; with
//! general-purpose `ldp`/`stp` pairs the loop moved about 5 bytes per instruction, and the
//! Linux guest's 1 MiB read requests cost 12,000 timer ticks each in the VMM's completion stage
//! against 6,100 now.) On the host it is `copy_nonoverlapping` throughout, so host tests check
//! the split into blocks and tail, not the instructions; the boot tests (every guest byte the
//! VMM moves, the disk checks, `md5sum /dev/vda` in the Linux session) run the assembly.

/// Bytes per block of the unrolled loop.
pub const BLOCK: usize = 128;

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
    // SAFETY: reads `blocks * 128` bytes from `src` and writes as many to `dst`, both valid and
    // disjoint by `copy`'s contract; only the named scratch registers and the flags change.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldp {a:q}, {b:q}, [{src}]",
            "ldp {c:q}, {d:q}, [{src}, #32]",
            "ldp {e:q}, {f:q}, [{src}, #64]",
            "ldp {g:q}, {h:q}, [{src}, #96]",
            "add {src}, {src}, #128",
            "stp {a:q}, {b:q}, [{dst}]",
            "stp {c:q}, {d:q}, [{dst}, #32]",
            "stp {e:q}, {f:q}, [{dst}, #64]",
            "stp {g:q}, {h:q}, [{dst}, #96]",
            "add {dst}, {dst}, #128",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            src = inout(reg) src => _,
            dst = inout(reg) dst => _,
            n = inout(reg) blocks => _,
            a = out(vreg) _,
            b = out(vreg) _,
            c = out(vreg) _,
            d = out(vreg) _,
            e = out(vreg) _,
            f = out(vreg) _,
            g = out(vreg) _,
            h = out(vreg) _,
            options(nostack),
        );
    }
}

// `memcpy` for the PDs, replacing compiler-builtins' (weak) one, which moves one word per loop
// iteration plus a byte loop for the tail: the exit path's moves of `Fault`, `Decision` and
// report values (tens to a few hundred bytes each) went through it at about 2 bytes per
// instruction (227 instructions of an MMIO exit's 1,421 in the VMM, by `exit-profile.sh`).
// This one moves 16 bytes per `ldp`/`stp` pair of general registers (no FP/SIMD registers, so
// no lazy FPU switch on the exit path), finishes a copy of 16 bytes or more with one
// overlapping pair ending at the last byte, and a shorter one with at most one 8-, 4-, 2- and
// 1-byte move each. Written in assembly so that the compiler cannot turn it back into a call to
// itself. x0 = dst, x1 = src, x2 = n; returns dst; clobbers x3-x6 and the flags (all
// caller-saved under AAPCS64).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
core::arch::global_asm!(
    ".section .text.memcpy,\"ax\",%progbits",
    ".globl memcpy",
    ".type memcpy,%function",
    ".p2align 4",
    "memcpy:",
    "mov x3, x0",
    "subs x4, x2, #16",
    "b.lo 3f",
    "1:",
    "ldp x5, x6, [x1], #16",
    "stp x5, x6, [x3], #16",
    "subs x4, x4, #16",
    "b.hs 1b",
    // x4 + 16 = bytes left (0..=15): the last 16 bytes of the range once more.
    "adds x4, x4, #16",
    "b.eq 9f",
    "add x1, x1, x4",
    "add x3, x3, x4",
    "ldp x5, x6, [x1, #-16]",
    "stp x5, x6, [x3, #-16]",
    "ret",
    "3:",
    "tbz x2, #3, 4f",
    "ldr x5, [x1], #8",
    "str x5, [x3], #8",
    "4:",
    "tbz x2, #2, 5f",
    "ldr w5, [x1], #4",
    "str w5, [x3], #4",
    "5:",
    "tbz x2, #1, 6f",
    "ldrh w5, [x1], #2",
    "strh w5, [x3], #2",
    "6:",
    "tbz x2, #0, 9f",
    "ldrb w5, [x1]",
    "strb w5, [x3]",
    "9:",
    "ret",
    ".size memcpy, . - memcpy",
);

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
