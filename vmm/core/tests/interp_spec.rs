//! The interpreter's semantics: flags against an independent formulation (carry and overflow
//! from `overflowing_add` and the sign rule), conditions against the Arm ARM's table, one vector
//! per instruction kind worked out by hand, the all-or-nothing rule (a refused access changes
//! nothing) as a property, and a console loop of the kind Linux's PL011 driver runs, hand
//! assembled (each word checked against yaxpeax's disassembly), run against a mock UART.

use proptest::prelude::*;
use std::collections::BTreeMap;
use vmm_core::interp::{
    Cpu, DecodeCache, Features, Memory, Stop, add_sub, add_with_carry, condition_holds, decode,
    execute, flag, run, step,
};
use yaxpeax_arch::{Arch, Decoder, U8Reader};
use yaxpeax_arm::armv8::a64::ARMv8;

const A53: Features = Features {
    pauth: false,
    bti: false,
};

/// Flat little-endian memory (absent bytes refuse the access), code words, and a UART at
/// `UART` whose FR reads `fr` and whose DR collects what is written.
#[derive(Default, Clone)]
struct Mock {
    bytes: BTreeMap<u64, u8>,
    code: BTreeMap<u64, u32>,
    fr: u64,
    tx: Vec<u8>,
    stores: usize,
    refuse_all: bool,
}

const UART: u64 = 0x0900_0000;

impl Mock {
    fn map(&mut self, at: u64, len: u64) {
        for a in at..at + len {
            self.bytes.entry(a).or_insert(0);
        }
    }
    fn poke(&mut self, at: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.bytes.insert(at + i as u64, *b);
        }
    }
    fn code_at(&mut self, at: u64, words: &[u32]) {
        for (i, w) in words.iter().enumerate() {
            self.code.insert(at + 4 * i as u64, *w);
        }
    }
}

impl Memory for Mock {
    fn load(&mut self, va: u64, len: u8) -> Result<u128, Stop> {
        if self.refuse_all {
            return Err(Stop::Memory { va, len });
        }
        if va == UART + 0x18 && len == 4 {
            return Ok(self.fr as u128);
        }
        let mut v = 0u128;
        for i in 0..len as u64 {
            let b = self
                .bytes
                .get(&va.wrapping_add(i))
                .ok_or(Stop::Memory { va, len })?;
            v |= (*b as u128) << (8 * i);
        }
        Ok(v)
    }
    fn store(&mut self, va: u64, len: u8, value: u128) -> Result<(), Stop> {
        if self.refuse_all {
            return Err(Stop::Memory { va, len });
        }
        if va == UART && len <= 4 {
            self.tx.push(value as u8);
            self.stores += 1;
            return Ok(());
        }
        for i in 0..len as u64 {
            if !self.bytes.contains_key(&va.wrapping_add(i)) {
                return Err(Stop::Memory { va, len });
            }
        }
        for i in 0..len as u64 {
            self.bytes.insert(va + i, (value >> (8 * i)) as u8);
        }
        self.stores += 1;
        Ok(())
    }
    fn fetch(&mut self, va: u64) -> Result<u32, Stop> {
        self.code.get(&va).copied().ok_or(Stop::Fetch(va))
    }
}

fn exec(cpu: &mut Cpu, w: u32, mem: &mut Mock) -> Result<(), Stop> {
    let op = decode(w, A53)?;
    execute(cpu, &op, mem)
}

fn cpu() -> Cpu {
    Cpu {
        pc: 0x1000,
        sp: 0x9000,
        ..Cpu::default()
    }
}

proptest! {
    /// AddWithCarry's flags against carry out of `overflowing_add` and the sign rule for
    /// overflow (the operands have one sign and the result the other).
    #[test]
    fn add_with_carry_matches_an_independent_formulation(
        x in any::<u64>(), y in any::<u64>(), carry in any::<bool>(), sf in any::<bool>()
    ) {
        let (r, nzcv) = add_with_carry(sf, x, y, carry);
        let (want, c, v, top) = if sf {
            let (a, c1) = x.overflowing_add(y);
            let (b, c2) = a.overflowing_add(carry as u64);
            let v = ((x ^ b) & (y ^ b)) >> 63 == 1;
            (b, c1 || c2, v, b >> 63 == 1)
        } else {
            let (x, y) = (x as u32, y as u32);
            let (a, c1) = x.overflowing_add(y);
            let (b, c2) = a.overflowing_add(carry as u32);
            let v = ((x ^ b) & (y ^ b)) >> 31 == 1;
            (b as u64, c1 || c2, v, b >> 31 == 1)
        };
        prop_assert_eq!(r, want);
        prop_assert_eq!(nzcv & flag::N != 0, top);
        prop_assert_eq!(nzcv & flag::Z != 0, want == 0);
        prop_assert_eq!(nzcv & flag::C != 0, c);
        prop_assert_eq!(nzcv & flag::V != 0, v);
    }

    /// The add/subtract the instructions use is AddWithCarry with the Arm ARM's operands:
    /// (a, b, 0) for an addition, (a, NOT b, 1) for a subtraction.
    #[test]
    fn add_sub_is_add_with_carry(
        a in any::<u64>(), b in any::<u64>(), sub in any::<bool>(), sf in any::<bool>()
    ) {
        let want = if sub { add_with_carry(sf, a, !b, true) } else { add_with_carry(sf, a, b, false) };
        prop_assert_eq!(add_sub(sf, sub, a, b), want);
    }

    /// A step the memory refuses changes nothing: not a register, not the flags, not the PC,
    /// not a byte of memory.
    #[test]
    fn a_refused_step_changes_nothing(
        w in any::<u32>(),
        x in prop::array::uniform31(any::<u64>()),
        sp in any::<u64>(),
        nzcv in 0u8..16,
    ) {
        let mut c = Cpu { x, sp: sp & !15, pc: 0x1000, nzcv };
        let mut mem = Mock { refuse_all: true, ..Mock::default() };
        mem.code_at(0x1000, &[w]);
        let before = c;
        if step(&mut c, A53, &mut mem).is_err() {
            prop_assert_eq!(c, before);
            prop_assert_eq!(mem.stores, 0);
        }
    }
}

#[test]
fn conditions_follow_the_arm_arm_table() {
    for nzcv in 0u8..16 {
        let n = nzcv & 8 != 0;
        let z = nzcv & 4 != 0;
        let c = nzcv & 2 != 0;
        let v = nzcv & 1 != 0;
        let table = [
            z,            // EQ
            !z,           // NE
            c,            // CS
            !c,           // CC
            n,            // MI
            !n,           // PL
            v,            // VS
            !v,           // VC
            c && !z,      // HI
            !c || z,      // LS: not HI
            n == v,       // GE
            n != v,       // LT
            !z && n == v, // GT
            z || n != v,  // LE: not GT
            true,         // AL
            true,         // NV
        ];
        for (cond, want) in table.iter().enumerate() {
            assert_eq!(
                condition_holds(cond as u8, nzcv),
                *want,
                "cond {cond} nzcv {nzcv:04b}"
            );
        }
    }
}

#[test]
fn arithmetic_and_logic_vectors() {
    let mut m = Mock::default();
    let mut c = cpu();
    // cmp w1, #10 (subs wzr, w1, #10): equal sets Z and C.
    c.x[1] = 0xffff_ffff_0000_000a;
    exec(&mut c, 0x7100_283f, &mut m).unwrap();
    assert_eq!(c.nzcv, flag::Z | flag::C);
    assert_eq!(c.pc, 0x1004);
    // ... 9 < 10: N set, C clear (a borrow).
    c.x[1] = 9;
    exec(&mut c, 0x7100_283f, &mut m).unwrap();
    assert_eq!(c.nzcv, flag::N);
    // subs x0, x0, #1 at i64::MIN overflows.
    c.x[0] = 1 << 63;
    exec(&mut c, 0xf100_0400, &mut m).unwrap();
    assert_eq!(c.x[0], i64::MAX as u64);
    assert_eq!(c.nzcv, flag::C | flag::V);
    // and w20, w1, #0xff: the upper half of x20 is cleared.
    c.x[1] = 0xffff_ffff_ffff_ff41;
    c.x[20] = u64::MAX;
    exec(&mut c, 0x1200_1c34, &mut m).unwrap();
    assert_eq!(c.x[20], 0x41);
    // mov x29, sp (add x29, sp, #0) and sub sp, sp, #0x20.
    exec(&mut c, 0x9100_03fd, &mut m).unwrap();
    assert_eq!(c.x[29], 0x9000);
    exec(&mut c, 0xd100_83ff, &mut m).unwrap();
    assert_eq!(c.sp, 0x8fe0);
    // movz x2, #0x1234, lsl #16; movk x2, #0x5678; movn w3, #0 (w3 = 0xffffffff).
    exec(&mut c, 0xd2a2_4682, &mut m).unwrap();
    assert_eq!(c.x[2], 0x1234_0000);
    exec(&mut c, 0xf28a_cf02, &mut m).unwrap();
    assert_eq!(c.x[2], 0x1234_5678);
    c.x[3] = 7 << 40;
    exec(&mut c, 0x1280_0003, &mut m).unwrap();
    assert_eq!(c.x[3], 0xffff_ffff);
    // add x22, x1, w2, uxtw: the low 32 bits of x2, zero-extended; sxtw sign-extends.
    c.x[1] = 1;
    c.x[2] = 0xdead_beef_ffff_ffff;
    exec(&mut c, 0x8b22_4036, &mut m).unwrap();
    assert_eq!(c.x[22], 0x1_0000_0000);
    exec(&mut c, 0x8b22_c036, &mut m).unwrap();
    assert_eq!(c.x[22], 0);
    // and x0, x0, x0, lsr #3; eor x3, x3, x3; orr x0, xzr, x1 (mov x0, x1).
    c.x[0] = 0xff;
    exec(&mut c, 0x8a40_0c00, &mut m).unwrap();
    assert_eq!(c.x[0], 0xff & (0xff >> 3));
    c.x[3] = 0x55;
    exec(&mut c, 0xca03_0063, &mut m).unwrap();
    assert_eq!(c.x[3], 0);
    exec(&mut c, 0xaa01_03e0, &mut m).unwrap();
    assert_eq!(c.x[0], 1);
    // ands w0, w0, #0x2 with bit 1 clear: Z, and C and V cleared.
    c.nzcv = flag::C | flag::V;
    c.x[0] = 1;
    exec(&mut c, 0x721f_0000, &mut m).unwrap();
    assert_eq!((c.x[0], c.nzcv), (0, flag::Z));
    // cmn x1, #1 (adds xzr, x1, #1): register 31 is XZR there, so SP keeps its value.
    let sp = c.sp;
    exec(&mut c, 0xb100_043f, &mut m).unwrap();
    assert_eq!(c.sp, sp);
    // adr and adrp (immhi:immlo = 12: twelve pages).
    let pc = c.pc;
    exec(&mut c, 0x3000_00a2, &mut m).unwrap(); // adr x2, .+21
    assert_eq!(c.x[2], pc + 21);
    let pc = c.pc;
    exec(&mut c, 0x9000_0064, &mut m).unwrap(); // adrp x4, .+12 pages
    assert_eq!(c.x[4], (pc & !0xfff) + 0xc000);
}

#[test]
fn branch_vectors() {
    let mut m = Mock::default();
    let mut c = cpu();
    // b.ne .+20 with Z set falls through; with Z clear it branches.
    c.nzcv = flag::Z;
    exec(&mut c, 0x5400_00a1, &mut m).unwrap();
    assert_eq!(c.pc, 0x1004);
    c.nzcv = 0;
    exec(&mut c, 0x5400_00a1, &mut m).unwrap();
    assert_eq!(c.pc, 0x1004 + 20);
    // cbz w2, .+0x48 looks at the low 32 bits only.
    c.pc = 0x1000;
    c.x[2] = 1 << 32;
    exec(&mut c, 0x3400_0242, &mut m).unwrap();
    assert_eq!(c.pc, 0x1048);
    // tbnz w0, #5, .-16: bit 5 set branches back.
    c.pc = 0x1000;
    c.x[0] = 0x20;
    exec(&mut c, 0x372f_ff80, &mut m).unwrap();
    assert_eq!(c.pc, 0x1000 - 16);
    // tbz x0, #37, .+0: bit 37 clear branches (to itself).
    c.pc = 0x1000;
    exec(&mut c, 0xb628_0000, &mut m).unwrap();
    assert_eq!(c.pc, 0x1000);
    // bl .+8 links; blr x30 jumps to the old x30 and links the next instruction.
    c.pc = 0x1000;
    exec(&mut c, 0x9400_0002, &mut m).unwrap();
    assert_eq!((c.pc, c.x[30]), (0x1008, 0x1004));
    c.x[30] = 0x2000;
    exec(&mut c, 0xd63f_03c0, &mut m).unwrap();
    assert_eq!((c.pc, c.x[30]), (0x2000, 0x100c));
    // ret.
    exec(&mut c, 0xd65f_03c0, &mut m).unwrap();
    assert_eq!(c.pc, 0x100c);
}

#[test]
fn load_store_vectors() {
    let mut m = Mock::default();
    m.map(0x8000, 0x100);
    m.map(0x8f00, 0x100);
    m.poke(0x8000, &[0x68, 0x69, 0x0a, 0x80, 0xff, 0xff, 0xff, 0xff]);
    let mut c = cpu();
    // ldrb w3, [x0], #1: post-index.
    c.x[0] = 0x8000;
    exec(&mut c, 0x3840_1403, &mut m).unwrap();
    assert_eq!((c.x[3], c.x[0]), (0x68, 0x8001));
    // ldrh w1, [x3, w1, uxtw #1]: the halfword at x3 + 2 * w1.
    c.x[3] = 0x8000;
    c.x[1] = 0xffff_ffff_0000_0001;
    exec(&mut c, 0x7861_5861, &mut m).unwrap();
    assert_eq!(c.x[1], 0x800a);
    // ldrsw x5, [x3, #4]: sign-extended.
    exec(&mut c, 0xb980_0465, &mut m).unwrap();
    assert_eq!(c.x[5], u64::MAX);
    // stp x29, x30, [sp, #-16]! then ldp x29, x30, [sp], #16.
    c.sp = 0x9000;
    c.x[29] = 0x1111;
    c.x[30] = 0x2222;
    exec(&mut c, 0xa9bf_7bfd, &mut m).unwrap();
    assert_eq!(c.sp, 0x8ff0);
    assert_eq!(m.load(0x8ff0, 16).unwrap(), 0x2222u128 << 64 | 0x1111);
    c.x[29] = 0;
    c.x[30] = 0;
    exec(&mut c, 0xa8c1_7bfd, &mut m).unwrap();
    assert_eq!((c.x[29], c.x[30], c.sp), (0x1111, 0x2222, 0x9000));
    // An SP-based access with SP misaligned stops (the CPU may fault) and changes nothing.
    c.sp = 0x8ff8;
    let before = c;
    assert_eq!(exec(&mut c, 0xa9bf_7bfd, &mut m), Err(Stop::SpAlignment));
    assert_eq!(c, before);
    // strb w3, [x2]: to the UART's DR.
    c.x[2] = UART;
    c.x[3] = 0x4241;
    exec(&mut c, 0x3900_0043, &mut m).unwrap();
    assert_eq!(m.tx, b"A");
}

/// A console loop as Linux's PL011 console runs it (its shape, written and assembled here):
///
/// ```text
/// 0x1000 put_string:          // x0 = string, x1 = length, x2 = UART
///          paciasp
///          stp  x29, x30, [sp, #-16]!
///          mov  x29, sp
/// 0x100c loop: cbz  x1, done
///          ldrb w3, [x0], #1
///          cmp  w3, #10
///          b.ne 1f
///          movz w4, #13
///          bl   putc          // the '\r' before a newline
/// 1:       mov  w4, w3
///          bl   putc
///          sub  x1, x1, #1
///          b    loop
/// 0x1034 done: ldp x29, x30, [sp], #16
///          autiasp
///          ret
/// 0x1040 putc: ldr  w5, [x2, #0x18]   // FR
///          tbnz w5, #5, putc          // TXFF
///          strb w4, [x2]              // DR
///          ret
/// ```
#[test]
fn a_console_loop_runs_to_its_return() {
    let program: [(u32, &str); 19] = [
        (0xd503_233f, "paciasp"),
        (0xa9bf_7bfd, "stp x29, x30, [sp, #-0x10]!"),
        (0x9100_03fd, "mov x29, sp"),
        (0xb400_0141, "cbz x1, $+0x28"),
        (0x3840_1403, "ldrb w3, [x0], #0x1"),
        (0x7100_287f, "cmp w3, #0xa"),
        (0x5400_0061, "b.ne $+0xc"),
        (0x5280_01a4, "mov w4, #0xd"),
        (0x9400_0008, "bl $+0x20"),
        (0x2a03_03e4, "mov w4, w3"),
        (0x9400_0006, "bl $+0x18"),
        (0xd100_0421, "sub x1, x1, #0x1"),
        (0x17ff_fff7, "b $-0x24"),
        (0xa8c1_7bfd, "ldp x29, x30, [sp], #0x10"),
        (0xd503_23bf, "autiasp"),
        (0xd65f_03c0, "ret"),
        (0xb940_1845, "ldr w5, [x2, #0x18]"),
        (0x372f_ffe5, "tbnz w5, #0x5, $-0x4"),
        (0x3900_0044, "strb w4, [x2]"),
    ];
    let mut words: Vec<u32> = program.iter().map(|p| p.0).collect();
    words.push(0xd65f_03c0); // putc's ret
    for (w, text) in program {
        let bytes = w.to_le_bytes();
        let mut r = U8Reader::new(&bytes[..]);
        let insn = <ARMv8 as Arch>::Decoder::default().decode(&mut r).unwrap();
        assert_eq!(format!("{insn}"), text, "{w:#010x}");
    }
    let mut m = Mock::default();
    m.code_at(0x1000, &words);
    m.map(0x8000, 0x100);
    m.map(0x8f00, 0x100);
    m.poke(0x8000, b"hi\nok");
    let mut c = cpu();
    c.x[0] = 0x8000;
    c.x[1] = 5;
    c.x[2] = UART;
    c.x[29] = 0x29;
    c.x[30] = 0xdead_0000;
    let (ran, stop) = run(&mut c, &mut m, 1000, &mut DecodeCache::<64>::new(A53));
    assert_eq!(
        stop,
        Stop::Fetch(0xdead_0000),
        "after {ran} instructions at {:#x}",
        c.pc
    );
    assert_eq!(m.tx, b"hi\r\nok");
    assert_eq!((c.x[0], c.x[1], c.sp, c.x[29]), (0x8005, 0, 0x9000, 0x29));
    // The budget stops a run between instructions, resumable where it stopped.
    let mut c2 = cpu();
    c2.x[0] = 0x8000;
    c2.x[1] = 5;
    c2.x[2] = UART;
    c2.x[30] = 0xdead_0000;
    let mut m2 = m.clone();
    m2.tx.clear();
    let mut cache = DecodeCache::<64>::new(A53);
    let (n, stop) = run(&mut c2, &mut m2, 10, &mut cache);
    assert_eq!((n, stop), (10, Stop::Budget));
    let (_, stop) = run(&mut c2, &mut m2, 1000, &mut cache);
    assert_eq!(stop, Stop::Fetch(0xdead_0000));
    assert_eq!(m2.tx, b"hi\r\nok");
    // With FEAT_PAuth the interpreter stops at the first PACIASP instead.
    let mut c3 = cpu();
    let pauth = Features {
        pauth: true,
        bti: false,
    };
    assert_eq!(
        run(&mut c3, &mut m2, 100, &mut DecodeCache::<64>::new(pauth)),
        (0, Stop::Unsupported(0xd503_233f))
    );
    // A UART whose TX FIFO stays full keeps the loop polling until the budget ends.
    let mut c4 = cpu();
    c4.x[0] = 0x8000;
    c4.x[1] = 5;
    c4.x[2] = UART;
    let mut m4 = m.clone();
    m4.tx.clear();
    m4.fr = 0x20;
    assert_eq!(
        run(&mut c4, &mut m4, 500, &mut DecodeCache::<64>::new(A53)),
        (500, Stop::Budget)
    );
    assert!(m4.tx.is_empty());
}

/// The decoded-instruction cache outlives a run but not a change of the code: a later run
/// fetches each address again and decodes what changed.
#[test]
fn a_later_run_decodes_changed_code_again() {
    let mut m = Mock::default();
    // mov w4, #1; b . (back to itself: the budget ends the run)
    m.code_at(0x1000, &[0x5280_0024, 0x1400_0000]);
    let mut cache = DecodeCache::<64>::new(A53);
    let mut c = cpu();
    assert_eq!(run(&mut c, &mut m, 8, &mut cache), (8, Stop::Budget));
    assert_eq!(c.x[4], 1);
    // The guest rewrites the first instruction (mov w4, #2) between runs.
    m.code_at(0x1000, &[0x5280_0044]);
    let mut c = cpu();
    assert_eq!(run(&mut c, &mut m, 8, &mut cache), (8, Stop::Budget));
    assert_eq!(c.x[4], 2);
}

/// The cache keeps two blocks per set: a loop over two blocks that share a set decodes each
/// once; a loop over three of one set decodes on every step (dropping the pool when it fills)
/// and still runs right.
#[test]
fn two_blocks_of_one_set_stay_decoded() {
    let mut m = Mock::default();
    // 0x1000: b 0x1008; 0x1008: b 0x1000 (one set: every block shares it).
    m.code_at(0x1000, &[0x1400_0002]);
    m.code_at(0x1008, &[0x17ff_fffe]);
    let mut cache = DecodeCache::<32, 2>::new(A53);
    let mut c = cpu();
    assert_eq!(run(&mut c, &mut m, 100, &mut cache), (100, Stop::Budget));
    assert_eq!((c.pc, cache.decoded, cache.flushes), (0x1000, 2, 0));
    // 0x1000 -> 0x1008 -> 0x1010 -> 0x1000: three blocks of the one set.
    m.code_at(0x1008, &[0x1400_0002]);
    m.code_at(0x1010, &[0x17ff_fffc]);
    let mut cache = DecodeCache::<32, 2>::new(A53);
    let mut c = cpu();
    assert_eq!(run(&mut c, &mut m, 99, &mut cache), (99, Stop::Budget));
    assert_eq!((c.pc, cache.decoded), (0x1000, 99));
    assert!(cache.flushes > 0);
}

/// A block runs its straight-line instructions in order, stops at the budget between any two
/// of them, ends before an instruction the interpreter does not take (stopping there), and is
/// decoded again when a word in its middle changed between runs.
#[test]
fn a_block_stops_inside_ends_before_the_unsupported_and_follows_changed_code() {
    let mut m = Mock::default();
    // movz w1, #1; movz w2, #2; movz w3, #3; msr daifset, #2 (unsupported)
    m.code_at(
        0x1000,
        &[0x5280_0021, 0x5280_0042, 0x5280_0063, 0xd503_43df],
    );
    let mut cache = DecodeCache::<64>::new(A53);
    let mut c = cpu();
    assert_eq!(run(&mut c, &mut m, 2, &mut cache), (2, Stop::Budget));
    assert_eq!((c.pc, c.x[1], c.x[2], c.x[3]), (0x1008, 1, 2, 0));
    let mut c = cpu();
    assert_eq!(
        run(&mut c, &mut m, 100, &mut cache),
        (3, Stop::Unsupported(0xd503_43df))
    );
    assert_eq!((c.pc, c.x[3]), (0x100c, 3));
    // The middle word becomes movz w2, #7.
    m.code_at(0x1004, &[0x5280_00e2]);
    let mut c = cpu();
    assert_eq!(
        run(&mut c, &mut m, 100, &mut cache),
        (3, Stop::Unsupported(0xd503_43df))
    );
    assert_eq!(c.x[2], 7);
}

/// Instruction words the interpreter takes (and some it does not), with random fields: data
/// processing, branches a few instructions either way, loads and stores of every shape the
/// console loops use, NOPs and an unsupported system instruction.
fn word() -> impl Strategy<Value = u32> {
    let reg = || 0u32..32;
    prop_oneof![
        (any::<u32>()).prop_map(|r| 0x9100_0000 | (r & 0x7f_ffff)), // add x, x, #imm (sh)
        (any::<u32>()).prop_map(|r| 0x7100_0000 | (r & 0x7f_ffff)), // subs w, w, #imm
        (any::<u32>()).prop_map(|r| 0xaa00_0000 | (r & 0x1f_ffff)), // orr x, x, x
        (any::<u32>()).prop_map(|r| 0x1200_0000 | (r & 0x7f_ffff)), // and w, w, #mask
        (any::<u32>()).prop_map(|r| 0xd280_0000 | (r & 0x7f_ffff)), // movz x
        (0u32..16, -6i32..8).prop_map(|(c, o)| 0x5400_0000 | ((o as u32 & 0x7_ffff) << 5) | c),
        (-6i32..8).prop_map(|o| 0x1400_0000 | (o as u32 & 0x3ff_ffff)), // b
        (-6i32..8).prop_map(|o| 0x9400_0000 | (o as u32 & 0x3ff_ffff)), // bl
        (reg(), -6i32..8).prop_map(|(r, o)| 0xb400_0000 | ((o as u32 & 0x7_ffff) << 5) | r),
        (reg(), 0u32..64, -6i32..8).prop_map(|(r, b, o)| {
            0x3600_0000 | (b >> 5) << 31 | (b & 31) << 19 | ((o as u32 & 0x3fff) << 5) | r
        }),
        Just(0xd65f_03c0u32), // ret
        (reg(), reg(), 0u32..64).prop_map(|(t, n, i)| 0xf940_0000 | i << 10 | n << 5 | t), // ldr x
        (reg(), reg(), 0u32..64).prop_map(|(t, n, i)| 0xb900_0000 | i << 10 | n << 5 | t), // str w
        (reg(), reg(), 0u32..64).prop_map(|(t, n, i)| 0x3940_0000 | i << 10 | n << 5 | t), // ldrb
        (reg(), reg(), 0u32..16).prop_map(|(t, n, i)| 0x3840_0400 | i << 12 | n << 5 | t), // ldrb post
        (reg(), reg(), reg()).prop_map(|(t, n, t2)| 0xa9bf_0000 | t2 << 10 | n << 5 | t), // stp pre
        (reg(), reg(), reg()).prop_map(|(t, n, t2)| 0xa8c1_0000 | t2 << 10 | n << 5 | t), // ldp post
        Just(0xd503_201fu32),                                                             // nop
        Just(0xd503_3bbfu32),                                                             // dmb ish
        Just(0xd503_43dfu32), // msr daifset, #3 (unsupported)
    ]
    .boxed()
    .prop_union(specialized().boxed())
}

/// The forms the blocks specialize ([`vmm_core::uop`]) with random registers (31 included,
/// where the specialized forms do not apply) and fields.
fn specialized() -> impl Strategy<Value = u32> {
    let r = || 0u32..32;
    prop_oneof![
        (r(), r(), any::<bool>())
            .prop_map(|(d, m, w)| if w { 0x2a00_03e0 } else { 0xaa00_03e0 } | m << 16 | d),
        (0u32..4, any::<u32>()).prop_map(|(k, x)| [
            0x9100_0000u32,
            0xd100_0000,
            0x1100_0000,
            0x5100_0000
        ][k as usize]
            | (x & 0x7f_ffff)),
        (r(), 0u32..4096, any::<bool>()).prop_map(|(n, i, w)| if w {
            0x7100_001f
        } else {
            0xf100_001f
        } | i << 10
            | n << 5),
        (r(), r(), any::<bool>())
            .prop_map(|(n, m, w)| if w { 0x6b00_001f } else { 0xeb00_001f } | m << 16 | n << 5),
        (r(), any::<u32>(), any::<bool>()).prop_map(|(n, x, w)| if w {
            0x7200_001f | (x & 0x3f_fc00)
        } else {
            0xf200_001f | (x & 0x7f_fc00)
        } | n << 5),
        (any::<u32>(), any::<bool>()).prop_map(|(x, w)| if w {
            0x1200_0000 | (x & 0x3f_ffff)
        } else {
            0x9200_0000 | (x & 0x7f_ffff)
        }),
        (any::<u32>(), 0u32..3).prop_map(|(x, k)| [0x9280_0000u32, 0x5280_0000, 0x1280_0000]
            [k as usize]
            | (x & 0x1f_ffff)),
        (any::<u32>(), any::<bool>())
            .prop_map(|(x, p)| if p { 0x9000_0000 } else { 0x1000_0000 } | (x & 0x60ff_ffff)),
        (r(), -6i32..8, 0u32..2).prop_map(|(t, o, k)| [0xb500_0000u32, 0x3400_0000][k as usize]
            | ((o as u32 & 0x7_ffff) << 5)
            | t),
        (r(), 0u32..64, -6i32..8).prop_map(|(t, b, o)| 0x3700_0000
            | (b >> 5) << 31
            | (b & 31) << 19
            | ((o as u32 & 0x3fff) << 5)
            | t),
        (r(), any::<bool>()).prop_map(|(n, l)| if l { 0xd63f_0000 } else { 0xd61f_0000 } | n << 5),
        (r(), r(), 0u32..64, 0u32..6).prop_map(|(t, n, i, k)| [
            0xb940_0000u32,
            0x7940_0000,
            0xf900_0000,
            0x3900_0000,
            0x7900_0000,
            0xb900_0000
        ][k as usize]
            | i << 10
            | n << 5
            | t),
        (r(), r(), 0u32..32, 0u32..3).prop_map(|(t, n, i, k)| [
            0xb840_0400u32,
            0x7840_0400,
            0xf840_0400
        ][k as usize]
            | i << 12
            | n << 5
            | t),
        // ADD (shifted register) and EOR (register), 64 and 32 bits, with random shifts.
        (r(), r(), r(), 0u32..64, 0u32..4).prop_map(|(d, n, m, a, k)| {
            [0x8b00_0000u32, 0x0b00_0000, 0xca00_0000, 0x4a00_0000][k as usize]
                // Half of them unshifted (the specialized forms), the rest with any amount
                // a form takes.
                | (if a < 32 { 0 } else if k % 2 == 1 { a & 31 } else { a }) << 10
                | (a & 1) << 22
                | m << 16
                | n << 5
                | d
        }),
        // ADD/SUB immediate with SP (mov x29, sp; sub sp, sp, #n; add sp, sp, #n).
        (r(), r(), 0u32..256, any::<bool>()).prop_map(|(d, n, i, sub)| {
            (if sub { 0xd100_0000 } else { 0x9100_0000 }) | i << 10 | n << 5 | d
        }),
        Just(0x9100_03fdu32),
        Just(0xd100_43ffu32),
        // LDR (register) of every size, every extend option, scaled or not.
        (r(), r(), r(), 0u32..8, any::<bool>(), 0u32..4).prop_map(|(t, n, m, opt, sc, k)| {
            [0x3860_0800u32, 0x7860_0800, 0xb860_0800, 0xf860_0800][k as usize]
                | m << 16
                | opt << 13
                | (sc as u32) << 12
                | n << 5
                | t
        }),
        // STP/LDP of X registers: offset, pre-index, post-index; a random 7-bit offset.
        (r(), r(), r(), 0u32..128, 0u32..6).prop_map(|(t, n, t2, i, k)| {
            [
                0xa900_0000u32,
                0xa980_0000,
                0xa880_0000,
                0xa940_0000,
                0xa9c0_0000,
                0xa8c0_0000,
            ][k as usize]
                | i << 15
                | t2 << 10
                | n << 5
                | t
        }),
    ]
}

proptest! {
    /// A run over the block cache does exactly what stepping one instruction at a time does:
    /// the same instructions, registers, flags, memory, console bytes and stop, also in a
    /// second run over the same cache after one word of the code changed.
    #[test]
    fn a_run_is_the_steps_it_replaces(
        code in proptest::collection::vec(word(), 12),
        regs in proptest::collection::vec(0u64..0x180, 31),
        nzcv in 0u8..16,
        budget in 1u32..64,
        changed in (0usize..12, word()),
    ) {
        let mut m = Mock::default();
        m.map(0x8000, 0x200);
        m.code_at(0x1000, &code);
        let mut start = cpu();
        start.nzcv = nzcv;
        start.sp = 0x8100;
        for (x, r) in start.x.iter_mut().zip(&regs) {
            // Most registers point into the data; a few stay small (refused addresses), a few
            // have their upper bits set (the 32-bit forms must drop them).
            *x = match r % 7 {
                0 => *r,
                1 => r.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                _ => 0x8000 + (r & !7),
            };
        }
        let mut cache = DecodeCache::<16, 4>::new(A53);
        for round in 0..2 {
            if round == 1 {
                m.code_at(0x1000 + 4 * changed.0 as u64, &[changed.1]);
            }
            let (mut stepped, mut ms) = (start, m.clone());
            let mut n = 0;
            let stop = loop {
                if n == budget {
                    break Stop::Budget;
                }
                if let Err(stop) = step(&mut stepped, A53, &mut ms) {
                    break stop;
                }
                n += 1;
            };
            let (mut ran, mut mr) = (start, m.clone());
            prop_assert_eq!(run(&mut ran, &mut mr, budget, &mut cache), (n, stop));
            prop_assert_eq!(ran, stepped);
            prop_assert_eq!(&mr.bytes, &ms.bytes);
            prop_assert_eq!(&mr.tx, &ms.tx);
        }
    }
}
