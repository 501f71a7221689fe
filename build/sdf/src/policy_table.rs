//! The isolation policy: every grant any system description of this project (system.xml, and
//! system.xml + system-test.xml) may make, per PD and per VM. A small data table, reviewed like
//! code: widening a PD's reach means editing a line here, and `build/sdf/tests/isolation.rs`
//! fails on any grant a system makes that is not listed (see [`crate::policy::check`]).
//!
//! Rows are allowances, not requirements: the production system has no self-test PDs, and the
//! serial driver's rows for their TX queues apply only in the test system.

use crate::model::Trigger::{Edge, Level};
use crate::policy::{ChannelRule, IrqRule, MapRule, PdRule, Policy, RegionRule, VmRule};

const fn region(name: &'static str, max_size: u64) -> RegionRule {
    RegionRule {
        name,
        max_size,
        phys_addr: None,
        guest_memory: false,
    }
}
const fn device(name: &'static str, max_size: u64, phys: u64) -> RegionRule {
    RegionRule {
        name,
        max_size,
        phys_addr: Some(phys),
        guest_memory: false,
    }
}
const fn guest(name: &'static str, max_size: u64) -> RegionRule {
    RegionRule {
        name,
        max_size,
        phys_addr: None,
        guest_memory: true,
    }
}
const fn rw(mr: &'static str) -> MapRule {
    MapRule {
        mr,
        perms: "rw",
        cached: true,
    }
}
const fn ch(id: u64, peer: &'static str) -> ChannelRule {
    ChannelRule {
        id,
        peer,
        pp: false,
    }
}

/// The policy.
pub const POLICY: Policy = Policy {
    regions: &[
        // Guest memory: the VM's RAM and its write-protected page.
        guest("guest_ram", 0x1000_0000),
        guest("guest_wp_page", 0x1000),
        // Devices: the GICv2 virtual CPU interface (the VM's), the PL011 (the serial driver's),
        // one virtio-mmio transport page (the block driver's: transports 24..31, QEMU puts the
        // disk in 31).
        device("gic_vcpu", 0x1000, 0x0804_0000),
        device("uart", 0x1000, 0x0900_0000),
        device("blk_regs", 0x1000, 0x0a00_3000),
        // Serial queues.
        region("serial_tx_queue_vmm", 0x1000),
        region("serial_tx_data_vmm", 0x2000),
        region("serial_rx_queue_vmm", 0x1000),
        region("serial_rx_data_vmm", 0x2000),
        region("serial_tx_queue_blk_driver", 0x1000),
        region("serial_tx_data_blk_driver", 0x1000),
        region("serial_tx_queue_blk_virt", 0x1000),
        region("serial_tx_data_blk_virt", 0x1000),
        region("serial_tx_queue_net_virt", 0x1000),
        region("serial_tx_data_net_virt", 0x1000),
        region("serial_tx_queue_driver_monitor", 0x1000),
        region("serial_tx_data_driver_monitor", 0x1000),
        region("serial_driver_state", 0x1000),
        region("serial_tx_queue_selftest_ping", 0x1000),
        region("serial_tx_data_selftest_ping", 0x1000),
        region("serial_tx_queue_selftest_pong", 0x1000),
        region("serial_tx_data_selftest_pong", 0x1000),
        // Block: the driver's virtqueue memory, the queues (driver <-> blk_virt, blk_virt <->
        // vmm), the VMM's data region.
        region("blk_dma", 0x1_0000),
        region("blk_req_queue_blk_virt", 0x1000),
        region("blk_resp_queue_blk_virt", 0x1000),
        region("blk_storage_info_blk_virt", 0x1000),
        region("blk_req_queue_vmm", 0x1000),
        region("blk_resp_queue_vmm", 0x1000),
        region("blk_storage_info_vmm", 0x1000),
        region("blk_data_vmm", 0x40_0000),
        // Network: the queues between net_virt and the vmm, the vmm's two data regions.
        region("net_rx_free_vmm", 0x1000),
        region("net_rx_active_vmm", 0x1000),
        region("net_tx_free_vmm", 0x1000),
        region("net_tx_active_vmm", 0x1000),
        region("net_rx_data_vmm", 0x2_0000),
        region("net_tx_data_vmm", 0x2_0000),
        // Test system only.
        region("selftest_shared", 0x1000),
    ],
    pds: &[
        // The VMM: its VM's memory (to load it and emulate devices), the client side of the
        // serial driver's and the block virtualiser's queues, the data region it shares with
        // the block driver, a protected-call channel to the timer driver (its wake-up timer),
        // SMC (the guest's PSCI SYSTEM_OFF/RESET reaches the firmware once the VM ended). Channel 0 (test system only): the liveness request.
        PdRule {
            name: "vmm",
            parent: None,
            smc: true,
            may_map_guest_memory: true,
            maps: &[
                rw("guest_ram"),
                rw("guest_wp_page"),
                rw("serial_tx_queue_vmm"),
                rw("serial_tx_data_vmm"),
                rw("serial_rx_queue_vmm"),
                rw("serial_rx_data_vmm"),
                rw("blk_req_queue_vmm"),
                rw("blk_resp_queue_vmm"),
                rw("blk_storage_info_vmm"),
                rw("blk_data_vmm"),
                rw("net_rx_free_vmm"),
                rw("net_rx_active_vmm"),
                rw("net_tx_free_vmm"),
                rw("net_tx_active_vmm"),
                rw("net_rx_data_vmm"),
                rw("net_tx_data_vmm"),
            ],
            channels: &[
                ch(0, "selftest_ping"),
                ch(1, "serial_driver"),
                ch(2, "serial_driver"),
                ch(3, "blk_virt"),
                ch(5, "net_virt"),
                ChannelRule {
                    id: 6,
                    peer: "timer_driver",
                    pp: true,
                },
            ],
            irqs: &[],
            paddrs: &[],
            vm: Some("guest"),
        },
        // The timer driver: the EL1 physical timer's interrupt (PPI 30; the timer's registers
        // are system registers the kernel exports, no device frame) and one channel to its
        // client, the VMM (which calls it). Nothing mapped, no guest memory, not a child.
        PdRule {
            name: "timer_driver",
            parent: None,
            smc: false,
            may_map_guest_memory: false,
            maps: &[],
            channels: &[ch(1, "vmm")],
            irqs: &[IrqRule {
                irq: 30,
                id: 0,
                trigger: Level,
            }],
            paddrs: &[],
            vm: None,
        },
        // The driver domains' monitor: the parent of both drivers (their TCBs, their faults);
        // its own serial TX queue; nothing else: no guest memory, no queue or data region of
        // the drivers.
        PdRule {
            name: "driver_monitor",
            parent: None,
            smc: false,
            may_map_guest_memory: false,
            maps: &[
                rw("serial_tx_queue_driver_monitor"),
                rw("serial_tx_data_driver_monitor"),
            ],
            channels: &[ch(1, "serial_driver")],
            irqs: &[],
            paddrs: &[],
            vm: None,
        },
        // The serial driver: the PL011 (uncached) and its IRQ, the VMM's queues, every other
        // PD's TX queue, its own state page (what a restart must not forget); never guest
        // memory. A child of the monitor, which restarts it.
        PdRule {
            name: "serial_driver",
            parent: Some("driver_monitor"),
            smc: false,
            may_map_guest_memory: false,
            maps: &[
                MapRule {
                    mr: "uart",
                    perms: "rw",
                    cached: false,
                },
                rw("serial_tx_queue_vmm"),
                rw("serial_tx_data_vmm"),
                rw("serial_rx_queue_vmm"),
                rw("serial_rx_data_vmm"),
                rw("serial_tx_queue_blk_driver"),
                rw("serial_tx_data_blk_driver"),
                rw("serial_tx_queue_selftest_ping"),
                rw("serial_tx_data_selftest_ping"),
                rw("serial_tx_queue_selftest_pong"),
                rw("serial_tx_data_selftest_pong"),
                rw("serial_tx_queue_driver_monitor"),
                rw("serial_tx_data_driver_monitor"),
                rw("serial_tx_queue_blk_virt"),
                rw("serial_tx_data_blk_virt"),
                rw("serial_tx_queue_net_virt"),
                rw("serial_tx_data_net_virt"),
                rw("serial_driver_state"),
            ],
            channels: &[
                ch(1, "vmm"),
                ch(2, "vmm"),
                ch(3, "selftest_ping"),
                ch(4, "selftest_pong"),
                ch(5, "blk_driver"),
                ch(6, "driver_monitor"),
                ch(7, "blk_virt"),
                ch(8, "net_virt"),
            ],
            irqs: &[IrqRule {
                irq: 33,
                id: 0,
                trigger: Level,
            }],
            paddrs: &[],
            vm: None,
        },
        // The block driver: one virtio-mmio transport page (uncached) and its IRQ, its virtqueue
        // memory, the block virtualiser's queues (its one client), the clients' data region
        // read-only (descriptors point at it by physical address), its serial TX queue; told
        // the physical addresses of its DMA and data regions (its device's DMA reaches them);
        // never guest memory. A child of the monitor, which restarts it.
        PdRule {
            name: "blk_driver",
            parent: Some("driver_monitor"),
            smc: false,
            may_map_guest_memory: false,
            maps: &[
                MapRule {
                    mr: "blk_regs",
                    perms: "rw",
                    cached: false,
                },
                rw("blk_dma"),
                rw("blk_req_queue_blk_virt"),
                rw("blk_resp_queue_blk_virt"),
                rw("blk_storage_info_blk_virt"),
                MapRule {
                    mr: "blk_data_vmm",
                    perms: "r",
                    cached: true,
                },
                rw("serial_tx_queue_blk_driver"),
                rw("serial_tx_data_blk_driver"),
            ],
            channels: &[ch(1, "blk_virt"), ch(2, "serial_driver")],
            irqs: &[IrqRule {
                irq: 79,
                id: 0,
                trigger: Edge,
            }],
            paddrs: &["blk_dma", "blk_data_vmm"],
            vm: None,
        },
        // The block virtualiser: the queues on both sides (the driver's as its client, each
        // block client's as its server) and its serial TX queue. No data region (requests carry
        // offsets; the driver checks them against the regions it is told), no physical
        // address, no guest memory, no IRQ, not a child: nothing restarts it.
        PdRule {
            name: "blk_virt",
            parent: None,
            smc: false,
            may_map_guest_memory: false,
            maps: &[
                rw("blk_req_queue_blk_virt"),
                rw("blk_resp_queue_blk_virt"),
                rw("blk_storage_info_blk_virt"),
                rw("blk_req_queue_vmm"),
                rw("blk_resp_queue_vmm"),
                rw("blk_storage_info_vmm"),
                rw("serial_tx_queue_blk_virt"),
                rw("serial_tx_data_blk_virt"),
            ],
            channels: &[ch(0, "blk_driver"), ch(1, "vmm"), ch(3, "serial_driver")],
            irqs: &[],
            paddrs: &[],
            vm: None,
        },
        // The network virtualiser: each network client's four queues and its two data regions
        // (it copies frames between clients: the TX data read-only, the RX data written), and
        // its serial TX queue. No guest memory, no physical address, no IRQ, not a child.
        PdRule {
            name: "net_virt",
            parent: None,
            smc: false,
            may_map_guest_memory: false,
            maps: &[
                rw("net_rx_free_vmm"),
                rw("net_rx_active_vmm"),
                rw("net_tx_free_vmm"),
                rw("net_tx_active_vmm"),
                rw("net_rx_data_vmm"),
                MapRule {
                    mr: "net_tx_data_vmm",
                    perms: "r",
                    cached: true,
                },
                rw("serial_tx_queue_net_virt"),
                rw("serial_tx_data_net_virt"),
            ],
            channels: &[ch(0, "serial_driver"), ch(1, "vmm")],
            irqs: &[],
            paddrs: &[],
            vm: None,
        },
        // Test system only: the runtime self-test PDs (ping calls pong).
        PdRule {
            name: "selftest_ping",
            parent: None,
            smc: false,
            may_map_guest_memory: false,
            maps: &[
                rw("selftest_shared"),
                rw("serial_tx_queue_selftest_ping"),
                rw("serial_tx_data_selftest_ping"),
            ],
            channels: &[
                ChannelRule {
                    id: 0,
                    peer: "selftest_pong",
                    pp: true,
                },
                ch(1, "vmm"),
                ch(2, "serial_driver"),
            ],
            irqs: &[],
            paddrs: &[],
            vm: None,
        },
        PdRule {
            name: "selftest_pong",
            parent: None,
            smc: false,
            may_map_guest_memory: false,
            maps: &[
                rw("selftest_shared"),
                rw("serial_tx_queue_selftest_pong"),
                rw("serial_tx_data_selftest_pong"),
            ],
            channels: &[ch(1, "selftest_ping"), ch(2, "serial_driver")],
            irqs: &[],
            paddrs: &[],
            vm: None,
        },
    ],
    // The VM: its RAM, the write-protected page read-only (writes trap to the VMM), the GIC
    // virtual CPU interface (uncached). Up to four vCPUs (an SMP guest: issue 17).
    vms: &[VmRule {
        name: "guest",
        max_vcpus: 4,
        maps: &[
            MapRule {
                mr: "guest_ram",
                perms: "rwx",
                cached: true,
            },
            MapRule {
                mr: "guest_wp_page",
                perms: "rx",
                cached: true,
            },
            MapRule {
                mr: "gic_vcpu",
                perms: "rw",
                cached: false,
            },
        ],
    }],
};
