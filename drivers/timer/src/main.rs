//! Entry of the `timer_driver` protection domain (target only; the logic is in the library).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
microkit_rt::protection_domain!(timer_driver::from_system);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("timer-driver is a seL4 protection domain: build it for aarch64-unknown-none");
}
