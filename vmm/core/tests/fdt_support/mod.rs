//! Shared by the FDT tests (`fdt_patch.rs`, `fdt_loader.rs`): a tiny test-only FDT builder that
//! writes raw tokens in any block order (version 16 or 17, NOPs, duplicate properties, chosen
//! string offsets, garbage between blocks), random trees built with `vm-fdt` (rust-vmm's writer,
//! an independent builder), the oracle view of a blob through the `fdt` crate (an independent
//! parser), the reference model of the `/chosen` patch, and `dtc` helpers.
#![allow(dead_code)]

use proptest::prelude::*;
use std::process::Command;

pub const BEGIN_NODE: u32 = 1;
pub const END_NODE: u32 = 2;
pub const PROP: u32 = 3;
pub const NOP: u32 = 4;
pub const END: u32 = 9;

pub const START: &str = "linux,initrd-start";
pub const END_PROP: &str = "linux,initrd-end";

/// One structure-block token.
#[derive(Clone, Debug)]
pub enum Tok {
    /// BEGIN_NODE with this name.
    Begin(String),
    /// PROP with a name interned in the strings block.
    Prop(String, Vec<u8>),
    /// PROP with a raw name offset.
    PropOff(u32, Vec<u8>),
    Nop,
    EndNode,
    End,
    /// A raw 32-bit word.
    Word(u32),
}

/// Block order of a built blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Header, reservations, structure, strings (dtc's).
    Canonical,
    /// Header, strings, structure, reservations.
    StringsFirst,
    /// Header, structure, reservations, strings.
    RsvAfterStruct,
}

/// A blob to build.
#[derive(Clone, Debug)]
pub struct Raw {
    pub toks: Vec<Tok>,
    pub rsv: Vec<(u64, u64)>,
    pub version: u32,
    pub last_comp: u32,
    pub boot_cpuid: u32,
    /// Bytes the strings block starts with (names are interned after them, reusing any exact
    /// occurrence, including a tail of a longer string).
    pub strings_prefix: Vec<u8>,
    pub order: Order,
    /// Garbage bytes (0xee) after each block.
    pub gap: usize,
}

impl Raw {
    pub fn new(toks: Vec<Tok>) -> Self {
        Raw {
            toks,
            rsv: Vec::new(),
            version: 17,
            last_comp: 16,
            boot_cpuid: 0,
            strings_prefix: Vec::new(),
            order: Order::Canonical,
            gap: 0,
        }
    }

    /// The structure and strings blocks.
    pub fn blocks(&self) -> (Vec<u8>, Vec<u8>) {
        let mut st = Vec::new();
        let mut strings = self.strings_prefix.clone();
        let w = |st: &mut Vec<u8>, v: u32| st.extend_from_slice(&v.to_be_bytes());
        let pad = |st: &mut Vec<u8>| {
            while !st.len().is_multiple_of(4) {
                st.push(0);
            }
        };
        for t in &self.toks {
            match t {
                Tok::Begin(name) => {
                    w(&mut st, BEGIN_NODE);
                    st.extend_from_slice(name.as_bytes());
                    st.push(0);
                    pad(&mut st);
                }
                Tok::Prop(_, v) | Tok::PropOff(_, v) => {
                    let off = match t {
                        Tok::PropOff(off, _) => *off,
                        _ => intern(&mut strings, name_of(t)),
                    };
                    w(&mut st, PROP);
                    w(&mut st, v.len() as u32);
                    w(&mut st, off);
                    st.extend_from_slice(v);
                    pad(&mut st);
                }
                Tok::Nop => w(&mut st, NOP),
                Tok::EndNode => w(&mut st, END_NODE),
                Tok::End => w(&mut st, END),
                Tok::Word(x) => w(&mut st, *x),
            }
        }
        (st, strings)
    }

    pub fn build(&self) -> Vec<u8> {
        let (st, strings) = self.blocks();
        let mut rsv = Vec::new();
        for &(a, s) in self.rsv.iter().chain(std::iter::once(&(0, 0))) {
            rsv.extend_from_slice(&a.to_be_bytes());
            rsv.extend_from_slice(&s.to_be_bytes());
        }
        let header_len = if self.version >= 17 { 40 } else { 36 };
        let mut v = vec![0u8; header_len];
        let place = |v: &mut Vec<u8>, block: &[u8], align: usize| -> u32 {
            while !v.len().is_multiple_of(align) {
                v.push(0xee);
            }
            let off = v.len() as u32;
            v.extend_from_slice(block);
            v.extend(std::iter::repeat_n(0xee, self.gap));
            off
        };
        let (o_rsv, o_st, o_str) = match self.order {
            Order::Canonical => {
                let r = place(&mut v, &rsv, 8);
                let s = place(&mut v, &st, 4);
                (r, s, place(&mut v, &strings, 1))
            }
            Order::StringsFirst => {
                let t = place(&mut v, &strings, 1);
                let s = place(&mut v, &st, 4);
                (place(&mut v, &rsv, 8), s, t)
            }
            Order::RsvAfterStruct => {
                let s = place(&mut v, &st, 4);
                let r = place(&mut v, &rsv, 8);
                (r, s, place(&mut v, &strings, 1))
            }
        };
        let total = v.len() as u32;
        let mut words = vec![
            0xd00d_feed,
            total,
            o_st,
            o_str,
            o_rsv,
            self.version,
            self.last_comp,
            self.boot_cpuid,
            strings.len() as u32,
        ];
        if self.version >= 17 {
            words.push(st.len() as u32);
        }
        for (i, w) in words.iter().enumerate() {
            v[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        v
    }
}

fn name_of(t: &Tok) -> &str {
    match t {
        Tok::Prop(n, _) => n,
        _ => "",
    }
}

/// The offset of `name` in `strings` (any exact NUL-terminated occurrence), appending it if
/// absent.
pub fn intern(strings: &mut Vec<u8>, name: &str) -> u32 {
    let mut pat = name.as_bytes().to_vec();
    pat.push(0);
    if let Some(p) = strings.windows(pat.len()).position(|w| w == pat.as_slice()) {
        return p as u32;
    }
    let off = strings.len() as u32;
    strings.extend_from_slice(&pat);
    off
}

pub fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}

/// Node path and its properties, in document order.
pub type Tree = Vec<(String, Vec<(String, Vec<u8>)>)>;

/// The tree as the `fdt` crate (the oracle) reads it.
pub fn oracle_tree(blob: &[u8]) -> Tree {
    fn rec(n: fdt::node::FdtNode<'_, '_>, path: String, out: &mut Tree) {
        let props = n
            .properties()
            .map(|p| (p.name.to_string(), p.value.to_vec()))
            .collect();
        out.push((path.clone(), props));
        for c in n.children() {
            let p = if path == "/" {
                format!("/{}", c.name)
            } else {
                format!("{path}/{}", c.name)
            };
            rec(c, p, out);
        }
    }
    let f = fdt::Fdt::new(blob).expect("oracle: header");
    assert_eq!(f.total_size(), blob.len(), "oracle: totalsize");
    let root = f.find_node("/").expect("oracle: root");
    let mut out = Vec::new();
    rec(root, "/".to_string(), &mut out);
    out
}

/// The memory reservations as the oracle reads them.
pub fn oracle_rsv(blob: &[u8]) -> Vec<(u64, u64)> {
    fdt::Fdt::new(blob)
        .unwrap()
        .memory_reservations()
        .map(|r| (r.address() as u64, r.size() as u64))
        .collect()
}

/// Whether `path` names the patched node: a child of the root named `chosen` or `chosen@...`.
pub fn is_chosen_path(path: &str) -> bool {
    path.strip_prefix("/chosen")
        .is_some_and(|r| r.is_empty() || (r.starts_with('@') && !r.contains('/')))
}

/// The reference model of the patch on the oracle's view: in the first `/chosen`, the first
/// property of each name set is replaced, later ones are dropped, missing ones are appended; no
/// `/chosen`: a new one, the root's last child.
pub fn model(tree: &Tree, initrd: Option<(u64, u64)>, bootargs: Option<&str>) -> Tree {
    let mut targets: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some((s, e)) = initrd {
        targets.push((START.into(), s.to_be_bytes().to_vec()));
        targets.push((END_PROP.into(), e.to_be_bytes().to_vec()));
    }
    if let Some(b) = bootargs {
        let mut v = b.as_bytes().to_vec();
        v.push(0);
        targets.push(("bootargs".into(), v));
    }
    let mut out = tree.clone();
    if targets.is_empty() {
        return out;
    }
    match out.iter_mut().find(|(p, _)| is_chosen_path(p)) {
        Some((_, props)) => {
            let mut done = vec![false; targets.len()];
            let mut new = Vec::new();
            for (n, v) in props.iter() {
                match targets.iter().position(|(t, _)| t == n) {
                    Some(i) => {
                        if !done[i] {
                            new.push(targets[i].clone());
                            done[i] = true;
                        }
                    }
                    None => new.push((n.clone(), v.clone())),
                }
            }
            for (i, t) in targets.iter().enumerate() {
                if !done[i] {
                    new.push(t.clone());
                }
            }
            *props = new;
        }
        None => out.push(("/chosen".into(), targets)),
    }
    out
}

/// Checks a patched blob against its input: header fields kept, canonical layout, the oracle's
/// tree equal to the model's, the reservations equal, and `/chosen` read back through the
/// oracle's own lookup.
pub fn check_patched(
    input: &[u8],
    input_tree: &Tree,
    out: &[u8],
    initrd: Option<(u64, u64)>,
    bootargs: Option<&str>,
) {
    let h_in = vmm_core::loader::parse_fdt(input).unwrap();
    let h = vmm_core::loader::parse_fdt(out).expect("patched output passes parse_fdt");
    assert_eq!(h.totalsize as usize, out.len());
    assert_eq!(
        (h.version, h.last_comp_version, h.boot_cpuid_phys),
        (h_in.version, h_in.last_comp_version, h_in.boot_cpuid_phys)
    );
    assert_eq!(h.off_mem_rsvmap, 40);
    assert_eq!(h.off_dt_strings + h.size_dt_strings, h.totalsize);
    if h.version >= 17 {
        assert_eq!(h.off_dt_struct + h.size_dt_struct, h.off_dt_strings);
    }
    // The input's strings block is kept as the prefix of the new one.
    let s_in = &input[h_in.off_dt_strings as usize..][..h_in.size_dt_strings as usize];
    assert_eq!(
        &out[h.off_dt_strings as usize..][..s_in.len()],
        s_in,
        "strings prefix"
    );
    let view = as_v17(out);
    assert_eq!(oracle_tree(&view), model(input_tree, initrd, bootargs));
    if initrd.is_none() && bootargs.is_none() {
        return;
    }
    let f = fdt::Fdt::new(&view).unwrap();
    let chosen = f.find_node("/chosen").expect("oracle finds /chosen");
    if let Some((s, e)) = initrd {
        let get = |n: &str| chosen.property(n).and_then(|p| p.as_usize());
        assert_eq!(get(START), Some(s as usize));
        assert_eq!(get(END_PROP), Some(e as usize));
    }
    if let Some(b) = bootargs {
        assert_eq!(
            chosen.property("bootargs").and_then(|p| p.as_str()),
            Some(b)
        );
    }
}

/// A version-16 output seen as version 17 (the `fdt` crate reads only version 17 headers): the
/// canonical layout puts the strings right after the structure block.
pub fn as_v17(out: &[u8]) -> Vec<u8> {
    let mut v = out.to_vec();
    if be32(out, 20) == 16 {
        let st = be32(out, 8);
        let strs = be32(out, 12);
        v[20..24].copy_from_slice(&17u32.to_be_bytes());
        v[36..40].copy_from_slice(&(strs - st).to_be_bytes());
    }
    v
}

/// A random tree node.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub props: Vec<(String, Vec<u8>)>,
    pub children: Vec<Node>,
}

pub fn prop_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z#][a-z0-9,._+?#-]{0,12}",
        1 => Just(START.to_string()),
        1 => Just(END_PROP.to_string()),
        1 => Just("bootargs".to_string()),
    ]
}

pub fn props() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    proptest::collection::vec(
        (prop_name(), proptest::collection::vec(any::<u8>(), 0..24)),
        0..5,
    )
}

pub fn node_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9,._+-]{0,8}",
        2 => "[a-z][a-z0-9]{0,5}@[0-9a-f]{1,8}",
        1 => Just("chosen".to_string()),
    ]
}

pub fn node() -> impl Strategy<Value = Node> {
    let leaf = (node_name(), props()).prop_map(|(name, props)| Node {
        name,
        props,
        children: Vec::new(),
    });
    leaf.prop_recursive(4, 32, 4, |inner| {
        (node_name(), props(), proptest::collection::vec(inner, 0..4)).prop_map(
            |(name, props, children)| Node {
                name,
                props,
                children,
            },
        )
    })
}

/// A random root: random children, and with probability about 2/3 a `chosen` (or `chosen@0`)
/// child at a random position holding random properties, among them pre-existing
/// `linux,initrd-*` of random sizes (duplicates included) and maybe subnodes.
pub fn root() -> impl Strategy<Value = Node> {
    let chosen_props = proptest::collection::vec(
        (
            prop_oneof![
                2 => Just(START.to_string()),
                2 => Just(END_PROP.to_string()),
                1 => Just("bootargs".to_string()),
                2 => "[a-z][a-z0-9,-]{0,10}",
            ],
            proptest::collection::vec(any::<u8>(), 0..17),
        ),
        0..6,
    );
    let chosen = (
        prop_oneof![3 => Just("chosen"), 1 => Just("chosen@0")],
        chosen_props,
        proptest::collection::vec(node(), 0..2),
    )
        .prop_map(|(name, props, children)| Node {
            name: name.to_string(),
            props,
            children,
        });
    (
        props(),
        proptest::collection::vec(node(), 0..5),
        proptest::option::weighted(0.67, chosen),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(props, mut children, chosen, at)| {
            if let Some(c) = chosen {
                let i = at.index(children.len() + 1);
                children.insert(i, c);
            }
            Node {
                name: String::new(),
                props,
                children,
            }
        })
}

/// The tree as tokens for [`Raw`].
pub fn tokens(n: &Node, out: &mut Vec<Tok>) {
    out.push(Tok::Begin(n.name.clone()));
    for (k, v) in &n.props {
        out.push(Tok::Prop(k.clone(), v.clone()));
    }
    for c in &n.children {
        tokens(c, out);
    }
    out.push(Tok::EndNode);
}

/// The tree built by `vm-fdt`, with memory reservations and a boot CPU.
pub fn vm_fdt_build(root: &Node, rsv: &[(u64, u64)], boot_cpuid: u32) -> Vec<u8> {
    fn rec(w: &mut vm_fdt::FdtWriter, n: &Node) {
        let h = w.begin_node(&n.name).unwrap();
        for (k, v) in &n.props {
            w.property(k, v).unwrap();
        }
        for c in &n.children {
            rec(w, c);
        }
        w.end_node(h).unwrap();
    }
    let entries: Vec<_> = rsv
        .iter()
        .map(|&(a, s)| vm_fdt::FdtReserveEntry::new(a, s).unwrap())
        .collect();
    let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&entries).unwrap();
    w.set_boot_cpuid_phys(boot_cpuid);
    rec(&mut w, root);
    w.finish().unwrap()
}

/// Non-overlapping, non-empty memory reservations.
pub fn reservations() -> impl Strategy<Value = Vec<(u64, u64)>> {
    proptest::collection::vec((0u64..0x1000, 1u64..0x100), 0..4).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (a, s))| (((i as u64) << 32) + (a << 12), s << 12))
            .collect()
    })
}

/// Runs `dtc` with `args`, feeding `input` on stdin; `None` when `dtc` is not on PATH.
pub fn dtc(args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = match Command::new("dtc")
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("dtc: {e}"),
    };
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dtc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

/// The platform DTB (`guests/platform/virt.dts` compiled by `dtc`); panics when `dtc` is not on
/// PATH (a missing tool fails the test, it does not pass).
pub fn platform_dtb() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../guests/platform/virt.dts"
    );
    let dts = std::fs::read(path).expect("guests/platform/virt.dts");
    dtc(&["-I", "dts", "-O", "dtb"], &dts).expect(
        "dtc is not on PATH, cannot compile guests/platform/virt.dts: \
         install Debian's device-tree-compiler (make setup)",
    )
}
