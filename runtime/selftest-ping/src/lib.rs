//! Runtime self-test PD `selftest_ping`: writes a greeting into the shared region and notifies
//! pong; when pong notifies back, reads pong's answer from the shared region, makes a protected
//! call with a payload (20, 22) and checks the reply (42). Prints each step through the serial
//! driver domain (its TX queue, `serial-client`; the debug console without it).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

use microkit_rt::{ChannelSet, Handler, Kernel, MessageInfo, RegionError, SharedRegion};
pub use serial_client::Console;
use serial_client::serial_println;

/// Constants generated from system.xml.
#[allow(non_upper_case_globals, dead_code, unsafe_code)]
pub mod system {
    include!(concat!(env!("OUT_DIR"), "/system.rs"));
}

/// Where ping writes its greeting in the shared region.
pub const PING_TEXT_OFFSET: usize = 0;
/// Where pong writes its answer.
pub const PONG_TEXT_OFFSET: usize = 64;
/// Greeting text.
pub const PING_TEXT: &[u8] = b"hello from ping";
/// Label of the "add" protected call.
pub const ADD_LABEL: u64 = 1;

/// Reads a NUL-terminated string of at most 63 bytes at `offset`.
pub fn read_text(
    region: &SharedRegion,
    offset: usize,
    out: &mut [u8; 63],
) -> Result<usize, RegionError> {
    region.read(offset, out)?;
    Ok(out.iter().position(|&b| b == 0).unwrap_or(out.len()))
}

/// Writes `text` (at most 63 bytes) and a NUL at `offset`.
pub fn write_text(region: &SharedRegion, offset: usize, text: &[u8]) -> Result<(), RegionError> {
    let n = text.len().min(63);
    region.write(offset, &text[..n])?;
    region.write(offset + n, &[0])
}

/// The console over the serial TX queue system.xml gives this PD.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn system_console() -> Console<'static> {
    Console::from_regions(
        system::SERIAL_DRIVER,
        system::serial_tx_queue_selftest_ping_region(),
        system::serial_tx_data_selftest_ping_region(),
    )
}

/// The ping PD.
pub struct Ping<K: Kernel> {
    k: K,
    console: Console<'static>,
    shared: Option<SharedRegion>,
    /// Whether the protected call returned the expected sum.
    pub passed: bool,
}

/// What can go wrong in ping.
#[derive(Debug)]
pub enum PingError {
    /// The shared region is not mapped (system.xml lacks the map or its setvar).
    NoSharedRegion,
    /// A region access failed.
    Region(RegionError),
    /// A kernel operation failed.
    Kernel(microkit_rt::KernelError),
}

impl core::fmt::Display for PingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PingError::NoSharedRegion => f.write_str("shared region not mapped"),
            PingError::Region(e) => write!(f, "shared region: {e:?}"),
            PingError::Kernel(e) => write!(f, "kernel: {e}"),
        }
    }
}

impl<K: Kernel> Ping<K> {
    /// Initialises the PD: greeting into the shared region, then a notification to pong.
    /// Messages go to `console`.
    pub fn new(
        mut k: K,
        shared: Result<SharedRegion, RegionError>,
        mut console: Console<'static>,
    ) -> Self {
        let shared = match shared {
            Ok(r) => Some(r),
            Err(e) => {
                serial_println!(
                    console,
                    k,
                    "selftest_ping: FAIL shared region unavailable: {:?}",
                    e
                );
                None
            }
        };
        let mut pd = Ping {
            k,
            console,
            shared,
            passed: false,
        };
        if let Err(e) = pd.start() {
            serial_println!(pd.console, pd.k, "selftest_ping: FAIL {}", e);
        }
        pd
    }

    fn start(&mut self) -> Result<(), PingError> {
        let shared = self.shared.as_ref().ok_or(PingError::NoSharedRegion)?;
        write_text(shared, PING_TEXT_OFFSET, PING_TEXT).map_err(PingError::Region)?;
        serial_println!(
            self.console,
            self.k,
            "selftest_ping: init, wrote shared memory, notifying pong"
        );
        self.k
            .notify(system::SELFTEST_PONG)
            .map_err(PingError::Kernel)
    }

    /// The kernel (tests inspect it).
    pub fn kernel(&mut self) -> &mut K {
        &mut self.k
    }

    /// The console (tests inspect its counters).
    pub fn console(&self) -> &Console<'static> {
        &self.console
    }
}

impl<K: Kernel> Handler for Ping<K> {
    type Error = PingError;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), PingError> {
        if channels.contains(system::VMM) {
            serial_println!(
                self.console,
                self.k,
                "selftest_ping: notified by vmm; notifying it back"
            );
            self.k.notify(system::VMM).map_err(PingError::Kernel)?;
        }
        if !channels.contains(system::SELFTEST_PONG) {
            if !channels.contains(system::VMM) {
                serial_println!(
                    self.console,
                    self.k,
                    "selftest_ping: unexpected notification {:?}",
                    channels
                );
            }
            return Ok(());
        }
        let shared = self.shared.as_ref().ok_or(PingError::NoSharedRegion)?;
        let mut text = [0u8; 63];
        let n = read_text(shared, PONG_TEXT_OFFSET, &mut text).map_err(PingError::Region)?;
        let text = core::str::from_utf8(&text[..n]).unwrap_or("<not utf-8>");
        serial_println!(
            self.console,
            self.k,
            "selftest_ping: notified by pong; shared memory says '{}'",
            text
        );

        self.k.set_mr(0, 20);
        self.k.set_mr(1, 22);
        let reply = self
            .k
            .ppcall(system::SELFTEST_PONG, MessageInfo::new(ADD_LABEL, 2))
            .map_err(PingError::Kernel)?;
        let sum = self.k.mr(0);
        serial_println!(
            self.console,
            self.k,
            "selftest_ping: protected call returned {} (label {}, length {})",
            sum,
            reply.label(),
            reply.length()
        );
        self.passed = reply.label() == 0
            && reply.length() == 1
            && sum == 42
            && text.as_bytes() == b"hello from pong";
        if self.passed {
            serial_println!(self.console, self.k, "selftest_ping: self-test passed");
        } else {
            serial_println!(self.console, self.k, "selftest_ping: FAIL self-test");
        }
        Ok(())
    }

    /// The event loop's reports take the PD's TX queue too.
    fn report(&mut self, what: &str, detail: &dyn core::fmt::Display) -> bool {
        serial_println!(self.console, self.k, "selftest_ping: {}: {}", what, detail);
        true
    }
}
