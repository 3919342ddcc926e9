//! Time in the configuration: durations with their units (`90s`, `30m`, `8h`, `7d`) and
//! moments as RFC 3339 UTC (`2026-12-02T18:00:00Z`), parsed and printed in one place for
//! the keys that hold them, the command line and token lifetimes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::shorten;

/// Parses a duration such as `90`, `90s`, `30m`, `1h`, `7d` (a bare number is seconds: the
/// command line's timeouts).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let not = || {
        format!(
            "'{}' is not a duration; use e.g. 90s, 30m, 1h, 7d",
            shorten(s)
        )
    };
    let n: u64 = digits.parse().map_err(|_| not())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86400),
        _ => None,
    }
    .ok_or_else(not)?;
    Ok(Duration::from_secs(secs))
}

/// Parses a lifetime: a duration with its unit, never zero. A bare number is refused: `8`
/// meant 8 seconds to nobody who typed it. `what` names it in the refusal ("a token").
pub fn parse_lifetime(s: &str, what: &str) -> Result<Duration, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let zero = || format!("{what} must last some time: at least 1s");
    if digits > 0 && t.bytes().take(digits).all(|b| b == b'0') {
        return Err(zero());
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "'{t}' has no unit; write {t}s, {t}m, {t}h or {t}d",
            t = shorten(t)
        ));
    }
    let d = parse_duration(t)?;
    if d.is_zero() {
        return Err(zero());
    }
    if d > MAX_LIFETIME {
        return Err(format!("{what} may last at most 36500d (100 years)"));
    }
    Ok(d)
}

/// The longest lifetime anything here may have: a bound that keeps every moment computed
/// from one (a window's end, a session's limit) far inside what the clock can hold.
const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A duration as the configuration prints it: the largest unit that divides it (`8h`,
/// `90m`, `45s`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// Parses a moment in RFC 3339, in UTC: `2026-12-02T18:00:00Z` (fractions of a second and
/// `+00:00` accepted; another offset is refused, so that every file reads the same anywhere).
pub fn parse_utc(s: &str) -> Result<SystemTime, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "'{}' is not a UTC time in RFC 3339 form, e.g. 2026-12-02T18:00:00Z",
            shorten(t)
        )
    };
    let (body, zone) = if let Some(b) = t.strip_suffix('Z').or_else(|| t.strip_suffix('z')) {
        (b, "Z")
    } else if let Some(b) = t.strip_suffix("+00:00") {
        (b, "Z")
    } else {
        (t, "")
    };
    if zone.is_empty() {
        return Err(format!(
            "{}; the time must be in UTC (end it with Z)",
            bad()
        ));
    }
    let (date, time) = body.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let (time, fraction) = match time.split_once('.') {
        Some((t, f)) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            (t, f)
        }
        Some(_) => return Err(bad()),
        None => (time, ""),
    };
    let field = |s: &str, len: usize| -> Result<u32, String> {
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let d: Vec<&str> = date.split('-').collect();
    let h: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || h.len() != 3 {
        return Err(bad());
    }
    let (year, month, day) = (field(d[0], 4)?, field(d[1], 2)?, field(d[2], 2)?);
    let (hour, minute, second) = (field(h[0], 2)?, field(h[1], 2)?, field(h[2], 2)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if year < 1970
        || !(1..=12).contains(&month)
        || day == 0
        || day > month_days[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days as u64 * 86_400 + u64::from(hour * 3600 + minute * 60 + second);
    let nanos: u32 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().map_err(|_| bad())?
    };
    Ok(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// A moment as the configuration prints it: RFC 3339 UTC to the second.
pub fn format_utc(t: SystemTime) -> String {
    let full = super::rfc3339(t);
    // `...:SS.mmmZ` → `...:SSZ`
    match full.rsplit_once('.') {
        Some((seconds, _)) => format!("{seconds}Z"),
        None => full,
    }
}

/// Days since 1970-01-01 of a date: Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_round_trip_and_everything_else_is_refused() {
        for (text, secs) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-12-02T18:00:00Z", 1_796_234_400),
            ("2024-02-29T23:59:59Z", 1_709_251_199),
            ("2000-03-01T00:00:00+00:00", 951_868_800),
        ] {
            let t = parse_utc(text).unwrap();
            assert_eq!(
                t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
                secs,
                "{text}"
            );
            if text.ends_with('Z') {
                assert_eq!(format_utc(t), text);
            }
        }
        let t = parse_utc("2026-12-02T18:00:00.25Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().subsec_millis(), 250);
        for bad in [
            "",
            "tomorrow",
            "2026-12-02T18:00:00",
            "2026-12-02T18:00:00+01:00",
            "2026-13-02T18:00:00Z",
            "2026-02-29T18:00:00Z",
            "2026-12-02T24:00:00Z",
            "2026-12-2T18:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-12-02T18:00:00.Z",
        ] {
            assert!(parse_utc(bad).is_err(), "{bad}");
        }
        assert!(
            parse_utc("2026-12-02T18:00:00+01:00")
                .unwrap_err()
                .contains("UTC")
        );
    }

    #[test]
    fn lifetimes_need_a_unit_and_some_length() {
        assert_eq!(
            parse_lifetime("8h", "a session").unwrap(),
            Duration::from_secs(28_800)
        );
        assert!(parse_lifetime("8", "x").unwrap_err().contains("no unit"));
        assert!(
            parse_lifetime("0m", "a session")
                .unwrap_err()
                .contains("a session must last")
        );
        assert!(parse_lifetime("8y", "x").is_err());
        assert!(
            parse_lifetime("9999999999999999999s", "x")
                .unwrap_err()
                .contains("at most")
        );
        assert_eq!(format_duration(Duration::from_secs(28_800)), "8h");
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(2 * 86_400)), "2d");
    }
}
