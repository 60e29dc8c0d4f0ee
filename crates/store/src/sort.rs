//! Sort orders of the asset listing, and their keyset cursors.
//!
//! A sorted page is one ordered, limited scan of an index on (sort key, id) (migration 0004): the
//! cursor carries the last row's sort key and id, and the next page starts strictly after that
//! pair. Pages stay as fast at the 20,000th asset as at the first, and a row that moves while a
//! client pages (a sync changed its exposure) is neither lost nor repeated within one order.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::common::{Arg, Dialect, RowExt, micros};
use crate::error::{Result, StoreError};
use crate::types::StoredAsset;

/// What an asset listing is sorted by. Ties are broken by the asset id, in the same direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetSortKey {
    /// Rampart's id: the order assets were first stored in.
    #[default]
    Id,
    /// The name (case-insensitive, byte order), or the source id when there is no name.
    Name,
    /// The source's last-seen time (Rampart's last observation when the source gives none).
    LastSeen,
    /// Microsoft's exposure level: None < Low < Medium < High (unknown values first).
    Exposure,
    /// Microsoft's risk score: None < Informational < Low < Medium < High (unknown values first).
    Risk,
    /// Open findings, critical first: by open critical, then open high, then all open findings,
    /// as of the last finished run of the asset's integration.
    OpenFindings,
}

impl AssetSortKey {
    pub const ALL: [AssetSortKey; 6] = [
        AssetSortKey::Id,
        AssetSortKey::Name,
        AssetSortKey::LastSeen,
        AssetSortKey::Exposure,
        AssetSortKey::Risk,
        AssetSortKey::OpenFindings,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AssetSortKey::Id => "id",
            AssetSortKey::Name => "name",
            AssetSortKey::LastSeen => "last_seen",
            AssetSortKey::Exposure => "exposure",
            AssetSortKey::Risk => "risk",
            AssetSortKey::OpenFindings => "open_findings",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The SQL of the key, exactly as the indexes of migration 0004 spell it (an expression
    /// index is used only for the same expression).
    fn expr(self, d: Dialect) -> String {
        match self {
            AssetSortKey::Id => "a.id".into(),
            AssetSortKey::Name => format!("lower(COALESCE(a.name, a.source_id)){}", d.collate_c),
            AssetSortKey::LastSeen => "COALESCE(a.last_seen, a.last_observed)".into(),
            AssetSortKey::Exposure => "CASE lower(a.exposure_level) WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 WHEN 'none' THEN 0 ELSE -1 END".into(),
            AssetSortKey::Risk => "CASE lower(a.risk_score) WHEN 'high' THEN 4 WHEN 'medium' THEN 3 WHEN 'low' THEN 2 WHEN 'informational' THEN 1 WHEN 'none' THEN 0 ELSE -1 END".into(),
            AssetSortKey::OpenFindings => "a.open_rank".into(),
        }
    }
}

/// A sort order: a key and a direction. Written `name` (ascending) or `-name` (descending) in
/// query strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AssetSort {
    pub key: AssetSortKey,
    pub descending: bool,
}

impl AssetSort {
    pub fn asc(key: AssetSortKey) -> Self {
        Self {
            key,
            descending: false,
        }
    }

    pub fn desc(key: AssetSortKey) -> Self {
        Self {
            key,
            descending: true,
        }
    }

    /// `name`, `-last_seen`, ...; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s.strip_prefix('-') {
            Some(k) => AssetSortKey::parse(k).map(Self::desc),
            None => AssetSortKey::parse(s).map(Self::asc),
        }
    }

    /// The other direction of the same key.
    pub fn reversed(self) -> Self {
        Self {
            key: self.key,
            descending: !self.descending,
        }
    }
}

impl fmt::Display for AssetSort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.descending {
            f.write_str("-")?;
        }
        f.write_str(self.key.as_str())
    }
}

/// A sort key's value as a cursor carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyValue {
    /// The id order has no key beyond the id.
    None,
    Int(i64),
    /// Microseconds since 1970 (times are kept to the microsecond on both backends).
    Time(i64),
    Text(String),
}

/// Where a sorted page ended: the order, the last row's sort key and its id. Opaque to clients:
/// [`SortCursor::encode`] gives URL-safe text, [`SortCursor::decode`] checks it belongs to the
/// order asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortCursor {
    sort: AssetSort,
    value: KeyValue,
    id: i64,
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

impl SortCursor {
    /// The id order's cursor after asset `id`.
    pub fn after_id(id: i64) -> Self {
        Self {
            sort: AssetSort::default(),
            value: KeyValue::None,
            id,
        }
    }

    /// The order this cursor belongs to.
    pub fn sort(&self) -> AssetSort {
        self.sort
    }

    /// URL-safe text. The id order's cursor is the plain id, as it always was.
    pub fn encode(&self) -> String {
        let value = match &self.value {
            KeyValue::None if self.sort == AssetSort::default() => return self.id.to_string(),
            KeyValue::None => String::new(),
            KeyValue::Int(v) | KeyValue::Time(v) => v.to_string(),
            KeyValue::Text(t) => hex(t),
        };
        format!("{}.{}.{value}", self.sort, self.id)
    }

    /// Reads a cursor given back by a client for `sort`. A cursor of another order, or text that
    /// is no cursor, is `InvalidInput` (the client should start again from the first page).
    pub fn decode(text: &str, sort: AssetSort) -> Result<Self> {
        let bad = || {
            StoreError::InvalidInput(format!(
                "'{}' is not a cursor of the sort order {sort}: pass the next_cursor of the previous page, with the same sort, or start from the first page",
                text.chars().take(60).collect::<String>()
            ))
        };
        // Ids start at 1, ranks are -1 (unknown) or more, times are real times: anything else was
        // not handed out by a page, and reading it would silently restart the listing.
        let positive = |id: &str| id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(bad);
        if sort.key == AssetSortKey::Id && !sort.descending {
            let id = positive(text)?;
            return Ok(Self {
                sort,
                value: KeyValue::None,
                id,
            });
        }
        let mut parts = text.splitn(3, '.');
        let (Some(order), Some(id), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if AssetSort::parse(order) != Some(sort) {
            return Err(bad());
        }
        let id = positive(id)?;
        let int = || value.parse::<i64>().map_err(|_| bad());
        let rank = || int().and_then(|v| if v >= -1 { Ok(v) } else { Err(bad()) });
        let value = match sort.key {
            AssetSortKey::Id if value.is_empty() => KeyValue::None,
            AssetSortKey::Id => return Err(bad()),
            AssetSortKey::Name => KeyValue::Text(unhex(value).ok_or_else(bad)?),
            AssetSortKey::LastSeen => KeyValue::Time(int().and_then(|us| {
                DateTime::<Utc>::from_timestamp_micros(us)
                    .map(|_| us)
                    .ok_or_else(bad)
            })?),
            AssetSortKey::Exposure | AssetSortKey::Risk | AssetSortKey::OpenFindings => {
                KeyValue::Int(rank()?)
            }
        };
        Ok(Self { sort, value, id })
    }

    /// The cursor after `row`, whose `sort_key` column the sorted query selected.
    pub(crate) fn after_row(sort: AssetSort, row: &impl RowExt, id: i64) -> Result<Self> {
        let value = match sort.key {
            AssetSortKey::Id => KeyValue::None,
            AssetSortKey::Name => KeyValue::Text(row.text("sort_key")?),
            AssetSortKey::LastSeen => KeyValue::Time(micros(row.ts("sort_key")?)),
            _ => KeyValue::Int(row.int("sort_key")?),
        };
        Ok(Self { sort, value, id })
    }

    fn arg(&self) -> Option<Arg> {
        match &self.value {
            KeyValue::None => None,
            KeyValue::Int(v) => Some(Arg::Int(*v)),
            KeyValue::Time(v) => Some(Arg::Time(
                DateTime::<Utc>::from_timestamp_micros(*v).unwrap_or_default(),
            )),
            KeyValue::Text(t) => Some(Arg::Text(t.clone())),
        }
    }
}

/// Open and fixed findings of an asset, as of the last finished run of its integration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFindings {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    /// All open findings, with or without a severity.
    pub total: u64,
    pub fixed: u64,
}

/// An asset of a sorted listing, with its findings summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedAsset {
    pub stored: StoredAsset,
    pub findings: OpenFindings,
}

pub(crate) fn decode_open_findings(r: &impl RowExt) -> Result<OpenFindings> {
    let n = |c: &str| r.int(c).map(crate::common::as_u64);
    Ok(OpenFindings {
        critical: n("open_critical")?,
        high: n("open_high")?,
        medium: n("open_medium")?,
        low: n("open_low")?,
        total: n("open_total")?,
        fixed: n("fixed_total")?,
    })
}

/// A sorted page from the rows of `assets_sorted_query` (one more than `limit` when there is a
/// next page).
pub(crate) fn sorted_page(
    rows: &[impl RowExt],
    names: &crate::common::IntegrationNames,
    sort: AssetSort,
    limit: u32,
) -> Result<crate::types::Page<ListedAsset, SortCursor>> {
    let limit = limit.clamp(1, 100_000) as usize;
    let mut items = Vec::with_capacity(rows.len().min(limit));
    let mut next = None;
    for (i, r) in rows.iter().enumerate() {
        if i == limit {
            break;
        }
        let stored = crate::common::decode_asset(r, names)?;
        if i + 1 == limit && rows.len() > limit {
            next = Some(SortCursor::after_row(sort, r, stored.id)?);
        }
        items.push(ListedAsset {
            stored,
            findings: decode_open_findings(r)?,
        });
    }
    Ok(crate::types::Page { items, next })
}

/// A cursor handed to a listing of another order.
pub(crate) fn check_cursor(sort: AssetSort, after: Option<&SortCursor>) -> Result<()> {
    match after {
        Some(c) if c.sort != sort => Err(StoreError::InvalidInput(format!(
            "the cursor belongs to the sort order {}, not {sort}: start again from the first page",
            c.sort
        ))),
        _ => Ok(()),
    }
}

/// The columns a sorted listing adds to `asset_select!`, and its ORDER BY.
pub(crate) fn sorted_columns(d: Dialect, sort: AssetSort) -> String {
    format!(
        ", a.open_critical, a.open_high, a.open_medium, a.open_low, a.open_total, a.fixed_total, {} AS sort_key",
        sort.key.expr(d)
    )
}

/// The keyset condition that starts a page after `cursor` (`None` for the id order's first key
/// only), as SQL with placeholders pushed to `args`.
///
/// Written `key >= $v AND (key > $v OR id > $id)` rather than as a row-value comparison: SQLite
/// seeks the (key, id) index with the first form and scans it from the start with the second.
pub(crate) fn keyset_condition(
    d: Dialect,
    cursor: &SortCursor,
    push: &mut impl FnMut(Arg) -> String,
) -> String {
    let (ge, gt) = if cursor.sort.descending {
        ("<=", "<")
    } else {
        (">=", ">")
    };
    let pid = push(Arg::Int(cursor.id));
    match cursor.arg() {
        None => format!("a.id {gt} {pid}"),
        Some(v) => {
            let expr = cursor.sort.key.expr(d);
            let pv = push(v);
            format!("{expr} {ge} {pv} AND ({expr} {gt} {pv} OR a.id {gt} {pid})")
        }
    }
}

pub(crate) fn order_by(d: Dialect, sort: AssetSort) -> String {
    let dir = if sort.descending { " DESC" } else { "" };
    match sort.key {
        AssetSortKey::Id => format!(" ORDER BY a.id{dir}"),
        k => format!(" ORDER BY {}{dir}, a.id{dir}", k.expr(d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_orders_read_and_print_alike() {
        for key in AssetSortKey::ALL {
            for sort in [AssetSort::asc(key), AssetSort::desc(key)] {
                assert_eq!(AssetSort::parse(&sort.to_string()), Some(sort));
            }
        }
        assert_eq!(AssetSort::parse("size"), None);
        assert_eq!(AssetSort::parse("--name"), None);
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_orders() {
        let name = AssetSort::asc(AssetSortKey::Name);
        let c = SortCursor {
            sort: name,
            value: KeyValue::Text("hôst.1 <x>".into()),
            id: 42,
        };
        let text = c.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        );
        assert_eq!(SortCursor::decode(&text, name).unwrap(), c);
        assert!(SortCursor::decode(&text, name.reversed()).is_err());
        assert!(SortCursor::decode(&text, AssetSort::asc(AssetSortKey::Risk)).is_err());
        // The id order keeps plain ids as cursors.
        let id = SortCursor::decode("17", AssetSort::default()).unwrap();
        assert_eq!(id.encode(), "17");
        for junk in ["", "x", "name.1", "name.x.00", "name.1.zz", "-risk.1.abc"] {
            assert!(SortCursor::decode(junk, name).is_err(), "{junk}");
        }
        assert!(SortCursor::decode("-risk.1.abc", AssetSort::desc(AssetSortKey::Risk)).is_err());
        let back = AssetSort::desc(AssetSortKey::Id);
        let c = SortCursor {
            sort: back,
            value: KeyValue::None,
            id: 9,
        };
        assert_eq!(SortCursor::decode(&c.encode(), back).unwrap(), c);
        assert!(SortCursor::decode("9", back).is_err());
    }
}
