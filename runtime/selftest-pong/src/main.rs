//! Entry of the `selftest_pong` protection domain (target only; the logic is in the library).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
microkit_rt::protection_domain!(|k| selftest_pong::Pong::new(
    k,
    selftest_pong::system::selftest_shared_region(),
    selftest_pong::system_console(),
));

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("selftest-pong is a seL4 protection domain: build it for aarch64-unknown-none");
}
