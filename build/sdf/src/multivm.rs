//! The system description of several VMs side by side, generated from system.xml and one list of
//! VM names (issue 18), never hand-copied: the production system's `vmm` (its PD, its guest and
//! everything only it uses) is the template of every VM.
//!
//! For each further VM `N` (the list's first name is the template's own, `vmm`):
//!
//! - **The VMM PD** `N` is a copy of `vmm`: the same program image (one ELF serves every VMM: the
//!   Microkit tool patches each PD's own setvars, and the channel ids on the VMM's side are the
//!   template's), one priority below the previous VMM, its VM named `guest_N` and one priority
//!   below the previous VM (the first VM runs whenever it can, so a boot test's console
//!   sessions come in a known order; equal priorities would share the core round robin). Not
//!   copied: the template's IRQs, if it has any (a device is one per machine). The wake-up
//!   timer is not one: every VMM has its own channel to the timer driver (below), so every
//!   VMM parks a vCPU that waits for its virtual timer.
//! - **Its regions**: every region the template maps that is its own (guest RAM and the
//!   write-protected page, named `R_N`; the queues and data regions named `*_vmm`, named `*_N`)
//!   is declared again under the new name with the same size and page size. Device regions
//!   (a physical address: the GIC's virtual CPU interface) are shared, as the hardware is.
//! - **The peers**: every other PD that maps one of those regions (the serial driver, the block
//!   virtualiser, the block driver) maps the copy too, at the first free address above its
//!   maps, with its setvar named after `N` (`tx_queue_vaddr` → `tx_queue_N_vaddr`,
//!   `vmm_req_queue_vaddr` → `N_req_queue_vaddr`); a `<setvar region_paddr>` of such a region
//!   gets one for the copy. Every channel between `vmm` and a peer gets one between `N` (the
//!   template's id) and the peer (the peer's lowest free id), each end with its attributes
//!   (`pp="true"` at the VMM's end of its channel to the timer driver: `N` calls it too).
//! - **Firmware**: no VMM may pass PSCI SYSTEM_OFF to the firmware (`smc`): one VM powering off
//!   must not end the others.
//!
//! The peers' own code learns the new clients from their generated constants (the serial
//! driver's TX clients, the block virtualiser's client table and partitions, the block driver's
//! data space, the timer driver's client table), so building every PD with `SYSTEM_XML` set to
//! the generated file is all it takes.

use crate::parse::SdfError;
use std::fmt::Write as _;

/// The template VMM's name in system.xml.
pub const TEMPLATE: &str = "vmm";

fn err(message: String) -> SdfError {
    SdfError {
        line: 0,
        element: "system".into(),
        attribute: None,
        message,
    }
}

fn is_el<'a>(n: &roxmltree::Node<'a, 'a>, tag: &str) -> bool {
    n.is_element() && n.tag_name().name() == tag
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// An element's attributes as `name="value"` text, with `f` mapping (name, value) to a new
/// value or `None` to drop the attribute.
fn attrs(n: &roxmltree::Node<'_, '_>, f: impl Fn(&str, &str) -> Option<String>) -> String {
    let mut out = String::new();
    for a in n.attributes() {
        if let Some(v) = f(a.name(), a.value()) {
            let _ = write!(out, " {}=\"{}\"", a.name(), escape(&v));
        }
    }
    out
}

/// The copy's name of region `mr` of the template for VM `vm` (`None`: not the template's own).
fn own_region(mr: &str, vm: &str, own: &[String]) -> Option<String> {
    if !own.iter().any(|o| o == mr) {
        return None;
    }
    Some(match mr.strip_suffix("_vmm") {
        Some(stem) => format!("{stem}_{vm}"),
        None => format!("{mr}_{vm}"),
    })
}

/// A peer's setvar name for the copy of a region it maps for the template.
fn peer_setvar(sym: &str, vm: &str) -> String {
    if sym.contains("vmm") {
        return sym.replacen("vmm", vm, 1);
    }
    match sym.strip_suffix("_vaddr") {
        Some(stem) => format!("{stem}_{vm}_vaddr"),
        None => format!("{sym}_{vm}"),
    }
}

/// Generates the system of `vms` (their first is the template `vmm`) from system.xml's text.
pub fn generate(base: &str, vms: &[&str]) -> Result<String, SdfError> {
    // The base must be a valid system description.
    let sys = crate::parse(base)?;
    match vms.first() {
        Some(&TEMPLATE) => {}
        _ => {
            return Err(err(format!(
                "the first VM must be '{TEMPLATE}' (system.xml's VMM)"
            )));
        }
    }
    for (i, v) in vms.iter().enumerate() {
        let ok = !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && v.as_bytes()[0].is_ascii_lowercase();
        if !ok {
            return Err(err(format!(
                "VM name '{v}': lower-case letters, digits and _ only"
            )));
        }
        if vms[..i].contains(v) || sys.pd(v).is_some() && *v != TEMPLATE {
            return Err(err(format!("VM name '{v}' is taken")));
        }
    }
    let doc = roxmltree::Document::parse(base).map_err(|e| err(format!("{e}")))?;
    let root = doc.root_element();
    let pds: Vec<roxmltree::Node<'_, '_>> = root
        .descendants()
        .filter(|n| is_el(n, "protection_domain"))
        .collect();
    let template = pds
        .iter()
        .find(|n| n.attribute("name") == Some(TEMPLATE))
        .ok_or_else(|| err(format!("system.xml has no PD '{TEMPLATE}'")))?;
    if template.parent().is_none_or(|p| p != root) {
        return Err(err(format!("'{TEMPLATE}' must be a top-level PD")));
    }
    let regions: Vec<roxmltree::Node<'_, '_>> = root
        .children()
        .filter(|n| is_el(n, "memory_region"))
        .collect();
    let region = |name: &str| regions.iter().find(|r| r.attribute("name") == Some(name));
    // The template's own regions: mapped by it or its VM, no physical address, not input-only.
    let mut own: Vec<String> = vec![];
    for m in template.descendants().filter(|n| is_el(n, "map")) {
        let Some(mr) = m.attribute("mr") else {
            continue;
        };
        let r = region(mr).ok_or_else(|| err(format!("no memory_region '{mr}'")))?;
        if r.attribute("phys_addr").is_some() {
            continue;
        }
        if !own.iter().any(|o| o == mr) {
            own.push(mr.to_string());
        }
    }
    let template_priority = template
        .attribute("priority")
        .and_then(parse_u64)
        .unwrap_or(0);
    // Edits of the base text: (byte offset, text to insert) and byte ranges to cut.
    let mut inserts: Vec<(usize, String)> = vec![];
    let mut cuts: Vec<std::ops::Range<usize>> = vec![];
    // Every VMM without smc: cut the template's attribute.
    if let Some(a) = template.attributes().find(|a| a.name() == "smc") {
        cuts.push(a.range());
    }
    // Each channel's ends: (PD, id, the end's other attributes as text: pp, notify, ...).
    type ChannelEnd = (String, u64, String);
    let channels: Vec<(ChannelEnd, ChannelEnd)> = root
        .children()
        .filter(|n| is_el(n, "channel"))
        .filter_map(|c| {
            let ends: Vec<_> = c.children().filter(|e| is_el(e, "end")).collect();
            let [a, b] = ends.as_slice() else { return None };
            let end = |e: &roxmltree::Node<'_, '_>| -> Option<ChannelEnd> {
                Some((
                    e.attribute("pd")?.to_string(),
                    e.attribute("id").and_then(parse_u64)?,
                    attrs(e, |n, v| (n != "pd" && n != "id").then(|| v.into())),
                ))
            };
            Some((end(a)?, end(b)?))
        })
        .collect();
    // Ids each PD uses (channels and IRQs), growing as channels are added.
    let mut used: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for ((a, ia, _), (b, ib, _)) in &channels {
        used.entry(a.clone()).or_default().push(*ia);
        used.entry(b.clone()).or_default().push(*ib);
    }
    for pd in &pds {
        let name = pd.attribute("name").unwrap_or_default().to_string();
        for i in pd.children().filter(|n| is_el(n, "irq")) {
            if let Some(id) = i.attribute("id").and_then(parse_u64) {
                used.entry(name.clone()).or_default().push(id);
            }
        }
    }
    // Per peer PD: the end of its maps so far, and what it gets.
    let mut peer_end: std::collections::BTreeMap<String, u64> = Default::default();
    let mut peer_add: std::collections::BTreeMap<String, String> = Default::default();
    let mut new_regions = String::new();
    let mut new_pds = String::new();
    let mut new_channels = String::new();
    for (k, vm) in vms.iter().enumerate().skip(1) {
        // The regions.
        for mr in &own {
            let Some(r) = region(mr) else { continue };
            let copy = own_region(mr, vm, &own).unwrap_or_default();
            let a = attrs(r, |n, v| {
                Some(if n == "name" { copy.clone() } else { v.into() })
            });
            let _ = writeln!(new_regions, "    <memory_region{a} />");
        }
        // The VMM.
        let prio = template_priority.saturating_sub(k as u64);
        let _ = writeln!(
            new_pds,
            "    <!-- VM {vm}: a copy of {TEMPLATE} (see the header). -->\n    <protection_domain{}>",
            attrs(template, |n, v| match n {
                "name" => Some(vm.to_string()),
                "priority" => Some(prio.to_string()),
                "smc" => None,
                _ => Some(v.into()),
            })
        );
        let map_line = |m: &roxmltree::Node<'_, '_>, indent: &str| -> Option<String> {
            let mr = m.attribute("mr")?;
            let to = own_region(mr, vm, &own).unwrap_or_else(|| mr.to_string());
            Some(format!(
                "{indent}<map{} />\n",
                attrs(m, |n, v| Some(if n == "mr" {
                    to.clone()
                } else {
                    v.into()
                }))
            ))
        };
        for c in template.children().filter(|n| n.is_element()) {
            match c.tag_name().name() {
                "program_image" => {
                    let _ = writeln!(
                        new_pds,
                        "        <program_image{} />",
                        attrs(&c, |_, v| Some(v.into()))
                    );
                }
                "map" => new_pds.push_str(&map_line(&c, "        ").unwrap_or_default()),
                "virtual_machine" => {
                    let _ = writeln!(
                        new_pds,
                        "        <virtual_machine{}>",
                        attrs(&c, |n, v| match n {
                            "name" => Some(format!("{v}_{vm}")),
                            "priority" => Some(
                                parse_u64(v)
                                    .map_or(v.into(), |p| p.saturating_sub(k as u64).to_string())
                            ),
                            _ => Some(v.into()),
                        })
                    );
                    for e in c.children().filter(|n| n.is_element()) {
                        match e.tag_name().name() {
                            "map" => {
                                new_pds.push_str(&map_line(&e, "            ").unwrap_or_default())
                            }
                            tag => {
                                let _ = writeln!(
                                    new_pds,
                                    "            <{tag}{} />",
                                    attrs(&e, |_, v| Some(v.into()))
                                );
                            }
                        }
                    }
                    let _ = writeln!(new_pds, "        </virtual_machine>");
                }
                // IRQs stay the first VMM's; setvars of the template are copied.
                "irq" => {}
                tag => {
                    let _ = writeln!(
                        new_pds,
                        "        <{tag}{} />",
                        attrs(&c, |_, v| Some(v.into()))
                    );
                }
            }
        }
        let _ = writeln!(new_pds, "    </protection_domain>");
        // The peers' maps and setvars of the copies.
        for pd in pds.iter().filter(|p| p.attribute("name") != Some(TEMPLATE)) {
            let name = pd.attribute("name").unwrap_or_default().to_string();
            let maps: Vec<_> = pd.children().filter(|n| is_el(n, "map")).collect();
            let end = peer_end.entry(name.clone()).or_insert_with(|| {
                maps.iter()
                    .filter_map(|m| {
                        let v = m.attribute("vaddr").and_then(parse_u64)?;
                        let size = region(m.attribute("mr")?)?
                            .attribute("size")
                            .and_then(parse_u64)?;
                        Some(v + size)
                    })
                    .max()
                    .unwrap_or(0x1000_0000)
            });
            let add = peer_add.entry(name.clone()).or_default();
            for m in &maps {
                let Some(mr) = m.attribute("mr") else {
                    continue;
                };
                let Some(copy) = own_region(mr, vm, &own) else {
                    continue;
                };
                let size = region(mr)
                    .and_then(|r| r.attribute("size"))
                    .and_then(parse_u64)
                    .unwrap_or(0x1000);
                let align = 0x10_0000u64.max(size.next_power_of_two());
                let vaddr = end.div_ceil(align) * align;
                *end = vaddr + size;
                let a = attrs(m, |n, v| match n {
                    "mr" => Some(copy.clone()),
                    "vaddr" => Some(format!("{vaddr:#x}")),
                    "setvar_vaddr" => Some(peer_setvar(v, vm)),
                    _ => Some(v.into()),
                });
                let _ = writeln!(add, "            <map{a} />");
            }
            for s in pd.children().filter(|n| is_el(n, "setvar")) {
                let Some(mr) = s.attribute("region_paddr") else {
                    continue;
                };
                let Some(copy) = own_region(mr, vm, &own) else {
                    continue;
                };
                let a = attrs(&s, |n, v| match n {
                    "region_paddr" => Some(copy.clone()),
                    "symbol" => Some(format!("{v}_{vm}")),
                    _ => Some(v.into()),
                });
                let _ = writeln!(add, "            <setvar{a} />");
            }
        }
        // The channels.
        for (a, b) in &channels {
            // The VMM's end keeps its attributes (pp: the VMM calls the timer driver), the
            // peer's end its own.
            let ((_, mine, my_attrs), (peer, _, peer_attrs)) = match (a.0.as_str(), b.0.as_str()) {
                (TEMPLATE, _) => (a, b),
                (_, TEMPLATE) => (b, a),
                _ => continue,
            };
            let peer = peer.as_str();
            let ids = used.entry(peer.to_string()).or_default();
            let fresh = (0..63u64)
                .find(|i| !ids.contains(i))
                .ok_or_else(|| err(format!("'{peer}' has no free channel id for {vm}")))?;
            ids.push(fresh);
            let _ = writeln!(
                new_channels,
                "    <channel>\n        <end pd=\"{peer}\" id=\"{fresh}\"{peer_attrs} />\n        <end pd=\"{vm}\" id=\"{mine}\"{my_attrs} />\n    </channel>"
            );
        }
    }
    for pd in &pds {
        let name = pd.attribute("name").unwrap_or_default();
        if let Some(add) = peer_add.get(name).filter(|a| !a.is_empty()) {
            // Before the PD's own closing tag (after its last child element).
            let at = pd
                .children()
                .rfind(|n| n.is_element() && !is_el(n, "protection_domain"))
                .map_or(pd.range().start, |n| n.range().end);
            inserts.push((at, format!("\n            <!-- The copies of {TEMPLATE}'s regions for the other VMs. -->\n{}", add.trim_end())));
        }
    }
    let end_of_system = root.range().end - "</system>".len();
    inserts.push((
        end_of_system,
        format!("\n    <!-- The other VMs' regions, VMMs and channels. -->\n{new_regions}{new_pds}{new_channels}"),
    ));
    // Apply: cuts and inserts from the end backwards.
    let mut out = base.to_string();
    let mut edits: Vec<(usize, usize, String)> = cuts
        .into_iter()
        .map(|r| (r.start, r.end, String::new()))
        .collect();
    edits.extend(inserts.into_iter().map(|(at, t)| (at, at, t)));
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (s, e, t) in edits {
        out.replace_range(s..e, &t);
    }
    // A generated header after the XML declaration.
    let header = format!(
        "<!-- GENERATED by `sdf-multivm` (build/sdf/src/multivm.rs) from system.xml for the VMs: {}. Do not edit: edit system.xml or the VM list. -->\n",
        vms.join(" ")
    );
    let at = out
        .find("?>")
        .map_or(0, |i| i + 2 + usize::from(out[i + 2..].starts_with('\n')));
    out.insert_str(at, &header);
    // The result must be a valid system description too.
    crate::parse(&out)?;
    Ok(out)
}
