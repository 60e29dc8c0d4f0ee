//! The API's JSON shapes. Integrations never carry their secret out: only its hint.

use chrono::{DateTime, NaiveDate, Utc};
use rampart_model::export::rfc3339;
use rampart_model::priority::{KevEntry, RansomwareUse};
use rampart_model::{Integration, SyncRun};
use rampart_store::export::{asset_record, finding_record_at};
use rampart_store::{ListedAsset, OpenFindings, StoredFinding, StoredVulnerability};
use rampart_sync::{ConnectionReport, StepOutcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

fn ts(t: &DateTime<Utc>) -> String {
    rfc3339(t)
}

fn ts_opt(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.as_ref().map(rfc3339)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationOut {
    pub id: i64,
    /// The workspace it belongs to (`GET /api/v1/workspaces`).
    pub workspace_id: i64,
    pub name: String,
    /// `endpoint` or `cloud`.
    pub product: String,
    /// `commercial`, `gcc`, `gcc-high`, `dod` or `china`.
    pub cloud: String,
    pub tenant_id: String,
    pub client_id: String,
    /// The secret's last characters, like `••••a1b2`. The secret itself is write-only.
    pub secret_hint: String,
    pub secret_expires_on: Option<NaiveDate>,
    pub login_url: Option<String>,
    pub api_url: Option<String>,
    pub schedule_minutes: i64,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Integration> for IntegrationOut {
    fn from(i: &Integration) -> Self {
        Self {
            id: i.id.get(),
            workspace_id: i.workspace_id.0,
            name: i.name.to_string(),
            product: i.product.as_str().into(),
            cloud: i.cloud.as_str().into(),
            tenant_id: i.tenant_id.to_string(),
            client_id: i.client_id.to_string(),
            secret_hint: i.secret_hint.masked(),
            secret_expires_on: i.secret_hint.expires_on,
            login_url: i.login_url.clone(),
            api_url: i.api_url.clone(),
            schedule_minutes: i.schedule_minutes,
            enabled: i.enabled,
            created_at: ts(&i.created_at),
            updated_at: ts(&i.updated_at),
        }
    }
}

/// A new integration, or (with every field optional) changes to one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationIn {
    pub name: Option<String>,
    /// `endpoint` or `cloud` (fixed once created).
    pub product: Option<String>,
    pub cloud: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    /// Write-only: never returned.
    pub client_secret: Option<String>,
    /// `YYYY-MM-DD`; an empty string removes it.
    pub secret_expires_on: Option<String>,
    pub login_url: Option<String>,
    pub api_url: Option<String>,
    pub schedule_minutes: Option<i64>,
    pub enabled: Option<bool>,
    /// Creating only: the workspace to add it to (default: the token's own, or Default for a
    /// global token). A workspace the token may not change is answered 404.
    pub workspace_id: Option<i64>,
}

/// A workspace (one customer or team; docs/workspaces.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceOut {
    pub id: i64,
    pub name: String,
    pub created_at: String,
}

impl From<&rampart_store::Workspace> for WorkspaceOut {
    fn from(w: &rampart_store::Workspace) -> Self {
        Self {
            id: w.id.0,
            name: w.name.clone(),
            created_at: ts(&w.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepOut {
    pub name: String,
    /// `passed`, `failed` or `skipped`.
    pub outcome: String,
    pub detail: String,
    pub fix: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestReportOut {
    pub passed: bool,
    pub steps: Vec<StepOut>,
}

impl From<&ConnectionReport> for TestReportOut {
    fn from(r: &ConnectionReport) -> Self {
        Self {
            passed: r.passed(),
            steps: r
                .steps
                .iter()
                .map(|s| StepOut {
                    name: s.name.into(),
                    outcome: match s.outcome {
                        StepOutcome::Passed => "passed",
                        StepOutcome::Warning => "warning",
                        StepOutcome::Failed => "failed",
                        StepOutcome::Skipped => "skipped",
                    }
                    .into(),
                    detail: s.detail.clone(),
                    fix: s.fix.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncStartedOut {
    pub started: bool,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CountsOut {
    pub read: u64,
    pub new: u64,
    pub updated: u64,
    pub resolved: u64,
    pub reopened: u64,
    pub skipped: u64,
}

impl From<&rampart_model::EntityCounts> for CountsOut {
    fn from(c: &rampart_model::EntityCounts) -> Self {
        Self {
            read: c.read,
            new: c.new,
            updated: c.updated,
            resolved: c.resolved,
            reopened: c.reopened,
            skipped: c.skipped,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunOut {
    pub id: i64,
    pub integration_id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `running`, `succeeded`, `partial` or `failed`.
    pub status: String,
    pub mode: String,
    /// `complete`, `incomplete` or `held`.
    pub verdict: Option<String>,
    pub verdict_reason: Option<String>,
    pub assets: CountsOut,
    pub findings: CountsOut,
    pub vulnerabilities: CountsOut,
    /// Defender for Cloud recommendations; zero for Endpoint runs.
    pub recommendations: CountsOut,
    pub api_calls: u64,
    pub throttled: u64,
    pub retries: u64,
    pub bytes: u64,
    pub error: Option<String>,
    /// Records skipped because they could not be read, and the ids of the first of them. A few do
    /// not stop a run from concluding (docs/setup-endpoint.md, "What Microsoft may answer").
    pub odd_records: OddRecordsOut,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OddRecordsOut {
    pub count: u64,
    pub ids: Vec<String>,
    pub first_error: Option<String>,
}

impl From<&SyncRun> for RunOut {
    fn from(r: &SyncRun) -> Self {
        use rampart_model::Verdict;
        let (verdict, verdict_reason) = match &r.verdict {
            None => (None, None),
            Some(Verdict::Complete) => (Some("complete".into()), None),
            Some(Verdict::Incomplete(w)) => (Some("incomplete".into()), Some(w.clone())),
            Some(Verdict::Held(w)) => (Some("held".into()), Some(w.clone())),
        };
        Self {
            id: r.id.get(),
            integration_id: r.integration_id.get(),
            started_at: ts(&r.started_at),
            finished_at: ts_opt(&r.finished_at),
            status: r.status.as_str().into(),
            mode: r.mode.clone(),
            verdict,
            verdict_reason,
            assets: (&r.assets).into(),
            findings: (&r.findings).into(),
            vulnerabilities: (&r.vulnerabilities).into(),
            recommendations: (&r.recommendations).into(),
            api_calls: r.api_calls,
            throttled: r.throttled,
            retries: r.retries,
            bytes: r.bytes,
            error: r.error.clone(),
            odd_records: OddRecordsOut {
                count: r.odd_records.count,
                ids: r.odd_records.ids.clone(),
                first_error: r.odd_records.first_error.clone(),
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetOut {
    pub id: i64,
    pub integration_id: i64,
    pub integration: String,
    pub source: String,
    pub source_id: String,
    pub kind: String,
    pub name: Option<String>,
    pub os_platform: Option<String>,
    pub os_version: Option<String>,
    pub health_status: Option<String>,
    pub onboarding_status: Option<String>,
    pub exposure_level: Option<String>,
    pub risk_score: Option<String>,
    pub device_value: Option<String>,
    pub ip_addresses: Vec<String>,
    pub tags: Vec<String>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// `active` or `missing`.
    pub status: String,
    pub missing_since: Option<String>,
    /// Its findings, as of the last finished sync of its integration.
    pub findings: FindingCountsOut,
    /// The public address the device was last seen from (not one of its own `ip_addresses`).
    pub external_ip_address: Option<String>,
    pub os_build: Option<i64>,
    pub os_processor: Option<String>,
    pub is_aad_joined: Option<bool>,
    /// `inventory`: the source's device list returns it. `vulnerability_data`: known only from
    /// vulnerability rows (the device list did not return it); its name and OS come from them.
    pub known_from: String,
}

/// Open findings of an asset by severity (`open` counts those without a severity too), and how
/// many were fixed.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingCountsOut {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub open: u64,
    pub fixed: u64,
}

impl From<&OpenFindings> for FindingCountsOut {
    fn from(f: &OpenFindings) -> Self {
        Self {
            critical: f.critical,
            high: f.high,
            medium: f.medium,
            low: f.low,
            open: f.total,
            fixed: f.fixed,
        }
    }
}

impl From<&ListedAsset> for AssetOut {
    fn from(l: &ListedAsset) -> Self {
        let s = &l.stored;
        let a = &s.asset;
        // The export row's mapping (shared with the CSV downloads and `rampart export`), and what
        // only the API shows.
        let r = asset_record(s);
        Self {
            id: s.id,
            integration_id: s.integration_id.get(),
            integration: r.integration,
            source: r.source,
            source_id: r.source_id,
            kind: r.kind,
            name: r.name,
            os_platform: r.os_platform,
            os_version: r.os_version,
            health_status: r.health_status,
            onboarding_status: r.onboarding_status,
            exposure_level: r.exposure_level,
            risk_score: r.risk_score,
            device_value: r.device_value,
            ip_addresses: r.ip_addresses,
            tags: r.tags,
            first_seen: ts_opt(&r.first_seen),
            last_seen: ts_opt(&r.last_seen),
            status: r.status,
            missing_since: ts_opt(&s.missing_since),
            findings: (&l.findings).into(),
            external_ip_address: r.external_ip_address,
            os_build: a.os_build,
            os_processor: a.os_processor.clone(),
            is_aad_joined: a.is_aad_joined,
            known_from: r.known_from,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FindingOut {
    pub id: i64,
    pub integration_id: i64,
    pub integration: String,
    pub source: String,
    pub asset_source_id: String,
    pub asset_name: Option<String>,
    pub cve_id: String,
    pub software_vendor: String,
    pub software_name: String,
    pub software_version: String,
    pub severity: Option<String>,
    pub cvss: Option<f64>,
    pub epss: Option<f64>,
    pub exploitability: Option<String>,
    pub recommended_update: Option<String>,
    /// `open` or `fixed`.
    pub status: String,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub fixed_at: Option<String>,
    pub reopened_count: u64,
    /// 0–100, higher is more urgent (docs/prioritisation.md); absent until first assessed.
    pub priority: Option<f64>,
    /// The SSVC deployer decision of an open finding: `immediate`, `out-of-cycle`, `scheduled`
    /// or `defer`; absent once fixed.
    pub decision: Option<String>,
    /// When the open finding is due (RFC 3339); moved later by the time an exception that has
    /// ended paused its clock.
    pub due_at: Option<String>,
    /// `on_track`, `due_soon`, `overdue` or `closed` (fixed); `accepted` while an exception
    /// covers it.
    pub sla_status: Option<String>,
    /// The fix that closes it, as the remediation plan (`/api/v1/remediations`) groups findings
    /// and as an exception of scope `fix` names it.
    pub fix: String,
    /// Why this priority: the decision's band, then each factor with its value, weight and the
    /// points it adds (they sum to `priority`).
    pub priority_factors: Vec<PriorityFactorOut>,
}

/// One line of "why this priority".
#[derive(Debug, Serialize, ToSchema)]
pub struct PriorityFactorOut {
    /// `decision`, `exploitation`, `exposure`, `automatable`, `human_impact`, `epss`, `cvss`,
    /// `kev_ransomware`, `cloud_risk` or `device_exposure`.
    pub factor: String,
    pub value: String,
    pub weight: u32,
    pub points: u8,
}

impl PriorityFactorOut {
    pub fn list(s: &StoredFinding) -> Vec<PriorityFactorOut> {
        s.priority_factors
            .iter()
            .flatten()
            .map(|c| PriorityFactorOut {
                factor: c.factor.as_str().to_owned(),
                value: c.value.clone(),
                weight: c.weight,
                points: c.points,
            })
            .collect()
    }
}

impl From<&StoredFinding> for FindingOut {
    fn from(s: &StoredFinding) -> Self {
        let f = &s.finding;
        // The export row's mapping (shared with the CSV downloads and `rampart export`), and what
        // only the API shows.
        let r = finding_record_at(s, chrono::Utc::now());
        Self {
            id: s.id,
            integration_id: s.integration_id.get(),
            integration: r.integration,
            source: r.source,
            asset_source_id: r.asset_source_id,
            asset_name: r.asset_name,
            cve_id: r.cve_id,
            software_vendor: r.software_vendor,
            software_name: r.software_name,
            software_version: r.software_version,
            severity: r.severity,
            cvss: r.cvss,
            epss: s.cve.as_ref().and_then(|c| c.epss),
            exploitability: r.exploitability,
            recommended_update: r.recommended_update,
            status: r.status,
            first_seen: ts_opt(&r.first_seen),
            last_seen: ts_opt(&r.last_seen),
            fixed_at: ts_opt(&r.fixed_at),
            reopened_count: s.reopened_count,
            priority: r.priority,
            decision: r.decision,
            due_at: ts_opt(&r.due_at),
            sla_status: r.sla_status,
            fix: rampart_store::fix_key(
                s.product,
                &f.key.software_vendor,
                &f.key.software_name,
                f.recommended_update.as_deref(),
            ),
            priority_factors: PriorityFactorOut::list(s),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VulnerabilityOut {
    pub cve_id: String,
    pub severity: Option<String>,
    pub cvss: Option<f64>,
    pub cvss_vector: Option<String>,
    pub epss: Option<f64>,
    pub public_exploit: bool,
    pub exploit_verified: bool,
    pub exploit_in_kit: bool,
    pub published_on: Option<String>,
    pub updated_on: Option<String>,
    pub exposed_assets: u64,
    pub description: Option<String>,
    /// The source's own count of exposed devices (MDE `exposedMachines`), beside Rampart's
    /// `exposed_assets`.
    pub source_exposed_machines: Option<u64>,
    /// CISA's Known Exploited Vulnerabilities entry of the CVE (as last refreshed); `null` when
    /// CISA does not list it.
    pub kev: Option<KevOut>,
}

/// A CVE's entry in CISA's Known Exploited Vulnerabilities catalogue
/// (<https://www.cisa.gov/known-exploited-vulnerabilities-catalog>).
#[derive(Debug, Serialize, ToSchema)]
pub struct KevOut {
    /// When CISA listed it.
    pub date_added: Option<NaiveDate>,
    /// CISA's deadline for US federal agencies; not Rampart's SLA.
    pub due_date: Option<NaiveDate>,
    /// `Known` (used in ransomware campaigns) or `Unknown`.
    pub known_ransomware_campaign_use: String,
    /// What CISA asks to be done.
    pub required_action: Option<String>,
}

impl KevOut {
    fn of(k: &KevEntry) -> Self {
        Self {
            date_added: k.date_added,
            due_date: k.due_date,
            known_ransomware_campaign_use: match k.known_ransomware_campaign_use {
                RansomwareUse::Known => "Known",
                RansomwareUse::Unknown => "Unknown",
            }
            .to_owned(),
            required_action: k.required_action.clone(),
        }
    }
}

impl VulnerabilityOut {
    /// The entry, with its KEV entry when CISA lists the CVE.
    pub fn of(s: &StoredVulnerability, kev: Option<&KevEntry>) -> Self {
        let v = &s.vulnerability;
        Self {
            cve_id: v.cve_id.to_string(),
            severity: v.severity.map(|s| s.as_str().into()),
            cvss: v.cvss,
            cvss_vector: v.cvss_vector.clone(),
            epss: v.epss,
            public_exploit: v.public_exploit,
            exploit_verified: v.exploit_verified,
            exploit_in_kit: v.exploit_in_kit,
            published_on: ts_opt(&v.published_on),
            updated_on: ts_opt(&v.updated_on),
            exposed_assets: s.exposed_assets,
            description: v.description.clone(),
            source_exposed_machines: v.source_exposed_machines,
            kev: kev.map(KevOut::of),
        }
    }
}

/// A page of assets; pass `next_cursor` as `after` for the next one (`null`: last page).
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetPage {
    pub items: Vec<AssetOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FindingPage {
    pub items: Vec<FindingOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VulnerabilityPage {
    pub items: Vec<VulnerabilityOut>,
    pub next_cursor: Option<String>,
}
