//! The test overlay: composition keeps every production element, adds the overlay's, and a
//! malformed overlay is an error naming its line (never a panic).

use proptest::prelude::*;

const BASE: &str = r#"<system>
    <memory_region name="a" size="0x1000" />
    <protection_domain name="p" priority="10">
        <program_image path="p.elf" />
        <map mr="a" vaddr="0x1000000" />
    </protection_domain>
</system>
"#;

#[test]
fn elements_are_added_and_extend_adds_to_a_pd() {
    let overlay = r#"<system_overlay>
    <memory_region name="b" size="0x1000" />
    <protection_domain name="q" priority="20"><program_image path="q.elf" /></protection_domain>
    <extend pd="p"><map mr="b" vaddr="0x2000000" /></extend>
    <channel><end pd="p" id="1" /><end pd="q" id="1" /></channel>
</system_overlay>"#;
    let text = sdf::overlay::compose(BASE, overlay).unwrap();
    let sys = sdf::parse(&text).unwrap();
    let maps: Vec<&str> = sys
        .pd("p")
        .unwrap()
        .maps
        .iter()
        .map(|m| m.mr.as_str())
        .collect();
    assert_eq!(maps, ["a", "b"]);
    assert!(sys.pd("q").is_some());
    assert_eq!(sys.channels.len(), 1);
    // Every line of the base is kept, in order.
    let mut rest = text.as_str();
    for line in BASE.lines() {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} lost:\n{text}"));
        rest = &rest[at + line.len()..];
    }
}

#[test]
fn malformed_overlays_are_errors_with_their_line() {
    for (overlay, want) in [
        ("<system>", "not well-formed"),
        ("<system></system>", "must be <system_overlay>"),
        (
            "<system_overlay x=\"1\"></system_overlay>",
            "unknown attribute",
        ),
        (
            "<system_overlay>\n<vm /></system_overlay>",
            "unknown element",
        ),
        (
            "<system_overlay>\n<extend /></system_overlay>",
            "missing required",
        ),
        (
            "<system_overlay>\n<extend pd=\"nope\" /></system_overlay>",
            "no protection domain named",
        ),
        (
            "<system_overlay>\n<extend pd=\"p\" x=\"1\" /></system_overlay>",
            "unknown attribute",
        ),
        // The result is validated: a duplicate region, a map of nothing.
        (
            "<system_overlay>\n<memory_region name=\"a\" size=\"0x1000\" /></system_overlay>",
            "duplicate",
        ),
        (
            "<system_overlay>\n<extend pd=\"p\"><map mr=\"zz\" vaddr=\"0x5000000\" /></extend></system_overlay>",
            "no memory region",
        ),
    ] {
        let e = sdf::overlay::compose(BASE, overlay).unwrap_err();
        assert!(e.to_string().contains(want), "{overlay}: {e}");
    }
}

proptest! {
    #[test]
    fn any_overlay_text_gives_a_result_not_a_panic(s in ".{0,200}") {
        let _ = sdf::overlay::compose(BASE, &s);
        let _ = sdf::overlay::compose(BASE, &format!("<system_overlay>{s}</system_overlay>"));
        let _ = sdf::overlay::compose(&s, "<system_overlay></system_overlay>");
    }
}
