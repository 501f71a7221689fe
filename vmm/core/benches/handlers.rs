//! Handler lookup: `HandlerTree::lookup` (binary search over sorted ranges, capacity 256) against
//! a linear scan over the live entries, with 8, 64 and 256 handlers registered.
//!
//! Each iteration looks up one address from a fixed pseudo-random sequence that hits every
//! handler and the gaps between them, so the branch predictor cannot learn a single path.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use vmm_core::addr::{GpaRange, GuestPhysAddr};
use vmm_core::handlers::{HandlerKind, HandlerTree};

const CAPACITY: usize = 256;
/// Handlers are 0x1000 bytes each, 0x2000 apart (so half the probes fall in gaps).
const STRIDE: u64 = 0x2000;
const BASE: u64 = 0x0900_0000;

/// The linear-scan baseline: a dense array of the `n` live entries (the strongest form of the
/// tests' reference model, which scans all `N` optional slots).
struct Linear {
    entries: Vec<(GpaRange, HandlerKind, u32)>,
}

impl Linear {
    fn lookup(&self, gpa: GuestPhysAddr) -> Option<&(GpaRange, HandlerKind, u32)> {
        self.entries.iter().find(|e| e.0.contains(gpa))
    }
}

fn setup(n: usize) -> (HandlerTree<u32, CAPACITY>, Linear, Vec<GuestPhysAddr>) {
    let mut tree = HandlerTree::new();
    let mut linear = Linear {
        entries: Vec::with_capacity(n),
    };
    // Register in a scrambled order (the tree sorts; the linear table keeps insertion order).
    for k in 0..n {
        let i = (k * 37) % n;
        let r = GpaRange::new(GuestPhysAddr(BASE + i as u64 * STRIDE), 0x1000).unwrap();
        tree.register(r, HandlerKind::All, i as u32).unwrap();
        linear.entries.push((r, HandlerKind::All, i as u32));
    }
    // 1024 probes from a small LCG over the whole populated span.
    let span = n as u64 * STRIDE;
    let mut x = 0x1234_5678u64;
    let probes = (0..1024)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            GuestPhysAddr(BASE + (x >> 20) % span)
        })
        .collect();
    (tree, linear, probes)
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("handler lookup");
    for n in [8usize, 64, 256] {
        let (tree, linear, probes) = setup(n);
        // Both must agree before being timed.
        for &p in &probes {
            assert_eq!(
                tree.lookup(p).map(|(_, e)| *e.handler()),
                linear.lookup(p).map(|e| e.2)
            );
        }
        g.bench_with_input(BenchmarkId::new("tree", n), &probes, |b, probes| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(tree.lookup(black_box(probes[i])).map(|(_, e)| *e.handler()))
            })
        });
        g.bench_with_input(BenchmarkId::new("linear", n), &probes, |b, probes| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(linear.lookup(black_box(probes[i])).map(|e| e.2))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
