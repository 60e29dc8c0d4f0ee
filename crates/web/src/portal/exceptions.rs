//! Exceptions (accepted risk): the list, with revoke, and the form that grants one for a
//! finding, a fix or a CVE. Everyone signed in sees the list; only administrators grant and
//! revoke (rampart_sync::exceptions checks and audits). The rules are in docs/prioritisation.md
//! ("Exceptions").

use rampart_model::IntegrationId;
use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{TimeDelta, Utc};
use rampart_store::{ExceptionFilter, ExceptionScope, ExceptionState, StoredException};
use rampart_sync::exceptions::{self, ExceptionError, ExceptionRequest};
use serde::Deserialize;

use crate::auth::extract::{AdminCtx, Ctx};
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::render::{self, when};
use crate::state::AppState;

/// The most exceptions the page lists (newest first).
const LISTED: u32 = 500;
/// The expiry the form proposes.
const DEFAULT_DAYS: i64 = 30;

pub struct ExceptionRow {
    pub id: i64,
    pub scope: &'static str,
    pub target: String,
    /// Where the target is shown, when it has a page.
    pub target_link: Option<String>,
    pub integration: String,
    pub reason: String,
    pub owner: String,
    pub granted: String,
    pub expires: String,
    pub state: &'static str,
    pub ended: String,
}

#[derive(Template)]
#[template(path = "exceptions.html")]
struct ExceptionsPage {
    layout: Layout,
    rows: Vec<ExceptionRow>,
}

#[derive(Template)]
#[template(path = "exception_form.html")]
struct ExceptionForm {
    layout: Layout,
    scope: String,
    target: String,
    integration: String,
    integrations: Vec<(String, String)>,
    reason: String,
    owner: String,
    expires: String,
    max_days: i64,
    error: Option<String>,
}

/// The form as typed (and as the links from the plan, a finding or a CVE prefill it).
#[derive(Debug, Default, Deserialize)]
pub struct ExceptionInput {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    integration: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    expires: String,
}

pub async fn list(ctx: Ctx, State(state): State<AppState>) -> Result<Response, AppError> {
    let store = state.store();
    let now = Utc::now();
    let vis = ctx.vis();
    let listed = exceptions::list(
        store.as_ref(),
        &vis,
        &ExceptionFilter::default(),
        LISTED,
        now,
    )
    .await?;
    let names = state.integration_names(&vis).await?;
    let rows = listed.iter().map(|e| row(e, &names, now)).collect();
    render::page(&ExceptionsPage {
        layout: Layout::new(&ctx, "Exceptions", "exceptions"),
        rows,
    })
}

fn row(
    e: &StoredException,
    names: &HashMap<IntegrationId, String>,
    now: chrono::DateTime<Utc>,
) -> ExceptionRow {
    let (target, target_link) = match &e.scope {
        ExceptionScope::Finding(id) => (format!("finding {id}"), None),
        ExceptionScope::Fix(fix) => (fix.clone(), None),
        ExceptionScope::Cve(cve) => (cve.to_string(), Some(format!("/vulnerabilities/{cve}"))),
    };
    let state = e.state(now);
    ExceptionRow {
        id: e.id,
        scope: e.scope.kind(),
        target,
        target_link,
        integration: e.integration_id.map_or_else(
            || "all".to_owned(),
            |i| names.get(&i).cloned().unwrap_or_else(|| i.to_string()),
        ),
        reason: e.reason.clone(),
        owner: e.owner.clone(),
        granted: format!("{} by {}", when(&e.created_at), e.created_by),
        expires: when(&e.expires_at),
        state: state.as_str(),
        ended: match (state, &e.revoked_by) {
            (ExceptionState::Revoked, Some(by)) => format!("revoked {} by {by}", when(&e.ends_at)),
            (ExceptionState::Expired, _) => format!("expired {}", when(&e.ends_at)),
            _ => String::new(),
        },
    }
}

pub async fn new_form(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Query(input): Query<ExceptionInput>,
) -> Result<Response, AppError> {
    form(&ctx, &state, input, None, StatusCode::OK).await
}

async fn form(
    ctx: &Ctx,
    state: &AppState,
    input: ExceptionInput,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let integrations = state
        .store()
        .list_integrations(&ctx.admin_vis())
        .await?
        .into_iter()
        .map(|i| (i.id.to_string(), i.name.to_string()))
        .collect();
    let expires = if input.expires.trim().is_empty() {
        (Utc::now() + TimeDelta::days(DEFAULT_DAYS))
            .format("%Y-%m-%d")
            .to_string()
    } else {
        input.expires
    };
    render::with_status(
        status,
        &ExceptionForm {
            layout: Layout::new(ctx, "Accept risk", "exceptions"),
            scope: if input.scope.is_empty() {
                "fix".into()
            } else {
                input.scope
            },
            target: input.target,
            integration: input.integration,
            integrations,
            reason: input.reason,
            owner: if input.owner.is_empty() {
                ctx.user.name.clone()
            } else {
                input.owner
            },
            expires,
            max_days: exceptions::MAX_EXCEPTION_DAYS,
            error,
        },
    )
}

pub async fn create(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Form(input): Form<ExceptionInput>,
) -> Result<Response, AppError> {
    match request(&input) {
        Ok(request) => {
            let vis = ctx.admin_vis();
            match exceptions::grant(
                state.store().as_ref(),
                &vis,
                &request,
                &ctx.user.name,
                Utc::now(),
            )
            .await
            {
                Ok(_) => Ok(Redirect::to("/exceptions").into_response()),
                Err(ExceptionError::Invalid(m) | ExceptionError::NotFound(m)) => {
                    form(&ctx, &state, input, Some(m), StatusCode::BAD_REQUEST).await
                }
                Err(other) => Err(other.into()),
            }
        }
        Err(m) => form(&ctx, &state, input, Some(m), StatusCode::BAD_REQUEST).await,
    }
}

fn request(input: &ExceptionInput) -> Result<ExceptionRequest, String> {
    let integration = match input.integration.trim() {
        "" | "all" => None,
        id => Some(
            id.parse::<i64>()
                .map_err(|_| "choose an integration from the list".to_owned())?,
        ),
    };
    Ok(ExceptionRequest {
        scope: exceptions::parse_scope(&input.scope, &input.target).map_err(|e| e.to_string())?,
        integration: integration.map(IntegrationId),
        reason: input.reason.clone(),
        owner: input.owner.clone(),
        expires_at: exceptions::parse_expiry(&input.expires).map_err(|e| e.to_string())?,
    })
}

pub async fn revoke(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    exceptions::revoke(
        state.store().as_ref(),
        &ctx.admin_vis(),
        id,
        &ctx.user.name,
        Utc::now(),
    )
    .await?;
    Ok(Redirect::to("/exceptions").into_response())
}
