//! The expectation logic of `qemu-expect`, separate from process handling so it is host-tested.
//!
//! An expectation file has one pattern per line: a plain line must appear in the console output
//! (as a substring of one line), in file order within its chain; a line starting with `@` starts
//! a new named chain (independent components print independent ordered sequences that
//! interleave on the console: each chain is matched in order on its own, and all must complete);
//! a line starting with `!` is forbidden anywhere (a panic, a fault, a FAIL); `#` starts a
//! comment; blank lines are ignored.

pub mod bench;

/// Parsed expectations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expectations {
    /// Chains of patterns; each must appear in order.
    pub chains: Vec<(String, Vec<String>)>,
    /// Patterns that must never appear.
    pub forbidden: Vec<String>,
}

impl Expectations {
    /// Parses an expectation file.
    pub fn parse(text: &str) -> Expectations {
        let mut e = Expectations::default();
        for line in text.lines() {
            let l = line.trim_end();
            if l.trim().is_empty() || l.trim_start().starts_with('#') {
                continue;
            }
            if let Some(f) = l.strip_prefix('!') {
                e.forbidden.push(f.to_string());
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
        e
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
}

impl Matcher {
    /// A matcher at the start.
    pub fn new(e: Expectations) -> Matcher {
        let next = vec![0; e.chains.len()];
        Matcher { e, next }
    }
    /// Consumes one console line (it may advance several chains).
    pub fn feed(&mut self, line: &str) -> Verdict {
        if let Some(p) = self.e.forbidden.iter().find(|p| line.contains(p.as_str())) {
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
        self.verdict()
    }
    /// The verdict so far.
    pub fn verdict(&self) -> Verdict {
        let done = self
            .e
            .chains
            .iter()
            .zip(&self.next)
            .all(|((_, c), n)| *n >= c.len());
        if done {
            Verdict::Passed
        } else {
            Verdict::Waiting
        }
    }
    /// The first expected line not seen yet, with its chain.
    pub fn missing(&self) -> Option<String> {
        self.e
            .chains
            .iter()
            .zip(&self.next)
            .find_map(|((name, c), n)| c.get(*n).map(|l| format!("[{name}] {l}")))
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
        let e = Expectations::parse("# c\nfirst\nsecond\n!PANIC\n");
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
        let e = Expectations::parse("@a\na1\na2\n@b\nb1\nb2\n");
        assert_eq!(e.total(), 4);
        let mut m = Matcher::new(e);
        for l in ["b1", "a1", "b2"] {
            assert_eq!(m.feed(l), Verdict::Waiting);
        }
        assert_eq!(m.missing().as_deref(), Some("[a] a2"));
        assert_eq!(m.feed("a2"), Verdict::Passed);
        // Within a chain, order still matters.
        let mut m = Matcher::new(Expectations::parse("@a\nx\ny\n"));
        m.feed("y");
        m.feed("x");
        assert_eq!(m.verdict(), Verdict::Waiting);
    }

    #[test]
    fn forbidden_wins() {
        let mut m = Matcher::new(Expectations::parse("a\n!PANIC"));
        assert!(matches!(
            m.feed("pd: PANIC: boom"),
            Verdict::Forbidden { .. }
        ));
    }
}
