//! Listing filters as they come in query strings (portal forms and the API alike), parsed into
//! the store's filters with errors in words. Empty parameters mean "no filter".

use chrono::{DateTime, Utc};
use rampart_model::priority::{Decision, SlaStatus};
use rampart_model::{AssetStatus, CveId, FindingStatus, IntegrationId, Severity};
use rampart_store::{
    AssetFilter, AssetSort, ExceptionFilter, FindingCursor, FindingFilter, FindingOrder,
    ListedAsset, Page, RecommendationFilter, RemediationFilter, RemediationSort, SortCursor, Store,
    Visibility, VulnerabilityFilter,
};
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

/// Longest cursor accepted. A name-sorted cursor carries the name (hex): cursors are never cut
/// short like other parameters, which would turn a real cursor into another one.
const MAX_CURSOR: usize = 4096;

/// The `after` parameter, whole: `None` when absent or empty.
fn cursor_text(raw: &Option<String>) -> Result<Option<&str>, AppError> {
    match raw.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s.len() > MAX_CURSOR => Err(bad(
            "after",
            "the next_cursor of the previous page (this one is too long to be one)",
        )),
        other => Ok(other),
    }
}

fn bad(what: &str, hint: &str) -> AppError {
    AppError::BadRequest(format!("{what}: {hint}"))
}

/// A `status` parameter, any case, read by `parse`; `expected` says what it may be.
fn status<T>(
    raw: &Option<String>,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, AppError> {
    opt(raw)
        .map(|s| parse(&s.to_lowercase()).ok_or_else(|| bad("status", expected)))
        .transpose()
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
            s.parse::<IntegrationId>()
                .map_err(|_| bad("integration", "an integration id (a number)"))
        })
        .transpose()
}

/// `changed_since`: an RFC 3339 time, any offset (kept as UTC).
fn changed_since(raw: &Option<String>) -> Result<Option<DateTime<Utc>>, AppError> {
    opt(raw)
        .map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    bad(
                        "changed_since",
                        "an RFC 3339 time such as 2026-11-28T06:00:00Z",
                    )
                })
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
    /// Sort order: `name`, `last_seen`, `exposure`, `risk`, `open_findings` (critical, then high,
    /// then all open findings) or `id` (the default); a leading `-` sorts descending, e.g.
    /// `-open_findings`. Pages stay in this order: keep the same `sort` with `after`.
    pub sort: Option<String>,
    /// An RFC 3339 time: only assets a sync observed, or concluded missing, after it. Syncs stamp
    /// what they observe with their start time, so pass the start of your previous poll minus
    /// the longest sync to miss nothing.
    pub changed_since: Option<String>,
    /// The cursor of the next page (`next_cursor` of the previous one).
    pub after: Option<String>,
    /// Rows per page, 1–1000 (default 50).
    pub limit: Option<String>,
}

impl AssetQuery {
    pub fn filter(&self) -> Result<AssetFilter, AppError> {
        Ok(AssetFilter {
            integration: integration(&self.integration)?,
            status: status(&self.status, AssetStatus::parse, "active or missing")?,
            search: opt(&self.q),
            os_platform: opt(&self.platform),
            health_status: opt(&self.health),
            exposure_level: opt(&self.exposure),
            tag: opt(&self.tag),
            changed_since: changed_since(&self.changed_since)?,
        })
    }

    pub fn sort(&self) -> Result<AssetSort, AppError> {
        match opt(&self.sort) {
            None => Ok(AssetSort::default()),
            Some(s) => AssetSort::parse(&s).ok_or_else(|| {
                bad(
                    "sort",
                    "one of name, last_seen, exposure, risk, open_findings, id, optionally with a leading - for descending",
                )
            }),
        }
    }

    /// The cursor, which must belong to the sort order asked for.
    pub fn after_sorted(&self, sort: AssetSort) -> Result<Option<SortCursor>, AppError> {
        cursor_text(&self.after)?
            .map(|s| {
                SortCursor::decode(s, sort).map_err(|_| {
                    bad(
                        "after",
                        "the next_cursor of the previous page, with the same sort (or leave it out for the first page)",
                    )
                })
            })
            .transpose()
    }

    /// The page of assets this query asks for, in the order it asks for (returned with it).
    pub async fn page(
        &self,
        store: &dyn Store,
        vis: &Visibility,
    ) -> Result<(AssetSort, Page<ListedAsset, SortCursor>), AppError> {
        let sort = self.sort()?;
        let after = self.after_sorted(sort)?;
        let page = store
            .assets_sorted(
                vis,
                &self.filter()?,
                sort,
                after.as_ref(),
                limit(&self.limit)?,
            )
            .await?;
        Ok((sort, page))
    }
}

/// An id cursor: the (positive) id of the previous page's last row. Anything else is refused
/// rather than read as "from the start", which would hand a client page 1 again.
fn cursor(raw: &Option<String>) -> Result<Option<i64>, AppError> {
    cursor_text(raw)?
        .map(|s| {
            s.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| bad("after", "the next_cursor of the previous page"))
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
    /// An RFC 3339 time: only findings a sync found new, changed or back, that were fixed, or
    /// whose decision, priority or due date changed, after it (see `changed_since` of the
    /// assets). A full sync that reads a finding unchanged does not return it again.
    pub changed_since: Option<String>,
    /// Only open findings with this SSVC decision: `immediate`, `out-of-cycle`, `scheduled` or
    /// `defer`.
    pub decision: Option<String>,
    /// Only findings with this SLA status now: `on_track`, `due_soon`, `overdue`, `closed`
    /// (fixed) or `accepted` (exceptions; none are stored yet).
    pub sla_status: Option<String>,
    /// `-priority` (most urgent first) or `priority` (least urgent first); by id when absent.
    pub sort: Option<String>,
    /// The cursor of the next page (`next_cursor` of the previous one).
    pub after: Option<String>,
    /// Rows per page, 1–1000 (default 50).
    pub limit: Option<String>,
}

const SLA_STATUSES: [SlaStatus; 5] = [
    SlaStatus::OnTrack,
    SlaStatus::DueSoon,
    SlaStatus::Overdue,
    SlaStatus::Accepted,
    SlaStatus::Closed,
];

impl FindingQuery {
    /// The priority order asked for; `default` when `sort` is absent (`None`: id order).
    pub fn order(&self, default: Option<FindingOrder>) -> Result<Option<FindingOrder>, AppError> {
        match opt(&self.sort).as_deref() {
            None => Ok(default),
            Some("-priority") => Ok(Some(FindingOrder::PriorityDesc)),
            Some("priority") => Ok(Some(FindingOrder::PriorityAsc)),
            Some("id") => Ok(None),
            Some(_) => Err(bad("sort", "-priority, priority or id")),
        }
    }

    /// The cursor of a priority-sorted page.
    pub fn priority_after(&self) -> Result<Option<FindingCursor>, AppError> {
        cursor_text(&self.after)?
            .map(|s| {
                FindingCursor::parse(s)
                    .ok_or_else(|| bad("after", "the next_cursor of the previous page"))
            })
            .transpose()
    }

    pub fn filter(&self) -> Result<FindingFilter, AppError> {
        Ok(FindingFilter {
            integration: integration(&self.integration)?,
            status: status(&self.status, FindingStatus::parse, "open or fixed")?,
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
            changed_since: changed_since(&self.changed_since)?,
            decision: opt(&self.decision)
                .map(|s| {
                    Decision::parse(&s.to_lowercase()).ok_or_else(|| {
                        bad("decision", "immediate, out-of-cycle, scheduled or defer")
                    })
                })
                .transpose()?,
            sla_status: opt(&self.sla_status)
                .map(|s| {
                    let s = s.to_lowercase();
                    SLA_STATUSES
                        .into_iter()
                        .find(|v| v.as_str() == s)
                        .map(|v| (v, Utc::now()))
                        .ok_or_else(|| {
                            bad(
                                "sla_status",
                                "on_track, due_soon, overdue, closed or accepted",
                            )
                        })
                })
                .transpose()?,
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
    /// An RFC 3339 time: only CVEs added to the catalogue, or changed, after it.
    pub changed_since: Option<String>,
    /// The CVE id after which the page starts (`next_cursor` of the previous page).
    pub after: Option<String>,
    /// Rows per page, 1–1000 (default 50).
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
            changed_since: changed_since(&self.changed_since)?,
        })
    }

    pub fn after(&self) -> Result<Option<CveId>, AppError> {
        cursor_text(&self.after)?
            .map(|s| {
                s.parse::<CveId>()
                    .map_err(|_| bad("after", "the next_cursor of the previous page"))
            })
            .transpose()
    }
}

/// `?integration=&subscription=&status=&severity=&q=&changed_since=&after=&limit=`: Defender for
/// Cloud recommendations.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendationQuery {
    pub integration: Option<String>,
    /// A subscription id (GUID, any case).
    pub subscription: Option<String>,
    /// `Healthy`, `Unhealthy`, `NotApplicable`, `Removed` (any case) or `any`. The portal shows
    /// `Unhealthy` ones unless told otherwise; the API lists every status unless told.
    pub status: Option<String>,
    /// `Low`, `Medium`, `High` or `Critical` (any case).
    pub severity: Option<String>,
    /// Substring of the recommendation's name, the resource id or the assessment key.
    pub q: Option<String>,
    /// An RFC 3339 time: only recommendations a sync observed, or that were resolved or removed,
    /// after it.
    pub changed_since: Option<String>,
    /// The cursor of the next page (`next_cursor` of the previous one).
    pub after: Option<String>,
    /// Rows per page, 1–1000 (default 50).
    pub limit: Option<String>,
}

/// One of `words` (any case); `any` means no filter.
fn one_of(field: &str, raw: &Option<String>, words: &[&str]) -> Result<Option<String>, AppError> {
    opt(raw)
        .filter(|s| !s.eq_ignore_ascii_case("any"))
        .map(|s| {
            words
                .iter()
                .find(|w| w.eq_ignore_ascii_case(&s))
                .map(|w| (*w).to_owned())
                .ok_or_else(|| bad(field, &format!("one of {}", words.join(", "))))
        })
        .transpose()
}

impl RecommendationQuery {
    pub fn filter(&self) -> Result<RecommendationFilter, AppError> {
        Ok(RecommendationFilter {
            integration: integration(&self.integration)?,
            subscription: opt(&self.subscription),
            status: one_of(
                "status",
                &self.status,
                &["Healthy", "Unhealthy", "NotApplicable", "Removed"],
            )?,
            severity: one_of(
                "severity",
                &self.severity,
                &["Low", "Medium", "High", "Critical"],
            )?,
            asset_id: None,
            search: opt(&self.q),
            changed_since: changed_since(&self.changed_since)?,
        })
    }

    pub fn after(&self) -> Result<Option<i64>, AppError> {
        cursor(&self.after)
    }
}

/// `?integration=&changed_since=`: secure scores and controls.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PostureQuery {
    pub integration: Option<String>,
    /// A subscription id (GUID, any case): only its scores and controls.
    pub subscription: Option<String>,
    /// An RFC 3339 time: only scores and controls captured after it (history: points after it).
    pub changed_since: Option<String>,
}

impl PostureQuery {
    pub fn integration(&self) -> Result<Option<IntegrationId>, AppError> {
        integration(&self.integration)
    }

    pub fn subscription(&self) -> Option<String> {
        opt(&self.subscription).map(|s| s.to_lowercase())
    }

    pub fn changed_since(&self) -> Result<Option<DateTime<Utc>>, AppError> {
        changed_since(&self.changed_since)
    }
}

/// `?integration=&sort=&after=&limit=`: the remediation plan ("Fix first").
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemediationQuery {
    pub integration: Option<String>,
    /// `-priority` (the default: the priority the fix removes), `-overdue`, `-assets` or
    /// `-findings`; largest first.
    pub sort: Option<String>,
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
    /// 1 to 1000; 50 when absent.
    pub limit: Option<String>,
}

impl RemediationQuery {
    pub fn filter(&self) -> Result<RemediationFilter, AppError> {
        Ok(RemediationFilter {
            integration: integration(&self.integration)?,
        })
    }

    pub fn sort(&self) -> Result<RemediationSort, AppError> {
        match opt(&self.sort).as_deref() {
            None | Some("-priority") => Ok(RemediationSort::Priority),
            Some("-overdue") => Ok(RemediationSort::Overdue),
            Some("-assets") => Ok(RemediationSort::Assets),
            Some("-findings") => Ok(RemediationSort::Findings),
            Some(_) => Err(bad("sort", "-priority, -overdue, -assets or -findings")),
        }
    }

    /// Where the page starts (the plan is ranked as a whole, so a cursor is a position in it).
    pub fn offset(&self) -> Result<u32, AppError> {
        cursor_text(&self.after)?
            .map(|s| {
                s.parse::<u32>()
                    .map_err(|_| bad("after", "the next_cursor of the previous page"))
            })
            .transpose()
            .map(Option::unwrap_or_default)
    }

    pub fn limit(&self) -> Result<u32, AppError> {
        limit(&self.limit)
    }
}

/// `?integration=&in_force=`: exceptions.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExceptionQuery {
    /// Only those that can cover this integration's findings (its own and those of all
    /// integrations).
    pub integration: Option<String>,
    /// `true`: only those in force now.
    pub in_force: Option<String>,
}

impl ExceptionQuery {
    pub fn filter(&self, now: DateTime<Utc>) -> Result<ExceptionFilter, AppError> {
        let in_force = match opt(&self.in_force).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(bad("in_force", "true or false")),
        };
        Ok(ExceptionFilter {
            integration: integration(&self.integration)?,
            in_force_at: in_force.then_some(now),
        })
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

/// `/api/v1/sla/report` and `/api/v1/sla/burndown` (and the portal's `/sla`).
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SlaQuery {
    /// The period, in days: 30 (the default), 90 or 365.
    pub days: Option<String>,
    /// Only this integration.
    pub integration: Option<String>,
}

impl SlaQuery {
    /// The integration and the period, in days.
    pub fn parse(&self) -> Result<(Option<IntegrationId>, u32), AppError> {
        let days = opt(&self.days)
            .map(|d| d.parse::<u32>().map_err(|_| bad("days", "30, 90 or 365")))
            .transpose()?;
        let days = rampart_sync::sla::period(days)?;
        Ok((integration(&self.integration)?, days))
    }
}
