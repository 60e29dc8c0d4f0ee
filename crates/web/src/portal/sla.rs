//! SLA pages (docs/prioritisation.md, "SLA settings", "Criticality rules", "SLA reports"):
//!
//! - `/sla`: the SLA report and burn-down of what the account sees (everyone signed in);
//! - `/settings/prioritisation`: the installation's SLA days and the criticality rules (global
//!   admins: they apply to every workspace);
//! - `/integrations/{id}/sla`: an integration's own SLA (admins of its workspace).
//!
//! Changes go through rampart_sync::sla, which audits them and queues the re-assessment.

use rampart_model::IntegrationId;
use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use rampart_model::priority::{CriticalityRule, SlaDays};
use rampart_store::{SlaLine, StoredRule};
use rampart_sync::sla::{self, SettingsError};
use serde::Deserialize;

use crate::api::sla::{RuleDto, parse_rule, severity_name};
use crate::auth::extract::{AdminCtx, Ctx, WorkspaceAdminCtx};
use crate::charts;
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::render::{self, when};
use crate::query::SlaQuery;
use crate::state::AppState;

/// One line of the report, ready to show.
pub struct LineView {
    pub label: String,
    pub link: Option<String>,
    pub line: SlaLine,
}

impl LineView {
    pub fn compliance(&self) -> String {
        self.line
            .compliance_percent
            .map_or_else(|| "—".to_owned(), |c| format!("{c:.1} %"))
    }

    pub fn median(&self) -> String {
        hours(self.line.median_hours_to_fix)
    }

    pub fn p90(&self) -> String {
        hours(self.line.p90_hours_to_fix)
    }
}

/// A time to fix in words: hours under two days, days above.
fn hours(h: Option<i64>) -> String {
    match h {
        None => "—".to_owned(),
        Some(h) if h < 48 => format!("{h} h"),
        Some(h) => format!("{:.1} d", h as f64 / 24.0),
    }
}

/// One table of the report.
pub struct Section {
    pub id: &'static str,
    pub title: &'static str,
    pub lines: Vec<LineView>,
}

/// One decision's line of the burn-down.
pub struct Series {
    pub decision: &'static str,
    pub points: String,
    pub last: u64,
}

#[derive(Template)]
#[template(path = "sla.html")]
struct SlaPage {
    layout: Layout,
    days: u32,
    periods: Vec<(u32, bool)>,
    integration: String,
    integrations: Vec<(String, String)>,
    sections: Vec<Section>,
    series: Vec<Series>,
    runs: usize,
    first: String,
    last: String,
    width: f64,
    height: f64,
}

pub async fn page(
    ctx: Ctx,
    State(state): State<AppState>,
    Query(q): Query<SlaQuery>,
) -> Result<Response, AppError> {
    let (integration, days) = q.parse()?;
    let vis = ctx.vis();
    let store = state.store();
    let now = Utc::now();
    let report = sla::report(store.as_ref(), &vis, integration, days, now).await?;
    let points = sla::burndown(store.as_ref(), &vis, integration, days, now).await?;
    let listed = store.list_integrations(&vis).await?;
    let names: HashMap<IntegrationId, String> =
        listed.iter().map(|i| (i.id, i.name.to_string())).collect();
    let view = |label: String, link: Option<String>, line: &SlaLine| LineView {
        label,
        link,
        line: line.clone(),
    };
    let decisions = ["immediate", "out-of-cycle", "scheduled", "defer"];
    let lines = charts::lines_on_one_scale(
        &(0..4)
            .map(|d| points.iter().map(|p| p.open[d]).collect())
            .collect::<Vec<_>>(),
    );
    let series = decisions
        .iter()
        .zip(lines)
        .enumerate()
        .map(|(d, (decision, points_text))| Series {
            decision,
            points: points_text,
            last: points.last().map_or(0, |p| p.open[d]),
        })
        .collect();
    render::page(&SlaPage {
        layout: Layout::new(&ctx, "SLA", "sla"),
        days,
        periods: sla::PERIODS.iter().map(|p| (*p, *p == days)).collect(),
        integration: integration.map(|i| i.to_string()).unwrap_or_default(),
        integrations: listed
            .iter()
            .map(|i| (i.id.to_string(), i.name.to_string()))
            .collect(),
        sections: vec![
            Section {
                id: "sla-total",
                title: "All",
                lines: vec![view("All".into(), None, &report.total)],
            },
            Section {
                id: "sla-by-integration",
                title: "By integration",
                lines: report
                    .by_integration
                    .iter()
                    .map(|(i, l)| {
                        view(
                            names.get(i).cloned().unwrap_or_else(|| i.to_string()),
                            Some(format!("/sla?integration={i}&days={days}")),
                            l,
                        )
                    })
                    .collect(),
            },
            Section {
                id: "sla-by-severity",
                title: "By severity",
                lines: report
                    .by_severity
                    .iter()
                    .map(|(s, l)| view(severity_name(*s).into(), None, l))
                    .collect(),
            },
            Section {
                id: "sla-by-decision",
                title: "By decision",
                lines: report
                    .by_decision
                    .iter()
                    .map(|(d, l)| view(d.as_str().into(), None, l))
                    .collect(),
            },
        ],
        series,
        runs: points.len(),
        first: points.first().map(|p| when(&p.at)).unwrap_or_default(),
        last: points.last().map(|p| when(&p.at)).unwrap_or_default(),
        width: charts::WIDTH,
        height: charts::HEIGHT,
    })
}

pub struct RuleView {
    pub index: usize,
    pub name: String,
    pub matcher: String,
    pub value: String,
    pub criticality: &'static str,
    pub changed: String,
}

#[derive(Template)]
#[template(path = "prioritisation_settings.html")]
struct SettingsPage {
    layout: Layout,
    days: SlaDays,
    changed: String,
    rules: Vec<RuleView>,
    sla_error: Option<String>,
    rules_error: Option<String>,
}

fn rule_views(rules: &[StoredRule]) -> Vec<RuleView> {
    rules
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let dto = crate::api::sla::RuleOut::from(r).rule;
            RuleView {
                index,
                name: dto.name,
                matcher: dto.matcher,
                value: dto.value,
                criticality: r.rule.criticality.as_str(),
                changed: format!("{} by {}", when(&r.updated_at), r.updated_by),
            }
        })
        .collect()
}

async fn settings_page(
    ctx: &Ctx,
    state: &AppState,
    days: Option<SlaDays>,
    sla_error: Option<String>,
    rules_error: Option<String>,
) -> Result<Response, AppError> {
    let store = state.store();
    let settings = store.sla_settings().await?;
    let rules = store.criticality_rules().await?;
    let status = if sla_error.is_some() || rules_error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render::with_status(
        status,
        &SettingsPage {
            layout: Layout::new(ctx, "Prioritisation settings", "settings"),
            days: days.unwrap_or(settings.days),
            changed: match (&settings.updated_at, &settings.updated_by) {
                (Some(at), Some(by)) => format!("changed {} by {by}", when(at)),
                _ => "the defaults".to_owned(),
            },
            rules: rule_views(&rules),
            sla_error,
            rules_error,
        },
    )
}

pub async fn settings(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
) -> Result<Response, AppError> {
    settings_page(&ctx, &state, None, None, None).await
}

/// SLA days as typed.
#[derive(Debug, Default, Deserialize)]
pub struct DaysInput {
    #[serde(default)]
    immediate: String,
    #[serde(default)]
    out_of_cycle: String,
    #[serde(default)]
    scheduled: String,
    #[serde(default)]
    defer: String,
}

impl DaysInput {
    fn parse(&self) -> Result<SlaDays, String> {
        let day = |what: &str, v: &str| {
            v.trim().parse::<u32>().map_err(|_| {
                format!("the SLA for {what} findings must be a whole number of days from 1 to 3650")
            })
        };
        Ok(SlaDays {
            immediate: day("immediate", &self.immediate)?,
            out_of_cycle: day("out-of-cycle", &self.out_of_cycle)?,
            scheduled: day("scheduled", &self.scheduled)?,
            defer: day("defer", &self.defer)?,
        })
    }
}

/// A change of the settings is stored: the re-assessment it queued is started, and the admin is
/// sent to `to`.
async fn saved(state: &AppState, to: &str) -> Result<Response, AppError> {
    crate::scheduler::start_due_jobs(state).await;
    Ok(Redirect::to(to).into_response())
}

pub async fn save_sla(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Form(input): Form<DaysInput>,
) -> Result<Response, AppError> {
    let days = match input.parse() {
        Ok(d) => d,
        Err(m) => return settings_page(&ctx, &state, None, Some(m), None).await,
    };
    match sla::set_installation_sla(
        state.store().as_ref(),
        &ctx.admin_vis(),
        days,
        &ctx.user.name,
        Utc::now(),
    )
    .await
    {
        Ok(_) => saved(&state, "/settings/prioritisation").await,
        Err(SettingsError::Invalid(m)) => {
            settings_page(&ctx, &state, Some(days), Some(m), None).await
        }
        Err(other) => Err(other.into()),
    }
}

/// A change to the rules: `add` (with the rule's fields), or `remove`, `up`, `down` (of the rule
/// at `index`).
#[derive(Debug, Default, Deserialize)]
pub struct RuleInput {
    #[serde(default)]
    action: String,
    #[serde(default)]
    index: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    matcher: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    criticality: String,
}

fn changed_rules(
    mut rules: Vec<CriticalityRule>,
    input: &RuleInput,
) -> Result<Vec<CriticalityRule>, AppError> {
    let index = || {
        input
            .index
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|i| *i < rules.len())
            .ok_or_else(|| {
                AppError::BadRequest(
                    "that rule is no longer in the list (someone changed the rules meanwhile): look again".into(),
                )
            })
    };
    match input.action.as_str() {
        "add" => {
            let rule = parse_rule(&RuleDto {
                name: input.name.clone(),
                matcher: input.matcher.clone(),
                value: input.value.clone(),
                criticality: input.criticality.clone(),
            })?;
            rules.push(rule);
        }
        "remove" => {
            let i = index()?;
            rules.remove(i);
        }
        "up" => {
            let i = index()?;
            if i > 0 {
                rules.swap(i, i - 1);
            }
        }
        "down" => {
            let i = index()?;
            if i + 1 < rules.len() {
                rules.swap(i, i + 1);
            }
        }
        _ => {
            return Err(AppError::BadRequest(
                "unknown change to the rules: add, remove, up or down".into(),
            ));
        }
    }
    Ok(rules)
}

pub async fn save_rules(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Form(input): Form<RuleInput>,
) -> Result<Response, AppError> {
    let store = state.store();
    let current: Vec<CriticalityRule> = store
        .criticality_rules()
        .await?
        .into_iter()
        .map(|r| r.rule)
        .collect();
    let rules = match changed_rules(current, &input) {
        Ok(r) => r,
        Err(AppError::BadRequest(m)) => {
            return settings_page(&ctx, &state, None, None, Some(m)).await;
        }
        Err(other) => return Err(other),
    };
    match sla::set_rules(
        store.as_ref(),
        &ctx.admin_vis(),
        &rules,
        &ctx.user.name,
        Utc::now(),
    )
    .await
    {
        Ok(_) => saved(&state, "/settings/prioritisation").await,
        Err(SettingsError::Invalid(m)) => settings_page(&ctx, &state, None, None, Some(m)).await,
        Err(other) => Err(other.into()),
    }
}

#[derive(Template)]
#[template(path = "integration_sla.html")]
struct IntegrationSlaPage {
    layout: Layout,
    id: i64,
    name: String,
    own: bool,
    days: SlaDays,
    installation: SlaDays,
    changed: String,
    error: Option<String>,
}

async fn integration_page(
    ctx: &Ctx,
    state: &AppState,
    id: i64,
    typed: Option<SlaDays>,
    error: Option<String>,
) -> Result<Response, AppError> {
    let store = state.store();
    let vis = ctx.admin_vis();
    let integration = store.get_integration(&vis, IntegrationId(id)).await?;
    let own = store.integration_sla(&vis, IntegrationId(id)).await?;
    let installation = store.sla_settings().await?.days;
    render::with_status(
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        &IntegrationSlaPage {
            layout: Layout::new(ctx, "Integration SLA", "integrations"),
            id,
            name: integration.name.to_string(),
            own: own.is_some(),
            days: typed.unwrap_or(own.as_ref().map_or(installation, |o| o.days)),
            installation,
            changed: own
                .as_ref()
                .map(|o| format!("changed {} by {}", when(&o.updated_at), o.updated_by))
                .unwrap_or_default(),
            error,
        },
    )
}

pub async fn integration_form(
    WorkspaceAdminCtx(ctx): WorkspaceAdminCtx,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    integration_page(&ctx, &state, id, None, None).await
}

/// The integration's own SLA as typed; `use_installation` removes it.
#[derive(Debug, Default, Deserialize)]
pub struct IntegrationSlaInput {
    #[serde(default)]
    use_installation: String,
    #[serde(flatten)]
    days: DaysInput,
}

pub async fn integration_save(
    WorkspaceAdminCtx(ctx): WorkspaceAdminCtx,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Form(input): Form<IntegrationSlaInput>,
) -> Result<Response, AppError> {
    let days = if input.use_installation.is_empty() {
        match input.days.parse() {
            Ok(d) => Some(d),
            Err(m) => return integration_page(&ctx, &state, id, None, Some(m)).await,
        }
    } else {
        None
    };
    match sla::set_integration_sla(
        state.store().as_ref(),
        &ctx.admin_vis(),
        IntegrationId(id),
        days,
        &ctx.user.name,
        Utc::now(),
    )
    .await
    {
        Ok(_) => saved(&state, &format!("/integrations/{id}/sla")).await,
        Err(SettingsError::Invalid(m)) => integration_page(&ctx, &state, id, days, Some(m)).await,
        Err(other) => Err(other.into()),
    }
}
