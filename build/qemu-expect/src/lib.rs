//! The expectation logic of `qemu-expect`, separate from process handling so it is host-tested.
//!
//! An expectation file has one pattern per line: a plain line must appear in the console output
//! (as a substring of one line), in file order; a line starting with `!` is forbidden anywhere
//! (a panic, a fault, a FAIL); `#` starts a comment; blank lines are ignored.

/// Parsed expectations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expectations {
    /// Patterns that must appear, in order.
    pub expected: Vec<String>,
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
            match l.strip_prefix('!') {
                Some(f) => e.forbidden.push(f.to_string()),
                None => e.expected.push(l.to_string()),
            }
        }
        e
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
    next: usize,
}

impl Matcher {
    /// A matcher at the start.
    pub fn new(e: Expectations) -> Matcher {
        Matcher { e, next: 0 }
    }
    /// Consumes one console line.
    pub fn feed(&mut self, line: &str) -> Verdict {
        if let Some(p) = self.e.forbidden.iter().find(|p| line.contains(p.as_str())) {
            return Verdict::Forbidden {
                pattern: p.clone(),
                line: line.to_string(),
            };
        }
        if self
            .e
            .expected
            .get(self.next)
            .is_some_and(|p| line.contains(p.as_str()))
        {
            self.next += 1;
        }
        self.verdict()
    }
    /// The verdict so far.
    pub fn verdict(&self) -> Verdict {
        if self.next >= self.e.expected.len() {
            Verdict::Passed
        } else {
            Verdict::Waiting
        }
    }
    /// The first expected line not seen yet.
    pub fn missing(&self) -> Option<&str> {
        self.e.expected.get(self.next).map(String::as_str)
    }
    /// How many expected lines were seen.
    pub fn seen(&self) -> usize {
        self.next
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
        assert_eq!(m.missing(), Some("second"));
        assert_eq!(m.feed("second"), Verdict::Passed);
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
