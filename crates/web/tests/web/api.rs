//! The REST API: tokens and scopes, every endpoint, filters, pagination, problem+json, OpenAPI.

use rampart_model::IntegrationId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

struct Api {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Api {
    async fn of(app: &TestApp, scope: &str) -> Api {
        Api {
            base: format!("{}/api/v1", app.url),
            http: reqwest::Client::new(),
            token: app.api_token(scope).await,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }
}

/// A server with one integration, `name`, synced once from the emulator (started from the
/// portal), and a read-scope API client.
async fn synced_app(name: &str) -> (TestApp, i64, Api) {
    let (app, id) = crate::fix_first::synced(name).await;
    let api = Api::of(&app, "read").await;
    (app, id, api)
}

fn new_integration(app: &TestApp, name: &str, secret: &str) -> Value {
    json!({
        "name": name,
        "product": "endpoint",
        "tenant_id": app.sim_config.tenant_id,
        "client_id": app.sim_config.client_id,
        "client_secret": secret,
        "login_url": app.sim.url,
        "api_url": app.sim.url,
    })
}

#[tokio::test]
async fn tokens_and_scopes() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let anon = http
        .get(format!("{}/api/v1/assets", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anon.headers()["content-type"], "application/problem+json");
    assert_eq!(anon.headers()["www-authenticate"], "Bearer");
    let problem: Value = anon.json().await.unwrap();
    assert_eq!(problem["status"], 401);
    assert!(problem["detail"].as_str().unwrap().contains("Bearer"));

    let bad = http
        .get(format!("{}/api/v1/assets", app.url))
        .bearer_auth("rmp_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    // A session cookie is no API credential, and the API needs no CSRF token.
    let reader = Api::of(&app, "read").await;
    let (s, _) = reader.get("/integrations").await;
    assert_eq!(s, StatusCode::OK);
    let (s, p) = reader
        .post("/integrations", new_integration(&app, "x", "s"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(p["detail"].as_str().unwrap().contains("admin-scope"));
    // Tokens are stored hashed.
    let stored = app.store.api_token_by_hash(&reader.token).await.unwrap();
    assert!(stored.is_none());
}

#[tokio::test]
async fn integrations_endpoints() {
    let app = spawn_app().await;
    let api = Api::of(&app, "admin").await;
    let secret = app.sim_config.client_secret.clone();
    let (s, created) = api
        .post(
            "/integrations",
            new_integration(&app, "api-made", "Wr0ng~secret~value~long~enough"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert!(created.get("client_secret").is_none());
    assert_eq!(created["secret_hint"], "••••ough");
    let id = created["id"].as_i64().unwrap();

    let (s, p) = api.post("/integrations", json!({"name": "bad"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(p["detail"].as_str().unwrap().contains("Tenant ID"), "{p}");
    // Defender for Endpoint in a cloud where Microsoft documents no such API is refused when it
    // is entered (as the CLI refuses it), not at the first sync.
    let mut china = new_integration(&app, "api-china", "Wr0ng~secret~value~long~enough");
    china["cloud"] = json!("china");
    china["api_url"] = Value::Null;
    let (s, p) = api.post("/integrations", china).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains(
            "Cloud: Microsoft documents no Defender for Endpoint API in the China (21Vianet) cloud"
        ),
        "{p}"
    );
    let (s, _) = api.post("/integrations", json!({"nmae": "typo"})).await;
    assert!(s.is_client_error());

    let (s, report) = api
        .send(
            reqwest::Method::POST,
            &format!("/integrations/{id}/test"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(report["passed"], false);
    let failed: Vec<_> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["fix"]
            .as_str()
            .unwrap()
            .contains("Certificates & secrets")
    );

    let (s, updated) = api
        .patch(
            &format!("/integrations/{id}"),
            json!({"client_secret": secret, "schedule_minutes": 120}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["schedule_minutes"], 120);
    let (_, report) = api
        .send(
            reqwest::Method::POST,
            &format!("/integrations/{id}/test"),
            None,
        )
        .await;
    assert_eq!(report["passed"], true, "{report}");

    let (s, started) = api
        .send(
            reqwest::Method::POST,
            &format!("/integrations/{id}/sync"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{started}");
    assert_eq!(app.wait_for_run(id).await, "succeeded");
    let (s, runs) = api.get(&format!("/integrations/{id}/runs")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["verdict"], "complete");
    assert!(runs[0]["assets"]["read"].as_u64().unwrap() >= 40);

    let (s, one) = api.get(&format!("/integrations/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["name"], "api-made");
    let (s, list) = api.get("/integrations").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);

    let (s, _) = api.delete(&format!("/integrations/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, p) = api.get(&format!("/integrations/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(p["status"], 404);
}

#[tokio::test]
async fn data_endpoints_filter_and_paginate() {
    let (app, _, api) = synced_app("data").await;

    // Walking every page visits every asset once.
    let total = app
        .store
        .counts(&rampart_store::Visibility::All, None)
        .await
        .unwrap()
        .assets_active;
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/assets?limit=7&after={c}"),
            None => "/assets?limit=7".into(),
        };
        let (s, page) = api.get(&path).await;
        assert_eq!(s, StatusCode::OK);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 7);
        for a in items {
            assert!(
                seen.insert(a["id"].as_i64().unwrap()),
                "an asset came twice"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len() as u64, total);

    let (_, windows) = api.get("/assets?platform=windows11&limit=1000").await;
    for a in windows["items"].as_array().unwrap() {
        assert_eq!(a["os_platform"], "Windows11");
    }
    let (s, p) = api.get("/assets?status=gone").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(p["detail"].as_str().unwrap().contains("active or missing"));

    let (s, findings) = api
        .get("/findings?status=open&min_severity=high&limit=50")
        .await;
    assert_eq!(s, StatusCode::OK);
    let items = findings["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for f in items {
        let severity = f["severity"].as_str().unwrap().to_lowercase();
        assert!(["high", "critical"].contains(&severity.as_str()), "{f}");
        assert_eq!(f["status"], "open");
    }
    let cve = items[0]["cve_id"].as_str().unwrap().to_owned();
    let (_, by_cve) = api.get(&format!("/findings?cve={cve}&limit=1000")).await;
    for f in by_cve["items"].as_array().unwrap() {
        assert_eq!(f["cve_id"], cve.as_str());
    }
    let (s, _) = api.get("/findings?cve=not-a-cve").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, vulns) = api.get("/vulnerabilities?exposed=true&limit=5").await;
    assert_eq!(s, StatusCode::OK);
    let items = vulns["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    for v in items {
        assert!(v["exposed_assets"].as_u64().unwrap() > 0);
    }
    let next = vulns["next_cursor"].as_str().unwrap();
    let (_, page2) = api
        .get(&format!(
            "/vulnerabilities?exposed=true&limit=5&after={next}"
        ))
        .await;
    assert!(page2["items"][0]["cve_id"].as_str().unwrap() > items[4]["cve_id"].as_str().unwrap());
    let (s, _) = api.get("/vulnerabilities?limit=0").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn openapi_document_describes_every_endpoint() {
    let app = spawn_app().await;
    let doc: Value = reqwest::get(format!("{}/api/openapi.json", app.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/integrations",
        "/api/v1/integrations/{id}",
        "/api/v1/integrations/{id}/test",
        "/api/v1/integrations/{id}/sync",
        "/api/v1/integrations/{id}/runs",
        "/api/v1/assets",
        "/api/v1/findings",
        "/api/v1/vulnerabilities",
    ] {
        assert!(paths.contains_key(p), "{p} is missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Every operation's schema references resolve.
    let text = doc.to_string();
    for (i, _) in text.match_indices("#/components/schemas/") {
        let name: String = text[i + 21..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        assert!(
            doc["components"]["schemas"].get(&name).is_some(),
            "{name} is not defined"
        );
    }
    // The integration input never echoes a secret field in the output schema.
    assert!(
        doc["components"]["schemas"]["IntegrationOut"]["properties"]
            .get("client_secret")
            .is_none()
    );
    // Swagger UI is served from the binary.
    let ui = reqwest::get(format!("{}/api/docs/", app.url))
        .await
        .unwrap();
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(body(ui).await.contains("swagger"));
}

/// The value an asset sorts by, as the API reports it.
fn sort_value(a: &Value, key: &str) -> (i64, String) {
    let rank = |v: &Value, order: &[&str]| {
        v.as_str()
            .and_then(|s| order.iter().position(|o| o.eq_ignore_ascii_case(s)))
            .map_or(-1, |p| p as i64)
    };
    match key {
        "name" => (
            0,
            a["name"]
                .as_str()
                .unwrap_or(a["source_id"].as_str().unwrap())
                .to_ascii_lowercase(),
        ),
        "last_seen" => (0, a["last_seen"].as_str().unwrap().to_owned()),
        "exposure" => (
            rank(&a["exposure_level"], &["none", "low", "medium", "high"]),
            String::new(),
        ),
        "risk" => (
            rank(
                &a["risk_score"],
                &["none", "informational", "low", "medium", "high"],
            ),
            String::new(),
        ),
        _ => {
            let f = &a["findings"];
            let n = |k: &str| f[k].as_i64().unwrap();
            (
                n("critical") * 1_000_000_000_000 + n("high") * 1_000_000 + n("open"),
                String::new(),
            )
        }
    }
}

#[tokio::test]
async fn assets_sort_and_changed_since() {
    let (app, id, api) = synced_app("sorted").await;
    let total = app
        .store
        .counts(&rampart_store::Visibility::All, None)
        .await
        .unwrap()
        .assets_active as usize;

    for key in [
        "name",
        "last_seen",
        "exposure",
        "risk",
        "open_findings",
        "id",
    ] {
        for sort in [key.to_owned(), format!("-{key}")] {
            let mut items: Vec<Value> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/assets?sort={sort}&limit=9&after={c}"),
                    None => format!("/assets?sort={sort}&limit=9"),
                };
                let (s, page) = api.get(&path).await;
                assert_eq!(s, StatusCode::OK, "{path}: {page}");
                items.extend(page["items"].as_array().unwrap().iter().cloned());
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
            assert_eq!(items.len(), total, "sort={sort}");
            let ids: std::collections::HashSet<i64> =
                items.iter().map(|a| a["id"].as_i64().unwrap()).collect();
            assert_eq!(ids.len(), total, "sort={sort}: an asset came twice");
            if key != "id" {
                for w in items.windows(2) {
                    let (a, b) = (sort_value(&w[0], key), sort_value(&w[1], key));
                    if sort.starts_with('-') {
                        assert!(a >= b, "sort={sort}: {a:?} before {b:?}");
                    } else {
                        assert!(a <= b, "sort={sort}: {a:?} before {b:?}");
                    }
                }
            }
        }
    }
    // Critical first: the top asset has the most open critical findings.
    let (_, top) = api.get("/assets?sort=-open_findings&limit=1").await;
    let (_, all) = api.get("/assets?limit=1000").await;
    let most = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["findings"]["critical"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(most > 0);
    assert_eq!(top["items"][0]["findings"]["critical"], most);

    // Bad sorts and cursors of another order are refused in words.
    let (s, p) = api.get("/assets?sort=size").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        p["detail"].as_str().unwrap().contains("open_findings"),
        "{p}"
    );
    let (_, by_name) = api.get("/assets?sort=name&limit=2").await;
    let cursor = by_name["next_cursor"].as_str().unwrap();
    let (s, p) = api.get(&format!("/assets?sort=-risk&after={cursor}")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(p["detail"].as_str().unwrap().contains("same sort"), "{p}");

    // changed_since: everything was observed by the sync; nothing after now.
    let run = &app
        .store
        .list_runs(&rampart_store::Visibility::All, IntegrationId(id), 1)
        .await
        .unwrap()[0];
    let before = (run.started_at - chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let after = (chrono::Utc::now() + chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (path, everything) in [
        ("/assets", total),
        ("/findings", usize::MAX),
        ("/vulnerabilities", usize::MAX),
    ] {
        let enc = |t: &str| t.replace('+', "%2B");
        let (s, page) = api
            .get(&format!("{path}?limit=1000&changed_since={}", enc(&before)))
            .await;
        assert_eq!(s, StatusCode::OK, "{path}: {page}");
        let n = page["items"].as_array().unwrap().len();
        assert!(n > 0, "{path}");
        if everything != usize::MAX {
            assert_eq!(n, everything, "{path}");
        }
        let (_, later) = api
            .get(&format!("{path}?changed_since={}", enc(&after)))
            .await;
        assert!(
            later["items"].as_array().unwrap().is_empty(),
            "{path}: {later}"
        );
        // An offset other than Z means the same instant.
        let (s, _) = api
            .get(&format!("{path}?changed_since=2026-01-01T02:00:00%2B02:00"))
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, p) = api.get(&format!("{path}?changed_since=yesterday")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
        assert!(p["detail"].as_str().unwrap().contains("RFC 3339"));
    }
    // changed_since with cursor pagination: pages of 7 visit the same findings as one page.
    let (_, one) = api
        .get(&format!(
            "/findings?limit=1000&status=open&changed_since={}",
            before.replace('+', "%2B")
        ))
        .await;
    let want = one["items"].as_array().unwrap().len();
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/findings?limit=7&status=open&changed_since={before}&after={c}"),
            None => format!("/findings?limit=7&status=open&changed_since={before}"),
        };
        let (_, page) = api.get(&path.replace('+', "%2B")).await;
        seen += page["items"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, want.min(1000));
}

#[tokio::test]
async fn every_api_route_needs_a_token_and_answers_a_reader() {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let id = app
        .add_integration(&mut admin, "routes", "Wr0ng~secret~value~long~enough")
        .await;
    let reader = Api::of(&app, "read").await;
    let http = reqwest::Client::new();
    for path in [
        "/integrations".to_owned(),
        format!("/integrations/{id}"),
        format!("/integrations/{id}/runs"),
        "/assets".into(),
        "/assets?sort=-open_findings".into(),
        "/findings".into(),
        "/vulnerabilities".into(),
        "/posture".into(),
        "/posture/history".into(),
        "/posture/controls".into(),
        "/posture/recommendations".into(),
    ] {
        let anon = http
            .get(format!("{}/api/v1{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(anon.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(anon.headers()["content-type"], "application/problem+json");
        let (s, body) = reader.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
    }
    // A reader changes nothing: every state change needs the admin scope.
    for (method, path) in [
        (reqwest::Method::POST, format!("/integrations/{id}/sync")),
        (reqwest::Method::POST, format!("/integrations/{id}/test")),
        (reqwest::Method::PATCH, format!("/integrations/{id}")),
        (reqwest::Method::DELETE, format!("/integrations/{id}")),
        (reqwest::Method::DELETE, "/users/1".to_owned()),
    ] {
        let body = (method == reqwest::Method::PATCH).then(|| json!({"enabled": false}));
        let (s, _) = reader.send(method.clone(), &path, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}");
    }
    assert!(
        app.store
            .list_jobs(&rampart_store::Visibility::All, None, false, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn cloud_integrations_are_accepted() {
    let app = spawn_app().await;
    let api = Api::of(&app, "admin").await;
    let mut body = new_integration(&app, "cloudy", "S3cret~value~that~is~long~enough");
    body["product"] = json!("cloud");
    let (s, created) = api.post("/integrations", body).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["product"], "cloud");
    assert_eq!(
        created["schedule_minutes"], 480,
        "Cloud syncs every 8 hours by default"
    );
    // And through the portal form.
    let mut admin = app.signed_in(ADMIN).await;
    let mut form = app.integration_form("cloudy-portal", "S3cret~value~that~is~long~enough");
    for f in form.iter_mut() {
        if f.0 == "product" {
            f.1 = "cloud".into();
        }
        if f.0 == "schedule_minutes" {
            f.1 = String::new();
        }
    }
    let page = admin.post("/integrations", &form).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let all = app
        .store
        .list_integrations(&rampart_store::Visibility::All)
        .await
        .unwrap();
    let portal = all
        .iter()
        .find(|i| i.name.as_str() == "cloudy-portal")
        .unwrap();
    assert_eq!(portal.product, rampart_model::Product::Cloud);
    assert_eq!(portal.schedule_minutes, 480);
}

/// Issue 12, 3: an admin token was enough to point an integration at any server, which then
/// received the stored client secret at the next sync.
#[tokio::test]
async fn moving_an_integration_needs_its_secret_again() {
    let app = spawn_app().await;
    let api = Api::of(&app, "admin").await;
    let secret = app.sim_config.client_secret.clone();
    let (s, created) = api
        .post("/integrations", new_integration(&app, "pinned", &secret))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let path = format!("/integrations/{}", created["id"]);
    for change in [
        json!({"api_url": "https://collector.example.net"}),
        json!({"login_url": "https://login.example.net"}),
        json!({"login_url": "", "api_url": ""}),
        json!({"cloud": "gcc"}),
    ] {
        let (s, p) = api.patch(&path, change.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{change}: {p}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("enter the client secret again"),
            "{p}"
        );
    }
    let (_, unchanged) = api.get(&path).await;
    assert_eq!(unchanged["api_url"], app.sim.url.as_str());
    assert_eq!(unchanged["login_url"], app.sim.url.as_str());
    assert_eq!(unchanged["cloud"], "commercial");
    // Other changes need no secret.
    let (s, p) = api.patch(&path, json!({"schedule_minutes": 90})).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    // Plain http to another machine is refused even with the secret.
    let (s, p) = api
        .patch(
            &path,
            json!({"api_url": "http://collector.example.net", "client_secret": secret}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("plain http"), "{p}");
    let (s, p) = api
        .post(
            "/integrations",
            json!({
                "name": "cleartext",
                "product": "endpoint",
                "tenant_id": app.sim_config.tenant_id,
                "client_id": app.sim_config.client_id,
                "client_secret": secret,
                "login_url": "http://login.example.net",
            }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    // With the secret entered again, the move is made and audited with both hosts.
    let (s, p) = api
        .patch(
            &path,
            json!({"api_url": "https://collector.example.net", "client_secret": secret}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["api_url"], "https://collector.example.net");
    let audit = app.store.list_audit(20).await.unwrap();
    let entry = audit
        .iter()
        .find(|e| {
            e.action == "integration.update"
                && e.details.as_deref().unwrap_or_default().contains("API URL")
        })
        .unwrap();
    let details = entry.details.as_deref().unwrap();
    assert!(
        details.contains(&format!(
            "API URL {} → https://collector.example.net",
            app.sim.url
        )),
        "{details}"
    );
    assert!(!details.contains(&secret));
}

/// Issue 14: findings sorted by priority (walked page by page), filtered by decision and SLA
/// status, each with its decision, due date, SLA status and "why this priority".
#[tokio::test]
async fn findings_sort_by_priority_and_filter_by_decision_and_sla_status() {
    let (_app, _, api) = synced_app("priority").await;

    let mut walked: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/findings?status=open&sort=-priority&limit=97&after={c}"),
            None => "/findings?status=open&sort=-priority&limit=97".into(),
        };
        let (s, page) = api.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        walked.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let (_, by_id) = api.get("/findings?status=open&limit=1000").await;
    let open = by_id["items"].as_array().unwrap().len();
    assert!(open > 97, "several pages: {open}");
    assert_eq!(walked.len(), open, "every open finding once");
    let key = |f: &Value| (f["priority"].as_f64().unwrap(), f["id"].as_i64().unwrap());
    for pair in walked.windows(2) {
        assert!(
            key(&pair[0]) > key(&pair[1]),
            "{} then {}",
            pair[0],
            pair[1]
        );
    }
    for f in &walked {
        assert!(f["decision"].is_string() && f["due_at"].is_string(), "{f}");
        let status = f["sla_status"].as_str().unwrap();
        assert!(["on_track", "due_soon", "overdue"].contains(&status), "{f}");
        let factors = f["priority_factors"].as_array().unwrap();
        assert_eq!(factors[0]["factor"], "decision");
        assert_eq!(factors[0]["value"], f["decision"]);
        let points: u64 = factors.iter().map(|c| c["points"].as_u64().unwrap()).sum();
        assert_eq!(points as f64, f["priority"].as_f64().unwrap());
    }
    let (_, ascending) = api.get("/findings?status=open&sort=priority&limit=1").await;
    assert_eq!(ascending["items"][0]["id"], walked.last().unwrap()["id"]);

    // Each decision and SLA status filter returns exactly the findings that have it.
    for decision in ["immediate", "out-of-cycle", "scheduled", "defer"] {
        let (s, page) = api
            .get(&format!("/findings?decision={decision}&limit=1000"))
            .await;
        assert_eq!(s, StatusCode::OK);
        let expected = walked.iter().filter(|f| f["decision"] == decision).count();
        assert_eq!(
            page["items"].as_array().unwrap().len(),
            expected,
            "{decision}"
        );
    }
    for status in ["on_track", "due_soon", "overdue"] {
        let (s, page) = api
            .get(&format!(
                "/findings?sla_status={status}&sort=-priority&limit=1000"
            ))
            .await;
        assert_eq!(s, StatusCode::OK);
        let items = page["items"].as_array().unwrap();
        let expected = walked.iter().filter(|f| f["sla_status"] == status).count();
        assert_eq!(items.len(), expected, "{status}");
        assert!(items.iter().all(|f| f["sla_status"] == status));
    }
    let (_, accepted) = api.get("/findings?sla_status=accepted").await;
    assert_eq!(accepted["items"].as_array().unwrap().len(), 0);
    for bad in [
        "/findings?sort=severity",
        "/findings?decision=soon",
        "/findings?sla_status=late",
        "/findings?sort=-priority&after=17",
    ] {
        let (s, p) = api.get(bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {p}");
    }
}

/// Issue 14 in the portal: an asset's open findings come most urgent first, each with its
/// decision and due date, and its priority opens to the factors that make it; the dashboard
/// leads with the overdue and immediate counts.
#[tokio::test]
async fn portal_pages_lead_with_priority_and_explain_it() {
    let (app, _, api) = synced_app("portal-priority").await;
    let (_, top) = api
        .get("/findings?status=open&sort=-priority&limit=1")
        .await;
    let top = &top["items"][0];
    let asset = top["asset_source_id"].as_str().unwrap();
    let (_, assets) = api.get("/assets?limit=1000").await;
    let asset_id = assets["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source_id"] == asset)
        .expect("the asset")["id"]
        .as_i64()
        .unwrap();

    let mut viewer = app.signed_in(ADMIN).await;
    let page = viewer.get(&format!("/assets/{asset_id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    assert!(
        body.contains("<th>Priority</th><th>Decision</th><th>Due</th>"),
        "{body}"
    );
    assert!(body.contains("<table class=\"why\">"), "{body}");
    assert!(body.contains("<td>exploitation</td>") && body.contains("<td>epss</td>"));
    // The priorities of the rows, in page order: most urgent first.
    let priorities: Vec<u32> = body
        .split("<details><summary>")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().parse().unwrap())
        .collect();
    assert!(!priorities.is_empty());
    assert!(
        priorities.windows(2).all(|w| w[0] >= w[1]),
        "{priorities:?}"
    );
    // The asset holds the most urgent finding of all: it leads its page.
    assert_eq!(f64::from(priorities[0]), top["priority"].as_f64().unwrap());

    let dashboard = viewer.get("/").await;
    let (_, overdue) = api.get("/findings?sla_status=overdue&limit=1000").await;
    let expected = overdue["items"].as_array().unwrap().len();
    assert!(
        dashboard.body.contains(&format!(
            "id=\"findings-overdue\"><a href=\"/findings?sla_status=overdue\">{expected}</a>"
        )),
        "{}",
        dashboard.body
    );
    assert!(dashboard.body.contains("id=\"findings-immediate\""));
    let findings = viewer.get("/findings?sla_status=overdue").await;
    assert_eq!(findings.status, StatusCode::OK);
}
