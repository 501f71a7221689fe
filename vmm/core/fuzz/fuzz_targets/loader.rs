//! Fuzz target for the Linux arm64 loader: Image header parsing, FDT header validation, layout
//! planning and loading, on arbitrary bytes. Beyond "no panic", every accepted layout is checked
//! against the booting.rst rules (inside RAM, aligned, disjoint) and every load against the bytes
//! it wrote (the DTB as given without an initrd, patched with the initrd's range with one).
//!
//! Input format: byte 0-1 split point between kernel and DTB bytes, bytes 2-9 RAM geometry and
//! placement choices, the rest the kernel file followed by the DTB; the last quarter of the DTB
//! part doubles as the initrd when byte 9 is odd.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::addr::{GpaRange, GuestPhysAddr};
use vmm_core::fdt_patch::{self, ChosenPatch};
use vmm_core::loader::{self, BootLayout, LayoutRequest, Place};
use vmm_core::memory::{GuestMemory, GuestRam};

/// RAM used for real loads (kept small so each run is cheap).
const LOAD_RAM: u64 = 4 << 20;
const LOAD_BASE: u64 = 0x4000_0000;

fn check(l: &BootLayout) {
    let inside = |r: &GpaRange| l.ram.contains(r.start()) && l.ram.contains(r.last());
    assert!(inside(&l.kernel) && inside(&l.dtb));
    assert_eq!(l.dtb.start().raw() % 8, 0);
    assert_eq!(l.dtb.start().raw() >> 21, l.dtb.last().raw() >> 21);
    assert!(l.dtb.size() <= 2 << 20);
    assert!(!l.kernel.overlaps(&l.dtb));
    if let Some(i) = l.initrd {
        assert!(inside(&i) && !i.overlaps(&l.kernel) && !i.overlaps(&l.dtb));
    }
    let b = l.boot_state();
    assert_eq!(
        (b.pc, b.x0, b.pstate),
        (l.kernel.start().raw(), l.dtb.start().raw(), 0x3c5)
    );
}

fn place(sel: u8, at: u64) -> Place {
    if sel & 1 == 0 {
        Place::Auto
    } else {
        Place::At(GuestPhysAddr(at))
    }
}

fn run(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<10>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes([head[0], head[1]])).min(rest.len());
    let (kernel, dtb) = rest.split_at(split);
    let initrd = (head[9] & 1 == 1).then(|| &dtb[dtb.len() - dtb.len() / 4..]);
    let req = LayoutRequest {
        dtb: place(
            head[8],
            LOAD_BASE + (u64::from(head[6]) << 16) + u64::from(head[2]),
        ),
        initrd: place(head[8] >> 1, LOAD_BASE + (u64::from(head[7]) << 16)),
    };

    let _ = loader::parse_image(kernel);
    let _ = loader::parse_fdt(dtb);

    // Planning over a fuzzed RAM geometry (no memory touched).
    let ram_base = u64::from_le_bytes([head[2], head[3], head[4], 0, 0, 0, 0, 0]) << 20;
    let ram_size = (u64::from(head[5]) + 1) << 21;
    if let (Ok(ram), Ok(image)) = (
        GpaRange::new(GuestPhysAddr(ram_base), ram_size),
        loader::parse_image(kernel),
    ) {
        let dtb_size = u64::from(u16::from_le_bytes([head[6], head[7]])) << 5;
        if let Ok(l) = loader::plan(ram, &image, dtb_size, initrd.map(|i| i.len() as u64), req) {
            check(&l);
        }
    }

    // A real load into a small guest RAM (allocated only when parsing and planning succeed).
    let ram = GpaRange::new(GuestPhysAddr(LOAD_BASE), LOAD_RAM).unwrap();
    if loader::prepare(ram, kernel, dtb, initrd, req).is_err() {
        return;
    }
    let mut buf = vec![0u8; LOAD_RAM as usize];
    let mut mem = GuestRam::new(GuestPhysAddr(LOAD_BASE), &mut buf);
    if let Ok((l, _)) = loader::load(&mut mem, ram, kernel, dtb, initrd, req) {
        check(&l);
        let mut back = vec![0u8; kernel.len()];
        mem.read(l.kernel.start(), &mut back).unwrap();
        assert_eq!(back, kernel);
        let mut back = vec![0u8; l.dtb.size() as usize];
        mem.read(l.dtb.start(), &mut back).unwrap();
        match l.initrd {
            // Without an initrd the DTB is copied unchanged.
            None => assert_eq!(&back[..], &dtb[..back.len()]),
            // With one it is the blob patched with the initrd's final range.
            Some(i) => {
                let p = ChosenPatch::initrd(i.start().raw(), i.last().raw() + 1);
                let mut want = vec![0u8; back.len()];
                assert_eq!(fdt_patch::patch(dtb, &p, &mut want), Ok(back.len()));
                assert_eq!(back, want);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| run(data));
