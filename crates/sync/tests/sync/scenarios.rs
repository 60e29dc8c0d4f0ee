//! The scenarios, each written once and run on both backends.

use std::collections::BTreeSet;
use std::sync::Arc;

use rampart_model::{AssetStatus, FindingStatus, RunStatus, SyncRun, Verdict};
use rampart_sim::{Family, SimConfig};
use rampart_store::Store;
use rampart_sync::progress::Silent;
use rampart_sync::{EngineOptions, FindingsSource, StepOutcome, SyncMode, SyncRequest};

use crate::harness::*;

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
    let run = h.sync_ok(full()).await;

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

    let again = h.sync_ok(full()).await;

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
    h.sync_ok(full()).await;

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

    let second = h.sync_ok(full()).await;

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
    h.sync_ok(full()).await;

    assert_holds_the_truth(&h).await;
}

pub async fn a_delta_sync_ends_where_a_full_sync_would(store: Arc<dyn Store>) {
    let h = harness(store, small_tenant()).await;
    let first = h.sync(SyncRequest::default()).await;
    assert_eq!(first.mode, "full");
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);

    // Nothing changed at Microsoft: a delta changes nothing (changes the baseline already holds
    // are not replayed as churn).
    let quiet = h.sync(SyncRequest::default()).await;
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
        let run = h.sync(SyncRequest::default()).await;
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
    h.sync_ok(full()).await;

    let open_before = stored_findings(&h.store, FindingStatus::Open).await;
    let active_before = stored_assets(&h.store, AssetStatus::Active).await;

    h.sim.sim.tick(6);
    h.sim
        .sim
        .faults()
        .fail_next("SoftwareVulnerabilitiesByMachine", 500, 1000);
    let failed = h.sync(full()).await;
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
    let next = h.sync(SyncRequest::default()).await;
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
    let run = h.sync(full()).await;
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
    let run = h.sync(full()).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("7000215") && !error.contains(wrong),
        "{error}"
    );
}

fn full_from(source: FindingsSource) -> SyncRequest {
    SyncRequest {
        mode: SyncMode::Full,
        source,
        ..SyncRequest::default()
    }
}

/// A run that found nothing new, changed nothing and concluded nothing new.
fn assert_changed_nothing(run: &SyncRun) {
    for counts in [&run.findings, &run.assets] {
        assert_eq!(
            (counts.new, counts.updated, counts.resolved, counts.reopened),
            (0, 0, 0, 0),
            "the run changed something: {run:?}"
        );
    }
}

pub async fn a_files_sync_holds_exactly_the_truth_and_equals_a_pages_sync(store: Arc<dyn Store>) {
    let h = harness(store, small_tenant()).await;
    let before = h.sim.sim.stats();
    let files = h.sync_ok(full_from(FindingsSource::Files)).await;

    assert_eq!(files.verdict, Some(Verdict::Complete));
    assert_eq!(files.source.as_deref(), Some("files"));
    assert!(files.findings.read > 1000, "{files:?}");
    assert!(
        files.findings.skipped > 0,
        "the files carry rows without a CVE"
    );
    assert_eq!(
        files.findings.new + files.findings.skipped,
        files.findings.read,
        "{files:?}"
    );
    assert_holds_the_truth(&h).await;
    // One listing call (it also gives the snapshot time), no JSON page, one download per file.
    let stats = h.sim.sim.stats();
    let calls = |f: Family| stats.calls(f) - before.calls(f);
    assert_eq!(calls(Family::FileExport), 1);
    assert_eq!(calls(Family::JsonExport), 0);
    assert!(calls(Family::Blob) >= 2, "{stats:?}");
    let open_after_files = stored_findings(&h.store, FindingStatus::Open).await;

    // The JSON pages of the same snapshot find exactly the same rows and change nothing.
    let pages = h.sync_ok(full_from(FindingsSource::Pages)).await;

    assert_eq!(pages.source.as_deref(), Some("pages"));
    assert_eq!(
        (pages.findings.read, pages.findings.skipped),
        (files.findings.read, files.findings.skipped)
    );
    assert_changed_nothing(&pages);
    assert_eq!(
        stored_findings(&h.store, FindingStatus::Open).await,
        open_after_files
    );
    assert_eq!(
        h.store
            .list_runs(&rampart_store::Visibility::All, h.integration.id, 5)
            .await
            .expect("runs")
            .len(),
        2
    );
}

pub async fn a_files_sync_converges_through_cut_downloads_and_expired_links(store: Arc<dyn Store>) {
    let h = harness(store, small_tenant()).await;
    let faults = h.sim.sim.faults();
    // The first download ends early with a 200 (inside a record), the second loses its connection,
    // and every link expires after four downloads, as when a read outlives its SAS lifetime.
    faults.truncate_next("/blob/", 1);
    faults.reset_next("/blob/", 1);
    faults.expire_sas_after(4);
    let before = h.sim.sim.stats();
    let run = h.sync_ok(full_from(FindingsSource::Files)).await;

    assert_eq!(run.verdict, Some(Verdict::Complete));
    let stats = h.sim.sim.stats();
    assert!(
        stats.faults_injected - before.faults_injected >= 2,
        "{stats:?}"
    );
    // Fresh links were fetched once, for every file that needed them.
    assert_eq!(
        stats.calls(Family::FileExport) - before.calls(Family::FileExport),
        2,
        "{stats:?}"
    );
    // Two files read again and one link refresh, all in the run record.
    assert!(run.retries >= 3, "{run:?}");
    assert_holds_the_truth(&h).await;
    // Files read twice are counted once.
    assert_eq!(
        run.findings.new + run.findings.skipped,
        run.findings.read,
        "{run:?}"
    );
    let clean = h.sync_ok(full_from(FindingsSource::Pages)).await;

    assert_eq!(
        (clean.findings.read, clean.findings.skipped),
        (run.findings.read, run.findings.skipped)
    );
    assert_changed_nothing(&clean);
}

pub async fn auto_reads_files_from_the_threshold_up_and_pages_below(store: Arc<dyn Store>) {
    let h = harness(store, small_tenant()).await;
    let devices = truth_assets(&h.sim).len() as u64;
    let at_threshold = h.engine_with(EngineOptions {
        file_export_threshold: devices,
        ..test_options()
    });
    let run = at_threshold
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("run");
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.source.as_deref(), Some("files"), "{devices} devices");
    assert_holds_the_truth(&h).await;

    // A baseline from files is a baseline like any other: deltas continue from it.
    h.sim.sim.tick(2);
    let delta = at_threshold
        .sync(&h.integration, SyncRequest::default(), &Silent)
        .await
        .expect("run");
    assert_eq!(delta.mode, "delta");
    assert_eq!(delta.source, None);
    assert_eq!(delta.status, RunStatus::Succeeded, "{:?}", delta.error);
    assert_holds_the_truth(&h).await;

    // Devices joined and left meanwhile.
    let devices = truth_assets(&h.sim).len() as u64;
    let below = h.engine_with(EngineOptions {
        file_export_threshold: devices + 1,
        ..test_options()
    });
    let run = below
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("run");
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.source.as_deref(), Some("pages"), "{devices} devices");
    assert_changed_nothing(&run);
}

/// The circuit breaker: a run that would mark more than the set share of devices missing marks
/// nothing, is partial with the numbers and the way out; accepted by a person, it concludes.
pub async fn a_run_that_would_mark_too_many_devices_missing_is_held_until_accepted(
    store: Arc<dyn Store>,
) {
    let h = harness(store, small_tenant()).await;
    let strict = h.engine_with(EngineOptions {
        max_missing_share: 0.0,
        ..test_options()
    });
    let first = strict
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("run");
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    let before = truth_assets(&h.sim);
    let mut gone = BTreeSet::new();
    for _ in 0..40 {
        h.sim.sim.tick(6);
        let now = truth_assets(&h.sim);
        gone = before.keys().filter(|k| !now.contains_key(*k)).collect();
        if !gone.is_empty() {
            break;
        }
    }
    assert!(!gone.is_empty(), "no device left the emulator");

    let held = strict
        .sync(&h.integration, full(), &Silent)
        .await
        .expect("run");
    assert_eq!(held.status, RunStatus::Partial, "{held:?}");
    assert!(matches!(held.verdict, Some(Verdict::Held(_))), "{held:?}");
    let error = held.error.clone().unwrap_or_default();
    for words in [
        "nothing was concluded",
        &format!("would mark {} of", gone.len()),
        "devices missing, more than the 0 % safety limit",
        "--accept-mass-changes",
    ] {
        assert!(error.contains(words), "{words:?} missing from: {error}");
    }
    assert_eq!((held.assets.resolved, held.findings.resolved), (0, 0));
    assert!(
        stored_assets(&h.store, AssetStatus::Missing)
            .await
            .is_empty()
    );
    assert!(
        stored_findings(&h.store, FindingStatus::Fixed)
            .await
            .is_empty()
    );

    let accepted = strict
        .sync(
            &h.integration,
            SyncRequest {
                accept_mass_changes: true,
                ..full()
            },
            &Silent,
        )
        .await
        .expect("run");
    assert_eq!(
        accepted.status,
        RunStatus::Succeeded,
        "{:?}",
        accepted.error
    );
    let missing = stored_assets(&h.store, AssetStatus::Missing).await;
    assert_eq!(missing.keys().collect::<BTreeSet<_>>(), gone);
    assert_holds_the_truth(&h).await;
}
