//! Who is asking: the signed-in account (with the session's form token), or an admin.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rampart_store::{Role, StoreError, User};
use tower_sessions::Session;

use crate::auth::{USER_KEY, csrf};
use crate::error::AppError;
use crate::state::AppState;

/// A signed-in account and the session's CSRF token (for the forms of the page).
#[derive(Debug, Clone)]
pub struct Ctx {
    pub user: User,
    pub csrf: String,
}

impl Ctx {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
}

/// A signed-in admin.
#[derive(Debug, Clone)]
pub struct AdminCtx(pub Ctx);

pub async fn session_of(parts: &Parts) -> Result<Session, AppError> {
    parts
        .extensions
        .get::<Session>()
        .cloned()
        .ok_or_else(|| AppError::Internal("the session layer is missing".into()))
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let session = session_of(parts).await?;
        let id: i64 = session
            .get(USER_KEY)
            .await
            .map_err(AppError::internal)?
            .ok_or(AppError::Unauthenticated)?;
        let user = match state.store().get_user(id).await {
            Ok(u) => u,
            // The account was removed since: the session is worthless.
            Err(StoreError::NotFound(_)) => {
                session.flush().await.map_err(AppError::internal)?;
                return Err(AppError::Unauthenticated);
            }
            Err(e) => return Err(e.into()),
        };
        let csrf = csrf::token(&session).await?;
        Ok(Ctx { user, csrf })
    }
}

impl FromRequestParts<AppState> for AdminCtx {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let ctx = Ctx::from_request_parts(parts, state).await?;
        if !ctx.is_admin() {
            return Err(AppError::Forbidden(
                "only admins can do this; ask an admin, or sign in as one".into(),
            ));
        }
        Ok(AdminCtx(ctx))
    }
}
