//! Webhooks (outgoing alerts, docs/webhooks.md): the list with the form that adds one, enable,
//! disable, remove, "Send test", and each webhook's delivery log. For administrators: a
//! workspace admin sees and changes its workspaces' webhooks, a global admin all of them and
//! those of every workspace. Checks and audit entries are rampart_sync::webhooks'.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use rampart_model::WorkspaceId;
use rampart_store::{StoredDelivery, StoredWebhook, Visibility, WebhookEventKind};
use rampart_sync::webhooks::{self, WebhookError, WebhookRequest};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::auth::extract::{Ctx, WorkspaceAdminCtx};
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::render::{self, when};
use crate::state::AppState;

/// Deliveries the log shows (newest first).
const LOGGED: u32 = 100;

pub struct WebhookRow {
    pub id: i64,
    pub name: String,
    pub workspace: String,
    pub format: &'static str,
    pub url: String,
    pub events: String,
    pub enabled: bool,
    pub last_delivery: &'static str,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    layout: Layout,
    rows: Vec<WebhookRow>,
    /// (value, label) of the workspaces a webhook may be for; "" is every workspace.
    workspaces: Vec<(String, String)>,
    events: Vec<(&'static str, bool)>,
    input: WebhookInput,
    /// The signing secret of the webhook just added, shown once.
    created_secret: Option<String>,
    created_name: Option<String>,
    error: Option<String>,
}

pub struct AttemptRow {
    pub attempt: u32,
    pub at: String,
    pub status: String,
    pub error: String,
}

pub struct DeliveryRow {
    pub id: i64,
    pub event: &'static str,
    pub status: &'static str,
    pub created: String,
    pub next: String,
    pub attempts: Vec<AttemptRow>,
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    layout: Layout,
    webhook: WebhookRow,
    deliveries: Vec<DeliveryRow>,
    notice: Option<String>,
}

/// The form as typed.
#[derive(Debug, Default, Deserialize)]
pub struct WebhookInput {
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    workspace: String,
    #[serde(default)]
    immediate_finding: Option<String>,
    #[serde(default)]
    sla_breach: Option<String>,
    #[serde(default)]
    sync_failed: Option<String>,
    #[serde(default)]
    secret_expiring: Option<String>,
}

impl WebhookInput {
    fn events(&self) -> Vec<&'static str> {
        [
            (WebhookEventKind::ImmediateFinding, &self.immediate_finding),
            (WebhookEventKind::SlaBreach, &self.sla_breach),
            (WebhookEventKind::SyncFailed, &self.sync_failed),
            (WebhookEventKind::SecretExpiring, &self.secret_expiring),
        ]
        .into_iter()
        .filter(|(_, on)| on.is_some())
        .map(|(k, _)| k.as_str())
        .collect()
    }
}

/// What the pages show: the webhooks of the workspaces the account administers, narrowed to the
/// session's workspace.
fn vis(ctx: &Ctx) -> Visibility {
    let admin = ctx.admin_vis();
    match ctx.workspace {
        Some(w) => admin.within(w),
        None => admin,
    }
}

fn row(w: &StoredWebhook, names: &[(WorkspaceId, String)]) -> WebhookRow {
    WebhookRow {
        id: w.id,
        name: w.name.clone(),
        workspace: match w.workspace_id {
            None => "all workspaces".to_owned(),
            Some(id) => names
                .iter()
                .find(|(w, _)| *w == id)
                .map_or_else(|| id.to_string(), |(_, n)| n.clone()),
        },
        format: w.format.as_str(),
        url: w.url_shown.clone(),
        events: w
            .events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        enabled: w.enabled,
        last_delivery: w.last_delivery.map_or("none yet", |s| s.as_str()),
    }
}

fn delivery_row(d: &StoredDelivery) -> DeliveryRow {
    DeliveryRow {
        id: d.id,
        event: d.kind.as_str(),
        status: d.status.as_str(),
        created: when(&d.created_at),
        next: d.next_attempt_at.as_ref().map(when).unwrap_or_default(),
        attempts: d
            .log
            .iter()
            .map(|a| AttemptRow {
                attempt: a.attempt,
                at: when(&a.at),
                status: a
                    .http_status
                    .map_or_else(|| "no answer".to_owned(), |s| s.to_string()),
                error: a.error.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// The workspaces a webhook may be for: every one for a global admin (and "all"), those it
/// administers otherwise.
fn workspace_choices(ctx: &Ctx) -> Vec<(String, String)> {
    let admin = ctx.admin_vis();
    let mut choices = Vec::new();
    if ctx.is_admin() {
        choices.push((String::new(), "All workspaces".to_owned()));
    }
    choices.extend(
        ctx.switchable
            .iter()
            .filter(|(w, _)| admin.allows(*w))
            .map(|(w, n)| (w.0.to_string(), n.clone())),
    );
    choices
}

async fn list_page(
    ctx: &Ctx,
    state: &AppState,
    input: WebhookInput,
    created: Option<(String, Option<String>)>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let listed = webhooks::list(state.store().as_ref(), &vis(ctx)).await?;
    let rows = listed.iter().map(|w| row(w, &ctx.switchable)).collect();
    let chosen = input.events();
    let fresh = created.is_some() || (input.name.is_empty() && error.is_none());
    let events = WebhookEventKind::SUBSCRIBABLE
        .iter()
        .map(|k| (k.as_str(), fresh || chosen.contains(&k.as_str())))
        .collect();
    let (created_name, created_secret) = match created {
        Some((name, secret)) => (Some(name), secret),
        None => (None, None),
    };
    render::with_status(
        status,
        &WebhooksPage {
            layout: Layout::new(ctx, "Webhooks", "webhooks"),
            rows,
            workspaces: workspace_choices(ctx),
            events,
            // A URL typed is never sent back into the page: it is a credential.
            input: WebhookInput {
                url: String::new(),
                ..input
            },
            created_secret,
            created_name,
            error,
        },
    )
}

pub async fn list(
    WorkspaceAdminCtx(ctx): WorkspaceAdminCtx,
    State(state): State<AppState>,
) -> Result<Response, AppError> {
    list_page(
        &ctx,
        &state,
        WebhookInput::default(),
        None,
        None,
        StatusCode::OK,
    )
    .await
}

pub async fn create(
    WorkspaceAdminCtx(ctx): WorkspaceAdminCtx,
    State(state): State<AppState>,
    Form(input): Form<WebhookInput>,
) -> Result<Response, AppError> {
    let request = match request(&input) {
        Ok(r) => r,
        Err(m) => {
            return list_page(&ctx, &state, input, None, Some(m), StatusCode::BAD_REQUEST).await;
        }
    };
    match webhooks::create(
        state.store().as_ref(),
        state.engine.vault(),
        &ctx.admin_vis(),
        &request,
        &ctx.user.name,
        Utc::now(),
    )
    .await
    {
        Ok(created) => {
            let secret = created.signing_secret.map(|s| s.expose_secret().to_owned());
            list_page(
                &ctx,
                &state,
                WebhookInput::default(),
                Some((created.webhook.name, secret)),
                None,
                StatusCode::OK,
            )
            .await
        }
        Err(WebhookError::Invalid(m) | WebhookError::Conflict(m)) => {
            list_page(&ctx, &state, input, None, Some(m), StatusCode::BAD_REQUEST).await
        }
        Err(other) => Err(other.into()),
    }
}

fn request(input: &WebhookInput) -> Result<WebhookRequest, String> {
    let workspace = match input.workspace.trim() {
        "" => None,
        w => {
            Some(WorkspaceId(w.parse::<i64>().map_err(|_| {
                "choose a workspace from the list".to_owned()
            })?))
        }
    };
    let format = if input.format.trim().is_empty() {
        "generic"
    } else {
        input.format.as_str()
    };
    Ok(WebhookRequest {
        workspace,
        name: input.name.clone(),
        url: SecretString::from(input.url.clone()),
        format: webhooks::parse_format(format).map_err(|e| e.to_string())?,
        events: webhooks::parse_events(input.events()).map_err(|e| e.to_string())?,
    })
}

async fn detail(
    ctx: &Ctx,
    state: &AppState,
    id: i64,
    notice: Option<String>,
) -> Result<Response, AppError> {
    let vis = ctx.admin_vis();
    let store = state.store().as_ref();
    let webhook = store.get_webhook(&vis, id).await?;
    let deliveries = webhooks::deliveries(store, &vis, id, LOGGED).await?;
    render::page(&WebhookPage {
        layout: Layout::new(ctx, &format!("Webhook {}", webhook.name), "webhooks"),
        webhook: row(&webhook, &ctx.switchable),
        deliveries: deliveries.iter().map(delivery_row).collect(),
        notice,
    })
}

pub async fn show(
    WorkspaceAdminCtx(ctx): WorkspaceAdminCtx,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    detail(&ctx, &state, id, None).await
}

#[derive(Debug, Deserialize)]
pub struct EnabledForm {
    #[serde(default)]
    enabled: String,
}

pub async fn set_enabled(
    WorkspaceAdminCtx(ctx): WorkspaceAdminCtx,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Form(form): Form<EnabledForm>,
) -> Result<Response, AppError> {
    let enabled = match form.enabled.as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(AppError::BadRequest("enabled must be true or false".into()));
        }
    };
    webhooks::set_enabled(
        state.store().as_ref(),
        &ctx.admin_vis(),
        id,
        enabled,
        &ctx.user.name,
        Utc::now(),
    )
    .await?;
    Ok(Redirect::to("/webhooks").into_response())
}

pub async fn delete(
    WorkspaceAdminCtx(ctx): WorkspaceAdminCtx,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    webhooks::remove(
        state.store().as_ref(),
        &ctx.admin_vis(),
        id,
        &ctx.user.name,
        Utc::now(),
    )
    .await?;
    Ok(Redirect::to("/webhooks").into_response())
}

pub async fn test(
    WorkspaceAdminCtx(ctx): WorkspaceAdminCtx,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let delivery =
        crate::api::webhooks::send_test(&state, &ctx.admin_vis(), id, &ctx.user.name).await?;
    let notice = match delivery.log.last() {
        Some(a) if delivery.status == rampart_store::DeliveryStatus::Delivered => format!(
            "Test sent: the receiver answered HTTP {}.",
            a.http_status.unwrap_or(0)
        ),
        Some(a) => format!(
            "Test not delivered: {}. It is retried like any alert.",
            a.error.as_deref().unwrap_or("no answer")
        ),
        None => "Test queued.".to_owned(),
    };
    detail(&ctx, &state, id, Some(notice)).await
}
