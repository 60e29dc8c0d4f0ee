//! "Fix first": the remediation plan, open findings grouped by the fix that closes them and
//! ranked by the priority the fix removes (docs/prioritisation.md, "The remediation plan"), with
//! the overdue and immediate counts it works down. Administrators accept a fix from here.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::Utc;
use rampart_store::Remediation;

use crate::auth::extract::Ctx;
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::render;
use crate::query::{self, RemediationQuery};
use crate::state::AppState;

/// CVEs shown per fix; the rest are counted.
const CVES_SHOWN: usize = 5;

pub struct FixRow {
    pub rank: u64,
    pub fix: String,
    pub link: Option<String>,
    pub priority_removed: String,
    pub max_priority: String,
    pub findings: u64,
    pub assets: u64,
    pub overdue: u64,
    pub immediate: u64,
    pub cves: Vec<String>,
    pub more_cves: usize,
    /// The query of the exception form, for this fix.
    pub accept: String,
    /// The query of the findings list of the first CVE (the fix itself is not a filter there).
    pub reference: String,
}

#[derive(Template)]
#[template(path = "fix_first.html")]
struct FixFirstPage {
    layout: Layout,
    overdue: u64,
    immediate: u64,
    rows: Vec<FixRow>,
    integration: String,
    sort: String,
    first: Option<String>,
    next: Option<String>,
}

pub async fn page(
    ctx: Ctx,
    State(state): State<AppState>,
    Query(q): Query<RemediationQuery>,
) -> Result<Response, AppError> {
    let store = state.store();
    let now = Utc::now();
    let (offset, limit) = (q.offset()?, q.limit()?);
    // The counts are the plan's own (its integration filter included), from the same read.
    let (page, urgent) = store
        .remediations_and_counts(&ctx.vis(), &q.filter()?, q.sort()?, now, offset, limit)
        .await?;
    let integration = q.filter()?.integration.map(|i| i.to_string());
    let rows = page
        .items
        .iter()
        .enumerate()
        .map(|(n, r)| row(u64::from(offset) + n as u64 + 1, r, &integration))
        .collect();
    let keep = |after: Option<String>| {
        query::encode(&[
            ("integration", &q.integration),
            ("sort", &q.sort),
            ("limit", &q.limit),
            ("after", &after),
        ])
    };
    render::page(&FixFirstPage {
        layout: Layout::new(&ctx, "Fix first", "fix-first"),
        overdue: urgent.overdue,
        immediate: urgent.immediate,
        rows,
        integration: integration.clone().unwrap_or_default(),
        sort: q.sort.clone().unwrap_or_default(),
        first: (offset > 0).then(|| keep(None)),
        next: page.next.map(|n| keep(Some(n.to_string()))),
    })
}

fn row(rank: u64, r: &Remediation, integration: &Option<String>) -> FixRow {
    FixRow {
        rank,
        fix: r.fix.clone(),
        link: r.link.clone(),
        priority_removed: format!("{:.0}", r.priority_removed),
        max_priority: r.max_priority.map_or("—".into(), |p| format!("{p:.0}")),
        findings: r.findings,
        assets: r.assets,
        overdue: r.overdue,
        immediate: r.immediate,
        cves: r
            .cves
            .iter()
            .take(CVES_SHOWN)
            .map(ToString::to_string)
            .collect(),
        more_cves: r.cves.len().saturating_sub(CVES_SHOWN),
        accept: query::encode(&[
            ("scope", &Some("fix".to_owned())),
            ("target", &Some(r.fix.clone())),
            ("integration", integration),
        ]),
        reference: r.reference.clone().unwrap_or_default(),
    }
}
