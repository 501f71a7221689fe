//! The virtio-mmio transport, version 2 (virtio 1.2 §4.2): owns the register file of one device,
//! the device-status handshake, feature negotiation, the device's queues and its interrupt
//! status. It is generic over [`VirtioDevice`], the device model behind it.
//!
//! The VMM routes the device's MMIO window (from the handler tree, `offset` relative to its
//! base) to [`MmioTransport::read`] and [`MmioTransport::write`], and completions of backend
//! work to [`MmioTransport::device_event`]. Whenever one of them returns [`IrqAction::Raise`]
//! the VMM asserts the device's SPI on the vGIC (the SPI number is the VMM's choice).
//! [`MmioTransport::irq_level`] tells whether the line is logically still asserted.
//!
//! Register accesses: the control registers (offsets below 0x100) take aligned 32-bit accesses
//! only; any other width or alignment, and offsets the spec does not define, are refused
//! ([`BusError::Refused`], which the VMM reflects to the guest as an external abort). Reading a
//! write-only register gives 0 and writing a read-only one is ignored (counted). The
//! device-specific configuration space (0x100 onwards) takes 1, 2, 4 or 8-byte accesses anywhere
//! within the device's configuration size.
//!
//! Device status ([`DeviceState`]): the driver must set ACKNOWLEDGE, DRIVER, FEATURES_OK and
//! DRIVER_OK in that order (several at once is fine). FEATURES_OK is refused (the bit does not
//! stick) unless the driver's features are a subset of the device's and include
//! VIRTIO_F_VERSION_1; the features the driver acknowledged are fixed there, in one place, and
//! are all the device ever sees. DRIVER_OK activates the device. Writing 0 resets; FAILED stops
//! the device until reset; a write that clears a bit or skips a step is ignored. When the device
//! hits an unrecoverable queue state it goes to DEVICE_NEEDS_RESET and, if DRIVER_OK is set,
//! raises a configuration-change interrupt; it then ignores notifications until the reset.

use vmm_core::memory::GuestMemory;
use vmm_core::mmio::BusError;

use crate::feature::{EVENT_IDX, VERSION_1};
use crate::queue::{ChainError, Queue, QueueError};

/// MagicValue: "virt" in little-endian.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// Version of the (non-legacy) MMIO interface.
pub const VERSION: u32 = 2;
/// VendorID this VMM reports: "seL4" in little-endian.
pub const VENDOR_ID: u32 = 0x344c_6573;
/// Most queues a device behind this transport can have.
pub const MAX_QUEUES: usize = 4;
/// Offset of the device-specific configuration space.
pub const CONFIG_OFFSET: u64 = 0x100;

/// Register offsets (§4.2.2).
pub mod reg {
    /// MagicValue (R).
    pub const MAGIC_VALUE: u64 = 0x000;
    /// Version (R).
    pub const VERSION: u64 = 0x004;
    /// DeviceID (R).
    pub const DEVICE_ID: u64 = 0x008;
    /// VendorID (R).
    pub const VENDOR_ID: u64 = 0x00c;
    /// DeviceFeatures (R).
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// DeviceFeaturesSel (W).
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// DriverFeatures (W).
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// DriverFeaturesSel (W).
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// QueueSel (W).
    pub const QUEUE_SEL: u64 = 0x030;
    /// QueueNumMax (R).
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// QueueNum (W).
    pub const QUEUE_NUM: u64 = 0x038;
    /// QueueReady (RW).
    pub const QUEUE_READY: u64 = 0x044;
    /// QueueNotify (W).
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// InterruptStatus (R).
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// InterruptACK (W).
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// Status (RW).
    pub const STATUS: u64 = 0x070;
    /// QueueDescLow (W).
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// QueueDescHigh (W).
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// QueueDriverLow (W).
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    /// QueueDriverHigh (W).
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    /// QueueDeviceLow (W).
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    /// QueueDeviceHigh (W).
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    /// SHMSel (W).
    pub const SHM_SEL: u64 = 0x0ac;
    /// SHMLenLow (R).
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    /// SHMLenHigh (R).
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    /// SHMBaseLow (R).
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    /// SHMBaseHigh (R).
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    /// QueueReset (RW; VIRTIO_F_RING_RESET is not offered).
    pub const QUEUE_RESET: u64 = 0x0c0;
    /// ConfigGeneration (R).
    pub const CONFIG_GENERATION: u64 = 0x0fc;
}

/// Device status bits (§2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready: the device is live.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error it cannot recover from (set by the device).
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 128;
}

/// InterruptStatus bit: a used buffer notification.
pub const INT_USED_BUFFER: u32 = 1;
/// InterruptStatus bit: a configuration change notification.
pub const INT_CONFIG_CHANGE: u32 = 2;

/// What a device model did that the driver should hear about.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    /// Buffers were returned through a used ring whose driver wants an interrupt.
    pub used: bool,
}

impl Notify {
    /// Nothing to tell.
    pub const NONE: Notify = Notify { used: false };
    /// A used-buffer notification.
    pub const USED: Notify = Notify { used: true };
    /// Either.
    pub fn or(self, other: Notify) -> Notify {
        Notify {
            used: self.used || other.used,
        }
    }
}

/// An unrecoverable device state: the transport sets DEVICE_NEEDS_RESET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    /// A queue is unusable.
    Queue {
        /// Queue index.
        queue: u16,
        /// Why.
        error: QueueError,
    },
    /// A bad request whose failure cannot be reported to the driver (no usable status byte).
    Unreportable {
        /// Queue index.
        queue: u16,
        /// The chain's head.
        head: u16,
        /// The chain's problem, if it had one.
        error: Option<ChainError>,
    },
}

/// A virtio device model behind the transport.
///
/// The transport owns the queues and hands the device the slice of them it declared, only while
/// the device is live (DRIVER_OK, no NEEDS_RESET); at other times `queues` is empty, so that a
/// device cannot touch queue memory it must not.
pub trait VirtioDevice {
    /// Asynchronous input from the device's backend (completions, data arrival).
    type Event;
    /// DeviceID (§5).
    fn device_id(&self) -> u32;
    /// The features the device offers (must include [`VERSION_1`]).
    fn device_features(&self) -> u64;
    /// QueueNumMax of each queue; the number of queues is the slice's length (at most
    /// [`MAX_QUEUES`]).
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads `data.len()` bytes of configuration space at `offset`; `false` if out of bounds.
    fn read_config(&self, offset: u64, data: &mut [u8]) -> bool;
    /// Writes configuration space; `false` if out of bounds.
    fn write_config(&mut self, offset: u64, data: &[u8]) -> bool;
    /// DRIVER_OK: the device goes live with the negotiated `features`.
    fn activate<M: GuestMemory>(
        &mut self,
        features: u64,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<Notify, DeviceError>;
    /// The driver notified queue `queue` (which exists and is ready).
    fn queue_notify<M: GuestMemory>(
        &mut self,
        queue: u16,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<Notify, DeviceError>;
    /// A backend event.
    fn event<M: GuestMemory>(
        &mut self,
        event: Self::Event,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<Notify, DeviceError>;
    /// Device reset: forget the driver's state (in-flight backend work may still complete and
    /// must then be ignored).
    fn reset(&mut self);
}

/// Where the device is in the status handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// Status 0.
    Reset,
    /// ACKNOWLEDGE.
    Acknowledged,
    /// DRIVER: features are being negotiated.
    Driver,
    /// FEATURES_OK: features fixed, queues being set up.
    FeaturesOk,
    /// DRIVER_OK: the device processes its queues.
    Live,
    /// DEVICE_NEEDS_RESET: the device stopped until the driver resets it.
    NeedsReset,
    /// The driver set FAILED: the device stopped until reset.
    Failed,
}

/// What the VMM does with the device's interrupt line after a call.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqAction {
    /// Nothing.
    None,
    /// A new event set a bit in InterruptStatus: assert the device's SPI.
    Raise,
}

/// Counters of the guest's and the device's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransportStats {
    /// Accesses refused (width, alignment, undefined offset, config out of bounds).
    pub refused: u64,
    /// Writes ignored (read-only register, wrong state, clearing status bits).
    pub ignored_writes: u64,
    /// Queue notifications that reached the device.
    pub notifies: u64,
    /// Queue notifications dropped (device not live, queue absent or not ready).
    pub dropped_notifies: u64,
    /// FEATURES_OK refusals.
    pub features_refused: u64,
    /// Device resets by the driver.
    pub resets: u64,
    /// Times the device went to DEVICE_NEEDS_RESET.
    pub needs_reset: u64,
}

/// One virtio-mmio device: register file, status state machine, queues, interrupt status.
pub struct MmioTransport<D: VirtioDevice> {
    device: D,
    queues: [Queue; MAX_QUEUES],
    num_queues: usize,
    state: DeviceState,
    status: u8,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    driver_features_beyond: bool,
    acked_features: u64,
    queue_sel: u32,
    interrupt_status: u32,
    config_generation: u32,
    error: Option<DeviceError>,
    stats: TransportStats,
}

const DRIVER_BITS: u8 =
    status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK | status::FAILED;

impl<D: VirtioDevice> MmioTransport<D> {
    /// The transport for `device`, in reset state. A device declaring more than [`MAX_QUEUES`]
    /// queues gets the first [`MAX_QUEUES`].
    pub fn new(device: D) -> Self {
        let mut queues = [const { Queue::new(0) }; MAX_QUEUES];
        let sizes = device.queue_max_sizes();
        let num_queues = sizes.len().min(MAX_QUEUES);
        for (q, &max) in queues.iter_mut().zip(sizes) {
            *q = Queue::new(max);
        }
        MmioTransport {
            device,
            queues,
            num_queues,
            state: DeviceState::Reset,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            driver_features_beyond: false,
            acked_features: 0,
            queue_sel: 0,
            interrupt_status: 0,
            config_generation: 0,
            error: None,
            stats: TransportStats::default(),
        }
    }
    /// The device model.
    pub fn device(&self) -> &D {
        &self.device
    }
    /// The device model, mutably (for backend access; queue work goes through the transport).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }
    /// The device's queues.
    pub fn queues(&self) -> &[Queue] {
        self.queues.get(..self.num_queues).unwrap_or(&[])
    }
    /// The handshake state.
    pub fn state(&self) -> DeviceState {
        self.state
    }
    /// The Status register.
    pub fn status(&self) -> u8 {
        self.status
    }
    /// The features negotiated at FEATURES_OK (0 before).
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }
    /// The InterruptStatus register.
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }
    /// Whether the interrupt line is logically asserted (InterruptStatus is not zero).
    pub fn irq_level(&self) -> bool {
        self.interrupt_status != 0
    }
    /// Why the device went to DEVICE_NEEDS_RESET (until the next reset).
    pub fn error(&self) -> Option<DeviceError> {
        self.error
    }
    /// Counters.
    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    fn refuse<T>(&mut self) -> Result<T, BusError> {
        self.stats.refused += 1;
        Err(BusError::Refused)
    }

    fn selected(&self) -> Option<&Queue> {
        let i = usize::try_from(self.queue_sel).ok()?;
        self.queues.get(..self.num_queues)?.get(i)
    }

    /// A `size`-byte guest read at `offset` in the device's window.
    pub fn read(&mut self, offset: u64, size: u8) -> Result<u64, BusError> {
        if offset >= CONFIG_OFFSET {
            let mut b = [0u8; 8];
            let Some(buf) = b.get_mut(..usize::from(size)) else {
                return self.refuse();
            };
            if !matches!(size, 1 | 2 | 4 | 8)
                || !self.device.read_config(offset - CONFIG_OFFSET, buf)
            {
                return self.refuse();
            }
            return Ok(u64::from_le_bytes(b));
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return self.refuse();
        }
        let features = self.device.device_features();
        let v: u32 = match offset {
            reg::MAGIC_VALUE => MAGIC_VALUE,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_id(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => features as u32,
                1 => (features >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.selected().map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => self.selected().map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => u32::from(self.status),
            // No shared-memory regions: length and base read as all ones.
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            reg::QUEUE_RESET => 0,
            reg::CONFIG_GENERATION => self.config_generation,
            reg::DEVICE_FEATURES_SEL
            | reg::DRIVER_FEATURES
            | reg::DRIVER_FEATURES_SEL
            | reg::QUEUE_SEL
            | reg::QUEUE_NUM
            | reg::QUEUE_NOTIFY
            | reg::INTERRUPT_ACK
            | reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH
            | reg::SHM_SEL => 0,
            _ => return self.refuse(),
        };
        Ok(u64::from(v))
    }

    /// A `size`-byte guest write of `value` at `offset` in the device's window. `mem` is guest
    /// RAM, which QueueReady, QueueNotify and DRIVER_OK need.
    pub fn write<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<IrqAction, BusError> {
        if offset >= CONFIG_OFFSET {
            let b = value.to_le_bytes();
            let Some(buf) = b.get(..usize::from(size)) else {
                return self.refuse();
            };
            if !matches!(size, 1 | 2 | 4 | 8)
                || !self.device.write_config(offset - CONFIG_OFFSET, buf)
            {
                return self.refuse();
            }
            return Ok(IrqAction::None);
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return self.refuse();
        }
        let v = value as u32;
        let action = match offset {
            reg::DEVICE_FEATURES_SEL => {
                self.device_features_sel = v;
                IrqAction::None
            }
            reg::DRIVER_FEATURES_SEL => {
                self.driver_features_sel = v;
                IrqAction::None
            }
            reg::DRIVER_FEATURES => {
                self.write_driver_features(v);
                IrqAction::None
            }
            reg::QUEUE_SEL => {
                self.queue_sel = v;
                IrqAction::None
            }
            reg::QUEUE_NUM => {
                let size = u16::try_from(v).unwrap_or(0);
                self.with_queue_config(|q| q.set_size(size));
                IrqAction::None
            }
            reg::QUEUE_DESC_LOW | reg::QUEUE_DESC_HIGH => {
                let high = offset == reg::QUEUE_DESC_HIGH;
                self.with_queue_config(|q| q.set_desc_table(half(q.desc_table(), v, high)));
                IrqAction::None
            }
            reg::QUEUE_DRIVER_LOW | reg::QUEUE_DRIVER_HIGH => {
                let high = offset == reg::QUEUE_DRIVER_HIGH;
                self.with_queue_config(|q| q.set_avail_ring(half(q.avail_ring(), v, high)));
                IrqAction::None
            }
            reg::QUEUE_DEVICE_LOW | reg::QUEUE_DEVICE_HIGH => {
                let high = offset == reg::QUEUE_DEVICE_HIGH;
                self.with_queue_config(|q| q.set_used_ring(half(q.used_ring(), v, high)));
                IrqAction::None
            }
            reg::QUEUE_READY => self.write_queue_ready(mem, v),
            reg::QUEUE_NOTIFY => self.notify(mem, v),
            reg::INTERRUPT_ACK => {
                self.interrupt_status &= !v;
                IrqAction::None
            }
            reg::STATUS => self.write_status(mem, v),
            reg::MAGIC_VALUE
            | reg::VERSION
            | reg::DEVICE_ID
            | reg::VENDOR_ID
            | reg::DEVICE_FEATURES
            | reg::QUEUE_NUM_MAX
            | reg::INTERRUPT_STATUS
            | reg::SHM_SEL
            | reg::SHM_LEN_LOW
            | reg::SHM_LEN_HIGH
            | reg::SHM_BASE_LOW
            | reg::SHM_BASE_HIGH
            | reg::QUEUE_RESET
            | reg::CONFIG_GENERATION => {
                self.stats.ignored_writes += 1;
                IrqAction::None
            }
            _ => return self.refuse(),
        };
        Ok(action)
    }

    fn write_driver_features(&mut self, v: u32) {
        if !matches!(self.state, DeviceState::Acknowledged | DeviceState::Driver) {
            self.stats.ignored_writes += 1;
            return;
        }
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v),
            1 => {
                self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32);
            }
            // Beyond bit 63 the device offers nothing: a bit set there makes FEATURES_OK fail.
            _ => self.driver_features_beyond |= v != 0,
        }
    }

    /// Queue layout may change between FEATURES_OK and the queue going ready.
    fn with_queue_config(&mut self, f: impl FnOnce(&mut Queue)) {
        let allowed = matches!(self.state, DeviceState::FeaturesOk | DeviceState::Live);
        let n = self.num_queues;
        let q = usize::try_from(self.queue_sel)
            .ok()
            .and_then(|i| self.queues.get_mut(..n)?.get_mut(i));
        match q {
            Some(q) if allowed && !q.ready() => f(q),
            _ => self.stats.ignored_writes += 1,
        }
    }

    fn write_queue_ready<M: GuestMemory>(&mut self, mem: &mut M, v: u32) -> IrqAction {
        let allowed = matches!(self.state, DeviceState::FeaturesOk | DeviceState::Live);
        let n = self.num_queues;
        let sel = self.queue_sel;
        let q = usize::try_from(sel)
            .ok()
            .and_then(|i| self.queues.get_mut(..n)?.get_mut(i));
        let Some(q) = q.filter(|_| allowed) else {
            self.stats.ignored_writes += 1;
            return IrqAction::None;
        };
        match v {
            0 => {
                q.disable();
                IrqAction::None
            }
            1 if q.ready() => IrqAction::None,
            1 => match q.enable(&*mem) {
                Ok(()) => IrqAction::None,
                Err(error) => self.fail(DeviceError::Queue {
                    queue: sel as u16,
                    error,
                }),
            },
            _ => {
                self.stats.ignored_writes += 1;
                IrqAction::None
            }
        }
    }

    fn notify<M: GuestMemory>(&mut self, mem: &mut M, v: u32) -> IrqAction {
        let ready = usize::try_from(v)
            .ok()
            .filter(|&i| i < self.num_queues)
            .and_then(|i| self.queues.get(i))
            .is_some_and(Queue::ready);
        if self.state != DeviceState::Live || !ready {
            self.stats.dropped_notifies += 1;
            return IrqAction::None;
        }
        self.stats.notifies += 1;
        let n = self.num_queues;
        let queues = self.queues.get_mut(..n).unwrap_or(&mut []);
        let r = self.device.queue_notify(v as u16, queues, mem);
        self.outcome(r)
    }

    /// Delivers a backend event to the device (with its queues only while it is live).
    pub fn device_event<M: GuestMemory>(&mut self, mem: &mut M, event: D::Event) -> IrqAction {
        let n = if self.state == DeviceState::Live {
            self.num_queues
        } else {
            0
        };
        let queues = self.queues.get_mut(..n).unwrap_or(&mut []);
        let r = self.device.event(event, queues, mem);
        self.outcome(r)
    }

    /// The device's configuration changed (e.g. the disk was resized): bumps ConfigGeneration
    /// and notifies a live driver.
    pub fn config_changed(&mut self) -> IrqAction {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & status::DRIVER_OK != 0 {
            self.interrupt_status |= INT_CONFIG_CHANGE;
            IrqAction::Raise
        } else {
            IrqAction::None
        }
    }

    fn outcome(&mut self, r: Result<Notify, DeviceError>) -> IrqAction {
        match r {
            Ok(Notify { used: true }) => {
                self.interrupt_status |= INT_USED_BUFFER;
                IrqAction::Raise
            }
            Ok(Notify { used: false }) => IrqAction::None,
            Err(e) => self.fail(e),
        }
    }

    /// DEVICE_NEEDS_RESET, keeping the first reason.
    fn fail(&mut self, e: DeviceError) -> IrqAction {
        if matches!(self.state, DeviceState::NeedsReset | DeviceState::Failed) {
            return IrqAction::None;
        }
        self.state = DeviceState::NeedsReset;
        self.status |= status::DEVICE_NEEDS_RESET;
        self.error = Some(e);
        self.stats.needs_reset += 1;
        if self.status & status::DRIVER_OK != 0 {
            self.interrupt_status |= INT_CONFIG_CHANGE;
            IrqAction::Raise
        } else {
            IrqAction::None
        }
    }

    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.state = DeviceState::Reset;
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_beyond = false;
        self.acked_features = 0;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        self.error = None;
        self.stats.resets += 1;
    }

    fn write_status<M: GuestMemory>(&mut self, mem: &mut M, v: u32) -> IrqAction {
        if v == 0 {
            self.reset();
            return IrqAction::None;
        }
        // DEVICE_NEEDS_RESET is the device's bit: a driver writing back what it read is fine.
        let Ok(v) = u8::try_from(v) else {
            self.stats.ignored_writes += 1;
            return IrqAction::None;
        };
        let v = v & !status::DEVICE_NEEDS_RESET;
        let current = self.status & DRIVER_BITS;
        if v & !DRIVER_BITS != 0 || v & current != current {
            self.stats.ignored_writes += 1;
            return IrqAction::None;
        }
        let new = v & !current;
        if new & status::FAILED != 0 {
            self.status |= new;
            self.state = DeviceState::Failed;
            return IrqAction::None;
        }
        if matches!(self.state, DeviceState::NeedsReset | DeviceState::Failed) {
            self.status |= new;
            // A driver that goes DRIVER_OK on a device that already needs a reset is told so.
            if self.state == DeviceState::NeedsReset && new & status::DRIVER_OK != 0 {
                self.interrupt_status |= INT_CONFIG_CHANGE;
                return IrqAction::Raise;
            }
            return IrqAction::None;
        }
        let steps = [
            (status::ACKNOWLEDGE, DeviceState::Reset),
            (status::DRIVER, DeviceState::Acknowledged),
            (status::FEATURES_OK, DeviceState::Driver),
            (status::DRIVER_OK, DeviceState::FeaturesOk),
        ];
        let mut action = IrqAction::None;
        for (bit, from) in steps {
            if new & bit == 0 {
                continue;
            }
            if self.state != from {
                self.stats.ignored_writes += 1;
                break;
            }
            match bit {
                status::ACKNOWLEDGE => self.state = DeviceState::Acknowledged,
                status::DRIVER => self.state = DeviceState::Driver,
                status::FEATURES_OK => {
                    let offered = self.device.device_features();
                    let f = self.driver_features;
                    if f & !offered != 0 || f & VERSION_1 == 0 || self.driver_features_beyond {
                        self.stats.features_refused += 1;
                        break;
                    }
                    self.acked_features = f;
                    self.state = DeviceState::FeaturesOk;
                }
                _ => {
                    self.status |= bit;
                    self.state = DeviceState::Live;
                    let n = self.num_queues;
                    let queues = self.queues.get_mut(..n).unwrap_or(&mut []);
                    // A device-independent feature the transport carries out for every device
                    // that offers it: the queues' notification suppression.
                    let event_idx = self.acked_features & EVENT_IDX != 0;
                    for q in queues.iter_mut() {
                        q.set_event_idx(event_idx);
                    }
                    let r = self.device.activate(self.acked_features, queues, mem);
                    action = self.outcome(r);
                    break;
                }
            }
            self.status |= bit;
        }
        action
    }
}

fn half(old: u64, v: u32, high: bool) -> u64 {
    if high {
        (old & 0xffff_ffff) | (u64::from(v) << 32)
    } else {
        (old & !0xffff_ffff) | u64::from(v)
    }
}

/// A device's config-space read of `data.len()` bytes at `offset` from its config bytes `config`:
/// `false` (refused) when the access does not lie entirely inside.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) -> bool {
    let Some(src) = usize::try_from(offset)
        .ok()
        .and_then(|o| config.get(o..o.checked_add(data.len())?))
    else {
        return false;
    };
    data.copy_from_slice(src);
    true
}

/// Whether a config-space access of `len` bytes at `offset` lies inside a config space of `size`.
pub fn config_in_bounds(size: usize, offset: u64, len: usize) -> bool {
    usize::try_from(offset)
        .ok()
        .and_then(|o| o.checked_add(len))
        .is_some_and(|end| end <= size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_or_is_either() {
        for (a, b) in [(false, false), (false, true), (true, false), (true, true)] {
            let n = Notify { used: a }.or(Notify { used: b });
            assert_eq!(n.used, a || b, "{a} or {b}");
        }
    }
}
