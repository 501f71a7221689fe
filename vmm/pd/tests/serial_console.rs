//! The guest console through the serial driver domain: with the TX queue system.xml maps, the
//! bytes the guest writes to its PL011 go into the sDDF serial queue (read here as the driver
//! would), the driver is notified once per line, and nothing goes to the debug console.

mod common;

use common::*;
use microkit_rt::{MessageInfo, SharedRegion};
use microkit_sim::{Invocation, Sim};
use sddf_queue::serial::SerialConsumer;
use vmm::Vmm;

/// The VMM's serial TX queue as system.xml maps it (header and data regions), and the serial
/// driver's end of it (what reaches the UART).
fn tx_queue(sim: &Sim) -> (SharedRegion, SharedRegion, SerialConsumer<'static>) {
    let header = sim
        .region("serial_tx_queue_vmm")
        .expect("vmm maps the TX queue");
    let data = sim
        .region("serial_tx_data_vmm")
        .expect("vmm maps the TX data");
    let words = Sim::alias(&header).into_atomic_words().unwrap();
    let bytes = Sim::alias(&data).into_atomic_bytes().unwrap();
    let driver_end = SerialConsumer::new(words, bytes, bytes.len() as u32).unwrap();
    (header, data, driver_end)
}

/// Everything the serial driver finds in its end of the queue, as text.
fn drain(tx: &mut SerialConsumer<'static>) -> String {
    let mut got = vec![0u8; 4096];
    let n = tx.dequeue_into(&mut got).unwrap();
    String::from_utf8(got[..n].to_vec()).unwrap()
}

#[test]
fn guest_console_bytes_go_to_the_serial_tx_queue() {
    let sim = Sim::from_repo_system("vmm");
    let ram = sim.region("guest_ram").unwrap();
    let wp = sim.region("guest_wp_page").unwrap();
    let (header, data, mut rx) = tx_queue(&sim);
    let (ram_view, wp_view) = (Sim::alias(&ram), Sim::alias(&wp));
    let vmm =
        Vmm::new(sim.kernel(), Ok(ram), Ok(wp), blobs()).with_serial_console(Ok(header), Ok(data));
    let mut h = Harness::running_with(sim, vmm, ram_view, wp_view);

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

    assert_eq!(drain(&mut rx), "hi\n");
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

/// The VMM with both serial queues attached, and the serial driver's ends of them.
struct SerialRig {
    h: Harness,
    /// The driver's TX consumer (what reaches the UART).
    tx: SerialConsumer<'static>,
    /// The driver's RX producer (what the UART received).
    rx: sddf_queue::serial::SerialProducer<'static>,
}

fn serial_rig() -> SerialRig {
    let sim = Sim::from_repo_system("vmm");
    let ram = sim.region("guest_ram").unwrap();
    let wp = sim.region("guest_wp_page").unwrap();
    let (txh, txd, tx) = tx_queue(&sim);
    let (rxh, rxd) = (
        sim.region("serial_rx_queue_vmm").unwrap(),
        sim.region("serial_rx_data_vmm").unwrap(),
    );
    let words = |x: &SharedRegion| Sim::alias(x).into_atomic_words().unwrap();
    let bytes = |x: &SharedRegion| Sim::alias(x).into_atomic_bytes().unwrap();
    let rx = sddf_queue::serial::SerialProducer::new(words(&rxh), bytes(&rxd), rxd.size() as u32)
        .unwrap();
    let (ram_view, wp_view) = (Sim::alias(&ram), Sim::alias(&wp));
    let vmm = Vmm::new(sim.kernel(), Ok(ram), Ok(wp), blobs())
        .with_serial_console(Ok(txh), Ok(txd))
        .with_serial_input(Ok(rxh), Ok(rxd));
    let h = Harness::running_with(sim, vmm, ram_view, wp_view);
    SerialRig { h, tx, rx }
}

impl SerialRig {
    /// The serial driver receives `bytes` and notifies the VMM on the RX channel.
    fn receive(&mut self, bytes: &[u8]) -> Vec<Invocation> {
        for &b in bytes {
            self.rx.enqueue(b).unwrap();
        }
        self.h.sim.notify_from_peer(vmm::system::SERIAL_DRIVER_2);
        self.h.el.step(&mut self.h.vmm);
        self.h.sim.take_log()
    }
    fn load32(&mut self, addr: u64) -> u32 {
        self.h.load(PC0, addr, 2, 2);
        self.h.x(2) as u32
    }
    fn sent(&mut self) -> Vec<u8> {
        let mut got = [0u8; 256];
        let n = self.tx.dequeue_into(&mut got).unwrap();
        got[..n].to_vec()
    }
}

const FR: u64 = PL011 + 0x18;
const RXFE: u32 = 1 << 4;

#[test]
fn console_input_reaches_the_pl011_fifo_and_raises_its_interrupt_when_unmasked() {
    let mut r = serial_rig();
    assert_eq!(r.load32(FR) & RXFE, RXFE, "nothing received yet");
    // The guest enables the distributor, SPI 1 (INTID 33) and the PL011's RX interrupt.
    r.h.store(PC0, GICD, 2, 1, 1);
    r.h.store(PC0, GICD + 0x104, 2, 1, 1 << 1);
    r.h.store(PC0, GICD + 0x820, 2, 1, 1 << 8);
    r.h.store(PC0, PL011 + 0x38, 2, 1, 1 << 4);
    let log = r.receive(b"ok\r");
    let inj: Vec<_> = log
        .iter()
        .filter(|i| matches!(i, Invocation::VcpuInjectIrq { virq: 33, .. }))
        .collect();
    assert_eq!(inj.len(), 1, "one edge of the level line: {log:?}");
    assert_eq!(r.load32(PL011 + 0x40), 1 << 4, "MIS: RX");
    let mut got = vec![];
    while r.load32(FR) & RXFE == 0 {
        got.push(r.load32(PL011) as u8);
        assert!(got.len() <= 3, "the FIFO holds what was received, no more");
    }
    assert_eq!(got, b"ok\r");
    assert_eq!(
        r.load32(PL011 + 0x40),
        0,
        "the line fell with the FIFO empty"
    );
}

#[test]
fn input_beyond_the_fifo_waits_in_the_queue_and_nothing_is_lost() {
    let mut r = serial_rig();
    let input: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
    r.receive(&input);
    let mut got = vec![];
    for _ in 0..200 {
        if r.load32(FR) & RXFE != 0 {
            break;
        }
        got.push(r.load32(PL011) as u8);
    }
    assert_eq!(
        got, input,
        "every byte, in order, refilled from the queue as the guest reads"
    );
}

const VCON: u64 = 0x0a00_3c00;
const DESC: u64 = 0x4100_0000;
const AVAIL: u64 = 0x4100_1000;
const USED: u64 = 0x4100_2000;
const BUF: u64 = 0x4100_3000;
/// The receiveq's rings and buffer.
const RX_DESC: u64 = 0x4100_4000;
const RX_AVAIL: u64 = 0x4100_5000;
const RX_USED: u64 = 0x4100_6000;
const RX_BUF: u64 = 0x4100_7000;

impl SerialRig {
    fn vcon_write(&mut self, off: u64, v: u64) {
        self.h.store(PC0, VCON + off, 2, 1, v);
    }
    fn put(&self, gpa: u64, b: &[u8]) {
        self.h.ram.write((gpa - RAM_GPA) as usize, b).unwrap();
    }
    fn get16(&self, gpa: u64) -> u16 {
        let mut v = [0u8; 2];
        self.h.ram.read((gpa - RAM_GPA) as usize, &mut v).unwrap();
        u16::from_le_bytes(v)
    }
    /// Sets queue `q` up with 4 entries at these rings.
    fn vcon_queue(&mut self, q: u64, desc: u64, avail: u64, used: u64) {
        self.vcon_write(0x30, q);
        self.vcon_write(0x38, 4);
        for (reg, addr) in [(0x80, desc), (0x90, avail), (0xa0, used)] {
            self.vcon_write(reg, addr);
        }
        self.vcon_write(0x44, 1);
    }
    /// A guest driver brings the virtio console up as Linux's does: both queues, one 64-byte
    /// receive buffer posted.
    fn vcon_up(&mut self) {
        assert_eq!(self.load32(VCON), 0x7472_6976);
        assert_eq!(self.load32(VCON + 8), 3, "console");
        for s in [0, 1, 3] {
            self.vcon_write(0x70, s);
        }
        self.vcon_write(0x24, 1);
        self.vcon_write(0x20, 1);
        self.vcon_write(0x70, 0xb);
        self.vcon_queue(0, RX_DESC, RX_AVAIL, RX_USED);
        self.vcon_queue(1, DESC, AVAIL, USED);
        self.vcon_write(0x70, 0xf);
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&RX_BUF.to_le_bytes());
        d[8..12].copy_from_slice(&64u32.to_le_bytes());
        d[12..14].copy_from_slice(&2u16.to_le_bytes()); // VIRTQ_DESC_F_WRITE
        self.put(RX_DESC, &d);
        self.put(RX_AVAIL + 4, &[0, 0]);
        self.put(RX_AVAIL + 2, &[1, 0]);
        self.vcon_write(0x50, 0);
    }
    /// The guest sends `msg` on the virtio console's transmitq (its `n`-th chain).
    fn vcon_send(&mut self, msg: &[u8], n: u16) -> Vec<Invocation> {
        self.put(BUF, msg);
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&BUF.to_le_bytes());
        d[8..12].copy_from_slice(&(msg.len() as u32).to_le_bytes());
        self.put(DESC, &d);
        self.put(AVAIL + 4 + 2 * u64::from(n % 4), &[0, 0]);
        self.put(AVAIL + 2, &(n + 1).to_le_bytes());
        self.h.store(PC0, VCON + 0x50, 2, 1, 1)
    }
}

#[test]
fn the_virtio_console_sends_the_guests_bytes_to_the_serial_tx_queue() {
    let mut r = serial_rig();
    r.vcon_up();
    let msg = b"hello over virtio\n";
    let log = r.vcon_send(msg, 0);
    assert!(
        log.contains(&Invocation::Notify(1)),
        "the serial driver is told: {log:?}"
    );
    assert_eq!(r.sent(), msg);
    assert_eq!(r.get16(USED + 2), 1, "the chain is returned");
}

#[test]
fn input_goes_to_the_console_the_guest_wrote_to_last() {
    let mut r = serial_rig();
    // Linux with virtio_console loaded: a receive buffer is posted on hvc0, but the shell
    // prompts on the PL011 (ttyAMA0): typed bytes belong there.
    r.vcon_up();
    r.write(b"linux$ ");
    r.receive(b"a");
    assert_eq!(r.load32(FR) & RXFE, 0, "the PL011 got the byte");
    assert_eq!(r.load32(PL011) & 0xff, u32::from(b'a'));
    assert_eq!(r.get16(RX_USED + 2), 0, "nothing for hvc0");
    // A getty on hvc0 prompts: input follows it there.
    r.vcon_send(b"login: ", 0);
    r.receive(b"b");
    assert_eq!(r.get16(RX_USED + 2), 1, "hvc0's receive buffer is used");
    let mut got = [0u8; 1];
    r.h.ram.read((RX_BUF - RAM_GPA) as usize, &mut got).unwrap();
    assert_eq!(&got, b"b");
    assert_eq!(r.load32(FR) & RXFE, RXFE, "the PL011 stays empty");
    // And back: the PL011 writes again.
    r.write(b"$ ");
    r.receive(b"c");
    assert_eq!(r.load32(PL011) & 0xff, u32::from(b'c'));
}

#[test]
fn the_event_loops_reports_take_the_serial_tx_queue_too() {
    let mut r = serial_rig();
    let _ = r.sent();
    // A fault badged for a child the VMM does not have: the handler refuses it and the event
    // loop reports the error through the VMM's own output.
    r.h.sim.raw_event(
        1 << 62 | 5,
        microkit_rt::abi::MessageInfo::new(label::VM_FAULT, 4),
        &[PC0, TESTDEV, 0, dabt(2, 1, false, true)],
    );
    r.h.el.step(&mut r.h.vmm);
    let sent = String::from_utf8(r.sent()).unwrap();
    assert_eq!(
        sent,
        "vmm: fault handler failed: fault from unknown child 5\n"
    );
    assert!(
        !r.h.sim.console().contains("unknown child"),
        "not on the debug console: {}",
        r.h.sim.console()
    );
}

/// The VMM started with its serial TX queue attached, on a debug or a release kernel, and the
/// serial driver's end of that queue.
fn started(sim: Sim) -> (Sim, SerialConsumer<'static>) {
    let ram = sim.region("guest_ram").unwrap();
    let wp = sim.region("guest_wp_page").unwrap();
    let (h, d, tx) = tx_queue(&sim);
    // As main.rs builds it: the guest is loaded and started before the queue is attached.
    let _vmm = Vmm::new(sim.kernel(), Ok(ram), Ok(wp), blobs()).with_serial_console(Ok(h), Ok(d));
    (sim, tx)
}

#[test]
fn start_up_lines_reach_the_serial_driver_on_a_release_kernel() {
    let (sim, mut tx) = started(Sim::from_repo_system("vmm").release_kernel());
    let text = drain(&mut tx);
    assert!(text.starts_with("vmm: guest loaded: kernel "), "{text}");
    assert!(text.ends_with("\nvmm: guest started\n"), "{text}");
    assert_eq!(sim.console(), "");
}

#[test]
fn start_up_lines_are_not_repeated_when_the_debug_console_showed_them() {
    let (sim, mut tx) = started(Sim::from_repo_system("vmm"));
    assert_eq!(drain(&mut tx), "");
    assert!(sim.console().contains("vmm: guest started\n"));
}

#[test]
fn early_lines_beyond_the_limit_are_cut_at_a_whole_line() {
    let sim = Sim::from_repo_system("vmm").release_kernel();
    let mut k = sim.kernel();
    let mut console = vmm::devices::Console::default();
    let line = |i: usize| format!("vmm: early line {i:03} {}\n", "x".repeat(40));
    for i in 0..40 {
        console.write_vmm(&mut k, line(i).as_bytes());
    }
    let (h, d, mut tx) = tx_queue(&sim);
    let cap = d.size() as u32;
    let producer = sddf_queue::serial::SerialProducer::new(
        h.into_atomic_words().unwrap(),
        d.into_atomic_bytes().unwrap(),
        cap,
    )
    .unwrap();
    console.attach_serial(&mut k, producer);
    let text = drain(&mut tx);
    let kept = vmm::devices::EARLY_MAX / line(0).len();
    let want: String = (0..kept).map(line).collect();
    assert_eq!(
        text, want,
        "the first {kept} lines, whole; nothing cut mid-line"
    );
}

const IMSC: u64 = PL011 + 0x38;
/// UARTIMSC: the RX and receive-timeout interrupts, as Linux's pl011 driver enables them.
const RX_INTERRUPTS: u64 = (1 << 4) | (1 << 6);

/// A WFI exit as seL4 delivers it (VCPUFault, HSR EC 0x01, IL).
fn wfi(h: &mut Harness) -> Vec<Invocation> {
    h.exit(
        vmm_core::fault::label::VCPU_FAULT,
        &[(0x01 << 26) | (1 << 25)],
    )
}

impl SerialRig {
    fn write(&mut self, bytes: &[u8]) -> Vec<Invocation> {
        let mut log = vec![];
        for &b in bytes {
            log.extend(self.h.store(PC0, PL011, 0, 1, u64::from(b)));
        }
        log
    }
}

#[test]
fn a_prompt_without_a_newline_goes_out_when_the_guest_waits() {
    let mut r = serial_rig();
    r.h.store(PC0, IMSC, 2, 1, RX_INTERRUPTS);
    let log = r.write(b"linux$ ");
    // Linux's driver reads FR around every byte it sends: that is writing, not waiting.
    r.load32(FR);
    assert_eq!(r.sent(), b"", "a line being written waits for its end");
    assert!(!log.contains(&Invocation::Notify(1)));
    let before = r.h.vmm.stats().total().kernel_calls;
    let log = wfi(&mut r.h);
    assert_eq!(r.sent(), b"linux$ ", "the guest waits: its prompt shows");
    assert!(
        log.contains(&Invocation::Notify(1)),
        "driver notified: {log:?}"
    );
    assert_eq!(
        r.h.vmm.stats().total().kernel_calls - before,
        kernel_calls(&log),
        "the notification is counted with the exit: {log:?}"
    );
    // Nothing new: the next wait publishes nothing and notifies nobody.
    let log = wfi(&mut r.h);
    assert!(!log.contains(&Invocation::Notify(1)), "{log:?}");
    assert_eq!(r.sent(), b"");
}

#[test]
fn a_guest_polling_for_input_sees_its_prompt_out() {
    let mut r = serial_rig();
    r.write(b"> ");
    assert_eq!(r.sent(), b"");
    // No RX interrupt enabled, RX FIFO empty: FR read again and again with no DR write in
    // between is a poll for input. The first reads may be a writer's TX polls.
    for _ in 1..vmm::devices::POLL_READS {
        assert_eq!(r.load32(FR) & RXFE, RXFE);
        assert_eq!(r.sent(), b"");
    }
    assert_eq!(r.load32(FR) & RXFE, RXFE);
    assert_eq!(r.sent(), b"> ");
}

/// Linux's earlycon writes a byte as an FR read (TXFF), the DR write and an FR read (BUSY): its
/// bytes go out at the newline, not one by one (each would be a notification of the serial
/// driver, which preempts the VMM).
#[test]
fn a_polled_console_writer_is_published_by_line() {
    let mut r = serial_rig();
    let mut notified = 0;
    for &b in b"early\ncon" {
        r.load32(FR);
        let log = r.write(&[b]);
        notified += log.iter().filter(|i| **i == Invocation::Notify(1)).count();
        r.load32(FR);
    }
    assert_eq!(r.sent(), b"early\n");
    assert!(notified <= 1, "{notified} notifications");
    // Then the guest waits for input: the open line shows.
    for _ in 0..vmm::devices::POLL_READS {
        r.load32(FR);
    }
    assert_eq!(r.sent(), b"con");
}

#[test]
fn input_notification_publishes_the_open_line_too() {
    let mut r = serial_rig();
    r.h.store(PC0, IMSC, 2, 1, RX_INTERRUPTS);
    r.write(b"login: ");
    r.receive(b"r");
    assert_eq!(r.sent(), b"login: ");
}

#[test]
fn a_vmm_line_does_not_tear_an_open_guest_line() {
    let mut r = serial_rig();
    r.h.store(PC0, IMSC, 2, 1, RX_INTERRUPTS);
    r.write(b"linux$ ");
    // A notification on a channel the VMM does not serve (0: the test system's liveness
    // channel) makes it say a line of its own.
    r.h.sim.raw_event(1, MessageInfo::new(0, 0), &[]);
    r.h.el.step(&mut r.h.vmm);
    r.write(b"ls\n");
    let out = String::from_utf8(r.sent()).unwrap();
    let mut lines = out.split('\n');
    assert_eq!(lines.next(), Some("linux$ "), "{out:?}");
    assert!(
        lines.next().unwrap().starts_with("vmm: notified on"),
        "{out:?}"
    );
    assert_eq!(
        lines.next(),
        Some("linux$ ls"),
        "the open line again, then the rest: {out:?}"
    );
}

#[test]
fn an_open_line_longer_than_the_redraw_buffer_is_not_redrawn_but_still_broken() {
    let mut r = serial_rig();
    let long = vec![b'x'; vmm::devices::GUEST_LINE_MAX + 1];
    r.write(&long);
    r.h.sim.raw_event(1, MessageInfo::new(0, 0), &[]);
    r.h.el.step(&mut r.h.vmm);
    r.write(b"y\n");
    let out = String::from_utf8(r.sent()).unwrap();
    let lines: Vec<&str> = out.split('\n').collect();
    assert_eq!(lines[0].len(), long.len(), "{out:?}");
    assert!(lines[1].starts_with("vmm: notified on"), "{out:?}");
    assert_eq!(lines[2], "y", "{out:?}");
}
