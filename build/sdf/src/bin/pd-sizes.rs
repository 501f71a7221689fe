//! `pd-sizes --system <system.xml> --elf-dir <dir> [--embedded <pd>=<file>]... [--out <md>]`:
//! each PD's memory (see `sdf::sizes`) as a Markdown table on stdout and in `--out`, checked
//! against the size goals (PASS/OVER; OVER does not fail). A file given with `--embedded` is
//! looked for, by content, in that PD's loadable segments (the VMM embeds its guest with
//! `include_bytes!`) and left out of the goal's figure. Fails on any unreadable or malformed
//! input: a missing ELF, a file that is not ELF64, a bad system description.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn fail(msg: String) -> ! {
    eprintln!("pd-sizes: {msg}");
    std::process::exit(1);
}

fn main() {
    let mut system = None;
    let mut elf_dir = None;
    let mut out = None;
    let mut embedded: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(format!("{a} needs a value")))
        };
        match a.as_str() {
            "--system" => system = Some(PathBuf::from(value())),
            "--elf-dir" => elf_dir = Some(PathBuf::from(value())),
            "--out" => out = Some(PathBuf::from(value())),
            "--embedded" => {
                let v = value();
                let Some((pd, file)) = v.split_once('=') else {
                    fail(format!("--embedded {v}: expected <pd>=<file>"))
                };
                let bytes = std::fs::read(file)
                    .unwrap_or_else(|e| fail(format!("cannot read {file}: {e}")));
                embedded
                    .entry(pd.to_string())
                    .or_default()
                    .push((file.to_string(), bytes));
            }
            _ => fail(format!(
                "unknown argument {a}; usage: pd-sizes --system <system.xml> --elf-dir <dir> \
                 [--embedded <pd>=<file>]... [--out <md>]"
            )),
        }
    }
    let system = system.unwrap_or_else(|| fail("--system <system.xml> is required".into()));
    let elf_dir = elf_dir.unwrap_or_else(|| fail("--elf-dir <dir> is required".into()));
    let sys = sdf::load(&system).unwrap_or_else(|e| fail(format!("{}: {e}", system.display())));
    for pd in embedded.keys() {
        if sys.pd(pd).is_none() {
            fail(format!("--embedded {pd}=...: no PD named '{pd}'"));
        }
    }
    let mut rows = vec![];
    for p in &sys.pds {
        let path = elf_dir.join(&p.program_image);
        let elf = std::fs::read(&path)
            .unwrap_or_else(|e| fail(format!("{}: {e} (run make build first)", path.display())));
        let files = embedded.get(&p.name).map(Vec::as_slice).unwrap_or(&[]);
        rows.push(sdf::sizes::account(&sys, &p.name, &elf, files).unwrap_or_else(|e| fail(e)));
    }
    let mut text = format!(
        "PD sizes of {} (ELFs in {}). Own total = the image's 4 KiB pages (segment by segment, \
         as the Microkit tool allocates them) without an embedded guest, plus the stack \
         (system.xml stack_size, default 0x2000) and the IPC buffer (1 page): what the goal is \
         checked on. Mapped regions are listed apart: shared with other PDs, device frames, \
         guest RAM, private.\n\n",
        system.display(),
        elf_dir.display()
    );
    text.push_str(&sdf::sizes::markdown(&rows));
    print!("{text}");
    if let Some(out) = out {
        if let Some(dir) = out.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&out, &text)
            .unwrap_or_else(|e| fail(format!("cannot write {}: {e}", out.display())));
    }
}
