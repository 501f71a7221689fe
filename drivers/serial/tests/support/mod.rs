//! A register-level model of the Arm PL011 UART (TRM DDI 0183) for the driver's host tests:
//! 32-entry TX and RX FIFOs (1 entry with UARTLCR_H.FEN clear), UARTFR flags, the interrupt
//! registers (UARTIMSC/RIS/MIS/ICR) with the TRM's trigger-level semantics, and a record of
//! every programming mistake the TRM forbids, so tests can assert there was none. With
//! [`Pl011::qemu`] set it behaves as QEMU's PL011 instead (the one the boot tests run on).

use serial_driver::Uart;
use serial_driver::pl011::{cr, dr, fr, int, lcr_h, reg};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

/// FIFO depth with FIFOs enabled.
pub const FIFO_DEPTH: usize = 32;

/// The model's state.
#[derive(Debug)]
pub struct Pl011 {
    /// Bytes written and not yet shifted out.
    pub tx_fifo: VecDeque<u8>,
    /// Bytes shifted out onto the line, in order.
    pub wire: Vec<u8>,
    /// Received words (byte + error flags) not yet read.
    pub rx_fifo: VecDeque<u32>,
    pub lcr_h: u32,
    pub cr: u32,
    pub ifls: u32,
    pub imsc: u32,
    pub ris: u32,
    /// Characters lost because the RX FIFO was full.
    pub rx_overruns: u64,
    /// Characters that arrived while the receiver was disabled.
    pub rx_while_disabled: u64,
    /// Bytes written to UARTDR with the FIFO full (lost): a driver bug.
    pub tx_overflows: u64,
    /// Bytes written to UARTDR with the UART or transmitter disabled: a driver bug.
    pub tx_while_disabled: u64,
    /// UARTLCR_H writes with the UART enabled (the TRM forbids it): a driver bug.
    pub lcr_h_while_enabled: u64,
    /// Writes to read-only registers or unknown offsets, and reads of unknown offsets.
    pub bad_accesses: Vec<usize>,
    /// Bytes dropped from the TX FIFO when FEN was cleared (the TRM's flush).
    pub flushed: u64,
    /// Time passes between register reads: the line shifts one byte out of the TX FIFO after
    /// each UARTFR read (off by default: the tests move the line with [`Pl011::transmit`]).
    pub shift_on_fr_read: bool,
    /// UARTFR reads so far, and how many there had been when UARTCR.UARTEN was first cleared.
    pub fr_reads: usize,
    pub fr_reads_at_disable: Option<usize>,
    /// Every value written to UARTICR, in order.
    pub icr_writes: Vec<u32>,
    /// A word the test watches (the driver's state page's RX_IN_HAND), and its value at each
    /// UARTDR read: what the driver had recorded as read and not yet published at that moment.
    pub watch: Option<&'static std::sync::atomic::AtomicU32>,
    pub watched_at_dr_reads: Vec<u32>,
    /// QEMU's PL011 (hw/char/pl011.c of QEMU 7.2, Debian 12's) rather than the TRM's: the RX
    /// trigger level is 1 whatever UARTIFLS says, the RX interrupt is raised only when the
    /// FIFO's level reaches it (an empty FIFO takes a byte), never again while bytes stay in
    /// the FIFO, the receive timeout is never raised, and the host's bytes
    /// ([`Pl011::host_input`]) enter the FIFO as it makes room ([`Pl011::host_fill`]), with
    /// [`Pl011::host_keeps_up`] one after each UARTDR read too.
    pub qemu: bool,
    /// The host refills the FIFO as fast as the driver reads it: one byte after each UARTDR
    /// read (QEMU's main loop, woken by the read, runs beside the CPU).
    pub host_keeps_up: bool,
    /// Bytes the host has for the UART and the FIFO has had no room for yet ([`Pl011::qemu`]).
    pub host_input: VecDeque<u8>,
}

impl Default for Pl011 {
    fn default() -> Self {
        // Reset values (TRM 3.3): UARTCR 0x300 (TXE, RXE; UART disabled), UARTIFLS 0x12
        // (both triggers at 1/2), everything else 0.
        Pl011 {
            tx_fifo: VecDeque::new(),
            wire: vec![],
            rx_fifo: VecDeque::new(),
            lcr_h: 0,
            cr: cr::TXE | cr::RXE,
            ifls: 0x12,
            imsc: 0,
            ris: 0,
            rx_overruns: 0,
            rx_while_disabled: 0,
            tx_overflows: 0,
            tx_while_disabled: 0,
            lcr_h_while_enabled: 0,
            bad_accesses: vec![],
            flushed: 0,
            shift_on_fr_read: false,
            fr_reads: 0,
            fr_reads_at_disable: None,
            icr_writes: vec![],
            watch: None,
            watched_at_dr_reads: vec![],
            qemu: false,
            host_keeps_up: false,
            host_input: VecDeque::new(),
        }
    }
}

fn fraction(sel: u32) -> usize {
    // UARTIFLS: 0b000 1/8, 0b001 1/4, 0b010 1/2, 0b011 3/4, 0b100 7/8.
    match sel & 7 {
        0 => FIFO_DEPTH / 8,
        1 => FIFO_DEPTH / 4,
        2 => FIFO_DEPTH / 2,
        3 => FIFO_DEPTH * 3 / 4,
        _ => FIFO_DEPTH * 7 / 8,
    }
}

impl Pl011 {
    pub fn depth(&self) -> usize {
        if self.lcr_h & lcr_h::FEN != 0 {
            FIFO_DEPTH
        } else {
            1
        }
    }
    fn tx_trigger(&self) -> usize {
        fraction(self.ifls)
    }
    fn rx_trigger(&self) -> usize {
        fraction(self.ifls >> 3)
    }
    fn enabled(&self, bit: u32) -> bool {
        self.cr & cr::UARTEN != 0 && self.cr & bit != 0
    }
    pub fn mis(&self) -> u32 {
        self.ris & self.imsc
    }
    /// The UART's interrupt output (UARTINTR: any masked interrupt).
    pub fn irq_line(&self) -> bool {
        self.mis() != 0
    }
    pub fn fr(&self) -> u32 {
        let mut v = 0;
        if !self.tx_fifo.is_empty() {
            v |= fr::BUSY;
        } else {
            v |= fr::TXFE;
        }
        if self.rx_fifo.is_empty() {
            v |= fr::RXFE;
        }
        if self.tx_fifo.len() >= self.depth() {
            v |= fr::TXFF;
        }
        if self.rx_fifo.len() >= self.depth() {
            v |= fr::RXFF;
        }
        v
    }

    /// The line takes up to `n` bytes from the TX FIFO. The TX interrupt is raised when the
    /// FIFO level falls to the trigger level (TRM 3.4.3: "reaches the programmed trigger level").
    pub fn transmit(&mut self, n: usize) {
        if !self.enabled(cr::TXE) {
            return;
        }
        for _ in 0..n {
            let before = self.tx_fifo.len();
            let Some(b) = self.tx_fifo.pop_front() else {
                break;
            };
            self.wire.push(b);
            let trigger = if self.lcr_h & lcr_h::FEN != 0 {
                self.tx_trigger()
            } else {
                0
            };
            if before > trigger && self.tx_fifo.len() <= trigger {
                self.ris |= int::TX;
            }
        }
    }

    /// Characters arrive on the line (with error flags `flags`, usually 0).
    pub fn receive_with(&mut self, bytes: &[u8], flags: u32) {
        for &b in bytes {
            if !self.enabled(cr::RXE) {
                self.rx_while_disabled += 1;
                continue;
            }
            if self.rx_fifo.len() >= self.depth() {
                self.rx_overruns += 1;
                continue;
            }
            self.rx_fifo.push_back(u32::from(b) | flags);
            if self.qemu {
                // `pl011_put_fifo`: `if (s->read_count == s->read_trigger)`, the trigger 1.
                if self.rx_fifo.len() == 1 {
                    self.ris |= int::RX;
                }
                continue;
            }
            let trigger = if self.lcr_h & lcr_h::FEN != 0 {
                self.rx_trigger()
            } else {
                1
            };
            if self.rx_fifo.len() >= trigger {
                self.ris |= int::RX;
            }
        }
    }

    pub fn receive(&mut self, bytes: &[u8]) {
        self.receive_with(bytes, 0);
    }

    /// The host's bytes enter the FIFO while it has room ([`Pl011::qemu`]).
    pub fn host_fill(&mut self) {
        while self.rx_fifo.len() < self.depth() {
            let Some(b) = self.host_input.pop_front() else {
                break;
            };
            self.receive(&[b]);
        }
    }

    /// The line stays idle for 32 bit periods: receive timeout if the RX FIFO holds data (not
    /// in QEMU, which has none).
    pub fn idle(&mut self) {
        if !self.qemu && !self.rx_fifo.is_empty() {
            self.ris |= int::RT;
        }
    }

    pub fn read(&mut self, offset: usize) -> u32 {
        match offset {
            reg::DR => {
                if let Some(w) = self.watch {
                    self.watched_at_dr_reads
                        .push(w.load(std::sync::atomic::Ordering::Relaxed));
                }
                let v = self.rx_fifo.pop_front().unwrap_or(0);
                let trigger = if self.qemu {
                    1
                } else if self.lcr_h & lcr_h::FEN != 0 {
                    self.rx_trigger()
                } else {
                    1
                };
                if self.rx_fifo.len() < trigger {
                    self.ris &= !int::RX;
                }
                if self.rx_fifo.is_empty() {
                    self.ris &= !int::RT;
                }
                if self.qemu
                    && self.host_keeps_up
                    && self.rx_fifo.len() < self.depth()
                    && let Some(b) = self.host_input.pop_front()
                {
                    self.receive(&[b]);
                }
                v
            }
            reg::FR => {
                let v = self.fr();
                self.fr_reads += 1;
                if self.shift_on_fr_read {
                    self.transmit(1);
                }
                v
            }
            reg::IBRD | reg::FBRD => 0,
            reg::LCR_H => self.lcr_h,
            reg::CR => self.cr,
            reg::IFLS => self.ifls,
            reg::IMSC => self.imsc,
            reg::RIS => self.ris,
            reg::MIS => self.mis(),
            _ => {
                self.bad_accesses.push(offset);
                0
            }
        }
    }

    pub fn write(&mut self, offset: usize, value: u32) {
        match offset {
            reg::DR => {
                if !self.enabled(cr::TXE) {
                    self.tx_while_disabled += 1;
                }
                if self.tx_fifo.len() >= self.depth() {
                    self.tx_overflows += 1;
                    return;
                }
                self.tx_fifo.push_back((value & dr::DATA) as u8);
                let trigger = if self.lcr_h & lcr_h::FEN != 0 {
                    self.tx_trigger()
                } else {
                    0
                };
                if self.tx_fifo.len() > trigger {
                    self.ris &= !int::TX;
                }
            }
            reg::LCR_H => {
                if self.cr & cr::UARTEN != 0 {
                    self.lcr_h_while_enabled += 1;
                }
                if value & lcr_h::FEN == 0 && self.tx_fifo.len() > 1 {
                    self.flushed += self.tx_fifo.len() as u64;
                    self.tx_fifo.clear();
                }
                self.lcr_h = value & 0xff;
            }
            reg::CR => {
                if value & cr::UARTEN == 0 && self.fr_reads_at_disable.is_none() {
                    self.fr_reads_at_disable = Some(self.fr_reads);
                }
                self.cr = value & 0xff87;
            }
            reg::IFLS => self.ifls = value & 0x3f,
            reg::IMSC => self.imsc = value & int::ALL,
            reg::ICR => {
                self.icr_writes.push(value);
                self.ris &= !value;
            }
            reg::IBRD | reg::FBRD => {}
            _ => self.bad_accesses.push(offset),
        }
    }
}

/// A shared handle on the model: the driver owns one, the test keeps another.
#[derive(Clone, Default)]
pub struct ModelUart(pub Rc<RefCell<Pl011>>);

impl ModelUart {
    pub fn with<R>(&self, f: impl FnOnce(&mut Pl011) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

impl Uart for ModelUart {
    fn read32(&mut self, offset: usize) -> u32 {
        self.0.borrow_mut().read(offset)
    }
    fn write32(&mut self, offset: usize, value: u32) {
        self.0.borrow_mut().write(offset, value)
    }
}
