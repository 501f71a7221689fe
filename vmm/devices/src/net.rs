//! The virtio-net device model (virtio 1.2 §5.1), one queue pair: owns moving the guest's
//! Ethernet frames from the transmitq to a [`NetBackend`] (in the VMM: the network
//! virtualiser's queues) and the backend's received frames into the buffers the guest posts on
//! the receiveq.
//!
//! Features: VIRTIO_F_VERSION_1, VIRTIO_NET_F_MAC (the configured MAC address in the
//! configuration space) and, when configured, VIRTIO_NET_F_STATUS (the link state, up unless
//! the VMM says otherwise, [`NetDevice::set_link_up`]). No offloads (CSUM, GSO), no mergeable
//! receive buffers, no control queue, no multiqueue. The configuration space (`mac`, `status`:
//! [`CONFIG_SIZE`] bytes) is read-only: writes inside it are ignored.
//!
//! Every buffer starts with the 12-byte `virtio_net_hdr` (VERSION_1 always includes
//! `num_buffers`), followed by one whole Ethernet frame without FCS: [`ETH_HLEN`] to
//! [`MAX_FRAME_LEN`] bytes.
//!
//! Transmit: each chain must be device-readable only and hold the header and a frame of a valid
//! length; the header's `gso_type` must be VIRTIO_NET_HDR_GSO_NONE (no GSO is offered) and its
//! other fields are ignored (`flags`: the spec has the device ignore bits it does not
//! recognise; NEEDS_CSUM needs VIRTIO_NET_F_CSUM, never offered). The frame is copied out and
//! handed to the backend; when the backend is full ([`TxFull`]) the frame waits in the device
//! and the chain is not returned until the backend takes it, on the next
//! [`NetEvent::TxReady`] or transmitq notification. Chains that fail any check are returned
//! (used length 0) and counted, the frame dropped. Returned transmit chains have used length 0.
//!
//! Receive: a frame is taken from the backend only when a receive buffer is available, so
//! frames wait in the backend while the guest posts none. Each chain must be device-writable
//! only; the frame goes into one chain (no MRG_RXBUF) behind a header that is zero but for
//! `num_buffers = 1` (§5.1.6.4.1), and the used length is 12 + the frame length. A chain too
//! short for the header is a bad chain (returned with length 0; the frame waits for the next
//! buffer); a chain that holds the header but not the whole frame gets length 0 and the frame
//! is dropped (both counted). A backend frame shorter than [`ETH_HLEN`] or longer than
//! [`MAX_FRAME_LEN`] is dropped and counted.
//!
//! As in the other devices, an unusable queue puts the device into DEVICE_NEEDS_RESET
//! ([`DeviceError::Queue`]); nothing a guest or a backend does leads to a panic.

use vmm_core::memory::GuestMemory;

use crate::feature::VERSION_1;
use crate::mmio::{DeviceError, Notify, VirtioDevice};
use crate::pair::{self, Pumps, QueuePair, queue_err};
use crate::queue::{DescChain, Queue};

/// DeviceID of a network card.
pub const DEVICE_ID: u32 = 1;
pub use crate::pair::{PairEvent, RECEIVEQ, TRANSMITQ};
/// Longest descriptor chain accepted.
pub const MAX_CHAIN: usize = 16;
/// Size of `virtio_net_hdr` with VIRTIO_F_VERSION_1 (flags, gso_type, hdr_len, gso_size,
/// csum_start, csum_offset, num_buffers).
pub const HDR_LEN: usize = 12;
/// Length of an Ethernet header (destination, source, EtherType): the shortest frame accepted.
pub const ETH_HLEN: usize = 14;
/// Longest Ethernet frame without FCS (1500-byte payload): the longest frame accepted.
pub const MAX_FRAME_LEN: usize = 1514;
/// Size of the configuration space: `mac` (6 bytes), `status` (u16).
pub const CONFIG_SIZE: usize = 8;
/// `virtio_net_hdr.gso_type`: no segmentation.
pub const GSO_NONE: u8 = 0;
/// Offset of `gso_type` in the header.
const HDR_GSO_TYPE: usize = 1;
/// Offset of `num_buffers` in the header.
const HDR_NUM_BUFFERS: usize = 10;

/// virtio-net feature bits (§5.1.3).
pub mod feature {
    /// VIRTIO_NET_F_MAC (5): the configuration space holds the MAC address.
    pub const MAC: u64 = 1 << 5;
    /// VIRTIO_NET_F_STATUS (16): the configuration space holds the link status.
    pub const STATUS: u64 = 1 << 16;
    /// VIRTIO_NET_F_CSUM (0): never offered.
    pub const CSUM: u64 = 1 << 0;
    /// VIRTIO_NET_F_MRG_RXBUF (15): never offered.
    pub const MRG_RXBUF: u64 = 1 << 15;
}

/// `status` bit: the link is up.
pub const S_LINK_UP: u16 = 1;

/// The backend had no room for a frame: the device keeps it and offers it again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxFull;

/// The frame path behind the device (in the VMM: the network virtualiser PD's queues).
pub trait NetBackend {
    /// Sends one Ethernet frame (without FCS, [`ETH_HLEN`]..=[`MAX_FRAME_LEN`] bytes).
    /// [`TxFull`] when there is no room: nothing was taken, the same frame comes again.
    fn transmit(&mut self, frame: &[u8]) -> Result<(), TxFull>;
    /// Moves the next received frame into `buf` ([`MAX_FRAME_LEN`] bytes) and returns its
    /// length, or `None` when there is none. A length outside
    /// [`ETH_HLEN`]..=[`MAX_FRAME_LEN`] drops the frame (counted).
    fn receive(&mut self, buf: &mut [u8; MAX_FRAME_LEN]) -> Option<usize>;
}

/// Backend events the VMM delivers through [`crate::mmio::MmioTransport::device_event`].
pub type NetEvent = PairEvent;

/// Network card configuration chosen by the VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    /// The MAC address (VIRTIO_NET_F_MAC).
    pub mac: [u8; 6],
    /// Offer VIRTIO_NET_F_STATUS (link state in the configuration space).
    pub link_status: bool,
    /// QueueNumMax of both queues (a power of two, at most 32768).
    pub queue_size: u16,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            // A locally administered unicast address.
            mac: [0x02, 0x00, 0x00, 0x00, 0x00, 0x01],
            link_status: true,
            queue_size: 256,
        }
    }
}

/// Why a network card could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetConfigError {
    /// `queue_size` is 0, not a power of two, or above 32768.
    QueueSize,
}

/// Counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetStats {
    /// Frames handed to the backend.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// Bytes of those frames (headers not counted).
    pub rx_bytes: u64,
    /// Chains returned unused: failing the queue checks, the wrong direction, or too short
    /// for the header.
    pub bad_chains: u64,
    /// Transmitted frames dropped as shorter than [`ETH_HLEN`].
    pub tx_runts: u64,
    /// Transmitted frames dropped as longer than [`MAX_FRAME_LEN`].
    pub tx_oversized: u64,
    /// Transmitted frames dropped for asking for segmentation (`gso_type` not NONE).
    pub tx_gso: u64,
    /// Times the backend was full.
    pub tx_full: u64,
    /// Received frames dropped: longer than the receive buffer they were given.
    pub rx_too_long: u64,
    /// Received frames dropped: the backend gave a length outside the frame limits.
    pub rx_bad_frames: u64,
}

/// Why a transmit chain is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxReject {
    BadChain,
    Runt,
    Oversized,
    Gso,
}

/// The virtio-net device.
pub struct NetDevice<B: NetBackend> {
    backend: B,
    config: NetConfig,
    link_up: bool,
    queue_sizes: [u16; 2],
    acked: u64,
    tx_chain: DescChain<MAX_CHAIN>,
    rx_chain: DescChain<MAX_CHAIN>,
    /// A popped transmit chain's frame the backend has not taken yet: (head, length).
    tx_waiting: Option<(u16, usize)>,
    tx_frame: [u8; MAX_FRAME_LEN],
    /// Length of a frame taken from the backend and not yet delivered (0: none).
    rx_held: usize,
    rx_frame: [u8; MAX_FRAME_LEN],
    stats: NetStats,
}

impl<B: NetBackend> NetDevice<B> {
    /// A network card over `backend`.
    pub fn new(backend: B, config: NetConfig) -> Result<Self, NetConfigError> {
        let qs = config.queue_size;
        if qs == 0 || !qs.is_power_of_two() || qs > crate::queue::MAX_QUEUE_SIZE {
            return Err(NetConfigError::QueueSize);
        }
        Ok(NetDevice {
            backend,
            config,
            link_up: true,
            queue_sizes: [qs, qs],
            acked: 0,
            tx_chain: DescChain::new(),
            rx_chain: DescChain::new(),
            tx_waiting: None,
            tx_frame: [0; MAX_FRAME_LEN],
            rx_held: 0,
            rx_frame: [0; MAX_FRAME_LEN],
            stats: NetStats::default(),
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
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }
    /// The negotiated features (0 before activation).
    pub fn acked_features(&self) -> u64 {
        self.acked
    }
    /// Sets the link state reported with VIRTIO_NET_F_STATUS; the VMM then calls
    /// [`crate::mmio::MmioTransport::config_changed`] to tell the driver.
    pub fn set_link_up(&mut self, up: bool) {
        self.link_up = up;
    }
    /// Whether a transmitted frame waits for room in the backend.
    pub fn tx_waiting(&self) -> bool {
        self.tx_waiting.is_some()
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE] {
        let mut c = [0u8; CONFIG_SIZE];
        c[..6].copy_from_slice(&self.config.mac);
        if self.config.link_status && self.link_up {
            c[6..8].copy_from_slice(&S_LINK_UP.to_le_bytes());
        }
        c
    }

    /// Checks the popped transmit chain and copies its frame into `tx_frame`.
    fn take_tx_frame<M: GuestMemory>(&mut self, mem: &M) -> Result<usize, TxReject> {
        let chain = &self.tx_chain;
        if chain.error().is_some() || chain.writable_len() != 0 {
            return Err(TxReject::BadChain);
        }
        let total = chain.readable_len() as usize;
        let Some(len) = total.checked_sub(HDR_LEN) else {
            return Err(TxReject::BadChain);
        };
        if len < ETH_HLEN {
            return Err(TxReject::Runt);
        }
        if len > MAX_FRAME_LEN {
            return Err(TxReject::Oversized);
        }
        let mut hdr = [0u8; HDR_LEN];
        chain
            .read(mem, 0, &mut hdr)
            .map_err(|_| TxReject::BadChain)?;
        if hdr[HDR_GSO_TYPE] != GSO_NONE {
            return Err(TxReject::Gso);
        }
        let dst = self.tx_frame.get_mut(..len).ok_or(TxReject::Oversized)?;
        chain
            .read(mem, HDR_LEN as u64, dst)
            .map_err(|_| TxReject::BadChain)?;
        Ok(len)
    }

    /// A frame from the backend into `rx_frame`, if there is one and none is held already.
    /// `false`: nothing to deliver.
    fn hold_rx_frame(&mut self) -> bool {
        if self.rx_held == 0 {
            match self.backend.receive(&mut self.rx_frame) {
                Some(n) if (ETH_HLEN..=MAX_FRAME_LEN).contains(&n) => self.rx_held = n,
                Some(_) => self.stats.rx_bad_frames += 1,
                None => return false,
            }
        }
        true
    }

    /// Writes the held frame behind a header into the popped receive chain; its used length.
    fn deliver<M: GuestMemory>(&mut self, mem: &mut M) -> Option<u32> {
        let len = self.rx_held;
        let frame = self.rx_frame.get(..len)?;
        let mut hdr = [0u8; HDR_LEN];
        hdr[HDR_NUM_BUFFERS..].copy_from_slice(&1u16.to_le_bytes());
        self.rx_chain.write(mem, 0, &hdr).ok()?;
        self.rx_chain.write(mem, HDR_LEN as u64, frame).ok()?;
        u32::try_from(HDR_LEN + len).ok()
    }
}

impl<B: NetBackend> QueuePair for NetDevice<B> {
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
            if let Some((head, len)) = self.tx_waiting {
                let frame = self.tx_frame.get(..len).unwrap_or(&[]);
                if self.backend.transmit(frame).is_err() {
                    self.stats.tx_full += 1;
                    return Ok(used);
                }
                self.tx_waiting = None;
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += len as u64;
                q.add_used(mem, head, 0).map_err(&err)?;
                used = true;
            }
            if budget == 0 || !q.pop_into(&mut *mem, &mut self.tx_chain).map_err(&err)? {
                break;
            }
            budget -= 1;
            let head = self.tx_chain.head();
            match self.take_tx_frame(&*mem) {
                Ok(len) => self.tx_waiting = Some((head, len)),
                Err(reject) => {
                    let counter = match reject {
                        TxReject::BadChain => &mut self.stats.bad_chains,
                        TxReject::Runt => &mut self.stats.tx_runts,
                        TxReject::Oversized => &mut self.stats.tx_oversized,
                        TxReject::Gso => &mut self.stats.tx_gso,
                    };
                    *counter += 1;
                    q.add_used(mem, head, 0).map_err(&err)?;
                    used = true;
                }
            }
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
        // Bounds the work of one call: chains popped plus bad backend frames.
        let mut budget = q.size();
        // A buffer first, then a frame: without buffers the frames stay in the backend.
        while budget > 0 && q.pending(&*mem).map_err(&err)? > 0 {
            budget -= 1;
            if !self.hold_rx_frame() {
                break;
            }
            if self.rx_held == 0 {
                // A bad backend frame, dropped: try the next.
                continue;
            }
            if !q.pop_into(&mut *mem, &mut self.rx_chain).map_err(&err)? {
                break;
            }
            let head = self.rx_chain.head();
            let chain = &self.rx_chain;
            let room = chain.writable_len() as usize;
            let len = if chain.error().is_some() || chain.readable_len() != 0 || room < HDR_LEN {
                // Unusable: the frame waits for the next buffer.
                self.stats.bad_chains += 1;
                0
            } else if room - HDR_LEN < self.rx_held {
                self.stats.rx_too_long += 1;
                self.rx_held = 0;
                0
            } else if let Some(n) = self.deliver(mem) {
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += self.rx_held as u64;
                self.rx_held = 0;
                n
            } else {
                // Guest memory refused a write the chain checks let through (RAM with holes):
                // as a bad chain.
                self.stats.bad_chains += 1;
                0
            };
            q.add_used(mem, head, len).map_err(&err)?;
            used = true;
        }
        Ok(used)
    }
}

impl<B: NetBackend> VirtioDevice for NetDevice<B> {
    type Event = NetEvent;

    fn device_id(&self) -> u32 {
        DEVICE_ID
    }
    fn device_features(&self) -> u64 {
        let status = if self.config.link_status {
            feature::STATUS
        } else {
            0
        };
        VERSION_1 | feature::MAC | status
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
        event: NetEvent,
        queues: &mut [Queue],
        mem: &mut M,
    ) -> Result<Notify, DeviceError> {
        pair::run(self, Pumps::of_event(event), queues, mem)
    }
    fn reset(&mut self) {
        // The waiting frame's chain belongs to the old queue: the frame is not sent. A frame
        // held from the backend stays for the next driver's first buffer.
        self.tx_waiting = None;
        self.acked = 0;
    }
}
