//! A64 load/store decoder for data aborts without a valid instruction syndrome (ISV = 0): it
//! turns the 32-bit instruction word the guest faulted on into a [`MemInsn`] that says what to
//! transfer, between which registers, at which address and with which base writeback.
//!
//! Supported (general-purpose registers only): LDR/STR and the byte, halfword and sign-extending
//! forms (LDRB, LDRH, LDRSB, LDRSH, LDRSW, STRB, STRH) with unsigned scaled offset, unscaled
//! offset (LDUR/STUR family), pre-index, post-index and register offset (UXTW/LSL/SXTW/SXTX with
//! optional scaling); LDP/STP (32/64-bit) and LDPSW with signed offset, pre-index and post-index;
//! LDNP/STNP. Everything else (SIMD/FP, exclusives, atomics, acquire/release, unprivileged
//! LDTR/STTR, pointer-authenticated loads, literal loads, prefetches, MTE, unallocated
//! encodings) is [`InsnError::Unsupported`].
//!
//! Rejected CONSTRAINED UNPREDICTABLE encodings ([`InsnError::Unpredictable`]): writeback with
//! the base equal to a transfer register (`Rn == Rt` or `Rn == Rt2`, `Rn != 31`), and a pair load
//! into the same register twice (`Rt == Rt2`).

/// Load or store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Memory to register.
    Load,
    /// Register to memory.
    Store,
}

/// The width of the transfer register(s) as the instruction names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegWidth {
    /// 32-bit `Wn`: a load writes the low 32 bits and zeroes the upper 32.
    W,
    /// 64-bit `Xn`.
    X,
}

/// How a register offset is extended before the shift (the `option` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extend {
    /// `option = 010`: the low 32 bits, zero-extended.
    Uxtw,
    /// `option = 011`: the whole 64-bit register (LSL / UXTX).
    Lsl,
    /// `option = 110`: the low 32 bits, sign-extended.
    Sxtw,
    /// `option = 111`: the whole 64-bit register (SXTX).
    Sxtx,
}

impl Extend {
    /// Extends `value` (the offset register's contents) and shifts it left by `shift` (0..=3).
    #[inline]
    pub const fn apply(self, value: u64, shift: u8) -> u64 {
        let v = match self {
            Extend::Uxtw => value & 0xffff_ffff,
            Extend::Sxtw => value as u32 as i32 as i64 as u64,
            Extend::Lsl | Extend::Sxtx => value,
        };
        v.wrapping_shl((shift & 3) as u32)
    }
}

/// Where the offset added to the base comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offset {
    /// A byte offset (already scaled where the encoding scales it).
    Imm(i64),
    /// A register offset: `extend(Xm) << shift`; `rm == 31` is XZR.
    Reg {
        /// Offset register.
        rm: u8,
        /// Extension.
        extend: Extend,
        /// Left shift (0, or log2 of the access size when the S bit is set).
        shift: u8,
    },
}

/// Base register writeback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Writeback {
    /// The address is `base + offset`; the base is unchanged.
    None,
    /// The address is `base + offset`, which is written back to the base.
    Pre,
    /// The address is `base`; `base + offset` is written back to the base.
    Post,
}

/// A decoded general-purpose load or store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemInsn {
    /// Load or store.
    pub dir: Direction,
    /// Bytes per register transferred: 1, 2, 4 or 8.
    pub size: u8,
    /// A load sign-extends the loaded value to `width`.
    pub signed: bool,
    /// Width of the transfer register(s).
    pub width: RegWidth,
    /// First transfer register (31 is XZR/WZR).
    pub rt: u8,
    /// Second transfer register of a pair (31 is XZR/WZR).
    pub rt2: Option<u8>,
    /// Base register (31 is SP).
    pub rn: u8,
    /// Offset.
    pub offset: Offset,
    /// Writeback.
    pub writeback: Writeback,
}

impl MemInsn {
    /// Total bytes accessed (`size`, or twice that for a pair).
    #[inline]
    pub const fn access_len(&self) -> u8 {
        match self.rt2 {
            Some(_) => self.size.wrapping_mul(2),
            None => self.size,
        }
    }

    /// The register value a load produces from `raw`, the `size` bytes read (zero-extended in a
    /// `u64`): sign-extended if `signed`, then truncated to 32 bits for a `W` destination.
    #[inline]
    pub const fn load_value(&self, raw: u64) -> u64 {
        let v = if self.signed {
            match self.size {
                1 => raw as u8 as i8 as i64 as u64,
                2 => raw as u16 as i16 as i64 as u64,
                4 => raw as u32 as i32 as i64 as u64,
                _ => raw,
            }
        } else {
            truncate(raw, self.size)
        };
        match self.width {
            RegWidth::W => v & 0xffff_ffff,
            RegWidth::X => v,
        }
    }
}

/// The low `size` bytes of `v` (size 1, 2, 4; anything else keeps all 8).
#[inline]
pub const fn truncate(v: u64, size: u8) -> u64 {
    match size {
        1 => v & 0xff,
        2 => v & 0xffff,
        4 => v & 0xffff_ffff,
        _ => v,
    }
}

/// Why an instruction word was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InsnError {
    /// Not a supported general-purpose load/store (or unallocated).
    Unsupported(u32),
    /// A CONSTRAINED UNPREDICTABLE encoding this decoder refuses.
    Unpredictable(u32),
}

const fn rt(w: u32) -> u8 {
    (w & 31) as u8
}
const fn rn(w: u32) -> u8 {
    ((w >> 5) & 31) as u8
}

/// Sign-extends the low `bits` bits of `v`.
pub(crate) const fn sext(v: u32, bits: u32) -> i64 {
    let shift = 64 - bits;
    (((v as u64) << shift) as i64) >> shift
}

/// (direction, log2 size, signed, width) for the single-register `size:opc` table shared by the
/// immediate and register-offset forms; `None` for prefetch and unallocated rows.
const fn single_kind(w: u32) -> Option<(Direction, u8, bool, RegWidth)> {
    let size = ((w >> 30) & 3) as u8;
    let opc = (w >> 22) & 3;
    match (size, opc) {
        (3, 0) => Some((Direction::Store, 3, false, RegWidth::X)),
        (3, 1) => Some((Direction::Load, 3, false, RegWidth::X)),
        (3, _) => None,                                          // PRFM / unallocated
        (2, 2) => Some((Direction::Load, 2, true, RegWidth::X)), // LDRSW
        (2, 3) => None,
        (_, 0) => Some((Direction::Store, size, false, RegWidth::W)),
        (_, 1) => Some((Direction::Load, size, false, RegWidth::W)),
        (_, 2) => Some((Direction::Load, size, true, RegWidth::X)),
        _ => Some((Direction::Load, size, true, RegWidth::W)),
    }
}

/// Decodes one A64 instruction word.
pub const fn decode(w: u32) -> Result<MemInsn, InsnError> {
    if w & 0x3f00_0000 == 0x3900_0000 {
        // Load/store register (unsigned immediate).
        let Some((dir, log2, signed, width)) = single_kind(w) else {
            return Err(InsnError::Unsupported(w));
        };
        let imm12 = ((w >> 10) & 0xfff) as i64;
        return Ok(MemInsn {
            dir,
            size: 1 << log2,
            signed,
            width,
            rt: rt(w),
            rt2: None,
            rn: rn(w),
            offset: Offset::Imm(imm12 << log2),
            writeback: Writeback::None,
        });
    }
    if w & 0x3f00_0000 == 0x3800_0000 {
        // Load/store register: unscaled, post-index, unprivileged, pre-index, register offset,
        // atomics, PAC.
        let Some((dir, log2, signed, width)) = single_kind(w) else {
            return Err(InsnError::Unsupported(w));
        };
        let op2 = (w >> 10) & 3;
        let base = MemInsn {
            dir,
            size: 1 << log2,
            signed,
            width,
            rt: rt(w),
            rt2: None,
            rn: rn(w),
            offset: Offset::Imm(sext(w >> 12, 9)),
            writeback: Writeback::None,
        };
        if w & (1 << 21) == 0 {
            let writeback = match op2 {
                0 => Writeback::None,
                1 => Writeback::Post,
                3 => Writeback::Pre,
                _ => return Err(InsnError::Unsupported(w)), // LDTR/STTR family
            };
            if !matches!(writeback, Writeback::None) && base.rn == base.rt && base.rn != 31 {
                return Err(InsnError::Unpredictable(w));
            }
            return Ok(MemInsn { writeback, ..base });
        }
        if op2 != 2 {
            return Err(InsnError::Unsupported(w)); // atomics, LDRAA/LDRAB
        }
        let extend = match (w >> 13) & 7 {
            0b010 => Extend::Uxtw,
            0b011 => Extend::Lsl,
            0b110 => Extend::Sxtw,
            0b111 => Extend::Sxtx,
            _ => return Err(InsnError::Unsupported(w)),
        };
        let shift = if w & (1 << 12) != 0 { log2 } else { 0 };
        let rm = ((w >> 16) & 31) as u8;
        return Ok(MemInsn {
            offset: Offset::Reg { rm, extend, shift },
            ..base
        });
    }
    if w & 0x3c00_0000 == 0x2800_0000 {
        // Load/store pair: no-allocate offset, post-index, signed offset, pre-index.
        let writeback = match (w >> 23) & 7 {
            0 | 2 => Writeback::None,
            1 => Writeback::Post,
            3 => Writeback::Pre,
            _ => return Err(InsnError::Unsupported(w)),
        };
        let non_temporal = (w >> 23) & 7 == 0;
        let load = w & (1 << 22) != 0;
        let (log2, signed, width) = match (w >> 30, load, non_temporal) {
            (0, _, _) => (2, false, RegWidth::W),
            (1, true, false) => (2, true, RegWidth::X), // LDPSW
            (2, _, _) => (3, false, RegWidth::X),
            _ => return Err(InsnError::Unsupported(w)), // STGP, LDNP opc=01, opc=11
        };
        let (t, t2, n) = (rt(w), ((w >> 10) & 31) as u8, rn(w));
        if load && t == t2 {
            return Err(InsnError::Unpredictable(w));
        }
        if !matches!(writeback, Writeback::None) && n != 31 && (n == t || n == t2) {
            return Err(InsnError::Unpredictable(w));
        }
        return Ok(MemInsn {
            dir: if load {
                Direction::Load
            } else {
                Direction::Store
            },
            size: 1 << log2,
            signed,
            width,
            rt: t,
            rt2: Some(t2),
            rn: n,
            offset: Offset::Imm(sext(w >> 15, 7) << log2),
            writeback,
        });
    }
    Err(InsnError::Unsupported(w))
}
