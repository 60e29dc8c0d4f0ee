//! `/api/v1/webhooks`: outgoing alerts (docs/webhooks.md). Every route takes an admin-scope
//! token; a workspace token sees and changes only its workspace's webhooks. Changes are audited
//! (rampart_sync::webhooks). A webhook's URL is never returned, only its scheme and host; a
//! generic webhook's signing secret is returned once, by the POST that creates it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use rampart_model::WorkspaceId;
use rampart_model::export::rfc3339;
use rampart_store::{StoredDelivery, StoredWebhook, Visibility};
use rampart_sync::webhooks::{self, WebhookRequest};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::tokens::ApiAdmin;
use crate::error::{ApiError, AppError, Problem};
use crate::state::AppState;

/// The most deliveries one listing returns (newest first).
const MAX_DELIVERIES: u32 = 200;

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookOut {
    pub id: i64,
    /// Absent: the events of every workspace.
    pub workspace_id: Option<i64>,
    pub name: String,
    /// `generic`, `teams` or `slack`.
    pub format: String,
    /// The URL's scheme and host only: the rest is a credential for Teams and Slack.
    pub url: String,
    /// `immediate_finding`, `sla_breach`, `sync_failed`, `secret_expiring`.
    pub events: Vec<String>,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: String,
    /// The newest delivery's status: `pending`, `delivered` or `failed`.
    pub last_delivery: Option<String>,
}

impl From<&StoredWebhook> for WebhookOut {
    fn from(w: &StoredWebhook) -> Self {
        Self {
            id: w.id,
            workspace_id: w.workspace_id.map(|w| w.0),
            name: w.name.clone(),
            format: w.format.as_str().into(),
            url: w.url_shown.clone(),
            events: w.events.iter().map(|e| e.as_str().to_owned()).collect(),
            enabled: w.enabled,
            created_by: w.created_by.clone(),
            created_at: rfc3339(&w.created_at),
            last_delivery: w.last_delivery.map(|s| s.as_str().to_owned()),
        }
    }
}

/// A webhook just created.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: WebhookOut,
    /// The generic format's signing secret (HMAC-SHA256 key of `X-Rampart-Signature`): shown
    /// this once, keep it with the receiver.
    pub signing_secret: Option<String>,
}

/// A webhook to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookIn {
    pub name: String,
    /// HTTPS (plain HTTP only to this machine). Never shown again.
    pub url: String,
    /// `generic` (the default), `teams` or `slack`.
    pub format: Option<String>,
    /// `immediate_finding`, `sla_breach`, `sync_failed`, `secret_expiring`.
    pub events: Vec<String>,
    /// The workspace whose events it receives; absent: the token's workspace, or every
    /// workspace for a global token.
    pub workspace_id: Option<i64>,
    /// Absent: enabled.
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    pub attempt: u32,
    pub at: String,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    pub id: i64,
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<String>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub log: Vec<AttemptOut>,
}

impl From<&StoredDelivery> for DeliveryOut {
    fn from(d: &StoredDelivery) -> Self {
        Self {
            id: d.id,
            event: d.kind.as_str().into(),
            status: d.status.as_str().into(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.as_ref().map(rfc3339),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            created_at: rfc3339(&d.created_at),
            delivered_at: d.delivered_at.as_ref().map(rfc3339),
            log: d
                .log
                .iter()
                .map(|a| AttemptOut {
                    attempt: a.attempt,
                    at: rfc3339(&a.at),
                    http_status: a.http_status,
                    error: a.error.clone(),
                })
                .collect(),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = [WebhookOut]), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_webhooks(
    admin: ApiAdmin,
    State(state): State<AppState>,
) -> Result<Json<Vec<WebhookOut>>, ApiError> {
    let listed = webhooks::list(state.store().as_ref(), &admin.vis()).await?;
    Ok(Json(listed.iter().map(WebhookOut::from).collect()))
}

#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = WebhookIn,
    responses((status = 201, body = WebhookCreated), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn create_webhook(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Json(body): Json<WebhookIn>,
) -> Result<(StatusCode, Json<WebhookCreated>), ApiError> {
    let vis = admin.vis();
    let workspace = match (body.workspace_id, admin.0.workspace) {
        (Some(w), _) => Some(WorkspaceId(w)),
        (None, Some(w)) => Some(w),
        (None, None) => None,
    };
    let request = WebhookRequest {
        workspace,
        name: body.name,
        url: SecretString::from(body.url),
        format: webhooks::parse_format(body.format.as_deref().unwrap_or("generic"))?,
        events: webhooks::parse_events(body.events.iter().map(String::as_str))?,
    };
    let actor = format!("api:{}", admin.0.name);
    let now = Utc::now();
    let store = state.store().as_ref();
    let created =
        webhooks::create(store, state.engine.vault(), &vis, &request, &actor, now).await?;
    let mut webhook = created.webhook;
    if body.enabled == Some(false) {
        webhook = webhooks::set_enabled(store, &vis, webhook.id, false, &actor, now).await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(WebhookCreated {
            webhook: WebhookOut::from(&webhook),
            signing_secret: created.signing_secret.map(|s| s.expose_secret().to_owned()),
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path)),
    responses((status = 200, description = "removed", body = WebhookOut), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub async fn delete_webhook(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<WebhookOut>, ApiError> {
    let actor = format!("api:{}", admin.0.name);
    let removed =
        webhooks::remove(state.store().as_ref(), &admin.vis(), id, &actor, Utc::now()).await?;
    Ok(Json(WebhookOut::from(&removed)))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "webhooks",
    params(("id" = i64, Path)),
    responses((status = 200, description = "sent once; the delivery as it stands", body = DeliveryOut),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn test_webhook(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<DeliveryOut>, ApiError> {
    let delivery = send_test(&state, &admin.vis(), id, &format!("api:{}", admin.0.name)).await?;
    Ok(Json(DeliveryOut::from(&delivery)))
}

/// "Send test", for the API and the portal.
pub(crate) async fn send_test(
    state: &AppState,
    vis: &Visibility,
    id: i64,
    actor: &str,
) -> Result<StoredDelivery, AppError> {
    let engine = &state.engine;
    Ok(webhooks::send_test(
        engine.store().as_ref(),
        engine.vault(),
        engine.webhooks(),
        vis,
        id,
        actor,
        Utc::now(),
    )
    .await?)
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = i64, Path)),
    responses((status = 200, description = "newest first, with every attempt", body = [DeliveryOut]),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn list_deliveries(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Vec<DeliveryOut>>, ApiError> {
    let listed =
        webhooks::deliveries(state.store().as_ref(), &admin.vis(), id, MAX_DELIVERIES).await?;
    Ok(Json(listed.iter().map(DeliveryOut::from).collect()))
}
