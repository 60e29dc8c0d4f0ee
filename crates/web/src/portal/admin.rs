//! Management → API tokens and the audit log.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use rampart_store::{ApiToken, AuditEntry, NewApiToken, NewAuditEntry, TokenScope};
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
}

pub async fn create_token(
    AdminCtx(ctx): AdminCtx,
    State(state): State<AppState>,
    Form(form): Form<TokenForm>,
) -> Result<Response, AppError> {
    let name = form.name.trim().chars().take(80).collect::<String>();
    let scope = TokenScope::parse(&form.scope);
    let (created, error) = match (name.is_empty(), scope) {
        (true, _) => (
            None,
            Some("give the token a name (what uses it)".to_owned()),
        ),
        (_, None) => (None, Some("choose read or admin scope".to_owned())),
        (false, Some(scope)) => {
            let token = random_token("rmp");
            state
                .store()
                .create_api_token(&NewApiToken {
                    name: name.clone(),
                    token_hash: token_hash(&token),
                    scope,
                    created_by: ctx.user.name.clone(),
                    created_at: Utc::now(),
                })
                .await?;
            audit(&state, &ctx, "api_token.create", &name, scope.as_str()).await?;
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
    audit(&state, &ctx, "api_token.delete", &id.to_string(), "").await?;
    Ok(Redirect::to("/tokens").into_response())
}

async fn audit(
    state: &AppState,
    ctx: &Ctx,
    action: &str,
    target: &str,
    details: &str,
) -> Result<(), AppError> {
    state
        .store()
        .record_audit(&NewAuditEntry {
            at: Utc::now(),
            actor: ctx.user.name.clone(),
            action: action.into(),
            target: Some(target.into()),
            details: (!details.is_empty()).then(|| details.into()),
        })
        .await?;
    Ok(())
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

pub async fn audit_log(ctx: Ctx, State(state): State<AppState>) -> Result<Response, AppError> {
    render::page(&AuditPage {
        layout: Layout::new(&ctx, "Audit log", "audit"),
        entries: state.store().list_audit(200).await?,
    })
}
