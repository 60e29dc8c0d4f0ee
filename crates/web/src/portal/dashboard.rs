//! The dashboard and the posture page.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use rampart_model::{Product, RunStatus};
use rampart_store::{RiskyAsset, TopFix};

use crate::auth::extract::Ctx;
use crate::charts::{self, Bar};
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::render;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    layout: Layout,
    integrations: usize,
    assets_active: u64,
    assets_missing: u64,
    open: u64,
    fixed: u64,
    severity: Vec<Bar>,
    trend: String,
    trend_points: usize,
    top_fixes: Vec<TopFix>,
    riskiest: Vec<RiskyAsset>,
    width: f64,
    height: f64,
}

pub async fn page(ctx: Ctx, State(state): State<AppState>) -> Result<Response, AppError> {
    let store = state.store();
    let counts = store.counts(None).await?;
    let integrations = store.list_integrations().await?;
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
        let runs = store.list_runs(i.id, 60).await?;
        trend = runs
            .iter()
            .rev()
            .filter(|r| r.status == RunStatus::Succeeded && r.mode == "full")
            .map(|r| r.findings.read)
            .collect();
    }
    render::page(&DashboardPage {
        layout: Layout::new(&ctx, "Dashboard", "dashboard"),
        integrations: integrations.len(),
        assets_active: counts.assets_active,
        assets_missing: counts.assets_missing,
        open: s.total(),
        fixed: counts.findings_fixed,
        severity,
        trend_points: trend.len(),
        top_fixes: store.top_fixes(10).await?,
        riskiest: store.riskiest_assets(10).await?,
        trend: charts::line(&trend),
        width: charts::WIDTH,
        height: charts::HEIGHT,
    })
}

#[derive(Template)]
#[template(path = "posture.html")]
struct PosturePage {
    layout: Layout,
    has_cloud: bool,
}

pub async fn posture(ctx: Ctx, State(state): State<AppState>) -> Result<Response, AppError> {
    let has_cloud = state
        .store()
        .list_integrations()
        .await?
        .iter()
        .any(|i| i.product == Product::Cloud);
    render::page(&PosturePage {
        layout: Layout::new(&ctx, "Posture", "posture"),
        has_cloud,
    })
}
