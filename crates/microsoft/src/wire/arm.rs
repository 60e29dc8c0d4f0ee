//! Azure Resource Manager and Resource Graph JSON for Defender for Cloud
//! (<https://learn.microsoft.com/en-us/rest/api/defenderforcloud/>). Every field Microsoft may omit is optional; both casings of `resourceDetails` are read;
//! `additionalData` values are strings that may hold JSON ([`additional_json`]).

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// An item of `GET /subscriptions`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArmSubscription {
    #[serde(default)]
    pub id: Option<String>,
    pub subscription_id: String,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
}

/// `{max, current, percentage}` of scores and controls.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct ScoreDetails {
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub current: Option<f64>,
    /// A 0–1 fraction.
    #[serde(default)]
    pub percentage: Option<f64>,
}

/// An item of `secureScores`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SecureScoreItem {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: SecureScoreProperties,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecureScoreProperties {
    #[serde(default)]
    pub display_name: Option<String>,
    /// `null` is read as "no score" (see [`ScoreControlProperties::score`]).
    #[serde(default, deserialize_with = "null_as_default")]
    pub score: ScoreDetails,
    #[serde(default)]
    pub weight: Option<i64>,
}

/// An item of `secureScoreControls` (with `$expand=definition`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ScoreControlItem {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: ScoreControlProperties,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScoreControlProperties {
    #[serde(default)]
    pub display_name: Option<String>,
    /// Microsoft has sent `"score": null` for a control; one such control must not make its whole
    /// list unreadable, so `null` reads as a score with nothing known.
    #[serde(default, deserialize_with = "null_as_default")]
    pub score: ScoreDetails,
    #[serde(default)]
    pub healthy_resource_count: Option<i64>,
    #[serde(default)]
    pub unhealthy_resource_count: Option<i64>,
    #[serde(default)]
    pub not_applicable_resource_count: Option<i64>,
    #[serde(default)]
    pub weight: Option<i64>,
    #[serde(default)]
    pub definition: Option<ControlDefinition>,
}

/// An item of `secureScoreControlDefinitions` (also embedded in controls).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ControlDefinition {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: ControlDefinitionProperties,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ControlDefinitionProperties {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub max_score: Option<f64>,
    #[serde(default)]
    pub source: Option<ControlSource>,
    #[serde(default)]
    pub assessment_definitions: Vec<IdRef>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ControlSource {
    #[serde(default)]
    pub source_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct IdRef {
    #[serde(default)]
    pub id: Option<String>,
}

/// `resourceDetails`: PascalCase in real assessments, camelCase in the swagger and sub-assessments.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct ResourceDetails {
    #[serde(rename = "Source", alias = "source", default)]
    pub source: Option<String>,
    #[serde(rename = "Id", alias = "id", default)]
    pub id: Option<String>,
    #[serde(rename = "ResourceName", alias = "resourceName", default)]
    pub resource_name: Option<String>,
    #[serde(rename = "ResourceType", alias = "resourceType", default)]
    pub resource_type: Option<String>,
    #[serde(rename = "ResourceProvider", alias = "resourceProvider", default)]
    pub resource_provider: Option<String>,
    #[serde(rename = "NativeResourceId", alias = "nativeResourceId", default)]
    pub native_resource_id: Option<String>,
    #[serde(rename = "MachineName", alias = "machineName", default)]
    pub machine_name: Option<String>,
}

/// An item of `assessments` (2021-06-01).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Assessment {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub properties: AssessmentProperties,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AssessmentProperties {
    #[serde(default, alias = "ResourceDetails")]
    pub resource_details: ResourceDetails,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub status: AssessmentStatus,
    /// Values are strings, some of them JSON: read with [`additional_json`].
    #[serde(default, deserialize_with = "null_as_default")]
    pub additional_data: Map<String, Value>,
    /// Present in Resource Graph rows and individual recommendations, not in REST lists.
    #[serde(default)]
    pub metadata: Option<AssessmentMetadataProperties>,
    /// api-version 2025-05-04 only, and only where Defender CSPM assesses risk.
    #[serde(default)]
    pub risk: Option<AssessmentRisk>,
}

/// `properties.risk` (assessments 2025-05-04, `SecurityAssessmentPropertiesBase.risk` in
/// azure-rest-api-specs). Every field is optional; unknown levels are kept as sent.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AssessmentRisk {
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub risk_factors: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attack_paths_references: Vec<String>,
    /// `{id, nodes, edges}` of each path; only counted, the graph itself is Defender's to show.
    #[serde(default, deserialize_with = "null_as_default")]
    pub paths: Vec<Value>,
    #[serde(default)]
    pub is_contextual_risk: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AssessmentStatus {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Severity of a sub-assessment (legacy).
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub first_evaluation_date: Option<String>,
    #[serde(default)]
    pub status_change_date: Option<String>,
}

/// An item of `assessmentMetadata`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AssessmentMetadata {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub properties: AssessmentMetadataProperties,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AssessmentMetadataProperties {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub remediation_description: Option<String>,
    #[serde(default)]
    pub preview: Option<bool>,
    #[serde(default)]
    pub assessment_type: Option<String>,
    #[serde(default)]
    pub recommendation_category: Option<String>,
}

/// An item of the legacy `subAssessments` (2019-01-01-preview).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SubAssessment {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: SubAssessmentProperties,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SubAssessmentProperties {
    /// The vulnerability id: a QID, an MDVM code or a CVE id.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub status: AssessmentStatus,
    #[serde(default)]
    pub time_generated: Option<String>,
    #[serde(default)]
    pub resource_details: ResourceDetails,
    #[serde(default, deserialize_with = "null_as_default")]
    pub additional_data: Map<String, Value>,
}

impl SubAssessmentProperties {
    /// CVE ids of the finding: `cve` is an array (`ServerVulnerabilityTvm`) or one object
    /// (`ManagedAggregatedServerVulnerabilityTvm`); container findings carry
    /// `vulnerabilityDetails.cveId`.
    pub fn cve_ids(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.additional_data.get("cve") {
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(cve_title)),
            Some(one @ Value::Object(_)) => out.extend(cve_title(one)),
            _ => {}
        }
        if let Some(id) = self
            .additional_data
            .get("vulnerabilityDetails")
            .and_then(|d| d.get("cveId"))
            .and_then(Value::as_str)
        {
            out.push(id.to_owned());
        }
        out
    }
}

fn cve_title(v: &Value) -> Option<String> {
    v.get("title").and_then(Value::as_str).map(str::to_owned)
}

/// A Defender plan (`pricings`, 2024-01-01).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Pricing {
    pub name: String,
    #[serde(default)]
    pub properties: PricingProperties,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PricingProperties {
    #[serde(default)]
    pub pricing_tier: Option<String>,
    #[serde(default)]
    pub sub_plan: Option<String>,
    #[serde(default)]
    pub extensions: Vec<PricingExtension>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PricingExtension {
    pub name: String,
    /// `"True"`/`"False"` as strings.
    #[serde(default)]
    pub is_enabled: Option<Value>,
}

/// `{value: [...]}` without paging (pricings).
#[derive(Debug, Clone, Deserialize)]
pub struct ValueList<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
}

/// One Resource Graph answer page.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphPage<T> {
    #[serde(default)]
    pub total_records: Option<i64>,
    #[serde(default)]
    pub count: Option<i64>,
    /// The strings `"true"`/`"false"` (a boolean is accepted too).
    #[serde(default, deserialize_with = "string_bool")]
    pub result_truncated: bool,
    #[serde(rename = "$skipToken", default)]
    pub skip_token: Option<String>,
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
}

/// A row of the client's vulnerability query: one individual recommendation (`SoftwareUpdate`, or
/// `ServiceUpgrade` for AKS nodes) with its `CvesDetails` unexpanded. Rampart expands the CVEs
/// itself: Resource Graph's `mv-expand` stops at 128 elements per row unless told otherwise
/// (<https://learn.microsoft.com/en-us/azure/governance/resource-graph/concepts/query-language>).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VulnerabilityRow {
    pub id: String,
    #[serde(default)]
    pub subscription_id: Option<String>,
    #[serde(default)]
    pub resource_id: Option<String>,
    #[serde(default)]
    pub resource_name: Option<String>,
    #[serde(default)]
    pub resource_type: Option<String>,
    /// `properties.metadata.recommendationCategory`.
    #[serde(default)]
    pub category: Option<String>,
    /// `properties.metadata.severity`: the recommendation's severity, where Microsoft moved it
    /// from the grouped model's `status.severity`.
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub software_name: Option<String>,
    #[serde(default)]
    pub software_vendor: Option<String>,
    /// A JSON-encoded array of versions, or one version.
    #[serde(default)]
    pub detected_versions: Option<String>,
    #[serde(default)]
    pub fixed_version: Option<String>,
    /// `additionalData.CvesDetails`: a JSON array inside a string (an array is accepted too).
    #[serde(default)]
    pub cves_details: Option<Value>,
    #[serde(default)]
    pub first_evaluation_date: Option<String>,
    #[serde(default)]
    pub status_change_date: Option<String>,
}

impl VulnerabilityRow {
    /// The entries of `CvesDetails`; `Err` names what is wrong when it is not a JSON array. An entry
    /// that is not an object is left out (and counted in the second value).
    pub fn cve_details(&self) -> Result<(Vec<CveDetail>, usize), String> {
        let parsed = match &self.cves_details {
            None | Some(Value::Null) => return Ok((Vec::new(), 0)),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok((Vec::new(), 0)),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                .map_err(|e| format!("CvesDetails is not JSON ({e})"))?,
            Some(other) => other.clone(),
        };
        let Value::Array(items) = parsed else {
            return Err("CvesDetails is not a JSON array".to_owned());
        };
        let total = items.len();
        let details: Vec<CveDetail> = items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        let dropped = total - details.len();
        Ok((details, dropped))
    }
}

/// A `microsoft.security/cvedetails` row (tenant scope only): Microsoft names the fields it
/// carries (published and modified dates, CVSS) but documents no schema, so every known spelling
/// is read (<https://learn.microsoft.com/en-us/azure/defender-for-cloud/transition-grouped-individual-recommendations>).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CveDetailsRow {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cve_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub properties: Map<String, Value>,
}

impl CveDetailsRow {
    fn field(&self, keys: &[&str]) -> Option<&Value> {
        keys.iter().find_map(|k| {
            self.properties
                .iter()
                .find(|(name, v)| name.eq_ignore_ascii_case(k) && !v.is_null())
                .map(|(_, v)| v)
        })
    }

    fn text(&self, keys: &[&str]) -> Option<String> {
        match self.field(keys)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The CVE the row describes: `properties.cveId`, else the row's `cveId` column, else `name`.
    pub fn cve(&self) -> Option<String> {
        self.text(&["cveId"])
            .or_else(|| self.cve_id.clone())
            .or_else(|| self.name.clone())
    }

    pub fn severity(&self) -> Option<String> {
        self.text(&["severity"])
    }

    /// The CVSS base score: v3 of a `cvss` object keyed by version (v4, then v2 when there is no
    /// v3), else a plain `cvssScore`.
    pub fn cvss(&self) -> Option<f64> {
        self.field(&["cvss"])
            .and_then(cvss_by_version)
            .or_else(|| number(self.field(&["cvssScore", "CVSSScore", "cvssV3Score"])?))
    }

    pub fn vector(&self) -> Option<String> {
        let by_version = self.field(&["cvss"])?.as_object()?;
        preferred_version(by_version).and_then(|v| {
            ["vectorString", "cvssVectorString", "vector"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_owned))
        })
    }

    pub fn published(&self) -> Option<String> {
        self.text(&["publishedDate", "latestPublishedDate", "published"])
    }

    pub fn last_modified(&self) -> Option<String> {
        self.text(&["lastModifiedDate", "lastModified"])
    }

    pub fn description(&self) -> Option<String> {
        self.text(&["description"])
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The entry to read of a CVSS object keyed by version (`{"2.0":{"base":10},"3.0":{"base":9.8}}`):
/// the newest 3.x, else the newest 4.x, else the newest other version, skipping nulls.
fn preferred_version(m: &Map<String, Value>) -> Option<&Value> {
    let mut versions: Vec<(&String, &Value)> = m.iter().filter(|(_, v)| v.is_object()).collect();
    versions.sort_by(|a, b| {
        let n = |s: &str| s.parse::<f64>().unwrap_or(0.0);
        n(b.0).total_cmp(&n(a.0))
    });
    let major = |k: &str| k.split('.').next().unwrap_or("").to_owned();
    versions
        .iter()
        .find(|(k, _)| major(k) == "3")
        .or_else(|| versions.iter().find(|(k, _)| major(k) == "4"))
        .or_else(|| versions.first())
        .map(|(_, v)| *v)
}

/// The base score of a CVSS object keyed by version; v3 first (see [`preferred_version`]).
pub fn cvss_by_version(v: &Value) -> Option<f64> {
    let m = v.as_object()?;
    let entry = preferred_version(m)?;
    ["base", "Base", "baseScore"]
        .iter()
        .find_map(|k| entry.get(*k).and_then(number))
}

/// One entry of `additionalData.CvesDetails` (observed keys, <https://learn.microsoft.com/en-us/rest/api/defenderforcloud/>; PascalCase).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct CveDetail {
    #[serde(rename = "CveId", alias = "cveId", default)]
    pub cve_id: Option<String>,
    #[serde(rename = "Severity", alias = "severity", default)]
    pub severity: Option<String>,
    /// `[{"Key":"3.1","Value":{"Base":7.5,"CvssVectorString":…}}]`, or null; read with
    /// [`CveDetail::cvss_base`].
    #[serde(rename = "Cvss", alias = "cvss", default)]
    pub cvss: Option<Value>,
    #[serde(rename = "FixStatus", alias = "fixStatus", default)]
    pub fix_status: Option<String>,
    #[serde(rename = "FixedVersion", alias = "fixedVersion", default)]
    pub fixed_version: Option<String>,
    #[serde(rename = "PublishedDate", alias = "publishedDate", default)]
    pub published_date: Option<String>,
    #[serde(rename = "LastModifiedDate", alias = "lastModifiedDate", default)]
    pub last_modified_date: Option<String>,
    #[serde(rename = "Description", alias = "description", default)]
    pub description: Option<String>,
    #[serde(
        rename = "ExploitabilityDetails",
        alias = "exploitabilityDetails",
        default
    )]
    pub exploitability: Option<Exploitability>,
}

impl CveDetail {
    /// The CVSS entry to read: v3 when there is one (the array form is `[{Key, Value}]`, an object
    /// keyed by version is accepted too).
    fn cvss_entry(&self) -> Option<CvssValue> {
        match self.cvss.as_ref()? {
            Value::Array(items) => {
                let entries: Vec<CvssEntry> = items
                    .iter()
                    .filter_map(|v| serde_json::from_value(v.clone()).ok())
                    .collect();
                let by_version: Map<String, Value> = entries
                    .iter()
                    .filter_map(|e| {
                        let value = e.value.as_ref()?;
                        let json = serde_json::json!({"Base": value.base, "CvssVectorString": value.vector});
                        Some((e.key.clone().unwrap_or_else(|| "3".to_owned()), json))
                    })
                    .collect();
                preferred_version(&by_version).and_then(|v| serde_json::from_value(v.clone()).ok())
            }
            Value::Object(m) => {
                preferred_version(m).and_then(|v| serde_json::from_value(v.clone()).ok())
            }
            _ => None,
        }
    }

    pub fn cvss_base(&self) -> Option<f64> {
        self.cvss_entry()?.base
    }

    pub fn cvss_vector(&self) -> Option<String> {
        self.cvss_entry()?.vector.filter(|v| !v.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct CvssEntry {
    #[serde(rename = "Key", alias = "key", default)]
    pub key: Option<String>,
    #[serde(rename = "Value", alias = "value", default)]
    pub value: Option<CvssValue>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct CvssValue {
    #[serde(rename = "Base", alias = "base", default)]
    pub base: Option<f64>,
    #[serde(rename = "CvssVectorString", alias = "cvssVectorString", default)]
    pub vector: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct Exploitability {
    #[serde(rename = "IsInExploitKit", alias = "isInExploitKit", default)]
    pub in_kit: Option<bool>,
    #[serde(
        rename = "ExploitStepsVerified",
        alias = "IsVerified",
        alias = "isVerified",
        default
    )]
    pub verified: Option<bool>,
    #[serde(
        rename = "ExploitStepsPublished",
        alias = "IsPubliclyDisclosed",
        alias = "isPubliclyDisclosed",
        default
    )]
    pub published: Option<bool>,
}

/// Reads an `additionalData` value that may be JSON inside a string (`"CVEs":"[…]"`) or already
/// JSON. `None` when absent or when the string is not JSON.
pub fn additional_json(data: &Map<String, Value>, key: &str) -> Option<Value> {
    let v = data
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)?;
    match v {
        Value::String(s) => serde_json::from_str(s).ok(),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

/// Reads an `additionalData` value as text (numbers arrive as strings: `"maxCvss30Score":"9.1"`).
pub fn additional_text(data: &Map<String, Value>, key: &str) -> Option<String> {
    let v = data
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)?;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn string_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_details_read_both_casings() {
        let a: ResourceDetails = serde_json::from_str(
            r#"{"Source":"Azure","Id":"/subscriptions/x","ResourceName":"vm"}"#,
        )
        .unwrap();
        let b: ResourceDetails = serde_json::from_str(
            r#"{"source":"Azure","id":"/subscriptions/x","ResourceName":"vm"}"#,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.id.as_deref(), Some("/subscriptions/x"));
    }

    #[test]
    fn additional_data_strings_may_hold_json() {
        let m: Map<String, Value> = serde_json::from_str(
            r#"{"CvesDetails":"[{\"CveId\":\"CVE-2025-1\"}]","maxCvss30Score":"9.1","broken":"[1,"}"#,
        )
        .unwrap();
        let cves = additional_json(&m, "cvesdetails").unwrap();
        assert_eq!(cves[0]["CveId"], "CVE-2025-1");
        assert_eq!(
            additional_text(&m, "maxCvss30Score").as_deref(),
            Some("9.1")
        );
        assert!(additional_json(&m, "broken").is_none());
        assert!(additional_json(&m, "absent").is_none());
    }

    #[test]
    fn cve_is_an_array_or_an_object() {
        let arr: SubAssessmentProperties = serde_json::from_str(
            r#"{"additionalData":{"assessedResourceType":"ServerVulnerabilityTvm","cve":[{"title":"CVE-1"},{"title":"CVE-2"}]}}"#,
        )
        .unwrap();
        assert_eq!(arr.cve_ids(), ["CVE-1", "CVE-2"]);
        let one: SubAssessmentProperties = serde_json::from_str(
            r#"{"additionalData":{"assessedResourceType":"ManagedAggregatedServerVulnerabilityTvm","cve":{"title":"CVE-3"}}}"#,
        )
        .unwrap();
        assert_eq!(one.cve_ids(), ["CVE-3"]);
    }

    #[test]
    fn a_null_control_score_is_read_as_unknown() {
        let c: ScoreControlItem = serde_json::from_str(
            r#"{"id":"/x/secureScoreControls/c","properties":{"displayName":"MFA","score":null,"healthyResourceCount":1}}"#,
        )
        .unwrap();
        assert_eq!(c.properties.score, ScoreDetails::default());
        assert_eq!(c.properties.healthy_resource_count, Some(1));
    }

    #[test]
    fn risk_of_2025_05_04_is_read() {
        let p: AssessmentProperties = serde_json::from_str(
            r#"{"risk":{"level":"High","riskFactors":["Internet exposure"],"attackPathsReferences":["ap-1"],"paths":[{"id":"p","nodes":[],"edges":[]}],"isContextualRisk":true}}"#,
        )
        .unwrap();
        let r = p.risk.unwrap();
        assert_eq!(r.level.as_deref(), Some("High"));
        assert_eq!(r.risk_factors, ["Internet exposure"]);
        assert_eq!(r.attack_paths_references, ["ap-1"]);
        assert_eq!(r.paths.len(), 1);
        let none: AssessmentProperties =
            serde_json::from_str(r#"{"risk":{"level":null,"riskFactors":null}}"#).unwrap();
        assert!(none.risk.unwrap().risk_factors.is_empty());
    }

    #[test]
    fn result_truncated_is_a_string() {
        let p: GraphPage<Value> =
            serde_json::from_str(r#"{"resultTruncated":"true","data":[]}"#).unwrap();
        assert!(p.result_truncated);
        let p: GraphPage<Value> =
            serde_json::from_str(r#"{"resultTruncated":"false","data":[],"$skipToken":"x"}"#)
                .unwrap();
        assert!(!p.result_truncated);
        assert_eq!(p.skip_token.as_deref(), Some("x"));
    }
}
