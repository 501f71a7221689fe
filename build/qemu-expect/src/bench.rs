//! The exit-cost table of `make bench-qemu`: parses the test guest's `bench` lines from a run
//! with the full VMM and one with the null VMM (the floor), and the full VMM's statistics block
//! (kernel invocations per exit class), and renders a Markdown table with ratios to the floor.
//! Also the block-throughput table ([`blk_table`]): the guest's `bench blk-…` lines (bytes moved,
//! virtual-counter ticks) as MB per virtual second, under seL4 and natively on QEMU, with the
//! ratio.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One measurement of the guest.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Iterations.
    pub iterations: u64,
    /// Virtual-counter ticks over all iterations.
    pub ticks: u64,
}

impl Measurement {
    /// Ticks per operation.
    pub fn per_op(&self) -> f64 {
        self.ticks as f64 / self.iterations.max(1) as f64
    }
}

/// One block-throughput measurement of the guest.
#[derive(Debug, Clone, PartialEq)]
pub struct Throughput {
    /// Bytes moved.
    pub bytes: u64,
    /// Requests (0 if not printed).
    pub requests: u64,
    /// Virtual-counter ticks.
    pub ticks: u64,
}

impl Throughput {
    /// Megabytes (10^6 bytes) per virtual second at counter frequency `hz`.
    pub fn mb_per_s(&self, hz: u64) -> Option<f64> {
        (hz > 0 && self.ticks > 0)
            .then(|| self.bytes as f64 / (self.ticks as f64 / hz as f64) / 1e6)
    }
}

/// What one benchmark run printed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    /// Counter frequency in Hz.
    pub cntfrq: Option<u64>,
    /// Measurements by name, in order of appearance.
    pub benches: Vec<(String, Measurement)>,
    /// Failed measurements (name, reason).
    pub failed: Vec<(String, String)>,
    /// Block-throughput measurements (or why they failed) by name, in order of appearance.
    pub blk: Vec<(String, Result<Throughput, String>)>,
    /// Kernel calls per exit by VMM statistics class: (exits, kernel calls).
    pub classes: BTreeMap<String, (u64, u64)>,
}

fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.parse().ok())
}

/// Parses a console log.
pub fn parse(log: &str) -> Run {
    let mut run = Run::default();
    for line in log.lines() {
        let l = line.trim_end();
        if let Some(rest) = l.strip_prefix("testguest: bench mode, CNTFRQ_EL0 = ") {
            run.cntfrq = rest.split_whitespace().next().and_then(|v| v.parse().ok());
        } else if let Some(rest) = l.strip_prefix("bench ") {
            let name = rest.split_whitespace().next().unwrap_or("").to_string();
            let blk = name.starts_with("blk-");
            if let (true, Some((_, why))) = (blk, rest.split_once(" failed")) {
                let why = why.trim_start_matches(':').trim();
                run.blk.push((name, Err(why.to_string())));
            } else if rest.contains(" failed") {
                run.failed.push((name, rest.to_string()));
            } else if let (true, Some(bytes), Some(ticks)) =
                (blk, field(rest, "bytes="), field(rest, "ticks="))
            {
                let requests = field(rest, "requests=").unwrap_or(0);
                run.blk.push((
                    name,
                    Ok(Throughput {
                        bytes,
                        requests,
                        ticks,
                    }),
                ));
            } else if let (Some(iterations), Some(ticks)) =
                (field(rest, "iterations="), field(rest, "ticks="))
            {
                run.benches.push((name, Measurement { iterations, ticks }));
            }
        } else if l.starts_with("  ") && l.contains(" exits=") && l.contains(" kernel-calls=") {
            let t = l.trim_start();
            let class = t.split_whitespace().next().unwrap_or("");
            if let (Some(exits), Some(calls)) = (field(t, "exits="), field(t, "kernel-calls=")) {
                run.classes.insert(class.to_string(), (exits, calls));
            }
        }
    }
    run
}

/// The VMM statistics class a guest benchmark exercises.
pub fn class_of(bench: &str) -> Option<&'static str> {
    match bench {
        "mmio-read" => Some("mmio-read"),
        "mmio-write" => Some("mmio-write"),
        "hvc" => Some("hvc"),
        "write-page" => Some("write-handler"),
        "gicd-read" | "virtio-read" | "pl011-read" => Some("mmio-read"),
        "gicd-write" | "pl011-write" => Some("mmio-write"),
        _ => None,
    }
}

/// Ticks per operation of `name` in `run`, if it measured it.
fn per_op_of(run: Option<&Run>, name: &str) -> Option<f64> {
    run?.benches
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, m)| m.per_op())
        .filter(|f| *f > 0.0)
}

/// The Markdown table: each exit of the full VMM's run in ticks and instructions (1 tick = 16
/// instructions at 62.5 MHz under `-icount shift=0`: 1 instruction = 1 ns), and its ratio to the
/// floor VMM (the least a correct emulation does) and to the null VMM (PC + 4 and reply).
pub fn table(full: &Run, floor: Option<&Run>, null: &Run) -> String {
    let mut o = String::new();
    let hz = full.cntfrq.unwrap_or(0);
    let _ = writeln!(
        o,
        "| exit | iterations | ticks/op | instructions/op | floor VMM ticks/op | ratio to floor | null VMM ticks/op | ratio to null | kernel calls/exit |"
    );
    let _ = writeln!(
        o,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let cells = |base: Option<f64>, x: f64| match base {
        Some(b) => (format!("{b:.2}"), format!("{:.2}", x / b)),
        None => ("n/a".into(), "n/a".into()),
    };
    for (name, m) in &full.benches {
        let insns = if hz > 0 {
            format!("{:.0}", m.per_op() * 1e9 / hz as f64)
        } else {
            "-".into()
        };
        let (floor_s, floor_r) = cells(per_op_of(floor, name), m.per_op());
        let (null_s, null_r) = cells(per_op_of(Some(null), name), m.per_op());
        let calls = class_of(name)
            .and_then(|c| full.classes.get(c))
            .map(|(e, k)| format!("{:.2}", *k as f64 / (*e).max(1) as f64))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "| {name} | {} | {:.2} | {insns} | {floor_s} | {floor_r} | {null_s} | {null_r} | {calls} |",
            m.iterations,
            m.per_op()
        );
    }
    for (name, why) in &full.failed {
        let _ = writeln!(o, "| {name} | failed: {why} | | | | | | | |");
    }
    o
}

/// The IPI table: the cross-vCPU SGI round trip (`bench ipi`) under the VMM against the same
/// guest natively on QEMU with `-smp 2` (both under `-icount shift=0`), in ticks and
/// instructions per round trip, with the ratio and the VMM's exits per round trip.
pub fn ipi_table(full: &Run, native: Option<&Run>) -> Option<String> {
    let vmm = per_op_of(Some(full), "ipi")?;
    let hz = full.cntfrq.unwrap_or(0);
    let insns = |t: f64| {
        if hz > 0 {
            format!("{:.0}", t * 1e9 / hz as f64)
        } else {
            "-".into()
        }
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "| IPI round trip (CPU 0 → CPU 1 → CPU 0) | ticks/op | instructions/op |\n| --- | ---: | ---: |"
    );
    let _ = writeln!(o, "| under the VMM | {vmm:.2} | {} |", insns(vmm));
    match per_op_of(native, "ipi") {
        Some(n) => {
            let _ = writeln!(o, "| native QEMU, `-smp 2` | {n:.2} | {} |", insns(n));
            let _ = writeln!(o, "| ratio VMM / native | {:.1} | |", vmm / n);
        }
        None => {
            let _ = writeln!(o, "| native QEMU, `-smp 2` | not run | |");
        }
    }
    Some(o)
}

/// One run's cell of a block benchmark: ticks (or why not), MB/s, the measurement.
fn blk_cell<'a>(run: Option<&'a Run>, name: &str) -> (String, Option<f64>, Option<&'a Throughput>) {
    let Some(run) = run else {
        return ("not run".into(), None, None);
    };
    match run.blk.iter().find(|(n, _)| n == name) {
        Some((_, Ok(t))) => {
            let mb = t.mb_per_s(run.cntfrq.unwrap_or(0));
            (t.ticks.to_string(), mb, Some(t))
        }
        Some((_, Err(why))) => (format!("failed: {why}"), None, None),
        None => ("-".into(), None, None),
    }
}

/// The block-throughput table: every `blk-…` benchmark of either run, as MB per virtual second
/// under seL4 (`sel4`, the full VMM's run) and natively (`native`), with the ratio seL4/native.
pub fn blk_table(sel4: Option<&Run>, native: Option<&Run>) -> String {
    let mut names: Vec<&str> = Vec::new();
    for run in [sel4, native].into_iter().flatten() {
        for (n, _) in &run.blk {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "| transfer | bytes | requests | seL4 ticks | seL4 MB/s | native ticks | native MB/s | seL4 / native |"
    );
    let _ = writeln!(
        o,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mb = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    for name in names {
        let (s_ticks, s_mb, s_t) = blk_cell(sel4, name);
        let (n_ticks, n_mb, n_t) = blk_cell(native, name);
        let t = s_t.or(n_t);
        let ratio = match (s_mb, n_mb) {
            (Some(s), Some(n)) if n > 0.0 => format!("{:.3}", s / n),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            o,
            "| {name} | {} | {} | {s_ticks} | {} | {n_ticks} | {} | {ratio} |",
            t.map_or_else(|| "-".into(), |t| t.bytes.to_string()),
            t.map_or_else(|| "-".into(), |t| t.requests.to_string()),
            mb(s_mb),
            mb(n_mb)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "testguest: bench mode, CNTFRQ_EL0 = 62500000 Hz\n\
        bench mmio-read iterations=10000 ticks=200000 ticks-per-op=20.00\n\
        bench sgi-self iterations=10000 ticks=900000 ticks-per-op=90.00\n\
        bench ipi iterations=100 ticks=250000 ticks-per-op=2500.00\n\
        vmm: trap statistics\n  total exits=5 kernel-calls=9 mean=1.80\n  mmio-read exits=4 kernel-calls=12 mean=3.00 max=3\n";
    const NULL: &str = "bench mmio-read iterations=10000 ticks=50000 ticks-per-op=5.00\n\
        bench sgi-self failed: SGI 0 not delivered after 10000000 polls\n";

    #[test]
    fn block_throughput_in_mb_per_virtual_second() {
        let sel4 = parse(
            "testguest: bench mode, CNTFRQ_EL0 = 62500000 Hz\n\
             bench mmio-read iterations=10000 ticks=200000 ticks-per-op=20.00\n\
             bench blk-write-4k bytes=4194304 requests=1024 depth=4 ticks=625000\n\
             bench blk-read-4k failed: request 3: status 0x1, used length 1 (want 0, 4097)\n",
        );
        let native = parse(
            "testguest: bench mode, CNTFRQ_EL0 = 62500000 Hz\n\
             bench blk-write-4k bytes=4194304 requests=1024 depth=4 ticks=62500\n\
             bench blk-read-4k bytes=4194304 requests=1024 depth=4 ticks=125000\n",
        );
        assert_eq!(sel4.benches.len(), 1, "blk lines are not exit benchmarks");
        assert!(sel4.failed.is_empty());
        assert!(sel4.blk[1].1.is_err());
        assert_eq!(
            native.blk[1].1,
            Ok(Throughput {
                bytes: 4_194_304,
                requests: 1024,
                ticks: 125_000
            })
        );
        // 4194304 bytes in 625000 ticks at 62.5 MHz = 10 ms: 419.4 MB/s; natively 1 ms.
        let t = blk_table(Some(&sel4), Some(&native));
        assert!(
            t.contains(
                "| blk-write-4k | 4194304 | 1024 | 625000 | 419.4 | 62500 | 4194.3 | 0.100 |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| blk-read-4k | 4194304 | 1024 | failed: request 3: status 0x1"),
            "{t}"
        );
        assert!(t.contains("| 125000 | 2097.2 | n/a |"), "{t}");
        let only_native = blk_table(None, Some(&native));
        assert!(
            only_native
                .contains("| blk-write-4k | 4194304 | 1024 | not run | - | 62500 | 4194.3 | n/a |"),
            "{only_native}"
        );
        assert_eq!(
            Throughput {
                bytes: 1,
                requests: 0,
                ticks: 0
            }
            .mb_per_s(62_500_000),
            None
        );
    }

    #[test]
    fn the_ipi_round_trip_against_native() {
        let full = parse(FULL);
        // 2500 ticks under the VMM (40,000 instructions), 20 natively: 125x.
        let native = parse(
            "testguest: bench mode, CNTFRQ_EL0 = 62500000 Hz\n\
             bench ipi iterations=10000 ticks=200000 ticks-per-op=20.00\n",
        );
        let t = ipi_table(&full, Some(&native)).expect("the full run measured ipi");
        assert!(t.contains("| under the VMM | 2500.00 | 40000 |"), "{t}");
        assert!(t.contains("| native QEMU, `-smp 2` | 20.00 | 320 |"), "{t}");
        assert!(t.contains("| ratio VMM / native | 125.0 | |"), "{t}");
        let alone = ipi_table(&full, None).unwrap();
        assert!(
            alone.contains("| native QEMU, `-smp 2` | not run | |"),
            "{alone}"
        );
        assert_eq!(ipi_table(&parse(NULL), Some(&native)), None);
    }

    #[test]
    fn parses_and_tabulates_with_ratios() {
        let full = parse(FULL);
        let null = parse(NULL);
        assert_eq!(full.cntfrq, Some(62_500_000));
        assert_eq!(full.classes.get("mmio-read"), Some(&(4, 12)));
        assert_eq!(null.failed.len(), 1);
        let t = table(&full, None, &null);
        assert!(
            t.contains("| mmio-read | 10000 | 20.00 | 320 | n/a | n/a | 5.00 | 4.00 | 3.00 |"),
            "{t}"
        );
        assert!(
            t.contains("| sgi-self | 10000 | 90.00 | 1440 | n/a | n/a | n/a | n/a | - |"),
            "{t}"
        );
        let t = table(&full, Some(&full), &null);
        assert!(
            t.contains("| mmio-read | 10000 | 20.00 | 320 | 20.00 | 1.00 | 5.00 | 4.00 | 3.00 |"),
            "{t}"
        );
    }
}
