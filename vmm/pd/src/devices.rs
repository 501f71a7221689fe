//! The devices the VMM emulates for the guest, and the [`Platform`] glue that routes the handler
//! tree's ranges to them: the PL011 console (bytes go to the serial driver domain, input comes
//! from it), the test device (scratch store, ID, the WRITE-page counter), the write-protected RAM
//! page, the vGIC distributor (delivery through the kernel's list registers), and the virtio-mmio
//! block and console devices ([`crate::virtio`]).

use heapless::Deque;
use microkit_rt::{Channel, Child, Kernel, KernelError};
use sddf_queue::serial::{SerialConsumer, SerialProducer};
use vmm_devices::blk::BlkDevice;
use vmm_devices::console::{ConsoleConfig, ConsoleDevice, ConsoleEvent, RECEIVEQ};
use vmm_devices::mmio::{DeviceState, MmioTransport};

use crate::blk_backend::QueueBackend;
use crate::guest_memory::View;
use crate::net_backend::NetQueues;
use crate::virtio::{self, ConsoleLink};
use vmm_devices::net::{NetDevice, NetEvent};

/// The channel to the serial driver's TX queue.
pub const SERIAL_TX: Channel = crate::system::SERIAL_DRIVER_1;
/// The channel of the serial driver's RX queue.
pub const SERIAL_RX: Channel = crate::system::SERIAL_DRIVER_2;
/// The channel to the block virtualiser (the block driver behind it).
pub const BLK: Channel = crate::system::BLK_VIRT;
/// The channel to the network virtualiser.
pub const NET: Channel = crate::system::NET_VIRT;
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
    /// The virtio-blk device.
    VirtioBlk,
    /// The virtio-console device.
    VirtioConsole,
    /// The virtio-net device.
    VirtioNet,
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
    /// The PL011's interrupt: SPI 1 (level), as on QEMU virt.
    pub const PL011_IRQ: u32 = 33;
}

/// PL011 register offsets the console model implements.
mod pl011 {
    pub const DR: u64 = 0x000;
    pub const FR: u64 = 0x018;
    pub const IMSC: u64 = 0x038;
    pub const RIS: u64 = 0x03c;
    pub const MIS: u64 = 0x040;
    pub const ICR: u64 = 0x044;
    /// FR: TX FIFO empty (the model sends at once: never busy).
    pub const FR_TXFE: u64 = 1 << 7;
    /// FR: RX FIFO full.
    pub const FR_RXFF: u64 = 1 << 6;
    /// FR: RX FIFO empty.
    pub const FR_RXFE: u64 = 1 << 4;
    /// Interrupt bits: receive, transmit, receive timeout.
    pub const INT_RX: u32 = 1 << 4;
    pub const INT_TX: u32 = 1 << 5;
    pub const INT_RT: u32 = 1 << 6;
    /// Depth of the RX FIFO (PL011 r1p5: 32 entries).
    pub const RX_FIFO: usize = 32;
    /// Peripheral and PrimeCell ID bytes at 0xfe0..0xffc (PL011 r1p5, as QEMU's).
    pub const ID: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
}

/// The guest console: a PL011 whose bytes go to the serial driver domain through its TX queue
/// (published at each newline, and a partial line, such as a shell prompt, at the next exit
/// that is not a console write or notification: [`Console::flush`]; the driver notified when the
/// queue protocol asks for it), or, without the queue, to the kernel's debug console one line
/// at a time. The VMM's own lines never tear the guest's: one written while a guest line is
/// open goes on a line of its own, and the open guest line is shown again after it. Input comes from the
/// serial driver's RX queue into a 32-byte RX FIFO; the interrupt line (SPI 1, level) follows
/// RIS & IMSC, with the TX interrupt always asserted (the transmit FIFO is always empty).
pub struct Console {
    line: heapless::Vec<u8, 256>,
    /// Bytes enqueued on the TX queue and not yet published.
    unpublished: bool,
    /// The guest's open line (bytes since its last newline), shown again after a VMM line;
    /// `None` once it outgrew the buffer (then it is not shown again).
    guest_line: Option<heapless::Vec<u8, GUEST_LINE_MAX>>,
    /// The VMM's own line is being written (its newline not yet).
    vmm_mid_line: bool,
    /// Input follows output: it goes to the console the guest wrote to last (the one a shell
    /// prompts on), the PL011 until the guest writes to its virtio console.
    pub input_to: InputTo,
    /// Plain registers the guest may program (CR, IBRD, FBRD, LCR_H, ...), by word offset.
    regs: [u32; 32],
    imsc: u32,
    rx_fifo: Deque<u8, { pl011::RX_FIFO }>,
    /// The serial driver's TX queue, when system.xml maps it.
    tx: Option<SerialProducer<'static>>,
    /// The serial driver's RX queue, when system.xml maps it.
    rx: Option<SerialConsumer<'static>>,
    /// The interrupt line's level the vGIC last saw.
    line_high: bool,
    /// FR reads since the guest last wrote DR (saturating): a guest that reads FR again and
    /// again without writing polls for input ([`Console::polling`]).
    fr_reads: u8,
    /// Bytes dropped because the TX queue was full or corrupted by the driver.
    pub dropped: u64,
    /// Times the driver corrupted the RX queue.
    pub rx_errors: u64,
    /// The VMM's own lines written before the TX queue was attached (they went to the debug
    /// console): replayed into the queue at attach when the kernel has no debug console.
    early: heapless::Vec<u8, EARLY_MAX>,
    /// Fault injection: [`CRASH_COMMAND`] as it arrives.
    crash: CommandMatch,
    /// Fault injection: times the command came (a host build counts instead of crashing).
    pub crashes_due: u64,
    /// Fault injection: [`PROBE_COMMAND`] as it arrives.
    probe: CommandMatch,
    /// Fault injection: the probe command came and the probe is not sent yet.
    probe_due: bool,
}

/// FR reads without a DR write that make a guest a poller for input ([`Console::polling`]).
pub const POLL_READS: u8 = 3;

/// The console input that crashes a VMM built with the `fault-injection` feature (the two-VM
/// test shows that the other VM runs on).
pub const CRASH_COMMAND: &[u8] = b"@@crash-vmm@@";

/// The console input that makes a VMM built with the `fault-injection` feature ask the block
/// virtualiser for the first block beyond its VM's disk (a VMM gone wrong reaching for another
/// VM's partition: the two-VM test shows that the virtualiser refuses it).
pub const PROBE_COMMAND: &[u8] = b"@@probe-beyond@@";

/// Matches a command in a byte stream.
#[derive(Debug, Clone, Copy)]
struct CommandMatch {
    command: &'static [u8],
    at: usize,
}

impl CommandMatch {
    const fn new(command: &'static [u8]) -> Self {
        CommandMatch { command, at: 0 }
    }

    /// Feeds one byte; true when the command is complete.
    fn feed(&mut self, b: u8) -> bool {
        if self.command.get(self.at) == Some(&b) {
            self.at += 1;
        } else {
            self.at = usize::from(self.command.first() == Some(&b));
        }
        if self.at == self.command.len() {
            self.at = 0;
            return true;
        }
        false
    }
}

/// The crash itself: a wild load on the target (the kernel stops the VMM with a VM fault, which
/// the Microkit monitor reports), nothing on the host (the count shows it).
#[cfg(all(
    feature = "fault-injection",
    target_arch = "aarch64",
    target_os = "none"
))]
fn crash_now() {
    microkit_rt::sel4::fault_injection::wild_load();
}

#[cfg(not(all(
    feature = "fault-injection",
    target_arch = "aarch64",
    target_os = "none"
)))]
fn crash_now() {}

/// Which of the guest's consoles takes the input typed on the UART.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputTo {
    /// The PL011 (`/dev/ttyAMA0`): the default.
    Pl011,
    /// The virtio console (`/dev/hvc0`), once its receive queue is ready.
    Virtio,
}

/// Bytes of the VMM's own output kept from before the serial TX queue is attached.
pub const EARLY_MAX: usize = 1024;
/// Longest open guest line the console can show again after a VMM line.
pub const GUEST_LINE_MAX: usize = 128;

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Console {
    /// A console at reset, with no queue attached.
    pub const fn new() -> Self {
        Console {
            line: heapless::Vec::new(),
            unpublished: false,
            guest_line: Some(heapless::Vec::new()),
            vmm_mid_line: false,
            input_to: InputTo::Pl011,
            regs: [0; 32],
            imsc: 0,
            rx_fifo: Deque::new(),
            tx: None,
            rx: None,
            line_high: false,
            fr_reads: 0,
            dropped: 0,
            rx_errors: 0,
            early: heapless::Vec::new(),
            crash: CommandMatch::new(CRASH_COMMAND),
            crashes_due: 0,
            probe: CommandMatch::new(PROBE_COMMAND),
            probe_due: false,
        }
    }
}

impl Console {
    /// Sends the console's bytes to the serial driver through `tx` from now on. The VMM's own
    /// lines from before go into the queue first when the kernel has no debug console (a
    /// release kernel: nobody saw them); whole lines only, as many as [`EARLY_MAX`] kept.
    pub fn attach_serial<K: Kernel>(&mut self, k: &mut K, mut tx: SerialProducer<'static>) {
        // sDDF: the consumer signals the producer only when asked; nothing is asked yet.
        tx.cancel_signal();
        self.tx = Some(tx);
        let early = core::mem::take(&mut self.early);
        if !k.has_debug_console() {
            let whole = early.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            self.write_vmm(k, &early[..whole]);
        }
    }

    /// Takes input from the serial driver's RX queue from now on.
    pub fn attach_input(&mut self, rx: SerialConsumer<'static>) {
        self.rx = Some(rx);
    }

    /// Whether the RX queue is attached.
    pub fn has_input(&self) -> bool {
        self.rx.is_some()
    }

    /// Moves up to `room` bytes of input from the RX queue to `sink`; notifies the driver when
    /// the queue protocol asks for it (it waits for space). Returns how many bytes moved. With
    /// the `fault-injection` feature, input that brings [`CRASH_COMMAND`] crashes the VMM.
    pub fn take_input<K: Kernel>(
        &mut self,
        k: &mut K,
        room: usize,
        mut sink: impl FnMut(u8),
    ) -> usize {
        let Some(rx) = self.rx.as_mut() else { return 0 };
        let mut n = 0;
        while n < room {
            match rx.dequeue_local() {
                Ok(Some(b)) => {
                    if cfg!(feature = "fault-injection") && self.crash.feed(b) {
                        self.crashes_due = self.crashes_due.saturating_add(1);
                        crash_now();
                    }
                    if cfg!(feature = "fault-injection") && self.probe.feed(b) {
                        self.probe_due = true;
                    }
                    sink(b)
                }
                Ok(None) => break,
                Err(_) => {
                    self.rx_errors = self.rx_errors.saturating_add(1);
                    break;
                }
            }
            n += 1;
        }
        rx.publish();
        if rx.take_notify() {
            let _ = k.notify(SERIAL_RX);
        }
        n
    }

    /// Whether the probe command came since the last call ([`PROBE_COMMAND`]).
    pub fn take_probe(&mut self) -> bool {
        core::mem::take(&mut self.probe_due)
    }

    /// Room in the PL011's RX FIFO.
    pub fn rx_room(&self) -> usize {
        pl011::RX_FIFO - self.rx_fifo.len()
    }

    /// Puts one received byte into the RX FIFO (dropped if full, as a real FIFO overruns).
    pub fn push_rx(&mut self, b: u8) {
        let _ = self.rx_fifo.push_back(b);
    }

    fn ris(&self) -> u32 {
        let rx = if self.rx_fifo.is_empty() {
            0
        } else {
            pl011::INT_RX | pl011::INT_RT
        };
        rx | pl011::INT_TX
    }

    /// Whether an FR read now is a poll for input: the RX FIFO is empty and neither RX
    /// interrupt is enabled (a driver that takes RX interrupts reads FR to send, not to wait).
    pub fn polled_for_input(&self) -> bool {
        self.rx_fifo.is_empty() && self.imsc & (pl011::INT_RX | pl011::INT_RT) == 0
    }

    /// Whether the guest, with no input and no RX interrupt, polls FR for input: it read FR
    /// [`POLL_READS`] times without writing DR in between. A guest writing through the
    /// polled console reads FR at most twice between its DR writes (TXFF before a byte, BUSY
    /// after it), and must not publish every byte (each a notification of the serial driver,
    /// which preempts the VMM): its bytes go out at each newline and at the first exit that
    /// is not on a register.
    pub fn polling(&self) -> bool {
        self.fr_reads >= POLL_READS && self.polled_for_input()
    }

    /// The interrupt line: RIS & IMSC.
    pub fn irq_level(&self) -> bool {
        self.ris() & self.imsc != 0
    }

    /// Records the line's level; returns whether it just rose (the vGIC must see an edge).
    pub fn line_rose(&mut self) -> bool {
        let level = self.irq_level();
        let rose = level && !self.line_high;
        self.line_high = level;
        rose
    }

    /// Writes the VMM's own message bytes: through the serial driver when attached (published
    /// at each newline), else straight to the kernel's debug console. A VMM line that starts
    /// while the guest's line is open starts on a new line, and the guest's open line is
    /// written again after it (as a line editor redraws its prompt).
    pub fn write_vmm<K: Kernel>(&mut self, k: &mut K, bytes: &[u8]) {
        if self.tx.is_some() {
            let open = self.guest_line.as_ref().is_none_or(|l| !l.is_empty());
            if open && !self.vmm_mid_line {
                self.put(k, b'\n');
            }
            for &b in bytes {
                self.put(k, b);
                self.vmm_mid_line = b != b'\n';
                if b == b'\n' && open {
                    let redraw = self.guest_line.take();
                    for &g in redraw.iter().flatten() {
                        self.put(k, g);
                    }
                    self.guest_line = redraw;
                }
            }
        } else {
            k.debug_write(bytes);
            // What does not fit is lost (a partial line is cut at attach).
            let room = EARLY_MAX - self.early.len();
            let _ = self
                .early
                .extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }

    /// A byte the guest wrote (PL011 DR or virtio-console): its open line is kept for
    /// [`Console::write_vmm`].
    pub fn put_guest<K: Kernel>(&mut self, k: &mut K, b: u8) {
        if b == b'\n' {
            self.guest_line = Some(heapless::Vec::new());
        } else if let Some(l) = self.guest_line.as_mut()
            && l.push(b).is_err()
        {
            self.guest_line = None;
        }
        self.put(k, b);
    }

    /// Publishes bytes enqueued since the last newline (a partial line: a prompt) and notifies
    /// the driver when the queue protocol asks. Cheap when there is nothing to publish. Returns
    /// whether it notified (a kernel call).
    pub fn flush<K: Kernel>(&mut self, k: &mut K) -> bool {
        if !self.unpublished {
            return false;
        }
        self.unpublished = false;
        let Some(tx) = self.tx.as_mut() else {
            return false;
        };
        tx.publish();
        tx.take_notify() && k.notify(SERIAL_TX).is_ok()
    }

    fn put<K: Kernel>(&mut self, k: &mut K, b: u8) {
        if let Some(tx) = self.tx.as_mut() {
            if tx.enqueue_local(b).is_err() {
                self.dropped = self.dropped.saturating_add(1);
                return;
            }
            self.unpublished = true;
            if b == b'\n' {
                let _ = self.flush(k);
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
    fn read(&mut self, offset: u64) -> u64 {
        match offset {
            pl011::DR => self.rx_fifo.pop_front().map_or(0, u64::from),
            pl011::FR => {
                self.fr_reads = self.fr_reads.saturating_add(1);
                let rx = if self.rx_fifo.is_empty() {
                    pl011::FR_RXFE
                } else if self.rx_fifo.is_full() {
                    pl011::FR_RXFF
                } else {
                    0
                };
                pl011::FR_TXFE | rx
            }
            pl011::IMSC => u64::from(self.imsc),
            pl011::RIS => u64::from(self.ris()),
            pl011::MIS => u64::from(self.ris() & self.imsc),
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
            pl011::DR => {
                self.input_to = InputTo::Pl011;
                self.fr_reads = 0;
                self.put_guest(k, value as u8);
            }
            pl011::IMSC => self.imsc = value as u32 & 0x7ff,
            // The modelled interrupts are levels of the FIFOs' state: clearing has no effect.
            pl011::ICR => {}
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
        Self::new()
    }
}

impl TestDev {
    /// The test device at reset.
    pub const fn new() -> Self {
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

/// The guest's virtio-blk device: the virtio-mmio transport around the model, over the block
/// driver domain.
pub type VirtioBlk = MmioTransport<BlkDevice<QueueBackend>>;
/// The guest's virtio-console device.
pub type VirtioConsole = MmioTransport<ConsoleDevice<ConsoleLink>>;
/// The guest's virtio-net device: the transport around the model, over the network
/// virtualiser.
pub type VirtioNet = MmioTransport<NetDevice<NetQueues>>;

/// Every device of the VM.
pub struct Devices {
    /// Guest console.
    pub console: Console,
    /// Test device.
    pub testdev: TestDev,
    /// virtio-blk, when the block driver's queues are mapped and its storage is ready.
    pub blk: Option<VirtioBlk>,
    /// virtio-console.
    pub vcon: Option<VirtioConsole>,
    /// virtio-net, when the network virtualiser's queues are mapped.
    pub net: Option<VirtioNet>,
}

impl Default for Devices {
    fn default() -> Self {
        let mut d = Self::EMPTY;
        d.add_virtio_console();
        d
    }
}

impl Devices {
    /// The devices at reset, without the virtio devices (a constant: see [`crate::Vmm::blank`]).
    pub const EMPTY: Devices = Devices {
        console: Console::new(),
        testdev: TestDev::new(),
        blk: None,
        vcon: None,
        net: None,
    };

    /// Adds the virtio console (it needs no driver domain).
    pub fn add_virtio_console(&mut self) {
        self.vcon = ConsoleDevice::new(ConsoleLink::default(), ConsoleConfig::default())
            .ok()
            .map(MmioTransport::new);
    }
}

/// Counters of the glue between devices and the rest of the system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlueStats {
    /// Interrupts the vGIC refused to make pending.
    pub irq_errors: u64,
    /// Times the block driver's response queue was found corrupted.
    pub blk_queue_errors: u64,
    /// Notifications sent to the block driver.
    pub blk_kicks: u64,
    /// WFI exits that parked the vCPU.
    pub parks: u64,
    /// Times the wake-up timer was armed for a parked vCPU's virtual timer.
    pub timer_arms: u64,
    /// Parked vCPUs the wake-up timer resumed.
    pub timer_wakes: u64,
    /// Guest HVCs the kernel took for one of its system calls (capability faults).
    pub kernel_syscall_hvcs: u64,
    /// Where the block path's time goes, in timer ticks.
    pub blk_time: BlkTime,
    /// Device calls made with the guest's caches on (guest memory without cache maintenance).
    pub coherent_calls: u64,
    /// Device calls made with cache maintenance (the guest's caches off, or unknown).
    pub maintained_calls: u64,
    /// Notifications sent to the network virtualiser.
    pub net_kicks: u64,
    /// Block driver restarts re-synchronised with (generations after the first).
    pub blk_restarts: u64,
    /// When the last restart was re-synchronised with (timer ticks), until its first response.
    pub blk_resynced_at: Option<u64>,
}

impl GlueStats {
    /// Every counter zero.
    pub const ZERO: GlueStats = GlueStats {
        irq_errors: 0,
        blk_queue_errors: 0,
        blk_kicks: 0,
        parks: 0,
        timer_arms: 0,
        timer_wakes: 0,
        kernel_syscall_hvcs: 0,
        blk_time: BlkTime {
            intake: 0,
            driver: 0,
            completion: 0,
            kicked_at: None,
        },
        coherent_calls: 0,
        maintained_calls: 0,
        net_kicks: 0,
        blk_restarts: 0,
        blk_resynced_at: None,
    };
}

/// The block path's stages in timer ticks (CNTPCT_EL0, read without a kernel call), summed:
/// what the VMM spends on the guest's virtio-blk register writes (the notify: popping chains,
/// copying write data into staging, queuing sDDF requests, the kick), how long the driver
/// domain and the device take (from a kick while none was unanswered to the next batch of
/// responses), and what the VMM spends on each batch of responses (copying read data to the
/// guest, the used ring, the interrupt, the next requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlkTime {
    /// Guest register writes to the virtio-blk transport.
    pub intake: u64,
    /// Kick to responses.
    pub driver: u64,
    /// Response batches.
    pub completion: u64,
    /// When the oldest unanswered kick went out.
    pub kicked_at: Option<u64>,
}

/// The exit path's (and the notification path's) view of the devices.
pub struct PlatformCtx<'a, K: Kernel> {
    /// Devices.
    pub devices: &'a mut Devices,
    /// The vGIC.
    pub vgic: &'a mut Vgic,
    /// Kernel access for the console and the vGIC.
    pub inj: KernelInjector<K>,
    /// Index of the vCPU whose exit this is.
    pub vcpu: usize,
    /// Guest RAM, for the virtio devices' queues and buffers.
    pub mem: View<'a>,
    /// Glue counters.
    pub glue: &'a mut GlueStats,
}

/// Error codes of [`PlatformError`].
pub mod platform_error {
    /// The vGIC refused an operation.
    pub const VGIC: u32 = 1;
    /// The deliberately broken handler.
    pub const BROKEN: u32 = 2;
}

impl<K: Kernel> PlatformCtx<'_, K> {
    /// Makes SPI `irq` pending in the vGIC (delivered at once if deliverable).
    fn raise(&mut self, irq: u32) {
        if let Err(e) = self.vgic.set_irq_pending(&mut self.inj, irq) {
            self.glue.irq_errors = self.glue.irq_errors.saturating_add(1);
            microkit_rt::debug_println!(self.inj.k, "vmm: cannot raise IRQ {}: {:?}", irq, e);
        }
    }

    /// A read of the console's register at `offset` (an exit's or a console run's).
    pub fn console_read(&mut self, offset: u64) -> u64 {
        let console = &mut self.devices.console;
        let v = console.read(offset);
        if offset == pl011::DR {
            // A byte left the FIFO: refill it from the RX queue; the line may fall.
            self.console_io();
        } else if offset == pl011::FR && console.polling() {
            // A guest polling for input without the RX interrupt waits here: what it wrote
            // before (a prompt) must show now.
            console.flush(&mut self.inj.k);
        }
        v
    }

    /// The PL011's line after a change: an edge when it rose.
    fn console_line(&mut self) {
        if self.devices.console.line_rose() {
            self.raise(layout::PL011_IRQ);
        }
    }

    /// Before a device call that may move guest data: whether the guest now runs with its MMU
    /// and data cache on (`SCTLR_EL1.M` and `.C`), so that guest memory needs no cache
    /// maintenance (see [`crate::guest_memory`]). One kernel call; if it fails, maintenance
    /// stays on.
    fn refresh_coherence(&mut self) {
        let on = match Child::try_new(self.vcpu as u64) {
            Some(child) => {
                self.inj.calls += 1;
                self.inj
                    .k
                    .vcpu_read_reg(child, microkit_rt::abi::vcpu_reg::SCTLR)
                    .is_ok_and(crate::guest_memory::caches_on)
            }
            None => false,
        };
        self.mem.set_coherent(on);
        let n = if on {
            &mut self.glue.coherent_calls
        } else {
            &mut self.glue.maintained_calls
        };
        *n = n.saturating_add(1);
    }

    /// One line of the VMM's own output (through the serial driver when attached).
    fn vmm_line(&mut self, args: core::fmt::Arguments<'_>) {
        use core::fmt::Write as _;
        let mut o = crate::Out {
            console: &mut self.devices.console,
            k: &mut self.inj.k,
        };
        let _ = o.write_fmt(args);
        let _ = o.write_str("\n");
    }

    /// A block driver generation waiting for the VMM (the driver started, at boot or after a
    /// crash): its queues are reset and every request without a response queued again
    /// ([`crate::blk_backend::QueueBackend::resync`]); the kick that follows acknowledges it.
    fn blk_resync(&mut self) {
        let Some(blk) = self.devices.blk.as_mut() else {
            return;
        };
        let backend = blk.device_mut().backend_mut();
        let Some(g) = backend.restart_pending() else {
            return;
        };
        let restart = backend.generation() != 0;
        let in_flight = backend.in_flight();
        let r = backend.resync(g);
        let now = self.inj.k.timer_now();
        match r {
            Ok(n) if restart => {
                self.glue.blk_restarts = self.glue.blk_restarts.saturating_add(1);
                self.glue.blk_resynced_at = Some(now);
                // The old life's kick will never be answered.
                self.glue.blk_time.kicked_at = None;
                self.vmm_line(format_args!(
                    "vmm: blk_driver restarted (generation {}): queues reset, {} of {} requests in flight re-submitted (t={})",
                    g, n, in_flight, now
                ));
            }
            Ok(_) => {}
            Err(e) => self.vmm_line(format_args!(
                "vmm: blk_driver generation {}: cannot reset the queues: {:?}",
                g, e
            )),
        }
    }

    /// Tells the block driver about requests queued since the last kick.
    fn kick_blk(&mut self) {
        let kick = self
            .devices
            .blk
            .as_mut()
            .is_some_and(|b| b.device_mut().backend_mut().take_kick());
        if kick {
            if self.glue.blk_time.kicked_at.is_none() {
                self.glue.blk_time.kicked_at = Some(self.inj.k.timer_now());
            }
            self.glue.blk_kicks = self.glue.blk_kicks.saturating_add(1);
            self.inj.calls += 1;
            let _ = self.inj.k.notify(BLK);
        }
    }

    /// Hands the block driver's responses to the device model, raises the device's interrupt
    /// when the model asks, and kicks the driver for the requests the model issued meanwhile.
    pub fn blk_completions(&mut self) {
        let t0 = self.inj.k.timer_now();
        if let Some(k) = self.glue.blk_time.kicked_at.take() {
            let t = &mut self.glue.blk_time;
            t.driver = t.driver.saturating_add(t0.saturating_sub(k));
        }
        let mut raise = false;
        if self
            .devices
            .blk
            .as_mut()
            .is_some_and(|b| b.device_mut().backend_mut().responses_waiting())
        {
            self.refresh_coherence();
        }
        let mut answered = false;
        if let Some(blk) = self.devices.blk.as_mut() {
            // Bounded: at most one response per queue entry the driver can have published.
            for _ in 0..crate::blk_backend::QUEUE_CAPACITY {
                match blk.device_mut().backend_mut().next_completion() {
                    Ok(Some(c)) => {
                        answered = true;
                        raise |= virtio::raises(blk.device_event(&mut self.mem, c));
                    }
                    Ok(None) => break,
                    Err(_) => {
                        self.glue.blk_queue_errors = self.glue.blk_queue_errors.saturating_add(1);
                        break;
                    }
                }
            }
        }
        if answered && let Some(at) = self.glue.blk_resynced_at.take() {
            let now = self.inj.k.timer_now();
            self.vmm_line(format_args!(
                "vmm: blk_driver serves again: first response {} ticks after the re-synchronisation (t={})",
                now.saturating_sub(at),
                now
            ));
        }
        if raise {
            self.raise(virtio::layout::BLK_IRQ);
        }
        // After the responses the old life published: a new life of the driver waits.
        self.blk_resync();
        self.kick_blk();
        let t = &mut self.glue.blk_time;
        t.completion = t
            .completion
            .saturating_add(self.inj.k.timer_now().saturating_sub(t0));
    }

    /// Tells the network virtualiser about frames queued or buffers posted since the last kick.
    fn kick_net(&mut self) {
        let kick = self
            .devices
            .net
            .as_mut()
            .is_some_and(|n| n.device_mut().backend_mut().take_kick());
        if kick {
            self.glue.net_kicks = self.glue.net_kicks.saturating_add(1);
            self.inj.calls += 1;
            let _ = self.inj.k.notify(NET);
        }
    }

    /// On the network virtualiser's notification: received frames go to the card (into the
    /// guest's posted receive buffers), a frame the card held for want of a TX buffer goes out;
    /// the card's interrupt when it used buffers, the virtualiser's kick when this side queued.
    pub fn net_io(&mut self) {
        if self.devices.net.is_none() {
            return;
        }
        self.refresh_coherence();
        let mut raise = false;
        if let Some(net) = self.devices.net.as_mut() {
            raise |= virtio::raises(net.device_event(&mut self.mem, NetEvent::TxReady));
            raise |= virtio::raises(net.device_event(&mut self.mem, NetEvent::RxReady));
        }
        if raise {
            self.raise(virtio::layout::NET_IRQ);
        }
        self.kick_net();
    }

    /// Moves console bytes: what the virtio console's model sent goes to the serial TX queue
    /// (re-running a stalled model), and input from the serial RX queue goes to the console the
    /// guest wrote to last: the virtio console (when its driver has a receive queue ready) or
    /// the PL011's RX FIFO.
    pub fn console_io(&mut self) {
        let mut raise = false;
        let devices = &mut *self.devices;
        let inj = &mut self.inj;
        if let Some(vcon) = devices.vcon.as_mut() {
            // Each round sends at most one link's worth; a guest cannot keep this going longer
            // than its transmit queue is deep.
            for _ in 0..64 {
                let console = &mut devices.console;
                let stalled = vcon.device_mut().backend_mut().drain_out(|b| {
                    console.input_to = InputTo::Virtio;
                    console.put_guest(&mut inj.k, b)
                });
                if !stalled {
                    break;
                }
                raise |= virtio::raises(vcon.device_event(&mut self.mem, ConsoleEvent::TxReady));
            }
        }
        let to_virtio = devices.console.input_to == InputTo::Virtio;
        let vcon_rx = devices.vcon.as_mut().filter(|v| {
            to_virtio
                && v.state() == DeviceState::Live
                && v.queues()
                    .get(usize::from(RECEIVEQ))
                    .is_some_and(|q| q.ready())
        });
        match vcon_rx {
            Some(vcon) => {
                let room = vcon.device().backend().input_room();
                let link = vcon.device_mut().backend_mut();
                let moved = devices.console.take_input(&mut inj.k, room, |b| {
                    let _ = link.push_input(b);
                });
                if moved > 0 || vcon.device().backend().input_len() > 0 {
                    raise |=
                        virtio::raises(vcon.device_event(&mut self.mem, ConsoleEvent::RxReady));
                }
            }
            None => {
                let console = &mut devices.console;
                let room = console.rx_room();
                let mut got = heapless::Vec::<u8, { pl011::RX_FIFO }>::new();
                console.take_input(&mut inj.k, room, |b| {
                    let _ = got.push(b);
                });
                for b in got {
                    console.push_rx(b);
                }
            }
        }
        if raise {
            self.raise(virtio::layout::CONSOLE_IRQ);
        }
        self.console_line();
        if self.devices.console.take_probe() {
            self.probe_beyond();
        }
    }

    /// Fault injection ([`PROBE_COMMAND`]): a read of the first block beyond the VM's disk goes
    /// to the block virtualiser as a VMM gone wrong would send it; its refusal comes back as an
    /// answer to no request of the device model (counted as an unknown id).
    fn probe_beyond(&mut self) {
        let Some(blk) = self.devices.blk.as_mut() else {
            return;
        };
        use core::fmt::Write as _;
        let mut line = heapless::String::<96>::new();
        match blk.device_mut().backend_mut().probe_beyond() {
            Ok(block) => {
                let _ = writeln!(
                    line,
                    "vmm: fault injection: read of block {block} (beyond this VM's disk) sent"
                );
                self.kick_blk();
            }
            Err(e) => {
                let _ = writeln!(line, "vmm: fault injection: probe not sent: {e:?}");
            }
        }
        self.devices
            .console
            .write_vmm(&mut self.inj.k, line.as_bytes());
    }

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
            DeviceId::Console => Ok(self.console_read(offset)),
            DeviceId::TestDev => self.devices.testdev.read(offset, size),
            DeviceId::VirtioBlk => match self.devices.blk.as_mut() {
                Some(d) => d.read(offset, size),
                None => Err(BusError::Unmapped),
            },
            DeviceId::VirtioConsole => match self.devices.vcon.as_mut() {
                Some(d) => d.read(offset, size),
                None => Err(BusError::Unmapped),
            },
            DeviceId::VirtioNet => match self.devices.net.as_mut() {
                Some(d) => d.read(offset, size),
                None => Err(BusError::Unmapped),
            },
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
                self.console_line();
                Ok(())
            }
            DeviceId::VirtioBlk => {
                if self.devices.blk.is_none() {
                    return Err(BusError::Unmapped);
                }
                let t0 = self.inj.k.timer_now();
                self.refresh_coherence();
                let Some(d) = self.devices.blk.as_mut() else {
                    return Err(BusError::Unmapped);
                };
                let r = d.write(&mut self.mem, offset, size, value);
                if r.is_ok_and(virtio::raises) {
                    self.raise(virtio::layout::BLK_IRQ);
                }
                self.kick_blk();
                let t = &mut self.glue.blk_time;
                t.intake = t
                    .intake
                    .saturating_add(self.inj.k.timer_now().saturating_sub(t0));
                r.map(|_| ())
            }
            DeviceId::VirtioConsole => {
                if self.devices.vcon.is_none() {
                    return Err(BusError::Unmapped);
                }
                self.refresh_coherence();
                let Some(d) = self.devices.vcon.as_mut() else {
                    return Err(BusError::Unmapped);
                };
                if virtio::raises(d.write(&mut self.mem, offset, size, value)?) {
                    self.raise(virtio::layout::CONSOLE_IRQ);
                }
                self.console_io();
                Ok(())
            }
            DeviceId::VirtioNet => {
                if self.devices.net.is_none() {
                    return Err(BusError::Unmapped);
                }
                self.refresh_coherence();
                let Some(d) = self.devices.net.as_mut() else {
                    return Err(BusError::Unmapped);
                };
                let r = d.write(&mut self.mem, offset, size, value);
                if r.is_ok_and(virtio::raises) {
                    self.raise(virtio::layout::NET_IRQ);
                }
                self.kick_net();
                r.map(|_| ())
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
        let r = self.vgic.maintenance(&mut self.inj, self.vcpu, lr);
        // A level interrupt still asserted after the guest's EOI is pending again.
        if let Ok(Some(layout::PL011_IRQ)) = r
            && self.devices.console.irq_level()
        {
            self.raise(layout::PL011_IRQ);
        }
        self.vgic_result("maintenance", r.map(|_| ()))
    }
    fn virtual_ppi(&mut self, irq: u32) -> Result<(), PlatformError> {
        let r = self.vgic.ppi_event(&mut self.inj, self.vcpu, irq);
        self.vgic_result("virtual PPI", r)
    }
}

#[cfg(test)]
mod crash_command_tests {
    use super::{CRASH_COMMAND, CommandMatch};

    fn matches(input: &[u8]) -> usize {
        let mut m = CommandMatch::new(CRASH_COMMAND);
        input.iter().filter(|&&b| m.feed(b)).count()
    }

    #[test]
    fn the_command_is_found_whole_and_only_whole() {
        assert_eq!(matches(CRASH_COMMAND), 1);
        assert_eq!(matches(b"typed @@crash-vmm@@ here"), 1);
        // A false start that begins the command again.
        assert_eq!(matches(b"@@crash-@@crash-vmm@@"), 1);
        assert_eq!(matches(b"@@crash-vm@@"), 0);
        assert_eq!(matches(b"@@crash-vmm@"), 0);
        assert_eq!(matches(&[CRASH_COMMAND, CRASH_COMMAND].concat()), 2);
    }
}

#[cfg(test)]
mod polling_tests {
    use super::{Console, POLL_READS, pl011};

    /// Earlycon's writer (FR, DR, FR per byte) never counts as polling for input; FR read again and again without a DR write
    /// does, from the `POLL_READS`th read on, and a DR write ends it.
    #[test]
    fn a_writer_is_no_poller_and_a_reader_is_one() {
        let sim = microkit_sim::Sim::from_repo_system("vmm");
        let mut k = sim.kernel();
        let mut c = Console::new();
        for &b in b"early\n" {
            c.read(pl011::FR);
            assert!(!c.polling());
            c.write(&mut k, pl011::DR, u64::from(b));
            c.read(pl011::FR);
            assert!(!c.polling(), "a writer's two FR reads");
        }
        // The writer's last FR read counts: POLL_READS - 1 more make a poller.
        for _ in 0..POLL_READS - 2 {
            c.read(pl011::FR);
            assert!(!c.polling());
        }
        c.read(pl011::FR);
        assert!(c.polling());
        c.write(&mut k, pl011::DR, u64::from(b'x'));
        assert!(!c.polling());
        // With the RX interrupt on, FR reads are no poll for input at all.
        c.write(&mut k, pl011::IMSC, u64::from(pl011::INT_RX));
        for _ in 0..2 * POLL_READS {
            c.read(pl011::FR);
        }
        assert!(!c.polling());
    }
}
