//! Linux arm64 loader: hand-built Image and DTB headers, error cases, a reference model of the
//! automatic layout, and properties (placements inside RAM, aligned, disjoint; no panic on any
//! bytes).

use proptest::prelude::*;
use vmm_core::addr::{GpaRange, GuestPhysAddr};
use vmm_core::loader::*;
use vmm_core::memory::{GuestMemory, GuestRam};
use vmm_core::vcpu::{SysReg, Vcpu, VcpuState};

const MIB: u64 = 1 << 20;

/// An Image of `file_len` bytes (at least 64) with the given header fields.
fn image(text_offset: u64, image_size: u64, flags: u64, file_len: usize) -> Vec<u8> {
    let mut v = vec![0u8; file_len.max(64)];
    v[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b #0x40 (as real kernels: code0)
    v[8..16].copy_from_slice(&text_offset.to_le_bytes());
    v[16..24].copy_from_slice(&image_size.to_le_bytes());
    v[24..32].copy_from_slice(&flags.to_le_bytes());
    v[56..60].copy_from_slice(b"ARM\x64");
    for (i, b) in v.iter_mut().enumerate().skip(64) {
        *b = (i % 251) as u8;
    }
    v
}

/// A minimal valid v17 DTB (one empty root node) padded to `pad` extra bytes.
fn fdt(pad: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let total = 72 + pad as u32;
    for w in [0xd00d_feedu32, total, 56, 72, 40, 17, 16, 0, 0, 16] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.extend_from_slice(&[0u8; 16]); // rsvmap terminator at 40
    for w in [1u32, 0, 2, 9] {
        // BEGIN_NODE "" END_NODE END at 56
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.resize(total as usize, 0);
    v
}

fn ram(base: u64, size: u64) -> GpaRange {
    GpaRange::new(GuestPhysAddr(base), size).unwrap()
}

#[test]
fn hand_built_header_parses() {
    let img = image(0x8_0000, 0x150_0000, 0b1010, 4096);
    let h = parse_image(&img).unwrap();
    assert_eq!(h.text_offset, 0x8_0000);
    assert_eq!(h.image_size, 0x150_0000);
    assert_eq!(h.effective_size, 0x150_0000);
    assert_eq!(h.flags, 0b1010);
    assert_eq!(h.page_size, PageSize::K4);
    assert_eq!(h.placement, PhysPlacement::Anywhere48Bit);
    assert!(!h.legacy);
    // Legacy header: image_size 0 → text_offset 0x80000, size = file length (text_offset field
    // ignored).
    let h = parse_image(&image(0x1234, 0, 0, 8192)).unwrap();
    assert_eq!(
        (h.text_offset, h.effective_size, h.legacy),
        (0x8_0000, 8192, true)
    );
    assert_eq!(h.page_size, PageSize::Unspecified);
    assert_eq!(h.placement, PhysPlacement::NearRamBase);
    // image_size smaller than the file: the file length wins.
    assert_eq!(
        parse_image(&image(0, 100, 0, 4096)).unwrap().effective_size,
        4096
    );
    assert_eq!(
        parse_image(&image(0, 0, 0b110, 64)).unwrap().page_size,
        PageSize::K64
    );
    assert_eq!(
        parse_image(&image(0, 1, 0b100, 64)).unwrap().page_size,
        PageSize::K16
    );
}

#[test]
fn bad_images() {
    assert_eq!(
        parse_image(&[0u8; 63]),
        Err(ImageError::Truncated { len: 63 })
    );
    let mut img = image(0, 0x1000, 0, 64);
    img[59] = 0x65;
    assert_eq!(parse_image(&img), Err(ImageError::BadMagic(0x654d_5241)));
    assert_eq!(
        parse_image(&image(0, 0x1000, 1, 64)),
        Err(ImageError::BigEndian)
    );
    assert_eq!(
        parse_image(&image(2, 0x1000, 0, 64)),
        Err(ImageError::MisalignedTextOffset(2))
    );
}

#[test]
fn fdt_header_checks() {
    let good = fdt(0);
    let h = parse_fdt(&good).unwrap();
    assert_eq!(
        (
            h.totalsize,
            h.off_dt_struct,
            h.off_dt_strings,
            h.off_mem_rsvmap
        ),
        (72, 56, 72, 40)
    );
    assert_eq!(
        (h.version, h.last_comp_version, h.size_dt_struct),
        (17, 16, 16)
    );
    // Trailing bytes beyond totalsize are allowed.
    let mut longer = good.clone();
    longer.extend_from_slice(&[0xff; 10]);
    assert_eq!(parse_fdt(&longer).unwrap().totalsize, 72);

    let set = |off: usize, v: u32| {
        let mut b = fdt(0);
        b[off..off + 4].copy_from_slice(&v.to_be_bytes());
        parse_fdt(&b)
    };
    assert_eq!(set(0, 0xedfe0dd0), Err(FdtError::BadMagic(0xedfe0dd0)));
    assert_eq!(
        set(20, 15),
        Err(FdtError::BadVersion {
            version: 15,
            last_comp_version: 16
        })
    );
    assert_eq!(
        set(24, 18),
        Err(FdtError::BadVersion {
            version: 17,
            last_comp_version: 18
        })
    );
    assert_eq!(
        set(4, 2 * 1024 * 1024 + 8),
        Err(FdtError::TooLarge(2 * 1024 * 1024 + 8))
    );
    // Exactly 2 MiB is the largest DTB there may be.
    let max = fdt(2 * 1024 * 1024 - 72);
    assert_eq!(parse_fdt(&max).map(|h| h.totalsize), Ok(2 * 1024 * 1024));
    assert_eq!(set(4, 200), Err(FdtError::Truncated { need: 200, len: 72 }));
    assert_eq!(set(4, 39), Err(FdtError::TooSmall(39)));
    assert_eq!(set(16, 44), Err(FdtError::BadBlock(FdtBlock::MemRsvmap))); // misaligned
    assert_eq!(set(16, 64), Err(FdtError::BadBlock(FdtBlock::MemRsvmap))); // 64 + 16 > 72
    assert_eq!(set(8, 70), Err(FdtError::BadBlock(FdtBlock::Struct)));
    assert_eq!(set(36, 20), Err(FdtError::BadBlock(FdtBlock::Struct))); // 56 + 20 > 72
    assert_eq!(set(12, 73), Err(FdtError::BadBlock(FdtBlock::Strings)));
    assert_eq!(set(32, 1), Err(FdtError::BadBlock(FdtBlock::Strings)));
    let mut b = fdt(0);
    b[8..12].copy_from_slice(&60u32.to_be_bytes());
    b[36..40].copy_from_slice(&12u32.to_be_bytes());
    assert_eq!(parse_fdt(&b), Err(FdtError::BadStructStart(0)));
    assert_eq!(set(44, 1), Err(FdtError::UnterminatedRsvmap)); // entry (1, 0) then runs out
    assert_eq!(
        parse_fdt(&good[..30]),
        Err(FdtError::Truncated { need: 32, len: 30 })
    );
    assert_eq!(
        parse_fdt(&good[..2]),
        Err(FdtError::Truncated { need: 4, len: 2 })
    );
    // last_comp_version 17 (a blob only v17 readers can read) is still one this parser reads,
    // and a newer version that stays readable as 16 or 17 is accepted too.
    assert_eq!(set(24, 17).map(|h| h.last_comp_version), Ok(17));
    assert_eq!(set(20, 18).map(|h| h.version), Ok(18));
    // Each of the three version rules refuses on its own.
    let versions = |version: u32, last_comp_version: u32| {
        let mut b = fdt(0);
        b[20..24].copy_from_slice(&version.to_be_bytes());
        b[24..28].copy_from_slice(&last_comp_version.to_be_bytes());
        parse_fdt(&b).map(|h| (h.version, h.last_comp_version))
    };
    let bad = |version, last_comp_version| {
        Err(FdtError::BadVersion {
            version,
            last_comp_version,
        })
    };
    assert_eq!(versions(15, 15), bad(15, 15)); // older than 16
    assert_eq!(versions(18, 18), bad(18, 18)); // needs a reader newer than 17
    assert_eq!(versions(16, 17), bad(16, 17)); // compatible with a newer version than itself
    assert_eq!(versions(17, 17), Ok((17, 17)));
    // Version 16 has a 36-byte header and no size_dt_struct.
    let v16 = set(20, 16).unwrap();
    assert_eq!((v16.version, v16.size_dt_struct), (16, 0));
}

#[test]
fn load_into_guest_ram() {
    let base = 0x4000_0000u64;
    let mut buf = vec![0u8; 16 * MIB as usize];
    let kernel = image(0x8_0000, 0x30_0000, 0b0010, 0x1_0000);
    let dtb = fdt(100);
    let initrd = vec![0xa5u8; 5000];
    let mut mem = GuestRam::new(GuestPhysAddr(base), &mut buf);
    let r = ram(base, 16 * MIB);
    let (layout, boot) = load(
        &mut mem,
        r,
        &kernel,
        &dtb,
        Some(&initrd),
        LayoutRequest::default(),
    )
    .unwrap();
    assert_eq!(layout.entry(), GuestPhysAddr(base + 0x8_0000));
    assert_eq!(layout.kernel, ram(base + 0x8_0000, 0x30_0000));
    // With an initrd the DTB written is the patched one: the 172-byte input (72 bytes of blob
    // and 100 of trailing free space) becomes header 40 + reservations 16 + structure 72 (a new
    // /chosen with linux,initrd-start/end) + strings 36 = 164 bytes.
    assert_eq!(layout.dtb, ram(base + 4 * MIB, 164));
    // The initrd fits the gap between the kernel end and the DTB's 2 MiB boundary.
    assert_eq!(layout.initrd, Some(ram(base + 0x38_0000, 5000)));
    let mut back = vec![0u8; kernel.len()];
    mem.read(layout.entry(), &mut back).unwrap();
    assert_eq!(back, kernel);
    let mut back = vec![0u8; 164];
    mem.read(layout.dtb.start(), &mut back).unwrap();
    let mut want = vec![0u8; 256];
    let (start, end) = (base + 0x38_0000, base + 0x38_0000 + 5000);
    let n = vmm_core::fdt_patch::patch(
        &dtb,
        &vmm_core::fdt_patch::ChosenPatch::initrd(start, end),
        &mut want,
    )
    .unwrap();
    assert_eq!(back, want[..n]);
    // The initrd-end value is the blob's last 8 bytes before END_NODE END_NODE END and the
    // strings.
    assert_eq!(back[164 - 36 - 20..164 - 36 - 12], end.to_be_bytes());
    let mut back = vec![0u8; 5000];
    mem.read(layout.initrd.unwrap().start(), &mut back).unwrap();
    assert_eq!(back, initrd);
    assert_eq!(
        boot,
        BootState {
            pc: base + 0x8_0000,
            x0: base + 4 * MIB,
            pstate: 0x3c5,
            sctlr_el1: BOOT_SCTLR_EL1
        }
    );

    // The boot state lands in a vCPU: x0 = DTB, x1..x3 = 0, PC, EL1h + DAIF, MMU off.
    let mut v = VcpuState {
        x: [0xdead; 31],
        ..Default::default()
    };
    v.set_sysreg(SysReg::SctlrEl1, 0x3050_0805).unwrap();
    boot.apply(&mut v).unwrap();
    assert_eq!(&v.x[..5], &[base + 4 * MIB, 0, 0, 0, 0xdead]);
    assert_eq!((v.pc, v.pstate), (base + 0x8_0000, 0x3c5));
    assert_eq!(v.sysreg(SysReg::SctlrEl1).unwrap() & 0b101, 0);
    assert_eq!(boot.vcpu_state().x[0], base + 4 * MIB);

    // Nothing is written when planning fails.
    let mut buf2 = vec![0u8; 2 * MIB as usize];
    let mut small = GuestRam::new(GuestPhysAddr(base), &mut buf2);
    let e = load(
        &mut small,
        ram(base, 2 * MIB),
        &kernel,
        &dtb,
        None,
        LayoutRequest::default(),
    );
    assert_eq!(
        e,
        Err(LoadError::Layout(LayoutError::OutsideRam(Blob::Kernel)))
    );
    assert!(buf2.iter().all(|&b| b == 0));
    // A RAM range that does not describe the memory is a typed error, not a panic.
    let mut buf3 = vec![0u8; 64];
    let mut tiny = GuestRam::new(GuestPhysAddr(base), &mut buf3);
    assert!(matches!(
        load(&mut tiny, r, &kernel, &dtb, None, LayoutRequest::default()),
        Err(LoadError::Mem(_))
    ));
}

#[test]
fn explicit_placements() {
    let h = parse_image(&image(0x8_0000, 0x30_0000, 0, 64)).unwrap();
    let r = ram(0x4000_0000, 64 * MIB);
    let at = |a: u64| Place::At(GuestPhysAddr(a));
    let req = |dtb, initrd| LayoutRequest { dtb, initrd };
    // DTB below the kernel (in the text_offset gap) is allowed.
    let l = plan(r, &h, 0x1000, None, req(at(0x4000_0000), Place::Auto)).unwrap();
    assert_eq!(l.dtb.start(), GuestPhysAddr(0x4000_0000));
    assert_eq!(
        plan(r, &h, 0x1000, None, req(at(0x4000_0004), Place::Auto)),
        Err(LayoutError::MisalignedDtb(GuestPhysAddr(0x4000_0004)))
    );
    assert_eq!(
        plan(r, &h, 0x1000, None, req(at(0x401f_f800), Place::Auto)),
        Err(LayoutError::DtbCrosses2M(GuestPhysAddr(0x401f_f800)))
    );
    assert_eq!(
        plan(r, &h, 0x1000, None, req(at(0x4010_0000), Place::Auto)),
        Err(LayoutError::Overlap(Blob::Kernel, Blob::Dtb))
    );
    assert_eq!(
        plan(r, &h, 0x1000, None, req(at(0x3fff_0000), Place::Auto)),
        Err(LayoutError::OutsideRam(Blob::Dtb))
    );
    assert_eq!(
        plan(r, &h, 0x20_0008, None, LayoutRequest::default()),
        Err(LayoutError::TooLarge(Blob::Dtb))
    );
    assert_eq!(
        plan(r, &h, 0x100, Some(0), LayoutRequest::default()),
        Err(LayoutError::Empty(Blob::Initrd))
    );
    // A fixed initrd is placed before an automatic DTB, which then goes after it.
    let l = plan(
        r,
        &h,
        0x100,
        Some(0x1000),
        req(Place::Auto, at(0x4040_0000)),
    )
    .unwrap();
    assert_eq!(l.initrd, Some(ram(0x4040_0000, 0x1000)));
    assert_eq!(l.dtb.start(), GuestPhysAddr(0x4060_0000));
    assert_eq!(
        plan(
            r,
            &h,
            0x100,
            Some(0x1000),
            req(at(0x4040_0000), at(0x4040_0080))
        ),
        Err(LayoutError::Overlap(Blob::Dtb, Blob::Initrd))
    );
    // Initrd beyond the 32 GiB window.
    let big = ram(0x4000_0000, 40 << 30);
    let far = 0x4000_0000 + (33u64 << 30);
    assert_eq!(
        plan(big, &h, 0x100, Some(0x1000), req(Place::Auto, at(far))),
        Err(LayoutError::InitrdWindow)
    );
    // Placement flag 1 needs the image below 2^48.
    let h48 = parse_image(&image(0, 0x1000, 0b1000, 64)).unwrap();
    let high = ram(1 << 48, 64 * MIB);
    assert_eq!(
        plan(high, &h48, 0x100, None, LayoutRequest::default()),
        Err(LayoutError::Beyond48Bit)
    );
    let hn = parse_image(&image(0, 0x1000, 0, 64)).unwrap();
    assert!(plan(high, &hn, 0x100, None, LayoutRequest::default()).is_ok());
    // RAM base not 2 MiB aligned: the kernel goes to the next boundary.
    let l = plan(
        ram(0x4010_0000, 64 * MIB),
        &h,
        0x100,
        None,
        LayoutRequest::default(),
    )
    .unwrap();
    assert_eq!(l.kernel.start(), GuestPhysAddr(0x4028_0000));
}

/// The initrd window is 1 GiB-aligned: its base is the kernel's or the initrd's start rounded down
/// to 1 GiB (not merely that start), and it spans less than 32 GiB, to the initrd's last byte.
#[test]
fn the_initrd_window_starts_at_a_1g_boundary() {
    const GIB: u64 = 1 << 30;
    let h = parse_image(&image(0, 0x1000, 0, 64)).unwrap();
    // The kernel at 0x8020_0000, 2 MiB above the 1 GiB boundary 0x8000_0000.
    let r = ram(0x8020_0000, 40 * GIB);
    let with_initrd_at = |a: u64| {
        let req = LayoutRequest {
            dtb: Place::Auto,
            initrd: Place::At(GuestPhysAddr(a)),
        };
        plan(r, &h, 0x100, Some(0x1000), req)
    };
    let lo = 0x8000_0000;
    // Last byte at lo + 32 GiB - 1: inside the window.
    let l = with_initrd_at(lo + 32 * GIB - 0x1000).unwrap();
    assert_eq!(l.kernel.start(), GuestPhysAddr(0x8020_0000));
    assert_eq!(l.initrd.unwrap().last(), GuestPhysAddr(lo + 32 * GIB - 1));
    // One byte further: 32 GiB from the boundary, though less from the kernel itself.
    assert_eq!(
        with_initrd_at(lo + 32 * GIB - 0xfff),
        Err(LayoutError::InitrdWindow)
    );
    assert_eq!(
        with_initrd_at(lo + 32 * GIB),
        Err(LayoutError::InitrdWindow)
    );
}

/// Reference model of automatic placement (both `Auto`): kernel at the first 2 MiB boundary of
/// RAM plus text_offset, DTB at the next 2 MiB boundary after the kernel, initrd 4 KiB-aligned
/// right after the kernel if it fits below the DTB, else 4 KiB-aligned after the DTB; `None` when
/// any of it leaves RAM.
fn model_auto(
    ram_base: u64,
    ram_size: u64,
    to: u64,
    ksize: u64,
    dtb: u64,
    initrd: Option<u64>,
) -> Option<(u64, u64, Option<u64>)> {
    let end = ram_base as u128 + ram_size as u128;
    let up = |v: u128, a: u128| v.div_ceil(a) * a;
    let k = up(ram_base as u128, 2 << 20) + to as u128;
    let kend = k + ksize as u128;
    let d = up(kend, 2 << 20);
    let dend = d + dtb as u128;
    if kend > end || dend > end {
        return None;
    }
    let i = match initrd {
        None => None,
        Some(n) => {
            let gap = up(kend, 4096);
            let i = if gap + n as u128 <= d {
                gap
            } else {
                up(dend, 4096)
            };
            if i + n as u128 > end || (i + n as u128 - 1) - (k & !((1 << 30) - 1)) >= 32 << 30 {
                return None;
            }
            Some(i as u64)
        }
    };
    Some((k as u64, d as u64, i))
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        2 => Just(Place::Auto),
        1 => (0x4000_0000u64..0x4400_0000).prop_map(|a| Place::At(GuestPhysAddr(a & !7))),
        1 => any::<u64>().prop_map(|a| Place::At(GuestPhysAddr(a))),
    ]
}

fn check_layout(
    l: &BootLayout,
    h: &ImageHeader,
    dtb_size: u64,
    initrd: Option<u64>,
) -> Result<(), TestCaseError> {
    let ram = l.ram;
    let inside = |r: &GpaRange| ram.contains(r.start()) && ram.contains(r.last());
    prop_assert!(inside(&l.kernel) && inside(&l.dtb));
    prop_assert_eq!((l.kernel.start().0 - h.text_offset) % (2 << 20), 0);
    prop_assert_eq!(l.kernel.size(), h.effective_size);
    prop_assert_eq!(l.dtb.size(), dtb_size);
    prop_assert_eq!(l.dtb.start().0 % 8, 0);
    prop_assert_eq!(l.dtb.start().0 >> 21, l.dtb.last().0 >> 21);
    prop_assert!(!l.kernel.overlaps(&l.dtb));
    prop_assert_eq!(l.initrd.map(|i| i.size()), initrd);
    if let Some(i) = l.initrd {
        prop_assert!(inside(&i));
        prop_assert!(!i.overlaps(&l.kernel) && !i.overlaps(&l.dtb));
        let lo = l.kernel.start().0.min(i.start().0) & !((1 << 30) - 1);
        prop_assert!(l.kernel.last().0.max(i.last().0) - lo < 32 << 30);
    }
    let b = l.boot_state();
    prop_assert_eq!(
        (b.pc, b.x0, b.pstate),
        (l.kernel.start().0, l.dtb.start().0, 0x3c5)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Any layout produced lies inside RAM, is aligned as booting.rst requires and has no
    /// overlap; with both placements automatic it is exactly the reference model's (and fails
    /// exactly when the model does).
    #[test]
    fn layouts_are_valid(
        ram_base in prop_oneof![3 => 0x4000_0000u64..0x4100_0000, 1 => any::<u64>()],
        ram_size in prop_oneof![3 => 1u64..(64 << 20), 1 => any::<u64>()],
        to in prop_oneof![2 => Just(0x8_0000u64), 2 => (0u64..(4 << 20)).prop_map(|t| t & !3), 1 => any::<u64>().prop_map(|t| t & !3)],
        isize in prop_oneof![3 => 1u64..(16 << 20), 1 => any::<u64>()],
        flags in 0u64..16,
        dtb_size in prop_oneof![3 => 1u64..=(1 << 20), 1 => any::<u64>()],
        initrd in proptest::option::of(prop_oneof![3 => 1u64..(4 << 20), 1 => any::<u64>()]),
        dtb_place in place(),
        initrd_place in place(),
    ) {
        let img = image(to, isize, flags & !1, 64);
        let h = parse_image(&img).unwrap();
        let Ok(r) = GpaRange::new(GuestPhysAddr(ram_base), ram_size) else { return Ok(()) };
        let req = LayoutRequest { dtb: dtb_place, initrd: initrd_place };
        let got = plan(r, &h, dtb_size, initrd, req);
        if let Ok(l) = &got {
            check_layout(l, &h, dtb_size, initrd)?;
            if let Place::At(a) = dtb_place { prop_assert_eq!(l.dtb.start(), a); }
            if let (Place::At(a), Some(i)) = (initrd_place, l.initrd) { prop_assert_eq!(i.start(), a); }
        }
        let fits_48 = h.placement == PhysPlacement::NearRamBase;
        if dtb_place == Place::Auto && initrd_place == Place::Auto && fits_48 && dtb_size <= 2 << 20 && initrd != Some(0) {
            let want = model_auto(ram_base, ram_size, h.text_offset, h.effective_size, dtb_size, initrd);
            let got = got.ok().map(|l| (l.kernel.start().0, l.dtb.start().0, l.initrd.map(|i| i.start().0)));
            prop_assert_eq!(got, want);
        }
    }

    /// Random bytes never make the parsers or the planner panic.
    #[test]
    fn random_bytes_never_panic(kernel in proptest::collection::vec(any::<u8>(), 0..200), dtb in proptest::collection::vec(any::<u8>(), 0..200), initrd in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))) {
        let _ = parse_image(&kernel);
        let _ = parse_fdt(&dtb);
        let _ = prepare(ram(0x4000_0000, 64 << 20), &kernel, &dtb, initrd.as_deref(), LayoutRequest::default());
    }

    /// Valid headers with random bytes overwritten: still never a panic, and whatever `load`
    /// accepts is a valid layout and its bytes are in guest RAM.
    #[test]
    fn mutated_headers_never_panic(edits in proptest::collection::vec((0usize..72, any::<u8>()), 0..8), kedits in proptest::collection::vec((0usize..64, any::<u8>()), 0..4)) {
        let mut dtb = fdt(0);
        for (i, b) in edits { dtb[i] = b; }
        let mut kernel = image(0x8_0000, 0x20_0000, 2, 128);
        for (i, b) in kedits { kernel[i] = b; }
        let base = 0x4000_0000u64;
        let mut buf = vec![0u8; (8 << 20) as usize];
        let mut mem = GuestRam::new(GuestPhysAddr(base), &mut buf);
        if let Ok((l, _)) = load(&mut mem, ram(base, 8 << 20), &kernel, &dtb, Some(&[1, 2, 3]), LayoutRequest::default()) {
            let h = parse_image(&kernel).unwrap();
            check_layout(&l, &h, l.dtb.size(), Some(3))?;
            let mut k = vec![0u8; kernel.len()];
            mem.read(l.kernel.start(), &mut k).unwrap();
            prop_assert_eq!(k, kernel);
        }
    }
}
