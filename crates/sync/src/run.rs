//! The skeleton of every sync run, whatever the product: open the run record, let the product
//! read and write, judge and reconcile, and record how the run ended.
//!
//! A product's run is `Job::open`, its own steps, `Job::close`. The job owns what must not differ
//! between products: the record is opened before the first call to Microsoft and always closed (a
//! failure becomes its error in words, with no verdict), the client's counters of this run go into
//! it, and a run concludes (marks findings fixed, assets missing) only through [`Job::reconcile`],
//! after a complete verdict and under the circuit breaker. `endpoint.rs` and `cloud.rs` add their
//! product's steps as methods of `Job<'_, MdeClient>` and `Job<'_, ArmClient>`.
//!
//! (The product's steps are called between `open` and `close` rather than passed in as an async
//! closure: a future holding such a closure is not provably `Send` to `tokio::spawn`, which the
//! scheduler needs.)

use rampart_model::RunId;
use std::sync::Arc;

use chrono::Utc;
use rampart_microsoft::{ArmClient, MdeClient, MetricsSnapshot, ReadReport};
use rampart_model::{Integration, RunStatus, SyncRun, Verdict};
use rampart_store::{
    ReconcileOutcome, ReconcilePolicy, ReconcileScope, RunOutcome, RunOwner, Store, StoreError,
};

use crate::error::{RunError, SyncError};
use crate::options::{EngineOptions, SyncRequest};
use crate::pipeline::Batching;
use crate::progress::Progress;

/// Ids of unreadable records a run record keeps (the count is always exact).
const ODD_IDS_IN_RUN: usize = 20;

/// What the engine hands a run.
pub(crate) struct RunSetup<'a> {
    pub options: &'a EngineOptions,
    pub store: &'a Arc<dyn Store>,
    pub integration: &'a Integration,
    pub request: SyncRequest,
    pub progress: &'a dyn Progress,
}

/// A Microsoft client whose calls, 429s, retries and bytes go into the run record.
pub(crate) trait Metered {
    fn metrics(&self) -> MetricsSnapshot;
}

impl Metered for MdeClient {
    fn metrics(&self) -> MetricsSnapshot {
        MdeClient::metrics(self)
    }
}

impl Metered for ArmClient {
    fn metrics(&self) -> MetricsSnapshot {
        ArmClient::metrics(self)
    }
}

/// One running sync: where it reads and writes, and its record so far.
pub(crate) struct Job<'a, C> {
    pub options: &'a EngineOptions,
    pub store: Arc<dyn Store>,
    pub integration: &'a Integration,
    pub client: &'a C,
    pub run_id: RunId,
    pub request: SyncRequest,
    pub progress: &'a dyn Progress,
    pub outcome: RunOutcome,
    /// When the run opened: what its writes are stamped with.
    pub started_at: chrono::DateTime<Utc>,
    /// Set by a first load whose bulk path assessed the rows it inserted: since when what it
    /// assessed with was read (see `priority::assess_after_run`).
    pub first_load_assessed_since: Option<chrono::DateTime<Utc>>,
    /// The client's counters when the run opened: the run record gets the difference.
    metrics_before: MetricsSnapshot,
}

/// What a run that would mark too much missing is holding back, in words.
pub(crate) struct MassChange {
    /// What would be marked missing (`devices`).
    pub things: &'static str,
    /// What makes such a drop real, for the person who may accept it.
    pub if_real: &'static str,
}

impl<'a, C: Metered> Job<'a, C> {
    /// Opens the run's record (`mode` is the word it keeps: `full`, `delta`) before the first call
    /// to Microsoft. `Err` means no run could be recorded (another run of the integration is in
    /// progress, the store is unreachable).
    pub async fn open(
        setup: RunSetup<'a>,
        client: &'a C,
        mode: &'static str,
    ) -> Result<Self, SyncError> {
        let started = Utc::now();
        let run_id = setup
            .store
            .start_run_owned(
                setup.integration.id,
                mode,
                started,
                Some(&RunOwner::current()),
            )
            .await?;
        Ok(Job {
            options: setup.options,
            store: Arc::clone(setup.store),
            integration: setup.integration,
            client,
            run_id,
            request: setup.request,
            progress: setup.progress,
            outcome: RunOutcome::new(RunStatus::Running, started),
            started_at: started,
            first_load_assessed_since: None,
            metrics_before: client.metrics(),
        })
    }

    /// Closes the record with what the product's reading, writing and concluding came to: a
    /// failed run is recorded as `Failed` with its error in words and no verdict, and returned
    /// as `Ok` like any other.
    pub async fn close(self, read: Result<(), RunError>) -> Result<SyncRun, SyncError> {
        let mut outcome = self.outcome;
        if let Err(error) = read {
            tracing::warn!(
                message = "Sync run failed.",
                integration = %self.integration.name,
                run_id = self.run_id.get(),
                %error
            );
            // A failed run concludes nothing, whatever it had judged before it stopped.
            outcome.status = RunStatus::Failed;
            outcome.verdict = None;
            outcome.error = Some(error.to_string());
        }
        let used = self.client.metrics().since(&self.metrics_before);
        outcome.api_calls = used.api_calls;
        outcome.throttled = used.throttled;
        outcome.retries = used.retries + used.restarts;
        outcome.bytes = used.bytes_received;
        outcome.finished_at = Utc::now();
        Ok(self.store.finish_run(self.run_id, &outcome).await?)
    }
}

impl<C> Job<'_, C> {
    /// Batches of the configured size, `writers` written at once.
    pub fn batching(&self, writers: usize) -> Batching {
        Batching {
            size: self.options.write_batch,
            writers,
        }
    }

    /// Counts a read's unreadable records into the run record (with their ids).
    pub fn note_odd(&mut self, report: &ReadReport) {
        let odd = &mut self.outcome.odd_records;
        odd.count += report.unreadable;
        for id in &report.unreadable_ids {
            if odd.ids.len() < ODD_IDS_IN_RUN {
                odd.ids.push(id.clone());
            }
        }
        if odd.first_error.is_none() {
            odd.first_error.clone_from(&report.first_unreadable);
        }
        if report.unreadable > 0 {
            self.progress.note(&format!(
                "{} {} records could not be read and were skipped{}",
                report.unreadable,
                report.family,
                if report.unreadable_ids.is_empty() {
                    String::new()
                } else {
                    format!(" (ids: {})", report.unreadable_ids.join(", "))
                }
            ));
        }
    }

    /// The newest full run before this one that succeeded with a complete verdict: what the
    /// plausibility check compares this run's counts with.
    pub async fn last_complete_full_run(&self) -> Result<Option<SyncRun>, StoreError> {
        let runs = self
            .store
            .list_runs(&rampart_store::Visibility::All, self.integration.id, 20)
            .await?;
        Ok(runs.into_iter().find(|r| {
            r.id != self.run_id
                && r.mode == "full"
                && r.status == RunStatus::Succeeded
                && r.verdict == Some(Verdict::Complete)
        }))
    }

    /// Reconciles `scope` when `verdict` is complete (unseen findings fixed, unseen assets
    /// missing), unless the circuit breaker holds the run; returns the verdict that stands.
    pub async fn reconcile(
        &mut self,
        verdict: Verdict,
        scope: ReconcileScope,
        mass: &MassChange,
    ) -> Result<Verdict, RunError> {
        self.outcome.finished_at = Utc::now();
        if verdict != Verdict::Complete {
            return Ok(verdict);
        }
        self.progress.phase("reconciling");
        let policy = ReconcilePolicy {
            max_missing_share: if self.request.accept_mass_changes {
                1.0
            } else {
                self.options.max_missing_share
            },
            now: self.outcome.finished_at,
            scope,
        };
        match self
            .store
            .reconcile(self.integration.id, self.run_id, policy)
            .await?
        {
            ReconcileOutcome::Applied {
                assets_missing,
                findings_fixed,
                recommendations_removed,
            } => {
                self.outcome.assets.resolved += assets_missing;
                self.outcome.findings.resolved += findings_fixed;
                self.outcome.recommendations.resolved += recommendations_removed;
                self.progress
                    .phase_done(assets_missing + findings_fixed + recommendations_removed);
                Ok(Verdict::Complete)
            }
            ReconcileOutcome::Held {
                would_mark_missing,
                active,
            } => Ok(Verdict::Held(format!(
                "this run would mark {would_mark_missing} of {active} {} missing, more than the {:.0} % safety limit; \
                 nothing was marked missing or fixed. If {}, sync again with --accept-mass-changes",
                mass.things,
                self.options.max_missing_share * 100.0,
                mass.if_real
            ))),
        }
    }

    /// Brings every open finding's decision, priority and due date up to date with what the run
    /// wrote and concluded (`crate::priority`), stamped with the run's start like the rest of
    /// its writes. Run after the product's steps whatever their verdict: findings written by an
    /// incomplete run are open findings too.
    pub async fn prioritise(&mut self) -> Result<(), RunError> {
        self.progress.phase("prioritising findings");
        let counts = crate::priority::assess_after_run(
            self.store.as_ref(),
            self.integration,
            self.run_id,
            self.started_at,
            self.first_load_assessed_since,
            findings_changed(&self.outcome),
        )
        .await?;
        self.progress.phase_done(counts.assessed + counts.changed);
        Ok(())
    }

    /// Sets the run's status from the verdict that stands: succeeded when complete, partial (with
    /// why nothing was concluded) otherwise.
    pub fn settle(&mut self, verdict: Verdict) {
        self.outcome.status = match &verdict {
            Verdict::Complete => RunStatus::Succeeded,
            Verdict::Incomplete(why) | Verdict::Held(why) => {
                self.outcome.error = Some(format!("nothing was concluded: {why}"));
                RunStatus::Partial
            }
        };
        self.outcome.verdict = Some(verdict);
    }
}

/// Whether a run changed any finding (or cannot say: it read none).
fn findings_changed(o: &RunOutcome) -> bool {
    let f = &o.findings;
    f.read == 0 || f.new + f.updated + f.resolved + f.reopened > 0
}
