//! Pure helpers shared by the cases, the handlers and the benchmarks, kept free of `asm!` so the
//! host tests can check them: exception-syndrome fields, the bounded message buffer behind every
//! `FAIL` detail, and the fixed-point `ticks-per-op` figure.

use core::fmt;

/// ESR_ELx exception classes the guest expects to see.
pub mod ec {
    /// Unknown reason: what an undefined instruction (or a reflected one) reports.
    pub const UNKNOWN: u64 = 0x00;
    /// Access to SIMD/FP trapped by CPACR_EL1.FPEN.
    pub const FP_TRAP: u64 = 0x07;
    /// Data abort taken without a change in exception level.
    pub const DABT_CUR: u64 = 0x25;
}

/// Data-fault status code of a synchronous external abort (not on a table walk).
pub const DFSC_SEA: u64 = 0x10;

/// Exception class, ESR bits 31:26.
pub const fn esr_ec(esr: u64) -> u64 {
    (esr >> 26) & 0x3f
}

/// Instruction-syndrome-valid bit of a data abort, ESR bit 24.
pub const fn esr_isv(esr: u64) -> bool {
    esr & (1 << 24) != 0
}

/// Write-not-read bit of a data abort, ESR bit 6.
pub const fn esr_wnr(esr: u64) -> bool {
    esr & (1 << 6) != 0
}

/// Data-fault status code, ESR bits 5:0.
pub const fn esr_dfsc(esr: u64) -> u64 {
    esr & 0x3f
}

/// A fixed-capacity text buffer: the detail of a `FAIL` line. Writing past the capacity
/// truncates (at a character boundary) instead of failing, so a message is never lost entirely.
pub struct Msg {
    buf: [u8; Msg::CAPACITY],
    len: usize,
}

impl Msg {
    /// Bytes a message can hold.
    pub const CAPACITY: usize = 192;

    /// An empty message.
    pub const fn new() -> Self {
        Msg {
            buf: [0; Msg::CAPACITY],
            len: 0,
        }
    }

    /// A message holding `args`, formatted.
    pub fn from_args(args: fmt::Arguments<'_>) -> Self {
        let mut m = Msg::new();
        // Truncation is the only way `write_str` can end early, and it reports success.
        let _ = fmt::write(&mut m, args);
        m
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        // `write_str` only ever copies whole characters, so the prefix is valid UTF-8.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("<bad utf-8>")
    }
}

impl Default for Msg {
    fn default() -> Self {
        Msg::new()
    }
}

impl fmt::Write for Msg {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = Msg::CAPACITY - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `total / n` shown with two decimals, rounded half up (`n == 0` shows `0.00`); no floating
/// point needed.
#[cfg_attr(not(feature = "bench"), allow(dead_code))]
pub struct PerOp {
    /// The total (e.g. timer ticks).
    pub total: u64,
    /// The divisor (e.g. iterations).
    pub n: u64,
}

impl fmt::Display for PerOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.n == 0 {
            return f.write_str("0.00");
        }
        let n = u128::from(self.n);
        let hundredths = (u128::from(self.total) * 100 + n / 2) / n;
        write!(f, "{}.{:02}", hundredths / 100, hundredths % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_op_rounds_to_two_decimals() {
        assert_eq!(PerOp { total: 10, n: 3 }.to_string(), "3.33");
        assert_eq!(PerOp { total: 20, n: 3 }.to_string(), "6.67");
        assert_eq!(
            PerOp {
                total: 1_234_500,
                n: 10_000
            }
            .to_string(),
            "123.45"
        );
        assert_eq!(PerOp { total: 5, n: 1 }.to_string(), "5.00");
        assert_eq!(PerOp { total: 1, n: 0 }.to_string(), "0.00");
        assert_eq!(
            PerOp {
                total: u64::MAX,
                n: 1
            }
            .to_string(),
            "18446744073709551615.00"
        );
    }

    #[test]
    fn msg_truncates_at_char_boundary() {
        let long = "é".repeat(Msg::CAPACITY);
        let m = Msg::from_args(format_args!("{long}"));
        assert!(m.as_str().len() <= Msg::CAPACITY);
        assert!(m.as_str().len() >= Msg::CAPACITY - 1);
        assert!(m.as_str().chars().all(|c| c == 'é'));
        assert_eq!(
            Msg::from_args(format_args!("x={:#x}", 255)).as_str(),
            "x=0xff"
        );
    }

    #[test]
    fn esr_fields() {
        // Data abort, current EL, ISV=0, WnR=1, DFSC=SEA, IL=1.
        let esr = (0x25 << 26) | (1 << 25) | (1 << 6) | 0x10;
        assert_eq!(esr_ec(esr), ec::DABT_CUR);
        assert!(!esr_isv(esr));
        assert!(esr_wnr(esr));
        assert_eq!(esr_dfsc(esr), DFSC_SEA);
        assert_eq!(esr_ec(1 << 25), ec::UNKNOWN);
    }
}
