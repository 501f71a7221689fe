//! Isolation as a table: the grants each PD and each VM may hold ([`crate::policy_table`]), and
//! [`check`], which compares a system description with it. Every grant a system makes must be in
//! the table: regions (size, physical address), maps (region, permissions, cached), channel ends
//! (id, peer, protected calls), IRQs, the physical addresses a PD is told (`<setvar
//! region_paddr>`), parents, SMC, virtual machines and their maps. Guest memory (what a VM maps
//! that is not a device) reaches only the VM and the PD that owns it, whatever the table says.
//! A grant the table does not list is a [`Violation`] naming the subject, the item and the line.

use crate::model::{Perms, System, Trigger};
use std::fmt;

/// A memory region the policy knows.
#[derive(Debug, Clone, Copy)]
pub struct RegionRule {
    /// Region name.
    pub name: &'static str,
    /// Largest size in bytes.
    pub max_size: u64,
    /// Physical address it must have (device memory), or none (RAM the tool allocates).
    pub phys_addr: Option<u64>,
    /// Guest memory: only a VM and its owner may map it.
    pub guest_memory: bool,
}

/// A map a PD or VM may hold.
#[derive(Debug, Clone, Copy)]
pub struct MapRule {
    /// Region.
    pub mr: &'static str,
    /// Widest permissions ("r", "rw", "rx", "rwx").
    pub perms: &'static str,
    /// Cached attribute it must have.
    pub cached: bool,
}

/// A channel end a PD may hold.
#[derive(Debug, Clone, Copy)]
pub struct ChannelRule {
    /// Channel id in this PD.
    pub id: u64,
    /// The PD at the other end.
    pub peer: &'static str,
    /// This end may make protected calls (pp) to the peer.
    pub pp: bool,
}

/// An IRQ a PD may hold.
#[derive(Debug, Clone, Copy)]
pub struct IrqRule {
    /// Hardware interrupt number.
    pub irq: u64,
    /// Channel id.
    pub id: u64,
    /// Trigger mode.
    pub trigger: Trigger,
}

/// What one PD may hold.
#[derive(Debug, Clone, Copy)]
pub struct PdRule {
    /// PD name.
    pub name: &'static str,
    /// The PD that may be its parent (None: it must be a top-level PD).
    pub parent: Option<&'static str>,
    /// May hold an SMC capability.
    pub smc: bool,
    /// May map guest memory (only a VM's owner, and only its own VM's).
    pub may_map_guest_memory: bool,
    /// Maps.
    pub maps: &'static [MapRule],
    /// Channel ends.
    pub channels: &'static [ChannelRule],
    /// IRQs.
    pub irqs: &'static [IrqRule],
    /// Regions whose physical address it may be told (`<setvar region_paddr>`).
    pub paddrs: &'static [&'static str],
    /// The VM it may own.
    pub vm: Option<&'static str>,
}

/// What one VM may hold: its maps and vCPUs (its threads hold no capabilities: the system
/// description has no element that could give them one, and no channel may name a VM).
#[derive(Debug, Clone, Copy)]
pub struct VmRule {
    /// VM name.
    pub name: &'static str,
    /// Most vCPUs.
    pub max_vcpus: usize,
    /// Guest-physical maps.
    pub maps: &'static [MapRule],
}

/// The whole policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Regions.
    pub regions: &'static [RegionRule],
    /// PDs.
    pub pds: &'static [PdRule],
    /// VMs.
    pub vms: &'static [VmRule],
}

/// What grant is not in the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A region the policy does not list.
    UnknownRegion(String),
    /// A region larger than the policy allows.
    RegionSize {
        /// Region.
        mr: String,
        /// Its size.
        size: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A region at another physical address than the policy's (or with one where none is).
    RegionPhys {
        /// Region.
        mr: String,
        /// Its physical address.
        phys: Option<u64>,
    },
    /// A PD the policy does not list.
    UnknownPd,
    /// A VM the policy does not list, or that this PD may not own.
    Vm(String),
    /// A map of a region the subject may not map.
    Map(String),
    /// A map with permissions wider than allowed.
    Perms {
        /// Region.
        mr: String,
        /// Granted ("rw").
        granted: String,
        /// Allowed ("r").
        allowed: &'static str,
    },
    /// A map whose cached attribute differs from the policy's.
    Cached {
        /// Region.
        mr: String,
        /// Granted.
        cached: bool,
    },
    /// A map of guest memory by a PD that may not (a driver, or another VM's owner).
    GuestMemory(String),
    /// A channel end the policy does not list.
    Channel {
        /// Id in this PD.
        id: u64,
        /// Peer.
        peer: String,
    },
    /// A protected-call right the policy does not give.
    Pp {
        /// Id in this PD.
        id: u64,
        /// Peer.
        peer: String,
    },
    /// An IRQ the policy does not list.
    Irq(u64),
    /// A physical address the PD may not be told.
    Paddr(String),
    /// A parent the policy does not allow.
    Parent(Option<String>),
    /// An SMC capability the policy does not give.
    Smc,
    /// More vCPUs than allowed.
    Vcpus(usize),
    /// A channel end or PD named like a VM: a VM's threads hold no capabilities.
    VmCapability(String),
}

/// One grant not in the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Line in the system description.
    pub line: u32,
    /// PD, `vm:<name>` or `region:<name>`.
    pub subject: String,
    /// What.
    pub kind: Kind,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: ", self.line, self.subject)?;
        match &self.kind {
            Kind::UnknownRegion(m) => write!(f, "region '{m}' is not in the policy"),
            Kind::RegionSize { mr, size, max } => {
                write!(
                    f,
                    "region '{mr}' is {size:#x} bytes, the policy allows {max:#x}"
                )
            }
            Kind::RegionPhys { mr, phys } => {
                write!(f, "region '{mr}' at physical {phys:x?} is not the policy's")
            }
            Kind::UnknownPd => write!(f, "protection domain not in the policy"),
            Kind::Vm(v) => write!(f, "virtual machine '{v}' not allowed here"),
            Kind::Map(m) => write!(f, "map of '{m}' not in the policy"),
            Kind::Perms {
                mr,
                granted,
                allowed,
            } => write!(
                f,
                "map of '{mr}' with perms \"{granted}\", the policy allows \"{allowed}\""
            ),
            Kind::Cached { mr, cached } => {
                write!(
                    f,
                    "map of '{mr}' with cached={cached} differs from the policy"
                )
            }
            Kind::GuestMemory(m) => write!(f, "maps guest memory '{m}'"),
            Kind::Channel { id, peer } => {
                write!(f, "channel {id} to '{peer}' not in the policy")
            }
            Kind::Pp { id, peer } => {
                write!(
                    f,
                    "protected calls on channel {id} to '{peer}' not in the policy"
                )
            }
            Kind::Irq(i) => write!(f, "IRQ {i} not in the policy"),
            Kind::Paddr(m) => write!(f, "told the physical address of '{m}'"),
            Kind::Parent(p) => write!(f, "parent {p:?} not in the policy"),
            Kind::Smc => write!(f, "SMC capability not in the policy"),
            Kind::Vcpus(n) => write!(f, "{n} vCPUs, more than the policy allows"),
            Kind::VmCapability(v) => {
                write!(f, "names VM '{v}' as a PD: a VM holds no capabilities")
            }
        }
    }
}

fn perms_str(p: Perms) -> String {
    let mut s = String::new();
    if p.read {
        s.push('r');
    }
    if p.write {
        s.push('w');
    }
    if p.execute {
        s.push('x');
    }
    s
}

fn within(granted: Perms, allowed: &str) -> bool {
    (!granted.read || allowed.contains('r'))
        && (!granted.write || allowed.contains('w'))
        && (!granted.execute || allowed.contains('x'))
}

fn check_maps(
    policy: &Policy,
    subject: &str,
    maps: &[crate::model::Map],
    rules: &[MapRule],
    may_map_guest_memory: bool,
    out: &mut Vec<Violation>,
) {
    for m in maps {
        let mut v = |kind| {
            out.push(Violation {
                line: m.line,
                subject: subject.to_string(),
                kind,
            })
        };
        let guest = policy
            .regions
            .iter()
            .any(|r| r.name == m.mr && r.guest_memory);
        if guest && !may_map_guest_memory {
            v(Kind::GuestMemory(m.mr.clone()));
            continue;
        }
        let Some(rule) = rules.iter().find(|r| r.mr == m.mr) else {
            v(Kind::Map(m.mr.clone()));
            continue;
        };
        if !within(m.perms, rule.perms) {
            v(Kind::Perms {
                mr: m.mr.clone(),
                granted: perms_str(m.perms),
                allowed: rule.perms,
            });
        }
        if m.cached != rule.cached {
            v(Kind::Cached {
                mr: m.mr.clone(),
                cached: m.cached,
            });
        }
    }
}

/// Every grant of `sys` that `policy` does not list (empty: the system obeys the policy).
pub fn check(sys: &System, policy: &Policy) -> Vec<Violation> {
    let mut out = vec![];
    for r in &sys.memory_regions {
        let subject = format!("region:{}", r.name);
        let mut v = |kind| {
            out.push(Violation {
                line: r.line,
                subject: subject.clone(),
                kind,
            })
        };
        match policy.regions.iter().find(|p| p.name == r.name) {
            None => v(Kind::UnknownRegion(r.name.clone())),
            Some(rule) => {
                if r.size > rule.max_size {
                    v(Kind::RegionSize {
                        mr: r.name.clone(),
                        size: r.size,
                        max: rule.max_size,
                    });
                }
                if r.phys_addr != rule.phys_addr {
                    v(Kind::RegionPhys {
                        mr: r.name.clone(),
                        phys: r.phys_addr,
                    });
                }
            }
        }
    }
    // Guest memory, whatever the table says: what a VM maps (not a device) reaches no PD but the
    // VM's owner.
    for owner in &sys.pds {
        let Some(vm) = &owner.virtual_machine else {
            continue;
        };
        for m in &vm.maps {
            if sys.region(&m.mr).is_none_or(|r| r.phys_addr.is_some()) {
                continue;
            }
            for pd in sys.pds.iter().filter(|p| p.name != owner.name) {
                for pm in pd.maps.iter().filter(|pm| pm.mr == m.mr) {
                    out.push(Violation {
                        line: pm.line,
                        subject: pd.name.clone(),
                        kind: Kind::GuestMemory(m.mr.clone()),
                    });
                }
            }
        }
    }
    let vm_names: Vec<&str> = sys
        .pds
        .iter()
        .filter_map(|p| p.virtual_machine.as_ref().map(|v| v.name.as_str()))
        .collect();
    for pd in &sys.pds {
        let mut v = |line, kind| {
            out.push(Violation {
                line,
                subject: pd.name.clone(),
                kind,
            })
        };
        if vm_names.contains(&pd.name.as_str()) {
            v(pd.line, Kind::VmCapability(pd.name.clone()));
        }
        let Some(rule) = policy.pds.iter().find(|r| r.name == pd.name) else {
            v(pd.line, Kind::UnknownPd);
            continue;
        };
        if pd.smc && !rule.smc {
            v(pd.line, Kind::Smc);
        }
        let parent = pd
            .parent
            .and_then(|i| sys.pds.get(i))
            .map(|p| p.name.as_str());
        if parent != rule.parent {
            v(pd.line, Kind::Parent(parent.map(str::to_string)));
        }
        for i in &pd.irqs {
            let ok = rule
                .irqs
                .iter()
                .any(|r| r.irq == i.irq && r.id == i.id && r.trigger == i.trigger);
            if !ok {
                v(i.line, Kind::Irq(i.irq));
            }
        }
        for s in &pd.setvars {
            if !rule.paddrs.contains(&s.region_paddr.as_str()) {
                v(pd.line, Kind::Paddr(s.region_paddr.clone()));
            }
        }
        for c in &sys.channels {
            for (me, peer) in [(&c.a, &c.b), (&c.b, &c.a)] {
                if me.pd != pd.name {
                    continue;
                }
                let r = rule
                    .channels
                    .iter()
                    .find(|r| r.id == me.id && r.peer == peer.pd);
                match r {
                    None => v(
                        me.line,
                        Kind::Channel {
                            id: me.id,
                            peer: peer.pd.clone(),
                        },
                    ),
                    Some(r) if me.pp && !r.pp => v(
                        me.line,
                        Kind::Pp {
                            id: me.id,
                            peer: peer.pd.clone(),
                        },
                    ),
                    Some(_) => {}
                }
            }
        }
        check_maps(
            policy,
            &pd.name,
            &pd.maps,
            rule.maps,
            rule.may_map_guest_memory,
            &mut out,
        );
        if let Some(vm) = &pd.virtual_machine {
            let subject = format!("vm:{}", vm.name);
            let vrule = policy.vms.iter().find(|r| r.name == vm.name);
            match vrule {
                Some(vr) if rule.vm == Some(vr.name) => {
                    if vm.vcpus.len() > vr.max_vcpus {
                        out.push(Violation {
                            line: pd.line,
                            subject: subject.clone(),
                            kind: Kind::Vcpus(vm.vcpus.len()),
                        });
                    }
                    check_maps(policy, &subject, &vm.maps, vr.maps, true, &mut out);
                }
                _ => out.push(Violation {
                    line: pd.line,
                    subject: pd.name.clone(),
                    kind: Kind::Vm(vm.name.clone()),
                }),
            }
        }
    }
    for c in &sys.channels {
        for end in [&c.a, &c.b] {
            if vm_names.contains(&end.pd.as_str()) {
                out.push(Violation {
                    line: end.line,
                    subject: end.pd.clone(),
                    kind: Kind::VmCapability(end.pd.clone()),
                });
            }
        }
    }
    out
}
