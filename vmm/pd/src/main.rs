//! Entry of the `vmm` protection domain (target only; the logic is in the library).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

// The `Vmm` (about 30 KiB) is built in place and attached to its queues by `&mut` steps: a
// chain of by-value builder steps cost a copy of it on the stack each.
#[cfg(target_os = "none")]
microkit_rt::protection_domain!(|k| {
    let mut vmm = vmm::Vmm::new(
        k,
        vmm::system::guest_ram_region(),
        vmm::system::guest_wp_page_region(),
        vmm::GuestBlobs::embedded(),
    );
    // The guest cannot run before this: the VMM outranks it and has not blocked yet.
    vmm.attach_serial_console(
        vmm::system::serial_tx_queue_vmm_region(),
        vmm::system::serial_tx_data_vmm_region(),
    );
    vmm.attach_serial_input(
        vmm::system::serial_rx_queue_vmm_region(),
        vmm::system::serial_rx_data_vmm_region(),
    );
    // The block driver outranks the VMM: its storage info is published by now.
    vmm.attach_block_device(
        vmm::system::blk_req_queue_vmm_region(),
        vmm::system::blk_resp_queue_vmm_region(),
        vmm::system::blk_storage_info_vmm_region(),
        vmm::system::blk_data_vmm_region(),
    );
    vmm
});

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("vmm is a seL4 protection domain: build it for aarch64-unknown-none");
}
