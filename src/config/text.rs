//! Text shown to people: what misleads a reader (controls, text-direction overrides) and
//! shortening what a client sent before it is printed.

use std::fmt;

pub(super) fn bracketed<T: fmt::Display>(items: &[T]) -> String {
    let inner: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", inner.join(", "))
}

/// Whether `c` would make client text mislead a reader of a log, the audit file or `arcgate
/// status`: control characters (a newline forges a log line) and the Unicode direction
/// controls that reorder what is shown (U+202A–U+202E embeddings and overrides, U+2066–U+2069
/// isolates, and the LRM, RLM and ALM marks: the "Trojan Source" characters), the Unicode
/// line and paragraph separators, which some viewers break lines at, and the invisible
/// format characters that make two different strings look the same (zero-width spaces and
/// joiners, word joiner and invisible operators, deprecated format controls, the byte-order
/// mark, soft hyphen, and the tag characters).
pub fn misleading(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{00AD}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206A}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// Shortens what a user gave for an error message, so that a megabyte of input does not
/// become a megabyte of error; misleading characters become `?`.
pub fn shorten(s: &str) -> String {
    shorten_to(s, 80)
}

/// [`shorten`] with room for a whole sentence: for explanations another program sent (a
/// gate's or a relay's refusal), printed to a person's terminal.
pub fn shorten_sentence(s: &str) -> String {
    shorten_to(s, 400)
}

fn shorten_to(s: &str, max: usize) -> String {
    let clean = |c: char| if misleading(c) { '?' } else { c };
    if s.chars().count() <= max {
        s.chars().map(clean).collect()
    } else {
        let head: String = s.chars().take(max).map(clean).collect();
        format!("{head}… ({} bytes)", s.len())
    }
}
