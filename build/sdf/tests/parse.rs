//! system.xml parsing: the repository's file, errors that name line/element/attribute, no panic
//! on any input, and agreement between system.xml and the PD crates that implement it.

use proptest::prelude::*;
use sdf::{PdScope, parse};

fn repo_system() -> (std::path::PathBuf, String) {
    let path = sdf::codegen::find_system_xml(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("system.xml");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

const VALID: &str = r#"<system>
  <memory_region name="shared" size="0x1000" />
  <memory_region name="ram" size="0x200000" page_size="0x200000" />
  <protection_domain name="a" priority="10">
    <program_image path="a.elf" />
    <map mr="shared" vaddr="0x400000" perms="rw" setvar_vaddr="shared_vaddr" />
    <irq irq="33" id="3" trigger="edge" />
  </protection_domain>
  <protection_domain name="b" priority="20" passive="true">
    <program_image path="b.elf" />
    <map mr="shared" vaddr="0x600000" perms="r" />
    <virtual_machine name="guest">
      <vcpu id="0" />
      <map mr="ram" vaddr="0x40000000" perms="rwx" />
    </virtual_machine>
  </protection_domain>
  <channel>
    <end pd="a" id="0" pp="true" />
    <end pd="b" id="1" notify="false" />
  </channel>
</system>"#;

#[test]
fn repository_system_xml_is_valid() {
    let (_, text) = repo_system();
    let sys = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(!sys.pds.is_empty());
}

#[test]
fn scope_of_a_valid_system() {
    let sys = parse(VALID).unwrap();
    let a = PdScope::of(&sys, "a").unwrap();
    assert_eq!(a.irq_mask(), 1 << 3);
    assert_eq!(a.notification_mask(), 1 << 0);
    assert_eq!(a.pp_mask(), 1 << 0);
    assert!(!a.channels[0].notified_by_peer, "b's end has notify=false");
    let b = PdScope::of(&sys, "b").unwrap();
    assert_eq!(b.notification_mask(), 0);
    assert!(b.channels[0].called_by_peer);
    assert!(b.passive);
    let vm = b.vm.unwrap();
    assert_eq!(
        (vm.name.as_str(), vm.vcpus.as_slice()),
        ("guest", &[0u64][..])
    );
    assert_eq!(vm.maps[0].size, 0x200000);
    assert!(PdScope::of(&sys, "nobody").is_none());
}

/// Each malformed variant, and the (line, element, attribute) its error must name.
#[test]
fn malformed_documents_name_element_and_attribute() {
    let cases: &[(&str, &str, &str, Option<&str>, u32)] = &[
        ("<system><bogus/></system>", "", "bogus", None, 1),
        (
            "<system>\n<memory_region name=\"m\" size=\"12z\"/></system>",
            "",
            "memory_region",
            Some("size"),
            2,
        ),
        (
            "<system><memory_region name=\"m\" size=\"0x1001\"/></system>",
            "",
            "memory_region",
            Some("size"),
            1,
        ),
        (
            "<system><memory_region name=\"m\"/></system>",
            "",
            "memory_region",
            Some("size"),
            1,
        ),
        (
            "<system><memory_region name=\"m\" size=\"0x1000\" colour=\"red\"/></system>",
            "",
            "memory_region",
            Some("colour"),
            1,
        ),
        (
            "<system><protection_domain name=\"p\" priority=\"300\"><program_image path=\"p\"/></protection_domain></system>",
            "",
            "protection_domain",
            Some("priority"),
            1,
        ),
        (
            "<system><protection_domain name=\"p\"/></system>",
            "",
            "protection_domain",
            None,
            1,
        ),
        (
            "<system><protection_domain name=\"p\"><program_image path=\"p\"/>\n<map mr=\"nope\" vaddr=\"0x1000\"/></protection_domain></system>",
            "",
            "map",
            Some("mr"),
            2,
        ),
        (
            "<system><memory_region name=\"m\" size=\"0x1000\"/><protection_domain name=\"p\"><program_image path=\"p\"/><map mr=\"m\" vaddr=\"0x1001\"/></protection_domain></system>",
            "",
            "map",
            Some("vaddr"),
            1,
        ),
        (
            "<system><memory_region name=\"m\" size=\"0x1000\"/><protection_domain name=\"p\"><program_image path=\"p\"/><map mr=\"m\" vaddr=\"0x1000\" perms=\"w\"/></protection_domain></system>",
            "",
            "map",
            Some("perms"),
            1,
        ),
        (
            "<system><memory_region name=\"m\" size=\"0x2000\"/><protection_domain name=\"p\"><program_image path=\"p\"/><map mr=\"m\" vaddr=\"0x1000\"/>\n<map mr=\"m\" vaddr=\"0x2000\"/></protection_domain></system>",
            "",
            "map",
            Some("vaddr"),
            2,
        ),
        (
            "<system><protection_domain name=\"p\"><program_image path=\"p\"/><irq irq=\"1\" id=\"63\"/></protection_domain></system>",
            "",
            "irq",
            Some("id"),
            1,
        ),
        (
            "<system><protection_domain name=\"p\"><program_image path=\"p\"/></protection_domain><protection_domain name=\"q\"><program_image path=\"q\"/></protection_domain>\n<channel><end pd=\"p\" id=\"0\"/>\n<end pd=\"zz\" id=\"0\"/></channel></system>",
            "",
            "end",
            Some("pd"),
            3,
        ),
        (
            "<system><protection_domain name=\"p\" priority=\"5\"><program_image path=\"p\"/></protection_domain><protection_domain name=\"q\" priority=\"5\"><program_image path=\"q\"/></protection_domain>\n<channel><end pd=\"p\" id=\"0\" pp=\"true\"/><end pd=\"q\" id=\"0\"/></channel></system>",
            "",
            "end",
            Some("pp"),
            2,
        ),
        (
            "<system><protection_domain name=\"p\"><program_image path=\"p\"/><irq irq=\"1\" id=\"0\"/></protection_domain><protection_domain name=\"q\"><program_image path=\"q\"/></protection_domain>\n<channel>\n<end pd=\"p\" id=\"0\"/><end pd=\"q\" id=\"0\"/></channel></system>",
            "",
            "end",
            Some("id"),
            3,
        ),
        (
            "<system><protection_domain name=\"p\"><program_image path=\"p\"/></protection_domain><protection_domain name=\"p\"><program_image path=\"p\"/></protection_domain></system>",
            "",
            "protection_domain",
            Some("name"),
            1,
        ),
        (
            "<system><protection_domain name=\"p\" passive=\"yes\"><program_image path=\"p\"/></protection_domain></system>",
            "",
            "protection_domain",
            Some("passive"),
            1,
        ),
        (
            "<system><protection_domain name=\"p\"><program_image path=\"p\"/><virtual_machine name=\"v\"/></protection_domain></system>",
            "",
            "virtual_machine",
            None,
            1,
        ),
        (
            "<system><memory_region name=\"m\" size=\"0x1000\"/><protection_domain name=\"p\"><program_image path=\"p\"/><map mr=\"m\" vaddr=\"0x1000\" setvar_vaddr=\"9bad\"/></protection_domain></system>",
            "",
            "map",
            Some("setvar_vaddr"),
            1,
        ),
        (
            "<system><channel><end pd=\"p\" id=\"0\"/></channel></system>",
            "",
            "channel",
            None,
            1,
        ),
    ];
    for (doc, _, element, attribute, line) in cases {
        let e = parse(doc).expect_err(doc);
        assert_eq!(e.element, *element, "{doc}\n-> {e}");
        assert_eq!(e.attribute.as_deref(), *attribute, "{doc}\n-> {e}");
        assert_eq!(e.line, *line, "{doc}\n-> {e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("system.xml:{line}: <{element}>")),
            "{shown}"
        );
    }
}

#[test]
fn not_xml_is_an_error_with_a_line() {
    let e = parse("<system>\n<a></b></system>").unwrap_err();
    assert!(e.message.contains("not well-formed"));
    assert_eq!(e.line, 2);
}

/// Every <program_image> names a workspace crate (ELF = crate name) whose build script generates
/// its constants for that same PD: the code and system.xml cannot drift apart.
#[test]
fn every_pd_image_is_a_crate_generated_from_its_own_entry() {
    let (path, text) = repo_system();
    let root = path.parent().unwrap();
    // Production and the test system (system.xml + system-test.xml: the self-test PDs).
    let test = sdf::overlay::load_composed(&path, &root.join(sdf::overlay::TEST_OVERLAY))
        .unwrap_or_else(|e| panic!("{e}"))
        .1;
    let prod = parse(&text).unwrap();
    assert!(test.pds.len() > prod.pds.len());
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for pd in prod.pds.iter().chain(&test.pds) {
        let krate = pd
            .program_image
            .strip_suffix(".elf")
            .unwrap_or_else(|| panic!("{}: image must be <crate>.elf", pd.name));
        // The workspace member whose package is named after the image.
        let member = workspace
            .lines()
            .map(|l| l.trim().trim_matches(|c| c == '"' || c == ','))
            .filter(|m| root.join(m).join("Cargo.toml").is_file())
            .find(|m| {
                std::fs::read_to_string(root.join(m).join("Cargo.toml"))
                    .is_ok_and(|t| t.contains(&format!("name = \"{krate}\"")))
            })
            .unwrap_or_else(|| {
                panic!(
                    "PD {} uses {} but no workspace member is the package {krate}",
                    pd.name, pd.program_image
                )
            });
        let build = std::fs::read_to_string(root.join(member).join("build.rs")).unwrap();
        assert!(
            build.contains(&format!("build_script(\"{}\")", pd.name)),
            "{member}/build.rs must generate for PD {}",
            pd.name
        );
    }
}

#[test]
fn codegen_names_every_channel_and_setvar() {
    let sys = parse(VALID).unwrap();
    let a = sdf::codegen::generate(&sys, "a").unwrap();
    assert!(a.contains("pub const B: Channel = Channel::new(0);"), "{a}");
    assert!(
        a.contains("pub const IRQ_33: Channel = Channel::new(3);"),
        "{a}"
    );
    assert!(a.contains("pub static shared_vaddr: Patched<u64>"), "{a}");
    assert!(a.contains("notifications: 0x1, pps: 0x1"), "{a}");
    let b = sdf::codegen::generate(&sys, "b").unwrap();
    assert!(
        b.contains("pub const GUEST_VCPU_0: Child = Child::new(0);"),
        "{b}"
    );
    assert!(
        b.contains("pub const VM_VCPUS: &[Child] = &[Child::new(0)];"),
        "{b}"
    );
    assert!(
        b.contains("notifications: 0x0, pps: 0x0, passive: true"),
        "{b}"
    );
    assert!(sdf::codegen::generate(&sys, "c").is_err());
    // smc="true" becomes the PD's SMC constant; the default is no SMC capability.
    assert!(a.contains("pub const SMC: bool = false;"), "{a}");
    let sys = parse(&VALID.replace(
        "<protection_domain name=\"a\" priority=\"10\">",
        "<protection_domain name=\"a\" priority=\"10\" smc=\"true\">",
    ))
    .unwrap();
    assert!(
        sdf::codegen::generate(&sys, "a")
            .unwrap()
            .contains("pub const SMC: bool = true;")
    );
    assert!(
        parse(&VALID.replace(
            "<protection_domain name=\"a\" priority=\"10\">",
            "<protection_domain name=\"a\" priority=\"10\" smc=\"maybe\">",
        ))
        .is_err()
    );
    assert!(sdf::codegen::required_symbols(&sys, "a").contains(&"shared_vaddr".to_string()));
    // <setvar symbol region_paddr> gets its patched static and is a required symbol.
    let with_setvar = VALID.replace(
        "<irq irq=\"33\" id=\"3\" trigger=\"edge\" />",
        "<irq irq=\"33\" id=\"3\" trigger=\"edge\" />\n<setvar symbol=\"dma_paddr\" region_paddr=\"shared\" />",
    );
    let sys = parse(&with_setvar).unwrap();
    let a = sdf::codegen::generate(&sys, "a").unwrap();
    assert!(a.contains("pub static dma_paddr: Patched<u64>"), "{a}");
    assert!(sdf::codegen::required_symbols(&sys, "a").contains(&"dma_paddr".to_string()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,300}") {
        let _ = parse(&s);
    }

    #[test]
    fn mutated_valid_documents_never_panic(pos in 0usize..VALID.len(), len in 0usize..16, insert in "[<>=\"/a-z0-9 x_-]{0,12}") {
        let mut doc = VALID.as_bytes().to_vec();
        let end = (pos + len).min(doc.len());
        doc.splice(pos..end, insert.bytes());
        if let Some(sys) = String::from_utf8(doc).ok().and_then(|t| parse(&t).ok()) {
            for pd in &sys.pds {
                let _ = sdf::codegen::generate(&sys, &pd.name);
                let _ = PdScope::of(&sys, &pd.name);
            }
        }
    }
}
