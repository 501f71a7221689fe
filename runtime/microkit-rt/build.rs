//! Selects the kernel configuration the protection domain is built for.
//!
//! Invocation labels (and whether DebugPutChar exists) differ between Microkit's debug and
//! release kernels, so every PD is built for exactly one configuration, taken from
//! `MICROKIT_CONFIG` (default `debug`, as the Makefile's default).

fn main() {
    println!("cargo::rerun-if-env-changed=MICROKIT_CONFIG");
    println!("cargo::rustc-check-cfg=cfg(microkit_config, values(\"debug\", \"release\"))");
    let config = std::env::var("MICROKIT_CONFIG").unwrap_or_else(|_| "debug".into());
    match config.as_str() {
        "debug" | "release" => println!("cargo::rustc-cfg=microkit_config=\"{config}\""),
        other => {
            eprintln!("MICROKIT_CONFIG={other} is not supported: use debug or release");
            std::process::exit(1);
        }
    }
}
