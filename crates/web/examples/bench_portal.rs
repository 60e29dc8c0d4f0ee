//! Page speed of the portal and the REST API over a large estate (run by `scripts/bench-portal`).
//!
//! Seeds a SQLite file through the store's bulk upserts (the same calls a sync makes): N assets
//! with M findings each, a CVE catalogue, a second (delta) run that fixes a share of the findings.
//! Then serves the portal on a free port and times every page and API listing: first page, a deep
//! page (through cursors), filtered, sorted, and the start of a CSV download. Each case is
//! requested `--runs` times after one warm-up request; the median is reported as a Markdown table.
//!
//! The seeded file is kept (`--db`) and reused when it already holds the estate, so that timing
//! runs can be repeated without seeding again. `--database-url postgres://…` seeds and times a
//! PostgreSQL database instead (an empty one, or one this seeded before).

// A benchmark driver: a failure is a failed measurement, reported by the panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use rampart_model::{
    Asset, AssetKind, Cloud, CveId, Finding, FindingKey, Product, RunStatus, SecretHint, Severity,
    Vulnerability,
};
use rampart_store::{FindingChange, NewIntegration, RunOutcome, SecretCiphertext, Store};
use rampart_sync::vault::Vault;
use rampart_sync::{Engine, EngineOptions};
use rampart_web::{Application, WebConfig};
use secrecy::SecretString;

struct Args {
    db: String,
    /// A database URL to use instead of the SQLite file `db` (e.g. PostgreSQL's).
    url: Option<String>,
    assets: u32,
    per_asset: u32,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        db: "/tmp/rampart-bench-portal.db".into(),
        url: None,
        assets: 20_000,
        per_asset: 100,
        runs: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--db" => a.db = v,
            "--database-url" => a.url = Some(v),
            "--assets" => a.assets = v.parse().unwrap(),
            "--findings-per-asset" => a.per_asset = v.parse().unwrap(),
            "--runs" => a.runs = v.parse().unwrap(),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

const CVES: u32 = 6_000;
const SOFTWARE: u32 = 800;

fn cve(n: u32) -> CveId {
    format!("CVE-{}-{:05}", 2015 + n % 10, 10_000 + n)
        .parse()
        .unwrap()
}

fn severity(n: u32) -> Severity {
    match n % 20 {
        0..=1 => Severity::Critical,
        2..=7 => Severity::High,
        8..=15 => Severity::Medium,
        _ => Severity::Low,
    }
}

fn source_id(n: u32) -> String {
    format!("{:040x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15 + 1)
}

fn asset(n: u32) -> Asset {
    let platforms = [
        "Windows11",
        "Windows10",
        "WindowsServer2022",
        "Linux",
        "macOS",
    ];
    let levels = ["None", "Low", "Medium", "High"];
    let health = [
        "Active",
        "Inactive",
        "ImpairedCommunication",
        "NoSensorData",
    ];
    Asset {
        name: Some(format!("host-{:05}.contoso.local", (n * 7919) % 100_000)),
        os_platform: Some(platforms[(n % 5) as usize].into()),
        os_version: Some(format!("{}.{}", 10 + n % 3, n % 7)),
        health_status: Some(health[(n % 13 % 4) as usize].into()),
        onboarding_status: Some("Onboarded".into()),
        exposure_level: Some(levels[(n % 4) as usize].into()),
        risk_score: Some(levels[(n / 4 % 4) as usize].into()),
        device_value: Some("Normal".into()),
        ip_addresses: vec![format!(
            "10.{}.{}.{}",
            n / 65536 % 256,
            n / 256 % 256,
            n % 256
        )],
        tags: if n.is_multiple_of(10) {
            vec!["prod".into()]
        } else {
            vec![]
        },
        rbac_group_id: Some(i64::from(n % 8)),
        rbac_group_name: Some(format!("group-{}", n % 8)),
        first_seen: Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
        last_seen: Some(
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
                + chrono::Duration::minutes(i64::from(n % 40_000)),
        ),
        ..Asset::new(source_id(n), AssetKind::Device)
    }
}

fn finding(a: u32, i: u32) -> Finding {
    // Findings of an asset spread over the catalogue and the software pool deterministically.
    let c = (a.wrapping_mul(31) + i * 97) % CVES;
    let s = (a.wrapping_mul(13) + i * 7) % SOFTWARE;
    Finding {
        key: FindingKey {
            asset_source_id: source_id(a),
            software_vendor: format!("vendor-{}", s % 90),
            software_name: format!("product-{s}"),
            software_version: format!("{}.{}.{}", s % 9, i % 5, a % 3),
            cve_id: cve(c),
        },
        asset_name: None,
        asset_os_platform: None,
        asset_os_version: None,
        severity: Some(severity(c)),
        cvss: Some(f64::from(c % 100) / 10.0),
        exploitability: Some(["NoExploit", "ExploitIsPublic"][(c % 2) as usize].into()),
        recommended_update: Some(format!("Update product-{s} to {}.9", s % 9)),
        recommendation_reference: None,
        first_seen: Some(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()),
        last_seen: Some(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()),
    }
}

fn vulnerability(n: u32) -> Vulnerability {
    Vulnerability {
        cve_id: cve(n),
        severity: Some(severity(n)),
        cvss: Some(f64::from(n % 100) / 10.0),
        cvss_vector: None,
        epss: Some(f64::from(n % 1000) / 1000.0),
        public_exploit: n % 2 == 1,
        exploit_verified: n.is_multiple_of(7),
        exploit_in_kit: n.is_multiple_of(31),
        exploit_types: vec![],
        published_on: Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()),
        updated_on: None,
        description: Some(format!("A vulnerability in product-{}", n % SOFTWARE)),
        source_exposed_machines: None,
    }
}

async fn seed(store: &Arc<dyn Store>, a: &Args) {
    let started = Instant::now();
    let integration = store
        .create_integration(&NewIntegration {
            name: "bench".parse().unwrap(),
            product: Product::Endpoint,
            cloud: Cloud::Commercial,
            tenant_id: "00000000-0000-0000-0000-00000000000a".parse().unwrap(),
            client_id: "00000000-0000-0000-0000-00000000000b".parse().unwrap(),
            secret: SecretCiphertext {
                ciphertext: vec![1; 32],
                nonce: vec![2; 24],
            },
            hint: SecretHint::of("not-a-real-secret-bench", None),
            login_url: Some("http://127.0.0.1:9".into()),
            api_url: Some("http://127.0.0.1:9".into()),
            schedule_minutes: 360,
            enabled: false,
        })
        .await
        .unwrap();
    let id = integration.id;
    let t0 = Utc::now() - chrono::Duration::hours(2);
    let run = store.start_run(id, "full", t0).await.unwrap();
    let vulns: Vec<_> = (0..CVES).map(vulnerability).collect();
    for chunk in vulns.chunks(2000) {
        store.upsert_vulnerabilities(chunk).await.unwrap();
    }
    let assets: Vec<_> = (0..a.assets).map(asset).collect();
    for chunk in assets.chunks(2000) {
        store.upsert_assets(id, run, chunk).await.unwrap();
    }
    let per_batch = (20_000 / a.per_asset.max(1)).max(1);
    let mut n = 0u64;
    for first in (0..a.assets).step_by(per_batch as usize) {
        let batch: Vec<_> = (first..(first + per_batch).min(a.assets))
            .flat_map(|asset| (0..a.per_asset).map(move |i| finding(asset, i)))
            .collect();
        n += batch.len() as u64;
        store.upsert_findings(id, run, &batch).await.unwrap();
    }
    store
        .finish_run(run, &RunOutcome::new(RunStatus::Succeeded, t0))
        .await
        .unwrap();
    // A delta run fixes one finding in twenty.
    let t1 = t0 + chrono::Duration::hours(1);
    let run = store.start_run(id, "delta", t1).await.unwrap();
    let fixes: Vec<_> = (0..a.assets)
        .flat_map(|asset| {
            (0..a.per_asset)
                .filter(|i| i % 20 == 3)
                .map(move |i| (asset, i))
        })
        .map(|(asset, i)| FindingChange::Fixed {
            key: finding(asset, i).key,
            at: t1,
        })
        .collect();
    for chunk in fixes.chunks(10_000) {
        store.apply_finding_changes(id, run, chunk).await.unwrap();
    }
    store
        .finish_run(run, &RunOutcome::new(RunStatus::Succeeded, t1))
        .await
        .unwrap();
    // Every open finding prioritised, as a sync does after its run.
    let assessing = Instant::now();
    let counts = rampart_sync::priority::assess_integration(
        store.as_ref(),
        &integration,
        rampart_store::AssessScope::All,
        &rampart_sync::priority::PriorityPolicy::default(),
        t1,
    )
    .await
    .unwrap();
    store.refresh_fix_plan(id, t1).await.unwrap();
    eprintln!(
        "seeded {} assets, {n} findings ({} fixed) in {:.1} s; {} prioritised in {:.1} s",
        a.assets,
        fixes.len(),
        started.elapsed().as_secs_f64(),
        counts.assessed,
        assessing.elapsed().as_secs_f64()
    );
}

/// A signed-in portal session (cookie + CSRF token) and an API token.
struct Session {
    base: String,
    http: reqwest::Client,
    cookie: String,
    token: String,
}

fn csrf_of(body: &str) -> String {
    let key = "name=\"csrf_token\" value=\"";
    let start = body.find(key).unwrap() + key.len();
    let end = body[start..].find('"').unwrap();
    body[start..start + end].to_owned()
}

fn cookie_of(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or_default().to_owned())
}

async fn sign_in(store: &Arc<dyn Store>, base: &str) -> Session {
    // Not the account name (the password policy refuses that).
    let password = "timing pages of a large estate";
    match rampart_web::create_user(
        store.as_ref(),
        "bench",
        rampart_store::Role::Admin,
        &SecretString::from(password.to_owned()),
        rampart_web::PasswordChosenBy::Owner,
        "bench",
    )
    .await
    {
        Ok(_) | Err(rampart_web::AppError::Conflict(_)) => {}
        Err(e) => panic!("{e}"),
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http.get(format!("{base}/login")).send().await.unwrap();
    let cookie = cookie_of(&res).unwrap();
    let csrf = csrf_of(&body(res).await);
    let res = http
        .post(format!("{base}/login"))
        .header("cookie", &cookie)
        .header("origin", base)
        .form(&[
            ("name", "bench"),
            ("password", password),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "sign-in failed");
    let cookie = cookie_of(&res).unwrap_or(cookie);
    let res = http
        .get(format!("{base}/tokens"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let csrf = csrf_of(&body(res).await);
    let res = http
        .post(format!("{base}/tokens"))
        .header("cookie", &cookie)
        .header("origin", base)
        .form(&[("name", "bench"), ("scope", "read"), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    let text = body(res).await;
    let key = "<code id=\"new-token\">";
    let start = text.find(key).unwrap() + key.len();
    let end = text[start..].find('<').unwrap();
    Session {
        base: base.to_owned(),
        http,
        cookie,
        token: text[start..start + end].to_owned(),
    }
}

impl Session {
    fn request(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.get(format!("{}{path}", self.base));
        if path.starts_with("/api/") {
            req.bearer_auth(&self.token)
        } else {
            req.header("cookie", &self.cookie)
        }
    }

    /// Time to the whole body, or (for downloads) to the first chunk.
    async fn time(&self, path: &str, first_chunk_only: bool) -> Duration {
        let started = Instant::now();
        let mut res = self.request(path).send().await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        if first_chunk_only {
            res.chunk().await.unwrap();
        } else {
            while res.chunk().await.unwrap().is_some() {}
        }
        started.elapsed()
    }

    async fn json(&self, path: &str) -> serde_json::Value {
        self.request(path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The cursor after `pages` pages of `path` (which has a `limit`).
    async fn cursor_after(&self, path: &str, pages: usize) -> String {
        let mut cursor: Option<String> = None;
        for _ in 0..pages {
            let url = match &cursor {
                Some(c) => format!("{path}&after={c}"),
                None => path.to_owned(),
            };
            let page = self.json(&url).await;
            cursor = page["next_cursor"].as_str().map(str::to_owned);
        }
        cursor.expect("the listing ended before the deep page")
    }
}

/// A response body as text, refusing more than 64 MB (the workspace forbids unbounded reads).
async fn body(mut res: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        buf.extend_from_slice(&chunk);
        assert!(buf.len() < 64 << 20, "response body too large");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let a = args();
    // A page that fails says why on stderr (the server logs it), not only its status. Slow
    // statements are what seeding 2 M findings consists of: sqlx's warnings about them (with
    // their whole SQL) would bury the report's own lines.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx::query=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let opening = Instant::now();
    let url = a
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", a.db));
    let store = rampart_store::connect(&url).await.unwrap();
    let shown = match &a.url {
        Some(_) => "the database at --database-url".to_owned(),
        None => a.db.clone(),
    };
    eprintln!(
        "opened {shown} (migrations included) in {:.1} s",
        opening.elapsed().as_secs_f64()
    );
    if store
        .list_integrations(&rampart_store::Visibility::All)
        .await
        .unwrap()
        .is_empty()
    {
        seed(&store, &a).await;
    } else {
        eprintln!("reusing the estate in {shown}");
    }
    // What keeping the summaries costs a run: the end of a run that changed something refreshes
    // them (the whole integration's counts), the end of one that changed nothing does not.
    let integration = store
        .list_integrations(&rampart_store::Visibility::All)
        .await
        .unwrap()[0]
        .id;
    for (case, read) in [
        ("with the summary refresh", 0),
        ("nothing changed: no refresh", 1),
    ] {
        let run = store
            .start_run(integration, "delta", Utc::now())
            .await
            .unwrap();
        let mut outcome = RunOutcome::new(RunStatus::Succeeded, Utc::now());
        outcome.assets.read = read;
        let started = Instant::now();
        store.finish_run(run, &outcome).await.unwrap();
        eprintln!(
            "finish_run, {case}: {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    let counting = Instant::now();
    store
        .refresh_fix_plan(integration, Utc::now())
        .await
        .unwrap();
    eprintln!(
        "counting the remediation plan (part of the refresh above): {:.0} ms",
        counting.elapsed().as_secs_f64() * 1000.0
    );
    let engine = Arc::new(Engine::new(
        store.clone(),
        Vault::from_key(&[9u8; 32]),
        EngineOptions::default(),
    ));
    let mut config = WebConfig::new("127.0.0.1:0".parse().unwrap());
    config.scheduler = false;
    let app = Application::build(config, engine).await.unwrap();
    let base = app.url();
    tokio::spawn(app.run_until(std::future::pending()));
    let s = sign_in(&store, &base).await;

    let deep_assets = s
        .cursor_after(
            "/api/v1/assets?limit=1000",
            (a.assets / 1000).saturating_sub(1) as usize,
        )
        .await;
    let deep_sorted = s
        .cursor_after(
            "/api/v1/assets?limit=1000&sort=-open_findings",
            (a.assets / 1000).saturating_sub(1) as usize,
        )
        .await;
    let total = u64::from(a.assets) * u64::from(a.per_asset);
    let deep_findings = (total * 9 / 10).to_string();
    let some_asset = source_id(a.assets / 2);
    let one_cve = cve(17).to_string();
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let page = |name: &str, path: String| (name.to_owned(), path, false);
    let download = |name: &str, path: &str| (name.to_owned(), path.to_owned(), true);
    let cases: Vec<(String, String, bool)> = vec![
        page("dashboard", "/".into()),
        page("integrations", "/integrations".into()),
        page("integration (runs, jobs)", "/integrations/1".into()),
        page("assets, first page", "/assets".into()),
        page("assets, deep page", format!("/assets?after={deep_assets}")),
        page(
            "assets, filtered (platform + exposure)",
            "/assets?platform=Linux&exposure=High".into(),
        ),
        page("assets, search", "/assets?q=host-123".into()),
        page(
            "assets, search matching nothing",
            "/assets?q=no-such-host".into(),
        ),
        page("assets, sorted by name", "/assets?sort=name".into()),
        page(
            "assets, sorted by last seen (newest)",
            "/assets?sort=-last_seen".into(),
        ),
        page(
            "assets, sorted by exposure",
            "/assets?sort=-exposure".into(),
        ),
        page("assets, sorted by risk", "/assets?sort=-risk".into()),
        page(
            "assets, sorted by open findings",
            "/assets?sort=-open_findings".into(),
        ),
        page(
            "assets, sorted, filtered",
            "/assets?sort=-open_findings&platform=Linux&status=active".into(),
        ),
        page(
            "assets, sorted, deep page",
            format!("/assets?sort=-open_findings&after={deep_sorted}"),
        ),
        page(
            "asset page (its findings)",
            format!("/assets/{}", a.assets / 2),
        ),
        download("assets CSV, first bytes", "/assets.csv"),
        page("findings, first page", "/findings".into()),
        page(
            "findings, deep page",
            format!("/findings?sort=id&after={deep_findings}"),
        ),
        page(
            "findings, open + critical",
            "/findings?status=open&severity=critical".into(),
        ),
        page("findings, fixed", "/findings?status=fixed".into()),
        page(
            "findings, rare filter (fixed + critical, one integration)",
            "/findings?integration=1&status=fixed&severity=critical".into(),
        ),
        page("findings, one CVE", format!("/findings?cve={one_cve}")),
        page(
            "findings, one CVE, open",
            format!("/findings?cve={one_cve}&status=open"),
        ),
        page(
            "findings, one asset",
            format!("/findings?asset={some_asset}"),
        ),
        page("findings, search", "/findings?q=product-42".into()),
        page(
            "findings, search matching nothing",
            "/findings?q=no-such-thing".into(),
        ),
        page(
            "findings, search for one host",
            format!(
                "/findings?q={}",
                asset(a.assets / 3).name.unwrap_or_default()
            ),
        ),
        page(
            "findings, search for a CVE id",
            format!("/findings?q={}", &one_cve[4..]),
        ),
        // Text that could be part of a CVE id, and is part of none (the estate's CVEs are from
        // 2015 to 2024).
        page(
            "findings, search for a CVE id matching nothing",
            "/findings?q=2099-9".into(),
        ),
        download("findings CSV, first bytes", "/findings.csv?status=open"),
        page("vulnerabilities, first page", "/vulnerabilities".into()),
        page(
            "vulnerabilities, exposed only",
            "/vulnerabilities?exposed=true".into(),
        ),
        page(
            "vulnerabilities, deep page",
            "/vulnerabilities?after=CVE-2024-15000".into(),
        ),
        page("vulnerability page", format!("/vulnerabilities/{one_cve}")),
        download("vulnerabilities CSV, first bytes", "/vulnerabilities.csv"),
        page("posture", "/posture".into()),
        page("fix first", "/fix-first".into()),
        page("exceptions", "/exceptions".into()),
        page("API assets, first page", "/api/v1/assets".into()),
        page(
            "API assets, deep page",
            format!("/api/v1/assets?after={deep_assets}"),
        ),
        page(
            "API assets, sorted by risk",
            "/api/v1/assets?sort=-risk".into(),
        ),
        page(
            "API assets, changed since (all)",
            "/api/v1/assets?changed_since=2026-01-01T00:00:00Z".into(),
        ),
        page(
            "API assets, changed since now (none)",
            format!("/api/v1/assets?changed_since={now}"),
        ),
        page(
            "API findings, first page (1000)",
            "/api/v1/findings?limit=1000".into(),
        ),
        page(
            "API findings, deep page",
            format!("/api/v1/findings?after={deep_findings}"),
        ),
        page(
            "API findings, open + high or worse",
            "/api/v1/findings?status=open&min_severity=high".into(),
        ),
        page(
            "API findings, changed since (all)",
            "/api/v1/findings?changed_since=2026-01-01T00:00:00Z".into(),
        ),
        page(
            "API findings, changed since now (none)",
            format!("/api/v1/findings?changed_since={now}"),
        ),
        page("API vulnerabilities", "/api/v1/vulnerabilities".into()),
        page(
            "API vulnerabilities, changed since",
            "/api/v1/vulnerabilities?changed_since=2026-01-01T00:00:00Z".into(),
        ),
        page("API remediations", "/api/v1/remediations".into()),
        page(
            "API remediations, by overdue, one integration",
            "/api/v1/remediations?sort=-overdue&integration=1".into(),
        ),
        page("API posture", "/api/v1/posture".into()),
        page(
            "API recommendations",
            "/api/v1/posture/recommendations".into(),
        ),
    ];
    println!("| page | median | slowest |");
    println!("|---|---|---|");
    for (name, path, download) in &cases {
        s.time(path, *download).await;
        let mut times = Vec::with_capacity(a.runs);
        for _ in 0..a.runs {
            times.push(s.time(path, *download).await);
        }
        let slowest = *times.iter().max().unwrap();
        println!(
            "| {name} | {:.0} ms | {:.0} ms |",
            median(times).as_secs_f64() * 1000.0,
            slowest.as_secs_f64() * 1000.0
        );
    }

    // The plan with exceptions, which it works out when read: a CVE accepted everywhere and the
    // top fix accepted in the integration (revoked afterwards, so that the estate stays as seeded).
    let top = store
        .remediations(
            &rampart_store::Visibility::All,
            &rampart_store::RemediationFilter::default(),
            rampart_store::RemediationSort::Priority,
            Utc::now(),
            0,
            1,
        )
        .await
        .unwrap()
        .items[0]
        .fix
        .clone();
    let accept = |scope, integration| rampart_store::NewException {
        scope,
        integration,
        reason: "benchmark".into(),
        owner: "bench".into(),
        created_by: "bench".into(),
        created_at: Utc::now(),
        expires_at: Utc::now() + chrono::Duration::days(30),
    };
    let mut granted = Vec::new();
    for new in [
        accept(rampart_store::ExceptionScope::Cve(cve(17)), None),
        accept(rampart_store::ExceptionScope::Fix(top), Some(integration)),
    ] {
        granted.push(
            store
                .create_exception(&rampart_store::Visibility::All, &new)
                .await
                .unwrap(),
        );
    }
    for (name, path) in [
        ("fix first, a CVE and a fix accepted", "/fix-first"),
        (
            "API remediations, a CVE and a fix accepted",
            "/api/v1/remediations",
        ),
    ] {
        s.time(path, false).await;
        let mut times = Vec::with_capacity(a.runs);
        for _ in 0..a.runs {
            times.push(s.time(path, false).await);
        }
        let slowest = *times.iter().max().unwrap();
        println!(
            "| {name} | {:.0} ms | {:.0} ms |",
            median(times).as_secs_f64() * 1000.0,
            slowest.as_secs_f64() * 1000.0
        );
    }
    for e in granted {
        store
            .revoke_exception(&rampart_store::Visibility::All, e.id, Utc::now(), "bench")
            .await
            .unwrap();
    }
}
