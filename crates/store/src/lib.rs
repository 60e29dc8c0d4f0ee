//! Rampart's store: one schema, two backends.
//!
//! - **SQLite** (the default): a single file in WAL mode, nothing to install.
//! - **PostgreSQL**: for large estates and for several `rampart serve` processes sharing work.
//!
//! Both implement [`Store`], carry their own migrations (`migrations/sqlite`,
//! `migrations/postgres`, embedded in the binary) and pass the same scenario suite
//! (`tests/scenarios`). Bulk writes use what each engine is fastest at: prepared multi-row upserts
//! in one transaction on SQLite, `COPY` into a staging table and one `INSERT … SELECT … ON
//! CONFLICT` on PostgreSQL.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rampart_store::StoreError> {
//! let store = rampart_store::connect(rampart_store::DEFAULT_DATABASE_URL).await?;
//! for integration in store.list_integrations(&rampart_store::Visibility::All).await? {
//!     println!("{} ({})", integration.name, integration.product);
//! }
//! # Ok(()) }
//! ```
//!
//! The `testing` module (cargo feature `testing`) gives tests a fresh SQLite file or a fresh
//! PostgreSQL database, starting a throwaway PostgreSQL server when `TEST_DATABASE_URL` is unset.

mod cloud_sql;
mod common;
mod db;
mod error;
pub mod exceptions;
pub mod export;
mod first_load_tally;
mod fix_plan;
pub mod intel;
mod jobs;
mod ops;
mod postgres;
pub mod priority;
pub mod remediation;
mod run_owner;
pub mod sla;
mod sla_sql;
mod sort;
mod sql_store;
mod sqlite;
mod store;
mod summary;
mod types;
mod types_cloud;
pub mod webhooks;
mod worker_slot;
mod workspace;

#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

pub use error::{DriverError, StoreError};
pub use exceptions::{
    ExceptionFilter, ExceptionScope, ExceptionState, NewException, StoredException, audit_entry,
    fix_key,
};
pub use intel::{IntelCheck, IntelSource, KEV_SOURCE, KevSnapshot, kev_index};
pub use jobs::{Enqueued, JOB_LEASE, Job, JobKind, JobState};
pub use ops::{
    Restored, SchemaState, pg_dump_command, restore_sqlite, sqlite_backup, sqlite_path,
    verify_sqlite_backup,
};
pub use postgres::redact as redact_url;
pub use priority::{
    AssessScope, AssessmentInput, AssessmentWrite, Explanation, InsertAssessor, StoredAssessment,
    UrgentCounts, parse_explanation,
};
pub use remediation::{Remediation, RemediationFilter, RemediationSort, microsoft_link};
pub use run_owner::RunOwner;
pub use sla::{
    BurndownPoint, FixedGroup, IntegrationSla, SlaLine, SlaReport, SlaSettings, SlaSnapshot,
    StoredRule, burndown,
};
pub use sla_sql::matcher_from;
pub use sort::{AssetSort, AssetSortKey, ListedAsset, OpenFindings, SortCursor};
pub use sql_store::SqlStore;
pub use sqlite::SQLITE_MAX_PARAMS;
pub use store::{STALE_RUN_AFTER, STREAM_PAGE_SIZE, Store};
pub use summary::Summary;
pub use webhooks::{
    AttemptNext, AttemptOutcome, ClaimedDelivery, DeliveryAttempt, DeliveryStatus, NewWebhook,
    NewWebhookEvent, Recipients, StoredDelivery, StoredWebhook, WebhookEventKind, WebhookFormat,
    WebhookSecrets,
};
pub use worker_slot::WorkerSlot;
pub use workspace::{Membership, Visibility, Workspace};
// The store's request and answer types, by area (the records themselves are `rampart_model`'s).
// integrations and runs
pub use types::{Backend, IntegrationUpdate, NewIntegration, RunOutcome, SecretCiphertext};
// batched writes and reconciliation
pub use types::{
    DeltaCounts, FindingChange, ReconcileOutcome, ReconcilePolicy, ReconcileScope, UpsertCounts,
};
// reads
pub use types::{
    AssetFilter, Counts, CveFacts, FindingCursor, FindingFilter, FindingOrder, Page, RiskyAsset,
    SeverityCounts, StoredAsset, StoredFinding, StoredVulnerability, TopFix, VulnerabilityFilter,
};
// audit log and accounts
pub use types::{
    ApiToken, AuditEntry, NewApiToken, NewAuditEntry, NewUser, Role, TokenScope, User,
    UserCredentials,
};
// Defender for Cloud
pub use types_cloud::{
    PosturePoint, RECOMMENDATION_REMOVED, RecommendationFilter, StoredControlScore,
    StoredPostureScore, StoredRecommendation, StoredSubscription, SubscriptionRead,
    SubscriptionReadOutcome,
};

/// The store on SQLite: [`SqlStore::open`] opens one.
pub type SqliteStore = SqlStore;
/// The store on PostgreSQL: [`SqlStore::connect`] opens one.
pub type PgStore = SqlStore;

/// Where Rampart keeps its data when no `--database` / `DATABASE_URL` is given.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./rampart-data/rampart.db";

/// The default database URL (see [`DEFAULT_DATABASE_URL`]).
pub fn default_url() -> &'static str {
    DEFAULT_DATABASE_URL
}

/// Opens the store a URL names, bringing its schema up to date:
///
/// - `postgres://…` or `postgresql://…`: a connection pool; migrations run under PostgreSQL's
///   advisory lock, so several processes may start at once.
/// - `sqlite://PATH`, `sqlite:PATH` or a plain `PATH`: the file and its directory are created if
///   missing; WAL, `synchronous=NORMAL`, foreign keys and a busy timeout are set.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(SqlStore::connect(url).await?));
    }
    if let Some((scheme, _)) = url.split_once("://")
        && scheme != "sqlite"
    {
        return Err(StoreError::InvalidUrl {
            url: postgres::redact(url),
            reason: format!("'{scheme}' databases are not supported"),
        });
    }
    let path = sqlite::path_from_url(url)?;
    Ok(Arc::new(SqlStore::open(&path).await?))
}
