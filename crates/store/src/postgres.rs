//! The PostgreSQL backend: a connection pool; migrations under the migrator's advisory lock.
//!
//! Bulk path: each batch is streamed with `COPY … FROM STDIN` (text format) into a temporary
//! staging table, then merged with one `INSERT … SELECT … ON CONFLICT … DO UPDATE … RETURNING`
//! whose `change_kind` results are counted by the server. Asset and software ids are resolved by
//! joins in that statement, so no id map lives in the client.

use std::io::Write as _;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, Row, TypeInfo, ValueRef};

use rampart_model::{
    Asset, ControlScore, CveId, Finding, Integration, IntegrationId, IntegrationName, PostureScore,
    Recommendation, Subscription, SyncRun, Vulnerability,
};

use crate::cloud_sql::reconcile_plan;
use crate::common::*;
use crate::error::{Result, StoreError};
use crate::jobs::*;
use crate::run_owner::RunOwner;
use crate::sort::*;
use crate::sqlite::tally;
use crate::store::{STALE_RUN_AFTER, Store};
use crate::summary::*;
use crate::types::*;
use crate::types_cloud::*;

mod cloud;
mod intel;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const DIALECT: Dialect = Dialect {
    ilike: "ILIKE",
    collate_c: " COLLATE \"C\"",
    least: "LEAST",
};

/// Connections per process. Several processes share one server: keep processes × this under
/// the server's `max_connections` (100 by default).
const POOL_SIZE: u32 = 10;

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    StoreError::db(op)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// A deadlock (40P01) or serialization failure (40001): the transaction was rolled back and can
/// simply run again.
fn is_lock_conflict(e: &StoreError) -> bool {
    match e {
        StoreError::Database { source, .. } => source
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c == "40P01" || c == "40001"),
        _ => false,
    }
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_foreign_key_violation())
}

/// A URL fit for an error message or for showing: the password replaced.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                // set_password only fails for URLs that cannot have one.
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        // Unparseable: show only the scheme, the rest might hold a password.
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => "(unparseable URL)".to_owned(),
        },
    }
}

impl RowExt for PgRow {
    fn int(&self, col: &str) -> Result<i64> {
        self.opt_int(col)?
            .ok_or_else(|| StoreError::Corrupt(format!("{col} is empty")))
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        // SMALLINT and INTEGER columns widen to i64, so the shared decoders need not care.
        let raw = self.try_get_raw(col).map_err(db("reading a row"))?;
        if raw.is_null() {
            return Ok(None);
        }
        let ty = raw.type_info().name().to_owned();
        let v = match ty.as_str() {
            "INT2" => self.try_get::<i16, _>(col).map(i64::from),
            "INT4" => self.try_get::<i32, _>(col).map(i64::from),
            _ => self.try_get::<i64, _>(col),
        };
        v.map(Some).map_err(db("reading a row"))
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
        self.try_get(col).map_err(db("reading a row"))
    }
    fn opt_date(&self, col: &str) -> Result<Option<NaiveDate>> {
        self.try_get(col).map_err(db("reading a row"))
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        self.try_get(col).map_err(db("reading a row"))
    }
}

/// The PostgreSQL implementation of [`Store`].
pub struct PgStore {
    pool: PgPool,
    /// Something to drop together with the store, after the pool (fields drop in declaration
    /// order): the test harness drops its per-test database this way.
    attachment: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Catalogue rows through a staging table and one upsert; `on_conflict` decides what a known
    /// CVE keeps (see `upsert_vulnerabilities` and `fill_vulnerabilities`).
    async fn write_vulnerabilities(
        &self,
        vulns: &[Vulnerability],
        on_conflict: &str,
    ) -> Result<UpsertCounts> {
        let rows = dedupe_last(vulns, |v| &v.cve_id);
        if rows.is_empty() {
            return Ok(UpsertCounts::default());
        }
        let mut b = CopyBuf::default();
        for v in rows {
            b.text(v.cve_id.as_str());
            b.opt_int(v.severity.map(severity_code));
            b.opt_f64(v.cvss);
            b.opt_text(v.cvss_vector.as_deref());
            b.opt_f64(v.epss);
            b.flag(v.public_exploit);
            b.flag(v.exploit_verified);
            b.flag(v.exploit_in_kit);
            b.text(&json_list(&v.exploit_types));
            b.opt_ts(v.published_on.map(ts));
            b.opt_ts(v.updated_on.map(ts));
            b.opt_text(v.description.as_deref());
            b.opt_int(
                v.source_exposed_machines
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            );
            b.end_row();
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
        stage(
            &mut tx,
            "CREATE TEMP TABLE stage_vulnerabilities (cve_id TEXT NOT NULL, severity SMALLINT, cvss DOUBLE PRECISION, \
             cvss_vector TEXT, epss DOUBLE PRECISION, public_exploit BOOLEAN NOT NULL, exploit_verified BOOLEAN NOT NULL, \
             exploit_in_kit BOOLEAN NOT NULL, exploit_types TEXT NOT NULL, published_on TIMESTAMPTZ, \
             updated_on TIMESTAMPTZ, description TEXT, source_exposed_machines BIGINT) ON COMMIT DROP",
            "COPY stage_vulnerabilities FROM STDIN",
            b.into_bytes(),
            "staging vulnerabilities",
        )
        .await?;
        let counts = {
            let sql = format!(
                "{}{on_conflict}{}",
                concat!(
                    "WITH up AS (INSERT INTO vulnerabilities (",
                    vulnerability_insert_columns!(),
                    ") SELECT cve_id, severity, cvss, cvss_vector, epss, public_exploit, exploit_verified, exploit_in_kit, \
                     exploit_types, published_on, updated_on, description, source_exposed_machines, $1, $1 \
                     FROM stage_vulnerabilities"
                ),
                ") SELECT change_kind, count(*) AS n FROM up GROUP BY change_kind"
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(ts(Utc::now()))
                .fetch_all(&mut *tx)
                .await
                .map_err(db("upserting vulnerabilities"))?;
            let mut counts = UpsertCounts::default();
            for r in &rows {
                counts.add_kind(r.int("change_kind")?, as_u64(r.int("n")?));
            }
            counts
        };
        tx.commit()
            .await
            .map_err(db("committing vulnerabilities"))?;
        Ok(counts)
    }

    /// Connects to `url` and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl {
            url: redact(url),
            reason: e.to_string(),
        })?;
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(default database)")
        );
        // One direct connection first: the pool would keep retrying an unreachable server until
        // its acquire timeout, and then report the timeout instead of the reason.
        let probe =
            PgConnection::connect_with(&options)
                .await
                .map_err(|e| StoreError::Connect {
                    target: target.clone(),
                    reason: e.to_string(),
                })?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.application_name("rampart"))
            .await
            .map_err(|e| StoreError::Connect {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        // The migrator holds pg_advisory_lock while it runs: processes starting together take
        // turns instead of racing on the schema.
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(format!("{e} (PostgreSQL database {target})")))?;
        // A bulk load that died before rebuilding its deferred index left it missing.
        sqlx::query(CREATE_FINDINGS_BY_CVE)
            .execute(&pool)
            .await
            .map_err(|e| StoreError::Migration(format!("{e} (PostgreSQL database {target})")))?;
        Ok(Self {
            pool,
            attachment: None,
        })
    }

    /// Keeps `value` alive as long as the store, and drops it after the pool.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn attach(&mut self, value: Box<dyn Send + Sync>) {
        self.attachment = Some(value);
    }

    /// The connection pool, for callers that need PostgreSQL-only features (job claiming with
    /// SKIP LOCKED, advisory locks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The by-CVE index of migration 0001, word for word (`IF NOT EXISTS` added): dropped for the
/// first load of an integration and rebuilt after it (see [`Store::begin_bulk_findings`]).
const CREATE_FINDINGS_BY_CVE: &str = "CREATE INDEX IF NOT EXISTS findings_open_by_cve ON findings (cve_id, integration_id, asset_id) WHERE status = 'open'";

fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
    truncate_micros(t)
}

// ---- COPY text format ------------------------------------------------------------------------

/// A batch in PostgreSQL's COPY text format: fields separated by tabs, rows by newlines, NULL as
/// `\N`; backslash, tab, newline and carriage return escaped. (NUL never reaches here: `clean`
/// replaced it.)
#[derive(Default)]
pub(crate) struct CopyBuf {
    buf: Vec<u8>,
    in_row: bool,
}

impl CopyBuf {
    fn sep(&mut self) {
        if self.in_row {
            self.buf.push(b'\t');
        }
        self.in_row = true;
    }

    pub(crate) fn null(&mut self) {
        self.sep();
        self.buf.extend_from_slice(b"\\N");
    }

    pub(crate) fn text(&mut self, s: &str) {
        self.sep();
        for &b in clean(s).as_bytes() {
            match b {
                b'\\' => self.buf.extend_from_slice(b"\\\\"),
                b'\t' => self.buf.extend_from_slice(b"\\t"),
                b'\n' => self.buf.extend_from_slice(b"\\n"),
                b'\r' => self.buf.extend_from_slice(b"\\r"),
                _ => self.buf.push(b),
            }
        }
    }

    pub(crate) fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    pub(crate) fn int(&mut self, v: i64) {
        self.sep();
        // Writing to a Vec cannot fail.
        let _ = write!(self.buf, "{v}");
    }

    pub(crate) fn opt_int(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.int(v),
            None => self.null(),
        }
    }

    pub(crate) fn opt_f64(&mut self, v: Option<f64>) {
        match finite(v) {
            // Rust prints the shortest representation that parses back to the same f64.
            Some(v) => {
                self.sep();
                let _ = write!(self.buf, "{v:?}");
            }
            None => self.null(),
        }
    }

    pub(crate) fn flag(&mut self, v: bool) {
        self.sep();
        self.buf.push(if v { b't' } else { b'f' });
    }

    pub(crate) fn opt_ts(&mut self, v: Option<DateTime<Utc>>) {
        match v {
            Some(t) => {
                self.sep();
                let _ = write!(self.buf, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f+00"));
            }
            None => self.null(),
        }
    }

    pub(crate) fn end_row(&mut self) {
        self.buf.push(b'\n');
        self.in_row = false;
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Creates a staging table (dropped at commit at the latest) and streams `data` into it.
async fn stage(
    conn: &mut PgConnection,
    create: &'static str,
    copy: &'static str,
    data: Vec<u8>,
    op: &'static str,
) -> Result<()> {
    sqlx::query(create)
        .execute(&mut *conn)
        .await
        .map_err(db(op))?;
    let mut copy_in = conn.copy_in_raw(copy).await.map_err(db(op))?;
    // Send in slices: one huge message would have to be buffered whole by the driver.
    for chunk in data.chunks(1 << 20) {
        if let Err(e) = copy_in.send(chunk).await {
            // The COPY must be ended before the connection can be used (or returned) again.
            let _ = copy_in.abort("batch aborted").await;
            return Err(StoreError::db(op)(e));
        }
    }
    copy_in.finish().await.map_err(db(op))?;
    Ok(())
}

async fn count_kinds(
    conn: &mut PgConnection,
    sql: &'static str,
    integration_id: Option<IntegrationId>,
    observed: Option<DateTime<Utc>>,
    run_id: Option<i64>,
    op: &'static str,
) -> Result<UpsertCounts> {
    let mut q = sqlx::query(sql);
    if let Some(i) = integration_id {
        q = q.bind(i);
    }
    if let Some(t) = observed {
        q = q.bind(t);
    }
    if let Some(r) = run_id {
        q = q.bind(r);
    }
    let rows = q.fetch_all(&mut *conn).await.map_err(db(op))?;
    let mut counts = UpsertCounts::default();
    for r in &rows {
        counts.add_kind(r.int("change_kind")?, as_u64(r.int("n")?));
    }
    Ok(counts)
}

/// Recounts an integration's summaries (see the `summary` module).
async fn refresh_summaries(conn: &mut PgConnection, integration_id: IntegrationId) -> Result<()> {
    let op = "refreshing the findings summaries";
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

async fn touch_run(
    conn: &mut PgConnection,
    integration_id: IntegrationId,
    run_id: i64,
) -> Result<DateTime<Utc>> {
    let started_at = check_run(conn, integration_id, run_id).await?;
    heartbeat(conn, run_id).await?;
    Ok(started_at)
}

/// The run's `started_at`, once it is known to be running and to belong to the integration.
async fn check_run(
    conn: &mut PgConnection,
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
    check_run_for_write(run_id, integration_id, row)
}

/// Records that the run's process is alive. Batched writes send it as a statement of its own,
/// before their transaction: inside it, the run row's lock would make batches written at the same
/// time (`concurrent_writes`) wait for each other's commit.
async fn heartbeat<'c>(conn: impl sqlx::PgExecutor<'c>, run_id: i64) -> Result<()> {
    sqlx::query("UPDATE sync_runs SET heartbeat_at = $2 WHERE id = $1")
        .bind(run_id)
        .bind(ts(Utc::now()))
        .execute(conn)
        .await
        .map_err(db("recording the run's heartbeat"))?;
    Ok(())
}

async fn upsert_assets_in(
    conn: &mut PgConnection,
    integration_id: IntegrationId,
    run_id: i64,
    assets: &[Asset],
) -> Result<UpsertCounts> {
    let observed = check_run(conn, integration_id, run_id).await?;
    let rows = dedupe_last(assets, asset_key);
    if rows.is_empty() {
        return Ok(UpsertCounts::default());
    }
    let mut b = CopyBuf::default();
    for (ord, a) in rows.iter().enumerate() {
        b.int(ord as i64);
        b.text(&a.source_id);
        b.text(a.kind.as_str());
        b.opt_text(a.name.as_deref());
        b.opt_text(a.os_platform.as_deref());
        b.opt_text(a.os_version.as_deref());
        b.opt_text(a.health_status.as_deref());
        b.opt_text(a.onboarding_status.as_deref());
        b.opt_text(a.exposure_level.as_deref());
        b.opt_text(a.risk_score.as_deref());
        b.opt_text(a.device_value.as_deref());
        b.text(&json_list(&a.ip_addresses));
        b.text(&json_list(&a.tags));
        b.opt_int(a.rbac_group_id);
        b.opt_text(a.rbac_group_name.as_deref());
        b.opt_text(a.aad_device_id.as_deref());
        b.opt_text(a.azure_resource_id.as_deref());
        b.flag(a.is_duplicate);
        b.opt_text(a.merged_into.as_deref());
        b.opt_ts(a.first_seen.map(ts));
        b.opt_ts(a.last_seen.map(ts));
        b.opt_text(a.external_ip_address.as_deref());
        b.opt_int(a.os_build);
        b.opt_text(a.os_processor.as_deref());
        b.opt_text(a.is_aad_joined.map(|j| if j { "t" } else { "f" }));
        b.end_row();
    }
    stage(
        conn,
        "CREATE TEMP TABLE stage_assets (ord INTEGER NOT NULL, source_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT, \
         os_platform TEXT, os_version TEXT, health_status TEXT, onboarding_status TEXT, exposure_level TEXT, \
         risk_score TEXT, device_value TEXT, ip_addresses TEXT NOT NULL, tags TEXT NOT NULL, rbac_group_id BIGINT, \
         rbac_group_name TEXT, aad_device_id TEXT, azure_resource_id TEXT, is_duplicate BOOLEAN NOT NULL, \
         merged_into TEXT, first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, external_ip_address TEXT, os_build BIGINT, \
         os_processor TEXT, is_aad_joined BOOLEAN) ON COMMIT DROP",
        "COPY stage_assets FROM STDIN",
        b.into_bytes(),
        "staging assets",
    )
    .await?;
    let counts = count_kinds(
        conn,
        concat!(
            "WITH up AS (INSERT INTO assets (",
            asset_insert_columns!(),
            ") SELECT $1, source_id, kind, name, os_platform, os_version, health_status, onboarding_status, \
             exposure_level, risk_score, device_value, ip_addresses, tags, rbac_group_id, rbac_group_name, \
             aad_device_id, azure_resource_id, is_duplicate, merged_into, first_seen, last_seen, external_ip_address, \
             os_build, os_processor, is_aad_joined, $2, $2, $3 FROM stage_assets ORDER BY ord",
            asset_on_conflict!(),
            ") SELECT change_kind, count(*) AS n FROM up GROUP BY change_kind"
        ),
        Some(integration_id),
        Some(observed),
        Some(run_id),
        "upserting assets",
    )
    .await?;
    sqlx::query("DROP TABLE stage_assets")
        .execute(&mut *conn)
        .await
        .map_err(db("dropping the asset staging table"))?;
    Ok(counts)
}

async fn upsert_findings_in(
    conn: &mut PgConnection,
    integration_id: IntegrationId,
    run_id: i64,
    findings: &[Finding],
) -> Result<UpsertCounts> {
    let observed = check_run(conn, integration_id, run_id).await?;
    let rows = dedupe_last(findings, finding_key);
    if rows.is_empty() {
        return Ok(UpsertCounts::default());
    }
    let mut b = CopyBuf::default();
    for (ord, f) in rows.iter().enumerate() {
        let k = &f.key;
        b.int(ord as i64);
        b.text(&k.asset_source_id);
        b.opt_text(f.asset_name.as_deref());
        b.text(&k.software_vendor);
        b.text(&k.software_name);
        b.text(&k.software_version);
        b.text(k.cve_id.as_str());
        b.opt_int(f.severity.map(severity_code));
        b.opt_f64(f.cvss);
        b.opt_text(f.exploitability.as_deref());
        b.opt_text(f.recommended_update.as_deref());
        b.opt_text(f.recommendation_reference.as_deref());
        b.opt_ts(f.first_seen.map(ts));
        b.opt_ts(f.last_seen.map(ts));
        b.opt_text(f.asset_os_platform.as_deref());
        b.opt_text(f.asset_os_version.as_deref());
        b.end_row();
    }
    stage(
        conn,
        "CREATE TEMP TABLE stage_findings (ord INTEGER NOT NULL, asset_source_id TEXT NOT NULL, asset_name TEXT, \
         vendor TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, cve_id TEXT NOT NULL, severity SMALLINT, \
         cvss DOUBLE PRECISION, exploitability TEXT, recommended_update TEXT, recommendation_reference TEXT, \
         first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, asset_os_platform TEXT, asset_os_version TEXT) ON COMMIT DROP",
        "COPY stage_findings FROM STDIN",
        b.into_bytes(),
        "staging findings",
    )
    .await?;

    sqlx::query(
        "INSERT INTO software (vendor, name, version) SELECT DISTINCT vendor, name, version FROM stage_findings \
         ORDER BY vendor, name, version ON CONFLICT (vendor, name, version) DO NOTHING",
    )
    .execute(&mut *conn)
    .await
    .map_err(db("recording software"))?;
    // Assets first reported by a finding (the device list did not return them): created from the
    // batch's first row for them, with its device name and OS, as known from vulnerability data.
    sqlx::query(
        "INSERT INTO assets (integration_id, source_id, kind, name, os_platform, os_version, known_from, status, \
         first_observed, last_observed, seen_run) \
         SELECT DISTINCT ON (asset_source_id) $1, asset_source_id, 'device', asset_name, asset_os_platform, \
         asset_os_version, 'vulnerability_data', 'active', $2, $2, $3 \
         FROM stage_findings ORDER BY asset_source_id, ord \
         ON CONFLICT (integration_id, source_id) DO NOTHING",
    )
    .bind(integration_id)
    .bind(observed)
    .bind(run_id)
    .execute(&mut *conn)
    .await
    .map_err(db("creating assets first reported by findings"))?;
    // A finding is evidence that its asset is there.
    sqlx::query(
        "UPDATE assets SET seen_run = $3, last_observed = $2, status = 'active', missing_since = NULL \
         WHERE integration_id = $1 AND source_id IN (SELECT asset_source_id FROM stage_findings) \
         AND seen_run IS DISTINCT FROM $3",
    )
    .bind(integration_id)
    .bind(observed)
    .bind(run_id)
    .execute(&mut *conn)
    .await
    .map_err(db("marking the findings' assets seen"))?;
    let counts = count_kinds(
        conn,
        concat!(
            // The batch's own assets first (a few dozen index look-ups), not all of the
            // integration's: joined directly, the planner hashed every asset of the
            // integration for every batch (20,000 rows, 10-15 ms per batch at 20,000 devices).
            "WITH batch_assets AS MATERIALIZED (SELECT a.id, a.source_id FROM assets a \
             WHERE a.integration_id = $1 AND a.source_id IN (SELECT asset_source_id FROM stage_findings)), \
             up AS (INSERT INTO findings (",
            finding_insert_columns!(),
            ") SELECT $1, a.id, sw.id, s.cve_id, s.severity, s.cvss, s.exploitability, s.recommended_update, \
             s.recommendation_reference, s.first_seen, s.last_seen, $2, $2, $3 \
             FROM stage_findings s \
             JOIN batch_assets a ON a.source_id = s.asset_source_id \
             JOIN software sw ON sw.vendor = s.vendor AND sw.name = s.name AND sw.version = s.version \
             ORDER BY s.ord",
            finding_on_conflict!(),
            ") SELECT change_kind, count(*) AS n FROM up GROUP BY change_kind"
        ),
        Some(integration_id),
        Some(observed),
        Some(run_id),
        "upserting findings",
    )
    .await?;
    sqlx::query("DROP TABLE stage_findings")
        .execute(&mut *conn)
        .await
        .map_err(db("dropping the finding staging table"))?;
    Ok(counts)
}

async fn run_by_id(conn: &mut PgConnection, run_id: i64) -> Result<SyncRun> {
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
    mut q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.as_str()),
            Arg::Time(v) => q.bind(truncate_micros(*v)),
        };
    }
    q
}

#[async_trait]
impl Store for PgStore {
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
        Backend::Postgres
    }

    async fn schema_state(&self) -> Result<crate::ops::SchemaState> {
        let rows = sqlx::query("SELECT version, success FROM _sqlx_migrations")
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the applied migrations"))?;
        let rows: Vec<(i64, bool)> = rows
            .iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<bool, _>(1)))
            .collect();
        Ok(crate::ops::schema_state(&MIGRATOR, &rows))
    }

    async fn close(&self) {
        self.pool.close().await;
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
        .fetch_one(&self.pool)
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
        .fetch_optional(&self.pool)
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
        .fetch_optional(&self.pool)
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
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing integrations"))?;
        rows.iter().map(decode_integration).collect()
    }

    async fn update_integration(
        &self,
        id: IntegrationId,
        u: &IntegrationUpdate,
    ) -> Result<Integration> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
        let row = sqlx::query(concat!(
            "SELECT ",
            integration_columns!(),
            " FROM integrations WHERE id = $1 FOR UPDATE"
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
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
                .fetch_optional(&self.pool)
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
                .bind(clean(key))
                .fetch_optional(&self.pool)
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
        .execute(&self.pool)
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
        let now = ts(now);
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
        let exists = sqlx::query("SELECT 1 FROM integrations WHERE id = $1")
            .bind(integration_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("starting a sync run"))?;
        if exists.is_none() {
            return Err(integration_not_found(integration_id));
        }
        let running = sqlx::query(
            "SELECT id, started_at, heartbeat_at, owner FROM sync_runs WHERE integration_id = $1 AND status = 'running' FOR UPDATE",
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
            .bind(now)
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
        .bind(now)
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
        .execute(&self.pool)
        .await
        .map_err(db("recording the run's heartbeat"))?;
        if done.rows_affected() == 0 {
            let mut conn = self
                .pool
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
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
        Ok(run)
    }

    async fn get_run(&self, run_id: i64) -> Result<SyncRun> {
        let mut conn = self
            .pool
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
        .fetch_all(&self.pool)
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
        .fetch_optional(&self.pool)
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
        heartbeat(&self.pool, run_id).await?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
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
        // The assets (and software) of a first load were written moments ago: autovacuum has not
        // analysed them yet, and with statistics that still count them as none the planner
        // chose to hash all of the integration's assets for every batch of findings.
        sqlx::query("ANALYZE assets, software")
            .execute(&mut *tx)
            .await
            .map_err(db("refreshing the planner's statistics"))?;
        tx.commit()
            .await
            .map_err(db("deferring the by-CVE index"))?;
        Ok(true)
    }

    async fn end_bulk_findings(&self) -> Result<()> {
        sqlx::query(CREATE_FINDINGS_BY_CVE)
            .execute(&self.pool)
            .await
            .map_err(db("rebuilding the by-CVE index"))?;
        Ok(())
    }

    async fn upsert_findings(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        findings: &[Finding],
    ) -> Result<UpsertCounts> {
        // Batches of a run are written on two connections at once (`concurrent_writes`). Should
        // two of them lock the same rows in opposite orders, PostgreSQL ends one with a deadlock
        // error and rolls it back; the upsert is idempotent, so that one simply runs again.
        heartbeat(&self.pool, run_id).await?;
        let mut attempt = 1;
        loop {
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(db("starting a transaction"))?;
            let written = match upsert_findings_in(&mut tx, integration_id, run_id, findings).await
            {
                Ok(counts) => tx
                    .commit()
                    .await
                    .map(|()| counts)
                    .map_err(db("committing findings")),
                Err(e) => Err(e),
            };
            match written {
                Err(e) if attempt < 3 && is_lock_conflict(&e) => {
                    tracing::debug!(message = "Batch met a concurrent one; writing it again.", error = %e);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn apply_finding_changes(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        changes: &[FindingChange],
    ) -> Result<DeltaCounts> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
        let started_at = touch_run(&mut tx, integration_id, run_id).await?;
        let mut counts = DeltaCounts::default();
        for step in delta_steps(changes) {
            match step {
                DeltaStep::Upsert(batch) => {
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
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
        let mut tx = self.pool.begin().await.map_err(db("starting a read"))?;
        // One snapshot for the page and the rows it refers to.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db("starting a read"))?;
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
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db("listing findings"))?,
            )?),
        };
        let untouched = match changes_precheck(filter) {
            None => false,
            Some(check) => !bind_args(sqlx::query(AssertSqlSafe(check.text.as_str())), &check.args)
                .fetch_one(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(db("starting a read"))?;
        // One snapshot for the page and the rows it refers to.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db("starting a read"))?;
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
        for r in sqlx::query("SELECT id, source_id, name FROM assets WHERE id = ANY($1)")
            .bind(&asset_ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("listing findings"))?
        {
            refs.add_asset(&r)?;
        }
        for r in sqlx::query("SELECT id, vendor, name, version FROM software WHERE id = ANY($1)")
            .bind(&software_ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("listing findings"))?
        {
            refs.add_software(&r)?;
        }
        for r in sqlx::query(
            "SELECT cve_id, severity, cvss, epss, public_exploit, exploit_verified, exploit_in_kit, published_on \
             FROM vulnerabilities WHERE cve_id = ANY($1)",
        )
        .bind(&cve_ids)
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
            .fetch_all(&self.pool)
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
                "SELECT status, count(*) AS n FROM assets WHERE integration_id = $1 GROUP BY status",
                "SELECT status, severity, count(*) AS n FROM findings WHERE integration_id = $1 GROUP BY status, severity",
            ),
            None => (
                "SELECT status, count(*) AS n FROM assets GROUP BY status",
                "SELECT status, severity, count(*) AS n FROM findings GROUP BY status, severity",
            ),
        };
        // One connection for every query: see `cloud::cloud_counts`.
        let mut tx = self.read_snapshot().await?;
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
            .fetch_all(&self.pool)
            .await
            .map_err(db("ranking recommended updates"))?;
        rows.iter().map(decode_top_fix).collect()
    }

    async fn riskiest_assets(&self, limit: u32) -> Result<Vec<RiskyAsset>> {
        let rows = sqlx::query(RISKIEST_ASSETS_SQL)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
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
        let mut tx = self.read_snapshot().await?;
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
        let mut tx = self.read_snapshot().await?;
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
        // Two processes may both see no active job and insert: the unique index refuses the
        // second, which then finds the first one's job on its second attempt.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .enqueue_job_once(integration_id, kind, run_at, now)
                .await
            {
                Err(StoreError::Conflict(_)) if attempt < 3 => continue,
                other => return other,
            }
        }
    }

    async fn claim_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        only: Option<IntegrationId>,
    ) -> Result<Option<Job>> {
        // SKIP LOCKED: a job another worker is claiming right now is passed over, not waited for.
        let stale = now - chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        sqlx::query(AssertSqlSafe(claim_job_sql(" FOR UPDATE SKIP LOCKED")))
            .bind(clean(worker))
            .bind(ts(now))
            .bind(ts(stale))
            .bind(only)
            .fetch_optional(&self.pool)
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
            .execute(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(db(op))?;
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
            .fetch_all(&self.pool)
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
        .fetch_one(&self.pool)
        .await
        .map_err(db("recording an audit entry"))
    }

    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, details FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
        .fetch_one(&self.pool)
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
        .fetch_optional(&self.pool)
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
        .fetch_optional(&self.pool)
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
        .fetch_all(&self.pool)
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
        .fetch_optional(&self.pool)
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
        // Lock every admin row first: two removals of two admins at once then run one after the
        // other, and the second sees that only one admin is left.
        let mut tx = self.pool.begin().await.map_err(db("removing an account"))?;
        sqlx::query("SELECT id FROM users WHERE role = 'admin' FOR UPDATE")
            .fetch_all(&mut *tx)
            .await
            .map_err(db("removing an account"))?;
        let done = sqlx::query(concat!(
            "DELETE FROM users WHERE id = $1 AND ",
            not_last_admin!()
        ))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db("removing an account"))?;
        tx.commit().await.map_err(db("removing an account"))?;
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
            .execute(&self.pool)
            .await
            .map_err(db("issuing a setup token"))?;
        sqlx::query("INSERT INTO setup_tokens (token_hash, expires_at) VALUES ($1, $2)")
            .bind(token_hash)
            .bind(ts(expires_at))
            .execute(&self.pool)
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
                .execute(&self.pool)
                .await
                .map_err(db("using a setup token"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // Setup is done: the tokens other starts printed are worthless too.
        sqlx::query("DELETE FROM setup_tokens")
            .execute(&self.pool)
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
        .execute(&self.pool)
        .await
        .map_err(db("saving a session"))?;
        Ok(())
    }

    async fn load_session(&self, id: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT data FROM sessions WHERE id = $1 AND expires_at > $2")
            .bind(id)
            .bind(ts(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(db("loading a session"))
    }

    async fn delete_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("deleting a session"))?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(ts(now))
            .execute(&self.pool)
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
        .fetch_one(&self.pool)
        .await
        .map_err(db("creating an API token"))?;
        decode_api_token(&row)
    }

    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query(
            "SELECT id, name, scope, created_by, created_at FROM api_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading an API token"))?;
        row.as_ref().map(decode_api_token).transpose()
    }

    async fn list_api_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(
            "SELECT id, name, scope, created_by, created_at FROM api_tokens ORDER BY id DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing API tokens"))?;
        rows.iter().map(decode_api_token).collect()
    }

    async fn delete_api_token(&self, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
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

impl PgStore {
    /// A read-only transaction on one snapshot, for a page and the rows it refers to.
    async fn read_snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await.map_err(db("starting a read"))?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db("starting a read"))?;
        Ok(tx)
    }

    async fn enqueue_job_once(
        &self,
        integration_id: IntegrationId,
        kind: JobKind,
        run_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Enqueued> {
        let op = "queueing a sync job";
        let mut tx = self.pool.begin().await.map_err(db(op))?;
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
                        } else if is_unique_violation(&e) {
                            StoreError::Conflict(
                                "another process queued a job at the same moment".into(),
                            )
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_separators_and_backslashes() {
        let mut b = CopyBuf::default();
        b.text("a\tb\nc\rd\\e");
        b.null();
        b.opt_f64(Some(7.5));
        b.opt_f64(Some(f64::NAN));
        b.flag(true);
        b.end_row();
        assert_eq!(
            String::from_utf8(b.into_bytes()).unwrap(),
            "a\\tb\\nc\\rd\\\\e\t\\N\t7.5\t\\N\tt\n"
        );
    }

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert!(!redact("postgres://u:se cret@h/db").contains("secret"));
    }
}
