//! `/api/v1/integrations`: list, create, read, change, remove, test, sync, runs.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use rampart_model::{IntegrationId, WorkspaceId};
use rampart_sync::integrations::{IntegrationInput, Integrations};
use secrecy::SecretString;
use serde::Deserialize;

use crate::api::dto::{IntegrationIn, IntegrationOut, RunOut, SyncStartedOut, TestReportOut};
use crate::auth::tokens::{ApiAdmin, ApiReader};
use crate::error::{ApiError, AppError, Problem};
use crate::scheduler::SyncNowOutcome;
use crate::state::AppState;

fn actor(token: &rampart_store::ApiToken) -> String {
    format!("api:{}", token.name)
}

#[utoipa::path(get, path = "/api/v1/integrations", tag = "integrations",
    responses((status = 200, body = [IntegrationOut]), (status = 401, body = Problem)))]
pub async fn list(
    t: ApiReader,
    State(state): State<AppState>,
) -> Result<Json<Vec<IntegrationOut>>, ApiError> {
    let all = state.store().list_integrations(&t.vis()).await?;
    Ok(Json(all.iter().map(IntegrationOut::from).collect()))
}

#[utoipa::path(post, path = "/api/v1/integrations", tag = "integrations", request_body = IntegrationIn,
    responses((status = 201, body = IntegrationOut), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn create(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Json(body): Json<IntegrationIn>,
) -> Result<(StatusCode, Json<IntegrationOut>), ApiError> {
    let workspace = body
        .workspace_id
        .map(WorkspaceId)
        .or(admin.0.workspace)
        .unwrap_or(WorkspaceId::DEFAULT);
    // A workspace the token may not change is answered as one that does not exist.
    if !admin.vis().allows(workspace) {
        return Err(ApiError(AppError::NotFound(format!(
            "workspace {workspace} not found"
        ))));
    }
    let token = admin.0;
    let input = IntegrationInput {
        name: body.name.unwrap_or_default(),
        product: body.product.unwrap_or_else(|| "endpoint".into()),
        cloud: body.cloud.unwrap_or_default(),
        tenant_id: body.tenant_id.unwrap_or_default(),
        client_id: body.client_id.unwrap_or_default(),
        client_secret: body.client_secret.map(SecretString::from),
        secret_expires: body.secret_expires_on.unwrap_or_default(),
        login_url: body.login_url.unwrap_or_default(),
        api_url: body.api_url.unwrap_or_default(),
        schedule_minutes: body
            .schedule_minutes
            .map(|m| m.to_string())
            .unwrap_or_default(),
        enabled: body.enabled.unwrap_or(true),
    };
    let created = Integrations::new(&state.engine)
        .add_in(&input, workspace, &actor(&token))
        .await?;
    Ok((StatusCode::CREATED, Json(IntegrationOut::from(&created))))
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}", tag = "integrations",
    params(("id" = i64, Path)),
    responses((status = 200, body = IntegrationOut), (status = 404, body = Problem)))]
pub async fn get_one(
    t: ApiReader,
    State(state): State<AppState>,
    Path(id): Path<IntegrationId>,
) -> Result<Json<IntegrationOut>, ApiError> {
    Ok(Json(
        (&state.store().get_integration(&t.vis(), id).await?).into(),
    ))
}

#[utoipa::path(patch, path = "/api/v1/integrations/{id}", tag = "integrations",
    params(("id" = i64, Path)), request_body = IntegrationIn,
    responses((status = 200, body = IntegrationOut), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn update(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Path(id): Path<IntegrationId>,
    Json(body): Json<IntegrationIn>,
) -> Result<Json<IntegrationOut>, ApiError> {
    let existing = state.store().get_integration(&admin.vis(), id).await?;
    let token = admin.0;
    if body.workspace_id.is_some() {
        return Err(ApiError(AppError::BadRequest(
            "workspace_id is taken when creating only; an operator moves an integration with `rampart integration move NAME --workspace W`".into(),
        )));
    }
    let or = |new: Option<String>, old: String| new.unwrap_or(old);
    let input = IntegrationInput {
        name: or(body.name, existing.name.to_string()),
        product: or(body.product, existing.product.as_str().into()),
        cloud: or(body.cloud, existing.cloud.as_str().into()),
        tenant_id: or(body.tenant_id, existing.tenant_id.to_string()),
        client_id: or(body.client_id, existing.client_id.to_string()),
        client_secret: body.client_secret.map(SecretString::from),
        secret_expires: or(
            body.secret_expires_on,
            existing
                .secret_hint
                .expires_on
                .map(|d| d.to_string())
                .unwrap_or_default(),
        ),
        login_url: or(
            body.login_url,
            existing.login_url.clone().unwrap_or_default(),
        ),
        api_url: or(body.api_url, existing.api_url.clone().unwrap_or_default()),
        schedule_minutes: body
            .schedule_minutes
            .unwrap_or(existing.schedule_minutes)
            .to_string(),
        enabled: body.enabled.unwrap_or(existing.enabled),
    };
    let updated = Integrations::new(&state.engine)
        .update(&existing, &input, &actor(&token))
        .await?;
    Ok(Json((&updated).into()))
}

#[utoipa::path(delete, path = "/api/v1/integrations/{id}", tag = "integrations",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Path(id): Path<IntegrationId>,
) -> Result<StatusCode, ApiError> {
    let existing = state.store().get_integration(&admin.vis(), id).await?;
    let token = admin.0;
    Integrations::new(&state.engine)
        .remove(&existing, &actor(&token))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/integrations/{id}/test", tag = "integrations",
    params(("id" = i64, Path)),
    responses((status = 200, body = TestReportOut), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn test(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Path(id): Path<IntegrationId>,
) -> Result<Json<TestReportOut>, ApiError> {
    let integration = state.store().get_integration(&admin.vis(), id).await?;
    let token = admin.0;
    let report = Integrations::new(&state.engine)
        .test(&integration, &actor(&token))
        .await?;
    Ok(Json((&report).into()))
}

#[utoipa::path(post, path = "/api/v1/integrations/{id}/sync", tag = "integrations",
    params(("id" = i64, Path)),
    responses((status = 202, body = SyncStartedOut), (status = 409, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn sync(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Path(id): Path<IntegrationId>,
) -> Result<(StatusCode, Json<SyncStartedOut>), ApiError> {
    let integration = state.store().get_integration(&admin.vis(), id).await?;
    let token = admin.0;
    let follow = format!("follow it at /api/v1/integrations/{id}/runs");
    let message = match crate::scheduler::sync_now(&state, &integration, &actor(&token)).await? {
        SyncNowOutcome::Started => format!("sync started; {follow}"),
        SyncNowOutcome::Queued => format!(
            "sync queued: a worker starts it shortly (after any running sync of the same app registration); {follow}"
        ),
        SyncNowOutcome::AlreadyRunning => {
            return Err(ApiError(AppError::Conflict(
                "a sync of this integration is already running; wait for it to finish".into(),
            )));
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(SyncStartedOut {
            started: true,
            message,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// How many runs, newest first (1–200, default 20).
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}/runs", tag = "integrations",
    params(("id" = i64, Path), RunsQuery),
    responses((status = 200, body = [RunOut]), (status = 404, body = Problem)))]
pub async fn runs(
    t: ApiReader,
    State(state): State<AppState>,
    Path(id): Path<IntegrationId>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Vec<RunOut>>, ApiError> {
    let vis = t.vis();
    state.store().get_integration(&vis, id).await?;
    let runs = state
        .store()
        .list_runs(&vis, id, q.limit.unwrap_or(20).clamp(1, 200))
        .await?;
    Ok(Json(runs.iter().map(RunOut::from).collect()))
}
