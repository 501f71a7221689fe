//! The system description as data: memory regions, protection domains (with their maps, IRQs,
//! children and virtual machine) and channels.

/// Smallest page size on AArch64; region sizes and map addresses are multiples of it.
pub const PAGE_SIZE: u64 = 0x1000;
/// Channel ids are in `0..MAX_CHANNEL_ID + 1` (Microkit: at least 0 and less than 63).
pub const MAX_CHANNEL_ID: u64 = 62;

/// A whole system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    /// `<memory_region>` elements.
    pub memory_regions: Vec<MemoryRegion>,
    /// Every `<protection_domain>`, children included (flattened, parents before children).
    pub pds: Vec<ProtectionDomain>,
    /// `<channel>` elements.
    pub channels: Vec<Channel>,
}

/// A `<memory_region>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Unique name.
    pub name: String,
    /// Size in bytes (a multiple of the page size).
    pub size: u64,
    /// Page size, if given.
    pub page_size: Option<u64>,
    /// Physical address, if fixed (device memory).
    pub phys_addr: Option<u64>,
    /// File the region is filled with at start, if any.
    pub prefill_path: Option<String>,
    /// Line in system.xml.
    pub line: u32,
}

/// Access permissions of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
}

/// A `<map>` of a memory region into a PD or VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    /// Name of the mapped region.
    pub mr: String,
    /// Virtual address (guest-physical for a VM).
    pub vaddr: u64,
    /// Permissions.
    pub perms: Perms,
    /// Cached mapping.
    pub cached: bool,
    /// Symbol patched with the address.
    pub setvar_vaddr: Option<String>,
    /// Symbol patched with the size.
    pub setvar_size: Option<String>,
    /// Line in system.xml.
    pub line: u32,
}

/// IRQ trigger mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Level-triggered (the default).
    Level,
    /// Edge-triggered.
    Edge,
}

/// An `<irq>` delivered to a PD on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Irq {
    /// Hardware interrupt number.
    pub irq: u64,
    /// Channel id.
    pub id: u64,
    /// Trigger mode.
    pub trigger: Trigger,
    /// Symbol patched with the channel id.
    pub setvar_id: Option<String>,
    /// Line in system.xml.
    pub line: u32,
}

/// A `<setvar>` element (symbol patched with a region's physical address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetVar {
    /// Symbol.
    pub symbol: String,
    /// Region whose physical address is written.
    pub region_paddr: String,
}

/// A `<vcpu>` of a virtual machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vcpu {
    /// vCPU id (the `Child` id the VMM sees in faults).
    pub id: u64,
    /// Symbol patched with the id.
    pub setvar_id: Option<String>,
}

/// A `<virtual_machine>` owned by a PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualMachine {
    /// Unique name.
    pub name: String,
    /// Priority.
    pub priority: u64,
    /// vCPUs.
    pub vcpus: Vec<Vcpu>,
    /// Guest-physical mappings.
    pub maps: Vec<Map>,
}

/// A `<protection_domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionDomain {
    /// Unique name.
    pub name: String,
    /// Priority 0..=254.
    pub priority: u64,
    /// Budget in microseconds.
    pub budget: u64,
    /// Period in microseconds.
    pub period: u64,
    /// Passive PD.
    pub passive: bool,
    /// May make SMC calls through the kernel (`smc="true"`: Microkit gives it an SMC capability).
    pub smc: bool,
    /// Stack size in bytes.
    pub stack_size: u64,
    /// ELF file name.
    pub program_image: String,
    /// Maps.
    pub maps: Vec<Map>,
    /// IRQs.
    pub irqs: Vec<Irq>,
    /// `<setvar>`s.
    pub setvars: Vec<SetVar>,
    /// Index of the parent PD in [`System::pds`], for a child PD.
    pub parent: Option<usize>,
    /// Child id under the parent.
    pub child_id: Option<u64>,
    /// Virtual machine, if any.
    pub virtual_machine: Option<VirtualMachine>,
    /// Line in system.xml.
    pub line: u32,
}

/// One `<end>` of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// PD name.
    pub pd: String,
    /// Channel id in that PD.
    pub id: u64,
    /// This end may make protected calls to the other.
    pub pp: bool,
    /// This end may notify the other.
    pub notify: bool,
    /// Symbol patched with the id.
    pub setvar_id: Option<String>,
    /// Line in system.xml.
    pub line: u32,
}

/// A `<channel>` between two PDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// First end.
    pub a: End,
    /// Second end.
    pub b: End,
    /// Line in system.xml.
    pub line: u32,
}

impl System {
    /// The PD called `name`.
    pub fn pd(&self, name: &str) -> Option<&ProtectionDomain> {
        self.pds.iter().find(|p| p.name == name)
    }
    /// The region called `name`.
    pub fn region(&self, name: &str) -> Option<&MemoryRegion> {
        self.memory_regions.iter().find(|m| m.name == name)
    }
}
