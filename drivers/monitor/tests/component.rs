//! The monitor inside its system.xml scope (its two children, its serial TX queue): faults of
//! each kind are logged with the child's name and PC, the child is put back at the start state
//! read at initialisation and resumed, never answered; counts and limits hold.

use driver_monitor::{ChildDef, Console, Fault, MAX_RESTARTS, Monitor, children, system};
use microkit_rt::abi::{fault_label, user_context};
use microkit_rt::event_loop::EventLoop;
use microkit_rt::{Child, Handler, MessageInfo};
use microkit_sim::{Invocation, Sim, SimKernel, SimTransport};
use sddf_queue::SerialConsumer;

const SERIAL: Child = system::CHILD_SERIAL_DRIVER;
const BLK: Child = system::CHILD_BLK_DRIVER;
const BLK_ENTRY: u64 = 0x20_4994;
const SERIAL_ENTRY: u64 = 0x20_1234;
const STACK_TOP: u64 = 0xff_ffff_e000;

struct Rig {
    sim: Sim,
    mon: Monitor<'static, SimKernel>,
    el: EventLoop<SimTransport>,
    out: SerialConsumer<'static>,
    text: String,
}

fn rig_with(start: impl Fn(u8) -> [u64; 3]) -> Rig {
    let sim = Sim::from_repo_system("driver_monitor");
    for c in [SERIAL, BLK] {
        let regs = start(c.index());
        sim.with_child(c.index(), |t| t.context[..3].copy_from_slice(&regs));
    }
    let th = sim.region("serial_tx_queue_driver_monitor").unwrap();
    let td = sim.region("serial_tx_data_driver_monitor").unwrap();
    let (oh, od) = (
        Sim::alias(&th).into_atomic_words().unwrap(),
        Sim::alias(&td).into_atomic_bytes().unwrap(),
    );
    let out = SerialConsumer::new(oh, od, od.len() as u32).unwrap();
    let console = Console::from_regions(system::SERIAL_DRIVER, Ok(th), Ok(td));
    let mon = Monitor::new(sim.kernel(), console, children());
    let mut el = sim.event_loop();
    el.start();
    Rig {
        sim,
        mon,
        el,
        out,
        text: String::new(),
    }
}

fn rig() -> Rig {
    rig_with(|c| {
        let pc = if c == BLK.index() {
            BLK_ENTRY
        } else {
            SERIAL_ENTRY
        };
        [pc, STACK_TOP, 0x140]
    })
}

impl Rig {
    fn text(&mut self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.out.dequeue_into(&mut buf).unwrap();
        self.text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        self.text.clone()
    }

    /// `child` faults with `label` and `mrs`; the monitor handles it.
    fn fault(&mut self, child: Child, label: u64, mrs: &[u64]) -> Vec<Invocation> {
        // The child ran meanwhile: its registers are wherever it faulted.
        self.sim.with_child(child.index(), |t| {
            t.context[user_context::PC] = mrs.first().copied().unwrap_or(0);
            t.context[user_context::SP] = STACK_TOP - 0x800;
        });
        self.sim.fault(child, label, mrs);
        self.el.step(&mut self.mon);
        self.sim.take_log()
    }
}

fn vm_fault(pc: u64, addr: u64) -> [u64; 4] {
    [pc, addr, 0, 0x9200_0006]
}

#[test]
fn the_start_state_is_read_before_the_children_run() {
    let mut r = rig();
    let log = r.sim.take_log();
    assert!(
        log.contains(&Invocation::ChildReadRegisters {
            child: BLK.index(),
            count: 3
        }),
        "{log:?}"
    );
    let w = r.mon.watched(BLK).unwrap();
    assert_eq!(w.start, Some([BLK_ENTRY, STACK_TOP, 0x140]));
    assert_eq!(w.restarts, 0);
    let text = r.text();
    assert!(
        text.contains(
            "driver_monitor: watching blk_driver (child 1): entry 0x204994, stack top 0xffffffe000"
        ),
        "{text}"
    );
    assert!(text.contains("watching serial_driver (child 0)"), "{text}");
    assert!(r.sim.violations().is_empty(), "{:?}", r.sim.violations());
}

#[test]
fn a_vm_fault_is_logged_and_the_child_restarts_from_its_entry_on_a_fresh_stack() {
    let mut r = rig();
    r.sim.take_log();
    r.sim.set_timer_now(4242);
    let log = r.fault(BLK, fault_label::VM_FAULT, &vm_fault(0x21_5000, 0x8));
    assert_eq!(
        log.iter()
            .filter(|i| matches!(i, Invocation::ChildWriteRegisters { .. }))
            .cloned()
            .collect::<Vec<_>>(),
        vec![Invocation::ChildWriteRegisters {
            child: BLK.index(),
            resume: true,
            regs: vec![BLK_ENTRY, STACK_TOP, 0x140],
        }]
    );
    assert!(
        !log.iter().any(|i| matches!(i, Invocation::Reply { .. })),
        "the fault is not answered: {log:?}"
    );
    r.sim.with_child(BLK.index(), |t| {
        assert!(t.running);
        assert_eq!(t.context[user_context::PC], BLK_ENTRY);
        assert_eq!(t.context[user_context::SP], STACK_TOP);
    });
    let text = r.text();
    assert!(
        text.contains("driver_monitor: blk_driver faulted: VM fault (data) at address 0x8, pc 0x215000, fsr 0x92000006 (t=4242)"),
        "{text}"
    );
    assert!(
        text.contains("driver_monitor: blk_driver restarted from its entry 0x204994 (restart 1)"),
        "{text}"
    );
    let w = r.mon.watched(BLK).unwrap();
    assert_eq!(w.restarts, 1);
    assert_eq!(
        w.last,
        Some((
            Fault::Vm {
                pc: 0x21_5000,
                addr: 0x8,
                prefetch: false,
                fsr: 0x9200_0006
            },
            4242
        ))
    );
    // The other child is untouched.
    assert_eq!(r.mon.watched(SERIAL).unwrap().restarts, 0);
    assert!(r.sim.violations().is_empty(), "{:?}", r.sim.violations());
}

#[test]
fn every_fault_kind_is_decoded() {
    let mr = |v: &[u64]| {
        let v = v.to_vec();
        move |i: usize| v.get(i).copied().unwrap_or(0)
    };
    assert_eq!(
        Fault::decode(
            fault_label::USER_EXCEPTION,
            mr(&[0x100, 0xff0, 0x140, 2, 0x77])
        ),
        Fault::User {
            pc: 0x100,
            number: 2,
            code: 0x77
        }
    );
    let mut us = [0u64; 13];
    us[8] = 0x200;
    us[12] = (-9i64) as u64;
    let f = Fault::decode(fault_label::UNKNOWN_SYSCALL, mr(&us));
    assert_eq!(
        f,
        Fault::UnknownSyscall {
            pc: 0x200,
            number: (-9i64) as u64
        }
    );
    assert_eq!(f.to_string(), "unknown syscall -9, pc 0x200");
    assert_eq!(
        Fault::decode(fault_label::CAP_FAULT, mr(&[0x300, 0x42])),
        Fault::Cap {
            pc: 0x300,
            cptr: 0x42
        }
    );
    assert_eq!(Fault::decode(fault_label::TIMEOUT, mr(&[])), Fault::Timeout);
    assert_eq!(Fault::Timeout.pc(), None);
    let f = Fault::decode(fault_label::VM_FAULT, mr(&[0x400, 0x0, 1, 0x8600_0007]));
    assert_eq!(f.pc(), Some(0x400));
    assert_eq!(
        f.to_string(),
        "VM fault (fetch) at address 0x0, pc 0x400, fsr 0x86000007"
    );
    assert_eq!(
        Fault::decode(99, mr(&[7])).to_string(),
        "fault label 99 (mr0 0x7)"
    );
}

#[test]
fn repeated_faults_are_counted_per_child_and_each_restarts_it() {
    let mut r = rig();
    for i in 1..=3u32 {
        r.fault(
            BLK,
            fault_label::VM_FAULT,
            &vm_fault(0x21_0000 + u64::from(i), 0x8),
        );
        assert_eq!(r.mon.watched(BLK).unwrap().restarts, i);
    }
    r.fault(
        SERIAL,
        fault_label::USER_EXCEPTION,
        &[0x20_9000, 0, 0, 1, 0],
    );
    assert_eq!(r.mon.watched(SERIAL).unwrap().restarts, 1);
    let text = r.text();
    assert!(
        text.contains("blk_driver restarted from its entry 0x204994 (restart 3)"),
        "{text}"
    );
    assert!(
        text.contains("serial_driver faulted: user exception 1 (code 0x0), pc 0x209000"),
        "{text}"
    );
    assert!(
        text.contains("serial_driver restarted from its entry 0x201234 (restart 1)"),
        "{text}"
    );
}

#[test]
fn a_child_that_keeps_faulting_is_left_stopped_after_the_limit() {
    let mut r = rig();
    for _ in 0..MAX_RESTARTS {
        r.fault(BLK, fault_label::VM_FAULT, &vm_fault(0x21_0000, 0x8));
    }
    assert_eq!(r.mon.watched(BLK).unwrap().restarts, MAX_RESTARTS);
    r.text.clear();
    let _ = r.text();
    r.text.clear();
    let log = r.fault(BLK, fault_label::VM_FAULT, &vm_fault(0x21_0000, 0x8));
    assert!(
        !log.iter()
            .any(|i| matches!(i, Invocation::ChildWriteRegisters { .. })),
        "{log:?}"
    );
    r.sim.with_child(BLK.index(), |t| assert!(!t.running));
    assert!(r.text().contains(&format!(
        "blk_driver not restarted: it faulted {MAX_RESTARTS} times after restarts; left stopped"
    )));
}

#[test]
fn a_child_without_a_start_state_is_not_restarted() {
    let mut r = rig_with(|c| {
        if c == BLK.index() {
            [0, 0, 0]
        } else {
            [SERIAL_ENTRY, STACK_TOP, 0]
        }
    });
    assert!(
        r.text()
            .contains("driver_monitor: blk_driver: no entry point: it will not be restarted")
    );
    let log = r.fault(BLK, fault_label::VM_FAULT, &vm_fault(0x21_0000, 0x8));
    assert!(
        !log.iter()
            .any(|i| matches!(i, Invocation::ChildWriteRegisters { .. })),
        "{log:?}"
    );
    assert!(
        r.text()
            .contains("blk_driver not restarted: its start state is unknown; left stopped")
    );
    assert_eq!(r.mon.watched(BLK).unwrap().restarts, 0);
}

#[test]
fn a_fault_from_a_child_it_does_not_watch_is_reported_not_acted_on() {
    let sim = Sim::from_repo_system("driver_monitor");
    let th = sim.region("serial_tx_queue_driver_monitor").unwrap();
    let td = sim.region("serial_tx_data_driver_monitor").unwrap();
    let console = Console::from_regions(system::SERIAL_DRIVER, Ok(th), Ok(td));
    // Watching only the serial driver.
    let mut mon = Monitor::new(
        sim.kernel(),
        console,
        [ChildDef {
            child: SERIAL,
            name: "serial_driver",
        }],
    );
    sim.take_log();
    let e = mon
        .fault(BLK, MessageInfo::new(fault_label::VM_FAULT, 4))
        .unwrap_err();
    assert_eq!(e.to_string(), "fault from unknown child 1");
    assert!(
        !sim.take_log()
            .iter()
            .any(|i| matches!(i, Invocation::ChildWriteRegisters { .. }))
    );
}

#[test]
fn the_event_loops_reports_go_to_the_monitors_own_queue() {
    let mut r = rig();
    r.sim.take_log();
    // A fault badge naming a child system.xml does not give the monitor (a bad kernel).
    r.sim.raw_event(
        1 << microkit_rt::abi::badge::FAULT_BIT | 5,
        MessageInfo::new(fault_label::VM_FAULT, 4),
        &vm_fault(0x21_0000, 0x8),
    );
    r.el.step(&mut r.mon);
    assert!(
        r.text()
            .contains("driver_monitor: fault handler failed: fault from unknown child 5"),
        "{}",
        r.text
    );
    assert_eq!(r.sim.console(), "", "not on the kernel's debug console");
    assert!(!r.sim.take_log().iter().any(|i| matches!(
        i,
        Invocation::ChildWriteRegisters { .. } | Invocation::Reply { .. }
    )));
}
