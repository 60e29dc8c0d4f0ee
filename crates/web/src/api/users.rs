//! `/api/v1/users`: list portal accounts and remove one (admin-scope tokens). Never the last
//! admin. Accounts are created on the server (`rampart user add`), where the password is typed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rampart_model::export::rfc3339;
use rampart_store::User;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::tokens::ApiAdmin;
use crate::error::{ApiError, AppError, Problem};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub id: i64,
    pub name: String,
    /// `admin` or `viewer`.
    pub role: String,
    pub created_at: String,
    /// The account signed in with a one-time password and has not chosen its own yet.
    pub must_change_password: bool,
}

impl From<&User> for UserOut {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            name: u.name.clone(),
            role: u.role.as_str().into(),
            created_at: rfc3339(&u.created_at),
            must_change_password: u.must_change_password,
        }
    }
}

/// Accounts span workspaces: only a global token manages them.
fn global_only(token: &rampart_store::ApiToken) -> Result<(), ApiError> {
    match token.workspace {
        None => Ok(()),
        Some(_) => Err(ApiError(AppError::Forbidden(
            "this API token is scoped to one workspace; managing accounts needs a global admin-scope token".into(),
        ))),
    }
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = [UserOut]), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
pub async fn list_users(
    ApiAdmin(token): ApiAdmin,
    State(state): State<AppState>,
) -> Result<Json<Vec<UserOut>>, ApiError> {
    global_only(&token)?;
    let users = state.store().list_users().await?;
    Ok(Json(users.iter().map(UserOut::from).collect()))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "the account is the last admin", body = Problem)))]
pub async fn delete_user(
    ApiAdmin(token): ApiAdmin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    global_only(&token)?;
    let user = state.store().get_user(id).await?;
    let actor = format!("api:{}", token.name);
    crate::auth::users::remove_user(state.store().as_ref(), &user, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
