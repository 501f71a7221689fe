//! The access-handler tree, after VirtualBox PGM's physical access handlers: it owns the map from
//! guest-physical ranges to the handler (device model or write-protection owner) that emulates
//! accesses to them.
//!
//! Two kinds of handler exist ([`HandlerKind`]):
//! - [`HandlerKind::All`]: every access traps and is emulated (MMIO devices; nothing is mapped).
//! - [`HandlerKind::Write`]: reads are served by the backing RAM (mapped read-only), only writes
//!   trap to the handler (write-protected RAM).
//!
//! The tree is a fixed-capacity, allocation-free table: a `heapless::Vec` of disjoint ranges kept
//! sorted by start address, searched by binary search, plus a slot table that turns the stable
//! [`HandlerId`]s into positions. Costs, for `n` registered handlers and capacity `N`:
//! - [`HandlerTree::lookup`] / [`HandlerTree::lookup_access`]: O(log n), at most
//!   `ceil(log2(n + 1))` range comparisons; no allocation, no panic for any address.
//! - [`HandlerTree::register`]: O(log n) search plus O(n) shift and O(N) free-slot search.
//! - [`HandlerTree::deregister`]: O(log n) search plus O(n) shift.
//!
//! Past capacity nothing is evicted: [`HandlerTree::register`] returns
//! [`RegisterError::Full`] and the tree is unchanged, so lookups keep their bound.
//!
//! A handler is given the base of its range and the offset of the access inside it
//! ([`Access::base`], [`Access::offset`]); it never needs the absolute address.

use crate::addr::{GpaRange, GuestPhysAddr, RangeError};

/// How accesses to a registered range reach its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandlerKind {
    /// Every access (read or write) is emulated by the handler: MMIO devices.
    All,
    /// Reads are served by the backing RAM; writes trap to the handler: write-protected RAM.
    Write,
}

impl HandlerKind {
    /// Whether an access in this direction is handed to the handler (`true`) rather than served
    /// by backing RAM (`false`).
    #[inline]
    pub const fn traps(self, is_write: bool) -> bool {
        match self {
            HandlerKind::All => true,
            HandlerKind::Write => is_write,
        }
    }
}

/// A stable name for a registration: its slot in the table and the slot's generation at
/// registration time, so an id kept after [`HandlerTree::deregister`] is recognised as stale
/// (until the slot's 32-bit generation counter wraps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HandlerId {
    slot: u32,
    generation: u32,
}

impl HandlerId {
    /// The slot index, in `0..N`: a dense index for per-handler tables (e.g. statistics).
    #[inline]
    pub const fn slot(self) -> usize {
        self.slot as usize
    }
    /// The id packed into one word (slot in the low half, generation in the high half).
    #[inline]
    pub const fn raw(self) -> u64 {
        ((self.generation as u64) << 32) | self.slot as u64
    }
    /// The id [`HandlerId::raw`] produced. Any value is accepted; a value that names no live
    /// registration is refused by the tree with a typed error.
    #[inline]
    pub const fn from_raw(raw: u64) -> Self {
        Self {
            slot: raw as u32,
            generation: (raw >> 32) as u32,
        }
    }
}

/// One registered range with its kind and handler payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<H> {
    range: GpaRange,
    kind: HandlerKind,
    handler: H,
}

impl<H> Entry<H> {
    /// The guest-physical range handled.
    #[inline]
    pub fn range(&self) -> GpaRange {
        self.range
    }
    /// First address of the range: the base a handler computes offsets from.
    #[inline]
    pub fn base(&self) -> GuestPhysAddr {
        self.range.start()
    }
    /// ALL or WRITE.
    #[inline]
    pub fn kind(&self) -> HandlerKind {
        self.kind
    }
    /// The handler payload (for example a device index).
    #[inline]
    pub fn handler(&self) -> &H {
        &self.handler
    }
}

/// Why a registration was refused; the tree is unchanged in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// The raw size was zero ([`HandlerTree::register_raw`]).
    Empty,
    /// The raw `start + size` wraps past the end of the address space
    /// ([`HandlerTree::register_raw`]).
    Wraps,
    /// The range overlaps an existing registration: the lowest-addressed one it overlaps.
    Overlap {
        /// The range already registered.
        existing: GpaRange,
        /// Its id.
        id: HandlerId,
    },
    /// All `capacity` slots are taken.
    Full {
        /// The table's fixed capacity `N`.
        capacity: usize,
    },
}

impl From<RangeError> for RegisterError {
    fn from(e: RangeError) -> Self {
        match e {
            RangeError::Empty => RegisterError::Empty,
            RangeError::Wraps => RegisterError::Wraps,
        }
    }
}

/// Why a deregistration was refused; the tree is unchanged in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeregisterError {
    /// The id's slot is outside the table: it was never issued by this tree.
    Unknown(HandlerId),
    /// The id's slot is free or was reused since: the registration is gone.
    Stale(HandlerId),
}

/// Why an access could not be routed to exactly one handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupError {
    /// The access length is zero.
    EmptyAccess,
    /// The access runs past the end of the 64-bit address space.
    Wraps {
        /// First address of the access.
        gpa: GuestPhysAddr,
        /// Length in bytes.
        len: u64,
    },
    /// No handler covers any byte of the access.
    NoHandler {
        /// First address of the access.
        gpa: GuestPhysAddr,
    },
    /// The access covers bytes of a handler's range and bytes outside it.
    Crosses {
        /// The handler whose boundary is crossed (the one holding the lowest such byte).
        id: HandlerId,
        /// Its range.
        range: GpaRange,
        /// First address of the access.
        gpa: GuestPhysAddr,
        /// Length in bytes.
        len: u64,
    },
}

/// An access routed to its handler: what a device model needs to emulate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access<'a, H> {
    /// The handler's id.
    pub id: HandlerId,
    /// The registration.
    pub entry: &'a Entry<H>,
    /// Offset of the access's first byte from the range base.
    pub offset: u64,
}

impl<H> Access<'_, H> {
    /// The range base.
    #[inline]
    pub fn base(&self) -> GuestPhysAddr {
        self.entry.base()
    }
    /// The offset of the access inside the range.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// ALL or WRITE.
    #[inline]
    pub fn kind(&self) -> HandlerKind {
        self.entry.kind()
    }
    /// The handler payload.
    #[inline]
    pub fn handler(&self) -> &H {
        self.entry.handler()
    }
}

#[derive(Debug, Clone)]
struct Node<H> {
    id: HandlerId,
    entry: Entry<H>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    generation: u32,
    /// Start of the live registration in this slot (the sort key), `None` when free.
    start: Option<GuestPhysAddr>,
}

impl Slot {
    const FREE: Slot = Slot {
        generation: 0,
        start: None,
    };
}

/// The access-handler tree: at most `N` disjoint guest-physical ranges, each with a kind and a
/// handler payload `H`.
pub struct HandlerTree<H, const N: usize> {
    /// Disjoint ranges, sorted by start address.
    nodes: heapless::Vec<Node<H>, N>,
    slots: [Slot; N],
    /// The node the last successful lookup found: a guest polls one device register after
    /// another, so the next lookup tries it first (O(1)) before the binary search. Only a hint:
    /// checked against the node's range before use, forgotten when the nodes change.
    last: core::cell::Cell<usize>,
}

impl<H, const N: usize> Default for HandlerTree<H, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H, const N: usize> HandlerTree<H, N> {
    /// An empty tree with capacity `N` (which must fit in `u32`; checked at compile time).
    pub const fn new() -> Self {
        const {
            assert!(
                N <= u32::MAX as usize,
                "handler tree capacity must fit in u32"
            )
        };
        Self {
            nodes: heapless::Vec::new(),
            slots: [Slot::FREE; N],
            last: core::cell::Cell::new(usize::MAX),
        }
    }

    /// The fixed capacity `N`.
    #[inline]
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Number of live registrations.
    #[inline]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether nothing is registered.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Registers `handler` for `range`. Refuses a range overlapping a live registration
    /// ([`RegisterError::Overlap`]) and a full table ([`RegisterError::Full`]).
    pub fn register(
        &mut self,
        range: GpaRange,
        kind: HandlerKind,
        handler: H,
    ) -> Result<HandlerId, RegisterError> {
        // Position of the first node starting after `range.start()`.
        let pos = self
            .nodes
            .partition_point(|n| n.entry.range.start() <= range.start());
        // Only the neighbours can overlap: the nodes are disjoint and sorted.
        let before = pos.checked_sub(1).and_then(|i| self.nodes.get(i));
        if let Some(prev) = before.filter(|p| p.entry.range.overlaps(&range)) {
            return Err(RegisterError::Overlap {
                existing: prev.entry.range,
                id: prev.id,
            });
        }
        if let Some(next) = self
            .nodes
            .get(pos)
            .filter(|n| n.entry.range.overlaps(&range))
        {
            return Err(RegisterError::Overlap {
                existing: next.entry.range,
                id: next.id,
            });
        }
        let full = RegisterError::Full { capacity: N };
        let slot_index = self
            .slots
            .iter()
            .position(|s| s.start.is_none())
            .ok_or(full)?;
        let slot = self.slots.get_mut(slot_index).ok_or(full)?;
        let id = HandlerId {
            slot: u32::try_from(slot_index).map_err(|_| full)?,
            generation: slot.generation,
        };
        let node = Node {
            id,
            entry: Entry {
                range,
                kind,
                handler,
            },
        };
        self.last.set(usize::MAX);
        if self.nodes.insert(pos, node).is_err() {
            return Err(full);
        }
        slot.start = Some(range.start());
        Ok(id)
    }

    /// Registers `handler` for the `size` bytes at `start`, refusing an empty or wrapping range
    /// with [`RegisterError::Empty`] / [`RegisterError::Wraps`].
    pub fn register_raw(
        &mut self,
        start: GuestPhysAddr,
        size: u64,
        kind: HandlerKind,
        handler: H,
    ) -> Result<HandlerId, RegisterError> {
        let range = GpaRange::new(start, size)?;
        self.register(range, kind, handler)
    }

    /// Position in `nodes` of the live registration `id`.
    fn position(&self, id: HandlerId) -> Result<usize, DeregisterError> {
        let slot = self
            .slots
            .get(id.slot())
            .ok_or(DeregisterError::Unknown(id))?;
        let start = match slot.start {
            Some(start) if slot.generation == id.generation => start,
            _ => return Err(DeregisterError::Stale(id)),
        };
        let pos = self
            .nodes
            .binary_search_by(|n| n.entry.range.start().cmp(&start))
            .map_err(|_| DeregisterError::Stale(id))?;
        match self.nodes.get(pos) {
            Some(n) if n.id == id => Ok(pos),
            _ => Err(DeregisterError::Stale(id)),
        }
    }

    /// Removes the registration `id` and returns it. The id (and every copy of it) becomes stale.
    pub fn deregister(&mut self, id: HandlerId) -> Result<Entry<H>, DeregisterError> {
        let pos = self.position(id)?;
        let slot = self
            .slots
            .get_mut(id.slot())
            .ok_or(DeregisterError::Unknown(id))?;
        slot.start = None;
        slot.generation = slot.generation.wrapping_add(1);
        // `pos < len` was established by `position`.
        self.last.set(usize::MAX);
        Ok(self.nodes.remove(pos).entry)
    }

    /// The live registration `id`.
    pub fn get(&self, id: HandlerId) -> Result<&Entry<H>, DeregisterError> {
        let pos = self.position(id)?;
        self.nodes
            .get(pos)
            .map(|n| &n.entry)
            .ok_or(DeregisterError::Stale(id))
    }

    /// Mutable access to the payload of the live registration `id`.
    pub fn handler_mut(&mut self, id: HandlerId) -> Result<&mut H, DeregisterError> {
        let pos = self.position(id)?;
        self.nodes
            .get_mut(pos)
            .map(|n| &mut n.entry.handler)
            .ok_or(DeregisterError::Stale(id))
    }

    /// Index of the node with the greatest start `<= gpa`, if any: the last lookup's node when
    /// its range holds `gpa` (ranges are disjoint, so that node is the floor), else a binary
    /// search.
    #[inline]
    fn floor(&self, gpa: GuestPhysAddr) -> Option<usize> {
        let hint = self.last.get();
        if self
            .nodes
            .get(hint)
            .is_some_and(|n| n.entry.range.contains(gpa))
        {
            return Some(hint);
        }
        let i = self
            .nodes
            .partition_point(|n| n.entry.range.start() <= gpa)
            .checked_sub(1)?;
        self.last.set(i);
        Some(i)
    }

    /// The registration whose range contains `gpa`: O(log n).
    #[inline]
    pub fn lookup(&self, gpa: GuestPhysAddr) -> Option<(HandlerId, &Entry<H>)> {
        let node = self.nodes.get(self.floor(gpa)?)?;
        node.entry
            .range
            .contains(gpa)
            .then_some((node.id, &node.entry))
    }

    /// Routes the `len`-byte access at `gpa` to the one handler whose range holds all of it.
    ///
    /// Errors: a zero length, an access wrapping the address space, an access that no handler
    /// touches ([`LookupError::NoHandler`]), and an access that covers bytes both inside and
    /// outside a handler's range ([`LookupError::Crosses`], also when its first byte lies in no
    /// range but a later byte does). O(log n).
    pub fn lookup_access(
        &self,
        gpa: GuestPhysAddr,
        len: u64,
    ) -> Result<Access<'_, H>, LookupError> {
        let last_off = len.checked_sub(1).ok_or(LookupError::EmptyAccess)?;
        let last = gpa
            .checked_add(last_off)
            .ok_or(LookupError::Wraps { gpa, len })?;
        match self.floor(gpa).and_then(|i| self.nodes.get(i)) {
            Some(node) if node.entry.range.contains(gpa) => {
                if node.entry.range.contains(last) {
                    let offset = gpa.offset_from(node.entry.base()).unwrap_or(0);
                    Ok(Access {
                        id: node.id,
                        entry: &node.entry,
                        offset,
                    })
                } else {
                    Err(LookupError::Crosses {
                        id: node.id,
                        range: node.entry.range,
                        gpa,
                        len,
                    })
                }
            }
            _ => {
                // The first byte is unhandled; the first range starting after it may still
                // begin inside the access.
                let next = self.floor(gpa).map_or(0, |i| i.saturating_add(1));
                match self.nodes.get(next) {
                    Some(n) if n.entry.range.start() <= last => Err(LookupError::Crosses {
                        id: n.id,
                        range: n.entry.range,
                        gpa,
                        len,
                    }),
                    _ => Err(LookupError::NoHandler { gpa }),
                }
            }
        }
    }

    /// The live registrations in ascending address order.
    pub fn iter(&self) -> impl Iterator<Item = (HandlerId, &Entry<H>)> {
        self.nodes.iter().map(|n| (n.id, &n.entry))
    }
}
