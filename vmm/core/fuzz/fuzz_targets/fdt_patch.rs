//! Fuzz target for the `/chosen` patcher: arbitrary blobs, and arbitrary structure and strings
//! blocks behind a valid header (so the fuzzer spends its time in the token walk, not on the
//! header). Beyond "no panic": whatever is accepted passes `parse_fdt`, has the size the dry run
//! gave, keeps the version fields and boot CPU, carries the initrd start under its name, and is a
//! fixed point (patching it again changes nothing).
//!
//! Input format: byte 0 flags (bit 0 initrd, bit 1 bootargs, bit 2 wrap the rest in a generated
//! header, bit 3 version 16 when wrapped), bytes 1-16 initrd start and end (big-endian), byte 17
//! picks the bootargs, bytes 18-19 the strings-block length when wrapped; the rest is the blob (or
//! strings block then structure block).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::fdt_patch::{self, ChosenPatch};
use vmm_core::loader::parse_fdt;

const BOOTARGS: [&str; 4] = ["", "console=ttyAMA0 rdinit=/init", "a\0b", "x"];

/// A valid canonical header in front of `strings` and `st`.
fn wrap(strings: &[u8], st: &[u8], v16: bool) -> Vec<u8> {
    let mut v = vec![0u8; 56]; // header 40, empty reservation map at 40
    let st_off = 56u32;
    v.extend_from_slice(st);
    let str_off = v.len() as u32;
    v.extend_from_slice(strings);
    let version = if v16 { 16 } else { 17 };
    let words = [
        0xd00d_feed,
        v.len() as u32,
        st_off,
        str_off,
        40,
        version,
        16,
        0,
        strings.len() as u32,
        if v16 { 0 } else { st.len() as u32 },
    ];
    for (i, w) in words.iter().enumerate() {
        v[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
    }
    v
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}

fn run(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<20>() else {
        return;
    };
    let flags = head[0];
    let start = u64::from_be_bytes(head[1..9].try_into().unwrap());
    let end = u64::from_be_bytes(head[9..17].try_into().unwrap());
    let p = ChosenPatch {
        initrd: (flags & 1 != 0).then_some((start, end)),
        bootargs: (flags & 2 != 0).then_some(BOOTARGS[usize::from(head[17]) % BOOTARGS.len()]),
    };
    let wrapped;
    let dtb = if flags & 4 != 0 {
        let n = usize::from(u16::from_le_bytes([head[18], head[19]])) % (rest.len() + 1);
        wrapped = wrap(&rest[..n], &rest[n..], flags & 8 != 0);
        &wrapped[..]
    } else {
        rest
    };

    // The output can be larger than the input plus the new properties when the input's blocks
    // overlap: the buffer is sized by the dry run, and one byte less must be refused.
    let n = match fdt_patch::patched_size(dtb, &p) {
        Ok(n) => n,
        Err(e) => {
            let mut out = vec![0u8; dtb.len() + 4096];
            assert_eq!(fdt_patch::patch(dtb, &p, &mut out), Err(e));
            return;
        }
    };
    let mut short = vec![0u8; n - 1];
    assert_eq!(
        fdt_patch::patch(dtb, &p, &mut short),
        Err(fdt_patch::PatchError::OutputTooSmall {
            need: n,
            len: n - 1
        })
    );
    let mut out = vec![0u8; n];
    assert_eq!(fdt_patch::patch(dtb, &p, &mut out), Ok(n));
    let out = &out[..];
    let h = parse_fdt(out).expect("the output is a valid blob");
    let h_in = parse_fdt(dtb).unwrap();
    assert_eq!(h.totalsize as usize, n);
    assert!(n <= 2 << 20);
    assert_eq!(
        (h.version, h.last_comp_version, h.boot_cpuid_phys),
        (h_in.version, h_in.last_comp_version, h_in.boot_cpuid_phys)
    );
    if let Some((s, _)) = p.initrd {
        // A PROP of 8 bytes named linux,initrd-start holding the start.
        let st = h.off_dt_struct as usize;
        let strings = &out[h.off_dt_strings as usize..n];
        let found = (st..h.off_dt_strings as usize).step_by(4).any(|i| {
            i + 20 <= n
                && be32(out, i) == 3
                && be32(out, i + 4) == 8
                && out[i + 12..i + 20] == s.to_be_bytes()
                && strings
                    .get(be32(out, i + 8) as usize..)
                    .is_some_and(|t| t.starts_with(b"linux,initrd-start\0"))
        });
        assert!(found, "no linux,initrd-start in the output");
    }
    let mut again = vec![0u8; n];
    assert_eq!(fdt_patch::patch(out, &p, &mut again), Ok(n));
    assert_eq!(&again[..n], out, "patching the output again changed it");
}

fuzz_target!(|data: &[u8]| run(data));
