//! MMIO emulation end to end: arbitrary registers, syndrome, fault address, guest RAM (holding
//! the instruction and maybe page tables) and device answers; never a panic, and on success
//! the PC is the fault IP + 4.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::addr::GuestPhysAddr;
use vmm_core::memory::GuestRam;
use vmm_core::mmio::{BusError, MmioBus, emulate};
use vmm_core::syndrome::{Class, Syndrome};
use vmm_core::vcpu::{SysReg, VcpuState};

const RAM_BASE: u64 = 0x4000_0000;

struct Bus(u64);
impl MmioBus for Bus {
    fn read(&mut self, gpa: GuestPhysAddr, size: u8) -> Result<u64, BusError> {
        match self.0 & 3 {
            0 => Err(BusError::Unmapped),
            1 if size == 8 => Err(BusError::Refused),
            _ => Ok(self.0.rotate_left(gpa.raw() as u32)),
        }
    }
    fn write(&mut self, gpa: GuestPhysAddr, _size: u8, value: u64) -> Result<(), BusError> {
        if self.0 & 3 == 0 {
            return Err(BusError::Unmapped);
        }
        self.0 ^= value ^ gpa.raw();
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // 40 words of state, then RAM.
    let Some((head, rest)) = data.split_first_chunk::<320>() else {
        return;
    };
    let mut w = [0u64; 40];
    for (x, c) in w.iter_mut().zip(head.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        *x = u64::from_le_bytes(b);
    }
    let mut v = VcpuState::default();
    v.x.copy_from_slice(&w[..31]);
    v.sp = w[31];
    let [esr, ip, gpa, sctlr, tcr, ttbr0, bus] = [w[32], w[33], w[34], w[35], w[36], w[37], w[38]];
    let flags = w[39];
    // Usually keep the PC and table base inside the RAM.
    let ip = if flags & 1 == 0 {
        RAM_BASE + (ip & 0xfffc)
    } else {
        ip
    };
    v.pc = ip;
    v.sys[SysReg::SctlrEl1 as usize] = sctlr;
    v.sys[SysReg::TcrEl1 as usize] = tcr;
    v.sys[SysReg::Ttbr0El1 as usize] = if flags & 2 == 0 {
        RAM_BASE + (ttbr0 & 0xf000)
    } else {
        ttbr0
    };
    v.sys[SysReg::Ttbr1El1 as usize] = ttbr0.rotate_left(17);
    let esr = (esr & !(0x3f << 26)) | (0x24 << 26);
    let Class::DataAbort(abort) = Syndrome::decode(esr).class else {
        unreachable!()
    };
    let mut bytes = rest.to_vec();
    let ram = GuestRam::new(GuestPhysAddr(RAM_BASE), &mut bytes);
    let mut b = Bus(bus);
    if let Ok(out) = emulate(&mut v, &ram, &abort, ip, GuestPhysAddr(gpa), &mut b) {
        assert_eq!(out.next_pc, ip.wrapping_add(4));
        assert_eq!(v.pc, out.next_pc);
        assert!(out.accesses <= 2);
    }
});
