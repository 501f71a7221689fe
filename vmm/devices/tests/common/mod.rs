//! A guest-side virtio driver for host tests: it owns a guest RAM buffer, programs a device
//! through the virtio-mmio registers of an [`MmioTransport`], builds split virtqueues in the RAM,
//! posts descriptor chains and reaps the used ring, as a guest kernel would.
#![allow(dead_code)]

use std::collections::HashMap;

use vmm_core::addr::GuestPhysAddr;
use vmm_core::memory::{GuestMemory, GuestRam};
use vmm_core::mmio::BusError;
use vmm_devices::blk::{self, BlkConfig, BlkDevice, Completion};
use vmm_devices::feature::VERSION_1;
use vmm_devices::mmio::{IrqAction, MmioTransport, VirtioDevice, reg, status};
use vmm_devices::net::{self, NetBackend, NetConfig, NetDevice};
use vmm_devices::queue::{DESC_F_NEXT, DESC_F_WRITE, Descriptor};
use vmm_devices::testing::{CompletionMode, MemDisk, MemNet};

pub const RAM_BASE: u64 = 0x4000_0000;
/// Queue `q`'s areas live at `RAM_BASE + q * QUEUE_STRIDE`.
pub const QUEUE_STRIDE: u64 = 0x4000;
pub const DESC_OFF: u64 = 0;
pub const AVAIL_OFF: u64 = 0x1000;
pub const USED_OFF: u64 = 0x2000;
/// Buffers are allocated from here.
pub const DATA_START: u64 = RAM_BASE + 0x10000;

/// One segment of a chain: address, length, device-writable.
#[derive(Debug, Clone, Copy)]
pub struct Seg {
    pub addr: u64,
    pub len: u32,
    pub write: bool,
}

pub struct Vq {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub avail_idx: u16,
    pub used_seen: u16,
    free: Vec<u16>,
    chains: HashMap<u16, Vec<u16>>,
}

pub struct Env<D: VirtioDevice> {
    pub ram: Vec<u8>,
    pub t: MmioTransport<D>,
    pub vqs: Vec<Vq>,
    bump: u64,
    /// Interrupts the device raised.
    pub irqs: usize,
}

impl<D: VirtioDevice> Env<D> {
    pub fn new(dev: D, ram_size: usize) -> Self {
        Env {
            ram: vec![0u8; ram_size],
            t: MmioTransport::new(dev),
            vqs: Vec::new(),
            bump: DATA_START,
            irqs: 0,
        }
    }
    pub fn ram_end(&self) -> u64 {
        RAM_BASE + self.ram.len() as u64
    }
    fn count(&mut self, a: IrqAction) -> IrqAction {
        if a == IrqAction::Raise {
            self.irqs += 1;
        }
        a
    }
    pub fn mmio_read(&mut self, off: u64, size: u8) -> Result<u64, BusError> {
        self.t.read(off, size)
    }
    pub fn mmio_write(&mut self, off: u64, size: u8, v: u64) -> Result<IrqAction, BusError> {
        let mut ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut self.ram);
        let r = self.t.write(&mut ram, off, size, v);
        r.map(|a| self.count(a))
    }
    pub fn r32(&mut self, off: u64) -> u32 {
        self.mmio_read(off, 4).expect("register read") as u32
    }
    /// A register write whose interrupt action is only counted.
    pub fn w32(&mut self, off: u64, v: u32) {
        let _ = self.write_reg(off, v);
    }
    /// A register write.
    pub fn write_reg(&mut self, off: u64, v: u32) -> IrqAction {
        self.mmio_write(off, 4, u64::from(v))
            .expect("register write")
    }
    pub fn event(&mut self, ev: D::Event) -> IrqAction {
        let mut ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut self.ram);
        let a = self.t.device_event(&mut ram, ev);
        self.count(a)
    }
    pub fn write_mem(&mut self, gpa: u64, bytes: &[u8]) {
        let mut ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut self.ram);
        ram.write(GuestPhysAddr(gpa), bytes).expect("test write");
    }
    pub fn read_mem(&mut self, gpa: u64, len: usize) -> Vec<u8> {
        let ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut self.ram);
        let mut b = vec![0u8; len];
        ram.read(GuestPhysAddr(gpa), &mut b).expect("test read");
        b
    }
    pub fn read_u16(&mut self, gpa: u64) -> u16 {
        let b = self.read_mem(gpa, 2);
        u16::from_le_bytes([b[0], b[1]])
    }
    pub fn read_u32(&mut self, gpa: u64) -> u32 {
        let b = self.read_mem(gpa, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    /// A 16-aligned buffer of `len` bytes (zeroed).
    pub fn alloc(&mut self, len: usize) -> u64 {
        let len = (len as u64).max(1).div_ceil(16) * 16;
        if self.bump + len > self.ram_end() {
            self.bump = DATA_START;
        }
        let a = self.bump;
        self.bump += len;
        self.write_mem(a, &vec![0u8; len as usize]);
        a
    }

    /// Device features as the driver reads them.
    pub fn device_features(&mut self) -> u64 {
        self.w32(reg::DEVICE_FEATURES_SEL, 0);
        let lo = self.r32(reg::DEVICE_FEATURES);
        self.w32(reg::DEVICE_FEATURES_SEL, 1);
        let hi = self.r32(reg::DEVICE_FEATURES);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    /// The driver's side of initialisation (§3.1.1) with `features` (masked by what the device
    /// offers) and every queue at `queue_size` (or QueueNumMax if larger). Returns whether the
    /// device took the features.
    pub fn init(&mut self, features: u64, queue_size: u16) -> bool {
        assert_eq!(self.r32(reg::MAGIC_VALUE), 0x7472_6976);
        assert_eq!(self.r32(reg::VERSION), 2);
        self.w32(reg::STATUS, 0);
        self.w32(reg::STATUS, u32::from(status::ACKNOWLEDGE));
        self.w32(reg::STATUS, u32::from(status::ACKNOWLEDGE | status::DRIVER));
        let offered = self.device_features();
        let f = features & offered;
        self.w32(reg::DRIVER_FEATURES_SEL, 0);
        self.w32(reg::DRIVER_FEATURES, f as u32);
        self.w32(reg::DRIVER_FEATURES_SEL, 1);
        self.w32(reg::DRIVER_FEATURES, (f >> 32) as u32);
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        self.w32(reg::STATUS, u32::from(s));
        if self.r32(reg::STATUS) & u32::from(status::FEATURES_OK) == 0 {
            return false;
        }
        self.vqs.clear();
        let n = self.t.queues().len();
        for q in 0..n {
            self.setup_queue(q as u16, queue_size);
        }
        self.w32(reg::STATUS, u32::from(s | status::DRIVER_OK));
        true
    }

    pub fn setup_queue(&mut self, q: u16, size: u16) {
        self.w32(reg::QUEUE_SEL, u32::from(q));
        let max = self.r32(reg::QUEUE_NUM_MAX) as u16;
        let size = size.min(max);
        let base = RAM_BASE + u64::from(q) * QUEUE_STRIDE;
        let (desc, avail, used) = (base + DESC_OFF, base + AVAIL_OFF, base + USED_OFF);
        self.write_mem(base, &vec![0u8; QUEUE_STRIDE as usize]);
        self.w32(reg::QUEUE_NUM, u32::from(size));
        for (lo, v) in [
            (reg::QUEUE_DESC_LOW, desc),
            (reg::QUEUE_DRIVER_LOW, avail),
            (reg::QUEUE_DEVICE_LOW, used),
        ] {
            self.w32(lo, v as u32);
            self.w32(lo + 4, (v >> 32) as u32);
        }
        self.w32(reg::QUEUE_READY, 1);
        let vq = Vq {
            size,
            desc,
            avail,
            used,
            avail_idx: 0,
            used_seen: 0,
            free: (0..size).rev().collect(),
            chains: HashMap::new(),
        };
        match self.vqs.get_mut(q as usize) {
            Some(v) => *v = vq,
            None => self.vqs.push(vq),
        }
    }

    /// Descriptors of queue `q` not in a posted chain.
    pub fn free_descs(&self, q: u16) -> usize {
        self.vqs[q as usize].free.len()
    }

    /// Writes `bytes` into fresh buffers split into `split` segment sizes (the last taking the
    /// rest; a zero size counts as 1), device-readable or -writable.
    pub fn segments(&mut self, bytes: &[u8], split: &[usize], write: bool) -> Vec<Seg> {
        let mut segs = Vec::new();
        let mut off = 0;
        let mut k = 0;
        while off < bytes.len() {
            let want = split.get(k).copied().unwrap_or(usize::MAX).max(1);
            k += 1;
            let n = want.min(bytes.len() - off);
            let a = self.alloc(n);
            self.write_mem(a, &bytes[off..off + n]);
            segs.push(Seg {
                addr: a,
                len: n as u32,
                write,
            });
            off += n;
        }
        segs
    }

    /// Reads the writable bytes of `segs`, concatenated, up to `len`.
    pub fn gather(&mut self, segs: &[Seg], len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for s in segs.iter().filter(|s| s.write) {
            out.extend(self.read_mem(s.addr, s.len as usize));
        }
        out.truncate(len);
        out
    }

    /// Writes a chain of `segs` into free descriptors and publishes its head (no notification).
    pub fn post(&mut self, q: u16, segs: &[Seg]) -> u16 {
        let vq = &mut self.vqs[q as usize];
        assert!(vq.free.len() >= segs.len(), "queue full");
        let idx: Vec<u16> = (0..segs.len()).map(|_| vq.free.pop().unwrap()).collect();
        let (desc, avail, size) = (vq.desc, vq.avail, vq.size);
        let head = idx[0];
        vq.chains.insert(head, idx.clone());
        let slot = vq.avail_idx % size;
        vq.avail_idx = vq.avail_idx.wrapping_add(1);
        let new_idx = vq.avail_idx;
        for (i, s) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            let d = Descriptor {
                addr: s.addr,
                len: s.len,
                flags: if s.write { DESC_F_WRITE } else { 0 } | if last { 0 } else { DESC_F_NEXT },
                next: if last { 0 } else { idx[i + 1] },
            };
            self.write_mem(desc + 16 * u64::from(idx[i]), &d.to_bytes());
        }
        self.write_mem(avail + 4 + 2 * u64::from(slot), &head.to_le_bytes());
        self.write_mem(avail + 2, &new_idx.to_le_bytes());
        head
    }

    /// The device's `avail_event` of queue `q` (VIRTIO_F_EVENT_IDX).
    pub fn avail_event(&mut self, q: u16) -> u16 {
        let (used, size) = (self.vqs[q as usize].used, self.vqs[q as usize].size);
        self.read_u16(used + 4 + 8 * u64::from(size))
    }

    /// Sets the driver's `used_event` of queue `q` (VIRTIO_F_EVENT_IDX).
    pub fn set_used_event(&mut self, q: u16, v: u16) {
        let (avail, size) = (self.vqs[q as usize].avail, self.vqs[q as usize].size);
        self.write_mem(avail + 4 + 2 * u64::from(size), &v.to_le_bytes());
    }

    pub fn notify(&mut self, q: u16) -> IrqAction {
        self.write_reg(reg::QUEUE_NOTIFY, u32::from(q))
    }

    /// Notifies queue `q` while the guest hands every chain back as soon as the device returns
    /// it ([`Recycler`]). Returns the interrupt action and how many chains were handed back.
    pub fn notify_recycling(&mut self, q: u16) -> (IrqAction, usize) {
        let vq = &self.vqs[q as usize];
        let mut mem = Recycler {
            ram: GuestRam::new(GuestPhysAddr(RAM_BASE), &mut self.ram),
            avail: vq.avail,
            used: vq.used,
            size: vq.size,
            avail_idx: vq.avail_idx,
            reposted: 0,
        };
        let r = self.t.write(&mut mem, reg::QUEUE_NOTIFY, 4, u64::from(q));
        let (avail_idx, reposted) = (mem.avail_idx, mem.reposted);
        self.vqs[q as usize].avail_idx = avail_idx;
        let a = self.count(r.expect("notify"));
        (a, reposted)
    }

    /// The next used element `(id, len)`, freeing its descriptors.
    pub fn pop_used(&mut self, q: u16) -> Option<(u32, u32)> {
        let (used, size, seen) = {
            let vq = &self.vqs[q as usize];
            (vq.used, vq.size, vq.used_seen)
        };
        let idx = self.read_u16(used + 2);
        if idx == seen {
            return None;
        }
        let slot = u64::from(seen % size);
        let id = self.read_u32(used + 4 + 8 * slot);
        let len = self.read_u32(used + 8 + 8 * slot);
        let vq = &mut self.vqs[q as usize];
        vq.used_seen = seen.wrapping_add(1);
        if let Some(descs) = vq.chains.remove(&(id as u16)) {
            vq.free.extend(descs);
        }
        Some((id, len))
    }

    /// Acknowledges every pending interrupt.
    pub fn ack_irq(&mut self) -> u32 {
        let s = self.r32(reg::INTERRUPT_STATUS);
        self.w32(reg::INTERRUPT_ACK, s);
        s
    }
}

/// Guest RAM of a driver that runs on another core and makes every chain available again as
/// soon as the device publishes it in the used ring (each used-index write republishes the
/// element's chain): however long the device keeps popping, there is always more.
pub struct Recycler<'a> {
    pub ram: GuestRam<'a>,
    pub avail: u64,
    pub used: u64,
    pub size: u16,
    pub avail_idx: u16,
    /// Chains made available again.
    pub reposted: usize,
}

impl GuestMemory for Recycler<'_> {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), vmm_core::memory::MemError> {
        self.ram.read(gpa, buf)
    }
    fn write(&mut self, gpa: GuestPhysAddr, buf: &[u8]) -> Result<(), vmm_core::memory::MemError> {
        self.ram.write(gpa, buf)?;
        if let (true, &[lo, hi]) = (gpa.0 == self.used + 2, buf) {
            let slot = u64::from(u16::from_le_bytes([lo, hi]).wrapping_sub(1) % self.size);
            let id = self.ram.read_u32(GuestPhysAddr(self.used + 4 + 8 * slot))? as u16;
            let at = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
            self.ram.write(GuestPhysAddr(at), &id.to_le_bytes())?;
            self.avail_idx = self.avail_idx.wrapping_add(1);
            self.ram
                .write(GuestPhysAddr(self.avail + 2), &self.avail_idx.to_le_bytes())?;
            self.reposted += 1;
        }
        Ok(())
    }
}

/// The result of one block request.
#[derive(Debug)]
pub struct BlkDone {
    pub status: u8,
    pub data: Vec<u8>,
    pub used_len: u32,
}

/// A posted block request.
#[derive(Debug)]
pub struct Posted {
    pub head: u16,
    pub ins: Vec<Seg>,
    pub status: u64,
}

pub type BlkEnv<'a> = Env<BlkDevice<MemDisk<'a>>>;

pub fn blk_env<'a>(
    disk: &'a mut [u8],
    staging: &'a mut [u8],
    mode: CompletionMode,
    config: BlkConfig,
) -> BlkEnv<'a> {
    blk_env_with(disk, staging, mode, config, 0)
}

/// [`blk_env`] with `extra` driver features besides VERSION_1, FLUSH and BLK_SIZE.
pub fn blk_env_with<'a>(
    disk: &'a mut [u8],
    staging: &'a mut [u8],
    mode: CompletionMode,
    config: BlkConfig,
    extra: u64,
) -> BlkEnv<'a> {
    let dev = BlkDevice::new(MemDisk::new(disk, staging, mode), config).expect("device");
    let mut env = Env::new(dev, 1 << 20);
    assert!(env.init(
        VERSION_1 | blk::feature::FLUSH | blk::feature::BLK_SIZE | extra,
        128
    ));
    env
}

impl BlkEnv<'_> {
    /// Completes every deferred backend operation, newest first if `reverse`.
    pub fn drain(&mut self, reverse: bool) {
        loop {
            let n = self.t.device().backend().pending().len();
            if n == 0 {
                break;
            }
            let i = if reverse { n - 1 } else { 0 };
            let c: Completion = self.t.device_mut().backend_mut().complete(i).unwrap();
            let _ = self.event(c);
        }
    }

    /// Builds a request: header (split at `hsplit` if given), outgoing data split into
    /// `out_split` segment sizes, `in_len` incoming bytes split into `in_split`, status byte.
    /// Returns the segments and the addresses of the incoming data and the status byte.
    pub fn build(
        &mut self,
        ty: u32,
        sector: u64,
        out: &[u8],
        in_len: usize,
        split: &[usize],
    ) -> (Vec<Seg>, Vec<Seg>, u64) {
        let mut hdr = [0u8; 16];
        hdr[..4].copy_from_slice(&ty.to_le_bytes());
        hdr[8..].copy_from_slice(&sector.to_le_bytes());
        let h = self.alloc(16);
        self.write_mem(h, &hdr);
        let mut segs = vec![Seg {
            addr: h,
            len: 16,
            write: false,
        }];
        let mut ins = Vec::new();
        for (bytes, len, write) in [(out, out.len(), false), (&[][..], in_len, true)] {
            let mut off = 0;
            let mut k = 0;
            while off < len {
                let want = split.get(k).copied().unwrap_or(usize::MAX).max(1);
                k += 1;
                let n = want.min(len - off);
                let a = self.alloc(n);
                if !write {
                    self.write_mem(a, &bytes[off..off + n]);
                }
                let s = Seg {
                    addr: a,
                    len: n as u32,
                    write,
                };
                segs.push(s);
                if write {
                    ins.push(s);
                }
                off += n;
            }
        }
        let st = self.alloc(1);
        self.write_mem(st, &[0xff]);
        segs.push(Seg {
            addr: st,
            len: 1,
            write: true,
        });
        (segs, ins, st)
    }

    /// Runs one request to completion (draining a deferred backend).
    pub fn request(
        &mut self,
        ty: u32,
        sector: u64,
        out: &[u8],
        in_len: usize,
        split: &[usize],
    ) -> BlkDone {
        let posted = self.post_request(ty, sector, out, in_len, split);
        let _ = self.notify(0);
        self.drain(false);
        self.reap(&posted)
    }

    /// Builds and posts a request without notifying.
    pub fn post_request(
        &mut self,
        ty: u32,
        sector: u64,
        out: &[u8],
        in_len: usize,
        split: &[usize],
    ) -> Posted {
        let (segs, ins, status) = self.build(ty, sector, out, in_len, split);
        let head = self.post(0, &segs);
        Posted { head, ins, status }
    }

    /// Takes every used element published so far, whatever their order, into `into` (head →
    /// used length).
    pub fn collect_used(&mut self, into: &mut std::collections::HashMap<u32, u32>) {
        while let Some((id, len)) = self.pop_used(0) {
            assert!(into.insert(id, len).is_none(), "head {id} used twice");
        }
    }

    /// `p`'s results, from the used elements [`Self::collect_used`] took.
    pub fn results(&mut self, p: &Posted, used: &std::collections::HashMap<u32, u32>) -> BlkDone {
        let used_len = *used.get(&u32::from(p.head)).expect("request completed");
        self.done(p, used_len)
    }

    /// Takes the next used element, which must be `p`'s, and reads its results.
    pub fn reap(&mut self, p: &Posted) -> BlkDone {
        let (id, used_len) = self.pop_used(0).expect("request completed");
        assert_eq!(id, u32::from(p.head));
        self.done(p, used_len)
    }

    /// `p`'s status byte and incoming data, with the used length the device reported.
    fn done(&mut self, p: &Posted, used_len: u32) -> BlkDone {
        let status = self.read_mem(p.status, 1)[0];
        let mut data = Vec::new();
        for s in &p.ins {
            data.extend(self.read_mem(s.addr, s.len as usize));
        }
        BlkDone {
            status,
            data,
            used_len,
        }
    }
    pub fn read(&mut self, sector: u64, len: usize) -> BlkDone {
        self.request(blk::req_type::IN, sector, &[], len, &[])
    }
    pub fn write(&mut self, sector: u64, data: &[u8]) -> BlkDone {
        self.request(blk::req_type::OUT, sector, data, 0, &[])
    }
}

pub type NetEnv = Env<NetDevice<MemNet>>;

/// A live virtio-net device over a [`MemNet`], queues of `queue_size`, every feature offered
/// acknowledged.
pub fn net_env(config: NetConfig, queue_size: u16) -> NetEnv {
    let dev = NetDevice::new(MemNet::default(), config).expect("device");
    let mut env = Env::new(dev, 4 << 20);
    assert!(env.init(u64::MAX, queue_size));
    env
}

/// A transmit buffer: the 12-byte header (`gso_type` as given, the rest zero) and `frame`.
pub fn tx_bytes(frame: &[u8], gso_type: u8) -> Vec<u8> {
    let mut b = vec![0u8; net::HDR_LEN];
    b[1] = gso_type;
    b.extend_from_slice(frame);
    b
}

impl<B: NetBackend> Env<NetDevice<B>> {
    /// Posts a transmit chain of `frame` behind a header, split into `split` segment sizes.
    pub fn post_tx(&mut self, frame: &[u8], split: &[usize]) -> u16 {
        let segs = self.segments(&tx_bytes(frame, 0), split, false);
        self.post(net::TRANSMITQ, &segs)
    }
    /// Posts a receive chain of `size` bytes split into `split`; its head and segments.
    pub fn post_rx(&mut self, size: usize, split: &[usize]) -> (u16, Vec<Seg>) {
        let segs = self.segments(&vec![0xee; size], split, true);
        (self.post(net::RECEIVEQ, &segs), segs)
    }
}

/// Deterministic test bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
