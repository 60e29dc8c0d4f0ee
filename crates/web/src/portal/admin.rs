//! Management → API tokens, accounts and the audit log (admins only).

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use rampart_store::{ApiToken, AuditEntry, NewApiToken, TokenScope, User};
use serde::Deserialize;

use crate::auth::extract::{AdminCtx, Ctx};
use crate::auth::tokens::{random_token, token_hash};
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::render::{self, when};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    layout: Layout,
    tokens: Vec<ApiToken>,
    /// The token just created: shown once, never stored.
    created: Option<String>,
    error: Option<String>,
}

impl TokensPage {
    fn when(&self, t: &ApiToken) -> String {
        when(&t.created_at)
    }
}

pub async fn tokens(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
) -> Result<Response, AppError> {
    render::page(&TokensPage {
        layout: Layout::new(&ctx, "API tokens", "tokens"),
        tokens: state.store().list_api_tokens().await?,
        created: None,
        error: None,
    })
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: String,
    /// A workspace name: the token sees only that workspace. Empty: a global token.
    #[serde(default)]
    workspace: String,
}

pub async fn create_token(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Form(form): Form<TokenForm>,
) -> Result<Response, AppError> {
    let name = form.name.trim().chars().take(80).collect::<String>();
    let scope = TokenScope::parse(&form.scope);
    let workspace = match form.workspace.trim() {
        "" => Ok(None),
        w => match state.store().get_workspace_by_name(w).await {
            Ok(ws) => Ok(Some(ws.id)),
            Err(rampart_store::StoreError::NotFound(m)) => Err(m),
            Err(e) => return Err(e.into()),
        },
    };
    let (created, error) = match (name.is_empty(), scope, workspace) {
        (true, _, _) => (
            None,
            Some("give the token a name (what uses it)".to_owned()),
        ),
        (_, None, _) => (None, Some("choose read or admin scope".to_owned())),
        (_, _, Err(m)) => (None, Some(m)),
        (false, Some(scope), Ok(workspace)) => {
            let token = random_token("rmp");
            state
                .store()
                .create_api_token(&NewApiToken {
                    name: name.clone(),
                    token_hash: token_hash(&token),
                    scope,
                    created_by: ctx.user.name.clone(),
                    created_at: Utc::now(),
                    workspace,
                })
                .await?;
            ctx.audit(
                state.store().as_ref(),
                "api_token.create",
                &name,
                Some(scope.as_str().into()),
            )
            .await?;
            (Some(token), None)
        }
    };
    render::page(&TokensPage {
        layout: Layout::new(&ctx, "API tokens", "tokens"),
        tokens: state.store().list_api_tokens().await?,
        created,
        error,
    })
}

pub async fn delete_token(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    state.store().delete_api_token(id).await?;
    ctx.audit(
        state.store().as_ref(),
        "api_token.delete",
        &id.to_string(),
        None,
    )
    .await?;
    Ok(Redirect::to("/tokens").into_response())
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    entries: Vec<AuditEntry>,
}

impl AuditPage {
    fn when(&self, e: &AuditEntry) -> String {
        when(&e.at)
    }
}

/// The audit log names accounts, addresses and what admins changed: admins only.
pub async fn audit_log(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
) -> Result<Response, AppError> {
    render::page(&AuditPage {
        layout: Layout::new(&ctx, "Audit log", "audit"),
        entries: state.store().list_audit(200).await?,
    })
}

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    layout: Layout,
    users: Vec<User>,
    error: Option<String>,
}

impl AccountsPage {
    fn when(&self, u: &User) -> String {
        when(&u.created_at)
    }
}

async fn accounts_page(
    state: &AppState,
    ctx: &Ctx,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, AppError> {
    render::with_status(
        status,
        &AccountsPage {
            layout: Layout::new(ctx, "Accounts", "accounts"),
            users: state.store().list_users().await?,
            error,
        },
    )
}

pub async fn accounts(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
) -> Result<Response, AppError> {
    accounts_page(&state, &ctx, StatusCode::OK, None).await
}

/// Removes an account; never the last admin.
pub async fn delete_account(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let user = state.store().get_user(id).await?;
    match crate::auth::users::remove_user(state.store().as_ref(), &user, &ctx.user.name).await {
        Ok(()) => Ok(Redirect::to("/accounts").into_response()),
        Err(AppError::Conflict(m)) => {
            accounts_page(&state, &ctx, StatusCode::CONFLICT, Some(m)).await
        }
        Err(e) => Err(e),
    }
}
