//! The Arm PL011 UART's registers (PrimeCell UART (PL011) Technical Reference Manual, DDI 0183)
//! and the [`Uart`] trait every register access of the driver goes through: the mapped MMIO page
//! on the target ([`SharedRegion`], uncached), a register-level model in host tests.

use microkit_rt::SharedRegion;

/// Register offsets from the UART's base.
pub mod reg {
    /// UARTDR: data (read: bits 7:0 the byte, 11:8 its error flags; write: bits 7:0).
    pub const DR: usize = 0x000;
    /// UARTFR: flags.
    pub const FR: usize = 0x018;
    /// UARTIBRD: integer baud-rate divisor (left as firmware / QEMU set it).
    pub const IBRD: usize = 0x024;
    /// UARTFBRD: fractional baud-rate divisor (left as firmware / QEMU set it).
    pub const FBRD: usize = 0x028;
    /// UARTLCR_H: line control.
    pub const LCR_H: usize = 0x02c;
    /// UARTCR: control.
    pub const CR: usize = 0x030;
    /// UARTIFLS: FIFO interrupt level select.
    pub const IFLS: usize = 0x034;
    /// UARTIMSC: interrupt mask set/clear (1 = enabled).
    pub const IMSC: usize = 0x038;
    /// UARTRIS: raw interrupt status.
    pub const RIS: usize = 0x03c;
    /// UARTMIS: masked interrupt status (RIS & IMSC).
    pub const MIS: usize = 0x040;
    /// UARTICR: interrupt clear (write 1 to clear).
    pub const ICR: usize = 0x044;
    /// Bytes of register space the driver touches (everything below UARTDMACR's end).
    pub const SPAN: usize = 0x04c;
}

/// UARTDR read bits.
pub mod dr {
    /// The received byte.
    pub const DATA: u32 = 0xff;
    /// Framing error.
    pub const FE: u32 = 1 << 8;
    /// Parity error.
    pub const PE: u32 = 1 << 9;
    /// Break error.
    pub const BE: u32 = 1 << 10;
    /// Overrun error (the FIFO was full when a character arrived; that character was lost).
    pub const OE: u32 = 1 << 11;
    /// Every error flag.
    pub const ERRORS: u32 = FE | PE | BE | OE;
}

/// UARTFR bits.
pub mod fr {
    /// UART busy transmitting.
    pub const BUSY: u32 = 1 << 3;
    /// Receive FIFO empty.
    pub const RXFE: u32 = 1 << 4;
    /// Transmit FIFO full.
    pub const TXFF: u32 = 1 << 5;
    /// Receive FIFO full.
    pub const RXFF: u32 = 1 << 6;
    /// Transmit FIFO empty.
    pub const TXFE: u32 = 1 << 7;
}

/// UARTLCR_H bits.
pub mod lcr_h {
    /// Send break.
    pub const BRK: u32 = 1 << 0;
    /// Parity enable.
    pub const PEN: u32 = 1 << 1;
    /// Two stop bits.
    pub const STP2: u32 = 1 << 3;
    /// FIFOs enabled.
    pub const FEN: u32 = 1 << 4;
    /// Word length: 8 bits (WLEN, bits 6:5 = 0b11).
    pub const WLEN_8: u32 = 0b11 << 5;
}

/// UARTCR bits.
pub mod cr {
    /// UART enable.
    pub const UARTEN: u32 = 1 << 0;
    /// Transmit enable.
    pub const TXE: u32 = 1 << 8;
    /// Receive enable.
    pub const RXE: u32 = 1 << 9;
}

/// Interrupt bits, the same in UARTIMSC, UARTRIS, UARTMIS and UARTICR.
pub mod int {
    /// Receive (RX FIFO at or above its trigger level).
    pub const RX: u32 = 1 << 4;
    /// Transmit (TX FIFO at or below its trigger level).
    pub const TX: u32 = 1 << 5;
    /// Receive timeout (RX FIFO not empty and the line idle).
    pub const RT: u32 = 1 << 6;
    /// Every interrupt source (modem status, RX, TX, RT, FE, PE, BE, OE): bits 10:0.
    pub const ALL: u32 = 0x7ff;
}

/// 32-bit register access to a PL011.
pub trait Uart {
    /// Reads the register at `offset` (reading UARTDR pops the RX FIFO: hence `&mut`).
    fn read32(&mut self, offset: usize) -> u32;
    /// Writes the register at `offset`.
    fn write32(&mut self, offset: usize, value: u32);
    /// Whether there is a UART at all (one whose region could not be mapped is not).
    fn present(&self) -> bool {
        true
    }
}

/// The UART's MMIO page, mapped uncached (device memory): volatile 32-bit accesses. An access
/// outside the region reads as all ones (as a bus error often does on real hardware: "TX FIFO
/// full, RX FIFO empty", so the driver does nothing) and a write there is dropped.
impl Uart for SharedRegion {
    fn read32(&mut self, offset: usize) -> u32 {
        self.read_u32(offset).unwrap_or(u32::MAX)
    }
    fn write32(&mut self, offset: usize, value: u32) {
        let _ = self.write_u32(offset, value);
    }
}

/// A UART that may be absent (its region could not be mapped): reads as all ones, writes
/// dropped, as for an access outside the region.
impl<U: Uart> Uart for Option<U> {
    fn read32(&mut self, offset: usize) -> u32 {
        self.as_mut().map_or(u32::MAX, |u| u.read32(offset))
    }
    fn write32(&mut self, offset: usize, value: u32) {
        if let Some(u) = self {
            u.write32(offset, value);
        }
    }
    fn present(&self) -> bool {
        self.as_ref().is_some_and(|u| u.present())
    }
}
