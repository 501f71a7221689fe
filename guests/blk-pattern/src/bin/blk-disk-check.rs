//! `blk-disk-check <disk.img>`: checks a raw disk image after the test guest ran on it (natively
//! on QEMU's virtio-blk, or through the VMM): every byte the plan writes holds its pattern, and
//! every other byte — the named sentinel ranges among them, where the hostile writes point — is
//! still zero (the image must have started zeroed).
//!
//! Prints `disk-check: <n> extents, <bytes> bytes OK` and exits 0, or prints the first
//! mismatches (offset, expected, found, and what the byte belongs to) and a count, and exits 1.
//! Exit code 2: usage, an unreadable file, or an image smaller than the plan's disk.

use std::process::ExitCode;

use blk_pattern::{DISK_BYTES, EXTENTS, Mismatch, SENTINELS, check, describe};

/// Mismatches printed one by one before the rest are only counted.
const SHOWN: usize = 16;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: blk-disk-check <disk.img>");
        return ExitCode::from(2);
    };
    let img = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("disk-check: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    if (img.len() as u64) < DISK_BYTES {
        eprintln!(
            "disk-check: {path} holds {} bytes, less than the {DISK_BYTES} the plan is made for",
            img.len()
        );
        return ExitCode::from(2);
    }
    let mut shown = Vec::new();
    let bad = check(0, &img, |m: Mismatch| {
        if shown.len() < SHOWN {
            shown.push(m);
        }
    });
    if bad == 0 {
        let written: u64 = (0..DISK_BYTES)
            .step_by(512)
            .filter(|&o| blk_pattern::winner(o).is_some())
            .count() as u64
            * 512;
        println!(
            "disk-check: {} extents, {} bytes OK ({written} written with their pattern, the rest \
             zero, {} sentinel ranges among them)",
            EXTENTS.len(),
            img.len(),
            SENTINELS.len()
        );
        return ExitCode::SUCCESS;
    }
    for m in &shown {
        println!(
            "disk-check: MISMATCH at {:#010x} (sector {}, {}): expected {:#04x}, found {:#04x}",
            m.offset,
            m.offset / 512,
            describe(m.offset),
            m.expected,
            m.found
        );
    }
    println!(
        "disk-check: FAILED: {bad} of {} bytes differ from the plan ({} extents){}",
        img.len(),
        EXTENTS.len(),
        if bad as usize > shown.len() {
            format!("; the first {} shown", shown.len())
        } else {
            String::new()
        }
    );
    ExitCode::FAILURE
}
