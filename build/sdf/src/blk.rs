//! The block topology system.xml describes, by its naming rules: who is a block virtualiser's
//! client, which driver it faces, and where each client's data region lies in the driver's
//! data space. The block virtualiser's build script generates its client table from this
//! ([`build_script`]), so the number of clients is read from system.xml, never counted by hand.
//!
//! Naming rules (the ones system.xml already follows for the VMM's queues):
//!
//! - The queues between a block server (driver or virtualiser) and its client `P` are the
//!   regions `blk_req_queue_P`, `blk_resp_queue_P` and `blk_storage_info_P`; `P`'s data region
//!   is `blk_data_P`. A PD that maps `blk_req_queue_P` and has a channel to `P` serves `P`.
//! - A virtualiser `V` faces the driver that maps `blk_req_queue_V` (the driver's client is `V`).
//! - The driver's **data space** is the regions whose physical addresses it is told
//!   (`<setvar region_paddr="blk_data_*">`), laid end to end in system.xml's order: offset 0 is
//!   the first region's first byte. A request's `io_or_offset` at the driver is an offset into
//!   that space; with one client it is just the client's offset in its data region. The
//!   virtualiser adds the client's base in that space to the client's own offset.

use crate::model::System;
use crate::parse::SdfError;
use std::fmt::Write as _;

/// One region of a block driver's data space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataWindow {
    /// The region (`blk_data_P`).
    pub region: String,
    /// Its first byte's offset in the data space.
    pub base: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// One client of a block virtualiser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkClient {
    /// The client PD.
    pub name: String,
    /// The virtualiser's channel id to it.
    pub channel: u64,
    /// Its data region in the driver's data space.
    pub data: DataWindow,
}

fn err(message: String) -> SdfError {
    SdfError {
        line: 0,
        element: "protection_domain".into(),
        attribute: None,
        message,
    }
}

/// Driver `driver`'s data space: its `blk_data_*` setvars' regions end to end, in order.
pub fn data_space(sys: &System, driver: &str) -> Vec<DataWindow> {
    let mut base = 0u64;
    let mut out = vec![];
    let Some(pd) = sys.pd(driver) else {
        return out;
    };
    for v in pd
        .setvars
        .iter()
        .filter(|v| v.region_paddr.starts_with("blk_data_"))
    {
        let size = sys.region(&v.region_paddr).map_or(0, |r| r.size);
        out.push(DataWindow {
            region: v.region_paddr.clone(),
            base,
            size,
        });
        base = base.saturating_add(size);
    }
    out
}

/// The channel id `pd` has towards `peer`, if any.
pub fn channel_id(sys: &System, pd: &str, peer: &str) -> Option<u64> {
    sys.channels.iter().find_map(|c| {
        if c.a.pd == pd && c.b.pd == peer {
            Some(c.a.id)
        } else if c.b.pd == pd && c.a.pd == peer {
            Some(c.b.id)
        } else {
            None
        }
    })
}

/// The driver block virtualiser `virt` faces: the PD that maps `blk_req_queue_<virt>`.
pub fn driver_of(sys: &System, virt: &str) -> Option<String> {
    let q = format!("blk_req_queue_{virt}");
    sys.pds
        .iter()
        .find(|p| p.name != virt && p.maps.iter().any(|m| m.mr == q))
        .map(|p| p.name.clone())
}

/// The clients of block virtualiser `virt`, in the order of its `blk_req_queue_P` maps: every
/// peer `P` it has a channel to whose three queues it maps. Each client's data region must be
/// in the driver's data space.
pub fn virt_clients(sys: &System, virt: &str) -> Result<Vec<BlkClient>, SdfError> {
    let pd = sys
        .pd(virt)
        .ok_or_else(|| err(format!("no protection domain named '{virt}'")))?;
    let driver = driver_of(sys, virt).ok_or_else(|| {
        err(format!(
            "no PD maps blk_req_queue_{virt} (the driver of '{virt}')"
        ))
    })?;
    let space = data_space(sys, &driver);
    let maps = |mr: &str| pd.maps.iter().any(|m| m.mr == mr);
    let mut out = vec![];
    for m in &pd.maps {
        let Some(client) = m.mr.strip_prefix("blk_req_queue_") else {
            continue;
        };
        if client == virt {
            continue;
        }
        let Some(channel) = channel_id(sys, virt, client) else {
            continue;
        };
        if !maps(&format!("blk_resp_queue_{client}"))
            || !maps(&format!("blk_storage_info_{client}"))
        {
            return Err(err(format!(
                "'{virt}' maps blk_req_queue_{client} but not its response queue and storage info"
            )));
        }
        let region = format!("blk_data_{client}");
        let data = space
            .iter()
            .find(|w| w.region == region)
            .cloned()
            .ok_or_else(|| {
                err(format!(
                    "client '{client}' of '{virt}': '{driver}' is not told the physical address of {region} (a <setvar region_paddr>)"
                ))
            })?;
        out.push(BlkClient {
            name: client.to_string(),
            channel,
            data,
        });
    }
    Ok(out)
}

/// The generated client table of block virtualiser `virt`: `CLIENTS: &[ClientConfig]`
/// (`ClientConfig` is the virtualiser crate's type).
pub fn generate_virt(sys: &System, virt: &str) -> Result<String, SdfError> {
    let clients = virt_clients(sys, virt)?;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "// @generated by sdf::blk from system.xml for block virtualiser `{virt}`. Do not edit.\n/// The clients, in the order of `{virt}`'s blk_req_queue_P maps in system.xml.\npub const CLIENTS: &[ClientConfig] = &["
    );
    for c in &clients {
        let _ = writeln!(
            o,
            "    ClientConfig {{ name: {:?}, channel: microkit_rt::Channel::new({}), req_queue: \"blk_req_queue_{}\", resp_queue: \"blk_resp_queue_{}\", info: \"blk_storage_info_{}\", data_base: {:#x}, data_size: {:#x} }},",
            c.name, c.channel, c.name, c.name, c.name, c.data.base, c.data.size
        );
    }
    let _ = writeln!(o, "];");
    Ok(o)
}

/// The block virtualiser's second build script step: writes `$OUT_DIR/blk_clients.rs`
/// ([`generate_virt`]) from the same system description as its constants.
pub fn build_script(virt: &str) {
    crate::codegen::write_generated(virt, "blk_clients.rs", "block clients", generate_virt);
}
