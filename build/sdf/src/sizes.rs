//! Each PD's memory: its ELF's loadable segments (text, rodata, data, bss, and the 4 KiB pages
//! the Microkit tool allocates for them, segment by segment), its stack and IPC buffer, and the
//! memory regions system.xml maps into it, by kind. `pd-sizes` prints it against the size goals
//! (issue 14: the VMM without its guest under 256 KiB, each driver PD under 64 KiB).
//!
//! The ELF reader is the few lines it takes to read an ELF64 little-endian file's program
//! headers (the only format the PDs are built in); anything else is an error, never a guess.

use crate::model::System;

/// Page size the Microkit tool maps PD images, stacks and IPC buffers with.
pub const PAGE: u64 = 0x1000;
/// The IPC buffer: one page per PD.
pub const IPC_BUFFER: u64 = PAGE;
/// Goal for the VMM PD's own memory without its guest (issue 14 item 7).
pub const VMM_GOAL: u64 = 256 * 1024;
/// Goal for each driver PD's own memory.
pub const DRIVER_GOAL: u64 = 64 * 1024;

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;

/// One PT_LOAD program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address.
    pub vaddr: u64,
    /// Offset of its bytes in the file.
    pub offset: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory (filesz, then zeroes).
    pub memsz: u64,
    /// PF_* flags (1 execute, 2 write, 4 read).
    pub flags: u32,
}

impl Segment {
    /// 4 KiB pages the segment spans (what the Microkit tool allocates for it), when `memsz`
    /// bytes are loaded at `vaddr`.
    pub fn pages(&self) -> u64 {
        pages_spanned(self.vaddr, self.memsz)
    }
}

/// Pages spanned by `len` bytes at `vaddr` (0 for an empty range).
pub fn pages_spanned(vaddr: u64, len: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    let start = vaddr / PAGE;
    let end = (vaddr + len).div_ceil(PAGE);
    end - start
}

/// Why a file is not an ELF this tool reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfError(pub String);

impl std::fmt::Display for ElfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `len` little-endian bytes of `bytes` at `at`, as a number.
pub(crate) fn field(bytes: &[u8], at: u64, len: usize) -> Result<u64, ElfError> {
    let at = usize::try_from(at).map_err(|_| ElfError(format!("offset {at:#x} too large")))?;
    let b = at
        .checked_add(len)
        .and_then(|end| bytes.get(at..end))
        .ok_or_else(|| ElfError(format!("truncated: {len} bytes at {at:#x}")))?;
    Ok(b.iter().rev().fold(0, |v, &x| v << 8 | u64::from(x)))
}

/// The PT_LOAD segments of an ELF64 little-endian file, in header order.
pub fn load_segments(bytes: &[u8]) -> Result<Vec<Segment>, ElfError> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err(ElfError("not an ELF file (no \\x7fELF magic)".into()));
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err(ElfError("not ELF64 little-endian".into()));
    }
    let phoff = field(bytes, 0x20, 8)?;
    let phentsize = field(bytes, 0x36, 2)?;
    let phnum = field(bytes, 0x38, 2)?;
    if phentsize < 0x38 {
        return Err(ElfError(format!("program header size {phentsize} < 56")));
    }
    let mut segs = vec![];
    for i in 0..phnum {
        let h = phoff + i * phentsize;
        if field(bytes, h, 4)? as u32 != PT_LOAD {
            continue;
        }
        let seg = Segment {
            flags: field(bytes, h + 4, 4)? as u32,
            offset: field(bytes, h + 8, 8)?,
            vaddr: field(bytes, h + 0x10, 8)?,
            filesz: field(bytes, h + 0x20, 8)?,
            memsz: field(bytes, h + 0x28, 8)?,
        };
        if seg.filesz > seg.memsz {
            return Err(ElfError(format!(
                "segment {i}: file size {:#x} > memory size {:#x}",
                seg.filesz, seg.memsz
            )));
        }
        if seg
            .offset
            .checked_add(seg.filesz)
            .is_none_or(|end| end > bytes.len() as u64)
        {
            return Err(ElfError(format!(
                "segment {i}: its bytes lie past the file's end"
            )));
        }
        if seg.vaddr.checked_add(seg.memsz).is_none() {
            return Err(ElfError(format!("segment {i}: address range wraps")));
        }
        segs.push(seg);
    }
    if segs.is_empty() {
        return Err(ElfError("no PT_LOAD segment".into()));
    }
    Ok(segs)
}

/// A file embedded in an ELF's loadable bytes (found by content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// What it is (its path).
    pub name: String,
    /// Its size.
    pub len: u64,
    /// Index (into the PT_LOAD list) of the segment holding it, `None` if the ELF does not
    /// contain it.
    pub segment: Option<usize>,
}

/// Where `blob`'s bytes lie in a loadable segment of `elf`, if they do (the first copy).
pub fn find_embedded(elf: &[u8], segs: &[Segment], blob: &[u8]) -> Option<usize> {
    if blob.is_empty() {
        return None;
    }
    segs.iter().position(|s| {
        let file = &elf[s.offset as usize..(s.offset + s.filesz) as usize];
        file.windows(blob.len()).any(|w| w == blob)
    })
}

/// The loadable part of one PD's ELF.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    /// Executable segments' bytes.
    pub text: u64,
    /// Read-only, non-executable segments' bytes (with an embedded guest, if any).
    pub rodata: u64,
    /// Writable segments' file bytes.
    pub data: u64,
    /// Writable segments' zero-filled bytes.
    pub bss: u64,
    /// Pages of all segments.
    pub pages: u64,
    /// Bytes of files embedded in the image (a guest).
    pub embedded: u64,
    /// Pages of all segments with the embedded files' bytes taken out.
    pub pages_without_embedded: u64,
}

/// Sums the segments by kind; `embedded` lists the files found in them (their bytes are taken
/// out of their segments for `pages_without_embedded`).
pub fn image(segs: &[Segment], embedded: &[Embedded]) -> Image {
    let mut img = Image::default();
    for (i, s) in segs.iter().enumerate() {
        if s.flags & PF_X != 0 {
            img.text += s.memsz;
        } else if s.flags & PF_W != 0 {
            img.data += s.filesz;
            img.bss += s.memsz - s.filesz;
        } else {
            img.rodata += s.memsz;
        }
        let inside: u64 = embedded
            .iter()
            .filter(|e| e.segment == Some(i))
            .map(|e| e.len)
            .sum();
        img.embedded += inside;
        img.pages += s.pages();
        img.pages_without_embedded += pages_spanned(s.vaddr, s.memsz.saturating_sub(inside));
    }
    img
}

/// What a mapped region is, for the accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegionKind {
    /// Also mapped into a virtual machine: guest memory.
    GuestRam,
    /// A fixed physical address: device frames.
    Device,
    /// Mapped by another PD too: an interface.
    Shared,
    /// This PD's alone (a driver's DMA memory, ...).
    Private,
}

/// The regions system.xml maps into one PD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Regions {
    /// Name, size and kind of each map, in system.xml order.
    pub maps: Vec<(String, u64, RegionKind)>,
    /// Sum of guest memory.
    pub guest_ram: u64,
    /// Sum of device frames.
    pub device: u64,
    /// Sum of regions shared with other PDs.
    pub shared: u64,
    /// Sum of private regions.
    pub private: u64,
}

/// Classifies the regions PD `pd` maps. A region both in a VM and elsewhere counts as guest
/// memory; a device region as a device even if shared.
pub fn regions(sys: &System, pd: &str) -> Option<Regions> {
    let p = sys.pd(pd)?;
    let mut r = Regions::default();
    for m in &p.maps {
        let mr = sys.region(&m.mr)?;
        let in_vm = sys
            .pds
            .iter()
            .filter_map(|q| q.virtual_machine.as_ref())
            .any(|vm| vm.maps.iter().any(|vm_map| vm_map.mr == m.mr));
        let by_other = sys
            .pds
            .iter()
            .any(|q| q.name != p.name && q.maps.iter().any(|qm| qm.mr == m.mr));
        let kind = if in_vm {
            RegionKind::GuestRam
        } else if mr.phys_addr.is_some() {
            RegionKind::Device
        } else if by_other {
            RegionKind::Shared
        } else {
            RegionKind::Private
        };
        *match kind {
            RegionKind::GuestRam => &mut r.guest_ram,
            RegionKind::Device => &mut r.device,
            RegionKind::Shared => &mut r.shared,
            RegionKind::Private => &mut r.private,
        } += mr.size;
        r.maps.push((m.mr.clone(), mr.size, kind));
    }
    Some(r)
}

/// One PD's line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdSize {
    /// PD name.
    pub pd: String,
    /// Its ELF's file name.
    pub elf: String,
    /// The loadable image.
    pub image: Image,
    /// Files found embedded in it.
    pub embedded: Vec<Embedded>,
    /// system.xml's stack_size (Microkit's default 0x2000 when absent).
    pub stack: u64,
    /// The regions it maps.
    pub regions: Regions,
    /// Its goal in bytes: the VMM's (a PD with a virtual machine) or a driver's.
    pub goal: u64,
}

impl PdSize {
    /// The figure the goal is checked on: the PD's own memory, what the Microkit tool allocates
    /// for it alone — image pages without the embedded guest, stack and IPC buffer. Mapped
    /// regions (interfaces, devices, guest RAM) are sized by system.xml and listed apart.
    pub fn own(&self) -> u64 {
        self.image.pages_without_embedded * PAGE + self.stack + IPC_BUFFER
    }
    /// Whether [`PdSize::own`] is under the goal.
    pub fn pass(&self) -> bool {
        self.own() < self.goal
    }
}

/// Accounts PD `pd` of `sys` with its ELF's bytes and the files that may be embedded in it.
pub fn account(
    sys: &System,
    pd: &str,
    elf: &[u8],
    embedded: &[(String, Vec<u8>)],
) -> Result<PdSize, String> {
    let p = sys
        .pd(pd)
        .ok_or_else(|| format!("no PD named '{pd}' in the system description"))?;
    let segs = load_segments(elf).map_err(|e| format!("{}: {e}", p.program_image))?;
    let embedded: Vec<Embedded> = embedded
        .iter()
        .map(|(name, blob)| Embedded {
            name: name.clone(),
            len: blob.len() as u64,
            segment: find_embedded(elf, &segs, blob),
        })
        .collect();
    let regions = regions(sys, pd).ok_or_else(|| format!("{pd}: a map names no region"))?;
    Ok(PdSize {
        pd: pd.to_string(),
        elf: p.program_image.clone(),
        image: image(&segs, &embedded),
        embedded,
        stack: p.stack_size,
        regions,
        goal: if p.virtual_machine.is_some() {
            VMM_GOAL
        } else {
            DRIVER_GOAL
        },
    })
}

/// A size for people: bytes below 1 KiB, else KiB (below 1 MiB) or MiB, with one decimal
/// (rounded up) unless whole.
pub fn human(n: u64) -> String {
    let (unit, name) = match n {
        0..1024 => return format!("{n} B"),
        1024..0x10_0000 => (1024, "KiB"),
        _ => (0x10_0000, "MiB"),
    };
    let tenths = (n * 10).div_ceil(unit);
    if tenths % 10 == 0 {
        format!("{} {name}", tenths / 10)
    } else {
        format!("{}.{} {name}", tenths / 10, tenths % 10)
    }
}

/// The report as Markdown: one table line per PD, then each PD's maps and embedded files.
pub fn markdown(rows: &[PdSize]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    s.push_str(
        "| PD | text | rodata | data | bss | image (pages) | embedded guest | image w/o guest | \
         stack | IPC | own total | goal | result | shared | device | guest RAM | private |\n",
    );
    s.push_str(
        "| -- | ---: | -----: | ---: | --: | ------------: | -------------: | --------------: | \
         ----: | --: | --------: | ---: | ------ | -----: | -----: | --------: | ------: |\n",
    );
    for r in rows {
        let i = &r.image;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | **{}** | < {} | {} | {} | {} | {} | {} |",
            r.pd,
            human(i.text),
            human(i.rodata),
            human(i.data),
            human(i.bss),
            human(i.pages * PAGE),
            i.pages,
            if i.embedded == 0 {
                "-".into()
            } else {
                human(i.embedded)
            },
            human(i.pages_without_embedded * PAGE),
            human(r.stack),
            human(IPC_BUFFER),
            human(r.own()),
            human(r.goal),
            if r.pass() { "PASS" } else { "OVER" },
            human(r.regions.shared),
            human(r.regions.device),
            human(r.regions.guest_ram),
            human(r.regions.private),
        );
    }
    s.push('\n');
    for r in rows {
        let maps: Vec<String> = r
            .regions
            .maps
            .iter()
            .map(|(n, size, k)| format!("{n} {} ({k:?})", human(*size)))
            .collect();
        let _ = writeln!(s, "- {} ({}) maps: {}", r.pd, r.elf, maps.join(", "));
        if !r.pass() {
            let _ = writeln!(
                s,
                "  - OVER: {} is not under {}; the stack alone (system.xml stack_size) is {}, \
                 the rest {}",
                human(r.own()),
                human(r.goal),
                human(r.stack),
                human(r.own() - r.stack),
            );
        }
        for e in &r.embedded {
            let _ = match e.segment {
                Some(i) => writeln!(
                    s,
                    "  - embedded: {} ({}) in PT_LOAD segment {i}",
                    e.name,
                    human(e.len)
                ),
                None => writeln!(s, "  - not embedded: {} ({})", e.name, human(e.len)),
            };
        }
    }
    s
}
