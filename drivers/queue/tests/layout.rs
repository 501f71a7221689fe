//! Layout checks against sDDF 0.7.0: fails (silently otherwise) if any offset or size differs,
//! both at compile time and in byte images written by one side and read by the other.
#![cfg(not(loom))]

use core::mem::{align_of, offset_of, size_of};
use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use sddf_queue::blk::{req_region_size, resp_region_size};
use sddf_queue::layout::{BlkReqQueueHeader, BlkRespQueueHeader};
use sddf_queue::*;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

// Compile-time: the same table as in sDDF's headers.
const _: () = {
    assert!(size_of::<BlkReq>() == 32 && align_of::<BlkReq>() == 8);
    assert!(offset_of!(BlkReq, code) == 0);
    assert!(offset_of!(BlkReq, io_or_offset) == 8);
    assert!(offset_of!(BlkReq, block_number) == 16);
    assert!(offset_of!(BlkReq, count) == 24);
    assert!(offset_of!(BlkReq, id) == 28);
    assert!(size_of::<BlkResp>() == 12 && align_of::<BlkResp>() == 4);
    assert!(offset_of!(BlkResp, status) == 0);
    assert!(offset_of!(BlkResp, success_count) == 4);
    assert!(offset_of!(BlkResp, id) == 8);
    assert!(size_of::<BlkReqQueueHeader>() == 16);
    assert!(offset_of!(BlkReqQueueHeader, head) == 0);
    assert!(offset_of!(BlkReqQueueHeader, tail) == 4);
    assert!(offset_of!(BlkReqQueueHeader, plugged) == 8);
    assert!(size_of::<BlkRespQueueHeader>() == 8);
    assert!(offset_of!(BlkRespQueueHeader, head) == 0);
    assert!(offset_of!(BlkRespQueueHeader, tail) == 4);
    assert!(size_of::<BlkStorageInfo>() == 88 && align_of::<BlkStorageInfo>() == 8);
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
    assert!(size_of::<NetBuffDesc>() == 16 && align_of::<NetBuffDesc>() == 8);
    assert!(offset_of!(NetBuffDesc, io_or_offset) == 0);
    assert!(offset_of!(NetBuffDesc, len) == 8);
    assert!(size_of::<NetQueueHeader>() == 8);
    assert!(offset_of!(NetQueueHeader, tail) == 0);
    assert!(offset_of!(NetQueueHeader, head) == 2);
    assert!(offset_of!(NetQueueHeader, consumer_signalled) == 4);
    assert!(sddf_queue::net::region_size(4) == 8 + 4 * 16);
    assert!(NET_BUFFER_SIZE == 2048);
    assert!(BLK_TRANSFER_SIZE == 4096);
    assert!(req_region_size(4) == 16 + 4 * 32);
    assert!(resp_region_size(4) == 8 + 4 * 12);
};

fn words(bytes: &[u8]) -> Vec<AtomicU32> {
    bytes
        .chunks_exact(4)
        .map(|c| AtomicU32::new(u32::from_ne_bytes(c.try_into().unwrap())))
        .collect()
}

fn image(words: &[AtomicU32]) -> Vec<u8> {
    words
        .iter()
        .flat_map(|w| w.load(Ordering::Relaxed).to_ne_bytes())
        .collect()
}

#[test]
fn field_bytes_sit_at_the_c_offsets() {
    let req = BlkReq::new(
        BlkReqCode::WRITE,
        0x1122_3344_5566_7788,
        0x99,
        0xabcd,
        0xdead_beef,
    );
    let b = req.as_bytes();
    assert_eq!(b[0..4], 1u32.to_ne_bytes());
    assert_eq!(b[4..8], [0; 4]);
    assert_eq!(b[8..16], 0x1122_3344_5566_7788u64.to_ne_bytes());
    assert_eq!(b[16..24], 0x99u64.to_ne_bytes());
    assert_eq!(b[24..26], 0xabcdu16.to_ne_bytes());
    assert_eq!(b[28..32], 0xdead_beefu32.to_ne_bytes());

    let resp = BlkResp::new(BlkRespStatus::ERR_IO, 7, 42);
    let b = resp.as_bytes();
    assert_eq!(b[0..4], 3u32.to_ne_bytes());
    assert_eq!(b[4..6], 7u16.to_ne_bytes());
    assert_eq!(b[8..12], 42u32.to_ne_bytes());

    // The C enums' values.
    assert_eq!(
        [
            BlkReqCode::READ,
            BlkReqCode::WRITE,
            BlkReqCode::FLUSH,
            BlkReqCode::BARRIER
        ]
        .map(|c| c.0),
        [0, 1, 2, 3]
    );
    assert_eq!(
        [
            BlkRespStatus::OK,
            BlkRespStatus::ERR_UNSPEC,
            BlkRespStatus::ERR_INVALID_PARAM,
            BlkRespStatus::ERR_IO,
            BlkRespStatus::ERR_NO_DEVICE
        ]
        .map(|c| c.0),
        [0, 1, 2, 3, 4]
    );
}

/// sDDF 0.7.0 defines four request codes; any other value a client writes is not one of them.
#[test]
fn only_the_four_sddf_request_codes_are_known() {
    for code in [
        BlkReqCode::READ,
        BlkReqCode::WRITE,
        BlkReqCode::FLUSH,
        BlkReqCode::BARRIER,
    ] {
        assert!(code.is_known(), "{code:?}");
    }
    for raw in [4, 5, 0x100, u32::MAX] {
        assert!(!BlkReqCode(raw).is_known(), "{raw}");
    }
}

/// The same for the five response statuses a driver may write (a client treats any other as
/// an error it does not know).
#[test]
fn only_the_five_sddf_response_statuses_are_known() {
    for status in [
        BlkRespStatus::OK,
        BlkRespStatus::ERR_UNSPEC,
        BlkRespStatus::ERR_INVALID_PARAM,
        BlkRespStatus::ERR_IO,
        BlkRespStatus::ERR_NO_DEVICE,
    ] {
        assert!(status.is_known(), "{status:?}");
    }
    for raw in [5, 6, 0x100, u32::MAX] {
        assert!(!BlkRespStatus(raw).is_known(), "{raw}");
    }
}

/// A request queue as C would lay it out (header, then `buffers[]` at 16) is read by the Rust
/// consumer, and what the Rust producer writes parses back as that layout.
#[test]
fn request_queue_image_round_trips() {
    let cap = 4u32;
    let reqs = [
        BlkReq::new(BlkReqCode::READ, 0x1000, 8, 1, 1),
        BlkReq::new(BlkReqCode::FLUSH, 0, 0, 0, 2),
    ];
    let mut bytes = vec![0u8; req_region_size(cap)];
    let mut header = BlkReqQueueHeader::new_zeroed();
    header.head = 6;
    header.tail = 8;
    bytes[..16].copy_from_slice(header.as_bytes());
    // Indices 6 and 7 live in slots 2 and 3.
    bytes[16 + 2 * 32..16 + 3 * 32].copy_from_slice(reqs[0].as_bytes());
    bytes[16 + 3 * 32..16 + 4 * 32].copy_from_slice(reqs[1].as_bytes());
    let region = words(&bytes);

    let mut c = BlkReqConsumer::new(&region, cap).unwrap();
    assert_eq!(c.dequeue().unwrap(), Some(reqs[0]));
    assert_eq!(c.dequeue().unwrap(), Some(reqs[1]));
    assert_eq!(c.dequeue().unwrap(), None);

    let mut p = BlkReqProducer::new(&region, cap).unwrap();
    let new = BlkReq::new(BlkReqCode::WRITE, 0x2000, 9, 2, 3);
    p.enqueue(&new).unwrap();
    p.plug();
    let out = image(&region);
    let h = BlkReqQueueHeader::read_from_bytes(&out[..16]).unwrap();
    assert_eq!((h.head, h.tail, h.plugged), (8, 9, 1));
    assert_eq!(out[9..16], [0; 7]);
    let slot0 = BlkReq::read_from_bytes(&out[16..48]).unwrap();
    assert_eq!(slot0, new);

    // A C `bool plugged = true` written as one byte is seen by the consumer.
    let mut bytes = out;
    bytes[8] = 0;
    let region = words(&bytes);
    assert!(!BlkReqConsumer::new(&region, cap).unwrap().is_plugged());
    bytes[8] = 1;
    let region = words(&bytes);
    assert!(BlkReqConsumer::new(&region, cap).unwrap().is_plugged());
}

#[test]
fn response_queue_image_round_trips() {
    let cap = 3u32;
    let mut bytes = vec![0u8; resp_region_size(cap)];
    let resp = BlkResp::new(BlkRespStatus::OK, 1, 77);
    let header = BlkRespQueueHeader { head: 5, tail: 6 };
    bytes[..8].copy_from_slice(header.as_bytes());
    // Index 5 lives in slot 2.
    bytes[8 + 2 * 12..8 + 3 * 12].copy_from_slice(resp.as_bytes());
    let region = words(&bytes);
    let mut c = BlkRespConsumer::new(&region, cap).unwrap();
    assert_eq!(c.dequeue().unwrap(), Some(resp));

    let mut p = BlkRespProducer::new(&region, cap).unwrap();
    let r2 = BlkResp::new(BlkRespStatus::ERR_NO_DEVICE, 0, 78);
    p.enqueue(&r2).unwrap();
    let out = image(&region);
    let h = BlkRespQueueHeader::read_from_bytes(&out[..8]).unwrap();
    assert_eq!((h.head, h.tail), (6, 7));
    // Index 6 lives in slot 0.
    assert_eq!(BlkResp::read_from_bytes(&out[8..20]).unwrap(), r2);
}

#[test]
fn storage_info_image_round_trips() {
    let region: Vec<AtomicU32> = (0..1024).map(|_| AtomicU32::new(0)).collect();
    let reader = StorageInfoReader::new(&region).unwrap();
    assert!(!reader.is_ready());
    assert_eq!(reader.read(), None);

    let mut info = BlkStorageInfo::new_zeroed();
    info.serial_number[..4].copy_from_slice(b"sn01");
    info.read_only = 1;
    info.sector_size = 512;
    info.block_size = 1;
    info.queue_depth = 32;
    info.cylinders = 3;
    info.heads = 4;
    info.blocks = 5;
    info.capacity = 0x1_0000_0001;
    StorageInfoWriter::new(&region).unwrap().publish(&info);

    let out = image(&region);
    assert_eq!(&out[0..4], b"sn01");
    assert_eq!(out[64], 1, "read_only");
    assert_eq!(out[65], 1, "ready");
    assert_eq!(out[66..68], 512u16.to_ne_bytes());
    assert_eq!(out[68..70], 1u16.to_ne_bytes());
    assert_eq!(out[70..72], 32u16.to_ne_bytes());
    assert_eq!(out[72..74], 3u16.to_ne_bytes());
    assert_eq!(out[74..76], 4u16.to_ne_bytes());
    assert_eq!(out[76..78], 5u16.to_ne_bytes());
    assert_eq!(out[80..88], 0x1_0000_0001u64.to_ne_bytes());

    let mut expected = info;
    expected.ready = 1;
    assert_eq!(reader.read(), Some(expected));

    StorageInfoWriter::new(&region).unwrap().set_ready(false);
    let out = image(&region);
    assert_eq!((out[64], out[65]), (1, 0), "read_only kept, ready cleared");
    assert_eq!(out[66..68], 512u16.to_ne_bytes());
    assert_eq!(reader.read(), None);

    let small: Vec<AtomicU32> = (0..21).map(|_| AtomicU32::new(0)).collect();
    assert_eq!(
        StorageInfoReader::new(&small).unwrap_err(),
        SetupError::RegionTooSmall {
            needed: 88,
            available: 84
        }
    );
}

#[test]
fn serial_queue_image_round_trips() {
    let mut header = SerialQueue {
        tail: 10,
        head: 7,
        producer_signalled: 1,
    };
    let queue = words(header.as_bytes());
    let data: Vec<AtomicU8> = b"abcd".iter().map(|&b| AtomicU8::new(b)).collect();
    // Indices 7, 8, 9 are slots 3, 0, 1: "dab".
    let mut c = SerialConsumer::new(&queue, &data, 4).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(c.dequeue_into(&mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"dab");

    let mut p = SerialProducer::new(&queue, &data, 4).unwrap();
    assert_eq!(p.enqueue_slice(b"xyz").unwrap(), 3);
    header = SerialQueue::read_from_bytes(&image(&queue)).unwrap();
    assert_eq!((header.tail, header.head), (13, 10));
    // Indices 10, 11, 12 are slots 2, 3, 0.
    let data: Vec<u8> = data.iter().map(|b| b.load(Ordering::Relaxed)).collect();
    assert_eq!(&data, b"zbxy");
}
