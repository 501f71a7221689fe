//! Shared by the `vmm` component tests: a tiny valid guest (arm64 Image + FDT), the harness that
//! runs the VMM in the real event loop over `microkit-sim` with exactly the VMM's system.xml
//! scope, and fault-message builders taken from the architecture (ESR layouts) and seL4's fault
//! message layouts (SEL4-FACTS.md), not from the code under test.
#![allow(dead_code)] // each test crate uses its own part of this module

use microkit_rt::abi::{MessageInfo, user_context};
use microkit_rt::event_loop::EventLoop;
use microkit_rt::{Channel, Child, Kernel, SharedRegion};
use microkit_sim::{Invocation, Sim, SimKernel, SimTransport};
use vmm::{GuestBlobs, Vmm};

pub mod console_loop;

/// The VM's only vCPU.
pub const VCPU: Child = vmm::system::GUEST_VCPU_0;

/// Fault labels (seL4 16.0, MCS + hypervisor).
pub mod label {
    pub const UNKNOWN_SYSCALL: u64 = 2;
    pub const VM_FAULT: u64 = 6;
    pub const VGIC_MAINTENANCE: u64 = 7;
    pub const VCPU_FAULT: u64 = 8;
    pub const VPPI_EVENT: u64 = 9;
}

/// Guest RAM base and the addresses the loader must choose for the test guest.
pub const RAM_GPA: u64 = 0x4000_0000;
/// 2 MiB-aligned RAM base + text_offset 0x80000.
pub const ENTRY: u64 = 0x4008_0000;
/// The header's image_size: the kernel needs 2 MiB from its load address (more than the file).
pub const IMAGE_SIZE_FIELD: u64 = 0x20_0000;
/// The first 2 MiB boundary after `ENTRY + IMAGE_SIZE_FIELD`.
pub const DTB_GPA: u64 = 0x4040_0000;
/// Length of the test Image file.
pub const IMAGE_LEN: usize = 0x1000;
/// The FDT's totalsize (the blob handed over carries junk after it).
pub const DTB_TOTALSIZE: usize = 72;
/// Where the test guest "runs" when it faults (just past the Image file).
pub const PC0: u64 = 0x4008_1000;
/// The guest's stack pointer in the test context.
pub const SP0: u64 = 0x4100_0000;
/// EL1h, DAIF masked: the PSTATE Linux is entered with.
pub const EL1H: u64 = 0x3c5;

/// SCTLR_EL1 with the MMU and caches off (RES1 bits of ARMv8.0 set).
pub const SCTLR_MMU_OFF: u64 = 0x30d0_0800;

/// The guest-visible devices (QEMU virt layout, system.xml comment).
pub const GICD: u64 = 0x0800_0000;
pub const PL011: u64 = 0x0900_0000;
pub const TESTDEV: u64 = 0x0a00_0000;
pub const WP_PAGE: u64 = 0x5000_0000;
/// Nothing backs this guest-physical address.
pub const UNBACKED: u64 = 0x2000_0000;

/// PSCI function ids (PSCI 1.1, DEN0022).
pub const PSCI_VERSION: u64 = 0x8400_0000;
pub const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
/// What PSCI_VERSION returns for 1.1.
pub const PSCI_1_1: u64 = 0x1_0001;

/// Leaks `v` for the `'static` blobs `GuestBlobs` takes (tests are short-lived processes).
pub fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

/// A 4 KiB Linux arm64 Image: header (text_offset 0x80000, image_size 2 MiB, flags 2 = LE, 4K
/// pages, magic "ARM\x64") and a recognisable byte pattern after it.
pub fn image_bytes() -> Vec<u8> {
    let mut b: Vec<u8> = (0..IMAGE_LEN).map(|i| (i * 7 + 3) as u8).collect();
    b[..64].fill(0);
    b[8..16].copy_from_slice(&0x8_0000u64.to_le_bytes());
    b[16..24].copy_from_slice(&IMAGE_SIZE_FIELD.to_le_bytes());
    b[24..32].copy_from_slice(&2u64.to_le_bytes());
    b[56..60].copy_from_slice(b"ARM\x64");
    b
}

/// A minimal valid FDT (version 17): header, an empty reservation map, a root node with no
/// properties, an empty strings block; `DTB_TOTALSIZE` bytes, followed by 24 bytes of junk that
/// are not part of the tree and must not be copied.
pub fn dtb_bytes() -> Vec<u8> {
    let be = |v: u32| v.to_be_bytes();
    let mut b = Vec::new();
    for w in [
        0xd00d_feed,          // magic
        DTB_TOTALSIZE as u32, // totalsize
        56,                   // off_dt_struct
        72,                   // off_dt_strings
        40,                   // off_mem_rsvmap
        17,                   // version
        16,                   // last_comp_version
        0,                    // boot_cpuid_phys
        0,                    // size_dt_strings
        16,                   // size_dt_struct
    ] {
        b.extend_from_slice(&be(w));
    }
    b.extend_from_slice(&[0; 16]); // reservation map terminator
    for w in [1u32, 0, 2, 9] {
        // FDT_BEGIN_NODE, name "" (padded), FDT_END_NODE, FDT_END
        b.extend_from_slice(&be(w));
    }
    assert_eq!(b.len(), DTB_TOTALSIZE);
    b.extend_from_slice(&[0xee; 24]);
    b
}

/// The test guest.
pub fn blobs() -> GuestBlobs {
    GuestBlobs {
        image: Some(leak(image_bytes())),
        dtb: Some(leak(dtb_bytes())),
        initrd: None,
    }
}

/// No guest.
pub fn no_blobs() -> GuestBlobs {
    GuestBlobs {
        image: None,
        dtb: None,
        initrd: None,
    }
}

/// ESR_EL2 of a data abort from a lower EL (EC 0x24) with a valid syndrome: access size
/// 2^`sas` bytes, register `srt`, 64-bit register if `sf`, write if `wnr`, DFSC = translation
/// fault level 1 (what an unmapped stage-2 page gives).
pub fn dabt(sas: u64, srt: u8, sf: bool, wnr: bool) -> u64 {
    (0x24 << 26)
        | (1 << 25) // IL
        | (1 << 24) // ISV
        | (sas << 22)
        | (u64::from(srt) << 16)
        | (u64::from(sf) << 15)
        | (u64::from(wnr) << 6)
        | 0x05
}

/// ESR_EL2 of a data abort without a valid syndrome (ISV = 0): the VMM must fetch the instruction.
pub fn dabt_no_isv(wnr: bool) -> u64 {
    (0x24 << 26) | (1 << 25) | (u64::from(wnr) << 6) | 0x05
}

/// ESR_EL2 of a trapped `smc #0` (EC 0x17).
pub const HSR_SMC: u64 = (0x17 << 26) | (1 << 25);

/// The 13 words of an UnknownSyscall fault (how seL4 delivers a guest `hvc`).
pub fn hvc_words(x: [u64; 8], fault_ip: u64, sp: u64, spsr: u64) -> Vec<u64> {
    let mut w = x.to_vec();
    w.extend_from_slice(&[fault_ip, sp, fault_ip, spsr, 0]);
    w
}

/// A plausible running-guest user context: pc = `PC0`, sp = `SP0`, PSTATE EL1h, x<n> distinct.
pub fn guest_context() -> [u64; user_context::LEN] {
    let mut c = [0u64; user_context::LEN];
    c[user_context::PC] = PC0;
    c[user_context::SP] = SP0;
    c[user_context::SPSR] = EL1H;
    for n in 0..=30u8 {
        c[user_context::gpr_index(n).unwrap()] = 0x0c0f_fee0_0000_0000 | u64::from(n);
    }
    c
}

/// The VMM in its event loop, with views of guest RAM and of the write-protected page.
pub struct Harness<K: Kernel + Clone = SimKernel> {
    pub sim: Sim,
    pub vmm: Vmm<K>,
    pub el: EventLoop<SimTransport>,
    /// The same memory as the VMM's mapping of `guest_ram` (the guest's view of its RAM).
    pub ram: SharedRegion,
    /// The same memory as the VMM's mapping of `guest_wp_page`.
    pub wp: SharedRegion,
}

impl Harness<SimKernel> {
    /// The VMM started with `blobs` on the simulated kernel.
    pub fn start(blobs: GuestBlobs) -> Self {
        Self::start_with(|sim| sim.kernel(), blobs)
    }

    /// The VMM started with the test guest, the start-up log taken, and the vCPU holding
    /// [`guest_context`] as if the guest had run up to a trap.
    pub fn running() -> Self {
        let h = Self::start(blobs());
        h.sim.take_log();
        h.sim.with_vcpu(0, |v| v.context = guest_context());
        h
    }
}

impl Harness<SimKernel> {
    /// A harness around a VMM built by the test itself (with extra queues attached), its
    /// start-up log taken and the vCPU holding [`guest_context`].
    pub fn running_with(
        sim: Sim,
        vmm: Vmm<SimKernel>,
        ram: SharedRegion,
        wp: SharedRegion,
    ) -> Self {
        sim.on_ppcall(|_, _, _| MessageInfo::new(0, 0));
        let el = sim.event_loop();
        let h = Harness {
            sim,
            vmm,
            el,
            ram,
            wp,
        };
        h.sim.take_log();
        h.sim.with_vcpu(0, |v| v.context = guest_context());
        h
    }
}

impl<K: Kernel + Clone> Harness<K> {
    /// The VMM started with `blobs` on the kernel `kernel` makes from the simulation.
    pub fn start_with(kernel: impl FnOnce(&Sim) -> K, blobs: GuestBlobs) -> Self {
        Self::start_on(None, kernel, blobs)
    }

    /// As [`Harness::start_with`], on `ram` (a view of a `guest_ram` region of an earlier
    /// simulation, so that property tests do not leak 256 MiB per case) if given.
    pub fn start_on(
        ram: Option<SharedRegion>,
        kernel: impl FnOnce(&Sim) -> K,
        blobs: GuestBlobs,
    ) -> Self {
        Self::start_in(Sim::from_repo_system("vmm"), ram, kernel, blobs)
    }

    /// As [`Harness::start_on`], in the simulation `sim` (another system description's scope).
    pub fn start_in(
        sim: Sim,
        ram: Option<SharedRegion>,
        kernel: impl FnOnce(&Sim) -> K,
        blobs: GuestBlobs,
    ) -> Self {
        let ram = ram.unwrap_or_else(|| sim.region("guest_ram").expect("vmm maps guest_ram"));
        assert_eq!(
            ram.size() as u64,
            sim.scope().map("guest_ram").unwrap().size
        );
        let wp = sim.region("guest_wp_page").expect("vmm maps guest_wp_page");
        let (ram_view, wp_view) = (Sim::alias(&ram), Sim::alias(&wp));
        // The timer driver answers every SET_TIMEOUT (sDDF: an empty reply).
        sim.on_ppcall(|_, _, _| MessageInfo::new(0, 0));
        let vmm = Vmm::new(kernel(&sim), Ok(ram), Ok(wp), blobs);
        let el = sim.event_loop();
        Harness {
            sim,
            vmm,
            el,
            ram: ram_view,
            wp: wp_view,
        }
    }

    /// Delivers one fault of vCPU 0 through the event loop and returns every invocation it
    /// caused, including the reply, which the loop sends with its next receive.
    pub fn exit(&mut self, label: u64, words: &[u64]) -> Vec<Invocation> {
        self.sim.take_log();
        self.sim.fault(VCPU, label, words);
        self.el.step(&mut self.vmm);
        self.next_receive();
        self.sim.take_log()
    }

    /// Lets the loop make its next receive (a ReplyRecv if a reply is pending) by delivering an
    /// empty notification. The VMM has no channel in system.xml, so this is a raw event.
    pub fn next_receive(&mut self) {
        self.sim.raw_event(0, MessageInfo::new(0, 0), &[]);
        self.el.step(&mut self.vmm);
    }

    /// The timer driver's notification arrives (a timeout the VMM asked for passed, or so the
    /// test says: the VMM must check the deadlines itself). Returns what the VMM invoked.
    pub fn timer_notified(&mut self) -> Vec<Invocation> {
        self.sim.notify_from_peer(TIMER);
        self.el.step(&mut self.vmm);
        self.next_receive();
        self.sim.take_log()
    }

    /// After an exit that parked vCPU 0 (its log `parked`, at the counter value the simulation
    /// still holds): the timer driver's notification at the deadline the exit asked for, if it
    /// asked for one (`None`: the vCPU waits for an interrupt only, and a notification at any
    /// time leaves it parked).
    pub fn wake_at_deadline(&mut self, parked: &[Invocation]) -> Option<Vec<Invocation>> {
        let now = Kernel::timer_now(&self.sim.kernel());
        match timeout_deadline(parked, now) {
            Some(mut d) => {
                // A deadline further than u64::MAX ns saturates the timeout: the VMM asks
                // again when it passed (at most 17 times at 16 ns per tick).
                for _ in 0..32 {
                    self.sim.set_timer_now(d);
                    let log = self.timer_notified();
                    match timeout_deadline(&log, d) {
                        Some(next) if !log.contains(&Invocation::VmResume(0)) => d = next,
                        _ => return Some(log),
                    }
                }
                panic!("the VMM keeps asking for timeouts and never wakes");
            }
            None => {
                self.sim.set_timer_now(u64::MAX);
                let log = self.timer_notified();
                assert!(!log.contains(&Invocation::VmResume(0)), "{log:?}");
                assert!(self.vmm.parked());
                None
            }
        }
    }

    /// A VMFault at `addr` raised by the instruction at `ip` with syndrome `fsr`.
    pub fn vm_fault(&mut self, ip: u64, addr: u64, fsr: u64) -> Vec<Invocation> {
        self.exit(label::VM_FAULT, &[ip, addr, 0, fsr])
    }

    /// The guest at `pc` stores the low 2^`sas` bytes of `x<rt>` = `value` to `addr`.
    pub fn store(&mut self, pc: u64, addr: u64, sas: u64, rt: u8, value: u64) -> Vec<Invocation> {
        self.set_x(rt, value);
        self.set_x_pc(pc);
        self.vm_fault(pc, addr, dabt(sas, rt, sas == 3, true))
    }

    /// The guest at `pc` loads 2^`sas` bytes from `addr` into `x<rt>`.
    pub fn load(&mut self, pc: u64, addr: u64, sas: u64, rt: u8) -> Vec<Invocation> {
        self.set_x_pc(pc);
        self.vm_fault(pc, addr, dabt(sas, rt, sas == 3, false))
    }

    /// The vCPU's user context.
    pub fn ctx(&self) -> [u64; user_context::LEN] {
        self.sim.with_vcpu(0, |v| v.context)
    }
    /// `x<n>` of the vCPU.
    pub fn x(&self, n: u8) -> u64 {
        self.ctx()[user_context::gpr_index(n).unwrap()]
    }
    /// Sets `x<n>` of the vCPU.
    pub fn set_x(&self, n: u8, v: u64) {
        self.sim
            .with_vcpu(0, |c| c.context[user_context::gpr_index(n).unwrap()] = v);
    }
    /// The vCPU's PC.
    pub fn pc(&self) -> u64 {
        self.ctx()[user_context::PC]
    }
    /// Sets the vCPU's PC.
    pub fn set_x_pc(&self, v: u64) {
        self.sim.with_vcpu(0, |c| c.context[user_context::PC] = v);
    }
    /// vCPU register `field` (`abi::vcpu_reg`).
    pub fn reg(&self, field: u64) -> u64 {
        self.sim.with_vcpu(0, |v| v.regs[field as usize])
    }
    /// Sets vCPU register `field`.
    pub fn set_reg(&self, field: u64, value: u64) {
        self.sim.with_vcpu(0, |v| v.regs[field as usize] = value);
    }

    /// The u64 at guest-physical `gpa` in RAM.
    pub fn ram_u64(&self, gpa: u64) -> u64 {
        self.ram.read_u64((gpa - RAM_GPA) as usize).unwrap()
    }
}

/// The kernel calls among `log` (the VMM's statistics count calls): every invocation. The VMM
/// never programs the EL1 physical timer (a register write, not a call) any more: the
/// simulation reports that as a violation, since system.xml gives it no IRQ 30.
pub fn kernel_calls(log: &[Invocation]) -> u64 {
    assert!(
        !log.iter().any(|i| matches!(i, Invocation::TimerSet(_))),
        "{log:?}"
    );
    log.len() as u64
}

/// The timer driver's channel (the VMM's wake-up timer).
pub const TIMER: Channel = vmm::system::TIMER_DRIVER;

/// The protected call the VMM makes at counter value `now` for a wake-up at `deadline`: sDDF's
/// SET_TIMEOUT with the relative time in ns (at the simulation's 62.5 MHz).
pub fn set_timeout(now: u64, deadline: u64) -> Invocation {
    Invocation::PpCall {
        ch: TIMER.index(),
        label: sddf_queue::timer::SET_TIMEOUT,
        mrs: vec![sddf_queue::timer::ticks_to_ns_ceil(
            deadline - now,
            microkit_sim::QEMU_VIRT_TIMER_HZ,
        )],
    }
}

/// The deadline (counter value) of the last SET_TIMEOUT in `log`, made at counter value `now`.
pub fn timeout_deadline(log: &[Invocation], now: u64) -> Option<u64> {
    log.iter().rev().find_map(|i| match i {
        Invocation::PpCall { ch, label, mrs }
            if *ch == TIMER.index() && *label == sddf_queue::timer::SET_TIMEOUT =>
        {
            let ns = *mrs.first()?;
            Some(now.saturating_add(sddf_queue::timer::ns_to_ticks_ceil(
                ns,
                microkit_sim::QEMU_VIRT_TIMER_HZ,
            )))
        }
        _ => None,
    })
}

/// Whether `log` has a protected call to the timer driver.
pub fn calls_timer(log: &[Invocation]) -> bool {
    log.iter()
        .any(|i| matches!(i, Invocation::PpCall { ch, .. } if *ch == TIMER.index()))
}

/// What one exit that resumed the guest did with the vCPU's user context.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResumeShape {
    /// Registers read (the prefix length), if there was a ReadRegisters.
    pub read: Option<usize>,
    /// Registers written, if there was a WriteRegisters.
    pub written: Option<Vec<u64>>,
    /// The registers the reply carried (an HVC answered in its fault reply), if any.
    pub replied: Option<Vec<u64>>,
}

/// Asserts that `log` is the log of an exit that resumed the guest: at most one ReadRegisters
/// and at most one WriteRegisters (a prefix, without the resume flag), any vCPU register and
/// interrupt invocations, and the reply (label 0) as the very last invocation; nothing else. The
/// written prefix must equal the start of `ctx_after`. The reply is empty, or (an HVC answered
/// in its fault reply, seL4's UnknownSyscall reply layout) carries x0..x7, FaultIP, SP and the
/// resume PC, which must equal `ctx_after`; then no WriteRegisters may come with it.
pub fn assert_resumed(log: &[Invocation], ctx_after: &[u64]) -> ResumeShape {
    use microkit_rt::abi::unknown_syscall as us;
    let (last, body) = log.split_last().expect("an exit that resumed replies");
    let Invocation::Reply { label: 0, mrs } = last else {
        panic!("the last invocation is the reply: {log:?}");
    };
    let mut shape = ResumeShape::default();
    if !mrs.is_empty() {
        assert_eq!(mrs.len(), us::ELR + 1, "x0..x7, FaultIP, SP, ELR: {log:?}");
        for n in 0..8u8 {
            let i = user_context::gpr_index(n).unwrap();
            assert_eq!(
                mrs[usize::from(n)],
                ctx_after[i],
                "x{n} in the reply: {log:?}"
            );
        }
        assert_eq!(mrs[us::SP], ctx_after[user_context::SP], "{log:?}");
        // The restart resumes at FaultIP; ELR (NextIP) is overwritten with it.
        assert_eq!(mrs[us::FAULT_IP], ctx_after[user_context::PC], "{log:?}");
        assert_eq!(mrs[us::ELR], mrs[us::FAULT_IP], "{log:?}");
        shape.replied = Some(mrs.clone());
    }
    for inv in body {
        match inv {
            Invocation::VmReadRegisters { vcpu: 0, count } => {
                assert!(
                    shape.read.is_none(),
                    "two ReadRegisters in one exit: {log:?}"
                );
                assert!(*count <= user_context::LEN);
                shape.read = Some(*count);
            }
            Invocation::VmWriteRegisters {
                vcpu: 0,
                resume: false,
                regs,
            } => {
                assert!(
                    shape.written.is_none(),
                    "two WriteRegisters in one exit: {log:?}"
                );
                assert_eq!(regs[..], ctx_after[..regs.len()], "a prefix of the context");
                shape.written = Some(regs.clone());
            }
            Invocation::VcpuReadReg { vcpu: 0, .. }
            | Invocation::VcpuWriteReg { vcpu: 0, .. }
            | Invocation::VcpuAckVppi { vcpu: 0, .. } => {}
            // An SGI or SPI may go to any vCPU's list registers (and wake it from WFI).
            Invocation::VcpuInjectIrq { .. } => {}
            Invocation::VmResume(v) if *v != 0 => {}
            other => panic!("unexpected invocation {other:?} in a resumed exit: {log:?}"),
        }
    }
    assert!(
        shape.replied.is_none() || shape.written.is_none(),
        "registers both in the reply and in a WriteRegisters: {log:?}"
    );
    shape
}
