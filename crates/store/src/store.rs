//! The `Store` trait: everything the sync engine, the CLI and the portal ask of the database.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use rampart_model::{
    Asset, CveId, Finding, Integration, IntegrationId, IntegrationName, SyncRun, Vulnerability,
};

use crate::error::Result;
use crate::run_owner::RunOwner;
use crate::types::*;

/// A run whose process shows no sign of life (no batch written, no heartbeat) for this long is
/// considered abandoned: the next `start_run` of its integration closes it as failed.
pub const STALE_RUN_AFTER: Duration = Duration::from_secs(30 * 60);

/// Rows per page when the streaming helpers walk a listing.
pub const STREAM_PAGE_SIZE: u32 = 1000;

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

    /// Stores a new integration. A name already taken (case-insensitively) is a `Conflict`.
    async fn create_integration(&self, new: &NewIntegration) -> Result<Integration>;
    /// `NotFound` when there is none with this id.
    async fn get_integration(&self, id: IntegrationId) -> Result<Integration>;
    /// Case-insensitive. `NotFound` says how to list the existing ones.
    async fn get_integration_by_name(&self, name: &IntegrationName) -> Result<Integration>;
    /// All integrations, by name.
    async fn list_integrations(&self) -> Result<Vec<Integration>>;
    /// Changes the given fields; a rename onto a taken name is a `Conflict`.
    async fn update_integration(
        &self,
        id: IntegrationId,
        update: &IntegrationUpdate,
    ) -> Result<Integration>;
    /// Removes the integration and everything stored for it (assets, findings, runs, state, jobs).
    /// The CVE catalogue and the audit log stay.
    async fn delete_integration(&self, id: IntegrationId) -> Result<()>;
    /// The encrypted client secret, for the sync engine to decrypt.
    async fn integration_secret(&self, id: IntegrationId) -> Result<SecretCiphertext>;

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
    ) -> Result<i64> {
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
    ) -> Result<i64>;
    /// Tells the store the run's process is alive (e.g. while it waits out a rate limit).
    /// Every batched write of the run does this too.
    async fn heartbeat_run(&self, run_id: i64, now: DateTime<Utc>) -> Result<()>;
    /// Closes a running run with its outcome and returns it. A run that is no longer running
    /// (closed as abandoned by another process, or finished twice) is a `Conflict`.
    async fn finish_run(&self, run_id: i64, outcome: &RunOutcome) -> Result<SyncRun>;
    async fn get_run(&self, run_id: i64) -> Result<SyncRun>;
    /// The newest runs first.
    async fn list_runs(&self, integration_id: IntegrationId, limit: u32) -> Result<Vec<SyncRun>>;
    /// The newest `succeeded` run, if any.
    async fn last_successful_run(&self, integration_id: IntegrationId) -> Result<Option<SyncRun>>;

    // ---- batched writes (the engine sends thousands of rows per call) -------------------------

    /// Upserts assets keyed by (integration, `source_id`) and marks them seen by `run_id`.
    /// A `missing` asset seen again becomes `active` (counted as reopened).
    /// The run must be running and belong to the integration.
    async fn upsert_assets(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        assets: &[Asset],
    ) -> Result<UpsertCounts>;

    /// Upserts CVE catalogue entries keyed by `cve_id` (`reopened` is always 0).
    async fn upsert_vulnerabilities(&self, vulns: &[Vulnerability]) -> Result<UpsertCounts>;

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
        run_id: i64,
        findings: &[Finding],
    ) -> Result<UpsertCounts>;

    /// Applies delta changes in order, in one transaction: `New`/`Updated` as `upsert_findings`,
    /// `Fixed` marks an open finding fixed with `fixed_at` = the event time.
    async fn apply_finding_changes(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        changes: &[FindingChange],
    ) -> Result<DeltaCounts>;

    /// Concludes a provably complete full read, in one transaction: active assets not seen by
    /// `run_id` become `missing` (`missing_since` = `policy.now`); open findings not seen by it, and
    /// open findings of missing assets, become `fixed` (`fixed_at` = `policy.now`).
    ///
    /// Circuit breaker: when the assets to mark missing exceed `policy.max_missing_share` of the
    /// active assets, nothing changes and the answer is `Held`.
    async fn reconcile(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        policy: ReconcilePolicy,
    ) -> Result<ReconcileOutcome>;

    // ---- reads (keyset pages; see the `stream_*` helpers for whole listings) ------------------

    /// Assets with `id > after`, in id order.
    async fn assets_page(
        &self,
        filter: &AssetFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredAsset>>;
    /// Findings with `id > after`, in id order, joined with asset name and CVE facts.
    async fn findings_page(
        &self,
        filter: &FindingFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredFinding>>;
    /// Catalogue entries with `cve_id > after`, in CVE id order, with their exposure.
    async fn vulnerabilities_page(
        &self,
        filter: &VulnerabilityFilter,
        after: Option<CveId>,
        limit: u32,
    ) -> Result<Page<StoredVulnerability, CveId>>;
    /// Dashboard numbers, for one integration or all.
    async fn counts(&self, integration: Option<IntegrationId>) -> Result<Counts>;

    /// The recommended updates that close the most open findings, most first.
    async fn top_fixes(&self, limit: u32) -> Result<Vec<TopFix>>;
    /// The assets with the most critical, then high, then any open findings.
    async fn riskiest_assets(&self, limit: u32) -> Result<Vec<RiskyAsset>>;

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
    fn stream_assets(&self, filter: AssetFilter) -> BoxStream<'_, Result<StoredAsset>> {
        keyset_stream(None, move |after| {
            let filter = filter.clone();
            async move {
                let page = self.assets_page(&filter, after, STREAM_PAGE_SIZE).await?;
                Ok((page.items, page.next))
            }
        })
    }

    /// Every finding matching the filter; see [`Store::stream_assets`].
    fn stream_findings(&self, filter: FindingFilter) -> BoxStream<'_, Result<StoredFinding>> {
        keyset_stream(None, move |after| {
            let filter = filter.clone();
            async move {
                let page = self.findings_page(&filter, after, STREAM_PAGE_SIZE).await?;
                Ok((page.items, page.next))
            }
        })
    }

    /// Every catalogue entry matching the filter; see [`Store::stream_assets`].
    fn stream_vulnerabilities(
        &self,
        filter: VulnerabilityFilter,
    ) -> BoxStream<'_, Result<StoredVulnerability>> {
        keyset_stream(None, move |after| {
            let filter = filter.clone();
            async move {
                let page = self
                    .vulnerabilities_page(&filter, after, STREAM_PAGE_SIZE)
                    .await?;
                Ok((page.items, page.next))
            }
        })
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
