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
