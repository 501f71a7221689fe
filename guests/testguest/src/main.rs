//! The bare-metal AArch64 test guest the VMM boots: an arm64 `Image` entered at EL1 with the MMU
//! and caches off. It runs one test case after another (or, with the `bench` feature, the
//! exit-cost benchmarks), prints one `PASS <name>` / `FAIL <name>: <detail>` line per case and a
//! closing `testguest: N passed, M failed`, then powers off through PSCI SYSTEM_OFF.
//!
//! Module map (all target-only except [`report`]):
//! - `boot`: the Image header, the entry code (bss, stack, VBAR_EL1) and [`kmain`](boot).
//! - `vectors`: the exception vector table and the sync/IRQ handlers with their shared records.
//! - `mmio`: the device-memory accessors, one inline-asm instruction form per function.
//! - `arch`: system registers (timer, DAIF, syndrome), barriers and WFI.
//! - `uart`: the PL011 console and the `println!` macro.
//! - `gic`: the GICv2 distributor and CPU interface.
//! - `psci`: SMCCC calls through HVC and SMC, and SYSTEM_OFF.
//! - `harness`: the case runner and its failure messages.
//! - `cases`: the test cases, in order; `blk_cases`: the virtio-blk and virtio-console ones.
//! - `bench`: the benchmark mode.
//! - `smp`: a second CPU (PSCI CPU_ON) that answers SGIs: the `smp-ipi` case, the IPI benchmark.
//! - `platform`: VMM, null VMM or native QEMU, found at run time.
//! - `virtio`: the virtio-mmio transport and a split virtqueue; `virtio_blk`: the block driver.
//! - `report`: pure formatting and syndrome helpers (host-tested).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
// The benchmark build leaves the case-only helpers (expected traps, the IRQ log, syndrome
// checks) unused.
#![cfg_attr(feature = "bench", allow(dead_code))]

// The macro modules come first: `macro_rules!` scoping is textual.
#[cfg(target_os = "none")]
#[macro_use]
mod uart;

#[cfg(all(target_os = "none", not(feature = "bench")))]
#[macro_use]
mod harness;

#[cfg(target_os = "none")]
mod arch;
#[cfg(all(target_os = "none", feature = "bench"))]
mod bench;
#[cfg(all(target_os = "none", not(feature = "bench")))]
mod blk_cases;
#[cfg(target_os = "none")]
mod boot;
#[cfg(all(target_os = "none", not(feature = "bench")))]
mod cases;
#[cfg(target_os = "none")]
mod gic;
#[cfg(target_os = "none")]
mod mmio;
#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
mod psci;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod report;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
mod vectors;
#[cfg(target_os = "none")]
mod virtio;
#[cfg(target_os = "none")]
mod virtio_blk;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "testguest is a bare-metal AArch64 guest for the VMM: build it for aarch64-unknown-none \
         and flatten it into an arm64 Image (see guests/testguest/README.md)"
    );
}
