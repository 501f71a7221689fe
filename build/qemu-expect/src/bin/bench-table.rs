//! `bench-table FULL_LOG NULL_LOG OUT [NATIVE_LOG]`: the exit-cost table of `make bench-qemu`
//! and the block-throughput table (the full VMM's run against the native run, when given),
//! printed and written to OUT (see `qemu_expect::bench`).
//!
//! `bench-table --native NATIVE_LOG OUT`: the block-throughput table of a native run alone
//! (`make bench-native`).

use std::process::ExitCode;

use qemu_expect::bench::{Run, blk_table, ipi_table, parse, table};

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
    // FULL FLOOR NULL OUT [NATIVE] (FLOOR may be "-": no floor run).
    let (full, floor, null, out, native) = match args.as_slice() {
        [full, floor, null, out] => (full, floor, null, out, None),
        [full, floor, null, out, native] => (full, floor, null, out, Some(native)),
        _ => {
            eprintln!(
                "usage: bench-table FULL_LOG FLOOR_LOG|- NULL_LOG OUT [NATIVE_LOG]\n       bench-table --native NATIVE_LOG OUT"
            );
            return ExitCode::from(2);
        }
    };
    let floor = (floor != "-").then_some(floor);
    let runs = (
        read(full),
        floor.map(|f| read(f)).transpose(),
        read(null),
        native.map(|n| read(n)).transpose(),
    );
    let (full, floor, null, native) = match runs {
        (Ok(f), Ok(fl), Ok(n), Ok(na)) => (f, fl, n, na),
        (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
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
         Counter frequency {} Hz (1 tick = 16 instructions); averages over the iterations \
         shown. The floor VMM does the least a correct MMIO emulation does on seL4 (ReadRegisters \
         of the prefix up to the transfer register, WriteRegisters of the result and the PC, \
         reply); the null VMM only moves the guest's PC and replies.\n\n{}",
        full.cntfrq.unwrap_or(0),
        table(&full, floor.as_ref(), &null)
    );
    if let Some(ipi) = ipi_table(&full, native.as_ref()) {
        text.push_str(
            "\n## IPI: an SGI from one vCPU to another and back\n\n\
             Both vCPUs share one physical core: each round trip is CPU 0's GICD_SGIR write, its \
             WFI (parked), CPU 1 resumed with the ping in its list registers, its handler's SGIR \
             write (CPU 0 woken), its EOI (maintenance) and WFI, CPU 0 taking the pong. Natively \
             QEMU runs both CPUs round-robin in one thread under `-icount`.\n\n",
        );
        text.push_str(&ipi);
    }
    if !full.blk.is_empty() || native.is_some() {
        text.push('\n');
        text.push_str(BLK_INTRO);
        text.push_str(&blk_table(Some(&full), native.as_ref()));
    }
    write(out, &text)
}
