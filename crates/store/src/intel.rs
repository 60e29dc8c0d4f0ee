//! Threat intelligence kept for prioritisation (issue 14): CISA's Known Exploited Vulnerabilities
//! catalogue (`kev_entries`, migration 0011) and one `intel_sources` row per source saying where
//! the data came from and how current it is. The SQL here is written once for both backends.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use rampart_model::CveId;
use rampart_model::priority::{KevEntry, RansomwareUse};

use crate::common::{RowExt, clean_opt, corrupt};
use crate::error::Result;
use crate::store::Store;

/// The `intel_sources` key of the KEV catalogue.
pub const KEV_SOURCE: &str = "cisa-kev";

/// What Rampart knows about one intelligence source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IntelSource {
    pub source: String,
    /// Where it was last read from: a URL, or `file:` and the path of an imported file.
    pub url: Option<String>,
    /// The validators of the stored copy, for a conditional GET.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The last time the source was read and found current (a new copy, or 304 Not Modified).
    pub fetched_at: Option<DateTime<Utc>>,
    /// The last attempt, successful or not.
    pub attempted_at: Option<DateTime<Utc>>,
    pub catalog_version: Option<String>,
    pub date_released: Option<DateTime<Utc>>,
    /// Entries stored.
    pub count: u64,
    /// What went wrong at the last attempt; `None` after a success.
    pub last_error: Option<String>,
}

/// The KEV entries of these CVEs by CVE id, in one query (a page's worth at a time): how the
/// API, the portal and the exports say whether a CVE is listed.
pub async fn kev_index<'a, S: Store + ?Sized>(
    store: &S,
    cves: impl IntoIterator<Item = &'a CveId>,
) -> Result<HashMap<CveId, KevEntry>> {
    let mut wanted: Vec<CveId> = cves.into_iter().cloned().collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(store
        .kev_entries_for(&wanted)
        .await?
        .into_iter()
        .map(|e| (e.cve_id.clone(), e))
        .collect())
}

/// A newly read catalogue's header, stored with its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KevSnapshot {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub fetched_at: DateTime<Utc>,
    pub catalog_version: Option<String>,
    pub date_released: Option<DateTime<Utc>>,
}

/// An attempt that stored no new catalogue: the source was current (304, `error: None`) or the
/// attempt failed (`error: Some`). The stored catalogue is kept either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntelCheck<'a> {
    pub source: &'a str,
    pub url: &'a str,
    pub at: DateTime<Utc>,
    pub error: Option<&'a str>,
}

/// One row of `kev_entries` as the JSON parameter of the bulk insert (`json_each` on SQLite,
/// `jsonb_to_recordset` on PostgreSQL): one statement however long the catalogue.
#[derive(Serialize)]
struct KevRow<'a> {
    cve_id: &'a str,
    date_added: Option<String>,
    due_date: Option<String>,
    known_ransomware_campaign_use: &'static str,
    vendor_project: Option<std::borrow::Cow<'a, str>>,
    product: Option<std::borrow::Cow<'a, str>>,
    vulnerability_name: Option<std::borrow::Cow<'a, str>>,
    short_description: Option<std::borrow::Cow<'a, str>>,
    required_action: Option<std::borrow::Cow<'a, str>>,
    notes: Option<std::borrow::Cow<'a, str>>,
}

pub(crate) fn ransomware_text(r: RansomwareUse) -> &'static str {
    match r {
        RansomwareUse::Known => "Known",
        RansomwareUse::Unknown => "Unknown",
    }
}

/// The entries as one JSON array for the bulk insert.
pub(crate) fn kev_rows_json<'a>(entries: impl IntoIterator<Item = &'a KevEntry>) -> String {
    let rows: Vec<KevRow<'_>> = entries
        .into_iter()
        .map(|e| KevRow {
            cve_id: e.cve_id.as_str(),
            date_added: e.date_added.map(|d| d.to_string()),
            due_date: e.due_date.map(|d| d.to_string()),
            known_ransomware_campaign_use: ransomware_text(e.known_ransomware_campaign_use),
            vendor_project: clean_opt(&e.vendor_project),
            product: clean_opt(&e.product),
            vulnerability_name: clean_opt(&e.vulnerability_name),
            short_description: clean_opt(&e.short_description),
            required_action: clean_opt(&e.required_action),
            notes: clean_opt(&e.notes),
        })
        .collect();
    // Serialising strings, dates and enums cannot fail.
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned())
}

/// The bulk insert of the catalogue, one statement however long: `$1` is [`kev_rows_json`].
pub(crate) fn kev_insert_sql(backend: crate::types::Backend) -> &'static str {
    match backend {
        crate::types::Backend::Sqlite => {
            "INSERT INTO kev_entries (cve_id, date_added, due_date, known_ransomware_campaign_use, \
             vendor_project, product, vulnerability_name, short_description, required_action, notes) \
             SELECT json_extract(value, '$.cve_id'), json_extract(value, '$.date_added'), \
             json_extract(value, '$.due_date'), json_extract(value, '$.known_ransomware_campaign_use'), \
             json_extract(value, '$.vendor_project'), json_extract(value, '$.product'), \
             json_extract(value, '$.vulnerability_name'), json_extract(value, '$.short_description'), \
             json_extract(value, '$.required_action'), json_extract(value, '$.notes') \
             FROM json_each($1)"
        }
        crate::types::Backend::Postgres => {
            "INSERT INTO kev_entries (cve_id, date_added, due_date, known_ransomware_campaign_use, \
             vendor_project, product, vulnerability_name, short_description, required_action, notes) \
             SELECT cve_id, date_added, due_date, known_ransomware_campaign_use, vendor_project, \
             product, vulnerability_name, short_description, required_action, notes \
             FROM jsonb_to_recordset($1::jsonb) AS x(cve_id text, date_added date, due_date date, \
             known_ransomware_campaign_use text, vendor_project text, product text, \
             vulnerability_name text, short_description text, required_action text, notes text)"
        }
    }
}

pub(crate) const KEV_COLUMNS: &str = "cve_id, date_added, due_date, known_ransomware_campaign_use, \
     vendor_project, product, vulnerability_name, short_description, required_action, notes";

pub(crate) const SOURCE_COLUMNS: &str = "source, url, etag, last_modified, fetched_at, attempted_at, \
     catalog_version, date_released, count, last_error";

pub(crate) fn decode_kev(r: &impl RowExt) -> Result<KevEntry> {
    let cve = r.text("cve_id")?;
    let ransomware = r.text("known_ransomware_campaign_use")?;
    Ok(KevEntry {
        cve_id: cve.parse().map_err(|_| corrupt("KEV CVE id", &cve))?,
        vendor_project: r.opt_text("vendor_project")?,
        product: r.opt_text("product")?,
        vulnerability_name: r.opt_text("vulnerability_name")?,
        date_added: r.opt_date("date_added")?,
        short_description: r.opt_text("short_description")?,
        required_action: r.opt_text("required_action")?,
        due_date: r.opt_date("due_date")?,
        known_ransomware_campaign_use: if ransomware == "Known" {
            RansomwareUse::Known
        } else {
            RansomwareUse::Unknown
        },
        notes: r.opt_text("notes")?,
        cwes: None,
    })
}

pub(crate) fn decode_source(r: &impl RowExt) -> Result<IntelSource> {
    Ok(IntelSource {
        source: r.text("source")?,
        url: r.opt_text("url")?,
        etag: r.opt_text("etag")?,
        last_modified: r.opt_text("last_modified")?,
        fetched_at: r.opt_ts("fetched_at")?,
        attempted_at: r.opt_ts("attempted_at")?,
        catalog_version: r.opt_text("catalog_version")?,
        date_released: r.opt_ts("date_released")?,
        count: r.int("count")?.max(0) as u64,
        last_error: r.opt_text("last_error")?,
    })
}
