//! Executable specification of the access-handler tree: a linear scan over an array of optional
//! entries, and proptest properties holding `HandlerTree` to it.

use proptest::prelude::*;
use vmm_core::addr::{GpaRange, GuestPhysAddr};
use vmm_core::handlers::{
    DeregisterError, HandlerId, HandlerKind, HandlerTree, LookupError, RegisterError,
};

/// The reference model: `N` optional entries, every question answered by a linear scan.
struct Model<const N: usize> {
    slots: [Option<(GpaRange, HandlerKind, u32)>; N],
}

impl<const N: usize> Model<N> {
    fn new() -> Self {
        Self { slots: [None; N] }
    }
    fn live(&self) -> impl Iterator<Item = (usize, &(GpaRange, HandlerKind, u32))> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|e| (i, e)))
    }
    /// Ok(slot) or the error the spec requires: overlap with the lowest-addressed overlapping
    /// range first, then full.
    fn register(&mut self, r: GpaRange, k: HandlerKind, tag: u32) -> Result<usize, ModelRegErr> {
        if let Some((_, e)) = self
            .live()
            .filter(|(_, e)| e.0.overlaps(&r))
            .min_by_key(|(_, e)| e.0.start())
        {
            return Err(ModelRegErr::Overlap(e.0));
        }
        let free = self
            .slots
            .iter()
            .position(|s| s.is_none())
            .ok_or(ModelRegErr::Full)?;
        self.slots[free] = Some((r, k, tag));
        Ok(free)
    }
    fn deregister(&mut self, slot: usize) -> Option<(GpaRange, HandlerKind, u32)> {
        self.slots.get_mut(slot).and_then(|s| s.take())
    }
    fn lookup(&self, gpa: u64) -> Option<(GpaRange, HandlerKind, u32)> {
        self.live()
            .map(|(_, e)| *e)
            .find(|e| e.0.contains(GuestPhysAddr(gpa)))
    }
    /// Ok((tag, offset)) or the error kind.
    fn lookup_access(&self, gpa: u64, len: u64) -> Result<(u32, u64), ModelLookupErr> {
        if len == 0 {
            return Err(ModelLookupErr::Empty);
        }
        let Some(last) = gpa.checked_add(len - 1) else {
            return Err(ModelLookupErr::Wraps);
        };
        // Every range touched by some byte of the access.
        let acc = GpaRange::new(GuestPhysAddr(gpa), len).unwrap();
        let mut touched: Vec<_> = self
            .live()
            .map(|(_, e)| *e)
            .filter(|e| e.0.overlaps(&acc))
            .collect();
        touched.sort_by_key(|e| e.0.start());
        match touched.first() {
            None => Err(ModelLookupErr::NoHandler),
            Some(e) if e.0.start().0 <= gpa && e.0.last().0 >= last => {
                Ok((e.2, gpa - e.0.start().0))
            }
            Some(e) => Err(ModelLookupErr::Crosses(e.0)),
        }
    }
}

#[derive(Debug, PartialEq)]
enum ModelRegErr {
    Overlap(GpaRange),
    Full,
}

#[derive(Debug, PartialEq)]
enum ModelLookupErr {
    Empty,
    Wraps,
    NoHandler,
    Crosses(GpaRange),
}

#[derive(Debug, Clone)]
enum Op {
    Register {
        start: u64,
        size: u64,
        write: bool,
    },
    /// Deregisters the id issued by the `n`-th registration (modulo how many were issued), live
    /// or not.
    Deregister(usize),
    Lookup(u64),
    LookupAccess(u64, u64),
}

/// Addresses from a small window (so ranges collide often) or anywhere (edges of the space).
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..0x400,
        1 => (u64::MAX - 0x400)..=u64::MAX,
        1 => any::<u64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (addr(), prop_oneof![0u64..0x40, Just(0), any::<u64>()], any::<bool>())
            .prop_map(|(start, size, write)| Op::Register { start, size, write }),
        2 => any::<usize>().prop_map(Op::Deregister),
        3 => addr().prop_map(Op::Lookup),
        3 => (addr(), prop_oneof![0u64..16, any::<u64>()]).prop_map(|(a, l)| Op::LookupAccess(a, l)),
    ]
}

fn run_ops<const N: usize>(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut tree: HandlerTree<u32, N> = HandlerTree::new();
    let mut model: Model<N> = Model::new();
    // Every id issued, with the model slot it corresponds to.
    let mut issued = Vec::new();
    let mut tag = 0u32;
    for op in ops {
        match *op {
            Op::Register { start, size, write } => {
                tag += 1;
                let kind = if write {
                    HandlerKind::Write
                } else {
                    HandlerKind::All
                };
                let got = tree.register_raw(GuestPhysAddr(start), size, kind, tag);
                match GpaRange::new(GuestPhysAddr(start), size) {
                    Err(e) => prop_assert_eq!(got, Err(RegisterError::from(e))),
                    Ok(r) => match (got, model.register(r, kind, tag)) {
                        (Ok(id), Ok(slot)) => {
                            prop_assert_eq!(id.slot(), slot);
                            issued.push((id, slot, tag));
                        }
                        (
                            Err(RegisterError::Overlap { existing, id }),
                            Err(ModelRegErr::Overlap(m)),
                        ) => {
                            prop_assert_eq!(existing, m);
                            prop_assert_eq!(tree.get(id).map(|e| e.range()), Ok(m));
                        }
                        (Err(RegisterError::Full { capacity }), Err(ModelRegErr::Full)) => {
                            prop_assert_eq!(capacity, N)
                        }
                        (g, m) => prop_assert!(false, "register {r:?}: tree {g:?}, model {m:?}"),
                    },
                }
            }
            Op::Deregister(n) => {
                if issued.is_empty() {
                    continue;
                }
                let (id, slot, issued_tag) = issued[n % issued.len()];
                // The registration is live in the model iff its slot still holds its tag.
                let live_in_model = model.slots[slot].map(|e| e.2) == Some(issued_tag);
                let got = tree.deregister(id);
                match got {
                    Ok(e) => {
                        prop_assert!(live_in_model);
                        prop_assert_eq!(*e.handler(), issued_tag);
                        model.deregister(slot);
                    }
                    Err(DeregisterError::Stale(i)) => {
                        prop_assert_eq!(i, id);
                        prop_assert!(!live_in_model);
                    }
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                }
            }
            Op::Lookup(a) => {
                let got = tree
                    .lookup(GuestPhysAddr(a))
                    .map(|(id, e)| (e.range(), e.kind(), *e.handler(), id));
                let want = model.lookup(a);
                prop_assert_eq!(got.map(|g| (g.0, g.1, g.2)), want);
                if let Some((.., id)) = got {
                    prop_assert_eq!(tree.get(id).map(|e| *e.handler()), Ok(want.unwrap().2));
                }
            }
            Op::LookupAccess(a, l) => {
                let got = tree.lookup_access(GuestPhysAddr(a), l);
                let want = model.lookup_access(a, l);
                match (got, want) {
                    (Ok(acc), Ok((t, off))) => {
                        prop_assert_eq!(*acc.handler(), t);
                        prop_assert_eq!(acc.offset(), off);
                        prop_assert_eq!(acc.base().0 + acc.offset(), a);
                    }
                    (Err(LookupError::EmptyAccess), Err(ModelLookupErr::Empty)) => {}
                    (Err(LookupError::Wraps { .. }), Err(ModelLookupErr::Wraps)) => {}
                    (Err(LookupError::NoHandler { gpa }), Err(ModelLookupErr::NoHandler)) => {
                        prop_assert_eq!(gpa.0, a)
                    }
                    (Err(LookupError::Crosses { range, .. }), Err(ModelLookupErr::Crosses(m))) => {
                        prop_assert_eq!(range, m)
                    }
                    (g, m) => {
                        prop_assert!(false, "lookup_access({a:#x}, {l}): tree {g:?}, model {m:?}")
                    }
                }
            }
        }
        // Structural invariants after every step.
        prop_assert_eq!(tree.len(), model.live().count());
        let ranges: Vec<_> = tree.iter().map(|(_, e)| e.range()).collect();
        for w in ranges.windows(2) {
            prop_assert!(
                w[0].last() < w[1].start(),
                "unsorted or overlapping: {:?}",
                w
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random register/deregister/lookup sequences: tree and linear model agree at every step
    /// (small capacity so `Full` is reached).
    #[test]
    fn tree_matches_linear_model_small(ops in proptest::collection::vec(op(), 1..120)) {
        run_ops::<8>(&ops)?;
    }

    /// Same at the VMM's capacity.
    #[test]
    fn tree_matches_linear_model_256(ops in proptest::collection::vec(op(), 1..300)) {
        run_ops::<256>(&ops)?;
    }

    /// A forged id never deregisters anything and never panics.
    #[test]
    fn forged_ids_are_refused(raw in any::<u64>()) {
        let mut tree: HandlerTree<u8, 4> = HandlerTree::new();
        let id = tree.register_raw(GuestPhysAddr(0x1000), 0x10, HandlerKind::All, 1).unwrap();
        let forged = vmm_core::handlers::HandlerId::from_raw(raw);
        let r = tree.deregister(forged);
        if forged == id {
            prop_assert!(r.is_ok());
        } else {
            prop_assert!(r.is_err());
            prop_assert_eq!(tree.len(), 1);
        }
    }
}

#[test]
fn register_lookup_and_offsets() {
    let mut tree: HandlerTree<&str, 4> = HandlerTree::new();
    let uart = tree
        .register_raw(GuestPhysAddr(0x0900_0000), 0x1000, HandlerKind::All, "uart")
        .unwrap();
    let gicd = tree
        .register_raw(
            GuestPhysAddr(0x0800_0000),
            0x1_0000,
            HandlerKind::All,
            "gicd",
        )
        .unwrap();
    let (id, e) = tree.lookup(GuestPhysAddr(0x0800_0100)).unwrap();
    assert_eq!((id, *e.handler()), (gicd, "gicd"));
    let acc = tree.lookup_access(GuestPhysAddr(0x0900_0018), 4).unwrap();
    assert_eq!(
        (acc.id, acc.base(), acc.offset(), acc.kind()),
        (uart, GuestPhysAddr(0x0900_0000), 0x18, HandlerKind::All)
    );
    assert!(tree.lookup(GuestPhysAddr(0x0901_0000)).is_none());
    assert!(tree.lookup(GuestPhysAddr(0x07ff_ffff)).is_none());
}

#[test]
fn overlap_full_and_raw_errors() {
    let mut tree: HandlerTree<u8, 2> = HandlerTree::new();
    let a = tree
        .register_raw(GuestPhysAddr(0x1000), 0x1000, HandlerKind::All, 0)
        .unwrap();
    let ra = GpaRange::new(GuestPhysAddr(0x1000), 0x1000).unwrap();
    assert_eq!(
        tree.register_raw(GuestPhysAddr(0x1fff), 1, HandlerKind::Write, 1),
        Err(RegisterError::Overlap {
            existing: ra,
            id: a
        })
    );
    assert_eq!(
        tree.register_raw(GuestPhysAddr(0), 0x1001, HandlerKind::Write, 1),
        Err(RegisterError::Overlap {
            existing: ra,
            id: a
        })
    );
    assert_eq!(
        tree.register_raw(GuestPhysAddr(0x5000), 0, HandlerKind::All, 1),
        Err(RegisterError::Empty)
    );
    assert_eq!(
        tree.register_raw(GuestPhysAddr(u64::MAX), 2, HandlerKind::All, 1),
        Err(RegisterError::Wraps)
    );
    tree.register_raw(GuestPhysAddr(0x2000), 0x10, HandlerKind::Write, 1)
        .unwrap();
    assert_eq!(
        tree.register_raw(GuestPhysAddr(0x9000), 0x10, HandlerKind::Write, 2),
        Err(RegisterError::Full { capacity: 2 })
    );
    // Deregistering makes the id stale and frees the slot.
    assert!(tree.deregister(a).is_ok());
    assert_eq!(tree.deregister(a), Err(DeregisterError::Stale(a)));
    let b = tree
        .register_raw(GuestPhysAddr(0x9000), 0x10, HandlerKind::Write, 2)
        .unwrap();
    assert_eq!(b.slot(), a.slot());
    assert_ne!(b, a);
    assert_eq!(tree.get(a), Err(DeregisterError::Stale(a)));
    let bogus = vmm_core::handlers::HandlerId::from_raw(7);
    assert_eq!(tree.deregister(bogus), Err(DeregisterError::Unknown(bogus)));
}

#[test]
fn crossing_accesses_are_refused() {
    let mut tree: HandlerTree<u8, 4> = HandlerTree::new();
    let r = GpaRange::new(GuestPhysAddr(0x1000), 0x100).unwrap();
    let id = tree.register(r, HandlerKind::All, 0).unwrap();
    // Runs off the end.
    assert!(
        matches!(tree.lookup_access(GuestPhysAddr(0x10fc), 8), Err(LookupError::Crosses { id: i, .. }) if i == id)
    );
    // Starts before, ends inside.
    assert!(
        matches!(tree.lookup_access(GuestPhysAddr(0xffc), 8), Err(LookupError::Crosses { range, .. }) if range == r)
    );
    // Exactly the last bytes.
    assert_eq!(
        tree.lookup_access(GuestPhysAddr(0x10f8), 8)
            .unwrap()
            .offset(),
        0xf8
    );
    assert_eq!(
        tree.lookup_access(GuestPhysAddr(0x2000), 8).unwrap_err(),
        LookupError::NoHandler {
            gpa: GuestPhysAddr(0x2000)
        }
    );
    assert_eq!(
        tree.lookup_access(GuestPhysAddr(0x1000), 0).unwrap_err(),
        LookupError::EmptyAccess
    );
    assert!(matches!(
        tree.lookup_access(GuestPhysAddr(u64::MAX), 2),
        Err(LookupError::Wraps { .. })
    ));
}

#[test]
fn write_kind_traps_only_writes() {
    assert!(HandlerKind::All.traps(false) && HandlerKind::All.traps(true));
    assert!(!HandlerKind::Write.traps(false) && HandlerKind::Write.traps(true));
}

/// A handler id as one word (the PD hands it around as a u64): the slot in the low half, the
/// slot's generation in the high half, and `from_raw` gives the id back.
#[test]
fn ids_are_slot_and_generation_in_one_word() {
    let mut tree: HandlerTree<u8, 4> = HandlerTree::new();
    let a = tree
        .register_raw(GuestPhysAddr(0x1000), 0x100, HandlerKind::All, 0)
        .unwrap();
    let b = tree
        .register_raw(GuestPhysAddr(0x2000), 0x100, HandlerKind::All, 1)
        .unwrap();
    assert_eq!((a.raw(), b.raw()), (0, 1));
    assert_eq!((a.slot(), b.slot()), (0, 1));
    tree.deregister(b).unwrap();
    let b2 = tree
        .register_raw(GuestPhysAddr(0x3000), 0x100, HandlerKind::All, 2)
        .unwrap();
    assert_eq!(b2.raw(), (1 << 32) | 1, "slot 1, generation 1");
    for id in [a, b, b2] {
        assert_eq!(HandlerId::from_raw(id.raw()), id);
    }
    assert_eq!(
        tree.get(HandlerId::from_raw(b2.raw())).unwrap().handler(),
        &2
    );
}

/// `len`, `is_empty` and `capacity` follow registrations and removals.
#[test]
fn len_and_is_empty_follow_the_registrations() {
    let mut tree: HandlerTree<u8, 2> = HandlerTree::new();
    assert!(tree.is_empty());
    assert_eq!((tree.len(), tree.capacity()), (0, 2));
    let a = tree
        .register_raw(GuestPhysAddr(0x1000), 0x100, HandlerKind::All, 0)
        .unwrap();
    assert!(!tree.is_empty());
    assert_eq!(tree.len(), 1);
    tree.register_raw(GuestPhysAddr(0x2000), 0x100, HandlerKind::All, 1)
        .unwrap();
    assert_eq!(tree.len(), 2);
    tree.deregister(a).unwrap();
    assert_eq!(tree.len(), 1);
    assert!(!tree.is_empty());
    let b = tree.iter().next().unwrap().0;
    tree.deregister(b).unwrap();
    assert!(tree.is_empty());
    assert_eq!(tree.iter().count(), 0);
}
