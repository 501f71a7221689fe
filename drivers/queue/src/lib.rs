//! # sddf-queue
//!
//! Shared-memory single-producer/single-consumer queues, layout- and protocol-compatible with
//! [sDDF](https://github.com/au-ts/sddf) 0.7.0, so that the VMM, the project's Rust driver PDs
//! and sDDF's C components can sit on either end of a queue.
//!
//! ## What it owns
//!
//! - The shared layouts ([`layout`]): `blk_req_t`, `blk_resp_t`, the block request/response
//!   queue headers, `blk_storage_info_t`, `serial_queue_t`, `net_buff_desc_t` and
//!   `net_queue_t`, with every offset and size asserted at compile time and `zerocopy` derives.
//! - The SPSC protocol over them: [`blk`] (requests, responses, `plugged`, storage info),
//!   [`serial`] (byte rings with sDDF's `producer_signalled` handshake) and [`net`] (free and
//!   active queues of buffer descriptors, 16-bit indices, sDDF's `consumer_signalled`
//!   handshake). Every operation that may require waking the peer reports it (`take_notify`,
//!   `unplug`), so PDs notify only when needed.
//! - The only `unsafe` of the crate, in [`raw`]: turning a mapped region into `&[AtomicU32]` /
//!   `&[AtomicU16]` / `&[AtomicU8]`. Everything else is safe code over those slices; host tests back them with
//!   ordinary `Vec`s.
//!
//! It does not own notification (the PD calls `notify`), the data regions' buffers (block and
//! network `io_or_offset` are just numbers here), or the block request semantics.
//!
//! ## Layouts (bytes; sDDF 0.7.0 `include/sddf/blk/queue.h`, `blk/storage_info.h`,
//! `serial/queue.h`, `network/queue.h`, `network/constants.h`)
//!
//! | structure | size | fields (offset) |
//! | --- | --- | --- |
//! | `blk_req_t` | 32, align 8 | code u32 (0), io_or_offset u64 (8), block_number u64 (16), count u16 (24), id u32 (28) |
//! | `blk_resp_t` | 12, align 4 | status u32 (0), success_count u16 (4), id u32 (8) |
//! | `blk_req_queue_t` | 16 + 32·cap | head u32 (0), tail u32 (4), plugged bool (8), entries (16) |
//! | `blk_resp_queue_t` | 8 + 12·cap | head u32 (0), tail u32 (4), entries (8) |
//! | `blk_storage_info_t` | 88, align 8 | serial_number \[u8; 64\] (0), read_only bool (64), ready bool (65), sector_size u16 (66), block_size u16 (68), queue_depth u16 (70), cylinders/heads/blocks u16 (72/74/76), capacity u64 (80) |
//! | `serial_queue_t` | 12 | tail u32 (0), head u32 (4), producer_signalled u32 (8); bytes in a separate data region of `cap` bytes |
//! | `net_buff_desc_t` | 16, align 8 | io_or_offset u64 (0), len u16 (8), oid 6-bit field (byte 10) |
//! | `net_queue_t` | 8 + 16·cap | tail **u16** (0), head **u16** (2), consumer_signalled u32 (4), buffers (8) |
//!
//! Block numbers, counts and capacities are in [`layout::BLK_TRANSFER_SIZE`] (4096-byte) units;
//! network buffers are [`layout::NET_BUFFER_SIZE`] (2048) bytes apart in their data regions.
//!
//! ## Protocol
//!
//! - Free-running `u32` indices (`u16` in the network queues: there the capacity must be a
//!   power of two of at most 2¹⁵, see [`net`]); the producer writes only `tail`, the consumer only `head`;
//!   `tail − head` (wrapping) entries are queued; full when it equals the capacity; index `i`
//!   is in slot `i % capacity`. Like sDDF, any non-zero capacity is accepted; a power of two is
//!   recommended, since with any other capacity `i % capacity` jumps when `i` wraps at 2³² and,
//!   as in sDDF, two queued entries can then share a slot.
//! - The producer writes an entry, then stores `tail` with Release; the consumer loads `tail`
//!   with Acquire, reads the entry, then stores `head` with Release; the producer loads `head`
//!   with Acquire before reusing a slot (sDDF: `THREAD_MEMORY_RELEASE`, `store_release_32`,
//!   `load_acquire_32`). Entries are copied word by word with Relaxed atomics.
//! - The capacity is local and trusted; this side's own index is kept locally (read from shared
//!   memory only when attaching) and the peer's is validated on every read: within `capacity`
//!   of ours, never backwards. Anything else is a [`QueueError`]; no slot computation ever uses
//!   a shared value unchecked, and entries a peer scribbles over are just values.
//! - Block: the producer of each queue notifies its consumer after publishing; `plugged` holds
//!   the driver off, and unplugging returns the deferred notification.
//! - Serial: the producer always notifies after publishing; the consumer notifies the producer
//!   only when it released space and `producer_signalled == 0`, which the producer sets when
//!   full, followed by a SeqCst fence and a re-check of the queue (sDDF's double-check), paired
//!   with the consumer's SeqCst fence between releasing space and reading the flag.
//! - Network: the mirror image: the *consumer* of a free or active queue that found it empty
//!   sets `consumer_signalled = 0`, a SeqCst fence, re-checks; the producer, after publishing,
//!   a SeqCst fence, reads the flag and notifies (clearing the request) only if it was set.
//!
//! ## Tests
//!
//! `cargo test -p sddf-queue` runs the layout checks, unit tests and proptest models (FIFO
//! against a `VecDeque`, and a hostile peer scribbling over the header; `tests/net_model.rs`
//! for the network queues). The loom models of the SPSC protocol and every signalling
//! handshake run with
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test -p sddf-queue --test loom --release
//! ```
//!
//! (`--cfg loom` swaps the atomics in [`sync`] for loom's; [`raw`] is left out then.) loom does
//! not explore load buffering, so the consumer-to-producer direction (the head's Release store
//! and Acquire load, which keep the producer from overwriting a slot still being read) is
//! mirrored from the producer-to-consumer direction it does check, not model-checked itself.

#![no_std]
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod blk;
pub mod error;
pub mod layout;
pub mod net;
#[cfg(not(loom))]
pub mod raw;
pub mod restart;
mod ring;
pub mod serial;
pub mod sync;
pub mod timer;

pub use blk::{
    BlkReqConsumer, BlkReqProducer, BlkRespConsumer, BlkRespProducer, StorageInfoReader,
    StorageInfoWriter,
};
pub use error::{EnqueueError, QueueError, RegionError, SetupError};
pub use layout::{
    BLK_TRANSFER_SIZE, BlkReq, BlkReqCode, BlkResp, BlkRespStatus, BlkStorageInfo, NET_BUFFER_SIZE,
    NetBuffDesc, NetQueueHeader, SerialQueue,
};
pub use net::{NetConsumer, NetProducer};
pub use serial::{SerialConsumer, SerialProducer, SignalRequest};
