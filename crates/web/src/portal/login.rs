//! Sign in, sign out, and the first-run setup page (only from this machine, only while no account
//! exists).

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use rampart_store::{NewAuditEntry, Role, User};
use secrecy::SecretString;
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::{USER_KEY, csrf, users};
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::render;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    name: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    layout: Layout,
    name: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
}

async fn no_accounts(state: &AppState) -> Result<bool, AppError> {
    Ok(state.store().list_users().await?.is_empty())
}

pub async fn form(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
) -> Result<Response, AppError> {
    if peer.ip().is_loopback() && no_accounts(&state).await? {
        return Ok(Redirect::to("/setup").into_response());
    }
    let layout = Layout::anonymous("Sign in", csrf::token(&session).await?);
    render::page(&LoginPage {
        layout,
        name: String::new(),
        error: None,
    })
}

/// Signs `user` in: a new session id (no fixation), a new form token.
async fn sign_in(state: &AppState, session: &Session, user: &User) -> Result<(), AppError> {
    session.cycle_id().await.map_err(AppError::internal)?;
    session
        .remove::<String>("csrf_token")
        .await
        .map_err(AppError::internal)?;
    session
        .insert(USER_KEY, user.id)
        .await
        .map_err(AppError::internal)?;
    csrf::token(session).await?;
    state
        .store()
        .record_audit(&NewAuditEntry {
            at: Utc::now(),
            actor: user.name.clone(),
            action: "user.login".into(),
            target: None,
            details: None,
        })
        .await?;
    Ok(())
}

pub async fn submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let ip = Some(peer.ip());
    let name = form.name.trim().to_owned();
    if let Err(e) = state.limiter.check(&name, ip) {
        tracing::warn!(message = "Login refused: too many failures.", peer = %peer.ip());
        let layout = Layout::anonymous("Sign in", csrf::token(&session).await?);
        return render::with_status(
            StatusCode::TOO_MANY_REQUESTS,
            &LoginPage {
                layout,
                name,
                error: Some(e.to_string()),
            },
        );
    }
    let password = SecretString::from(form.password);
    match users::authenticate(state.store().as_ref(), &name, password).await? {
        Some(user) => {
            state.limiter.succeeded(&name, ip);
            sign_in(&state, &session, &user).await?;
            Ok(Redirect::to("/").into_response())
        }
        None => {
            state.limiter.failed(&name, ip);
            tracing::info!(message = "Login failed.", peer = %peer.ip());
            let layout = Layout::anonymous("Sign in", csrf::token(&session).await?);
            render::with_status(
                StatusCode::UNAUTHORIZED,
                &LoginPage {
                    layout,
                    name,
                    error: Some("wrong account name or password".into()),
                },
            )
        }
    }
}

pub async fn logout(session: Session) -> Result<Response, AppError> {
    session.flush().await.map_err(AppError::internal)?;
    Ok(Redirect::to("/login").into_response())
}

/// The setup page exists only for a request from this machine while there is no account.
async fn setup_allowed(state: &AppState, peer: SocketAddr) -> Result<(), AppError> {
    if peer.ip().is_loopback() && no_accounts(state).await? {
        Ok(())
    } else {
        Err(AppError::NotFound(
            "there is no setup to do: sign in, or ask an admin for an account (rampart user add)"
                .into(),
        ))
    }
}

pub async fn setup_form(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
) -> Result<Response, AppError> {
    setup_allowed(&state, peer).await?;
    let layout = Layout::anonymous("First-run setup", csrf::token(&session).await?);
    render::page(&SetupPage {
        layout,
        name: "admin".into(),
        error: None,
    })
}

pub async fn setup_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    Form(form): Form<SetupForm>,
) -> Result<Response, AppError> {
    setup_allowed(&state, peer).await?;
    let name = form.name.trim().to_owned();
    let error = if form.password != form.password_again {
        Some("the two passwords differ".to_owned())
    } else {
        let password = SecretString::from(form.password);
        match users::create(
            state.store().as_ref(),
            &name,
            Role::Admin,
            &password,
            "setup",
        )
        .await
        {
            Ok(user) => {
                sign_in(&state, &session, &user).await?;
                return Ok(Redirect::to("/integrations").into_response());
            }
            Err(AppError::BadRequest(m) | AppError::Conflict(m)) => Some(m),
            Err(e) => return Err(e),
        }
    };
    let layout = Layout::anonymous("First-run setup", csrf::token(&session).await?);
    render::with_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        &SetupPage {
            layout,
            name,
            error,
        },
    )
}
