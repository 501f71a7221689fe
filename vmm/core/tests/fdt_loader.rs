//! The loader with the DTB patcher: with an initrd, the DTB in guest RAM carries the initrd's
//! final guest-physical start and end in `/chosen` (read back through the `fdt` crate as oracle),
//! the DTB range is exactly the patched blob and nothing beyond it is written; without an initrd
//! the DTB is copied unchanged; a DTB that cannot be patched is a typed error and nothing is
//! written.

mod fdt_support;

use fdt_support::*;
use proptest::prelude::*;
use vmm_core::addr::{GpaRange, GuestPhysAddr};
use vmm_core::fdt_patch::{self, ChosenPatch, PatchError};
use vmm_core::loader::*;
use vmm_core::memory::{GuestMemory, GuestRam};

const MIB: u64 = 1 << 20;
const BASE: u64 = 0x4000_0000;
/// What guest RAM is filled with before a load, to see every byte written.
const FILL: u8 = 0xcd;

/// An Image with the given `image_size` and file length.
fn image(image_size: u64, file_len: usize) -> Vec<u8> {
    let mut v = vec![0x11u8; file_len.max(64)];
    v[8..16].copy_from_slice(&0x8_0000u64.to_le_bytes());
    v[16..24].copy_from_slice(&image_size.to_le_bytes());
    v[24..32].copy_from_slice(&0b1010u64.to_le_bytes());
    v[56..60].copy_from_slice(b"ARM\x64");
    v
}

fn ram(base: u64, size: u64) -> GpaRange {
    GpaRange::new(GuestPhysAddr(base), size).unwrap()
}

/// A small DTB with a /chosen holding old (one-cell) initrd properties.
fn small_dtb() -> Vec<u8> {
    use Tok::*;
    Raw::new(vec![
        Begin(String::new()),
        Prop("model".into(), b"t\0".to_vec()),
        Begin("chosen".into()),
        Prop("bootargs".into(), b"console=ttyAMA0\0".to_vec()),
        Prop(START.into(), vec![0, 0, 0x10, 0]),
        Prop(END_PROP.into(), vec![0, 0, 0x20, 0]),
        EndNode,
        EndNode,
        End,
    ])
    .build()
}

/// Reads the DTB the layout says was written.
fn read_dtb(mem: &GuestRam<'_>, l: &BootLayout) -> Vec<u8> {
    let mut b = vec![0u8; l.dtb.size() as usize];
    mem.read(l.dtb.start(), &mut b).unwrap();
    b
}

/// Checks the loaded DTB against the input and the layout's initrd.
fn check_loaded(input: &[u8], mem: &GuestRam<'_>, l: &BootLayout) {
    let got = read_dtb(mem, l);
    let i = l.initrd.unwrap();
    let (s, e) = (i.start().raw(), i.last().raw() + 1);
    check_patched(input, &oracle_tree(input), &got, Some((s, e)), None);
    assert_eq!(
        l.dtb.size() as usize,
        fdt_patch::patched_size(input, &ChosenPatch::initrd(0, 0)).unwrap()
    );
    // Nothing after the DTB was touched (up to the next blob or 4 KiB).
    let mut after = vec![0u8; 4096];
    let next = l.dtb.last().raw() + 1;
    if mem.read(GuestPhysAddr(next), &mut after).is_ok() {
        let touched_by_initrd = i.start().raw() < next + 4096 && i.start().raw() >= next;
        if !touched_by_initrd {
            assert!(after.iter().all(|&b| b == FILL));
        }
    }
}

#[test]
fn initrd_addresses_land_in_the_guest_dtb() {
    let kernel = image(0x30_0000, 0x1_0000);
    let dtb = small_dtb();
    let initrd = vec![0xa5u8; 5000];
    let mut buf = vec![FILL; 16 * MIB as usize];
    let mut mem = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
    let (l, boot) = load(
        &mut mem,
        ram(BASE, 16 * MIB),
        &kernel,
        &dtb,
        Some(&initrd),
        LayoutRequest::default(),
    )
    .unwrap();
    assert_eq!(l.initrd, Some(ram(BASE + 0x38_0000, 5000)));
    assert_eq!(boot.x0, l.dtb.start().raw());
    check_loaded(&dtb, &mem, &l);
    let got = read_dtb(&mem, &l);
    let f = fdt::Fdt::new(&got).unwrap();
    let c = f.find_node("/chosen").unwrap();
    let get = |n: &str| c.property(n).unwrap().value.to_vec();
    assert_eq!(get(START), (BASE + 0x38_0000).to_be_bytes());
    assert_eq!(get(END_PROP), (BASE + 0x38_0000 + 5000).to_be_bytes());
    assert_eq!(
        c.property("bootargs").unwrap().as_str(),
        Some("console=ttyAMA0")
    );
    // The initrd and kernel are intact.
    let mut back = vec![0u8; 5000];
    mem.read(l.initrd.unwrap().start(), &mut back).unwrap();
    assert_eq!(back, initrd);
    let mut back = vec![0u8; kernel.len()];
    mem.read(l.kernel.start(), &mut back).unwrap();
    assert_eq!(back, kernel);
}

#[test]
fn platform_dtb_with_initrds_before_and_after_the_dtb() {
    let dtb = platform_dtb();
    // The Debian kernel's geometry (guests/linux/README.md: image_size 0x2010000) with its
    // initramfs size (placed between kernel and DTB) and with a 3 MiB one (placed after the DTB).
    let kernel = image(0x201_0000, 4096);
    for initrd_len in [986_600usize, 3 << 20] {
        let initrd = vec![0x77u8; initrd_len];
        let mut buf = vec![FILL; 64 * MIB as usize];
        let mut mem = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
        let (l, _) = load(
            &mut mem,
            ram(BASE, 64 * MIB),
            &kernel,
            &dtb,
            Some(&initrd),
            LayoutRequest::default(),
        )
        .unwrap();
        check_loaded(&dtb, &mem, &l);
        println!("platform dtb: {:?}", l);
    }
}

#[test]
fn without_initrd_the_dtb_is_copied_unchanged() {
    let kernel = image(0x30_0000, 0x1000);
    let mut dtb = small_dtb();
    dtb.extend_from_slice(&[0xff; 8]); // bytes after totalsize are not copied
    let mut buf = vec![FILL; 16 * MIB as usize];
    let mut mem = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
    let (l, _) = load(
        &mut mem,
        ram(BASE, 16 * MIB),
        &kernel,
        &dtb,
        None,
        LayoutRequest::default(),
    )
    .unwrap();
    assert_eq!(l.dtb.size() as usize, dtb.len() - 8);
    assert_eq!(read_dtb(&mem, &l), dtb[..dtb.len() - 8]);
    // A structure block the patcher refuses still loads without an initrd, as before.
    let bad = Raw::new(vec![Tok::Begin(String::new()), Tok::Word(7)]).build();
    let (l, _) = load(
        &mut mem,
        ram(BASE, 16 * MIB),
        &kernel,
        &bad,
        None,
        LayoutRequest::default(),
    )
    .unwrap();
    assert_eq!(read_dtb(&mem, &l), bad);
}

#[test]
fn unpatchable_dtb_with_initrd_is_a_typed_error_and_nothing_is_written() {
    let kernel = image(0x30_0000, 0x1000);
    let bad = Raw::new(vec![Tok::Begin(String::new()), Tok::Word(7)]).build();
    let mut buf = vec![FILL; 16 * MIB as usize];
    let mut mem = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
    let r = load(
        &mut mem,
        ram(BASE, 16 * MIB),
        &kernel,
        &bad,
        Some(&[1, 2, 3]),
        LayoutRequest::default(),
    );
    assert_eq!(
        r,
        Err(LoadError::Patch(PatchError::BadToken {
            offset: 64,
            token: 7
        }))
    );
    assert_eq!(
        prepare(
            ram(BASE, 16 * MIB),
            &kernel,
            &bad,
            Some(&[1, 2, 3]),
            LayoutRequest::default()
        ),
        Err(LoadError::Patch(PatchError::BadToken {
            offset: 64,
            token: 7
        }))
    );
    // A DTB that would exceed 2 MiB once patched.
    let big = Raw::new(vec![
        Tok::Begin(String::new()),
        Tok::Prop("pad".into(), vec![0; (2 << 20) - 120]),
        Tok::EndNode,
        Tok::End,
    ])
    .build();
    let r = load(
        &mut mem,
        ram(BASE, 16 * MIB),
        &kernel,
        &big,
        Some(&[1, 2, 3]),
        LayoutRequest::default(),
    );
    assert!(matches!(
        r,
        Err(LoadError::Patch(PatchError::TooLarge { .. }))
    ));
    assert!(buf.iter().all(|&b| b == FILL));
}

#[test]
fn explicit_places_and_the_2m_boundary() {
    let kernel = image(0x30_0000, 0x1000);
    let dtb = small_dtb();
    let size = fdt_patch::patched_size(&dtb, &ChosenPatch::initrd(0, 0)).unwrap() as u64;
    assert!(size > dtb.len() as u64);
    let r = ram(BASE, 16 * MIB);
    let mut buf = vec![FILL; 16 * MIB as usize];
    let mut mem = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
    let req = |dtb_at: u64, initrd_at: u64| LayoutRequest {
        dtb: Place::At(GuestPhysAddr(dtb_at)),
        initrd: Place::At(GuestPhysAddr(initrd_at)),
    };
    // The original DTB would fit below the 2 MiB boundary here; the patched one does not, and
    // the layout is planned for the patched size.
    let tight = BASE + 4 * MIB - (dtb.len() as u64).div_ceil(8) * 8;
    assert_eq!(
        load(
            &mut mem,
            r,
            &kernel,
            &dtb,
            Some(&[9; 100]),
            req(tight, BASE + 8 * MIB)
        ),
        Err(LoadError::Layout(LayoutError::DtbCrosses2M(GuestPhysAddr(
            tight
        ))))
    );
    assert!(load(&mut mem, r, &kernel, &dtb, None, req(tight, BASE + 8 * MIB)).is_ok());
    let (l, _) = load(
        &mut mem,
        r,
        &kernel,
        &dtb,
        Some(&[9; 100]),
        req(BASE + 6 * MIB + 8, BASE + 8 * MIB + 0x123),
    )
    .unwrap();
    assert_eq!(l.dtb, ram(BASE + 6 * MIB + 8, size));
    check_loaded(&dtb, &mem, &l);
    let got = read_dtb(&mem, &l);
    let f = fdt::Fdt::new(&got).unwrap();
    let c = f.find_node("/chosen").unwrap();
    assert_eq!(
        c.property(START).unwrap().as_usize(),
        Some((BASE + 8 * MIB + 0x123) as usize)
    );
    assert_eq!(
        c.property(END_PROP).unwrap().as_usize(),
        Some((BASE + 8 * MIB + 0x123 + 100) as usize)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random trees (vm-fdt) loaded with random initrds and kernel sizes: the DTB in guest RAM is
    /// the patched one with the layout's initrd range, the DTB range is its exact size, and
    /// kernel and initrd are intact.
    #[test]
    fn random_trees_loaded(
        root in root(),
        ksize in 0x1000u64..(6 << 20),
        initrd_len in 1usize..(3 << 20),
        dtb_at in proptest::option::of((0u64..14).prop_map(|m| BASE + (m << 20) + 0x1000)),
    ) {
        let dtb = vm_fdt_build(&root, &[], 0);
        let kernel = image(ksize, 4096);
        let initrd: Vec<u8> = (0..initrd_len).map(|i| (i % 253) as u8).collect();
        let mut buf = vec![FILL; 16 * MIB as usize];
        let mut mem = GuestRam::new(GuestPhysAddr(BASE), &mut buf);
        let req = LayoutRequest {
            dtb: dtb_at.map_or(Place::Auto, |a| Place::At(GuestPhysAddr(a))),
            initrd: Place::Auto,
        };
        match load(&mut mem, ram(BASE, 16 * MIB), &kernel, &dtb, Some(&initrd), req) {
            Ok((l, _)) => {
                check_loaded(&dtb, &mem, &l);
                let mut back = vec![0u8; initrd_len];
                mem.read(l.initrd.unwrap().start(), &mut back).unwrap();
                prop_assert!(back == initrd);
                let mut back = vec![0u8; kernel.len()];
                mem.read(l.kernel.start(), &mut back).unwrap();
                prop_assert!(back == kernel);
            }
            Err(e) => {
                prop_assert!(matches!(e, LoadError::Layout(_)), "{:?}", e);
                prop_assert!(buf.iter().all(|&b| b == FILL));
            }
        }
    }
}
