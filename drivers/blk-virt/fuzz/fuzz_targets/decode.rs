//! The block virtualiser's request decode (`blk_virt::decode`): any client request, any disk
//! capacity, any number of clients, any data window.
//!
//! Invariants: no panic; the partitions of `n` clients tile the disk in order without overlap;
//! a request is accepted only if it is READ or WRITE of 1.. blocks wholly inside the client's
//! partition and data window (or FLUSH/BARRIER, with no range), and then its driver-side block
//! range lies inside the partition's blocks of the disk and its driver-side data range inside
//! the window's range of the driver's data space; every other request is refused with the
//! reason that applies first (code, count, partition, data).
#![no_main]

use blk_virt::decode::{DataWindow, Partition, Refusal, partition, translate};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sddf_queue::layout::{BLK_TRANSFER_SIZE, BlkReq, BlkReqCode};

#[derive(Debug, Arbitrary)]
struct Input {
    capacity: u64,
    clients: u8,
    client: u8,
    window_base: u64,
    window_size: u64,
    code: u32,
    io_or_offset: u64,
    block_number: u64,
    count: u16,
    id: u32,
}

fuzz_target!(|i: Input| {
    let n = usize::from(i.clients % 9);
    // The shares tile the disk.
    let mut next = 0u64;
    for k in 0..n {
        let p = partition(i.capacity, k, n);
        assert_eq!(p.start, next, "client {k} of {n} starts where {} ended", k.wrapping_sub(1));
        next = p.start.checked_add(p.blocks).expect("inside the disk");
    }
    if n > 0 {
        assert_eq!(next, i.capacity, "the shares cover the disk");
    }
    let part: Partition = partition(i.capacity, usize::from(i.client), n);
    let window = DataWindow {
        base: i.window_base,
        size: i.window_size,
    };
    let r = BlkReq::new(
        BlkReqCode(i.code),
        i.io_or_offset,
        i.block_number,
        i.count,
        i.id,
    );
    let got = translate(&r, part, window);
    let code = BlkReqCode(i.code);
    let count = u64::from(i.count);
    let len = u128::from(count) * u128::from(BLK_TRANSFER_SIZE);
    let in_part = u128::from(i.block_number) + u128::from(count) <= u128::from(part.blocks);
    let in_data = u128::from(i.io_or_offset) + len <= u128::from(window.size);
    let fits = u128::from(part.start) + u128::from(i.block_number) <= u128::from(u64::MAX)
        && u128::from(window.base) + u128::from(i.io_or_offset) <= u128::from(u64::MAX);
    let want = if code == BlkReqCode::FLUSH || code == BlkReqCode::BARRIER {
        Ok(())
    } else if code != BlkReqCode::READ && code != BlkReqCode::WRITE {
        Err(Refusal::BadCode)
    } else if count == 0 {
        Err(Refusal::ZeroCount)
    } else if !in_part {
        Err(Refusal::OutsidePartition)
    } else if !in_data {
        Err(Refusal::OutsideData)
    } else if !fits {
        // Only a table that does not fit the driver's spaces gets here: refused either way.
        assert!(got.is_err());
        return;
    } else {
        Ok(())
    };
    assert_eq!(got.map(|_| ()), want, "{r:?} in {part:?} / {window:?}");
    if let Ok(t) = got {
        assert_eq!(t.code, code);
        if code == BlkReqCode::READ || code == BlkReqCode::WRITE {
            assert_eq!(t.count, i.count);
            assert!(t.block_number >= part.start);
            assert!(u128::from(t.block_number) + u128::from(count) <= u128::from(part.start) + u128::from(part.blocks));
            assert!(t.io_or_offset >= window.base);
            assert!(u128::from(t.io_or_offset) + len <= u128::from(window.base) + u128::from(window.size));
        } else {
            assert_eq!((t.block_number, t.io_or_offset, t.count), (0, 0, 0));
        }
        assert_eq!(t.request(7).id, 7);
    }
});
