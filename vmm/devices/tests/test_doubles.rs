//! The test backends themselves: the device tests (and the VMM's) trust `MemDisk` to refuse what
//! the backend contract excludes and to fail exactly the blocks it is told to, and `MemConsole`
//! to take only what fits.

use vmm_devices::blk::{BackendError, BackendOp, BlockBackend, Submitted, Tag};
use vmm_devices::console::ConsoleBackend;
use vmm_devices::testing::{CONSOLE_BUFFER, CompletionMode, DiskStats, MemConsole, MemDisk};

fn read(block: u64, count: u32, offset: usize) -> BackendOp {
    BackendOp::Read {
        tag: Tag(0),
        block,
        count,
        offset,
    }
}

fn write(block: u64, count: u32, offset: usize) -> BackendOp {
    BackendOp::Write {
        tag: Tag(0),
        block,
        count,
        offset,
    }
}

#[test]
fn mem_disk_refuses_what_the_backend_contract_excludes() {
    let mut disk = vec![0u8; 4 * 4096];
    let mut staging = vec![0u8; 2 * 4096];
    let mut d = MemDisk::new(&mut disk, &mut staging, CompletionMode::Immediate);
    // Operations are of at least one block, inside the disk and the staging buffer.
    assert_eq!(d.submit(read(0, 0, 0)), Err(BackendError::Io));
    assert_eq!(d.submit(write(1, 0, 0)), Err(BackendError::Io));
    assert_eq!(d.submit(read(3, 2, 0)), Err(BackendError::Io));
    assert_eq!(d.submit(read(u64::MAX, 1, 0)), Err(BackendError::Io));
    assert_eq!(d.submit(read(0, 1, 4096 + 1)), Err(BackendError::Io));
    assert_eq!(d.submit(read(0, 2, 0)), Ok(Submitted::Completed));
    assert_eq!(d.submit(read(2, 2, 0)), Ok(Submitted::Completed));
}

#[test]
fn mem_disk_fails_exactly_the_blocks_it_is_told_to() {
    let mut disk = vec![0u8; 8 * 4096];
    let mut staging = vec![0u8; 2 * 4096];
    let mut d = MemDisk::new(&mut disk, &mut staging, CompletionMode::Immediate);
    d.fail_blocks = Some(3..5);
    for (block, count, fails) in [
        (2, 1, false),
        (2, 2, true),
        (3, 1, true),
        (4, 1, true),
        (4, 2, true),
        (5, 1, false),
        (5, 2, false),
        (1, 2, false),
    ] {
        let want = if fails {
            Err(BackendError::Io)
        } else {
            Ok(Submitted::Completed)
        };
        assert_eq!(
            d.submit(read(block, count, 0)),
            want,
            "read {block}+{count}"
        );
        assert_eq!(
            d.submit(write(block, count, 0)),
            want,
            "write {block}+{count}"
        );
    }
}

#[test]
fn mem_disk_counts_operations_and_blocks() {
    let mut disk = vec![0u8; 8 * 4096];
    let mut staging = vec![0u8; 3 * 4096];
    let mut d = MemDisk::new(&mut disk, &mut staging, CompletionMode::Immediate);
    assert!(d.submit(read(0, 3, 0)).is_ok());
    assert!(d.submit(read(5, 1, 0)).is_ok());
    assert!(d.submit(write(1, 2, 4096)).is_ok());
    assert!(d.submit(write(7, 1, 0)).is_ok());
    assert!(d.submit(write(6, 3, 0)).is_err());
    assert!(d.submit(BackendOp::Flush { tag: Tag(0) }).is_ok());
    assert_eq!(
        d.stats,
        DiskStats {
            reads: 2,
            writes: 3,
            flushes: 1,
            blocks_read: 4,
            blocks_written: 3,
        }
    );
}

#[test]
fn mem_console_queues_take_what_fits() {
    let mut c = MemConsole::default();
    // Receive side: CONSOLE_BUFFER bytes fit, the rest is refused and said so.
    let many = vec![7u8; CONSOLE_BUFFER + 10];
    assert_eq!(c.push_rx(&many), CONSOLE_BUFFER);
    assert_eq!(c.push_rx(b"x"), 0);
    assert_eq!(c.rx_pending(), CONSOLE_BUFFER);
    let mut buf = [0u8; 3];
    assert_eq!(ConsoleBackend::read(&mut c, &mut buf), 3);
    assert_eq!(c.rx_pending(), CONSOLE_BUFFER - 3);
    // Transmit side: `tx_room` bytes, then nothing.
    c.tx_room = 4;
    assert_eq!(ConsoleBackend::write(&mut c, b"abcdef"), 4);
    assert_eq!(ConsoleBackend::write(&mut c, b"gh"), 0);
    c.tx_room = usize::MAX;
    assert_eq!(ConsoleBackend::write(&mut c, b"gh"), 2);
    assert_eq!(c.sent(), b"abcdgh");
}
