//! `sdf-multivm <system.xml> <out.xml> <vm>...`: writes the system description of the VMs `vm...`
//! side by side (the first must be `vmm`, system.xml's own), generated from system.xml (see
//! `sdf::multivm`), after parsing and validating the result. `make test-multivm` uses it.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, out, vms @ ..] = args.as_slice() else {
        eprintln!("usage: sdf-multivm <system.xml> <out.xml> <vm>...");
        std::process::exit(2);
    };
    let text = match std::fs::read_to_string(base) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sdf-multivm: cannot read {base}: {e}");
            std::process::exit(1);
        }
    };
    let vms: Vec<&str> = vms.iter().map(String::as_str).collect();
    match sdf::multivm::generate(&text, &vms) {
        Ok(text) => {
            if let Some(dir) = std::path::Path::new(out).parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            // Written only when it changed: the PD crates' build scripts rerun on its mtime.
            let unchanged = std::fs::read_to_string(out).ok().as_deref() == Some(text.as_str());
            if !unchanged && let Err(e) = std::fs::write(out, text) {
                eprintln!("sdf-multivm: cannot write {out}: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("sdf-multivm: {base}: {e}");
            std::process::exit(1);
        }
    }
}
