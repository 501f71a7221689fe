//! `sdf-compose <system.xml> <overlay.xml> <out.xml>`: writes the system description `base`
//! with the overlay spliced in (see `sdf::overlay`), after parsing and validating the result.
//! The Makefile builds the boot tests' system with it (system.xml + system-test.xml).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, overlay, out] = args.as_slice() else {
        eprintln!("usage: sdf-compose <system.xml> <overlay.xml> <out.xml>");
        std::process::exit(2);
    };
    match sdf::overlay::load_composed(base.as_ref(), overlay.as_ref()) {
        Ok((text, _)) => {
            if let Some(dir) = std::path::Path::new(out).parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            // Written only when it changed: the PD crates' build scripts rerun on its mtime.
            let unchanged = std::fs::read_to_string(out).ok().as_deref() == Some(text.as_str());
            if !unchanged && let Err(e) = std::fs::write(out, text) {
                eprintln!("sdf-compose: cannot write {out}: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("sdf-compose: {base} + {overlay}: {e}");
            std::process::exit(1);
        }
    }
}
