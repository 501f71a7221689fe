//! The VMM PD with an SMP guest, driven through its Microkit interface against the simulated
//! kernel with exactly system.xml's scope (four vCPUs): PSCI CPU_ON / CPU_OFF / AFFINITY_INFO
//! (DEN0022 1.1) per vCPU, exits of any vCPU handled with that vCPU's registers, banked
//! distributor registers, an SGI into another vCPU's list registers that wakes it from WFI, and
//! one wake-up timer shared by every parked vCPU.

mod common;

use common::*;
use microkit_rt::Child;
use microkit_rt::abi::{user_context, vcpu_reg};
use microkit_sim::Invocation;
use vmm::VmState;
use vmm_core::psci::PowerState;

// PSCI 1.1 function ids and return codes (DEN0022, tables 5.x and 4.x).
const CPU_OFF: u64 = 0x8400_0002;
const CPU_ON_64: u64 = 0xc400_0003;
const AFFINITY_INFO_64: u64 = 0xc400_0004;
const SUCCESS: u64 = 0;
const INVALID_PARAMETERS: u64 = -2i64 as u64;
const ALREADY_ON: u64 = -4i64 as u64;
const INVALID_ADDRESS: u64 = -9i64 as u64;

/// Where secondary vCPUs start (guest RAM, 4-aligned).
const SECONDARY_ENTRY: u64 = 0x4009_0000;
const WFI: u64 = (0x01 << 26) | (1 << 25);
/// GICD_SGIR (offset 0xf00).
const GICD_SGIR: u64 = GICD + 0xf00;

fn vcpu(v: u8) -> Child {
    vmm::VCPUS[usize::from(v)]
}

/// vCPU `v`'s `x<n>`.
fn x_of(h: &Harness, v: u8, n: u8) -> u64 {
    h.sim
        .with_vcpu(v, |c| c.context[user_context::gpr_index(n).unwrap()])
}

/// One fault of vCPU `v` through the event loop; every invocation it caused, the reply included.
fn exit_from(h: &mut Harness, v: u8, label: u64, words: &[u64]) -> Vec<Invocation> {
    h.sim.take_log();
    h.sim.fault(vcpu(v), label, words);
    h.el.step(&mut h.vmm);
    h.next_receive();
    h.sim.take_log()
}

/// vCPU `v` calls PSCI function `fid` with x1..x3 through HVC at its current PC; returns the log.
fn psci(h: &mut Harness, v: u8, fid: u64, args: [u64; 3]) -> Vec<Invocation> {
    let pc = h.sim.with_vcpu(v, |c| c.context[user_context::PC]);
    let mut x = [0u64; 8];
    x[0] = fid;
    x[1..4].copy_from_slice(&args);
    h.sim.with_vcpu(v, |c| {
        for (n, &val) in x.iter().enumerate() {
            c.context[user_context::gpr_index(n as u8).unwrap()] = val;
        }
    });
    exit_from(h, v, label::UNKNOWN_SYSCALL, &hvc_words(x, pc, SP0, EL1H))
}

/// vCPU 0 starts vCPU `target` at [`SECONDARY_ENTRY`] with x0 = `context`; returns the log.
fn cpu_on(h: &mut Harness, target: u64, context: u64) -> Vec<Invocation> {
    let log = psci(h, 0, CPU_ON_64, [target, SECONDARY_ENTRY, context]);
    assert_eq!(x_of(h, 0, 0), SUCCESS, "{log:?}");
    log
}

/// [`assert_resumed`] for vCPU 0's exit, after taking out what it did to other vCPUs (started
/// one, put an interrupt into one's list registers, resumed one): those are the test's to check.
fn assert_resumed_0(log: &[Invocation], ctx_after: &[u64]) -> ResumeShape {
    let own: Vec<_> = log
        .iter()
        .filter(|i| match i {
            Invocation::VcpuWriteReg { vcpu, .. }
            | Invocation::VmWriteRegisters { vcpu, .. }
            | Invocation::VcpuInjectIrq { vcpu, .. }
            | Invocation::VmResume(vcpu) => *vcpu == 0,
            _ => true,
        })
        .cloned()
        .collect();
    assert_resumed(&own, ctx_after)
}

/// vCPU `v` executes WFI at `pc`: the log.
fn wfi(h: &mut Harness, v: u8, pc: u64) -> Vec<Invocation> {
    h.sim.with_vcpu(v, |c| c.context[user_context::PC] = pc);
    exit_from(h, v, label::VCPU_FAULT, &[WFI])
}

#[test]
fn cpu_on_starts_the_target_in_the_boot_state_and_answers_the_caller() {
    let mut h = Harness::running();
    let log = cpu_on(&mut h, 1, 0xc0de);
    // The target: SCTLR_EL1 with the MMU and caches off, then pc = entry, sp = 0, EL1h with
    // DAIF masked, x0 = the context id, x1..x3 = 0 (PSCI's CPU_ON entry state), then resumed.
    let target: Vec<_> = log
        .iter()
        .filter(|i| {
            matches!(
                i,
                Invocation::VcpuWriteReg { vcpu: 1, .. }
                    | Invocation::VmWriteRegisters { vcpu: 1, .. }
                    | Invocation::VmResume(1)
            )
        })
        .cloned()
        .collect();
    assert_eq!(
        target,
        [
            Invocation::VcpuWriteReg {
                vcpu: 1,
                field: vcpu_reg::SCTLR,
                value: SCTLR_MMU_OFF,
            },
            Invocation::VmWriteRegisters {
                vcpu: 1,
                resume: false,
                regs: vec![SECONDARY_ENTRY, 0, EL1H, 0xc0de, 0, 0, 0],
            },
            Invocation::VmResume(1),
        ],
        "{log:?}"
    );
    assert!(h.sim.with_vcpu(1, |c| c.running));
    // The caller: SUCCESS, past its HVC, answered in the fault reply.
    let shape = assert_resumed_0(&log, &h.ctx());
    assert!(
        shape.written.is_none() && shape.replied.is_some(),
        "{log:?}"
    );
    assert_eq!(h.pc(), PC0 + 4);
    assert_eq!(h.vmm.vcpu_power(1), Some(PowerState::On));
    // Nothing touched the vCPUs nobody named.
    for v in [2u8, 3] {
        assert!(!log.iter().any(|i| matches!(i,
            Invocation::VmResume(n) | Invocation::VmWriteRegisters { vcpu: n, .. } if *n == v)));
        assert_eq!(h.vmm.vcpu_power(usize::from(v)), Some(PowerState::Off));
    }
    assert!(h.sim.violations().is_empty(), "{:?}", h.sim.violations());
}

#[test]
fn cpu_on_refuses_what_psci_refuses_and_starts_nothing() {
    let mut h = Harness::running();
    cpu_on(&mut h, 2, 0);
    for (target, entry, want) in [
        (2, SECONDARY_ENTRY, ALREADY_ON),              // running already
        (0, SECONDARY_ENTRY, ALREADY_ON),              // the caller itself
        (4, SECONDARY_ENTRY, INVALID_PARAMETERS),      // the VM has vCPUs 0..3
        (1 << 8, SECONDARY_ENTRY, INVALID_PARAMETERS), // Aff1 names no vCPU
        (1, SECONDARY_ENTRY + 2, INVALID_ADDRESS),     // not 4-aligned
        (1, 0x1000, INVALID_ADDRESS),                  // outside guest RAM
    ] {
        let log = psci(&mut h, 0, CPU_ON_64, [target, entry, 0]);
        assert_eq!(
            x_of(&h, 0, 0),
            want,
            "CPU_ON({target:#x}, {entry:#x}): {log:?}"
        );
        assert!(
            !log.iter().any(|i| matches!(i, Invocation::VmResume(_))),
            "{log:?}"
        );
        assert_resumed(&log, &h.ctx());
    }
    assert_eq!(h.vmm.vcpu_power(1), Some(PowerState::Off));
}

#[test]
fn a_secondary_vcpus_exit_uses_its_own_registers_and_banked_distributor_state() {
    let mut h = Harness::running();
    cpu_on(&mut h, 3, 0);
    h.sim.with_vcpu(3, |c| c.context = guest_context());
    h.sim.with_vcpu(0, |c| c.context = guest_context());
    // vCPU 3 reads GICD_TYPER into x5 and GICD_ITARGETSR0 (its own banked targets) into x6.
    let log = exit_from(
        &mut h,
        3,
        label::VM_FAULT,
        &[PC0, GICD + 4, 0, dabt(2, 5, false, false)],
    );
    assert!(
        log.iter().all(|i| match i {
            Invocation::VmReadRegisters { vcpu, .. }
            | Invocation::VmWriteRegisters { vcpu, .. } => *vcpu == 3,
            _ => true,
        }),
        "{log:?}"
    );
    // ITLinesNumber 7 (256 IDs), CPUNumber = 4 - 1.
    assert_eq!(x_of(&h, 3, 5), 7 | 3 << 5);
    assert_eq!(h.sim.with_vcpu(3, |c| c.context[user_context::PC]), PC0 + 4);
    exit_from(
        &mut h,
        3,
        label::VM_FAULT,
        &[PC0 + 4, GICD + 0x800, 0, dabt(2, 6, false, false)],
    );
    assert_eq!(x_of(&h, 3, 6), 0x0808_0808, "CPU 3's bit in every byte");
    // vCPU 0 was not touched and reads its own bit.
    assert_eq!(h.pc(), PC0);
    h.load(PC0, GICD + 0x800, 2, 6);
    assert_eq!(h.x(6), 0x0101_0101);
    assert_eq!(h.vmm.vcpu_exits(3), 2);
    assert_eq!(h.vmm.vcpu_exits(1), 0);
}

#[test]
fn an_sgi_to_a_parked_vcpu_goes_into_its_list_registers_and_wakes_it() {
    let mut h = Harness::running();
    h.store(PC0, GICD, 2, 1, 1); // GICD_CTLR: group 0 on
    cpu_on(&mut h, 1, 0);
    // vCPU 1 waits in WFI with its timer off: parked, no deadline.
    let log = wfi(&mut h, 1, SECONDARY_ENTRY);
    assert!(log.contains(&Invocation::VmSuspend(1)), "{log:?}");
    assert!(!log.iter().any(|i| matches!(i, Invocation::Reply { .. })));
    assert!(h.vmm.vcpu_parked(1) && !h.vmm.parked());
    // vCPU 0 sends SGI 3 to vCPU 1 (TargetListFilter 0, CPUTargetList 0b10).
    let log = h.store(PC0, GICD_SGIR, 2, 1, 0b10 << 16 | 3);
    let inject = log
        .iter()
        .position(|i| {
            matches!(
                i,
                Invocation::VcpuInjectIrq {
                    vcpu: 1,
                    virq: 3,
                    ..
                }
            )
        })
        .unwrap_or_else(|| panic!("SGI 3 into vCPU 1's list registers: {log:?}"));
    let resume = log
        .iter()
        .position(|i| *i == Invocation::VmResume(1))
        .unwrap_or_else(|| panic!("vCPU 1 resumed: {log:?}"));
    assert!(inject < resume, "{log:?}");
    assert!(!h.vmm.vcpu_parked(1));
    assert!(h.sim.with_vcpu(1, |c| c.running));
    // Nothing for vCPU 0, which goes on past its store.
    assert!(
        !log.iter()
            .any(|i| matches!(i, Invocation::VcpuInjectIrq { vcpu: 0, .. }))
    );
    assert_resumed_0(&log, &h.ctx());
    // TargetListFilter 1 (all but self) from vCPU 1: vCPU 0 gets it, vCPU 1 does not, and the
    // vCPUs that are off are not resumed by it.
    h.sim.with_vcpu(1, |c| c.context = guest_context());
    h.sim.with_vcpu(1, |c| {
        c.context[user_context::gpr_index(2).unwrap()] = 1 << 24 | 5
    });
    let log = exit_from(
        &mut h,
        1,
        label::VM_FAULT,
        &[PC0, GICD_SGIR, 0, dabt(2, 2, false, true)],
    );
    assert!(
        log.iter().any(|i| matches!(
            i,
            Invocation::VcpuInjectIrq {
                vcpu: 0,
                virq: 5,
                ..
            }
        )),
        "{log:?}"
    );
    assert!(
        !log.iter()
            .any(|i| matches!(i, Invocation::VcpuInjectIrq { vcpu: 1, .. }))
    );
    assert!(!log.iter().any(|i| matches!(i, Invocation::VmResume(_))));
    assert!(h.sim.violations().is_empty(), "{:?}", h.sim.violations());
}

#[test]
fn one_wake_up_timer_serves_every_parked_vcpu_earliest_deadline_first() {
    let mut h = Harness::running();
    cpu_on(&mut h, 1, 0);
    h.sim.set_timer_now(1_000);
    // vCPU 0's virtual timer is due at 5000, vCPU 1's at 3000 (CNTVOFF 0: CNTPCT = CNTVCT).
    for (v, cval) in [(0u8, 5_000u64), (1, 3_000)] {
        h.sim.with_vcpu(v, |c| {
            c.regs[vcpu_reg::CNTV_CVAL as usize] = cval;
            c.regs[vcpu_reg::CNTV_CTL as usize] = 1;
        });
    }
    let log = wfi(&mut h, 0, PC0);
    assert!(
        log.ends_with(&[Invocation::VmSuspend(0), set_timeout(1_000, 5_000)]),
        "{log:?}"
    );
    // An earlier deadline replaces the pending timeout (one per client).
    let log = wfi(&mut h, 1, SECONDARY_ENTRY);
    assert!(
        log.ends_with(&[Invocation::VmSuspend(1), set_timeout(1_000, 3_000)]),
        "{log:?}"
    );
    // At 3000 only vCPU 1 is due: it runs again, and the timer driver is asked for vCPU 0's
    // deadline.
    h.sim.set_timer_now(3_000);
    let log = h.timer_notified();
    assert_eq!(
        log[..2],
        [Invocation::VmResume(1), set_timeout(3_000, 5_000)],
        "{log:?}"
    );
    assert!(h.vmm.parked() && !h.vmm.vcpu_parked(1));
    // At 5000 vCPU 0; nothing more to ask for.
    h.sim.set_timer_now(5_000);
    let log = h.timer_notified();
    assert_eq!(log[..1], [Invocation::VmResume(0)], "{log:?}");
    assert!(!calls_timer(&log), "{log:?}");
    assert!(!h.vmm.parked());
    assert_eq!(h.vmm.glue_stats().timer_wakes, 2);
}

#[test]
fn cpu_off_stops_the_caller_affinity_info_sees_it_and_cpu_on_restarts_it() {
    let mut h = Harness::running();
    cpu_on(&mut h, 1, 0);
    h.sim.with_vcpu(1, |c| c.context = guest_context());
    // CPU_OFF does not return: suspended, no reply (the suspension cancels it).
    let log = psci(&mut h, 1, CPU_OFF, [0; 3]);
    assert!(log.contains(&Invocation::VmSuspend(1)), "{log:?}");
    assert!(
        !log.iter().any(|i| matches!(i, Invocation::Reply { .. })),
        "{log:?}"
    );
    assert!(!h.sim.with_vcpu(1, |c| c.running));
    assert_eq!(h.vmm.vcpu_power(1), Some(PowerState::Off));
    assert_eq!(h.vmm.state(), VmState::Running);
    // AFFINITY_INFO (level 0): vCPU 1 OFF (1), vCPU 0 ON (0), an unknown MPIDR refused.
    for (target, want) in [(1, 1), (0, 0), (7, INVALID_PARAMETERS)] {
        psci(&mut h, 0, AFFINITY_INFO_64, [target, 0, 0]);
        assert_eq!(x_of(&h, 0, 0), want, "AFFINITY_INFO({target})");
    }
    // On again, at another entry with another context id.
    let log = psci(&mut h, 0, CPU_ON_64, [1, SECONDARY_ENTRY + 0x40, 7]);
    assert_eq!(x_of(&h, 0, 0), SUCCESS);
    assert!(log.contains(&Invocation::VmWriteRegisters {
        vcpu: 1,
        resume: false,
        regs: vec![SECONDARY_ENTRY + 0x40, 0, EL1H, 7, 0, 0, 0],
    }));
    assert!(h.sim.with_vcpu(1, |c| c.running));
    // Both off, vCPU 0 last: nothing can power a vCPU on again, so the VM has ended.
    psci(&mut h, 1, CPU_OFF, [0; 3]);
    assert_eq!(h.vmm.state(), VmState::Running);
    psci(&mut h, 0, CPU_OFF, [0; 3]);
    assert_eq!(h.vmm.state(), VmState::Off);
    assert!(
        h.sim
            .console()
            .contains("vmm: every vCPU is off (PSCI CPU_OFF): the VM ended")
    );
    assert!(
        h.sim
            .console()
            .contains("vmm: vCPUs: cpu-ons=2 exits per vCPU: 0=")
    );
    assert!(h.sim.violations().is_empty(), "{:?}", h.sim.violations());
}

#[test]
fn a_vcpu_that_cannot_be_started_is_reported_as_internal_failure_and_stays_off() {
    // The kernel refuses every invocation on vCPU 2.
    let mut h = Harness::running();
    h.sim.refuse_vcpu(2);
    let log = psci(&mut h, 0, CPU_ON_64, [2, SECONDARY_ENTRY, 0]);
    assert_eq!(x_of(&h, 0, 0), -6i64 as u64, "INTERNAL_FAILURE: {log:?}");
    assert_eq!(h.vmm.vcpu_power(2), Some(PowerState::Off));
    assert!(
        h.sim
            .console()
            .contains("vmm: PSCI CPU_ON: cannot start vCPU 2")
    );
    assert_eq!(h.vmm.state(), VmState::Running);
    assert_resumed(&log, &h.ctx());
}

// ---------------------------------------------------------------------------------------------
// A reference model of who runs: random SMP guests against the VMM's promises
// ---------------------------------------------------------------------------------------------

use proptest::prelude::*;
use std::collections::BTreeSet;

/// One step of a random SMP guest. vCPU numbers are taken modulo 4 and, for a step that needs a
/// running vCPU, moved to the next running one (only a running vCPU can fault).
#[derive(Debug, Clone)]
enum Step {
    /// PSCI CPU_ON of `target` from a running vCPU.
    CpuOn { from: u8, target: u8 },
    /// PSCI CPU_OFF of a running vCPU.
    CpuOff { v: u8 },
    /// WFI of a running vCPU, its virtual timer off or due at `cval`.
    Wfi { v: u8, cval: Option<u16> },
    /// GICD_SGIR from a running vCPU: SGI `id` to the vCPUs in `targets`.
    Sgi { from: u8, targets: u8, id: u8 },
    /// The guest EOIs an interrupt in one of vCPU `v`'s list registers (a maintenance exit).
    Eoi { v: u8, pick: u8 },
    /// The wake-up timer's interrupt, the counter moved to `now`.
    Timer { now: u16 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (any::<u8>(), any::<u8>()).prop_map(|(from, target)| Step::CpuOn { from, target }),
        1 => any::<u8>().prop_map(|v| Step::CpuOff { v }),
        4 => (any::<u8>(), proptest::option::of(any::<u16>())).prop_map(|(v, cval)| Step::Wfi { v, cval }),
        4 => (any::<u8>(), 1u8..16, 0u8..16).prop_map(|(from, targets, id)| Step::Sgi { from, targets, id }),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(v, pick)| Step::Eoi { v, pick }),
        2 => any::<u16>().prop_map(|now| Step::Timer { now }),
    ]
}

/// What the model knows of each vCPU.
#[derive(Debug, Default, Clone)]
struct ModelCpu {
    on: bool,
    parked: bool,
    deadline: Option<u64>,
    /// List registers holding an interrupt (from the VMM's InjectIRQ calls, freed by EOIs).
    lrs: BTreeSet<u8>,
}

/// The running vCPU at or after `v` (cyclically), if any.
fn running(m: &[ModelCpu; 4], v: u8) -> Option<u8> {
    (0..4)
        .map(|i| (v % 4 + i) % 4)
        .find(|&i| m[usize::from(i)].on && !m[usize::from(i)].parked)
}

fn run_smp(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut h = Harness::running();
    h.store(PC0, GICD, 2, 1, 1); // GICD_CTLR: group 0 on
    let mut m: [ModelCpu; 4] = Default::default();
    m[0].on = true;
    let mut now = 0u64;
    h.sim.set_timer_now(now);
    // The timeout pending at the timer driver (the VMM's last SET_TIMEOUT, until notified).
    let mut pending: Option<u64> = None;
    for st in steps {
        let log = match *st {
            Step::CpuOn { from, target } => {
                let Some(from) = running(&m, from) else { break };
                let target = target % 4;
                h.sim.with_vcpu(from, |c| c.context[user_context::PC] = PC0);
                let log = psci(
                    &mut h,
                    from,
                    CPU_ON_64,
                    [u64::from(target), SECONDARY_ENTRY, 0],
                );
                let want = if m[usize::from(target)].on {
                    ALREADY_ON
                } else {
                    SUCCESS
                };
                prop_assert_eq!(x_of(&h, from, 0), want, "{:?}", log);
                if want == SUCCESS {
                    // An SGI sent while it was off stays in its list registers.
                    m[usize::from(target)].on = true;
                }
                log
            }
            Step::CpuOff { v } => {
                let Some(v) = running(&m, v) else { break };
                h.sim.with_vcpu(v, |c| c.context[user_context::PC] = PC0);
                let log = psci(&mut h, v, CPU_OFF, [0; 3]);
                m[usize::from(v)].on = false;
                log
            }
            Step::Wfi { v, cval } => {
                let Some(v) = running(&m, v) else { break };
                h.sim.with_vcpu(v, |c| {
                    c.regs[vcpu_reg::CNTV_CTL as usize] = u64::from(cval.is_some());
                    c.regs[vcpu_reg::CNTV_CVAL as usize] = cval.map_or(0, u64::from);
                });
                let log = wfi(&mut h, v, PC0);
                let cpu = &mut m[usize::from(v)];
                // Parks unless an interrupt is in its list registers or its timer is due.
                let due = cval.is_some_and(|c| u64::from(c) <= now);
                if cpu.lrs.is_empty() && !due {
                    cpu.parked = true;
                    cpu.deadline = cval.map(u64::from);
                }
                log
            }
            Step::Sgi { from, targets, id } => {
                let Some(from) = running(&m, from) else { break };
                h.sim.with_vcpu(from, |c| {
                    c.context[user_context::gpr_index(1).unwrap()] =
                        u64::from(targets) << 16 | u64::from(id)
                });
                exit_from(
                    &mut h,
                    from,
                    label::VM_FAULT,
                    &[PC0, GICD_SGIR, 0, dabt(2, 1, false, true)],
                )
            }
            Step::Eoi { v, pick } => {
                let Some(v) = running(&m, v) else { break };
                let lrs = &m[usize::from(v)].lrs;
                let Some(&lr) = lrs.iter().nth(usize::from(pick) % lrs.len().max(1)) else {
                    continue;
                };
                m[usize::from(v)].lrs.remove(&lr);
                exit_from(&mut h, v, label::VGIC_MAINTENANCE, &[u64::from(lr)])
            }
            Step::Timer { now: t } => {
                now = now.max(u64::from(t));
                h.sim.set_timer_now(now);
                let log = h.timer_notified();
                // The driver notified: its timeout is gone.
                pending = None;
                for cpu in m.iter_mut().filter(|c| c.parked) {
                    if cpu.deadline.is_some_and(|d| d <= now) {
                        cpu.parked = false;
                        cpu.deadline = None;
                    }
                }
                log
            }
        };
        prop_assert!(h.sim.violations().is_empty(), "{:?}", h.sim.violations());
        // The list registers the VMM filled; a parked vCPU given an interrupt wakes.
        for inv in &log {
            if let Some(d) = timeout_deadline(std::slice::from_ref(inv), now) {
                pending = Some(d);
            }
            if let Invocation::VcpuInjectIrq { vcpu, index, .. } = *inv {
                let cpu = &mut m[usize::from(vcpu)];
                prop_assert!(
                    cpu.lrs.insert(index),
                    "LR {} of vCPU {} in use: {:?}",
                    index,
                    vcpu,
                    log
                );
                if cpu.parked {
                    cpu.parked = false;
                    cpu.deadline = None;
                }
            }
        }
        // Who runs is what the model says, in the VMM and in the kernel.
        for v in 0..4u8 {
            let cpu = &m[usize::from(v)];
            let runs = h.sim.with_vcpu(v, |c| c.running);
            prop_assert_eq!(
                h.vmm.vcpu_parked(usize::from(v)),
                cpu.parked,
                "vCPU {} parked, after {:?}: {:?}",
                v,
                st,
                log
            );
            prop_assert_eq!(
                runs,
                cpu.on && !cpu.parked,
                "vCPU {} running, after {:?}: {:?}",
                v,
                st,
                log
            );
            let power = h.vmm.vcpu_power(usize::from(v));
            prop_assert_eq!(power == Some(PowerState::On), cpu.on);
        }
        // A timeout is pending at the timer driver no later than the earliest deadline of the
        // parked vCPUs (so that one wakes in time; an earlier one is a timeout asked for a vCPU
        // that resumed meanwhile: the protocol has no cancel, its notification re-arms).
        let want = m
            .iter()
            .filter(|c| c.parked)
            .filter_map(|c| c.deadline)
            .min();
        if let Some(w) = want {
            prop_assert!(
                pending.is_some_and(|p| p <= w),
                "timeout pending at {:?}, earliest parked deadline {}, after {:?}: {:?}",
                pending,
                w,
                st,
                log
            );
        }
        if m.iter().all(|c| !c.on) {
            prop_assert_eq!(h.vmm.state(), VmState::Off);
            break;
        }
        prop_assert_eq!(h.vmm.state(), VmState::Running);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random SMP guests (CPU_ON/OFF, WFI with and without a timer, SGIs between vCPUs, EOIs,
    /// the wake-up timer) against a model of who runs: a vCPU runs exactly when it is powered on
    /// and not parked, parks on WFI only with empty list registers and no timer due, wakes when
    /// an interrupt enters its list registers or its deadline passes, and the wake-up timer is
    /// armed at the earliest deadline of the parked vCPUs.
    #[test]
    fn who_runs_matches_the_model(steps in proptest::collection::vec(step(), 1..60)) {
        run_smp(&steps)?;
    }
}

/// The repository's system.xml without the VMM's right to call the timer driver (its channel
/// stays, notifications only: a system description that gives a VMM no wake-up timer).
fn sim_without_wakeup_timer() -> microkit_sim::Sim {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system.xml");
    let text = std::fs::read_to_string(path).unwrap();
    let pp = r#"<end pd="vmm" id="6" pp="true" />"#;
    assert!(
        text.contains(pp),
        "system.xml lets the vmm call timer_driver on channel 6"
    );
    let sys = sdf::parse(&text.replace(pp, r#"<end pd="vmm" id="6" />"#)).unwrap();
    microkit_sim::Sim::new(&sys, "vmm").unwrap()
}

#[test]
fn without_the_wake_up_timer_a_vcpu_waiting_for_its_timer_is_not_parked() {
    let mut h = Harness::start_in(sim_without_wakeup_timer(), None, |s| s.kernel(), blobs());
    assert!(
        h.sim
            .console()
            .contains("vmm: no wake-up timer (no protected call to timer_driver on channel 6)")
    );
    h.sim.take_log();
    h.sim.with_vcpu(0, |v| v.context = guest_context());
    h.sim.set_timer_now(1_000);
    // Its virtual timer due at 5000: nothing could wake it then, so it resumes at once.
    h.sim.with_vcpu(0, |c| {
        c.regs[vcpu_reg::CNTV_CVAL as usize] = 5_000;
        c.regs[vcpu_reg::CNTV_CTL as usize] = 1;
    });
    let log = wfi(&mut h, 0, PC0);
    assert!(!log.contains(&Invocation::VmSuspend(0)), "{log:?}");
    assert!(!calls_timer(&log), "{log:?}");
    assert!(!h.vmm.parked());
    // Its timer off: it waits for a device's interrupt, parked as before, the timer untouched.
    h.sim
        .with_vcpu(0, |c| c.regs[vcpu_reg::CNTV_CTL as usize] = 0);
    let log = wfi(&mut h, 0, PC0);
    assert!(log.contains(&Invocation::VmSuspend(0)), "{log:?}");
    assert!(!calls_timer(&log), "{log:?}");
    assert!(h.vmm.parked());
    assert!(h.sim.violations().is_empty(), "{:?}", h.sim.violations());
}
