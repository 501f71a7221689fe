//! Serial driver PD `serial_driver`: owns the PL011 UART (MMIO page and IRQ) and serves its
//! clients through sDDF 0.7.0 serial queues, as sDDF's PL011 driver and TX virtualiser do
//! together: the vmm (TX and RX: the guest console and the VMM's messages) and every other PD's
//! own messages (one TX queue each, [`tx_clients`]).
//!
//! - TX queues (client → driver), one channel per client: on a client's notification (and on
//!   the TX interrupt) bytes move from the queues into the UART while its TX FIFO is not full
//!   (UARTFR.TXFF). Clients take *turns*, round robin: a turn moves one client's bytes up to and
//!   including a newline, or up to the end of what it published, or [`TURN_MAX`] bytes without a
//!   newline (a client that never ends its line cannot hold the UART). A turn that meets a full
//!   FIFO is kept and resumed first when the FIFO drains, so lines of different clients never
//!   interleave (clients publish whole lines: `serial-client`). When the FIFO fills with bytes
//!   still queued, the TX interrupt (UARTIMSC.TXIM) is enabled and draining continues when it
//!   fires; it is disabled again once every queue is empty. After freeing a queue's space its
//!   client is notified only if it asked (`producer_signalled == 0`).
//! - A line the UART shows unfinished (a client published part of a line: the guest's shell
//!   prompt) is never torn apart: another client's line, or the driver's own, starts on a line
//!   of its own (a newline first), and the open line (up to [`TURN_MAX`] bytes) is written again
//!   after it, as a line editor redraws its prompt; its client then goes on where it was. A
//!   client whose turn ends in a corrupt queue or at [`TURN_MAX`] bytes gets no open line kept.
//! - With two VMs or more (the system description's `VM_PEERS`: the peers that run a virtual
//!   machine), each VMM's lines start with its name and `| ` ([`line_prefixed`]): the guests
//!   write the same lines, and a reader (or a test) tells them apart. The prefix is part of
//!   the line, so an open line written again shows it too. With one VM nothing is prefixed.
//! - RX queue (driver → vmm), [`RX_CHANNEL`]: on the RX / receive-timeout interrupts the RX
//!   FIFO is drained (while !UARTFR.RXFE, at most [`RX_BURST`] bytes per interrupt) into the
//!   queue and the vmm is notified once if bytes were added; bytes that find the queue full are
//!   dropped and counted. With other VMs' consoles ([`SerialDriver::add_rx_client`], from
//!   [`rx_clients`]: a peer's `serial_rx_queue_P` on its second channel), input goes to one
//!   console at a time, switched with Ctrl-\ and a digit ([`SWITCH_BYTE`]).
//! - IRQ ([`IRQ_CHANNEL`]): UARTMIS is read and cleared (UARTICR) before the work, but for the RX
//!   and receive-timeout conditions, which reading the FIFO empty clears (bytes left after
//!   [`RX_BURST`] keep them asserted), and the IRQ is acknowledged through
//!   [`DeferredAction::IrqAck`], so the ack rides on the next receive.
//! - The driver's own lines ([`SerialDriver::say`]: its start-up report, every error the event
//!   loop hands back through [`Handler::report`]) go to the UART itself, so release kernels show
//!   them too: buffered ([`OWN_BUF`] bytes; a line that does not fit is dropped and counted),
//!   and sent between turns, before the next client's, never inside a client's line. A line
//!   equal to the one before is counted, not sent, until a different one comes (then
//!   `last line repeated N times` goes first): a client that stays corrupt is reported once,
//!   not on every event — and the report's own TX interrupt cannot feed itself. The kernel's
//!   debug console is used only when the UART is not mapped.
//!
//! Clients are untrusted: corrupt queue indices become a [`DriverError`] naming the queue,
//! counted (per client too) and reported on the UART, never a panic; that client's turn ends,
//! and the other queues and the UART go on working.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod mem;
pub mod pl011;

use microkit_rt::{
    Channel, ChannelSet, DeferredAction, Handler, Kernel, KernelError, debug_println,
};
use sddf_queue::{EnqueueError, QueueError, SerialConsumer, SerialProducer, SetupError};

use core::sync::atomic::{AtomicU32, Ordering};
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
/// The vmm's TX queue (vmm → driver) is signalled on this channel.
pub const TX_CHANNEL: Channel = system::VMM_1;
/// The vmm's RX queue (driver → vmm) is signalled on this channel.
pub const RX_CHANNEL: Channel = system::VMM_2;

/// A TX client as system.xml describes it: its name, the channel, its queue's regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxClientDef {
    /// The client PD.
    pub name: &'static str,
    /// The channel it notifies after publishing (and the driver notifies when it asked).
    pub channel: Channel,
    /// The `serial_queue_t` header region.
    pub queue_mr: &'static str,
    /// The data region.
    pub data_mr: &'static str,
    /// Its lines are prefixed with its name ([`line_prefixed`]).
    pub prefixed: bool,
}

/// Most TX clients the driver serves (its client table is fixed-capacity).
pub const MAX_TX_CLIENTS: usize = 8;

/// Every TX client the system description gives this driver, in the order turns go round: the
/// vmm (guest console and the VMM's messages, on [`TX_CHANNEL`]), then each other peer P the
/// driver has a channel to and whose queue it maps as `serial_tx_queue_P` / `serial_tx_data_P`,
/// by channel id (its first channel: a VMM's second is its RX channel). The production system
/// has the vmm, blk_driver, driver_monitor and blk_virt; the test system adds the self-test
/// PDs; a system of several VMs (`sdf-multivm`) the other VMMs. Nothing here names a PD but the
/// vmm: a client is a grant of system.xml.
pub fn tx_clients() -> heapless::Vec<TxClientDef, MAX_TX_CLIENTS> {
    tx_clients_of(system::PEERS, system::MAPS, system::VM_PEERS)
}

/// [`tx_clients`] for a given channel table (peer, channel), map table (region, size) and the
/// peers that run a VM.
pub fn tx_clients_of(
    peers: &[(&'static str, Channel)],
    maps: &[(&'static str, usize)],
    vm_peers: &[&str],
) -> heapless::Vec<TxClientDef, MAX_TX_CLIENTS> {
    let mut v = heapless::Vec::new();
    let _ = v.push(TxClientDef {
        name: "vmm",
        channel: TX_CHANNEL,
        queue_mr: "serial_tx_queue_vmm",
        data_mr: "serial_tx_data_vmm",
        prefixed: line_prefixed("vmm", vm_peers),
    });
    let mapped = |prefix: &str, peer: &str| {
        maps.iter()
            .map(|(mr, _)| *mr)
            .find(|mr| mr.strip_prefix(prefix) == Some(peer))
    };
    for (i, &(peer, channel)) in peers.iter().enumerate() {
        // A peer's first channel is its TX channel (a VM's second is its RX channel).
        if peer == "vmm" || peers[..i].iter().any(|&(p, _)| p == peer) {
            continue;
        }
        let (Some(queue_mr), Some(data_mr)) = (
            mapped("serial_tx_queue_", peer),
            mapped("serial_tx_data_", peer),
        ) else {
            continue;
        };
        let def = TxClientDef {
            name: peer,
            channel,
            queue_mr,
            data_mr,
            prefixed: line_prefixed(peer, vm_peers),
        };
        if v.push(def).is_err() {
            break;
        }
    }
    v
}

/// Whether client `name`'s lines start with `name| `, given the peers that run a VM
/// (`system::VM_PEERS`): a VMM's when there are two or more (each VM's console, and its VMM's
/// messages, on lines of its own name, as the guests write the same lines), none with one VM.
pub fn line_prefixed(name: &str, vm_peers: &[&str]) -> bool {
    vm_peers.len() >= 2 && vm_peers.contains(&name)
}

/// Byte `i` of `name`'s line prefix `name| `.
fn prefix_byte(name: &str, i: usize) -> u8 {
    match name.as_bytes().get(i) {
        Some(&b) => b,
        None if i == name.len() => b'|',
        None => b' ',
    }
}

/// Length of `name`'s line prefix.
fn prefix_len(name: &str) -> usize {
    name.len() + 2
}

/// An RX client besides the vmm as system.xml describes it: a VM's console input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxClientDef {
    /// The client PD.
    pub name: &'static str,
    /// The channel the driver notifies after adding bytes (the client's second channel).
    pub channel: Channel,
    /// The `serial_queue_t` header region.
    pub queue_mr: &'static str,
    /// The data region.
    pub data_mr: &'static str,
}

/// Most RX clients besides the vmm.
pub const MAX_MORE_RX: usize = 7;

/// The byte that switches console input ([`SerialDriver::add_rx_client`]): Ctrl-\ (FS), then a
/// digit, as sDDF's serial RX virtualiser does.
pub const SWITCH_BYTE: u8 = 0x1c;

/// The RX clients besides the vmm: each peer P the driver maps `serial_rx_queue_P` and
/// `serial_rx_data_P` of, on its last (second) channel, in channel order.
pub fn rx_clients_of(
    peers: &[(&'static str, Channel)],
    maps: &[(&'static str, usize)],
) -> heapless::Vec<RxClientDef, MAX_MORE_RX> {
    let mut v = heapless::Vec::new();
    let mapped = |prefix: &str, peer: &str| {
        maps.iter()
            .map(|(mr, _)| *mr)
            .find(|mr| mr.strip_prefix(prefix) == Some(peer))
    };
    for (i, &(peer, _)) in peers.iter().enumerate() {
        if peer == "vmm" || peers[..i].iter().any(|&(p, _)| p == peer) {
            continue;
        }
        let (Some(queue_mr), Some(data_mr)) = (
            mapped("serial_rx_queue_", peer),
            mapped("serial_rx_data_", peer),
        ) else {
            continue;
        };
        let Some(&(_, channel)) = peers.iter().rev().find(|&&(p, _)| p == peer) else {
            continue;
        };
        if v.push(RxClientDef {
            name: peer,
            channel,
            queue_mr,
            data_mr,
        })
        .is_err()
        {
            break;
        }
    }
    v
}

/// [`rx_clients_of`] of this PD's system description.
pub fn rx_clients() -> heapless::Vec<RxClientDef, MAX_MORE_RX> {
    rx_clients_of(system::PEERS, system::MAPS)
}

/// Most bytes of one turn without a newline: then the next client's turn comes.
pub const TURN_MAX: usize = 256;
/// Most bytes (and turns) moved per event: bounds the handler even if the UART never reports a
/// full FIFO and clients keep publishing; what is left waits for the TX interrupt.
pub const TX_BURST: usize = 4096;
/// Most bytes taken from the RX FIFO per interrupt: bounds the handler even if the device keeps
/// RXFE clear; what is left keeps the (level) interrupt asserted and is taken next time.
pub const RX_BURST: usize = 256;
/// Most polls of UARTFR.BUSY while disabling the UART at start-up.
pub const BUSY_POLLS: usize = 100_000;
/// Bytes buffered of the driver's own lines (see [`SerialDriver::say`]).
pub const OWN_BUF: usize = 1024;
/// Longest own line, newline included; a longer one is cut and ends in `...`.
pub const OWN_LINE_MAX: usize = 200;

/// Which queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// A client's TX queue (client → driver), by client name.
    Tx(&'static str),
    /// The vmm's RX queue (driver → vmm).
    Rx,
}

impl core::fmt::Display for Queue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Queue::Tx(name) => write!(f, "Tx queue of {name}"),
            Queue::Rx => f.write_str("Rx queue"),
        }
    }
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
            DriverError::Setup(q, e) => write!(f, "{q}: cannot attach: {e}"),
            DriverError::Corrupt(q, e) => write!(f, "{q} corrupted by the client: {e}"),
            DriverError::NoQueue(q) => write!(f, "{q} not mapped"),
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
    /// Events on which a client's queue was found corrupt or could not be attached.
    pub queue_errors: u64,
    /// The driver's own lines buffered for the UART.
    pub own_lines: u64,
    /// The driver's own lines dropped: no room left in the buffer.
    pub own_dropped: u64,
    /// The driver's own lines not sent because they repeated the one before.
    pub own_repeated: u64,
    /// This life of the driver (1 at boot, +1 per restart; 0 without its state page).
    pub life: u32,
    /// Bytes the previous life had read from the UART and not handed over when it died (at
    /// most; counted from its state page).
    pub rx_lost_in_crash: u32,
    /// Fault injection: crash commands seen (host builds, which do not crash).
    pub crashes_due: u64,
}

/// The command that crashes the driver with the `fault-injection` feature: a TX client writes
/// it (the test guest, on its console).
pub const CRASH_COMMAND: &[u8] = b"@@crash-serial-driver@@";

/// Word indices in the driver's state page (`serial_driver_state`), which outlives restarts.
pub mod state {
    /// The driver's life: incremented at each start.
    pub const LIFE: usize = 0;
    /// Bytes read from the UART and not yet published to the RX queue.
    pub const RX_IN_HAND: usize = 1;
    /// Words used.
    pub const WORDS: usize = 2;
}

/// Matches [`CRASH_COMMAND`] in a byte stream.
#[derive(Debug, Clone, Copy, Default)]
struct CommandMatch(usize);

impl CommandMatch {
    /// Feeds one byte; true when the command is complete.
    fn feed(&mut self, b: u8) -> bool {
        if CRASH_COMMAND.get(self.0) == Some(&b) {
            self.0 += 1;
        } else {
            self.0 = usize::from(CRASH_COMMAND.first() == Some(&b));
        }
        if self.0 == CRASH_COMMAND.len() {
            self.0 = 0;
            return true;
        }
        false
    }
}

/// One own line being formatted: cut at [`OWN_LINE_MAX`] with room kept for the ending.
struct OwnLine {
    buf: heapless::Vec<u8, OWN_LINE_MAX>,
    cut: bool,
}

impl OwnLine {
    /// Room kept for `...\n`.
    const END: usize = 4;

    /// `args` as one line: its newline added (and `...` if it was cut).
    fn format(args: core::fmt::Arguments<'_>) -> heapless::Vec<u8, OWN_LINE_MAX> {
        let mut line = OwnLine {
            buf: heapless::Vec::new(),
            cut: false,
        };
        let _ = core::fmt::Write::write_fmt(&mut line, args);
        line.finish()
    }

    fn finish(mut self) -> heapless::Vec<u8, OWN_LINE_MAX> {
        if self.cut {
            let _ = self.buf.extend_from_slice(b"...");
        }
        let _ = self.buf.push(b'\n');
        self.buf
    }
}

impl core::fmt::Write for OwnLine {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            // A newline inside would end the line early: the driver's lines are one line each.
            let b = if b == b'\n' { b' ' } else { b };
            if self.buf.len() + Self::END >= OWN_LINE_MAX || self.buf.push(b).is_err() {
                self.cut = true;
                break;
            }
        }
        Ok(())
    }
}

/// Counters of one TX client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Bytes of this client written to the UART.
    pub bytes: u64,
    /// Turns this client finished that moved bytes.
    pub turns: u64,
    /// Errors of this client's queue (corrupt indices, failed attaches, unmapped).
    pub errors: u64,
}

/// A queue handle, attached lazily: a client that left garbage in the indices before the driver
/// started gets an error each event until it fixes them, not a dead driver.
enum Slot<'q, H> {
    Attached(H),
    Detached(Option<QueueMem<'q>>),
}

/// A TX client as the driver is given it: name, channel, and its queue's memory (`None`: not
/// mapped).
#[derive(Debug, Clone, Copy)]
pub struct TxClient<'q> {
    /// The client PD (for logs).
    pub name: &'static str,
    /// Its channel.
    pub channel: Channel,
    /// Its TX queue.
    pub mem: Option<QueueMem<'q>>,
    /// Each of its lines starts with `name| ` ([`line_prefixed`]).
    pub prefixed: bool,
}

struct Client<'q> {
    name: &'static str,
    channel: Channel,
    slot: Slot<'q, SerialConsumer<'q>>,
    stats: ClientStats,
    /// Its lines start with `name| ` ([`TxClient::prefixed`]).
    prefixed: bool,
    /// A line of it is under way (its prefix written): no prefix before its next byte.
    mid_line: bool,
}

impl Client<'_> {
    /// Attaches the queue if it is mapped and not yet attached.
    fn attach(&mut self) -> Result<(), DriverError> {
        if let Slot::Detached(Some(m)) = &self.slot {
            let q = Queue::Tx(self.name);
            let cap = m.capacity()?;
            let c =
                SerialConsumer::new(m.header, m.data, cap).map_err(|e| DriverError::Setup(q, e))?;
            self.slot = Slot::Attached(c);
        }
        Ok(())
    }
}

/// A line a client began on the UART and has not ended (a shell prompt): anything else written
/// meanwhile goes on lines of its own, and this line is written again after it, so no client's
/// line is torn apart.
#[derive(Debug, Clone)]
struct OpenLine {
    client: usize,
    bytes: heapless::Vec<u8, TURN_MAX>,
    /// Longer than [`TURN_MAX`]: broken, but not written again.
    too_long: bool,
}

impl OpenLine {
    /// Follows the bytes written for `client`.
    fn track(open: &mut Option<OpenLine>, client: usize, b: u8) {
        if b == b'\n' {
            *open = None;
            return;
        }
        match open {
            Some(o) if o.client == client => {
                if o.bytes.push(b).is_err() {
                    o.too_long = true;
                }
            }
            _ => {
                let mut bytes = heapless::Vec::new();
                let _ = bytes.push(b);
                *open = Some(OpenLine {
                    client,
                    bytes,
                    too_long: false,
                });
            }
        }
    }

    /// What is written again after another line: nothing if it was too long.
    fn redraw(&self) -> &[u8] {
        if self.too_long { &[] } else { &self.bytes }
    }
}

/// The client whose bytes the UART is taking, and how many it took this turn.
#[derive(Debug, Clone, Copy)]
struct Turn {
    client: usize,
    bytes: usize,
    /// Bytes of the client's line prefix written in this turn.
    prefix_at: usize,
}

/// The serial driver: PD logic over a kernel `K` and a UART `U`.
pub struct SerialDriver<'q, K: Kernel, U: Uart> {
    k: K,
    uart: U,
    clients: heapless::Vec<Client<'q>, MAX_TX_CLIENTS>,
    /// A turn interrupted by a full FIFO: resumed before any other client's.
    turn: Option<Turn>,
    /// The line the UART shows unfinished, if any.
    open: Option<OpenLine>,
    /// An open line broken by another line, and how much of it was written again: written
    /// again between turns once that other line ended.
    broken: Option<(OpenLine, usize)>,
    /// The client whose turn comes next (round robin).
    next: usize,
    rx: Slot<'q, SerialProducer<'q>>,
    /// The other VMs' console input: name, channel, queue.
    more_rx: heapless::Vec<(&'static str, Channel, Slot<'q, SerialProducer<'q>>), MAX_MORE_RX>,
    /// Which console takes input: 0 the vmm's, i the i-th of `more_rx`.
    focus: usize,
    /// [`SWITCH_BYTE`] came: the next byte chooses the console.
    switching: bool,
    /// The driver's own bytes waiting for the UART (whole lines).
    own: heapless::Deque<u8, OWN_BUF>,
    /// The last own line buffered, and how often it came again since.
    own_last: heapless::Vec<u8, OWN_LINE_MAX>,
    own_repeats: u64,
    /// Shadow of UARTIMSC (the driver is its only writer).
    imsc: u32,
    stats: Stats,
    deferred: Option<DeferredAction>,
    /// The state page's words, once given ([`SerialDriver::with_state`]).
    state: Option<&'q [AtomicU32]>,
    /// Fault injection: the crash command as it arrives.
    command: CommandMatch,
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
    /// the baud rate is left as it is), then moves whatever the clients already queued. `tx`
    /// are the TX clients (at most [`MAX_TX_CLIENTS`], each on its own channel, none on the IRQ
    /// or RX channel: others are logged and ignored); a queue given as `None` is not mapped, and
    /// its events are reported as errors.
    pub fn new(
        k: K,
        uart: U,
        tx: impl IntoIterator<Item = TxClient<'q>>,
        rx: Option<QueueMem<'q>>,
    ) -> Self {
        Self::with_state(k, uart, tx, rx, None)
    }

    /// As [`SerialDriver::new`], with the driver's state page (`serial_driver_state`: [`state`]
    /// words), which outlives a restart: the driver starts its next life and, restarted, first
    /// ends whatever line the UART shows unfinished and says what the last life lost. Without
    /// it (`None`, or a page too small: said), lives are not counted.
    pub fn with_state(
        k: K,
        uart: U,
        tx: impl IntoIterator<Item = TxClient<'q>>,
        rx: Option<QueueMem<'q>>,
        page: Option<&'q [AtomicU32]>,
    ) -> Self {
        let mut d = SerialDriver {
            k,
            uart,
            clients: heapless::Vec::new(),
            turn: None,
            open: None,
            broken: None,
            next: 0,
            rx: Slot::Detached(rx),
            more_rx: heapless::Vec::new(),
            focus: 0,
            switching: false,
            own: heapless::Deque::new(),
            own_last: heapless::Vec::new(),
            own_repeats: 0,
            imsc: 0,
            stats: Stats::default(),
            deferred: None,
            state: None,
            command: CommandMatch::default(),
        };
        d.begin_life(page);
        d.configure();
        d.say(format_args!(
            "serial_driver: PL011 configured (8N1, FIFOs, RX interrupts)"
        ));
        for c in tx {
            let taken = c.channel == IRQ_CHANNEL
                || c.channel == RX_CHANNEL
                || d.clients.iter().any(|o| o.channel == c.channel);
            if taken {
                d.say(format_args!(
                    "serial_driver: TX client {} ignored: channel {} already in use",
                    c.name,
                    c.channel.index()
                ));
                continue;
            }
            let mut client = Client {
                name: c.name,
                channel: c.channel,
                slot: Slot::Detached(c.mem),
                stats: ClientStats::default(),
                prefixed: c.prefixed,
                mid_line: false,
            };
            if c.mem.is_none() {
                client.stats.errors += 1;
                d.stats.queue_errors += 1;
                d.say(format_args!(
                    "serial_driver: init: Tx queue of {} not mapped",
                    c.name
                ));
            }
            if d.clients.push(client).is_err() {
                d.say(format_args!(
                    "serial_driver: TX client {} ignored: more than {} clients",
                    c.name, MAX_TX_CLIENTS
                ));
            }
        }
        for r in [d.attach_rx(), d.service_tx(ChannelSet::default())] {
            if let Err(e) = r {
                d.stats.queue_errors += 1;
                d.say(format_args!("serial_driver: init: {}", e));
            }
        }
        d
    }

    /// Starts this life in the state page (see [`SerialDriver::with_state`]).
    fn begin_life(&mut self, page: Option<&'q [AtomicU32]>) {
        let Some(words) = page.filter(|w| w.len() >= state::WORDS) else {
            if page.is_some() {
                self.say(format_args!("serial_driver: state page too small"));
            }
            return;
        };
        let life = words[state::LIFE].load(Ordering::Relaxed).wrapping_add(1);
        words[state::LIFE].store(life, Ordering::Relaxed);
        let lost = words[state::RX_IN_HAND].swap(0, Ordering::Relaxed);
        self.stats.life = life;
        self.stats.rx_lost_in_crash = lost;
        if life > 1 {
            // The last life may have died in the middle of a client's line.
            self.buffer_own(b"\n");
            self.say(format_args!(
                "serial_driver: restarted (life {}), {} received bytes lost in the crash",
                life, lost
            ));
        }
        self.state = Some(words);
    }

    /// Records in the state page how many bytes read from the UART are not yet published.
    fn in_hand(&self, n: u32) {
        if let Some(w) = self.state {
            w[state::RX_IN_HAND].store(n, Ordering::Relaxed);
        }
    }

    /// Fault injection: a client wrote the crash command; its bytes so far are handed back
    /// first, so the restarted driver does not read the command again.
    #[cfg(all(
        feature = "fault-injection",
        target_arch = "aarch64",
        target_os = "none"
    ))]
    fn crash_now(&mut self) {
        microkit_rt::fault_injection::wild_load();
    }

    /// Host builds (and builds without the feature) count the command instead of crashing.
    #[cfg(not(all(
        feature = "fault-injection",
        target_arch = "aarch64",
        target_os = "none"
    )))]
    fn crash_now(&mut self) {
        self.stats.crashes_due += 1;
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

    /// Writes one line of the driver's own (a newline is added; one inside becomes a space) to
    /// the UART: buffered, and sent now if no client's turn is in progress, else between turns
    /// before the next client's (see the crate documentation). Without a UART it goes to the
    /// kernel's debug console.
    pub fn say(&mut self, args: core::fmt::Arguments<'_>) {
        if !self.uart.present() {
            debug_println!(self.k, "{}", args);
            return;
        }
        let line = OwnLine::format(args);
        if line == self.own_last {
            self.own_repeats += 1;
            self.stats.own_repeated += 1;
            return;
        }
        if self.own_repeats > 0 {
            let note = OwnLine::format(format_args!(
                "serial_driver: last line repeated {} times",
                self.own_repeats
            ));
            self.own_repeats = 0;
            self.buffer_own(&note);
        }
        self.buffer_own(&line);
        self.own_last = line;
        if self.turn.is_none() {
            let mut budget = TX_BURST;
            if !self.send_own(&mut budget) {
                self.set_txim(true);
            }
        }
        // Else the turn's client still has bytes queued and the FIFO was full: the TX
        // interrupt is on, and the driver's bytes go as soon as that line is out.
    }

    /// Buffers one own line whole, or drops and counts it.
    fn buffer_own(&mut self, line: &[u8]) {
        if OWN_BUF - self.own.len() < line.len() {
            self.stats.own_dropped += 1;
            return;
        }
        for &b in line {
            let _ = self.own.push_back(b);
        }
        self.stats.own_lines += 1;
    }

    /// Before anything but the open line's own client writes: a line break, and the open line
    /// kept to be written again once the other line ended. Returns false (nothing written) if
    /// the FIFO is full.
    fn break_open_line(&mut self, client: Option<usize>) -> bool {
        if self.open.as_ref().is_none_or(|o| Some(o.client) == client) {
            return true;
        }
        if self.uart.read32(reg::FR) & fr::TXFF != 0 {
            return false;
        }
        self.uart.write32(reg::DR, u32::from(b'\n'));
        let open = self.open.take();
        // Its client's next byte starts a line on the UART: with its prefix, unless the line
        // is written again first (`send_redraw`: the prefix is part of it).
        if let Some(c) = open.as_ref().and_then(|o| self.clients.get_mut(o.client)) {
            c.mid_line = false;
        }
        self.broken = open.map(|o| (o, 0));
        true
    }

    /// Between turns, once the line that broke an open line has ended: that line written again
    /// (it is open again then). Returns whether all of it went (else the FIFO is full).
    fn send_redraw(&mut self, budget: &mut usize) -> bool {
        if self.open.is_some() {
            return true;
        }
        let Some((line, mut at)) = self.broken.take() else {
            return true;
        };
        while let Some(&b) = line.redraw().get(at) {
            if *budget == 0 || self.uart.read32(reg::FR) & fr::TXFF != 0 {
                self.broken = Some((line, at));
                return false;
            }
            self.uart.write32(reg::DR, u32::from(b));
            at += 1;
            *budget -= 1;
        }
        // Written again, prefix included: its client goes on in the middle of the line.
        if !line.redraw().is_empty()
            && let Some(c) = self.clients.get_mut(line.client)
        {
            c.mid_line = true;
        }
        self.open = Some(line);
        true
    }

    /// Sends the driver's own bytes while the TX FIFO has room and `budget` lasts (on a line
    /// of their own if a client's line is open, which is written again after them); returns
    /// whether all went.
    fn send_own(&mut self, budget: &mut usize) -> bool {
        if !self.own.is_empty() && !self.break_open_line(None) {
            return false;
        }
        while let Some(&b) = self.own.front() {
            if *budget == 0 || self.uart.read32(reg::FR) & fr::TXFF != 0 {
                return false;
            }
            self.uart.write32(reg::DR, u32::from(b));
            self.own.pop_front();
            *budget -= 1;
        }
        self.send_redraw(budget)
    }

    /// Another VM's console input (its RX queue `mem`, notified on `channel`; `None`: not
    /// mapped, its input is dropped and counted). With one or more, typed input goes to one
    /// console at a time: the vmm's first; [`SWITCH_BYTE`] and then digit `i` send what follows to
    /// console `i` (0: the vmm's, then these in the order added), and the driver says so on a
    /// line of its own. [`SWITCH_BYTE`] followed by anything else goes to the console as typed.
    /// A restarted driver starts a new life with the input at the vmm's console again.
    pub fn add_rx_client(
        &mut self,
        name: &'static str,
        channel: Channel,
        mem: Option<QueueMem<'q>>,
    ) {
        let taken = channel == IRQ_CHANNEL
            || channel == RX_CHANNEL
            || self.more_rx.iter().any(|(_, c, _)| *c == channel);
        if taken
            || self
                .more_rx
                .push((name, channel, Slot::Detached(mem)))
                .is_err()
        {
            self.say(format_args!(
                "serial_driver: RX client {} ignored (channel {} in use, or more than {})",
                name,
                channel.index(),
                MAX_MORE_RX
            ));
        }
    }

    /// The console that takes typed input now (0: the vmm's; see [`Self::add_rx_client`]).
    pub fn input_focus(&self) -> usize {
        self.focus
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The counters of the TX client on `channel`.
    pub fn client_stats(&self, channel: Channel) -> Option<ClientStats> {
        self.clients
            .iter()
            .find(|c| c.channel == channel)
            .map(|c| c.stats)
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

    /// The next client, round robin from `self.next`, with bytes waiting; clients in `bad` are
    /// skipped, and a client found corrupt joins them (its error goes to `result`).
    fn pick(&mut self, bad: &mut u32, result: &mut Result<(), DriverError>) -> Option<usize> {
        let n = self.clients.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if *bad & (1 << i) != 0 {
                continue;
            }
            let Some(c) = self.clients.get_mut(i) else {
                continue;
            };
            let Slot::Attached(tx) = &mut c.slot else {
                continue;
            };
            match tx.available() {
                Ok(0) => {}
                Ok(_) => return Some(i),
                Err(e) => {
                    *bad |= 1 << i;
                    c.stats.errors += 1;
                    first(result, Err(DriverError::Corrupt(Queue::Tx(c.name), e)));
                }
            }
        }
        None
    }

    /// Moves bytes from the TX queues into the TX FIFO while it has room, a turn per client
    /// (see the crate documentation); enables the TX interrupt if the FIFO filled first (or the
    /// burst ran out) with bytes still queued, disables it once every queue is empty; notifies
    /// each client that freed space it asked to hear about. `notified`: the client channels
    /// that signalled (an unmapped client's notification is reported).
    fn service_tx(&mut self, notified: ChannelSet) -> Result<(), DriverError> {
        let mut result = Ok(());
        // Clients whose queue failed during this call: not visited again until the next one.
        let mut bad = 0u32;
        for (i, c) in self.clients.iter_mut().enumerate() {
            let r = match c.slot {
                Slot::Detached(None) if notified.contains(c.channel) => {
                    Err(DriverError::NoQueue(Queue::Tx(c.name)))
                }
                Slot::Detached(None) => Ok(()),
                _ => c.attach(),
            };
            if let Err(e) = r {
                bad |= 1 << i;
                c.stats.errors += 1;
                first(&mut result, Err(e));
            }
        }
        let n = self.clients.len();
        let mut budget = TX_BURST;
        let mut fifo_full = false;
        'turns: while budget > 0 {
            let mut turn = match self.turn.take() {
                Some(t) => t,
                None => {
                    // Between turns the driver's own lines go first.
                    if !self.send_own(&mut budget) {
                        fifo_full = budget > 0;
                        break;
                    }
                    // The driver's own lines (or an open line written again) may have spent
                    // the burst: no turn starts on an empty budget (the TX interrupt brings
                    // the next event).
                    if budget == 0 {
                        break;
                    }
                    match self.pick(&mut bad, &mut result) {
                        Some(i) => Turn {
                            client: i,
                            bytes: 0,
                            prefix_at: 0,
                        },
                        None => break,
                    }
                }
            };
            // Another client's line is open: this one starts on a line of its own.
            if turn.bytes == 0 && !self.break_open_line(Some(turn.client)) {
                fifo_full = budget > 0;
                self.turn = Some(turn);
                break;
            }
            // Every turn costs, so a client whose indices change under the driver cannot keep
            // it here.
            budget -= 1;
            let Some(c) = self.clients.get_mut(turn.client) else {
                continue;
            };
            let Slot::Attached(tx) = &mut c.slot else {
                continue;
            };
            loop {
                if self.uart.read32(reg::FR) & fr::TXFF != 0 || budget == 0 {
                    if matches!(tx.available(), Ok(0)) {
                        // Nothing more published: the turn ends here, as it would with room
                        // (so a kept turn always has bytes waiting, and the TX interrupt on).
                        break;
                    }
                    // Keep the turn: no other client's bytes until this one's line is out.
                    fifo_full = budget > 0;
                    self.turn = Some(turn);
                    break 'turns;
                }
                // A prefixed client's line starts with its name (written byte by byte, as the
                // FIFO has room, and kept in the open line so that a redraw shows it too).
                if c.prefixed && !c.mid_line {
                    let b = prefix_byte(c.name, turn.prefix_at);
                    self.uart.write32(reg::DR, u32::from(b));
                    OpenLine::track(&mut self.open, turn.client, b);
                    budget -= 1;
                    turn.prefix_at += 1;
                    c.mid_line = turn.prefix_at == prefix_len(c.name);
                    continue;
                }
                match tx.dequeue_local() {
                    Ok(Some(b)) => {
                        self.uart.write32(reg::DR, u32::from(b));
                        OpenLine::track(&mut self.open, turn.client, b);
                        if b == b'\n' {
                            c.mid_line = false;
                            turn.prefix_at = 0;
                        }
                        budget -= 1;
                        turn.bytes += 1;
                        c.stats.bytes += 1;
                        self.stats.tx_bytes += 1;
                        if cfg!(feature = "fault-injection") && self.command.feed(b) {
                            tx.publish();
                            self.crash_now();
                            break 'turns;
                        }
                        if b == b'\n' || turn.bytes >= TURN_MAX {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // A corrupt client's line is not kept open (nor written again).
                        self.open = None;
                        bad |= 1 << turn.client;
                        c.stats.errors += 1;
                        first(&mut result, Err(DriverError::Corrupt(Queue::Tx(c.name), e)));
                        break;
                    }
                }
            }
            if turn.bytes > 0 {
                c.stats.turns += 1;
            }
            if turn.bytes >= TURN_MAX {
                // A client that does not end its lines gets no open line kept for it.
                self.open = None;
            }
            self.next = (turn.client + 1) % n.max(1);
        }
        // Hand back what was sent (even if a client then corrupted its indices) and tell the
        // clients that asked; see whether bytes are still waiting.
        let mut waiting = !self.own.is_empty() || (self.open.is_none() && self.broken.is_some());
        for c in self.clients.iter_mut() {
            let Slot::Attached(tx) = &mut c.slot else {
                continue;
            };
            tx.publish();
            if tx.take_notify() {
                first(
                    &mut result,
                    self.k.notify(c.channel).map_err(DriverError::Kernel),
                );
            }
            waiting |= matches!(tx.available(), Ok(a) if a > 0);
        }
        // More queued than the FIFO took: wait for the TX interrupt. Otherwise (queues empty,
        // or unusable) the interrupt would only fire for nothing.
        let pending = (fifo_full || budget == 0) && waiting;
        if pending && fifo_full {
            self.stats.tx_fifo_full += 1;
        }
        self.set_txim(pending);
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

    /// Puts one typed byte into the queue of the console that has the input (dropped and
    /// counted if it has no usable queue or no room).
    fn deliver(&mut self, byte: u8, result: &mut Result<(), DriverError>) {
        let slot = match self.focus {
            0 => &mut self.rx,
            i => match self.more_rx.get_mut(i - 1) {
                Some((_, _, s)) => {
                    if let Slot::Detached(Some(m)) = s {
                        match attach_rx(*m) {
                            Ok(p) => *s = Slot::Attached(p),
                            Err(e) => {
                                *s = Slot::Detached(None);
                                first(result, Err(e));
                            }
                        }
                    }
                    s
                }
                None => &mut self.rx,
            },
        };
        let Slot::Attached(rx) = slot else {
            self.stats.rx_dropped += 1;
            return;
        };
        match rx.enqueue_local(byte) {
            Ok(()) => self.stats.rx_bytes += 1,
            Err(EnqueueError::Full) => self.stats.rx_dropped += 1,
            Err(EnqueueError::Corrupt(e)) => {
                self.stats.rx_dropped += 1;
                first(result, Err(DriverError::Corrupt(Queue::Rx, e)));
            }
        }
    }

    /// Moves bytes from the RX FIFO into the RX queue of the console that has the input
    /// (dropping and counting what does not fit); notifies each client once if bytes were
    /// added.
    fn service_rx(&mut self) -> Result<(), DriverError> {
        let mut result = self.attach_rx();
        let mut read = 0u32;
        for _ in 0..RX_BURST {
            if self.uart.read32(reg::FR) & fr::RXFE != 0 {
                break;
            }
            // Counted before the read: a crash after it loses a byte the next life reports.
            self.in_hand(read.saturating_add(1));
            let word = self.uart.read32(reg::DR);
            read = read.saturating_add(1);
            if word & dr::ERRORS != 0 {
                self.stats.rx_line_errors += 1;
            }
            let byte = (word & dr::DATA) as u8;
            if !self.more_rx.is_empty() {
                if core::mem::take(&mut self.switching) {
                    let to = usize::from(byte.wrapping_sub(b'0'));
                    if byte.is_ascii_digit() && to <= self.more_rx.len() {
                        self.focus = to;
                        let name = match to {
                            0 => "vmm",
                            i => self.more_rx.get(i - 1).map_or("?", |c| c.0),
                        };
                        self.say(format_args!("serial_driver: input to {}", name));
                        continue;
                    }
                    self.deliver(SWITCH_BYTE, &mut result);
                } else if byte == SWITCH_BYTE {
                    self.switching = true;
                    continue;
                }
            }
            self.deliver(byte, &mut result);
        }
        if let Slot::Attached(rx) = &mut self.rx {
            rx.publish();
        }
        for (_, ch, slot) in self.more_rx.iter_mut() {
            if let Slot::Attached(rx) = slot {
                rx.publish();
                if rx.take_notify() {
                    first(&mut result, self.k.notify(*ch).map_err(DriverError::Kernel));
                }
            }
        }
        if read > 0 {
            self.in_hand(0);
        }
        if let Slot::Attached(rx) = &mut self.rx
            && rx.take_notify()
        {
            first(
                &mut result,
                self.k.notify(RX_CHANNEL).map_err(DriverError::Kernel),
            );
        }
        result
    }

    /// The UART interrupt: reads UARTMIS and clears what it read but the RX conditions, then
    /// serves RX; returns whether the TX side needs serving.
    fn service_irq(&mut self) -> (bool, Result<(), DriverError>) {
        self.stats.irqs += 1;
        let mis = self.uart.read32(reg::MIS);
        // Clear first: a condition that arises while serving raises the interrupt again. Not
        // the RX and receive-timeout conditions (as Linux's pl011_int does not): reading the
        // FIFO empty clears them (TRM 3.4.3), and bytes an interrupt leaves (RX_BURST) keep
        // them asserted only if nothing else cleared them. QEMU's PL011 raises RX only when an
        // empty FIFO takes a byte, and has no receive timeout: cleared here, the rest of a
        // burst would never be read.
        let clear = mis & int::ALL & !(int::RX | int::RT);
        if clear != 0 {
            self.uart.write32(reg::ICR, clear);
        }
        let mut result = Ok(());
        if mis & (int::RX | int::RT) != 0 {
            first(&mut result, self.service_rx());
        }
        (mis & int::TX != 0, result)
    }
}

impl<K: Kernel, U: Uart> Handler for SerialDriver<'_, K, U> {
    type Error = DriverError;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), DriverError> {
        let mut result = Ok(());
        let mut tx = false;
        // The ack first, so no error below can leave the IRQ masked.
        if channels.contains(IRQ_CHANNEL) {
            self.deferred = Some(DeferredAction::IrqAck(IRQ_CHANNEL));
            let (tx_irq, r) = self.service_irq();
            tx |= tx_irq;
            first(&mut result, r);
        }
        let mut known = (1 << IRQ_CHANNEL.index()) | (1 << RX_CHANNEL.index());
        for c in &self.clients {
            known |= 1 << c.channel.index();
        }
        // The other consoles' RX channels: like RX_CHANNEL, nothing to do.
        let mut rx_only = 1 << RX_CHANNEL.index();
        for (_, ch, _) in &self.more_rx {
            rx_only |= 1 << ch.index();
        }
        known |= rx_only;
        let from_clients = ChannelSet::from_badge(
            channels.bits() & known & !(1 << IRQ_CHANNEL.index()) & !rx_only,
        );
        if tx || !from_clients.is_empty() {
            first(&mut result, self.service_tx(from_clients));
        }
        // RX_CHANNEL: the vmm freed RX space. The driver never waits for it (bytes that do not
        // fit are dropped), but sDDF's consumer may signal once, as the flag starts at 0.
        let unexpected = channels.bits() & !known;
        if unexpected != 0 {
            self.say(format_args!(
                "serial_driver: ignored notification on channels {:#x}",
                unexpected
            ));
        }
        if matches!(
            result,
            Err(DriverError::Setup(..) | DriverError::Corrupt(..) | DriverError::NoQueue(..))
        ) {
            self.stats.queue_errors += 1;
        }
        result
    }

    fn take_deferred_action(&mut self) -> Option<DeferredAction> {
        self.deferred.take()
    }

    /// The event loop's reports go to the UART too (see [`SerialDriver::say`]).
    fn report(&mut self, what: &str, detail: &dyn core::fmt::Display) -> bool {
        self.say(format_args!("serial_driver: {}: {}", what, detail));
        true
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
    // Said on the UART once the driver is up.
    let mut unusable: heapless::Vec<(Queue, DriverError), { MAX_TX_CLIENTS + 1 }> =
        heapless::Vec::new();
    let mut queue = |q: Queue, header, data| {
        let mem = match (header, data) {
            (Ok(h), Ok(d)) => QueueMem::from_regions(h, d),
            _ => Err(DriverError::NoQueue(q)),
        };
        mem.map_err(|e| {
            let _ = unusable.push((q, e));
        })
        .ok()
    };
    let mut tx: heapless::Vec<TxClient<'static>, MAX_TX_CLIENTS> = heapless::Vec::new();
    for def in tx_clients() {
        let unmapped = || Err(microkit_rt::RegionError::Unmapped);
        let h = system::region(def.queue_mr).unwrap_or_else(unmapped);
        let d = system::region(def.data_mr).unwrap_or_else(unmapped);
        let mem = queue(Queue::Tx(def.name), h, d);
        let _ = tx.push(TxClient {
            name: def.name,
            channel: def.channel,
            mem,
            prefixed: def.prefixed,
        });
    }
    let rx = queue(
        Queue::Rx,
        system::serial_rx_queue_vmm_region(),
        system::serial_rx_data_vmm_region(),
    );
    let (state, state_err) =
        match system::serial_driver_state_region().and_then(|r| r.into_atomic_words()) {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(e)),
        };
    let mut more = heapless::Vec::<_, MAX_MORE_RX>::new();
    for def in rx_clients() {
        let unmapped = || Err(microkit_rt::RegionError::Unmapped);
        let h = system::region(def.queue_mr).unwrap_or_else(unmapped);
        let d = system::region(def.data_mr).unwrap_or_else(unmapped);
        let _ = more.push((def.name, def.channel, queue(Queue::Rx, h, d)));
    }
    let mut d = SerialDriver::with_state(k, uart, tx, rx, state);
    for (name, channel, mem) in more {
        d.add_rx_client(name, channel, mem);
    }
    if let Some(e) = state_err {
        d.say(format_args!("serial_driver: state page: {:?}", e));
    }
    for (q, e) in unusable {
        d.say(format_args!("serial_driver: {}: {}", q, e));
    }
    d
}
