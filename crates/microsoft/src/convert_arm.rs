//! Defender for Cloud wire types → model types: subscriptions, scores, controls, recommendations,
//! and vulnerability findings on cloud assets. Ids are lower-cased (ARM casing varies, §2.0).

use rampart_model::{
    Asset, AssetKind, ControlScore, CveId, Finding, FindingKey, PostureScore, Recommendation,
    Severity, Subscription, parse_microsoft_timestamp,
};

use crate::wire::arm::{
    ArmSubscription, Assessment, AssessmentMetadataProperties, ScoreControlItem, SecureScoreItem,
    VulnerabilityRow, additional_json,
};

impl ArmSubscription {
    pub fn into_model(self) -> Subscription {
        Subscription {
            subscription_id: self.subscription_id.to_ascii_lowercase(),
            display_name: self.display_name,
            state: self.state,
        }
    }
}

impl SecureScoreItem {
    pub fn into_model(self, subscription_id: &str, name: Option<String>) -> PostureScore {
        let s = self.properties.score;
        PostureScore {
            subscription_id: subscription_id.to_ascii_lowercase(),
            subscription_name: name,
            current: s.current.unwrap_or(0.0),
            max: s.max.unwrap_or(0.0),
            fraction: s.percentage.unwrap_or(0.0),
            weight: self.properties.weight.unwrap_or(0),
        }
    }
}

impl ScoreControlItem {
    pub fn into_model(self, subscription_id: &str) -> ControlScore {
        let p = self.properties;
        let control_id = p
            .definition
            .as_ref()
            .and_then(|d| d.name.clone())
            .or(self.name)
            .unwrap_or_else(|| self.id.rsplit('/').next().unwrap_or_default().to_owned())
            .to_ascii_lowercase();
        ControlScore {
            subscription_id: subscription_id.to_ascii_lowercase(),
            control_id,
            display_name: p.display_name,
            current: p.score.current.unwrap_or(0.0),
            max: p.score.max.unwrap_or(0.0),
            fraction: p.score.percentage.unwrap_or(0.0),
            healthy: p.healthy_resource_count.unwrap_or(0),
            unhealthy: p.unhealthy_resource_count.unwrap_or(0),
            not_applicable: p.not_applicable_resource_count.unwrap_or(0),
            weight: p.weight.unwrap_or(0),
        }
    }
}

/// The marker that splits an assessment id into resource and key (case-insensitive, §2.5).
const MARKER: &str = "/providers/microsoft.security/assessments/";

impl Assessment {
    /// An individual per-finding recommendation (its CVEs are findings, not posture).
    pub fn is_individual(&self) -> bool {
        additional_json(&self.properties.additional_data, "CvesDetails").is_some()
            || self
                .properties
                .metadata
                .as_ref()
                .and_then(|m| m.recommendation_category.as_deref())
                .is_some_and(|c| c.eq_ignore_ascii_case("SoftwareUpdate"))
    }

    /// A recommendation, its severity and category joined from the metadata (`meta`), which the
    /// REST list never includes.
    pub fn into_model(
        self,
        subscription_id: &str,
        meta: Option<&AssessmentMetadataProperties>,
    ) -> Recommendation {
        let id = self.id.to_ascii_lowercase();
        let (resource, key) = match id.find(MARKER) {
            Some(i) => (id[..i].to_owned(), id[i + MARKER.len()..].to_owned()),
            None => (String::new(), self.name.clone().unwrap_or_default()),
        };
        let p = self.properties;
        let meta = meta.or(p.metadata.as_ref());
        Recommendation {
            subscription_id: subscription_id.to_ascii_lowercase(),
            resource_id: p
                .resource_details
                .id
                .map(|r| r.to_ascii_lowercase())
                .unwrap_or(resource),
            key: key.to_ascii_lowercase(),
            assessment_id: id,
            display_name: p.display_name,
            status: p.status.code.unwrap_or_else(|| "Unknown".to_owned()),
            cause: p.status.cause,
            severity: meta.and_then(|m| m.severity.clone()),
            category: meta.and_then(|m| m.categories.first().cloned()),
            status_changed: p
                .status
                .status_change_date
                .as_deref()
                .and_then(|t| parse_microsoft_timestamp(t).ok()),
        }
    }
}

/// The asset kind of an ARM resource type (`microsoft.compute/virtualmachines`, `.containerimage`).
pub fn asset_kind(resource_type: Option<&str>, resource_id: &str) -> AssetKind {
    let t = resource_type.unwrap_or("").to_ascii_lowercase();
    let id = resource_id.to_ascii_lowercase();
    if t.contains("virtualmachine") || id.contains("/microsoft.compute/virtualmachines/") {
        AssetKind::VirtualMachine
    } else if t.contains("containerimage") || id.contains("/images/sha256:") {
        AssetKind::ContainerImage
    } else if id.contains("/microsoft.sql/servers/") {
        AssetKind::SqlServer
    } else {
        AssetKind::CloudResource
    }
}

/// Why a Resource Graph row is not a finding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotACloudFinding {
    #[error("the row names no resource")]
    NoResource,
    #[error("the row carries no CVE")]
    NoCve,
    #[error("'{0}' is not a CVE id")]
    BadCve(String),
}

impl VulnerabilityRow {
    /// The asset the finding is on: keyed by its lower-cased ARM id, which is also the
    /// `azure_resource_id` an MDE device of the same VM carries.
    pub fn asset(&self) -> Option<Asset> {
        let id = self.resource_id.as_deref()?.to_ascii_lowercase();
        Some(Asset {
            kind: asset_kind(self.resource_type.as_deref(), &id),
            name: self.resource_name.clone(),
            azure_resource_id: Some(id.clone()),
            source_id: id,
            os_platform: None,
            os_version: None,
            health_status: None,
            onboarding_status: None,
            exposure_level: None,
            risk_score: None,
            device_value: None,
            ip_addresses: Vec::new(),
            tags: Vec::new(),
            rbac_group_id: None,
            rbac_group_name: None,
            aad_device_id: None,
            is_duplicate: false,
            merged_into: None,
            first_seen: None,
            last_seen: None,
        })
    }

    /// Installed version: `DetectedSoftwareVersions` is a JSON array in a string (or one version).
    pub fn installed_version(&self) -> String {
        let raw = self.detected_versions.as_deref().unwrap_or("").trim();
        match serde_json::from_str::<Vec<String>>(raw) {
            Ok(v) => v.join(", "),
            Err(_) => raw.to_owned(),
        }
    }

    pub fn into_finding(self) -> Result<Finding, NotACloudFinding> {
        let resource = self
            .resource_id
            .as_deref()
            .filter(|r| !r.is_empty())
            .ok_or(NotACloudFinding::NoResource)?
            .to_ascii_lowercase();
        let cve = self.cve_detail.clone().ok_or(NotACloudFinding::NoCve)?;
        let raw = cve.cve_id.clone().ok_or(NotACloudFinding::NoCve)?;
        let cve_id: CveId = raw
            .parse()
            .map_err(|_| NotACloudFinding::BadCve(raw.chars().take(40).collect()))?;
        let cvss = cve.cvss.as_ref().and_then(|v| {
            v.iter()
                .filter_map(|e| e.value.as_ref()?.base)
                .reduce(f64::max)
        });
        let exploitability = cve.exploitability.as_ref().map(|e| {
            if e.in_kit == Some(true) {
                "ExploitIsInKit"
            } else if e.verified == Some(true) {
                "ExploitIsVerified"
            } else if e.published == Some(true) {
                "ExploitIsPublic"
            } else {
                "NoExploit"
            }
            .to_owned()
        });
        let installed = self.installed_version();
        Ok(Finding {
            key: FindingKey {
                asset_source_id: resource,
                software_vendor: self.software_vendor.clone().unwrap_or_default(),
                software_name: self.software_name.clone().unwrap_or_default(),
                software_version: installed,
                cve_id,
            },
            asset_name: self.resource_name,
            severity: cve.severity.as_deref().and_then(Severity::parse_lenient),
            cvss,
            exploitability,
            recommended_update: cve
                .fixed_version
                .filter(|v| !v.is_empty())
                .or(self.fixed_version.filter(|v| !v.is_empty())),
            recommendation_reference: Some(self.id.to_ascii_lowercase()),
            first_seen: None,
            last_seen: None,
        })
    }
}
