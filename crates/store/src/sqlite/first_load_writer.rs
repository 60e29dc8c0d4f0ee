//! SQLite's first-load writer: the batches of an integration's first load, written through
//! `rusqlite` on a connection of their own, by a thread of their own fed through a bounded
//! channel.
//!
//! Why not sqlx, as everywhere else: a first load is bound by SQLite's one writer, and sqlx's
//! SQLite driver costs that writer a third of its time. The same 1.82 M rows, the same 500-row
//! upsert statements and 5,000-row transactions took 6.4–7.0 s (6.3–6.8 CPU-s) through sqlx and
//! 4.5–4.7 s (4.7–4.8 CPU-s) through rusqlite's cached statements (BENCHMARKS.md, 2026-12-07
//! (sixth)): the difference is the driver's own work per statement and per value. Here the
//! values are bound by index straight from one packed batch, on the thread that runs the
//! statement.
//!
//! The statements are the bulk path's own (`super::bulk`), so the rows, counts and ids are the
//! ones the sqlx path would write; a first load whose writer is not open (or a batch without
//! assessments) simply goes through sqlx. Later reads and deltas stay on sqlx: they run inside
//! transactions that also mark, fix and reopen findings on the store's writer connection.
//!
//! The connection is opened when a first load begins (`begin_bulk_findings`) and closed when it
//! ends (`end_bulk_findings`). It waits for the store's writer connection as any second writer
//! does (SQLite's busy timeout), one transaction per batch.
//!
//! A thread of its own rather than tokio's blocking pool: one connection that no other task
//! touches writes the batches in the order they come, and the thread's end closes it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, named_params};
use tokio::sync::{mpsc, oneshot};

use rampart_model::{IntegrationId, RunId};

use super::bulk::{
    BatchDone, BatchIds, COUNT_CHANGED_FINDINGS, COUNT_NEW_FINDINGS, FINDING_SCRATCH,
    FINDINGS_PER_STATEMENT, FindingBatch, INSERT_BATCH_SOFTWARE, MARK_BATCH_ASSETS, MAX_FINDING_ID,
    REOPEN_CHANGED_FINDINGS, SELECT_BATCH_ASSETS, SELECT_BATCH_SOFTWARE, SELECT_CHANGED_FINDINGS,
    SET_RECOMMENDED_UPDATES, WRITER_CACHE_KIB, finding_row, finding_upsert_sql,
};
use super::{JOURNAL_SIZE_LIMIT, WAL_AUTOCHECKPOINT_PAGES};
use crate::common::{
    FastMap, check_run_for_write, clean_opt, finite, from_micros, micros, severity_code,
};
use crate::error::{Result, StoreError};
use crate::priority::StoredAssessment;
use crate::types::UpsertCounts;

/// The writer thread's queue. Batches are written in turn (the pipe writes two at once: one is
/// packed while the other is written). Dropping it ends the thread, which closes the connection.
pub(crate) struct FirstLoadWriter {
    jobs: mpsc::Sender<(Job, oneshot::Sender<Result<BatchDone>>)>,
    /// Batches written, counted for the store's whole life (tests check the writer was used).
    written: Arc<AtomicU64>,
    /// Buffers of written batches, emptied, for the next ones to be packed into.
    spare: Spare,
}

impl std::fmt::Debug for FirstLoadWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstLoadWriter")
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// A packed batch's buffers (rows, texts), emptied. Reused rather than freed: the allocator would
/// return a freed buffer to the OS within milliseconds, and the next batch would fault it in
/// again, page by page (see `crate::pipeline::Batch` in rampart-sync).
type Spare = Arc<Mutex<Vec<(Vec<PackedRow>, String)>>>;

/// Buffers kept for reuse: one per batch that can be queued or written at once.
const SPARE_BUFFERS: usize = QUEUED_BATCHES + 1;

/// Batches waiting for the writer thread: the pipe has at most two writes in flight.
const QUEUED_BATCHES: usize = 2;

impl FirstLoadWriter {
    /// Opens a writer connection to the store's database file, set up as the store's own writer
    /// is (`super::SqlStore::open`).
    pub(crate) async fn open(path: &Path, written: Arc<AtomicU64>) -> Result<Self> {
        let shown = path.display().to_string();
        let path = path.to_owned();
        let (jobs, mut queue) =
            mpsc::channel::<(Job, oneshot::Sender<Result<BatchDone>>)>(QUEUED_BATCHES);
        let (ready, started) = oneshot::channel();
        let spare: Spare = Arc::new(Mutex::new(Vec::with_capacity(SPARE_BUFFERS)));
        let returned = Arc::clone(&spare);
        std::thread::Builder::new()
            .name("rampart-first-load".to_owned())
            .spawn(move || {
                let mut conn = match connect(&path) {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                if ready.send(Ok(())).is_err() {
                    return;
                }
                while let Some((job, reply)) = queue.blocking_recv() {
                    // The caller may have given up waiting (its sync was cancelled): the batch
                    // is committed or rolled back all the same.
                    let _ = reply.send(job.write(&mut conn));
                    job.give_back(&returned);
                }
            })
            .map_err(|e| StoreError::Open {
                path: shown.clone(),
                reason: format!("cannot start the first-load writer's thread: {e}"),
            })?;
        started.await.map_err(|_| StoreError::Open {
            path: shown,
            reason: "the first-load writer's thread stopped as it started".to_owned(),
        })??;
        Ok(Self {
            jobs,
            written,
            spare,
        })
    }

    /// Upserts a batch of a first load in one transaction of its own: what
    /// `super::bulk::upsert_findings` does through sqlx.
    pub(super) async fn write(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        batch: &FindingBatch<'_>,
    ) -> Result<BatchDone> {
        let stopped = || {
            StoreError::InvalidInput(
                "the first-load writer's thread stopped (see the log for its panic); the batch \
                 was not written. Run the sync again"
                    .to_owned(),
            )
        };
        let buffers = self
            .spare
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        let job = Job::pack(integration_id, run_id, batch, buffers);
        let (reply, done) = oneshot::channel();
        self.jobs.send((job, reply)).await.map_err(|_| stopped())?;
        let done = done.await.map_err(|_| stopped())??;
        self.written.fetch_add(1, Ordering::Relaxed);
        Ok(done)
    }
}

/// Opens and sets up the writer's connection.
fn connect(path: &Path) -> Result<Connection> {
    let op = "opening the first-load writer";
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(StoreError::sqlite(op))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(StoreError::sqlite(op))?;
    let pragmas = format!(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = {}; \
         PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}; \
         PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT};",
        -WRITER_CACHE_KIB,
    );
    conn.execute_batch(&pragmas)
        .map_err(StoreError::sqlite(op))?;
    // The store's file is in WAL mode (the store set it when it opened the file); a writer in
    // another journal mode would take readers' locks.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(StoreError::sqlite(op))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::InvalidInput(format!(
            "the database file is in journal mode '{mode}', not WAL; open it with Rampart first"
        )));
    }
    for sql in FINDING_SCRATCH {
        conn.execute_batch(sql).map_err(StoreError::sqlite(op))?;
    }
    // The upsert of a full chunk and of the batch's last, shorter one, and the batch's other
    // statements.
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// A batch as the writer thread binds it: every value owned, the texts in one buffer.
struct Job {
    integration_id: IntegrationId,
    run_id: RunId,
    assets: Vec<String>,
    software: Vec<[String; 3]>,
    assets_json: String,
    software_json: String,
    rows: Vec<PackedRow>,
    texts: String,
}

/// A place in `Job::texts`.
#[derive(Clone, Copy)]
struct Text(usize, usize);

/// One finding's values, in the order the upsert binds them (`finding_row`).
struct PackedRow {
    places: (usize, usize),
    cve_id: Text,
    severity: Option<i64>,
    cvss: Option<f64>,
    exploitability: Option<Text>,
    recommended_update: Option<Text>,
    recommendation_reference: Option<Text>,
    first_seen: Option<i64>,
    last_seen: Option<i64>,
    content_hash: i64,
    assessment: Option<StoredAssessment>,
}

impl Job {
    /// Packs `batch` into `buffers` (empty; spare ones, or new).
    fn pack(
        integration_id: IntegrationId,
        run_id: RunId,
        batch: &FindingBatch<'_>,
        (mut rows, mut texts): (Vec<PackedRow>, String),
    ) -> Self {
        texts.reserve(batch.rows.len() * 96);
        let mut put = |s: &str| {
            let start = texts.len();
            texts.push_str(s);
            Text(start, texts.len())
        };
        rows.extend(batch.rows.iter().enumerate().map(|(k, f)| {
            PackedRow {
                places: batch
                    .places
                    .get(k)
                    .copied()
                    .unwrap_or((usize::MAX, usize::MAX)),
                cve_id: put(f.key.cve_id.as_str()),
                severity: f.severity.map(severity_code),
                cvss: finite(f.cvss),
                exploitability: clean_opt(&f.exploitability).map(|t| put(&t)),
                recommended_update: clean_opt(&f.recommended_update).map(|t| put(&t)),
                recommendation_reference: clean_opt(&f.recommendation_reference).map(|t| put(&t)),
                first_seen: f.first_seen.map(micros),
                last_seen: f.last_seen.map(micros),
                content_hash: batch.hashes.get(k).copied().unwrap_or_default(),
                assessment: batch.assessments.get(k).copied().flatten(),
            }
        }));
        Self {
            integration_id,
            run_id,
            assets: batch.assets.clone(),
            software: batch.software.clone(),
            assets_json: batch.assets_json.clone(),
            software_json: batch.software_json.clone(),
            rows,
            texts,
        }
    }

    /// Empties the job's buffers into `spare`, for a later batch.
    fn give_back(self, spare: &Spare) {
        let (mut rows, mut texts) = (self.rows, self.texts);
        rows.clear();
        texts.clear();
        if let Ok(mut spare) = spare.lock()
            && spare.len() < SPARE_BUFFERS
        {
            spare.push((rows, texts));
        }
    }

    fn text(&self, t: Text) -> &str {
        self.texts.get(t.0..t.1).unwrap_or_default()
    }

    /// Writes the batch in one `BEGIN IMMEDIATE` transaction.
    fn write(&self, conn: &mut Connection) -> Result<BatchDone> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting a write transaction"))?;
        let started_at = self.touch_run(&tx)?;
        let mut counts = UpsertCounts::default();
        if self.rows.is_empty() {
            tx.commit()
                .map_err(StoreError::sqlite("committing findings"))?;
            return Ok(BatchDone {
                counts,
                unchanged: Vec::new(),
                ids: None,
                started_at,
            });
        }
        let observed = micros(started_at);
        let ids = self.resolve_ids(&tx, observed)?;

        let op = "upserting findings";
        tx.execute("DELETE FROM finding_changes", [])
            .map_err(StoreError::sqlite(op))?;
        let max_before: i64 = tx
            .query_row(MAX_FINDING_ID, [], |r| r.get(0))
            .map_err(StoreError::sqlite(op))?;
        let row = finding_row(self.integration_id, self.run_id, observed, true);
        for chunk in self.rows.chunks(FINDINGS_PER_STATEMENT) {
            let mut statement = tx
                .prepare_cached(&finding_upsert_sql(true, &row, chunk.len()))
                .map_err(StoreError::sqlite(op))?;
            let mut at = 0;
            for r in chunk {
                let (asset_id, software_id) = ids.of(r.places)?;
                let assessed = r.assessment;
                let values: [&dyn rusqlite::ToSql; 17] = [
                    &asset_id,
                    &software_id,
                    &self.text(r.cve_id),
                    &r.severity,
                    &r.cvss,
                    &r.exploitability.map(|t| self.text(t)),
                    &r.recommended_update.map(|t| self.text(t)),
                    &r.recommendation_reference.map(|t| self.text(t)),
                    &r.first_seen,
                    &r.last_seen,
                    &r.content_hash,
                    &assessed.map(|a| a.decision.as_str()),
                    &assessed.map(|a| f64::from(a.priority)),
                    &assessed.map(|a| micros(a.due_at)),
                    &assessed.map(|a| micros(a.clock_start)),
                    &assessed.map(|a| a.explanation_id),
                    &assessed.map(|_| observed),
                ];
                for v in values {
                    at += 1;
                    statement
                        .raw_bind_parameter(at, v)
                        .map_err(StoreError::sqlite(op))?;
                }
            }
            statement.raw_execute().map_err(StoreError::sqlite(op))?;
        }

        let new: i64 = tx
            .query_row(COUNT_NEW_FINDINGS, [max_before], |r| r.get(0))
            .map_err(StoreError::sqlite("counting new findings"))?;
        counts.add_kind(0, u64::try_from(new).unwrap_or_default());
        {
            let op = "counting changed findings";
            let mut changed = tx
                .prepare_cached(COUNT_CHANGED_FINDINGS)
                .map_err(StoreError::sqlite(op))?;
            let kinds = changed
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .map_err(StoreError::sqlite(op))?;
            for kind in kinds {
                let (kind, n) = kind.map_err(StoreError::sqlite(op))?;
                counts.add_kind(kind, u64::try_from(n).unwrap_or_default());
            }
        }
        if counts.updated + counts.reopened > 0 {
            self.set_recommended_updates(&tx, &ids)?;
        }
        if counts.reopened > 0 {
            tx.execute(REOPEN_CHANGED_FINDINGS, [])
                .map_err(StoreError::sqlite("reopening findings"))?;
        }
        tx.execute("DELETE FROM finding_changes", [])
            .map_err(StoreError::sqlite(op))?;
        tx.commit()
            .map_err(StoreError::sqlite("committing findings"))?;
        counts.unchanged =
            (self.rows.len() as u64).saturating_sub(counts.new + counts.updated + counts.reopened);
        Ok(BatchDone {
            counts,
            unchanged: Vec::new(),
            ids: Some(ids),
            started_at,
        })
    }

    /// Checks the run and records a sign of life (`crate::sql_store::check_run` and
    /// `heartbeat`); returns the run's start as stored.
    fn touch_run(&self, conn: &Connection) -> Result<DateTime<Utc>> {
        let op = "checking the sync run";
        let row = conn
            .query_row(
                "SELECT integration_id, status, started_at FROM sync_runs WHERE id = ?1",
                [self.run_id.get()],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(StoreError::sqlite(op))?;
        let row = match row {
            None => None,
            Some((owner, status, started)) => {
                Some((IntegrationId(owner), status, from_micros(started)?))
            }
        };
        let started_at = check_run_for_write(self.run_id, self.integration_id, row)?;
        conn.execute(
            "UPDATE sync_runs SET heartbeat_at = ?2 WHERE id = ?1",
            [self.run_id.get(), micros(Utc::now())],
        )
        .map_err(StoreError::sqlite("recording the run's heartbeat"))?;
        Ok(started_at)
    }

    /// `super::bulk::resolve_ids` on this connection.
    fn resolve_ids(&self, conn: &Connection, observed: i64) -> Result<BatchIds> {
        for (sql, op) in MARK_BATCH_ASSETS {
            conn.prepare_cached(sql)
                .and_then(|mut s| {
                    s.execute(named_params! {
                        "$1": self.integration_id.get(),
                        "$2": observed,
                        "$3": self.run_id.get(),
                        "$4": self.assets_json,
                    })
                })
                .map_err(StoreError::sqlite(op))?;
        }
        let op = "looking up the findings' assets";
        let mut asset_ids =
            FastMap::with_capacity_and_hasher(self.assets.len(), Default::default());
        {
            let mut select = conn
                .prepare_cached(SELECT_BATCH_ASSETS)
                .map_err(StoreError::sqlite(op))?;
            let rows = select
                .query_map(
                    named_params! { "$1": self.integration_id.get(), "$2": self.assets_json },
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .map_err(StoreError::sqlite(op))?;
            for row in rows {
                let (id, source_id) = row.map_err(StoreError::sqlite(op))?;
                asset_ids.insert(source_id, id);
            }
        }
        conn.prepare_cached(INSERT_BATCH_SOFTWARE)
            .and_then(|mut s| s.execute(named_params! { "$1": self.software_json }))
            .map_err(StoreError::sqlite("recording software"))?;
        let op = "looking up software";
        let mut software_ids: FastMap<[String; 3], i64> =
            FastMap::with_capacity_and_hasher(self.software.len(), Default::default());
        {
            let mut select = conn
                .prepare_cached(SELECT_BATCH_SOFTWARE)
                .map_err(StoreError::sqlite(op))?;
            let rows = select
                .query_map(named_params! { "$1": self.software_json }, |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        [r.get(1)?, r.get(2)?, r.get::<_, String>(3)?],
                    ))
                })
                .map_err(StoreError::sqlite(op))?;
            for row in rows {
                let (id, key) = row.map_err(StoreError::sqlite(op))?;
                software_ids.insert(key, id);
            }
        }
        BatchIds::in_order(&self.assets, &asset_ids, &self.software, &software_ids)
    }

    /// `super::bulk::set_recommended_updates` on this connection: a first load meets a row
    /// again only when Microsoft's pages repeat it.
    fn set_recommended_updates(&self, conn: &Connection, ids: &BatchIds) -> Result<()> {
        let op = "updating recommended updates";
        let mut changed_ids: FastMap<(i64, i64, String), i64> = FastMap::default();
        {
            let mut select = conn
                .prepare_cached(SELECT_CHANGED_FINDINGS)
                .map_err(StoreError::sqlite(op))?;
            let rows = select
                .query_map([], |r| {
                    Ok((
                        (r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get(3)?),
                        r.get::<_, i64>(0)?,
                    ))
                })
                .map_err(StoreError::sqlite(op))?;
            for row in rows {
                let (key, id) = row.map_err(StoreError::sqlite(op))?;
                changed_ids.insert(key, id);
            }
        }
        let mut updates: Vec<(i64, Option<&str>)> = Vec::with_capacity(changed_ids.len());
        for r in &self.rows {
            let (asset, software) = ids.of(r.places)?;
            let key = (asset, software, self.text(r.cve_id).to_owned());
            if let Some(&id) = changed_ids.get(&key) {
                updates.push((id, r.recommended_update.map(|t| self.text(t))));
            }
        }
        let json = serde_json::to_string(&updates).map_err(|e| {
            StoreError::InvalidInput(format!("cannot encode recommended updates: {e}"))
        })?;
        conn.execute(SET_RECOMMENDED_UPDATES, named_params! { "$1": json })
            .map_err(StoreError::sqlite(op))?;
        Ok(())
    }
}
