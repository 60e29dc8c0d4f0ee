//! The store's own request and answer types. Records themselves are `rampart_model` types; these
//! wrap them with what only the store knows (ids, Rampart's history, joins).

use chrono::{DateTime, Utc};
use rampart_model::priority::{Decision, Exception, FactorContribution, SlaStatus, sla_status};
use serde::{Deserialize, Serialize};

use crate::exceptions::relevant_pause;

use rampart_model::{
    Asset, AssetStatus, ClientId, Cloud, CveId, EntityCounts, Finding, FindingKey, FindingStatus,
    IntegrationId, IntegrationName, OddRecords, Product, RunStatus, SecretHint, Severity, TenantId,
    Verdict, Vulnerability, WorkspaceId,
};

/// A client secret as stored: AEAD ciphertext and its nonce. The store never sees the plain secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretCiphertext {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
}

impl std::fmt::Debug for SecretCiphertext {
    // Ciphertext is not secret by itself, but there is no reason to print it into logs either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecretCiphertext({} bytes, nonce {} bytes)",
            self.ciphertext.len(),
            self.nonce.len()
        )
    }
}

/// What `create_integration` needs.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    pub name: IntegrationName,
    pub product: Product,
    pub cloud: Cloud,
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub secret: SecretCiphertext,
    pub hint: SecretHint,
    pub login_url: Option<String>,
    pub api_url: Option<String>,
    pub schedule_minutes: i64,
    pub enabled: bool,
}

/// A partial update of an integration: `None` leaves a field as it is. For the optional URL
/// overrides, `Some(None)` removes the override.
#[derive(Debug, Clone, Default)]
pub struct IntegrationUpdate {
    pub name: Option<IntegrationName>,
    pub cloud: Option<Cloud>,
    pub tenant_id: Option<TenantId>,
    pub client_id: Option<ClientId>,
    /// A new secret always comes with its new hint.
    pub secret: Option<(SecretCiphertext, SecretHint)>,
    pub login_url: Option<Option<String>>,
    pub api_url: Option<Option<String>>,
    pub schedule_minutes: Option<i64>,
    pub enabled: Option<bool>,
}

/// What one batched upsert did. Every distinct key of the batch is counted exactly once, in one of
/// the four fields; a key repeated inside one batch counts once (the last occurrence wins).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpsertCounts {
    /// Not stored before.
    pub new: u64,
    /// Stored, and a content column changed. The source's own first/last seen timestamps are
    /// stored but are not content: Microsoft moves `lastSeen` on every snapshot.
    pub updated: u64,
    /// Stored and identical (only Rampart's `last_observed`/`seen_run` moved).
    pub unchanged: u64,
    /// A `fixed` finding or `missing` asset that the source reports again; it is open/active again.
    pub reopened: u64,
}

impl UpsertCounts {
    pub fn total(&self) -> u64 {
        self.new + self.updated + self.unchanged + self.reopened
    }

    /// Counts `n` rows whose upsert returned `change_kind` = `kind` (0 new, 1 updated,
    /// 2 unchanged, 3 reopened; see the migrations).
    pub(crate) fn add_kind(&mut self, kind: i64, n: u64) {
        match kind {
            0 => self.new += n,
            1 => self.updated += n,
            3 => self.reopened += n,
            _ => self.unchanged += n,
        }
    }
}

impl std::ops::AddAssign for UpsertCounts {
    fn add_assign(&mut self, o: Self) {
        self.new += o.new;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.reopened += o.reopened;
    }
}

/// One change from Microsoft's delta API, applied in order by `apply_finding_changes`.
#[derive(Debug, Clone, PartialEq)]
pub enum FindingChange {
    /// A finding the source reports as new.
    New(Finding),
    /// A finding the source reports as changed.
    Updated(Finding),
    /// The source reports the finding fixed at `at`.
    Fixed { key: FindingKey, at: DateTime<Utc> },
}

/// What `apply_finding_changes` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaCounts {
    /// New and Updated changes, counted like `upsert_findings`.
    pub upserted: UpsertCounts,
    /// Open findings marked fixed.
    pub fixed: u64,
    /// Fixed changes for findings Rampart does not hold open (unknown, or already fixed).
    pub ignored: u64,
}

/// The safety rules of reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcilePolicy {
    /// Refuse (change nothing) when more than this share of active assets would become missing.
    pub max_missing_share: f64,
    /// The time written as `fixed_at` / `missing_since`.
    pub now: DateTime<Utc>,
    /// What the run read in full.
    pub scope: ReconcileScope,
}

/// What a run read in full, and so what reconciliation may conclude from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReconcileScope {
    /// Assets and findings (and, for Defender for Cloud, recommendations) were read in full:
    /// unseen assets become missing, unseen findings fixed, unseen recommendations `Removed`.
    #[default]
    Everything,
    /// Only assets were read in full (findings came as changes): unseen assets become missing and
    /// their open findings fixed; other findings are left to the changes. Recommendations are
    /// left alone.
    AssetsOnly,
    /// Defender for Cloud: only these subscriptions (GUIDs; compared lower-cased) were read in
    /// full. Only assets whose `source_id` is `/subscriptions/{id}` or starts with
    /// `/subscriptions/{id}/` take part: the circuit breaker counts within them, unseen ones
    /// become missing, and their findings not seen (or of a missing asset) become fixed.
    /// Recommendations of these subscriptions not seen by the run become `Removed`. Everything
    /// of other subscriptions (e.g. one that answered 403) is left as it is.
    Subscriptions(Vec<String>),
}

impl ReconcilePolicy {
    /// The default circuit breaker: 30 % of the active assets.
    pub const DEFAULT_MAX_MISSING_SHARE: f64 = 0.30;

    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            max_missing_share: Self::DEFAULT_MAX_MISSING_SHARE,
            now,
            scope: ReconcileScope::Everything,
        }
    }
}

/// What `reconcile` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReconcileOutcome {
    /// The changes were made.
    Applied {
        assets_missing: u64,
        findings_fixed: u64,
        /// Recommendations that became `Removed` (always 0 for endpoint integrations).
        recommendations_removed: u64,
    },
    /// The circuit breaker held: nothing was changed, a person has to confirm.
    Held {
        would_mark_missing: u64,
        active: u64,
    },
}

/// The end of a run, as the sync engine reports it to `finish_run`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// `Succeeded`, `Partial` or `Failed` (`Running` is refused).
    pub status: RunStatus,
    pub finished_at: DateTime<Utc>,
    pub verdict: Option<Verdict>,
    pub assets: EntityCounts,
    pub findings: EntityCounts,
    pub vulnerabilities: EntityCounts,
    /// Defender for Cloud recommendations; zero for Endpoint runs.
    pub recommendations: EntityCounts,
    pub api_calls: u64,
    pub throttled: u64,
    pub retries: u64,
    pub bytes: u64,
    pub error: Option<String>,
    /// See [`SyncRun::source`](rampart_model::SyncRun::source).
    pub source: Option<String>,
    /// See [`SyncRun::odd_records`](rampart_model::SyncRun::odd_records).
    pub odd_records: OddRecords,
}

impl RunOutcome {
    /// An outcome with the given status and empty counters.
    pub fn new(status: RunStatus, finished_at: DateTime<Utc>) -> Self {
        Self {
            status,
            finished_at,
            verdict: None,
            assets: EntityCounts::default(),
            findings: EntityCounts::default(),
            vulnerabilities: EntityCounts::default(),
            recommendations: EntityCounts::default(),
            api_calls: 0,
            throttled: 0,
            retries: 0,
            bytes: 0,
            error: None,
            source: None,
            odd_records: OddRecords::default(),
        }
    }
}

/// An asset with what Rampart knows about it beyond the source's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAsset {
    pub id: i64,
    pub integration_id: IntegrationId,
    pub integration: String,
    pub product: Product,
    pub asset: Asset,
    /// Only vulnerability rows named this asset: the source's device list did not return it
    /// (data retention, device-group scoping). Its name and OS come from those rows.
    #[serde(default)]
    pub known_only_from_vulnerability_data: bool,
    pub status: AssetStatus,
    pub first_observed: DateTime<Utc>,
    pub last_observed: DateTime<Utc>,
    pub missing_since: Option<DateTime<Utc>>,
}

/// The facts of a finding's CVE from the catalogue, when the catalogue has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CveFacts {
    pub severity: Option<Severity>,
    pub cvss: Option<f64>,
    pub epss: Option<f64>,
    pub public_exploit: bool,
    pub exploit_verified: bool,
    pub exploit_in_kit: bool,
    pub published_on: Option<DateTime<Utc>>,
}

/// A finding with its asset's name, Rampart's history and the CVE's facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFinding {
    pub id: i64,
    pub integration_id: IntegrationId,
    pub integration: String,
    pub product: Product,
    /// The finding; `asset_name` is the asset's current name.
    pub finding: Finding,
    pub status: FindingStatus,
    pub first_observed: DateTime<Utc>,
    pub last_observed: DateTime<Utc>,
    pub fixed_at: Option<DateTime<Utc>>,
    pub reopened_count: u64,
    /// 0–100 (see docs/prioritisation.md); `None` until the finding is first assessed.
    pub priority: Option<f64>,
    /// The SSVC decision; `None` when fixed (nothing is pending) or not assessed yet.
    pub decision: Option<Decision>,
    /// When the finding is due; `None` as `decision`.
    pub due_at: Option<DateTime<Utc>>,
    /// When its SLA clock started (Microsoft's first-seen time); `None` as `decision`.
    pub clock_start: Option<DateTime<Utc>>,
    /// Why this priority: the decision's band, then each factor's value and points.
    pub priority_factors: Option<Vec<FactorContribution>>,
    pub cve: Option<CveFacts>,
    /// The exceptions covering it (accepted risk), each as the pause of the SLA clock it stands
    /// for, ordered by their end; empty when none.
    pub exceptions: Vec<Exception>,
}

impl StoredFinding {
    /// Where the finding stands against its SLA at `now`: `closed` when fixed, `accepted` while
    /// an exception covering it is in force, `None` when open and not assessed yet.
    pub fn sla_status(&self, now: DateTime<Utc>) -> Option<SlaStatus> {
        if self.status == FindingStatus::Fixed {
            return Some(SlaStatus::Closed);
        }
        if self.exceptions.iter().any(|e| e.in_force(now)) {
            return Some(SlaStatus::Accepted);
        }
        let (due, start) = (self.due_at?, self.clock_start?);
        let pause = relevant_pause(&self.exceptions, start, now);
        Some(sla_status(now, due, start, pause.as_ref(), false))
    }

    /// The due date at `now`: the stored one, moved later by the time an exception that has
    /// ended paused the clock (docs/prioritisation.md, "Exceptions"). `None` as `due_at`.
    pub fn due_at_now(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (due, start) = (self.due_at?, self.clock_start?);
        Some(match relevant_pause(&self.exceptions, start, now) {
            Some(e) if !e.in_force(now) => e.resumed_due(due),
            _ => due,
        })
    }
}

/// A catalogue entry with how many assets are exposed to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVulnerability {
    pub vulnerability: Vulnerability,
    /// Distinct assets with an open finding of this CVE (within the filter's integration, if any).
    pub exposed_assets: u64,
}

/// Filters of asset listings. Empty = everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetFilter {
    pub integration: Option<IntegrationId>,
    pub status: Option<AssetStatus>,
    /// Case-insensitive substring of the name or the source id. `%` and `_` are literal.
    pub search: Option<String>,
    /// Exactly this OS platform (case-insensitive), e.g. `Windows11`.
    pub os_platform: Option<String>,
    /// Exactly this health status (case-insensitive), e.g. `Active`.
    pub health_status: Option<String>,
    /// Exactly this exposure level (case-insensitive), e.g. `High`.
    pub exposure_level: Option<String>,
    /// Assets carrying this tag (case-insensitive).
    pub tag: Option<String>,
    /// Only assets observed by a run, or concluded missing, after this time. A run stamps what it
    /// observes with its own start time: to miss nothing, pass a time no later than the start of
    /// the runs that were still going when the previous listing was read.
    pub changed_since: Option<DateTime<Utc>>,
}

/// Filters of finding listings. Empty = everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindingFilter {
    pub integration: Option<IntegrationId>,
    pub status: Option<FindingStatus>,
    /// Exactly this severity.
    pub severity: Option<Severity>,
    /// This severity or worse.
    pub min_severity: Option<Severity>,
    pub cve_id: Option<CveId>,
    pub asset_source_id: Option<String>,
    /// Case-insensitive substring of the CVE id, software vendor or name, or asset name.
    pub search: Option<String>,
    /// Only findings a run wrote as new, changed or reopened, fixed, or whose decision, priority
    /// or due date changed, after this time (see [`AssetFilter::changed_since`]). A full read
    /// that finds a finding unchanged leaves its row alone, so it is not listed again.
    pub changed_since: Option<DateTime<Utc>>,
    /// Only open findings with this decision.
    pub decision: Option<Decision>,
    /// Only findings with this SLA status at the given time (`closed`: fixed ones; `accepted`:
    /// open ones an exception covers then).
    pub sla_status: Option<(SlaStatus, DateTime<Utc>)>,
}

/// The order of a sorted finding listing ([`crate::Store::findings_sorted`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FindingOrder {
    /// Most urgent first (ties: the newest id first); not yet assessed findings last.
    #[default]
    PriorityDesc,
    /// Least urgent first (ties: the oldest id first); not yet assessed findings first.
    PriorityAsc,
}

/// Where a page of a priority-sorted finding listing ends: the last row's priority (-1 when it
/// has none) and id. Opaque to API clients: `p<priority>:<id>`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FindingCursor {
    pub priority: f64,
    pub id: i64,
}

impl FindingCursor {
    pub fn of(f: &StoredFinding) -> Self {
        FindingCursor {
            priority: f.priority.unwrap_or(-1.0),
            id: f.id,
        }
    }

    pub fn encode(&self) -> String {
        format!("p{}:{}", self.priority, self.id)
    }

    /// `None` for anything [`FindingCursor::encode`] did not make.
    pub fn parse(s: &str) -> Option<Self> {
        let (priority, id) = s.strip_prefix('p')?.split_once(':')?;
        let priority: f64 = priority.parse().ok()?;
        (priority.is_finite()).then_some(())?;
        Some(FindingCursor {
            priority,
            id: id.parse().ok()?,
        })
    }
}

/// Filters of vulnerability listings. Empty = the whole catalogue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VulnerabilityFilter {
    /// Count exposure within this integration only.
    pub integration: Option<IntegrationId>,
    /// Only CVEs with at least one exposed asset (within `integration`, if given).
    pub exposed_only: bool,
    pub severity: Option<Severity>,
    pub min_severity: Option<Severity>,
    /// Case-insensitive substring of the CVE id or description.
    pub search: Option<String>,
    /// Only catalogue entries added or changed after this time.
    pub changed_since: Option<DateTime<Utc>>,
}

/// One page of a keyset-paginated listing. Pass `next` as `after` to get the following page;
/// `None` means this was the last page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, C = i64> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// Open findings by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityCounts {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    /// Without a severity.
    pub unknown: u64,
}

impl SeverityCounts {
    pub fn total(&self) -> u64 {
        self.critical + self.high + self.medium + self.low + self.unknown
    }

    pub(crate) fn add(&mut self, severity: Option<Severity>, n: u64) {
        match severity {
            Some(Severity::Critical) => self.critical += n,
            Some(Severity::High) => self.high += n,
            Some(Severity::Medium) => self.medium += n,
            Some(Severity::Low) => self.low += n,
            None => self.unknown += n,
        }
    }
}

/// The numbers of a dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub assets_active: u64,
    pub assets_missing: u64,
    pub findings_open: SeverityCounts,
    pub findings_fixed: u64,
    /// Defender for Cloud subscriptions known (listed at least once).
    pub subscriptions: u64,
    /// `Unhealthy` recommendations by their severity.
    pub recommendations_unhealthy: SeverityCounts,
}

/// An audit log entry to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub at: DateTime<Utc>,
    /// Who: a user name, `cli`, `scheduler`.
    pub actor: String,
    /// What: `integration.create`, `integration.delete`, ...
    pub action: String,
    /// On what, e.g. the integration's name.
    pub target: Option<String>,
    /// Free text or JSON. Never a secret.
    pub details: Option<String>,
}

/// A recorded audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub details: Option<String>,
}

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

// ---- accounts (portal users, sessions, API tokens) -----------------------------------------------

/// What a portal account may do: admins change integrations and accounts, viewers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// What `create_user` needs. The password arrives already hashed (argon2 PHC string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    /// The password was chosen by someone else (the demo's one-time password): the account must
    /// change it at its first sign-in.
    pub must_change_password: bool,
}

/// A portal account, without its password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// The account must choose a new password before it can do anything else.
    pub must_change_password: bool,
    /// When the password last changed (`None`: never since the account was created). Sessions
    /// signed in before then are over.
    pub password_changed_at: Option<DateTime<Utc>>,
}

/// An account with its password hash, for checking a login. Not `Serialize`: it never leaves the
/// server.
#[derive(Clone, PartialEq, Eq)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

impl std::fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What an API token may do: `Read` reads, `Admin` also changes integrations and starts syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    Read,
    Admin,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<TokenScope> {
        match s {
            "read" => Some(TokenScope::Read),
            "admin" => Some(TokenScope::Admin),
            _ => None,
        }
    }
}

/// What `create_api_token` needs: the token's hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    pub name: String,
    pub token_hash: String,
    pub scope: TokenScope,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// The one workspace the token reads (and, with `Admin` scope, changes); `None`: a global
    /// token, which only a global admin may create.
    pub workspace: Option<WorkspaceId>,
}

/// A stored API token (its hash is not part of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub scope: TokenScope,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// The one workspace the token reads (and, with `Admin` scope, changes); `None`: a global
    /// token, which only a global admin may create.
    pub workspace: Option<WorkspaceId>,
}

/// A recommended update and how many open findings it would close (dashboard "top fixes").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopFix {
    pub recommended_update: String,
    pub open_findings: u64,
    pub assets: u64,
}

/// An asset ranked by its open findings (dashboard "riskiest assets").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskyAsset {
    pub asset_id: i64,
    pub name: String,
    pub critical: u64,
    pub high: u64,
    pub open_findings: u64,
}
