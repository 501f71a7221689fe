//! A simulated kernel for formally-scoped component tests.
//!
//! A [`Sim`] is built from one PD's [`sdf::PdScope`]: exactly the channels, IRQs, memory regions,
//! children and vCPUs system.xml grants it. The PD's handler owns a [`SimKernel`] and runs in the
//! real [`microkit_rt::event_loop::EventLoop`] over a [`SimTransport`]; the test delivers
//! notifications, IRQs, protected calls and faults, and reads back every kernel invocation the PD
//! made. Anything outside the scope — notifying a channel it may not, calling a vCPU it does not
//! have, a peer notifying over a channel whose far end has `notify="false"` — is refused: the
//! kernel side returns the error the real kernel would and records a [`Violation`], and the
//! delivery side fails the test.

use microkit_rt::abi::{MSG_MAX_LENGTH, MessageInfo, badge, error, user_context, vcpu_reg};
use microkit_rt::event_loop::{EventLoop, Grants, Transport};
use microkit_rt::kernel::SMC_REGS;
use microkit_rt::{Channel, Child, Kernel, KernelError, SharedRegion};
use sdf::PdScope;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

/// List registers of the simulated GIC virtual CPU interface (GIC-400 in QEMU virt has 4).
pub const SIM_LIST_REGISTERS: u8 = 4;

/// One kernel operation the PD performed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// seL4_Signal to a channel's peer.
    Notify(u8),
    /// IRQHandler Ack.
    IrqAck(u8),
    /// seL4_Call to a channel's peer with these message registers.
    PpCall { ch: u8, label: u64, mrs: Vec<u64> },
    /// TCB ReadRegisters of a VM thread.
    VmReadRegisters { vcpu: u8, count: usize },
    /// TCB WriteRegisters of a VM thread.
    VmWriteRegisters {
        vcpu: u8,
        resume: bool,
        regs: Vec<u64>,
    },
    /// TCB ReadRegisters of a child PD's thread.
    ChildReadRegisters { child: u8, count: usize },
    /// TCB WriteRegisters of a child PD's thread.
    ChildWriteRegisters {
        child: u8,
        resume: bool,
        regs: Vec<u64>,
    },
    /// TCB Resume of a VM thread.
    VmResume(u8),
    /// TCB Suspend of a VM thread.
    VmSuspend(u8),
    /// ARM VCPU ReadReg.
    VcpuReadReg { vcpu: u8, field: u64 },
    /// ARM VCPU WriteReg.
    VcpuWriteReg { vcpu: u8, field: u64, value: u64 },
    /// ARM VCPU InjectIRQ.
    VcpuInjectIrq {
        vcpu: u8,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    },
    /// ARM VCPU AckVPPI.
    VcpuAckVppi { vcpu: u8, irq: u64 },
    /// The EL1 physical timer programmed to fire at this count, or stopped (`None`).
    TimerSet(Option<u64>),
    /// ARM SMC Call with x0..x7 (the simulated firmware answers x0 = -1, SMCCC NOT_SUPPORTED).
    ArmSmcCall([u64; SMC_REGS]),
    /// The event loop replied (to a protected call or a fault) with this label and registers.
    Reply { label: u64, mrs: Vec<u64> },
    /// The event loop sent a signal to a capability slot (deferred action, passive start-up).
    Signal { slot: u64, label: u64 },
}

/// The EL1 physical timer's interrupt (PPI 30).
pub const EL1_PHYS_TIMER_IRQ: u64 = 30;

/// The counter frequency QEMU virt reports (CNTFRQ_EL0: 62.5 MHz), the simulation's default.
pub const QEMU_VIRT_TIMER_HZ: u64 = 62_500_000;

/// Something the PD tried that system.xml does not grant it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

/// State of one simulated vCPU: its thread's user context and its vCPU registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimVcpu {
    /// User context in `abi::user_context` order.
    pub context: [u64; user_context::LEN],
    /// vCPU registers by `abi::vcpu_reg` field.
    pub regs: [u64; vcpu_reg::NUM as usize],
    /// Whether the thread runs.
    pub running: bool,
}

/// State of one simulated child PD's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimChild {
    /// User context in `abi::user_context` order (as the Microkit tool starts it: PC at the
    /// ELF's entry, SP at the stack top; tests set it with [`Sim::with_child`]).
    pub context: [u64; user_context::LEN],
    /// Whether the thread runs (false while it waits on its fault, until restarted).
    pub running: bool,
}

type Responder = Box<dyn FnMut(u8, MessageInfo, &mut [u64; MSG_MAX_LENGTH]) -> MessageInfo>;

struct State {
    scope: PdScope,
    mrs: [u64; MSG_MAX_LENGTH],
    log: Vec<Invocation>,
    violations: Vec<Violation>,
    console: String,
    /// A debug kernel (the default): `debug_write` reaches `console`; else it is dropped.
    debug_console: bool,
    events: VecDeque<(u64, MessageInfo, Vec<u64>)>,
    vcpus: BTreeMap<u8, SimVcpu>,
    /// Child PDs' threads: user context (`abi::user_context` order) and whether they run.
    children: BTreeMap<u8, SimChild>,
    responder: Option<Responder>,
    /// The EL1 physical timer's count (tests move it: [`Sim::set_timer_now`]).
    timer_now: u64,
    /// The counter's frequency in Hz ([`Sim::set_timer_frequency`]; QEMU virt's by default).
    timer_frequency: u64,
    /// The event the PD took last (its badge and message info): a reply answers it.
    last_event: Option<(u64, MessageInfo)>,
    /// vCPUs every invocation on which the kernel refuses ([`Sim::refuse_vcpu`]).
    refused_vcpus: BTreeSet<u8>,
}

impl State {
    fn channel(&self, ch: Channel) -> Option<&sdf::scope::ChannelScope> {
        self.scope
            .channels
            .iter()
            .find(|c| c.id == ch.index() as u64)
    }
    fn violate(&mut self, what: String) {
        self.violations.push(Violation(what));
    }
    fn vcpu(&mut self, v: Child, op: &str) -> Result<&mut SimVcpu, KernelError> {
        if !self.vcpus.contains_key(&v.index()) {
            let name = self.scope.name.clone();
            self.violate(format!(
                "{name}: {op} on vCPU {} it does not have",
                v.index()
            ));
            return Err(KernelError::Sel4(error::INVALID_CAPABILITY));
        }
        if self.refused_vcpus.contains(&v.index()) {
            return Err(KernelError::Sel4(error::ILLEGAL_OPERATION));
        }
        Ok(self.vcpus.get_mut(&v.index()).expect("checked"))
    }
    /// TCB ReadRegisters' effect: the first `out.len()` words of `ctx` into `out` and, as on
    /// seL4, into the message registers (the fault message that was there is gone).
    fn registers_read(&mut self, ctx: &[u64; user_context::LEN], out: &mut [u64]) {
        out.copy_from_slice(&ctx[..out.len()]);
        self.mrs[..out.len()].copy_from_slice(&ctx[..out.len()]);
    }
    /// TCB WriteRegisters' message registers: flags, count, then the registers.
    fn registers_written(&mut self, resume: bool, regs: &[u64]) {
        self.mrs[0] = resume as u64;
        self.mrs[1] = regs.len() as u64;
        self.mrs[2..2 + regs.len()].copy_from_slice(regs);
    }
    fn child(&mut self, c: Child, op: &str) -> Result<&mut SimChild, KernelError> {
        if !self.children.contains_key(&c.index()) {
            let name = self.scope.name.clone();
            self.violate(format!(
                "{name}: {op} on child {} it does not have",
                c.index()
            ));
            return Err(KernelError::Sel4(error::INVALID_CAPABILITY));
        }
        Ok(self.children.get_mut(&c.index()).expect("checked"))
    }
}

/// The test's handle on a simulated kernel for one PD.
#[derive(Clone)]
pub struct Sim(Rc<RefCell<State>>);

/// The kernel handed to the PD's handler.
#[derive(Clone)]
pub struct SimKernel(Rc<RefCell<State>>);

/// The event loop's syscalls, served from the events the test queued.
pub struct SimTransport(Rc<RefCell<State>>);

impl Sim {
    /// A simulated kernel with exactly the scope system.xml gives PD `pd`.
    pub fn new(sys: &sdf::System, pd: &str) -> Result<Sim, String> {
        let scope =
            PdScope::of(sys, pd).ok_or_else(|| format!("no PD named '{pd}' in system.xml"))?;
        let vcpus = scope
            .vm
            .iter()
            .flat_map(|vm| vm.vcpus.iter())
            .map(|&v| {
                let v = v as u8;
                (
                    v,
                    SimVcpu {
                        context: [0; user_context::LEN],
                        regs: [0; vcpu_reg::NUM as usize],
                        running: false,
                    },
                )
            })
            .collect();
        let children = scope
            .children
            .iter()
            .map(|c| {
                (
                    c.id as u8,
                    SimChild {
                        context: [0; user_context::LEN],
                        running: true,
                    },
                )
            })
            .collect();
        Ok(Sim(Rc::new(RefCell::new(State {
            scope,
            mrs: [0; MSG_MAX_LENGTH],
            log: vec![],
            violations: vec![],
            console: String::new(),
            debug_console: true,
            events: VecDeque::new(),
            vcpus,
            children,
            responder: None,
            timer_now: 0,
            timer_frequency: QEMU_VIRT_TIMER_HZ,
            last_event: None,
            refused_vcpus: BTreeSet::new(),
        }))))
    }

    /// Simulates a release kernel: the debug console drops everything (and says it has none).
    pub fn release_kernel(self) -> Sim {
        self.0.borrow_mut().debug_console = false;
        self
    }

    /// Loads the system description `pd`'s crate is generated from (see
    /// `sdf::codegen::system_for`: production system.xml, or with the test overlay for a PD
    /// only the test system has, or `$SYSTEM_XML`) and builds the simulation for `pd`.
    pub fn from_repo_system(pd: &str) -> Sim {
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (sys, _) = sdf::codegen::system_for(pd, here).unwrap_or_else(|e| panic!("{e}"));
        Sim::new(&sys, pd).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The PD's scope.
    pub fn scope(&self) -> PdScope {
        self.0.borrow().scope.clone()
    }

    /// The kernel to give the PD's handler.
    pub fn kernel(&self) -> SimKernel {
        SimKernel(self.0.clone())
    }

    /// An event loop over this simulation, with the grants the tool would patch in.
    pub fn event_loop(&self) -> EventLoop<SimTransport> {
        let s = &self.0.borrow().scope;
        let grants = Grants {
            irqs: s.irq_mask(),
            notifications: s.notification_mask(),
            pps: s.pp_mask(),
            passive: s.passive,
        };
        EventLoop::new(SimTransport(self.0.clone()), grants)
    }

    /// A buffer standing in for the mapping of region `mr`, if the PD maps it (leaked: a test
    /// process is short-lived, and the region must outlive every handler that holds it).
    pub fn region(&self, mr: &str) -> Option<SharedRegion> {
        let size = self.0.borrow().scope.map(mr)?.size as usize;
        let buf: &'static mut [u8] = Box::leak(vec![0u8; size].into_boxed_slice());
        // SAFETY: the buffer is leaked, so it lives for the rest of the process, and no Rust
        // reference to it survives this function.
        Some(unsafe { SharedRegion::from_raw(buf.as_mut_ptr(), size) })
    }

    /// A second region sharing the same memory as `region` (the peer PD's view of it).
    pub fn alias(region: &SharedRegion) -> SharedRegion {
        // SAFETY: same memory as an existing region, which is leaked memory (see `region`).
        unsafe { SharedRegion::from_raw(region.base(), region.size()) }
    }

    fn queue(&self, badge: u64, info: MessageInfo, mrs: &[u64]) {
        self.0
            .borrow_mut()
            .events
            .push_back((badge, info, mrs.to_vec()));
    }

    /// The peer of `ch` notifies this PD. Fails the test if system.xml does not let it.
    pub fn notify_from_peer(&self, ch: Channel) {
        let ok = self
            .0
            .borrow()
            .channel(ch)
            .is_some_and(|c| c.notified_by_peer);
        assert!(
            ok,
            "system.xml does not let the peer notify {} on channel {}",
            self.0.borrow().scope.name,
            ch.index()
        );
        self.queue(1 << ch.index(), MessageInfo::new(0, 0), &[]);
    }

    /// The hardware IRQ on channel `ch` fires. Fails the test if it is not this PD's IRQ.
    pub fn irq(&self, ch: Channel) {
        let ok = self
            .0
            .borrow()
            .scope
            .irqs
            .iter()
            .any(|i| i.id == ch.index() as u64);
        assert!(
            ok,
            "channel {} is not an IRQ of {}",
            ch.index(),
            self.0.borrow().scope.name
        );
        self.queue(1 << ch.index(), MessageInfo::new(0, 0), &[]);
    }

    /// The peer of `ch` calls this PD with `label` and message registers `mrs`.
    pub fn ppcall_from_peer(&self, ch: Channel, label: u64, mrs: &[u64]) {
        let ok = self
            .0
            .borrow()
            .channel(ch)
            .is_some_and(|c| c.called_by_peer);
        assert!(
            ok,
            "system.xml does not let the peer call {} on channel {}",
            self.0.borrow().scope.name,
            ch.index()
        );
        self.queue(
            1 << badge::ENDPOINT_BIT | ch.index() as u64,
            MessageInfo::new(label, mrs.len()),
            mrs,
        );
    }

    /// vCPU (or child) `child` faults with `label` and message registers `mrs` (a child PD's
    /// thread stops running until it is restarted or answered).
    pub fn fault(&self, child: Child, label: u64, mrs: &[u64]) {
        if let Some(c) = self.0.borrow_mut().children.get_mut(&child.index()) {
            c.running = false;
        }
        let s = self.0.borrow();
        let ok = s.vcpus.contains_key(&child.index())
            || s.scope
                .children
                .iter()
                .any(|c| c.id == child.index() as u64);
        assert!(
            ok,
            "{} has no child or vCPU {}",
            s.scope.name,
            child.index()
        );
        drop(s);
        self.queue(
            1 << badge::FAULT_BIT | child.index() as u64,
            MessageInfo::new(label, mrs.len()),
            mrs,
        );
    }

    /// Queues a raw badge, bypassing the scope checks (to test the loop against a bad kernel).
    pub fn raw_event(&self, badge: u64, info: MessageInfo, mrs: &[u64]) {
        self.queue(badge, info, mrs);
    }

    /// How the peer answers this PD's protected calls: `(channel, info, mrs) -> reply info`.
    pub fn on_ppcall(
        &self,
        f: impl FnMut(u8, MessageInfo, &mut [u64; MSG_MAX_LENGTH]) -> MessageInfo + 'static,
    ) {
        self.0.borrow_mut().responder = Some(Box::new(f));
    }

    /// Takes the invocations recorded so far.
    pub fn take_log(&self) -> Vec<Invocation> {
        std::mem::take(&mut self.0.borrow_mut().log)
    }

    /// Everything the PD printed on the debug console.
    pub fn console(&self) -> String {
        self.0.borrow().console.clone()
    }

    /// Scope violations so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.0.borrow().violations.clone()
    }

    /// Events queued and not yet received.
    pub fn pending_events(&self) -> usize {
        self.0.borrow().events.len()
    }

    /// Moves the EL1 physical timer's count (it does not move by itself).
    pub fn set_timer_now(&self, now: u64) {
        self.0.borrow_mut().timer_now = now;
    }

    /// Changes the counter's frequency (CNTFRQ_EL0).
    pub fn set_timer_frequency(&self, hz: u64) {
        self.0.borrow_mut().timer_frequency = hz;
    }

    /// Reads or changes a simulated child PD's thread.
    pub fn with_child<R>(&self, c: u8, f: impl FnOnce(&mut SimChild) -> R) -> R {
        let mut s = self.0.borrow_mut();
        f(s.children
            .get_mut(&c)
            .unwrap_or_else(|| panic!("no child {c} in scope")))
    }

    /// From now on the kernel refuses every invocation on vCPU `v` (its thread and its VCPU
    /// object) with an illegal-operation error, as for an object in a state the call does not
    /// allow: the PD's error paths. Not a violation: the capability is in scope.
    pub fn refuse_vcpu(&self, v: u8) {
        self.0.borrow_mut().refused_vcpus.insert(v);
    }

    /// Reads or changes a simulated vCPU.
    pub fn with_vcpu<R>(&self, v: u8, f: impl FnOnce(&mut SimVcpu) -> R) -> R {
        let mut s = self.0.borrow_mut();
        f(s.vcpus
            .get_mut(&v)
            .unwrap_or_else(|| panic!("no vCPU {v} in scope")))
    }
}

impl Kernel for SimKernel {
    fn holds_irq(&self, ch: Channel) -> bool {
        self.0
            .borrow()
            .scope
            .irqs
            .iter()
            .any(|i| i.id == ch.index() as u64)
    }
    fn may_call(&self, ch: Channel) -> bool {
        self.0.borrow().channel(ch).is_some_and(|c| c.may_call)
    }
    fn mr(&self, i: usize) -> u64 {
        self.0.borrow().mrs.get(i).copied().unwrap_or(0)
    }
    fn set_mr(&mut self, i: usize, value: u64) {
        if let Some(m) = self.0.borrow_mut().mrs.get_mut(i) {
            *m = value;
        }
    }
    fn notify(&mut self, ch: Channel) -> Result<(), KernelError> {
        let mut s = self.0.borrow_mut();
        if !s.channel(ch).is_some_and(|c| c.may_notify) {
            let name = s.scope.name.clone();
            s.violate(format!(
                "{name}: notify on channel {} not granted",
                ch.index()
            ));
            return Err(KernelError::ChannelNotGranted(ch));
        }
        s.log.push(Invocation::Notify(ch.index()));
        Ok(())
    }
    fn irq_ack(&mut self, ch: Channel) -> Result<(), KernelError> {
        let mut s = self.0.borrow_mut();
        if !s.scope.irqs.iter().any(|i| i.id == ch.index() as u64) {
            let name = s.scope.name.clone();
            s.violate(format!(
                "{name}: irq_ack on channel {} that is not an IRQ",
                ch.index()
            ));
            return Err(KernelError::ChannelNotGranted(ch));
        }
        s.log.push(Invocation::IrqAck(ch.index()));
        Ok(())
    }
    fn ppcall(&mut self, ch: Channel, msg: MessageInfo) -> Result<MessageInfo, KernelError> {
        let mut s = self.0.borrow_mut();
        if !s.channel(ch).is_some_and(|c| c.may_call) {
            let name = s.scope.name.clone();
            s.violate(format!(
                "{name}: ppcall on channel {} not granted",
                ch.index()
            ));
            return Err(KernelError::ChannelNotGranted(ch));
        }
        let mrs = s.mrs[..msg.length()].to_vec();
        s.log.push(Invocation::PpCall {
            ch: ch.index(),
            label: msg.label(),
            mrs,
        });
        let mut responder = s.responder.take();
        let mut regs = s.mrs;
        drop(s);
        let reply = match responder.as_mut() {
            Some(f) => f(ch.index(), msg, &mut regs),
            None => MessageInfo::new(error::ILLEGAL_OPERATION, 0),
        };
        let mut s = self.0.borrow_mut();
        s.mrs = regs;
        s.responder = responder;
        Ok(reply)
    }
    fn vm_read_registers(&mut self, vcpu: Child, out: &mut [u64]) -> Result<(), KernelError> {
        if out.len() > user_context::LEN {
            return Err(KernelError::TooManyRegisters(out.len()));
        }
        let mut s = self.0.borrow_mut();
        let ctx = s.vcpu(vcpu, "ReadRegisters")?.context;
        s.registers_read(&ctx, out);
        s.log.push(Invocation::VmReadRegisters {
            vcpu: vcpu.index(),
            count: out.len(),
        });
        Ok(())
    }
    fn vm_write_registers(
        &mut self,
        vcpu: Child,
        resume: bool,
        regs: &[u64],
    ) -> Result<(), KernelError> {
        if regs.len() > user_context::LEN {
            return Err(KernelError::TooManyRegisters(regs.len()));
        }
        let mut s = self.0.borrow_mut();
        let v = s.vcpu(vcpu, "WriteRegisters")?;
        v.context[..regs.len()].copy_from_slice(regs);
        v.running |= resume;
        s.registers_written(resume, regs);
        s.log.push(Invocation::VmWriteRegisters {
            vcpu: vcpu.index(),
            resume,
            regs: regs.to_vec(),
        });
        Ok(())
    }
    fn child_read_registers(&mut self, child: Child, out: &mut [u64]) -> Result<(), KernelError> {
        if out.len() > user_context::LEN {
            return Err(KernelError::TooManyRegisters(out.len()));
        }
        let mut s = self.0.borrow_mut();
        let ctx = s.child(child, "ReadRegisters")?.context;
        s.registers_read(&ctx, out);
        s.log.push(Invocation::ChildReadRegisters {
            child: child.index(),
            count: out.len(),
        });
        Ok(())
    }
    fn child_write_registers(
        &mut self,
        child: Child,
        resume: bool,
        regs: &[u64],
    ) -> Result<(), KernelError> {
        if regs.len() > user_context::LEN {
            return Err(KernelError::TooManyRegisters(regs.len()));
        }
        let mut s = self.0.borrow_mut();
        let c = s.child(child, "WriteRegisters")?;
        c.context[..regs.len()].copy_from_slice(regs);
        c.running |= resume;
        s.registers_written(resume, regs);
        s.log.push(Invocation::ChildWriteRegisters {
            child: child.index(),
            resume,
            regs: regs.to_vec(),
        });
        Ok(())
    }
    fn vm_resume(&mut self, vcpu: Child) -> Result<(), KernelError> {
        let mut s = self.0.borrow_mut();
        s.vcpu(vcpu, "Resume")?.running = true;
        s.log.push(Invocation::VmResume(vcpu.index()));
        Ok(())
    }
    fn vm_suspend(&mut self, vcpu: Child) -> Result<(), KernelError> {
        let mut s = self.0.borrow_mut();
        s.vcpu(vcpu, "Suspend")?.running = false;
        s.log.push(Invocation::VmSuspend(vcpu.index()));
        Ok(())
    }
    fn vcpu_read_reg(&mut self, vcpu: Child, field: u64) -> Result<u64, KernelError> {
        let mut s = self.0.borrow_mut();
        let v = s.vcpu(vcpu, "VCPU ReadReg")?;
        let value = *v
            .regs
            .get(field as usize)
            .ok_or(KernelError::Sel4(error::INVALID_ARGUMENT))?;
        s.mrs[0] = value; // the reply's MR0, as on seL4
        s.log.push(Invocation::VcpuReadReg {
            vcpu: vcpu.index(),
            field,
        });
        Ok(value)
    }
    fn vcpu_write_reg(&mut self, vcpu: Child, field: u64, value: u64) -> Result<(), KernelError> {
        let mut s = self.0.borrow_mut();
        let v = s.vcpu(vcpu, "VCPU WriteReg")?;
        *v.regs
            .get_mut(field as usize)
            .ok_or(KernelError::Sel4(error::INVALID_ARGUMENT))? = value;
        s.log.push(Invocation::VcpuWriteReg {
            vcpu: vcpu.index(),
            field,
            value,
        });
        Ok(())
    }
    fn vcpu_inject_irq(
        &mut self,
        vcpu: Child,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<(), KernelError> {
        let mut s = self.0.borrow_mut();
        s.vcpu(vcpu, "VCPU InjectIRQ")?;
        // seL4's decodeVCPUInjectIRQ: virq below 1024, a 5-bit priority, group 0 or 1, and an
        // index below the number of list registers (4 on QEMU virt's GIC-400).
        if virq > 1023 || priority > 31 || group > 1 || index >= SIM_LIST_REGISTERS {
            return Err(KernelError::Sel4(error::RANGE_ERROR));
        }
        s.log.push(Invocation::VcpuInjectIrq {
            vcpu: vcpu.index(),
            virq,
            priority,
            group,
            index,
        });
        Ok(())
    }
    fn vcpu_ack_vppi(&mut self, vcpu: Child, irq: u64) -> Result<(), KernelError> {
        let mut s = self.0.borrow_mut();
        s.vcpu(vcpu, "VCPU AckVPPI")?;
        s.log.push(Invocation::VcpuAckVppi {
            vcpu: vcpu.index(),
            irq,
        });
        Ok(())
    }
    fn arm_smc_call(&mut self, args: &[u64; SMC_REGS]) -> Result<[u64; SMC_REGS], KernelError> {
        let mut s = self.0.borrow_mut();
        if !s.scope.smc {
            let name = s.scope.name.clone();
            s.violate(format!("{name}: SMC call without smc=\"true\""));
            return Err(KernelError::Sel4(error::INVALID_CAPABILITY));
        }
        s.log.push(Invocation::ArmSmcCall(*args));
        let mut out = [0; SMC_REGS];
        out[0] = u64::MAX;
        s.mrs[..SMC_REGS].copy_from_slice(&out);
        Ok(out)
    }
    fn timer_now(&self) -> u64 {
        self.0.borrow().timer_now
    }
    fn timer_frequency(&self) -> u64 {
        self.0.borrow().timer_frequency
    }
    fn timer_set(&mut self, deadline: Option<u64>) {
        let mut s = self.0.borrow_mut();
        // The timer is only of use with its interrupt: PPI 30 must be one of the PD's IRQs.
        if !s.scope.irqs.iter().any(|i| i.irq == EL1_PHYS_TIMER_IRQ) {
            let name = s.scope.name.clone();
            s.violate(format!(
                "{name}: programs the EL1 physical timer without its IRQ {EL1_PHYS_TIMER_IRQ}"
            ));
        }
        s.log.push(Invocation::TimerSet(deadline));
    }
    fn debug_write(&mut self, bytes: &[u8]) {
        let mut s = self.0.borrow_mut();
        if s.debug_console {
            s.console.push_str(&String::from_utf8_lossy(bytes));
        }
    }

    fn has_debug_console(&self) -> bool {
        self.0.borrow().debug_console
    }
}

impl SimTransport {
    fn next(&mut self) -> (u64, MessageInfo) {
        let mut s = self.0.borrow_mut();
        let (badge, info, mrs) = s
            .events
            .pop_front()
            .expect("the PD waits for an event but the test queued none");
        s.mrs[..mrs.len()].copy_from_slice(&mrs);
        s.last_event = Some((badge, info));
        (badge, info)
    }
    fn record_reply(&mut self, reply: MessageInfo) {
        let mut s = self.0.borrow_mut();
        let mrs = s.mrs[..reply.length()].to_vec();
        // As seL4's handleFaultReply: the reply to a vCPU's UnknownSyscall fault writes its
        // message registers back into the thread (x0..x7, FaultIP, SP, ELR, SPSR); the restart
        // then resumes it at FaultIP (ELR, NextIP, is overwritten with it).
        if let Some((badge, info)) = s.last_event
            && badge >> badge::FAULT_BIT & 1 == 1
            && info.label() == microkit_rt::abi::fault_label::UNKNOWN_SYSCALL
        {
            use microkit_rt::abi::unknown_syscall as us;
            let vcpu = (badge & badge::CHILD_MASK) as u8;
            if let Some(v) = s.vcpus.get_mut(&vcpu) {
                for (i, &value) in mrs.iter().enumerate().take(us::LEN) {
                    let reg = match i {
                        us::FAULT_IP => user_context::PC,
                        us::ELR => continue,
                        us::SP => user_context::SP,
                        us::SPSR => user_context::SPSR,
                        n => match user_context::gpr_index(n as u8) {
                            Some(r) => r,
                            None => continue,
                        },
                    };
                    v.context[reg] = value;
                }
            }
        }
        s.log.push(Invocation::Reply {
            label: reply.label(),
            mrs,
        });
    }
}

impl Transport for SimTransport {
    fn recv(&mut self) -> (u64, MessageInfo) {
        self.next()
    }
    fn reply_recv(&mut self, reply: MessageInfo) -> (u64, MessageInfo) {
        self.record_reply(reply);
        self.next()
    }
    fn nb_send_recv(&mut self, dest: u64, msg: MessageInfo) -> (u64, MessageInfo) {
        self.send(dest, msg);
        self.next()
    }
    fn send(&mut self, dest: u64, msg: MessageInfo) {
        self.0.borrow_mut().log.push(Invocation::Signal {
            slot: dest,
            label: msg.label(),
        });
    }
    fn irq_ack(&mut self, irq_slot: u64) {
        let ch = (irq_slot - microkit_rt::abi::slot::BASE_IRQ) as u8;
        self.0.borrow_mut().log.push(Invocation::IrqAck(ch));
    }
    fn report(&mut self, what: &str, detail: &dyn std::fmt::Display) {
        let mut s = self.0.borrow_mut();
        let line = format!("{}: {what}: {detail}\n", s.scope.name);
        if s.debug_console {
            s.console.push_str(&line);
        }
    }
}
