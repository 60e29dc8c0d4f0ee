//! Defender for Cloud wire types → model types: subscriptions, scores, controls, recommendations,
//! and vulnerability findings on cloud assets. Ids are lower-cased (ARM casing varies, §2.0).

use rampart_model::{
    Asset, AssetKind, ControlScore, CveId, Finding, FindingKey, PostureScore, Recommendation,
    RecommendationRisk, Severity, Subscription, parse_microsoft_timestamp,
};

use serde_json::Value;

use crate::wire::arm::{
    ArmSubscription, Assessment, AssessmentMetadataProperties, AssessmentRisk, Pricing,
    ResourceDetails, ScoreControlItem, SecureScoreItem, SubAssessment, VulnerabilityRow,
    additional_json, additional_text,
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
    Asset {
        kind: asset_kind(resource_type, &id),
        name,
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
        external_ip_address: None,
        os_build: None,
        os_processor: None,
        is_aad_joined: None,
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
    /// and runtime image scanning). Reference §2.11.
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
        let id = self
            .resource_id
            .as_deref()
            .filter(|r| !r.is_empty())?
            .to_ascii_lowercase();
        Some(cloud_asset(
            id,
            self.resource_type.as_deref(),
            self.resource_name.clone(),
        ))
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
            asset_os_platform: None,
            asset_os_version: None,
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

impl SubAssessment {
    /// The legacy grouped finding (deprecated 2026-07-31, still served by some tenants) as one
    /// finding per CVE. Machine findings (`ServerVulnerabilityTvm`, Qualys `ServerVulnerability`)
    /// carry a `cve` array (one object on AKS nodes) and the software in `additionalData`;
    /// registry images carry `vulnerabilityDetails` and `softwareDetails`. Rows without a CVE
    /// (Qualys checks, SQL and configuration rules) are not findings.
    pub fn into_findings(self) -> Vec<Finding> {
        let p = self.properties;
        let Some(resource) = p
            .resource_details
            .id
            .as_deref()
            .filter(|r| !r.trim().is_empty())
            .map(str::to_ascii_lowercase)
        else {
            return Vec::new();
        };
        if p.status
            .code
            .as_deref()
            .is_some_and(|c| !c.eq_ignore_ascii_case("Unhealthy"))
        {
            return Vec::new();
        }
        let data = &p.additional_data;
        let text = |k: &str| additional_text(data, k).filter(|v| !v.is_empty());
        let name = resource_name(&p.resource_details, &resource);
        let reference = Some(self.id.to_ascii_lowercase());
        let mut out = Vec::new();
        if let Some(details) = data.get("vulnerabilityDetails") {
            let software = data.get("softwareDetails");
            let field = |v: Option<&Value>, k: &str| {
                v.and_then(|v| v.get(k))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            let Some(cve_id) = field(Some(details), "cveId").and_then(|c| c.parse::<CveId>().ok())
            else {
                return out;
            };
            let cvss = details
                .get("cvss")
                .and_then(Value::as_object)
                .and_then(|m| {
                    m.values()
                        .filter_map(|v| v.get("base").and_then(Value::as_f64))
                        .reduce(f64::max)
                });
            out.push(Finding {
                key: FindingKey {
                    asset_source_id: resource,
                    software_vendor: field(software, "vendor").unwrap_or_default(),
                    software_name: field(software, "packageName").unwrap_or_default(),
                    software_version: field(software, "version").unwrap_or_default(),
                    cve_id,
                },
                asset_name: name,
                asset_os_platform: None,
                asset_os_version: None,
                severity: field(Some(details), "severity")
                    .as_deref()
                    .and_then(Severity::parse_lenient),
                cvss,
                exploitability: None,
                recommended_update: field(software, "fixedVersion"),
                recommendation_reference: reference,
                first_seen: None,
                last_seen: p
                    .time_generated
                    .as_deref()
                    .and_then(|t| parse_microsoft_timestamp(t).ok()),
            });
            return out;
        }
        let cves: Vec<&Value> = match data.get("cve") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => Vec::new(),
        };
        for cve in cves {
            let Some(cve_id) = cve
                .get("title")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<CveId>().ok())
            else {
                continue;
            };
            let severity = cve
                .get("severity")
                .and_then(Value::as_str)
                .or(p.status.severity.as_deref())
                .and_then(Severity::parse_lenient);
            out.push(Finding {
                key: FindingKey {
                    asset_source_id: resource.clone(),
                    software_vendor: text("softwareVendor").unwrap_or_default(),
                    software_name: text("softwareName").unwrap_or_default(),
                    software_version: text("softwareVersion").unwrap_or_default(),
                    cve_id,
                },
                asset_name: name.clone(),
                asset_os_platform: None,
                asset_os_version: None,
                severity,
                cvss: cve.get("cvssScore").and_then(Value::as_f64),
                exploitability: cve
                    .get("exploitabilityLevel")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                recommended_update: text("recommendedVersion")
                    .or_else(|| text("fixedNodePoolVersion")),
                recommendation_reference: reference.clone(),
                first_seen: None,
                last_seen: p
                    .time_generated
                    .as_deref()
                    .and_then(|t| parse_microsoft_timestamp(t).ok()),
            });
        }
        out
    }

    /// The assessed resource as an asset.
    pub fn asset(&self) -> Option<Asset> {
        let d = &self.properties.resource_details;
        let id =
            d.id.as_deref()
                .filter(|r| !r.trim().is_empty())?
                .to_ascii_lowercase();
        let name = resource_name(d, &id);
        Some(cloud_asset(id, d.resource_type.as_deref(), name))
    }
}

fn resource_name(d: &ResourceDetails, id: &str) -> Option<String> {
    d.resource_name
        .clone()
        .or_else(|| id.rsplit('/').next().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_machine_finding_is_one_finding_per_cve() {
        let sub: SubAssessment = serde_json::from_str(r#"{
          "id": "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/vm-test/providers/Microsoft.Security/assessments/1195afff-c881-495e-9bc5-1486211ae03f/subassessments/f9",
          "properties": {
            "id": "M4B6BH", "displayName": "Update Ubuntu Libxml2 For Linux",
            "status": { "code": "Unhealthy", "severity": "High" },
            "timeGenerated": "2025-08-21T17:40:43.325407Z",
            "resourceDetails": { "source": "Azure", "id": "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/vm-test" },
            "additionalData": {
              "assessedResourceType": "ServerVulnerabilityTvm",
              "cve": [
                { "title": "CVE-2025-6021", "cvssScore": 7.5, "severity": "High", "exploitabilityLevel": "NoExploit" },
                { "title": "CVE-2025-49796", "cvssScore": 9.1, "severity": "Critical" }
              ],
              "softwareVendor": "ubuntu", "softwareName": "libxml2_for_linux", "softwareVersion": "2.9.14+dfsg-1.3ubuntu3.3",
              "recommendedVersion": ""
            }
          }
        }"#).unwrap();
        let asset = sub.asset().unwrap();
        assert_eq!(asset.kind, AssetKind::VirtualMachine);
        assert_eq!(asset.name.as_deref(), Some("vm-test"));
        let f = sub.into_findings();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].key.cve_id.as_str(), "CVE-2025-49796");
        assert_eq!(f[1].severity, Some(Severity::Critical));
        assert_eq!(f[0].cvss, Some(7.5));
        assert_eq!(f[0].key.software_name, "libxml2_for_linux");
        assert_eq!(f[0].key.asset_source_id, asset.source_id);
        assert_eq!(f[0].recommended_update, None, "an empty fix is no fix");
        assert!(f[0].last_seen.is_some());
    }

    #[test]
    fn a_legacy_registry_finding_reads_vulnerability_and_software_details() {
        let sub: SubAssessment = serde_json::from_str(r#"{
          "id": "/x/subAssessments/y",
          "properties": {
            "status": { "code": "Unhealthy", "severity": "High" },
            "resourceDetails": { "id": "/repositories/public/app/images/sha256:4af8", "source": "Azure" },
            "additionalData": {
              "assessedResourceType": "AzureContainerRegistryVulnerability",
              "vulnerabilityDetails": { "cveId": "CVE-2022-42969", "severity": "Medium", "cvss": { "2.0": null, "3.0": { "base": 5.3 } } },
              "softwareDetails": { "packageName": "py", "version": "1.11.0", "fixedVersion": "", "vendor": "python" }
            }
          }
        }"#).unwrap();
        assert_eq!(sub.asset().unwrap().kind, AssetKind::ContainerImage);
        let f = sub.into_findings();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].cvss, Some(5.3));
        assert_eq!(f[0].severity, Some(Severity::Medium));
        assert_eq!(f[0].key.software_version, "1.11.0");
    }

    #[test]
    fn healthy_and_cve_less_legacy_rows_are_not_findings() {
        let healthy: SubAssessment = serde_json::from_str(
            r#"{"id":"a","properties":{"status":{"code":"Healthy"},"resourceDetails":{"id":"/subscriptions/s/x"},"additionalData":{"cve":[{"title":"CVE-2025-1"}]}}}"#,
        )
        .unwrap();
        assert!(healthy.into_findings().is_empty());
        let qualys: SubAssessment = serde_json::from_str(
            r#"{"id":"a","properties":{"status":{"code":"Unhealthy"},"resourceDetails":{"id":"/subscriptions/s/x"},"additionalData":{"assessedResourceType":"ServerVulnerability","cve":[]}}}"#,
        )
        .unwrap();
        assert!(qualys.into_findings().is_empty());
    }

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
}
