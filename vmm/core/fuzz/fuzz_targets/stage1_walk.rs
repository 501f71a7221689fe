//! Stage-1 walk: random translation controls and VAs over guest RAM built from the input; the
//! walk never panics, and a successful translation keeps the page offset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::addr::{GuestPhysAddr, GuestVirtAddr};
use vmm_core::memory::GuestRam;
use vmm_core::stage1::{AccessKind, MmuConfig, translate};

const RAM_BASE: u64 = 0x4000_0000;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<48>() else {
        return;
    };
    let mut f = [0u64; 6];
    for (w, c) in f.iter_mut().zip(head.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        *w = u64::from_le_bytes(b);
    }
    let [sctlr, tcr, ttbr0, ttbr1, va, flags] = f;
    // Usually point the TTBRs into the RAM (keeping the ASID bits), else use them raw.
    let into_ram = |t: u64, bit: u64| {
        if flags & bit == 0 {
            (t & 0xffff_0000_0000_0fff) | (RAM_BASE + (t & 0xf000))
        } else {
            t
        }
    };
    let cfg = MmuConfig {
        sctlr: sctlr | u64::from(flags & 4 == 0),
        tcr,
        ttbr0: into_ram(ttbr0, 1),
        ttbr1: into_ram(ttbr1, 2),
    };
    let mut bytes = rest.to_vec();
    let ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut bytes);
    for kind in [AccessKind::Fetch, AccessKind::Data] {
        if let Ok(t) = translate(&cfg, &ram, GuestVirtAddr(va), kind) {
            assert_eq!(t.gpa.raw() & 0xfff, va & 0xfff);
            if let Some(l) = t.level {
                assert!((1..=3).contains(&l));
            }
        }
    }
});
