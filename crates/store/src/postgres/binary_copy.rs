//! Rows in PostgreSQL's binary `COPY` format
//! (<https://www.postgresql.org/docs/current/sql-copy.html#SQL-COPY-BINARY-FORMAT>), for a first
//! load's `COPY … FROM STDIN (FORMAT binary)` into `findings`.
//!
//! Why not the text format: a finding's row holds seven timestamps, which the text format has the
//! client print and the server parse back; here each is eight bytes, as are the other numbers. Why
//! no crate: the binary writers there are (`tokio-postgres`'s `BinaryCopyInWriter`) write into
//! their own driver's connection, not into sqlx's `COPY`; the format itself is a header, then per
//! row a field count and each field as a length and its bytes, and a trailer.
//!
//! Each value is written with the type of its column (`BIGINT` in eight bytes, `SMALLINT` in two,
//! and so on: [`CopyRow`] names the type of each of a finding's columns). A value of the wrong
//! width is refused by the server (`insufficient data left in message`), never stored wrong.

use chrono::{DateTime, Utc};

use super::bulk::CopyRow;
use crate::common::clean;

/// The signature, flags (no OIDs) and header extension length that open every binary copy.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// PostgreSQL's timestamps count microseconds from 2000-01-01 00:00:00 UTC.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A batch of rows being written.
#[derive(Debug)]
pub(crate) struct BinaryCopy {
    buf: Vec<u8>,
    /// Where the current row's field count goes, and how many fields it has so far.
    row: Option<(usize, i16)>,
}

impl Default for BinaryCopy {
    fn default() -> Self {
        Self::with_capacity(HEADER.len())
    }
}

impl BinaryCopy {
    /// A batch with room for `bytes` (an estimate of its size): filled without being copied into
    /// ever larger buffers as it grows.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(HEADER.len()));
        buf.extend_from_slice(HEADER);
        Self { buf, row: None }
    }

    /// Starts the next field of the current row (starting the row if needed).
    fn field(&mut self) {
        match &mut self.row {
            Some((_, fields)) => *fields += 1,
            None => {
                self.row = Some((self.buf.len(), 1));
                self.buf.extend_from_slice(&0i16.to_be_bytes());
            }
        }
    }

    fn value(&mut self, bytes: &[u8]) {
        self.field();
        // A field's length is an `int32`; no value of a finding comes near 2 GB (the store's
        // texts are bounded far below that), and the server refuses a wrong length.
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn null(&mut self) {
        self.field();
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// A `BIGINT`.
    pub(crate) fn int8(&mut self, v: i64) {
        self.value(&v.to_be_bytes());
    }

    /// A `TEXT`, cleaned of NULs as every text the store keeps.
    pub(crate) fn text(&mut self, s: &str) {
        self.value(clean(s).as_bytes());
    }

    /// Ends the current row: its field count is written in front of it.
    pub(crate) fn end_row(&mut self) {
        if let Some((at, fields)) = self.row.take() {
            self.buf[at..at + 2].copy_from_slice(&fields.to_be_bytes());
        }
    }

    /// The batch with its trailer.
    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        self.end_row();
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

impl CopyRow for BinaryCopy {
    fn opt_int8(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.int8(v),
            None => self.null(),
        }
    }

    /// A `SMALLINT`; `None` (or a value out of its range, which no caller has) is NULL.
    fn opt_int2(&mut self, v: Option<i64>) {
        match v.and_then(|v| i16::try_from(v).ok()) {
            Some(v) => self.value(&v.to_be_bytes()),
            None => self.null(),
        }
    }

    /// A `DOUBLE PRECISION`; NULL unless finite (as the store keeps scores).
    fn opt_float8(&mut self, v: Option<f64>) {
        match v.filter(|v| v.is_finite()) {
            Some(v) => self.value(&v.to_bits().to_be_bytes()),
            None => self.null(),
        }
    }

    fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    /// A `TIMESTAMPTZ`, to the microsecond (as the store keeps every time).
    fn opt_timestamp(&mut self, t: Option<DateTime<Utc>>) {
        match t {
            Some(t) => self.int8(t.timestamp_micros().saturating_sub(POSTGRES_EPOCH_MICROS)),
            None => self.null(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_row_is_its_field_count_then_each_field_as_length_and_bytes() {
        let mut b = BinaryCopy::default();
        b.int8(1);
        b.opt_int2(Some(3));
        b.null();
        b.text("a\0b");
        b.opt_timestamp(Some(Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 1).unwrap()));
        b.end_row();
        let bytes = b.into_bytes();
        let mut want = HEADER.to_vec();
        want.extend_from_slice(&5i16.to_be_bytes());
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&1i64.to_be_bytes());
        want.extend_from_slice(&2i32.to_be_bytes());
        want.extend_from_slice(&3i16.to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&5i32.to_be_bytes());
        want.extend_from_slice("a\u{FFFD}b".as_bytes());
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&1_000_000i64.to_be_bytes());
        want.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(bytes, want);
        assert_eq!(HEADER.len(), 19);
    }
}
