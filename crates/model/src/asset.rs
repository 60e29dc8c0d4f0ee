//! Assets: the things findings are found on (MDE devices, Azure VMs, container images, SQL servers).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What kind of thing an asset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    /// A Defender for Endpoint machine (onboarded or discovered).
    Device,
    /// An Azure (or Arc) virtual machine seen by Defender for Cloud.
    VirtualMachine,
    ContainerImage,
    SqlServer,
    /// Any other Azure resource a recommendation applies to.
    CloudResource,
}

impl AssetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Device => "device",
            AssetKind::VirtualMachine => "virtual_machine",
            AssetKind::ContainerImage => "container_image",
            AssetKind::SqlServer => "sql_server",
            AssetKind::CloudResource => "cloud_resource",
        }
    }

    pub fn parse(s: &str) -> Option<AssetKind> {
        Some(match s {
            "device" => AssetKind::Device,
            "virtual_machine" => AssetKind::VirtualMachine,
            "container_image" => AssetKind::ContainerImage,
            "sql_server" => AssetKind::SqlServer,
            "cloud_resource" => AssetKind::CloudResource,
            _ => return None,
        })
    }
}

impl fmt::Display for AssetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Rampart's view of whether the source still reports an asset. Assets are never deleted: one that
/// a provably complete read no longer contains becomes `Missing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetStatus {
    Active,
    Missing,
}

impl AssetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AssetStatus::Active => "active",
            AssetStatus::Missing => "missing",
        }
    }

    pub fn parse(s: &str) -> Option<AssetStatus> {
        match s {
            "active" => Some(AssetStatus::Active),
            "missing" => Some(AssetStatus::Missing),
            _ => None,
        }
    }
}

/// An asset as its source describes it. Keyed by (integration, `source_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    /// The source's id: the MDE machine id, or the Azure resource id (lower-cased).
    pub source_id: String,
    pub kind: AssetKind,
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
    pub rbac_group_id: Option<i64>,
    pub rbac_group_name: Option<String>,
    pub aad_device_id: Option<String>,
    /// The Azure resource id of the same machine (from MDE `vmMetadata.resourceId`, or the VM itself),
    /// lower-cased: how an MDE device and a Defender for Cloud VM are recognised as one asset.
    pub azure_resource_id: Option<String>,
    /// Microsoft flags this device as a potential duplicate of another (`isPotentialDuplication`),
    /// or it was merged into another (`mergedIntoMachineId`).
    pub is_duplicate: bool,
    pub merged_into: Option<String>,
    /// First and last seen, as the source reports them.
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// The public address the device was last seen from (MDE `lastExternalIpAddress`), kept apart
    /// from `ip_addresses`, which are the device's own.
    #[serde(default)]
    pub external_ip_address: Option<String>,
    /// Windows build (MDE `osBuild`; null on other systems).
    #[serde(default)]
    pub os_build: Option<i64>,
    /// Processor architecture (MDE `osProcessor`, e.g. `x64`).
    #[serde(default)]
    pub os_processor: Option<String>,
    /// Joined to Microsoft Entra ID (MDE `isAadJoined`).
    #[serde(default)]
    pub is_aad_joined: Option<bool>,
}

impl Asset {
    /// An asset known only by its id and kind, every description empty. A source (or a test) names
    /// what it knows and takes the rest from here: `Asset { name, ..Asset::new(id, kind) }`.
    pub fn new(source_id: impl Into<String>, kind: AssetKind) -> Asset {
        Asset {
            source_id: source_id.into(),
            kind,
            name: None,
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
            azure_resource_id: None,
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
}
