//! `/api/v1/exceptions`: accepted risk. Anyone with a token lists them; granting and revoking
//! take an admin-scope token and are audited (rampart_sync::exceptions). The rules are in
//! docs/prioritisation.md ("Exceptions").

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use rampart_model::IntegrationId;
use rampart_model::export::rfc3339;
use rampart_store::StoredException;
use rampart_sync::exceptions::{self, ExceptionRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::tokens::{ApiAdmin, ApiReader};
use crate::error::{ApiError, Problem};
use crate::query::ExceptionQuery;
use crate::state::AppState;

/// The most exceptions one listing returns (newest first).
const MAX_LISTED: u32 = 1000;

#[derive(Debug, Serialize, ToSchema)]
pub struct ExceptionOut {
    pub id: i64,
    /// `finding`, `fix` or `cve`.
    pub scope: String,
    /// The finding's id, the fix as the remediation plan names it, or the CVE id.
    pub target: String,
    /// Absent: every integration.
    pub integration_id: Option<i64>,
    pub reason: String,
    pub owner: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    /// When it stops (stopped) being in force: the expiry, or when it was revoked.
    pub ends_at: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    /// `in_force`, `expired` or `revoked`.
    pub state: String,
}

impl From<&StoredException> for ExceptionOut {
    fn from(e: &StoredException) -> Self {
        let target = match &e.scope {
            rampart_store::ExceptionScope::Finding(id) => id.to_string(),
            rampart_store::ExceptionScope::Fix(fix) => fix.clone(),
            rampart_store::ExceptionScope::Cve(cve) => cve.to_string(),
        };
        Self {
            id: e.id,
            scope: e.scope.kind().into(),
            target,
            integration_id: e.integration_id.map(IntegrationId::get),
            reason: e.reason.clone(),
            owner: e.owner.clone(),
            created_by: e.created_by.clone(),
            created_at: rfc3339(&e.created_at),
            expires_at: rfc3339(&e.expires_at),
            ends_at: rfc3339(&e.ends_at),
            revoked_at: e.revoked_at.as_ref().map(rfc3339),
            revoked_by: e.revoked_by.clone(),
            state: e.state(Utc::now()).as_str().into(),
        }
    }
}

/// An exception to grant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionIn {
    /// `finding`, `fix` or `cve`.
    pub scope: String,
    /// A finding id, a fix as the remediation plan names it, or a CVE id.
    pub target: String,
    /// The integration's id; absent: every integration (not for a finding).
    pub integration_id: Option<i64>,
    /// Why the risk is accepted.
    pub reason: String,
    /// Who answers for it.
    pub owner: String,
    /// A date (`2026-03-31`: through that day, UTC) or an RFC 3339 time; in the future and at
    /// most 365 days away.
    pub expires_at: String,
}

#[utoipa::path(get, path = "/api/v1/exceptions", tag = "exceptions", params(ExceptionQuery),
    responses((status = 200, body = [ExceptionOut]), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn list_exceptions(
    t: ApiReader,
    State(state): State<AppState>,
    Query(q): Query<ExceptionQuery>,
) -> Result<Json<Vec<ExceptionOut>>, ApiError> {
    let now = Utc::now();
    let listed = exceptions::list(
        state.store().as_ref(),
        &t.vis(),
        &q.filter(now)?,
        MAX_LISTED,
        now,
    )
    .await?;
    Ok(Json(listed.iter().map(ExceptionOut::from).collect()))
}

#[utoipa::path(post, path = "/api/v1/exceptions", tag = "exceptions", request_body = ExceptionIn,
    responses((status = 201, body = ExceptionOut), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn create_exception(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Json(body): Json<ExceptionIn>,
) -> Result<(StatusCode, Json<ExceptionOut>), ApiError> {
    let request = ExceptionRequest {
        scope: exceptions::parse_scope(&body.scope, &body.target)?,
        integration: body.integration_id.map(IntegrationId),
        reason: body.reason,
        owner: body.owner,
        expires_at: exceptions::parse_expiry(&body.expires_at)?,
    };
    let actor = format!("api:{}", admin.0.name);
    let granted = exceptions::grant(
        state.store().as_ref(),
        &admin.vis(),
        &request,
        &actor,
        Utc::now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(ExceptionOut::from(&granted))))
}

#[utoipa::path(delete, path = "/api/v1/exceptions/{id}", tag = "exceptions",
    params(("id" = i64, Path)),
    responses((status = 200, description = "revoked", body = ExceptionOut), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, description = "it had already ended", body = Problem)))]
pub async fn revoke_exception(
    admin: ApiAdmin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<ExceptionOut>, ApiError> {
    let actor = format!("api:{}", admin.0.name);
    let revoked =
        exceptions::revoke(state.store().as_ref(), &admin.vis(), id, &actor, Utc::now()).await?;
    Ok(Json(ExceptionOut::from(&revoked)))
}
