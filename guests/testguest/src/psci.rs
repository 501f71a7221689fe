//! SMCCC calls through both conduits (`hvc #0`, `smc #0`: function id in w0, arguments in
//! x1..x3, result in x0) and the PSCI function ids the guest uses, including SYSTEM_OFF.

use core::arch::asm;

/// PSCI_VERSION.
pub const PSCI_VERSION: u64 = 0x8400_0000;
/// CPU_ON, SMC64 convention: x1 = target MPIDR, x2 = entry point, x3 = context id (the target's
/// x0).
pub const CPU_ON_64: u64 = 0xC400_0003;
/// AFFINITY_INFO, SMC64 convention: x1 = target MPIDR, x2 = level (0); 0 ON, 1 OFF, 2 ON_PENDING.
pub const AFFINITY_INFO_64: u64 = 0xC400_0004;
/// PSCI's ALREADY_ON (-4).
pub const ALREADY_ON: u64 = -4i64 as u64;
/// SYSTEM_OFF.
pub const SYSTEM_OFF: u64 = 0x8400_0008;
/// PSCI_FEATURES.
pub const PSCI_FEATURES: u64 = 0x8400_000A;
/// An SMC32 id in the PSCI range that no PSCI version defines.
pub const UNKNOWN_32: u64 = 0x8400_00FF;
/// An SMC64 id in the PSCI range that no PSCI version defines.
pub const UNKNOWN_64: u64 = 0xC400_00FF;
/// The version the VMM implements: 1.1.
pub const VERSION_1_1: u64 = 0x0001_0001;
/// NOT_SUPPORTED (-1) in the full x0.
pub const NOT_SUPPORTED: u64 = u64::MAX;

/// seL4's `seL4_SysRecv` (-7): with it in x7, seL4 takes a guest's HVC for that system call.
pub const SEL4_SYS_RECV: u64 = -7i64 as u64;

/// seL4's `seL4_SysDebugCapIdentify` (-15, debug kernels only): x0 = a capability address in,
/// the capability's type out (0: none).
pub const SEL4_SYS_DEBUG_CAP_IDENTIFY: u64 = -15i64 as u64;

/// An SMCCC 1.2 call through HVC #0 with x7 = `x7` as well (SMCCC 1.2 lets a caller pass up to
/// x17; a caller of an older function may leave anything in x7); returns x0.
pub fn hvc_x7(fid: u64, x7: u64) -> u64 {
    let mut x0 = fid;
    // SAFETY: an SMCCC call: it may clobber x0..x17 (declared through clobber_abi) and touches no
    // memory of ours.
    unsafe { asm!("hvc #0", inout("x0") x0, in("x7") x7, clobber_abi("C"), options(nostack)) };
    x0
}

/// A call through HVC #0; returns x0. x7 is zeroed: under seL4 an HVC whose x7 happens to hold
/// a system-call number is run by the kernel as that call (see `hvc_x7`), and a stale x7 from
/// an earlier call could be one.
pub fn hvc(fid: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let mut x0 = fid;
    // SAFETY: an SMCCC call: it may clobber x0..x17 (declared through clobber_abi) and touches no
    // memory of ours.
    unsafe {
        asm!("hvc #0", inout("x0") x0, in("x1") a1, in("x2") a2, in("x3") a3, in("x7") 0u64,
             clobber_abi("C"), options(nostack))
    };
    x0
}

/// A call through SMC #0; returns x0.
pub fn smc(fid: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let mut x0 = fid;
    // SAFETY: as for `hvc`.
    unsafe {
        asm!("smc #0", inout("x0") x0, in("x1") a1, in("x2") a2, in("x3") a3,
             clobber_abi("C"), options(nostack))
    };
    x0
}

/// Powers the machine off through PSCI SYSTEM_OFF over HVC. Should that ever return, says so and
/// waits for interrupts forever (there is nothing left to run).
pub fn system_off() -> ! {
    let r = hvc(SYSTEM_OFF, 0, 0, 0);
    println!("testguest: PSCI SYSTEM_OFF returned {r:#x}");
    loop {
        crate::arch::wfi();
    }
}
