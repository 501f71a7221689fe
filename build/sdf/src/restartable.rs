//! Whether a PD can be restarted from its entry point without reloading its ELF (Microkit
//! does not reload it): the monitor resets only its registers (PC at the entry, SP at the top
//! of its stack), so every byte of writable memory the program image gives the PD must either
//! be rebuilt by its start-up code or never written after load. This project's drivers keep
//! all their state on the stack (the handler their `init` builds); their writable segments may
//! hold only the symbols the Microkit tool patches before boot (`microkit_*` and the PD's
//! `setvar` symbols), which the PD reads and never writes.
//!
//! [`check`] holds an ELF's writable, allocated sections to that: every symbol in them must be
//! an allowed one, and every byte of them must lie in an allowed symbol (padding between two
//! symbols of up to [`MAX_PADDING`] bytes aside). [`writable_symbols`] reads the ELF64 symbol
//! table; `codegen::required_symbols` lists what system.xml and the runtime patch.

use crate::sizes::{ElfError, field};

/// Bytes of alignment padding allowed between two allowed symbols.
pub const MAX_PADDING: u64 = 7;

/// A symbol in a writable section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// Name.
    pub name: String,
    /// Address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A writable, allocated section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name.
    pub name: String,
    /// Address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

fn cstr(bytes: &[u8], at: u64) -> Result<String, ElfError> {
    let at = usize::try_from(at).map_err(|_| ElfError("string offset too large".into()))?;
    let s = bytes
        .get(at..)
        .ok_or_else(|| ElfError(format!("string at {at:#x} past the end")))?;
    let end = s
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| ElfError(format!("unterminated string at {at:#x}")))?;
    Ok(String::from_utf8_lossy(&s[..end]).into_owned())
}

const SHT_SYMTAB: u64 = 2;
const SHT_NOBITS: u64 = 8;
const SHF_WRITE: u64 = 1;
const SHF_ALLOC: u64 = 2;

/// The writable, allocated sections of an ELF64 little-endian file and the named symbols in
/// them (from its `.symtab`; a file without one is an error: nothing could be checked).
pub fn writable_symbols(bytes: &[u8]) -> Result<(Vec<Section>, Vec<Symbol>), ElfError> {
    if bytes.get(..4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err(ElfError("not an ELF64 little-endian file".into()));
    }
    let shoff = field(bytes, 0x28, 8)?;
    let shentsize = field(bytes, 0x3a, 2)?;
    let shnum = field(bytes, 0x3c, 2)?;
    let shstrndx = field(bytes, 0x3e, 2)?;
    if shentsize < 0x40 {
        return Err(ElfError(format!("section header size {shentsize} < 64")));
    }
    let sh = |i: u64, off: u64, len: usize| field(bytes, shoff + i * shentsize + off, len);
    let shstr_off = sh(shstrndx, 0x18, 8)?;
    let mut writable = vec![];
    let mut symtab = None;
    for i in 0..shnum {
        let ty = sh(i, 4, 4)?;
        let flags = sh(i, 8, 8)?;
        if ty == SHT_SYMTAB {
            symtab = Some(i);
        }
        if flags & (SHF_WRITE | SHF_ALLOC) == SHF_WRITE | SHF_ALLOC {
            writable.push((
                i,
                Section {
                    name: cstr(bytes, shstr_off + sh(i, 0, 4)?)?,
                    addr: sh(i, 0x10, 8)?,
                    size: sh(i, 0x20, 8)?,
                },
                ty == SHT_NOBITS,
            ));
        }
    }
    let symtab = symtab.ok_or_else(|| ElfError("no symbol table".into()))?;
    let (sym_off, sym_size, sym_link, sym_ent) = (
        sh(symtab, 0x18, 8)?,
        sh(symtab, 0x20, 8)?,
        sh(symtab, 0x28, 4)?,
        sh(symtab, 0x38, 8)?,
    );
    if sym_ent < 24 {
        return Err(ElfError(format!("symbol entry size {sym_ent} < 24")));
    }
    let str_off = sh(sym_link, 0x18, 8)?;
    let mut symbols = vec![];
    for k in 0..sym_size / sym_ent {
        let s = sym_off + k * sym_ent;
        let shndx = field(bytes, s + 6, 2)?;
        if !writable.iter().any(|(i, _, _)| *i == shndx) {
            continue;
        }
        let name = cstr(bytes, str_off + field(bytes, s, 4)?)?;
        // Section symbols and compiler-local labels carry no storage of their own.
        if name.is_empty() || name.starts_with('$') || name.starts_with(".L") {
            continue;
        }
        symbols.push(Symbol {
            name,
            addr: field(bytes, s + 8, 8)?,
            size: field(bytes, s + 16, 8)?,
        });
    }
    Ok((writable.into_iter().map(|(_, s, _)| s).collect(), symbols))
}

/// What makes a PD image unsafe to restart in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A symbol in writable memory that nobody patches: state a restart would not reset.
    Symbol(Symbol),
    /// Writable bytes no allowed symbol covers (`addr`, `len`).
    Uncovered(u64, u64),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Symbol(s) => write!(
                f,
                "writable symbol {} ({} bytes at {:#x}) is not patched by the Microkit tool: a restart would keep its value",
                s.name, s.size, s.addr
            ),
            Problem::Uncovered(a, l) => write!(
                f,
                "{l} writable bytes at {a:#x} hold no patched symbol: a restart would keep them"
            ),
        }
    }
}

/// Checks `sections` and their `symbols` against `allowed`; returns every problem.
pub fn check(sections: &[Section], symbols: &[Symbol], allowed: &[String]) -> Vec<Problem> {
    let mut problems = vec![];
    let mut ranges = vec![];
    for s in symbols {
        if allowed.contains(&s.name) {
            ranges.push((s.addr, s.addr.saturating_add(s.size)));
        } else {
            problems.push(Problem::Symbol(s.clone()));
        }
    }
    ranges.sort_unstable();
    for sec in sections.iter().filter(|s| s.size > 0) {
        let end = sec.addr.saturating_add(sec.size);
        let mut at = sec.addr;
        for &(a, b) in ranges.iter().filter(|(a, b)| *b > sec.addr && *a < end) {
            if a > at && a - at > MAX_PADDING {
                problems.push(Problem::Uncovered(at, a - at));
            }
            at = at.max(b);
        }
        if end > at && end - at > MAX_PADDING {
            problems.push(Problem::Uncovered(at, end - at));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(name: &str, addr: u64, size: u64) -> Symbol {
        Symbol {
            name: name.into(),
            addr,
            size,
        }
    }
    fn sec(addr: u64, size: u64) -> Section {
        Section {
            name: ".bss".into(),
            addr,
            size,
        }
    }

    #[test]
    fn patched_symbols_only_pass() {
        let allowed = vec!["a".to_string(), "b".to_string()];
        let syms = [sym("a", 0x100, 8), sym("b", 0x10c, 4)];
        assert_eq!(check(&[sec(0x100, 0x10)], &syms, &allowed), vec![]);
    }

    #[test]
    fn a_variable_of_its_own_or_bytes_of_no_symbol_fail() {
        let allowed = vec!["a".to_string()];
        let syms = [sym("a", 0x100, 8), sym("COUNTER", 0x108, 8)];
        let p = check(&[sec(0x100, 0x10)], &syms, &allowed);
        assert_eq!(
            p,
            vec![
                Problem::Symbol(sym("COUNTER", 0x108, 8)),
                Problem::Uncovered(0x108, 8)
            ]
        );
        assert!(p[0].to_string().contains("COUNTER"));
        // Bytes before the first symbol, and a gap wider than padding.
        let p = check(&[sec(0xf0, 0x40)], &[sym("a", 0x100, 8)], &allowed);
        assert_eq!(
            p,
            vec![
                Problem::Uncovered(0xf0, 0x10),
                Problem::Uncovered(0x108, 0x28)
            ]
        );
        // Padding up to MAX_PADDING is fine.
        assert_eq!(
            check(
                &[sec(0x100, 8 + MAX_PADDING)],
                &[sym("a", 0x100, 8)],
                &allowed
            ),
            vec![]
        );
        assert_eq!(
            check(
                &[sec(0x100, 9 + MAX_PADDING)],
                &[sym("a", 0x100, 8)],
                &allowed
            )
            .len(),
            1
        );
    }

    #[unsafe(no_mangle)]
    static mut RESTARTABLE_TEST_MARKER: u64 = 7;

    #[test]
    fn the_symbol_table_of_a_real_elf_is_read() {
        // This test binary: an ELF64 little-endian file with .data and .bss.
        // SAFETY: read once to keep the static; no other reference to it exists.
        let v = unsafe { core::ptr::addr_of!(RESTARTABLE_TEST_MARKER).read_volatile() };
        assert_eq!(v, 7);
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let (sections, symbols) = writable_symbols(&exe).unwrap();
        assert!(sections.iter().any(|s| s.name == ".data"), "{sections:?}");
        let m = symbols
            .iter()
            .find(|s| s.name == "RESTARTABLE_TEST_MARKER")
            .expect("the marker is a writable symbol");
        assert_eq!(m.size, 8);
        assert!(writable_symbols(b"not an elf").is_err());
    }
}
