//! Hostile input: random fault messages (labels, lengths, words), random guest register state and
//! faults badged for children the VMM does not have, all through the real event loop. Whatever
//! arrives, the VMM never panics, never touches a resource outside its system.xml scope, answers
//! every fault of its running vCPU exactly once (a reply, or a stop with VmSuspend and no reply),
//! and counts each exit's kernel invocations truthfully.

mod common;

use common::*;
use microkit_rt::SharedRegion;
use microkit_rt::abi::{MSG_MAX_LENGTH, MessageInfo, user_context, vcpu_reg};
use microkit_sim::{Invocation, Sim};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeSet;
use vmm::VmState;

thread_local! {
    /// One guest RAM buffer for every case: the VMM's loader writes the same guest into it each
    /// time and a guest fault can only write the write-protected page, a region of its own.
    static RAM: SharedRegion = Sim::from_repo_system("vmm")
        .region("guest_ram")
        .expect("vmm maps guest_ram");
}

#[derive(Debug, Clone)]
enum Event {
    /// A fault of vCPU 0 with this label and these words.
    Fault(u64, Vec<u64>),
    /// A fault of vCPU 0 whose message info claims `len` words (the rest are stale registers).
    Lying(u64, usize, Vec<u64>),
    /// A fault badged for a child that is none of the VM's vCPUs (0..=3).
    OtherChild(u64, u64, Vec<u64>),
    /// The guest ran on: one user-context register changed.
    Context(usize, u64),
}

fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (0u64..0x1000).prop_map(|o| PL011 + o),
        (0u64..0x1000).prop_map(|o| TESTDEV + o),
        (0u64..0x1_0000).prop_map(|o| GICD + o),
        (0u64..0x1000).prop_map(|o| WP_PAGE + o),
        (0u64..0x1000_0000).prop_map(|o| RAM_GPA + o),
        prop::sample::select(vec![
            0,
            UNBACKED,
            PL011 - 1,
            PL011 + 0xffc,
            TESTDEV + 0xff,
            TESTDEV + 0xfff,
            GICD + 0xffff,
            WP_PAGE - 4,
            WP_PAGE + 0xffc,
            WP_PAGE + 0xfff,
            RAM_GPA + 0x0fff_fffc,
            0x0801_0000,
            u64::MAX,
        ]),
    ]
}

fn ip() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (0u64..0x400).prop_map(|i| PC0 - 0x200 * 4 + 4 * i), // inside the Image, mostly
        1 => any::<u64>(),
    ]
}

fn iss() -> impl Strategy<Value = u64> {
    any::<u32>().prop_map(|i| u64::from(i) & 0x01ff_ffff)
}

fn fault() -> impl Strategy<Value = (u64, Vec<u64>)> {
    let words = |n| prop::collection::vec(any::<u64>(), n);
    prop_oneof![
        // Anything at all.
        1 => (any::<u64>(), words(0..=20)),
        // A fault label with any number of any words.
        1 => (0u64..=10, words(0..=20)),
        // VM faults: an abort syndrome (or any EC) with any ISS at an interesting address.
        2 => (
            ip(),
            addr(),
            prop_oneof![4 => 0u64..=1, 1 => any::<u64>()],
            prop_oneof![6 => Just(0x24u64), 1 => Just(0x20u64), 1 => 0u64..64],
            iss()
        )
            .prop_map(|(ip, addr, pf, ec, iss)| {
                (label::VM_FAULT, vec![ip, addr, pf, (ec << 26) | (1 << 25) | iss])
            }),
        // Well-formed data aborts with a valid syndrome.
        12 => (ip(), addr(), 0u64..4, 0u8..32, any::<bool>(), any::<bool>()).prop_map(
            |(ip, addr, sas, srt, sf, wnr)| {
                // SF = 0 with a 64-bit access is a syndrome no hardware makes (a hypervisor
                // fault, covered above): keep this family valid so that exits go on.
                let sf = sf || sas == 3;
                (label::VM_FAULT, vec![ip, addr, 0, dabt(sas, srt, sf, wnr)])
            }
        ),
        // HVC with PSCI / SMCCC function ids or anything.
        3 => (
            prop_oneof![
                0x8400_0000u64..0x8400_0020,
                0xc400_0000u64..0xc400_0020,
                0x8000_0000u64..0x8000_0010,
                any::<u64>()
            ],
            words(12..=12)
        )
            .prop_map(|(x0, rest)| {
                let mut w = vec![x0];
                w.extend(rest);
                (label::UNKNOWN_SYSCALL, w)
            }),
        // Any other trap: SMC, WFx, system registers, unknown classes.
        2 => (0u64..64, iss()).prop_map(|(ec, iss)| (label::VCPU_FAULT, vec![
            (ec << 26) | (1 << 25) | iss
        ])),
        // vGIC maintenance and virtual PPIs.
        1 => prop_oneof![0u64..8, Just(u64::MAX), any::<u64>()]
            .prop_map(|lr| (label::VGIC_MAINTENANCE, vec![lr])),
        2 => prop_oneof![4 => Just(27u64), 1 => 0u64..40, 1 => any::<u64>()]
            .prop_map(|irq| (label::VPPI_EVENT, vec![irq])),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        12 => fault().prop_map(|(l, w)| Event::Fault(l, w)),
        1 => (fault(), 0..=MSG_MAX_LENGTH + 8).prop_map(|((l, w), n)| Event::Lying(l, n, w)),
        1 => (vmm::VCPUS.len() as u64..=255, fault()).prop_map(|(c, (l, w))| Event::OtherChild(c, l, w)),
        2 => (0..user_context::LEN, any::<u64>()).prop_map(|(i, v)| Event::Context(i, v)),
    ]
}

/// A running guest's user context, and its vCPU registers, perturbed at random.
fn guest_state() -> impl Strategy<Value = ([u64; user_context::LEN], Vec<u64>)> {
    (
        prop_oneof![
            8 => Just(EL1H),
            2 => Just(0x3c4u64),
            2 => Just(0x3c0u64),
            1 => Just(0x10u64),
            1 => any::<u64>()
        ],
        prop_oneof![
            6 => Just(SCTLR_MMU_OFF),
            1 => Just(SCTLR_MMU_OFF | 1),
            1 => any::<u64>()
        ],
        prop::collection::vec(any::<u64>(), vcpu_reg::NUM as usize),
        prop::collection::vec((0..user_context::LEN, any::<u64>()), 0..3),
    )
        .prop_map(|(pstate, sctlr, mut regs, pokes)| {
            let mut ctx = guest_context();
            ctx[user_context::SPSR] = pstate;
            for (i, v) in pokes {
                ctx[i] = v;
            }
            regs[vcpu_reg::SCTLR as usize] = sctlr;
            (ctx, regs)
        })
}

fn deliver(h: &mut Harness, ev: &Event) -> Result<(), TestCaseError> {
    let was = h.vmm.state();
    let stats = h.vmm.stats().total();
    let vcpu_before = h.sim.with_vcpu(0, |v| v.clone());
    h.sim.take_log();
    match ev {
        Event::Context(i, v) => {
            h.sim.with_vcpu(0, |c| c.context[*i] = *v);
            return Ok(());
        }
        Event::Fault(l, w) => h.sim.fault(VCPU, *l, w),
        Event::Lying(l, n, w) => h.sim.raw_event(1 << 62, MessageInfo::new(*l, *n), w),
        Event::OtherChild(c, l, w) => {
            h.sim
                .raw_event(1 << 62 | c, MessageInfo::new(*l, w.len()), w)
        }
    }
    h.el.step(&mut h.vmm);
    h.next_receive();
    let log = h.sim.take_log();
    let now = h.vmm.state();
    prop_assert!(h.sim.violations().is_empty(), "{:?}", h.sim.violations());

    if matches!(ev, Event::OtherChild(..)) || was != VmState::Running {
        // Not this VM's fault, or a VM that no longer runs: nothing happens, nothing is counted.
        prop_assert!(log.is_empty(), "{:?}", log);
        prop_assert_eq!(now, was);
        prop_assert_eq!(h.vmm.stats().total(), stats);
        prop_assert_eq!(h.sim.with_vcpu(0, |v| v.clone()), vcpu_before);
        return Ok(());
    }
    prop_assert!(
        !log.iter().any(|i| matches!(
            i,
            Invocation::VmResume(_) | Invocation::VmWriteRegisters { resume: true, .. }
        )),
        "{:?}",
        log
    );
    prop_assert_eq!(h.vmm.stats().total().exits, stats.exits + 1);
    match now {
        // A WFI with nothing pending parks the vCPU: suspended instead of answered; the
        // wake-up timer's interrupt resumes it.
        VmState::Running if h.vmm.parked() => {
            prop_assert!(log.contains(&Invocation::VmSuspend(0)), "{:?}", log);
            let replied = log.iter().any(|i| matches!(i, Invocation::Reply { .. }));
            prop_assert!(!replied, "{:?}", log);
            prop_assert_eq!(
                h.vmm.stats().total().kernel_calls - stats.kernel_calls,
                kernel_calls(&log)
            );
            if let Some(wake) = h.wake_at_deadline(&log) {
                prop_assert!(wake.contains(&Invocation::VmResume(0)), "{:?}", wake);
            }
        }
        VmState::Running => {
            // Exactly one reply, last; at most one read and one write of the user context.
            assert_resumed(&log, &h.ctx());
            prop_assert_eq!(
                h.vmm.stats().total().kernel_calls - stats.kernel_calls,
                kernel_calls(&log),
                "{:?}",
                log
            );
        }
        VmState::Off | VmState::Stopped => {
            prop_assert!(log.contains(&Invocation::VmSuspend(0)), "{:?}", log);
            prop_assert!(
                !log.iter().any(|i| matches!(i, Invocation::Reply { .. })),
                "{:?}",
                log
            );
            prop_assert!(!h.sim.with_vcpu(0, |v| v.running));
            prop_assert!(h.sim.console().contains("vmm: trap statistics"));
        }
        VmState::NotStarted => prop_assert!(false, "a running VM cannot become NotStarted"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn hostile_faults_never_panic_never_leave_the_scope_and_are_answered_once(
        (ctx, regs) in guest_state(),
        events in prop::collection::vec(event(), 1..32),
    ) {
        let mut h = Harness::start_on(Some(RAM.with(Sim::alias)), |s| s.kernel(), blobs());
        prop_assert_eq!(h.vmm.state(), VmState::Running);
        h.sim.with_vcpu(0, |v| {
            v.context = ctx;
            v.regs.copy_from_slice(&regs);
        });
        for ev in &events {
            deliver(&mut h, ev)?;
        }
        prop_assert!(h.sim.violations().is_empty());
    }
}

/// The same, on a VMM that has no guest: no fault is handled and nothing is touched.
#[test]
fn without_a_guest_hostile_faults_are_all_ignored() {
    let h = RefCell::new(Harness::start_on(
        Some(RAM.with(Sim::alias)),
        |s| s.kernel(),
        no_blobs(),
    ));
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&prop::collection::vec(event(), 1..16), |events| {
            for ev in &events {
                deliver(&mut h.borrow_mut(), ev)?;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(h.borrow().vmm.state(), VmState::NotStarted);
}

// ---------------------------------------------------------------------------------------------
// A hostile guest: only what a guest can make the kernel deliver
// ---------------------------------------------------------------------------------------------

/// Something the guest does: a trap (with what the hardware and seL4 would report for it) or a
/// change of its own state between traps.
#[derive(Debug, Clone)]
enum GuestAct {
    /// A load or store with a valid syndrome at a guest-physical address stage 2 does not map.
    Access {
        addr: u64,
        sas: u64,
        srt: u8,
        sf: bool,
        sse: bool,
        wnr: bool,
    },
    /// A load or store without a valid syndrome (the instruction word is at the PC); or a cache
    /// maintenance instruction; or a stage-1 table walk that hit unmapped memory.
    Insn {
        insn: u32,
        addr: u64,
        wnr: bool,
        cm: bool,
        s1ptw: bool,
    },
    /// An instruction fetch from a guest-physical address nothing maps.
    Fetch(u64),
    /// `hvc #0` with these x0..x7.
    Hvc([u64; 8]),
    /// `smc #0` with x0 = this.
    Smc(u64),
    /// WFI / WFE (ISS.TI).
    Wfx(u64),
    /// A trapped MSR / MRS (any ISS: the guest chooses the register and Rt).
    SysReg(u64),
    /// The virtual timer fires.
    Timer,
    /// A word store to a distributor register (enable, pending, priority, group, ...).
    Gicd(u64, u64),
    /// The guest EOIs the interrupt in the `n`-th occupied list register: the kernel reports
    /// a maintenance fault for that list register.
    Eoi(usize),
    /// The guest ran: x<n> changed.
    Gpr(u8, u64),
    /// The guest is now in another valid mode, with these flags.
    Mode(u64),
    /// The guest wrote a system register.
    Sys(u64, u64),
    /// The guest moved to another instruction.
    Pc(u64),
}

fn in_ram(a: u64) -> bool {
    (RAM_GPA..RAM_GPA + 0x1000_0000).contains(&a)
}

/// A guest-physical address stage 2 does not map for the access (RAM and the GIC CPU interface
/// are mapped; the write-protected page is mapped for reads).
fn unmapped(wnr: bool) -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..0x1000).prop_map(|o| PL011 + o),
        (0u64..0x1000).prop_map(|o| TESTDEV + o),
        (0u64..0x1_0000).prop_map(|o| GICD + o),
        (0u64..0x1000).prop_map(|o| WP_PAGE + o),
        0u64..1 << 40,
    ]
    .prop_map(move |a| {
        if in_ram(a) || (0x0801_0000..0x0801_1000).contains(&a) {
            UNBACKED + (a & 0xfff)
        } else if !wnr && (WP_PAGE..WP_PAGE + 0x1000).contains(&a) {
            TESTDEV + (a & 0xfff)
        } else {
            a
        }
    })
}

fn psci_id() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0x8400_0000u64..0x8400_0016,
        2 => 0xc400_0000u64..0xc400_0016,
        1 => 0x8000_0000u64..0x8000_0004,
        1 => any::<u64>(),
    ]
}

fn guest_act() -> impl Strategy<Value = GuestAct> {
    prop_oneof![
        8 => (any::<bool>(), 0u64..4, 0u8..32, any::<bool>(), any::<bool>())
            .prop_flat_map(|(wnr, sas, srt, sf, sse)| {
                unmapped(wnr).prop_map(move |addr| GuestAct::Access {
                    addr,
                    sas,
                    srt,
                    sf: sf || sas == 3,
                    sse: sse && !wnr && sas < 3,
                    wnr,
                })
            }),
        3 => (any::<u32>(), any::<bool>(), prop_oneof![8 => Just(false), 1 => Just(true)],
              prop_oneof![8 => Just(false), 1 => Just(true)])
            .prop_flat_map(|(insn, wnr, cm, s1ptw)| {
                unmapped(wnr).prop_map(move |addr| GuestAct::Insn {
                    insn,
                    addr,
                    wnr: wnr || cm,
                    cm,
                    s1ptw,
                })
            }),
        3 => (prop_oneof![
                // The A64 loads and stores the decoder knows, with random operands.
                any::<u32>().prop_map(|r| 0xf800_0000 | (r & 0x00ff_ffff)),
                any::<u32>().prop_map(|r| 0xb800_0000 | (r & 0x00ff_ffff)),
                any::<u32>().prop_map(|r| 0xa900_0000 | (r & 0x00ff_ffff)),
                any::<u32>().prop_map(|r| 0x3900_0000 | (r & 0x00ff_ffff)),
              ], any::<bool>())
            .prop_flat_map(|(insn, wnr)| {
                unmapped(wnr).prop_map(move |addr| GuestAct::Insn {
                    insn,
                    addr,
                    wnr,
                    cm: false,
                    s1ptw: false,
                })
            }),
        1 => (0u64..1 << 40).prop_map(GuestAct::Fetch),
        3 => (psci_id(), prop::array::uniform7(any::<u64>())).prop_map(|(x0, r)| {
            let mut x = [x0; 8];
            x[1..].copy_from_slice(&r);
            GuestAct::Hvc(x)
        }),
        1 => psci_id().prop_map(GuestAct::Smc),
        1 => (0u64..4).prop_map(GuestAct::Wfx),
        1 => (0u64..1 << 25).prop_map(|iss| GuestAct::SysReg(iss & !(0b111 << 22))),
        2 => Just(GuestAct::Timer),
        2 => (
            prop::sample::select(vec![0x0u64, 0x80, 0x100, 0x180, 0x200, 0x280, 0x300, 0x380,
                                      0x418, 0x800, 0xf00]),
            prop_oneof![Just(1u64), Just(1 << 27), Just(3), any::<u32>().prop_map(u64::from)],
        )
            .prop_map(|(o, v)| GuestAct::Gicd(o, v)),
        2 => (0usize..4).prop_map(GuestAct::Eoi),
        3 => (0u8..=30, any::<u64>()).prop_map(|(n, v)| GuestAct::Gpr(n, v)),
        1 => (prop::sample::select(vec![0x5u64, 0x4, 0x0, 0x10]), any::<u64>())
            .prop_map(|(m, f)| GuestAct::Mode(m | (f & 0xf000_03c0))),
        1 => (prop::sample::select(vec![
                vcpu_reg::SCTLR,
                vcpu_reg::TCR,
                vcpu_reg::TTBR0,
                vcpu_reg::TTBR1,
                vcpu_reg::VBAR,
                vcpu_reg::SP_EL1,
              ]), any::<u64>())
            .prop_map(|(f, v)| GuestAct::Sys(f, v)),
        2 => prop_oneof![
                (0u64..0x1000_0000).prop_map(|o| (RAM_GPA + o) & !3),
                any::<u64>().prop_map(|v| v & !3),
             ].prop_map(GuestAct::Pc),
    ]
}

/// The label and words seL4 delivers for `act`, after putting the guest state it implies into
/// the simulated vCPU (and the instruction into guest RAM); None for a change of state only.
/// `lrs` are the list registers holding an interrupt.
fn trap(h: &mut Harness, act: &GuestAct, lrs: &BTreeSet<u8>) -> Option<(u64, Vec<u64>)> {
    let ctx = h.ctx();
    let pc = ctx[user_context::PC];
    let pstate = ctx[user_context::SPSR];
    let at_el1 = pstate & 0x1c == 0x4;
    let abort = |ec: u64, iss: u64| (ec << 26) | (1 << 25) | iss;
    Some(match *act {
        GuestAct::Access {
            addr,
            sas,
            srt,
            sf,
            sse,
            wnr,
        } => {
            let mut esr = dabt(sas, srt, sf, wnr);
            esr |= u64::from(sse) << 21;
            (label::VM_FAULT, vec![pc, addr, 0, esr])
        }
        GuestAct::Insn {
            insn,
            addr,
            wnr,
            cm,
            s1ptw,
        } => {
            if in_ram(pc) && in_ram(pc + 3) {
                h.ram
                    .write((pc - RAM_GPA) as usize, &insn.to_le_bytes())
                    .unwrap();
            }
            let iss = (u64::from(cm) << 8) | (u64::from(s1ptw) << 7) | (u64::from(wnr) << 6) | 0x05;
            (label::VM_FAULT, vec![pc, addr, 0, abort(0x24, iss)])
        }
        GuestAct::Fetch(addr) => (label::VM_FAULT, vec![pc, addr, 1, abort(0x20, 0x05)]),
        // HVC and SMC are UNDEFINED at EL0: they trap to the guest's EL1, not to seL4.
        GuestAct::Hvc(_) | GuestAct::Smc(_) if !at_el1 => return None,
        GuestAct::Hvc(x) => {
            for (n, v) in x.iter().enumerate() {
                h.set_x(n as u8, *v);
            }
            let words = hvc_words(x, pc, ctx[user_context::SP], pstate);
            (label::UNKNOWN_SYSCALL, words)
        }
        GuestAct::Smc(x0) => {
            h.set_x(0, x0);
            (label::VCPU_FAULT, vec![HSR_SMC])
        }
        GuestAct::Wfx(ti) => (label::VCPU_FAULT, vec![abort(0x01, ti)]),
        GuestAct::SysReg(iss) => (label::VCPU_FAULT, vec![abort(0x18, iss)]),
        GuestAct::Timer => (label::VPPI_EVENT, vec![27]),
        GuestAct::Gicd(offset, value) => {
            h.set_x(1, value);
            (
                label::VM_FAULT,
                vec![pc, GICD + offset, 0, dabt(2, 1, false, true)],
            )
        }
        GuestAct::Eoi(n) => {
            let lr = *lrs.iter().nth(n % lrs.len().max(1))?;
            (label::VGIC_MAINTENANCE, vec![u64::from(lr)])
        }
        GuestAct::Gpr(n, v) => {
            h.set_x(n, v);
            return None;
        }
        GuestAct::Mode(m) => {
            h.sim.with_vcpu(0, |c| c.context[user_context::SPSR] = m);
            return None;
        }
        GuestAct::Sys(f, v) => {
            h.set_reg(f, v);
            return None;
        }
        GuestAct::Pc(v) => {
            h.set_x_pc(v);
            return None;
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Nothing a guest can do is a hypervisor fault: its VM is stopped only by its own PSCI
    /// call, every trap is answered once, and each exit counts its invocations truthfully.
    #[test]
    fn no_guest_action_stops_the_vm(acts in prop::collection::vec(guest_act(), 1..48)) {
        let mut h = Harness::start_on(Some(RAM.with(Sim::alias)), |s| s.kernel(), blobs());
        h.sim.take_log();
        h.sim.with_vcpu(0, |v| v.context = guest_context());
        // Vectors in RAM, so that code after a reflected exception can be fetched again.
        h.set_reg(vcpu_reg::VBAR, 0x4010_0000);
        let mut lrs = BTreeSet::new();
        let mut other_lrs = BTreeSet::new();
        for act in &acts {
            let Some((l, words)) = trap(&mut h, act, &lrs) else { continue };
            let stats = h.vmm.stats().total();
            let log = h.exit(l, &words);
            prop_assert!(h.sim.violations().is_empty(), "{:?}", h.sim.violations());
            if l == label::VGIC_MAINTENANCE {
                lrs.remove(&(words[0] as u8));
            }
            for inv in &log {
                match *inv {
                    // The vGIC fills only list registers that are free (vCPU 0's are freed by
                    // its maintenance exits; the others', which an SGI may reach, never here).
                    Invocation::VcpuInjectIrq { vcpu: 0, index, .. } => prop_assert!(
                        index < 4 && lrs.insert(index), "LR {} in use: {:?}", index, log
                    ),
                    Invocation::VcpuInjectIrq { vcpu, index, .. } => prop_assert!(
                        index < 4 && other_lrs.insert((vcpu, index)),
                        "vCPU {} LR {} in use: {:?}", vcpu, index, log
                    ),
                    _ => {}
                }
            }
            match h.vmm.state() {
                // A WFI with nothing pending parks the vCPU (PC past the WFI, then suspended)
                // instead of answering; the wake-up timer's interrupt resumes it.
                VmState::Running if h.vmm.parked() => {
                    prop_assert!(
                        matches!(act, GuestAct::Wfx(_) | GuestAct::Hvc(_) | GuestAct::Smc(_)),
                        "{:?}: {:?}",
                        act,
                        log
                    );
                    prop_assert!(log.contains(&Invocation::VmSuspend(0)), "{:?}", log);
                    prop_assert_eq!(
                        h.vmm.stats().total().kernel_calls - stats.kernel_calls,
                        kernel_calls(&log)
                    );
                    // Asleep until an interrupt when its virtual timer is not armed.
                    let Some(wake) = h.wake_at_deadline(&log) else { break };
                    prop_assert!(wake.contains(&Invocation::VmResume(0)), "{:?}", wake);
                    prop_assert!(!h.vmm.parked());
                }
                VmState::Running => {
                    assert_resumed(&log, &h.ctx());
                    prop_assert_eq!(
                        h.vmm.stats().total().kernel_calls - stats.kernel_calls,
                        kernel_calls(&log)
                    );
                }
                VmState::Off => {
                    prop_assert!(matches!(act, GuestAct::Hvc(_) | GuestAct::Smc(_)), "{:?}", act);
                    prop_assert!(log.contains(&Invocation::VmSuspend(0)));
                    break;
                }
                s => prop_assert!(
                    false,
                    "{:?} after {:?}: {}",
                    s,
                    act,
                    h.sim.console().lines().filter(|l| l.contains("stopped")).collect::<Vec<_>>().join("\n")
                ),
            }
        }
    }
}
