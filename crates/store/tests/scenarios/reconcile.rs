use rampart_model::IntegrationId;
use rampart_model::RunId;
use std::sync::Arc;

use rampart_model::{AssetStatus, FindingStatus, RunStatus, Severity, Verdict};
use rampart_store::{
    AssetFilter, FindingFilter, ReconcileOutcome, ReconcilePolicy, ReconcileScope, RunOutcome,
    Store,
};

use crate::support::*;

scenarios!(
    marks_fixed_and_missing_exactly,
    seen_again_reopens,
    circuit_breaker_holds_and_changes_nothing,
    a_partial_run_changes_no_status,
    reconcile_only_touches_its_integration,
    a_full_read_leaves_unchanged_findings_alone,
);

/// Run 1 sees 10 assets × 5 findings. Run 2 sees assets 0..9 (not 9), and on asset 0 only
/// findings 0..3 (not 3 and 4).
async fn two_runs(store: &Arc<dyn Store>) -> (IntegrationId, RunId, RunId) {
    let i = integration(store, "i").await;
    let run1 = full_run_seeing(store, i.id, t(0), 10, 5).await;
    let out = store
        .reconcile(i.id, run1, ReconcilePolicy::new(t(1)))
        .await
        .unwrap();
    assert_eq!(out, applied(0, 0, 0));
    store.finish_run(run1, &succeeded(t(1))).await.unwrap();

    let run2 = store.start_run(i.id, "full", t(60)).await.unwrap();
    store
        .upsert_assets(i.id, run2, &(0..9).map(asset).collect::<Vec<_>>())
        .await
        .unwrap();
    let seen: Vec<_> = findings(9, 5)
        .into_iter()
        .filter(|f| {
            !(f.key.asset_source_id == device_id(0) && f.key.cve_id.as_str() >= cve(3).as_str())
        })
        .collect();
    assert_eq!(seen.len(), 43);
    store.upsert_findings(i.id, run2, &seen).await.unwrap();
    (i.id, run1, run2)
}

async fn marks_fixed_and_missing_exactly(store: Arc<dyn Store>) {
    let (i, _run1, run2) = two_runs(&store).await;
    let out = store
        .reconcile(i, run2, ReconcilePolicy::new(t(61)))
        .await
        .unwrap();
    // Asset 9 is missing; its 5 findings and asset 0's 2 unseen findings are fixed.
    assert_eq!(out, applied(1, 7, 0));

    let assets = all_assets(&store, AssetFilter::default()).await;
    for a in &assets {
        if a.asset.source_id == device_id(9) {
            assert_eq!(a.status, AssetStatus::Missing);
            assert_eq!(a.missing_since, Some(t(61)));
            assert_eq!(a.last_observed, t(0));
        } else {
            assert_eq!(a.status, AssetStatus::Active);
            assert_eq!(a.missing_since, None);
            assert_eq!(a.last_observed, t(60));
            assert_eq!(a.first_observed, t(0));
        }
    }
    let fixed = findings_with_status(&store, None, FindingStatus::Fixed).await;
    assert_eq!(fixed.len(), 7);
    for f in &fixed {
        assert_eq!(f.fixed_at, Some(t(61)));
        assert_eq!(f.last_observed, t(0));
        assert!(
            f.finding.key.asset_source_id == device_id(9)
                || (f.finding.key.asset_source_id == device_id(0)
                    && f.finding.key.cve_id.as_str() >= cve(3).as_str())
        );
    }
    let open = findings_with_status(&store, Some(i), FindingStatus::Open).await;
    assert_eq!(open.len(), 43);
    assert!(
        open.iter()
            .all(|f| f.fixed_at.is_none() && f.last_observed == t(60))
    );

    // Reconciling again changes nothing more.
    assert_eq!(
        store
            .reconcile(i, run2, ReconcilePolicy::new(t(62)))
            .await
            .unwrap(),
        applied(0, 0, 0)
    );
    let c = store
        .counts(&rampart_store::Visibility::All, Some(i))
        .await
        .unwrap();
    assert_eq!(c.assets_active, 9);
    assert_eq!(c.assets_missing, 1);
    assert_eq!(c.findings_open.total(), 43);
    assert_eq!(c.findings_fixed, 7);
}

async fn seen_again_reopens(store: Arc<dyn Store>) {
    let (i, _run1, run2) = two_runs(&store).await;
    store
        .reconcile(i, run2, ReconcilePolicy::new(t(61)))
        .await
        .unwrap();
    store.finish_run(run2, &succeeded(t(62))).await.unwrap();

    let run3 = store.start_run(i, "full", t(120)).await.unwrap();
    let assets = store
        .upsert_assets(i, run3, &(0..10).map(asset).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(assets.reopened, 1, "asset 9 is back");
    assert_eq!(assets.unchanged, 9);
    let f = store
        .upsert_findings(i, run3, &findings(10, 5))
        .await
        .unwrap();
    assert_eq!(f.reopened, 7);
    assert_eq!(f.unchanged, 43);
    assert_eq!(f.new, 0);
    // Seeing a reopened finding again in the same run is merely unchanged.
    let again = store
        .upsert_findings(i, run3, &findings(10, 5))
        .await
        .unwrap();
    assert_eq!(again.unchanged, 50);

    let all = all_findings(&store, FindingFilter::default()).await;
    assert!(
        all.iter()
            .all(|f| f.status == FindingStatus::Open && f.fixed_at.is_none())
    );
    assert_eq!(all.iter().filter(|f| f.reopened_count == 1).count(), 7);
    assert!(all.iter().all(|f| f.first_observed == t(0)));
    let a9 = all_assets(&store, AssetFilter::default())
        .await
        .into_iter()
        .find(|a| a.asset.source_id == device_id(9))
        .unwrap();
    assert_eq!(a9.status, AssetStatus::Active);
    assert_eq!(a9.missing_since, None);
    assert_eq!(a9.last_observed, t(120));
}

async fn circuit_breaker_holds_and_changes_nothing(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let run1 = full_run_seeing(&store, i.id, t(0), 10, 3).await;
    store.finish_run(run1, &succeeded(t(1))).await.unwrap();

    // Run 2 sees only 6 of 10 assets: 40 % would go missing, more than 30 %.
    let run2 = full_run_seeing(&store, i.id, t(60), 6, 3).await;
    let out = store
        .reconcile(i.id, run2, ReconcilePolicy::new(t(61)))
        .await
        .unwrap();
    assert_eq!(
        out,
        ReconcileOutcome::Held {
            would_mark_missing: 4,
            active: 10
        }
    );
    let c = store
        .counts(&rampart_store::Visibility::All, Some(i.id))
        .await
        .unwrap();
    assert_eq!((c.assets_active, c.assets_missing), (10, 0));
    assert_eq!((c.findings_open.total(), c.findings_fixed), (30, 0));
    let run = store
        .finish_run(
            run2,
            &RunOutcome {
                verdict: Some(Verdict::Held(
                    "4 of 10 assets (40 %) would be marked missing; the limit is 30 %".into(),
                )),
                ..RunOutcome::new(RunStatus::Partial, t(62))
            },
        )
        .await
        .unwrap();
    assert!(matches!(run.verdict, Some(Verdict::Held(_))));

    // A looser policy (a person confirmed) applies it.
    let run3 = store.start_run(i.id, "full", t(120)).await.unwrap();
    store
        .upsert_assets(i.id, run3, &(0..6).map(asset).collect::<Vec<_>>())
        .await
        .unwrap();
    let out = store
        .reconcile(
            i.id,
            run3,
            ReconcilePolicy {
                max_missing_share: 0.5,
                now: t(121),
                scope: ReconcileScope::Everything,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        ReconcileOutcome::Applied {
            assets_missing: 4,
            // Run 3 read no findings at all: every finding is unseen.
            findings_fixed: 30,
            recommendations_removed: 0,
        }
    );
}

async fn a_partial_run_changes_no_status(store: Arc<dyn Store>) {
    let (i, _run1, run2) = two_runs(&store).await;
    // The read was incomplete: the engine records it and does not reconcile.
    store
        .finish_run(
            run2,
            &RunOutcome {
                verdict: Some(Verdict::Incomplete("page 7 failed after 5 retries".into())),
                error: Some("Microsoft returned 503 five times on page 7".into()),
                ..RunOutcome::new(RunStatus::Partial, t(61))
            },
        )
        .await
        .unwrap();
    let c = store
        .counts(&rampart_store::Visibility::All, Some(i))
        .await
        .unwrap();
    assert_eq!((c.assets_active, c.assets_missing), (10, 0));
    assert_eq!((c.findings_open.total(), c.findings_fixed), (50, 0));
    // Reconciling with a finished run is refused.
    let err = store
        .reconcile(i, run2, ReconcilePolicy::new(t(62)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, rampart_store::StoreError::Conflict(_)),
        "{err}"
    );
    let c2 = store
        .counts(&rampart_store::Visibility::All, Some(i))
        .await
        .unwrap();
    assert_eq!(c, c2);
}

async fn reconcile_only_touches_its_integration(store: Arc<dyn Store>) {
    let a = integration(&store, "a").await;
    let b = integration(&store, "b").await;
    let ra = store.start_run(a.id, "full", t(0)).await.unwrap();
    let rb = store.start_run(b.id, "full", t(0)).await.unwrap();
    store
        .upsert_findings(a.id, ra, &findings(3, 3))
        .await
        .unwrap();
    store
        .upsert_findings(b.id, rb, &findings(3, 3))
        .await
        .unwrap();
    store.finish_run(ra, &succeeded(t(1))).await.unwrap();
    let ra2 = store.start_run(a.id, "full", t(10)).await.unwrap();
    store
        .upsert_findings(a.id, ra2, &findings(3, 2))
        .await
        .unwrap();
    let out = store
        .reconcile(a.id, ra2, ReconcilePolicy::new(t(11)))
        .await
        .unwrap();
    assert_eq!(out, applied(0, 3, 0));
    assert_eq!(
        store
            .counts(&rampart_store::Visibility::All, Some(b.id))
            .await
            .unwrap()
            .findings_fixed,
        0
    );
    // A run of another integration cannot reconcile this one.
    assert!(matches!(
        store.reconcile(a.id, rb, ReconcilePolicy::new(t(12))).await,
        Err(rampart_store::StoreError::InvalidInput(_))
    ));
}

/// A full read (`begin_bulk_findings`) over stored findings: the rows it repeats unchanged are
/// left alone (their content hash matches), yet they count as observed. Reconciling
/// fixes exactly what `marks_fixed_and_missing_exactly` fixes, every open finding reads as
/// observed by the run, and `changed_since` returns what changed (one row) and what was fixed,
/// not everything the read saw. A second full read that changes the row back and drops another
/// is applied just as exactly.
async fn a_full_read_leaves_unchanged_findings_alone(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let run1 = full_run_seeing(&store, i.id, t(0), 10, 5).await;
    store
        .reconcile(i.id, run1, ReconcilePolicy::new(t(1)))
        .await
        .unwrap();
    store.finish_run(run1, &succeeded(t(1))).await.unwrap();

    let run2 = store.start_run(i.id, "full", t(60)).await.unwrap();
    assert!(
        !store.begin_bulk_findings(i.id).await.unwrap(),
        "not a first load"
    );
    store
        .upsert_assets(i.id, run2, &(0..9).map(asset).collect::<Vec<_>>())
        .await
        .unwrap();
    let mut seen: Vec<_> = findings(9, 5)
        .into_iter()
        .filter(|f| {
            !(f.key.asset_source_id == device_id(0) && f.key.cve_id.as_str() >= cve(3).as_str())
        })
        .collect();
    let changed_key = seen[7].key.clone();
    seen[7].severity = Some(Severity::Low);
    // Two batches, as a read writes them.
    let (a, b) = seen.split_at(20);
    let mut done = store.upsert_findings(i.id, run2, a).await.unwrap();
    let second = store.upsert_findings(i.id, run2, b).await.unwrap();
    done.updated += second.updated;
    done.unchanged += second.unchanged;
    assert_eq!((done.new, done.updated, done.unchanged), (0, 1, 42));
    let out = store
        .reconcile(i.id, run2, ReconcilePolicy::new(t(61)))
        .await
        .unwrap();
    assert_eq!(out, applied(1, 7, 0), "asset 9's 5 and asset 0's 2 unseen");
    // Reconciling again changes nothing more: the rows left alone still count as observed.
    assert_eq!(
        store
            .reconcile(i.id, run2, ReconcilePolicy::new(t(61)))
            .await
            .unwrap(),
        applied(0, 0, 0)
    );
    store.finish_run(run2, &succeeded(t(62))).await.unwrap();

    let open = findings_with_status(&store, Some(i.id), FindingStatus::Open).await;
    assert_eq!(open.len(), 43);
    assert!(
        open.iter().all(|f| f.last_observed == t(60)),
        "observed by run 2"
    );
    let changed = open.iter().find(|f| f.finding.key == changed_key).unwrap();
    assert_eq!(changed.finding.severity, Some(Severity::Low));
    let fixed = findings_with_status(&store, None, FindingStatus::Fixed).await;
    assert_eq!(fixed.len(), 7);
    assert!(
        fixed
            .iter()
            .all(|f| f.fixed_at == Some(t(61)) && f.last_observed == t(0))
    );
    let since = all_findings(
        &store,
        FindingFilter {
            integration: Some(i.id),
            changed_since: Some(t(30)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(since.len(), 8, "the changed row and the 7 fixed");
    assert!(since.iter().any(|f| f.finding.key == changed_key));
    assert_eq!(
        since
            .iter()
            .filter(|f| f.status == FindingStatus::Fixed)
            .count(),
        7
    );

    // Run 3 reads asset 1..9's findings as run 1 wrote them, but not asset 1's first: the
    // changed row changes back, the dropped one is fixed, and asset 0's open ones too.
    let run3 = store.start_run(i.id, "full", t(120)).await.unwrap();
    store.begin_bulk_findings(i.id).await.unwrap();
    store
        .upsert_assets(i.id, run3, &(0..9).map(asset).collect::<Vec<_>>())
        .await
        .unwrap();
    let third: Vec<_> = findings_of(1, 8, 5).into_iter().skip(1).collect();
    let done = store.upsert_findings(i.id, run3, &third).await.unwrap();
    assert_eq!((done.new, done.updated, done.unchanged), (0, 1, 38));
    let out = store
        .reconcile(i.id, run3, ReconcilePolicy::new(t(121)))
        .await
        .unwrap();
    assert_eq!(out, applied(0, 4, 0), "asset 0's 3 and asset 1's first");
    let open = findings_with_status(&store, Some(i.id), FindingStatus::Open).await;
    assert_eq!(open.len(), 39);
    assert!(open.iter().all(|f| f.last_observed == t(120)));
    let fixed_now: Vec<_> = findings_with_status(&store, None, FindingStatus::Fixed)
        .await
        .into_iter()
        .filter(|f| f.fixed_at == Some(t(121)))
        .collect();
    assert_eq!(fixed_now.len(), 4);
    assert!(
        fixed_now.iter().all(|f| f.last_observed == t(60)),
        "last observed by run 2, which left them alone"
    );
    let back = open.iter().find(|f| f.finding.key == changed_key).unwrap();
    assert_eq!(back.finding, finding(1, 4), "as run 1 wrote it");
}
