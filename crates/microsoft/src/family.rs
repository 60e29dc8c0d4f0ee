//! The families of Microsoft API endpoints that Microsoft rate-limits separately; every request,
//! limit, metric and error names its family.

use std::fmt;

/// The endpoint families Microsoft limits separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiFamily {
    /// `GET /api/machines`: 100/min, 1,500/h.
    Machines,
    /// `GET /api/vulnerabilities` and other endpoints with unstated limits: 100/min (API terms).
    Vulnerabilities,
    /// `*ByMachine` JSON exports, delta included: 30/min, 1,000/h.
    JsonExport,
    /// `*Export` file exports: 5/min, 20/h.
    FileExport,
    /// Azure Resource Manager reads (subscriptions, `Microsoft.Security`): a token bucket of 250
    /// reads refilled at 25/s per subscription and principal (<https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/request-limits-and-throttling>).
    Arm,
    /// Azure Resource Graph queries: about 15 per 5 s per principal (<https://learn.microsoft.com/en-us/azure/governance/resource-graph/concepts/guidance-for-throttled-requests>).
    ResourceGraph,
}

impl ApiFamily {
    pub const ALL: [ApiFamily; 6] = [
        ApiFamily::Machines,
        ApiFamily::Vulnerabilities,
        ApiFamily::JsonExport,
        ApiFamily::FileExport,
        ApiFamily::Arm,
        ApiFamily::ResourceGraph,
    ];

    /// The Microsoft service behind the family, for messages.
    pub fn service(self) -> &'static str {
        match self {
            ApiFamily::Arm => "Azure Resource Manager",
            ApiFamily::ResourceGraph => "Azure Resource Graph",
            _ => "Defender for Endpoint",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiFamily::Machines => "machines",
            ApiFamily::Vulnerabilities => "vulnerabilities",
            ApiFamily::JsonExport => "json-export",
            ApiFamily::FileExport => "file-export",
            ApiFamily::Arm => "arm",
            ApiFamily::ResourceGraph => "resource-graph",
        }
    }

    /// The family's slot in per-family arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            ApiFamily::Machines => 0,
            ApiFamily::Vulnerabilities => 1,
            ApiFamily::JsonExport => 2,
            ApiFamily::FileExport => 3,
            ApiFamily::Arm => 4,
            ApiFamily::ResourceGraph => 5,
        }
    }
}

impl fmt::Display for ApiFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
