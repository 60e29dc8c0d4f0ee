//! The isolation matrix of workspaces (issue 15, docs/workspaces.md), on SQLite and PostgreSQL.
//!
//! Workspaces A and B each hold an Endpoint integration synced from its own emulator over real
//! HTTP; B also holds a marker device with a CVE only B has. A viewer of A, an admin of A and an
//! admin-scope API token of A then walk every portal route and every API route: nothing of B
//! (its integration's name and id, its devices' names and ids, its CVE) appears in any page, CSV
//! download, JSON body, search or error, and B's ids give 404, never 403.
//!
//! The routes come from the router itself (the portal's `.route(…)` calls in its source, the
//! API's OpenAPI document): a route the matrix does not list fails the test.

use rampart_model::IntegrationId;
use std::collections::BTreeSet;

use rampart_model::{Asset, AssetKind, Finding, FindingKey, Severity, Vulnerability};
use rampart_store::{ExceptionScope, NewException, RunOutcome, Store, Visibility};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// The portal's router, read from its source: `(METHOD, path)` of every `.route(…)`.
fn portal_routes() -> BTreeSet<(String, String)> {
    let source = include_str!("../../src/portal/mod.rs");
    let mut routes = BTreeSet::new();
    for chunk in source.split(".route(").skip(1) {
        let chunk = chunk.split(".route(").next().unwrap_or(chunk);
        let path = chunk.split('"').nth(1).unwrap().to_owned();
        for method in ["get", "post"] {
            if chunk.contains(&format!("{method}(")) {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// The API's routes, from its OpenAPI document.
fn api_routes() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(rampart_web::openapi()).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

/// What B has that A must never see.
struct Secrets {
    b_id: i64,
    b_asset: i64,
    /// An exception granted in B.
    b_exception: i64,
    /// A webhook of B, and B's workspace.
    b_webhook: i64,
    b_workspace: i64,
    texts: Vec<String>,
}

impl Secrets {
    /// None of B's texts in `body`, except what the request itself typed (`path`: a searched
    /// or requested id echoed back tells the caller nothing it did not send).
    fn assert_absent_for(&self, what: &str, path: &str, body: &str) {
        for t in &self.texts {
            let typed = path.contains(t.trim_end_matches('"'));
            assert!(
                typed || !body.contains(t.as_str()),
                "{what} shows B's {t:?}:\n{body}"
            );
        }
    }

    fn assert_absent(&self, what: &str, body: &str) {
        self.assert_absent_for(what, "", body)
    }

    /// The path with B's ids replaced by ids that never existed.
    fn control(&self, path: &str) -> String {
        path.replace(
            &format!("/exceptions/{}", self.b_exception),
            "/exceptions/999997",
        )
        .replace(&format!("/webhooks/{}", self.b_webhook), "/webhooks/999996")
        .replace(&format!("/{}", self.b_id), "/999999")
        .replace(&format!("/{}", self.b_asset), "/999998")
        .replace(B_CVE, "CVE-2099-999999")
    }

    /// A body with B's ids and the control's replaced, for comparing the two answers.
    fn normalised(&self, body: &str) -> String {
        body.replace(&format!("webhook {}", self.b_webhook), "webhook ID")
            .replace(B_CVE, "CVE")
            .replace("CVE-2099-999999", "CVE")
            .replace(&self.b_asset.to_string(), "ID")
            .replace(&self.b_id.to_string(), "ID")
            .replace("999999", "ID")
            .replace("999998", "ID")
            .replace("999997", "ID")
            .replace("999996", "ID")
            .replace(&format!("exception {}", self.b_exception), "exception ID")
    }
}

const B_CVE: &str = "CVE-2099-424242";
const MARKER: &str = "bravo-secret-host";
/// B's webhook's name.
const B_HOOK: &str = "bravo-hook";

/// A webhook of workspace B (never sent: nothing here delivers).
async fn seed_webhook(store: &dyn Store, wb: rampart_model::WorkspaceId) -> i64 {
    let sealed = rampart_store::SecretCiphertext {
        ciphertext: vec![1; 16],
        nonce: vec![2; 24],
    };
    store
        .create_webhook(
            &Visibility::All,
            &rampart_store::NewWebhook {
                workspace: Some(wb),
                name: B_HOOK.into(),
                format: rampart_store::WebhookFormat::Generic,
                url: sealed.clone(),
                url_shown: "https://bravo-receiver.example/…".into(),
                secret: Some(sealed),
                events: rampart_store::WebhookEventKind::SUBSCRIBABLE.to_vec(),
                created_by: "root".into(),
                created_at: chrono::Utc::now(),
            },
        )
        .await
        .unwrap()
        .id
}

async fn sync_through_portal(app: &TestApp, admin: &mut Client, id: i64) {
    let page = admin
        .post(&format!("/integrations/{id}/sync"), &[] as &[(&str, &str)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(app.wait_for_run(id).await, "succeeded");
}

/// Adds an integration of the emulator at `sim_url` into the admin's current workspace.
async fn add_from(app: &TestApp, admin: &mut Client, name: &str, sim_url: &str) -> i64 {
    let mut form = app.integration_form(name, &app.sim_config.client_secret);
    for (k, v) in form.iter_mut() {
        if *k == "login_url" || *k == "api_url" {
            *v = sim_url.to_owned();
        }
    }
    let page = admin.post("/integrations", &form).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    page.location().unwrap()["/integrations/".len()..]
        .split('?')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn switch(client: &mut Client, workspace: &str) -> reqwest::StatusCode {
    client
        .post("/workspace", &[("workspace", workspace)])
        .await
        .status
}

/// The marker device of B, with a finding of a CVE only B has, written as a sync writes.
/// Seeds B with an asset, a CVE and a finding only B has, and an exception whose reason names
/// the asset; returns the exception's id.
async fn seed_marker(store: &dyn Store, b: i64) -> i64 {
    let run = store
        .start_run(IntegrationId(b), "delta", chrono::Utc::now())
        .await
        .unwrap();
    let marker = Asset {
        name: Some(MARKER.into()),
        ..Asset::new("b".repeat(40), AssetKind::Device)
    };
    store
        .upsert_assets(IntegrationId(b), run, &[marker])
        .await
        .unwrap();
    let cve = B_CVE.parse().unwrap();
    store
        .upsert_vulnerabilities(&[Vulnerability {
            cve_id: cve,
            severity: Some(Severity::Critical),
            cvss: Some(9.8),
            cvss_vector: None,
            epss: None,
            public_exploit: false,
            exploit_verified: false,
            exploit_in_kit: false,
            exploit_types: vec![],
            published_on: None,
            updated_on: None,
            description: Some("only workspace B has this".into()),
            source_exposed_machines: None,
        }])
        .await
        .unwrap();
    let finding = Finding {
        key: FindingKey {
            asset_source_id: "b".repeat(40),
            software_vendor: "bravo".into(),
            software_name: "bravo_app".into(),
            software_version: "1.0".into(),
            cve_id: B_CVE.parse().unwrap(),
        },
        asset_name: Some(MARKER.into()),
        asset_os_platform: None,
        asset_os_version: None,
        severity: Some(Severity::Critical),
        cvss: Some(9.8),
        exploitability: None,
        recommended_update: Some("bravo-update".into()),
        recommendation_reference: None,
        first_seen: None,
        last_seen: None,
    };
    store
        .upsert_findings(IntegrationId(b), run, &[finding])
        .await
        .unwrap();
    store
        .finish_run(
            run,
            &RunOutcome::new(rampart_model::RunStatus::Succeeded, chrono::Utc::now()),
        )
        .await
        .unwrap();
    let now = chrono::Utc::now();
    store
        .create_exception(
            &Visibility::All,
            &NewException {
                scope: ExceptionScope::Cve(B_CVE.parse().unwrap()),
                integration: Some(IntegrationId(b)),
                reason: format!("{MARKER} is isolated"),
                owner: "bravo owner".into(),
                created_by: "root".into(),
                created_at: now,
                expires_at: now + chrono::TimeDelta::days(30),
            },
        )
        .await
        .unwrap()
        .id
}

/// What a request must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 2xx or 3xx.
    Ok,
    NotFound,
    /// Refused for what the caller is, whatever the id: confirms nothing about B.
    Forbidden,
}

fn check(status: StatusCode, expect: Expect, what: &str, body: &str) {
    let ok = match expect {
        Expect::Ok => status.is_success() || status.is_redirection(),
        Expect::NotFound => status == StatusCode::NOT_FOUND,
        Expect::Forbidden => status == StatusCode::FORBIDDEN,
    };
    assert!(ok, "{what}: {status}, expected {expect:?}:\n{body}");
}

async fn matrix(app: TestApp) {
    let store = app.store.clone();
    let wa = store.create_workspace("Workspace A").await.unwrap();
    let wb = store.create_workspace("Workspace B").await.unwrap();
    let sim_b = rampart_sim::spawn(rampart_sim::SimConfig {
        seed: app.sim_config.seed.wrapping_add(977),
        ..app.sim_config.clone()
    })
    .await
    .unwrap();

    // The global admin adds each integration from inside its workspace (the switcher).
    let mut root = app.signed_in(ADMIN).await;
    assert_eq!(
        switch(&mut root, &wa.id.to_string()).await,
        StatusCode::SEE_OTHER
    );
    let a = add_from(&app, &mut root, "alpha-mde", &app.sim.url).await;
    assert_eq!(
        switch(&mut root, &wb.id.to_string()).await,
        StatusCode::SEE_OTHER
    );
    let b = add_from(&app, &mut root, "bravo-mde", &sim_b.url).await;
    assert_eq!(switch(&mut root, "").await, StatusCode::SEE_OTHER);
    let all = Visibility::All;
    assert_eq!(
        store
            .get_integration(&all, IntegrationId(a))
            .await
            .unwrap()
            .workspace_id,
        wa.id
    );
    assert_eq!(
        store
            .get_integration(&all, IntegrationId(b))
            .await
            .unwrap()
            .workspace_id,
        wb.id
    );
    sync_through_portal(&app, &mut root, a).await;
    sync_through_portal(&app, &mut root, b).await;
    let b_exception = seed_marker(store.as_ref(), b).await;
    let b_webhook = seed_webhook(store.as_ref(), wb.id).await;

    let assets_of = |id: i64| {
        let store = store.clone();
        async move {
            store
                .assets_page(
                    &Visibility::All,
                    &rampart_store::AssetFilter {
                        integration: Some(IntegrationId(id)),
                        ..Default::default()
                    },
                    None,
                    10_000,
                )
                .await
                .unwrap()
                .items
        }
    };
    let (a_assets, b_assets) = (assets_of(a).await, assets_of(b).await);
    let a_sources: BTreeSet<_> = a_assets.iter().map(|x| x.asset.source_id.clone()).collect();
    let b_only: Vec<_> = b_assets
        .iter()
        .filter(|x| !a_sources.contains(&x.asset.source_id))
        .collect();
    assert!(b_only.len() > 10, "the two emulators must differ");
    let b_asset = b_assets
        .iter()
        .find(|x| x.asset.name.as_deref() == Some(MARKER))
        .unwrap()
        .id;
    let a_asset = a_assets[0].id;
    let mut texts = vec![
        "bravo-mde".to_owned(),
        MARKER.to_owned(),
        B_CVE.to_owned(),
        format!("/integrations/{b}\""),
        format!("/assets/{b_asset}\""),
        B_HOOK.to_owned(),
        "bravo-receiver".to_owned(),
    ];
    texts.extend(b_only.iter().take(20).map(|x| x.asset.source_id.clone()));
    let secrets = Secrets {
        b_id: b,
        b_asset,
        b_exception,
        b_webhook,
        b_workspace: wb.id.0,
        texts,
    };
    // The check means something: the global admin does see B.
    let seen = root.get(&format!("/assets?q={MARKER}")).await;
    assert!(seen.body.contains(MARKER), "{}", seen.body);

    // A viewer of A and an admin of A (global role viewer; both lose Default).
    for (name, role) in [
        ("amy", rampart_store::Role::Viewer),
        ("adam", rampart_store::Role::Admin),
    ] {
        let user = rampart_web::create_user(
            store.as_ref(),
            name,
            rampart_store::Role::Viewer,
            &secrecy::SecretString::from(PASSWORD.to_owned()),
            rampart_web::PasswordChosenBy::Owner,
            "test",
        )
        .await
        .unwrap();
        store
            .revoke_membership(user.id, rampart_model::WorkspaceId::DEFAULT)
            .await
            .unwrap();
        store.grant_membership(user.id, wa.id, role).await.unwrap();
    }
    let mut viewer = app.signed_in("amy").await;
    let mut admin = app.signed_in("adam").await;

    portal_matrix(&app, &secrets, &mut viewer, &mut admin, a, a_asset).await;

    // Every id enumerated, not only the ones probed: B's answer 404, A's 200.
    let a_ids: BTreeSet<i64> = a_assets.iter().map(|x| x.id).collect();
    let last = a_assets
        .iter()
        .chain(&b_assets)
        .map(|x| x.id)
        .max()
        .unwrap();
    for id in 1..=last + 1 {
        let page = viewer.get(&format!("/assets/{id}")).await;
        let expected = if a_ids.contains(&id) {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(page.status, expected, "viewer of A: /assets/{id}");
        secrets.assert_absent(&format!("viewer of A: /assets/{id}"), &page.body);
    }
    for id in 1..=b + 3 {
        let page = viewer.get(&format!("/integrations/{id}")).await;
        let mine = app
            .store
            .get_integration(&Visibility::All, IntegrationId(id))
            .await
            .is_ok_and(|i| i.workspace_id == wa.id);
        let expected = if mine {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(page.status, expected, "viewer of A: /integrations/{id}");
    }

    // An admin-scope token of A, made by the global admin.
    let page = root
        .post(
            "/tokens",
            &[
                ("name", "a-siem"),
                ("scope", "admin"),
                ("workspace", "Workspace A"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let key = "<code id=\"new-token\">";
    let start = page.body.find(key).unwrap() + key.len();
    let token = page.body[start..start + page.body[start..].find('<').unwrap()].to_owned();
    api_matrix(&app, &secrets, &token, a, wa.id.0, wb.id.0).await;
}

async fn portal_matrix(
    app: &TestApp,
    s: &Secrets,
    viewer: &mut Client,
    admin: &mut Client,
    a: i64,
    a_asset: i64,
) {
    use Expect::*;
    let (b, b_asset) = (s.b_id, s.b_asset);
    let form = app.integration_form("renamed", "x-secret-value-0000");
    let no_form: Vec<(&str, String)> = Vec::new();
    let sla_form: Vec<(&str, String)> = vec![
        ("immediate", "1".into()),
        ("out_of_cycle", "2".into()),
        ("scheduled", "3".into()),
        ("defer", "4".into()),
    ];
    let exception_form: Vec<(&str, String)> = vec![
        ("scope", "cve".into()),
        ("target", B_CVE.into()),
        ("integration", b.to_string()),
        ("reason", "accepted from A".into()),
        ("owner", "adam".into()),
        ("expires", "2099-01-01".into()),
    ];
    // Into B's workspace: not found for an admin of A.
    let webhook_form: Vec<(&str, String)> = vec![
        ("name", "from-a".into()),
        ("url", "https://receiver.example/hook".into()),
        ("format", "generic".into()),
        ("workspace", s.b_workspace.to_string()),
        ("sync_failed", "on".into()),
    ];
    let enabled_form: Vec<(&str, String)> = vec![("enabled", "false".into())];
    // (method, route, path, form, viewer of A gets, admin of A gets)
    type Probe<'a> = (
        &'static str,
        &'static str,
        String,
        &'a [(&'static str, String)],
        Expect,
        Expect,
    );
    // A route without ids, walked with no form.
    let plain = |method, route: &'static str, viewer, admin| -> Probe {
        (method, route, route.to_owned(), &[], viewer, admin)
    };
    let probes: Vec<Probe> = vec![
        plain("GET", "/", Ok, Ok),
        plain("GET", "/login", Ok, Ok),
        // First-run setup: gone once an admin exists.
        plain("GET", "/setup", NotFound, NotFound),
        plain("GET", "/account/password", Ok, Ok),
        plain("GET", "/integrations", Ok, Ok),
        plain("GET", "/integrations/new", Forbidden, Ok),
        (
            "GET",
            "/integrations/{id}",
            format!("/integrations/{a}"),
            &no_form,
            Ok,
            Ok,
        ),
        (
            "GET",
            "/integrations/{id}",
            format!("/integrations/{b}"),
            &no_form,
            NotFound,
            NotFound,
        ),
        (
            "POST",
            "/integrations/{id}",
            format!("/integrations/{b}"),
            &form,
            Forbidden,
            NotFound,
        ),
        (
            "POST",
            "/integrations/{id}/test",
            format!("/integrations/{b}/test"),
            &no_form,
            Forbidden,
            NotFound,
        ),
        (
            "POST",
            "/integrations/{id}/sync",
            format!("/integrations/{b}/sync"),
            &no_form,
            Forbidden,
            NotFound,
        ),
        (
            "POST",
            "/integrations/{id}/delete",
            format!("/integrations/{b}/delete"),
            &no_form,
            Forbidden,
            NotFound,
        ),
        plain("GET", "/assets", Ok, Ok),
        (
            "GET",
            "/assets",
            // Searches echo what was typed: look for part of B's name, not all of it.
            "/assets?q=secret-host".into(),
            &no_form,
            Ok,
            Ok,
        ),
        (
            "GET",
            "/assets",
            format!("/assets?integration={b}"),
            &no_form,
            Ok,
            Ok,
        ),
        plain("GET", "/assets.csv", Ok, Ok),
        (
            "GET",
            "/assets/{id}",
            format!("/assets/{a_asset}"),
            &no_form,
            Ok,
            Ok,
        ),
        (
            "GET",
            "/assets/{id}",
            format!("/assets/{b_asset}"),
            &no_form,
            NotFound,
            NotFound,
        ),
        plain("GET", "/vulnerabilities", Ok, Ok),
        (
            "GET",
            "/vulnerabilities",
            "/vulnerabilities?q=CVE-2099".into(),
            &no_form,
            Ok,
            Ok,
        ),
        plain("GET", "/vulnerabilities.csv", Ok, Ok),
        (
            "GET",
            "/vulnerabilities/{cve}",
            format!("/vulnerabilities/{B_CVE}"),
            &no_form,
            NotFound,
            NotFound,
        ),
        plain("GET", "/findings", Ok, Ok),
        (
            "GET",
            "/findings",
            "/findings?q=bravo".into(),
            &no_form,
            Ok,
            Ok,
        ),
        (
            "GET",
            "/findings",
            "/findings?q=2099-4242".into(),
            &no_form,
            Ok,
            Ok,
        ),
        plain("GET", "/findings.csv", Ok, Ok),
        (
            "GET",
            "/findings.csv",
            format!("/findings.csv?integration={b}"),
            &no_form,
            Ok,
            Ok,
        ),
        plain("GET", "/posture", Ok, Ok),
        plain("GET", "/tokens", Forbidden, Forbidden),
        plain("POST", "/tokens", Forbidden, Forbidden),
        (
            "POST",
            "/tokens/{id}/delete",
            "/tokens/1/delete".into(),
            &no_form,
            Forbidden,
            Forbidden,
        ),
        plain("GET", "/accounts", Forbidden, Forbidden),
        (
            "POST",
            "/accounts/{id}/delete",
            "/accounts/1/delete".into(),
            &no_form,
            Forbidden,
            Forbidden,
        ),
        plain("GET", "/audit", Forbidden, Forbidden),
        plain("GET", "/fix-first", Ok, Ok),
        (
            "GET",
            "/fix-first",
            format!("/fix-first?integration={b}"),
            &no_form,
            Ok,
            Ok,
        ),
        plain("GET", "/exceptions", Ok, Ok),
        // SLA report: everyone sees what they may; B's integration is not found.
        plain("GET", "/sla", Ok, Ok),
        (
            "GET",
            "/sla",
            format!("/sla?integration={b}&days=90"),
            &no_form,
            NotFound,
            NotFound,
        ),
        // The installation's SLA and the criticality rules are for global admins.
        plain("GET", "/settings/prioritisation", Forbidden, Forbidden),
        (
            "POST",
            "/settings/prioritisation/sla",
            "/settings/prioritisation/sla".into(),
            &sla_form,
            Forbidden,
            Forbidden,
        ),
        plain(
            "POST",
            "/settings/prioritisation/rules",
            Forbidden,
            Forbidden,
        ),
        // An integration's own SLA: for admins of its workspace.
        (
            "GET",
            "/integrations/{id}/sla",
            format!("/integrations/{b}/sla"),
            &no_form,
            Forbidden,
            NotFound,
        ),
        (
            "POST",
            "/integrations/{id}/sla",
            format!("/integrations/{b}/sla"),
            &sla_form,
            Forbidden,
            NotFound,
        ),
        // Granting and revoking exceptions in the portal is for global admins.
        (
            "GET",
            "/exceptions/new",
            format!("/exceptions/new?integration={b}"),
            &no_form,
            Forbidden,
            Forbidden,
        ),
        (
            "POST",
            "/exceptions",
            "/exceptions".into(),
            &exception_form,
            Forbidden,
            Forbidden,
        ),
        (
            "POST",
            "/exceptions/{id}/revoke",
            format!("/exceptions/{}/revoke", s.b_exception),
            &no_form,
            Forbidden,
            Forbidden,
        ),
        // Webhooks: for admins of their workspaces; B's are not found.
        plain("GET", "/webhooks", Forbidden, Ok),
        (
            "POST",
            "/webhooks",
            "/webhooks".into(),
            &webhook_form,
            Forbidden,
            NotFound,
        ),
        (
            "GET",
            "/webhooks/{id}",
            format!("/webhooks/{}", s.b_webhook),
            &no_form,
            Forbidden,
            NotFound,
        ),
        (
            "POST",
            "/webhooks/{id}/enabled",
            format!("/webhooks/{}/enabled", s.b_webhook),
            &enabled_form,
            Forbidden,
            NotFound,
        ),
        (
            "POST",
            "/webhooks/{id}/test",
            format!("/webhooks/{}/test", s.b_webhook),
            &no_form,
            Forbidden,
            NotFound,
        ),
        (
            "POST",
            "/webhooks/{id}/delete",
            format!("/webhooks/{}/delete", s.b_webhook),
            &no_form,
            Forbidden,
            NotFound,
        ),
        plain("GET", "/workspaces", Forbidden, Forbidden),
        plain("POST", "/workspaces", Forbidden, Forbidden),
        plain("POST", "/workspaces/grant", Forbidden, Forbidden),
        plain("POST", "/workspaces/revoke", Forbidden, Forbidden),
        (
            "POST",
            "/workspaces/{id}/delete",
            "/workspaces/1/delete".into(),
            &no_form,
            Forbidden,
            Forbidden,
        ),
    ];
    // Routes walked elsewhere in this test, or that hold no data of any workspace.
    let walked_elsewhere = [
        ("POST", "/integrations"),     // below: an admin of A adds into A
        ("POST", "/workspace"),        // below: switching to B is 404
        ("POST", "/login"),            // signing in (helpers)
        ("POST", "/logout"),           // ends the session; no data
        ("POST", "/setup"),            // first-run setup; refused once an admin exists
        ("POST", "/account/password"), // the account's own password
    ];
    let covered: BTreeSet<(String, String)> = probes
        .iter()
        .map(|p| (p.0.to_owned(), p.1.to_owned()))
        .chain(
            walked_elsewhere
                .iter()
                .map(|(m, p)| (m.to_string(), p.to_string())),
        )
        .collect();
    let missing: Vec<_> = portal_routes().difference(&covered).cloned().collect();
    assert!(
        missing.is_empty(),
        "portal routes the isolation matrix does not walk: {missing:?}"
    );

    for (method, _, path, fields, for_viewer, for_admin) in &probes {
        for (who, client, expect) in [
            ("viewer of A", &mut *viewer, for_viewer),
            ("admin of A", &mut *admin, for_admin),
        ] {
            let page = match *method {
                "GET" => client.get(path).await,
                _ => client.post(path, fields).await,
            };
            let what = format!("{who}: {method} {path}");
            check(page.status, *expect, &what, &page.body);
            s.assert_absent_for(&what, path, &page.body);
            // B's id is answered exactly as an id that never existed.
            if *expect == NotFound && *method == "GET" {
                let control = client.get(&s.control(path)).await;
                assert_eq!(control.status, page.status, "{what}: control");
                assert_eq!(
                    s.normalised(&control.body),
                    s.normalised(&page.body),
                    "{what}"
                );
            }
            let location = page.location().unwrap_or_default().to_owned();
            s.assert_absent(&format!("{what} (Location)"), &location);
        }
    }

    // The switcher: B's workspace is not found; the admin adds into A without choosing.
    for client in [&mut *viewer, &mut *admin] {
        let b_ws = app
            .store
            .get_workspace_by_name("Workspace B")
            .await
            .unwrap();
        assert_eq!(
            switch(client, &b_ws.id.to_string()).await,
            StatusCode::NOT_FOUND
        );
        assert_eq!(switch(client, "999999").await, StatusCode::NOT_FOUND);
    }
    let created = add_from(app, admin, "alpha-two", &app.sim.url).await;
    let a_ws = app
        .store
        .get_workspace_by_name("Workspace A")
        .await
        .unwrap();
    assert_eq!(
        app.store
            .get_integration(&Visibility::All, IntegrationId(created))
            .await
            .unwrap()
            .workspace_id,
        a_ws.id
    );
    let page = viewer.post("/integrations", &form).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // Choosing B's workspace on the form: not found.
    let b_ws = app
        .store
        .get_workspace_by_name("Workspace B")
        .await
        .unwrap();
    let mut into_b = app.integration_form("into-b", "x-secret-value-0000");
    into_b.push(("workspace", b_ws.id.to_string()));
    let page = admin.post("/integrations", &into_b).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    s.assert_absent("admin of A: POST /integrations into B", &page.body);
    // The admin of A is offered the integration forms; the viewer is not.
    let list = admin.get("/integrations").await;
    assert!(
        list.body.contains("id=\"add-integration\""),
        "{}",
        list.body
    );
    let shown = admin.get(&format!("/integrations/{a}")).await;
    assert!(shown.body.contains("/sync"), "{}", shown.body);
    let list = viewer.get("/integrations").await;
    assert!(
        !list.body.contains("id=\"add-integration\""),
        "{}",
        list.body
    );
    // B was not touched by any of it.
    let b_now = app
        .store
        .get_integration(&Visibility::All, IntegrationId(b))
        .await
        .unwrap();
    assert_eq!(b_now.name.as_str(), "bravo-mde");
}

async fn api_matrix(app: &TestApp, s: &Secrets, token: &str, a: i64, wa: i64, wb: i64) {
    use Expect::*;
    let b = s.b_id;
    let http = reqwest::Client::new();
    let create = |workspace: Option<i64>, name: &str| {
        let mut body = json!({
            "name": name,
            "product": "endpoint",
            "tenant_id": app.sim_config.tenant_id,
            "client_id": app.sim_config.client_id,
            "client_secret": app.sim_config.client_secret,
            "login_url": app.sim.url,
            "api_url": app.sim.url,
        });
        if let Some(w) = workspace {
            body["workspace_id"] = json!(w);
        }
        body
    };
    let soon = (chrono::Utc::now() + chrono::TimeDelta::days(30))
        .format("%Y-%m-%d")
        .to_string();
    // (method, route, path, body, expected)
    let probes: Vec<(&str, &str, String, Option<Value>, Expect)> = vec![
        (
            "GET",
            "/api/v1/integrations",
            "/api/v1/integrations".into(),
            None,
            Ok,
        ),
        (
            "POST",
            "/api/v1/integrations",
            "/api/v1/integrations".into(),
            Some(create(Some(wb), "into-b")),
            NotFound,
        ),
        (
            "POST",
            "/api/v1/integrations",
            "/api/v1/integrations".into(),
            Some(create(None, "alpha-api")),
            Ok,
        ),
        (
            "GET",
            "/api/v1/integrations/{id}",
            format!("/api/v1/integrations/{a}"),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/integrations/{id}",
            format!("/api/v1/integrations/{b}"),
            None,
            NotFound,
        ),
        (
            "PATCH",
            "/api/v1/integrations/{id}",
            format!("/api/v1/integrations/{b}"),
            Some(json!({"enabled": false})),
            NotFound,
        ),
        (
            "DELETE",
            "/api/v1/integrations/{id}",
            format!("/api/v1/integrations/{b}"),
            None,
            NotFound,
        ),
        (
            "POST",
            "/api/v1/integrations/{id}/test",
            format!("/api/v1/integrations/{b}/test"),
            None,
            NotFound,
        ),
        (
            "POST",
            "/api/v1/integrations/{id}/sync",
            format!("/api/v1/integrations/{b}/sync"),
            None,
            NotFound,
        ),
        (
            "GET",
            "/api/v1/integrations/{id}/runs",
            format!("/api/v1/integrations/{b}/runs"),
            None,
            NotFound,
        ),
        (
            "GET",
            "/api/v1/integrations/{id}/runs",
            format!("/api/v1/integrations/{a}/runs"),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/assets",
            "/api/v1/assets?limit=1000".into(),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/assets",
            format!("/api/v1/assets?q={MARKER}"),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/assets",
            format!("/api/v1/assets?integration={b}"),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/findings",
            "/api/v1/findings?limit=1000".into(),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/findings",
            format!("/api/v1/findings?cve={B_CVE}"),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/findings",
            "/api/v1/findings?q=bravo&sort=priority".into(),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/vulnerabilities",
            "/api/v1/vulnerabilities?limit=1000".into(),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/vulnerabilities",
            "/api/v1/vulnerabilities?q=CVE-2099".into(),
            None,
            Ok,
        ),
        ("GET", "/api/v1/posture", "/api/v1/posture".into(), None, Ok),
        (
            "GET",
            "/api/v1/posture/history",
            "/api/v1/posture/history".into(),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/posture/controls",
            "/api/v1/posture/controls".into(),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/posture/recommendations",
            "/api/v1/posture/recommendations".into(),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/users",
            "/api/v1/users".into(),
            None,
            Forbidden,
        ),
        (
            "DELETE",
            "/api/v1/users/{id}",
            "/api/v1/users/1".into(),
            None,
            Forbidden,
        ),
        (
            "GET",
            "/api/v1/workspaces",
            "/api/v1/workspaces".into(),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/remediations",
            "/api/v1/remediations?limit=1000".into(),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/remediations",
            format!("/api/v1/remediations?integration={b}"),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/exceptions",
            "/api/v1/exceptions".into(),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/exceptions",
            format!("/api/v1/exceptions?integration={b}"),
            None,
            Ok,
        ),
        // Accepting B's CVE in B with A's admin token: B's integration does not exist for it.
        (
            "POST",
            "/api/v1/exceptions",
            "/api/v1/exceptions".into(),
            Some(json!({
                "scope": "cve",
                "target": B_CVE,
                "integration_id": b,
                "reason": "accepted from A",
                "owner": "adam",
                "expires_at": soon,
            })),
            NotFound,
        ),
        (
            "DELETE",
            "/api/v1/exceptions/{id}",
            format!("/api/v1/exceptions/{}", s.b_exception),
            None,
            NotFound,
        ),
        (
            "GET",
            "/api/v1/settings/sla",
            "/api/v1/settings/sla".into(),
            None,
            Ok,
        ),
        // Settings of every workspace: not for a workspace's token.
        (
            "PUT",
            "/api/v1/settings/sla",
            "/api/v1/settings/sla".into(),
            Some(json!({"immediate": 1, "out_of_cycle": 2, "scheduled": 3, "defer": 4})),
            Forbidden,
        ),
        (
            "GET",
            "/api/v1/settings/criticality-rules",
            "/api/v1/settings/criticality-rules".into(),
            None,
            Ok,
        ),
        (
            "PUT",
            "/api/v1/settings/criticality-rules",
            "/api/v1/settings/criticality-rules".into(),
            Some(json!([])),
            Forbidden,
        ),
        (
            "GET",
            "/api/v1/integrations/{id}/sla",
            format!("/api/v1/integrations/{b}/sla"),
            None,
            NotFound,
        ),
        (
            "PUT",
            "/api/v1/integrations/{id}/sla",
            format!("/api/v1/integrations/{b}/sla"),
            Some(json!({"days": null})),
            NotFound,
        ),
        (
            "GET",
            "/api/v1/sla/report",
            "/api/v1/sla/report".into(),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/sla/report",
            format!("/api/v1/sla/report?integration={b}"),
            None,
            NotFound,
        ),
        (
            "GET",
            "/api/v1/sla/burndown",
            "/api/v1/sla/burndown?days=365".into(),
            None,
            Ok,
        ),
        (
            "GET",
            "/api/v1/sla/burndown",
            format!("/api/v1/sla/burndown?integration={b}"),
            None,
            NotFound,
        ),
        (
            "GET",
            "/api/v1/webhooks",
            "/api/v1/webhooks".into(),
            None,
            Ok,
        ),
        (
            "POST",
            "/api/v1/webhooks",
            "/api/v1/webhooks".into(),
            Some(json!({
                "name": "from-a",
                "url": "https://receiver.example/hook",
                "events": ["sync_failed"],
                "workspace_id": wb,
            })),
            NotFound,
        ),
        (
            "DELETE",
            "/api/v1/webhooks/{id}",
            format!("/api/v1/webhooks/{}", s.b_webhook),
            None,
            NotFound,
        ),
        (
            "POST",
            "/api/v1/webhooks/{id}/test",
            format!("/api/v1/webhooks/{}/test", s.b_webhook),
            None,
            NotFound,
        ),
        (
            "GET",
            "/api/v1/webhooks/{id}/deliveries",
            format!("/api/v1/webhooks/{}/deliveries", s.b_webhook),
            None,
            NotFound,
        ),
    ];
    let covered: BTreeSet<(String, String)> = probes
        .iter()
        .map(|p| (p.0.to_owned(), p.1.to_owned()))
        .collect();
    let missing: Vec<_> = api_routes().difference(&covered).cloned().collect();
    assert!(
        missing.is_empty(),
        "API routes the isolation matrix does not walk: {missing:?}"
    );

    for (method, _, path, payload, expect) in &probes {
        let mut req = http
            .request(method.parse().unwrap(), format!("{}{path}", app.url))
            .bearer_auth(token);
        if let Some(p) = payload {
            req = req.json(p);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = body(res).await;
        let what = format!("token of A: {method} {path}");
        check(status, *expect, &what, &text);
        s.assert_absent_for(&what, path, &text);
        if *expect == NotFound && payload.is_none() {
            let control = http
                .request(
                    method.parse().unwrap(),
                    format!("{}{}", app.url, s.control(path)),
                )
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(control.status(), status, "{what}: control");
            let control = body(control).await;
            assert_eq!(s.normalised(&control), s.normalised(&text), "{what}");
        }
    }

    // What the token lists is A's alone.
    let get = |path: &str| {
        let req = http
            .get(format!("{}/api/v1{path}", app.url))
            .bearer_auth(token);
        async move { serde_json::from_str::<Value>(&body(req.send().await.unwrap()).await).unwrap() }
    };
    let integrations = get("/integrations").await;
    let ids: Vec<i64> = integrations
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["workspace_id"].as_i64().unwrap())
        .collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|w| *w == wa),
        "{integrations}"
    );
    let workspaces = get("/workspaces").await;
    assert_eq!(workspaces.as_array().unwrap().len(), 1, "{workspaces}");
    assert_eq!(workspaces[0]["id"], json!(wa));
    let assets = get("/assets?limit=1000").await;
    assert!(!assets["items"].as_array().unwrap().is_empty());
    for item in assets["items"].as_array().unwrap() {
        assert_ne!(item["integration_id"], json!(b), "{item}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workspace_a_sees_nothing_of_b_on_sqlite() {
    matrix(spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workspace_a_sees_nothing_of_b_on_postgres() {
    matrix(spawn_app_on_postgres().await).await;
}
