//! `/api/v1/remediations`: the remediation plan ("Fix first"), open findings grouped by the fix
//! that closes them, ranked by the priority the fix removes (docs/prioritisation.md, "The
//! remediation plan").

use axum::Json;
use axum::extract::{Query, State};
use chrono::Utc;
use rampart_store::Remediation;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::tokens::ApiReader;
use crate::error::{ApiError, Problem};
use crate::query::RemediationQuery;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct RemediationOut {
    /// The update or upgrade (Defender for Endpoint's recommended update, or "Upgrade VENDOR
    /// NAME to VERSION"); an exception of scope `fix` names it so.
    pub fix: String,
    /// The sum of the priorities of the open findings it closes that no exception covers.
    pub priority_removed: f64,
    /// The highest of those priorities.
    pub max_priority: Option<f64>,
    pub findings: u64,
    pub assets: u64,
    pub overdue: u64,
    pub immediate: u64,
    pub cves: Vec<String>,
    /// Microsoft's reference of the recommendation.
    pub reference: Option<String>,
    /// Microsoft's page about it, where Rampart knows one.
    pub link: Option<String>,
}

impl From<&Remediation> for RemediationOut {
    fn from(r: &Remediation) -> Self {
        Self {
            fix: r.fix.clone(),
            priority_removed: r.priority_removed,
            max_priority: r.max_priority,
            findings: r.findings,
            assets: r.assets,
            overdue: r.overdue,
            immediate: r.immediate,
            cves: r.cves.iter().map(ToString::to_string).collect(),
            reference: r.reference.clone(),
            link: r.link.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RemediationPage {
    pub items: Vec<RemediationOut>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/remediations", tag = "data", params(RemediationQuery),
    responses((status = 200, body = RemediationPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn list_remediations(
    t: ApiReader,
    State(state): State<AppState>,
    Query(q): Query<RemediationQuery>,
) -> Result<Json<RemediationPage>, ApiError> {
    let page = state
        .store()
        .remediations(
            &t.vis(),
            &q.filter()?,
            q.sort()?,
            Utc::now(),
            q.offset()?,
            q.limit()?,
        )
        .await?;
    Ok(Json(RemediationPage {
        items: page.items.iter().map(RemediationOut::from).collect(),
        next_cursor: page.next.map(|n| n.to_string()),
    }))
}
