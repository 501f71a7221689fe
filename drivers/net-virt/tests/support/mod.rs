//! The rig for net_virt's tests: the virtualiser in the real event loop over `microkit-sim`, in
//! the scope a system description gives `net_virt` (the repository's system.xml, or one with
//! more clients derived from it the way a second and third VMM will be added), with simulated
//! clients at the far ends of the real shared queues and data regions (the VMM's side of the
//! protocol, as its backend does it).

#![allow(dead_code)]

use microkit_rt::event_loop::EventLoop;
use microkit_rt::{Channel, SharedRegion};
use microkit_sim::{Invocation, Sim, SimKernel, SimTransport};
use net_virt::{ClientConfig, ClientMem, Console, MAX_CLIENTS, NetVirt, QUEUE_CAPACITY};
use sddf_queue::net::{NetConsumer, NetProducer, mac_for};
use sddf_queue::{NET_BUFFER_SIZE, NetBuffDesc, SignalRequest};
use std::sync::atomic::AtomicU16;

pub const CAP: u32 = QUEUE_CAPACITY;
pub const BUF: usize = NET_BUFFER_SIZE as usize;
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// The repository's system.xml.
pub fn repo_system_text() -> String {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = sdf::codegen::find_system_xml(here).expect("system.xml");
    std::fs::read_to_string(p).expect("readable")
}

/// system.xml with network clients `vmm2`, `vmm3`, ... beside the vmm (`n` in all): each its
/// six regions, the virtualiser's maps, a channel and a PD of its own that maps them (what a
/// second VMM will add).
pub fn n_client_system_text(n: usize) -> String {
    let mut s = repo_system_text();
    let anchor = r#"<memory_region name="net_tx_data_vmm" size="0x20000" />"#;
    let vmap = r#"<map mr="serial_tx_queue_net_virt" vaddr="0x3000000""#;
    assert!(s.contains(anchor) && s.contains(vmap));
    for k in 2..=n {
        let p = format!("vmm{k}");
        let regions: String = sdf::net::client_regions(&p)
            .iter()
            .enumerate()
            .map(|(r, name)| {
                let size = if r < 4 { 0x1000 } else { 0x20000 };
                format!("\n<memory_region name=\"{name}\" size=\"{size:#x}\" />")
            })
            .collect();
        s = s.replacen(anchor, &format!("{anchor}{regions}"), 1);
        let maps = |base: u64, data_perms: [&str; 2]| -> String {
            sdf::net::client_regions(&p)
                .iter()
                .enumerate()
                .map(|(r, name)| {
                    let perms = if r < 4 { "rw" } else { data_perms[r - 4] };
                    let vaddr = base + (r as u64) * 0x10_0000;
                    format!("\n<map mr=\"{name}\" vaddr=\"{vaddr:#x}\" perms=\"{perms}\" />")
                })
                .collect()
        };
        let base = 0x1000_0000 * k as u64;
        s = s.replacen(vmap, &format!("{}\n{vmap}", maps(base, ["rw", "r"])), 1);
        s = s.replacen(
            "</system>",
            &format!(
                "<protection_domain name=\"{p}\" priority=\"200\">\n<program_image path=\"{p}.elf\" />{}\n</protection_domain>\n<channel><end pd=\"net_virt\" id=\"{}\" /><end pd=\"{p}\" id=\"5\" /></channel>\n</system>",
                maps(0x3300_0000, ["rw", "rw"]),
                k
            ),
            1,
        );
    }
    s
}

/// The client table the build script generates, for a system description.
pub fn client_table(sys: &sdf::System) -> Vec<ClientConfig> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    sdf::net::virt_clients(sys, "net_virt")
        .expect("clients")
        .into_iter()
        .map(|c| {
            let [rf, ra, tf, ta, rd, td] = sdf::net::client_regions(&c.name).map(leak);
            ClientConfig {
                name: leak(c.name.clone()),
                channel: Channel::new(c.channel as u8),
                mac: mac_for(c.name.as_bytes()),
                rx_free: rf,
                rx_active: ra,
                tx_free: tf,
                tx_active: ta,
                rx_data: rd,
                tx_data: td,
                rx_data_size: c.rx_data_size,
                tx_data_size: c.tx_data_size,
            }
        })
        .collect()
}

fn halves(r: &SharedRegion) -> &'static [AtomicU16] {
    Sim::alias(r).into_atomic_halves().expect("halves")
}

/// The far end of one client's queues and data regions.
pub struct SimClient {
    pub cfg: ClientConfig,
    pub rx_free: NetProducer<'static>,
    pub rx_active: NetConsumer<'static>,
    pub tx_free: NetConsumer<'static>,
    pub tx_active: NetProducer<'static>,
    pub rx_data: SharedRegion,
    pub tx_data: SharedRegion,
    /// The raw queue regions (to misbehave): rx_free, rx_active, tx_free, tx_active.
    pub raw: [&'static [AtomicU16]; 4],
    /// RX buffers this client has not posted yet (offsets).
    pub rx_spare: Vec<u64>,
    /// The client's own mappings of its six regions (for a real client, a VMM, to take).
    pub own_view: Option<[SharedRegion; 6]>,
}

impl SimClient {
    /// Posts up to `n` of its spare receive buffers.
    pub fn post_rx(&mut self, n: usize) {
        for _ in 0..n {
            let Some(off) = self.rx_spare.pop() else {
                break;
            };
            self.rx_free.enqueue(&NetBuffDesc::new(off, 0)).unwrap();
        }
        let _ = self.rx_free.take_notify();
    }

    /// Sends `frame` through a free TX buffer; false without one. A buffer handed back at an
    /// offset outside the region (one it sent malformed) is thrown away.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        let d = loop {
            let Some(d) = self.tx_free.dequeue().unwrap() else {
                return false;
            };
            if self.tx_data.write(d.io_or_offset as usize, frame).is_ok() {
                break d;
            }
        };
        self.tx_active
            .enqueue(&NetBuffDesc::new(d.io_or_offset, frame.len() as u16))
            .unwrap();
        true
    }

    /// Queues a descriptor as it is, whatever it says.
    pub fn send_raw(&mut self, d: NetBuffDesc) {
        self.tx_active.enqueue(&d).unwrap();
    }

    /// The frames delivered to it, in order; their buffers are posted again.
    pub fn received(&mut self) -> Vec<Vec<u8>> {
        let mut out = vec![];
        while let Some(d) = self.rx_active.dequeue().unwrap() {
            let mut f = vec![0; usize::from(d.len)];
            self.rx_data.read(d.io_or_offset as usize, &mut f).unwrap();
            out.push(f);
            self.rx_free
                .enqueue(&NetBuffDesc::new(d.io_or_offset, 0))
                .unwrap();
        }
        out
    }

    /// TX buffers it holds now (handed back by the virtualiser, not yet used).
    pub fn tx_buffers(&mut self) -> u32 {
        self.tx_free.available().unwrap()
    }

    /// Asks the virtualiser for a signal when frames arrive (its receive side is idle).
    pub fn wait_rx(&mut self) -> SignalRequest {
        self.rx_active.request_signal().unwrap()
    }
}

pub struct Rig {
    pub sim: Sim,
    pub virt: NetVirt<'static, SimKernel>,
    pub el: EventLoop<SimTransport>,
    pub clients: Vec<SimClient>,
    /// Every kernel invocation of the virtualiser so far.
    pub log: Vec<Invocation>,
    /// The serial driver's end of the virtualiser's TX queue (its messages, into `text`).
    pub tx: sddf_queue::SerialConsumer<'static>,
    pub text: String,
}

impl Rig {
    /// The repository's system.xml: one client, the vmm.
    pub fn new() -> Rig {
        Rig::with(&repo_system_text())
    }

    /// `n` clients (vmm, vmm2, ...), each with all its RX buffers posted.
    pub fn clients(n: usize) -> Rig {
        let mut rig = Rig::with(&n_client_system_text(n));
        for c in &mut rig.clients {
            c.post_rx(CAP as usize);
        }
        rig
    }

    pub fn with(text: &str) -> Rig {
        let sys = sdf::parse(text).expect("system");
        let sim = Sim::new(&sys, "net_virt").expect("scope");
        let table = client_table(&sys);
        let region = |n: &str| sim.region(n).unwrap_or_else(|| panic!("net_virt maps {n}"));
        let mut clients = vec![];
        let mut list = heapless::Vec::<_, MAX_CLIENTS>::new();
        for cfg in &table {
            let [rf, ra, tf, ta] =
                [cfg.rx_free, cfg.rx_active, cfg.tx_free, cfg.tx_active].map(&region);
            let (rd, td) = (region(cfg.rx_data), region(cfg.tx_data));
            let raw = [&rf, &ra, &tf, &ta].map(halves);
            let own_view = Some([&rf, &ra, &tf, &ta, &rd, &td].map(Sim::alias));
            let rx_bufs = rd.size() / BUF;
            clients.push(SimClient {
                cfg: *cfg,
                rx_free: NetProducer::new(raw[0], CAP).unwrap(),
                rx_active: NetConsumer::new(raw[1], CAP).unwrap(),
                tx_free: NetConsumer::new(raw[2], CAP).unwrap(),
                tx_active: NetProducer::new(raw[3], CAP).unwrap(),
                rx_data: Sim::alias(&rd),
                tx_data: Sim::alias(&td),
                raw,
                rx_spare: (0..rx_bufs.min(CAP as usize))
                    .rev()
                    .map(|b| (b * BUF) as u64)
                    .collect(),
                own_view,
            });
            let mem =
                ClientMem::from_regions([Ok(rf), Ok(ra), Ok(tf), Ok(ta)], Ok(rd), Ok(td)).unwrap();
            assert!(list.push((*cfg, Some(mem))).is_ok());
        }
        let (th, td) = (
            region("serial_tx_queue_net_virt"),
            region("serial_tx_data_net_virt"),
        );
        let (oh, od) = (
            Sim::alias(&th).into_atomic_words().unwrap(),
            Sim::alias(&td).into_atomic_bytes().unwrap(),
        );
        let tx = sddf_queue::SerialConsumer::new(oh, od, od.len() as u32).unwrap();
        let serial = sim
            .scope()
            .channels
            .iter()
            .find(|c| c.peer == "serial_driver")
            .map(|c| Channel::new(c.id as u8))
            .expect("a channel to the serial driver");
        let console = Console::from_regions(serial, Ok(th), Ok(td));
        let virt = NetVirt::new(sim.kernel(), console, list);
        let mut el = sim.event_loop();
        el.start();
        let mut rig = Rig {
            sim,
            virt,
            el,
            clients,
            log: vec![],
            tx,
            text: String::new(),
        };
        rig.collect();
        rig
    }

    /// Takes the virtualiser's invocations and console text so far.
    pub fn collect(&mut self) -> Vec<Invocation> {
        let new = self.sim.take_log();
        self.log.extend(new.iter().cloned());
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.tx.dequeue_into(&mut buf) {
            if n == 0 {
                break;
            }
            self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        new
    }

    /// Client `i` notifies the virtualiser, which runs one event.
    pub fn notify_from_client(&mut self, i: usize) {
        self.sim.notify_from_peer(self.clients[i].cfg.channel);
        self.el.step(&mut self.virt);
        self.collect();
    }

    /// Client `i` sends `frames` and notifies.
    pub fn send(&mut self, i: usize, frames: &[Vec<u8>]) {
        for f in frames {
            assert!(self.clients[i].send(f), "client {i} has a TX buffer");
        }
        let _ = self.clients[i].tx_active.take_notify();
        self.notify_from_client(i);
    }

    /// Notifications the virtualiser sent on `ch` so far.
    pub fn notified(&self, ch: Channel) -> usize {
        self.log
            .iter()
            .filter(|x| **x == Invocation::Notify(ch.index()))
            .count()
    }

    pub fn mac(&self, i: usize) -> [u8; 6] {
        self.clients[i].cfg.mac
    }
}

/// An Ethernet frame from `src` to `dst` of `len` bytes (at least the header), its payload a
/// pattern of `seed`.
pub fn frame(dst: [u8; 6], src: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut x = seed;
    while f.len() < len {
        x = x.wrapping_mul(31).wrapping_add(7);
        f.push(x);
    }
    f.truncate(len.max(14));
    f
}
