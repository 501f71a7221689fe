//! The protocol numbers against the virtio 1.2 specification. The device tests use the crate's
//! constants on both sides (driver and device), so they could not see a wrong one; here each is
//! written out as the specification gives it.

use vmm_devices::blk::{self, blk_status, req_type};
use vmm_devices::console;
use vmm_devices::feature;
use vmm_devices::mmio::{self, status};
use vmm_devices::net;
use vmm_devices::queue;

#[test]
fn device_independent_feature_bits() {
    // §6 "Reserved Feature Bits".
    assert_eq!(feature::INDIRECT_DESC, 1 << 28);
    assert_eq!(feature::EVENT_IDX, 1 << 29);
    assert_eq!(feature::VERSION_1, 0x1_0000_0000);
}

#[test]
fn block_device_numbers() {
    // §5 "Device Types": 2 is the block device.
    assert_eq!(blk::DEVICE_ID, 2);
    // §5.2.3 "Feature bits".
    assert_eq!(blk::feature::SIZE_MAX, 0x2);
    assert_eq!(blk::feature::SEG_MAX, 0x4);
    assert_eq!(blk::feature::RO, 0x20);
    assert_eq!(blk::feature::BLK_SIZE, 0x40);
    assert_eq!(blk::feature::FLUSH, 0x200);
    // §5.2.6 "Device Operation": request types and status values.
    assert_eq!(
        (
            req_type::IN,
            req_type::OUT,
            req_type::FLUSH,
            req_type::GET_ID
        ),
        (0, 1, 4, 8)
    );
    assert_eq!(
        (blk_status::OK, blk_status::IOERR, blk_status::UNSUPP),
        (0, 1, 2)
    );
    // §5.2.4: struct virtio_blk_config, capacity through the `zoned` characteristics, is 96
    // bytes; §5.2.6: sectors are 512 bytes, the ID string 20.
    assert_eq!(blk::CONFIG_SIZE, 96);
    assert_eq!(blk::SECTOR_SIZE, 512);
    assert_eq!(blk::ID_BYTES, 20);
}

#[test]
fn console_numbers() {
    // §5 "Device Types": 3 is the console; §5.3.2: port 0's receiveq and transmitq are queues 0
    // and 1; §5.3.3: VIRTIO_CONSOLE_F_SIZE is bit 0; §5.3.4: cols, rows, max_nr_ports, emerg_wr.
    assert_eq!(console::DEVICE_ID, 3);
    assert_eq!((console::RECEIVEQ, console::TRANSMITQ), (0, 1));
    assert_eq!(console::feature::SIZE, 0x1);
    assert_eq!(console::CONFIG_SIZE, 2 + 2 + 4 + 4);
}

#[test]
fn network_device_numbers() {
    // §5 "Device Types": 1 is the network card; §5.1.2: receiveq1 is queue 0, transmitq1
    // queue 1.
    assert_eq!(net::DEVICE_ID, 1);
    assert_eq!((net::RECEIVEQ, net::TRANSMITQ), (0, 1));
    // §5.1.3 "Feature bits": VIRTIO_NET_F_CSUM 0, _MAC 5, _MRG_RXBUF 15, _STATUS 16.
    assert_eq!(net::feature::CSUM, 0x1);
    assert_eq!(net::feature::MAC, 0x20);
    assert_eq!(net::feature::MRG_RXBUF, 0x8000);
    assert_eq!(net::feature::STATUS, 0x1_0000);
    // §5.1.4 "Device configuration layout": mac[6] at 0, le16 status at 6;
    // VIRTIO_NET_S_LINK_UP is 1.
    assert_eq!(net::CONFIG_SIZE, 6 + 2);
    assert_eq!(net::S_LINK_UP, 1);
    // §5.1.6 "Device Operation": struct virtio_net_hdr is flags u8, gso_type u8, hdr_len le16,
    // gso_size le16, csum_start le16, csum_offset le16, num_buffers le16 (always there with
    // VIRTIO_F_VERSION_1): 12 bytes; VIRTIO_NET_HDR_GSO_NONE is 0.
    assert_eq!(net::HDR_LEN, 1 + 1 + 2 + 2 + 2 + 2 + 2);
    assert_eq!(net::GSO_NONE, 0);
    // IEEE 802.3: a 14-byte header (6 + 6 + 2) and at most 1500 payload bytes, FCS excluded.
    assert_eq!(net::ETH_HLEN, 6 + 6 + 2);
    assert_eq!(net::MAX_FRAME_LEN, 14 + 1500);
}

#[test]
fn device_status_bits() {
    // §2.1 "Device Status Field".
    assert_eq!(status::ACKNOWLEDGE, 1);
    assert_eq!(status::DRIVER, 2);
    assert_eq!(status::DRIVER_OK, 4);
    assert_eq!(status::FEATURES_OK, 8);
    assert_eq!(status::DEVICE_NEEDS_RESET, 64);
    assert_eq!(status::FAILED, 128);
}

#[test]
fn split_virtqueue_numbers() {
    // §2.7 "Split Virtqueues": queue sizes up to 32768; §2.7.5: 16-byte descriptors with
    // VIRTQ_DESC_F_NEXT 1, _WRITE 2, _INDIRECT 4; §2.7.6: VIRTQ_AVAIL_F_NO_INTERRUPT 1.
    assert_eq!(queue::MAX_QUEUE_SIZE, 32768);
    assert_eq!(queue::DESC_SIZE, 16);
    assert_eq!(
        (
            queue::DESC_F_NEXT,
            queue::DESC_F_WRITE,
            queue::DESC_F_INDIRECT
        ),
        (1, 2, 4)
    );
    assert_eq!(queue::AVAIL_F_NO_INTERRUPT, 1);
}

#[test]
fn mmio_numbers() {
    // §4.2.2 "MMIO Device Register Layout": "virt" little-endian, version 2, the interrupt
    // bits (used buffer bit 0, configuration change bit 1) and the register offsets.
    assert_eq!(mmio::MAGIC_VALUE, u32::from_le_bytes(*b"virt"));
    assert_eq!(mmio::VERSION, 2);
    assert_eq!((mmio::INT_USED_BUFFER, mmio::INT_CONFIG_CHANGE), (1, 2));
    assert_eq!(mmio::CONFIG_OFFSET, 0x100);
    use mmio::reg::*;
    let table = [
        (MAGIC_VALUE, 0x000),
        (VERSION, 0x004),
        (DEVICE_ID, 0x008),
        (VENDOR_ID, 0x00c),
        (DEVICE_FEATURES, 0x010),
        (DEVICE_FEATURES_SEL, 0x014),
        (DRIVER_FEATURES, 0x020),
        (DRIVER_FEATURES_SEL, 0x024),
        (QUEUE_SEL, 0x030),
        (QUEUE_NUM_MAX, 0x034),
        (QUEUE_NUM, 0x038),
        (QUEUE_READY, 0x044),
        (QUEUE_NOTIFY, 0x050),
        (INTERRUPT_STATUS, 0x060),
        (INTERRUPT_ACK, 0x064),
        (STATUS, 0x070),
        (QUEUE_DESC_LOW, 0x080),
        (QUEUE_DESC_HIGH, 0x084),
        (QUEUE_DRIVER_LOW, 0x090),
        (QUEUE_DRIVER_HIGH, 0x094),
        (QUEUE_DEVICE_LOW, 0x0a0),
        (QUEUE_DEVICE_HIGH, 0x0a4),
        (SHM_SEL, 0x0ac),
        (SHM_LEN_LOW, 0x0b0),
        (SHM_LEN_HIGH, 0x0b4),
        (SHM_BASE_LOW, 0x0b8),
        (SHM_BASE_HIGH, 0x0bc),
        (QUEUE_RESET, 0x0c0),
        (CONFIG_GENERATION, 0x0fc),
    ];
    for (i, (got, want)) in table.into_iter().enumerate() {
        assert_eq!(got, want, "row {i}");
    }
}
