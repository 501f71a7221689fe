//! Entry of the `blk_virt` protection domain (target only; the logic is in the library).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

// The virtualiser's state (in-flight table, clients: about 7 KiB) is a constant of the image,
// set up in place: the stack holds one event's frames (system.xml: 16 KiB).
#[cfg(target_os = "none")]
microkit_rt::protection_domain!(
    static VIRT: blk_virt::BlkVirt<'static, microkit_rt::sel4::kernel::Sel4Kernel> =
        blk_virt::BlkVirt::blank(microkit_rt::sel4::kernel::Sel4Kernel::unpatched()),
    blk_virt::setup_from_system,
);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("blk-virt is a seL4 protection domain: build it for aarch64-unknown-none");
}
