//! The switch's decisions, apart from any queue: where a frame goes ([`route`]) and which bytes
//! a TX descriptor names ([`tx_range`]). Pure functions over untrusted input (the frame's
//! addresses, the descriptor's offset and length): the `route` fuzz target holds them to their
//! invariants.

use core::ops::Range;

/// The shortest frame: an Ethernet header.
pub const MIN_FRAME: usize = 14;
/// The longest frame without FCS (1500 bytes of payload).
pub const MAX_FRAME: usize = 1514;

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To this client only.
    To(usize),
    /// To every client but its sender (broadcast and multicast).
    AllOthers,
    /// Nowhere (counted at its sender).
    Nowhere(Drop),
}

/// Why a frame goes nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Its source address is not its sender's.
    Spoofed,
    /// A group frame with no other client.
    NoOtherClient,
    /// Unicast to its sender's own address.
    ToSelf,
    /// Unicast to an address no client has.
    NoSuchClient,
}

impl Drop {
    /// In words, for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::Spoofed => "a source address not its own",
            Drop::NoOtherClient => "no other client",
            Drop::ToSelf => "its own address",
            Drop::NoSuchClient => "no client with that address",
        }
    }
}

/// Where client `sender`'s `frame` (at least [`MIN_FRAME`] bytes, else it goes nowhere as
/// spoofed) goes among clients whose addresses are `macs` (in table order: of two clients with
/// one address, the first gets its unicast frames).
pub fn route(frame: &[u8], sender: usize, macs: &[[u8; 6]]) -> Route {
    let (Some(dst), Some(src), Some(own)) = (frame.get(0..6), frame.get(6..12), macs.get(sender))
    else {
        return Route::Nowhere(Drop::Spoofed);
    };
    if src != own {
        return Route::Nowhere(Drop::Spoofed);
    }
    if dst[0] & 1 == 1 {
        return if macs.len() > 1 {
            Route::AllOthers
        } else {
            Route::Nowhere(Drop::NoOtherClient)
        };
    }
    match macs.iter().position(|m| m == dst) {
        Some(j) if j != sender => Route::To(j),
        Some(_) => Route::Nowhere(Drop::ToSelf),
        None => Route::Nowhere(Drop::NoSuchClient),
    }
}

/// The bytes of a `region`-byte data region a TX descriptor (`offset`, `len`) names, if it is a
/// frame's length (14..=1514) and lies wholly inside.
pub fn tx_range(offset: u64, len: u16, region: usize) -> Option<Range<usize>> {
    let len = usize::from(len);
    if !(MIN_FRAME..=MAX_FRAME).contains(&len) {
        return None;
    }
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(len)?;
    (end <= region).then_some(start..end)
}
