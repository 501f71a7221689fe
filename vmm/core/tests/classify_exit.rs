//! Trap classification and the exit path, end to end on the portable core: a fault message in,
//! registers, guest memory, device calls and the exit report out. The reference for each case
//! is the architecture (ESR/FAR values from the Arm ARM) and the PSCI/platform contract.

use proptest::prelude::*;
use vmm_core::addr::{GpaRange, GuestPhysAddr};
use vmm_core::classify::*;
use vmm_core::fault::Fault;
use vmm_core::handlers::{HandlerKind, HandlerTree};
use vmm_core::memory::{GuestMemory, GuestRam};
use vmm_core::mmio::BusError;
use vmm_core::psci::Psci;
use vmm_core::stats::TrapClass;
use vmm_core::syndrome::SysRegTrap;
use vmm_core::vcpu::{SysReg, Vcpu, VcpuError, VcpuState};

const RAM: u64 = 0x4000_0000;
const DEV: u64 = 0x0a00_0000;
const WP: u64 = 0x5000_0000;
const VBAR: u64 = 0x4008_8000;
const PC: u64 = 0x4008_1000;
const EL1H: u64 = 0x3c5;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Dev {
    Scratch,
    WriteProtect,
}

struct Platform {
    scratch: [u8; 256],
    protected_writes: u32,
    maintenance: Vec<Option<u8>>,
    ppis: Vec<u32>,
    refuse_protected: bool,
    /// The device model fails internally (a VMM bug, not the guest's doing).
    broken: bool,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            scratch: [0; 256],
            protected_writes: 0,
            maintenance: vec![],
            ppis: vec![],
            refuse_protected: false,
            broken: false,
        }
    }
}

impl vmm_core::classify::Platform<Dev> for Platform {
    fn mmio_read(&mut self, h: &Dev, offset: u64, size: u8) -> Result<u64, BusError> {
        assert_eq!(*h, Dev::Scratch);
        if self.broken {
            return Err(BusError::Internal);
        }
        let o = offset as usize;
        let mut b = [0u8; 8];
        b[..size as usize].copy_from_slice(
            self.scratch
                .get(o..o + size as usize)
                .ok_or(BusError::Refused)?,
        );
        Ok(u64::from_le_bytes(b))
    }
    fn mmio_write(&mut self, _: &Dev, offset: u64, size: u8, value: u64) -> Result<(), BusError> {
        let o = offset as usize;
        self.scratch
            .get_mut(o..o + size as usize)
            .ok_or(BusError::Refused)?
            .copy_from_slice(&value.to_le_bytes()[..size as usize]);
        Ok(())
    }
    fn protected_write(&mut self, h: &Dev, _: u64, _: u8, _: u64) -> Result<bool, BusError> {
        assert_eq!(*h, Dev::WriteProtect);
        self.protected_writes += 1;
        Ok(!self.refuse_protected)
    }
    fn sysreg(&mut self, t: &SysRegTrap, _: Option<u64>) -> SysRegResult {
        // OSLSR_EL1 (op0 2, op1 0, CRn 1, CRm 1, op2 4) reads as 0b1000; everything else UNDEF.
        match (t.op0, t.op1, t.crn, t.crm, t.op2, t.read) {
            (2, 0, 1, 1, 4, true) => SysRegResult::Read(0b1000),
            _ => SysRegResult::Unimplemented,
        }
    }
    fn vgic_maintenance(&mut self, lr: Option<u8>) -> Result<(), PlatformError> {
        self.maintenance.push(lr);
        Ok(())
    }
    fn virtual_ppi(&mut self, irq: u32) -> Result<(), PlatformError> {
        self.ppis.push(irq);
        if irq == 99 {
            Err(PlatformError(1))
        } else {
            Ok(())
        }
    }
}

/// A vCPU that counts every access (the PD turns each read miss or dirty write into kernel work).
struct Counting {
    s: VcpuState,
    reads: Vec<&'static str>,
    writes: Vec<&'static str>,
    /// The masks announced with `expect_gprs` (the PD prefetches those registers).
    expected: Vec<u32>,
    fail: bool,
}

impl Counting {
    fn new() -> Self {
        let mut s = VcpuState {
            pc: PC,
            pstate: EL1H,
            ..Default::default()
        };
        s.sys[SysReg::VbarEl1 as usize] = VBAR;
        Counting {
            s,
            reads: vec![],
            writes: vec![],
            expected: vec![],
            fail: false,
        }
    }
    fn check(&self) -> Result<(), VcpuError> {
        if self.fail {
            Err(VcpuError::Kernel(3))
        } else {
            Ok(())
        }
    }
}

impl Vcpu for Counting {
    fn gpr(&mut self, n: u8) -> Result<u64, VcpuError> {
        self.check()?;
        self.reads.push("gpr");
        self.s.gpr(n)
    }
    fn set_gpr(&mut self, n: u8, v: u64) -> Result<(), VcpuError> {
        self.check()?;
        self.writes.push("gpr");
        self.s.set_gpr(n, v)
    }
    fn pc(&mut self) -> Result<u64, VcpuError> {
        self.check()?;
        self.reads.push("pc");
        self.s.pc()
    }
    fn set_pc(&mut self, v: u64) -> Result<(), VcpuError> {
        self.check()?;
        self.writes.push("pc");
        self.s.set_pc(v)
    }
    fn sp(&mut self) -> Result<u64, VcpuError> {
        self.check()?;
        self.reads.push("sp");
        self.s.sp()
    }
    fn set_sp(&mut self, v: u64) -> Result<(), VcpuError> {
        self.check()?;
        self.writes.push("sp");
        self.s.set_sp(v)
    }
    fn pstate(&mut self) -> Result<u64, VcpuError> {
        self.check()?;
        self.reads.push("pstate");
        self.s.pstate()
    }
    fn set_pstate(&mut self, v: u64) -> Result<(), VcpuError> {
        self.check()?;
        self.writes.push("pstate");
        self.s.set_pstate(v)
    }
    fn sysreg(&mut self, r: SysReg) -> Result<u64, VcpuError> {
        self.check()?;
        self.reads.push("sysreg");
        self.s.sysreg(r)
    }
    fn set_sysreg(&mut self, r: SysReg, v: u64) -> Result<(), VcpuError> {
        self.check()?;
        self.writes.push("sysreg");
        self.s.set_sysreg(r, v)
    }
    fn expect_gprs(&mut self, mask: u32) {
        self.expected.push(mask);
    }
}

struct World {
    tree: HandlerTree<Dev, 8>,
    psci: Psci<1>,
    ram: Vec<u8>,
    wp: Vec<u8>,
    platform: Platform,
    vcpu: Counting,
}

/// Guest memory for these tests: RAM and the write-protected page as two slices.
struct Mem<'a>(GuestRam<'a>, GuestRam<'a>);

impl GuestMemory for Mem<'_> {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), vmm_core::memory::MemError> {
        self.0.read(gpa, buf).or_else(|_| self.1.read(gpa, buf))
    }
    fn write(&mut self, gpa: GuestPhysAddr, buf: &[u8]) -> Result<(), vmm_core::memory::MemError> {
        self.0.write(gpa, buf).or_else(|_| self.1.write(gpa, buf))
    }
}

impl World {
    fn new() -> Self {
        let mut tree = HandlerTree::default();
        tree.register(
            GpaRange::new(GuestPhysAddr(DEV), 0x1000).unwrap(),
            HandlerKind::All,
            Dev::Scratch,
        )
        .unwrap();
        tree.register(
            GpaRange::new(GuestPhysAddr(WP), 0x1000).unwrap(),
            HandlerKind::Write,
            Dev::WriteProtect,
        )
        .unwrap();
        World {
            tree,
            psci: Psci::new(1).unwrap(),
            ram: vec![0; 0x10_0000],
            wp: vec![0; 0x1000],
            platform: Platform::default(),
            vcpu: Counting::new(),
        }
    }
    fn run(&mut self, label: u64, words: &[u64]) -> ExitReport {
        let mut mem = Mem(
            GuestRam::new(GuestPhysAddr(RAM), &mut self.ram),
            GuestRam::new(GuestPhysAddr(WP), &mut self.wp),
        );
        let mut exit = Exit {
            tree: &self.tree,
            psci: &mut self.psci,
        };
        exit.handle(
            0,
            label,
            words,
            &mut self.vcpu,
            &mut mem,
            &mut self.platform,
        )
    }
}

/// ESR_EL2 of a data abort from a lower EL with a valid syndrome.
fn dabt(sas: u64, sse: bool, srt: u64, sf: bool, wnr: bool) -> u64 {
    0x24 << 26
        | 1 << 25
        | 1 << 24
        | sas << 22
        | (sse as u64) << 21
        | srt << 16
        | (sf as u64) << 15
        | (wnr as u64) << 6
        | 0x07
}

fn vmfault(addr: u64, esr: u64) -> [u64; 4] {
    [PC, addr, 0, esr]
}

#[test]
fn mmio_store_and_load_with_minimal_register_traffic() {
    let mut w = World::new();
    w.vcpu.s.x[3] = 0x1122_3344_5566_7788;
    let r = w.run(6, &vmfault(DEV + 8, dabt(3, false, 3, true, true)));
    assert_eq!(
        (r.action, r.class),
        (ExitAction::Resume, TrapClass::MmioWrite)
    );
    assert_eq!(
        &w.platform.scratch[8..16],
        &0x1122_3344_5566_7788u64.to_le_bytes()
    );
    assert_eq!(w.vcpu.s.pc, PC + 4);
    assert_eq!(
        (w.vcpu.reads.clone(), w.vcpu.writes.clone()),
        (vec!["gpr"], vec!["pc"]),
        "store: read Rt, write PC"
    );

    let mut w2 = World::new();
    w2.platform.scratch[0] = 0x80;
    // LDRSB x5: SAS=0, SSE=1, SF=1.
    let r = w2.run(6, &vmfault(DEV, dabt(0, true, 5, true, false)));
    assert_eq!(r.class, TrapClass::MmioRead);
    assert_eq!(w2.vcpu.s.x[5], 0xffff_ffff_ffff_ff80);
    assert!(
        w2.vcpu.reads.is_empty(),
        "a load reads no register: {:?}",
        w2.vcpu.reads
    );
    assert_eq!(w2.vcpu.writes, vec!["gpr", "pc"]);
}

#[test]
fn write_kind_range_applies_the_write_to_ram_and_counts_it() {
    let mut w = World::new();
    w.vcpu.s.x[1] = 0xdead_beef;
    let r = w.run(6, &vmfault(WP + 0x10, dabt(2, false, 1, false, true)));
    assert_eq!(r.class, TrapClass::WriteHandler);
    assert_eq!(w.platform.protected_writes, 1);
    assert_eq!(&w.wp[0x10..0x14], &0xdead_beefu32.to_le_bytes());
    // A dropped write leaves RAM as it was.
    let mut w = World::new();
    w.platform.refuse_protected = true;
    w.vcpu.s.x[1] = 7;
    w.run(6, &vmfault(WP, dabt(3, false, 1, true, true)));
    assert_eq!(w.wp[0], 0);
    assert_eq!(w.vcpu.s.pc, PC + 4);
}

/// A write the WRITE-kind handler lets through but that RAM cannot take (the range has no
/// memory behind it) stops the VM, and the diagnostic names the handler that ran.
#[test]
fn a_let_through_write_that_ram_refuses_names_its_handler() {
    const HOLE: u64 = 0x6000_0000; // nothing in `Mem` there
    let mut w = World::new();
    let id = w
        .tree
        .register(
            GpaRange::new(GuestPhysAddr(HOLE), 0x1000).unwrap(),
            HandlerKind::Write,
            Dev::WriteProtect,
        )
        .unwrap();
    w.vcpu.s.x[1] = 5;
    let r = w.run(6, &vmfault(HOLE + 8, dabt(2, false, 1, false, true)));
    assert_eq!(w.platform.protected_writes, 1);
    let ExitAction::Stop(d) = r.action else {
        panic!("{r:?}")
    };
    assert!(matches!(d.reason, HypervisorReason::Memory(_)), "{d:?}");
    assert_eq!((d.handler, r.handler), (Some(id), Some(id)));
    assert!(d.fault.is_some() && d.syndrome.is_some());
    assert_eq!(r.class, TrapClass::HypervisorFault);
}

#[test]
fn read_fault_on_a_write_range_is_a_hypervisor_fault() {
    let mut w = World::new();
    let r = w.run(6, &vmfault(WP, dabt(3, false, 1, true, false)));
    match r.action {
        ExitAction::Stop(d) => {
            assert_eq!(d.reason, HypervisorReason::ReadFaultOnWriteRange);
            assert!(d.handler.is_some() && d.syndrome.is_some() && d.fault.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.class, TrapClass::HypervisorFault);
}

/// The line the VMM prints when it stops a VM: the reason, then each part it knows.
#[test]
fn a_diagnostic_prints_the_reason_and_what_is_known() {
    let mut w = World::new();
    let ExitAction::Stop(d) = w
        .run(6, &vmfault(WP, dabt(3, false, 1, true, false)))
        .action
    else {
        panic!("a read of a write-protected range stops the VM")
    };
    let (fault, syndrome, handler) = (d.fault.unwrap(), d.syndrome.unwrap(), d.handler.unwrap());
    assert_eq!(
        d.to_string(),
        format!(
            "hypervisor fault: ReadFaultOnWriteRange; fault {fault:?}; syndrome {syndrome:?}; \
             handler {handler:?}"
        )
    );
    assert!(d.to_string().contains("; fault VmFault {"));
    // A message that does not decode: the reason alone.
    let ExitAction::Stop(d) = w.run(99, &[]).action else {
        panic!("an unknown label stops the VM")
    };
    assert_eq!(
        d.to_string(),
        "hypervisor fault: BadFaultMessage(UnknownLabel(99))"
    );
}

#[test]
fn unbacked_access_is_a_synchronous_external_abort_with_far() {
    let mut w = World::new();
    let r = w.run(6, &vmfault(0x2000_0000, dabt(3, false, 1, true, false)));
    assert_eq!(r.class, TrapClass::GuestTrapAbort);
    assert_eq!(
        r.guest_trap,
        Some(GuestTrapReason::Unbacked(GuestPhysAddr(0x2000_0000)))
    );
    let s = &w.vcpu.s;
    let esr = s.sys[SysReg::EsrEl1 as usize];
    assert_eq!(esr >> 26, 0x25, "data abort from the same EL");
    assert_eq!(esr & 0x3f, 0x10, "synchronous external abort");
    assert_eq!(esr & (1 << 24), 0, "ISV = 0");
    assert_eq!(
        s.sys[SysReg::FarEl1 as usize],
        0x2000_0000,
        "MMU off: FAR = address"
    );
    assert_eq!(s.sys[SysReg::ElrEl1 as usize], PC);
    assert_eq!(s.pc, VBAR + 0x200, "current EL with SP_ELx");
    // Same access with the guest's MMU on: the VA is unknown, so FnV is set.
    let mut w = World::new();
    w.vcpu.s.sys[SysReg::SctlrEl1 as usize] = 1;
    w.run(6, &vmfault(0x2000_0000, dabt(3, false, 1, true, true)));
    let esr = w.vcpu.s.sys[SysReg::EsrEl1 as usize];
    assert_eq!(esr & (1 << 10), 1 << 10, "FnV");
    assert_eq!(esr & (1 << 6), 1 << 6, "WnR");
}

#[test]
fn access_crossing_a_handler_boundary_is_refused() {
    let mut w = World::new();
    let r = w.run(6, &vmfault(DEV + 0xffc, dabt(3, false, 1, true, false)));
    assert_eq!(
        r.guest_trap,
        Some(GuestTrapReason::CrossesHandler(GuestPhysAddr(DEV + 0xffc)))
    );
}

#[test]
fn instruction_fetch_from_unbacked_memory_is_an_instruction_abort() {
    let mut w = World::new();
    let iabt = 0x20 << 26 | 1 << 25 | 0x07;
    let r = w.run(6, &[0x3000_0000, 0x3000_0000, 1, iabt]);
    assert_eq!(r.class, TrapClass::GuestTrapAbort);
    assert_eq!(w.vcpu.s.sys[SysReg::EsrEl1 as usize] >> 26, 0x21);
    assert_eq!(w.vcpu.s.sys[SysReg::FarEl1 as usize], 0x3000_0000);
}

#[test]
fn psci_through_smc_and_hvc() {
    // SMC: VCPUFault with EC 0x17; arguments are read from the vCPU, PC read and advanced.
    let mut w = World::new();
    w.vcpu.s.x[0] = 0x8400_0000;
    let r = w.run(8, &[0x17 << 26 | 1 << 25]);
    assert_eq!((r.action, r.class), (ExitAction::Resume, TrapClass::Smc));
    assert_eq!((w.vcpu.s.x[0], w.vcpu.s.pc), (0x0001_0001, PC + 4));
    // Unknown SMC function: NOT_SUPPORTED.
    let mut w = World::new();
    w.vcpu.s.x[0] = 0x8400_00ff;
    w.run(8, &[0x17 << 26 | 1 << 25]);
    assert_eq!(w.vcpu.s.x[0], u64::MAX);
    // HVC: UnknownSyscall carries x0..x7 and the IP, so no register is read.
    let mut w = World::new();
    let mut msg = [0u64; 13];
    msg[0] = 0x8400_000a; // PSCI_FEATURES
    msg[1] = 0x8400_0000; // of PSCI_VERSION
    msg[8] = PC;
    msg[11] = EL1H;
    let r = w.run(2, &msg);
    assert_eq!(r.class, TrapClass::Hvc);
    assert_eq!((w.vcpu.s.x[0], w.vcpu.s.pc), (0, PC + 4));
    assert!(w.vcpu.reads.is_empty(), "{:?}", w.vcpu.reads);
    // SYSTEM_OFF powers off without resuming.
    let mut w = World::new();
    msg[0] = 0x8400_0008;
    assert_eq!(w.run(2, &msg).action, ExitAction::PowerOff);
}

#[test]
fn system_registers_emulated_or_undefined() {
    // MRS x4, OSLSR_EL1: ISS op0=2 op2=4 op1=0 CRn=1 Rt=4 CRm=1 read.
    let iss = 2 << 20 | 4 << 17 | 1 << 10 | 4 << 5 | 1 << 1 | 1;
    let mut w = World::new();
    let r = w.run(8, &[0x18 << 26 | 1 << 25 | iss]);
    assert_eq!(r.class, TrapClass::SysReg);
    assert_eq!((w.vcpu.s.x[4], w.vcpu.s.pc), (0b1000, PC + 4));
    // The same register written: not implemented, so UNDEF (EC 0) at the instruction.
    let mut w = World::new();
    let r = w.run(8, &[0x18 << 26 | 1 << 25 | (iss & !1)]);
    assert_eq!(r.class, TrapClass::GuestTrapUndef);
    assert_eq!(w.vcpu.s.sys[SysReg::EsrEl1 as usize], 0x0200_0000);
    assert_eq!(w.vcpu.s.sys[SysReg::ElrEl1 as usize], PC);
}

/// Each exit announces the general registers it will touch before touching them: the transfer
/// register of a system-register access (none for XZR), x0..x3 of a firmware call.
#[test]
fn exits_announce_the_general_registers_they_use() {
    // MRS x4, OSLSR_EL1 (as above), then the same into XZR.
    let iss = 2 << 20 | 4 << 17 | 1 << 10 | 4 << 5 | 1 << 1 | 1;
    let mut w = World::new();
    w.run(8, &[0x18 << 26 | 1 << 25 | iss]);
    assert_eq!(w.vcpu.expected, vec![1 << 4]);
    let mut w = World::new();
    w.run(8, &[0x18 << 26 | 1 << 25 | iss | 31 << 5]);
    assert_eq!(w.vcpu.expected, Vec::<u32>::new());
    assert_eq!(w.vcpu.s.pc, PC + 4);
    // MSR OSLAR_EL1-like write from x0: bit 0.
    let mut w = World::new();
    w.run(8, &[0x18 << 26 | 1 << 25 | (iss & !(31 << 5) & !1)]);
    assert_eq!(w.vcpu.expected, vec![1]);
    // SMC: x0..x3.
    let mut w = World::new();
    w.vcpu.s.x[0] = 0x8400_0000;
    w.run(8, &[0x17 << 26 | 1 << 25]);
    assert_eq!(w.vcpu.expected, vec![0b1111]);
    // A store with a valid syndrome: its source register only.
    let mut w = World::new();
    w.run(6, &vmfault(DEV + 8, dabt(3, false, 3, true, true)));
    assert_eq!(w.vcpu.expected, vec![1 << 3]);
    let mut w = World::new();
    w.run(6, &vmfault(DEV + 8, dabt(3, false, 31, true, true)));
    assert_eq!(w.vcpu.expected, Vec::<u32>::new());
}

#[test]
fn wfi_vgic_and_ppi_paths() {
    let mut w = World::new();
    let r = w.run(8, &[0x01 << 26 | 1 << 25]);
    assert_eq!(
        (r.action, r.class, w.vcpu.s.pc),
        (ExitAction::WaitForInterrupt, TrapClass::Wfi, PC + 4)
    );
    let r = w.run(7, &[2]);
    assert_eq!(r.class, TrapClass::VgicMaintenance);
    w.run(7, &[u64::MAX]);
    assert_eq!(w.platform.maintenance, vec![Some(2), None]);
    let r = w.run(9, &[27]);
    assert_eq!(
        (r.action, r.class),
        (ExitAction::Resume, TrapClass::VirtualPpi)
    );
    assert!(
        matches!(w.run(9, &[99]).action, ExitAction::Stop(_)),
        "a platform error is a hypervisor fault"
    );
}

#[test]
fn unknown_class_is_undefined_and_broken_messages_stop_the_vm() {
    let mut w = World::new();
    assert_eq!(w.run(8, &[0x3f << 26]).class, TrapClass::GuestTrapUndef);
    // A user exception of the vCPU's thread is the guest's doing: an UNDEF at its PC, not a stop.
    let mut w = World::new();
    let r = w.run(3, &[PC + 8, 0, 0, 0, 0]);
    assert_eq!(
        (r.action, r.class),
        (ExitAction::Resume, TrapClass::GuestTrapUndef)
    );
    // ELR_EL1 is the message's fault IP; the PC register is not read for it.
    assert_eq!(w.vcpu.s.sys[SysReg::ElrEl1 as usize], PC + 8);
    assert!(!w.vcpu.reads.contains(&"pc"), "{:?}", w.vcpu.reads);
    for (label, words) in [
        (6u64, &[1u64, 2][..]),
        (77, &[][..]),
        (5, &[0, 0, 0, 0, 0][..]),
    ] {
        let r = World::new().run(label, words);
        assert!(
            matches!(r.action, ExitAction::Stop(_)),
            "label {label}: {r:?}"
        );
    }
}

#[test]
fn an_hvc_the_kernel_took_for_a_syscall_is_answered_as_the_hvc() {
    // x7 held a seL4 system-call number: the kernel ran the call as the vCPU's thread and
    // reported its capability fault. The VMM answers the HVC it was: PSCI_VERSION from x0,
    // x0 = the version, PC past the HVC at the fault's IP.
    let mut w = World::new();
    w.vcpu.s.x[0] = 0x8400_0000;
    let r = w.run(1, &[PC, 0x8400_0000, 0, 1]);
    assert_eq!((r.action, r.class), (ExitAction::Resume, TrapClass::Hvc));
    assert_eq!(w.vcpu.s.x[0], 0x1_0001, "PSCI 1.1");
    assert_eq!(w.vcpu.s.pc, PC + 4);
    assert!(
        !w.vcpu.reads.contains(&"pc"),
        "the PC comes from the fault's IP: {:?}",
        w.vcpu.reads
    );
    // Any other function: NOT_SUPPORTED, as for any HVC.
    let mut w = World::new();
    w.vcpu.s.x[0] = 0;
    let r = w.run(1, &[PC, 0, 1, 2, 64]);
    assert_eq!(r.action, ExitAction::Resume);
    assert_eq!(w.vcpu.s.x[0], u64::MAX);
    assert_eq!(w.vcpu.s.pc, PC + 4);
}

/// A device model's internal failure is the VMM's fault: the VM stops with DeviceInternal and
/// the handler, and the guest gets no abort (a refused access is the guest's, an abort).
#[test]
fn a_device_failing_internally_stops_the_vm() {
    let mut w = World::new();
    w.platform.broken = true;
    let r = w.run(6, &vmfault(DEV + 8, dabt(2, false, 1, false, false)));
    let ExitAction::Stop(d) = r.action else {
        panic!("{r:?}")
    };
    assert_eq!(d.reason, HypervisorReason::DeviceInternal);
    assert!(d.handler.is_some() && d.fault.is_some() && d.syndrome.is_some());
    assert_eq!(w.vcpu.s.sys[SysReg::EsrEl1 as usize], 0, "nothing injected");
    // Refused (past the scratch bytes): a synchronous external abort into the guest.
    let mut w = World::new();
    let r = w.run(6, &vmfault(DEV + 0x200, dabt(2, false, 1, false, false)));
    assert_eq!(
        (r.action, r.class),
        (ExitAction::Resume, TrapClass::GuestTrapAbort)
    );
}

#[test]
fn a_kernel_refusal_is_a_hypervisor_fault_not_a_panic() {
    let mut w = World::new();
    w.vcpu.fail = true;
    let r = w.run(6, &vmfault(DEV, dabt(3, false, 1, true, false)));
    assert!(
        matches!(
            r.action,
            ExitAction::Stop(Diagnostic {
                reason: HypervisorReason::Vcpu(_),
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn unsupported_instruction_without_syndrome_is_undefined() {
    // ISV=0 data abort at the test device; the instruction at PC is `ldr q0, [x1]` (0x3dc00020).
    let mut w = World::new();
    let off = (PC - RAM) as usize;
    w.ram[off..off + 4].copy_from_slice(&0x3dc0_0020u32.to_le_bytes());
    w.vcpu.s.x[1] = DEV;
    let esr = 0x24 << 26 | 1 << 25 | 0x07;
    let r = w.run(6, &vmfault(DEV, esr));
    assert_eq!(r.class, TrapClass::GuestTrapUndef, "{r:?}");
    assert!(matches!(r.guest_trap, Some(GuestTrapReason::Mmio(_))));
}

#[test]
fn classification_is_pure_and_total() {
    // Every decoded fault gets exactly one decision without touching the vCPU.
    let w = World::new();
    for fault in [
        Fault::VgicMaintenance { lr: Some(1) },
        Fault::VppiEvent { irq: 27 },
        Fault::VcpuFault { hsr: 0x17 << 26 },
    ] {
        assert!(matches!(classify(&fault, &w.tree), Decision::Emulate(_)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// No fault message, however hostile, panics the exit path; each gives one report whose class
    /// matches its action.
    #[test]
    fn any_fault_message_is_handled(label in 0u64..12, words in proptest::collection::vec(any::<u64>(), 0..14), x in any::<[u64; 4]>(), pstate in prop_oneof![Just(EL1H), Just(0x3c4u64), Just(0u64), any::<u64>()]) {
        let mut w = World::new();
        w.vcpu.s.x[..4].copy_from_slice(&x);
        w.vcpu.s.pstate = pstate;
        let r = w.run(label, &words);
        prop_assert_eq!(matches!(r.action, ExitAction::Stop(_)), r.class == TrapClass::HypervisorFault);
    }

    /// Random accesses to the device round-trip through the scratch store at every width.
    #[test]
    fn mmio_store_then_load_round_trips(off in 0u64..32, sas in 0u64..4, v in any::<u64>(), rt in 0u64..31) {
        let size = 1u64 << sas;
        let off = off * 8;
        let mut w = World::new();
        w.vcpu.s.x[rt as usize] = v;
        w.run(6, &vmfault(DEV + off, dabt(sas, false, rt, true, true)));
        w.vcpu.s.x[rt as usize] = 0;
        w.run(6, &vmfault(DEV + off, dabt(sas, false, rt, true, false)));
        let mask = if size == 8 { u64::MAX } else { (1 << (8 * size)) - 1 };
        prop_assert_eq!(w.vcpu.s.x[rt as usize], v & mask);
        prop_assert_eq!(w.vcpu.s.pc, PC + 4);
    }
}
