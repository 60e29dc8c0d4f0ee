//! Findings: one vulnerability (CVE) in one piece of software on one asset, with Rampart's history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::CveId;
use crate::vulnerability::Severity;

/// Open while the source reports it; fixed once a provably complete read no longer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingStatus {
    Open,
    Fixed,
}

impl FindingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Open => "open",
            FindingStatus::Fixed => "fixed",
        }
    }

    pub fn parse(s: &str) -> Option<FindingStatus> {
        match s {
            "open" => Some(FindingStatus::Open),
            "fixed" => Some(FindingStatus::Fixed),
            _ => None,
        }
    }
}

/// What makes a finding the same finding from one sync to the next, within one integration.
///
/// Microsoft's record `id` is opaque and its format has changed over time, and a device that moves
/// between device groups is reported twice with the same natural key, so Rampart keys on the natural
/// key Microsoft documents as unique: (device, vendor, software, version, CVE).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FindingKey {
    pub asset_source_id: String,
    pub software_vendor: String,
    pub software_name: String,
    pub software_version: String,
    pub cve_id: CveId,
}

/// A finding as the source describes it in one read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub key: FindingKey,
    pub asset_name: Option<String>,
    /// The asset's OS as the finding's row names it (MDE export rows carry `osPlatform` and
    /// `osVersion`): what Rampart knows of a device that only vulnerability data mentions.
    #[serde(default)]
    pub asset_os_platform: Option<String>,
    #[serde(default)]
    pub asset_os_version: Option<String>,
    pub severity: Option<Severity>,
    pub cvss: Option<f64>,
    /// `NoExploit`, `ExploitIsPublic`, `ExploitIsVerified`, `ExploitIsInKit` (MDE), or the cloud's
    /// equivalent.
    pub exploitability: Option<String>,
    /// The update that fixes it (`February 2025 Security Updates`, `KB5051987`, a fixed version).
    pub recommended_update: Option<String>,
    pub recommendation_reference: Option<String>,
    /// When the source first and last saw it (MDE's `firstSeenTimestamp` / `lastSeenTimestamp`).
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
}

impl Finding {
    /// A finding of which only its key is known: every other field empty.
    pub fn of_key(key: FindingKey) -> Finding {
        Finding {
            key,
            asset_name: None,
            asset_os_platform: None,
            asset_os_version: None,
            severity: None,
            cvss: None,
            exploitability: None,
            recommended_update: None,
            recommendation_reference: None,
            first_seen: None,
            last_seen: None,
        }
    }
}
