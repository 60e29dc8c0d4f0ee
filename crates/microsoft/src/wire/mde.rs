//! Defender for Endpoint API shapes (<https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-list>).
//!
//! Every field Microsoft may omit or null is an `Option` with `#[serde(default)]`, unknown fields are
//! ignored, and the record types accept both the camelCase of the JSON APIs and the PascalCase of the
//! file exports and the docs (`OSPlatform`). Strings are owned: records cross a channel to the sync
//! engine and their strings move into model types without a second copy (see `convert`).

use std::fmt;

use serde::Deserialize;

use super::lenient;

/// The error envelope of every MDE API error (<https://learn.microsoft.com/en-us/defender-endpoint/api/common-errors>).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorEnvelope {
    #[serde(default)]
    pub error: Option<ErrorBody>,
}

/// `error` inside [`ErrorEnvelope`]. Parse the code, never the message: messages change.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// A per-request correlation id (GUID or `|...`-style string).
    #[serde(default)]
    pub target: Option<String>,
    /// ARM and Resource Graph put the specific reason here (`ResponsePayloadTooLarge`,
    /// `RateLimiting`) under a generic top-level `code` such as `BadRequest`.
    #[serde(default, deserialize_with = "error_details")]
    pub details: Vec<ErrorDetail>,
}

/// `details` as an array of objects; anything else (null, a string) reads as none, and an entry of
/// another shape is dropped: an error body must never fail to parse over its details.
fn error_details<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ErrorDetail>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// One entry of `error.details[]` (ARM `CloudError`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// An OData collection page: `{"@odata.context", "value": [...], "@odata.nextLink"?}`.
///
/// The paging client does not deserialize pages with this type (it streams `value` item by item, see
/// `decode`), but single small responses and the contract tests do.
#[derive(Debug, Clone, Deserialize)]
pub struct Collection<T> {
    #[serde(rename = "@odata.context", default)]
    pub context: Option<String>,
    #[serde(
        rename = "@odata.count",
        default,
        deserialize_with = "lenient::opt_u64"
    )]
    pub count: Option<u64>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
    pub value: Vec<T>,
}

/// A device from `GET /api/machines` (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-machines>).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// 40 lowercase hex characters; the same value as `deviceId` in TVM data.
    #[serde(alias = "Id")]
    pub id: String,
    #[serde(default)]
    pub merged_into_machine_id: Option<String>,
    #[serde(default)]
    pub is_potential_duplication: Option<bool>,
    #[serde(default)]
    pub is_excluded: Option<bool>,
    #[serde(default)]
    pub exclusion_reason: Option<String>,
    #[serde(default, alias = "ComputerDnsName")]
    pub computer_dns_name: Option<String>,
    #[serde(default)]
    pub first_seen: Option<String>,
    #[serde(default)]
    pub last_seen: Option<String>,
    #[serde(default)]
    pub os_platform: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    #[serde(default)]
    pub os_processor: Option<String>,
    /// `22H2`, `1809`, `Other`.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub last_ip_address: Option<String>,
    #[serde(default)]
    pub last_external_ip_address: Option<String>,
    #[serde(default)]
    pub agent_version: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub os_build: Option<i64>,
    #[serde(default)]
    pub health_status: Option<String>,
    #[serde(default)]
    pub device_value: Option<String>,
    /// A number on the wire although documented as a string; `0` = no device group.
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub rbac_group_id: Option<i64>,
    #[serde(default)]
    pub rbac_group_name: Option<String>,
    #[serde(default)]
    pub risk_score: Option<String>,
    #[serde(default)]
    pub exposure_level: Option<String>,
    #[serde(default)]
    pub is_aad_joined: Option<bool>,
    #[serde(default)]
    pub aad_device_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::vec_or_null")]
    pub machine_tags: Vec<String>,
    /// Present in some tenants and absent in others.
    #[serde(default)]
    pub defender_av_status: Option<String>,
    /// `Onboarded`, or a discovered device: `CanBeOnboarded`, `Unsupported`, `InsufficientInfo`.
    #[serde(default, alias = "onboardingstatus")]
    pub onboarding_status: Option<String>,
    #[serde(default)]
    pub os_architecture: Option<String>,
    #[serde(default)]
    pub managed_by: Option<String>,
    #[serde(default)]
    pub managed_by_status: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ip_addresses: Vec<IpAddress>,
    #[serde(default)]
    pub vm_metadata: Option<VmMetadata>,
}

/// One entry of `Machine.ipAddresses`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    /// May be `""`.
    #[serde(default)]
    pub ip_address: Option<String>,
    #[serde(default)]
    pub mac_address: Option<String>,
    /// `Ethernet`, `SoftwareLoopback`, `Other`, ...
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub operational_status: Option<String>,
}

/// `Machine.vmMetadata`: set for cloud VMs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmMetadata {
    #[serde(default)]
    pub vm_id: Option<String>,
    #[serde(default)]
    pub cloud_provider: Option<String>,
    /// The Azure resource id; joins an MDE device to a Defender for Cloud VM.
    #[serde(default)]
    pub resource_id: Option<String>,
    #[serde(default)]
    pub subscription_id: Option<String>,
}

/// A CVE of the tenant-wide catalogue, `GET /api/vulnerabilities` (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-all-vulnerabilities>).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vulnerability {
    /// `CVE-2019-0608`, or one of Microsoft's `TVM-...` ids.
    #[serde(alias = "Id")]
    pub id: String,
    #[serde(default, alias = "Name")]
    pub name: Option<String>,
    #[serde(default, alias = "Description")]
    pub description: Option<String>,
    #[serde(default, alias = "Severity")]
    pub severity: Option<String>,
    #[serde(
        default,
        rename = "cvssV3",
        alias = "CvssV3",
        deserialize_with = "lenient::opt_f64"
    )]
    pub cvss_v3: Option<f64>,
    #[serde(default, alias = "CvssVector")]
    pub cvss_vector: Option<String>,
    #[serde(
        default,
        alias = "ExposedMachines",
        deserialize_with = "lenient::opt_i64"
    )]
    pub exposed_machines: Option<i64>,
    #[serde(default, alias = "PublishedOn")]
    pub published_on: Option<String>,
    #[serde(default, alias = "UpdatedOn")]
    pub updated_on: Option<String>,
    #[serde(default)]
    pub first_detected: Option<String>,
    #[serde(default)]
    pub patch_first_available: Option<String>,
    #[serde(default, alias = "PublicExploit")]
    pub public_exploit: Option<bool>,
    #[serde(default, alias = "ExploitVerified")]
    pub exploit_verified: Option<bool>,
    #[serde(default, alias = "ExploitInKit")]
    pub exploit_in_kit: Option<bool>,
    #[serde(
        default,
        alias = "ExploitTypes",
        deserialize_with = "lenient::vec_or_null"
    )]
    pub exploit_types: Vec<String>,
    #[serde(
        default,
        alias = "ExploitUris",
        deserialize_with = "lenient::vec_or_null"
    )]
    pub exploit_uris: Vec<String>,
    /// Documented as a collection, sent as one string.
    #[serde(
        default,
        alias = "CveSupportability",
        deserialize_with = "lenient::opt_string_or_seq"
    )]
    pub cve_supportability: Option<String>,
    #[serde(default, deserialize_with = "lenient::vec_or_null")]
    pub tags: Vec<String>,
    #[serde(
        default,
        alias = "EPSS",
        alias = "Epss",
        deserialize_with = "lenient::opt_f64"
    )]
    pub epss: Option<f64>,
    #[serde(default)]
    pub status: Option<String>,
}

/// A row of `GET /api/vulnerabilities/machinesVulnerabilities` (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-all-vulnerabilities-by-machines>).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineVulnerability {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub cve_id: Option<String>,
    #[serde(default)]
    pub machine_id: Option<String>,
    /// KB number without `KB`.
    #[serde(default)]
    pub fixing_kb_id: Option<String>,
    #[serde(default)]
    pub product_name: Option<String>,
    #[serde(default)]
    pub product_vendor: Option<String>,
    #[serde(default)]
    pub product_version: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
}

/// A `GET /api/Software` entity (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-software>; context only).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Software {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub weaknesses: Option<i64>,
    #[serde(default)]
    pub public_exploit: Option<bool>,
    #[serde(default)]
    pub active_alert: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub exposed_machines: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub impact_score: Option<f64>,
}

/// A `GET /api/recommendations` entity (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-software>; context only). Its `id` is what export
/// records carry as `recommendationReference`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub product_name: Option<String>,
    #[serde(default)]
    pub recommendation_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub weaknesses: Option<i64>,
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub recommended_version: Option<String>,
    #[serde(default)]
    pub recommended_program: Option<String>,
    #[serde(default)]
    pub recommended_vendor: Option<String>,
    #[serde(default)]
    pub recommendation_category: Option<String>,
    #[serde(default)]
    pub sub_category: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub severity_score: Option<f64>,
    #[serde(default)]
    pub public_exploit: Option<bool>,
    #[serde(default)]
    pub active_alert: Option<bool>,
    #[serde(default, deserialize_with = "lenient::vec_or_null")]
    pub associated_threats: Vec<String>,
    #[serde(default)]
    pub remediation_type: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub config_score_impact: Option<f64>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub exposure_impact: Option<f64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub total_machine_count: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub exposed_machines_count: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub non_productivity_impacted_assets: Option<i64>,
    #[serde(default)]
    pub related_component: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub exposed_critical_devices: Option<i64>,
}

/// One device × software × CVE record of the export assessment
/// (`SoftwareVulnerabilitiesByMachine`, JSON camelCase, <https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>) and of the export files
/// (`SoftwareVulnerabilitiesExport`, PascalCase with nulls omitted, <https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>).
///
/// Every field is optional: files omit null keys, and `cveId` is null on software rows without a CVE.
/// The file-only fields (`CveBatchTitle`, `IsOnboarded`, `Status`, `EventTimestamp`) are kept too.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetVulnerability {
    /// Opaque; its format has changed over time: never parse it.
    #[serde(default, alias = "Id")]
    pub id: Option<String>,
    #[serde(default, alias = "DeviceId")]
    pub device_id: Option<String>,
    #[serde(default, alias = "RbacGroupName")]
    pub rbac_group_name: Option<String>,
    #[serde(default, alias = "RbacGroupId", deserialize_with = "lenient::opt_i64")]
    pub rbac_group_id: Option<i64>,
    #[serde(default, alias = "DeviceName")]
    pub device_name: Option<String>,
    #[serde(default, alias = "OSPlatform", alias = "OsPlatform")]
    pub os_platform: Option<String>,
    #[serde(default, alias = "OSVersion", alias = "OsVersion")]
    pub os_version: Option<String>,
    #[serde(default, alias = "OSArchitecture", alias = "OsArchitecture")]
    pub os_architecture: Option<String>,
    #[serde(default, alias = "SoftwareVendor")]
    pub software_vendor: Option<String>,
    #[serde(default, alias = "SoftwareName")]
    pub software_name: Option<String>,
    #[serde(default, alias = "SoftwareVersion")]
    pub software_version: Option<String>,
    #[serde(default, alias = "CveId")]
    pub cve_id: Option<String>,
    /// A number, an integer literal (`7`) or a string, depending on the source.
    #[serde(default, alias = "CvssScore", deserialize_with = "lenient::opt_f64")]
    pub cvss_score: Option<f64>,
    #[serde(default, alias = "VulnerabilitySeverityLevel")]
    pub vulnerability_severity_level: Option<String>,
    #[serde(default, alias = "RecommendedSecurityUpdate")]
    pub recommended_security_update: Option<String>,
    #[serde(default, alias = "RecommendedSecurityUpdateId")]
    pub recommended_security_update_id: Option<String>,
    #[serde(default, alias = "RecommendedSecurityUpdateUrl")]
    pub recommended_security_update_url: Option<String>,
    #[serde(default, alias = "SecurityUpdateAvailable")]
    pub security_update_available: Option<bool>,
    #[serde(
        default,
        alias = "DiskPaths",
        deserialize_with = "lenient::vec_or_null"
    )]
    pub disk_paths: Vec<String>,
    #[serde(
        default,
        alias = "RegistryPaths",
        deserialize_with = "lenient::vec_or_null"
    )]
    pub registry_paths: Vec<String>,
    /// Not ISO 8601: `2020-12-30 14:17:26` (UTC implied).
    #[serde(default, alias = "FirstSeenTimestamp")]
    pub first_seen_timestamp: Option<String>,
    #[serde(default, alias = "LastSeenTimestamp")]
    pub last_seen_timestamp: Option<String>,
    /// `NoExploit`, `ExploitIsPublic`, `ExploitIsVerified`, `ExploitIsInKit`.
    #[serde(default, alias = "ExploitabilityLevel")]
    pub exploitability_level: Option<String>,
    #[serde(default, alias = "RecommendationReference")]
    pub recommendation_reference: Option<String>,
    #[serde(default, alias = "CveBatchTitle")]
    pub cve_batch_title: Option<String>,
    #[serde(default, alias = "CveBatchUrl")]
    pub cve_batch_url: Option<String>,
    #[serde(default, alias = "IsOnboarded")]
    pub is_onboarded: Option<bool>,
    /// Delta records (and some file lines): `New`, `Fixed` or `Updated`.
    #[serde(default, alias = "Status")]
    pub status: Option<String>,
    /// Delta records: when the change was detected (6-hour buckets, export format).
    #[serde(default, alias = "EventTimestamp")]
    pub event_timestamp: Option<String>,
}

/// The part of an [`AssetVulnerability`] that a finding keeps, read from either casing (JSON pages
/// or export files); the row's other keys are checked as JSON and skipped without being kept.
/// Full reads decode millions of rows into this: a third of the allocations of the whole record,
/// timestamps and severity parsed straight from the wire.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingRow {
    #[serde(default, alias = "DeviceId")]
    pub device_id: Option<String>,
    #[serde(default, alias = "DeviceName")]
    pub device_name: Option<String>,
    /// The device's OS as the export names it: what Rampart knows of a device that the machine
    /// list did not return.
    #[serde(default, alias = "OSPlatform", alias = "OsPlatform")]
    pub os_platform: Option<String>,
    #[serde(default, alias = "OSVersion", alias = "OsVersion")]
    pub os_version: Option<String>,
    #[serde(default, alias = "SoftwareVendor")]
    pub software_vendor: Option<String>,
    #[serde(default, alias = "SoftwareName")]
    pub software_name: Option<String>,
    #[serde(default, alias = "SoftwareVersion")]
    pub software_version: Option<String>,
    #[serde(default, alias = "CveId")]
    pub cve_id: Option<String>,
    #[serde(default, alias = "CvssScore", deserialize_with = "lenient::opt_f64")]
    pub cvss_score: Option<f64>,
    #[serde(
        default,
        rename = "vulnerabilitySeverityLevel",
        alias = "VulnerabilitySeverityLevel",
        deserialize_with = "lenient::opt_severity"
    )]
    pub severity: Option<rampart_model::Severity>,
    #[serde(default, alias = "RecommendedSecurityUpdate")]
    pub recommended_security_update: Option<String>,
    #[serde(default, alias = "RecommendedSecurityUpdateId")]
    pub recommended_security_update_id: Option<String>,
    #[serde(
        default,
        rename = "firstSeenTimestamp",
        alias = "FirstSeenTimestamp",
        deserialize_with = "lenient::opt_timestamp"
    )]
    pub first_seen: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(
        default,
        rename = "lastSeenTimestamp",
        alias = "LastSeenTimestamp",
        deserialize_with = "lenient::opt_timestamp"
    )]
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, alias = "ExploitabilityLevel")]
    pub exploitability_level: Option<String>,
    #[serde(default, alias = "RecommendationReference")]
    pub recommendation_reference: Option<String>,
}

/// A record of the delta export `SoftwareVulnerabilityChangesByMachine` (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>): the export
/// record fields plus `status` and `eventTimestamp`. A distinct type so that a change event cannot be
/// mistaken for a snapshot row; same wire shape, no extra cost.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct DeltaAssetVulnerability(pub AssetVulnerability);

impl DeltaAssetVulnerability {
    pub fn status(&self) -> Option<&str> {
        self.0.status.as_deref()
    }
    pub fn event_timestamp(&self) -> Option<&str> {
        self.0.event_timestamp.as_deref()
    }
}

/// The answer of `GET /api/machines/SoftwareVulnerabilitiesExport` (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>).
///
/// The URLs carry SAS signatures that grant read access to the tenant's data for hours, so `Debug`
/// shows only how many there are and their hosts.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportFilesResponse {
    #[serde(rename = "@odata.context", default)]
    pub context: Option<String>,
    /// Absolute Azure Blob SAS URLs of gzip JSON-lines files; may be empty.
    #[serde(
        default,
        alias = "ExportFiles",
        deserialize_with = "lenient::vec_or_null"
    )]
    pub export_files: Vec<String>,
    /// ISO 8601 UTC.
    #[serde(default, alias = "GeneratedTime")]
    pub generated_time: Option<String>,
}

impl fmt::Debug for ExportFilesResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: std::collections::BTreeSet<String> = self
            .export_files
            .iter()
            .filter_map(|u| url::Url::parse(u).ok()?.host_str().map(str::to_owned))
            .collect();
        f.debug_struct("ExportFilesResponse")
            .field(
                "export_files",
                &format_args!("{} SAS URLs (redacted)", self.export_files.len()),
            )
            .field("hosts", &hosts)
            .field("generated_time", &self.generated_time)
            .finish()
    }
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_casings_of_an_export_record_read_the_same() {
        let camel: AssetVulnerability = serde_json::from_str(
            r#"{"deviceId":"a","osPlatform":"Windows10","osVersion":"10","osArchitecture":"x64","cveId":"CVE-2020-1234","cvssScore":"7.5","rbacGroupId":"3","diskPaths":null}"#,
        )
        .unwrap();
        let pascal: AssetVulnerability = serde_json::from_str(
            r#"{"DeviceId":"a","OSPlatform":"Windows10","OSVersion":"10","OSArchitecture":"x64","CveId":"CVE-2020-1234","CvssScore":7.5,"RbacGroupId":3}"#,
        )
        .unwrap();
        assert_eq!(camel, pascal);
        assert_eq!(pascal.os_platform.as_deref(), Some("Windows10"));
        assert_eq!(pascal.rbac_group_id, Some(3));
        assert_eq!(pascal.cvss_score, Some(7.5));
    }

    #[test]
    fn an_empty_object_is_a_record_with_nothing_in_it() {
        let r: AssetVulnerability = serde_json::from_str("{}").unwrap();
        assert_eq!(r, AssetVulnerability::default());
        let d: DeltaAssetVulnerability =
            serde_json::from_str(r#"{"status":"Fixed","eventTimestamp":"2021-01-05 18:00:00"}"#)
                .unwrap();
        assert_eq!(d.status(), Some("Fixed"));
        assert_eq!(d.event_timestamp(), Some("2021-01-05 18:00:00"));
    }

    #[test]
    fn machine_tolerates_nulls_and_missing_optional_fields() {
        let m: Machine = serde_json::from_str(
            r#"{"id":"ab","machineTags":null,"ipAddresses":null,"rbacGroupId":"140","osBuild":null,"unknownNewField":{"x":1}}"#,
        )
        .unwrap();
        assert!(m.machine_tags.is_empty() && m.ip_addresses.is_empty());
        assert_eq!(m.rbac_group_id, Some(140));
        assert!(serde_json::from_str::<Machine>(r#"{"computerDnsName":"x"}"#).is_err());
    }

    #[test]
    fn export_files_debug_redacts_sas_signatures() {
        let r: ExportFilesResponse = serde_json::from_str(
            r#"{"exportFiles":["https://acct.blob.core.windows.net/c/part-1.json.gz?sv=1&sig=SECRETSIG"],"generatedTime":"2025-11-02T11:01:00Z"}"#,
        )
        .unwrap();
        let shown = format!("{r:?}");
        assert!(!shown.contains("SECRETSIG") && shown.contains("acct.blob.core.windows.net"));
    }
}
