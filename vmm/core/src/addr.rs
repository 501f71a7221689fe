//! Address newtypes: a guest-physical, guest-virtual and VMM-virtual address cannot be mixed up.

use core::fmt;

macro_rules! address {
    ($(#[$doc:meta])* $name:ident, $short:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            #[inline]
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// `self + off`, or `None` on overflow.
            #[inline]
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// `self - base` if `self >= base`.
            #[inline]
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
            /// Rounds down to a multiple of `align` (a power of two).
            #[inline]
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align.wrapping_sub(1)))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, "{:#x}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

address!(
    /// A guest-physical address (intermediate physical address, the output of the guest's stage 1).
    GuestPhysAddr,
    "gpa:"
);
address!(
    /// A guest-virtual address (the input of the guest's stage-1 translation).
    GuestVirtAddr,
    "gva:"
);
address!(
    /// An address in the VMM protection domain's own address space.
    VmmVirtAddr,
    "vmm:"
);

/// A half-open range of guest-physical addresses `[start, start + size)`, never empty and never
/// wrapping past the end of the address space.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GpaRange {
    start: GuestPhysAddr,
    size: u64,
}

/// Why a range could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// The size is zero.
    Empty,
    /// `start + size` overflows the 64-bit address space.
    Wraps,
}

impl GpaRange {
    /// A range of `size` bytes from `start`.
    pub const fn new(start: GuestPhysAddr, size: u64) -> Result<Self, RangeError> {
        if size == 0 {
            return Err(RangeError::Empty);
        }
        if start.0.checked_add(size - 1).is_none() {
            return Err(RangeError::Wraps);
        }
        Ok(Self { start, size })
    }
    /// First address.
    pub const fn start(&self) -> GuestPhysAddr {
        self.start
    }
    /// Size in bytes (never zero).
    pub const fn size(&self) -> u64 {
        self.size
    }
    /// Last address (inclusive), which never overflows.
    pub const fn last(&self) -> GuestPhysAddr {
        GuestPhysAddr(self.start.0 + (self.size - 1))
    }
    /// Whether `addr` lies inside.
    pub const fn contains(&self, addr: GuestPhysAddr) -> bool {
        addr.0 >= self.start.0 && addr.0 <= self.last().0
    }
    /// Whether the `len`-byte access at `addr` lies entirely inside (`len` of 0 never does).
    pub const fn contains_access(&self, addr: GuestPhysAddr, len: u64) -> bool {
        if len == 0 || !self.contains(addr) {
            return false;
        }
        match addr.0.checked_add(len - 1) {
            Some(end) => end <= self.last().0,
            None => false,
        }
    }
    /// Whether the two ranges share at least one address.
    pub const fn overlaps(&self, other: &GpaRange) -> bool {
        self.start.0 <= other.last().0 && other.start.0 <= self.last().0
    }
}

impl fmt::Debug for GpaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}..={:#x}]", self.start.0, self.last().0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_rejects_empty_and_wrapping() {
        assert_eq!(GpaRange::new(GuestPhysAddr(0), 0), Err(RangeError::Empty));
        assert_eq!(
            GpaRange::new(GuestPhysAddr(u64::MAX), 2),
            Err(RangeError::Wraps)
        );
        let r = GpaRange::new(GuestPhysAddr(u64::MAX), 1).unwrap();
        assert_eq!(r.last(), GuestPhysAddr(u64::MAX));
    }

    #[test]
    fn access_containment() {
        let r = GpaRange::new(GuestPhysAddr(0x1000), 0x100).unwrap();
        assert!(r.contains_access(GuestPhysAddr(0x10f8), 8));
        assert!(!r.contains_access(GuestPhysAddr(0x10f9), 8));
        assert!(!r.contains_access(GuestPhysAddr(0x1000), 0));
        assert!(!r.contains_access(GuestPhysAddr(0xfff), 2));
    }

    #[test]
    fn ranges_and_addresses_print_in_hex() {
        use core::fmt::Write;
        let show = |v: &dyn fmt::Debug| {
            let mut s = heapless::String::<32>::new();
            write!(s, "{v:?}").unwrap();
            s
        };
        let r = GpaRange::new(GuestPhysAddr(0x1000), 0x100).unwrap();
        assert_eq!(show(&r), "[0x1000..=0x10ff]");
        assert_eq!(show(&GuestPhysAddr(0x4000_0000)), "gpa:0x40000000");
        assert_eq!(show(&GuestVirtAddr(0xffff)), "gva:0xffff");
        let mut s = heapless::String::<32>::new();
        write!(s, "{}", VmmVirtAddr(0)).unwrap();
        assert_eq!(s, "vmm:0x0");
    }
}
