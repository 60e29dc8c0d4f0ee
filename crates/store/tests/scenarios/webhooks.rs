//! Outgoing webhooks (issue 14; docs/webhooks.md): who sees and changes which webhook, that an
//! event of a workspace reaches only its webhooks and those of every workspace, deduplication,
//! the claim that keeps a delivery to one worker, the log of attempts, and what was alerted.

use std::sync::Arc;

use chrono::Duration;

use rampart_model::WorkspaceId;
use rampart_store::{
    AttemptNext, AttemptOutcome, DeliveryStatus, NewWebhook, NewWebhookEvent, Recipients,
    SecretCiphertext, Store, StoreError, Visibility, WebhookEventKind, WebhookFormat,
};

use crate::support::*;

scenarios!(
    webhooks_are_seen_and_changed_only_within_their_workspace,
    an_event_reaches_its_workspace_once_and_a_delivery_is_claimed_once,
    what_was_alerted_is_alerted_once,
    two_workers_claiming_at_once_never_share_a_delivery,
);

fn sealed(tag: &str) -> SecretCiphertext {
    SecretCiphertext {
        ciphertext: tag.as_bytes().to_vec(),
        nonce: vec![7; 24],
    }
}

fn new_webhook(
    name: &str,
    workspace: Option<WorkspaceId>,
    events: &[WebhookEventKind],
) -> NewWebhook {
    NewWebhook {
        workspace,
        name: name.into(),
        format: WebhookFormat::Generic,
        url: sealed("url"),
        url_shown: "https://receiver.example/…".into(),
        secret: Some(sealed("secret")),
        events: events.to_vec(),
        created_by: "root".into(),
        created_at: t(0),
    }
}

const ALL_EVENTS: [WebhookEventKind; 4] = WebhookEventKind::SUBSCRIBABLE;

async fn webhooks_are_seen_and_changed_only_within_their_workspace(store: Arc<dyn Store>) {
    let a = store.create_workspace("A").await.unwrap().id;
    let b = store.create_workspace("B").await.unwrap().id;
    let (va, vb) = (
        Visibility::Workspaces(vec![a]),
        Visibility::Workspaces(vec![b]),
    );
    let wa = store
        .create_webhook(&va, &new_webhook("alpha", Some(a), &ALL_EVENTS))
        .await
        .unwrap();
    assert_eq!(wa.workspace_id, Some(a));
    assert!(wa.enabled);
    assert_eq!(wa.events, ALL_EVENTS.to_vec());
    assert_eq!(wa.last_delivery, None);
    // An admin of A cannot add one into B (not found, as if B did not exist), nor one for every
    // workspace.
    let err = store
        .create_webhook(&va, &new_webhook("into-b", Some(b), &ALL_EVENTS))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = store
        .create_webhook(&va, &new_webhook("everyone", None, &ALL_EVENTS))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    let wb = store
        .create_webhook(&vb, &new_webhook("bravo", Some(b), &ALL_EVENTS))
        .await
        .unwrap();
    let global = store
        .create_webhook(
            &Visibility::All,
            &new_webhook("everyone", None, &ALL_EVENTS),
        )
        .await
        .unwrap();
    let err = store
        .create_webhook(
            &Visibility::All,
            &new_webhook("ALPHA", Some(a), &ALL_EVENTS),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");

    let names = |v: Vec<rampart_store::StoredWebhook>| -> Vec<String> {
        v.into_iter().map(|w| w.name).collect()
    };
    assert_eq!(names(store.list_webhooks(&va).await.unwrap()), ["alpha"]);
    assert_eq!(names(store.list_webhooks(&vb).await.unwrap()), ["bravo"]);
    assert_eq!(
        names(store.list_webhooks(&Visibility::All).await.unwrap()),
        ["alpha", "bravo", "everyone"]
    );
    // B's and the global webhook are not found for A: reading, changing, removing, its log.
    for id in [wb.id, global.id, 999_999] {
        assert!(matches!(
            store.get_webhook(&va, id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store
                .set_webhook_enabled(&va, id, false, "adam", t(1))
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.delete_webhook(&va, id, "adam", t(1)).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.list_webhook_deliveries(&va, id, 10).await,
            Err(StoreError::NotFound(_))
        ));
    }
    assert!(store.get_webhook(&vb, wb.id).await.unwrap().enabled);

    let off = store
        .set_webhook_enabled(&va, wa.id, false, "adam", t(1))
        .await
        .unwrap();
    assert!(!off.enabled);
    let secrets = store.webhook_secrets(wa.id).await.unwrap();
    assert_eq!(secrets.url, sealed("url"));
    assert_eq!(secrets.secret, Some(sealed("secret")));
    store
        .delete_webhook(&va, wa.id, "adam", t(2))
        .await
        .unwrap();
    assert!(store.list_webhooks(&va).await.unwrap().is_empty());

    // Every change is audited, never with the URL's path.
    let audit = store.list_audit(50).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for action in ["webhook.create", "webhook.disable", "webhook.delete"] {
        assert!(actions.contains(&action), "{actions:?}");
    }
    let alpha = audit.iter().find(|e| e.action == "webhook.delete").unwrap();
    assert_eq!(alpha.actor, "adam");
    assert!(
        alpha
            .details
            .as_deref()
            .unwrap()
            .contains("receiver.example/…")
    );
}

fn event(kind: WebhookEventKind, key: Option<&str>) -> NewWebhookEvent {
    NewWebhookEvent {
        kind,
        dedup_key: key.map(str::to_owned),
        payload: format!("{{\"event\":\"{}\"}}", kind.as_str()),
        at: t(10),
    }
}

async fn an_event_reaches_its_workspace_once_and_a_delivery_is_claimed_once(store: Arc<dyn Store>) {
    let a = store.create_workspace("A").await.unwrap().id;
    let b = store.create_workspace("B").await.unwrap().id;
    let all = Visibility::All;
    let wa = store
        .create_webhook(
            &all,
            &new_webhook("alpha", Some(a), &[WebhookEventKind::SyncFailed]),
        )
        .await
        .unwrap();
    let wa_other = store
        .create_webhook(
            &all,
            &new_webhook("alpha-kev", Some(a), &[WebhookEventKind::SlaBreach]),
        )
        .await
        .unwrap();
    let wb = store
        .create_webhook(&all, &new_webhook("bravo", Some(b), &ALL_EVENTS))
        .await
        .unwrap();
    let global = store
        .create_webhook(&all, &new_webhook("everyone", None, &ALL_EVENTS))
        .await
        .unwrap();
    let off = store
        .create_webhook(&all, &new_webhook("off", Some(a), &ALL_EVENTS))
        .await
        .unwrap();
    store
        .set_webhook_enabled(&all, off.id, false, "root", t(0))
        .await
        .unwrap();

    let to_a = Recipients::Subscribers { workspace: a };
    let queued = store
        .enqueue_webhook_event(&event(WebhookEventKind::SyncFailed, Some("run:1")), to_a)
        .await
        .unwrap();
    assert_eq!(queued.len(), 2, "A's subscriber and the global one");
    // The same key again: nothing new.
    let again = store
        .enqueue_webhook_event(&event(WebhookEventKind::SyncFailed, Some("run:1")), to_a)
        .await
        .unwrap();
    assert!(again.is_empty());
    for (w, expected) in [
        (wa.id, 1),
        (global.id, 1),
        (wb.id, 0),
        (wa_other.id, 0),
        (off.id, 0),
    ] {
        let listed = store.list_webhook_deliveries(&all, w, 10).await.unwrap();
        assert_eq!(listed.len(), expected, "webhook {w}");
    }
    // A test goes to one webhook, even a disabled one, and `NotFound` for none.
    let test = store
        .enqueue_webhook_event(
            &event(WebhookEventKind::Test, None),
            Recipients::One(off.id),
        )
        .await
        .unwrap();
    assert_eq!(test.len(), 1);
    assert!(matches!(
        store
            .enqueue_webhook_event(
                &event(WebhookEventKind::Test, None),
                Recipients::One(999_999)
            )
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Due at t(10): claimed once; a second claim at the same time finds nothing (the lease).
    let lease = Duration::minutes(5);
    let claimed = store
        .claim_webhook_deliveries(t(10), lease, 10, None)
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        2,
        "the disabled webhook's test waits for its own send"
    );
    assert!(claimed.iter().all(|c| c.attempt == 1));
    assert!(
        store
            .claim_webhook_deliveries(t(10), lease, 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    // "Send test" claims its own delivery by id, whatever the webhook.
    let own = store
        .claim_webhook_deliveries(t(10), lease, 1, Some(test[0]))
        .await
        .unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].kind, WebhookEventKind::Test);

    let first = claimed.iter().find(|c| c.webhook_id == wa.id).unwrap();
    assert_eq!(first.payload, "{\"event\":\"sync_failed\"}");
    store
        .record_webhook_attempt(
            first.id,
            &AttemptOutcome {
                attempt: 1,
                at: t(10),
                http_status: Some(500),
                error: Some("HTTP 500: the receiver failed".into()),
                next: AttemptNext::RetryAt(t(11)),
            },
        )
        .await
        .unwrap();
    // Not before its retry time; then its second attempt.
    let early = store
        .claim_webhook_deliveries(t(10), lease, 10, None)
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");
    let retry = store
        .claim_webhook_deliveries(t(11), lease, 10, None)
        .await
        .unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!((retry[0].id, retry[0].attempt), (first.id, 2));
    store
        .record_webhook_attempt(
            first.id,
            &AttemptOutcome {
                attempt: 2,
                at: t(11),
                http_status: Some(204),
                error: None,
                next: AttemptNext::Delivered,
            },
        )
        .await
        .unwrap();
    let log = store
        .list_webhook_deliveries(&all, wa.id, 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    let d = &log[0];
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.attempts, 2);
    assert_eq!(d.delivered_at, Some(t(11)));
    assert_eq!(d.last_status, Some(204));
    assert_eq!(d.next_attempt_at, None);
    let statuses: Vec<Option<u16>> = d.log.iter().map(|a| a.http_status).collect();
    assert_eq!(statuses, [Some(500), Some(204)]);
    assert_eq!(
        d.log[0].error.as_deref(),
        Some("HTTP 500: the receiver failed")
    );
    assert_eq!(
        store.get_webhook(&all, wa.id).await.unwrap().last_delivery,
        Some(DeliveryStatus::Delivered)
    );

    // A delivery that runs out of attempts fails and is not claimed again.
    let g = claimed.iter().find(|c| c.webhook_id == global.id).unwrap();
    store
        .record_webhook_attempt(
            g.id,
            &AttemptOutcome {
                attempt: 1,
                at: t(10),
                http_status: None,
                error: Some("no answer within 10 s".into()),
                next: AttemptNext::Failed,
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_webhook_deliveries(t(1000), lease, 10, None)
            .await
            .unwrap()
            .iter()
            .all(|c| c.id != g.id)
    );
    let failed = &store
        .list_webhook_deliveries(&all, global.id, 10)
        .await
        .unwrap()[0];
    assert_eq!(failed.status, DeliveryStatus::Failed);

    // Removing a webhook removes its deliveries.
    store
        .delete_webhook(&all, wa.id, "root", t(12))
        .await
        .unwrap();
    assert!(matches!(
        store.list_webhook_deliveries(&all, wa.id, 10).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn what_was_alerted_is_alerted_once(store: Arc<dyn Store>) {
    let subjects: Vec<String> = ["1", "2", "3"].map(String::from).to_vec();
    let fresh = store
        .mark_alerted("immediate_finding", &subjects, t(0))
        .await
        .unwrap();
    assert_eq!(fresh, subjects);
    let more: Vec<String> = ["3", "4"].map(String::from).to_vec();
    let fresh = store
        .mark_alerted("immediate_finding", &more, t(1))
        .await
        .unwrap();
    assert_eq!(fresh, ["4"]);
    // Another kind keeps its own record.
    let fresh = store.mark_alerted("sla_breach", &more, t(1)).await.unwrap();
    assert_eq!(fresh, more);
}

async fn two_workers_claiming_at_once_never_share_a_delivery(store: Arc<dyn Store>) {
    let all = Visibility::All;
    for i in 0..20 {
        let w = store
            .create_webhook(&all, &new_webhook(&format!("w{i}"), None, &ALL_EVENTS))
            .await
            .unwrap();
        for k in 0..3 {
            store
                .enqueue_webhook_event(
                    &event(WebhookEventKind::SyncFailed, Some(&format!("run:{k}"))),
                    Recipients::One(w.id),
                )
                .await
                .unwrap();
        }
    }
    let lease = Duration::minutes(5);
    let mut seen = std::collections::BTreeSet::new();
    loop {
        // Two workers at once, each taking a few: every delivery goes to exactly one of them.
        let (a, b) = tokio::join!(
            store.claim_webhook_deliveries(t(10), lease, 7, None),
            store.claim_webhook_deliveries(t(10), lease, 7, None),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        if a.is_empty() && b.is_empty() {
            break;
        }
        for c in a.iter().chain(&b) {
            assert!(seen.insert(c.id), "delivery {} claimed twice", c.id);
            assert_eq!(c.attempt, 1);
        }
    }
    assert_eq!(seen.len(), 60);
}
