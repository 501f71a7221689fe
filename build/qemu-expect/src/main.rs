//! `qemu-expect`: boot a system image in QEMU with a timeout, keep the console log in a file,
//! assert the expected lines in order, and fail on timeout, on a missing line, on a forbidden
//! line (panic, fault, FAIL) or when QEMU exits before every line was seen.
//!
//! Usage: `qemu-expect --expect FILE --log FILE --timeout SECONDS [--linger SECONDS]
//! [--expect-exit] -- QEMU ARGS...`
//! `--linger` keeps reading for that long after the last expected line (to catch late faults).
//! `--expect-exit`: QEMU must also end by itself (the guest powered the machine off) before the
//! timeout; until then every line is still checked against the forbidden patterns.
//!
//! Expectation files may also send console input: `>after PATTERN => TEXT` writes TEXT (escapes
//! `\n`, `\r`, `\t`, `\\`, `\xHH`) to QEMU's standard input once a console line containing
//! PATTERN has been seen (see the library's documentation); QEMU's standard input is a pipe
//! then, and each input sent is noted on the runner's standard error.

use qemu_expect::{Expectations, Matcher, Verdict};
use std::io::{Read, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn usage() -> ExitCode {
    eprintln!(
        "usage: qemu-expect --expect FILE --log FILE --timeout SECONDS [--linger SECONDS] [--expect-exit] -- CMD ARGS..."
    );
    ExitCode::from(2)
}

/// Writes the input the last console line fired, if any, to QEMU's standard input.
fn send_input(
    matcher: &mut Matcher,
    stdin: &mut Option<std::process::ChildStdin>,
) -> Result<(), String> {
    let Some(bytes) = matcher.take_input() else {
        return Ok(());
    };
    let stdin = stdin
        .as_mut()
        .ok_or("QEMU's standard input is not a pipe")?;
    stdin
        .write_all(&bytes)
        .and_then(|()| stdin.flush())
        .map_err(|e| format!("cannot write console input: {e}"))?;
    eprintln!("qemu-expect: sent {:?}", String::from_utf8_lossy(&bytes));
    Ok(())
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
    let expect_exit = opts.iter().any(|a| a == "--expect-exit");
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
    let expectations = match Expectations::parse(&text) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("qemu-expect: {expect}: {e}");
            return ExitCode::from(2);
        }
    };
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
        .stdin(if matcher.has_input() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
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
    let mut stdin = child.stdin.take();
    // Raw output of stream 0 (stdout) or 1 (stderr); `None`: that stream closed.
    let (tx, rx) = mpsc::channel::<(usize, Option<Vec<u8>>)>();
    for (id, stream) in [
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
    .enumerate()
    {
        let Some(mut stream) = stream else { continue };
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                let _ = tx.send((id, Some(buf[..n].to_vec())));
            }
            let _ = tx.send((id, None));
        });
    }
    drop(tx);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(timeout);
    let mut passed_at: Option<Instant> = None;
    let mut closed = 0;
    // Each stream's unfinished line.
    let mut partial: [Vec<u8>; 2] = [vec![], vec![]];
    let outcome: Result<(), String> = loop {
        let now = Instant::now();
        if !expect_exit && passed_at.is_some_and(|t| now >= t + Duration::from_secs(linger)) {
            break Ok(());
        }
        if now >= deadline {
            break Err(match passed_at {
                Some(_) => format!(
                    "every line seen, but QEMU did not exit by itself within {timeout}s \
                     (no power-off reached the machine)"
                ),
                None => format!(
                    "timeout after {timeout}s; missing line: {:?}",
                    matcher.missing().unwrap_or_default()
                ),
            });
        }
        let wait = match passed_at {
            Some(t) if !expect_exit => (t + Duration::from_secs(linger)).min(deadline),
            _ => deadline,
        } - now;
        let (id, chunk) = match rx.recv_timeout(wait) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(format!(
                    "QEMU output closed; missing line: {:?}",
                    matcher.missing().unwrap_or_default()
                ));
            }
        };
        let buf = &mut partial[id];
        let at_end = chunk.is_none();
        buf.extend(chunk.unwrap_or_default());
        // Complete lines (and, once the stream closed, what is left).
        let mut lines = vec![];
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            lines.push(buf.drain(..=pos).collect::<Vec<u8>>());
        }
        if at_end && !buf.is_empty() {
            lines.push(std::mem::take(buf));
        }
        let mut failed = None;
        for bytes in lines {
            let line = String::from_utf8_lossy(&bytes)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            println!("{line}");
            let _ = writeln!(logfile, "{line}");
            match matcher.feed(&line) {
                Verdict::Forbidden { pattern, line } => {
                    failed = Some(format!("forbidden pattern {pattern:?} in line {line:?}"));
                    break;
                }
                Verdict::Passed if passed_at.is_none() => passed_at = Some(Instant::now()),
                _ => {}
            }
            if let Err(e) = send_input(&mut matcher, &mut stdin) {
                failed = Some(e);
                break;
            }
        }
        if let Some(why) = failed {
            break Err(why);
        }
        // A line still being printed (a prompt) may fire an input directive.
        if !partial[id].is_empty() {
            matcher.feed_partial(&String::from_utf8_lossy(&partial[id]));
            if let Err(e) = send_input(&mut matcher, &mut stdin) {
                break Err(e);
            }
            if passed_at.is_none() && matcher.verdict() == Verdict::Passed {
                passed_at = Some(Instant::now());
            }
        }
        if at_end {
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
    };
    let _ = child.kill();
    let _ = child.wait();
    // A line QEMU was still printing when the run ended (a prompt and what was typed after it,
    // a command's echo cut short) when the run failed: shown and logged too, or a stall looks
    // earlier than it was.
    for rest in partial.iter().filter(|p| outcome.is_err() && !p.is_empty()) {
        let line = String::from_utf8_lossy(rest);
        let line = line.trim_end_matches(['\r', '\n']);
        println!("{line}");
        let _ = writeln!(logfile, "{line}");
        println!("qemu-expect: (the line above was unfinished when the run ended)");
    }
    let secs = start.elapsed().as_secs_f64();
    match outcome {
        Ok(()) => {
            let exit = if expect_exit {
                ", QEMU exited by itself"
            } else {
                ""
            };
            println!(
                "qemu-expect: PASS {total}/{total} expected lines in order{exit} ({secs:.1}s); log: {log}"
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
