//! The driver's timeouts against a reference model: a list of per-client deadlines. For any
//! sequence of SET_TIMEOUT calls (any client, any timeout, any time) and timer interrupts (at
//! any time, early or late), the driver notifies exactly the clients whose deadline passed,
//! each once, and its hardware timer is armed at the earliest pending deadline.

use microkit_sim::{Invocation, Sim};
use proptest::prelude::*;
use sddf_queue::timer::{SET_TIMEOUT, ns_to_ticks_ceil};
use timer_driver::{ClientConfig, IDLE_COMPARE, TIMER_IRQ, Timeouts, TimerDriver};

const N: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// The clock moves forward by this many ticks.
    Advance(u64),
    /// Client `i` asks for a timeout of `ns`.
    Set(usize, u64),
    /// The timer's interrupt (whether or not the count reached the compare value).
    Irq,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..2_000).prop_map(Op::Advance),
        (
            0..N,
            prop_oneof![0u64..100_000, Just(u64::MAX), any::<u64>()]
        )
            .prop_map(|(i, ns)| Op::Set(i, ns)),
        Just(Op::Irq),
    ]
}

mod support;

fn system(n: usize) -> (sdf::System, &'static [ClientConfig]) {
    let sys = support::multivm(n);
    let t = support::table(&sys);
    (sys, t)
}

proptest! {
    #[test]
    fn notifications_follow_the_deadline_model(ops in proptest::collection::vec(op(), 1..40)) {
        let (sys, clients) = system(N);
        let sim = Sim::new(&sys, "timer_driver").unwrap();
        let hz = sim.kernel();
        let hz = microkit_rt::Kernel::timer_frequency(&hz);
        let mut el = sim.event_loop();
        el.start();
        let mut drv = TimerDriver::new(sim.kernel(), clients);
        // The model: each client's deadline, if any.
        let mut model: [Option<u64>; N] = [None; N];
        let mut now = 0u64;
        let mut timer: Option<u64> = Some(IDLE_COMPARE);
        for op in ops {
            sim.take_log();
            match op {
                Op::Advance(t) => {
                    now = now.saturating_add(t);
                    sim.set_timer_now(now);
                    continue;
                }
                Op::Set(i, ns) => {
                    model[i] = Some(now.saturating_add(ns_to_ticks_ceil(ns, hz)));
                    sim.ppcall_from_peer(clients[i].channel, SET_TIMEOUT, &[ns]);
                }
                Op::Irq => sim.irq(TIMER_IRQ),
            }
            el.step(&mut drv);
            let log = sim.take_log();
            // Every client whose deadline passed is notified, once; no one else.
            for (i, d) in model.iter_mut().enumerate() {
                let due = d.is_some_and(|d| d <= now);
                let notified = log
                    .iter()
                    .filter(|x| **x == Invocation::Notify(clients[i].channel.index()))
                    .count();
                prop_assert_eq!(notified, usize::from(due), "client {} at {}: {:?}", i, now, log);
                if due {
                    *d = None;
                }
            }
            for x in &log {
                if let Invocation::TimerSet(t) = x {
                    // Never disabled: with nothing pending, compare at IDLE_COMPARE.
                    prop_assert!(t.is_some(), "the timer disabled: {:?}", log);
                    timer = *t;
                }
            }
            // The hardware fires at the earliest pending deadline.
            let earliest = model.iter().flatten().min().copied();
            prop_assert_eq!(timer, Some(earliest.unwrap_or(IDLE_COMPARE)));
            prop_assert_eq!(drv.armed(), earliest);
            for (i, d) in model.iter().enumerate() {
                prop_assert_eq!(drv.timeouts().get(i), *d);
            }
        }
        prop_assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[test]
    fn timeouts_expire_exactly_the_passed_deadlines(
        deadlines in proptest::collection::vec(proptest::option::of(any::<u64>()), 0..16),
        now in any::<u64>(),
    ) {
        let mut t = Timeouts::new();
        for (i, d) in deadlines.iter().enumerate() {
            if let Some(d) = d {
                t.set(i, *d);
            }
        }
        let due = t.expire(now);
        for (i, d) in deadlines.iter().enumerate() {
            prop_assert_eq!(due & 1 << i != 0, d.is_some_and(|d| d <= now));
        }
        let left = deadlines.iter().flatten().filter(|&&d| d > now).min().copied();
        prop_assert_eq!(t.next(), left);
    }
}
