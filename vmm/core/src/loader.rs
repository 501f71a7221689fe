//! Linux arm64 boot: this module owns parsing the kernel `Image` header and validating the
//! flattened device tree (FDT) header, placing kernel, DTB and optional initrd in guest RAM
//! ([`BootLayout`]), copying them through [`GuestMemory`], and the boot vCPU state
//! ([`BootState`]), all per Linux `Documentation/arch/arm64/booting.rst`:
//!
//! - Image header (64 bytes, little endian): `code0`, `code1`, `text_offset` at 8, `image_size`
//!   at 16, `flags` at 24, `res2..res4`, magic `"ARM\x64"` (0x644d5241) at 56, `res5`. An
//!   `image_size` of 0 marks a kernel older than v3.17: `text_offset` is then 0x80000 and the
//!   size is the file length. Flags: bit 0 endianness (big-endian kernels are refused), bits 1-2
//!   page size, bit 3 physical placement (0: as close as possible to the base of RAM, which is
//!   what the layout does anyway; 1: anywhere within the 48-bit physical range).
//! - The kernel goes at a 2 MiB-aligned base + `text_offset`, with `max(image_size, file length)`
//!   bytes free from there.
//! - The DTB must be 8-byte aligned and at most 2 MiB. Older versions of the document also
//!   required it not to cross a 2 MiB boundary and to lie within 512 MiB of the kernel start; the
//!   current document dropped both. This layout keeps the 2 MiB rule for every DTB (automatic
//!   placement puts it at a 2 MiB boundary right after the kernel, so the 512 MiB rule also holds
//!   for any kernel smaller than 510 MiB), and does not enforce the 512 MiB rule on an explicit
//!   placement.
//! - The initrd must lie, together with the kernel image, inside a 1 GiB-aligned window of at most
//!   32 GiB. Automatic placement puts it 4 KiB-aligned right after the kernel when it fits below
//!   the DTB's 2 MiB boundary, else 4 KiB-aligned after the DTB.
//! - Entry: x0 = DTB address, x1..x3 = 0, PC = kernel load address, EL1h with DAIF masked
//!   (PSTATE 0x3c5), MMU and caches off.
//!
//! With an initrd, the DTB written to guest RAM is the given one patched by
//! [`crate::fdt_patch`]: its `/chosen` node gets `linux,initrd-start` and `linux,initrd-end` for
//! the initrd's final place (replacing any such properties, creating `/chosen` if needed). The
//! layout is planned for the exact size of the patched blob (a dry run of the patch), so
//! [`BootLayout::dtb`] covers exactly the bytes written. Without an initrd the DTB's `totalsize`
//! bytes are copied unchanged, and `/chosen` (bootargs) is the caller's.
//!
//! Every input is untrusted: each bad image, DTB or layout is a typed error, no arithmetic can
//! overflow and no slice index can panic.

use crate::addr::{GpaRange, GuestPhysAddr};
use crate::fdt_patch::{self, ChosenPatch, PatchError};
use crate::memory::{GuestMemory, MemError};
use crate::vcpu::{SysReg, Vcpu, VcpuError, VcpuState};

/// 2 MiB, the kernel base alignment and the DTB boundary.
pub const SZ_2M: u64 = 0x20_0000;
/// Alignment of an automatically placed initrd.
pub const INITRD_ALIGN: u64 = 0x1000;
/// Size of the arm64 Image header.
pub const IMAGE_HEADER_LEN: usize = 64;
/// The Image magic, "ARM\x64" read as a little-endian `u32`.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// `text_offset` assumed for kernels whose `image_size` is 0 (before v3.17).
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
/// The FDT magic (stored big-endian).
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// The largest DTB Linux arm64 accepts.
pub const FDT_MAX_SIZE: u64 = SZ_2M;
/// Required DTB alignment.
pub const FDT_ALIGN: u64 = 8;
/// PSTATE at kernel entry: EL1h (M = 0b0101) with D, A, I and F masked.
pub const BOOT_PSTATE: u64 = 0x3c5;
/// SCTLR_EL1 at kernel entry: MMU, alignment check and caches off, little-endian, with the bits
/// that are RES1 in ARMv8.0 (11, 20, 22, 23, 28, 29) set.
pub const BOOT_SCTLR_EL1: u64 = 0x30d0_0800;
/// Physical placement flag 1 requires the image below 2^48.
const PA_48_BITS: u64 = 1 << 48;
/// The initrd/kernel window of booting.rst.
const INITRD_WINDOW_ALIGN: u64 = 1 << 30;
const INITRD_WINDOW_SIZE: u64 = 32 << 30;

/// The page size a kernel was built for (flags bits 1-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageSize {
    /// Not stated.
    Unspecified,
    /// 4 KiB.
    K4,
    /// 16 KiB.
    K16,
    /// 64 KiB.
    K64,
}

/// Where the kernel wants its 2 MiB-aligned base (flags bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhysPlacement {
    /// As close as possible to the base of RAM.
    NearRamBase,
    /// Anywhere, as long as the whole image lies below 2^48.
    Anywhere48Bit,
}

/// The fields of a valid Image header, with the pre-v3.17 defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the load address from its 2 MiB-aligned base.
    pub text_offset: u64,
    /// Bytes the kernel needs from its load address: `max(image_size, file length)` (the file
    /// length alone for a legacy header).
    pub effective_size: u64,
    /// The raw `image_size` field (0 for a legacy kernel).
    pub image_size: u64,
    /// The raw `flags` field.
    pub flags: u64,
    /// Flags bits 1-2.
    pub page_size: PageSize,
    /// Flags bit 3.
    pub placement: PhysPlacement,
    /// Whether this is a legacy (pre-v3.17, `image_size == 0`) header.
    pub legacy: bool,
}

/// Why an Image was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than the 64-byte header.
    Truncated {
        /// Bytes given.
        len: usize,
    },
    /// The magic at offset 56 is not "ARM\x64".
    BadMagic(u32),
    /// Flags bit 0: the kernel is big-endian.
    BigEndian,
    /// `text_offset` is not a multiple of 4, so the entry point could not hold an instruction.
    MisalignedTextOffset(u64),
}

fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

fn be_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes(s.try_into().ok()?))
}

fn be_u64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_be_bytes(s.try_into().ok()?))
}

/// Parses and checks the header of the arm64 Image `bytes` (the whole file).
pub fn parse_image(bytes: &[u8]) -> Result<ImageHeader, ImageError> {
    let trunc = ImageError::Truncated { len: bytes.len() };
    if bytes.len() < IMAGE_HEADER_LEN {
        return Err(trunc);
    }
    let magic = le_u32(bytes, 56).ok_or(trunc)?;
    if magic != IMAGE_MAGIC {
        return Err(ImageError::BadMagic(magic));
    }
    let raw_text_offset = le_u64(bytes, 8).ok_or(trunc)?;
    let image_size = le_u64(bytes, 16).ok_or(trunc)?;
    let flags = le_u64(bytes, 24).ok_or(trunc)?;
    if flags & 1 != 0 {
        return Err(ImageError::BigEndian);
    }
    let legacy = image_size == 0;
    let text_offset = if legacy {
        LEGACY_TEXT_OFFSET
    } else {
        raw_text_offset
    };
    if !text_offset.is_multiple_of(4) {
        return Err(ImageError::MisalignedTextOffset(text_offset));
    }
    let file_len = bytes.len() as u64;
    let page_size = match (flags >> 1) & 3 {
        0 => PageSize::Unspecified,
        1 => PageSize::K4,
        2 => PageSize::K16,
        _ => PageSize::K64,
    };
    let placement = if flags & (1 << 3) == 0 {
        PhysPlacement::NearRamBase
    } else {
        PhysPlacement::Anywhere48Bit
    };
    Ok(ImageHeader {
        text_offset,
        effective_size: image_size.max(file_len),
        image_size,
        flags,
        page_size,
        placement,
        legacy,
    })
}

/// The fields of a valid FDT header (all converted from big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdtHeader {
    /// Size of the whole blob: the bytes the loader copies when there is no initrd (with one, it
    /// writes the patched blob, see [`crate::fdt_patch`]).
    pub totalsize: u32,
    /// Offset of the structure block.
    pub off_dt_struct: u32,
    /// Offset of the strings block.
    pub off_dt_strings: u32,
    /// Offset of the memory reservation block.
    pub off_mem_rsvmap: u32,
    /// Format version.
    pub version: u32,
    /// Oldest version this blob is compatible with.
    pub last_comp_version: u32,
    /// Physical id of the boot CPU.
    pub boot_cpuid_phys: u32,
    /// Size of the strings block.
    pub size_dt_strings: u32,
    /// Size of the structure block (0 for a version-16 header, which lacks the field).
    pub size_dt_struct: u32,
}

/// An FDT block, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdtBlock {
    /// Memory reservation block.
    MemRsvmap,
    /// Structure block.
    Struct,
    /// Strings block.
    Strings,
}

/// Why a DTB was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdtError {
    /// Fewer bytes than the header or `totalsize` needs.
    Truncated {
        /// Bytes needed.
        need: u64,
        /// Bytes given.
        len: usize,
    },
    /// Not 0xd00dfeed.
    BadMagic(u32),
    /// `version < 16`, `last_comp_version > 17`, or `last_comp_version > version`.
    BadVersion {
        /// The `version` field.
        version: u32,
        /// The `last_comp_version` field.
        last_comp_version: u32,
    },
    /// `totalsize` above 2 MiB.
    TooLarge(u32),
    /// `totalsize` smaller than the header.
    TooSmall(u32),
    /// A block lies (partly) outside `[header end, totalsize)`, or is misaligned.
    BadBlock(FdtBlock),
    /// The memory reservation map has no terminating (0, 0) entry inside the blob.
    UnterminatedRsvmap,
    /// The structure block does not start with FDT_BEGIN_NODE.
    BadStructStart(u32),
}

/// Validates the FDT header of `bytes` (which may be longer than `totalsize`).
pub fn parse_fdt(bytes: &[u8]) -> Result<FdtHeader, FdtError> {
    let len = bytes.len();
    let need = |n: u64| FdtError::Truncated { need: n, len };
    let word = |i: usize| be_u32(bytes, i * 4).ok_or(need(((i + 1) * 4) as u64));
    let magic = word(0)?;
    if magic != FDT_MAGIC {
        return Err(FdtError::BadMagic(magic));
    }
    let version = word(5)?;
    let last_comp_version = word(6)?;
    if version < 16 || last_comp_version > 17 || last_comp_version > version {
        return Err(FdtError::BadVersion {
            version,
            last_comp_version,
        });
    }
    let header_len: u32 = if version >= 17 { 40 } else { 36 };
    let h = FdtHeader {
        totalsize: word(1)?,
        off_dt_struct: word(2)?,
        off_dt_strings: word(3)?,
        off_mem_rsvmap: word(4)?,
        version,
        last_comp_version,
        boot_cpuid_phys: word(7)?,
        size_dt_strings: word(8)?,
        size_dt_struct: if version >= 17 { word(9)? } else { 0 },
    };
    let total = u64::from(h.totalsize);
    if total > FDT_MAX_SIZE {
        return Err(FdtError::TooLarge(h.totalsize));
    }
    if h.totalsize < header_len {
        return Err(FdtError::TooSmall(h.totalsize));
    }
    if total > len as u64 {
        return Err(need(total));
    }
    // Only the `totalsize` bytes count from here on.
    let blob = bytes.get(..h.totalsize as usize).ok_or(need(total))?;
    let within = |off: u32, size: u64, align: u32, block: FdtBlock| {
        let end = u64::from(off)
            .checked_add(size)
            .ok_or(FdtError::BadBlock(block))?;
        if off < header_len || end > total || !off.is_multiple_of(align) {
            return Err(FdtError::BadBlock(block));
        }
        Ok(())
    };
    within(h.off_mem_rsvmap, 16, 8, FdtBlock::MemRsvmap)?;
    within(
        h.off_dt_struct,
        u64::from(h.size_dt_struct.max(4)),
        4,
        FdtBlock::Struct,
    )?;
    within(
        h.off_dt_strings,
        u64::from(h.size_dt_strings),
        1,
        FdtBlock::Strings,
    )?;
    // The reservation map: (address, size) pairs up to a (0, 0) entry, inside the blob.
    let mut off = h.off_mem_rsvmap as usize;
    loop {
        let addr = be_u64(blob, off).ok_or(FdtError::UnterminatedRsvmap)?;
        let size = be_u64(blob, off.saturating_add(8)).ok_or(FdtError::UnterminatedRsvmap)?;
        if addr == 0 && size == 0 {
            break;
        }
        off = off.saturating_add(16);
    }
    let first =
        be_u32(blob, h.off_dt_struct as usize).ok_or(FdtError::BadBlock(FdtBlock::Struct))?;
    const FDT_BEGIN_NODE: u32 = 1;
    if first != FDT_BEGIN_NODE {
        return Err(FdtError::BadStructStart(first));
    }
    Ok(h)
}

/// Where to put the DTB or the initrd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Place {
    /// The first suitable place after what is already placed (kernel first, then explicit
    /// placements): 2 MiB-aligned for the DTB, 4 KiB-aligned for the initrd.
    #[default]
    Auto,
    /// Exactly here (for a DTB whose `/chosen` was written for fixed addresses).
    At(GuestPhysAddr),
}

/// Placement wishes for [`plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayoutRequest {
    /// DTB placement.
    pub dtb: Place,
    /// Initrd placement (ignored without an initrd).
    pub initrd: Place,
}

/// One of the things the loader places, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blob {
    /// The kernel image (from its load address, `effective_size` bytes).
    Kernel,
    /// The device tree blob (`totalsize` bytes).
    Dtb,
    /// The initial ramdisk.
    Initrd,
}

/// Why no layout could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// The blob (or, for automatic placement, every candidate place) does not lie inside RAM.
    OutsideRam(Blob),
    /// Two blobs would overlap.
    Overlap(Blob, Blob),
    /// The DTB is larger than 2 MiB.
    TooLarge(Blob),
    /// A zero-sized blob (an empty initrd).
    Empty(Blob),
    /// The DTB address is not a multiple of 8.
    MisalignedDtb(GuestPhysAddr),
    /// The DTB crosses a 2 MiB boundary.
    DtbCrosses2M(GuestPhysAddr),
    /// Kernel and initrd do not fit one 1 GiB-aligned window of at most 32 GiB.
    InitrdWindow,
    /// The kernel asks for placement below 2^48 (flags bit 3) and does not fit there.
    Beyond48Bit,
}

/// Where everything goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootLayout {
    /// Guest RAM.
    pub ram: GpaRange,
    /// The kernel: from its load address (the entry point), `effective_size` bytes.
    pub kernel: GpaRange,
    /// The DTB: `totalsize` bytes of the blob written (the patched one when there is an
    /// initrd).
    pub dtb: GpaRange,
    /// The initrd, if any.
    pub initrd: Option<GpaRange>,
}

impl BootLayout {
    /// The kernel entry point (its load address).
    pub fn entry(&self) -> GuestPhysAddr {
        self.kernel.start()
    }
    /// The boot vCPU state for this layout.
    pub fn boot_state(&self) -> BootState {
        BootState::new(self.entry(), self.dtb.start())
    }
}

const fn align_up(v: u64, align: u64) -> Option<u64> {
    match v.checked_add(align - 1) {
        Some(x) => Some(x & !(align - 1)),
        None => None,
    }
}

fn range(start: u64, size: u64, what: Blob) -> Result<GpaRange, LayoutError> {
    GpaRange::new(GuestPhysAddr(start), size).map_err(|_| LayoutError::OutsideRam(what))
}

fn inside(ram: &GpaRange, r: &GpaRange) -> bool {
    ram.contains(r.start()) && ram.contains(r.last())
}

/// Checks the DTB-specific rules for a DTB at `r`.
fn dtb_rules(r: &GpaRange) -> Result<(), LayoutError> {
    if !r.start().raw().is_multiple_of(FDT_ALIGN) {
        return Err(LayoutError::MisalignedDtb(r.start()));
    }
    if r.start().raw() / SZ_2M != r.last().raw() / SZ_2M {
        return Err(LayoutError::DtbCrosses2M(r.start()));
    }
    Ok(())
}

/// Places `what` (`size` bytes) per `place`: at the given address, or at the first
/// `align`-aligned candidate after the end of one of `placed` (in ascending order) that lies in
/// RAM, overlaps nothing and passes `rules`.
fn place_blob(
    ram: &GpaRange,
    placed: &[(Blob, GpaRange)],
    what: Blob,
    size: u64,
    place: Place,
    align: u64,
    rules: fn(&GpaRange) -> Result<(), LayoutError>,
) -> Result<GpaRange, LayoutError> {
    let check = |r: &GpaRange| -> Result<(), LayoutError> {
        if !inside(ram, r) {
            return Err(LayoutError::OutsideRam(what));
        }
        rules(r)?;
        if let Some((other, _)) = placed.iter().find(|(_, p)| p.overlaps(r)) {
            return Err(LayoutError::Overlap(*other, what));
        }
        Ok(())
    };
    match place {
        Place::At(at) => {
            let r = range(at.raw(), size, what)?;
            check(&r)?;
            Ok(r)
        }
        Place::Auto => {
            // At most three placed blobs: try each end in ascending order.
            let mut ends = [u64::MAX; 3];
            for (slot, (_, p)) in ends.iter_mut().zip(placed.iter()) {
                *slot = p.last().raw();
            }
            ends.sort_unstable();
            for last in ends.iter().copied().filter(|&e| e != u64::MAX) {
                let Some(start) = last.checked_add(1).and_then(|e| align_up(e, align)) else {
                    continue;
                };
                if let Ok(r) = range(start, size, what)
                    && check(&r).is_ok()
                {
                    return Ok(r);
                }
            }
            Err(LayoutError::OutsideRam(what))
        }
    }
}

/// Computes where kernel, DTB and initrd go in `ram`, without touching memory.
///
/// The kernel goes at the first 2 MiB boundary at or above the RAM base, plus `text_offset`.
/// Then the explicitly placed blobs are checked, then the automatic ones are placed.
pub fn plan(
    ram: GpaRange,
    image: &ImageHeader,
    dtb_size: u64,
    initrd_size: Option<u64>,
    req: LayoutRequest,
) -> Result<BootLayout, LayoutError> {
    let base = align_up(ram.start().raw(), SZ_2M).ok_or(LayoutError::OutsideRam(Blob::Kernel))?;
    let load = base
        .checked_add(image.text_offset)
        .ok_or(LayoutError::OutsideRam(Blob::Kernel))?;
    let kernel = range(load, image.effective_size.max(1), Blob::Kernel)?;
    if !inside(&ram, &kernel) {
        return Err(LayoutError::OutsideRam(Blob::Kernel));
    }
    if image.placement == PhysPlacement::Anywhere48Bit && kernel.last().raw() >= PA_48_BITS {
        return Err(LayoutError::Beyond48Bit);
    }
    if dtb_size > FDT_MAX_SIZE {
        return Err(LayoutError::TooLarge(Blob::Dtb));
    }
    if dtb_size == 0 {
        return Err(LayoutError::Empty(Blob::Dtb));
    }
    if initrd_size == Some(0) {
        return Err(LayoutError::Empty(Blob::Initrd));
    }
    let mut placed: heapless::Vec<(Blob, GpaRange), 3> = heapless::Vec::new();
    let full = LayoutError::Overlap(Blob::Kernel, Blob::Kernel); // unreachable: 3 slots, 3 blobs
    placed.push((Blob::Kernel, kernel)).map_err(|_| full)?;
    let fixed_first = matches!(req.initrd, Place::At(_)) && matches!(req.dtb, Place::Auto);
    let mut dtb = None;
    let mut initrd = None;
    let dtb_align = SZ_2M;
    for step in 0..2 {
        let do_dtb = (step == 0) != fixed_first;
        if do_dtb {
            let r = place_blob(
                &ram,
                &placed,
                Blob::Dtb,
                dtb_size,
                req.dtb,
                dtb_align,
                dtb_rules,
            )?;
            placed.push((Blob::Dtb, r)).map_err(|_| full)?;
            dtb = Some(r);
        } else if let Some(size) = initrd_size {
            let r = place_blob(
                &ram,
                &placed,
                Blob::Initrd,
                size,
                req.initrd,
                INITRD_ALIGN,
                |_| Ok(()),
            )?;
            placed.push((Blob::Initrd, r)).map_err(|_| full)?;
            initrd = Some(r);
        }
    }
    let dtb = dtb.ok_or(LayoutError::OutsideRam(Blob::Dtb))?;
    if let Some(i) = initrd {
        let lo = kernel.start().raw().min(i.start().raw()) & !(INITRD_WINDOW_ALIGN - 1);
        let hi = kernel.last().raw().max(i.last().raw());
        if hi - lo >= INITRD_WINDOW_SIZE {
            return Err(LayoutError::InitrdWindow);
        }
    }
    Ok(BootLayout {
        ram,
        kernel,
        dtb,
        initrd,
    })
}

/// The boot vCPU's registers at kernel entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootState {
    /// PC: the kernel load address.
    pub pc: u64,
    /// x0: the DTB address (x1..x3 are 0).
    pub x0: u64,
    /// PSTATE: [`BOOT_PSTATE`].
    pub pstate: u64,
    /// SCTLR_EL1: [`BOOT_SCTLR_EL1`] (MMU and caches off).
    pub sctlr_el1: u64,
}

impl BootState {
    /// Entry at `entry` with the DTB at `dtb`.
    pub const fn new(entry: GuestPhysAddr, dtb: GuestPhysAddr) -> Self {
        Self {
            pc: entry.raw(),
            x0: dtb.raw(),
            pstate: BOOT_PSTATE,
            sctlr_el1: BOOT_SCTLR_EL1,
        }
    }
    /// Writes the state into `vcpu`: x0, x1..x3 = 0, PC, PSTATE, SCTLR_EL1.
    pub fn apply<V: Vcpu + ?Sized>(&self, vcpu: &mut V) -> Result<(), VcpuError> {
        vcpu.set_gpr(0, self.x0)?;
        for n in 1..=3 {
            vcpu.set_gpr(n, 0)?;
        }
        vcpu.set_pc(self.pc)?;
        vcpu.set_pstate(self.pstate)?;
        vcpu.set_sysreg(SysReg::SctlrEl1, self.sctlr_el1)
    }
    /// The state as a fresh [`VcpuState`] (all other registers zero).
    pub fn vcpu_state(&self) -> VcpuState {
        let mut v = VcpuState::default();
        // Infallible on `VcpuState` (registers 0..=3 exist).
        let _ = self.apply(&mut v);
        v
    }
}

/// Why loading failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// The kernel Image.
    Image(ImageError),
    /// The DTB.
    Fdt(FdtError),
    /// The DTB could not be patched for the initrd (its structure block is invalid, or the
    /// patched blob is too large).
    Patch(PatchError),
    /// The placement.
    Layout(LayoutError),
    /// A copy into guest memory (only if `ram` does not describe `mem`).
    Mem(MemError),
}

impl From<ImageError> for LoadError {
    fn from(e: ImageError) -> Self {
        LoadError::Image(e)
    }
}
impl From<FdtError> for LoadError {
    fn from(e: FdtError) -> Self {
        LoadError::Fdt(e)
    }
}
impl From<PatchError> for LoadError {
    fn from(e: PatchError) -> Self {
        LoadError::Patch(e)
    }
}
impl From<LayoutError> for LoadError {
    fn from(e: LayoutError) -> Self {
        LoadError::Layout(e)
    }
}
impl From<MemError> for LoadError {
    fn from(e: MemError) -> Self {
        LoadError::Mem(e)
    }
}

/// Parses `kernel` and `dtb`, plans the layout in `ram`, copies the kernel file, the DTB and the
/// initrd into `mem`, and returns the layout and the boot vCPU state. Without an initrd the DTB's
/// `totalsize` bytes are copied unchanged; with one, the DTB written is patched with the initrd's
/// guest-physical start and end (exclusive) in `/chosen` (see [`crate::fdt_patch`]). Nothing is
/// written unless parsing, patching (as a dry run) and planning succeed.
pub fn load<M: GuestMemory + ?Sized>(
    mem: &mut M,
    ram: GpaRange,
    kernel: &[u8],
    dtb: &[u8],
    initrd: Option<&[u8]>,
    req: LayoutRequest,
) -> Result<(BootLayout, BootState), LoadError> {
    let p = prepare_all(ram, kernel, dtb, initrd, req)?;
    let layout = p.layout;
    mem.write(layout.kernel.start(), kernel)?;
    match p.initrd_range {
        None => {
            let dtb_bytes = dtb
                .get(..p.fdt.totalsize as usize)
                .ok_or(FdtError::Truncated {
                    need: u64::from(p.fdt.totalsize),
                    len: dtb.len(),
                })?;
            mem.write(layout.dtb.start(), dtb_bytes)?;
        }
        Some((start, end)) => {
            let mut sink = GuestSink {
                mem: &mut *mem,
                base: layout.dtb.start(),
                size: layout.dtb.size(),
                err: None,
            };
            let written = fdt_patch::patch_to(dtb, &ChosenPatch::initrd(start, end), &mut sink)
                .map_err(|e| sink.err.map_or(LoadError::Patch(e), LoadError::Mem))?;
            // The same blob as the dry run: the size cannot differ.
            if written as u64 != layout.dtb.size() {
                return Err(LoadError::Patch(PatchError::Sink {
                    offset: written,
                    len: 0,
                }));
            }
        }
    }
    if let (Some(r), Some(bytes)) = (layout.initrd, initrd) {
        mem.write(r.start(), bytes)?;
    }
    Ok((layout, layout.boot_state()))
}

/// Writes the patched DTB into guest memory, never beyond the planned DTB range.
struct GuestSink<'m, M: GuestMemory + ?Sized> {
    mem: &'m mut M,
    base: GuestPhysAddr,
    size: u64,
    /// The first guest-memory error, reported instead of [`PatchError::Sink`].
    err: Option<MemError>,
}

impl<M: GuestMemory + ?Sized> fdt_patch::Sink for GuestSink<'_, M> {
    fn put(&mut self, off: usize, bytes: &[u8]) -> Result<(), PatchError> {
        let refused = PatchError::Sink {
            offset: off,
            len: bytes.len(),
        };
        let end = (off as u64)
            .checked_add(bytes.len() as u64)
            .ok_or(refused)?;
        if end > self.size {
            return Err(refused);
        }
        let gpa = self.base.checked_add(off as u64).ok_or(refused)?;
        self.mem.write(gpa, bytes).map_err(|e| {
            self.err.get_or_insert(e);
            refused
        })
    }
}

/// Everything [`load`] needs before writing.
struct Prepared {
    image: ImageHeader,
    fdt: FdtHeader,
    layout: BootLayout,
    /// The initrd's `[start, end)` for `/chosen`, when there is an initrd.
    initrd_range: Option<(u64, u64)>,
}

fn prepare_all(
    ram: GpaRange,
    kernel: &[u8],
    dtb: &[u8],
    initrd: Option<&[u8]>,
    req: LayoutRequest,
) -> Result<Prepared, LoadError> {
    let image = parse_image(kernel)?;
    let fdt = parse_fdt(dtb)?;
    let initrd_size = initrd.map(|i| i.len() as u64);
    // The patched size does not depend on the addresses, so a dry run with placeholders sizes
    // the DTB range before the initrd is placed. An empty initrd is left to `plan` to refuse.
    let dtb_size = match initrd_size {
        Some(n) if n > 0 => fdt_patch::patched_size(dtb, &ChosenPatch::initrd(0, 0))? as u64,
        _ => u64::from(fdt.totalsize),
    };
    let layout = plan(ram, &image, dtb_size, initrd_size, req)?;
    let initrd_range = match layout.initrd {
        Some(r) => {
            let end = r
                .last()
                .raw()
                .checked_add(1)
                .ok_or(LayoutError::OutsideRam(Blob::Initrd))?;
            Some((r.start().raw(), end))
        }
        None => None,
    };
    Ok(Prepared {
        image,
        fdt,
        layout,
        initrd_range,
    })
}

/// Parsing and planning of [`load`], without writing: the Image header, the FDT header (of the
/// given DTB) and the layout (whose DTB range has the size of the blob [`load`] writes: patched
/// when there is an initrd).
pub fn prepare(
    ram: GpaRange,
    kernel: &[u8],
    dtb: &[u8],
    initrd: Option<&[u8]>,
    req: LayoutRequest,
) -> Result<(ImageHeader, FdtHeader, BootLayout), LoadError> {
    let p = prepare_all(ram, kernel, dtb, initrd, req)?;
    Ok((p.image, p.fdt, p.layout))
}
