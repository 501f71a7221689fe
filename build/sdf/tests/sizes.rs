//! The PD size report: program headers read from hand-built ELF64 files, segment sums and page
//! counts, an embedded file found by content and taken out, regions classified, the goals, and
//! the `pd-sizes` binary (a missing or malformed ELF fails it, OVER does not).

use sdf::sizes::{self, Embedded, RegionKind, Segment};

/// One program header for [`elf`]: (type, flags, vaddr, file bytes, memsz).
type Ph<'a> = (u32, u32, u64, &'a [u8], u64);

/// An ELF64 little-endian file with these program headers; each header's bytes are placed
/// after the header table, in order.
fn elf(phs: &[Ph<'_>]) -> Vec<u8> {
    let phoff = 0x40u64;
    let mut data_at = phoff + 0x38 * phs.len() as u64;
    let mut f = vec![0u8; data_at as usize];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // ELFDATA2LSB
    f[6] = 1;
    f[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[0x12..0x14].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    f[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
    f[0x34..0x36].copy_from_slice(&0x40u16.to_le_bytes());
    f[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
    f[0x38..0x3a].copy_from_slice(&(phs.len() as u16).to_le_bytes());
    let mut bodies = vec![];
    for (i, &(ty, flags, vaddr, bytes, memsz)) in phs.iter().enumerate() {
        let h = (phoff as usize) + i * 0x38;
        f[h..h + 4].copy_from_slice(&ty.to_le_bytes());
        f[h + 4..h + 8].copy_from_slice(&flags.to_le_bytes());
        f[h + 8..h + 16].copy_from_slice(&data_at.to_le_bytes());
        f[h + 0x10..h + 0x18].copy_from_slice(&vaddr.to_le_bytes());
        f[h + 0x18..h + 0x20].copy_from_slice(&vaddr.to_le_bytes());
        f[h + 0x20..h + 0x28].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        f[h + 0x28..h + 0x30].copy_from_slice(&memsz.to_le_bytes());
        f[h + 0x30..h + 0x38].copy_from_slice(&0x1000u64.to_le_bytes());
        bodies.extend_from_slice(bytes);
        data_at += bytes.len() as u64;
    }
    f.extend(bodies);
    f
}

const R: u32 = 4;
const RX: u32 = 5;
const RW: u32 = 6;

/// A guest stand-in: bytes that occur nowhere else in the test ELF.
fn guest() -> Vec<u8> {
    (0..0x2345u32).map(|i| (i * 7 + 3) as u8 | 0x80).collect()
}

/// rodata (0x100 bytes of its own, then the guest, then 0x10 more) at an unaligned address,
/// text spanning a page boundary, data with bss, and a non-load header in between.
fn sample() -> Vec<u8> {
    let mut ro = vec![0x11u8; 0x100];
    ro.extend(guest());
    ro.extend([0x22u8; 0x10]);
    let ro_len = ro.len() as u64;
    elf(&[
        (6, R, 0x20_0040, &[0u8; 0x38][..], 0x38), // PT_PHDR: not loaded
        (1, R, 0x20_0800, &ro, ro_len),
        (1, RX, 0x21_0ff0, &[0x33u8; 0x20][..], 0x20),
        (0x6474_e551, RW, 0, &[][..], 0), // GNU_STACK
        (1, RW, 0x22_0000, &[0x44u8; 0x10][..], 0x2010),
    ])
}

#[test]
fn program_headers_are_read_in_order_and_only_pt_load() {
    let f = sample();
    let segs = sizes::load_segments(&f).unwrap();
    let ro_len = 0x100 + guest().len() as u64 + 0x10;
    let first_body = 0x40 + 5 * 0x38 + 0x38;
    assert_eq!(
        segs,
        vec![
            Segment {
                vaddr: 0x20_0800,
                offset: first_body,
                filesz: ro_len,
                memsz: ro_len,
                flags: R
            },
            Segment {
                vaddr: 0x21_0ff0,
                offset: first_body + ro_len,
                filesz: 0x20,
                memsz: 0x20,
                flags: RX
            },
            Segment {
                vaddr: 0x22_0000,
                offset: first_body + ro_len + 0x20,
                filesz: 0x10,
                memsz: 0x2010,
                flags: RW
            },
        ]
    );
}

#[test]
fn segments_sum_by_kind_and_pages_count_segment_by_segment() {
    let f = sample();
    let segs = sizes::load_segments(&f).unwrap();
    let g = guest().len() as u64;
    let img = sizes::image(&segs, &[]);
    assert_eq!(img.text, 0x20);
    assert_eq!(img.rodata, 0x110 + g);
    assert_eq!(img.data, 0x10);
    assert_eq!(img.bss, 0x2000);
    // rodata 0x200800..0x202e65: 3 pages; text 0x210ff0..0x211010 crosses a page boundary:
    // 2 pages; data+bss 0x220000..0x222010: 3 pages.
    assert_eq!(img.pages, 3 + 2 + 3);
    assert_eq!(img.embedded, 0);
    assert_eq!(img.pages_without_embedded, img.pages);
    assert_eq!(sizes::pages_spanned(0x1fff, 1), 1);
    assert_eq!(sizes::pages_spanned(0x1fff, 2), 2);
    assert_eq!(sizes::pages_spanned(0x1000, 0x1000), 1);
    assert_eq!(sizes::pages_spanned(0x1000, 0), 0);
}

#[test]
fn an_embedded_file_is_found_by_content_and_taken_out() {
    let f = sample();
    let segs = sizes::load_segments(&f).unwrap();
    let g = guest();
    assert_eq!(sizes::find_embedded(&f, &segs, &g), Some(0));
    // Not there: a file the ELF does not hold, and the guest with one byte changed.
    let mut other = g.clone();
    other[0x1000] ^= 1;
    assert_eq!(sizes::find_embedded(&f, &segs, &other), None);
    assert_eq!(sizes::find_embedded(&f, &segs, &[]), None);
    let e = Embedded {
        name: "guest".into(),
        len: g.len() as u64,
        segment: Some(0),
    };
    let img = sizes::image(&segs, &[e]);
    assert_eq!(img.embedded, g.len() as u64);
    // rodata without the guest: 0x110 bytes at 0x200800: 1 page instead of 3.
    assert_eq!(img.pages_without_embedded, 1 + 2 + 3);
}

#[test]
fn malformed_files_are_errors() {
    let good = sample();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("no magic", b"\x7fELG".repeat(40)),
        ("truncated header table", good[..0x60].to_vec()),
        ("no PT_LOAD", elf(&[(6, R, 0, &[][..], 0)])),
    ];
    let mut elf32 = good.clone();
    elf32[4] = 1;
    cases.push(("ELF32", elf32));
    let mut big_endian = good.clone();
    big_endian[5] = 2;
    cases.push(("big-endian", big_endian));
    let mut past_end = good.clone();
    // The data segment's file size (header 4) grows past the file's end.
    let h = 0x40 + 4 * 0x38;
    past_end[h + 0x20..h + 0x28].copy_from_slice(&0x10_0000u64.to_le_bytes());
    past_end[h + 0x28..h + 0x30].copy_from_slice(&0x10_0000u64.to_le_bytes());
    cases.push(("bytes past the end", past_end));
    let mut file_over_mem = good.clone();
    file_over_mem[h + 0x28..h + 0x30].copy_from_slice(&0x8u64.to_le_bytes());
    cases.push(("filesz > memsz", file_over_mem));
    for (what, bytes) in cases {
        assert!(
            sizes::load_segments(&bytes).is_err(),
            "{what}: accepted {:?}",
            sizes::load_segments(&bytes)
        );
    }
}

const SYSTEM: &str = r#"<system>
  <memory_region name="ram" size="0x200000" page_size="0x200000" />
  <memory_region name="uart" size="0x1000" phys_addr="0x9000000" />
  <memory_region name="queue" size="0x3000" />
  <memory_region name="dma" size="0x10000" />
  <protection_domain name="vmm" priority="100" stack_size="0x10000">
    <program_image path="vmm.elf" />
    <map mr="ram" vaddr="0x20000000" perms="rw" />
    <map mr="queue" vaddr="0x30000000" perms="rw" />
    <virtual_machine name="guest">
      <vcpu id="0" />
      <map mr="ram" vaddr="0x40000000" perms="rwx" />
    </virtual_machine>
  </protection_domain>
  <protection_domain name="driver" priority="200">
    <program_image path="driver.elf" />
    <map mr="uart" vaddr="0x5000000" perms="rw" cached="false" />
    <map mr="queue" vaddr="0x4000000" perms="rw" />
    <map mr="dma" vaddr="0x6000000" perms="rw" />
  </protection_domain>
</system>"#;

#[test]
fn regions_are_split_into_guest_ram_devices_shared_and_private() {
    let sys = sdf::parse(SYSTEM).unwrap();
    let vmm = sizes::regions(&sys, "vmm").unwrap();
    assert_eq!(
        (vmm.guest_ram, vmm.device, vmm.shared, vmm.private),
        (0x20_0000, 0, 0x3000, 0)
    );
    let drv = sizes::regions(&sys, "driver").unwrap();
    assert_eq!(
        (drv.guest_ram, drv.device, drv.shared, drv.private),
        (0, 0x1000, 0x3000, 0x1_0000)
    );
    assert_eq!(
        drv.maps,
        vec![
            ("uart".to_string(), 0x1000, RegionKind::Device),
            ("queue".to_string(), 0x3000, RegionKind::Shared),
            ("dma".to_string(), 0x1_0000, RegionKind::Private),
        ]
    );
    assert!(sizes::regions(&sys, "nobody").is_none());
}

#[test]
fn goals_are_checked_on_image_without_guest_plus_stack_and_ipc_buffer() {
    let sys = sdf::parse(SYSTEM).unwrap();
    let f = sample();
    let g = guest();
    let vmm = sizes::account(&sys, "vmm", &f, &[("guest".into(), g.clone())]).unwrap();
    assert_eq!(vmm.goal, 256 * 1024);
    assert_eq!(vmm.stack, 0x10000);
    // (1 + 2 + 3) pages without the guest + 64 KiB stack + the IPC buffer's page.
    assert_eq!(vmm.own(), 6 * 0x1000 + 0x10000 + 0x1000);
    assert!(vmm.pass());
    let drv = sizes::account(&sys, "driver", &f, &[]).unwrap();
    assert_eq!(drv.goal, 64 * 1024);
    assert_eq!(drv.stack, 0x2000, "Microkit's default stack");
    // 8 pages + 8 KiB + 4 KiB = 44 KiB: under 64 KiB.
    assert_eq!(drv.own(), 8 * 0x1000 + 0x2000 + 0x1000);
    assert!(drv.pass());
    // A driver with a 20 KiB image more is at 64 KiB: over (the goal is "under").
    let mut big = drv.clone();
    big.image.pages_without_embedded += 5;
    assert_eq!(big.own(), 64 * 1024);
    assert!(!big.pass());
    let md = sizes::markdown(&[vmm, big]);
    assert_eq!(row(&md, "vmm")[13], "PASS", "{md}");
    assert_eq!(row(&md, "vmm")[11], "**92 KiB**", "{md}");
    assert_eq!(row(&md, "driver")[13], "OVER", "{md}");
    assert!(md.contains("OVER: 64 KiB is not under 64 KiB"), "{md}");
    assert!(
        md.contains("embedded: guest (8.9 KiB) in PT_LOAD segment 0"),
        "{md}"
    );
    assert!(sizes::account(&sys, "driver", b"not an elf", &[]).is_err());
}

/// The cells of PD `pd`'s table line (cell 1 is the PD's name).
fn row<'a>(md: &'a str, pd: &str) -> Vec<&'a str> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {pd} |")))
        .unwrap_or_else(|| panic!("no line for {pd} in {md}"));
    line.split('|').map(str::trim).collect()
}

#[test]
fn human_sizes() {
    assert_eq!(sizes::human(184), "184 B");
    assert_eq!(sizes::human(0x1000), "4 KiB");
    assert_eq!(sizes::human(0x1001), "4.1 KiB");
    assert_eq!(sizes::human(0x10_0000), "1 MiB");
    assert_eq!(sizes::human(0x20_9000), "2.1 MiB");
}

/// A scratch directory of its own for one test.
fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pd-sizes-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pd-sizes"))
        .arg("--system")
        .arg(dir.join("system.xml"))
        .arg("--elf-dir")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn the_binary_reports_over_without_failing_and_fails_on_a_missing_or_bad_elf() {
    let d = scratch("bin");
    std::fs::write(d.join("system.xml"), SYSTEM).unwrap();
    let f = sample();
    std::fs::write(d.join("vmm.elf"), &f).unwrap();
    std::fs::write(d.join("guest"), guest()).unwrap();
    // driver.elf missing: a failure naming it.
    let out = run(&d, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("driver.elf"));
    // A driver over its goal (a 64 KiB bss): reported OVER, exit status 0, file written.
    let fat = elf(&[(1, RW, 0x20_0000, &[1u8; 0x10][..], 0x1_0000)]);
    std::fs::write(d.join("driver.elf"), &fat).unwrap();
    let md = d.join("out/pd-sizes.md");
    let guest_arg = format!("vmm={}", d.join("guest").display());
    let out = run(
        &d,
        &["--embedded", &guest_arg, "--out", md.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(row(&stdout, "vmm")[13], "PASS", "{stdout}");
    assert_eq!(row(&stdout, "driver")[13], "OVER", "{stdout}");
    assert!(stdout.contains("embedded: "), "{stdout}");
    assert_eq!(std::fs::read_to_string(&md).unwrap(), stdout);
    // A malformed ELF fails it.
    std::fs::write(d.join("driver.elf"), &fat[..0x50]).unwrap();
    let out = run(&d, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("driver.elf: truncated"));
    // So does a malformed system description.
    std::fs::write(d.join("system.xml"), "<system><bogus/></system>").unwrap();
    assert!(!run(&d, &[]).status.success());
    let _ = std::fs::remove_dir_all(&d);
}
