//! The scenarios, each written once and run on both backends.

use std::collections::BTreeSet;
use std::sync::Arc;

use rampart_model::{AssetStatus, FindingStatus, RunStatus, Verdict};
use rampart_sim::SimConfig;
use rampart_store::Store;
use rampart_sync::progress::Silent;
use rampart_sync::{StepOutcome, SyncMode, SyncRequest};

use crate::harness::*;

fn full() -> SyncRequest {
    SyncRequest {
        mode: SyncMode::Full,
        ..SyncRequest::default()
    }
}

pub async fn a_full_sync_under_faults_holds_exactly_the_truth_and_a_rerun_changes_nothing(
    store: Arc<dyn Store>,
) {
    let h = harness(
        store,
        SimConfig {
            fault_rate: 0.05,
            ..small_tenant()
        },
    )
    .await;
    let report = h.engine.test_connection(&h.integration).await;
    assert!(report.passed(), "{report}");
    let run = h
        .engine
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("run");
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.verdict, Some(Verdict::Complete));
    assert!(run.findings.read > 1000, "{run:?}");
    // Rows without a CVE are software inventory, not findings: read, then skipped.
    assert_eq!(
        run.findings.new + run.findings.skipped,
        run.findings.read,
        "{run:?}"
    );
    assert!(
        run.findings.skipped > 0,
        "the emulator serves rows without a CVE"
    );
    assert!(run.api_calls > 3);
    assert!(
        h.sim.sim.stats().faults_injected > 0,
        "the emulator injected no fault"
    );
    assert_holds_the_truth(&h).await;

    let again = h
        .engine
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("rerun");
    assert_eq!(again.status, RunStatus::Succeeded, "{:?}", again.error);
    for counts in [&again.findings, &again.assets] {
        assert_eq!(
            (counts.new, counts.updated, counts.resolved, counts.reopened),
            (0, 0, 0, 0),
            "a re-run changed something: {again:?}"
        );
    }
    assert_holds_the_truth(&h).await;
}

pub async fn after_the_clock_moves_a_full_sync_records_exactly_the_changes(store: Arc<dyn Store>) {
    let h = harness(store, small_tenant()).await;
    let first = h
        .engine
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("run");
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    let before = truth_findings(&h.sim);
    let devices_before = truth_assets(&h.sim);

    h.sim.sim.tick(6);
    let after = truth_findings(&h.sim);
    let devices_after = truth_assets(&h.sim);
    let fixed: BTreeSet<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let new: BTreeSet<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let gone: BTreeSet<_> = devices_before
        .keys()
        .filter(|k| !devices_after.contains_key(*k))
        .collect();
    assert!(
        !fixed.is_empty() && !new.is_empty(),
        "the emulator did not change"
    );

    let second = h
        .engine
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("run");
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    assert_holds_the_truth(&h).await;
    assert_eq!(second.findings.resolved as usize, fixed.len(), "{second:?}");
    assert_eq!(
        (second.findings.new + second.findings.reopened) as usize,
        new.len(),
        "{second:?}"
    );
    let stored_fixed = stored_findings(&h.store, FindingStatus::Fixed).await;
    assert_eq!(
        stored_fixed.keys().collect::<BTreeSet<_>>(),
        fixed,
        "the fixed findings are not exactly those that disappeared"
    );
    let missing = stored_assets(&h.store, AssetStatus::Missing).await;
    assert_eq!(missing.keys().collect::<BTreeSet<_>>(), gone);
    assert_eq!(second.assets.resolved as usize, gone.len());

    // Time moves on; findings that return are reopened, not duplicated.
    h.sim.sim.tick(60);
    let third = h
        .engine
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("run");
    assert_eq!(third.status, RunStatus::Succeeded, "{:?}", third.error);
    assert_holds_the_truth(&h).await;
}

pub async fn a_delta_sync_ends_where_a_full_sync_would(store: Arc<dyn Store>) {
    let h = harness(store, small_tenant()).await;
    let first = h
        .engine
        .sync(&h.integration, SyncRequest::default(), &Silent)
        .await
        .expect("run");
    assert_eq!(first.mode, "full");
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);

    // Nothing changed at Microsoft: a delta changes nothing (changes the baseline already holds
    // are not replayed as churn).
    let quiet = h
        .engine
        .sync(&h.integration, SyncRequest::default(), &Silent)
        .await
        .expect("run");
    assert_eq!(quiet.mode, "delta");
    assert_eq!(
        (
            quiet.findings.new,
            quiet.findings.updated,
            quiet.findings.resolved,
            quiet.findings.reopened
        ),
        (0, 0, 0, 0),
        "{quiet:?}"
    );
    assert_holds_the_truth(&h).await;

    for ticks in [1, 3, 2] {
        h.sim.sim.tick(ticks);
        let run = h
            .engine
            .sync(&h.integration, SyncRequest::default(), &Silent)
            .await
            .expect("run");
        assert_eq!(
            run.mode, "delta",
            "a recent complete baseline allows a delta"
        );
        assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
        assert_holds_the_truth(&h).await;
    }
}

pub async fn a_failed_read_concludes_nothing(store: Arc<dyn Store>) {
    let h = harness(store, small_tenant()).await;
    let first = h
        .engine
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("run");
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    let open_before = stored_findings(&h.store, FindingStatus::Open).await;
    let active_before = stored_assets(&h.store, AssetStatus::Active).await;

    h.sim.sim.tick(6);
    h.sim
        .sim
        .faults()
        .fail_next("SoftwareVulnerabilitiesByMachine", 500, 1000);
    let failed = h
        .engine
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("run");
    assert_eq!(failed.status, RunStatus::Failed);
    let error = failed.error.clone().unwrap_or_default();
    assert!(error.contains("kept failing"), "{error}");
    assert_eq!(failed.findings.resolved, 0);
    assert_eq!(failed.assets.resolved, 0);
    let open_after = stored_findings(&h.store, FindingStatus::Open).await;
    assert!(
        open_before.keys().all(|k| open_after.contains_key(k)),
        "a failed run closed findings"
    );
    assert!(
        stored_findings(&h.store, FindingStatus::Fixed)
            .await
            .is_empty()
    );
    assert!(stored_assets(&h.store, AssetStatus::Active).await.len() >= active_before.len());
    assert!(
        stored_assets(&h.store, AssetStatus::Missing)
            .await
            .is_empty()
    );

    // The next run (faults gone) re-baselines and converges.
    h.sim.sim.faults().clear();
    let next = h
        .engine
        .sync(&h.integration, SyncRequest::default(), &Silent)
        .await
        .expect("run");
    assert_eq!(next.mode, "full", "a gap forces a new baseline");
    assert_eq!(next.status, RunStatus::Succeeded, "{:?}", next.error);
    assert_holds_the_truth(&h).await;
}

pub async fn a_missing_role_fails_the_run_and_names_the_role(store: Arc<dyn Store>) {
    let h = harness(
        store,
        SimConfig {
            roles: Some(vec!["Machine.Read.All".into()]),
            ..small_tenant()
        },
    )
    .await;
    let run = h
        .engine
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(error.contains("Vulnerability.Read.All"), "{error}");
    assert!(error.to_lowercase().contains("admin consent"), "{error}");
    assert!(
        stored_findings(&h.store, FindingStatus::Open)
            .await
            .is_empty()
    );
}

pub async fn the_connection_test_names_the_failing_step_and_never_the_secret(
    store: Arc<dyn Store>,
) {
    let wrong = "Wr0ng~Secret~Value~0123456789abcdefghij";
    let h = harness_with_secret(store, small_tenant(), Some(wrong)).await;
    let report = h.engine.test_connection(&h.integration).await;
    assert!(!report.passed());
    let text = report.to_string();
    assert_eq!(report.steps[0].outcome, StepOutcome::Passed, "{text}");
    assert_eq!(report.steps[1].outcome, StepOutcome::Failed, "{text}");
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(text.contains("Value"), "{text}");
    assert!(
        report.steps[2..]
            .iter()
            .all(|s| s.outcome == StepOutcome::Skipped)
    );
    assert!(!text.contains(wrong), "the secret leaked into the report");
    let run = h
        .engine
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("7000215") && !error.contains(wrong),
        "{error}"
    );
}
