//! A PD's formal scope: exactly the channels, IRQs, memory mappings, children and vCPUs that
//! system.xml grants it. Host tests build the simulated kernel from this and nothing else.

use crate::model::*;

/// One channel as seen from a PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelScope {
    /// Channel id in this PD.
    pub id: u64,
    /// The PD at the other end.
    pub peer: String,
    /// The peer's id for the same channel.
    pub peer_id: u64,
    /// This PD may notify the peer.
    pub may_notify: bool,
    /// The peer may notify this PD.
    pub notified_by_peer: bool,
    /// This PD may call the peer.
    pub may_call: bool,
    /// The peer may call this PD.
    pub called_by_peer: bool,
    /// Symbol patched with the id.
    pub setvar_id: Option<String>,
}

/// One mapping as seen from a PD (or its VM), with the region's size resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapScope {
    /// Region name.
    pub mr: String,
    /// Address in the PD (guest-physical for a VM map).
    pub vaddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Permissions.
    pub perms: Perms,
    /// Cached.
    pub cached: bool,
    /// Physical address, for device regions.
    pub phys_addr: Option<u64>,
    /// Symbol patched with `vaddr`.
    pub setvar_vaddr: Option<String>,
    /// Symbol patched with `size`.
    pub setvar_size: Option<String>,
}

/// A child PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildScope {
    /// Child id.
    pub id: u64,
    /// Name.
    pub name: String,
}

/// The VM a PD manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmScope {
    /// VM name.
    pub name: String,
    /// vCPU ids.
    pub vcpus: Vec<u64>,
    /// Guest-physical mappings.
    pub maps: Vec<MapScope>,
}

/// Everything system.xml grants one PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdScope {
    /// PD name.
    pub name: String,
    /// Priority.
    pub priority: u64,
    /// Passive.
    pub passive: bool,
    /// May make SMC calls (an SMC capability in its CSpace).
    pub smc: bool,
    /// Bytes of stack the Microkit tool gives the PD's thread.
    pub stack_size: u64,
    /// Channels to other PDs.
    pub channels: Vec<ChannelScope>,
    /// IRQs.
    pub irqs: Vec<Irq>,
    /// Mappings.
    pub maps: Vec<MapScope>,
    /// Child PDs.
    pub children: Vec<ChildScope>,
    /// VM, if any.
    pub vm: Option<VmScope>,
}

fn map_scope(sys: &System, m: &Map) -> MapScope {
    let r = sys.region(&m.mr);
    MapScope {
        mr: m.mr.clone(),
        vaddr: m.vaddr,
        size: r.map_or(0, |r| r.size),
        perms: m.perms,
        cached: m.cached,
        phys_addr: r.and_then(|r| r.phys_addr),
        setvar_vaddr: m.setvar_vaddr.clone(),
        setvar_size: m.setvar_size.clone(),
    }
}

impl PdScope {
    /// The scope of PD `name`, or None if there is no such PD.
    pub fn of(sys: &System, name: &str) -> Option<PdScope> {
        let index = sys.pds.iter().position(|p| p.name == name)?;
        let pd = &sys.pds[index];
        let mut channels = vec![];
        for c in &sys.channels {
            for (me, peer) in [(&c.a, &c.b), (&c.b, &c.a)] {
                if me.pd == name {
                    channels.push(ChannelScope {
                        id: me.id,
                        peer: peer.pd.clone(),
                        peer_id: peer.id,
                        may_notify: me.notify,
                        notified_by_peer: peer.notify,
                        may_call: me.pp,
                        called_by_peer: peer.pp,
                        setvar_id: me.setvar_id.clone(),
                    });
                }
            }
        }
        channels.sort_by_key(|c| c.id);
        Some(PdScope {
            name: pd.name.clone(),
            priority: pd.priority,
            passive: pd.passive,
            smc: pd.smc,
            stack_size: pd.stack_size,
            channels,
            irqs: pd.irqs.clone(),
            maps: pd.maps.iter().map(|m| map_scope(sys, m)).collect(),
            children: sys
                .pds
                .iter()
                .filter(|p| p.parent == Some(index))
                .map(|p| ChildScope {
                    id: p.child_id.unwrap_or(0),
                    name: p.name.clone(),
                })
                .collect(),
            vm: pd.virtual_machine.as_ref().map(|vm| VmScope {
                name: vm.name.clone(),
                vcpus: vm.vcpus.iter().map(|v| v.id).collect(),
                maps: vm.maps.iter().map(|m| map_scope(sys, m)).collect(),
            }),
        })
    }

    /// `microkit_irqs` as the tool patches it.
    pub fn irq_mask(&self) -> u64 {
        self.irqs.iter().fold(0, |m, i| m | 1 << i.id)
    }
    /// `microkit_notifications` as the tool patches it.
    pub fn notification_mask(&self) -> u64 {
        self.channels
            .iter()
            .filter(|c| c.may_notify)
            .fold(0, |m, c| m | 1 << c.id)
    }
    /// `microkit_pps` as the tool patches it.
    pub fn pp_mask(&self) -> u64 {
        self.channels
            .iter()
            .filter(|c| c.may_call)
            .fold(0, |m, c| m | 1 << c.id)
    }
    /// The mapping of region `mr`.
    pub fn map(&self, mr: &str) -> Option<&MapScope> {
        self.maps.iter().find(|m| m.mr == mr)
    }
    /// The channel to PD `peer` (the first, if several).
    pub fn channel_to(&self, peer: &str) -> Option<&ChannelScope> {
        self.channels.iter().find(|c| c.peer == peer)
    }
}
