//! The simulated kernel behaves like seL4 where a PD could notice the difference.

use microkit_rt::abi::{error, user_context};
use microkit_rt::{Child, Kernel};
use microkit_sim::Sim;

#[test]
fn register_invocations_overwrite_the_message_registers_as_on_sel4() {
    let sim = Sim::from_repo_system("vmm");
    let mut k = sim.kernel();
    sim.with_vcpu(0, |v| v.context[user_context::PC] = 0x4008_0000);
    k.set_mr(0, 6); // a fault word the PD forgot to save
    let mut out = [0u64; 1];
    k.vm_read_registers(Child::new(0), &mut out).unwrap();
    assert_eq!(
        k.mr(0),
        0x4008_0000,
        "the reply's registers replace the fault message"
    );
    k.vm_write_registers(Child::new(0), false, &[1, 2]).unwrap();
    assert_eq!((k.mr(0), k.mr(1), k.mr(2), k.mr(3)), (0, 2, 1, 2));
}

#[test]
fn inject_irq_arguments_are_range_checked_as_on_sel4() {
    let sim = Sim::from_repo_system("vmm");
    let mut k = sim.kernel();
    let range = Err(microkit_rt::KernelError::Sel4(error::RANGE_ERROR));
    assert_eq!(
        k.vcpu_inject_irq(Child::new(0), 27, 32, 0, 0),
        range,
        "priority is 5 bits"
    );
    assert_eq!(k.vcpu_inject_irq(Child::new(0), 1024, 0, 0, 0), range);
    assert_eq!(k.vcpu_inject_irq(Child::new(0), 27, 0, 2, 0), range);
    assert_eq!(k.vcpu_inject_irq(Child::new(0), 27, 0, 0, 4), range);
    assert_eq!(k.vcpu_inject_irq(Child::new(0), 27, 31, 1, 3), Ok(()));
}

#[test]
fn smc_calls_need_the_smc_attribute_as_on_sel4() {
    let mut args = [0u64; microkit_rt::kernel::SMC_REGS];
    args[0] = 0x8400_0000;
    // The vmm has smc="true": the call is made and recorded.
    let sim = Sim::from_repo_system("vmm");
    let mut k = sim.kernel();
    assert!(sim.scope().smc);
    assert_eq!(k.arm_smc_call(&args).map(|r| r[0] as i64), Ok(-1));
    assert_eq!(sim.take_log(), [microkit_sim::Invocation::ArmSmcCall(args)]);
    assert!(sim.violations().is_empty());
    // The serial driver has no SMC capability: the kernel refuses, and it is a violation.
    let sim = Sim::from_repo_system("serial_driver");
    let mut k = sim.kernel();
    assert!(!sim.scope().smc);
    assert_eq!(
        k.arm_smc_call(&args),
        Err(microkit_rt::KernelError::Sel4(error::INVALID_CAPABILITY))
    );
    assert!(sim.take_log().is_empty());
    assert_eq!(sim.violations().len(), 1);
}

#[test]
fn the_reply_to_an_unknown_syscall_fault_restarts_the_vcpu_at_fault_ip_with_its_registers() {
    use microkit_rt::abi::{MessageInfo, badge, fault_label, unknown_syscall as us};
    use microkit_sim::Invocation;
    let sim = Sim::from_repo_system("vmm");
    let mut k = sim.kernel();
    sim.with_vcpu(0, |v| {
        v.context[user_context::PC] = 0x4008_0000;
        v.context[user_context::SPSR] = 0x3c5;
    });
    let mut el = sim.event_loop();
    // A handler that answers every fault with x0 = 7, x1..x7 = 0, FaultIP = ELR = 0x4008_0004,
    // SP = 0x1000 in the reply (the layout seL4 copies back for an UnknownSyscall fault).
    struct Answer;
    impl microkit_rt::Handler for Answer {
        type Error = &'static str;
        fn fault(
            &mut self,
            _: microkit_rt::Child,
            _: MessageInfo,
        ) -> Result<Option<MessageInfo>, &'static str> {
            Ok(Some(MessageInfo::new(0, us::ELR + 1)))
        }
    }
    let mut words = [0u64; 13];
    words[us::FAULT_IP] = 0x4008_0000;
    sim.raw_event(
        1 << badge::FAULT_BIT,
        MessageInfo::new(fault_label::UNKNOWN_SYSCALL, 13),
        &words,
    );
    el.step(&mut Answer);
    for i in 0..=us::ELR {
        k.set_mr(i, 0);
    }
    k.set_mr(us::X0, 7);
    k.set_mr(us::FAULT_IP, 0x4008_0004);
    k.set_mr(us::SP, 0x1000);
    k.set_mr(us::ELR, 0x4008_0004);
    sim.raw_event(0, MessageInfo::new(0, 0), &[]);
    el.step(&mut Answer);
    let log = sim.take_log();
    assert!(matches!(log.first(), Some(Invocation::Reply { label: 0, mrs }) if mrs.len() == 11));
    sim.with_vcpu(0, |v| {
        assert_eq!(v.context[user_context::gpr_index(0).unwrap()], 7);
        assert_eq!(
            v.context[user_context::PC],
            0x4008_0004,
            "restarted at FaultIP"
        );
        assert_eq!(v.context[user_context::SP], 0x1000);
        assert_eq!(
            v.context[user_context::SPSR],
            0x3c5,
            "not in an 11-word reply"
        );
    });
}
