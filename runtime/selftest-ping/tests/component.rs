//! selftest_ping driven through its Microkit interface, with exactly the resources system.xml
//! gives it (channel to pong with pp, the shared region, its serial TX queue and the channel to
//! the serial driver), against the simulated kernel. The test reads ping's messages as the
//! serial driver does, from the TX queue.

use microkit_rt::abi::MessageInfo;
use microkit_sim::{Invocation, Sim};
use sddf_queue::SerialConsumer;
use selftest_ping::{Console, PONG_TEXT_OFFSET, Ping, read_text, system, write_text};

/// The serial driver's end of ping's TX queue.
struct Out {
    rx: SerialConsumer<'static>,
    text: String,
}

impl Out {
    /// Everything ping printed so far.
    fn text(&mut self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.rx.dequeue_into(&mut buf).unwrap();
        self.text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        self.text.clone()
    }
}

/// Ping's console over its TX queue, and the driver's end of it.
fn console(sim: &Sim) -> (Console<'static>, Out) {
    let h = sim
        .region("serial_tx_queue_selftest_ping")
        .expect("ping maps its TX queue");
    let d = sim
        .region("serial_tx_data_selftest_ping")
        .expect("ping maps its TX data region");
    let (dh, dd) = (Sim::alias(&h), Sim::alias(&d));
    let c = Console::from_regions(system::SERIAL_DRIVER, Ok(h), Ok(d));
    assert_eq!(c.unusable(), None);
    let (h, d) = (
        dh.into_atomic_words().unwrap(),
        dd.into_atomic_bytes().unwrap(),
    );
    let rx = SerialConsumer::new(h, d, d.len() as u32).unwrap();
    (
        c,
        Out {
            rx,
            text: String::new(),
        },
    )
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
    Ping<microkit_sim::SimKernel>,
    microkit_rt::SharedRegion,
    Out,
) {
    let sim = Sim::from_repo_system("selftest_ping");
    let region = sim
        .region("selftest_shared")
        .expect("ping maps selftest_shared");
    let peer_view = Sim::alias(&region);
    let (c, out) = console(&sim);
    let ping = Ping::new(sim.kernel(), Ok(region), c);
    (sim, ping, peer_view, out)
}

#[test]
fn scope_is_what_system_xml_grants() {
    let sim = Sim::from_repo_system("selftest_ping");
    let s = sim.scope();
    assert_eq!(s.channels.len(), 3);
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
    let serial = &s.channels[2];
    assert_eq!(
        (
            serial.id,
            serial.peer.as_str(),
            serial.may_notify,
            serial.notified_by_peer,
            serial.may_call,
            serial.called_by_peer
        ),
        (2, "serial_driver", true, true, false, false)
    );
    assert_eq!(system::SERIAL_DRIVER.index() as u64, serial.id);
    assert_eq!(s.maps.len(), 3);
    assert_eq!(s.maps[0].setvar_vaddr.as_deref(), Some("shared_vaddr"));
    for (m, sym) in s.maps[1..]
        .iter()
        .zip(["serial_tx_queue_vaddr", "serial_tx_data_vaddr"])
    {
        assert_eq!(m.setvar_vaddr.as_deref(), Some(sym));
        assert!(m.perms.read && m.perms.write && !m.perms.execute);
    }
    assert!(s.irqs.is_empty() && s.vm.is_none() && s.children.is_empty());
    // The generated constants agree with the scope and the grants the tool patches.
    assert_eq!(system::SELFTEST_PONG.index() as u64, c.id);
    assert_eq!(system::GRANTS.notifications, s.notification_mask());
    assert_eq!(system::GRANTS.pps, s.pp_mask());
    assert_eq!(system::map::selftest_shared::SIZE as u64, s.maps[0].size);
}

#[test]
fn init_writes_greeting_and_notifies_pong() {
    let (sim, ping, shared, mut out) = setup();
    let mut text = [0u8; 63];
    let n = read_text(&shared, 0, &mut text).unwrap();
    assert_eq!(&text[..n], b"hello from ping");
    assert_eq!(calls(&sim), (vec![Invocation::Notify(0)], 1));
    assert_eq!(
        out.text(),
        "selftest_ping: init, wrote shared memory, notifying pong\n"
    );
    assert_eq!(sim.console(), "", "nothing on the debug console");
    assert_eq!(ping.console().stats().queued_lines, 1);
    assert!(sim.violations().is_empty());
}

#[test]
fn pong_answer_leads_to_protected_call_and_check() {
    let (sim, mut ping, shared, mut out) = setup();
    sim.take_log();
    write_text(&shared, PONG_TEXT_OFFSET, b"hello from pong").unwrap();
    sim.on_ppcall(|_, _, mrs| {
        mrs[0] += mrs[1];
        MessageInfo::new(0, 1)
    });
    let mut el = sim.event_loop();
    sim.notify_from_peer(system::SELFTEST_PONG);
    el.step(&mut ping);
    let (log, lines) = calls(&sim);
    assert_eq!(
        log,
        vec![Invocation::PpCall {
            ch: 0,
            label: 1,
            mrs: vec![20, 22]
        }]
    );
    let text = out.text();
    assert!(ping.passed, "console: {text}");
    assert!(text.ends_with(
        "selftest_ping: notified by pong; shared memory says 'hello from pong'\n\
         selftest_ping: protected call returned 42 (label 0, length 1)\n\
         selftest_ping: self-test passed\n"
    ));
    assert_eq!(lines, 3, "one notification of the serial driver per line");
}

#[test]
fn a_wrong_reply_fails_the_self_test() {
    let (sim, mut ping, shared, mut out) = setup();
    write_text(&shared, PONG_TEXT_OFFSET, b"hello from pong").unwrap();
    sim.on_ppcall(|_, _, mrs| {
        mrs[0] = 41;
        MessageInfo::new(0, 1)
    });
    let mut el = sim.event_loop();
    sim.notify_from_peer(system::SELFTEST_PONG);
    el.step(&mut ping);
    assert!(!ping.passed);
    assert!(out.text().contains("selftest_ping: FAIL self-test"));
}

#[test]
fn missing_region_is_reported_not_a_panic() {
    let sim = Sim::from_repo_system("selftest_ping");
    let (c, mut out) = console(&sim);
    let mut ping = Ping::new(sim.kernel(), Err(microkit_rt::RegionError::Unmapped), c);
    assert!(
        out.text()
            .contains("selftest_ping: FAIL shared region unavailable")
    );
    let mut el = sim.event_loop();
    sim.notify_from_peer(system::SELFTEST_PONG);
    el.step(&mut ping);
    // The event loop hands the error to ping's own output: its TX queue, not the debug console.
    assert!(
        out.text()
            .contains("selftest_ping: notified handler failed: shared region not mapped")
    );
    assert!(!sim.console().contains("handler failed"));
    assert!(
        calls(&sim).0.is_empty(),
        "no kernel call but the console's without the region"
    );
}

#[test]
fn without_its_queue_ping_prints_on_the_debug_console() {
    let sim = Sim::from_repo_system("selftest_ping");
    let region = sim.region("selftest_shared").unwrap();
    let _ping = Ping::new(sim.kernel(), Ok(region), Console::debug_only());
    assert_eq!(
        sim.console(),
        "selftest_ping: init, wrote shared memory, notifying pong\n"
    );
    assert_eq!(calls(&sim), (vec![Invocation::Notify(0)], 0));
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
    let (sim, mut ping, _, mut out) = setup();
    sim.take_log();
    let mut el = sim.event_loop();
    sim.notify_from_peer(system::VMM);
    el.step(&mut ping);
    assert_eq!(calls(&sim), (vec![Invocation::Notify(1)], 1));
    let text = out.text();
    assert!(text.ends_with("selftest_ping: notified by vmm; notifying it back\n"));
    assert!(!text.contains("unexpected notification"));
}
