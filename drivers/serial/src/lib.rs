//! Serial driver PD `serial_driver`: owns the PL011 UART (MMIO page and IRQ) and serves one
//! client through two sDDF 0.7.0 serial queues, as sDDF's PL011 driver does.
//!
//! - TX queue (client → driver), [`TX_CHANNEL`]: on a notification (and on the TX interrupt)
//!   bytes move from the queue into the UART while its TX FIFO is not full (UARTFR.TXFF). When
//!   the FIFO fills with bytes still queued, the TX interrupt (UARTIMSC.TXIM) is enabled and
//!   draining continues when it fires; it is disabled again once the queue is empty. After
//!   freeing queue space the client is notified only if it asked (`producer_signalled == 0`).
//! - RX queue (driver → client), [`RX_CHANNEL`]: on the RX / receive-timeout interrupts the RX
//!   FIFO is drained (while !UARTFR.RXFE, at most [`RX_BURST`] bytes per interrupt) into the
//!   queue and the client is notified once if bytes were added; bytes that find the queue full
//!   are dropped and counted.
//! - IRQ ([`IRQ_CHANNEL`]): UARTMIS is read and cleared (UARTICR) before the work, and the IRQ is
//!   acknowledged through [`DeferredAction::IrqAck`], so the ack rides on the next receive.
//!
//! The client is untrusted: corrupt queue indices become a [`DriverError`], counted and logged
//! by the event loop, never a panic; the other queue and the UART go on working.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod mem;
pub mod pl011;

use microkit_rt::{
    Channel, ChannelSet, DeferredAction, Handler, Kernel, KernelError, debug_println,
};
use sddf_queue::{EnqueueError, QueueError, SerialConsumer, SerialProducer, SetupError};

pub use mem::QueueMem;
pub use pl011::Uart;
use pl011::{cr, dr, fr, int, lcr_h, reg};

/// Constants generated from the system description (see build.rs).
#[allow(non_upper_case_globals, dead_code, missing_docs, unsafe_code)]
pub mod system {
    include!(concat!(env!("OUT_DIR"), "/system.rs"));
}

/// The IRQ of the PL011 (QEMU virt: SPI 1 = INTID 33).
pub const IRQ_CHANNEL: Channel = system::IRQ_33;
/// The client's TX queue (client → driver) is signalled on this channel.
pub const TX_CHANNEL: Channel = system::VMM_1;
/// The client's RX queue (driver → client) is signalled on this channel.
pub const RX_CHANNEL: Channel = system::VMM_2;

/// Most bytes taken from the RX FIFO per interrupt: bounds the handler even if the device keeps
/// RXFE clear; what is left keeps the (level) interrupt asserted and is taken next time.
pub const RX_BURST: usize = 256;
/// Most polls of UARTFR.BUSY while disabling the UART at start-up.
pub const BUSY_POLLS: usize = 100_000;

/// Which queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Client → driver.
    Tx,
    /// Driver → client.
    Rx,
}

/// What can go wrong in the driver. None of it stops the PD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverError {
    /// A queue's shared memory could not be viewed as atomics.
    View(microkit_rt::RegionError),
    /// A data region is larger than a `u32` capacity.
    DataRegionTooLarge,
    /// A queue could not be attached (its indices were already inconsistent, or the regions are
    /// too small); attaching is retried on every event.
    Setup(Queue, SetupError),
    /// The client corrupted a queue's indices.
    Corrupt(Queue, QueueError),
    /// A queue's memory is not available at all (its region was not mapped).
    NoQueue(Queue),
    /// A notification or IRQ ack failed.
    Kernel(KernelError),
}

impl core::fmt::Display for DriverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DriverError::View(e) => write!(f, "queue memory: {e:?}"),
            DriverError::DataRegionTooLarge => f.write_str("data region larger than 4 GiB"),
            DriverError::Setup(q, e) => write!(f, "{q:?} queue: cannot attach: {e}"),
            DriverError::Corrupt(q, e) => write!(f, "{q:?} queue corrupted by the client: {e}"),
            DriverError::NoQueue(q) => write!(f, "{q:?} queue not mapped"),
            DriverError::Kernel(e) => write!(f, "kernel: {e}"),
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes written to the UART.
    pub tx_bytes: u64,
    /// Bytes read from the UART and queued for the client.
    pub rx_bytes: u64,
    /// Bytes read from the UART and dropped: RX queue full (or unusable).
    pub rx_dropped: u64,
    /// Bytes read with an error flag (framing, parity, break, overrun) in UARTDR; still queued.
    pub rx_line_errors: u64,
    /// Interrupts handled.
    pub irqs: u64,
    /// Times the TX FIFO filled with bytes still queued (TXIM enabled).
    pub tx_fifo_full: u64,
    /// Queue errors (corrupt indices, failed attaches) caused by the client.
    pub queue_errors: u64,
}

/// A queue handle, attached lazily: a client that left garbage in the indices before the driver
/// started gets an error each event until it fixes them, not a dead driver.
enum Slot<'q, H> {
    Attached(H),
    Detached(Option<QueueMem<'q>>),
}

/// The serial driver: PD logic over a kernel `K` and a UART `U`.
pub struct SerialDriver<'q, K: Kernel, U: Uart> {
    k: K,
    uart: U,
    tx: Slot<'q, SerialConsumer<'q>>,
    rx: Slot<'q, SerialProducer<'q>>,
    /// Shadow of UARTIMSC (the driver is its only writer).
    imsc: u32,
    stats: Stats,
    deferred: Option<DeferredAction>,
}

fn attach_tx(m: QueueMem<'_>) -> Result<SerialConsumer<'_>, DriverError> {
    SerialConsumer::new(m.header, m.data, m.capacity()?)
        .map_err(|e| DriverError::Setup(Queue::Tx, e))
}

fn attach_rx(m: QueueMem<'_>) -> Result<SerialProducer<'_>, DriverError> {
    SerialProducer::new(m.header, m.data, m.capacity()?)
        .map_err(|e| DriverError::Setup(Queue::Rx, e))
}

/// Keeps the first error.
fn first(acc: &mut Result<(), DriverError>, r: Result<(), DriverError>) {
    if acc.is_ok() {
        *acc = r;
    }
}

impl<'q, K: Kernel, U: Uart> SerialDriver<'q, K, U> {
    /// Initialises the driver: configures the UART (disabled while programming; 8 data bits, no
    /// parity, one stop bit; FIFOs on; RX and receive-timeout interrupts; UART, TX and RX on;
    /// the baud rate is left as it is), then moves whatever the client already queued. A queue
    /// given as `None` is not mapped; its events are reported as errors.
    pub fn new(k: K, uart: U, tx: Option<QueueMem<'q>>, rx: Option<QueueMem<'q>>) -> Self {
        let mut d = SerialDriver {
            k,
            uart,
            tx: Slot::Detached(tx),
            rx: Slot::Detached(rx),
            imsc: 0,
            stats: Stats::default(),
            deferred: None,
        };
        d.configure();
        debug_println!(
            d.k,
            "serial_driver: PL011 configured (8N1, FIFOs, RX interrupts)"
        );
        for r in [d.attach_rx(), d.service_tx()] {
            if let Err(e) = r {
                d.stats.queue_errors += 1;
                debug_println!(d.k, "serial_driver: init: {}", e);
            }
        }
        d
    }

    fn configure(&mut self) {
        // TRM 3.3.8 (UARTCR): let what is being sent (UARTFR.BUSY: FIFO or shift register not
        // empty) go out, as sDDF does, so nothing earlier output is lost; disable; flush the TX
        // FIFO by clearing FEN; reprogram; enable. The poll is bounded: a UART that stays busy
        // is reprogrammed anyway.
        for _ in 0..BUSY_POLLS {
            if self.uart.read32(reg::FR) & fr::BUSY == 0 {
                break;
            }
        }
        self.uart.write32(reg::CR, 0);
        self.uart.write32(reg::LCR_H, lcr_h::WLEN_8);
        self.uart.write32(reg::LCR_H, lcr_h::WLEN_8 | lcr_h::FEN);
        self.imsc = int::RX | int::RT;
        self.uart.write32(reg::IMSC, self.imsc);
        self.uart.write32(reg::ICR, int::ALL);
        self.uart.write32(reg::CR, cr::UARTEN | cr::TXE | cr::RXE);
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The kernel (tests look at what it recorded).
    pub fn kernel(&self) -> &K {
        &self.k
    }

    fn set_txim(&mut self, on: bool) {
        let imsc = if on {
            self.imsc | int::TX
        } else {
            self.imsc & !int::TX
        };
        if imsc != self.imsc {
            self.imsc = imsc;
            self.uart.write32(reg::IMSC, imsc);
        }
    }

    /// Moves bytes from the TX queue into the TX FIFO while it has room; enables the TX
    /// interrupt if the FIFO filled first, disables it once the queue is empty; notifies the
    /// client if it freed space the client asked to hear about.
    fn service_tx(&mut self) -> Result<(), DriverError> {
        if let Slot::Detached(m) = &self.tx {
            let m = m.ok_or(DriverError::NoQueue(Queue::Tx))?;
            self.tx = Slot::Attached(attach_tx(m)?);
        }
        let Slot::Attached(tx) = &mut self.tx else {
            return Err(DriverError::NoQueue(Queue::Tx));
        };
        let mut result = Ok(());
        let mut fifo_full = false;
        loop {
            if self.uart.read32(reg::FR) & fr::TXFF != 0 {
                fifo_full = true;
                break;
            }
            match tx.dequeue_local() {
                Ok(Some(b)) => {
                    self.uart.write32(reg::DR, u32::from(b));
                    self.stats.tx_bytes += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    result = Err(DriverError::Corrupt(Queue::Tx, e));
                    break;
                }
            }
        }
        // Hand back what was sent, even if the client then corrupted the indices.
        tx.publish();
        let notify = tx.take_notify();
        // More queued than the FIFO took: wait for the TX interrupt. Otherwise (queue empty, or
        // unusable) the interrupt would only fire for nothing.
        let pending = fifo_full && matches!(tx.available(), Ok(n) if n > 0);
        if pending {
            self.stats.tx_fifo_full += 1;
        }
        self.set_txim(pending);
        if notify {
            first(
                &mut result,
                self.k.notify(TX_CHANNEL).map_err(DriverError::Kernel),
            );
        }
        result
    }

    /// Attaches the RX queue if it is not yet.
    fn attach_rx(&mut self) -> Result<(), DriverError> {
        if let Slot::Detached(m) = &self.rx {
            match m.map(attach_rx) {
                Some(Ok(p)) => self.rx = Slot::Attached(p),
                Some(Err(e)) => return Err(e),
                None => return Err(DriverError::NoQueue(Queue::Rx)),
            }
        }
        Ok(())
    }

    /// Moves bytes from the RX FIFO into the RX queue (dropping and counting what does not
    /// fit); notifies the client once if bytes were added.
    fn service_rx(&mut self) -> Result<(), DriverError> {
        let mut result = self.attach_rx();
        for _ in 0..RX_BURST {
            if self.uart.read32(reg::FR) & fr::RXFE != 0 {
                break;
            }
            let word = self.uart.read32(reg::DR);
            if word & dr::ERRORS != 0 {
                self.stats.rx_line_errors += 1;
            }
            let byte = (word & dr::DATA) as u8;
            let Slot::Attached(rx) = &mut self.rx else {
                self.stats.rx_dropped += 1;
                continue;
            };
            match rx.enqueue_local(byte) {
                Ok(()) => self.stats.rx_bytes += 1,
                Err(EnqueueError::Full) => self.stats.rx_dropped += 1,
                Err(EnqueueError::Corrupt(e)) => {
                    self.stats.rx_dropped += 1;
                    first(&mut result, Err(DriverError::Corrupt(Queue::Rx, e)));
                }
            }
        }
        if let Slot::Attached(rx) = &mut self.rx {
            rx.publish();
            if rx.take_notify() {
                first(
                    &mut result,
                    self.k.notify(RX_CHANNEL).map_err(DriverError::Kernel),
                );
            }
        }
        result
    }

    /// The UART interrupt: reads and clears UARTMIS, then serves RX and TX.
    fn service_irq(&mut self) -> Result<(), DriverError> {
        self.stats.irqs += 1;
        let mis = self.uart.read32(reg::MIS);
        // Clear first: a condition that arises while serving raises the interrupt again.
        self.uart.write32(reg::ICR, mis & int::ALL);
        let mut result = Ok(());
        if mis & (int::RX | int::RT) != 0 {
            first(&mut result, self.service_rx());
        }
        if mis & int::TX != 0 {
            first(&mut result, self.service_tx());
        }
        result
    }
}

impl<K: Kernel, U: Uart> Handler for SerialDriver<'_, K, U> {
    type Error = DriverError;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), DriverError> {
        let mut result = Ok(());
        // The ack first, so no error below can leave the IRQ masked.
        if channels.contains(IRQ_CHANNEL) {
            self.deferred = Some(DeferredAction::IrqAck(IRQ_CHANNEL));
            first(&mut result, self.service_irq());
        }
        if channels.contains(TX_CHANNEL) {
            first(&mut result, self.service_tx());
        }
        // RX_CHANNEL: the client freed RX space. The driver never waits for it (bytes that do
        // not fit are dropped), but sDDF's consumer may signal once, as the flag starts at 0.
        let known =
            (1 << IRQ_CHANNEL.index()) | (1 << TX_CHANNEL.index()) | (1 << RX_CHANNEL.index());
        let unexpected = channels.bits() & !known;
        if unexpected != 0 {
            debug_println!(
                self.k,
                "serial_driver: ignored notification on channels {:#x}",
                unexpected
            );
        }
        if matches!(
            result,
            Err(DriverError::Setup(..) | DriverError::Corrupt(..))
        ) {
            self.stats.queue_errors += 1;
        }
        result
    }

    fn take_deferred_action(&mut self) -> Option<DeferredAction> {
        self.deferred.take()
    }
}

/// The driver as the target builds it, from the regions system.xml maps into the PD.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn from_system<K: Kernel>(
    mut k: K,
) -> SerialDriver<'static, K, Option<microkit_rt::SharedRegion>> {
    let uart = match system::uart_region() {
        Ok(r) if r.size() >= reg::SPAN => Some(r),
        Ok(r) => {
            debug_println!(k, "serial_driver: uart region too small ({:#x})", r.size());
            None
        }
        Err(e) => {
            debug_println!(k, "serial_driver: uart region: {:?}", e);
            None
        }
    };
    let mut queue = |q: Queue, header, data| {
        let mem = match (header, data) {
            (Ok(h), Ok(d)) => QueueMem::from_regions(h, d),
            _ => Err(DriverError::NoQueue(q)),
        };
        mem.map_err(|e| debug_println!(k, "serial_driver: {:?} queue: {}", q, e))
            .ok()
    };
    let tx = queue(
        Queue::Tx,
        system::serial_tx_queue_vmm_region(),
        system::serial_tx_data_vmm_region(),
    );
    let rx = queue(
        Queue::Rx,
        system::serial_rx_queue_vmm_region(),
        system::serial_rx_data_vmm_region(),
    );
    SerialDriver::new(k, uart, tx, rx)
}
