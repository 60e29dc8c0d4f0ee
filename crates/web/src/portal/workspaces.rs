//! The workspace switcher (any account) and, for global admins, the all-workspaces page: totals
//! per workspace, adding and removing workspaces, granting and revoking roles
//! (docs/workspaces.md).

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use rampart_model::WorkspaceId;
use rampart_store::{Role, StoreError, User, Visibility, Workspace};
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::WORKSPACE_KEY;
use crate::auth::extract::{AdminCtx, Ctx};
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::render::{self, when_opt};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct SwitchForm {
    /// A workspace id; empty: all the account may see.
    #[serde(default)]
    workspace: String,
}

/// The header's switcher: remembers the workspace in the session. One the account may not see
/// is answered 404, like one that does not exist.
pub async fn switch(
    ctx: Ctx,
    session: Session,
    Form(form): Form<SwitchForm>,
) -> Result<Response, AppError> {
    match form.workspace.trim() {
        "" => {
            session
                .remove::<i64>(WORKSPACE_KEY)
                .await
                .map_err(AppError::internal)?;
        }
        raw => {
            let id = raw
                .parse::<i64>()
                .ok()
                .map(WorkspaceId)
                .filter(|w| ctx.switchable.iter().any(|(id, _)| id == w))
                .ok_or_else(|| AppError::NotFound("no such workspace".into()))?;
            session
                .insert(WORKSPACE_KEY, id.0)
                .await
                .map_err(AppError::internal)?;
        }
    }
    Ok(Redirect::to("/").into_response())
}

struct WorkspaceRow {
    id: i64,
    name: String,
    integrations: usize,
    open: u64,
    immediate: u64,
    overdue: u64,
    score: String,
    last_sync: String,
    removable: bool,
}

struct MemberRow {
    user: String,
    workspace: String,
    workspace_id: i64,
    user_id: i64,
    role: &'static str,
}

#[derive(Template)]
#[template(path = "workspaces.html")]
struct WorkspacesPage {
    layout: Layout,
    rows: Vec<WorkspaceRow>,
    members: Vec<MemberRow>,
    users: Vec<User>,
    error: Option<String>,
}

async fn row(state: &AppState, w: &Workspace) -> Result<WorkspaceRow, AppError> {
    let store = state.store();
    let vis = Visibility::Workspaces(vec![w.id]);
    // From the summaries kept as runs finish and the stored priority columns: cheap per
    // workspace however many findings it holds.
    let summary = store.summary(&vis, 0).await?;
    let urgent = store.urgent_counts(&vis, Utc::now()).await?;
    let integrations = store.list_integrations(&vis).await?.len();
    let scores: Vec<_> = store
        .latest_posture(&vis, None)
        .await?
        .into_iter()
        .map(|s| s.score)
        .collect();
    Ok(WorkspaceRow {
        id: w.id.0,
        name: w.name.clone(),
        integrations,
        open: summary.counts.findings_open.total(),
        immediate: urgent.immediate,
        overdue: urgent.overdue,
        score: rampart_model::weighted_percent(&scores)
            .map(|p| format!("{p:.0} %"))
            .unwrap_or_else(|| "—".into()),
        last_sync: when_opt(&summary.as_of),
        removable: w.id != WorkspaceId::DEFAULT && integrations == 0,
    })
}

async fn page_with(
    state: &AppState,
    ctx: &Ctx,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, AppError> {
    let store = state.store();
    let workspaces = store.list_workspaces().await?;
    let mut rows = Vec::with_capacity(workspaces.len());
    for w in &workspaces {
        rows.push(row(state, w).await?);
    }
    let users = store.list_users().await?;
    let mut members = Vec::new();
    for u in &users {
        for m in store.memberships(u.id).await? {
            members.push(MemberRow {
                user: u.name.clone(),
                user_id: u.id,
                workspace: m.workspace,
                workspace_id: m.workspace_id.0,
                role: m.role.as_str(),
            });
        }
    }
    render::with_status(
        status,
        &WorkspacesPage {
            layout: Layout::new(ctx, "Workspaces", "workspaces"),
            rows,
            members,
            users,
            error,
        },
    )
}

pub async fn page(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
) -> Result<Response, AppError> {
    page_with(&state, &ctx, StatusCode::OK, None).await
}

/// A refusal the admin can act on: the page again, with the message.
async fn refused(state: &AppState, ctx: &Ctx, e: StoreError) -> Result<Response, AppError> {
    match e {
        StoreError::Conflict(m) | StoreError::InvalidInput(m) | StoreError::NotFound(m) => {
            page_with(state, ctx, StatusCode::UNPROCESSABLE_ENTITY, Some(m)).await
        }
        other => Err(other.into()),
    }
}

#[derive(Deserialize)]
pub struct AddForm {
    #[serde(default)]
    name: String,
}

pub async fn add(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Form(form): Form<AddForm>,
) -> Result<Response, AppError> {
    match state.store().create_workspace(&form.name).await {
        Ok(w) => {
            ctx.audit(
                state.store().as_ref(),
                "workspace.create",
                &w.name,
                Some(String::new()),
            )
            .await?;
            Ok(Redirect::to("/workspaces").into_response())
        }
        Err(e) => refused(&state, &ctx, e).await,
    }
}

pub async fn delete(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    match state.store().delete_workspace(WorkspaceId(id)).await {
        Ok(()) => {
            ctx.audit(
                state.store().as_ref(),
                "workspace.delete",
                &id.to_string(),
                Some(String::new()),
            )
            .await?;
            Ok(Redirect::to("/workspaces").into_response())
        }
        Err(e) => refused(&state, &ctx, e).await,
    }
}

#[derive(Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    user_id: i64,
    #[serde(default)]
    workspace_id: i64,
    #[serde(default)]
    role: String,
}

pub async fn grant(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Form(form): Form<GrantForm>,
) -> Result<Response, AppError> {
    let Some(role) = Role::parse(&form.role) else {
        return page_with(
            &state,
            &ctx,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("choose admin or viewer".into()),
        )
        .await;
    };
    let workspace = WorkspaceId(form.workspace_id);
    match state
        .store()
        .grant_membership(form.user_id, workspace, role)
        .await
    {
        Ok(()) => {
            let details = format!("{} of workspace {workspace}", role.as_str());
            ctx.audit(
                state.store().as_ref(),
                "user.grant",
                &form.user_id.to_string(),
                Some(details),
            )
            .await?;
            Ok(Redirect::to("/workspaces").into_response())
        }
        Err(e) => refused(&state, &ctx, e).await,
    }
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    user_id: i64,
    #[serde(default)]
    workspace_id: i64,
}

pub async fn revoke(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, AppError> {
    let workspace = WorkspaceId(form.workspace_id);
    match state
        .store()
        .revoke_membership(form.user_id, workspace)
        .await
    {
        Ok(()) => {
            let details = format!("workspace {workspace}");
            ctx.audit(
                state.store().as_ref(),
                "user.revoke",
                &form.user_id.to_string(),
                Some(details),
            )
            .await?;
            Ok(Redirect::to("/workspaces").into_response())
        }
        Err(e) => refused(&state, &ctx, e).await,
    }
}
