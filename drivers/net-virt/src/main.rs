//! Entry of the `net_virt` protection domain (target only; the logic is in the library).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
microkit_rt::protection_domain!(net_virt::from_system);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("net-virt is a seL4 protection domain: build it for aarch64-unknown-none");
}
