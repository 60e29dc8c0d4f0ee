//! Posture (Defender for Cloud): the tenant's secure score and its trend, the score of every
//! subscription with the outcome of its last read, the controls, and the failing
//! recommendations with filters and pagination.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::Utc;
use rampart_model::IntegrationId;
use rampart_model::Product;
use rampart_store::{
    PosturePoint, StoredControlScore, StoredPostureScore, StoredRecommendation, StoredSubscription,
};

use crate::auth::extract::Ctx;
use crate::charts;
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::render::{self, when, when_opt};
use crate::query::{self, RecommendationQuery};
use crate::state::AppState;

/// How far back the trend charts go.
pub const TREND_DAYS: i64 = 90;
/// Controls shown at most (all subscriptions together); a subscription filter shows its own.
const MAX_CONTROLS: usize = 300;

/// One integration's tenant score: the latest point, and the trend line of its history.
pub struct TenantView {
    pub integration: String,
    pub percent: String,
    /// How the percent was made, in Microsoft's terms (the two sums).
    pub formula: String,
    pub captured: String,
    pub subscriptions: u64,
    pub trend: String,
    pub points: usize,
}

impl TenantView {
    /// `history` is one integration's points, oldest first.
    pub fn of(history: &[&PosturePoint]) -> Option<Self> {
        let last = history.last()?;
        let values: Vec<f64> = history.iter().filter_map(|p| p.percent).collect();
        Some(Self {
            integration: last.integration.clone(),
            percent: pct(last.percent),
            formula: format!(
                "Σ weight × current ÷ max = {:.2} over Σ weight = {:.0}, as Microsoft weights subscriptions",
                last.parts.score_sum, last.parts.weight_sum
            ),
            captured: when(&last.captured_at),
            subscriptions: last.subscriptions,
            trend: charts::percent_line(&values),
            points: values.len(),
        })
    }
}

fn pct(p: Option<f64>) -> String {
    p.map_or("—".into(), |p| format!("{p:.1} %"))
}

/// The tenants of every Cloud integration in the history, in integration order.
pub fn tenants(history: &[PosturePoint]) -> Vec<TenantView> {
    let mut ids: Vec<IntegrationId> = history.iter().map(|p| p.integration_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.iter()
        .filter_map(|id| {
            let points: Vec<&PosturePoint> =
                history.iter().filter(|p| p.integration_id == *id).collect();
            TenantView::of(&points)
        })
        .collect()
}

pub struct SubscriptionRow {
    pub name: String,
    pub id: String,
    pub integration: String,
    pub state: String,
    pub percent: String,
    /// Width of the score bar, 0–100.
    pub bar: f64,
    pub points: String,
    pub captured: String,
    /// `ok`, `failed`, `skipped` or `never`.
    pub read: &'static str,
    pub read_at: String,
    pub read_detail: String,
    pub link: String,
}

fn subscription_rows(
    subs: &[StoredSubscription],
    scores: &[StoredPostureScore],
) -> Vec<SubscriptionRow> {
    let mut rows: Vec<SubscriptionRow> = subs
        .iter()
        .map(|s| {
            let sub = &s.subscription;
            let score = scores.iter().find(|p| {
                p.integration_id == s.integration_id
                    && p.score.subscription_id == sub.subscription_id
            });
            let (read, read_at, read_detail) = match &s.last_read {
                None => ("never", "—".to_owned(), String::new()),
                Some(r) => (
                    r.outcome.as_str(),
                    when(&r.at),
                    r.outcome.detail().unwrap_or_default().to_owned(),
                ),
            };
            SubscriptionRow {
                name: sub
                    .display_name
                    .clone()
                    .or_else(|| score.and_then(|p| p.score.subscription_name.clone()))
                    .unwrap_or_else(|| sub.subscription_id.clone()),
                id: sub.subscription_id.clone(),
                integration: s.integration.clone(),
                state: sub.state.clone().unwrap_or_else(|| "—".into()),
                percent: pct(score.map(|p| p.percent)),
                bar: score.map_or(0.0, |p| p.percent.clamp(0.0, 100.0)),
                points: score.map_or("—".into(), |p| {
                    format!("{:.2} of {:.0}", p.score.current, p.score.max)
                }),
                captured: when_opt(&score.map(|p| p.captured_at)),
                read,
                read_at,
                read_detail,
                link: query::encode(&[
                    ("subscription", &Some(sub.subscription_id.clone())),
                    ("integration", &Some(s.integration_id.to_string())),
                ]),
            }
        })
        .collect();
    // Lowest score first: what needs attention.
    rows.sort_by(|a, b| a.bar.total_cmp(&b.bar).then(a.name.cmp(&b.name)));
    rows
}

pub struct ControlRow {
    pub name: String,
    pub subscription: String,
    pub percent: String,
    pub points: String,
    pub unhealthy: i64,
    pub healthy: i64,
    pub not_applicable: i64,
}

impl ControlRow {
    fn of(c: &StoredControlScore) -> Self {
        let k = &c.control;
        Self {
            name: k
                .display_name
                .clone()
                .unwrap_or_else(|| k.control_id.clone()),
            subscription: k.subscription_id.clone(),
            // A control Microsoft sent without a score: unknown, not 0.
            percent: k
                .fraction
                .map_or("unknown".into(), |f| format!("{:.0} %", f * 100.0)),
            points: match k.current {
                Some(c) => format!("{c:.2} of {:.0}", k.max),
                None => format!("? of {:.0}", k.max),
            },
            unhealthy: k.unhealthy,
            healthy: k.healthy,
            not_applicable: k.not_applicable,
        }
    }
}

/// A recommendation as the tables show it (posture page and asset page).
pub struct RecommendationRow {
    pub name: String,
    pub status: String,
    pub severity: String,
    pub category: String,
    pub resource: String,
    pub asset_id: Option<i64>,
    pub subscription: String,
    pub first_seen: String,
    pub resolved: String,
    pub integration: String,
    /// Microsoft's risk level (`—` when none was sent).
    pub risk: String,
    /// Risk factors and attack paths, in words (empty when none).
    pub risk_detail: String,
}

impl RecommendationRow {
    pub fn of(s: &StoredRecommendation) -> Self {
        let r = &s.recommendation;
        Self {
            name: r.display_name.clone().unwrap_or_else(|| r.key.clone()),
            status: r.status.clone(),
            severity: r.severity.clone().unwrap_or_else(|| "—".into()),
            category: r.category.clone().unwrap_or_else(|| "—".into()),
            resource: r.resource_id.clone(),
            asset_id: s.asset_id,
            subscription: r.subscription_id.clone(),
            first_seen: when(&s.first_observed),
            resolved: when_opt(&s.resolved_at.or(s.removed_at)),
            integration: s.integration.clone(),
            risk: r
                .risk
                .as_ref()
                .and_then(|k| k.level.clone())
                .unwrap_or_else(|| "—".into()),
            risk_detail: r.risk.as_ref().map(risk_detail).unwrap_or_default(),
        }
    }
}

/// `Internet exposure, Sensitive data; on 1 attack path`.
fn risk_detail(k: &rampart_model::RecommendationRisk) -> String {
    let mut parts = Vec::new();
    if !k.factors.is_empty() {
        parts.push(k.factors.join(", "));
    }
    match k.attack_paths.len() {
        0 => {}
        1 => parts.push("on 1 attack path".into()),
        n => parts.push(format!("on {n} attack paths")),
    }
    parts.join("; ")
}

#[derive(Template)]
#[template(path = "posture.html")]
struct PosturePage {
    layout: Layout,
    has_cloud: bool,
    tenants: Vec<TenantView>,
    subscriptions: Vec<SubscriptionRow>,
    controls: Vec<ControlRow>,
    controls_cut: bool,
    q: RecommendationQuery,
    /// The status filter as the form shows it (`Unhealthy` unless chosen otherwise).
    status: String,
    recommendations: Vec<RecommendationRow>,
    next: Option<String>,
    first: Option<String>,
    width: f64,
    height: f64,
    grid: Vec<(f64, f64)>,
}

impl PosturePage {
    fn val(&self, field: &str) -> String {
        let q = &self.q;
        match field {
            "q" => &q.q,
            "severity" => &q.severity,
            "subscription" => &q.subscription,
            _ => &q.integration,
        }
        .clone()
        .unwrap_or_default()
    }
}

/// Grid lines of the score charts: (y, label) at 0, 50 and 100 %.
pub fn percent_grid() -> Vec<(f64, f64)> {
    [0.0, 50.0, 100.0]
        .into_iter()
        .map(|v| (charts::percent_y(v), v))
        .collect()
}

fn recommendation_params(q: &RecommendationQuery) -> Vec<(&'static str, &Option<String>)> {
    vec![
        ("integration", &q.integration),
        ("subscription", &q.subscription),
        ("status", &q.status),
        ("severity", &q.severity),
        ("q", &q.q),
        ("limit", &q.limit),
    ]
}

pub async fn page(
    ctx: Ctx,
    State(state): State<AppState>,
    Query(mut q): Query<RecommendationQuery>,
) -> Result<Response, AppError> {
    let vis = ctx.vis();
    let store = state.store();
    let has_cloud = store
        .list_integrations(&vis)
        .await?
        .iter()
        .any(|i| i.product == Product::Cloud);
    // The page is about what fails: without a status chosen, it lists the unhealthy ones.
    if q.status.is_none() {
        q.status = Some("Unhealthy".into());
    }
    let filter = q.filter()?;
    let since = Utc::now() - chrono::Duration::days(TREND_DAYS);
    let history = store
        .posture_history(&vis, filter.integration, Some(since))
        .await?;
    let scores = store.latest_posture(&vis, filter.integration).await?;
    let subs = store.list_subscriptions(&vis, filter.integration).await?;
    let mut controls = store
        .latest_controls(&vis, filter.integration, filter.subscription.as_deref())
        .await?;
    let controls_cut = controls.len() > MAX_CONTROLS;
    controls.truncate(MAX_CONTROLS);
    let page = store
        .recommendations_page(&vis, &filter, q.after()?, query::limit(&q.limit)?)
        .await?;
    let next = page
        .next
        .map(|n| {
            let n = Some(n.to_string());
            let mut params = recommendation_params(&q);
            params.push(("after", &n));
            query::encode(&params)
        })
        .filter(|s| !s.is_empty());
    render::page(&PosturePage {
        layout: Layout::new(&ctx, "Posture", "posture"),
        has_cloud,
        tenants: tenants(&history),
        subscriptions: subscription_rows(&subs, &scores),
        controls: controls.iter().map(ControlRow::of).collect(),
        controls_cut,
        status: filter.status.clone().unwrap_or_default(),
        recommendations: page.items.iter().map(RecommendationRow::of).collect(),
        next,
        first: q
            .after
            .is_some()
            .then(|| query::encode(&recommendation_params(&q))),
        width: charts::WIDTH,
        height: charts::HEIGHT,
        grid: percent_grid(),
        q,
    })
}
