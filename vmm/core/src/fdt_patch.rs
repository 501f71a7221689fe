//! Flattened device tree patching: this module owns rewriting a DTB so that its `/chosen` node
//! carries what the VMM decided at load time: `linux,initrd-start` and `linux,initrd-end` (the
//! initrd's final guest-physical range, end exclusive, as two-cell big-endian `u64`s, which Linux
//! accepts besides one-cell values) and, on request, `bootargs`.
//!
//! The output is written without allocation, into a caller-provided byte slice ([`patch`]) or
//! through a [`Sink`] ([`patch_to`], which the loader uses to write straight into guest RAM).
//! [`patched_size`] is a dry run that gives the exact size of the output.
//!
//! What changes, and what does not:
//! - In the first node directly under the root whose name is `chosen` or starts with `chosen@`
//!   (the node libfdt's `fdt_path_offset(fdt, "/chosen")` finds, and so Linux's), the first
//!   property of each name being set is replaced in place by the new value and any further
//!   property of that name is dropped, whatever their size; names not present are added after
//!   the node's last property. Without such a node, a `chosen` node holding the new properties
//!   is added as the root's last child.
//! - Every other node, property (value bytes and padding), `FDT_NOP`, the memory reservation
//!   block, `boot_cpuid_phys`, `version` and `last_comp_version` are kept byte for byte.
//! - The output is laid out canonically: a 40-byte header, the memory reservation block at
//!   offset 40, the structure block, the strings block. The strings block is the input's,
//!   followed by the new property names that it does not already contain (an existing name,
//!   including one that is the tail of a longer string, is reused). Free space and bytes outside
//!   the blocks are dropped; `totalsize`, the block offsets, `size_dt_strings` and (for version 17)
//!   `size_dt_struct` describe the new layout. A version-16 blob keeps its 36-byte header,
//!   followed by 4 zero bytes.
//!
//! Every input is untrusted. The header is validated by [`parse_fdt`]; the structure block is
//! then walked token by token, and every malformed input (unknown token, a token, name or value
//! running past the block, unbalanced nodes, a property outside a node or after a subnode, a name
//! offset outside the strings block or without a terminating NUL, no `FDT_END`) is a typed
//! [`PatchError`], never a panic. The walk moves forward by at least one 4-byte token per step, so
//! the work is linear in the size of the blob. Nothing is written to the output unless the whole
//! input is valid and the result fits.

use crate::loader::{FDT_MAX_SIZE, FdtError, parse_fdt};

const FDT_BEGIN_NODE: u32 = 0x1;
const FDT_END_NODE: u32 = 0x2;
const FDT_PROP: u32 = 0x3;
const FDT_NOP: u32 = 0x4;
const FDT_END: u32 = 0x9;

/// Size of the header written, which is where the memory reservation block starts.
pub const HEADER_LEN: usize = 40;
/// Name of the initrd start property.
pub const INITRD_START: &str = "linux,initrd-start";
/// Name of the initrd end property (end exclusive).
pub const INITRD_END: &str = "linux,initrd-end";
/// Name of the kernel command line property.
pub const BOOTARGS: &str = "bootargs";
/// Name of the node that is patched (or created).
pub const CHOSEN: &str = "chosen";
/// The largest growth an initrd-only patch adds to a blob whose blocks are contiguous (as dtc,
/// libfdt and vm-fdt write them): a new `chosen` node (16 bytes) with two 8-byte properties (40
/// bytes) and both names added to the strings block (36 bytes).
pub const INITRD_GROWTH_MAX: usize = 92;

/// What to set in `/chosen`. Properties whose field is `None` are left as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChosenPatch<'a> {
    /// `(start, end)` of the initrd in guest-physical memory, end exclusive: written as
    /// `linux,initrd-start` and `linux,initrd-end`, each a big-endian `u64` (two cells).
    pub initrd: Option<(u64, u64)>,
    /// The kernel command line, written as `bootargs` with a terminating NUL.
    pub bootargs: Option<&'a str>,
}

impl<'a> ChosenPatch<'a> {
    /// Sets the initrd range `[start, end)` only.
    pub const fn initrd(start: u64, end: u64) -> Self {
        Self {
            initrd: Some((start, end)),
            bootargs: None,
        }
    }

    /// The same patch, also setting `bootargs`.
    pub const fn with_bootargs(self, bootargs: &'a str) -> Self {
        Self {
            initrd: self.initrd,
            bootargs: Some(bootargs),
        }
    }
}

/// Why a DTB could not be patched. Offsets are byte offsets into the input blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchError {
    /// The header or block layout is invalid (see [`parse_fdt`]).
    Header(FdtError),
    /// A `version` above 17: its header may have fields this module does not know how to keep.
    UnsupportedVersion(u32),
    /// A token that is none of BEGIN_NODE, END_NODE, PROP, NOP and END.
    BadToken {
        /// Offset of the token.
        offset: usize,
        /// The token.
        token: u32,
    },
    /// A node name, a property header or a property value runs past the structure block.
    StructOverrun {
        /// Offset of the token.
        offset: usize,
    },
    /// A node name has no terminating NUL inside the structure block.
    UnterminatedName {
        /// Offset of the BEGIN_NODE token.
        offset: usize,
    },
    /// A property's name offset lies outside the strings block, or no NUL follows it there.
    BadNameOffset {
        /// Offset of the PROP token.
        offset: usize,
        /// The name offset.
        nameoff: u32,
    },
    /// An END_NODE without an open node.
    UnbalancedEndNode {
        /// Offset of the token.
        offset: usize,
    },
    /// FDT_END while a node is still open.
    UnclosedNode {
        /// Offset of the token.
        offset: usize,
    },
    /// A BEGIN_NODE after the root node was closed.
    SecondRoot {
        /// Offset of the token.
        offset: usize,
    },
    /// A property outside every node.
    PropertyOutsideNode {
        /// Offset of the token.
        offset: usize,
    },
    /// A property after a subnode of the same node.
    PropertyAfterSubnode {
        /// Offset of the token.
        offset: usize,
    },
    /// The structure block ends without FDT_END.
    MissingEnd,
    /// The requested `bootargs` contains a NUL byte.
    BootargsNul,
    /// The requested initrd end lies below its start.
    InitrdReversed {
        /// Requested start.
        start: u64,
        /// Requested end.
        end: u64,
    },
    /// The patched blob would be larger than 2 MiB ([`FDT_MAX_SIZE`]).
    TooLarge {
        /// Its size.
        need: u64,
    },
    /// The output slice is shorter than the patched blob.
    OutputTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        len: usize,
    },
    /// The [`Sink`] refused a write.
    Sink {
        /// Output offset of the refused write.
        offset: usize,
        /// Its length.
        len: usize,
    },
}

impl From<FdtError> for PatchError {
    fn from(e: FdtError) -> Self {
        PatchError::Header(e)
    }
}

/// Where the patched blob goes: [`patch_to`] calls `put` for consecutive, non-overlapping pieces
/// of the output, each at its offset from the start of the blob (the header comes last).
pub trait Sink {
    /// Writes `bytes` at offset `off` of the output.
    fn put(&mut self, off: usize, bytes: &[u8]) -> Result<(), PatchError>;
}

/// A sink that only measures.
struct Measure;

impl Sink for Measure {
    fn put(&mut self, _off: usize, _bytes: &[u8]) -> Result<(), PatchError> {
        Ok(())
    }
}

/// A sink into a byte slice.
struct SliceSink<'b>(&'b mut [u8]);

impl Sink for SliceSink<'_> {
    fn put(&mut self, off: usize, bytes: &[u8]) -> Result<(), PatchError> {
        let len = self.0.len();
        let need = off
            .checked_add(bytes.len())
            .ok_or(PatchError::OutputTooSmall {
                need: usize::MAX,
                len,
            })?;
        self.0
            .get_mut(off..need)
            .ok_or(PatchError::OutputTooSmall { need, len })?
            .copy_from_slice(bytes);
        Ok(())
    }
}

/// The size of the DTB [`patch`] would produce for `dtb` and `patch` (a dry run that also
/// validates everything). The size depends on which properties are set, not on their values.
pub fn patched_size(dtb: &[u8], patch: &ChosenPatch<'_>) -> Result<usize, PatchError> {
    run(dtb, patch, &mut Measure)
}

/// Writes the patched DTB into `out` and returns its size (its `totalsize`); the bytes of `out`
/// after it are left untouched. `out` must not be shorter than the result
/// ([`PatchError::OutputTooSmall`], nothing written).
pub fn patch(dtb: &[u8], patch: &ChosenPatch<'_>, out: &mut [u8]) -> Result<usize, PatchError> {
    let need = patched_size(dtb, patch)?;
    if need > out.len() {
        return Err(PatchError::OutputTooSmall {
            need,
            len: out.len(),
        });
    }
    run(dtb, patch, &mut SliceSink(out))
}

/// Writes the patched DTB through `sink` and returns its size. The input is validated in full
/// (a dry run) before the first write.
pub fn patch_to<S: Sink + ?Sized>(
    dtb: &[u8],
    patch: &ChosenPatch<'_>,
    sink: &mut S,
) -> Result<usize, PatchError> {
    patched_size(dtb, patch)?;
    run(dtb, patch, sink)
}

/// A property value to write.
#[derive(Clone, Copy)]
enum Value<'a> {
    /// A big-endian `u64`.
    U64(u64),
    /// A string, written with a terminating NUL.
    Str(&'a [u8]),
}

impl Value<'_> {
    fn len(&self) -> usize {
        match self {
            Value::U64(_) => 8,
            Value::Str(s) => s.len().saturating_add(1),
        }
    }
}

/// A property to set in `/chosen`.
#[derive(Clone, Copy)]
struct Target<'a> {
    name: &'static str,
    value: Value<'a>,
    /// Name offset in the output strings block.
    nameoff: u32,
    /// Already written.
    done: bool,
}

/// Where the walk is relative to the node being patched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Chosen {
    /// Not seen yet.
    NotFound,
    /// Inside it (depth 2 is the node itself).
    Inside,
    /// Closed, or added.
    Done,
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes(s.try_into().ok()?))
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_be_bytes(s.try_into().ok()?))
}

fn align4(v: usize) -> Option<usize> {
    Some(v.checked_add(3)? & !3)
}

fn grow(out: usize, n: usize) -> Result<usize, PatchError> {
    out.checked_add(n)
        .ok_or(PatchError::TooLarge { need: u64::MAX })
}

/// The offset of `name` followed by a NUL anywhere in `strings`.
fn find_string(strings: &[u8], name: &str) -> Option<usize> {
    let n = name.len().checked_add(1)?;
    strings
        .windows(n)
        .position(|w| w.split_last() == Some((&0, name.as_bytes())))
}

/// Whether the string at `off` of `strings` is exactly `name`.
fn string_is(strings: &[u8], off: usize, name: &str) -> bool {
    let Some(end) = off.checked_add(name.len()) else {
        return false;
    };
    strings.get(off..end) == Some(name.as_bytes()) && strings.get(end) == Some(&0)
}

/// Whether a node name selects `/chosen` (libfdt's rule: the name, or the name and a unit
/// address).
fn is_chosen(name: &[u8]) -> bool {
    match name.strip_prefix(CHOSEN.as_bytes()) {
        Some(rest) => rest.is_empty() || rest.first() == Some(&b'@'),
        None => false,
    }
}

/// Writes a PROP token for `t` at `out`; returns the new output offset.
fn emit_prop<S: Sink + ?Sized>(
    sink: &mut S,
    out: usize,
    t: &Target<'_>,
) -> Result<usize, PatchError> {
    let len = t.value.len();
    let len32 = u32::try_from(len).map_err(|_| PatchError::TooLarge { need: len as u64 })?;
    let mut head = [0u8; 12];
    head[..4].copy_from_slice(&FDT_PROP.to_be_bytes());
    head[4..8].copy_from_slice(&len32.to_be_bytes());
    head[8..].copy_from_slice(&t.nameoff.to_be_bytes());
    sink.put(out, &head)?;
    let mut at = grow(out, head.len())?;
    match t.value {
        Value::U64(v) => sink.put(at, &v.to_be_bytes())?,
        Value::Str(s) => {
            sink.put(at, s)?;
            sink.put(grow(at, s.len())?, &[0])?;
        }
    }
    at = grow(at, len)?;
    let padded = align4(at).ok_or(PatchError::TooLarge { need: u64::MAX })?;
    let pad = padded.saturating_sub(at);
    if pad != 0 {
        sink.put(at, [0u8; 3].get(..pad).unwrap_or_default())?;
    }
    Ok(padded)
}

/// Writes every target not yet written.
fn flush<S: Sink + ?Sized>(
    sink: &mut S,
    mut out: usize,
    targets: &mut [Option<Target<'_>>],
) -> Result<usize, PatchError> {
    for t in targets.iter_mut().flatten() {
        if !t.done {
            out = emit_prop(sink, out, t)?;
            t.done = true;
        }
    }
    Ok(out)
}

/// The input, validated at the header level.
struct Input<'d> {
    blob: &'d [u8],
    strings: &'d [u8],
    /// Offset of the last NUL in `strings`: a name offset is valid iff it is at most this.
    last_nul: Option<usize>,
    st_start: usize,
    st_end: usize,
}

/// The structure-block walk: copies every token to `out..`, patching `/chosen`; returns the
/// output offset after FDT_END.
fn walk<S: Sink + ?Sized>(
    inp: &Input<'_>,
    targets: &mut [Option<Target<'_>>],
    sink: &mut S,
    mut out: usize,
) -> Result<usize, PatchError> {
    let blob = inp.blob;
    let end = inp.st_end;
    // Only the structure block is visible to the token reader.
    let block = blob.get(..end).ok_or(PatchError::MissingEnd)?;
    let want = targets.iter().any(Option::is_some);
    let mut pos = inp.st_start;
    let mut depth: usize = 0;
    let mut in_props = false;
    let mut root_closed = false;
    let mut chosen = Chosen::NotFound;
    // Each step moves `pos` forward by at least 4 bytes and `be32` fails past `end`: the loop
    // runs at most (size of the structure block) / 4 times.
    loop {
        let token = be32(block, pos).ok_or(PatchError::MissingEnd)?;
        let mut copy_end = pos.checked_add(4).ok_or(PatchError::MissingEnd)?;
        match token {
            FDT_BEGIN_NODE => {
                if root_closed {
                    return Err(PatchError::SecondRoot { offset: pos });
                }
                let name_area = block
                    .get(copy_end..)
                    .ok_or(PatchError::StructOverrun { offset: pos })?;
                let nul = name_area
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(PatchError::UnterminatedName { offset: pos })?;
                let name = name_area
                    .get(..nul)
                    .ok_or(PatchError::UnterminatedName { offset: pos })?;
                copy_end = copy_end
                    .checked_add(nul)
                    .and_then(|v| v.checked_add(1))
                    .and_then(align4)
                    .filter(|&v| v <= end)
                    .ok_or(PatchError::StructOverrun { offset: pos })?;
                if chosen == Chosen::Inside && depth == 2 {
                    // The chosen node's properties end at its first subnode.
                    out = flush(sink, out, targets)?;
                }
                if depth == 1 && chosen == Chosen::NotFound && is_chosen(name) {
                    chosen = Chosen::Inside;
                }
                depth = depth.checked_add(1).ok_or(PatchError::MissingEnd)?;
                in_props = true;
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(PatchError::UnbalancedEndNode { offset: pos });
                }
                if chosen == Chosen::Inside && depth == 2 {
                    out = flush(sink, out, targets)?;
                    chosen = Chosen::Done;
                }
                if depth == 1 {
                    if chosen == Chosen::NotFound && want {
                        out = emit_chosen_node(sink, out, targets)?;
                        chosen = Chosen::Done;
                    }
                    root_closed = true;
                }
                depth -= 1;
                in_props = false;
            }
            FDT_PROP => {
                if depth == 0 {
                    return Err(PatchError::PropertyOutsideNode { offset: pos });
                }
                if !in_props {
                    return Err(PatchError::PropertyAfterSubnode { offset: pos });
                }
                let overrun = PatchError::StructOverrun { offset: pos };
                let len = be32(block, copy_end).ok_or(overrun)?;
                let nameoff =
                    be32(block, copy_end.checked_add(4).ok_or(overrun)?).ok_or(overrun)?;
                copy_end = copy_end
                    .checked_add(8)
                    .and_then(|v| v.checked_add(len as usize))
                    .and_then(align4)
                    .filter(|&v| v <= end)
                    .ok_or(overrun)?;
                let off = nameoff as usize;
                if inp.last_nul.is_none_or(|l| off > l) {
                    return Err(PatchError::BadNameOffset {
                        offset: pos,
                        nameoff,
                    });
                }
                if chosen == Chosen::Inside && depth == 2 {
                    let hit = targets
                        .iter_mut()
                        .flatten()
                        .find(|t| string_is(inp.strings, off, t.name));
                    if let Some(t) = hit {
                        // Replaced by the first of its name, dropped after that.
                        if !t.done {
                            out = emit_prop(sink, out, t)?;
                            t.done = true;
                        }
                        pos = copy_end;
                        continue;
                    }
                }
            }
            FDT_NOP => {}
            FDT_END => {
                if depth != 0 {
                    return Err(PatchError::UnclosedNode { offset: pos });
                }
                let bytes = block.get(pos..copy_end).ok_or(PatchError::MissingEnd)?;
                sink.put(out, bytes)?;
                return grow(out, bytes.len());
            }
            other => {
                return Err(PatchError::BadToken {
                    offset: pos,
                    token: other,
                });
            }
        }
        let bytes = block
            .get(pos..copy_end)
            .ok_or(PatchError::StructOverrun { offset: pos })?;
        sink.put(out, bytes)?;
        out = grow(out, bytes.len())?;
        pos = copy_end;
    }
}

/// Writes a whole `chosen` node holding the targets.
fn emit_chosen_node<S: Sink + ?Sized>(
    sink: &mut S,
    out: usize,
    targets: &mut [Option<Target<'_>>],
) -> Result<usize, PatchError> {
    // BEGIN_NODE, "chosen\0" and one byte of padding.
    let mut head = [0u8; 12];
    head[..4].copy_from_slice(&FDT_BEGIN_NODE.to_be_bytes());
    head[4..4 + CHOSEN.len()].copy_from_slice(CHOSEN.as_bytes());
    sink.put(out, &head)?;
    let out = flush(sink, grow(out, head.len())?, targets)?;
    sink.put(out, &FDT_END_NODE.to_be_bytes())?;
    grow(out, 4)
}

/// The whole job, through `sink`.
fn run<'p, S: Sink + ?Sized>(
    dtb: &[u8],
    patch: &ChosenPatch<'p>,
    sink: &mut S,
) -> Result<usize, PatchError> {
    let h = parse_fdt(dtb)?;
    if h.version > 17 {
        return Err(PatchError::UnsupportedVersion(h.version));
    }
    if let Some((start, end)) = patch.initrd
        && end < start
    {
        return Err(PatchError::InitrdReversed { start, end });
    }
    let bootargs = patch.bootargs.map(str::as_bytes);
    if bootargs.is_some_and(|b| b.contains(&0)) {
        return Err(PatchError::BootargsNul);
    }
    let total = h.totalsize as usize;
    let trunc = FdtError::Truncated {
        need: u64::from(h.totalsize),
        len: dtb.len(),
    };
    let blob = dtb.get(..total).ok_or(trunc)?;
    let bad = |b| PatchError::Header(FdtError::BadBlock(b));
    use crate::loader::FdtBlock;

    // Memory reservation block, terminator included (parse_fdt found the terminator).
    let rsv_start = h.off_mem_rsvmap as usize;
    let mut rsv_end = rsv_start;
    loop {
        let a = be64(blob, rsv_end).ok_or(PatchError::Header(FdtError::UnterminatedRsvmap))?;
        let s = be64(blob, rsv_end.saturating_add(8))
            .ok_or(PatchError::Header(FdtError::UnterminatedRsvmap))?;
        rsv_end = rsv_end.saturating_add(16);
        if a == 0 && s == 0 {
            break;
        }
    }
    let rsv = blob
        .get(rsv_start..rsv_end)
        .ok_or(bad(FdtBlock::MemRsvmap))?;

    let str_start = h.off_dt_strings as usize;
    let strings = str_start
        .checked_add(h.size_dt_strings as usize)
        .and_then(|e| blob.get(str_start..e))
        .ok_or(bad(FdtBlock::Strings))?;
    let st_start = h.off_dt_struct as usize;
    let st_end = if h.version >= 17 {
        st_start
            .checked_add(h.size_dt_struct as usize)
            .filter(|&e| e <= total)
            .ok_or(bad(FdtBlock::Struct))?
    } else {
        total
    };
    let inp = Input {
        blob,
        strings,
        last_nul: strings.iter().rposition(|&b| b == 0),
        st_start,
        st_end,
    };

    // The properties to set, their names in the output strings block.
    let mut appended = 0usize;
    let mut targets: [Option<Target<'p>>; 3] = [None; 3];
    let wanted: [Option<(&'static str, Value<'p>)>; 3] = [
        patch
            .initrd
            .map(|(start, _)| (INITRD_START, Value::U64(start))),
        patch.initrd.map(|(_, end)| (INITRD_END, Value::U64(end))),
        bootargs.map(|b| (BOOTARGS, Value::Str(b))),
    ];
    for (slot, w) in targets.iter_mut().zip(wanted) {
        let Some((name, value)) = w else { continue };
        let off = match find_string(strings, name) {
            Some(off) => off,
            None => {
                let off = grow(strings.len(), appended)?;
                appended = grow(appended, name.len() + 1)?;
                off
            }
        };
        let nameoff = u32::try_from(off).map_err(|_| PatchError::TooLarge { need: off as u64 })?;
        *slot = Some(Target {
            name,
            value,
            nameoff,
            done: false,
        });
    }

    // Output: header, reservation block, structure block, strings block.
    let rsv_out = HEADER_LEN;
    let st_out = grow(rsv_out, rsv.len())?;
    let st_out_end = walk(&inp, &mut targets, sink, st_out)?;
    let str_out = st_out_end;
    let str_out_end = grow(grow(str_out, strings.len())?, appended)?;
    if str_out_end as u64 > FDT_MAX_SIZE {
        return Err(PatchError::TooLarge {
            need: str_out_end as u64,
        });
    }
    sink.put(rsv_out, rsv)?;
    sink.put(str_out, strings)?;
    let mut at = grow(str_out, strings.len())?;
    for t in targets.iter().flatten() {
        if t.nameoff as usize >= strings.len() {
            sink.put(at, t.name.as_bytes())?;
            sink.put(grow(at, t.name.len())?, &[0])?;
            at = grow(at, t.name.len() + 1)?;
        }
    }

    // The header: magic and the version fields and boot CPU as they were, the rest new.
    let too_large = |v: usize| PatchError::TooLarge { need: v as u64 };
    let u32_of = |v: usize| u32::try_from(v).map_err(|_| too_large(v));
    let size_dt_struct = if h.version >= 17 {
        u32_of(st_out_end.saturating_sub(st_out))?
    } else {
        0
    };
    let words = [
        crate::loader::FDT_MAGIC,
        u32_of(str_out_end)?,
        u32_of(st_out)?,
        u32_of(str_out)?,
        u32_of(rsv_out)?,
        h.version,
        h.last_comp_version,
        h.boot_cpuid_phys,
        u32_of(str_out_end.saturating_sub(str_out))?,
        size_dt_struct,
    ];
    let mut header = [0u8; HEADER_LEN];
    for (chunk, w) in header.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_be_bytes());
    }
    sink.put(0, &header)?;
    Ok(str_out_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_names() {
        assert!(is_chosen(b"chosen"));
        assert!(is_chosen(b"chosen@0"));
        assert!(!is_chosen(b"chosenx"));
        assert!(!is_chosen(b"chose"));
        assert!(!is_chosen(b""));
    }

    #[test]
    fn string_search() {
        let s = b"abc\0linux,initrd-start\0x\0";
        assert_eq!(find_string(s, INITRD_START), Some(4));
        assert_eq!(find_string(s, "start"), Some(17)); // a tail is a valid name
        assert_eq!(find_string(s, "ab"), None);
        assert_eq!(find_string(b"", "x"), None);
        assert!(string_is(s, 4, INITRD_START));
        assert!(!string_is(s, 4, "linux"));
        assert!(!string_is(s, usize::MAX, "linux"));
    }
}
