//! Defender for Cloud wire types → model types: subscriptions, scores, controls, recommendations
//! and the assessed resources as assets (vulnerability findings: `cloud_findings`). Ids
//! are lower-cased (ARM casing varies, <https://learn.microsoft.com/en-us/rest/api/defenderforcloud/>).

use rampart_model::{
    Asset, AssetKind, ControlScore, PostureScore, Recommendation, RecommendationRisk, Subscription,
    parse_microsoft_timestamp,
};

use serde_json::Value;

use crate::wire::arm::{
    ArmSubscription, Assessment, AssessmentMetadataProperties, AssessmentRisk, Pricing,
    ResourceDetails, ScoreControlItem, SecureScoreItem, additional_json, additional_text,
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
        // A control Microsoft sent without a score keeps its place with the score unknown (never
        // 0: that would read as "nothing achieved"); its maximum is its definition's.
        let max = p
            .score
            .max
            .or_else(|| p.definition.as_ref()?.properties.max_score)
            .unwrap_or(0.0);
        let fraction = p.score.percentage.or_else(|| {
            let current = p.score.current?;
            (max > 0.0).then(|| current / max)
        });
        ControlScore {
            subscription_id: subscription_id.to_ascii_lowercase(),
            control_id,
            display_name: p.display_name,
            current: p.score.current,
            max,
            fraction,
            healthy: p.healthy_resource_count.unwrap_or(0),
            unhealthy: p.unhealthy_resource_count.unwrap_or(0),
            not_applicable: p.not_applicable_resource_count.unwrap_or(0),
            weight: p.weight.unwrap_or(0),
        }
    }
}

/// The recommendation categories whose individual recommendations are vulnerability findings:
/// `SoftwareUpdate`, and `ServiceUpgrade` where AKS node findings moved
/// (<https://learn.microsoft.com/en-us/azure/defender-for-cloud/transition-grouped-individual-recommendations>).
pub fn is_vulnerability_category(c: &str) -> bool {
    c.eq_ignore_ascii_case("SoftwareUpdate") || c.eq_ignore_ascii_case("ServiceUpgrade")
}

/// The marker that splits an assessment id into resource and key (case-insensitive, <https://learn.microsoft.com/en-us/rest/api/defenderforcloud/>).
const MARKER: &str = "/providers/microsoft.security/assessments/";

impl Assessment {
    /// An individual per-finding recommendation (its CVEs are findings, not posture).
    ///
    /// A fixed package turns its recommendation `Healthy`, and Microsoft then strips `CvesDetails`;
    /// the REST list carries no metadata either. The package fields it keeps
    /// (`SoftwareName`, `DetectedSoftwareVersions`, `ScannersDetails`) still mark it, so it is
    /// never mistaken for a built-in recommendation without severity or category.
    pub fn is_individual(&self) -> bool {
        let data = &self.properties.additional_data;
        let meta = self.properties.metadata.as_ref();
        additional_json(data, "CvesDetails").is_some()
            || meta
                .and_then(|m| m.recommendation_category.as_deref())
                .is_some_and(is_vulnerability_category)
            || meta
                .and_then(|m| m.assessment_type.as_deref())
                .is_some_and(|t| t.eq_ignore_ascii_case("DynamicBuiltIn"))
            || [
                "SoftwareName",
                "DetectedSoftwareVersions",
                "ScannersDetails",
            ]
            .iter()
            .any(|k| additional_text(data, k).is_some())
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
            risk: p
                .risk
                .map(AssessmentRisk::into_model)
                .filter(|r| !r.is_empty()),
        }
    }
}

impl AssessmentRisk {
    /// Microsoft's risk as the model keeps it; a level spelled in another case gets Microsoft's
    /// spelling, an unknown word is kept as sent (bounded).
    pub fn into_model(self) -> RecommendationRisk {
        let level = self.level.filter(|l| !l.trim().is_empty()).map(|l| {
            ["Low", "Medium", "High", "Critical"]
                .into_iter()
                .find(|k| k.eq_ignore_ascii_case(l.trim()))
                .map(str::to_owned)
                .unwrap_or_else(|| l.trim().chars().take(40).collect())
        });
        let mut attack_paths = self.attack_paths_references;
        // Paths without a reference list still name themselves.
        if attack_paths.is_empty() {
            attack_paths = self
                .paths
                .iter()
                .filter_map(|p| p.get("id")?.as_str().map(str::to_owned))
                .collect();
        }
        RecommendationRisk {
            level,
            factors: self.risk_factors,
            attack_paths,
            contextual: self.is_contextual_risk,
        }
    }
}

impl Assessment {
    /// The assessed resource as an asset (keyed by its lower-cased ARM id). `subscription_name`
    /// names the subscription itself when the assessment is about it (identity recommendations
    /// carry no `ResourceName`).
    pub fn asset(&self, subscription_name: Option<&str>) -> Option<Asset> {
        let details = &self.properties.resource_details;
        let id = details
            .id
            .as_deref()
            .filter(|i| !i.trim().is_empty())?
            .to_ascii_lowercase();
        let is_subscription = id.trim_end_matches('/').matches('/').count() == 2;
        let name = details
            .resource_name
            .clone()
            .or_else(|| is_subscription.then(|| subscription_name.map(str::to_owned))?)
            .or_else(|| id.rsplit('/').next().map(str::to_owned));
        Some(cloud_asset(id, details.resource_type.as_deref(), name))
    }
}

/// A Defender for Cloud asset: its ARM id (lower-cased) is both its source id and the
/// `azure_resource_id` an MDE device of the same VM carries, which is how the two are linked.
pub fn cloud_asset(id: String, resource_type: Option<&str>, name: Option<String>) -> Asset {
    let kind = asset_kind(resource_type, &id);
    Asset {
        name,
        azure_resource_id: Some(id.clone()),
        ..Asset::new(id, kind)
    }
}

impl Pricing {
    /// The plan is paid for (`Standard`), not `Free`.
    pub fn is_on(&self) -> bool {
        self.properties
            .pricing_tier
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("Standard"))
    }

    /// Whether this is a plan that produces vulnerability findings: Defender for Servers
    /// (`VirtualMachines`: MDVM on machines) and Defender for Containers (`Containers`: registry
    /// and runtime image scanning). Reference <https://learn.microsoft.com/en-us/rest/api/defenderforcloud/>.
    pub fn produces_vulnerability_data(&self) -> bool {
        ["VirtualMachines", "Containers"]
            .iter()
            .any(|p| self.name.eq_ignore_ascii_case(p))
    }

    /// Whether the extension `name` of this plan is on (`isEnabled` is the string `"True"`; a
    /// boolean is accepted too).
    pub fn extension_on(&self, name: &str) -> bool {
        self.properties.extensions.iter().any(|e| {
            e.name.eq_ignore_ascii_case(name)
                && match &e.is_enabled {
                    Some(Value::Bool(b)) => *b,
                    Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
                    _ => false,
                }
        })
    }
}

/// Which kinds of vulnerability data the Defender plans of one subscription produce.
///
/// Machines: Defender for Servers (`VirtualMachines`), or Defender CSPM (`CloudPosture`) with its
/// `AgentlessVmScanning` extension, which scans machine disks without an agent and yields the same
/// Microsoft Defender Vulnerability Management findings
/// (<https://learn.microsoft.com/en-us/azure/defender-for-cloud/concept-agentless-data-collection>).
/// Container images: Defender for Containers, or Defender CSPM with its
/// `ContainerRegistriesVulnerabilityAssessments` extension
/// (<https://learn.microsoft.com/en-us/azure/defender-for-cloud/agentless-vulnerability-assessment-azure>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VulnerabilityCoverage {
    pub machines: bool,
    pub images: bool,
}

impl VulnerabilityCoverage {
    pub fn of(plans: &[Pricing]) -> VulnerabilityCoverage {
        let on = |name: &str| {
            plans
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case(name) && p.is_on())
        };
        let cspm_with = |extension: &str| {
            plans.iter().any(|p| {
                p.name.eq_ignore_ascii_case("CloudPosture")
                    && p.is_on()
                    && p.extension_on(extension)
            })
        };
        VulnerabilityCoverage {
            machines: on("VirtualMachines") || cspm_with("AgentlessVmScanning"),
            images: on("Containers") || cspm_with("ContainerRegistriesVulnerabilityAssessments"),
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

pub(crate) fn resource_name(d: &ResourceDetails, id: &str) -> Option<String> {
    d.resource_name
        .clone()
        .or_else(|| id.rsplit('/').next().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn defender_cspm_with_agentless_scanning_covers_machines() {
        let plans: Vec<Pricing> = serde_json::from_str(
            r#"[{"name":"VirtualMachines","properties":{"pricingTier":"Free"}},
                {"name":"Containers","properties":{"pricingTier":"Free"}},
                {"name":"CloudPosture","properties":{"pricingTier":"Standard","extensions":[
                    {"name":"AgentlessVmScanning","isEnabled":"True"},
                    {"name":"ContainerRegistriesVulnerabilityAssessments","isEnabled":"False"}]}}]"#,
        )
        .unwrap();
        let c = VulnerabilityCoverage::of(&plans);
        assert!(c.machines, "agentless scanning under Defender CSPM");
        assert!(!c.images);
        let free_cspm: Vec<Pricing> = serde_json::from_str(
            r#"[{"name":"CloudPosture","properties":{"pricingTier":"Free","extensions":[{"name":"AgentlessVmScanning","isEnabled":"True"}]}}]"#,
        )
        .unwrap();
        assert!(!VulnerabilityCoverage::of(&free_cspm).machines);
    }

    #[test]
    fn a_control_without_a_score_keeps_its_maximum_and_an_unknown_score() {
        let c: ScoreControlItem = serde_json::from_str(
            r#"{"id":"/x/secureScoreControls/ABC","properties":{"displayName":"MFA","score":null,
                "definition":{"name":"ABC","properties":{"maxScore":10}}}}"#,
        )
        .unwrap();
        let m = c.into_model("SUB");
        assert_eq!((m.current, m.max, m.fraction), (None, 10.0, None));
        assert_eq!(m.control_id, "abc");
    }

    #[test]
    fn risk_levels_take_microsofts_spelling() {
        let r = AssessmentRisk {
            level: Some("critical".into()),
            paths: vec![serde_json::json!({"id": "path-1"})],
            ..Default::default()
        }
        .into_model();
        assert_eq!(r.level.as_deref(), Some("Critical"));
        assert_eq!(r.attack_paths, ["path-1"]);
    }

    #[test]
    fn a_subscription_assessment_is_named_after_the_subscription() {
        let a: Assessment = serde_json::from_str(
            r#"{"id":"/subscriptions/AB/providers/Microsoft.Security/assessments/k","properties":{"resourceDetails":{"Source":"Azure","Id":"/subscriptions/AB"}}}"#,
        )
        .unwrap();
        let asset = a.asset(Some("Prod")).unwrap();
        assert_eq!(asset.source_id, "/subscriptions/ab");
        assert_eq!(asset.name.as_deref(), Some("Prod"));
        assert_eq!(asset.kind, AssetKind::CloudResource);
    }

    #[test]
    fn a_healthy_individual_recommendation_without_cves_is_still_individual() {
        let a: Assessment = serde_json::from_str(
            r#"{"id":"/subscriptions/s/rg/vm/providers/Microsoft.Security/assessments/d1","name":"d1","properties":{"resourceDetails":{"Id":"/subscriptions/s/rg/vm"},"status":{"code":"Healthy"},"additionalData":{"SoftwareName":"openssl","DetectedSoftwareVersions":"[\"3.0.2\"]","FixedVersion":"3.0.15"}}}"#,
        )
        .unwrap();
        assert!(a.is_individual());
        let builtin: Assessment = serde_json::from_str(
            r#"{"id":"/subscriptions/s/providers/Microsoft.Security/assessments/k","properties":{"status":{"code":"Healthy"},"additionalData":{"Tags":"[]"}}}"#,
        )
        .unwrap();
        assert!(!builtin.is_individual());
    }
}
