//! The expectation logic of `qemu-expect`, separate from process handling so it is host-tested.
//!
//! An expectation file has one pattern per line: a plain line must appear in the console output
//! (as a substring of one line), in file order within its chain; a line starting with `@` starts
//! a new named chain (independent components print independent ordered sequences that
//! interleave on the console: each chain is matched in order on its own, and all must complete);
//! a line starting with `!` is forbidden anywhere (a panic, a fault, a FAIL); `#` starts a
//! comment; blank lines are ignored. Every file also forbids [`ALWAYS_FORBIDDEN`] without
//! naming it: a seL4 kernel report fails every boot test, present and future. A line starting
//! with `?` exempts the console lines that contain its pattern from every forbidden pattern: a
//! message the test provokes on purpose and names exactly (the debug kernel's report of the
//! Microkit monitor's unanswered fault, when a test crashes a PD the monitor owns).
//!
//! A line `>after PATTERN => TEXT` is console *input*: once a console line containing PATTERN
//! has been seen, the runner writes TEXT to QEMU's standard input (the serial console). Input
//! directives form one sequence of their own, in file order, independent of the chains: each
//! waits for a console line that comes after the line that fired the previous one (so a line
//! fires at most one directive), and the run passes only once every directive has fired. A
//! line still being printed counts too (a prompt without a newline): the runner offers the
//! unfinished line to the directives (not to the chains) whenever output pauses. The
//! trigger line is not an expected line by itself: list it as one too to assert it. TEXT takes
//! the escapes `\n`, `\r`, `\t`, `\\` and `\xHH` (any byte, e.g. `\x03` for Ctrl-C); PATTERN
//! cannot contain `=>`, and spaces around PATTERN and TEXT are dropped (write `\x20` for a
//! space at either end of TEXT). For example, `>after login: => root\r` types `root` and Enter
//! at the first line containing `login:`.

pub mod bench;

/// Forbidden in every run, whatever the expectation file says: the debug kernel's error reports
/// (`seL4(CPU 0) [...]`: a fault it printed, a bad invocation, an unexecuted reply).
pub const ALWAYS_FORBIDDEN: &[&str] = &["seL4(CPU"];

/// Bytes to write to QEMU's standard input once a console line contains `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The trigger pattern (a substring of one console line).
    pub after: String,
    /// The bytes to send (escapes resolved).
    pub bytes: Vec<u8>,
}

/// Parsed expectations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expectations {
    /// Chains of patterns; each must appear in order.
    pub chains: Vec<(String, Vec<String>)>,
    /// Patterns that must never appear.
    pub forbidden: Vec<String>,
    /// Patterns whose lines no forbidden pattern fails (`?`).
    pub allowed: Vec<String>,
    /// Console input, in the order it is sent.
    pub inputs: Vec<Input>,
}

/// A malformed line of an expectation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Resolves the escapes of an input directive's TEXT.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut it = text.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = |d: Option<u8>| d.and_then(|d| char::from(d).to_digit(16));
                match (hex(it.next()), hex(it.next())) {
                    // Two digits: at most 0xff.
                    (Some(h), Some(l)) => out.push((h << 4 | l) as u8),
                    _ => return Err("\\x needs two hex digits".into()),
                }
            }
            Some(c) => return Err(format!("unknown escape \\{}", c as char)),
            None => return Err("a lone \\ at the end".into()),
        }
    }
    Ok(out)
}

fn parse_input(directive: &str) -> Result<Input, String> {
    let rest = directive
        .strip_prefix("after")
        .filter(|r| r.starts_with(char::is_whitespace))
        .ok_or("unknown directive: write '>after PATTERN => TEXT'")?;
    let (after, text) = rest
        .split_once("=>")
        .ok_or("missing '=>' between PATTERN and TEXT")?;
    let after = after.trim();
    if after.is_empty() {
        return Err("empty PATTERN".into());
    }
    let bytes = unescape(text.trim())?;
    if bytes.is_empty() {
        return Err("empty TEXT: nothing to send".into());
    }
    Ok(Input {
        after: after.to_string(),
        bytes,
    })
}

impl Expectations {
    /// Parses an expectation file.
    pub fn parse(text: &str) -> Result<Expectations, ParseError> {
        let mut e = Expectations {
            forbidden: ALWAYS_FORBIDDEN.iter().map(|f| f.to_string()).collect(),
            ..Expectations::default()
        };
        for (n, line) in text.lines().enumerate() {
            let l = line.trim_end();
            if l.trim().is_empty() || l.trim_start().starts_with('#') {
                continue;
            }
            if let Some(d) = l.strip_prefix('>') {
                let input = parse_input(d).map_err(|message| ParseError {
                    line: n + 1,
                    message,
                })?;
                e.inputs.push(input);
            } else if let Some(f) = l.strip_prefix('!') {
                e.forbidden.push(f.to_string());
            } else if let Some(a) = l.strip_prefix('?') {
                e.allowed.push(a.to_string());
            } else if let Some(name) = l.strip_prefix('@') {
                e.chains.push((name.trim().to_string(), vec![]));
            } else {
                if e.chains.is_empty() {
                    e.chains.push(("main".into(), vec![]));
                }
                if let Some((_, c)) = e.chains.last_mut() {
                    c.push(l.to_string());
                }
            }
        }
        Ok(e)
    }

    /// Number of expected lines over all chains.
    pub fn total(&self) -> usize {
        self.chains.iter().map(|(_, c)| c.len()).sum()
    }
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// More lines are needed.
    Waiting,
    /// Every expected line was seen in order.
    Passed,
    /// A forbidden pattern appeared.
    Forbidden {
        /// The pattern.
        pattern: String,
        /// The console line.
        line: String,
    },
}

/// Feeds console lines through the expectations.
#[derive(Debug)]
pub struct Matcher {
    e: Expectations,
    next: Vec<usize>,
    /// The next input directive to fire.
    next_input: usize,
    /// Bytes of fired directives not yet taken by the runner.
    pending: Vec<u8>,
    /// A directive fired on the unfinished line: that line, once complete, fires no other.
    fired_on_partial: bool,
}

impl Matcher {
    /// A matcher at the start.
    pub fn new(e: Expectations) -> Matcher {
        let next = vec![0; e.chains.len()];
        Matcher {
            e,
            next,
            next_input: 0,
            pending: vec![],
            fired_on_partial: false,
        }
    }
    /// Consumes one console line (it may advance several chains and fire one input directive:
    /// see [`Matcher::take_input`]).
    pub fn feed(&mut self, line: &str) -> Verdict {
        let allowed = self.e.allowed.iter().any(|a| line.contains(a.as_str()));
        if let Some(p) = self
            .e
            .forbidden
            .iter()
            .find(|p| !allowed && line.contains(p.as_str()))
        {
            return Verdict::Forbidden {
                pattern: p.clone(),
                line: line.to_string(),
            };
        }
        for ((_, chain), next) in self.e.chains.iter().zip(self.next.iter_mut()) {
            if chain.get(*next).is_some_and(|p| line.contains(p.as_str())) {
                *next += 1;
            }
        }
        if !std::mem::take(&mut self.fired_on_partial) {
            self.fire(line);
        }
        self.verdict()
    }
    /// Offers a line still being printed (no newline yet, e.g. a prompt) to the input
    /// directives only; it fires at most one directive, counting the completed line it becomes.
    pub fn feed_partial(&mut self, partial: &str) {
        if !self.fired_on_partial {
            self.fired_on_partial = self.fire(partial);
        }
    }
    fn fire(&mut self, line: &str) -> bool {
        match self.e.inputs.get(self.next_input) {
            Some(i) if line.contains(i.after.as_str()) => {
                self.pending.extend_from_slice(&i.bytes);
                self.next_input += 1;
                true
            }
            _ => false,
        }
    }
    /// The bytes to write to QEMU's standard input now (fired directives, in order), if any.
    pub fn take_input(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
    /// The verdict so far: passed once every chain is complete and every input was sent.
    pub fn verdict(&self) -> Verdict {
        let done = self
            .e
            .chains
            .iter()
            .zip(&self.next)
            .all(|((_, c), n)| *n >= c.len())
            && self.next_input >= self.e.inputs.len();
        if done {
            Verdict::Passed
        } else {
            Verdict::Waiting
        }
    }
    /// The first expected line not seen yet, with its chain (or the input directive still
    /// waiting for its line).
    pub fn missing(&self) -> Option<String> {
        self.e
            .chains
            .iter()
            .zip(&self.next)
            .find_map(|((name, c), n)| c.get(*n).map(|l| format!("[{name}] {l}")))
            .or_else(|| {
                self.e
                    .inputs
                    .get(self.next_input)
                    .map(|i| format!("[input] >after {}", i.after))
            })
    }
    /// Whether the expectations send console input (the runner then pipes QEMU's stdin).
    pub fn has_input(&self) -> bool {
        !self.e.inputs.is_empty()
    }
    /// How many expected lines were seen.
    pub fn seen(&self) -> usize {
        self.next.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_only() {
        let e = Expectations::parse("# c\nfirst\nsecond\n!PANIC\n").unwrap();
        let mut m = Matcher::new(e);
        assert_eq!(
            m.feed("second"),
            Verdict::Waiting,
            "second before first does not count"
        );
        assert_eq!(m.feed("x first y"), Verdict::Waiting);
        assert_eq!(m.missing().as_deref(), Some("[main] second"));
        assert_eq!(m.feed("second"), Verdict::Passed);
    }

    #[test]
    fn chains_are_ordered_independently() {
        let e = Expectations::parse("@a\na1\na2\n@b\nb1\nb2\n").unwrap();
        assert_eq!(e.total(), 4);
        let mut m = Matcher::new(e);
        for l in ["b1", "a1", "b2"] {
            assert_eq!(m.feed(l), Verdict::Waiting);
        }
        assert_eq!(m.missing().as_deref(), Some("[a] a2"));
        assert_eq!(m.feed("a2"), Verdict::Passed);
        // Within a chain, order still matters.
        let mut m = Matcher::new(Expectations::parse("@a\nx\ny\n").unwrap());
        m.feed("y");
        m.feed("x");
        assert_eq!(m.verdict(), Verdict::Waiting);
    }

    #[test]
    fn an_allowed_line_is_exempt_from_the_forbidden_patterns_and_no_other() {
        let e =
            Expectations::parse("ok\n!FAIL\n?Reply object already has unexecuted reply").unwrap();
        let mut m = Matcher::new(e);
        let known = "seL4(CPU 0) [receiveIPC/153 \"tcb_monitor\"]: Reply object already has unexecuted reply!";
        assert_eq!(m.feed(known), Verdict::Waiting);
        assert!(matches!(
            m.feed("seL4(CPU 0) [other]: a fault"),
            Verdict::Forbidden { .. }
        ));
        assert!(matches!(m.feed("FAIL x"), Verdict::Forbidden { .. }));
        assert_eq!(m.feed("ok"), Verdict::Passed);
    }

    #[test]
    fn forbidden_wins() {
        let mut m = Matcher::new(Expectations::parse("a\n!PANIC").unwrap());
        assert!(matches!(
            m.feed("pd: PANIC: boom"),
            Verdict::Forbidden { .. }
        ));
    }

    #[test]
    fn a_kernel_report_fails_every_file() {
        for file in ["a\n", "@x\na\n!PANIC\n", ""] {
            let mut m = Matcher::new(Expectations::parse(file).unwrap());
            assert_eq!(
                m.feed("seL4(CPU 0) [receiveIPC/142 T0xff] Reply object already has unexecuted reply!"),
                Verdict::Forbidden {
                    pattern: "seL4(CPU".into(),
                    line: "seL4(CPU 0) [receiveIPC/142 T0xff] Reply object already has unexecuted reply!"
                        .into(),
                },
                "{file:?}"
            );
        }
    }

    #[test]
    fn input_directives_parse_with_escapes() {
        let e = Expectations::parse(
            "@vm\nlogin:\n>after login: => root\\r\n>after  # => ls -l\\n\n\
             >after x=y => a\\tb\\\\c\\x03\\x7F\\x20\n# a comment\n",
        )
        .unwrap();
        assert_eq!(
            e.chains,
            vec![("vm".to_string(), vec!["login:".to_string()])]
        );
        assert_eq!(
            e.inputs,
            vec![
                Input {
                    after: "login:".into(),
                    bytes: b"root\r".to_vec()
                },
                Input {
                    after: "#".into(),
                    bytes: b"ls -l\n".to_vec()
                },
                Input {
                    after: "x=y".into(),
                    bytes: b"a\tb\\c\x03\x7f ".to_vec()
                },
            ]
        );
    }

    #[test]
    fn malformed_input_directives_are_errors_with_their_line() {
        for (text, what) in [
            (">send x => y", "unknown directive"),
            (">afterx => y", "unknown directive"),
            (">after x y", "missing '=>'"),
            (">after  => y", "empty PATTERN"),
            (">after x =>  ", "empty TEXT"),
            (">after x => \\q", "unknown escape \\q"),
            (">after x => \\x4", "two hex digits"),
            (">after x => \\xg0", "two hex digits"),
            (">after x => \\x+f", "two hex digits"),
            (">after x => a\\", "lone"),
        ] {
            let err = Expectations::parse(&format!("# first\nok\n{text}\n")).unwrap_err();
            assert_eq!(err.line, 3, "{text}");
            assert!(err.message.contains(what), "{text}: {}", err.message);
        }
    }

    #[test]
    fn inputs_fire_in_order_once_each_on_later_lines() {
        let e = Expectations::parse(">after prompt => a\n>after prompt => b\n>after done => c\n")
            .unwrap();
        let mut m = Matcher::new(e);
        assert!(m.has_input());
        assert_eq!(m.feed("done"), Verdict::Waiting, "not before its turn");
        assert_eq!(m.take_input(), None);
        assert_eq!(m.feed("> prompt"), Verdict::Waiting);
        assert_eq!(m.take_input(), Some(b"a".to_vec()));
        assert_eq!(m.take_input(), None, "taken once");
        assert_eq!(m.missing().as_deref(), Some("[input] >after prompt"));
        assert_eq!(
            m.feed("> prompt"),
            Verdict::Waiting,
            "one directive per line"
        );
        assert_eq!(m.take_input(), Some(b"b".to_vec()));
        assert_eq!(m.feed("done"), Verdict::Passed);
        assert_eq!(m.take_input(), Some(b"c".to_vec()));
        assert_eq!(m.feed("prompt"), Verdict::Passed);
        assert_eq!(m.take_input(), None, "every directive fires once");
    }

    #[test]
    fn a_prompt_without_newline_fires_once() {
        let e =
            Expectations::parse(">after login: => root\\r\n>after login: => again\\r\n").unwrap();
        let mut m = Matcher::new(e);
        m.feed_partial("log");
        assert_eq!(m.take_input(), None);
        m.feed_partial("login: ");
        assert_eq!(m.take_input(), Some(b"root\r".to_vec()));
        m.feed_partial("login: r");
        assert_eq!(
            m.feed("login: root"),
            Verdict::Waiting,
            "the same line fires no more"
        );
        assert_eq!(m.take_input(), None);
        assert_eq!(m.feed("login: "), Verdict::Passed, "a later line does");
        assert_eq!(m.take_input(), Some(b"again\r".to_vec()));
    }

    #[test]
    fn a_run_is_not_passed_before_its_input_was_sent() {
        let mut m = Matcher::new(Expectations::parse("line\n>after never => x\n").unwrap());
        assert_eq!(m.feed("line"), Verdict::Waiting);
        assert_eq!(m.missing().as_deref(), Some("[input] >after never"));
        assert!(!Matcher::new(Expectations::parse("a\n").unwrap()).has_input());
    }
}
