//! Prioritisation settings and SLA reporting (docs/prioritisation.md, "SLA settings",
//! "Criticality rules", "SLA reports"):
//!
//! - `/api/v1/settings/sla` and `/api/v1/settings/criticality-rules`: any token reads them; a
//!   global admin-scope token changes them (they apply to every workspace);
//! - `/api/v1/integrations/{id}/sla`: an integration's own SLA, changed with an admin-scope token
//!   of its workspace;
//! - `/api/v1/sla/report` and `/api/v1/sla/burndown`: what the token sees.
//!
//! Changes are audited and queue a re-assessment of the integrations they apply to
//! (rampart_sync::sla).

use rampart_model::IntegrationId;
use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::Utc;
use rampart_model::export::rfc3339;
use rampart_model::priority::{CriticalityRule, HumanImpact, SlaDays};
use rampart_store::{BurndownPoint, SlaLine, SlaReport, StoredRule, Visibility};
use rampart_sync::sla;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::tokens::{ApiAdmin, ApiReader};
use crate::error::{ApiError, AppError, Problem};
use crate::query::SlaQuery;
use crate::state::AppState;

/// SLA days per decision: each 1 to 3650, and a more urgent decision no more than a calmer one.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaDaysDto {
    pub immediate: u32,
    pub out_of_cycle: u32,
    pub scheduled: u32,
    pub defer: u32,
}

impl From<SlaDaysDto> for SlaDays {
    fn from(d: SlaDaysDto) -> Self {
        SlaDays {
            immediate: d.immediate,
            out_of_cycle: d.out_of_cycle,
            scheduled: d.scheduled,
            defer: d.defer,
        }
    }
}

impl From<SlaDays> for SlaDaysDto {
    fn from(d: SlaDays) -> Self {
        SlaDaysDto {
            immediate: d.immediate,
            out_of_cycle: d.out_of_cycle,
            scheduled: d.scheduled,
            defer: d.defer,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SlaSettingsOut {
    pub days: SlaDaysDto,
    /// Absent: the defaults, never changed.
    pub updated_by: Option<String>,
    pub updated_at: Option<String>,
}

/// A criticality rule: assets it matches get at least this human impact.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDto {
    /// Shown in a finding's explanation (`rule NAME`); unique.
    pub name: String,
    /// `tag`, `device-group`, `name-glob` or `resource-id-prefix`.
    #[serde(rename = "match")]
    pub matcher: String,
    /// The tag, group, name pattern (`*` any text) or resource-id prefix; case does not matter.
    pub value: String,
    /// `low`, `medium`, `high` or `very-high`.
    pub criticality: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleOut {
    #[serde(flatten)]
    pub rule: RuleDto,
    pub updated_by: String,
    pub updated_at: String,
}

impl From<&StoredRule> for RuleOut {
    fn from(r: &StoredRule) -> Self {
        let (matcher, value) = match &r.rule.matcher {
            rampart_model::priority::AssetMatcher::Tag(v) => ("tag", v),
            rampart_model::priority::AssetMatcher::DeviceGroup(v) => ("device-group", v),
            rampart_model::priority::AssetMatcher::NameGlob(v) => ("name-glob", v),
            rampart_model::priority::AssetMatcher::ResourceIdPrefix(v) => ("resource-id-prefix", v),
        };
        RuleOut {
            rule: RuleDto {
                name: r.rule.name.clone(),
                matcher: matcher.into(),
                value: value.clone(),
                criticality: r.rule.criticality.as_str().into(),
            },
            updated_by: r.updated_by.clone(),
            updated_at: rfc3339(&r.updated_at),
        }
    }
}

/// A rule as a person gave it, or why it cannot be one.
pub fn parse_rule(r: &RuleDto) -> Result<CriticalityRule, AppError> {
    let matcher = rampart_store::matcher_from(r.matcher.trim(), r.value.trim().to_owned())
        .ok_or_else(|| {
            AppError::BadRequest(format!(
                "rule '{}': match '{}' is not one Rampart knows; use tag, device-group, name-glob or resource-id-prefix",
                r.name, r.matcher
            ))
        })?;
    let criticality = HumanImpact::parse(&r.criticality).ok_or_else(|| {
        AppError::BadRequest(format!(
            "rule '{}': criticality '{}' is not one Rampart knows; use low, medium, high or very-high",
            r.name, r.criticality
        ))
    })?;
    Ok(CriticalityRule {
        name: r.name.trim().to_owned(),
        matcher,
        criticality,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationSlaOut {
    pub integration_id: i64,
    /// The integration's own SLA; absent: the installation's applies.
    pub own: Option<SlaDaysDto>,
    /// The SLA its findings are due by.
    pub effective: SlaDaysDto,
    pub updated_by: Option<String>,
    pub updated_at: Option<String>,
}

/// An integration's own SLA; `null` removes it (the installation's applies again).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationSlaIn {
    pub days: Option<SlaDaysDto>,
}

#[utoipa::path(get, path = "/api/v1/settings/sla", tag = "settings",
    responses((status = 200, body = SlaSettingsOut), (status = 401, body = Problem)))]
pub async fn get_sla(
    _t: ApiReader,
    State(state): State<AppState>,
) -> Result<Json<SlaSettingsOut>, ApiError> {
    let s = state.store().sla_settings().await?;
    Ok(Json(SlaSettingsOut {
        days: s.days.into(),
        updated_by: s.updated_by,
        updated_at: s.updated_at.as_ref().map(rfc3339),
    }))
}

#[utoipa::path(put, path = "/api/v1/settings/sla", tag = "settings", request_body = SlaDaysDto,
    responses((status = 200, body = SlaSettingsOut), (status = 400, body = Problem),
        (status = 403, description = "not a global admin-scope token", body = Problem)))]
pub async fn put_sla(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Json(body): Json<SlaDaysDto>,
) -> Result<Json<SlaSettingsOut>, ApiError> {
    let actor = format!("api:{}", admin.0.name);
    let s = sla::set_installation_sla(
        state.store().as_ref(),
        &admin.vis(),
        body.into(),
        &actor,
        Utc::now(),
    )
    .await?;
    crate::scheduler::start_due_jobs(&state).await;
    Ok(Json(SlaSettingsOut {
        days: s.days.into(),
        updated_by: s.updated_by,
        updated_at: s.updated_at.as_ref().map(rfc3339),
    }))
}

#[utoipa::path(get, path = "/api/v1/settings/criticality-rules", tag = "settings",
    responses((status = 200, body = [RuleOut]), (status = 401, body = Problem)))]
pub async fn get_rules(
    _t: ApiReader,
    State(state): State<AppState>,
) -> Result<Json<Vec<RuleOut>>, ApiError> {
    let rules = state.store().criticality_rules().await?;
    Ok(Json(rules.iter().map(RuleOut::from).collect()))
}

#[utoipa::path(put, path = "/api/v1/settings/criticality-rules", tag = "settings",
    request_body = [RuleDto],
    responses((status = 200, description = "the rules, in the order given", body = [RuleOut]),
        (status = 400, body = Problem),
        (status = 403, description = "not a global admin-scope token", body = Problem)))]
pub async fn put_rules(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Json(body): Json<Vec<RuleDto>>,
) -> Result<Json<Vec<RuleOut>>, ApiError> {
    let rules = body.iter().map(parse_rule).collect::<Result<Vec<_>, _>>()?;
    let actor = format!("api:{}", admin.0.name);
    let saved = sla::set_rules(
        state.store().as_ref(),
        &admin.vis(),
        &rules,
        &actor,
        Utc::now(),
    )
    .await?;
    crate::scheduler::start_due_jobs(&state).await;
    Ok(Json(saved.iter().map(RuleOut::from).collect()))
}

async fn integration_sla_out(
    state: &AppState,
    vis: &Visibility,
    id: i64,
) -> Result<IntegrationSlaOut, AppError> {
    let store = state.store();
    let own = store.integration_sla(vis, IntegrationId(id)).await?;
    let installation = store.sla_settings().await?.days;
    Ok(IntegrationSlaOut {
        integration_id: id,
        effective: own.as_ref().map_or(installation, |o| o.days).into(),
        own: own.as_ref().map(|o| o.days.into()),
        updated_by: own.as_ref().map(|o| o.updated_by.clone()),
        updated_at: own.as_ref().map(|o| rfc3339(&o.updated_at)),
    })
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}/sla", tag = "settings",
    params(("id" = i64, Path)),
    responses((status = 200, body = IntegrationSlaOut), (status = 404, body = Problem)))]
pub async fn get_integration_sla(
    t: ApiReader,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<IntegrationSlaOut>, ApiError> {
    Ok(Json(integration_sla_out(&state, &t.vis(), id).await?))
}

#[utoipa::path(put, path = "/api/v1/integrations/{id}/sla", tag = "settings",
    params(("id" = i64, Path)), request_body = IntegrationSlaIn,
    responses((status = 200, body = IntegrationSlaOut), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn put_integration_sla(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Json(body): Json<IntegrationSlaIn>,
) -> Result<Json<IntegrationSlaOut>, ApiError> {
    let actor = format!("api:{}", admin.0.name);
    let vis = admin.vis();
    sla::set_integration_sla(
        state.store().as_ref(),
        &vis,
        IntegrationId(id),
        body.days.map(Into::into),
        &actor,
        Utc::now(),
    )
    .await?;
    crate::scheduler::start_due_jobs(&state).await;
    Ok(Json(integration_sla_out(&state, &vis, id).await?))
}

/// One line of the report.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlaLineOut {
    /// The integration's id, the severity (`Critical` … `Low`, `none`) or the decision; `all`
    /// for the total.
    pub key: String,
    /// The integration's name, for a line of an integration.
    pub name: Option<String>,
    /// Open findings assessed, as of the integration's last run (accepted ones included).
    pub open: u64,
    pub on_track: u64,
    pub due_soon: u64,
    pub overdue: u64,
    /// Open findings an exception covers: off the clock, not in on_track, due_soon, overdue.
    pub accepted: u64,
    /// Findings fixed in the period.
    pub fixed: u64,
    /// Of the fixed findings that had a due date, how many were fixed by it.
    pub fixed_on_time: u64,
    pub fixed_with_due: u64,
    /// Time to fix (fixed − clock start), whole hours, nearest rank.
    pub median_hours_to_fix: Option<i64>,
    pub p90_hours_to_fix: Option<i64>,
    /// fixed_on_time ÷ fixed_with_due, in %.
    pub compliance_percent: Option<f64>,
}

fn line_out(key: String, name: Option<String>, l: &SlaLine) -> SlaLineOut {
    SlaLineOut {
        key,
        name,
        open: l.open,
        on_track: l.on_track,
        due_soon: l.due_soon,
        overdue: l.overdue,
        accepted: l.accepted,
        fixed: l.fixed,
        fixed_on_time: l.fixed_on_time,
        fixed_with_due: l.fixed_with_due,
        median_hours_to_fix: l.median_hours_to_fix,
        p90_hours_to_fix: l.p90_hours_to_fix,
        compliance_percent: l.compliance_percent,
    }
}

/// The name of a stored severity (0: none given).
pub fn severity_name(s: u8) -> &'static str {
    match s {
        4 => "Critical",
        3 => "High",
        2 => "Medium",
        1 => "Low",
        _ => "none",
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SlaReportOut {
    pub period_days: u32,
    pub total: SlaLineOut,
    pub by_integration: Vec<SlaLineOut>,
    pub by_severity: Vec<SlaLineOut>,
    pub by_decision: Vec<SlaLineOut>,
    /// When each integration's open counts were taken (the end of its last run's assessment).
    pub as_of: Vec<AsOfOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AsOfOut {
    pub integration_id: i64,
    pub at: String,
}

/// The report as the API answers it (names from `names`).
pub fn report_out(
    r: &SlaReport,
    names: &HashMap<IntegrationId, String>,
    days: u32,
) -> SlaReportOut {
    SlaReportOut {
        period_days: days,
        total: line_out("all".into(), None, &r.total),
        by_integration: r
            .by_integration
            .iter()
            .map(|(i, l)| line_out(i.to_string(), names.get(i).cloned(), l))
            .collect(),
        by_severity: r
            .by_severity
            .iter()
            .map(|(s, l)| line_out(severity_name(*s).into(), None, l))
            .collect(),
        by_decision: r
            .by_decision
            .iter()
            .map(|(d, l)| line_out(d.as_str().into(), None, l))
            .collect(),
        as_of: r
            .as_of
            .iter()
            .map(|(i, at)| AsOfOut {
                integration_id: i.get(),
                at: rfc3339(at),
            })
            .collect(),
    }
}

#[utoipa::path(get, path = "/api/v1/sla/report", tag = "data", params(SlaQuery),
    responses((status = 200, body = SlaReportOut), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn report(
    t: ApiReader,
    State(state): State<AppState>,
    Query(q): Query<SlaQuery>,
) -> Result<Json<SlaReportOut>, ApiError> {
    let (integration, days) = q.parse()?;
    let vis = t.vis();
    let store = state.store();
    let r = sla::report(store.as_ref(), &vis, integration, days, Utc::now()).await?;
    let names = state.integration_names(&vis).await?;
    Ok(Json(report_out(&r, &names, days)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BurndownPointOut {
    pub at: String,
    pub immediate: u64,
    pub out_of_cycle: u64,
    pub scheduled: u64,
    pub defer: u64,
    pub overdue: u64,
    pub accepted: u64,
}

impl From<&BurndownPoint> for BurndownPointOut {
    fn from(p: &BurndownPoint) -> Self {
        BurndownPointOut {
            at: rfc3339(&p.at),
            immediate: p.open[0],
            out_of_cycle: p.open[1],
            scheduled: p.open[2],
            defer: p.open[3],
            overdue: p.overdue,
            accepted: p.accepted,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/sla/burndown", tag = "data", params(SlaQuery),
    responses((status = 200, description = "open findings by decision after each run, oldest first", body = [BurndownPointOut]),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn burndown(
    t: ApiReader,
    State(state): State<AppState>,
    Query(q): Query<SlaQuery>,
) -> Result<Json<Vec<BurndownPointOut>>, ApiError> {
    let (integration, days) = q.parse()?;
    let points = sla::burndown(
        state.store().as_ref(),
        &t.vis(),
        integration,
        days,
        Utc::now(),
    )
    .await?;
    Ok(Json(points.iter().map(BurndownPointOut::from).collect()))
}
