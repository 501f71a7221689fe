//! Entry of the `vmm` protection domain (target only; the logic is in the library).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

// The `Vmm` (about 43 KiB) is a constant in the image (`Vmm::blank`), finished in place by
// `setup` and attached to its queues by `&mut` steps: the stack holds one event's frames, not
// the `Vmm` and the temporaries of its construction.
#[cfg(target_os = "none")]
microkit_rt::protection_domain!(
    static VMM: vmm::Vmm<microkit_rt::sel4::kernel::Sel4Kernel> = vmm::Vmm::blank(
        microkit_rt::sel4::kernel::Sel4Kernel::unpatched(),
        microkit_rt::sel4::kernel::Sel4Kernel::unpatched(),
    ),
    |k, vmm: &mut vmm::Vmm<_>| {
        vmm.setup(
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
        // net_virt outranks the VMM: the TX buffers are in its free queue by now.
        vmm.attach_net_device(
            vmm::mac_of_name(&microkit_rt::sel4::entry::raw_name()),
            [
                vmm::system::net_rx_free_vmm_region(),
                vmm::system::net_rx_active_vmm_region(),
                vmm::system::net_tx_free_vmm_region(),
                vmm::system::net_tx_active_vmm_region(),
            ],
            vmm::system::net_rx_data_vmm_region(),
            vmm::system::net_tx_data_vmm_region(),
        );
    }
);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("vmm is a seL4 protection domain: build it for aarch64-unknown-none");
}
