//! Microsoft's timestamp formats, parsed into UTC.
//!
//! The entity APIs send ISO 8601 with `Z` and 0–7 fractional digits (`2024-11-06T07:14:57.835782Z`);
//! the export APIs send `2020-12-30 14:17:26` or `2020-11-03 10:13:34.8476880` with no zone (UTC
//! implied); some fields carry `+00:00`. This parser takes all of them without allocating, because it
//! runs twice per finding row on multi-million-row syncs.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{shown}' is not a timestamp Microsoft sends (expected like 2024-11-06T07:14:57Z, 2020-12-30 14:17:26 or 12/30/2020 14:17:26)"
)]
pub struct TimestampError {
    shown: String,
}

fn err(s: &str) -> TimestampError {
    TimestampError {
        shown: s.chars().take(40).collect(),
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses any timestamp format Microsoft's Defender APIs use into UTC.
///
/// ```
/// use rampart_model::parse_microsoft_timestamp;
/// let a = parse_microsoft_timestamp("2020-11-03 10:13:34.8476880").unwrap();
/// let b = parse_microsoft_timestamp("2020-11-03T10:13:34.847688Z").unwrap();
/// assert_eq!(a, b);
/// assert_eq!(parse_microsoft_timestamp("2019-10-08").unwrap().to_rfc3339(), "2019-10-08T00:00:00+00:00");
/// ```
pub fn parse_microsoft_timestamp(s: &str) -> Result<DateTime<Utc>, TimestampError> {
    let b = s.trim().as_bytes();
    // `12/30/2020 14:17:26`: month first, as .NET prints a date in the invariant culture; seen in
    // Microsoft's own examples and exports. Rare, so parsed the slow way.
    if b.len() >= 8 && b.iter().take(6).any(|c| *c == b'/') {
        return parse_month_first(s.trim()).ok_or_else(|| err(s));
    }
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(err(s));
    }
    let year = digits(&b[0..4]).ok_or_else(|| err(s))?;
    let month = digits(&b[5..7]).ok_or_else(|| err(s))?;
    let day = digits(&b[8..10]).ok_or_else(|| err(s))?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or_else(|| err(s))?;
    let rest = &b[10..];
    if rest.is_empty() || rest == b"Z" {
        return Ok(Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN)));
    }
    if rest.len() < 9 || !(rest[0] == b'T' || rest[0] == b' ') || rest[3] != b':' || rest[6] != b':'
    {
        return Err(err(s));
    }
    let hour = digits(&rest[1..3]).ok_or_else(|| err(s))?;
    let minute = digits(&rest[4..6]).ok_or_else(|| err(s))?;
    let second = digits(&rest[7..9]).ok_or_else(|| err(s))?;
    let mut tail = &rest[9..];
    let mut nanos: u32 = 0;
    if let Some(frac) = tail.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(err(s));
        }
        // Keep nanosecond precision; Microsoft sends at most 7 digits, ignore any beyond 9.
        let used = n.min(9);
        nanos = digits(&frac[..used]).ok_or_else(|| err(s))? * 10u32.pow((9 - used) as u32);
        tail = &frac[n..];
    }
    let offset_seconds: i64 = match tail {
        b"" | b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2]).ok_or_else(|| err(s))? as i64;
            let m = digits(&[*m1, *m2]).ok_or_else(|| err(s))? as i64;
            let v = h * 3600 + m * 60;
            if *sign == b'+' { v } else { -v }
        }
        _ => return Err(err(s)),
    };
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos).ok_or_else(|| err(s))?;
    let naive = NaiveDateTime::new(date, time) - chrono::Duration::seconds(offset_seconds);
    Ok(Utc.from_utc_datetime(&naive))
}

/// `MM/DD/YYYY`, then optionally ` HH:MM:SS` (with a fraction) or ` h:mm:ss AM|PM`; UTC implied.
fn parse_month_first(s: &str) -> Option<DateTime<Utc>> {
    // A four-digit year only: `12/30/20` is ambiguous, and `%Y` alone would read it as year 20.
    let date = s.split(' ').next()?;
    if date.rsplit('/').next().is_none_or(|y| y.len() != 4) {
        return None;
    }
    const FORMATS: [&str; 4] = [
        "%m/%d/%Y %H:%M:%S%.f",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %I:%M:%S %p",
        "%m/%d/%Y %H:%M",
    ];
    for f in FORMATS {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    let date = NaiveDate::parse_from_str(s, "%m/%d/%Y").ok()?;
    Some(Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_documented_shape_parses() {
        for s in [
            "2024-11-06T07:14:57.835782Z",
            "2024-03-11T08:21:44.1234567Z",
            "2025-06-02T06:58:10Z",
            "2020-12-30 14:17:26",
            "2020-11-03 10:13:34.8476880",
            "2021-01-30 11:31:12.271",
            "2021-05-11T00:00:00+00:00",
            "2019-10-08T00:00:00Z",
            "12/30/2020 14:17:26",
            "12/30/2020 2:17:26 PM",
            "1/5/2021 08:00:00.1234567",
            "12/30/2020",
        ] {
            assert!(parse_microsoft_timestamp(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn month_first_forms_mean_the_same_instant() {
        let want = parse_microsoft_timestamp("2020-12-30 14:17:26").unwrap();
        assert_eq!(
            parse_microsoft_timestamp("12/30/2020 14:17:26").unwrap(),
            want
        );
        assert_eq!(
            parse_microsoft_timestamp("12/30/2020 2:17:26 PM").unwrap(),
            want
        );
        for bad in [
            "30/12/2020 14:17:26",
            "12/30/20 14:17:26",
            "12/30/2020 25:00:00",
        ] {
            assert!(parse_microsoft_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn offsets_are_applied() {
        let t = parse_microsoft_timestamp("2021-05-11T02:00:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2021-05-11T00:00:00+00:00");
    }

    #[test]
    fn garbage_is_refused() {
        for s in [
            "",
            "yesterday",
            "2020-13-01 00:00:00",
            "2020-12-30x14:17:26",
            "2020-12-30 14:17",
        ] {
            assert!(parse_microsoft_timestamp(s).is_err(), "{s}");
        }
    }

    proptest! {
        #[test]
        fn export_and_iso_forms_agree(secs in 0i64..4_000_000_000, frac in 0u32..10_000_000) {
            let t = Utc.timestamp_opt(secs, frac * 100).single().unwrap();
            let export = format!("{}.{:07}", t.format("%Y-%m-%d %H:%M:%S"), frac);
            let iso = format!("{}.{:07}Z", t.format("%Y-%m-%dT%H:%M:%S"), frac);
            prop_assert_eq!(parse_microsoft_timestamp(&export).unwrap(), t);
            prop_assert_eq!(parse_microsoft_timestamp(&iso).unwrap(), t);
        }

        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse_microsoft_timestamp(&s);
        }
    }
}
