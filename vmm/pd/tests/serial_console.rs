//! The guest console through the serial driver domain: with the TX queue system.xml maps, the
//! bytes the guest writes to its PL011 go into the sDDF serial queue (read here as the driver
//! would), the driver is notified once per line, and nothing goes to the debug console.

mod common;

use common::*;
use microkit_sim::{Invocation, Sim};
use sddf_queue::serial::SerialConsumer;
use vmm::Vmm;

#[test]
fn guest_console_bytes_go_to_the_serial_tx_queue() {
    let sim = Sim::from_repo_system("vmm");
    let ram = sim.region("guest_ram").unwrap();
    let wp = sim.region("guest_wp_page").unwrap();
    let header = sim
        .region("serial_tx_queue_vmm")
        .expect("vmm maps the TX queue");
    let data = sim
        .region("serial_tx_data_vmm")
        .expect("vmm maps the TX data");
    let (driver_header, driver_data) = (Sim::alias(&header), Sim::alias(&data));
    let (ram_view, wp_view) = (Sim::alias(&ram), Sim::alias(&wp));
    let vmm =
        Vmm::new(sim.kernel(), Ok(ram), Ok(wp), blobs()).with_serial_console(Ok(header), Ok(data));
    let el = sim.event_loop();
    let mut h = Harness {
        sim,
        vmm,
        el,
        ram: ram_view,
        wp: wp_view,
    };
    h.sim.take_log();
    h.sim.with_vcpu(0, |v| v.context = guest_context());

    let mut logs = vec![];
    for &b in b"hi\n" {
        logs.push(h.store(PC0, PL011, 0, 1, u64::from(b)));
    }
    let notifies =
        |log: &Vec<Invocation>| log.iter().filter(|i| **i == Invocation::Notify(1)).count();
    assert_eq!(
        logs.iter().map(notifies).collect::<Vec<_>>(),
        [0, 0, 1],
        "one notify, at the newline"
    );
    assert!(
        !h.sim.console().contains("hi"),
        "nothing on the debug console: {}",
        h.sim.console()
    );

    let words = driver_header.into_atomic_words().unwrap();
    let bytes = driver_data.into_atomic_bytes().unwrap();
    let mut rx = SerialConsumer::new(words, bytes, bytes.len() as u32).unwrap();
    let mut got = [0u8; 8];
    let n = rx.dequeue_into(&mut got).unwrap();
    assert_eq!(&got[..n], b"hi\n");
}

#[test]
fn without_the_queue_the_console_stays_on_the_debug_console() {
    let mut h = Harness::running();
    for &b in b"ok\n" {
        h.store(PC0, PL011, 0, 1, u64::from(b));
    }
    assert!(h.sim.console().contains("ok\n"));
    assert!(h.sim.take_log().iter().all(|i| *i != Invocation::Notify(1)));
}
