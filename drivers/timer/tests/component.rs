//! timer_driver driven through its Microkit interface (`notified`, `protected`) against the
//! simulated kernel, with exactly the scope system.xml gives it, and in systems derived from it
//! with more VMMs (`sdf::multivm`), whose copies are clients too.

use microkit_rt::abi::error;
use microkit_rt::event_loop::EventLoop;
use microkit_rt::{Channel, Handler, MessageInfo};
use microkit_sim::{Invocation, QEMU_VIRT_TIMER_HZ, Sim, SimKernel, SimTransport};
use sddf_queue::timer::{GET_TIME, SET_TIMEOUT};
use timer_driver::{ClientConfig, IDLE_COMPARE, TIMER_IRQ, TimerDriver, clients::CLIENTS, system};

mod support;
use support::{multivm, table};

struct Rig {
    sim: Sim,
    el: EventLoop<SimTransport>,
    drv: TimerDriver<SimKernel>,
    clients: &'static [ClientConfig],
}

impl Rig {
    fn new() -> Rig {
        let sim = Sim::from_repo_system("timer_driver");
        Self::with(sim, CLIENTS)
    }
    fn vmms(n: usize) -> Rig {
        let sys = multivm(n);
        let sim = Sim::new(&sys, "timer_driver").expect("scope");
        Self::with(sim, table(&sys))
    }
    fn with(sim: Sim, clients: &'static [ClientConfig]) -> Rig {
        let mut el = sim.event_loop();
        el.start();
        let drv = TimerDriver::new(sim.kernel(), clients);
        Rig {
            sim,
            el,
            drv,
            clients,
        }
    }
    /// Client `i` calls with `label` and `mrs` (its `protected` entry, as the event loop calls
    /// it): the reply, as the kernel would give it to the client (label, MR0 if any) and the
    /// invocations the call caused.
    fn call(&mut self, i: usize, label: u64, mrs: &[u64]) -> (u64, Option<u64>, Vec<Invocation>) {
        self.call_on(self.clients[i].channel, label, mrs)
    }
    fn call_on(
        &mut self,
        ch: Channel,
        label: u64,
        mrs: &[u64],
    ) -> (u64, Option<u64>, Vec<Invocation>) {
        self.sim.take_log();
        let mut k = self.sim.kernel();
        for (i, v) in mrs.iter().enumerate() {
            microkit_rt::Kernel::set_mr(&mut k, i, *v);
        }
        let reply = self
            .drv
            .protected(ch, MessageInfo::new(label, mrs.len()))
            .unwrap();
        let mr0 = (reply.length() > 0).then(|| microkit_rt::Kernel::mr(&k, 0));
        (reply.label(), mr0, self.sim.take_log())
    }
    fn set(&mut self, i: usize, ns: u64) -> Vec<Invocation> {
        let (label, mr0, log) = self.call(i, SET_TIMEOUT, &[ns]);
        assert_eq!((label, mr0), (0, None), "{log:?}");
        log
    }
    /// The timer fires at counter `now`: the clients notified (indices), and the log.
    fn fire(&mut self, now: u64) -> (Vec<usize>, Vec<Invocation>) {
        self.sim.take_log();
        self.sim.set_timer_now(now);
        self.sim.irq(TIMER_IRQ);
        self.el.step(&mut self.drv);
        let log = self.sim.take_log();
        let notified = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| log.contains(&Invocation::Notify(c.channel.index())))
            .map(|(i, _)| i)
            .collect();
        (notified, log)
    }
    fn clean(&self) {
        assert!(
            !self.sim.take_log().contains(&Invocation::TimerSet(None)),
            "the timer is never disabled"
        );
        assert!(
            self.sim.violations().is_empty(),
            "{:?}",
            self.sim.violations()
        );
    }
}

/// Ticks of `ns` at QEMU's 62.5 MHz (16 ns each).
const fn ticks(ns: u64) -> u64 {
    ns / 16
}

#[test]
fn the_client_table_is_read_from_system_xml() {
    assert_eq!(
        CLIENTS,
        [ClientConfig {
            name: "vmm",
            channel: system::VMM,
            calls: true
        }]
    );
    let scope = Sim::from_repo_system("timer_driver").scope();
    assert!(scope.maps.is_empty(), "it maps nothing");
    assert_eq!(scope.irqs.len(), 1);
    assert_eq!(scope.irqs[0].irq, 30);
    // Every VMM copy of a derived system is a client on a channel of its own.
    let t = table(&multivm(3));
    let names: Vec<_> = t.iter().map(|c| c.name).collect();
    assert_eq!(names, ["vmm", "vmm2", "vmm3"]);
    let mut chans: Vec<_> = t.iter().map(|c| c.channel).collect();
    chans.dedup();
    assert_eq!(chans.len(), 3);
    assert!(t.iter().all(|c| c.calls));
}

#[test]
fn at_start_the_timer_is_enabled_at_the_idle_compare_value() {
    let rig = Rig::new();
    let log = rig.sim.take_log();
    assert!(
        log.contains(&Invocation::TimerSet(Some(IDLE_COMPARE))),
        "{log:?}"
    );
    assert!(
        rig.sim
            .console()
            .contains("timer_driver: counter at 62500000 Hz, 1 client(s)")
    );
    rig.clean();
}

#[test]
fn get_time_answers_the_counter_in_ns() {
    let mut rig = Rig::new();
    rig.sim.set_timer_now(QEMU_VIRT_TIMER_HZ * 3 + 1);
    let (label, mr0, _) = rig.call(0, GET_TIME, &[]);
    assert_eq!((label, mr0), (0, Some(3_000_000_016)));
    // At another frequency.
    rig.sim.set_timer_now(1000);
    let mut other = Rig::with(
        {
            let s = Sim::from_repo_system("timer_driver");
            s.set_timer_frequency(1_000_000);
            s.set_timer_now(1000);
            s
        },
        CLIENTS,
    );
    let (label, mr0, _) = other.call(0, GET_TIME, &[]);
    assert_eq!((label, mr0), (0, Some(1_000_000)));
    rig.clean();
    other.clean();
}

#[test]
fn a_timeout_arms_the_timer_and_its_interrupt_notifies_the_client() {
    let mut rig = Rig::new();
    rig.sim.set_timer_now(1000);
    let log = rig.set(0, 1_000_000);
    assert!(
        log.contains(&Invocation::TimerSet(Some(1000 + ticks(1_000_000)))),
        "{log:?}"
    );
    assert!(!log.iter().any(|i| matches!(i, Invocation::Notify(_))));
    // An early interrupt (the count not there yet) notifies nobody and re-arms.
    let (n, log) = rig.fire(1000 + ticks(1_000_000) - 1);
    assert!(n.is_empty());
    assert!(log.contains(&Invocation::TimerSet(Some(1000 + ticks(1_000_000)))));
    // The IRQ is acknowledged with the next receive, after the compare value moved.
    let (_, log) = rig.fire(0);
    let irq_slot = microkit_rt::abi::slot::BASE_IRQ + TIMER_IRQ.index() as u64;
    assert!(
        matches!(log.first(), Some(Invocation::Signal { slot, .. }) if *slot == irq_slot),
        "{log:?}"
    );
    let (n, log) = rig.fire(1000 + ticks(1_000_000));
    assert_eq!(n, [0]);
    assert!(
        log.contains(&Invocation::TimerSet(Some(IDLE_COMPARE))),
        "{log:?}"
    );
    // Once: the next interrupt has nobody.
    let (n, _) = rig.fire(u64::MAX / 2);
    assert!(n.is_empty());
    assert_eq!(rig.drv.stats().notified, 1);
    rig.clean();
}

#[test]
fn a_timeout_already_due_is_notified_at_once() {
    let mut rig = Rig::new();
    rig.sim.set_timer_now(5);
    let log = rig.set(0, 0);
    assert!(log.contains(&Invocation::Notify(system::VMM.index())));
    assert_eq!(rig.drv.armed(), None);
    rig.clean();
}

#[test]
fn a_new_timeout_replaces_the_pending_one() {
    let mut rig = Rig::new();
    rig.set(0, 1_000_000);
    let log = rig.set(0, 16_000);
    assert!(log.contains(&Invocation::TimerSet(Some(1000))));
    let (n, _) = rig.fire(1000);
    assert_eq!(n, [0]);
    // The first timeout is gone: nothing at its deadline.
    let (n, _) = rig.fire(ticks(1_000_000));
    assert!(n.is_empty());
    rig.clean();
}

#[test]
fn the_earliest_of_several_clients_arms_the_timer_and_each_is_notified_at_its_own() {
    let mut rig = Rig::vmms(3);
    rig.set(0, 3_000);
    rig.set(1, 1_000);
    rig.set(2, 3_000);
    assert_eq!(rig.drv.armed(), Some(ticks(1_000) + 1));
    let (n, log) = rig.fire(ticks(1_000) + 1);
    assert_eq!(n, [1]);
    assert!(log.contains(&Invocation::TimerSet(Some(ticks(3_000) + 1))));
    let (n, _) = rig.fire(ticks(3_000) + 1);
    assert_eq!(n, [0, 2], "equal deadlines: both at once");
    assert_eq!(rig.drv.armed(), None);
    rig.clean();
}

#[test]
fn huge_timeouts_saturate_and_never_fire() {
    let mut rig = Rig::new();
    rig.sim.set_timer_now(u64::MAX - 10);
    let log = rig.set(0, u64::MAX);
    assert!(log.contains(&Invocation::TimerSet(Some(u64::MAX))));
    let (n, _) = rig.fire(u64::MAX - 1);
    assert!(n.is_empty());
    rig.clean();
}

#[test]
fn malformed_calls_get_an_error_reply_and_change_nothing() {
    let mut rig = Rig::new();
    rig.set(0, 1_000_000);
    let armed = rig.drv.armed();
    let (label, _, log) = rig.call(0, 7, &[1]);
    assert_eq!(label, error::ILLEGAL_OPERATION, "unknown label");
    assert!(log.is_empty());
    let (label, _, log) = rig.call(0, SET_TIMEOUT, &[]);
    assert_eq!(label, error::INVALID_ARGUMENT, "SET_TIMEOUT without MR0");
    assert!(log.is_empty());
    // A protected call on a channel that is no client's (the kernel would not deliver it; the
    // driver answers it anyway, with an error).
    let (label, _, _) = rig.call_on(Channel::new(9), SET_TIMEOUT, &[0]);
    assert_eq!(label, error::INVALID_CAPABILITY);
    // Through the event loop too: the reply goes back with the next receive.
    rig.sim.ppcall_from_peer(system::VMM, 42, &[]);
    rig.el.step(&mut rig.drv);
    // A client's notification: the protocol has none, ignored.
    rig.sim.notify_from_peer(system::VMM);
    rig.el.step(&mut rig.drv);
    assert!(rig.sim.take_log().contains(&Invocation::Reply {
        label: error::ILLEGAL_OPERATION,
        mrs: vec![]
    }));
    assert_eq!(rig.drv.armed(), armed);
    assert_eq!(rig.drv.stats().refused, 4);
    assert_eq!(rig.drv.stats().stray, 1);
    rig.clean();
}
