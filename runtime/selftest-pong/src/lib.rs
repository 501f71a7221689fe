//! Runtime self-test PD `selftest_pong`: when ping notifies, reads ping's greeting from the shared
//! region, writes an answer and notifies ping back through a deferred signal (the NBSendRecv
//! path); serves ping's protected "add" call (MR0 + MR1 → MR0). Prints each step through the
//! serial driver domain (its TX queue, `serial-client`; the debug console without it).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

use microkit_rt::{
    Channel, ChannelSet, DeferredAction, Handler, Kernel, MessageInfo, RegionError, SharedRegion,
    abi,
};
pub use serial_client::Console;
use serial_client::serial_println;

/// Constants generated from system.xml.
#[allow(non_upper_case_globals, dead_code, unsafe_code)]
pub mod system {
    include!(concat!(env!("OUT_DIR"), "/system.rs"));
}

/// Where ping writes its greeting.
pub const PING_TEXT_OFFSET: usize = 0;
/// Where pong writes its answer.
pub const PONG_TEXT_OFFSET: usize = 64;
/// Answer text.
pub const PONG_TEXT: &[u8] = b"hello from pong";
/// Label of the "add" protected call.
pub const ADD_LABEL: u64 = 1;

/// The console over the serial TX queue system.xml gives this PD.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn system_console() -> Console<'static> {
    Console::from_regions(
        system::SERIAL_DRIVER,
        system::serial_tx_queue_selftest_pong_region(),
        system::serial_tx_data_selftest_pong_region(),
    )
}

/// The pong PD.
pub struct Pong<K: Kernel> {
    k: K,
    console: Console<'static>,
    shared: Option<SharedRegion>,
    deferred: Option<DeferredAction>,
}

/// What can go wrong in pong.
#[derive(Debug)]
pub enum PongError {
    /// The shared region is not mapped.
    NoSharedRegion,
    /// A region access failed.
    Region(RegionError),
}

impl core::fmt::Display for PongError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PongError::NoSharedRegion => f.write_str("shared region not mapped"),
            PongError::Region(e) => write!(f, "shared region: {e:?}"),
        }
    }
}

impl<K: Kernel> Pong<K> {
    /// Initialises the PD; messages go to `console`.
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
                    "selftest_pong: FAIL shared region unavailable: {:?}",
                    e
                );
                None
            }
        };
        serial_println!(console, k, "selftest_pong: init");
        Pong {
            k,
            console,
            shared,
            deferred: None,
        }
    }
}

impl<K: Kernel> Pong<K> {
    /// The console (tests inspect its counters).
    pub fn console(&self) -> &Console<'static> {
        &self.console
    }
}

impl<K: Kernel> Handler for Pong<K> {
    type Error = PongError;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), PongError> {
        if !channels.contains(system::SELFTEST_PING) {
            serial_println!(
                self.console,
                self.k,
                "selftest_pong: unexpected notification {:?}",
                channels
            );
            return Ok(());
        }
        let shared = self.shared.as_ref().ok_or(PongError::NoSharedRegion)?;
        let mut text = [0u8; 63];
        shared
            .read(PING_TEXT_OFFSET, &mut text)
            .map_err(PongError::Region)?;
        let n = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        let text = core::str::from_utf8(&text[..n]).unwrap_or("<not utf-8>");
        serial_println!(
            self.console,
            self.k,
            "selftest_pong: notified by ping; shared memory says '{}'",
            text
        );
        shared
            .write(PONG_TEXT_OFFSET, PONG_TEXT)
            .map_err(PongError::Region)?;
        shared
            .write(PONG_TEXT_OFFSET + PONG_TEXT.len(), &[0])
            .map_err(PongError::Region)?;
        self.deferred = Some(DeferredAction::Notify(system::SELFTEST_PING));
        serial_println!(
            self.console,
            self.k,
            "selftest_pong: answered in shared memory, notifying ping (deferred)"
        );
        Ok(())
    }

    fn protected(&mut self, channel: Channel, msg: MessageInfo) -> Result<MessageInfo, PongError> {
        if channel != system::SELFTEST_PING || msg.label() != ADD_LABEL || msg.length() < 2 {
            serial_println!(
                self.console,
                self.k,
                "selftest_pong: refused protected call on channel {} ({:?})",
                channel.index(),
                msg
            );
            return Ok(MessageInfo::new(abi::error::INVALID_ARGUMENT, 0));
        }
        let (a, b) = (self.k.mr(0), self.k.mr(1));
        serial_println!(
            self.console,
            self.k,
            "selftest_pong: protected call from ping: {} + {}",
            a,
            b
        );
        self.k.set_mr(0, a.wrapping_add(b));
        Ok(MessageInfo::new(0, 1))
    }

    fn take_deferred_action(&mut self) -> Option<DeferredAction> {
        self.deferred.take()
    }

    /// The event loop's reports take the PD's TX queue too.
    fn report(&mut self, what: &str, detail: &dyn core::fmt::Display) -> bool {
        serial_println!(self.console, self.k, "selftest_pong: {}: {}", what, detail);
        true
    }
}
