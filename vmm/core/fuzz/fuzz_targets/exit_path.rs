//! The whole portable exit path against a hostile guest: an arbitrary fault message (any label,
//! any words, any length), vCPU registers, guest RAM (holding the instruction and maybe page
//! tables) and device answers go through `Exit::handle`. Never a panic, and the outcome keeps the
//! exit path's promises: a device is never asked for an access outside its range; an emulated
//! exit that resumes the guest has moved its PC past the trapping instruction (by 2 or 4); a
//! reflected exception lands in the guest's vector table; nothing else moves the PC. The VM has
//! 1 to 4 vCPUs and the exit comes from any of them: a PSCI CPU_ON it accepts names another vCPU
//! of the VM, at a 4-aligned entry, and answers the caller SUCCESS past its call.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use vmm_core::addr::{GpaRange, GuestPhysAddr};
use vmm_core::classify::{Exit, ExitAction, Platform, PlatformError};
use vmm_core::handlers::{HandlerKind, HandlerTree};
use vmm_core::memory::GuestRam;
use vmm_core::mmio::BusError;
use vmm_core::psci::Psci;
use vmm_core::stats::TrapClass;
use vmm_core::vcpu::{SysReg, VcpuState};

const RAM: u64 = 0x4000_0000;
const DEV: u64 = 0x0900_0000;
const WP: u64 = 0x4010_0000;
const SIZE: u64 = 0x1000;
const VBAR: u64 = 0x4000_8000;

#[derive(Debug, Arbitrary)]
struct Input {
    label: u8,
    words: [u64; 13],
    len: u8,
    x: [u64; 31],
    pc_in_ram: bool,
    pc: u16,
    pstate: u8,
    sctlr: u64,
    answers: u64,
    vcpus: u8,
    caller: u8,
    ram: Vec<u8>,
}

struct Dev {
    answers: u64,
}

impl Dev {
    fn check(offset: u64, size: u8) {
        assert!(
            offset.checked_add(u64::from(size)).is_some_and(|end| end <= SIZE),
            "a device access outside its range: offset {offset:#x} size {size}"
        );
    }
}

impl Platform<u8> for Dev {
    fn mmio_read(&mut self, _h: &u8, offset: u64, size: u8) -> Result<u64, BusError> {
        Self::check(offset, size);
        match self.answers & 7 {
            0 => Err(BusError::Refused),
            1 => Err(BusError::Unmapped),
            _ => Ok(self.answers.rotate_left(offset as u32)),
        }
    }
    fn mmio_write(&mut self, _h: &u8, offset: u64, size: u8, value: u64) -> Result<(), BusError> {
        Self::check(offset, size);
        self.answers ^= value;
        if self.answers & 7 == 0 { Err(BusError::Refused) } else { Ok(()) }
    }
    fn protected_write(&mut self, _h: &u8, offset: u64, size: u8, _v: u64) -> Result<bool, BusError> {
        Self::check(offset, size);
        Ok(self.answers & 8 != 0)
    }
    fn vgic_maintenance(&mut self, _lr: Option<u8>) -> Result<(), PlatformError> {
        if self.answers & 16 == 0 { Ok(()) } else { Err(PlatformError(1)) }
    }
    fn virtual_ppi(&mut self, _irq: u32) -> Result<(), PlatformError> {
        Ok(())
    }
}

fuzz_target!(|input: Input| {
    let mut tree = HandlerTree::<u8, 4>::default();
    let ok = tree.register(GpaRange::new(GuestPhysAddr(DEV), SIZE).unwrap(), HandlerKind::All, 0);
    assert!(ok.is_ok());
    let ok = tree.register(GpaRange::new(GuestPhysAddr(WP), SIZE).unwrap(), HandlerKind::Write, 1);
    assert!(ok.is_ok());
    let count = usize::from(input.vcpus % 4) + 1;
    let caller = usize::from(input.caller) % count;
    let mut psci = Psci::<4>::new(count).unwrap();
    let mut v = VcpuState::default();
    v.x = input.x;
    v.pc = if input.pc_in_ram { RAM + u64::from(input.pc & !3) } else { u64::from(input.pc) };
    // EL1h or EL1t, interrupts as they come; sometimes AArch32 or EL0 (a hostile PSTATE).
    v.pstate = match input.pstate & 3 {
        0 => 0x3c5,
        1 => 0x3c4,
        2 => 0x10,
        _ => u64::from(input.pstate),
    };
    v.sys[SysReg::VbarEl1 as usize] = VBAR;
    v.sys[SysReg::SctlrEl1 as usize] = input.sctlr & !1; // MMU mostly off: PC and PA agree
    let mut bytes = vec![0u8; 0x20_0000];
    let n = input.ram.len().min(bytes.len());
    bytes[..n].copy_from_slice(&input.ram[..n]);
    let mut mem = GuestRam::new(GuestPhysAddr(RAM), &mut bytes);
    let mut dev = Dev { answers: input.answers };
    let label = u64::from(input.label % 12);
    let words = &input.words[..usize::from(input.len) % 14];
    let pc_before = v.pc;
    let mut exit = Exit { tree: &tree, psci: &mut psci };
    let r = exit.handle(caller, label, words, &mut v, &mut mem, &mut dev);
    // An IP of u64::MAX in the message means "none" to the exit path (`classify::fault_ip`),
    // which then reads the PC; a real fault never carries it (no instruction is there).
    let ip = match label {
        6 | 3 | 1 => words.first().copied(),  // VMFault, UserException, CapFault carry the IP
        2 => words.get(8).copied(),            // UnknownSyscall: FaultIP
        _ => None,
    }
    .filter(|&ip| ip != u64::MAX)
    .unwrap_or(pc_before);
    match r.action {
        ExitAction::Stop(_) | ExitAction::PowerOff | ExitAction::Reset | ExitAction::CpuOff => {}
        _ if r.guest_trap.is_some() => {
            assert_eq!(v.pc & !0x7ff, VBAR & !0x7ff, "a reflected exception at {:#x}", v.pc);
        }
        ExitAction::Resume | ExitAction::WaitForInterrupt => match r.class {
            TrapClass::VgicMaintenance | TrapClass::VirtualPpi => assert_eq!(v.pc, pc_before),
            TrapClass::GuestTrapUndef | TrapClass::GuestTrapAbort => {
                assert_eq!(v.pc & !0x7ff, VBAR & !0x7ff)
            }
            _ => {
                let moved = v.pc.wrapping_sub(ip);
                assert!(moved == 4 || moved == 2, "{:?}: pc {:#x} from ip {ip:#x}", r.class, v.pc);
            }
        },
        ExitAction::CpuOn { target, entry, .. } => {
            assert!(target < count && target != caller, "CPU_ON of {target} from {caller} of {count}");
            assert_eq!(entry % 4, 0, "CPU_ON entry {entry:#x}");
            assert_eq!(v.x[0], 0, "CPU_ON answers SUCCESS");
            assert_eq!(v.pc.wrapping_sub(ip), 4, "CPU_ON returns past the call");
        }
    }
});
