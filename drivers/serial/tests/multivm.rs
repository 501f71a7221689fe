//! serial_driver in the two-VM system `sdf::multivm` generates from system.xml (VMs `vmm` and
//! `vmm2`), in exactly the scope that system gives it: both VMMs are TX clients with their lines
//! prefixed, `vmm2` is an RX client on its second channel, and typed input goes to one console
//! at a time, switched with Ctrl-\ and a digit.

#[allow(dead_code)]
mod support;

use microkit_rt::event_loop::EventLoop;
use microkit_rt::{Channel, Kernel};
use microkit_sim::{Invocation, Sim, SimTransport};
use sddf_queue::SerialConsumer;
use serial_driver::{
    IRQ_CHANNEL, QueueMem, RX_CHANNEL, SWITCH_BYTE, SerialDriver, rx_clients_of, tx_clients_of,
};
use support::ModelUart;

fn two_vm_system() -> sdf::System {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system.xml");
    let base = std::fs::read_to_string(path).unwrap();
    let text = sdf::multivm::generate(&base, &["vmm", "vmm2"]).unwrap_or_else(|e| panic!("{e}"));
    sdf::parse(&text).unwrap()
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// A channel table (peer, channel) and a map table (region, size), as generated.
type Tables = (Vec<(&'static str, Channel)>, Vec<(&'static str, usize)>);

/// The scope's channel and map tables, as the generated constants would have them.
fn tables(sim: &Sim) -> Tables {
    let s = sim.scope();
    let peers = s
        .channels
        .iter()
        .map(|c| (leak(&c.peer), Channel::new(c.id as u8)))
        .collect();
    let maps = s
        .maps
        .iter()
        .map(|m| (leak(&m.mr), m.size as usize))
        .collect();
    (peers, maps)
}

/// The driver's RX queue of `queue`/`data` and the client's consumer over the same memory.
fn rx_queue(sim: &Sim, queue: &str, data: &str) -> (QueueMem<'static>, SerialConsumer<'static>) {
    let h = sim.region(queue).expect("mapped");
    let d = sim.region(data).expect("mapped");
    let (ch, cd) = (Sim::alias(&h), Sim::alias(&d));
    let client = QueueMem::from_regions(ch, cd).unwrap();
    let cap = client.data.len() as u32;
    (
        QueueMem::from_regions(h, d).unwrap(),
        SerialConsumer::new(client.header, client.data, cap).unwrap(),
    )
}

fn read_all(rx: &mut SerialConsumer<'static>) -> Vec<u8> {
    let mut out = vec![];
    while let Ok(Some(b)) = rx.dequeue_local() {
        out.push(b);
    }
    rx.publish();
    out
}

#[test]
fn both_vmms_are_clients_and_input_switches_between_their_consoles() {
    let sys = two_vm_system();
    let sim = Sim::new(&sys, "serial_driver").unwrap_or_else(|e| panic!("{e}"));
    let (peers, maps) = tables(&sim);
    // Both VMMs write (prefixed: two VMs), vmm2 once, on its first channel.
    let tx = tx_clients_of(&peers, &maps, &["vmm", "vmm2"]);
    let vmms: Vec<_> = tx.iter().filter(|d| d.name.starts_with("vmm")).collect();
    assert_eq!(vmms.len(), 2, "{tx:?}");
    assert!(vmms.iter().all(|d| d.prefixed));
    assert_eq!(vmms[1].queue_mr, "serial_tx_queue_vmm2");
    // vmm2 reads on its second channel.
    let rx = rx_clients_of(&peers, &maps);
    assert_eq!(rx.len(), 1);
    let vmm2 = rx[0];
    assert_eq!(
        (vmm2.name, vmm2.queue_mr, vmm2.data_mr),
        ("vmm2", "serial_rx_queue_vmm2", "serial_rx_data_vmm2")
    );
    let chans: Vec<Channel> = peers
        .iter()
        .filter(|p| p.0 == "vmm2")
        .map(|p| p.1)
        .collect();
    assert_eq!(chans.len(), 2);
    assert_eq!(vmm2.channel, chans[1]);
    assert_ne!(vmms[1].channel, vmm2.channel);

    let uart = ModelUart::default();
    let (drv_rx, mut rx_vmm) = rx_queue(&sim, "serial_rx_queue_vmm", "serial_rx_data_vmm");
    let (drv_rx2, mut rx_vmm2) = rx_queue(&sim, vmm2.queue_mr, vmm2.data_mr);
    let mut drv = SerialDriver::new(sim.kernel(), uart.clone(), [], Some(drv_rx));
    drv.add_rx_client(vmm2.name, vmm2.channel, Some(drv_rx2));
    let mut el: EventLoop<SimTransport> = sim.event_loop();
    el.start();
    macro_rules! typed {
        ($bytes:expr) => {{
            uart.with(|u| {
                u.receive($bytes);
                u.idle();
            });
            sim.take_log();
            sim.irq(IRQ_CHANNEL);
            el.step(&mut drv);
            sim.take_log()
        }};
    }
    // The vmm's console first.
    let log = typed!(b"ab");
    assert!(
        log.contains(&Invocation::Notify(RX_CHANNEL.index())),
        "{log:?}"
    );
    assert_eq!(read_all(&mut rx_vmm), b"ab");
    // Ctrl-\ 1: vmm2's, said on the UART; only vmm2 is told.
    let log = typed!(&[SWITCH_BYTE, b'1', b'c', b'd']);
    assert!(
        log.contains(&Invocation::Notify(vmm2.channel.index())),
        "{log:?}"
    );
    assert!(
        !log.contains(&Invocation::Notify(RX_CHANNEL.index())),
        "{log:?}"
    );
    assert_eq!(read_all(&mut rx_vmm2), b"cd");
    assert_eq!(read_all(&mut rx_vmm), b"");
    // Let the UART take the driver's lines (its start-up line first).
    for _ in 0..16 {
        uart.with(|u| u.transmit(64));
        sim.irq(IRQ_CHANNEL);
        el.step(&mut drv);
    }
    let said = uart.with(|u| String::from_utf8_lossy(&u.wire).into_owned());
    assert!(said.contains("serial_driver: input to vmm2"), "{said:?}");
    // Split across interrupts, and anything but a console number goes through as typed.
    typed!(&[SWITCH_BYTE]);
    typed!(b"x");
    typed!(&[SWITCH_BYTE, b'7']);
    assert_eq!(
        read_all(&mut rx_vmm2),
        [SWITCH_BYTE, b'x', SWITCH_BYTE, b'7']
    );
    // Back to the vmm's.
    typed!(&[SWITCH_BYTE, b'0', b'e']);
    assert_eq!(read_all(&mut rx_vmm), b"e");
    assert_eq!(drv.input_focus(), 0);
    assert_eq!(drv.stats().rx_dropped, 0);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    let _ = sim.kernel().has_debug_console();
}
