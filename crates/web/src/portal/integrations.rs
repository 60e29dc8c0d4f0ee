//! Management → Integrations: list, add, edit, test connection, sync now, run history.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, Utc};
use rampart_model::{Integration, IntegrationId, SyncRun, WorkspaceId};
use rampart_store::{Job, JobKind, JobState};
use rampart_sync::integrations::{
    IntegrationError, IntegrationInput, Integrations, SecretExpiry, secret_expiry,
};
use rampart_sync::{ConnectionReport, StepOutcome};
use serde::Deserialize;

use crate::auth::extract::{Ctx, WorkspaceAdminCtx};
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::render::{self, when, when_opt};
use crate::scheduler::{SyncNowOutcome, next_run};
use crate::state::AppState;

/// The form as posted. Every field is text; [`IntegrationInput`] checks them.
#[derive(Debug, Default, Deserialize)]
pub struct IntegrationForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    cloud: String,
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    secret_expires: String,
    #[serde(default)]
    login_url: String,
    #[serde(default)]
    api_url: String,
    #[serde(default)]
    schedule_minutes: String,
    #[serde(default)]
    enabled: Option<String>,
    /// Adding only: the workspace's id (empty: the current one).
    #[serde(default)]
    workspace: String,
}

impl IntegrationForm {
    fn input(self) -> IntegrationInput {
        IntegrationInput {
            name: self.name,
            product: self.product,
            cloud: self.cloud,
            tenant_id: self.tenant_id,
            client_id: self.client_id,
            client_secret: (!self.client_secret.is_empty())
                .then(|| secrecy::SecretString::from(self.client_secret)),
            secret_expires: self.secret_expires,
            login_url: self.login_url,
            api_url: self.api_url,
            schedule_minutes: self.schedule_minutes,
            enabled: self.enabled.is_some(),
        }
    }
}

/// What the form shows (never the secret: only its hint).
#[derive(Debug, Clone, Default)]
struct FormView {
    name: String,
    product: String,
    cloud: String,
    tenant_id: String,
    client_id: String,
    secret_hint: Option<String>,
    secret_expires: String,
    login_url: String,
    api_url: String,
    schedule_minutes: String,
    enabled: bool,
}

impl FormView {
    fn blank() -> Self {
        Self {
            product: "endpoint".into(),
            cloud: "commercial".into(),
            // Empty: the product's default (Endpoint every 6 h, Cloud every 8 h).
            schedule_minutes: String::new(),
            enabled: true,
            ..Self::default()
        }
    }

    fn of(i: &Integration) -> Self {
        Self {
            name: i.name.to_string(),
            product: i.product.as_str().into(),
            cloud: i.cloud.as_str().into(),
            tenant_id: i.tenant_id.to_string(),
            client_id: i.client_id.to_string(),
            secret_hint: Some(i.secret_hint.masked()),
            secret_expires: i
                .secret_hint
                .expires_on
                .map(|d| d.to_string())
                .unwrap_or_default(),
            login_url: i.login_url.clone().unwrap_or_default(),
            api_url: i.api_url.clone().unwrap_or_default(),
            schedule_minutes: i.schedule_minutes.to_string(),
            enabled: i.enabled,
        }
    }

    fn from_input(input: &IntegrationInput, hint: Option<String>) -> Self {
        Self {
            name: input.name.clone(),
            product: input.product.clone(),
            cloud: input.cloud.clone(),
            tenant_id: input.tenant_id.clone(),
            client_id: input.client_id.clone(),
            secret_hint: hint,
            secret_expires: input.secret_expires.clone(),
            login_url: input.login_url.clone(),
            api_url: input.api_url.clone(),
            schedule_minutes: input.schedule_minutes.clone(),
            enabled: input.enabled,
        }
    }
}

struct Row {
    id: IntegrationId,
    name: String,
    /// The workspace's name (shown when the account sees several).
    workspace: String,
    product: &'static str,
    cloud: &'static str,
    status: String,
    last_run: String,
    next_run: String,
    warning: Option<String>,
}

struct RunView {
    id: i64,
    started: String,
    finished: String,
    status: &'static str,
    mode: String,
    verdict: String,
    assets: String,
    findings: String,
    vulnerabilities: String,
    /// Shown only for Cloud integrations.
    recommendations: String,
    api_calls: u64,
    error: String,
    /// Records skipped as unreadable, with their ids; empty when none.
    odd: String,
}

/// "2 records skipped as unreadable: odd-1, odd-2" (empty when none).
fn odd_records(o: &rampart_model::OddRecords) -> String {
    if o.count == 0 {
        return String::new();
    }
    let what = if o.count == 1 { "record" } else { "records" };
    let mut s = format!("{} {what} skipped as unreadable", o.count);
    if !o.ids.is_empty() {
        s.push_str(": ");
        s.push_str(&o.ids.join(", "));
        if (o.ids.len() as u64) < o.count {
            s.push_str(", …");
        }
    }
    if let Some(e) = &o.first_error {
        s.push_str(&format!(" (first: {e})"));
    }
    s
}

impl RunView {
    fn of(r: &SyncRun) -> Self {
        let counts = |c: &rampart_model::EntityCounts| {
            format!(
                "{} read, {} new, {} updated, {} resolved",
                c.read, c.new, c.updated, c.resolved
            )
        };
        Self {
            id: r.id.get(),
            started: when(&r.started_at),
            finished: when_opt(&r.finished_at),
            status: r.status.as_str(),
            mode: r.mode.clone(),
            verdict: match &r.verdict {
                None => "—".into(),
                Some(rampart_model::Verdict::Complete) => "complete".into(),
                Some(rampart_model::Verdict::Incomplete(why)) => format!("incomplete: {why}"),
                Some(rampart_model::Verdict::Held(why)) => format!("held: {why}"),
            },
            assets: counts(&r.assets),
            findings: counts(&r.findings),
            vulnerabilities: counts(&r.vulnerabilities),
            recommendations: counts(&r.recommendations),
            api_calls: r.api_calls,
            error: r.error.clone().unwrap_or_default(),
            odd: odd_records(&r.odd_records),
        }
    }
}

struct StepView {
    mark: &'static str,
    class: &'static str,
    name: &'static str,
    detail: String,
    fix: String,
}

fn steps(report: &ConnectionReport) -> Vec<StepView> {
    report
        .steps
        .iter()
        .map(|s| {
            let (mark, class) = match s.outcome {
                StepOutcome::Passed => ("✓", "ok"),
                StepOutcome::Warning => ("⚠", "warn"),
                StepOutcome::Failed => ("✗", "fail"),
                StepOutcome::Skipped => ("–", "skip"),
            };
            StepView {
                mark,
                class,
                name: s.name,
                detail: s.detail.clone(),
                fix: s.fix.clone().unwrap_or_default(),
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "integrations.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "integration_form.html")]
struct FormPage {
    layout: Layout,
    action: String,
    form: FormView,
    errors: Vec<String>,
    clouds: Vec<(&'static str, &'static str)>,
    /// The workspaces the account may add to (id, name), and the one chosen.
    workspaces: Vec<(i64, String)>,
    workspace: i64,
}

impl FormPage {
    fn is_workspace(&self, id: &i64) -> bool {
        self.workspace == *id
    }
}

/// The workspaces `admin` may add integrations to, by name.
fn addable(admin: &WorkspaceAdminCtx) -> Vec<(i64, String)> {
    let vis = admin.0.admin_vis();
    admin
        .0
        .switchable
        .iter()
        .filter(|(id, _)| vis.allows(*id))
        .map(|(id, name)| (id.0, name.clone()))
        .collect()
}

#[derive(Template)]
#[template(path = "integration.html")]
struct ShowPage {
    layout: Layout,
    /// The account may change this integration (an admin of its workspace, or a global admin).
    editable: bool,
    id: IntegrationId,
    name: String,
    product: &'static str,
    /// A Defender for Cloud integration: its runs also count recommendations.
    posture: bool,
    cloud: &'static str,
    secret_hint: String,
    warning: Option<String>,
    next_run: String,
    notice: Option<&'static str>,
    form: FormView,
    errors: Vec<String>,
    clouds: Vec<(&'static str, &'static str)>,
    report: Option<Vec<StepView>>,
    report_passed: bool,
    runs: Vec<RunView>,
    jobs: Vec<JobView>,
    running: bool,
}

struct JobView {
    id: i64,
    state: &'static str,
    kind: &'static str,
    due: String,
    worker: String,
    attempts: u64,
    ended: String,
    error: String,
}

impl JobView {
    fn of(j: &Job) -> Self {
        Self {
            id: j.id,
            state: j.state.as_str(),
            kind: match j.kind {
                JobKind::Scheduled => "scheduled",
                JobKind::Requested => "requested",
                JobKind::Reassess => "re-assessment",
            },
            due: when(&j.run_at),
            // The worker's host and process id; the rest of its name only tells processes apart.
            worker: j
                .claimed_by
                .as_deref()
                .map(|w| {
                    let parts: Vec<&str> = w.split(':').collect();
                    match parts.as_slice() {
                        [host, _, pid, ..] => format!("{host} (pid {pid})"),
                        _ => w.to_owned(),
                    }
                })
                .unwrap_or_else(|| "—".into()),
            attempts: j.attempts,
            ended: if j.is_active() {
                "—".into()
            } else {
                when_opt(&j.heartbeat_at)
            },
            error: j.last_error.clone().unwrap_or_default(),
        }
    }
}

/// A warning when the client secret expires soon or has expired, saying what to do here.
fn expiry_warning(i: &Integration, today: NaiveDate) -> Option<String> {
    Some(match secret_expiry(i, today)? {
        SecretExpiry::Expired { days_ago } => format!(
            "The client secret expired {days_ago} days ago: create a new one in Entra and save it here."
        ),
        SecretExpiry::Soon { days } => format!(
            "The client secret expires in {days} days: create a new one in Entra and save it here before then."
        ),
    })
}

fn clouds() -> Vec<(&'static str, &'static str)> {
    rampart_model::Cloud::ALL
        .iter()
        .map(|c| (c.as_str(), c.label()))
        .collect()
}

/// "Next run" of an integration: its active job, else what the schedule says.
fn next_run_words(
    i: &Integration,
    active: Option<&Job>,
    last_start: Option<DateTime<Utc>>,
) -> String {
    match active {
        Some(j) if j.state == JobState::Running => {
            format!("running since {}", when(&j.claimed_at.unwrap_or(j.run_at)))
        }
        Some(j) if j.kind == JobKind::Requested => format!("{} (requested)", when(&j.run_at)),
        Some(j) => when(&j.run_at),
        None if i.enabled => when(&next_run(i, last_start)),
        None => "—".into(),
    }
}

pub async fn list(ctx: Ctx, State(state): State<AppState>) -> Result<Response, AppError> {
    let vis = ctx.vis();
    let today = Utc::now().date_naive();
    let active = state.store().list_jobs(&vis, None, true, 1000).await?;
    let mut rows = Vec::new();
    for i in state.store().list_integrations(&vis).await? {
        let last = state.store().list_runs(&vis, i.id, 1).await?;
        let last = last.first();
        let job = active.iter().find(|j| j.integration_id == i.id);
        rows.push(Row {
            id: i.id,
            name: i.name.to_string(),
            workspace: ctx
                .switchable
                .iter()
                .find(|(w, _)| *w == i.workspace_id)
                .map(|(_, name)| name.clone())
                .unwrap_or_default(),
            product: i.product.label(),
            cloud: i.cloud.label(),
            status: match (i.enabled, last) {
                (false, _) => "disabled".into(),
                (true, None) => "never synced".into(),
                (true, Some(r)) => r.status.as_str().into(),
            },
            last_run: last.map(|r| when(&r.started_at)).unwrap_or("—".into()),
            next_run: next_run_words(&i, job, last.map(|r| r.started_at)),
            warning: expiry_warning(&i, today),
        });
    }
    render::page(&ListPage {
        layout: Layout::new(&ctx, "Integrations", "integrations"),
        rows,
    })
}

pub async fn new_form(admin: WorkspaceAdminCtx) -> Result<Response, AppError> {
    let workspace = admin.new_integration_workspace().map_or(0, |w| w.0);
    render::page(&FormPage {
        layout: Layout::new(&admin.0, "Add integration", "integrations"),
        action: "/integrations".into(),
        form: FormView::blank(),
        errors: vec![],
        clouds: clouds(),
        workspaces: addable(&admin),
        workspace,
    })
}

pub async fn create(
    admin: WorkspaceAdminCtx,
    State(state): State<AppState>,
    Form(form): Form<IntegrationForm>,
) -> Result<Response, AppError> {
    // The workspace chosen on the form (default: the current one). One the account may not add
    // to is answered as one that does not exist.
    let workspace = match form.workspace.trim() {
        "" => admin
            .new_integration_workspace()
            .ok_or_else(|| AppError::Forbidden("you are not an admin of any workspace".into()))?,
        raw => raw
            .parse::<i64>()
            .ok()
            .map(WorkspaceId)
            .filter(|w| admin.0.admin_vis().allows(*w))
            .ok_or_else(|| AppError::NotFound("no such workspace".into()))?,
    };
    let workspaces = addable(&admin);
    let ctx = admin.0;
    let input = form.input();
    match Integrations::new(&state.engine)
        .add_in(&input, workspace, &ctx.user.name)
        .await
    {
        Ok(i) => Ok(Redirect::to(&format!("/integrations/{}?notice=saved", i.id)).into_response()),
        Err(IntegrationError::Invalid(problems)) => render::with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &FormPage {
                layout: Layout::new(&ctx, "Add integration", "integrations"),
                action: "/integrations".into(),
                form: FormView::from_input(&input, None),
                errors: problems.on_form(),
                clouds: clouds(),
                workspaces,
                workspace: workspace.0,
            },
        ),
        Err(other) => Err(other.into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct ShowQuery {
    notice: Option<String>,
}

fn notice(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "saved" => Some("Saved."),
        "sync-started" => {
            Some("Sync started: its job and its run appear below and update as they go.")
        }
        "sync-queued" => Some(
            "Sync queued: a worker starts it shortly (after any running sync of the same app registration); its job and run appear below.",
        ),
        "sync-running" => Some("A sync of this integration is already running."),
        _ => None,
    }
}

async fn show_page(
    state: &AppState,
    ctx: &Ctx,
    integration: Integration,
    form: Option<(FormView, Vec<String>)>,
    report: Option<ConnectionReport>,
    notice: Option<&'static str>,
) -> Result<ShowPage, AppError> {
    let vis = ctx.vis();
    let runs = state.store().list_runs(&vis, integration.id, 20).await?;
    let jobs = state
        .store()
        .list_jobs(&vis, Some(integration.id), false, 10)
        .await?;
    let active = jobs.iter().find(|j| j.is_active());
    let (form, errors) = form.unwrap_or_else(|| (FormView::of(&integration), vec![]));
    Ok(ShowPage {
        layout: Layout::new(ctx, integration.name.as_str(), "integrations"),
        editable: ctx.admin_vis().allows(integration.workspace_id),
        id: integration.id,
        name: integration.name.to_string(),
        product: integration.product.label(),
        posture: integration.product == rampart_model::Product::Cloud,
        cloud: integration.cloud.label(),
        secret_hint: integration.secret_hint.masked(),
        warning: expiry_warning(&integration, Utc::now().date_naive()),
        next_run: match (active, integration.enabled) {
            (None, false) => "not scheduled (syncs on schedule is off)".into(),
            (job, _) => next_run_words(&integration, job, runs.first().map(|r| r.started_at)),
        },
        notice,
        form,
        errors,
        clouds: clouds(),
        report_passed: report.as_ref().is_some_and(ConnectionReport::passed),
        report: report.as_ref().map(steps),
        // A sync just started may not have recorded its run yet: this process knows it started.
        running: runs
            .iter()
            .any(|r| r.status == rampart_model::RunStatus::Running)
            || state.is_syncing(integration.id)
            || active.is_some_and(|j| j.state == JobState::Running || j.run_at <= Utc::now()),
        jobs: jobs.iter().map(JobView::of).collect(),
        runs: runs.iter().map(RunView::of).collect(),
    })
}

pub async fn show(
    ctx: Ctx,
    State(state): State<AppState>,
    Path(id): Path<IntegrationId>,
    Query(q): Query<ShowQuery>,
) -> Result<Response, AppError> {
    let vis = ctx.vis();
    let integration = state.store().get_integration(&vis, id).await?;
    let page = show_page(
        &state,
        &ctx,
        integration,
        None,
        None,
        notice(q.notice.as_deref()),
    )
    .await?;
    render::page(&page)
}

pub async fn update(
    WorkspaceAdminCtx(ctx): WorkspaceAdminCtx,
    State(state): State<AppState>,
    Path(id): Path<IntegrationId>,
    Form(form): Form<IntegrationForm>,
) -> Result<Response, AppError> {
    // Only integrations of workspaces the account is an admin of: others are not found.
    let existing = state.store().get_integration(&ctx.admin_vis(), id).await?;
    let input = form.input();
    match Integrations::new(&state.engine)
        .update(&existing, &input, &ctx.user.name)
        .await
    {
        Ok(i) => Ok(Redirect::to(&format!("/integrations/{}?notice=saved", i.id)).into_response()),
        Err(IntegrationError::Invalid(problems)) => {
            let view = FormView::from_input(&input, Some(existing.secret_hint.masked()));
            let form = Some((view, problems.on_form()));
            let page = show_page(&state, &ctx, existing, form, None, None).await?;
            render::with_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn test(
    WorkspaceAdminCtx(ctx): WorkspaceAdminCtx,
    State(state): State<AppState>,
    Path(id): Path<IntegrationId>,
) -> Result<Response, AppError> {
    let integration = state.store().get_integration(&ctx.admin_vis(), id).await?;
    let report = Integrations::new(&state.engine)
        .test(&integration, &ctx.user.name)
        .await?;
    let page = show_page(&state, &ctx, integration, None, Some(report), None).await?;
    render::page(&page)
}

pub async fn sync_now(
    WorkspaceAdminCtx(ctx): WorkspaceAdminCtx,
    State(state): State<AppState>,
    Path(id): Path<IntegrationId>,
) -> Result<Response, AppError> {
    let integration = state.store().get_integration(&ctx.admin_vis(), id).await?;
    let code = match crate::scheduler::sync_now(&state, &integration, &ctx.user.name).await? {
        SyncNowOutcome::Started => "sync-started",
        SyncNowOutcome::Queued => "sync-queued",
        SyncNowOutcome::AlreadyRunning => "sync-running",
    };
    Ok(Redirect::to(&format!("/integrations/{id}?notice={code}")).into_response())
}

pub async fn delete(
    WorkspaceAdminCtx(ctx): WorkspaceAdminCtx,
    State(state): State<AppState>,
    Path(id): Path<IntegrationId>,
) -> Result<Response, AppError> {
    let integration = state.store().get_integration(&ctx.admin_vis(), id).await?;
    Integrations::new(&state.engine)
        .remove(&integration, &ctx.user.name)
        .await?;
    Ok(Redirect::to("/integrations").into_response())
}
