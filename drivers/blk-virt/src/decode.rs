//! The virtualiser's pure rules, without queues or a kernel: how the disk is partitioned among
//! the clients, and how one client request is checked and translated into the driver's terms
//! (block numbers shifted by the partition's start, the data offset moved into the driver's
//! data space). Everything here is total: any request, any capacity, no panic (the fuzz target
//! `decode` and the property tests hold it to that).

use sddf_queue::layout::{BLK_TRANSFER_SIZE, BlkReq, BlkReqCode};

/// A client's share of the disk, in 4096-byte transfer units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Partition {
    /// First block of the disk.
    pub start: u64,
    /// Blocks.
    pub blocks: u64,
}

/// Client `i` of `n`'s partition of a disk of `capacity` blocks: equal shares in client order
/// (`[capacity·i/n, capacity·(i+1)/n)`), so the shares never overlap, cover the disk, and one
/// client gets the whole disk. `i ≥ n` or `n = 0`: an empty partition.
pub fn partition(capacity: u64, i: usize, n: usize) -> Partition {
    if n == 0 || i >= n {
        return Partition::default();
    }
    let at = |k: usize| (u128::from(capacity) * k as u128 / n as u128) as u64;
    let (start, end) = (at(i), at(i + 1));
    Partition {
        start,
        blocks: end - start,
    }
}

/// A client's data region in the driver's data space (`sdf::blk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataWindow {
    /// Offset of the region's first byte in the driver's data space.
    pub base: u64,
    /// Bytes.
    pub size: u64,
}

/// Why a request is refused without reaching the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `block_number + count` overflows or passes the end of the client's partition.
    OutsidePartition,
    /// Not READ, WRITE, FLUSH or BARRIER.
    BadCode,
    /// A READ or WRITE of 0 blocks.
    ZeroCount,
    /// `io_or_offset .. + count·4096` overflows or leaves the client's data region.
    OutsideData,
}

/// A request as the driver gets it (the id is the virtualiser's, given at submission).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translated {
    /// The request's code.
    pub code: BlkReqCode,
    /// Offset in the driver's data space (0 for FLUSH and BARRIER).
    pub io_or_offset: u64,
    /// Block of the disk (0 for FLUSH and BARRIER).
    pub block_number: u64,
    /// Blocks (0 for FLUSH and BARRIER).
    pub count: u16,
}

impl Translated {
    /// The driver's request with id `id`.
    pub fn request(&self, id: u32) -> BlkReq {
        BlkReq::new(
            self.code,
            self.io_or_offset,
            self.block_number,
            self.count,
            id,
        )
    }
}

/// Checks client request `r` against its partition and its data region and translates it.
/// FLUSH and BARRIER carry no range (their other fields are ignored).
pub fn translate(r: &BlkReq, part: Partition, data: DataWindow) -> Result<Translated, Refusal> {
    match r.code {
        BlkReqCode::READ | BlkReqCode::WRITE => {}
        BlkReqCode::FLUSH | BlkReqCode::BARRIER => {
            return Ok(Translated {
                code: r.code,
                io_or_offset: 0,
                block_number: 0,
                count: 0,
            });
        }
        _ => return Err(Refusal::BadCode),
    }
    if r.count == 0 {
        return Err(Refusal::ZeroCount);
    }
    let count = u64::from(r.count);
    let in_partition = r
        .block_number
        .checked_add(count)
        .is_some_and(|end| end <= part.blocks);
    if !in_partition {
        return Err(Refusal::OutsidePartition);
    }
    let len = count * u64::from(BLK_TRANSFER_SIZE);
    let in_data = r
        .io_or_offset
        .checked_add(len)
        .is_some_and(|end| end <= data.size);
    if !in_data {
        return Err(Refusal::OutsideData);
    }
    // Both sums are bounded: block_number + count ≤ blocks and start + blocks ≤ the disk's
    // capacity (partition); offset + len ≤ size and base + size is the end of the window in
    // the driver's space. Checked anyway: a bad table refuses, never wraps.
    let block_number = part
        .start
        .checked_add(r.block_number)
        .ok_or(Refusal::OutsidePartition)?;
    let io_or_offset = data
        .base
        .checked_add(r.io_or_offset)
        .ok_or(Refusal::OutsideData)?;
    Ok(Translated {
        code: r.code,
        io_or_offset,
        block_number,
        count: r.count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_gets_the_whole_disk_and_shares_tile_it() {
        assert_eq!(
            partition(4096, 0, 1),
            Partition {
                start: 0,
                blocks: 4096
            }
        );
        let p: Vec<_> = (0..3).map(|i| partition(10, i, 3)).collect();
        assert_eq!(
            p[0],
            Partition {
                start: 0,
                blocks: 3
            }
        );
        assert_eq!(
            p[1],
            Partition {
                start: 3,
                blocks: 3
            }
        );
        assert_eq!(
            p[2],
            Partition {
                start: 6,
                blocks: 4
            }
        );
        assert_eq!(
            partition(u64::MAX, 1, 2).start + partition(u64::MAX, 1, 2).blocks,
            u64::MAX
        );
        assert_eq!(partition(10, 3, 3), Partition::default());
        assert_eq!(partition(10, 0, 0), Partition::default());
    }

    #[test]
    fn a_request_is_shifted_into_its_partition_and_window() {
        let part = Partition {
            start: 100,
            blocks: 10,
        };
        let data = DataWindow {
            base: 0x40_0000,
            size: 0x10_000,
        };
        let r = BlkReq::new(BlkReqCode::WRITE, 0x2000, 9, 1, 5);
        let t = translate(&r, part, data).unwrap();
        assert_eq!(
            (t.block_number, t.io_or_offset, t.count),
            (109, 0x40_2000, 1)
        );
        let over = BlkReq::new(BlkReqCode::READ, 0, 9, 2, 5);
        assert_eq!(translate(&over, part, data), Err(Refusal::OutsidePartition));
        let wrap = BlkReq::new(BlkReqCode::READ, 0, u64::MAX, 1, 5);
        assert_eq!(translate(&wrap, part, data), Err(Refusal::OutsidePartition));
        let big = BlkReq::new(BlkReqCode::READ, 0xf000, 0, 2, 5);
        assert_eq!(translate(&big, part, data), Err(Refusal::OutsideData));
        let zero = BlkReq::new(BlkReqCode::READ, 0, 0, 0, 5);
        assert_eq!(translate(&zero, part, data), Err(Refusal::ZeroCount));
        let code = BlkReq::new(BlkReqCode(4), 0, 0, 1, 5);
        assert_eq!(translate(&code, part, data), Err(Refusal::BadCode));
        let flush = BlkReq::new(BlkReqCode::FLUSH, 7, u64::MAX, 3, 5);
        assert_eq!(translate(&flush, part, data).unwrap().block_number, 0);
    }
}
