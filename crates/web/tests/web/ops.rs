//! The operator routes: `/healthz`, `/readyz` and `/metrics`.

use std::collections::HashMap;
use std::sync::Arc;

use openmetrics_parser::OpenMetricsValue;
use rampart_store::testing::ThrowawayServer;
use rampart_sync::vault::Vault;
use rampart_sync::{Engine, EngineOptions};
use rampart_web::{Application, WebConfig};
use reqwest::StatusCode;

use crate::helpers::*;

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.unwrap()
}

#[tokio::test]
async fn healthz_is_up_and_readyz_follows_the_database() {
    let app = spawn_app().await;

    let health = get(&format!("{}/healthz", app.url)).await;
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        health.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(body(health).await, "ok");
    let ready = get(&format!("{}/readyz", app.url)).await;
    assert_eq!(ready.status(), StatusCode::OK);

    // The database file goes away (a volume unmounted, a file moved by hand).
    let db = app.database();
    let away = db.with_extension("away");
    std::fs::rename(&db, &away).unwrap();
    let ready = get(&format!("{}/readyz", app.url)).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(problem["status"], 503);
    assert_eq!(problem["check"], "database-unreachable", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{problem}"
    );
    // Liveness does not depend on the database.
    assert_eq!(
        get(&format!("{}/healthz", app.url)).await.status(),
        StatusCode::OK
    );

    std::fs::rename(&away, &db).unwrap();
    let ready = get(&format!("{}/readyz", app.url)).await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(body(ready).await, "ready");
}

/// PostgreSQL going down under a running server, and coming back: /readyz says 503 while it is
/// down and 200 again once it is back, without restarting Rampart. The server is this test's own
/// (stopping the shared one would fail every other test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_postgresql_is_down_and_recovers() {
    let server = Arc::new(
        tokio::task::spawn_blocking(ThrowawayServer::start)
            .await
            .unwrap(),
    );
    let store = rampart_store::connect(server.url()).await.unwrap();
    let app = spawn_app_over(store).await;
    let readyz = format!("{}/readyz", app.url);
    assert_eq!(get(&readyz).await.status(), StatusCode::OK);

    let down = server.clone();
    tokio::task::spawn_blocking(move || down.stop())
        .await
        .unwrap();
    let ready = get(&readyz).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(problem["check"], "database-unreachable", "{problem}");
    assert!(
        !problem["detail"].as_str().unwrap().contains(server.url()),
        "{problem}"
    );
    assert_eq!(
        get(&format!("{}/healthz", app.url)).await.status(),
        StatusCode::OK
    );

    let up = server.clone();
    tokio::task::spawn_blocking(move || up.resume())
        .await
        .unwrap();
    // The pool drops its dead connections and opens new ones on the next request. pg_ctl has
    // waited for the server to accept connections, so the first answer is normally 200; the
    // retries only absorb a connection the pool had begun to open while it was down.
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..25 {
        let ready = get(&readyz).await;
        status = ready.status();
        if status == StatusCode::OK {
            assert_eq!(body(ready).await, "ready");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(status, StatusCode::OK, "/readyz did not recover");
}

/// One sample of a scrape: its family, labels and value (a histogram's value is its count).
struct Sample {
    family: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Every sample of a scrape, checked by a strict OpenMetrics parser.
struct Scrape(Vec<Sample>);

impl Scrape {
    async fn of(url: &str, token: Option<&str>) -> Scrape {
        let mut req = reqwest::Client::new().get(format!("{url}/metrics"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = body(response).await;
        let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&body)
            .unwrap_or_else(|e| panic!("/metrics does not parse ({e:?}):\n{body}"));
        let mut samples = Vec::new();
        for (name, family) in &parsed.families {
            for sample in family.iter_samples() {
                let labels = sample
                    .get_labelset()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let value = match &sample.value {
                    OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => n.as_f64(),
                    OpenMetricsValue::Histogram(h) => h.count.unwrap_or(0) as f64,
                    other => panic!("unexpected metric type in {name}: {other:?}"),
                };
                samples.push(Sample {
                    family: name.clone(),
                    labels,
                    value,
                });
            }
        }
        Scrape(samples)
    }

    fn value(&self, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .find(|s| {
                s.family == family
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// Requests answered on `route`, all methods and statuses.
    fn histogram_count(&self, route: &str) -> f64 {
        self.0
            .iter()
            .filter(|s| {
                s.family == "rampart_http_request_duration_seconds"
                    && s.labels.get("route").map(String::as_str) == Some(route)
            })
            .map(|s| s.value)
            .sum()
    }
}

#[tokio::test]
async fn metrics_parse_and_move_after_a_sync() {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let id = app
        .add_integration(&mut admin, "prod", &app.sim_config.client_secret)
        .await;

    let before = Scrape::of(&app.url, None).await;
    let labels = [("integration", "prod")];
    assert_eq!(
        before.value("rampart_sync_last_run_api_calls", &labels),
        None
    );
    assert_eq!(
        before.value("rampart_jobs", &[("state", "running")]),
        Some(0.0)
    );

    let page = admin
        .post(&format!("/integrations/{id}/sync"), &[] as &[(&str, &str)])
        .await;
    assert!(page.status.is_redirection(), "{}", page.body);
    assert_eq!(app.wait_for_run(id).await, "succeeded");

    let after = Scrape::of(&app.url, None).await;
    let api_calls = after
        .value("rampart_sync_last_run_api_calls", &labels)
        .unwrap();
    assert!(api_calls > 0.0, "API calls: {api_calls}");
    let success = after
        .value("rampart_sync_last_success_timestamp_seconds", &labels)
        .unwrap();
    assert!(success > 1.7e9, "last success: {success}");
    assert!(
        after
            .value("rampart_sync_last_run_duration_seconds", &labels)
            .unwrap()
            >= 0.0
    );
    let assets_read = after
        .value(
            "rampart_sync_last_run_rows",
            &[
                ("integration", "prod"),
                ("entity", "assets"),
                ("change", "read"),
            ],
        )
        .unwrap();
    assert_eq!(assets_read, f64::from(app.sim_config.devices));
    assert!(
        after
            .value(
                "rampart_sync_last_run_rows",
                &[
                    ("integration", "prod"),
                    ("entity", "findings"),
                    ("change", "new")
                ],
            )
            .unwrap()
            > 0.0
    );
    assert_eq!(
        after.value(
            "rampart_sync_last_run_verdict",
            &[("integration", "prod"), ("value", "complete")]
        ),
        Some(1.0)
    );
    assert_eq!(
        after.value(
            "rampart_sync_last_run_status",
            &[("integration", "prod"), ("value", "failed")]
        ),
        Some(0.0)
    );
    assert!(
        after
            .value("rampart_sync_last_run_throttled", &labels)
            .is_some()
    );
    assert!(
        after
            .value("rampart_sync_last_run_retries", &labels)
            .is_some()
    );
    assert!(after.value("rampart_jobs_due", &[]).is_some());
    assert!(
        after
            .value("rampart_jobs_oldest_due_age_seconds", &[])
            .is_some()
    );
    assert!(after.histogram_count("/integrations/{id}/sync") >= 1.0);
    assert!(after.histogram_count("/metrics") >= 1.0);
    // By route pattern, never by the id in the URL.
    let routes: Vec<&String> = after
        .0
        .iter()
        .filter_map(|s| s.labels.get("route"))
        .collect();
    assert!(
        !routes
            .iter()
            .any(|r| r.contains(&format!("/integrations/{id}"))),
        "a raw URL became a label: {routes:?}"
    );
}

#[tokio::test]
async fn metrics_ask_for_their_token_when_one_is_set() {
    let app = spawn_app().await;
    let engine = Arc::new(Engine::new(
        app.store.clone(),
        Vault::from_key(&[7u8; 32]),
        EngineOptions::default(),
    ));
    let mut config = WebConfig::new("127.0.0.1:0".parse().unwrap());
    config.scheduler = false;
    config.metrics_token = Some("scrape-me".to_owned().into());
    let server = Application::build(config, engine).await.unwrap();
    let url = server.url();
    tokio::spawn(server.run_until(std::future::pending()));

    let client = reqwest::Client::new();
    let anonymous = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body = body(anonymous).await;
    assert!(!body.contains("rampart_"), "{body}");
    let wrong = client
        .get(format!("{url}/metrics"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let scrape = Scrape::of(&url, Some("scrape-me")).await;
    assert!(scrape.value("rampart_jobs_due", &[]).is_some());
    // The probes stay open: a load balancer has no token.
    assert_eq!(
        get(&format!("{url}/healthz")).await.status(),
        StatusCode::OK
    );
    assert_eq!(get(&format!("{url}/readyz")).await.status(), StatusCode::OK);
}
