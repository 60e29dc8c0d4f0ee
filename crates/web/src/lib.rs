//! Rampart's portal and REST API: `rampart serve`.
//!
//! - **Portal** (`/`): server-rendered pages (askama templates, htmx vendored, no CDN: it works
//!   offline), accounts with argon2 password hashes, sessions in the store (HttpOnly,
//!   SameSite=Strict, rotated at login, stored as SHA-256 of their id, with an idle and an absolute
//!   lifetime, `Secure` over HTTPS), CSRF protection on every state change (a per-session token,
//!   or a signed double-submit cookie before sign-in, plus an `Origin`/`Sec-Fetch-Site` check),
//!   roles (admins change integrations and accounts, viewers read), a password policy, security
//!   headers (a CSP without inline script), an audit log, login rate limiting per client (behind
//!   trusted proxies too) and a one-time token for the first-run setup.
//! - **REST API** (`/api/v1`): bearer API tokens (stored hashed, `read` or `admin` scope),
//!   problem+json errors, an OpenAPI document at `/api/openapi.json` and a vendored Swagger UI at
//!   `/api/docs`.
//! - **HTTPS** (optional, [`Tls`]): rustls with its defaults (TLS 1.2+, ALPN h2 and http/1.1),
//!   HSTS, the certificate re-read on SIGHUP; or plain HTTP behind a reverse proxy.
//! - **Scheduler**: each enabled integration syncs every `schedule_minutes`, one run at a time.
//!
//! The web layer never calls Microsoft: it asks the sync [`rampart_sync::Engine`] to test or sync.
//!
//! ```no_run
//! # async fn demo(engine: std::sync::Arc<rampart_sync::Engine>) -> Result<(), std::io::Error> {
//! let config = rampart_web::WebConfig::new("127.0.0.1:0".parse().unwrap());
//! let app = rampart_web::Application::build(config, engine).await?;
//! println!("portal at {}", app.url());
//! app.run_until_stopped().await
//! # }
//! ```

mod api;
mod auth;
mod charts;
mod connections;
mod csv;
mod error;
mod headers;
mod layout;
mod ops;
mod portal;
mod query;
mod scheduler;
mod startup;
mod state;
mod static_files;
mod tls;

pub use api::sla::{SlaReportOut, report_out, severity_name};
pub use auth::password::{PasswordError, hash_password};
pub use auth::policy::MIN_PASSWORD_LEN;
pub use error::AppError;
/// A network in CIDR notation, as `WebConfig::trusted_proxies` takes it.
pub use ipnet::IpNet;
pub use scheduler::{Scheduler, next_run};
pub use startup::{Application, ConnectionLimits, ServerRole, WebConfig};
pub use state::AppState;
pub use tls::{FileRole, Tls, TlsError};

/// The OpenAPI document of the REST API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::openapi()
}

/// Who chose a new account's password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChosenBy {
    /// The account's owner (`rampart user add`): theirs to keep.
    Owner,
    /// Someone else (the demo's one-time password): the account must choose its own at its first
    /// sign-in, and can do nothing else until then.
    Others,
}

/// Creates a portal account (used by `rampart user add` and `rampart demo`).
pub async fn create_user(
    store: &dyn rampart_store::Store,
    name: &str,
    role: rampart_store::Role,
    password: &secrecy::SecretString,
    chosen_by: PasswordChosenBy,
    actor: &str,
) -> Result<rampart_store::User, AppError> {
    let one_time = chosen_by == PasswordChosenBy::Others;
    auth::users::create(store, name, role, password, one_time, actor).await
}

/// Sets the password of the account `name` (`rampart user passwd`); its sessions end.
pub async fn set_user_password(
    store: &dyn rampart_store::Store,
    name: &str,
    password: &secrecy::SecretString,
    actor: &str,
) -> Result<rampart_store::User, AppError> {
    let user = store
        .user_credentials(name)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "there is no account named '{}': see the accounts with the portal's Management > Accounts",
                name.chars().take(64).collect::<String>()
            ))
        })?
        .user;
    auth::users::set_password(store, &user, password, actor).await
}

/// Removes the account `name` (`rampart user remove`); never the last admin.
pub async fn remove_user(
    store: &dyn rampart_store::Store,
    name: &str,
    actor: &str,
) -> Result<rampart_store::User, AppError> {
    auth::users::remove(store, name, actor).await
}
