//! PostgreSQL's bulk writes: each batch is streamed with `COPY … FROM STDIN` (text format) into a
//! temporary staging table, then merged with one `INSERT … SELECT … ON CONFLICT … DO UPDATE …
//! RETURNING` whose `change_kind` results are counted by the server. Asset and software ids are
//! resolved by joins in that statement. During a full read, the batch's ids are resolved first
//! and its rows compared with the stored findings' content hashes in the client, so that only
//! the rows that changed are staged (`split_unchanged`).

use rampart_model::RunId;
use std::io::Write as _;

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnection, PgPool};

use rampart_model::{Asset, Finding, IntegrationId, Vulnerability};

use crate::cloud_sql::{
    RecommendationRow, recommendation_insert_columns, recommendation_on_conflict,
};
use crate::common::*;
use crate::db::{On, Row, db};
use crate::error::{Result, StoreError};
use crate::first_load_tally::Written;
use crate::priority::{InsertAssessor, StoredAssessment};
use crate::sql_store::{check_run, count_changed_findings, heartbeat};
use crate::types::UpsertCounts;

fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
    truncate_micros(t)
}

fn begin_error(e: sqlx::Error) -> StoreError {
    StoreError::db("starting a transaction")(e)
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

/// About what a finding's row takes in a COPY batch, rounded up: ~300 bytes in a first load's
/// binary format (21 fields: 84 bytes of lengths, ~215 of values with the emulator's texts), of
/// the same order in the staged text format.
pub(crate) const FINDING_COPY_BYTES: usize = 320;

impl CopyBuf {
    /// A batch with room for `bytes` (an estimate of its size): filled without being copied into
    /// ever larger buffers as it grows.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            in_row: false,
        }
    }

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

/// The values of a finding's row, in either of `COPY`'s formats: the columns a finding's content
/// and assessment fill are listed once, here, for both.
pub(crate) trait CopyRow {
    fn opt_text(&mut self, s: Option<&str>);
    fn opt_int8(&mut self, v: Option<i64>);
    fn opt_int2(&mut self, v: Option<i64>);
    fn opt_float8(&mut self, v: Option<f64>);
    fn opt_timestamp(&mut self, t: Option<DateTime<Utc>>);

    /// A finding's content columns, from `severity` to `last_seen` (`finding_insert_columns!`).
    fn finding_content(&mut self, f: &Finding) {
        self.opt_int2(f.severity.map(severity_code));
        self.opt_float8(f.cvss);
        self.opt_text(f.exploitability.as_deref());
        self.opt_text(f.recommended_update.as_deref());
        self.opt_text(f.recommendation_reference.as_deref());
        self.opt_timestamp(f.first_seen);
        self.opt_timestamp(f.last_seen);
    }

    /// A new row's assessment columns (`finding_assessment_columns!`), assessed at `observed`.
    fn assessment(&mut self, assessed: Option<StoredAssessment>, observed: DateTime<Utc>) {
        self.opt_text(assessed.map(|a| a.decision.as_str()));
        self.opt_float8(assessed.map(|a| f64::from(a.priority)));
        self.opt_timestamp(assessed.map(|a| a.due_at));
        self.opt_timestamp(assessed.map(|a| a.clock_start));
        self.opt_int8(assessed.map(|a| a.explanation_id));
        self.opt_timestamp(assessed.map(|_| observed));
    }
}

impl CopyRow for CopyBuf {
    fn opt_text(&mut self, s: Option<&str>) {
        CopyBuf::opt_text(self, s);
    }
    fn opt_int8(&mut self, v: Option<i64>) {
        self.opt_int(v);
    }
    fn opt_int2(&mut self, v: Option<i64>) {
        self.opt_int(v);
    }
    fn opt_float8(&mut self, v: Option<f64>) {
        self.opt_f64(v);
    }
    fn opt_timestamp(&mut self, t: Option<DateTime<Utc>>) {
        self.opt_ts(t.map(ts));
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
    send_copy(conn, copy, data, op).await
}

/// Runs `copy` (a `COPY … FROM STDIN`) with `data` in its text format.
pub(crate) async fn send_copy(
    conn: &mut PgConnection,
    copy: &'static str,
    data: Vec<u8>,
    op: &'static str,
) -> Result<()> {
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

/// Merges a staged batch with `sql` (an upsert counting its `change_kind`s, `$1` integration,
/// `$2` the run's start, `$3` the run), then drops the staging table `table`.
async fn merge_staged(
    conn: &mut PgConnection,
    sql: &'static str,
    (integration_id, observed, run_id): (IntegrationId, DateTime<Utc>, RunId),
    op: &'static str,
    table: &'static str,
) -> Result<UpsertCounts> {
    let counts = count_kinds(
        conn,
        sql,
        Some(integration_id),
        Some(observed),
        Some(run_id.get()),
        op,
    )
    .await?;
    sqlx::query(AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&mut *conn)
        .await
        .map_err(db("dropping a staging table"))?;
    Ok(counts)
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
        q = q.bind(i.get());
    }
    if let Some(t) = observed {
        q = q.bind(t);
    }
    if let Some(r) = run_id {
        q = q.bind(r);
    }
    let rows = q.fetch_all(&mut *conn).await.map_err(db(op))?;
    let mut counts = UpsertCounts::default();
    for r in rows.into_iter().map(Row::Postgres) {
        counts.add_kind(r.int("change_kind")?, as_u64(r.int("n")?));
    }
    Ok(counts)
}

async fn upsert_assets_in(
    conn: &mut PgConnection,
    integration_id: IntegrationId,
    run_id: RunId,
    assets: &[Asset],
) -> Result<UpsertCounts> {
    let observed = check_run(On::Postgres(&mut *conn), integration_id, run_id).await?;
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
    merge_staged(
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
        (integration_id, observed, run_id),
        "upserting assets",
        "stage_assets",
    )
    .await
}

/// The batch's own assets first (a few dozen index look-ups), not all of the integration's:
/// joined directly, the planner hashed every asset of the integration for every batch (20,000
/// rows, 10-15 ms per batch at 20,000 devices). $1: the integration.
macro_rules! batch_assets {
    () => {
        "batch_assets AS MATERIALIZED (SELECT a.id, a.source_id FROM assets a \
         WHERE a.integration_id = $1 AND a.source_id IN (SELECT asset_source_id FROM stage_findings))"
    };
}

/// Upserts a batch inside the caller's transaction; returns what it did. `first_load`: the
/// integration's first load is running, so the rows are most likely new
/// ([`super::first_load`]). `leave_unchanged`: a full read is running; the stored open findings
/// the batch repeats unchanged (same `content_hash`) are not written, and their ids are returned
/// for the reconciliation (`SqlStore`'s sightings).
pub(crate) async fn upsert_findings_in<'a>(
    conn: &mut PgConnection,
    integration_id: IntegrationId,
    run_id: RunId,
    findings: &'a [Finding],
    assessor: Option<&dyn InsertAssessor>,
    (first_load, leave_unchanged): (bool, bool),
) -> Result<Written<'a>> {
    let observed = check_run(On::Postgres(&mut *conn), integration_id, run_id).await?;
    let rows = dedupe_last(findings, finding_key);
    if rows.is_empty() {
        return Ok(Written::merged(
            observed,
            UpsertCounts::default(),
            Vec::new(),
        ));
    }
    if first_load {
        let inserted = super::first_load::insert_new_findings_in(
            conn,
            integration_id,
            run_id,
            observed,
            &rows,
            assessor,
        )
        .await?;
        if let Some((counts, resolved)) = inserted {
            return Ok(Written {
                counts,
                unchanged: Vec::new(),
                started_at: observed,
                inserted: resolved,
            });
        }
    }
    // A full read compares each row's hash with its stored finding here, as SQLite's writer
    // does: a batch that changes nothing is neither staged nor merged.
    let mut unchanged = Vec::new();
    let rows = if leave_unchanged {
        let (changed, same) = split_unchanged(conn, integration_id, run_id, observed, rows).await?;
        unchanged = same;
        if changed.is_empty() {
            let counts = UpsertCounts {
                unchanged: unchanged.len() as u64,
                ..UpsertCounts::default()
            };
            return Ok(Written::merged(observed, counts, unchanged));
        }
        changed
    } else {
        rows
    };
    let mut b = CopyBuf::with_capacity(rows.len() * FINDING_COPY_BYTES);
    for (ord, f) in rows.iter().enumerate() {
        let k = &f.key;
        b.int(ord as i64);
        b.text(&k.asset_source_id);
        b.opt_text(f.asset_name.as_deref());
        b.text(&k.software_vendor);
        b.text(&k.software_name);
        b.text(&k.software_version);
        b.text(k.cve_id.as_str());
        b.finding_content(f);
        b.opt_text(f.asset_os_platform.as_deref());
        b.opt_text(f.asset_os_version.as_deref());
        b.int(finding_content_hash(f));
        b.assessment(assessor.and_then(|a| a.assess(f)), observed);
        b.end_row();
    }
    stage(
        conn,
        "CREATE TEMP TABLE stage_findings (ord INTEGER NOT NULL, asset_source_id TEXT NOT NULL, asset_name TEXT, \
         vendor TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, cve_id TEXT NOT NULL, severity SMALLINT, \
         cvss DOUBLE PRECISION, exploitability TEXT, recommended_update TEXT, recommendation_reference TEXT, \
         first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, asset_os_platform TEXT, asset_os_version TEXT, \
         content_hash BIGINT, decision TEXT, priority DOUBLE PRECISION, due_at TIMESTAMPTZ, clock_start TIMESTAMPTZ, \
         explanation_id BIGINT, assessed_at TIMESTAMPTZ) ON COMMIT DROP",
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
    // Only the rows of unknown assets are sorted (almost always none): sorting the whole batch
    // to pick each asset's first row took 9.5 ms of a re-read's batch of 5,000. The known ones
    // are the batch's own, looked up by key (`batch_assets`): an anti-join with `assets` hashed
    // all of the integration's (26 ms).
    sqlx::query(concat!(
        "WITH ",
        batch_assets!(),
        " INSERT INTO assets (integration_id, source_id, kind, name, os_platform, os_version, known_from, status, \
         first_observed, last_observed, seen_run) \
         SELECT DISTINCT ON (asset_source_id) $1, asset_source_id, 'device', asset_name, asset_os_platform, \
         asset_os_version, 'vulnerability_data', 'active', $2, $2, $3 \
         FROM stage_findings s WHERE s.asset_source_id NOT IN (SELECT source_id FROM batch_assets) \
         ORDER BY asset_source_id, ord \
         ON CONFLICT (integration_id, source_id) DO NOTHING"
    ))
    .bind(integration_id.get())
    .bind(observed)
    .bind(run_id.get())
    .execute(&mut *conn)
    .await
    .map_err(db("creating assets first reported by findings"))?;
    // A finding is evidence that its asset is there.
    sqlx::query(
        "UPDATE assets SET seen_run = $3, last_observed = $2, status = 'active', missing_since = NULL \
         WHERE integration_id = $1 AND source_id IN (SELECT asset_source_id FROM stage_findings) \
         AND seen_run IS DISTINCT FROM $3",
    )
    .bind(integration_id.get())
    .bind(observed)
    .bind(run_id.get())
    .execute(&mut *conn)
    .await
    .map_err(db("marking the findings' assets seen"))?;
    let mut counts = merge_staged(
        conn,
        concat!(
            "WITH ",
            batch_assets!(),
            ", up AS (INSERT INTO findings (",
            finding_insert_columns!(),
            ", ",
            finding_assessment_columns!(),
            ") SELECT $1, a.id, sw.id, s.cve_id, s.severity, s.cvss, s.exploitability, s.recommended_update, \
             s.recommendation_reference, s.first_seen, s.last_seen, $2, $2, $3, s.content_hash, \
             s.decision, s.priority, s.due_at, s.clock_start, s.explanation_id, s.assessed_at \
             FROM stage_findings s \
             JOIN batch_assets a ON a.source_id = s.asset_source_id \
             JOIN software sw ON sw.vendor = s.vendor AND sw.name = s.name AND sw.version = s.version \
             ORDER BY s.ord",
            finding_on_conflict!(),
            ") SELECT change_kind, count(*) AS n FROM up GROUP BY change_kind"
        ),
        (integration_id, observed, run_id),
        "upserting findings",
        "stage_findings",
    )
    .await?;
    count_changed_findings(On::Postgres(&mut *conn), run_id, counts.updated).await?;
    counts.unchanged += unchanged.len() as u64;
    Ok(Written::merged(observed, counts, unchanged))
}

/// Splits a full read's batch into the rows to write and the ids of the stored open findings
/// it repeats unchanged (same `content_hash`), which are left alone. The batch's ids are resolved
/// as a first load's are, which also records its software and assets and marks the assets seen
/// (a finding left alone is still evidence of its asset); the stored findings of its assets are
/// read in one row of arrays, and compared here.
///
/// Before, the comparison ran on the server after the batch was staged: a batch that changed
/// nothing was still copied, joined and deleted again (22 ms of a 5,000-row batch's 89 ms).
async fn split_unchanged<'a>(
    conn: &mut PgConnection,
    integration_id: IntegrationId,
    run_id: RunId,
    observed: DateTime<Utc>,
    rows: Vec<&'a Finding>,
) -> Result<(Vec<&'a Finding>, Vec<i64>)> {
    use sqlx::Row as _;
    let op = "looking up stored findings";
    let keys = BatchKeys::of(&rows);
    let software = super::first_load::software_ids(conn, &keys).await?;
    let assets =
        super::first_load::asset_ids(conn, integration_id, run_id, observed, &keys).await?;
    let stored = sqlx::query(
        "SELECT COALESCE(array_agg(asset_id), '{}') AS assets, COALESCE(array_agg(software_id), '{}') AS software, \
         COALESCE(array_agg(cve_id), '{}') AS cves, COALESCE(array_agg(content_hash), '{}') AS hashes, \
         COALESCE(array_agg(id), '{}') AS ids \
         FROM findings WHERE asset_id = ANY($1) AND status = 'open' AND content_hash IS NOT NULL",
    )
    .bind(&assets)
    .fetch_one(&mut *conn)
    .await
    .map_err(db(op))?;
    let column = |name: &str| stored.try_get::<Vec<i64>, _>(name).map_err(db(op));
    let (stored_assets, stored_software, hashes, ids) = (
        column("assets")?,
        column("software")?,
        column("hashes")?,
        column("ids")?,
    );
    let cves: Vec<String> = stored.try_get("cves").map_err(db(op))?;
    // (asset, software, CVE) → (content hash, finding id).
    let known: FastMap<(i64, i64, &str), (i64, i64)> = stored_assets
        .into_iter()
        .zip(stored_software)
        .zip(&cves)
        .zip(hashes.into_iter().zip(ids))
        .map(|((key, cve), found)| ((key.0, key.1, cve.as_str()), found))
        .collect();
    let mut changed = Vec::with_capacity(rows.len());
    let mut unchanged = Vec::with_capacity(known.len());
    for (f, &(a, s)) in rows.iter().zip(&keys.places) {
        let (Some(&asset), Some(&software)) = (assets.get(a), software.get(s)) else {
            return Err(StoreError::Corrupt(
                "a finding's asset or software has no id in its batch".to_owned(),
            ));
        };
        match known.get(&(asset, software, f.key.cve_id.as_str())) {
            Some(&(hash, id)) if hash == finding_content_hash(f) => unchanged.push(id),
            _ => changed.push(*f),
        }
    }
    Ok((changed, unchanged))
}

/// Lists, for a reconciliation after a full read that left unchanged rows alone, the
/// integration's open findings it did not find unchanged, in the connection's temporary table
/// `unsighted` (see `sqlite::bulk::list_unsighted`).
pub(crate) async fn list_unsighted(
    conn: &mut PgConnection,
    integration_id: IntegrationId,
    sighted: &Sighted,
) -> Result<()> {
    use sqlx::Row as _;
    let op = "listing the findings a run did not find unchanged";
    for sql in [
        "CREATE TEMP TABLE IF NOT EXISTS unsighted (id BIGINT PRIMARY KEY)",
        "TRUNCATE unsighted",
    ] {
        sqlx::query(sql).execute(&mut *conn).await.map_err(db(op))?;
    }
    let open: Vec<i64> = sqlx::query(
        "SELECT COALESCE(array_agg(id), '{}') AS ids FROM findings WHERE integration_id = $1 AND status = 'open'",
    )
    .bind(integration_id.get())
    .fetch_one(&mut *conn)
    .await
    .map_err(db(op))?
    .try_get("ids")
    .map_err(db(op))?;
    let candidates: Vec<i64> = open
        .into_iter()
        .filter(|&id| !sighted.contains(id))
        .collect();
    sqlx::query("INSERT INTO unsighted (id) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING")
        .bind(candidates)
        .execute(&mut *conn)
        .await
        .map_err(db(op))?;
    sqlx::query("ANALYZE unsighted")
        .execute(&mut *conn)
        .await
        .map_err(db(op))?;
    Ok(())
}

/// Empties `unsighted` once its reconciliation has used it.
pub(crate) async fn forget_unsighted(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("TRUNCATE unsighted")
        .execute(&mut *conn)
        .await
        .map_err(db("clearing the findings a run did not find unchanged"))?;
    Ok(())
}

/// Catalogue rows through a staging table and one upsert; `on_conflict` decides what a known
/// CVE keeps (see `upsert_vulnerabilities` and `fill_vulnerabilities`).
pub(crate) async fn write_vulnerabilities(
    pool: &PgPool,
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
    let data = b.into_bytes();
    // The catalogue is shared: syncs of several integrations upsert overlapping CVEs at the same
    // time. Rows are merged in CVE order, so two such transactions lock them in the same order
    // and one waits for the other instead of deadlocking (seen in the scale-out test: a worker
    // running four syncs failed one with "deadlock detected"). Should PostgreSQL still end one
    // for a lock conflict, the upsert is idempotent and runs again.
    let mut attempt = 1;
    loop {
        match write_vulnerabilities_once(pool, data.clone(), on_conflict).await {
            Err(e) if attempt < 3 && e.is_lock_conflict() => {
                tracing::debug!(message = "Catalogue batch met a concurrent one; writing it again.", error = %e);
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn write_vulnerabilities_once(
    pool: &PgPool,
    data: Vec<u8>,
    on_conflict: &str,
) -> Result<UpsertCounts> {
    let mut tx = pool.begin().await.map_err(begin_error)?;
    stage(
        &mut tx,
        "CREATE TEMP TABLE stage_vulnerabilities (cve_id TEXT NOT NULL, severity SMALLINT, cvss DOUBLE PRECISION, \
         cvss_vector TEXT, epss DOUBLE PRECISION, public_exploit BOOLEAN NOT NULL, exploit_verified BOOLEAN NOT NULL, \
         exploit_in_kit BOOLEAN NOT NULL, exploit_types TEXT NOT NULL, published_on TIMESTAMPTZ, \
         updated_on TIMESTAMPTZ, description TEXT, source_exposed_machines BIGINT) ON COMMIT DROP",
        "COPY stage_vulnerabilities FROM STDIN",
        data,
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
                 FROM stage_vulnerabilities ORDER BY cve_id"
            ),
            ") SELECT change_kind, count(*) AS n FROM up GROUP BY change_kind"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(ts(Utc::now()))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("upserting vulnerabilities"))?;
        let mut counts = UpsertCounts::default();
        for r in rows.into_iter().map(Row::Postgres) {
            counts.add_kind(r.int("change_kind")?, as_u64(r.int("n")?));
        }
        counts
    };
    tx.commit()
        .await
        .map_err(db("committing vulnerabilities"))?;
    Ok(counts)
}

pub(crate) async fn upsert_assets(
    pool: &PgPool,
    integration_id: IntegrationId,
    run_id: RunId,
    assets: &[Asset],
) -> Result<UpsertCounts> {
    heartbeat(On::PgPool(pool), run_id).await?;
    let mut tx = pool.begin().await.map_err(begin_error)?;
    let counts = upsert_assets_in(&mut tx, integration_id, run_id, assets).await?;
    tx.commit().await.map_err(db("committing assets"))?;
    Ok(counts)
}

pub(crate) async fn upsert_findings<'a>(
    pool: &PgPool,
    integration_id: IntegrationId,
    run_id: RunId,
    findings: &'a [Finding],
    assessor: Option<&dyn InsertAssessor>,
    modes: (bool, bool),
) -> Result<Written<'a>> {
    // Batches of a run are written on two connections at once (`concurrent_writes`). Should
    // two of them lock the same rows in opposite orders, PostgreSQL ends one with a deadlock
    // error and rolls it back; the upsert is idempotent, so that one simply runs again.
    // The heartbeat is a statement of its own, before the transaction: inside it, the run row's
    // lock would make batches written at the same time wait for each other's commit.
    heartbeat(On::PgPool(pool), run_id).await?;
    let mut attempt = 1;
    loop {
        let mut tx = pool.begin().await.map_err(begin_error)?;
        let written =
            match upsert_findings_in(&mut tx, integration_id, run_id, findings, assessor, modes)
                .await
            {
                Ok(done) => tx
                    .commit()
                    .await
                    .map(|()| done)
                    .map_err(db("committing findings")),
                Err(e) => Err(e),
            };
        match written {
            Err(e) if attempt < 3 && e.is_lock_conflict() => {
                tracing::debug!(message = "Batch met a concurrent one; writing it again.", error = %e);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Recommendations staged with COPY and merged by one statement, inside the caller's
/// transaction. `observed` is the run's start.
pub(crate) async fn upsert_recommendations_in(
    conn: &mut PgConnection,
    integration_id: IntegrationId,
    run_id: RunId,
    observed: DateTime<Utc>,
    rows: &[RecommendationRow],
) -> Result<UpsertCounts> {
    if rows.is_empty() {
        return Ok(UpsertCounts::default());
    }
    let mut b = CopyBuf::default();
    for (ord, r) in rows.iter().enumerate() {
        b.int(ord as i64);
        b.text(&r.assessment_id);
        b.text(&r.subscription_id);
        b.text(&r.key);
        b.text(&r.resource_id);
        b.opt_text(r.display_name.as_deref());
        b.text(&r.status);
        b.opt_text(r.cause.as_deref());
        b.opt_text(r.severity.as_deref());
        b.opt_text(r.category.as_deref());
        b.opt_ts(r.status_changed);
        b.opt_text(r.risk_level.as_deref());
        b.opt_text(r.risk.as_deref());
        b.end_row();
    }
    stage(
        conn,
        "CREATE TEMP TABLE stage_recommendations (ord INTEGER NOT NULL, assessment_id TEXT NOT NULL, \
         subscription_id TEXT NOT NULL, assessment_key TEXT NOT NULL, resource_id TEXT NOT NULL, display_name TEXT, \
         status TEXT NOT NULL, cause TEXT, severity TEXT, category TEXT, status_changed TIMESTAMPTZ, \
         risk_level TEXT, risk TEXT) ON COMMIT DROP",
        "COPY stage_recommendations FROM STDIN",
        b.into_bytes(),
        "staging recommendations",
    )
    .await?;
    merge_staged(
        conn,
        concat!(
            "WITH up AS (INSERT INTO recommendations (",
            recommendation_insert_columns!(),
            ") SELECT $1, s.assessment_id, s.subscription_id, s.assessment_key, s.resource_id, \
             (SELECT a.id FROM assets a WHERE a.integration_id = $1 AND a.source_id = s.resource_id), \
             s.display_name, s.status, s.cause, s.severity, s.category, s.status_changed, $2, $2, $3, \
             s.risk_level, s.risk FROM stage_recommendations s ORDER BY s.ord",
            recommendation_on_conflict!(),
            ") SELECT change_kind, count(*) AS n FROM up GROUP BY change_kind"
        ),
        (integration_id, observed, run_id),
        "upserting recommendations",
        "stage_recommendations",
    )
    .await
}
