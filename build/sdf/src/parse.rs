//! Parsing and validation of system.xml. Unknown elements or attributes, bad numbers, dangling
//! references, duplicate names or channel ids, overlapping maps and calls to a PD of lower or
//! equal priority are errors that name the line, the element and the attribute.

use crate::model::*;
use roxmltree::{Document, Node};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// A problem in a system description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdfError {
    /// 1-based line (0 when not tied to a line).
    pub line: u32,
    /// Element name (without brackets), empty when not tied to one.
    pub element: String,
    /// Attribute, if the problem is in one.
    pub attribute: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "system.xml:{}: ", self.line)?;
        if !self.element.is_empty() {
            write!(f, "<{}> ", self.element)?;
        }
        if let Some(a) = &self.attribute {
            write!(f, "attribute '{a}': ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SdfError {}

type Result<T> = std::result::Result<T, SdfError>;

pub(crate) fn line_of(n: &Node) -> u32 {
    n.document().text_pos_at(n.range().start).row
}

/// A document that is not well-formed XML; `what` prefixes the message (which document).
pub(crate) fn xml_err(what: &str, e: roxmltree::Error) -> SdfError {
    SdfError {
        line: e.pos().row,
        element: String::new(),
        attribute: None,
        message: format!("{what}not well-formed XML: {e}"),
    }
}

pub(crate) fn err(n: &Node, attribute: Option<&str>, message: impl Into<String>) -> SdfError {
    SdfError {
        line: line_of(n),
        element: n.tag_name().name().to_string(),
        attribute: attribute.map(str::to_string),
        message: message.into(),
    }
}

fn check_attributes(n: &Node, allowed: &[&str]) -> Result<()> {
    for a in n.attributes() {
        if !allowed.contains(&a.name()) {
            return Err(err(n, Some(a.name()), "unknown attribute"));
        }
    }
    Ok(())
}

fn required<'a>(n: &Node<'a, '_>, name: &str) -> Result<&'a str> {
    n.attribute(name)
        .ok_or_else(|| err(n, Some(name), "missing required attribute"))
}

fn parse_number(n: &Node, name: &str, s: &str) -> Result<u64> {
    let t = s.trim().replace('_', "");
    let parsed = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        t.parse::<u64>()
    };
    parsed.map_err(|_| err(n, Some(name), format!("invalid number '{s}'")))
}

fn number(n: &Node, name: &str) -> Result<u64> {
    parse_number(n, name, required(n, name)?)
}

fn number_or(n: &Node, name: &str, default: u64) -> Result<u64> {
    match n.attribute(name) {
        Some(s) => parse_number(n, name, s),
        None => Ok(default),
    }
}

fn boolean_or(n: &Node, name: &str, default: bool) -> Result<bool> {
    match n.attribute(name) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(err(
            n,
            Some(name),
            format!("expected true or false, not '{other}'"),
        )),
    }
}

fn in_range(n: &Node, name: &str, v: u64, lo: u64, hi: u64) -> Result<u64> {
    if v < lo || v > hi {
        return Err(err(n, Some(name), format!("{v} is outside {lo}..={hi}")));
    }
    Ok(v)
}

fn symbol(n: &Node, name: &str) -> Result<Option<String>> {
    match n.attribute(name) {
        None => Ok(None),
        Some(s) => {
            let ok = !s.is_empty()
                && !s.starts_with(|c: char| c.is_ascii_digit())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(err(
                    n,
                    Some(name),
                    format!("'{s}' is not a valid symbol name"),
                ));
            }
            Ok(Some(s.to_string()))
        }
    }
}

fn elements<'a, 'i>(n: &Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(|c| c.is_element())
}

/// Parses and validates a system description.
pub fn parse(text: &str) -> Result<System> {
    let doc = Document::parse(text).map_err(|e| xml_err("", e))?;
    let root = doc.root_element();
    if root.tag_name().name() != "system" {
        return Err(err(&root, None, "the root element must be <system>"));
    }
    check_attributes(&root, &[])?;
    let mut sys = System {
        memory_regions: vec![],
        pds: vec![],
        channels: vec![],
    };
    for child in elements(&root) {
        match child.tag_name().name() {
            "memory_region" => sys.memory_regions.push(memory_region(&child)?),
            "protection_domain" => protection_domain(&child, None, &mut sys.pds)?,
            "channel" => sys.channels.push(channel(&child)?),
            _ => return Err(err(&child, None, "unknown element under <system>")),
        }
    }
    validate(&doc, &sys)?;
    Ok(sys)
}

fn memory_region(n: &Node) -> Result<MemoryRegion> {
    check_attributes(
        n,
        &["name", "size", "page_size", "phys_addr", "prefill_path"],
    )?;
    let prefill_path = n.attribute("prefill_path").map(str::to_string);
    let size = match (n.attribute("size"), &prefill_path) {
        (Some(s), _) => parse_number(n, "size", s)?,
        // The tool takes the size from the file; round up to a page when it is known here.
        (None, Some(_)) => 0,
        (None, None) => return Err(err(n, Some("size"), "missing required attribute")),
    };
    let page_size = match n.attribute("page_size") {
        Some(s) => {
            let p = parse_number(n, "page_size", s)?;
            if p != PAGE_SIZE && p != 0x20_0000 {
                return Err(err(
                    n,
                    Some("page_size"),
                    format!("{p:#x} is not 0x1000 or 0x200000"),
                ));
            }
            Some(p)
        }
        None => None,
    };
    let granule = page_size.unwrap_or(PAGE_SIZE);
    if n.attribute("size").is_some() && (size == 0 || size % granule != 0) {
        return Err(err(
            n,
            Some("size"),
            format!("{size:#x} is not a non-zero multiple of {granule:#x}"),
        ));
    }
    let phys_addr = match n.attribute("phys_addr") {
        Some(s) => {
            let p = parse_number(n, "phys_addr", s)?;
            if p % granule != 0 {
                return Err(err(
                    n,
                    Some("phys_addr"),
                    format!("{p:#x} is not aligned to {granule:#x}"),
                ));
            }
            Some(p)
        }
        None => None,
    };
    Ok(MemoryRegion {
        name: required(n, "name")?.to_string(),
        size,
        page_size,
        phys_addr,
        prefill_path,
        line: line_of(n),
    })
}

fn perms(n: &Node) -> Result<Perms> {
    let s = n.attribute("perms").unwrap_or("rw");
    let mut p = Perms::default();
    for c in s.chars() {
        let flag = match c {
            'r' => &mut p.read,
            'w' => &mut p.write,
            'x' => &mut p.execute,
            _ => {
                return Err(err(
                    n,
                    Some("perms"),
                    format!("'{s}' may contain only r, w and x"),
                ));
            }
        };
        if *flag {
            return Err(err(n, Some("perms"), format!("'{s}' repeats '{c}'")));
        }
        *flag = true;
    }
    if !p.read && !p.execute {
        return Err(err(
            n,
            Some("perms"),
            format!("'{s}' is not a valid mapping (write-only or empty)"),
        ));
    }
    Ok(p)
}

fn map(n: &Node, in_vm: bool) -> Result<Map> {
    let mut allowed = vec!["mr", "vaddr", "perms", "cached", "setvar_size"];
    if !in_vm {
        allowed.push("setvar_vaddr");
    }
    check_attributes(n, &allowed)?;
    let vaddr = number(n, "vaddr")?;
    if vaddr % PAGE_SIZE != 0 {
        return Err(err(
            n,
            Some("vaddr"),
            format!("{vaddr:#x} is not page-aligned"),
        ));
    }
    Ok(Map {
        mr: required(n, "mr")?.to_string(),
        vaddr,
        perms: perms(n)?,
        cached: boolean_or(n, "cached", true)?,
        setvar_vaddr: symbol(n, "setvar_vaddr")?,
        setvar_size: symbol(n, "setvar_size")?,
        line: line_of(n),
    })
}

fn protection_domain(
    n: &Node,
    parent: Option<usize>,
    out: &mut Vec<ProtectionDomain>,
) -> Result<()> {
    let mut allowed = vec![
        "name",
        "priority",
        "budget",
        "period",
        "passive",
        "stack_size",
        "cpu",
        "smc",
        "fpu",
    ];
    if parent.is_some() {
        allowed.extend(["id", "setvar_id"]);
    }
    check_attributes(n, &allowed)?;
    let budget = number_or(n, "budget", 1000)?;
    let period = number_or(n, "period", budget)?;
    if period < budget {
        return Err(err(
            n,
            Some("period"),
            "must not be smaller than the budget",
        ));
    }
    let stack_size = number_or(n, "stack_size", 0x2000)?;
    if !(0x1000..=0x100_0000).contains(&stack_size) || stack_size % PAGE_SIZE != 0 {
        return Err(err(
            n,
            Some("stack_size"),
            "must be 4 KiB..16 MiB and page-aligned",
        ));
    }
    let child_id = match parent {
        Some(_) => Some(in_range(n, "id", number(n, "id")?, 0, 61)?),
        None => None,
    };
    let mut pd = ProtectionDomain {
        name: required(n, "name")?.to_string(),
        priority: in_range(n, "priority", number_or(n, "priority", 0)?, 0, 254)?,
        budget,
        period,
        passive: boolean_or(n, "passive", false)?,
        smc: boolean_or(n, "smc", false)?,
        stack_size,
        program_image: String::new(),
        maps: vec![],
        irqs: vec![],
        setvars: vec![],
        parent,
        child_id,
        virtual_machine: None,
        line: line_of(n),
    };
    let index = out.len();
    out.push(pd.clone());
    let mut images = 0;
    for c in elements(n) {
        match c.tag_name().name() {
            "program_image" => {
                check_attributes(&c, &["path", "path_for_symbols"])?;
                pd.program_image = required(&c, "path")?.to_string();
                images += 1;
            }
            "map" => pd.maps.push(map(&c, false)?),
            "irq" => {
                check_attributes(&c, &["irq", "id", "trigger", "setvar_id"])?;
                let trigger = match c.attribute("trigger") {
                    None | Some("level") => Trigger::Level,
                    Some("edge") => Trigger::Edge,
                    Some(t) => {
                        return Err(err(
                            &c,
                            Some("trigger"),
                            format!("'{t}' is not level or edge"),
                        ));
                    }
                };
                pd.irqs.push(Irq {
                    irq: number(&c, "irq")?,
                    id: in_range(&c, "id", number(&c, "id")?, 0, MAX_CHANNEL_ID)?,
                    trigger,
                    setvar_id: symbol(&c, "setvar_id")?,
                    line: line_of(&c),
                });
            }
            "setvar" => {
                check_attributes(&c, &["symbol", "region_paddr"])?;
                pd.setvars.push(SetVar {
                    symbol: symbol(&c, "symbol")?
                        .ok_or_else(|| err(&c, Some("symbol"), "missing required attribute"))?,
                    region_paddr: required(&c, "region_paddr")?.to_string(),
                });
            }
            "protection_domain" => protection_domain(&c, Some(index), out)?,
            "virtual_machine" => {
                if pd.virtual_machine.is_some() {
                    return Err(err(
                        &c,
                        None,
                        "a protection domain has at most one virtual machine",
                    ));
                }
                pd.virtual_machine = Some(virtual_machine(&c)?);
            }
            _ => return Err(err(&c, None, "unknown element under <protection_domain>")),
        }
    }
    if images != 1 {
        return Err(err(
            n,
            None,
            format!("needs exactly one <program_image>, has {images}"),
        ));
    }
    out[index] = pd;
    Ok(())
}

fn virtual_machine(n: &Node) -> Result<VirtualMachine> {
    check_attributes(n, &["name", "priority", "budget", "period"])?;
    let mut vm = VirtualMachine {
        name: required(n, "name")?.to_string(),
        priority: in_range(n, "priority", number_or(n, "priority", 0)?, 0, 254)?,
        vcpus: vec![],
        maps: vec![],
    };
    for c in elements(n) {
        match c.tag_name().name() {
            "vcpu" => {
                check_attributes(&c, &["id", "cpu", "setvar_id"])?;
                vm.vcpus.push(Vcpu {
                    id: in_range(&c, "id", number(&c, "id")?, 0, 61)?,
                    setvar_id: symbol(&c, "setvar_id")?,
                });
            }
            "map" => vm.maps.push(map(&c, true)?),
            _ => return Err(err(&c, None, "unknown element under <virtual_machine>")),
        }
    }
    if vm.vcpus.is_empty() {
        return Err(err(n, None, "needs at least one <vcpu>"));
    }
    Ok(vm)
}

fn channel(n: &Node) -> Result<Channel> {
    check_attributes(n, &[])?;
    let mut ends = vec![];
    for c in elements(n) {
        if c.tag_name().name() != "end" {
            return Err(err(&c, None, "unknown element under <channel>"));
        }
        check_attributes(&c, &["pd", "id", "pp", "notify", "setvar_id"])?;
        ends.push(End {
            pd: required(&c, "pd")?.to_string(),
            id: in_range(&c, "id", number(&c, "id")?, 0, MAX_CHANNEL_ID)?,
            pp: boolean_or(&c, "pp", false)?,
            notify: boolean_or(&c, "notify", true)?,
            setvar_id: symbol(&c, "setvar_id")?,
            line: line_of(&c),
        });
    }
    if ends.len() != 2 {
        return Err(err(
            n,
            None,
            format!("needs exactly two <end> elements, has {}", ends.len()),
        ));
    }
    let b = ends.pop().expect("two ends");
    let a = ends.pop().expect("two ends");
    Ok(Channel {
        a,
        b,
        line: line_of(n),
    })
}

/// Finds the element on `line` named `element` to report against (lines are unique per element).
fn node_at<'a, 'i>(doc: &'a Document<'i>, line: u32, element: &str) -> Option<Node<'a, 'i>> {
    doc.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == element && line_of(n) == line)
}

fn at(
    doc: &Document,
    line: u32,
    element: &str,
    attribute: Option<&str>,
    message: String,
) -> SdfError {
    match node_at(doc, line, element) {
        Some(n) => err(&n, attribute, message),
        None => SdfError {
            line,
            element: element.into(),
            attribute: attribute.map(Into::into),
            message,
        },
    }
}

fn validate(doc: &Document, sys: &System) -> Result<()> {
    let mut names = HashSet::new();
    for m in &sys.memory_regions {
        if !names.insert(&m.name) {
            return Err(at(
                doc,
                m.line,
                "memory_region",
                Some("name"),
                format!("duplicate region name '{}'", m.name),
            ));
        }
    }
    let mut pd_names = HashSet::new();
    let mut vm_names = HashSet::new();
    for pd in &sys.pds {
        if !pd_names.insert(&pd.name) {
            return Err(at(
                doc,
                pd.line,
                "protection_domain",
                Some("name"),
                format!("duplicate PD name '{}'", pd.name),
            ));
        }
        if let Some(parent) = pd.parent {
            let siblings = sys
                .pds
                .iter()
                .filter(|p| p.parent == Some(parent) && p.child_id == pd.child_id);
            if siblings.count() > 1 {
                return Err(at(
                    doc,
                    pd.line,
                    "protection_domain",
                    Some("id"),
                    "duplicate child id".into(),
                ));
            }
            if sys.pds[parent].priority <= pd.priority {
                // Microkit requires a parent to outrank its children, as it handles their faults.
                return Err(at(
                    doc,
                    pd.line,
                    "protection_domain",
                    Some("priority"),
                    "a child must have a lower priority than its parent".into(),
                ));
            }
        }
        let vm_maps = pd.virtual_machine.iter().flat_map(|v| v.maps.iter());
        for m in pd.maps.iter().chain(vm_maps) {
            let Some(r) = sys.region(&m.mr) else {
                return Err(at(
                    doc,
                    m.line,
                    "map",
                    Some("mr"),
                    format!("no memory region named '{}'", m.mr),
                ));
            };
            if m.vaddr.checked_add(r.size).is_none() {
                return Err(at(
                    doc,
                    m.line,
                    "map",
                    Some("vaddr"),
                    "mapping wraps the address space".into(),
                ));
            }
        }
        for maps in [Some(&pd.maps), pd.virtual_machine.as_ref().map(|v| &v.maps)]
            .into_iter()
            .flatten()
        {
            for (i, x) in maps.iter().enumerate() {
                for y in &maps[i + 1..] {
                    let (xs, ys) = (
                        sys.region(&x.mr).map_or(0, |r| r.size),
                        sys.region(&y.mr).map_or(0, |r| r.size),
                    );
                    if x.vaddr < y.vaddr + ys && y.vaddr < x.vaddr + xs {
                        return Err(at(
                            doc,
                            y.line,
                            "map",
                            Some("vaddr"),
                            format!("overlaps the map of '{}'", x.mr),
                        ));
                    }
                }
            }
        }
        for s in &pd.setvars {
            if sys.region(&s.region_paddr).is_none() {
                return Err(SdfError {
                    line: pd.line,
                    element: "setvar".into(),
                    attribute: Some("region_paddr".into()),
                    message: format!("no memory region named '{}'", s.region_paddr),
                });
            }
        }
        if let Some(vm) = &pd.virtual_machine {
            if !vm_names.insert(vm.name.clone()) {
                return Err(at(
                    doc,
                    pd.line,
                    "protection_domain",
                    None,
                    format!("duplicate VM name '{}'", vm.name),
                ));
            }
            let mut ids = HashSet::new();
            for v in &vm.vcpus {
                if !ids.insert(v.id) {
                    return Err(at(
                        doc,
                        pd.line,
                        "protection_domain",
                        None,
                        format!("duplicate vcpu id {}", v.id),
                    ));
                }
            }
        }
    }
    // Channel ids are unique per PD, across channels and IRQs.
    let mut used: HashMap<&str, HashSet<u64>> = HashMap::new();
    for pd in &sys.pds {
        for irq in &pd.irqs {
            if !used.entry(&pd.name).or_default().insert(irq.id) {
                return Err(at(
                    doc,
                    irq.line,
                    "irq",
                    Some("id"),
                    format!("channel id {} used twice in '{}'", irq.id, pd.name),
                ));
            }
        }
    }
    for c in &sys.channels {
        if c.a.pd == c.b.pd {
            return Err(at(
                doc,
                c.line,
                "channel",
                None,
                "a channel needs two different PDs".into(),
            ));
        }
        for (end, other) in [(&c.a, &c.b), (&c.b, &c.a)] {
            let Some(pd) = sys.pd(&end.pd) else {
                return Err(at(
                    doc,
                    end.line,
                    "end",
                    Some("pd"),
                    format!("no protection domain named '{}'", end.pd),
                ));
            };
            if !used.entry(&end.pd).or_default().insert(end.id) {
                return Err(at(
                    doc,
                    end.line,
                    "end",
                    Some("id"),
                    format!("channel id {} used twice in '{}'", end.id, end.pd),
                ));
            }
            if end.pp {
                let callee = sys.pd(&other.pd).map_or(0, |p| p.priority);
                if callee <= pd.priority {
                    return Err(at(
                        doc,
                        end.line,
                        "end",
                        Some("pp"),
                        format!(
                            "'{}' may only call a PD of strictly higher priority ('{}' has {callee})",
                            end.pd, other.pd
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}
