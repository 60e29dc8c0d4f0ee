//! The SQLite backend: one file in WAL mode, a single writer connection beside a small pool of
//! read-only connections (SQLite has one writer; readers never wait for it in WAL mode), and a
//! connection that checkpoints the WAL in the background (`checkpointer`).
//!
//! Bulk path: one `BEGIN IMMEDIATE` transaction per call and prepared multi-row
//! `INSERT … ON CONFLICT DO UPDATE` statements of 500 rows, far below SQLite's 32,766
//! bound-parameter limit whatever the batch size. Per-batch look-ups (asset and software ids) pass
//! their keys as one JSON parameter expanded with `json_each`, so they need no parameter budget.
//! What each row's upsert did is counted without returning rows for findings (see
//! `FINDING_SCRATCH`), and with `RETURNING` for the smaller asset and CVE batches.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};

use rampart_model::{
    Asset, ControlScore, CveId, Finding, Integration, IntegrationId, IntegrationName, PostureScore,
    Recommendation, Subscription, SyncRun, Vulnerability,
};

use crate::cloud_sql::reconcile_plan;
use crate::common::{self, *};
use crate::error::{Result, StoreError};
use crate::jobs::*;
use crate::run_owner::RunOwner;
use crate::sort::*;
use crate::store::{STALE_RUN_AFTER, Store};
use crate::summary::*;
use crate::types::*;
use crate::types_cloud::*;

mod checkpointer;
mod cloud;
mod intel;

use checkpointer::Checkpointer;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// This build's SQLite migrations (a backup's schema is checked against them).
pub(crate) fn migrator() -> &'static sqlx::migrate::Migrator {
    &MIGRATOR
}

/// SQLite's limit on bound parameters per statement (SQLITE_MAX_VARIABLE_NUMBER since 3.32).
pub const SQLITE_MAX_PARAMS: usize = 32_766;

/// Rows per multi-row statement. Measured on the 2-core box with 200k findings: 100 rows per
/// statement was ~25 % slower than 500; 1,000 and 2,000 were within the noise of 500.
const ROWS_PER_STATEMENT: usize = 500;

const DIALECT: Dialect = Dialect {
    ilike: "LIKE",
    collate_c: "",
    least: "min",
};

/// Connections readers may use at once.
const READ_CONNECTIONS: u32 = 4;

/// Page cache of the writer, in KiB (negative `cache_size` = KiB). It also bounds the sorter that
/// rebuilds the by-CVE index after a first load. With that index put off during first loads, the
/// writes are mostly appends: 16 MB was as fast as 32 MB on 2 M findings and kept the sync's peak
/// memory ~30 MB lower (BENCHMARKS.md).
const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// Page cache of the writer while it runs one statement over all of an integration's findings
/// (the by-CVE index rebuild, the summary refresh). Such a statement reads each page once, so a
/// big cache buys nothing, and it also bounds SQLite's sorter: on 2 M findings the fix roll-up's
/// GROUP BY took 0.91 s and 37 MB with 16 MB, 0.63 s and 12 MB with 4 MB.
const SCAN_CACHE_KIB: i64 = 4 * 1024;

/// The by-CVE index of migration 0001, word for word (`IF NOT EXISTS` added): dropped for the
/// first load of an integration and rebuilt after it (see [`Store::begin_bulk_findings`]).
const CREATE_FINDINGS_BY_CVE: &str = "CREATE INDEX IF NOT EXISTS findings_open_by_cve ON findings (cve_id, integration_id, asset_id) WHERE status = 'open'";

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    StoreError::db(op)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_foreign_key_violation())
}

/// A timestamp as SQLite stores it: microseconds since the epoch.
fn ts(t: DateTime<Utc>) -> i64 {
    common::micros(t)
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(common::micros)
}

impl RowExt for SqliteRow {
    fn int(&self, col: &str) -> Result<i64> {
        self.try_get(col).map_err(db("reading a row"))
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.try_get(col).map_err(db("reading a row"))
    }
    fn text(&self, col: &str) -> Result<String> {
        self.try_get(col).map_err(db("reading a row"))
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.try_get(col).map_err(db("reading a row"))
    }
    fn opt_f64(&self, col: &str) -> Result<Option<f64>> {
        self.try_get(col).map_err(db("reading a row"))
    }
    fn flag(&self, col: &str) -> Result<bool> {
        self.try_get(col).map_err(db("reading a row"))
    }
    fn opt_flag(&self, col: &str) -> Result<Option<bool>> {
        self.try_get(col).map_err(db("reading a row"))
    }
    fn opt_ts(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        let us: Option<i64> = self.try_get(col).map_err(db("reading a row"))?;
        us.map(common::from_micros).transpose()
    }
    fn opt_date(&self, col: &str) -> Result<Option<NaiveDate>> {
        self.try_get(col).map_err(db("reading a row"))
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        self.try_get(col).map_err(db("reading a row"))
    }
}

/// The SQLite implementation of [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    write: SqlitePool,
    read: SqlitePool,
    /// The connection of the background checkpointer (closed with the store).
    checkpoints: SqlitePool,
    _checkpointer: Checkpointer,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, its directory included, and brings
    /// the schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let open_err = |reason: String| StoreError::Open {
            path: shown.clone(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                open_err(format!(
                    "cannot create the directory {}: {}",
                    dir.display(),
                    io_reason(&e)
                ))
            })?;
        }
        create_private(path).map_err(|e| open_err(io_reason(&e)))?;
        match Self::connect(path).await {
            Ok(store) => Ok(store),
            // Whatever step failed (connecting, migrating), a damaged file is the cause to name:
            // its symptoms ("malformed schema", an unreadable migration record) would otherwise
            // read like a newer version's database.
            Err(e) => Err(match damage_of(path).await {
                Some(damage) => StoreError::Damaged(damage),
                None => e,
            }),
        }
    }

    async fn connect(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let open_err = |reason: String| StoreError::Open {
            path: shown.clone(),
            reason,
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);

        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(|conn, _| Box::pin(async move { healthy_after_release(conn).await }))
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", (-WRITER_CACHE_KIB).to_string())
                    // The background checkpointer normally keeps the WAL short; this is the
                    // backstop when it falls behind. A checkpoint in the writer (WAL copied into
                    // the database file, with fsyncs) after every ~4 MB written cost a third of
                    // bulk-load time; every ~64 MB costs little, and the WAL file is truncated
                    // back afterwards.
                    .pragma("wal_autocheckpoint", "16384")
                    .pragma("journal_size_limit", (64 * 1024 * 1024).to_string()),
            )
            .await
            .map_err(|e| open_err(e.to_string()))?;
        MIGRATOR.run(&write).await.map_err(|e| {
            StoreError::Migration(format!("{e} (database file {})", path.display()))
        })?;
        // A bulk load that died before rebuilding its deferred index left it missing.
        sqlx::query(CREATE_FINDINGS_BY_CVE)
            .execute(&write)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                options
                    .clone()
                    .pragma("journal_size_limit", (64 * 1024 * 1024).to_string()),
            )
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            // Not opened read-only: a read-only connection cannot recreate the WAL index files
            // when it is the first to open the database after every connection was closed.
            // query_only refuses writes all the same.
            .connect_with(options.pragma("query_only", "ON"))
            .await
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            write,
            read,
            _checkpointer: Checkpointer::start(checkpoints.clone()),
            checkpoints,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tests only: the database file may not grow any more (SQLite's `max_page_count` on the
    /// writer), so the next write that needs a new page fails with SQLite's real SQLITE_FULL, as
    /// on a full disk. Holds until the writer connection is replaced.
    #[cfg(feature = "testing")]
    pub async fn stop_growth_for_tests(&self) -> Result<()> {
        sqlx::query("PRAGMA max_page_count = 1")
            .execute(&self.write)
            .await
            .map_err(db("limiting the database size"))?;
        Ok(())
    }

    /// A write transaction. IMMEDIATE takes the write lock up front: a deferred transaction that
    /// reads first and writes later could fail at once with SQLITE_BUSY when another process
    /// wrote in between, instead of waiting for the busy timeout.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("starting a write transaction"))
    }

    /// Catalogue rows in multi-row statements of one transaction; `on_conflict` decides what a
    /// known CVE keeps (see `upsert_vulnerabilities` and `fill_vulnerabilities`).
    async fn write_vulnerabilities(
        &self,
        vulns: &[Vulnerability],
        on_conflict: &str,
    ) -> Result<UpsertCounts> {
        let rows = dedupe_last(vulns, |v| &v.cve_id);
        let now = ts(Utc::now());
        let mut counts = UpsertCounts::default();
        let mut tx = self.begin().await?;
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
}

/// Creates the database file if missing, readable and writable by its owner only: it holds live
/// session ids and token hashes. SQLite gives the WAL and shared-memory files it creates beside it
/// the database file's permissions, so they are private too. Opening the file ourselves also turns
/// SQLite's "unable to open database file" into the operating system's reason.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?;
    #[cfg(unix)]
    warn_if_shared(path);
    Ok(())
}

/// A database file others can read (created by an older Rampart, or copied) is left as it is,
/// the operator may have reasons, but said.
#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            message = "The database file can be read by other users of this machine; it holds session ids. Run: chmod 600 on it (and its -wal and -shm files).",
            path = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
        );
    }
}

/// What SQLite's quick check finds wrong with the file, if anything (`None` also when the check
/// cannot run because the file is fine but something else failed). Run only after opening failed.
async fn damage_of(path: &Path) -> Option<String> {
    use sqlx::ConnectOptions;
    let shown = path.display();
    let mut conn = match SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
    {
        Ok(conn) => conn,
        Err(e) if crate::error::cause_of(&e) == crate::error::Cause::Damaged => {
            return Some(format!("{shown}: {e}"));
        }
        Err(_) => return None,
    };
    let found = match sqlx::query_scalar::<_, String>("PRAGMA quick_check(5)")
        .fetch_all(&mut conn)
        .await
    {
        Ok(lines) if lines.iter().all(|l| l == "ok") => None,
        Ok(lines) => Some(format!(
            "{shown}: SQLite's integrity check found: {}",
            lines.join("; ")
        )),
        Err(e) if crate::error::cause_of(&e) == crate::error::Cause::Damaged => {
            Some(format!("{shown}: {e}"))
        }
        Err(_) => None,
    };
    let _ = sqlx::Connection::close(conn).await;
    found
}

/// Whether the writer connection may go back into the pool. When a statement fails with
/// SQLITE_FULL (or SQLITE_IOERR, SQLITE_NOMEM), SQLite may already have rolled the transaction
/// back itself; the driver's ROLLBACK then fails and it goes on believing a transaction is open,
/// so that every later `BEGIN` failed with "begin_with at non-zero transaction depth" and a full
/// disk ended every write until a restart. Such a connection is closed; the pool opens a fresh one.
async fn healthy_after_release(
    conn: &mut SqliteConnection,
) -> std::result::Result<bool, sqlx::Error> {
    use sqlx::Connection;
    // The ping runs after the rollback the dropped transaction queued.
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::IsADirectory => "it is a directory".to_owned(),
        std::io::ErrorKind::ReadOnlyFilesystem => "the file system is read-only".to_owned(),
        std::io::ErrorKind::StorageFull => "the disk is full".to_owned(),
        _ => e.to_string(),
    }
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
const FINDING_PARAMS: usize = 14;
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

/// Checks that `run_id` is a running run of `integration_id`, records a sign of life, and returns
/// the run's start (the observation time of everything it writes).
async fn touch_run(
    conn: &mut SqliteConnection,
    integration_id: IntegrationId,
    run_id: i64,
) -> Result<DateTime<Utc>> {
    let row = sqlx::query("SELECT integration_id, status, started_at FROM sync_runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("checking the sync run"))?;
    let row = match row {
        None => None,
        Some(r) => Some((
            r.int("integration_id")?,
            r.text("status")?,
            r.ts("started_at")?,
        )),
    };
    let started_at = check_run_for_write(run_id, integration_id, row)?;
    sqlx::query("UPDATE sync_runs SET heartbeat_at = $2 WHERE id = $1")
        .bind(run_id)
        .bind(ts(Utc::now()))
        .execute(&mut *conn)
        .await
        .map_err(db("recording the run's heartbeat"))?;
    Ok(started_at)
}

async fn upsert_assets_in(
    conn: &mut SqliteConnection,
    integration_id: IntegrationId,
    run_id: i64,
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
                .bind(integration_id)
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
                .bind(run_id);
        }
        count_kinds(conn, q, &mut counts, "upserting assets").await?;
    }
    Ok(counts)
}

/// What a batch of findings needs before it meets the database: the rows (the last of each key),
/// and the distinct assets and software as JSON for `json_each`. Built before the transaction, so
/// that this work overlaps the previous batch's writing (`concurrent_writes`).
struct FindingBatch<'a> {
    rows: Vec<&'a Finding>,
    assets_json: String,
    software_json: String,
}

impl<'a> FindingBatch<'a> {
    fn new(findings: &'a [Finding]) -> Result<Self> {
        let rows = dedupe_last(findings, finding_key);
        // Distinct assets with the first name the batch gives them, and distinct software.
        // (id, name, OS platform, OS version): a stub asset is made from them.
        type AssetFacts = (String, Option<String>, Option<String>, Option<String>);
        let mut asset_names: Vec<AssetFacts> = Vec::new();
        let mut asset_seen = FastSet::default();
        let mut software: Vec<[String; 3]> = Vec::new();
        let mut software_seen = FastSet::default();
        for f in &rows {
            let (asset, vendor, name, version, _) = finding_key(f);
            if asset_seen.insert(asset.clone()) {
                asset_names.push((
                    asset.into_owned(),
                    clean_opt(&f.asset_name).map(|c| c.into_owned()),
                    clean_opt(&f.asset_os_platform).map(|c| c.into_owned()),
                    clean_opt(&f.asset_os_version).map(|c| c.into_owned()),
                ));
            }
            if software_seen.insert((vendor.clone(), name.clone(), version.clone())) {
                software.push([vendor.into_owned(), name.into_owned(), version.into_owned()]);
            }
        }
        let assets_json = serde_json::to_string(&asset_names).map_err(|e| {
            StoreError::InvalidInput(format!("cannot encode the batch's asset ids: {e}"))
        })?;
        let software_json = serde_json::to_string(&software).map_err(|e| {
            StoreError::InvalidInput(format!("cannot encode the batch's software: {e}"))
        })?;
        Ok(Self {
            rows,
            assets_json,
            software_json,
        })
    }
}

/// Resolves the asset and software ids of a batch of findings, creating stub assets and software
/// rows that do not exist yet, and marks the batch's assets seen by the run.
/// Returns maps from asset source id and from (vendor, name, version) to ids.
async fn resolve_ids(
    conn: &mut SqliteConnection,
    integration_id: IntegrationId,
    run_id: i64,
    observed: i64,
    batch: &FindingBatch<'_>,
) -> Result<(FastMap<String, i64>, FastMap<(String, String, String), i64>)> {
    let (assets_json, software_json) = (&batch.assets_json, &batch.software_json);
    // Assets first reported by a finding (the device list did not return them): created from it,
    // with its device name and OS, as known from vulnerability data, seen by this run.
    sqlx::query(
        "INSERT INTO assets (integration_id, source_id, kind, name, os_platform, os_version, known_from, status, \
         first_observed, last_observed, seen_run) \
         SELECT $1, j.value ->> 0, 'device', j.value ->> 1, j.value ->> 2, j.value ->> 3, 'vulnerability_data', \
         'active', $2, $2, $3 FROM json_each($4) j WHERE true \
         ON CONFLICT (integration_id, source_id) DO NOTHING",
    )
    .bind(integration_id)
    .bind(observed)
    .bind(run_id)
    .bind(assets_json.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db("creating assets first reported by findings"))?;
    // A finding is evidence that its asset is there.
    sqlx::query(
        "UPDATE assets SET seen_run = $3, last_observed = $2, status = 'active', missing_since = NULL \
         WHERE integration_id = $1 AND source_id IN (SELECT j.value ->> 0 FROM json_each($4) j) \
         AND seen_run IS DISTINCT FROM $3",
    )
    .bind(integration_id)
    .bind(observed)
    .bind(run_id)
    .bind(assets_json.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db("marking the findings' assets seen"))?;
    let asset_rows = sqlx::query(
        "SELECT id, source_id FROM assets WHERE integration_id = $1 \
         AND source_id IN (SELECT j.value ->> 0 FROM json_each($2) j)",
    )
    .bind(integration_id)
    .bind(assets_json.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db("looking up the findings' assets"))?;
    let mut asset_ids = FastMap::with_capacity_and_hasher(asset_rows.len(), Default::default());
    for r in &asset_rows {
        asset_ids.insert(r.text("source_id")?, r.int("id")?);
    }

    sqlx::query(
        "INSERT INTO software (vendor, name, version) \
         SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2 FROM json_each($1) j WHERE true \
         ON CONFLICT (vendor, name, version) DO NOTHING",
    )
    .bind(software_json.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db("recording software"))?;
    let software_rows = sqlx::query(
        "SELECT s.id, s.vendor, s.name, s.version FROM json_each($1) j \
         JOIN software s ON s.vendor = j.value ->> 0 AND s.name = j.value ->> 1 AND s.version = j.value ->> 2",
    )
    .bind(software_json.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db("looking up software"))?;
    let mut software_ids =
        FastMap::with_capacity_and_hasher(software_rows.len(), Default::default());
    for r in &software_rows {
        software_ids.insert(
            (r.text("vendor")?, r.text("name")?, r.text("version")?),
            r.int("id")?,
        );
    }
    Ok((asset_ids, software_ids))
}

/// SQLite's finding upsert clause. Unlike PostgreSQL's it leaves `status` (and the columns that
/// go with it) alone: SQLite rewrites the entries of every index whose columns appear in an UPDATE's
/// SET list, whatever the values, and `status` is in two indexes. With it in the list an unchanged
/// re-sync rewrote ~3 index entries per row; without it, none. Reopening is a separate statement
/// over the few rows that need it.
macro_rules! sqlite_finding_on_conflict {
    () => {
        concat!(
            " ON CONFLICT (asset_id, software_id, cve_id) DO UPDATE SET \
change_kind = CASE WHEN findings.status = 'fixed' THEN 3 WHEN ",
            finding_changed!(),
            " THEN 1 ELSE 2 END, ",
            finding_set_content!()
        )
    };
}

/// Per-connection scratch objects of the finding upsert. The trigger records the rows an upsert
/// updated or reopened, so that counting needs neither RETURNING (sqlx hands each returned row to
/// the async side one by one: measured a third of the upsert's time) nor a second look-up per row.
/// New rows are counted by id: SQLite gives them ids above the previous maximum.
const FINDING_SCRATCH: [&str; 2] = [
    "CREATE TEMP TABLE IF NOT EXISTS finding_changes (id INTEGER NOT NULL, kind INTEGER NOT NULL)",
    "CREATE TEMP TRIGGER IF NOT EXISTS finding_changed AFTER UPDATE OF change_kind ON main.findings \
     WHEN NEW.change_kind IN (1, 3) \
     BEGIN INSERT INTO finding_changes (id, kind) VALUES (NEW.id, NEW.change_kind); END",
];

/// One multi-row upsert statement for `chunk`, every value bound.
fn bind_findings<'q>(
    row: &str,
    chunk: &[&'q Finding],
    asset_ids: &FastMap<String, i64>,
    software_ids: &FastMap<(String, String, String), i64>,
) -> Result<sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>> {
    let sql = repeat_rows(
        concat!("INSERT INTO findings (", finding_insert_columns!(), ")"),
        row,
        chunk.len(),
        sqlite_finding_on_conflict!(),
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    // A reusable lookup key avoids allocating three strings per row.
    let mut key: (String, String, String) = Default::default();
    for f in chunk {
        let k = &f.key;
        let asset_id = *asset_ids
            .get(clean(&k.asset_source_id).as_ref())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "asset '{}' vanished while its findings were written",
                    k.asset_source_id.chars().take(60).collect::<String>()
                ))
            })?;
        key.0.clear();
        key.0.push_str(&clean(&k.software_vendor));
        key.1.clear();
        key.1.push_str(&clean(&k.software_name));
        key.2.clear();
        key.2.push_str(&clean(&k.software_version));
        let software_id = *software_ids.get(&key).ok_or_else(|| {
            StoreError::Corrupt("software vanished while its findings were written".to_owned())
        })?;
        q = q
            .bind(asset_id)
            .bind(software_id)
            .bind(k.cve_id.as_str())
            .bind(f.severity.map(severity_code))
            .bind(finite(f.cvss))
            .bind(clean_opt(&f.exploitability))
            .bind(clean_opt(&f.recommended_update))
            .bind(clean_opt(&f.recommendation_reference))
            .bind(opt_ts(f.first_seen))
            .bind(opt_ts(f.last_seen));
    }
    Ok(q)
}

async fn upsert_findings_in(
    conn: &mut SqliteConnection,
    integration_id: IntegrationId,
    run_id: i64,
    batch: &FindingBatch<'_>,
) -> Result<UpsertCounts> {
    let observed = ts(touch_run(conn, integration_id, run_id).await?);
    let rows = &batch.rows;
    let mut counts = UpsertCounts::default();
    if rows.is_empty() {
        return Ok(counts);
    }
    let (asset_ids, software_ids) =
        resolve_ids(conn, integration_id, run_id, observed, batch).await?;
    for sql in FINDING_SCRATCH {
        sqlx::query(sql)
            .execute(&mut *conn)
            .await
            .map_err(db("preparing the finding upsert"))?;
    }
    sqlx::query("DELETE FROM finding_changes")
        .execute(&mut *conn)
        .await
        .map_err(db("preparing the finding upsert"))?;
    let max_before: i64 = sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM findings")
        .fetch_one(&mut *conn)
        .await
        .map_err(db("preparing the finding upsert"))?;

    // The values every row shares (integration, time of observation, run) are integers of ours:
    // written into the statement as literals, they are not bound again on every row (4 of 14
    // values). The text stays the same for the whole run, so the prepared statement is reused.
    let row = format!("({integration_id},?,?,?,?,?,?,?,?,?,?,{observed},{observed},{run_id})");
    let chunks: Vec<&[&Finding]> = rows
        .chunks(rows_per_statement(FINDING_PARAMS - 4))
        .collect();
    let mut next = chunks
        .first()
        .map(|c| bind_findings(&row, c, &asset_ids, &software_ids))
        .transpose()?;
    for i in 0..chunks.len() {
        let Some(q) = next.take() else { break };
        // SQLite runs on its own thread: while it executes this statement, the next one is bound
        // here (sqlx sends the statement on the first poll, which `join!` does first).
        let (done, bound) = futures::join!(q.execute(&mut *conn), async {
            chunks
                .get(i + 1)
                .map(|c| bind_findings(&row, c, &asset_ids, &software_ids))
                .transpose()
        });
        done.map_err(db("upserting findings"))?;
        next = bound?;
    }

    let new: i64 = sqlx::query_scalar("SELECT count(*) FROM findings WHERE id > $1")
        .bind(max_before)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("counting new findings"))?;
    counts.add_kind(0, as_u64(new));
    let changed = sqlx::query("SELECT kind, count(*) AS n FROM finding_changes GROUP BY kind")
        .fetch_all(&mut *conn)
        .await
        .map_err(db("counting changed findings"))?;
    for r in &changed {
        counts.add_kind(r.int("kind")?, as_u64(r.int("n")?));
    }
    if counts.reopened > 0 {
        sqlx::query(
            "UPDATE findings SET status = 'open', fixed_at = NULL, reopened_count = reopened_count + 1 \
             WHERE id IN (SELECT id FROM finding_changes WHERE kind = 3)",
        )
        .execute(&mut *conn)
        .await
        .map_err(db("reopening findings"))?;
    }
    sqlx::query("DELETE FROM finding_changes")
        .execute(&mut *conn)
        .await
        .map_err(db("upserting findings"))?;
    counts.unchanged =
        (rows.len() as u64).saturating_sub(counts.new + counts.updated + counts.reopened);
    Ok(counts)
}

/// Recounts an integration's summaries (see the `summary` module).
async fn refresh_summaries(
    conn: &mut SqliteConnection,
    integration_id: IntegrationId,
) -> Result<()> {
    let op = "refreshing the findings summaries";
    set_cache_kib(conn, SCAN_CACHE_KIB, op).await?;
    let refreshed = async {
        sqlx::query(AssertSqlSafe(refresh_assets_sql(DIALECT)))
            .bind(integration_id)
            .execute(&mut *conn)
            .await
            .map_err(db(op))?;
        for sql in [CLEAR_FIXES, REFRESH_FIXES] {
            sqlx::query(sql)
                .bind(integration_id)
                .execute(&mut *conn)
                .await
                .map_err(db(op))?;
        }
        Ok(())
    }
    .await;
    // The refresh's own error, if any, is the one worth reporting.
    let restored = set_cache_kib(conn, WRITER_CACHE_KIB, op).await;
    refreshed.and(restored)
}

/// Sets the connection's page cache (and with it the sorter's memory) to `kib`.
async fn set_cache_kib(conn: &mut SqliteConnection, kib: i64, op: &'static str) -> Result<()> {
    sqlx::query(AssertSqlSafe(format!("PRAGMA cache_size = {}", -kib)))
        .execute(&mut *conn)
        .await
        .map_err(db(op))?;
    Ok(())
}

async fn run_by_id(conn: &mut SqliteConnection, run_id: i64) -> Result<SyncRun> {
    let row = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM sync_runs WHERE id = $1"
    ))
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading a sync run"))?
    .ok_or_else(|| run_not_found(run_id))?;
    decode_run(&row)
}

fn bind_args<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.as_str()),
            Arg::Time(v) => q.bind(micros(*v)),
        };
    }
    q
}

#[async_trait]
impl Store for SqliteStore {
    async fn replace_kev_catalog(
        &self,
        snapshot: &crate::intel::KevSnapshot,
        entries: &[rampart_model::priority::KevEntry],
    ) -> Result<crate::intel::IntelSource> {
        self.intel_replace_kev(snapshot, entries).await
    }

    async fn record_intel_check(&self, check: &crate::intel::IntelCheck<'_>) -> Result<()> {
        self.intel_record_check(check).await
    }

    async fn intel_source(&self, source: &str) -> Result<Option<crate::intel::IntelSource>> {
        self.intel_source_row(source).await
    }

    async fn kev_entries_for(
        &self,
        cves: &[CveId],
    ) -> Result<Vec<rampart_model::priority::KevEntry>> {
        self.intel_kev_for(cves).await
    }

    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn schema_state(&self) -> Result<crate::ops::SchemaState> {
        crate::ops::sqlite_schema_state(&self.path, &MIGRATOR).await
    }

    async fn backup_into(&self, dest: &Path) -> Result<()> {
        crate::ops::sqlite_backup(&self.path, dest).await
    }

    async fn close(&self) {
        self.checkpoints.close().await;
        self.read.close().await;
        self.write.close().await;
    }

    async fn create_integration(&self, new: &NewIntegration) -> Result<Integration> {
        let now = ts(Utc::now());
        let row = sqlx::query(concat!(
            "INSERT INTO integrations (name, product, cloud, tenant_id, client_id, secret_ciphertext, secret_nonce, \
             secret_last4, secret_expires_on, login_url, api_url, schedule_minutes, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) RETURNING ",
            integration_columns!()
        ))
        .bind(new.name.as_str())
        .bind(new.product.as_str())
        .bind(new.cloud.as_str())
        .bind(new.tenant_id.as_str())
        .bind(new.client_id.to_string())
        .bind(&new.secret.ciphertext)
        .bind(&new.secret.nonce)
        .bind(clean(&new.hint.last4))
        .bind(new.hint.expires_on)
        .bind(clean_opt(&new.login_url))
        .bind(clean_opt(&new.api_url))
        .bind(new.schedule_minutes)
        .bind(new.enabled)
        .bind(now)
        .fetch_one(&self.write)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                name_taken(&new.name)
            } else {
                StoreError::db("creating an integration")(e)
            }
        })?;
        decode_integration(&row)
    }

    async fn get_integration(&self, id: IntegrationId) -> Result<Integration> {
        let row = sqlx::query(concat!(
            "SELECT ",
            integration_columns!(),
            " FROM integrations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(db("reading an integration"))?
        .ok_or_else(|| integration_not_found(id))?;
        decode_integration(&row)
    }

    async fn get_integration_by_name(&self, name: &IntegrationName) -> Result<Integration> {
        let row = sqlx::query(concat!(
            "SELECT ",
            integration_columns!(),
            " FROM integrations WHERE lower(name) = lower($1)"
        ))
        .bind(name.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(db("reading an integration"))?
        .ok_or_else(|| integration_name_not_found(name))?;
        decode_integration(&row)
    }

    async fn list_integrations(&self) -> Result<Vec<Integration>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            integration_columns!(),
            " FROM integrations ORDER BY lower(name)"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(db("listing integrations"))?;
        rows.iter().map(decode_integration).collect()
    }

    async fn update_integration(
        &self,
        id: IntegrationId,
        u: &IntegrationUpdate,
    ) -> Result<Integration> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            integration_columns!(),
            " FROM integrations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("reading an integration"))?
        .ok_or_else(|| integration_not_found(id))?;
        let cur = decode_integration(&row)?;
        let name = u.name.clone().unwrap_or(cur.name);
        let (secret, hint) = match &u.secret {
            Some((s, h)) => (Some(s), h.clone()),
            None => (None, cur.secret_hint),
        };
        let row = sqlx::query(concat!(
            "UPDATE integrations SET name = $2, cloud = $3, tenant_id = $4, client_id = $5, \
             secret_ciphertext = COALESCE($6, secret_ciphertext), secret_nonce = COALESCE($7, secret_nonce), \
             secret_last4 = $8, secret_expires_on = $9, login_url = $10, api_url = $11, schedule_minutes = $12, \
             enabled = $13, updated_at = $14 WHERE id = $1 RETURNING ",
            integration_columns!()
        ))
        .bind(id)
        .bind(name.as_str())
        .bind(u.cloud.unwrap_or(cur.cloud).as_str())
        .bind(u.tenant_id.as_ref().unwrap_or(&cur.tenant_id).as_str())
        .bind(u.client_id.unwrap_or(cur.client_id).to_string())
        .bind(secret.map(|s| s.ciphertext.as_slice()))
        .bind(secret.map(|s| s.nonce.as_slice()))
        .bind(clean(&hint.last4))
        .bind(hint.expires_on)
        .bind(
            u.login_url
                .clone()
                .unwrap_or(cur.login_url)
                .map(|s| clean(&s).into_owned()),
        )
        .bind(
            u.api_url
                .clone()
                .unwrap_or(cur.api_url)
                .map(|s| clean(&s).into_owned()),
        )
        .bind(u.schedule_minutes.unwrap_or(cur.schedule_minutes))
        .bind(u.enabled.unwrap_or(cur.enabled))
        .bind(ts(Utc::now()))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                name_taken(&name)
            } else {
                StoreError::db("updating an integration")(e)
            }
        })?;
        let updated = decode_integration(&row)?;
        tx.commit()
            .await
            .map_err(db("committing an integration update"))?;
        Ok(updated)
    }

    async fn delete_integration(&self, id: IntegrationId) -> Result<()> {
        let mut tx = self.begin().await?;
        // Children first, each by its integration index; the cascade would do the same, but
        // explicit statements keep the cost visible and do not depend on the foreign-key pragma.
        for sql in [
            "DELETE FROM recommendations WHERE integration_id = $1",
            "DELETE FROM posture_controls WHERE integration_id = $1",
            "DELETE FROM posture_scores WHERE integration_id = $1",
            "DELETE FROM subscription_reads WHERE integration_id = $1",
            "DELETE FROM subscriptions WHERE integration_id = $1",
            "DELETE FROM findings WHERE integration_id = $1",
            "DELETE FROM assets WHERE integration_id = $1",
            "DELETE FROM sync_runs WHERE integration_id = $1",
            "DELETE FROM sync_state WHERE integration_id = $1",
            "DELETE FROM jobs WHERE integration_id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db("removing an integration's data"))?;
        }
        let done = sqlx::query("DELETE FROM integrations WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db("removing an integration"))?;
        if done.rows_affected() == 0 {
            return Err(integration_not_found(id));
        }
        tx.commit()
            .await
            .map_err(db("committing an integration's removal"))?;
        Ok(())
    }

    async fn integration_secret(&self, id: IntegrationId) -> Result<SecretCiphertext> {
        let row =
            sqlx::query("SELECT secret_ciphertext, secret_nonce FROM integrations WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await
                .map_err(db("reading an integration's secret"))?
                .ok_or_else(|| integration_not_found(id))?;
        Ok(SecretCiphertext {
            ciphertext: row.bytes("secret_ciphertext")?,
            nonce: row.bytes("secret_nonce")?,
        })
    }

    async fn get_sync_state(
        &self,
        integration_id: IntegrationId,
        key: &str,
    ) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT value FROM sync_state WHERE integration_id = $1 AND key = $2")
                .bind(integration_id)
                .bind(key)
                .fetch_optional(&self.read)
                .await
                .map_err(db("reading sync state"))?;
        row.map(|r| r.text("value")).transpose()
    }

    async fn set_sync_state(
        &self,
        integration_id: IntegrationId,
        key: &str,
        value: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sync_state (integration_id, key, value, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (integration_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(integration_id)
        .bind(clean(key))
        .bind(clean(value))
        .bind(ts(Utc::now()))
        .execute(&self.write)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                integration_not_found(integration_id)
            } else {
                StoreError::db("saving sync state")(e)
            }
        })?;
        Ok(())
    }

    async fn start_run_owned(
        &self,
        integration_id: IntegrationId,
        mode: &str,
        now: DateTime<Utc>,
        owner: Option<&RunOwner>,
    ) -> Result<i64> {
        check_mode(mode)?;
        let now = truncate_micros(now);
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM integrations WHERE id = $1")
            .bind(integration_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("starting a sync run"))?;
        if exists.is_none() {
            return Err(integration_not_found(integration_id));
        }
        let running = sqlx::query(
            "SELECT id, started_at, heartbeat_at, owner FROM sync_runs WHERE integration_id = $1 AND status = 'running'",
        )
        .bind(integration_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("starting a sync run"))?;
        if let Some(r) = running {
            let (id, started, beat) = (r.int("id")?, r.ts("started_at")?, r.ts("heartbeat_at")?);
            let stale_after = chrono::Duration::from_std(STALE_RUN_AFTER)
                .unwrap_or_else(|_| chrono::Duration::minutes(30));
            let recorded: Option<String> = r.try_get("owner").map_err(db("starting a sync run"))?;
            let owner_gone = match (recorded.as_deref().and_then(RunOwner::parse), owner) {
                (Some(theirs), Some(mine)) => theirs.is_certainly_gone(mine),
                _ => false,
            };
            if beat + stale_after > now && !owner_gone {
                return Err(run_already_running(id, started, beat));
            }
            sqlx::query(
                "UPDATE sync_runs SET status = 'failed', finished_at = $2, error = $3 WHERE id = $1 AND status = 'running'",
            )
            .bind(id)
            .bind(ts(now))
            .bind(abandoned_message(beat))
            .execute(&mut *tx)
            .await
            .map_err(db("closing an abandoned sync run"))?;
            tracing::warn!(
                message = "Closed an abandoned sync run.",
                run = id,
                integration = integration_id,
                last_sign_of_life = %beat
            );
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sync_runs (integration_id, mode, status, started_at, heartbeat_at, owner) \
             VALUES ($1, $2, 'running', $3, $3, $4) RETURNING id",
        )
        .bind(integration_id)
        .bind(mode)
        .bind(ts(now))
        .bind(owner.map(|o| o.to_string()))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(
                    "another process started a sync of this integration at the same moment; wait for it to finish"
                        .to_owned(),
                )
            } else {
                StoreError::db("starting a sync run")(e)
            }
        })?;
        tx.commit().await.map_err(db("starting a sync run"))?;
        Ok(id)
    }

    async fn heartbeat_run(&self, run_id: i64, now: DateTime<Utc>) -> Result<()> {
        let done = sqlx::query(
            "UPDATE sync_runs SET heartbeat_at = $2 WHERE id = $1 AND status = 'running'",
        )
        .bind(run_id)
        .bind(ts(now))
        .execute(&self.write)
        .await
        .map_err(db("recording the run's heartbeat"))?;
        if done.rows_affected() == 0 {
            let mut conn = self
                .read
                .acquire()
                .await
                .map_err(db("reading a sync run"))?;
            let run = run_by_id(&mut conn, run_id).await?;
            return Err(StoreError::Conflict(format!(
                "sync run {run_id} is no longer running (it is {}); start a new run",
                run.status.as_str()
            )));
        }
        Ok(())
    }

    async fn finish_run(&self, run_id: i64, o: &RunOutcome) -> Result<SyncRun> {
        check_outcome(o)?;
        let (verdict, reason) = verdict_columns(&o.verdict);
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE sync_runs SET status = $2, finished_at = $3, heartbeat_at = $3, verdict = $4, verdict_reason = $5, \
             counts = $6, api_calls = $7, throttled = $8, retries = $9, bytes = $10, error = $11 \
             WHERE id = $1 AND status = 'running'",
        )
        .bind(run_id)
        .bind(o.status.as_str())
        .bind(ts(o.finished_at))
        .bind(verdict)
        .bind(reason)
        .bind(run_counts_json(o))
        .bind(as_i64(o.api_calls))
        .bind(as_i64(o.throttled))
        .bind(as_i64(o.retries))
        .bind(as_i64(o.bytes))
        .bind(o.error.as_deref().map(|e| clean(e).into_owned()))
        .execute(&mut *tx)
        .await
        .map_err(db("finishing a sync run"))?;
        let run = run_by_id(&mut tx, run_id).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "sync run {run_id} was already finished ({}{}); its outcome was not changed",
                run.status.as_str(),
                run.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )));
        }
        if needs_refresh(o) {
            refresh_summaries(&mut tx, run.integration_id).await?;
        }
        tx.commit().await.map_err(db("finishing a sync run"))?;
        // Lets SQLite refresh its planner statistics after a large write, cheaply.
        if let Err(e) = sqlx::query("PRAGMA optimize").execute(&self.write).await {
            tracing::debug!(message = "PRAGMA optimize failed.", error = %e);
        }
        Ok(run)
    }

    async fn get_run(&self, run_id: i64) -> Result<SyncRun> {
        let mut conn = self
            .read
            .acquire()
            .await
            .map_err(db("reading a sync run"))?;
        run_by_id(&mut conn, run_id).await
    }

    async fn list_runs(&self, integration_id: IntegrationId, limit: u32) -> Result<Vec<SyncRun>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM sync_runs WHERE integration_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(integration_id)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db("listing sync runs"))?;
        rows.iter().map(decode_run).collect()
    }

    async fn last_successful_run(&self, integration_id: IntegrationId) -> Result<Option<SyncRun>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM sync_runs WHERE integration_id = $1 AND status = 'succeeded' ORDER BY id DESC LIMIT 1"
        ))
        .bind(integration_id)
        .fetch_optional(&self.read)
        .await
        .map_err(db("reading the last successful run"))?;
        row.as_ref().map(decode_run).transpose()
    }

    async fn upsert_assets(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        assets: &[Asset],
    ) -> Result<UpsertCounts> {
        let mut tx = self.begin().await?;
        let counts = upsert_assets_in(&mut tx, integration_id, run_id, assets).await?;
        tx.commit().await.map_err(db("committing assets"))?;
        Ok(counts)
    }

    async fn upsert_vulnerabilities(&self, vulns: &[Vulnerability]) -> Result<UpsertCounts> {
        self.write_vulnerabilities(vulns, vulnerability_on_conflict!())
            .await
    }

    async fn fill_vulnerabilities(&self, vulns: &[Vulnerability]) -> Result<UpsertCounts> {
        self.write_vulnerabilities(vulns, vulnerability_fill_on_conflict!())
            .await
    }

    fn concurrent_writes(&self) -> usize {
        2
    }

    async fn begin_bulk_findings(&self, integration_id: IntegrationId) -> Result<bool> {
        let mut tx = self.begin().await?;
        let has_findings: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM findings WHERE integration_id = $1)")
                .bind(integration_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db("checking for stored findings"))?;
        if has_findings {
            return Ok(false);
        }
        sqlx::query("DROP INDEX IF EXISTS findings_open_by_cve")
            .execute(&mut *tx)
            .await
            .map_err(db("deferring the by-CVE index"))?;
        tx.commit()
            .await
            .map_err(db("deferring the by-CVE index"))?;
        Ok(true)
    }

    async fn end_bulk_findings(&self) -> Result<()> {
        let mut conn = self
            .write
            .acquire()
            .await
            .map_err(db("rebuilding the by-CVE index"))?;
        // The sync's reading and writing are done by now: the sort may take a second thread. Its
        // memory is bounded by the page cache, per thread; a small cache also sorts faster (2 M
        // findings: 1.75 s and 37 MB with one thread and 16 MB; 1.15 s and 20 MB with two and 4 MB).
        let op = "rebuilding the by-CVE index";
        sqlx::query("PRAGMA threads = 2")
            .execute(&mut *conn)
            .await
            .map_err(db(op))?;
        set_cache_kib(&mut conn, SCAN_CACHE_KIB, op).await?;
        let built = sqlx::query(CREATE_FINDINGS_BY_CVE)
            .execute(&mut *conn)
            .await
            .map_err(db(op));
        let restored = set_cache_kib(&mut conn, WRITER_CACHE_KIB, op).await;
        built.map(|_| ()).and(restored)
    }

    async fn upsert_findings(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        findings: &[Finding],
    ) -> Result<UpsertCounts> {
        let batch = FindingBatch::new(findings)?;
        let mut tx = self.begin().await?;
        let counts = upsert_findings_in(&mut tx, integration_id, run_id, &batch).await?;
        tx.commit().await.map_err(db("committing findings"))?;
        Ok(counts)
    }

    async fn apply_finding_changes(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        changes: &[FindingChange],
    ) -> Result<DeltaCounts> {
        let mut tx = self.begin().await?;
        let started_at = touch_run(&mut tx, integration_id, run_id).await?;
        let mut counts = DeltaCounts::default();
        for step in delta_steps(changes) {
            match step {
                DeltaStep::Upsert(batch) => {
                    let batch = FindingBatch::new(&batch)?;
                    counts.upserted +=
                        upsert_findings_in(&mut tx, integration_id, run_id, &batch).await?;
                }
                DeltaStep::Fix(key, at) => {
                    let done = sqlx::query(FIX_FINDING)
                        .bind(integration_id)
                        .bind(clean(&key.asset_source_id))
                        .bind(clean(&key.software_vendor))
                        .bind(clean(&key.software_name))
                        .bind(clean(&key.software_version))
                        .bind(key.cve_id.as_str())
                        .bind(ts(at))
                        .bind(ts(started_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("marking a finding fixed"))?;
                    if done.rows_affected() > 0 {
                        counts.fixed += 1;
                    } else {
                        counts.ignored += 1;
                    }
                }
            }
        }
        tx.commit().await.map_err(db("committing delta changes"))?;
        Ok(counts)
    }

    async fn reconcile(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        policy: ReconcilePolicy,
    ) -> Result<ReconcileOutcome> {
        let mut tx = self.begin().await?;
        touch_run(&mut tx, integration_id, run_id).await?;
        let plan = reconcile_plan(&policy.scope);
        let mut count = sqlx::query(AssertSqlSafe(plan.count.sql.as_str()))
            .bind(integration_id)
            .bind(run_id);
        for a in &plan.count.args {
            count = count.bind(a.as_str());
        }
        let row = count
            .fetch_one(&mut *tx)
            .await
            .map_err(db("counting unseen assets"))?;
        let active = as_u64(row.int("active")?);
        let unseen = as_u64(row.int("unseen")?);
        if breaker_trips(unseen, active, policy.max_missing_share) {
            // Dropping the transaction rolls back: nothing changes.
            return Ok(ReconcileOutcome::Held {
                would_mark_missing: unseen,
                active,
            });
        }
        let now = ts(policy.now);
        let mut changed = [0u64; 3];
        let stmts = [
            (Some(&plan.assets), "marking unseen assets missing"),
            (Some(&plan.findings), "marking unseen findings fixed"),
            (
                plan.recommendations.as_ref(),
                "marking unseen recommendations removed",
            ),
        ];
        for (k, (stmt, op)) in stmts.into_iter().enumerate() {
            let Some(stmt) = stmt else { continue };
            let mut q = sqlx::query(AssertSqlSafe(stmt.sql.as_str()))
                .bind(integration_id)
                .bind(run_id)
                .bind(now);
            for a in &stmt.args {
                q = q.bind(a.as_str());
            }
            changed[k] = q.execute(&mut *tx).await.map_err(db(op))?.rows_affected();
        }
        tx.commit().await.map_err(db("committing reconciliation"))?;
        Ok(ReconcileOutcome::Applied {
            assets_missing: changed[0],
            findings_fixed: changed[1],
            recommendations_removed: changed[2],
        })
    }

    async fn upsert_subscriptions(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        subscriptions: &[Subscription],
    ) -> Result<UpsertCounts> {
        self.cloud_upsert_subscriptions(integration_id, run_id, subscriptions)
            .await
    }

    async fn record_subscription_read(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        subscription_id: &str,
        outcome: &SubscriptionReadOutcome,
    ) -> Result<()> {
        self.cloud_record_subscription_read(integration_id, run_id, subscription_id, outcome)
            .await
    }

    async fn list_subscriptions(
        &self,
        integration: Option<IntegrationId>,
    ) -> Result<Vec<StoredSubscription>> {
        self.cloud_list_subscriptions(integration).await
    }

    async fn subscription_reads(&self, run_id: i64) -> Result<Vec<(String, SubscriptionRead)>> {
        self.cloud_subscription_reads(run_id).await
    }

    async fn record_posture(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        captured_at: DateTime<Utc>,
        scores: &[PostureScore],
        controls: &[ControlScore],
    ) -> Result<()> {
        self.cloud_record_posture(integration_id, run_id, captured_at, scores, controls)
            .await
    }

    async fn latest_posture(
        &self,
        integration: Option<IntegrationId>,
    ) -> Result<Vec<StoredPostureScore>> {
        self.cloud_latest_posture(integration).await
    }

    async fn posture_history(
        &self,
        integration: Option<IntegrationId>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<PosturePoint>> {
        self.cloud_posture_history(integration, since).await
    }

    async fn latest_controls(
        &self,
        integration: Option<IntegrationId>,
        subscription: Option<&str>,
    ) -> Result<Vec<StoredControlScore>> {
        self.cloud_latest_controls(integration, subscription).await
    }

    async fn upsert_recommendations(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        recommendations: &[Recommendation],
    ) -> Result<UpsertCounts> {
        self.cloud_upsert_recommendations(integration_id, run_id, recommendations)
            .await
    }

    async fn recommendations_page(
        &self,
        filter: &RecommendationFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredRecommendation>> {
        self.cloud_recommendations_page(filter, after, limit).await
    }

    async fn linked_assets(&self, asset_id: i64) -> Result<Vec<StoredAsset>> {
        self.cloud_linked_assets(asset_id).await
    }

    async fn assets_page(
        &self,
        filter: &AssetFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredAsset>> {
        let sql = assets_query(DIALECT, filter, after, limit);
        let mut tx = self.read.begin().await.map_err(db("starting a read"))?;
        let rows = bind_args(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.args)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("listing assets"))?;
        let names = decode_integration_names(
            &sqlx::query(INTEGRATION_NAMES)
                .fetch_all(&mut *tx)
                .await
                .map_err(db("listing assets"))?,
        )?;
        let items = rows
            .iter()
            .map(|r| decode_asset(r, &names))
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |a| a.id))
    }

    async fn findings_page(
        &self,
        filter: &FindingFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredFinding>> {
        let plan = match search_precheck(DIALECT, filter) {
            None => None,
            Some(check) => Some(decode_search_plan(
                &bind_args(sqlx::query(AssertSqlSafe(check.text.as_str())), &check.args)
                    .fetch_one(&self.read)
                    .await
                    .map_err(db("listing findings"))?,
            )?),
        };
        let untouched = match changes_precheck(filter) {
            None => false,
            Some(check) => !bind_args(sqlx::query(AssertSqlSafe(check.text.as_str())), &check.args)
                .fetch_one(&self.read)
                .await
                .map_err(db("listing findings"))?
                .flag("any")?,
        };
        if untouched || plan.is_some_and(|p| p.finds_nothing()) {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let sql = findings_query_planned(DIALECT, filter, after, limit, plan);
        let mut tx = self.read.begin().await.map_err(db("starting a read"))?;
        let rows = bind_args(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.args)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("listing findings"))?;
        let mut base = rows
            .iter()
            .map(decode_finding_row)
            .collect::<Result<Vec<_>>>()?;
        // The extra row only tells whether there is a next page.
        let more = base.len() > limit.clamp(1, 100_000) as usize;
        base.truncate(limit.clamp(1, 100_000) as usize);
        let mut refs = FindingRefs {
            integrations: decode_integration_names(
                &sqlx::query(INTEGRATION_NAMES)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("listing findings"))?,
            )?,
            ..Default::default()
        };
        let (asset_ids, software_ids, cve_ids) = FindingRefs::keys(&base);
        for r in sqlx::query(
            "SELECT id, source_id, name FROM assets WHERE id IN (SELECT value FROM json_each($1))",
        )
        .bind(json_ids(&asset_ids))
        .fetch_all(&mut *tx)
        .await
        .map_err(db("listing findings"))?
        {
            refs.add_asset(&r)?;
        }
        for r in sqlx::query("SELECT id, vendor, name, version FROM software WHERE id IN (SELECT value FROM json_each($1))")
            .bind(json_ids(&software_ids))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("listing findings"))?
        {
            refs.add_software(&r)?;
        }
        for r in sqlx::query(
            "SELECT cve_id, severity, cvss, epss, public_exploit, exploit_verified, exploit_in_kit, published_on \
             FROM vulnerabilities WHERE cve_id IN (SELECT value FROM json_each($1))",
        )
        .bind(json_strings(&cve_ids))
        .fetch_all(&mut *tx)
        .await
        .map_err(db("listing findings"))?
        {
            refs.add_cve(&r)?;
        }
        let items = base
            .into_iter()
            .map(|r| refs.assemble(r))
            .collect::<Result<Vec<_>>>()?;
        let next = if more {
            items.last().map(|f| f.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn vulnerabilities_page(
        &self,
        filter: &VulnerabilityFilter,
        after: Option<CveId>,
        limit: u32,
    ) -> Result<Page<StoredVulnerability, CveId>> {
        let sql = vulnerabilities_query(DIALECT, filter, after.as_ref(), limit);
        let rows = bind_args(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.args)
            .fetch_all(&self.read)
            .await
            .map_err(db("listing vulnerabilities"))?;
        let items = rows
            .iter()
            .map(decode_vulnerability)
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |v| v.vulnerability.cve_id.clone()))
    }

    async fn counts(&self, integration: Option<IntegrationId>) -> Result<Counts> {
        let (assets_sql, findings_sql) = match integration {
            Some(_) => (
                "SELECT status, NULL AS severity, count(*) AS n FROM assets WHERE integration_id = $1 GROUP BY status",
                "SELECT status, severity, count(*) AS n FROM findings WHERE integration_id = $1 GROUP BY status, severity",
            ),
            None => (
                "SELECT status, NULL AS severity, count(*) AS n FROM assets GROUP BY status",
                "SELECT status, severity, count(*) AS n FROM findings GROUP BY status, severity",
            ),
        };
        // One connection for every query: see `cloud::cloud_counts`.
        let mut tx = self.read.begin().await.map_err(db("starting a read"))?;
        let mut counts = Counts::default();
        for (sql, is_assets) in [(assets_sql, true), (findings_sql, false)] {
            let mut q = sqlx::query(sql);
            if let Some(i) = integration {
                q = q.bind(i);
            }
            let rows = q
                .fetch_all(&mut *tx)
                .await
                .map_err(db("counting for the dashboard"))?;
            for r in &rows {
                tally(&mut counts, is_assets, r)?;
            }
        }
        cloud::cloud_counts(&mut tx, integration, &mut counts).await?;
        Ok(counts)
    }

    async fn top_fixes(&self, limit: u32) -> Result<Vec<TopFix>> {
        let rows = sqlx::query(TOP_FIXES_SQL)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(db("ranking recommended updates"))?;
        rows.iter().map(decode_top_fix).collect()
    }

    async fn riskiest_assets(&self, limit: u32) -> Result<Vec<RiskyAsset>> {
        let rows = sqlx::query(RISKIEST_ASSETS_SQL)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(db("ranking assets"))?;
        rows.iter().map(decode_risky_asset).collect()
    }

    async fn assets_sorted(
        &self,
        filter: &AssetFilter,
        sort: AssetSort,
        after: Option<&SortCursor>,
        limit: u32,
    ) -> Result<Page<ListedAsset, SortCursor>> {
        check_cursor(sort, after)?;
        let sql = assets_sorted_query(DIALECT, filter, sort, after, limit);
        let mut tx = self.read.begin().await.map_err(db("starting a read"))?;
        let rows = bind_args(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.args)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("listing assets"))?;
        let names = decode_integration_names(
            &sqlx::query(INTEGRATION_NAMES)
                .fetch_all(&mut *tx)
                .await
                .map_err(db("listing assets"))?,
        )?;
        sorted_page(&rows, &names, sort, limit)
    }

    async fn summary(&self, top: u32) -> Result<Summary> {
        let mut tx = self.read.begin().await.map_err(db("starting a read"))?;
        let op = "reading the dashboard summary";
        let mut counts = Counts::default();
        for r in sqlx::query(SUMMARY_COUNTS)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(op))?
        {
            add_counts(&mut counts, &r)?;
        }
        let top_fixes = sqlx::query(AssertSqlSafe(summary_top_fixes_sql(DIALECT)))
            .bind(i64::from(top))
            .fetch_all(&mut *tx)
            .await
            .map_err(db(op))?
            .iter()
            .map(decode_top_fix)
            .collect::<Result<Vec<_>>>()?;
        let riskiest = sqlx::query(SUMMARY_RISKIEST)
            .bind(i64::from(top))
            .fetch_all(&mut *tx)
            .await
            .map_err(db(op))?
            .iter()
            .map(decode_risky_asset)
            .collect::<Result<Vec<_>>>()?;
        let as_of = sqlx::query(LAST_FINISHED)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(op))?
            .opt_ts("t")?;
        // Subscriptions and recommendations number in the thousands, not millions: counted live.
        cloud::cloud_counts(&mut tx, None, &mut counts).await?;
        Ok(Summary {
            counts,
            top_fixes,
            riskiest,
            as_of,
        })
    }

    async fn enqueue_job(
        &self,
        integration_id: IntegrationId,
        kind: JobKind,
        run_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Enqueued> {
        let op = "queueing a sync job";
        let mut tx = self.begin().await?;
        let active = sqlx::query(ACTIVE_JOB)
            .bind(integration_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(op))?
            .map(|r| decode_job(&r))
            .transpose()?;
        let out = match active {
            Some(job) if job.state == JobState::Running => Enqueued::Running(job),
            Some(job) => match queued_change(&job, kind, run_at) {
                None => Enqueued::AlreadyQueued(job),
                Some((kind, run_at)) => Enqueued::Queued(decode_job(
                    &sqlx::query(MOVE_JOB)
                        .bind(job.id)
                        .bind(kind.as_str())
                        .bind(ts(run_at))
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db(op))?,
                )?),
            },
            None => {
                let row = sqlx::query(INSERT_JOB)
                    .bind(integration_id)
                    .bind(kind.as_str())
                    .bind(ts(run_at))
                    .bind(ts(now))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| {
                        if is_foreign_key_violation(&e) {
                            integration_not_found(integration_id)
                        } else {
                            db(op)(e)
                        }
                    })?;
                Enqueued::Queued(decode_job(&row)?)
            }
        };
        tx.commit().await.map_err(db(op))?;
        Ok(out)
    }

    async fn claim_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        only: Option<IntegrationId>,
    ) -> Result<Option<Job>> {
        // SQLite has one writer at a time: the UPDATE picks and takes the job atomically.
        let stale = now - chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        sqlx::query(AssertSqlSafe(claim_job_sql("")))
            .bind(clean(worker))
            .bind(ts(now))
            .bind(ts(stale))
            .bind(only)
            .fetch_optional(&self.write)
            .await
            .map_err(db("claiming a sync job"))?
            .map(|r| decode_job(&r))
            .transpose()
    }

    async fn heartbeat_job(&self, job_id: i64, worker: &str, now: DateTime<Utc>) -> Result<()> {
        let done = sqlx::query(HEARTBEAT_JOB)
            .bind(job_id)
            .bind(clean(worker))
            .bind(ts(now))
            .execute(&self.write)
            .await
            .map_err(db("recording a job's heartbeat"))?;
        if done.rows_affected() == 0 {
            return Err(job_lost(job_id, worker));
        }
        Ok(())
    }

    async fn finish_job(
        &self,
        job_id: i64,
        worker: &str,
        now: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<Job> {
        let op = "finishing a sync job";
        let state = if error.is_some() {
            JobState::Failed
        } else {
            JobState::Done
        };
        let mut tx = self.begin().await?;
        let job = sqlx::query(FINISH_JOB)
            .bind(job_id)
            .bind(clean(worker))
            .bind(state.as_str())
            .bind(ts(now))
            .bind(error.map(|e| clean(e).into_owned()))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(op))?
            .map(|r| decode_job(&r))
            .transpose()?
            .ok_or_else(|| job_lost(job_id, worker))?;
        sqlx::query(PRUNE_JOBS)
            .bind(job.integration_id)
            .bind(JOBS_KEPT)
            .execute(&mut *tx)
            .await
            .map_err(db(op))?;
        tx.commit().await.map_err(db(op))?;
        Ok(job)
    }

    async fn list_jobs(
        &self,
        integration: Option<IntegrationId>,
        active_only: bool,
        limit: u32,
    ) -> Result<Vec<Job>> {
        sqlx::query(LIST_JOBS)
            .bind(integration)
            .bind(active_only)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(db("listing sync jobs"))?
            .iter()
            .map(decode_job)
            .collect()
    }

    async fn record_audit(&self, e: &NewAuditEntry) -> Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(ts(e.at))
        .bind(clean(&e.actor))
        .bind(clean(&e.action))
        .bind(clean_opt(&e.target))
        .bind(clean_opt(&e.details))
        .fetch_one(&self.write)
        .await
        .map_err(db("recording an audit entry"))
    }

    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, details FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db("reading the audit log"))?;
        rows.iter().map(decode_audit).collect()
    }

    async fn create_user(&self, new: &NewUser) -> Result<User> {
        let row = sqlx::query(concat!(
            "INSERT INTO users (name, role, password_hash, created_at, must_change_password) \
             VALUES ($1, $2, $3, $4, $5) RETURNING ",
            user_columns!()
        ))
        .bind(clean(&new.name))
        .bind(new.role.as_str())
        .bind(&new.password_hash)
        .bind(ts(new.created_at))
        .bind(new.must_change_password)
        .fetch_one(&self.write)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!(
                    "an account named '{}' already exists: choose another name",
                    new.name.chars().take(60).collect::<String>()
                ))
            } else {
                StoreError::db("creating an account")(e)
            }
        })?;
        decode_user(&row)
    }

    async fn user_credentials(&self, name: &str) -> Result<Option<UserCredentials>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            ", password_hash FROM users WHERE lower(name) = lower($1)"
        ))
        .bind(clean(name))
        .fetch_optional(&self.read)
        .await
        .map_err(db("reading an account"))?;
        row.map(|r| {
            Ok(UserCredentials {
                user: decode_user(&r)?,
                password_hash: r.text("password_hash")?,
            })
        })
        .transpose()
    }

    async fn get_user(&self, id: i64) -> Result<User> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(db("reading an account"))?;
        match row {
            Some(r) => decode_user(&r),
            None => Err(StoreError::NotFound(format!(
                "there is no account with id {id}"
            ))),
        }
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY lower(name)"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(db("listing accounts"))?;
        rows.iter().map(decode_user).collect()
    }

    async fn set_password(
        &self,
        id: i64,
        password_hash: &str,
        must_change: bool,
        at: DateTime<Utc>,
    ) -> Result<User> {
        let row = sqlx::query(concat!("UPDATE users SET password_hash = $2, must_change_password = $3, password_changed_at = $4 \
             WHERE id = $1 RETURNING ", user_columns!()))
        .bind(id)
        .bind(password_hash)
        .bind(must_change)
        .bind(ts(at))
        .fetch_optional(&self.write)
        .await
        .map_err(db("changing a password"))?;
        match row {
            Some(r) => decode_user(&r),
            None => Err(StoreError::NotFound(format!(
                "there is no account with id {id}"
            ))),
        }
    }

    async fn delete_user(&self, id: i64) -> Result<()> {
        // One statement on the one writer: the count and the delete cannot interleave with
        // another removal.
        let done = sqlx::query(concat!(
            "DELETE FROM users WHERE id = $1 AND ",
            not_last_admin!()
        ))
        .bind(id)
        .execute(&self.write)
        .await
        .map_err(db("removing an account"))?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let user = self.get_user(id).await?;
        Err(StoreError::Conflict(format!(
            "'{}' is the last admin: make another account an admin first (rampart user add NAME --role admin), so that someone can still manage Rampart",
            user.name
        )))
    }

    async fn issue_setup_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query("DELETE FROM setup_tokens WHERE expires_at <= $1")
            .bind(ts(now))
            .execute(&self.write)
            .await
            .map_err(db("issuing a setup token"))?;
        sqlx::query("INSERT INTO setup_tokens (token_hash, expires_at) VALUES ($1, $2)")
            .bind(token_hash)
            .bind(ts(expires_at))
            .execute(&self.write)
            .await
            .map_err(db("issuing a setup token"))?;
        Ok(())
    }

    async fn consume_setup_token(&self, token_hash: &str, now: DateTime<Utc>) -> Result<bool> {
        // The DELETE is the check: of two requests with the same token, only one deletes it.
        let done =
            sqlx::query("DELETE FROM setup_tokens WHERE token_hash = $1 AND expires_at > $2")
                .bind(token_hash)
                .bind(ts(now))
                .execute(&self.write)
                .await
                .map_err(db("using a setup token"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // Setup is done: the tokens other starts printed are worthless too.
        sqlx::query("DELETE FROM setup_tokens")
            .execute(&self.write)
            .await
            .map_err(db("using a setup token"))?;
        Ok(true)
    }

    async fn save_session(&self, id: &str, data: &str, expires_at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
        )
        .bind(id)
        .bind(data)
        .bind(ts(expires_at))
        .execute(&self.write)
        .await
        .map_err(db("saving a session"))?;
        Ok(())
    }

    async fn load_session(&self, id: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT data FROM sessions WHERE id = $1 AND expires_at > $2")
            .bind(id)
            .bind(ts(now))
            .fetch_optional(&self.read)
            .await
            .map_err(db("loading a session"))
    }

    async fn delete_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(db("deleting a session"))?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(ts(now))
            .execute(&self.write)
            .await
            .map_err(db("deleting expired sessions"))?;
        Ok(done.rows_affected())
    }

    async fn create_api_token(&self, new: &NewApiToken) -> Result<ApiToken> {
        let row = sqlx::query(
            "INSERT INTO api_tokens (name, token_hash, scope, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id, name, scope, created_by, created_at",
        )
        .bind(clean(&new.name))
        .bind(&new.token_hash)
        .bind(new.scope.as_str())
        .bind(clean(&new.created_by))
        .bind(ts(new.created_at))
        .fetch_one(&self.write)
        .await
        .map_err(db("creating an API token"))?;
        decode_api_token(&row)
    }

    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query(
            "SELECT id, name, scope, created_by, created_at FROM api_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await
        .map_err(db("reading an API token"))?;
        row.as_ref().map(decode_api_token).transpose()
    }

    async fn list_api_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(
            "SELECT id, name, scope, created_by, created_at FROM api_tokens ORDER BY id DESC",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db("listing API tokens"))?;
        rows.iter().map(decode_api_token).collect()
    }

    async fn delete_api_token(&self, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(db("deleting an API token"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "there is no API token with id {id}"
            )));
        }
        Ok(())
    }
}

/// A JSON array of ids, for `IN (SELECT value FROM json_each(?))`: one parameter whatever the count.
fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned())
}

fn json_strings(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned())
}

/// Adds one `status, severity, n` row of the dashboard queries to the counts.
pub(crate) fn tally(counts: &mut Counts, is_assets: bool, r: &impl RowExt) -> Result<()> {
    let status = r.text("status")?;
    let n = as_u64(r.int("n")?);
    if is_assets {
        match status.as_str() {
            "active" => counts.assets_active += n,
            _ => counts.assets_missing += n,
        }
    } else {
        match status.as_str() {
            "open" => counts
                .findings_open
                .add(severity_from_code(r.opt_int("severity")?)?, n),
            _ => counts.findings_fixed += n,
        }
    }
    Ok(())
}

/// Parses `sqlite://PATH`, `sqlite:PATH` or a plain path into a file path.
pub(crate) fn path_from_url(url: &str) -> Result<PathBuf> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if rest.is_empty() {
        return Err(invalid("it names no file"));
    }
    if rest == ":memory:" || rest.starts_with(":memory:") {
        return Err(invalid(
            "an in-memory database would lose everything when Rampart exits; give a file path (tests use rampart_store::testing::sqlite_store)",
        ));
    }
    if rest.contains('?') {
        return Err(invalid(
            "options in a SQLite URL are not supported; Rampart sets WAL, synchronous=NORMAL, foreign keys and a busy timeout itself",
        ));
    }
    PathBuf::from_str(rest).map_err(|_| invalid("it is not a file path"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_model::{FindingStatus, Severity};

    /// Keyset pages must come straight out of an index in id order: a plan that sorts would
    /// sort every matching row of the table for each page of 1,000.
    #[tokio::test]
    async fn listing_pages_never_sort_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("plan.db"))
            .await
            .unwrap();
        let filters = [
            FindingFilter::default(),
            FindingFilter {
                integration: Some(1),
                ..Default::default()
            },
            FindingFilter {
                status: Some(FindingStatus::Open),
                ..Default::default()
            },
            FindingFilter {
                integration: Some(1),
                status: Some(FindingStatus::Fixed),
                severity: Some(Severity::High),
                search: Some("openssl".into()),
                changed_since: Some(Utc::now()),
                ..Default::default()
            },
        ];
        for f in &filters {
            let sql = findings_query(DIALECT, f, Some(10), 1000);
            let plan = explain(&store, &sql).await;
            assert!(!plan.contains("TEMP B-TREE"), "{f:?}: {plan}");
        }
        // Narrow filters read their own index and sort their few rows (one asset's findings,
        // one CVE's open findings) instead of walking the table.
        for (f, index) in [
            (
                FindingFilter {
                    integration: Some(1),
                    status: Some(FindingStatus::Fixed),
                    asset_source_id: Some("abc".into()),
                    ..Default::default()
                },
                "findings_natural_key",
            ),
            (
                FindingFilter {
                    asset_source_id: Some("abc".into()),
                    ..Default::default()
                },
                "findings_natural_key",
            ),
            (
                FindingFilter {
                    integration: Some(1),
                    status: Some(FindingStatus::Open),
                    cve_id: Some("CVE-2024-1234".parse().unwrap()),
                    ..Default::default()
                },
                "findings_open_by_cve",
            ),
        ] {
            let sql = findings_query(DIALECT, &f, Some(10), 1000);
            let plan = explain(&store, &sql).await;
            assert!(plan.contains(index), "{f:?}: {plan}");
        }
        // A search that only a few asset names match reads those assets' findings.
        let host = FindingFilter {
            search: Some("host-7.contoso".into()),
            status: Some(FindingStatus::Open),
            ..Default::default()
        };
        let plan = SearchPlan {
            software: false,
            assets: 3,
        };
        let sql = findings_query_planned(DIALECT, &host, None, 50, Some(plan));
        let found = explain(&store, &sql).await;
        assert!(found.contains("findings_natural_key"), "{found}");
        let many = SearchPlan {
            software: true,
            assets: 3,
        };
        let sql = findings_query_planned(DIALECT, &host, None, 50, Some(many));
        let found = explain(&store, &sql).await;
        assert!(!found.contains("TEMP B-TREE"), "{found}");
        // Every sort order of the asset listing reads its (key, id) index in order.
        for key in AssetSortKey::ALL {
            for sort in [AssetSort::asc(key), AssetSort::desc(key)] {
                for f in [
                    AssetFilter::default(),
                    AssetFilter {
                        integration: Some(1),
                        status: Some(rampart_model::AssetStatus::Active),
                        ..Default::default()
                    },
                ] {
                    let page = assets_sorted_query(DIALECT, &f, sort, None, 50);
                    let plan = explain(&store, &page).await;
                    assert!(!plan.contains("TEMP B-TREE"), "{sort} {f:?}: {plan}");
                    let first = store.assets_sorted(&f, sort, None, 1).await.unwrap();
                    assert!(first.items.is_empty());
                }
            }
        }
        for f in [
            AssetFilter::default(),
            AssetFilter {
                integration: Some(1),
                ..Default::default()
            },
            AssetFilter {
                integration: Some(1),
                status: Some(rampart_model::AssetStatus::Missing),
                search: Some("host".into()),
                ..Default::default()
            },
        ] {
            let sql = assets_query(DIALECT, &f, None, 1000);
            let plan = explain(&store, &sql).await;
            assert!(!plan.contains("TEMP B-TREE"), "{f:?}: {plan}");
        }
    }

    async fn explain(store: &SqliteStore, sql: &Sql) -> String {
        let text = format!("EXPLAIN QUERY PLAN {}", sql.text);
        let rows = bind_args(sqlx::query(AssertSqlSafe(text.as_str())), &sql.args)
            .fetch_all(&store.read)
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get::<String, _>("detail").unwrap())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}
