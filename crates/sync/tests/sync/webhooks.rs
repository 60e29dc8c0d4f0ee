//! Outgoing webhooks (issue 14; docs/webhooks.md) against a real receiver: a tiny HTTP server on
//! 127.0.0.1 that records every request and answers 500 to the first one on a path. A sync
//! against the emulator with a wrong client secret fails; the webhooks of its workspace get
//! `sync_failed` (the generic one signed, retried after its 500 and then delivered; Teams and
//! Slack in their shapes), with no secret anywhere in what they receive, and a webhook of
//! another workspace gets nothing.

// Test helpers unwrap: a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use chrono::{DateTime, Duration, Utc};
use rampart_model::{RunStatus, WorkspaceId};
use rampart_store::{DeliveryStatus, Store, Visibility, WebhookEventKind, WebhookFormat};
use rampart_sync::webhooks::{self, WebhookRequest};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::harness::*;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// The receiver: what it got, and the paths whose first request it answers 500.
#[derive(Clone, Default)]
pub struct Receiver {
    seen: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<Mutex<HashSet<String>>>,
    /// Paths whose first request is answered 429 with `Retry-After: 3600`.
    throttle_first: Arc<Mutex<HashSet<String>>>,
}

impl Receiver {
    pub fn on(&self, path: &str) -> Vec<Received> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path().to_owned();
    r.seen.lock().unwrap().push(Received {
        path: path.clone(),
        headers,
        body: body.to_vec(),
    });
    if r.throttle_first.lock().unwrap().remove(&path) {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "3600")]).into_response();
    }
    if r.fail_first.lock().unwrap().remove(&path) {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// A receiver on 127.0.0.1:0; returns its base URL.
pub async fn spawn_receiver(fail_first_on: &[&str]) -> (String, Receiver) {
    let receiver = Receiver::default();
    receiver
        .fail_first
        .lock()
        .unwrap()
        .extend(fail_first_on.iter().map(|p| (*p).to_owned()));
    let app = Router::new().fallback(record).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, receiver)
}

fn request(
    name: &str,
    url: String,
    format: WebhookFormat,
    workspace: WorkspaceId,
) -> WebhookRequest {
    WebhookRequest {
        workspace: Some(workspace),
        name: name.into(),
        url: SecretString::from(url),
        format,
        events: vec![WebhookEventKind::SyncFailed],
    }
}

/// A receiver, and a generic webhook "soc" to it in the harness's workspace for `events`.
async fn soc_webhook(h: &Harness, events: Vec<WebhookEventKind>) -> Receiver {
    let (base, receiver) = spawn_receiver(&[]).await;
    let mut request = request(
        "soc",
        format!("{base}/generic"),
        WebhookFormat::Generic,
        h.integration.workspace_id,
    );
    request.events = events;
    webhooks::create(
        h.store.as_ref(),
        h.engine.vault(),
        &Visibility::All,
        &request,
        "root",
        Utc::now(),
    )
    .await
    .unwrap();
    receiver
}

/// Delivers the webhook events due at `at`.
async fn deliver_due(h: &Harness, at: DateTime<Utc>) {
    h.engine
        .webhooks()
        .deliver_due(h.store.as_ref(), h.engine.vault(), at)
        .await
        .unwrap();
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Every header and the body, as one text to search for secrets.
fn raw(r: &Received) -> String {
    let mut text = String::from_utf8_lossy(&r.body).into_owned();
    for (k, v) in &r.headers {
        text.push_str(&format!("\n{k}: {}", v.to_str().unwrap_or("")));
    }
    text
}

pub async fn a_failed_sync_is_sent_signed_retried_after_a_500_and_never_with_a_secret(
    store: Arc<dyn Store>,
) {
    let wrong = "Wr0ng~Hook~Secret~0123456789abcdefghij";
    let h = harness_with_secret(store, small_tenant(), Some(wrong)).await;
    let store = h.store.as_ref();
    let vault = h.engine.vault();
    let all = Visibility::All;
    let now = Utc::now();
    let (base, receiver) = spawn_receiver(&["/generic"]).await;
    // Slack asks for an hour's pause: honoured over the 30 s backoff.
    receiver
        .throttle_first
        .lock()
        .unwrap()
        .insert("/slack".to_owned());
    let (b_base, b_receiver) = spawn_receiver(&[]).await;
    let b = store.create_workspace("B").await.unwrap().id;
    let ws = h.integration.workspace_id;

    let generic = webhooks::create(
        store,
        vault,
        &all,
        &request("soc", format!("{base}/generic"), WebhookFormat::Generic, ws),
        "root",
        now,
    )
    .await
    .unwrap();
    let signing = generic
        .signing_secret
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_owned();
    assert!(signing.len() >= 64, "{signing}");
    assert_eq!(generic.webhook.url_shown, "http://127.0.0.1/…");
    for (name, path, format) in [
        ("teams", "/teams", WebhookFormat::Teams),
        ("slack", "/slack", WebhookFormat::Slack),
    ] {
        let created = webhooks::create(
            store,
            vault,
            &all,
            &request(name, format!("{base}{path}"), format, ws),
            "root",
            now,
        )
        .await
        .unwrap();
        assert!(created.signing_secret.is_none());
    }
    let other = webhooks::create(
        store,
        vault,
        &all,
        &request(
            "bravo-soc",
            format!("{b_base}/generic"),
            WebhookFormat::Generic,
            b,
        ),
        "root",
        now,
    )
    .await
    .unwrap();

    let run = h.sync(full()).await;
    assert_eq!(run.status, RunStatus::Failed);

    // The first pass: every delivery tried once; the generic one gets its 500.
    let sender = h.engine.webhooks();
    let sent = sender.deliver_due(store, vault, Utc::now()).await.unwrap();
    assert_eq!(sent, 3);
    assert_eq!(receiver.on("/generic").len(), 1);
    // Not due again until its backoff has passed; then retried and delivered.
    assert_eq!(
        sender.deliver_due(store, vault, Utc::now()).await.unwrap(),
        0
    );
    // Slack's 429 waits for its Retry-After (an hour) rather than the 30 s backoff.
    let soon = Utc::now() + Duration::minutes(10);
    assert_eq!(sender.deliver_due(store, vault, soon).await.unwrap(), 1);
    let got = receiver.on("/generic");
    assert_eq!(got.len(), 2);
    assert_eq!(receiver.on("/slack").len(), 1);
    let later = Utc::now() + Duration::minutes(61);
    assert_eq!(sender.deliver_due(store, vault, later).await.unwrap(), 1);
    assert_eq!(receiver.on("/slack").len(), 2);

    for r in &got {
        // The signature verifies with the secret shown at creation, over timestamp.body.
        let ts: i64 = header(r, "X-Rampart-Timestamp").parse().unwrap();
        assert_eq!(
            header(r, "X-Rampart-Signature"),
            webhooks::sign(signing.as_bytes(), ts, &r.body)
        );
        assert_ne!(
            header(r, "X-Rampart-Signature"),
            webhooks::sign(b"another secret", ts, &r.body)
        );
        assert_eq!(header(r, "X-Rampart-Event"), "sync_failed");
        assert_eq!(header(r, "Content-Type"), "application/json");
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["event"], "sync_failed");
        assert_eq!(body["integration"]["name"], h.integration.name.as_str());
        assert_eq!(body["workspace"]["name"], "Default");
        assert_eq!(body["data"]["status"], "failed");
        assert_eq!(body["data"]["run_id"], run.id.get());
        assert_eq!(body["data"]["microsoft_error_code"], "AADSTS7000215");
        assert!(body["data"]["error"].as_str().unwrap().contains("7000215"));
    }
    assert_eq!(
        header(&got[0], "X-Rampart-Delivery"),
        header(&got[1], "X-Rampart-Delivery")
    );

    // Teams: an Adaptive Card; Slack: text and blocks.
    let teams: Value = serde_json::from_slice(&receiver.on("/teams")[0].body).unwrap();
    assert_eq!(teams["type"], "message");
    assert_eq!(
        teams["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(teams["attachments"][0]["content"]["type"], "AdaptiveCard");
    assert!(teams.to_string().contains("AADSTS7000215"));
    let slack: Value = serde_json::from_slice(&receiver.on("/slack")[1].body).unwrap();
    assert!(slack["text"].as_str().unwrap().contains("failed"));
    assert_eq!(slack["blocks"][0]["type"], "header");
    assert!(
        receiver.on("/teams")[0]
            .headers
            .get("X-Rampart-Signature")
            .is_none()
    );

    // No secret in any body or header: not the client secret stored, not the emulator's, not
    // the signing secret.
    let sim_secret = h.sim.sim.config().client_secret.clone();
    for r in receiver.all() {
        let text = raw(&r);
        for secret in [wrong, sim_secret.as_str(), signing.as_str()] {
            assert!(
                !text.contains(secret),
                "{} carries a secret:\n{text}",
                r.path
            );
        }
    }

    // The log shows both attempts of the generic delivery.
    let log = store
        .list_webhook_deliveries(&all, generic.webhook.id, 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, DeliveryStatus::Delivered);
    let statuses: Vec<Option<u16>> = log[0].log.iter().map(|a| a.http_status).collect();
    assert_eq!(statuses, [Some(500), Some(204)]);
    assert!(
        log[0].log[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("HTTP 500")
    );
    assert!(
        !log[0].log[0]
            .error
            .as_deref()
            .unwrap()
            .contains("127.0.0.1")
    );

    // Workspace B's webhook got nothing of the Default workspace's failure.
    assert!(b_receiver.all().is_empty());
    assert!(
        store
            .list_webhook_deliveries(&all, other.webhook.id, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // "Send test" sends at once, and B's test goes to B's receiver only.
    let tested = webhooks::send_test(
        store,
        vault,
        sender,
        &all,
        other.webhook.id,
        "root",
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(tested.status, DeliveryStatus::Delivered);
    assert_eq!(tested.kind, WebhookEventKind::Test);
    let b_got = b_receiver.all();
    assert_eq!(b_got.len(), 1);
    assert_eq!(header(&b_got[0], "X-Rampart-Event"), "test");
    assert_eq!(receiver.on("/generic").len(), 2);
    // An admin of A cannot test B's webhook: not found.
    let a_only = Visibility::Workspaces(vec![ws]);
    assert!(matches!(
        webhooks::send_test(
            store,
            vault,
            sender,
            &a_only,
            other.webhook.id,
            "adam",
            Utc::now()
        )
        .await,
        Err(webhooks::WebhookError::NotFound(_))
    ));
}

pub async fn webhook_urls_are_checked_and_never_repeated(store: Arc<dyn Store>) {
    let vault = rampart_sync::vault::Vault::from_key(&[3u8; 32]);
    let all = Visibility::All;
    let secret_url = "http://hooks.example.com/services/T000/B000/XXXXSECRETXXXX";
    for url in [
        secret_url,
        "ftp://hooks.example.com/x",
        "https://user:XXXXSECRETXXXX@hooks.example.com/x",
        "not a url XXXXSECRETXXXX",
    ] {
        let err = webhooks::create(
            store.as_ref(),
            &vault,
            &all,
            &WebhookRequest {
                workspace: None,
                name: "x".into(),
                url: SecretString::from(url.to_owned()),
                format: WebhookFormat::Slack,
                events: vec![WebhookEventKind::SyncFailed],
            },
            "root",
            Utc::now(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, webhooks::WebhookError::Invalid(_)), "{err}");
        assert!(!err.to_string().contains("XXXXSECRETXXXX"), "{err}");
    }
    let created = webhooks::create(
        store.as_ref(),
        &vault,
        &all,
        &WebhookRequest {
            workspace: None,
            name: "slack".into(),
            url: SecretString::from(
                "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX".to_owned(),
            ),
            format: WebhookFormat::Slack,
            events: vec![WebhookEventKind::SyncFailed],
        },
        "root",
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(created.webhook.url_shown, "https://hooks.slack.com/…");
    // Neither the list nor the audit log holds the URL's credential.
    let listed = format!("{:?}", store.list_webhooks(&all).await.unwrap());
    assert!(!listed.contains("XXXXSECRETXXXX"));
    let audit = format!("{:?}", store.list_audit(10).await.unwrap());
    assert!(!audit.contains("XXXXSECRETXXXX") && audit.contains("webhook.create"));
}

/// Findings that become `immediate` are one event per run with the count and the most urgent,
/// and are not alerted again by the next run.
pub async fn findings_becoming_immediate_are_one_event_per_run_and_alerted_once(
    store: Arc<dyn Store>,
) {
    use rampart_model::FindingStatus;
    use rampart_model::priority::Decision;
    use rampart_store::{FindingFilter, FindingOrder};

    let h = harness(Arc::clone(&store), small_tenant()).await;
    let store = h.store.as_ref();
    let receiver = soc_webhook(&h, vec![WebhookEventKind::ImmediateFinding]).await;
    // CISA KEV first, so that the first sync finds actively exploited CVEs.
    let client =
        rampart_sync::intel::KevClient::new(&format!("{}{}", h.sim.url, rampart_sim::KEV_PATH))
            .unwrap();
    rampart_sync::intel::refresh_kev(store, &client, Utc::now())
        .await
        .unwrap();
    let run = h.sync_ok(full()).await;
    let immediate = store
        .findings_sorted(
            &Visibility::All,
            &FindingFilter {
                integration: Some(h.integration.id),
                status: Some(FindingStatus::Open),
                decision: Some(Decision::Immediate),
                ..FindingFilter::default()
            },
            FindingOrder::PriorityDesc,
            None,
            1000,
        )
        .await
        .unwrap()
        .items;
    assert!(!immediate.is_empty(), "the tenant has immediate findings");

    deliver_due(&h, Utc::now()).await;
    let got = receiver.on("/generic");
    assert_eq!(got.len(), 1, "one event for the run");
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["event"], "immediate_finding");
    assert_eq!(body["data"]["run_id"], run.id.get());
    assert_eq!(body["data"]["count"], immediate.len());
    let top = body["data"]["top"].as_array().unwrap();
    assert_eq!(top.len(), immediate.len().min(10));
    // The most urgent first, as the portal ranks them.
    assert_eq!(top[0]["finding_id"], immediate[0].id);
    assert_eq!(top[0]["cve"], immediate[0].finding.key.cve_id.as_str());
    assert_eq!(top[0]["decision"], "immediate");
    assert!(top[0]["due_at"].is_string());

    // The next run finds the same findings immediate: nothing new to say.
    h.sync_ok(full()).await;
    deliver_due(&h, Utc::now()).await;
    assert_eq!(receiver.on("/generic").len(), 1);
}

/// The periodic check: findings past their due date are one `sla_breach` event per integration,
/// each finding once, those an exception accepts left out; a secret expiring within 30 days is
/// one `secret_expiring` event per expiry date, carrying the date and never the secret.
pub async fn sla_breaches_and_expiring_secrets_are_alerted_once(store: Arc<dyn Store>) {
    use rampart_model::priority::SlaStatus;
    use rampart_model::{FindingStatus, SecretHint};
    use rampart_store::{
        ExceptionScope, FindingFilter, FindingOrder, IntegrationUpdate, NewException,
    };

    let h = harness(Arc::clone(&store), small_tenant()).await;
    let store = h.store.as_ref();
    let receiver = soc_webhook(
        &h,
        vec![
            WebhookEventKind::SlaBreach,
            WebhookEventKind::SecretExpiring,
        ],
    )
    .await;
    h.sync_ok(full()).await;

    // A year on, findings are overdue; one CVE's are accepted by an exception.
    let later = Utc::now() + Duration::days(400);
    let overdue_filter = FindingFilter {
        integration: Some(h.integration.id),
        status: Some(FindingStatus::Open),
        sla_status: Some((SlaStatus::Overdue, later)),
        ..FindingFilter::default()
    };
    // Every overdue finding, most urgent first, as the check ranks them.
    let overdue = |filter: FindingFilter| async move {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .findings_sorted(
                    &Visibility::All,
                    &filter,
                    FindingOrder::PriorityDesc,
                    after,
                    1000,
                )
                .await
                .unwrap();
            all.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return all,
            }
        }
    };
    let before = overdue(overdue_filter.clone()).await;
    assert!(before.len() > 1, "findings are overdue a year on");
    let accepted = before[0].finding.key.cve_id.clone();
    store
        .create_exception(
            &Visibility::All,
            &NewException {
                scope: ExceptionScope::Cve(accepted.clone()),
                integration: Some(h.integration.id),
                reason: "compensating control".into(),
                owner: "root".into(),
                created_by: "root".into(),
                created_at: Utc::now(),
                expires_at: Utc::now() + Duration::days(365 + 100),
            },
        )
        .await
        .unwrap();
    let breaching = overdue(overdue_filter.clone()).await;
    assert!(breaching.iter().all(|f| f.finding.key.cve_id != accepted));
    assert!(!breaching.is_empty() && breaching.len() < before.len());

    let queued = webhooks::sla_breaches(store, Some("https://rampart.example/"), later)
        .await
        .unwrap();
    assert_eq!(queued, 1);
    deliver_due(&h, later).await;
    let got = receiver.on("/generic");
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["event"], "sla_breach");
    assert_eq!(body["data"]["count"], breaching.len());
    assert_eq!(body["data"]["top"][0]["finding_id"], breaching[0].id);
    assert!(!body.to_string().contains(accepted.as_str()), "{body}");
    assert_eq!(
        body["link"],
        format!(
            "https://rampart.example/findings?integration={}&sla=overdue",
            h.integration.id
        )
    );
    // The next check finds the same findings overdue: nothing new.
    assert_eq!(
        webhooks::sla_breaches(store, None, later + Duration::hours(1))
            .await
            .unwrap(),
        0
    );

    // No expiry date: nothing. An expiry in 10 days: one event, once per date.
    let expiring = || webhooks::secret_expiring(store, None, Utc::now());
    assert_eq!(expiring().await.unwrap(), 0);
    let sealed = store.integration_secret(h.integration.id).await.unwrap();
    let expires_on = (Utc::now() + Duration::days(10)).date_naive();
    store
        .update_integration(
            h.integration.id,
            &IntegrationUpdate {
                secret: Some((
                    sealed,
                    SecretHint {
                        last4: h.integration.secret_hint.last4.clone(),
                        expires_on: Some(expires_on),
                    },
                )),
                ..IntegrationUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(expiring().await.unwrap(), 1);
    assert_eq!(expiring().await.unwrap(), 0);
    deliver_due(&h, later).await;
    let got = receiver.on("/generic");
    assert_eq!(got.len(), 2);
    let body: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(body["event"], "secret_expiring");
    assert_eq!(body["data"]["expires_on"], expires_on.to_string());
    assert_eq!(body["data"]["days_left"], 10);
    let sim_secret = h.sim.sim.config().client_secret.clone();
    assert!(!raw(&got[1]).contains(&sim_secret));
}
