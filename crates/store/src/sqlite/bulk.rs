//! SQLite's bulk writes: one `BEGIN IMMEDIATE` transaction per call and prepared multi-row
//! `INSERT … ON CONFLICT DO UPDATE` statements of 500 rows, far below SQLite's 32,766
//! bound-parameter limit whatever the batch size. Per-batch look-ups (asset and software ids) pass
//! their keys as one JSON parameter expanded with `json_each`, so they need no parameter budget.
//! What each row's upsert did is counted without returning rows for findings (see
//! `FINDING_SCRATCH`), and with `RETURNING` for the smaller asset and CVE batches.

use rampart_model::RunId;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{AssertSqlSafe, Row as _};

use rampart_model::{Asset, Finding, IntegrationId, Vulnerability};

use crate::cloud_sql::{
    RecommendationRow, recommendation_insert_columns, recommendation_on_conflict,
};
use crate::common::*;
use crate::db::{On, Row, db};
use crate::error::{Result, StoreError};
use crate::first_load_tally::{Resolved, Written};
use crate::priority::{InsertAssessor, StoredAssessment};
use crate::sql_store::{check_run, count_changed_findings, heartbeat};
use crate::types::UpsertCounts;

use super::first_load_writer::FirstLoadWriter;

/// SQLite's limit on bound parameters per statement (SQLITE_MAX_VARIABLE_NUMBER since 3.32).
pub const SQLITE_MAX_PARAMS: usize = 32_766;

/// Rows per multi-row statement. Measured on the 2-core box with 200k findings: 100 rows per
/// statement was ~25 % slower than 500; 1,000 and 2,000 were within the noise of 500.
const ROWS_PER_STATEMENT: usize = 500;

/// Recommendations per statement: one JSON parameter each, so only the RETURNING rows grow.
const RECOMMENDATIONS_PER_STATEMENT: usize = 2000;

/// Page cache of the writer, in KiB (negative `cache_size` = KiB). It also bounds the sorter that
/// rebuilds the by-CVE index after a first load. With that index put off during first loads, the
/// writes are mostly appends: 16 MB was as fast as 32 MB on 2 M findings and kept the sync's peak
/// memory ~30 MB lower (BENCHMARKS.md).
pub(crate) const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// Page cache of the writer while it runs one statement over all of an integration's findings
/// (the by-CVE index rebuild, the summary refresh). Such a statement reads each page once, so a
/// big cache buys nothing, and it also bounds SQLite's sorter: on 2 M findings the fix roll-up's
/// GROUP BY took 0.91 s and 37 MB with 16 MB, 0.63 s and 12 MB with 4 MB.
pub(crate) const SCAN_CACHE_KIB: i64 = 4 * 1024;

/// A timestamp as SQLite stores it: microseconds since the epoch.
fn ts(t: DateTime<Utc>) -> i64 {
    micros(t)
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(micros)
}

fn begin_error(e: sqlx::Error) -> StoreError {
    StoreError::db("starting a write transaction")(e)
}

/// Checks the run and records a sign of life, inside the call's transaction; returns the run's
/// start as stored.
async fn touch_run(
    conn: &mut SqliteConnection,
    integration_id: IntegrationId,
    run_id: RunId,
) -> Result<DateTime<Utc>> {
    let started_at = check_run(On::Sqlite(&mut *conn), integration_id, run_id).await?;
    heartbeat(On::Sqlite(&mut *conn), run_id).await?;
    Ok(started_at)
}

/// Builds `<head> VALUES (?, …), (?, …) <tail>` for `rows` rows of `per_row` values.
///
/// Only anonymous `?` placeholders: sqlx asks SQLite for the name of every parameter it binds,
/// and SQLite finds a named parameter (`$n`, `?n`) by a linear scan over all of them — quadratic
/// in a statement with thousands of parameters (measured: 12k rows/s instead of 100k+). Values
/// shared by all rows (integration, run, time) are therefore bound again on every row.
fn multi_row_sql(head: &str, per_row: usize, rows: usize, tail: &str) -> String {
    let mut row = String::with_capacity(per_row * 2 + 1);
    row.push('(');
    for i in 0..per_row {
        if i > 0 {
            row.push(',');
        }
        row.push('?');
    }
    row.push(')');
    repeat_rows(head, &row, rows, tail)
}

/// `<head> VALUES <row>, <row>, … <tail>`.
fn repeat_rows(head: &str, row: &str, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + 8 + rows * (row.len() + 1));
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push_str(row);
    }
    sql.push_str(tail);
    sql
}

/// Values per row of the multi-row upserts (the columns of their INSERT lists).
const ASSET_PARAMS: usize = 28;
const FINDING_PARAMS: usize = 21;
const VULN_PARAMS: usize = 15;

fn rows_per_statement(per_row: usize) -> usize {
    ROWS_PER_STATEMENT.min(SQLITE_MAX_PARAMS / per_row)
}

async fn count_kinds(
    conn: &mut SqliteConnection,
    q: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    counts: &mut UpsertCounts,
    op: &'static str,
) -> Result<()> {
    let rows = q.fetch_all(&mut *conn).await.map_err(db(op))?;
    for r in rows {
        let k: i64 = r.try_get(0).map_err(db(op))?;
        counts.add_kind(k, 1);
    }
    Ok(())
}

pub(crate) async fn upsert_assets_in(
    conn: &mut SqliteConnection,
    integration_id: IntegrationId,
    run_id: RunId,
    assets: &[Asset],
) -> Result<UpsertCounts> {
    let observed = ts(touch_run(conn, integration_id, run_id).await?);
    let rows = dedupe_last(assets, asset_key);
    let mut counts = UpsertCounts::default();
    let per = rows_per_statement(ASSET_PARAMS);
    for chunk in rows.chunks(per) {
        let sql = multi_row_sql(
            concat!("INSERT INTO assets (", asset_insert_columns!(), ")"),
            ASSET_PARAMS,
            chunk.len(),
            asset_on_conflict!(),
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in chunk {
            q = q
                .bind(integration_id.get())
                .bind(clean(&a.source_id))
                .bind(a.kind.as_str())
                .bind(clean_opt(&a.name))
                .bind(clean_opt(&a.os_platform))
                .bind(clean_opt(&a.os_version))
                .bind(clean_opt(&a.health_status))
                .bind(clean_opt(&a.onboarding_status))
                .bind(clean_opt(&a.exposure_level))
                .bind(clean_opt(&a.risk_score))
                .bind(clean_opt(&a.device_value))
                .bind(clean(&json_list(&a.ip_addresses)))
                .bind(clean(&json_list(&a.tags)))
                .bind(a.rbac_group_id)
                .bind(clean_opt(&a.rbac_group_name))
                .bind(clean_opt(&a.aad_device_id))
                .bind(clean_opt(&a.azure_resource_id))
                .bind(a.is_duplicate)
                .bind(clean_opt(&a.merged_into))
                .bind(opt_ts(a.first_seen))
                .bind(opt_ts(a.last_seen))
                .bind(clean_opt(&a.external_ip_address))
                .bind(a.os_build)
                .bind(clean_opt(&a.os_processor))
                .bind(a.is_aad_joined)
                .bind(observed)
                .bind(observed)
                .bind(run_id.get());
        }
        count_kinds(conn, q, &mut counts, "upserting assets").await?;
    }
    Ok(counts)
}

/// What a batch of findings needs before it meets the database: the rows (the last of each key),
/// the distinct assets and software (as JSON for `json_each`, and each row's place in them), and
/// the new rows' assessments. Built before the transaction, so that this work overlaps the
/// previous batch's writing (`concurrent_writes`) instead of holding the write lock: measured at
/// 20,000 devices, cleaning and hashing each row's keys and assessing it inside the transaction
/// took ~3.5 CPU-s of the lock's time.
pub(super) struct FindingBatch<'a> {
    pub rows: Vec<&'a Finding>,
    /// The distinct asset source ids, in the order of `assets_json`.
    pub assets: Vec<String>,
    /// The distinct (vendor, name, version), in the order of `software_json`.
    pub software: Vec<[String; 3]>,
    /// Each row's asset and software, as places in `assets` and `software`.
    pub places: Vec<(usize, usize)>,
    pub assets_json: String,
    pub software_json: String,
    /// Each row's assessment if it is new (empty without an assessor).
    pub assessments: Vec<Option<StoredAssessment>>,
    /// Each row's `finding_content_hash`.
    pub hashes: Vec<i64>,
}

impl<'a> FindingBatch<'a> {
    fn new(findings: &'a [Finding], assessor: Option<&dyn InsertAssessor>) -> Result<Self> {
        let rows = dedupe_last(findings, finding_key);
        let keys = BatchKeys::of(&rows);
        let assets_json = serde_json::to_string(&keys.assets).map_err(|e| {
            StoreError::InvalidInput(format!("cannot encode the batch's asset ids: {e}"))
        })?;
        let software_json = serde_json::to_string(&keys.software).map_err(|e| {
            StoreError::InvalidInput(format!("cannot encode the batch's software: {e}"))
        })?;
        let assessments = match assessor {
            Some(a) => rows.iter().map(|f| a.assess(f)).collect(),
            None => Vec::new(),
        };
        let hashes = rows.iter().map(|f| finding_content_hash(f)).collect();
        Ok(Self {
            assets: keys
                .asset_column(0)
                .into_iter()
                .map(|a| a.unwrap_or_default().to_owned())
                .collect(),
            software: keys
                .software
                .iter()
                .map(|s| s.each_ref().map(|c| c.to_string()))
                .collect(),
            places: keys.places,
            rows,
            assets_json,
            software_json,
            assessments,
            hashes,
        })
    }
}

/// The ids of a batch's distinct assets and software, in the batch's order.
pub(super) struct BatchIds {
    assets: Vec<i64>,
    software: Vec<i64>,
}

impl BatchIds {
    /// The ids of `assets` and `software` (a batch's, in its order) from what the database
    /// answered for them.
    pub(super) fn in_order(
        assets: &[String],
        asset_ids: &FastMap<String, i64>,
        software: &[[String; 3]],
        software_ids: &FastMap<[String; 3], i64>,
    ) -> Result<Self> {
        let assets = assets
            .iter()
            .map(|a| {
                asset_ids.get(a).copied().ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "asset '{}' vanished while its findings were written",
                        a.chars().take(60).collect::<String>()
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let software = software
            .iter()
            .map(|s| {
                software_ids.get(s).copied().ok_or_else(|| {
                    StoreError::Corrupt(
                        "software vanished while its findings were written".to_owned(),
                    )
                })
            })
            .collect::<Result<_>>()?;
        Ok(BatchIds { assets, software })
    }

    pub(super) fn of(&self, places: (usize, usize)) -> Result<(i64, i64)> {
        let asset = self.assets.get(places.0).copied();
        let software = self.software.get(places.1).copied();
        asset.zip(software).ok_or_else(|| {
            StoreError::Corrupt("a finding's asset or software has no id in its batch".to_owned())
        })
    }
}

/// Resolves the asset and software ids of a batch of findings, creating stub assets and software
/// rows that do not exist yet, and marks the batch's assets seen by the run.
/// Returns their ids in the batch's order.
async fn resolve_ids(
    conn: &mut SqliteConnection,
    integration_id: IntegrationId,
    run_id: RunId,
    observed: i64,
    batch: &FindingBatch<'_>,
) -> Result<BatchIds> {
    let (assets_json, software_json) = (&batch.assets_json, &batch.software_json);
    for (sql, op) in MARK_BATCH_ASSETS {
        sqlx::query(sql)
            .bind(integration_id.get())
            .bind(observed)
            .bind(run_id.get())
            .bind(assets_json.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db(op))?;
    }
    let asset_rows = sqlx::query(SELECT_BATCH_ASSETS)
        .bind(integration_id.get())
        .bind(assets_json.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(db("looking up the findings' assets"))?;
    let mut asset_ids = FastMap::with_capacity_and_hasher(asset_rows.len(), Default::default());
    for r in asset_rows.into_iter().map(Row::Sqlite) {
        asset_ids.insert(r.text("source_id")?, r.int("id")?);
    }

    sqlx::query(INSERT_BATCH_SOFTWARE)
        .bind(software_json.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("recording software"))?;
    let software_rows = sqlx::query(SELECT_BATCH_SOFTWARE)
        .bind(software_json.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(db("looking up software"))?;
    let mut software_ids: FastMap<[String; 3], i64> =
        FastMap::with_capacity_and_hasher(software_rows.len(), Default::default());
    for r in software_rows.into_iter().map(Row::Sqlite) {
        software_ids.insert(
            [r.text("vendor")?, r.text("name")?, r.text("version")?],
            r.int("id")?,
        );
    }
    BatchIds::in_order(&batch.assets, &asset_ids, &batch.software, &software_ids)
}

/// Creates the stub assets of a batch of findings and marks its assets seen: (SQL, what it does).
/// `$1` integration, `$2` the run's start, `$3` the run, `$4` the batch's assets as JSON.
/// Assets first reported by a finding (the device list did not return them) are created from it,
/// with its device name and OS, as known from vulnerability data, seen by this run. Then a finding
/// is evidence that its asset is there: the others are marked seen.
pub(super) const MARK_BATCH_ASSETS: [(&str, &str); 2] = [
    (
        "INSERT INTO assets (integration_id, source_id, kind, name, os_platform, os_version, known_from, status, \
         first_observed, last_observed, seen_run) \
         SELECT $1, j.value ->> 0, 'device', j.value ->> 1, j.value ->> 2, j.value ->> 3, 'vulnerability_data', \
         'active', $2, $2, $3 FROM json_each($4) j WHERE true \
         ON CONFLICT (integration_id, source_id) DO NOTHING",
        "creating assets first reported by findings",
    ),
    (
        "UPDATE assets SET seen_run = $3, last_observed = $2, status = 'active', missing_since = NULL \
         WHERE integration_id = $1 AND source_id IN (SELECT j.value ->> 0 FROM json_each($4) j) \
         AND seen_run IS DISTINCT FROM $3",
        "marking the findings' assets seen",
    ),
];

/// The ids of a batch's assets: `$1` integration, `$2` the assets as JSON.
pub(super) const SELECT_BATCH_ASSETS: &str = "SELECT id, source_id FROM assets WHERE integration_id = $1 \
     AND source_id IN (SELECT j.value ->> 0 FROM json_each($2) j)";

/// Records a batch's software (`$1`, as JSON) not known yet.
pub(super) const INSERT_BATCH_SOFTWARE: &str = "INSERT INTO software (vendor, name, version) \
     SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2 FROM json_each($1) j WHERE true \
     ON CONFLICT (vendor, name, version) DO NOTHING";

/// The ids of a batch's software (`$1`, as JSON).
pub(super) const SELECT_BATCH_SOFTWARE: &str = "SELECT s.id, s.vendor, s.name, s.version FROM json_each($1) j \
     JOIN software s ON s.vendor = j.value ->> 0 AND s.name = j.value ->> 1 AND s.version = j.value ->> 2";

/// SQLite's finding upsert clause. Unlike PostgreSQL's it leaves `status` (and the columns that
/// go with it) alone: SQLite rewrites the entries of every index whose columns appear in an UPDATE's
/// SET list, whatever the values, and `status` is in two indexes. With it in the list an unchanged
/// re-sync rewrote ~3 index entries per row; without it, none. Reopening is a separate statement
/// over the few rows that need it. So is the recommended update, which the exceptions' index
/// (findings_open_by_software) holds: in the list, it cost a no-change re-read of 185,561 rows
/// 0.33 s (`set_recommended_updates`).
macro_rules! sqlite_finding_on_conflict {
    () => {
        concat!(
            " ON CONFLICT (asset_id, software_id, cve_id) DO UPDATE SET \
change_kind = CASE WHEN findings.status = 'fixed' THEN 3 WHEN ",
            finding_changed!(),
            " THEN 1 ELSE 2 END, \
severity = excluded.severity, cvss = excluded.cvss, exploitability = excluded.exploitability, \
recommendation_reference = excluded.recommendation_reference, \
first_seen = excluded.first_seen, last_seen = excluded.last_seen, \
last_observed = excluded.last_observed, seen_run = excluded.seen_run, \
content_hash = excluded.content_hash"
        )
    };
}

/// Sets the recommended update of the rows the upsert changed or reopened (those in
/// `finding_changes`) from the batch: it is kept out of the upsert's SET list (see
/// `sqlite_finding_on_conflict`).
async fn set_recommended_updates(
    conn: &mut SqliteConnection,
    batch: &FindingBatch<'_>,
    ids: &BatchIds,
) -> Result<()> {
    let op = "updating recommended updates";
    let changed = sqlx::query(SELECT_CHANGED_FINDINGS)
        .fetch_all(&mut *conn)
        .await
        .map_err(db(op))?;
    let mut changed_ids: FastMap<(i64, i64, String), i64> = FastMap::default();
    for r in changed.into_iter().map(Row::Sqlite) {
        changed_ids.insert(
            (r.int("asset_id")?, r.int("software_id")?, r.text("cve_id")?),
            r.int("id")?,
        );
    }
    let mut updates: Vec<(i64, Option<String>)> = Vec::with_capacity(changed_ids.len());
    for (f, &places) in batch.rows.iter().zip(&batch.places) {
        let (asset, software) = ids.of(places)?;
        if let Some(&id) = changed_ids.get(&(asset, software, f.key.cve_id.as_str().to_owned())) {
            updates.push((id, clean_opt(&f.recommended_update).map(|c| c.into_owned())));
        }
    }
    let json = serde_json::to_string(&updates)
        .map_err(|e| StoreError::InvalidInput(format!("cannot encode recommended updates: {e}")))?;
    sqlx::query(SET_RECOMMENDED_UPDATES)
        .bind(json)
        .execute(&mut *conn)
        .await
        .map_err(db(op))?;
    Ok(())
}

/// The highest finding id: rows inserted after it are new.
pub(super) const MAX_FINDING_ID: &str = "SELECT COALESCE(max(id), 0) FROM findings";
/// The rows inserted since `MAX_FINDING_ID` gave `$1`.
pub(super) const COUNT_NEW_FINDINGS: &str = "SELECT count(*) FROM findings WHERE id > $1";
/// What the upserts since the last `DELETE FROM finding_changes` updated (1) and reopened (3).
pub(super) const COUNT_CHANGED_FINDINGS: &str =
    "SELECT kind, count(*) AS n FROM finding_changes GROUP BY kind";
/// Reopens the fixed findings an upsert met again.
pub(super) const REOPEN_CHANGED_FINDINGS: &str = "UPDATE findings SET status = 'open', fixed_at = NULL, reopened_count = reopened_count + 1 \
     WHERE id IN (SELECT id FROM finding_changes WHERE kind = 3)";
/// The rows the upserts changed or reopened, with their keys.
pub(super) const SELECT_CHANGED_FINDINGS: &str = "SELECT f.id, f.asset_id, f.software_id, f.cve_id FROM findings f \
     WHERE f.id IN (SELECT id FROM finding_changes)";
/// Sets recommended updates from `$1`, a JSON array of [finding id, update].
pub(super) const SET_RECOMMENDED_UPDATES: &str = "UPDATE findings SET recommended_update = u.value ->> 1 FROM json_each($1) u \
     WHERE findings.id = u.value ->> 0";

/// Per-connection scratch objects of the finding upsert. The trigger records the rows an upsert
/// updated or reopened, so that counting needs neither RETURNING (sqlx hands each returned row to
/// the async side one by one: measured a third of the upsert's time) nor a second look-up per row.
/// New rows are counted by id: SQLite gives them ids above the previous maximum.
pub(super) const FINDING_SCRATCH: [&str; 2] = [
    "CREATE TEMP TABLE IF NOT EXISTS finding_changes (id INTEGER NOT NULL, kind INTEGER NOT NULL)",
    "CREATE TEMP TRIGGER IF NOT EXISTS finding_changed AFTER UPDATE OF change_kind ON main.findings \
     WHEN NEW.change_kind IN (1, 3) \
     BEGIN INSERT INTO finding_changes (id, kind) VALUES (NEW.id, NEW.change_kind); END",
];

/// The multi-row finding upsert of `rows` rows like `row` ([`finding_row`]). Without assessments
/// the assessment columns are left out (a full re-read binds 6 fewer values per row).
pub(super) fn finding_upsert_sql(assessed: bool, row: &str, rows: usize) -> String {
    let head = if assessed {
        concat!(
            "INSERT INTO findings (",
            finding_insert_columns!(),
            ", ",
            finding_assessment_columns!(),
            ")"
        )
    } else {
        concat!("INSERT INTO findings (", finding_insert_columns!(), ")")
    };
    repeat_rows(head, row, rows, sqlite_finding_on_conflict!())
}

/// One row of the finding upsert's VALUES. The values every row shares (integration, time of
/// observation, run) are integers of ours: written into the statement as literals, they are not
/// bound again on every row (4 of 14 values). The text stays the same for the whole run, so the
/// prepared statement is reused. The rest are bound in this order: asset, software, CVE,
/// severity, CVSS, exploitability, recommended update, reference, first seen, last seen, content
/// hash, then with `assessed` decision, priority, due date, clock start, explanation, assessed at.
pub(super) fn finding_row(
    integration_id: IntegrationId,
    run_id: RunId,
    observed: i64,
    assessed: bool,
) -> String {
    if assessed {
        format!(
            "({integration_id},?,?,?,?,?,?,?,?,?,?,{observed},{observed},{run_id},?,?,?,?,?,?,?)"
        )
    } else {
        format!("({integration_id},?,?,?,?,?,?,?,?,?,?,{observed},{observed},{run_id},?)")
    }
}

/// The finding upsert's rows per statement.
pub(super) const FINDINGS_PER_STATEMENT: usize = ROWS_PER_STATEMENT;
// An assessed row binds all but the 4 literal values of its INSERT list.
const _: () = assert!(FINDINGS_PER_STATEMENT * (FINDING_PARAMS - 4) <= SQLITE_MAX_PARAMS);

/// One multi-row upsert statement for the batch's rows at `at` (places in `batch.rows`), every
/// value bound. `assessed_at`: when the new rows' assessments were made (the run's start), if
/// they were.
fn bind_findings<'q>(
    row: &str,
    batch: &FindingBatch<'q>,
    ids: &BatchIds,
    at: &[usize],
    assessed_at: Option<i64>,
) -> Result<sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>> {
    let sql = finding_upsert_sql(assessed_at.is_some(), row, at.len());
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for &k in at {
        let (Some(f), Some(&places), Some(&hash)) =
            (batch.rows.get(k), batch.places.get(k), batch.hashes.get(k))
        else {
            return Err(StoreError::Corrupt(
                "a finding's place in its batch is out of range".to_owned(),
            ));
        };
        let (asset_id, software_id) = ids.of(places)?;
        q = q
            .bind(asset_id)
            .bind(software_id)
            .bind(f.key.cve_id.as_str())
            .bind(f.severity.map(severity_code))
            .bind(finite(f.cvss))
            .bind(clean_opt(&f.exploitability))
            .bind(clean_opt(&f.recommended_update))
            .bind(clean_opt(&f.recommendation_reference))
            .bind(opt_ts(f.first_seen))
            .bind(opt_ts(f.last_seen))
            .bind(hash);
        let Some(assessed_at) = assessed_at else {
            continue;
        };
        let assessed = batch.assessments.get(k).copied().flatten();
        q = q
            .bind(assessed.map(|a| a.decision.as_str()))
            .bind(assessed.map(|a| f64::from(a.priority)))
            .bind(assessed.map(|a| ts(a.due_at)))
            .bind(assessed.map(|a| ts(a.clock_start)))
            .bind(assessed.map(|a| a.explanation_id))
            .bind(assessed.map(|_| assessed_at));
    }
    Ok(q)
}

/// Splits a batch into the rows that must be upserted and the stored, open findings it repeats
/// unchanged (their `content_hash` equals the row's): those need no upsert, only the run's mark.
/// One look-up over the batch's assets' open findings, handed back as one text per asset (sqlx
/// hands each returned row to the async side one by one). Returns (places in `batch.rows` to
/// upsert, ids of the unchanged findings).
async fn split_unchanged(
    conn: &mut SqliteConnection,
    batch: &FindingBatch<'_>,
    ids: &BatchIds,
) -> Result<(Vec<usize>, Vec<i64>)> {
    let op = "looking up stored findings";
    let assets = serde_json::to_string(&ids.assets)
        .map_err(|e| StoreError::InvalidInput(format!("cannot encode the batch's assets: {e}")))?;
    // One row per asset (the natural key's order, so grouping needs no sort): the asset's id is
    // not turned into text once per finding.
    let stored: Vec<(i64, String)> = sqlx::query_as(
        "SELECT f.asset_id, group_concat(f.software_id || ' ' || f.content_hash || ' ' || f.id || ' ' || f.cve_id, ' ') \
         FROM findings f WHERE f.asset_id IN (SELECT value FROM json_each($1)) \
         AND f.status = 'open' AND f.content_hash IS NOT NULL GROUP BY f.asset_id",
    )
    .bind(assets)
    .fetch_all(&mut *conn)
    .await
    .map_err(db(op))?;
    // (asset, software, CVE) → (content hash, finding id). CVE ids hold no spaces (`CveId`).
    // Sized for the batch: its assets' stored rows are about as many as its rows.
    let mut known: FastMap<(i64, i64, &str), (i64, i64)> =
        FastMap::with_capacity_and_hasher(batch.rows.len(), Default::default());
    let bad = || StoreError::Corrupt("a stored finding's key did not read back".to_owned());
    for (asset, listed) in &stored {
        let mut fields = listed.split(' ').filter(|t| !t.is_empty());
        while let Some(software) = fields.next() {
            let software: i64 = software.parse().map_err(|_| bad())?;
            let mut int =
                || -> Result<i64> { fields.next().and_then(|t| t.parse().ok()).ok_or_else(bad) };
            let (hash, id) = (int()?, int()?);
            let cve = fields.next().ok_or_else(bad)?;
            known.insert((*asset, software, cve), (hash, id));
        }
    }
    let mut upsert = Vec::with_capacity(batch.rows.len());
    let mut unchanged = Vec::with_capacity(known.len());
    for (k, ((f, &places), &hash)) in batch
        .rows
        .iter()
        .zip(&batch.places)
        .zip(&batch.hashes)
        .enumerate()
    {
        let (asset, software) = ids.of(places)?;
        match known.get(&(asset, software, f.key.cve_id.as_str())) {
            Some(&(stored_hash, id)) if stored_hash == hash => unchanged.push(id),
            _ => upsert.push(k),
        }
    }
    Ok((upsert, unchanged))
}

/// Upserts a batch inside the caller's transaction; returns what it did, and with
/// `leave_unchanged` the ids of the stored open findings it repeated unchanged and left alone
/// (without, it marks them seen by the run).
async fn upsert_batch_in(
    conn: &mut SqliteConnection,
    integration_id: IntegrationId,
    run_id: RunId,
    batch: &FindingBatch<'_>,
    leave_unchanged: bool,
) -> Result<BatchDone> {
    let started_at = touch_run(conn, integration_id, run_id).await?;
    let observed = ts(started_at);
    let rows = &batch.rows;
    let mut counts = UpsertCounts::default();
    if rows.is_empty() {
        return Ok(BatchDone {
            counts,
            unchanged: Vec::new(),
            ids: None,
            started_at,
        });
    }
    let ids = resolve_ids(conn, integration_id, run_id, observed, batch).await?;
    for sql in FINDING_SCRATCH {
        exec(conn, sql, "preparing the finding upsert").await?;
    }
    exec(
        conn,
        "DELETE FROM finding_changes",
        "preparing the finding upsert",
    )
    .await?;
    let max_before: i64 = sqlx::query_scalar(MAX_FINDING_ID)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("preparing the finding upsert"))?;

    let assessed = !batch.assessments.is_empty();
    let assessed_at = assessed.then_some(observed);
    let row = finding_row(integration_id, run_id, observed, assessed);
    // A first load (assessed rows) has nothing stored to compare with.
    let (upsert, mut unchanged) = if assessed {
        ((0..rows.len()).collect(), Vec::new())
    } else {
        split_unchanged(conn, batch, &ids).await?
    };
    if !leave_unchanged && !unchanged.is_empty() {
        // What the upsert would have done to them: mark them seen, as unchanged. Rowid
        // look-ups, and no index holds these columns.
        let json = serde_json::to_string(&unchanged).map_err(|e| {
            StoreError::InvalidInput(format!("cannot encode unchanged findings: {e}"))
        })?;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE findings SET seen_run = {run_id}, last_observed = {observed}, change_kind = 2 \
             WHERE id IN (SELECT value FROM json_each($1))"
        )))
        .bind(json)
        .execute(&mut *conn)
        .await
        .map_err(db("marking unchanged findings seen"))?;
        unchanged.clear();
    }
    let per_statement = FINDINGS_PER_STATEMENT;
    let chunks: Vec<&[usize]> = upsert.chunks(per_statement).collect();
    let bind = |at: &[usize]| bind_findings(&row, batch, &ids, at, assessed_at);
    let mut next = chunks.first().map(|at| bind(at)).transpose()?;
    for i in 0..chunks.len() {
        let Some(q) = next.take() else { break };
        // SQLite runs on its own thread: while it executes this statement, the next one is bound
        // here (sqlx sends the statement on the first poll, which `join!` does first).
        let (done, bound) = futures::join!(q.execute(&mut *conn), async {
            chunks.get(i + 1).map(|at| bind(at)).transpose()
        });
        done.map_err(db("upserting findings"))?;
        next = bound?;
    }

    let new: i64 = sqlx::query_scalar(COUNT_NEW_FINDINGS)
        .bind(max_before)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("counting new findings"))?;
    counts.add_kind(0, as_u64(new));
    let changed = sqlx::query(COUNT_CHANGED_FINDINGS)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("counting changed findings"))?;
    for r in changed.into_iter().map(Row::Sqlite) {
        counts.add_kind(r.int("kind")?, as_u64(r.int("n")?));
    }
    count_changed_findings(On::Sqlite(&mut *conn), run_id, counts.updated).await?;
    if counts.updated + counts.reopened > 0 {
        set_recommended_updates(conn, batch, &ids).await?;
    }
    if counts.reopened > 0 {
        exec(conn, REOPEN_CHANGED_FINDINGS, "reopening findings").await?;
    }
    exec(conn, "DELETE FROM finding_changes", "upserting findings").await?;
    counts.unchanged =
        (rows.len() as u64).saturating_sub(counts.new + counts.updated + counts.reopened);
    Ok(BatchDone {
        counts,
        unchanged,
        ids: Some(ids),
        started_at,
    })
}

/// What one batch's upsert did.
pub(super) struct BatchDone {
    pub counts: UpsertCounts,
    /// The stored open findings it repeated unchanged and left alone.
    pub unchanged: Vec<i64>,
    /// The ids of its assets and software (none for an empty batch).
    pub ids: Option<BatchIds>,
    /// The run's start, as every row was stamped.
    pub started_at: DateTime<Utc>,
}

/// The batch's rows as resolved, when every one was inserted new with its assessment (what a
/// first load's tally can count).
fn inserted_rows<'a>(batch: &FindingBatch<'a>, done: &BatchDone) -> Option<Vec<Resolved<'a>>> {
    let all_new =
        done.counts.new == batch.rows.len() as u64 && batch.assessments.len() == batch.rows.len();
    let ids = done.ids.as_ref().filter(|_| all_new)?;
    // Sized for the batch: collecting into an `Option` would grow the list by doubling.
    let mut resolved = Vec::with_capacity(batch.rows.len());
    for ((&finding, &places), &assessment) in
        batch.rows.iter().zip(&batch.places).zip(&batch.assessments)
    {
        let (asset_id, software_id) = ids.of(places).ok()?;
        resolved.push(Resolved {
            finding,
            asset_id,
            software_id,
            assessment,
        });
    }
    Some(resolved)
}

/// Lists, for a reconciliation after a full read that left unchanged rows alone (their ids in
/// `sighted`, see `upsert_batch_in`), the integration's open findings it did not find unchanged:
/// the candidates for fixing (`unseen_finding`), in the connection's temporary table `unsighted`.
/// After a read that changed little they are few. The open ids come from the `findings_status`
/// index as one text (0.34 s at 1.8 M); listing the sighted ones instead, to exclude them, took
/// 0.7 s to fill the table and 0.7 s more to test every open finding against it.
pub(crate) async fn list_unsighted(
    conn: &mut SqliteConnection,
    integration_id: IntegrationId,
    sighted: &Sighted,
) -> Result<()> {
    let op = "listing the findings a run did not find unchanged";
    for sql in [
        "CREATE TEMP TABLE IF NOT EXISTS unsighted (id INTEGER PRIMARY KEY)",
        "DELETE FROM unsighted",
    ] {
        sqlx::query(sql).execute(&mut *conn).await.map_err(db(op))?;
    }
    let open: Option<String> = sqlx::query_scalar(
        "SELECT group_concat(id, ' ') FROM findings WHERE integration_id = $1 AND status = 'open'",
    )
    .bind(integration_id.get())
    .fetch_one(&mut *conn)
    .await
    .map_err(db(op))?;
    let mut candidates = Vec::new();
    for id in open.as_deref().unwrap_or_default().split(' ') {
        if id.is_empty() {
            continue;
        }
        let id: i64 = id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("finding id '{id}' did not read back")))?;
        if !sighted.contains(id) {
            candidates.push(id);
        }
    }
    for chunk in candidates.chunks(UNSIGHTED_PER_STATEMENT) {
        let json = serde_json::to_string(chunk)
            .map_err(|e| StoreError::InvalidInput(format!("cannot encode finding ids: {e}")))?;
        sqlx::query("INSERT OR IGNORE INTO unsighted (id) SELECT value FROM json_each($1)")
            .bind(json)
            .execute(&mut *conn)
            .await
            .map_err(db(op))?;
    }
    Ok(())
}

/// Ids per statement that fills `unsighted`: one JSON parameter of ~800 KB.
const UNSIGHTED_PER_STATEMENT: usize = 100_000;

/// Empties `unsighted` once its reconciliation has used it.
pub(crate) async fn forget_unsighted(conn: &mut SqliteConnection) -> Result<()> {
    exec(
        conn,
        "DELETE FROM unsighted",
        "clearing the findings a run did not find unchanged",
    )
    .await?;
    Ok(())
}

/// Upserts a batch of findings inside the caller's transaction (a delta's run of upserts).
pub(crate) async fn upsert_findings_in(
    conn: &mut SqliteConnection,
    integration_id: IntegrationId,
    run_id: RunId,
    findings: &[Finding],
) -> Result<UpsertCounts> {
    let batch = FindingBatch::new(findings, None)?;
    Ok(upsert_batch_in(conn, integration_id, run_id, &batch, false)
        .await?
        .counts)
}

pub(crate) async fn upsert_assets(
    write: &SqlitePool,
    integration_id: IntegrationId,
    run_id: RunId,
    assets: &[Asset],
) -> Result<UpsertCounts> {
    let mut tx = write
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(begin_error)?;
    let counts = upsert_assets_in(&mut tx, integration_id, run_id, assets).await?;
    tx.commit().await.map_err(db("committing assets"))?;
    Ok(counts)
}

/// Upserts a batch of findings in a transaction of its own: through the first-load writer when
/// there is one and the rows are a first load's (assessed as they are inserted), else on the
/// store's writer connection.
pub(crate) async fn upsert_findings<'a>(
    write: &SqlitePool,
    first_load: Option<&FirstLoadWriter>,
    integration_id: IntegrationId,
    run_id: RunId,
    findings: &'a [Finding],
    assessor: Option<&dyn InsertAssessor>,
    leave_unchanged: bool,
) -> Result<Written<'a>> {
    // Prepared before the transaction: this work overlaps the previous batch's writing.
    let batch = FindingBatch::new(findings, assessor)?;
    let done = match first_load.filter(|_| !batch.assessments.is_empty()) {
        Some(writer) => writer.write(integration_id, run_id, &batch).await?,
        None => {
            let mut tx = write
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(begin_error)?;
            let done =
                upsert_batch_in(&mut tx, integration_id, run_id, &batch, leave_unchanged).await?;
            tx.commit().await.map_err(db("committing findings"))?;
            done
        }
    };
    let inserted = inserted_rows(&batch, &done);
    Ok(Written {
        counts: done.counts,
        unchanged: done.unchanged,
        started_at: done.started_at,
        inserted,
    })
}

/// Catalogue rows in multi-row statements of one transaction; `on_conflict` decides what a
/// known CVE keeps (see `upsert_vulnerabilities` and `fill_vulnerabilities`).
pub(crate) async fn write_vulnerabilities(
    write: &SqlitePool,
    vulns: &[Vulnerability],
    on_conflict: &str,
) -> Result<UpsertCounts> {
    let rows = dedupe_last(vulns, |v| &v.cve_id);
    let now = ts(Utc::now());
    let mut counts = UpsertCounts::default();
    let mut tx = write
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(begin_error)?;
    for chunk in rows.chunks(rows_per_statement(VULN_PARAMS)) {
        let sql = multi_row_sql(
            concat!(
                "INSERT INTO vulnerabilities (",
                vulnerability_insert_columns!(),
                ")"
            ),
            VULN_PARAMS,
            chunk.len(),
            on_conflict,
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for v in chunk {
            q = q
                .bind(v.cve_id.as_str())
                .bind(v.severity.map(severity_code))
                .bind(finite(v.cvss))
                .bind(clean_opt(&v.cvss_vector))
                .bind(finite(v.epss))
                .bind(v.public_exploit)
                .bind(v.exploit_verified)
                .bind(v.exploit_in_kit)
                .bind(clean(&json_list(&v.exploit_types)))
                .bind(opt_ts(v.published_on))
                .bind(opt_ts(v.updated_on))
                .bind(clean_opt(&v.description))
                .bind(
                    v.source_exposed_machines
                        .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                )
                .bind(now)
                .bind(now);
        }
        count_kinds(&mut tx, q, &mut counts, "upserting vulnerabilities").await?;
    }
    tx.commit()
        .await
        .map_err(db("committing vulnerabilities"))?;
    Ok(counts)
}

/// Recommendations as one JSON parameter per statement, expanded with `json_each`, inside the
/// caller's transaction. `observed` is the run's start.
pub(crate) async fn upsert_recommendations_in(
    conn: &mut SqliteConnection,
    integration_id: IntegrationId,
    run_id: RunId,
    observed: DateTime<Utc>,
    rows: &[RecommendationRow],
) -> Result<UpsertCounts> {
    let mut counts = UpsertCounts::default();
    for chunk in rows.chunks(RECOMMENDATIONS_PER_STATEMENT) {
        let batch: Vec<serde_json::Value> = chunk
            .iter()
            .map(|r| {
                serde_json::json!([
                    r.assessment_id,
                    r.subscription_id,
                    r.key,
                    r.resource_id,
                    r.display_name,
                    r.status,
                    r.cause,
                    r.severity,
                    r.category,
                    r.status_changed.map(micros),
                    r.risk_level,
                    r.risk,
                ])
            })
            .collect();
        let json = serde_json::to_string(&batch).map_err(|e| {
            StoreError::InvalidInput(format!("cannot encode the recommendations: {e}"))
        })?;
        let q = sqlx::query(concat!(
            "INSERT INTO recommendations (",
            recommendation_insert_columns!(),
            ") SELECT $1, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, \
             (SELECT a.id FROM assets a WHERE a.integration_id = $1 AND a.source_id = j.value ->> 3), \
             j.value ->> 4, j.value ->> 5, j.value ->> 6, j.value ->> 7, j.value ->> 8, j.value ->> 9, \
             $2, $2, $3, j.value ->> 10, j.value ->> 11 FROM json_each($4) j WHERE true",
            recommendation_on_conflict!()
        ))
        .bind(integration_id.get())
        .bind(ts(observed))
        .bind(run_id.get())
        .bind(json);
        count_kinds(conn, q, &mut counts, "upserting recommendations").await?;
    }
    Ok(counts)
}

/// Rebuilds the by-CVE index put off by `begin_bulk_findings`.
pub(crate) async fn end_bulk_findings(write: &SqlitePool, create_indexes: &[&str]) -> Result<()> {
    let op = "rebuilding the indexes a first load put off";
    let mut conn = write.acquire().await.map_err(db(op))?;
    // The sync's reading and writing are done by now: the sort may take a second thread. Its
    // memory is bounded by the page cache, per thread; a small cache also sorts faster (2 M
    // findings: 1.75 s and 37 MB with one thread and 16 MB; 1.15 s and 20 MB with two and 4 MB).
    exec(&mut conn, "PRAGMA threads = 2", op).await?;
    set_cache_kib(&mut conn, SCAN_CACHE_KIB, op).await?;
    let mut built = Ok(());
    for index in create_indexes {
        built = sqlx::query(AssertSqlSafe(*index))
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(db(op));
        if built.is_err() {
            break;
        }
    }
    let restored = set_cache_kib(&mut conn, WRITER_CACHE_KIB, op).await;
    built.and(restored)
}

/// Runs one statement whose result is of no interest (scratch tables, pragmas, set updates).
async fn exec(conn: &mut SqliteConnection, sql: &'static str, op: &'static str) -> Result<()> {
    sqlx::query(sql).execute(&mut *conn).await.map_err(db(op))?;
    Ok(())
}

/// Sets the connection's page cache (and with it the sorter's memory) to `kib`.
pub(crate) async fn set_cache_kib(
    conn: &mut SqliteConnection,
    kib: i64,
    op: &'static str,
) -> Result<()> {
    sqlx::query(AssertSqlSafe(format!("PRAGMA cache_size = {}", -kib)))
        .execute(&mut *conn)
        .await
        .map_err(db(op))?;
    Ok(())
}
