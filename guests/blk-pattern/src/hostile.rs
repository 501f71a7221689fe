//! The hostile virtio-blk requests of the guest's `blk-hostile` case, as data: each one's
//! descriptor chain, and the exact answer the VMM's device model (`vmm/devices/src/queue.rs`,
//! `blk.rs`, `mmio.rs`) gives. The guest posts them on a real queue; the host test
//! `tests/hostile_model.rs` replays the same chains against the model itself, so that the
//! guest's expectations cannot drift from the model.
//!
//! Two kinds of answer:
//! - [`Outcome::Answered`]: the chain is popped, the request fails, the device writes the status
//!   byte and returns the chain with used length 1 (the status byte only: `complete()` in
//!   `blk.rs` adds `written + 1`, and a failed request wrote nothing). The queue stays usable.
//! - [`Outcome::NeedsReset`]: the chain cannot be followed (a `next` out of range, a loop), or it
//!   has no usable status byte: the device sets DEVICE_NEEDS_RESET (Status bit 6) and, being
//!   DRIVER_OK, raises a configuration-change interrupt (InterruptStatus bit 1); nothing is
//!   returned through the used ring and the status byte is never written. The driver must reset
//!   the device.

/// Guest-physical address no RAM backs (nor any device): under the VMM, guest RAM is
/// `0x4000_0000..0x5000_0000` plus the write-protected page at `0x5000_0000`.
pub const OUTSIDE_RAM: u64 = 0x2000_0000;
/// The sector of [`crate::HOSTILE_OFFSET`].
pub const TARGET_SECTOR: u64 = crate::HOSTILE_OFFSET / crate::SECTOR;
/// What the driver puts in the status byte before posting a chain: a device that returns a chain
/// without writing its status shows.
pub const STATUS_POISON: u8 = 0xff;
/// What the driver puts in every data buffer of a hostile request: a device that writes a buffer
/// it must not shows.
pub const DATA_POISON: u8 = 0xee;

/// Request types (virtio 1.2 §5.2.6).
pub mod req {
    /// Read.
    pub const IN: u32 = 0;
    /// Write.
    pub const OUT: u32 = 1;
    /// Flush.
    pub const FLUSH: u32 = 4;
    /// Device ID string.
    pub const GET_ID: u32 = 8;
    /// A type no virtio version defines.
    pub const UNKNOWN: u32 = 0xff;
}

/// Status byte values.
pub mod status {
    /// VIRTIO_BLK_S_OK.
    pub const OK: u8 = 0;
    /// VIRTIO_BLK_S_IOERR.
    pub const IOERR: u8 = 1;
    /// VIRTIO_BLK_S_UNSUPP.
    pub const UNSUPP: u8 = 2;
}

/// The buffer a descriptor points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buf {
    /// The request header (16 bytes: type, reserved, sector).
    Header,
    /// The driver's data buffer, at this byte offset.
    Data(u32),
    /// The request's status byte.
    Status,
    /// A fixed guest-physical address.
    Phys(u64),
}

/// Where a descriptor's `next` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// To the next descriptor of the list (NEXT flag set).
    Next,
    /// Nowhere: the chain ends (NEXT flag clear).
    End,
    /// Back to descriptor `k` of the list (NEXT set): a loop.
    To(u8),
    /// To index = the queue size, the first index out of range (NEXT set).
    QueueSize,
}

/// One descriptor of a hostile chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    /// The buffer.
    pub buf: Buf,
    /// Its length.
    pub len: u32,
    /// Device-writable (VIRTQ_DESC_F_WRITE).
    pub write: bool,
    /// The link.
    pub link: Link,
}

/// How the device answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Status byte `status`, used element with length `used_len`.
    Answered {
        /// The status byte.
        status: u8,
        /// The used length.
        used_len: u32,
    },
    /// DEVICE_NEEDS_RESET, no used element.
    NeedsReset,
}

/// One hostile request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hostile {
    /// Short name, for messages.
    pub name: &'static str,
    /// Header: request type.
    pub req_type: u32,
    /// Header: sector.
    pub sector: u64,
    /// The chain, head first.
    pub descs: &'static [Desc],
    /// The answer.
    pub outcome: Outcome,
    /// Why, in the model's terms.
    pub why: &'static str,
}

const fn d(buf: Buf, len: u32, write: bool, link: Link) -> Desc {
    Desc {
        buf,
        len,
        write,
        link,
    }
}

const HEADER: Desc = d(Buf::Header, 16, false, Link::Next);
const STATUS: Desc = d(Buf::Status, 1, true, Link::End);
const IOERR: Outcome = Outcome::Answered {
    status: status::IOERR,
    used_len: 1,
};

/// The requests, in the order the guest posts them: the answered ones first, then the ones
/// that need a reset.
pub const CASES: &[Hostile] = &[
    Hostile {
        name: "in-data-outside-ram",
        req_type: req::IN,
        sector: TARGET_SECTOR,
        descs: &[
            HEADER,
            d(Buf::Phys(OUTSIDE_RAM), 512, true, Link::Next),
            STATUS,
        ],
        outcome: IOERR,
        why: "queue.rs check_descriptor: probe() fails -> ChainError::OutOfRange; the status \
              descriptor is valid, so blk.rs start() finishes with IOERR",
    },
    Hostile {
        name: "out-data-outside-ram",
        req_type: req::OUT,
        sector: TARGET_SECTOR,
        descs: &[
            HEADER,
            d(Buf::Phys(OUTSIDE_RAM), 512, false, Link::Next),
            STATUS,
        ],
        outcome: IOERR,
        why: "as in-data-outside-ram, for a device-readable buffer",
    },
    Hostile {
        name: "in-beyond-capacity",
        req_type: req::IN,
        sector: crate::DISK_SECTORS,
        descs: &[HEADER, d(Buf::Data(0), 512, true, Link::Next), STATUS],
        outcome: IOERR,
        why: "blk.rs rw(): sector * 512 + len > capacity * 512",
    },
    Hostile {
        name: "out-straddles-capacity",
        req_type: req::OUT,
        sector: crate::DISK_SECTORS - 1,
        descs: &[HEADER, d(Buf::Data(0), 1024, false, Link::Next), STATUS],
        outcome: IOERR,
        why: "blk.rs rw(): the range ends one sector past the capacity; nothing is written, not \
              even the last sector",
    },
    Hostile {
        name: "in-sector-overflow",
        req_type: req::IN,
        sector: 1 << 55,
        descs: &[HEADER, d(Buf::Data(0), 512, true, Link::Next), STATUS],
        outcome: IOERR,
        why: "blk.rs rw(): sector * 512 overflows u64 (checked_mul)",
    },
    Hostile {
        name: "in-len-513",
        req_type: req::IN,
        sector: TARGET_SECTOR,
        descs: &[HEADER, d(Buf::Data(0), 513, true, Link::Next), STATUS],
        outcome: IOERR,
        why: "blk.rs rw(): the data length is not a multiple of 512",
    },
    Hostile {
        name: "out-len-1000",
        req_type: req::OUT,
        sector: TARGET_SECTOR,
        descs: &[HEADER, d(Buf::Data(0), 1000, false, Link::Next), STATUS],
        outcome: IOERR,
        why: "blk.rs rw(): the data length is not a multiple of 512",
    },
    Hostile {
        name: "in-readable-data",
        req_type: req::IN,
        sector: TARGET_SECTOR,
        descs: &[HEADER, d(Buf::Data(0), 512, false, Link::Next), STATUS],
        outcome: IOERR,
        why: "blk.rs parse(): IN with readable bytes beyond the header (direction mismatch)",
    },
    Hostile {
        name: "out-writable-data",
        req_type: req::OUT,
        sector: TARGET_SECTOR,
        descs: &[HEADER, d(Buf::Data(0), 512, true, Link::Next), STATUS],
        outcome: IOERR,
        why: "blk.rs parse(): OUT with writable bytes besides the status (direction mismatch)",
    },
    Hostile {
        name: "zero-length-data",
        req_type: req::IN,
        sector: TARGET_SECTOR,
        descs: &[
            HEADER,
            d(Buf::Data(0), 0, true, Link::Next),
            d(Buf::Data(512), 512, true, Link::Next),
            STATUS,
        ],
        outcome: IOERR,
        why: "queue.rs check_descriptor: ChainError::ZeroLength",
    },
    Hostile {
        name: "unknown-type",
        req_type: req::UNKNOWN,
        sector: 0,
        descs: &[HEADER, STATUS],
        outcome: Outcome::Answered {
            status: status::UNSUPP,
            used_len: 1,
        },
        why: "blk.rs parse(): an unknown request type gets UNSUPP",
    },
    Hostile {
        name: "next-out-of-range",
        req_type: req::IN,
        sector: TARGET_SECTOR,
        descs: &[d(Buf::Header, 16, false, Link::QueueSize)],
        outcome: Outcome::NeedsReset,
        why: "queue.rs walk(): next >= queue size -> QueueError::NextIndex -> DEVICE_NEEDS_RESET",
    },
    Hostile {
        name: "descriptor-loop",
        req_type: req::IN,
        sector: TARGET_SECTOR,
        descs: &[HEADER, d(Buf::Data(0), 512, true, Link::To(0))],
        outcome: Outcome::NeedsReset,
        why: "queue.rs walk(): no end within queue-size descriptors -> QueueError::Loop -> \
              DEVICE_NEEDS_RESET",
    },
    Hostile {
        name: "no-status-byte",
        req_type: req::OUT,
        sector: TARGET_SECTOR,
        descs: &[HEADER, d(Buf::Data(0), 512, false, Link::End)],
        outcome: Outcome::NeedsReset,
        why: "queue.rs status_byte(): the last descriptor is not device-writable -> blk.rs \
              start(): DeviceError::Unreportable -> DEVICE_NEEDS_RESET",
    },
    Hostile {
        name: "status-outside-ram",
        req_type: req::IN,
        sector: TARGET_SECTOR,
        descs: &[
            HEADER,
            d(Buf::Data(0), 512, true, Link::Next),
            d(Buf::Phys(OUTSIDE_RAM), 1, true, Link::End),
        ],
        outcome: Outcome::NeedsReset,
        why: "queue.rs status_byte(): the last descriptor failed its checks (not in RAM) -> \
              DeviceError::Unreportable -> DEVICE_NEEDS_RESET",
    },
];

/// Bytes of data buffer the hostile requests use (from offset 0).
pub const fn data_len() -> u32 {
    let mut max = 0;
    let mut i = 0;
    while i < CASES.len() {
        let mut j = 0;
        while j < CASES[i].descs.len() {
            let desc = CASES[i].descs[j];
            if let Buf::Data(off) = desc.buf {
                let end = off + desc.len;
                if end > max {
                    max = end;
                }
            }
            j += 1;
        }
        i += 1;
    }
    max
}
