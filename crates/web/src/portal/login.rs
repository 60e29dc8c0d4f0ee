//! Sign in, sign out, change your own password, and the first-run setup page (while no admin
//! exists, with the one-time token `rampart serve` printed).
//!
//! The pages before sign-in write nothing to the database: their form token is a signed cookie
//! ([`crate::auth::login_csrf`]), and a session is created only by a successful sign-in.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use rampart_store::{Role, User};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::client::ClientIp;
use crate::auth::extract::{CHANGE_PASSWORD_PATH, PasswordCtx};
use crate::auth::users::{self, Login};
use crate::auth::{SIGNED_IN_AT_KEY, USER_KEY, csrf, login_csrf, setup};
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

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    layout: Layout,
    /// The account signed in with a one-time password and can do nothing else until it changes it.
    forced: bool,
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
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
}

/// A page shown before sign-in: its form token comes with the signed cookie (set if missing).
fn anonymous_page<T: Template>(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    page: impl FnOnce(Layout) -> T,
    title: &str,
) -> Result<Response, AppError> {
    let form = login_csrf::issue(state, headers);
    let mut response = render::with_status(status, &page(Layout::anonymous(title, form.token)))?;
    if let Some(cookie) = form.set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The forms shown before sign-in that ask for an account name (the same fields, shown again
/// with the name typed and why the form was refused).
#[derive(Clone, Copy)]
enum NameForm {
    SignIn,
    Setup,
}

fn name_form_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    form: NameForm,
    name: String,
    error: Option<String>,
) -> Result<Response, AppError> {
    match form {
        NameForm::SignIn => anonymous_page(
            state,
            headers,
            status,
            |layout| LoginPage {
                layout,
                name,
                error,
            },
            "Sign in",
        ),
        NameForm::Setup => anonymous_page(
            state,
            headers,
            status,
            |layout| SetupPage {
                layout,
                name,
                error,
            },
            "First-run setup",
        ),
    }
}

pub async fn form(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    if !setup::admin_exists(state.store().as_ref()).await? {
        return Ok(Redirect::to("/setup").into_response());
    }
    name_form_page(
        &state,
        &headers,
        StatusCode::OK,
        NameForm::SignIn,
        String::new(),
        None,
    )
}

/// Signs `user` in: a new session id (no fixation), a new form token, the time of sign-in (the
/// session's absolute lifetime runs from it).
async fn sign_in(
    state: &AppState,
    session: &Session,
    user: &User,
    client: std::net::IpAddr,
) -> Result<(), AppError> {
    session.cycle_id().await.map_err(AppError::internal)?;
    session
        .remove::<String>("csrf_token")
        .await
        .map_err(AppError::internal)?;
    session
        .insert(USER_KEY, user.id)
        .await
        .map_err(AppError::internal)?;
    session
        .insert(SIGNED_IN_AT_KEY, Utc::now().timestamp_micros())
        .await
        .map_err(AppError::internal)?;
    csrf::token(session).await?;
    users::audit(
        state.store().as_ref(),
        &user.name,
        "user.login",
        None,
        Some(format!("from {client}")),
    )
    .await
}

fn after_sign_in(user: &User) -> Response {
    if user.must_change_password {
        Redirect::to(CHANGE_PASSWORD_PATH).into_response()
    } else {
        Redirect::to("/").into_response()
    }
}

pub async fn submit(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    session: Session,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let name = form.name.trim().to_owned();
    // Counted before the password is checked, so that parallel attempts cannot outrun the limit.
    let attempt = match state.limiter.begin(&name, client) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(message = "Login refused: too many failures.", client = %client);
            let status = StatusCode::TOO_MANY_REQUESTS;
            return name_form_page(
                &state,
                &headers,
                status,
                NameForm::SignIn,
                name,
                Some(e.to_string()),
            );
        }
    };
    let password = SecretString::from(form.password);
    let store = state.store().as_ref();
    let account = match users::authenticate(store, &name, password).await? {
        Login::Ok(user) => {
            attempt.succeeded();
            sign_in(&state, &session, &user, client).await?;
            return Ok(after_sign_in(&user));
        }
        Login::WrongPassword(user) => Some(user),
        Login::UnknownAccount => None,
    };
    drop(attempt);
    tracing::info!(message = "Login failed.", client = %client);
    let why = if account.is_some() {
        "wrong password"
    } else {
        "unknown account"
    };
    users::audit_failed_login(store, account.as_ref(), client, why).await?;
    name_form_page(
        &state,
        &headers,
        StatusCode::UNAUTHORIZED,
        NameForm::SignIn,
        name,
        Some("wrong account name or password".into()),
    )
}

pub async fn logout(session: Session) -> Result<Response, AppError> {
    session.flush().await.map_err(AppError::internal)?;
    Ok(Redirect::to("/login").into_response())
}

// ---- change your own password ------------------------------------------------------------------

pub async fn password_form(PasswordCtx(ctx): PasswordCtx) -> Result<Response, AppError> {
    render::page(&PasswordPage {
        layout: Layout::new(&ctx, "Change password", ""),
        forced: ctx.user.must_change_password,
        error: None,
    })
}

pub async fn password_submit(
    PasswordCtx(ctx): PasswordCtx,
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    session: Session,
    Form(form): Form<PasswordForm>,
) -> Result<Response, AppError> {
    let refuse = |status: StatusCode, error: String| {
        render::with_status(
            status,
            &PasswordPage {
                layout: Layout::new(&ctx, "Change password", ""),
                forced: ctx.user.must_change_password,
                error: Some(error),
            },
        )
    };
    // The current password is a password guess like any other.
    let attempt = match state.limiter.begin(&ctx.user.name, client) {
        Ok(a) => a,
        Err(e) => return refuse(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
    };
    let store = state.store().as_ref();
    let current = SecretString::from(form.current);
    match users::authenticate(store, &ctx.user.name, current.clone()).await? {
        Login::Ok(_) => attempt.succeeded(),
        _ => {
            drop(attempt);
            users::audit_failed_login(store, Some(&ctx.user), client, "wrong current password")
                .await?;
            return refuse(
                StatusCode::UNAUTHORIZED,
                "the current password is wrong".into(),
            );
        }
    }
    if form.password != form.password_again {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the two new passwords differ".into(),
        );
    }
    if form.password == current.expose_secret() {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the new password is the current one: choose another".into(),
        );
    }
    let new = SecretString::from(form.password);
    let user = match users::set_password(store, &ctx.user, &new, &ctx.user.name).await {
        Ok(u) => u,
        Err(AppError::BadRequest(m)) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, m),
        Err(e) => return Err(e),
    };
    // Sessions signed in before the change end; this one signs in again.
    sign_in(&state, &session, &user, client).await?;
    Ok(Redirect::to("/").into_response())
}

// ---- first-run setup ---------------------------------------------------------------------------

/// The setup page exists only while no admin exists.
async fn setup_allowed(state: &AppState) -> Result<(), AppError> {
    if setup::admin_exists(state.store().as_ref()).await? {
        Err(AppError::NotFound(
            "there is no setup to do: sign in, or ask an admin for an account (rampart user add)"
                .into(),
        ))
    } else {
        Ok(())
    }
}

pub async fn setup_form(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    setup_allowed(&state).await?;
    name_form_page(
        &state,
        &headers,
        StatusCode::OK,
        NameForm::Setup,
        "admin".into(),
        None,
    )
}

pub async fn setup_submit(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    session: Session,
    Form(form): Form<SetupForm>,
) -> Result<Response, AppError> {
    setup_allowed(&state).await?;
    let name = form.name.trim().to_owned();
    let password = SecretString::from(form.password.clone());
    // The form is checked before the token is used up, so that a typo does not cost the token.
    let invalid = if form.password != form.password_again {
        Some("the two passwords differ".to_owned())
    } else {
        match users::check_name(&name).and_then(|()| users::check_password(&password, &name)) {
            Err(AppError::BadRequest(m)) => Some(m),
            Err(e) => return Err(e),
            Ok(()) => None,
        }
    };
    if let Some(error) = invalid {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return name_form_page(&state, &headers, status, NameForm::Setup, name, Some(error));
    }
    let store = state.store().as_ref();
    if !setup::consume(store, &form.token).await? {
        tracing::warn!(message = "First-run setup refused: wrong or used setup token.", client = %client);
        let error = "the setup token is wrong, expired or already used: copy the one `rampart serve` printed when it started (each start while no admin exists prints a new one, valid for an hour)";
        return name_form_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            NameForm::Setup,
            name,
            Some(error.into()),
        );
    }
    let user = match users::create(store, &name, Role::Admin, &password, false, "setup").await {
        Ok(user) => user,
        Err(AppError::BadRequest(m) | AppError::Conflict(m)) => {
            let error =
                format!("{m} (the setup token is used up: restart `rampart serve` for a new one)");
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return name_form_page(&state, &headers, status, NameForm::Setup, name, Some(error));
        }
        Err(e) => return Err(e),
    };
    sign_in(&state, &session, &user, client).await?;
    Ok(Redirect::to("/integrations").into_response())
}
