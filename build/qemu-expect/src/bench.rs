//! The exit-cost table of `make bench-qemu`: parses the test guest's `bench` lines from a run
//! with the full VMM and one with the null VMM (the floor), and the full VMM's statistics block
//! (kernel invocations per exit class), and renders a Markdown table with ratios to the floor.

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

/// What one benchmark run printed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    /// Counter frequency in Hz.
    pub cntfrq: Option<u64>,
    /// Measurements by name, in order of appearance.
    pub benches: Vec<(String, Measurement)>,
    /// Failed measurements (name, reason).
    pub failed: Vec<(String, String)>,
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
            if rest.contains(" failed") {
                run.failed.push((name, rest.to_string()));
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
        _ => None,
    }
}

/// The Markdown table.
pub fn table(full: &Run, null: &Run) -> String {
    let mut o = String::new();
    let hz = full.cntfrq.unwrap_or(0);
    let _ = writeln!(
        o,
        "| exit | iterations | ticks/op | virtual ns/op | null VMM ticks/op | ratio to null | kernel calls/exit |"
    );
    let _ = writeln!(o, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, m) in &full.benches {
        let ns = if hz > 0 {
            format!("{:.0}", m.per_op() * 1e9 / hz as f64)
        } else {
            "-".into()
        };
        let floor = null
            .benches
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.per_op());
        let (floor_s, ratio) = match floor {
            Some(f) if f > 0.0 => (format!("{f:.2}"), format!("{:.2}", m.per_op() / f)),
            _ => ("n/a".into(), "n/a".into()),
        };
        let calls = class_of(name)
            .and_then(|c| full.classes.get(c))
            .map(|(e, k)| format!("{:.2}", *k as f64 / (*e).max(1) as f64))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "| {name} | {} | {:.2} | {ns} | {floor_s} | {ratio} | {calls} |",
            m.iterations,
            m.per_op()
        );
    }
    for (name, why) in &full.failed {
        let _ = writeln!(o, "| {name} | failed: {why} | | | | | |");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "testguest: bench mode, CNTFRQ_EL0 = 62500000 Hz\n\
        bench mmio-read iterations=10000 ticks=200000 ticks-per-op=20.00\n\
        bench sgi-self iterations=10000 ticks=900000 ticks-per-op=90.00\n\
        vmm: trap statistics\n  total exits=5 kernel-calls=9 mean=1.80\n  mmio-read exits=4 kernel-calls=12 mean=3.00 max=3\n";
    const NULL: &str = "bench mmio-read iterations=10000 ticks=50000 ticks-per-op=5.00\n\
        bench sgi-self failed: SGI 0 not delivered after 10000000 polls\n";

    #[test]
    fn parses_and_tabulates_with_ratios() {
        let full = parse(FULL);
        let null = parse(NULL);
        assert_eq!(full.cntfrq, Some(62_500_000));
        assert_eq!(full.classes.get("mmio-read"), Some(&(4, 12)));
        assert_eq!(null.failed.len(), 1);
        let t = table(&full, &null);
        assert!(
            t.contains("| mmio-read | 10000 | 20.00 | 320 | 5.00 | 4.00 | 3.00 |"),
            "{t}"
        );
        assert!(
            t.contains("| sgi-self | 10000 | 90.00 | 1440 | n/a | n/a | - |"),
            "{t}"
        );
    }
}
