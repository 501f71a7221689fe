//! `bench-table FULL_LOG NULL_LOG OUT`: the exit-cost table of `make bench-qemu`, printed and
//! written to OUT (see `qemu_expect::bench`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [full, null, out] = args.as_slice() else {
        eprintln!("usage: bench-table FULL_LOG NULL_LOG OUT");
        return ExitCode::from(2);
    };
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
    let (full, null) = match (read(full), read(null)) {
        (Ok(f), Ok(n)) => (qemu_expect::bench::parse(&f), qemu_expect::bench::parse(&n)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("bench-table: {e}");
            return ExitCode::FAILURE;
        }
    };
    if full.benches.is_empty() {
        eprintln!("bench-table: the full VMM run has no bench lines");
        return ExitCode::FAILURE;
    }
    let text = format!(
        "# Exit costs under QEMU -icount shift=0 (virtual time counts instructions)\n\n\
         Counter frequency {} Hz; averages over the iterations shown. The null VMM only moves \
         the guest's PC and replies: the floor of an exit.\n\n{}",
        full.cntfrq.unwrap_or(0),
        qemu_expect::bench::table(&full, &null)
    );
    print!("{text}");
    if let Err(e) = std::fs::write(out, &text) {
        eprintln!("bench-table: {out}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
