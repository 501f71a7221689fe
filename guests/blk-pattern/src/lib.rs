//! The test guest's plan for its virtio-blk disk, shared by the guest (which writes and reads it
//! back) and the host (`blk-disk-check`, which checks the disk image after QEMU exits).
//!
//! - [`EXTENTS`]: what the guest writes, in write order: byte ranges on the disk (whole 512-byte
//!   sectors), each filled with [`pattern`]`(disk_offset, seed)`. They are chosen to make the
//!   VMM's 512-byte-sector → 4096-byte-unit conversion work: whole aligned units, unaligned start
//!   and end inside a unit (read-modify-write), a single sector in the middle of a unit, a 64 KiB
//!   aligned run, a run longer than 64 KiB starting at an odd sector, a multi-segment request,
//!   the last sectors of the disk. Every read-modify-write extent lands on bytes an earlier
//!   extent wrote with another seed, so that losing the preserved part of a unit shows.
//! - [`expected`]: the final contents: the last extent covering a byte wins, and every other
//!   byte is zero (the disk image starts zeroed). [`expected_run`] gives the same answer a run at
//!   a time; [`check`] compares bytes against it.
//! - [`SENTINELS`]: ranges nothing may write, among them [`HOSTILE_OFFSET`], where the guest's
//!   hostile write requests (which must fail) point.
//! - [`hostile`]: the hostile requests and the exact answer the VMM's virtio-blk model gives.
//!
//! `no_std` and dependency-free; the host binary `blk-disk-check` and the tests use std.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

pub mod hostile;

/// The virtio sector.
pub const SECTOR: u64 = 512;
/// The VMM backend's transfer unit.
pub const UNIT: u64 = 4096;
/// Size of the disk the plan is made for (the Makefile's `DISK_SIZE`, 16 MiB).
pub const DISK_BYTES: u64 = 16 * 1024 * 1024;
/// [`DISK_BYTES`] in sectors: the capacity the device must report.
pub const DISK_SECTORS: u64 = DISK_BYTES / SECTOR;
/// Where the guest's hostile write requests point (inside a sentinel: they must not land).
pub const HOSTILE_OFFSET: u64 = 0x8_0000;
/// The benchmark's area (`[BENCH_OFFSET, BENCH_OFFSET + BENCH_BYTES)`), on its own disk image:
/// it overlaps nothing the plan writes, but is not part of it either.
pub const BENCH_OFFSET: u64 = 4 * 1024 * 1024;
/// Bytes of the benchmark's area.
pub const BENCH_BYTES: u64 = 4 * 1024 * 1024;

/// One write of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Short name, for messages.
    pub name: &'static str,
    /// Disk byte offset (a multiple of [`SECTOR`]).
    pub offset: u64,
    /// Length in bytes (a non-zero multiple of [`SECTOR`]).
    pub len: u64,
    /// Pattern seed.
    pub seed: u32,
    /// Data segment lengths of the request, in order (they add up to `len`); empty: the driver
    /// splits the data as it likes.
    pub segments: &'static [u32],
    /// Batch: consecutive extents with the same non-zero number are posted together and
    /// notified once, so several requests are in flight at once (the restart test crashes the
    /// block driver among them); 0: one request at a time.
    pub batch: u8,
}

impl Extent {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.offset + self.len
    }
    /// Whether the extent covers disk byte `off`.
    pub const fn contains(&self, off: u64) -> bool {
        self.offset <= off && off < self.end()
    }
}

const fn ext(name: &'static str, offset: u64, len: u64, seed: u32) -> Extent {
    Extent {
        name,
        offset,
        len,
        seed,
        segments: &[],
        batch: 0,
    }
}

const fn batched(name: &'static str, offset: u64, len: u64, seed: u32, batch: u8) -> Extent {
    Extent {
        batch,
        ..ext(name, offset, len, seed)
    }
}

/// The writes, in order. Offsets in the comments are unit-relative (`u` = 4096 bytes,
/// `s` = 512 bytes).
pub const EXTENTS: &[Extent] = &[
    // Four requests in flight at once (one notify), on whole units of their own.
    batched("batch-a", 0x38_0000, 0x4000, 0xb1, 1),
    batched("batch-b", 0x38_8000, 0x4000, 0xb2, 1),
    batched("batch-c", 0x39_0000, 0x4000, 0xb3, 1),
    batched("batch-d", 0x39_8000, 0x4000, 0xb4, 1),
    // Two whole aligned units: no read-modify-write.
    ext("aligned-units", 0x1_0000, 0x2000, 0x11),
    // Four units with one seed, then a write from sector 3 of the first unit to sector 5 of the
    // last: both end units are read-modify-written, and their outer sectors must keep 0x21.
    ext("rmw-neighbours", 0x2_0000, 0x4000, 0x21),
    ext("unaligned-start-end", 0x2_0600, 0x3400, 0x22),
    // Two sectors straddling the unit boundary at 0x2_2000: two partial units in one request.
    ext("straddle", 0x2_1e00, 0x400, 0x23),
    // One sector in the middle of a unit (sector 4 of 8): head and tail of the same unit kept.
    ext("single-neighbours", 0x3_0000, 0x1000, 0x31),
    ext("single-sector", 0x3_0800, 0x200, 0x32),
    // Unaligned start with an aligned end, then an aligned start with an unaligned end.
    ext("partial-neighbours", 0x4_0000, 0x3000, 0x41),
    ext("head-partial", 0x4_0e00, 0x1200, 0x42),
    ext("tail-partial", 0x4_2000, 0x600, 0x43),
    // 64 KiB, aligned.
    ext("aligned-64k", 0x10_0000, 0x1_0000, 0x51),
    // 147 sectors (73.5 KiB, more than one 64 KiB segment) from the odd sector 4097.
    ext("large-neighbours", 0x20_0000, 0x1_4000, 0x61),
    ext("large-odd", 0x20_0200, 0x1_2600, 0x62),
    // One request of five data segments of different sizes, unaligned at both ends.
    ext("multi-neighbours", 0x30_0000, 0x4000, 0x71),
    Extent {
        name: "multi-segment",
        offset: 0x30_0a00,
        len: 0x2200,
        seed: 0x72,
        segments: &[0x200, 0x600, 0x1000, 0x800, 0x200],
        batch: 0,
    },
    // The last two units, then the last three sectors of the disk.
    ext("end-neighbours", DISK_BYTES - 0x2000, 0x2000, 0x81),
    ext("disk-end", DISK_BYTES - 0x600, 0x600, 0x82),
];

/// A named range nothing may write: it must read as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sentinel {
    /// Short name, for messages.
    pub name: &'static str,
    /// Disk byte offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Untouched ranges right next to the extents (a write spilling over its unit would land here)
/// and the target of the hostile writes.
pub const SENTINELS: &[Sentinel] = &[
    Sentinel {
        name: "disk-start",
        offset: 0,
        len: 0x1_0000,
    },
    Sentinel {
        name: "after-aligned-units",
        offset: 0x1_2000,
        len: 0x1000,
    },
    Sentinel {
        name: "before-rmw",
        offset: 0x1_f000,
        len: 0x1000,
    },
    Sentinel {
        name: "after-rmw",
        offset: 0x2_4000,
        len: 0x1000,
    },
    Sentinel {
        name: "after-single",
        offset: 0x3_1000,
        len: 0x1000,
    },
    Sentinel {
        name: "after-partial",
        offset: 0x4_3000,
        len: 0x1000,
    },
    Sentinel {
        name: "hostile-target",
        offset: HOSTILE_OFFSET,
        len: 0x1000,
    },
    Sentinel {
        name: "after-64k",
        offset: 0x11_0000,
        len: 0x1000,
    },
    Sentinel {
        name: "after-large",
        offset: 0x21_4000,
        len: 0x1000,
    },
    Sentinel {
        name: "after-multi",
        offset: 0x30_4000,
        len: 0x1000,
    },
    Sentinel {
        name: "between-batch",
        offset: 0x38_4000,
        len: 0x4000,
    },
    Sentinel {
        name: "after-batch",
        offset: 0x39_c000,
        len: 0x1000,
    },
    Sentinel {
        name: "before-disk-end",
        offset: DISK_BYTES - 0x3000,
        len: 0x1000,
    },
];

/// The byte the plan writes at disk byte `off` with `seed`: a mix of both (so a sector written to
/// the wrong place, or with another extent's seed, shows), never zero (so a written byte never
/// looks untouched).
pub const fn pattern(off: u64, seed: u32) -> u8 {
    let mut x = off.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (seed as u64 + 1).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    let b = (x >> 24) as u8;
    if b == 0 { 0xa5 } else { b }
}

/// Fills `out` with the pattern of `seed` for the disk bytes starting at `disk_offset`.
pub fn fill(disk_offset: u64, seed: u32, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = pattern(disk_offset + i as u64, seed);
    }
}

/// The extent whose data disk byte `off` holds once the plan is written (the last one covering
/// it), if any.
pub fn winner(off: u64) -> Option<&'static Extent> {
    EXTENTS.iter().rev().find(|e| e.contains(off))
}

/// The final contents of disk byte `off`: the winning extent's pattern, or zero.
pub fn expected(off: u64) -> u8 {
    winner(off).map_or(0, |e| pattern(off, e.seed))
}

/// The seed that holds at `off` (`None`: the byte stays zero) and the end of the run of bytes
/// from `off` on that the same answer holds for (`> off`).
pub fn expected_run(off: u64) -> (Option<u32>, u64) {
    let won = EXTENTS
        .iter()
        .enumerate()
        .rev()
        .find(|(_, e)| e.contains(off));
    let later = won.map_or(0, |(i, _)| i + 1);
    // The run ends where the winner ends or where a later extent (which would win) begins.
    let mut end = won.map_or(u64::MAX, |(_, e)| e.end());
    for e in EXTENTS.get(later..).unwrap_or(&[]) {
        if e.offset > off && e.offset < end {
            end = e.offset;
        }
    }
    (won.map(|(_, e)| e.seed), end)
}

/// What [`check`] reports for one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// Disk byte offset.
    pub offset: u64,
    /// What the plan says.
    pub expected: u8,
    /// What was there.
    pub found: u8,
}

/// Compares `data`, the disk bytes from `disk_offset` on, with the plan's final contents; calls
/// `on_mismatch` for each wrong byte and returns how many there were.
pub fn check(disk_offset: u64, data: &[u8], mut on_mismatch: impl FnMut(Mismatch)) -> u64 {
    let mut bad = 0;
    let mut i = 0usize;
    while i < data.len() {
        let off = disk_offset + i as u64;
        let (seed, end) = expected_run(off);
        let n = usize::try_from(end - off).map_or(data.len() - i, |n| n.min(data.len() - i));
        for (j, &found) in data[i..i + n].iter().enumerate() {
            let o = off + j as u64;
            let want = seed.map_or(0, |s| pattern(o, s));
            if found != want {
                bad += 1;
                on_mismatch(Mismatch {
                    offset: o,
                    expected: want,
                    found,
                });
            }
        }
        i += n;
    }
    bad
}

/// Writes the plan's final contents of the disk bytes from `disk_offset` on into `out`.
pub fn render(disk_offset: u64, out: &mut [u8]) {
    let mut i = 0usize;
    while i < out.len() {
        let off = disk_offset + i as u64;
        let (seed, end) = expected_run(off);
        let n = usize::try_from(end - off).map_or(out.len() - i, |n| n.min(out.len() - i));
        match seed {
            Some(s) => fill(off, s, &mut out[i..i + n]),
            None => out[i..i + n].fill(0),
        }
        i += n;
    }
}

/// The name of what should be at disk byte `off`: the winning extent, a sentinel, or
/// "untouched".
pub fn describe(off: u64) -> &'static str {
    if let Some(e) = winner(off) {
        return e.name;
    }
    SENTINELS
        .iter()
        .find(|s| s.offset <= off && off < s.offset + s.len)
        .map_or("untouched", |s| s.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The model, written the obvious way: replay the writes on a byte map.
    fn replay(start: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        for e in EXTENTS {
            for (i, b) in v.iter_mut().enumerate() {
                let o = start + i as u64;
                if e.contains(o) {
                    *b = pattern(o, e.seed);
                }
            }
        }
        v
    }

    #[test]
    fn extents_are_sector_aligned_and_on_the_disk() {
        for e in EXTENTS {
            assert!(e.len > 0, "{}", e.name);
            assert_eq!(e.offset % SECTOR, 0, "{}", e.name);
            assert_eq!(e.len % SECTOR, 0, "{}", e.name);
            assert!(e.end() <= DISK_BYTES, "{}", e.name);
            if !e.segments.is_empty() {
                let sum: u64 = e.segments.iter().map(|&s| u64::from(s)).sum();
                assert_eq!(sum, e.len, "{}", e.name);
                assert!(
                    e.segments
                        .iter()
                        .all(|&s| s > 0 && u64::from(s) % SECTOR == 0)
                );
            }
        }
        let mut names: Vec<_> = EXTENTS.iter().map(|e| e.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EXTENTS.len(), "names are unique");
    }

    #[test]
    fn the_plan_has_every_shape() {
        let unit_aligned = |e: &Extent| e.offset.is_multiple_of(UNIT) && e.len.is_multiple_of(UNIT);
        assert!(EXTENTS.iter().any(|e| unit_aligned(e) && e.len < 0x1_0000));
        assert!(
            EXTENTS
                .iter()
                .any(|e| e.offset % UNIT != 0 && e.end() % UNIT != 0 && e.len > UNIT)
        );
        // A single sector strictly inside a unit.
        assert!(
            EXTENTS
                .iter()
                .any(|e| e.len == SECTOR && e.offset % UNIT != 0 && e.end() % UNIT != 0)
        );
        assert!(
            EXTENTS
                .iter()
                .any(|e| e.len == 0x1_0000 && e.offset % 0x1_0000 == 0)
        );
        assert!(
            EXTENTS
                .iter()
                .any(|e| e.len > 0x1_0000 && (e.offset / SECTOR) % 2 == 1)
        );
        assert!(EXTENTS.iter().any(|e| e.segments.len() > 2));
        assert!(EXTENTS.iter().any(|e| e.end() == DISK_BYTES));
        // A request crossing a unit boundary with both ends partial and only two sectors long.
        assert!(
            EXTENTS
                .iter()
                .any(|e| e.len == 2 * SECTOR && e.offset / UNIT != (e.end() - 1) / UNIT)
        );
    }

    /// Every partially covered unit of an extent holds, outside the extent, bytes an earlier
    /// extent wrote with another seed: a read-modify-write that loses them is caught.
    #[test]
    fn read_modify_write_neighbours_are_checkable() {
        for (i, e) in EXTENTS.iter().enumerate() {
            let first = e.offset / UNIT * UNIT;
            let last_end = e.end().div_ceil(UNIT) * UNIT;
            let outside = (first..e.offset).chain(e.end()..last_end);
            for o in outside {
                let earlier = EXTENTS[..i].iter().rev().find(|x| x.contains(o));
                let Some(n) = earlier else {
                    panic!(
                        "{}: byte {o:#x} of a partial unit is not pre-written",
                        e.name
                    )
                };
                assert_ne!(n.seed, e.seed, "{}: neighbour {}", e.name, n.name);
            }
        }
    }

    #[test]
    fn sentinels_are_untouched_and_adjacent() {
        for s in SENTINELS {
            assert!(s.offset + s.len <= DISK_BYTES);
            for o in s.offset..s.offset + s.len {
                assert!(winner(o).is_none(), "{} at {o:#x}", s.name);
            }
        }
        // The hostile target lies in a sentinel, whole sectors of it.
        assert!(
            SENTINELS
                .iter()
                .any(|s| s.offset <= HOSTILE_OFFSET
                    && HOSTILE_OFFSET + 4 * SECTOR <= s.offset + s.len)
        );
        // The benchmark's area overlaps nothing the plan writes.
        assert!(
            EXTENTS
                .iter()
                .all(|e| e.end() <= BENCH_OFFSET || e.offset >= BENCH_OFFSET + BENCH_BYTES)
        );
    }

    #[test]
    fn model_matches_replay_around_every_boundary() {
        for e in EXTENTS {
            for edge in [e.offset, e.end()] {
                let start = edge.saturating_sub(UNIT + 17);
                let got: Vec<u8> = (start..start + 2 * UNIT + 40).map(expected).collect();
                assert_eq!(got, replay(start, got.len()), "{} at {edge:#x}", e.name);
                let mut rendered = vec![0u8; got.len()];
                render(start, &mut rendered);
                assert_eq!(rendered, got);
            }
        }
    }

    #[test]
    fn check_counts_each_wrong_byte() {
        let e = &EXTENTS[1];
        let mut img = vec![0u8; 3 * UNIT as usize];
        render(e.offset - UNIT, &mut img);
        assert_eq!(check(e.offset - UNIT, &img, |_| panic!("clean image")), 0);
        img[10] ^= 1; // a sentinel byte before the extent
        img[UNIT as usize + 5] = 0; // an extent byte zeroed
        let mut seen = vec![];
        assert_eq!(check(e.offset - UNIT, &img, |m| seen.push(m)), 2);
        assert_eq!(seen[0].offset, e.offset - UNIT + 10);
        assert_eq!((seen[0].expected, seen[0].found), (0, 1));
        assert_eq!(seen[1].offset, e.offset + 5);
        assert_eq!(seen[1].found, 0);
        assert_ne!(seen[1].expected, 0);
    }

    #[test]
    fn describe_names_the_owner() {
        assert_eq!(describe(0x2_0000), "rmw-neighbours");
        assert_eq!(describe(0x2_0600), "unaligned-start-end");
        assert_eq!(describe(0x2_1e00), "straddle");
        assert_eq!(describe(HOSTILE_OFFSET + 1), "hostile-target");
        assert_eq!(describe(0x9_0000), "untouched");
    }

    proptest! {
        #[test]
        fn pattern_is_never_zero(off in any::<u64>(), seed in any::<u32>()) {
            prop_assert_ne!(pattern(off, seed), 0);
        }

        /// Two seeds of the plan give different bytes almost everywhere in any sector, and a
        /// sector's pattern differs from the next sector's: misplaced or mixed-up data shows.
        #[test]
        fn seeds_and_places_are_distinguishable(sector in 0..DISK_SECTORS, a in 0..EXTENTS.len(), b in 0..EXTENTS.len()) {
            let off = sector * SECTOR;
            let (sa, sb) = (EXTENTS[a].seed, EXTENTS[b].seed);
            if sa != sb {
                let same = (off..off + SECTOR).filter(|&o| pattern(o, sa) == pattern(o, sb)).count();
                prop_assert!(same < 16, "seeds {sa:#x}/{sb:#x} agree on {same} bytes");
            }
            let shifted = (off..off + SECTOR).filter(|&o| pattern(o, sa) == pattern(o + SECTOR, sa)).count();
            prop_assert!(shifted < 16, "sector and next sector agree on {shifted} bytes");
        }

        /// The run answer agrees with the byte answer over the whole run, and the run is not
        /// empty.
        #[test]
        fn expected_run_agrees_with_expected(off in prop_oneof![
            0..DISK_BYTES + UNIT,
            (0..EXTENTS.len(), -600i64..600).prop_map(|(i, d)| {
                let e = &EXTENTS[i];
                (if d < 0 { e.offset } else { e.end() }).saturating_add_signed(d)
            }),
        ]) {
            let (seed, end) = expected_run(off);
            prop_assert!(end > off);
            let stop = end.min(off + 2 * UNIT);
            for o in off..stop {
                let want = seed.map_or(0, |s| pattern(o, s));
                prop_assert_eq!(expected(o), want, "at {:#x} in the run {:#x}..{:#x}", o, off, end);
            }
        }

        /// A changed byte anywhere is reported at its offset, and only there.
        #[test]
        fn check_finds_any_corruption(e in 0..EXTENTS.len(), d in -3000i64..3000, x in 1u8..=255) {
            let ext = &EXTENTS[e];
            let at = ext.offset.saturating_add_signed(d).min(DISK_BYTES - 1);
            let start = at.saturating_sub(UNIT);
            let mut img = vec![0u8; 2 * UNIT as usize];
            render(start, &mut img);
            let i = (at - start) as usize;
            img[i] ^= x;
            let mut seen = vec![];
            prop_assert_eq!(check(start, &img, |m| seen.push(m)), 1);
            prop_assert_eq!(seen[0].offset, at);
            prop_assert_eq!(seen[0].found, expected(at) ^ x);
        }
    }
}
