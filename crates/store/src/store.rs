//! The `Store` trait: everything the sync engine, the CLI and the portal ask of the database.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use rampart_model::priority::{CriticalityRule, KevEntry, SlaDays};
use rampart_model::{
    Asset, ControlScore, CveId, Finding, Integration, IntegrationId, IntegrationName, PostureScore,
    Recommendation, RunId, Subscription, SyncRun, Vulnerability, WorkspaceId,
};

use crate::error::Result;
use crate::exceptions::{ExceptionFilter, NewException, StoredException};
use crate::intel::{IntelCheck, IntelSource, KevSnapshot};
use crate::jobs::{Enqueued, Job, JobKind};
use crate::priority::{
    AssessScope, AssessmentInput, AssessmentWrite, Explanation, InsertAssessor, UrgentCounts,
};
use crate::remediation::{Remediation, RemediationFilter, RemediationSort};
use crate::run_owner::RunOwner;
use crate::sla::{FixedGroup, IntegrationSla, SlaSettings, SlaSnapshot, StoredRule};
use crate::sort::{AssetSort, ListedAsset, SortCursor};
use crate::summary::Summary;
use crate::types::*;
use crate::types_cloud::*;
use crate::webhooks::{
    AttemptOutcome, ClaimedDelivery, NewWebhook, NewWebhookEvent, Recipients, StoredDelivery,
    StoredWebhook, WebhookSecrets,
};
use crate::workspace::{Membership, Visibility, Workspace};

/// A run whose process shows no sign of life (no batch written, no heartbeat) for this long is
/// considered abandoned: the next `start_run` of its integration closes it as failed.
pub const STALE_RUN_AFTER: Duration = Duration::from_secs(30 * 60);

/// Rows per page when the streaming helpers walk a listing.
pub const STREAM_PAGE_SIZE: u32 = 1000;

/// The stream of every item of a `*_page(vis, filter, after, limit)` method of the store, page by
/// page (see [`Store::stream_assets`]): one definition for the streams of every kind of row.
macro_rules! filtered_stream {
    ($store:ident, $vis:ident, $filter:ident, $page:ident) => {
        keyset_stream(None, move |after| {
            let filter = $filter.clone();
            let vis = $vis.clone();
            async move {
                let page = $store.$page(&vis, &filter, after, STREAM_PAGE_SIZE).await?;
                Ok((page.items, page.next))
            }
        })
    };
}

/// Rampart's storage. One implementation per backend ([`crate::connect`] picks one from the URL);
/// both pass the same scenario suite (`tests/scenarios`).
///
/// Rules every implementation keeps:
/// - Writes are idempotent upserts keyed by natural keys, in one transaction per call: a call that
///   fails changes nothing, and repeating a call converges to the same state.
/// - Nothing is concluded (fixed, missing) except by [`Store::reconcile`] or by a delta's explicit
///   `Fixed` change; nothing is deleted except by [`Store::delete_integration`].
/// - Times of observation (`first_observed`, `last_observed`) are the run's `started_at`; times of
///   conclusion are given by the caller. Timestamps are kept to the microsecond.
/// - Strings are stored as given, except that NUL characters (which PostgreSQL cannot store) become
///   U+FFFD on both backends.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Which engine this is.
    fn backend(&self) -> Backend;

    /// Closes the connections (waits for running statements). Dropping the store also closes them,
    /// eventually.
    async fn close(&self);

    // ---- integrations ------------------------------------------------------------------------

    /// Stores a new integration in the default workspace. A name already taken
    /// (case-insensitively) is a `Conflict`.
    async fn create_integration(&self, new: &NewIntegration) -> Result<Integration> {
        self.create_integration_in(new, WorkspaceId::DEFAULT).await
    }
    /// Stores a new integration in `workspace` (`NotFound` when there is no such workspace).
    /// Integration names stay unique across workspaces: the CLI names integrations without a
    /// workspace.
    async fn create_integration_in(
        &self,
        new: &NewIntegration,
        workspace: WorkspaceId,
    ) -> Result<Integration>;
    /// `NotFound` when there is none with this id.
    async fn get_integration(&self, vis: &Visibility, id: IntegrationId) -> Result<Integration>;
    /// Case-insensitive. `NotFound` says how to list the existing ones.
    async fn get_integration_by_name(
        &self,
        vis: &Visibility,
        name: &IntegrationName,
    ) -> Result<Integration>;
    /// All integrations, by name.
    async fn list_integrations(&self, vis: &Visibility) -> Result<Vec<Integration>>;
    /// Changes the given fields; a rename onto a taken name is a `Conflict`.
    async fn update_integration(
        &self,
        id: IntegrationId,
        update: &IntegrationUpdate,
    ) -> Result<Integration>;
    /// Removes the integration and everything stored for it (assets, findings, runs, state, jobs,
    /// subscriptions and their reads, posture history, recommendations).
    /// The CVE catalogue and the audit log stay.
    async fn delete_integration(&self, id: IntegrationId) -> Result<()>;
    /// The encrypted client secret, for the sync engine to decrypt.
    async fn integration_secret(&self, id: IntegrationId) -> Result<SecretCiphertext>;

    // ---- workspaces (see the `workspace` module and docs/workspaces.md) --------------------------

    /// A name already taken (case-insensitively) is a `Conflict`.
    async fn create_workspace(&self, name: &str) -> Result<Workspace>;
    /// All workspaces, by name.
    async fn list_workspaces(&self) -> Result<Vec<Workspace>>;
    /// Case-insensitive. `NotFound` says how to list the existing ones.
    async fn get_workspace_by_name(&self, name: &str) -> Result<Workspace>;
    /// Removes an empty workspace with its memberships and tokens. `NotFound` when there is none;
    /// `Conflict`, naming them, while integrations belong to it (checked in the same step as the
    /// removal); `Conflict` for the default workspace.
    async fn delete_workspace(&self, id: WorkspaceId) -> Result<()>;
    /// Moves an integration to another workspace. `NotFound` when either does not exist.
    async fn move_integration(&self, id: IntegrationId, workspace: WorkspaceId) -> Result<()>;
    /// Gives the user `role` in the workspace (replacing the role it had there).
    async fn grant_membership(
        &self,
        user_id: i64,
        workspace: WorkspaceId,
        role: Role,
    ) -> Result<()>;
    /// Takes the user's role in the workspace away; `NotFound` when it had none.
    async fn revoke_membership(&self, user_id: i64, workspace: WorkspaceId) -> Result<()>;
    /// The user's memberships, by workspace name.
    async fn memberships(&self, user_id: i64) -> Result<Vec<Membership>>;

    // ---- threat intelligence (CISA KEV, see `crate::intel`) --------------------------------------

    /// Replaces the whole KEV catalogue with `entries` and records where it came from, in one
    /// transaction: readers see the old catalogue or the new one, never a mix, and a failure
    /// keeps the old one.
    async fn replace_kev_catalog(
        &self,
        snapshot: &KevSnapshot,
        entries: &[KevEntry],
    ) -> Result<IntelSource>;
    /// Records an attempt that stored no new catalogue: the source was current (`error: None`
    /// moves `fetched_at`) or it failed (`error` kept in `last_error`). Entries are not touched.
    async fn record_intel_check(&self, check: &IntelCheck<'_>) -> Result<()>;
    /// The source's row, `None` before its first attempt.
    async fn intel_source(&self, source: &str) -> Result<Option<IntelSource>>;
    /// The KEV entries of these CVEs (those that are listed), in CVE id order.
    async fn kev_entries_for(&self, cves: &[CveId]) -> Result<Vec<KevEntry>>;

    // ---- prioritisation (see `crate::priority` and docs/prioritisation.md) -----------------------

    /// Open findings of the integration in `scope` with `id > after`, in id order, as the
    /// prioritisation reads them.
    async fn assessment_inputs(
        &self,
        integration_id: IntegrationId,
        scope: AssessScope<'_>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<AssessmentInput>>;
    /// How many open findings are `immediate`, and how many are overdue at `now` (index ranges,
    /// not a scan of all findings).
    async fn urgent_counts(&self, vis: &Visibility, now: DateTime<Utc>) -> Result<UrgentCounts>;
    /// The catalogue entries of these CVEs (those that exist), in no particular order, as
    /// prioritisation reads them: without their description.
    async fn vulnerabilities_for(&self, cves: &[CveId]) -> Result<Vec<Vulnerability>>;
    /// Stores `explanations` not stored yet and writes `writes` to findings that are still open,
    /// stamping them changed at `at`, in one transaction. Returns how many findings it wrote.
    async fn write_assessments(
        &self,
        explanations: &[Explanation],
        writes: &[AssessmentWrite],
        at: DateTime<Utc>,
    ) -> Result<u64>;

    // ---- per-integration sync state (small key/value pairs the engine keeps between runs) -----

    async fn get_sync_state(
        &self,
        integration_id: IntegrationId,
        key: &str,
    ) -> Result<Option<String>>;
    async fn set_sync_state(
        &self,
        integration_id: IntegrationId,
        key: &str,
        value: &str,
    ) -> Result<()>;

    // ---- runs --------------------------------------------------------------------------------

    /// Opens a run (`mode` is `full` or `delta`) started at `now` and returns its id.
    ///
    /// A run of the same integration that is still `running` makes this a `Conflict`, unless it
    /// has shown no sign of life for [`STALE_RUN_AFTER`] before `now`: then it is closed as
    /// `failed` ("abandoned") and the new run starts. The database enforces one running run per
    /// integration, so two processes racing here cannot both win.
    async fn start_run(
        &self,
        integration_id: IntegrationId,
        mode: &str,
        now: DateTime<Utc>,
    ) -> Result<RunId> {
        self.start_run_owned(integration_id, mode, now, None).await
    }
    /// [`Store::start_run`], recording which process runs it. A running run whose recorded owner
    /// is certainly gone (same host, process ended, or the host rebooted) is taken over at once.
    async fn start_run_owned(
        &self,
        integration_id: IntegrationId,
        mode: &str,
        now: DateTime<Utc>,
        owner: Option<&RunOwner>,
    ) -> Result<RunId>;
    /// Tells the store the run's process is alive (e.g. while it waits out a rate limit).
    /// Every batched write of the run does this too.
    async fn heartbeat_run(&self, run_id: RunId, now: DateTime<Utc>) -> Result<()>;
    /// Closes a running run with its outcome and returns it. A run that is no longer running
    /// (closed as abandoned by another process, or finished twice) is a `Conflict`.
    async fn finish_run(&self, run_id: RunId, outcome: &RunOutcome) -> Result<SyncRun>;
    async fn get_run(&self, vis: &Visibility, run_id: RunId) -> Result<SyncRun>;
    /// The newest runs first.
    async fn list_runs(
        &self,
        vis: &Visibility,
        integration_id: IntegrationId,
        limit: u32,
    ) -> Result<Vec<SyncRun>>;
    /// The newest `succeeded` run, if any.
    async fn last_successful_run(
        &self,
        vis: &Visibility,
        integration_id: IntegrationId,
    ) -> Result<Option<SyncRun>>;

    // ---- batched writes (the engine sends thousands of rows per call) -------------------------

    /// Upserts assets keyed by (integration, `source_id`) and marks them seen by `run_id`.
    /// A `missing` asset seen again becomes `active` (counted as reopened).
    /// The run must be running and belong to the integration.
    async fn upsert_assets(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        assets: &[Asset],
    ) -> Result<UpsertCounts>;

    /// Upserts CVE catalogue entries keyed by `cve_id` (`reopened` is always 0).
    async fn upsert_vulnerabilities(&self, vulns: &[Vulnerability]) -> Result<UpsertCounts>;

    /// Adds CVE facts from a secondary source (Defender for Cloud findings carry severity and
    /// CVSS, not EPSS or exploit flags): unknown CVEs are inserted; for known ones only the fields
    /// the catalogue lacks are filled, so Endpoint's richer entries are never overwritten.
    /// `updated` counts entries that gained a field.
    async fn fill_vulnerabilities(&self, vulns: &[Vulnerability]) -> Result<UpsertCounts>;

    /// How many roll-ups (run SLA snapshots, asset summaries, remediation plans) were written
    /// from a first load's tally of its rows instead of being counted from the stored rows
    /// (`crate::first_load_tally`): tests check that the tally was used.
    #[doc(hidden)]
    fn roll_ups_from_tallies(&self) -> u64 {
        0
    }

    /// How many times [`Store::assessment_inputs`] answered a run's prioritising step without
    /// reading its findings, knowing the run left none to read: tests check that it did.
    #[doc(hidden)]
    fn prioritising_reads_skipped(&self) -> u64 {
        0
    }

    /// How many batches of findings SQLite's first-load writer wrote
    /// (`crate::sqlite::first_load_writer`): tests check that it was used.
    #[doc(hidden)]
    fn batches_by_first_load_writer(&self) -> u64 {
        0
    }

    /// How many batched writes of one run may usefully run at once. On PostgreSQL each connection
    /// is a server process of its own, and the per-row work of a bulk load is the bottleneck that
    /// a second connection halves. SQLite has one writer: there a second call prepares its batch
    /// while the first one writes, then waits for the connection.
    fn concurrent_writes(&self) -> usize {
        1
    }

    /// A full read is about to write an integration's findings. When the integration holds none
    /// yet (its first load: millions of new rows on a large estate), the backend may put off work
    /// that is far cheaper done once at the end; returns whether it did. Both backends put off
    /// the by-CVE index, which row-by-row inserts would update in random order (on SQLite a first
    /// load of 2 M findings wrote 13 GB of WAL for it). Always call [`Store::end_bulk_findings`] afterwards,
    /// whether the load succeeded or not; a crash in between is healed when the store is next
    /// opened. Meanwhile queries stay correct, only per-CVE ones are slower.
    ///
    /// Until the run's [`Store::reconcile`] (or its end), a batch's rows that repeat a stored
    /// open finding unchanged are left alone rather than rewritten: this store remembers them as
    /// observed by the run, and its reconciliation counts them so. Reconcile on the same store.
    async fn begin_bulk_findings(&self, integration_id: IntegrationId) -> Result<bool> {
        let _ = integration_id;
        Ok(false)
    }
    /// Restores what [`Store::begin_bulk_findings`] put off (rebuilds the index in one sorted
    /// pass). Harmless when nothing was put off.
    async fn end_bulk_findings(&self) -> Result<()> {
        Ok(())
    }

    /// Upserts findings keyed by (integration, asset, vendor, software, version, CVE) and marks
    /// them seen by `run_id`. A `fixed` finding seen again is open again (`fixed_at` cleared,
    /// `reopened_count` + 1).
    ///
    /// A finding is evidence that its asset exists: an asset not yet known is created from the
    /// finding (kind `device`, the finding's asset name), and every asset referenced is marked seen
    /// by the run (a `missing` one becomes `active` again).
    async fn upsert_findings(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        findings: &[Finding],
    ) -> Result<UpsertCounts>;

    /// [`Store::upsert_findings`], with the findings it inserts assessed by `assessor` in the same
    /// write (their decision, priority, due date and explanation); rows already stored keep what
    /// they have (see [`InsertAssessor`]).
    async fn upsert_findings_assessed(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        findings: &[Finding],
        assessor: Option<&dyn InsertAssessor>,
    ) -> Result<UpsertCounts>;

    /// Applies delta changes in order, in one transaction: `New`/`Updated` as `upsert_findings`,
    /// `Fixed` marks an open finding fixed with `fixed_at` = the event time.
    async fn apply_finding_changes(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        changes: &[FindingChange],
    ) -> Result<DeltaCounts>;

    /// Concludes a provably complete full read, in one transaction: active assets not seen by
    /// `run_id` become `missing` (`missing_since` = `policy.now`); open findings not seen by it, and
    /// open findings of missing assets, become `fixed` (`fixed_at` = `policy.now`);
    /// recommendations not seen by it become `Removed` (`removed_at` = `policy.now`, and
    /// `resolved_at` = `policy.now` when they were `Unhealthy`). `policy.scope` narrows what takes
    /// part (see [`ReconcileScope`]).
    ///
    /// Circuit breaker: when the assets to mark missing exceed `policy.max_missing_share` of the
    /// active assets (within the scope), nothing changes and the answer is `Held`.
    async fn reconcile(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        policy: ReconcilePolicy,
    ) -> Result<ReconcileOutcome>;

    // ---- Defender for Cloud: subscriptions, posture, recommendations -------------------------

    /// Upserts the subscriptions a run listed, keyed by (integration, lower-cased subscription
    /// id): display name and state are replaced, `first_observed` kept, `last_observed` set to
    /// the run's start. The run must be running and belong to the integration.
    async fn upsert_subscriptions(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        subscriptions: &[Subscription],
    ) -> Result<UpsertCounts>;

    /// Records how the run's read of one subscription went (at the run's start). Recording again
    /// for the same run and subscription replaces the outcome. A subscription not listed before
    /// is created (without name or state).
    async fn record_subscription_read(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        subscription_id: &str,
        outcome: &SubscriptionReadOutcome,
    ) -> Result<()>;

    /// The subscriptions of one integration or all, by integration then subscription id, each
    /// with its last recorded read.
    async fn list_subscriptions(
        &self,
        vis: &Visibility,
        integration: Option<IntegrationId>,
    ) -> Result<Vec<StoredSubscription>>;

    /// The reads a run recorded, by subscription id.
    async fn subscription_reads(
        &self,
        vis: &Visibility,
        run_id: RunId,
    ) -> Result<Vec<(String, SubscriptionRead)>>;

    /// Stores the secure scores and control scores a run captured: one row per (run,
    /// subscription) and per (run, subscription, control). Idempotent: the run's earlier rows for
    /// the subscriptions named in `scores` or `controls` are replaced. Subscription and control
    /// ids are lower-cased. The run must be running and belong to the integration.
    async fn record_posture(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        captured_at: DateTime<Utc>,
        scores: &[PostureScore],
        controls: &[ControlScore],
    ) -> Result<()>;

    /// The newest score of every (integration, subscription): from the run with the latest
    /// `captured_at` (ties: the later run) that captured that subscription. A subscription a later
    /// run could not read keeps its older score; `captured_at` tells how old it is. Ordered by
    /// integration, then subscription id.
    async fn latest_posture(
        &self,
        vis: &Visibility,
        integration: Option<IntegrationId>,
    ) -> Result<Vec<StoredPostureScore>>;

    /// One point per run that captured scores (captured at or after `since`), oldest first:
    /// the tenant score over that run's subscriptions ([`rampart_model::weighted_percent`]).
    async fn posture_history(
        &self,
        vis: &Visibility,
        integration: Option<IntegrationId>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<PosturePoint>>;

    /// The control scores of the newest run that captured controls for each (integration,
    /// subscription), optionally of one subscription (any case). Ordered by integration,
    /// subscription, then the control's max score (largest first) and control id.
    async fn latest_controls(
        &self,
        vis: &Visibility,
        integration: Option<IntegrationId>,
        subscription: Option<&str>,
    ) -> Result<Vec<StoredControlScore>>;

    /// Upserts recommendations keyed by (integration, lower-cased assessment id) and marks them
    /// seen by `run_id` (observation time = the run's start). Counted as:
    /// - `new`: not stored before;
    /// - `reopened`: now `Unhealthy` while stored `Healthy` or `Removed` (`resolved_at` and
    ///   `removed_at` cleared, `reopened_count` + 1);
    /// - `updated`: status or content changed otherwise. `Unhealthy` → `Healthy` sets
    ///   `resolved_at` to the run's start; a `Removed` one seen again takes its new status;
    /// - `unchanged`: the rest.
    ///
    /// `asset_id` is set to the asset of the same integration whose `source_id` equals the
    /// resource id, if it exists now: upsert a run's assets before its recommendations.
    async fn upsert_recommendations(
        &self,
        integration_id: IntegrationId,
        run_id: RunId,
        recommendations: &[Recommendation],
    ) -> Result<UpsertCounts>;

    /// Recommendations with `id > after`, in id order.
    async fn recommendations_page(
        &self,
        vis: &Visibility,
        filter: &RecommendationFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredRecommendation>>;

    /// The same machine known to other integrations: assets of integrations other than this
    /// asset's with the same `azure_resource_id` (compared lower-cased) or, when both have one,
    /// the same `aad_device_id` (lower-cased). In id order. `NotFound` when the asset does not
    /// exist.
    async fn linked_assets(&self, vis: &Visibility, asset_id: i64) -> Result<Vec<StoredAsset>>;

    // ---- reads (keyset pages; see the `stream_*` helpers for whole listings) ------------------

    /// Assets with `id > after`, in id order.
    async fn assets_page(
        &self,
        vis: &Visibility,
        filter: &AssetFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredAsset>>;
    /// Findings with `id > after`, in id order, joined with asset name and CVE facts.
    async fn findings_page(
        &self,
        vis: &Visibility,
        filter: &FindingFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredFinding>>;
    /// Findings matching the filter in priority order, keyset-paginated on (priority, id): pass
    /// the page's `next` as `after` for the following page.
    async fn findings_sorted(
        &self,
        vis: &Visibility,
        filter: &FindingFilter,
        order: FindingOrder,
        after: Option<FindingCursor>,
        limit: u32,
    ) -> Result<Page<StoredFinding, FindingCursor>>;
    /// Catalogue entries with `cve_id > after`, in CVE id order, with their exposure.
    async fn vulnerabilities_page(
        &self,
        vis: &Visibility,
        filter: &VulnerabilityFilter,
        after: Option<CveId>,
        limit: u32,
    ) -> Result<Page<StoredVulnerability, CveId>>;
    /// Dashboard numbers, for one integration or all.
    async fn counts(&self, vis: &Visibility, integration: Option<IntegrationId>) -> Result<Counts>;

    /// The recommended updates that close the most open findings, most first.
    async fn top_fixes(&self, vis: &Visibility, limit: u32) -> Result<Vec<TopFix>>;
    /// The assets with the most critical, then high, then any open findings.
    async fn riskiest_assets(&self, vis: &Visibility, limit: u32) -> Result<Vec<RiskyAsset>>;

    // ---- the portal at scale: sorted listings and summaries -----------------------------------

    /// Assets matching the filter in `sort` order, each with its findings summary, keyset-paginated
    /// on (sort key, id): pass the page's `next` as `after` for the following page. A cursor of
    /// another order is `InvalidInput`.
    async fn assets_sorted(
        &self,
        vis: &Visibility,
        filter: &AssetFilter,
        sort: AssetSort,
        after: Option<&SortCursor>,
        limit: u32,
    ) -> Result<Page<ListedAsset, SortCursor>>;

    /// One asset, with its findings summary. `NotFound` when there is none with this id.
    async fn get_asset(&self, vis: &Visibility, id: i64) -> Result<ListedAsset> {
        let page = self
            .assets_sorted(
                vis,
                &AssetFilter::default(),
                AssetSort::default(),
                Some(&SortCursor::after_id(id.saturating_sub(1))),
                1,
            )
            .await?;
        page.items
            .into_iter()
            .find(|a| a.stored.id == id)
            .ok_or_else(|| crate::StoreError::NotFound(format!("there is no asset with id {id}")))
    }

    /// The dashboard's numbers from the summaries refreshed when runs finish: a cost that does
    /// not grow with the findings, as of [`Summary::as_of`]. `top` bounds the two rankings.
    async fn summary(&self, vis: &Visibility, top: u32) -> Result<Summary>;

    // ---- jobs (see the `jobs` module) ---------------------------------------------------------

    /// Asks for a sync of the integration at `run_at`. At most one job per integration is queued
    /// or running: an earlier request brings the queued job forward (a `Requested` kind wins
    /// over `Scheduled`); a running job is left alone and reported.
    async fn enqueue_job(
        &self,
        integration_id: IntegrationId,
        kind: JobKind,
        run_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Enqueued>;
    /// Claims the oldest due job (of `only` this integration, if given) for `worker`: a queued job
    /// whose time has come, or a running one without a heartbeat since `now - lease` (its worker
    /// died; the run that worker left is closed as abandoned). Scheduled jobs of disabled
    /// integrations wait, and so does a job whose app registration (product, tenant, client) is
    /// already running another integration's job, in this process or any other: Microsoft's rate
    /// limits are per application and tenant. `None` when nothing can be claimed.
    async fn claim_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        only: Option<IntegrationId>,
    ) -> Result<Option<Job>>;
    /// The right to run sync jobs in this process: on SQLite only one process at a time holds
    /// it (`Conflict`, saying what to do, for a second one); on PostgreSQL every process may.
    /// Hold it as long as the process runs jobs.
    fn hold_worker_slot(&self) -> Result<crate::WorkerSlot>;
    /// Hands a job `worker` holds back to the queue, due at `due_at` (`why` is kept as its last
    /// error), and closes the run the worker's process had open for it: the worker stopped before
    /// finishing (SIGTERM) and has stopped the sync, or the sync could not start yet and is
    /// retried later. `Conflict` when it no longer holds it.
    async fn release_job(
        &self,
        job_id: i64,
        worker: &str,
        now: DateTime<Utc>,
        due_at: DateTime<Utc>,
        why: &str,
    ) -> Result<Job>;
    /// Closes, as failed with `why`, the run of `integration` that `worker`'s process has open:
    /// the worker lost the job (another worker took it over) and stopped the sync. Nothing when
    /// it has none.
    async fn close_runs_of_worker(
        &self,
        integration_id: IntegrationId,
        worker: &str,
        now: DateTime<Utc>,
        why: &str,
    ) -> Result<()>;
    /// The worker still holds the job and is alive. `Conflict` when it no longer holds it.
    async fn heartbeat_job(&self, job_id: i64, worker: &str, now: DateTime<Utc>) -> Result<()>;
    /// Closes a held job as done (`error` = `None`) or failed. `Conflict` when the worker no longer
    /// holds it. Old finished jobs of the integration are pruned.
    async fn finish_job(
        &self,
        job_id: i64,
        worker: &str,
        now: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<Job>;
    /// Jobs, newest first: of one integration or all, only queued and running ones or all.
    async fn list_jobs(
        &self,
        vis: &Visibility,
        integration: Option<IntegrationId>,
        active_only: bool,
        limit: u32,
    ) -> Result<Vec<Job>>;

    // ---- operations (see the `ops` module) ----------------------------------------------------

    /// Whether the database answers, and its schema against this build's migrations (`/readyz`).
    /// `Err` when the database cannot be reached.
    async fn schema_state(&self) -> Result<crate::ops::SchemaState>;

    /// Writes a consistent copy of the database, as of one committed moment, to `dest` while
    /// others keep reading and writing. SQLite only: PostgreSQL's tool for it is `pg_dump`.
    async fn backup_into(&self, dest: &std::path::Path) -> Result<()> {
        let _ = dest;
        Err(crate::error::StoreError::InvalidInput(
            "this database is PostgreSQL: back it up with pg_dump".to_owned(),
        ))
    }

    // ---- SLA settings, criticality rules and SLA reporting (see `crate::sla`) ----------------

    /// The installation's SLA days (the model's defaults until an administrator changes them).
    async fn sla_settings(&self) -> Result<SlaSettings>;
    /// Saves the installation's SLA days and their audit entry (`sla.update`) in one transaction.
    /// `InvalidInput`, in words, when the model refuses them (`SlaPolicy::new`).
    async fn set_sla_settings(
        &self,
        days: SlaDays,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<SlaSettings>;
    /// The integration's own SLA, if it has one. `NotFound` when it is not in `vis`.
    async fn integration_sla(
        &self,
        vis: &Visibility,
        id: IntegrationId,
    ) -> Result<Option<IntegrationSla>>;
    /// Sets (or, with `None`, removes) the integration's own SLA, with its audit entry
    /// (`integration.sla`), in one transaction. `NotFound` when it is not in `vis`.
    async fn set_integration_sla(
        &self,
        vis: &Visibility,
        id: IntegrationId,
        days: Option<SlaDays>,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<IntegrationSla>>;
    /// The criticality rules, in order.
    async fn criticality_rules(&self) -> Result<Vec<StoredRule>>;
    /// Replaces the criticality rules with `rules` (in this order), with the audit entry
    /// (`criticality_rules.update`), in one transaction. `InvalidInput`, in words, for a rule
    /// without a name or value, a name used twice, or too many rules.
    async fn set_criticality_rules(
        &self,
        rules: &[CriticalityRule],
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<StoredRule>>;
    /// Records the integration's open findings by decision and severity at `at`, for run `run_id`
    /// (the burn-down and the SLA report's open counts): one INSERT ... SELECT.
    async fn record_sla_snapshot(
        &self,
        integration: IntegrationId,
        run_id: RunId,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// Snapshot rows taken since `since`, of one integration or of every one in `vis`, oldest
    /// first.
    async fn sla_snapshots(
        &self,
        vis: &Visibility,
        integration: Option<IntegrationId>,
        since: DateTime<Utc>,
    ) -> Result<Vec<SlaSnapshot>>;
    /// The rows of the latest snapshot of each integration in `vis`.
    async fn latest_sla_snapshots(&self, vis: &Visibility) -> Result<Vec<SlaSnapshot>>;
    /// The findings in `vis` fixed from `since` to `until`, grouped for the SLA report.
    async fn fixed_for_sla(
        &self,
        vis: &Visibility,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<FixedGroup>>;

    // ---- exceptions and the remediation plan (see `crate::exceptions`, `crate::remediation`) ---

    /// Stores an exception and its audit entry ([`crate::exceptions::audit_entry`], action
    /// `exception.create` by `created_by`) in one transaction. `NotFound` when its integration
    /// does not exist or is not in `vis`, or a finding scope's finding is not one of the
    /// integration's. One for every integration (none named) can only be granted by whoever
    /// sees every workspace (`vis` is `All`): it would reach into every workspace.
    async fn create_exception(
        &self,
        vis: &Visibility,
        new: &NewException,
    ) -> Result<StoredException>;
    /// `NotFound` when there is none with this id in `vis` (an exception is in it when its
    /// integration is; one for every integration is in every visibility, since it covers
    /// findings everywhere, but only `All` may revoke it).
    async fn get_exception(&self, vis: &Visibility, id: i64) -> Result<StoredException>;
    /// Exceptions in `filter` and `vis`, newest first, at most `limit`.
    async fn list_exceptions(
        &self,
        vis: &Visibility,
        filter: &ExceptionFilter,
        limit: u32,
    ) -> Result<Vec<StoredException>>;
    /// Ends an exception at `at` (`by` revoked it) and records it in the audit log (action
    /// `exception.revoke`), in one transaction. `Conflict` when it had already ended; `NotFound`
    /// when there is none with this id in `vis`.
    async fn revoke_exception(
        &self,
        vis: &Visibility,
        id: i64,
        at: DateTime<Utc>,
        by: &str,
    ) -> Result<StoredException>;
    /// The exceptions that reached their expiry by `now` and whose end is not in the audit log
    /// yet: records each ([`crate::exceptions::audit_entry`], action `exception.expire`, by
    /// `actor`) and marks it recorded, in one transaction, and returns them. Revoked ones were
    /// recorded when revoked.
    async fn record_expired_exceptions(
        &self,
        now: DateTime<Utc>,
        actor: &str,
    ) -> Result<Vec<StoredException>>;
    /// A page of the remediation plan at `now`, from `offset`; `next` is the next page's offset.
    async fn remediations(
        &self,
        vis: &Visibility,
        filter: &RemediationFilter,
        sort: RemediationSort,
        now: DateTime<Utc>,
        offset: u32,
        limit: u32,
    ) -> Result<Page<Remediation, u32>> {
        let (page, _) = self
            .remediations_and_counts(vis, filter, sort, now, offset, limit)
            .await?;
        Ok(page)
    }
    /// [`Store::remediations`] with the immediate and overdue findings of the whole plan (all
    /// its fixes, not only the page's), from the same read: what "Fix first" and the dashboard
    /// lead with. They are the plan's, so as of each integration's last count for what runs
    /// changed, like the plan, and as of `now` for due dates and exceptions; counting them from
    /// the findings instead read every overdue finding's index entry (0.12 s at 1,900,000).
    async fn remediations_and_counts(
        &self,
        vis: &Visibility,
        filter: &RemediationFilter,
        sort: RemediationSort,
        now: DateTime<Utc>,
        offset: u32,
        limit: u32,
    ) -> Result<(Page<Remediation, u32>, UrgentCounts)>;
    /// Counts the integration's remediation plan again, as of `at` (a run's end does it by
    /// itself; assessing findings outside a run, as a KEV refresh does, needs it after).
    async fn refresh_fix_plan(&self, integration: IntegrationId, at: DateTime<Utc>) -> Result<()>;
    /// The integrations whose remediation plan is read from their findings until it is counted
    /// again (never counted, e.g. after an upgrade, or stale) and that no run is counting.
    async fn fix_plans_to_count(&self) -> Result<Vec<IntegrationId>>;

    // ---- outgoing webhooks (see `crate::webhooks`, docs/webhooks.md) ----------------------------

    /// Stores a webhook and its audit entry (`webhook.create` by `created_by`) in one
    /// transaction. One for every workspace (none named) only with `vis` `All`; a workspace
    /// outside `vis` is `NotFound`; a name already taken (case-insensitively) is a `Conflict`.
    async fn create_webhook(&self, vis: &Visibility, new: &NewWebhook) -> Result<StoredWebhook>;
    /// The webhooks in `vis` (of its workspaces; those of every workspace only in `All`), by name.
    async fn list_webhooks(&self, vis: &Visibility) -> Result<Vec<StoredWebhook>>;
    /// `NotFound` when there is none with this id in `vis`.
    async fn get_webhook(&self, vis: &Visibility, id: i64) -> Result<StoredWebhook>;
    /// The sealed URL and signing secret, for the sender to open.
    async fn webhook_secrets(&self, id: i64) -> Result<WebhookSecrets>;
    /// Enables or disables a webhook, audited (`webhook.enable`, `webhook.disable`).
    async fn set_webhook_enabled(
        &self,
        vis: &Visibility,
        id: i64,
        enabled: bool,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredWebhook>;
    /// Removes a webhook with its deliveries, audited (`webhook.delete`).
    async fn delete_webhook(
        &self,
        vis: &Visibility,
        id: i64,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredWebhook>;
    /// Queues an event for its recipients, once per webhook and dedup key; returns the new
    /// deliveries' ids. `NotFound` for [`Recipients::One`] of a webhook that does not exist.
    async fn enqueue_webhook_event(
        &self,
        event: &NewWebhookEvent,
        to: Recipients,
    ) -> Result<Vec<i64>>;
    /// Claims up to `limit` pending deliveries due at `now` (of enabled webhooks; or `only` this
    /// delivery, whatever its webhook): counts the attempt and moves it `lease` ahead, so that no
    /// other worker claims it meanwhile and one that dies leaves it to be tried again.
    async fn claim_webhook_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u32,
        only: Option<i64>,
    ) -> Result<Vec<ClaimedDelivery>>;
    /// Logs an attempt and sets the delivery's status and next try from it.
    async fn record_webhook_attempt(&self, delivery: i64, outcome: &AttemptOutcome) -> Result<()>;
    /// A webhook's newest deliveries with their attempts. `NotFound` for a webhook not in `vis`.
    async fn list_webhook_deliveries(
        &self,
        vis: &Visibility,
        webhook: i64,
        limit: u32,
    ) -> Result<Vec<StoredDelivery>>;
    /// Records that `kind` was alerted for each subject; returns those not alerted before.
    async fn mark_alerted(
        &self,
        kind: &str,
        subjects: &[String],
        at: DateTime<Utc>,
    ) -> Result<Vec<String>>;

    // ---- audit log ---------------------------------------------------------------------------

    async fn record_audit(&self, entry: &NewAuditEntry) -> Result<i64>;
    /// The newest entries first.
    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEntry>>;

    // ---- accounts (portal users, sessions, API tokens) ----------------------------------------

    /// Stores a new portal account. A name already taken (case-insensitively) is a `Conflict`.
    async fn create_user(&self, new: &NewUser) -> Result<User>;
    /// The account and its password hash, by name (case-insensitive), for checking a login.
    async fn user_credentials(&self, name: &str) -> Result<Option<UserCredentials>>;
    /// `NotFound` when there is none with this id.
    async fn get_user(&self, id: i64) -> Result<User>;
    /// All accounts, by name.
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Replaces an account's password hash, records `at` as the time it changed (sessions signed
    /// in before then end) and whether it must be changed again at the next sign-in. `NotFound`
    /// when there is none with this id.
    async fn set_password(
        &self,
        id: i64,
        password_hash: &str,
        must_change: bool,
        at: DateTime<Utc>,
    ) -> Result<User>;
    /// Removes an account. `NotFound` when there is none with this id; `Conflict` when it is the
    /// last admin (checked in the same step as the removal, so two removals at once cannot leave
    /// no admin).
    async fn delete_user(&self, id: i64) -> Result<()>;

    /// Keeps the hash of a first-run setup token until `expires_at` (and forgets expired ones).
    async fn issue_setup_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    /// Uses a setup token: `true` once for a token issued and not expired at `now`, then `false`
    /// (all setup tokens are forgotten once one is used).
    async fn consume_setup_token(&self, token_hash: &str, now: DateTime<Utc>) -> Result<bool>;

    /// Creates or replaces a session record (opaque JSON) expiring at `expires_at`.
    async fn save_session(&self, id: &str, data: &str, expires_at: DateTime<Utc>) -> Result<()>;
    /// A session record that has not expired at `now`.
    async fn load_session(&self, id: &str, now: DateTime<Utc>) -> Result<Option<String>>;
    async fn delete_session(&self, id: &str) -> Result<()>;
    /// Removes sessions expired at `now`; returns how many.
    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64>;

    /// Stores a new API token (its hash only).
    async fn create_api_token(&self, new: &NewApiToken) -> Result<ApiToken>;
    /// The token whose hash this is.
    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>>;
    /// All API tokens, newest first.
    async fn list_api_tokens(&self) -> Result<Vec<ApiToken>>;
    /// `NotFound` when there is none with this id.
    async fn delete_api_token(&self, id: i64) -> Result<()>;

    // ---- streaming (provided) ----------------------------------------------------------------

    /// Every asset matching the filter, page by page: never more than one page in memory, and no
    /// long-running read transaction (a sync may write meanwhile; each row still comes once).
    fn stream_assets(
        &self,
        vis: Visibility,
        filter: AssetFilter,
    ) -> BoxStream<'_, Result<StoredAsset>> {
        filtered_stream!(self, vis, filter, assets_page)
    }

    /// Every finding matching the filter; see [`Store::stream_assets`].
    fn stream_findings(
        &self,
        vis: Visibility,
        filter: FindingFilter,
    ) -> BoxStream<'_, Result<StoredFinding>> {
        filtered_stream!(self, vis, filter, findings_page)
    }

    /// Every recommendation matching the filter; see [`Store::stream_assets`].
    fn stream_recommendations(
        &self,
        vis: Visibility,
        filter: RecommendationFilter,
    ) -> BoxStream<'_, Result<StoredRecommendation>> {
        filtered_stream!(self, vis, filter, recommendations_page)
    }

    /// Every catalogue entry matching the filter; see [`Store::stream_assets`].
    fn stream_vulnerabilities(
        &self,
        vis: Visibility,
        filter: VulnerabilityFilter,
    ) -> BoxStream<'_, Result<StoredVulnerability>> {
        filtered_stream!(self, vis, filter, vulnerabilities_page)
    }
}

/// Turns a page fetcher into a stream of items. `fetch(after)` returns a page and the cursor of
/// the next one (`None` after the last page).
fn keyset_stream<'a, T, C, F, Fut>(start: Option<C>, fetch: F) -> BoxStream<'a, Result<T>>
where
    T: Send + 'a,
    C: Send + 'a,
    F: Fn(Option<C>) -> Fut + Send + Sync + 'a,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<C>)>> + Send + 'a,
{
    // State: Some(cursor) while there are pages to fetch; None once the last page was fetched.
    stream::try_unfold(Some(start), move |state| {
        let fut = state.map(&fetch);
        async move {
            match fut {
                None => Ok(None),
                Some(fut) => {
                    let (items, next) = fut.await?;
                    let more = next.is_some();
                    let state = if more { Some(next) } else { None };
                    Ok(Some((stream::iter(items.into_iter().map(Ok)), state)))
                }
            }
        }
    })
    .try_flatten()
    .boxed()
}
