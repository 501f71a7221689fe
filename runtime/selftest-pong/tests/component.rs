//! selftest_pong driven through its Microkit interface, in its system.xml scope. The test reads
//! pong's messages as the serial driver does, from pong's TX queue.

use microkit_rt::abi::{MessageInfo, error, slot};
use microkit_sim::{Invocation, Sim};
use sddf_queue::SerialConsumer;
use selftest_pong::{Console, Pong, system};

/// The serial driver's end of pong's TX queue.
struct Out {
    rx: SerialConsumer<'static>,
    text: String,
}

impl Out {
    /// Everything pong printed so far.
    fn text(&mut self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.rx.dequeue_into(&mut buf).unwrap();
        self.text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        self.text.clone()
    }
}

/// The kernel calls other than the notifications of the serial driver, and how many of those.
fn calls(sim: &Sim) -> (Vec<Invocation>, usize) {
    let serial = Invocation::Notify(system::SERIAL_DRIVER.index());
    let log = sim.take_log();
    let n = log.iter().filter(|i| **i == serial).count();
    (log.into_iter().filter(|i| *i != serial).collect(), n)
}

fn setup() -> (
    Sim,
    Pong<microkit_sim::SimKernel>,
    microkit_rt::SharedRegion,
    Out,
) {
    let sim = Sim::from_repo_system("selftest_pong");
    let region = sim
        .region("selftest_shared")
        .expect("pong maps selftest_shared");
    let peer_view = Sim::alias(&region);
    let (console, out) = console(&sim);
    let pong = Pong::new(sim.kernel(), Ok(region), console);
    (sim, pong, peer_view, out)
}

/// Pong's console over its TX queue, and the serial driver's end of it.
fn console(sim: &Sim) -> (Console<'static>, Out) {
    let h = sim
        .region("serial_tx_queue_selftest_pong")
        .expect("pong maps its TX queue");
    let d = sim
        .region("serial_tx_data_selftest_pong")
        .expect("pong maps its TX data region");
    let (dh, dd) = (Sim::alias(&h), Sim::alias(&d));
    let console = Console::from_regions(system::SERIAL_DRIVER, Ok(h), Ok(d));
    assert_eq!(console.unusable(), None);
    let (h, d) = (
        dh.into_atomic_words().unwrap(),
        dd.into_atomic_bytes().unwrap(),
    );
    let out = Out {
        rx: SerialConsumer::new(h, d, d.len() as u32).unwrap(),
        text: String::new(),
    };
    (console, out)
}

#[test]
fn init_is_announced_through_the_serial_driver() {
    let (sim, pong, _, mut out) = setup();
    assert_eq!(out.text(), "selftest_pong: init\n");
    assert_eq!(calls(&sim), (vec![], 1));
    assert_eq!(sim.console(), "", "nothing on the debug console");
    assert_eq!(pong.console().stats().queued_lines, 1);
    let s = sim.scope();
    let serial = s
        .channels
        .iter()
        .find(|c| c.peer == "serial_driver")
        .expect("a channel to the serial driver");
    assert_eq!(system::SERIAL_DRIVER.index() as u64, serial.id);
    assert!(serial.may_notify && !serial.may_call && !serial.called_by_peer);
    assert_eq!(system::GRANTS.notifications, s.notification_mask());
}

#[test]
fn notification_answers_through_a_deferred_signal() {
    let (sim, mut pong, shared, mut out) = setup();
    shared.write(0, b"hello from ping\0").unwrap();
    let mut el = sim.event_loop();
    sim.notify_from_peer(system::SELFTEST_PING);
    el.step(&mut pong);
    assert_eq!(
        calls(&sim),
        (vec![], 3),
        "the notification of ping is deferred, not sent yet (only the serial driver's)"
    );
    let mut answer = [0u8; 16];
    shared.read(64, &mut answer).unwrap();
    assert_eq!(&answer, b"hello from pong\0");
    assert!(out.text().ends_with(
        "selftest_pong: notified by ping; shared memory says 'hello from ping'\n\
         selftest_pong: answered in shared memory, notifying ping (deferred)\n"
    ));
    // The next receive carries the signal (NBSendRecv) to ping's notification slot.
    sim.ppcall_from_peer(system::SELFTEST_PING, 1, &[1, 2]);
    el.step(&mut pong);
    let (log, _) = calls(&sim);
    assert_eq!(
        log[0],
        Invocation::Signal {
            slot: slot::BASE_OUTPUT_NOTIFICATION + 1,
            label: 0
        }
    );
    assert!(
        out.text()
            .ends_with("selftest_pong: protected call from ping: 1 + 2\n")
    );
}

#[test]
fn protected_add_replies_with_the_sum() {
    let (sim, mut pong, _, _) = setup();
    let mut el = sim.event_loop();
    sim.ppcall_from_peer(system::SELFTEST_PING, 1, &[20, 22]);
    sim.ppcall_from_peer(system::SELFTEST_PING, 1, &[u64::MAX, 2]);
    sim.notify_from_peer(system::SELFTEST_PING);
    el.step(&mut pong);
    el.step(&mut pong);
    el.step(&mut pong);
    let (log, _) = calls(&sim);
    assert_eq!(
        log[0],
        Invocation::Reply {
            label: 0,
            mrs: vec![42]
        }
    );
    assert_eq!(
        log[1],
        Invocation::Reply {
            label: 0,
            mrs: vec![1]
        },
        "wrapping add, no overflow panic"
    );
}

#[test]
fn malformed_calls_get_an_error_reply() {
    let (sim, mut pong, _, mut out) = setup();
    let mut el = sim.event_loop();
    sim.ppcall_from_peer(system::SELFTEST_PING, 1, &[5]); // too short
    sim.ppcall_from_peer(system::SELFTEST_PING, 9, &[1, 2]); // unknown label
    // A badge on a channel pong does not have: the loop must still reply, with an error.
    sim.raw_event(1 << 63 | 7, MessageInfo::new(1, 2), &[1, 2]);
    sim.notify_from_peer(system::SELFTEST_PING);
    for _ in 0..4 {
        el.step(&mut pong);
    }
    assert_eq!(
        out.text()
            .matches("selftest_pong: refused protected call")
            .count(),
        3
    );
    let (log, _) = calls(&sim);
    let replies: Vec<_> = log
        .iter()
        .filter(|i| matches!(i, Invocation::Reply { .. }))
        .collect();
    assert_eq!(replies.len(), 3);
    for r in replies {
        assert_eq!(
            *r,
            Invocation::Reply {
                label: error::INVALID_ARGUMENT,
                mrs: vec![]
            }
        );
    }
}

#[test]
fn pong_cannot_call_ping() {
    // pong's end has no pp: a call from pong is refused by the kernel and recorded.
    let sim = Sim::from_repo_system("selftest_pong");
    let mut k = sim.kernel();
    use microkit_rt::Kernel;
    assert!(
        k.ppcall(system::SELFTEST_PING, MessageInfo::new(1, 0))
            .is_err()
    );
    assert_eq!(sim.violations().len(), 1);
}

#[test]
fn a_handler_error_is_reported_through_the_serial_driver() {
    let sim = Sim::from_repo_system("selftest_pong");
    let (console, mut out) = console(&sim);
    let mut pong = Pong::new(
        sim.kernel(),
        Err(microkit_rt::RegionError::Unmapped),
        console,
    );
    let mut el = sim.event_loop();
    sim.notify_from_peer(system::SELFTEST_PING);
    el.step(&mut pong);
    let text = out.text();
    assert!(
        text.contains("selftest_pong: notified handler failed: "),
        "{text}"
    );
    assert_eq!(sim.console(), "", "nothing on the debug console");
}
