//! [`Store`] written once for both engines, over the database layer of `crate::db`. Only the bulk
//! writes go to native code (`sqlite::bulk`, `postgres::bulk`); every other method is one SQL
//! text, with the few differences the [`Dialect`] spells.

use rampart_model::RunId;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use rampart_model::priority::{CriticalityRule, KevEntry, SlaDays};
use rampart_model::{
    Asset, ControlScore, CveId, Finding, Integration, IntegrationId, IntegrationName, PostureScore,
    Recommendation, Subscription, SyncRun, Vulnerability, WorkspaceId,
};

use crate::cloud_sql::*;
use crate::common::*;
use crate::db::{Dialect, On, Pool, Row, Sql, Tx, q};
use crate::error::{Result, StoreError};
use crate::exceptions::*;
use crate::first_load_tally::{self, FirstLoadTally, Tallies, lock};
use crate::fix_plan;
use crate::intel::*;
use crate::jobs::*;
use crate::priority::*;
use crate::remediation::*;
use crate::run_owner::RunOwner;
use crate::sla::{FixedGroup, IntegrationSla, SlaSettings, SlaSnapshot, StoredRule};
use crate::sort::*;
use crate::sqlite::SqliteFile;
use crate::store::{STALE_RUN_AFTER, Store};
use crate::summary::*;
use crate::types::*;
use crate::types_cloud::*;
use crate::webhooks::{
    self, AttemptOutcome, ClaimedDelivery, NewWebhook, NewWebhookEvent, Recipients, StoredDelivery,
    StoredWebhook, WebhookSecrets,
};
use crate::worker_slot::WorkerSlot;
use crate::workspace::{self, Membership, Visibility, Workspace};
use crate::{postgres, sqlite};
use std::sync::atomic::Ordering;

/// The by-CVE index of migration 0001 on SQLite, word for word (`IF NOT EXISTS` added): dropped
/// for the first load of an integration and rebuilt after it (see
/// [`Store::begin_bulk_findings`]), and recreated when the store opens (a bulk load that died
/// before rebuilding it left it missing).
const CREATE_FINDINGS_BY_CVE_SQLITE: &str = "CREATE INDEX IF NOT EXISTS findings_open_by_cve ON findings (cve_id, integration_id, asset_id) WHERE status = 'open'";
/// The by-CVE index on PostgreSQL, as migration 0024 defines it: the CVE is its only key and the
/// integration and asset ride along (`INCLUDE`), so it still answers "assets exposed to this
/// CVE" from the index alone. Sorting 1.8 M entries by one column instead of three is the
/// cheaper build: 2.6-2.8 → 1.9-2.2 CPU-s at 20,000 devices (BENCHMARKS.md, "2026-12-08
/// (tenth)"). SQLite has no `INCLUDE`.
const CREATE_FINDINGS_BY_CVE_POSTGRES: &str = "CREATE INDEX IF NOT EXISTS findings_open_by_cve ON findings (cve_id) INCLUDE (integration_id, asset_id) WHERE status = 'open'";

/// The prioritisation's indexes (migration 0012), put off by a first load when no other
/// integration holds findings (see [`Store::begin_bulk_findings`]).
const CREATE_FINDINGS_BY_PRIORITY: &str =
    "CREATE INDEX IF NOT EXISTS findings_by_priority ON findings ((COALESCE(priority, -1)), id)";
const CREATE_FINDINGS_OPEN_BY_DUE: &str =
    "CREATE INDEX IF NOT EXISTS findings_open_by_due ON findings (due_at) WHERE status = 'open'";
/// The exceptions' index (migration 0014), put off on the same terms.
const CREATE_FINDINGS_OPEN_BY_SOFTWARE: &str = "CREATE INDEX IF NOT EXISTS findings_open_by_software ON findings (software_id, recommended_update) WHERE status = 'open'";

/// The indexes a first load puts off only while no other integration has findings.
const SHARED_DEFERRABLE: [&str; 3] = [
    "findings_by_priority",
    "findings_open_by_due",
    "findings_open_by_software",
];

/// Every index a first load may put off on `backend`, as rebuilt after it (or when the store is
/// opened after a load that died before rebuilding them). PostgreSQL builds the first half and
/// the second half in two sessions at once: the largest (by CVE) is paired with the smallest (by
/// due date).
pub(crate) fn deferrable_indexes(backend: Backend) -> [&'static str; 4] {
    let by_cve = match backend {
        Backend::Sqlite => CREATE_FINDINGS_BY_CVE_SQLITE,
        Backend::Postgres => CREATE_FINDINGS_BY_CVE_POSTGRES,
    };
    [
        by_cve,
        CREATE_FINDINGS_OPEN_BY_DUE,
        CREATE_FINDINGS_BY_PRIORITY,
        CREATE_FINDINGS_OPEN_BY_SOFTWARE,
    ]
}

/// Rampart's store on SQLite or PostgreSQL ([`crate::connect`] picks one from the URL; open one
/// directly with [`SqlStore::open`] or [`SqlStore::connect`]).
pub struct SqlStore {
    pub(crate) db: Pool,
    pub(crate) d: Dialect,
    /// The integrations whose first load this store is writing, from
    /// [`Store::begin_bulk_findings`] to [`Store::end_bulk_findings`]: their batches are
    /// inserted rather than merged where the engine can (PostgreSQL's `COPY`).
    first_loads: std::sync::Mutex<FastSet<IntegrationId>>,
    /// The integrations whose full read of findings this store is writing, from
    /// [`Store::begin_bulk_findings`] to their reconciliation (or the run's end): a row that
    /// repeats a stored open finding unchanged (same `content_hash`) is left alone and its id
    /// kept in `sightings` for the reconciliation, instead of being rewritten to mark it seen.
    full_reads: std::sync::Mutex<FastSet<IntegrationId>>,
    /// Per run, the findings it found unchanged and left alone (see `full_reads`), until the run
    /// ends.
    sightings: std::sync::Mutex<FastMap<RunId, Sighted>>,
    /// The roll-ups of the first loads this store is writing, counted from their rows as they
    /// are inserted (`crate::first_load_tally`), from [`Store::begin_bulk_findings`] to the
    /// run's end.
    pub(crate) tallies: Tallies,
    /// How many roll-ups were written from a tally rather than counted from the rows (tests
    /// check that the tally was used).
    pub(crate) tallied: std::sync::atomic::AtomicU64,
    /// How many prioritising reads were answered without reading ([`Store::prioritising_reads_skipped`]).
    pub(crate) prioritising_skipped: std::sync::atomic::AtomicU64,
    /// Dropped after the pools (fields drop in declaration order).
    pub(crate) engine: Engine,
}

/// What one engine's store has beside its pools.
pub(crate) enum Engine {
    Sqlite(SqliteFile),
    /// Something to drop together with the store, after the pool: the test harness drops its
    /// per-test database this way.
    Postgres {
        _attachment: Option<Box<dyn Send + Sync>>,
    },
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("SqlStore");
        s.field("backend", &self.d.backend);
        if let Engine::Sqlite(file) = &self.engine {
            s.field("path", &file.path);
        }
        s.finish_non_exhaustive()
    }
}

/// Narrows a statement on `exceptions` (whose text has its WHERE) to those `vis` may see, or
/// change (`change`): an exception of an integration when the integration is in it. One for
/// every integration (granted by a global admin) covers findings of every workspace, so every
/// member may see why; only whoever sees everything may change it.
fn push_exception_visibility(d: Dialect, vis: &Visibility, sql: &mut Sql, change: bool) {
    if let Some(c) = vis.condition(d, sql, "integration_id") {
        let every = if change {
            "false"
        } else {
            "integration_id IS NULL"
        };
        sql.text.push_str(&format!(" AND ({every} OR {c})"));
    }
}

/// The sync state key saying that a run ended without recounting its integration's summaries
/// (the disk was full), so that the next run's end recounts them whatever it changed.
const SUMMARIES_OWED: &str = "summaries_owed";

impl SqlStore {
    /// One attempt of [`Store::finish_run`]. Without `refresh` (a full disk) the run is closed
    /// without recounting its integration's summaries, which are owed to the next run's end.
    async fn finish_run_once(
        &self,
        run_id: RunId,
        o: &RunOutcome,
        refresh: bool,
    ) -> Result<SyncRun> {
        let (verdict, reason) = verdict_columns(&o.verdict);
        let mut tx = self.db.begin().await?;
        let sql = q("UPDATE sync_runs SET status = $2, finished_at = $3, heartbeat_at = $3, verdict = $4, verdict_reason = $5, \
             counts = $6, api_calls = $7, throttled = $8, retries = $9, bytes = $10, error = $11 \
             WHERE id = $1 AND status = 'running'")
        .bind(run_id)
        .bind(o.status.as_str())
        .bind(o.finished_at)
        .bind(verdict)
        .bind(reason)
        .bind(run_counts_json(o))
        .bind(as_i64(o.api_calls))
        .bind(as_i64(o.throttled))
        .bind(as_i64(o.retries))
        .bind(as_i64(o.bytes))
        .bind(o.error.as_deref().map(clean));
        let done = tx.on().execute(&sql, "finishing a sync run").await?;
        let run = run_by_id(tx.on(), run_id).await?;
        if done == 0 {
            return Err(StoreError::Conflict(format!(
                "sync run {run_id} was already finished ({}{}); its outcome was not changed",
                run.status.as_str(),
                run.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )));
        }
        // A first load's counts, kept as its rows were inserted: used below if they still stand.
        let tally = lock(&self.tallies).remove(&run.integration_id);
        let owed = q("SELECT value FROM sync_state WHERE integration_id = $1 AND key = $2")
            .bind(run.integration_id)
            .bind(SUMMARIES_OWED);
        let owed = tx
            .on()
            .fetch_optional(&owed, "reading sync state")
            .await?
            .is_some();
        if needs_refresh(o) || owed {
            fix_plan::mark_stale(&mut tx, run.integration_id).await?;
            if refresh {
                let counted = tally.as_ref().and_then(|t| {
                    first_load_tally::standing(t, run_id, |t| {
                        Some(t.asset_counts().collect::<Vec<_>>())
                    })
                });
                match counted {
                    Some(c) if c.holds(&mut tx, run.integration_id, false).await? => {
                        first_load_tally::update_asset_summaries(
                            self.d.backend,
                            &mut tx,
                            run.integration_id,
                            &c.rows,
                        )
                        .await?;
                        self.tallied.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => refresh_summaries(self.d, &mut tx, run.integration_id).await?,
                }
                let paid = q("DELETE FROM sync_state WHERE integration_id = $1 AND key = $2")
                    .bind(run.integration_id)
                    .bind(SUMMARIES_OWED);
                tx.on().execute(&paid, "saving sync state").await?;
            } else if !owed {
                let owe = q("INSERT INTO sync_state (integration_id, key, value, updated_at) VALUES ($1, $2, $3, $4)")
                    .bind(run.integration_id)
                    .bind(SUMMARIES_OWED)
                    .bind("the disk was full when a run ended")
                    .bind(o.finished_at);
                tx.on().execute(&owe, "saving sync state").await?;
            }
        }
        let count_plan = fix_plan::needs_rebuild(&mut tx, run.integration_id).await?;
        tx.commit("finishing a sync run").await?;
        if count_plan {
            // In a transaction of its own, after the run is closed: the run's outcome must be
            // stored even when counting fails (a full disk); until it is counted, the plan is
            // counted from the findings, and the scheduler counts it on its next pass.
            let counted = tally.as_ref().and_then(|t| {
                first_load_tally::standing(t, run_id, |t| t.fix_plan_at(micros(o.finished_at)))
            });
            if let Err(error) = self
                .count_fix_plan(run.integration_id, o.finished_at, counted)
                .await
            {
                tracing::warn!(
                    message = "Counting the remediation plan failed; it is counted from the findings until the next try.",
                    integration = run.integration_id.get(),
                    %error
                );
            }
        }
        if self.d.backend == Backend::Sqlite {
            // Lets SQLite refresh its planner statistics after a large write, cheaply.
            let optimize = q("PRAGMA optimize");
            if let Err(e) = self.db.write().execute(&optimize, "optimizing").await {
                tracing::debug!(message = "PRAGMA optimize failed.", error = %e);
            }
        }
        Ok(run)
    }

    /// Counts the integration's remediation plan in a transaction of its own, from a first
    /// load's tally when it is given and still stands.
    async fn count_fix_plan(
        &self,
        integration: IntegrationId,
        at: DateTime<Utc>,
        counted: Option<first_load_tally::Standing<Vec<first_load_tally::FixRow>>>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        if fix_plan::rebuild(self.d, &mut tx, integration, at, counted).await? {
            self.tallied.fetch_add(1, Ordering::Relaxed);
        }
        tx.commit("committing the remediation plan's count").await
    }

    fn first_loads(&self) -> std::sync::MutexGuard<'_, FastSet<IntegrationId>> {
        // Each change is one insert or clear: a panic elsewhere cannot leave the set half-made.
        self.first_loads.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn full_reads(&self) -> std::sync::MutexGuard<'_, FastSet<IntegrationId>> {
        self.full_reads.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sightings(&self) -> std::sync::MutexGuard<'_, FastMap<RunId, Sighted>> {
        self.sightings.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn new(db: Pool, engine: Engine) -> Self {
        let d = db.dialect();
        Self {
            db,
            d,
            first_loads: Default::default(),
            full_reads: Default::default(),
            sightings: Default::default(),
            tallies: Default::default(),
            tallied: Default::default(),
            prioritising_skipped: Default::default(),
            engine,
        }
    }
}

// ---- shared steps ---------------------------------------------------------------------------------

/// The run's `started_at`, once it is known to be running and to belong to the integration.
pub(crate) async fn check_run(
    on: On<'_>,
    integration_id: IntegrationId,
    run_id: RunId,
) -> Result<DateTime<Utc>> {
    let sql =
        q("SELECT integration_id, status, started_at FROM sync_runs WHERE id = $1").bind(run_id);
    let row = match on.fetch_optional(&sql, "checking the sync run").await? {
        None => None,
        Some(r) => Some((
            r.integration("integration_id")?,
            r.text("status")?,
            r.ts("started_at")?,
        )),
    };
    check_run_for_write(run_id, integration_id, row)
}

/// Records that the run's process is alive.
pub(crate) async fn heartbeat(on: On<'_>, run_id: RunId) -> Result<()> {
    let sql = q("UPDATE sync_runs SET heartbeat_at = $2 WHERE id = $1")
        .bind(run_id)
        .bind(Utc::now());
    on.execute(&sql, "recording the run's heartbeat").await?;
    Ok(())
}

/// Counts on the run the findings whose content a batch changed (`change_kind` 1), in the
/// transaction that changed them: the prioritising step reads the run's changed findings only
/// when it counted some (`SqlStore::nothing_to_assess`), and a batch that committed is counted
/// whatever happens to the run after it.
pub(crate) async fn count_changed_findings(on: On<'_>, run_id: RunId, changed: u64) -> Result<()> {
    if changed == 0 {
        return Ok(());
    }
    let sql = q("UPDATE sync_runs SET findings_changed = findings_changed + $2 WHERE id = $1")
        .bind(run_id)
        .bind(i64::try_from(changed).unwrap_or(i64::MAX));
    on.execute(&sql, "counting the run's changed findings")
        .await?;
    Ok(())
}

/// Checks that `run_id` is a running run of `integration_id`, records a sign of life, and returns
/// the run's start (the observation time of everything it writes).
async fn touch_run(
    tx: &mut Tx,
    integration_id: IntegrationId,
    run_id: RunId,
) -> Result<DateTime<Utc>> {
    let started_at = check_run(tx.on(), integration_id, run_id).await?;
    heartbeat(tx.on(), run_id).await?;
    Ok(started_at)
}

async fn run_by_id(on: On<'_>, run_id: RunId) -> Result<SyncRun> {
    let sql = q(concat!(
        "SELECT ",
        run_columns!(),
        " FROM sync_runs WHERE id = $1"
    ))
    .bind(run_id);
    on.fetch_optional(&sql, "reading a sync run")
        .await?
        .ok_or_else(|| run_not_found(run_id))
        .and_then(|r| decode_run(&r))
}

/// Recounts an integration's summaries (see the `summary` module).
async fn refresh_summaries(d: Dialect, tx: &mut Tx, integration_id: IntegrationId) -> Result<()> {
    let op = "refreshing the findings summaries";
    tx.scan_cache(op).await?;
    let sql = q(&refresh_assets_sql(d)).bind(integration_id);
    let refreshed = tx.on().execute(&sql, op).await;
    // The refresh's own error, if any, is the one worth reporting.
    let restored = tx.writer_cache(op).await;
    refreshed.and(restored)
}

/// `sql` with `texts` bound after the values it has.
fn with_texts(mut sql: Sql, texts: &[String]) -> Sql {
    for t in texts {
        sql = sql.bind(t.as_str());
    }
    sql
}

/// Adds one `status, severity, n` row of the dashboard queries to the counts.
fn tally(counts: &mut Counts, is_assets: bool, r: &Row) -> Result<()> {
    let status = r.text("status")?;
    let n = as_u64(r.int("n")?);
    match (is_assets, status.as_str()) {
        (true, "active") => counts.assets_active += n,
        (true, _) => counts.assets_missing += n,
        (false, "open") => counts
            .findings_open
            .add(severity_from_code(r.opt_int("severity")?)?, n),
        (false, _) => counts.findings_fixed += n,
    }
    Ok(())
}

/// The cloud numbers of the dashboard, added to `counts`. On the caller's connection (its read
/// transaction): asking the pool for a second connection while holding one is how concurrent
/// dashboards once took every connection and waited for each other until the pool timed out.
async fn cloud_counts(
    tx: &mut Tx,
    d: Dialect,
    vis: &Visibility,
    integration: Option<IntegrationId>,
    counts: &mut Counts,
) -> Result<()> {
    let sql = subscription_count_query(d, vis, integration);
    let n = tx.on().fetch_one(&sql, "counting subscriptions").await?;
    counts.subscriptions = as_u64(n.int("n")?);
    let sql = unhealthy_by_severity_query(d, vis, integration);
    for r in tx.on().fetch_all(&sql, "counting recommendations").await? {
        tally_unhealthy(counts, &r)?;
    }
    Ok(())
}

async fn integration_names(tx: &mut Tx, op: &'static str) -> Result<IntegrationNames> {
    decode_integration_names(&tx.on().fetch_all(&q(INTEGRATION_NAMES), op).await?)
}

/// Rows of a listing and the names of the integrations they refer to, from one snapshot.
async fn with_names(
    db: &Pool,
    sql: &Sql,
    op: &'static str,
) -> Result<(Vec<Row>, IntegrationNames)> {
    let mut tx = db.begin_read().await?;
    let rows = tx.on().fetch_all(sql, op).await?;
    let names = integration_names(&mut tx, op).await?;
    Ok((rows, names))
}

fn no_account(id: i64) -> StoreError {
    StoreError::NotFound(format!("there is no account with id {id}"))
}

// ---- the store ------------------------------------------------------------------------------------

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.d.backend
    }

    async fn schema_state(&self) -> Result<crate::ops::SchemaState> {
        match &self.engine {
            Engine::Sqlite(file) => {
                crate::ops::sqlite_schema_state(&file.path, sqlite::migrator()).await
            }
            Engine::Postgres { .. } => {
                let sql = q("SELECT version, success FROM _sqlx_migrations");
                let rows = self
                    .db
                    .read()
                    .fetch_all(&sql, "reading the applied migrations")
                    .await?
                    .iter()
                    .map(|r| Ok((r.int("version")?, r.flag("success")?)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(crate::ops::schema_state(&postgres::MIGRATOR, &rows))
            }
        }
    }

    async fn backup_into(&self, dest: &Path) -> Result<()> {
        match &self.engine {
            Engine::Sqlite(file) => crate::ops::sqlite_backup(&file.path, dest).await,
            Engine::Postgres { .. } => Err(StoreError::InvalidInput(
                "this database is PostgreSQL: back it up with pg_dump".to_owned(),
            )),
        }
    }

    async fn close(&self) {
        if let Engine::Sqlite(file) = &self.engine {
            file.close_first_load_writer();
            file.checkpoints.close().await;
        }
        self.db.close().await;
    }

    // ---- integrations ------------------------------------------------------------------------

    async fn create_integration_in(
        &self,
        new: &NewIntegration,
        workspace: WorkspaceId,
    ) -> Result<Integration> {
        // INSERT … SELECT: no row when the workspace does not exist (SQLite keeps no foreign key
        // on this column; see migration 0013).
        let sql = q(concat!(
            "INSERT INTO integrations (name, product, cloud, tenant_id, client_id, secret_ciphertext, secret_nonce, \
             secret_last4, secret_expires_on, login_url, api_url, schedule_minutes, enabled, created_at, updated_at, workspace_id) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, w.id FROM workspaces w WHERE w.id = $15 RETURNING ",
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
        .bind(Utc::now())
        .bind(workspace.0);
        match self
            .db
            .write()
            .fetch_optional(&sql, "creating an integration")
            .await
        {
            Ok(Some(row)) => decode_integration(&row),
            Ok(None) => Err(workspace_not_found(workspace)),
            Err(e) if e.is_unique_violation() => Err(name_taken(&new.name)),
            Err(e) => Err(e),
        }
    }

    async fn get_integration(&self, vis: &Visibility, id: IntegrationId) -> Result<Integration> {
        let mut sql = q(concat!(
            "SELECT ",
            integration_columns!(),
            " FROM integrations WHERE id = $1"
        ))
        .bind(id);
        vis.push_and(self.d, &mut sql, "id");
        self.db
            .read()
            .fetch_optional(&sql, "reading an integration")
            .await?
            .ok_or_else(|| integration_not_found(id))
            .and_then(|r| decode_integration(&r))
    }

    async fn get_integration_by_name(
        &self,
        vis: &Visibility,
        name: &IntegrationName,
    ) -> Result<Integration> {
        let mut sql = q(concat!(
            "SELECT ",
            integration_columns!(),
            " FROM integrations WHERE lower(name) = lower($1)"
        ))
        .bind(name.as_str());
        vis.push_and(self.d, &mut sql, "id");
        self.db
            .read()
            .fetch_optional(&sql, "reading an integration")
            .await?
            .ok_or_else(|| integration_name_not_found(name))
            .and_then(|r| decode_integration(&r))
    }

    async fn list_integrations(&self, vis: &Visibility) -> Result<Vec<Integration>> {
        let mut sql = q(concat!(
            "SELECT ",
            integration_columns!(),
            " FROM integrations"
        ));
        vis.restrict(self.d, &mut sql, "id");
        sql.text.push_str(" ORDER BY lower(name)");
        self.db
            .read()
            .all(&sql, "listing integrations", decode_integration)
            .await
    }

    async fn update_integration(
        &self,
        id: IntegrationId,
        u: &IntegrationUpdate,
    ) -> Result<Integration> {
        let mut tx = self.db.begin().await?;
        let sql = q(&format!(
            "SELECT {} FROM integrations WHERE id = $1{}",
            integration_columns!(),
            self.d.for_update
        ))
        .bind(id);
        let row = tx
            .on()
            .fetch_optional(&sql, "reading an integration")
            .await?
            .ok_or_else(|| integration_not_found(id))?;
        let cur = decode_integration(&row)?;
        let name = u.name.clone().unwrap_or(cur.name);
        let (secret, hint) = match &u.secret {
            Some((s, h)) => (Some(s), h.clone()),
            None => (None, cur.secret_hint),
        };
        let sql = q(concat!(
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
        .bind(clean_opt(&u.login_url.clone().unwrap_or(cur.login_url)))
        .bind(clean_opt(&u.api_url.clone().unwrap_or(cur.api_url)))
        .bind(u.schedule_minutes.unwrap_or(cur.schedule_minutes))
        .bind(u.enabled.unwrap_or(cur.enabled))
        .bind(Utc::now());
        let updated = match tx.on().fetch_one(&sql, "updating an integration").await {
            Ok(row) => decode_integration(&row)?,
            Err(e) if e.is_unique_violation() => return Err(name_taken(&name)),
            Err(e) => return Err(e),
        };
        tx.commit("committing an integration update").await?;
        Ok(updated)
    }

    async fn delete_integration(&self, id: IntegrationId) -> Result<()> {
        lock(&self.tallies).remove(&id);
        let mut tx = self.db.begin().await?;
        // Children first, each by its integration index; the cascade would do the same, but
        // explicit statements keep the cost visible and do not depend on the foreign-key pragma.
        for table in [
            "recommendations",
            "posture_controls",
            "posture_scores",
            "subscription_reads",
            "subscriptions",
            "findings",
            "assets",
            "sync_runs",
            "sync_state",
            "jobs",
            "fix_plan",
            "fix_plan_builds",
        ] {
            let sql = q(&format!("DELETE FROM {table} WHERE integration_id = $1")).bind(id);
            tx.on()
                .execute(&sql, "removing an integration's data")
                .await?;
        }
        let sql = q("DELETE FROM integrations WHERE id = $1").bind(id);
        if tx.on().execute(&sql, "removing an integration").await? == 0 {
            return Err(integration_not_found(id));
        }
        tx.commit("committing an integration's removal").await
    }

    async fn integration_secret(&self, id: IntegrationId) -> Result<SecretCiphertext> {
        let sql =
            q("SELECT secret_ciphertext, secret_nonce FROM integrations WHERE id = $1").bind(id);
        let row = self
            .db
            .read()
            .fetch_optional(&sql, "reading an integration's secret")
            .await?
            .ok_or_else(|| integration_not_found(id))?;
        Ok(SecretCiphertext {
            ciphertext: row.bytes("secret_ciphertext")?,
            nonce: row.bytes("secret_nonce")?,
        })
    }

    // ---- workspaces ----------------------------------------------------------------------------

    async fn create_workspace(&self, name: &str) -> Result<Workspace> {
        workspace::create(&self.db, name).await
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        workspace::list(&self.db).await
    }

    async fn get_workspace_by_name(&self, name: &str) -> Result<Workspace> {
        workspace::by_name(&self.db, name).await
    }

    async fn delete_workspace(&self, id: WorkspaceId) -> Result<()> {
        workspace::delete(&self.db, id).await
    }

    async fn move_integration(&self, id: IntegrationId, to: WorkspaceId) -> Result<()> {
        workspace::move_integration(&self.db, id, to).await
    }

    async fn grant_membership(
        &self,
        user_id: i64,
        workspace: WorkspaceId,
        role: Role,
    ) -> Result<()> {
        workspace::grant(&self.db, user_id, workspace, role).await
    }

    async fn revoke_membership(&self, user_id: i64, workspace: WorkspaceId) -> Result<()> {
        workspace::revoke(&self.db, user_id, workspace).await
    }

    async fn memberships(&self, user_id: i64) -> Result<Vec<Membership>> {
        workspace::memberships(&self.db, user_id).await
    }

    // ---- threat intelligence -----------------------------------------------------------------

    async fn replace_kev_catalog(
        &self,
        snapshot: &KevSnapshot,
        entries: &[KevEntry],
    ) -> Result<IntelSource> {
        let mut tx = self.db.begin().await?;
        if self.d.backend == Backend::Postgres {
            // Two refreshes at once (two `serve` processes) replace one after the other, never
            // mixed. SQLite's write transaction holds its one write lock already.
            let lock = q("LOCK TABLE kev_entries IN EXCLUSIVE MODE");
            tx.on().execute(&lock, "locking the KEV catalogue").await?;
        }
        tx.on()
            .execute(&q("DELETE FROM kev_entries"), "clearing the KEV catalogue")
            .await?;
        let insert = q(kev_insert_sql(self.d.backend)).bind(kev_rows_json(entries));
        tx.on()
            .execute(&insert, "storing the KEV catalogue")
            .await?;
        let sql = q(&format!(
            "INSERT INTO intel_sources ({SOURCE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, NULL) \
             ON CONFLICT (source) DO UPDATE SET url = excluded.url, etag = excluded.etag, \
             last_modified = excluded.last_modified, fetched_at = excluded.fetched_at, \
             attempted_at = excluded.attempted_at, catalog_version = excluded.catalog_version, \
             date_released = excluded.date_released, count = excluded.count, last_error = NULL \
             RETURNING {SOURCE_COLUMNS}"
        ))
        .bind(KEV_SOURCE)
        .bind(snapshot.url.as_str())
        .bind(snapshot.etag.as_deref())
        .bind(snapshot.last_modified.as_deref())
        .bind(snapshot.fetched_at)
        .bind(snapshot.catalog_version.as_deref())
        .bind(snapshot.date_released)
        .bind(entries.len() as i64);
        let row = tx.on().fetch_one(&sql, "recording the KEV source").await?;
        let source = decode_source(&row)?;
        tx.commit("committing the KEV catalogue").await?;
        Ok(source)
    }

    async fn record_intel_check(&self, check: &IntelCheck<'_>) -> Result<()> {
        let sql = q(
            "INSERT INTO intel_sources (source, url, fetched_at, attempted_at, last_error) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (source) DO UPDATE SET attempted_at = excluded.attempted_at, \
             fetched_at = COALESCE(excluded.fetched_at, intel_sources.fetched_at), \
             last_error = excluded.last_error",
        )
        .bind(check.source)
        .bind(check.url)
        .bind(check.error.is_none().then_some(check.at))
        .bind(check.at)
        .bind(check.error);
        self.db
            .write()
            .execute(&sql, "recording an intelligence check")
            .await?;
        Ok(())
    }

    async fn intel_source(&self, source: &str) -> Result<Option<IntelSource>> {
        let sql = q(&format!(
            "SELECT {SOURCE_COLUMNS} FROM intel_sources WHERE source = $1"
        ))
        .bind(source);
        self.db
            .read()
            .fetch_optional(&sql, "reading an intelligence source")
            .await?
            .map(|r| decode_source(&r))
            .transpose()
    }

    async fn kev_entries_for(&self, cves: &[CveId]) -> Result<Vec<KevEntry>> {
        if cves.is_empty() {
            return Ok(Vec::new());
        }
        let sql = q(&format!(
            "SELECT {KEV_COLUMNS} FROM kev_entries WHERE {} ORDER BY cve_id{}",
            self.d.in_list("cve_id", "$1"),
            self.d.collate_c
        ))
        .bind(crate::db::Arg::Texts(
            cves.iter()
                .map(|c| clean(c.as_str()).into_owned())
                .collect(),
        ));
        self.db
            .read()
            .all(&sql, "reading KEV entries", decode_kev)
            .await
    }

    // ---- prioritisation ---------------------------------------------------------------------

    async fn assessment_inputs(
        &self,
        integration_id: IntegrationId,
        scope: AssessScope<'_>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<AssessmentInput>> {
        if let AssessScope::ChangedBy { run_id, since } = scope
            && after.is_none()
            && self
                .nothing_to_assess(integration_id, run_id, since)
                .await?
        {
            self.prioritising_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(into_page(Vec::new(), limit, |r: &AssessmentInput| {
                r.finding_id
            }));
        }
        let mut sql = Sql::new(&format!("SELECT {INPUT_COLUMNS} FROM findings f"));
        // Both leading columns of findings_status are fixed: the index gives id order.
        let pi = sql.arg(crate::db::Arg::Int(integration_id.get()));
        sql.and(&format!("f.integration_id = {pi} AND f.status = 'open'"));
        if let Some(after) = after {
            let ph = sql.arg(crate::db::Arg::Int(after));
            sql.and(&format!("f.id > {ph}"));
        }
        match scope {
            AssessScope::All => {}
            AssessScope::Cves(cves) => {
                let ph = sql.arg(crate::db::Arg::Texts(
                    cves.iter().map(|c| c.as_str().to_owned()).collect(),
                ));
                sql.and(&self.d.in_list("f.cve_id", &ph));
            }
            AssessScope::ChangedBy { run_id, since } => {
                // Checked in the database, row by row over the integration's open findings: far
                // cheaper than reading each into the process to find that nothing changed.
                // change_kind 1 is "content updated" for findings and assets alike (see
                // finding_changed!, asset_on_conflict!).
                let pr = sql.arg(crate::db::Arg::Int(run_id.get()));
                let ps = sql.arg(crate::db::Arg::Time(since));
                sql.and(&format!(
                    "(f.decision IS NULL OR (f.seen_run = {pr} AND f.change_kind = 1) \
                     OR f.asset_id IN (SELECT a.id FROM assets a WHERE a.integration_id = {pi} AND a.seen_run = {pr} AND a.change_kind = 1) \
                     OR f.cve_id IN (SELECT v.cve_id FROM vulnerabilities v WHERE v.updated_at > {ps}))"
                ));
            }
        }
        sql.text.push_str(" ORDER BY f.id");
        page_limit(&mut sql, limit);
        let rows = self
            .db
            .read()
            .all(&sql, "reading findings to prioritise", decode_input)
            .await?;
        Ok(into_page(rows, limit, |r| r.finding_id))
    }

    async fn urgent_counts(&self, vis: &Visibility, now: DateTime<Utc>) -> Result<UrgentCounts> {
        fix_plan::urgent::counts(&self.db, vis, now).await
    }

    async fn vulnerabilities_for(&self, cves: &[CveId]) -> Result<Vec<Vulnerability>> {
        if cves.is_empty() {
            return Ok(Vec::new());
        }
        let sql = q(&format!(
            // Without the description (most of a row's bytes), which prioritisation does not read.
            "SELECT v.cve_id, v.severity, v.cvss, v.cvss_vector, v.epss, v.public_exploit, v.exploit_verified, \
             v.exploit_in_kit, v.exploit_types, v.published_on, v.updated_on, NULL AS description, \
             v.source_exposed_machines, 0 AS exposed_assets FROM vulnerabilities v WHERE {}",
            self.d.in_list("v.cve_id", "$1")
        ))
        .bind(crate::db::Arg::Texts(
            cves.iter().map(|c| c.as_str().to_owned()).collect(),
        ));
        let rows = self
            .db
            .read()
            .all(&sql, "reading CVEs to prioritise", decode_vulnerability)
            .await?;
        Ok(rows.into_iter().map(|v| v.vulnerability).collect())
    }

    async fn write_assessments(
        &self,
        explanations: &[Explanation],
        writes: &[AssessmentWrite],
        at: DateTime<Utc>,
    ) -> Result<u64> {
        if writes.is_empty() && explanations.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db.begin().await?;
        if !explanations.is_empty() {
            let sql = q(explanations_sql(self.d.backend)).bind(explanations_json(explanations));
            tx.on()
                .execute(&sql, "storing priority explanations")
                .await?;
        }
        if writes.is_empty() {
            // Explanations alone: the findings are not touched, nor locked (on PostgreSQL a
            // first load writes them while the findings' indexes are being built, and an UPDATE
            // of no row still waited for every build).
            tx.commit("committing priority explanations").await?;
            return Ok(0);
        }
        let rows = writes_json(self.d.backend, writes);
        let sql = q(write_sql(self.d.backend)).bind(rows.as_str()).bind(at);
        let written = tx.on().execute(&sql, "storing priorities").await?;
        if written > 0 {
            // The remediation plan's roll-up counted the old priorities (crate::fix_plan).
            let sql = q(mark_plans_stale_sql(self.d.backend))
                .bind(rows.as_str())
                .bind(true);
            tx.on()
                .execute(&sql, "marking the remediation plan to count again")
                .await?;
            let sql = q(findings_rewritten_sql(self.d.backend)).bind(rows.as_str());
            tx.on().execute(&sql, "storing priorities").await?;
        }
        tx.commit("committing priorities").await?;
        Ok(written)
    }

    // ---- sync state ----------------------------------------------------------------------------

    async fn get_sync_state(
        &self,
        integration_id: IntegrationId,
        key: &str,
    ) -> Result<Option<String>> {
        let sql = q("SELECT value FROM sync_state WHERE integration_id = $1 AND key = $2")
            .bind(integration_id)
            .bind(clean(key));
        let row = self
            .db
            .read()
            .fetch_optional(&sql, "reading sync state")
            .await?;
        row.map(|r| r.text("value")).transpose()
    }

    async fn set_sync_state(
        &self,
        integration_id: IntegrationId,
        key: &str,
        value: &str,
    ) -> Result<()> {
        let sql = q("INSERT INTO sync_state (integration_id, key, value, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (integration_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
        .bind(integration_id)
        .bind(clean(key))
        .bind(clean(value))
        .bind(Utc::now());
        match self.db.write().execute(&sql, "saving sync state").await {
            Err(e) if e.is_foreign_key_violation() => Err(integration_not_found(integration_id)),
            other => other.map(|_| ()),
        }
    }

    // ---- runs ----------------------------------------------------------------------------------

    async fn start_run_owned(
        &self,
        integration_id: IntegrationId,
        mode: &str,
        now: DateTime<Utc>,
        owner: Option<&RunOwner>,
    ) -> Result<RunId> {
        check_mode(mode)?;
        let now = truncate_micros(now);
        let op = "starting a sync run";
        let mut tx = self.db.begin().await?;
        let exists = q("SELECT 1 FROM integrations WHERE id = $1").bind(integration_id);
        if tx.on().fetch_optional(&exists, op).await?.is_none() {
            return Err(integration_not_found(integration_id));
        }
        let running = q(&format!(
            "SELECT id, started_at, heartbeat_at, owner FROM sync_runs WHERE integration_id = $1 AND status = 'running'{}",
            self.d.for_update
        ))
        .bind(integration_id);
        if let Some(r) = tx.on().fetch_optional(&running, op).await? {
            let (id, started, beat) = (r.int("id")?, r.ts("started_at")?, r.ts("heartbeat_at")?);
            let stale_after = chrono::Duration::from_std(STALE_RUN_AFTER)
                .unwrap_or_else(|_| chrono::Duration::minutes(30));
            let recorded = r.opt_text("owner")?;
            let owner_gone = match (recorded.as_deref().and_then(RunOwner::parse), owner) {
                (Some(theirs), Some(mine)) => theirs.is_certainly_gone(mine),
                _ => false,
            };
            if beat + stale_after > now && !owner_gone {
                return Err(run_already_running(RunId(id), started, beat));
            }
            let close = q("UPDATE sync_runs SET status = 'failed', finished_at = $2, error = $3 WHERE id = $1 AND status = 'running'")
                .bind(id)
                .bind(now)
                .bind(abandoned_message(beat));
            tx.on()
                .execute(&close, "closing an abandoned sync run")
                .await?;
            tracing::warn!(
                message = "Closed an abandoned sync run.",
                run = id,
                integration = integration_id.get(),
                last_sign_of_life = %beat
            );
        }
        let insert = q(
            "INSERT INTO sync_runs (integration_id, mode, status, started_at, heartbeat_at, owner) \
             VALUES ($1, $2, 'running', $3, $3, $4) RETURNING id",
        )
        .bind(integration_id)
        .bind(mode)
        .bind(now)
        .bind(owner.map(|o| o.to_string()));
        let id = match tx.on().fetch_one(&insert, op).await {
            Ok(row) => row.int("id")?,
            Err(e) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(
                    "another process started a sync of this integration at the same moment; wait for it to finish"
                        .to_owned(),
                ));
            }
            Err(e) => return Err(e),
        };
        tx.commit(op).await?;
        Ok(RunId(id))
    }

    async fn heartbeat_run(&self, run_id: RunId, now: DateTime<Utc>) -> Result<()> {
        let sql = q("UPDATE sync_runs SET heartbeat_at = $2 WHERE id = $1 AND status = 'running'")
            .bind(run_id)
            .bind(now);
        if self
            .db
            .write()
            .execute(&sql, "recording the run's heartbeat")
            .await?
            == 0
        {
            let run = run_by_id(self.db.read(), run_id).await?;
            return Err(StoreError::Conflict(format!(
                "sync run {run_id} is no longer running (it is {}); start a new run",
                run.status.as_str()
            )));
        }
        Ok(())
    }

    async fn finish_run(&self, run_id: RunId, o: &RunOutcome) -> Result<SyncRun> {
        check_outcome(o)?;
        // What the run found unchanged served its reconciliation, if it had one.
        self.sightings().remove(&run_id);
        // A run that failed because the disk is full must still be closed, or it blocks the
        // integration until it is taken for abandoned. On SQLite the space is often in the
        // write-ahead log, whose committed pages the checkpointer (another connection) may still
        // be moving back: once they are moved and the log is truncated, this one small write
        // fits. A few tries, a moment apart, for up to 4.5 s in all: a loaded machine's
        // checkpointer needed more than the half second five tries gave, and a CI run under full
        // load once more than the 1.4 s of eight.
        // After the first try the run is closed without recounting the summaries (thousands of
        // rows to rewrite, which would eat the reserve given up for this close): the next run's
        // end recounts them.
        let mut attempt = 1;
        loop {
            match self.finish_run_once(run_id, o, attempt == 1).await {
                Err(StoreError::DiskFull { .. })
                    if self.d.backend == Backend::Sqlite && attempt < 14 =>
                {
                    let released = match &self.engine {
                        Engine::Sqlite(file) => sqlite::reserve::release(&file.path),
                        Engine::Postgres { .. } => false,
                    };
                    // The reserve just given up is room for this close's few pages of log:
                    // used at once, before a checkpoint takes it to grow the database file
                    // (copying the log's pages back needs room too, often more than the
                    // reserve; the test of a really full disk failed that way under load).
                    if !released {
                        tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                        let truncate = q("PRAGMA wal_checkpoint(TRUNCATE)");
                        if let Err(e) = self.db.write().execute(&truncate, "making room").await {
                            tracing::debug!(message = "Checkpoint to make room failed.", error = %e);
                        }
                    }
                    attempt += 1;
                }
                Ok(run) => {
                    if let Engine::Sqlite(file) = &self.engine {
                        sqlite::reserve::keep(&file.path);
                    }
                    // Its read, if it had one, is over.
                    self.full_reads().remove(&run.integration_id);
                    return Ok(run);
                }
                other => return other,
            }
        }
    }

    async fn get_run(&self, vis: &Visibility, run_id: RunId) -> Result<SyncRun> {
        let mut sql = q(concat!(
            "SELECT ",
            run_columns!(),
            " FROM sync_runs WHERE id = $1"
        ))
        .bind(run_id);
        vis.push_and(self.d, &mut sql, "integration_id");
        self.db
            .read()
            .maybe(&sql, "reading a sync run", decode_run)
            .await?
            .ok_or_else(|| run_not_found(run_id))
    }

    async fn list_runs(
        &self,
        vis: &Visibility,
        integration_id: IntegrationId,
        limit: u32,
    ) -> Result<Vec<SyncRun>> {
        let mut sql = q(concat!(
            "SELECT ",
            run_columns!(),
            " FROM sync_runs WHERE integration_id = $1"
        ))
        .bind(integration_id);
        vis.push_and(self.d, &mut sql, "integration_id");
        let pl = sql.arg(Arg::Int(i64::from(limit)));
        sql.text.push_str(&format!(" ORDER BY id DESC LIMIT {pl}"));
        self.db
            .read()
            .all(&sql, "listing sync runs", decode_run)
            .await
    }

    async fn last_successful_run(
        &self,
        vis: &Visibility,
        integration_id: IntegrationId,
    ) -> Result<Option<SyncRun>> {
        let mut sql = q(concat!(
            "SELECT ",
            run_columns!(),
            " FROM sync_runs WHERE integration_id = $1 AND status = 'succeeded'"
        ))
        .bind(integration_id);
        vis.push_and(self.d, &mut sql, "integration_id");
        sql.text.push_str(" ORDER BY id DESC LIMIT 1");
        self.db
            .read()
            .maybe(&sql, "reading the last successful run", decode_run)
            .await
    }

    // ---- batched writes (native per engine) ------------------------------------------------------

    async fn upsert_assets(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        assets: &[Asset],
    ) -> Result<UpsertCounts> {
        match &self.db {
            Pool::Sqlite { write, .. } => {
                sqlite::bulk::upsert_assets(write, integration_id, run_id, assets).await
            }
            Pool::Postgres(pool) => {
                postgres::bulk::upsert_assets(pool, integration_id, run_id, assets).await
            }
        }
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

    fn roll_ups_from_tallies(&self) -> u64 {
        self.tallied.load(Ordering::Relaxed)
    }

    fn prioritising_reads_skipped(&self) -> u64 {
        self.prioritising_skipped.load(Ordering::Relaxed)
    }

    fn batches_by_first_load_writer(&self) -> u64 {
        match &self.engine {
            Engine::Sqlite(file) => file.first_load_batches.load(Ordering::Relaxed),
            Engine::Postgres { .. } => 0,
        }
    }

    async fn begin_bulk_findings(&self, integration_id: IntegrationId) -> Result<bool> {
        self.full_reads().insert(integration_id);
        lock(&self.tallies).remove(&integration_id);
        let mut tx = self.db.begin().await?;
        let sql = q("SELECT EXISTS (SELECT 1 FROM findings WHERE integration_id = $1) AS found")
            .bind(integration_id);
        let found = tx
            .on()
            .fetch_one(&sql, "checking for stored findings")
            .await?;
        if found.flag("found")? {
            return Ok(false);
        }
        let op = "deferring the by-CVE index";
        tx.on()
            .execute(&q("DROP INDEX IF EXISTS findings_open_by_cve"), op)
            .await?;
        // The priority, due-date and exceptions' indexes take every row in random order too (a
        // first load of 2,000 devices spent ~0.7 s more on the first two than on the rows). They
        // serve the lists sorted by priority, the overdue counts and the exceptions of every
        // integration, so they are put off only when no other integration has findings to list:
        // a new installation's first load.
        let others =
            q("SELECT EXISTS (SELECT 1 FROM findings WHERE integration_id <> $1) AS found")
                .bind(integration_id);
        if !tx
            .on()
            .fetch_one(&others, "checking for other integrations' findings")
            .await?
            .flag("found")?
        {
            let op = "deferring the priority and exception indexes";
            for index in SHARED_DEFERRABLE {
                tx.on()
                    .execute(&q(&format!("DROP INDEX IF EXISTS {index}")), op)
                    .await?;
            }
        }
        if self.d.backend == Backend::Postgres {
            // The assets (and software) of a first load were written moments ago: autovacuum has
            // not analysed them yet, and with statistics that still count them as none the
            // planner chose to hash all of the integration's assets for every batch of findings.
            tx.on()
                .execute(
                    &q("ANALYZE assets, software"),
                    "refreshing the planner's statistics",
                )
                .await?;
        }
        let tally = {
            let sql = q("SELECT product, findings_generation FROM integrations WHERE id = $1")
                .bind(integration_id);
            let row = tx.on().fetch_one(&sql, "reading the integration").await?;
            let product = row.text("product")?;
            let product = product
                .parse::<rampart_model::Product>()
                .map_err(|_| corrupt("product", &product))?;
            FirstLoadTally::new(row.int("findings_generation")?, product)
        };
        tx.commit(op).await?;
        self.first_loads().insert(integration_id);
        lock(&self.tallies).insert(integration_id, tally);
        if let Engine::Sqlite(file) = &self.engine {
            // Without it the load is written through sqlx, as a later read is: slower, the same.
            if let Err(e) = file.open_first_load_writer().await {
                tracing::warn!(
                    message = "The first load's own writer connection could not be opened; its findings are written through the store's connection instead (slower, the same rows).",
                    reason = %e
                );
            }
        }
        Ok(true)
    }

    async fn end_bulk_findings(&self) -> Result<()> {
        self.first_loads().clear();
        if let Engine::Sqlite(file) = &self.engine {
            file.close_first_load_writer();
        }
        match &self.db {
            Pool::Sqlite { write, .. } => {
                sqlite::bulk::end_bulk_findings(write, &deferrable_indexes(Backend::Sqlite)).await
            }
            Pool::Postgres(_) => {
                // In two sessions at once: a build spends part of its time in one process
                // (writing the sorted index out), when the other session's build uses the idle
                // core. 3.0-4.0 s for the four against 3.4-4.4 s one after the other, at 20,000
                // devices (BENCHMARKS.md, "2026-12-07 (ninth)"); CREATE INDEX sessions do not
                // block each other.
                let indexes = deferrable_indexes(Backend::Postgres);
                let (first, second) = indexes.split_at(indexes.len() / 2);
                let build = async |indexes: &[&str]| -> Result<()> {
                    for index in indexes {
                        self.db
                            .write()
                            .execute(&q(index), "rebuilding the indexes a first load put off")
                            .await?;
                    }
                    Ok(())
                };
                futures::try_join!(build(first), build(second))?;
                // Until autovacuum gets to it (a minute later, measured), the planner takes the
                // 1.8 M rows just loaded for none and plans the run's last counts for a handful
                // of rows: the remediation plan's count read the table through a lossy bitmap
                // (4.7–5.2 s; 4.2–4.3 s with statistics, at 20,000 devices). ANALYZE takes 0.5 s.
                self.db
                    .write()
                    .execute(
                        &q("ANALYZE findings"),
                        "refreshing the planner's statistics",
                    )
                    .await?;
                Ok(())
            }
        }
    }

    async fn upsert_findings(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        findings: &[Finding],
    ) -> Result<UpsertCounts> {
        self.upsert_findings_assessed(integration_id, run_id, findings, None)
            .await
    }

    async fn upsert_findings_assessed(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        findings: &[Finding],
        assessor: Option<&dyn InsertAssessor>,
    ) -> Result<UpsertCounts> {
        let leave_unchanged = self.full_reads().contains(&integration_id);
        let guard = first_load_tally::BatchGuard::new(&self.tallies, integration_id);
        let written = match &self.db {
            Pool::Sqlite { write, .. } => {
                let first_load = match &self.engine {
                    Engine::Sqlite(file) if assessor.is_some() => file.first_load_writer(),
                    _ => None,
                };
                sqlite::bulk::upsert_findings(
                    write,
                    first_load.as_deref(),
                    integration_id,
                    run_id,
                    findings,
                    assessor,
                    leave_unchanged,
                )
                .await?
            }
            Pool::Postgres(pool) => {
                let first_load = self.first_loads().contains(&integration_id);
                postgres::bulk::upsert_findings(
                    pool,
                    integration_id,
                    run_id,
                    findings,
                    assessor,
                    (first_load, leave_unchanged),
                )
                .await?
            }
        };
        if !findings.is_empty() {
            first_load_tally::add_batch(
                &self.tallies,
                integration_id,
                run_id,
                written.started_at,
                written.inserted.as_deref(),
            );
        }
        guard.counted();
        if !written.unchanged.is_empty() {
            self.sightings()
                .entry(run_id)
                .or_default()
                .extend(written.unchanged);
        }
        Ok(written.counts)
    }

    async fn apply_finding_changes(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        changes: &[FindingChange],
    ) -> Result<DeltaCounts> {
        // A delta rewrites and fixes rows one by one: a first load's tally cannot follow.
        lock(&self.tallies).remove(&integration_id);
        let mut tx = self.db.begin().await?;
        let started_at = touch_run(&mut tx, integration_id, run_id).await?;
        let mut counts = DeltaCounts::default();
        for step in delta_steps(changes) {
            match step {
                DeltaStep::Upsert(batch) => {
                    counts.upserted += match &mut tx {
                        Tx::Sqlite(c) => {
                            sqlite::bulk::upsert_findings_in(c, integration_id, run_id, &batch)
                                .await?
                        }
                        Tx::Postgres(c) => {
                            postgres::bulk::upsert_findings_in(
                                c,
                                integration_id,
                                run_id,
                                &batch,
                                None,
                                (false, false),
                            )
                            .await?
                            .counts
                        }
                    };
                }
                DeltaStep::Fix(key, at) => {
                    let sql = q(FIX_FINDING)
                        .bind(integration_id)
                        .bind(clean(&key.asset_source_id))
                        .bind(clean(&key.software_vendor))
                        .bind(clean(&key.software_name))
                        .bind(clean(&key.software_version))
                        .bind(key.cve_id.as_str())
                        .bind(at)
                        .bind(started_at);
                    if tx.on().execute(&sql, "marking a finding fixed").await? > 0 {
                        counts.fixed += 1;
                    } else {
                        counts.ignored += 1;
                    }
                }
            }
        }
        tx.commit("committing delta changes").await?;
        Ok(counts)
    }

    async fn reconcile(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        policy: ReconcilePolicy,
    ) -> Result<ReconcileOutcome> {
        // The read is over: later batches of this integration (a delta's) are written in full.
        self.full_reads().remove(&integration_id);
        // Kept until the run ends (`finish_run`): reconciling again, or after a failed try,
        // must count the same rows as observed.
        let sighted = self.sightings().get(&run_id).cloned().unwrap_or_default();
        let mut tx = self.db.begin().await?;
        let started_at = touch_run(&mut tx, integration_id, run_id).await?;
        // Whether no open finding can be unseen by the run, known without reading them: then
        // only the findings of assets it concludes missing are fixed, listed from those assets
        // (the statement for every open finding read all of them: 0.30 s on SQLite, 0.41 s on
        // PostgreSQL at 1.8 M).
        let none_unseen = matches!(policy.scope, ReconcileScope::Everything)
            && if sighted.is_empty() {
                // A first load whose tally still stands: the integration had no finding when
                // it began, and every row written since was inserted new by this run (a batch
                // that was not drops the tally).
                first_load_tally::from_tally(&self.tallies, integration_id, run_id, |_| Some(()))
                    .is_some()
            } else {
                // A full read that found every open finding unchanged.
                let sql = q(COUNT_OPEN_FINDINGS).bind(integration_id);
                let open = tx.on().fetch_one(&sql, "counting open findings").await?;
                sighted.holds_all(open.int("n")?)
            };
        let listed = !sighted.is_empty() && !none_unseen;
        if listed {
            match &mut tx {
                Tx::Sqlite(c) => sqlite::bulk::list_unsighted(c, integration_id, &sighted).await?,
                Tx::Postgres(c) => {
                    postgres::bulk::list_unsighted(c, integration_id, &sighted).await?
                }
            }
        }
        let mut plan = reconcile_plan(&policy.scope, listed);
        if none_unseen {
            plan.findings = Stmt::fixed(RECONCILE_FINDINGS_OF_MISSING);
        }
        let count = with_texts(
            q(&plan.count.sql).bind(integration_id).bind(run_id),
            &plan.count.args,
        );
        let row = tx.on().fetch_one(&count, "counting unseen assets").await?;
        let active = as_u64(row.int("active")?);
        let unseen = as_u64(row.int("unseen")?);
        if breaker_trips(unseen, active, policy.max_missing_share) {
            // Dropping the transaction rolls back: nothing changes.
            return Ok(ReconcileOutcome::Held {
                would_mark_missing: unseen,
                active,
            });
        }
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
            let sql = q(&stmt.sql)
                .bind(integration_id)
                .bind(run_id)
                .bind(policy.now);
            changed[k] = tx.on().execute(&with_texts(sql, &stmt.args), op).await?;
        }
        if changed[1] > 0 {
            // Fixed rows are no longer open: a first load's tally no longer stands for them.
            lock(&self.tallies).remove(&integration_id);
        }
        if matches!(policy.scope, ReconcileScope::Everything) {
            // Every finding still open was observed by this run (see `observed_last`).
            let sql = q("UPDATE integrations SET findings_observed_at = $2 \
                 WHERE id = $1 AND (findings_observed_at IS NULL OR findings_observed_at < $2)")
            .bind(integration_id)
            .bind(started_at);
            tx.on().execute(&sql, "recording the full read").await?;
        }
        if listed {
            match &mut tx {
                Tx::Sqlite(c) => sqlite::bulk::forget_unsighted(c).await?,
                Tx::Postgres(c) => postgres::bulk::forget_unsighted(c).await?,
            }
        }
        tx.commit("committing reconciliation").await?;
        Ok(ReconcileOutcome::Applied {
            assets_missing: changed[0],
            findings_fixed: changed[1],
            recommendations_removed: changed[2],
        })
    }

    // ---- Defender for Cloud ----------------------------------------------------------------------

    async fn upsert_subscriptions(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        subscriptions: &[Subscription],
    ) -> Result<UpsertCounts> {
        let rows = subscription_rows(subscriptions);
        let mut tx = self.db.begin().await?;
        let observed = touch_run(&mut tx, integration_id, run_id).await?;
        let mut before = StoredSubscriptionFacts::new();
        let facts = q(SUBSCRIPTION_FACTS).bind(integration_id);
        for r in tx.on().fetch_all(&facts, "reading subscriptions").await? {
            before.insert(
                r.text("subscription_id")?,
                (r.opt_text("display_name")?, r.opt_text("state")?),
            );
        }
        for s in &rows {
            let sql = q(UPSERT_SUBSCRIPTION)
                .bind(integration_id)
                .bind(s.subscription_id.as_str())
                .bind(s.display_name.as_deref())
                .bind(s.state.as_deref())
                .bind(observed)
                .bind(run_id);
            tx.on().execute(&sql, "upserting subscriptions").await?;
        }
        tx.commit("committing subscriptions").await?;
        Ok(count_subscriptions(&before, &rows))
    }

    async fn record_subscription_read(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        subscription_id: &str,
        outcome: &SubscriptionReadOutcome,
    ) -> Result<()> {
        let sub = clean(subscription_id.trim()).to_ascii_lowercase();
        let detail = outcome.detail().map(clean);
        let op = "recording a subscription read";
        let mut tx = self.db.begin().await?;
        let at = touch_run(&mut tx, integration_id, run_id).await?;
        let read = q(RECORD_READ)
            .bind(run_id)
            .bind(integration_id)
            .bind(sub.as_str())
            .bind(outcome.as_str())
            .bind(detail.clone())
            .bind(at);
        tx.on().execute(&read, op).await?;
        let known = q(SUBSCRIPTION_FROM_READ)
            .bind(integration_id)
            .bind(sub.as_str())
            .bind(at);
        tx.on().execute(&known, op).await?;
        let last = q(SUBSCRIPTION_LAST_READ)
            .bind(integration_id)
            .bind(sub.as_str())
            .bind(run_id)
            .bind(outcome.as_str())
            .bind(detail)
            .bind(at);
        tx.on().execute(&last, op).await?;
        tx.commit("committing a subscription read").await
    }

    async fn list_subscriptions(
        &self,
        vis: &Visibility,
        integration: Option<IntegrationId>,
    ) -> Result<Vec<StoredSubscription>> {
        let sql = subscriptions_query(self.d, vis, integration);
        let (rows, names) = with_names(&self.db, &sql, "listing subscriptions").await?;
        rows.iter()
            .map(|r| decode_subscription(r, &names))
            .collect()
    }

    async fn subscription_reads(
        &self,
        vis: &Visibility,
        run_id: RunId,
    ) -> Result<Vec<(String, SubscriptionRead)>> {
        let mut sql = q(SUBSCRIPTION_READS).bind(run_id);
        if let Some(c) = vis.condition(self.d, &mut sql, "integration_id") {
            sql.text.push_str(&format!(
                " AND run_id IN (SELECT id FROM sync_runs WHERE {c})"
            ));
        }
        sql.text.push_str(" ORDER BY subscription_id");
        self.db
            .read()
            .all(&sql, "listing subscription reads", decode_subscription_read)
            .await
    }

    async fn record_posture(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        captured_at: DateTime<Utc>,
        scores: &[PostureScore],
        controls: &[ControlScore],
    ) -> Result<()> {
        let p = posture_rows(scores, controls);
        let mut tx = self.db.begin().await?;
        touch_run(&mut tx, integration_id, run_id).await?;
        for sub in &p.subscriptions {
            for sql in [DELETE_RUN_SCORES, DELETE_RUN_CONTROLS] {
                let sql = q(sql).bind(run_id).bind(sub.as_str());
                tx.on().execute(&sql, "replacing the run's posture").await?;
            }
        }
        for s in &p.scores {
            let sql = q(INSERT_SCORE)
                .bind(integration_id)
                .bind(run_id)
                .bind(s.subscription_id.as_str())
                .bind(s.subscription_name.as_deref())
                .bind(captured_at)
                .bind(finite(Some(s.current)))
                .bind(finite(Some(s.max)))
                .bind(finite(Some(s.fraction)))
                .bind(s.weight);
            tx.on().execute(&sql, "recording secure scores").await?;
        }
        for c in &p.controls {
            let sql = q(INSERT_CONTROL)
                .bind(integration_id)
                .bind(run_id)
                .bind(c.subscription_id.as_str())
                .bind(c.control_id.as_str())
                .bind(c.display_name.as_deref())
                .bind(captured_at)
                .bind(finite(c.current))
                .bind(finite(Some(c.max)))
                .bind(finite(c.fraction))
                .bind(c.healthy)
                .bind(c.unhealthy)
                .bind(c.not_applicable)
                .bind(c.weight);
            tx.on().execute(&sql, "recording control scores").await?;
        }
        tx.commit("committing posture").await
    }

    async fn latest_posture(
        &self,
        vis: &Visibility,
        integration: Option<IntegrationId>,
    ) -> Result<Vec<StoredPostureScore>> {
        self.posture_scores(
            latest_posture_query(self.d, vis, integration),
            "reading the latest posture",
        )
        .await
    }

    async fn posture_history(
        &self,
        vis: &Visibility,
        integration: Option<IntegrationId>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<PosturePoint>> {
        let sql = posture_history_query(self.d, vis, integration, since);
        let rows = self.posture_scores(sql, "reading posture history").await?;
        Ok(posture_points(rows))
    }

    async fn latest_controls(
        &self,
        vis: &Visibility,
        integration: Option<IntegrationId>,
        subscription: Option<&str>,
    ) -> Result<Vec<StoredControlScore>> {
        let sql = latest_controls_query(self.d, vis, integration, subscription);
        let op = "reading the latest control scores";
        let (rows, names) = with_names(&self.db, &sql, op).await?;
        rows.iter().map(|r| decode_control(r, &names)).collect()
    }

    async fn upsert_recommendations(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        recommendations: &[Recommendation],
    ) -> Result<UpsertCounts> {
        let rows = recommendation_rows(recommendations);
        let mut tx = self.db.begin().await?;
        let observed = touch_run(&mut tx, integration_id, run_id).await?;
        let counts = match &mut tx {
            Tx::Sqlite(c) => {
                sqlite::bulk::upsert_recommendations_in(c, integration_id, run_id, observed, &rows)
                    .await?
            }
            Tx::Postgres(c) => {
                postgres::bulk::upsert_recommendations_in(
                    c,
                    integration_id,
                    run_id,
                    observed,
                    &rows,
                )
                .await?
            }
        };
        tx.commit("committing recommendations").await?;
        Ok(counts)
    }

    async fn recommendations_page(
        &self,
        vis: &Visibility,
        filter: &RecommendationFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredRecommendation>> {
        let sql = recommendations_query(self.d, vis, filter, after, limit);
        let (rows, names) = with_names(&self.db, &sql, "listing recommendations").await?;
        let items = rows
            .iter()
            .map(|r| decode_recommendation(r, &names))
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |r| r.id))
    }

    async fn linked_assets(&self, vis: &Visibility, asset_id: i64) -> Result<Vec<StoredAsset>> {
        let mut tx = self.db.begin_read().await?;
        let mut exists = q("SELECT 1 FROM assets WHERE id = $1").bind(asset_id);
        vis.push_and(self.d, &mut exists, "integration_id");
        if tx
            .on()
            .fetch_optional(&exists, "reading an asset")
            .await?
            .is_none()
        {
            return Err(asset_not_found(asset_id));
        }
        let mut sql = q(LINKED_ASSETS).bind(asset_id);
        vis.push_and(self.d, &mut sql, "a.integration_id");
        sql.text.push_str(" ORDER BY a.id");
        let rows = tx
            .on()
            .fetch_all(&sql, "finding the same machine in other integrations")
            .await?;
        let names = integration_names(&mut tx, "finding linked assets").await?;
        rows.iter().map(|r| decode_asset(r, &names)).collect()
    }

    // ---- reads ---------------------------------------------------------------------------------

    async fn assets_page(
        &self,
        vis: &Visibility,
        filter: &AssetFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredAsset>> {
        let sql = assets_query(self.d, vis, filter, after, limit);
        let (rows, names) = with_names(&self.db, &sql, "listing assets").await?;
        let items = rows
            .iter()
            .map(|r| decode_asset(r, &names))
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |a| a.id))
    }

    async fn findings_page(
        &self,
        vis: &Visibility,
        filter: &FindingFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredFinding>> {
        let (items, more) = self
            .list_findings(vis, filter, Keyset::Id(after), limit)
            .await?;
        let next = if more {
            items.last().map(|f| f.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn findings_sorted(
        &self,
        vis: &Visibility,
        filter: &FindingFilter,
        order: FindingOrder,
        after: Option<FindingCursor>,
        limit: u32,
    ) -> Result<Page<StoredFinding, FindingCursor>> {
        let (items, more) = self
            .list_findings(vis, filter, Keyset::Priority(order, after), limit)
            .await?;
        let next = if more {
            items.last().map(FindingCursor::of)
        } else {
            None
        };
        Ok(Page { items, next })
    }
    async fn vulnerabilities_page(
        &self,
        vis: &Visibility,
        filter: &VulnerabilityFilter,
        after: Option<CveId>,
        limit: u32,
    ) -> Result<Page<StoredVulnerability, CveId>> {
        let sql = vulnerabilities_query(self.d, vis, filter, after.as_ref(), limit);
        let rows = self
            .db
            .read()
            .fetch_all(&sql, "listing vulnerabilities")
            .await?;
        let items = rows
            .iter()
            .map(decode_vulnerability)
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |v| v.vulnerability.cve_id.clone()))
    }

    async fn counts(&self, vis: &Visibility, integration: Option<IntegrationId>) -> Result<Counts> {
        let queries = [
            (
                "SELECT status, count(*) AS n FROM assets",
                " GROUP BY status",
                true,
            ),
            (
                "SELECT status, severity, count(*) AS n FROM findings",
                " GROUP BY status, severity",
                false,
            ),
        ];
        // One connection for every query: see `cloud_counts`.
        let mut tx = self.db.begin_read().await?;
        let mut counts = Counts::default();
        for (select, group, is_assets) in queries {
            let mut sql = q(select);
            if let Some(i) = integration {
                let pi = sql.arg(Arg::Int(i.get()));
                sql.and(&format!("integration_id = {pi}"));
            }
            vis.restrict(self.d, &mut sql, "integration_id");
            sql.text.push_str(group);
            for r in &tx
                .on()
                .fetch_all(&sql, "counting for the dashboard")
                .await?
            {
                tally(&mut counts, is_assets, r)?;
            }
        }
        cloud_counts(&mut tx, self.d, vis, integration, &mut counts).await?;
        Ok(counts)
    }

    async fn top_fixes(&self, vis: &Visibility, limit: u32) -> Result<Vec<TopFix>> {
        let mut sql = q("").bind(limit);
        let scope = vis.and_text(self.d, &mut sql, "integration_id");
        sql.text = top_fixes_sql(&scope);
        self.db
            .read()
            .all(&sql, "ranking recommended updates", decode_top_fix)
            .await
    }

    async fn riskiest_assets(&self, vis: &Visibility, limit: u32) -> Result<Vec<RiskyAsset>> {
        let mut sql = q("").bind(limit);
        let scope = vis.and_text(self.d, &mut sql, "f.integration_id");
        sql.text = riskiest_assets_sql(&scope);
        self.db
            .read()
            .all(&sql, "ranking assets", decode_risky_asset)
            .await
    }

    async fn assets_sorted(
        &self,
        vis: &Visibility,
        filter: &AssetFilter,
        sort: AssetSort,
        after: Option<&SortCursor>,
        limit: u32,
    ) -> Result<Page<ListedAsset, SortCursor>> {
        check_cursor(sort, after)?;
        let sql = assets_sorted_query(self.d, vis, filter, sort, after, limit);
        let (rows, names) = with_names(&self.db, &sql, "listing assets").await?;
        sorted_page(&rows, &names, sort, limit)
    }

    async fn summary(&self, vis: &Visibility, top: u32) -> Result<Summary> {
        let mut tx = self.db.begin_read().await?;
        let op = "reading the dashboard summary";
        let mut counts = Counts::default();
        let mut sql = q("");
        let scope = vis.where_text(self.d, &mut sql, "integration_id");
        sql.text = summary_counts_sql(&scope);
        for r in tx.on().fetch_all(&sql, op).await? {
            add_counts(&mut counts, &r)?;
        }
        let riskiest = tx
            .on()
            .fetch_all(&summary_riskiest(self.d, vis, top), op)
            .await?
            .iter()
            .map(decode_risky_asset)
            .collect::<Result<Vec<_>>>()?;
        let as_of = tx
            .on()
            .fetch_one(&last_finished(self.d, vis), op)
            .await?
            .opt_ts("t")?;
        // Subscriptions and recommendations number in the thousands, not millions: counted live.
        cloud_counts(&mut tx, self.d, vis, None, &mut counts).await?;
        Ok(Summary {
            counts,
            riskiest,
            as_of,
        })
    }

    // ---- jobs ----------------------------------------------------------------------------------

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
                Ok(run) => {
                    if let Engine::Sqlite(file) = &self.engine {
                        sqlite::reserve::keep(&file.path);
                    }
                    return Ok(run);
                }
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
        let op = "claiming a sync job";
        let now = truncate_micros(now);
        let stale = now - chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.db.begin().await?;
        if let Some(serialise) = self.d.serialise_claims {
            tx.on().execute(&q(serialise), op).await?;
        }
        let pick = q(&claim_candidate_sql(self.d.skip_locked))
            .bind(now)
            .bind(stale)
            .bind(only);
        let Some(candidate) = tx.on().fetch_optional(&pick, op).await? else {
            return Ok(None);
        };
        let id = candidate.int("id")?;
        let taken_over = match (
            candidate.text("state")?.as_str(),
            candidate.opt_text("claimed_by")?,
        ) {
            ("running", Some(previous)) => Some(previous),
            _ => None,
        };
        let take = q(TAKE_JOB).bind(id).bind(clean(worker)).bind(now);
        let job = decode_job(&tx.on().fetch_one(&take, op).await?)?;
        if let Some(previous) = taken_over {
            // The job's worker stopped renewing its lease: the run it started is abandoned, even
            // when it ran on another host (where this process cannot see whether it is gone).
            let close = close_run_of_worker(
                job.integration_id,
                &previous,
                now,
                &format!(
                    "abandoned: its worker ({}) sent no heartbeat for {} seconds; worker {} took the job over",
                    worker_process(&previous),
                    lease.as_secs(),
                    worker_process(worker)
                ),
            );
            tx.on()
                .execute(&close, "closing the run of a job taken over")
                .await?;
            tracing::warn!(
                message = "Took over a sync job whose worker stopped.",
                job = id,
                integration = %job.integration_id,
                previous_worker = %previous
            );
        }
        tx.commit(op).await?;
        Ok(Some(job))
    }

    fn hold_worker_slot(&self) -> Result<WorkerSlot> {
        match &self.engine {
            Engine::Sqlite(file) => WorkerSlot::exclusive(&file.path),
            Engine::Postgres { .. } => Ok(WorkerSlot::shared()),
        }
    }

    async fn release_job(
        &self,
        job_id: i64,
        worker: &str,
        now: DateTime<Utc>,
        due_at: DateTime<Utc>,
        why: &str,
    ) -> Result<Job> {
        let op = "handing a sync job back";
        let now = truncate_micros(now);
        let mut tx = self.db.begin().await?;
        let release = q(RELEASE_JOB)
            .bind(job_id)
            .bind(clean(worker))
            .bind(now)
            .bind(clean(why))
            .bind(truncate_micros(due_at));
        let job = tx
            .on()
            .fetch_optional(&release, op)
            .await?
            .map(|r| decode_job(&r))
            .transpose()?
            .ok_or_else(|| job_lost(job_id, worker))?;
        let close = close_run_of_worker(
            job.integration_id,
            worker,
            now,
            &format!("interrupted: {why}; the job went back to the queue"),
        );
        tx.on().execute(&close, op).await?;
        tx.commit(op).await?;
        Ok(job)
    }

    async fn close_runs_of_worker(
        &self,
        integration_id: IntegrationId,
        worker: &str,
        now: DateTime<Utc>,
        why: &str,
    ) -> Result<()> {
        let close = close_run_of_worker(integration_id, worker, now, why);
        self.db
            .write()
            .execute(&close, "closing the run of a lost job")
            .await?;
        Ok(())
    }

    async fn heartbeat_job(&self, job_id: i64, worker: &str, now: DateTime<Utc>) -> Result<()> {
        let sql = q(HEARTBEAT_JOB).bind(job_id).bind(clean(worker)).bind(now);
        if self
            .db
            .write()
            .execute(&sql, "recording a job's heartbeat")
            .await?
            == 0
        {
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
        let mut tx = self.db.begin().await?;
        let sql = q(FINISH_JOB)
            .bind(job_id)
            .bind(clean(worker))
            .bind(state.as_str())
            .bind(now)
            .bind(error.map(clean));
        let job = tx
            .on()
            .fetch_optional(&sql, op)
            .await?
            .map(|r| decode_job(&r))
            .transpose()?
            .ok_or_else(|| job_lost(job_id, worker))?;
        let prune = q(PRUNE_JOBS).bind(job.integration_id).bind(JOBS_KEPT);
        tx.on().execute(&prune, op).await?;
        tx.commit(op).await?;
        Ok(job)
    }

    async fn list_jobs(
        &self,
        vis: &Visibility,
        integration: Option<IntegrationId>,
        active_only: bool,
        limit: u32,
    ) -> Result<Vec<Job>> {
        let mut sql = q(LIST_JOBS).bind(integration).bind(active_only);
        vis.push_and(self.d, &mut sql, "integration_id");
        let pl = sql.arg(Arg::Int(i64::from(limit)));
        sql.text.push_str(&format!(" ORDER BY id DESC LIMIT {pl}"));
        self.db
            .read()
            .all(&sql, "listing sync jobs", decode_job)
            .await
    }

    // ---- audit log -------------------------------------------------------------------------------

    async fn create_exception(
        &self,
        vis: &Visibility,
        new: &NewException,
    ) -> Result<StoredException> {
        let op = "granting an exception";
        let mut tx = self.db.begin().await?;
        match new.integration {
            Some(i) => {
                let mut exists = q("SELECT 1 AS one FROM integrations WHERE id = $1").bind(i);
                vis.push_and(self.d, &mut exists, "id");
                if tx.on().fetch_optional(&exists, op).await?.is_none() {
                    return Err(integration_not_found(i));
                }
            }
            None if *vis != Visibility::All => {
                return Err(StoreError::InvalidInput(
                    "an exception for every integration reaches into every workspace, so only a \
                     global admin can grant one: pick the integration it is for"
                        .to_owned(),
                ));
            }
            None => {}
        }
        let (finding, cve, fix) = match &new.scope {
            ExceptionScope::Finding(id) => {
                let found =
                    q("SELECT 1 AS one FROM findings WHERE id = $1 AND integration_id = $2")
                        .bind(*id)
                        .bind(new.integration.map_or(-1, IntegrationId::get));
                if tx.on().fetch_optional(&found, op).await?.is_none() {
                    return Err(StoreError::NotFound(format!(
                        "there is no finding {id} in this integration: pick one from its findings list"
                    )));
                }
                (Some(*id), None, None)
            }
            ExceptionScope::Cve(c) => (None, Some(c.as_str().to_owned()), None),
            ExceptionScope::Fix(f) => (None, None, Some(clean(f).into_owned())),
        };
        let sql = q(&format!(
            "INSERT INTO exceptions (scope, integration_id, finding_id, cve_id, fix_key, reason, owner, \
             created_by, created_at, expires_at, ends_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
             RETURNING {EXCEPTION_COLUMNS}"
        ))
        .bind(new.scope.kind())
        .bind(new.integration)
        .bind(finding)
        .bind(cve)
        .bind(fix)
        .bind(clean(&new.reason))
        .bind(clean(&new.owner))
        .bind(clean(&new.created_by))
        .bind(new.created_at)
        .bind(new.expires_at);
        let stored = decode_exception(&tx.on().fetch_one(&sql, op).await?)?;
        let audit = audit_entry("exception.create", &new.created_by, new.created_at, &stored);
        insert_audit(&mut tx, &audit).await?;
        tx.commit(op).await?;
        Ok(stored)
    }

    async fn get_exception(&self, vis: &Visibility, id: i64) -> Result<StoredException> {
        let mut sql = q(&format!(
            "SELECT {EXCEPTION_COLUMNS} FROM exceptions WHERE id = $1"
        ))
        .bind(id);
        push_exception_visibility(self.d, vis, &mut sql, false);
        self.db
            .read()
            .maybe(&sql, "reading an exception", decode_exception)
            .await?
            .ok_or_else(|| exception_not_found(id))
    }

    async fn list_exceptions(
        &self,
        vis: &Visibility,
        filter: &ExceptionFilter,
        limit: u32,
    ) -> Result<Vec<StoredException>> {
        let mut sql = Sql::new(&format!("SELECT {EXCEPTION_COLUMNS} FROM exceptions"));
        sql.and("true");
        push_exception_visibility(self.d, vis, &mut sql, false);
        if let Some(i) = filter.integration {
            let pi = sql.arg(Arg::Int(i.get()));
            sql.and(&format!(
                "(integration_id IS NULL OR integration_id = {pi})"
            ));
        }
        if let Some(t) = filter.in_force_at {
            let pt = sql.arg(Arg::Time(t));
            sql.and(&format!("created_at <= {pt} AND ends_at > {pt}"));
        }
        let pl = sql.arg(Arg::Int(i64::from(limit.clamp(1, 10_000))));
        sql.text.push_str(&format!(" ORDER BY id DESC LIMIT {pl}"));
        self.db
            .read()
            .all(&sql, "listing exceptions", decode_exception)
            .await
    }

    async fn revoke_exception(
        &self,
        vis: &Visibility,
        id: i64,
        at: DateTime<Utc>,
        by: &str,
    ) -> Result<StoredException> {
        let op = "revoking an exception";
        let mut tx = self.db.begin().await?;
        let mut sql = q(
            "UPDATE exceptions SET revoked_at = $2, revoked_by = $3, ends_at = $2 \
             WHERE id = $1 AND ends_at > $2",
        )
        .bind(id)
        .bind(at)
        .bind(clean(by));
        push_exception_visibility(self.d, vis, &mut sql, true);
        sql.text
            .push_str(&format!(" RETURNING {EXCEPTION_COLUMNS}"));
        let Some(row) = tx.on().fetch_optional(&sql, op).await? else {
            let mut exists = q("SELECT 1 AS one FROM exceptions WHERE id = $1").bind(id);
            push_exception_visibility(self.d, vis, &mut exists, true);
            return Err(match tx.on().fetch_optional(&exists, op).await? {
                None => exception_not_found(id),
                Some(_) => StoreError::Conflict(format!(
                    "exception {id} has already ended: there is nothing to revoke"
                )),
            });
        };
        let stored = decode_exception(&row)?;
        insert_audit(&mut tx, &audit_entry("exception.revoke", by, at, &stored)).await?;
        tx.commit(op).await?;
        Ok(stored)
    }

    async fn sla_settings(&self) -> Result<SlaSettings> {
        crate::sla_sql::sla_settings(self).await
    }

    async fn set_sla_settings(
        &self,
        days: SlaDays,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<SlaSettings> {
        crate::sla_sql::set_sla_settings(self, days, by, at).await
    }

    async fn integration_sla(
        &self,
        vis: &Visibility,
        id: IntegrationId,
    ) -> Result<Option<IntegrationSla>> {
        crate::sla_sql::integration_sla(self, vis, id).await
    }

    async fn set_integration_sla(
        &self,
        vis: &Visibility,
        id: IntegrationId,
        days: Option<SlaDays>,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<IntegrationSla>> {
        crate::sla_sql::set_integration_sla(self, vis, id, days, by, at).await
    }

    async fn criticality_rules(&self) -> Result<Vec<StoredRule>> {
        crate::sla_sql::criticality_rules(self).await
    }

    async fn set_criticality_rules(
        &self,
        rules: &[CriticalityRule],
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<StoredRule>> {
        crate::sla_sql::set_criticality_rules(self, rules, by, at).await
    }

    async fn record_sla_snapshot(
        &self,
        integration: IntegrationId,
        run_id: RunId,
        at: DateTime<Utc>,
    ) -> Result<()> {
        crate::sla_sql::record_sla_snapshot(self, integration, run_id, at).await
    }

    async fn sla_snapshots(
        &self,
        vis: &Visibility,
        integration: Option<IntegrationId>,
        since: DateTime<Utc>,
    ) -> Result<Vec<SlaSnapshot>> {
        crate::sla_sql::sla_snapshots(self, vis, integration, since).await
    }

    async fn latest_sla_snapshots(&self, vis: &Visibility) -> Result<Vec<SlaSnapshot>> {
        crate::sla_sql::latest_sla_snapshots(self, vis).await
    }

    async fn fixed_for_sla(
        &self,
        vis: &Visibility,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<FixedGroup>> {
        crate::sla_sql::fixed_groups(self, vis, since, until).await
    }

    async fn record_expired_exceptions(
        &self,
        now: DateTime<Utc>,
        actor: &str,
    ) -> Result<Vec<StoredException>> {
        let op = "recording expired exceptions";
        let mut tx = self.db.begin().await?;
        let sql = q(&format!(
            "UPDATE exceptions SET expiry_audited = $2 WHERE ends_at <= $1 AND revoked_at IS NULL \
             AND expiry_audited = $3 RETURNING {EXCEPTION_COLUMNS}"
        ))
        .bind(now)
        .bind(true)
        .bind(false);
        let mut expired = tx.on().all(&sql, op, decode_exception).await?;
        expired.sort_by_key(|e| e.id);
        for e in &expired {
            let entry = audit_entry("exception.expire", actor, now, e);
            insert_audit(&mut tx, &entry).await?;
        }
        tx.commit(op).await?;
        Ok(expired)
    }

    async fn create_webhook(&self, vis: &Visibility, new: &NewWebhook) -> Result<StoredWebhook> {
        webhooks::create(&self.db, vis, new).await
    }

    async fn list_webhooks(&self, vis: &Visibility) -> Result<Vec<StoredWebhook>> {
        webhooks::list(&self.db, vis).await
    }

    async fn get_webhook(&self, vis: &Visibility, id: i64) -> Result<StoredWebhook> {
        webhooks::get(&self.db, vis, id).await
    }

    async fn webhook_secrets(&self, id: i64) -> Result<WebhookSecrets> {
        webhooks::secrets(&self.db, id).await
    }

    async fn set_webhook_enabled(
        &self,
        vis: &Visibility,
        id: i64,
        enabled: bool,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredWebhook> {
        webhooks::set_enabled(&self.db, vis, id, enabled, by, at).await
    }

    async fn delete_webhook(
        &self,
        vis: &Visibility,
        id: i64,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredWebhook> {
        webhooks::delete(&self.db, vis, id, by, at).await
    }

    async fn enqueue_webhook_event(
        &self,
        event: &NewWebhookEvent,
        to: Recipients,
    ) -> Result<Vec<i64>> {
        webhooks::enqueue(&self.db, event, to).await
    }

    async fn claim_webhook_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u32,
        only: Option<i64>,
    ) -> Result<Vec<ClaimedDelivery>> {
        webhooks::claim(&self.db, now, lease, limit, only).await
    }

    async fn record_webhook_attempt(&self, delivery: i64, outcome: &AttemptOutcome) -> Result<()> {
        webhooks::record_attempt(&self.db, delivery, outcome).await
    }

    async fn list_webhook_deliveries(
        &self,
        vis: &Visibility,
        webhook: i64,
        limit: u32,
    ) -> Result<Vec<StoredDelivery>> {
        webhooks::deliveries(&self.db, vis, webhook, limit).await
    }

    async fn mark_alerted(
        &self,
        kind: &str,
        subjects: &[String],
        at: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        webhooks::mark_alerted(&self.db, kind, subjects, at).await
    }

    async fn remediations_and_counts(
        &self,
        vis: &Visibility,
        filter: &RemediationFilter,
        sort: RemediationSort,
        now: DateTime<Utc>,
        offset: u32,
        limit: u32,
    ) -> Result<(Page<Remediation, u32>, UrgentCounts)> {
        fix_plan::read(&self.db, vis, filter, sort, now, offset, limit).await
    }

    async fn fix_plans_to_count(&self) -> Result<Vec<IntegrationId>> {
        let sql = q(fix_plan::TO_COUNT_SQL).bind(true);
        self.db
            .read()
            .all(&sql, "finding remediation plans to count", |r| {
                r.integration("id")
            })
            .await
    }

    async fn refresh_fix_plan(&self, integration: IntegrationId, at: DateTime<Utc>) -> Result<()> {
        self.count_fix_plan(integration, at, None).await
    }

    async fn record_audit(&self, e: &NewAuditEntry) -> Result<i64> {
        let sql = q("INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5) RETURNING id")
            .bind(e.at)
            .bind(clean(&e.actor))
            .bind(clean(&e.action))
            .bind(clean_opt(&e.target))
            .bind(clean_opt(&e.details));
        let row = self
            .db
            .write()
            .fetch_one(&sql, "recording an audit entry")
            .await?;
        row.int("id")
    }

    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        let sql = q("SELECT id, at, actor, action, target, details FROM audit_log ORDER BY id DESC LIMIT $1")
            .bind(limit);
        self.db
            .read()
            .all(&sql, "reading the audit log", decode_audit)
            .await
    }

    // ---- accounts --------------------------------------------------------------------------------

    async fn create_user(&self, new: &NewUser) -> Result<User> {
        let sql = q(concat!(
            "INSERT INTO users (name, role, password_hash, created_at, must_change_password) \
             VALUES ($1, $2, $3, $4, $5) RETURNING ",
            user_columns!()
        ))
        .bind(clean(&new.name))
        .bind(new.role.as_str())
        .bind(new.password_hash.as_str())
        .bind(new.created_at)
        .bind(new.must_change_password);
        let op = "creating an account";
        let mut tx = self.db.begin().await?;
        let user = match tx.on().fetch_one(&sql, op).await {
            Ok(row) => decode_user(&row)?,
            Err(e) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "an account named '{}' already exists: choose another name",
                    new.name.chars().take(60).collect::<String>()
                )));
            }
            Err(e) => return Err(e),
        };
        // A viewer starts as a viewer of the Default workspace, as viewers did before workspaces
        // existed (docs/workspaces.md); admins are global admins and need no membership.
        if new.role == Role::Viewer {
            let grant = q(
                "INSERT INTO memberships (user_id, workspace_id, role) VALUES ($1, $2, 'viewer')",
            )
            .bind(user.id)
            .bind(WorkspaceId::DEFAULT.0);
            tx.on().execute(&grant, op).await?;
        }
        tx.commit(op).await?;
        Ok(user)
    }

    async fn user_credentials(&self, name: &str) -> Result<Option<UserCredentials>> {
        let sql = q(concat!(
            "SELECT ",
            user_columns!(),
            ", password_hash FROM users WHERE lower(name) = lower($1)"
        ))
        .bind(clean(name));
        let row = self
            .db
            .read()
            .fetch_optional(&sql, "reading an account")
            .await?;
        row.map(|r| {
            Ok(UserCredentials {
                user: decode_user(&r)?,
                password_hash: r.text("password_hash")?,
            })
        })
        .transpose()
    }

    async fn get_user(&self, id: i64) -> Result<User> {
        let sql = q(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id);
        self.db
            .read()
            .fetch_optional(&sql, "reading an account")
            .await?
            .ok_or_else(|| no_account(id))
            .and_then(|r| decode_user(&r))
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let sql = q(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY lower(name)"
        ));
        self.db
            .read()
            .all(&sql, "listing accounts", decode_user)
            .await
    }

    async fn set_password(
        &self,
        id: i64,
        password_hash: &str,
        must_change: bool,
        at: DateTime<Utc>,
    ) -> Result<User> {
        let sql = q(concat!(
            "UPDATE users SET password_hash = $2, must_change_password = $3, password_changed_at = $4 \
             WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(id)
        .bind(password_hash)
        .bind(must_change)
        .bind(at);
        self.db
            .write()
            .fetch_optional(&sql, "changing a password")
            .await?
            .ok_or_else(|| no_account(id))
            .and_then(|r| decode_user(&r))
    }

    async fn delete_user(&self, id: i64) -> Result<()> {
        let op = "removing an account";
        // The admins are locked first (PostgreSQL; SQLite's write transaction holds its one write
        // lock): two removals of two admins at once run one after the other, and the second sees
        // that only one admin is left.
        let mut tx = self.db.begin().await?;
        let admins = q(&format!(
            "SELECT id FROM users WHERE role = 'admin'{}",
            self.d.for_update
        ));
        tx.on().fetch_all(&admins, op).await?;
        let sql = q(concat!(
            "DELETE FROM users WHERE id = $1 AND ",
            not_last_admin!()
        ))
        .bind(id);
        let done = tx.on().execute(&sql, op).await?;
        tx.commit(op).await?;
        if done == 1 {
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
        let op = "issuing a setup token";
        let expired = q("DELETE FROM setup_tokens WHERE expires_at <= $1").bind(now);
        self.db.write().execute(&expired, op).await?;
        let sql = q("INSERT INTO setup_tokens (token_hash, expires_at) VALUES ($1, $2)")
            .bind(token_hash)
            .bind(expires_at);
        self.db.write().execute(&sql, op).await?;
        Ok(())
    }

    async fn consume_setup_token(&self, token_hash: &str, now: DateTime<Utc>) -> Result<bool> {
        let op = "using a setup token";
        // The DELETE is the check: of two requests with the same token, only one deletes it.
        let sql = q("DELETE FROM setup_tokens WHERE token_hash = $1 AND expires_at > $2")
            .bind(token_hash)
            .bind(now);
        if self.db.write().execute(&sql, op).await? == 0 {
            return Ok(false);
        }
        // Setup is done: the tokens other starts printed are worthless too.
        self.db
            .write()
            .execute(&q("DELETE FROM setup_tokens"), op)
            .await?;
        Ok(true)
    }

    async fn save_session(&self, id: &str, data: &str, expires_at: DateTime<Utc>) -> Result<()> {
        let sql = q(
            "INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
        )
        .bind(id)
        .bind(data)
        .bind(expires_at);
        self.db.write().execute(&sql, "saving a session").await?;
        Ok(())
    }

    async fn load_session(&self, id: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        let sql = q("SELECT data FROM sessions WHERE id = $1 AND expires_at > $2")
            .bind(id)
            .bind(now);
        let row = self
            .db
            .read()
            .fetch_optional(&sql, "loading a session")
            .await?;
        row.map(|r| r.text("data")).transpose()
    }

    async fn delete_session(&self, id: &str) -> Result<()> {
        let sql = q("DELETE FROM sessions WHERE id = $1").bind(id);
        self.db.write().execute(&sql, "deleting a session").await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        let sql = q("DELETE FROM sessions WHERE expires_at <= $1").bind(now);
        self.db
            .write()
            .execute(&sql, "deleting expired sessions")
            .await
    }

    async fn create_api_token(&self, new: &NewApiToken) -> Result<ApiToken> {
        let sql = q(
            "INSERT INTO api_tokens (name, token_hash, scope, created_by, created_at, workspace_id) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, name, scope, created_by, created_at, workspace_id",
        )
        .bind(clean(&new.name))
        .bind(new.token_hash.as_str())
        .bind(new.scope.as_str())
        .bind(clean(&new.created_by))
        .bind(new.created_at)
        .bind(new.workspace.map(|w| w.0));
        match self
            .db
            .write()
            .fetch_one(&sql, "creating an API token")
            .await
        {
            Ok(row) => decode_api_token(&row),
            Err(e) if e.is_foreign_key_violation() => Err(workspace_not_found(
                new.workspace.unwrap_or(WorkspaceId::DEFAULT),
            )),
            Err(e) => Err(e),
        }
    }

    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let sql = q(
            "SELECT id, name, scope, created_by, created_at, workspace_id FROM api_tokens WHERE token_hash = $1",
        )
        .bind(token_hash);
        self.db
            .read()
            .maybe(&sql, "reading an API token", decode_api_token)
            .await
    }

    async fn list_api_tokens(&self) -> Result<Vec<ApiToken>> {
        let sql = q(
            "SELECT id, name, scope, created_by, created_at, workspace_id FROM api_tokens ORDER BY id DESC",
        );
        self.db
            .read()
            .all(&sql, "listing API tokens", decode_api_token)
            .await
    }

    async fn delete_api_token(&self, id: i64) -> Result<()> {
        let sql = q("DELETE FROM api_tokens WHERE id = $1").bind(id);
        if self
            .db
            .write()
            .execute(&sql, "deleting an API token")
            .await?
            == 0
        {
            return Err(StoreError::NotFound(format!(
                "there is no API token with id {id}"
            )));
        }
        Ok(())
    }
}

impl SqlStore {
    /// Whether `AssessScope::ChangedBy { run_id, since }` selects none of the integration's
    /// findings, known without reading them:
    /// - no open finding lacks an assessment (the `findings_unassessed` index, migration 0023);
    /// - the run changed no finding's content (`sync_runs.findings_changed`, counted with the
    ///   change, see [`count_changed_findings`]);
    /// - no asset of the integration changed in the run, and no catalogue entry after `since`.
    ///
    /// The read it saves goes over every open finding: 0.26 s of a 20,000-device re-read that
    /// changed nothing on SQLite, 0.38 s of the PostgreSQL server's time after a first load.
    async fn nothing_to_assess(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        since: DateTime<Utc>,
    ) -> Result<bool> {
        // SQLite's planner preferred findings_status (both lead with the integration), which
        // walks every open finding: 0.25 s at 1.8 M against 3 ms.
        let unassessed_index = match self.d.backend {
            Backend::Sqlite => " INDEXED BY findings_unassessed",
            Backend::Postgres => "",
        };
        let sql = q(&format!(
            "SELECT EXISTS (SELECT 1 FROM findings f{unassessed_index} WHERE f.integration_id = $1 AND f.status = 'open' AND f.decision IS NULL) \
             OR COALESCE((SELECT r.findings_changed FROM sync_runs r WHERE r.id = $2), 1) > 0 \
             OR EXISTS (SELECT 1 FROM assets a WHERE a.integration_id = $1 AND a.seen_run = $2 AND a.change_kind = 1) \
             OR EXISTS (SELECT 1 FROM vulnerabilities v WHERE v.updated_at > $3) AS changed",
        ))
        .bind(integration_id)
        .bind(run_id)
        .bind(since);
        let row = self
            .db
            .read()
            .fetch_one(&sql, "checking what the run left to prioritise")
            .await?;
        Ok(!row.flag("changed")?)
    }

    /// Catalogue rows, natively per engine; `on_conflict` decides what a known CVE keeps.
    async fn write_vulnerabilities(
        &self,
        vulns: &[Vulnerability],
        on_conflict: &str,
    ) -> Result<UpsertCounts> {
        match &self.db {
            Pool::Sqlite { write, .. } => {
                sqlite::bulk::write_vulnerabilities(write, vulns, on_conflict).await
            }
            Pool::Postgres(pool) => {
                postgres::bulk::write_vulnerabilities(pool, vulns, on_conflict).await
            }
        }
    }

    async fn posture_scores(&self, sql: Sql, op: &'static str) -> Result<Vec<StoredPostureScore>> {
        let (rows, names) = with_names(&self.db, &sql, op).await?;
        rows.iter()
            .map(|r| decode_posture_score(r, &names))
            .collect()
    }

    async fn enqueue_job_once(
        &self,
        integration_id: IntegrationId,
        kind: JobKind,
        run_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Enqueued> {
        let op = "queueing a sync job";
        let mut tx = self.db.begin().await?;
        let active = q(ACTIVE_JOB).bind(integration_id);
        let active = tx
            .on()
            .fetch_optional(&active, op)
            .await?
            .map(|r| decode_job(&r))
            .transpose()?;
        let out = match active {
            Some(job) if job.state == JobState::Running => Enqueued::Running(job),
            Some(job) => match queued_change(&job, kind, run_at) {
                None => Enqueued::AlreadyQueued(job),
                Some((kind, run_at)) => {
                    let sql = q(MOVE_JOB).bind(job.id).bind(kind.as_str()).bind(run_at);
                    Enqueued::Queued(decode_job(&tx.on().fetch_one(&sql, op).await?)?)
                }
            },
            None => {
                let sql = q(INSERT_JOB)
                    .bind(integration_id)
                    .bind(kind.as_str())
                    .bind(run_at)
                    .bind(now);
                match tx.on().fetch_one(&sql, op).await {
                    Ok(row) => Enqueued::Queued(decode_job(&row)?),
                    Err(e) if e.is_foreign_key_violation() => {
                        return Err(integration_not_found(integration_id));
                    }
                    Err(e) if e.is_unique_violation() => {
                        return Err(StoreError::Conflict(
                            "another process queued a job at the same moment".into(),
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        tx.commit(op).await?;
        Ok(out)
    }
}

impl SqlStore {
    /// A page of findings in `keyset`'s order, and whether more follow.
    async fn list_findings(
        &self,
        vis: &Visibility,
        filter: &FindingFilter,
        keyset: Keyset,
        limit: u32,
    ) -> Result<(Vec<StoredFinding>, bool)> {
        let op = "listing findings";

        let plan = match search_precheck(self.d, filter) {
            None => None,
            Some(check) => Some(decode_search_plan(
                &self.db.read().fetch_one(&check, op).await?,
            )?),
        };
        let untouched = match changes_precheck(filter) {
            None => false,
            Some(check) => !self.db.read().fetch_one(&check, op).await?.flag("any")?,
        };
        if untouched || plan.as_ref().is_some_and(|p| p.finds_nothing()) {
            return Ok((Vec::new(), false));
        }
        let sql = findings_query_planned(self.d, vis, filter, keyset, limit, plan.as_ref());
        let mut tx = self.db.begin_read().await?;
        let rows = tx.on().fetch_all(&sql, op).await?;
        let mut base = rows
            .iter()
            .map(decode_finding_row)
            .collect::<Result<Vec<_>>>()?;
        // The extra row only tells whether there is a next page.
        let more = base.len() > limit.clamp(1, 100_000) as usize;
        base.truncate(limit.clamp(1, 100_000) as usize);
        let mut refs = FindingRefs {
            integrations: integration_names(&mut tx, op).await?,
            ..Default::default()
        };
        let (asset_ids, software_ids, cve_ids) = FindingRefs::keys(&base);
        // The rows' assets, software and CVEs, each table read once by the keys the page holds.
        let lookups = [
            (
                "id, source_id, name",
                "assets",
                "id",
                crate::db::Arg::Ints(asset_ids),
            ),
            (
                "id, vendor, name, version",
                "software",
                "id",
                crate::db::Arg::Ints(software_ids),
            ),
            (
                "cve_id, severity, cvss, epss, public_exploit, exploit_verified, exploit_in_kit, published_on",
                "vulnerabilities",
                "cve_id",
                crate::db::Arg::Texts(cve_ids),
            ),
        ];
        for (columns, table, key, list) in lookups {
            let sql = q(&format!(
                "SELECT {columns} FROM {table} WHERE {}",
                self.d.in_list(key, "$1")
            ))
            .bind(list);
            for r in tx.on().fetch_all(&sql, op).await? {
                match table {
                    "assets" => refs.add_asset(&r)?,
                    "software" => refs.add_software(&r)?,
                    _ => refs.add_cve(&r)?,
                }
            }
        }
        if !base.is_empty() {
            let exceptions = q(&format!(
                "SELECT {EXCEPTION_COLUMNS} FROM exceptions ORDER BY id"
            ));
            refs.exceptions = tx.on().all(&exceptions, op, decode_exception).await?;
        }
        let items = base
            .into_iter()
            .map(|r| refs.assemble(r))
            .collect::<Result<Vec<_>>>()?;
        Ok((items, more))
    }
}

/// Records an audit entry inside a transaction (the change it records commits with it).
pub(crate) async fn insert_audit(tx: &mut crate::db::Tx, e: &NewAuditEntry) -> Result<()> {
    let sql =
        q("INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5)")
            .bind(e.at)
            .bind(clean(&e.actor))
            .bind(clean(&e.action))
            .bind(clean_opt(&e.target))
            .bind(clean_opt(&e.details));
    tx.on().execute(&sql, "recording an audit entry").await?;
    Ok(())
}

fn exception_not_found(id: i64) -> StoreError {
    StoreError::NotFound(format!(
        "there is no exception {id}: the exceptions page lists them"
    ))
}
