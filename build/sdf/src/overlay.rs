//! Test systems as an overlay on the production one: `system-test.xml` holds only what the boot
//! tests add (the runtime self-test PDs, their regions and channels, and the maps other PDs need
//! to serve them); [`compose`] splices it into `system.xml`, so the production description stays
//! the one source of every shared definition and the test system cannot drift from it.
//!
//! ```xml
//! <system_overlay>
//!     <memory_region name="selftest_shared" size="0x1000" />      <!-- added to <system> -->
//!     <protection_domain name="selftest_ping"> ... </protection_domain>
//!     <channel> ... </channel>
//!     <extend pd="serial_driver">                                  <!-- children added to an -->
//!         <map mr="..." vaddr="..." />                             <!-- existing PD -->
//!     </extend>
//! </system_overlay>
//! ```
//!
//! The result is text (what the Microkit tool reads) and is parsed and validated like any system
//! description; a malformed overlay gives an [`SdfError`] naming its line, never a panic.

use crate::model::System;
use crate::parse::{SdfError, err, parse, xml_err};
use roxmltree::{Document, Node};

/// The file name of the test overlay, beside `system.xml`.
pub const TEST_OVERLAY: &str = "system-test.xml";

fn oerr(n: &Node, attribute: Option<&str>, message: impl Into<String>) -> SdfError {
    err(n, attribute, format!("(overlay) {}", message.into()))
}

/// The text of `n`'s children (elements and comments), one per line, indented.
fn children_text(src: &str, n: &Node, indent: &str) -> String {
    let mut s = String::new();
    for c in n.children().filter(|c| c.is_element() || c.is_comment()) {
        s.push_str(indent);
        s.push_str(&src[c.range()]);
        s.push('\n');
    }
    s
}

/// Where the closing tag of element `n` starts in `src` (None for a self-closing element).
fn closing_tag(src: &str, n: &Node) -> Option<usize> {
    let r = n.range();
    let inner = &src[r.start..r.end];
    if inner.ends_with("/>") {
        return None;
    }
    let at = r.start + inner.rfind("</")?;
    // Before the closing tag's indentation, when it starts its own line.
    let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
    if src[line_start..at].trim().is_empty() {
        Some(line_start)
    } else {
        Some(at)
    }
}

/// `base` (a `<system>` document) with `overlay` (a `<system_overlay>` document) spliced in.
/// The result is checked with [`parse`].
pub fn compose(base: &str, overlay: &str) -> Result<String, SdfError> {
    let bdoc = Document::parse(base).map_err(|e| xml_err("base: ", e))?;
    let odoc = Document::parse(overlay).map_err(|e| xml_err("(overlay) ", e))?;
    let oroot = odoc.root_element();
    if oroot.tag_name().name() != "system_overlay" {
        return Err(oerr(
            &oroot,
            None,
            "the root element must be <system_overlay>",
        ));
    }
    if let Some(a) = oroot.attributes().next() {
        return Err(oerr(&oroot, Some(a.name()), "unknown attribute"));
    }
    let broot = bdoc.root_element();
    // (position in base, text to insert there); applied from the end.
    let mut inserts: Vec<(usize, String)> = vec![];
    let mut top = String::new();
    for c in oroot.children() {
        if c.is_comment() {
            top.push_str("    ");
            top.push_str(&overlay[c.range()]);
            top.push('\n');
            continue;
        }
        if !c.is_element() {
            continue;
        }
        match c.tag_name().name() {
            "memory_region" | "protection_domain" | "channel" => {
                top.push_str("    ");
                top.push_str(&overlay[c.range()]);
                top.push('\n');
            }
            "extend" => {
                if let Some(a) = c.attributes().find(|a| a.name() != "pd") {
                    return Err(oerr(&c, Some(a.name()), "unknown attribute"));
                }
                let pd = c
                    .attribute("pd")
                    .ok_or_else(|| oerr(&c, Some("pd"), "missing required attribute"))?;
                let target = broot
                    .descendants()
                    .filter(|b| b.is_element() && b.tag_name().name() == "protection_domain")
                    .find(|b| b.attribute("name") == Some(pd))
                    .ok_or_else(|| {
                        oerr(
                            &c,
                            Some("pd"),
                            format!("no protection domain named '{pd}' in the base"),
                        )
                    })?;
                let at = closing_tag(base, &target).ok_or_else(|| {
                    oerr(
                        &c,
                        Some("pd"),
                        format!("'{pd}' is self-closing in the base"),
                    )
                })?;
                inserts.push((at, children_text(overlay, &c, "        ")));
            }
            _ => return Err(oerr(&c, None, "unknown element under <system_overlay>")),
        }
    }
    let end = closing_tag(base, &broot).ok_or_else(|| SdfError {
        line: 0,
        element: "system".into(),
        attribute: None,
        message: "base: <system> is empty".into(),
    })?;
    inserts.push((end, format!("\n    <!-- Added by the overlay. -->\n{top}")));
    inserts.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let mut out = base.to_string();
    for (at, text) in inserts {
        out.insert_str(at, &text);
    }
    parse(&out)?;
    Ok(out)
}

/// Composes `system.xml` at `base` with the overlay at `overlay` and parses the result.
pub fn load_composed(
    base: &std::path::Path,
    overlay: &std::path::Path,
) -> Result<(String, System), SdfError> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| SdfError {
            line: 0,
            element: String::new(),
            attribute: None,
            message: format!("cannot read {}: {e}", p.display()),
        })
    };
    let text = compose(&read(base)?, &read(overlay)?)?;
    let sys = parse(&text)?;
    Ok((text, sys))
}
