//! Simulated time: 6-hour TVM snapshots ("ticks") and Microsoft's two timestamp formats.
//!
//! Machine and vulnerability entities use ISO 8601 with a `Z` and 0–7 fractional digits; export records
//! use `yyyy-MM-dd HH:mm:ss[.fff|.fffffff]` with no zone. Both are written by hand because the export
//! paths format two timestamps per row, millions of times.

use chrono::{DateTime, TimeZone, Utc};

/// One TVM snapshot every six hours (DOC).
pub(crate) const TICK_SECS: i64 = 6 * 3600;
const DAY: i64 = 86_400;

/// A UTC instant with 100 ns precision, like .NET's `DateTime`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ts {
    pub(crate) secs: i64,
    pub(crate) nanos: u32,
}

impl Ts {
    pub(crate) const fn at(secs: i64) -> Ts {
        Ts { secs, nanos: 0 }
    }

    pub(crate) fn to_chrono(self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.secs, self.nanos)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    pub(crate) fn from_chrono(t: DateTime<Utc>) -> Ts {
        Ts {
            secs: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() / 100 * 100,
        }
    }
}

/// Maps ticks to instants. Tick 0 is `start`; ticks may be negative (the tenant's history before start).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    pub(crate) start: i64,
}

impl Clock {
    pub(crate) fn at(&self, tick: i64) -> i64 {
        self.start.saturating_add(tick.saturating_mul(TICK_SECS))
    }

    /// The snapshot bucket an instant falls in.
    pub(crate) fn bucket_of(&self, secs: i64) -> i64 {
        (secs - self.start).div_euclid(TICK_SECS)
    }

    /// `2026-11-01/0600/`: the `TimePath` of Microsoft's export skiptokens and blob paths.
    pub(crate) fn time_path(&self, tick: i64) -> String {
        let (y, m, d, hh, mm, _) = civil(self.at(tick));
        format!("{y:04}-{m:02}-{d:02}/{hh:02}{mm:02}/")
    }

    /// The tick of a `TimePath`, if it names one of this clock's snapshots exactly.
    pub(crate) fn parse_time_path(&self, path: &str) -> Option<i64> {
        let b = path.as_bytes();
        if b.len() != 16 || b[4] != b'-' || b[7] != b'-' || b[10] != b'/' || b[15] != b'/' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let s = path.get(r)?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
        let time = chrono::NaiveTime::from_hms_opt(num(11..13)?, num(13..15)?, 0)?;
        let secs = date.and_time(time).and_utc().timestamp();
        let delta = secs - self.start;
        (delta % TICK_SECS == 0).then_some(delta / TICK_SECS)
    }
}

/// `(year, month, day, hour, minute, second)` of a Unix time (Howard Hinnant's civil-from-days).
pub(crate) fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(DAY);
    let rem = secs.rem_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

fn push2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

fn push_date_time(out: &mut Vec<u8>, secs: i64, sep: u8) {
    let (y, m, d, hh, mm, ss) = civil(secs);
    let y = y.clamp(0, 9999) as u32;
    push2(out, y / 100);
    push2(out, y % 100);
    out.push(b'-');
    push2(out, m);
    out.push(b'-');
    push2(out, d);
    out.push(sep);
    push2(out, hh);
    out.push(b':');
    push2(out, mm);
    out.push(b':');
    push2(out, ss);
}

fn push_fraction(out: &mut Vec<u8>, ticks100ns: u32, digits: usize) {
    if digits == 0 {
        return;
    }
    out.push(b'.');
    let mut buf = [b'0'; 7];
    let mut v = ticks100ns;
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..digits]);
}

/// Export format: `2020-11-03 10:13:34`, `…34.847` or `…34.8476880` (none, 3 or 7 digits).
pub(crate) fn write_export_ts(out: &mut Vec<u8>, ts: Ts) {
    push_date_time(out, ts.secs, b' ');
    let t = ts.nanos / 100;
    let digits = if t == 0 {
        0
    } else if t.is_multiple_of(10_000) {
        3
    } else {
        7
    };
    push_fraction(out, t, digits);
}

/// Entity format: `2024-11-06T07:14:57.835782Z`, trailing zeros of the fraction trimmed (0–7 digits).
pub(crate) fn write_iso_ts(out: &mut Vec<u8>, ts: Ts) {
    push_date_time(out, ts.secs, b'T');
    let t = ts.nanos / 100;
    let mut digits = 7;
    let mut v = t;
    while digits > 0 && v.is_multiple_of(10) {
        v /= 10;
        digits -= 1;
    }
    push_fraction(out, t, digits);
    out.push(b'Z');
}

pub(crate) fn export_ts(ts: Ts) -> String {
    let mut out = Vec::with_capacity(28);
    write_export_ts(&mut out, ts);
    String::from_utf8(out).unwrap_or_default()
}

pub(crate) fn iso_ts(ts: Ts) -> String {
    let mut out = Vec::with_capacity(30);
    write_iso_ts(&mut out, ts);
    String::from_utf8(out).unwrap_or_default()
}

/// `2026-11-01 00:00:00Z`: the `timestamp` of Entra error bodies.
pub(crate) fn entra_ts(secs: i64) -> String {
    let mut out = Vec::with_capacity(20);
    push_date_time(&mut out, secs, b' ');
    out.push(b'Z');
    String::from_utf8(out).unwrap_or_default()
}

/// Wall-clock Unix seconds (tokens and SAS URLs live in real time, data in simulated time).
pub(crate) fn wall_secs() -> i64 {
    Utc::now().timestamp()
}

/// Serde helpers that print chrono instants in Microsoft's formats.
pub(crate) mod serde_ts {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    use super::Ts;

    pub(crate) fn iso<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::iso_ts(Ts::from_chrono(*t)))
    }

    pub(crate) fn iso_opt<S: Serializer>(
        t: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => iso(t, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn export<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::export_ts(Ts::from_chrono(*t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_microsoft() {
        let t = Utc
            .with_ymd_and_hms(2020, 11, 3, 10, 13, 34)
            .unwrap()
            .timestamp();
        assert_eq!(export_ts(Ts::at(t)), "2020-11-03 10:13:34");
        assert_eq!(
            export_ts(Ts {
                secs: t,
                nanos: 847_000_000
            }),
            "2020-11-03 10:13:34.847"
        );
        assert_eq!(
            export_ts(Ts {
                secs: t,
                nanos: 847_688_000
            }),
            "2020-11-03 10:13:34.8476880"
        );
        assert_eq!(
            iso_ts(Ts {
                secs: t,
                nanos: 500_000_000
            }),
            "2020-11-03T10:13:34.5Z"
        );
        assert_eq!(
            iso_ts(Ts {
                secs: t,
                nanos: 835_782_000
            }),
            "2020-11-03T10:13:34.835782Z"
        );
        assert_eq!(iso_ts(Ts::at(t)), "2020-11-03T10:13:34Z");
        assert_eq!(entra_ts(t), "2020-11-03 10:13:34Z");
        for secs in [-86_400 * 800, 0, 1_700_000_000, 4_102_444_800] {
            let want = Utc
                .timestamp_opt(secs, 0)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            assert_eq!(export_ts(Ts::at(secs)), want);
        }
    }

    #[test]
    fn time_paths_round_trip() {
        let start = Utc
            .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
            .unwrap()
            .timestamp();
        let clock = Clock { start };
        assert_eq!(clock.time_path(0), "2026-11-01/0000/");
        assert_eq!(clock.time_path(3), "2026-11-01/1800/");
        for tick in [-60, -1, 0, 1, 5, 1000] {
            assert_eq!(clock.parse_time_path(&clock.time_path(tick)), Some(tick));
        }
        assert_eq!(clock.parse_time_path("2026-11-01/0100/"), None);
        assert_eq!(clock.parse_time_path("2026-13-01/0000/"), None);
        assert_eq!(clock.parse_time_path("2026-11-01/00000"), None);
        assert_eq!(clock.parse_time_path("+026-11-01/0000/"), None);
    }
}
