//! The VMM protection domain: one guest VM with up to four vCPUs on the QEMU virt layout.
//!
//! Wiring only: at start it registers the virtual platform's devices in the access-handler tree,
//! loads the embedded guest (Linux arm64 Image + DTB) through the core's loader and starts vCPU
//! 0 (the others wait for the guest's PSCI CPU_ON); on each fault it decodes, classifies and
//! handles the exit of the vCPU it came from with `vmm-core`, writes back only the registers the
//! exit changed, replies, and counts the exit with its kernel invocations. Every vCPU of the VM
//! is served here: they share the distributor and the devices, so an SGI or a device interrupt
//! for another vCPU is a list-register write (and, if that vCPU waits in WFI, a resume), not a
//! message to another PD. A hypervisor fault stops the VM with a diagnostic; the PD itself keeps
//! serving.
#![cfg_attr(not(test), no_std)]

pub mod blk_backend;
pub mod console_run;
pub mod devices;
pub mod guest_memory;
pub mod lazy_vcpu;
pub mod net_backend;
pub mod virtio;

use blk_backend::QueueBackend;
use devices::{DeviceId, Devices, GlueStats, KernelInjector, PlatformCtx, layout};
use guest_memory::{RegionMemory, Window};
use lazy_vcpu::LazyVcpu;
use microkit_rt::abi::{MSG_MAX_LENGTH, user_context, vcpu_reg};
use microkit_rt::{
    ChannelSet, Child, FaultReply, Handler, Kernel, KernelError, MessageInfo, RegionError,
    SharedRegion,
};
use vmm_core::addr::{GpaRange, GuestPhysAddr};
use vmm_core::classify::{Exit, ExitAction, ExitReport};
use vmm_core::fault::label;
use vmm_core::handlers::{HandlerKind, HandlerTree};
use vmm_core::loader::{self, LayoutRequest, Place};
use vmm_core::psci::{Psci, fid};
use vmm_core::stats::{Stats, TrapClass};
use vmm_core::vgic::{self, Vgic};

/// Constants generated from system.xml.
#[allow(non_upper_case_globals, dead_code)]
pub mod system {
    include!(concat!(env!("OUT_DIR"), "/system.rs"));
}

/// The guest embedded at build time.
pub mod guest {
    include!(concat!(env!("OUT_DIR"), "/guest.rs"));
}

/// Where the VMM's own messages go: through the serial driver domain when the console's TX
/// queue is attached, else to the kernel's debug console.
struct Out<'a, K: Kernel> {
    console: &'a mut devices::Console,
    k: &'a mut K,
}

impl<K: Kernel> core::fmt::Write for Out<'_, K> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.console.write_vmm(self.k, s.as_bytes());
        Ok(())
    }
}

/// `say!(vmm, "...", args)`: one line of the VMM's own output (see [`Out`]).
macro_rules! say {
    ($vmm:expr, $($arg:tt)*) => {{
        use core::fmt::Write as _;
        let mut o = Out { console: &mut $vmm.devices.console, k: &mut $vmm.k };
        let _ = writeln!(o, $($arg)*);
    }};
}

/// The VM's vCPUs, as system.xml lists them: vCPU `i` (PSCI MPIDR Aff0 `i`, GIC CPU
/// interface `i`) is Microkit id `i`. Checked at build time: 1 to 8 (the GICv2 limit), ids 0..n.
pub const VCPUS: &[Child] = system::VM_VCPUS;
const _: () = {
    assert!(!VCPUS.is_empty() && VCPUS.len() <= vgic::MAX_VCPUS);
    let mut i = 0;
    while i < VCPUS.len() {
        assert!(
            VCPUS[i].index() as usize == i,
            "vCPU ids must be 0..n in order"
        );
        i += 1;
    }
};

/// What the VMM keeps of each vCPU between its exits.
#[derive(Debug, Clone, Copy, Default)]
struct CpuSlot {
    /// While parked with its virtual timer armed: the deadline (CNTPCT).
    deadline: Option<u64>,
    /// Its CNTVOFF_EL2 (read once: nothing changes it).
    cntvoff: Option<u64>,
    /// Exits it took.
    exits: u64,
}

impl CpuSlot {
    /// Not parked, nothing read yet.
    const IDLE: CpuSlot = CpuSlot {
        deadline: None,
        cntvoff: None,
        exits: 0,
    };
}

/// The wake-up timer's channel: the timer driver's (sDDF's timer protocol, `sddf_queue::timer`;
/// see [`Vmm::setup`]). A SET_TIMEOUT call asks for its notification on this channel.
pub const WAKEUP_TIMER: microkit_rt::Channel = system::TIMER_DRIVER;

/// Handler-tree capacity. The VMM registers seven ranges (the PL011, the test device, the GIC
/// distributor, the write-protected page, virtio-console, virtio-blk, virtio-net): sixteen leave
/// room for as many again. Each slot is about 56 bytes of the VMM's static state, so 256 slots
/// were 14 KiB of an image with a size goal.
pub const HANDLERS: usize = 16;
/// Handlers counted individually in the statistics.
pub const STAT_HANDLERS: usize = 16;

/// Where the VM is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    /// Not started (no guest, or loading failed).
    NotStarted,
    /// Running.
    Running,
    /// Powered off by the guest.
    Off,
    /// Stopped by a hypervisor fault.
    Stopped,
}

/// The guest blobs to boot.
#[derive(Clone, Copy)]
pub struct GuestBlobs {
    /// arm64 Image.
    pub image: Option<&'static [u8]>,
    /// Flattened device tree.
    pub dtb: Option<&'static [u8]>,
    /// Initial ramdisk.
    pub initrd: Option<&'static [u8]>,
}

impl GuestBlobs {
    /// The blobs embedded at build time.
    pub fn embedded() -> Self {
        GuestBlobs {
            image: guest::IMAGE,
            dtb: guest::DTB,
            initrd: guest::INITRD,
        }
    }
}

/// What can go wrong in the VMM PD (never the guest's doing).
#[derive(Debug)]
pub enum VmmError {
    /// A fault from a child that is not this VM's vCPU.
    UnknownChild(u8),
}

impl core::fmt::Display for VmmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmmError::UnknownChild(c) => write!(f, "fault from unknown child {c}"),
        }
    }
}

/// The liveness peer's channel: present in the test system (system.xml + system-test.xml), where
/// the VMM asks selftest_ping for a notification once its VM ended; `None` in production.
pub const LIVENESS: Option<microkit_rt::Channel> = system::channel_to("selftest_ping");

/// The VMM.
pub struct Vmm<K: Kernel + Clone> {
    k: K,
    /// The register cache of the vCPU whose exit is being handled, reset at each exit.
    regs: LazyVcpu<K>,
    mem: Option<RegionMemory>,
    tree: HandlerTree<DeviceId, HANDLERS>,
    psci: Psci<{ vgic::MAX_VCPUS }>,
    vgic: Vgic,
    devices: Devices,
    glue: GlueStats,
    /// The console runs' counters and decoded instructions ([`console_run`]).
    console_runs: console_run::Runs,
    stats: Stats<STAT_HANDLERS>,
    state: VmState,
    /// Each vCPU's idle state and exit count (the first `VCPUS.len()` are used).
    cpus: [CpuSlot; vgic::MAX_VCPUS],
    /// The vCPUs waiting in WFI, a bit each: their faults are not answered (the threads are
    /// suspended); an interrupt for one or its virtual timer's deadline resumes it. One word,
    /// so that an exit with nobody parked checks it in one instruction.
    parked: u8,
    /// PSCI CPU_ON calls that started a vCPU.
    cpu_ons: u64,
    /// The deadline (CNTPCT) of the timeout pending at the timer driver, if one is: asked for
    /// and not yet notified. The protocol cannot cancel one, so it stays pending after the
    /// vCPUs it was for resumed (its notification then resumes nobody).
    wakeup_at: Option<u64>,
    /// The guest's PSCI SYSTEM_OFF / SYSTEM_RESET to pass to the firmware once its VM ended
    /// (only when system.xml gives the VMM an SMC capability).
    machine_request: Option<u32>,
    /// The counter's frequency (CNTFRQ_EL0), to turn a deadline into the timer driver's ns.
    timer_hz: u64,
    /// system.xml gives this VMM the wake-up timer: a channel on which it may call the timer
    /// driver. Without it a vCPU that waits in WFI for its virtual timer is not parked (it
    /// resumes at once).
    wakeup_timer: bool,
}

/// Initial content of the write-protected page: the u64 at offset 8*i is this | i.
pub const WP_PATTERN: u64 = 0x5757_0000_0000_0000;

impl<K: Kernel + Clone> Vmm<K> {
    /// Sets up the VM and starts it. `ram` and `wp` are the VMM's mappings of guest RAM and of
    /// the write-protected page.
    pub fn new(
        k: K,
        ram: Result<SharedRegion, RegionError>,
        wp: Result<SharedRegion, RegionError>,
        blobs: GuestBlobs,
    ) -> Self {
        let mut vmm = Self::blank(k.clone(), k.clone());
        vmm.setup(k, ram, wp, blobs);
        vmm
    }

    /// A VMM with no VM yet, nothing registered and every counter zero: a constant, so that the
    /// PD keeps it in a static of its image ([`microkit_rt::PdStatic`]) rather than on its stack,
    /// and [`Self::setup`] finishes it in place. `k` and `regs_k` are placeholders (a const
    /// function cannot clone): `setup` replaces both.
    pub const fn blank(k: K, regs_k: K) -> Self {
        Vmm {
            regs: LazyVcpu::new(regs_k, VCPUS[0]),
            k,
            mem: None,
            tree: HandlerTree::new(),
            psci: match Psci::new(VCPUS.len()) {
                Ok(p) => p,
                Err(_) => panic!("1..=8 vCPUs (checked at build time)"),
            },
            // 1..=8 vCPUs, checked at build time.
            vgic: Vgic::at_reset(VCPUS.len()),
            devices: Devices::EMPTY,
            glue: GlueStats::ZERO,
            console_runs: console_run::Runs::new(),
            stats: Stats::new(),
            state: VmState::NotStarted,
            cpus: [CpuSlot::IDLE; vgic::MAX_VCPUS],
            parked: 0,
            cpu_ons: 0,
            wakeup_at: None,
            machine_request: None,
            timer_hz: 0,
            wakeup_timer: false,
        }
    }

    /// Sets up the VM of a [`Self::blank`] VMM in place and starts it (see [`Self::new`]).
    pub fn setup(
        &mut self,
        k: K,
        ram: Result<SharedRegion, RegionError>,
        wp: Result<SharedRegion, RegionError>,
        blobs: GuestBlobs,
    ) {
        self.regs = LazyVcpu::new(k.clone(), VCPUS[0]);
        self.wakeup_timer = k.may_call(WAKEUP_TIMER);
        self.timer_hz = k.timer_frequency();
        self.k = k;
        self.devices.add_virtio_console();
        let vmm = self;
        if !vmm.wakeup_timer {
            say!(
                vmm,
                "vmm: no wake-up timer (no protected call to timer_driver on channel {}): a \
                 vCPU waiting in WFI for its timer is resumed at once",
                WAKEUP_TIMER.index()
            );
        }
        match (ram, wp) {
            (Ok(ram), Ok(wp)) => {
                vmm.mem = Some(RegionMemory::new(
                    Window {
                        gpa: system::guest::guest_ram::GPA,
                        region: ram,
                    },
                    Window {
                        gpa: system::guest::guest_wp_page::GPA,
                        region: wp,
                    },
                ));
            }
            (ram, wp) => {
                say!(
                    vmm,
                    "vmm: guest memory not mapped (ram: {:?}, wp: {:?})",
                    ram.err(),
                    wp.err()
                );
                return;
            }
        }
        // PSCI CPU_ON may start a vCPU only inside guest RAM.
        if let Ok(ram) = GpaRange::new(
            GuestPhysAddr(system::guest::guest_ram::GPA),
            system::guest::guest_ram::SIZE as u64,
        ) {
            vmm.psci = vmm.psci.clone().with_entry_range(ram);
        }
        vmm.register_devices();
        vmm.fill_write_protected_page();
        vmm.boot(blobs);
    }

    fn register_devices(&mut self) {
        let ranges = [
            (
                layout::PL011_BASE,
                layout::PL011_SIZE,
                HandlerKind::All,
                DeviceId::Console,
            ),
            (
                layout::TESTDEV_BASE,
                layout::TESTDEV_SIZE,
                HandlerKind::All,
                DeviceId::TestDev,
            ),
            (
                vgic::GICD_BASE.raw(),
                vgic::GICD_SIZE,
                HandlerKind::All,
                DeviceId::Gicd,
            ),
            (
                layout::WP_PAGE,
                0x1000,
                HandlerKind::Write,
                DeviceId::WriteProtected,
            ),
            (
                virtio::layout::CONSOLE_BASE,
                virtio::layout::WINDOW,
                HandlerKind::All,
                DeviceId::VirtioConsole,
            ),
        ];
        for (base, size, kind, id) in ranges {
            if let Err(e) = self.tree.register_raw(GuestPhysAddr(base), size, kind, id) {
                say!(
                    self,
                    "vmm: cannot register {:?} at {:#x}: {:?}",
                    id,
                    base,
                    e
                );
            }
        }
    }

    fn fill_write_protected_page(&mut self) {
        if let Some(mem) = self.mem.as_mut() {
            use vmm_core::memory::GuestMemory;
            for i in 0..512u64 {
                let _ = mem.write_u64(GuestPhysAddr(layout::WP_PAGE + 8 * i), WP_PATTERN | i);
            }
        }
    }

    fn boot(&mut self, blobs: GuestBlobs) {
        let (Some(image), Some(dtb)) = (blobs.image, blobs.dtb) else {
            say!(
                self,
                "vmm: no guest image embedded (build with GUEST_IMAGE and GUEST_DTB)"
            );
            return;
        };
        let Some(mem) = self.mem.as_mut() else { return };
        let Ok(ram) = GpaRange::new(
            GuestPhysAddr(system::guest::guest_ram::GPA),
            system::guest::guest_ram::SIZE as u64,
        ) else {
            return;
        };
        let req = LayoutRequest {
            dtb: Place::Auto,
            initrd: Place::Auto,
        };
        let (layout, boot) = match loader::load(mem, ram, image, dtb, blobs.initrd, req) {
            Ok(r) => r,
            Err(e) => {
                say!(self, "vmm: cannot load the guest: {:?}", e);
                return;
            }
        };
        say!(
            self,
            "vmm: guest loaded: kernel {:?}, dtb {:?}, initrd {:?}, entry {:#x}",
            layout.kernel,
            layout.dtb,
            layout.initrd,
            boot.pc
        );
        // Each vCPU's MPIDR (VMPIDR_EL2): Aff0 = its index, bit 31 RES1, U = 0 (a multiprocessor
        // system), as the device tree's cpu@N reg and PSCI's target_cpu name it.
        for (i, &c) in VCPUS.iter().enumerate() {
            let mpidr = 1 << 31 | vmm_core::psci::mpidr_of(i as u8);
            if let Err(e) = self.k.vcpu_write_reg(c, vcpu_reg::VMPIDR_EL2, mpidr) {
                say!(self, "vmm: cannot set vCPU {}'s MPIDR: {}", i, e);
            }
        }
        let started = self.start_vcpu(VCPUS[0], boot.pc, boot.x0, boot.pstate, boot.sctlr_el1);
        match started {
            Ok(()) => {
                self.state = VmState::Running;
                say!(self, "vmm: guest started");
            }
            Err(e) => say!(self, "vmm: cannot start the guest vCPU: {}", e),
        }
    }

    /// Puts vCPU `c` at `pc` with x0 = `x0`, x1..x3 = 0, no stack, the given PSTATE and SCTLR_EL1
    /// (Linux's booting.rst: EL1h, DAIF masked, MMU and caches off), and resumes it: the boot
    /// vCPU, and each one the guest starts with PSCI CPU_ON.
    fn start_vcpu(
        &mut self,
        c: Child,
        pc: u64,
        x0: u64,
        pstate: u64,
        sctlr: u64,
    ) -> Result<(), KernelError> {
        let sctlr_field = lazy_vcpu::vcpu_field(vmm_core::vcpu::SysReg::SctlrEl1);
        self.k.vcpu_write_reg(c, sctlr_field, sctlr)?;
        // pc, sp, spsr, x0..x3.
        self.k
            .vm_write_registers(c, false, &[pc, 0, pstate, x0, 0, 0, 0])?;
        self.k.vm_resume(c)
    }

    /// PSCI CPU_ON accepted by the PSCI table: starts vCPU `target` at `entry` with x0 =
    /// `context` in the boot state; if that fails, tells the table and makes the caller's x0
    /// (in the register cache of this exit) INTERNAL_FAILURE. Returns the kernel calls made.
    #[cold]
    fn cpu_on(&mut self, target: usize, entry: u64, context: u64) -> u32 {
        let started = match VCPUS.get(target) {
            Some(&c) => self.start_vcpu(
                c,
                entry,
                context,
                loader::BOOT_PSTATE,
                loader::BOOT_SCTLR_EL1,
            ),
            None => Err(KernelError::Sel4(microkit_rt::abi::error::RANGE_ERROR)),
        };
        match started {
            Ok(()) => {
                let _ = self.psci.vcpu_started(target);
                self.cpu_ons = self.cpu_ons.saturating_add(1);
                // A fresh start: not parked, its CNTVOFF read again; its exits still count.
                let exits = self.cpus[target].exits;
                self.cpus[target] = CpuSlot {
                    exits,
                    ..CpuSlot::default()
                };
                3
            }
            Err(e) => {
                let _ = self.psci.cpu_on_failed(target);
                say!(
                    self,
                    "vmm: PSCI CPU_ON: cannot start vCPU {}: {}",
                    target,
                    e
                );
                let failure = vmm_core::psci::ret_x0(vmm_core::psci::ret::INTERNAL_FAILURE);
                // Cannot fail: x0 is a valid register and the cache only records the value.
                let _ = vmm_core::vcpu::Vcpu::set_gpr(&mut self.regs, 0, failure);
                1
            }
        }
    }

    /// PSCI CPU_OFF of vCPU `v` (the PSCI table has it OFF): suspended, which also cancels its
    /// pending fault reply, until a CPU_ON starts it afresh. The last one ends the VM: nothing
    /// can power a vCPU on again.
    #[cold]
    fn cpu_off(&mut self, v: usize) {
        let _ = self.k.vm_suspend(VCPUS[v]);
        self.parked &= !(1 << v);
        self.cpus[v].deadline = None;
        let on =
            (0..VCPUS.len()).any(|i| self.psci.state(i) != Some(vmm_core::psci::PowerState::Off));
        if !on {
            self.state = VmState::Off;
            say!(self, "vmm: every vCPU is off (PSCI CPU_OFF): the VM ended");
        }
    }

    /// Sends the guest console through the serial driver's TX queue (its header and data
    /// regions, as system.xml maps them); without them it stays on the debug console.
    pub fn attach_serial_console(
        &mut self,
        header: Result<SharedRegion, RegionError>,
        data: Result<SharedRegion, RegionError>,
    ) {
        let views = serial_queue_views(header, data);
        match views {
            Ok((h, d, cap)) => match sddf_queue::serial::SerialProducer::new(h, d, cap) {
                Ok(tx) => self.devices.console.attach_serial(&mut self.k, tx),
                Err(e) => say!(self, "vmm: serial TX queue unusable: {:?}", e),
            },
            Err(e) => say!(self, "vmm: serial TX queue not mapped: {:?}", e),
        }
    }

    /// [`Self::attach_serial_console`] as a builder step (tests; the PD builds in place: a `Vmm`
    /// is large, and each by-value step may cost a copy of it on the stack).
    pub fn with_serial_console(
        mut self,
        header: Result<SharedRegion, RegionError>,
        data: Result<SharedRegion, RegionError>,
    ) -> Self {
        self.attach_serial_console(header, data);
        self
    }

    /// Takes the guest console's input from the serial driver's RX queue (its header and data
    /// regions, as system.xml maps them).
    pub fn attach_serial_input(
        &mut self,
        header: Result<SharedRegion, RegionError>,
        data: Result<SharedRegion, RegionError>,
    ) {
        let views = serial_queue_views(header, data);
        match views {
            Ok((h, d, cap)) => match sddf_queue::serial::SerialConsumer::new(h, d, cap) {
                Ok(rx) => {
                    self.devices.console.attach_input(rx);
                    // Input that arrived before this point.
                    self.service_devices();
                }
                Err(e) => say!(self, "vmm: serial RX queue unusable: {:?}", e),
            },
            Err(e) => say!(self, "vmm: serial RX queue not mapped: {:?}", e),
        }
    }

    /// [`Self::attach_serial_input`] as a builder step (tests; the PD builds in place: a `Vmm`
    /// is large, and each by-value step may cost a copy of it on the stack).
    pub fn with_serial_input(
        mut self,
        header: Result<SharedRegion, RegionError>,
        data: Result<SharedRegion, RegionError>,
    ) -> Self {
        self.attach_serial_input(header, data);
        self
    }

    /// Offers the guest a virtio-blk device backed by the block driver domain: its request,
    /// response and storage-info queues and the data region, as system.xml maps them. Without
    /// them, or while the driver has no storage, the guest finds no device at the address.
    /// Out of line (as [`Self::attach_net_device`]): the device is built on the stack (about
    /// 10 KiB) and moved into place, and inlined into the PD's start the two cards' frames
    /// added up (a 17.9 KiB frame, the stack's high-water mark); apart, the larger one counts.
    #[inline(never)]
    pub fn attach_block_device(
        &mut self,
        req: Result<SharedRegion, RegionError>,
        resp: Result<SharedRegion, RegionError>,
        info: Result<SharedRegion, RegionError>,
        data: Result<SharedRegion, RegionError>,
    ) {
        let regions = (|| {
            Ok::<_, RegionError>((
                req?.into_atomic_words()?,
                resp?.into_atomic_words()?,
                info?.into_atomic_words()?,
                data?.into_dma_buffer()?,
            ))
        })();
        let (req, resp, info, data) = match regions {
            Ok(r) => r,
            Err(e) => {
                say!(self, "vmm: block queues not mapped: {:?}", e);
                return;
            }
        };
        let backend = match QueueBackend::attach(req, resp, info, data) {
            Ok(b) => b,
            Err(e) => {
                say!(self, "vmm: no virtio-blk for the guest: {:?}", e);
                return;
            }
        };
        let config = vmm_devices::blk::BlkConfig::default();
        let dev = match vmm_devices::blk::BlkDevice::new(backend, config) {
            Ok(d) => d,
            Err(e) => {
                say!(self, "vmm: no virtio-blk for the guest: {:?}", e);
                return;
            }
        };
        let sectors = dev.capacity();
        let r = self.tree.register_raw(
            GuestPhysAddr(virtio::layout::BLK_BASE),
            virtio::layout::WINDOW,
            HandlerKind::All,
            DeviceId::VirtioBlk,
        );
        match r {
            Ok(_) => {
                self.devices.blk = Some(vmm_devices::mmio::MmioTransport::new(dev));
                say!(
                    self,
                    "vmm: virtio-blk at {:#x} (INTID {}): {} sectors, through blk_driver",
                    virtio::layout::BLK_BASE,
                    virtio::layout::BLK_IRQ,
                    sectors
                );
            }
            Err(e) => say!(self, "vmm: cannot register virtio-blk: {:?}", e),
        }
    }

    /// Offers the guest a virtio-net card with address `mac` wired to the network virtualiser:
    /// its four queues and two data regions, as system.xml maps them. Without them the guest
    /// finds no device at the address. The MAC address of a VMM is
    /// `sddf_queue::net::mac_for(its PD name)` ([`mac_of_name`]), the rule net_virt switches by.
    /// Out of line: see [`Self::attach_block_device`].
    #[inline(never)]
    pub fn attach_net_device(
        &mut self,
        mac: [u8; 6],
        queues: [Result<SharedRegion, RegionError>; 4],
        rx_data: Result<SharedRegion, RegionError>,
        tx_data: Result<SharedRegion, RegionError>,
    ) {
        let regions = (|| {
            let [a, b, c, d] = queues;
            Ok::<_, RegionError>(net_backend::NetRegions {
                rx_free: a?.into_atomic_halves()?,
                rx_active: b?.into_atomic_halves()?,
                tx_free: c?.into_atomic_halves()?,
                tx_active: d?.into_atomic_halves()?,
                rx_data: rx_data?,
                tx_data: tx_data?,
            })
        })();
        let regions = match regions {
            Ok(r) => r,
            Err(e) => {
                say!(self, "vmm: network queues not mapped: {:?}", e);
                return;
            }
        };
        let backend = match net_backend::NetQueues::attach(regions) {
            Ok(b) => b,
            Err(e) => {
                say!(self, "vmm: no virtio-net for the guest: {:?}", e);
                return;
            }
        };
        let config = vmm_devices::net::NetConfig {
            mac,
            ..vmm_devices::net::NetConfig::default()
        };
        let dev = match vmm_devices::net::NetDevice::new(backend, config) {
            Ok(d) => d,
            Err(e) => {
                say!(self, "vmm: no virtio-net for the guest: {:?}", e);
                return;
            }
        };
        let r = self.tree.register_raw(
            GuestPhysAddr(virtio::layout::NET_BASE),
            virtio::layout::WINDOW,
            HandlerKind::All,
            DeviceId::VirtioNet,
        );
        match r {
            Ok(_) => {
                self.devices.net = Some(vmm_devices::mmio::MmioTransport::new(dev));
                say!(
                    self,
                    "vmm: virtio-net at {:#x} (INTID {}): MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, through net_virt",
                    virtio::layout::NET_BASE,
                    virtio::layout::NET_IRQ,
                    mac[0],
                    mac[1],
                    mac[2],
                    mac[3],
                    mac[4],
                    mac[5]
                );
            }
            Err(e) => say!(self, "vmm: cannot register virtio-net: {:?}", e),
        }
    }

    /// [`Self::attach_block_device`] as a builder step (tests; the PD builds in place: a `Vmm`
    /// is large, and each by-value step may cost a copy of it on the stack).
    pub fn with_block_device(
        mut self,
        req: Result<SharedRegion, RegionError>,
        resp: Result<SharedRegion, RegionError>,
        info: Result<SharedRegion, RegionError>,
        data: Result<SharedRegion, RegionError>,
    ) -> Self {
        self.attach_block_device(req, resp, info, data);
        self
    }

    /// Work the driver domains' notifications bring: block responses to the guest's device,
    /// console input to the guest's PL011 or virtio console, and console output a stalled
    /// virtio console still holds.
    fn service_devices(&mut self) {
        let Some(mem) = self.mem.as_ref() else { return };
        mem.set_coherent(false);
        let mut ctx = PlatformCtx {
            devices: &mut self.devices,
            vgic: &mut self.vgic,
            inj: KernelInjector {
                k: self.k.clone(),
                calls: 0,
            },
            // The boot vCPU's SCTLR_EL1 says whether guest memory is cached (all vCPUs of a
            // Linux guest turn their caches on before they share data).
            vcpu: 0,
            mem: mem.view(),
            glue: &mut self.glue,
        };
        ctx.blk_completions();
        ctx.net_io();
        ctx.console_io();
    }

    /// On a WFI exit of vCPU `v`: whether it may wait suspended. Not while an interrupt is in
    /// its list registers or queued (the WFI completes at once) nor when its virtual timer is
    /// due; with the virtual timer armed, its deadline (CNTPCT = CNTVCT + CNTVOFF) is kept for
    /// the wake-up timer (a timeout of the timer driver at the earliest deadline of the parked
    /// vCPUs), so that its notification wakes the vCPU in time. `calls` counts the kernel calls.
    fn may_park(&mut self, v: usize, calls: &mut u32) -> bool {
        if self.vgic.has_interrupts(v) {
            return false;
        }
        let (Some(&c), Some(slot)) = (VCPUS.get(v), self.cpus.get_mut(v)) else {
            return false;
        };
        let mut read = |k: &mut K, field| {
            *calls += 1;
            k.vcpu_read_reg(c, field).ok()
        };
        let Some(ctl) = read(&mut self.k, vcpu_reg::CNTV_CTL) else {
            return false;
        };
        // ENABLE set, IMASK clear: the timer will interrupt the guest.
        if ctl & 0b11 != 0b01 {
            slot.deadline = None;
            return true;
        }
        // Nothing would wake it at its deadline.
        if !self.wakeup_timer {
            return false;
        }
        let cntvoff = match slot.cntvoff {
            Some(v) => v,
            None => match read(&mut self.k, vcpu_reg::CNTVOFF) {
                Some(v) => *slot.cntvoff.insert(v),
                None => return false,
            },
        };
        let Some(cval) = read(&mut self.k, vcpu_reg::CNTV_CVAL) else {
            return false;
        };
        let deadline = cval.wrapping_add(cntvoff);
        if deadline <= self.k.timer_now() {
            return false;
        }
        slot.deadline = Some(deadline);
        self.glue.timer_arms = self.glue.timer_arms.saturating_add(1);
        true
    }

    /// Asks the timer driver for a notification at the earliest deadline of the parked vCPUs,
    /// unless one at that deadline or earlier is pending already (its notification re-arms:
    /// see `notified`); a later or no deadline leaves the pending one alone (the protocol has
    /// no cancel). Returns the kernel calls made (the protected call).
    fn arm_wakeup(&mut self) -> u32 {
        if !self.wakeup_timer {
            return 0;
        }
        let parked = self.parked;
        let next = self.cpus[..VCPUS.len()]
            .iter()
            .enumerate()
            .filter(|&(v, _)| parked & 1 << v != 0)
            .filter_map(|(_, c)| c.deadline)
            .min();
        match (next, self.wakeup_at) {
            (Some(d), pending) if pending.is_none_or(|p| d < p) => {
                self.wakeup_at = Some(d);
                self.set_timeout(d);
                1
            }
            _ => 0,
        }
    }

    /// SET_TIMEOUT at the timer driver for counter value `deadline`: relative ns, rounded up so
    /// the notification never comes early (the driver rounds its deadline up too).
    fn set_timeout(&mut self, deadline: u64) {
        let ticks = deadline.saturating_sub(self.k.timer_now());
        let ns = sddf_queue::timer::ticks_to_ns_ceil(ticks, self.timer_hz);
        self.k.set_mr(0, ns);
        let msg = MessageInfo::new(sddf_queue::timer::SET_TIMEOUT, 1);
        match self.k.ppcall(WAKEUP_TIMER, msg) {
            Ok(r) if r.label() == 0 => {}
            Ok(r) => say!(
                self,
                "vmm: the timer driver refused a timeout: error {}",
                r.label()
            ),
            Err(e) => say!(self, "vmm: cannot call the timer driver: {}", e),
        }
    }

    /// Resumes parked vCPU `v`: an event brought the interrupt it waits for, or its deadline
    /// passed. TCB Resume restarts it at the PC the WFI exit wrote back. Returns the kernel
    /// calls made (0 when it was not parked).
    fn unpark(&mut self, v: usize) -> u32 {
        let (Some(&c), Some(slot)) = (VCPUS.get(v), self.cpus.get_mut(v)) else {
            return 0;
        };
        if self.parked & 1 << v == 0 {
            return 0;
        }
        self.parked &= !(1 << v);
        slot.deadline = None;
        if let Err(e) = self.k.vm_resume(c) {
            say!(self, "vmm: cannot resume parked vCPU {}: {}", v, e);
        }
        1
    }

    /// Resumes every parked vCPU the vGIC now holds an interrupt for (an SGI from another vCPU,
    /// a device's SPI routed to it), then re-arms the wake-up timer if one was resumed. Returns
    /// the kernel calls made.
    #[inline(never)]
    fn wake_interrupted(&mut self) -> u32 {
        let mut calls = 0;
        for v in 0..VCPUS.len() {
            if self.parked & 1 << v != 0 && self.vgic.has_interrupts(v) {
                calls += self.unpark(v);
            }
        }
        if calls > 0 {
            calls += self.arm_wakeup();
        }
        calls
    }

    /// Whether the boot vCPU (vCPU 0) is parked in WFI.
    pub fn parked(&self) -> bool {
        self.parked & 1 != 0
    }

    /// Whether vCPU `v` is parked in WFI.
    pub fn vcpu_parked(&self, v: usize) -> bool {
        v < VCPUS.len() && self.parked & 1 << v != 0
    }

    /// Exits vCPU `v` took.
    pub fn vcpu_exits(&self, v: usize) -> u64 {
        if v < VCPUS.len() {
            self.cpus[v].exits
        } else {
            0
        }
    }

    /// vCPU `v`'s PSCI power state (`None` past the VM's vCPUs).
    pub fn vcpu_power(&self, v: usize) -> Option<vmm_core::psci::PowerState> {
        self.psci.state(v)
    }

    /// Block requests waiting for the driver's response (`None` without virtio-blk).
    pub fn blk_in_flight(&self) -> Option<usize> {
        self.devices
            .blk
            .as_ref()
            .map(|b| b.device().backend().in_flight())
    }

    /// The glue's counters.
    pub fn glue_stats(&self) -> &GlueStats {
        &self.glue
    }

    /// The console runs' counters.
    pub fn console_run_stats(&self) -> &console_run::RunStats {
        &self.console_runs.stats
    }

    /// Whether guest memory currently skips cache maintenance (see [`guest_memory`]).
    pub fn memory_coherent(&self) -> bool {
        self.mem.as_ref().is_some_and(RegionMemory::coherent)
    }

    /// The guest's virtio-net card, if offered.
    pub fn virtio_net(&self) -> Option<&devices::VirtioNet> {
        self.devices.net.as_ref()
    }

    /// The guest's virtio-blk device, if offered.
    pub fn virtio_blk(&self) -> Option<&devices::VirtioBlk> {
        self.devices.blk.as_ref()
    }

    /// The VM's state.
    pub fn state(&self) -> VmState {
        self.state
    }

    /// The exit statistics.
    pub fn stats(&self) -> &Stats<STAT_HANDLERS> {
        &self.stats
    }

    /// The kernel (tests inspect it).
    pub fn kernel(&mut self) -> &mut K {
        &mut self.k
    }

    fn handle_vcpu_fault(&mut self, v: usize, msg: MessageInfo) -> FaultReply {
        let mut words = [0u64; 16];
        let n = msg.length().min(words.len()).min(MSG_MAX_LENGTH);
        for (i, w) in words.iter_mut().enumerate().take(n) {
            *w = self.k.mr(i);
        }
        let words = &words[..n];
        if msg.label() == label::CAP_FAULT {
            // A guest HVC the kernel took for one of its system calls (x7): answered as the HVC
            // by the exit path; said once, with what the kernel found, for the threat model.
            self.glue.kernel_syscall_hvcs = self.glue.kernel_syscall_hvcs.saturating_add(1);
            if self.glue.kernel_syscall_hvcs == 1 {
                say!(
                    self,
                    "vmm: a guest HVC was taken by the kernel for a system call (x7); its \
                     capability fault (address {:#x}, lookup failure type {}) is answered as \
                     the HVC",
                    words.get(1).copied().unwrap_or(0),
                    words.get(3).copied().unwrap_or(0)
                );
            }
        }
        let Some(mem) = self.mem.as_ref() else {
            say!(self, "vmm: fault while no guest memory is mapped");
            return None;
        };
        // A fault shows the vCPU runs: if it was thought parked (a resume the VMM did not make),
        // it is not any more.
        if self.parked & 1 << v != 0 {
            self.parked &= !(1 << v);
            self.cpus[v].deadline = None;
        }
        self.regs.begin_for(VCPUS[v]);
        seed(&mut self.regs, msg.label(), words);
        // An access to the console's registers goes on as a console run, which takes every
        // register: one read of the whole context instead of the transfer register's prefix
        // and then the rest.
        let console_access = cfg!(feature = "console-runs")
            && msg.label() == label::VM_FAULT
            && words
                .get(1)
                .and_then(|&a| self.tree.lookup(GuestPhysAddr(a)))
                .is_some_and(|(_, e)| *e.handler() == DeviceId::Console);
        if console_access {
            vmm_core::vcpu::Vcpu::expect_gprs(&mut self.regs, vmm_core::vcpu::ALL_GPRS);
        }
        // Cache maintenance stays on unless a device call of this exit reads SCTLR_EL1 (the
        // guest may have turned its caches off since the last one).
        mem.set_coherent(false);
        let mut platform = PlatformCtx {
            devices: &mut self.devices,
            vgic: &mut self.vgic,
            inj: KernelInjector {
                k: self.k.clone(),
                calls: 0,
            },
            vcpu: v,
            mem: mem.view(),
            glue: &mut self.glue,
        };
        let mut exit = Exit {
            tree: &self.tree,
            psci: &mut self.psci,
        };
        let mut exit_mem = mem.view();
        let report = exit.handle(
            v,
            msg.label(),
            words,
            &mut self.regs,
            &mut exit_mem,
            &mut platform,
        );
        // An exit on the console's registers that emulated the access: the guest goes on
        // through its console loop here (console_run), up to the first instruction the run
        // does not take.
        if console_access
            && matches!(report.action, ExitAction::Resume)
            && matches!(report.class, TrapClass::MmioRead | TrapClass::MmioWrite)
        {
            let view = exit_mem;
            console_run::run(
                &mut self.regs,
                &mut exit_mem,
                &mem.ram,
                |on| view.set_coherent(on),
                &self.tree,
                &mut platform,
                &mut self.console_runs,
            );
        }
        // A partial guest line (a prompt) goes out at the first exit that is not an MMIO access:
        // the guest stopped writing (WFI, a timer, a call); MMIO exits are how it writes.
        if !matches!(report.class, TrapClass::MmioRead | TrapClass::MmioWrite)
            && platform.devices.console.flush(&mut platform.inj.k)
        {
            platform.inj.calls += 1;
        }
        let device_calls = platform.inj.calls;
        let handler = report.handler.map(|h| h.slot() as u16);
        if let Some(why) = report.guest_trap {
            say!(self, "vmm: guest trap reflected: {:?}", why);
        }
        let mut idle_calls = 0;
        let mut reply_mrs = None;
        // WFI (and PSCI CPU_SUSPEND) wait for an interrupt; WFE is a hint that returns at once.
        let park = matches!(report.action, ExitAction::WaitForInterrupt)
            && report.class != TrapClass::Wfe
            && self.may_park(v, &mut idle_calls);
        let me = VCPUS[v];
        // This exit's vCPU no longer runs: parked, powered off, or the VM ended.
        let mut stopped = false;
        // PSCI CPU_ON: the target starts now; the caller's x0 is SUCCESS already, or becomes
        // INTERNAL_FAILURE if the target cannot be started (its state goes back to OFF). The
        // caller then resumes as from any call.
        if let ExitAction::CpuOn {
            target,
            entry,
            context,
        } = report.action
        {
            idle_calls += self.cpu_on(target, entry, context);
        }
        let reply = match report.action {
            // A guest waiting for an interrupt is parked instead of spinning through WFI exits
            // (the register write-back already moved its PC past the WFI): suspended, and
            // resumed by the next event that can bring one (`notified`): a driver domain's
            // notification, or the timer armed at its virtual timer's deadline.
            ExitAction::WaitForInterrupt if park => match self.regs.flush() {
                // Suspending cancels the pending fault reply: otherwise the next receive finds
                // the reply object still holding it (the debug kernel reports that as an error).
                Ok(_) => match self.k.vm_suspend(me) {
                    Ok(()) => {
                        self.parked |= 1 << v;
                        idle_calls += self.arm_wakeup();
                        stopped = true;
                        self.glue.parks = self.glue.parks.saturating_add(1);
                        None
                    }
                    Err(_) => Some(MessageInfo::new(0, 0)),
                },
                Err(e) => {
                    self.stop_with(&report, Some(e));
                    None
                }
            },
            ExitAction::Resume | ExitAction::WaitForInterrupt | ExitAction::CpuOn { .. } => {
                // An HVC's results (x0..x3) and PC go back in the fault reply when nothing else
                // changed: no TCB WriteRegisters (abi::unknown_syscall).
                if msg.label() == label::UNKNOWN_SYSCALL {
                    reply_mrs = self.regs.take_syscall_reply(words);
                }
                match self.regs.flush() {
                    Ok(_) => Some(MessageInfo::new(0, reply_mrs.map_or(0, |m| m.len()))),
                    Err(e) => {
                        self.stop_with(&report, Some(e));
                        None
                    }
                }
            }
            ExitAction::PowerOff => {
                let _ = self.regs.flush();
                self.power_off();
                None
            }
            ExitAction::Reset if system::SMC => {
                let _ = self.regs.flush();
                self.suspend_all();
                self.state = VmState::Off;
                self.machine_request = Some(fid::SYSTEM_RESET);
                say!(
                    self,
                    "vmm: guest asked for a system reset (PSCI SYSTEM_RESET)"
                );
                None
            }
            ExitAction::CpuOff => {
                // PSCI CPU_OFF does not return: the vCPU is suspended (which also cancels the
                // pending fault reply) until a CPU_ON starts it afresh.
                self.cpu_off(v);
                stopped = true;
                None
            }
            ExitAction::Reset => {
                say!(
                    self,
                    "vmm: PSCI SYSTEM_RESET is not supported without an SMC capability; stopping \
                     the VM"
                );
                self.suspend_all();
                self.state = VmState::Off;
                None
            }
            ExitAction::Stop(_) => {
                self.stop_with(&report, None);
                None
            }
        };
        let ended = matches!(self.state, VmState::Off | VmState::Stopped);
        // Other vCPUs this exit gave an interrupt (an SGI, a device's SPI) and that wait in WFI.
        if !ended && self.parked != 0 {
            idle_calls += self.wake_interrupted();
        }
        self.cpus[v].exits = self.cpus[v].exits.saturating_add(1);
        // The reply, or the suspension of a VM that ended or of a vCPU that was parked or
        // powered off, is a kernel call of this exit too.
        let calls = self.regs.calls()
            + device_calls
            + idle_calls
            + u32::from(reply.is_some() || ended || stopped);
        self.stats.record_exit(report.class, handler, calls);
        if ended {
            self.vm_ended();
        }
        // Last: nothing after this may use the message registers before the reply.
        if let (Some(mrs), Some(_)) = (reply_mrs, reply) {
            for (i, v) in mrs.iter().enumerate() {
                self.k.set_mr(i, *v);
            }
        }
        reply
    }

    /// The null VMM's exit (feature `null-vmm`): PC past the trapping instruction, then reply;
    /// only the console is emulated.
    /// A VMFault and an HVC carry the PC in their message; other faults read it. A PSCI
    /// SYSTEM_OFF through HVC still powers the guest off, so a benchmark run ends.
    fn null_exit(&mut self, v: usize, msg: MessageInfo) -> FaultReply {
        // The guest's console output (PL011 DR, offset 0) stays emulated, so a benchmark can
        // print its results; its other registers read as zero (TX FIFO not full) like any
        // device's.
        let addr = self.k.mr(1);
        if msg.label() == label::VM_FAULT && addr == layout::PL011_BASE {
            return self.handle_vcpu_fault(v, msg);
        }
        let me = VCPUS[v];
        if cfg!(feature = "floor-vmm") && msg.label() == label::VM_FAULT {
            return self.floor_mmio_exit(me);
        }
        // Read the message before any invocation overwrites the IPC buffer.
        let class = match msg.label() {
            label::VM_FAULT if self.k.mr(3) & (1 << 6) != 0 => TrapClass::MmioWrite,
            label::VM_FAULT => TrapClass::MmioRead,
            label::UNKNOWN_SYSCALL => TrapClass::Hvc,
            label::VCPU_FAULT if self.k.mr(0) >> 26 == 0x17 => TrapClass::Smc,
            label::VCPU_FAULT if self.k.mr(0) >> 26 == 0x01 => TrapClass::Wfi,
            label::VCPU_FAULT => TrapClass::SysReg,
            label::VGIC_MAINTENANCE => TrapClass::VgicMaintenance,
            _ => TrapClass::VirtualPpi,
        };
        let mut calls = 0;
        let pc = match msg.label() {
            label::VM_FAULT => Some(self.k.mr(0)),
            label::UNKNOWN_SYSCALL => {
                if self.k.mr(0) as u32 == vmm_core::psci::fid::SYSTEM_OFF {
                    self.power_off();
                    self.stats.record_exit(class, None, 1);
                    self.vm_ended();
                    return None;
                }
                Some(self.k.mr(8))
            }
            label::VCPU_FAULT => {
                let mut r = [0u64; 1];
                calls += 1;
                self.k.vm_read_registers(me, &mut r).ok().map(|()| r[0])
            }
            _ => None,
        };
        if let Some(pc) = pc {
            calls += 1;
            let _ = self.k.vm_write_registers(me, false, &[pc.wrapping_add(4)]);
        }
        self.stats.record_exit(class, None, calls + 1);
        Some(MessageInfo::new(0, 0))
    }

    /// The floor VMM's MMIO exit (feature `floor-vmm`): the least a correct emulation does on
    /// seL4. From the syndrome alone (ISV = 1: the transfer register SRT and the direction): one
    /// ReadRegisters of the prefix up to xSRT (a store needs its value, a load must not clobber
    /// the registers below it), one WriteRegisters of that prefix with the load's result (zero)
    /// and the PC past the instruction (a store writes the PC alone), then the reply. No
    /// classification, no device, no statistics beyond the exit count.
    fn floor_mmio_exit(&mut self, me: Child) -> FaultReply {
        let (ip, esr) = (self.k.mr(0), self.k.mr(3));
        let write = esr & (1 << 6) != 0;
        let srt = ((esr >> 16) & 0x1f) as u8;
        let mut ctx = [0u64; user_context::LEN];
        let top = user_context::gpr_index(srt).unwrap_or(user_context::SPSR);
        let _ = self.k.vm_read_registers(me, &mut ctx[..=top]);
        ctx[user_context::PC] = ip.wrapping_add(4);
        let n = if write {
            1
        } else {
            if srt != 31 {
                ctx[top] = 0;
            }
            top + 1
        };
        let _ = self.k.vm_write_registers(me, false, &ctx[..n]);
        let class = if write {
            TrapClass::MmioWrite
        } else {
            TrapClass::MmioRead
        };
        self.stats.record_exit(class, None, 3);
        Some(MessageInfo::new(0, 0))
    }

    /// Suspends every vCPU that may run (the VM ended): the one whose exit this is and each one
    /// powered on; a parked one is suspended already, one powered off never started or was
    /// suspended by its CPU_OFF.
    #[cold]
    fn suspend_all(&mut self) {
        let current = self.regs.vcpu();
        for (v, (c, slot)) in VCPUS.iter().zip(self.cpus.iter_mut()).enumerate() {
            let parked = self.parked & 1 << v != 0;
            slot.deadline = None;
            let off = self.psci.state(v) == Some(vmm_core::psci::PowerState::Off);
            if *c == current || (!parked && !off) {
                let _ = self.k.vm_suspend(*c);
            }
        }
        self.parked = 0;
        // A timeout pending at the timer driver stays (the protocol has no cancel): its
        // notification finds nobody parked.
        self.wakeup_at = None;
    }

    fn power_off(&mut self) {
        self.suspend_all();
        self.state = VmState::Off;
        if system::SMC {
            self.machine_request = Some(fid::SYSTEM_OFF);
        }
        say!(self, "vmm: guest powered off (PSCI SYSTEM_OFF)");
    }

    /// The guest's PSCI SYSTEM_OFF or SYSTEM_RESET, passed to the machine's firmware through
    /// the kernel (system.xml gives the VMM an SMC capability: it runs the only VM, so the
    /// guest's power is the machine's). QEMU ends its run on SYSTEM_OFF, and on SYSTEM_RESET
    /// with `-no-reboot`. Returns only if the firmware refused.
    fn forward_to_firmware(&mut self, function: u32) {
        let mut args = [0u64; microkit_rt::kernel::SMC_REGS];
        args[0] = u64::from(function);
        say!(self, "vmm: passing PSCI {:#x} to the firmware", function);
        match self.k.arm_smc_call(&args) {
            Ok(r) => say!(
                self,
                "vmm: the firmware refused PSCI {:#x}: x0 = {}",
                function,
                r[0] as i64
            ),
            Err(e) => say!(self, "vmm: SMC call failed: {}", e),
        }
    }

    /// With its VM off or stopped, the VMM asks selftest_ping to notify it, in the test system
    /// (the only one with that channel, [`LIVENESS`]): the notification's arrival (printed by
    /// `notified`) shows the PD still serves events. The production system has no such peer.
    fn ask_for_liveness_notification(&mut self) {
        let Some(ch) = LIVENESS else { return };
        if let Err(e) = self.k.notify(ch) {
            say!(self, "vmm: cannot notify selftest_ping: {}", e);
        }
    }

    fn print_stats(&mut self) {
        #[cfg(all(target_arch = "aarch64", target_os = "none"))]
        say!(
            self,
            "vmm: stack: {} of {} bytes used",
            microkit_rt::sel4::stack::high_water(system::STACK_SIZE),
            system::STACK_SIZE
        );
        let mut w = Out {
            console: &mut self.devices.console,
            k: &mut self.k,
        };
        let _ = self.stats.write_report(&mut w);
        if self.cpu_ons > 0 {
            use core::fmt::Write as _;
            let mut w = Out {
                console: &mut self.devices.console,
                k: &mut self.k,
            };
            let _ = write!(w, "vmm: vCPUs: cpu-ons={} exits per vCPU:", self.cpu_ons);
            for (v, slot) in self.cpus.iter().enumerate().take(VCPUS.len()) {
                let _ = write!(w, " {}={}", v, slot.exits);
            }
            let _ = writeln!(w);
        }
        let g = self.glue;
        say!(
            self,
            "vmm: idle: parks={} timer-arms={} timer-wakes={}",
            g.parks,
            g.timer_arms,
            g.timer_wakes
        );
        let r = self.console_runs.stats;
        say!(
            self,
            "vmm: console runs: runs={} instructions={} decoded={} flushes={} walks={} \
             unsupported={} refused={} budget={} skipped={}",
            r.runs,
            r.instructions,
            self.console_runs.decoded(),
            self.console_runs.flushes(),
            r.walks,
            r.unsupported,
            r.refused,
            r.budget,
            r.skipped
        );
        if r.unsupported > 0 {
            let [a, b, c, d] = r.stopped_at;
            say!(
                self,
                "vmm: console runs stopped most at: {:#010x} x{}, {:#010x} x{}, {:#010x} x{}, \
                 {:#010x} x{}",
                a.0,
                a.1,
                b.0,
                b.1,
                c.0,
                c.1,
                d.0,
                d.1
            );
        }
        say!(
            self,
            "vmm: device calls: coherent={} cache-maintained={}",
            g.coherent_calls,
            g.maintained_calls
        );
        if let Some(blk) = self.devices.blk.as_ref() {
            let s = *blk.device().stats();
            let t = *blk.stats();
            let b = *blk.device().backend().stats();
            say!(
                self,
                "vmm: virtio-blk requests={} ok={} ioerr={} unsupp={} bad-chains={} rmw-fills={} \
                 peak-in-progress={} driver-requests={} needs-reset={} resets={}",
                s.requests,
                s.ok,
                s.ioerr,
                s.unsupp,
                s.bad_chains,
                s.rmw_fills,
                s.peak_in_progress,
                b.requests,
                t.needs_reset,
                t.resets
            );
            if g.blk_restarts > 0 {
                say!(
                    self,
                    "vmm: blk_driver restarts={} requests re-submitted={}",
                    g.blk_restarts,
                    b.resubmitted
                );
            }
            let bt = g.blk_time;
            let per = |x: u64| x.checked_div(b.requests).unwrap_or(0);
            say!(
                self,
                "vmm: virtio-blk ticks per driver request: intake={} driver={} completion={}",
                per(bt.intake),
                per(bt.driver),
                per(bt.completion)
            );
        }
    }

    fn print_net_stats(&mut self) {
        let Some(net) = self.devices.net.as_ref() else {
            return;
        };
        let s = *net.device().stats();
        let b = *net.device().backend().stats();
        say!(
            self,
            "vmm: virtio-net tx-frames={} rx-frames={} queued={} received={} tx-full={} bad-descriptors={} corrupt={} kicks={}",
            s.tx_frames,
            s.rx_frames,
            b.tx_frames,
            b.rx_frames,
            b.tx_full,
            b.bad_descriptors,
            b.corrupt,
            self.glue.net_kicks
        );
    }

    fn stop_with(&mut self, report: &ExitReport, flush_error: Option<vmm_core::vcpu::VcpuError>) {
        self.state = VmState::Stopped;
        match report.action {
            ExitAction::Stop(d) => say!(self, "vmm: VM stopped: {}", d),
            _ => say!(
                self,
                "vmm: VM stopped: register write-back failed: {:?}",
                flush_error
            ),
        }
        match self.regs.dump() {
            Ok(regs) => {
                for (i, name) in user_context::NAMES.iter().enumerate().take(17) {
                    say!(self, "vmm:   {:>5} = {:#018x}", name, regs[i]);
                }
            }
            Err(e) => say!(self, "vmm:   registers unavailable: {:?}", e),
        }
        self.suspend_all();
    }

    /// After the exit that ended the VM is counted: the statistics, then the guest's power
    /// request for the machine, or (a stopped VM, or a refused request) the liveness request.
    fn vm_ended(&mut self) {
        self.print_stats();
        self.print_net_stats();
        if self.state == VmState::Stopped {
            say!(self, "vmm: the VMM keeps running; other PDs are unaffected");
        }
        if let Some(function) = self.machine_request.take() {
            self.forward_to_firmware(function);
        }
        self.ask_for_liveness_notification();
    }
}

/// A serial queue's header and data regions as the atomic views `sddf-queue` takes, for the rest
/// of the program, and its capacity (the whole data region).
fn serial_queue_views(
    header: Result<SharedRegion, RegionError>,
    data: Result<SharedRegion, RegionError>,
) -> Result<
    (
        &'static [core::sync::atomic::AtomicU32],
        &'static [core::sync::atomic::AtomicU8],
        u32,
    ),
    RegionError,
> {
    let h = header?.into_atomic_words()?;
    let data = data?;
    let size = data.size();
    let cap = u32::try_from(size).map_err(|_| RegionError::OutOfBounds {
        offset: 0,
        len: size,
        size,
    })?;
    Ok((h, data.into_atomic_bytes()?, cap))
}

/// The MAC address of the VMM PD named `raw` (the Microkit tool's NUL-padded `microkit_name`):
/// `sddf_queue::net::mac_for` of the name, so each VMM of a multi-VM system built from one ELF
/// has its own address, the one the network virtualiser knows it by.
pub fn mac_of_name(raw: &[u8]) -> [u8; 6] {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    sddf_queue::net::mac_for(raw.get(..len).unwrap_or(&[]))
}

/// Seeds the register cache with what the fault message carries.
fn seed<K: Kernel>(vcpu: &mut LazyVcpu<K>, fault_label: u64, words: &[u64]) {
    match fault_label {
        label::VM_FAULT => {
            if let Some(&ip) = words.first() {
                vcpu.seed(user_context::PC, ip);
            }
        }
        label::UNKNOWN_SYSCALL if words.len() >= 13 => {
            for n in 0..8u8 {
                if let Some(i) = user_context::gpr_index(n) {
                    vcpu.seed(i, words[n as usize]);
                }
            }
            vcpu.seed(user_context::PC, words[8]);
            vcpu.seed(user_context::SP, words[9]);
            vcpu.seed(user_context::SPSR, words[11]);
        }
        _ => {}
    }
}

impl<K: Kernel + Clone> Handler for Vmm<K> {
    type Error = VmmError;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), VmmError> {
        // The driver domains' channels: block responses, console input (and TX space, which
        // needs nothing: the console drops bytes when its queue is full). Anything else is
        // reported.
        let drivers = 1 << system::SERIAL_DRIVER_1.index()
            | 1 << system::SERIAL_DRIVER_2.index()
            | 1 << system::BLK_VIRT.index()
            | 1 << system::NET_VIRT.index();
        if channels.bits() & drivers != 0 && self.state == VmState::Running {
            self.service_devices();
            let _ = self.devices.console.flush(&mut self.k);
            self.wake_interrupted();
        }
        // The wake-up timer: the timeout asked for passed (or one asked for earlier, whose
        // vCPU resumed meanwhile): resume the vCPUs whose deadline passed by the VMM's own
        // reading of the counter, and ask again for the earliest of those still parked (an
        // early or stale notification resumes nobody and re-arms).
        let timer = if self.wakeup_timer {
            1 << WAKEUP_TIMER.index()
        } else {
            0
        };
        if channels.bits() & timer != 0 {
            // The driver notified: nothing is pending there any more.
            self.wakeup_at = None;
            if self.state == VmState::Running {
                let now = self.k.timer_now();
                for v in 0..VCPUS.len() {
                    let slot = self.cpus[v];
                    if self.parked & 1 << v != 0 && slot.deadline.is_some_and(|d| d <= now) {
                        self.glue.timer_wakes = self.glue.timer_wakes.saturating_add(1);
                        self.unpark(v);
                    }
                }
                self.arm_wakeup();
            }
        }
        let others = ChannelSet::from_badge(channels.bits() & !drivers & !timer);
        if !others.is_empty() {
            say!(
                self,
                "vmm: notified on {:?} (VM state {:?})",
                others,
                self.state
            );
        }
        Ok(())
    }

    fn fault(&mut self, child: Child, msg: MessageInfo) -> Result<FaultReply, VmmError> {
        let v = child.index() as usize;
        if VCPUS.get(v) != Some(&child) {
            return Err(VmmError::UnknownChild(child.index()));
        }
        if self.state != VmState::Running {
            say!(
                self,
                "vmm: fault from a VM that is {:?}: ignored",
                self.state
            );
            return Ok(None);
        }
        if cfg!(feature = "null-vmm") {
            return Ok(self.null_exit(v, msg));
        }
        Ok(self.handle_vcpu_fault(v, msg))
    }

    /// The event loop's reports take the VMM's own output (the serial driver domain once the
    /// console's TX queue is attached).
    fn report(&mut self, what: &str, detail: &dyn core::fmt::Display) -> bool {
        say!(self, "vmm: {}: {}", what, detail);
        true
    }
}
