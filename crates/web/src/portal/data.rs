//! Assets, vulnerabilities and findings: filtered, keyset-paginated tables, detail pages and CSV
//! downloads of the current filter.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use rampart_model::priority::{KevEntry, RansomwareUse};
use rampart_model::{CveId, FindingStatus};
use rampart_store::{
    AssetSort, AssetSortKey, FindingFilter, FindingOrder, KEV_SOURCE, ListedAsset, OpenFindings,
    RecommendationFilter, StoredFinding, StoredVulnerability, VulnerabilityFilter, kev_index,
};

use crate::auth::extract::Ctx;
use crate::csv;
use crate::error::AppError;
use crate::portal::layout::Layout;
use crate::portal::posture::RecommendationRow;
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
    /// Open findings in words: "2 critical · 5 high · 31 open", or "none".
    pub open: String,
    pub fixed: u64,
    pub tags: String,
    pub status: &'static str,
    pub last_seen: String,
    pub integration: String,
}

fn or_dash(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "—".into())
}

fn open_words(f: &OpenFindings) -> String {
    if f.total == 0 {
        return "none".into();
    }
    let mut parts = Vec::new();
    if f.critical > 0 {
        parts.push(format!("{} critical", f.critical));
    }
    if f.high > 0 {
        parts.push(format!("{} high", f.high));
    }
    parts.push(format!("{} open", f.total));
    parts.join(" · ")
}

impl AssetRow {
    pub fn of(l: &ListedAsset) -> Self {
        let s = &l.stored;
        let a = &s.asset;
        Self {
            id: s.id,
            name: a.name.clone().unwrap_or_else(|| a.source_id.clone()),
            platform: or_dash(&a.os_platform),
            version: or_dash(&a.os_version),
            health: or_dash(&a.health_status),
            exposure: or_dash(&a.exposure_level),
            risk: or_dash(&a.risk_score),
            open: open_words(&l.findings),
            fixed: l.findings.fixed,
            tags: a.tags.join(", "),
            status: s.status.as_str(),
            last_seen: when_opt(&a.last_seen.or(Some(s.last_observed))),
            integration: s.integration.clone(),
        }
    }
}

/// A column heading of the asset table: a link that sorts by it when it can.
pub struct Heading {
    pub label: &'static str,
    /// The `sort` value, for the element id (`sort-name`, ...); empty when not sortable.
    pub key: &'static str,
    /// The query string that sorts by this column (reversing the current order when it is
    /// already sorted by it); empty when not sortable.
    pub href: String,
    pub arrow: &'static str,
    /// `ascending`, `descending` or `none` (aria-sort).
    pub aria: &'static str,
}

const ASSET_COLUMNS: [(&str, Option<AssetSortKey>); 11] = [
    ("Name", Some(AssetSortKey::Name)),
    ("Platform", None),
    ("Version", None),
    ("Health", None),
    ("Exposure", Some(AssetSortKey::Exposure)),
    ("Risk", Some(AssetSortKey::Risk)),
    ("Open findings", Some(AssetSortKey::OpenFindings)),
    ("Tags", None),
    ("Status", None),
    ("Last seen", Some(AssetSortKey::LastSeen)),
    ("Integration", None),
];

fn headings(q: &AssetQuery, current: AssetSort) -> Vec<Heading> {
    ASSET_COLUMNS
        .iter()
        .map(|(label, key)| match key {
            None => Heading {
                label,
                key: "",
                href: String::new(),
                arrow: "",
                aria: "none",
            },
            Some(k) => {
                let sorted = current.key == *k;
                // A first click puts what matters first: names A to Z, everything else highest
                // (or newest) first.
                let next = if sorted {
                    current.reversed()
                } else if *k == AssetSortKey::Name {
                    AssetSort::asc(*k)
                } else {
                    AssetSort::desc(*k)
                };
                let sort = Some(next.to_string());
                let mut params = asset_params(q);
                params.retain(|(name, _)| *name != "sort");
                params.push(("sort", &sort));
                Heading {
                    label,
                    key: k.as_str(),
                    href: query::encode(&params),
                    arrow: match (sorted, current.descending) {
                        (false, _) => "",
                        (true, false) => " ▲",
                        (true, true) => " ▼",
                    },
                    aria: match (sorted, current.descending) {
                        (false, _) => "none",
                        (true, false) => "ascending",
                        (true, true) => "descending",
                    },
                }
            }
        })
        .collect()
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
    /// 0–100, or — before the first assessment.
    pub priority: String,
    pub decision: String,
    pub due: String,
    /// `on_track`, `due_soon`, `overdue`, `closed`, or empty.
    pub sla: &'static str,
    /// Why this priority: (factor, value, points).
    pub why: Vec<(&'static str, String, u8)>,
    /// The query of the exception form for this finding; empty once fixed.
    pub accept: String,
}

impl FindingRow {
    pub fn of(s: &StoredFinding) -> Self {
        let f = &s.finding;
        let now = chrono::Utc::now();
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
            priority: s.priority.map_or("—".into(), |p| format!("{p:.0}")),
            decision: s.decision.map_or("—".into(), |d| d.as_str().to_owned()),
            due: when_opt(&s.due_at_now(now)),
            sla: s.sla_status(now).map_or("", |v| v.as_str()),
            why: s
                .priority_factors
                .iter()
                .flatten()
                .map(|c| (c.factor.as_str(), c.value.clone(), c.points))
                .collect(),
            accept: if s.status == FindingStatus::Open {
                query::encode(&[
                    ("scope", &Some("finding".to_owned())),
                    ("target", &Some(s.id.to_string())),
                    ("integration", &Some(s.integration_id.to_string())),
                ])
            } else {
                String::new()
            },
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
    /// The row; `kev` is the CVE's CISA KEV entry when listed (shown first among the exploits).
    pub fn of(s: &StoredVulnerability, kev: Option<&KevEntry>) -> Self {
        let v = &s.vulnerability;
        let mut flags = Vec::new();
        if kev.is_some() {
            flags.push("KEV");
        }
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

/// The CVE page's CISA KEV facts.
pub struct KevFacts {
    pub added: String,
    /// CISA's due date for US federal agencies.
    pub due: String,
    /// `knownRansomwareCampaignUse` is `Known`.
    pub ransomware: bool,
    pub required_action: Option<String>,
}

impl KevFacts {
    fn of(k: &KevEntry) -> Self {
        let date = |d: Option<chrono::NaiveDate>| d.map_or("—".into(), |d| d.to_string());
        Self {
            added: date(k.date_added),
            due: date(k.due_date),
            ransomware: k.known_ransomware_campaign_use == RansomwareUse::Known,
            required_action: k.required_action.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "assets.html")]
struct AssetsPage {
    layout: Layout,
    q: AssetQuery,
    headings: Vec<Heading>,
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
        ("sort", &q.sort),
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
    let (sort, page) = q.page(state.store().as_ref(), &ctx.vis()).await?;
    let next = page.next.map(|n| Some(n.encode()));
    render::page(&AssetsPage {
        layout: Layout::new(&ctx, "Assets", "assets"),
        headings: headings(&q, sort),
        rows: page.items.iter().map(AssetRow::of).collect(),
        next: next.map(|n| with_after(asset_params(&q), &n)),
        csv: query::encode(&asset_params(&q)),
        first: q.after.is_some().then(|| query::encode(&asset_params(&q))),
        q,
    })
}

pub async fn assets_csv(
    ctx: Ctx,
    State(state): State<AppState>,
    Query(q): Query<AssetQuery>,
) -> Result<Response, AppError> {
    let vis = ctx.vis();
    Ok(csv::assets(state.store().clone(), vis, q.filter()?))
}

#[derive(Template)]
#[template(path = "asset.html")]
struct AssetPage {
    layout: Layout,
    row: AssetRow,
    source_id: String,
    ips: String,
    /// The public address the device was last seen from (empty when unknown).
    external_ip: String,
    /// Only vulnerability rows named this device: the device list did not return it.
    vulnerability_data_only: bool,
    findings: Vec<FindingRow>,
    more: Option<String>,
    /// The same machine as another integration knows it (Endpoint and Cloud).
    linked: Vec<LinkedView>,
    recommendations: Vec<RecommendationRow>,
    more_recommendations: bool,
}

struct LinkedView {
    id: i64,
    name: String,
    product: &'static str,
    integration: String,
    status: &'static str,
}

/// Recommendations shown on an asset's page (the posture page lists all).
const ASSET_RECOMMENDATIONS: u32 = 50;

pub async fn asset(
    ctx: Ctx,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let vis = ctx.vis();
    let listed = state.store().get_asset(&vis, id).await?;
    let stored = &listed.stored;
    let filter = FindingFilter {
        integration: Some(stored.integration_id),
        asset_source_id: Some(stored.asset.source_id.clone()),
        status: Some(FindingStatus::Open),
        ..FindingFilter::default()
    };
    let findings = state
        .store()
        .findings_sorted(&vis, &filter, FindingOrder::PriorityDesc, None, 200)
        .await?;
    let more = findings.next.map(|_| {
        query::encode(&[
            ("asset", &Some(stored.asset.source_id.clone())),
            ("integration", &Some(stored.integration_id.to_string())),
            ("status", &Some("open".to_owned())),
        ])
    });
    let linked = state.store().linked_assets(&vis, id).await?;
    let recommendations = state
        .store()
        .recommendations_page(
            &vis,
            &RecommendationFilter {
                asset_id: Some(id),
                ..RecommendationFilter::default()
            },
            None,
            ASSET_RECOMMENDATIONS,
        )
        .await?;
    render::page(&AssetPage {
        layout: Layout::new(&ctx, "Asset", "assets"),
        linked: linked
            .iter()
            .map(|a| LinkedView {
                id: a.id,
                name: a
                    .asset
                    .name
                    .clone()
                    .unwrap_or_else(|| a.asset.source_id.clone()),
                product: a.product.label(),
                integration: a.integration.clone(),
                status: a.status.as_str(),
            })
            .collect(),
        more_recommendations: recommendations.next.is_some(),
        recommendations: recommendations
            .items
            .iter()
            .map(RecommendationRow::of)
            .collect(),
        source_id: stored.asset.source_id.clone(),
        ips: stored.asset.ip_addresses.join(", "),
        external_ip: stored.asset.external_ip_address.clone().unwrap_or_default(),
        vulnerability_data_only: stored.known_only_from_vulnerability_data,
        row: AssetRow::of(&listed),
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
    let vis = ctx.vis();
    let filter = q.filter()?;
    let page = state
        .store()
        .vulnerabilities_page(&vis, &filter, q.after()?, query::limit(&q.limit)?)
        .await?;
    let next = page.next.map(|n| Some(n.to_string()));
    let kev = kev_index(
        state.store().as_ref(),
        page.items.iter().map(|v| &v.vulnerability.cve_id),
    )
    .await?;
    render::page(&VulnsPage {
        layout: Layout::new(&ctx, "Vulnerabilities", "vulnerabilities"),
        exposed: filter.exposed_only,
        rows: page
            .items
            .iter()
            .map(|v| VulnRow::of(v, kev.get(&v.vulnerability.cve_id)))
            .collect(),
        next: next.map(|n| with_after(vuln_params(&q), &n)),
        csv: query::encode(&vuln_params(&q)),
        first: q.after.is_some().then(|| query::encode(&vuln_params(&q))),
        q,
    })
}

pub async fn vulnerabilities_csv(
    ctx: Ctx,
    State(state): State<AppState>,
    Query(q): Query<VulnerabilityQuery>,
) -> Result<Response, AppError> {
    let vis = ctx.vis();
    Ok(csv::vulnerabilities(
        state.store().clone(),
        vis,
        q.filter()?,
    ))
}

#[derive(Template)]
#[template(path = "vulnerability.html")]
struct VulnPage {
    layout: Layout,
    row: VulnRow,
    /// The CISA KEV entry, when listed.
    kev: Option<KevFacts>,
    /// What to say when it is not: not listed, or the catalogue was never loaded.
    kev_absent: &'static str,
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
    let vis = ctx.vis();
    let cve: CveId = cve
        .parse()
        .map_err(|_| AppError::NotFound("that is not a CVE id".into()))?;
    let filter = VulnerabilityFilter {
        search: Some(cve.to_string()),
        ..VulnerabilityFilter::default()
    };
    let page = state
        .store()
        .vulnerabilities_page(&vis, &filter, None, 1000)
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
        .findings_sorted(
            &vis,
            &findings_filter,
            FindingOrder::PriorityDesc,
            None,
            200,
        )
        .await?;
    let more = findings.next.map(|_| {
        query::encode(&[
            ("cve", &Some(cve.to_string())),
            ("status", &Some("open".to_owned())),
        ])
    });
    let kev = kev_index(state.store().as_ref(), [&cve])
        .await?
        .remove(&cve);
    let loaded = state
        .store()
        .intel_source(KEV_SOURCE)
        .await?
        .is_some_and(|s| s.count > 0);
    render::page(&VulnPage {
        layout: Layout::new(&ctx, cve.as_str(), "vulnerabilities"),
        kev_absent: if loaded {
            "not listed"
        } else {
            "unknown: the KEV catalogue has not been loaded (rampart intel refresh)"
        },
        vector: or_dash(&stored.vulnerability.cvss_vector),
        description: stored.vulnerability.description.clone().unwrap_or_default(),
        row: VulnRow::of(&stored, kev.as_ref()),
        kev: kev.as_ref().map(KevFacts::of),
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
        ("decision", &q.decision),
        ("sla_status", &q.sla_status),
        ("sort", &q.sort),
        ("limit", &q.limit),
    ]
}

pub async fn findings(
    ctx: Ctx,
    State(state): State<AppState>,
    Query(q): Query<FindingQuery>,
) -> Result<Response, AppError> {
    let vis = ctx.vis();
    let (filter, limit) = (q.filter()?, query::limit(&q.limit)?);
    // Most urgent first unless another order is asked for.
    let (items, next) = match q.order(Some(FindingOrder::PriorityDesc))? {
        None => {
            let page = state
                .store()
                .findings_page(&vis, &filter, q.after()?, limit)
                .await?;
            (page.items, page.next.map(|n| Some(n.to_string())))
        }
        Some(order) => {
            let page = state
                .store()
                .findings_sorted(&vis, &filter, order, q.priority_after()?, limit)
                .await?;
            (page.items, page.next.map(|n| Some(n.encode())))
        }
    };
    render::page(&FindingsPage {
        layout: Layout::new(&ctx, "Findings", "findings"),
        findings: items.iter().map(FindingRow::of).collect(),
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
    ctx: Ctx,
    State(state): State<AppState>,
    Query(q): Query<FindingQuery>,
) -> Result<Response, AppError> {
    let vis = ctx.vis();
    Ok(csv::findings(state.store().clone(), vis, q.filter()?))
}
