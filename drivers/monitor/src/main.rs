//! Entry of the `driver_monitor` protection domain (target only; the logic is in the library).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
microkit_rt::protection_domain!(|k| driver_monitor::Monitor::new(
    k,
    driver_monitor::system_console(),
    driver_monitor::children(),
));

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("driver-monitor is a seL4 protection domain: build it for aarch64-unknown-none");
}
