//! Public record types: what the emulator serves, as plain structs with public fields.
//!
//! Each serializes (serde) to exactly the JSON Microsoft's API returns for it (camelCase keys, explicit
//! nulls, Microsoft's timestamp formats), so tests can compare a store, a page row, or a file line with
//! the truth field by field.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use crate::time::serde_ts;

/// A device as `GET /api/machines` returns it (onboarded, discovered or a stale duplicate).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// 40 lowercase hex characters; the `deviceId` of TVM records.
    pub id: String,
    /// Set on some stale duplicates: the id of the device record that replaced this one.
    pub merged_into_machine_id: Option<String>,
    /// True on the stale record of a reinstalled device (same name, new id).
    pub is_potential_duplication: bool,
    /// Excluded from inventory by an administrator.
    pub is_excluded: bool,
    /// Why it was excluded.
    pub exclusion_reason: Option<String>,
    /// FQDN or bare host name; null for some discovered devices.
    pub computer_dns_name: Option<String>,
    /// ISO 8601, 0–7 fractional digits.
    #[serde(serialize_with = "serde_ts::iso")]
    pub first_seen: DateTime<Utc>,
    /// Last full device report (≈ daily), not the portal's last seen.
    #[serde(serialize_with = "serde_ts::iso")]
    pub last_seen: DateTime<Utc>,
    /// `Windows11`, `Ubuntu`, `RedHatEnterpriseLinux`, `macOS`, `Other`, …
    pub os_platform: String,
    /// Usually null.
    pub os_version: Option<String>,
    /// Deprecated; `x64`.
    pub os_processor: Option<String>,
    /// `23H2`, `1809`, `22.04`, `Other`, …
    pub version: Option<String>,
    /// Local address.
    pub last_ip_address: Option<String>,
    /// Public address (sometimes IPv6).
    pub last_external_ip_address: Option<String>,
    /// Sensor version.
    pub agent_version: Option<String>,
    /// Windows build; null elsewhere.
    pub os_build: Option<u32>,
    /// `Active`, `Inactive`, `ImpairedCommunication`, `NoSensorData`, …
    pub health_status: String,
    /// `Normal`, `Low`, `High`.
    pub device_value: Option<String>,
    /// A number (the docs say string); 0 = no device group.
    pub rbac_group_id: u32,
    /// Null when `rbac_group_id` is 0.
    pub rbac_group_name: Option<String>,
    /// `None`, `Informational`, `Low`, `Medium`, `High`.
    pub risk_score: Option<String>,
    /// `None`, `Low`, `Medium`, `High`.
    pub exposure_level: Option<String>,
    /// Entra-joined.
    pub is_aad_joined: bool,
    /// Can be null even when joined.
    pub aad_device_id: Option<String>,
    /// `[]` when none.
    pub machine_tags: Vec<String>,
    /// Present on some records, absent (not null) on others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defender_av_status: Option<String>,
    /// `Onboarded`, `CanBeOnboarded`, `Unsupported`, `InsufficientInfo`.
    pub onboarding_status: String,
    /// `64-bit` / `32-bit` (exports say `x64`).
    pub os_architecture: Option<String>,
    /// `Intune`, `MicrosoftDefenderForEndpoint`, `Unknown`.
    pub managed_by: String,
    /// `Success`, `Unknown`.
    pub managed_by_status: String,
    /// Network interfaces.
    pub ip_addresses: Vec<IpAddress>,
    /// Azure VM facts for cloud machines (future join with Defender for Cloud); usually null.
    pub vm_metadata: Option<VmMetadata>,
}

/// One entry of `Machine::ip_addresses`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    /// May be `""`.
    pub ip_address: String,
    /// 12 uppercase hex digits, or null for loopback.
    pub mac_address: Option<String>,
    /// `Ethernet`, `SoftwareLoopback`, `Other`, …
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `Up`, `Down`, `Unknown`.
    pub operational_status: String,
}

/// `Machine::vm_metadata` of Azure VMs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmMetadata {
    /// The VM's GUID.
    pub vm_id: String,
    /// `Azure`.
    pub cloud_provider: String,
    /// ARM resource id of the VM.
    pub resource_id: String,
    /// Its subscription.
    pub subscription_id: String,
}

/// One open vulnerability: (device, software vendor/name/version, CVE), as the export APIs describe it.
///
/// Serializes exactly like a `SoftwareVulnerabilitiesByMachine` row. The delta API reports changes to
/// everything but `last_seen_timestamp` (and `os_version`, which follows the OS patch level); those move
/// silently between snapshots, as at Microsoft.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// `{deviceId}_{vendor}_{name}_{version}_{cveId}`; opaque to clients.
    pub id: String,
    /// The machine id.
    pub device_id: String,
    /// `"Unassigned"` for group 0.
    pub rbac_group_name: String,
    /// Device group.
    pub rbac_group_id: u32,
    /// The machine's `computerDnsName`.
    pub device_name: String,
    /// `Windows11`, `Linux` (RHEL and Ubuntu), `macOS`, …
    pub os_platform: String,
    /// `10.0.22631.4890`, `ubuntu_linux_22.04`, …
    pub os_version: String,
    /// `x64`, `arm64`, `x86`.
    pub os_architecture: String,
    /// Lowercase CPE-style vendor.
    pub software_vendor: String,
    /// Lowercase CPE-style product.
    pub software_name: String,
    /// Installed version.
    pub software_version: String,
    /// Never null here (rows without a CVE are not findings).
    pub cve_id: String,
    /// CVSS v3; whole scores serialize as integers (`7`).
    #[serde(serialize_with = "cvss_opt")]
    pub cvss_score: Option<f64>,
    /// `Low`, `Medium`, `High`, `Critical`.
    pub vulnerability_severity_level: String,
    /// Free text (`February 2025 Security Updates`, an OVAL id, a number…).
    pub recommended_security_update: Option<String>,
    /// KB number, RHSA or USN id.
    pub recommended_security_update_id: Option<String>,
    /// Where the update is.
    pub recommended_security_update_url: Option<String>,
    /// Files; null for some products.
    pub disk_paths: Option<Vec<String>>,
    /// Registry keys; null for some products.
    pub registry_paths: Option<Vec<String>>,
    /// Last scan that saw it (export format: `2026-11-01 05:12:09.1234567`).
    #[serde(serialize_with = "serde_ts::export")]
    pub last_seen_timestamp: DateTime<Utc>,
    /// When it appeared on the device; kept across version upgrades and group moves.
    #[serde(serialize_with = "serde_ts::export")]
    pub first_seen_timestamp: DateTime<Utc>,
    /// `NoExploit`, `ExploitIsPublic`, `ExploitIsVerified`, `ExploitIsInKit`.
    pub exploitability_level: String,
    /// `va-_-{vendor}-_-{name}`.
    pub recommendation_reference: String,
    /// A fix exists.
    pub security_update_available: bool,
}

/// A CVE of the tenant's catalogue, as `GET /api/vulnerabilities` returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Vulnerability {
    /// `CVE-2025-10234`.
    pub id: String,
    /// Same as `id`.
    pub name: String,
    /// Summary / impact / remediation text.
    pub description: String,
    /// `Low`, `Medium`, `High`, `Critical`.
    pub severity: String,
    /// CVSS v3 score.
    #[serde(serialize_with = "cvss_opt")]
    pub cvss_v3: Option<f64>,
    /// CVSS v3.1 vector.
    pub cvss_vector: Option<String>,
    /// Devices of this tenant exposed at the current snapshot.
    pub exposed_machines: u64,
    /// Publication date.
    #[serde(serialize_with = "serde_ts::iso")]
    pub published_on: DateTime<Utc>,
    /// Last revision (CVSS/exploitability changes move it).
    #[serde(serialize_with = "serde_ts::iso")]
    pub updated_on: DateTime<Utc>,
    /// First seen in this tenant; null when never seen.
    #[serde(serialize_with = "serde_ts::iso_opt")]
    pub first_detected: Option<DateTime<Utc>>,
    /// Patch availability date.
    #[serde(serialize_with = "serde_ts::iso_opt")]
    pub patch_first_available: Option<DateTime<Utc>>,
    /// Exploit publicly available.
    pub public_exploit: bool,
    /// Exploit verified to work.
    pub exploit_verified: bool,
    /// Exploit part of an exploit kit.
    pub exploit_in_kit: bool,
    /// `Remote`, `Local privilege escalation`, …
    pub exploit_types: Vec<String>,
    /// Links to exploits.
    pub exploit_uris: Vec<String>,
    /// `Supported`, `NotSupported`, `SupportedInPremium` (a single string, not the documented collection).
    pub cve_supportability: String,
    /// Tags.
    pub tags: Vec<String>,
    /// EPSS probability 0–1.
    pub epss: Option<f64>,
    /// `RemediationRequired`.
    pub status: String,
}

/// A row of `GET /api/vulnerabilities/machinesVulnerabilities`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MachineVulnerability {
    pub(crate) id: String,
    pub(crate) cve_id: String,
    pub(crate) machine_id: String,
    pub(crate) fixing_kb_id: Option<String>,
    pub(crate) product_name: String,
    pub(crate) product_vendor: String,
    pub(crate) product_version: String,
    pub(crate) severity: String,
}

/// A row of `GET /api/vulnerabilities/{id}/machineReferences`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MachineReference {
    pub(crate) id: String,
    pub(crate) computer_dns_name: Option<String>,
    pub(crate) os_platform: String,
    pub(crate) rbac_group_name: Option<String>,
}

/// Whole scores are written as integer literals (`7`), as Microsoft's data has them.
fn cvss_opt<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) if x.fract() == 0.0 && (0.0..=10.0).contains(x) => s.serialize_u64(*x as u64),
        Some(x) => s.serialize_f64(*x),
        None => s.serialize_none(),
    }
}
