//! Fault intake: decoding of seL4 fault messages (labels and layouts of seL4 16.0, AArch64, MCS,
//! hypervisor), typed errors, and encode/decode round trips.

use proptest::prelude::*;
use vmm_core::addr::{GuestPhysAddr, GuestVirtAddr};
use vmm_core::fault::{CapFault, Fault, FaultError, LookupFailure, UnknownSyscall, label, length};

#[test]
fn labels_match_sel4_mcs_hypervisor_configuration() {
    // shared_types.bf under CONFIG_KERNEL_MCS with CONFIG_ARM_HYPERVISOR_SUPPORT.
    assert_eq!(
        [
            label::NULL_FAULT,
            label::CAP_FAULT,
            label::UNKNOWN_SYSCALL,
            label::USER_EXCEPTION,
            label::DEBUG_EXCEPTION,
            label::TIMEOUT,
            label::VM_FAULT,
            label::VGIC_MAINTENANCE,
            label::VCPU_FAULT,
            label::VPPI_EVENT
        ],
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    );
    assert_eq!(
        [
            length::UNKNOWN_SYSCALL,
            length::USER_EXCEPTION,
            length::VM_FAULT,
            length::VGIC_MAINTENANCE,
            length::VCPU_FAULT,
            length::VPPI_EVENT
        ],
        [13, 5, 4, 1, 1, 1]
    );
}

#[test]
fn vm_fault_as_observed_on_qemu() {
    // SEL4-FACTS.md: a 32-bit store with ISV=1 arrives as label 6, FSR 0x93810045.
    let f = Fault::decode(6, &[0xffff_0000_1000_0040, 0x0900_0000, 0, 0x9381_0045]).unwrap();
    assert_eq!(
        f,
        Fault::VmFault {
            ip: GuestVirtAddr(0xffff_0000_1000_0040),
            addr: GuestPhysAddr(0x0900_0000),
            prefetch: false,
            fsr: 0x9381_0045
        }
    );
    let f = Fault::decode(6, &[0x4000_0000, 0x4000_0000, 1, 0x8200_000f]).unwrap();
    assert!(matches!(f, Fault::VmFault { prefetch: true, .. }));
}

#[test]
fn other_fault_kinds() {
    assert_eq!(
        Fault::decode(8, &[0x5e00_0000]),
        Ok(Fault::VcpuFault { hsr: 0x5e00_0000 })
    );
    assert_eq!(
        Fault::decode(7, &[u64::MAX]),
        Ok(Fault::VgicMaintenance { lr: None })
    );
    assert_eq!(
        Fault::decode(7, &[3]),
        Ok(Fault::VgicMaintenance { lr: Some(3) })
    );
    assert_eq!(Fault::decode(9, &[27]), Ok(Fault::VppiEvent { irq: 27 }));
    assert_eq!(
        Fault::decode(3, &[0x1000, 0x2000, 0x3c5, 7, 9]),
        Ok(Fault::UserException {
            fault_ip: GuestVirtAddr(0x1000),
            sp: 0x2000,
            spsr: 0x3c5,
            number: 7,
            code: 9
        })
    );
    let words: [u64; 13] = [
        10, 11, 12, 13, 14, 15, 16, 17, 0x8000, 0x9000, 0xa000, 0x3c5, 0xfff,
    ];
    assert_eq!(
        Fault::decode(2, &words),
        Ok(Fault::UnknownSyscall(UnknownSyscall {
            x: [10, 11, 12, 13, 14, 15, 16, 17],
            fault_ip: GuestVirtAddr(0x8000),
            sp: 0x9000,
            lr: 0xa000,
            spsr: 0x3c5,
            syscall: 0xfff
        }))
    );
}

#[test]
fn short_messages_are_typed() {
    for (l, need) in [(2u64, 13usize), (3, 5), (6, 4), (7, 1), (8, 1), (9, 1)] {
        let words = [0u64; 13];
        for got in 0..need {
            assert_eq!(
                Fault::decode(l, &words[..got]),
                Err(FaultError::ShortMessage {
                    label: l,
                    got,
                    need
                }),
                "label {l} with {got} words"
            );
        }
        // A VGIC word of 0 and a prefetch flag of 0 are valid: exactly `need` words decode.
        assert!(Fault::decode(l, &words[..need]).is_ok(), "label {l}");
    }
}

#[test]
fn unknown_and_unexpected_labels() {
    for l in [0u64, 4, 5] {
        assert_eq!(
            Fault::decode(l, &[0; 13]),
            Err(FaultError::UnexpectedKind(l))
        );
    }
    for l in [10u64, 11, 0x1000, u64::MAX] {
        assert_eq!(Fault::decode(l, &[0; 13]), Err(FaultError::UnknownLabel(l)));
    }
}

#[test]
fn impossible_values_are_typed() {
    assert_eq!(
        Fault::decode(6, &[0, 0, 2, 0]),
        Err(FaultError::BadValue {
            label: 6,
            index: 2,
            value: 2
        })
    );
    assert_eq!(
        Fault::decode(6, &[0, 0, 0, 1 << 32]),
        Err(FaultError::BadValue {
            label: 6,
            index: 3,
            value: 1 << 32
        })
    );
    assert_eq!(
        Fault::decode(8, &[u64::MAX]),
        Err(FaultError::BadValue {
            label: 8,
            index: 0,
            value: u64::MAX
        })
    );
    assert_eq!(
        Fault::decode(7, &[256]),
        Err(FaultError::BadValue {
            label: 7,
            index: 0,
            value: 256
        })
    );
    assert_eq!(
        Fault::decode(7, &[u64::MAX - 1]),
        Err(FaultError::BadValue {
            label: 7,
            index: 0,
            value: u64::MAX - 1
        })
    );
    assert_eq!(
        Fault::decode(9, &[1 << 40]),
        Err(FaultError::BadValue {
            label: 9,
            index: 0,
            value: 1 << 40
        })
    );
}

fn any_fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<bool>(), any::<u32>()).prop_map(
            |(ip, addr, prefetch, fsr)| Fault::VmFault {
                ip: GuestVirtAddr(ip),
                addr: GuestPhysAddr(addr),
                prefetch,
                fsr
            }
        ),
        any::<u32>().prop_map(|hsr| Fault::VcpuFault { hsr }),
        any::<Option<u8>>().prop_map(|lr| Fault::VgicMaintenance { lr }),
        any::<u32>().prop_map(|irq| Fault::VppiEvent { irq }),
        any::<[u64; 5]>().prop_map(|[ip, sp, spsr, number, code]| Fault::UserException {
            fault_ip: GuestVirtAddr(ip),
            sp,
            spsr,
            number,
            code
        }),
        (any::<[u64; 5]>(), any::<bool>(), 0u8..5).prop_map(
            |([ip, addr, a, b, c], in_recv_phase, kind)| {
                let lookup = match kind {
                    0 => LookupFailure::None,
                    1 => LookupFailure::InvalidRoot,
                    2 => LookupFailure::MissingCapability { bits_left: a },
                    3 => LookupFailure::DepthMismatch {
                        bits_left: a,
                        bits_found: b,
                    },
                    _ => LookupFailure::GuardMismatch {
                        bits_left: a,
                        guard_found: b,
                        bits_found: c,
                    },
                };
                Fault::CapFault(CapFault {
                    ip: GuestVirtAddr(ip),
                    addr,
                    in_recv_phase,
                    lookup,
                })
            }
        ),
        (any::<[u64; 8]>(), any::<[u64; 5]>()).prop_map(|(x, [ip, sp, lr, spsr, syscall])| {
            Fault::UnknownSyscall(UnknownSyscall {
                x,
                fault_ip: GuestVirtAddr(ip),
                sp,
                lr,
                spsr,
                syscall,
            })
        }),
    ]
}

/// Words biased towards the values that matter (0, 1, -1, small).
fn word() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1), Just(u64::MAX), 0u64..300, any::<u64>()]
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(f in any_fault()) {
        let e = f.encode();
        prop_assert_eq!(e.label, f.label());
        prop_assert_eq!(Fault::decode(e.label, e.words()), Ok(f));
        // Trailing words are ignored.
        let mut longer = e.words().to_vec();
        longer.push(0xdead);
        prop_assert_eq!(Fault::decode(e.label, &longer), Ok(f));
    }

    #[test]
    fn decode_then_encode_reproduces_the_message(
        l in prop_oneof![0u64..12, any::<u64>()],
        words in proptest::collection::vec(word(), 0..16),
    ) {
        match Fault::decode(l, &words) {
            Ok(f) => {
                let e = f.encode();
                prop_assert_eq!(e.label, l);
                prop_assert_eq!(e.words(), &words[..e.words().len()]);
            }
            Err(FaultError::ShortMessage { label, got, need }) => {
                prop_assert_eq!(label, l);
                prop_assert_eq!(got, words.len());
                prop_assert!(got < need);
            }
            Err(FaultError::BadValue { label, index, value }) => {
                prop_assert_eq!(label, l);
                prop_assert_eq!(words[index], value);
            }
            Err(FaultError::UnknownLabel(x)) => prop_assert!(x == l && l > 9),
            Err(FaultError::UnexpectedKind(x)) => prop_assert!(x == l && [0, 4, 5].contains(&l)),
        }
    }
}

#[test]
fn cap_faults_decode_with_the_words_their_lookup_failure_carries() {
    // seL4's setMRs_lookup_failure: the type (internal type + 1), then 0..3 words.
    let f = Fault::decode(label::CAP_FAULT, &[0x4008_0000, 0, 1, 1]).unwrap();
    assert_eq!(
        f,
        Fault::CapFault(CapFault {
            ip: GuestVirtAddr(0x4008_0000),
            addr: 0,
            in_recv_phase: true,
            lookup: LookupFailure::InvalidRoot,
        })
    );
    let f = Fault::decode(label::CAP_FAULT, &[4, 7, 0, 2, 64]).unwrap();
    assert!(matches!(
        f,
        Fault::CapFault(CapFault {
            lookup: LookupFailure::MissingCapability { bits_left: 64 },
            ..
        })
    ));
    // A missing-capability failure without its word is short; an unknown type or a phase flag
    // other than 0/1 is a bad value.
    assert_eq!(
        Fault::decode(label::CAP_FAULT, &[4, 7, 0, 2]),
        Err(FaultError::ShortMessage {
            label: label::CAP_FAULT,
            got: 4,
            need: 5
        })
    );
    assert_eq!(
        Fault::decode(label::CAP_FAULT, &[4, 7, 0, 5, 0, 0, 0]),
        Err(FaultError::BadValue {
            label: label::CAP_FAULT,
            index: 3,
            value: 5
        })
    );
    assert_eq!(
        Fault::decode(label::CAP_FAULT, &[4, 7, 2, 1]),
        Err(FaultError::BadValue {
            label: label::CAP_FAULT,
            index: 2,
            value: 2
        })
    );
}
