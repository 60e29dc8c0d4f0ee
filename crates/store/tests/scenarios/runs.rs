use rampart_model::IntegrationId;
use rampart_model::RunId;
use std::sync::Arc;

use rampart_model::{EntityCounts, RunStatus, Verdict};
use rampart_store::{RunOutcome, STALE_RUN_AFTER, Store, StoreError};

use crate::support::*;

scenarios!(
    bookkeeping,
    a_second_running_run_is_refused,
    racing_starts_yield_one_run,
    a_stale_run_is_closed_and_replaced,
    writes_check_their_run,
);

/// The stored run `id`, seen by a global account.
async fn run(store: &Arc<dyn Store>, id: RunId) -> rampart_model::SyncRun {
    store
        .get_run(&rampart_store::Visibility::All, id)
        .await
        .unwrap()
}

async fn bookkeeping(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    assert_eq!(
        store
            .last_successful_run(&rampart_store::Visibility::All, i.id)
            .await
            .unwrap(),
        None
    );

    let run1 = store.start_run(i.id, "full", t(0)).await.unwrap();
    let running = run(&store, run1).await;
    assert_eq!(running.status, RunStatus::Running);
    assert_eq!(running.started_at, t(0));
    assert_eq!(running.mode, "full");
    assert_eq!(running.finished_at, None);

    let outcome = RunOutcome {
        verdict: Some(Verdict::Complete),
        assets: EntityCounts {
            read: 10,
            new: 10,
            ..Default::default()
        },
        findings: EntityCounts {
            read: 2_000_000,
            new: 1_999_000,
            updated: 500,
            resolved: 3,
            reopened: 2,
            skipped: 1,
        },
        vulnerabilities: EntityCounts {
            read: 250_000,
            ..Default::default()
        },
        recommendations: EntityCounts {
            read: 420,
            new: 400,
            resolved: 7,
            ..Default::default()
        },
        api_calls: 12,
        throttled: 2,
        retries: 3,
        bytes: 987_654_321,
        source: Some("files".into()),
        ..RunOutcome::new(RunStatus::Succeeded, t(5))
    };
    let done = store.finish_run(run1, &outcome).await.unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.finished_at, Some(t(5)));
    assert_eq!(done.verdict, Some(Verdict::Complete));
    assert_eq!(done.findings, outcome.findings);
    assert_eq!(done.assets, outcome.assets);
    assert_eq!(done.vulnerabilities, outcome.vulnerabilities);
    assert_eq!(done.recommendations, outcome.recommendations);
    assert_eq!(done.source.as_deref(), Some("files"));
    assert_eq!(running.source, None, "a running run has no source yet");
    assert_eq!(
        (done.api_calls, done.throttled, done.retries, done.bytes),
        (12, 2, 3, 987_654_321)
    );
    assert_eq!(run(&store, run1).await, done);

    // Finishing twice is refused and changes nothing.
    let again = store
        .finish_run(run1, &RunOutcome::new(RunStatus::Failed, t(6)))
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    assert_eq!(run(&store, run1).await, done);

    let run2 = store.start_run(i.id, "delta", t(10)).await.unwrap();
    assert!(matches!(
        store
            .finish_run(run2, &RunOutcome::new(RunStatus::Running, t(11)))
            .await,
        Err(StoreError::InvalidInput(_))
    ));
    let failed = store
        .finish_run(
            run2,
            &RunOutcome {
                error: Some("the client secret has expired (AADSTS7000222): create a new one in Entra and update the integration".into()),
                ..RunOutcome::new(RunStatus::Failed, t(11))
            },
        )
        .await
        .unwrap();
    assert!(failed.error.as_deref().unwrap().contains("AADSTS7000222"));

    let runs = store
        .list_runs(&rampart_store::Visibility::All, i.id, 10)
        .await
        .unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![run2, run1],
        "newest first"
    );
    assert_eq!(
        store
            .list_runs(&rampart_store::Visibility::All, i.id, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .last_successful_run(&rampart_store::Visibility::All, i.id)
            .await
            .unwrap()
            .map(|r| r.id),
        Some(run1)
    );
    assert!(matches!(
        store
            .get_run(&rampart_store::Visibility::All, RunId(999_999))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.start_run(i.id, "Full Sync", t(20)).await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        store.start_run(IntegrationId(999_999), "full", t(20)).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn a_second_running_run_is_refused(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let other = integration(&store, "other").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    let err = store.start_run(i.id, "delta", t(1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("already running"), "{err}");
    // Other integrations are not blocked.
    store.start_run(other.id, "full", t(1)).await.unwrap();
    // A heartbeat keeps the run alive well past the stale limit.
    let later = t(0) + chrono::Duration::from_std(STALE_RUN_AFTER).unwrap();
    store.heartbeat_run(run, later).await.unwrap();
    assert!(matches!(
        store
            .start_run(i.id, "full", later + chrono::Duration::minutes(1))
            .await,
        Err(StoreError::Conflict(_))
    ));
    store.finish_run(run, &succeeded(t(2))).await.unwrap();
    store.start_run(i.id, "full", t(3)).await.unwrap();
    assert!(matches!(
        store.heartbeat_run(run, t(4)).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn racing_starts_yield_one_run(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let attempts = (0..6).map(|n| {
        let store = store.clone();
        tokio::spawn(async move { store.start_run(i.id, "full", t(n)).await })
    });
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(StoreError::Conflict(_)))))
        .count();
    assert_eq!((won, refused), (1, 5), "{results:?}");
}

async fn a_stale_run_is_closed_and_replaced(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let crashed = store.start_run(i.id, "full", t(0)).await.unwrap();
    let stale = chrono::Duration::from_std(STALE_RUN_AFTER).unwrap();
    // Just before the limit it still blocks...
    assert!(matches!(
        store
            .start_run(i.id, "full", t(0) + stale - chrono::Duration::seconds(1))
            .await,
        Err(StoreError::Conflict(_))
    ));
    // ...after it, it is closed as failed and a new run starts.
    let fresh = store
        .start_run(i.id, "full", t(0) + stale + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_ne!(fresh, crashed);
    let old = run(&store, crashed).await;
    assert_eq!(old.status, RunStatus::Failed);
    assert!(
        old.error.as_deref().unwrap().starts_with("abandoned"),
        "{old:?}"
    );
    assert!(old.finished_at.is_some());
    // The crashed process coming back cannot finish it or write with it.
    assert!(matches!(
        store.finish_run(crashed, &succeeded(t(200))).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.upsert_assets(i.id, crashed, &[asset(1)]).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn writes_check_their_run(store: Arc<dyn Store>) {
    let a = integration(&store, "a").await;
    let b = integration(&store, "b").await;
    let run_a = store.start_run(a.id, "full", t(0)).await.unwrap();
    let err = store
        .upsert_findings(b.id, run_a, &findings(1, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    assert!(matches!(
        store.upsert_assets(a.id, RunId(424_242), &[asset(1)]).await,
        Err(StoreError::NotFound(_))
    ));
    // Nothing was written by the refused calls.
    assert!(all_findings(&store, Default::default()).await.is_empty());
    assert!(all_assets(&store, Default::default()).await.is_empty());
}
