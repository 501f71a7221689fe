//! The guest's virtio-net card's wire: the network virtualiser `net_virt` (an Ethernet switch
//! between the VMs) over sDDF 0.7.0 network queues and this VMM's two data regions.
//!
//! [`NetQueues`] implements `vmm-devices`' [`NetBackend`] as an sDDF network client:
//!
//! - **TX**: a frame goes into a free buffer of the TX data region (`net_tx_free`, which the
//!   virtualiser fills with the region's buffers at its start and refills as it sends), then its
//!   descriptor into `net_tx_active`. Without a free buffer the card holds the frame
//!   ([`TxFull`]) and this side asks the virtualiser for a signal, which comes as a notification
//!   when buffers return: the VMM then gives the card `TxReady`.
//! - **RX**: at attach every buffer of the RX data region goes into `net_rx_free`; a received
//!   frame's descriptor arrives in `net_rx_active`, is copied out to the card and its buffer
//!   posted again at once. Finding the queue empty, this side asks for a signal: the
//!   virtualiser's notification makes the VMM give the card `RxReady`.
//!
//! The virtualiser is another PD and not trusted: a descriptor outside the data region, a
//! length outside an Ethernet frame's, or corrupt queue indices are counted ([`NetQueueStats`])
//! and never a panic. Notifications to the virtualiser are deferred ([`NetQueues::take_kick`]),
//! one per exit or notification.

use core::sync::atomic::AtomicU16;
use microkit_rt::SharedRegion;
use sddf_queue::net::{NetConsumer, NetProducer};
use sddf_queue::{EnqueueError, NET_BUFFER_SIZE, NetBuffDesc, SetupError, SignalRequest};
use vmm_devices::net::{ETH_HLEN, MAX_FRAME_LEN, NetBackend, TxFull};

/// Buffers of each network queue (net_virt's `QUEUE_CAPACITY`).
pub const QUEUE_CAPACITY: u32 = 64;

/// Counters of the virtualiser's behaviour as this side sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetQueueStats {
    /// Frames queued for sending.
    pub tx_frames: u64,
    /// Times no TX buffer was free (the card held its frame).
    pub tx_full: u64,
    /// Frames taken from the RX queue.
    pub rx_frames: u64,
    /// Descriptors the virtualiser handed over that name no buffer of the region or carry a
    /// bad length (dropped).
    pub bad_descriptors: u64,
    /// Times the virtualiser corrupted a queue's indices.
    pub corrupt: u64,
}

/// The network virtualiser as a [`NetBackend`].
pub struct NetQueues {
    rx_free: NetProducer<'static>,
    rx_active: NetConsumer<'static>,
    tx_free: NetConsumer<'static>,
    tx_active: NetProducer<'static>,
    rx_data: SharedRegion,
    tx_data: SharedRegion,
    kick: bool,
    stats: NetQueueStats,
}

/// The regions of the VMM's network queues, as system.xml maps them.
pub struct NetRegions {
    /// `net_rx_free_P`.
    pub rx_free: &'static [AtomicU16],
    /// `net_rx_active_P`.
    pub rx_active: &'static [AtomicU16],
    /// `net_tx_free_P`.
    pub tx_free: &'static [AtomicU16],
    /// `net_tx_active_P`.
    pub tx_active: &'static [AtomicU16],
    /// `net_rx_data_P`.
    pub rx_data: SharedRegion,
    /// `net_tx_data_P`.
    pub tx_data: SharedRegion,
}

/// Whether `d` names a buffer of a `size`-byte region that holds `len` bytes.
fn fits(d: &NetBuffDesc, len: usize, size: usize) -> Option<usize> {
    let off = usize::try_from(d.io_or_offset).ok()?;
    (len <= NET_BUFFER_SIZE as usize && off.checked_add(len)? <= size).then_some(off)
}

impl NetQueues {
    /// Attaches to the queues: posts every buffer of the RX data region (at most
    /// [`QUEUE_CAPACITY`]) and asks for a signal when frames arrive.
    pub fn attach(r: NetRegions) -> Result<Self, SetupError> {
        let mut q = NetQueues {
            rx_free: NetProducer::new(r.rx_free, QUEUE_CAPACITY)?,
            rx_active: NetConsumer::new(r.rx_active, QUEUE_CAPACITY)?,
            tx_free: NetConsumer::new(r.tx_free, QUEUE_CAPACITY)?,
            tx_active: NetProducer::new(r.tx_active, QUEUE_CAPACITY)?,
            rx_data: r.rx_data,
            tx_data: r.tx_data,
            kick: false,
            stats: NetQueueStats::default(),
        };
        let buffers = (q.rx_data.size() / NET_BUFFER_SIZE as usize).min(QUEUE_CAPACITY as usize);
        for b in 0..buffers {
            let d = NetBuffDesc::new((b * NET_BUFFER_SIZE as usize) as u64, 0);
            if q.rx_free.enqueue(&d).is_err() {
                q.stats.corrupt += 1;
                break;
            }
        }
        let _ = q.rx_free.take_notify();
        let _ = q.rx_active.request_signal();
        Ok(q)
    }

    /// Whether the virtualiser must be notified (frames queued, or RX buffers posted, since
    /// the last call, and it asked for a signal).
    pub fn take_kick(&mut self) -> bool {
        core::mem::take(&mut self.kick)
    }

    /// Counters.
    pub fn stats(&self) -> &NetQueueStats {
        &self.stats
    }

    /// Posts an RX buffer again.
    fn repost(&mut self, offset: u64) {
        match self.rx_free.enqueue(&NetBuffDesc::new(offset, 0)) {
            Ok(()) => self.kick |= self.rx_free.take_notify(),
            Err(EnqueueError::Full) => self.stats.bad_descriptors += 1,
            Err(EnqueueError::Corrupt(_)) => self.stats.corrupt += 1,
        }
    }
}

impl NetBackend for NetQueues {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), TxFull> {
        // Bounded: each pass drops one bad descriptor or ends.
        for _ in 0..=QUEUE_CAPACITY {
            let d = match self.tx_free.dequeue() {
                Ok(Some(d)) => d,
                Ok(None) => match self.tx_free.request_signal() {
                    Ok(SignalRequest::Reprocess) => continue,
                    Ok(SignalRequest::Registered) => {
                        self.stats.tx_full += 1;
                        return Err(TxFull);
                    }
                    Err(_) => {
                        self.stats.corrupt += 1;
                        return Err(TxFull);
                    }
                },
                Err(_) => {
                    self.stats.corrupt += 1;
                    return Err(TxFull);
                }
            };
            let Some(off) = fits(&d, frame.len(), self.tx_data.size()) else {
                self.stats.bad_descriptors += 1;
                continue;
            };
            if self.tx_data.write(off, frame).is_err() {
                self.stats.bad_descriptors += 1;
                continue;
            }
            // A frame is at most MAX_FRAME_LEN bytes (the card checks): it fits a u16.
            let len = frame.len().min(MAX_FRAME_LEN) as u16;
            match self
                .tx_active
                .enqueue(&NetBuffDesc::new(d.io_or_offset, len))
            {
                Ok(()) => {
                    self.stats.tx_frames += 1;
                    self.kick |= self.tx_active.take_notify();
                    return Ok(());
                }
                // Never full (there are as many buffers as entries) unless the virtualiser
                // broke the indices: the frame is dropped, never retried forever.
                Err(_) => {
                    self.stats.corrupt += 1;
                    return Ok(());
                }
            }
        }
        Err(TxFull)
    }

    fn receive(&mut self, buf: &mut [u8; MAX_FRAME_LEN]) -> Option<usize> {
        for _ in 0..2 {
            let d = match self.rx_active.dequeue() {
                Ok(Some(d)) => d,
                Ok(None) => match self.rx_active.request_signal() {
                    Ok(SignalRequest::Reprocess) => continue,
                    _ => return None,
                },
                Err(_) => {
                    self.stats.corrupt += 1;
                    return None;
                }
            };
            let len = usize::from(d.len);
            self.stats.rx_frames += 1;
            let Some(off) = fits(&d, len.min(MAX_FRAME_LEN), self.rx_data.size()) else {
                // Names no buffer of ours: nothing to post again.
                self.stats.bad_descriptors += 1;
                return Some(0);
            };
            let ok = (ETH_HLEN..=MAX_FRAME_LEN).contains(&len)
                && self.rx_data.read(off, &mut buf[..len]).is_ok();
            self.repost(d.io_or_offset);
            if !ok {
                self.stats.bad_descriptors += 1;
                // The card drops (and counts) a frame of this length.
                return Some(if (ETH_HLEN..=MAX_FRAME_LEN).contains(&len) {
                    0
                } else {
                    len
                });
            }
            return Some(len);
        }
        None
    }
}
