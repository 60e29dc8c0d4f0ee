//! The job table: one queued or running sync per integration, claimed by one worker at a time,
//! surviving restarts: a small job table (SKIP LOCKED on PostgreSQL) instead of a job framework.
//!
//! - [`crate::Store::enqueue_job`] asks for a sync at a time; the database keeps at most one active
//!   (queued or running) job per integration, so "Sync now" twice, or two processes scheduling
//!   the same integration, make one job.
//! - [`crate::Store::claim_job`] takes the oldest due job. Claims are serialised (an advisory
//!   lock on PostgreSQL, the single writer on SQLite), so that the rule "one running job per app
//!   registration" holds across any number of workers; `FOR UPDATE SKIP LOCKED` keeps a claim
//!   from waiting on a job another transaction holds. A running job whose worker stopped sending
//!   heartbeats for the lease is due again: a worker that died does not block its integration,
//!   and the run it left is closed by the claim that takes over, wherever the worker ran.
//! - [`crate::Store::release_job`] hands a job back (a worker stopping on SIGTERM).
//! - [`crate::Store::heartbeat_job`] and [`crate::Store::finish_job`] only touch a job the caller
//!   still holds: a worker whose job was taken over learns it (`Conflict`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use rampart_model::IntegrationId;

use crate::common::{RowExt, as_u64, clean};
use crate::db::{Sql, q};
use crate::error::{Result, StoreError};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its time (`run_at`) and a worker.
    Queued,
    /// Claimed by a worker, which sends heartbeats while it works.
    Running,
    Done,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Done,
            JobState::Failed,
        ]
        .into_iter()
        .find(|j| j.as_str() == s)
    }
}

/// Why a job exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// The integration's schedule came due.
    Scheduled,
    /// A person (or an API client) asked for a sync now.
    Requested,
    /// The prioritisation settings changed (SLA days, criticality rules): the integration's open
    /// findings are assessed again with them, without reading Microsoft's APIs.
    Reassess,
}

impl JobKind {
    /// The value of the `kind` column (`sync` is the schema's default: a scheduled sync).
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Scheduled => "sync",
            JobKind::Requested => "sync-now",
            JobKind::Reassess => "reassess",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sync" => Some(JobKind::Scheduled),
            "sync-now" => Some(JobKind::Requested),
            "reassess" => Some(JobKind::Reassess),
            _ => None,
        }
    }
}

/// A sync job of one integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub integration_id: IntegrationId,
    pub kind: JobKind,
    pub state: JobState,
    /// When it is due.
    pub run_at: DateTime<Utc>,
    /// The worker holding it (running), or that last held it.
    pub claimed_by: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    /// The worker's last sign of life; for a finished job, when it finished.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// Claims so far (more than one: a worker died and another took it over).
    pub attempts: u64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Job {
    /// Queued or running: the integration's one active job.
    pub fn is_active(&self) -> bool {
        matches!(self.state, JobState::Queued | JobState::Running)
    }
}

/// What [`crate::Store::enqueue_job`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A job is queued for the time asked: a new one, or the queued one brought forward.
    Queued(Job),
    /// A job was already queued at or before the time asked; it is unchanged.
    AlreadyQueued(Job),
    /// A job of the integration is running; nothing was queued.
    Running(Job),
}

impl Enqueued {
    pub fn job(&self) -> &Job {
        match self {
            Enqueued::Queued(j) | Enqueued::AlreadyQueued(j) | Enqueued::Running(j) => j,
        }
    }
}

/// How long a running job may go without a heartbeat before another worker may take it over.
pub const JOB_LEASE: Duration = Duration::from_secs(120);

/// Done and failed jobs kept per integration (older ones are removed as jobs finish).
pub(crate) const JOBS_KEPT: i64 = 20;

macro_rules! job_columns {
    () => {
        "id, integration_id, kind, state, run_at, claimed_by, claimed_at, heartbeat_at, attempts, last_error, created_at"
    };
}

pub(crate) fn decode_job(r: &impl RowExt) -> Result<Job> {
    let kind = r.text("kind")?;
    let state = r.text("state")?;
    Ok(Job {
        id: r.int("id")?,
        integration_id: r.integration("integration_id")?,
        kind: JobKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("job kind '{kind}'")))?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("job state '{state}'")))?,
        run_at: r.ts("run_at")?,
        claimed_by: r.opt_text("claimed_by")?,
        claimed_at: r.opt_ts("claimed_at")?,
        heartbeat_at: r.opt_ts("heartbeat_at")?,
        attempts: as_u64(r.int("attempts")?),
        last_error: r.opt_text("last_error")?,
        created_at: r.ts("created_at")?,
    })
}

/// The active job of an integration. $1 integration.
pub(crate) const ACTIVE_JOB: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE integration_id = $1 AND state IN ('queued', 'running')"
);

/// $1 integration, $2 kind, $3 run_at, $4 now.
pub(crate) const INSERT_JOB: &str = concat!(
    "INSERT INTO jobs (integration_id, kind, state, run_at, created_at) VALUES ($1, $2, 'queued', $3, $4) RETURNING ",
    job_columns!()
);

/// Brings a queued job forward. $1 job, $2 kind, $3 run_at.
pub(crate) const MOVE_JOB: &str = concat!(
    "UPDATE jobs SET run_at = $3, kind = $2 WHERE id = $1 AND state = 'queued' RETURNING ",
    job_columns!()
);

/// The oldest due job: queued and due, or running without a heartbeat since the lease began.
/// A scheduled job of a disabled integration waits. So does a job whose app registration
/// (product, tenant and client) is busy with another integration's running job: Microsoft's
/// rate limits are per application and tenant, so two workers never call with one app at once.
/// A re-assessment calls no API: it runs for a disabled integration too, and neither waits for
/// nor holds its app registration.
/// $1 now, $2 lease start, $3 only this integration (or NULL). `{lock}` is
/// `FOR UPDATE SKIP LOCKED` on PostgreSQL.
pub(crate) fn claim_candidate_sql(lock: &str) -> String {
    format!(
        "SELECT j.id, j.state, j.claimed_by FROM jobs j WHERE \
         ((j.state = 'queued' AND j.run_at <= $1) OR (j.state = 'running' AND j.heartbeat_at < $2)) \
         AND ($3 IS NULL OR j.integration_id = $3) \
         AND EXISTS (SELECT 1 FROM integrations i WHERE i.id = j.integration_id \
             AND (j.kind IN ('sync-now', 'reassess') OR i.enabled) \
             AND (j.kind = 'reassess' OR NOT EXISTS (SELECT 1 FROM jobs r JOIN integrations ri ON ri.id = r.integration_id \
                 WHERE r.state = 'running' AND r.heartbeat_at >= $2 AND r.id <> j.id AND r.kind <> 'reassess' \
                 AND ri.product = i.product AND lower(ri.tenant_id) = lower(i.tenant_id) \
                 AND lower(ri.client_id) = lower(i.client_id)))) \
         ORDER BY j.run_at, j.id LIMIT 1{lock}"
    )
}

/// Takes a job picked by [`claim_candidate_sql`]. $1 job, $2 worker, $3 now.
pub(crate) const TAKE_JOB: &str = concat!(
    "UPDATE jobs SET state = 'running', claimed_by = $2, claimed_at = $3, heartbeat_at = $3, \
     attempts = attempts + 1, last_error = NULL WHERE id = $1 RETURNING ",
    job_columns!()
);

/// Hands a held job back to the queue. $1 job, $2 worker, $3 now, $4 why, $5 due at.
pub(crate) const RELEASE_JOB: &str = concat!(
    "UPDATE jobs SET state = 'queued', run_at = $5, heartbeat_at = $3, last_error = $4 \
     WHERE id = $1 AND claimed_by = $2 AND state = 'running' RETURNING ",
    job_columns!()
);

/// Closes, as failed with `why`, the integration's running run started by `worker`'s process:
/// its job was taken over, handed back, or lost.
pub(crate) fn close_run_of_worker(
    integration_id: IntegrationId,
    worker: &str,
    now: DateTime<Utc>,
    why: &str,
) -> Sql {
    q(
        "UPDATE sync_runs SET status = 'failed', finished_at = $3, error = $4 \
       WHERE integration_id = $1 AND status = 'running' AND owner = $2",
    )
    .bind(integration_id)
    .bind(worker_process(worker).to_owned())
    .bind(crate::common::truncate_micros(now))
    .bind(clean(why).into_owned())
}

/// The process part of a worker name (`RunOwner` + `:` + a random suffix): the owner recorded on
/// the runs that worker started.
pub(crate) fn worker_process(worker: &str) -> &str {
    worker
        .rsplit_once(':')
        .map_or(worker, |(process, _)| process)
}

/// $1 job, $2 worker, $3 now.
pub(crate) const HEARTBEAT_JOB: &str =
    "UPDATE jobs SET heartbeat_at = $3 WHERE id = $1 AND claimed_by = $2 AND state = 'running'";

/// $1 job, $2 worker, $3 state, $4 now, $5 error.
pub(crate) const FINISH_JOB: &str = concat!(
    "UPDATE jobs SET state = $3, heartbeat_at = $4, last_error = $5 WHERE id = $1 AND claimed_by = $2 AND state = 'running' RETURNING ",
    job_columns!()
);

/// Keeps the newest [`JOBS_KEPT`] finished jobs of an integration. $1 integration, $2 how many.
pub(crate) const PRUNE_JOBS: &str = "DELETE FROM jobs WHERE integration_id = $1 AND state IN ('done', 'failed') \
     AND id NOT IN (SELECT id FROM jobs WHERE integration_id = $1 AND state IN ('done', 'failed') ORDER BY id DESC LIMIT $2)";

/// $1 integration (or NULL), $2 active only; a visibility's condition, the order and the limit
/// follow.
pub(crate) const LIST_JOBS: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE ($1 IS NULL OR integration_id = $1) AND ($2 = FALSE OR state IN ('queued', 'running'))"
);

pub(crate) fn job_lost(id: i64, worker: &str) -> StoreError {
    StoreError::Conflict(format!(
        "job {id} is no longer held by worker {worker}: it finished, or another worker took it over after {} seconds without a heartbeat",
        JOB_LEASE.as_secs()
    ))
}

/// How a queued job changes when a sync of `kind` is asked for at `run_at`: it is brought
/// forward, and a person's request wins over the schedule (a requested job runs even when the
/// integration's schedule is off). `None`: it stays as it is.
///
/// A sync assesses with the current settings, so it stands for a re-assessment too: a sync asked
/// for replaces a queued re-assessment (due at the earlier time), and a re-assessment asked for
/// leaves a sync due by then alone. A re-assessment asked for before a sync's time takes the job
/// (the scheduler queues the next scheduled sync again once it has run).
pub(crate) fn queued_change(
    job: &Job,
    kind: JobKind,
    run_at: DateTime<Utc>,
) -> Option<(JobKind, DateTime<Utc>)> {
    let asked = crate::common::truncate_micros(run_at);
    match (kind, job.kind) {
        (JobKind::Reassess, JobKind::Requested) => return None,
        (JobKind::Reassess, _) => {
            return (asked < job.run_at).then_some((JobKind::Reassess, asked));
        }
        (k, JobKind::Reassess) => return Some((k, asked.min(job.run_at))),
        _ => {}
    }
    let run_at = asked.min(job.run_at);
    let kind = if kind == JobKind::Requested || job.kind == JobKind::Requested {
        JobKind::Requested
    } else {
        JobKind::Scheduled
    };
    (run_at != job.run_at || kind != job.kind).then_some((kind, run_at))
}
