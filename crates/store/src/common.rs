//! What both backends share: input preparation (dedupe, NUL cleaning), value conversions, row
//! decoding, the SQL of the reads, and the words of the errors. Keeping it here is what makes the
//! two backends behave the same.

use rampart_model::RunId;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use rampart_model::{
    Asset, AssetKind, AssetStatus, ClientId, Cloud, CveId, EntityCounts, Finding, FindingKey,
    FindingStatus, Integration, IntegrationId, IntegrationName, OddRecords, Product, RunStatus,
    SecretHint, Severity, SyncRun, TenantId, Verdict, Vulnerability, WorkspaceId,
};

pub(crate) use crate::db::{Arg, Dialect, Sql};
use crate::error::{Result, StoreError};
use crate::sort::{
    AssetSort, AssetSortKey, SortCursor, keyset_condition, order_by, sorted_columns,
};
use crate::store::STALE_RUN_AFTER;
use crate::types::*;
use crate::workspace::Visibility;
use rampart_model::priority::SlaStatus;

// ---- input preparation ---------------------------------------------------------------------------

/// PostgreSQL cannot store NUL in text; SQLite can. Both backends replace it with U+FFFD so that
/// they store the same thing and a hostile record cannot fail a whole batch.
pub(crate) fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

pub(crate) fn clean_opt(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(clean)
}

/// NaN and infinities are not numbers a score can have, and the backends disagree on storing
/// them (SQLite turns NaN into NULL): both store NULL.
pub(crate) fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

/// Maps and sets for the per-row work of a batch (de-duplication, id look-ups): hashed with
/// foldhash, randomly seeded per process, at a fraction of SipHash's cost — a batch of findings
/// hashes every row's key several times.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// The ids of the findings a full read found unchanged and left alone (`SqlStore`'s sightings).
/// Ids are handed out in order, so they are dense: 1.8 M take about 250 KB, against 14 MB (and
/// twice that while growing) as a `Vec<i64>`; ids made sparse by PostgreSQL's sequence, which an
/// upsert of an existing row also advances, take a few bytes each.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sighted(roaring::RoaringTreemap);

impl Sighted {
    pub fn contains(&self, id: i64) -> bool {
        u64::try_from(id).is_ok_and(|id| self.0.contains(id))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether these are all of the integration's `open` findings: a full read that found every
    /// open finding unchanged (a re-read of a tenant where nothing changed) leaves no candidate
    /// for fixing, known from a count of the `findings_status` index instead of a list of its
    /// ids (`sqlite::bulk::list_unsighted`: 0.12 s at 1.8 M findings). The sighted ids are open
    /// findings of the integration, read by this run, and only a reconciliation fixes them, so
    /// equal counts are equal sets.
    pub fn holds_all(&self, open: i64) -> bool {
        u64::try_from(open).is_ok_and(|open| open == self.len())
    }
}

/// The integration's open findings, counted from the `findings_status` index.
pub(crate) const COUNT_OPEN_FINDINGS: &str =
    "SELECT count(*) AS n FROM findings WHERE integration_id = $1 AND status = 'open'";

impl Extend<i64> for Sighted {
    /// Row ids are positive; anything else is not kept.
    fn extend<T: IntoIterator<Item = i64>>(&mut self, ids: T) {
        for id in ids {
            if let Ok(id) = u64::try_from(id) {
                self.0.insert(id);
            }
        }
    }
}

/// Keeps the last occurrence of every key, in the order of those last occurrences. A batch may
/// repeat a key (MDE reports a device twice while it moves between device groups); a single
/// upsert statement must see each key once (PostgreSQL refuses to update a row twice).
///
/// Most batches repeat no key, which a pass over the keys' hashes shows without keeping the keys:
/// distinct hashes are distinct keys. Only when two hashes meet are the keys themselves compared.
/// The hashes go into a set the thread keeps from batch to batch: a set of the keys, new for each
/// batch of 5,000 findings, was ~8 % of a first load's page faults (BENCHMARKS.md, "2026-12-08
/// (twelfth)").
pub(crate) fn dedupe_last<'a, T, K: std::hash::Hash + Eq + 'a>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Vec<&'a T> {
    use std::hash::BuildHasher as _;
    thread_local! {
        static HASHES: std::cell::RefCell<FastSet<u64>> = std::cell::RefCell::default();
    }
    let hasher = foldhash::fast::FixedState::default();
    let repeats = HASHES.with_borrow_mut(|seen| {
        seen.clear();
        seen.reserve(items.len());
        !items.iter().all(|i| seen.insert(hasher.hash_one(key(i))))
    });
    if !repeats {
        return items.iter().collect();
    }
    let mut seen = FastSet::with_capacity_and_hasher(items.len(), Default::default());
    let mut out: Vec<&T> = items.iter().rev().filter(|i| seen.insert(key(i))).collect();
    out.reverse();
    out
}

/// Refuses ids the database cannot hold.
pub(crate) fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

// ---- time ----------------------------------------------------------------------------------------

/// Both backends keep microseconds (PostgreSQL's precision); finer digits are dropped here, once,
/// so that a value reads back the same from either.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    from_micros(micros(t)).unwrap_or(t)
}

pub(crate) fn from_micros(us: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_micros(us)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {us} µs is out of range")))
}

// ---- enums <-> columns ---------------------------------------------------------------------------

pub(crate) fn severity_code(s: Severity) -> i64 {
    match s {
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

pub(crate) fn severity_from_code(code: Option<i64>) -> Result<Option<Severity>> {
    Ok(match code {
        None => None,
        Some(1) => Some(Severity::Low),
        Some(2) => Some(Severity::Medium),
        Some(3) => Some(Severity::High),
        Some(4) => Some(Severity::Critical),
        Some(other) => return Err(StoreError::Corrupt(format!("severity code {other}"))),
    })
}

pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "{what} '{}'",
        value.chars().take(60).collect::<String>()
    ))
}

pub(crate) fn json_list(v: &[String]) -> String {
    // A Vec<String> always serialises; the fallback keeps the column valid regardless.
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_list(col: &str, s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).map_err(|_| corrupt(col, s))
}

/// The counters of a run, stored as one JSON column. The findings source rides along in it: a
/// descriptive word that needs no column, index or migration of its own.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct RunCounts {
    #[serde(default)]
    pub assets: EntityCounts,
    #[serde(default)]
    pub findings: EntityCounts,
    #[serde(default)]
    pub vulnerabilities: EntityCounts,
    /// Defender for Cloud recommendations (absent in runs recorded before they existed).
    #[serde(default)]
    pub recommendations: EntityCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Records skipped as unreadable, with their ids (absent in runs recorded before issue 11).
    #[serde(default, skip_serializing_if = "odd_records_none")]
    pub odd_records: OddRecords,
}

fn odd_records_none(o: &OddRecords) -> bool {
    o.count == 0
}

pub(crate) fn run_counts_json(o: &RunOutcome) -> String {
    let c = RunCounts {
        assets: o.assets.clone(),
        findings: o.findings.clone(),
        vulnerabilities: o.vulnerabilities.clone(),
        recommendations: o.recommendations.clone(),
        source: o.source.clone(),
        odd_records: OddRecords {
            count: o.odd_records.count,
            ids: o
                .odd_records
                .ids
                .iter()
                .map(|id| clean(id).into_owned())
                .collect(),
            first_error: o
                .odd_records
                .first_error
                .as_deref()
                .map(|e| clean(e).into_owned()),
        },
    };
    serde_json::to_string(&c).unwrap_or_else(|_| "{}".to_owned())
}

/// The verdict as two columns: a word and an optional reason.
pub(crate) fn verdict_columns(v: &Option<Verdict>) -> (Option<&'static str>, Option<String>) {
    match v {
        None => (None, None),
        Some(Verdict::Complete) => (Some("complete"), None),
        Some(Verdict::Incomplete(r)) => (Some("incomplete"), Some(clean(r).into_owned())),
        Some(Verdict::Held(r)) => (Some("held"), Some(clean(r).into_owned())),
    }
}

fn verdict_from_columns(word: Option<String>, reason: Option<String>) -> Result<Option<Verdict>> {
    Ok(match word.as_deref() {
        None => None,
        Some("complete") => Some(Verdict::Complete),
        Some("incomplete") => Some(Verdict::Incomplete(reason.unwrap_or_default())),
        Some("held") => Some(Verdict::Held(reason.unwrap_or_default())),
        Some(other) => return Err(corrupt("verdict", other)),
    })
}

// ---- rows ----------------------------------------------------------------------------------------

/// Typed column access that hides how each backend stores a type (timestamps are INTEGER
/// microseconds on SQLite and TIMESTAMPTZ on PostgreSQL; small integers are SMALLINT on
/// PostgreSQL). The decoders below are written once against it.
pub(crate) trait RowExt {
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn opt_f64(&self, col: &str) -> Result<Option<f64>>;
    fn flag(&self, col: &str) -> Result<bool>;
    fn opt_flag(&self, col: &str) -> Result<Option<bool>>;
    fn opt_ts(&self, col: &str) -> Result<Option<DateTime<Utc>>>;
    fn opt_date(&self, col: &str) -> Result<Option<NaiveDate>>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>>;

    fn ts(&self, col: &str) -> Result<DateTime<Utc>> {
        self.opt_ts(col)?
            .ok_or_else(|| StoreError::Corrupt(format!("{col} is empty")))
    }

    /// An integration's id, in column `col`.
    fn integration(&self, col: &str) -> Result<IntegrationId> {
        self.int(col).map(IntegrationId)
    }

    /// A sync run's id, in column `col`.
    fn run(&self, col: &str) -> Result<RunId> {
        self.int(col).map(RunId)
    }
}

macro_rules! integration_columns {
    () => {
        "id, workspace_id, name, product, cloud, tenant_id, client_id, secret_last4, secret_expires_on, login_url, api_url, schedule_minutes, enabled, created_at, updated_at"
    };
}
pub(crate) use integration_columns;

pub(crate) fn decode_integration(r: &impl RowExt) -> Result<Integration> {
    let name = r.text("name")?;
    let product = r.text("product")?;
    let cloud = r.text("cloud")?;
    let tenant = r.text("tenant_id")?;
    let client = r.text("client_id")?;
    Ok(Integration {
        id: r.integration("id")?,
        workspace_id: WorkspaceId(r.int("workspace_id")?),
        name: name
            .parse::<IntegrationName>()
            .map_err(|_| corrupt("integration name", &name))?,
        product: product
            .parse::<Product>()
            .map_err(|_| corrupt("product", &product))?,
        cloud: cloud
            .parse::<Cloud>()
            .map_err(|_| corrupt("cloud", &cloud))?,
        tenant_id: tenant
            .parse::<TenantId>()
            .map_err(|_| corrupt("tenant id", &tenant))?,
        client_id: client
            .parse::<ClientId>()
            .map_err(|_| corrupt("client id", &client))?,
        secret_hint: SecretHint {
            last4: r.text("secret_last4")?,
            expires_on: r.opt_date("secret_expires_on")?,
        },
        login_url: r.opt_text("login_url")?,
        api_url: r.opt_text("api_url")?,
        schedule_minutes: r.int("schedule_minutes")?,
        enabled: r.flag("enabled")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
    })
}

macro_rules! run_columns {
    () => {
        "id, integration_id, mode, status, started_at, heartbeat_at, finished_at, verdict, verdict_reason, counts, api_calls, throttled, retries, bytes, error"
    };
}
pub(crate) use run_columns;

pub(crate) fn decode_run(r: &impl RowExt) -> Result<SyncRun> {
    let status = r.text("status")?;
    let counts_text = r.text("counts")?;
    let counts: RunCounts =
        serde_json::from_str(&counts_text).map_err(|_| corrupt("run counts", &counts_text))?;
    Ok(SyncRun {
        id: r.run("id")?,
        integration_id: r.integration("integration_id")?,
        started_at: r.ts("started_at")?,
        finished_at: r.opt_ts("finished_at")?,
        status: RunStatus::parse(&status).ok_or_else(|| corrupt("run status", &status))?,
        mode: r.text("mode")?,
        source: counts.source,
        verdict: verdict_from_columns(r.opt_text("verdict")?, r.opt_text("verdict_reason")?)?,
        assets: counts.assets,
        findings: counts.findings,
        vulnerabilities: counts.vulnerabilities,
        recommendations: counts.recommendations,
        api_calls: as_u64(r.int("api_calls")?),
        throttled: as_u64(r.int("throttled")?),
        retries: as_u64(r.int("retries")?),
        bytes: as_u64(r.int("bytes")?),
        error: r.opt_text("error")?,
        odd_records: counts.odd_records,
    })
}

// Listings read one table per query, never a join ordered and limited as a whole: with a join,
// PostgreSQL's planner (on statistics that lag behind a bulk load) materialised all rows of the
// integration and sorted them for every page of 1,000 (3.5 s a page at 1M findings). A page is
// one ordered, limited scan of its table; the few rows it refers to (integration, asset, software,
// CVE) are then fetched by primary key and joined here.

macro_rules! asset_select {
    () => {
        "SELECT a.id, a.integration_id, a.source_id, a.kind, a.name, a.os_platform, a.os_version, a.health_status, a.onboarding_status, a.exposure_level, a.risk_score, a.device_value, a.ip_addresses, a.tags, a.rbac_group_id, a.rbac_group_name, a.aad_device_id, a.azure_resource_id, a.is_duplicate, a.merged_into, a.first_seen, a.last_seen, a.external_ip_address, a.os_build, a.os_processor, a.is_aad_joined, a.known_from, a.status, a.first_observed, a.last_observed, a.missing_since FROM assets a"
    };
}
pub(crate) use asset_select;

/// The integrations a page refers to, by id: (name, product).
pub(crate) type IntegrationNames = HashMap<IntegrationId, (String, Product)>;

pub(crate) const INTEGRATION_NAMES: &str = "SELECT id, name, product FROM integrations";

pub(crate) fn decode_integration_names(rows: &[impl RowExt]) -> Result<IntegrationNames> {
    let mut map = HashMap::with_capacity(rows.len());
    for r in rows {
        let product = r.text("product")?;
        map.insert(
            r.integration("id")?,
            (
                r.text("name")?,
                product
                    .parse::<Product>()
                    .map_err(|_| corrupt("product", &product))?,
            ),
        );
    }
    Ok(map)
}

pub(crate) fn integration_of(
    names: &IntegrationNames,
    id: IntegrationId,
) -> Result<(String, Product)> {
    names.get(&id).cloned().ok_or_else(|| {
        StoreError::Corrupt(format!(
            "a row refers to integration {id}, which does not exist"
        ))
    })
}

/// `assets.known_from` of an asset that only vulnerability rows named (see migration 0005).
pub(crate) const KNOWN_FROM_VULNERABILITY_DATA: &str = "vulnerability_data";

pub(crate) fn decode_asset(r: &impl RowExt, names: &IntegrationNames) -> Result<StoredAsset> {
    let kind = r.text("kind")?;
    let status = r.text("status")?;
    let integration_id = r.integration("integration_id")?;
    let (integration, product) = integration_of(names, integration_id)?;
    Ok(StoredAsset {
        id: r.int("id")?,
        integration_id,
        integration,
        product,
        asset: Asset {
            source_id: r.text("source_id")?,
            kind: AssetKind::parse(&kind).ok_or_else(|| corrupt("asset kind", &kind))?,
            name: r.opt_text("name")?,
            os_platform: r.opt_text("os_platform")?,
            os_version: r.opt_text("os_version")?,
            health_status: r.opt_text("health_status")?,
            onboarding_status: r.opt_text("onboarding_status")?,
            exposure_level: r.opt_text("exposure_level")?,
            risk_score: r.opt_text("risk_score")?,
            device_value: r.opt_text("device_value")?,
            ip_addresses: parse_list("ip_addresses", &r.text("ip_addresses")?)?,
            tags: parse_list("tags", &r.text("tags")?)?,
            rbac_group_id: r.opt_int("rbac_group_id")?,
            rbac_group_name: r.opt_text("rbac_group_name")?,
            aad_device_id: r.opt_text("aad_device_id")?,
            azure_resource_id: r.opt_text("azure_resource_id")?,
            is_duplicate: r.flag("is_duplicate")?,
            merged_into: r.opt_text("merged_into")?,
            first_seen: r.opt_ts("first_seen")?,
            last_seen: r.opt_ts("last_seen")?,
            external_ip_address: r.opt_text("external_ip_address")?,
            os_build: r.opt_int("os_build")?,
            os_processor: r.opt_text("os_processor")?,
            is_aad_joined: r.opt_flag("is_aad_joined")?,
        },
        known_only_from_vulnerability_data: r.text("known_from")? == KNOWN_FROM_VULNERABILITY_DATA,
        status: AssetStatus::parse(&status).ok_or_else(|| corrupt("asset status", &status))?,
        first_observed: r.ts("first_observed")?,
        last_observed: r.ts("last_observed")?,
        missing_since: r.opt_ts("missing_since")?,
    })
}

/// A finding listing's own columns: the page is chosen and ordered on these.
const FINDING_COLUMNS: &str = "SELECT f.id, f.integration_id, f.asset_id, f.software_id, f.cve_id, f.severity, f.cvss, f.exploitability, f.recommended_update, f.recommendation_reference, f.first_seen, f.last_seen, f.status, f.first_observed, f.last_observed, f.fixed_at, f.reopened_count, f.priority, f.decision, f.due_at, f.clock_start, f.explanation_id FROM findings f";

/// What a listed finding looks up elsewhere (its priority's explanation, its integration's
/// observation time), over the page chosen by the inner query `f`.
const FINDING_LOOKUPS: &str = "SELECT f.*, (SELECT e.contributions FROM priority_explanations e WHERE e.id = f.explanation_id) AS contributions, (SELECT i.findings_observed_at FROM integrations i WHERE i.id = f.integration_id) AS observed_through FROM";

/// A findings row before its references are joined in.
pub(crate) struct FindingRow {
    id: i64,
    integration_id: IntegrationId,
    pub asset_id: i64,
    pub software_id: i64,
    pub cve_id: String,
    severity: Option<Severity>,
    cvss: Option<f64>,
    exploitability: Option<String>,
    recommended_update: Option<String>,
    recommendation_reference: Option<String>,
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    status: FindingStatus,
    first_observed: DateTime<Utc>,
    last_observed: DateTime<Utc>,
    fixed_at: Option<DateTime<Utc>>,
    reopened_count: u64,
    priority: Option<f64>,
    assessment: Option<crate::priority::StoredAssessment>,
    contributions: Option<String>,
}

/// A finding's last observation: its own column, or for an open finding the end of the last full
/// read that reconciled its integration (`integrations.findings_observed_at`) if that is later.
/// A full read leaves an unchanged finding's row alone (see `content_hash`), yet observes it.
fn observed_last(
    written: DateTime<Utc>,
    observed_through: Option<DateTime<Utc>>,
    open: bool,
) -> DateTime<Utc> {
    match observed_through {
        Some(t) if open && t > written => t,
        _ => written,
    }
}

pub(crate) fn decode_finding_row(r: &impl RowExt) -> Result<FindingRow> {
    let status = r.text("status")?;
    Ok(FindingRow {
        id: r.int("id")?,
        integration_id: r.integration("integration_id")?,
        asset_id: r.int("asset_id")?,
        software_id: r.int("software_id")?,
        cve_id: r.text("cve_id")?,
        severity: severity_from_code(r.opt_int("severity")?)?,
        cvss: r.opt_f64("cvss")?,
        exploitability: r.opt_text("exploitability")?,
        recommended_update: r.opt_text("recommended_update")?,
        recommendation_reference: r.opt_text("recommendation_reference")?,
        first_seen: r.opt_ts("first_seen")?,
        last_seen: r.opt_ts("last_seen")?,
        status: FindingStatus::parse(&status).ok_or_else(|| corrupt("finding status", &status))?,
        first_observed: r.ts("first_observed")?,
        last_observed: observed_last(
            r.ts("last_observed")?,
            r.opt_ts("observed_through")?,
            status == FindingStatus::Open.as_str(),
        ),
        fixed_at: r.opt_ts("fixed_at")?,
        reopened_count: as_u64(r.int("reopened_count")?),
        priority: r.opt_f64("priority")?,
        assessment: crate::priority::decode_stored(r)?,
        contributions: r.opt_text("contributions")?,
    })
}

/// What a page of findings refers to, fetched by key.
#[derive(Default)]
pub(crate) struct FindingRefs {
    pub integrations: IntegrationNames,
    /// id → (source id, name)
    pub assets: HashMap<i64, (String, Option<String>)>,
    /// id → (vendor, name, version)
    pub software: HashMap<i64, (String, String, String)>,
    pub cves: HashMap<String, CveFacts>,
    /// Every exception granted (a small table), to tell which cover the page's findings.
    pub exceptions: Vec<crate::exceptions::StoredException>,
}

impl FindingRefs {
    /// The distinct keys a page refers to: asset ids, software ids, CVE ids.
    pub(crate) fn keys(rows: &[FindingRow]) -> (Vec<i64>, Vec<i64>, Vec<String>) {
        let mut assets: Vec<i64> = rows.iter().map(|r| r.asset_id).collect();
        let mut software: Vec<i64> = rows.iter().map(|r| r.software_id).collect();
        let mut cves: Vec<String> = rows.iter().map(|r| r.cve_id.clone()).collect();
        for v in [&mut assets, &mut software] {
            v.sort_unstable();
            v.dedup();
        }
        cves.sort_unstable();
        cves.dedup();
        (assets, software, cves)
    }

    pub(crate) fn add_asset(&mut self, r: &impl RowExt) -> Result<()> {
        self.assets
            .insert(r.int("id")?, (r.text("source_id")?, r.opt_text("name")?));
        Ok(())
    }

    pub(crate) fn add_software(&mut self, r: &impl RowExt) -> Result<()> {
        self.software.insert(
            r.int("id")?,
            (r.text("vendor")?, r.text("name")?, r.text("version")?),
        );
        Ok(())
    }

    pub(crate) fn add_cve(&mut self, r: &impl RowExt) -> Result<()> {
        self.cves.insert(
            r.text("cve_id")?,
            CveFacts {
                severity: severity_from_code(r.opt_int("severity")?)?,
                cvss: r.opt_f64("cvss")?,
                epss: r.opt_f64("epss")?,
                public_exploit: r.flag("public_exploit")?,
                exploit_verified: r.flag("exploit_verified")?,
                exploit_in_kit: r.flag("exploit_in_kit")?,
                published_on: r.opt_ts("published_on")?,
            },
        );
        Ok(())
    }

    pub(crate) fn assemble(&self, row: FindingRow) -> Result<StoredFinding> {
        let (integration, product) = integration_of(&self.integrations, row.integration_id)?;
        let (asset_source_id, asset_name) =
            self.assets.get(&row.asset_id).cloned().ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "finding {} refers to asset {}, which does not exist",
                    row.id, row.asset_id
                ))
            })?;
        let (vendor, name, version) =
            self.software
                .get(&row.software_id)
                .cloned()
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "finding {} refers to software {}, which does not exist",
                        row.id, row.software_id
                    ))
                })?;
        let cve = self.cves.get(&row.cve_id).cloned();
        let cve_id = row
            .cve_id
            .parse::<CveId>()
            .map_err(|_| corrupt("CVE id", &row.cve_id))?;
        let exceptions = self.covering(&row, product, &vendor, &name, &cve_id);
        Ok(StoredFinding {
            id: row.id,
            integration_id: row.integration_id,
            integration,
            product,
            finding: Finding {
                key: FindingKey {
                    asset_source_id,
                    software_vendor: vendor,
                    software_name: name,
                    software_version: version,
                    cve_id,
                },
                asset_name,
                asset_os_platform: None,
                asset_os_version: None,
                severity: row.severity,
                cvss: row.cvss,
                exploitability: row.exploitability,
                recommended_update: row.recommended_update,
                recommendation_reference: row.recommendation_reference,
                first_seen: row.first_seen,
                last_seen: row.last_seen,
            },
            status: row.status,
            first_observed: row.first_observed,
            last_observed: row.last_observed,
            fixed_at: row.fixed_at,
            reopened_count: row.reopened_count,
            priority: row.priority,
            // A fixed finding keeps its last priority and why, but nothing is pending.
            decision: row.assessment.map(|a| a.decision),
            due_at: row.assessment.map(|a| a.due_at),
            clock_start: row.assessment.map(|a| a.clock_start),
            priority_factors: row
                .contributions
                .as_deref()
                .map(crate::priority::parse_explanation)
                .transpose()?,
            cve,
            exceptions,
        })
    }

    /// The exceptions covering a finding, as pauses ordered by (end, id).
    fn covering(
        &self,
        row: &FindingRow,
        product: Product,
        vendor: &str,
        name: &str,
        cve: &CveId,
    ) -> Vec<rampart_model::priority::Exception> {
        if self.exceptions.is_empty() {
            return Vec::new();
        }
        let fix =
            crate::exceptions::fix_key(product, vendor, name, row.recommended_update.as_deref());
        let mut covering: Vec<&crate::exceptions::StoredException> = self
            .exceptions
            .iter()
            .filter(|e| e.covers(row.integration_id, row.id, cve, &fix))
            .collect();
        covering.sort_by_key(|e| (e.ends_at, e.id));
        covering.iter().map(|e| e.pause()).collect()
    }
}

pub(crate) fn decode_vulnerability(r: &impl RowExt) -> Result<StoredVulnerability> {
    let cve = r.text("cve_id")?;
    Ok(StoredVulnerability {
        vulnerability: Vulnerability {
            cve_id: cve.parse::<CveId>().map_err(|_| corrupt("CVE id", &cve))?,
            severity: severity_from_code(r.opt_int("severity")?)?,
            cvss: r.opt_f64("cvss")?,
            cvss_vector: r.opt_text("cvss_vector")?,
            epss: r.opt_f64("epss")?,
            public_exploit: r.flag("public_exploit")?,
            exploit_verified: r.flag("exploit_verified")?,
            exploit_in_kit: r.flag("exploit_in_kit")?,
            exploit_types: parse_list("exploit_types", &r.text("exploit_types")?)?,
            published_on: r.opt_ts("published_on")?,
            updated_on: r.opt_ts("updated_on")?,
            description: r.opt_text("description")?,
            source_exposed_machines: r.opt_int("source_exposed_machines")?.map(as_u64),
        },
        exposed_assets: as_u64(r.int("exposed_assets")?),
    })
}

pub(crate) fn decode_audit(r: &impl RowExt) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.int("id")?,
        at: r.ts("at")?,
        actor: r.text("actor")?,
        action: r.text("action")?,
        target: r.opt_text("target")?,
        details: r.opt_text("details")?,
    })
}

/// The condition under which removing an account leaves an admin behind.
macro_rules! not_last_admin {
    () => {
        "(role <> 'admin' OR (SELECT count(*) FROM users WHERE role = 'admin') > 1)"
    };
}
pub(crate) use not_last_admin;

/// The columns [`decode_user`] reads.
macro_rules! user_columns {
    () => {
        "id, name, role, created_at, must_change_password, password_changed_at"
    };
}
pub(crate) use user_columns;

pub(crate) fn decode_user(r: &impl RowExt) -> Result<User> {
    let role = r.text("role")?;
    Ok(User {
        id: r.int("id")?,
        name: r.text("name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
        created_at: r.ts("created_at")?,
        must_change_password: r.flag("must_change_password")?,
        password_changed_at: r.opt_ts("password_changed_at")?,
    })
}

pub(crate) fn decode_api_token(r: &impl RowExt) -> Result<ApiToken> {
    let scope = r.text("scope")?;
    Ok(ApiToken {
        id: r.int("id")?,
        name: r.text("name")?,
        scope: TokenScope::parse(&scope).ok_or_else(|| corrupt("token scope", &scope))?,
        created_by: r.text("created_by")?,
        created_at: r.ts("created_at")?,
        workspace: r.opt_int("workspace_id")?.map(WorkspaceId),
    })
}

/// $1 limit; `scope` (" AND …" or nothing) narrows the findings counted.
pub(crate) fn top_fixes_sql(scope: &str) -> String {
    format!(
        "SELECT recommended_update, COUNT(*) AS n, COUNT(DISTINCT asset_id) AS assets \
         FROM findings WHERE status = 'open' AND recommended_update IS NOT NULL AND recommended_update <> ''{scope} \
         GROUP BY recommended_update ORDER BY n DESC, recommended_update LIMIT $1"
    )
}

/// $1 limit; `scope` (" AND …" or nothing) narrows the findings counted.
pub(crate) fn riskiest_assets_sql(scope: &str) -> String {
    format!(
        "SELECT a.id, COALESCE(a.name, a.source_id) AS name, \
         SUM(CASE WHEN f.severity = 4 THEN 1 ELSE 0 END) AS critical, \
         SUM(CASE WHEN f.severity = 3 THEN 1 ELSE 0 END) AS high, COUNT(*) AS n \
         FROM findings f JOIN assets a ON a.id = f.asset_id WHERE f.status = 'open'{scope} \
         GROUP BY a.id, a.name, a.source_id ORDER BY critical DESC, high DESC, n DESC, a.id LIMIT $1"
    )
}

pub(crate) fn decode_top_fix(r: &impl RowExt) -> Result<TopFix> {
    Ok(TopFix {
        recommended_update: r.text("recommended_update")?,
        open_findings: as_u64(r.int("n")?),
        assets: as_u64(r.int("assets")?),
    })
}

pub(crate) fn decode_risky_asset(r: &impl RowExt) -> Result<RiskyAsset> {
    Ok(RiskyAsset {
        asset_id: r.int("id")?,
        name: r.text("name")?,
        critical: as_u64(r.int("critical")?),
        high: as_u64(r.int("high")?),
        open_findings: as_u64(r.int("n")?),
    })
}

// ---- dynamic reads -------------------------------------------------------------------------------

/// `%search%` with LIKE's wildcards made literal (used with `ESCAPE '\'`).
pub(crate) fn like_pattern(search: &str) -> String {
    let mut p = String::with_capacity(search.len() + 2);
    p.push('%');
    for c in clean(search).chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

pub(crate) fn page_limit(sql: &mut Sql, limit: u32) {
    // One row more than asked tells whether there is a next page without another query.
    let ph = sql.arg(Arg::Int(i64::from(limit.clamp(1, 100_000)) + 1));
    sql.text.push_str(" LIMIT ");
    sql.text.push_str(&ph);
}

pub(crate) fn assets_query(
    d: Dialect,
    vis: &Visibility,
    f: &AssetFilter,
    after: Option<i64>,
    limit: u32,
) -> Sql {
    let cursor = after.map(SortCursor::after_id);
    assets_sorted_query(d, vis, f, AssetSort::default(), cursor.as_ref(), limit)
}

pub(crate) fn assets_sorted_query(
    d: Dialect,
    vis: &Visibility,
    f: &AssetFilter,
    sort: AssetSort,
    after: Option<&SortCursor>,
    limit: u32,
) -> Sql {
    let mut sql = Sql::new(&asset_select!().replacen(
        " FROM assets a",
        &format!("{} FROM assets a", sorted_columns(d, sort)),
        1,
    ));
    if let Some(cursor) = after {
        let cond = keyset_condition(d, cursor, &mut |a| sql.arg(a));
        sql.and(&cond);
    }
    // See findings_query for why some conditions are written to keep an index from being used.
    // In a sort order other than the id's, the (key, id) index must drive the scan: the
    // integration and status conditions are then never indexable.
    let by_id = sort.key == AssetSortKey::Id;
    match (f.integration, f.status) {
        (Some(i), Some(s)) if by_id => {
            let pi = sql.arg(Arg::Int(i.get()));
            let ps = sql.arg(Arg::Text(s.as_str().to_owned()));
            sql.and(&format!("a.integration_id = {pi} AND a.status = {ps}"));
        }
        (i, s) => {
            if let Some(i) = i {
                let pi = sql.arg(Arg::Int(i.get()));
                sql.and(&format!("+a.integration_id = {pi}"));
            }
            if let Some(s) = s {
                let ps = sql.arg(Arg::Text(s.as_str().to_owned()));
                sql.and(&format!("a.status || '' = {ps}"));
            }
        }
    }
    if let Some(q) = f.search.as_deref().filter(|q| !q.is_empty()) {
        let ph = sql.arg(Arg::Text(like_pattern(q)));
        sql.and(&format!(
            "(a.name {op} {ph} ESCAPE '\\' OR a.source_id {op} {ph} ESCAPE '\\')",
            op = d.ilike
        ));
    }
    for (column, value) in [
        ("os_platform", &f.os_platform),
        ("health_status", &f.health_status),
        ("exposure_level", &f.exposure_level),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            let ph = sql.arg(Arg::Text(clean(v).to_lowercase()));
            sql.and(&format!("lower(a.{column}) = {ph}"));
        }
    }
    if let Some(tag) = f.tag.as_deref().filter(|t| !t.is_empty()) {
        // Tags are a JSON array of strings: look for the tag as a whole JSON string in it.
        let quoted = serde_json::to_string(&*clean(tag)).unwrap_or_default();
        let mut pattern = like_pattern(&quoted);
        if pattern.len() < 3 {
            pattern = "%".into();
        }
        let ph = sql.arg(Arg::Text(pattern));
        sql.and(&format!("a.tags {op} {ph} ESCAPE '\\'", op = d.ilike));
    }
    if let Some(t) = f.changed_since {
        // Observed by a run, or concluded missing, after t.
        let ph = sql.arg(Arg::Time(t));
        sql.and(&format!(
            "(a.last_observed > {ph} OR a.missing_since > {ph})"
        ));
    }
    vis.restrict(d, &mut sql, "a.integration_id");
    sql.text.push_str(&order_by(d, sort));
    page_limit(&mut sql, limit);
    sql
}

/// What a findings search matches, learnt before the listing so that it can pick its plan
/// (see [`search_precheck`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SearchPlan {
    /// Some software's vendor or name matches.
    pub software: bool,
    /// How many asset names match (counted up to [`NARROW_SEARCH_ASSETS`] + 1).
    pub assets: i64,
    /// How many findings have a CVE id that contains the search (counted up to
    /// [`NARROW_SEARCH_FINDINGS`] + 1; 0 for a search no CVE id can contain).
    pub cve_findings: i64,
    /// The CVE ids of findings that contain the search (up to [`NARROW_SEARCH_CVES`] + 1 of
    /// them).
    pub cve_ids: Vec<String>,
}

/// A search matching at most this many assets (and no software, and no CVE id) reads those
/// assets' findings through the natural key instead of walking the table.
pub(crate) const NARROW_SEARCH_ASSETS: i64 = 1000;

/// A search that only CVE ids match, in at most this many findings, reads those findings through
/// the CVE indexes instead of walking the table. Walking finds a page of `limit` after about
/// `limit × table / matches` rows, reading the matches costs `matches` rows: at 2,000,000
/// findings and pages of 50 to 1,000 the two meet between 10,000 and 45,000 matches.
pub(crate) const NARROW_SEARCH_FINDINGS: i64 = 20_000;

/// The most CVE ids such a search may match: the precheck hands them to the listing, which
/// reads their findings without stepping through the CVEs again.
pub(crate) const NARROW_SEARCH_CVES: usize = 1000;

impl SearchPlan {
    /// Nothing can match: the listing is empty without reading findings.
    pub fn finds_nothing(&self) -> bool {
        !self.software && self.assets == 0 && self.cve_findings == 0
    }

    fn assets_only(&self) -> bool {
        !self.software && self.cve_findings == 0 && self.assets <= NARROW_SEARCH_ASSETS
    }

    fn cves_only(&self) -> bool {
        !self.software
            && self.assets == 0
            && self.cve_findings <= NARROW_SEARCH_FINDINGS
            && self.cve_ids.len() <= NARROW_SEARCH_CVES
    }
}

/// For a search, the query that learns its [`SearchPlan`] (columns `software`, `assets`,
/// `cve_findings` and `cve_ids`); `None` without a search.
pub(crate) fn search_precheck(d: Dialect, f: &FindingFilter) -> Option<Sql> {
    let q = f.search.as_deref().filter(|q| !q.is_empty())?;
    let mut sql = Sql::default();
    let ph = sql.arg(Arg::Text(like_pattern(q)));
    let op = d.ilike;
    let (matched, cve_findings, cve_ids) = if could_be_in_a_cve_id(q) {
        (
            // Stepped through once, read twice.
            format!(
                "WITH matched AS MATERIALIZED ({} UNION {}) ",
                cves_containing(d, "open", &ph),
                cves_containing(d, "fixed", &ph)
            ),
            format!(
                "(SELECT count(*) FROM ({} LIMIT {}) m)",
                findings_of_cves(&["open", "fixed"].map(|status| {
                    format!("c.status = '{status}' AND c.cve_id IN (SELECT v FROM matched)")
                })),
                NARROW_SEARCH_FINDINGS + 1
            ),
            format!(
                "(SELECT {} FROM (SELECT v FROM matched LIMIT {}) l)",
                (d.distinct_list)("l.v"),
                NARROW_SEARCH_CVES + 1
            ),
        )
    } else {
        (String::new(), "0".to_owned(), "NULL".to_owned())
    };
    sql.text = format!(
        "{matched}SELECT EXISTS (SELECT 1 FROM software s WHERE s.vendor {op} {ph} ESCAPE '\\' OR s.name {op} {ph} ESCAPE '\\') AS software, \
         (SELECT count(*) FROM (SELECT 1 FROM assets a WHERE a.name {op} {ph} ESCAPE '\\' LIMIT {}) m) AS assets, \
         {cve_findings} AS cve_findings, {cve_ids} AS cve_ids",
        NARROW_SEARCH_ASSETS + 1
    );
    Some(sql)
}

/// The ids of the open findings that meet `open` and of the fixed ones that meet `fixed`, each
/// read through its status's CVE index (`findings_open_by_cve`, `findings_fixed_by_cve`; a
/// finding is one or the other).
fn findings_of_cves([open, fixed]: &[String; 2]) -> String {
    format!(
        "SELECT c.id FROM findings c WHERE {open} UNION ALL SELECT c.id FROM findings c WHERE {fixed}"
    )
}

/// The distinct CVE ids of the findings with `status` that contain `ph`. They are stepped
/// through in the status's partial CVE index, one seek per CVE, and only then compared with
/// the pattern: a scan of the index would compare each of its entries. At 2,000,000 findings
/// and 6,000 to 7,000 CVEs, the open ones take ~10 ms on SQLite (a scan: 130 ms) and 65 ms on
/// PostgreSQL once vacuumed (134 ms just after a load; BENCHMARKS.md, "2026-12-08 (eleventh)").
fn cves_containing(d: Dialect, status: &str, ph: &str) -> String {
    format!(
        "SELECT v FROM (WITH RECURSIVE ids(v) AS (\
         SELECT min(cve_id) FROM findings WHERE status = '{status}' \
         UNION ALL SELECT (SELECT min(n.cve_id) FROM findings n WHERE n.status = '{status}' AND n.cve_id > ids.v) \
         FROM ids WHERE ids.v IS NOT NULL) SELECT v FROM ids) x \
         WHERE v {op} {ph} ESCAPE '\\'",
        op = d.ilike
    )
}

/// For a `changed_since` listing, the query that tells whether any run can have touched a
/// finding after that time (column `any`): rows are stamped by runs (with their start, or a
/// conclusion time before they finish), by KEV refreshes (which re-assess priorities) and by
/// re-assessment jobs after a settings change (with a time after their claim), so when every run
/// and job had finished by then and no catalogue was read since, the listing is empty without
/// reading the findings table. `None` without `changed_since`.
pub(crate) fn changes_precheck(f: &FindingFilter) -> Option<Sql> {
    let t = f.changed_since?;
    let mut sql = Sql::default();
    let pt = sql.arg(Arg::Time(t));
    let scope = match f.integration {
        Some(i) => format!(" AND integration_id = {}", sql.arg(Arg::Int(i.get()))),
        None => String::new(),
    };
    sql.text = format!(
        "SELECT (EXISTS (SELECT 1 FROM sync_runs WHERE (status = 'running' OR started_at > {pt} OR finished_at > {pt}){scope}) \
         OR EXISTS (SELECT 1 FROM jobs WHERE kind = 'reassess' AND (state = 'running' OR claimed_at > {pt} OR heartbeat_at > {pt}){scope}) \
         OR EXISTS (SELECT 1 FROM intel_sources WHERE fetched_at > {pt})) AS any"
    );
    Some(sql)
}

pub(crate) fn decode_search_plan(r: &impl RowExt) -> Result<SearchPlan> {
    Ok(SearchPlan {
        software: r.flag("software")?,
        assets: r.int("assets")?,
        cve_findings: r.int("cve_findings")?,
        cve_ids: r
            .opt_text("cve_ids")?
            .unwrap_or_default()
            .split(',')
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
pub(crate) fn findings_query(d: Dialect, f: &FindingFilter, after: Option<i64>, limit: u32) -> Sql {
    findings_query_planned(d, &Visibility::All, f, Keyset::Id(after), limit, None)
}

/// The order of a finding listing and where its page starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Keyset {
    Id(Option<i64>),
    Priority(FindingOrder, Option<FindingCursor>),
}

/// The sort key of a priority order: NULL (not assessed yet) below every priority, as the index
/// findings_by_priority (migration 0012) has it.
const PRIORITY_KEY: &str = "COALESCE(f.priority, -1)";

pub(crate) fn findings_query_planned(
    d: Dialect,
    vis: &Visibility,
    f: &FindingFilter,
    keyset: Keyset,
    limit: u32,
    plan: Option<&SearchPlan>,
) -> Sql {
    let mut sql = Sql::new(FINDING_COLUMNS);
    let order = match keyset {
        Keyset::Id(after) => {
            if let Some(after) = after {
                let ph = sql.arg(Arg::Int(after));
                sql.and(&format!("f.id > {ph}"));
            }
            " ORDER BY f.id".to_owned()
        }
        Keyset::Priority(order, after) => {
            let (cmp, dir) = match order {
                FindingOrder::PriorityDesc => ("<", "DESC"),
                FindingOrder::PriorityAsc => (">", "ASC"),
            };
            if let Some(c) = after {
                let pp = sql.arg(Arg::Float(c.priority));
                let pi = sql.arg(Arg::Int(c.id));
                sql.and(&d.keyset(PRIORITY_KEY, "f.id", cmp, &pp, &pi));
            }
            format!(" ORDER BY {PRIORITY_KEY} {dir}, f.id {dir}")
        }
    };
    // A narrow filter reads its own index and sorts its few rows by id: one asset's findings
    // (the natural key leads with asset_id), or the open findings of one CVE (the partial index
    // findings_open_by_cve; `status = 'open'` is written literally so that the planner may use
    // it). Walking the whole table in id order instead would read up to millions of rows to fill
    // a page of a rare asset or CVE.
    let by_id = matches!(keyset, Keyset::Id(_));
    let assets_search = plan.is_some_and(|p| p.assets_only());
    let cves_search =
        plan.is_some_and(|p| p.cves_only()) && f.cve_id.is_none() && f.asset_source_id.is_none();
    // One CVE's findings of any status, or its fixed ones: the two partial indexes by CVE
    // (open, fixed) give their ids (migration 0019).
    let cve_any_status = f.cve_id.is_some()
        && f.status != Some(FindingStatus::Open)
        && f.asset_source_id.is_none()
        && !assets_search;
    let narrow = f.asset_source_id.is_some()
        || assets_search
        || cves_search
        || cve_any_status
        || (f.cve_id.is_some() && f.status == Some(FindingStatus::Open));
    match (f.integration, f.status) {
        (_, Some(FindingStatus::Open))
            if narrow && f.asset_source_id.is_none() && !assets_search && !cves_search =>
        {
            sql.and("f.status = 'open'");
            if let Some(i) = f.integration {
                let pi = sql.arg(Arg::Int(i.get()));
                sql.and(&format!("+f.integration_id = {pi}"));
            }
        }
        // In priority order the by-priority index drives, and the other conditions are written
        // plainly: both engines then walk it and filter (EXPLAIN on both, with statistics), while
        // the unary `+` below would make PostgreSQL expect few rows and sort them all.
        (i, s) if !narrow && !by_id => {
            if let Some(i) = i {
                let pi = sql.arg(Arg::Int(i.get()));
                // Fixed findings have a priority index of their own (migration 0025). SQLite's
                // sampled statistics can make it expect a few fixed findings in one
                // integration's (integration, status) range and sort them all instead (115 ms
                // for 100,000, BENCHMARKS.md "2026-12-08 (eleventh)"): there the integration is
                // written out of that index's reach. PostgreSQL picks the index as it is.
                let sqlite_fixed = s == Some(FindingStatus::Fixed) && d.backend == Backend::Sqlite;
                let plus = if sqlite_fixed { "+" } else { "" };
                sql.and(&format!("{plus}f.integration_id = {pi}"));
            }
            if let Some(s) = s {
                let ps = sql.arg(Arg::Text(s.as_str().to_owned()));
                sql.and(&format!("f.status = {ps}"));
            }
        }
        // Both leading columns of the (integration_id, status[, id]) index are fixed: the index
        // returns rows in id order, so a keyset page reads only its own rows.
        (Some(i), Some(s)) if !narrow => {
            let pi = sql.arg(Arg::Int(i.get()));
            let ps = sql.arg(Arg::Text(s.as_str().to_owned()));
            sql.and(&format!("f.integration_id = {pi} AND f.status = {ps}"));
        }
        // Otherwise walk the primary key and filter: the unary `+` (and `|| ''` below) keep the
        // planner from picking an index on a prefix and then sorting every matching row of the
        // whole table for each page of 1,000.
        (i, s) => {
            if let Some(i) = i {
                let pi = sql.arg(Arg::Int(i.get()));
                sql.and(&format!("+f.integration_id = {pi}"));
            }
            if let Some(s) = s {
                let ps = sql.arg(Arg::Text(s.as_str().to_owned()));
                sql.and(&format!("f.status || '' = {ps}"));
            }
        }
    }
    if let Some(s) = f.severity {
        let ph = sql.arg(Arg::Int(severity_code(s)));
        sql.and(&format!("f.severity = {ph}"));
    }
    if let Some(s) = f.min_severity {
        let ph = sql.arg(Arg::Int(severity_code(s)));
        sql.and(&format!("f.severity >= {ph}"));
    }
    if let Some(c) = &f.cve_id {
        let ph = sql.arg(Arg::Text(c.as_str().to_owned()));
        sql.and(&format!("f.cve_id = {ph}"));
        if cve_any_status {
            sql.and(&format!(
                "f.id IN (SELECT c.id FROM findings c WHERE c.status = 'open' AND c.cve_id = {ph} \
                 UNION ALL SELECT c.id FROM findings c WHERE c.status = 'fixed' AND c.cve_id = {ph})"
            ));
        }
    }
    if let Some(a) = &f.asset_source_id {
        let ph = sql.arg(Arg::Text(clean(a).into_owned()));
        let within = match f.integration {
            // The asset's natural key: one index look-up.
            Some(i) => {
                let pi = sql.arg(Arg::Int(i.get()));
                format!("integration_id = {pi} AND ")
            }
            None => String::new(),
        };
        sql.and(&format!(
            "f.asset_id IN (SELECT id FROM assets WHERE {within}source_id = {ph})"
        ));
    }
    if let Some(q) = f.search.as_deref().filter(|q| !q.is_empty()) {
        // The software and assets that match are found once (a few thousand rows each), not
        // looked up again for every finding: each finding row then costs two set look-ups.
        let ph = sql.arg(Arg::Text(like_pattern(q)));
        let op = d.ilike;
        let software = format!(
            "SELECT s.id FROM software s WHERE s.vendor {op} {ph} ESCAPE '\\' OR s.name {op} {ph} ESCAPE '\\'"
        );
        let assets = format!("SELECT a.id FROM assets a WHERE a.name {op} {ph} ESCAPE '\\'");
        let keys = format!("f.software_id IN ({software}) OR f.asset_id IN ({assets})");
        if assets_search {
            // A few assets match, and nothing else can: their findings, by the natural key.
            sql.and(&format!("f.asset_id IN ({assets})"));
        } else if let Some(plan) = plan.filter(|_| cves_search) {
            // Only CVE ids match, in few findings: those findings, by the CVE indexes. The ids
            // are the precheck's (this listing may see findings it did not: a run in between).
            let ids = sql.arg(Arg::Texts(plan.cve_ids.clone()));
            let of = ["open", "fixed"]
                .map(|status| format!("c.status = '{status}' AND {}", d.in_list("c.cve_id", &ids)));
            sql.and(&format!("f.id IN ({})", findings_of_cves(&of)));
        } else if could_be_in_a_cve_id(q) {
            sql.and(&format!("(f.cve_id {op} {ph} ESCAPE '\\' OR {keys})"));
        } else {
            // No CVE id contains this text: only software and assets can match (and when none
            // does, the store answers without reading findings: see search_precheck).
            sql.and(&format!("({keys})"));
        }
    }
    if let Some(t) = f.changed_since {
        // Written by a run (new, changed or reopened: a full read leaves unchanged rows alone),
        // or fixed, after t: by reconciliation (fixed_at is Rampart's time)
        // or by a delta (fixed_at is Microsoft's event time; fix_recorded_at the run's); or its
        // decision, priority or due date changed after t (assessed_at: a run's start, or a KEV
        // refresh's time).
        let ph = sql.arg(Arg::Time(t));
        sql.and(&format!(
            "(f.last_observed > {ph} OR f.fixed_at > {ph} OR f.fix_recorded_at > {ph} OR f.assessed_at > {ph})"
        ));
    }
    if let Some(decision) = f.decision {
        let ph = sql.arg(Arg::Text(decision.as_str().to_owned()));
        sql.and(&format!("f.status = 'open' AND f.decision = {ph}"));
    }
    if let Some((status, now)) = f.sla_status {
        sla_condition(&mut sql, d, status, now);
    }
    vis.restrict(d, &mut sql, "f.integration_id");
    sql.text.push_str(&order);
    let page_starts = sql.text.len();
    page_limit(&mut sql, limit);
    // The look-ups are made for the page's rows only: in one query SQLite made them for every
    // row it sorted, before the sort (a page of the 100,000 fixed findings in priority order,
    // BENCHMARKS.md "2026-12-08 (tenth)"). SQLite runs the inner query, which has a LIMIT, as a
    // co-routine of its own (`listing_pages_never_sort_the_table` checks the plan).
    let limit_clause = sql.text.split_off(page_starts);
    sql.text = format!("{FINDING_LOOKUPS} ({}{limit_clause}) f{order}", sql.text);
    sql
}

/// Findings with this SLA status at `now`, as `StoredFinding::sla_status` decides it: *accepted*
/// while an exception covering the finding is in force; otherwise against the due date moved by
/// the pause of an exception that has ended (crate::exceptions), and *due soon* when at most a
/// fifth of the time between the clock's start and the stored due date is left. Written so both
/// engines take it: SQLite subtracts microseconds, PostgreSQL timestamps (giving intervals, which
/// multiply).
fn sla_condition(sql: &mut Sql, d: Dialect, status: SlaStatus, now: DateTime<Utc>) {
    let pn = sql.arg(Arg::Time(now));
    let accepted = crate::exceptions::in_force_sql(&pn);
    let due = crate::exceptions::effective_due_sql(d, &pn);
    let open = format!(
        "f.status = 'open' AND f.due_at IS NOT NULL AND f.clock_start IS NOT NULL AND NOT {accepted}"
    );
    let clause = match status {
        SlaStatus::Closed => "f.status = 'fixed'".to_owned(),
        SlaStatus::Accepted => format!("f.status = 'open' AND {accepted}"),
        // A pause only moves the due date later: `f.due_at <= now` keeps the index range.
        SlaStatus::Overdue => format!("{open} AND f.due_at <= {pn} AND {due} <= {pn}"),
        SlaStatus::DueSoon => {
            format!("{open} AND {due} > {pn} AND ({due} - {pn}) * 5 <= (f.due_at - f.clock_start)")
        }
        SlaStatus::OnTrack => {
            format!("{open} AND {due} > {pn} AND ({due} - {pn}) * 5 > (f.due_at - f.clock_start)")
        }
    };
    sql.and(&format!("({clause})"));
}

/// Whether `search` can be part of a CVE id (`CVE-2024-12345`: letters C, V, E, digits and
/// dashes, in any case).
fn could_be_in_a_cve_id(search: &str) -> bool {
    search
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c.to_ascii_lowercase(), 'c' | 'v' | 'e' | '-'))
}

pub(crate) fn vulnerabilities_query(
    d: Dialect,
    vis: &Visibility,
    f: &VulnerabilityFilter,
    after: Option<&CveId>,
    limit: u32,
) -> Sql {
    let mut sql = Sql::default();
    // Exposure: distinct assets with an open finding of the CVE, read from the covering partial
    // index findings_open_by_cve; of the visible integrations only.
    let exposure = match f.integration {
        Some(i) => {
            let ph = sql.arg(Arg::Int(i.get()));
            format!(
                "SELECT count(DISTINCT f.asset_id) FROM findings f WHERE f.cve_id = v.cve_id AND f.status = 'open' AND f.integration_id = {ph}"
            )
        }
        None => "SELECT count(DISTINCT f.asset_id) FROM findings f WHERE f.cve_id = v.cve_id AND f.status = 'open'".to_owned(),
    };
    // The catalogue is shared by every workspace: a caller who does not see everything sees the
    // CVEs that a finding it may see refers to, and counts only those findings' assets.
    let visible = vis.condition(d, &mut sql, "f.integration_id");
    let exposure = match &visible {
        Some(c) => format!("{exposure} AND {c}"),
        None => exposure,
    };
    sql.text = format!(
        "SELECT v.cve_id, v.severity, v.cvss, v.cvss_vector, v.epss, v.public_exploit, v.exploit_verified, v.exploit_in_kit, v.exploit_types, v.published_on, v.updated_on, v.description, v.source_exposed_machines, ({exposure}) AS exposed_assets FROM vulnerabilities v"
    );
    if let Some(after) = after {
        let ph = sql.arg(Arg::Text(after.as_str().to_owned()));
        sql.and(&format!("v.cve_id > {ph}"));
    }
    if f.exposed_only {
        let clause = match f.integration {
            // $1 is the integration bound for the exposure subquery above.
            Some(_) => {
                "EXISTS (SELECT 1 FROM findings f WHERE f.cve_id = v.cve_id AND f.status = 'open' AND f.integration_id = $1)"
            }
            None => {
                "EXISTS (SELECT 1 FROM findings f WHERE f.cve_id = v.cve_id AND f.status = 'open')"
            }
        };
        sql.and(clause);
    }
    if let Some(s) = f.severity {
        let ph = sql.arg(Arg::Int(severity_code(s)));
        sql.and(&format!("v.severity = {ph}"));
    }
    if let Some(s) = f.min_severity {
        let ph = sql.arg(Arg::Int(severity_code(s)));
        sql.and(&format!("v.severity >= {ph}"));
    }
    if let Some(q) = f.search.as_deref().filter(|q| !q.is_empty()) {
        let ph = sql.arg(Arg::Text(like_pattern(q)));
        sql.and(&format!(
            "(v.cve_id {op} {ph} ESCAPE '\\' OR v.description {op} {ph} ESCAPE '\\')",
            op = d.ilike
        ));
    }
    if let Some(t) = f.changed_since {
        // New to the catalogue, or changed, after t (updated_at moves only when content does).
        let ph = sql.arg(Arg::Time(t));
        sql.and(&format!("v.updated_at > {ph}"));
    }
    if let Some(c) = &visible {
        sql.and(&format!(
            "EXISTS (SELECT 1 FROM findings f WHERE f.cve_id = v.cve_id AND {c})"
        ));
    }
    sql.text.push_str(" ORDER BY v.cve_id");
    page_limit(&mut sql, limit);
    sql
}

/// Cuts the extra row off a page and computes the cursor of the next one.
pub(crate) fn into_page<T, C>(
    mut items: Vec<T>,
    limit: u32,
    cursor: impl Fn(&T) -> C,
) -> Page<T, C> {
    let limit = limit.clamp(1, 100_000) as usize;
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(cursor);
        Page { items, next }
    } else {
        Page { items, next: None }
    }
}

// ---- words ---------------------------------------------------------------------------------------

pub(crate) fn integration_not_found(id: IntegrationId) -> StoreError {
    StoreError::NotFound(format!(
        "integration {id} not found (it may have been removed); list integrations with `rampart integration list`"
    ))
}

pub(crate) fn workspace_not_found(id: WorkspaceId) -> StoreError {
    StoreError::NotFound(format!(
        "workspace {id} not found; list workspaces with `rampart workspace list`"
    ))
}

pub(crate) fn integration_name_not_found(name: &IntegrationName) -> StoreError {
    StoreError::NotFound(format!(
        "no integration named '{name}'; list integrations with `rampart integration list`"
    ))
}

pub(crate) fn name_taken(name: &IntegrationName) -> StoreError {
    StoreError::Conflict(format!(
        "an integration named '{name}' already exists (names are compared without case); choose another name, or remove the existing one with `rampart integration remove {name}`"
    ))
}

pub(crate) fn run_not_found(id: RunId) -> StoreError {
    StoreError::NotFound(format!("sync run {id} not found"))
}

pub(crate) fn run_already_running(
    run_id: RunId,
    started_at: DateTime<Utc>,
    heartbeat_at: DateTime<Utc>,
) -> StoreError {
    StoreError::Conflict(format!(
        "a sync of this integration is already running (run {run_id}, started {}, last sign of life {}); wait for it to finish. A run that shows no sign of life for {} minutes is considered abandoned and no longer blocks new runs",
        started_at.to_rfc3339(),
        heartbeat_at.to_rfc3339(),
        STALE_RUN_AFTER.as_secs() / 60
    ))
}

pub(crate) fn abandoned_message(heartbeat_at: DateTime<Utc>) -> String {
    format!(
        "abandoned: no sign of life since {} (the process running it probably stopped); a later run took over",
        heartbeat_at.to_rfc3339()
    )
}

/// Checks the run a write claims to belong to. `row` is (integration_id, status, started_at).
pub(crate) fn check_run_for_write(
    run_id: RunId,
    integration_id: IntegrationId,
    row: Option<(IntegrationId, String, DateTime<Utc>)>,
) -> Result<DateTime<Utc>> {
    match row {
        None => Err(run_not_found(run_id)),
        Some((owner, _, _)) if owner != integration_id => Err(StoreError::InvalidInput(format!(
            "sync run {run_id} belongs to integration {owner}, not to integration {integration_id}"
        ))),
        Some((_, status, _)) if status != RunStatus::Running.as_str() => {
            Err(StoreError::Conflict(format!(
                "sync run {run_id} is no longer running (it is {status}); it may have been closed as abandoned. Start a new run"
            )))
        }
        Some((_, _, started_at)) => Ok(started_at),
    }
}

pub(crate) fn check_outcome(o: &RunOutcome) -> Result<()> {
    if o.status == RunStatus::Running {
        return Err(StoreError::InvalidInput(
            "a run cannot be finished with status 'running': use succeeded, partial or failed"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Is `unseen` of `active` more than the policy allows?
pub(crate) fn breaker_trips(unseen: u64, active: u64, max_share: f64) -> bool {
    active > 0 && (unseen as f64) > max_share * (active as f64)
}

/// Keys are compared as stored (NUL already replaced), so that two spellings that store the same
/// never reach one statement twice.
pub(crate) fn asset_key(a: &Asset) -> Cow<'_, str> {
    clean(&a.source_id)
}

/// A batch of findings' distinct assets, with the facts of the first row that names each
/// (source id, device name, OS platform, OS version: a stub asset is made from them), its
/// distinct software (vendor, name, version), all cleaned, and each row's place in them. Both
/// engines' bulk writers resolve the batch's ids from these.
pub(crate) struct BatchKeys<'a> {
    pub assets: Vec<[Option<Cow<'a, str>>; 4]>,
    pub software: Vec<[Cow<'a, str>; 3]>,
    pub places: Vec<(usize, usize)>,
}

impl<'a> BatchKeys<'a> {
    pub fn of(rows: &[&'a Finding]) -> Self {
        let mut assets = Vec::new();
        let mut asset_at: FastMap<Cow<'a, str>, usize> = FastMap::default();
        let mut software = Vec::new();
        let mut software_at: FastMap<[Cow<'a, str>; 3], usize> = FastMap::default();
        let mut places = Vec::with_capacity(rows.len());
        for f in rows {
            let (asset, vendor, name, version, _) = finding_key(f);
            let a = *asset_at.entry(asset.clone()).or_insert_with(|| {
                assets.push([
                    Some(asset),
                    clean_opt(&f.asset_name),
                    clean_opt(&f.asset_os_platform),
                    clean_opt(&f.asset_os_version),
                ]);
                assets.len() - 1
            });
            let key = [vendor, name, version];
            let s = *software_at.entry(key.clone()).or_insert_with(|| {
                software.push(key);
                software.len() - 1
            });
            places.push((a, s));
        }
        BatchKeys {
            assets,
            software,
            places,
        }
    }

    /// Column `n` of the distinct assets (0: the source id).
    pub fn asset_column(&self, n: usize) -> Vec<Option<&str>> {
        self.assets
            .iter()
            .map(|a| a.get(n).and_then(|v| v.as_deref()))
            .collect()
    }

    /// Column `n` of the distinct software (0: the vendor).
    pub fn software_column(&self, n: usize) -> Vec<&str> {
        self.software
            .iter()
            .map(|s| s.get(n).map_or("", |v| v.as_ref()))
            .collect()
    }
}

#[allow(clippy::type_complexity)]
pub(crate) fn finding_key(
    f: &Finding,
) -> (Cow<'_, str>, Cow<'_, str>, Cow<'_, str>, Cow<'_, str>, &str) {
    let k = &f.key;
    (
        clean(&k.asset_source_id),
        clean(&k.software_vendor),
        clean(&k.software_name),
        clean(&k.software_version),
        k.cve_id.as_str(),
    )
}

/// A hash of what a finding's upsert stores besides its key and Rampart's own columns: severity,
/// CVSS, exploitability, recommended update and reference, first and last seen. Stored with the
/// row (`content_hash`), it lets a re-read tell an unchanged row without comparing (or even
/// binding) its columns. It is taken over the values as received: equal inputs store equal
/// values, whatever cleaning does to them. The seed is fixed so that the hash is the same in every
/// process; were a dependency upgrade to change the function, the next re-read would rewrite each
/// row once and store the new hash.
pub(crate) fn finding_content_hash(f: &Finding) -> i64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    const SEED: u64 = 0x5241_4d50_4152_5431;
    let mut h = foldhash::quality::FixedState::with_seed(SEED).build_hasher();
    f.severity.map(severity_code).hash(&mut h);
    f.cvss.map(f64::to_bits).hash(&mut h);
    f.exploitability.hash(&mut h);
    f.recommended_update.hash(&mut h);
    f.recommendation_reference.hash(&mut h);
    f.first_seen.map(micros).hash(&mut h);
    f.last_seen.map(micros).hash(&mut h);
    // The bits as they are: SQLite stores a signed 64-bit integer.
    h.finish() as i64
}

// ---- the upserts' conflict clauses (identical on both backends) ------------------------------
//
// In `DO UPDATE SET`, `assets.x` / `findings.x` is the stored row *before* the update and
// `excluded.x` the incoming one; every SET expression sees the old row. So one statement can both
// write the row and classify what happened in `change_kind`, which `RETURNING` hands back.

macro_rules! asset_insert_columns {
    () => {
        "integration_id, source_id, kind, name, os_platform, os_version, health_status, onboarding_status, exposure_level, risk_score, device_value, ip_addresses, tags, rbac_group_id, rbac_group_name, aad_device_id, azure_resource_id, is_duplicate, merged_into, first_seen, last_seen, external_ip_address, os_build, os_processor, is_aad_joined, first_observed, last_observed, seen_run"
    };
}
pub(crate) use asset_insert_columns;

macro_rules! asset_on_conflict {
    () => {
        " ON CONFLICT (integration_id, source_id) DO UPDATE SET \
change_kind = CASE WHEN assets.status = 'missing' THEN 3 \
WHEN assets.kind IS DISTINCT FROM excluded.kind OR assets.name IS DISTINCT FROM excluded.name \
OR assets.os_platform IS DISTINCT FROM excluded.os_platform OR assets.os_version IS DISTINCT FROM excluded.os_version \
OR assets.health_status IS DISTINCT FROM excluded.health_status OR assets.onboarding_status IS DISTINCT FROM excluded.onboarding_status \
OR assets.exposure_level IS DISTINCT FROM excluded.exposure_level OR assets.risk_score IS DISTINCT FROM excluded.risk_score \
OR assets.device_value IS DISTINCT FROM excluded.device_value OR assets.ip_addresses IS DISTINCT FROM excluded.ip_addresses \
OR assets.tags IS DISTINCT FROM excluded.tags OR assets.rbac_group_id IS DISTINCT FROM excluded.rbac_group_id \
OR assets.rbac_group_name IS DISTINCT FROM excluded.rbac_group_name OR assets.aad_device_id IS DISTINCT FROM excluded.aad_device_id \
OR assets.azure_resource_id IS DISTINCT FROM excluded.azure_resource_id OR assets.is_duplicate IS DISTINCT FROM excluded.is_duplicate \
OR assets.merged_into IS DISTINCT FROM excluded.merged_into \
OR assets.external_ip_address IS DISTINCT FROM excluded.external_ip_address OR assets.os_build IS DISTINCT FROM excluded.os_build \
OR assets.os_processor IS DISTINCT FROM excluded.os_processor OR assets.is_aad_joined IS DISTINCT FROM excluded.is_aad_joined \
OR assets.known_from <> 'inventory' THEN 1 ELSE 2 END, \
kind = excluded.kind, name = excluded.name, os_platform = excluded.os_platform, os_version = excluded.os_version, \
health_status = excluded.health_status, onboarding_status = excluded.onboarding_status, exposure_level = excluded.exposure_level, \
risk_score = excluded.risk_score, device_value = excluded.device_value, ip_addresses = excluded.ip_addresses, tags = excluded.tags, \
rbac_group_id = excluded.rbac_group_id, rbac_group_name = excluded.rbac_group_name, aad_device_id = excluded.aad_device_id, \
azure_resource_id = excluded.azure_resource_id, is_duplicate = excluded.is_duplicate, merged_into = excluded.merged_into, \
first_seen = excluded.first_seen, last_seen = excluded.last_seen, status = 'active', missing_since = NULL, \
external_ip_address = excluded.external_ip_address, os_build = excluded.os_build, os_processor = excluded.os_processor, \
is_aad_joined = excluded.is_aad_joined, known_from = 'inventory', \
last_observed = excluded.last_observed, seen_run = excluded.seen_run \
RETURNING change_kind"
    };
}
pub(crate) use asset_on_conflict;

macro_rules! finding_insert_columns {
    () => {
        "integration_id, asset_id, software_id, cve_id, severity, cvss, exploitability, recommended_update, recommendation_reference, first_seen, last_seen, first_observed, last_observed, seen_run, content_hash"
    };
}
pub(crate) use finding_insert_columns;

/// The assessment columns the bulk paths fill when they insert a finding (`InsertAssessor`);
/// NULL when the run's assessment is left to do it.
macro_rules! finding_assessment_columns {
    () => {
        "decision, priority, due_at, clock_start, explanation_id, assessed_at"
    };
}
pub(crate) use finding_assessment_columns;

/// Whether an incoming finding differs from the stored one in a content column.
macro_rules! finding_changed {
    () => {
        "(findings.severity IS DISTINCT FROM excluded.severity OR findings.cvss IS DISTINCT FROM excluded.cvss \
OR findings.exploitability IS DISTINCT FROM excluded.exploitability \
OR findings.recommended_update IS DISTINCT FROM excluded.recommended_update \
OR findings.recommendation_reference IS DISTINCT FROM excluded.recommendation_reference)"
    };
}
pub(crate) use finding_changed;

/// The columns every re-sync rewrites from the incoming row.
macro_rules! finding_set_content {
    () => {
        "severity = excluded.severity, cvss = excluded.cvss, exploitability = excluded.exploitability, \
recommended_update = excluded.recommended_update, recommendation_reference = excluded.recommendation_reference, \
first_seen = excluded.first_seen, last_seen = excluded.last_seen, \
last_observed = excluded.last_observed, seen_run = excluded.seen_run, content_hash = excluded.content_hash"
    };
}
pub(crate) use finding_set_content;

/// PostgreSQL's finding upsert: classifies, reopens and rewrites in one statement. Listing
/// `status` in the SET costs nothing there: PostgreSQL compares values to decide whether indexes
/// must change (HOT update). SQLite decides by the SET list alone, so it has its own clause.
macro_rules! finding_on_conflict {
    () => {
        concat!(
            " ON CONFLICT (asset_id, software_id, cve_id) DO UPDATE SET \
change_kind = CASE WHEN findings.status = 'fixed' THEN 3 WHEN ",
            crate::common::finding_changed!(),
            " THEN 1 ELSE 2 END, \
reopened_count = findings.reopened_count + CASE WHEN findings.status = 'fixed' THEN 1 ELSE 0 END, \
status = 'open', fixed_at = NULL, ",
            crate::common::finding_set_content!(),
            " RETURNING change_kind"
        )
    };
}
pub(crate) use finding_on_conflict;

macro_rules! vulnerability_insert_columns {
    () => {
        "cve_id, severity, cvss, cvss_vector, epss, public_exploit, exploit_verified, exploit_in_kit, exploit_types, published_on, updated_on, description, source_exposed_machines, first_observed, updated_at"
    };
}
pub(crate) use vulnerability_insert_columns;

macro_rules! vulnerability_changed {
    () => {
        "(vulnerabilities.severity IS DISTINCT FROM excluded.severity OR vulnerabilities.cvss IS DISTINCT FROM excluded.cvss \
OR vulnerabilities.cvss_vector IS DISTINCT FROM excluded.cvss_vector OR vulnerabilities.epss IS DISTINCT FROM excluded.epss \
OR vulnerabilities.public_exploit IS DISTINCT FROM excluded.public_exploit \
OR vulnerabilities.exploit_verified IS DISTINCT FROM excluded.exploit_verified \
OR vulnerabilities.exploit_in_kit IS DISTINCT FROM excluded.exploit_in_kit \
OR vulnerabilities.exploit_types IS DISTINCT FROM excluded.exploit_types \
OR vulnerabilities.published_on IS DISTINCT FROM excluded.published_on \
OR vulnerabilities.updated_on IS DISTINCT FROM excluded.updated_on \
OR vulnerabilities.description IS DISTINCT FROM excluded.description)"
    };
}

macro_rules! vulnerability_on_conflict {
    () => {
        concat!(
            " ON CONFLICT (cve_id) DO UPDATE SET change_kind = CASE WHEN ",
            crate::common::vulnerability_changed!(),
            " THEN 1 ELSE 2 END, updated_at = CASE WHEN ",
            crate::common::vulnerability_changed!(),
            " THEN excluded.updated_at ELSE vulnerabilities.updated_at END, \
severity = excluded.severity, cvss = excluded.cvss, cvss_vector = excluded.cvss_vector, epss = excluded.epss, \
public_exploit = excluded.public_exploit, exploit_verified = excluded.exploit_verified, \
exploit_in_kit = excluded.exploit_in_kit, exploit_types = excluded.exploit_types, \
published_on = excluded.published_on, updated_on = excluded.updated_on, description = excluded.description, \
source_exposed_machines = excluded.source_exposed_machines \
RETURNING change_kind"
        )
    };
}
pub(crate) use vulnerability_changed;
pub(crate) use vulnerability_on_conflict;

/// A secondary source's catalogue write: fills only what the stored entry lacks.
macro_rules! vulnerability_fill_on_conflict {
    () => {
        " ON CONFLICT (cve_id) DO UPDATE SET change_kind = CASE WHEN \
(vulnerabilities.severity IS NULL AND excluded.severity IS NOT NULL) \
OR (vulnerabilities.cvss IS NULL AND excluded.cvss IS NOT NULL) \
OR (vulnerabilities.cvss_vector IS NULL AND excluded.cvss_vector IS NOT NULL) \
OR (vulnerabilities.published_on IS NULL AND excluded.published_on IS NOT NULL) \
OR (vulnerabilities.description IS NULL AND excluded.description IS NOT NULL) THEN 1 ELSE 2 END, \
severity = COALESCE(vulnerabilities.severity, excluded.severity), cvss = COALESCE(vulnerabilities.cvss, excluded.cvss), \
cvss_vector = COALESCE(vulnerabilities.cvss_vector, excluded.cvss_vector), \
published_on = COALESCE(vulnerabilities.published_on, excluded.published_on), \
description = COALESCE(vulnerabilities.description, excluded.description) \
RETURNING change_kind"
    };
}
pub(crate) use vulnerability_fill_on_conflict;

/// The `SET` item a finding's fix adds: its last observation becomes the later of its own and its
/// integration's last full read (see `observed_last`), which saw it open but may have left its row
/// alone.
macro_rules! carry_observed {
    () => {
        "last_observed = COALESCE((SELECT i.findings_observed_at FROM integrations i \
WHERE i.id = findings.integration_id AND i.findings_observed_at > findings.last_observed), last_observed)"
    };
}

/// The `SET` list of a finding's fix by reconciliation ($3: the time of the fix).
macro_rules! fix_by_reconciling {
    () => {
        concat!(
            "UPDATE findings SET status = 'fixed', fixed_at = $3, fixed_decision = decision, fixed_due_at = due_at, decision = NULL, due_at = NULL, ",
            carry_observed!()
        )
    };
}
// Reconciliation: the same three statements on both backends. $1 integration, $2 run, $3 now.
/// Assets that only vulnerability rows named (`known_from = 'vulnerability_data'`) are left out of
/// the circuit breaker's count: the device list never returns them, so they say nothing about
/// whether the list was cut short.
pub(crate) const RECONCILE_COUNT: &str = "SELECT count(*) AS active, \
COALESCE(sum(CASE WHEN seen_run IS DISTINCT FROM $2 THEN 1 ELSE 0 END), 0) AS unseen \
FROM assets WHERE integration_id = $1 AND status = 'active' AND known_from = 'inventory'";
pub(crate) const RECONCILE_ASSETS: &str = "UPDATE assets SET status = 'missing', missing_since = $3 \
WHERE integration_id = $1 AND status = 'active' AND seen_run IS DISTINCT FROM $2";
/// Reconciling after a delta, which reads the device list but not every vulnerability row: an
/// asset known only from vulnerability data has no evidence either way, and stays as it is.
pub(crate) const RECONCILE_LISTED_ASSETS: &str = "UPDATE assets SET status = 'missing', missing_since = $3 \
WHERE integration_id = $1 AND status = 'active' AND seen_run IS DISTINCT FROM $2 AND known_from = 'inventory'";
/// What a finding's fix by reconciliation sets.
pub(crate) const FIX_BY_RECONCILING: &str = fix_by_reconciling!();

/// The condition "the run did not observe this finding": it did not write it (`seen_run`) and,
/// when a full read left unchanged rows alone (`sighted`), its id is among the integration's open
/// findings it did not find unchanged (the temporary table `unsighted` of the reconciling
/// connection, see `sqlite::bulk::list_unsighted`; a temporary table is found before any other
/// of its name on both engines).
pub(crate) fn unseen_finding(sighted: bool) -> &'static str {
    if sighted {
        "(seen_run IS DISTINCT FROM $2 AND id IN (SELECT id FROM unsighted))"
    } else {
        "seen_run IS DISTINCT FROM $2"
    }
}

/// Reconciling after a full read: the open findings it did not observe, and those of missing
/// assets, are fixed. When it left unchanged rows alone, the statement reads only the few
/// candidates in `unsighted` by id (walking the integration's open findings to test each took
/// 0.7 s at 1.8 M). Those include every open finding of a missing asset: a finding the read
/// found unchanged marked its asset seen (as every row of a batch does), so it is not missing.
pub(crate) fn reconcile_findings(sighted: bool) -> String {
    if sighted {
        format!(
            "{FIX_BY_RECONCILING} WHERE id IN (SELECT id FROM unsighted) \
             AND integration_id = $1 AND status = 'open' AND seen_run IS DISTINCT FROM $2"
        )
    } else {
        format!(
            "{FIX_BY_RECONCILING} WHERE integration_id = $1 AND status = 'open' \
             AND ({} OR asset_id IN (SELECT id FROM assets WHERE integration_id = $1 AND status = 'missing'))",
            unseen_finding(false)
        )
    }
}

/// Reconciling after a delta: only the open findings of missing assets are fixed. $1 integration,
/// $3 time ($2, the run, is bound for symmetry with `reconcile_findings` and unused).
///
/// The findings are listed from the missing assets (by the natural key, which leads with the
/// asset) and then fixed by id. Asked as "the integration's open findings whose asset is
/// missing", SQLite walked every open finding of the integration to test its asset: 0.26 s at
/// 1.8 M findings for a delta that fixes none, a fifth of it (0.001 s now; PostgreSQL started
/// from the assets either way).
pub(crate) const RECONCILE_FINDINGS_OF_MISSING: &str = concat!(
    fix_by_reconciling!(),
    " WHERE id IN (SELECT f.id FROM assets a JOIN findings f ON f.asset_id = a.id \
WHERE a.integration_id = $1 AND a.status = 'missing' AND f.status = 'open') \
AND integration_id = $1 AND status = 'open' AND $2 IS NOT NULL"
);

/// A delta's `Fixed` change. $1 integration, $2 asset source id, $3..$5 software, $6 CVE, $7 time,
/// $8 the run's start (when Rampart learnt of the fix).
pub(crate) const FIX_FINDING: &str = concat!(
    "UPDATE findings SET status = 'fixed', fixed_at = $7, fix_recorded_at = $8, fixed_decision = decision, fixed_due_at = due_at, decision = NULL, due_at = NULL, ",
    carry_observed!(),
    " WHERE status = 'open' AND cve_id = $6 \
AND asset_id = (SELECT id FROM assets WHERE integration_id = $1 AND source_id = $2) \
AND software_id = (SELECT id FROM software WHERE vendor = $3 AND name = $4 AND version = $5)"
);

/// Splits delta changes into runs of consecutive upserts and single fixes, keeping their order.
pub(crate) enum DeltaStep<'a> {
    Upsert(Vec<Finding>),
    Fix(&'a FindingKey, DateTime<Utc>),
}

pub(crate) fn delta_steps(changes: &[FindingChange]) -> Vec<DeltaStep<'_>> {
    let mut steps = Vec::new();
    let mut batch: Vec<Finding> = Vec::new();
    for c in changes {
        match c {
            FindingChange::New(f) | FindingChange::Updated(f) => batch.push(f.clone()),
            FindingChange::Fixed { key, at } => {
                if !batch.is_empty() {
                    steps.push(DeltaStep::Upsert(std::mem::take(&mut batch)));
                }
                steps.push(DeltaStep::Fix(key, *at));
            }
        }
    }
    if !batch.is_empty() {
        steps.push(DeltaStep::Upsert(batch));
    }
    steps
}

/// Run modes are words chosen by the engine (`full`, `delta`, ...).
pub(crate) fn check_mode(mode: &str) -> Result<()> {
    let ok = (1..=32).contains(&mode.len())
        && mode
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "'{}' is not a run mode: use a lower-case word such as full or delta",
            mode.chars().take(40).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sighted_ids_are_kept_whatever_their_spread() {
        let mut s = Sighted::default();
        assert!(s.is_empty());
        s.extend([130, 1, 64, 1, -5, 1 << 40]);
        for id in [1, 64, 130, 1 << 40] {
            assert!(s.contains(id), "{id}");
        }
        assert!(!s.contains(2) && !s.contains(-5) && !s.contains((1 << 40) + 1));
    }

    #[test]
    fn the_content_hash_sees_every_content_column_and_repeats() {
        use chrono::TimeZone as _;
        let base = Finding {
            key: rampart_model::FindingKey {
                asset_source_id: "d1".into(),
                software_vendor: "v".into(),
                software_name: "n".into(),
                software_version: "1".into(),
                cve_id: "CVE-2024-0001".parse().unwrap(),
            },
            asset_name: Some("host".into()),
            asset_os_platform: None,
            asset_os_version: None,
            severity: Some(Severity::High),
            cvss: Some(7.5),
            exploitability: Some("NoExploit".into()),
            recommended_update: Some("KB1".into()),
            recommendation_reference: Some("ref".into()),
            first_seen: Utc.timestamp_opt(1_700_000_000, 0).single(),
            last_seen: Utc.timestamp_opt(1_700_000_100, 0).single(),
        };
        let h = finding_content_hash(&base);
        assert_eq!(h, finding_content_hash(&base.clone()));
        // The asset's name is not the finding's content.
        let renamed = Finding {
            asset_name: Some("other".into()),
            ..base.clone()
        };
        assert_eq!(finding_content_hash(&renamed), h);
        let changes: [fn(&mut Finding); 9] = [
            |f| f.severity = Some(Severity::Low),
            |f| f.severity = None,
            |f| f.cvss = Some(7.6),
            |f| f.exploitability = None,
            |f| f.recommended_update = Some("KB2".into()),
            |f| f.recommendation_reference = Some(String::new()),
            |f| f.first_seen = None,
            |f| f.last_seen = f.last_seen.map(|t| t + chrono::TimeDelta::microseconds(1)),
            // The same text in another column.
            |f| std::mem::swap(&mut f.recommended_update, &mut f.recommendation_reference),
        ];
        for (k, change) in changes.iter().enumerate() {
            let mut f = base.clone();
            change(&mut f);
            assert_ne!(finding_content_hash(&f), h, "change {k}");
        }
    }

    #[test]
    fn dedupe_keeps_last_occurrence_in_order() {
        let v = [(1, 'a'), (2, 'b'), (1, 'c'), (3, 'd')];
        let d: Vec<_> = dedupe_last(&v, |x| x.0).into_iter().copied().collect();
        assert_eq!(d, vec![(2, 'b'), (1, 'c'), (3, 'd')]);
    }

    /// The last occurrence of each key, in the order of those occurrences: what `dedupe_last`
    /// must return, worked out the slow way.
    fn last_occurrences<T: Copy, K: PartialEq>(items: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
        items
            .iter()
            .enumerate()
            .filter(|(i, x)| !items[i + 1..].iter().any(|y| key(y) == key(x)))
            .map(|(_, x)| *x)
            .collect()
    }

    proptest::proptest! {
        /// Few distinct keys (most batches repeat some) and many (most repeat none), and batches
        /// one after another on the same thread, which reuses its set of hashes.
        #[test]
        fn dedupe_keeps_the_last_of_each_key(
            batches in proptest::collection::vec(
                (1u16..400, proptest::collection::vec((0u16..1000, proptest::num::u8::ANY), 0..300)),
                1..4,
            ),
        ) {
            for (range, items) in batches {
                let items: Vec<(u16, u8)> = items.into_iter().map(|(k, v)| (k % range, v)).collect();
                let got: Vec<_> = dedupe_last(&items, |x| x.0).into_iter().copied().collect();
                proptest::prop_assert_eq!(got, last_occurrences(&items, |x| x.0));
            }
        }
    }

    /// Keys that differ but hash alike are both kept: a repeated hash is only a reason to compare
    /// the keys themselves.
    #[test]
    fn dedupe_tells_keys_apart_whose_hashes_meet() {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        struct SameHash(u8);
        impl std::hash::Hash for SameHash {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                state.write_u8(0);
            }
        }
        let v = [(SameHash(1), 'a'), (SameHash(2), 'b'), (SameHash(1), 'c')];
        let d: Vec<_> = dedupe_last(&v, |x| x.0).into_iter().copied().collect();
        assert_eq!(d, vec![(SameHash(2), 'b'), (SameHash(1), 'c')]);
        let distinct = [(SameHash(1), 'a'), (SameHash(2), 'b')];
        assert_eq!(dedupe_last(&distinct, |x| x.0).len(), 2);
    }

    #[test]
    fn only_cve_like_text_is_searched_in_cve_ids() {
        for yes in ["CVE-2024-1234", "cve-2024", "2024-12", "-", "e", "VE-20"] {
            assert!(could_be_in_a_cve_id(yes), "{yes}");
        }
        for no in ["openssl", "host-1", "2024_1", "CVE 2024", "cve%", "ﬀ"] {
            assert!(!could_be_in_a_cve_id(no), "{no}");
        }
    }

    #[test]
    fn like_pattern_makes_wildcards_literal() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }

    #[test]
    fn nul_becomes_replacement_character() {
        assert_eq!(clean("a\0b"), "a\u{FFFD}b");
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn breaker_threshold_is_strictly_more_than_the_share() {
        assert!(!breaker_trips(3, 10, 0.30));
        assert!(breaker_trips(4, 10, 0.30));
        assert!(!breaker_trips(0, 0, 0.30));
    }
}
