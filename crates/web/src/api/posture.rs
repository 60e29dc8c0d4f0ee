//! `/api/v1/posture`: Defender for Cloud secure scores (tenant and subscriptions), their history,
//! the controls, and the recommendations (filtered, keyset-paginated, with `changed_since`).

use axum::Json;
use axum::extract::{Query, State};
use rampart_model::export::rfc3339;
use rampart_store::{PosturePoint, StoredControlScore, StoredRecommendation};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::tokens::ApiReader;
use crate::error::{ApiError, Problem};
use crate::query::{self, PostureQuery, RecommendationQuery};
use crate::state::AppState;

/// A tenant's secure score over the subscriptions one sync captured, as Microsoft computes it:
/// Σ round(weight × current / max, 2) / Σ weight × 100 (`score_sum` / `weight_sum` × 100; a
/// weight of 0 counts as 1). Never an average of percentages, nor Σ weight·current / Σ weight·max.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantScoreOut {
    pub integration_id: i64,
    pub integration: String,
    /// 0–100, rounded to 2 decimals like Microsoft's query.
    pub percent: Option<f64>,
    /// Σ round(weight × current / max, 2) over the subscriptions.
    pub score_sum: f64,
    /// Σ weight over the subscriptions (a weight of 0 counting as 1).
    pub weight_sum: f64,
    /// Subscriptions that sync captured.
    pub subscriptions: u64,
    pub run_id: i64,
    pub captured_at: String,
}

impl From<&PosturePoint> for TenantScoreOut {
    fn from(p: &PosturePoint) -> Self {
        Self {
            integration_id: p.integration_id.get(),
            integration: p.integration.clone(),
            percent: p.percent,
            score_sum: p.parts.score_sum,
            weight_sum: p.parts.weight_sum,
            subscriptions: p.subscriptions,
            run_id: p.run_id.get(),
            captured_at: rfc3339(&p.captured_at),
        }
    }
}

/// How the last sync's read of a subscription went.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionReadOut {
    /// `ok`, `failed` or `skipped`.
    pub outcome: String,
    /// What failed (with Microsoft's error code), or why it was skipped.
    pub detail: Option<String>,
    pub run_id: i64,
    pub at: String,
}

/// A subscription with its latest secure score (kept from an older sync when the last one could
/// not read it: see `captured_at` and `last_read`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionScoreOut {
    pub integration_id: i64,
    pub integration: String,
    pub subscription_id: String,
    pub subscription_name: Option<String>,
    /// `Enabled`, `Warned`, `PastDue`, `Disabled` or `Deleted`, as last listed.
    pub state: Option<String>,
    pub current: Option<f64>,
    pub max: Option<f64>,
    /// 0–100.
    pub percent: Option<f64>,
    pub weight: Option<i64>,
    pub captured_at: Option<String>,
    pub last_read: Option<SubscriptionReadOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostureOut {
    /// The latest score of each tenant (Defender for Cloud integration).
    pub tenants: Vec<TenantScoreOut>,
    pub subscriptions: Vec<SubscriptionScoreOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ControlOut {
    pub integration_id: i64,
    pub integration: String,
    pub subscription_id: String,
    pub control_id: String,
    pub name: Option<String>,
    /// `null` when Microsoft sent the control without a score (unknown, not 0).
    pub current: Option<f64>,
    pub max: f64,
    /// 0–100; `null` when the score is unknown.
    pub percent: Option<f64>,
    pub weight: i64,
    pub healthy: i64,
    pub unhealthy: i64,
    pub not_applicable: i64,
    pub captured_at: String,
}

impl From<&StoredControlScore> for ControlOut {
    fn from(c: &StoredControlScore) -> Self {
        let k = &c.control;
        Self {
            integration_id: c.integration_id.get(),
            integration: c.integration.clone(),
            subscription_id: k.subscription_id.clone(),
            control_id: k.control_id.clone(),
            name: k.display_name.clone(),
            current: k.current,
            max: k.max,
            percent: k.fraction.map(|f| f * 100.0),
            weight: k.weight,
            healthy: k.healthy,
            unhealthy: k.unhealthy,
            not_applicable: k.not_applicable,
            captured_at: rfc3339(&c.captured_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationOut {
    pub id: i64,
    pub integration_id: i64,
    pub integration: String,
    pub subscription_id: String,
    pub assessment_id: String,
    pub assessment_key: String,
    pub resource_id: String,
    /// The Rampart asset of the assessed resource, when the same integration knows it.
    pub asset_id: Option<i64>,
    pub name: Option<String>,
    /// `Healthy`, `Unhealthy`, `NotApplicable`, or `Removed` (gone from Microsoft's answer).
    pub status: String,
    pub cause: Option<String>,
    pub severity: Option<String>,
    pub category: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub resolved_at: Option<String>,
    pub removed_at: Option<String>,
    pub reopened_count: u64,
    /// Microsoft's risk of this recommendation on this resource (assessments api-version
    /// 2025-05-04, with Defender CSPM); `null` when Microsoft sent none.
    pub risk: Option<RiskOut>,
}

/// `properties.risk` of an assessment.
#[derive(Debug, Serialize, ToSchema)]
pub struct RiskOut {
    /// `Low`, `Medium`, `High` or `Critical`.
    pub level: Option<String>,
    /// E.g. `Internet exposure`, `Sensitive data`.
    pub factors: Vec<String>,
    /// Attack path references in Defender for Cloud.
    pub attack_paths: Vec<String>,
    /// Whether the level reflects the resource's context (not the static default).
    pub contextual: Option<bool>,
}

impl From<&StoredRecommendation> for RecommendationOut {
    fn from(s: &StoredRecommendation) -> Self {
        let r = &s.recommendation;
        Self {
            id: s.id,
            integration_id: s.integration_id.get(),
            integration: s.integration.clone(),
            subscription_id: r.subscription_id.clone(),
            assessment_id: r.assessment_id.clone(),
            assessment_key: r.key.clone(),
            resource_id: r.resource_id.clone(),
            asset_id: s.asset_id,
            name: r.display_name.clone(),
            status: r.status.clone(),
            cause: r.cause.clone(),
            severity: r.severity.clone(),
            category: r.category.clone(),
            first_seen: rfc3339(&s.first_observed),
            last_seen: rfc3339(&s.last_observed),
            resolved_at: s.resolved_at.as_ref().map(rfc3339),
            removed_at: s.removed_at.as_ref().map(rfc3339),
            reopened_count: s.reopened_count,
            risk: r.risk.as_ref().map(|k| RiskOut {
                level: k.level.clone(),
                factors: k.factors.clone(),
                attack_paths: k.attack_paths.clone(),
                contextual: k.contextual,
            }),
        }
    }
}

/// A page of recommendations; pass `next_cursor` as `after` for the next one (`null`: last page).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationPage {
    pub items: Vec<RecommendationOut>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/posture", tag = "posture", params(PostureQuery),
    responses((status = 200, body = PostureOut), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn scores(
    t: ApiReader,
    State(state): State<AppState>,
    Query(q): Query<PostureQuery>,
) -> Result<Json<PostureOut>, ApiError> {
    let store = state.store();
    let vis = t.vis();
    let integration = q.integration()?;
    let since = q.changed_since()?;
    let subscription = q.subscription();
    let history = store.posture_history(&vis, integration, None).await?;
    // The newest point of each integration (history is oldest first).
    let mut tenants: Vec<TenantScoreOut> = Vec::new();
    for p in history.iter().rev() {
        if !tenants
            .iter()
            .any(|t| t.integration_id == p.integration_id.get())
            && since.is_none_or(|t| p.captured_at > t)
        {
            tenants.push(p.into());
        }
    }
    tenants.sort_by_key(|t| t.integration_id);
    let scores = store.latest_posture(&vis, integration).await?;
    let subscriptions = store
        .list_subscriptions(&vis, integration)
        .await?
        .into_iter()
        .filter(|s| {
            subscription
                .as_deref()
                .is_none_or(|id| s.subscription.subscription_id == id)
        })
        .filter_map(|s| {
            let score = scores.iter().find(|p| {
                p.integration_id == s.integration_id
                    && p.score.subscription_id == s.subscription.subscription_id
            });
            let changed = score
                .map(|p| p.captured_at)
                .into_iter()
                .chain(s.last_read.as_ref().map(|r| r.at))
                .max();
            if let Some(t) = since
                && changed.is_none_or(|c| c <= t)
            {
                return None;
            }
            Some(SubscriptionScoreOut {
                integration_id: s.integration_id.get(),
                integration: s.integration.clone(),
                subscription_id: s.subscription.subscription_id.clone(),
                subscription_name: s
                    .subscription
                    .display_name
                    .clone()
                    .or_else(|| score.and_then(|p| p.score.subscription_name.clone())),
                state: s.subscription.state.clone(),
                current: score.map(|p| p.score.current),
                max: score.map(|p| p.score.max),
                percent: score.map(|p| p.percent),
                weight: score.map(|p| p.score.weight),
                captured_at: score.map(|p| rfc3339(&p.captured_at)),
                last_read: s.last_read.as_ref().map(|r| SubscriptionReadOut {
                    outcome: r.outcome.as_str().into(),
                    detail: r.outcome.detail().map(str::to_owned),
                    run_id: r.run_id.get(),
                    at: rfc3339(&r.at),
                }),
            })
        })
        .collect();
    Ok(Json(PostureOut {
        tenants,
        subscriptions,
    }))
}

#[utoipa::path(get, path = "/api/v1/posture/history", tag = "posture", params(PostureQuery),
    responses((status = 200, body = [TenantScoreOut], description = "One point per sync and tenant, oldest first; `changed_since` keeps the points captured after it."),
        (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn history(
    t: ApiReader,
    State(state): State<AppState>,
    Query(q): Query<PostureQuery>,
) -> Result<Json<Vec<TenantScoreOut>>, ApiError> {
    let since = q.changed_since()?;
    let points = state
        .store()
        .posture_history(&t.vis(), q.integration()?, since)
        .await?;
    Ok(Json(
        points
            .iter()
            .filter(|p| since.is_none_or(|t| p.captured_at > t))
            .map(TenantScoreOut::from)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/posture/controls", tag = "posture", params(PostureQuery),
    responses((status = 200, body = [ControlOut], description = "The latest controls of each subscription."),
        (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn controls(
    t: ApiReader,
    State(state): State<AppState>,
    Query(q): Query<PostureQuery>,
) -> Result<Json<Vec<ControlOut>>, ApiError> {
    let since = q.changed_since()?;
    let controls = state
        .store()
        .latest_controls(&t.vis(), q.integration()?, q.subscription().as_deref())
        .await?;
    Ok(Json(
        controls
            .iter()
            .filter(|c| since.is_none_or(|t| c.captured_at > t))
            .map(ControlOut::from)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/posture/recommendations", tag = "posture", params(RecommendationQuery),
    responses((status = 200, body = RecommendationPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn recommendations(
    t: ApiReader,
    State(state): State<AppState>,
    Query(q): Query<RecommendationQuery>,
) -> Result<Json<RecommendationPage>, ApiError> {
    let page = state
        .store()
        .recommendations_page(&t.vis(), &q.filter()?, q.after()?, query::limit(&q.limit)?)
        .await?;
    Ok(Json(RecommendationPage {
        items: page.items.iter().map(RecommendationOut::from).collect(),
        next_cursor: page.next.map(|n| n.to_string()),
    }))
}
