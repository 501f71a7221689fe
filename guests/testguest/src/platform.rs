//! Where the guest runs, found at run time from the test device's ID register (0x0a00_0100):
//!
//! - [`Platform::Vmm`]: it reads 0x7e57_de71 — the VMM emulates the test device.
//! - [`Platform::NullVmm`]: the load left its register untouched ([`LOAD_POISON`]) — the null
//!   VMM of the benchmark, which only steps over every trapping instruction.
//! - [`Platform::Native`]: it reads 0 and 0x0a00_0000 holds a virtio-mmio transport with no
//!   device behind it (magic "virt", DeviceID 0): QEMU virt without the VMM, where 0x0a00_0000
//!   is virtio-mmio slot 0 and reads of an empty transport's registers give 0 (no fault).
//!
//! Anything else counts as the VMM, so that a broken test device fails the VMM cases instead of
//! skipping them (and the VMM's console expectations forbid the native line).

use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

use crate::mmio::{LOAD_POISON, TESTDEV, testdev};
use crate::vectors::catch;
use crate::virtio;

/// Where the guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Under the VMM.
    Vmm,
    /// Under the null VMM (benchmark floor).
    NullVmm,
    /// On QEMU virt directly.
    Native,
}

static DETECTED: AtomicU8 = AtomicU8::new(0);

/// The platform (probed once).
pub fn detect() -> Platform {
    match DETECTED.load(Relaxed) {
        1 => return Platform::Vmm,
        2 => return Platform::NullVmm,
        3 => return Platform::Native,
        _ => {}
    }
    let (mut id, mut magic, mut dev) = (LOAD_POISON, LOAD_POISON, LOAD_POISON);
    let trap = catch(|| {
        id = TESTDEV.ldr_w(testdev::ID);
        if id == 0 {
            magic = TESTDEV.ldr_w(0x000);
            dev = TESTDEV.ldr_w(0x008);
        }
    });
    let p = match (trap, id) {
        (None, LOAD_POISON) => Platform::NullVmm,
        (None, 0) if magic == u64::from(virtio::MAGIC) && dev == 0 => Platform::Native,
        _ => Platform::Vmm,
    };
    DETECTED.store(
        match p {
            Platform::Vmm => 1,
            Platform::NullVmm => 2,
            Platform::Native => 3,
        },
        Relaxed,
    );
    p
}

/// Prints one line saying where the guest runs.
pub fn announce() {
    match detect() {
        Platform::Vmm => println!(
            "testguest: under the VMM (test device ID {:#x})",
            testdev::ID_VALUE
        ),
        Platform::NullVmm => {
            println!("testguest: under the null VMM (MMIO loads leave their register unchanged)")
        }
        Platform::Native => println!(
            "testguest: native run on QEMU virt (no VMM test device: 0xa000100 reads 0 and \
             0xa000000 is an empty virtio-mmio transport)"
        ),
    }
}
