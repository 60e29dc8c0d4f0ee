//! Assets, vulnerabilities and findings: filtered, keyset-paginated tables, detail pages and CSV
//! downloads of the current filter.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use rampart_model::{CveId, FindingStatus};
use rampart_store::{
    AssetFilter, FindingFilter, StoredAsset, StoredFinding, StoredVulnerability,
    VulnerabilityFilter,
};

use crate::auth::extract::Ctx;
use crate::csv;
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::render::{self, when_opt};
use crate::query::{self, AssetQuery, FindingQuery, VulnerabilityQuery};
use crate::state::AppState;

pub struct AssetRow {
    pub id: i64,
    pub name: String,
    pub platform: String,
    pub version: String,
    pub health: String,
    pub exposure: String,
    pub risk: String,
    pub tags: String,
    pub status: &'static str,
    pub last_seen: String,
    pub integration: String,
}

fn or_dash(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "—".into())
}

impl AssetRow {
    pub fn of(s: &StoredAsset) -> Self {
        let a = &s.asset;
        Self {
            id: s.id,
            name: a.name.clone().unwrap_or_else(|| a.source_id.clone()),
            platform: or_dash(&a.os_platform),
            version: or_dash(&a.os_version),
            health: or_dash(&a.health_status),
            exposure: or_dash(&a.exposure_level),
            risk: or_dash(&a.risk_score),
            tags: a.tags.join(", "),
            status: s.status.as_str(),
            last_seen: when_opt(&a.last_seen.or(Some(s.last_observed))),
            integration: s.integration.clone(),
        }
    }
}

pub struct FindingRow {
    pub asset_id_link: String,
    pub asset: String,
    pub cve: String,
    pub software: String,
    pub severity: String,
    pub cvss: String,
    pub exploit: String,
    pub update: String,
    pub status: &'static str,
    pub first_seen: String,
    pub fixed_at: String,
}

impl FindingRow {
    pub fn of(s: &StoredFinding) -> Self {
        let f = &s.finding;
        Self {
            asset_id_link: query::encode(&[
                ("asset", &Some(f.key.asset_source_id.clone())),
                ("integration", &Some(s.integration_id.to_string())),
            ]),
            asset: f
                .asset_name
                .clone()
                .unwrap_or_else(|| f.key.asset_source_id.clone()),
            cve: f.key.cve_id.to_string(),
            software: format!(
                "{} {} {}",
                f.key.software_vendor, f.key.software_name, f.key.software_version
            ),
            severity: f.severity.map_or("—".into(), |s| s.as_str().to_lowercase()),
            cvss: f.cvss.map_or("—".into(), |c| format!("{c:.1}")),
            exploit: or_dash(&f.exploitability),
            update: or_dash(&f.recommended_update),
            status: s.status.as_str(),
            first_seen: when_opt(&f.first_seen.or(Some(s.first_observed))),
            fixed_at: when_opt(&s.fixed_at),
        }
    }
}

pub struct VulnRow {
    pub cve: String,
    pub severity: String,
    pub cvss: String,
    pub epss: String,
    pub exploits: String,
    pub exposed: u64,
    pub published: String,
    pub description: String,
}

impl VulnRow {
    pub fn of(s: &StoredVulnerability) -> Self {
        let v = &s.vulnerability;
        let mut flags = Vec::new();
        if v.public_exploit {
            flags.push("public");
        }
        if v.exploit_verified {
            flags.push("verified");
        }
        if v.exploit_in_kit {
            flags.push("in kit");
        }
        Self {
            cve: v.cve_id.to_string(),
            severity: v.severity.map_or("—".into(), |s| s.as_str().to_lowercase()),
            cvss: v.cvss.map_or("—".into(), |c| format!("{c:.1}")),
            epss: v.epss.map_or("—".into(), |e| format!("{:.1} %", e * 100.0)),
            exploits: if flags.is_empty() {
                "—".into()
            } else {
                flags.join(", ")
            },
            exposed: s.exposed_assets,
            published: when_opt(&v.published_on),
            description: v
                .description
                .as_deref()
                .unwrap_or("")
                .chars()
                .take(160)
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "assets.html")]
struct AssetsPage {
    layout: Layout,
    q: AssetQuery,
    rows: Vec<AssetRow>,
    next: Option<String>,
    csv: String,
    first: Option<String>,
}

fn v(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

impl AssetsPage {
    fn val(&self, field: &str) -> String {
        let q = &self.q;
        v(match field {
            "q" => &q.q,
            "status" => &q.status,
            "platform" => &q.platform,
            "health" => &q.health,
            "exposure" => &q.exposure,
            "tag" => &q.tag,
            _ => &q.integration,
        })
    }
}

fn asset_params(q: &AssetQuery) -> Vec<(&'static str, &Option<String>)> {
    vec![
        ("q", &q.q),
        ("status", &q.status),
        ("platform", &q.platform),
        ("health", &q.health),
        ("exposure", &q.exposure),
        ("tag", &q.tag),
        ("integration", &q.integration),
        ("limit", &q.limit),
    ]
}

fn with_after<'a>(
    mut params: Vec<(&'static str, &'a Option<String>)>,
    after: &'a Option<String>,
) -> String {
    params.push(("after", after));
    query::encode(&params)
}

pub async fn assets(
    ctx: Ctx,
    State(state): State<AppState>,
    Query(q): Query<AssetQuery>,
) -> Result<Response, AppError> {
    let page = state
        .store()
        .assets_page(&q.filter()?, q.after()?, query::limit(&q.limit)?)
        .await?;
    let next = page.next.map(|n| Some(n.to_string()));
    render::page(&AssetsPage {
        layout: Layout::new(&ctx, "Assets", "assets"),
        rows: page.items.iter().map(AssetRow::of).collect(),
        next: next.map(|n| with_after(asset_params(&q), &n)),
        csv: query::encode(&asset_params(&q)),
        first: q.after.is_some().then(|| query::encode(&asset_params(&q))),
        q,
    })
}

pub async fn assets_csv(
    _ctx: Ctx,
    State(state): State<AppState>,
    Query(q): Query<AssetQuery>,
) -> Result<Response, AppError> {
    Ok(csv::assets(state.store().clone(), q.filter()?))
}

#[derive(Template)]
#[template(path = "asset.html")]
struct AssetPage {
    layout: Layout,
    row: AssetRow,
    source_id: String,
    ips: String,
    findings: Vec<FindingRow>,
    more: Option<String>,
}

pub async fn asset(
    ctx: Ctx,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let not_found = || AppError::NotFound(format!("there is no asset with id {id}"));
    // Keyset pages are in id order: the first asset after id - 1 is this one, if it exists.
    let page = state
        .store()
        .assets_page(&AssetFilter::default(), Some(id.saturating_sub(1)), 1)
        .await?;
    let stored = page
        .items
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(not_found)?;
    let filter = FindingFilter {
        integration: Some(stored.integration_id),
        asset_source_id: Some(stored.asset.source_id.clone()),
        status: Some(FindingStatus::Open),
        ..FindingFilter::default()
    };
    let findings = state.store().findings_page(&filter, None, 200).await?;
    let more = findings.next.map(|_| {
        query::encode(&[
            ("asset", &Some(stored.asset.source_id.clone())),
            ("integration", &Some(stored.integration_id.to_string())),
            ("status", &Some("open".to_owned())),
        ])
    });
    render::page(&AssetPage {
        layout: Layout::new(&ctx, "Asset", "assets"),
        source_id: stored.asset.source_id.clone(),
        ips: stored.asset.ip_addresses.join(", "),
        row: AssetRow::of(&stored),
        findings: findings.items.iter().map(FindingRow::of).collect(),
        more,
    })
}

#[derive(Template)]
#[template(path = "vulnerabilities.html")]
struct VulnsPage {
    layout: Layout,
    q: VulnerabilityQuery,
    exposed: bool,
    rows: Vec<VulnRow>,
    next: Option<String>,
    csv: String,
    first: Option<String>,
}

fn vuln_params(q: &VulnerabilityQuery) -> Vec<(&'static str, &Option<String>)> {
    vec![
        ("q", &q.q),
        ("severity", &q.severity),
        ("min_severity", &q.min_severity),
        ("exposed", &q.exposed),
        ("integration", &q.integration),
        ("limit", &q.limit),
    ]
}

pub async fn vulnerabilities(
    ctx: Ctx,
    State(state): State<AppState>,
    Query(q): Query<VulnerabilityQuery>,
) -> Result<Response, AppError> {
    let filter = q.filter()?;
    let page = state
        .store()
        .vulnerabilities_page(&filter, q.after()?, query::limit(&q.limit)?)
        .await?;
    let next = page.next.map(|n| Some(n.to_string()));
    render::page(&VulnsPage {
        layout: Layout::new(&ctx, "Vulnerabilities", "vulnerabilities"),
        exposed: filter.exposed_only,
        rows: page.items.iter().map(VulnRow::of).collect(),
        next: next.map(|n| with_after(vuln_params(&q), &n)),
        csv: query::encode(&vuln_params(&q)),
        first: q.after.is_some().then(|| query::encode(&vuln_params(&q))),
        q,
    })
}

pub async fn vulnerabilities_csv(
    _ctx: Ctx,
    State(state): State<AppState>,
    Query(q): Query<VulnerabilityQuery>,
) -> Result<Response, AppError> {
    Ok(csv::vulnerabilities(state.store().clone(), q.filter()?))
}

#[derive(Template)]
#[template(path = "vulnerability.html")]
struct VulnPage {
    layout: Layout,
    row: VulnRow,
    vector: String,
    description: String,
    findings: Vec<FindingRow>,
    more: Option<String>,
}

pub async fn vulnerability(
    ctx: Ctx,
    State(state): State<AppState>,
    Path(cve): Path<String>,
) -> Result<Response, AppError> {
    let cve: CveId = cve
        .parse()
        .map_err(|_| AppError::NotFound("that is not a CVE id".into()))?;
    let filter = VulnerabilityFilter {
        search: Some(cve.to_string()),
        ..VulnerabilityFilter::default()
    };
    let page = state
        .store()
        .vulnerabilities_page(&filter, None, 1000)
        .await?;
    let stored = page
        .items
        .into_iter()
        .find(|v| v.vulnerability.cve_id == cve)
        .ok_or_else(|| AppError::NotFound(format!("{cve} is not in the catalogue")))?;
    let findings_filter = FindingFilter {
        cve_id: Some(cve.clone()),
        status: Some(FindingStatus::Open),
        ..FindingFilter::default()
    };
    let findings = state
        .store()
        .findings_page(&findings_filter, None, 200)
        .await?;
    let more = findings.next.map(|_| {
        query::encode(&[
            ("cve", &Some(cve.to_string())),
            ("status", &Some("open".to_owned())),
        ])
    });
    render::page(&VulnPage {
        layout: Layout::new(&ctx, cve.as_str(), "vulnerabilities"),
        vector: or_dash(&stored.vulnerability.cvss_vector),
        description: stored.vulnerability.description.clone().unwrap_or_default(),
        row: VulnRow::of(&stored),
        findings: findings.items.iter().map(FindingRow::of).collect(),
        more,
    })
}

#[derive(Template)]
#[template(path = "findings.html")]
struct FindingsPage {
    layout: Layout,
    q: FindingQuery,
    findings: Vec<FindingRow>,
    next: Option<String>,
    csv: String,
    first: Option<String>,
}

fn finding_params(q: &FindingQuery) -> Vec<(&'static str, &Option<String>)> {
    vec![
        ("q", &q.q),
        ("status", &q.status),
        ("severity", &q.severity),
        ("min_severity", &q.min_severity),
        ("cve", &q.cve),
        ("asset", &q.asset),
        ("integration", &q.integration),
        ("limit", &q.limit),
    ]
}

pub async fn findings(
    ctx: Ctx,
    State(state): State<AppState>,
    Query(q): Query<FindingQuery>,
) -> Result<Response, AppError> {
    let page = state
        .store()
        .findings_page(&q.filter()?, q.after()?, query::limit(&q.limit)?)
        .await?;
    let next = page.next.map(|n| Some(n.to_string()));
    render::page(&FindingsPage {
        layout: Layout::new(&ctx, "Findings", "findings"),
        findings: page.items.iter().map(FindingRow::of).collect(),
        next: next.map(|n| with_after(finding_params(&q), &n)),
        csv: query::encode(&finding_params(&q)),
        first: q
            .after
            .is_some()
            .then(|| query::encode(&finding_params(&q))),
        q,
    })
}

pub async fn findings_csv(
    _ctx: Ctx,
    State(state): State<AppState>,
    Query(q): Query<FindingQuery>,
) -> Result<Response, AppError> {
    Ok(csv::findings(state.store().clone(), q.filter()?))
}
