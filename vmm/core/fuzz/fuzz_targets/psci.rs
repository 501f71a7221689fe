//! PSCI / SMCCC from a hostile guest: arbitrary calls (any function id, any arguments, any
//! caller) interleaved with the VMM's start/failure reports and resets. Never a panic; the
//! answers keep PSCI's rules: PSCI_VERSION is 1.1, an SMC32 call sees only the low 32 bits of
//! its arguments, CPU_ON names an existing vCPU, and a vCPU is reported started only once.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use vmm_core::psci::{Psci, PsciAction, fid};

#[derive(Debug, Arbitrary)]
enum Op {
    Call { caller: u8, fid: u32, args: [u64; 3] },
    Known { caller: u8, which: u8, args: [u64; 3] },
    Started(u8),
    Failed(u8),
    Reset,
}

const KNOWN: [u32; 12] = [
    fid::PSCI_VERSION,
    fid::CPU_SUSPEND_64,
    fid::CPU_OFF,
    fid::CPU_ON_32,
    fid::CPU_ON_64,
    fid::AFFINITY_INFO_64,
    fid::MIGRATE_INFO_TYPE,
    fid::SYSTEM_OFF,
    fid::SYSTEM_RESET,
    fid::PSCI_FEATURES,
    fid::SMCCC_VERSION,
    fid::SMCCC_ARCH_FEATURES,
];

#[derive(Debug, Arbitrary)]
struct Input {
    vcpus: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let count = usize::from(input.vcpus % 10);
    let Ok(mut psci) = Psci::<8>::new(count) else {
        return;
    };
    for op in input.ops.iter().take(256) {
        let (caller, f, args) = match *op {
            Op::Call { caller, fid, args } => (caller, fid, args),
            Op::Known { caller, which, args } => (caller, KNOWN[usize::from(which) % KNOWN.len()], args),
            Op::Started(v) => {
                let _ = psci.vcpu_started(usize::from(v));
                continue;
            }
            Op::Failed(v) => {
                let _ = psci.cpu_on_failed(usize::from(v));
                continue;
            }
            Op::Reset => {
                psci.reset();
                continue;
            }
        };
        let caller = usize::from(caller) % count;
        match psci.call(caller, f, args) {
            PsciAction::Return(v) if f == fid::PSCI_VERSION => assert_eq!(v, 0x1_0001),
            PsciAction::CpuOn { target, entry, context } => {
                assert!(target < count);
                if f & (1 << 30) == 0 {
                    assert!(entry <= u64::from(u32::MAX) && context <= u64::from(u32::MAX));
                }
            }
            _ => {}
        }
    }
});
