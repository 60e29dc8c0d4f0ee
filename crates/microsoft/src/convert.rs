//! The one place where Microsoft's wire records become Rampart's vendor-neutral model.
//!
//! Each conversion consumes the wire record so that its strings move into the model without a copy
//! (this runs for every one of millions of export rows). Timestamps, whatever Microsoft's format, are
//! parsed into UTC with [`rampart_model::parse_microsoft_timestamp`]; a timestamp that does not parse
//! becomes `None` rather than losing the record.

use std::fmt;

use chrono::{DateTime, Utc};
use rampart_model::{
    Asset, AssetKind, CveId, Finding, FindingKey, Severity, Vulnerability as ModelVulnerability,
};

use crate::wire::mde::{
    AssetVulnerability, DeltaAssetVulnerability, FindingRow, Machine, Vulnerability,
};

/// Why an export row is not a finding. Software rows without a CVE are normal (`cveId: null`); the
/// other reasons point at a malformed record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAFinding {
    #[error("the row names no CVE (a software inventory row)")]
    NoCve,
    #[error("'{0}' is not a CVE id")]
    InvalidCve(String),
    #[error("the row names no device")]
    NoDevice,
    #[error("the row names no software")]
    NoSoftware,
}

/// The catalogue entry's id is not a vulnerability id Rampart can key on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a CVE id")]
pub struct InvalidCatalogueId(pub String);

/// What a delta record says happened to a finding (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeStatus {
    /// The vulnerability appeared on the device.
    New,
    /// It is no longer present (remediated, or the software version changed).
    Fixed,
    /// CVSS, exploitability, severity, paths or recommended update changed.
    Updated,
    /// A value this version of Rampart does not know, kept verbatim.
    Other(String),
}

impl ChangeStatus {
    fn parse(s: Option<String>) -> ChangeStatus {
        match s {
            Some(s) if s.eq_ignore_ascii_case("new") => ChangeStatus::New,
            Some(s) if s.eq_ignore_ascii_case("fixed") => ChangeStatus::Fixed,
            Some(s) if s.eq_ignore_ascii_case("updated") => ChangeStatus::Updated,
            Some(s) => ChangeStatus::Other(s),
            None => ChangeStatus::Other(String::new()),
        }
    }
}

impl fmt::Display for ChangeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeStatus::New => f.write_str("New"),
            ChangeStatus::Fixed => f.write_str("Fixed"),
            ChangeStatus::Updated => f.write_str("Updated"),
            ChangeStatus::Other(s) => f.write_str(s),
        }
    }
}

/// A delta record converted: the finding as it is after the change, and what changed when.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingChange {
    pub finding: Finding,
    pub status: ChangeStatus,
    /// When TVM detected the change (6-hour granularity).
    pub event_time: Option<DateTime<Utc>>,
}

fn timestamp(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(crate::wire::lenient::timestamp_or_warn)
}

/// `Some` only for a non-blank string.
fn non_blank(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

impl Machine {
    /// Converts a device into an asset.
    ///
    /// `isPotentialDuplication` or `mergedIntoMachineId` mark a duplicate; `vmMetadata.resourceId`
    /// (lower-cased) is the Azure resource id; `ipAddresses[].ipAddress` become the addresses,
    /// without blanks or repeats, in Microsoft's order.
    pub fn into_asset(self) -> Asset {
        let mut ip_addresses: Vec<String> = Vec::with_capacity(self.ip_addresses.len());
        for ip in self.ip_addresses {
            if let Some(a) = non_blank(ip.ip_address) {
                let a = a.trim().to_owned();
                if !ip_addresses.contains(&a) {
                    ip_addresses.push(a);
                }
            }
        }
        // Microsoft's main get-machines example has no `ipAddresses`, only `lastIpAddress`: then
        // that is the device's address. (`lastExternalIpAddress` is the public address it was seen
        // from, not its own: it is kept apart.)
        if ip_addresses.is_empty()
            && let Some(a) = non_blank(self.last_ip_address)
        {
            ip_addresses.push(a.trim().to_owned());
        }
        let merged_into = non_blank(self.merged_into_machine_id);
        let azure_resource_id = self
            .vm_metadata
            .and_then(|vm| non_blank(vm.resource_id))
            .map(|r| r.to_ascii_lowercase());
        let mut source_id = self.id;
        source_id.make_ascii_lowercase();
        Asset {
            first_seen: timestamp(self.first_seen.as_deref()),
            last_seen: timestamp(self.last_seen.as_deref()),
            source_id,
            kind: AssetKind::Device,
            name: non_blank(self.computer_dns_name),
            os_platform: non_blank(self.os_platform),
            // `osVersion` is usually null; `version` (22H2, 1809) is what Microsoft fills in.
            os_version: non_blank(self.os_version).or_else(|| non_blank(self.version)),
            health_status: self.health_status,
            onboarding_status: self.onboarding_status,
            exposure_level: self.exposure_level,
            risk_score: self.risk_score,
            device_value: self.device_value,
            ip_addresses,
            tags: self.machine_tags,
            rbac_group_id: self.rbac_group_id,
            rbac_group_name: self.rbac_group_name,
            aad_device_id: non_blank(self.aad_device_id),
            azure_resource_id,
            is_duplicate: self.is_potential_duplication.unwrap_or(false) || merged_into.is_some(),
            merged_into,
            external_ip_address: non_blank(self.last_external_ip_address)
                .map(|a| a.trim().to_owned()),
            os_build: self.os_build,
            os_processor: non_blank(self.os_processor),
            is_aad_joined: self.is_aad_joined,
        }
    }
}

impl FindingRow {
    /// Converts an export row into a finding, or says why it is not one (no CVE, a malformed CVE
    /// id, no device, no software).
    pub fn into_finding(self) -> Result<Finding, NotAFinding> {
        let cve = non_blank(self.cve_id).ok_or(NotAFinding::NoCve)?;
        let cve_id: CveId = cve
            .parse()
            .map_err(|_| NotAFinding::InvalidCve(cve.chars().take(60).collect()))?;
        let mut device = non_blank(self.device_id).ok_or(NotAFinding::NoDevice)?;
        device.make_ascii_lowercase();
        let software_name = non_blank(self.software_name).ok_or(NotAFinding::NoSoftware)?;
        Ok(Finding {
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            key: FindingKey {
                asset_source_id: device,
                software_vendor: self.software_vendor.unwrap_or_default(),
                software_name,
                software_version: self.software_version.unwrap_or_default(),
                cve_id,
            },
            asset_name: non_blank(self.device_name),
            asset_os_platform: non_blank(self.os_platform),
            asset_os_version: non_blank(self.os_version),
            severity: self.severity,
            cvss: self.cvss_score,
            exploitability: non_blank(self.exploitability_level),
            // The free-text name ("February 2025 Security Updates") when there is one, else the id.
            recommended_update: non_blank(self.recommended_security_update)
                .or_else(|| non_blank(self.recommended_security_update_id)),
            recommendation_reference: non_blank(self.recommendation_reference),
        })
    }
}

impl From<AssetVulnerability> for FindingRow {
    /// The fields a finding keeps; timestamps and severity parsed as the wire decoder would.
    fn from(row: AssetVulnerability) -> FindingRow {
        FindingRow {
            device_id: row.device_id,
            device_name: row.device_name,
            os_platform: row.os_platform,
            os_version: row.os_version,
            software_vendor: row.software_vendor,
            software_name: row.software_name,
            software_version: row.software_version,
            cve_id: row.cve_id,
            cvss_score: row.cvss_score,
            severity: row
                .vulnerability_severity_level
                .as_deref()
                .and_then(Severity::parse_lenient),
            recommended_security_update: row.recommended_security_update,
            recommended_security_update_id: row.recommended_security_update_id,
            first_seen: timestamp(row.first_seen_timestamp.as_deref()),
            last_seen: timestamp(row.last_seen_timestamp.as_deref()),
            exploitability_level: row.exploitability_level,
            recommendation_reference: row.recommendation_reference,
        }
    }
}

impl AssetVulnerability {
    /// Converts an export row into a finding (through [`FindingRow::into_finding`], the one
    /// conversion), or says why it is not one.
    pub fn into_finding(self) -> Result<Finding, NotAFinding> {
        FindingRow::from(self).into_finding()
    }
}

impl DeltaAssetVulnerability {
    /// Converts a delta record into the finding it describes plus the change.
    pub fn into_change(self) -> Result<FindingChange, NotAFinding> {
        let mut row = self.0;
        let status = ChangeStatus::parse(row.status.take());
        let event_time = timestamp(row.event_timestamp.take().as_deref());
        Ok(FindingChange {
            finding: row.into_finding()?,
            status,
            event_time,
        })
    }
}

impl Vulnerability {
    /// Converts a catalogue entry. Ids that are neither `CVE-…` nor `TVM-…` are refused.
    pub fn into_model(self) -> Result<ModelVulnerability, InvalidCatalogueId> {
        let cve_id: CveId = self
            .id
            .parse()
            .map_err(|_| InvalidCatalogueId(self.id.chars().take(60).collect()))?;
        Ok(ModelVulnerability {
            cve_id,
            severity: self.severity.as_deref().and_then(Severity::parse_lenient),
            cvss: self.cvss_v3,
            cvss_vector: non_blank(self.cvss_vector),
            epss: self.epss,
            public_exploit: self.public_exploit.unwrap_or(false),
            exploit_verified: self.exploit_verified.unwrap_or(false),
            exploit_in_kit: self.exploit_in_kit.unwrap_or(false),
            exploit_types: self.exploit_types,
            published_on: timestamp(self.published_on.as_deref()),
            updated_on: timestamp(self.updated_on.as_deref()),
            description: non_blank(self.description),
            source_exposed_machines: self.exposed_machines.and_then(|n| u64::try_from(n).ok()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::mde::{IpAddress, VmMetadata};

    fn machine() -> Machine {
        serde_json::from_str(r#"{"id":"4F1D0E8A7C3B2A19E6D5C4B3A29180F7E6D5C4B3"}"#).unwrap()
    }

    fn ip(a: Option<&str>) -> IpAddress {
        IpAddress {
            ip_address: a.map(str::to_owned),
            mac_address: None,
            kind: None,
            operational_status: None,
        }
    }

    /// machine resource type: `exposureLevel` is `None`, `Low`, `Medium` or `High`; `None` is a
    /// value, not a missing one (issue 11). The same for `riskScore`.
    #[test]
    fn the_documented_none_levels_are_kept() {
        let m: Machine = serde_json::from_str(
            r#"{"id":"a","exposureLevel":"None","riskScore":"None","lastIpAddress":"10.0.0.9","lastExternalIpAddress":"203.0.113.9","osBuild":22631,"osProcessor":"x64","isAadJoined":true}"#,
        )
        .unwrap();
        let a = m.into_asset();
        assert_eq!(a.exposure_level.as_deref(), Some("None"));
        assert_eq!(a.risk_score.as_deref(), Some("None"));
        assert_eq!(a.ip_addresses, vec!["10.0.0.9"]);
        assert_eq!(a.external_ip_address.as_deref(), Some("203.0.113.9"));
        assert_eq!(
            (a.os_build, a.os_processor.as_deref(), a.is_aad_joined),
            (Some(22631), Some("x64"), Some(true))
        );
    }

    /// Export rows in a month-first form keep their first-seen time (issue 11).
    #[test]
    fn month_first_export_timestamps_are_read() {
        let row: FindingRow = serde_json::from_str(
            r#"{"DeviceId":"a","SoftwareName":"x","CveId":"CVE-2020-0001","FirstSeenTimestamp":"12/30/2020 14:17:26","OSPlatform":"Windows10"}"#,
        )
        .unwrap();
        let f = row.into_finding().unwrap();
        assert_eq!(
            f.first_seen.unwrap().to_rfc3339(),
            "2020-12-30T14:17:26+00:00"
        );
        assert_eq!(f.asset_os_platform.as_deref(), Some("Windows10"));
    }

    #[test]
    fn machine_fields_map_onto_the_asset() {
        let mut m = machine();
        m.computer_dns_name = Some("ws-1.corp.contoso.com".into());
        m.first_seen = Some("2024-03-11T08:21:44.1234567Z".into());
        m.last_seen = Some("not a time".into());
        m.is_potential_duplication = Some(false);
        m.merged_into_machine_id = Some("ffff".into());
        m.machine_tags = vec!["finance".into(), "tier2".into()];
        m.version = Some("23H2".into());
        m.ip_addresses = vec![
            ip(Some("10.0.0.1")),
            ip(Some("")),
            ip(None),
            ip(Some("10.0.0.1")),
            ip(Some("fe80::1")),
        ];
        m.vm_metadata = Some(VmMetadata {
            vm_id: None,
            cloud_provider: Some("Azure".into()),
            resource_id: Some("/subscriptions/ABC/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/VM1".into()),
            subscription_id: None,
        });
        let a = m.into_asset();
        assert_eq!(a.source_id, "4f1d0e8a7c3b2a19e6d5c4b3a29180f7e6d5c4b3");
        assert_eq!(a.kind, AssetKind::Device);
        assert_eq!(a.ip_addresses, vec!["10.0.0.1", "fe80::1"]);
        assert_eq!(a.tags, vec!["finance", "tier2"]);
        assert!(a.is_duplicate, "merged devices are duplicates");
        assert_eq!(a.merged_into.as_deref(), Some("ffff"));
        assert_eq!(a.os_version.as_deref(), Some("23H2"));
        assert_eq!(
            a.azure_resource_id.as_deref(),
            Some(
                "/subscriptions/abc/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm1"
            )
        );
        assert_eq!(
            a.first_seen.unwrap().to_rfc3339(),
            "2024-03-11T08:21:44.123456700+00:00"
        );
        assert_eq!(
            a.last_seen, None,
            "an unreadable timestamp is dropped, not the device"
        );
    }

    #[test]
    fn potential_duplicates_are_duplicates() {
        let mut m = machine();
        m.is_potential_duplication = Some(true);
        let a = m.into_asset();
        assert!(a.is_duplicate);
        assert_eq!(a.merged_into, None);
        assert!(!machine().into_asset().is_duplicate);
    }

    fn row() -> AssetVulnerability {
        AssetVulnerability {
            device_id: Some("DDDD".into()),
            device_name: Some("eng-lap-0007".into()),
            software_vendor: Some("microsoft".into()),
            software_name: Some("windows_11".into()),
            software_version: Some("10.0.22631.4890".into()),
            cve_id: Some("cve-2025-21418".into()),
            cvss_score: Some(7.8),
            vulnerability_severity_level: Some("High".into()),
            recommended_security_update_id: Some("5051987".into()),
            first_seen_timestamp: Some("2025-02-11 18:00:00".into()),
            last_seen_timestamp: Some("2025-11-02 08:15:00.1234567".into()),
            exploitability_level: Some("ExploitIsInKit".into()),
            ..Default::default()
        }
    }

    #[test]
    fn export_rows_become_findings_with_utc_times() {
        let f = row().into_finding().unwrap();
        assert_eq!(f.key.asset_source_id, "dddd");
        assert_eq!(f.key.cve_id.as_str(), "CVE-2025-21418");
        assert_eq!(f.severity, Some(Severity::High));
        assert_eq!(f.recommended_update.as_deref(), Some("5051987"));
        assert_eq!(
            f.first_seen.unwrap().to_rfc3339(),
            "2025-02-11T18:00:00+00:00"
        );
        assert_eq!(
            f.last_seen.unwrap().to_rfc3339(),
            "2025-11-02T08:15:00.123456700+00:00"
        );
    }

    #[test]
    fn rows_that_are_not_findings_say_why() {
        let mut r = row();
        r.cve_id = None;
        assert_eq!(r.into_finding(), Err(NotAFinding::NoCve));
        let mut r = row();
        r.cve_id = Some("  ".into());
        assert_eq!(r.into_finding(), Err(NotAFinding::NoCve));
        let mut r = row();
        r.cve_id = Some("<script>".into());
        assert_eq!(
            r.into_finding(),
            Err(NotAFinding::InvalidCve("<script>".into()))
        );
        let mut r = row();
        r.device_id = None;
        assert_eq!(r.into_finding(), Err(NotAFinding::NoDevice));
        let mut r = row();
        r.software_name = None;
        assert_eq!(r.into_finding(), Err(NotAFinding::NoSoftware));
    }

    #[test]
    fn delta_records_carry_status_and_event_time() {
        let mut r = row();
        r.status = Some("Fixed".into());
        r.event_timestamp = Some("2021-01-05 18:00:00".into());
        let c = DeltaAssetVulnerability(r).into_change().unwrap();
        assert_eq!(c.status, ChangeStatus::Fixed);
        assert_eq!(
            c.event_time.unwrap().to_rfc3339(),
            "2021-01-05T18:00:00+00:00"
        );
        let mut r = row();
        r.status = Some("Moved".into());
        let c = DeltaAssetVulnerability(r).into_change().unwrap();
        assert_eq!(c.status, ChangeStatus::Other("Moved".into()));
    }

    #[test]
    fn catalogue_entries_convert_and_bad_ids_are_refused() {
        let v: Vulnerability = serde_json::from_str(
            r#"{"id":"CVE-2024-43097","severity":"High","cvssV3":7.8,"publishedOn":"2025-01-14T08:00:00Z","publicExploit":true,"epss":0.00412}"#,
        )
        .unwrap();
        let m = v.into_model().unwrap();
        assert_eq!(m.cve_id.as_str(), "CVE-2024-43097");
        assert_eq!(m.severity, Some(Severity::High));
        assert!(m.public_exploit && !m.exploit_in_kit);
        assert_eq!(
            m.published_on.unwrap().to_rfc3339(),
            "2025-01-14T08:00:00+00:00"
        );
        let bad: Vulnerability = serde_json::from_str(r#"{"id":"not-a-cve"}"#).unwrap();
        assert!(bad.into_model().is_err());
    }
}
