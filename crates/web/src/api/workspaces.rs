//! `/api/v1/workspaces`: the workspaces a token sees (docs/workspaces.md).

use axum::Json;
use axum::extract::State;

use crate::api::dto::WorkspaceOut;
use crate::auth::tokens::ApiReader;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/workspaces", tag = "workspaces",
    responses((status = 200, body = [WorkspaceOut], description = "Every workspace for a global token; the token's own for a workspace token."),
        (status = 401, body = Problem)))]
pub async fn list_workspaces(
    t: ApiReader,
    State(state): State<AppState>,
) -> Result<Json<Vec<WorkspaceOut>>, ApiError> {
    let vis = t.vis();
    let all = state.store().list_workspaces().await?;
    Ok(Json(
        all.iter()
            .filter(|w| vis.allows(w.id))
            .map(WorkspaceOut::from)
            .collect(),
    ))
}
