//! The PL011 console: polled byte output (UARTFR.TXFF checked, with a bound, before every write
//! to UARTDR) and the `println!` macro every line of the guest goes through (lines end in CRLF),
//! and polled byte input (UARTFR.RXFE).

use core::fmt;

use crate::mmio::UART;

const UARTDR: usize = 0x000;
const UARTFR: usize = 0x018;
const FR_TXFF: u64 = 1 << 5;
/// Polls of a full FIFO before writing anyway: output must never hang the guest.
const TXFF_POLLS: u32 = 1_000_000;

fn putb(b: u8) {
    let mut polls = 0;
    while UART.ldr_w(UARTFR) & FR_TXFF != 0 && polls < TXFF_POLLS {
        polls += 1;
    }
    UART.str_w(UARTDR, u64::from(b));
}

const FR_RXFE: u64 = 1 << 4;

/// One received byte, if the RX FIFO holds one.
pub fn getb() -> Option<u8> {
    if UART.ldr_w(UARTFR) & FR_RXFE != 0 {
        return None;
    }
    Some(UART.ldr_w(UARTDR) as u8)
}

/// The console as a `fmt::Write` sink.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                putb(b'\r');
            }
            putb(b);
        }
        Ok(())
    }
}

/// Prints `args` and a line end (the implementation of `println!`).
pub fn print_line(args: fmt::Arguments<'_>) {
    use fmt::Write;
    // `Console::write_str` never fails.
    let _ = Console.write_fmt(args);
    let _ = Console.write_str("\n");
}

/// Prints one line on the console.
macro_rules! println {
    () => {
        $crate::uart::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::uart::print_line(format_args!($($arg)*))
    };
}
