//! The block driver's restart handshake: two words in the storage-info region, past sDDF's
//! `blk_storage_info_t` (at byte [`GENERATION_OFFSET`]; not part of sDDF, which has no driver
//! restart).
//!
//! - `generation` (driver → client): the driver's life. A driver that starts (at boot, or
//!   restarted by its monitor after a fault) stores the previous value + 1 (never 0) with
//!   Release, notifies the client, and then touches neither queue until the client acknowledges
//!   that generation.
//! - `ack` (client → driver): the generation the client has re-synchronised with. The client,
//!   seeing a generation it has not acknowledged, takes every response already published (they
//!   are complete: a driver publishes a response only after the device finished), resets both
//!   queues to empty ([`crate::BlkReqProducer::reset`], [`crate::BlkRespConsumer::reset`]: the
//!   dead driver's indices are not trusted), queues again every request still without a
//!   response, in submission order, stores `ack = generation` with Release and notifies.
//!
//! A driver that dies again before the acknowledgement just starts another generation; the
//! client's re-synchronisation is idempotent. Both words are the peer's to corrupt: a value the
//! reader does not expect only delays the handshake (the driver waits, or the client
//! re-synchronises once more), never indexes anything.

use crate::error::SetupError;
use crate::layout::word;
use crate::sync::{AtomicU32, Ordering};

/// Byte offset of the generation word in the storage-info region (after sDDF's 88 bytes, on
/// its own cache line).
pub const GENERATION_OFFSET: usize = 2048;
/// Byte offset of the acknowledgement word.
pub const ACK_OFFSET: usize = GENERATION_OFFSET + 64;

const GEN_WORD: usize = GENERATION_OFFSET / word::BYTES;
const ACK_WORD: usize = ACK_OFFSET / word::BYTES;

fn words(region: &[AtomicU32]) -> Result<(&AtomicU32, &AtomicU32), SetupError> {
    match (region.get(GEN_WORD), region.get(ACK_WORD)) {
        (Some(g), Some(a)) => Ok((g, a)),
        _ => Err(SetupError::RegionTooSmall {
            needed: ACK_OFFSET + word::BYTES,
            available: region.len() * word::BYTES,
        }),
    }
}

/// The generation after `g`: never 0, which means "no driver yet".
pub const fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// The driver's side of the handshake.
#[derive(Debug)]
pub struct DriverLife<'a> {
    ack: &'a AtomicU32,
    mine: u32,
}

impl<'a> DriverLife<'a> {
    /// Starts a new life in the storage-info `region`: generation = previous + 1, stored with
    /// Release. The caller then notifies the client.
    pub fn begin(region: &'a [AtomicU32]) -> Result<Self, SetupError> {
        let (generation, ack) = words(region)?;
        let mine = next_generation(generation.load(Ordering::Relaxed));
        generation.store(mine, Ordering::Release);
        Ok(Self { ack, mine })
    }

    /// This life's generation.
    pub fn generation(&self) -> u32 {
        self.mine
    }

    /// Whether the client has re-synchronised with this life (Acquire: the queues it reset and
    /// filled are visible once this is true).
    pub fn acknowledged(&self) -> bool {
        self.ack.load(Ordering::Acquire) == self.mine
    }
}

/// The client's side of the handshake.
#[derive(Debug)]
pub struct ClientSync<'a> {
    generation: &'a AtomicU32,
    ack: &'a AtomicU32,
    acked: u32,
}

impl<'a> ClientSync<'a> {
    /// Attaches to the storage-info `region`; nothing is acknowledged yet (a driver that started
    /// before the client waits for its first acknowledgement).
    pub fn new(region: &'a [AtomicU32]) -> Result<Self, SetupError> {
        let (generation, ack) = words(region)?;
        Ok(Self {
            generation,
            ack,
            acked: 0,
        })
    }

    /// A driver generation this client has not acknowledged, if one is published (Acquire).
    pub fn pending(&self) -> Option<u32> {
        match self.generation.load(Ordering::Acquire) {
            0 => None,
            g if g == self.acked => None,
            g => Some(g),
        }
    }

    /// The generation acknowledged last (0: none).
    pub fn acknowledged(&self) -> u32 {
        self.acked
    }

    /// Acknowledges generation `g` (Release: the queues re-synchronised before are visible to a
    /// driver that sees it).
    pub fn acknowledge(&mut self, g: u32) {
        self.acked = g;
        self.ack.store(g, Ordering::Release);
    }
}
