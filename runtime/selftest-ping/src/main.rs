//! Entry of the `selftest_ping` protection domain (target only; the logic is in the library).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
microkit_rt::protection_domain!(|k| selftest_ping::Ping::new(
    k,
    selftest_ping::system::selftest_shared_region(),
    selftest_ping::system_console(),
));

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("selftest-ping is a seL4 protection domain: build it for aarch64-unknown-none");
}
