//! Webhooks through the portal and the API (docs/webhooks.md), against a real receiver on
//! 127.0.0.1: the signing secret is shown once and signs what "Send test" sends, the URL's path
//! (a credential for Teams and Slack) is never shown again nor logged, the delivery log shows the
//! attempts, and viewers are refused.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

async fn record(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    seen.lock().unwrap().push((headers, body.to_vec()));
    AxumStatus::OK
}

/// A receiver on 127.0.0.1:0 that records what it gets; returns its URL and what it saw.
async fn receiver() -> (String, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .fallback(record)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in:\n{text}"))
        + start.len();
    &text[from..from + text[from..].find(end).unwrap()]
}

/// The hex HMAC-SHA256 of `timestamp.body`, computed here as a receiver would.
fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn portal_and_api(app: TestApp) {
    let (base, seen) = receiver().await;
    const PATH_SECRET: &str = "T0000/B0000/PathToken0123456789";
    let url = format!("{base}/hooks/{PATH_SECRET}");
    let mut admin = app.signed_in(ADMIN).await;
    let mut viewer = app.signed_in(VIEWER).await;

    // A viewer is refused every webhook page.
    assert_eq!(viewer.get("/webhooks").await.status, StatusCode::FORBIDDEN);
    let page = viewer
        .post("/webhooks", &[("name", "x"), ("url", url.as_str())])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    // Added through the portal: the signing secret is shown once.
    let page = admin
        .post(
            "/webhooks",
            &[
                ("name", "soc-receiver"),
                ("url", url.as_str()),
                ("format", "generic"),
                ("workspace", ""),
                ("sync_failed", "on"),
                ("immediate_finding", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let secret = between(&page.body, "<code id=\"signing-secret\">", "<").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(
        !page.body.contains(PATH_SECRET),
        "the URL is shown:\n{}",
        page.body
    );
    let list = admin.get("/webhooks").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("soc-receiver"));
    assert!(list.body.contains("http://127.0.0.1/…"), "{}", list.body);
    assert!(!list.body.contains(PATH_SECRET));
    assert!(!list.body.contains(&secret), "the secret is shown twice");
    let id = app
        .store
        .list_webhooks(&rampart_store::Visibility::All)
        .await
        .unwrap()[0]
        .id;

    // A bad URL is refused with the form, in words.
    let page = admin
        .post(
            "/webhooks",
            &[
                ("name", "plain"),
                ("url", "http://hooks.example.com/x"),
                ("sync_failed", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("https://"), "{}", page.body);

    // "Send test" sends at once and shows the result; the signature verifies.
    let page = admin
        .post(&format!("/webhooks/{id}/test"), &[] as &[(&str, &str)])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("Test sent: the receiver answered HTTP 200"),
        "{}",
        page.body
    );
    let (headers, body) = seen.lock().unwrap()[0].clone();
    let ts = headers["x-rampart-timestamp"].to_str().unwrap();
    assert_eq!(
        headers["x-rampart-signature"].to_str().unwrap(),
        format!("sha256={}", expected_signature(&secret, ts, &body))
    );
    assert_eq!(headers["x-rampart-event"], "test");
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["event"], "test");
    assert_eq!(event["data"]["requested_by"], ADMIN);
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains(&secret) && !text.contains(PATH_SECRET));
    // The log page shows the attempt.
    let log = admin.get(&format!("/webhooks/{id}")).await;
    assert_eq!(log.status, StatusCode::OK);
    assert!(log.body.contains("delivered"), "{}", log.body);
    assert!(log.body.contains(": 200"), "{}", log.body);

    // Disabled, then enabled again; the audit log has each change.
    for enabled in ["false", "true"] {
        let page = admin
            .post(&format!("/webhooks/{id}/enabled"), &[("enabled", enabled)])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    }
    let audit = admin.get("/audit").await.body;
    for action in ["webhook.create", "webhook.disable", "webhook.enable"] {
        assert!(audit.contains(action), "{action} not audited");
    }
    assert!(!audit.contains(PATH_SECRET));

    // The API: an admin token lists, creates (a Slack webhook: no signing secret), tests, reads
    // the log and removes.
    let token = app.api_token("admin").await;
    let (_, listed) = app.api_json(&token, Method::GET, "/webhooks", None).await;
    assert_eq!(listed[0]["name"], "soc-receiver");
    assert_eq!(listed[0]["url"], "http://127.0.0.1/…");
    assert_eq!(listed[0]["last_delivery"], "delivered");
    let (status, created) = app
        .api_json(
            &token,
            Method::POST,
            "/webhooks",
            Some(json!({
                "name": "slack",
                "url": format!("{base}/slack/{PATH_SECRET}"),
                "format": "slack",
                "events": ["sla_breach", "secret_expiring"],
                "workspace_id": 1,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["signing_secret"], Value::Null);
    assert_eq!(created["workspace_id"], 1);
    assert!(!created.to_string().contains(PATH_SECRET));
    let slack = created["id"].as_i64().unwrap();
    let (status, delivery) = app
        .api_json(
            &token,
            Method::POST,
            &format!("/webhooks/{slack}/test"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(delivery["log"][0]["http_status"], 200);
    let (_, body) = seen.lock().unwrap()[1].clone();
    let message: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        message["text"].is_string() && message["blocks"].is_array(),
        "{message}"
    );
    let deliveries = format!("/webhooks/{slack}/deliveries");
    let (_, log) = app.api_json(&token, Method::GET, &deliveries, None).await;
    assert_eq!(log[0]["event"], "test");
    assert_eq!(log[0]["attempts"], 1);
    let (status, _) = app
        .api_json(&token, Method::DELETE, &format!("/webhooks/{slack}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.api_json(&token, Method::GET, &deliveries, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A read token is refused.
    let reader = app.api_token("read").await;
    let (status, _) = app.api_json(&reader, Method::GET, "/webhooks", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Removed through the portal.
    let page = admin
        .post(&format!("/webhooks/{id}/delete"), &[] as &[(&str, &str)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(!admin.get("/webhooks").await.body.contains("soc-receiver"));

    // Neither the URL's credential nor the signing secret was ever logged.
    let logs = captured_logs();
    assert!(!logs.contains(PATH_SECRET), "the URL was logged");
    assert!(!logs.contains(&secret), "the signing secret was logged");
}

#[tokio::test]
async fn webhooks_through_the_portal_and_the_api_on_sqlite() {
    portal_and_api(spawn_app().await).await;
}

#[tokio::test]
async fn webhooks_through_the_portal_and_the_api_on_postgres() {
    portal_and_api(spawn_app_on_postgres().await).await;
}

/// End to end in a worker: a scheduled sync with a wrong client secret fails, and the worker's
/// scheduler sends the `sync_failed` alert without anyone asking.
#[tokio::test]
async fn a_worker_sends_the_alert_of_a_failed_sync() {
    let mut app = spawn_app().await;
    let (base, seen) = receiver().await;
    let mut admin = app.signed_in(ADMIN).await;
    let page = admin
        .post(
            "/webhooks",
            &[
                ("name", "soc"),
                ("url", format!("{base}/hook").as_str()),
                ("format", "slack"),
                ("sync_failed", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let wrong = "Wr0ng~Worker~Secret~0123456789abcdefghij";
    app.add_integration(&mut admin, "failing", wrong).await;
    app.stop_first_server();
    let _worker = app
        .another_server(std::time::Duration::from_millis(100))
        .await;
    let mut got = Vec::new();
    for _ in 0..300 {
        got = seen.lock().unwrap().clone();
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(got.len(), 1, "the worker sent the alert");
    let (headers, body) = &got[0];
    assert_eq!(headers["x-rampart-event"], "sync_failed");
    let text = String::from_utf8_lossy(body);
    let message: Value = serde_json::from_str(&text).unwrap();
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .contains("Sync of failing failed"),
        "{message}"
    );
    assert!(!text.contains(wrong));
}
