//! Rampart's portal and REST API: `rampart serve`.
//!
//! - **Portal** (`/`): server-rendered pages (askama templates, htmx vendored, no CDN: it works
//!   offline), accounts with argon2 password hashes, sessions in the store (HttpOnly,
//!   SameSite=Strict, rotated at login), CSRF protection on every state change (a per-session token
//!   plus an `Origin`/`Sec-Fetch-Site` check), roles (admins change integrations, viewers read),
//!   security headers (a CSP without inline script), an audit log and login rate limiting.
//! - **REST API** (`/api/v1`): bearer API tokens (stored hashed, `read` or `admin` scope),
//!   problem+json errors, an OpenAPI document at `/api/openapi.json` and a vendored Swagger UI at
//!   `/api/docs`.
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
mod csv;
mod error;
mod headers;
mod integrations;
mod ops;
mod portal;
mod query;
mod scheduler;
mod startup;
mod state;
mod static_files;

pub use auth::password::{PasswordError, hash_password};
pub use error::AppError;
pub use scheduler::{Scheduler, next_run};
pub use startup::{Application, WebConfig};
pub use state::AppState;

/// The OpenAPI document of the REST API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::openapi()
}

/// Creates a portal account (used by `rampart user add` and `rampart demo`).
pub async fn create_user(
    store: &dyn rampart_store::Store,
    name: &str,
    role: rampart_store::Role,
    password: &secrecy::SecretString,
    actor: &str,
) -> Result<rampart_store::User, AppError> {
    auth::users::create(store, name, role, password, actor).await
}
