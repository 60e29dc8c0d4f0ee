//! Defender for Cloud vulnerability findings → model findings: the individual recommendations of
//! Resource Graph (one finding per entry of `CvesDetails`), completed from the tenant-scope
//! `cvedetails` rows, and the legacy grouped sub-assessments. Each finding travels with what
//! Microsoft said of its CVE there, for the catalogue.

use rampart_model::{
    Asset, CveId, Finding, FindingKey, Severity, Vulnerability, parse_microsoft_timestamp,
};
use serde_json::Value;

use crate::convert_arm::{cloud_asset, resource_name};
use crate::wire::arm::{
    CveDetailsRow, ResourceDetails, SubAssessment, VulnerabilityRow, additional_text,
    cvss_by_version,
};

/// Why a Resource Graph row is not a finding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotACloudFinding {
    #[error("the row names no resource")]
    NoResource,
    #[error("{0}")]
    BadCvesDetails(String),
}

/// One cloud finding with what Microsoft said of its CVE there (the catalogue facts), and how
/// complete that was.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudFinding {
    pub finding: Finding,
    /// Severity, CVSS, dates and description of the CVE as the finding carried them.
    pub cve: Vulnerability,
    /// The severity is the CVE's own, not the recommendation's (a fallback).
    pub own_severity: bool,
    /// The entry carried little more than the CVE id (the individual model may do that): the
    /// details are in the tenant-scope `microsoft.security/cvedetails` rows.
    pub needs_details: bool,
}

impl CloudFinding {
    /// Fills what the finding lacks from a `cvedetails` row. The CVE's own severity there beats
    /// the recommendation's, which the finding only carried as a fallback.
    pub fn enrich(&mut self, d: &CveDetailsRow) {
        if !self.own_severity
            && let Some(s) = d.severity().as_deref().and_then(Severity::parse_lenient)
        {
            self.finding.severity = Some(s);
            self.own_severity = true;
        }
        if self.finding.cvss.is_none() {
            self.finding.cvss = d.cvss();
        }
        let c = &mut self.cve;
        c.severity = if self.own_severity {
            self.finding.severity
        } else {
            c.severity
        };
        c.cvss = c.cvss.or(self.finding.cvss);
        if c.cvss_vector.is_none() {
            c.cvss_vector = d.vector();
        }
        if c.published_on.is_none() {
            c.published_on = timestamp(d.published());
        }
        if c.updated_on.is_none() {
            c.updated_on = timestamp(d.last_modified());
        }
        if c.description.is_none() {
            c.description = d.description().map(|t| bounded(&t));
        }
        self.needs_details = false;
    }
}

/// What one individual recommendation yields: its findings, and how many of its CVE entries were
/// unusable (not an object, or not a CVE id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowFindings {
    pub findings: Vec<CloudFinding>,
    pub refused: Vec<String>,
}

fn timestamp(s: Option<String>) -> Option<chrono::DateTime<chrono::Utc>> {
    s.as_deref().and_then(|t| parse_microsoft_timestamp(t).ok())
}

/// Descriptions can be long (Microsoft's AI summaries); the catalogue keeps a bounded copy.
fn bounded(s: &str) -> String {
    s.chars().take(4000).collect()
}

/// `(first, last)` with first never later than last: Microsoft's evaluation dates can disagree
/// with each other, and a finding first seen after it was last seen reads as nonsense.
fn ordered(
    first: Option<chrono::DateTime<chrono::Utc>>,
    last: Option<chrono::DateTime<chrono::Utc>>,
) -> (
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::DateTime<chrono::Utc>>,
) {
    match (first, last) {
        (Some(f), Some(l)) if f > l => (Some(l), Some(f)),
        (None, Some(l)) => (Some(l), Some(l)),
        other => other,
    }
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

    /// One finding per entry of `CvesDetails`. An entry's own severity wins; without one (the
    /// individual model may carry only `CveId`) the recommendation's `metadata.severity` is used,
    /// so no finding goes without a severity Microsoft gave somewhere. `firstEvaluationDate` and
    /// `statusChangeDate` become first and last seen.
    pub fn into_findings(self) -> Result<RowFindings, NotACloudFinding> {
        let resource = self
            .resource_id
            .as_deref()
            .filter(|r| !r.is_empty())
            .ok_or(NotACloudFinding::NoResource)?
            .to_ascii_lowercase();
        let (entries, dropped) = self
            .cve_details()
            .map_err(NotACloudFinding::BadCvesDetails)?;
        let mut out = RowFindings::default();
        out.refused
            .extend((0..dropped).map(|_| "a CvesDetails entry that is not an object".to_owned()));
        let row_severity = self.severity.as_deref().and_then(Severity::parse_lenient);
        let (first_seen, last_seen) = ordered(
            timestamp(self.first_evaluation_date.clone()),
            timestamp(self.status_change_date.clone()),
        );
        let installed = self.installed_version();
        let row_fix = self.fixed_version.clone().filter(|v| !v.is_empty());
        let reference = Some(self.id.to_ascii_lowercase());
        for cve in entries {
            let raw = cve.cve_id.clone().unwrap_or_default();
            let Ok(cve_id) = raw.trim().parse::<CveId>() else {
                out.refused.push(format!(
                    "'{}' is not a CVE id",
                    raw.chars().take(40).collect::<String>()
                ));
                continue;
            };
            let own = cve.severity.as_deref().and_then(Severity::parse_lenient);
            let cvss = cve.cvss_base();
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
            let said_severity = cve
                .severity
                .as_deref()
                .is_some_and(|s| !s.trim().is_empty());
            let needs_details = !said_severity || (cvss.is_none() && cve.published_date.is_none());
            let finding = Finding {
                asset_os_platform: None,
                asset_os_version: None,
                key: FindingKey {
                    asset_source_id: resource.clone(),
                    software_vendor: self.software_vendor.clone().unwrap_or_default(),
                    software_name: self.software_name.clone().unwrap_or_default(),
                    software_version: installed.clone(),
                    cve_id: cve_id.clone(),
                },
                asset_name: self.resource_name.clone(),
                severity: own.or(row_severity),
                cvss,
                exploitability,
                recommended_update: cve
                    .fixed_version
                    .clone()
                    .filter(|v| !v.is_empty())
                    .or_else(|| row_fix.clone()),
                recommendation_reference: reference.clone(),
                first_seen,
                last_seen,
            };
            let facts = Vulnerability {
                source_exposed_machines: None,
                cve_id,
                severity: own,
                cvss,
                cvss_vector: cve.cvss_vector(),
                epss: None,
                public_exploit: cve
                    .exploitability
                    .as_ref()
                    .is_some_and(|e| e.published == Some(true)),
                exploit_verified: cve
                    .exploitability
                    .as_ref()
                    .is_some_and(|e| e.verified == Some(true)),
                exploit_in_kit: cve
                    .exploitability
                    .as_ref()
                    .is_some_and(|e| e.in_kit == Some(true)),
                exploit_types: Vec::new(),
                published_on: timestamp(cve.published_date.clone()),
                updated_on: timestamp(cve.last_modified_date.clone()),
                description: cve.description.as_deref().map(bounded),
            };
            out.findings.push(CloudFinding {
                finding,
                cve: facts,
                own_severity: own.is_some(),
                needs_details,
            });
        }
        Ok(out)
    }
}

/// The catalogue facts of a finding that carries no more than the finding itself.
fn facts_of(f: &Finding, published: Option<chrono::DateTime<chrono::Utc>>) -> Vulnerability {
    let mut v = Vulnerability::from_finding(f);
    v.published_on = published;
    v
}

impl SubAssessment {
    /// The legacy grouped finding (deprecated 2026-07-31, still served by some tenants) as one
    /// finding per CVE. Machine findings (`ServerVulnerabilityTvm`, Qualys `ServerVulnerability`)
    /// carry a `cve` array (one object on AKS nodes) and the software in `additionalData`;
    /// registry images carry `vulnerabilityDetails` and `softwareDetails` (MDVM) or
    /// `repositoryName`/`imageDigest` (Qualys). CVSS objects keyed by version
    /// (`{"2.0":{"base":10},"3.0":{"base":9.8}}`) give their v3 base score. Rows without a CVE
    /// (Qualys checks, SQL and configuration rules) are not findings.
    ///
    /// `parent_first_seen` is the parent assessment's `firstEvaluationDate`, when known: the
    /// sub-assessment itself only says when it was generated (`timeGenerated`, last seen), and
    /// first seen is never later than that.
    pub fn into_findings(
        self,
        parent_first_seen: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Vec<CloudFinding> {
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
        let name = legacy_asset_name(&p.resource_details, data, &resource);
        let reference = Some(self.id.to_ascii_lowercase());
        let last_seen = timestamp(p.time_generated.clone());
        let first_seen = match (parent_first_seen, last_seen) {
            (Some(f), Some(l)) => Some(f.min(l)),
            (None, l) => l,
            (f, None) => f,
        };
        // A row without a severity of its own takes the recommendation's.
        let recommendation_severity = p
            .status
            .severity
            .as_deref()
            .and_then(Severity::parse_lenient);
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
            let cvss = details.get("cvss").and_then(cvss_by_version);
            let severity = field(Some(details), "severity")
                .as_deref()
                .and_then(Severity::parse_lenient)
                .or(recommendation_severity);
            let finding = Finding {
                asset_os_platform: None,
                asset_os_version: None,
                key: FindingKey {
                    asset_source_id: resource,
                    software_vendor: field(software, "vendor").unwrap_or_default(),
                    software_name: field(software, "packageName").unwrap_or_default(),
                    software_version: field(software, "version").unwrap_or_default(),
                    cve_id,
                },
                asset_name: name,
                severity,
                cvss,
                exploitability: None,
                recommended_update: field(software, "fixedVersion"),
                recommendation_reference: reference,
                first_seen,
                last_seen,
            };
            let mut cve = facts_of(&finding, timestamp(field(Some(details), "publishedDate")));
            cve.updated_on = timestamp(field(Some(details), "lastModifiedDate"));
            out.push(CloudFinding {
                finding,
                cve,
                own_severity: true,
                needs_details: false,
            });
            return out;
        }
        let cves: Vec<&Value> = match data.get("cve") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => Vec::new(),
        };
        // Qualys rows score the whole QID: `cvss` keyed by version, `publishedTime`.
        let row_cvss = data.get("cvss").and_then(cvss_by_version);
        let row_published = text("publishedTime");
        for cve in cves {
            let Some(cve_id) = cve
                .get("title")
                .and_then(Value::as_str)
                .and_then(|t| t.trim().parse::<CveId>().ok())
            else {
                continue;
            };
            let severity = cve
                .get("severity")
                .and_then(Value::as_str)
                .and_then(Severity::parse_lenient)
                .or(recommendation_severity);
            let published = cve
                .get("publishedDate")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| row_published.clone());
            let finding = Finding {
                asset_os_platform: None,
                asset_os_version: None,
                key: FindingKey {
                    asset_source_id: resource.clone(),
                    software_vendor: text("softwareVendor").unwrap_or_default(),
                    software_name: text("softwareName").unwrap_or_default(),
                    software_version: text("softwareVersion").unwrap_or_default(),
                    cve_id,
                },
                asset_name: name.clone(),
                severity,
                cvss: cve.get("cvssScore").and_then(Value::as_f64).or(row_cvss),
                exploitability: cve
                    .get("exploitabilityLevel")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                recommended_update: text("recommendedVersion")
                    .or_else(|| text("fixedNodePoolVersion")),
                recommendation_reference: reference.clone(),
                first_seen,
                last_seen,
            };
            let mut facts = facts_of(&finding, timestamp(published));
            facts.updated_on = timestamp(
                cve.get("lastModifiedDate")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
            out.push(CloudFinding {
                finding,
                cve: facts,
                own_severity: true,
                needs_details: false,
            });
        }
        out
    }

    /// The parent assessment's id (`…/assessments/{key}`), lower-cased.
    pub fn parent_assessment_id(&self) -> Option<String> {
        let id = self.id.to_ascii_lowercase();
        let i = id.rfind("/subassessments/")?;
        Some(id[..i].to_owned())
    }

    /// The assessed resource as an asset.
    pub fn asset(&self) -> Option<Asset> {
        let d = &self.properties.resource_details;
        let id =
            d.id.as_deref()
                .filter(|r| !r.trim().is_empty())?
                .to_ascii_lowercase();
        let name = legacy_asset_name(d, &self.properties.additional_data, &id);
        Some(cloud_asset(id, d.resource_type.as_deref(), name))
    }
}

/// A registry image is named `repository@sha256:…` (MDVM `artifactDetails`, Qualys
/// `repositoryName`/`imageDigest`): its resource id is an image path whose last segment is only
/// the digest. Other resources keep their own name.
fn legacy_asset_name(
    d: &ResourceDetails,
    data: &serde_json::Map<String, Value>,
    id: &str,
) -> Option<String> {
    let artifact = data.get("artifactDetails");
    let pick = |v: Option<&Value>, k: &str| {
        v.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
    };
    let repository =
        pick(artifact, "repositoryName").or_else(|| additional_text(data, "repositoryName"));
    let digest = pick(artifact, "digest").or_else(|| additional_text(data, "imageDigest"));
    match (
        repository.filter(|r| !r.is_empty()),
        digest.filter(|d| !d.is_empty()),
    ) {
        (Some(r), Some(d)) => Some(format!("{r}@{d}")),
        (Some(r), None) => Some(r),
        _ => resource_name(d, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_model::AssetKind;
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
        let f: Vec<Finding> = sub
            .into_findings(None)
            .into_iter()
            .map(|c| c.finding)
            .collect();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].key.cve_id.as_str(), "CVE-2025-49796");
        assert_eq!(f[1].severity, Some(Severity::Critical));
        assert_eq!(f[0].cvss, Some(7.5));
        assert_eq!(f[0].key.software_name, "libxml2_for_linux");
        assert_eq!(f[0].key.asset_source_id, asset.source_id);
        assert_eq!(f[0].recommended_update, None, "an empty fix is no fix");
        assert!(f[0].last_seen.is_some());
        assert_eq!(
            f[0].first_seen, f[0].last_seen,
            "first seen never after last seen"
        );
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
        let f: Vec<Finding> = sub
            .into_findings(None)
            .into_iter()
            .map(|c| c.finding)
            .collect();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].cvss, Some(5.3));
        assert_eq!(f[0].severity, Some(Severity::Medium));
        assert_eq!(f[0].key.software_version, "1.11.0");
    }

    #[test]
    fn healthy_and_cve_less_legacy_rows_are_not_findings() {
        let healthy: SubAssessment = serde_json::from_str(
            r#"{"id":"a","properties":{"status":{"code":"Healthy"},"resourceDetails":{"id":"/subscriptions/s/x"},"additionalData":{"cve":[{"title":"CVE-2025-10001"}]}}}"#,
        )
        .unwrap();
        assert!(healthy.into_findings(None).is_empty());
        let qualys: SubAssessment = serde_json::from_str(
            r#"{"id":"a","properties":{"status":{"code":"Unhealthy"},"resourceDetails":{"id":"/subscriptions/s/x"},"additionalData":{"assessedResourceType":"ServerVulnerability","cve":[]}}}"#,
        )
        .unwrap();
        assert!(qualys.into_findings(None).is_empty());
    }

    #[test]
    fn legacy_cvss_objects_give_the_v3_base_score_and_qualys_keeps_its_published_time() {
        // Qualys `ServerVulnerability`: CVSS per QID keyed by version, CVEs as {title, link}.
        let sub: SubAssessment = serde_json::from_str(r#"{
          "id": "/subscriptions/s/rg/vm/providers/Microsoft.Security/assessments/1195afff-c881-495e-9bc5-1486211ae03f/subassessments/q",
          "properties": {
            "id": "90043", "status": { "code": "Unhealthy", "severity": "Medium" },
            "timeGenerated": "2022-12-22T09:36:00.0420000Z",
            "resourceDetails": { "id": "/subscriptions/s/rg/vm", "source": "Azure" },
            "additionalData": {
              "assessedResourceType": "ServerVulnerability", "source": "Built-in Qualys vulnerability assessment",
              "cvss": { "2.0": { "base": 10 }, "3.0": { "base": 9.8 } },
              "cve": [ { "title": "CVE-2021-44228", "link": "https://nvd.nist.gov/vuln/detail/CVE-2021-44228" } ],
              "publishedTime": "2021-12-10T00:00:00.0000000Z"
            }
          }
        }"#).unwrap();
        let parent = parse_microsoft_timestamp("2023-01-01T00:00:00Z").ok();
        let f = sub.into_findings(parent);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].finding.cvss, Some(9.8), "v3, not the larger v2");
        assert_eq!(f[0].finding.severity, Some(Severity::Medium));
        assert_eq!(
            f[0].cve.published_on,
            parse_microsoft_timestamp("2021-12-10T00:00:00Z").ok()
        );
        let (first, last) = (f[0].finding.first_seen, f[0].finding.last_seen);
        assert!(first.is_some() && first <= last, "{first:?} > {last:?}");
    }

    #[test]
    fn a_legacy_registry_image_is_named_by_repository_and_digest() {
        let mdvm: SubAssessment = serde_json::from_str(r#"{
          "id": "/x/subAssessments/y",
          "properties": {
            "status": { "code": "Unhealthy", "severity": "High" },
            "timeGenerated": "2025-08-01T00:00:00Z",
            "resourceDetails": { "id": "/repositories/web/frontend/images/sha256:4af8", "source": "Azure" },
            "additionalData": {
              "assessedResourceType": "AzureContainerRegistryVulnerability",
              "vulnerabilityDetails": { "cveId": "CVE-2022-42969", "severity": "High", "publishedDate": "2022-10-16T00:00:00Z",
                "cvss": { "2.0": { "base": 7.5 }, "3.0": { "base": 5.3 } } },
              "artifactDetails": { "repositoryName": "web/frontend", "digest": "sha256:4af8", "registryHost": "acr0.azurecr.io" },
              "softwareDetails": { "packageName": "py", "version": "1.11.0", "vendor": "python" }
            }
          }
        }"#).unwrap();
        assert_eq!(
            mdvm.asset().unwrap().name.as_deref(),
            Some("web/frontend@sha256:4af8")
        );
        let f = mdvm.into_findings(None);
        assert_eq!(f[0].finding.cvss, Some(5.3), "v3 wins over a larger v2");
        assert_eq!(
            f[0].finding.asset_name.as_deref(),
            Some("web/frontend@sha256:4af8")
        );
        assert!(f[0].cve.published_on.is_some());
        let qualys: SubAssessment = serde_json::from_str(r#"{
          "id": "/x/subAssessments/z",
          "properties": {
            "status": { "code": "Unhealthy", "severity": "High" },
            "resourceDetails": { "id": "/repositories/jobs/worker/images/sha256:77", "source": "Azure" },
            "additionalData": { "assessedResourceType": "ContainerRegistryVulnerability",
              "repositoryName": "jobs/worker", "imageDigest": "sha256:77", "cvss": { "3.0": { "base": 8.1 } },
              "cve": [ { "title": "CVE-2020-1234", "link": "x" } ] }
          }
        }"#).unwrap();
        assert_eq!(
            qualys.asset().unwrap().name.as_deref(),
            Some("jobs/worker@sha256:77")
        );
        assert_eq!(qualys.into_findings(None)[0].finding.cvss, Some(8.1));
    }

    fn row(cves: &str) -> VulnerabilityRow {
        serde_json::from_value(serde_json::json!({
            "id": "/subscriptions/S/rg/vm/providers/Microsoft.Security/assessments/K",
            "resourceId": "/subscriptions/S/rg/VM",
            "resourceName": "vm",
            "resourceType": "microsoft.compute/virtualmachines",
            "category": "SoftwareUpdate",
            "severity": "High",
            "softwareName": "openssl",
            "softwareVendor": "openssl",
            "detectedVersions": "[\"3.0.2\"]",
            "fixedVersion": "3.0.15",
            "cvesDetails": cves,
            "firstEvaluationDate": "2026-06-02T10:11:12.1234567Z",
            "statusChangeDate": "2026-08-21T17:40:43.3254070Z"
        }))
        .unwrap()
    }

    #[test]
    fn an_individual_recommendation_is_one_finding_per_cve_with_microsofts_dates() {
        let r = row(
            r#"[{"CveId":"CVE-2025-10001","Severity":"Critical","Cvss":[{"Key":"2.0","Value":{"Base":10}},{"Key":"3.1","Value":{"Base":9.1,"CvssVectorString":"CVSS:3.1/AV:N"}}],"PublishedDate":"2025-06-11T16:00:00+00:00","Description":"A flaw."},{"CveId":"CVE-2025-10002","Severity":"Low"},{"CveId":"not a cve"},7]"#,
        );
        let out = r.into_findings().unwrap();
        assert_eq!(out.findings.len(), 2);
        assert_eq!(out.refused.len(), 2, "{:?}", out.refused);
        let f = &out.findings[0];
        assert_eq!(f.finding.severity, Some(Severity::Critical));
        assert_eq!(f.finding.cvss, Some(9.1), "v3 wins");
        assert_eq!(f.cve.cvss_vector.as_deref(), Some("CVSS:3.1/AV:N"));
        assert_eq!(f.cve.description.as_deref(), Some("A flaw."));
        assert!(f.cve.published_on.is_some());
        assert_eq!(
            f.finding.first_seen,
            parse_microsoft_timestamp("2026-06-02T10:11:12.1234567Z").ok()
        );
        assert_eq!(
            f.finding.last_seen,
            parse_microsoft_timestamp("2026-08-21T17:40:43.3254070Z").ok()
        );
        assert_eq!(f.finding.key.software_version, "3.0.2");
        assert_eq!(f.finding.recommended_update.as_deref(), Some("3.0.15"));
        assert!(!f.needs_details);
    }

    #[test]
    fn a_cve_with_only_its_id_takes_the_recommendations_severity_then_cvedetails() {
        let out = row(r#"[{"CveId":"CVE-2025-10003"}]"#)
            .into_findings()
            .unwrap();
        let mut f = out.findings[0].clone();
        assert_eq!(
            f.finding.severity,
            Some(Severity::High),
            "the row's severity"
        );
        assert!(f.needs_details && !f.own_severity);
        assert_eq!(
            f.cve.severity, None,
            "the catalogue is not told the row's severity"
        );
        // Learn's names (`LatestPublishedDate`, `CVSSScore`) and the observed cvss object.
        let d: CveDetailsRow = serde_json::from_str(
            r#"{"id":"/providers/Microsoft.Security/cveDetails/CVE-2025-10003","name":"CVE-2025-10003","properties":{"severity":"Medium","cvss":{"3.1":{"base":6.5,"vectorString":"CVSS:3.1/AV:L"}},"LatestPublishedDate":"2025-01-02T00:00:00Z","lastModifiedDate":"2025-02-03T00:00:00Z"}}"#,
        )
        .unwrap();
        assert_eq!(d.cve().as_deref(), Some("CVE-2025-10003"));
        f.enrich(&d);
        assert_eq!(f.finding.severity, Some(Severity::Medium), "the CVE's own");
        assert_eq!(f.finding.cvss, Some(6.5));
        assert_eq!(f.cve.cvss_vector.as_deref(), Some("CVSS:3.1/AV:L"));
        assert!(f.cve.published_on.is_some() && f.cve.updated_on.is_some());
        let plain: CveDetailsRow =
            serde_json::from_str(r#"{"name":"CVE-2025-10004","properties":{"CVSSScore":"7.2"}}"#)
                .unwrap();
        assert_eq!(plain.cvss(), Some(7.2));
    }

    #[test]
    fn a_broken_cves_details_string_is_named() {
        let e = row("[{").into_findings().unwrap_err();
        assert!(e.to_string().contains("CvesDetails is not JSON"), "{e}");
        assert!(row("").into_findings().unwrap().findings.is_empty());
    }
}
