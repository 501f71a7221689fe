//! Entry of the `vmm` protection domain (target only; the logic is in the library).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
microkit_rt::protection_domain!(|k| vmm::Vmm::new(
    k,
    vmm::system::guest_ram_region(),
    vmm::system::guest_wp_page_region(),
    vmm::GuestBlobs::embedded(),
)
// The guest cannot run before this: the VMM outranks it and has not blocked yet.
.with_serial_console(
    vmm::system::serial_tx_queue_vmm_region(),
    vmm::system::serial_tx_data_vmm_region(),
));

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("vmm is a seL4 protection domain: build it for aarch64-unknown-none");
}
