//! Scheduled syncs: every enabled integration syncs when `schedule_minutes` have passed since its
//! last run started. The schedule is derived from the stored runs, so it survives restarts; the
//! store refuses a second running run of an integration, so several processes (or a "Sync now"
//! click) never run one integration twice at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rampart_model::Integration;
use rampart_sync::SyncRequest;
use rampart_sync::progress::Logged;

use crate::error::AppError;
use crate::state::AppState;

pub struct Scheduler {
    state: AppState,
    tick: Duration,
}

/// When `integration` is next due, given when its last run started (`None`: never ran, due now).
pub fn next_run(integration: &Integration, last_start: Option<DateTime<Utc>>) -> DateTime<Utc> {
    match last_start {
        None => integration.created_at,
        Some(t) => t + chrono::Duration::minutes(integration.schedule_minutes.max(1)),
    }
}

impl Scheduler {
    pub fn new(state: AppState, tick: Duration) -> Self {
        Self { state, tick }
    }

    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(self.tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if let Err(error) = self.once().await {
                    tracing::warn!(message = "Scheduler pass failed.", %error);
                }
                // Expired sessions are swept on the same clock.
                let _ = self.state.store().delete_expired_sessions(Utc::now()).await;
            }
        })
    }

    /// Starts the syncs that are due; returns how many were started.
    pub async fn once(&self) -> Result<usize, AppError> {
        let now = Utc::now();
        let mut started = 0;
        for integration in self.state.store().list_integrations().await? {
            if !integration.enabled {
                continue;
            }
            let last = self.state.store().list_runs(integration.id, 1).await?;
            if next_run(&integration, last.first().map(|r| r.started_at)) > now {
                continue;
            }
            if start_sync(&self.state, integration, "scheduler") {
                started += 1;
            }
        }
        Ok(started)
    }
}

/// Starts a sync in the background unless this process already runs one of the integration.
/// Returns whether it started. The run's record (and any failure) is in the run history.
pub fn start_sync(state: &AppState, integration: Integration, actor: &'static str) -> bool {
    {
        let Ok(mut running) = state.syncing.lock() else {
            return false;
        };
        if !running.insert(integration.id) {
            return false;
        }
    }
    let state = state.clone();
    tokio::spawn(async move {
        let id = integration.id;
        tracing::info!(message = "Sync started.", integration = %integration.name, by = actor);
        match state
            .engine
            .sync(&integration, SyncRequest::default(), &Logged)
            .await
        {
            Ok(run) => tracing::info!(
                message = "Sync finished.",
                integration = %integration.name,
                status = run.status.as_str()
            ),
            Err(error) => tracing::warn!(
                message = "Sync could not start.",
                integration = %integration.name,
                %error
            ),
        }
        if let Ok(mut running) = state.syncing.lock() {
            running.remove(&id);
        }
    });
    true
}
