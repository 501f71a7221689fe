//! The rig for blk_virt's component tests: the virtualiser in the real event loop over
//! `microkit-sim`, in the scope a system description gives `blk_virt` (the repository's
//! system.xml, or a two-client system derived from it), with
//!
//! - a simulated driver at the far end of the driver queues: it takes requests after the
//!   restart handshake, resolves each offset in its data space (the clients' data regions end
//!   to end, `sdf::blk::data_space`, as blk_driver does) and reads or writes a disk in memory;
//!   it can hold requests (to test back-pressure and restarts), crash and start a new life;
//! - simulated clients at the far end of each client's queues (the VMM's side of the protocol)
//!   with their own data regions, which only they and the driver touch.

#![allow(dead_code)]

use blk_virt::{BlkVirt, ClientConfig, Console, DRIVER, QueueMem};
use microkit_rt::event_loop::EventLoop;
use microkit_rt::{Channel, SharedRegion};
use microkit_sim::{Invocation, Sim, SimKernel, SimTransport};
use sddf_queue::blk::{
    BlkReqConsumer, BlkReqProducer, BlkRespConsumer, BlkRespProducer, StorageInfoReader,
    StorageInfoWriter,
};
use sddf_queue::layout::{BlkReq, BlkReqCode, BlkResp, BlkRespStatus, BlkStorageInfo};
use sddf_queue::restart::{ClientSync, DriverLife};
use std::collections::VecDeque;
use std::sync::atomic::AtomicU32;

pub const UNIT: usize = 4096;
pub const CAP: u32 = blk_virt::QUEUE_CAPACITY;

/// The repository's system.xml.
pub fn repo_system_text() -> String {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = sdf::codegen::find_system_xml(here).expect("system.xml");
    std::fs::read_to_string(p).expect("readable")
}

/// system.xml with a second block client `vmm2` beside the vmm: its queues and data region
/// (64 KiB), the virtualiser's maps and channel, the driver told the data region's address —
/// what a second VMM will add.
pub fn two_client_system_text() -> String {
    let s = repo_system_text();
    let regions = r#"<memory_region name="blk_data_vmm" size="0x400000" />"#;
    assert!(s.contains(regions));
    let s = s.replacen(
        regions,
        &format!(
            "{regions}\n<memory_region name=\"blk_req_queue_vmm2\" size=\"0x1000\" />\n<memory_region name=\"blk_resp_queue_vmm2\" size=\"0x1000\" />\n<memory_region name=\"blk_storage_info_vmm2\" size=\"0x1000\" />\n<memory_region name=\"blk_data_vmm2\" size=\"0x10000\" />"
        ),
        1,
    );
    let vmap = r#"<map mr="blk_storage_info_vmm" vaddr="0x5002000" perms="rw" setvar_vaddr="vmm_storage_info_vaddr" />"#;
    assert!(s.contains(vmap));
    let s = s.replacen(
        vmap,
        &format!(
            "{vmap}\n<map mr=\"blk_req_queue_vmm2\" vaddr=\"0x5010000\" perms=\"rw\" />\n<map mr=\"blk_resp_queue_vmm2\" vaddr=\"0x5011000\" perms=\"rw\" />\n<map mr=\"blk_storage_info_vmm2\" vaddr=\"0x5012000\" perms=\"rw\" />"
        ),
        1,
    );
    let setvar = r#"<setvar symbol="data_paddr" region_paddr="blk_data_vmm" />"#;
    assert!(s.contains(setvar));
    let s = s.replacen(
        setvar,
        &format!("{setvar}\n<setvar symbol=\"data2_paddr\" region_paddr=\"blk_data_vmm2\" />"),
        1,
    );
    let end = "</system>";
    s.replacen(
        end,
        "<protection_domain name=\"vmm2\" priority=\"200\">\n<program_image path=\"vmm2.elf\" />\n<map mr=\"blk_req_queue_vmm2\" vaddr=\"0x32000000\" perms=\"rw\" />\n<map mr=\"blk_resp_queue_vmm2\" vaddr=\"0x32001000\" perms=\"rw\" />\n<map mr=\"blk_storage_info_vmm2\" vaddr=\"0x32002000\" perms=\"rw\" />\n<map mr=\"blk_data_vmm2\" vaddr=\"0x32200000\" perms=\"rw\" />\n</protection_domain>\n<channel><end pd=\"blk_virt\" id=\"2\" /><end pd=\"vmm2\" id=\"3\" /></channel>\n</system>",
        1,
    )
}

/// The client table the build script generates, for a system description's text.
pub fn client_table(sys: &sdf::System) -> Vec<ClientConfig> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    sdf::blk::virt_clients(sys, "blk_virt")
        .expect("clients")
        .into_iter()
        .map(|c| ClientConfig {
            name: leak(c.name.clone()),
            channel: Channel::new(c.channel as u8),
            req_queue: leak(format!("blk_req_queue_{}", c.name)),
            resp_queue: leak(format!("blk_resp_queue_{}", c.name)),
            info: leak(format!("blk_storage_info_{}", c.name)),
            data_base: c.data.base,
            data_size: c.data.size,
        })
        .collect()
}

/// The driver's storage info: `blocks` of 4096 bytes, ready.
fn publish_info(info: &[AtomicU32], blocks: usize) {
    let mut si: BlkStorageInfo = zerocopy::FromZeros::new_zeroed();
    si.capacity = blocks as u64;
    si.block_size = 1;
    si.sector_size = 512;
    si.queue_depth = 8;
    StorageInfoWriter::new(info).unwrap().publish(&si);
}

fn words(r: &SharedRegion) -> &'static [AtomicU32] {
    Sim::alias(r).into_atomic_words().expect("words")
}

/// A request the simulated driver took, as it saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub req: BlkReq,
    /// The client whose data window the offset fell in (`None`: no window).
    pub window: Option<usize>,
}

/// The far end of the driver queues.
pub struct SimDriver {
    info: &'static [AtomicU32],
    req_region: &'static [AtomicU32],
    resp_region: &'static [AtomicU32],
    life: DriverLife<'static>,
    queues: Option<(BlkReqConsumer<'static>, BlkRespProducer<'static>)>,
    pub disk: Vec<u8>,
    /// The data space: (base, size) of each client's data region, in order.
    pub space: Vec<(u64, u64)>,
    /// The clients' data regions (shared with the clients).
    pub data: Vec<Vec<u8>>,
    /// Hold requests instead of answering at once.
    pub hold: bool,
    /// Requests taken and not answered.
    pub held: VecDeque<BlkReq>,
    /// Every request taken, in order.
    pub seen: Vec<Seen>,
    /// Whether responses were published since the last notification.
    pub published: bool,
}

impl SimDriver {
    fn attach(&mut self) -> bool {
        if self.queues.is_none() && self.life.acknowledged() {
            self.queues = Some((
                BlkReqConsumer::new(self.req_region, CAP).unwrap(),
                BlkRespProducer::new(self.resp_region, CAP).unwrap(),
            ));
        }
        self.queues.is_some()
    }

    /// The driver's answer to `r`, with the data moved.
    fn execute(&mut self, r: &BlkReq) -> BlkResp {
        let bad = BlkResp::new(BlkRespStatus::ERR_INVALID_PARAM, 0, r.id);
        match r.code {
            BlkReqCode::FLUSH | BlkReqCode::BARRIER => {
                return BlkResp::new(BlkRespStatus::OK, 0, r.id);
            }
            BlkReqCode::READ | BlkReqCode::WRITE => {}
            _ => return bad,
        }
        let len = r.count as usize * UNIT;
        let Some(w) = self.window_of(r.io_or_offset, len as u64) else {
            return bad;
        };
        let off = (r.io_or_offset - self.space[w].0) as usize;
        let Some(end) = (r.block_number as usize)
            .checked_mul(UNIT)
            .and_then(|b| b.checked_add(len))
        else {
            return bad;
        };
        if end > self.disk.len() || r.count == 0 {
            return bad;
        }
        let at = r.block_number as usize * UNIT;
        if r.code == BlkReqCode::READ {
            let (disk, data) = (&self.disk, &mut self.data[w]);
            data[off..off + len].copy_from_slice(&disk[at..at + len]);
        } else {
            let (disk, data) = (&mut self.disk, &self.data[w]);
            disk[at..at + len].copy_from_slice(&data[off..off + len]);
        }
        BlkResp::new(BlkRespStatus::OK, r.count, r.id)
    }

    /// The client window `offset..offset + len` lies wholly in.
    pub fn window_of(&self, offset: u64, len: u64) -> Option<usize> {
        self.space.iter().position(|&(base, size)| {
            offset >= base && offset.checked_add(len).is_some_and(|e| e <= base + size)
        })
    }

    /// Takes every request queued (after the handshake) and answers it unless holding.
    pub fn run(&mut self) {
        if !self.attach() {
            return;
        }
        while let Ok(Some(r)) = self.queues.as_mut().unwrap().0.dequeue() {
            let len = u64::from(r.count) * UNIT as u64;
            let window = matches!(r.code, BlkReqCode::READ | BlkReqCode::WRITE)
                .then(|| self.window_of(r.io_or_offset, len))
                .flatten();
            self.seen.push(Seen { req: r, window });
            self.held.push_back(r);
        }
        if !self.hold {
            self.complete(usize::MAX);
        }
    }

    /// Answers up to `n` held requests, oldest first.
    pub fn complete(&mut self, n: usize) {
        for _ in 0..n {
            let Some(r) = self.held.pop_front() else {
                break;
            };
            let resp = self.execute(&r);
            self.respond(resp);
        }
    }

    /// Publishes a response (also a forged one).
    pub fn respond(&mut self, resp: BlkResp) {
        if let Some((_, q)) = &mut self.queues {
            q.enqueue(&resp).expect("room");
            self.published = true;
        }
    }

    /// The driver dies with what it held still unanswered and starts its next life.
    pub fn crash_and_restart(&mut self) {
        self.queues = None;
        self.held.clear();
        self.life = DriverLife::begin(self.info).unwrap();
    }

    pub fn generation(&self) -> u32 {
        self.life.generation()
    }

    /// The device came up: the storage info is published (`disk.len()` blocks).
    pub fn publish_info(&self) {
        publish_info(self.info, self.disk.len() / UNIT);
    }
}

/// The far end of one client's queues (what the VMM's blk_backend does).
pub struct SimClient {
    pub cfg: ClientConfig,
    req_region: &'static [AtomicU32],
    resp_region: &'static [AtomicU32],
    pub req: BlkReqProducer<'static>,
    pub resp: BlkRespConsumer<'static>,
    pub sync: ClientSync<'static>,
    pub info: StorageInfoReader<'static>,
    /// The raw queue words (to misbehave).
    pub raw: QueueMem<'static>,
}

impl SimClient {
    /// Acknowledges a pending life of the virtualiser (resetting its queues as the VMM does).
    pub fn handshake(&mut self) -> bool {
        let Some(g) = self.sync.pending() else {
            return false;
        };
        self.req = BlkReqProducer::reset(self.req_region, CAP).unwrap();
        self.resp = BlkRespConsumer::reset(self.resp_region, CAP).unwrap();
        self.sync.acknowledge(g);
        true
    }

    pub fn responses(&mut self) -> Vec<BlkResp> {
        let mut v = vec![];
        while let Ok(Some(r)) = self.resp.dequeue() {
            v.push(r);
        }
        v
    }
}

pub struct Rig {
    pub sim: Sim,
    pub virt: BlkVirt<'static, SimKernel>,
    pub el: EventLoop<SimTransport>,
    pub drv: SimDriver,
    pub clients: Vec<SimClient>,
    /// Every kernel invocation of the virtualiser so far.
    pub log: Vec<Invocation>,
    /// The serial driver's end of the virtualiser's TX queue (its messages, into `text`).
    pub tx: sddf_queue::SerialConsumer<'static>,
    pub text: String,
}

pub struct Opts {
    pub system: String,
    /// Disk blocks.
    pub blocks: usize,
    /// The driver holds requests until `complete`.
    pub hold: bool,
    /// The driver's storage info is ready before the virtualiser starts.
    pub ready: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            system: repo_system_text(),
            blocks: 64,
            hold: false,
            ready: true,
        }
    }
}

impl Rig {
    pub fn new() -> Rig {
        Rig::with(Opts::default())
    }

    pub fn two_clients() -> Rig {
        Rig::with(Opts {
            system: two_client_system_text(),
            ..Opts::default()
        })
    }

    pub fn with(o: Opts) -> Rig {
        let sys = sdf::parse(&o.system).expect("system");
        let sim = Sim::new(&sys, "blk_virt").expect("scope");
        let table = client_table(&sys);
        let region = |n: &str| sim.region(n).unwrap_or_else(|| panic!("blk_virt maps {n}"));
        // The driver (outranks the virtualiser): first life announced, storage info published.
        let (dq, dr, di) = (
            region("blk_req_queue_blk_virt"),
            region("blk_resp_queue_blk_virt"),
            region("blk_storage_info_blk_virt"),
        );
        let info = words(&di);
        let life = DriverLife::begin(info).unwrap();
        if o.ready {
            publish_info(info, o.blocks);
        }
        let space = sdf::blk::data_space(&sys, "blk_driver");
        let drv = SimDriver {
            info,
            req_region: words(&dq),
            resp_region: words(&dr),
            life,
            queues: None,
            disk: vec![0; o.blocks * UNIT],
            data: space.iter().map(|w| vec![0u8; w.size as usize]).collect(),
            space: space.iter().map(|w| (w.base, w.size)).collect(),
            hold: o.hold,
            held: VecDeque::new(),
            seen: vec![],
            published: false,
        };
        let driver = QueueMem::from_regions(Ok(dq), Ok(dr), Ok(di)).unwrap();
        let mut clients = vec![];
        let mut list = vec![];
        for cfg in &table {
            let (q, r, i) = (
                region(cfg.req_queue),
                region(cfg.resp_queue),
                region(cfg.info),
            );
            let raw = QueueMem {
                req: words(&q),
                resp: words(&r),
                info: words(&i),
            };
            clients.push(SimClient {
                cfg: *cfg,
                req_region: raw.req,
                resp_region: raw.resp,
                req: BlkReqProducer::new(raw.req, CAP).unwrap(),
                resp: BlkRespConsumer::new(raw.resp, CAP).unwrap(),
                sync: ClientSync::new(raw.info).unwrap(),
                info: StorageInfoReader::new(raw.info).unwrap(),
                raw,
            });
            list.push((
                *cfg,
                Some(QueueMem::from_regions(Ok(q), Ok(r), Ok(i)).unwrap()),
            ));
        }
        let (th, td) = (
            region("serial_tx_queue_blk_virt"),
            region("serial_tx_data_blk_virt"),
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
        let virt = BlkVirt::new(sim.kernel(), console, Some(driver), &list);
        let mut el = sim.event_loop();
        el.start();
        let mut rig = Rig {
            sim,
            virt,
            el,
            drv,
            clients,
            log: vec![],
            tx,
            text: String::new(),
        };
        rig.collect();
        // The clients acknowledge the virtualiser's life, as the VMM does at its start.
        for i in 0..rig.clients.len() {
            assert!(rig.clients[i].handshake(), "client {i} saw no life");
            rig.notify_from_client(i);
        }
        rig.settle();
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

    /// Client `i` notifies the virtualiser.
    pub fn notify_from_client(&mut self, i: usize) {
        self.sim.notify_from_peer(self.clients[i].cfg.channel);
        self.el.step(&mut self.virt);
    }

    /// The driver notifies the virtualiser.
    pub fn notify_from_driver(&mut self) {
        self.sim.notify_from_peer(DRIVER);
        self.el.step(&mut self.virt);
    }

    /// Runs the driver whenever the virtualiser notified it, and notifies the virtualiser
    /// whenever the driver published, until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..1000 {
            let new = self.collect();
            let to_driver = new.contains(&Invocation::Notify(DRIVER.index()));
            if to_driver {
                self.drv.run();
            }
            if std::mem::take(&mut self.drv.published) {
                self.notify_from_driver();
                continue;
            }
            if !to_driver {
                return;
            }
        }
        panic!("the virtualiser and the driver never settle");
    }

    /// Client `i` queues `reqs` and notifies; everything settles.
    pub fn submit(&mut self, i: usize, reqs: &[BlkReq]) {
        for r in reqs {
            self.clients[i].req.enqueue(r).expect("client queue room");
        }
        let _ = self.clients[i].req.take_notify();
        self.notify_from_client(i);
        self.settle();
    }

    /// Client `i`'s data region (the driver's view of it: the same bytes).
    pub fn data(&mut self, i: usize) -> &mut Vec<u8> {
        &mut self.drv.data[i]
    }

    /// Notifications the virtualiser sent to client `i` so far.
    pub fn notified(&self, ch: Channel) -> usize {
        self.log
            .iter()
            .filter(|x| **x == Invocation::Notify(ch.index()))
            .count()
    }
}

pub fn read(off: usize, block: u64, count: u16, id: u32) -> BlkReq {
    BlkReq::new(BlkReqCode::READ, off as u64, block, count, id)
}

pub fn write(off: usize, block: u64, count: u16, id: u32) -> BlkReq {
    BlkReq::new(BlkReqCode::WRITE, off as u64, block, count, id)
}

pub fn ok(count: u16, id: u32) -> BlkResp {
    BlkResp::new(BlkRespStatus::OK, count, id)
}

pub fn invalid(id: u32) -> BlkResp {
    BlkResp::new(BlkRespStatus::ERR_INVALID_PARAM, 0, id)
}
