//! The client writer in a real client's scope: `selftest_ping` as system.xml gives it (its TX
//! queue regions and its channel to `serial_driver`), over the simulated kernel; the test plays
//! the driver with `sddf-queue`'s consumer over aliases of the same regions.

use microkit_rt::{Channel, RegionError};
use microkit_sim::{Invocation, Sim};
use sddf_queue::SerialConsumer;
use sddf_queue::sync::Ordering;
use serial_client::{Console, LINE_MAX, Unusable, serial_println};
use std::sync::atomic::{AtomicU8, AtomicU32};

const PD: &str = "selftest_ping";
const HEADER: &str = "serial_tx_queue_selftest_ping";
const DATA: &str = "serial_tx_data_selftest_ping";
/// `serial_queue_t` words.
const TAIL: usize = 0;
const HEAD: usize = 1;
const SIGNALLED: usize = 2;

/// The channel system.xml gives `selftest_ping` to `serial_driver`.
fn channel(sim: &Sim) -> Channel {
    let c = sim
        .scope()
        .channels
        .iter()
        .find(|c| c.peer == "serial_driver")
        .map(|c| c.id)
        .expect("selftest_ping has a channel to serial_driver");
    Channel::try_new(c).unwrap()
}

struct Rig {
    sim: Sim,
    k: microkit_sim::SimKernel,
    console: Console<'static>,
    /// The driver's side.
    rx: SerialConsumer<'static>,
    header: &'static [AtomicU32],
    capacity: usize,
}

impl Rig {
    fn new() -> Rig {
        let sim = Sim::from_repo_system(PD);
        let h = sim.region(HEADER).expect("ping maps its TX queue header");
        let d = sim.region(DATA).expect("ping maps its TX data region");
        let (dh, dd) = (Sim::alias(&h), Sim::alias(&d));
        let console = Console::from_regions(channel(&sim), Ok(h), Ok(d));
        assert_eq!(console.unusable(), None);
        let header = dh.into_atomic_words().unwrap();
        let data: &'static [AtomicU8] = dd.into_atomic_bytes().unwrap();
        let capacity = data.len();
        let rx = SerialConsumer::new(header, data, capacity as u32).unwrap();
        Rig {
            k: sim.kernel(),
            sim,
            console,
            rx,
            header,
            capacity,
        }
    }

    /// Everything the driver can read now.
    fn drain(&mut self) -> Vec<u8> {
        let mut buf = vec![0; self.capacity];
        let n = self.rx.dequeue_into(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn notifies(&self) -> usize {
        let ch = channel(&self.sim).index();
        self.sim
            .take_log()
            .iter()
            .filter(|i| **i == Invocation::Notify(ch))
            .count()
    }
}

#[test]
fn lines_are_published_whole_with_one_notification_each() {
    let mut r = Rig::new();
    r.console.write_bytes(&mut r.k, b"selftest_ping: in");
    assert!(r.drain().is_empty(), "nothing before the newline");
    assert_eq!(r.notifies(), 0);
    r.console.write_bytes(&mut r.k, b"it\nsecond ");
    assert_eq!(r.drain(), b"selftest_ping: init\n");
    assert_eq!(r.notifies(), 1);
    serial_println!(r.console, r.k, "line {} of {}", 2, 2);
    assert_eq!(r.drain(), b"second line 2 of 2\n");
    assert_eq!(r.notifies(), 1);
    assert_eq!(r.console.stats().queued_lines, 2);
    assert!(r.sim.console().is_empty(), "nothing on the debug console");
    assert!(r.sim.violations().is_empty());
}

#[test]
fn the_client_never_asks_for_a_signal() {
    let r = Rig::new();
    // 0 = "signal me" (the initial value of a zeroed region); the client withdrew it.
    assert_eq!(r.header[SIGNALLED].load(Ordering::Relaxed), 1);
}

#[test]
fn a_line_that_does_not_fit_is_dropped_whole() {
    let mut r = Rig::new();
    // Fill the queue to 10 bytes short of full, in lines the driver has not taken yet.
    let filler = vec![b'x'; r.capacity - 11];
    r.console.write_bytes(&mut r.k, &filler);
    r.console.write_bytes(&mut r.k, b"\n");
    assert_eq!(
        r.console.stats().queued_lines,
        16,
        "LINE_MAX pieces + the rest"
    );
    r.console.write_bytes(&mut r.k, b"0123456789abcdef\n");
    let s = r.console.stats();
    assert_eq!((s.queued_lines, s.dropped_lines), (16, 1));
    r.console.write_bytes(&mut r.k, b"012345678\n");
    assert_eq!(r.console.stats().queued_lines, 17, "exactly fits");
    let got = r.drain();
    assert_eq!(got.len(), r.capacity);
    assert!(
        got.ends_with(b"x\n012345678\n"),
        "no piece of the dropped line"
    );
    r.console.write_bytes(&mut r.k, b"after\n");
    assert_eq!(
        r.drain(),
        b"after\n",
        "space is reused once the driver took it"
    );
    assert!(r.sim.console().is_empty());
}

#[test]
fn an_overlong_line_goes_out_in_buffer_sized_pieces() {
    let mut r = Rig::new();
    let long: Vec<u8> = (0..LINE_MAX + 10).map(|i| b'a' + (i % 26) as u8).collect();
    r.console.write_bytes(&mut r.k, &long);
    assert_eq!(r.drain(), &long[..LINE_MAX], "a full buffer goes out");
    r.console.flush(&mut r.k);
    assert_eq!(r.drain(), &long[LINE_MAX..], "flush sends the partial line");
    r.console.flush(&mut r.k);
    assert_eq!(
        r.console.stats().queued_lines,
        2,
        "an empty flush sends nothing"
    );
    assert_eq!(r.notifies(), 2);
}

#[test]
fn without_the_regions_lines_go_to_the_debug_console() {
    let sim = Sim::from_repo_system(PD);
    let mut k = sim.kernel();
    let mut c = Console::from_regions(
        channel(&sim),
        Err(RegionError::Unmapped),
        Ok(sim.region(DATA).unwrap()),
    );
    assert_eq!(c.unusable(), Some(Unusable::Region(RegionError::Unmapped)));
    serial_println!(c, k, "selftest_ping: {}", "fallback");
    assert_eq!(sim.console(), "selftest_ping: fallback\n");
    assert!(sim.take_log().is_empty(), "no notification");
    let mut d = Console::debug_only();
    serial_println!(d, k, "x");
    assert_eq!(d.stats().debug_lines, 1);
    assert_eq!(d.unusable(), Some(Unusable::NoQueue));
}

#[test]
fn garbage_indices_at_attach_mean_the_debug_console() {
    let sim = Sim::from_repo_system(PD);
    let h = sim.region(HEADER).unwrap();
    h.write_u32(4 * HEAD, 0x8000_0000).unwrap();
    let mut c = Console::from_regions(channel(&sim), Ok(h), Ok(sim.region(DATA).unwrap()));
    assert!(matches!(c.unusable(), Some(Unusable::Setup(_))));
    let mut k = sim.kernel();
    serial_println!(c, k, "still said");
    assert_eq!(sim.console(), "still said\n");
}

#[test]
fn corrupt_indices_send_the_line_to_the_debug_console_without_a_panic() {
    let mut r = Rig::new();
    serial_println!(r.console, r.k, "one");
    // The driver's head jumps beyond the tail.
    let tail = r.header[TAIL].load(Ordering::Relaxed);
    r.header[HEAD].store(tail.wrapping_add(100), Ordering::Relaxed);
    serial_println!(r.console, r.k, "two");
    let s = r.console.stats();
    assert_eq!((s.queue_errors, s.debug_lines, s.queued_lines), (1, 1, 1));
    assert_eq!(r.sim.console(), "two\n");
    // Repaired: back to the queue.
    r.header[HEAD].store(tail.wrapping_sub(4), Ordering::Relaxed);
    serial_println!(r.console, r.k, "three");
    assert_eq!(r.console.stats().queued_lines, 2);
    assert_eq!(r.sim.console(), "two\n");
}

#[test]
fn a_failed_notification_is_counted() {
    let sim = Sim::from_repo_system(PD);
    let h = sim.region(HEADER).unwrap();
    let d = sim.region(DATA).unwrap();
    // Channel 9 is not ping's: the simulated kernel refuses it (and records a violation).
    let mut c = Console::from_regions(Channel::new(9), Ok(h), Ok(d));
    let mut k = sim.kernel();
    serial_println!(c, k, "x");
    assert_eq!(c.stats().notify_errors, 1);
    assert_eq!(sim.violations().len(), 1);
}
