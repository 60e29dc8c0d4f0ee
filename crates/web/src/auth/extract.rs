//! Who is asking: the signed-in account (with the session's form token), or an admin.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use rampart_model::WorkspaceId;
use rampart_store::{Membership, Role, StoreError, User, Visibility};
use tower_sessions::Session;

use crate::auth::{SIGNED_IN_AT_KEY, USER_KEY, WORKSPACE_KEY, csrf};
use crate::error::AppError;
use crate::state::AppState;

/// Where an account whose password must change is sent, whatever it asked for.
pub const CHANGE_PASSWORD_PATH: &str = "/account/password";

/// A signed-in account, its workspace roles, the workspace the session is looking at (the
/// header's switcher; `None`: all it may see) and the session's CSRF token (for the forms of the
/// page).
#[derive(Debug, Clone)]
pub struct Ctx {
    pub user: User,
    pub memberships: Vec<Membership>,
    pub workspace: Option<WorkspaceId>,
    /// The workspaces the header's switcher offers: every one for a global admin, the
    /// account's own otherwise.
    pub switchable: Vec<(WorkspaceId, String)>,
    pub csrf: String,
}

impl Ctx {
    /// A global admin: sees and changes everything, manages accounts and workspaces.
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// What the account may see, whichever workspace the session looks at.
    pub fn allowed(&self) -> Visibility {
        if self.is_admin() {
            Visibility::All
        } else {
            Visibility::member_of(&self.memberships)
        }
    }

    /// What the pages show: what the account may see, narrowed to the session's workspace.
    /// Every read of the store takes this (docs/workspaces.md).
    pub fn vis(&self) -> Visibility {
        match self.workspace {
            Some(w) => self.allowed().within(w),
            None => self.allowed(),
        }
    }

    /// The integrations the account may change: those of the workspaces it is an admin of.
    /// Anything else is answered as if it did not exist.
    pub fn admin_vis(&self) -> Visibility {
        if self.is_admin() {
            Visibility::All
        } else {
            Visibility::admin_of(&self.memberships)
        }
    }

    /// Whether the account may change anything at all (a global admin, or an admin of some
    /// workspace): the integration forms are shown to it.
    pub fn can_admin_integrations(&self) -> bool {
        self.is_admin() || self.memberships.iter().any(|m| m.role == Role::Admin)
    }

    /// Records in the audit log that the account did `action` to `target`, now.
    pub async fn audit(
        &self,
        store: &dyn rampart_store::Store,
        action: &str,
        target: &str,
        details: Option<String>,
    ) -> Result<(), AppError> {
        crate::auth::users::audit(store, &self.user.name, action, Some(target), details).await
    }
}

/// A signed-in admin.
#[derive(Debug, Clone)]
pub struct AdminCtx(pub Ctx);

/// A signed-in account that may change integrations: a global admin or an admin of some
/// workspace. Which integrations it may change is [`Ctx::admin_vis`]; anything else is answered
/// 404, as if it did not exist.
#[derive(Debug, Clone)]
pub struct WorkspaceAdminCtx(pub Ctx);

impl WorkspaceAdminCtx {
    /// Where a new integration goes: the session's workspace when the account is an admin
    /// there, otherwise the first workspace it is an admin of (Default for a global admin).
    pub fn new_integration_workspace(&self) -> Option<WorkspaceId> {
        let ctx = &self.0;
        let admin = ctx.admin_vis();
        if let Some(w) = ctx.workspace.filter(|w| admin.allows(*w)) {
            return Some(w);
        }
        if ctx.is_admin() {
            return Some(WorkspaceId::DEFAULT);
        }
        ctx.memberships
            .iter()
            .find(|m| m.role == Role::Admin)
            .map(|m| m.workspace_id)
    }
}

/// A signed-in account that may still have to change its password: only the change-password
/// page takes it.
#[derive(Debug, Clone)]
pub struct PasswordCtx(pub Ctx);

/// Why a request is not let through.
#[derive(Debug)]
pub enum Denied {
    App(AppError),
    /// The account signed in with a one-time password: it must choose its own first.
    MustChangePassword,
}

impl From<AppError> for Denied {
    fn from(e: AppError) -> Self {
        Denied::App(e)
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::App(e) => e.into_response(),
            Denied::MustChangePassword => Redirect::to(CHANGE_PASSWORD_PATH).into_response(),
        }
    }
}

pub async fn session_of(parts: &Parts) -> Result<Session, AppError> {
    parts
        .extensions
        .get::<Session>()
        .cloned()
        .ok_or_else(|| AppError::Internal("the session layer is missing".into()))
}

/// Ends the session and asks for a new sign-in.
async fn ended(session: &Session) -> Result<Ctx, AppError> {
    session.flush().await.map_err(AppError::internal)?;
    Err(AppError::Unauthenticated)
}

/// The signed-in account, whatever it may do.
async fn signed_in(parts: &Parts, state: &AppState) -> Result<Ctx, AppError> {
    let session = session_of(parts).await?;
    let id: i64 = session
        .get(USER_KEY)
        .await
        .map_err(AppError::internal)?
        .ok_or(AppError::Unauthenticated)?;
    let signed_in_at = session
        .get::<i64>(SIGNED_IN_AT_KEY)
        .await
        .map_err(AppError::internal)?
        .and_then(DateTime::from_timestamp_micros);
    // The store expires a session at its absolute end already; this also ends sessions saved
    // before there was one.
    let lifetime =
        chrono::Duration::from_std(state.auth.session_lifetime).unwrap_or(chrono::TimeDelta::MAX);
    let Some(signed_in_at) = signed_in_at.filter(|at| Utc::now() - *at <= lifetime) else {
        return ended(&session).await;
    };
    let user = match state.store().get_user(id).await {
        Ok(u) => u,
        // The account was removed since: the session is worthless.
        Err(StoreError::NotFound(_)) => return ended(&session).await,
        Err(e) => return Err(e.into()),
    };
    // The password changed since this session signed in (elsewhere, or by an operator).
    if user.password_changed_at.is_some_and(|c| c > signed_in_at) {
        return ended(&session).await;
    }
    let csrf = csrf::token(&session).await?;
    let memberships = state.store().memberships(user.id).await?;
    let switchable: Vec<(WorkspaceId, String)> = if user.role == Role::Admin {
        state
            .store()
            .list_workspaces()
            .await?
            .into_iter()
            .map(|w| (w.id, w.name))
            .collect()
    } else {
        memberships
            .iter()
            .map(|m| (m.workspace_id, m.workspace.clone()))
            .collect()
    };
    // A workspace the account lost (or that was removed) since it was chosen is forgotten.
    let workspace = session
        .get::<i64>(WORKSPACE_KEY)
        .await
        .map_err(AppError::internal)?
        .map(WorkspaceId)
        .filter(|w| switchable.iter().any(|(id, _)| id == w));
    Ok(Ctx {
        user,
        memberships,
        workspace,
        switchable,
        csrf,
    })
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Denied;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Denied> {
        let ctx = signed_in(parts, state).await?;
        if ctx.user.must_change_password {
            return Err(Denied::MustChangePassword);
        }
        Ok(ctx)
    }
}

impl FromRequestParts<AppState> for PasswordCtx {
    type Rejection = Denied;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Denied> {
        Ok(PasswordCtx(signed_in(parts, state).await?))
    }
}

impl FromRequestParts<AppState> for AdminCtx {
    type Rejection = Denied;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Denied> {
        let ctx = Ctx::from_request_parts(parts, state).await?;
        if !ctx.is_admin() {
            return Err(Denied::App(AppError::Forbidden(
                "only admins can do this; ask an admin, or sign in as one".into(),
            )));
        }
        Ok(AdminCtx(ctx))
    }
}

impl FromRequestParts<AppState> for WorkspaceAdminCtx {
    type Rejection = Denied;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Denied> {
        let ctx = Ctx::from_request_parts(parts, state).await?;
        if !ctx.can_admin_integrations() {
            return Err(Denied::App(AppError::Forbidden(
                "only admins can do this; ask an admin of the workspace, or sign in as one".into(),
            )));
        }
        Ok(WorkspaceAdminCtx(ctx))
    }
}
