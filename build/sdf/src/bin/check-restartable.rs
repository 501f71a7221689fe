//! `check-restartable --system <system.xml> --elf-dir <dir>`: every child PD (a PD with a
//! parent, which its parent may restart from its entry point) must keep no state in its
//! program image's writable memory beyond the symbols the Microkit tool patches (see
//! `sdf::restartable`). Fails, naming each symbol or range, otherwise.

use std::path::PathBuf;

fn fail(msg: String) -> ! {
    eprintln!("check-restartable: {msg}");
    std::process::exit(1);
}

fn main() {
    let mut system = None;
    let mut elf_dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(format!("{a} needs a value")))
        };
        match a.as_str() {
            "--system" => system = Some(PathBuf::from(value())),
            "--elf-dir" => elf_dir = Some(PathBuf::from(value())),
            _ => fail(format!(
                "unknown argument {a}; usage: check-restartable --system <system.xml> --elf-dir <dir>"
            )),
        }
    }
    let system = system.unwrap_or_else(|| fail("--system <system.xml> is required".into()));
    let elf_dir = elf_dir.unwrap_or_else(|| fail("--elf-dir <dir> is required".into()));
    let sys = sdf::load(&system).unwrap_or_else(|e| fail(format!("{}: {e}", system.display())));
    let mut bad = false;
    for p in sys.pds.iter().filter(|p| p.parent.is_some()) {
        let path = elf_dir.join(&p.program_image);
        let elf = std::fs::read(&path)
            .unwrap_or_else(|e| fail(format!("cannot read {}: {e}", path.display())));
        let (sections, symbols) = sdf::restartable::writable_symbols(&elf)
            .unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
        let allowed = sdf::codegen::required_symbols(&sys, &p.name);
        let problems = sdf::restartable::check(&sections, &symbols, &allowed);
        let bytes: u64 = sections.iter().map(|s| s.size).sum();
        if problems.is_empty() {
            println!(
                "restartable: {}: {} writable bytes, {} symbols, all patched by the Microkit tool",
                p.name,
                bytes,
                symbols.len()
            );
        } else {
            bad = true;
            for pr in problems {
                eprintln!("check-restartable: {} ({}): {pr}", p.name, path.display());
            }
        }
    }
    if bad {
        std::process::exit(1);
    }
}
