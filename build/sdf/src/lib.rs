//! The Microkit system description (`system.xml`) as a typed, validated model.
//!
//! One source of truth for three users: the PD crates' build scripts generate their channel,
//! IRQ, child and region constants from it ([`codegen`]); host tests take each PD's exact
//! resources from it ([`scope::PdScope`]), so a test cannot grant a component more than the
//! system does; and isolation tests check who maps what. A malformed file gives an [`SdfError`]
//! naming the line, element and attribute, never a panic.

pub mod blk;
pub mod codegen;
pub mod model;
pub mod multivm;
pub mod net;
pub mod overlay;
pub mod parse;
pub mod policy;
pub mod policy_table;
pub mod restartable;
pub mod scope;
pub mod sizes;
pub mod timer;

pub use model::*;
pub use parse::{SdfError, parse};
pub use scope::PdScope;

/// Reads and parses a system description file.
pub fn load(path: &std::path::Path) -> Result<System, SdfError> {
    let text = std::fs::read_to_string(path).map_err(|e| SdfError {
        line: 0,
        element: String::new(),
        attribute: None,
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    parse(&text)
}
