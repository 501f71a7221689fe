//! selftest_ping driven through its Microkit interface, with exactly the resources system.xml
//! gives it (channel to pong with pp, the shared region), against the simulated kernel.

use microkit_rt::abi::MessageInfo;
use microkit_sim::{Invocation, Sim};
use selftest_ping::{PONG_TEXT_OFFSET, Ping, read_text, system, write_text};

fn setup() -> (
    Sim,
    Ping<microkit_sim::SimKernel>,
    microkit_rt::SharedRegion,
) {
    let sim = Sim::from_repo_system("selftest_ping");
    let region = sim
        .region("selftest_shared")
        .expect("ping maps selftest_shared");
    let peer_view = Sim::alias(&region);
    let ping = Ping::new(sim.kernel(), Ok(region));
    (sim, ping, peer_view)
}

#[test]
fn scope_is_what_system_xml_grants() {
    let sim = Sim::from_repo_system("selftest_ping");
    let s = sim.scope();
    assert_eq!(s.channels.len(), 2);
    let v = &s.channels[1];
    assert_eq!(
        (
            v.id,
            v.peer.as_str(),
            v.may_notify,
            v.notified_by_peer,
            v.may_call,
            v.called_by_peer
        ),
        (1, "vmm", true, true, false, false)
    );
    let c = &s.channels[0];
    assert_eq!(
        (
            c.id,
            c.peer.as_str(),
            c.may_notify,
            c.may_call,
            c.called_by_peer
        ),
        (0, "selftest_pong", true, true, false)
    );
    assert_eq!(s.maps.len(), 1);
    assert_eq!(s.maps[0].setvar_vaddr.as_deref(), Some("shared_vaddr"));
    assert!(s.irqs.is_empty() && s.vm.is_none() && s.children.is_empty());
    // The generated constants agree with the scope and the grants the tool patches.
    assert_eq!(system::SELFTEST_PONG.index() as u64, c.id);
    assert_eq!(system::GRANTS.notifications, s.notification_mask());
    assert_eq!(system::GRANTS.pps, s.pp_mask());
    assert_eq!(system::map::selftest_shared::SIZE as u64, s.maps[0].size);
}

#[test]
fn init_writes_greeting_and_notifies_pong() {
    let (sim, _ping, shared) = setup();
    let mut text = [0u8; 63];
    let n = read_text(&shared, 0, &mut text).unwrap();
    assert_eq!(&text[..n], b"hello from ping");
    assert_eq!(sim.take_log(), vec![Invocation::Notify(0)]);
    assert!(sim.violations().is_empty());
}

#[test]
fn pong_answer_leads_to_protected_call_and_check() {
    let (sim, mut ping, shared) = setup();
    sim.take_log();
    write_text(&shared, PONG_TEXT_OFFSET, b"hello from pong").unwrap();
    sim.on_ppcall(|_, _, mrs| {
        mrs[0] += mrs[1];
        MessageInfo::new(0, 1)
    });
    let mut el = sim.event_loop();
    sim.notify_from_peer(system::SELFTEST_PONG);
    el.step(&mut ping);
    assert_eq!(
        sim.take_log(),
        vec![Invocation::PpCall {
            ch: 0,
            label: 1,
            mrs: vec![20, 22]
        }]
    );
    assert!(ping.passed, "console: {}", sim.console());
    assert!(sim.console().contains("selftest_ping: self-test passed"));
}

#[test]
fn a_wrong_reply_fails_the_self_test() {
    let (sim, mut ping, shared) = setup();
    write_text(&shared, PONG_TEXT_OFFSET, b"hello from pong").unwrap();
    sim.on_ppcall(|_, _, mrs| {
        mrs[0] = 41;
        MessageInfo::new(0, 1)
    });
    let mut el = sim.event_loop();
    sim.notify_from_peer(system::SELFTEST_PONG);
    el.step(&mut ping);
    assert!(!ping.passed);
    assert!(sim.console().contains("FAIL self-test"));
}

#[test]
fn missing_region_is_reported_not_a_panic() {
    let sim = Sim::from_repo_system("selftest_ping");
    let mut ping = Ping::new(sim.kernel(), Err(microkit_rt::RegionError::Unmapped));
    assert!(sim.console().contains("FAIL shared region unavailable"));
    let mut el = sim.event_loop();
    sim.notify_from_peer(system::SELFTEST_PONG);
    el.step(&mut ping);
    assert!(
        sim.console()
            .contains("notified handler failed: shared region not mapped")
    );
    assert!(
        sim.take_log().is_empty(),
        "no kernel call without the region"
    );
}

#[test]
#[should_panic(expected = "does not let the peer call")]
fn pong_may_not_call_ping() {
    // system.xml gives pp only to ping's end: the simulation refuses to deliver such a call.
    let sim = Sim::from_repo_system("selftest_ping");
    sim.ppcall_from_peer(system::SELFTEST_PONG, 1, &[1, 2]);
}

#[test]
fn a_notification_from_the_vmm_is_answered() {
    let (sim, mut ping, _) = setup();
    sim.take_log();
    let mut el = sim.event_loop();
    sim.notify_from_peer(system::VMM);
    el.step(&mut ping);
    assert_eq!(sim.take_log(), vec![Invocation::Notify(1)]);
    assert!(
        sim.console()
            .contains("selftest_ping: notified by vmm; notifying it back")
    );
    assert!(!sim.console().contains("unexpected notification"));
}
