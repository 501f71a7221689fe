//! Executable spec of the stage-1 walk: a plain recursive walker written from the Arm ARM
//! pseudocode formulas (AArch64 translation table walk, 4 KiB granule), hand-built tables with
//! known answers, and proptests on random tables in a `GuestRam` buffer checking the fast walker
//! against the reference.

use proptest::prelude::*;
use vmm_core::addr::{GuestPhysAddr, GuestVirtAddr};
use vmm_core::memory::{GuestMemory, GuestRam, MemError};
use vmm_core::stage1::{AccessKind, MmuConfig, Translation, WalkError, translate};
use vmm_core::vcpu::{SysReg, VcpuState};

const RAM_BASE: u64 = 0x4000_0000;
const PAGES: usize = 32;

fn fld(v: u64, lo: u32, width: u32) -> u64 {
    (v >> lo) & ((1 << width) - 1)
}

/// `v[hi:lo]` as a mask of positions.
fn mask(hi: u32, lo: u32) -> u64 {
    (lo..=hi).fold(0, |m, i| m | (1 << i))
}

/// The reference walker.
fn reference(
    cfg: &MmuConfig,
    mem: &GuestRam,
    va: u64,
    kind: AccessKind,
) -> Result<Translation, WalkError> {
    if cfg.sctlr & 1 == 0 {
        return Ok(Translation {
            gpa: GuestPhysAddr(va),
            level: None,
            desc: 0,
            table_limits: 0,
        });
    }
    let tcr = cfg.tcr;
    if fld(tcr, 59, 1) == 1 {
        return Err(WalkError::UnsupportedLpa2);
    }
    let top_half = fld(va, 55, 1);
    // (TxSZ, EPD, TG, TBI, TBID, TTBR, 4K encoding of TG) for the selected half.
    let (txsz, epd, tg, tbi, tbid, ttbr, tg4k) = if top_half == 1 {
        (
            fld(tcr, 16, 6),
            fld(tcr, 23, 1),
            fld(tcr, 30, 2),
            fld(tcr, 38, 1),
            fld(tcr, 52, 1),
            cfg.ttbr1,
            0b10,
        )
    } else {
        (
            fld(tcr, 0, 6),
            fld(tcr, 7, 1),
            fld(tcr, 14, 2),
            fld(tcr, 37, 1),
            fld(tcr, 51, 1),
            cfg.ttbr0,
            0b00,
        )
    };
    let n = top_half as u8;
    if tg != tg4k {
        return Err(WalkError::UnsupportedGranule {
            ttbr: n,
            tg: tg as u8,
        });
    }
    if !(16..=39).contains(&txsz) {
        return Err(WalkError::UnsupportedTxSz {
            ttbr: n,
            txsz: txsz as u8,
        });
    }
    let inputsize = 64 - txsz as u32;
    let tbi_applies = tbi == 1 && (kind == AccessKind::Data || tbid == 0);
    let top = if tbi_applies { 55 } else { 63 };
    for i in inputsize..=top {
        if fld(va, i, 1) != top_half {
            return Err(WalkError::Translation { level: 0 });
        }
    }
    if epd == 1 {
        return Err(WalkError::WalkDisabled { ttbr: n });
    }
    let outputsize = [32, 36, 40, 42, 44, 48, 48, 48][fld(tcr, 32, 3) as usize];
    // Arm ARM: startlevel = 4 - RoundUp((inputsize - grainsize) / stride).
    let grainsize = 12;
    let stride = 9;
    let startlevel = 4 - (inputsize - grainsize).div_ceil(stride);
    if ttbr & mask(47, outputsize) != 0 {
        return Err(WalkError::AddressSize { level: 0 });
    }
    let baselowerbound = 3 + inputsize - ((3 - startlevel) * stride + grainsize);
    let base = ttbr & mask(47, baselowerbound);
    walk(mem, va, tcr, outputsize, startlevel, inputsize, base, 0)
}

#[allow(clippy::too_many_arguments)]
fn walk(
    mem: &GuestRam,
    va: u64,
    tcr: u64,
    outputsize: u32,
    level: u32,
    top_bit: u32,
    table: u64,
    // APTable[1] (bit 62) and PXNTable (bit 59) of the table descriptors above.
    limits: u64,
) -> Result<Translation, WalkError> {
    let lo = (3 - level) * 9 + 12;
    let index = fld(va, lo, top_bit - lo);
    let desc = mem
        .read_u64(GuestPhysAddr(table + index * 8))
        .map_err(WalkError::Memory)?;
    let l = level as u8;
    let valid = desc & 1 == 1;
    let is_table_or_page = desc & 2 == 2;
    if !valid {
        return Err(WalkError::Translation { level: l });
    }
    if is_table_or_page && level < 3 {
        let next = desc & mask(47, 12);
        if next & mask(47, outputsize) != 0 {
            return Err(WalkError::AddressSize { level: l });
        }
        let limits = limits | (desc & (1 << 62)) | (desc & (1 << 59));
        return walk(mem, va, tcr, outputsize, level + 1, lo, next, limits);
    }
    // A block at level 0 or a reserved (0b01) entry at level 3 is invalid.
    if !is_table_or_page && (level == 0 || level == 3) {
        return Err(WalkError::Translation { level: l });
    }
    let oa = desc & mask(47, lo);
    if oa & mask(47, outputsize) != 0 {
        return Err(WalkError::AddressSize { level: l });
    }
    if fld(desc, 10, 1) == 0 && fld(tcr, 39, 1) == 0 {
        return Err(WalkError::AccessFlag { level: l });
    }
    Ok(Translation {
        gpa: GuestPhysAddr(oa | (va & mask(lo - 1, 0))),
        level: Some(l),
        desc,
        table_limits: limits,
    })
}

/// TCR with both halves 4K, the given sizes, 48-bit IPS.
fn tcr(t0sz: u64, t1sz: u64) -> u64 {
    t0sz | (t1sz << 16) | (0b10 << 30) | (0b101 << 32)
}

fn page(i: u64) -> u64 {
    RAM_BASE + i * 0x1000
}

const AF: u64 = 1 << 10;

/// Hand-built tables: TTBR1 48-bit (4 levels), TTBR0 39-bit (3 levels, from level 1).
fn known_tables(buf: &mut [u8]) -> (GuestRam<'_>, MmuConfig) {
    let mut ram = GuestRam::new(GuestPhysAddr(RAM_BASE), buf);
    let va = 0xffff_0000_1234_5678u64;
    let idx = |l: u32| (va >> (12 + 9 * (3 - l))) & 511;
    // TTBR1: L0 in page 0 -> L1 page 1 -> L2 page 2 -> L3 page 3 -> data page 0x8_0000_0000.
    let mut w = |a: u64, v: u64| ram.write_u64(GuestPhysAddr(a), v).unwrap();
    w(page(0) + idx(0) * 8, page(1) | 3);
    w(page(1) + idx(1) * 8, page(2) | 3);
    w(page(2) + idx(2) * 8, page(3) | 3);
    w(page(3) + idx(3) * 8, 0x8_0000_0000 | AF | 3);
    // Next L3 entry: page without AF; the one after: reserved 0b01.
    w(page(3) + (idx(3) + 1) * 8, 0x8_0000_1000 | 3);
    w(page(3) + (idx(3) + 2) * 8, 0x8_0000_2000 | AF | 1);
    // Neighbouring L2 entry: a 2 MiB block; L1 entry after: a 1 GiB block.
    w(page(2) + (idx(2) + 1) * 8, 0x4_0020_0000 | AF | 1);
    w(page(1) + (idx(1) + 1) * 8, 0x100_0000_0000 | AF | 1);
    // L0 entry after: a "block" at level 0 (invalid with 4K); the one after: table out of RAM.
    w(page(0) + (idx(0) + 1) * 8, 0x80_0000_0000 | AF | 1);
    w(page(0) + (idx(0) + 2) * 8, 0x1000_0000 | 3);
    // ... and one after that: a table above a 40-bit IPS.
    w(page(0) + (idx(0) + 3) * 8, 0x100_0000_0000 | 3);
    // TTBR0, 39-bit: L1 table in page 4, an entry pointing at itself (a loop).
    w(page(4), page(4) | AF | 3);
    let cfg = MmuConfig {
        sctlr: 1,
        tcr: tcr(25, 16),
        ttbr0: page(4),
        ttbr1: page(0) | (0xabcd << 48),
    };
    (ram, cfg)
}

#[test]
fn known_translations() {
    let mut buf = vec![0u8; PAGES * 4096];
    let (ram, cfg) = known_tables(&mut buf);
    let t = |va: u64| {
        translate(&cfg, &ram, GuestVirtAddr(va), AccessKind::Fetch).map(|x| (x.gpa, x.level))
    };
    let base = 0xffff_0000_1234_5678u64;
    assert_eq!(t(base), Ok((GuestPhysAddr(0x8_0000_0678), Some(3))));
    assert_eq!(t(base + 0x1000), Err(WalkError::AccessFlag { level: 3 }));
    assert_eq!(t(base + 0x2000), Err(WalkError::Translation { level: 3 }));
    assert_eq!(t(base + 0x3000), Err(WalkError::Translation { level: 3 }));
    // 2 MiB block: offset within the block is kept.
    let b2 = (base & !0x1f_ffff) + 0x20_0000 + 0x1_2345;
    assert_eq!(t(b2), Ok((GuestPhysAddr(0x4_0021_2345), Some(2))));
    let b1 = (base & !0x3fff_ffff) + 0x4000_0000 + 0x123_4567;
    assert_eq!(t(b1), Ok((GuestPhysAddr(0x100_0123_4567), Some(1))));
    let l0 = (base & !0x7f_ffff_ffff) + 0x80_0000_0000;
    assert_eq!(t(l0), Err(WalkError::Translation { level: 0 }));
    assert_eq!(
        t(l0 + 0x80_0000_0000),
        Err(WalkError::Memory(MemError::OutOfRange {
            gpa: GuestPhysAddr(0x1000_0000),
            len: 8
        }))
    );
    // A self-referencing level-1 entry of a 3-level table: level 2 reads the same table,
    // whose entry 0 then reads as a table again, and level 3 as a page: the walk ends.
    assert_eq!(t(0x0), Ok((GuestPhysAddr(page(4)), Some(3))));
    // Outside both ranges: 39-bit TTBR0, 48-bit TTBR1.
    assert_eq!(t(0x80_0000_0000), Err(WalkError::Translation { level: 0 }));
    assert_eq!(
        t(0xfffe_0000_0000_0000),
        Err(WalkError::Translation { level: 0 })
    );
    // Top byte: ignored for data with TBI1, not for fetches when TBID1 is also set.
    let tagged = base & !(0xff << 56) | (0x5a << 56);
    let tbi = MmuConfig {
        tcr: cfg.tcr | (1 << 38) | (1 << 52),
        ..cfg
    };
    let d = translate(&tbi, &ram, GuestVirtAddr(tagged), AccessKind::Data);
    assert_eq!(d.map(|t| t.gpa), Ok(GuestPhysAddr(0x8_0000_0678)));
    let f = translate(&tbi, &ram, GuestVirtAddr(tagged), AccessKind::Fetch);
    assert_eq!(f, Err(WalkError::Translation { level: 0 }));
    // Without TBI1 the tag is part of the address, which is then outside the range; with TBI1
    // but not TBID1 it is ignored for fetches too.
    for k in [AccessKind::Data, AccessKind::Fetch] {
        let plain = translate(&cfg, &ram, GuestVirtAddr(tagged), k);
        assert_eq!(plain, Err(WalkError::Translation { level: 0 }), "{k:?}");
        let tbi1_only = MmuConfig {
            tcr: cfg.tcr | (1 << 38),
            ..cfg
        };
        let t = translate(&tbi1_only, &ram, GuestVirtAddr(tagged), k);
        assert_eq!(t.map(|t| t.gpa), Ok(GuestPhysAddr(0x8_0000_0678)), "{k:?}");
    }
    // The lower half has its own bits: TBI0 (37) and TBID0 (51), and TBI1 does not apply to it.
    let tagged0 = 0x5a << 56; // VA 0 (the self-referencing TTBR0 table) with a tag
    let with = |bits: u64, k| {
        let c = MmuConfig {
            tcr: cfg.tcr | bits,
            ..cfg
        };
        translate(&c, &ram, GuestVirtAddr(tagged0), k).map(|t| t.gpa)
    };
    let outside = Err(WalkError::Translation { level: 0 });
    for k in [AccessKind::Data, AccessKind::Fetch] {
        assert_eq!(with(0, k), outside, "{k:?}");
        assert_eq!(with((1 << 38) | (1 << 52), k), outside, "{k:?}");
        assert_eq!(with(1 << 37, k), Ok(GuestPhysAddr(page(4))), "{k:?}");
    }
    assert_eq!(
        with((1 << 37) | (1 << 51), AccessKind::Data),
        Ok(GuestPhysAddr(page(4)))
    );
    assert_eq!(with((1 << 37) | (1 << 51), AccessKind::Fetch), outside);
    // With a 40-bit IPS the data page (35 bits) is fine, the big table is not.
    let small = MmuConfig {
        tcr: (cfg.tcr & !(7 << 32)) | (0b010 << 32),
        ..cfg
    };
    let ts = |va: u64| translate(&small, &ram, GuestVirtAddr(va), AccessKind::Data);
    assert_eq!(ts(base).map(|t| t.gpa), Ok(GuestPhysAddr(0x8_0000_0678)));
    assert_eq!(
        ts(l0 + 0x100_0000_0000),
        Err(WalkError::AddressSize { level: 0 })
    );
    assert_eq!(ts(b1), Err(WalkError::AddressSize { level: 1 }));
    // EPD1, granules, TxSZ, DS, MMU off.
    let epd = MmuConfig {
        tcr: cfg.tcr | (1 << 23),
        ..cfg
    };
    assert_eq!(
        translate(&epd, &ram, GuestVirtAddr(base), AccessKind::Data),
        Err(WalkError::WalkDisabled { ttbr: 1 })
    );
    let g16 = MmuConfig {
        tcr: cfg.tcr & !(3 << 30) | (0b01 << 30),
        ..cfg
    };
    assert_eq!(
        translate(&g16, &ram, GuestVirtAddr(base), AccessKind::Data),
        Err(WalkError::UnsupportedGranule { ttbr: 1, tg: 1 })
    );
    let g64 = MmuConfig {
        tcr: cfg.tcr | (0b01 << 14),
        ..cfg
    };
    assert_eq!(
        translate(&g64, &ram, GuestVirtAddr(0x1000), AccessKind::Data),
        Err(WalkError::UnsupportedGranule { ttbr: 0, tg: 1 })
    );
    let big = MmuConfig {
        tcr: cfg.tcr & !63 | 12,
        ..cfg
    };
    assert_eq!(
        translate(&big, &ram, GuestVirtAddr(0x1000), AccessKind::Data),
        Err(WalkError::UnsupportedTxSz { ttbr: 0, txsz: 12 })
    );
    let ds = MmuConfig {
        tcr: cfg.tcr | (1 << 59),
        ..cfg
    };
    assert_eq!(
        translate(&ds, &ram, GuestVirtAddr(base), AccessKind::Data),
        Err(WalkError::UnsupportedLpa2)
    );
    let off = MmuConfig { sctlr: 0, ..cfg };
    assert_eq!(
        translate(&off, &ram, GuestVirtAddr(base), AccessKind::Fetch).map(|x| (x.gpa, x.level)),
        Ok((GuestPhysAddr(base), None))
    );
    // The reference agrees on all of the above.
    for c in [cfg, tbi, small, epd, g16, g64, big, ds, off] {
        for va in [
            base,
            base + 0x1000,
            base + 0x2000,
            b2,
            b1,
            l0,
            l0 + 0x80_0000_0000,
            0,
            tagged,
        ] {
            for k in [AccessKind::Data, AccessKind::Fetch] {
                assert_eq!(
                    translate(&c, &ram, GuestVirtAddr(va), k),
                    reference(&c, &ram, va, k),
                    "{c:x?} {va:#x} {k:?}"
                );
            }
        }
    }
}

#[test]
fn read_for_reads_only_what_it_needs() {
    let mut v = VcpuState::default();
    v.sys[SysReg::TcrEl1 as usize] = 7;
    v.sys[SysReg::Ttbr0El1 as usize] = 0x1000;
    v.sys[SysReg::Ttbr1El1 as usize] = 0x2000;
    let off = MmuConfig::read_for(&mut v, GuestVirtAddr(0)).unwrap();
    assert_eq!(off, MmuConfig::default());
    // MMU off: SCTLR_EL1 as read (the boot value, M clear), nothing else.
    v.sys[SysReg::SctlrEl1 as usize] = 0x30d0_0800;
    let off = MmuConfig::read_for(&mut v, GuestVirtAddr(0)).unwrap();
    assert_eq!(
        off,
        MmuConfig {
            sctlr: 0x30d0_0800,
            ..MmuConfig::default()
        }
    );
    v.sys[SysReg::SctlrEl1 as usize] = 1;
    let lo = MmuConfig::read_for(&mut v, GuestVirtAddr(0x1234)).unwrap();
    assert_eq!(
        lo,
        MmuConfig {
            sctlr: 1,
            tcr: 7,
            ttbr0: 0x1000,
            ttbr1: 0
        }
    );
    let hi = MmuConfig::read_for(&mut v, GuestVirtAddr(0xffff_0000_0000_0000)).unwrap();
    assert_eq!(
        hi,
        MmuConfig {
            sctlr: 1,
            tcr: 7,
            ttbr0: 0,
            ttbr1: 0x2000
        }
    );
    let all = MmuConfig::read_all(&mut v).unwrap();
    assert_eq!(
        all,
        MmuConfig {
            sctlr: 1,
            tcr: 7,
            ttbr0: 0x1000,
            ttbr1: 0x2000
        }
    );
}

/// xorshift64*, to fill the table pages from one seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Fills RAM with descriptors: tables into RAM (loops included), blocks and pages inside and
/// outside RAM, invalid entries, tables out of RAM, garbage.
fn fill(buf: &mut [u8], seed: u64) {
    let mut r = Rng(seed | 1);
    for chunk in buf.chunks_exact_mut(8) {
        let attrs = (r.next() & (0x1f << 59)) | if r.below(10) == 0 { 0 } else { AF };
        // Output addresses of a random width (30..=48 bits), so every IPS boundary is crossed.
        let width = 30 + r.below(19);
        let oa = r.next() & ((1u64 << width) - 1) & 0xffff_ffff_f000;
        let d = match r.below(20) {
            0..=6 => page(r.below(PAGES as u64)) | attrs | 3,
            7..=9 => oa | attrs | 1,
            10..=12 => oa | attrs | 3,
            13..=14 => page(r.below(PAGES as u64)) | attrs | 1,
            15..=16 => r.next() & !1,
            17 => oa | 3,
            _ => r.next(),
        };
        chunk.copy_from_slice(&d.to_le_bytes());
    }
}

fn any_tcr() -> impl Strategy<Value = u64> {
    let txsz = prop_oneof![8 => 16u64..=39, 1 => 0u64..64];
    let tg0 = prop_oneof![8 => Just(0u64), 1 => 0u64..4];
    let tg1 = prop_oneof![8 => Just(2u64), 1 => 0u64..4];
    let rare = prop_oneof![9 => Just(false), 1 => Just(true)];
    (
        txsz.clone(),
        txsz,
        tg0,
        tg1,
        rare.clone(),
        rare.clone(),
        0u64..8,
        any::<[bool; 5]>(),
        rare,
    )
        .prop_map(
            |(t0, t1, tg0, tg1, epd0, epd1, ips, [tbi0, tbi1, tbid0, tbid1, ha], ds)| {
                t0 | (epd0 as u64) << 7
                    | tg0 << 14
                    | t1 << 16
                    | (epd1 as u64) << 23
                    | tg1 << 30
                    | ips << 32
                    | (tbi0 as u64) << 37
                    | (tbi1 as u64) << 38
                    | (ha as u64) << 39
                    | (tbid0 as u64) << 51
                    | (tbid1 as u64) << 52
                    | (ds as u64) << 59
            },
        )
}

fn any_ttbr() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => (0..PAGES as u64, 0u64..4096, any::<u16>())
            .prop_map(|(p, low, asid)| page(p) | (low & !7) | (u64::from(asid) << 48)),
        1 => any::<u64>(),
    ]
}

/// VAs in range for one of the halves (sign-extended from a random width), with random tags
/// or fully random.
fn any_va() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (25u32..=48, any::<u64>(), any::<bool>()).prop_map(|(bits, r, hi)| {
            let low = r & ((1 << bits) - 1);
            if hi { low | !((1 << bits) - 1) } else { low }
        }),
        1 => (any::<u64>(), any::<u8>()).prop_map(|(v, tag)| (v & !(0xff << 56)) | (u64::from(tag) << 56)),
        1 => any::<u64>(),
    ]
}

fn check(seed: u64, cfg: MmuConfig, va: u64) -> Result<(), TestCaseError> {
    let mut buf = vec![0u8; PAGES * 4096];
    fill(&mut buf, seed);
    let ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut buf);
    for k in [AccessKind::Fetch, AccessKind::Data] {
        let fast = translate(&cfg, &ram, GuestVirtAddr(va), k);
        let spec = reference(&cfg, &ram, va, k);
        prop_assert_eq!(fast, spec, "cfg {:x?} va {:#x} {:?}", cfg, va, k);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn walker_matches_reference(
        seed in any::<u64>(),
        sctlr in prop_oneof![9 => Just(1u64), 1 => any::<u64>()],
        tcr in any_tcr(),
        ttbr0 in any_ttbr(),
        ttbr1 in any_ttbr(),
        va in any_va(),
    ) {
        check(seed, MmuConfig { sctlr, tcr, ttbr0, ttbr1 }, va)?;
    }
}

/// One mapped path per case: tables in RAM pages 1..=4 along the walk of `va`, then a block or
/// page whose output address has a random width, under a random IPS (address-size boundaries).
#[allow(clippy::too_many_arguments)] // one argument per generated parameter
fn check_chain(
    txsz: u64,
    upper: bool,
    va_low: u64,
    last: u32,
    oa_width: u32,
    oa_bits: u64,
    ips: u64,
    af: bool,
) -> Result<(), TestCaseError> {
    let bits = 64 - txsz as u32;
    let va = if upper {
        (va_low & ((1 << bits) - 1)) | !((1u64 << bits) - 1)
    } else {
        va_low & ((1 << bits) - 1)
    };
    let start = 4 - (bits - 12).div_ceil(9);
    let last = last.max(start.max(1));
    let mut buf = vec![0u8; PAGES * 4096];
    let mut ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut buf);
    let root = page(1);
    let mut table = root;
    for level in start..=last {
        let lo = 12 + 9 * (3 - level);
        let top = if level == start { bits } else { lo + 9 };
        let idx = (va >> lo) & ((1 << (top - lo)) - 1);
        let slot = GuestPhysAddr(table + idx * 8);
        let d = if level == last {
            let oa = oa_bits & ((1u64 << oa_width) - 1) & mask(47, lo);
            oa | if af { AF } else { 0 } | if level == 3 { 3 } else { 1 }
        } else {
            table = page(u64::from(level) + 2);
            table | 3
        };
        ram.write_u64(slot, d).unwrap();
    }
    let tcr = if upper {
        (txsz << 16) | (0b10 << 30)
    } else {
        txsz
    } | (ips << 32);
    let cfg = MmuConfig {
        sctlr: 1,
        tcr,
        ttbr0: root,
        ttbr1: root,
    };
    let fast = translate(&cfg, &ram, GuestVirtAddr(va), AccessKind::Data);
    let spec = reference(&cfg, &ram, va, AccessKind::Data);
    prop_assert_eq!(fast, spec, "cfg {:x?} va {:#x}", cfg, va);
    if af && oa_width <= 32 {
        prop_assert!(fast.is_ok(), "{:?}", fast);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn mapped_paths_match_reference(
        txsz in 16u64..=39,
        upper in any::<bool>(),
        va_low in any::<u64>(),
        last in 1u32..=3,
        oa_width in 30u32..=48,
        oa_bits in any::<u64>(),
        ips in 0u64..8,
        af in any::<bool>(),
    ) {
        check_chain(txsz, upper, va_low, last, oa_width, oa_bits, ips, af)?;
    }
}

/// The random tables reach every outcome: not a vacuous comparison.
#[test]
fn random_tables_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strat = (any::<u64>(), any_tcr(), any_ttbr(), any_ttbr(), any_va());
    let mut seen = std::collections::BTreeSet::new();
    let mut buf = vec![0u8; PAGES * 4096];
    for _ in 0..3000 {
        let (seed, tcr, ttbr0, ttbr1, va) = strat.new_tree(&mut runner).unwrap().current();
        fill(&mut buf, seed);
        let ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut buf);
        let cfg = MmuConfig {
            sctlr: 1,
            tcr,
            ttbr0,
            ttbr1,
        };
        let key = match translate(&cfg, &ram, GuestVirtAddr(va), AccessKind::Data) {
            Ok(t) => format!("ok {:?}", t.level),
            Err(WalkError::Translation { level }) => format!("translation {level}"),
            Err(WalkError::AddressSize { level }) => format!("address size {level}"),
            Err(WalkError::AccessFlag { level }) => format!("access flag {level}"),
            Err(e) => format!("{:?}", std::mem::discriminant(&e)),
        };
        seen.insert(key);
    }
    for want in [
        "ok Some(1)",
        "ok Some(2)",
        "ok Some(3)",
        "translation 0",
        "translation 1",
        "translation 2",
        "translation 3",
        "address size 0",
        "address size 1",
        "address size 2",
        "address size 3",
        "access flag 3",
    ] {
        assert!(seen.contains(want), "{want} never reached: {seen:?}");
    }
    assert!(seen.len() >= 17, "{seen:?}");
}

/// The EL1 permissions a translation carries (Arm ARM, stage 1 EL1&0 with hierarchical
/// permissions): AP[2] (bit 7) and APTable[1] (bit 62 of a table) forbid writes; PXN (bit 53)
/// and PXNTable (bit 59) forbid execution, and so does SCTLR_EL1.WXN (bit 19) for a writable
/// page; with the MMU off everything is allowed.
#[test]
fn el1_permissions() {
    let t = |desc: u64, table_limits: u64| Translation {
        gpa: GuestPhysAddr(0),
        level: Some(3),
        desc,
        table_limits,
    };
    let page = 0b11 | (1 << 10);
    assert!(t(page, 0).el1_writable());
    assert!(!t(page | (1 << 7), 0).el1_writable());
    assert!(!t(page, 1 << 62).el1_writable());
    // AP[1] (bit 6) only opens the page to EL0: EL1 still writes.
    assert!(t(page | (1 << 6), 0).el1_writable());
    assert!(t(page, 0).el1_executable(0));
    assert!(!t(page | (1 << 53), 0).el1_executable(0));
    assert!(!t(page, 1 << 59).el1_executable(0));
    // UXN (bit 54) is EL0's: EL1 may execute.
    assert!(t(page | (1 << 54), 0).el1_executable(0));
    let wxn = 1 << 19;
    assert!(!t(page, 0).el1_executable(wxn));
    assert!(t(page | (1 << 7), 0).el1_executable(wxn));
    let off = Translation {
        gpa: GuestPhysAddr(0),
        level: None,
        desc: 0,
        table_limits: 0,
    };
    assert!(off.el1_writable() && off.el1_executable(wxn));
}
