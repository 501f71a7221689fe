//! The portable heart of the VMM: it turns a seL4 fault message for a guest vCPU into an action.
//!
//! Nothing here knows about seL4 capabilities or system calls: the VMM protection domain reads the
//! fault message, hands the words to [`fault`], and performs what the core decides through the
//! [`vcpu::Vcpu`] trait (register access) and [`memory::GuestMemory`] (guest RAM). Every path runs
//! in host tests. Guest-controlled values are validated and turned into typed errors; no panic is
//! reachable from guest input.
//!
//! Module map (one mechanism each):
//! - [`addr`]: address newtypes (guest-physical, guest-virtual, VMM-virtual).
//! - [`memory`]: the one checked accessor for guest RAM.
//! - [`vcpu`]: lazy register access, so an exit reads and writes only what it needs.
//! - [`fault`]: fault intake (seL4 fault messages).
//! - [`syndrome`]: ESR_EL2 decoding per exception class.
//! - [`insn`]: A64 load/store decoder for MMIO aborts without a valid syndrome.
//! - [`stage1`]: walk of the guest's stage-1 translation tables.
//! - [`interp`]: an A64 interpreter for short runs of guest code (all-or-nothing steps).
//! - [`handlers`]: the access-handler tree (ALL and WRITE kinds).
//! - [`mmio`]: MMIO emulation on top of the tree.
//! - [`inject`]: synchronous exception injection into the guest (ESR/FAR/ELR/SPSR, vector).
//! - [`vgic`]: GICv2 distributor model and virtual interrupt delivery.
//! - [`psci`]: PSCI 1.1 and SMCCC.
//! - [`loader`]: Linux arm64 Image, DTB and initrd placement and boot state.
//! - [`classify`]: trap classification (as VirtualBox's TRPM) and the exit path.
//! - [`stats`]: per-class and per-handler counters.
#![no_std]
#![forbid(unsafe_code)]

pub mod addr;
pub mod classify;
pub mod fault;
pub mod fdt_patch;
pub mod handlers;
pub mod inject;
pub mod insn;
pub mod interp;
pub mod loader;
pub mod memory;
pub mod mmio;
pub mod psci;
pub mod stage1;
pub mod stats;
pub mod syndrome;
pub mod uop;
pub mod vcpu;
pub mod vgic;
