//! The virtio-console device model (virtio 1.2 §5.3), port 0 only: owns moving the bytes of the
//! transmitq to a [`ConsoleBackend`] (in the VMM: the serial driver's TX queue) and filling the
//! buffers the guest posts on the receiveq with the backend's received bytes.
//!
//! Features: VIRTIO_F_VERSION_1, and VIRTIO_CONSOLE_F_SIZE when the VMM configures a console
//! size. MULTIPORT and EMERG_WRITE are not offered; the configuration space is read-only.
//!
//! Transmit: each chain's readable bytes go to the backend in order. When the backend takes
//! fewer bytes than offered (its queue is full) the chain stays in progress and transmission
//! resumes on the next [`ConsoleEvent::TxReady`] or transmitq notification; the chain is returned
//! (used length 0) once every byte went out.
//!
//! Receive: bytes are taken from the backend only when a receive buffer is available, so nothing
//! is lost when the guest posts no buffers: the backend keeps them until [`ConsoleEvent::RxReady`]
//! or a receiveq notification. (Bytes read from the backend beyond the buffer that was being
//! filled, at most 64, wait in the device for the next buffer.)
//!
//! Bad chains (failing the [`crate::queue`] checks, or a transmit chain with device-writable
//! buffers, or a receive chain with device-readable ones) are returned unused with length 0;
//! unusable queues put the device into DEVICE_NEEDS_RESET.

use vmm_core::memory::GuestMemory;

use crate::feature::VERSION_1;
use crate::mmio::{DeviceError, Notify, VirtioDevice};
use crate::pair::{self, Pumps, QueuePair, queue_err};
use crate::queue::{DescChain, Queue};

/// DeviceID of a console.
pub const DEVICE_ID: u32 = 3;
pub use crate::pair::{PairEvent, RECEIVEQ, TRANSMITQ};
/// Longest descriptor chain accepted.
pub const MAX_CHAIN: usize = 16;
/// Size of the configuration space (`cols`, `rows`, `max_nr_ports`, `emerg_wr`).
pub const CONFIG_SIZE: usize = 12;
const CHUNK: usize = 64;

/// virtio-console feature bits.
pub mod feature {
    /// VIRTIO_CONSOLE_F_SIZE: `cols` and `rows` are valid.
    pub const SIZE: u64 = 1 << 0;
}

/// The byte stream behind the console (in the VMM: the serial driver PD's queues).
pub trait ConsoleBackend {
    /// Sends bytes from the guest; returns how many were taken (fewer when full).
    fn write(&mut self, bytes: &[u8]) -> usize;
    /// Moves received bytes into `buf`; returns how many.
    fn read(&mut self, buf: &mut [u8]) -> usize;
}

/// Backend events the VMM delivers through [`crate::mmio::MmioTransport::device_event`].
pub type ConsoleEvent = PairEvent;

/// Console configuration chosen by the VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// `(cols, rows)`, offered with VIRTIO_CONSOLE_F_SIZE.
    pub size: Option<(u16, u16)>,
    /// QueueNumMax of both queues (a power of two, at most 32768).
    pub queue_size: u16,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            size: None,
            queue_size: 64,
        }
    }
}

/// Why a console could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleConfigError {
    /// `queue_size` is 0, not a power of two, or above 32768.
    QueueSize,
}

/// Counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsoleStats {
    /// Bytes sent to the backend.
    pub tx_bytes: u64,
    /// Bytes delivered to the guest.
    pub rx_bytes: u64,
    /// Chains returned unused.
    pub bad_chains: u64,
}

/// Transmit progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    /// No chain in progress.
    Idle,
    /// `tx_chain` is being sent; `sent` bytes are out.
    Sending { sent: u32 },
}

/// The virtio-console device.
pub struct ConsoleDevice<B: ConsoleBackend> {
    backend: B,
    config: ConsoleConfig,
    queue_sizes: [u16; 2],
    acked: u64,
    tx: Tx,
    tx_chain: DescChain<MAX_CHAIN>,
    rx_chain: DescChain<MAX_CHAIN>,
    carry: [u8; CHUNK],
    carry_start: usize,
    carry_end: usize,
    stats: ConsoleStats,
}

impl<B: ConsoleBackend> ConsoleDevice<B> {
    /// A console over `backend`.
    pub fn new(backend: B, config: ConsoleConfig) -> Result<Self, ConsoleConfigError> {
        let qs = config.queue_size;
        if qs == 0 || !qs.is_power_of_two() || qs > crate::queue::MAX_QUEUE_SIZE {
            return Err(ConsoleConfigError::QueueSize);
        }
        Ok(ConsoleDevice {
            backend,
            config,
            queue_sizes: [qs, qs],
            acked: 0,
            tx: Tx::Idle,
            tx_chain: DescChain::new(),
            rx_chain: DescChain::new(),
            carry: [0; CHUNK],
            carry_start: 0,
            carry_end: 0,
            stats: ConsoleStats::default(),
        })
    }
    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }
    /// Counters.
    pub fn stats(&self) -> &ConsoleStats {
        &self.stats
    }
    /// The negotiated features (0 before activation).
    pub fn acked_features(&self) -> u64 {
        self.acked
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE] {
        let mut c = [0u8; CONFIG_SIZE];
        if let Some((cols, rows)) = self.config.size {
            c[0..2].copy_from_slice(&cols.to_le_bytes());
            c[2..4].copy_from_slice(&rows.to_le_bytes());
        }
        c[4..8].copy_from_slice(&1u32.to_le_bytes());
        c
    }

    fn carry_len(&self) -> usize {
        self.carry_end.saturating_sub(self.carry_start)
    }

    fn fill_carry(&mut self) -> usize {
        if self.carry_len() == 0 {
            let n = self.backend.read(&mut self.carry).min(CHUNK);
            self.carry_start = 0;
            self.carry_end = n;
        }
        self.carry_len()
    }
}

impl<B: ConsoleBackend> QueuePair for ConsoleDevice<B> {
    fn pump_tx<M: GuestMemory>(
        &mut self,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<bool, DeviceError> {
        let Some(q) = queues.get_mut(usize::from(TRANSMITQ)).filter(|q| q.ready()) else {
            return Ok(false);
        };
        let err = queue_err(TRANSMITQ);
        let mut used = false;
        let mut budget = q.size();
        loop {
            if let Tx::Sending { mut sent } = self.tx {
                let total = self.tx_chain.readable_len();
                while sent < total {
                    let mut buf = [0u8; CHUNK];
                    let n = core::cmp::min(CHUNK as u32, total - sent) as usize;
                    let chunk = buf.get_mut(..n).unwrap_or(&mut []);
                    if self.tx_chain.read(&*mem, u64::from(sent), chunk).is_err() {
                        break;
                    }
                    let w = self.backend.write(chunk).min(n);
                    sent += w as u32;
                    self.stats.tx_bytes += w as u64;
                    if w < n {
                        self.tx = Tx::Sending { sent };
                        return Ok(used);
                    }
                }
                self.tx = Tx::Idle;
                q.add_used(mem, self.tx_chain.head(), 0).map_err(&err)?;
                used = true;
            }
            if budget == 0 || !q.pop_into(&mut *mem, &mut self.tx_chain).map_err(&err)? {
                break;
            }
            budget -= 1;
            if self.tx_chain.error().is_some() || self.tx_chain.writable_len() != 0 {
                self.stats.bad_chains += 1;
                q.add_used(mem, self.tx_chain.head(), 0).map_err(&err)?;
                used = true;
                continue;
            }
            self.tx = Tx::Sending { sent: 0 };
        }
        Ok(used)
    }

    fn pump_rx<M: GuestMemory>(
        &mut self,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<bool, DeviceError> {
        let Some(q) = queues.get_mut(usize::from(RECEIVEQ)).filter(|q| q.ready()) else {
            return Ok(false);
        };
        let err = queue_err(RECEIVEQ);
        let mut used = false;
        let mut budget = q.size();
        // A buffer first, then bytes: without buffers the bytes stay in the backend.
        while budget > 0 && q.pending(&*mem).map_err(&err)? > 0 && self.fill_carry() > 0 {
            if !q.pop_into(&mut *mem, &mut self.rx_chain).map_err(&err)? {
                break;
            }
            budget -= 1;
            let head = self.rx_chain.head();
            if self.rx_chain.error().is_some() || self.rx_chain.readable_len() != 0 {
                self.stats.bad_chains += 1;
                q.add_used(mem, head, 0).map_err(&err)?;
                used = true;
                continue;
            }
            let cap = self.rx_chain.writable_len();
            let mut off = 0u32;
            while off < cap && self.fill_carry() > 0 {
                let n = core::cmp::min(self.carry_len() as u32, cap - off) as usize;
                let Some(src) = self.carry.get(self.carry_start..self.carry_start + n) else {
                    break;
                };
                if self.rx_chain.write(mem, u64::from(off), src).is_err() {
                    break;
                }
                self.carry_start += n;
                off += n as u32;
                self.stats.rx_bytes += n as u64;
            }
            q.add_used(mem, head, off).map_err(&err)?;
            used = true;
        }
        Ok(used)
    }
}

impl<B: ConsoleBackend> VirtioDevice for ConsoleDevice<B> {
    type Event = ConsoleEvent;

    fn device_id(&self) -> u32 {
        DEVICE_ID
    }
    fn device_features(&self) -> u64 {
        let size = if self.config.size.is_some() {
            feature::SIZE
        } else {
            0
        };
        VERSION_1 | size
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) -> bool {
        crate::mmio::read_config_bytes(&self.config_bytes(), offset, data)
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) -> bool {
        crate::mmio::config_in_bounds(CONFIG_SIZE, offset, data.len())
    }
    fn activate<M: GuestMemory>(
        &mut self,
        features: u64,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<Notify, DeviceError> {
        self.acked = features;
        pair::run(self, Pumps::BOTH, queues, mem)
    }
    fn queue_notify<M: GuestMemory>(
        &mut self,
        queue: u16,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<Notify, DeviceError> {
        pair::run(self, Pumps::of_queue(queue), queues, mem)
    }
    fn event<M: GuestMemory>(
        &mut self,
        event: ConsoleEvent,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<Notify, DeviceError> {
        pair::run(self, Pumps::of_event(event), queues, mem)
    }
    fn reset(&mut self) {
        self.tx = Tx::Idle;
        self.acked = 0;
    }
}
