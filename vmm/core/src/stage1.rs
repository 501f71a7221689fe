//! Walk of the guest's stage-1 translation tables (EL1&0 regime, VMSAv8-64, 4 KiB granule) to
//! turn a guest-virtual address into a guest-physical one, e.g. to fetch the instruction behind a
//! data abort without a valid syndrome.
//!
//! Supported: TTBR0/TTBR1 selection by VA bit 55, TxSZ 16..=39 (25- to 48-bit VAs, starting level
//! from TxSZ), top-byte-ignore (TBI/TBID), EPD0/EPD1, level-1 and level-2 blocks and level-3
//! pages, output-size checks against TCR_EL1.IPS (at most 48 bits), the access flag (unless
//! TCR_EL1.HA), and SCTLR_EL1.M = 0 (identity). Not supported (typed errors): 16K/64K granules,
//! FEAT_LPA2 (TCR_EL1.DS), other TxSZ values. Permissions are not checked: the walker answers
//! "where", not "may".
//!
//! Every descriptor read goes through [`GuestMemory`]; the walk reads at most four descriptors,
//! so table loops cannot make it run long.

use crate::addr::{GuestPhysAddr, GuestVirtAddr};
use crate::memory::{GuestMemory, MemError};
use crate::vcpu::{SysReg, Vcpu, VcpuError};

/// The guest's translation controls the walk needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MmuConfig {
    /// SCTLR_EL1 (only bit 0, M, is used).
    pub sctlr: u64,
    /// TCR_EL1.
    pub tcr: u64,
    /// TTBR0_EL1.
    pub ttbr0: u64,
    /// TTBR1_EL1.
    pub ttbr1: u64,
}

impl MmuConfig {
    /// Reads all four registers.
    pub fn read_all(vcpu: &mut (impl Vcpu + ?Sized)) -> Result<Self, VcpuError> {
        Ok(Self {
            sctlr: vcpu.sysreg(SysReg::SctlrEl1)?,
            tcr: vcpu.sysreg(SysReg::TcrEl1)?,
            ttbr0: vcpu.sysreg(SysReg::Ttbr0El1)?,
            ttbr1: vcpu.sysreg(SysReg::Ttbr1El1)?,
        })
    }

    /// Reads only what translating `va` needs: SCTLR_EL1, and with the MMU on TCR_EL1 and the
    /// TTBR that VA bit 55 selects (the other one is left zero, so the result is only good for
    /// addresses in the same half).
    pub fn read_for(vcpu: &mut (impl Vcpu + ?Sized), va: GuestVirtAddr) -> Result<Self, VcpuError> {
        let sctlr = vcpu.sysreg(SysReg::SctlrEl1)?;
        if sctlr & 1 == 0 {
            return Ok(Self {
                sctlr,
                ..Self::default()
            });
        }
        let tcr = vcpu.sysreg(SysReg::TcrEl1)?;
        let (mut ttbr0, mut ttbr1) = (0, 0);
        if va.raw() & (1 << 55) == 0 {
            ttbr0 = vcpu.sysreg(SysReg::Ttbr0El1)?;
        } else {
            ttbr1 = vcpu.sysreg(SysReg::Ttbr1El1)?;
        }
        Ok(Self {
            sctlr,
            tcr,
            ttbr0,
            ttbr1,
        })
    }
}

/// What the translated address is for (it matters only for top-byte-ignore: TCR_EL1.TBIDx
/// turns TBI off for instruction fetches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    /// Instruction fetch.
    Fetch,
    /// Data access.
    Data,
}

/// A successful translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The guest-physical address.
    pub gpa: GuestPhysAddr,
    /// The level of the final descriptor (1 or 2 for a block, 3 for a page); `None` with the
    /// MMU off.
    pub level: Option<u8>,
    /// The final descriptor (0 with the MMU off): its AP, PXN and attribute bits.
    pub desc: u64,
    /// [`TABLE_LIMITS`] bits (APTable[1], PXNTable) of the table descriptors on the way, ORed.
    pub table_limits: u64,
}

/// The table-descriptor bits that limit everything below: APTable[1] (bit 62: no write) and
/// PXNTable (bit 59: no EL1 execution).
pub const TABLE_LIMITS: u64 = 1 << 62 | 1 << 59;

impl Translation {
    /// Whether an EL1 store may go there: AP[2] (bit 7) clear and no APTable[1] on the way
    /// (always with the MMU off).
    pub const fn el1_writable(&self) -> bool {
        self.level.is_none() || (self.desc & (1 << 7) == 0 && self.table_limits & (1 << 62) == 0)
    }

    /// Whether EL1 may execute there: PXN (bit 53) clear, no PXNTable on the way, and not
    /// writable while SCTLR_EL1.WXN (bit 19) is set (always with the MMU off).
    pub const fn el1_executable(&self, sctlr: u64) -> bool {
        self.level.is_none()
            || (self.desc & (1 << 53) == 0
                && self.table_limits & (1 << 59) == 0
                && !(sctlr & (1 << 19) != 0 && self.el1_writable()))
    }
}

/// Why a translation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// Translation fault at the level given (level 0 also for a VA outside both ranges).
    Translation {
        /// Lookup level.
        level: u8,
    },
    /// An output address (or the table base) exceeds TCR_EL1.IPS.
    AddressSize {
        /// Lookup level (0 for the TTBR).
        level: u8,
    },
    /// The final descriptor has AF = 0 and hardware access-flag update is off.
    AccessFlag {
        /// Lookup level.
        level: u8,
    },
    /// TCR_EL1.EPDx disables walks from TTBRx.
    WalkDisabled {
        /// 0 or 1.
        ttbr: u8,
    },
    /// TCR_EL1.TGx selects a granule other than 4 KiB (or a reserved value).
    UnsupportedGranule {
        /// 0 or 1.
        ttbr: u8,
        /// The raw TGx field.
        tg: u8,
    },
    /// TCR_EL1.TxSZ outside 16..=39.
    UnsupportedTxSz {
        /// 0 or 1.
        ttbr: u8,
        /// The raw TxSZ field.
        txsz: u8,
    },
    /// TCR_EL1.DS is set (FEAT_LPA2 descriptor format).
    UnsupportedLpa2,
    /// A descriptor read fell outside guest RAM.
    Memory(MemError),
}

/// Output address bits 47:12 of a descriptor.
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Output (intermediate physical) address size for TCR_EL1.IPS.
const fn ips_bits(tcr: u64) -> u32 {
    match (tcr >> 32) & 7 {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        // 0b101 is 48 bits; 52 bits (0b110) needs FEAT_LPA, which is absent here, and the
        // reserved 0b111 behaves as an implemented size: both are treated as 48 bits.
        _ => 48,
    }
}

/// Translates `va` with the given controls, reading descriptors from `mem`.
pub fn translate(
    cfg: &MmuConfig,
    mem: &(impl GuestMemory + ?Sized),
    va: GuestVirtAddr,
    kind: AccessKind,
) -> Result<Translation, WalkError> {
    let va = va.raw();
    if cfg.sctlr & 1 == 0 {
        return Ok(Translation {
            gpa: GuestPhysAddr(va),
            level: None,
            desc: 0,
            table_limits: 0,
        });
    }
    let tcr = cfg.tcr;
    if tcr & (1 << 59) != 0 {
        return Err(WalkError::UnsupportedLpa2);
    }
    let upper = va & (1 << 55) != 0;
    let (ttbr_n, txsz, epd, tg_4k, tbi, tbid, ttbr) = if upper {
        let tg = ((tcr >> 30) & 3) as u8;
        (
            1u8,
            (tcr >> 16) & 63,
            tcr & (1 << 23) != 0,
            tg == 0b10,
            tcr & (1 << 38) != 0,
            tcr & (1 << 52) != 0,
            cfg.ttbr1,
        )
    } else {
        let tg = ((tcr >> 14) & 3) as u8;
        (
            0u8,
            tcr & 63,
            tcr & (1 << 7) != 0,
            tg == 0b00,
            tcr & (1 << 37) != 0,
            tcr & (1 << 51) != 0,
            cfg.ttbr0,
        )
    };
    if !tg_4k {
        let tg = if upper {
            (tcr >> 30) & 3
        } else {
            (tcr >> 14) & 3
        } as u8;
        return Err(WalkError::UnsupportedGranule { ttbr: ttbr_n, tg });
    }
    if !(16..=39).contains(&txsz) {
        return Err(WalkError::UnsupportedTxSz {
            ttbr: ttbr_n,
            txsz: txsz as u8,
        });
    }
    let va_bits = 64 - txsz as u32; // 25..=48
    // Bits [top:va_bits] must all equal bit 55, where top is 55 with TBI in effect, else 63.
    let tbi_active = tbi && (matches!(kind, AccessKind::Data) || !tbid);
    let top = if tbi_active { 55 } else { 63 };
    let range_mask = (u64::MAX >> (63 - top)) & !((1u64 << va_bits) - 1);
    let expect = if upper { range_mask } else { 0 };
    if va & range_mask != expect {
        return Err(WalkError::Translation { level: 0 });
    }
    if epd {
        return Err(WalkError::WalkDisabled { ttbr: ttbr_n });
    }
    let pa_bits = ips_bits(tcr);
    let start: u32 = match va_bits {
        40.. => 0,
        31..=39 => 1,
        _ => 2,
    };
    // Index bits resolved at the starting level (1..=9) and the table alignment that follows.
    let start_shift = 12 + 9 * (3 - start);
    let start_idx_bits = va_bits - start_shift;
    let ttbr_addr = ttbr & 0x0000_ffff_ffff_fffe;
    if ttbr_addr >> pa_bits != 0 {
        return Err(WalkError::AddressSize { level: 0 });
    }
    let mut table = ttbr_addr & !((1u64 << (start_idx_bits + 3)) - 1);
    let mut table_limits = 0;
    // At most four lookups: a table descriptor only leads on from levels 0..=2.
    for level in start..=3 {
        let shift = 12 + 9 * (3 - level);
        let idx_bits = if level == start { start_idx_bits } else { 9 };
        let idx = (va >> shift) & ((1u64 << idx_bits) - 1);
        let desc = mem
            .read_u64(GuestPhysAddr(table | (idx << 3)))
            .map_err(WalkError::Memory)?;
        let lvl = level as u8;
        match (desc & 3, level) {
            (3, 0..=2) => {
                let next = desc & OA_MASK;
                if next >> pa_bits != 0 {
                    return Err(WalkError::AddressSize { level: lvl });
                }
                table = next;
                table_limits |= desc & TABLE_LIMITS;
            }
            (1, 1..=2) | (3, 3) => {
                let block_mask = (1u64 << shift) - 1;
                let oa = desc & OA_MASK & !block_mask;
                if oa >> pa_bits != 0 {
                    return Err(WalkError::AddressSize { level: lvl });
                }
                if desc & (1 << 10) == 0 && tcr & (1 << 39) == 0 {
                    return Err(WalkError::AccessFlag { level: lvl });
                }
                return Ok(Translation {
                    gpa: GuestPhysAddr(oa | (va & block_mask)),
                    level: Some(lvl),
                    desc,
                    table_limits,
                });
            }
            _ => return Err(WalkError::Translation { level: lvl }),
        }
    }
    // Not reached: level 3 either maps a page or faults.
    Err(WalkError::Translation { level: 3 })
}
