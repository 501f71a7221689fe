//! The driver domains' monitor PD `driver_monitor`: the Microkit parent of the serial driver
//! and the block driver, so the kernel delivers their faults to its [`Handler::fault`] entry.
//!
//! - **Start state.** At initialisation, before any child has run (the monitor outranks them,
//!   so it runs first), it reads each child's PC, SP and SPSR with TCB ReadRegisters: the entry
//!   point and stack top the Microkit tool gave it.
//! - **A fault.** It decodes the fault message ([`Fault`]: VM fault with address and syndrome,
//!   user exception, unknown syscall, capability fault, timeout), logs it with the child's name,
//!   the PC and the time, and restarts the child: TCB WriteRegisters with the start state and
//!   `resume`, which takes the thread off its fault IPC and runs it from its entry point on a
//!   fresh stack (the fault is not answered). The child's own initialisation then rebuilds its
//!   state: a driver keeps all of it on its stack (see the README on restarts: its `.bss` holds
//!   only what the Microkit tool patched in, which it never writes), re-initialises its device
//!   and re-attaches to its queues, whose indices live in shared memory.
//! - **Limits.** A child whose start state could not be read is not restarted, nor one that
//!   faulted [`MAX_RESTARTS`] times (a driver that cannot start would otherwise loop); both are
//!   logged. Restart counts and the last fault of each child are kept ([`Monitor::watched`])
//!   and printed with each restart.
//!
//! Its authority: the children's TCBs (Microkit gives a parent those), its own serial TX queue
//! and the notification that goes with it. It maps neither guest RAM nor any driver's queues or
//! data regions.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

use microkit_rt::abi::{fault_label, unknown_syscall, user_context};
use microkit_rt::{Child, FaultReply, Handler, Kernel, MessageInfo};
pub use serial_client::Console;
use serial_client::serial_println;

/// Constants generated from the system description (see build.rs).
#[allow(non_upper_case_globals, dead_code, missing_docs, unsafe_code)]
pub mod system {
    include!(concat!(env!("OUT_DIR"), "/system.rs"));
}

/// Children the monitor can watch.
pub const MAX_CHILDREN: usize = 8;
/// Faults after which a child is left stopped.
pub const MAX_RESTARTS: u32 = 1000;
/// Words of the start state: PC, SP, SPSR (`abi::user_context` order).
pub const START_REGS: usize = 3;

/// One child to watch: its id and its name (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildDef {
    /// Child id (system.xml's `id`).
    pub child: Child,
    /// PD name.
    pub name: &'static str,
}

/// The children system.xml gives this PD.
pub fn children() -> [ChildDef; 2] {
    [
        ChildDef {
            child: system::CHILD_SERIAL_DRIVER,
            name: "serial_driver",
        },
        ChildDef {
            child: system::CHILD_BLK_DRIVER,
            name: "blk_driver",
        },
    ]
}

/// The console over the serial TX queue system.xml gives this PD.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn system_console() -> Console<'static> {
    Console::from_regions(
        system::SERIAL_DRIVER,
        system::serial_tx_queue_driver_monitor_region(),
        system::serial_tx_data_driver_monitor_region(),
    )
}

/// A child's fault, decoded from the fault message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A VM fault: the instruction at `pc` accessed `addr` (`fsr`: the syndrome; an
    /// instruction fetch when `prefetch`).
    Vm {
        /// Faulting instruction.
        pc: u64,
        /// Address accessed.
        addr: u64,
        /// Instruction fetch.
        prefetch: bool,
        /// Fault status (ESR).
        fsr: u64,
    },
    /// An exception the kernel does not handle (undefined instruction, alignment…).
    User {
        /// Faulting instruction.
        pc: u64,
        /// Exception number.
        number: u64,
        /// Exception code.
        code: u64,
    },
    /// A system call the kernel does not know.
    UnknownSyscall {
        /// The `svc`'s address.
        pc: u64,
        /// Its number.
        number: u64,
    },
    /// A capability fault (an invocation of a missing capability).
    Cap {
        /// Faulting instruction.
        pc: u64,
        /// Capability address.
        cptr: u64,
    },
    /// A scheduling-context timeout.
    Timeout,
    /// Any other label, with its first message register.
    Other {
        /// Label.
        label: u64,
        /// MR0.
        mr0: u64,
    },
}

impl Fault {
    /// Decodes fault `label` from message registers read through `mr`.
    pub fn decode(label: u64, mr: impl Fn(usize) -> u64) -> Fault {
        match label {
            fault_label::VM_FAULT => Fault::Vm {
                pc: mr(0),
                addr: mr(1),
                prefetch: mr(2) != 0,
                fsr: mr(3),
            },
            fault_label::USER_EXCEPTION => Fault::User {
                pc: mr(0),
                number: mr(3),
                code: mr(4),
            },
            fault_label::UNKNOWN_SYSCALL => Fault::UnknownSyscall {
                pc: mr(unknown_syscall::FAULT_IP),
                number: mr(unknown_syscall::SYSCALL),
            },
            fault_label::CAP_FAULT => Fault::Cap {
                pc: mr(0),
                cptr: mr(1),
            },
            fault_label::TIMEOUT => Fault::Timeout,
            label => Fault::Other { label, mr0: mr(0) },
        }
    }

    /// The faulting PC, where the message has one.
    pub fn pc(&self) -> Option<u64> {
        match *self {
            Fault::Vm { pc, .. }
            | Fault::User { pc, .. }
            | Fault::UnknownSyscall { pc, .. }
            | Fault::Cap { pc, .. } => Some(pc),
            Fault::Timeout | Fault::Other { .. } => None,
        }
    }
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Fault::Vm {
                pc,
                addr,
                prefetch,
                fsr,
            } => write!(
                f,
                "VM fault ({}) at address {addr:#x}, pc {pc:#x}, fsr {fsr:#x}",
                if prefetch { "fetch" } else { "data" }
            ),
            Fault::User { pc, number, code } => {
                write!(f, "user exception {number} (code {code:#x}), pc {pc:#x}")
            }
            Fault::UnknownSyscall { pc, number } => {
                write!(f, "unknown syscall {}, pc {pc:#x}", number as i64)
            }
            Fault::Cap { pc, cptr } => write!(f, "capability fault on {cptr:#x}, pc {pc:#x}"),
            Fault::Timeout => f.write_str("timeout fault"),
            Fault::Other { label, mr0 } => write!(f, "fault label {label} (mr0 {mr0:#x})"),
        }
    }
}

/// What the monitor knows of one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    /// Which child.
    pub def: ChildDef,
    /// Its start state (PC, SP, SPSR), if it could be read.
    pub start: Option<[u64; START_REGS]>,
    /// Restarts made.
    pub restarts: u32,
    /// Its last fault and when (timer ticks).
    pub last: Option<(Fault, u64)>,
}

/// What can go wrong in the monitor (logged by the event loop; the monitor goes on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorError {
    /// A fault from a child system.xml does not give this PD.
    UnknownChild(u8),
}

impl core::fmt::Display for MonitorError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MonitorError::UnknownChild(c) => write!(f, "fault from unknown child {c}"),
        }
    }
}

/// The monitor: PD logic over a kernel `K`.
pub struct Monitor<'q, K: Kernel> {
    k: K,
    console: Console<'q>,
    children: heapless::Vec<Watched, MAX_CHILDREN>,
}

impl<'q, K: Kernel> Monitor<'q, K> {
    /// Reads each child's start state (children beyond [`MAX_CHILDREN`] are logged and not
    /// watched) and says what it watches.
    pub fn new(
        mut k: K,
        mut console: Console<'q>,
        defs: impl IntoIterator<Item = ChildDef>,
    ) -> Self {
        let mut children = heapless::Vec::new();
        for def in defs {
            let mut regs = [0u64; START_REGS];
            let start = match k.child_read_registers(def.child, &mut regs) {
                Ok(()) if regs[user_context::PC] != 0 => {
                    serial_println!(
                        console,
                        k,
                        "driver_monitor: watching {} (child {}): entry {:#x}, stack top {:#x}",
                        def.name,
                        def.child.index(),
                        regs[user_context::PC],
                        regs[user_context::SP]
                    );
                    Some(regs)
                }
                Ok(()) => {
                    serial_println!(
                        console,
                        k,
                        "driver_monitor: {}: no entry point: it will not be restarted",
                        def.name
                    );
                    None
                }
                Err(e) => {
                    serial_println!(
                        console,
                        k,
                        "driver_monitor: {}: cannot read its start state ({}): it will not be restarted",
                        def.name,
                        e
                    );
                    None
                }
            };
            let w = Watched {
                def,
                start,
                restarts: 0,
                last: None,
            };
            if children.push(w).is_err() {
                serial_println!(
                    console,
                    k,
                    "driver_monitor: {} not watched: more than {} children",
                    def.name,
                    MAX_CHILDREN
                );
            }
        }
        Monitor {
            k,
            console,
            children,
        }
    }

    /// What the monitor knows of `child`.
    pub fn watched(&self, child: Child) -> Option<&Watched> {
        self.children.iter().find(|w| w.def.child == child)
    }

    /// The kernel (tests look at what it recorded).
    pub fn kernel(&self) -> &K {
        &self.k
    }
}

impl<K: Kernel> Handler for Monitor<'_, K> {
    type Error = MonitorError;

    fn fault(&mut self, child: Child, msg_info: MessageInfo) -> Result<FaultReply, MonitorError> {
        // The message registers first: the restart's invocation overwrites them.
        let fault = Fault::decode(msg_info.label(), |i| self.k.mr(i));
        let now = self.k.timer_now();
        let Some(w) = self.children.iter_mut().find(|w| w.def.child == child) else {
            return Err(MonitorError::UnknownChild(child.index()));
        };
        w.last = Some((fault, now));
        let name = w.def.name;
        serial_println!(
            self.console,
            self.k,
            "driver_monitor: {} faulted: {} (t={})",
            name,
            fault,
            now
        );
        if w.restarts >= MAX_RESTARTS {
            serial_println!(
                self.console,
                self.k,
                "driver_monitor: {} not restarted: it faulted {} times after restarts; left stopped",
                name,
                w.restarts
            );
            return Ok(None);
        }
        let w = *w;
        let Some(start) = w.start else {
            serial_println!(
                self.console,
                self.k,
                "driver_monitor: {} not restarted: its start state is unknown; left stopped",
                name
            );
            return Ok(None);
        };
        match self.k.child_write_registers(child, true, &start) {
            Ok(()) => {
                let n = w.restarts + 1;
                if let Some(c) = self.children.iter_mut().find(|c| c.def.child == child) {
                    c.restarts = n;
                }
                serial_println!(
                    self.console,
                    self.k,
                    "driver_monitor: {} restarted from its entry {:#x} (restart {})",
                    name,
                    start[user_context::PC],
                    n
                );
            }
            Err(e) => serial_println!(
                self.console,
                self.k,
                "driver_monitor: {} not restarted: {}; left stopped",
                name,
                e
            ),
        }
        // Not answered: the restart took the thread off its fault.
        Ok(None)
    }

    /// The event loop's reports take the monitor's TX queue too.
    fn report(&mut self, what: &str, detail: &dyn core::fmt::Display) -> bool {
        serial_println!(self.console, self.k, "driver_monitor: {}: {}", what, detail);
        true
    }
}
