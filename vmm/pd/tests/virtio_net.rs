//! The guest's virtio-net card end to end inside the VMM's system.xml scope: a guest driver
//! (virtqueues in guest RAM, registers through trapped MMIO) on one side, the network
//! virtualiser's side of the sDDF network queues and the VMM's two data regions on the other
//! (played here as net_virt plays it: TX buffers handed out at start, frames taken from TX
//! active, frames put into posted RX buffers). Checks that a frame the guest sends reaches the
//! TX queue byte for byte with a notification of net_virt, that a frame net_virt delivers
//! reaches the guest's receive buffer behind a zeroed virtio-net header with the card's SPI,
//! that both directions keep their buffers going round, and that a hostile virtualiser's
//! descriptors are counted, never followed.

mod common;
/// net_virt's test rig: the real virtualiser over microkit-sim in a two-client system.
#[path = "../../../drivers/net-virt/tests/support/mod.rs"]
mod nv;

use common::*;
use microkit_sim::{Invocation, Sim};
use sddf_queue::net::{NetConsumer, NetProducer};
use sddf_queue::{NET_BUFFER_SIZE, NetBuffDesc};

const NET: u64 = 0x0a00_3a00;
const NET_IRQ: u16 = 77;
/// net_virt's channel, as the VMM numbers it.
const NET_CH: u8 = 5;
const CAP: u32 = 64;
const HDR: usize = 12;

// Guest-physical layout: queue 0 (receive) and 1 (transmit), and their buffers.
const RING: [u64; 2] = [0x4100_0000, 0x4101_0000];
const BUFS: [u64; 2] = [0x4102_0000, 0x4104_0000];
const QSIZE: u16 = 16;

/// net_virt's end of the VMM's queues and data regions.
struct Virt {
    rx_free: NetConsumer<'static>,
    rx_active: NetProducer<'static>,
    tx_free: NetProducer<'static>,
    tx_active: NetConsumer<'static>,
    rx_data: microkit_rt::SharedRegion,
    tx_data: microkit_rt::SharedRegion,
}

impl Virt {
    /// Frames the guest sent, in order; their buffers go back.
    fn take_tx(&mut self) -> Vec<Vec<u8>> {
        let mut out = vec![];
        while let Some(d) = self.tx_active.dequeue().unwrap() {
            let mut f = vec![0; usize::from(d.len)];
            self.tx_data.read(d.io_or_offset as usize, &mut f).unwrap();
            out.push(f);
            self.tx_free
                .enqueue(&NetBuffDesc::new(d.io_or_offset, 0))
                .unwrap();
        }
        out
    }

    /// Delivers `frame` into the VMM's next posted RX buffer; whether the VMM asked to be told.
    fn deliver(&mut self, frame: &[u8]) -> bool {
        let b = self.rx_free.dequeue().unwrap().expect("a posted RX buffer");
        self.rx_data.write(b.io_or_offset as usize, frame).unwrap();
        self.rx_active
            .enqueue(&NetBuffDesc::new(b.io_or_offset, frame.len() as u16))
            .unwrap();
        self.rx_active.take_notify()
    }
}

struct Rig {
    h: Harness,
    virt: Virt,
    avail: [u16; 2],
    used_seen: [u16; 2],
}

/// The VMM named `name` with its card attached to `regions` (net_rx_free, net_rx_active,
/// net_tx_free, net_tx_active, net_rx_data, net_tx_data: the VMM's mappings of them).
fn vmm_on(name: &[u8], regions: [microkit_rt::SharedRegion; 6]) -> Harness {
    let sim = Sim::from_repo_system("vmm");
    let ram = sim.region("guest_ram").unwrap();
    let wp = sim.region("guest_wp_page").unwrap();
    let (ram_view, wp_view) = (Sim::alias(&ram), Sim::alias(&wp));
    let mut vmm = vmm::Vmm::new(sim.kernel(), Ok(ram), Ok(wp), blobs());
    let [a, b, c, d, rx, tx] = regions;
    vmm.attach_net_device(
        vmm::mac_of_name(name),
        [Ok(a), Ok(b), Ok(c), Ok(d)],
        Ok(rx),
        Ok(tx),
    );
    Harness::running_with(sim, vmm, ram_view, wp_view)
}

fn rig() -> Rig {
    // The regions as system.xml sizes them (the VMM's own scope), shared with a simulated
    // net_virt.
    let sim = Sim::from_repo_system("vmm");
    let names = [
        "net_rx_free_vmm",
        "net_rx_active_vmm",
        "net_tx_free_vmm",
        "net_tx_active_vmm",
        "net_rx_data_vmm",
        "net_tx_data_vmm",
    ];
    let regions = names.map(|n| sim.region(n).unwrap_or_else(|| panic!("vmm maps {n}")));
    rig_over(b"vmm\0\0", regions, true)
}

/// The VMM named `name` over `regions`, with this test's net_virt end over the same memory;
/// `hand_out`: that end plays net_virt's start (else a real net_virt does).
fn rig_over(name: &[u8], regions: [microkit_rt::SharedRegion; 6], hand_out: bool) -> Rig {
    let h = |r: &microkit_rt::SharedRegion| Sim::alias(r).into_atomic_halves().unwrap();
    let mut virt = Virt {
        rx_free: NetConsumer::new(h(&regions[0]), CAP).unwrap(),
        rx_active: NetProducer::new(h(&regions[1]), CAP).unwrap(),
        tx_free: NetProducer::new(h(&regions[2]), CAP).unwrap(),
        tx_active: NetConsumer::new(h(&regions[3]), CAP).unwrap(),
        rx_data: Sim::alias(&regions[4]),
        tx_data: Sim::alias(&regions[5]),
    };
    if hand_out {
        // net_virt starts first: the TX buffers are handed out, the frames' signal asked for.
        for b in 0..CAP {
            virt.tx_free
                .enqueue(&NetBuffDesc::new(u64::from(b * NET_BUFFER_SIZE), 0))
                .unwrap();
        }
        let _ = virt.tx_active.request_signal();
        virt.rx_free.cancel_signal();
    }
    Rig {
        h: vmm_on(name, regions),
        virt,
        avail: [0; 2],
        used_seen: [0; 2],
    }
}

impl Rig {
    fn w32(&mut self, off: u64, v: u32) -> Vec<Invocation> {
        self.h.store(PC0, NET + off, 2, 1, u64::from(v))
    }
    fn r32(&mut self, off: u64) -> u32 {
        self.h.load(PC0, NET + off, 2, 2);
        self.h.x(2) as u32
    }
    fn put(&self, gpa: u64, bytes: &[u8]) {
        self.h.ram.write((gpa - RAM_GPA) as usize, bytes).unwrap();
    }
    fn get(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.h.ram.read((gpa - RAM_GPA) as usize, &mut b).unwrap();
        b
    }

    /// virtio 1.2 §3.1.1 with VERSION_1 and MAC, both queues, SPI 77 forwarded to the vCPU.
    fn init(&mut self) {
        self.h.store(PC0, GICD, 2, 1, 1);
        self.h.store(PC0, GICD + 0x108, 2, 1, 1 << (77 - 64));
        self.h.store(PC0, GICD + 0x800 + 76, 2, 1, 1 << 8);
        self.w32(0x70, 0);
        self.w32(0x70, 1);
        self.w32(0x70, 3);
        self.w32(0x24, 0);
        self.w32(0x20, 1 << 5);
        self.w32(0x24, 1);
        self.w32(0x20, 1);
        self.w32(0x70, 0xb);
        assert_eq!(self.r32(0x70) & 8, 8, "FEATURES_OK accepted");
        for q in 0..2u32 {
            self.w32(0x30, q);
            self.w32(0x38, u32::from(QSIZE));
            let base = RING[q as usize];
            for (reg, addr) in [(0x80, base), (0x90, base + 0x1000), (0xa0, base + 0x2000)] {
                self.w32(reg, addr as u32);
                self.w32(reg + 4, 0);
            }
            self.w32(0x44, 1);
        }
        self.w32(0x70, 0xf);
        assert_eq!(self.r32(0x70), 0xf, "live");
    }

    /// Posts one buffer of `len` bytes (descriptor `slot` of queue `q`) holding `bytes`.
    fn post(&mut self, q: usize, slot: u16, bytes: &[u8], len: u32, device_writes: bool) {
        let addr = BUFS[q] + u64::from(slot) * 0x800;
        self.put(addr, bytes);
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&(if device_writes { 2u16 } else { 0 }).to_le_bytes());
        self.put(RING[q] + 16 * u64::from(slot), &d);
        let i = self.avail[q] % QSIZE;
        self.put(RING[q] + 0x1000 + 4 + 2 * u64::from(i), &slot.to_le_bytes());
        self.avail[q] = self.avail[q].wrapping_add(1);
        self.put(RING[q] + 0x1000 + 2, &self.avail[q].to_le_bytes());
    }

    /// The used elements of queue `q` since the last call: (descriptor, length).
    fn used(&mut self, q: usize) -> Vec<(u32, u32)> {
        let idx = u16::from_le_bytes(self.get(RING[q] + 0x2000 + 2, 2).try_into().unwrap());
        let mut out = vec![];
        while self.used_seen[q] != idx {
            let e = self.get(
                RING[q] + 0x2000 + 4 + 8 * u64::from(self.used_seen[q] % QSIZE),
                8,
            );
            out.push((
                u32::from_le_bytes(e[0..4].try_into().unwrap()),
                u32::from_le_bytes(e[4..8].try_into().unwrap()),
            ));
            self.used_seen[q] = self.used_seen[q].wrapping_add(1);
        }
        out
    }

    /// net_virt notifies the VMM; returns what the VMM invoked.
    fn notify_from_virt(&mut self) -> Vec<Invocation> {
        self.h.sim.take_log();
        self.h.sim.notify_from_peer(vmm::system::NET_VIRT);
        self.h.el.step(&mut self.h.vmm);
        self.h.sim.take_log()
    }
}

fn frame(dst: [u8; 6], src: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = [dst, src].concat();
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend((0..len - 14).map(|i| (i as u8).wrapping_mul(7) ^ seed));
    f
}

fn spi(log: &[Invocation]) -> usize {
    log.iter()
        .filter(|i| matches!(i, Invocation::VcpuInjectIrq { virq: NET_IRQ, .. }))
        .count()
}

fn kicks(log: &[Invocation]) -> usize {
    log.iter()
        .filter(|i| **i == Invocation::Notify(NET_CH))
        .count()
}

/// The PD's start as `main.rs` makes it (setup, then the block and network cards attached):
/// every device's window answers, so the handler tree (`vmm::HANDLERS`) holds them all.
#[test]
fn with_every_card_attached_each_device_window_answers() {
    let sim = Sim::from_repo_system("vmm");
    let region = |n: &str| sim.region(n).unwrap_or_else(|| panic!("vmm maps {n}"));
    let (ram, wp) = (region("guest_ram"), region("guest_wp_page"));
    let (ram_view, wp_view) = (Sim::alias(&ram), Sim::alias(&wp));
    let info = region("blk_storage_info_vmm");
    let mut si = <sddf_queue::layout::BlkStorageInfo as zerocopy::FromZeros>::new_zeroed();
    si.capacity = 64;
    si.block_size = 1;
    si.sector_size = 512;
    sddf_queue::blk::StorageInfoWriter::new(Sim::alias(&info).into_atomic_words().unwrap())
        .unwrap()
        .publish(&si);
    let mut vmm = vmm::Vmm::new(sim.kernel(), Ok(ram), Ok(wp), blobs());
    vmm.attach_block_device(
        Ok(region("blk_req_queue_vmm")),
        Ok(region("blk_resp_queue_vmm")),
        Ok(info),
        Ok(region("blk_data_vmm")),
    );
    vmm.attach_net_device(
        vmm::mac_of_name(b"vmm"),
        [
            Ok(region("net_rx_free_vmm")),
            Ok(region("net_rx_active_vmm")),
            Ok(region("net_tx_free_vmm")),
            Ok(region("net_tx_active_vmm")),
        ],
        Ok(region("net_rx_data_vmm")),
        Ok(region("net_tx_data_vmm")),
    );
    let mut h = Harness::running_with(sim, vmm, ram_view, wp_view);
    // virtio-mmio's MagicValue and DeviceID: console 3, block 2, network 1.
    for (base, id) in [(0x0a00_3c00, 3), (0x0a00_3e00, 2), (NET, 1)] {
        h.load(PC0, base, 2, 2);
        assert_eq!(h.x(2), 0x7472_6976, "magic at {base:#x}");
        h.load(PC0, base + 8, 2, 2);
        assert_eq!(h.x(2), id, "device id at {base:#x}");
    }
    // The test device's scratch register keeps what was written; GICD_CTLR reads (an access
    // no handler takes is reflected as an abort: the PC would go to the guest's vector); the
    // PL011's UARTPeriphID0 is 0x11; the write-protected page's reads go to RAM (no exit) but
    // its writes are handled: the guest's PC moves on.
    h.store(PC0, TESTDEV + 0x10, 2, 1, 0x5a5a);
    h.load(PC0, TESTDEV + 0x10, 2, 2);
    assert_eq!(h.x(2), 0x5a5a, "test device scratch");
    h.load(PC0, GICD, 2, 2);
    assert_eq!(h.pc(), PC0 + 4, "GICD_CTLR read emulated");
    h.load(PC0, 0x0900_0fe0, 2, 2);
    assert_eq!(h.x(2), 0x11, "PL011 UARTPeriphID0");
    h.store(PC0, 0x5000_0000, 3, 1, 7);
    assert_eq!(
        h.pc(),
        PC0 + 4,
        "the write-protected page's store was emulated"
    );
}

#[test]
fn the_card_has_the_mac_of_the_vmms_name_and_the_rx_buffers_are_posted() {
    let mut r = rig();
    assert_eq!(r.r32(0x008), 1, "network card");
    let mac = sddf_queue::net::mac_for(b"vmm");
    let lo = r.r32(0x100).to_le_bytes();
    let hi = r.r32(0x104).to_le_bytes();
    assert_eq!([lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]], mac);
    // Every RX buffer of the data region went to net_virt at attach.
    assert_eq!(r.virt.rx_free.available(), Ok(CAP));
}

#[test]
fn a_guest_frame_reaches_net_virt_byte_for_byte_and_its_buffer_comes_back() {
    let mut r = rig();
    r.init();
    let mac = vmm::mac_of_name(b"vmm");
    let f = frame([0xff; 6], mac, 1514, 3);
    let g = frame([0x52, 0x54, 0, 1, 2, 3], mac, 60, 4);
    r.post(
        1,
        0,
        &[vec![0; HDR], f.clone()].concat(),
        (HDR + f.len()) as u32,
        false,
    );
    r.post(
        1,
        1,
        &[vec![0; HDR], g.clone()].concat(),
        (HDR + g.len()) as u32,
        false,
    );
    let log = r.w32(0x50, 1);
    assert_eq!(kicks(&log), 1, "net_virt told once for both frames");
    assert_eq!(r.virt.take_tx(), [f, g]);
    assert_eq!(r.used(1), [(0, 0), (1, 0)]);
    assert!(spi(&log) >= 1, "the guest learns its TX buffers were used");
    assert_eq!(r.h.vmm.virtio_net().unwrap().device().stats().tx_frames, 2);
}

#[test]
fn a_frame_from_net_virt_reaches_the_guest_with_its_interrupt() {
    let mut r = rig();
    r.init();
    r.post(0, 0, &[], (HDR + 1514) as u32, true);
    r.post(0, 1, &[], (HDR + 1514) as u32, true);
    let log = r.w32(0x50, 0);
    assert_eq!(kicks(&log), 0, "nothing to send");
    let mac = vmm::mac_of_name(b"vmm");
    let f = frame(mac, [0x52, 0x54, 0, 9, 9, 9], 98, 1);
    let g = frame([0xff; 6], [0x52, 0x54, 0, 9, 9, 9], 42, 2);
    // The VMM found nothing and asked for a signal: net_virt owes it one.
    assert!(r.virt.deliver(&f));
    assert!(!r.virt.deliver(&g), "one signal for the batch");
    let log = r.notify_from_virt();
    assert_eq!(spi(&log), 1);
    let used = r.used(0);
    assert_eq!(used, [(0, (HDR + 98) as u32), (1, (HDR + 42) as u32)]);
    let got = r.get(BUFS[0], HDR + 98);
    assert_eq!(
        &got[..HDR],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        "num_buffers 1"
    );
    assert_eq!(&got[HDR..], &f[..]);
    assert_eq!(&r.get(BUFS[0] + 0x800, HDR + 42)[HDR..], &g[..]);
    // The RX buffers went back to net_virt.
    assert_eq!(r.virt.rx_free.available(), Ok(CAP));
    // A third frame waits in the queue until the guest posts a buffer; then it arrives.
    let _ = r.virt.deliver(&f);
    let log = r.notify_from_virt();
    assert_eq!(spi(&log), 0, "no buffer posted");
    r.post(0, 2, &[], (HDR + 1514) as u32, true);
    r.w32(0x64, 1);
    r.w32(0x50, 0);
    assert_eq!(r.used(0), [(2, (HDR + 98) as u32)]);
    // (SPI 77 is still pending at the vGIC: the guest here never takes it; the device's
    // interrupt status says it was raised again.)
    assert_eq!(r.r32(0x60) & 1, 1, "used buffer notification");
}

#[test]
fn bad_descriptors_from_net_virt_are_counted_never_followed() {
    let mut r = rig();
    r.init();
    r.post(0, 0, &[], (HDR + 1514) as u32, true);
    r.w32(0x50, 0);
    let size = r.virt.rx_data.size() as u64;
    for d in [NetBuffDesc::new(size, 60), NetBuffDesc::new(u64::MAX, 60)] {
        r.virt.rx_active.enqueue(&d).unwrap();
    }
    // Real buffers of the VMM with lengths no Ethernet frame has: posted again.
    for len in [5, 1515] {
        let b = r.virt.rx_free.dequeue().unwrap().unwrap();
        r.virt
            .rx_active
            .enqueue(&NetBuffDesc::new(b.io_or_offset, len))
            .unwrap();
    }
    let _ = r.virt.rx_active.take_notify();
    r.notify_from_virt();
    assert!(r.used(0).is_empty(), "nothing reached the guest");
    let b = *r.h.vmm.virtio_net().unwrap().device().backend().stats();
    assert_eq!(b.bad_descriptors, 4);
    assert_eq!(b.corrupt, 0);
    assert_eq!(
        r.virt.rx_free.available(),
        Ok(CAP),
        "the real buffers came back"
    );
}

#[test]
fn two_vms_talk_through_the_real_net_virt() {
    // net_virt in a system with a second VMM (vmm2), the two VMMs' cards on its two ports.
    let mut sw = nv::Rig::with(&nv::n_client_system_text(2));
    let regions = |i: usize, sw: &mut nv::Rig| sw.clients[i].own_view.take().unwrap();
    let mut a = rig_over(b"vmm", regions(0, &mut sw), false);
    let mut b = rig_over(b"vmm2", regions(1, &mut sw), false);
    let (mac_a, mac_b) = (vmm::mac_of_name(b"vmm"), vmm::mac_of_name(b"vmm2"));
    assert_eq!((sw.mac(0), sw.mac(1)), (mac_a, mac_b));
    a.init();
    b.init();
    for g in [&mut a, &mut b] {
        g.post(0, 0, &[], (HDR + 1514) as u32, true);
        g.post(0, 1, &[], (HDR + 1514) as u32, true);
        g.w32(0x50, 0);
    }
    // A sends a unicast to B and a broadcast.
    let u = frame(mac_b, mac_a, 1514, 1);
    let bc = frame([0xff; 6], mac_a, 60, 2);
    a.post(
        1,
        0,
        &[vec![0; HDR], u.clone()].concat(),
        (HDR + u.len()) as u32,
        false,
    );
    a.post(
        1,
        1,
        &[vec![0; HDR], bc.clone()].concat(),
        (HDR + bc.len()) as u32,
        false,
    );
    let log = a.w32(0x50, 1);
    assert_eq!(kicks(&log), 1);
    let b_ch = sw.clients[1].cfg.channel;
    let before = sw.notified(b_ch);
    sw.notify_from_client(0);
    assert_eq!(sw.notified(b_ch), before + 1, "net_virt tells vmm2");
    let log = b.notify_from_virt();
    assert_eq!(spi(&log), 1);
    assert_eq!(
        b.used(0),
        [(0, (HDR + 1514) as u32), (1, (HDR + 60) as u32)]
    );
    assert_eq!(&b.get(BUFS[0], HDR + 1514)[HDR..], &u[..]);
    assert_eq!(&b.get(BUFS[0] + 0x800, HDR + 60)[HDR..], &bc[..]);
    // B answers A; nothing of A's came back to A.
    let r = frame(mac_a, mac_b, 98, 3);
    b.post(
        1,
        0,
        &[vec![0; HDR], r.clone()].concat(),
        (HDR + r.len()) as u32,
        false,
    );
    assert_eq!(kicks(&b.w32(0x50, 1)), 1);
    // (A's SPI is still pending at the vGIC from its TX completions: the guest here never
    // takes it; its interrupt status shows the new used buffer.)
    a.w32(0x64, 1);
    sw.notify_from_client(1);
    a.notify_from_virt();
    assert_eq!(a.r32(0x60) & 1, 1);
    assert_eq!(a.used(0), [(0, (HDR + 98) as u32)]);
    assert_eq!(&a.get(BUFS[0], HDR + 98)[HDR..], &r[..]);
    let (sa, sb) = (
        sw.virt.client_stats(0).unwrap(),
        sw.virt.client_stats(1).unwrap(),
    );
    assert_eq!((sa.tx_frames, sa.rx_frames, sa.undelivered), (2, 1, 0));
    assert_eq!((sb.tx_frames, sb.rx_frames, sb.undelivered), (1, 2, 0));
    // A's transmit chains were used, and its TX buffers went home.
    assert_eq!(a.used(1), [(0, 0), (1, 0)]);
    assert_eq!(
        (sa.lost_tx_buffers, sa.malformed, sa.queue_errors),
        (0, 0, 0)
    );
    assert!(sw.sim.violations().is_empty(), "{:?}", sw.sim.violations());
}
