//! `LazyVcpu`, the VMM's register cache of one exit, held to the plain in-memory model
//! `vmm_core::vcpu::VcpuState` on the simulated vCPU of the VMM's scope: every read returns the
//! model's value, after `flush` the simulated vCPU equals the model, and the kernel traffic is
//! the least a lazy cache can make — a ReadRegisters only when a register neither seeded from the
//! fault message nor written first is needed (and then one), one WriteRegisters of exactly the
//! prefix up to the highest changed register, one VCPU ReadReg per system register read before
//! being written, one VCPU WriteReg per changed system register.

use microkit_rt::Child;
use microkit_rt::abi::{error, user_context, vcpu_reg};
use microkit_sim::{Invocation, Sim, SimKernel};
use proptest::prelude::*;
use std::collections::BTreeSet;
use vmm::lazy_vcpu::{LazyVcpu, vcpu_field};
use vmm_core::vcpu::{SysReg, Vcpu, VcpuError, VcpuState};

const SYSREGS: [SysReg; 13] = [
    SysReg::SctlrEl1,
    SysReg::Ttbr0El1,
    SysReg::Ttbr1El1,
    SysReg::TcrEl1,
    SysReg::MairEl1,
    SysReg::EsrEl1,
    SysReg::FarEl1,
    SysReg::ElrEl1,
    SysReg::SpsrEl1,
    SysReg::VbarEl1,
    SysReg::SpEl1,
    SysReg::CntvCtlEl0,
    SysReg::CntvCvalEl0,
];

#[test]
fn each_system_register_maps_to_its_sel4_vcpu_field() {
    let want = [
        vcpu_reg::SCTLR,
        vcpu_reg::TTBR0,
        vcpu_reg::TTBR1,
        vcpu_reg::TCR,
        vcpu_reg::MAIR,
        vcpu_reg::ESR,
        vcpu_reg::FAR,
        vcpu_reg::ELR_EL1,
        vcpu_reg::SPSR_EL1,
        vcpu_reg::VBAR,
        vcpu_reg::SP_EL1,
        vcpu_reg::CNTV_CTL,
        vcpu_reg::CNTV_CVAL,
    ];
    for (r, f) in SYSREGS.iter().zip(want) {
        assert_eq!(vcpu_field(*r), f, "{r:?}");
        // The model indexes its system registers by declaration order.
        assert_eq!(SYSREGS[*r as usize], *r);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Gpr(u8),
    SetGpr(u8, u64),
    Pc,
    SetPc(u64),
    Pstate,
    SetPstate(u64),
    Sysreg(usize),
    SetSysreg(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..=32).prop_map(Op::Gpr),
        4 => (0u8..=32, any::<u64>()).prop_map(|(n, v)| Op::SetGpr(n, v)),
        1 => Just(Op::Pc),
        1 => any::<u64>().prop_map(Op::SetPc),
        1 => Just(Op::Pstate),
        1 => any::<u64>().prop_map(Op::SetPstate),
        2 => (0usize..13).prop_map(Op::Sysreg),
        2 => (0usize..13, any::<u64>()).prop_map(|(r, v)| Op::SetSysreg(r, v)),
    ]
}

/// The user-context index an op touches, if any (None for sysregs and bad registers).
fn ctx_index(op: &Op) -> Option<usize> {
    match *op {
        Op::Gpr(n) | Op::SetGpr(n, _) => user_context::gpr_index(n),
        Op::Pc | Op::SetPc(_) => Some(user_context::PC),
        Op::Pstate | Op::SetPstate(_) => Some(user_context::SPSR),
        _ => None,
    }
}

/// The model's view of a simulated vCPU.
fn model_of(ctx: &[u64; user_context::LEN], regs: &[u64]) -> VcpuState {
    let mut m = VcpuState::default();
    for n in 0..=30u8 {
        m.x[n as usize] = ctx[user_context::gpr_index(n).unwrap()];
    }
    m.pc = ctx[user_context::PC];
    m.sp = ctx[user_context::SP];
    m.pstate = ctx[user_context::SPSR];
    for (i, r) in SYSREGS.iter().enumerate() {
        m.sys[i] = regs[vcpu_field(*r) as usize];
    }
    m
}

fn apply(v: &mut impl Vcpu, op: &Op) -> Result<u64, VcpuError> {
    match *op {
        Op::Gpr(n) => v.gpr(n),
        Op::SetGpr(n, x) => v.set_gpr(n, x).map(|()| 0),
        Op::Pc => v.pc(),
        Op::SetPc(x) => v.set_pc(x).map(|()| 0),
        Op::Pstate => v.pstate(),
        Op::SetPstate(x) => v.set_pstate(x).map(|()| 0),
        Op::Sysreg(r) => v.sysreg(SYSREGS[r]),
        Op::SetSysreg(r, x) => v.set_sysreg(SYSREGS[r], x).map(|()| 0),
    }
}

fn sim_with(ctx: [u64; user_context::LEN], regs: &[u64]) -> Sim {
    let sim = Sim::from_repo_system("vmm");
    sim.with_vcpu(0, |v| {
        v.context = ctx;
        v.regs.copy_from_slice(regs);
    });
    sim
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn lazy_vcpu_behaves_as_the_model_with_the_least_kernel_traffic(
        ctx in prop::array::uniform32(any::<u64>()).prop_flat_map(|a| {
            prop::array::uniform4(any::<u64>()).prop_map(move |b| {
                let mut c = [0u64; user_context::LEN];
                c[..32].copy_from_slice(&a);
                c[32..].copy_from_slice(&b);
                c
            })
        }),
        regs in prop::collection::vec(any::<u64>(), vcpu_reg::NUM as usize),
        seeded in any::<u64>().prop_map(|m| m & ((1 << user_context::LEN) - 1)),
        ops in prop::collection::vec(op(), 0..40),
        prev in prop::collection::vec(op(), 0..12),
        announce_all in any::<bool>(),
    ) {
        let sim = sim_with(ctx, &regs);
        // The cache lives as long as the VMM: an earlier exit ran on it (and changed the vCPU);
        // `begin` must leave nothing of it behind.
        let mut lazy = LazyVcpu::new(sim.kernel(), Child::new(0));
        for op in &prev {
            let _ = apply(&mut lazy, op);
        }
        prop_assert!(lazy.flush().is_ok());
        let (ctx, regs) = sim.with_vcpu(0, |v| (v.context, v.regs.to_vec()));
        let _ = sim.take_log();
        lazy.begin();
        // The exit path announces the general registers it will use before the first access
        // (the MMIO emulator: the transfer register, or all of them for a decoded instruction).
        let used = ops.iter().fold(0u32, |m, op| match *op {
            Op::Gpr(n) | Op::SetGpr(n, _) if n <= 30 => m | 1 << n,
            _ => m,
        });
        lazy.expect_gprs(if announce_all { vmm_core::vcpu::ALL_GPRS } else { used });
        // Seeds carry the true values, as a fault message does.
        for (i, &v) in ctx.iter().enumerate() {
            if seeded & (1 << i) != 0 {
                lazy.seed(i, v);
            }
        }
        let mut model = model_of(&ctx, &regs);

        // What an optimal lazy cache must do, computed from the ops alone.
        let mut known = seeded;
        let mut must_read = false;
        let mut dirty_top: Option<usize> = None;
        let mut sys_read_first = BTreeSet::new();
        let mut sys_set = BTreeSet::new();
        for op in &ops {
            prop_assert_eq!(apply(&mut lazy, op), apply(&mut model, op), "{:?}", op);
            match (op, ctx_index(op)) {
                (Op::Gpr(_) | Op::Pc | Op::Pstate, Some(i)) if known & (1 << i) == 0 => {
                    must_read = true;
                }
                (Op::SetGpr(..) | Op::SetPc(_) | Op::SetPstate(_), Some(i)) => {
                    known |= 1 << i;
                    dirty_top = dirty_top.max(Some(i));
                }
                (Op::Sysreg(r), _) if !sys_set.contains(r) => {
                    sys_read_first.insert(*r);
                }
                (Op::SetSysreg(r, _), _) => {
                    sys_set.insert(*r);
                }
                _ => {}
            }
        }
        if let Some(top) = dirty_top {
            // Writing the prefix needs every register below the highest changed one.
            let below = (1u64 << (top + 1)) - 1;
            if known & below != below {
                must_read = true;
            }
        }

        let flushed = lazy.flush();
        let log = sim.take_log();
        prop_assert_eq!(flushed, Ok(log.len() as u32), "the exit's call count: {:?}", log);
        prop_assert_eq!(lazy.calls() as usize, log.len());

        // After the flush, the simulated vCPU is the model.
        let (ctx_after, regs_after) = sim.with_vcpu(0, |v| (v.context, v.regs));
        prop_assert_eq!(model_of(&ctx_after, &regs_after), model.clone());
        // Nothing outside the model changed (tpidr_el0, tpidrro_el0, other vCPU registers).
        prop_assert_eq!(&ctx_after[user_context::LEN - 2..], &ctx[user_context::LEN - 2..]);
        for f in 0..vcpu_reg::NUM {
            if !SYSREGS.iter().any(|r| vcpu_field(*r) == f) {
                prop_assert_eq!(regs_after[f as usize], regs[f as usize]);
            }
        }

        // The kernel traffic.
        let mut reads = 0;
        let mut writes = vec![];
        let mut sys_reads = BTreeSet::new();
        let mut sys_writes = BTreeSet::new();
        for inv in &log {
            match inv {
                Invocation::VmReadRegisters { vcpu: 0, .. } => reads += 1,
                Invocation::VmWriteRegisters { vcpu: 0, resume: false, regs } => {
                    writes.push(regs.len())
                }
                Invocation::VcpuReadReg { vcpu: 0, field } => {
                    prop_assert!(sys_reads.insert(*field), "read twice: {:?}", log);
                }
                Invocation::VcpuWriteReg { vcpu: 0, field, .. } => {
                    prop_assert!(sys_writes.insert(*field), "written twice: {:?}", log);
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert_eq!(reads, usize::from(must_read), "ReadRegisters: {:?}", log);
        prop_assert_eq!(writes, dirty_top.map(|t| t + 1).into_iter().collect::<Vec<_>>());
        let field = |r: &usize| vcpu_field(SYSREGS[*r]);
        prop_assert_eq!(sys_reads, sys_read_first.iter().map(field).collect::<BTreeSet<_>>());
        prop_assert_eq!(sys_writes, sys_set.iter().map(field).collect::<BTreeSet<_>>());

        // A second flush has nothing left to do.
        prop_assert_eq!(lazy.flush(), Ok(log.len() as u32));
        prop_assert!(sim.take_log().is_empty());
        prop_assert!(sim.violations().is_empty());
    }
}

/// An SMC firmware call announces x0..x3 (as the classification does) and reads them in
/// ascending order: one ReadRegisters, not four.
#[test]
fn ascending_reads_cost_one_read_registers() {
    let ctx: [u64; user_context::LEN] = core::array::from_fn(|i| 100 + i as u64);
    let sim = sim_with(ctx, &[0; vcpu_reg::NUM as usize]);
    let mut lazy = LazyVcpu::new(sim.kernel(), Child::new(0));
    lazy.expect_gprs(0b1111);
    for n in 0..4 {
        assert_eq!(lazy.gpr(n), Ok(ctx[3 + n as usize]));
    }
    assert_eq!(lazy.pc(), Ok(100));
    let reads = sim
        .take_log()
        .iter()
        .filter(|i| matches!(i, Invocation::VmReadRegisters { .. }))
        .count();
    assert_eq!(reads, 1);
}

/// An MMIO read into x0 (the transfer register announced, as the emulator does): the read and
/// the write-back move pc, sp, spsr and x0 only, not the first eleven words.
#[test]
fn an_mmio_read_into_x0_moves_four_words() {
    let ctx: [u64; user_context::LEN] = core::array::from_fn(|i| 100 + i as u64);
    let sim = sim_with(ctx, &[0; vcpu_reg::NUM as usize]);
    let mut lazy = LazyVcpu::new(sim.kernel(), Child::new(0));
    lazy.begin();
    lazy.seed(user_context::PC, 100);
    lazy.expect_gprs(1 << 0);
    lazy.set_gpr(0, 0x90).unwrap();
    lazy.set_pc(104).unwrap();
    assert_eq!(lazy.flush(), Ok(2));
    assert_eq!(
        sim.take_log(),
        [
            Invocation::VmReadRegisters { vcpu: 0, count: 4 },
            Invocation::VmWriteRegisters {
                vcpu: 0,
                resume: false,
                regs: vec![104, 101, 102, 0x90],
            }
        ]
    );
}

#[test]
fn registers_seeded_from_the_fault_message_are_never_read() {
    let sim = sim_with([7; user_context::LEN], &[0; vcpu_reg::NUM as usize]);
    let mut lazy = LazyVcpu::new(sim.kernel(), Child::new(0));
    // An HVC's message: x0..x7, pc, sp, spsr.
    for i in 0..=10 {
        lazy.seed(i, 1000 + i as u64);
    }
    assert_eq!(lazy.gpr(7), Ok(1010));
    assert_eq!(lazy.pc(), Ok(1000));
    lazy.set_gpr(0, 1).unwrap();
    lazy.set_pc(1004).unwrap();
    assert_eq!(lazy.flush(), Ok(1));
    assert_eq!(
        sim.take_log(),
        [Invocation::VmWriteRegisters {
            vcpu: 0,
            resume: false,
            regs: vec![1004, 1001, 1002, 1],
        }]
    );
    // Seeding an index past the context is ignored, not a panic.
    lazy.seed(user_context::LEN, 1);
    lazy.seed(usize::MAX, 1);
}

/// The guest's current stack pointer: SP_EL1 (a vCPU register) at EL1h, SP_EL0 (the TCB's `sp`)
/// at EL1t or EL0.
#[test]
fn sp_follows_the_guest_stack_pointer_selection() {
    for (pstate, want_el1) in [(0x3c5u64, true), (0x3c4, false), (0x3c0, false)] {
        let mut ctx = [0u64; user_context::LEN];
        ctx[user_context::SP] = 0x5000;
        ctx[user_context::SPSR] = pstate;
        let mut regs = [0u64; vcpu_reg::NUM as usize];
        regs[vcpu_reg::SP_EL1 as usize] = 0x5100;
        let sim = sim_with(ctx, &regs);
        let mut lazy = LazyVcpu::new(sim.kernel(), Child::new(0));
        let want = if want_el1 { 0x5100 } else { 0x5000 };
        assert_eq!(lazy.sp(), Ok(want), "pstate {pstate:#x}");
        lazy.set_sp(0xabc0).unwrap();
        lazy.flush().unwrap();
        let (c, r) = sim.with_vcpu(0, |v| (v.context, v.regs));
        if want_el1 {
            assert_eq!(
                (r[vcpu_reg::SP_EL1 as usize], c[user_context::SP]),
                (0xabc0, 0x5000)
            );
        } else {
            assert_eq!(
                (r[vcpu_reg::SP_EL1 as usize], c[user_context::SP]),
                (0x5100, 0xabc0)
            );
        }
    }
}

#[test]
fn a_kernel_refusal_is_a_typed_error() {
    // vCPU 4 is not in the VMM's scope (its VM has 0..3): the kernel refuses with an invalid
    // capability.
    let sim = Sim::from_repo_system("vmm");
    let mut lazy: LazyVcpu<SimKernel> = LazyVcpu::new(sim.kernel(), Child::new(4));
    assert_eq!(
        lazy.gpr(0),
        Err(VcpuError::Kernel(error::INVALID_CAPABILITY))
    );
    assert_eq!(
        lazy.sysreg(SysReg::VbarEl1),
        Err(VcpuError::Kernel(error::INVALID_CAPABILITY))
    );
    assert_eq!(lazy.gpr(31), Err(VcpuError::BadRegister(31)));
    assert_eq!(lazy.set_gpr(40, 0), Err(VcpuError::BadRegister(40)));
    lazy.set_pc(4).unwrap();
    assert_eq!(
        lazy.flush(),
        Err(VcpuError::Kernel(error::INVALID_CAPABILITY))
    );
    assert_eq!(sim.violations().len(), 3, "{:?}", sim.violations());
}
