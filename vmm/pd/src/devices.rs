//! The devices the VMM emulates for the guest, and the [`Platform`] glue that routes the handler
//! tree's ranges to them: the PL011 console (bytes go to the VMM's console), the test device
//! (scratch store, ID, the WRITE-page counter), the write-protected RAM page, and the vGIC
//! distributor (delivery through the kernel's list registers).

use microkit_rt::{Channel, Child, Kernel, KernelError};
use sddf_queue::serial::SerialProducer;

/// The channel to the serial driver's TX queue.
pub const SERIAL_TX: Channel = crate::system::SERIAL_DRIVER_1;
use vmm_core::classify::{Platform, PlatformError, SysRegResult};
use vmm_core::mmio::BusError;
use vmm_core::syndrome::SysRegTrap;
use vmm_core::vgic::{self, IrqInjector, Vgic};

/// What a handler-tree range stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceId {
    /// PL011 UART (guest console).
    Console,
    /// The test device.
    TestDev,
    /// The write-protected RAM page (WRITE kind).
    WriteProtected,
    /// The GICv2 distributor.
    Gicd,
}

/// Guest-visible addresses of the virtual platform (QEMU virt's layout).
pub mod layout {
    /// Guest RAM.
    pub const RAM_BASE: u64 = 0x4000_0000;
    /// PL011 UART.
    pub const PL011_BASE: u64 = 0x0900_0000;
    /// Size of the PL011's range.
    pub const PL011_SIZE: u64 = 0x1000;
    /// The test device.
    pub const TESTDEV_BASE: u64 = 0x0a00_0000;
    /// Size of the test device's range.
    pub const TESTDEV_SIZE: u64 = 0x1000;
    /// The write-protected RAM page.
    pub const WP_PAGE: u64 = 0x5000_0000;
}

/// PL011 register offsets the console model implements.
mod pl011 {
    pub const DR: u64 = 0x000;
    pub const FR: u64 = 0x018;
    /// TX FIFO empty | RX FIFO empty: never busy, nothing to read.
    pub const FR_IDLE: u64 = 0x90;
    /// Peripheral and PrimeCell ID bytes at 0xfe0..0xffc (PL011 r1p5, as QEMU's).
    pub const ID: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
}

/// The guest console: a PL011 whose bytes go to the serial driver domain through its TX queue
/// (published at each newline, the driver notified when the queue protocol asks for it), or,
/// without the queue, to the kernel's debug console one line at a time.
pub struct Console {
    line: heapless::Vec<u8, 256>,
    /// Plain registers the guest may program (CR, IBRD, FBRD, LCR_H, IMSC, ...), by word offset.
    regs: [u32; 32],
    /// The serial driver's TX queue, when system.xml maps it.
    tx: Option<SerialProducer<'static>>,
    /// Bytes dropped because the TX queue was full or corrupted by the driver.
    pub dropped: u64,
}

impl Default for Console {
    fn default() -> Self {
        Console {
            line: heapless::Vec::new(),
            regs: [0; 32],
            tx: None,
            dropped: 0,
        }
    }
}

impl Console {
    /// Sends the console's bytes to the serial driver through `tx` from now on.
    pub fn attach_serial(&mut self, mut tx: SerialProducer<'static>) {
        // sDDF: the consumer signals the producer only when asked; nothing is asked yet.
        tx.cancel_signal();
        self.tx = Some(tx);
    }

    /// Writes the VMM's own message bytes: through the serial driver when attached (published
    /// at each newline), else straight to the kernel's debug console.
    pub fn write_vmm<K: Kernel>(&mut self, k: &mut K, bytes: &[u8]) {
        if self.tx.is_some() {
            for &b in bytes {
                self.put(k, b);
            }
        } else {
            k.debug_write(bytes);
        }
    }

    fn put<K: Kernel>(&mut self, k: &mut K, b: u8) {
        if let Some(tx) = self.tx.as_mut() {
            if tx.enqueue_local(b).is_err() {
                self.dropped = self.dropped.saturating_add(1);
            }
            if b == b'\n' {
                tx.publish();
                if tx.take_notify() {
                    let _ = k.notify(SERIAL_TX);
                }
            }
            return;
        }
        if b == b'\n' || self.line.push(b).is_err() {
            k.debug_write(&self.line);
            k.debug_write(b"\n");
            self.line.clear();
            if b != b'\n' {
                let _ = self.line.push(b);
            }
        }
    }
    fn read(&self, offset: u64) -> u64 {
        match offset {
            pl011::FR => pl011::FR_IDLE,
            0xfe0..=0xffc => pl011::ID
                .get(((offset - 0xfe0) / 4) as usize)
                .copied()
                .unwrap_or(0) as u64,
            o if o < 0x80 => self.regs.get((o / 4) as usize).copied().unwrap_or(0) as u64,
            _ => 0,
        }
    }
    fn write<K: Kernel>(&mut self, k: &mut K, offset: u64, value: u64) {
        match offset {
            pl011::DR => self.put(k, value as u8),
            o if o < 0x80 => {
                if let Some(r) = self.regs.get_mut((o / 4) as usize) {
                    *r = value as u32;
                }
            }
            _ => {}
        }
    }
}

/// Test-device register offsets.
pub mod testdev {
    /// 256-byte scratch store.
    pub const SCRATCH: u64 = 0x000;
    /// Read-only identification value.
    pub const ID: u64 = 0x100;
    /// Its value.
    pub const ID_VALUE: u64 = 0x7e57_de71;
    /// Count of writes the WRITE handler saw.
    pub const WP_WRITES: u64 = 0x108;
    /// With the `broken-handler` feature, a read here is a VMM-internal error.
    pub const BROKEN: u64 = 0x1f8;
}

/// The test device the test guest drives.
pub struct TestDev {
    scratch: [u8; 256],
    /// Writes to the write-protected page seen so far.
    pub wp_writes: u64,
}

impl Default for TestDev {
    fn default() -> Self {
        TestDev {
            scratch: [0; 256],
            wp_writes: 0,
        }
    }
}

impl TestDev {
    fn read(&self, offset: u64, size: u8) -> Result<u64, BusError> {
        match offset {
            o if o < 0x100 => {
                let o = o as usize;
                let src = self
                    .scratch
                    .get(o..o + size as usize)
                    .ok_or(BusError::Refused)?;
                let mut b = [0u8; 8];
                b.get_mut(..src.len())
                    .ok_or(BusError::Refused)?
                    .copy_from_slice(src);
                Ok(u64::from_le_bytes(b))
            }
            testdev::ID if size == 4 => Ok(testdev::ID_VALUE),
            testdev::WP_WRITES if size == 8 => Ok(self.wp_writes),
            testdev::BROKEN if cfg!(feature = "broken-handler") => Err(BusError::Internal),
            _ => Err(BusError::Refused),
        }
    }
    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), BusError> {
        let o = offset as usize;
        let dst = self
            .scratch
            .get_mut(o..o + size as usize)
            .ok_or(BusError::Refused)?;
        let bytes = value.to_le_bytes();
        dst.copy_from_slice(bytes.get(..dst.len()).ok_or(BusError::Refused)?);
        Ok(())
    }
}

/// Number of GICv2 list registers on the virtual CPU interface (GIC-400 in QEMU virt).
pub const LIST_REGISTERS: u8 = 4;

/// The vGIC's way to the kernel: list registers and virtual-PPI acknowledgement.
pub struct KernelInjector<K: Kernel> {
    /// The kernel.
    pub k: K,
    /// Kernel invocations made.
    pub calls: u32,
}

fn inject_err(e: KernelError) -> vgic::InjectError {
    match e {
        KernelError::Sel4(c) => vgic::InjectError::Kernel(c),
        _ => vgic::InjectError::Kernel(u64::MAX),
    }
}

impl<K: Kernel> IrqInjector for KernelInjector<K> {
    fn inject(
        &mut self,
        vcpu_id: usize,
        virq: u32,
        priority: u8,
        group: u8,
        lr: u8,
    ) -> Result<(), vgic::InjectError> {
        let child = Child::try_new(vcpu_id as u64).ok_or(vgic::InjectError::Kernel(u64::MAX))?;
        self.calls += 1;
        // A GICv2 list register holds the top five bits of the 8-bit GICD priority; seL4 takes
        // that 5-bit value (0..=31) and refuses anything larger with a range error.
        self.k
            .vcpu_inject_irq(child, virq as u16, priority >> 3, group, lr)
            .map_err(inject_err)
    }
    fn list_register_count(&self) -> u8 {
        LIST_REGISTERS
    }
    fn ack_vppi(&mut self, vcpu_id: usize, irq: u32) -> Result<(), vgic::InjectError> {
        let child = Child::try_new(vcpu_id as u64).ok_or(vgic::InjectError::Kernel(u64::MAX))?;
        self.calls += 1;
        self.k.vcpu_ack_vppi(child, irq as u64).map_err(inject_err)
    }
}

/// Every device of the VM.
#[derive(Default)]
pub struct Devices {
    /// Guest console.
    pub console: Console,
    /// Test device.
    pub testdev: TestDev,
}

/// The exit path's view of the devices during one exit.
pub struct PlatformCtx<'a, K: Kernel> {
    /// Devices.
    pub devices: &'a mut Devices,
    /// The vGIC.
    pub vgic: &'a mut Vgic,
    /// Kernel access for the console and the vGIC.
    pub inj: KernelInjector<K>,
    /// Index of the vCPU whose exit this is.
    pub vcpu: usize,
}

/// Error codes of [`PlatformError`].
pub mod platform_error {
    /// The vGIC refused an operation.
    pub const VGIC: u32 = 1;
    /// The deliberately broken handler.
    pub const BROKEN: u32 = 2;
}

impl<K: Kernel> PlatformCtx<'_, K> {
    fn vgic_result(
        &mut self,
        what: &str,
        r: Result<(), vgic::VgicError>,
    ) -> Result<(), PlatformError> {
        r.map_err(|e| {
            microkit_rt::debug_println!(self.inj.k, "vmm: vGIC {} failed: {:?}", what, e);
            PlatformError(platform_error::VGIC)
        })
    }
}

impl<K: Kernel> Platform<DeviceId> for PlatformCtx<'_, K> {
    fn mmio_read(&mut self, h: &DeviceId, offset: u64, size: u8) -> Result<u64, BusError> {
        match h {
            DeviceId::Console => Ok(self.devices.console.read(offset)),
            DeviceId::TestDev => self.devices.testdev.read(offset, size),
            DeviceId::Gicd => self
                .vgic
                .mmio_read(self.vcpu, offset, size)
                .map(u64::from)
                .map_err(|_| BusError::Refused),
            DeviceId::WriteProtected => Err(BusError::Refused),
        }
    }
    fn mmio_write(
        &mut self,
        h: &DeviceId,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<(), BusError> {
        match h {
            DeviceId::Console => {
                self.devices.console.write(&mut self.inj.k, offset, value);
                Ok(())
            }
            DeviceId::TestDev => self.devices.testdev.write(offset, size, value),
            DeviceId::Gicd => self
                .vgic
                .mmio_write(&mut self.inj, self.vcpu, offset, size, value as u32)
                .map_err(|_| BusError::Refused),
            DeviceId::WriteProtected => Err(BusError::Refused),
        }
    }
    fn protected_write(
        &mut self,
        h: &DeviceId,
        _offset: u64,
        _size: u8,
        _value: u64,
    ) -> Result<bool, BusError> {
        match h {
            DeviceId::WriteProtected => {
                self.devices.testdev.wp_writes = self.devices.testdev.wp_writes.saturating_add(1);
                Ok(true)
            }
            _ => Err(BusError::Refused),
        }
    }
    fn sysreg(&mut self, _trap: &SysRegTrap, _value: Option<u64>) -> SysRegResult {
        SysRegResult::Unimplemented
    }
    fn vgic_maintenance(&mut self, lr: Option<u8>) -> Result<(), PlatformError> {
        let r = self
            .vgic
            .maintenance(&mut self.inj, self.vcpu, lr)
            .map(|_| ());
        self.vgic_result("maintenance", r)
    }
    fn virtual_ppi(&mut self, irq: u32) -> Result<(), PlatformError> {
        let r = self.vgic.ppi_event(&mut self.inj, self.vcpu, irq);
        self.vgic_result("virtual PPI", r)
    }
}
