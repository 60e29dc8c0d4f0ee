//! Scheduled and requested syncs, through the store's job table (see `rampart_store::Job`).
//!
//! Every tick, the scheduler (1) queues the next sync of every enabled integration that has no
//! queued or running job, due `schedule_minutes` after its last sync started, and (2) claims due
//! jobs and runs them. "Sync now" queues a job due at once and claims it in the same process.
//! Because jobs are rows, they survive restarts: a job queued by a process that stopped runs in
//! the next one, and a job whose worker died (no heartbeat for the lease, [`rampart_store::JOB_LEASE`]
//! unless `serve --job-lease` says otherwise) is taken over. The database keeps one active job per
//! integration (and one running run), so several processes never sync one integration twice at
//! once, and one running job per app registration, so that workers together stay within
//! Microsoft's per-application rate limits.
//!
//! Stopping (SIGTERM): no new job is claimed; running syncs get the stop grace to finish, then
//! are stopped and their jobs handed back to the queue, due at once, for another worker.
//!
//! Beside the syncs, when given a feed ([`Scheduler::with_kev`]), it keeps CISA's KEV catalogue
//! current: refreshed once it is a day old (`rampart_sync::intel::kev_refresh_due`), in its own
//! loop so a slow download never holds up a sync. And it sends webhook alerts (docs/webhooks.md)
//! and queues the periodic ones, in a third loop.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rampart_model::Integration;
use rampart_store::{Job, JobKind, StoreError};
use rampart_sync::SyncRequest;
use rampart_sync::integrations::{Integrations, SyncNow};
use rampart_sync::intel::{IntelRefreshError, KevClient, KevUpdate, refresh_kev_if_due};
use rampart_sync::progress::Logged;

use crate::error::AppError;
use crate::state::AppState;

/// How often the periodic webhook alerts (SLA breaches, expiring secrets) are looked for.
const WEBHOOK_CHECK_EVERY: chrono::Duration = chrono::Duration::seconds(3600);

/// Batches of webhook deliveries one tick sends at most (the rest wait for the next tick).
const WEBHOOK_BATCHES_PER_TICK: usize = 20;

/// Jobs one process runs at once (each is one integration's sync; they share two cores).
const MAX_IN_FLIGHT: usize = 4;

pub struct Scheduler {
    state: AppState,
    tick: Duration,
    /// Where the daily refresh reads the KEV catalogue; `None`: this process does not refresh it.
    kev: Option<KevClient>,
}

/// When `integration` is next due, given when its last sync started (`None`: never ran, due now).
pub fn next_run(integration: &Integration, last_start: Option<DateTime<Utc>>) -> DateTime<Utc> {
    match last_start {
        None => integration.created_at,
        Some(t) => t + chrono::Duration::minutes(integration.schedule_minutes.max(1)),
    }
}

impl Scheduler {
    pub fn new(state: AppState, tick: Duration) -> Self {
        Self {
            state,
            tick,
            kev: None,
        }
    }

    /// Also keeps the KEV catalogue from this feed current.
    pub fn with_kev(mut self, client: KevClient) -> Self {
        self.kev = Some(client);
        self
    }

    pub fn spawn(self) -> Running {
        let state = self.state.clone();
        // Both loops in one task: aborting it (at shutdown) stops both.
        let loops = tokio::spawn(async move {
            tokio::join!(self.sync_loop(), self.kev_loop(), self.webhook_loop());
        });
        Running { state, loops }
    }

    async fn sync_loop(&self) {
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = self.state.job_finished.notified() => {}
            }
            if let Err(error) = self.once().await {
                tracing::warn!(message = "Scheduler pass failed.", %error);
            }
            // Expired sessions are swept on the same clock, and exceptions that reached their
            // expiry are written to the audit log (their findings are back on the clock
            // already: that is worked out when they are read).
            let _ = self.state.store().delete_expired_sessions(Utc::now()).await;
            if let Err(error) =
                rampart_sync::exceptions::record_expiries(self.state.store().as_ref(), Utc::now())
                    .await
            {
                tracing::warn!(message = "Recording expired exceptions failed.", %error);
            }
            if let Err(error) = count_fix_plans(self.state.store().as_ref()).await {
                tracing::warn!(message = "Counting the remediation plan failed.", %error);
            }
        }
    }

    async fn kev_loop(&self) {
        if self.kev.is_none() {
            return;
        }
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            // A failure is on the source's row (shown by `rampart intel status`); the next try
            // waits an hour, so a feed that is down is not asked every tick.
            match self.refresh_kev(Utc::now()).await {
                Ok(Some(update)) => tracing::info!(
                    message = "KEV catalogue refreshed.",
                    entries = update.source.count,
                    replaced = update.replaced,
                    warning = update.warning.as_deref().unwrap_or("")
                ),
                Ok(None) => {}
                Err(error) => tracing::warn!(message = "KEV refresh failed.", %error),
            }
        }
    }

    /// Sends due webhook deliveries every tick and, every [`WEBHOOK_CHECK_EVERY`], queues the
    /// periodic alerts (SLA breaches, expiring secrets). In its own loop, so a slow receiver
    /// never holds up a sync.
    async fn webhook_loop(&self) {
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_check: Option<DateTime<Utc>> = None;
        loop {
            interval.tick().await;
            let now = Utc::now();
            if last_check.is_none_or(|t| now - t >= WEBHOOK_CHECK_EVERY) {
                last_check = Some(now);
                if let Err(error) = self.check_webhook_events(now).await {
                    tracing::warn!(message = "Queueing periodic webhook alerts failed.", %error);
                }
            }
            // A full batch may mean more are due: send until a batch comes back short.
            let batch = self.state.engine.webhooks().options().batch as usize;
            for _ in 0..WEBHOOK_BATCHES_PER_TICK {
                match self.deliver_webhooks(Utc::now()).await {
                    Ok(sent) if sent >= batch => {}
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(message = "Sending webhook deliveries failed.", %error);
                        break;
                    }
                }
            }
        }
    }

    /// Sends the webhook deliveries due at `now`; returns how many were attempted.
    pub async fn deliver_webhooks(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let engine = &self.state.engine;
        engine
            .webhooks()
            .deliver_due(engine.store().as_ref(), engine.vault(), now)
            .await
    }

    /// Queues the periodic webhook alerts due at `now`; returns how many deliveries.
    pub async fn check_webhook_events(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let engine = &self.state.engine;
        rampart_sync::webhooks::check_due(
            engine.store().as_ref(),
            engine.options().public_url.as_deref(),
            now,
        )
        .await
    }

    /// Refreshes the KEV catalogue if it is due at `now` (never read, a day old, and no failed
    /// attempt in the last hour); `None` when not due or no feed is configured.
    pub async fn refresh_kev(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<KevUpdate>, IntelRefreshError> {
        match &self.kev {
            None => Ok(None),
            Some(client) => refresh_kev_if_due(self.state.store().as_ref(), client, now).await,
        }
    }

    /// Queues the next sync of every enabled integration without one, then starts the due jobs;
    /// returns how many it started.
    pub async fn once(&self) -> Result<usize, AppError> {
        plan(&self.state, Utc::now()).await?;
        claim_and_run(&self.state, None).await
    }
}

/// A spawned scheduler.
pub struct Running {
    state: AppState,
    loops: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops claiming jobs, gives running syncs `grace` to finish, then stops the rest and hands
    /// their jobs back to the queue so that another worker takes them at once.
    pub async fn stop(self, grace: Duration) {
        self.state.stopping.store(true, Ordering::SeqCst);
        self.loops.abort();
        let deadline = tokio::time::Instant::now() + grace;
        let mut announced = false;
        loop {
            let left = self.state.syncing.lock().map_or(0, |s| s.len());
            if left == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            if !announced {
                tracing::info!(
                    message = "Stopping: waiting for running syncs to finish.",
                    running = left,
                    grace_seconds = grace.as_secs()
                );
                announced = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let held: Vec<(i64, tokio::task::AbortHandle)> = match self.state.syncing.lock() {
            Ok(mut s) => s.drain().map(|(job, (_, task))| (job, task)).collect(),
            Err(_) => return,
        };
        let why = format!(
            "the worker was stopped and its sync did not finish within the {}-second grace",
            grace.as_secs()
        );
        for (job, task) in held {
            task.abort();
            while !task.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Due at once: another worker may take it now.
            let now = Utc::now();
            match self
                .state
                .store()
                .release_job(job, &self.state.worker, now, now, &why)
                .await
            {
                Ok(_) => tracing::warn!(message = "Stopped a sync and handed its job back.", job),
                // It finished on its own between the grace running out and the abort.
                Err(StoreError::Conflict(_)) => {}
                Err(error) => {
                    tracing::warn!(message = "Could not hand a job back.", job, %error);
                }
            }
        }
    }
}

/// Counts the remediation plan of integrations whose count is missing (an upgrade, a sync run
/// by a process that did not finish it) or stale (findings assessed outside a run), so that
/// "Fix first" reads it instead of grouping their findings per view.
async fn count_fix_plans(store: &dyn rampart_store::Store) -> Result<(), StoreError> {
    for integration in store.fix_plans_to_count().await? {
        store.refresh_fix_plan(integration, Utc::now()).await?;
        tracing::debug!(
            message = "Counted the remediation plan.",
            integration = integration.get()
        );
    }
    Ok(())
}

/// Queues a scheduled job for every enabled integration that has no queued or running one.
async fn plan(state: &AppState, now: DateTime<Utc>) -> Result<(), AppError> {
    let store = state.store();
    let jobs = store
        .list_jobs(&rampart_store::Visibility::All, None, false, 1000)
        .await?;
    for integration in store
        .list_integrations(&rampart_store::Visibility::All)
        .await?
    {
        if !integration.enabled {
            continue;
        }
        let mine = jobs.iter().filter(|j| j.integration_id == integration.id);
        if mine.clone().any(|j| j.is_active()) {
            continue;
        }
        // The last start: of a job this table ran, or of a run started elsewhere (the CLI).
        // A re-assessment is not a sync: it does not move the schedule.
        let last_job = mine
            .filter(|j| j.kind != JobKind::Reassess)
            .filter_map(|j| j.claimed_at)
            .max();
        let last_run = store
            .list_runs(&rampart_store::Visibility::All, integration.id, 1)
            .await?
            .first()
            .map(|r| r.started_at);
        let due = next_run(&integration, last_job.max(last_run));
        store
            .enqueue_job(integration.id, JobKind::Scheduled, due, now)
            .await?;
    }
    Ok(())
}

/// Claims due jobs (of `only` this integration, if given) and runs each in the background;
/// returns how many it started. Nothing while the process is stopping or does not run jobs.
pub async fn claim_and_run(
    state: &AppState,
    only: Option<rampart_model::IntegrationId>,
) -> Result<usize, AppError> {
    let mut started = 0;
    loop {
        if !state.runs_jobs
            || state.stopping.load(Ordering::SeqCst)
            || state
                .syncing
                .lock()
                .map_or(true, |s| s.len() >= MAX_IN_FLIGHT)
        {
            return Ok(started);
        }
        let Some(job) = state
            .store()
            .claim_job(&state.worker, Utc::now(), state.job_lease, only)
            .await?
        else {
            return Ok(started);
        };
        // Registered before the task can finish and remove itself.
        let mut running = match state.syncing.lock() {
            Ok(running) => running,
            Err(_) => return Ok(started),
        };
        let (id, integration) = (job.id, job.integration_id);
        let task = tokio::spawn(run_job(state.clone(), job));
        running.insert(id, (integration, task.abort_handle()));
        started += 1;
    }
}

/// Renews the job's lease every quarter of it; returns only when the job is lost (another worker
/// took it over after heartbeats failed for the whole lease), so that the sync stops.
async fn keep_lease(state: &AppState, job: i64) -> String {
    let mut every = tokio::time::interval(state.job_lease / 4);
    every.tick().await;
    loop {
        every.tick().await;
        match state
            .store()
            .heartbeat_job(job, &state.worker, Utc::now())
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(lost)) => return lost,
            // The database may be back before the lease runs out.
            Err(error) => tracing::warn!(message = "Job heartbeat failed.", job, %error),
        }
    }
}

/// How a job's sync ended.
enum Outcome {
    Done,
    /// In words.
    Failed(String),
    /// The sync could not start yet (another run of the integration is still open, e.g. a CLI
    /// sync or a run whose worker is stopping): the job goes back to the queue for later.
    PutOff(String),
    /// Another worker took the job over; this one stopped its sync.
    Lost(String),
}

/// How long a job put off waits before it is tried again.
const PUT_OFF: chrono::Duration = chrono::Duration::seconds(30);

/// Runs a claimed job: the sync while its lease is renewed, and the job's outcome.
async fn run_job(state: AppState, job: Job) {
    let store = state.store().clone();
    let worker = state.worker.clone();
    let outcome = tokio::select! {
        outcome = sync(&state, &job) => outcome,
        lost = keep_lease(&state, job.id) => Outcome::Lost(lost),
    };
    let now = Utc::now();
    let closed = match &outcome {
        Outcome::Done => store.finish_job(job.id, &worker, now, None).await.map(drop),
        Outcome::Failed(error) => store
            .finish_job(job.id, &worker, now, Some(error))
            .await
            .map(drop),
        Outcome::PutOff(why) => {
            tracing::info!(message = "Sync put off.", job = job.id, reason = %why);
            store
                .release_job(job.id, &worker, now, now + PUT_OFF, why)
                .await
                .map(drop)
        }
        Outcome::Lost(why) => {
            tracing::warn!(message = "Sync stopped: its job was taken over.", job = job.id, reason = %why);
            // The sync was dropped mid-way: its run would otherwise stay open, blocking the
            // worker that took the job over until this process ends.
            store
                .close_runs_of_worker(
                    job.integration_id,
                    &worker,
                    now,
                    "stopped: its worker missed heartbeats and another worker took the job over",
                )
                .await
        }
    };
    if let Err(error) = closed {
        tracing::warn!(message = "Job could not be closed.", job = job.id, %error);
    }
    // Settings saved while this job ran may have found it running and queued nothing.
    let mut reassess_queued = false;
    if matches!(outcome, Outcome::Done | Outcome::Failed(_)) {
        match rampart_sync::priority::queue_if_stale(store.as_ref(), job.integration_id, now).await
        {
            Ok(queued) => reassess_queued = queued,
            Err(error) => {
                tracing::warn!(message = "Re-assessment could not be queued.", job = job.id, %error);
            }
        }
    }
    if let Ok(mut running) = state.syncing.lock() {
        running.remove(&job.id);
    }
    // A job that waited for this one's app registration can start now, not a tick later.
    state.job_finished.notify_one();
    if reassess_queued {
        // Started here, as the settings change would have started it had this job not been
        // running: a process without the scheduler's loop (`serve` always has one; an embedded
        // server may not) would otherwise leave it queued.
        tokio::spawn(start_jobs_of(state.clone(), job.integration_id));
    }
}

/// Claims and runs the due jobs of one integration. A named, boxed future: [`run_job`] starts
/// it, and it starts tasks that run [`run_job`] (an `async fn` cannot name its own type).
fn start_jobs_of(
    state: AppState,
    integration: rampart_model::IntegrationId,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        if let Err(error) = claim_and_run(&state, Some(integration)).await {
            tracing::warn!(message = "Queued jobs could not be started here.", %error);
        }
    })
}

/// The sync of a job, and how it ended.
async fn sync(state: &AppState, job: &Job) -> Outcome {
    let integration = match state
        .store()
        .get_integration(&rampart_store::Visibility::All, job.integration_id)
        .await
    {
        Ok(i) => i,
        Err(StoreError::NotFound(_)) => {
            return Outcome::Failed("the integration was removed".into());
        }
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if job.kind == JobKind::Reassess {
        return reassess(state, &integration).await;
    }
    tracing::info!(
        message = "Sync started.",
        integration = %integration.name,
        job = job.id,
        kind = job.kind.as_str()
    );
    match state
        .engine
        .sync(&integration, SyncRequest::default(), &Logged)
        .await
    {
        Ok(run) => {
            tracing::info!(
                message = "Sync finished.",
                integration = %integration.name,
                status = run.status.as_str()
            );
            match run.status {
                rampart_model::RunStatus::Failed => Outcome::Failed(
                    run.error
                        .unwrap_or_else(|| format!("run {} failed", run.id)),
                ),
                _ => Outcome::Done,
            }
        }
        // Another run of the integration is open: try again later rather than fail the job
        // and wait a whole schedule.
        Err(rampart_sync::SyncError::Store(StoreError::Conflict(why))) => Outcome::PutOff(why),
        Err(error) => {
            tracing::warn!(message = "Sync could not start.", integration = %integration.name, %error);
            Outcome::Failed(error.to_string())
        }
    }
}

/// A re-assessment job: the integration's open findings assessed again with the prioritisation
/// settings as they are now (they changed), without calling Microsoft.
async fn reassess(state: &AppState, integration: &Integration) -> Outcome {
    match rampart_sync::priority::reassess(state.store().as_ref(), integration, Utc::now()).await {
        Ok(counts) => {
            tracing::info!(
                message = "Findings re-assessed.",
                integration = %integration.name,
                read = counts.read,
                changed = counts.changed
            );
            Outcome::Done
        }
        Err(error) => Outcome::Failed(format!(
            "re-assessing the findings with the new prioritisation settings failed: {error}"
        )),
    }
}

/// Starts the jobs that are due in this process when it can (the re-assessments a settings
/// change queued), rather than at the scheduler's next tick; another process may run them.
pub async fn start_due_jobs(state: &AppState) {
    if let Err(error) = claim_and_run(state, None).await {
        tracing::warn!(message = "Queued jobs could not be started here.", %error);
    }
}

/// What "Sync now" did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncNowOutcome {
    /// This process started the sync.
    Started,
    /// The job is queued, due at once: a worker process runs it (`serve --role web`), or it
    /// waits for another sync with the same app registration to end.
    Queued,
    /// A sync of the integration is already running; nothing was queued.
    AlreadyRunning,
}

/// "Sync now" asked by `actor`: queues a job due at once (or brings the queued one forward) and
/// starts it in this process when it can.
pub async fn sync_now(
    state: &AppState,
    integration: &Integration,
    actor: &str,
) -> Result<SyncNowOutcome, AppError> {
    match Integrations::new(&state.engine)
        .sync_now(integration, actor)
        .await?
    {
        SyncNow::AlreadyRunning => Ok(SyncNowOutcome::AlreadyRunning),
        SyncNow::Queued => {
            // Another process may claim it first; either way it runs.
            if claim_and_run(state, Some(integration.id)).await? > 0 {
                Ok(SyncNowOutcome::Started)
            } else {
                Ok(SyncNowOutcome::Queued)
            }
        }
    }
}
