//! Exit statistics in the spirit of VirtualBox's STAM: how many guest exits of each trap class and
//! of each access handler there were, and how many kernel invocations they cost.
//!
//! This module owns the counters ([`Stats`]) and their printed report. Counters saturate at
//! `u64::MAX` instead of overflowing, so no sequence of exits can panic. Recording is O(1) and
//! allocation-free; a `Stats` can live in a `static` (see [`Stats::new`]).
//!
//! The report ([`Stats::write_report`], also [`core::fmt::Display`]) is a stable, greppable block:
//!
//! ```text
//! vmm: trap statistics
//!   total exits=5 kernel-calls=12 mean=2.40
//!   mmio-read exits=3 kernel-calls=6 mean=2.00 max=3
//!   hvc exits=2 kernel-calls=6 mean=3.00 max=4
//!   handler 7 exits=3 kernel-calls=6
//!   handler-unknown exits=1 kernel-calls=2
//! ```
//!
//! The first line is always `vmm: trap statistics` and the `total` line always follows it; a class
//! line (in [`TrapClass::ALL`] order) and a `handler <id>` line (in id order) appear only when its
//! exit count is non-zero, and the `handler-unknown` line only when some exit named a handler id
//! at or above the table size `N`. `mean` is kernel calls per exit, truncated to two decimals;
//! `max` is the most kernel calls a single exit of that class took.

use core::fmt;

/// The class of a guest exit, as the trap classifier decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrapClass {
    /// A guest read from emulated MMIO.
    MmioRead,
    /// A guest write to emulated MMIO.
    MmioWrite,
    /// A write to RAM watched by a WRITE-kind access handler.
    WriteHandler,
    /// A trapped MSR/MRS/system instruction.
    SysReg,
    /// An HVC call (other than PSCI).
    Hvc,
    /// An SMC call (other than PSCI).
    Smc,
    /// A PSCI call.
    Psci,
    /// A trapped WFI.
    Wfi,
    /// A trapped WFE.
    Wfe,
    /// A vGIC maintenance interrupt.
    VgicMaintenance,
    /// A virtual PPI (e.g. the virtual timer) to deliver.
    VirtualPpi,
    /// An abort reflected into the guest.
    GuestTrapAbort,
    /// An UNDEFINED (unknown reason) exception reflected into the guest.
    GuestTrapUndef,
    /// An exit the VMM could not handle on its own account (an error on the hypervisor side).
    HypervisorFault,
}

impl TrapClass {
    /// Number of classes.
    pub const COUNT: usize = 14;

    /// Every class, in report order.
    pub const ALL: [TrapClass; TrapClass::COUNT] = [
        TrapClass::MmioRead,
        TrapClass::MmioWrite,
        TrapClass::WriteHandler,
        TrapClass::SysReg,
        TrapClass::Hvc,
        TrapClass::Smc,
        TrapClass::Psci,
        TrapClass::Wfi,
        TrapClass::Wfe,
        TrapClass::VgicMaintenance,
        TrapClass::VirtualPpi,
        TrapClass::GuestTrapAbort,
        TrapClass::GuestTrapUndef,
        TrapClass::HypervisorFault,
    ];

    /// The stable name printed in the report (lower case, `-` separated, no spaces).
    pub const fn name(self) -> &'static str {
        match self {
            TrapClass::MmioRead => "mmio-read",
            TrapClass::MmioWrite => "mmio-write",
            TrapClass::WriteHandler => "write-handler",
            TrapClass::SysReg => "sysreg",
            TrapClass::Hvc => "hvc",
            TrapClass::Smc => "smc",
            TrapClass::Psci => "psci",
            TrapClass::Wfi => "wfi",
            TrapClass::Wfe => "wfe",
            TrapClass::VgicMaintenance => "vgic-maintenance",
            TrapClass::VirtualPpi => "virtual-ppi",
            TrapClass::GuestTrapAbort => "guest-abort",
            TrapClass::GuestTrapUndef => "guest-undef",
            TrapClass::HypervisorFault => "hypervisor-fault",
        }
    }

    /// Index into per-class tables (declaration order).
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Exit and kernel-call counts of one class or handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitCounts {
    /// Exits recorded.
    pub exits: u64,
    /// Kernel invocations those exits made, summed.
    pub kernel_calls: u64,
    /// The most kernel invocations a single one of those exits made.
    pub max_kernel_calls: u32,
}

impl ExitCounts {
    /// All zero.
    pub const ZERO: ExitCounts = ExitCounts {
        exits: 0,
        kernel_calls: 0,
        max_kernel_calls: 0,
    };

    const fn record(&mut self, kernel_invocations: u32) {
        self.exits = self.exits.saturating_add(1);
        self.kernel_calls = self.kernel_calls.saturating_add(kernel_invocations as u64);
        if kernel_invocations > self.max_kernel_calls {
            self.max_kernel_calls = kernel_invocations;
        }
    }

    const fn merge(&mut self, other: &ExitCounts) {
        self.exits = self.exits.saturating_add(other.exits);
        self.kernel_calls = self.kernel_calls.saturating_add(other.kernel_calls);
        if other.max_kernel_calls > self.max_kernel_calls {
            self.max_kernel_calls = other.max_kernel_calls;
        }
    }
}

/// Writes `num / den` truncated to two decimals (`0.00` when `den` is zero).
fn write_mean(out: &mut impl fmt::Write, num: u64, den: u64) -> fmt::Result {
    if den == 0 {
        return out.write_str("0.00");
    }
    let hundredths = (num as u128) * 100 / (den as u128);
    write!(out, "{}.{:02}", hundredths / 100, hundredths % 100)
}

/// Exit statistics of one VMM (or one vCPU) with per-handler counts for handler ids `0..N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats<const N: usize> {
    total: ExitCounts,
    classes: [ExitCounts; TrapClass::COUNT],
    handlers: [ExitCounts; N],
    handler_unknown: ExitCounts,
}

impl<const N: usize> Default for Stats<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Stats<N> {
    /// Every counter zero.
    pub const fn new() -> Self {
        Self {
            total: ExitCounts::ZERO,
            classes: [ExitCounts::ZERO; TrapClass::COUNT],
            handlers: [ExitCounts::ZERO; N],
            handler_unknown: ExitCounts::ZERO,
        }
    }

    /// Records one exit of `class`, handled by access handler `handler` if any, that made
    /// `kernel_invocations` kernel invocations. A handler id `>= N` is counted under
    /// `handler-unknown` instead of its own line.
    pub const fn record_exit(
        &mut self,
        class: TrapClass,
        handler: Option<u16>,
        kernel_invocations: u32,
    ) {
        self.total.record(kernel_invocations);
        self.classes[class.index()].record(kernel_invocations);
        if let Some(id) = handler {
            let i = id as usize;
            if i < N {
                self.handlers[i].record(kernel_invocations);
            } else {
                self.handler_unknown.record(kernel_invocations);
            }
        }
    }

    /// Adds every counter of `other` (e.g. another vCPU's) into `self`.
    pub const fn merge(&mut self, other: &Stats<N>) {
        self.total.merge(&other.total);
        let mut i = 0;
        while i < TrapClass::COUNT {
            self.classes[i].merge(&other.classes[i]);
            i += 1;
        }
        let mut h = 0;
        while h < N {
            self.handlers[h].merge(&other.handlers[h]);
            h += 1;
        }
        self.handler_unknown.merge(&other.handler_unknown);
    }

    /// Sets every counter back to zero.
    pub const fn reset(&mut self) {
        *self = Self::new();
    }

    /// All exits together.
    pub const fn total(&self) -> ExitCounts {
        self.total
    }

    /// The counts of one class.
    pub const fn class(&self, class: TrapClass) -> ExitCounts {
        self.classes[class.index()]
    }

    /// The counts of handler `id`, or `None` if `id >= N`.
    pub const fn handler(&self, id: u16) -> Option<ExitCounts> {
        let i = id as usize;
        if i < N { Some(self.handlers[i]) } else { None }
    }

    /// The counts of exits that named a handler id `>= N`.
    pub const fn handler_unknown(&self) -> ExitCounts {
        self.handler_unknown
    }

    /// Prints the report block described in the module documentation.
    pub fn write_report(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str("vmm: trap statistics\n")?;
        write!(
            out,
            "  total exits={} kernel-calls={} mean=",
            self.total.exits, self.total.kernel_calls
        )?;
        write_mean(out, self.total.kernel_calls, self.total.exits)?;
        out.write_str("\n")?;
        for class in TrapClass::ALL {
            let c = &self.classes[class.index()];
            if c.exits == 0 {
                continue;
            }
            write!(
                out,
                "  {} exits={} kernel-calls={} mean=",
                class.name(),
                c.exits,
                c.kernel_calls
            )?;
            write_mean(out, c.kernel_calls, c.exits)?;
            writeln!(out, " max={}", c.max_kernel_calls)?;
        }
        for (id, h) in self.handlers.iter().enumerate() {
            if h.exits != 0 {
                writeln!(
                    out,
                    "  handler {} exits={} kernel-calls={}",
                    id, h.exits, h.kernel_calls
                )?;
            }
        }
        let u = &self.handler_unknown;
        if u.exits != 0 {
            writeln!(
                out,
                "  handler-unknown exits={} kernel-calls={}",
                u.exits, u.kernel_calls
            )?;
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Display for Stats<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_report(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_saturate_instead_of_overflowing() {
        let mut s = Stats::<2>::new();
        s.total.exits = u64::MAX;
        s.total.kernel_calls = u64::MAX - 1;
        s.classes[TrapClass::Hvc.index()].kernel_calls = u64::MAX - 2;
        s.handlers[1].exits = u64::MAX;
        s.record_exit(TrapClass::Hvc, Some(1), u32::MAX);
        assert_eq!(s.total().exits, u64::MAX);
        assert_eq!(s.total().kernel_calls, u64::MAX);
        assert_eq!(s.class(TrapClass::Hvc).kernel_calls, u64::MAX);
        assert_eq!(s.class(TrapClass::Hvc).exits, 1);
        assert_eq!(s.handler(1).unwrap().exits, u64::MAX);
        let other = s.clone();
        s.merge(&other);
        assert_eq!(s.total().exits, u64::MAX);
        assert_eq!(s.class(TrapClass::Hvc).exits, 2);
    }

    #[test]
    fn mean_of_huge_counts_does_not_overflow() {
        let mut out = heapless::String::<64>::new();
        write_mean(&mut out, u64::MAX, 1).unwrap();
        assert_eq!(out.as_str(), "18446744073709551615.00");
    }

    #[test]
    fn class_table_matches_declaration_order() {
        for (i, c) in TrapClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
