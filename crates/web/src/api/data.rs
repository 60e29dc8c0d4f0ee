//! `/api/v1/assets`, `/api/v1/findings`, `/api/v1/vulnerabilities`: filtered, keyset-paginated,
//! with `changed_since` for incremental pulls; assets also sorted.

use axum::Json;
use axum::extract::{Query, State};
use rampart_store::kev_index;

use crate::api::dto::{
    AssetOut, AssetPage, FindingOut, FindingPage, VulnerabilityOut, VulnerabilityPage,
};
use crate::auth::tokens::ApiReader;
use crate::error::{ApiError, Problem};
use crate::query::{self, AssetQuery, FindingQuery, VulnerabilityQuery};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/assets", tag = "data", params(AssetQuery),
    responses((status = 200, body = AssetPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn assets(
    t: ApiReader,
    State(state): State<AppState>,
    Query(q): Query<AssetQuery>,
) -> Result<Json<AssetPage>, ApiError> {
    let (_, page) = q.page(state.store().as_ref(), &t.vis()).await?;
    Ok(Json(AssetPage {
        items: page.items.iter().map(AssetOut::from).collect(),
        next_cursor: page.next.map(|n| n.encode()),
    }))
}

#[utoipa::path(get, path = "/api/v1/findings", tag = "data", params(FindingQuery),
    responses((status = 200, body = FindingPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn findings(
    t: ApiReader,
    State(state): State<AppState>,
    Query(q): Query<FindingQuery>,
) -> Result<Json<FindingPage>, ApiError> {
    let (filter, limit) = (q.filter()?, query::limit(&q.limit)?);
    let store = state.store();
    let vis = t.vis();
    let (items, next_cursor) = match q.order(None)? {
        None => {
            let page = store
                .findings_page(&vis, &filter, q.after()?, limit)
                .await?;
            (page.items, page.next.map(|n| n.to_string()))
        }
        Some(order) => {
            let page = store
                .findings_sorted(&vis, &filter, order, q.priority_after()?, limit)
                .await?;
            (page.items, page.next.map(|n| n.encode()))
        }
    };
    Ok(Json(FindingPage {
        items: items.iter().map(FindingOut::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/v1/vulnerabilities", tag = "data", params(VulnerabilityQuery),
    responses((status = 200, body = VulnerabilityPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn vulnerabilities(
    t: ApiReader,
    State(state): State<AppState>,
    Query(q): Query<VulnerabilityQuery>,
) -> Result<Json<VulnerabilityPage>, ApiError> {
    let page = state
        .store()
        .vulnerabilities_page(&t.vis(), &q.filter()?, q.after()?, query::limit(&q.limit)?)
        .await?;
    let kev = kev_index(
        state.store().as_ref(),
        page.items.iter().map(|v| &v.vulnerability.cve_id),
    )
    .await?;
    Ok(Json(VulnerabilityPage {
        items: page
            .items
            .iter()
            .map(|v| VulnerabilityOut::of(v, kev.get(&v.vulnerability.cve_id)))
            .collect(),
        next_cursor: page.next.map(|n| n.to_string()),
    }))
}
