use std::sync::Arc;

use rampart_model::{FindingStatus, Severity};
use rampart_store::{
    DeltaCounts, FindingChange, FindingFilter, ReconcileOutcome, ReconcilePolicy, ReconcileScope,
    Store, UpsertCounts,
};

use crate::support::*;

scenarios!(
    changes_apply_in_order,
    a_failing_delta_changes_nothing,
    a_delta_fixes_the_findings_of_devices_gone_from_the_list,
);

async fn changes_apply_in_order(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let full = store.start_run(i.id, "full", t(0)).await.unwrap();
    store
        .upsert_findings(i.id, full, &findings(2, 3))
        .await
        .unwrap();
    store.finish_run(full, &succeeded(t(1))).await.unwrap();

    let delta = store.start_run(i.id, "delta", t(60)).await.unwrap();
    let mut changed = finding(0, 1);
    changed.severity = Some(Severity::Critical);
    changed.cvss = Some(9.8);
    let unknown = finding(7, 7);
    let changes = vec![
        FindingChange::New(finding(0, 5)),
        FindingChange::Updated(changed.clone()),
        FindingChange::Fixed {
            key: finding(1, 2).key,
            at: t(30),
        },
        // Unknown to Rampart: nothing to fix.
        FindingChange::Fixed {
            key: unknown.key.clone(),
            at: t(31),
        },
        // Fixed, then reported again within the same delta: open again.
        FindingChange::Fixed {
            key: finding(1, 0).key,
            at: t(32),
        },
        FindingChange::New(finding(1, 0)),
    ];
    let counts = store
        .apply_finding_changes(i.id, delta, &changes)
        .await
        .unwrap();
    assert_eq!(
        counts,
        DeltaCounts {
            upserted: UpsertCounts {
                new: 1,
                updated: 1,
                unchanged: 0,
                reopened: 1,
            },
            fixed: 2,
            ignored: 1,
        }
    );
    let all = all_findings(&store, FindingFilter::default()).await;
    assert_eq!(all.len(), 7);
    let get = |f: &rampart_model::Finding| {
        all.iter()
            .find(|s| s.finding.key == f.key)
            .unwrap_or_else(|| panic!("{:?} missing", f.key))
            .clone()
    };
    let fixed = get(&finding(1, 2));
    assert_eq!(fixed.status, FindingStatus::Fixed);
    assert_eq!(
        fixed.fixed_at,
        Some(t(30)),
        "the event's time, not the run's"
    );
    let back = get(&finding(1, 0));
    assert_eq!(back.status, FindingStatus::Open);
    assert_eq!(back.reopened_count, 1);
    assert_eq!(back.fixed_at, None);
    let up = get(&changed);
    assert_eq!(up.finding.severity, Some(Severity::Critical));
    assert_eq!(up.last_observed, t(60));
    let new = get(&finding(0, 5));
    assert_eq!(new.first_observed, t(60));

    // Fixing an already fixed finding is ignored and keeps its first fixed_at.
    let again = store
        .apply_finding_changes(
            i.id,
            delta,
            &[FindingChange::Fixed {
                key: finding(1, 2).key,
                at: t(50),
            }],
        )
        .await
        .unwrap();
    assert_eq!((again.fixed, again.ignored), (0, 1));
    assert_eq!(
        get(&finding(1, 2)).fixed_at,
        Some(t(30)),
        "unchanged by the ignored change"
    );
}

async fn a_failing_delta_changes_nothing(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let other = integration(&store, "other").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    store
        .upsert_findings(i.id, run, &findings(1, 2))
        .await
        .unwrap();
    // The run belongs to another integration: refused before anything is applied.
    let err = store
        .apply_finding_changes(
            other.id,
            run,
            &[FindingChange::Fixed {
                key: finding(0, 0).key,
                at: t(1),
            }],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, rampart_store::StoreError::InvalidInput(_)));
    let all = all_findings(&store, FindingFilter::default()).await;
    assert!(all.iter().all(|f| f.status == FindingStatus::Open));
}

/// A delta reads the device list in full but only the changed findings: a device gone from the
/// list becomes missing and its open findings are fixed (`ReconcileScope::AssetsOnly`), every
/// other finding is left as it is, and a second reconciliation finds nothing more to do.
async fn a_delta_fixes_the_findings_of_devices_gone_from_the_list(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let full = store.start_run(i.id, "full", t(0)).await.unwrap();
    let listed: Vec<_> = (0..10).map(asset).collect();
    store.upsert_assets(i.id, full, &listed).await.unwrap();
    store
        .upsert_findings(i.id, full, &findings_of(0, 10, 4))
        .await
        .unwrap();
    store.finish_run(full, &succeeded(t(1))).await.unwrap();

    let delta = store.start_run(i.id, "delta", t(60)).await.unwrap();
    let still_listed: Vec<_> = listed
        .iter()
        .filter(|a| a.source_id != asset(3).source_id)
        .cloned()
        .collect();
    store
        .upsert_assets(i.id, delta, &still_listed)
        .await
        .unwrap();
    let policy = ReconcilePolicy {
        scope: ReconcileScope::AssetsOnly,
        ..ReconcilePolicy::new(t(61))
    };
    let fixed = |outcome: ReconcileOutcome| match outcome {
        ReconcileOutcome::Applied {
            assets_missing,
            findings_fixed,
            ..
        } => (assets_missing, findings_fixed),
        held => panic!("the reconciliation was held: {held:?}"),
    };
    let out = store.reconcile(i.id, delta, policy.clone()).await.unwrap();
    assert_eq!(fixed(out), (1, 4));
    let out = store.reconcile(i.id, delta, policy).await.unwrap();
    assert_eq!(fixed(out), (0, 0));

    let stored = all_findings(
        &store,
        FindingFilter {
            integration: Some(i.id),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(stored.len(), 40);
    for f in &stored {
        let gone = f.finding.key.asset_source_id == asset(3).source_id;
        let expected = if gone {
            FindingStatus::Fixed
        } else {
            FindingStatus::Open
        };
        assert_eq!(f.status, expected, "{f:?}");
        assert_eq!(f.fixed_at, gone.then_some(t(61)), "{f:?}");
    }
}
