//! Test doubles for the device backends, for host tests of this crate and of the VMM: an
//! in-memory disk of 4096-byte blocks ([`MemDisk`]) that completes operations at once or on
//! request (in any order), with injectable failures, a console of byte queues
//! ([`MemConsole`]) with adjustable transmit room, and a network port of frame queues
//! ([`MemNet`]) with adjustable transmit room, two of which [`wire`] connects. None of them
//! allocates.

use heapless::{Deque, Vec};

use crate::blk::{
    BackendError, BackendOp, BlockBackend, Completion, StorageInfo, Submitted, UNIT_SIZE,
};
use crate::console::ConsoleBackend;
use crate::net::{MAX_FRAME_LEN, NetBackend, TxFull};

/// When [`MemDisk`] completes operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionMode {
    /// Inside `submit` ([`Submitted::Completed`]).
    Immediate,
    /// When the test calls [`MemDisk::complete`] ([`Submitted::Pending`]).
    Deferred,
}

/// Counters of what the disk was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskStats {
    /// Read operations.
    pub reads: u64,
    /// Write operations.
    pub writes: u64,
    /// Flush operations.
    pub flushes: u64,
    /// Blocks read.
    pub blocks_read: u64,
    /// Blocks written.
    pub blocks_written: u64,
}

/// Most operations a deferred [`MemDisk`] holds.
pub const MAX_PENDING: usize = crate::blk::MAX_OUTSTANDING;

/// An in-memory disk of `disk.len() / 4096` blocks with its own staging buffer.
pub struct MemDisk<'a> {
    disk: &'a mut [u8],
    staging: &'a mut [u8],
    mode: CompletionMode,
    pending: Vec<BackendOp, MAX_PENDING>,
    read_only: bool,
    /// Operations touching a block in this range fail with [`BackendError::Io`].
    pub fail_blocks: Option<core::ops::Range<u64>>,
    /// Flushes fail.
    pub fail_flush: bool,
    /// Counters.
    pub stats: DiskStats,
}

impl<'a> MemDisk<'a> {
    /// A disk over `disk` (a whole number of 4096-byte blocks is used) with staging buffer
    /// `staging`.
    pub fn new(disk: &'a mut [u8], staging: &'a mut [u8], mode: CompletionMode) -> Self {
        MemDisk {
            disk,
            staging,
            mode,
            pending: Vec::new(),
            read_only: false,
            fail_blocks: None,
            fail_flush: false,
            stats: DiskStats::default(),
        }
    }
    /// Makes the storage read-only (reported through [`StorageInfo`]).
    pub fn set_read_only(&mut self, ro: bool) {
        self.read_only = ro;
    }
    /// The disk contents.
    pub fn contents(&self) -> &[u8] {
        self.disk
    }
    /// Operations submitted and not completed yet (deferred mode).
    pub fn pending(&self) -> &[BackendOp] {
        &self.pending
    }
    /// Performs the `n`-th pending operation (0 = oldest) and returns its completion.
    pub fn complete(&mut self, n: usize) -> Option<Completion> {
        if n >= self.pending.len() {
            return None;
        }
        let op = self.pending.remove(n);
        let result = self.perform(op);
        Some(Completion {
            tag: op.tag(),
            result,
        })
    }

    fn blocks(&self) -> u64 {
        self.disk.len() as u64 / UNIT_SIZE
    }

    fn transfer(
        &mut self,
        block: u64,
        count: u32,
        offset: usize,
        write: bool,
    ) -> Result<(), BackendError> {
        let end = block
            .checked_add(u64::from(count))
            .ok_or(BackendError::Io)?;
        if count == 0 || end > self.blocks() {
            return Err(BackendError::Io);
        }
        if let Some(f) = &self.fail_blocks
            && block < f.end
            && f.start < end
        {
            return Err(BackendError::Io);
        }
        let len = count as usize * UNIT_SIZE as usize;
        let d0 = block as usize * UNIT_SIZE as usize;
        let disk = self.disk.get_mut(d0..d0 + len).ok_or(BackendError::Io)?;
        let staging = self
            .staging
            .get_mut(offset..offset.checked_add(len).ok_or(BackendError::Io)?)
            .ok_or(BackendError::Io)?;
        if write {
            if self.read_only {
                return Err(BackendError::Io);
            }
            disk.copy_from_slice(staging);
            self.stats.blocks_written += u64::from(count);
        } else {
            staging.copy_from_slice(disk);
            self.stats.blocks_read += u64::from(count);
        }
        Ok(())
    }

    fn perform(&mut self, op: BackendOp) -> Result<(), BackendError> {
        match op {
            BackendOp::Read {
                block,
                count,
                offset,
                ..
            } => {
                self.stats.reads += 1;
                self.transfer(block, count, offset, false)
            }
            BackendOp::Write {
                block,
                count,
                offset,
                ..
            } => {
                self.stats.writes += 1;
                self.transfer(block, count, offset, true)
            }
            BackendOp::Flush { .. } => {
                self.stats.flushes += 1;
                if self.fail_flush {
                    Err(BackendError::Io)
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl BlockBackend for MemDisk<'_> {
    fn info(&self) -> StorageInfo {
        StorageInfo {
            blocks: self.blocks(),
            read_only: self.read_only,
        }
    }
    fn staging(&mut self) -> &mut [u8] {
        self.staging
    }
    fn submit(&mut self, op: BackendOp) -> Result<Submitted, BackendError> {
        match self.mode {
            CompletionMode::Immediate => self.perform(op).map(|()| Submitted::Completed),
            CompletionMode::Deferred => self
                .pending
                .push(op)
                .map(|()| Submitted::Pending)
                .map_err(|_| BackendError::Unavailable),
        }
    }
}

/// Capacity of [`MemConsole`]'s queues.
pub const CONSOLE_BUFFER: usize = 4096;

/// A console backend of two byte queues.
pub struct MemConsole {
    tx: Vec<u8, CONSOLE_BUFFER>,
    rx: Deque<u8, CONSOLE_BUFFER>,
    /// Bytes the transmit side still takes before it reports itself full.
    pub tx_room: usize,
}

impl Default for MemConsole {
    fn default() -> Self {
        MemConsole {
            tx: Vec::new(),
            rx: Deque::new(),
            tx_room: usize::MAX,
        }
    }
}

impl MemConsole {
    /// Bytes the guest sent so far.
    pub fn sent(&self) -> &[u8] {
        &self.tx
    }
    /// Queues bytes for the guest; returns how many fitted.
    pub fn push_rx(&mut self, bytes: &[u8]) -> usize {
        bytes
            .iter()
            .take_while(|&&b| self.rx.push_back(b).is_ok())
            .count()
    }
    /// Bytes not yet delivered to the guest.
    pub fn rx_pending(&self) -> usize {
        self.rx.len()
    }
}

impl ConsoleBackend for MemConsole {
    fn write(&mut self, bytes: &[u8]) -> usize {
        let mut n = 0;
        for &b in bytes {
            if self.tx_room == 0 || self.tx.push(b).is_err() {
                break;
            }
            self.tx_room = self.tx_room.saturating_sub(1);
            n += 1;
        }
        n
    }
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        for slot in buf.iter_mut() {
            match self.rx.pop_front() {
                Some(b) => {
                    *slot = b;
                    n += 1;
                }
                None => break,
            }
        }
        n
    }
}

/// Frames each of [`MemNet`]'s queues holds.
pub const NET_QUEUE_FRAMES: usize = 16;

/// One frame as [`MemNet`] stores it.
pub type Frame = Vec<u8, MAX_FRAME_LEN>;

/// A network backend of two frame queues: what the guest sent ([`MemNet::take_sent`]) and what
/// it is to receive ([`MemNet::push_rx`]). Transmitting reports [`TxFull`] when the sent queue
/// holds [`NET_QUEUE_FRAMES`] frames or `tx_room` is used up.
pub struct MemNet {
    sent: Deque<Frame, NET_QUEUE_FRAMES>,
    rx: Deque<Frame, NET_QUEUE_FRAMES>,
    /// Frames the transmit side still takes before it reports itself full.
    pub tx_room: usize,
    /// Length `receive` reports instead of the frame's (a broken backend), once.
    pub bad_rx_len: Option<usize>,
}

impl Default for MemNet {
    fn default() -> Self {
        MemNet {
            sent: Deque::new(),
            rx: Deque::new(),
            tx_room: usize::MAX,
            bad_rx_len: None,
        }
    }
}

impl MemNet {
    /// The oldest frame the guest sent and nobody took yet.
    pub fn take_sent(&mut self) -> Option<Frame> {
        self.sent.pop_front()
    }
    /// Frames sent and not taken.
    pub fn sent_pending(&self) -> usize {
        self.sent.len()
    }
    /// Queues a frame for the guest (any length up to [`MAX_FRAME_LEN`]); `false` if the
    /// receive queue is full or the frame too long.
    pub fn push_rx(&mut self, frame: &[u8]) -> bool {
        Frame::from_slice(frame)
            .ok()
            .is_some_and(|f| self.rx.push_back(f).is_ok())
    }
    /// Frames not yet delivered to the guest.
    pub fn rx_pending(&self) -> usize {
        self.rx.len()
    }
}

impl NetBackend for MemNet {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), TxFull> {
        if self.tx_room == 0 || self.sent.is_full() {
            return Err(TxFull);
        }
        let f = Frame::from_slice(frame).map_err(|_| TxFull)?;
        self.sent.push_back(f).map_err(|_| TxFull)?;
        self.tx_room = self.tx_room.saturating_sub(1);
        Ok(())
    }
    fn receive(&mut self, buf: &mut [u8; MAX_FRAME_LEN]) -> Option<usize> {
        let f = self.rx.pop_front()?;
        let n = f.len().min(MAX_FRAME_LEN);
        buf[..n].copy_from_slice(&f[..n]);
        Some(self.bad_rx_len.take().unwrap_or(n))
    }
}

/// A wire between two ports: moves every frame `a` sent into `b`'s receive queue and the other
/// way round, as far as the receive queues have room (the rest stays sent, in order). Returns
/// how many frames moved `(a → b, b → a)`.
pub fn wire(a: &mut MemNet, b: &mut MemNet) -> (usize, usize) {
    fn carry(from: &mut MemNet, to: &mut MemNet) -> usize {
        let mut n = 0;
        while !to.rx.is_full() {
            let Some(f) = from.sent.pop_front() else {
                break;
            };
            // `to.rx` is not full: the push succeeds.
            let _ = to.rx.push_back(f);
            n += 1;
        }
        n
    }
    (carry(a, b), carry(b, a))
}
