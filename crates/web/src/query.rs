//! Listing filters as they come in query strings (portal forms and the API alike), parsed into
//! the store's filters with errors in words. Empty parameters mean "no filter".

use rampart_model::{AssetStatus, CveId, FindingStatus, IntegrationId, Severity};
use rampart_store::{AssetFilter, FindingFilter, VulnerabilityFilter};
use serde::Deserialize;

use crate::error::AppError;

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 1000;

fn opt(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(200).collect())
}

fn bad(what: &str, hint: &str) -> AppError {
    AppError::BadRequest(format!("{what}: {hint}"))
}

pub fn limit(raw: &Option<String>) -> Result<u32, AppError> {
    match opt(raw) {
        None => Ok(DEFAULT_PAGE),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| bad("limit", "a number from 1 to 1000")),
    }
}

fn integration(raw: &Option<String>) -> Result<Option<IntegrationId>, AppError> {
    opt(raw)
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| bad("integration", "an integration id (a number)"))
        })
        .transpose()
}

fn severity(field: &str, raw: &Option<String>) -> Result<Option<Severity>, AppError> {
    opt(raw)
        .map(|s| {
            Severity::parse_lenient(&s)
                .ok_or_else(|| bad(field, "one of low, medium, high, critical"))
        })
        .transpose()
}

/// `?q=&status=&platform=&health=&exposure=&tag=&integration=&after=&limit=`
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssetQuery {
    /// Substring of the name or the source id.
    pub q: Option<String>,
    /// `active` or `missing`.
    pub status: Option<String>,
    /// OS platform, e.g. `Windows11`.
    pub platform: Option<String>,
    /// Health status, e.g. `Active`, `Inactive`.
    pub health: Option<String>,
    /// Exposure level: `None`, `Low`, `Medium`, `High`.
    pub exposure: Option<String>,
    pub tag: Option<String>,
    pub integration: Option<String>,
    /// The cursor of the next page (`next_cursor` of the previous one).
    pub after: Option<String>,
    /// Rows per page, 1–1000 (default 50).
    pub limit: Option<String>,
}

impl AssetQuery {
    pub fn filter(&self) -> Result<AssetFilter, AppError> {
        Ok(AssetFilter {
            integration: integration(&self.integration)?,
            status: opt(&self.status)
                .map(|s| {
                    AssetStatus::parse(&s.to_lowercase())
                        .ok_or_else(|| bad("status", "active or missing"))
                })
                .transpose()?,
            search: opt(&self.q),
            os_platform: opt(&self.platform),
            health_status: opt(&self.health),
            exposure_level: opt(&self.exposure),
            tag: opt(&self.tag),
        })
    }

    pub fn after(&self) -> Result<Option<i64>, AppError> {
        cursor(&self.after)
    }
}

fn cursor(raw: &Option<String>) -> Result<Option<i64>, AppError> {
    opt(raw)
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| bad("after", "the next_cursor of the previous page"))
        })
        .transpose()
}

/// `?q=&status=&severity=&min_severity=&cve=&asset=&integration=&after=&limit=`
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindingQuery {
    /// Substring of the CVE id, software vendor or name, or asset name.
    pub q: Option<String>,
    /// `open` or `fixed`.
    pub status: Option<String>,
    /// Exactly this severity.
    pub severity: Option<String>,
    /// This severity or worse.
    pub min_severity: Option<String>,
    /// A CVE id.
    pub cve: Option<String>,
    /// An asset's source id.
    pub asset: Option<String>,
    pub integration: Option<String>,
    pub after: Option<String>,
    pub limit: Option<String>,
}

impl FindingQuery {
    pub fn filter(&self) -> Result<FindingFilter, AppError> {
        Ok(FindingFilter {
            integration: integration(&self.integration)?,
            status: opt(&self.status)
                .map(|s| {
                    FindingStatus::parse(&s.to_lowercase())
                        .ok_or_else(|| bad("status", "open or fixed"))
                })
                .transpose()?,
            severity: severity("severity", &self.severity)?,
            min_severity: severity("min_severity", &self.min_severity)?,
            cve_id: opt(&self.cve)
                .map(|s| {
                    s.parse::<CveId>()
                        .map_err(|_| bad("cve", "a CVE id like CVE-2024-12345"))
                })
                .transpose()?,
            asset_source_id: opt(&self.asset),
            search: opt(&self.q),
        })
    }

    pub fn after(&self) -> Result<Option<i64>, AppError> {
        cursor(&self.after)
    }
}

/// `?q=&severity=&min_severity=&exposed=&integration=&after=&limit=`
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VulnerabilityQuery {
    /// Substring of the CVE id or description.
    pub q: Option<String>,
    pub severity: Option<String>,
    pub min_severity: Option<String>,
    /// `true`: only CVEs with at least one exposed asset.
    pub exposed: Option<String>,
    pub integration: Option<String>,
    /// The CVE id after which the page starts.
    pub after: Option<String>,
    pub limit: Option<String>,
}

impl VulnerabilityQuery {
    pub fn filter(&self) -> Result<VulnerabilityFilter, AppError> {
        Ok(VulnerabilityFilter {
            integration: integration(&self.integration)?,
            exposed_only: matches!(
                opt(&self.exposed).as_deref(),
                Some("true" | "1" | "on" | "yes")
            ),
            severity: severity("severity", &self.severity)?,
            min_severity: severity("min_severity", &self.min_severity)?,
            search: opt(&self.q),
        })
    }

    pub fn after(&self) -> Result<Option<CveId>, AppError> {
        opt(&self.after)
            .map(|s| {
                s.parse::<CveId>()
                    .map_err(|_| bad("after", "the next_cursor of the previous page"))
            })
            .transpose()
    }
}

/// The query string of `pairs`, percent-encoded, empty values left out.
pub fn encode(pairs: &[(&str, &Option<String>)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = opt(v) {
            s.append_pair(k, &v);
        }
    }
    s.finish()
}
