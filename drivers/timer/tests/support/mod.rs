//! What the timer driver's tests share: the repository's system.xml, the systems
//! `sdf::multivm` derives from it, and the client table the build script would generate.

#![allow(dead_code)]

use microkit_rt::Channel;
use timer_driver::ClientConfig;

/// The repository's system.xml.
pub fn repo_system_text() -> String {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = sdf::codegen::find_system_xml(here).expect("system.xml above the crate");
    std::fs::read_to_string(path).expect("reads system.xml")
}

/// system.xml with `n` VMMs (`vmm`, `vmm2`, ...), as `make test-multivm` generates it.
pub fn multivm(n: usize) -> sdf::System {
    let names: Vec<String> = (1..=n)
        .map(|i| {
            if i == 1 {
                "vmm".to_string()
            } else {
                format!("vmm{i}")
            }
        })
        .collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let text = sdf::multivm::generate(&repo_system_text(), &refs).expect("generates");
    sdf::parse(&text).expect("parses")
}

/// The client table the driver's build script would generate for `sys`.
pub fn table(sys: &sdf::System) -> &'static [ClientConfig] {
    let t: Vec<ClientConfig> = sdf::timer::clients(sys, "timer_driver")
        .unwrap()
        .into_iter()
        .map(|c| ClientConfig {
            name: Box::leak(c.name.into_boxed_str()),
            channel: Channel::new(c.channel as u8),
            calls: c.calls,
        })
        .collect();
    Box::leak(t.into_boxed_slice())
}
