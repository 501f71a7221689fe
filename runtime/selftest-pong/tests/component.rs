//! selftest_pong driven through its Microkit interface, in its system.xml scope.

use microkit_rt::abi::{MessageInfo, error, slot};
use microkit_sim::{Invocation, Sim};
use selftest_pong::{Pong, system};

fn setup() -> (
    Sim,
    Pong<microkit_sim::SimKernel>,
    microkit_rt::SharedRegion,
) {
    let sim = Sim::from_repo_system("selftest_pong");
    let region = sim
        .region("selftest_shared")
        .expect("pong maps selftest_shared");
    let peer_view = Sim::alias(&region);
    let pong = Pong::new(sim.kernel(), Ok(region));
    (sim, pong, peer_view)
}

#[test]
fn notification_answers_through_a_deferred_signal() {
    let (sim, mut pong, shared) = setup();
    shared.write(0, b"hello from ping\0").unwrap();
    let mut el = sim.event_loop();
    sim.notify_from_peer(system::SELFTEST_PING);
    el.step(&mut pong);
    assert!(
        sim.take_log().is_empty(),
        "the notification is deferred, not sent yet"
    );
    let mut answer = [0u8; 16];
    shared.read(64, &mut answer).unwrap();
    assert_eq!(&answer, b"hello from pong\0");
    assert!(
        sim.console()
            .contains("shared memory says 'hello from ping'")
    );
    // The next receive carries the signal (NBSendRecv) to ping's notification slot.
    sim.ppcall_from_peer(system::SELFTEST_PING, 1, &[1, 2]);
    el.step(&mut pong);
    let log = sim.take_log();
    assert_eq!(
        log[0],
        Invocation::Signal {
            slot: slot::BASE_OUTPUT_NOTIFICATION + 1,
            label: 0
        }
    );
}

#[test]
fn protected_add_replies_with_the_sum() {
    let (sim, mut pong, _) = setup();
    let mut el = sim.event_loop();
    sim.ppcall_from_peer(system::SELFTEST_PING, 1, &[20, 22]);
    sim.ppcall_from_peer(system::SELFTEST_PING, 1, &[u64::MAX, 2]);
    sim.notify_from_peer(system::SELFTEST_PING);
    el.step(&mut pong);
    el.step(&mut pong);
    el.step(&mut pong);
    let log = sim.take_log();
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
    let (sim, mut pong, _) = setup();
    let mut el = sim.event_loop();
    sim.ppcall_from_peer(system::SELFTEST_PING, 1, &[5]); // too short
    sim.ppcall_from_peer(system::SELFTEST_PING, 9, &[1, 2]); // unknown label
    // A badge on a channel pong does not have: the loop must still reply, with an error.
    sim.raw_event(1 << 63 | 7, MessageInfo::new(1, 2), &[1, 2]);
    sim.notify_from_peer(system::SELFTEST_PING);
    for _ in 0..4 {
        el.step(&mut pong);
    }
    let log = sim.take_log();
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
