//! The guest's virtio-mmio devices and their links to the driver domains: virtio-blk over the
//! block driver's queues ([`crate::blk_backend`]), virtio-net over the network virtualiser's
//! queues ([`crate::net_backend`]) and virtio-console over the serial driver's queues (through
//! the guest console, [`crate::devices::Console`]).
//!
//! Owns the glue between `vmm-devices`' models and the VMM: which SPI each device raises, how a
//! device's [`IrqAction`] becomes a pending interrupt in the vGIC, and the console link — a
//! small mailbox the virtio-console model writes into and reads from, emptied into (and filled
//! from) the serial queues after each device call, so that the PL011, the virtio console and the
//! VMM's own messages share one TX queue without sharing ownership of it.

use heapless::Deque;
use vmm_devices::console::ConsoleBackend;
use vmm_devices::mmio::IrqAction;

/// Guest-visible placement (QEMU virt's last virtio-mmio transports, so a guest driver written
/// for QEMU virt finds the devices where QEMU puts its own).
pub mod layout {
    /// virtio-blk register window (QEMU virt transport 31).
    pub const BLK_BASE: u64 = 0x0a00_3e00;
    /// virtio-console register window (transport 30).
    pub const CONSOLE_BASE: u64 = 0x0a00_3c00;
    /// virtio-net register window (transport 29).
    pub const NET_BASE: u64 = 0x0a00_3a00;
    /// Size of a virtio-mmio window.
    pub const WINDOW: u64 = 0x200;
    /// virtio-blk's interrupt: SPI 47 (edge), as QEMU virt's transport 31.
    pub const BLK_IRQ: u32 = 79;
    /// virtio-console's interrupt: SPI 46 (edge).
    pub const CONSOLE_IRQ: u32 = 78;
    /// virtio-net's interrupt: SPI 45 (edge), as QEMU virt's transport 29.
    pub const NET_IRQ: u32 = 77;
}

/// Bytes the link holds in each direction.
pub const LINK_BYTES: usize = 256;

/// The virtio console's backend: bytes to send wait in `out` until the VMM moves them to the
/// serial TX queue; received bytes wait in `input` until the model copies them to the guest.
#[derive(Default)]
pub struct ConsoleLink {
    out: Deque<u8, LINK_BYTES>,
    input: Deque<u8, LINK_BYTES>,
    /// A write found `out` full: the model has a chain half sent and wants `TxReady`.
    stalled: bool,
}

impl ConsoleLink {
    /// Takes the bytes waiting to be sent; returns whether the model was stalled on them (it
    /// must be given `TxReady` once they are gone).
    pub fn drain_out(&mut self, mut sink: impl FnMut(u8)) -> bool {
        while let Some(b) = self.out.pop_front() {
            sink(b);
        }
        core::mem::take(&mut self.stalled)
    }

    /// Room for received bytes.
    pub fn input_room(&self) -> usize {
        LINK_BYTES - self.input.len()
    }

    /// Queues one received byte; `false` if there is no room.
    pub fn push_input(&mut self, b: u8) -> bool {
        self.input.push_back(b).is_ok()
    }

    /// Received bytes the guest has not taken yet.
    pub fn input_len(&self) -> usize {
        self.input.len()
    }
}

impl ConsoleBackend for ConsoleLink {
    fn write(&mut self, bytes: &[u8]) -> usize {
        let mut n = 0;
        for &b in bytes {
            if self.out.push_back(b).is_err() {
                self.stalled = true;
                break;
            }
            n += 1;
        }
        n
    }

    fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        for d in buf.iter_mut() {
            match self.input.pop_front() {
                Some(b) => *d = b,
                None => break,
            }
            n += 1;
        }
        n
    }
}

/// Whether an [`IrqAction`] asks for the device's interrupt.
pub fn raises(a: IrqAction) -> bool {
    a == IrqAction::Raise
}
