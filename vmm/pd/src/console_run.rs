//! Console runs: after an exit on the PL011's registers, the VMM carries the vCPU on through its
//! own code with the A64 interpreter ([`vmm_core::interp`]) instead of resuming it at once, so
//! that a guest printing through a polled UART (Linux's PL011 console: an FR read and a DR write
//! per byte, each an exit) makes one exit per run of bytes, not two per byte.
//!
//! A run reads the whole register context, SP_EL1 and the stage-1 controls once, then steps the
//! interpreter over guest memory seen through the guest's own translation tables:
//! - instruction fetches only from pages EL1 may execute; loads from guest RAM; stores only to
//!   guest RAM that EL1 may write and may not execute (so no store changes code the run has
//!   decoded); accesses to the console's registers go to the console model
//!   through the same [`Platform`] calls an exit makes; any other address stops the run before
//!   the instruction;
//! - only at EL1h in AArch64 state, in the translation half of the PC (the other half's TTBR is
//!   not read), and for at most [`BUDGET`] instructions;
//! - the instruction it stops at (unsupported, refused, out of budget) is where the vCPU
//!   resumes and runs natively; every step is all or nothing, so nothing of it happened yet.
//!
//! Speed (vmm/pd/BENCHMARKS.md, "Linux guest"): decoded blocks outlive runs ([`Runs`]); a run's
//! TLB (two-way, 32 entries) holds, for each page, where its accesses go: a RAM page as a
//! [`microkit_rt::Page`] read and written directly, the console's page straight to the
//! console model, anything else through the handler tree; the code page of the last fetch is
//! kept apart.
//!
//! The CPU's features matter for the hint space: [`GUEST_CPU`] says the guest runs on a
//! Cortex-A53 (the CPU the SDK's qemu_virt_aarch64 kernel is built for), which has neither
//! FEAT_PAuth nor FEAT_BTI, so PACIASP/AUTIASP and BTI are NOPs there.

use crate::devices::{DeviceId, PlatformCtx};
use crate::guest_memory::Window;
use microkit_rt::{Kernel, Page};
use vmm_core::addr::{GuestPhysAddr, GuestVirtAddr};
use vmm_core::classify::Platform;
use vmm_core::handlers::{HandlerKind, HandlerTree, LookupError};
use vmm_core::interp::{self, Cpu, DecodeCache, Features, Stop};
use vmm_core::memory::GuestMemory;
use vmm_core::stage1::{self, AccessKind, MmuConfig, Translation};
use vmm_core::vcpu::{ALL_GPRS, Vcpu};

/// The most instructions one run executes (a record of about 80 bytes of Linux's console loop
/// is some 4,000; the vCPU's interrupts wait while it runs).
pub const BUDGET: u32 = 4096;

/// The guest's CPU: a Cortex-A53 (ARMv8.0-A).
pub const GUEST_CPU: Features = Features {
    pauth: false,
    bti: false,
};

/// PSTATE.M for EL1 with SP_EL1 (EL1h), AArch64.
const EL1H: u64 = 0b0101;

/// Counters of the console runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Runs started.
    pub runs: u64,
    /// Instructions they executed.
    pub instructions: u64,
    /// Runs that ended at an instruction the interpreter does not execute.
    pub unsupported: u64,
    /// Runs that ended at an access it does not make (not RAM, not the console, not allowed).
    pub refused: u64,
    /// Runs that ended on their budget.
    pub budget: u64,
    /// Runs not started: the vCPU not at EL1h, or a register it could not read.
    pub skipped: u64,
    /// Stage-1 walks the runs made (their TLB's misses).
    pub walks: u64,
    /// The instruction words runs stopped at most often (unsupported ones), with their counts:
    /// what the interpreter would need next to run further.
    pub stopped_at: [(u32, u64); 4],
}

impl RunStats {
    /// Every counter zero.
    pub const ZERO: RunStats = RunStats {
        runs: 0,
        instructions: 0,
        unsupported: 0,
        refused: 0,
        budget: 0,
        skipped: 0,
        walks: 0,
        stopped_at: [(0, 0); 4],
    };

    /// Counts a stop at instruction `word`: a word already kept gains one, else it takes the
    /// place of the least counted.
    fn stopped(&mut self, word: u32) {
        if let Some(e) = self.stopped_at.iter_mut().find(|e| e.1 > 0 && e.0 == word) {
            e.1 = e.1.saturating_add(1);
        } else if let Some(e) = self.stopped_at.iter_mut().min_by_key(|e| e.1) {
            *e = (word, 1);
        }
    }
}

/// Decoded instructions kept across runs, and their block entries (the least the cache
/// takes without the feature: nothing runs).
const DECODED: usize = if cfg!(feature = "console-runs") {
    256
} else {
    1
};
const BLOCKS: usize = if cfg!(feature = "console-runs") {
    64
} else {
    2
};

/// What the runs keep between exits: their counters and the decoded instructions.
pub struct Runs {
    /// The counters.
    pub stats: RunStats,
    cache: DecodeCache<DECODED, BLOCKS>,
}

impl Runs {
    /// Instructions the runs decoded (the decode cache's misses).
    pub fn decoded(&self) -> u64 {
        self.cache.decoded
    }

    /// Times the decoded-instruction pool was full and dropped.
    pub fn flushes(&self) -> u64 {
        self.cache.flushes
    }

    /// No run yet.
    pub const fn new() -> Self {
        Runs {
            stats: RunStats::ZERO,
            cache: DecodeCache::new(GUEST_CPU),
        }
    }
}

impl Default for Runs {
    fn default() -> Self {
        Self::new()
    }
}

/// A translation the run made, kept for the rest of the run (the guest cannot change its
/// tables' effect within it: invalidating a TLB entry is an instruction the run does not take).
#[derive(Clone, Copy)]
struct TlbEntry<'a> {
    /// The VA page, with bit 0 set for an instruction fetch's translation.
    key: u64,
    gpa_page: u64,
    writable: bool,
    executable: bool,
    /// Where the page's accesses go.
    target: Target,
    /// The page in the RAM window, for a [`Target::Ram`] page: the fast path.
    page: Option<Page<'a>>,
}

/// Where the accesses to a page go, found once per page and run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Plain guest RAM (no access handler covers a byte of the page), in the run's RAM window
    /// at this offset (the page's first byte).
    Ram(usize),
    /// Plain guest RAM outside the RAM window (or the window is not used): through the
    /// guest-memory accessor.
    Plain,
    /// The console's registers cover the whole page; the page's first byte is at this offset
    /// of their range.
    Console(u64),
    /// Anything else (another handler's range, or one that covers part of the page): each
    /// access looked up on its own.
    Mixed,
}

impl Target {
    const fn plain(self) -> bool {
        matches!(self, Target::Ram(_) | Target::Plain)
    }
}

/// Where one data access goes.
#[derive(Clone, Copy)]
enum Route {
    /// Guest RAM at this address, through the guest-memory accessor.
    Memory(GuestPhysAddr),
    /// The console's register at this offset.
    Console(u64),
}

/// Translations a run keeps (two-way set-associative).
const TLB: usize = 32;

/// Guest memory as the interpreter sees it during one run.
struct RunMemory<'a, 'p, K: Kernel, M: GuestMemory, const N: usize> {
    cfg: MmuConfig,
    /// Main RAM, reached directly (only while the guest's caches are on: no maintenance).
    ram: Option<&'a Window>,
    /// VA bit 55 of the PC: the half whose TTBR `cfg` holds.
    upper: bool,
    mem: &'a mut M,
    tree: &'a HandlerTree<DeviceId, N>,
    platform: &'a mut PlatformCtx<'p, K>,
    tlb: [TlbEntry<'a>; TLB],
    /// The VA page of the last instruction fetch ([`NO_PAGE`]: none yet) and its
    /// guest-physical page.
    code_page: u64,
    code_gpa: u64,
    /// Where the code page's fetches go.
    code: Target,
    /// The code page in the RAM window.
    code_ref: Option<Page<'a>>,
    /// Stage-1 walks made.
    walks: u64,
}

/// A key no page has (page keys have bits 11..1 clear): an empty TLB slot, no code page yet.
const NO_PAGE: u64 = u64::MAX;

/// An empty TLB slot.
const NO_ENTRY: TlbEntry<'static> = TlbEntry {
    key: NO_PAGE,
    gpa_page: 0,
    writable: false,
    executable: false,
    target: Target::Mixed,
    page: None,
};

impl<'a, K: Kernel, M: GuestMemory, const N: usize> RunMemory<'a, '_, K, M, N> {
    /// The TLB slot that translates `va`'s page for `kind`, walking the guest's tables on a
    /// miss; `None` where the run may not go (the other half of the address space, an access
    /// across a page, no translation).
    #[inline(always)]
    fn slot(&mut self, va: u64, len: u8, kind: AccessKind) -> Option<usize> {
        // The other half's TTBR was not read; an access across a page needs two walks.
        if (va >> 55) & 1 != self.upper as u64 || (va & 0xfff) + u64::from(len) > 0x1000 {
            return None;
        }
        let key = (va & !0xfff) | (kind == AccessKind::Fetch) as u64;
        // Two ways a set; the sets on the VA's page number folded, so that pages a few MiB
        // apart (code, stack, the log buffer, the UART's mapping) rarely share one.
        let page = va >> 12;
        let set = ((page ^ page >> 5 ^ page >> 10 ^ key) as usize % (TLB / 2)) * 2;
        match self.tlb.get(set..set + 2) {
            Some([a, _]) if a.key == key => Some(set),
            Some([_, b]) if b.key == key => Some(set + 1),
            _ => self.fill(va, key, kind, set),
        }
    }

    /// A TLB miss: walks the guest's tables and puts the page's entry first in its set (the
    /// one there moves to the second way).
    #[inline(never)]
    fn fill(&mut self, va: u64, key: u64, kind: AccessKind, set: usize) -> Option<usize> {
        self.walks += 1;
        let t: Translation =
            stage1::translate(&self.cfg, &*self.mem, GuestVirtAddr(va), kind).ok()?;
        let gpa_page = t.gpa.raw() & !0xfff;
        let target = self.page_target(gpa_page);
        let page = match (target, self.ram) {
            (Target::Ram(off), Some(w)) => w.region.page(off),
            _ => None,
        };
        let e = TlbEntry {
            key,
            gpa_page,
            writable: t.el1_writable(),
            executable: t.el1_executable(self.cfg.sctlr),
            target,
            page,
        };
        let pair = self.tlb.get_mut(set..set + 2)?;
        pair[1] = pair[0];
        pair[0] = e;
        Some(set)
    }

    /// The entry of a data access at `va` (see [`Self::slot`]).
    #[inline(always)]
    fn data(&mut self, va: u64, len: u8) -> Result<TlbEntry<'a>, Stop> {
        self.slot(va, len, AccessKind::Data)
            .and_then(|i| self.tlb.get(i).copied())
            .ok_or(Stop::Memory { va, len })
    }

    /// Where the accesses to the page at `gpa_page` go.
    fn page_target(&self, gpa_page: u64) -> Target {
        match self.tree.lookup_access(GuestPhysAddr(gpa_page), 0x1000) {
            Err(LookupError::NoHandler { .. }) => self
                .ram
                .and_then(|w| {
                    let off = usize::try_from(gpa_page.checked_sub(w.gpa)?).ok()?;
                    (off.checked_add(0x1000)? <= w.region.size()).then_some(Target::Ram(off))
                })
                .unwrap_or(Target::Plain),
            Ok(a) if a.kind() == HandlerKind::All && *a.handler() == DeviceId::Console => {
                Target::Console(a.offset())
            }
            _ => Target::Mixed,
        }
    }

    /// Where an access at `gpa` on a page of mixed targets goes: guest RAM (no handler there),
    /// the console's register at this offset (a single register of at most 4 bytes), or
    /// nowhere the run may go (any other handler's range: a WRITE range's stores, another
    /// device's registers).
    fn mixed(&self, gpa: GuestPhysAddr, len: u8) -> Result<Option<u64>, ()> {
        match self.tree.lookup_access(gpa, u64::from(len)) {
            Err(LookupError::NoHandler { .. }) => Ok(None),
            Ok(a)
                if a.kind() == HandlerKind::All
                    && *a.handler() == DeviceId::Console
                    && len <= 4 =>
            {
                Ok(Some(a.offset()))
            }
            _ => Err(()),
        }
    }

    /// Where a data access goes, past the RAM window.
    fn route(&self, e: &TlbEntry, va: u64, len: u8) -> Result<Route, Stop> {
        let refused = Stop::Memory { va, len };
        let within = va & 0xfff;
        let gpa = GuestPhysAddr(e.gpa_page | within);
        Ok(match e.target {
            Target::Ram(_) | Target::Plain => Route::Memory(gpa),
            Target::Console(base) if len <= 4 => Route::Console(base + within),
            Target::Console(_) => return Err(refused),
            Target::Mixed => match self.mixed(gpa, len) {
                Ok(Some(offset)) => Route::Console(offset),
                Ok(None) => Route::Memory(gpa),
                Err(()) => return Err(refused),
            },
        })
    }

    /// A load from anywhere but the RAM window.
    #[inline(never)]
    fn load_slow(&mut self, e: &TlbEntry, va: u64, len: u8) -> Result<u128, Stop> {
        let refused = Stop::Memory { va, len };
        match self.route(e, va, len)? {
            Route::Memory(gpa) => {
                let lo = self.mem.load_le(gpa, len.min(8)).map_err(|_| refused)?;
                if len <= 8 {
                    return Ok(u128::from(lo));
                }
                let hi = self
                    .mem
                    .load_le(GuestPhysAddr(gpa.raw().wrapping_add(8)), len - 8)
                    .map_err(|_| refused)?;
                Ok(u128::from(lo) | u128::from(hi) << 64)
            }
            Route::Console(offset) => self
                .platform
                .mmio_read(&DeviceId::Console, offset, len)
                .map(u128::from)
                .map_err(|_| refused),
        }
    }

    /// A store to anywhere but the RAM window (the page's permissions already checked).
    #[inline(never)]
    fn store_slow(&mut self, e: &TlbEntry, va: u64, len: u8, value: u128) -> Result<(), Stop> {
        let refused = Stop::Memory { va, len };
        match self.route(e, va, len)? {
            Route::Memory(gpa) => {
                // A pair: the upper half first (see `store`).
                if len > 8 {
                    let hi = GuestPhysAddr(gpa.raw().wrapping_add(8));
                    self.mem
                        .store_le(hi, len - 8, (value >> 64) as u64)
                        .map_err(|_| refused)?;
                }
                self.mem
                    .store_le(gpa, len.min(8), value as u64)
                    .map_err(|_| refused)
            }
            Route::Console(offset) => self
                .platform
                .mmio_write(&DeviceId::Console, offset, len, value as u64)
                .map_err(|_| refused),
        }
    }
}

impl<'a, K: Kernel, M: GuestMemory, const N: usize> RunMemory<'a, '_, K, M, N> {
    /// Where a data access at `va` goes on the fast paths: its page in the RAM window (for a
    /// store, one EL1 may write and not execute), or the console's register at this offset (for
    /// a store, on a page EL1 may write); anything else takes the general path.
    #[inline(always)]
    fn fast(&mut self, va: u64, len: u8, store: bool) -> Fast<'a> {
        let Some(e) = self
            .slot(va, len, AccessKind::Data)
            .and_then(|i| self.tlb.get(i))
        else {
            return Fast::Slow;
        };
        if store && !e.writable {
            return Fast::Slow;
        }
        if let Some(p) = e.page {
            return if store && e.executable {
                Fast::Slow
            } else {
                Fast::Page(p)
            };
        }
        match e.target {
            Target::Console(base) if len <= 4 => Fast::Console(base + (va & 0xfff)),
            _ => Fast::Slow,
        }
    }

    /// A load from the console's register at `offset` (the access at `va`).
    #[inline(never)]
    fn console_load(&mut self, _va: u64, offset: u64, _len: u8) -> Result<u64, Stop> {
        Ok(self.platform.console_read(offset))
    }

    /// A store to the console's register at `offset` (the access at `va`).
    #[inline(never)]
    fn console_store(&mut self, va: u64, offset: u64, len: u8, value: u64) -> Result<(), Stop> {
        self.platform
            .mmio_write(&DeviceId::Console, offset, len, value)
            .map_err(|_| Stop::Memory { va, len })
    }
}

/// See [`RunMemory::fast`].
enum Fast<'a> {
    Page(Page<'a>),
    Console(u64),
    Slow,
}

impl<'a, K: Kernel, M: GuestMemory, const N: usize> interp::Memory for RunMemory<'a, '_, K, M, N> {
    #[inline(never)]
    fn load(&mut self, va: u64, len: u8) -> Result<u128, Stop> {
        let refused = Stop::Memory { va, len };
        let e = self.data(va, len)?;
        let (Target::Ram(off), Some(w)) = (e.target, self.ram) else {
            return self.load_slow(&e, va, len);
        };
        // A pair's 16 bytes lie in one page (`slot`), so in the window.
        let off = off + (va & 0xfff) as usize;
        let lo = w.region.read_le(off, len.min(8)).map_err(|_| refused)?;
        if len <= 8 {
            return Ok(u128::from(lo));
        }
        let hi = w.region.read_le(off + 8, len - 8).map_err(|_| refused)?;
        Ok(u128::from(lo) | u128::from(hi) << 64)
    }

    #[inline(never)]
    fn store(&mut self, va: u64, len: u8, value: u128) -> Result<(), Stop> {
        let refused = Stop::Memory { va, len };
        let e = self.data(va, len)?;
        // Nothing the run stores may be code it already fetched: executable pages are refused
        // (Linux's text is not writable anyway), unless they are the console's registers (a run
        // fetches only from RAM). A guest that maps its devices executable (or runs with its MMU
        // off, where every page is) still writes its console in the run.
        if !e.writable || (e.executable && !matches!(e.target, Target::Console(_))) {
            return Err(refused);
        }
        let (Target::Ram(off), Some(w)) = (e.target, self.ram) else {
            return self.store_slow(&e, va, len, value);
        };
        // A pair: the upper half first, so that a refusal leaves nothing written (the lower
        // half, in the same page, cannot fail after it).
        let off = off + (va & 0xfff) as usize;
        if len > 8 {
            w.region
                .write_le(off + 8, len - 8, (value >> 64) as u64)
                .map_err(|_| refused)?;
        }
        w.region
            .write_le(off, len.min(8), value as u64)
            .map_err(|_| refused)
    }

    #[inline(always)]
    fn load_small(&mut self, va: u64, len: u8) -> Result<u64, Stop> {
        match self.fast(va, len, false) {
            Fast::Page(p) => {
                if let Some(v) = p.read_le((va & 0xfff) as usize, len) {
                    return Ok(v);
                }
            }
            Fast::Console(offset) => return self.console_load(va, offset, len),
            Fast::Slow => {}
        }
        self.load(va, len).map(|v| v as u64)
    }

    #[inline(always)]
    fn load_fixed<const L: u8>(&mut self, va: u64) -> Result<u64, Stop> {
        match self.fast(va, L, false) {
            Fast::Page(p) => {
                if let Some(v) = p.read_fixed::<L>((va & 0xfff) as usize) {
                    return Ok(v);
                }
            }
            Fast::Console(offset) => return self.console_load(va, offset, L),
            Fast::Slow => {}
        }
        self.load(va, L).map(|v| v as u64)
    }

    #[inline(always)]
    fn load_pair(&mut self, va: u64) -> Result<(u64, u64), Stop> {
        // Both halves lie in the page (`slot`), so in the window.
        let within = (va & 0xfff) as usize;
        if let Fast::Page(p) = self.fast(va, 16, false)
            && let (Some(lo), Some(hi)) = (p.read_le(within, 8), p.read_le(within + 8, 8))
        {
            return Ok((lo, hi));
        }
        self.load(va, 16).map(|v| (v as u64, (v >> 64) as u64))
    }

    #[inline(always)]
    fn store_pair(&mut self, va: u64, lo: u64, hi: u64) -> Result<(), Stop> {
        // The upper half first: a refusal leaves nothing written (the lower half, in the same
        // page of the window, cannot fail after it).
        let within = (va & 0xfff) as usize;
        if let Fast::Page(p) = self.fast(va, 16, true)
            && p.write_le(within + 8, 8, hi)
            && p.write_le(within, 8, lo)
        {
            return Ok(());
        }
        self.store(va, 16, u128::from(lo) | u128::from(hi) << 64)
    }

    #[inline(always)]
    fn store_small(&mut self, va: u64, len: u8, value: u64) -> Result<(), Stop> {
        match self.fast(va, len, true) {
            Fast::Page(p) => {
                if p.write_le((va & 0xfff) as usize, len, value) {
                    return Ok(());
                }
            }
            Fast::Console(offset) => return self.console_store(va, offset, len, value),
            Fast::Slow => {}
        }
        self.store(va, len, u128::from(value))
    }

    fn same_code(&mut self, va: u64, words: &[u32]) -> Result<bool, Stop> {
        // The first word through `fetch` (which finds the code page), the rest straight from
        // the page when it is in the RAM window.
        let Some((&first, rest)) = words.split_first() else {
            return Ok(true);
        };
        if self.fetch(va)? != first {
            return Ok(false);
        }
        let within = (va & 0xfff) as usize;
        match self.code_ref {
            Some(p) => Ok(rest
                .iter()
                .enumerate()
                .all(|(k, &w)| p.read_fixed::<4>(within + 4 * (k + 1)) == Some(u64::from(w)))),
            None => {
                for (k, &w) in rest.iter().enumerate() {
                    match self.fetch(va.wrapping_add(4 * (k as u64 + 1))) {
                        Ok(now) if now == w => {}
                        _ => return Ok(false),
                    }
                }
                Ok(true)
            }
        }
    }

    fn fetch(&mut self, va: u64) -> Result<u32, Stop> {
        let refused = Stop::Fetch(va);
        // The page of the last fetch, already translated and found executable plain RAM.
        if va & !0xfff != self.code_page {
            let e = self
                .slot(va, 4, AccessKind::Fetch)
                .and_then(|i| self.tlb.get(i).copied())
                .ok_or(refused)?;
            if !e.executable || !e.target.plain() {
                return Err(refused);
            }
            self.code_page = va & !0xfff;
            self.code = e.target;
            self.code_gpa = e.gpa_page;
            self.code_ref = e.page;
        }
        let within = va & 0xfff;
        match (self.code, self.ram) {
            (Target::Ram(off), Some(w)) => w
                .region
                .read_le(off + within as usize, 4)
                .map(|v| v as u32)
                .map_err(|_| refused),
            _ => self
                .mem
                .load_le(GuestPhysAddr(self.code_gpa | within), 4)
                .map(|w| w as u32)
                .map_err(|_| refused),
        }
    }
}

/// Runs the vCPU whose registers `regs` holds on from its (already advanced) PC, and leaves
/// the registers the run changed in `regs` for its write-back.
/// `coherent` is told whether the guest runs with its MMU and data cache on (SCTLR_EL1.M and
/// .C, read for the run): then its RAM needs no cache maintenance for the rest of the exit.
pub fn run<K: Kernel, V: Vcpu, M: GuestMemory, const N: usize>(
    regs: &mut V,
    mem: &mut M,
    ram: &Window,
    coherent: impl FnOnce(bool),
    tree: &HandlerTree<DeviceId, N>,
    platform: &mut PlatformCtx<'_, K>,
    runs: &mut Runs,
) {
    let stats = &mut runs.stats;
    regs.expect_gprs(ALL_GPRS);
    let Some(start) = snapshot(regs) else {
        stats.skipped = stats.skipped.saturating_add(1);
        return;
    };
    let (cpu, pstate) = start;
    let Ok(cfg) = MmuConfig::read_for(regs, GuestVirtAddr(cpu.pc)) else {
        stats.skipped = stats.skipped.saturating_add(1);
        return;
    };
    let caches_on = crate::guest_memory::caches_on(cfg.sctlr);
    coherent(caches_on);
    let mut memory = RunMemory {
        cfg,
        ram: caches_on.then_some(ram),
        upper: (cpu.pc >> 55) & 1 == 1,
        mem,
        tree,
        platform,
        tlb: [NO_ENTRY; TLB],
        code_page: NO_PAGE,
        code_gpa: 0,
        code: Target::Mixed,
        code_ref: None,
        walks: 0,
    };
    let mut after = cpu;
    let (n, stop) = interp::run(&mut after, &mut memory, BUDGET, &mut runs.cache);
    stats.walks = stats.walks.saturating_add(memory.walks);
    stats.runs = stats.runs.saturating_add(1);
    stats.instructions = stats.instructions.saturating_add(u64::from(n));
    let counter = match stop {
        Stop::Budget => &mut stats.budget,
        Stop::Unsupported(_) | Stop::Unpredictable(_) => &mut stats.unsupported,
        Stop::Memory { .. } | Stop::SpAlignment | Stop::Fetch(_) => &mut stats.refused,
    };
    *counter = counter.saturating_add(1);
    if let Stop::Unsupported(w) = stop {
        stats.stopped(w);
    }
    if n > 0 {
        commit(regs, &cpu, &after, pstate);
    }
}

/// The vCPU's state as the interpreter takes it, and its PSTATE; `None` unless it is at EL1h
/// in AArch64 state and every register reads.
fn snapshot<V: Vcpu>(regs: &mut V) -> Option<(Cpu, u64)> {
    let pstate = regs.pstate().ok()?;
    if pstate & 0x1f != EL1H {
        return None;
    }
    let mut cpu = Cpu {
        pc: regs.pc().ok()?,
        sp: regs.sp().ok()?,
        nzcv: ((pstate >> 28) & 0xf) as u8,
        ..Cpu::default()
    };
    for (n, x) in cpu.x.iter_mut().enumerate() {
        *x = regs.gpr(n as u8).ok()?;
    }
    Some((cpu, pstate))
}

/// Hands what the run changed to `regs` (written back with the exit's other changes).
fn commit<V: Vcpu>(regs: &mut V, before: &Cpu, after: &Cpu, pstate: u64) {
    for (n, (b, a)) in before.x.iter().zip(after.x.iter()).enumerate() {
        if b != a {
            let _ = regs.set_gpr(n as u8, *a);
        }
    }
    if before.sp != after.sp {
        let _ = regs.set_sp(after.sp);
    }
    if before.nzcv != after.nzcv {
        let _ = regs.set_pstate((pstate & !(0xf << 28)) | u64::from(after.nzcv) << 28);
    }
    let _ = regs.set_pc(after.pc);
}
