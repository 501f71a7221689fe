//! `/chosen` patching: hand-built blobs (exact expected bytes built independently, every error
//! variant), the platform DTB compiled by `dtc` (cross-checked against libfdt's `fdtput` when it is
//! on PATH), random trees built by `vm-fdt` and by the test builder in every block order, checked
//! through the `fdt` crate as oracle against a reference model, and hostile inputs (random bytes,
//! mutated valid blobs) that must never panic.

mod fdt_support;

use fdt_support::*;
use proptest::prelude::*;
use vmm_core::fdt_patch::{self, ChosenPatch, PatchError, Sink};
use vmm_core::loader::{FdtError, parse_fdt};

fn patch_vec(dtb: &[u8], p: &ChosenPatch<'_>) -> Result<Vec<u8>, PatchError> {
    let mut out = vec![0u8; dtb.len() + 4096];
    let n = fdt_patch::patch(dtb, p, &mut out)?;
    assert_eq!(fdt_patch::patched_size(dtb, p), Ok(n));
    out.truncate(n);
    Ok(out)
}

fn begin(n: &str) -> Tok {
    Tok::Begin(n.to_string())
}
fn prop(n: &str, v: &[u8]) -> Tok {
    Tok::Prop(n.to_string(), v.to_vec())
}
fn u64v(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

const S: u64 = 0x4201_0000;
const E: u64 = 0x4210_0dc6;

/// A small tree without `/chosen`.
fn plain() -> Vec<Tok> {
    use Tok::*;
    vec![
        begin(""),
        prop("#address-cells", &[0, 0, 0, 2]),
        prop("model", b"test\0"),
        begin("memory@40000000"),
        prop("device_type", b"memory\0"),
        prop(
            "reg",
            &[0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0],
        ),
        EndNode,
        begin("cpus"),
        begin("cpu@0"),
        prop("reg", &[0; 4]),
        EndNode,
        EndNode,
        EndNode,
        End,
    ]
}

#[test]
fn creates_chosen_when_absent() {
    let mut raw = Raw::new(plain());
    raw.rsv = vec![(0x4800_0000, 0x1000)];
    raw.boot_cpuid = 3;
    let input = raw.build();
    let out = patch_vec(&input, &ChosenPatch::initrd(S, E)).unwrap();
    check_patched(&input, &oracle_tree(&input), &out, Some((S, E)), None);
    assert_eq!(oracle_rsv(&out), vec![(0x4800_0000, 0x1000)]);
    // Exactly: the chosen node as the root's last child, both names appended to the strings.
    let mut toks = plain();
    let at = toks.len() - 2;
    toks.splice(
        at..at,
        [
            begin("chosen"),
            prop(START, &u64v(S)),
            prop(END_PROP, &u64v(E)),
            Tok::EndNode,
        ],
    );
    let mut want = Raw::new(toks);
    want.rsv = raw.rsv.clone();
    want.boot_cpuid = 3;
    assert_eq!(out, want.build());
    assert_eq!(out.len(), input.len() + fdt_patch::INITRD_GROWTH_MAX);
}

#[test]
fn replaces_existing_properties_of_any_size_in_place() {
    use Tok::*;
    let chosen = |body: Vec<Tok>| {
        let mut t = vec![begin(""), prop("compatible", b"x\0"), begin("chosen")];
        t.extend(body);
        t.extend([EndNode, begin("z"), EndNode, EndNode, End]);
        t
    };
    let input = chosen(vec![
        prop("bootargs", b"old\0"),
        prop(START, &[1, 2, 3, 4]), // one cell
        Nop,
        prop("stdout-path", b"/uart\0"),
        prop(END_PROP, &[9; 12]), // three cells
        prop(START, &[7; 8]),     // a duplicate: dropped
        Nop,
        begin("sub"),
        prop(START, &[5; 4]), // in a subnode of /chosen: kept
        EndNode,
    ]);
    // The oracle (`fdt` 0.1) does not read NOPs between properties: it checks the NOP-free twin;
    // the blob with NOPs is checked byte for byte against the expected one below.
    let no_nops =
        |t: &Vec<Tok>| -> Vec<Tok> { t.iter().filter(|t| !matches!(t, Nop)).cloned().collect() };
    let twin = Raw::new(no_nops(&input)).build();
    let out = patch_vec(&twin, &ChosenPatch::initrd(S, E)).unwrap();
    check_patched(&twin, &oracle_tree(&twin), &out, Some((S, E)), None);
    let input = Raw::new(input).build();
    let out = patch_vec(&input, &ChosenPatch::initrd(S, E)).unwrap();
    // Exact bytes: same order, NOPs kept, new values in place of the first of each name.
    let want = Raw::new(chosen(vec![
        prop("bootargs", b"old\0"),
        prop(START, &u64v(S)),
        Nop,
        prop("stdout-path", b"/uart\0"),
        prop(END_PROP, &u64v(E)),
        Nop,
        begin("sub"),
        prop(START, &[5; 4]),
        EndNode,
    ]))
    .build();
    assert_eq!(out, want);

    // Missing names go after the last property, before the first subnode.
    let input = Raw::new(chosen(vec![prop(END_PROP, &[1; 4]), begin("sub"), EndNode])).build();
    let out = patch_vec(
        &input,
        &ChosenPatch::initrd(S, E).with_bootargs("console=hvc0"),
    )
    .unwrap();
    check_patched(
        &input,
        &oracle_tree(&input),
        &out,
        Some((S, E)),
        Some("console=hvc0"),
    );
    let mut want = Raw::new(chosen(vec![
        prop(END_PROP, &u64v(E)),
        prop(START, &u64v(S)),
        prop("bootargs", b"console=hvc0\0"),
        begin("sub"),
        EndNode,
    ]));
    // The builder interns in first-use order; the patcher keeps the input's strings and appends
    // the new names in the order start, bootargs.
    want.strings_prefix = b"compatible\0linux,initrd-end\0linux,initrd-start\0bootargs\0".to_vec();
    assert_eq!(out, want.build());
}

#[test]
fn reuses_names_already_in_the_strings_block() {
    let mut raw = Raw::new(plain());
    // "linux,initrd-start" only as the tail of a longer string.
    raw.strings_prefix = b"xlinux,initrd-start\0linux,initrd-end\0bootargs\0".to_vec();
    let input = raw.build();
    let h_in = parse_fdt(&input).unwrap();
    let out = patch_vec(&input, &ChosenPatch::initrd(S, E).with_bootargs("a")).unwrap();
    check_patched(&input, &oracle_tree(&input), &out, Some((S, E)), Some("a"));
    let h = parse_fdt(&out).unwrap();
    assert_eq!(h.size_dt_strings, h_in.size_dt_strings);
    // The new initrd-start property's name offset is 1 (the tail).
    let st = h.off_dt_struct as usize;
    let body = &out[st..st + h.size_dt_struct as usize];
    let found = body.windows(12).any(|w| {
        w[..4] == 3u32.to_be_bytes()
            && w[4..8] == 8u32.to_be_bytes()
            && w[8..] == 1u32.to_be_bytes()
    });
    assert!(found);
}

#[test]
fn which_chosen_is_patched() {
    use Tok::*;
    // /soc/chosen (not a child of the root) is left alone; chosen@0 is the one; a later plain
    // "chosen" is not touched (libfdt's fdt_path_offset finds the first match).
    let toks = vec![
        begin(""),
        begin("soc"),
        begin("chosen"),
        prop(START, &[1; 8]),
        EndNode,
        EndNode,
        begin("chosenx"),
        EndNode,
        begin("chosen@0"),
        prop("x", b""),
        EndNode,
        begin("chosen"),
        prop(START, &[2; 8]),
        EndNode,
        EndNode,
        End,
    ];
    let input = Raw::new(toks).build();
    let out = patch_vec(&input, &ChosenPatch::initrd(S, E)).unwrap();
    check_patched(&input, &oracle_tree(&input), &out, Some((S, E)), None);
    let t = oracle_tree(&out);
    let get = |p: &str| t.iter().find(|(q, _)| q == p).unwrap().1.clone();
    assert_eq!(get("/soc/chosen"), vec![(START.to_string(), vec![1; 8])]);
    assert_eq!(get("/chosen@0").len(), 3);
    assert_eq!(get("/chosen"), vec![(START.to_string(), vec![2; 8])]);
}

#[test]
fn bootargs_only_and_empty_patch() {
    let input = Raw::new(plain()).build();
    let out = patch_vec(
        &input,
        &ChosenPatch {
            initrd: None,
            bootargs: Some("rdinit=/init"),
        },
    )
    .unwrap();
    check_patched(
        &input,
        &oracle_tree(&input),
        &out,
        None,
        Some("rdinit=/init"),
    );
    // Nothing to set: a canonical copy, no /chosen made up.
    let out = patch_vec(&input, &ChosenPatch::default()).unwrap();
    assert_eq!(out, input);
    // An empty initrd range is fine; a reversed one is not.
    assert!(patch_vec(&input, &ChosenPatch::initrd(S, S)).is_ok());
    assert_eq!(
        patch_vec(&input, &ChosenPatch::initrd(E, S)),
        Err(PatchError::InitrdReversed { start: E, end: S })
    );
    assert_eq!(
        patch_vec(&input, &ChosenPatch::initrd(S, E).with_bootargs("a\0b")),
        Err(PatchError::BootargsNul)
    );
}

#[test]
fn every_block_order_gives_the_same_canonical_blob() {
    let mut outs = Vec::new();
    for order in [Order::Canonical, Order::StringsFirst, Order::RsvAfterStruct] {
        for gap in [0, 1, 13] {
            let mut raw = Raw::new(plain());
            raw.rsv = vec![(0x1000, 0x2000), (0x8000_0000, 0x10)];
            raw.order = order;
            raw.gap = gap;
            let input = raw.build();
            let out = patch_vec(&input, &ChosenPatch::initrd(S, E)).unwrap();
            check_patched(&input, &oracle_tree(&input), &out, Some((S, E)), None);
            assert_eq!(oracle_rsv(&out), raw.rsv);
            outs.push(out);
        }
    }
    assert!(outs.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn version_16_is_kept() {
    let mut raw = Raw::new(plain());
    raw.version = 16;
    raw.order = Order::StringsFirst;
    raw.gap = 5;
    let input = raw.build();
    assert_eq!(parse_fdt(&input).unwrap().version, 16);
    let out = patch_vec(&input, &ChosenPatch::initrd(S, E)).unwrap();
    let h = parse_fdt(&out).unwrap();
    assert_eq!((h.version, h.last_comp_version), (16, 16));
    assert_eq!(&out[36..40], &[0; 4]); // no size_dt_struct in a version-16 header
    let mut twin = raw.clone();
    twin.version = 17;
    check_patched(
        &input,
        &oracle_tree(&twin.build()),
        &out,
        Some((S, E)),
        None,
    );
    // dtc reads it too (a missing dtc fails the test: it does not pass without the check).
    let dts = dtc(&["-I", "dtb", "-O", "dts"], &out)
        .expect("dtc is not on PATH: install Debian's device-tree-compiler (make setup)");
    let dts = String::from_utf8(dts).unwrap();
    assert!(
        dts.contains("linux,initrd-start = <0x00 0x42010000>;"),
        "{dts}"
    );
}

#[test]
fn patching_twice_changes_nothing_more() {
    let input = Raw::new(plain()).build();
    let p = ChosenPatch::initrd(S, E).with_bootargs("console=ttyAMA0");
    let once = patch_vec(&input, &p).unwrap();
    assert_eq!(patch_vec(&once, &p).unwrap(), once);
    // New values replace the old ones in place: same size.
    let again = patch_vec(
        &once,
        &ChosenPatch::initrd(1, 2).with_bootargs("console=ttyAMA1"),
    )
    .unwrap();
    assert_eq!(again.len(), once.len());
}

/// Builds a blob from raw tokens.
fn blob(toks: Vec<Tok>) -> Vec<u8> {
    Raw::new(toks).build()
}

#[test]
fn malformed_structure_is_a_typed_error() {
    use Tok::*;
    let p = ChosenPatch::initrd(S, E);
    let err = |b: &[u8]| patch_vec(b, &p).unwrap_err();
    // The structure block starts at 56 in these blobs (header 40, one reservation terminator),
    // and the root's BEGIN_NODE takes 8 bytes.
    assert_eq!(
        err(&blob(vec![begin(""), Word(7), EndNode, End])),
        PatchError::BadToken {
            offset: 64,
            token: 7
        }
    );
    assert_eq!(
        err(&blob(vec![
            begin(""),
            Word(PROP),
            Word(1000),
            Word(0),
            EndNode,
            End
        ])),
        PatchError::StructOverrun { offset: 64 }
    );
    assert_eq!(
        err(&blob(vec![begin(""), Word(PROP), Word(0)])),
        PatchError::StructOverrun { offset: 64 }
    );
    // The name would end only in the strings block, which follows.
    let mut raw = Raw::new(vec![begin(""), Word(BEGIN_NODE), Word(0x6161_6161)]);
    raw.strings_prefix = b"\0".to_vec();
    assert_eq!(
        err(&raw.build()),
        PatchError::UnterminatedName { offset: 64 }
    );
    assert_eq!(
        err(&blob(vec![
            begin(""),
            Tok::PropOff(1000, vec![]),
            EndNode,
            End
        ])),
        PatchError::BadNameOffset {
            offset: 64,
            nameoff: 1000
        }
    );
    // Offset inside the block but no NUL after it.
    let mut raw = Raw::new(vec![begin(""), Tok::PropOff(4, vec![]), EndNode, End]);
    raw.strings_prefix = b"abc\0xyz".to_vec();
    assert_eq!(
        err(&raw.build()),
        PatchError::BadNameOffset {
            offset: 64,
            nameoff: 4
        }
    );
    assert_eq!(
        err(&blob(vec![begin(""), EndNode, EndNode, End])),
        PatchError::UnbalancedEndNode { offset: 68 }
    );
    assert_eq!(
        err(&blob(vec![begin(""), begin("a"), EndNode, End])),
        PatchError::UnclosedNode { offset: 76 }
    );
    assert_eq!(
        err(&blob(vec![begin(""), EndNode, begin(""), EndNode, End])),
        PatchError::SecondRoot { offset: 68 }
    );
    assert_eq!(
        err(&blob(vec![begin(""), EndNode, prop("a", b""), End])),
        PatchError::PropertyOutsideNode { offset: 68 }
    );
    assert_eq!(
        err(&blob(vec![
            begin(""),
            begin("a"),
            EndNode,
            prop("b", b""),
            EndNode,
            End
        ])),
        PatchError::PropertyAfterSubnode { offset: 76 }
    );
    assert_eq!(err(&blob(vec![begin(""), EndNode])), PatchError::MissingEnd);
    assert_eq!(
        err(&blob(vec![begin(""), EndNode, Nop])),
        PatchError::MissingEnd
    );
    // Header errors are parse_fdt's.
    let mut b = blob(plain());
    b[0] = 0;
    assert_eq!(err(&b), PatchError::Header(FdtError::BadMagic(0x000d_feed)));
    let mut raw = Raw::new(plain());
    raw.version = 18;
    assert_eq!(err(&raw.build()), PatchError::UnsupportedVersion(18));
    // A version-17 structure size that cuts FDT_END off.
    let mut b = blob(plain());
    let size = be32(&b, 36);
    b[36..40].copy_from_slice(&(size - 4).to_be_bytes());
    assert_eq!(err(&b), PatchError::MissingEnd);
}

#[test]
fn output_too_small_writes_nothing() {
    let input = blob(plain());
    let p = ChosenPatch::initrd(S, E);
    let need = fdt_patch::patched_size(&input, &p).unwrap();
    let mut out = vec![0x5au8; need - 1];
    assert_eq!(
        fdt_patch::patch(&input, &p, &mut out),
        Err(PatchError::OutputTooSmall {
            need,
            len: need - 1
        })
    );
    assert!(out.iter().all(|&b| b == 0x5a));
    // A longer buffer: the bytes after the blob are left alone.
    let mut out = vec![0x5au8; need + 8];
    assert_eq!(fdt_patch::patch(&input, &p, &mut out), Ok(need));
    assert!(out[need..].iter().all(|&b| b == 0x5a));
}

#[test]
fn a_refusing_sink_is_reported_and_nothing_is_written_for_bad_input() {
    struct Refuse(usize);
    impl Sink for Refuse {
        fn put(&mut self, off: usize, bytes: &[u8]) -> Result<(), PatchError> {
            self.0 += 1;
            Err(PatchError::Sink {
                offset: off,
                len: bytes.len(),
            })
        }
    }
    let p = ChosenPatch::initrd(S, E);
    let mut s = Refuse(0);
    assert!(matches!(
        fdt_patch::patch_to(&blob(plain()), &p, &mut s),
        Err(PatchError::Sink { .. })
    ));
    let mut s = Refuse(0);
    assert!(fdt_patch::patch_to(&blob(vec![begin(""), Tok::EndNode]), &p, &mut s).is_err());
    assert_eq!(s.0, 0, "an invalid input is refused before any write");
}

#[test]
fn too_large_output() {
    // A 2 MiB blob: the patched one would not fit Linux's limit.
    let big = vec![0u8; (2 << 20) - 120];
    let mut raw = Raw::new(vec![begin(""), prop("pad", &big), Tok::EndNode, Tok::End]);
    raw.gap = 0;
    let input = raw.build();
    assert!(input.len() <= 2 << 20);
    assert!(matches!(
        fdt_patch::patched_size(&input, &ChosenPatch::initrd(S, E)),
        Err(PatchError::TooLarge { .. })
    ));
}

#[test]
fn bounded_work_on_large_hostile_blobs() {
    use std::time::Instant;
    let t = Instant::now();
    // 60,000 properties all naming the start of a 1 MiB string: name checks must not rescan it.
    let mut toks = vec![begin("")];
    toks.extend((0..60_000).map(|_| Tok::PropOff(0, vec![])));
    toks.extend([Tok::EndNode, Tok::End]);
    let mut raw = Raw::new(toks);
    raw.strings_prefix = vec![b'a'; 1 << 20];
    raw.strings_prefix.push(0);
    let input = raw.build();
    let out = patch_vec(&input, &ChosenPatch::initrd(S, E)).unwrap();
    assert_eq!(out.len(), input.len() + 92);
    // A structure block of NOPs only (no FDT_END).
    let mut toks = vec![begin("")];
    toks.extend((0..400_000).map(|_| Tok::Nop));
    let input = blob(toks);
    assert_eq!(
        fdt_patch::patched_size(&input, &ChosenPatch::initrd(S, E)),
        Err(PatchError::MissingEnd)
    );
    println!("large hostile blobs: {:?}", t.elapsed());
}

#[test]
fn platform_dtb() {
    let input = fdt_support::platform_dtb();
    let tree = oracle_tree(&input);
    let args = "console=ttyAMA0 earlycon=pl011,0x9000000 rdinit=/init";
    for p in [
        ChosenPatch::initrd(S, E),
        ChosenPatch::initrd(S, E).with_bootargs(args),
    ] {
        let out = patch_vec(&input, &p).unwrap();
        check_patched(&input, &tree, &out, p.initrd, p.bootargs);
        // dtc accepts the result, and its view equals that of libfdt's fdtput doing the same.
        let ours = dtc(&["-s", "-I", "dtb", "-O", "dts"], &out).unwrap();
        match fdtput_reference(&input, &p) {
            Some(reference) => {
                let theirs = dtc(&["-s", "-I", "dtb", "-O", "dts"], &reference).unwrap();
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    String::from_utf8(theirs).unwrap()
                );
            }
            None => panic!(
                "fdtput is not on PATH, no libfdt cross-check: install Debian's device-tree-compiler (make setup)"
            ),
        }
    }
}

/// The same patch made with libfdt's `fdtput`, or `None` without it.
fn fdtput_reference(input: &[u8], p: &ChosenPatch<'_>) -> Option<Vec<u8>> {
    use std::process::Command;
    let path = std::env::temp_dir().join(format!("fdt-patch-ref-{}.dtb", std::process::id()));
    std::fs::write(&path, input).unwrap();
    let run = |args: &[String]| -> Option<()> {
        let st = match Command::new("fdtput").arg(&path).args(args).status() {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("fdtput: {e}"),
        };
        assert!(st.success(), "fdtput {args:?}");
        Some(())
    };
    let cells = |v: u64| [format!("{:x}", v >> 32), format!("{:x}", v & 0xffff_ffff)];
    let (s, e) = p.initrd.unwrap();
    let mut a = vec!["-t".into(), "x".into(), "/chosen".into(), START.into()];
    a.extend(cells(s));
    run(&a)?;
    let mut a = vec!["-t".into(), "x".into(), "/chosen".into(), END_PROP.into()];
    a.extend(cells(e));
    run(&a)?;
    if let Some(b) = p.bootargs {
        run(&[
            "-t".into(),
            "s".into(),
            "/chosen".into(),
            "bootargs".into(),
            b.into(),
        ])?;
    }
    let out = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    Some(out)
}

#[test]
fn fdtput_cross_check_creates_chosen() {
    // Without /chosen: libfdt creates it with `fdtput -c`, the patcher by itself.
    let input = blob(plain());
    let out = patch_vec(&input, &ChosenPatch::initrd(S, E)).unwrap();
    let Some(ours) = dtc(&["-s", "-I", "dtb", "-O", "dts"], &out) else {
        panic!("dtc is not on PATH: install Debian's device-tree-compiler (make setup)");
    };
    let path = std::env::temp_dir().join(format!("fdt-patch-mk-{}.dtb", std::process::id()));
    std::fs::write(&path, &input).unwrap();
    match std::process::Command::new("fdtput")
        .arg("-c")
        .arg(&path)
        .arg("/chosen")
        .status()
    {
        Ok(st) => assert!(st.success()),
        Err(_) => {
            panic!("fdtput is not on PATH: install Debian's device-tree-compiler (make setup)")
        }
    }
    let with_chosen = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let reference = fdtput_reference(&with_chosen, &ChosenPatch::initrd(S, E)).unwrap();
    let theirs = dtc(&["-s", "-I", "dtb", "-O", "dts"], &reference).unwrap();
    assert_eq!(
        String::from_utf8(ours).unwrap(),
        String::from_utf8(theirs).unwrap()
    );
}

/// How a random tree is turned into a blob.
#[derive(Clone, Debug)]
enum Build {
    VmFdt,
    Raw(Order, usize, Vec<u8>, u32),
}

fn build_strategy() -> impl Strategy<Value = Build> {
    prop_oneof![
        1 => Just(Build::VmFdt),
        1 => (
            prop_oneof![Just(Order::Canonical), Just(Order::StringsFirst), Just(Order::RsvAfterStruct)],
            0usize..9,
            prop_oneof![
                Just(Vec::new()),
                Just(b"linux,initrd-end\0".to_vec()),
                Just(b"xbootargs\0linux,initrd-start\0".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..16),
            ],
            16u32..=17,
        ).prop_map(|(o, g, s, v)| Build::Raw(o, g, s, v)),
    ]
}

fn make(root: &Node, rsv: &[(u64, u64)], cpu: u32, how: &Build) -> (Vec<u8>, Tree) {
    match how {
        Build::VmFdt => {
            let b = vm_fdt_build(root, rsv, cpu);
            let t = oracle_tree(&b);
            (b, t)
        }
        Build::Raw(order, gap, prefix, version) => {
            let mut toks = Vec::new();
            tokens(root, &mut toks);
            toks.push(Tok::End);
            let mut raw = Raw::new(toks);
            raw.rsv = rsv.to_vec();
            raw.boot_cpuid = cpu;
            raw.order = *order;
            raw.gap = *gap;
            raw.strings_prefix = prefix.clone();
            raw.version = *version;
            let mut twin = raw.clone();
            twin.version = 17;
            twin.order = Order::Canonical;
            (raw.build(), oracle_tree(&twin.build()))
        }
    }
}

fn initrd_strategy() -> impl Strategy<Value = Option<(u64, u64)>> {
    proptest::option::weighted(
        0.8,
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| (a.min(b), a.max(b))),
    )
}

fn bootargs_strategy() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[ -~]{0,40}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Random trees, with and without /chosen and pre-existing properties, built by vm-fdt or by
    /// the test builder in any block order and version: the oracle's view of the patched blob is
    /// the model's, the header fields and reservations are kept, and patching again is a no-op.
    #[test]
    fn random_trees(
        root in root(),
        rsv in reservations(),
        cpu in 0u32..8,
        how in build_strategy(),
        initrd in initrd_strategy(),
        bootargs in bootargs_strategy(),
    ) {
        let (input, tree) = make(&root, &rsv, cpu, &how);
        let p = ChosenPatch { initrd, bootargs: bootargs.as_deref() };
        let out = patch_vec(&input, &p).unwrap();
        check_patched(&input, &tree, &out, initrd, bootargs.as_deref());
        prop_assert_eq!(oracle_rsv(&as_v17(&out)), rsv);
        prop_assert_eq!(patch_vec(&out, &p).unwrap(), out);
    }

    /// Random bytes, bare or behind a plausible header, never panic; whatever is accepted is a
    /// valid blob and a fixed point.
    #[test]
    fn random_bytes_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        header in proptest::option::of((0u32..700, 0u32..700, 0u32..700, 0u32..200, 0u32..600, 15u32..19)),
        initrd in initrd_strategy(),
    ) {
        let mut b = body;
        if let Some((st, strs, rsv, sst, sstr, ver)) = header {
            b.resize(b.len().max(40), 0);
            let total = b.len() as u32;
            for (i, w) in [0xd00d_feed, total, st, strs, rsv & !7, ver, 16, 0, sstr, sst].iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
            }
        }
        check_any(&b, initrd)?;
    }

    /// Valid random blobs with bytes overwritten, words set to token values, or cut short: never a
    /// panic, and whatever is accepted is a valid blob and a fixed point.
    #[test]
    fn mutated_blobs_never_panic(
        root in root(),
        how in build_strategy(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        words in proptest::collection::vec((any::<prop::sample::Index>(), prop_oneof![0u32..10, any::<u32>()]), 0..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        initrd in initrd_strategy(),
    ) {
        let (mut b, _) = make(&root, &[], 0, &how);
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        for (i, w) in words {
            let i = i.index(b.len() / 4) * 4;
            b[i..i + 4].copy_from_slice(&w.to_be_bytes());
        }
        if let Some(c) = cut {
            b.truncate(c.index(b.len()));
        }
        check_any(&b, initrd)?;
    }
}

fn check_any(b: &[u8], initrd: Option<(u64, u64)>) -> Result<(), TestCaseError> {
    let p = ChosenPatch {
        initrd,
        bootargs: None,
    };
    // The output may be larger than the input plus the new properties when the input's blocks
    // overlap (a reservation map running into the structure block): sized by the dry run.
    let n = match fdt_patch::patched_size(b, &p) {
        Ok(n) => n,
        Err(e) => {
            let mut out = vec![0u8; b.len() + 4096];
            prop_assert_eq!(fdt_patch::patch(b, &p, &mut out), Err(e));
            return Ok(());
        }
    };
    let mut out = vec![0u8; n];
    prop_assert_eq!(fdt_patch::patch(b, &p, &mut out), Ok(n));
    prop_assert!(parse_fdt(&out).is_ok());
    let mut again = vec![0u8; n];
    prop_assert_eq!(fdt_patch::patch(&out, &p, &mut again), Ok(n));
    prop_assert_eq!(again, out);
    Ok(())
}

/// The reservations in a blob's memory reservation block, read straight from its bytes: (address,
/// size) pairs up to the (0, 0) entry.
fn rsv_entries(blob: &[u8]) -> Vec<(u64, u64)> {
    let be = |o: usize| u64::from_be_bytes(blob[o..o + 8].try_into().unwrap());
    let at = u32::from_be_bytes(blob[16..20].try_into().unwrap()) as usize;
    (0..)
        .map(|i| (be(at + 16 * i), be(at + 16 * i + 8)))
        .take_while(|&e| e != (0, 0))
        .collect()
}

/// Only (0, 0) ends the memory reservation map: an entry with a zero address or a zero size is
/// an entry like any other, kept with the ones after it.
#[test]
fn reservations_with_a_zero_half_are_kept() {
    let mut raw = Raw::new(plain());
    raw.rsv = vec![(0, 0x1000), (0x4800_0000, 0), (0x8000_0000, 0x10)];
    let input = raw.build();
    assert_eq!(rsv_entries(&input), raw.rsv);
    let out = patch_vec(&input, &ChosenPatch::initrd(S, E)).unwrap();
    assert_eq!(rsv_entries(&out), raw.rsv);
}

/// Every byte of the output is written, the padding after a property value included: the
/// result does not depend on what the output buffer held.
#[test]
fn every_output_byte_is_written() {
    let input = Raw::new(plain()).build();
    // "a\0" is two bytes: two bytes of padding follow it.
    let p = ChosenPatch::initrd(S, E).with_bootargs("a");
    let clean = patch_vec(&input, &p).unwrap();
    let mut dirty = vec![0xa5u8; input.len() + 4096];
    let n = fdt_patch::patch(&input, &p, &mut dirty).unwrap();
    assert_eq!(&dirty[..n], &clean[..]);
}
