//! `qemu-expect`: boot a system image in QEMU with a timeout, keep the console log in a file,
//! assert the expected lines in order, and fail on timeout, on a missing line, on a forbidden
//! line (panic, fault, FAIL) or when QEMU exits before every line was seen.
//!
//! Usage: `qemu-expect --expect FILE --log FILE --timeout SECONDS [--linger SECONDS] -- QEMU ARGS...`
//! `--linger` keeps reading for that long after the last expected line (to catch late faults).

use qemu_expect::{Expectations, Matcher, Verdict};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn usage() -> ExitCode {
    eprintln!(
        "usage: qemu-expect --expect FILE --log FILE --timeout SECONDS [--linger SECONDS] -- CMD ARGS..."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(split) = args.iter().position(|a| a == "--") else {
        return usage();
    };
    let (opts, cmd) = (&args[..split], &args[split + 1..]);
    let opt = |name: &str| {
        opts.iter()
            .position(|a| a == name)
            .and_then(|i| opts.get(i + 1))
            .cloned()
    };
    let (Some(expect), Some(log), Some(timeout)) =
        (opt("--expect"), opt("--log"), opt("--timeout"))
    else {
        return usage();
    };
    let Ok(timeout) = timeout.parse::<u64>() else {
        return usage();
    };
    let linger = opt("--linger")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    if cmd.is_empty() {
        return usage();
    }
    let text = match std::fs::read_to_string(&expect) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("qemu-expect: cannot read {expect}: {e}");
            return ExitCode::from(2);
        }
    };
    let expectations = Expectations::parse(&text);
    let total = expectations.total();
    let mut matcher = Matcher::new(expectations);
    let mut logfile = match std::fs::File::create(&log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("qemu-expect: cannot create {log}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut child = match Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qemu-expect: cannot start {}: {e}", cmd[0]);
            return ExitCode::from(2);
        }
    };
    let (tx, rx) = mpsc::channel::<Option<String>>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            while r
                .read_until(b'\n', &mut buf)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                let _ = tx.send(Some(line));
                buf.clear();
            }
            let _ = tx.send(None);
        });
    }
    drop(tx);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(timeout);
    let mut passed_at: Option<Instant> = None;
    let mut closed = 0;
    let outcome: Result<(), String> = loop {
        let now = Instant::now();
        if passed_at.is_some_and(|t| now >= t + Duration::from_secs(linger)) {
            break Ok(());
        }
        if now >= deadline {
            break Err(format!(
                "timeout after {timeout}s; missing line: {:?}",
                matcher.missing().unwrap_or_default()
            ));
        }
        let wait = passed_at.map_or(deadline, |t| {
            (t + Duration::from_secs(linger)).min(deadline)
        }) - now;
        match rx.recv_timeout(wait) {
            Ok(Some(line)) => {
                println!("{line}");
                let _ = writeln!(logfile, "{line}");
                match matcher.feed(&line) {
                    Verdict::Forbidden { pattern, line } => {
                        break Err(format!("forbidden pattern {pattern:?} in line {line:?}"));
                    }
                    Verdict::Passed if passed_at.is_none() => passed_at = Some(Instant::now()),
                    _ => {}
                }
            }
            Ok(None) => {
                closed += 1;
                if closed == 2 {
                    break match matcher.verdict() {
                        Verdict::Passed => Ok(()),
                        _ => Err(format!(
                            "QEMU exited; missing line: {:?}",
                            matcher.missing().unwrap_or_default()
                        )),
                    };
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(format!(
                    "QEMU output closed; missing line: {:?}",
                    matcher.missing().unwrap_or_default()
                ));
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let secs = start.elapsed().as_secs_f64();
    match outcome {
        Ok(()) => {
            println!(
                "qemu-expect: PASS {total}/{total} expected lines in order ({secs:.1}s); log: {log}"
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!(
                "qemu-expect: FAILED after {}/{total} expected lines ({secs:.1}s): {why}; log: {log}",
                matcher.seen()
            );
            ExitCode::FAILURE
        }
    }
}
