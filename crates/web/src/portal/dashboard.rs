//! The dashboard.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use rampart_model::{Product, RunStatus};
use rampart_store::{Remediation, RemediationFilter, RemediationSort, RiskyAsset};

use crate::auth::extract::Ctx;
use crate::charts::{self, Bar};
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::posture;
use crate::portal::render::{self, when_opt};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    layout: Layout,
    /// When the last run finished: the numbers are as of then.
    as_of: String,
    /// The secure score of each Defender for Cloud tenant, with its trend.
    scores: Vec<posture::TenantView>,
    grid: Vec<(f64, f64)>,
    subscriptions: u64,
    unhealthy: u64,
    integrations: usize,
    assets_active: u64,
    assets_missing: u64,
    open: u64,
    fixed: u64,
    /// Open findings to act on now (issue 14): decision `immediate`, and past their due date.
    immediate: u64,
    overdue: u64,
    severity: Vec<Bar>,
    trend: String,
    trend_points: usize,
    /// The head of the remediation plan: accepted findings are left out, as on "Fix first".
    top_fixes: Vec<Remediation>,
    riskiest: Vec<RiskyAsset>,
    width: f64,
    height: f64,
}

pub async fn page(ctx: Ctx, State(state): State<AppState>) -> Result<Response, AppError> {
    let vis = ctx.vis();
    let store = state.store();
    // From the summaries kept as runs finish: the exact counts would aggregate every finding.
    let summary = store.summary(&vis, 10).await?;
    let now = chrono::Utc::now();
    // The overdue and immediate counts are the plan's, from the read of its head.
    let (plan, urgent) = store
        .remediations_and_counts(
            &vis,
            &RemediationFilter::default(),
            RemediationSort::Priority,
            now,
            0,
            5,
        )
        .await?;
    let counts = summary.counts;
    let integrations = store.list_integrations(&vis).await?;
    let s = counts.findings_open;
    let severity = charts::bars(&[
        ("critical", s.critical, "sev-critical"),
        ("high", s.high, "sev-high"),
        ("medium", s.medium, "sev-medium"),
        ("low", s.low, "sev-low"),
        ("unknown", s.unknown, "sev-unknown"),
    ]);
    // Open findings over time: what each successful full read saw, oldest first, for the first
    // Endpoint integration (one line per integration would need a legend; one is the common case).
    let mut trend = Vec::new();
    if let Some(i) = integrations.iter().find(|i| i.product == Product::Endpoint) {
        let runs = store.list_runs(&vis, i.id, 60).await?;
        trend = runs
            .iter()
            .rev()
            .filter(|r| r.status == RunStatus::Succeeded && r.mode == "full")
            .map(|r| r.findings.read)
            .collect();
    }
    let since = Utc::now() - chrono::Duration::days(posture::TREND_DAYS);
    let scores = posture::tenants(&store.posture_history(&vis, None, Some(since)).await?);
    render::page(&DashboardPage {
        layout: Layout::new(&ctx, "Dashboard", "dashboard"),
        as_of: when_opt(&summary.as_of),
        scores,
        grid: posture::percent_grid(),
        subscriptions: counts.subscriptions,
        unhealthy: counts.recommendations_unhealthy.total(),
        integrations: integrations.len(),
        assets_active: counts.assets_active,
        assets_missing: counts.assets_missing,
        open: s.total(),
        fixed: counts.findings_fixed,
        immediate: urgent.immediate,
        overdue: urgent.overdue,
        severity,
        trend_points: trend.len(),
        top_fixes: plan.items,
        riskiest: summary.riskiest,
        trend: charts::line(&trend),
        width: charts::WIDTH,
        height: charts::HEIGHT,
    })
}
