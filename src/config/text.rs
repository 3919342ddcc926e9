//! Text shown to people: what misleads a reader (controls, text-direction overrides) and
//! shortening what a client sent before it is printed, and times as RFC 3339.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// A time as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_795_955_445), "2026-11-29T12:30:45.000Z");
    }
}
