//! The `blk-disk-check` binary on real files: a rendered image passes; a corrupted pattern byte, a
//! written sentinel and a short image fail, each with its message and exit code.

use std::path::PathBuf;
use std::process::Command;

use blk_pattern::{DISK_BYTES, EXTENTS, HOSTILE_OFFSET, render};

fn image(name: &str, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let p = dir.join(format!("blk-disk-check-{name}-{}.img", std::process::id()));
    let mut img = vec![0u8; DISK_BYTES as usize];
    render(0, &mut img);
    f(&mut img);
    std::fs::write(&p, &img).expect("write image");
    p
}

fn run(p: &PathBuf) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_blk-disk-check"))
        .arg(p)
        .output()
        .expect("run blk-disk-check");
    let _ = std::fs::remove_file(p);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn clean_image_passes() {
    let (code, text) = run(&image("clean", |_| {}));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with(&format!(
            "disk-check: {} extents, {DISK_BYTES} bytes OK",
            EXTENTS.len()
        )),
        "{text}"
    );
}

#[test]
fn corrupted_pattern_byte_fails() {
    let e = EXTENTS
        .iter()
        .find(|e| e.name == "unaligned-start-end")
        .unwrap();
    let at = e.offset as usize + 7;
    let (code, text) = run(&image("corrupt", |img| img[at] ^= 0x40));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("MISMATCH at {at:#010x}")) && text.contains("unaligned-start-end"),
        "{text}"
    );
    assert!(text.contains("FAILED: 1 of"), "{text}");
}

#[test]
fn lost_read_modify_write_neighbour_fails() {
    // A VMM that zeroed the preserved head of a partly written unit.
    let (code, text) = run(&image("rmw", |img| img[0x2_0000..0x2_0600].fill(0)));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("rmw-neighbours"), "{text}");
    assert!(text.contains("FAILED: 1536 of"), "{text}");
    assert!(text.contains("the first 16 shown"), "{text}");
}

#[test]
fn written_sentinel_fails() {
    let at = HOSTILE_OFFSET as usize + 512;
    let (code, text) = run(&image("sentinel", |img| img[at] = 0x5a));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("hostile-target") && text.contains("expected 0x00, found 0x5a"),
        "{text}"
    );
}

#[test]
fn short_image_is_refused() {
    let (code, text) = run(&image("short", |img| img.truncate(4096)));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("less than"), "{text}");
}
