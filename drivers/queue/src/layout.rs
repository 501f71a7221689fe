//! The shared-memory layouts, byte for byte those of sDDF 0.7.0's C headers
//! (`include/sddf/blk/queue.h`, `include/sddf/blk/storage_info.h`,
//! `include/sddf/serial/queue.h`, `include/sddf/network/queue.h`). Every offset and size is asserted at compile time below.
//!
//! C `bool`s are `u8` here (any non-zero value reads as true), C enums are `u32` newtypes with
//! associated consts (a peer may write any value), and C's implicit padding is spelled out as
//! private fields so that the types are `IntoBytes`.

use core::mem::{align_of, offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of one block transfer unit in bytes (`BLK_TRANSFER_SIZE`): block numbers, counts, the
/// storage capacity and the optimal block size are all in these units.
pub const BLK_TRANSFER_SIZE: u32 = 4096;

/// Size of the storage-info region (`BLK_STORAGE_INFO_REGION_SIZE`).
pub const BLK_STORAGE_INFO_REGION_SIZE: usize = 0x1000;

/// Maximum length of the device serial number string (`BLK_MAX_SERIAL_NUMBER`); the field holds
/// one more byte for the terminating NUL.
pub const BLK_MAX_SERIAL_NUMBER: usize = 63;

/// Block request code (`blk_req_code_t`, a C enum: 4 bytes).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(transparent)]
pub struct BlkReqCode(pub u32);

impl BlkReqCode {
    /// `BLK_REQ_READ`: read `count` blocks into the buffer.
    pub const READ: Self = Self(0);
    /// `BLK_REQ_WRITE`: write `count` blocks from the buffer.
    pub const WRITE: Self = Self(1);
    /// `BLK_REQ_FLUSH`: flush the device's write cache.
    pub const FLUSH: Self = Self(2);
    /// `BLK_REQ_BARRIER`: order requests before it against those after it.
    pub const BARRIER: Self = Self(3);

    /// Whether this is one of the codes sDDF 0.7.0 defines.
    pub const fn is_known(self) -> bool {
        self.0 <= Self::BARRIER.0
    }
}

/// Block response status (`blk_resp_status_t`, a C enum: 4 bytes).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(transparent)]
pub struct BlkRespStatus(pub u32);

impl BlkRespStatus {
    /// `BLK_RESP_OK`: success.
    pub const OK: Self = Self(0);
    /// `BLK_RESP_ERR_UNSPEC`: unspecified error.
    pub const ERR_UNSPEC: Self = Self(1);
    /// `BLK_RESP_ERR_INVALID_PARAM`: invalid request parameters.
    pub const ERR_INVALID_PARAM: Self = Self(2);
    /// `BLK_RESP_ERR_IO`: the device failed to complete the request.
    pub const ERR_IO: Self = Self(3);
    /// `BLK_RESP_ERR_NO_DEVICE`: the device is not inserted.
    pub const ERR_NO_DEVICE: Self = Self(4);

    /// Whether this is one of the statuses sDDF 0.7.0 defines.
    pub const fn is_known(self) -> bool {
        self.0 <= Self::ERR_NO_DEVICE.0
    }
}

/// A block request (`blk_req_t`): 32 bytes, 8-byte aligned.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct BlkReq {
    /// Request code.
    pub code: BlkReqCode,
    _pad0: u32,
    /// Offset of the buffer within the data region (or its I/O address).
    pub io_or_offset: u64,
    /// First block, in [`BLK_TRANSFER_SIZE`] units.
    pub block_number: u64,
    /// Number of blocks, in [`BLK_TRANSFER_SIZE`] units.
    pub count: u16,
    _pad1: u16,
    /// Request identifier, echoed in the response.
    pub id: u32,
}

impl BlkReq {
    /// A request with zeroed padding.
    pub const fn new(
        code: BlkReqCode,
        io_or_offset: u64,
        block_number: u64,
        count: u16,
        id: u32,
    ) -> Self {
        Self {
            code,
            _pad0: 0,
            io_or_offset,
            block_number,
            count,
            _pad1: 0,
            id,
        }
    }
}

/// A block response (`blk_resp_t`): 12 bytes, 4-byte aligned.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct BlkResp {
    /// Response status.
    pub status: BlkRespStatus,
    /// Number of blocks successfully transferred.
    pub success_count: u16,
    _pad: u16,
    /// Identifier of the request this answers.
    pub id: u32,
}

impl BlkResp {
    /// A response with zeroed padding.
    pub const fn new(status: BlkRespStatus, success_count: u16, id: u32) -> Self {
        Self {
            status,
            success_count,
            _pad: 0,
            id,
        }
    }
}

/// Header of the block request queue (`blk_req_queue_t` without its flexible array): entries
/// ([`BlkReq`]) follow at byte 16.
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(8))]
pub struct BlkReqQueueHeader {
    /// Consumer index (free-running).
    pub head: u32,
    /// Producer index (free-running).
    pub tail: u32,
    /// C `bool plugged`: while non-zero the consumer must not dequeue.
    pub plugged: u8,
    _pad: [u8; 7],
}

/// Header of the block response queue (`blk_resp_queue_t` without its flexible array): entries
/// ([`BlkResp`]) follow at byte 8.
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct BlkRespQueueHeader {
    /// Consumer index (free-running).
    pub head: u32,
    /// Producer index (free-running).
    pub tail: u32,
}

/// Block device description (`blk_storage_info_t`): 88 bytes, written by the driver, read by
/// clients once `ready` is set (release/acquire).
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct BlkStorageInfo {
    /// NUL-terminated device serial number.
    pub serial_number: [u8; BLK_MAX_SERIAL_NUMBER + 1],
    /// C `bool`: the device refuses writes.
    pub read_only: u8,
    /// C `bool`: the rest of the structure is valid.
    pub ready: u8,
    /// Sector size in bytes.
    pub sector_size: u16,
    /// Optimal block size in [`BLK_TRANSFER_SIZE`] units.
    pub block_size: u16,
    /// Queue depth of the device.
    pub queue_depth: u16,
    /// Geometry hint: cylinders.
    pub cylinders: u16,
    /// Geometry hint: heads.
    pub heads: u16,
    /// Geometry hint: blocks.
    pub blocks: u16,
    _pad: u16,
    /// Capacity in [`BLK_TRANSFER_SIZE`] units.
    pub capacity: u64,
}

/// The serial queue header (`serial_queue_t`): 12 bytes. The bytes live in a separate data
/// region whose size is the capacity.
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SerialQueue {
    /// Producer index (free-running).
    pub tail: u32,
    /// Consumer index (free-running).
    pub head: u32,
    /// Zero while the producer asks the consumer for a signal when space frees up.
    pub producer_signalled: u32,
}

/// Size of one network buffer in a data region (`NET_BUFFER_SIZE`,
/// `include/sddf/network/constants.h`): buffer `i` of a region starts at `i * NET_BUFFER_SIZE`.
pub const NET_BUFFER_SIZE: u32 = 2048;

/// Bits of [`NetBuffDesc`]'s ownership identifier (C bit-field `uint8_t oid : 6`).
pub const NET_OID_MASK: u8 = 0x3f;

/// A network buffer descriptor (`net_buff_desc_t`): 16 bytes, 8-byte aligned.
///
/// `oid` is a 6-bit C bit-field in byte 10 (the low bits on the little-endian targets sDDF
/// supports); the byte's top two bits and bytes 11..16 are padding, written as zero here and
/// ignored when read.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct NetBuffDesc {
    /// Offset of the buffer within the data region (or its I/O address).
    pub io_or_offset: u64,
    /// Length of the data in the buffer, in bytes.
    pub len: u16,
    oid: u8,
    _pad: [u8; 5],
}

impl NetBuffDesc {
    /// A descriptor with ownership identifier 0 (what net clients use) and zeroed padding.
    pub const fn new(io_or_offset: u64, len: u16) -> Self {
        Self::with_oid(io_or_offset, len, 0)
    }

    /// A descriptor with ownership identifier `oid` (its low 6 bits) and zeroed padding.
    pub const fn with_oid(io_or_offset: u64, len: u16, oid: u8) -> Self {
        Self {
            io_or_offset,
            len,
            oid: oid & NET_OID_MASK,
            _pad: [0; 5],
        }
    }

    /// The ownership identifier (the 6-bit field; padding bits ignored).
    pub const fn oid(&self) -> u8 {
        self.oid & NET_OID_MASK
    }
}

/// Header of a network queue (`net_queue_t` without its flexible array): entries
/// ([`NetBuffDesc`]) follow at byte 8. Unlike the other queues its indices are 16 bits wide and
/// share one 32-bit word, so the protocol accesses this region in 16-bit units.
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct NetQueueHeader {
    /// Producer index (free-running, 16 bits).
    pub tail: u16,
    /// Consumer index (free-running, 16 bits).
    pub head: u16,
    /// Zero while the consumer asks the producer for a signal when entries arrive.
    pub consumer_signalled: u32,
}

// ---- compile-time layout checks (sDDF 0.7.0) ----
const _: () = {
    assert!(size_of::<BlkReqCode>() == 4);
    assert!(size_of::<BlkRespStatus>() == 4);

    assert!(size_of::<BlkReq>() == 32);
    assert!(align_of::<BlkReq>() == 8);
    assert!(offset_of!(BlkReq, code) == 0);
    assert!(offset_of!(BlkReq, io_or_offset) == 8);
    assert!(offset_of!(BlkReq, block_number) == 16);
    assert!(offset_of!(BlkReq, count) == 24);
    assert!(offset_of!(BlkReq, id) == 28);

    assert!(size_of::<BlkResp>() == 12);
    assert!(align_of::<BlkResp>() == 4);
    assert!(offset_of!(BlkResp, status) == 0);
    assert!(offset_of!(BlkResp, success_count) == 4);
    assert!(offset_of!(BlkResp, id) == 8);

    assert!(size_of::<BlkReqQueueHeader>() == 16);
    assert!(align_of::<BlkReqQueueHeader>() == 8);
    assert!(offset_of!(BlkReqQueueHeader, head) == 0);
    assert!(offset_of!(BlkReqQueueHeader, tail) == 4);
    assert!(offset_of!(BlkReqQueueHeader, plugged) == 8);

    assert!(size_of::<BlkRespQueueHeader>() == 8);
    assert!(offset_of!(BlkRespQueueHeader, head) == 0);
    assert!(offset_of!(BlkRespQueueHeader, tail) == 4);

    assert!(size_of::<BlkStorageInfo>() == 88);
    assert!(align_of::<BlkStorageInfo>() == 8);
    assert!(size_of::<BlkStorageInfo>() <= BLK_STORAGE_INFO_REGION_SIZE);
    assert!(offset_of!(BlkStorageInfo, serial_number) == 0);
    assert!(offset_of!(BlkStorageInfo, read_only) == 64);
    assert!(offset_of!(BlkStorageInfo, ready) == 65);
    assert!(offset_of!(BlkStorageInfo, sector_size) == 66);
    assert!(offset_of!(BlkStorageInfo, block_size) == 68);
    assert!(offset_of!(BlkStorageInfo, queue_depth) == 70);
    assert!(offset_of!(BlkStorageInfo, cylinders) == 72);
    assert!(offset_of!(BlkStorageInfo, heads) == 74);
    assert!(offset_of!(BlkStorageInfo, blocks) == 76);
    assert!(offset_of!(BlkStorageInfo, capacity) == 80);

    assert!(size_of::<SerialQueue>() == 12);
    assert!(offset_of!(SerialQueue, tail) == 0);
    assert!(offset_of!(SerialQueue, head) == 4);
    assert!(offset_of!(SerialQueue, producer_signalled) == 8);

    assert!(size_of::<NetBuffDesc>() == 16);
    assert!(align_of::<NetBuffDesc>() == 8);
    assert!(offset_of!(NetBuffDesc, io_or_offset) == 0);
    assert!(offset_of!(NetBuffDesc, len) == 8);
    assert!(offset_of!(NetBuffDesc, oid) == 10);

    assert!(size_of::<NetQueueHeader>() == 8);
    assert!(offset_of!(NetQueueHeader, tail) == 0);
    assert!(offset_of!(NetQueueHeader, head) == 2);
    assert!(offset_of!(NetQueueHeader, consumer_signalled) == 4);
    // The flexible array of 8-aligned descriptors starts right after the header.
    assert!(size_of::<NetQueueHeader>().is_multiple_of(align_of::<NetBuffDesc>()));

    // The atomic views index shared memory in 32-bit words: every field accessed atomically
    // must be word aligned, and every entry a whole number of words.
    assert!(size_of::<BlkReq>().is_multiple_of(4) && size_of::<BlkResp>().is_multiple_of(4));
    assert!(size_of::<BlkStorageInfo>().is_multiple_of(4));
};

/// Word (u32) indices of the fields the protocol accesses atomically, derived from the asserted
/// layouts above so the accessors cannot drift from them.
pub(crate) mod word {
    use super::*;

    /// Bytes per word.
    pub const BYTES: usize = 4;

    pub const REQ_HEAD: usize = offset_of!(BlkReqQueueHeader, head) / BYTES;
    pub const REQ_TAIL: usize = offset_of!(BlkReqQueueHeader, tail) / BYTES;
    /// The word holding `plugged`, and the byte of that word (in memory order).
    pub const REQ_PLUGGED: usize = offset_of!(BlkReqQueueHeader, plugged) / BYTES;
    pub const REQ_PLUGGED_BYTE: usize = offset_of!(BlkReqQueueHeader, plugged) % BYTES;
    pub const REQ_ENTRIES: usize = size_of::<BlkReqQueueHeader>() / BYTES;
    pub const REQ_ENTRY: usize = size_of::<BlkReq>() / BYTES;

    pub const RESP_HEAD: usize = offset_of!(BlkRespQueueHeader, head) / BYTES;
    pub const RESP_TAIL: usize = offset_of!(BlkRespQueueHeader, tail) / BYTES;
    pub const RESP_ENTRIES: usize = size_of::<BlkRespQueueHeader>() / BYTES;
    pub const RESP_ENTRY: usize = size_of::<BlkResp>() / BYTES;

    pub const SERIAL_TAIL: usize = offset_of!(SerialQueue, tail) / BYTES;
    pub const SERIAL_HEAD: usize = offset_of!(SerialQueue, head) / BYTES;
    pub const SERIAL_SIGNALLED: usize = offset_of!(SerialQueue, producer_signalled) / BYTES;
    pub const SERIAL_HEADER: usize = size_of::<SerialQueue>() / BYTES;

    pub const INFO: usize = size_of::<BlkStorageInfo>() / BYTES;
    pub const INFO_READY: usize = offset_of!(BlkStorageInfo, ready) / BYTES;
    pub const INFO_READY_BYTE: usize = offset_of!(BlkStorageInfo, ready) % BYTES;

    /// Bytes per half word (the network queues' unit).
    pub const HALF_BYTES: usize = 2;

    pub const NET_TAIL: usize = offset_of!(NetQueueHeader, tail) / HALF_BYTES;
    pub const NET_HEAD: usize = offset_of!(NetQueueHeader, head) / HALF_BYTES;
    /// `consumer_signalled` is a `u32`: its two half words.
    pub const NET_SIGNALLED: usize = offset_of!(NetQueueHeader, consumer_signalled) / HALF_BYTES;
    pub const NET_SIGNALLED_HALVES: usize = size_of::<u32>() / HALF_BYTES;
    pub const NET_ENTRIES: usize = size_of::<NetQueueHeader>() / HALF_BYTES;
    pub const NET_ENTRY: usize = size_of::<NetBuffDesc>() / HALF_BYTES;

    const _: () = {
        assert!(NET_TAIL == 0 && NET_HEAD == 1 && NET_SIGNALLED == 2);
        assert!(NET_SIGNALLED_HALVES == 2 && NET_ENTRIES == 4 && NET_ENTRY == 8);
        assert!(offset_of!(BlkReqQueueHeader, head).is_multiple_of(BYTES));
        assert!(offset_of!(BlkReqQueueHeader, tail).is_multiple_of(BYTES));
        assert!(offset_of!(BlkRespQueueHeader, head).is_multiple_of(BYTES));
        assert!(offset_of!(BlkRespQueueHeader, tail).is_multiple_of(BYTES));
        assert!(offset_of!(SerialQueue, producer_signalled).is_multiple_of(BYTES));
        assert!(REQ_ENTRIES == 4 && REQ_ENTRY == 8 && RESP_ENTRIES == 2 && RESP_ENTRY == 3);
        assert!(REQ_PLUGGED == 2 && REQ_PLUGGED_BYTE == 0);
        assert!(INFO == 22 && INFO_READY == 16 && INFO_READY_BYTE == 1);
    };
}
