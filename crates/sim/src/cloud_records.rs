//! Defender for Cloud records as the tenant holds them: what [`crate::Truth`] returns for the Azure
//! Resource Manager side, for tests to compare a store with.

use chrono::{DateTime, Utc};

/// A subscription of the tenant (`GET /subscriptions`).
#[derive(Clone, Debug, PartialEq)]
pub struct CloudSubscription {
    /// Lower-case GUID.
    pub subscription_id: String,
    pub display_name: String,
    /// `Enabled` or `Disabled` (a disabled subscription serves no Defender data).
    pub state: String,
}

/// What kind of Azure resource a recommendation or finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CloudResourceKind {
    /// The subscription itself (identity recommendations).
    Subscription,
    VirtualMachine,
    ContainerImage,
    SqlServer,
    /// An AKS cluster: its node findings are `ServiceUpgrade` recommendations.
    KubernetesCluster,
}

/// An Azure resource Defender for Cloud assesses.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudResource {
    pub subscription_id: String,
    /// The ARM id in Azure's own casing (`/subscriptions/…/resourceGroups/…`).
    pub id: String,
    pub name: String,
    pub kind: CloudResourceKind,
    /// `ResourceType` as assessments report it (`virtualMachines`, `.containerimage`, `servers`).
    pub resource_type: String,
    /// `ResourceProvider` (`Microsoft.Compute`, …).
    pub provider: String,
    /// The MDE machine id of the same VM, when the VM is onboarded to Defender for Endpoint.
    pub mde_machine_id: Option<String>,
}

/// `secureScores/ascScore` of one subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct SecureScore {
    pub subscription_id: String,
    /// Σ of the controls' current scores, 2 decimals.
    pub current: f64,
    /// Σ of the controls' maximum scores.
    pub max: u32,
    /// `current / max`, a 0–1 fraction rounded to 4 decimals.
    pub percentage: f64,
    /// Healthy + unhealthy resources: the subscription's weight in a multi-subscription score.
    pub weight: u64,
}

/// One security control's score in one subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreControl {
    pub subscription_id: String,
    /// The control definition's GUID.
    pub control_id: String,
    pub display_name: String,
    pub current: f64,
    pub max: u32,
    pub percentage: f64,
    pub healthy: u32,
    pub unhealthy: u32,
    pub not_applicable: u32,
    pub weight: u64,
    /// Assessment keys the control is made of.
    pub assessment_keys: Vec<String>,
}

/// One built-in recommendation evaluated on one resource (`assessments`, 2021-06-01).
#[derive(Clone, Debug, PartialEq)]
pub struct CloudAssessment {
    pub subscription_id: String,
    /// The full assessment id (`{resource}/providers/Microsoft.Security/assessments/{key}`).
    pub id: String,
    /// The assessment key (the metadata `name`).
    pub key: String,
    pub resource_id: String,
    pub display_name: String,
    /// `Healthy`, `Unhealthy`, `NotApplicable`.
    pub status: String,
    pub cause: Option<String>,
    /// From the metadata: `Low`, `Medium`, `High`.
    pub severity: String,
    /// The metadata's first category.
    pub category: String,
    pub status_changed: DateTime<Utc>,
    /// `properties.risk` as api-version 2025-05-04 serves it (unhealthy recommendations in
    /// subscriptions with Defender CSPM); `None` otherwise, and never in older api-versions.
    pub risk: Option<CloudRisk>,
}

/// Microsoft's risk of one recommendation on one resource (assessments 2025-05-04).
#[derive(Clone, Debug, PartialEq)]
pub struct CloudRisk {
    /// `Low`, `Medium`, `High` or `Critical`.
    pub level: String,
    pub factors: Vec<String>,
    /// Attack path references.
    pub attack_paths: Vec<String>,
}

/// One CVE in one package on one resource, from an individual `SoftwareUpdate` recommendation.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudFinding {
    pub subscription_id: String,
    pub resource_id: String,
    pub resource_kind: CloudResourceKind,
    pub resource_name: String,
    /// The individual recommendation's assessment id.
    pub assessment_id: String,
    pub cve_id: String,
    /// `Critical`, `High`, `Medium`, `Low` or `Unknown`: the CVE's own, or the recommendation's
    /// (`metadata.severity`) when the CVE's is `Unknown`.
    pub severity: String,
    pub cvss: Option<f64>,
    pub software_vendor: String,
    pub software_name: String,
    pub installed_version: String,
    pub fixed_version: String,
    /// `SoftwareUpdate`, or `ServiceUpgrade` for AKS nodes.
    pub category: String,
    /// The recommendation's `metadata.severity` (its CVEs' highest).
    pub recommendation_severity: String,
    /// The recommendation's `status.firstEvaluationDate` and `status.statusChangeDate`.
    pub first_evaluated: DateTime<Utc>,
    pub status_changed: DateTime<Utc>,
    /// When the CVE was published.
    pub published: DateTime<Utc>,
}
