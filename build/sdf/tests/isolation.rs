//! Isolation, checked on the repository's system.xml: every PD maps exactly the regions its role
//! needs, memory that a VM sees (guest RAM) reaches no PD but the VMM that owns the VM, and device
//! memory (regions with a physical address) is mapped by at most one PD. A new PD or map must be
//! added to the role table below, so a widened grant is a visible, reviewed change.

use sdf::{PdScope, System};
use std::collections::{BTreeMap, BTreeSet};

fn repo() -> System {
    let path = sdf::codegen::find_system_xml(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("system.xml");
    sdf::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// What each PD (and each VM) may map: its role's regions, nothing else.
fn roles() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut r = BTreeMap::new();
    // The self-test PDs: their shared region and the client side of their serial TX queue.
    r.insert(
        "selftest_ping",
        BTreeSet::from([
            "selftest_shared",
            "serial_tx_queue_selftest_ping",
            "serial_tx_data_selftest_ping",
        ]),
    );
    r.insert(
        "selftest_pong",
        BTreeSet::from([
            "selftest_shared",
            "serial_tx_queue_selftest_pong",
            "serial_tx_data_selftest_pong",
        ]),
    );
    // The VMM: the guest's RAM (to load it and emulate devices) and the write-protected page.
    r.insert(
        "vmm",
        BTreeSet::from([
            "guest_ram",
            "guest_wp_page",
            "serial_tx_queue_vmm",
            "serial_tx_data_vmm",
            "serial_rx_queue_vmm",
            "serial_rx_data_vmm",
            "blk_req_queue_vmm",
            "blk_resp_queue_vmm",
            "blk_storage_info_vmm",
            "blk_data_vmm",
        ]),
    );
    // The block driver: its device (the virtio-mmio transports), its virtqueue memory, its queues
    // to the VMM, the data region it shares with it and its serial TX queue; never guest memory.
    r.insert(
        "blk_driver",
        BTreeSet::from([
            "blk_regs",
            "blk_dma",
            "blk_req_queue_vmm",
            "blk_resp_queue_vmm",
            "blk_storage_info_vmm",
            "blk_data_vmm",
            "serial_tx_queue_blk_driver",
            "serial_tx_data_blk_driver",
        ]),
    );
    // The serial driver: its device (the PL011), its queues to the VMM and every other PD's TX
    // queue; never guest memory.
    r.insert(
        "serial_driver",
        BTreeSet::from([
            "uart",
            "serial_tx_queue_vmm",
            "serial_tx_data_vmm",
            "serial_rx_queue_vmm",
            "serial_rx_data_vmm",
            "serial_tx_queue_selftest_ping",
            "serial_tx_data_selftest_ping",
            "serial_tx_queue_selftest_pong",
            "serial_tx_data_selftest_pong",
            "serial_tx_queue_blk_driver",
            "serial_tx_data_blk_driver",
        ]),
    );
    // The VM: its RAM, the write-protected page (read-only), the GIC virtual CPU interface.
    r.insert(
        "vm:guest",
        BTreeSet::from(["guest_ram", "guest_wp_page", "gic_vcpu"]),
    );
    r
}

fn maps_of(sys: &System) -> BTreeMap<String, BTreeSet<String>> {
    let mut m = BTreeMap::new();
    for pd in &sys.pds {
        let s = PdScope::of(sys, &pd.name).expect("scope");
        m.insert(
            pd.name.clone(),
            s.maps.iter().map(|m| m.mr.clone()).collect(),
        );
        if let Some(vm) = s.vm {
            m.insert(
                format!("vm:{}", vm.name),
                vm.maps.iter().map(|m| m.mr.clone()).collect(),
            );
        }
    }
    m
}

#[test]
fn every_pd_maps_exactly_what_its_role_needs() {
    let sys = repo();
    let actual = maps_of(&sys);
    let roles = roles();
    for (who, regions) in &actual {
        let want = roles
            .get(who.as_str())
            .unwrap_or_else(|| panic!("{who} has no role in this test: add it"));
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            regions, &want,
            "{who} maps {regions:?}, its role allows exactly {want:?}"
        );
    }
    for who in roles.keys() {
        assert!(actual.contains_key(*who), "role {who} is not in system.xml");
    }
}

#[test]
fn guest_memory_reaches_no_pd_but_its_vmm() {
    let sys = repo();
    for owner in &sys.pds {
        let Some(vm) = &owner.virtual_machine else {
            continue;
        };
        for m in &vm.maps {
            let Some(region) = sys.region(&m.mr) else {
                continue;
            };
            if region.phys_addr.is_some() {
                continue; // device memory given to the VM (the GIC virtual CPU interface)
            }
            for pd in &sys.pds {
                let maps_it = pd.maps.iter().any(|p| p.mr == m.mr);
                assert!(
                    !maps_it || pd.name == owner.name,
                    "PD {} maps guest memory {} of VM {} (only its VMM {} may)",
                    pd.name,
                    m.mr,
                    vm.name,
                    owner.name
                );
            }
        }
    }
}

#[test]
fn device_memory_is_mapped_by_at_most_one_pd() {
    let sys = repo();
    for region in sys.memory_regions.iter().filter(|r| r.phys_addr.is_some()) {
        let users: Vec<&str> = sys
            .pds
            .iter()
            .filter(|p| p.maps.iter().any(|m| m.mr == region.name))
            .map(|p| p.name.as_str())
            .collect();
        assert!(
            users.len() <= 1,
            "device region {} is mapped by {users:?}",
            region.name
        );
    }
}

#[test]
fn the_role_check_can_fail() {
    // A system where a self-test PD also maps guest RAM must be refused by the role table.
    let text = std::fs::read_to_string(
        sdf::codegen::find_system_xml(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .unwrap();
    let widened = text.replacen(
        "<map mr=\"selftest_shared\" vaddr=\"0x4000000\" perms=\"rw\" setvar_vaddr=\"shared_vaddr\" />",
        "<map mr=\"selftest_shared\" vaddr=\"0x4000000\" perms=\"rw\" setvar_vaddr=\"shared_vaddr\" />\n<map mr=\"guest_ram\" vaddr=\"0x40000000\" perms=\"r\" />",
        1,
    );
    assert_ne!(widened, text, "the test's edit must apply");
    let sys = sdf::parse(&widened).unwrap();
    let actual = maps_of(&sys);
    let want: BTreeSet<String> = roles()["selftest_ping"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_ne!(actual["selftest_ping"], want);
}
