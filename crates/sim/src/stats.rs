//! Counters of what the emulator served, for tests and benchmarks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Endpoint families: the unit of Microsoft's rate limits and of [`Stats::calls`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `/{tenant}/oauth2/…/token`.
    Token,
    /// `/api/machines`, `/api/machines/{id}`, `/api/machines/findbytag`.
    Machines,
    /// `/api/machines/{id}/vulnerabilities`.
    MachineVulnerabilities,
    /// `/api/vulnerabilities…` (catalogue, per-CVE, `machinesVulnerabilities`).
    Vulnerabilities,
    /// `SoftwareVulnerabilitiesByMachine` (JSON export pages).
    JsonExport,
    /// `SoftwareVulnerabilityChangesByMachine` (delta pages).
    Delta,
    /// `SoftwareVulnerabilitiesExport` (file export URL lists).
    FileExport,
    /// Export file downloads (`/blob/…`).
    Blob,
    /// `/_sim/…` control endpoints.
    Control,
    /// Azure Resource Manager reads (`/subscriptions…`, `/providers/Microsoft.Security/…`).
    Arm,
    /// Azure Resource Graph queries.
    ResourceGraph,
    /// Anything else (unknown paths).
    Other,
}

const FAMILIES: [Family; 12] = [
    Family::Token,
    Family::Machines,
    Family::MachineVulnerabilities,
    Family::Vulnerabilities,
    Family::JsonExport,
    Family::Delta,
    Family::FileExport,
    Family::Blob,
    Family::Control,
    Family::Arm,
    Family::ResourceGraph,
    Family::Other,
];

impl Family {
    /// The key of this family in [`Stats::calls`] and `GET /_sim/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Token => "token",
            Family::Machines => "machines",
            Family::MachineVulnerabilities => "machine_vulnerabilities",
            Family::Vulnerabilities => "vulnerabilities",
            Family::JsonExport => "json_export",
            Family::Delta => "delta",
            Family::FileExport => "file_export",
            Family::Blob => "blob",
            Family::Control => "control",
            Family::Arm => "arm",
            Family::ResourceGraph => "resource_graph",
            Family::Other => "other",
        }
    }

    fn slot(self) -> usize {
        FAMILIES
            .iter()
            .position(|f| *f == self)
            .unwrap_or(FAMILIES.len() - 1)
    }
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Current simulated tick.
    pub tick: i64,
    /// Requests per endpoint family (see [`Family::as_str`]), whatever their answer.
    pub calls: BTreeMap<String, u64>,
    /// 429 responses served (rate limits and injected throttling).
    pub throttled: u64,
    /// Faults injected (random and targeted): error statuses, resets, truncations, slow bodies.
    pub faults_injected: u64,
    /// Records written into response bodies (machines, vulnerabilities, export rows, delta rows, file lines).
    pub rows_served: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
}

impl Stats {
    /// Calls of one family.
    pub fn calls(&self, family: Family) -> u64 {
        self.calls.get(family.as_str()).copied().unwrap_or(0)
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    calls: [AtomicU64; 12],
    pub(crate) throttled: AtomicU64,
    pub(crate) faults: AtomicU64,
    pub(crate) rows: AtomicU64,
    pub(crate) tokens: AtomicU64,
}

impl Counters {
    pub(crate) fn call(&self, family: Family) {
        self.calls[family.slot()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, tick: i64) -> Stats {
        Stats {
            tick,
            calls: FAMILIES
                .iter()
                .map(|f| {
                    (
                        f.as_str().to_owned(),
                        self.calls[f.slot()].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            throttled: self.throttled.load(Ordering::Relaxed),
            faults_injected: self.faults.load(Ordering::Relaxed),
            rows_served: self.rows.load(Ordering::Relaxed),
            tokens_issued: self.tokens.load(Ordering::Relaxed),
        }
    }
}
