//! Trap statistics: the printed block for a known sequence of exits, and a model check that the
//! counters equal the sum of the events recorded.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vmm_core::stats::{ExitCounts, Stats, TrapClass};

#[test]
fn empty_report_is_header_and_total() {
    let s = Stats::<4>::new();
    assert_eq!(
        s.to_string(),
        "vmm: trap statistics\n  total exits=0 kernel-calls=0 mean=0.00\n"
    );
}

#[test]
fn report_for_a_known_sequence() {
    let mut s = Stats::<8>::new();
    s.record_exit(TrapClass::MmioRead, Some(3), 2);
    s.record_exit(TrapClass::MmioRead, Some(3), 3);
    s.record_exit(TrapClass::MmioWrite, Some(5), 1);
    s.record_exit(TrapClass::Psci, None, 4);
    s.record_exit(TrapClass::MmioRead, Some(3), 2);
    s.record_exit(TrapClass::Wfi, None, 0);
    s.record_exit(TrapClass::MmioWrite, Some(200), 1); // beyond the handler table
    s.record_exit(TrapClass::HypervisorFault, None, 1);

    let want = "\
vmm: trap statistics
  total exits=8 kernel-calls=14 mean=1.75
  mmio-read exits=3 kernel-calls=7 mean=2.33 max=3
  mmio-write exits=2 kernel-calls=2 mean=1.00 max=1
  psci exits=1 kernel-calls=4 mean=4.00 max=4
  wfi exits=1 kernel-calls=0 mean=0.00 max=0
  hypervisor-fault exits=1 kernel-calls=1 mean=1.00 max=1
  handler 3 exits=3 kernel-calls=7
  handler 5 exits=1 kernel-calls=1
  handler-unknown exits=1 kernel-calls=1
";
    assert_eq!(s.to_string(), want);

    // write_report and Display print the same thing.
    let mut out = String::new();
    s.write_report(&mut out).unwrap();
    assert_eq!(out, want);

    // Accessors agree with the report.
    assert_eq!(
        s.total(),
        ExitCounts {
            exits: 8,
            kernel_calls: 14,
            max_kernel_calls: 4
        }
    );
    assert_eq!(
        s.class(TrapClass::MmioRead),
        ExitCounts {
            exits: 3,
            kernel_calls: 7,
            max_kernel_calls: 3
        }
    );
    assert_eq!(s.handler(3).unwrap().exits, 3);
    assert_eq!(s.handler(8), None);
    assert_eq!(s.handler_unknown().exits, 1);
}

#[test]
fn every_class_has_a_distinct_greppable_name() {
    let mut seen = std::collections::BTreeSet::new();
    for c in TrapClass::ALL {
        let name = c.name();
        assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
        assert!(
            name != "total" && !name.starts_with("handler"),
            "{name} clashes"
        );
        assert!(seen.insert(name), "{name} twice");
    }
    assert_eq!(seen.len(), TrapClass::COUNT);
}

#[test]
fn merge_adds_and_reset_clears() {
    let mut a = Stats::<4>::new();
    let mut b = Stats::<4>::new();
    a.record_exit(TrapClass::Hvc, Some(1), 2);
    b.record_exit(TrapClass::Hvc, Some(1), 5);
    b.record_exit(TrapClass::Smc, Some(9), 1);
    a.merge(&b);
    assert_eq!(
        a.class(TrapClass::Hvc),
        ExitCounts {
            exits: 2,
            kernel_calls: 7,
            max_kernel_calls: 5
        }
    );
    assert_eq!(a.total().exits, 3);
    assert_eq!(a.handler(1).unwrap().kernel_calls, 7);
    assert_eq!(a.handler_unknown().exits, 1);
    a.reset();
    assert_eq!(a, Stats::<4>::new());
}

#[test]
fn stats_fit_in_a_static() {
    static S: Stats<16> = Stats::new();
    assert_eq!(S.total().exits, 0);
}

fn class() -> impl Strategy<Value = TrapClass> {
    (0..TrapClass::COUNT).prop_map(|i| TrapClass::ALL[i])
}

/// The report line of one class, parsed back: (exits, kernel calls, max).
fn parse_line(report: &str, prefix: &str) -> Option<(u64, u64, Option<u64>)> {
    let line = report.lines().find(|l| l.starts_with(prefix))?;
    let field = |k: &str| {
        line.split(' ')
            .find_map(|w| w.strip_prefix(k))
            .map(|v| v.parse::<u64>().unwrap())
    };
    Some((field("exits=")?, field("kernel-calls=")?, field("max=")))
}

proptest! {
    #[test]
    fn counters_equal_the_sum_of_recorded_events(
        events in proptest::collection::vec(
            (class(), proptest::option::of(0u16..24), 0u32..1000),
            0..300,
        )
    ) {
        const N: usize = 16;
        let mut s = Stats::<N>::new();
        // Reference: plain maps.
        let mut by_class: BTreeMap<TrapClass, (u64, u64, u32)> = BTreeMap::new();
        let mut by_handler: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
        for &(c, h, k) in &events {
            s.record_exit(c, h, k);
            let e = by_class.entry(c).or_default();
            e.0 += 1;
            e.1 += u64::from(k);
            e.2 = e.2.max(k);
            if let Some(h) = h {
                let e = by_handler.entry(h).or_default();
                e.0 += 1;
                e.1 += u64::from(k);
            }
        }

        let total_calls: u64 = events.iter().map(|e| u64::from(e.2)).sum();
        prop_assert_eq!(s.total().exits, events.len() as u64);
        prop_assert_eq!(s.total().kernel_calls, total_calls);
        prop_assert_eq!(
            TrapClass::ALL.iter().map(|&c| s.class(c).exits).sum::<u64>(),
            s.total().exits
        );
        prop_assert_eq!(
            TrapClass::ALL.iter().map(|&c| s.class(c).kernel_calls).sum::<u64>(),
            s.total().kernel_calls
        );
        for c in TrapClass::ALL {
            let (n, k, m) = by_class.get(&c).copied().unwrap_or_default();
            prop_assert_eq!(s.class(c), ExitCounts { exits: n, kernel_calls: k, max_kernel_calls: m });
        }
        let mut unknown = (0, 0);
        for (&h, &(n, k)) in &by_handler {
            if (h as usize) < N {
                prop_assert_eq!(s.handler(h).map(|c| (c.exits, c.kernel_calls)), Some((n, k)));
            } else {
                unknown.0 += n;
                unknown.1 += k;
            }
        }
        prop_assert_eq!((s.handler_unknown().exits, s.handler_unknown().kernel_calls), unknown);

        // The printed block says the same: header, total, one line per non-zero class.
        let report = s.to_string();
        prop_assert_eq!(report.lines().next(), Some("vmm: trap statistics"));
        prop_assert_eq!(
            parse_line(&report, "  total "),
            Some((events.len() as u64, total_calls, None))
        );
        for c in TrapClass::ALL {
            let line = parse_line(&report, &format!("  {} ", c.name()));
            match by_class.get(&c) {
                Some(&(n, k, m)) => prop_assert_eq!(line, Some((n, k, Some(u64::from(m))))),
                None => prop_assert_eq!(line, None),
            }
        }
        let handler_lines = report.lines().filter(|l| l.starts_with("  handler ")).count();
        prop_assert_eq!(handler_lines, by_handler.keys().filter(|&&h| (h as usize) < N).count());
    }
}
