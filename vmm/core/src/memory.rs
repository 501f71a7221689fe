//! The one checked accessor for guest RAM: no device model, walker or loader can read or write
//! outside the RAM the guest was given, by construction.

use crate::addr::{GpaRange, GuestPhysAddr};

/// Why a guest-memory access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    /// Some byte of the access lies outside guest RAM.
    OutOfRange {
        /// First address of the access.
        gpa: GuestPhysAddr,
        /// Length of the access in bytes.
        len: usize,
    },
}

/// Guest-physical memory as the VMM sees it.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes at `gpa` into `buf`.
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), MemError>;
    /// Copies `buf` to `gpa`.
    fn write(&mut self, gpa: GuestPhysAddr, buf: &[u8]) -> Result<(), MemError>;

    /// Reads a little-endian `u64`.
    fn read_u64(&self, gpa: GuestPhysAddr) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Reads a little-endian `u32`.
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Writes a little-endian `u64`.
    fn write_u64(&mut self, gpa: GuestPhysAddr, v: u64) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }
    /// Writes a little-endian `u32`.
    fn write_u32(&mut self, gpa: GuestPhysAddr, v: u32) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }
    /// Reads `len` bytes (at most 8) as a little-endian value, zero-extended: one load of a
    /// guest instruction (an implementation may make the aligned case cheap).
    fn load_le(&self, gpa: GuestPhysAddr, len: u8) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        let n = usize::from(len);
        self.read(
            gpa,
            b.get_mut(..n).ok_or(MemError::OutOfRange { gpa, len: n })?,
        )?;
        Ok(u64::from_le_bytes(b))
    }
    /// Writes the low `len` bytes (at most 8) of `v`, little-endian.
    fn store_le(&mut self, gpa: GuestPhysAddr, len: u8, v: u64) -> Result<(), MemError> {
        let n = usize::from(len);
        let b = v.to_le_bytes();
        self.write(gpa, b.get(..n).ok_or(MemError::OutOfRange { gpa, len: n })?)
    }
}

/// Guest RAM backed by one contiguous byte slice that starts at guest-physical `base`.
///
/// In the VMM protection domain the slice is the guest-RAM mapping that system.xml gives the VMM;
/// in host tests it is an ordinary buffer.
pub struct GuestRam<'a> {
    base: GuestPhysAddr,
    bytes: &'a mut [u8],
}

impl<'a> GuestRam<'a> {
    /// RAM of `bytes.len()` bytes at guest-physical `base`.
    pub fn new(base: GuestPhysAddr, bytes: &'a mut [u8]) -> Self {
        Self { base, bytes }
    }
    /// The guest-physical range covered (None for an empty slice).
    pub fn range(&self) -> Option<GpaRange> {
        GpaRange::new(self.base, self.bytes.len() as u64).ok()
    }
    /// Base guest-physical address.
    pub fn base(&self) -> GuestPhysAddr {
        self.base
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    /// The byte range inside the slice for an access, if it lies entirely in RAM.
    fn span(&self, gpa: GuestPhysAddr, len: usize) -> Result<core::ops::Range<usize>, MemError> {
        let err = MemError::OutOfRange { gpa, len };
        let off = gpa.offset_from(self.base).ok_or(err)?;
        let off = usize::try_from(off).map_err(|_| err)?;
        let end = off.checked_add(len).ok_or(err)?;
        if end > self.bytes.len() {
            return Err(err);
        }
        Ok(off..end)
    }
    /// A shared view of `len` bytes at `gpa`.
    pub fn slice(&self, gpa: GuestPhysAddr, len: usize) -> Result<&[u8], MemError> {
        let r = self.span(gpa, len)?;
        Ok(&self.bytes[r])
    }
    /// A mutable view of `len` bytes at `gpa`.
    pub fn slice_mut(&mut self, gpa: GuestPhysAddr, len: usize) -> Result<&mut [u8], MemError> {
        let r = self.span(gpa, len)?;
        Ok(&mut self.bytes[r])
    }
}

impl GuestMemory for GuestRam<'_> {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        buf.copy_from_slice(self.slice(gpa, buf.len())?);
        Ok(())
    }
    fn write(&mut self, gpa: GuestPhysAddr, buf: &[u8]) -> Result<(), MemError> {
        self.slice_mut(gpa, buf.len())?.copy_from_slice(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_stay_inside() {
        let mut buf = [0u8; 64];
        let mut ram = GuestRam::new(GuestPhysAddr(0x4000_0000), &mut buf);
        ram.write_u64(GuestPhysAddr(0x4000_0038), 0x1122_3344_5566_7788)
            .unwrap();
        assert_eq!(
            ram.read_u64(GuestPhysAddr(0x4000_0038)),
            Ok(0x1122_3344_5566_7788)
        );
        assert!(ram.read_u64(GuestPhysAddr(0x4000_0039)).is_err());
        assert!(ram.read_u32(GuestPhysAddr(0x3fff_fffe)).is_err());
        assert!(ram.read_u64(GuestPhysAddr(u64::MAX - 3)).is_err());
    }

    #[test]
    fn small_loads_and_stores_are_little_endian_and_checked() {
        let mut buf = [0u8; 16];
        let mut ram = GuestRam::new(GuestPhysAddr(0x1000), &mut buf);
        ram.store_le(GuestPhysAddr(0x1003), 4, 0xaabb_ccdd_1122_3344)
            .unwrap();
        assert_eq!(ram.load_le(GuestPhysAddr(0x1003), 4), Ok(0x1122_3344));
        assert_eq!(ram.load_le(GuestPhysAddr(0x1003), 1), Ok(0x44));
        assert_eq!(ram.load_le(GuestPhysAddr(0x1002), 2), Ok(0x4400));
        assert_eq!(
            ram.load_le(GuestPhysAddr(0x1000), 8),
            Ok(0x0011_2233_4400_0000)
        );
        assert!(ram.load_le(GuestPhysAddr(0x1009), 8).is_err());
        assert!(ram.load_le(GuestPhysAddr(0x1000), 9).is_err());
        assert!(ram.store_le(GuestPhysAddr(0x100f), 2, 0).is_err());
        assert_eq!(ram.load_le(GuestPhysAddr(0x1008), 8), Ok(0));
    }

    #[test]
    fn the_ram_says_where_it_is() {
        let mut buf = [0u8; 0x30];
        let ram = GuestRam::new(GuestPhysAddr(0x4000_0000), &mut buf);
        assert_eq!(ram.base(), GuestPhysAddr(0x4000_0000));
        assert_eq!(ram.size(), 0x30);
        let r = ram.range().unwrap();
        assert_eq!(
            (r.start(), r.last()),
            (GuestPhysAddr(0x4000_0000), GuestPhysAddr(0x4000_002f))
        );
        // No bytes: no range.
        let mut none = [0u8; 0];
        assert_eq!(
            GuestRam::new(GuestPhysAddr(0x1000), &mut none).range(),
            None
        );
    }
}
