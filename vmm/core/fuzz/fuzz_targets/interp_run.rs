//! The A64 interpreter on guest-controlled code, registers and memory: never a panic, every
//! step all or nothing (a stopped step leaves registers and memory as they were), and a run
//! never takes more steps than its budget.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::interp::{Cpu, DecodeCache, Features, Memory, Stop, run, step};

const CODE: u64 = 0x1000;
const DATA: u64 = 0x8000;

/// 16 instruction words at CODE, 256 data bytes at DATA (the stack's too); everything else
/// refuses.
struct Mem {
    code: [u32; 16],
    data: [u8; 256],
    writes: u32,
}

impl Memory for Mem {
    fn load(&mut self, va: u64, len: u8) -> Result<u128, Stop> {
        let off = va.wrapping_sub(DATA) as usize;
        let bytes = self
            .data
            .get(off..off.wrapping_add(usize::from(len)))
            .ok_or(Stop::Memory { va, len })?;
        let mut b = [0u8; 16];
        b[..bytes.len()].copy_from_slice(bytes);
        Ok(u128::from_le_bytes(b))
    }
    fn store(&mut self, va: u64, len: u8, value: u128) -> Result<(), Stop> {
        let off = va.wrapping_sub(DATA) as usize;
        let dst = self
            .data
            .get_mut(off..off.wrapping_add(usize::from(len)))
            .ok_or(Stop::Memory { va, len })?;
        let n = dst.len();
        dst.copy_from_slice(&value.to_le_bytes()[..n]);
        self.writes += 1;
        Ok(())
    }
    fn fetch(&mut self, va: u64) -> Result<u32, Stop> {
        let i = va.wrapping_sub(CODE) / 4;
        self.code.get(i as usize).copied().ok_or(Stop::Fetch(va))
    }
}

fuzz_target!(|input: ([u32; 16], [u64; 8], u8, bool, Vec<u8>)| {
    let (code, regs, nzcv, pauth, data) = input;
    let mut mem = Mem {
        code,
        data: [0; 256],
        writes: 0,
    };
    for (d, s) in mem.data.iter_mut().zip(data.iter()) {
        *d = *s;
    }
    let mut cpu = Cpu {
        pc: CODE,
        sp: DATA + 128,
        nzcv: nzcv & 15,
        ..Cpu::default()
    };
    // Registers pointing into the data page, and arbitrary ones.
    for (i, x) in cpu.x.iter_mut().enumerate() {
        *x = match regs.get(i) {
            Some(&r) => r,
            None => DATA + (i as u64 * 8) % 256,
        };
    }
    let features = Features { pauth, bti: false };
    let start = cpu;
    for _ in 0..32 {
        let (before, data_before, writes) = (cpu, mem.data, mem.writes);
        if step(&mut cpu, features, &mut mem).is_err() {
            assert_eq!(cpu, before);
            assert_eq!(mem.data, data_before);
            assert_eq!(mem.writes, writes);
            break;
        }
    }
    let mut again = start;
    let (n, stop) = run(&mut again, &mut mem, 32, &mut DecodeCache::<64>::new(features));
    assert!(n <= 32);
    assert_eq!(n == 32, stop == Stop::Budget);
});
