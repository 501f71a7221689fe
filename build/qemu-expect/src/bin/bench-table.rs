//! `bench-table FULL_LOG NULL_LOG OUT [NATIVE_LOG]`: the exit-cost table of `make bench-qemu`
//! and the block-throughput table (the full VMM's run against the native run, when given),
//! printed and written to OUT (see `qemu_expect::bench`).
//!
//! `bench-table --native NATIVE_LOG OUT`: the block-throughput table of a native run alone
//! (`make bench-native`).

use std::process::ExitCode;

use qemu_expect::bench::{Run, blk_table, parse, table};

const BLK_INTRO: &str = "## Block throughput (virtio-blk, MB per virtual second)\n\n\
    Sequential 4 MiB written, then read, in 4 KiB and in 64 KiB requests, 4 in flight, \
    completions waited for in WFI (with `sleep=off` the host's I/O takes no virtual time: the \
    figures count the instructions spent per byte by the guest and, under seL4, by the VMM, \
    the kernel and the block driver domain). MB = 10^6 bytes; seconds = ticks / CNTFRQ. \
    Natively the guest drives QEMU's own virtio-blk-device directly.\n\n";

fn read(p: &str) -> Result<Run, String> {
    std::fs::read_to_string(p)
        .map(|t| parse(&t))
        .map_err(|e| format!("{p}: {e}"))
}

fn write(out: &str, text: &str) -> ExitCode {
    print!("{text}");
    if let Err(e) = std::fs::write(out, text) {
        eprintln!("bench-table: {out}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, native, out] = args.as_slice()
        && flag == "--native"
    {
        let native = match read(native) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bench-table: {e}");
                return ExitCode::FAILURE;
            }
        };
        if !native.blk.iter().any(|(_, t)| t.is_ok()) {
            eprintln!("bench-table: the native run has no block-throughput lines");
            return ExitCode::FAILURE;
        }
        return write(
            out,
            &format!("{BLK_INTRO}{}", blk_table(None, Some(&native))),
        );
    }
    let (full, null, out, native) = match args.as_slice() {
        [full, null, out] => (full, null, out, None),
        [full, null, out, native] => (full, null, out, Some(native)),
        _ => {
            eprintln!(
                "usage: bench-table FULL_LOG NULL_LOG OUT [NATIVE_LOG]\n       bench-table --native NATIVE_LOG OUT"
            );
            return ExitCode::from(2);
        }
    };
    let runs = (read(full), read(null), native.map(|n| read(n)).transpose());
    let (full, null, native) = match runs {
        (Ok(f), Ok(n), Ok(na)) => (f, n, na),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("bench-table: {e}");
            return ExitCode::FAILURE;
        }
    };
    if full.benches.is_empty() {
        eprintln!("bench-table: the full VMM run has no bench lines");
        return ExitCode::FAILURE;
    }
    let mut text = format!(
        "# Exit costs under QEMU -icount shift=0 (virtual time counts instructions)\n\n\
         Counter frequency {} Hz; averages over the iterations shown. The null VMM only moves \
         the guest's PC and replies: the floor of an exit.\n\n{}",
        full.cntfrq.unwrap_or(0),
        table(&full, &null)
    );
    if !full.blk.is_empty() || native.is_some() {
        text.push('\n');
        text.push_str(BLK_INTRO);
        text.push_str(&blk_table(Some(&full), native.as_ref()));
    }
    write(out, &text)
}
