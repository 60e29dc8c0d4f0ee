//! Sync runs: every run is recorded, with what it read, what it changed and whether it can be trusted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::integration::IntegrationId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    /// Everything was read and reconciled.
    Succeeded,
    /// Data was stored but something was not read completely; no status was concluded from it.
    Partial,
    /// The run stopped with an error; nothing was concluded.
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "partial" => RunStatus::Partial,
            "failed" => RunStatus::Failed,
            _ => return None,
        })
    }
}

/// Whether a run's read was provably complete, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "lowercase")]
pub enum Verdict {
    /// Every page read, no loop, a short or empty last page, counts plausible.
    Complete,
    /// Why the read cannot be trusted to conclude anything (fixed, missing).
    Incomplete(String),
    /// The read was complete, but reconciling would have changed more than the safety threshold
    /// allows; a person has to confirm.
    Held(String),
}

impl Verdict {
    pub fn is_complete(&self) -> bool {
        matches!(self, Verdict::Complete)
    }
}

/// Per-entity counters of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityCounts {
    /// Records read from the source.
    pub read: u64,
    /// Records that were new to Rampart.
    pub new: u64,
    /// Records whose content changed.
    pub updated: u64,
    /// Findings marked fixed, or assets marked missing, by reconciliation.
    pub resolved: u64,
    /// Fixed findings that came back, or missing assets that returned.
    pub reopened: u64,
    /// Records skipped as unusable (with a warning in the log), e.g. a finding row without a CVE.
    pub skipped: u64,
}

/// Records a run skipped because they could not be read (a shape Rampart does not expect). A few
/// do not stop a run from concluding; see docs/setup-endpoint.md, "What Microsoft may answer".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OddRecords {
    /// How many (exact).
    pub count: u64,
    /// Their ids, where they had one (the first few).
    #[serde(default)]
    pub ids: Vec<String>,
    /// Why the first one could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Database identity of a sync run: a type of its own, so that it cannot be swapped with an
/// integration's or any other number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl RunId {
    /// The number the database keys it by.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for RunId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(RunId)
    }
}

/// One sync run of one integration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    pub id: RunId,
    pub integration_id: IntegrationId,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    /// `full` or `delta`.
    pub mode: String,
    /// Where a full Defender for Endpoint read took its findings from: `pages` (the JSON export
    /// `SoftwareVulnerabilitiesByMachine`) or `files` (the file export
    /// `SoftwareVulnerabilitiesExport`). `None` for runs that read neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub verdict: Option<Verdict>,
    pub assets: EntityCounts,
    pub findings: EntityCounts,
    pub vulnerabilities: EntityCounts,
    /// Defender for Cloud recommendations (assessments); zero for Endpoint runs.
    #[serde(default)]
    pub recommendations: EntityCounts,
    pub api_calls: u64,
    pub throttled: u64,
    pub retries: u64,
    pub bytes: u64,
    /// What went wrong, in words a person can act on. Never contains a secret.
    pub error: Option<String>,
    /// Records skipped as unreadable, over all the run's reads.
    #[serde(default)]
    pub odd_records: OddRecords,
}
