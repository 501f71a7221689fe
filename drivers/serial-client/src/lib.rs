//! # serial-client
//!
//! The client side of the serial driver domain for a PD's own messages: [`Console`] owns the
//! producer end of the PD's sDDF 0.7.0 serial TX queue (system.xml maps its header and data
//! regions into the PD and into `serial_driver`, with one channel between them) and
//! [`serial_println!`] writes a formatted line through it, as `microkit_rt::debug_println!`
//! does on the kernel's debug console.
//!
//! - **Whole lines.** Bytes collect in a line buffer ([`LINE_MAX`] bytes) and go into the queue
//!   only as a whole line, in one batch, published at once (`serial_enqueue_batch`): the driver
//!   never sees half a line, so it can keep lines of different PDs apart. A line longer than the
//!   buffer goes out in [`LINE_MAX`]-byte pieces; [`Console::flush`] sends a partial line.
//! - **Signalling.** After publishing, the driver is notified when the queue protocol asks
//!   (`take_notify`: sDDF's serial producer notifies after every batch). The client never waits
//!   for space: at attach it withdraws the signal request (`producer_signalled` starts at 0 =
//!   "signal me"), so the driver never notifies it, and a line that finds the queue full is
//!   dropped and counted ([`Stats::dropped_lines`]), never half-written and never sent around
//!   the driver (which would interleave with the line the driver is sending).
//! - **Fallback.** Without a usable queue — its regions not mapped, or the queue could not be
//!   attached — every line goes to the kernel's debug console (debug kernels only). A line that
//!   meets a queue whose indices the driver corrupted goes there too.
//!
//! A separate crate rather than a module of `sddf-queue`: `sddf-queue` is the protocol alone
//! (sDDF's `queue.h`, no runtime, loom-checked under std), while this writer needs the
//! runtime's [`Kernel`] (notification, debug console) and a channel.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

use core::sync::atomic::{AtomicU8, AtomicU32};
use microkit_rt::{Channel, Kernel, RegionError, SharedRegion};
use sddf_queue::{SerialProducer, SetupError};

/// Bytes of the line buffer: the longest line that reaches the driver in one piece.
pub const LINE_MAX: usize = 256;

/// Why a console writes to the kernel's debug console instead of its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// No queue was given ([`Console::debug_only`]).
    NoQueue,
    /// A region of the queue is not mapped or cannot be viewed as atomics.
    Region(RegionError),
    /// The data region is larger than a `u32` capacity.
    DataRegionTooLarge,
    /// The queue could not be attached (too small, or inconsistent indices).
    Setup(SetupError),
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines (or pieces of an overlong line) published in the queue.
    pub queued_lines: u64,
    /// Lines dropped because the queue had no room for them.
    pub dropped_lines: u64,
    /// Lines written to the kernel's debug console (no usable queue, or a corrupt one).
    pub debug_lines: u64,
    /// Times the queue's indices were found corrupt.
    pub queue_errors: u64,
    /// Notifications of the driver that failed.
    pub notify_errors: u64,
}

/// A PD's console: its serial TX queue to the serial driver, or the debug console.
#[derive(Debug)]
pub struct Console<'q> {
    tx: Result<SerialProducer<'q>, Unusable>,
    channel: Channel,
    line: [u8; LINE_MAX],
    len: usize,
    stats: Stats,
}

impl<'q> Console<'q> {
    /// A console that writes only to the kernel's debug console.
    pub const fn debug_only() -> Console<'static> {
        Console::with(Err(Unusable::NoQueue), Channel::new(0))
    }

    /// A console over the TX queue whose header (`serial_queue_t`) and data region are `header`
    /// and `data` (the whole data region is the capacity), announced to the driver on
    /// `channel`. A queue that cannot be attached leaves the console on the debug console
    /// ([`Console::unusable`] says why).
    pub fn new(channel: Channel, header: &'q [AtomicU32], data: &'q [AtomicU8]) -> Console<'q> {
        let tx = u32::try_from(data.len())
            .map_err(|_| Unusable::DataRegionTooLarge)
            .and_then(|cap| SerialProducer::new(header, data, cap).map_err(Unusable::Setup))
            .map(|mut tx| {
                // sDDF: the consumer signals the producer only when asked; this client never
                // waits for space, so it never asks.
                tx.cancel_signal();
                tx
            });
        Console::with(tx, channel)
    }

    const fn with(tx: Result<SerialProducer<'q>, Unusable>, channel: Channel) -> Console<'q> {
        Console {
            tx,
            channel,
            line: [0; LINE_MAX],
            len: 0,
            stats: Stats {
                queued_lines: 0,
                dropped_lines: 0,
                debug_lines: 0,
                queue_errors: 0,
                notify_errors: 0,
            },
        }
    }

    /// Whether lines go to the serial driver (`None`) or, and why, to the debug console.
    pub fn unusable(&self) -> Option<Unusable> {
        self.tx.as_ref().err().copied()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// A `core::fmt::Write` over this console that notifies through `k`.
    pub fn writer<'a, K: Kernel>(&'a mut self, k: &'a mut K) -> Writer<'a, 'q, K> {
        Writer { console: self, k }
    }

    /// Writes bytes: each completed line (and each full buffer) goes out at once.
    pub fn write_bytes<K: Kernel>(&mut self, k: &mut K, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.line.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
            if b == b'\n' || self.len >= LINE_MAX {
                self.emit(k);
            }
        }
    }

    /// Sends what the line buffer holds, newline or not.
    pub fn flush<K: Kernel>(&mut self, k: &mut K) {
        if self.len > 0 {
            self.emit(k);
        }
    }

    fn emit<K: Kernel>(&mut self, k: &mut K) {
        let line = self.line.get(..self.len).unwrap_or(&[]);
        self.len = 0;
        let Ok(tx) = &mut self.tx else {
            k.debug_write(line);
            self.stats.debug_lines += 1;
            return;
        };
        // Whole or not at all: a line that does not fit is dropped, so the driver never gets
        // the first half of one.
        let fits = tx.free().map(|free| free as usize >= line.len());
        let sent = match fits {
            Ok(true) => tx.enqueue_slice(line).map(|n| n == line.len()),
            Ok(false) => Ok(false),
            Err(e) => Err(e),
        };
        match sent {
            Ok(true) => self.stats.queued_lines += 1,
            Ok(false) => self.stats.dropped_lines += 1,
            Err(_) => {
                self.stats.queue_errors += 1;
                k.debug_write(line);
                self.stats.debug_lines += 1;
            }
        }
        if tx.take_notify() && k.notify(self.channel).is_err() {
            self.stats.notify_errors += 1;
        }
    }
}

impl Console<'static> {
    /// A console over the PD's TX queue regions as system.xml maps them (the generated
    /// `system::<region>_region()` functions); the regions are consumed. Without them, the
    /// debug console.
    pub fn from_regions(
        channel: Channel,
        header: Result<SharedRegion, RegionError>,
        data: Result<SharedRegion, RegionError>,
    ) -> Console<'static> {
        let views = header
            .and_then(SharedRegion::into_atomic_words)
            .and_then(|h| {
                data.and_then(SharedRegion::into_atomic_bytes)
                    .map(|d| (h, d))
            });
        match views {
            Ok((h, d)) => Console::new(channel, h, d),
            Err(e) => Console::with(Err(Unusable::Region(e)), channel),
        }
    }
}

/// `core::fmt::Write` over a [`Console`] (see [`Console::writer`]).
pub struct Writer<'a, 'q, K: Kernel> {
    console: &'a mut Console<'q>,
    k: &'a mut K,
}

impl<K: Kernel> core::fmt::Write for Writer<'_, '_, K> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.console.write_bytes(self.k, s.as_bytes());
        Ok(())
    }
}

/// Prints a line through a PD's [`Console`]: `serial_println!(console, kernel, "x = {}", x)`.
#[macro_export]
macro_rules! serial_println {
    ($console:expr, $k:expr, $($arg:tt)*) => {{
        use core::fmt::Write as _;
        let mut w = $crate::Console::writer(&mut $console, &mut $k);
        let _ = w.write_fmt(format_args!($($arg)*));
        let _ = w.write_str("\n");
    }};
}
