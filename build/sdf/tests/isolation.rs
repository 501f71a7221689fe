//! Isolation, checked on every system description of the repository (system.xml, the production
//! system, and system.xml + system-test.xml, the boot tests' system) against the declared policy
//! (`sdf::policy_table::POLICY`): any grant a system makes that the table does not list fails,
//! naming the subject, the item and the line. The same check is shown failing on deliberately
//! widened copies, each for the one grant that was widened.

use sdf::System;
use sdf::policy::{Kind, Violation, check};
use sdf::policy_table::POLICY;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    sdf::codegen::find_system_xml(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("system.xml above the crate")
        .parent()
        .expect("a folder")
        .to_path_buf()
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn production_text() -> String {
    read("system.xml")
}

fn test_text() -> String {
    sdf::overlay::compose(&production_text(), &read(sdf::overlay::TEST_OVERLAY))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Every system description at the repository's root: `<system>` files as they are, overlays
/// composed onto system.xml. Any other `.xml` there fails the test (it must be one of the two).
fn every_system() -> Vec<(String, String, System)> {
    let mut out = vec![];
    let mut entries: Vec<_> = std::fs::read_dir(root())
        .expect("repository root")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&p).unwrap();
        let text = if text.contains("<system_overlay") {
            sdf::overlay::compose(&production_text(), &text)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        } else if text.contains("<system>") {
            text
        } else {
            panic!("{name} is neither a <system> nor a <system_overlay>");
        };
        let sys = sdf::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((name, text, sys));
    }
    let names: Vec<&str> = out.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(
        names.contains(&"system.xml") && names.contains(&"system-test.xml"),
        "{names:?}"
    );
    out
}

fn violations(text: &str) -> Vec<Violation> {
    check(&sdf::parse(text).unwrap_or_else(|e| panic!("{e}")), &POLICY)
}

fn report(v: &[Violation]) -> String {
    v.iter().map(|v| format!("\n  {v}")).collect()
}

#[test]
fn every_system_description_obeys_the_policy() {
    for (name, _, sys) in every_system() {
        let v = check(&sys, &POLICY);
        assert!(
            v.is_empty(),
            "{name} grants what the policy does not:{}",
            report(&v)
        );
    }
}

#[test]
fn the_production_system_holds_the_vmm_its_guest_the_driver_domains_and_the_virtualisers_only() {
    let sys = sdf::parse(&production_text()).unwrap();
    let pds: BTreeSet<&str> = sys.pds.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        pds,
        BTreeSet::from([
            "vmm",
            "driver_monitor",
            "serial_driver",
            "blk_driver",
            "blk_virt",
            "net_virt",
            "timer_driver"
        ])
    );
    let vms: Vec<&str> = sys
        .pds
        .iter()
        .filter_map(|p| p.virtual_machine.as_ref().map(|v| v.name.as_str()))
        .collect();
    assert_eq!(vms, ["guest"]);
    assert!(
        !production_text().contains("selftest"),
        "system.xml names a self-test PD or region"
    );
}

/// (region, vaddr, perms, cached, setvar) of a map, without its line.
type MapKey = (String, u64, String, bool, Option<String>);

fn map_keys(maps: &[sdf::Map]) -> BTreeSet<MapKey> {
    maps.iter()
        .map(|m| {
            (
                m.mr.clone(),
                m.vaddr,
                format!("{:?}", m.perms),
                m.cached,
                m.setvar_vaddr.clone(),
            )
        })
        .collect()
}

#[test]
fn the_test_system_is_the_production_system_plus_the_self_test_pds() {
    let prod = sdf::parse(&production_text()).unwrap();
    let test = sdf::parse(&test_text()).unwrap();
    let names = |s: &System| -> BTreeSet<String> { s.pds.iter().map(|p| p.name.clone()).collect() };
    let added: BTreeSet<String> = names(&test).difference(&names(&prod)).cloned().collect();
    assert_eq!(
        added,
        BTreeSet::from(["selftest_ping".to_string(), "selftest_pong".to_string()])
    );
    for p in &prod.pds {
        let t = test.pd(&p.name).unwrap();
        assert!(
            map_keys(&p.maps).is_subset(&map_keys(&t.maps)),
            "{}",
            p.name
        );
        assert_eq!(p.irqs.len(), t.irqs.len(), "{}", p.name);
        assert_eq!(p.smc, t.smc, "{}", p.name);
        assert_eq!(p.virtual_machine.is_some(), t.virtual_machine.is_some());
    }
    for r in &prod.memory_regions {
        let t = test.region(&r.name).unwrap();
        assert_eq!((r.size, r.phys_addr), (t.size, t.phys_addr), "{}", r.name);
    }
    // The liveness channel exists only in the test system.
    let vmm_peers = |s: &System| -> Vec<String> {
        sdf::PdScope::of(s, "vmm")
            .unwrap()
            .channels
            .iter()
            .map(|c| c.peer.clone())
            .collect()
    };
    assert!(!vmm_peers(&prod).contains(&"selftest_ping".to_string()));
    assert!(vmm_peers(&test).contains(&"selftest_ping".to_string()));
}

#[test]
fn the_block_driver_maps_one_transport_page_the_one_qemu_puts_its_disk_in() {
    for (name, _, sys) in every_system() {
        let r = sys.region("blk_regs").unwrap();
        assert_eq!((r.phys_addr, r.size), (Some(0xa00_3000), 0x1000), "{name}");
        // QEMU virt's first virtio-mmio -device: transport 31.
        let slot31 = 0x0a00_0000 + 31 * 0x200;
        assert!((0xa00_3000..0xa00_4000).contains(&slot31));
    }
}

#[test]
fn device_memory_is_mapped_by_at_most_one_pd() {
    for (name, _, sys) in every_system() {
        for region in sys.memory_regions.iter().filter(|r| r.phys_addr.is_some()) {
            let users: Vec<&str> = sys
                .pds
                .iter()
                .filter(|p| p.maps.iter().any(|m| m.mr == region.name))
                .map(|p| p.name.as_str())
                .collect();
            assert!(
                users.len() <= 1,
                "{name}: device region {} is mapped by {users:?}",
                region.name
            );
        }
    }
}

// ---- The check, failing on widened copies (the real `check`, on edited XML). ----

/// `text` with `from` replaced by `to` once; the edit must apply.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the test's edit must apply: {from}");
    text.replacen(from, to, 1)
}

/// The one violation of `text`, as (subject, kind).
fn only(text: &str) -> (String, Kind) {
    let v = violations(text);
    assert_eq!(v.len(), 1, "{}", report(&v));
    let v = v.into_iter().next().unwrap();
    assert!(v.line > 0, "the violation names its line: {v}");
    (v.subject, v.kind)
}

const BLK_PD: &str = r#"<protection_domain name="blk_driver" id="1" priority="240">"#;
const BLK_DATA: &str = r#"<map mr="blk_data_vmm" vaddr="0x7000000" perms="r" />"#;

#[test]
fn the_unedited_systems_have_no_violation() {
    assert_eq!(violations(&production_text()), vec![]);
    assert_eq!(violations(&test_text()), vec![]);
}

#[test]
fn an_extra_map_fails() {
    let t = edit(
        &production_text(),
        BLK_DATA,
        &format!("{BLK_DATA}\n<map mr=\"serial_tx_data_vmm\" vaddr=\"0x8000000\" perms=\"r\" />"),
    );
    assert_eq!(
        only(&t),
        ("blk_driver".into(), Kind::Map("serial_tx_data_vmm".into()))
    );
}

#[test]
fn widened_permissions_fail() {
    let t = edit(
        &production_text(),
        BLK_DATA,
        r#"<map mr="blk_data_vmm" vaddr="0x7000000" perms="rw" />"#,
    );
    assert_eq!(
        only(&t),
        (
            "blk_driver".into(),
            Kind::Perms {
                mr: "blk_data_vmm".into(),
                granted: "rw".into(),
                allowed: "r"
            }
        )
    );
    // Narrower than the policy is fine.
    let t = edit(
        &production_text(),
        r#"<map mr="blk_dma" vaddr="0x6000000" perms="rw""#,
        r#"<map mr="blk_dma" vaddr="0x6000000" perms="r""#,
    );
    assert_eq!(violations(&t), vec![]);
}

#[test]
fn a_cached_device_map_fails() {
    let t = edit(
        &production_text(),
        r#"<map mr="uart" vaddr="0x5000000" perms="rw" cached="false""#,
        r#"<map mr="uart" vaddr="0x5000000" perms="rw" cached="true""#,
    );
    assert_eq!(
        only(&t),
        (
            "serial_driver".into(),
            Kind::Cached {
                mr: "uart".into(),
                cached: true
            }
        )
    );
}

#[test]
fn an_extra_channel_fails_at_both_ends() {
    let t = edit(
        &production_text(),
        "</system>",
        "<channel><end pd=\"blk_driver\" id=\"5\" /><end pd=\"serial_driver\" id=\"9\" /></channel>\n</system>",
    );
    let v: Vec<(String, Kind)> = violations(&t)
        .into_iter()
        .map(|v| (v.subject, v.kind))
        .collect();
    assert_eq!(
        v,
        [
            (
                "serial_driver".into(),
                Kind::Channel {
                    id: 9,
                    peer: "blk_driver".into()
                }
            ),
            (
                "blk_driver".into(),
                Kind::Channel {
                    id: 5,
                    peer: "serial_driver".into()
                }
            ),
        ]
    );
}

#[test]
fn a_protected_call_right_not_in_the_policy_fails() {
    let t = edit(
        &production_text(),
        r#"<end pd="vmm" id="3" />"#,
        r#"<end pd="vmm" id="3" pp="true" />"#,
    );
    assert_eq!(
        only(&t),
        (
            "vmm".into(),
            Kind::Pp {
                id: 3,
                peer: "blk_virt".into()
            }
        )
    );
}

#[test]
fn the_block_virtualiser_mapping_a_data_region_or_told_its_address_fails() {
    // It needs neither: requests carry offsets, and the driver checks them.
    let virt = r#"<program_image path="blk-virt.elf" />"#;
    let t = edit(
        &production_text(),
        virt,
        &format!("{virt}\n<map mr=\"blk_data_vmm\" vaddr=\"0x7000000\" perms=\"r\" />"),
    );
    assert_eq!(
        only(&t),
        ("blk_virt".into(), Kind::Map("blk_data_vmm".into()))
    );
    let t = edit(
        &production_text(),
        virt,
        &format!("{virt}\n<setvar symbol=\"data_paddr\" region_paddr=\"blk_data_vmm\" />"),
    );
    assert_eq!(
        only(&t),
        ("blk_virt".into(), Kind::Paddr("blk_data_vmm".into()))
    );
}

#[test]
fn the_network_virtualiser_writing_a_tx_data_region_or_mapping_guest_memory_fails() {
    // It only reads a sender's frames; it writes only the destinations' receive buffers.
    let t = edit(
        &production_text(),
        r#"<map mr="net_tx_data_vmm" vaddr="0x4200000" perms="r""#,
        r#"<map mr="net_tx_data_vmm" vaddr="0x4200000" perms="rw""#,
    );
    assert_eq!(
        only(&t),
        (
            "net_virt".into(),
            Kind::Perms {
                mr: "net_tx_data_vmm".into(),
                granted: "rw".into(),
                allowed: "r"
            }
        )
    );
    let virt = r#"<program_image path="net-virt.elf" />"#;
    let t = edit(
        &production_text(),
        virt,
        &format!("{virt}\n<map mr=\"guest_ram\" vaddr=\"0x10000000\" perms=\"r\" />"),
    );
    let v = violations(&t);
    assert!(
        v.iter().any(|v| v.subject == "net_virt"),
        "guest RAM in net_virt must fail:{}",
        report(&v)
    );
}

#[test]
fn an_extra_irq_fails() {
    let t = edit(
        &production_text(),
        BLK_DATA,
        &format!("{BLK_DATA}\n<irq irq=\"78\" id=\"3\" trigger=\"edge\" />"),
    );
    assert_eq!(only(&t), ("blk_driver".into(), Kind::Irq(78)));
    // The same IRQ on another trigger is another grant.
    let t = edit(
        &production_text(),
        r#"<irq irq="79" id="0" trigger="edge" />"#,
        r#"<irq irq="79" id="0" />"#,
    );
    assert_eq!(only(&t), ("blk_driver".into(), Kind::Irq(79)));
}

#[test]
fn smc_on_a_driver_fails() {
    let t = edit(
        &production_text(),
        BLK_PD,
        r#"<protection_domain name="blk_driver" id="1" priority="240" smc="true">"#,
    );
    assert_eq!(only(&t), ("blk_driver".into(), Kind::Smc));
}

#[test]
fn guest_memory_in_a_driver_fails_even_if_the_table_were_widened() {
    let t = edit(
        &production_text(),
        BLK_DATA,
        &format!("{BLK_DATA}\n<map mr=\"guest_ram\" vaddr=\"0x40000000\" perms=\"r\" />"),
    );
    let v: Vec<Kind> = violations(&t).into_iter().map(|v| v.kind).collect();
    // Once from the table (the driver may not map guest memory), once from the rule that
    // holds whatever the table says (only the VM's owner may).
    assert_eq!(
        v,
        [
            Kind::GuestMemory("guest_ram".into()),
            Kind::GuestMemory("guest_ram".into())
        ]
    );
    // The rule that does not depend on the table: with every PD allowed guest memory, the map
    // still fails as guest memory (and as a map the driver's row does not list).
    let mut wide = POLICY;
    let pds: Vec<sdf::policy::PdRule> = POLICY
        .pds
        .iter()
        .map(|p| sdf::policy::PdRule {
            may_map_guest_memory: true,
            ..*p
        })
        .collect();
    wide.pds = Box::leak(pds.into_boxed_slice());
    let v = check(&sdf::parse(&t).unwrap(), &wide);
    assert_eq!(
        v.iter()
            .map(|v| (&v.subject[..], &v.kind))
            .collect::<Vec<_>>(),
        [
            ("blk_driver", &Kind::GuestMemory("guest_ram".into())),
            ("blk_driver", &Kind::Map("guest_ram".into()))
        ],
        "{}",
        report(&v)
    );
}

#[test]
fn a_widened_device_region_fails() {
    let t = edit(
        &production_text(),
        r#"<memory_region name="blk_regs" size="0x1000" phys_addr="0xa003000" />"#,
        r#"<memory_region name="blk_regs" size="0x4000" phys_addr="0xa000000" />"#,
    );
    let v: Vec<Kind> = violations(&t).into_iter().map(|v| v.kind).collect();
    assert_eq!(
        v,
        [
            Kind::RegionSize {
                mr: "blk_regs".into(),
                size: 0x4000,
                max: 0x1000
            },
            Kind::RegionPhys {
                mr: "blk_regs".into(),
                phys: Some(0xa00_0000)
            }
        ]
    );
}

#[test]
fn a_region_not_in_the_policy_fails() {
    let t = edit(
        &production_text(),
        "</system>",
        "<memory_region name=\"extra\" size=\"0x1000\" />\n</system>",
    );
    assert_eq!(
        only(&t),
        ("region:extra".into(), Kind::UnknownRegion("extra".into()))
    );
}

#[test]
fn a_physical_address_not_in_the_policy_fails() {
    let t = edit(
        &production_text(),
        r#"<setvar symbol="data_paddr" region_paddr="blk_data_vmm" />"#,
        "<setvar symbol=\"data_paddr\" region_paddr=\"blk_data_vmm\" />\n<setvar symbol=\"ram_paddr\" region_paddr=\"guest_ram\" />",
    );
    assert_eq!(
        only(&t),
        ("blk_driver".into(), Kind::Paddr("guest_ram".into()))
    );
}

#[test]
fn a_parent_not_in_the_policy_fails() {
    // blk_driver moved from the monitor into serial_driver (priority 250 > 240) as its child 0.
    let text = production_text();
    let start = text.find(BLK_PD).unwrap();
    let end =
        start + text[start..].find("</protection_domain>").unwrap() + "</protection_domain>".len();
    let blk = text[start..end].replace(
        BLK_PD,
        r#"<protection_domain name="blk_driver" id="0" priority="240">"#,
    );
    let mut t = format!("{}{}", &text[..start], &text[end..]);
    t = edit(
        &t,
        r#"<irq irq="33" id="0" />"#,
        &format!("<irq irq=\"33\" id=\"0\" />\n{blk}"),
    );
    assert_eq!(
        only(&t),
        (
            "blk_driver".into(),
            Kind::Parent(Some("serial_driver".into()))
        )
    );
}

#[test]
fn a_pd_not_in_the_policy_fails() {
    let t = edit(
        &production_text(),
        "</system>",
        "<protection_domain name=\"extra\" priority=\"1\"><program_image path=\"x.elf\" /></protection_domain>\n</system>",
    );
    assert_eq!(only(&t), ("extra".into(), Kind::UnknownPd));
}

#[test]
fn a_widened_vm_fails() {
    let gic = r#"<map mr="gic_vcpu" vaddr="0x8010000" perms="rw" cached="false" />"#;
    let t = edit(
        &production_text(),
        gic,
        &format!("{gic}\n<map mr=\"uart\" vaddr=\"0x9000000\" perms=\"rw\" cached=\"false\" />"),
    );
    assert_eq!(only(&t), ("vm:guest".into(), Kind::Map("uart".into())));
    let t = edit(
        &production_text(),
        r#"<vcpu id="3" />"#,
        "<vcpu id=\"3\" />\n<vcpu id=\"4\" />",
    );
    assert_eq!(only(&t), ("vm:guest".into(), Kind::Vcpus(5)));
    let t = edit(
        &production_text(),
        r#"<map mr="guest_wp_page" vaddr="0x50000000" perms="rx" />"#,
        r#"<map mr="guest_wp_page" vaddr="0x50000000" perms="rwx" />"#,
    );
    assert!(matches!(only(&t).1, Kind::Perms { .. }));
}

#[test]
fn the_vms_threads_hold_no_capabilities() {
    // A system description has no element that gives a VM a capability: no IRQ, channel end,
    // setvar or child under <virtual_machine>, and no channel end may name it.
    let vcpu = r#"<vcpu id="0" />"#;
    for extra in [
        r#"<irq irq="40" id="5" />"#,
        r#"<setvar symbol="x" region_paddr="guest_ram" />"#,
        r#"<protection_domain name="c" priority="1" id="1"><program_image path="c.elf" /></protection_domain>"#,
        r#"<cspace />"#,
    ] {
        let t = edit(&production_text(), vcpu, &format!("{vcpu}\n{extra}"));
        let e = sdf::parse(&t).unwrap_err();
        assert!(
            e.message
                .contains("unknown element under <virtual_machine>"),
            "{extra}: {e}"
        );
    }
    let t = edit(
        &production_text(),
        "</system>",
        "<channel><end pd=\"guest\" id=\"1\" /><end pd=\"blk_driver\" id=\"7\" /></channel>\n</system>",
    );
    let e = sdf::parse(&t).unwrap_err();
    assert!(
        e.message.contains("no protection domain named 'guest'"),
        "{e}"
    );
    // A PD named like the VM (so a channel could seem to reach it) is refused by the policy.
    let t = edit(
        &production_text(),
        "</system>",
        "<protection_domain name=\"guest\" priority=\"1\"><program_image path=\"x.elf\" /></protection_domain>\n</system>",
    );
    let kinds: Vec<Kind> = violations(&t).into_iter().map(|v| v.kind).collect();
    assert_eq!(kinds, [Kind::VmCapability("guest".into()), Kind::UnknownPd]);
}

#[test]
fn the_test_overlay_widened_fails_too() {
    // The test system is checked like production: a self-test PD with the UART.
    let overlay = edit(
        &read(sdf::overlay::TEST_OVERLAY),
        r#"<map mr="selftest_shared" vaddr="0x4000000" perms="rw" setvar_vaddr="shared_vaddr" />"#,
        "<map mr=\"selftest_shared\" vaddr=\"0x4000000\" perms=\"rw\" setvar_vaddr=\"shared_vaddr\" />\n<map mr=\"blk_dma\" vaddr=\"0x6000000\" perms=\"rw\" />",
    );
    let t = sdf::overlay::compose(&production_text(), &overlay).unwrap();
    assert_eq!(
        only(&t),
        ("selftest_ping".into(), Kind::Map("blk_dma".into()))
    );
}
